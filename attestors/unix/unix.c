/* The unix attestor: who the peer is to the kernel (its connect-time uid, gid
 * and supplementary groups, and the names NSS gives them), and which
 * executable it runs (path, and optionally the SHA-256 of its contents).
 *
 * Config ([attestor.unix]):
 *   sha256 = true | false          hash the executable (default false)
 *   sha256_max_bytes = N           larger executables get no sha256 selector
 *                                  (default 268435456)
 *
 * Hashes are cached per version of a file. Hashing stops at the deadline of
 * the call and the next call for the same file goes on from there, so a large
 * binary costs its first few requests a timeout instead of stalling a worker.
 *
 * User and group names are cached (UNIX_NAMES_SLOTS ids, each for
 * UNIX_NAMES_TTL_NS, "no such name" included): glibc's NSS reopens and
 * rereads /etc/passwd or /etc/group on every lookup, six system calls
 * each. So a name changed in the user database reaches the selectors up to
 * that long later; the ids, which entries should prefer, are never cached.
 *
 * Every selector is additive: one that cannot be produced faithfully is left
 * out, which can only make fewer entries match. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <sockid/attestor.h>

#include "kvcache.h"

#define UNIX_TYPE                     "unix"
#define UNIX_SHA256_MAX_BYTES_DEFAULT (UINT64_C(256) << 20)
#define UNIX_CACHE_ENTRIES            64u
#define UNIX_NSS_BUF_START            1024u
#define UNIX_NSS_BUF_MAX              (1u << 20) /* a group listing thousands of members */
#define UNIX_HASH_CHUNK               (64u << 10)
#define UNIX_DELETED_SUFFIX           " (deleted)"
/* The name cache: ids kept, how long, and the longest name kept (longer
 * ones are looked up every time). */
#define UNIX_NAMES_SLOTS    256u
#define UNIX_NAMES_TTL_NS   (UINT64_C(10) * 1000000000u)
#define UNIX_NAMES_NAME_MAX 128u

/* What identifies one version of a file's contents: the inode, and the size
 * and timestamps that any write changes. ctime cannot be set from user space,
 * so rewriting a binary and restoring its mtime still misses the cache. */
struct unix_cache_key {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtim;
    struct timespec ctim;
};

/* A hash in progress or done. Hashing stops at the caller's deadline; what
 * was read so far is kept, so a binary too large to hash within one deadline
 * is hashed across several calls instead of never. */
struct unix_hash {
    bool complete;
    off_t done;                               /* bytes hashed, when !complete */
    crypto_hash_sha256_state state;           /* after done bytes, when !complete */
    uint8_t digest[crypto_hash_sha256_BYTES]; /* when complete */
};

struct unix_cache_entry {
    struct unix_cache_key key;
    uint64_t last_used; /* 0: slot empty */
    struct unix_hash hash;
};

struct unix_state {
    bool sha256;
    uint64_t sha256_max_bytes;
    pthread_mutex_t lock; /* guards clock and cache */
    uint64_t clock;
    struct unix_cache_entry cache[UNIX_CACHE_ENTRIES];
    struct kvcache *names; /* user and group names, lock-free for readers */
};

/* The executable the kernel mapped for the peer. */
struct unix_exe {
    bool present;
    int fd; /* open only when it will be hashed, else -1 */
    struct stat st;
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

static int unix_fail(char *err, size_t err_len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int unix_fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return r;
}

static bool unix_parse_bool(const char *s, bool *ret)
{
    if (strcmp(s, "true") == 0) {
        *ret = true;
        return true;
    }
    if (strcmp(s, "false") == 0) {
        *ret = false;
        return true;
    }
    return false;
}

/* Decimal digits only: no sign, no spaces, no suffix. */
static bool unix_parse_u64(const char *s, uint64_t *ret)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

static int unix_init(const struct sockid_attestor_config *config, void **ret_state, char *err,
                     size_t err_len)
{
    bool sha256 = false, seen_sha256 = false, seen_max = false;
    uint64_t max_bytes = UNIX_SHA256_MAX_BYTES_DEFAULT;
    struct unix_state *state;
    int r;

    if (!ret_state)
        return unix_fail(err, err_len, -EINVAL, "no place to store the plugin state");
    if (sodium_init() < 0)
        return unix_fail(err, err_len, -EIO, "libsodium failed to initialize");

    if (config) {
        if (config->struct_size < sizeof(*config))
            return unix_fail(err, err_len, -EINVAL,
                             "config structure is %" PRIu32 " bytes, expected at least %zu",
                             config->struct_size, sizeof(*config));
        if (config->n && (!config->keys || !config->values))
            return unix_fail(err, err_len, -EINVAL, "config has keys but no arrays");
        for (size_t i = 0; i < config->n; i++) {
            const char *key = config->keys[i], *value = config->values[i];
            if (!key || !value)
                return unix_fail(err, err_len, -EINVAL, "config entry %zu is incomplete", i);
            if (strcmp(key, "sha256") == 0) {
                if (seen_sha256)
                    return unix_fail(err, err_len, -EINVAL, "key 'sha256' is given twice");
                seen_sha256 = true;
                if (!unix_parse_bool(value, &sha256))
                    return unix_fail(err, err_len, -EINVAL,
                                     "key 'sha256': '%.64s' is not a boolean; use true or false",
                                     value);
            } else if (strcmp(key, "sha256_max_bytes") == 0) {
                if (seen_max)
                    return unix_fail(err, err_len, -EINVAL,
                                     "key 'sha256_max_bytes' is given twice");
                seen_max = true;
                if (!unix_parse_u64(value, &max_bytes) || max_bytes == 0)
                    return unix_fail(err, err_len, -EINVAL,
                                     "key 'sha256_max_bytes': '%.64s' is not a size in bytes; "
                                     "use a whole number from 1 to %" PRIu64,
                                     value, UINT64_MAX);
            } else {
                return unix_fail(err, err_len, -EINVAL,
                                 "unknown key '%.64s'; known keys: sha256, sha256_max_bytes", key);
            }
        }
    }

    state = calloc(1, sizeof(*state));
    if (!state)
        return unix_fail(err, err_len, -ENOMEM, "out of memory");
    r = kvcache_new(UNIX_NAMES_SLOTS, UNIX_NAMES_NAME_MAX, &state->names);
    if (r < 0) {
        free(state);
        return unix_fail(err, err_len, r, "cannot create the name cache");
    }
    r = pthread_mutex_init(&state->lock, NULL);
    if (r) {
        kvcache_free(state->names);
        free(state);
        return unix_fail(err, err_len, -r, "cannot create the hash cache's lock");
    }
    state->sha256 = sha256;
    state->sha256_max_bytes = max_bytes;
    *ret_state = state;
    return 0;
}

static void unix_fini(void *vstate)
{
    struct unix_state *state = vstate;
    if (!state)
        return;
    (void)pthread_mutex_destroy(&state->lock);
    kvcache_free(state->names);
    free(state);
}

/* A failure of emit() is the attestation's failure. Decimal without leading
 * zeros, as "%u" writes it (without snprintf's cost, on every request). */
static int unix_emit_u32(sockid_emit_fn emit, void *emit_ctx, const char *key, uint32_t v)
{
    char buf[sizeof("4294967295")];
    char *p = buf + sizeof(buf) - 1;
    *p = '\0';
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    int r = emit(emit_ctx, UNIX_TYPE, key, p);
    return r < 0 ? r : 0;
}

/* For values the plugin takes from elsewhere (NSS names, paths): one the host
 * refuses as malformed is left out; any other refusal stops the attestation. */
static int unix_emit_foreign(sockid_emit_fn emit, void *emit_ctx, const char *key,
                             const char *value)
{
    int r = emit(emit_ctx, UNIX_TYPE, key, value);
    if (r == -EINVAL)
        return 0;
    return r < 0 ? r : 0;
}

/* getpwuid_r and getgrgid_r report "no such entry" in several ways. */
static bool unix_nss_not_found(int r)
{
    return r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM;
}

static uint64_t unix_now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* Emits unix:user:NAME (is_group false) or unix:group:NAME for id. No entry,
 * or one too large for UNIX_NSS_BUF_MAX, yields no selector. Answers,
 * "no entry" included, are kept in state->names for UNIX_NAMES_TTL_NS;
 * errors are not. */
static int unix_emit_nss_name(struct unix_state *state, bool is_group, uint32_t id,
                              sockid_emit_fn emit, void *emit_ctx)
{
    char stack_buf[UNIX_NSS_BUF_START];
    char *buf = stack_buf, *heap = NULL;
    size_t cap = sizeof(stack_buf);
    const char *name = NULL;
    struct passwd pw, *pw_res;
    struct group gr, *gr_res;
    const char *key = is_group ? "group" : "user";
    uint64_t cache_key = (uint64_t)is_group << 32 | id;
    uint64_t now = unix_now_ns();
    char cached[UNIX_NAMES_NAME_MAX + 1];
    size_t cached_len;
    int r;

    /* An empty name stands for "no such entry": names are never empty. */
    if (kvcache_get(state->names, cache_key, now, cached, sizeof(cached), &cached_len))
        return cached_len ? unix_emit_foreign(emit, emit_ctx, key, cached) : 0;
    for (;;) {
        pw_res = NULL;
        gr_res = NULL;
        if (is_group)
            r = getgrgid_r((gid_t)id, &gr, buf, cap, &gr_res);
        else
            r = getpwuid_r((uid_t)id, &pw, buf, cap, &pw_res);
        if (r == 0 && (pw_res || gr_res)) {
            name = is_group ? gr_res->gr_name : pw_res->pw_name;
            break;
        }
        if (r == EINTR)
            continue;
        if (unix_nss_not_found(r) || (r == ERANGE && cap >= UNIX_NSS_BUF_MAX))
            break;
        if (r != ERANGE) {
            r = -r;
            goto out;
        }
        char *grown = realloc(heap, cap * 2);
        if (!grown) {
            r = -ENOMEM;
            goto out;
        }
        buf = heap = grown;
        cap *= 2;
    }

    r = 0;
    if (!name || !*name)
        name = "";
    kvcache_put(state->names, cache_key, name, strlen(name), now + UNIX_NAMES_TTL_NS);
    if (*name)
        r = unix_emit_foreign(emit, emit_ctx, key, name);
out:
    free(heap);
    return r;
}

/* Errors that mean "this peer shows no executable to us": a kernel thread or
 * a zombie (ENOENT), or an agent without the right to look (EACCES, EPERM). */
static bool unix_exe_unavailable(int e)
{
    return e == ENOENT || e == EACCES || e == EPERM;
}

/* Finds the peer's executable: opened (for hashing) when want_fd, otherwise
 * only stat'ed through the link. */
static int unix_exe_open(const struct sockid_peer *peer, bool want_fd, struct unix_exe *exe)
{
    exe->present = false;
    exe->fd = -1;
    if (want_fd) {
        exe->fd = openat(peer->proc_dirfd, "exe", O_RDONLY | O_CLOEXEC);
        if (exe->fd >= 0) {
            if (fstat(exe->fd, &exe->st) < 0)
                return -errno;
            exe->present = true;
            return 0;
        }
        if (!unix_exe_unavailable(errno))
            return -errno;
        /* An executable the agent may not read may still be stat'ed. */
    }
    if (fstatat(peer->proc_dirfd, "exe", &exe->st, 0) < 0)
        return unix_exe_unavailable(errno) ? 0 : -errno;
    exe->present = true;
    return 0;
}

static bool unix_ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* unix:path:/abs/exe. The link text is the kernel's d_path of the mapped
 * file, rendered from the peer's mount namespace: a process in a namespace of
 * its own (unprivileged user namespaces allow it) can bind-mount any binary
 * over /usr/bin/x and show "/usr/bin/x" there. So the path is emitted only
 * when it names, in the agent's own namespace, the very inode the peer runs.
 * That also settles the " (deleted)" suffix: the kernel appends it to an
 * unlinked file, and a file may also be named so. */
static int unix_emit_path(const struct sockid_peer *peer, const struct unix_exe *exe,
                          sockid_emit_fn emit, void *emit_ctx)
{
    char link[SOCKID_SELECTOR_VALUE_MAX + 2];
    struct stat named;
    ssize_t n;

    n = readlinkat(peer->proc_dirfd, "exe", link, sizeof(link) - 1);
    if (n < 0)
        return unix_exe_unavailable(errno) ? 0 : -errno;
    if ((size_t)n > SOCKID_SELECTOR_VALUE_MAX)
        return 0; /* cannot be a selector value */
    link[n] = '\0';
    if (link[0] != '/' || strlen(link) != (size_t)n)
        return 0;
    /* Deleted or replaced: the path names another file, or none. (The inode
     * check below catches this too; this says why it matters.) */
    if (unix_ends_with(link, (size_t)n, UNIX_DELETED_SUFFIX) && exe->st.st_nlink == 0)
        return 0;
    if (stat(link, &named) < 0 || named.st_dev != exe->st.st_dev || named.st_ino != exe->st.st_ino)
        return 0;
    return unix_emit_foreign(emit, emit_ctx, "path", link);
}

static void unix_cache_key_of(const struct stat *st, struct unix_cache_key *key)
{
    memset(key, 0, sizeof(*key));
    key->dev = st->st_dev;
    key->ino = st->st_ino;
    key->size = st->st_size;
    key->mtim = st->st_mtim;
    key->ctim = st->st_ctim;
}

static bool unix_cache_key_eq(const struct unix_cache_key *a, const struct unix_cache_key *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtim.tv_sec == b->mtim.tv_sec && a->mtim.tv_nsec == b->mtim.tv_nsec &&
           a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

/* Copies what the cache holds for key, complete or partial. */
static bool unix_cache_get(struct unix_state *state, const struct unix_cache_key *key,
                           struct unix_hash *ret)
{
    bool found = false;
    (void)pthread_mutex_lock(&state->lock);
    for (size_t i = 0; i < UNIX_CACHE_ENTRIES; i++) {
        struct unix_cache_entry *e = &state->cache[i];
        if (e->last_used && unix_cache_key_eq(&e->key, key)) {
            e->last_used = ++state->clock;
            *ret = e->hash;
            found = true;
            break;
        }
    }
    (void)pthread_mutex_unlock(&state->lock);
    return found;
}

/* Stores h in the slot holding key already (keeping whichever of the two got
 * further, as another thread may have hashed the same file meanwhile), else
 * in an empty slot, else in the least recently used one. */
static void unix_cache_put(struct unix_state *state, const struct unix_cache_key *key,
                           const struct unix_hash *h)
{
    (void)pthread_mutex_lock(&state->lock);
    struct unix_cache_entry *victim = &state->cache[0];
    bool same = false;
    for (size_t i = 0; i < UNIX_CACHE_ENTRIES; i++) {
        struct unix_cache_entry *e = &state->cache[i];
        if (e->last_used && unix_cache_key_eq(&e->key, key)) {
            victim = e;
            same = true;
            break;
        }
        if (e->last_used < victim->last_used)
            victim = e;
    }
    if (!same || (!victim->hash.complete && (h->complete || h->done > victim->hash.done))) {
        victim->key = *key;
        victim->hash = *h;
    }
    victim->last_used = ++state->clock;
    (void)pthread_mutex_unlock(&state->lock);
}

/* Continues h over fd up to size bytes. Returns 0 when complete,
 * -ETIMEDOUT at deadline_ns (h holds the progress), -ESTALE when the file
 * turned out shorter than size (it changed), or the read error. */
static int unix_hash_fd(int fd, off_t size, uint64_t deadline_ns, struct unix_hash *h)
{
    uint8_t *buf;
    int r = 0;

    buf = malloc(UNIX_HASH_CHUNK);
    if (!buf)
        return -ENOMEM;
    while (h->done < size) {
        if (unix_now_ns() >= deadline_ns) {
            r = -ETIMEDOUT;
            goto out;
        }
        size_t want = UNIX_HASH_CHUNK;
        if ((uint64_t)(size - h->done) < want)
            want = (size_t)(size - h->done);
        ssize_t n = pread(fd, buf, want, h->done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            goto out;
        }
        if (n == 0) {
            r = -ESTALE;
            goto out;
        }
        (void)crypto_hash_sha256_update(&h->state, buf, (unsigned long long)n);
        h->done += n;
    }
    (void)crypto_hash_sha256_final(&h->state, h->digest);
    h->complete = true;
out:
    free(buf);
    return r;
}

/* unix:sha256:HEX of the executable's contents, hashed once per version of
 * the file (see struct unix_cache_key). */
static int unix_emit_sha256(struct unix_state *state, const struct sockid_peer *peer,
                            const struct unix_exe *exe, sockid_emit_fn emit, void *emit_ctx)
{
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    struct unix_cache_key key, after_key;
    struct unix_hash h;
    struct stat after;
    int r;

    if (exe->fd < 0 || !S_ISREG(exe->st.st_mode) || exe->st.st_size < 0 ||
        (uint64_t)exe->st.st_size > state->sha256_max_bytes)
        return 0;
    unix_cache_key_of(&exe->st, &key);
    if (!unix_cache_get(state, &key, &h)) {
        memset(&h, 0, sizeof(h));
        (void)crypto_hash_sha256_init(&h.state);
    }
    if (!h.complete) {
        off_t before = h.done;
        r = unix_hash_fd(exe->fd, exe->st.st_size, peer->deadline_ns, &h);
        if (r < 0 && r != -ETIMEDOUT)
            return r == -ESTALE ? 0 : r;
        /* A write during hashing changes the size or a timestamp: what was
         * read may mix two versions, so it describes neither. */
        if (fstat(exe->fd, &after) < 0)
            return -errno;
        unix_cache_key_of(&after, &after_key);
        if (!unix_cache_key_eq(&key, &after_key))
            return r;
        if (h.done > before)
            unix_cache_put(state, &key, &h);
        if (r < 0)
            return r;
    }
    (void)sodium_bin2hex(hex, sizeof(hex), h.digest, sizeof(h.digest));
    r = emit(emit_ctx, UNIX_TYPE, "sha256", hex);
    return r < 0 ? r : 0;
}

static int unix_attest(void *vstate, const struct sockid_peer *peer, sockid_emit_fn emit,
                       void *emit_ctx)
{
    struct unix_state *state = vstate;
    struct unix_exe exe = {.fd = -1};
    int r;

    if (!state || !peer || !emit || peer->struct_size < SOCKID_PEER_SIZE_MIN ||
        (peer->n_groups && !peer->groups))
        return -EINVAL;

    r = unix_emit_u32(emit, emit_ctx, "uid", peer->uid);
    if (r < 0)
        goto out;
    r = unix_emit_u32(emit, emit_ctx, "gid", peer->gid);
    if (r < 0)
        goto out;
    r = unix_emit_nss_name(state, false, peer->uid, emit, emit_ctx);
    if (r < 0)
        goto out;
    r = unix_emit_nss_name(state, true, peer->gid, emit, emit_ctx);
    if (r < 0)
        goto out;
    for (size_t i = 0; i < peer->n_groups; i++) {
        r = unix_emit_u32(emit, emit_ctx, "supplementary_gid", peer->groups[i]);
        if (r < 0)
            goto out;
    }

    r = unix_exe_open(peer, state->sha256, &exe);
    if (r < 0 || !exe.present)
        goto out;
    r = unix_emit_path(peer, &exe, emit, emit_ctx);
    if (r < 0)
        goto out;
    if (state->sha256)
        r = unix_emit_sha256(state, peer, &exe, emit, emit_ctx);
out:
    if (exe.fd >= 0)
        (void)close(exe.fd);
    return r;
}

static const struct sockid_attestor unix_attestor = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "unix",
    .init = unix_init,
    .attest = unix_attest,
    .fini = unix_fini,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void)
{
    return &unix_attestor;
}
