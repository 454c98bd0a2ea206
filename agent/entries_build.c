/* Registration entries: snapshots of many entries at once (see entries.h).
 *
 * What a snapshot needs of each entry (its checks, what the orders compare,
 * its selectors' hashes) is gathered as the entry is added, in one read of
 * it. A load adds its entries on the thread that builds them while the
 * scan of the file goes on, and in the order they were allocated, so that
 * read is sequential and off the start's critical path. Finishing orders
 * the gathered items (entries_order.c) and indexes the hashes
 * (entries_index.c) without reading the entries again, but where items
 * tie. */
#include "entries.h"
#include "entries_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

struct entries_builder {
    unsigned char key[ENTRIES_KEY_LEN];
    size_t n, cap;
    struct entry **v; /* as added; one reference each */
    struct order_item *items;
    uint8_t *n_sel;
    uint32_t *hashes; /* every entry's selectors', in the order added */
    size_t n_hashes, hashes_cap;
};

_Static_assert(ENTRY_MAX_SELECTORS <= UINT8_MAX, "n_sel holds a count of selectors");

int entries_builder_new(struct entries_builder **ret)
{
    if (!ret)
        return -EINVAL;
    int r = entries_sodium_ready();
    if (r < 0)
        return r;
    struct entries_builder *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    randombytes_buf(b->key, sizeof(b->key));
    *ret = b;
    return 0;
}

struct entries_builder *entries_builder_free(struct entries_builder *b)
{
    if (!b)
        return NULL;
    for (size_t i = 0; i < b->n; i++)
        (void)entry_unref(b->v[i]);
    free(b->v);
    free(b->items);
    free(b->n_sel);
    free(b->hashes);
    sodium_memzero(b->key, sizeof(b->key));
    free(b);
    return NULL;
}

/* Room for one more entry with m selectors. */
static int builder_grow(struct entries_builder *b, size_t m)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        struct entry **v = realloc(b->v, cap * sizeof(*v));
        if (v)
            b->v = v;
        struct order_item *items = realloc(b->items, cap * sizeof(*items));
        if (items)
            b->items = items;
        uint8_t *n_sel = realloc(b->n_sel, cap * sizeof(*n_sel));
        if (n_sel)
            b->n_sel = n_sel;
        if (!v || !items || !n_sel)
            return -ENOMEM;
        b->cap = cap;
    }
    if (b->n_hashes + m > b->hashes_cap) {
        size_t cap = b->hashes_cap ? 2 * b->hashes_cap : 2048;
        while (cap < b->n_hashes + m)
            cap *= 2;
        uint32_t *h = realloc(b->hashes, cap * sizeof(*h));
        if (!h)
            return -ENOMEM;
        b->hashes = h;
        b->hashes_cap = cap;
    }
    return 0;
}

int entries_builder_add(struct entries_builder *b, struct entry *e)
{
    int r = -EINVAL;
    /* Only entry_new and entry_from_* make entries, but the orders and the
     * index rely on these, so a hand-made one is refused. */
    if (!b || !e || !entry_id_ok(e) || e->n_selectors == 0 || e->n_selectors > ENTRY_MAX_SELECTORS)
        goto fail;
    r = -E2BIG;
    if (b->n == ENTRIES_SNAPSHOT_MAX || b->n_hashes >= UINT32_MAX / 2)
        goto fail;
    r = builder_grow(b, e->n_selectors);
    if (r < 0)
        goto fail;
    entries_order_item(e, &b->items[b->n]);
    b->n_sel[b->n] = (uint8_t)e->n_selectors;
    for (size_t j = 0; j < e->n_selectors; j++)
        b->hashes[b->n_hashes++] =
            entries_selector_hash(b->key, e->selectors[j], strlen(e->selectors[j]));
    b->v[b->n++] = e;
    return 0;
fail:
    (void)entry_unref(e);
    return r;
}

/* Below this many entries, one thread orders them faster than two. */
#define BUILDER_THREAD_MIN 16384u

/* The id order, computed beside the stable order. */
struct builder_job {
    const struct entries_builder *b;
    uint32_t *ret;
    int r;
};

static void *builder_order_by_id(void *arg)
{
    struct builder_job *job = arg;
    job->r = entries_order(job->b->items, job->b->v, job->b->n, true, job->ret);
    return NULL;
}

int entries_builder_finish(struct entries_builder *b, struct entries_snapshot **ret)
{
    if (!b || !ret) {
        (void)entries_builder_free(b);
        return -EINVAL;
    }
    /* perm[p] is the entry added at stable position p, ids[k] the one with
     * the k-th id, walk[i] where the i-th added goes. */
    size_t n = b->n, m = n ? n : 1;
    uint32_t *perm = malloc(m * sizeof(*perm));
    uint32_t *ids = malloc(m * sizeof(*ids));
    uint32_t *walk = malloc(m * sizeof(*walk));
    uint32_t *from = malloc((n + 1) * sizeof(*from));
    uint32_t *by_id = malloc(m * sizeof(*by_id));
    uint32_t *ent_off = malloc((n + 1) * sizeof(*ent_off));
    uint32_t *hashes = malloc((b->n_hashes ? b->n_hashes : 1) * sizeof(*hashes));
    struct entry **v = malloc(m * sizeof(*v));
    int r = -ENOMEM;
    if (!perm || !ids || !walk || !from || !by_id || !ent_off || !hashes || !v)
        goto fail;
    /* The two orders at once, when there are enough entries to pay for a
     * thread: they only read the items (and the entries, where items
     * tie). */
    struct builder_job job = {b, ids, 0};
    pthread_t helper;
    bool threaded =
        n >= BUILDER_THREAD_MIN && pthread_create(&helper, NULL, builder_order_by_id, &job) == 0;
    r = entries_order(b->items, b->v, n, false, perm);
    if (threaded)
        (void)pthread_join(helper, NULL);
    else
        (void)builder_order_by_id(&job);
    if (r == 0)
        r = job.r;
    if (r < 0)
        goto fail;
    /* from[i]: where the hashes of the i-th added start. */
    from[0] = 0;
    for (size_t i = 0; i < n; i++)
        from[i + 1] = from[i] + b->n_sel[i];
    ent_off[0] = 0;
    for (size_t p = 0; p < n; p++) {
        uint32_t i = perm[p];
        v[p] = b->v[i];
        walk[i] = (uint32_t)p;
        ent_off[p + 1] = ent_off[p] + b->n_sel[i];
        memcpy(&hashes[ent_off[p]], &b->hashes[from[i]], b->n_sel[i] * sizeof(*hashes));
    }
    for (size_t k = 0; k < n; k++)
        by_id[k] = walk[ids[k]];
    unsigned char key[ENTRIES_KEY_LEN];
    memcpy(key, b->key, sizeof(key));
    b->n = 0; /* the references move to v */
    (void)entries_builder_free(b);
    free(perm);
    free(ids);
    free(walk);
    free(from);
    r = entries_snapshot_index(v, by_id, ent_off, hashes, n, key, ret);
    sodium_memzero(key, sizeof(key));
    free(hashes);
    return r;
fail:
    (void)entries_builder_free(b);
    free(perm);
    free(ids);
    free(walk);
    free(from);
    free(by_id);
    free(ent_off);
    free(hashes);
    free(v);
    return r;
}

int entries_snapshot_new(struct entry *const *entries, size_t n, struct entries_snapshot **ret)
{
    struct entries_builder *b = NULL;
    if (!ret || (n && !entries))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!entries[i])
            return -EINVAL;
    int r = entries_builder_new(&b);
    for (size_t i = 0; i < n && r == 0; i++)
        r = entries_builder_add(b, entry_ref(entries[i]));
    if (r < 0) {
        (void)entries_builder_free(b);
        return r;
    }
    return entries_builder_finish(b, ret);
}
