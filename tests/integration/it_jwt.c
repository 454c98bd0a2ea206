/* See it_jwt.h. */
#include "it_jwt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static bool fail(char *why, size_t why_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static bool fail(char *why, size_t why_len, const char *fmt, ...)
{
    if (why && why_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* base64url without padding into a fresh NUL-terminated buffer. */
static uint8_t *b64_decode(const char *s, size_t len, size_t *ret_len)
{
    uint8_t *out = malloc(len + 1);
    size_t n = 0;
    const char *end = NULL;
    if (!out)
        return NULL;
    if (sodium_base642bin(out, len + 1, s, len, NULL, &n, &end, B64) != 0 || end != s + len) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    *ret_len = n;
    return out;
}

void jwt_free(struct jwt *t)
{
    free(t->header_text);
    free(t->payload_text);
    json_decref(t->payload);
    memset(t, 0, sizeof(*t));
}

bool jwt_decode(const char *token, size_t len, struct jwt *ret, char *why, size_t why_len)
{
    struct jwt t = {0};
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return fail(why, why_len, "not three dot-separated parts");
    size_t hl, pl, sl;
    t.header_text = (char *)b64_decode(token, (size_t)(d1 - token), &hl);
    t.payload_text = (char *)b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pl);
    uint8_t *sig = b64_decode(d2 + 1, len - (size_t)(d2 + 1 - token), &sl);
    if (!t.header_text || !t.payload_text || !sig || sl > sizeof(t.sig)) {
        free(sig);
        jwt_free(&t);
        return fail(why, why_len, "a part is not base64url without padding");
    }
    memcpy(t.sig, sig, sl);
    t.sig_len = sl;
    t.signed_len = (size_t)(d2 - token);
    free(sig);
    if (strlen(t.header_text) != hl || strlen(t.payload_text) != pl) {
        jwt_free(&t);
        return fail(why, why_len, "a part holds a NUL byte");
    }
    json_error_t e;
    json_t *h = json_loads(t.header_text, JSON_REJECT_DUPLICATES, &e);
    const char *kid = json_string_value(json_object_get(h, "kid"));
    if (!json_is_object(h) || !kid || strlen(kid) >= sizeof(t.kid)) {
        json_decref(h);
        jwt_free(&t);
        return fail(why, why_len, "the header is not a JSON object with a string kid");
    }
    (void)snprintf(t.kid, sizeof(t.kid), "%s", kid);
    json_decref(h);
    t.payload = json_loads(t.payload_text, JSON_REJECT_DUPLICATES, &e);
    if (!json_is_object(t.payload)) {
        jwt_free(&t);
        return fail(why, why_len, "the payload is not a JSON object");
    }
    *ret = t;
    return true;
}

bool jwt_int_claim(const struct jwt *t, const char *name, int64_t *ret)
{
    const json_t *v = json_object_get(t->payload, name);
    if (!json_is_integer(v))
        return false;
    *ret = (int64_t)json_integer_value(v);
    return true;
}

const char *jwt_str_claim(const struct jwt *t, const char *name)
{
    return json_string_value(json_object_get(t->payload, name));
}

/* The RFC 7638 thumbprint of an Ed25519 JWK: SHA-256 over the required
 * members in lexicographic order, without whitespace. */
static void thumbprint(const char *x, char kid[static JWT_KID_MAX])
{
    char canon[256];
    uint8_t h[crypto_hash_sha256_BYTES];
    int n = snprintf(canon, sizeof(canon), "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    (void)crypto_hash_sha256(h, (const uint8_t *)canon, (unsigned long long)n);
    (void)sodium_bin2base64(kid, JWT_KID_MAX, h, sizeof(h), B64);
}

/* The key of kid in the parsed JWKS (32 bytes into pk), checking every key. */
static int jwks_walk(const char *jwks, size_t len, char kids[][JWT_KID_MAX], size_t max,
                     const char *want, uint8_t pk[static 32], bool *found, char *why,
                     size_t why_len)
{
    json_error_t e;
    json_t *root = json_loadb(jwks, len, JSON_REJECT_DUPLICATES, &e);
    json_t *keys = json_object_get(root, "keys");
    int n = 0;
    *found = false;
    if (!json_is_object(root) || !json_is_array(keys)) {
        json_decref(root);
        (void)fail(why, why_len, "the JWKS is not an object with a keys array");
        return -1;
    }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *kty = json_string_value(json_object_get(k, "kty"));
        const char *crv = json_string_value(json_object_get(k, "crv"));
        const char *x = json_string_value(json_object_get(k, "x"));
        const char *kid = json_string_value(json_object_get(k, "kid"));
        const json_t *use = json_object_get(k, "use");
        if (json_object_get(k, "alg")) {
            /* node jose requires a key's alg to equal the token's exactly,
             * and "EdDSA" is being renamed (DESIGN §2). */
            json_decref(root);
            (void)fail(why, why_len, "key %zu has an \"alg\" member; sockid's keys leave it out",
                       i);
            return -1;
        }
        if (!kty || strcmp(kty, "OKP") != 0 || !crv || strcmp(crv, "Ed25519") != 0 || !x || !kid ||
            strlen(kid) >= JWT_KID_MAX ||
            (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))) {
            json_decref(root);
            (void)fail(why, why_len,
                       "key %zu is not {\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":...,\"kid\":"
                       "...} with use sig or none",
                       i);
            return -1;
        }
        size_t xl;
        uint8_t *raw = b64_decode(x, strlen(x), &xl);
        char tp[JWT_KID_MAX];
        thumbprint(x, tp);
        if (!raw || xl != 32 || strcmp(tp, kid) != 0) {
            free(raw);
            json_decref(root);
            (void)fail(why, why_len,
                       "key %zu: x is not 32 bytes of base64url, or kid %s is not its RFC 7638 "
                       "thumbprint %s",
                       i, kid, tp);
            return -1;
        }
        if (want && strcmp(kid, want) == 0) {
            memcpy(pk, raw, 32);
            *found = true;
        }
        free(raw);
        if ((size_t)n < max)
            (void)snprintf(kids[n], JWT_KID_MAX, "%s", kid);
        n++;
    }
    json_decref(root);
    return n;
}

int jwks_kids(const char *jwks, size_t len, char kids[][JWT_KID_MAX], size_t max, char *why,
              size_t why_len)
{
    uint8_t pk[32];
    bool found;
    return jwks_walk(jwks, len, kids, max, NULL, pk, &found, why, why_len);
}

bool jwks_has_kid(const char *jwks, size_t len, const char *kid)
{
    uint8_t pk[32];
    bool found;
    return jwks_walk(jwks, len, NULL, 0, kid, pk, &found, NULL, 0) >= 0 && found;
}

bool jwt_verify_with_jwks(const char *token, size_t len, const char *jwks, size_t jwks_len,
                          char *why, size_t why_len)
{
    struct jwt t;
    uint8_t pk[32];
    bool found;
    if (!jwt_decode(token, len, &t, why, why_len))
        return false;
    bool ok = jwks_walk(jwks, jwks_len, NULL, 0, t.kid, pk, &found, why, why_len) >= 0;
    if (ok && !found)
        ok = fail(why, why_len, "kid %s is not in the JWKS", t.kid);
    if (ok && t.sig_len != 64)
        ok = fail(why, why_len, "the signature is %zu bytes, not 64", t.sig_len);
    if (ok && crypto_sign_verify_detached(t.sig, (const uint8_t *)token, t.signed_len, pk) != 0)
        ok = fail(why, why_len, "the Ed25519 signature does not verify with key %s", t.kid);
    jwt_free(&t);
    return ok;
}
