/* sockid status: what the agent is doing, on its admin socket. */
#include "cli.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static const char usage[] =
    "Usage: sockid status [--json]\n"
    "\n"
    "Shows what the agent is doing: its version and uptime, the kernel features it\n"
    "uses against PID reuse, the attestor plugins loaded, the number of entries,\n"
    "the signing key and its age, connections, requests served by kind, refusals\n"
    "by reason, tokens signed and answered from the cache, and request and\n"
    "attestation latency percentiles (the upper bound of the histogram bucket each\n"
    "falls in). Counters count since the agent started. Needs a user that the\n"
    "agent's admin_uids or admin_gids allow.\n"
    "\n"
    "Options:\n"
    "  --json         print one JSON object instead of text: version, uptime_ms,\n"
    "                 features, plugins, entries, signing_key, keys, event_loops,\n"
    "                 connections, requests, refusals, tokens, latency (each\n"
    "                 percentile in microseconds, null above the largest bucket)\n";

static json_int_t json_u64(uint64_t v)
{
    return v > (uint64_t)LLONG_MAX ? LLONG_MAX : (json_int_t)v;
}

/* ---- JSON ---- */

static json_t *json_percentile(uint64_t us)
{
    return us == SOCKID_LATENCY_ABOVE_MAX ? json_null() : json_integer(json_u64(us));
}

static json_t *latency_json(const struct sockid_latency *l)
{
    return json_pack("{s:I, s:I, s:o, s:o, s:o}", "count", json_u64(l->count), "sum_us",
                     json_u64(l->sum_us), "p50_us", json_percentile(l->p50_us), "p90_us",
                     json_percentile(l->p90_us), "p99_us", json_percentile(l->p99_us));
}

/* {"name": value, ...}, or NULL after printing why. */
static json_t *counters_json(const struct sockid_counter *v, size_t n, const char *what)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *name = cli_json_string(v[i].name, what); /* checks UTF-8 */
        if (!name || json_object_set_new(obj, v[i].name, json_integer(json_u64(v[i].value))) < 0) {
            json_decref(name);
            json_decref(obj);
            return NULL;
        }
        json_decref(name);
    }
    return obj;
}

static int print_json(const struct sockid_status *s)
{
    json_t *version = cli_json_string(s->version, "agent version");
    json_t *plugins = version ? cli_json_strings(s->plugins, s->n_plugins, "plugin name") : NULL;
    json_t *kid =
        plugins ? (*s->active_kid ? cli_json_string(s->active_kid, "key id") : json_null()) : NULL;
    json_t *requests = kid ? counters_json(s->requests, s->n_requests, "request kind") : NULL;
    json_t *refusals =
        requests ? counters_json(s->refusals, s->n_refusals, "refusal reason") : NULL;
    if (!refusals) {
        json_decref(version);
        json_decref(plugins);
        json_decref(kid);
        json_decref(requests);
        return CLI_EXIT_REFUSED;
    }
    /* "o" hands each value to the object, or releases it if packing fails. */
    json_t *obj = json_pack(
        "{s:o, s:I, s:{s:b, s:b, s:b}, s:o, s:I, s:{s:o, s:I, s:I}, s:I, s:I,"
        " s:{s:I, s:I, s:I}, s:o, s:o, s:{s:I, s:I}, s:{s:o, s:o}}",
        "version", version, "uptime_ms", json_u64(s->uptime_ms), "features", "so_peerpidfd",
        s->so_peerpidfd, "pidfd_get_info", s->pidfd_get_info, "so_peergroups", s->so_peergroups,
        "plugins", plugins, "entries", json_u64(s->entries), "signing_key", "kid", kid,
        "created_at", (json_int_t)s->active_key_created_at, "age_seconds",
        (json_int_t)s->active_key_age_seconds, "keys", (json_int_t)s->keys, "event_loops",
        (json_int_t)s->event_loops, "connections", "open", json_u64(s->connections_open),
        "accepted", json_u64(s->connections_accepted), "rejected",
        json_u64(s->connections_rejected), "requests", requests, "refusals", refusals, "tokens",
        "signed", json_u64(s->tokens_signed), "cache_hits", json_u64(s->token_cache_hits),
        "latency", "request", latency_json(&s->request_latency), "attestation",
        latency_json(&s->attestation_latency));
    if (!obj)
        return cli_error(CLI_EXIT_REFUSED, "out of memory");
    return cli_json_print(obj);
}

/* ---- text ---- */

static void print_duration(uint64_t seconds)
{
    uint64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60, s = seconds % 60;
    if (d)
        printf("%llud%02lluh%02llum%02llus", (unsigned long long)d, (unsigned long long)h,
               (unsigned long long)m, (unsigned long long)s);
    else if (h)
        printf("%lluh%02llum%02llus", (unsigned long long)h, (unsigned long long)m,
               (unsigned long long)s);
    else if (m)
        printf("%llum%02llus", (unsigned long long)m, (unsigned long long)s);
    else
        printf("%llus", (unsigned long long)s);
}

static void print_percentile(const char *name, uint64_t us)
{
    if (us == SOCKID_LATENCY_ABOVE_MAX)
        printf(" %s >1s", name);
    else if (us >= 1000 && us % 1000 == 0)
        printf(" %s %llums", name, (unsigned long long)(us / 1000));
    else
        printf(" %s %lluus", name, (unsigned long long)us);
}

static void print_latency(const char *label, const struct sockid_latency *l)
{
    printf("%-12s", label);
    if (l->count == 0) {
        printf(" none yet\n");
        return;
    }
    print_percentile("p50", l->p50_us);
    print_percentile("p90", l->p90_us);
    print_percentile("p99", l->p99_us);
    printf(", %llu observed\n", (unsigned long long)l->count);
}

/* "name value, name value": all of them, or only those above zero (then
 * "none" when every one is zero). */
static void print_counters(const char *label, const struct sockid_counter *v, size_t n,
                           bool nonzero_only)
{
    printf("%-12s", label);
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (nonzero_only && v[i].value == 0)
            continue;
        fputs(any ? ", " : " ", stdout);
        cli_print_text(stdout, v[i].name);
        printf(" %llu", (unsigned long long)v[i].value);
        any = true;
    }
    puts(any ? "" : " none");
}

static void print_text(const struct sockid_status *s)
{
    fputs("sockid-agent ", stdout);
    cli_print_text(stdout, s->version);
    fputs(", up ", stdout);
    print_duration(s->uptime_ms / 1000);
    printf(", %u event loop%s\n", s->event_loops, s->event_loops == 1 ? "" : "s");
    printf("%-12s SO_PEERPIDFD %s, PIDFD_GET_INFO %s, SO_PEERGROUPS %s\n", "kernel",
           s->so_peerpidfd ? "yes" : "no", s->pidfd_get_info ? "yes" : "no",
           s->so_peergroups ? "yes" : "no");
    printf("%-12s", "plugins");
    for (size_t i = 0; i < s->n_plugins; i++) {
        fputs(i ? ", " : " ", stdout);
        cli_print_text(stdout, s->plugins[i]);
    }
    puts(s->n_plugins ? "" : " none");
    printf("%-12s %llu\n", "entries", (unsigned long long)s->entries);
    printf("%-12s ", "signing key");
    if (*s->active_kid) {
        cli_print_text(stdout, s->active_kid);
        fputs(", age ", stdout);
        print_duration(s->active_key_age_seconds > 0 ? (uint64_t)s->active_key_age_seconds : 0);
        printf(", %u key%s in the bundle\n", s->keys, s->keys == 1 ? "" : "s");
    } else {
        printf("none, %u key%s in the bundle\n", s->keys, s->keys == 1 ? "" : "s");
    }
    printf("%-12s %llu open, %llu accepted, %llu rejected\n", "connections",
           (unsigned long long)s->connections_open, (unsigned long long)s->connections_accepted,
           (unsigned long long)s->connections_rejected);
    print_counters("requests", s->requests, s->n_requests, false);
    print_counters("refusals", s->refusals, s->n_refusals, true);
    printf("%-12s %llu signed, %llu from the cache\n", "tokens",
           (unsigned long long)s->tokens_signed, (unsigned long long)s->token_cache_hits);
    print_latency("request", &s->request_latency);
    print_latency("attestation", &s->attestation_latency);
}

int cmd_status(int argc, char **argv, struct cli_global *g)
{
    bool json = false;
    int rc = cli_parse_plain(argc, argv, g, "status", usage, true, &json);
    if (rc != CLI_GO_ON)
        return rc;

    struct sockid_admin *a;
    rc = cli_admin_open(g, &a);
    if (rc != CLI_EXIT_OK)
        return rc;
    struct sockid_status *s;
    int r = sockid_admin_status(a, &s);
    if (r < 0) {
        rc = cli_admin_fail(a, r);
        a = sockid_admin_close(a);
        return rc;
    }
    a = sockid_admin_close(a);
    if (json) {
        rc = print_json(s);
    } else {
        print_text(s);
        rc = CLI_EXIT_OK;
    }
    s = sockid_status_free(s);
    return rc;
}
