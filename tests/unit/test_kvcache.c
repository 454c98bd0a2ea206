/* kvcache (attestors/common/kvcache.h): the lock-free cache behind the
 * attestors' cgroup id checks and user and group names. What matters to a
 * user: an entry is never seen past its expiry (a renamed user's old name
 * goes away), a key never gets another key's value, and readers on several
 * threads never see a half-written value. */
#define _GNU_SOURCE /* rand_r */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcache.h"

static void test_new_refuses(void **state)
{
    (void)state;
    struct kvcache *c = (struct kvcache *)0x1;
    assert_int_equal(kvcache_new(0, 16, &c), -EINVAL);
    assert_int_equal(kvcache_new(3, 16, &c), -EINVAL); /* not a power of two */
    assert_int_equal(kvcache_new(KVCACHE_SLOTS_MAX * 2, 16, &c), -EINVAL);
    assert_int_equal(kvcache_new(8, 0, &c), -EINVAL);
    assert_int_equal(kvcache_new(8, KVCACHE_VALUE_MAX + 1, &c), -EINVAL);
    assert_int_equal(kvcache_new(8, 16, NULL), -EINVAL);
    assert_ptr_equal(c, (struct kvcache *)0x1);
    assert_null(kvcache_free(NULL));
}

static void test_get_put(void **state)
{
    (void)state;
    struct kvcache *c = NULL;
    char buf[KVCACHE_VALUE_MAX + 1];
    size_t len = 99;
    assert_int_equal(kvcache_new(16, 64, &c), 0);

    /* Empty: nothing, for any key, key 0 included. */
    assert_false(kvcache_get(c, 0, 0, buf, sizeof(buf), &len));
    assert_false(kvcache_get(c, 42, 0, buf, sizeof(buf), &len));
    assert_int_equal(len, 99);

    kvcache_put(c, 42, "alice", 5, KVCACHE_NEVER);
    assert_true(kvcache_get(c, 42, 0, buf, sizeof(buf), &len));
    assert_int_equal(len, 5);
    assert_string_equal(buf, "alice");
    assert_false(kvcache_get(c, 43, 0, buf, sizeof(buf), &len));

    /* An empty value is a value ("no such name"). */
    kvcache_put(c, 7, "", 0, KVCACHE_NEVER);
    assert_true(kvcache_get(c, 7, 0, buf, sizeof(buf), &len));
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");

    /* Replaced in place. */
    kvcache_put(c, 42, "bob", 3, KVCACHE_NEVER);
    assert_true(kvcache_get(c, 42, 0, buf, sizeof(buf), &len));
    assert_string_equal(buf, "bob");

    /* Values at the bound are kept, longer ones are not (and do not evict). */
    char max[65];
    memset(max, 'm', 64);
    max[64] = '\0';
    kvcache_put(c, 42, max, 64, KVCACHE_NEVER);
    assert_true(kvcache_get(c, 42, 0, buf, sizeof(buf), &len));
    assert_int_equal(len, 64);
    assert_string_equal(buf, max);
    char over[66];
    memset(over, 'o', 65);
    over[65] = '\0';
    kvcache_put(c, 42, over, 65, KVCACHE_NEVER);
    assert_true(kvcache_get(c, 42, 0, buf, sizeof(buf), &len));
    assert_string_equal(buf, max);

    /* A buffer that could not hold the largest value is refused. */
    assert_false(kvcache_get(c, 42, 0, buf, 64, &len));
    assert_null(kvcache_free(c));
}

/* The lifetime: a put at time t with expiry t + ttl is seen until just
 * before t + ttl and never after, with the clock the caller passes. */
static void test_expiry(void **state)
{
    (void)state;
    struct kvcache *c = NULL;
    char buf[KVCACHE_VALUE_MAX + 1];
    size_t len;
    const uint64_t t0 = 1000, ttl = 10000000000u; /* 10 s in ns */
    assert_int_equal(kvcache_new(256, 128, &c), 0);

    kvcache_put(c, 1000, "alice", 5, t0 + ttl);
    assert_true(kvcache_get(c, 1000, t0, buf, sizeof(buf), &len));
    assert_true(kvcache_get(c, 1000, t0 + ttl - 1, buf, sizeof(buf), &len));
    assert_string_equal(buf, "alice");
    assert_false(kvcache_get(c, 1000, t0 + ttl, buf, sizeof(buf), &len));
    assert_false(kvcache_get(c, 1000, UINT64_MAX - 1, buf, sizeof(buf), &len));

    /* After expiry the caller looks up again and stores the new truth (the
     * user was renamed), which is what the next reader sees. */
    kvcache_put(c, 1000, "alicia", 6, t0 + 2 * ttl);
    assert_true(kvcache_get(c, 1000, t0 + ttl, buf, sizeof(buf), &len));
    assert_string_equal(buf, "alicia");

    /* Never expires. */
    kvcache_put(c, 5, "x", 1, KVCACHE_NEVER);
    assert_true(kvcache_get(c, 5, UINT64_MAX - 1, buf, sizeof(buf), &len));
    assert_null(kvcache_free(c));
}

/* Keys that share a slot evict each other; they never answer for each
 * other. */
static void test_collisions(void **state)
{
    (void)state;
    struct kvcache *c = NULL;
    char buf[KVCACHE_VALUE_MAX + 1], want[32];
    size_t len;
    assert_int_equal(kvcache_new(1, 32, &c), 0); /* every key in the one slot */
    for (uint64_t k = 0; k < 100; k++) {
        int n = snprintf(want, sizeof(want), "v%llu", (unsigned long long)k);
        kvcache_put(c, k, want, (size_t)n, KVCACHE_NEVER);
        assert_true(kvcache_get(c, k, 0, buf, sizeof(buf), &len));
        assert_string_equal(buf, want);
        if (k > 0)
            assert_false(kvcache_get(c, k - 1, 0, buf, sizeof(buf), &len));
    }
    assert_null(kvcache_free(c));

    /* With many slots, most of a small set of keys stays. */
    assert_int_equal(kvcache_new(256, 32, &c), 0);
    for (uint64_t k = 0; k < 64; k++) {
        int n = snprintf(want, sizeof(want), "v%llu", (unsigned long long)k);
        kvcache_put(c, k << 32 | 1000, want, (size_t)n, KVCACHE_NEVER);
    }
    unsigned hits = 0;
    for (uint64_t k = 0; k < 64; k++) {
        (void)snprintf(want, sizeof(want), "v%llu", (unsigned long long)k);
        if (kvcache_get(c, k << 32 | 1000, 0, buf, sizeof(buf), &len)) {
            assert_string_equal(buf, want);
            hits++;
        }
    }
    assert_true(hits >= 32);
    assert_null(kvcache_free(c));
}

/* Writers and readers on several threads over few slots: every value read
 * is whole and is the one its key was written with. (Run under
 * ThreadSanitizer, this also checks that the seqlock has no data race.) */
#define RACE_THREADS 4
#define RACE_ROUNDS  200000

struct race {
    struct kvcache *c;
    unsigned seed;
    unsigned long hits, bad;
};

/* A value that says which key it belongs to, of a length that varies. */
static size_t race_value(uint64_t key, char *buf)
{
    size_t len = 8 + (size_t)(key % 50);
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (key + i) % 26);
    return len;
}

static void *race_thread(void *arg)
{
    struct race *r = arg;
    char buf[KVCACHE_VALUE_MAX + 1], want[64];
    size_t len;
    for (int i = 0; i < RACE_ROUNDS; i++) {
        uint64_t key = (uint64_t)(rand_r(&r->seed) % 40);
        if (i % 4 == 0) {
            size_t n = race_value(key, want);
            kvcache_put(r->c, key, want, n, KVCACHE_NEVER);
        } else if (kvcache_get(r->c, key, 0, buf, sizeof(buf), &len)) {
            size_t n = race_value(key, want);
            if (len != n || memcmp(buf, want, n) != 0 || buf[len] != '\0')
                r->bad++;
            r->hits++;
        }
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    struct kvcache *c = NULL;
    assert_int_equal(kvcache_new(8, 64, &c), 0);
    struct race r[RACE_THREADS];
    pthread_t th[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        r[i] = (struct race){.c = c, .seed = (unsigned)i * 7919u + 1};
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &r[i]), 0);
    }
    unsigned long hits = 0;
    for (int i = 0; i < RACE_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(r[i].bad, 0);
        hits += r[i].hits;
    }
    print_message("%lu consistent reads\n", hits);
    assert_true(hits > 0);
    assert_null(kvcache_free(c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_refuses), cmocka_unit_test(test_get_put),
        cmocka_unit_test(test_expiry),      cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
