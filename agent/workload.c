/* Workload requests: attest the caller, verify it is still the same process,
 * answer (DESIGN §2, "The flow of one request"). */
#include "workload.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

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

/* Refuses the request: one log line, one counter, one error response. */
static void refuse(struct workload_ctx *ctx, const struct workload_peer *wp,
                   const Sockid__Workload__Request *req, Sockid__Workload__Response *resp,
                   Sockid__ErrorCode code, enum stats_refusal why, const char *reason)
{
    log_refusal(wp->pid, wp->uid, request_name(req), reason);
    if (ctx->stats)
        stats_add(&ctx->stats->refused[why], 1);
    workload_error(ctx, resp, code, "%s", reason);
}

/* An invalid argument: counted, answered, not logged (nothing was
 * attested, and a client's typo is not an event). */
static void invalid(struct workload_ctx *ctx, Sockid__Workload__Response *resp, const char *fmt,
                    ...) __attribute__((format(printf, 3, 4)));

static void invalid(struct workload_ctx *ctx, Sockid__Workload__Response *resp, const char *fmt,
                    ...)
{
    if (ctx->stats)
        stats_add(&ctx->stats->refused[STATS_REF_INVALID], 1);
    va_list ap;
    va_start(ap, fmt);
    error_va(ctx, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT, fmt, ap);
    va_end(ap);
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
        refuse(ctx, wp, req, resp, capture_code(wp->capture_error),
               wp->capture_error == -ESRCH ? STATS_REF_PEER_GONE : STATS_REF_CREDENTIALS,
               wp->capture_reason);
        return false;
    }
    struct sockid_peer view;
    peer_view(wp->peer, 0, &view);
    selector_set_clear(ctx->selectors);
    uint64_t t0 = monotonic_ns();
    uint32_t failed = 0;
    int r = attest_run_failed(ctx->attest, &view, ctx->attest_cache, ctx->cfg->attest_timeout_ms,
                              ctx->selectors, &failed, reason, sizeof(reason));
    /* An optional attestor that failed is not a refusal, but an operator
     * must be able to see it: counted per plugin, in status and metrics. */
    for (unsigned i = 0; failed && ctx->stats && i < STATS_ATTESTORS_MAX; i++)
        if (failed & (1u << i))
            stats_add(&ctx->stats->attestor_failures[i], 1);
    if (r == 0)
        r = peer_verify(wp->peer, ctx->features, reason, sizeof(reason));
    else
        r = -EACCES;
    if (ctx->stats)
        stats_observe(&ctx->stats->attest_latency, monotonic_ns() - t0);
    if (r < 0) {
        refuse(ctx, wp, req, resp,
               r == -ESRCH                   ? SOCKID__ERROR_CODE__PEER_GONE
               : r == -EPERM || r == -EACCES ? SOCKID__ERROR_CODE__PERMISSION_DENIED
                                             : SOCKID__ERROR_CODE__INTERNAL,
               r == -ESRCH    ? STATS_REF_PEER_GONE
               : r == -EPERM  ? STATS_REF_CREDENTIALS
               : r == -EACCES ? STATS_REF_ATTESTOR
                              : STATS_REF_INTERNAL,
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
        refuse(ctx, wp, req, resp, SOCKID__ERROR_CODE__INTERNAL, STATS_REF_INTERNAL, reason);
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

/* Copies a bytes field into the arena as a C string; refuses NULs. */
static const char *arena_str(struct workload_ctx *ctx, const ProtobufCBinaryData *b)
{
    if (b->len > 0 && memchr(b->data, '\0', b->len))
        return NULL;
    char *s = arena_alloc(ctx->arena, b->len + 1);
    if (!s)
        return NULL;
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Is every requested audience one the entry allows? */
static bool audiences_allowed(const struct entry *e, const char *const *aud, size_t n)
{
    if (e->n_audiences == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        bool found = false;
        for (size_t j = 0; j < e->n_audiences && !found; j++)
            found = strcmp(aud[i], e->audiences[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* A token for e and the sorted audiences: from the cache while more than
 * half its life is left, else freshly signed. The result is copied into the
 * arena (a later put in this request may evict the cached copy). */
static int token_for(struct workload_ctx *ctx, const struct entry *e, const char *const *aud,
                     size_t n_aud, const char *aud_key, const char **ret, int64_t *ret_exp)
{
    const struct key *key = keyset_active(ctx->keyset);
    if (!key)
        return -EAGAIN;
    uint32_t ttl = e->ttl < ctx->cfg->max_ttl ? e->ttl : ctx->cfg->max_ttl;
    int64_t exp;
    const char *tok = token_cache_get(ctx->tokens, e->id, aud_key, key->kid, ctx->now, &exp);
    char *copy = NULL;
    if (tok) {
        if (ctx->stats)
            stats_add(&ctx->stats->token_cache_hits, 1);
        copy = arena_alloc(ctx->arena, strlen(tok) + 1);
        if (!copy)
            return -ENOMEM;
        strcpy(copy, tok);
        goto out;
    }
    /* Another loop may hold it: the shared cache, under its lock. A failed
     * put anywhere only costs a later request a signature. */
    if (ctx->shared) {
        (void)pthread_mutex_lock(&ctx->shared->lock);
        tok = token_cache_get(ctx->shared->cache, e->id, aud_key, key->kid, ctx->now, &exp);
        if (tok) {
            copy = arena_alloc(ctx->arena, strlen(tok) + 1);
            if (copy)
                strcpy(copy, tok);
        }
        (void)pthread_mutex_unlock(&ctx->shared->lock);
        if (tok && !copy)
            return -ENOMEM;
        if (copy) {
            if (ctx->stats)
                stats_add(&ctx->stats->token_cache_hits, 1);
            /* Signed with this ttl, so issued at exp - ttl. */
            (void)token_cache_put(ctx->tokens, e->id, aud_key, key->kid, copy, exp - ttl, exp);
            goto out;
        }
    }
    char *signed_tok = NULL;
    exp = ctx->now + (int64_t)ttl;
    int r = token_sign(key, e->spiffe_id, aud, n_aud, ctx->now, exp, NULL, &signed_tok);
    if (r < 0)
        return r;
    if (ctx->stats)
        stats_add(&ctx->stats->tokens_signed, 1);
    (void)token_cache_put(ctx->tokens, e->id, aud_key, key->kid, signed_tok, ctx->now, exp);
    if (ctx->shared) {
        (void)pthread_mutex_lock(&ctx->shared->lock);
        (void)token_cache_put(ctx->shared->cache, e->id, aud_key, key->kid, signed_tok, ctx->now,
                              exp);
        (void)pthread_mutex_unlock(&ctx->shared->lock);
    }
    copy = arena_alloc(ctx->arena, strlen(signed_tok) + 1);
    if (copy)
        strcpy(copy, signed_tok);
    free(signed_tok);
    if (!copy)
        return -ENOMEM;
out:
    *ret = copy;
    *ret_exp = exp;
    return 0;
}

/* "permission denied: the entry for ID allows audiences a, b; asked for c" */
static void describe_audience_denial(const struct entry *e, const char *const *aud, size_t n_aud,
                                     char *out, size_t cap)
{
    size_t pos = (size_t)snprintf(out, cap, "permission denied: the entry for %s allows audiences ",
                                  e->spiffe_id);
    for (size_t i = 0; i < e->n_audiences && pos < cap; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, "%s%s", i ? ", " : "", e->audiences[i]);
    if (pos < cap)
        pos += (size_t)snprintf(out + pos, cap - pos, "; this request asked for ");
    for (size_t i = 0; i < n_aud && pos < cap; i++)
        pos += (size_t)snprintf(out + pos, cap - pos, "%s%s", i ? ", " : "", aud[i]);
}

static void handle_fetch_token(struct workload_ctx *ctx, const struct workload_peer *wp,
                               const Sockid__Workload__Request *req,
                               Sockid__Workload__Response *resp)
{
    const Sockid__Workload__FetchTokenRequest *f = req->fetch_token;
    char err[512];
    /* Arguments first: a malformed request costs no attestation. */
    if (f->n_audiences == 0 || f->n_audiences > TOKEN_MAX_AUDIENCES) {
        (void)snprintf(err, sizeof(err), "ask for 1 to %u audiences, got %zu", TOKEN_MAX_AUDIENCES,
                       f->n_audiences);
        invalid(ctx, resp, "%s", err);
        return;
    }
    const char **aud = arena_alloc(ctx->arena, sizeof(*aud) * f->n_audiences);
    if (!aud) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
        return;
    }
    size_t key_len = 0;
    for (size_t i = 0; i < f->n_audiences; i++) {
        char why[128];
        aud[i] = arena_str(ctx, &f->audiences[i]);
        if (!aud[i] || !token_audience_valid(aud[i], f->audiences[i].len, why, sizeof(why))) {
            invalid(ctx, resp, "audience %zu: %s", i + 1, aud[i] ? why : "holds a NUL byte");
            return;
        }
        key_len += f->audiences[i].len + 1;
    }
    const char *want = NULL;
    if (f->spiffe_id.len) {
        want = arena_str(ctx, &f->spiffe_id);
        if (!want || !entries_spiffe_id_valid(want, f->spiffe_id.len, ctx->cfg->trust_domain, err,
                                              sizeof(err))) {
            invalid(ctx, resp, "%s", want ? err : "the SPIFFE ID holds a NUL byte");
            return;
        }
    }
    /* The cache key: the audience set, sorted, duplicates dropped. */
    size_t n_aud = f->n_audiences;
    qsort(aud, n_aud, sizeof(*aud), cmp_cstr);
    size_t w = 1;
    for (size_t r = 1; r < n_aud; r++)
        if (strcmp(aud[r], aud[w - 1]) != 0)
            aud[w++] = aud[r];
    n_aud = w;
    char *aud_key = arena_alloc(ctx->arena, key_len + 1);
    if (!aud_key) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
        return;
    }
    aud_key[0] = '\0';
    for (size_t i = 0, pos = 0; i < n_aud; i++) {
        size_t l = strlen(aud[i]);
        memcpy(aud_key + pos, aud[i], l);
        pos += l;
        aud_key[pos++] = i + 1 < n_aud ? '\n' : '\0';
    }

    if (!attest_peer(ctx, wp, req, resp))
        return;
    int n = match_entries(ctx, wp, req, resp);
    if (n < 0)
        return;
    Sockid__Workload__FetchTokenResponse *fr = arena_alloc(ctx->arena, sizeof(*fr));
    Sockid__Workload__Token **toks = arena_alloc(ctx->arena, sizeof(*toks) * (n ? (size_t)n : 1));
    if (!fr || !toks) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
        return;
    }
    sockid__workload__fetch_token_response__init(fr);
    size_t count = 0;
    const struct entry *denied_aud_for = NULL;
    for (int i = 0; i < n; i++) {
        const struct entry *e = ctx->matches[i];
        if (want && strcmp(e->spiffe_id, want) != 0)
            continue;
        /* One token per SPIFFE ID: the first entry in the stable order that
         * allows these audiences. */
        bool seen = false;
        for (size_t j = 0; j < count && !seen; j++)
            seen = strcmp((const char *)toks[j]->spiffe_id.data, e->spiffe_id) == 0;
        if (seen)
            continue;
        if (!audiences_allowed(e, aud, n_aud)) {
            denied_aud_for = e;
            continue;
        }
        const char *tok;
        int64_t exp;
        int r = token_for(ctx, e, aud, n_aud, aud_key, &tok, &exp);
        if (r < 0) {
            workload_error(ctx, resp,
                           r == -EAGAIN ? SOCKID__ERROR_CODE__UNAVAILABLE
                                        : SOCKID__ERROR_CODE__INTERNAL,
                           "cannot sign a token: %s", strerror(-r));
            log_error("signing a token for %s failed: %s", e->spiffe_id, strerror(-r));
            return;
        }
        Sockid__Workload__Token *t = arena_alloc(ctx->arena, sizeof(*t));
        if (!t) {
            workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
            return;
        }
        sockid__workload__token__init(t);
        t->spiffe_id =
            (ProtobufCBinaryData){.len = strlen(e->spiffe_id), .data = (uint8_t *)e->spiffe_id};
        t->token = (ProtobufCBinaryData){.len = strlen(tok), .data = (uint8_t *)tok};
        t->expires_at = exp;
        toks[count++] = t;
    }
    if (count == 0) {
        if (denied_aud_for)
            describe_audience_denial(denied_aud_for, aud, n_aud, err, sizeof(err));
        else if (want)
            (void)snprintf(err, sizeof(err), "permission denied: this process has no identity %s",
                           want);
        else
            (void)snprintf(err, sizeof(err), "permission denied: no identity for this process");
        refuse(ctx, wp, req, resp, SOCKID__ERROR_CODE__PERMISSION_DENIED, STATS_REF_NO_IDENTITY,
               err);
        return;
    }
    fr->n_tokens = count;
    fr->tokens = toks;
    resp->kind_case = SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_TOKEN;
    resp->fetch_token = fr;
}

static void handle_fetch_bundle(struct workload_ctx *ctx, Sockid__Workload__Response *resp)
{
    Sockid__Workload__FetchBundleResponse *b = arena_alloc(ctx->arena, sizeof(*b));
    if (!b) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
        return;
    }
    sockid__workload__fetch_bundle_response__init(b);
    const char *jwks = keyset_jwks(ctx->keyset);
    b->jwks = (ProtobufCBinaryData){.len = strlen(jwks), .data = (uint8_t *)jwks};
    resp->kind_case = SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_BUNDLE;
    resp->fetch_bundle = b;
}

static void handle_validate(struct workload_ctx *ctx, const Sockid__Workload__Request *req,
                            Sockid__Workload__Response *resp)
{
    const Sockid__Workload__ValidateRequest *v = req->validate;
    char why[256];
    if (v->token.len == 0 || v->token.len > TOKEN_MAX_LEN) {
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                       "the token must be 1 to %u bytes, got %zu", TOKEN_MAX_LEN, v->token.len);
        return;
    }
    const char *aud = arena_str(ctx, &v->audience);
    if (!aud || !token_audience_valid(aud, v->audience.len, why, sizeof(why))) {
        invalid(ctx, resp, "audience: %s", aud ? why : "holds a NUL byte");
        return;
    }
    struct token_claims *claims = NULL;
    int r = token_validate(ctx->keyset, (const char *)v->token.data, v->token.len, aud,
                           ctx->cfg->trust_domain, ctx->now, &claims, why, sizeof(why));
    if (r < 0) {
        workload_error(ctx, resp,
                       r == -EINVAL ? SOCKID__ERROR_CODE__INVALID_ARGUMENT
                                    : SOCKID__ERROR_CODE__PERMISSION_DENIED,
                       "invalid token: %s", why);
        return;
    }
    Sockid__Workload__ValidateResponse *vr = arena_alloc(ctx->arena, sizeof(*vr));
    size_t sub_len = strlen(claims->sub), json_len = strlen(claims->claims_json);
    char *sub = arena_alloc(ctx->arena, sub_len + 1);
    char *json = arena_alloc(ctx->arena, json_len + 1);
    if (!vr || !sub || !json) {
        token_claims_free(claims);
        workload_error(ctx, resp, SOCKID__ERROR_CODE__INTERNAL, "out of request memory");
        return;
    }
    memcpy(sub, claims->sub, sub_len + 1);
    memcpy(json, claims->claims_json, json_len + 1);
    token_claims_free(claims);
    sockid__workload__validate_response__init(vr);
    vr->spiffe_id = (ProtobufCBinaryData){.len = sub_len, .data = (uint8_t *)sub};
    vr->claims_json = (ProtobufCBinaryData){.len = json_len, .data = (uint8_t *)json};
    resp->kind_case = SOCKID__WORKLOAD__RESPONSE__KIND_VALIDATE;
    resp->validate = vr;
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
        handle_fetch_token(ctx, wp, req, resp);
        return;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE:
        handle_fetch_bundle(ctx, resp);
        return;
    case SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE:
        handle_validate(ctx, req, resp);
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
