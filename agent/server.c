/* The workload socket: listen, accept, frame, dispatch, reply, time out.
 *
 * Every byte a client sends is bounded before it is looked at: the frame
 * length before the payload is read, the payload's decoded size by the
 * request arena, the connection count per uid at accept, and the time a
 * partial frame or an idle connection may hold a slot. */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "frame.h"
#include "log.h"
#include "workload.h"

/* Largest response the agent sends (a bundle or many tokens fit easily). */
#define RESPONSE_MAX (4u * 1024u * 1024u)
/* Input buffer a connection starts with; grown to the announced frame. */
#define CONN_IN_INITIAL 512u
/* Time a stopping agent gives clients to take their last answers. */
#define STOP_GRACE_MS 5000u
#define ACCEPT_BURST 64
/* Tokens one event loop keeps signed and ready. */
#define TOKEN_CACHE_SIZE 4096u
#define EPOLL_BATCH 64

struct uid_slot {
    uid_t uid;
    uint32_t count;
};

struct conn {
    int fd;
    bool admin; /* came in on the admin socket */
    struct peer peer;
    bool captured;
    bool closing; /* close once the output is flushed */
    int capture_error;
    char capture_reason[256];
    pid_t cred_pid; /* SO_PEERCRED, for logs and limits */
    uid_t cred_uid;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_off;
    uint64_t frame_started_ms; /* 0: no partial frame */
    uint64_t last_active_ms;
    struct conn *prev, *next;
};

struct loop {
    int epfd;
    struct conn *conns;
    size_t n_conns;
    struct arena arena;
    uint8_t *arena_buf;
    struct selector_set *selectors;
    uint8_t *out_buf;
    size_t out_cap;
    struct workload_ctx wctx;
    struct entries_reader reader;
    struct keys_reader keys_reader;
    const struct entries_snapshot *seen_entries; /* what the cache was pruned for */
    const struct keyset *seen_keyset;
    struct token_cache *tokens;
    uint64_t next_sweep_ms;
};

struct server {
    const struct config *cfg;
    const struct attest *attest;
    struct admin *admin;
    struct entries_registry *registry;
    struct keys *keys;
    struct peer_features features;
    int listen_fd;
    int admin_fd;
    int lock_fd;
    int signal_fd;
    bool socket_created;
    bool admin_created;
    struct uid_slot *uids;
    size_t n_uids;
    size_t n_conns;
    uint64_t started_ms;
    bool stopping;
    uint64_t stop_deadline_ms;
    struct loop loop;
};

/* Tags for the non-connection fds in the epoll set. */
static char tag_listen, tag_admin, tag_signal;

static void set_err(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- socket setup ------------------------------------------------------ */

static int mkdir_parents(const char *path, mode_t mode)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    char *dir = dirname(copy);
    int r = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, mode) < 0 && errno != EEXIST)
            r = -errno;
        *p = '/';
        if (r < 0)
            break;
    }
    if (r == 0 && mkdir(dir, mode) < 0 && errno != EEXIST)
        r = -errno;
    free(copy);
    return r;
}

/* Something already at path: an agent answering there, a stale socket
 * (removed), or not a socket at all (refused). */
static int clear_socket_path(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        set_err(err, err_len, "%s exists and is not a socket; remove it or choose another --socket",
                path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    int e = errno;
    (void)close(fd);
    if (r == 0) {
        set_err(err, err_len,
                "another agent already answers on %s; stop it or choose another socket path",
                path);
        return -EADDRINUSE;
    }
    if (e != ECONNREFUSED) {
        set_err(err, err_len, "cannot tell whether an agent answers on %s: %s", path, strerror(e));
        return -e;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        set_err(err, err_len, "cannot remove the stale socket %s: %s", path, strerror(errno));
        return -errno;
    }
    log_info("removed stale socket %s", path);
    return 0;
}

/* Binds a listening socket at path with a deliberate mode, not whatever
 * umask we inherited. */
static int listen_unix(const char *path, uint32_t mode, int *ret_fd, char *err, size_t err_len)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        set_err(err, err_len, "socket path %s is longer than %zu bytes; choose a shorter path",
                path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int r = mkdir_parents(path, 0755);
    if (r < 0) {
        set_err(err, err_len, "cannot create the directory of %s: %s", path, strerror(-r));
        return r;
    }
    r = clear_socket_path(path, err, err_len);
    if (r < 0)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        set_err(err, err_len, "cannot create a socket: %s", strerror(errno));
        return r;
    }
    mode_t old = umask(0777 & ~(mode_t)mode);
    r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int e = errno;
    (void)umask(old);
    if (r < 0) {
        set_err(err, err_len, "cannot bind %s: %s", path, strerror(e));
        (void)close(fd);
        return -e;
    }
    if (chmod(path, (mode_t)mode) < 0 || listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        set_err(err, err_len, "cannot set up %s: %s", path, strerror(errno));
        (void)unlink(path);
        (void)close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

static int server_listen(struct server *s, char *err, size_t err_len)
{
    const char *path = s->cfg->socket_path;
    struct sockaddr_un addr;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        set_err(err, err_len, "socket path %s is longer than %zu bytes; choose a shorter --socket",
                path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    int r = mkdir_parents(path, 0755);
    if (r < 0) {
        set_err(err, err_len, "cannot create the directory of %s: %s", path, strerror(-r));
        return r;
    }
    /* The lock, held for the agent's life, settles a race between two agents
     * starting at once; the connect probe catches an agent without it. */
    char lock_path[sizeof(addr.sun_path) + 8];
    (void)snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
    s->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->lock_fd < 0) {
        r = -errno;
        set_err(err, err_len, "cannot open lock file %s: %s", lock_path, strerror(errno));
        return r;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        if (errno == EWOULDBLOCK)
            set_err(err, err_len,
                    "another sockid-agent is running on %s (it holds %s); stop it or choose "
                    "another --socket",
                    path, lock_path);
        else
            set_err(err, err_len, "cannot lock %s: %s", lock_path, strerror(errno));
        return r == -EWOULDBLOCK ? -EADDRINUSE : r;
    }
    /* The admin socket first: once the workload socket answers, both do
     * (scripts wait for the workload socket, then manage entries). It is
     * closed to all but the agent's user by default; every call on it is
     * authorized again by the caller's credentials. */
    r = listen_unix(s->cfg->admin_socket_path, s->cfg->admin_socket_mode, &s->admin_fd, err,
                    err_len);
    if (r < 0)
        return r;
    s->admin_created = true;
    /* The workload socket is open to every local user by default, because
     * identity comes from attestation, not from who can connect. */
    r = listen_unix(path, s->cfg->socket_mode, &s->listen_fd, err, err_len);
    if (r < 0)
        return r;
    s->socket_created = true;
    return 0;
}

/* --- per-uid connection counts ---------------------------------------- */

/* A compact array scanned on accept only: its length is the number of
 * distinct uids connected, a handful on most hosts. */
static struct uid_slot *uid_find(struct server *s, uid_t uid)
{
    for (size_t i = 0; i < s->n_uids; i++)
        if (s->uids[i].uid == uid)
            return &s->uids[i];
    return NULL;
}

static uint32_t uid_count(struct server *s, uid_t uid)
{
    struct uid_slot *slot = uid_find(s, uid);
    return slot ? slot->count : 0;
}

static void uid_add(struct server *s, uid_t uid)
{
    struct uid_slot *slot = uid_find(s, uid);
    if (!slot) {
        /* n_uids <= n_conns < max_connections, the array's size. */
        slot = &s->uids[s->n_uids++];
        *slot = (struct uid_slot){.uid = uid};
    }
    slot->count++;
}

static void uid_remove(struct server *s, uid_t uid)
{
    struct uid_slot *slot = uid_find(s, uid);
    if (slot && --slot->count == 0)
        *slot = s->uids[--s->n_uids];
}

/* --- connections ------------------------------------------------------- */

static void conn_close(struct server *s, struct conn *c)
{
    struct loop *l = &s->loop;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->n_conns--;
    s->n_conns--;
    uid_remove(s, c->cred_uid);
    (void)close(c->fd);
    peer_release(&c->peer);
    free(c->in);
    free(c->out);
    free(c);
}

static int conn_watch(struct server *s, struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(s->loop.epfd, op, c->fd, &ev) < 0 ? -errno : 0;
}

/* Sends what it can now; keeps the rest for EPOLLOUT. Returns 0, or a
 * negative errno when the connection is dead. */
static int conn_send(struct server *s, struct conn *c, const uint8_t *buf, size_t len)
{
    size_t sent = 0;
    while (sent < len) {
        ssize_t w = send(c->fd, buf + sent, len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0)
            return -errno;
        sent += (size_t)w;
    }
    if (sent == len)
        return 0;
    c->out = malloc(len - sent);
    if (!c->out)
        return -ENOMEM;
    memcpy(c->out, buf + sent, len - sent);
    c->out_len = len - sent;
    c->out_off = 0;
    return conn_watch(s, c, EPOLLOUT, EPOLL_CTL_MOD);
}

/* Packs resp (a workload or admin Response) into a frame and sends it. */
static int conn_reply(struct server *s, struct conn *c, const ProtobufCMessage *resp)
{
    struct loop *l = &s->loop;
    size_t size = protobuf_c_message_get_packed_size(resp);
    if (size == 0 || size > RESPONSE_MAX) {
        log_error("a response of %zu bytes is over the %u-byte limit; closing the connection "
                  "of pid %ld",
                  size, RESPONSE_MAX, (long)c->cred_pid);
        return -EMSGSIZE;
    }
    if (l->out_cap < FRAME_HEADER_SIZE + size) {
        uint8_t *b = realloc(l->out_buf, FRAME_HEADER_SIZE + size);
        if (!b)
            return -ENOMEM;
        l->out_buf = b;
        l->out_cap = FRAME_HEADER_SIZE + size;
    }
    frame_put_header(l->out_buf, (uint32_t)size);
    (void)protobuf_c_message_pack(resp, l->out_buf + FRAME_HEADER_SIZE);
    return conn_send(s, c, l->out_buf, FRAME_HEADER_SIZE + size);
}

/* Replies with an error outside of any request handler. */
static int conn_reply_error(struct server *s, struct conn *c, Sockid__ErrorCode code,
                            const char *msg)
{
    struct loop *l = &s->loop;
    arena_reset(&l->arena);
    if (c->admin) {
        Sockid__Admin__Response resp = SOCKID__ADMIN__RESPONSE__INIT;
        admin_error(&l->arena, &resp, code, "%s", msg);
        return conn_reply(s, c, &resp.base);
    }
    Sockid__Workload__Response resp = SOCKID__WORKLOAD__RESPONSE__INIT;
    workload_error(&l->wctx, &resp, code, "%s", msg);
    return conn_reply(s, c, &resp.base);
}

static bool cache_keep(void *opaque, const char *entry_id, const char *kid)
{
    const struct loop *l = opaque;
    const struct key *active = keyset_active(l->wctx.keyset);
    return active && strcmp(kid, active->kid) == 0 &&
           entries_snapshot_find(l->wctx.entries, entry_id) != NULL;
}

/* Picks up the current entries and keys for this request (one atomic load
 * each when nothing changed), and evicts the cached tokens a change made
 * stale: those of deleted entries and of keys no longer active. */
static void loop_refresh(struct server *s, struct loop *l)
{
    l->wctx.entries = entries_reader_get(s->registry, &l->reader);
    l->wctx.keyset = keys_reader_get(s->keys, &l->keys_reader);
    l->wctx.now = (int64_t)time(NULL);
    if (l->wctx.entries != l->seen_entries || l->wctx.keyset != l->seen_keyset) {
        token_cache_retain(l->tokens, cache_keep, l);
        l->seen_entries = l->wctx.entries;
        l->seen_keyset = l->wctx.keyset;
    }
}

static int conn_handle_admin(struct server *s, struct conn *c, const uint8_t *payload,
                             uint32_t len)
{
    struct loop *l = &s->loop;
    Sockid__Admin__Response resp = SOCKID__ADMIN__RESPONSE__INIT;
    Sockid__Admin__Request *req = sockid__admin__request__unpack(&l->arena.allocator, len, payload);
    if (!req) {
        const char *msg = l->arena.exhausted
                              ? "the request needs more memory to decode than request_memory "
                                "allows; send fewer or smaller fields"
                              : "the request is not a valid sockid.admin.Request protobuf message";
        log_refusal(c->cred_pid, c->cred_uid, "admin", msg);
        admin_error(&l->arena, &resp,
                    l->arena.exhausted ? SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED
                                       : SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                    "%s", msg);
        return conn_reply(s, c, &resp.base);
    }
    struct admin_caller caller = {
        .pid = c->cred_pid,
        .uid = c->cred_uid,
        .gid = c->captured ? c->peer.gid : (gid_t)-1,
        .groups = c->peer.groups,
        .n_groups = c->peer.n_groups,
        .known = c->captured,
    };
    struct entries_snapshot *hold = NULL;
    admin_handle(s->admin, &l->arena, &caller, req, &resp, &hold);
    int r = conn_reply(s, c, &resp.base);
    entries_snapshot_unref(hold);
    return r;
}

static int conn_handle_frame(struct server *s, struct conn *c, const uint8_t *payload,
                             uint32_t len)
{
    struct loop *l = &s->loop;
    arena_reset(&l->arena);
    if (c->admin)
        return conn_handle_admin(s, c, payload, len);
    Sockid__Workload__Response resp = SOCKID__WORKLOAD__RESPONSE__INIT;
    Sockid__Workload__Request *req =
        sockid__workload__request__unpack(&l->arena.allocator, len, payload);
    if (!req) {
        char msg[160];
        if (l->arena.exhausted)
            (void)snprintf(msg, sizeof(msg),
                           "the request needs more than %u bytes of memory to decode "
                           "(request_memory); send fewer or smaller fields",
                           s->cfg->request_memory);
        else
            (void)snprintf(msg, sizeof(msg),
                           "the request is not a valid sockid.workload.Request protobuf message");
        log_refusal(c->cred_pid, c->cred_uid, "unknown", msg);
        workload_error(&l->wctx, &resp,
                       l->arena.exhausted ? SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED
                                          : SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                       "%s", msg);
        return conn_reply(s, c, &resp.base);
    }
    struct workload_peer wp = {
        .peer = c->captured ? &c->peer : NULL,
        .capture_error = c->capture_error,
        .capture_reason = c->capture_reason,
        .pid = c->cred_pid,
        .uid = c->cred_uid,
    };
    loop_refresh(s, l);
    workload_handle(&l->wctx, &wp, req, &resp);
    /* Memory of req and resp belongs to the arena, reset per request. */
    return conn_reply(s, c, &resp.base);
}

/* Answers every whole frame in the input buffer, in order, until output
 * backs up. Returns a negative errno when the connection must close now. */
static int conn_process(struct server *s, struct conn *c)
{
    while (!c->out_len && !c->closing && c->in_len > 0) {
        uint32_t len;
        int r = frame_parse(c->in, c->in_len, s->cfg->max_frame, &len);
        if (r == 0)
            break;
        if (r < 0) {
            /* The stream cannot be resynchronised after a bad length:
             * answer, then close. */
            char msg[160];
            if (r == -EMSGSIZE)
                (void)snprintf(msg, sizeof(msg),
                               "frame of %u bytes is over the limit of %u bytes (max_frame)",
                               (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 |
                                   (uint32_t)c->in[2] << 8 | c->in[3],
                               s->cfg->max_frame);
            else
                (void)snprintf(msg, sizeof(msg),
                               "empty frame: every request is a non-empty protobuf message");
            log_refusal(c->cred_pid, c->cred_uid, "frame", msg);
            c->closing = true;
            c->in_len = 0;
            r = conn_reply_error(s, c, SOCKID__ERROR_CODE__INVALID_ARGUMENT, msg);
            if (r < 0)
                return r;
            /* Answer sent whole: close now; otherwise after the flush. */
            return c->out_len ? 0 : -ECONNRESET;
        }
        r = conn_handle_frame(s, c, c->in + FRAME_HEADER_SIZE, len);
        if (r < 0)
            return r;
        size_t used = FRAME_HEADER_SIZE + len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        c->frame_started_ms = c->in_len ? now_ms() : 0;
    }
    /* Give back a buffer grown for a large frame. */
    if (c->in_len == 0 && c->in_cap > CONN_IN_INITIAL) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

static int conn_read(struct server *s, struct conn *c)
{
    size_t want = CONN_IN_INITIAL;
    if (c->in_len >= FRAME_HEADER_SIZE) {
        /* The header passed frame_parse's limit check in conn_process. */
        uint32_t n = (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 |
                     (uint32_t)c->in[2] << 8 | c->in[3];
        if (FRAME_HEADER_SIZE + (size_t)n > want)
            want = FRAME_HEADER_SIZE + (size_t)n;
    }
    if (c->in_cap < want) {
        uint8_t *b = realloc(c->in, want);
        if (!b)
            return -ENOMEM;
        c->in = b;
        c->in_cap = want;
    }
    if (c->in_len == c->in_cap)
        return 0; /* full of whole frames waiting for output to drain */
    ssize_t r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
    if (r == 0)
        return -ECONNRESET;
    if (r < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    uint64_t now = now_ms();
    if (c->in_len == 0)
        c->frame_started_ms = now;
    c->in_len += (size_t)r;
    c->last_active_ms = now;
    return conn_process(s, c);
}

static int conn_flush(struct server *s, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w < 0)
            return -errno;
        c->out_off += (size_t)w;
        c->last_active_ms = now_ms();
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (c->closing)
        return -ECONNRESET;
    int r = conn_watch(s, c, EPOLLIN, EPOLL_CTL_MOD);
    return r < 0 ? r : conn_process(s, c);
}

/* Refuses a connection over a limit: one error frame, then close. */
static void reject(struct server *s, int fd, bool admin, pid_t pid, uid_t uid, const char *msg)
{
    log_refusal(pid, uid, "connect", msg);
    struct loop *l = &s->loop;
    arena_reset(&l->arena);
    Sockid__Workload__Response wresp = SOCKID__WORKLOAD__RESPONSE__INIT;
    Sockid__Admin__Response aresp = SOCKID__ADMIN__RESPONSE__INIT;
    const ProtobufCMessage *resp = admin ? &aresp.base : &wresp.base;
    if (admin)
        admin_error(&l->arena, &aresp, SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED, "%s", msg);
    else
        workload_error(&l->wctx, &wresp, SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED, "%s", msg);
    size_t size = protobuf_c_message_get_packed_size(resp);
    uint8_t buf[FRAME_HEADER_SIZE + 1024];
    if (size <= sizeof(buf) - FRAME_HEADER_SIZE) {
        frame_put_header(buf, (uint32_t)size);
        (void)protobuf_c_message_pack(resp, buf + FRAME_HEADER_SIZE);
        (void)send(fd, buf, FRAME_HEADER_SIZE + size, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    (void)close(fd);
}

static void conn_open(struct server *s, int fd, bool admin)
{
    struct ucred cred = {0};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        log_warn("cannot read SO_PEERCRED of a new connection: %s", strerror(errno));
        (void)close(fd);
        return;
    }
    char msg[200];
    if (s->n_conns >= s->cfg->max_connections) {
        (void)snprintf(msg, sizeof(msg),
                       "the agent has %u connections open, its limit (max_connections); "
                       "try again later",
                       s->cfg->max_connections);
        reject(s, fd, admin, cred.pid, cred.uid, msg);
        return;
    }
    if (uid_count(s, cred.uid) >= s->cfg->max_connections_per_uid) {
        (void)snprintf(msg, sizeof(msg),
                       "uid %lu has %u connections open, the per-uid limit "
                       "(max_connections_per_uid); close idle connections",
                       (unsigned long)cred.uid, s->cfg->max_connections_per_uid);
        reject(s, fd, admin, cred.pid, cred.uid, msg);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        (void)close(fd);
        return;
    }
    c->fd = fd;
    c->admin = admin;
    c->peer = (struct peer)PEER_INIT;
    c->cred_pid = cred.pid;
    c->cred_uid = cred.uid;
    c->last_active_ms = now_ms();
    int r = peer_capture(fd, &s->features, s->cfg->require_peer_pidfd, &c->peer,
                         c->capture_reason, sizeof(c->capture_reason));
    if (r == 0) {
        c->captured = true;
    } else {
        /* Kept open so that the first request gets the reason as its answer;
         * every identity request on it is refused. */
        c->capture_error = r;
        c->peer = (struct peer)PEER_INIT;
    }
    if (conn_watch(s, c, EPOLLIN, EPOLL_CTL_ADD) < 0) {
        peer_release(&c->peer);
        free(c);
        (void)close(fd);
        return;
    }
    struct loop *l = &s->loop;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->n_conns++;
    s->n_conns++;
    uid_add(s, cred.uid);
}

static void accept_ready(struct server *s, int listen_fd, bool admin)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept failed: %s", strerror(errno));
            return;
        }
        conn_open(s, fd, admin);
    }
}

/* Closes connections whose partial frame or idleness outlived its limit. */
static void sweep(struct server *s, uint64_t now)
{
    const struct config *cfg = s->cfg;
    struct conn *next;
    for (struct conn *c = s->loop.conns; c; c = next) {
        next = c->next;
        if (c->out_len) {
            if (now - c->last_active_ms > cfg->idle_timeout_ms)
                conn_close(s, c);
        } else if (c->in_len > 0 && now - c->frame_started_ms > cfg->frame_timeout_ms) {
            char msg[128];
            (void)snprintf(msg, sizeof(msg),
                           "partial frame not completed within %u ms (frame_timeout_ms)",
                           cfg->frame_timeout_ms);
            log_refusal(c->cred_pid, c->cred_uid, "frame", msg);
            conn_close(s, c);
        } else if (c->in_len == 0 && now - c->last_active_ms > cfg->idle_timeout_ms) {
            conn_close(s, c);
        }
    }
}

static uint32_t sweep_interval_ms(const struct config *cfg)
{
    uint32_t t = cfg->frame_timeout_ms < cfg->idle_timeout_ms ? cfg->frame_timeout_ms
                                                              : cfg->idle_timeout_ms;
    t /= 4;
    return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

static void begin_stop(struct server *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->stop_deadline_ms = now_ms() + STOP_GRACE_MS;
    log_info("stopping: no new connections, finishing %zu open ones", s->n_conns);
    (void)close(s->listen_fd);
    (void)close(s->admin_fd);
    s->listen_fd = s->admin_fd = -1;
    if (s->socket_created && unlink(s->cfg->socket_path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", s->cfg->socket_path, strerror(errno));
    if (s->admin_created && unlink(s->cfg->admin_socket_path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", s->cfg->admin_socket_path, strerror(errno));
    s->socket_created = s->admin_created = false;
    /* Whatever is not waiting for its answer to drain is done. */
    struct conn *next;
    for (struct conn *c = s->loop.conns; c; c = next) {
        next = c->next;
        if (c->out_len)
            c->closing = true;
        else
            conn_close(s, c);
    }
}

int server_run(struct server *s)
{
    struct loop *l = &s->loop;
    struct epoll_event events[EPOLL_BATCH];
    uint32_t interval = sweep_interval_ms(s->cfg);
    l->next_sweep_ms = now_ms() + interval;
    log_info("listening on %s and %s (admin) (pid %ld)", s->cfg->socket_path,
             s->cfg->admin_socket_path, (long)getpid());

    while (!s->stopping || (l->n_conns > 0 && now_ms() < s->stop_deadline_ms)) {
        int n = epoll_wait(l->epfd, events, EPOLL_BATCH, (int)interval);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait failed: %s", strerror(errno));
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &tag_listen || tag == &tag_admin) {
                if (!s->stopping)
                    accept_ready(s, tag == &tag_admin ? s->admin_fd : s->listen_fd,
                                 tag == &tag_admin);
                continue;
            }
            if (tag == &tag_signal) {
                struct signalfd_siginfo si;
                if (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    log_info("received signal %u", si.ssi_signo);
                begin_stop(s);
                /* begin_stop closed connections that later events in this
                 * batch may name; what is left open is reported again by
                 * the next epoll_wait. */
                break;
            }
            struct conn *c = tag;
            int r = 0;
            if (events[i].events & EPOLLOUT)
                r = conn_flush(s, c);
            if (r == 0 && !c->out_len && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                r = conn_read(s, c);
            if (r < 0)
                conn_close(s, c);
        }
        uint64_t now = now_ms();
        if (now >= l->next_sweep_ms) {
            sweep(s, now);
            admin_maintain_keys(s->admin, (int64_t)time(NULL));
            l->next_sweep_ms = now + interval;
        }
    }
    while (l->conns)
        conn_close(s, l->conns);
    log_info("stopped");
    return 0;
}

int server_new(const struct config *cfg, const struct attest *attest, struct admin *admin,
               struct entries_registry *registry, struct keys *keys,
               const struct peer_features *features, struct server **ret, char *err,
               size_t err_len)
{
    struct server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->cfg = cfg;
    s->attest = attest;
    s->admin = admin;
    s->registry = registry;
    s->keys = keys;
    s->features = *features;
    s->listen_fd = s->admin_fd = s->lock_fd = s->signal_fd = -1;
    s->loop.epfd = -1;
    s->started_ms = now_ms();
    int r;

    struct loop *l = &s->loop;
    s->uids = calloc(cfg->max_connections, sizeof(*s->uids));
    l->arena_buf = malloc(cfg->request_memory);
    l->selectors = malloc(sizeof(*l->selectors));
    if (!s->uids || !l->arena_buf || !l->selectors ||
        token_cache_new(TOKEN_CACHE_SIZE, &l->tokens) < 0) {
        r = -ENOMEM;
        set_err(err, err_len, "out of memory");
        goto fail;
    }
    arena_init(&l->arena, l->arena_buf, cfg->request_memory);
    selector_set_clear(l->selectors);
    l->wctx = (struct workload_ctx){
        .cfg = cfg,
        .attest = attest,
        .features = &s->features,
        .started_ms = s->started_ms,
        .arena = &l->arena,
        .selectors = l->selectors,
        .tokens = l->tokens,
    };

    r = server_listen(s, err, err_len);
    if (r < 0)
        goto fail;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->signal_fd < 0 || l->epfd < 0) {
        r = -errno;
        set_err(err, err_len, "cannot set up the event loop: %s", strerror(errno));
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &tag_listen};
    struct epoll_event aev = {.events = EPOLLIN, .data.ptr = &tag_admin};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &tag_signal};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->admin_fd, &aev) < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->signal_fd, &sev) < 0) {
        r = -errno;
        set_err(err, err_len, "cannot set up the event loop: %s", strerror(errno));
        goto fail;
    }
    *ret = s;
    return 0;
fail:
    server_free(s);
    return r;
}

struct server *server_free(struct server *s)
{
    if (!s)
        return NULL;
    while (s->loop.conns)
        conn_close(s, s->loop.conns);
    if (s->listen_fd >= 0)
        (void)close(s->listen_fd);
    if (s->admin_fd >= 0)
        (void)close(s->admin_fd);
    if (s->socket_created)
        (void)unlink(s->cfg->socket_path);
    if (s->admin_created)
        (void)unlink(s->cfg->admin_socket_path);
    entries_reader_release(&s->loop.reader);
    keys_reader_release(&s->loop.keys_reader);
    token_cache_free(s->loop.tokens);
    if (s->signal_fd >= 0)
        (void)close(s->signal_fd);
    if (s->loop.epfd >= 0)
        (void)close(s->loop.epfd);
    if (s->lock_fd >= 0)
        (void)close(s->lock_fd);
    free(s->loop.arena_buf);
    free(s->loop.selectors);
    free(s->loop.out_buf);
    free(s->uids);
    free(s);
    return NULL;
}
