/* Registration entries: snapshots with an inverted index, matching, and
 * publication (see entries.h).
 *
 * Separate from entries.c, which validates and builds entries: everything
 * here works on entries already built, through entries.h, and on the
 * snapshot and registry structures, which no other file sees.
 *
 * Index. Every distinct selector string of a snapshot is interned into an
 * open-addressing table keyed by SipHash-2-4 (crypto_shorthash) under a
 * random per-snapshot key, so selectors a workload chooses (its executable
 * path, its cgroup names) cannot be crafted to collide. Each entry is listed
 * under exactly one of its selectors, the rarest one (held by the fewest
 * entries), and keeps its selectors as interned ids. To match, the workload's
 * selectors are looked up (one hash each), the ids found are sorted, and only
 * the entries listed under those ids are candidates; a candidate matches when
 * each of its ids is among the workload's (binary search). An entry whose
 * rarest selector the workload lacks cannot match, so it is never visited:
 * the cost is the workload's selectors plus their postings, whatever the
 * number of entries. Postings are in the stable order; matches from several
 * postings are merged by binary insertion into the caller's array, so
 * matching allocates nothing. A derived snapshot splices its base's two
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
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NONE UINT32_MAX

/* --- snapshots ----------------------------------------------------------- */

/* An open-addressing slot: the hash's high half, and an index plus one
 * (0: empty). Tables are at most half full, probed linearly. */
struct slot {
    uint32_t tag;
    uint32_t idx1;
};

struct entries_snapshot {
    atomic_uint refs;
    size_t n;
    struct entry **entries; /* stable order; one reference each */
    struct entry **by_id;   /* the same, sorted by id */
    unsigned char key[crypto_shorthash_KEYBYTES];

    /* Distinct selectors, interned; strings borrowed from the entries. */
    size_t n_sels;
    const char **sel_str;
    uint32_t *sel_len;
    uint64_t *sel_hash;
    struct slot *sel_table;
    size_t sel_mask;

    /* Entry i's selectors as interned ids: ent_sels[ent_off[i] ..
     * ent_off[i + 1]), in the order of its strings. */
    uint32_t *ent_off;
    uint32_t *ent_sels;

    /* Entries listed under their rarest selector: post[post_off[sel] ..
     * post_off[sel + 1]), in the stable order. */
    uint32_t *post_off;
    uint32_t *post;

    /* Entries by SPIFFE ID and selector set. */
    struct slot *id_table;
    size_t id_mask;
};

static uint64_t snap_hash(const struct entries_snapshot *s, const char *p, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    (void)crypto_shorthash(out, (const unsigned char *)p, len, s->key);
    memcpy(&h, out, sizeof(h));
    return h;
}

/* A power of two at least twice n (and at least 2). */
static size_t table_size(size_t n)
{
    size_t c = 2;
    while (c < 2 * n)
        c <<= 1;
    return c;
}

static uint32_t sel_lookup(const struct entries_snapshot *s, const char *p, size_t len, uint64_t h)
{
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & s->sel_mask;; i = (i + 1) & s->sel_mask) {
        const struct slot *sl = &s->sel_table[i];
        if (!sl->idx1)
            return NONE;
        uint32_t id = sl->idx1 - 1;
        if (sl->tag == tag && s->sel_len[id] == len && memcmp(s->sel_str[id], p, len) == 0)
            return id;
    }
}

static uint32_t sel_intern(struct entries_snapshot *s, const char *p, size_t len)
{
    uint64_t h = snap_hash(s, p, len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & s->sel_mask;
    for (;; i = (i + 1) & s->sel_mask) {
        const struct slot *sl = &s->sel_table[i];
        if (!sl->idx1)
            break;
        uint32_t id = sl->idx1 - 1;
        if (sl->tag == tag && s->sel_len[id] == len && memcmp(s->sel_str[id], p, len) == 0)
            return id;
    }
    uint32_t id = (uint32_t)s->n_sels++;
    s->sel_str[id] = p;
    s->sel_len[id] = (uint32_t)len;
    s->sel_hash[id] = h;
    s->sel_table[i] = (struct slot){tag, id + 1};
    return id;
}

/* The SPIFFE ID's hash mixed with its selectors' (in string order). The
 * selector hashes are keyed, so a plain multiply-xor mix spreads them. */
static uint64_t identity_hash(const struct entries_snapshot *s, const char *spiffe_id,
                              const uint64_t *sel_hashes, size_t n)
{
    uint64_t h = snap_hash(s, spiffe_id, strlen(spiffe_id));
    for (size_t i = 0; i < n; i++) {
        h ^= sel_hashes[i];
        h *= 0x9e3779b97f4a7c15u;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    return h;
}

static void snapshot_free(struct entries_snapshot *s)
{
    if (s->entries)
        for (size_t i = 0; i < s->n; i++)
            (void)entry_unref(s->entries[i]);
    free(s->entries);
    free(s->by_id);
    free(s->sel_str);
    free(s->sel_len);
    free(s->sel_hash);
    free(s->sel_table);
    free(s->ent_off);
    free(s->ent_sels);
    free(s->post_off);
    free(s->post);
    free(s->id_table);
    sodium_memzero(s->key, sizeof(s->key));
    free(s);
}

/* Index v (n entries in the stable order, one reference each; by_id, the
 * same sorted by id, unique). Takes v, by_id and the references whatever
 * the outcome. */
static int snapshot_index(struct entry **v, struct entry **by_id, size_t n,
                          struct entries_snapshot **ret)
{
    int r = -ENOMEM;
    uint32_t *count = NULL, *rare = NULL;
    uint64_t hashes[ENTRY_MAX_SELECTORS];
    struct entries_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        for (size_t i = 0; i < n; i++)
            (void)entry_unref(v[i]);
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    atomic_init(&s->refs, 1);
    s->entries = v;
    s->by_id = by_id;
    s->n = n;

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        /* Only entry_new and entry_from_parts make entries, but the index
         * relies on this bound, so a hand-made one is refused. */
        if (v[i]->n_selectors == 0 || v[i]->n_selectors > ENTRY_MAX_SELECTORS) {
            r = -EINVAL;
            goto out;
        }
        total += v[i]->n_selectors;
    }
    if (n >= UINT32_MAX / 2 || total >= UINT32_MAX / 2) {
        r = -E2BIG;
        goto out;
    }
    r = entries_sodium_ready();
    if (r < 0)
        goto out;
    randombytes_buf(s->key, sizeof(s->key));
    r = -ENOMEM;

    size_t cap = total ? total : 1;
    s->sel_mask = table_size(total) - 1;
    s->sel_str = malloc(cap * sizeof(*s->sel_str));
    s->sel_len = malloc(cap * sizeof(*s->sel_len));
    s->sel_hash = malloc(cap * sizeof(*s->sel_hash));
    s->sel_table = calloc(s->sel_mask + 1, sizeof(*s->sel_table));
    s->ent_off = malloc((n + 1) * sizeof(*s->ent_off));
    s->ent_sels = malloc(cap * sizeof(*s->ent_sels));
    count = calloc(cap, sizeof(*count));
    if (!s->sel_str || !s->sel_len || !s->sel_hash || !s->sel_table || !s->ent_off ||
        !s->ent_sels || !count)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        s->ent_off[i] = (uint32_t)k;
        for (size_t j = 0; j < v[i]->n_selectors; j++) {
            const char *sel = v[i]->selectors[j];
            uint32_t id = sel_intern(s, sel, strlen(sel));
            s->ent_sels[k++] = id;
            count[id]++;
        }
    }
    s->ent_off[n] = (uint32_t)k;

    /* Each entry goes under its rarest selector; count, once read, is
     * reused for the postings' fill positions. */
    s->post_off = calloc(s->n_sels + 1, sizeof(*s->post_off));
    s->post = malloc((n ? n : 1) * sizeof(*s->post));
    rare = malloc((n ? n : 1) * sizeof(*rare));
    if (!s->post_off || !s->post || !rare)
        goto out;
    for (size_t i = 0; i < n; i++) {
        uint32_t best = s->ent_sels[s->ent_off[i]];
        for (uint32_t j = s->ent_off[i] + 1; j < s->ent_off[i + 1]; j++)
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

    s->id_mask = table_size(n) - 1;
    s->id_table = calloc(s->id_mask + 1, sizeof(*s->id_table));
    if (!s->id_table)
        goto out;
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        for (uint32_t j = s->ent_off[i]; j < s->ent_off[i + 1]; j++)
            hashes[m++] = s->sel_hash[s->ent_sels[j]];
        uint64_t h = identity_hash(s, v[i]->spiffe_id, hashes, m);
        size_t at = (size_t)h & s->id_mask;
        while (s->id_table[at].idx1)
            at = (at + 1) & s->id_mask;
        s->id_table[at] = (struct slot){(uint32_t)(h >> 32), (uint32_t)i + 1};
    }
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

/* Sort keys that carry what the comparison reads, so that sorting a large
 * snapshot does not chase a pointer per comparison. Ids are validated
 * lowercase hex, so their first 16 characters read as a number in the same
 * order as strcmp; the full id breaks the (rare) tie. */
struct sort_key {
    int64_t created_at;
    uint64_t id_prefix;
    struct entry *e;
};

static uint64_t id_prefix(const char *id)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 16; i++)
        x = x << 4 | (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    return x;
}

static int cmp_key_id(const void *a, const void *b)
{
    const struct sort_key *x = a, *y = b;
    if (x->id_prefix != y->id_prefix)
        return x->id_prefix < y->id_prefix ? -1 : 1;
    return strcmp(x->e->id, y->e->id);
}

static int cmp_key_stable(const void *a, const void *b)
{
    const struct sort_key *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return cmp_key_id(a, b);
}

int entries_snapshot_new(struct entry *const *entries, size_t n, struct entries_snapshot **ret)
{
    if (!ret || (n && !entries))
        return -EINVAL;
    if (n >= UINT32_MAX / 2)
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        if (!entries[i] || !entries_id_valid(entries[i]->id, strlen(entries[i]->id)))
            return -EINVAL;
    struct sort_key *keys = malloc((n ? n : 1) * sizeof(*keys));
    struct entry **v = malloc((n ? n : 1) * sizeof(*v));
    struct entry **by_id = malloc((n ? n : 1) * sizeof(*by_id));
    if (!keys || !v || !by_id) {
        free(keys);
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = (struct sort_key){entries[i]->created_at, id_prefix(entries[i]->id), entries[i]};
    qsort(keys, n, sizeof(*keys), cmp_key_id);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_key_id(&keys[i - 1], &keys[i]) == 0) {
            free(keys);
            free(v);
            free(by_id);
            return -EEXIST;
        }
        by_id[i] = keys[i].e;
    }
    qsort(keys, n, sizeof(*keys), cmp_key_stable);
    for (size_t i = 0; i < n; i++)
        v[i] = entry_ref(keys[i].e);
    free(keys);
    return snapshot_index(v, by_id, n, ret);
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

static int entry_cmp_id(const struct entry *a, const struct entry *b)
{
    return strcmp(a->id, b->id);
}

/* v = base minus gone (NULL: none) plus add (NULL: none), in the order
 * base is in; O(n) copying, O(log n) comparisons. */
static void splice(struct entry **v, struct entry *const *base, size_t n, const struct entry *gone,
                   struct entry *add, int (*cmp)(const struct entry *, const struct entry *))
{
    size_t at = add ? insert_at(base, n, add, cmp) : n;
    size_t skip = gone ? insert_at(base, n, gone, cmp) : n; /* gone is in base */
    size_t w = 0;
    for (size_t i = 0; i <= n; i++) {
        if (add && i == at)
            v[w++] = add;
        if (i < n && i != skip)
            v[w++] = base[i];
    }
}

int entries_snapshot_derive(const struct entries_snapshot *base, struct entry *add,
                            const char *remove_id, struct entries_snapshot **ret)
{
    const struct entry *gone = NULL;
    size_t base_n = base ? base->n : 0;

    if (!ret || (add && (!entries_id_valid(add->id, strlen(add->id)))))
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
    }
    size_t n = base_n - (gone ? 1 : 0) + (add ? 1 : 0);
    struct entry **v = malloc((n ? n : 1) * sizeof(*v));
    struct entry **by_id = malloc((n ? n : 1) * sizeof(*by_id));
    if (!v || !by_id) {
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    if (base_n) {
        splice(v, base->entries, base_n, gone, add, entry_cmp);
        splice(by_id, base->by_id, base_n, gone, add, entry_cmp_id);
    } else if (add) {
        v[0] = by_id[0] = add;
    }
    for (size_t i = 0; i < n; i++)
        (void)entry_ref(v[i]);
    return snapshot_index(v, by_id, n, ret);
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
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(id, s->by_id[mid]->id);
        if (c == 0)
            return s->by_id[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct entry *entries_snapshot_find_identity(const struct entries_snapshot *s,
                                                   const struct entry *e)
{
    uint64_t hashes[ENTRY_MAX_SELECTORS];
    if (!s || !e || s->n == 0 || e->n_selectors > ENTRY_MAX_SELECTORS)
        return NULL;
    for (size_t i = 0; i < e->n_selectors; i++) {
        size_t len = strlen(e->selectors[i]);
        uint64_t h = snap_hash(s, e->selectors[i], len);
        /* A selector no entry holds: no entry has this identity. */
        if (sel_lookup(s, e->selectors[i], len, h) == NONE)
            return NULL;
        hashes[i] = h;
    }
    uint64_t h = identity_hash(s, e->spiffe_id, hashes, e->n_selectors);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & s->id_mask;; i = (i + 1) & s->id_mask) {
        const struct slot *sl = &s->id_table[i];
        if (!sl->idx1)
            return NULL;
        if (sl->tag == tag && entry_same_identity(s->entries[sl->idx1 - 1], e))
            return s->entries[sl->idx1 - 1];
    }
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
        uint32_t id = sel_lookup(s, sel, len, snap_hash(s, sel, len));
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
