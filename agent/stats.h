/* Counters and latency histograms, one set per event loop.
 *
 * Each set has one writer, its loop, which updates a field with a relaxed
 * load and store (no locked instruction on the request path); readers (the
 * status call) load relaxed and sum the loops. 64-bit relaxed accesses never
 * tear, so a sum is at worst a moment old. */
#ifndef SOCKID_STATS_H
#define SOCKID_STATS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* As ATTEST_MAX_PLUGINS. */
#define STATS_ATTESTORS_MAX 32u

enum stats_request {
    STATS_REQ_WHOAMI,
    STATS_REQ_FETCH_TOKEN,
    STATS_REQ_FETCH_BUNDLE,
    STATS_REQ_VALIDATE,
    STATS_REQ_HEALTH,
    STATS_REQ_ADMIN,
    STATS_REQ_INVALID, /* not a request: bad frame or protobuf */
    STATS_REQ_N,
};

/* Why a request or connection was refused. */
enum stats_refusal {
    STATS_REF_PEER_GONE,   /* exited, or its pid was reused */
    STATS_REF_CREDENTIALS, /* credentials changed since connect */
    STATS_REF_NO_IDENTITY, /* no entry matches, or audience not allowed */
    STATS_REF_ATTESTOR,    /* a required attestor failed */
    STATS_REF_INVALID,     /* malformed request or argument */
    STATS_REF_LIMIT,       /* a connection or size limit */
    STATS_REF_NOT_ADMIN,   /* admin call by a non-admin */
    STATS_REF_INTERNAL,
    STATS_REF_N,
};

/* Upper bounds of the latency buckets, in microseconds; one more bucket
 * counts everything above the last. */
#define STATS_BUCKETS 16
static const uint32_t stats_bucket_us[STATS_BUCKETS] = {
    10,   25,    50,    100,   250,    500,    1000,   2500,
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000,
};

struct stats_histogram {
    _Atomic uint64_t buckets[STATS_BUCKETS + 1];
    _Atomic uint64_t sum_ns;
};

struct stats {
    _Atomic uint64_t requests[STATS_REQ_N];
    _Atomic uint64_t refused[STATS_REF_N];
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t connections_rejected; /* over a connection limit */
    _Atomic uint64_t connections_open;
    _Atomic uint64_t tokens_signed;
    _Atomic uint64_t token_cache_hits;
    /* Attestor calls that failed or ran late, by plugin index (the order
     * plugins were loaded); the request went on without their selectors. */
    _Atomic uint64_t attestor_failures[STATS_ATTESTORS_MAX];
    struct stats_histogram request_latency;
    struct stats_histogram attest_latency;
};

/* Single writer: no read-modify-write instruction needed. */
static inline void stats_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void stats_sub(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - v,
                          memory_order_relaxed);
}

static inline void stats_observe(struct stats_histogram *h, uint64_t ns)
{
    uint64_t us = ns / 1000u;
    size_t i = 0;
    while (i < STATS_BUCKETS && us > stats_bucket_us[i])
        i++;
    stats_add(&h->buckets[i], 1);
    stats_add(&h->sum_ns, ns);
}

static inline uint64_t stats_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* out += in, field by field (out is a plain snapshot being summed). */
void stats_accumulate(struct stats *out, const struct stats *in);

/* The latency below which fraction q (0..1) of observations fall, from the
 * histogram (the upper bound of the bucket it lands in), in microseconds;
 * 0 when empty; UINT32_MAX when it lands above the last bucket. */
uint64_t stats_quantile_us(const struct stats_histogram *h, double q);

#endif
