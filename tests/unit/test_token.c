/* Tokens (agent/token.h): signing against known answers, validation against
 * a catalogue of forgeries and malformed tokens, and the token cache.
 *
 * Every rejection test starts with a positive control (a valid token from the
 * same helpers validates), so that a refusal is caused by the one thing the
 * case changes, and asserts both the return code and that the reason names
 * the problem. Tokens with arbitrary headers and claims are made here by
 * craft(), which base64url-encodes JSON strings verbatim and signs them with
 * the test key, so cases can hold what token_sign would never write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "keys.h"
#include "token.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define TD  "example.org"
#define SUB "spiffe://example.org/web"
#define AUD "db"
/* The clock of the validation tests: inside [IAT, EXP). */
#define IAT 1700000000LL
#define EXP 1700000300LL
#define NOW 1700000100LL

/* RFC 8037 A.1 (the secret seed) and A.3 (the thumbprint of its JWK). */
static const char RFC8037_SEED[] =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
static const char RFC8037_X[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
#define KID_A "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

/* Known answers, computed independently of sockid with Python 3 and the
 * `cryptography` package (48.0.0) on this machine:
 *
 *   import base64, hashlib, json
 *   from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
 *   from cryptography.hazmat.primitives import serialization
 *   def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
 *   sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
 *       "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
 *   x = b64(sk.public_key().public_bytes(serialization.Encoding.Raw,
 *                                        serialization.PublicFormat.Raw))
 *   kid = b64(hashlib.sha256(('{"crv":"Ed25519","kty":"OKP","x":"%s"}' % x)
 *                            .encode()).digest())
 *   sep = (",", ":")
 *   header = json.dumps({"alg": "EdDSA", "kid": kid, "typ": "JWT"}, separators=sep)
 *   claims = json.dumps({"sub": "spiffe://example.org/web", "aud": "db",
 *                        "iat": 1700000000, "exp": 1700000300,
 *                        "jti": b64(bytes(range(16)))}, separators=sep)
 *   si = b64(header.encode()) + "." + b64(claims.encode())
 *   print(si + "." + b64(sk.sign(si.encode())))
 *
 * and the same with "aud": ["db", "cache"] for KAT_TOKEN_2. kid came out as
 * RFC 8037 A.3's thumbprint. */
#define KAT_HEADER                                                                                 \
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImtQcktfcW14VldhWVZBOXd3QkY2SXVvM3ZWeno3VHhIQ1R3WEJ5Z3JTNGsiLCJ0" \
    "eXAiOiJKV1QifQ"
static const char KAT_TOKEN_1[] = KAT_HEADER
    ".eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93ZWIiLCJhdWQiOiJkYiIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxN"
    "z"
    "AwMDAwMzAwLCJqdGkiOiJBQUVDQXdRRkJnY0lDUW9MREEwT0R3In0"
    ".4ikBUF-U0Hj1ocF7nD_3gSiNEsWBC9x9cPnEYDFhRTkxTJc7ZPxIuyLHUy9K1dEqlN9gh2pwfAdebhVDPiCyBQ";
static const char KAT_CLAIMS_1[] =
    "{\"sub\":\"spiffe://example.org/web\",\"aud\":\"db\",\"iat\":1700000000,\"exp\":1700000300,"
    "\"jti\":\"AAECAwQFBgcICQoLDA0ODw\"}";
static const char KAT_TOKEN_2[] = KAT_HEADER
    ".eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93ZWIiLCJhdWQiOlsiZGIiLCJjYWNoZSJdLCJpYXQiOjE3MDAwMDAw"
    "MDAsImV4cCI6MTcwMDAwMDMwMCwianRpIjoiQUFFQ0F3UUZCZ2NJQ1FvTERBME9EdyJ9"
    ".cZsCU8VnMX6-OHHe0V3WcPbg8-YwqeZ6n_44mDSv_qElcQ7IeKMdfkLv9jkwZZqA-YDw9hsHCHnTR5qrf6K0BQ";

/* Keys: A is the RFC 8037 key and active, C is retired but still in the
 * keyset, B is not in the keyset at all. */
static struct key key_a, key_b, key_c;
static struct keyset *ks;

static void seed_from_hex(const char *hex, uint8_t seed[32])
{
    size_t n = 0;
    assert_int_equal(sodium_hex2bin(seed, 32, hex, strlen(hex), NULL, &n, NULL), 0);
    assert_int_equal(n, 32);
}

static int group_setup(void **state)
{
    (void)state;
    uint8_t seed[32];
    if (sodium_init() < 0)
        return -1;
    seed_from_hex(RFC8037_SEED, seed);
    if (key_from_seed(seed, IAT - 86400, &key_a) < 0)
        return -1;
    memset(seed, 0xb0, sizeof(seed));
    if (key_from_seed(seed, IAT, &key_b) < 0)
        return -1;
    memset(seed, 0xc0, sizeof(seed));
    if (key_from_seed(seed, IAT - 2 * 86400, &key_c) < 0)
        return -1;
    key_c.retired_at = IAT - 86400;
    key_c.drop_after = EXP + 86400;
    const struct key *keys[] = {&key_a, &key_c};
    return keyset_new(keys, 2, &ks) < 0 ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    ks = keyset_unref(ks);
    key_wipe(&key_a);
    key_wipe(&key_b);
    key_wipe(&key_c);
    return 0;
}

/* --- helpers ------------------------------------------------------------ */

__attribute__((format(printf, 1, 2))) static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    va_start(ap, fmt);
    (void)vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *b64(const void *bin, size_t len)
{
    size_t cap = sodium_base64_ENCODED_LEN(len, B64);
    char *s = malloc(cap);
    assert_non_null(s);
    sodium_bin2base64(s, cap, bin, len, B64);
    return s;
}

/* b64(header) "." b64(claims), verbatim. */
static char *signing_input(const char *header, const char *claims)
{
    char *h = b64(header, strlen(header)), *c = b64(claims, strlen(claims));
    char *s = xprintf("%s.%s", h, c);
    free(h);
    free(c);
    return s;
}

static char *with_sig(char *input, const uint8_t *sig, size_t sig_len)
{
    char *s64 = b64(sig, sig_len);
    char *t = xprintf("%s.%s", input, s64);
    free(s64);
    free(input);
    return t;
}

/* header.claims signed with key k (Ed25519, through keys_sign). */
static char *craft_key(const struct key *k, const char *header, const char *claims)
{
    uint8_t sig[64];
    char *in = signing_input(header, claims);
    assert_int_equal(keys_sign(k, (const uint8_t *)in, strlen(in), sig), 0);
    return with_sig(in, sig, sizeof(sig));
}

static char *craft(const char *header, const char *claims)
{
    return craft_key(&key_a, header, claims);
}

/* header.claims with an empty signature. */
static char *craft_unsigned(const char *header, const char *claims)
{
    char *in = signing_input(header, claims);
    char *t = xprintf("%s.", in);
    free(in);
    return t;
}

/* header.claims with an HMAC (SHA-256 or SHA-512) keyed with key. */
static char *craft_hmac(bool sha512, const char *header, const char *claims, const void *key,
                        size_t key_len)
{
    char *in = signing_input(header, claims);
    uint8_t mac[crypto_auth_hmacsha512_BYTES];
    size_t mac_len;
    if (sha512) {
        crypto_auth_hmacsha512_state st;
        crypto_auth_hmacsha512_init(&st, key, key_len);
        crypto_auth_hmacsha512_update(&st, (const uint8_t *)in, strlen(in));
        crypto_auth_hmacsha512_final(&st, mac);
        mac_len = crypto_auth_hmacsha512_BYTES;
    } else {
        crypto_auth_hmacsha256_state st;
        crypto_auth_hmacsha256_init(&st, key, key_len);
        crypto_auth_hmacsha256_update(&st, (const uint8_t *)in, strlen(in));
        crypto_auth_hmacsha256_final(&st, mac);
        mac_len = crypto_auth_hmacsha256_BYTES;
    }
    return with_sig(in, mac, mac_len);
}

/* The standard header and claims of crafted tokens. */
#define HDR_OK       "{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"typ\":\"JWT\"}"
#define CLAIMS_OK    "{\"sub\":\"" SUB "\",\"aud\":\"" AUD "\",\"iat\":1700000000,\"exp\":1700000300}"
#define HDR_ALG(alg) "{\"alg\":\"" alg "\",\"kid\":\"" KID_A "\",\"typ\":\"JWT\"}"
/* Claims with sub and aud as given and the standard times. */
#define CLAIMS_SUB_AUD(sub, aud)                                                                   \
    "{\"sub\":" sub ",\"aud\":" aud ",\"iat\":1700000000,\"exp\":1700000300}"

static void check_valid(const char *tok, size_t len, const char *aud, int64_t now, int line)
{
    struct token_claims *c = NULL;
    char reason[512] = "";
    int r = token_validate(ks, tok, len, aud, TD, now, &c, reason, sizeof(reason));
    if (r != 0)
        fail_msg("line %d: token %s refused (%d): %s", line, esc(tok, len), r, reason);
    assert_non_null(c);
    assert_non_null(c->sub);
    assert_non_null(c->claims_json);
    c = token_claims_free(c);
}

static void check_reject(const char *tok, size_t len, const char *aud, int64_t now, int want_rc,
                         const char *needle, int line)
{
    struct token_claims *c = (struct token_claims *)0x1; /* must stay untouched */
    char reason[512] = "";
    int r = token_validate(ks, tok, len, aud, TD, now, &c, reason, sizeof(reason));
    if (r != want_rc)
        fail_msg("line %d: token %s: got %d (%s), want %d (%s)", line, esc(tok, len), r, reason,
                 want_rc, needle);
    if (!strstr(reason, needle))
        fail_msg("line %d: reason \"%s\" does not mention \"%s\"", line, reason, needle);
    assert_ptr_equal(c, (struct token_claims *)0x1);
}

#define VALID(tok)              check_valid((tok), strlen(tok), AUD, NOW, __LINE__)
#define VALID_AUD(tok, a)       check_valid((tok), strlen(tok), (a), NOW, __LINE__)
#define VALID_AT(tok, now)      check_valid((tok), strlen(tok), AUD, (now), __LINE__)
#define REJECT(tok, rc, needle) check_reject((tok), strlen(tok), AUD, NOW, (rc), (needle), __LINE__)
#define REJECT_AUD(tok, a, rc, needle)                                                             \
    check_reject((tok), strlen(tok), (a), NOW, (rc), (needle), __LINE__)
#define REJECT_AT(tok, now, rc, needle)                                                            \
    check_reject((tok), strlen(tok), AUD, (now), (rc), (needle), __LINE__)

/* Crafts header.claims with key A, checks the refusal, frees. */
#define REJECT_CRAFTED(header, claims, rc, needle)                                                 \
    do {                                                                                           \
        char *t_ = craft((header), (claims));                                                      \
        REJECT(t_, (rc), (needle));                                                                \
        free(t_);                                                                                  \
    } while (0)
#define VALID_CRAFTED(header, claims)                                                              \
    do {                                                                                           \
        char *t_ = craft((header), (claims));                                                      \
        VALID(t_);                                                                                 \
        free(t_);                                                                                  \
    } while (0)

/* A valid token, from token_sign and from craft(): every rejection test
 * starts here. */
static void positive_control(void)
{
    const char *aud[] = {AUD};
    char *t = NULL;
    assert_int_equal(token_sign(&key_a, SUB, aud, 1, IAT, EXP, NULL, &t), 0);
    VALID(t);
    free(t);
    VALID_CRAFTED(HDR_OK, CLAIMS_OK);
}

/* A token's three parts, copied. */
struct parts {
    char *h, *p, *s;
};

static struct parts split(const char *tok)
{
    const char *d1 = strchr(tok, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    struct parts p = {strndup(tok, (size_t)(d1 - tok)), strndup(d1 + 1, (size_t)(d2 - d1 - 1)),
                      strdup(d2 + 1)};
    assert_true(p.h && p.p && p.s);
    return p;
}

static void parts_free(struct parts *p)
{
    free(p->h);
    free(p->p);
    free(p->s);
}

static size_t b64_decode(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    const char *end = NULL;
    assert_int_equal(sodium_base642bin(out, cap, s, strlen(s), NULL, &n, &end, B64), 0);
    assert_ptr_equal(end, s + strlen(s));
    return n;
}

/* --- signing: known answers -------------------------------------------- */

static void test_known_answer(void **state)
{
    (void)state;
    static const uint8_t jti_seed[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const char *aud1[] = {"db"};
    const char *aud2[] = {"db", "cache"};
    char x[64];
    char *t = NULL;

    /* RFC 8037 A.1's public key and A.3's thumbprint. */
    sodium_bin2base64(x, sizeof(x), key_a.public_key, 32, B64);
    assert_string_equal(x, RFC8037_X);
    assert_string_equal(key_a.kid, KID_A);

    assert_int_equal(token_sign(&key_a, SUB, aud1, 1, IAT, EXP, jti_seed, &t), 0);
    assert_string_equal(t, KAT_TOKEN_1);

    /* The signature verifies with the public key over header.payload. */
    const char *dot = strrchr(t, '.');
    uint8_t sig[64];
    assert_int_equal(b64_decode(dot + 1, sig, sizeof(sig)), 64);
    assert_int_equal(
        crypto_sign_verify_detached(sig, (const uint8_t *)t, (size_t)(dot - t), key_a.public_key),
        0);

    /* And validates, with the claims filled in. */
    struct token_claims *c = NULL;
    char reason[256] = "";
    assert_int_equal(token_validate(ks, t, strlen(t), "db", TD, NOW, &c, reason, sizeof(reason)),
                     0);
    assert_string_equal(c->sub, SUB);
    assert_string_equal(c->kid, KID_A);
    assert_string_equal(c->claims_json, KAT_CLAIMS_1);
    assert_int_equal(c->exp, EXP);
    assert_int_equal(c->iat, IAT);
    c = token_claims_free(c);
    assert_null(c);
    free(t);

    /* Two audiences: "aud" is an array, valid for each of them. */
    t = NULL;
    assert_int_equal(token_sign(&key_a, SUB, aud2, 2, IAT, EXP, jti_seed, &t), 0);
    assert_string_equal(t, KAT_TOKEN_2);
    VALID_AUD(t, "db");
    VALID_AUD(t, "cache");
    free(t);
}

/* RFC 8037 A.4: the signing primitive token_sign relies on reproduces the
 * RFC's signature byte for byte (plain Ed25519, not ed25519ph). */
static void test_rfc8037_a4(void **state)
{
    (void)state;
    static const char input[] = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
    uint8_t sig[64];
    assert_int_equal(keys_sign(&key_a, (const uint8_t *)input, strlen(input), sig), 0);
    char *s = b64(sig, sizeof(sig));
    assert_string_equal(s,
                        "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7"
                        "sVvpAr_MuM0KAg");
    free(s);
}

static void test_sign_random_jti(void **state)
{
    (void)state;
    const char *aud[] = {AUD};
    char *t1 = NULL, *t2 = NULL;
    assert_int_equal(token_sign(&key_a, SUB, aud, 1, IAT, EXP, NULL, &t1), 0);
    assert_int_equal(token_sign(&key_a, SUB, aud, 1, IAT, EXP, NULL, &t2), 0);
    assert_string_not_equal(t1, t2);
    VALID(t1);
    VALID(t2);

    struct token_claims *c = NULL;
    char reason[256];
    assert_int_equal(token_validate(ks, t1, strlen(t1), AUD, TD, NOW, &c, reason, sizeof(reason)),
                     0);
    const char *jti = strstr(c->claims_json, "\"jti\":\"");
    assert_non_null(jti);
    jti += 7;
    assert_int_equal(strcspn(jti, "\""), 22); /* base64url of 16 bytes */
    c = token_claims_free(c);
    free(t1);
    free(t2);
}

static void test_sign_refuses_bad_arguments(void **state)
{
    (void)state;
    const char *aud[] = {AUD};
    const char *bad_aud[] = {"a b"};
    const char *null_aud[] = {NULL};
    const char *many[TOKEN_MAX_AUDIENCES + 1];
    for (size_t i = 0; i < TOKEN_MAX_AUDIENCES + 1; i++)
        many[i] = "db";
    char *sentinel = (char *)0x1, *t = sentinel;

    assert_int_equal(token_sign(NULL, SUB, aud, 1, IAT, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, NULL, aud, 1, IAT, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, NULL, 1, IAT, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, aud, 0, IAT, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, many, TOKEN_MAX_AUDIENCES + 1, IAT, EXP, NULL, &t),
                     -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, bad_aud, 1, IAT, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, null_aud, 1, IAT, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, aud, 1, EXP, EXP, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, SUB, aud, 1, EXP, IAT, NULL, &t), -EINVAL);
    assert_int_equal(token_sign(&key_a, "spiffe://example.org/\xff", aud, 1, IAT, EXP, NULL, &t),
                     -EINVAL); /* not UTF-8: jansson refuses it */
    assert_int_equal(token_sign(&key_a, SUB, aud, 1, IAT, EXP, NULL, NULL), -EINVAL);
    assert_ptr_equal(t, sentinel);

    /* The largest number of audiences is fine. */
    t = NULL;
    assert_int_equal(token_sign(&key_a, SUB, many, TOKEN_MAX_AUDIENCES, IAT, EXP, NULL, &t), 0);
    VALID(t);
    free(t);
}

/* --- validation: the rejection catalogue -------------------------------- */

static void test_alg_none(void **state)
{
    (void)state;
    positive_control();

    /* With an empty signature, as alg none prescribes. */
    char *t = craft_unsigned("{\"alg\":\"none\",\"kid\":\"" KID_A "\",\"typ\":\"JWT\"}", CLAIMS_OK);
    REJECT(t, -EPERM, "alg none is never accepted");
    free(t);
    t = craft_unsigned("{\"alg\":\"none\"}", CLAIMS_OK);
    REJECT(t, -EPERM, "alg none is never accepted");
    free(t);
    /* Other spellings some libraries were fooled by. */
    t = craft_unsigned(HDR_ALG("None"), CLAIMS_OK);
    REJECT(t, -EPERM, "alg None is never accepted");
    free(t);
    t = craft_unsigned(HDR_ALG("NONE"), CLAIMS_OK);
    REJECT(t, -EPERM, "alg NONE is never accepted");
    free(t);

    /* With a real Ed25519 signature from the agent's key over it. */
    REJECT_CRAFTED(HDR_ALG("none"), CLAIMS_OK, -EPERM, "alg none is never accepted");
}

static void test_hmac_keyed_with_public_key(void **state)
{
    (void)state;
    positive_control();

    /* The classic key confusion: HMAC keyed with what the verifier knows. */
    char *jwk_thumbprint_form =
        xprintf("{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", RFC8037_X);
    char *jwk_bundle_form =
        xprintf("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\",\"kid\":\"%s\",\"use\":\"sig\"}",
                RFC8037_X, KID_A);
    struct {
        const void *key;
        size_t len;
    } keys[] = {
        {key_a.public_key, 32},
        {RFC8037_X, strlen(RFC8037_X)},
        {jwk_thumbprint_form, strlen(jwk_thumbprint_form)},
        {jwk_bundle_form, strlen(jwk_bundle_form)},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char *t = craft_hmac(false, HDR_ALG("HS256"), CLAIMS_OK, keys[i].key, keys[i].len);
        REJECT(t, -EPERM, "alg HS256 is not accepted; sockid tokens are EdDSA");
        free(t);
        t = craft_hmac(true, HDR_ALG("HS512"), CLAIMS_OK, keys[i].key, keys[i].len);
        REJECT(t, -EPERM, "alg HS512 is not accepted; sockid tokens are EdDSA");
        free(t);
        /* Even an HS256 MAC put under an EdDSA header is just a bad signature. */
        t = craft_hmac(false, HDR_OK, CLAIMS_OK, keys[i].key, keys[i].len);
        REJECT(t, -EINVAL, "signature is 32 bytes");
        free(t);
        t = craft_hmac(true, HDR_OK, CLAIMS_OK, keys[i].key, keys[i].len);
        REJECT(t, -EPERM, "the signature does not verify");
        free(t);
    }
    free(jwk_thumbprint_form);
    free(jwk_bundle_form);
}

static void test_other_algs(void **state)
{
    (void)state;
    positive_control();

    REJECT_CRAFTED(HDR_ALG("ES256"), CLAIMS_OK, -EPERM, "alg ES256 is not accepted");
    REJECT_CRAFTED(HDR_ALG("RS256"), CLAIMS_OK, -EPERM, "alg RS256 is not accepted");
    REJECT_CRAFTED(HDR_ALG("PS256"), CLAIMS_OK, -EPERM, "alg PS256 is not accepted");
    /* RFC 9864's name is not what sockid tokens carry, nor other cases. */
    REJECT_CRAFTED(HDR_ALG("Ed25519"), CLAIMS_OK, -EPERM, "alg Ed25519 is not accepted");
    REJECT_CRAFTED(HDR_ALG("ED25519"), CLAIMS_OK, -EPERM, "alg ED25519 is not accepted");
    REJECT_CRAFTED(HDR_ALG("eddsa"), CLAIMS_OK, -EPERM, "alg eddsa is not accepted");
    REJECT_CRAFTED(HDR_ALG("EDDSA"), CLAIMS_OK, -EPERM, "alg EDDSA is not accepted");
    REJECT_CRAFTED(HDR_ALG("EdDSA "), CLAIMS_OK, -EPERM, "alg EdDSA  is not accepted");
    REJECT_CRAFTED(HDR_ALG("Ed448"), CLAIMS_OK, -EPERM, "alg Ed448 is not accepted");
    REJECT_CRAFTED(HDR_ALG("EdDSA\\u0000"), CLAIMS_OK, -EINVAL, "header is not valid JSON");
    REJECT_CRAFTED("{\"kid\":\"" KID_A "\",\"typ\":\"JWT\"}", CLAIMS_OK, -EPERM,
                   "the header has no alg");
    REJECT_CRAFTED("{\"alg\":7,\"kid\":\"" KID_A "\"}", CLAIMS_OK, -EPERM, "alg is not a string");
    REJECT_CRAFTED("{\"alg\":[\"EdDSA\"],\"kid\":\"" KID_A "\"}", CLAIMS_OK, -EPERM,
                   "alg is not a string");
}

static void test_crit(void **state)
{
    (void)state;
    positive_control();

    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"crit\":[\"exp\"],\"exp\":1}",
                   CLAIMS_OK, -EPERM, "unknown critical header exp");
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"b64\":false,\"crit\":[\"b64\"]}",
                   CLAIMS_OK, -EPERM, "unknown critical header b64");
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"crit\":[]}", CLAIMS_OK, -EPERM,
                   "unknown critical header");
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"crit\":\"x\"}", CLAIMS_OK, -EPERM,
                   "unknown critical header");
    /* A header parameter that is not critical is ignored (RFC 7515 §4). */
    VALID_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"x-note\":\"hello\"}", CLAIMS_OK);
}

static void test_typ(void **state)
{
    (void)state;
    positive_control();

    VALID_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"typ\":\"JWT\"}", CLAIMS_OK);
    VALID_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"typ\":\"JOSE\"}", CLAIMS_OK);
    VALID_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\"}", CLAIMS_OK);

    static const char *const bad[] = {"at+jwt",          "dpop+jwt", "JWS", "jwt",
                                      "application/jwt", "",         "JWT "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *h = xprintf("{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"%s\"}", KID_A, bad[i]);
        char *needle = xprintf("typ %s is not accepted", bad[i]);
        REJECT_CRAFTED(h, CLAIMS_OK, -EPERM, needle);
        free(h);
        free(needle);
    }
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"typ\":1}", CLAIMS_OK, -EPERM,
                   "typ is not a string");
}

static void test_aud(void **state)
{
    (void)state;
    positive_control();

    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"iat\":1700000000,\"exp\":1700000300}", -EPERM,
                   "no aud claim");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "\"web\""), -EPERM,
                   "the token is for audience 'web', not 'db'");
    /* Audiences compare exactly (RFC 7519 §4.1.3: case-sensitive strings). */
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "\"DB\""), -EPERM,
                   "the token is for audience 'DB', not 'db'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "\"db \""), -EPERM,
                   "the token is for audience 'db ', not 'db'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "\"d\""), -EPERM,
                   "the token is for audience 'd', not 'db'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "[\"dbx\",\"d\"]"), -EPERM,
                   "the token is for audiences 'dbx', 'd', not 'db'");

    /* An array that holds the audience. */
    VALID_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "[\"cache\",\"db\"]"));
    VALID_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "[\"db\"]"));
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "[\"cache\",\"web\"]"), -EPERM,
                   "the token is for audiences 'cache', 'web', not 'db'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "[]"), -EPERM,
                   "neither a string nor a non-empty array");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "7"), -EPERM,
                   "neither a string nor a non-empty array");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "[\"db\",7]"), -EPERM,
                   "not a string (at index 1)");

    /* The same valid token, asked about another audience. */
    char *t = craft(HDR_OK, CLAIMS_OK);
    REJECT_AUD(t, "cache", -EPERM, "the token is for audience 'db', not 'cache'");
    free(t);
}

static void test_times(void **state)
{
    (void)state;
    positive_control();

    /* exp: required, and now must be before it. */
    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"iat\":1700000000}", -EPERM,
                   "no exp claim");
    char *t = craft(HDR_OK, CLAIMS_OK);
    VALID_AT(t, EXP - 1);
    REJECT_AT(t, EXP, -EPERM, "the token expired 0 seconds ago");
    REJECT_AT(t, EXP + 300, -EPERM, "the token expired 300 seconds ago");
    free(t);
    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":\"1700000300\"}", -EPERM,
                   "exp is not a NumericDate");
    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":1e300}", -EPERM,
                   "exp is not a NumericDate");
    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":null}", -EPERM,
                   "exp is not a NumericDate");
    /* Non-integer NumericDates are allowed (RFC 7519 §2). */
    VALID_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":1700000300.5}");
    /* exp is the only time claim required. */
    VALID_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":1700000300}");

    /* nbf: if present, not after now. */
    VALID_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"nbf\":1700000100,"
                          "\"exp\":1700000300}");
    REJECT_CRAFTED(HDR_OK,
                   "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"nbf\":1700000110,\"exp\":1700000300}",
                   -EPERM, "not valid before nbf 1700000110, 10 seconds from now");
    REJECT_CRAFTED(HDR_OK,
                   "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"nbf\":1700000100.5,\"exp\":1700000300}",
                   -EPERM, "not valid before");
    REJECT_CRAFTED(HDR_OK,
                   "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"nbf\":\"now\",\"exp\":1700000300}",
                   -EPERM, "nbf is not a NumericDate");

    /* iat: if present, a number at most 60 s ahead of now. */
    VALID_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"iat\":1700000160,"
                          "\"exp\":1700000300}");
    REJECT_CRAFTED(HDR_OK,
                   "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"iat\":1700000161,\"exp\":1700000300}",
                   -EPERM, "issued 61 seconds in the future");
    REJECT_CRAFTED(HDR_OK,
                   "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"iat\":1800000000,\"exp\":1900000000}",
                   -EPERM, "issued 99999900 seconds in the future");
    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"iat\":true,\"exp\":1700000300}",
                   -EPERM, "iat is not a NumericDate");

    /* Clocks far out of range yield a reason, not an overflow (the
     * sanitizers would catch one): now - exp and iat - now saturate. */
    t = craft(HDR_OK, CLAIMS_OK);
    REJECT_AT(t, INT64_MAX, -EPERM, "expired");
    REJECT_AT(t, INT64_MIN, -EPERM, "seconds in the future");
    free(t);
    t = craft(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":-9007199254740992}");
    REJECT_AT(t, INT64_MAX, -EPERM, "expired");
    free(t);
    t = craft(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":1700000300}");
    VALID_AT(t, INT64_MIN);
    free(t);
}

static void test_tampered_signature(void **state)
{
    (void)state;
    positive_control();

    char *good = craft(HDR_OK, CLAIMS_OK);
    struct parts p = split(good);
    uint8_t sig[64];
    assert_int_equal(b64_decode(p.s, sig, sizeof(sig)), 64);

    /* One flipped bit, anywhere. */
    static const size_t bits[] = {0, 7, 255, 256, 300, 511};
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++) {
        uint8_t bad[64];
        memcpy(bad, sig, sizeof(bad));
        bad[bits[i] / 8] ^= (uint8_t)(1u << (bits[i] % 8));
        char *s = b64(bad, sizeof(bad));
        char *t = xprintf("%s.%s.%s", p.h, p.p, s);
        REJECT(t, -EPERM, "the signature does not verify with key '" KID_A "'");
        free(s);
        free(t);
    }

    /* S + L: the same signature, malleated (libsodium refuses S >= L). */
    {
        static const uint8_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                      0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                      0,    0,    0,    0,    0,    0,    0,    0,
                                      0,    0,    0,    0,    0,    0,    0,    0x10};
        uint8_t bad[64];
        unsigned carry = 0;
        memcpy(bad, sig, sizeof(bad));
        for (size_t i = 0; i < 32; i++) {
            unsigned v = bad[32 + i] + L[i] + carry;
            bad[32 + i] = (uint8_t)v;
            carry = v >> 8;
        }
        char *s = b64(bad, sizeof(bad));
        char *t = xprintf("%s.%s.%s", p.h, p.p, s);
        REJECT(t, -EPERM, "the signature does not verify");
        free(s);
        free(t);
    }

    /* A changed sub under the original signature. */
    {
        const char *other = "{\"sub\":\"spiffe://example.org/admin\",\"aud\":\"db\","
                            "\"iat\":1700000000,\"exp\":1700000300}";
        char *c64 = b64(other, strlen(other));
        char *t = xprintf("%s.%s.%s", p.h, c64, p.s);
        REJECT(t, -EPERM, "the signature does not verify");
        free(c64);
        free(t);
    }
    /* A changed header (typ JOSE, still acceptable) under the original one. */
    {
        const char *h = "{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"typ\":\"JOSE\"}";
        char *h64 = b64(h, strlen(h));
        char *t = xprintf("%s.%s.%s", h64, p.p, p.s);
        REJECT(t, -EPERM, "the signature does not verify");
        free(h64);
        free(t);
    }
    /* Signed by another key, under key A's kid. */
    {
        char *t = craft_key(&key_b, HDR_OK, CLAIMS_OK);
        REJECT(t, -EPERM, "the signature does not verify");
        free(t);
    }
    /* Wrong sizes: empty, and one byte short. */
    {
        char *t = xprintf("%s.%s.", p.h, p.p);
        REJECT(t, -EINVAL, "the signature is empty");
        free(t);
        char *s = b64(sig, 63);
        t = xprintf("%s.%s.%s", p.h, p.p, s);
        REJECT(t, -EINVAL, "the signature is 63 bytes");
        free(s);
        free(t);
    }
    parts_free(&p);
    free(good);
}

static void test_kid(void **state)
{
    (void)state;
    positive_control();

    /* Signed by a key not in the keyset, under its own kid. */
    char *h = xprintf("{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"JWT\"}", key_b.kid);
    char *needle =
        xprintf("unknown kid %s: the token was not signed by this agent's current keys", key_b.kid);
    char *t = craft_key(&key_b, h, CLAIMS_OK);
    REJECT(t, -EPERM, needle);
    free(t);
    free(h);
    free(needle);

    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", CLAIMS_OK, -EPERM,
                   "the header has no kid");
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":1}", CLAIMS_OK, -EPERM, "kid is not a string");
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"\"}", CLAIMS_OK, -EPERM, "unknown kid");
    /* Longer than any kid: refused, and quoted only in part. */
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A KID_A "\"}", CLAIMS_OK, -EPERM,
                   "unknown kid " KID_A);
    /* A prefix of a real kid is not that kid. */
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4\"}",
                   CLAIMS_OK, -EPERM, "unknown kid");

    /* A retired key still in the keyset verifies the tokens it signed. */
    h = xprintf("{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"JWT\"}", key_c.kid);
    t = craft_key(&key_c, h, CLAIMS_OK);
    VALID(t);
    free(t);
    free(h);
}

static void test_sub(void **state)
{
    (void)state;
    positive_control();

    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"web\"", "\"db\""), -EPERM,
                   "the token's sub 'web' is not a SPIFFE ID of trust domain 'example.org'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"https://example.org/web\"", "\"db\""), -EPERM,
                   "is not a SPIFFE ID of trust domain 'example.org'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"spiffe://example.org/web?x=1\"", "\"db\""), -EPERM,
                   "is not a SPIFFE ID");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"spiffe://evil.org/web\"", "\"db\""), -EPERM,
                   "sub 'spiffe://evil.org/web' is not a SPIFFE ID of trust domain 'example.org'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"spiffe://example.org.evil.org/web\"", "\"db\""),
                   -EPERM, "is not a SPIFFE ID of trust domain 'example.org'");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("7", "\"db\""), -EPERM, "sub is not a string");
    REJECT_CRAFTED(HDR_OK, "{\"aud\":\"db\",\"exp\":1700000300}", -EPERM, "no sub claim");
}

static void test_jws_json_serialization(void **state)
{
    (void)state;
    positive_control();

    char *good = craft(HDR_OK, CLAIMS_OK);
    struct parts p = split(good);
    char *general = xprintf("{\"payload\":\"%s\",\"signatures\":[{\"protected\":\"%s\","
                            "\"signature\":\"%s\"}]}",
                            p.p, p.h, p.s);
    char *flattened =
        xprintf("{\"payload\":\"%s\",\"protected\":\"%s\",\"signature\":\"%s\"}", p.p, p.h, p.s);
    REJECT(general, -EINVAL, "JWS JSON serialization is not accepted; send the compact form");
    REJECT(flattened, -EINVAL, "JWS JSON serialization is not accepted; send the compact form");
    free(general);
    free(flattened);
    parts_free(&p);
    free(good);
}

/* tok with the character at part[i] replaced by c. */
static char *respell(const struct parts *p, int part, size_t i, const char *with)
{
    const char *src[3] = {p->h, p->p, p->s};
    char *copy = strdup(src[part]);
    assert_non_null(copy);
    copy[i] = '\0';
    char *s = xprintf("%s%s%s", copy, with, src[part] + i + 1);
    free(copy);
    const char *out[3] = {p->h, p->p, p->s};
    out[part] = s;
    char *t = xprintf("%s.%s.%s", out[0], out[1], out[2]);
    free(s);
    return t;
}

static int b64_index(char c)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *at = strchr(alphabet, c);
    assert_non_null(at);
    return (int)(at - alphabet);
}

static void test_bad_base64url(void **state)
{
    (void)state;
    positive_control();

    char *good = craft(HDR_OK, CLAIMS_OK);
    struct parts p = split(good);
    static const char *const names[3] = {"header", "payload", "signature"};
    const char *src[3] = {p.h, p.p, p.s};
    char *t, *needle;

    for (int part = 0; part < 3; part++) {
        size_t len = strlen(src[part]);

        /* Padding, as standard base64 writes it (a lone '=' where none is due). */
        size_t pad = (4 - len % 4) % 4;
        char *padded = xprintf("%s%.*s", src[part], (int)(pad ? pad : 1), "==");
        const char *out[3] = {p.h, p.p, p.s};
        out[part] = padded;
        t = xprintf("%s.%s.%s", out[0], out[1], out[2]);
        needle = xprintf("the %s is padded with '=' at byte %zu", names[part], len);
        REJECT(t, -EINVAL, needle);
        free(t);
        free(needle);
        free(padded);

        /* The standard alphabet's '+' and '/'. */
        t = respell(&p, part, 1, "+");
        needle = xprintf("the %s holds '+' at byte 1", names[part]);
        REJECT(t, -EINVAL, needle);
        free(t);
        free(needle);
        t = respell(&p, part, 2, "/");
        needle = xprintf("the %s holds '/' at byte 2", names[part]);
        REJECT(t, -EINVAL, needle);
        free(t);
        free(needle);

        /* Whitespace inside. */
        t = respell(&p, part, 3, " ");
        needle = xprintf("the %s holds whitespace (0x20) at byte 3", names[part]);
        REJECT(t, -EINVAL, needle);
        free(t);
        free(needle);

        /* Not base64 at all. */
        t = respell(&p, part, 4, "*");
        needle = xprintf("the %s holds 0x2a at byte 4, which is not base64url", names[part]);
        REJECT(t, -EINVAL, needle);
        free(t);
        free(needle);

        /* A length no encoding has: one character past a whole group. */
        if (len % 4 == 0) {
            char *longer = xprintf("%sA", src[part]);
            out[part] = longer;
            t = xprintf("%s.%s.%s", out[0], out[1], out[2]);
            REJECT(t, -EINVAL, "is truncated");
            free(t);
            free(longer);
        }

        /* Non-canonical: the last character's unused bits set. The bytes
         * decode the same, so only the spelling check catches it. */
        if (len % 4 != 0) {
            char c[2] = {0, 0};
            static const char alphabet[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            c[0] = alphabet[b64_index(src[part][len - 1]) ^ 1];
            t = respell(&p, part, len - 1, c);
            needle = xprintf("the %s is not canonical base64url", names[part]);
            REJECT(t, -EINVAL, needle);
            free(t);
            free(needle);
        }
    }

    /* A trailing newline, as a file or a shell would leave it. */
    t = xprintf("%s\n", good);
    REJECT(t, -EINVAL, "the signature holds whitespace (0x0a)");
    free(t);
    /* One character past a whole group, for certain: "AAAAA". */
    t = xprintf("AAAAA.%s.%s", p.p, p.s);
    REJECT(t, -EINVAL, "the header is truncated: 5 base64url characters");
    free(t);

    parts_free(&p);
    free(good);
}

static void test_parts(void **state)
{
    (void)state;
    positive_control();

    char *good = craft(HDR_OK, CLAIMS_OK);
    struct parts p = split(good);
    char *t;

    t = xprintf("%s.%s", p.h, p.p);
    REJECT(t, -EINVAL, "the token has 2 parts; a compact JWS has exactly three");
    free(t);
    t = xprintf("%s.%s.%s.%s", p.h, p.p, p.s, p.s);
    REJECT(t, -EINVAL, "the token has 4 parts; a compact JWS has exactly three");
    free(t);
    t = xprintf("%s.", good);
    REJECT(t, -EINVAL, "the token has 4 parts");
    free(t);
    t = xprintf("%s.%s.%s.%s.%s", p.h, p.p, p.s, p.s, p.s);
    REJECT(t, -EINVAL, "five parts: an encrypted JWE");
    free(t);
    REJECT(p.h, -EINVAL, "the token has 1 part;");
    REJECT("..", -EINVAL, "header part is empty");
    t = xprintf(".%s.%s", p.p, p.s);
    REJECT(t, -EINVAL, "header part is empty");
    free(t);
    t = xprintf("%s..%s", p.h, p.s);
    REJECT(t, -EINVAL, "payload part is empty");
    free(t);
    REJECT("", -EINVAL, "the token is empty");

    parts_free(&p);
    free(good);
}

static void test_json(void **state)
{
    (void)state;
    positive_control();

    /* Duplicate keys: a parser that keeps the last would see alg none. */
    REJECT_CRAFTED("{\"alg\":\"EdDSA\",\"kid\":\"" KID_A "\",\"alg\":\"none\"}", CLAIMS_OK, -EINVAL,
                   "the header is not valid JSON: duplicate object key");
    REJECT_CRAFTED(HDR_OK,
                   "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"sub\":\"spiffe://example.org/admin\","
                   "\"exp\":1700000300}",
                   -EINVAL, "the payload is not valid JSON: duplicate object key");
    REJECT_CRAFTED(HDR_OK, "{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":1,\"exp\":1700000300}",
                   -EINVAL, "duplicate object key");

    REJECT_CRAFTED("{\"alg\":\"EdDSA\",", CLAIMS_OK, -EINVAL, "the header is not valid JSON");
    REJECT_CRAFTED("[\"EdDSA\"]", CLAIMS_OK, -EINVAL, "the header is JSON but not an object");
    REJECT_CRAFTED("\"EdDSA\"", CLAIMS_OK, -EINVAL, "the header is not valid JSON");
    REJECT_CRAFTED(HDR_OK, "[1700000300]", -EINVAL, "the payload is JSON but not an object");
    REJECT_CRAFTED(HDR_OK, "not json", -EINVAL, "the payload is not valid JSON");
    REJECT_CRAFTED(HDR_OK, CLAIMS_OK "x", -EINVAL, "the payload is not valid JSON: end of file");
    /* Whitespace around JSON values is JSON. */
    VALID_CRAFTED(HDR_OK, " " CLAIMS_OK "\n");
}

static void test_limits(void **state)
{
    (void)state;
    positive_control();

    /* The largest token under the limit validates; one byte more is refused
     * unread, whatever it holds. */
    char *best = NULL;
    for (size_t pad = 12000; pad < TOKEN_MAX_LEN; pad++) {
        char *fill = malloc(pad + 1);
        assert_non_null(fill);
        memset(fill, 'x', pad);
        fill[pad] = '\0';
        char *claims = xprintf("{\"sub\":\"" SUB "\",\"aud\":\"db\",\"exp\":1700000300,"
                               "\"pad\":\"%s\"}",
                               fill);
        free(fill);
        char *t = craft(HDR_OK, claims);
        free(claims);
        if (strlen(t) > TOKEN_MAX_LEN) {
            free(t);
            break;
        }
        free(best);
        best = t;
    }
    assert_non_null(best);
    assert_true(strlen(best) > TOKEN_MAX_LEN - 4);
    VALID(best);
    free(best);

    char *big = malloc(TOKEN_MAX_LEN + 2);
    assert_non_null(big);
    memset(big, 'A', TOKEN_MAX_LEN + 1);
    big[TOKEN_MAX_LEN + 1] = '\0';
    REJECT(big, -EINVAL, "the token is 16385 bytes, more than the limit of 16384");
    free(big);

    /* An embedded NUL is refused, not read as the end of the token. */
    char *t = craft(HDR_OK, CLAIMS_OK);
    size_t len = strlen(t);
    char *withnul = xprintf("%s", t);
    withnul[10] = '\0';
    check_reject(withnul, len, AUD, NOW, -EINVAL, "NUL byte at byte 10", __LINE__);
    /* len is what counts: a valid token cut short by len is a bad one. */
    check_reject(t, len - 1, AUD, NOW, -EINVAL, "signature", __LINE__);
    free(withnul);
    free(t);
}

static void test_validate_arguments(void **state)
{
    (void)state;
    struct token_claims *c = NULL;
    char reason[128];
    char *t = craft(HDR_OK, CLAIMS_OK);
    assert_int_equal(token_validate(NULL, t, strlen(t), AUD, TD, NOW, &c, reason, sizeof(reason)),
                     -EINVAL);
    assert_int_equal(token_validate(ks, NULL, 5, AUD, TD, NOW, &c, reason, sizeof(reason)),
                     -EINVAL);
    assert_int_equal(token_validate(ks, t, strlen(t), NULL, TD, NOW, &c, reason, sizeof(reason)),
                     -EINVAL);
    assert_int_equal(token_validate(ks, t, strlen(t), AUD, NULL, NOW, &c, reason, sizeof(reason)),
                     -EINVAL);
    assert_int_equal(token_validate(ks, t, strlen(t), AUD, TD, NOW, NULL, reason, sizeof(reason)),
                     -EINVAL);
    assert_null(c);
    /* No reason buffer is fine, and a small one is truncated, not overrun. */
    assert_int_equal(token_validate(ks, t, strlen(t), "x", TD, NOW, &c, NULL, 0), -EPERM);
    char tiny[8];
    assert_int_equal(token_validate(ks, t, strlen(t), "x", TD, NOW, &c, tiny, sizeof(tiny)),
                     -EPERM);
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    assert_null(c);
    assert_null(token_claims_free(NULL));
    free(t);
}

/* A hostile value reaches the reason as text, not as terminal control. */
static void test_reason_quotes_hostile_values(void **state)
{
    (void)state;
    positive_control();
    REJECT_CRAFTED(HDR_ALG("HS256\\u001b[31m"), CLAIMS_OK, -EPERM, "alg HS256\\x1b[31m is not");
    REJECT_CRAFTED(HDR_OK, CLAIMS_SUB_AUD("\"" SUB "\"", "\"\\n\""), -EPERM,
                   "the token is for audience '\\x0a', not 'db'");
}

static void test_audience_valid(void **state)
{
    (void)state;
    char err[256];
    char a256[TOKEN_AUDIENCE_MAX + 2];
    memset(a256, 'a', sizeof(a256));

    assert_true(token_audience_valid("db", 2, err, sizeof(err)));
    assert_true(token_audience_valid("!", 1, err, sizeof(err)));
    assert_true(token_audience_valid("~", 1, err, sizeof(err)));
    assert_true(token_audience_valid("https://db.example.org/x?y=z", 28, err, sizeof(err)));
    assert_true(token_audience_valid(a256, TOKEN_AUDIENCE_MAX, err, sizeof(err)));

    assert_false(token_audience_valid(a256, TOKEN_AUDIENCE_MAX + 1, err, sizeof(err)));
    assert_non_null(strstr(err, "more than the limit of 256"));
    assert_false(token_audience_valid("", 0, err, sizeof(err)));
    assert_non_null(strstr(err, "empty"));
    assert_false(token_audience_valid(NULL, 3, err, sizeof(err)));
    assert_false(token_audience_valid("a b", 3, err, sizeof(err)));
    assert_non_null(strstr(err, "at byte 1"));
    assert_false(token_audience_valid("a\0b", 3, err, sizeof(err)));
    assert_non_null(strstr(err, "\\x00"));
    assert_false(token_audience_valid("\x7f", 1, err, sizeof(err)));
    assert_false(token_audience_valid("caf\xc3\xa9", 5, err, sizeof(err)));
    assert_false(token_audience_valid("a\tb", 3, NULL, 0));
}

/* --- cache -------------------------------------------------------------- */

#define E1 "0123456789abcdef0123456789abcdef"
#define E2 "11111111111111111111111111111111"
#define E3 "22222222222222222222222222222222"

static void test_cache_half_life(void **state)
{
    (void)state;
    struct token_cache *c = NULL;
    int64_t exp = 0;
    assert_int_equal(token_cache_new(4, &c), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "tok-1", 1000, 1300), 0);
    assert_int_equal(token_cache_count(c), 1);

    const char *t = token_cache_get(c, E1, "db", KID_A, 1000, &exp);
    assert_non_null(t);
    assert_string_equal(t, "tok-1");
    assert_int_equal(exp, 1300);
    /* The same stored copy each time: a hit allocates nothing. */
    assert_ptr_equal(token_cache_get(c, E1, "db", KID_A, 1100, NULL), t);
    /* 151 s of 300 left: still more than half. */
    assert_ptr_equal(token_cache_get(c, E1, "db", KID_A, 1149, NULL), t);

    /* Other keys miss. */
    assert_null(token_cache_get(c, E2, "db", KID_A, 1000, NULL));
    assert_null(token_cache_get(c, E1, "db\ncache", KID_A, 1000, NULL));
    assert_null(token_cache_get(c, E1, "db", "other-kid", 1000, NULL));

    /* Exactly half left is not more than half: a miss, and the stale one goes. */
    exp = 42;
    assert_null(token_cache_get(c, E1, "db", KID_A, 1150, &exp));
    assert_int_equal(exp, 42);
    assert_int_equal(token_cache_count(c), 0);

    /* Expired, and a clock that stepped back before iat. */
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "tok-2", 1000, 1300), 0);
    assert_non_null(token_cache_get(c, E1, "db", KID_A, 999, NULL));
    assert_null(token_cache_get(c, E1, "db", KID_A, 1300, NULL));
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "tok-3", 1000, 1300), 0);
    assert_null(token_cache_get(c, E1, "db", KID_A, 5000, NULL));

    /* An odd lifetime: 301 s, half is 150 (rounded down), hit while > 150 left. */
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "tok-4", 1000, 1301), 0);
    assert_non_null(token_cache_get(c, E1, "db", KID_A, 1150, NULL));
    assert_null(token_cache_get(c, E1, "db", KID_A, 1151, NULL));
    c = token_cache_free(c);
    assert_null(c);
}

static void test_cache_put_replaces(void **state)
{
    (void)state;
    struct token_cache *c = NULL;
    int64_t exp = 0;
    assert_int_equal(token_cache_new(2, &c), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "old", 1000, 1300), 0);
    assert_int_equal(token_cache_put(c, E2, "db", KID_A, "other", 1000, 1300), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "a-new-and-longer-token", 1100, 1700), 0);
    assert_int_equal(token_cache_count(c), 2);
    assert_string_equal(token_cache_get(c, E1, "db", KID_A, 1100, &exp), "a-new-and-longer-token");
    assert_int_equal(exp, 1700);
    /* Replacing did not evict the other key, even at capacity. */
    assert_string_equal(token_cache_get(c, E2, "db", KID_A, 1100, NULL), "other");
    c = token_cache_free(c);
}

static void test_cache_lru(void **state)
{
    (void)state;
    struct token_cache *c = NULL;
    assert_int_equal(token_cache_new(3, &c), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t1", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E2, "db", KID_A, "t2", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E3, "db", KID_A, "t3", 1000, 2000), 0);
    assert_int_equal(token_cache_count(c), 3);

    /* E1 is used, so E2 is now the least recently used and goes first. */
    assert_non_null(token_cache_get(c, E1, "db", KID_A, 1000, NULL));
    assert_int_equal(token_cache_put(c, E1, "cache", KID_A, "t4", 1000, 2000), 0);
    assert_int_equal(token_cache_count(c), 3);
    assert_null(token_cache_get(c, E2, "db", KID_A, 1000, NULL));
    assert_string_equal(token_cache_get(c, E1, "db", KID_A, 1000, NULL), "t1");
    assert_string_equal(token_cache_get(c, E3, "db", KID_A, 1000, NULL), "t3");
    assert_string_equal(token_cache_get(c, E1, "cache", KID_A, 1000, NULL), "t4");

    /* Order now (most recent first): E1/cache, E3, E1/db. */
    assert_int_equal(token_cache_put(c, E2, "db", KID_A, "t5", 1000, 2000), 0);
    assert_null(token_cache_get(c, E1, "db", KID_A, 1000, NULL));
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t6", 1000, 2000), 0);
    assert_null(token_cache_get(c, E3, "db", KID_A, 1000, NULL));
    assert_int_equal(token_cache_count(c), 3);
    c = token_cache_free(c);
}

static void test_cache_many(void **state)
{
    (void)state;
    struct token_cache *c = NULL;
    char id[64], tok[64];
    assert_int_equal(token_cache_new(1000, &c), 0);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%032d", i);
        snprintf(tok, sizeof(tok), "token-%d", i);
        assert_int_equal(token_cache_put(c, id, "db", KID_A, tok, 1000, 2000), 0);
        assert_true(token_cache_count(c) <= 1000);
    }
    assert_int_equal(token_cache_count(c), 1000);
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%032d", i);
        snprintf(tok, sizeof(tok), "token-%d", i);
        const char *t = token_cache_get(c, id, "db", KID_A, 1000, NULL);
        if (i < 4000) {
            assert_null(t);
        } else {
            assert_non_null(t);
            assert_string_equal(t, tok);
        }
    }
    c = token_cache_free(c);
}

static bool keep_not_e1(void *ctx, const char *entry_id, const char *kid)
{
    (void)kid;
    (*(int *)ctx)++;
    return strcmp(entry_id, E1) != 0;
}

static bool keep_kid(void *ctx, const char *entry_id, const char *kid)
{
    (void)entry_id;
    return strcmp(kid, (const char *)ctx) == 0;
}

static void test_cache_retain(void **state)
{
    (void)state;
    struct token_cache *c = NULL;
    assert_int_equal(token_cache_new(8, &c), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t1", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E1, "db", "kid-b", "t2", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E2, "db", KID_A, "t3", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E3, "db", "kid-b", "t4", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E3, "cache", KID_A, "t5", 1000, 2000), 0);

    /* A deleted entry: its tokens go, under every key. */
    int calls = 0;
    token_cache_retain(c, keep_not_e1, &calls);
    assert_int_equal(calls, 5);
    assert_int_equal(token_cache_count(c), 3);
    assert_null(token_cache_get(c, E1, "db", KID_A, 1000, NULL));
    assert_null(token_cache_get(c, E1, "db", "kid-b", 1000, NULL));

    /* A key no longer active: its tokens go. */
    token_cache_retain(c, keep_kid, (void *)KID_A);
    assert_int_equal(token_cache_count(c), 2);
    assert_null(token_cache_get(c, E3, "db", "kid-b", 1000, NULL));
    assert_string_equal(token_cache_get(c, E2, "db", KID_A, 1000, NULL), "t3");
    assert_string_equal(token_cache_get(c, E3, "cache", KID_A, 1000, NULL), "t5");

    /* The list is intact after removals from its middle: fill and evict. */
    assert_int_equal(token_cache_put(c, E1, "x", KID_A, "t6", 1000, 2000), 0);
    token_cache_retain(c, keep_kid, (void *)"nothing");
    assert_int_equal(token_cache_count(c), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t7", 1000, 2000), 0);
    assert_string_equal(token_cache_get(c, E1, "db", KID_A, 1000, NULL), "t7");
    c = token_cache_free(c);
}

static void test_cache_arguments(void **state)
{
    (void)state;
    struct token_cache *c = (struct token_cache *)0x1;
    assert_int_equal(token_cache_new(0, &c), -EINVAL);
    assert_int_equal(token_cache_new(SIZE_MAX, &c), -EINVAL);
    assert_int_equal(token_cache_new(4, NULL), -EINVAL);
    assert_ptr_equal(c, (struct token_cache *)0x1);

    assert_int_equal(token_cache_new(1, &c), 0);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t", 1000, 1000), -EINVAL);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t", 1000, 999), -EINVAL);
    assert_int_equal(token_cache_put(c, NULL, "db", KID_A, "t", 1000, 2000), -EINVAL);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, NULL, 1000, 2000), -EINVAL);
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t", INT64_MIN, INT64_MAX), -EINVAL);
    assert_int_equal(token_cache_count(c), 0);
    /* Capacity one: each put evicts the last. */
    assert_int_equal(token_cache_put(c, E1, "db", KID_A, "t1", 1000, 2000), 0);
    assert_int_equal(token_cache_put(c, E2, "db", KID_A, "t2", 1000, 2000), 0);
    assert_int_equal(token_cache_count(c), 1);
    assert_null(token_cache_get(c, E1, "db", KID_A, 1000, NULL));
    assert_null(token_cache_get(c, E1, NULL, KID_A, 1000, NULL));
    c = token_cache_free(c);

    assert_null(token_cache_free(NULL));
    assert_null(token_cache_get(NULL, E1, "db", KID_A, 1000, NULL));
    assert_int_equal(token_cache_count(NULL), 0);
    token_cache_retain(NULL, keep_kid, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_rfc8037_a4),
        cmocka_unit_test(test_sign_random_jti),
        cmocka_unit_test(test_sign_refuses_bad_arguments),
        cmocka_unit_test(test_alg_none),
        cmocka_unit_test(test_hmac_keyed_with_public_key),
        cmocka_unit_test(test_other_algs),
        cmocka_unit_test(test_crit),
        cmocka_unit_test(test_typ),
        cmocka_unit_test(test_aud),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_tampered_signature),
        cmocka_unit_test(test_kid),
        cmocka_unit_test(test_sub),
        cmocka_unit_test(test_jws_json_serialization),
        cmocka_unit_test(test_bad_base64url),
        cmocka_unit_test(test_parts),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_validate_arguments),
        cmocka_unit_test(test_reason_quotes_hostile_values),
        cmocka_unit_test(test_audience_valid),
        cmocka_unit_test(test_cache_half_life),
        cmocka_unit_test(test_cache_put_replaces),
        cmocka_unit_test(test_cache_lru),
        cmocka_unit_test(test_cache_many),
        cmocka_unit_test(test_cache_retain),
        cmocka_unit_test(test_cache_arguments),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
