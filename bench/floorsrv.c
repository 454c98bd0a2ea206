/* The floor: what any server on this socket must pay, and nothing more.
 *
 * The agent's event-loop shape (agent/loop.c): N threads, each with its
 * own epoll set, all sharing the listening socket with EPOLLEXCLUSIVE; per
 * connection accept4, SO_PEERCRED and SO_PEERPIDFD and a heap-allocated
 * connection; per request one frame read and one framed answer sent. The
 * answer is a fixed frame of the agent's own making (captured from it at
 * the start of the run), so both servers send the same bytes. No
 * attestation, no /proc, no entries, no signing.
 *
 * A forked process, not a thread of the bench, so that its CPU time and
 * memory are its own and it competes for the CPUs the way the agent does. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "frame.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define FLOORSRV_LOOPS_MAX    64u
#define FLOORSRV_IN           512u
#define FLOORSRV_BATCH        64
#define FLOORSRV_ACCEPT_BURST 64
/* The first byte of a WhoAmI request: field 1, length-delimited. */
#define FLOORSRV_WHOAMI_TAG 0x0a

struct floorsrv_conn {
    int fd;
    int pidfd;
    uint8_t in[FLOORSRV_IN];
    size_t in_len;
    const uint8_t *out; /* the rest of an answer the socket did not take */
    size_t out_len;
};

struct floorsrv_state {
    int listen_fd;
    const uint8_t *fetch, *whoami;
    size_t fetch_len, whoami_len;
};

static char floorsrv_tag_listen;

static void floorsrv_close(struct floorsrv_conn *c)
{
    if (c->pidfd >= 0)
        (void)close(c->pidfd);
    (void)close(c->fd);
    free(c);
}

static void floorsrv_accept(const struct floorsrv_state *s, int epfd)
{
    for (int i = 0; i < FLOORSRV_ACCEPT_BURST; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        struct ucred cred;
        socklen_t len = sizeof(cred);
        int pidfd = -1;
        socklen_t plen = sizeof(pidfd);
        struct floorsrv_conn *c = NULL;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &plen) < 0 ||
            !(c = calloc(1, sizeof(*c)))) {
            if (pidfd >= 0)
                (void)close(pidfd);
            (void)close(fd);
            continue;
        }
        c->fd = fd;
        c->pidfd = pidfd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            floorsrv_close(c);
    }
}

/* Sends what the socket takes; keeps the rest for EPOLLOUT. Returns 0, or
 * -1 when the connection is dead. */
static int floorsrv_send(int epfd, struct floorsrv_conn *c, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    c->out = len ? buf : NULL;
    c->out_len = len;
    struct epoll_event ev = {.events = len ? EPOLLOUT : EPOLLIN, .data.ptr = c};
    return len ? epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) : 0;
}

/* Answers every whole frame in the buffer. Returns -1 to close. */
static int floorsrv_process(const struct floorsrv_state *s, int epfd, struct floorsrv_conn *c)
{
    while (c->in_len > 0 && c->out_len == 0) {
        uint32_t len;
        int r = frame_parse(c->in, c->in_len, FLOORSRV_IN - FRAME_HEADER_SIZE, &len);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        bool who = c->in[FRAME_HEADER_SIZE] == FLOORSRV_WHOAMI_TAG;
        size_t used = FRAME_HEADER_SIZE + len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (floorsrv_send(epfd, c, who ? s->whoami : s->fetch, who ? s->whoami_len : s->fetch_len) <
            0)
            return -1;
    }
    return 0;
}

static int floorsrv_ready(const struct floorsrv_state *s, int epfd, struct floorsrv_conn *c,
                          uint32_t events)
{
    if (events & EPOLLOUT) {
        const uint8_t *rest = c->out;
        size_t n = c->out_len;
        c->out_len = 0;
        if (floorsrv_send(epfd, c, rest, n) < 0)
            return -1;
        if (c->out_len)
            return 0;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
            return -1;
    }
    if (c->out_len || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return 0;
    if (c->in_len == sizeof(c->in))
        return -1; /* a frame larger than any request the bench sends */
    ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, MSG_DONTWAIT);
    if (r == 0)
        return -1;
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    c->in_len += (size_t)r;
    return floorsrv_process(s, epfd, c);
}

static void *floorsrv_loop(void *opaque)
{
    const struct floorsrv_state *s = opaque;
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &floorsrv_tag_listen};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) < 0)
        _exit(3);
    struct epoll_event events[FLOORSRV_BATCH];
    for (;;) {
        int n = epoll_wait(epfd, events, FLOORSRV_BATCH, -1);
        if (n < 0 && errno != EINTR)
            _exit(3);
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == &floorsrv_tag_listen) {
                floorsrv_accept(s, epfd);
                continue;
            }
            struct floorsrv_conn *c = events[i].data.ptr;
            if (floorsrv_ready(s, epfd, c, events[i].events) < 0)
                floorsrv_close(c);
        }
    }
    return NULL;
}

static int floorsrv_listen(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    (void)unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, SOMAXCONN) < 0) {
        int e = errno;
        (void)close(fd);
        return -e;
    }
    return fd;
}

static void floorsrv_child(const char *sock, unsigned loops, struct floorsrv_state *s)
{
    int fd = floorsrv_listen(sock);
    if (fd < 0) {
        fprintf(stderr, "sockid-bench: the floor server cannot listen on %s: %s\n", sock,
                strerror(-fd));
        _exit(3);
    }
    s->listen_fd = fd;
    for (unsigned i = 1; i < loops; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, floorsrv_loop, s) != 0)
            _exit(3);
    }
    (void)floorsrv_loop(s);
}

static void floorsrv_hex(char *out, const uint8_t *in, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

static int floorsrv_unhex(const char *in, uint8_t **ret, size_t *ret_len)
{
    size_t n = strlen(in);
    if (n == 0 || n % 2)
        return -EINVAL;
    uint8_t *out = malloc(n / 2);
    if (!out)
        return -ENOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(in + 2 * i, "%2x", &v) != 1) {
            free(out);
            return -EINVAL;
        }
        out[i] = (uint8_t)v;
    }
    *ret = out;
    *ret_len = n / 2;
    return 0;
}

int floorsrv_main(int argc, char **argv)
{
    struct floorsrv_state s = {0};
    uint8_t *fetch = NULL, *whoami = NULL;
    unsigned long loops = argc == 6 ? strtoul(argv[3], NULL, 10) : 0;
    if (loops == 0 || loops > FLOORSRV_LOOPS_MAX ||
        floorsrv_unhex(argv[4], &fetch, &s.fetch_len) < 0 ||
        floorsrv_unhex(argv[5], &whoami, &s.whoami_len) < 0) {
        fprintf(stderr, "sockid-bench: --floor-server is for sockid-bench's own use\n");
        return 2;
    }
    s.fetch = fetch;
    s.whoami = whoami;
    (void)signal(SIGPIPE, SIG_IGN);
    floorsrv_child(argv[2], (unsigned)loops, &s);
    return 0;
}

int floorsrv_start(struct floorsrv *f, const char *sock, unsigned loops, const uint8_t *fetch,
                   size_t fetch_len, const uint8_t *whoami, size_t whoami_len, char *err,
                   size_t err_len)
{
    *f = (struct floorsrv){.pid = -1};
    (void)snprintf(f->sock, sizeof(f->sock), "%s", sock);
    if (loops == 0 || loops > FLOORSRV_LOOPS_MAX) {
        (void)snprintf(err, err_len, "the floor server runs 1 to %u loops, not %u",
                       FLOORSRV_LOOPS_MAX, loops);
        return -EINVAL;
    }
    /* A program of its own (this one, exec'd again), not a fork of the
     * bench: its memory figures then hold nothing of the bench's. */
    char self[PATH_MAX], loops_s[16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *fhex = malloc(2 * fetch_len + 1), *whex = malloc(2 * whoami_len + 1);
    if (n <= 0 || !fhex || !whex) {
        free(fhex);
        free(whex);
        (void)snprintf(err, err_len, "cannot prepare the floor server");
        return -ENOMEM;
    }
    self[n] = '\0';
    floorsrv_hex(fhex, fetch, fetch_len);
    floorsrv_hex(whex, whoami, whoami_len);
    (void)snprintf(loops_s, sizeof(loops_s), "%u", loops);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        free(fhex);
        free(whex);
        (void)snprintf(err, err_len, "fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0) {
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execl(self, self, "--floor-server", sock, loops_s, fhex, whex, (char *)NULL);
        _exit(127);
    }
    free(fhex);
    free(whex);
    f->pid = pid;
    char why[256];
    for (int i = 0; i < 20000; i++) {
        int r = wire_once(sock, BENCH_FETCH, NULL, 0, NULL, why, sizeof(why));
        if (r == 0)
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            f->pid = -1;
            (void)snprintf(err, err_len, "the floor server exited (status 0x%x)", (unsigned)status);
            return -ECHILD;
        }
        if (r != -ENOENT && r != -ECONNREFUSED) {
            floorsrv_stop(f);
            (void)snprintf(err, err_len, "the floor server answered wrong: %s", why);
            return r;
        }
        wire_sleep_us(500);
    }
    floorsrv_stop(f);
    (void)snprintf(err, err_len, "the floor server did not answer on %s", sock);
    return -ETIMEDOUT;
}

void floorsrv_stop(struct floorsrv *f)
{
    if (f->pid <= 0)
        return;
    (void)kill(f->pid, SIGTERM);
    int status;
    while (waitpid(f->pid, &status, 0) < 0 && errno == EINTR)
        ;
    f->pid = -1;
    (void)unlink(f->sock);
}
