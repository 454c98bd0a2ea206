/* Prometheus text exposition (0.0.4) and the metrics socket's HTTP. */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const request_names[STATS_REQ_N] = {
    [STATS_REQ_WHOAMI] = "whoami",
    [STATS_REQ_FETCH_TOKEN] = "fetch_token",
    [STATS_REQ_FETCH_BUNDLE] = "fetch_bundle",
    [STATS_REQ_VALIDATE] = "validate",
    [STATS_REQ_HEALTH] = "health",
    [STATS_REQ_ADMIN] = "admin",
    [STATS_REQ_INVALID] = "invalid",
};

static const char *const refusal_names[STATS_REF_N] = {
    [STATS_REF_PEER_GONE] = "peer_gone",     [STATS_REF_CREDENTIALS] = "credentials_changed",
    [STATS_REF_NO_IDENTITY] = "no_identity", [STATS_REF_ATTESTOR] = "attestor_failed",
    [STATS_REF_INVALID] = "invalid_request", [STATS_REF_LIMIT] = "limit",
    [STATS_REF_NOT_ADMIN] = "not_admin",     [STATS_REF_INTERNAL] = "internal",
};

const char *metrics_request_name(enum stats_request kind)
{
    return (unsigned)kind < STATS_REQ_N ? request_names[kind] : NULL;
}

const char *metrics_refusal_name(enum stats_refusal reason)
{
    return (unsigned)reason < STATS_REF_N ? refusal_names[reason] : NULL;
}

static uint64_t histogram_count(const struct stats_histogram *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= STATS_BUCKETS; i++)
        n += stats_get(&h->buckets[i]);
    return n;
}

static uint64_t quantile(const struct stats_histogram *h, double q)
{
    uint64_t us = stats_quantile_us(h, q);
    return us == UINT32_MAX ? METRICS_LATENCY_ABOVE_MAX : us;
}

void metrics_latency(const struct stats_histogram *h, struct metrics_latency *ret)
{
    *ret = (struct metrics_latency){
        .count = histogram_count(h),
        .sum_us = stats_get(&h->sum_ns) / 1000u,
        .p50_us = quantile(h, 0.50),
        .p90_us = quantile(h, 0.90),
        .p99_us = quantile(h, 0.99),
    };
}

/* --- a growing text buffer ------------------------------------------------ */

struct text {
    char *data;
    size_t len, cap;
    bool failed; /* out of memory or over METRICS_TEXT_MAX: later writes do nothing */
};

static void text_put(struct text *t, const char *s, size_t n)
{
    if (t->failed)
        return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 8192;
        while (cap < t->len + n + 1)
            cap *= 2;
        char *d = cap <= METRICS_TEXT_MAX ? realloc(t->data, cap) : NULL;
        if (!d) {
            t->failed = true;
            return;
        }
        t->data = d;
        t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

static void text_puts(struct text *t, const char *s)
{
    text_put(t, s, strlen(s));
}

static void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_printf(struct text *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        text_put(t, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        t->failed = true;
        return;
    }
    va_start(ap, fmt);
    (void)vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    text_put(t, big, (size_t)n);
    free(big);
}

/* A label value as the format wants it: backslash, double quote and line
 * feed escaped; everything else as it is (the format is UTF-8). */
static void text_label_value(struct text *t, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            text_puts(t, "\\\\");
        else if (*p == '"')
            text_puts(t, "\\\"");
        else if (*p == '\n')
            text_puts(t, "\\n");
        else
            text_put(t, p, 1);
    }
}

/* --- families ---------------------------------------------------------------- */

static void family(struct text *t, const char *name, const char *type, const char *help)
{
    text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_u64(struct text *t, const char *name, uint64_t v)
{
    text_printf(t, "%s %" PRIu64 "\n", name, v);
}

static void sample_labeled(struct text *t, const char *name, const char *label, const char *value,
                           uint64_t v)
{
    text_printf(t, "%s{%s=\"", name, label);
    text_label_value(t, value);
    text_printf(t, "\"} %" PRIu64 "\n", v);
}

static void single(struct text *t, const char *name, const char *type, const char *help, uint64_t v)
{
    family(t, name, type, help);
    sample_u64(t, name, v);
}

/* n units of 10^-digits as a decimal number without exponent or trailing
 * zeros ("0.000025", "1", "0.5"): exact, unlike a double. */
static void text_decimal(struct text *t, uint64_t n, unsigned digits, uint64_t scale)
{
    uint64_t whole = n / scale, frac = n % scale;
    if (frac == 0) {
        text_printf(t, "%" PRIu64, whole);
        return;
    }
    char f[24];
    (void)snprintf(f, sizeof(f), "%0*" PRIu64, (int)digits, frac);
    size_t len = strlen(f);
    while (len > 0 && f[len - 1] == '0')
        len--;
    f[len] = '\0';
    text_printf(t, "%" PRIu64 ".%s", whole, f);
}

/* Buckets as the stats module counts them (each holds the observations up
 * to its bound, in whole microseconds), made cumulative as the format
 * wants; "+Inf" holds them all, and _count equals it by construction. */
static void histogram(struct text *t, const char *name, const char *help,
                      const struct stats_histogram *h)
{
    family(t, name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < STATS_BUCKETS; i++) {
        cumulative += stats_get(&h->buckets[i]);
        text_printf(t, "%s_bucket{le=\"", name);
        text_decimal(t, stats_bucket_us[i], 6, 1000000u);
        text_printf(t, "\"} %" PRIu64 "\n", cumulative);
    }
    cumulative += stats_get(&h->buckets[STATS_BUCKETS]);
    text_printf(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cumulative);
    text_printf(t, "%s_sum ", name);
    text_decimal(t, stats_get(&h->sum_ns), 9, 1000000000u);
    text_printf(t, "\n%s_count %" PRIu64 "\n", name, cumulative);
}

int metrics_render(const struct metrics_input *in, char **ret_text, size_t *ret_len)
{
    struct text t = {0};
    const struct stats *s = &in->stats;

    family(&t, "sockid_build_info", "gauge", "The agent's version, as a label; always 1.");
    sample_labeled(&t, "sockid_build_info", "version", in->version ? in->version : "", 1);

    family(&t, "sockid_uptime_seconds", "gauge", "Seconds since the agent started.");
    text_puts(&t, "sockid_uptime_seconds ");
    text_decimal(&t, in->uptime_ms, 3, 1000u);
    text_puts(&t, "\n");

    family(&t, "sockid_kernel_feature", "gauge",
           "Kernel interfaces the agent uses against PID reuse: 1 in use, 0 missing.");
    sample_labeled(&t, "sockid_kernel_feature", "feature", "so_peerpidfd", in->so_peerpidfd);
    sample_labeled(&t, "sockid_kernel_feature", "feature", "pidfd_get_info", in->pidfd_get_info);
    sample_labeled(&t, "sockid_kernel_feature", "feature", "so_peergroups", in->so_peergroups);

    family(&t, "sockid_attestor_info", "gauge", "Attestor plugins loaded, by name; always 1.");
    for (size_t i = 0; i < in->n_plugins && i < METRICS_MAX_PLUGINS; i++)
        sample_labeled(&t, "sockid_attestor_info", "name", in->plugins[i], 1);
    family(&t, "sockid_attestor_failures_total", "counter",
           "Attestor calls that failed or ran past their deadline, by attestor; the request "
           "went on without that attestor's selectors (or was refused, if it is required).");
    for (size_t i = 0; i < in->n_plugins && i < METRICS_MAX_PLUGINS; i++)
        sample_labeled(&t, "sockid_attestor_failures_total", "name", in->plugins[i],
                       stats_get(&in->stats.attestor_failures[i]));

    single(&t, "sockid_event_loops", "gauge", "Event loops serving the sockets.", in->event_loops);
    single(&t, "sockid_entries", "gauge", "Registration entries.", in->entries);
    single(&t, "sockid_signing_keys", "gauge",
           "Signing keys in the bundle, the active one and retired ones.", in->n_keys);
    single(&t, "sockid_signing_key_age_seconds", "gauge",
           "Age of the active signing key in seconds.",
           in->active_key_age_s > 0 ? (uint64_t)in->active_key_age_s : 0);

    single(&t, "sockid_connections_open", "gauge", "Workload and admin connections open.",
           stats_get(&s->connections_open));
    single(&t, "sockid_connections_accepted_total", "counter",
           "Workload and admin connections accepted.", stats_get(&s->connections_accepted));
    single(&t, "sockid_connections_rejected_total", "counter",
           "Connections refused at accept for a connection limit.",
           stats_get(&s->connections_rejected));

    family(&t, "sockid_requests_total", "counter",
           "Requests received, by kind (invalid: not a request).");
    for (size_t i = 0; i < STATS_REQ_N; i++)
        sample_labeled(&t, "sockid_requests_total", "kind", request_names[i],
                       stats_get(&s->requests[i]));
    family(&t, "sockid_refusals_total", "counter", "Requests and connections refused, by reason.");
    for (size_t i = 0; i < STATS_REF_N; i++)
        sample_labeled(&t, "sockid_refusals_total", "reason", refusal_names[i],
                       stats_get(&s->refused[i]));

    single(&t, "sockid_tokens_signed_total", "counter", "Tokens signed.",
           stats_get(&s->tokens_signed));
    single(&t, "sockid_token_cache_hits_total", "counter",
           "Tokens answered from the cache instead of signed.", stats_get(&s->token_cache_hits));

    histogram(&t, "sockid_request_duration_seconds",
              "Time from a request's frame to its reply being sent.", &s->request_latency);
    histogram(&t, "sockid_attestation_duration_seconds",
              "Time the attestor plugins took for one request.", &s->attest_latency);

    if (t.failed) {
        free(t.data);
        return -ENOMEM;
    }
    *ret_text = t.data;
    *ret_len = t.len;
    return 0;
}

/* --- HTTP ---------------------------------------------------------------- */

/* The end of the head (the blank line), or NULL. Bare LFs are accepted, as
 * most servers do. */
static const char *head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n')
            return buf + i + 2;
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n')
            return buf + i + 3;
    }
    return NULL;
}

static bool token_is(const char *s, size_t n, const char *want)
{
    return n == strlen(want) && memcmp(s, want, n) == 0;
}

int metrics_http_parse(const char *buf, size_t len, bool *ret_head_only)
{
    if (!head_end(buf, len))
        return len >= METRICS_HTTP_HEAD_MAX ? 431 : 0;
    const char *eol = memchr(buf, '\n', len);
    size_t line = (size_t)(eol - buf);
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    /* METHOD SP TARGET SP HTTP/x.y */
    const char *sp1 = memchr(buf, ' ', line);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', line - (size_t)(sp1 + 1 - buf)) : NULL;
    if (!sp1 || !sp2 || sp1 == buf || sp2 == sp1 + 1)
        return 400;
    const char *version = sp2 + 1;
    size_t version_len = line - (size_t)(version - buf);
    if (version_len < 8 || memcmp(version, "HTTP/", 5) != 0 || memchr(version, ' ', version_len))
        return 400;
    size_t method_len = (size_t)(sp1 - buf);
    bool head_only = token_is(buf, method_len, "HEAD");
    if (!head_only && !token_is(buf, method_len, "GET"))
        return 405;
    const char *target = sp1 + 1;
    size_t target_len = (size_t)(sp2 - target);
    /* The absolute form a proxy would send: drop the scheme and host. */
    if (target_len > 7 && memcmp(target, "http://", 7) == 0) {
        const char *slash = memchr(target + 7, '/', target_len - 7);
        if (!slash)
            return 404;
        target_len -= (size_t)(slash - target);
        target = slash;
    }
    const char *query = memchr(target, '?', target_len);
    size_t path_len = query ? (size_t)(query - target) : target_len;
    if (!token_is(target, path_len, "/metrics"))
        return 404;
    *ret_head_only = head_only;
    return 200;
}

int metrics_http_response(int status, const char *body, size_t body_len, bool head_only, char **ret,
                          size_t *ret_len)
{
    const char *reason, *type = "text/plain; charset=utf-8", *extra = "";
    switch (status) {
    case 200:
        reason = "OK";
        type = METRICS_CONTENT_TYPE;
        break;
    case 404:
        reason = "Not Found";
        body = "not found: the metrics are at /metrics\n";
        break;
    case 405:
        reason = "Method Not Allowed";
        body = "method not allowed: use GET /metrics\n";
        extra = "Allow: GET, HEAD\r\n";
        break;
    case 431:
        reason = "Request Header Fields Too Large";
        body = "the request head is over 4096 bytes\n";
        break;
    default:
        status = 400;
        reason = "Bad Request";
        body = "bad request: expected GET /metrics HTTP/1.x\n";
        break;
    }
    if (status != 200)
        body_len = strlen(body);
    struct text t = {0};
    text_printf(&t,
                "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                "Connection: close\r\n\r\n",
                status, reason, type, body_len, extra);
    if (!head_only)
        text_put(&t, body, body_len);
    if (t.failed) {
        free(t.data);
        return -ENOMEM;
    }
    *ret = t.data;
    *ret_len = t.len;
    return 0;
}
