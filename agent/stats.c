#include "stats.h"

static void add(_Atomic uint64_t *out, const _Atomic uint64_t *in)
{
    atomic_store_explicit(out,
                          atomic_load_explicit(out, memory_order_relaxed) +
                              atomic_load_explicit(in, memory_order_relaxed),
                          memory_order_relaxed);
}

static void add_histogram(struct stats_histogram *out, const struct stats_histogram *in)
{
    for (size_t i = 0; i <= STATS_BUCKETS; i++)
        add(&out->buckets[i], &in->buckets[i]);
    add(&out->sum_ns, &in->sum_ns);
}

void stats_accumulate(struct stats *out, const struct stats *in)
{
    for (size_t i = 0; i < STATS_REQ_N; i++)
        add(&out->requests[i], &in->requests[i]);
    for (size_t i = 0; i < STATS_REF_N; i++)
        add(&out->refused[i], &in->refused[i]);
    add(&out->connections_accepted, &in->connections_accepted);
    add(&out->connections_rejected, &in->connections_rejected);
    add(&out->connections_open, &in->connections_open);
    add(&out->tokens_signed, &in->tokens_signed);
    add(&out->token_cache_hits, &in->token_cache_hits);
    for (size_t i = 0; i < STATS_ATTESTORS_MAX; i++)
        add(&out->attestor_failures[i], &in->attestor_failures[i]);
    add_histogram(&out->request_latency, &in->request_latency);
    add_histogram(&out->attest_latency, &in->attest_latency);
}

uint64_t stats_quantile_us(const struct stats_histogram *h, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i <= STATS_BUCKETS; i++)
        total += stats_get(&h->buckets[i]);
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total)
        rank = total - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        seen += stats_get(&h->buckets[i]);
        if (seen > rank)
            return stats_bucket_us[i];
    }
    return UINT32_MAX;
}
