/* Client threads: one measured round against one server.
 *
 * Closed loop: each thread sends a request, waits for its answer, checks
 * it, and sends the next. Blocking sockets, so a round trip costs the
 * client one send and (usually) one recv; no timeout is set per request,
 * because a setsockopt per fresh connection would be charged to both
 * servers alike and blur the ratio. A watchdog shuts down the socket of a
 * thread that is still waiting long after the round ended instead. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "frame.h"

/* How long a thread may take to finish its last request after the stop. */
#define CLIENT_GRACE_MS 10000u
/* Audiences of uncached fetches are handed out in blocks. */
#define CLIENT_SEQ_BLOCK 4096u

struct client_shared {
    const struct client_spec *spec;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    unsigned ready; /* threads connected and waiting for the go */
    bool go;
    atomic_bool stop;
};

struct client_thread {
    struct client_shared *shared;
    pthread_t tid;
    atomic_int cur_fd;
    atomic_bool done;
    uint64_t ok, errors;
    uint64_t end_ns;
    uint32_t *lat;
    size_t n_lat, cap_lat;
    char first_error[200];
};

/* Never reset: an audience is never asked twice of one agent. */
static atomic_uint_fast64_t client_next_seq = 1;

static void client_error(struct client_thread *t, const char *fmt, const char *detail)
{
    if (t->errors++ == 0)
        (void)snprintf(t->first_error, sizeof(t->first_error), fmt, detail);
}

static void client_record(struct client_thread *t, uint64_t ns)
{
    if (t->n_lat == t->cap_lat) {
        size_t cap = t->cap_lat ? t->cap_lat * 2 : 65536;
        uint32_t *p = realloc(t->lat, cap * sizeof(*p));
        if (!p) {
            client_error(t, "%s", "out of memory for latencies");
            return;
        }
        t->lat = p;
        t->cap_lat = cap;
    }
    t->lat[t->n_lat++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
    t->ok++;
}

/* Every client starts together, after all have connected. */
static void client_wait_go(struct client_shared *s)
{
    (void)pthread_mutex_lock(&s->lock);
    s->ready++;
    (void)pthread_cond_broadcast(&s->cond);
    while (!s->go)
        (void)pthread_cond_wait(&s->cond, &s->lock);
    (void)pthread_mutex_unlock(&s->lock);
}

static void client_go(struct client_shared *s, unsigned n)
{
    (void)pthread_mutex_lock(&s->lock);
    while (s->ready < n)
        (void)pthread_cond_wait(&s->cond, &s->lock);
    s->go = true;
    (void)pthread_cond_broadcast(&s->cond);
    (void)pthread_mutex_unlock(&s->lock);
}

static void *client_main(void *opaque)
{
    struct client_thread *t = opaque;
    const struct client_spec *spec = t->shared->spec;
    uint8_t req[256];
    uint8_t *buf = malloc(BENCH_RESPONSE_MAX);
    char why[200];
    uint64_t seq = 0, seq_end = 0;
    int req_len = wire_request(spec->kind, 0, req, sizeof(req));
    int fd = -1;

    if (!buf || req_len < 0)
        client_error(t, "%s", "cannot prepare the request");
    else if (!spec->fresh) {
        fd = wire_connect(spec->sock);
        if (fd < 0)
            client_error(t, "cannot connect: %s", strerror(-fd));
        atomic_store(&t->cur_fd, fd);
    }
    client_wait_go(t->shared);
    bool ready = buf && req_len >= 0 && (spec->fresh || fd >= 0);
    while (ready && !atomic_load_explicit(&t->shared->stop, memory_order_relaxed)) {
        if (spec->kind == BENCH_FETCH_UNCACHED) {
            if (seq == seq_end) {
                seq = atomic_fetch_add(&client_next_seq, CLIENT_SEQ_BLOCK);
                seq_end = seq + CLIENT_SEQ_BLOCK;
            }
            req_len = wire_request(spec->kind, seq++, req, sizeof(req));
        }
        uint64_t t0 = wire_now_ns();
        if (spec->fresh) {
            fd = wire_connect(spec->sock);
            if (fd < 0) {
                client_error(t, "cannot connect: %s", strerror(-fd));
                wire_sleep_us(1000);
                continue;
            }
            atomic_store(&t->cur_fd, fd);
        }
        int n = wire_roundtrip(fd, req, (size_t)req_len, buf, BENCH_RESPONSE_MAX);
        uint64_t t1 = wire_now_ns();
        if (spec->fresh || n < 0) {
            atomic_store(&t->cur_fd, -1);
            (void)close(fd);
            fd = -1;
        }
        if (n < 0) {
            client_error(t, "no answer: %s", strerror(-n));
            if (!spec->fresh) {
                /* Carry on with a new connection. */
                fd = wire_connect(spec->sock);
                atomic_store(&t->cur_fd, fd);
                ready = fd >= 0;
            }
            continue;
        }
        if (!wire_check(spec->kind, buf + FRAME_HEADER_SIZE, (size_t)n, why, sizeof(why))) {
            client_error(t, "%s", why);
            continue;
        }
        client_record(t, t1 - t0);
    }
    t->end_ns = wire_now_ns();
    atomic_store(&t->cur_fd, -1);
    if (fd >= 0)
        (void)close(fd);
    free(buf);
    atomic_store(&t->done, true);
    return NULL;
}

void client_round_clear(struct client_round *r)
{
    free(r->lat_ns);
    *r = (struct client_round){0};
}

/* Waits for every thread to finish; shuts down the sockets of those that
 * are still waiting for an answer after the grace. */
static void client_wait(struct client_thread *threads, unsigned n)
{
    uint64_t deadline = wire_now_ns() + (uint64_t)CLIENT_GRACE_MS * 1000000u;
    for (;;) {
        unsigned done = 0;
        for (unsigned i = 0; i < n; i++)
            done += atomic_load(&threads[i].done);
        if (done == n)
            return;
        if (wire_now_ns() >= deadline)
            break;
        wire_sleep_us(1000);
    }
    for (unsigned i = 0; i < n; i++) {
        int fd = atomic_load(&threads[i].cur_fd);
        if (!atomic_load(&threads[i].done) && fd >= 0)
            (void)shutdown(fd, SHUT_RDWR);
    }
}

int client_round(const struct client_spec *spec, struct client_round *ret)
{
    unsigned n = spec->clients;
    struct client_shared shared = {
        .spec = spec,
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .cond = PTHREAD_COND_INITIALIZER,
    };
    struct client_thread *threads = calloc(n ? n : 1, sizeof(*threads));
    if (n == 0 || !threads) {
        free(threads);
        return n == 0 ? -EINVAL : -ENOMEM;
    }
    pthread_attr_t attr;
    (void)pthread_attr_init(&attr);
    (void)pthread_attr_setstacksize(&attr, 256u * 1024u);
    unsigned started = 0;
    int r = 0;
    uint64_t t_start = 0, t_end = 0;
    for (; started < n; started++) {
        threads[started].shared = &shared;
        atomic_init(&threads[started].cur_fd, -1);
        int e = pthread_create(&threads[started].tid, &attr, client_main, &threads[started]);
        if (e != 0) {
            r = -e;
            break;
        }
    }
    (void)pthread_attr_destroy(&attr);
    if (r < 0) {
        atomic_store(&shared.stop, true);
        client_go(&shared, started);
        goto join;
    }
    client_go(&shared, n);
    t_start = wire_now_ns();
    wire_sleep_us((unsigned)(spec->seconds * 1e6));
    atomic_store(&shared.stop, true);
    client_wait(threads, n);
    t_end = t_start;
    size_t total = ret->n_lat;
    for (unsigned i = 0; i < n; i++)
        total += threads[i].n_lat;
    uint32_t *lat = realloc(ret->lat_ns, (total ? total : 1) * sizeof(*lat));
    if (!lat) {
        r = -ENOMEM;
        goto join;
    }
    ret->lat_ns = lat;
join:
    for (unsigned i = 0; i < started; i++)
        (void)pthread_join(threads[i].tid, NULL);
    if (r == 0) {
        for (unsigned i = 0; i < n; i++) {
            struct client_thread *t = &threads[i];
            if (t->n_lat)
                memcpy(ret->lat_ns + ret->n_lat, t->lat, t->n_lat * sizeof(*t->lat));
            ret->n_lat += t->n_lat;
            ret->ok += t->ok;
            if (t->errors && ret->errors == 0)
                (void)snprintf(ret->first_error, sizeof(ret->first_error), "%s", t->first_error);
            ret->errors += t->errors;
            if (t->end_ns > t_end)
                t_end = t->end_ns;
        }
        ret->elapsed_s += (double)(t_end - t_start) / 1e9;
    }
    for (unsigned i = 0; i < n; i++)
        free(threads[i].lat);
    free(threads);
    return r;
}

size_t client_hold(const char *sock, size_t n, int *fds, char *why, size_t why_len)
{
    uint8_t req[256];
    uint8_t *buf = malloc(BENCH_RESPONSE_MAX);
    int req_len = wire_request(BENCH_FETCH, 0, req, sizeof(req));
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        fds[i] = buf && req_len > 0 ? wire_connect(sock) : -ENOMEM;
        if (fds[i] < 0) {
            if (failed++ == 0)
                (void)snprintf(why, why_len, "cannot connect: %s", strerror(-fds[i]));
            fds[i] = -1;
            continue;
        }
        struct timeval tv = {.tv_sec = 10};
        (void)setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        int r = wire_roundtrip(fds[i], req, (size_t)req_len, buf, BENCH_RESPONSE_MAX);
        char w[200];
        if (r < 0 || !wire_check(BENCH_FETCH, buf + FRAME_HEADER_SIZE, (size_t)r, w, sizeof(w))) {
            if (failed++ == 0)
                (void)snprintf(why, why_len, "connection %zu: %s", i + 1, r < 0 ? strerror(-r) : w);
            (void)close(fds[i]);
            fds[i] = -1;
        }
    }
    free(buf);
    return failed;
}

void client_release(int *fds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fds[i] >= 0) {
            (void)close(fds[i]);
            fds[i] = -1;
        }
}
