/* Registration entries: snapshots with an inverted index, matching, and
 * publication (see entries.h).
 *
 * Separate from entries.c, which validates and builds entries, and from
 * entries_build.c and entries_order.c, which gather and order a new
 * snapshot's entries: everything here works on entries already built,
 * through entries.h, and on the snapshot and registry structures, which no
 * other file sees.
 *
 * Index. Every distinct selector string of a snapshot is interned into an
 * open-addressing table keyed by SipHash-2-4 (crypto_shorthash) under a
 * random per-snapshot key, so selectors a workload chooses (its executable
 * path, its cgroup names) cannot be crafted to collide. The table is at
 * most three quarters full and probed Robin Hood style (see struct slot),
 * and a selector's string is reached through the entry that holds it, so
 * that 100,000 entries cost about 60 bytes each in index. Each entry is listed
 * under exactly one of its selectors, the rarest one (held by the fewest
 * entries), and keeps its selectors as interned ids. To match, the workload's
 * selectors are looked up (one hash each), the ids found are sorted, and only
 * the entries listed under those ids are candidates; a candidate matches when
 * each of its ids is among the workload's (binary search). An entry whose
 * rarest selector the workload lacks cannot match, so it is never visited:
 * the cost is the workload's selectors plus their postings, whatever the
 * number of entries. Postings are in the stable order; matches from several
 * postings are merged by binary insertion into the caller's array, so
 * matching allocates nothing. Looking for an entry with a given SPIFFE ID
 * and selector set walks the postings of those selectors (the entry is
 * listed under one of them): at most every entry once, as the derive that
 * follows a create costs anyway. A derived snapshot splices its base's two
 * orders (stable and by id) in O(n) and rebuilds the index in O(n).
 *
 * Publication. The registry holds the current snapshot under a mutex and an
 * atomic generation that the publisher bumps inside the same critical
 * section. A reader caches (generation, snapshot), both read under the
 * mutex, and on each get compares its generation with one relaxed load: the
 * fast path touches only the reader's own snapshot, to which it holds a
 * reference, so it needs no ordering beyond coherence (a publish that
 * happens before a get is seen by it). The snapshot's contents are made
 * visible to a reader by the mutex, which it takes whenever the generation
 * differs. Reference counts are incremented relaxed and decremented with
 * acq_rel, so that whoever frees sees every other holder's last use (the
 * same cost as release plus an acquire fence on the freeing path, and
 * ThreadSanitizer understands it). */
#include "entries.h"
#include "entries_internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NONE UINT32_MAX

/* A selector's string is found through the entry that interned it: the
 * entry's index in the stable order, and the selector's position among
 * its own. */
#define REF_POS_BITS 5
_Static_assert(ENTRY_MAX_SELECTORS <= 1u << REF_POS_BITS, "a position fits in REF_POS_BITS");
_Static_assert(ENTRIES_SNAPSHOT_MAX <= 1u << (32 - REF_POS_BITS), "an index fits beside it");
_Static_assert(ENTRIES_KEY_LEN == crypto_shorthash_KEYBYTES, "the index hashes with SipHash");

/* --- snapshots ----------------------------------------------------------- */

/* An open-addressing slot: the low half of the selector's hash (it also
 * picks the slot the selector would like), and its id plus one (0:
 * empty). Robin Hood linear probing: a selector never sits further from
 * its own slot than one it passed, so a search for a selector that is
 * not there stops as soon as it meets one closer to home than itself;
 * that keeps searches short with tables three quarters full. */
struct slot {
    uint32_t hash;
    uint32_t idx1;
};

struct entries_snapshot {
    atomic_uint refs;
    size_t n;
    struct entry **entries; /* stable order; one reference each */
    uint32_t *by_id;        /* indexes into entries, sorted by id */
    unsigned char key[ENTRIES_KEY_LEN];

    /* Distinct selectors, interned: sel_ref[id] says where the string is
     * (see REF_POS_BITS). */
    size_t n_sels;
    uint32_t *sel_ref;
    struct slot *sel_table;
    size_t sel_slots;

    /* Entry i's selectors as interned ids: ent_sels[ent_off[i] ..
     * ent_off[i + 1]), in the order of its strings. */
    uint32_t *ent_off;
    uint32_t *ent_sels;

    /* Entries listed under their rarest selector: post[post_off[sel] ..
     * post_off[sel + 1]), in the stable order. */
    uint32_t *post_off;
    uint32_t *post;
};

uint32_t entries_selector_hash(const unsigned char key[static ENTRIES_KEY_LEN], const char *s,
                               size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint32_t h;
    (void)crypto_shorthash(out, (const unsigned char *)s, len, key);
    memcpy(&h, out, sizeof(h));
    return h;
}

/* Slots for m selectors: three quarters full at most. */
static size_t table_slots(size_t m)
{
    return m + m / 3 + 1;
}

/* The slot a hash would like: its position scaled to the table, which
 * need not be a power of two. */
static size_t slot_home(uint32_t hash, size_t slots)
{
    return (size_t)(((uint64_t)hash * slots) >> 32);
}

/* How far slot i is from home, going forward with wrap-around. */
static size_t slot_dist(size_t home, size_t i, size_t slots)
{
    return i >= home ? i - home : i + slots - home;
}

static const char *sel_string(const struct entries_snapshot *s, uint32_t id)
{
    uint32_t ref = s->sel_ref[id];
    return s->entries[ref >> REF_POS_BITS]->selectors[ref & ((1u << REF_POS_BITS) - 1)];
}

/* The id of selector p (len bytes, NUL-terminated), or NONE. A search for
 * one that is not there stops at an empty slot or at a selector closer to
 * its own slot than p would be: p would sit there, had it been put in. */
static uint32_t sel_lookup(const struct entries_snapshot *s, const char *p, size_t len)
{
    uint32_t hash = entries_selector_hash(s->key, p, len);
    size_t i = slot_home(hash, s->sel_slots);
    for (size_t d = 0;; d++) {
        const struct slot *sl = &s->sel_table[i];
        if (!sl->idx1)
            return NONE;
        if (sl->hash == hash) {
            if (strcmp(sel_string(s, sl->idx1 - 1), p) == 0)
                return sl->idx1 - 1;
        } else if (slot_dist(slot_home(sl->hash, s->sel_slots), i, s->sel_slots) < d) {
            return NONE;
        }
        i = i + 1 == s->sel_slots ? 0 : i + 1;
    }
}

/* Puts a slot in at i, where a search for it stopped, moving the ones
 * closer to home than it along. */
static void table_place(struct slot *table, size_t slots, size_t i, struct slot x)
{
    for (size_t d = slot_dist(slot_home(x.hash, slots), i, slots);; d++) {
        struct slot *sl = &table[i];
        if (!sl->idx1) {
            *sl = x;
            return;
        }
        size_t sd = slot_dist(slot_home(sl->hash, slots), i, slots);
        if (sd < d) {
            struct slot t = *sl;
            *sl = x;
            x = t;
            d = sd;
        }
        i = i + 1 == slots ? 0 : i + 1;
    }
}

static void table_insert(struct slot *table, size_t slots, struct slot x)
{
    table_place(table, slots, slot_home(x.hash, slots), x);
}

/* Interns selector pos of entry idx, whose hash is known: its string is
 * read only to tell it from a selector with the same hash. */
static uint32_t sel_intern(struct entries_snapshot *s, uint32_t idx, uint32_t pos, uint32_t hash)
{
    const char *p = NULL;
    size_t i = slot_home(hash, s->sel_slots);
    for (size_t d = 0;; d++) {
        const struct slot *sl = &s->sel_table[i];
        if (!sl->idx1 || slot_dist(slot_home(sl->hash, s->sel_slots), i, s->sel_slots) < d)
            break;
        if (sl->hash == hash) {
            p = p ? p : s->entries[idx]->selectors[pos];
            if (strcmp(sel_string(s, sl->idx1 - 1), p) == 0)
                return sl->idx1 - 1;
        }
        i = i + 1 == s->sel_slots ? 0 : i + 1;
    }
    uint32_t id = (uint32_t)s->n_sels++;
    s->sel_ref[id] = idx << REF_POS_BITS | pos;
    table_place(s->sel_table, s->sel_slots, i, (struct slot){hash, id + 1});
    return id;
}

/* Sizes the table for the selectors interned, when they were far fewer
 * than it was made for (selectors shared between entries): the slots keep
 * their hashes, so nothing is hashed again. */
static int sel_table_shrink(struct entries_snapshot *s)
{
    size_t slots = table_slots(s->n_sels);
    if (slots >= s->sel_slots / 2)
        return 0;
    struct slot *t = calloc(slots, sizeof(*t));
    if (!t)
        return -ENOMEM;
    for (size_t i = 0; i < s->sel_slots; i++)
        if (s->sel_table[i].idx1)
            table_insert(t, slots, s->sel_table[i]);
    free(s->sel_table);
    s->sel_table = t;
    s->sel_slots = slots;
    return 0;
}

static void snapshot_free(struct entries_snapshot *s)
{
    if (s->entries)
        for (size_t i = 0; i < s->n; i++)
            (void)entry_unref(s->entries[i]);
    free(s->entries);
    free(s->by_id);
    free(s->sel_ref);
    free(s->sel_table);
    free(s->ent_off);
    free(s->ent_sels);
    free(s->post_off);
    free(s->post);
    sodium_memzero(s->key, sizeof(s->key));
    free(s);
}

/* How far ahead interning fetches the table slot it will need. */
#define SNAPSHOT_PREFETCH 16

int entries_snapshot_index(struct entry **v, uint32_t *by_id, uint32_t *ent_off,
                           const uint32_t *hashes, size_t n,
                           const unsigned char key[static ENTRIES_KEY_LEN],
                           struct entries_snapshot **ret)
{
    int r = -ENOMEM;
    uint32_t *count = NULL, *rare = NULL;
    struct entries_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        for (size_t i = 0; i < n; i++)
            (void)entry_unref(v[i]);
        free(v);
        free(by_id);
        free(ent_off);
        return -ENOMEM;
    }
    atomic_init(&s->refs, 1);
    s->entries = v;
    s->by_id = by_id;
    s->ent_off = ent_off;
    s->n = n;
    memcpy(s->key, key, sizeof(s->key));
    size_t total = ent_off[n];
    if (n > ENTRIES_SNAPSHOT_MAX || total >= UINT32_MAX / 2) {
        r = -E2BIG;
        goto out;
    }

    size_t cap = total ? total : 1;
    s->sel_slots = table_slots(total);
    s->sel_ref = malloc(cap * sizeof(*s->sel_ref));
    s->sel_table = calloc(s->sel_slots, sizeof(*s->sel_table));
    s->ent_sels = malloc(cap * sizeof(*s->ent_sels));
    count = calloc(cap, sizeof(*count));
    if (!s->sel_ref || !s->sel_table || !s->ent_sels || !count)
        goto out;
    /* Interning reads the hashes and the table; a selector's string only
     * to tell it from another with the same hash. */
    for (size_t i = 0, k = 0; i < n; i++) {
        for (uint32_t j = 0; k < ent_off[i + 1]; j++, k++) {
            if (k + SNAPSHOT_PREFETCH < total)
                __builtin_prefetch(
                    &s->sel_table[slot_home(hashes[k + SNAPSHOT_PREFETCH], s->sel_slots)]);
            uint32_t id = sel_intern(s, (uint32_t)i, j, hashes[k]);
            s->ent_sels[k] = id;
            count[id]++;
        }
    }
    if (sel_table_shrink(s) < 0)
        goto out;

    /* Each entry goes under its rarest selector; count, once read, is
     * reused for the postings' fill positions. */
    s->post_off = calloc(s->n_sels + 1, sizeof(*s->post_off));
    s->post = malloc((n ? n : 1) * sizeof(*s->post));
    rare = malloc((n ? n : 1) * sizeof(*rare));
    if (!s->post_off || !s->post || !rare)
        goto out;
    for (size_t i = 0; i < n; i++) {
        uint32_t best = s->ent_sels[ent_off[i]];
        for (uint32_t j = ent_off[i] + 1; j < ent_off[i + 1]; j++)
            if (count[s->ent_sels[j]] < count[best])
                best = s->ent_sels[j];
        rare[i] = best;
        s->post_off[best + 1]++;
    }
    for (size_t i = 0; i < s->n_sels; i++)
        s->post_off[i + 1] += s->post_off[i];
    memcpy(count, s->post_off, s->n_sels * sizeof(*count));
    for (size_t i = 0; i < n; i++)
        s->post[count[rare[i]]++] = (uint32_t)i;
    *ret = s;
    s = NULL;
    r = 0;
out:
    free(count);
    free(rare);
    if (s)
        snapshot_free(s);
    return r;
}

/* Indexes v (n entries in the stable order) with by_id, hashing their
 * selectors under a new key. Takes v, by_id and the references. */
static int snapshot_index_hashing(struct entry **v, uint32_t *by_id, size_t n,
                                  struct entries_snapshot **ret)
{
    unsigned char key[ENTRIES_KEY_LEN];
    uint32_t *ent_off = malloc((n + 1) * sizeof(*ent_off));
    uint32_t *hashes = NULL;
    int r = entries_sodium_ready();
    if (r == 0 && !ent_off)
        r = -ENOMEM;
    if (r == 0) {
        ent_off[0] = 0;
        for (size_t i = 0; i < n; i++)
            ent_off[i + 1] = ent_off[i] + (uint32_t)v[i]->n_selectors;
        hashes = malloc((ent_off[n] ? ent_off[n] : 1) * sizeof(*hashes));
        if (!hashes)
            r = -ENOMEM;
    }
    if (r < 0) {
        for (size_t i = 0; i < n; i++)
            (void)entry_unref(v[i]);
        free(v);
        free(by_id);
        free(ent_off);
        return r;
    }
    randombytes_buf(key, sizeof(key));
    for (size_t i = 0, k = 0; i < n; i++)
        for (size_t j = 0; j < v[i]->n_selectors; j++, k++)
            hashes[k] = entries_selector_hash(key, v[i]->selectors[j], strlen(v[i]->selectors[j]));
    r = entries_snapshot_index(v, by_id, ent_off, hashes, n, key, ret);
    sodium_memzero(key, sizeof(key));
    free(hashes);
    return r;
}

/* Where x goes in v (n entries ordered by cmp). */
static size_t insert_at(struct entry *const *v, size_t n, const struct entry *x,
                        int (*cmp)(const struct entry *, const struct entry *))
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(v[mid], x) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Where the entry with this id is, or would go, in s's id order. */
static size_t by_id_at(const struct entries_snapshot *s, const char *id)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->entries[s->by_id[mid]]->id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int entries_snapshot_derive(const struct entries_snapshot *base, struct entry *add,
                            const char *remove_id, struct entries_snapshot **ret)
{
    const struct entry *gone = NULL;
    size_t base_n = base ? base->n : 0;

    if (!ret || (add && !entry_id_ok(add)))
        return -EINVAL;
    if (remove_id) {
        gone = entries_snapshot_find(base, remove_id);
        if (!gone)
            return -ENOENT;
    }
    if (add) {
        const struct entry *same = entries_snapshot_find(base, add->id);
        if (same && same != gone)
            return -EEXIST;
        if (add->n_selectors == 0 || add->n_selectors > ENTRY_MAX_SELECTORS)
            return -EINVAL;
    }
    size_t n = base_n - (gone ? 1 : 0) + (add ? 1 : 0);
    if (n > ENTRIES_SNAPSHOT_MAX)
        return -E2BIG;
    struct entry **v = malloc((n ? n : 1) * sizeof(*v));
    uint32_t *by_id = malloc((n ? n : 1) * sizeof(*by_id));
    if (!v || !by_id) {
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    /* The stable order: base's, without gone, with add at its place. Base
     * position i moves to i + shift(i). */
    size_t at = add ? insert_at(base_n ? base->entries : NULL, base_n, add, entry_cmp) : SIZE_MAX;
    size_t skip = gone ? insert_at(base->entries, base_n, gone, entry_cmp) : SIZE_MAX;
    size_t w = 0;
    for (size_t i = 0; i <= base_n; i++) {
        if (i == at)
            v[w++] = add;
        if (i < base_n && i != skip)
            v[w++] = base->entries[i];
    }
    /* The id order: base's, renumbered, without gone, with add at its
     * place. */
    size_t id_at = add ? (base_n ? by_id_at(base, add->id) : 0) : SIZE_MAX;
    size_t add_pos = add ? at - (skip < at ? 1 : 0) : 0;
    w = 0;
    for (size_t i = 0; i <= base_n; i++) {
        if (i == id_at)
            by_id[w++] = (uint32_t)add_pos;
        if (i == base_n)
            break;
        size_t p = base->by_id[i];
        if (p == skip)
            continue;
        by_id[w++] = (uint32_t)(p - (skip < p ? 1 : 0) + (at <= p ? 1 : 0));
    }
    for (size_t i = 0; i < n; i++)
        (void)entry_ref(v[i]);
    return snapshot_index_hashing(v, by_id, n, ret);
}

struct entries_snapshot *entries_snapshot_ref(struct entries_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

struct entries_snapshot *entries_snapshot_unref(struct entries_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        snapshot_free(s);
    }
    return NULL;
}

size_t entries_snapshot_count(const struct entries_snapshot *s)
{
    return s ? s->n : 0;
}

const struct entry *entries_snapshot_at(const struct entries_snapshot *s, size_t i)
{
    return s && i < s->n ? s->entries[i] : NULL;
}

const struct entry *entries_snapshot_find(const struct entries_snapshot *s, const char *id)
{
    if (!s || !id)
        return NULL;
    size_t at = by_id_at(s, id);
    if (at < s->n && strcmp(s->entries[s->by_id[at]]->id, id) == 0)
        return s->entries[s->by_id[at]];
    return NULL;
}

/* An entry with the same selector set is listed under one of them (its
 * rarest), so walking the postings of e's selectors visits it: at most
 * every entry once, as the derive that follows a create costs anyway. */
const struct entry *entries_snapshot_find_identity(const struct entries_snapshot *s,
                                                   const struct entry *e)
{
    uint32_t ids[ENTRY_MAX_SELECTORS];
    if (!s || !e || s->n == 0 || e->n_selectors == 0 || e->n_selectors > ENTRY_MAX_SELECTORS)
        return NULL;
    for (size_t i = 0; i < e->n_selectors; i++) {
        /* A selector no entry holds: no entry has this identity. */
        ids[i] = sel_lookup(s, e->selectors[i], strlen(e->selectors[i]));
        if (ids[i] == NONE)
            return NULL;
    }
    /* Both lists in the entries' string order, so equal sets are equal
     * lists. */
    for (size_t i = 0; i < e->n_selectors; i++) {
        for (uint32_t k = s->post_off[ids[i]]; k < s->post_off[ids[i] + 1]; k++) {
            uint32_t idx = s->post[k];
            uint32_t lo = s->ent_off[idx];
            if (s->ent_off[idx + 1] - lo != e->n_selectors ||
                memcmp(&s->ent_sels[lo], ids, e->n_selectors * sizeof(*ids)) != 0)
                continue;
            if (strcmp(s->entries[idx]->spiffe_id, e->spiffe_id) == 0)
                return s->entries[idx];
        }
    }
    return NULL;
}

/* --- matching ------------------------------------------------------------ */

static void sift_down(uint32_t *v, size_t root, size_t n)
{
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && v[child + 1] > v[child])
            child++;
        if (v[root] >= v[child])
            return;
        uint32_t t = v[root];
        v[root] = v[child];
        v[child] = t;
    }
}

/* Insertion sort for the usual handful, heapsort past it: no allocation,
 * O(n log n) however many selectors a workload carries. */
static void sort_u32(uint32_t *v, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            for (; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        sift_down(v, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down(v, 0, end);
    }
}

static bool has_u32(const uint32_t *v, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] == x)
            return true;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int entries_match(const struct entries_snapshot *s, const struct selector_set *workload,
                  const struct entry **out, size_t cap)
{
    uint32_t wids[SELECTOR_SET_MAX];
    size_t p = 0, found = 0;

    if (!s || !workload || (cap && !out))
        return -EINVAL;
    if (cap > INT_MAX)
        cap = INT_MAX;
    if (s->n == 0)
        return 0;
    size_t wn = workload->n < SELECTOR_SET_MAX ? workload->n : SELECTOR_SET_MAX;
    for (size_t i = 0; i < wn; i++) {
        const char *sel = workload->items[i];
        size_t len = strlen(sel);
        uint32_t id = sel_lookup(s, sel, len);
        if (id != NONE)
            wids[p++] = id;
    }
    /* Sorted and unique: each posting is walked once even if the caller's
     * set was not sorted, so no entry is reported twice. */
    sort_u32(wids, p);
    size_t u = 0;
    for (size_t i = 0; i < p; i++)
        if (u == 0 || wids[i] != wids[u - 1])
            wids[u++] = wids[i];
    p = u;

    for (size_t w = 0; w < p; w++) {
        uint32_t sel = wids[w];
        for (uint32_t k = s->post_off[sel]; k < s->post_off[sel + 1]; k++) {
            uint32_t idx = s->post[k];
            uint32_t lo = s->ent_off[idx], hi = s->ent_off[idx + 1];
            if (hi - lo > p)
                continue;
            bool all = true;
            for (uint32_t j = lo; j < hi && all; j++)
                all = s->ent_sels[j] == sel || has_u32(wids, p, s->ent_sels[j]);
            if (!all)
                continue;
            if (found == cap)
                return -E2BIG;
            /* Binary insertion keeps out in the stable order. */
            const struct entry *e = s->entries[idx];
            size_t a = 0, b = found;
            while (a < b) {
                size_t mid = a + (b - a) / 2;
                if (entry_cmp(out[mid], e) < 0)
                    a = mid + 1;
                else
                    b = mid;
            }
            memmove(&out[a + 1], &out[a], (found - a) * sizeof(*out));
            out[a] = e;
            found++;
        }
    }
    return (int)found;
}

/* --- publication --------------------------------------------------------- */

struct entries_registry {
    pthread_mutex_t lock;
    /* Bumped under lock with each publish; read without it by readers. */
    _Atomic uint64_t generation;
    struct entries_snapshot *current; /* under lock */
};

/* On success the registry owns initial's reference (NULL: an empty
 * snapshot); on failure the caller keeps it. */
int entries_registry_new(struct entries_snapshot *initial, struct entries_registry **ret)
{
    if (!ret)
        return -EINVAL;
    struct entries_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int e = pthread_mutex_init(&r->lock, NULL);
    if (e != 0) {
        free(r);
        return -e;
    }
    if (!initial) {
        e = entries_snapshot_new(NULL, 0, &initial);
        if (e < 0) {
            (void)pthread_mutex_destroy(&r->lock);
            free(r);
            return e;
        }
    }
    r->current = initial;
    atomic_init(&r->generation, 1);
    *ret = r;
    return 0;
}

struct entries_registry *entries_registry_free(struct entries_registry *r)
{
    if (!r)
        return NULL;
    (void)entries_snapshot_unref(r->current);
    (void)pthread_mutex_destroy(&r->lock);
    free(r);
    return NULL;
}

void entries_registry_publish(struct entries_registry *r, struct entries_snapshot *s)
{
    if (!r || !s)
        return;
    (void)pthread_mutex_lock(&r->lock);
    struct entries_snapshot *old = r->current;
    r->current = s;
    atomic_fetch_add_explicit(&r->generation, 1, memory_order_relaxed);
    (void)pthread_mutex_unlock(&r->lock);
    /* Outside the lock: freeing a large snapshot must not hold up readers. */
    (void)entries_snapshot_unref(old);
}

const struct entries_snapshot *entries_reader_get(struct entries_registry *r,
                                                  struct entries_reader *reader)
{
    /* Relaxed: on this path the reader uses only its own snapshot, which it
     * already holds; the mutex orders everything else. */
    if (reader->snapshot &&
        atomic_load_explicit(&r->generation, memory_order_relaxed) == reader->generation)
        return reader->snapshot;
    (void)pthread_mutex_lock(&r->lock);
    struct entries_snapshot *s = entries_snapshot_ref(r->current);
    uint64_t g = atomic_load_explicit(&r->generation, memory_order_relaxed);
    (void)pthread_mutex_unlock(&r->lock);
    (void)entries_snapshot_unref(reader->snapshot);
    reader->snapshot = s;
    reader->generation = g;
    return s;
}

void entries_reader_release(struct entries_reader *reader)
{
    if (!reader)
        return;
    reader->snapshot = entries_snapshot_unref(reader->snapshot);
    reader->generation = 0;
}
