/* The agent's numbers for operators: the Prometheus text exposition format
 * (version 0.0.4), and the small HTTP/1.0 side of the optional metrics
 * socket.
 *
 * Everything here is a pure function of its inputs: the admin module
 * gathers a struct metrics_input (counters summed over the event loops,
 * entries, keys, plugins), and the status call, `sockid metrics` and the
 * metrics socket all render from it. Tests render fixed inputs. */
#ifndef SOCKID_METRICS_H
#define SOCKID_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys.h"
#include "stats.h"

#define METRICS_MAX_PLUGINS 32u
/* A percentile above the largest latency bucket. */
#define METRICS_LATENCY_ABOVE_MAX UINT64_MAX
/* The most a rendering may grow to: far above what the families need. */
#define METRICS_TEXT_MAX (1024u * 1024u)
/* An HTTP request head longer than this is refused (431). */
#define METRICS_HTTP_HEAD_MAX 4096u
#define METRICS_CONTENT_TYPE  "text/plain; version=0.0.4; charset=utf-8"

/* A moment of the agent, as the status call and the metrics report it. */
struct metrics_input {
    const char *version;
    uint64_t uptime_ms;
    bool so_peerpidfd;
    bool pidfd_get_info;
    bool so_peergroups;
    const char *plugins[METRICS_MAX_PLUGINS]; /* borrowed */
    size_t n_plugins;
    uint64_t entries;
    char active_kid[KEYS_KID_LEN + 1]; /* "" when there is no active key */
    int64_t active_key_created_at;     /* unix seconds */
    int64_t active_key_age_s;          /* never negative */
    size_t n_keys;                     /* in the bundle: active and retired */
    unsigned event_loops;
    struct stats stats; /* summed over the event loops */
};

/* Stable snake_case names, used as label values and in the status call:
 * "whoami", "fetch_token", ...; "peer_gone", "no_identity", ... NULL out of
 * range. */
const char *metrics_request_name(enum stats_request kind);
const char *metrics_refusal_name(enum stats_refusal reason);

/* A histogram summarized: observations, their sum, and percentiles as the
 * upper bound of the bucket each falls in (0 when empty,
 * METRICS_LATENCY_ABOVE_MAX above the largest bucket), in microseconds. */
struct metrics_latency {
    uint64_t count;
    uint64_t sum_us;
    uint64_t p50_us;
    uint64_t p90_us;
    uint64_t p99_us;
};

void metrics_latency(const struct stats_histogram *h, struct metrics_latency *ret);

/* Renders in as Prometheus text: every family with # HELP and # TYPE,
 * counters ending in _total, durations in seconds, histograms cumulative
 * with le="+Inf" equal to _count. *ret_text is malloc'd and NUL-terminated;
 * *ret_len excludes the NUL. Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int metrics_render(const struct metrics_input *in,
                                                       char **ret_text, size_t *ret_len);

/* Looks at the request head received so far, buf[0..len). Returns 0 while
 * the head is incomplete (read more), else the HTTP status to answer with:
 * 200 for GET or HEAD of /metrics (*ret_head_only set for HEAD), 404 for
 * another path, 405 for another method, 400 for a malformed request line,
 * 431 when no complete head fits in METRICS_HTTP_HEAD_MAX bytes. */
int metrics_http_parse(const char *buf, size_t len, bool *ret_head_only);

/* An HTTP/1.0 response with status, closing the connection: for 200, body
 * (body_len bytes) as the exposition format; otherwise a one-line
 * explanation (body is ignored). The head only when head_only. *ret is
 * malloc'd. Returns 0 or -ENOMEM. */
__attribute__((warn_unused_result)) int metrics_http_response(int status, const char *body,
                                                              size_t body_len, bool head_only,
                                                              char **ret, size_t *ret_len);

#endif
