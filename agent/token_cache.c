/* Identity tokens: the per-loop cache of signed tokens (see token.h).
 *
 * Separate from token.c because it never parses or signs a token: it keeps
 * tokens as opaque strings keyed by (entry id, audiences, kid), for one event
 * loop, without locks.
 *
 * Cache. A hash table of chains plus an intrusive LRU list, sized once at
 * creation; one allocation per stored token (node and strings together), none
 * on a hit. The audience part of the key comes from the workload's request,
 * so the table is keyed with SipHash-2-4 under a random per-cache key: a
 * workload cannot choose audiences that pile into one chain. */
#include "token.h"
#include "token_internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define CACHE_MAX_CAPACITY (1u << 20)

/* --- cache -------------------------------------------------------------- */

struct cache_node {
    struct cache_node *prev, *next; /* LRU list, most recently used first */
    struct cache_node *chain;       /* next node in the same bucket */
    uint64_t hash;
    int64_t iat, exp;
    const char *entry_id, *aud_key, *kid, *token; /* into text */
    char text[];
};

struct token_cache {
    size_t capacity;
    size_t count;
    size_t mask; /* buckets - 1, a power of two minus one */
    struct cache_node **buckets;
    struct cache_node *head, *tail;
    uint8_t key[3][crypto_shorthash_KEYBYTES];
};

int token_cache_new(size_t capacity, struct token_cache **ret)
{
    struct token_cache *c;
    size_t n = 1;

    if (!ret || capacity == 0 || capacity > CACHE_MAX_CAPACITY)
        return -EINVAL;
    while (n < capacity)
        n <<= 1;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->buckets = calloc(n, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return -ENOMEM;
    }
    c->capacity = capacity;
    c->mask = n - 1;
    randombytes_buf(c->key, sizeof(c->key));
    *ret = c;
    return 0;
}

struct token_cache *token_cache_free(struct token_cache *c)
{
    if (!c)
        return NULL;
    for (struct cache_node *n = c->head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    free(c->buckets);
    free(c);
    return NULL;
}

size_t token_cache_count(const struct token_cache *c)
{
    return c ? c->count : 0;
}

static uint64_t sip(const uint8_t key[static crypto_shorthash_KEYBYTES], const char *s)
{
    uint8_t h[crypto_shorthash_BYTES];
    uint64_t v;
    crypto_shorthash(h, (const uint8_t *)s, strlen(s), key);
    memcpy(&v, h, sizeof(v));
    return v;
}

/* Each field under its own key, so that equal strings in different fields
 * do not cancel out. */
static uint64_t cache_hash(const struct token_cache *c, const char *entry_id, const char *aud_key,
                           const char *kid)
{
    return sip(c->key[0], entry_id) ^ sip(c->key[1], aud_key) ^ sip(c->key[2], kid);
}

static struct cache_node **cache_slot(struct token_cache *c, uint64_t hash, const char *entry_id,
                                      const char *aud_key, const char *kid)
{
    struct cache_node **p = &c->buckets[hash & c->mask];
    for (; *p; p = &(*p)->chain)
        if ((*p)->hash == hash && strcmp((*p)->entry_id, entry_id) == 0 &&
            strcmp((*p)->aud_key, aud_key) == 0 && strcmp((*p)->kid, kid) == 0)
            break;
    return p;
}

static void lru_unlink(struct token_cache *c, struct cache_node *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        c->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        c->tail = n->prev;
    n->prev = n->next = NULL;
}

static void lru_push_front(struct token_cache *c, struct cache_node *n)
{
    n->prev = NULL;
    n->next = c->head;
    if (c->head)
        c->head->prev = n;
    c->head = n;
    if (!c->tail)
        c->tail = n;
}

/* Unlinks n from its bucket and the list, and frees it. */
static void cache_remove(struct token_cache *c, struct cache_node *n)
{
    struct cache_node **p = &c->buckets[n->hash & c->mask];
    while (*p != n)
        p = &(*p)->chain;
    *p = n->chain;
    lru_unlink(c, n);
    c->count--;
    free(n);
}

/* More than half of [iat, exp) left at now. */
static bool cache_fresh(const struct cache_node *n, int64_t now)
{
    if (now >= n->exp)
        return false;
    if (now < n->iat)
        return true; /* clock stepped back: the whole lifetime is still ahead */
    return n->exp - now > (n->exp - n->iat) / 2;
}

const char *token_cache_get(struct token_cache *c, const char *entry_id, const char *aud_key,
                            const char *kid, int64_t now, int64_t *ret_exp)
{
    if (!c || !entry_id || !aud_key || !kid)
        return NULL;
    uint64_t hash = cache_hash(c, entry_id, aud_key, kid);
    struct cache_node *n = *cache_slot(c, hash, entry_id, aud_key, kid);
    if (!n)
        return NULL;
    if (!cache_fresh(n, now)) {
        cache_remove(c, n); /* the caller signs anew and puts the new one */
        return NULL;
    }
    if (c->head != n) {
        lru_unlink(c, n);
        lru_push_front(c, n);
    }
    if (ret_exp)
        *ret_exp = n->exp;
    return n->token;
}

int token_cache_put(struct token_cache *c, const char *entry_id, const char *aud_key,
                    const char *kid, const char *token, int64_t iat, int64_t exp)
{
    if (!c || !entry_id || !aud_key || !kid || !token || exp <= iat)
        return -EINVAL;
    /* Both bounded, so exp - iat cannot overflow in cache_fresh. */
    if (iat < -NUMERIC_DATE_MAX || exp > NUMERIC_DATE_MAX)
        return -EINVAL;

    size_t el = strlen(entry_id) + 1, al = strlen(aud_key) + 1, kl = strlen(kid) + 1,
           tl = strlen(token) + 1;
    struct cache_node *n = malloc(sizeof(*n) + el + al + kl + tl);
    if (!n)
        return -ENOMEM;
    char *p = n->text;
    n->entry_id = memcpy(p, entry_id, el);
    n->aud_key = memcpy(p += el, aud_key, al);
    n->kid = memcpy(p += al, kid, kl);
    n->token = memcpy(p += kl, token, tl);
    n->iat = iat;
    n->exp = exp;
    n->hash = cache_hash(c, entry_id, aud_key, kid);

    /* Allocated first, so a failure leaves the cache as it was. */
    struct cache_node *old = *cache_slot(c, n->hash, entry_id, aud_key, kid);
    if (old)
        cache_remove(c, old);
    else if (c->count == c->capacity)
        cache_remove(c, c->tail);
    struct cache_node **slot = &c->buckets[n->hash & c->mask];
    n->chain = *slot;
    *slot = n;
    lru_push_front(c, n);
    c->count++;
    return 0;
}

void token_cache_retain(struct token_cache *c,
                        bool (*keep)(void *ctx, const char *entry_id, const char *kid), void *ctx)
{
    if (!c || !keep)
        return;
    for (struct cache_node *n = c->head, *next; n; n = next) {
        next = n->next;
        if (!keep(ctx, n->entry_id, n->kid))
            cache_remove(c, n);
    }
}
