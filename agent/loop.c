/* One event loop: accept, frame, dispatch, reply, time out (DESIGN §5).
 *
 * Each loop is a thread with its own epoll set; the listening sockets are
 * in every set with EPOLLEXCLUSIVE, so one loop wakes per connection, and a
 * connection lives on the loop that accepted it until it closes. Everything
 * a request touches is the loop's own (request arena, selector scratch,
 * token cache, counters) or read without a lock (entry snapshot, keyset).
 *
 * Every byte a client sends is bounded before it is looked at: the frame
 * length before the payload is read, the payload's decoded size by the
 * request arena, the connection count per uid at accept, and the time a
 * partial frame or an idle connection may hold a slot.
 *
 * Loop 0 also serves the optional metrics socket: one HTTP/1.0 request per
 * connection, answered with the Prometheus text and closed. Those
 * connections are the operator's scraper, not workloads: they are neither
 * attested nor counted against the connection limits or in the counters,
 * and have limits of their own (METRICS_CONNS_MAX open, METRICS_TIMEOUT_MS
 * to send the request head and take the answer). Scrapes are rare and an
 * answer takes microseconds to render, so one loop is enough, and the
 * other loops never see the socket. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "frame.h"
#include "log.h"
#include "metrics.h"
#include "server_internal.h"
#include "workload.h"

/* Largest response the agent sends (a bundle or many tokens fit easily). */
#define RESPONSE_MAX (4u * 1024u * 1024u)
/* Input buffer a connection starts with; grown to the announced frame. */
#define CONN_IN_INITIAL 512u
#define ACCEPT_BURST    64
/* Tokens one event loop keeps signed and ready. */
#define TOKEN_CACHE_SIZE 4096u
#define EPOLL_BATCH      64
/* How long a loop out of file descriptors stops accepting. */
#define ACCEPT_PAUSE_MS 100u
/* Metrics connections open at once; more are closed at accept. */
#define METRICS_CONNS_MAX 16u
/* Time a metrics client has to send its request head, and to take each
 * part of the answer. */
#define METRICS_TIMEOUT_MS 2000u

struct conn {
    int fd;
    bool admin;   /* came in on the admin socket */
    bool metrics; /* came in on the metrics socket: HTTP, not framed */
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
    struct server *srv;
    unsigned index;
    int epfd;
    bool stopping; /* this loop has seen the stop */
    struct conn *conns;
    size_t n_conns;   /* every kind */
    size_t n_metrics; /* of which on the metrics socket */
    struct arena arena;
    uint8_t *arena_buf;
    struct selector_set *selectors;
    struct attest_cache *attest_cache;
    uint8_t *out_buf;
    size_t out_cap;
    struct workload_ctx wctx;
    struct entries_reader reader;
    struct keys_reader keys_reader;
    const struct entries_snapshot *seen_entries; /* what the cache was pruned for */
    const struct keyset *seen_keyset;
    struct token_cache *tokens;
    uint64_t next_sweep_ms;
    uint64_t next_watchdog_ms;
    uint64_t accept_paused_until; /* out of fds: listening sockets unwatched */
    uint64_t emfile_logged_ms;
    _Atomic uint64_t heartbeat_ms;
    struct stats stats;
};

/* Tags for the non-connection fds in the epoll set. */
static char tag_listen, tag_admin, tag_metrics, tag_signal, tag_stop;

static uint64_t now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const struct stats *loop_stats(const struct loop *l)
{
    return &l->stats;
}

uint64_t loop_heartbeat_ms(const struct loop *l)
{
    return atomic_load_explicit(&l->heartbeat_ms, memory_order_relaxed);
}

/* Loop 0 feeds the service manager's watchdog, but only while every loop
 * goes round: a loop stuck in a plugin stops the feeding, and systemd
 * restarts the agent. */
static void feed_watchdog(struct loop *l, uint64_t now)
{
    struct server *s = l->srv;
    uint64_t limit = s->watchdog_us / 2000u;
    for (unsigned i = 0; i < s->n_loops; i++) {
        uint64_t beat = loop_heartbeat_ms(s->loops[i]);
        if (now > beat && now - beat > limit) {
            log_error("event loop %u has not gone round for %llu ms; no longer feeding the "
                      "watchdog",
                      i, (unsigned long long)(now - beat));
            return;
        }
    }
    (void)sd_notify(0, "WATCHDOG=1");
}

/* --- connections ------------------------------------------------------- */

/* Puts c on l's list of connections; conn_close takes it off. */
static void conn_link(struct loop *l, struct conn *c)
{
    c->prev = NULL;
    c->next = l->conns;
    if (l->conns)
        l->conns->prev = c;
    l->conns = c;
    l->n_conns++;
}

static void conn_close(struct loop *l, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->n_conns--;
    if (c->metrics) {
        l->n_metrics--;
    } else {
        stats_sub(&l->stats.connections_open, 1);
        server_conn_release(l->srv, c->cred_uid);
    }
    (void)close(c->fd);
    peer_release(&c->peer);
    free(c->in);
    free(c->out);
    free(c);
}

static int conn_watch(struct loop *l, struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    return epoll_ctl(l->epfd, op, c->fd, &ev) < 0 ? -errno : 0;
}

/* Sends what it can now; keeps the rest for EPOLLOUT. Returns 0, or a
 * negative errno when the connection is dead. */
static int conn_send(struct loop *l, struct conn *c, const uint8_t *buf, size_t len)
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
    return conn_watch(l, c, EPOLLOUT, EPOLL_CTL_MOD);
}

/* Packs resp (a workload or admin Response) into a frame and sends it. */
static int conn_reply(struct loop *l, struct conn *c, const ProtobufCMessage *resp)
{
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
    return conn_send(l, c, l->out_buf, FRAME_HEADER_SIZE + size);
}

/* Replies with an error outside of any request handler. */
static int conn_reply_error(struct loop *l, struct conn *c, Sockid__ErrorCode code, const char *msg)
{
    arena_reset(&l->arena);
    if (c->admin) {
        Sockid__Admin__Response resp = SOCKID__ADMIN__RESPONSE__INIT;
        admin_error(&l->arena, &resp, code, "%s", msg);
        return conn_reply(l, c, &resp.base);
    }
    Sockid__Workload__Response resp = SOCKID__WORKLOAD__RESPONSE__INIT;
    workload_error(&l->wctx, &resp, code, "%s", msg);
    return conn_reply(l, c, &resp.base);
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
static void loop_refresh(struct loop *l)
{
    l->wctx.entries = entries_reader_get(l->srv->registry, &l->reader);
    l->wctx.keyset = keys_reader_get(l->srv->keys, &l->keys_reader);
    l->wctx.now = (int64_t)time(NULL);
    if (l->wctx.entries != l->seen_entries || l->wctx.keyset != l->seen_keyset) {
        token_cache_retain(l->tokens, cache_keep, l);
        /* Every loop that notices prunes the shared cache too: changes are
         * rare, and after the first the others find nothing to do. */
        (void)pthread_mutex_lock(&l->srv->shared_tokens.lock);
        token_cache_retain(l->srv->shared_tokens.cache, cache_keep, l);
        (void)pthread_mutex_unlock(&l->srv->shared_tokens.lock);
        l->seen_entries = l->wctx.entries;
        l->seen_keyset = l->wctx.keyset;
    }
}

static int conn_handle_admin(struct loop *l, struct conn *c, const uint8_t *payload, uint32_t len)
{
    Sockid__Admin__Response resp = SOCKID__ADMIN__RESPONSE__INIT;
    Sockid__Admin__Request *req = sockid__admin__request__unpack(&l->arena.allocator, len, payload);
    stats_add(&l->stats.requests[STATS_REQ_ADMIN], 1);
    if (!req) {
        const char *msg = l->arena.exhausted
                              ? "the request needs more memory to decode than request_memory "
                                "allows; send fewer or smaller fields"
                              : "the request is not a valid sockid.admin.Request protobuf message";
        log_refusal(c->cred_pid, c->cred_uid, "admin", msg);
        stats_add(&l->stats.refused[STATS_REF_INVALID], 1);
        admin_error(&l->arena, &resp,
                    l->arena.exhausted ? SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED
                                       : SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                    "%s", msg);
        return conn_reply(l, c, &resp.base);
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
    admin_handle(l->srv->admin, &l->arena, &caller, req, &resp, &hold);
    if (resp.kind_case == SOCKID__ADMIN__RESPONSE__KIND_ERROR)
        stats_add(&l->stats.refused[resp.error->code == SOCKID__ERROR_CODE__PERMISSION_DENIED
                                        ? STATS_REF_NOT_ADMIN
                                        : STATS_REF_INVALID],
                  1);
    int r = conn_reply(l, c, &resp.base);
    entries_snapshot_unref(hold);
    return r;
}

static enum stats_request request_kind(const Sockid__Workload__Request *req)
{
    switch (req->kind_case) {
    case SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI:
        return STATS_REQ_WHOAMI;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN:
        return STATS_REQ_FETCH_TOKEN;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE:
        return STATS_REQ_FETCH_BUNDLE;
    case SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE:
        return STATS_REQ_VALIDATE;
    case SOCKID__WORKLOAD__REQUEST__KIND_HEALTH:
        return STATS_REQ_HEALTH;
    default:
        return STATS_REQ_INVALID;
    }
}

static int conn_handle_frame(struct loop *l, struct conn *c, const uint8_t *payload, uint32_t len)
{
    uint64_t t0 = now_ns();
    arena_reset(&l->arena);
    int r;
    if (c->admin) {
        r = conn_handle_admin(l, c, payload, len);
        goto out;
    }
    Sockid__Workload__Response resp = SOCKID__WORKLOAD__RESPONSE__INIT;
    Sockid__Workload__Request *req =
        sockid__workload__request__unpack(&l->arena.allocator, len, payload);
    if (!req) {
        char msg[160];
        if (l->arena.exhausted)
            (void)snprintf(msg, sizeof(msg),
                           "the request needs more than %u bytes of memory to decode "
                           "(request_memory); send fewer or smaller fields",
                           l->srv->cfg->request_memory);
        else
            (void)snprintf(msg, sizeof(msg),
                           "the request is not a valid sockid.workload.Request protobuf message");
        log_refusal(c->cred_pid, c->cred_uid, "unknown", msg);
        stats_add(&l->stats.requests[STATS_REQ_INVALID], 1);
        stats_add(&l->stats.refused[STATS_REF_INVALID], 1);
        workload_error(&l->wctx, &resp,
                       l->arena.exhausted ? SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED
                                          : SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                       "%s", msg);
        r = conn_reply(l, c, &resp.base);
        goto out;
    }
    struct workload_peer wp = {
        .peer = c->captured ? &c->peer : NULL,
        .capture_error = c->capture_error,
        .capture_reason = c->capture_reason,
        .pid = c->cred_pid,
        .uid = c->cred_uid,
    };
    stats_add(&l->stats.requests[request_kind(req)], 1);
    loop_refresh(l);
    workload_handle(&l->wctx, &wp, req, &resp);
    /* Memory of req and resp belongs to the arena, reset per request. */
    r = conn_reply(l, c, &resp.base);
out:
    stats_observe(&l->stats.request_latency, now_ns() - t0);
    return r;
}

/* Answers every whole frame in the input buffer, in order, until output
 * backs up. Returns a negative errno when the connection must close now. */
static int conn_process(struct loop *l, struct conn *c)
{
    const struct config *cfg = l->srv->cfg;
    while (!c->out_len && !c->closing && c->in_len > 0) {
        uint32_t len;
        int r = frame_parse(c->in, c->in_len, cfg->max_frame, &len);
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
                               cfg->max_frame);
            else
                (void)snprintf(msg, sizeof(msg),
                               "empty frame: every request is a non-empty protobuf message");
            log_refusal(c->cred_pid, c->cred_uid, "frame", msg);
            stats_add(&l->stats.requests[STATS_REQ_INVALID], 1);
            stats_add(&l->stats.refused[STATS_REF_INVALID], 1);
            c->closing = true;
            c->in_len = 0;
            r = conn_reply_error(l, c, SOCKID__ERROR_CODE__INVALID_ARGUMENT, msg);
            if (r < 0)
                return r;
            /* Answer sent whole: close now; otherwise after the flush. */
            return c->out_len ? 0 : -ECONNRESET;
        }
        r = conn_handle_frame(l, c, c->in + FRAME_HEADER_SIZE, len);
        if (r < 0)
            return r;
        size_t used = FRAME_HEADER_SIZE + len;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        c->frame_started_ms = c->in_len ? server_now_ms() : 0;
    }
    /* Give back a buffer grown for a large frame. */
    if (c->in_len == 0 && c->in_cap > CONN_IN_INITIAL) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
    return 0;
}

static int conn_read(struct loop *l, struct conn *c)
{
    size_t want = CONN_IN_INITIAL;
    if (c->in_len >= FRAME_HEADER_SIZE) {
        /* The header passed frame_parse's limit check in conn_process. */
        uint32_t n = (uint32_t)c->in[0] << 24 | (uint32_t)c->in[1] << 16 | (uint32_t)c->in[2] << 8 |
                     c->in[3];
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
    uint64_t now = server_now_ms();
    if (c->in_len == 0)
        c->frame_started_ms = now;
    c->in_len += (size_t)r;
    c->last_active_ms = now;
    return conn_process(l, c);
}

static int conn_flush(struct loop *l, struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (w < 0)
            return -errno;
        c->out_off += (size_t)w;
        c->last_active_ms = server_now_ms();
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = 0;
    if (c->closing)
        return -ECONNRESET;
    int r = conn_watch(l, c, EPOLLIN, EPOLL_CTL_MOD);
    return r < 0 ? r : conn_process(l, c);
}

/* Refuses a connection over a limit: one error frame, then close. */
static void reject(struct loop *l, int fd, bool admin, pid_t pid, uid_t uid, const char *msg)
{
    log_refusal(pid, uid, "connect", msg);
    stats_add(&l->stats.connections_rejected, 1);
    stats_add(&l->stats.refused[STATS_REF_LIMIT], 1);
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

static void conn_open(struct loop *l, int fd, bool admin)
{
    struct server *s = l->srv;
    /* Read once: the limits, the logs and the peer capture all use it. */
    struct peer_cred cred;
    int r = peer_read_cred(fd, &cred);
    if (r < 0) {
        log_warn("cannot read SO_PEERCRED of a new connection: %s", strerror(-r));
        (void)close(fd);
        return;
    }
    char msg[200];
    if (!server_conn_admit(s, cred.uid, msg, sizeof(msg))) {
        reject(l, fd, admin, cred.pid, cred.uid, msg);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        server_conn_release(s, cred.uid);
        (void)close(fd);
        return;
    }
    c->fd = fd;
    c->admin = admin;
    c->peer = (struct peer)PEER_INIT;
    c->cred_pid = cred.pid;
    c->cred_uid = cred.uid;
    c->last_active_ms = server_now_ms();
    r = peer_capture(fd, &cred, &s->features, s->cfg->require_peer_pidfd, &c->peer,
                     c->capture_reason, sizeof(c->capture_reason));
    if (r == 0) {
        c->captured = true;
    } else {
        /* Kept open so that the first request gets the reason as its answer;
         * every identity request on it is refused. */
        c->capture_error = r;
        c->peer = (struct peer)PEER_INIT;
    }
    if (conn_watch(l, c, EPOLLIN, EPOLL_CTL_ADD) < 0) {
        server_conn_release(s, cred.uid);
        peer_release(&c->peer);
        free(c);
        (void)close(fd);
        return;
    }
    conn_link(l, c);
    stats_add(&l->stats.connections_accepted, 1);
    stats_add(&l->stats.connections_open, 1);
}

/* --- the metrics socket ------------------------------------------------- */

/* Answers a complete request head with the metrics, or with an HTTP error,
 * and closes once the answer is out. */
static int metrics_answer(struct loop *l, struct conn *c, int status, bool head_only)
{
    struct server *s = l->srv;
    char *body = NULL, *resp = NULL;
    size_t body_len = 0, resp_len = 0;
    if (status == 200) {
        struct metrics_input in;
        if (s->admin) {
            admin_metrics_input(s->admin, &in);
        } else {
            memset(&in, 0, sizeof(in));
            in.version = SOCKID_VERSION;
            in.event_loops = s->n_loops;
            for (unsigned i = 0; i < s->n_loops; i++)
                stats_accumulate(&in.stats, loop_stats(s->loops[i]));
        }
        if (metrics_render(&in, &body, &body_len) < 0)
            return -ENOMEM;
    }
    int r = metrics_http_response(status, body, body_len, head_only, &resp, &resp_len);
    free(body);
    if (r < 0)
        return r;
    c->closing = true;
    r = conn_send(l, c, (const uint8_t *)resp, resp_len);
    free(resp);
    if (r < 0)
        return r;
    /* Sent whole: close now; otherwise once conn_flush has sent the rest. */
    return c->out_len ? 0 : -ECONNRESET;
}

/* Reads the request head, bounded by METRICS_HTTP_HEAD_MAX (the parser
 * answers 431 once that much came without an end). The whole head is read
 * before answering: closing a Unix socket with unread input resets it. */
static int metrics_read(struct loop *l, struct conn *c)
{
    if (!c->in) {
        c->in = malloc(METRICS_HTTP_HEAD_MAX);
        if (!c->in)
            return -ENOMEM;
        c->in_cap = METRICS_HTTP_HEAD_MAX;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
    if (n == 0)
        return -ECONNRESET;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
    c->in_len += (size_t)n;
    bool head_only = false;
    int status = metrics_http_parse((const char *)c->in, c->in_len, &head_only);
    return status == 0 ? 0 : metrics_answer(l, c, status, head_only);
}

/* Watches or unwatches this loop's listening sockets. */
static void watch_listeners(struct loop *l, bool on)
{
    struct server *s = l->srv;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_listen};
    struct epoll_event aev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_admin};
    struct epoll_event mev = {.events = EPOLLIN, .data.ptr = &tag_metrics};
    int op = on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL;
    (void)epoll_ctl(l->epfd, op, s->listen_fd, on ? &ev : NULL);
    (void)epoll_ctl(l->epfd, op, s->admin_fd, on ? &aev : NULL);
    if (l->index == 0 && s->metrics_fd >= 0)
        (void)epoll_ctl(l->epfd, op, s->metrics_fd, on ? &mev : NULL);
}

/* accept() failed for want of file descriptors. The listening socket stays
 * readable, so going on would spin: stop watching it for a moment (queued
 * clients wait in the backlog), and say so once in a while, not per try. */
static void accept_starved(struct loop *l, int err)
{
    uint64_t now = server_now_ms();
    if (now - l->emfile_logged_ms >= 10000 || l->emfile_logged_ms == 0) {
        log_error("cannot accept connections: %s; pausing accepts for %u ms (raise the file "
                  "limit, e.g. LimitNOFILE=, or lower max_connections)",
                  strerror(err), ACCEPT_PAUSE_MS);
        l->emfile_logged_ms = now;
    }
    if (!l->accept_paused_until) {
        watch_listeners(l, false);
        l->accept_paused_until = now + ACCEPT_PAUSE_MS;
    }
}

static void metrics_accept(struct loop *l)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(l->srv->metrics_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_starved(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept on the metrics socket failed: %s", strerror(errno));
            return;
        }
        if (l->n_metrics >= METRICS_CONNS_MAX) {
            log_debug("%u metrics connections are open already; closing a new one",
                      METRICS_CONNS_MAX);
            (void)close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            (void)close(fd);
            continue;
        }
        c->fd = fd;
        c->metrics = true;
        c->peer = (struct peer)PEER_INIT;
        c->last_active_ms = server_now_ms();
        if (conn_watch(l, c, EPOLLIN, EPOLL_CTL_ADD) < 0) {
            free(c);
            (void)close(fd);
            continue;
        }
        conn_link(l, c);
        l->n_metrics++;
    }
}

static void accept_ready(struct loop *l, int listen_fd, bool admin)
{
    for (int i = 0; i < ACCEPT_BURST; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_starved(l, errno);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept failed: %s", strerror(errno));
            return;
        }
        conn_open(l, fd, admin);
    }
}

/* Closes connections whose partial frame or idleness outlived its limit. */
static void sweep(struct loop *l, uint64_t now)
{
    const struct config *cfg = l->srv->cfg;
    struct conn *next;
    for (struct conn *c = l->conns; c; c = next) {
        next = c->next;
        if (c->metrics) {
            /* Its request head, or the next part of its answer, is late. */
            if (now - c->last_active_ms > METRICS_TIMEOUT_MS)
                conn_close(l, c);
        } else if (c->out_len) {
            if (now - c->last_active_ms > cfg->idle_timeout_ms)
                conn_close(l, c);
        } else if (c->in_len > 0 && now - c->frame_started_ms > cfg->frame_timeout_ms) {
            char msg[128];
            (void)snprintf(msg, sizeof(msg),
                           "partial frame not completed within %u ms (frame_timeout_ms)",
                           cfg->frame_timeout_ms);
            log_refusal(c->cred_pid, c->cred_uid, "frame", msg);
            stats_add(&l->stats.refused[STATS_REF_LIMIT], 1);
            conn_close(l, c);
        } else if (c->in_len == 0 && now - c->last_active_ms > cfg->idle_timeout_ms) {
            conn_close(l, c);
        }
    }
}

static uint32_t sweep_interval_ms(const struct config *cfg)
{
    uint32_t t =
        cfg->frame_timeout_ms < cfg->idle_timeout_ms ? cfg->frame_timeout_ms : cfg->idle_timeout_ms;
    t /= 4;
    return t < 10 ? 10 : t > 1000 ? 1000 : t;
}

/* This loop's part of stopping: no more accepts here; connections with
 * nothing in flight close now, the rest once their answer is out. */
static void loop_stop(struct loop *l)
{
    struct server *s = l->srv;
    l->stopping = true;
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->admin_fd, NULL);
    if (l->index == 0 && s->metrics_fd >= 0)
        (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->metrics_fd, NULL);
    (void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, s->stop_fd, NULL);
    struct conn *next;
    for (struct conn *c = l->conns; c; c = next) {
        next = c->next;
        if (c->out_len)
            c->closing = true;
        else
            conn_close(l, c);
    }
}

int loop_run(struct loop *l)
{
    struct server *s = l->srv;
    struct epoll_event events[EPOLL_BATCH];
    uint32_t interval = sweep_interval_ms(s->cfg);
    /* With a watchdog, every loop goes round at least four times per
     * period, so that one quiet loop never looks stuck. */
    uint32_t quarter = (uint32_t)(s->watchdog_us / 4000u);
    if (s->watchdog_us && quarter < interval)
        interval = quarter > 0 ? quarter : 1;
    l->next_sweep_ms = server_now_ms() + interval;
    l->next_watchdog_ms = 0;

    while (!l->stopping || (l->n_conns > 0 && server_now_ms() < s->stop_deadline_ms)) {
        int timeout = (int)interval;
        if (l->accept_paused_until) {
            uint64_t now = server_now_ms();
            uint64_t left = l->accept_paused_until > now ? l->accept_paused_until - now : 0;
            if (left < (uint64_t)timeout)
                timeout = (int)left;
        }
        int n = epoll_wait(l->epfd, events, EPOLL_BATCH, timeout);
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait failed: %s", strerror(errno));
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == &tag_listen || tag == &tag_admin) {
                if (!l->stopping)
                    accept_ready(l, tag == &tag_admin ? s->admin_fd : s->listen_fd,
                                 tag == &tag_admin);
                continue;
            }
            if (tag == &tag_metrics) {
                if (!l->stopping)
                    metrics_accept(l);
                continue;
            }
            if (tag == &tag_signal) {
                struct signalfd_siginfo si;
                if (read(s->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    log_info("received signal %u", si.ssi_signo);
                server_begin_stop(s);
                /* The stop event itself arrives next round. */
                continue;
            }
            if (tag == &tag_stop) {
                if (!l->stopping)
                    loop_stop(l);
                /* loop_stop closed connections that later events in this
                 * batch may name; what is left open is reported again. */
                break;
            }
            struct conn *c = tag;
            int r = 0;
            if (events[i].events & EPOLLOUT)
                r = conn_flush(l, c);
            if (r == 0 && !c->out_len && (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                r = c->metrics ? metrics_read(l, c) : conn_read(l, c);
            if (r < 0)
                conn_close(l, c);
        }
        uint64_t now = server_now_ms();
        atomic_store_explicit(&l->heartbeat_ms, now, memory_order_relaxed);
        if (l->accept_paused_until && now >= l->accept_paused_until) {
            l->accept_paused_until = 0;
            if (!l->stopping)
                watch_listeners(l, true);
        }
        if (l->index == 0 && s->watchdog_us && now >= l->next_watchdog_ms) {
            feed_watchdog(l, now);
            l->next_watchdog_ms = now + interval;
        }
        if (now >= l->next_sweep_ms) {
            sweep(l, now);
            /* One loop looks after the keys' schedule. */
            if (l->index == 0 && !l->stopping)
                admin_maintain_keys(s->admin, (int64_t)time(NULL));
            l->next_sweep_ms = now + interval;
        }
    }
    while (l->conns)
        conn_close(l, l->conns);
    return 0;
}

int loop_new(struct server *s, unsigned index, struct loop **ret)
{
    const struct config *cfg = s->cfg;
    struct loop *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->srv = s;
    l->index = index;
    atomic_init(&l->heartbeat_ms, server_now_ms());
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->arena_buf = malloc(cfg->request_memory);
    l->selectors = malloc(sizeof(*l->selectors));
    int r = -ENOMEM;
    if (l->epfd < 0 || !l->arena_buf || !l->selectors ||
        token_cache_new(TOKEN_CACHE_SIZE, &l->tokens) < 0 || attest_cache_new(&l->attest_cache) < 0)
        goto fail;
    arena_init(&l->arena, l->arena_buf, cfg->request_memory);
    selector_set_clear(l->selectors);
    l->wctx = (struct workload_ctx){
        .cfg = cfg,
        .attest = s->attest,
        .features = &s->features,
        .started_ms = s->started_ms,
        .arena = &l->arena,
        .selectors = l->selectors,
        .attest_cache = l->attest_cache,
        .tokens = l->tokens,
        .shared = &s->shared_tokens,
        .stats = &l->stats,
    };
    /* The listening sockets are in every loop's set; EPOLLEXCLUSIVE wakes
     * one loop per incoming connection instead of all of them. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_listen};
    struct epoll_event aev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &tag_admin};
    struct epoll_event stop = {.events = EPOLLIN, .data.ptr = &tag_stop};
    struct epoll_event sig = {.events = EPOLLIN, .data.ptr = &tag_signal};
    struct epoll_event mev = {.events = EPOLLIN, .data.ptr = &tag_metrics};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->admin_fd, &aev) < 0 ||
        epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->stop_fd, &stop) < 0 ||
        (index == 0 && epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->signal_fd, &sig) < 0) ||
        (index == 0 && s->metrics_fd >= 0 &&
         epoll_ctl(l->epfd, EPOLL_CTL_ADD, s->metrics_fd, &mev) < 0)) {
        r = -errno;
        goto fail;
    }
    *ret = l;
    return 0;
fail:
    loop_free(l);
    return r;
}

struct loop *loop_free(struct loop *l)
{
    if (!l)
        return NULL;
    while (l->conns)
        conn_close(l, l->conns);
    entries_reader_release(&l->reader);
    keys_reader_release(&l->keys_reader);
    token_cache_free(l->tokens);
    attest_cache_free(l->attest_cache);
    if (l->epfd >= 0)
        (void)close(l->epfd);
    free(l->arena_buf);
    free(l->selectors);
    free(l->out_buf);
    free(l);
    return NULL;
}
