/* Reading sockid's tokens and bundles in the integration tests, with
 * jansson and libsodium directly rather than through the agent's own token
 * code, so that a test checks the agent's output against an independent
 * reading of the formats (RFC 7515 compact JWS, RFC 7517 JWKS, RFC 7638
 * thumbprints). */
#ifndef SOCKID_IT_JWT_H
#define SOCKID_IT_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define JWT_KID_MAX 64

/* A compact token split and decoded: the header's and the payload's JSON
 * text exactly as signed, the parsed payload, and the header's kid. */
struct jwt {
    char *header_text;
    char *payload_text;
    json_t *payload;
    char kid[JWT_KID_MAX];
    uint8_t sig[64];
    size_t sig_len;
    size_t signed_len; /* bytes of "HEADER.PAYLOAD" */
};

/* Decodes a token (len bytes). Returns false, with why set, when it is not
 * three base64url parts of which the first two are JSON objects and the
 * header carries a string kid. */
bool jwt_decode(const char *token, size_t len, struct jwt *ret, char *why, size_t why_len);
void jwt_free(struct jwt *t);

/* The payload's integer claim name, or false when missing or not one. */
bool jwt_int_claim(const struct jwt *t, const char *name, int64_t *ret);
/* The payload's string claim name (borrowed), or NULL. */
const char *jwt_str_claim(const struct jwt *t, const char *name);

/* The kids of a JWKS document, in order: how many (at most max), or -1 when
 * it is not a JSON object with a "keys" array of objects with string kids.
 * Every key must be an Ed25519 OKP key whose kid is the RFC 7638 thumbprint
 * of its x, with "use" "sig" if present and no "alg"; otherwise -1 and
 * why. */
int jwks_kids(const char *jwks, size_t len, char kids[][JWT_KID_MAX], size_t max, char *why,
              size_t why_len);

bool jwks_has_kid(const char *jwks, size_t len, const char *kid);

/* Verifies token's Ed25519 signature with the key of its kid in jwks. */
bool jwt_verify_with_jwks(const char *token, size_t len, const char *jwks, size_t jwks_len,
                          char *why, size_t why_len);

#endif
