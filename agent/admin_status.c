/* Admin calls that report on the agent: status and metrics. Both read one
 * moment of the agent (admin_metrics_input) and never change anything. */
#include "admin.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(ATTEST_MAX_PLUGINS <= METRICS_MAX_PLUGINS,
               "metrics_input must hold every plugin the agent may load");

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void admin_metrics_input(struct admin *a, struct metrics_input *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->version = SOCKID_VERSION;
    ret->uptime_ms = monotonic_ms() - a->started_ms;
    ret->so_peerpidfd = a->features.peer_pidfd;
    ret->pidfd_get_info = a->features.pidfd_get_info;
    ret->so_peergroups = a->features.peer_groups;
    size_t n = a->attest ? attest_count(a->attest) : 0;
    for (size_t i = 0; i < n && i < METRICS_MAX_PLUGINS; i++)
        ret->plugins[ret->n_plugins++] = attest_name(a->attest, i);
    ret->entries = admin_entry_count(a);
    struct keyset *ks = a->keys ? keys_current(a->keys) : NULL;
    if (ks) {
        const struct key *active = keyset_active(ks);
        ret->n_keys = keyset_count(ks);
        if (active) {
            int64_t now = (int64_t)time(NULL);
            memcpy(ret->active_kid, active->kid, sizeof(ret->active_kid));
            ret->active_key_created_at = active->created_at;
            /* A clock set back makes a key look younger than zero. */
            ret->active_key_age_s = now > active->created_at ? now - active->created_at : 0;
        }
        keyset_unref(ks);
    }
    if (a->stats_fn)
        a->stats_fn(a->stats_ctx, &ret->stats, &ret->event_loops);
}

static Sockid__Admin__Counter **counters(struct arena *arena, size_t n,
                                         const char *(*name)(unsigned),
                                         const _Atomic uint64_t *values)
{
    Sockid__Admin__Counter *c = arena_alloc(arena, sizeof(*c) * n);
    Sockid__Admin__Counter **v = arena_alloc(arena, sizeof(*v) * n);
    if (!c || !v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        sockid__admin__counter__init(&c[i]);
        c[i].name = (char *)name((unsigned)i);
        c[i].value = stats_get(&values[i]);
        v[i] = &c[i];
    }
    return v;
}

static const char *request_name(unsigned i)
{
    return metrics_request_name((enum stats_request)i);
}

static const char *refusal_name(unsigned i)
{
    return metrics_refusal_name((enum stats_refusal)i);
}

static Sockid__Admin__Latency *latency(struct arena *arena, const struct stats_histogram *h)
{
    Sockid__Admin__Latency *l = arena_alloc(arena, sizeof(*l));
    if (!l)
        return NULL;
    struct metrics_latency m;
    metrics_latency(h, &m);
    sockid__admin__latency__init(l);
    l->count = m.count;
    l->sum_us = m.sum_us;
    l->p50_us = m.p50_us;
    l->p90_us = m.p90_us;
    l->p99_us = m.p99_us;
    return l;
}

void admin_status(struct admin *a, struct arena *arena, Sockid__Admin__Response *resp)
{
    struct metrics_input in;
    admin_metrics_input(a, &in);
    const struct stats *s = &in.stats;

    Sockid__Admin__StatusResponse *st = arena_alloc(arena, sizeof(*st));
    Sockid__Admin__KernelFeatures *f = arena_alloc(arena, sizeof(*f));
    ProtobufCBinaryData *plugins =
        arena_alloc(arena, sizeof(*plugins) * (in.n_plugins ? in.n_plugins : 1));
    char *kid = arena_alloc(arena, sizeof(in.active_kid));
    if (!st || !f || !plugins || !kid)
        goto oom;
    sockid__admin__status_response__init(st);
    sockid__admin__kernel_features__init(f);
    f->so_peerpidfd = in.so_peerpidfd;
    f->pidfd_get_info = in.pidfd_get_info;
    f->so_peergroups = in.so_peergroups;
    st->version = (char *)in.version;
    st->uptime_ms = in.uptime_ms;
    st->features = f;
    for (size_t i = 0; i < in.n_plugins; i++)
        plugins[i] = (ProtobufCBinaryData){.len = strlen(in.plugins[i]),
                                           .data = (uint8_t *)(uintptr_t)in.plugins[i]};
    st->plugins = plugins;
    st->n_plugins = in.n_plugins;
    st->entries = in.entries;
    memcpy(kid, in.active_kid, sizeof(in.active_kid));
    st->active_kid = (ProtobufCBinaryData){.len = strlen(kid), .data = (uint8_t *)kid};
    st->active_key_created_at = in.active_key_created_at;
    st->active_key_age_seconds = in.active_key_age_s;
    st->keys = (uint32_t)in.n_keys;
    st->event_loops = in.event_loops;
    st->connections_open = stats_get(&s->connections_open);
    st->connections_accepted = stats_get(&s->connections_accepted);
    st->connections_rejected = stats_get(&s->connections_rejected);
    st->requests = counters(arena, STATS_REQ_N, request_name, s->requests);
    st->refusals = counters(arena, STATS_REF_N, refusal_name, s->refused);
    st->request_latency = latency(arena, &s->request_latency);
    st->attestation_latency = latency(arena, &s->attest_latency);
    if (!st->requests || !st->refusals || !st->request_latency || !st->attestation_latency)
        goto oom;
    st->n_requests = STATS_REQ_N;
    st->n_refusals = STATS_REF_N;
    st->tokens_signed = stats_get(&s->tokens_signed);
    st->token_cache_hits = stats_get(&s->token_cache_hits);
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_STATUS;
    resp->status = st;
    return;
oom:
    admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL,
                "the status did not fit in request_memory; raise request_memory");
}

void admin_metrics(struct admin *a, struct arena *arena, Sockid__Admin__Response *resp)
{
    struct metrics_input in;
    admin_metrics_input(a, &in);
    char *text = NULL;
    size_t len = 0;
    if (metrics_render(&in, &text, &len) < 0) {
        admin_error(arena, resp, SOCKID__ERROR_CODE__UNAVAILABLE,
                    "the agent is out of memory to render its metrics");
        return;
    }
    Sockid__Admin__MetricsResponse *m = arena_alloc(arena, sizeof(*m));
    uint8_t *copy = arena_alloc(arena, len ? len : 1);
    if (!m || !copy) {
        free(text);
        admin_error(arena, resp, SOCKID__ERROR_CODE__INTERNAL,
                    "the metrics did not fit in request_memory; raise request_memory");
        return;
    }
    memcpy(copy, text, len);
    free(text);
    sockid__admin__metrics_response__init(m);
    m->text = (ProtobufCBinaryData){.len = len, .data = copy};
    resp->kind_case = SOCKID__ADMIN__RESPONSE__KIND_METRICS;
    resp->metrics = m;
}
