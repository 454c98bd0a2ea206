/* The integration tests' harness: see harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"

/* Largest response a test reads; the agent's own limit is 4 MiB, and no
 * answer a test provokes comes near 64 KiB. */
#define H_RESPONSE_MAX (1024u * 1024u)
#define H_MAX_AGENTS   8
#define H_MAX_DIRS     8

static pid_t h_owner;
static struct agent *h_agents[H_MAX_AGENTS];
static size_t h_n_agents;
static char h_dirs[H_MAX_DIRS][H_PATH_MAX];
static size_t h_n_dirs;

static int64_t h_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void h_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int h_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    (void)remove(path);
    return 0;
}

static bool h_is_owner(void)
{
    return h_owner == getpid();
}

/* Runs in the process that made the resources, never in a forked child. */
static void h_cleanup(bool failed)
{
    if (!h_is_owner())
        return;
    const char *show = getenv("SOCKID_IT_SHOW_LOGS");
    if (show && *show && strcmp(show, "0") != 0)
        failed = true;
    for (size_t i = 0; i < h_n_agents; i++) {
        struct agent *a = h_agents[i];
        if (a->pid > 0) {
            agent_kill(a);
            failed = true;
        }
        if (failed)
            agent_dump_log(a);
    }
    h_n_agents = 0;
    for (size_t i = 0; i < h_n_dirs; i++) {
        (void)nftw(h_dirs[i], h_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        struct stat st;
        if (lstat(h_dirs[i], &st) == 0)
            fprintf(stderr, "warning: could not remove the temporary directory %s\n", h_dirs[i]);
    }
    h_n_dirs = 0;
}

static void h_cleanup_at_exit(void)
{
    h_cleanup(false);
}

static void h_register_owner(void)
{
    if (h_owner == getpid())
        return;
    h_owner = getpid();
    h_n_agents = 0;
    h_n_dirs = 0;
    (void)atexit(h_cleanup_at_exit);
}

static void h_vprint(const char *prefix, const char *fmt, va_list ap)
{
    char msg[2048];
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    fprintf(stderr, "%s%s\n", prefix, msg);
    fflush(stderr);
}

void h_fail(const char *fmt, ...)
{
    /* Cleanup must run even when whoever reads our output has gone. */
    (void)signal(SIGPIPE, SIG_IGN);
    va_list ap;
    va_start(ap, fmt);
    h_vprint("FAIL: ", fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (!h_is_owner())
        _exit(1); /* a forked child: its parent reports and cleans up */
    h_cleanup(true);
    exit(1);
}

void h_skip(const char *fmt, ...)
{
    /* Cleanup must run even when whoever reads our output has gone. */
    (void)signal(SIGPIPE, SIG_IGN);
    va_list ap;
    va_start(ap, fmt);
    h_vprint("SKIP: ", fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (!h_is_owner())
        _exit(H_SKIP);
    h_cleanup(false);
    exit(H_SKIP);
}

void h_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[2048];
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("%s\n", msg);
    fflush(stdout);
}

void h_require_root(const char *why)
{
    if (geteuid() != 0)
        h_skip("needs root (%s); running as uid %lu", why, (unsigned long)geteuid());
}

void h_tmpdir(char ret[static H_PATH_MAX])
{
    h_register_owner();
    H_CHECK(h_n_dirs < H_MAX_DIRS, "too many temporary directories");
    char tmpl[] = "/tmp/sockid-it.XXXXXX";
    H_CHECK(mkdtemp(tmpl) != NULL, "mkdtemp: %s", strerror(errno));
    H_CHECK(chmod(tmpl, 0755) == 0, "chmod %s: %s", tmpl, strerror(errno));
    (void)snprintf(h_dirs[h_n_dirs++], H_PATH_MAX, "%s", tmpl);
    (void)snprintf(ret, H_PATH_MAX, "%s", tmpl);
}

void h_write_file(const char *dir, const char *name, const char *text, char ret[static H_PATH_MAX])
{
    (void)snprintf(ret, H_PATH_MAX, "%s/%s", dir, name);
    FILE *f = fopen(ret, "w");
    H_CHECK(f != NULL, "cannot create %s: %s", ret, strerror(errno));
    H_CHECK(fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", ret);
}

/* --- the agent --------------------------------------------------------- */

/* Waits for pid to exit within timeout_ms. Returns 0 and its status, or
 * -ETIMEDOUT (the process is left running). */
static int h_wait_exit(pid_t pid, int timeout_ms, int *ret_status)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            *ret_status = status;
            return 0;
        }
        if (w < 0 && errno != EINTR)
            return -errno;
        if (h_now_ms() >= deadline)
            return -ETIMEDOUT;
        h_sleep_ms(5);
    }
}

static void h_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        (void)snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        (void)snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
    else
        (void)snprintf(buf, len, "wait status 0x%x", (unsigned)status);
}

void agent_dump_log(const struct agent *a)
{
    FILE *f = fopen(a->log, "r");
    if (!f) {
        fprintf(stderr, "(no agent log at %s)\n", a->log);
        return;
    }
    fprintf(stderr, "---- %s ----\n", a->log);
    char line[4096];
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "---- end of agent log ----\n");
    fflush(stderr);
    (void)fclose(f);
}

bool agent_log_has_line(const struct agent *a, const char *const *needles)
{
    FILE *f = fopen(a->log, "r");
    if (!f)
        return false;
    char line[8192];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        found = true;
        for (size_t i = 0; needles[i]; i++)
            if (!strstr(line, needles[i]))
                found = false;
    }
    (void)fclose(f);
    return found;
}

void agent_start(struct agent *a, const char *exe, const char *dir, const char *const *extra)
{
    h_register_owner();
    *a = (struct agent){0};
    (void)snprintf(a->exe, sizeof(a->exe), "%s", exe);
    (void)snprintf(a->dir, sizeof(a->dir), "%s", dir);
    (void)snprintf(a->sock, sizeof(a->sock), "%s/agent.sock", dir);
    (void)snprintf(a->log, sizeof(a->log), "%s/agent.log", dir);
    char data[H_PATH_MAX + 8];
    (void)snprintf(data, sizeof(data), "%s/data", dir);

    const char *argv[64];
    size_t n = 0;
    argv[n++] = a->exe;
    argv[n++] = "--socket";
    argv[n++] = a->sock;
    char admin[H_PATH_MAX + 16];
    (void)snprintf(admin, sizeof(admin), "%s/admin.sock", dir);
    argv[n++] = "--admin-socket";
    argv[n++] = admin;
    argv[n++] = "--data-dir";
    argv[n++] = data;
    for (size_t i = 0; extra && extra[i]; i++) {
        H_CHECK(n < sizeof(argv) / sizeof(argv[0]) - 1, "too many agent arguments");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;

    int log_fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    H_CHECK(log_fd >= 0, "cannot create %s: %s", a->log, strerror(errno));
    bool known = false;
    for (size_t i = 0; i < h_n_agents; i++)
        known = known || h_agents[i] == a;
    if (!known) {
        H_CHECK(h_n_agents < H_MAX_AGENTS, "too many agents");
        h_agents[h_n_agents++] = a;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Dies with the test, whatever kills the test. */
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(log_fd, 2) < 0)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        (void)sigprocmask(SIG_SETMASK, &none, NULL);
        (void)signal(SIGINT, SIG_DFL);
        (void)signal(SIGTERM, SIG_DFL);
        (void)signal(SIGPIPE, SIG_DFL);
        execv(a->exe, (char *const *)argv);
        dprintf(2, "cannot run %s: %s\n", a->exe, strerror(errno));
        _exit(127);
    }
    (void)close(log_fd);
    a->pid = pid;

    int64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            a->pid = 0;
            char how[128];
            h_describe_status(status, how, sizeof(how));
            h_fail("the agent exited during startup (%s)", how);
        }
        int fd = proto_connect(a->sock);
        if (fd >= 0) {
            (void)close(fd);
            return;
        }
        if (h_now_ms() >= deadline)
            h_fail("the agent did not accept connections on %s within %d ms", a->sock,
                   H_TIMEOUT_MS);
        h_sleep_ms(10);
    }
}

void agent_expect_exit(struct agent *a, const char *what)
{
    int status;
    int r = h_wait_exit(a->pid, H_TIMEOUT_MS, &status);
    if (r < 0)
        h_fail("%s: the agent did not exit within %d ms", what, H_TIMEOUT_MS);
    a->pid = 0;
    char how[128];
    h_describe_status(status, how, sizeof(how));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        h_fail("%s: the agent ended with %s, expected exit status 0", what, how);
    }
    struct stat st;
    if (lstat(a->sock, &st) == 0 || errno != ENOENT) {
        h_fail("%s: the agent exited but left its socket %s behind", what, a->sock);
    }
}

void agent_stop(struct agent *a)
{
    H_CHECK(a->pid > 0, "agent_stop: the agent is not running");
    /* An answer on a fresh connection proves the agent has taken in every
     * close that came before it, so that no close reaches the agent in the
     * same event batch as the signal (see test_shutdown.c for that case). The
     * connection stays open: the agent is stopped with an idle client. */
    int fd = proto_connect(a->sock);
    H_CHECK(fd >= 0, "agent_stop: cannot connect to the agent: %s", strerror(-fd));
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__HealthRequest health = SOCKID__WORKLOAD__HEALTH_REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_HEALTH;
    req.health = &health;
    Sockid__Workload__Response *resp = NULL;
    int r = proto_send(fd, &req);
    if (r == 0)
        r = proto_recv(fd, H_TIMEOUT_MS, &resp);
    H_CHECK(r == 0, "agent_stop: the agent did not answer a Health request: %s", strerror(-r));
    sockid__workload__response__free_unpacked(resp, NULL);
    H_CHECK(kill(a->pid, SIGTERM) == 0, "cannot signal the agent: %s", strerror(errno));
    agent_expect_exit(a, "after SIGTERM");
    (void)close(fd);
}

void agent_kill(struct agent *a)
{
    if (a->pid <= 0)
        return;
    (void)kill(a->pid, SIGKILL);
    int status;
    while (waitpid(a->pid, &status, 0) < 0 && errno == EINTR)
        ;
    a->pid = 0;
}

/* --- raw protocol ------------------------------------------------------ */

int proto_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int e = errno;
        (void)close(fd);
        return -e;
    }
    return fd;
}

/* Frames and sends one message of either protocol. */
static int h_send_message(int fd, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return -ENOMEM;
    (void)protobuf_c_message_pack(m, buf);
    int r;
    if (len == 0) {
        /* An empty Request packs to nothing; its frame is a zero length. */
        uint8_t hdr[FRAME_HEADER_SIZE];
        frame_put_header(hdr, 0);
        r = proto_send_raw(fd, hdr, sizeof(hdr));
    } else {
        r = frame_write(fd, buf, (uint32_t)len, H_TIMEOUT_MS);
    }
    free(buf);
    return r;
}

/* Reads one frame and unpacks it as a d (free with
 * protobuf_c_message_free_unpacked). */
static int h_recv_message(int fd, int timeout_ms, const ProtobufCMessageDescriptor *d,
                          ProtobufCMessage **ret)
{
    uint8_t *buf = malloc(H_RESPONSE_MAX);
    if (!buf)
        return -ENOMEM;
    uint32_t len;
    int r = frame_read(fd, buf, H_RESPONSE_MAX, H_RESPONSE_MAX, timeout_ms, &len);
    if (r == 0) {
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, buf);
        if (m)
            *ret = m;
        else
            r = -EBADMSG;
    }
    free(buf);
    return r;
}

int proto_send(int fd, const Sockid__Workload__Request *req)
{
    return h_send_message(fd, &req->base);
}

int proto_send_raw(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int proto_recv(int fd, int timeout_ms, Sockid__Workload__Response **ret)
{
    ProtobufCMessage *m;
    int r = h_recv_message(fd, timeout_ms, &sockid__workload__response__descriptor, &m);
    if (r == 0)
        *ret = (Sockid__Workload__Response *)m;
    return r;
}

int proto_whoami(int fd, Sockid__Workload__Response **ret)
{
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__WhoAmIRequest w = SOCKID__WORKLOAD__WHO_AM_IREQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI;
    req.whoami = &w;
    int r = proto_send(fd, &req);
    if (r < 0)
        return r;
    return proto_recv(fd, H_TIMEOUT_MS, ret);
}

int proto_wait_closed(int fd, int timeout_ms)
{
    int64_t deadline = h_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - h_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        uint8_t scratch[4096];
        ssize_t n = recv(fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
    }
}

bool proto_has_selector(const Sockid__Workload__WhoAmIResponse *w, const char *selector)
{
    size_t len = strlen(selector);
    for (size_t i = 0; i < w->n_selectors; i++)
        if (w->selectors[i].len == len && memcmp(w->selectors[i].data, selector, len) == 0)
            return true;
    return false;
}

const char *proto_code_name(int code)
{
    switch (code) {
    case SOCKID__ERROR_CODE__ERROR_CODE_UNSPECIFIED:
        return "UNSPECIFIED";
    case SOCKID__ERROR_CODE__INVALID_ARGUMENT:
        return "INVALID_ARGUMENT";
    case SOCKID__ERROR_CODE__PERMISSION_DENIED:
        return "PERMISSION_DENIED";
    case SOCKID__ERROR_CODE__PEER_GONE:
        return "PEER_GONE";
    case SOCKID__ERROR_CODE__UNAVAILABLE:
        return "UNAVAILABLE";
    case SOCKID__ERROR_CODE__INTERNAL:
        return "INTERNAL";
    case SOCKID__ERROR_CODE__UNIMPLEMENTED:
        return "UNIMPLEMENTED";
    case SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED:
        return "RESOURCE_EXHAUSTED";
    default:
        return "unknown code";
    }
}

void proto_describe(const Sockid__Workload__Response *resp, char *buf, size_t len)
{
    size_t o = 0;
#define H_APPEND(...)                                                                              \
    do {                                                                                           \
        if (o < len) {                                                                             \
            int k = snprintf(buf + o, len - o, __VA_ARGS__);                                       \
            o += k > 0 ? (size_t)k : 0;                                                            \
        }                                                                                          \
    } while (0)
    buf[0] = '\0';
    switch (resp->kind_case) {
    case SOCKID__WORKLOAD__RESPONSE__KIND_ERROR:
        H_APPEND("error %s: \"%s\"", proto_code_name(resp->error->code),
                 resp->error->message ? resp->error->message : "");
        break;
    case SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI: {
        const Sockid__Workload__WhoAmIResponse *w = resp->whoami;
        H_APPEND("whoami pid=%d uid=%u gid=%u selectors=[", (int)w->pid, (unsigned)w->uid,
                 (unsigned)w->gid);
        for (size_t i = 0; i < w->n_selectors; i++)
            H_APPEND("%s%.*s", i ? ", " : "", (int)w->selectors[i].len,
                     (const char *)w->selectors[i].data);
        H_APPEND("]");
        break;
    }
    default:
        H_APPEND("response of kind %d", (int)resp->kind_case);
    }
#undef H_APPEND
}

void proto_describe_result(int r, const Sockid__Workload__Response *resp, char *buf, size_t len)
{
    if (r == 0)
        proto_describe(resp, buf, len);
    else if (r == -ECONNRESET)
        (void)snprintf(buf, len, "connection closed by the agent");
    else
        (void)snprintf(buf, len, "no response: %s", strerror(-r));
}

void proto_expect_served(const char *sock, uid_t uid, const char *what)
{
    int fd = proto_connect(sock);
    H_CHECK(fd >= 0, "%s: cannot connect to %s: %s", what, sock, strerror(-fd));
    Sockid__Workload__Response *resp = NULL;
    int r = proto_whoami(fd, &resp);
    char desc[2048];
    proto_describe_result(r, resp, desc, sizeof(desc));
    char sel[64];
    (void)snprintf(sel, sizeof(sel), "unix:uid:%lu", (unsigned long)uid);
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI &&
                proto_has_selector(resp->whoami, sel),
            "%s: a normal client was not served: expected a WhoAmI answer with %s, got %s", what,
            sel, desc);
    sockid__workload__response__free_unpacked(resp, NULL);
    (void)close(fd);
}

/* --- child-to-parent reports ------------------------------------------- */

int report_send(int fd, int r, const Sockid__Workload__Response *resp)
{
    size_t len = r == 0 ? sockid__workload__response__get_packed_size(resp) : 0;
    uint8_t *buf = malloc(4 + len);
    if (!buf)
        return -ENOMEM;
    frame_put_header(buf, (uint32_t)r);
    if (r == 0)
        (void)sockid__workload__response__pack(resp, buf + 4);
    int w = frame_write(fd, buf, (uint32_t)(4 + len), H_TIMEOUT_MS);
    free(buf);
    return w;
}

int report_recv(int fd, int timeout_ms, int *ret_r, Sockid__Workload__Response **ret_resp)
{
    uint8_t *buf = malloc(H_RESPONSE_MAX);
    if (!buf)
        return -ENOMEM;
    uint32_t len;
    int r = frame_read(fd, buf, H_RESPONSE_MAX, H_RESPONSE_MAX, timeout_ms, &len);
    if (r == 0 && len < 4)
        r = -EBADMSG;
    if (r == 0) {
        int result =
            (int)((uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3]);
        Sockid__Workload__Response *resp = NULL;
        if (result == 0) {
            resp = sockid__workload__response__unpack(NULL, len - 4, buf + 4);
            if (!resp)
                r = -EBADMSG;
        }
        if (r == 0) {
            *ret_r = result;
            *ret_resp = resp;
        }
    }
    free(buf);
    return r;
}

void report_whoami(int rep, int fd)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_whoami(fd, &resp);
    if (report_send(rep, r, resp) < 0)
        h_fail("child: cannot report to its parent");
    if (r == 0)
        sockid__workload__response__free_unpacked(resp, NULL);
}

/* --- other users --------------------------------------------------------- */

void h_become(const struct h_creds *creds)
{
    if (setgroups(creds->n_groups, creds->groups) < 0 ||
        setresgid(creds->gid, creds->gid, creds->gid) < 0 ||
        setresuid(creds->uid, creds->uid, creds->uid) < 0)
        h_fail("cannot switch to uid %lu gid %lu: %s", (unsigned long)creds->uid,
               (unsigned long)creds->gid, strerror(errno));
}

pid_t h_fork_as(const struct h_creds *creds)
{
    h_register_owner();
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    if (creds)
        h_become(creds);
    /* After the switch: a change of credentials clears the death signal. */
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    return 0;
}

int h_wait_child(pid_t pid, const char *what)
{
    int status;
    int r = h_wait_exit(pid, H_TIMEOUT_MS, &status);
    if (r < 0) {
        (void)kill(pid, SIGKILL);
        (void)waitpid(pid, &status, 0);
        h_fail("%s: the child (pid %d) did not exit within %d ms", what, (int)pid, H_TIMEOUT_MS);
    }
    if (!WIFEXITED(status)) {
        char how[128];
        h_describe_status(status, how, sizeof(how));
        h_fail("%s: the child (pid %d) ended with %s", what, (int)pid, how);
    }
    return WEXITSTATUS(status);
}

static void h_read_capture(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    if (lseek(fd, 0, SEEK_SET) == 0) {
        while (n < cap - 1) {
            ssize_t r = read(fd, buf + n, cap - 1 - n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                break;
            n += (size_t)r;
        }
    }
    buf[n] = '\0';
}

void h_run(const struct h_creds *creds, const char *const *argv, struct h_run *ret)
{
    int out = memfd_create("h_run-stdout", MFD_CLOEXEC);
    int err = memfd_create("h_run-stderr", MFD_CLOEXEC);
    H_CHECK(out >= 0 && err >= 0, "memfd_create: %s", strerror(errno));
    pid_t pid = h_fork_as(creds);
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        (void)signal(SIGPIPE, SIG_DFL);
        execv(argv[0], (char *const *)argv);
        dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    ret->pid = pid;
    ret->status = h_wait_child(pid, argv[0]);
    h_read_capture(out, ret->out, sizeof(ret->out));
    h_read_capture(err, ret->err, sizeof(ret->err));
    (void)close(out);
    (void)close(err);
}

/* --- admin socket ---------------------------------------------------------- */

void agent_admin_path(const struct agent *a, char ret[static H_PATH_MAX])
{
    int n = snprintf(ret, H_PATH_MAX, "%s/admin.sock", a->dir);
    H_CHECK(n > 0 && n < H_PATH_MAX, "admin socket path under %s is too long", a->dir);
}

void agent_wait_admin(const struct agent *a)
{
    char path[H_PATH_MAX];
    agent_admin_path(a, path);
    int64_t deadline = h_now_ms() + H_TIMEOUT_MS;
    for (;;) {
        int fd = proto_connect(path);
        if (fd >= 0) {
            (void)close(fd);
            return;
        }
        if (h_now_ms() >= deadline)
            h_fail("the agent did not accept connections on %s within %d ms (last: %s)", path,
                   H_TIMEOUT_MS, strerror(-fd));
        h_sleep_ms(10);
    }
}

static int admin_send(int fd, const Sockid__Admin__Request *req)
{
    return h_send_message(fd, &req->base);
}

static ProtobufCBinaryData h_bytes(const char *s)
{
    return (ProtobufCBinaryData){.len = s ? strlen(s) : 0, .data = (uint8_t *)s};
}

int admin_send_create(int fd, const char *spiffe_id, const char *const *selectors, size_t n)
{
    ProtobufCBinaryData sels[64];
    if (n > sizeof(sels) / sizeof(sels[0]))
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        sels[i] = h_bytes(selectors[i]);
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__CreateEntryRequest c = SOCKID__ADMIN__CREATE_ENTRY_REQUEST__INIT;
    c.spiffe_id = h_bytes(spiffe_id);
    c.selectors = sels;
    c.n_selectors = n;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_CREATE_ENTRY;
    req.create_entry = &c;
    return admin_send(fd, &req);
}

int admin_send_delete(int fd, const char *id)
{
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__DeleteEntryRequest d = SOCKID__ADMIN__DELETE_ENTRY_REQUEST__INIT;
    d.id = h_bytes(id);
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_DELETE_ENTRY;
    req.delete_entry = &d;
    return admin_send(fd, &req);
}

int admin_send_get(int fd, const char *id)
{
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__GetEntryRequest g = SOCKID__ADMIN__GET_ENTRY_REQUEST__INIT;
    g.id = h_bytes(id);
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_GET_ENTRY;
    req.get_entry = &g;
    return admin_send(fd, &req);
}

int admin_send_list(int fd, const char *page_token, uint32_t page_size)
{
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__ListEntriesRequest l = SOCKID__ADMIN__LIST_ENTRIES_REQUEST__INIT;
    l.page_token = h_bytes(page_token);
    l.page_size = page_size;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_LIST_ENTRIES;
    req.list_entries = &l;
    return admin_send(fd, &req);
}

int admin_send_health(int fd)
{
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__HealthRequest h = SOCKID__ADMIN__HEALTH_REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_HEALTH;
    req.health = &h;
    return admin_send(fd, &req);
}

int admin_recv(int fd, int timeout_ms, Sockid__Admin__Response **ret)
{
    ProtobufCMessage *m;
    int r = h_recv_message(fd, timeout_ms, &sockid__admin__response__descriptor, &m);
    if (r == 0)
        *ret = (Sockid__Admin__Response *)m;
    return r;
}

bool h_bytes_eq(ProtobufCBinaryData b, const char *s)
{
    return b.len == strlen(s) && (b.len == 0 || memcmp(b.data, s, b.len) == 0);
}

static void admin_describe_entry(const Sockid__Admin__Entry *e, char *buf, size_t len)
{
    if (!e) {
        (void)snprintf(buf, len, "(no entry)");
        return;
    }
    (void)snprintf(buf, len, "id=%.*s spiffe_id=%.*s selectors=%zu", (int)e->id.len,
                   (const char *)e->id.data, (int)(e->spiffe_id.len > 200 ? 200 : e->spiffe_id.len),
                   (const char *)e->spiffe_id.data, e->n_selectors);
}

void admin_describe_result(int r, const Sockid__Admin__Response *resp, char *buf, size_t len)
{
    char entry[512];
    if (r == -ECONNRESET) {
        (void)snprintf(buf, len, "connection closed by the agent");
        return;
    }
    if (r < 0) {
        (void)snprintf(buf, len, "no response: %s", strerror(-r));
        return;
    }
    switch (resp->kind_case) {
    case SOCKID__ADMIN__RESPONSE__KIND_ERROR:
        (void)snprintf(buf, len, "error %s: \"%s\"", proto_code_name(resp->error->code),
                       resp->error->message ? resp->error->message : "");
        break;
    case SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY:
        admin_describe_entry(resp->create_entry->entry, entry, sizeof(entry));
        (void)snprintf(buf, len, "create_entry %s", entry);
        break;
    case SOCKID__ADMIN__RESPONSE__KIND_GET_ENTRY:
        admin_describe_entry(resp->get_entry->entry, entry, sizeof(entry));
        (void)snprintf(buf, len, "get_entry %s", entry);
        break;
    case SOCKID__ADMIN__RESPONSE__KIND_DELETE_ENTRY:
        (void)snprintf(buf, len, "delete_entry (done)");
        break;
    case SOCKID__ADMIN__RESPONSE__KIND_LIST_ENTRIES:
        (void)snprintf(buf, len, "list_entries with %zu entries%s", resp->list_entries->n_entries,
                       resp->list_entries->next_page_token.len ? ", more to come" : "");
        break;
    case SOCKID__ADMIN__RESPONSE__KIND_HEALTH:
        (void)snprintf(buf, len, "admin_health version=%s entries=%llu",
                       resp->health->version ? resp->health->version : "",
                       (unsigned long long)resp->health->entries);
        break;
    default:
        (void)snprintf(buf, len, "admin response of kind %d", (int)resp->kind_case);
    }
}

void admin_listing_free(struct admin_listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->spiffe_ids[i]);
    free(l->ids);
    free(l->spiffe_ids);
    free(l->revisions);
    *l = (struct admin_listing){0};
}

long admin_listing_find(const struct admin_listing *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->ids[i], id) == 0)
            return (long)i;
    return -1;
}

void admin_list_all(const char *admin_sock, uint32_t page_size, struct admin_listing *ret)
{
    *ret = (struct admin_listing){0};
    int fd = proto_connect(admin_sock);
    H_CHECK(fd >= 0, "list: cannot connect to %s: %s", admin_sock, strerror(-fd));
    char token[256] = "";
    size_t cap = 0;
    for (;;) {
        int r = admin_send_list(fd, token, page_size);
        Sockid__Admin__Response *resp = NULL;
        if (r == 0)
            r = admin_recv(fd, H_TIMEOUT_MS, &resp);
        char desc[1024];
        admin_describe_result(r, resp, desc, sizeof(desc));
        H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_LIST_ENTRIES,
                "list page %zu: expected a list_entries answer, got %s", ret->pages + 1, desc);
        const Sockid__Admin__ListEntriesResponse *l = resp->list_entries;
        ret->pages++;
        if (ret->n + l->n_entries > cap) {
            cap = (ret->n + l->n_entries) * 2 + 16;
            ret->ids = realloc(ret->ids, cap * sizeof(*ret->ids));
            ret->spiffe_ids = realloc(ret->spiffe_ids, cap * sizeof(*ret->spiffe_ids));
            ret->revisions = realloc(ret->revisions, cap * sizeof(*ret->revisions));
            H_CHECK(ret->ids && ret->spiffe_ids && ret->revisions, "out of memory");
        }
        for (size_t i = 0; i < l->n_entries; i++) {
            const Sockid__Admin__Entry *e = l->entries[i];
            H_CHECK(e->id.len == 32, "list page %zu: an entry id of %zu bytes", ret->pages,
                    e->id.len);
            char id[33];
            memcpy(id, e->id.data, 32);
            id[32] = '\0';
            H_CHECK(admin_listing_find(ret, id) < 0, "list page %zu: entry %s is listed twice",
                    ret->pages, id);
            memcpy(ret->ids[ret->n], id, sizeof(id));
            ret->spiffe_ids[ret->n] = strndup((const char *)e->spiffe_id.data, e->spiffe_id.len);
            H_CHECK(ret->spiffe_ids[ret->n], "out of memory");
            ret->revisions[ret->n] = e->revision;
            ret->n++;
        }
        size_t tlen = l->next_page_token.len;
        H_CHECK(tlen < sizeof(token), "list page %zu: a page token of %zu bytes", ret->pages, tlen);
        if (tlen)
            memcpy(token, l->next_page_token.data, tlen);
        token[tlen] = '\0';
        H_CHECK(tlen == 0 || l->n_entries > 0,
                "list page %zu: an empty page with a next page token", ret->pages);
        sockid__admin__response__free_unpacked(resp, NULL);
        if (tlen == 0)
            break;
    }
    (void)close(fd);
}

/* --- tokens ------------------------------------------------------------------ */

int proto_fetch_token_bytes(int fd, const ProtobufCBinaryData *audiences, size_t n,
                            ProtobufCBinaryData spiffe_id, Sockid__Workload__Response **ret)
{
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__FetchTokenRequest f = SOCKID__WORKLOAD__FETCH_TOKEN_REQUEST__INIT;
    f.audiences = (ProtobufCBinaryData *)audiences;
    f.n_audiences = n;
    f.spiffe_id = spiffe_id;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN;
    req.fetch_token = &f;
    int r = proto_send(fd, &req);
    if (r < 0)
        return r;
    return proto_recv(fd, H_TIMEOUT_MS, ret);
}

int proto_fetch_token(int fd, const char *const *audiences, size_t n, const char *spiffe_id,
                      Sockid__Workload__Response **ret)
{
    ProtobufCBinaryData auds[64];
    if (n > sizeof(auds) / sizeof(auds[0]))
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        auds[i] = h_bytes(audiences[i]);
    return proto_fetch_token_bytes(fd, auds, n, h_bytes(spiffe_id), ret);
}

int proto_fetch_bundle(int fd, Sockid__Workload__Response **ret)
{
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__FetchBundleRequest b = SOCKID__WORKLOAD__FETCH_BUNDLE_REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE;
    req.fetch_bundle = &b;
    int r = proto_send(fd, &req);
    if (r < 0)
        return r;
    return proto_recv(fd, H_TIMEOUT_MS, ret);
}

int proto_validate(int fd, const char *token, const char *audience,
                   Sockid__Workload__Response **ret)
{
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__ValidateRequest v = SOCKID__WORKLOAD__VALIDATE_REQUEST__INIT;
    v.token = h_bytes(token);
    v.audience = h_bytes(audience);
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE;
    req.validate = &v;
    int r = proto_send(fd, &req);
    if (r < 0)
        return r;
    return proto_recv(fd, H_TIMEOUT_MS, ret);
}

int admin_send_create_full(int fd, const char *spiffe_id, const char *const *selectors, size_t n,
                           uint32_t ttl_seconds, const char *const *audiences, size_t n_audiences)
{
    ProtobufCBinaryData sels[64], auds[64];
    if (n > sizeof(sels) / sizeof(sels[0]) || n_audiences > sizeof(auds) / sizeof(auds[0]))
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        sels[i] = h_bytes(selectors[i]);
    for (size_t i = 0; i < n_audiences; i++)
        auds[i] = h_bytes(audiences[i]);
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__CreateEntryRequest c = SOCKID__ADMIN__CREATE_ENTRY_REQUEST__INIT;
    c.spiffe_id = h_bytes(spiffe_id);
    c.selectors = sels;
    c.n_selectors = n;
    c.ttl_seconds = ttl_seconds;
    c.audiences = auds;
    c.n_audiences = n_audiences;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_CREATE_ENTRY;
    req.create_entry = &c;
    return admin_send(fd, &req);
}

int admin_send_rotate_key(int fd)
{
    Sockid__Admin__Request req = SOCKID__ADMIN__REQUEST__INIT;
    Sockid__Admin__RotateKeyRequest k = SOCKID__ADMIN__ROTATE_KEY_REQUEST__INIT;
    req.kind_case = SOCKID__ADMIN__REQUEST__KIND_ROTATE_KEY;
    req.rotate_key = &k;
    return admin_send(fd, &req);
}
