/* Percentiles, medians over runs, the table, the JSON, and the issue's
 * targets checked against this run's numbers.
 *
 * Ratios are taken per run (agent over floor, in the same run and
 * scenario) and then their median over runs: each run's floor is measured
 * on the same noisy machine within seconds of its agent, so a per-run
 * ratio cancels most of the machine's drift, which a ratio of medians
 * would not. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "bench.h"

#define REPORT_MIB 1048576.0

struct report_stat {
    double med, min, max;
    unsigned n;
};

static int report_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int report_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least q of the samples at or
 * below it. */
static double report_rank(const uint32_t *sorted, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t k = (size_t)ceil(q * (double)n);
    return sorted[k ? k - 1 : 0] / 1000.0;
}

void report_cell(struct client_round *round, struct bench_cell *cell)
{
    qsort(round->lat_ns, round->n_lat, sizeof(*round->lat_ns), report_cmp_u32);
    cell->present = true;
    cell->ok = round->ok;
    cell->errors = round->errors;
    cell->rps = round->elapsed_s > 0 ? (double)round->ok / round->elapsed_s : 0;
    cell->p50_us = report_rank(round->lat_ns, round->n_lat, 0.50);
    cell->p90_us = report_rank(round->lat_ns, round->n_lat, 0.90);
    cell->p99_us = report_rank(round->lat_ns, round->n_lat, 0.99);
    cell->max_us = report_rank(round->lat_ns, round->n_lat, 1.0);
    cell->cpu_us_per_req = round->ok ? cell->cpu_ms * 1000.0 / (double)round->ok : NAN;
    cell->client_cpu_us_per_req =
        round->ok ? cell->client_cpu_ms * 1000.0 / (double)round->ok : NAN;
    (void)snprintf(cell->first_error, sizeof(cell->first_error), "%s", round->first_error);
}

/* Median, min and max of the finite values among v[0..n). */
static struct report_stat report_stat(const double *v, unsigned n)
{
    double s[BENCH_RUNS_MAX * BENCH_STARTS_MAX];
    unsigned k = 0;
    for (unsigned i = 0; i < n && k < sizeof(s) / sizeof(s[0]); i++)
        if (isfinite(v[i]))
            s[k++] = v[i];
    if (k == 0)
        return (struct report_stat){NAN, NAN, NAN, 0};
    qsort(s, k, sizeof(*s), report_cmp_double);
    double med = k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
    return (struct report_stat){med, s[0], s[k - 1], k};
}

/* --- what is aggregated ----------------------------------------------- */

enum report_metric {
    M_RPS,
    M_P50,
    M_P90,
    M_P99,
    M_MAX,
    M_CPU_US,
    M_CLIENT_CPU_US,
    M_RSS,
    M_HWM,
    M_RATIO_P50,
    M_RATIO_P99,
    M_RATIO_RPS,
    M_COUNT
};

static const char *const report_metric_names[M_COUNT] = {
    "rps",
    "p50_us",
    "p90_us",
    "p99_us",
    "max_us",
    "cpu_us_per_req",
    "client_cpu_us_per_req",
    "rss_mib",
    "hwm_mib",
    "p50_x_floor",
    "p99_x_floor",
    "rps_x_floor",
};

static double report_value(const struct bench_run *r, int s, int t, enum report_metric m)
{
    const struct bench_cell *c = &r->cells[s][t], *f = &r->cells[s][BENCH_FLOOR];
    if (!c->present)
        return NAN;
    switch (m) {
    case M_RPS:
        return c->rps;
    case M_P50:
        return c->p50_us;
    case M_P90:
        return c->p90_us;
    case M_P99:
        return c->p99_us;
    case M_MAX:
        return c->max_us;
    case M_CPU_US:
        return c->cpu_us_per_req;
    case M_CLIENT_CPU_US:
        return c->client_cpu_us_per_req;
    case M_RSS:
        return c->rss_mib;
    case M_HWM:
        return c->hwm_mib;
    case M_RATIO_P50:
        return f->present ? c->p50_us / f->p50_us : NAN;
    case M_RATIO_P99:
        return f->present ? c->p99_us / f->p99_us : NAN;
    case M_RATIO_RPS:
        return f->present ? c->rps / f->rps : NAN;
    default:
        return NAN;
    }
}

static struct report_stat report_metric(const struct bench_run *runs, unsigned n, int s, int t,
                                        enum report_metric m)
{
    double v[BENCH_RUNS_MAX] = {0};
    for (unsigned i = 0; i < n; i++)
        v[i] = report_value(&runs[i], s, t, m);
    return report_stat(v, n);
}

static uint64_t report_errors(const struct bench_run *runs, unsigned n, int s, int t)
{
    uint64_t e = 0;
    for (unsigned i = 0; i < n; i++)
        e += runs[i].cells[s][t].errors;
    return e;
}

static bool report_scenario_present(const struct bench_run *runs, unsigned n, int s, int t)
{
    for (unsigned i = 0; i < n; i++)
        if (runs[i].cells[s][t].present)
            return true;
    return false;
}

/* A per-run figure stored at one offset of struct bench_run. */
static struct report_stat report_field(const struct bench_run *runs, unsigned n,
                                       const double *first)
{
    double v[BENCH_RUNS_MAX] = {0};
    size_t off = (size_t)((const char *)first - (const char *)&runs[0]);
    for (unsigned i = 0; i < n; i++)
        v[i] = *(const double *)((const char *)&runs[i] + off);
    return report_stat(v, n);
}

static struct report_stat report_ready_100k(const struct bench_run *runs, unsigned n)
{
    double v[BENCH_RUNS_MAX * BENCH_STARTS_MAX] = {0};
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < runs[i].n_ready_100k; j++)
            v[k++] = runs[i].ready_100k_ms[j];
    return report_stat(v, k);
}

static int report_find(const char *name, unsigned clients)
{
    for (int s = 0; s < BENCH_SCENARIOS; s++)
        if (strcmp(bench_scenarios[s].name, name) == 0 && bench_scenarios[s].clients == clients)
            return s;
    return -1;
}

/* --- targets ----------------------------------------------------------- */

struct report_target {
    const char *what;
    double value, limit;
    bool at_most; /* value <= limit meets it; else value >= limit */
    const char *unit;
};

/* The targets against these runs' medians; fills up to cap and
 * returns how many could be judged. */
static size_t report_targets(const struct bench_run *runs, unsigned n, struct report_target *out,
                             size_t cap)
{
    size_t k = 0;
    int fresh = report_find("fresh", 1), pers = report_find("persistent", 64);
    double scale[BENCH_RUNS_MAX] = {0};
#define ADD(w, v, l, most, u)                                                                      \
    do {                                                                                           \
        if (k < cap && isfinite(v))                                                                \
            out[k++] = (struct report_target){w, v, l, most, u};                                   \
    } while (0)
    if (fresh >= 0) {
        ADD("fresh, cached token: agent p50 / floor p50",
            report_metric(runs, n, fresh, BENCH_AGENT_10, M_RATIO_P50).med, 1.3, true, "x");
        ADD("fresh, cached token: agent p99 / floor p99",
            report_metric(runs, n, fresh, BENCH_AGENT_10, M_RATIO_P99).med, 2.0, true, "x");
    }
    if (pers >= 0)
        ADD("persistent, 64 clients: agent req/s / floor req/s",
            report_metric(runs, n, pers, BENCH_AGENT_10, M_RATIO_RPS).med, 0.7, false, "x");
    if (fresh >= 0) {
        for (unsigned i = 0; i < n; i++) {
            const struct bench_cell *a = &runs[i].cells[fresh][BENCH_AGENT_100K];
            const struct bench_cell *b = &runs[i].cells[fresh][BENCH_AGENT_10];
            scale[i] = a->present && b->present ? a->p50_us / b->p50_us : NAN;
        }
        ADD("100,000 entries: fetch p50 / 10-entry p50", report_stat(scale, n).med, 1.2, true, "x");
    }
    ADD("100,000 entries: agent start to ready", report_ready_100k(runs, n).med, 100, true, "ms");
    ADD("RSS idle (10 entries, no connections)",
        report_field(runs, n, &runs[0].idle_rss_mib[BENCH_AGENT_10]).med, 4, true, "MiB");
    double held = report_field(runs, n, &runs[0].held_rss_mib[BENCH_AGENT_100K]).med;
    ADD("RSS with 100,000 entries and the held connections", held, 32, true, "MiB");
    uint64_t errors = 0;
    for (unsigned i = 0; i < n; i++)
        errors += runs[i].errors;
    ADD("errors in every run", (double)errors, 0, true, "");
#undef ADD
    return k;
}

static bool report_met(const struct report_target *t)
{
    return t->at_most ? t->value <= t->limit : t->value >= t->limit;
}

/* --- the table ------------------------------------------------------------ */

/* "median (min..max)", or the value alone for one sample, or "-". */
static const char *report_fmt(char *buf, size_t len, struct report_stat st, int prec)
{
    if (!isfinite(st.med))
        (void)snprintf(buf, len, "-");
    else if (st.n <= 1 || st.min == st.max)
        (void)snprintf(buf, len, "%.*f", prec, st.med);
    else
        (void)snprintf(buf, len, "%.*f (%.*f..%.*f)", prec, st.med, prec, st.min, prec, st.max);
    return buf;
}

static void report_num(FILE *out, double v, int width, int prec)
{
    if (isfinite(v))
        fprintf(out, " %*.*f", width, prec, v);
    else
        fprintf(out, " %*s", width, "-");
}

void report_table(FILE *out, const struct bench_options *o, const struct bench_run *runs,
                  unsigned n)
{
    fprintf(out,
            "sockid-bench: %u run%s; %u event loops in the agent and the floor; rounds of %.1f s, "
            "%u per server and scenario, interleaved%s\n",
            n, n == 1 ? "" : "s", o->workers, o->round_s, o->rounds,
            o->short_mode ? " (--short: a smoke run, not a measurement)" : "");
    fprintf(out, "%s; %u attestor plugins loaded from %s\n",
            n > 1 ? "medians over the runs" : "one run", runs[0].attestors,
            o->plugin_dir ? o->plugin_dir : "the agent's default plugin directory");
    fprintf(out, "latencies in microseconds; CPU is the server's own, per request; x floor: "
                 "the server over the floor, same run\n\n");
    fprintf(out, "%-10s %4s %-11s %9s %8s %8s %8s %9s %6s %8s %7s %7s %7s %7s\n", "scenario", "cl",
            "server", "req/s", "p50", "p90", "p99", "max", "errors", "cpu/req", "RSS MiB", "x p50",
            "x p99", "x req/s");
    for (int s = 0; s < BENCH_SCENARIOS; s++) {
        for (int t = 0; t < BENCH_TARGETS; t++) {
            if (!report_scenario_present(runs, n, s, t))
                continue;
            fprintf(out, "%-10s %4u %-11s", bench_scenarios[s].name, bench_scenarios[s].clients,
                    bench_target_names[t]);
            report_num(out, report_metric(runs, n, s, t, M_RPS).med, 9, 0);
            report_num(out, report_metric(runs, n, s, t, M_P50).med, 8, 1);
            report_num(out, report_metric(runs, n, s, t, M_P90).med, 8, 1);
            report_num(out, report_metric(runs, n, s, t, M_P99).med, 8, 1);
            report_num(out, report_metric(runs, n, s, t, M_MAX).med, 9, 0);
            fprintf(out, " %6llu", (unsigned long long)report_errors(runs, n, s, t));
            report_num(out, report_metric(runs, n, s, t, M_CPU_US).med, 8, 1);
            report_num(out, report_metric(runs, n, s, t, M_CLIENT_CPU_US).med, 8, 1);
            report_num(out, report_metric(runs, n, s, t, M_RSS).med, 7, 1);
            if (t == BENCH_FLOOR) {
                fprintf(out, "\n");
                continue;
            }
            report_num(out, report_metric(runs, n, s, t, M_RATIO_P50).med, 7, 2);
            report_num(out, report_metric(runs, n, s, t, M_RATIO_P99).med, 7, 2);
            report_num(out, report_metric(runs, n, s, t, M_RATIO_RPS).med, 7, 2);
            fprintf(out, "\n");
        }
    }
    if (n > 1) {
        fprintf(out, "\nspread over the %u runs (min..max)\n", n);
        fprintf(out, "%-10s %4s %-11s %19s %15s %15s %13s %13s %13s\n", "scenario", "cl", "server",
                "req/s", "p50", "p99", "x p50", "x p99", "x req/s");
        for (int s = 0; s < BENCH_SCENARIOS; s++)
            for (int t = 0; t < BENCH_TARGETS; t++) {
                if (!report_scenario_present(runs, n, s, t))
                    continue;
                struct report_stat rps = report_metric(runs, n, s, t, M_RPS),
                                   p50 = report_metric(runs, n, s, t, M_P50),
                                   p99 = report_metric(runs, n, s, t, M_P99);
                fprintf(out, "%-10s %4u %-11s %9.0f..%-9.0f %7.1f..%-7.1f %7.1f..%-7.1f",
                        bench_scenarios[s].name, bench_scenarios[s].clients, bench_target_names[t],
                        rps.min, rps.max, p50.min, p50.max, p99.min, p99.max);
                if (t != BENCH_FLOOR) {
                    enum report_metric rm[] = {M_RATIO_P50, M_RATIO_P99, M_RATIO_RPS};
                    for (size_t i = 0; i < 3; i++) {
                        struct report_stat r = report_metric(runs, n, s, t, rm[i]);
                        fprintf(out, " %5.2f..%-5.2f", r.min, r.max);
                    }
                }
                fprintf(out, "\n");
            }
    }

    fprintf(out, "\nstart%s\n", n > 1 ? " (median, min..max over the runs)" : "");
    fprintf(out, "%-11s %8s %-24s %-24s %-24s\n", "server", "entries", "preload s",
            "start to ready ms", "start CPU ms");
    for (int t = BENCH_AGENT_10; t < BENCH_TARGETS; t++) {
        if (!runs[0].has[t])
            continue;
        char a[64], b[64], c[64];
        fprintf(out, "%-11s %8zu %-24s %-24s %-24s\n", bench_target_names[t],
                bench_target_entries[t],
                report_fmt(a, sizeof(a), report_field(runs, n, &runs[0].preload_s[t]), 2),
                report_fmt(b, sizeof(b), report_field(runs, n, &runs[0].ready_ms[t]), 1),
                report_fmt(c, sizeof(c), report_field(runs, n, &runs[0].start_cpu_ms[t]), 1));
    }
    fprintf(out, "\nmemory in MiB: VmRSS, and RssAnon (the process's own pages, without the "
                 "shared libraries' code)\n");
    fprintf(out, "%-11s %8s %-20s %-20s %-20s %-20s %-20s\n", "server", "entries", "idle RSS",
            "idle anon", "held RSS", "held anon", "held HWM");
    for (int t = 0; t < BENCH_TARGETS; t++) {
        if (!runs[0].has[t])
            continue;
        const double *f[] = {&runs[0].idle_rss_mib[t], &runs[0].idle_anon_mib[t],
                             &runs[0].held_rss_mib[t], &runs[0].held_anon_mib[t],
                             &runs[0].held_hwm_mib[t]};
        fprintf(out, "%-11s %8zu", bench_target_names[t], bench_target_entries[t]);
        for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
            char buf[64];
            fprintf(out, " %-20s", report_fmt(buf, sizeof(buf), report_field(runs, n, f[i]), 1));
        }
        fprintf(out, "\n");
    }
    if (runs[0].has[BENCH_AGENT_100K]) {
        struct report_stat r = report_ready_100k(runs, n);
        fprintf(out,
                "agent with 100,000 entries, %u starts: start to ready median %.1f ms "
                "(%.1f..%.1f)\n",
                r.n, r.med, r.min, r.max);
    }
    fprintf(out,
            "held: %zu connections open, each answered one FetchToken; the floor holds "
            "the same\n",
            o->held);

    struct report_target tg[16];
    size_t k = report_targets(runs, n, tg, 16);
    fprintf(out, "\ntargets (issue 7)%s\n",
            o->short_mode ? ": --short runs are too short to judge them" : "");
    for (size_t i = 0; i < k; i++)
        fprintf(out, "  %-58s %8.2f %-3s (%s %g) %s\n", tg[i].what, tg[i].value, tg[i].unit,
                tg[i].at_most ? "<=" : ">=", tg[i].limit, report_met(&tg[i]) ? "met" : "NOT met");
    for (unsigned i = 0; i < n; i++)
        for (int s = 0; s < BENCH_SCENARIOS; s++)
            for (int t = 0; t < BENCH_TARGETS; t++)
                if (runs[i].cells[s][t].errors)
                    fprintf(out, "  run %u, %s %u clients, %s: %llu errors, the first: %s\n", i + 1,
                            bench_scenarios[s].name, bench_scenarios[s].clients,
                            bench_target_names[t], (unsigned long long)runs[i].cells[s][t].errors,
                            runs[i].cells[s][t].first_error);
}

/* --- JSON ------------------------------------------------------------------ */

static json_t *report_jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *report_jstat(struct report_stat s)
{
    return json_pack("{s:o,s:o,s:o}", "median", report_jnum(s.med), "min", report_jnum(s.min),
                     "max", report_jnum(s.max));
}

static json_t *report_jcell(const struct bench_cell *c)
{
    return json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s}", "ok",
                     (json_int_t)c->ok, "errors", (json_int_t)c->errors, "rps", report_jnum(c->rps),
                     "p50_us", report_jnum(c->p50_us), "p90_us", report_jnum(c->p90_us), "p99_us",
                     report_jnum(c->p99_us), "max_us", report_jnum(c->max_us), "cpu_ms",
                     report_jnum(c->cpu_ms), "cpu_us_per_req", report_jnum(c->cpu_us_per_req),
                     "client_cpu_us_per_req", report_jnum(c->client_cpu_us_per_req), "rss_mib",
                     report_jnum(c->rss_mib), "hwm_mib", report_jnum(c->hwm_mib), "first_error",
                     c->first_error);
}

static json_t *report_jscenarios(const struct bench_run *runs, unsigned n)
{
    json_t *arr = json_array();
    for (int s = 0; s < BENCH_SCENARIOS && arr; s++) {
        json_t *servers = json_array();
        for (int t = 0; t < BENCH_TARGETS && servers; t++) {
            if (!report_scenario_present(runs, n, s, t))
                continue;
            json_t *stats = json_object(), *per = json_array();
            for (int m = 0; m < M_COUNT && stats; m++) {
                if (t == BENCH_FLOOR && m >= M_RATIO_P50)
                    break;
                (void)json_object_set_new(stats, report_metric_names[m],
                                          report_jstat(report_metric(runs, n, s, t, m)));
            }
            for (unsigned i = 0; i < n && per; i++)
                (void)json_array_append_new(per, report_jcell(&runs[i].cells[s][t]));
            (void)json_array_append_new(
                servers,
                json_pack("{s:s,s:I,s:I,s:o,s:o}", "server", bench_target_names[t], "entries",
                          (json_int_t)bench_target_entries[t], "errors",
                          (json_int_t)report_errors(runs, n, s, t), "stats", stats, "runs", per));
        }
        (void)json_array_append_new(
            arr,
            json_pack("{s:s,s:s,s:b,s:I,s:o}", "scenario", bench_scenarios[s].name, "request",
                      bench_scenarios[s].kind == BENCH_WHOAMI           ? "whoami"
                      : bench_scenarios[s].kind == BENCH_FETCH_UNCACHED ? "fetch_token_uncached"
                                                                        : "fetch_token",
                      "fresh_connection", bench_scenarios[s].fresh, "clients",
                      (json_int_t)bench_scenarios[s].clients, "servers", servers));
    }
    return arr;
}

static json_t *report_jservers(const struct bench_run *runs, unsigned n)
{
    static const struct {
        const char *name;
        size_t off;
    } fields[] = {
        {"preload_s", offsetof(struct bench_run, preload_s)},
        {"start_to_ready_ms", offsetof(struct bench_run, ready_ms)},
        {"start_cpu_ms", offsetof(struct bench_run, start_cpu_ms)},
        {"idle_rss_mib", offsetof(struct bench_run, idle_rss_mib)},
        {"idle_hwm_mib", offsetof(struct bench_run, idle_hwm_mib)},
        {"idle_anon_mib", offsetof(struct bench_run, idle_anon_mib)},
        {"held_rss_mib", offsetof(struct bench_run, held_rss_mib)},
        {"held_hwm_mib", offsetof(struct bench_run, held_hwm_mib)},
        {"held_anon_mib", offsetof(struct bench_run, held_anon_mib)},
    };
    json_t *obj = json_object();
    for (int t = 0; t < BENCH_TARGETS && obj; t++) {
        if (!runs[0].has[t])
            continue;
        json_t *server = json_pack("{s:I}", "entries", (json_int_t)bench_target_entries[t]);
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]) && server; i++) {
            /* Each field is an array indexed by server. */
            const double *first = (const double *)((const char *)&runs[0] + fields[i].off) + t;
            (void)json_object_set_new(server, fields[i].name,
                                      report_jstat(report_field(runs, n, first)));
        }
        (void)json_object_set_new(obj, bench_target_names[t], server);
    }
    return obj;
}

int report_json(FILE *out, const struct bench_options *o, const struct bench_run *runs, unsigned n)
{
    struct report_target tg[16];
    size_t k = report_targets(runs, n, tg, 16);
    json_t *targets = json_array();
    uint64_t errors = 0;
    for (unsigned i = 0; i < n; i++)
        errors += runs[i].errors;
    for (size_t i = 0; i < k && targets; i++)
        (void)json_array_append_new(
            targets, json_pack("{s:s,s:o,s:f,s:s,s:s,s:b}", "target", tg[i].what, "value",
                               report_jnum(tg[i].value), "limit", tg[i].limit, "unit", tg[i].unit,
                               "compare", tg[i].at_most ? "<=" : ">=", "met", report_met(&tg[i])));
    json_t *ready = json_array();
    for (unsigned i = 0; i < n && ready; i++)
        for (unsigned j = 0; j < runs[i].n_ready_100k; j++)
            (void)json_array_append_new(ready, json_real(runs[i].ready_100k_ms[j]));
    json_t *doc = json_pack(
        "{s:s,s:b,s:I,s:I,s:f,s:I,s:I,s:I,s:s,s:s?,s:o,s:o,s:{s:o,s:o},s:o,s:I}", "tool",
        "sockid-bench", "short", o->short_mode, "runs", (json_int_t)n, "workers",
        (json_int_t)o->workers, "round_seconds", o->round_s, "rounds", (json_int_t)o->rounds,
        "held_connections", (json_int_t)o->held, "attestors", (json_int_t)runs[0].attestors,
        "agent", o->agent, "plugin_dir", o->plugin_dir, "scenarios", report_jscenarios(runs, n),
        "servers", report_jservers(runs, n), "start_100k_ms", "samples", ready, "stats",
        report_jstat(report_ready_100k(runs, n)), "targets", targets, "errors", (json_int_t)errors);
    if (!doc)
        return -ENOMEM;
    int r = json_dumpf(doc, out, JSON_INDENT(2) | JSON_REAL_PRECISION(6)) == 0 ? 0 : -EIO;
    fputc('\n', out);
    json_decref(doc);
    return r;
}
