/* Registration entries: the stable order and the id order (see
 * entries_internal.h).
 *
 * A load orders 100,000 entries or more, so the sorts read what they
 * compare from items gathered in one read of each entry, never chasing an
 * entry pointer or calling a function per comparison. First a radix sort
 * (11 bits a pass) on a 32-bit digest that never puts two entries against
 * their real order: the value of the id's first eight hex digits, behind
 * created_at's offset from the oldest entry when the stable order is
 * wanted. Entries whose digests tie are then merge sorted on (created_at,
 * the id's first eight characters) or (the id's first sixteen), and those
 * that tie again by the full comparison. Ids are random, so ties are few,
 * and the merge sort keeps the worst case (every digest the same) at
 * O(n log n). The digest reads the id's digits: ids must be valid. */
#include "entries.h"
#include "entries_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* What the radix sort moves. */
struct order_digest {
    uint32_t d;
    uint32_t idx;
};

/* What the merge sort compares: (a, b); then the entry's index. */
struct order_key {
    uint64_t a, b;
    uint32_t idx;
};

/* Eight characters of an id as a number in the order of the strings. */
static uint64_t order_id_word(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    return __builtin_bswap64(x);
}

/* The value of eight lowercase hex digits, eight lanes at a time: a
 * digit's value is its low nibble, plus 9 for a letter (bit 6 set); then
 * the nibbles are packed, p[0] the most significant. */
static uint32_t order_hex8(const char *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof(x));
    x = (x & 0x0f0f0f0f0f0f0f0fu) + 9 * ((x >> 6) & 0x0101010101010101u);
    x = ((x << 4) | (x >> 8)) & 0x00ff00ff00ff00ffu;
    x = ((x << 8) | (x >> 16)) & 0x0000ffff0000ffffu;
    x = ((x << 16) | (x >> 32)) & 0xffffffffu;
    return (uint32_t)x;
}

static bool order_less(const struct order_key *x, const struct order_key *y)
{
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

/* Merge sort of v[0..n) with tmp (room for n / 2). */
static void order_merge_sort(struct order_key *v, struct order_key *tmp, size_t n)
{
    if (n <= 12) {
        for (size_t i = 1; i < n; i++) {
            struct order_key x = v[i];
            size_t j = i;
            for (; j > 0 && order_less(&x, &v[j - 1]); j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    size_t mid = n / 2;
    order_merge_sort(v, tmp, mid);
    order_merge_sort(v + mid, tmp, n - mid);
    if (!order_less(&v[mid], &v[mid - 1]))
        return;
    memcpy(tmp, v, mid * sizeof(*v));
    size_t a = 0, b = mid, w = 0;
    while (a < mid && b < n)
        v[w++] = order_less(&v[b], &tmp[a]) ? v[b++] : tmp[a++];
    while (a < mid)
        v[w++] = tmp[a++];
}

/* LSD radix sort of v[0..n) by d through tmp (room for n), the result in
 * v: three passes of 11 bits (their counts fit in a core's cache). A pass
 * whose digit is the same in every digest is skipped. */
#define RADIX_BITS   11u
#define RADIX_SIZE   (1u << RADIX_BITS)
#define RADIX_PASSES 3u

static void order_radix_sort(struct order_digest *v, struct order_digest *tmp, size_t n)
{
    uint32_t count[RADIX_PASSES][RADIX_SIZE] = {{0}}; /* 24 KiB */
    struct order_digest *src = v, *dst = tmp;
    for (size_t i = 0; i < n; i++)
        for (unsigned p = 0; p < RADIX_PASSES; p++)
            count[p][(v[i].d >> (RADIX_BITS * p)) & (RADIX_SIZE - 1)]++;
    for (unsigned p = 0; p < RADIX_PASSES && n > 0; p++) {
        unsigned shift = RADIX_BITS * p;
        if (count[p][(v[0].d >> shift) & (RADIX_SIZE - 1)] == n)
            continue;
        uint32_t sum = 0;
        for (unsigned b = 0; b < RADIX_SIZE; b++) {
            uint32_t c = count[p][b];
            count[p][b] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            dst[count[p][(src[i].d >> shift) & (RADIX_SIZE - 1)]++] = src[i];
        struct order_digest *t = src;
        src = dst;
        dst = t;
    }
    if (src != v)
        memcpy(v, src, n * sizeof(*v));
}

/* The full key of item i: (created_at, the id's first eight characters)
 * for the stable order, (its first sixteen) for the id order. */
static struct order_key order_key_of(const struct order_item *it, bool stable, uint32_t i)
{
    if (stable)
        return (struct order_key){(uint64_t)it->created_at ^ (UINT64_C(1) << 63), it->id_hi, i};
    return (struct order_key){it->id_hi, it->id_lo, i};
}

void entries_order_item(const struct entry *e, struct order_item *ret)
{
    ret->created_at = e->created_at;
    ret->id_hi = order_id_word(e->id);
    ret->id_lo = order_id_word(e->id + 8);
    ret->id_digest = order_hex8(e->id);
}

static int order_cmp_id(const struct entry *a, const struct entry *b)
{
    return strcmp(a->id, b->id);
}

/* Sorts run[0..n) (indexes into items and v, whose digests tie) by full
 * keys, then the entries whose keys tie by the full comparison. keys has
 * room for n + n / 2. Returns whether two of them compare equal. */
static bool order_run(uint32_t *run, size_t n, const struct order_item *items,
                      struct entry *const *v, bool stable, struct order_key *keys)
{
    int (*cmp)(const struct entry *, const struct entry *) = stable ? entry_cmp : order_cmp_id;
    bool equal = false;
    for (size_t i = 0; i < n; i++)
        keys[i] = order_key_of(&items[run[i]], stable, run[i]);
    order_merge_sort(keys, keys + n, n);
    for (size_t i = 1; i < n; i++) {
        if (keys[i].a != keys[i - 1].a || keys[i].b != keys[i - 1].b)
            continue;
        struct order_key x = keys[i];
        size_t j = i;
        for (; j > 0 && keys[j - 1].a == x.a && keys[j - 1].b == x.b &&
               cmp(v[x.idx], v[keys[j - 1].idx]) < 0;
             j--)
            keys[j] = keys[j - 1];
        keys[j] = x;
    }
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && keys[i].a == keys[i - 1].a && keys[i].b == keys[i - 1].b &&
            cmp(v[keys[i].idx], v[keys[i - 1].idx]) == 0)
            equal = true;
        run[i] = keys[i].idx;
    }
    return equal;
}

/* Whether items[i - 1] comes before items[i] in the stable order. */
static bool order_stable_before(const struct order_item *items, struct entry *const *v, size_t i)
{
    const struct order_item *x = &items[i - 1], *y = &items[i];
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at;
    if (x->id_hi != y->id_hi)
        return x->id_hi < y->id_hi;
    return entry_cmp(v[i - 1], v[i]) < 0;
}

int entries_order(const struct order_item *items, struct entry *const *v, size_t n, bool by_id,
                  uint32_t *ret)
{
    bool stable = !by_id;
    if (stable) {
        /* In order already (a file written oldest first): one pass. */
        size_t i = 1;
        while (i < n && order_stable_before(items, v, i))
            i++;
        if (i >= n) {
            for (i = 0; i < n; i++)
                ret[i] = (uint32_t)i;
            return 0;
        }
    }
    struct order_digest *dig = malloc(2 * (n ? n : 1) * sizeof(*dig));
    struct order_key *keys = NULL;
    if (!dig)
        return -ENOMEM;
    /* created_at's range takes the digest's high bits: all of them when
     * the range needs 32 bits or more. */
    unsigned k = 0;
    int64_t oldest = n ? items[0].created_at : 0, newest = oldest;
    if (stable) {
        for (size_t i = 1; i < n; i++) {
            oldest = items[i].created_at < oldest ? items[i].created_at : oldest;
            newest = items[i].created_at > newest ? items[i].created_at : newest;
        }
        uint64_t range = (uint64_t)newest - (uint64_t)oldest;
        k = range ? 64u - (unsigned)__builtin_clzll(range) : 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t id = items[i].id_digest;
        uint64_t t = (uint64_t)items[i].created_at - (uint64_t)oldest;
        uint32_t d = (uint32_t)id;
        if (stable)
            d = k <= 32 ? (uint32_t)((t << 32 | id) >> k) : (uint32_t)(t >> (k - 32));
        dig[i] = (struct order_digest){d, (uint32_t)i};
    }
    order_radix_sort(dig, dig + n, n);

    size_t longest = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && dig[j].d == dig[i].d; j++)
            ;
        longest = j - i > longest ? j - i : longest;
    }
    for (size_t i = 0; i < n; i++)
        ret[i] = dig[i].idx;
    bool equal = false;
    if (longest > 1) {
        keys = malloc((longest + longest / 2) * sizeof(*keys));
        if (!keys) {
            free(dig);
            return -ENOMEM;
        }
        for (size_t i = 0, j; i < n; i = j) {
            for (j = i + 1; j < n && dig[j].d == dig[i].d; j++)
                ;
            if (j - i > 1 && order_run(ret + i, j - i, items, v, stable, keys))
                equal = true;
        }
    }
    free(keys);
    free(dig);
    return equal ? -EEXIST : 0;
}

int entries_sort(struct entry **v, size_t n)
{
    if (n && !v)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!v[i] || !entry_id_ok(v[i]))
            return -EINVAL;
    if (n < 2)
        return 0;
    struct order_item *items = malloc(n * sizeof(*items));
    uint32_t *order = malloc(n * sizeof(*order));
    struct entry **copy = malloc(n * sizeof(*copy));
    int r = -ENOMEM;
    if (items && order && copy) {
        for (size_t i = 0; i < n; i++)
            entries_order_item(v[i], &items[i]);
        r = entries_order(items, v, n, false, order);
    }
    if (r == -EEXIST)
        r = 0; /* equal entries: either order is the order */
    if (r == 0) {
        memcpy(copy, v, n * sizeof(*copy));
        for (size_t i = 0; i < n; i++)
            v[i] = copy[order[i]];
    }
    free(items);
    free(order);
    free(copy);
    return r;
}
