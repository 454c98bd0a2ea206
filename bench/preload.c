/* A data dir with N entries, before the agent starts.
 *
 * Through the agent's own store API (entry_new validates, store_insert
 * computes the identity key and writes the rows), so the database is
 * exactly what the admin socket would have made, without 100,000 admin
 * round trips and snapshot rebuilds. store_insert commits durably, one
 * fsync per entry; to keep that off the bench's clock the database is
 * written where fsync is free (a directory on /dev/shm, when there is one)
 * and then copied into the data dir, which stays where the caller put it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench.h"
#include "entries.h"
#include "store.h"

#define PRELOAD_TTL     300u
#define PRELOAD_MAX_TTL 86400u

/* splitmix64: reproducible entries from a seed. */
static uint64_t preload_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int preload_insert(struct store *st, const char *spiffe_id, const char *const *sel,
                          size_t n_sel, char *err, size_t err_len)
{
    size_t lens[2];
    for (size_t i = 0; i < n_sel; i++)
        lens[i] = strlen(sel[i]);
    struct entry_spec spec = {
        .spiffe_id = spiffe_id,
        .spiffe_id_len = strlen(spiffe_id),
        .selectors = sel,
        .selector_lens = lens,
        .n_selectors = n_sel,
        .ttl = PRELOAD_TTL,
    };
    struct entry *e = NULL;
    int r = entry_new(&spec, BENCH_TRUST_DOMAIN, PRELOAD_TTL, PRELOAD_MAX_TTL, &e, err, err_len);
    if (r < 0)
        return r;
    r = store_insert(st, e, NULL, err, err_len);
    entry_unref(e);
    return r;
}

static int preload_copy(const char *from, const char *to, char *err, size_t err_len)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = in < 0 ? -1 : open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int r = 0;
    char buf[1 << 16];
    if (in < 0 || out < 0) {
        r = -errno;
        (void)snprintf(err, err_len, "cannot copy %s to %s: %s", from, to, strerror(errno));
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r = n < 0 ? -errno : 0;
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                r = -errno;
                goto out;
            }
            off += w;
        }
    }
    if (r == 0 && fsync(out) < 0)
        r = -errno;
    if (r < 0)
        (void)snprintf(err, err_len, "cannot copy %s to %s: %s", from, to, strerror(-r));
out:
    if (in >= 0)
        (void)close(in);
    if (out >= 0 && close(out) < 0 && r == 0)
        r = -errno;
    return r;
}

/* Writes the n entries into a store in dir. */
static int preload_write(const char *dir, size_t n, uid_t uid, uint64_t seed, char *err,
                         size_t err_len)
{
    struct store *st = NULL;
    int r = store_open(dir, &st, err, err_len);
    if (r < 0)
        return r;
    uint64_t rng = seed;
    /* The client's entry sits in the middle of the insertion order. */
    size_t mine = n / 2;
    for (size_t i = 0; i < n && r == 0; i++) {
        char id[128], uid_sel[64], path_sel[128];
        if (i == mine) {
            (void)snprintf(uid_sel, sizeof(uid_sel), "unix:uid:%lu", (unsigned long)uid);
            const char *sel[] = {uid_sel};
            r = preload_insert(st, BENCH_CLIENT_ID, sel, 1, err, err_len);
            continue;
        }
        uint32_t other;
        do
            other = 1u + (uint32_t)(preload_next(&rng) % 2147483646u);
        while (other == (uint32_t)uid);
        (void)snprintf(id, sizeof(id), "spiffe://%s/bench/other/%zu", BENCH_TRUST_DOMAIN, i);
        (void)snprintf(uid_sel, sizeof(uid_sel), "unix:uid:%u", other);
        (void)snprintf(path_sel, sizeof(path_sel), "unix:path:/opt/svc-%016llx/bin/app%zu",
                       (unsigned long long)preload_next(&rng), i);
        const char *sel[] = {uid_sel, path_sel};
        r = preload_insert(st, id, sel, 2, err, err_len);
    }
    st = store_close(st);
    return r;
}

int preload_build(const char *data_dir, size_t n, uid_t uid, uint64_t seed,
                  struct preload_result *ret, char *err, size_t err_len)
{
    char stage[BENCH_PATH_MAX] = "";
    int r;
    if (n == 0) {
        (void)snprintf(err, err_len, "preload needs at least the client's entry");
        return -EINVAL;
    }
    if (mkdir(data_dir, 0700) < 0) {
        r = -errno;
        (void)snprintf(err, err_len, "cannot create %s: %s", data_dir, strerror(errno));
        return r;
    }
    uint64_t t0 = wire_now_ns();
    (void)snprintf(stage, sizeof(stage), "/dev/shm/sockid-bench.XXXXXX");
    bool staged = mkdtemp(stage) != NULL;
    r = preload_write(staged ? stage : data_dir, n, uid, seed, err, err_len);
    if (staged) {
        char from[BENCH_PATH_MAX + 32], to[BENCH_PATH_MAX + 32];
        (void)snprintf(from, sizeof(from), "%s/%s", stage, STORE_FILE);
        (void)snprintf(to, sizeof(to), "%s/%s", data_dir, STORE_FILE);
        if (r == 0)
            r = preload_copy(from, to, err, err_len);
        /* The store leaves only its file behind once closed. */
        (void)unlink(from);
        (void)rmdir(stage);
    }
    if (r < 0)
        return r;
    ret->seconds = (double)(wire_now_ns() - t0) / 1e9;
    ret->entries = n;
    return 0;
}
