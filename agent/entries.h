/* Registration entries: the model, its validation, and matching.
 *
 * An entry says: a workload whose selectors include all of these selectors
 * may have this SPIFFE ID. Entries are immutable once built and shared,
 * reference-counted, between snapshots. A snapshot is an immutable set of
 * entries with an inverted index; matching reads one without locks and
 * without allocating. The registry publishes a new snapshot after each
 * change; readers pick it up at their next request, never waiting on a
 * writer. */
#ifndef SOCKID_ENTRIES_H
#define SOCKID_ENTRIES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "selector.h"

#define ENTRY_ID_LEN        32u /* lowercase hex of 16 random bytes */
#define ENTRY_MAX_SELECTORS 32u
#define ENTRY_MAX_AUDIENCES 16u
#define ENTRY_AUDIENCE_MAX  256u /* bytes per audience */
#define ENTRY_HINT_MAX      256u
#define SPIFFE_ID_MAX       2048u
#define TRUST_DOMAIN_MAX    255u
/* Identities one workload may hold; more matching entries is an error. */
#define ENTRIES_MATCH_MAX 256u
/* Entries one snapshot may hold (its index keeps an entry's number in 27
 * bits). */
#define ENTRIES_SNAPSHOT_MAX (1u << 27)

/* Laid out without holes (104 bytes): a load holds one per entry. */
struct entry {
    atomic_uint refs;
    uint32_t ttl; /* seconds */
    char id[ENTRY_ID_LEN + 1];
    uint32_t n_audiences;
    char *spiffe_id;
    size_t n_selectors;
    char **selectors;   /* sorted bytewise, unique */
    char **audiences;   /* sorted, unique; none: any audience */
    char *hint;         /* NULL when none */
    int64_t created_at; /* unix seconds */
    uint64_t revision;
};

/* What an operator asks for; validated by entry_new. */
struct entry_spec {
    const char *spiffe_id;
    size_t spiffe_id_len;
    const char *const *selectors; /* each with its length in selector_lens */
    const size_t *selector_lens;
    size_t n_selectors;
    uint32_t ttl; /* 0: default_ttl */
    const char *const *audiences;
    const size_t *audience_lens;
    size_t n_audiences;
    const char *hint; /* NULL or hint_len bytes */
    size_t hint_len;
};

/* Validation, with a message that names the problem and the limit. Lengths
 * are explicit: embedded NULs are invalid. */
bool entries_trust_domain_valid(const char *td, size_t len, char *err, size_t err_len);
/* trust_domain NULL accepts any valid trust domain. */
bool entries_spiffe_id_valid(const char *id, size_t len, const char *trust_domain, char *err,
                             size_t err_len);
bool entries_audience_valid(const char *aud, size_t len, char *err, size_t err_len);
bool entries_id_valid(const char *id, size_t len);

/* Builds a new entry (refs = 1) from spec: validates every field (SPIFFE ID
 * in trust_domain; 1 to 32 valid selectors, duplicates folded; ttl 0 means
 * default_ttl, else 1..max_ttl; 0 to 16 audiences; hint printable UTF-8 up
 * to 256 bytes), draws a random id, sets created_at = now, revision = 1.
 * Returns 0, -EINVAL with err set, or -ENOMEM. */
__attribute__((warn_unused_result)) int entry_new(const struct entry_spec *spec,
                                                  const char *trust_domain, uint32_t default_ttl,
                                                  uint32_t max_ttl, struct entry **ret, char *err,
                                                  size_t err_len);

/* Builds an entry from stored fields without drawing id or time (the store
 * uses it when loading). Validates like entry_new except the trust domain
 * (an entry stays loadable if the trust domain is reconfigured). */
__attribute__((warn_unused_result)) int
entry_from_parts(const char *id, const char *spiffe_id, const char *const *selectors,
                 size_t n_selectors, uint32_t ttl, const char *const *audiences, size_t n_audiences,
                 const char *hint, int64_t created_at, uint64_t revision, struct entry **ret,
                 char *err, size_t err_len);

/* An entry as the store keeps it: each string with its length, and the
 * selectors and the audiences each as one block of strings that each end
 * with a NUL ("a\0b\0"; an empty block: none). */
struct entry_stored {
    const char *id;
    size_t id_len;
    const char *spiffe_id;
    size_t spiffe_id_len;
    const char *selectors; /* each may be NULL when its length is 0 */
    size_t selectors_len;
    const char *audiences;
    size_t audiences_len;
    const char *hint; /* NULL: none */
    size_t hint_len;
    uint32_t ttl;
    int64_t created_at;
    uint64_t revision;
};

/* entry_from_parts for a stored entry: validates it the same way, and
 * sorts nothing that is sorted already. */
__attribute__((warn_unused_result)) int
entry_from_stored(const struct entry_stored *in, struct entry **ret, char *err, size_t err_len);

struct entry *entry_ref(struct entry *e);
/* Drops a reference; frees at zero. Accepts NULL, returns NULL. */
struct entry *entry_unref(struct entry *e);

/* Entries sort oldest first, id as tie-break. */
int entry_cmp(const struct entry *a, const struct entry *b);

/* Same SPIFFE ID and the same selector set. */
bool entry_same_identity(const struct entry *a, const struct entry *b);

/* Sorts n entries in the stable order (entry_cmp): O(n) when they are in
 * it already. 0; -EINVAL for a NULL or an entry entry_new and entry_from_*
 * did not make; -ENOMEM. */
__attribute__((warn_unused_result)) int entries_sort(struct entry **v, size_t n);

/* --- snapshots ---------------------------------------------------------- */

struct entries_snapshot;

/* Builds a snapshot over n entries given in any order (taking a reference
 * to each), sorted in the stable order (one pass when they are in it
 * already), with its inverted index. -EEXIST when two have the same id. */
__attribute__((warn_unused_result)) int entries_snapshot_new(struct entry *const *entries, size_t n,
                                                             struct entries_snapshot **ret);

/* A snapshot built from entries handed over one at a time, as a load reads
 * them: what the snapshot needs of each entry is taken as it is added, on
 * the adding thread (see entries_build.c). entries_snapshot_new is a
 * builder fed an array. */
struct entries_builder;

__attribute__((warn_unused_result)) int entries_builder_new(struct entries_builder **ret);
/* Adds e, taking the caller's reference to it whatever the outcome. 0;
 * -EINVAL for an entry that entry_new or entry_from_* did not make; -E2BIG
 * past ENTRIES_SNAPSHOT_MAX entries; -ENOMEM. */
__attribute__((warn_unused_result)) int entries_builder_add(struct entries_builder *b,
                                                            struct entry *e);
/* The snapshot of the entries added, as entries_snapshot_new would build
 * it (-EEXIST when two have the same id). Frees b whatever the outcome. */
__attribute__((warn_unused_result)) int entries_builder_finish(struct entries_builder *b,
                                                               struct entries_snapshot **ret);
/* Drops the entries added and b; accepts NULL, returns NULL. */
struct entries_builder *entries_builder_free(struct entries_builder *b);

/* A snapshot equal to base plus add (may be NULL) minus the entry with id
 * remove_id (may be NULL). Entries are shared with base, not copied.
 * -ENOENT when remove_id is not in base, -EEXIST when add's id is (unless it
 * is also remove_id: a replacement). */
__attribute__((warn_unused_result)) int entries_snapshot_derive(const struct entries_snapshot *base,
                                                                struct entry *add,
                                                                const char *remove_id,
                                                                struct entries_snapshot **ret);

struct entries_snapshot *entries_snapshot_ref(struct entries_snapshot *s);
struct entries_snapshot *entries_snapshot_unref(struct entries_snapshot *s);

size_t entries_snapshot_count(const struct entries_snapshot *s);
/* The i-th entry in the stable order. */
const struct entry *entries_snapshot_at(const struct entries_snapshot *s, size_t i);
const struct entry *entries_snapshot_find(const struct entries_snapshot *s, const char *id);
/* An entry with the same SPIFFE ID and selector set as e, or NULL. */
const struct entry *entries_snapshot_find_identity(const struct entries_snapshot *s,
                                                   const struct entry *e);

/* Every entry whose selectors are all in workload (sorted, unique: see
 * selector_set_sort), in the stable order, into out (cap entries). Cost
 * grows with the workload's selectors and their postings, not with the
 * number of entries; no allocation. Returns the number of matches, or
 * -E2BIG when more than cap entries match. */
__attribute__((warn_unused_result)) int entries_match(const struct entries_snapshot *s,
                                                      const struct selector_set *workload,
                                                      const struct entry **out, size_t cap);

/* --- publication --------------------------------------------------------- */

/* The current snapshot, shared by all event loops. */
struct entries_registry;

/* On success the registry takes the caller's reference to initial (NULL: an
 * empty snapshot); on failure the caller keeps it. */
__attribute__((warn_unused_result)) int entries_registry_new(struct entries_snapshot *initial,
                                                             struct entries_registry **ret);
struct entries_registry *entries_registry_free(struct entries_registry *r);

/* Replaces the current snapshot (taking the caller's reference). */
void entries_registry_publish(struct entries_registry *r, struct entries_snapshot *s);

/* A reader's (one per event loop) cached reference. */
struct entries_reader {
    uint64_t generation;
    struct entries_snapshot *snapshot;
};

/* The current snapshot for a reader: one atomic load when nothing changed;
 * takes the registry's lock only to pick up a new snapshot. */
const struct entries_snapshot *entries_reader_get(struct entries_registry *r,
                                                  struct entries_reader *reader);
void entries_reader_release(struct entries_reader *reader);

#endif
