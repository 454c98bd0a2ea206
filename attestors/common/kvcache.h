/* kvcache: a small, fixed-size map from a 64-bit key to a short byte string,
 * for the caches the attestors keep across requests (the cgroup id checks of
 * cgread.c, the user and group names of the unix attestor).
 *
 * attest() runs on every event loop at once, and DESIGN §5 allows no lock
 * that every request takes. So readers take none: each slot is a seqlock
 * (an even sequence number while stable, odd while a writer fills it), a
 * reader copies the slot and keeps the copy only if the sequence did not
 * move meanwhile. A writer claims the slot by moving the sequence to odd
 * with a compare-and-swap, and skips the store if another writer holds it:
 * a cache may always forget. Every shared word is an atomic, so the copy
 * is race-free in C11's sense (and under ThreadSanitizer), not only in
 * practice.
 *
 * Bounded by construction: the slots are allocated once and the map is
 * direct-mapped (a key lives only in the slot its hash names; a new key
 * evicts whatever was there). Each entry has an expiry time, compared
 * with the caller's clock, so tests can drive time. */
#ifndef SOCKID_KVCACHE_H
#define SOCKID_KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest value a slot holds; longer values are not cached. */
#define KVCACHE_VALUE_MAX 256u
/* Most slots one cache may have. */
#define KVCACHE_SLOTS_MAX 4096u
/* An expiry that never comes. */
#define KVCACHE_NEVER UINT64_MAX

struct kvcache;

/* A cache of slots entries (a power of two, 1 to KVCACHE_SLOTS_MAX) whose
 * values are at most value_max bytes (1 to KVCACHE_VALUE_MAX). Returns 0,
 * -EINVAL or -ENOMEM. */
__attribute__((warn_unused_result)) int kvcache_new(size_t slots, size_t value_max,
                                                    struct kvcache **ret);

struct kvcache *kvcache_free(struct kvcache *c);

/* Copies the value stored for key into buf (cap bytes, at least value_max
 * + 1) with a NUL after it, and its length into *ret_len, when the cache
 * holds key and now is before its expiry. Returns false otherwise (absent,
 * expired, or being written at this moment). Never blocks. */
bool kvcache_get(const struct kvcache *c, uint64_t key, uint64_t now, char *buf, size_t cap,
                 size_t *ret_len);

/* Stores value (len bytes, len <= value_max; may be 0) for key until
 * expires, evicting what the key's slot held. Does nothing when len is too
 * large or another thread is writing that slot. Never blocks. */
void kvcache_put(struct kvcache *c, uint64_t key, const char *value, size_t len, uint64_t expires);

#endif /* SOCKID_KVCACHE_H */
