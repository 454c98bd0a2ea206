/* kvcache: a direct-mapped cache of short strings whose readers take no lock
 * (see kvcache.h). The seqlock follows Boehm, "Can seqlocks get along with
 * programming language memory models?" (MSPC 2012): data words are
 * atomics read and written relaxed; the writer's release fence after it
 * makes the sequence odd, and the reader's acquire fence before it reads
 * the sequence again, order the data against the sequence. */
#include "kvcache.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* A slot: sequence, key, expiry, length, then the value's words. */
enum { KV_SEQ, KV_KEY, KV_EXPIRES, KV_LEN, KV_VALUE };

#define KVCACHE_WORD 8u

struct kvcache {
    size_t mask;       /* slots - 1 */
    size_t value_max;  /* bytes */
    size_t slot_words; /* KV_VALUE + value words */
    size_t bytes;      /* of the mapping */
    _Atomic uint64_t *words;
};

int kvcache_new(size_t slots, size_t value_max, struct kvcache **ret)
{
    if (!ret || slots == 0 || slots > KVCACHE_SLOTS_MAX || (slots & (slots - 1)) != 0 ||
        value_max == 0 || value_max > KVCACHE_VALUE_MAX)
        return -EINVAL;
    struct kvcache *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->mask = slots - 1;
    c->value_max = value_max;
    c->slot_words = KV_VALUE + (value_max + KVCACHE_WORD - 1) / KVCACHE_WORD;
    /* Zero is "never written" (sequence 0) for every slot. Mapped rather
     * than allocated, so that slots never used cost no memory: a page
     * becomes resident only once a slot in it is written. */
    c->bytes = slots * c->slot_words * sizeof(*c->words);
    void *mem = mmap(NULL, c->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        free(c);
        return -ENOMEM;
    }
    c->words = mem;
    *ret = c;
    return 0;
}

struct kvcache *kvcache_free(struct kvcache *c)
{
    if (c) {
        (void)munmap((void *)c->words, c->bytes);
        free(c);
    }
    return NULL;
}

/* splitmix64's finalizer: ids that differ in low or high bits alike spread
 * over the slots. Not a defence against chosen keys; none is needed, as a
 * collision only evicts. */
static uint64_t kvcache_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static _Atomic uint64_t *kvcache_slot(const struct kvcache *c, uint64_t key)
{
    return c->words + (size_t)(kvcache_mix(key) & c->mask) * c->slot_words;
}

bool kvcache_get(const struct kvcache *c, uint64_t key, uint64_t now, char *buf, size_t cap,
                 size_t *ret_len)
{
    uint64_t value[KVCACHE_VALUE_MAX / KVCACHE_WORD];

    if (!c || !buf || !ret_len || cap < c->value_max + 1)
        return false;
    _Atomic uint64_t *s = kvcache_slot(c, key);
    uint64_t seq = atomic_load_explicit(&s[KV_SEQ], memory_order_acquire);
    if (seq == 0 || (seq & 1))
        return false;
    if (atomic_load_explicit(&s[KV_KEY], memory_order_relaxed) != key)
        return false;
    uint64_t expires = atomic_load_explicit(&s[KV_EXPIRES], memory_order_relaxed);
    uint64_t len = atomic_load_explicit(&s[KV_LEN], memory_order_relaxed);
    /* A torn read may show any length: bound it before using it. */
    if (len > c->value_max)
        return false;
    size_t n = (size_t)(len + KVCACHE_WORD - 1) / KVCACHE_WORD;
    for (size_t i = 0; i < n; i++)
        value[i] = atomic_load_explicit(&s[KV_VALUE + i], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&s[KV_SEQ], memory_order_relaxed) != seq)
        return false;
    if (now >= expires)
        return false;
    memcpy(buf, value, (size_t)len);
    buf[len] = '\0';
    *ret_len = (size_t)len;
    return true;
}

void kvcache_put(struct kvcache *c, uint64_t key, const char *value, size_t len, uint64_t expires)
{
    uint64_t words[KVCACHE_VALUE_MAX / KVCACHE_WORD] = {0};

    if (!c || len > c->value_max || (len && !value))
        return;
    if (len)
        memcpy(words, value, len);
    _Atomic uint64_t *s = kvcache_slot(c, key);
    uint64_t seq = atomic_load_explicit(&s[KV_SEQ], memory_order_relaxed);
    if ((seq & 1) || !atomic_compare_exchange_strong_explicit(
                         &s[KV_SEQ], &seq, seq + 1, memory_order_acquire, memory_order_relaxed))
        return; /* another writer has the slot: forgetting is always allowed */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s[KV_KEY], key, memory_order_relaxed);
    atomic_store_explicit(&s[KV_EXPIRES], expires, memory_order_relaxed);
    atomic_store_explicit(&s[KV_LEN], (uint64_t)len, memory_order_relaxed);
    for (size_t i = 0; i < (len + KVCACHE_WORD - 1) / KVCACHE_WORD; i++)
        atomic_store_explicit(&s[KV_VALUE + i], words[i], memory_order_relaxed);
    atomic_store_explicit(&s[KV_SEQ], seq + 2, memory_order_release);
}
