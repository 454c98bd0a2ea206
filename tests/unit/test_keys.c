/* Signing keys (agent/keys.h).
 *
 * Known answers from RFC 8037 appendix A (the key, its thumbprint, a
 * signature); the JWKS parsed back and checked member by member; key files
 * checked on disk (modes, format, atomic leftovers); every refusal of
 * keys_open checked for the file it names and the command that fixes it;
 * rotation, maintenance and crash recovery driven by fake clocks; the reader
 * checked for picking up a new keyset, also from other threads. */
#define _GNU_SOURCE /* asprintf */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "keys.h"

#define T0  1764000000 /* a fake "now" */
#define TTL 300u

/* RFC 8037 A.1, A.3, A.4. */
static const char rfc_seed_hex[] =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char rfc_public_hex[] =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
static const char rfc_kid[] = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
static const char rfc_msg[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
static const char rfc_sig[] =
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

/* ---- helpers ---------------------------------------------------------------- */

struct fixture {
    char *data_dir;
    char *keys_dir;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    char tmpl[] = "/tmp/test_keys.XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    f->data_dir = strdup(tmpl);
    assert_non_null(f->data_dir);
    assert_true(asprintf(&f->keys_dir, "%s/keys", tmpl) > 0);
    *state = f;
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    (void)nftw(f->data_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f->data_dir);
    free(f->keys_dir);
    free(f);
    return 0;
}

static void hex_to_bin(const char *hex, uint8_t *out, size_t len)
{
    size_t bin_len = 0;
    assert_int_equal(sodium_hex2bin(out, len, hex, strlen(hex), NULL, &bin_len, NULL), 0);
    assert_int_equal(bin_len, len);
}

static char *path_of(const struct fixture *f, const char *kid)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s.key", f->keys_dir, kid) > 0);
    return p;
}

static void write_text(const char *path, const char *text, size_t len, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(close(fd), 0);
}

/* Writes a key file in format 1 for seed; its kid into kid. */
static void write_key_file(const struct fixture *f, const uint8_t seed[32], int64_t created_at,
                           int64_t retired_at, int64_t drop_after, char kid[KEYS_KID_LEN + 1])
{
    struct key key;
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    char text[256];
    assert_int_equal(key_from_seed(seed, created_at, &key), 0);
    memcpy(kid, key.kid, KEYS_KID_LEN + 1);
    key_wipe(&key);
    (void)mkdir(f->keys_dir, 0700);
    sodium_bin2base64(b64, sizeof(b64), seed, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int n = snprintf(text, sizeof(text),
                     "sockid-key 1\ncreated_at %" PRId64 "\nretired_at %" PRId64
                     "\ndrop_after %" PRId64 "\nseed %s\n",
                     created_at, retired_at, drop_after, b64);
    char *path = path_of(f, kid);
    write_text(path, text, (size_t)n, 0600);
    free(path);
}

static size_t count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name), s = strlen(suffix);
        if (l > s && strcmp(de->d_name + l - s, suffix) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static bool file_exists(const struct fixture *f, const char *kid)
{
    char *p = path_of(f, kid);
    bool ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static struct keys *open_ok(const struct fixture *f, int64_t now)
{
    struct keys *k = NULL;
    char err[512] = "";
    int r = keys_open(f->data_dir, now, &k, err, sizeof(err));
    if (r != 0)
        fail_msg("keys_open: %d: %s", r, err);
    return k;
}

/* keys_open must fail; returns the message. */
static const char *open_fails(const struct fixture *f, int64_t now)
{
    static char err[512];
    struct keys *k = (struct keys *)0x1;
    err[0] = '\0';
    int r = keys_open(f->data_dir, now, &k, err, sizeof(err));
    assert_true(r < 0);
    assert_ptr_equal(k, (struct keys *)0x1); /* ret written only on success */
    assert_true(err[0] != '\0');
    return err;
}

/* The only active key's kid. */
static void active_kid(struct keys *k, char kid[KEYS_KID_LEN + 1])
{
    struct keyset *ks = keys_current(k);
    const struct key *a = keyset_active(ks);
    assert_non_null(a);
    memcpy(kid, a->kid, KEYS_KID_LEN + 1);
    keyset_unref(ks);
}

static void assert_signs(const struct key *key)
{
    uint8_t sig[64];
    static const uint8_t msg[] = "hello";
    assert_int_equal(keys_sign(key, msg, sizeof(msg), sig), 0);
    assert_int_equal(crypto_sign_verify_detached(sig, msg, sizeof(msg), key->public_key), 0);
}

/* Locked memory of this process, in kB: sodium_malloc locks each secret's
 * page and sodium_free unlocks it, so a leaked secret half shows here even
 * though LeakSanitizer does not see sodium's mmap'd pages. */
static long locked_kb(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    assert_non_null(fp);
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof(line), fp))
        if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
            break;
    fclose(fp);
    assert_true(kb >= 0);
    return kb;
}

/* ---- known answers ---------------------------------------------------------- */

static void test_rfc8037_key_and_thumbprint(void **state)
{
    (void)state;
    uint8_t seed[32], pub[32];
    char kid[KEYS_KID_LEN + 1];
    struct key key;
    hex_to_bin(rfc_seed_hex, seed, 32);
    hex_to_bin(rfc_public_hex, pub, 32);

    assert_int_equal(key_from_seed(seed, 42, &key), 0);
    assert_memory_equal(key.public_key, pub, 32);
    assert_string_equal(key.kid, rfc_kid);
    assert_int_equal(strlen(key.kid), KEYS_KID_LEN);
    assert_int_equal(key.created_at, 42);
    assert_int_equal(key.retired_at, 0);
    assert_non_null(key.secret_key);

    keys_thumbprint(pub, kid);
    assert_string_equal(kid, rfc_kid);

    key_wipe(&key);
    assert_null(key.secret_key);
    key_wipe(&key); /* twice, and on a zeroed key: harmless */
    key_wipe(NULL);
}

static void test_rfc8037_signature(void **state)
{
    (void)state;
    uint8_t seed[32], sig[64];
    char b64[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    struct key key;
    hex_to_bin(rfc_seed_hex, seed, 32);
    assert_int_equal(key_from_seed(seed, 1, &key), 0);

    assert_int_equal(keys_sign(&key, (const uint8_t *)rfc_msg, strlen(rfc_msg), sig), 0);
    sodium_bin2base64(b64, sizeof(b64), sig, 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_string_equal(b64, rfc_sig);
    assert_int_equal(
        crypto_sign_verify_detached(sig, (const uint8_t *)rfc_msg, strlen(rfc_msg), key.public_key),
        0);
    sig[0] ^= 1;
    assert_int_not_equal(
        crypto_sign_verify_detached(sig, (const uint8_t *)rfc_msg, strlen(rfc_msg), key.public_key),
        0);

    /* A public-only key cannot sign; the output is zeroed. */
    struct key pub_only = key;
    pub_only.secret_key = NULL;
    memset(sig, 0xff, sizeof(sig));
    assert_int_equal(keys_sign(&pub_only, (const uint8_t *)"x", 1, sig), -EINVAL);
    for (size_t i = 0; i < sizeof(sig); i++)
        assert_int_equal(sig[i], 0);
    key_wipe(&key);
}

/* ---- keysets ---------------------------------------------------------------- */

static void make_key(uint8_t fill, int64_t created, int64_t retired, int64_t drop, struct key *k)
{
    uint8_t seed[32];
    memset(seed, fill, sizeof(seed));
    assert_int_equal(key_from_seed(seed, created, k), 0);
    k->retired_at = retired;
    k->drop_after = drop;
}

static void test_keyset_jwks_shape(void **state)
{
    (void)state;
    struct key k[3];
    make_key(1, 100, 200, 500, &k[0]); /* retired, older */
    make_key(2, 300, 0, 0, &k[1]);     /* active */
    make_key(3, 150, 300, 600, &k[2]); /* retired, newer */
    const struct key *list[] = {&k[0], &k[1], &k[2]};
    struct keyset *ks = NULL;
    assert_int_equal(keyset_new(list, 3, &ks), 0);

    /* Active first, then retired newest first. */
    assert_int_equal(keyset_count(ks), 3);
    assert_string_equal(keyset_active(ks)->kid, k[1].kid);
    assert_string_equal(keyset_at(ks, 0)->kid, k[1].kid);
    assert_string_equal(keyset_at(ks, 1)->kid, k[2].kid);
    assert_string_equal(keyset_at(ks, 2)->kid, k[0].kid);
    assert_null(keyset_at(ks, 3));
    assert_string_equal(keyset_find(ks, k[0].kid)->kid, k[0].kid);
    assert_null(keyset_find(ks, rfc_kid));
    assert_null(keyset_find(ks, NULL));

    const char *jwks = keyset_jwks(ks);
    assert_non_null(jwks);
    assert_null(strchr(jwks, ' '));
    assert_null(strchr(jwks, '\n'));
    json_error_t jerr;
    json_t *root = json_loads(jwks, 0, &jerr);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 1);
    json_t *arr = json_object_get(root, "keys");
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *jwk = json_array_get(arr, i);
        const struct key *want = keyset_at(ks, i);
        assert_int_equal(json_object_size(jwk), 5);
        assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "OKP");
        assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "Ed25519");
        assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
        assert_null(json_object_get(jwk, "alg"));
        assert_null(json_object_get(jwk, "d"));
        const char *x = json_string_value(json_object_get(jwk, "x"));
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        assert_non_null(x);
        assert_non_null(kid);
        uint8_t pub[32];
        size_t len = 0;
        const char *end = NULL;
        assert_int_equal(sodium_base642bin(pub, sizeof(pub), x, strlen(x), NULL, &len, &end,
                                           sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                         0);
        assert_int_equal(len, 32);
        assert_ptr_equal(end, x + strlen(x));
        assert_memory_equal(pub, want->public_key, 32);
        char thumb[KEYS_KID_LEN + 1];
        keys_thumbprint(pub, thumb);
        assert_string_equal(kid, thumb);
        assert_string_equal(kid, want->kid);
    }
    json_decref(root);

    /* The keyset holds copies: the originals can go. */
    for (size_t i = 0; i < 3; i++)
        key_wipe(&k[i]);
    assert_signs(keyset_active(ks));
    assert_ptr_equal(keyset_ref(ks), ks);
    keyset_unref(ks);
    assert_null(keyset_unref(ks));
    assert_null(keyset_unref(NULL));
    assert_null(keyset_ref(NULL));
}

static void test_keyset_rfc_exact_jwks(void **state)
{
    (void)state;
    uint8_t seed[32];
    struct key key;
    hex_to_bin(rfc_seed_hex, seed, 32);
    assert_int_equal(key_from_seed(seed, 1, &key), 0);
    const struct key *list[] = {&key};
    struct keyset *ks = NULL;
    assert_int_equal(keyset_new(list, 1, &ks), 0);
    assert_string_equal(keyset_jwks(ks),
                        "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":"
                        "\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\",\"kid\":"
                        "\"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k\",\"use\":\"sig\"}]}");
    keyset_unref(ks);
    key_wipe(&key);
}

static void test_keyset_refusals(void **state)
{
    (void)state;
    struct key k[KEYS_MAX + 1];
    const struct key *list[KEYS_MAX + 1];
    for (size_t i = 0; i <= KEYS_MAX; i++) {
        make_key((uint8_t)(i + 1), (int64_t)i + 1, (int64_t)i + 1, (int64_t)i + 10, &k[i]);
        list[i] = &k[i];
    }
    struct keyset *ks = (struct keyset *)0x1;
    assert_int_equal(keyset_new(list, KEYS_MAX + 1, &ks), -E2BIG);
    assert_ptr_equal(ks, (struct keyset *)0x1);

    /* Only retired keys: allowed (a verification-only set), no active one. */
    assert_int_equal(keyset_new(list, KEYS_MAX, &ks), 0);
    assert_null(keyset_active(ks));
    assert_int_equal(keyset_count(ks), KEYS_MAX);
    keyset_unref(ks);

    const struct key *dup[] = {&k[0], &k[0]};
    assert_int_equal(keyset_new(dup, 2, &ks), -EINVAL);

    struct key wrong = k[1];
    wrong.kid[0] = wrong.kid[0] == 'A' ? 'B' : 'A';
    const struct key *bad[] = {&wrong};
    assert_int_equal(keyset_new(bad, 1, &ks), -EINVAL);

    struct key mixed = k[1];
    mixed.secret_key = k[2].secret_key; /* secret of another key */
    const struct key *bad2[] = {&mixed};
    assert_int_equal(keyset_new(bad2, 1, &ks), -EINVAL);

    /* Empty. */
    assert_int_equal(keyset_new(NULL, 0, &ks), 0);
    assert_int_equal(keyset_count(ks), 0);
    assert_string_equal(keyset_jwks(ks), "{\"keys\":[]}");
    keyset_unref(ks);

    for (size_t i = 0; i <= KEYS_MAX; i++)
        key_wipe(&k[i]);
}

/* ---- storage ---------------------------------------------------------------- */

static void test_open_creates_first_key(void **state)
{
    struct fixture *f = *state;
    struct keys *k = open_ok(f, T0);
    struct stat sb;
    assert_int_equal(stat(f->keys_dir, &sb), 0);
    assert_true(S_ISDIR(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0700);

    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 1);
    const struct key *a = keyset_active(ks);
    assert_non_null(a);
    assert_int_equal(a->created_at, T0);
    assert_signs(a);

    char *path = path_of(f, a->kid);
    assert_int_equal(stat(path, &sb), 0);
    assert_true(S_ISREG(sb.st_mode));
    assert_int_equal(sb.st_mode & 07777, 0600);
    assert_int_equal(count_files(f->keys_dir, ".key"), 1);
    assert_int_equal(count_files(f->keys_dir, ".tmp"), 0);

    /* The documented format, line by line. */
    char text[512];
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, text, sizeof(text) - 1);
    assert_true(n > 0);
    text[n] = '\0';
    close(fd);
    char want[128];
    snprintf(want, sizeof(want), "sockid-key 1\ncreated_at %d\nretired_at 0\ndrop_after 0\nseed ",
             T0);
    assert_int_equal(strncmp(text, want, strlen(want)), 0);
    assert_int_equal((size_t)n, strlen(want) + 43 + 1);
    assert_int_equal(text[n - 1], '\n');
    sodium_memzero(text, sizeof(text));

    free(path);
    keyset_unref(ks);
    assert_null(keys_close(k));
    assert_null(keys_close(NULL));
}

static void test_persistence(void **state)
{
    struct fixture *f = *state;
    char kid1[KEYS_KID_LEN + 1], kid2[KEYS_KID_LEN + 1];
    uint8_t pub[32];

    struct keys *k = open_ok(f, T0);
    active_kid(k, kid1);
    struct keyset *ks = keys_current(k);
    memcpy(pub, keyset_active(ks)->public_key, 32);
    keyset_unref(ks);
    keys_close(k);

    k = open_ok(f, T0 + 1000);
    active_kid(k, kid2);
    assert_string_equal(kid1, kid2);
    ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 1);
    assert_memory_equal(keyset_active(ks)->public_key, pub, 32);
    assert_int_equal(keyset_active(ks)->created_at, T0);
    assert_signs(keyset_active(ks));
    keyset_unref(ks);
    keys_close(k);
    assert_int_equal(count_files(f->keys_dir, ".key"), 1);
}

static void test_known_seed_file_loads(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    char kid[KEYS_KID_LEN + 1];
    hex_to_bin(rfc_seed_hex, seed, 32);
    write_key_file(f, seed, T0 - 10, 0, 0, kid);
    assert_string_equal(kid, rfc_kid);

    struct keys *k = open_ok(f, T0);
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 1);
    assert_string_equal(keyset_active(ks)->kid, rfc_kid);
    uint8_t sig[64];
    char b64[128];
    assert_int_equal(keys_sign(keyset_active(ks), (const uint8_t *)rfc_msg, strlen(rfc_msg), sig),
                     0);
    sodium_bin2base64(b64, sizeof(b64), sig, 64, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_string_equal(b64, rfc_sig);
    keyset_unref(ks);
    keys_close(k);
}

static void test_world_readable_file_refused(void **state)
{
    struct fixture *f = *state;
    char kid[KEYS_KID_LEN + 1];
    keys_close(open_ok(f, T0));
    struct keys *k = open_ok(f, T0);
    active_kid(k, kid);
    keys_close(k);

    char *path = path_of(f, kid);
    assert_int_equal(chmod(path, 0644), 0);
    const char *err = open_fails(f, T0);
    assert_contains(err, path);
    assert_contains(err, "chmod 600");
    assert_contains(err, "0644");

    assert_int_equal(chmod(path, 0640), 0);
    err = open_fails(f, T0);
    assert_contains(err, "chmod 600");

    /* Fixed as told: it loads again, same key. */
    assert_int_equal(chmod(path, 0600), 0);
    k = open_ok(f, T0);
    char again[KEYS_KID_LEN + 1];
    active_kid(k, again);
    assert_string_equal(again, kid);
    keys_close(k);
    free(path);
}

static void test_loose_dir_refused(void **state)
{
    struct fixture *f = *state;
    keys_close(open_ok(f, T0));
    assert_int_equal(chmod(f->keys_dir, 0755), 0);
    const char *err = open_fails(f, T0);
    assert_contains(err, f->keys_dir);
    assert_contains(err, "chmod 700");
    assert_int_equal(chmod(f->keys_dir, 0700), 0);
    keys_close(open_ok(f, T0));
}

static void test_wrong_owner_refused(void **state)
{
    struct fixture *f = *state;
    if (geteuid() != 0)
        skip();
    char kid[KEYS_KID_LEN + 1];
    struct keys *k = open_ok(f, T0);
    active_kid(k, kid);
    keys_close(k);

    char *path = path_of(f, kid);
    assert_int_equal(chown(path, 12345, 12345), 0);
    const char *err = open_fails(f, T0);
    assert_contains(err, path);
    assert_contains(err, "chown");
    assert_contains(err, "12345");
    assert_int_equal(chown(path, 0, 0), 0);

    assert_int_equal(chown(f->keys_dir, 12345, 12345), 0);
    err = open_fails(f, T0);
    assert_contains(err, f->keys_dir);
    assert_contains(err, "chown");
    assert_int_equal(chown(f->keys_dir, 0, 0), 0);
    keys_close(open_ok(f, T0));
    free(path);
}

static void test_malformed_files_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    char kid[KEYS_KID_LEN + 1];
    char b64[64];
    hex_to_bin(rfc_seed_hex, seed, 32);
    write_key_file(f, seed, T0, 0, 0, kid);
    sodium_bin2base64(b64, sizeof(b64), seed, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *path = path_of(f, kid);

    char good[256];
    snprintf(good, sizeof(good),
             "sockid-key 1\ncreated_at 5\nretired_at 0\ndrop_after 0\nseed %s\n", b64);
    char bad_seed[256], nonc_seed[256], extra[512], crlf[256];
    snprintf(bad_seed, sizeof(bad_seed),
             "sockid-key 1\ncreated_at 5\nretired_at 0\ndrop_after 0\nseed %.42s\n", b64);
    /* The same seed with the unused low bits of the last character set. */
    snprintf(nonc_seed, sizeof(nonc_seed),
             "sockid-key 1\ncreated_at 5\nretired_at 0\ndrop_after 0\nseed %.42s%c\n", b64,
             b64[42] == 'A' ? 'B' : (char)(b64[42] + 1));
    snprintf(extra, sizeof(extra), "%sextra 1\n", good);
    snprintf(crlf, sizeof(crlf),
             "sockid-key 1\r\ncreated_at 5\nretired_at 0\ndrop_after 0\nseed %s\n", b64);
    const char *cases[] = {
        "",
        "garbage\n",
        "sockid-key 2\ncreated_at 5\nretired_at 0\ndrop_after 0\nseed x\n",
        "sockid-key 1\ncreated_at -5\nretired_at 0\ndrop_after 0\nseed x\n",
        "sockid-key 1\ncreated_at 05\nretired_at 0\ndrop_after 0\nseed x\n",
        "sockid-key 1\ncreated_at 99999999999999999999\nretired_at 0\ndrop_after 0\nseed x\n",
        "sockid-key 1\nretired_at 0\ncreated_at 5\ndrop_after 0\nseed x\n",
        bad_seed,
        nonc_seed,
        extra,
        crlf,
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        write_text(path, cases[i], strlen(cases[i]), 0600);
        const char *err = open_fails(f, T0);
        assert_contains(err, path);
        assert_contains(err, "malformed");
    }
    /* Active with a drop_after; retired with drop_after before retired_at. */
    char inv[256];
    snprintf(inv, sizeof(inv), "sockid-key 1\ncreated_at 5\nretired_at 0\ndrop_after 9\nseed %s\n",
             b64);
    write_text(path, inv, strlen(inv), 0600);
    assert_contains(open_fails(f, T0), "malformed");
    snprintf(inv, sizeof(inv), "sockid-key 1\ncreated_at 5\nretired_at 9\ndrop_after 8\nseed %s\n",
             b64);
    write_text(path, inv, strlen(inv), 0600);
    assert_contains(open_fails(f, T0), "drop_after is before retired_at");
    /* Missing final newline. */
    write_text(path, good, strlen(good) - 1, 0600);
    assert_contains(open_fails(f, T0), "malformed");
    /* Version named. */
    write_text(path, cases[2], strlen(cases[2]), 0600);
    assert_contains(open_fails(f, T0), "version");

    /* Too large, refused before reading. */
    char *big = malloc(5000);
    assert_non_null(big);
    memset(big, 'a', 5000);
    write_text(path, big, 5000, 0600);
    const char *err = open_fails(f, T0);
    assert_contains(err, path);
    assert_contains(err, "5000 bytes");
    free(big);

    /* And the good one loads. */
    write_text(path, good, strlen(good), 0600);
    keys_close(open_ok(f, T0));
    free(path);
}

static void test_name_kid_mismatch_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    char kid[KEYS_KID_LEN + 1];
    hex_to_bin(rfc_seed_hex, seed, 32);
    write_key_file(f, seed, T0, 0, 0, kid);

    /* Renamed to another well-formed kid. */
    char *from = path_of(f, kid);
    char *to = path_of(f, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    assert_int_equal(rename(from, to), 0);
    const char *err = open_fails(f, T0);
    assert_contains(err, to);
    assert_contains(err, "rename it to "
                         "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k.key");

    /* A name that is no kid at all. */
    char *odd = NULL;
    assert_true(asprintf(&odd, "%s/backup.key", f->keys_dir) > 0);
    assert_int_equal(rename(to, odd), 0);
    err = open_fails(f, T0);
    assert_contains(err, odd);
    assert_contains(err, "KID.key");

    assert_int_equal(rename(odd, from), 0);
    keys_close(open_ok(f, T0));
    free(from);
    free(to);
    free(odd);
}

static void test_symlink_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    char kid[KEYS_KID_LEN + 1];
    hex_to_bin(rfc_seed_hex, seed, 32);
    write_key_file(f, seed, T0, 0, 0, kid);
    char *path = path_of(f, kid);
    char *real = NULL;
    assert_true(asprintf(&real, "%s/real", f->data_dir) > 0);
    assert_int_equal(rename(path, real), 0);
    assert_int_equal(symlink(real, path), 0);
    const char *err = open_fails(f, T0);
    assert_contains(err, path);
    assert_contains(err, "symbolic link");
    free(path);
    free(real);
}

static void test_stale_tmp_removed(void **state)
{
    struct fixture *f = *state;
    keys_close(open_ok(f, T0));
    char *tmp = NULL;
    assert_true(asprintf(&tmp, "%s/%s.key.tmp", f->keys_dir, rfc_kid) > 0);
    write_text(tmp, "half", 4, 0600);
    struct keys *k = open_ok(f, T0);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(count_files(f->keys_dir, ".key"), 1);
    keys_close(k);
    free(tmp);
}

static void test_expired_and_retired_on_open(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    char expired[KEYS_KID_LEN + 1], live[KEYS_KID_LEN + 1];
    memset(seed, 7, sizeof(seed));
    write_key_file(f, seed, T0 - 1000, T0 - 500, T0 - 200, expired);
    memset(seed, 8, sizeof(seed));
    write_key_file(f, seed, T0 - 400, T0 - 100, T0 + 200, live);

    /* Only retired keys: a new active one is made; the expired one goes. */
    struct keys *k = open_ok(f, T0);
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    assert_non_null(keyset_active(ks));
    assert_int_equal(keyset_active(ks)->created_at, T0);
    assert_non_null(keyset_find(ks, live));
    assert_null(keyset_find(ks, expired));
    assert_false(file_exists(f, expired));
    assert_true(file_exists(f, live));
    assert_true(file_exists(f, keyset_active(ks)->kid));
    keyset_unref(ks);
    keys_close(k);
}

/* ---- rotation ---------------------------------------------------------------- */

static void test_rotate(void **state)
{
    struct fixture *f = *state;
    char old[KEYS_KID_LEN + 1], new[KEYS_KID_LEN + 1];
    struct keys *k = open_ok(f, T0);
    active_kid(k, old);
    char err[512] = "";

    assert_int_equal(keys_rotate(k, T0 + 10, TTL, err, sizeof(err)), 0);
    active_kid(k, new);
    assert_string_not_equal(old, new);
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    assert_string_equal(keyset_at(ks, 0)->kid, new);
    assert_int_equal(keyset_at(ks, 0)->created_at, T0 + 10);
    const struct key *r = keyset_find(ks, old);
    assert_non_null(r);
    assert_int_equal(r->retired_at, T0 + 10);
    assert_int_equal(r->drop_after, T0 + 10 + TTL);
    assert_signs(r); /* a retired key keeps its secret half in memory */

    json_t *root = json_loads(keyset_jwks(ks), 0, NULL);
    assert_non_null(root);
    json_t *arr = json_object_get(root, "keys");
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 0), "kid")), new);
    assert_string_equal(json_string_value(json_object_get(json_array_get(arr, 1), "kid")), old);
    json_decref(root);
    keyset_unref(ks);

    /* On disk, durably: both files, 0600, and the same state after a reopen. */
    assert_int_equal(count_files(f->keys_dir, ".key"), 2);
    assert_int_equal(count_files(f->keys_dir, ".tmp"), 0);
    struct stat sb;
    char *p = path_of(f, new);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 07777, 0600);
    free(p);
    keys_close(k);

    k = open_ok(f, T0 + 20);
    ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    assert_string_equal(keyset_active(ks)->kid, new);
    assert_int_equal(keyset_find(ks, old)->drop_after, T0 + 10 + TTL);
    keyset_unref(ks);
    keys_close(k);
}

static void test_maintain_drops_expired(void **state)
{
    struct fixture *f = *state;
    char old[KEYS_KID_LEN + 1], new[KEYS_KID_LEN + 1];
    char err[512] = "";
    struct keys *k = open_ok(f, T0);
    active_kid(k, old);
    assert_int_equal(keys_rotate(k, T0 + 10, TTL, err, sizeof(err)), 0);
    active_kid(k, new);

    /* Not yet: one second before drop_after. */
    assert_int_equal(keys_maintain(k, T0 + 10 + TTL - 1, 0, TTL, err, sizeof(err)), 0);
    assert_true(file_exists(f, old));

    assert_int_equal(keys_maintain(k, T0 + 10 + TTL, 0, TTL, err, sizeof(err)), 1);
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 1);
    assert_null(keyset_find(ks, old));
    assert_string_equal(keyset_active(ks)->kid, new);
    assert_null(strstr(keyset_jwks(ks), old));
    keyset_unref(ks);
    assert_false(file_exists(f, old));
    assert_true(file_exists(f, new));

    assert_int_equal(keys_maintain(k, T0 + 10 + TTL + 1, 0, TTL, err, sizeof(err)), 0);
    keys_close(k);
}

static void test_maintain_rotates_on_schedule(void **state)
{
    struct fixture *f = *state;
    const uint32_t rotation = 3600;
    char first[KEYS_KID_LEN + 1], second[KEYS_KID_LEN + 1], kid[KEYS_KID_LEN + 1];
    char err[512] = "";
    struct keys *k = open_ok(f, T0);
    active_kid(k, first);

    assert_int_equal(keys_maintain(k, T0 + rotation - 1, rotation, TTL, err, sizeof(err)), 0);
    active_kid(k, kid);
    assert_string_equal(kid, first);

    assert_int_equal(keys_maintain(k, T0 + rotation, rotation, TTL, err, sizeof(err)), 1);
    active_kid(k, second);
    assert_string_not_equal(second, first);
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    assert_int_equal(keyset_find(ks, first)->drop_after, T0 + rotation + TTL);
    keyset_unref(ks);

    /* Next: the retired key goes at drop_after, no rotation yet. */
    assert_int_equal(keys_maintain(k, T0 + rotation + TTL, rotation, TTL, err, sizeof(err)), 1);
    ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 1);
    assert_string_equal(keyset_active(ks)->kid, second);
    keyset_unref(ks);

    /* A second rotation, then both changes at once: drop and rotate. */
    assert_int_equal(keys_maintain(k, T0 + 2 * rotation, rotation, TTL, err, sizeof(err)), 1);
    assert_int_equal(keys_maintain(k, T0 + 3 * rotation, rotation, TTL, err, sizeof(err)), 1);
    ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    assert_null(keyset_find(ks, second));
    keyset_unref(ks);
    assert_int_equal(count_files(f->keys_dir, ".key"), 2);

    /* rotation_s 0: never by schedule. */
    assert_int_equal(keys_maintain(k, T0 + 100 * rotation, 0, TTL, err, sizeof(err)), 1);
    ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 1);
    keyset_unref(ks);
    assert_int_equal(keys_maintain(k, T0 + 100 * rotation, 0, TTL, err, sizeof(err)), 0);
    keys_close(k);
}

static void test_two_active_keys_after_crash(void **state)
{
    struct fixture *f = *state;
    uint8_t seed[32];
    char older[KEYS_KID_LEN + 1], newer[KEYS_KID_LEN + 1];
    /* What a crash between the two writes of a rotation leaves. */
    memset(seed, 0x11, sizeof(seed));
    write_key_file(f, seed, T0 - 86400, 0, 0, older);
    memset(seed, 0x22, sizeof(seed));
    write_key_file(f, seed, T0 - 5, 0, 0, newer);

    struct keys *k = open_ok(f, T0);
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    assert_string_equal(keyset_active(ks)->kid, newer);
    const struct key *o = keyset_find(ks, older);
    assert_non_null(o);
    assert_int_equal(o->retired_at, T0);
    assert_int_equal(o->drop_after, T0 + 31536000); /* config's max_ttl ceiling */
    keyset_unref(ks);
    keys_close(k);

    /* Settled on disk: a later open sees the same without rewriting. */
    k = open_ok(f, T0 + 50);
    ks = keys_current(k);
    assert_string_equal(keyset_active(ks)->kid, newer);
    assert_int_equal(keyset_find(ks, older)->retired_at, T0);
    keyset_unref(ks);
    keys_close(k);

    /* Three active ones: still only the newest stays active. */
    char third[KEYS_KID_LEN + 1];
    memset(seed, 0x33, sizeof(seed));
    write_key_file(f, seed, T0 + 100, 0, 0, third);
    memset(seed, 0x44, sizeof(seed));
    char fourth[KEYS_KID_LEN + 1];
    write_key_file(f, seed, T0 + 60, 0, 0, fourth);
    k = open_ok(f, T0 + 200);
    ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 4);
    assert_string_equal(keyset_active(ks)->kid, third);
    assert_int_equal(keyset_find(ks, fourth)->retired_at, T0 + 200);
    assert_int_equal(keyset_find(ks, newer)->retired_at, T0 + 200);
    keyset_unref(ks);
    keys_close(k);
}

static void test_rotation_limit(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    const uint32_t long_ttl = 86400;
    struct keys *k = open_ok(f, T0);
    for (unsigned i = 1; i < KEYS_MAX; i++)
        assert_int_equal(keys_rotate(k, T0 + i, long_ttl, err, sizeof(err)), 0);
    struct keyset *before = keys_current(k);
    assert_int_equal(keyset_count(before), KEYS_MAX);

    int r = keys_rotate(k, T0 + 100, long_ttl, err, sizeof(err));
    assert_int_equal(r, -ENOSPC);
    assert_contains(err, "16 keys");
    assert_contains(err, "retry after");
    struct keyset *after = keys_current(k);
    assert_ptr_equal(after, before); /* nothing published */
    keyset_unref(after);
    assert_int_equal(count_files(f->keys_dir, ".key"), KEYS_MAX);
    assert_int_equal(count_files(f->keys_dir, ".tmp"), 0);

    /* Once the oldest retired key is past drop_after, rotation makes room. */
    r = keys_rotate(k, T0 + 1 + long_ttl, long_ttl, err, sizeof(err));
    assert_int_equal(r, 0);
    after = keys_current(k);
    assert_int_equal(keyset_count(after), KEYS_MAX);
    assert_null(keyset_find(after, keyset_at(before, KEYS_MAX - 1)->kid));
    keyset_unref(after);
    keyset_unref(before);
    keys_close(k);
}

static void test_bad_arguments(void **state)
{
    struct fixture *f = *state;
    struct keys *k = NULL;
    char err[128];
    assert_int_equal(keys_open(NULL, T0, &k, err, sizeof(err)), -EINVAL);
    assert_int_equal(keys_open(f->data_dir, 0, &k, err, sizeof(err)), -EINVAL);
    assert_int_equal(keys_open(f->data_dir, T0, NULL, NULL, 0), -EINVAL);
    char *missing = NULL;
    assert_true(asprintf(&missing, "%s/nope", f->data_dir) > 0);
    assert_true(keys_open(missing, T0, &k, err, sizeof(err)) < 0);
    assert_contains(err, missing);
    free(missing);
    k = open_ok(f, T0);
    assert_int_equal(keys_rotate(k, 0, TTL, NULL, 0), -EINVAL);
    assert_int_equal(keys_maintain(k, -1, 1, TTL, NULL, 0), -EINVAL);
    keys_close(k);
}

/* ---- publication -------------------------------------------------------------- */

static void test_reader_sees_rotation(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    struct keys *k = open_ok(f, T0);
    struct keys_reader reader = {0};

    const struct keyset *a = keys_reader_get(k, &reader);
    assert_non_null(a);
    assert_ptr_equal(keys_reader_get(k, &reader), a); /* fast path */
    char old[KEYS_KID_LEN + 1];
    memcpy(old, keyset_active(a)->kid, sizeof(old));

    assert_int_equal(keys_rotate(k, T0 + 10, TTL, err, sizeof(err)), 0);
    const struct keyset *b = keys_reader_get(k, &reader);
    assert_ptr_not_equal(b, a);
    assert_string_not_equal(keyset_active(b)->kid, old);
    assert_non_null(keyset_find(b, old));
    assert_signs(keyset_active(b));

    /* A reference taken before keys_close outlives it. */
    struct keyset *held = keys_current(k);
    keys_reader_release(&reader);
    assert_null(reader.keyset);
    keys_reader_release(NULL);
    keys_close(k);
    assert_int_equal(keyset_count(held), 2);
    assert_signs(keyset_active(held));
    keyset_unref(held);
}

struct reader_arg {
    struct keys *k;
    atomic_bool *stop;
    unsigned long reads;
};

static void *reader_thread(void *p)
{
    struct reader_arg *a = p;
    struct keys_reader reader = {0};
    uint8_t sig[64];
    while (!atomic_load(a->stop)) {
        const struct keyset *ks = keys_reader_get(a->k, &reader);
        const struct key *key = keyset_active(ks);
        if (!key || keys_sign(key, (const uint8_t *)"m", 1, sig) != 0 ||
            crypto_sign_verify_detached(sig, (const uint8_t *)"m", 1, key->public_key) != 0 ||
            !strstr(keyset_jwks(ks), key->kid))
            abort();
        a->reads++;
    }
    keys_reader_release(&reader);
    return NULL;
}

static void test_readers_across_threads(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    struct keys *k = open_ok(f, T0);
    atomic_bool stop = false;
    pthread_t th[3];
    struct reader_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct reader_arg){.k = k, .stop = &stop};
        assert_int_equal(pthread_create(&th[i], NULL, reader_thread, &args[i]), 0);
    }
    /* Rotations with a short ttl, so that drops happen too. */
    for (int i = 1; i <= 40; i++) {
        int r = keys_maintain(k, T0 + 10 * i, 10, 5, err, sizeof(err));
        if (r < 0)
            fail_msg("keys_maintain: %d: %s", r, err);
        assert_int_equal(r, 1);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_true(args[i].reads > 0);
    }
    /* The last active key and the one it replaced. */
    struct keyset *ks = keys_current(k);
    assert_int_equal(keyset_count(ks), 2);
    keyset_unref(ks);
    assert_int_equal(count_files(f->keys_dir, ".key"), 2);
    keys_close(k);
}

static void test_secrets_freed(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    long base = locked_kb();
    void *probe = sodium_malloc(64);
    assert_non_null(probe);
    bool measurable = locked_kb() > base;
    sodium_free(probe);
    if (!measurable)
        skip(); /* no mlock here: AddressSanitizer makes it a no-op */
    struct keys *k = open_ok(f, T0);
    struct keys_reader reader = {0};
    (void)keys_reader_get(k, &reader);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(keys_maintain(k, T0 + 10 * i, 10, 5, err, sizeof(err)), 1);
    (void)keys_reader_get(k, &reader);
    assert_true(locked_kb() > base); /* the measure sees the keys */
    assert_int_equal(keys_rotate(k, T0 + 100, TTL, err, sizeof(err)), 0);
    keys_reader_release(&reader);
    keys_close(k);
    /* Refusals free what they loaded, too. */
    char *path = path_of(f, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    write_text(path, "garbage\n", 8, 0600);
    (void)open_fails(f, T0 + 200);
    free(path);
    assert_int_equal(locked_kb(), base);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8037_key_and_thumbprint),
        cmocka_unit_test(test_rfc8037_signature),
        cmocka_unit_test(test_keyset_jwks_shape),
        cmocka_unit_test(test_keyset_rfc_exact_jwks),
        cmocka_unit_test(test_keyset_refusals),
        T(test_open_creates_first_key),
        T(test_persistence),
        T(test_known_seed_file_loads),
        T(test_world_readable_file_refused),
        T(test_loose_dir_refused),
        T(test_wrong_owner_refused),
        T(test_malformed_files_refused),
        T(test_name_kid_mismatch_refused),
        T(test_symlink_refused),
        T(test_stale_tmp_removed),
        T(test_expired_and_retired_on_open),
        T(test_rotate),
        T(test_maintain_drops_expired),
        T(test_maintain_rotates_on_schedule),
        T(test_two_active_keys_after_crash),
        T(test_rotation_limit),
        T(test_bad_arguments),
        T(test_reader_sees_rotation),
        T(test_readers_across_threads),
        T(test_secrets_freed),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
