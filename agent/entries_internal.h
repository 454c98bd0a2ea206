/* Private to the entries module's files: entries.c (the entry model),
 * entries_order.c (the stable and the id order), entries_build.c
 * (snapshots of many entries) and entries_index.c (the index, matching,
 * publication). Not part of the module's interface (entries.h). */
#ifndef SOCKID_ENTRIES_INTERNAL_H
#define SOCKID_ENTRIES_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct entry;
struct entries_snapshot;

/* Initializes libsodium (idempotent, thread-safe): 0, or -EIO. Both entry
 * ids and snapshot hash keys are drawn from its random generator. */
__attribute__((warn_unused_result)) int entries_sodium_ready(void);

/* Whether e's id is one (entries_id_valid), as every entry_new and
 * entry_from_* makes it: the orders and the index rely on it, so a
 * hand-made entry is refused. */
bool entry_id_ok(const struct entry *e);

/* --- orders (entries_order.c) --------------------------------------------- */

/* What the orders compare of an entry, gathered in one read of it. */
struct order_item {
    int64_t created_at;
    uint64_t id_hi, id_lo; /* the id's characters 0..7 and 8..15, big endian,
                              so that they compare as the strings do */
    uint32_t id_digest;    /* the value of its first eight hex digits */
};

void entries_order_item(const struct entry *e, struct order_item *ret);

/* The stable order (by_id false) or the id order of n entries, from their
 * items; v (the entries) is read only where items tie. ret[k] is the index
 * of the k-th. 0; -EEXIST when two compare equal (ret holds an order all
 * the same); -ENOMEM. */
__attribute__((warn_unused_result)) int entries_order(const struct order_item *items,
                                                      struct entry *const *v, size_t n, bool by_id,
                                                      uint32_t *ret);

/* --- the index (entries_index.c) ------------------------------------------ */

#define ENTRIES_KEY_LEN 16u

/* A selector's hash in a snapshot's index, under its key. */
uint32_t entries_selector_hash(const unsigned char key[static ENTRIES_KEY_LEN], const char *s,
                               size_t len);

/* Indexes n entries into a new snapshot: v in the stable order (one
 * reference each), by_id (indexes into v in id order), ent_off (n + 1
 * offsets: entry i's selectors' hashes are hashes[ent_off[i] ..
 * ent_off[i + 1]), in the order of its strings), hashes under key. Takes
 * v, by_id, ent_off and the references whatever the outcome; not hashes. */
__attribute__((warn_unused_result)) int
entries_snapshot_index(struct entry **v, uint32_t *by_id, uint32_t *ent_off, const uint32_t *hashes,
                       size_t n, const unsigned char key[static ENTRIES_KEY_LEN],
                       struct entries_snapshot **ret);

#endif
