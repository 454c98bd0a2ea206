/* Signing keys on disk (see keys.h): the key file format, atomic writes,
 * the keys directory's owner and mode checks, and loading the files back.
 *
 * Separate from keys.c because it is the only part that parses bytes an
 * attacker with write access to the data directory could shape; it decides
 * nothing about which keys exist or when they rotate (keys.c does).
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
 * plus perhaps a stale .tmp, which the next keys_open removes. */
#define _GNU_SOURCE /* asprintf */
#include "keys.h"
#include "keys_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define KEYS_FILE_MAX     4096u /* bytes: a key file is about 120 */
#define KEYS_FILE_VERSION 1
#define KEYS_SEED_B64_LEN 43u
#define KEYS_TMP_SUFFIX   ".key.tmp"

/* --- key files ----------------------------------------------------------- */

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

void keys_key_name(const struct key *key, char name[static KEYS_KID_LEN + sizeof(KEYS_SUFFIX)])
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

int keys_fsync_dir(const struct keys *k, char *err, size_t err_len)
{
    if (fsync(k->dir_fd) < 0) {
        int e = errno;
        text_err(err, err_len, "cannot sync keys directory %s: %s", k->dir, strerror(e));
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
int keys_write_file(const struct keys *k, const struct key *key, char *err, size_t err_len)
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
        text_err(err, err_len, "cannot encode key %s", key->kid);
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
        text_err(err, err_len, "cannot create %s/%s: %s", k->dir, tmp, strerror(-r));
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
        text_err(err, err_len, "cannot write %s/%s: %s", k->dir, tmp, strerror(-r));
        goto out;
    }
    if (renameat(k->dir_fd, tmp, k->dir_fd, name) < 0) {
        r = -errno;
        text_err(err, err_len, "cannot rename %s/%s to %s: %s", k->dir, tmp, name, strerror(-r));
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
        text_err(err, err_len,
                 "%s %s%s%s is owned by uid %u, not by the agent's uid %u: run chown %u %s%s%s",
                 what, dir, sep, name, (unsigned)sb->st_uid, (unsigned)geteuid(),
                 (unsigned)geteuid(), dir, sep, name);
        return -EPERM;
    }
    if (sb->st_mode & (S_IRWXG | S_IRWXO)) {
        text_err(err, err_len,
                 "%s %s%s%s is accessible by group or others (mode %04o): run chmod %s %s%s%s",
                 what, dir, sep, name, (unsigned)(sb->st_mode & 07777), chmod_mode, dir, sep, name);
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
        text_err(err, err_len,
                 "key file %s/%s is not named KID.key (KID: 43 base64url characters): move it "
                 "out of %s",
                 k->dir, name, k->dir);
        return -EINVAL;
    }
    int fd = openat(k->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        if (r == -ELOOP)
            text_err(err, err_len, "key file %s/%s is a symbolic link: replace it with the file",
                     k->dir, name);
        else
            text_err(err, err_len, "cannot open key file %s/%s: %s", k->dir, name, strerror(-r));
        return r;
    }
    if (fstat(fd, &sb) < 0) {
        r = -errno;
        text_err(err, err_len, "cannot stat key file %s/%s: %s", k->dir, name, strerror(-r));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        r = -EINVAL;
        text_err(err, err_len, "key file %s/%s is not a regular file: move it out of %s", k->dir,
                 name, k->dir);
        goto out;
    }
    r = keys_check_stat(&sb, "key file", k->dir, name, "600", err, err_len);
    if (r < 0)
        goto out;
    if (sb.st_size > (off_t)KEYS_FILE_MAX) {
        r = -EFBIG;
        text_err(err, err_len,
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
            text_err(err, err_len, "cannot read key file %s/%s: %s", k->dir, name, strerror(-r));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > KEYS_FILE_MAX) {
            r = -EFBIG;
            text_err(err, err_len, "key file %s/%s is more than %u bytes: move it out of %s",
                     k->dir, name, KEYS_FILE_MAX, k->dir);
            goto out;
        }
    }
    why = keys_parse(buf, len, times, seed);
    if (why) {
        r = -EINVAL;
        text_err(err, err_len,
                 "key file %s/%s is malformed: %s; restore it from a backup or move it out of %s",
                 k->dir, name, why, k->dir);
        goto out;
    }
    r = key_from_seed(seed, times[0], &key);
    if (r < 0) {
        text_err(err, err_len, "cannot load key file %s/%s: %s", k->dir, name, strerror(-r));
        goto out;
    }
    key.retired_at = times[1];
    key.drop_after = times[2];
    if (strncmp(key.kid, name, KEYS_KID_LEN) != 0) {
        r = -EINVAL;
        text_err(err, err_len,
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

/* --- the keys directory -------------------------------------------------- */

/* Opens (creating) DATA_DIR/keys and checks its owner and mode. */
int keys_open_dir(struct keys *k, const char *data_dir, char *err, size_t err_len)
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
            text_err(err, err_len, "cannot sync data directory %s: %s", data_dir, strerror(e));
            if (pfd >= 0)
                (void)close(pfd);
            return -e;
        }
        (void)close(pfd);
    } else if (errno != EEXIST) {
        int e = errno;
        text_err(err, err_len, "cannot create keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    k->dir_fd = open(k->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (k->dir_fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR)
            text_err(err, err_len,
                     "keys directory %s is a symbolic link or not a directory: move it aside",
                     k->dir);
        else
            text_err(err, err_len, "cannot open keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    struct stat sb;
    if (fstat(k->dir_fd, &sb) < 0) {
        int e = errno;
        text_err(err, err_len, "cannot stat keys directory %s: %s", k->dir, strerror(e));
        return -e;
    }
    return keys_check_stat(&sb, "keys directory", k->dir, NULL, "700", err, err_len);
}

/* Loads every KID.key (at most KEYS_MAX) into keys; removes stale .tmp. */
int keys_scan(struct keys *k, struct key *keys, size_t *ret_n, char *err, size_t err_len)
{
    size_t n = 0;
    int r = 0;
    int sfd = openat(k->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = sfd >= 0 ? fdopendir(sfd) : NULL;
    if (!d) {
        r = -errno;
        if (sfd >= 0)
            (void)close(sfd);
        text_err(err, err_len, "cannot read keys directory %s: %s", k->dir, strerror(-r));
        return r;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0) {
                r = -errno;
                text_err(err, err_len, "cannot read keys directory %s: %s", k->dir, strerror(-r));
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
            text_err(err, err_len,
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
