/* Signing keys: Ed25519 key pairs in the data directory, rotated on a
 * schedule, published as a JWKS.
 *
 * Layout: DATA_DIR/keys/ (mode 0700) holds one file per key, KID.key (mode
 * 0600, written to a temporary file, fsynced, renamed, directory fsynced).
 * A key is active (signs new tokens) or retired (only verifies tokens it
 * signed before, until drop_after, then removed from memory and disk). The
 * secret half lives only in sodium_malloc memory (guarded, never swapped
 * out, excluded from core dumps) and is wiped when freed.
 *
 * Keys are owned by one struct keys; signing and the bundle read an
 * immutable keyset published like the entry snapshots, so event loops never
 * wait on a rotation. */
#ifndef SOCKID_KEYS_H
#define SOCKID_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_KID_LEN 43u /* base64url of a SHA-256: the RFC 7638 thumbprint */
#define KEYS_MAX     16u /* keys kept at once (one active, the rest retired) */

struct key {
    char kid[KEYS_KID_LEN + 1];
    uint8_t public_key[32];
    uint8_t *secret_key; /* 64 bytes in sodium_malloc memory; NULL when only
                            the public half is known */
    int64_t created_at;  /* unix seconds */
    int64_t retired_at;  /* 0 while active */
    int64_t drop_after;  /* retired keys: no token it signed lives past this */
};

/* An immutable set of keys: the active one and the retired ones. */
struct keyset;

/* A keyset holding copies of keys[0..n) (secret halves copied into fresh
 * sodium_malloc memory); the first non-retired one is active. For the keys
 * module and for tests. */
__attribute__((warn_unused_result)) int keyset_new(const struct key *const *keys, size_t n,
                                                   struct keyset **ret);

/* A key from a 32-byte seed (crypto_sign_seed_keypair), kid computed.
 * Free with key_wipe(). */
__attribute__((warn_unused_result)) int key_from_seed(const uint8_t seed[static 32],
                                                      int64_t created_at, struct key *ret);
/* Wipes and frees the secret half; safe on a zeroed key. */
void key_wipe(struct key *key);

struct keyset *keyset_ref(struct keyset *ks);
struct keyset *keyset_unref(struct keyset *ks);
const struct key *keyset_active(const struct keyset *ks);
const struct key *keyset_find(const struct keyset *ks, const char *kid);
size_t keyset_count(const struct keyset *ks);
const struct key *keyset_at(const struct keyset *ks, size_t i);
/* The JWKS of every key in the set, as compact JSON (owned by the set). */
const char *keyset_jwks(const struct keyset *ks);

struct keys;

/* Loads DIR/keys (creating it, and a first key when there is none).
 * Refuses, naming the file and the fix: a key file or the directory
 * readable or writable by group or others, or owned by another user; a
 * malformed key file. Retired keys past drop_after are removed. */
__attribute__((warn_unused_result)) int keys_open(const char *data_dir, int64_t now,
                                                  struct keys **ret, char *err, size_t err_len);
struct keys *keys_close(struct keys *k);

/* The current keyset (a new reference). */
struct keyset *keys_current(struct keys *k);

/* An event loop's cached reference to the current keyset: one atomic load
 * when nothing changed, the keys' lock only to pick up a new set. */
struct keys_reader {
    uint64_t generation;
    struct keyset *keyset;
};
const struct keyset *keys_reader_get(struct keys *k, struct keys_reader *reader);
void keys_reader_release(struct keys_reader *reader);

/* Retires the active key and makes a new one active, durably. The retired
 * key's drop_after is now + max_token_ttl. */
__attribute__((warn_unused_result)) int
keys_rotate(struct keys *k, int64_t now, uint32_t max_token_ttl, char *err, size_t err_len);

/* Rotates if the active key is older than rotation_s, and drops retired
 * keys past drop_after. Returns 1 when the keyset changed, 0 when not, or a
 * negative errno. Called periodically by the agent. */
__attribute__((warn_unused_result)) int keys_maintain(struct keys *k, int64_t now,
                                                      uint32_t rotation_s, uint32_t max_token_ttl,
                                                      char *err, size_t err_len);

/* Signs msg with key's secret half: Ed25519, crypto_sign_detached. */
__attribute__((warn_unused_result)) int keys_sign(const struct key *key, const uint8_t *msg,
                                                  size_t len, uint8_t sig[static 64]);

/* The RFC 7638 thumbprint of an Ed25519 public key's JWK
 * ({"crv":"Ed25519","kty":"OKP","x":...}), base64url without padding. */
void keys_thumbprint(const uint8_t public_key[static 32], char kid[static KEYS_KID_LEN + 1]);

#endif
