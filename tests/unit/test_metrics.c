/* The Prometheus rendering from fixed inputs (exact lines, structure,
 * histogram cumulativeness, escaping), the latency summary, and the metrics
 * socket's HTTP request parsing and responses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

/* A plugin name that needs every escape a label value has. */
static const char odd_plugin[] = "we\"ird\\na\nme";

static void fixed_input(struct metrics_input *in)
{
    memset(in, 0, sizeof(*in));
    in->version = "0.1.0";
    in->uptime_ms = 12345;
    in->so_peerpidfd = true;
    in->pidfd_get_info = false;
    in->so_peergroups = true;
    in->plugins[0] = "unix";
    in->plugins[1] = odd_plugin;
    in->n_plugins = 2;
    atomic_store(&in->stats.attestor_failures[1], 5);
    in->entries = 3;
    strcpy(in->active_kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    in->active_key_created_at = 1700000000;
    in->active_key_age_s = 42;
    in->n_keys = 2;
    in->event_loops = 4;
    struct stats *s = &in->stats;
    stats_add(&s->requests[STATS_REQ_WHOAMI], 5);
    stats_add(&s->requests[STATS_REQ_FETCH_TOKEN], 7);
    stats_add(&s->requests[STATS_REQ_ADMIN], 2);
    stats_add(&s->refused[STATS_REF_NO_IDENTITY], 1);
    stats_add(&s->refused[STATS_REF_PEER_GONE], 2);
    stats_add(&s->connections_open, 3);
    stats_add(&s->connections_accepted, 11);
    stats_add(&s->connections_rejected, 1);
    stats_add(&s->tokens_signed, 4);
    stats_add(&s->token_cache_hits, 3);
    stats_observe(&s->request_latency, 5000);       /* 5 us: the 10 us bucket */
    stats_observe(&s->request_latency, 30000);      /* 30 us: the 50 us bucket */
    stats_observe(&s->request_latency, 2000000000); /* 2 s: above every bucket */
}

static char *render(const struct metrics_input *in)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(metrics_render(in, &text, &len), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

/* text holds line as a whole line. */
static void expect_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    }
    fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void test_names(void **state)
{
    (void)state;
    for (int i = 0; i < STATS_REQ_N; i++) {
        const char *n = metrics_request_name((enum stats_request)i);
        assert_non_null(n);
        assert_true(strspn(n, "abcdefghijklmnopqrstuvwxyz_") == strlen(n));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(n, metrics_request_name((enum stats_request)j));
    }
    for (int i = 0; i < STATS_REF_N; i++) {
        const char *n = metrics_refusal_name((enum stats_refusal)i);
        assert_non_null(n);
        assert_true(strspn(n, "abcdefghijklmnopqrstuvwxyz_") == strlen(n));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(n, metrics_refusal_name((enum stats_refusal)j));
    }
    assert_string_equal(metrics_request_name(STATS_REQ_FETCH_TOKEN), "fetch_token");
    assert_string_equal(metrics_refusal_name(STATS_REF_PEER_GONE), "peer_gone");
    assert_string_equal(metrics_refusal_name(STATS_REF_NO_IDENTITY), "no_identity");
    assert_null(metrics_request_name(STATS_REQ_N));
    assert_null(metrics_refusal_name(STATS_REF_N));
}

static void test_exact_lines(void **state)
{
    (void)state;
    struct metrics_input in;
    fixed_input(&in);
    char *t = render(&in);

    expect_line(t, "# HELP sockid_build_info The agent's version, as a label; always 1.");
    expect_line(t, "# TYPE sockid_build_info gauge");
    expect_line(t, "sockid_build_info{version=\"0.1.0\"} 1");
    expect_line(t, "# TYPE sockid_uptime_seconds gauge");
    expect_line(t, "sockid_uptime_seconds 12.345");
    expect_line(t, "sockid_kernel_feature{feature=\"so_peerpidfd\"} 1");
    expect_line(t, "sockid_kernel_feature{feature=\"pidfd_get_info\"} 0");
    expect_line(t, "sockid_kernel_feature{feature=\"so_peergroups\"} 1");
    expect_line(t, "sockid_attestor_info{name=\"unix\"} 1");
    expect_line(t, "# TYPE sockid_attestor_failures_total counter");
    expect_line(t, "sockid_attestor_failures_total{name=\"unix\"} 0");
    /* we"ird\na<LF>me: quote, backslash and line feed escaped. */
    expect_line(t, "sockid_attestor_info{name=\"we\\\"ird\\\\na\\nme\"} 1");
    expect_line(t, "sockid_attestor_failures_total{name=\"we\\\"ird\\\\na\\nme\"} 5");
    expect_line(t, "sockid_event_loops 4");
    expect_line(t, "sockid_entries 3");
    expect_line(t, "# TYPE sockid_signing_keys gauge");
    expect_line(t, "sockid_signing_keys 2");
    expect_line(t, "sockid_signing_key_age_seconds 42");
    expect_line(t, "# TYPE sockid_connections_open gauge");
    expect_line(t, "sockid_connections_open 3");
    expect_line(t, "# TYPE sockid_connections_accepted_total counter");
    expect_line(t, "sockid_connections_accepted_total 11");
    expect_line(t, "sockid_connections_rejected_total 1");
    expect_line(t, "# TYPE sockid_requests_total counter");
    expect_line(t, "sockid_requests_total{kind=\"whoami\"} 5");
    expect_line(t, "sockid_requests_total{kind=\"fetch_token\"} 7");
    expect_line(t, "sockid_requests_total{kind=\"fetch_bundle\"} 0");
    expect_line(t, "sockid_requests_total{kind=\"admin\"} 2");
    expect_line(t, "# TYPE sockid_refusals_total counter");
    expect_line(t, "sockid_refusals_total{reason=\"peer_gone\"} 2");
    expect_line(t, "sockid_refusals_total{reason=\"no_identity\"} 1");
    expect_line(t, "sockid_refusals_total{reason=\"not_admin\"} 0");
    expect_line(t, "sockid_tokens_signed_total 4");
    expect_line(t, "sockid_token_cache_hits_total 3");

    expect_line(t, "# TYPE sockid_request_duration_seconds histogram");
    expect_line(t, "sockid_request_duration_seconds_bucket{le=\"0.00001\"} 1");
    expect_line(t, "sockid_request_duration_seconds_bucket{le=\"0.000025\"} 1");
    expect_line(t, "sockid_request_duration_seconds_bucket{le=\"0.00005\"} 2");
    expect_line(t, "sockid_request_duration_seconds_bucket{le=\"0.0025\"} 2");
    expect_line(t, "sockid_request_duration_seconds_bucket{le=\"1\"} 2");
    expect_line(t, "sockid_request_duration_seconds_bucket{le=\"+Inf\"} 3");
    expect_line(t, "sockid_request_duration_seconds_sum 2.000035");
    expect_line(t, "sockid_request_duration_seconds_count 3");
    expect_line(t, "# TYPE sockid_attestation_duration_seconds histogram");
    expect_line(t, "sockid_attestation_duration_seconds_bucket{le=\"+Inf\"} 0");
    expect_line(t, "sockid_attestation_duration_seconds_sum 0");
    expect_line(t, "sockid_attestation_duration_seconds_count 0");
    free(t);
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}

/* Every line is a # HELP or # TYPE line, or "name{labels} value"; each
 * family's HELP and TYPE come once, before its samples; a sample belongs
 * to the family declared last (histograms: _bucket, _sum, _count). */
static void test_structure(void **state)
{
    (void)state;
    struct metrics_input in;
    fixed_input(&in);
    char *t = render(&in);
    char family[128] = "", type[32] = "";
    char seen[32][128];
    size_t families = 0;
    for (char *line = t, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(line + 7, "%127s", name), 1);
            for (size_t i = 0; i < families; i++)
                assert_string_not_equal(name, seen[i]); /* one HELP per family */
            assert_true(families < 32);
            snprintf(seen[families++], sizeof(seen[0]), "%s", name);
            snprintf(family, sizeof(family), "%s", name);
            type[0] = '\0';
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            if (strcmp(type, "counter") == 0)
                assert_non_null(strstr(name, "_total"));
            continue;
        }
        assert_true(line[0] != '#');
        assert_true(type[0] != '\0'); /* samples come after HELP and TYPE */
        size_t n = 0;
        while (name_char(line[n], n == 0))
            n++;
        assert_true(n > 0);
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)n, line);
        if (strcmp(type, "histogram") == 0) {
            size_t f = strlen(family);
            assert_memory_equal(name, family, f);
            assert_true(strcmp(name + f, "_bucket") == 0 || strcmp(name + f, "_sum") == 0 ||
                        strcmp(name + f, "_count") == 0);
        } else {
            assert_string_equal(name, family);
        }
        const char *p = line + n;
        if (*p == '{') {
            /* label="value"(,label="value")*} with escapes inside values */
            p++;
            for (;;) {
                size_t k = 0;
                while (name_char(p[k], k == 0))
                    k++;
                assert_true(k > 0);
                p += k;
                assert_memory_equal(p, "=\"", 2);
                p += 2;
                while (*p != '"') {
                    assert_true(*p != '\0' && *p != '\n');
                    if (*p == '\\') {
                        assert_true(p[1] == '\\' || p[1] == '"' || p[1] == 'n');
                        p++;
                    }
                    p++;
                }
                p++;
                if (*p == '}')
                    break;
                assert_int_equal(*p, ',');
                p++;
            }
            p++;
        }
        assert_int_equal(*p, ' ');
        char *end;
        (void)strtod(p + 1, &end);
        assert_true(end > p + 1 && *end == '\0');
    }
    assert_int_equal(families, 18);
    free(t);
}

/* Buckets never decrease, le grows, and +Inf equals _count and the number
 * of observations, wherever the observations fall. */
static void test_histogram_cumulative(void **state)
{
    (void)state;
    struct metrics_input in;
    memset(&in, 0, sizeof(in));
    in.version = "x";
    uint64_t observed = 0, sum_ns = 0;
    for (uint64_t ns = 1; ns < 3000000000u; ns = ns * 3 + 7) {
        stats_observe(&in.stats.attest_latency, ns);
        observed++;
        sum_ns += ns;
    }
    char *t = render(&in);
    const char *prefix = "sockid_attestation_duration_seconds_bucket{le=\"";
    double last_le = -1;
    uint64_t last = 0, inf = UINT64_MAX;
    size_t buckets = 0;
    for (const char *p = t; (p = strstr(p, prefix)) != NULL; p++) {
        p += strlen(prefix);
        unsigned long long v;
        if (strncmp(p, "+Inf\"} ", 7) == 0) {
            assert_int_equal(sscanf(p + 7, "%llu", &v), 1);
            inf = v;
            continue;
        }
        char *end;
        double le = strtod(p, &end);
        assert_true(le > last_le);
        last_le = le;
        assert_int_equal(sscanf(end, "\"} %llu", &v), 1);
        assert_true(v >= last);
        last = v;
        buckets++;
    }
    assert_int_equal(buckets, STATS_BUCKETS);
    assert_true(last_le == 1.0);
    assert_int_equal(inf, observed);
    assert_true(inf >= last);
    char line[128];
    snprintf(line, sizeof(line), "sockid_attestation_duration_seconds_count %llu",
             (unsigned long long)observed);
    expect_line(t, line);
    snprintf(line, sizeof(line), "sockid_attestation_duration_seconds_sum %llu.%09llu",
             (unsigned long long)(sum_ns / 1000000000u),
             (unsigned long long)(sum_ns % 1000000000u));
    while (line[strlen(line) - 1] == '0')
        line[strlen(line) - 1] = '\0';
    expect_line(t, line);
    free(t);
}

static void test_latency(void **state)
{
    (void)state;
    struct stats_histogram h;
    memset(&h, 0, sizeof(h));
    struct metrics_latency l;
    metrics_latency(&h, &l);
    assert_int_equal(l.count, 0);
    assert_int_equal(l.p50_us, 0);
    assert_int_equal(l.p99_us, 0);

    for (int i = 0; i < 98; i++)
        stats_observe(&h, 40000);   /* 40 us: the 50 us bucket */
    stats_observe(&h, 700000);      /* 700 us: the 1000 us bucket */
    stats_observe(&h, 5000000000u); /* 5 s: above every bucket */
    metrics_latency(&h, &l);
    assert_int_equal(l.count, 100);
    assert_int_equal(l.sum_us, (98u * 40000u + 700000u + 5000000000u) / 1000u);
    assert_int_equal(l.p50_us, 50);
    assert_int_equal(l.p90_us, 50);
    assert_true(l.p99_us == METRICS_LATENCY_ABOVE_MAX);
}

static void test_empty_input(void **state)
{
    (void)state;
    struct metrics_input in;
    memset(&in, 0, sizeof(in));
    char *t = render(&in);
    expect_line(t, "sockid_build_info{version=\"\"} 1");
    expect_line(t, "sockid_uptime_seconds 0");
    expect_line(t, "# TYPE sockid_attestor_info gauge");
    assert_null(strstr(t, "sockid_attestor_info{"));
    expect_line(t, "sockid_request_duration_seconds_count 0");
    free(t);
}

static int parse(const char *req, bool *head_only)
{
    *head_only = false;
    return metrics_http_parse(req, strlen(req), head_only);
}

static void test_http_parse(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        int status;
        bool head_only;
    } cases[] = {
        {"GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/7.88.1\r\n\r\n", 200, false},
        {"GET /metrics HTTP/1.0\r\n\r\n", 200, false},
        {"GET /metrics HTTP/1.0\n\n", 200, false},
        {"GET /metrics?name[]=x HTTP/1.1\r\n\r\n", 200, false},
        {"GET http://localhost/metrics HTTP/1.1\r\n\r\n", 200, false},
        {"HEAD /metrics HTTP/1.1\r\n\r\n", 200, true},
        {"GET / HTTP/1.1\r\n\r\n", 404, false},
        {"GET /metricsx HTTP/1.1\r\n\r\n", 404, false},
        {"GET /metrics/ HTTP/1.1\r\n\r\n", 404, false},
        {"GET http://localhost HTTP/1.1\r\n\r\n", 404, false},
        {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, false},
        {"get /metrics HTTP/1.1\r\n\r\n", 405, false},
        {"DELETE / HTTP/1.1\r\n\r\n", 405, false},
        {"GET /metrics\r\n\r\n", 400, false},
        {"GET  /metrics HTTP/1.1\r\n\r\n", 400, false},
        {"GET /metrics FTP/1.1\r\n\r\n", 400, false},
        {"GET /metrics HTTP/1.1 x\r\n\r\n", 400, false},
        {" /metrics HTTP/1.1\r\n\r\n", 400, false},
        {"\r\n\r\n", 400, false},
        /* Incomplete heads: read more. */
        {"", 0, false},
        {"GET /metrics HTTP/1.1\r\n", 0, false},
        {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r", 0, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool head_only;
        int status = parse(cases[i].req, &head_only);
        if (status != cases[i].status)
            fail_msg("\"%s\": status %d, expected %d", cases[i].req, status, cases[i].status);
        if (status == 200)
            assert_int_equal(head_only, cases[i].head_only);
    }

    /* A head that never ends is refused once it fills the buffer. */
    char big[METRICS_HTTP_HEAD_MAX];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    bool head_only;
    assert_int_equal(metrics_http_parse(big, sizeof(big) - 1, &head_only), 0);
    assert_int_equal(metrics_http_parse(big, sizeof(big), &head_only), 431);
}

static void test_http_response(void **state)
{
    (void)state;
    const char body[] = "sockid_entries 3\n";
    char *r = NULL;
    size_t len = 0;
    assert_int_equal(metrics_http_response(200, body, strlen(body), false, &r, &len), 0);
    const char *want = "HTTP/1.0 200 OK\r\n"
                       "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                       "Content-Length: 17\r\n"
                       "Connection: close\r\n"
                       "\r\n"
                       "sockid_entries 3\n";
    assert_int_equal(len, strlen(want));
    assert_string_equal(r, want);
    free(r);

    assert_int_equal(metrics_http_response(200, body, strlen(body), true, &r, &len), 0);
    assert_int_equal(len, strlen(want) - strlen(body));
    assert_memory_equal(r, want, len);
    free(r);

    assert_int_equal(metrics_http_response(405, NULL, 0, false, &r, &len), 0);
    assert_non_null(strstr(r, "HTTP/1.0 405 Method Not Allowed\r\n"));
    assert_non_null(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
    free(r);
    assert_int_equal(metrics_http_response(404, NULL, 0, false, &r, &len), 0);
    assert_true(strncmp(r, "HTTP/1.0 404 Not Found\r\n", 24) == 0);
    /* Content-Length counts the body exactly. */
    const char *b = strstr(r, "\r\n\r\n") + 4;
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(b));
    assert_non_null(strstr(r, cl));
    free(r);
    assert_int_equal(metrics_http_response(431, NULL, 0, false, &r, &len), 0);
    assert_true(strncmp(r, "HTTP/1.0 431 ", 13) == 0);
    free(r);
    assert_int_equal(metrics_http_response(400, NULL, 0, false, &r, &len), 0);
    assert_true(strncmp(r, "HTTP/1.0 400 Bad Request\r\n", 26) == 0);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),      cmocka_unit_test(test_exact_lines),
        cmocka_unit_test(test_structure),  cmocka_unit_test(test_histogram_cumulative),
        cmocka_unit_test(test_latency),    cmocka_unit_test(test_empty_input),
        cmocka_unit_test(test_http_parse), cmocka_unit_test(test_http_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
