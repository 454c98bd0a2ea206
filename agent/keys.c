/* Signing keys (see keys.h): key material, keysets and their JWKS, signing,
 * the RFC 7638 thumbprint, publication, and rotation and maintenance.
 *
 * The key files themselves (their format, atomic writes, the directory's
 * owner and mode checks, reading them back) are in keys_store.c, which knows
 * nothing of keysets or rotation; this file decides what to write and when.
 *
 * Rotation order. The new key's file is written (durably) before the old
 * key's file is rewritten as retired, and the new keyset is published only
 * after both. A crash between the two writes leaves two active key files,
 * never none, and never a bundle missing a key that signed a live token. On
 * load, of several active keys the newest (created_at, then kid) stays
 * active and the others are retired with drop_after = now +
 * KEYS_RECOVERY_TTL: keys_open does not know the configured max_ttl, so it
 * uses the largest max_ttl the configuration accepts; every token the old key
 * signed before the crash expires before that.
 *
 * Publication follows entries_index.c: a mutex and an atomic generation bumped in
 * the same critical section; a reader's fast path is one relaxed load of the
 * generation. Rotation and maintenance are serialized by a second mutex held
 * across the disk writes, so readers never wait on an fsync. */
#include "keys.h"
#include "keys_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

/* config.c's ceiling for max_ttl: the longest any token can live. */
#define KEYS_RECOVERY_TTL 31536000

/* --- keys ---------------------------------------------------------------- */

void keys_thumbprint(const uint8_t public_key[static 32], char kid[static KEYS_KID_LEN + 1])
{
    char x[KEYS_KID_LEN + 1];
    char jwk[96];
    uint8_t hash[crypto_hash_sha256_BYTES];

    (void)sodium_bin2base64(x, sizeof(x), public_key, crypto_sign_PUBLICKEYBYTES, KEYS_B64);
    /* RFC 7638: the required members only, sorted, no whitespace. */
    int n = snprintf(jwk, sizeof(jwk), "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    (void)crypto_hash_sha256(hash, (const unsigned char *)jwk, (unsigned long long)n);
    (void)sodium_bin2base64(kid, KEYS_KID_LEN + 1, hash, sizeof(hash), KEYS_B64);
}

int key_from_seed(const uint8_t seed[static 32], int64_t created_at, struct key *ret)
{
    if (!seed || !ret)
        return -EINVAL;
    uint8_t *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (!sk)
        return -ENOMEM;
    struct key k = {.created_at = created_at};
    if (crypto_sign_seed_keypair(k.public_key, sk, seed) != 0) {
        sodium_free(sk);
        return -EIO;
    }
    (void)sodium_mprotect_readonly(sk);
    k.secret_key = sk;
    keys_thumbprint(k.public_key, k.kid);
    *ret = k;
    return 0;
}

void key_wipe(struct key *key)
{
    if (!key)
        return;
    sodium_free(key->secret_key); /* zeroes before unmapping; accepts NULL */
    sodium_memzero(key, sizeof(*key));
}

/* dst: a copy of src with its own secret half. */
static int key_copy(const struct key *src, struct key *dst)
{
    struct key k = *src;
    k.secret_key = NULL;
    if (src->secret_key) {
        k.secret_key = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        if (!k.secret_key)
            return -ENOMEM;
        memcpy(k.secret_key, src->secret_key, crypto_sign_SECRETKEYBYTES);
        (void)sodium_mprotect_readonly(k.secret_key);
    }
    *dst = k;
    return 0;
}

int keys_sign(const struct key *key, const uint8_t *msg, size_t len, uint8_t sig[static 64])
{
    if (!sig)
        return -EINVAL;
    if (!key || !key->secret_key || (!msg && len > 0)) {
        memset(sig, 0, crypto_sign_BYTES);
        return -EINVAL;
    }
    if (crypto_sign_detached(sig, NULL, msg, len, key->secret_key) != 0) {
        memset(sig, 0, crypto_sign_BYTES);
        return -EIO;
    }
    return 0;
}

static bool key_is_retired(const struct key *k)
{
    return k->retired_at != 0;
}

/* --- keysets ------------------------------------------------------------- */

struct keyset {
    atomic_uint refs;
    size_t n;
    struct key keys[KEYS_MAX]; /* active first, then retired, newest first */
    char *jwks;
};

static struct keyset *keyset_free(struct keyset *ks)
{
    if (!ks)
        return NULL;
    for (size_t i = 0; i < ks->n; i++)
        key_wipe(&ks->keys[i]);
    free(ks->jwks);
    free(ks);
    return NULL;
}

/* Newest first; kid breaks ties so the order is total. */
static int keyset_cmp_retired(const void *a, const void *b)
{
    const struct key *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at > y->created_at ? -1 : 1;
    return strcmp(x->kid, y->kid);
}

static int keyset_build_jwks(struct keyset *ks)
{
    json_t *root = json_object();
    json_t *arr = json_array();
    int r = -ENOMEM;
    if (!root || !arr || json_object_set(root, "keys", arr) < 0)
        goto out;
    for (size_t i = 0; i < ks->n; i++) {
        char x[KEYS_KID_LEN + 1];
        (void)sodium_bin2base64(x, sizeof(x), ks->keys[i].public_key, crypto_sign_PUBLICKEYBYTES,
                                KEYS_B64);
        /* No "alg": node jose requires a key's alg to equal the token's
         * exactly, and "EdDSA" is being renamed (RFC 9864). */
        json_t *jwk = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519", "x", x,
                                "kid", ks->keys[i].kid, "use", "sig");
        if (!jwk || json_array_append_new(arr, jwk) < 0)
            goto out;
    }
    ks->jwks = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (ks->jwks)
        r = 0;
out:
    json_decref(arr);
    json_decref(root);
    return r;
}

int keyset_new(const struct key *const *keys, size_t n, struct keyset **ret)
{
    if (!ret || (n > 0 && !keys))
        return -EINVAL;
    if (n > KEYS_MAX)
        return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        char kid[KEYS_KID_LEN + 1];
        if (!keys[i])
            return -EINVAL;
        /* The kid is what verifiers look keys up by: it must be this key's. */
        keys_thumbprint(keys[i]->public_key, kid);
        if (memcmp(kid, keys[i]->kid, sizeof(kid)) != 0)
            return -EINVAL;
        if (keys[i]->secret_key && memcmp(keys[i]->secret_key + crypto_sign_SEEDBYTES,
                                          keys[i]->public_key, crypto_sign_PUBLICKEYBYTES) != 0)
            return -EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(keys[j]->kid, keys[i]->kid) == 0)
                return -EINVAL;
    }

    struct keyset *ks = calloc(1, sizeof(*ks));
    if (!ks)
        return -ENOMEM;
    atomic_init(&ks->refs, 1);
    size_t active = n;
    for (size_t i = 0; i < n && active == n; i++)
        if (!key_is_retired(keys[i]))
            active = i;
    int r = 0;
    if (active < n) {
        r = key_copy(keys[active], &ks->keys[0]);
        if (r < 0)
            goto fail;
        ks->n = 1;
    }
    size_t first_rest = ks->n;
    for (size_t i = 0; i < n; i++) {
        if (i == active)
            continue;
        r = key_copy(keys[i], &ks->keys[ks->n]);
        if (r < 0)
            goto fail;
        ks->n++;
    }
    qsort(ks->keys + first_rest, ks->n - first_rest, sizeof(ks->keys[0]), keyset_cmp_retired);
    r = keyset_build_jwks(ks);
    if (r < 0)
        goto fail;
    *ret = ks;
    return 0;
fail:
    (void)keyset_free(ks);
    return r;
}

struct keyset *keyset_ref(struct keyset *ks)
{
    if (ks)
        atomic_fetch_add_explicit(&ks->refs, 1, memory_order_relaxed);
    return ks;
}

struct keyset *keyset_unref(struct keyset *ks)
{
    if (ks && atomic_fetch_sub_explicit(&ks->refs, 1, memory_order_release) == 1) {
        atomic_thread_fence(memory_order_acquire);
        (void)keyset_free(ks);
    }
    return NULL;
}

const struct key *keyset_active(const struct keyset *ks)
{
    if (!ks || ks->n == 0 || key_is_retired(&ks->keys[0]))
        return NULL;
    return &ks->keys[0];
}

const struct key *keyset_find(const struct keyset *ks, const char *kid)
{
    if (!ks || !kid)
        return NULL;
    for (size_t i = 0; i < ks->n; i++)
        if (strcmp(ks->keys[i].kid, kid) == 0)
            return &ks->keys[i];
    return NULL;
}

size_t keyset_count(const struct keyset *ks)
{
    return ks ? ks->n : 0;
}

const struct key *keyset_at(const struct keyset *ks, size_t i)
{
    return ks && i < ks->n ? &ks->keys[i] : NULL;
}

const char *keyset_jwks(const struct keyset *ks)
{
    return ks ? ks->jwks : NULL;
}

/* --- publication --------------------------------------------------------- */

/* Replaces the current keyset with ks (taking the caller's reference). */
static void keys_publish(struct keys *k, struct keyset *ks)
{
    (void)pthread_mutex_lock(&k->lock);
    struct keyset *old = k->current;
    k->current = ks;
    atomic_fetch_add_explicit(&k->generation, 1, memory_order_relaxed);
    (void)pthread_mutex_unlock(&k->lock);
    /* Outside the lock: sodium_free unmaps pages. */
    (void)keyset_unref(old);
}

struct keyset *keys_current(struct keys *k)
{
    if (!k)
        return NULL;
    (void)pthread_mutex_lock(&k->lock);
    struct keyset *ks = keyset_ref(k->current);
    (void)pthread_mutex_unlock(&k->lock);
    return ks;
}

const struct keyset *keys_reader_get(struct keys *k, struct keys_reader *reader)
{
    /* Relaxed: on this path the reader uses only its own keyset, which it
     * already holds; the mutex orders everything else. */
    if (reader->keyset &&
        atomic_load_explicit(&k->generation, memory_order_relaxed) == reader->generation)
        return reader->keyset;
    (void)pthread_mutex_lock(&k->lock);
    struct keyset *ks = keyset_ref(k->current);
    uint64_t g = atomic_load_explicit(&k->generation, memory_order_relaxed);
    (void)pthread_mutex_unlock(&k->lock);
    (void)keyset_unref(reader->keyset);
    reader->keyset = ks;
    reader->generation = g;
    return ks;
}

void keys_reader_release(struct keys_reader *reader)
{
    if (!reader)
        return;
    reader->keyset = keyset_unref(reader->keyset);
    reader->generation = 0;
}

/* --- rotation and maintenance -------------------------------------------- */

static int keys_new_key(int64_t now, struct key *ret)
{
    uint8_t seed[KEYS_SEED_LEN];
    randombytes_buf(seed, sizeof(seed));
    int r = key_from_seed(seed, now, ret);
    sodium_memzero(seed, sizeof(seed));
    return r;
}

/* The keyset list[0..n) with a new active key in front and active (if any)
 * retired, written to disk: the new key's file first, so that a crash
 * between the two writes leaves two active keys, which keys_open resolves,
 * and never none. The keyset is built before the disk is touched, so that
 * running out of memory changes nothing. */
static int keys_rotate_list(struct keys *k, const struct key *const *list, size_t n,
                            const struct key *active, int64_t now, uint32_t max_token_ttl,
                            struct keyset **ret, char *err, size_t err_len)
{
    const struct key *next[KEYS_MAX + 1];
    struct key fresh = {0}, retired = {0};
    struct keyset *ks = NULL;
    int r;

    if (n >= KEYS_MAX) {
        int64_t first_drop = INT64_MAX;
        for (size_t i = 0; i < n; i++)
            if (key_is_retired(list[i]) && list[i]->drop_after < first_drop)
                first_drop = list[i]->drop_after;
        text_err(err, err_len,
                 "cannot rotate keys: %u keys are kept already and every retired one may still "
                 "verify live tokens; retry after %" PRId64 " (unix time), when the first expires",
                 KEYS_MAX, first_drop);
        return -ENOSPC;
    }
    if (now > INT64_MAX - (int64_t)max_token_ttl) {
        text_err(err, err_len, "cannot rotate keys: time %" PRId64 " is out of range", now);
        return -EOVERFLOW;
    }
    r = keys_new_key(now, &fresh);
    if (r < 0) {
        text_err(err, err_len, "cannot create a key: %s", strerror(-r));
        return r;
    }
    next[0] = &fresh;
    for (size_t i = 0; i < n; i++) {
        next[i + 1] = list[i];
        if (list[i] == active) {
            retired = *active; /* shares the secret half, which is only read */
            retired.retired_at = now;
            retired.drop_after = now + (int64_t)max_token_ttl;
            next[i + 1] = &retired;
        }
    }
    r = keyset_new(next, n + 1, &ks); /* refuses a duplicate kid */
    if (r < 0) {
        text_err(err, err_len, "cannot rotate keys: %s", strerror(-r));
        goto out;
    }
    r = keys_write_file(k, &fresh, err, err_len);
    if (r == 0 && active)
        r = keys_write_file(k, &retired, err, err_len);
    if (r < 0) {
        /* Back to one active key on disk where possible; if this fails too,
         * keys_open resolves the two. */
        char name[KEYS_KID_LEN + sizeof(KEYS_SUFFIX)];
        keys_key_name(&fresh, name);
        if (unlinkat(k->dir_fd, name, 0) == 0)
            (void)fsync(k->dir_fd);
        ks = keyset_unref(ks);
        goto out;
    }
    *ret = ks;
out:
    key_wipe(&fresh);
    return r;
}

/* Drops retired keys past drop_after, then rotates when rotate is set (or
 * when there is no active key), durably, and publishes the result. Sets
 * *ret_changed when a new keyset was published, even alongside an error
 * (drops done before a rotation failed stay done). Called with write_lock
 * held, which makes reading k->current without lock safe. */
static int keys_update(struct keys *k, int64_t now, bool rotate, uint32_t max_token_ttl,
                       bool *ret_changed, char *err, size_t err_len)
{
    const struct keyset *cur = k->current;
    const struct key *list[KEYS_MAX];
    const struct key *active = keyset_active(cur);
    struct keyset *next = NULL;
    bool dropped = false;
    size_t n = 0;
    int r = 0;

    *ret_changed = false;
    /* A key whose file cannot be removed stays in the bundle, which is
     * harmless, and is tried again next time. */
    for (size_t i = 0; i < cur->n; i++) {
        const struct key *key = &cur->keys[i];
        if (key_is_retired(key) && key->drop_after <= now) {
            char name[KEYS_KID_LEN + sizeof(KEYS_SUFFIX)];
            keys_key_name(key, name);
            if (unlinkat(k->dir_fd, name, 0) == 0 || errno == ENOENT) {
                dropped = true;
                continue;
            }
            if (r == 0) {
                r = -errno;
                text_err(err, err_len, "cannot remove expired key file %s/%s: %s", k->dir, name,
                         strerror(-r));
            }
        }
        list[n++] = key;
    }
    if (dropped && r == 0)
        r = keys_fsync_dir(k, err, err_len);

    if (r == 0 && (rotate || !active))
        r = keys_rotate_list(k, list, n, active, now, max_token_ttl, &next, err, err_len);
    if (!next && dropped) {
        int e = keyset_new(list, n, &next);
        if (e < 0 && r == 0) {
            r = e;
            text_err(err, err_len, "cannot drop expired keys: %s", strerror(-e));
        }
    }
    if (next) {
        keys_publish(k, next);
        *ret_changed = true;
    }
    return r;
}

int keys_rotate(struct keys *k, int64_t now, uint32_t max_token_ttl, char *err, size_t err_len)
{
    if (!k || now <= 0)
        return -EINVAL;
    bool changed;
    (void)pthread_mutex_lock(&k->write_lock);
    int r = keys_update(k, now, true, max_token_ttl, &changed, err, err_len);
    (void)pthread_mutex_unlock(&k->write_lock);
    return r;
}

int keys_maintain(struct keys *k, int64_t now, uint32_t rotation_s, uint32_t max_token_ttl,
                  char *err, size_t err_len)
{
    if (!k || now <= 0)
        return -EINVAL;
    bool changed;
    (void)pthread_mutex_lock(&k->write_lock);
    const struct key *active = keyset_active(k->current);
    /* rotation_s 0 disables scheduled rotation rather than rotating on
     * every call. */
    bool due = active && rotation_s > 0 && active->created_at <= now - (int64_t)rotation_s;
    int r = keys_update(k, now, due, max_token_ttl, &changed, err, err_len);
    (void)pthread_mutex_unlock(&k->write_lock);
    if (r < 0)
        return r;
    return changed ? 1 : 0;
}

/* --- open and close ------------------------------------------------------ */

/* Keeps the newest of several active keys active and retires the others
 * (see the top of the file), on disk first. */
static int keys_resolve_active(struct keys *k, struct key *keys, size_t n, int64_t now, char *err,
                               size_t err_len)
{
    struct key *newest = NULL;
    for (size_t i = 0; i < n; i++) {
        if (key_is_retired(&keys[i]))
            continue;
        if (!newest || keys[i].created_at > newest->created_at ||
            (keys[i].created_at == newest->created_at && strcmp(keys[i].kid, newest->kid) > 0))
            newest = &keys[i];
    }
    int64_t drop_after = now > INT64_MAX - KEYS_RECOVERY_TTL ? INT64_MAX : now + KEYS_RECOVERY_TTL;
    for (size_t i = 0; i < n; i++) {
        if (key_is_retired(&keys[i]) || &keys[i] == newest)
            continue;
        keys[i].retired_at = now;
        keys[i].drop_after = drop_after;
        int r = keys_write_file(k, &keys[i], err, err_len);
        if (r < 0)
            return r;
    }
    return 0;
}

int keys_open(const char *data_dir, int64_t now, struct keys **ret, char *err, size_t err_len)
{
    struct key keys[KEYS_MAX + 1];
    const struct key *list[KEYS_MAX + 1];
    size_t n = 0, kept = 0;
    bool dropped = false, have_active = false;
    int r;

    if (!data_dir || !*data_dir || !ret || now <= 0) {
        text_err(err, err_len, "invalid arguments to keys_open");
        return -EINVAL;
    }
    struct keys *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->dir_fd = -1;
    r = -pthread_mutex_init(&k->lock, NULL);
    if (r == 0 && (r = -pthread_mutex_init(&k->write_lock, NULL)) < 0)
        (void)pthread_mutex_destroy(&k->lock);
    if (r < 0) {
        free(k);
        return r;
    }
    atomic_init(&k->generation, 1);

    r = keys_open_dir(k, data_dir, err, err_len);
    if (r == 0)
        r = keys_scan(k, keys, &n, err, err_len);
    if (r == 0)
        r = keys_resolve_active(k, keys, n, now, err, err_len);
    if (r < 0)
        goto out;

    for (size_t i = 0; i < n; i++) {
        if (key_is_retired(&keys[i]) && keys[i].drop_after <= now) {
            char name[KEYS_KID_LEN + sizeof(KEYS_SUFFIX)];
            keys_key_name(&keys[i], name);
            if (unlinkat(k->dir_fd, name, 0) < 0 && errno != ENOENT) {
                r = -errno;
                text_err(err, err_len, "cannot remove expired key file %s/%s: %s", k->dir, name,
                         strerror(-r));
                goto out;
            }
            dropped = true;
            continue;
        }
        have_active |= !key_is_retired(&keys[i]);
        list[kept++] = &keys[i];
    }
    if (dropped) {
        r = keys_fsync_dir(k, err, err_len);
        if (r < 0)
            goto out;
    }

    if (!have_active) {
        if (kept >= KEYS_MAX) {
            r = -ENOSPC;
            text_err(err, err_len,
                     "keys directory %s holds %u retired keys and no active one: remove the "
                     "oldest retired key file",
                     k->dir, KEYS_MAX);
            goto out;
        }
        r = keys_new_key(now, &keys[n]);
        if (r < 0) {
            text_err(err, err_len, "cannot create a key: %s", strerror(-r));
            goto out;
        }
        list[kept++] = &keys[n++];
        r = keys_write_file(k, list[kept - 1], err, err_len);
        if (r < 0)
            goto out;
    }

    r = keyset_new(list, kept, &k->current);
    if (r < 0)
        text_err(err, err_len, "cannot build the keyset: %s", strerror(-r));
out:
    for (size_t i = 0; i < n; i++)
        key_wipe(&keys[i]);
    if (r < 0) {
        (void)keys_close(k);
        return r;
    }
    *ret = k;
    return 0;
}

struct keys *keys_close(struct keys *k)
{
    if (!k)
        return NULL;
    (void)keyset_unref(k->current);
    (void)pthread_mutex_destroy(&k->write_lock);
    (void)pthread_mutex_destroy(&k->lock);
    if (k->dir_fd >= 0)
        (void)close(k->dir_fd);
    free(k->dir);
    free(k);
    return NULL;
}
