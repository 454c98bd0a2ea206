/* Signing keys (see keys.h).
 *
 * Key files. DATA_DIR/keys/KID.key, mode 0600, in a directory of mode 0700,
 * both owned by the agent's user. A file is small, line-based text, every
 * line "NAME VALUE\n" in this order and nothing else:
 *
 *   sockid-key 1
 *   created_at 1764000000
 *   retired_at 0
 *   drop_after 0
 *   seed 0123...xyz   (43 characters: base64url of the 32-byte seed)
 *
 * Times are unix seconds in canonical decimal (no sign, no leading zeros).
 * retired_at is 0 for the active key, and then drop_after is 0 too; a retired
 * key has drop_after >= retired_at. The seed is what is stored, not the
 * expanded secret key: the public key and the kid are recomputed from it on
 * load, and a file whose name is not its kid is refused, so a file copied or
 * renamed by hand cannot make the bundle advertise one kid and sign with
 * another. The first line carries the format version; another version is
 * refused by name rather than guessed at.
 *
 * Writes are atomic: KID.key.tmp (O_EXCL, 0600), fsync, rename over KID.key,
 * fsync of the directory. A crash leaves either the old file or the new one,
 * plus perhaps a stale .tmp, which the next keys_open removes.
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
 * Publication follows entries.c: a mutex and an atomic generation bumped in
 * the same critical section; a reader's fast path is one relaxed load of the
 * generation. Rotation and maintenance are serialized by a second mutex held
 * across the disk writes, so readers never wait on an fsync. */
#define _GNU_SOURCE /* asprintf */
#include "keys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#define KEYS_FILE_MAX     4096u /* bytes: a key file is about 120 */
#define KEYS_FILE_VERSION 1
#define KEYS_SEED_LEN     crypto_sign_SEEDBYTES
#define KEYS_SEED_B64_LEN 43u
#define KEYS_SUFFIX       ".key"
#define KEYS_TMP_SUFFIX   ".key.tmp"
/* config.c's ceiling for max_ttl: the longest any token can live. */
#define KEYS_RECOVERY_TTL 31536000
#define KEYS_B64          sodium_base64_VARIANT_URLSAFE_NO_PADDING

static void set_err(char *err, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t len, const char *fmt, ...)
{
    if (!err || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

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

/* --- key files ----------------------------------------------------------- */

struct keys {
    pthread_mutex_t lock; /* publication */
    /* Bumped under lock with each publish; read without it by readers. */
    _Atomic uint64_t generation;
    struct keyset *current; /* written under write_lock and lock */
    /* One rotation or maintenance at a time, held across disk writes. */
    pthread_mutex_t write_lock;
    int dir_fd;
    char *dir; /* DATA_DIR/keys, for messages */
};

static bool keys_b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static bool keys_name_has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcmp(name + n - s, suffix) == 0;
}

static void keys_key_name(const struct key *key,
                          char name[static KEYS_KID_LEN + sizeof(KEYS_SUFFIX)])
{
    (void)snprintf(name, KEYS_KID_LEN + sizeof(KEYS_SUFFIX), "%.*s" KEYS_SUFFIX, (int)KEYS_KID_LEN,
                   key->kid);
}

/* "KID.key" with KID 43 base64url characters. */
static bool keys_name_valid(const char *name)
{
    if (strlen(name) != KEYS_KID_LEN + strlen(KEYS_SUFFIX) ||
        strcmp(name + KEYS_KID_LEN, KEYS_SUFFIX) != 0)
        return false;
    for (size_t i = 0; i < KEYS_KID_LEN; i++)
        if (!keys_b64url_char(name[i]))
            return false;
    return true;
}

static int keys_fsync_dir(const struct keys *k, char *err, size_t err_len)
{
    if (fsync(k->dir_fd) < 0) {
        int e = errno;
        set_err(err, err_len, "cannot sync keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    return 0;
}

static int keys_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Writes key's file atomically and durably (see the top of the file). */
static int keys_write_file(const struct keys *k, const struct key *key, char *err, size_t err_len)
{
    char name[KEYS_KID_LEN + sizeof(KEYS_TMP_SUFFIX)];
    char tmp[KEYS_KID_LEN + sizeof(KEYS_TMP_SUFFIX)];
    uint8_t seed[KEYS_SEED_LEN];
    char seed_b64[KEYS_SEED_B64_LEN + 1];
    char text[256];
    int fd = -1, r = 0, n;
    bool tmp_exists = false;

    if (!key->secret_key)
        return -EINVAL;
    keys_key_name(key, name);
    (void)snprintf(tmp, sizeof(tmp), "%.*s" KEYS_TMP_SUFFIX, (int)KEYS_KID_LEN, key->kid);
    (void)crypto_sign_ed25519_sk_to_seed(seed, key->secret_key);
    (void)sodium_bin2base64(seed_b64, sizeof(seed_b64), seed, sizeof(seed), KEYS_B64);
    n = snprintf(text, sizeof(text),
                 "sockid-key %d\ncreated_at %" PRId64 "\nretired_at %" PRId64
                 "\ndrop_after %" PRId64 "\nseed %s\n",
                 KEYS_FILE_VERSION, key->created_at, key->retired_at, key->drop_after, seed_b64);
    sodium_memzero(seed, sizeof(seed));
    sodium_memzero(seed_b64, sizeof(seed_b64));
    if (n < 0 || (size_t)n >= sizeof(text)) {
        r = -EINVAL;
        set_err(err, err_len, "cannot encode key %s", key->kid);
        goto out;
    }

    for (int attempt = 0; attempt < 2; attempt++) {
        fd = openat(k->dir_fd, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0 || errno != EEXIST || attempt > 0)
            break;
        /* Left by a write that failed half-way; ours alone, being in a
         * directory only we may write. */
        (void)unlinkat(k->dir_fd, tmp, 0);
    }
    if (fd < 0) {
        r = -errno;
        set_err(err, err_len, "cannot create %s/%s: %s", k->dir, tmp, strerror(-r));
        goto out;
    }
    tmp_exists = true;
    r = keys_write_all(fd, text, (size_t)n);
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    fd = -1;
    if (r < 0) {
        set_err(err, err_len, "cannot write %s/%s: %s", k->dir, tmp, strerror(-r));
        goto out;
    }
    if (renameat(k->dir_fd, tmp, k->dir_fd, name) < 0) {
        r = -errno;
        set_err(err, err_len, "cannot rename %s/%s to %s: %s", k->dir, tmp, name, strerror(-r));
        goto out;
    }
    tmp_exists = false;
    r = keys_fsync_dir(k, err, err_len);
out:
    if (fd >= 0)
        (void)close(fd);
    if (tmp_exists)
        (void)unlinkat(k->dir_fd, tmp, 0);
    sodium_memzero(text, sizeof(text));
    return r;
}

/* Canonical decimal: digits only, no leading zeros, fits in int64_t. */
static bool keys_parse_i64(const char *s, size_t len, int64_t *ret)
{
    if (len == 0 || len > 19 || (len > 1 && s[0] == '0'))
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

/* The line at *p must be "NAME VALUE\n", VALUE non-empty printable ASCII
 * without spaces. */
static bool keys_field(const char **p, const char *end, const char *field, const char **ret_val,
                       size_t *ret_len)
{
    const char *s = *p;
    size_t fl = strlen(field);
    if ((size_t)(end - s) < fl + 2 || memcmp(s, field, fl) != 0 || s[fl] != ' ')
        return false;
    const char *v = s + fl + 1;
    const char *nl = memchr(v, '\n', (size_t)(end - v));
    if (!nl || nl == v)
        return false;
    for (const char *q = v; q < nl; q++)
        if (*q <= 0x20 || *q >= 0x7f)
            return false;
    *ret_val = v;
    *ret_len = (size_t)(nl - v);
    *p = nl + 1;
    return true;
}

/* Parses a key file's text into times and a seed. On failure returns a
 * description of the first problem. */
static const char *keys_parse(const char *buf, size_t len, int64_t times[static 3],
                              uint8_t seed[static KEYS_SEED_LEN])
{
    static const char *const time_fields[3] = {"created_at", "retired_at", "drop_after"};
    const char *p = buf, *end = buf + len, *v;
    size_t vl;
    int64_t version;

    if (!keys_field(&p, end, "sockid-key", &v, &vl) || !keys_parse_i64(v, vl, &version))
        return "line 1 is not \"sockid-key VERSION\"";
    if (version != KEYS_FILE_VERSION)
        return "it has a format version this agent does not read (it reads version 1)";
    for (int i = 0; i < 3; i++) {
        if (!keys_field(&p, end, time_fields[i], &v, &vl))
            return i == 0   ? "line 2 is not \"created_at SECONDS\""
                   : i == 1 ? "line 3 is not \"retired_at SECONDS\""
                            : "line 4 is not \"drop_after SECONDS\"";
        if (!keys_parse_i64(v, vl, &times[i]))
            return i == 0   ? "created_at is not a number of seconds"
                   : i == 1 ? "retired_at is not a number of seconds"
                            : "drop_after is not a number of seconds";
    }
    if (times[1] == 0 && times[2] != 0)
        return "an active key (retired_at 0) has a drop_after";
    if (times[1] != 0 && times[2] < times[1])
        return "drop_after is before retired_at";
    if (!keys_field(&p, end, "seed", &v, &vl))
        return "line 5 is not \"seed BASE64URL\"";
    if (p != end)
        return "it has more than 5 lines";

    size_t bin_len = 0;
    const char *b64_end = NULL;
    char again[KEYS_SEED_B64_LEN + 1];
    if (vl != KEYS_SEED_B64_LEN ||
        sodium_base642bin(seed, KEYS_SEED_LEN, v, vl, NULL, &bin_len, &b64_end, KEYS_B64) != 0 ||
        bin_len != KEYS_SEED_LEN || b64_end != v + vl)
        return "the seed is not 43 characters of base64url (32 bytes)";
    /* One encoding per seed: a re-encoding must give the same text. */
    (void)sodium_bin2base64(again, sizeof(again), seed, KEYS_SEED_LEN, KEYS_B64);
    bool same = sodium_memcmp(again, v, KEYS_SEED_B64_LEN) == 0;
    sodium_memzero(again, sizeof(again));
    if (!same)
        return "the seed is not canonical base64url";
    return NULL;
}

/* The owner and mode checks, with the command that fixes each. */
static int keys_check_stat(const struct stat *sb, const char *what, const char *dir,
                           const char *name, const char *chmod_mode, char *err, size_t err_len)
{
    const char *sep = name ? "/" : "";
    if (!name)
        name = "";
    if (sb->st_uid != geteuid()) {
        set_err(err, err_len,
                "%s %s%s%s is owned by uid %u, not by the agent's uid %u: run chown %u %s%s%s",
                what, dir, sep, name, (unsigned)sb->st_uid, (unsigned)geteuid(),
                (unsigned)geteuid(), dir, sep, name);
        return -EPERM;
    }
    if (sb->st_mode & (S_IRWXG | S_IRWXO)) {
        set_err(err, err_len,
                "%s %s%s%s is accessible by group or others (mode %04o): run chmod %s %s%s%s", what,
                dir, sep, name, (unsigned)(sb->st_mode & 07777), chmod_mode, dir, sep, name);
        return -EPERM;
    }
    return 0;
}

/* Reads and checks DIR/name into ret (a key with its secret half). */
static int keys_load_file(const struct keys *k, const char *name, struct key *ret, char *err,
                          size_t err_len)
{
    char buf[KEYS_FILE_MAX + 1];
    uint8_t seed[KEYS_SEED_LEN];
    int64_t times[3];
    size_t len = 0;
    struct stat sb;
    struct key key = {0};
    const char *why;
    int r = 0;

    if (!keys_name_valid(name)) {
        set_err(err, err_len,
                "key file %s/%s is not named KID.key (KID: 43 base64url characters): move it "
                "out of %s",
                k->dir, name, k->dir);
        return -EINVAL;
    }
    int fd = openat(k->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        if (r == -ELOOP)
            set_err(err, err_len, "key file %s/%s is a symbolic link: replace it with the file",
                    k->dir, name);
        else
            set_err(err, err_len, "cannot open key file %s/%s: %s", k->dir, name, strerror(-r));
        return r;
    }
    if (fstat(fd, &sb) < 0) {
        r = -errno;
        set_err(err, err_len, "cannot stat key file %s/%s: %s", k->dir, name, strerror(-r));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        r = -EINVAL;
        set_err(err, err_len, "key file %s/%s is not a regular file: move it out of %s", k->dir,
                name, k->dir);
        goto out;
    }
    r = keys_check_stat(&sb, "key file", k->dir, name, "600", err, err_len);
    if (r < 0)
        goto out;
    if (sb.st_size > (off_t)KEYS_FILE_MAX) {
        r = -EFBIG;
        set_err(err, err_len,
                "key file %s/%s is %jd bytes, more than a key file can be (%u): move it out of %s",
                k->dir, name, (intmax_t)sb.st_size, KEYS_FILE_MAX, k->dir);
        goto out;
    }
    /* Bounded by the buffer, not by st_size: the file could grow meanwhile. */
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            set_err(err, err_len, "cannot read key file %s/%s: %s", k->dir, name, strerror(-r));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KEYS_FILE_MAX) {
            r = -EFBIG;
            set_err(err, err_len, "key file %s/%s is more than %u bytes: move it out of %s", k->dir,
                    name, KEYS_FILE_MAX, k->dir);
            goto out;
        }
    }
    why = keys_parse(buf, len, times, seed);
    if (why) {
        r = -EINVAL;
        set_err(err, err_len,
                "key file %s/%s is malformed: %s; restore it from a backup or move it out of %s",
                k->dir, name, why, k->dir);
        goto out;
    }
    r = key_from_seed(seed, times[0], &key);
    if (r < 0) {
        set_err(err, err_len, "cannot load key file %s/%s: %s", k->dir, name, strerror(-r));
        goto out;
    }
    key.retired_at = times[1];
    key.drop_after = times[2];
    if (strncmp(key.kid, name, KEYS_KID_LEN) != 0) {
        r = -EINVAL;
        set_err(err, err_len,
                "key file %s/%s holds the key %s, not the one its name says: rename it to "
                "%s" KEYS_SUFFIX " or move it out of %s",
                k->dir, name, key.kid, key.kid, k->dir);
        key_wipe(&key);
        goto out;
    }
    *ret = key;
out:
    (void)close(fd);
    sodium_memzero(buf, sizeof(buf));
    sodium_memzero(seed, sizeof(seed));
    return r;
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
        set_err(err, err_len,
                "cannot rotate keys: %u keys are kept already and every retired one may still "
                "verify live tokens; retry after %" PRId64 " (unix time), when the first expires",
                KEYS_MAX, first_drop);
        return -ENOSPC;
    }
    if (now > INT64_MAX - (int64_t)max_token_ttl) {
        set_err(err, err_len, "cannot rotate keys: time %" PRId64 " is out of range", now);
        return -EOVERFLOW;
    }
    r = keys_new_key(now, &fresh);
    if (r < 0) {
        set_err(err, err_len, "cannot create a key: %s", strerror(-r));
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
        set_err(err, err_len, "cannot rotate keys: %s", strerror(-r));
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
                set_err(err, err_len, "cannot remove expired key file %s/%s: %s", k->dir, name,
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
            set_err(err, err_len, "cannot drop expired keys: %s", strerror(-e));
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

/* Opens (creating) DATA_DIR/keys and checks its owner and mode. */
static int keys_open_dir(struct keys *k, const char *data_dir, char *err, size_t err_len)
{
    size_t len = strlen(data_dir);
    bool slash = len > 0 && data_dir[len - 1] == '/';
    if (asprintf(&k->dir, "%s%skeys", data_dir, slash ? "" : "/") < 0) {
        k->dir = NULL;
        return -ENOMEM;
    }
    if (mkdir(k->dir, 0700) == 0) {
        /* Make the new name durable. */
        int pfd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd < 0 || fsync(pfd) < 0) {
            int e = errno;
            set_err(err, err_len, "cannot sync data directory %s: %s", data_dir, strerror(e));
            if (pfd >= 0)
                (void)close(pfd);
            return -e;
        }
        (void)close(pfd);
    } else if (errno != EEXIST) {
        int e = errno;
        set_err(err, err_len, "cannot create keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    k->dir_fd = open(k->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (k->dir_fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR)
            set_err(err, err_len,
                    "keys directory %s is a symbolic link or not a directory: move it aside",
                    k->dir);
        else
            set_err(err, err_len, "cannot open keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    struct stat sb;
    if (fstat(k->dir_fd, &sb) < 0) {
        int e = errno;
        set_err(err, err_len, "cannot stat keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    return keys_check_stat(&sb, "keys directory", k->dir, NULL, "700", err, err_len);
}

/* Loads every KID.key (at most KEYS_MAX) into keys; removes stale .tmp. */
static int keys_scan(struct keys *k, struct key *keys, size_t *ret_n, char *err, size_t err_len)
{
    size_t n = 0;
    int r = 0;
    int sfd = openat(k->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
    if (!d) {
        r = -errno;
        if (sfd >= 0)
            (void)close(sfd);
        set_err(err, err_len, "cannot read keys directory %s: %s", k->dir, strerror(-r));
        return r;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0) {
                r = -errno;
                set_err(err, err_len, "cannot read keys directory %s: %s", k->dir, strerror(-r));
            }
            break;
        }
        if (keys_name_has_suffix(de->d_name, KEYS_TMP_SUFFIX)) {
            /* A write that never reached its rename: the key file it was
             * replacing, if any, is intact. */
            (void)unlinkat(k->dir_fd, de->d_name, 0);
            continue;
        }
        if (!keys_name_has_suffix(de->d_name, KEYS_SUFFIX))
            continue;
        if (n == KEYS_MAX) {
            r = -E2BIG;
            set_err(err, err_len,
                    "keys directory %s holds more than %u key files: remove the retired ones "
                    "past their drop_after",
                    k->dir, KEYS_MAX);
            break;
        }
        r = keys_load_file(k, de->d_name, &keys[n], err, err_len);
        if (r < 0)
            break;
        n++;
    }
    (void)closedir(d);
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            key_wipe(&keys[i]);
        return r;
    }
    *ret_n = n;
    return 0;
}

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
        set_err(err, err_len, "invalid arguments to keys_open");
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
                set_err(err, err_len, "cannot remove expired key file %s/%s: %s", k->dir, name,
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
            set_err(err, err_len,
                    "keys directory %s holds %u retired keys and no active one: remove the "
                    "oldest retired key file",
                    k->dir, KEYS_MAX);
            goto out;
        }
        r = keys_new_key(now, &keys[n]);
        if (r < 0) {
            set_err(err, err_len, "cannot create a key: %s", strerror(-r));
            goto out;
        }
        list[kept++] = &keys[n++];
        r = keys_write_file(k, list[kept - 1], err, err_len);
        if (r < 0)
            goto out;
    }

    r = keyset_new(list, kept, &k->current);
    if (r < 0)
        set_err(err, err_len, "cannot build the keyset: %s", strerror(-r));
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
