/* Identity tokens: JWTs in compact form, signed with Ed25519 (DESIGN §2
 * "Tokens and keys").
 *
 *   header  {"alg":"EdDSA","kid":KID,"typ":"JWT"}
 *   claims  {"sub":SPIFFE_ID,"aud":[...] or "aud","iat":N,"exp":N,"jti":RANDOM}
 *
 * JSON is built and parsed with jansson; base64url is libsodium's URL-safe
 * variant without padding. Validation accepts only EdDSA with a key of the
 * given keyset, and refuses everything DESIGN §2 lists, each with a reason a
 * person can act on. */
#ifndef SOCKID_TOKEN_H
#define SOCKID_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"

#define TOKEN_MAX_AUDIENCES 16u
#define TOKEN_AUDIENCE_MAX  256u
#define TOKEN_MAX_LEN       16384u /* a token longer than this is refused unread */

/* Validates one requested audience: 1..256 bytes of printable ASCII without
 * spaces. */
bool token_audience_valid(const char *aud, size_t len, char *err, size_t err_len);

/* Signs a token for sub and the n audiences (n >= 1; "aud" is a string when
 * n == 1, an array otherwise), issued at iat, expiring at exp, with jti from
 * 16 random bytes (jti_seed; NULL draws them). Returns 0 and a malloc'd
 * NUL-terminated token in *ret, or a negative errno. */
__attribute__((warn_unused_result)) int token_sign(const struct key *key, const char *sub,
                                                   const char *const *aud, size_t n_aud,
                                                   int64_t iat, int64_t exp,
                                                   const uint8_t *jti_seed, char **ret);

struct token_claims {
    char *sub;         /* the SPIFFE ID */
    char *claims_json; /* the whole payload, compact JSON */
    char kid[KEYS_KID_LEN + 1];
    int64_t exp;
    int64_t iat; /* 0 when absent */
};

struct token_claims *token_claims_free(struct token_claims *c);

/* Validates token (len bytes) for audience at time now, against the keys of
 * ks and the trust domain. Returns 0 and the claims, or -EINVAL (malformed),
 * -EPERM (well-formed but not valid: signature, key, alg, aud, time, sub)
 * with a reason. */
__attribute__((warn_unused_result)) int token_validate(const struct keyset *ks, const char *token,
                                                       size_t len, const char *audience,
                                                       const char *trust_domain, int64_t now,
                                                       struct token_claims **ret, char *reason,
                                                       size_t reason_len);

/* A bounded LRU cache of signed tokens, keyed by (entry id, sorted audience
 * set, kid). One per event loop: not thread-safe, needs no lock. */
struct token_cache;

__attribute__((warn_unused_result)) int token_cache_new(size_t capacity, struct token_cache **ret);
struct token_cache *token_cache_free(struct token_cache *c);

/* A cached token still worth handing out at now (more than half its
 * lifetime left), or NULL. aud_key is the sorted audiences joined by '\n'.
 * The pointer is valid until the next put, retain or free on c. */
const char *token_cache_get(struct token_cache *c, const char *entry_id, const char *aud_key,
                            const char *kid, int64_t now, int64_t *ret_exp);

/* Stores a copy of token; evicts the least recently used when full.
 * Returns 0, -EINVAL or -ENOMEM; callers may ignore a failure, which only
 * costs a later request a signature. */
int token_cache_put(struct token_cache *c, const char *entry_id, const char *aud_key,
                    const char *kid, const char *token, int64_t iat, int64_t exp);

/* Keeps only the tokens for which keep() says true: an event loop calls it
 * when it picks up a new entry snapshot or keyset, to evict the tokens of
 * deleted entries and of keys no longer active. */
void token_cache_retain(struct token_cache *c,
                        bool (*keep)(void *ctx, const char *entry_id, const char *kid), void *ctx);

size_t token_cache_count(const struct token_cache *c);

#endif
