/* Workload requests: attest the caller, verify it is still the same process,
 * answer (DESIGN §2, "The flow of one request"). */
#include "workload.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const char *request_name(const Sockid__Workload__Request *req)
{
    switch (req->kind_case) {
    case SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI:
        return "whoami";
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN:
        return "fetch_token";
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE:
        return "fetch_bundle";
    case SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE:
        return "validate";
    case SOCKID__WORKLOAD__REQUEST__KIND_HEALTH:
        return "health";
    default:
        return "unknown";
    }
}

static void error_va(struct workload_ctx *ctx, Sockid__Workload__Response *resp,
                     Sockid__ErrorCode code, const char *fmt, va_list ap)
{
    /* The arena is sized far above any error; keep a constant answer for
     * the impossible case rather than none. Packing only reads it. */
    static const Sockid__Error oom = {
        PROTOBUF_C_MESSAGE_INIT(&sockid__error__descriptor),
        SOCKID__ERROR_CODE__INTERNAL,
        (char *)"the agent ran out of request memory; raise request_memory",
    };
    Sockid__Error *e = arena_alloc(ctx->arena, sizeof(*e));
    char *msg = arena_alloc(ctx->arena, 512);
    if (!e || !msg) {
        e = (Sockid__Error *)&oom;
    } else {
        sockid__error__init(e);
        (void)vsnprintf(msg, 512, fmt, ap);
        e->code = code;
        e->message = msg;
    }
    resp->kind_case = SOCKID__WORKLOAD__RESPONSE__KIND_ERROR;
    resp->error = e;
}

void workload_error(struct workload_ctx *ctx, Sockid__Workload__Response *resp,
                    Sockid__ErrorCode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_va(ctx, resp, code, fmt, ap);
    va_end(ap);
}

/* Refuses the request: one log line, one error response. */
static void refuse(struct workload_ctx *ctx, const struct workload_peer *wp,
                   const Sockid__Workload__Request *req, Sockid__Workload__Response *resp,
                   Sockid__ErrorCode code, const char *reason)
{
    log_refusal(wp->pid, wp->uid, request_name(req), reason);
    workload_error(ctx, resp, code, "%s", reason);
}

static Sockid__ErrorCode capture_code(int err)
{
    switch (err) {
    case -ESRCH:
        return SOCKID__ERROR_CODE__PEER_GONE;
    case -EPERM:
    case -ENOTSUP:
        return SOCKID__ERROR_CODE__PERMISSION_DENIED;
    default:
        return SOCKID__ERROR_CODE__INTERNAL;
    }
}

/* Attests the peer and confirms afterwards that what was read belongs to the
 * process that connected. On success ctx->selectors holds the sorted
 * selectors; on failure the response holds the refusal. */
static bool attest_peer(struct workload_ctx *ctx, const struct workload_peer *wp,
                        const Sockid__Workload__Request *req, Sockid__Workload__Response *resp)
{
    char reason[256];
    if (!wp->peer) {
        refuse(ctx, wp, req, resp, capture_code(wp->capture_error), wp->capture_reason);
        return false;
    }
    struct sockid_peer view;
    peer_view(wp->peer, 0, &view);
    selector_set_clear(ctx->selectors);
    int r = attest_run(ctx->attest, &view, ctx->cfg->attest_timeout_ms, ctx->selectors, reason,
                       sizeof(reason));
    if (r < 0) {
        refuse(ctx, wp, req, resp, SOCKID__ERROR_CODE__PERMISSION_DENIED, reason);
        return false;
    }
    r = peer_verify(wp->peer, ctx->features, reason, sizeof(reason));
    if (r < 0) {
        refuse(ctx, wp, req, resp,
               r == -ESRCH   ? SOCKID__ERROR_CODE__PEER_GONE
               : r == -EPERM ? SOCKID__ERROR_CODE__PERMISSION_DENIED
                             : SOCKID__ERROR_CODE__INTERNAL,
               reason);
        return false;
    }
    selector_set_sort(ctx->selectors);
    return true;
}

/* The caller's identities: entries whose selectors it all carries. Returns
 * how many, or -1 after refusing the request. */
static int match_entries(struct workload_ctx *ctx, const struct workload_peer *wp,
                         const Sockid__Workload__Request *req, Sockid__Workload__Response *resp)
{
    if (!ctx->entries)
        return 0;
    int n = entries_match(ctx->entries, ctx->selectors, ctx->matches, ENTRIES_MATCH_MAX);
    if (n < 0) {
        char reason[160];
        (void)snprintf(reason, sizeof(reason),
                       "this process matches more than %u entries; an operator should narrow "
                       "their selectors",
                       ENTRIES_MATCH_MAX);
        refuse(ctx, wp, req, resp, SOCKID__ERROR_CODE__INTERNAL, reason);
        return -1;
    }
    return n;
}

static void handle_whoami(struct workload_ctx *ctx, const struct workload_peer *wp,
                          const Sockid__Workload__Request *req, Sockid__Workload__Response *resp)
{
    if (!attest_peer(ctx, wp, req, resp))
        return;
    int n_ids = match_entries(ctx, wp, req, resp);
    if (n_ids < 0)
        return;
    const struct selector_set *set = ctx->selectors;
    Sockid__Workload__WhoAmIResponse *w = arena_alloc(ctx->arena, sizeof(*w));
    ProtobufCBinaryData *sels = arena_alloc(ctx->arena, sizeof(*sels) * (set->n ? set->n : 1));
    ProtobufCBinaryData *ids = arena_alloc(ctx->arena, sizeof(*ids) * (n_ids ? (size_t)n_ids : 1));
    if (!w || !sels || !ids) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL,
                       "the agent ran out of request memory; raise request_memory");
        return;
    }
    sockid__workload__who_am_iresponse__init(w);
    w->pid = wp->peer->pid;
    w->uid = wp->peer->uid;
    w->gid = wp->peer->gid;
    for (size_t i = 0; i < set->n; i++) {
        sels[i].data = (uint8_t *)set->items[i];
        sels[i].len = strlen(set->items[i]);
    }
    w->n_selectors = set->n;
    w->selectors = sels;
    /* The same SPIFFE ID from two entries is one identity. */
    size_t k = 0;
    for (int i = 0; i < n_ids; i++) {
        const char *id = ctx->matches[i]->spiffe_id;
        bool seen = false;
        for (size_t j = 0; j < k && !seen; j++)
            seen = ids[j].len == strlen(id) && memcmp(ids[j].data, id, ids[j].len) == 0;
        if (!seen)
            ids[k++] = (ProtobufCBinaryData){.len = strlen(id), .data = (uint8_t *)id};
    }
    w->n_spiffe_ids = k;
    w->spiffe_ids = ids;
    resp->kind_case = SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI;
    resp->whoami = w;
}

static void handle_health(struct workload_ctx *ctx, Sockid__Workload__Response *resp)
{
    Sockid__Workload__HealthResponse *h = arena_alloc(ctx->arena, sizeof(*h));
    if (!h) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL,
                       "the agent ran out of request memory; raise request_memory");
        return;
    }
    sockid__workload__health_response__init(h);
    h->version = (char *)SOCKID_VERSION;
    h->peer_pidfd = ctx->features->peer_pidfd;
    h->pidfd_get_info = ctx->features->pidfd_get_info;
    h->uptime_ms = monotonic_ms() - ctx->started_ms;
    h->attestors = (uint32_t)attest_count(ctx->attest);
    resp->kind_case = SOCKID__WORKLOAD__RESPONSE__KIND_HEALTH;
    resp->health = h;
}

void workload_handle(struct workload_ctx *ctx, const struct workload_peer *wp,
                     const Sockid__Workload__Request *req, Sockid__Workload__Response *resp)
{
    switch (req->kind_case) {
    case SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI:
        handle_whoami(ctx, wp, req, resp);
        return;
    case SOCKID__WORKLOAD__REQUEST__KIND_HEALTH:
        handle_health(ctx, resp);
        return;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN:
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE:
    case SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE:
        workload_error(ctx, resp, SOCKID__ERROR_CODE__UNIMPLEMENTED,
                       "%s is not available in this version of sockid-agent", request_name(req));
        return;
    default:
        break;
    }
    if (req->base.n_unknown_fields > 0)
        workload_error(ctx, resp, SOCKID__ERROR_CODE__UNIMPLEMENTED,
                       "unknown request type (field %u): this agent is older than the client; "
                       "upgrade sockid-agent",
                       req->base.unknown_fields[0].tag);
    else
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                       "the request names no call: set one of the Request fields");
}
