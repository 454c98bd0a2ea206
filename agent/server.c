/* The server: its sockets, its event loops, connection limits, stopping.
 *
 * N loops (config `workers`, default the online CPUs), each a thread with
 * its own epoll set (loop.c). The server owns what they share: the
 * listening sockets, the per-uid connection counts (a mutex taken at accept
 * and close, never per request), and the stop. */
#define _GNU_SOURCE
#include "server.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "listen.h"
#include "log.h"
#include "server_internal.h"

/* Time a stopping agent gives clients to take their last answers. */
#define STOP_GRACE_MS 5000u
#define LOOPS_MAX     64u
/* Tokens every loop can reuse (each loop also keeps its own). */
#define SHARED_TOKEN_CACHE_SIZE 16384u

uint64_t server_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- per-uid connection counts ---------------------------------------- */

/* A compact array scanned at accept and close only: its length is the
 * number of distinct uids connected, a handful on most hosts. */
static struct uid_slot *uid_find(struct server *s, uid_t uid)
{
    for (size_t i = 0; i < s->n_uids; i++)
        if (s->uids[i].uid == uid)
            return &s->uids[i];
    return NULL;
}

bool server_conn_admit(struct server *s, uid_t uid, char *msg, size_t msg_len)
{
    const struct config *cfg = s->cfg;
    bool ok = true;
    (void)pthread_mutex_lock(&s->conn_lock);
    struct uid_slot *slot = uid_find(s, uid);
    if (s->n_conns >= cfg->max_connections) {
        (void)snprintf(msg, msg_len,
                       "the agent has %u connections open, its limit (max_connections); "
                       "try again later",
                       cfg->max_connections);
        ok = false;
    } else if (slot && slot->count >= cfg->max_connections_per_uid) {
        (void)snprintf(msg, msg_len,
                       "uid %lu has %u connections open, the per-uid limit "
                       "(max_connections_per_uid); close idle connections",
                       (unsigned long)uid, cfg->max_connections_per_uid);
        ok = false;
    } else {
        if (!slot) {
            /* n_uids <= n_conns < max_connections, the array's size. */
            slot = &s->uids[s->n_uids++];
            *slot = (struct uid_slot){.uid = uid};
        }
        slot->count++;
        s->n_conns++;
    }
    (void)pthread_mutex_unlock(&s->conn_lock);
    return ok;
}

void server_conn_release(struct server *s, uid_t uid)
{
    (void)pthread_mutex_lock(&s->conn_lock);
    struct uid_slot *slot = uid_find(s, uid);
    if (slot && --slot->count == 0)
        *slot = s->uids[--s->n_uids];
    s->n_conns--;
    (void)pthread_mutex_unlock(&s->conn_lock);
}

/* --- stopping ------------------------------------------------------------ */

void server_begin_stop(struct server *s)
{
    if (atomic_exchange(&s->stopping, true))
        return;
    s->stop_deadline_ms = server_now_ms() + STOP_GRACE_MS;
    (void)pthread_mutex_lock(&s->conn_lock);
    size_t open = s->n_conns;
    (void)pthread_mutex_unlock(&s->conn_lock);
    log_info("stopping: no new connections, finishing %zu open ones", open);
    (void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
    /* New clients find no socket; connections already queued are reset
     * when the listening sockets close after the loops are done. */
    if (s->socket_created && unlink(s->cfg->socket_path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", s->cfg->socket_path, strerror(errno));
    if (s->admin_created && unlink(s->cfg->admin_socket_path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", s->cfg->admin_socket_path, strerror(errno));
    if (s->metrics_created && unlink(s->cfg->metrics_socket_path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", s->cfg->metrics_socket_path, strerror(errno));
    s->socket_created = s->admin_created = s->metrics_created = false;
    /* Readable from now on: every loop sees it and stops accepting. */
    uint64_t one = 1;
    if (write(s->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
        log_error("cannot wake the event loops to stop: %s", strerror(errno));
}

/* --- running --------------------------------------------------------------- */

static void *loop_thread(void *opaque)
{
    struct loop *l = opaque;
    if (loop_run(l) < 0)
        log_error("an event loop failed; stopping");
    return NULL;
}

int server_run(struct server *s)
{
    pthread_t threads[LOOPS_MAX];
    unsigned started = 0;
    int r = 0;
    if (s->activated)
        log_info("serving the sockets the service manager passed, with %u event loop%s (pid %ld)",
                 s->n_loops, s->n_loops == 1 ? "" : "s", (long)getpid());
    else
        log_info("listening on %s and %s (admin) with %u event loop%s (pid %ld)",
                 s->cfg->socket_path, s->cfg->admin_socket_path, s->n_loops,
                 s->n_loops == 1 ? "" : "s", (long)getpid());
    if (s->metrics_fd >= 0)
        log_info("serving Prometheus metrics over HTTP on %s",
                 s->metrics_created ? s->cfg->metrics_socket_path : "the socket named 'metrics'");
    /* Ready: the sockets listen, keys and entries are loaded, so anything
     * that connects from now on is answered. */
    char status[160];
    (void)snprintf(status, sizeof(status),
                   "READY=1\nSTATUS=serving %zu entries with %zu attestors on %u event loops",
                   s->admin ? admin_entry_count(s->admin) : 0, attest_count(s->attest), s->n_loops);
    (void)sd_notify(0, status);
    /* Loops 1..N-1 on threads of their own (they inherit the blocked
     * SIGTERM and SIGINT); loop 0, which owns the signalfd, on this one. */
    for (unsigned i = 1; i < s->n_loops; i++) {
        int e = pthread_create(&threads[i], NULL, loop_thread, s->loops[i]);
        if (e != 0) {
            log_error("cannot start event loop %u: %s", i, strerror(e));
            server_begin_stop(s);
            r = -e;
            break;
        }
        started = i;
    }
    if (loop_run(s->loops[0]) < 0) {
        server_begin_stop(s);
        r = -EIO;
    }
    for (unsigned i = 1; i <= started; i++)
        (void)pthread_join(threads[i], NULL);
    log_info("stopped");
    return r;
}

static unsigned loop_count(const struct config *cfg)
{
    long n = cfg->workers;
    if (n == 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > (long)LOOPS_MAX ? LOOPS_MAX : (unsigned)n;
}

int server_new(const struct config *cfg, const struct attest *attest, struct admin *admin,
               struct entries_registry *registry, struct keys *keys,
               const struct peer_features *features, struct server **ret, char *err, size_t err_len)
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
    s->listen_fd = s->admin_fd = s->metrics_fd = s->lock_fd = s->signal_fd = s->stop_fd = -1;
    s->started_ms = server_now_ms();
    atomic_init(&s->stopping, false);
    int r = pthread_mutex_init(&s->conn_lock, NULL);
    if (r != 0) {
        free(s);
        return -r;
    }
    s->uids = calloc(cfg->max_connections, sizeof(*s->uids));
    if (pthread_mutex_init(&s->shared_tokens.lock, NULL) != 0 ||
        token_cache_new(SHARED_TOKEN_CACHE_SIZE, &s->shared_tokens.cache) < 0)
        s->shared_tokens.cache = NULL;
    if (!s->uids || !s->shared_tokens.cache) {
        r = -ENOMEM;
        (void)snprintf(err, err_len, "out of memory");
        goto fail;
    }

    r = listen_activated(&s->listen_fd, &s->admin_fd, &s->metrics_fd, err, err_len);
    if (r < 0)
        goto fail;
    s->activated = r > 0;
    if (s->activated)
        log_info("using the sockets passed by the service manager");
    else
        r = listen_lock(cfg->socket_path, &s->lock_fd, err, err_len);
    if (r < 0)
        goto fail;
    /* The admin socket first: once the workload socket answers, both do
     * (scripts wait for the workload socket, then manage entries). It is
     * closed to all but the agent's user by default; every call on it is
     * authorized again by the caller's credentials. A socket the service
     * manager passed is used as it is. */
    if (s->admin_fd < 0) {
        r = listen_unix(cfg->admin_socket_path, cfg->admin_socket_mode, &s->admin_fd, err, err_len);
        if (r < 0)
            goto fail;
        s->admin_created = true;
    }
    /* The metrics socket, when configured and not passed by the service
     * manager: before the workload socket, for the same reason as the
     * admin socket. Closed to all but the agent's user by default; it
     * reveals counts, never identities or keys. */
    if (s->metrics_fd < 0 && cfg->metrics_socket_path) {
        r = listen_unix(cfg->metrics_socket_path, cfg->metrics_socket_mode, &s->metrics_fd, err,
                        err_len);
        if (r < 0)
            goto fail;
        s->metrics_created = true;
    }
    /* The workload socket is open to every local user by default, because
     * identity comes from attestation, not from who can connect. */
    if (s->listen_fd < 0) {
        r = listen_unix(cfg->socket_path, cfg->socket_mode, &s->listen_fd, err, err_len);
        if (r < 0)
            goto fail;
        s->socket_created = true;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (s->signal_fd < 0 || s->stop_fd < 0) {
        r = -errno;
        (void)snprintf(err, err_len, "cannot set up the event loops: %s", strerror(errno));
        goto fail;
    }
    uint64_t watchdog = 0;
    if (sd_watchdog_enabled(1, &watchdog) > 0)
        s->watchdog_us = watchdog;
    s->n_loops = loop_count(cfg);
    s->loops = calloc(s->n_loops, sizeof(*s->loops));
    if (!s->loops) {
        r = -ENOMEM;
        (void)snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (unsigned i = 0; i < s->n_loops; i++) {
        r = loop_new(s, i, &s->loops[i]);
        if (r < 0) {
            (void)snprintf(err, err_len, "cannot set up event loop %u: %s", i, strerror(-r));
            goto fail;
        }
    }
    *ret = s;
    return 0;
fail:
    server_free(s);
    return r;
}

void server_stats(const struct server *s, struct stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    for (unsigned i = 0; i < s->n_loops; i++)
        stats_accumulate(ret, loop_stats(s->loops[i]));
}

void server_admin_stats(void *ctx, struct stats *ret_stats, unsigned *ret_loops)
{
    const struct server *s = ctx;
    server_stats(s, ret_stats);
    *ret_loops = s->n_loops;
}

struct server *server_free(struct server *s)
{
    if (!s)
        return NULL;
    for (unsigned i = 0; s->loops && i < s->n_loops; i++)
        loop_free(s->loops[i]);
    free(s->loops);
    if (s->listen_fd >= 0)
        (void)close(s->listen_fd);
    if (s->admin_fd >= 0)
        (void)close(s->admin_fd);
    if (s->metrics_fd >= 0)
        (void)close(s->metrics_fd);
    if (s->socket_created)
        (void)unlink(s->cfg->socket_path);
    if (s->admin_created)
        (void)unlink(s->cfg->admin_socket_path);
    if (s->metrics_created)
        (void)unlink(s->cfg->metrics_socket_path);
    if (s->signal_fd >= 0)
        (void)close(s->signal_fd);
    if (s->stop_fd >= 0)
        (void)close(s->stop_fd);
    if (s->lock_fd >= 0)
        (void)close(s->lock_fd);
    (void)pthread_mutex_destroy(&s->conn_lock);
    token_cache_free(s->shared_tokens.cache);
    (void)pthread_mutex_destroy(&s->shared_tokens.lock);
    free(s->uids);
    free(s);
    return NULL;
}
