/* Identity tokens: signing and validation (see token.h).
 *
 * The per-loop cache of signed tokens is in token_cache.c: it stores tokens
 * as opaque strings and shares nothing with this file but the bound on
 * NumericDates (token_internal.h).
 *
 * Signing. The header and claims are built with jansson and dumped compact,
 * in insertion order, so the same inputs always give the same bytes (the
 * known-answer test depends on it). The signature is Ed25519 over the ASCII
 * of "header.payload", made by keys.c, which alone holds secret halves.
 *
 * Validation reads a token from anyone, so it trusts nothing before the
 * signature verifies, and checks in this order, stopping at the first
 * problem:
 *   1. size (TOKEN_MAX_LEN), no NUL, not the JWS JSON serialization, exactly
 *      three dot-separated parts (header and payload non-empty);
 *   2. each part strict base64url: URL-safe alphabet only (no '=', '+', '/',
 *      whitespace), decoded by libsodium, which also refuses non-zero unused
 *      trailing bits, so every value has one spelling;
 *   3. the header: a JSON object without duplicate keys; alg exactly EdDSA;
 *      no crit; typ absent, JWT or JOSE; kid present and in the keyset;
 *   4. the signature: 64 bytes, verified with that key over the received
 *      bytes of "header.payload";
 *   5. only then the claims: a JSON object without duplicate keys; sub a
 *      SPIFFE ID of the trust domain; aud a string or a non-empty array of
 *      strings holding the audience; exp a number with now < exp; nbf, when
 *      present, <= now; iat, when present, at most TOKEN_IAT_SKEW seconds
 *      ahead of now.
 * -EINVAL means the bytes are not a compact JWS with JSON header and claims
 * (steps 1, 2, JSON syntax, a signature of the wrong size); -EPERM means a
 * well-formed token that is not valid here (every rule of steps 3 to 5).
 * NumericDates may be non-integers (RFC 7519 §2); they are rounded toward
 * refusal: exp down, nbf and iat up. */
#include "token.h"
#include "token_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <sodium.h>

#include "entries.h"
#include "text.h"

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define SIG_LEN     crypto_sign_BYTES
#define JTI_LEN     16u
/* iat may be this far ahead of now: clocks of hosts that share a bundle may
 * differ a little; further ahead means a broken clock on the signing side,
 * which the operator should hear about. exp and nbf get no leeway. */
#define TOKEN_IAT_SKEW 60
/* How much of an offending value a reason quotes. */

__attribute__((format(printf, 4, 5))) static int refuse(int rc, char *reason, size_t reason_len,
                                                        const char *fmt, ...)
{
    if (reason && reason_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(reason, reason_len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

bool token_audience_valid(const char *aud, size_t len, char *err, size_t err_len)
{
    /* The same rule an entry's allowed audiences follow, or an entry could
     * allow an audience no request may name. */
    return entries_audience_valid(aud, len, err, err_len);
}

/* --- signing ------------------------------------------------------------ */

static size_t b64_len(size_t bin_len)
{
    return sodium_base64_ENCODED_LEN(bin_len, B64_VARIANT) - 1; /* without the NUL */
}

static json_t *sign_claims(const char *sub, const char *const *aud, size_t n_aud, int64_t iat,
                           int64_t exp, const char *jti)
{
    json_t *claims = json_object();
    json_t *subv = json_string(sub); /* NULL when sub is not UTF-8 */
    json_t *audv = n_aud == 1 ? json_string(aud[0]) : json_array();
    json_t *iatv = json_integer((json_int_t)iat);
    json_t *expv = json_integer((json_int_t)exp);
    json_t *jtiv = json_string(jti);
    bool ok = claims && subv && audv && iatv && expv && jtiv;

    for (size_t i = 0; ok && n_aud > 1 && i < n_aud; i++)
        ok = json_array_append_new(audv, json_string(aud[i])) == 0;
    /* json_object_set, not _new: every value is released below whatever
     * happened, which _new's take-even-on-failure would complicate. */
    ok = ok && json_object_set(claims, "sub", subv) == 0 &&
         json_object_set(claims, "aud", audv) == 0 && json_object_set(claims, "iat", iatv) == 0 &&
         json_object_set(claims, "exp", expv) == 0 && json_object_set(claims, "jti", jtiv) == 0;
    json_decref(subv);
    json_decref(audv);
    json_decref(iatv);
    json_decref(expv);
    json_decref(jtiv);
    if (!ok) {
        json_decref(claims);
        return NULL;
    }
    return claims;
}

int token_sign(const struct key *key, const char *sub, const char *const *aud, size_t n_aud,
               int64_t iat, int64_t exp, const uint8_t *jti_seed, char **ret)
{
    uint8_t jti_raw[JTI_LEN];
    char jti[sodium_base64_ENCODED_LEN(JTI_LEN, B64_VARIANT)];
    uint8_t sig[SIG_LEN];
    json_t *header = NULL, *claims = NULL;
    char *header_json = NULL, *claims_json = NULL, *out = NULL;
    int r = -EINVAL;

    if (!key || !sub || !aud || n_aud == 0 || n_aud > TOKEN_MAX_AUDIENCES || !ret)
        return -EINVAL;
    if (exp <= iat || iat < -NUMERIC_DATE_MAX || exp > NUMERIC_DATE_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n_aud; i++)
        if (!aud[i] || !token_audience_valid(aud[i], strlen(aud[i]), NULL, 0))
            return -EINVAL;

    if (jti_seed)
        memcpy(jti_raw, jti_seed, sizeof(jti_raw));
    else
        randombytes_buf(jti_raw, sizeof(jti_raw));
    sodium_bin2base64(jti, sizeof(jti), jti_raw, sizeof(jti_raw), B64_VARIANT);

    header = json_object();
    if (!header || json_object_set_new(header, "alg", json_string("EdDSA")) < 0 ||
        json_object_set_new(header, "kid", json_string(key->kid)) < 0 ||
        json_object_set_new(header, "typ", json_string("JWT")) < 0)
        goto out; /* a kid that is not UTF-8: -EINVAL */
    claims = sign_claims(sub, aud, n_aud, iat, exp, jti);
    if (!claims)
        goto out; /* a sub that is not UTF-8, or no memory: -EINVAL either way */

    r = -ENOMEM;
    header_json = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER);
    claims_json = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!header_json || !claims_json)
        goto out;

    size_t hl = strlen(header_json), cl = strlen(claims_json);
    size_t h64 = b64_len(hl), c64 = b64_len(cl), s64 = b64_len(SIG_LEN);
    out = malloc(h64 + 1 + c64 + 1 + s64 + 1);
    if (!out)
        goto out;
    sodium_bin2base64(out, h64 + 1, (const uint8_t *)header_json, hl, B64_VARIANT);
    out[h64] = '.';
    sodium_bin2base64(out + h64 + 1, c64 + 1, (const uint8_t *)claims_json, cl, B64_VARIANT);
    r = keys_sign(key, (const uint8_t *)out, h64 + 1 + c64, sig);
    if (r < 0)
        goto out;
    out[h64 + 1 + c64] = '.';
    sodium_bin2base64(out + h64 + 1 + c64 + 1, s64 + 1, sig, sizeof(sig), B64_VARIANT);

    *ret = out;
    out = NULL;
    r = 0;
out:
    free(out);
    free(header_json);
    free(claims_json);
    json_decref(header);
    json_decref(claims);
    return r;
}

/* --- validation --------------------------------------------------------- */

struct token_claims *token_claims_free(struct token_claims *c)
{
    if (c) {
        free(c->sub);
        free(c->claims_json);
        free(c);
    }
    return NULL;
}

/* Decodes one part (what names it in reasons) into out, which has room for
 * len * 3 / 4 bytes. */
static int part_decode(const char *what, const char *s, size_t len, uint8_t *out, size_t cap,
                       size_t *ret_len, char *reason, size_t reason_len)
{
    const char *end = NULL;
    size_t n = 0;

    /* Find a bad character here rather than from libsodium, to name it. */
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_')
            continue;
        if (c == '=')
            return refuse(-EINVAL, reason, reason_len,
                          "the %s is padded with '=' at byte %zu; base64url in a JWS has no "
                          "padding",
                          what, i);
        if (c == '+' || c == '/')
            return refuse(-EINVAL, reason, reason_len,
                          "the %s holds '%c' at byte %zu: that is standard base64, a JWS uses "
                          "base64url ('-' and '_')",
                          what, c, i);
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
            return refuse(-EINVAL, reason, reason_len,
                          "the %s holds whitespace (0x%02x) at byte %zu; a token holds none "
                          "(strip newlines and spaces)",
                          what, (unsigned)(unsigned char)c, i);
        return refuse(-EINVAL, reason, reason_len,
                      "the %s holds 0x%02x at byte %zu, which is not base64url", what,
                      (unsigned)(unsigned char)c, i);
    }
    if (len % 4 == 1)
        return refuse(-EINVAL, reason, reason_len,
                      "the %s is truncated: %zu base64url characters cannot encode whole bytes",
                      what, len);
    if (sodium_base642bin(out, cap, s, len, NULL, &n, &end, B64_VARIANT) != 0 || end != s + len)
        return refuse(-EINVAL, reason, reason_len,
                      "the %s is not canonical base64url: its last character has non-zero "
                      "unused bits",
                      what);
    *ret_len = n;
    return 0;
}

/* a - b, saturated, for reasons: now comes from the caller and may be
 * anything. */
static long long span(int64_t a, int64_t b)
{
    int64_t d;
    if (__builtin_sub_overflow(a, b, &d))
        return a > b ? LLONG_MAX : LLONG_MIN;
    return (long long)d;
}

/* A NumericDate (RFC 7519 §2) as whole seconds, rounded down (round_up
 * false) or up. */
static bool numeric_date(const json_t *v, bool round_up, int64_t *ret)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < -NUMERIC_DATE_MAX || i > NUMERIC_DATE_MAX)
            return false;
        *ret = (int64_t)i;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || d < (double)-NUMERIC_DATE_MAX || d > (double)NUMERIC_DATE_MAX)
            return false;
        *ret = (int64_t)(round_up ? ceil(d) : floor(d));
        return true;
    }
    return false;
}

static int header_check(const json_t *header, const struct keyset *ks, const struct key **ret_key,
                        char *reason, size_t reason_len)
{
    char q[TEXT_QUOTE_BUF];
    const json_t *alg = json_object_get(header, "alg");
    const json_t *typ = json_object_get(header, "typ");
    const json_t *crit = json_object_get(header, "crit");
    const json_t *kid = json_object_get(header, "kid");

    if (!alg)
        return refuse(-EPERM, reason, reason_len, "the header has no alg; sockid tokens are EdDSA");
    if (!json_is_string(alg))
        return refuse(-EPERM, reason, reason_len,
                      "the header's alg is not a string; sockid tokens are EdDSA");
    const char *a = json_string_value(alg);
    size_t al = json_string_length(alg);
    if (al == 4 && strncasecmp(a, "none", 4) == 0)
        return refuse(-EPERM, reason, reason_len,
                      "alg %s is never accepted: an unsigned token proves nothing",
                      text_quote(q, a, al));
    if (al != 5 || memcmp(a, "EdDSA", 5) != 0)
        return refuse(-EPERM, reason, reason_len, "alg %s is not accepted; sockid tokens are EdDSA",
                      text_quote(q, a, al));

    /* sockid implements no JWS extension, so every critical one is unknown
     * (RFC 7515 §4.1.11: the recipient must then refuse the JWS). */
    if (crit) {
        const json_t *first = json_is_array(crit) ? json_array_get(crit, 0) : NULL;
        if (json_is_string(first))
            return refuse(-EPERM, reason, reason_len,
                          "unknown critical header %s (crit); sockid implements no JWS "
                          "extensions",
                          text_quote(q, json_string_value(first), json_string_length(first)));
        return refuse(-EPERM, reason, reason_len,
                      "unknown critical header: crit is present; sockid implements no JWS "
                      "extensions");
    }

    if (typ) {
        const char *t = json_is_string(typ) ? json_string_value(typ) : NULL;
        size_t tl = t ? json_string_length(typ) : 0;
        if (!t)
            return refuse(-EPERM, reason, reason_len,
                          "the header's typ is not a string; it must be JWT, JOSE or absent");
        if (!((tl == 3 && memcmp(t, "JWT", 3) == 0) || (tl == 4 && memcmp(t, "JOSE", 4) == 0)))
            return refuse(-EPERM, reason, reason_len,
                          "typ %s is not accepted; sockid tokens are typ JWT (JOSE or no typ "
                          "also do)",
                          text_quote(q, t, tl));
    }

    if (!kid)
        return refuse(-EPERM, reason, reason_len,
                      "the header has no kid; sockid tokens name the key that signed them");
    if (!json_is_string(kid))
        return refuse(-EPERM, reason, reason_len, "the header's kid is not a string");
    const char *k = json_string_value(kid);
    size_t kl = json_string_length(kid);
    const struct key *key = NULL;
    if (kl <= KEYS_KID_LEN && strlen(k) == kl)
        key = keyset_find(ks, k);
    if (!key)
        return refuse(-EPERM, reason, reason_len,
                      "unknown kid %s: the token was not signed by this agent's current keys",
                      text_quote(q, k, kl));
    *ret_key = key;
    return 0;
}

/* "the token is for audience 'a'" or "... audiences 'a', 'b'", into buf. */
static void aud_describe(const json_t *aud, char *buf, size_t len)
{
    char q[TEXT_QUOTE_BUF];
    size_t o = 0;
    if (json_is_string(aud)) {
        (void)snprintf(buf, len, "audience '%s'",
                       text_quote(q, json_string_value(aud), json_string_length(aud)));
        return;
    }
    o = (size_t)snprintf(buf, len, "audiences");
    for (size_t i = 0; i < json_array_size(aud) && o < len; i++) {
        const json_t *v = json_array_get(aud, i);
        if (i == 4) {
            (void)snprintf(buf + o, len - o, ", ... (%zu in all)", json_array_size(aud));
            return;
        }
        o += (size_t)snprintf(buf + o, len - o, "%s '%s'", i ? "," : "",
                              text_quote(q, json_string_value(v), json_string_length(v)));
    }
}

static int claims_aud(const json_t *claims, const char *audience, char *reason, size_t reason_len)
{
    char q[TEXT_QUOTE_BUF];
    char desc[5 * TEXT_QUOTE_BUF + 64];
    const json_t *aud = json_object_get(claims, "aud");
    size_t want = strlen(audience);

    if (!aud)
        return refuse(-EPERM, reason, reason_len,
                      "the token has no aud claim, so it is not meant for audience '%s'",
                      text_quote(q, audience, want));
    if (json_is_string(aud)) {
        if (json_string_length(aud) == want && memcmp(json_string_value(aud), audience, want) == 0)
            return 0;
    } else if (json_is_array(aud) && json_array_size(aud) > 0) {
        bool found = false;
        size_t i;
        const json_t *v;
        json_array_foreach(aud, i, v)
        {
            if (!json_is_string(v))
                return refuse(-EPERM, reason, reason_len,
                              "the token's aud array holds a value that is not a string (at "
                              "index %zu)",
                              i);
            if (json_string_length(v) == want && memcmp(json_string_value(v), audience, want) == 0)
                found = true;
        }
        if (found)
            return 0;
    } else {
        return refuse(-EPERM, reason, reason_len,
                      "the token's aud claim is neither a string nor a non-empty array of "
                      "strings");
    }
    aud_describe(aud, desc, sizeof(desc));
    return refuse(-EPERM, reason, reason_len, "the token is for %s, not '%s'", desc,
                  text_quote(q, audience, want));
}

static int claims_times(const json_t *claims, int64_t now, int64_t *ret_exp, int64_t *ret_iat,
                        char *reason, size_t reason_len)
{
    const json_t *expv = json_object_get(claims, "exp");
    const json_t *nbfv = json_object_get(claims, "nbf");
    const json_t *iatv = json_object_get(claims, "iat");
    int64_t exp, nbf, iat = 0;

    if (!expv)
        return refuse(-EPERM, reason, reason_len,
                      "the token has no exp claim; sockid accepts only tokens that expire");
    if (!numeric_date(expv, false, &exp))
        return refuse(-EPERM, reason, reason_len,
                      "the token's exp is not a NumericDate (a number of seconds since the epoch, "
                      "within 2^53)");
    if (now >= exp)
        return refuse(-EPERM, reason, reason_len,
                      "the token expired %lld seconds ago (exp %lld, now %lld); fetch a new one",
                      span(now, exp), (long long)exp, (long long)now);
    if (nbfv) {
        if (!numeric_date(nbfv, true, &nbf))
            return refuse(-EPERM, reason, reason_len,
                          "the token's nbf is not a NumericDate (a number of seconds since the "
                          "epoch, within 2^53)");
        if (nbf > now)
            return refuse(-EPERM, reason, reason_len,
                          "the token is not valid before nbf %lld, %lld seconds from now; check "
                          "the clocks",
                          (long long)nbf, span(nbf, now));
    }
    if (iatv) {
        if (!numeric_date(iatv, true, &iat))
            return refuse(-EPERM, reason, reason_len,
                          "the token's iat is not a NumericDate (a number of seconds since the "
                          "epoch, within 2^53)");
        if (span(iat, now) > TOKEN_IAT_SKEW)
            return refuse(-EPERM, reason, reason_len,
                          "the token was issued %lld seconds in the future (iat %lld, more than "
                          "%d s of clock skew); check the clocks",
                          span(iat, now), (long long)iat, TOKEN_IAT_SKEW);
    }
    *ret_exp = exp;
    *ret_iat = iat;
    return 0;
}

static int claims_check(const json_t *claims, const char *audience, const char *trust_domain,
                        int64_t now, int64_t *ret_exp, int64_t *ret_iat, char *reason,
                        size_t reason_len)
{
    char err[256];
    char q[TEXT_QUOTE_BUF];
    const json_t *sub = json_object_get(claims, "sub");
    int r;

    if (!sub)
        return refuse(-EPERM, reason, reason_len, "the token has no sub claim (its SPIFFE ID)");
    if (!json_is_string(sub))
        return refuse(-EPERM, reason, reason_len,
                      "the token's sub is not a string; it must be a SPIFFE ID");
    if (!entries_spiffe_id_valid(json_string_value(sub), json_string_length(sub), trust_domain, err,
                                 sizeof(err)))
        return refuse(-EPERM, reason, reason_len,
                      "the token's sub '%s' is not a SPIFFE ID of trust domain '%s': %s",
                      text_quote(q, json_string_value(sub), json_string_length(sub)), trust_domain,
                      err);
    r = claims_aud(claims, audience, reason, reason_len);
    if (r < 0)
        return r;
    return claims_times(claims, now, ret_exp, ret_iat, reason, reason_len);
}

/* A JSON object from a decoded part, without duplicate keys. */
static int part_json(const char *what, const uint8_t *buf, size_t len, json_t **ret, char *reason,
                     size_t reason_len)
{
    char q[TEXT_QUOTE_BUF];
    json_error_t e;
    json_t *v = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &e);
    if (!v)
        return refuse(-EINVAL, reason, reason_len, "the %s is not valid JSON: %s", what,
                      text_quote(q, e.text, strlen(e.text)));
    if (!json_is_object(v)) {
        json_decref(v);
        return refuse(-EINVAL, reason, reason_len, "the %s is JSON but not an object", what);
    }
    *ret = v;
    return 0;
}

int token_validate(const struct keyset *ks, const char *token, size_t len, const char *audience,
                   const char *trust_domain, int64_t now, struct token_claims **ret, char *reason,
                   size_t reason_len)
{
    uint8_t *buf = NULL;
    json_t *header = NULL, *claims = NULL;
    struct token_claims *c = NULL;
    const struct key *key = NULL;
    size_t hlen, plen, slen;
    int64_t exp = 0, iat = 0;
    int r;

    if (reason && reason_len)
        reason[0] = '\0';
    if (!ks || !audience || !trust_domain || !ret || (!token && len > 0))
        return refuse(-EINVAL, reason, reason_len, "internal error: missing argument");
    if (len == 0)
        return refuse(-EINVAL, reason, reason_len, "the token is empty");
    if (len > TOKEN_MAX_LEN)
        return refuse(-EINVAL, reason, reason_len,
                      "the token is %zu bytes, more than the limit of %u", len, TOKEN_MAX_LEN);
    const char *nul = memchr(token, '\0', len);
    if (nul)
        return refuse(-EINVAL, reason, reason_len, "the token holds a NUL byte at byte %zu",
                      (size_t)(nul - token));
    if (token[0] == '{')
        return refuse(-EINVAL, reason, reason_len,
                      "JWS JSON serialization is not accepted; send the compact form "
                      "(header.payload.signature)");

    /* header.payload.signature: three parts, two dots. */
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    size_t parts = 1;
    for (size_t i = 0; i < len; i++)
        parts += token[i] == '.';
    if (parts == 5)
        return refuse(-EINVAL, reason, reason_len,
                      "the token has five parts: an encrypted JWE, which sockid does not accept");
    if (parts != 3)
        return refuse(-EINVAL, reason, reason_len,
                      "the token has %zu part%s; a compact JWS has exactly three "
                      "(header.payload.signature)",
                      parts, parts == 1 ? "" : "s");
    hlen = (size_t)(d1 - token);
    plen = (size_t)(d2 - d1 - 1);
    slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0)
        return refuse(-EINVAL, reason, reason_len, "the token's header part is empty");
    if (plen == 0)
        return refuse(-EINVAL, reason, reason_len, "the token's payload part is empty");

    /* One buffer for the three decoded parts; base64 only shrinks. */
    size_t hcap = hlen / 4 * 3 + 3, pcap = plen / 4 * 3 + 3, scap = slen / 4 * 3 + 3;
    buf = malloc(hcap + pcap + scap);
    if (!buf)
        return refuse(-ENOMEM, reason, reason_len, "out of memory");
    uint8_t *hbuf = buf, *pbuf = buf + hcap, *sig = buf + hcap + pcap;
    size_t hn, pn, sn = 0;
    r = part_decode("header", token, hlen, hbuf, hcap, &hn, reason, reason_len);
    if (r < 0)
        goto out;
    r = part_decode("payload", d1 + 1, plen, pbuf, pcap, &pn, reason, reason_len);
    if (r < 0)
        goto out;
    /* An empty signature is left for header_check, which names alg none. */
    r = part_decode("signature", d2 + 1, slen, sig, scap, &sn, reason, reason_len);
    if (r < 0)
        goto out;

    r = part_json("header", hbuf, hn, &header, reason, reason_len);
    if (r < 0)
        goto out;
    r = header_check(header, ks, &key, reason, reason_len);
    if (r < 0)
        goto out;
    if (sn != SIG_LEN) {
        r = refuse(-EINVAL, reason, reason_len,
                   sn ? "the signature is %zu bytes; an Ed25519 signature is 64"
                      : "the signature is empty (%zu bytes); an EdDSA token carries a 64-byte "
                        "signature",
                   sn);
        goto out;
    }
    /* Over the exact bytes received, before reading any claim. */
    if (crypto_sign_verify_detached(sig, (const uint8_t *)token, (size_t)(d2 - token),
                                    key->public_key) != 0) {
        r = refuse(-EPERM, reason, reason_len,
                   "the signature does not verify with key '%s': the token was altered after "
                   "signing, or signed by another key",
                   key->kid);
        goto out;
    }

    r = part_json("payload", pbuf, pn, &claims, reason, reason_len);
    if (r < 0)
        goto out;
    r = claims_check(claims, audience, trust_domain, now, &exp, &iat, reason, reason_len);
    if (r < 0)
        goto out;

    r = -ENOMEM;
    c = calloc(1, sizeof(*c));
    if (!c)
        goto out;
    c->sub = strdup(json_string_value(json_object_get(claims, "sub")));
    c->claims_json = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!c->sub || !c->claims_json) {
        (void)refuse(r, reason, reason_len, "out of memory");
        goto out;
    }
    memcpy(c->kid, key->kid, sizeof(c->kid));
    c->exp = exp;
    c->iat = iat;
    *ret = c;
    c = NULL;
    r = 0;
out:
    token_claims_free(c);
    json_decref(header);
    json_decref(claims);
    free(buf);
    return r;
}
