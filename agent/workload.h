/* The workload socket's requests: what each one means, given a connection's
 * captured peer. The server module owns sockets and framing; this module
 * owns the answers, and logs each refusal once. */
#ifndef SOCKID_WORKLOAD_H
#define SOCKID_WORKLOAD_H

#include <pthread.h>
#include <stdint.h>

#include "arena.h"
#include "attest.h"
#include "config.h"
#include "entries.h"
#include "keys.h"
#include "peer.h"
#include "selector.h"
#include "stats.h"
#include "token.h"
#include "workload.pb-c.h"

/* Tokens shared by all loops, behind a mutex taken only on a loop's own
 * cache miss (which then costs a signature anyway, ~40 us): so that two
 * connections landing on different loops still get the same token while it
 * is fresh, and the hit path takes no lock. */
struct workload_shared_tokens {
    pthread_mutex_t lock;
    struct token_cache *cache;
};

/* What a request handler may use; one per event loop, reused per request. */
struct workload_ctx {
    const struct config *cfg;
    const struct attest *attest;
    const struct peer_features *features;
    uint64_t started_ms;                    /* agent start, CLOCK_MONOTONIC */
    struct arena *arena;                    /* response memory; reset by the caller per request */
    struct selector_set *selectors;         /* scratch */
    struct attest_cache *attest_cache;      /* proc_read's files for one request */
    const struct entries_snapshot *entries; /* current for this request */
    const struct keyset *keyset;            /* current for this request */
    struct token_cache *tokens;             /* this loop's cache */
    struct workload_shared_tokens *shared;  /* all loops' cache; may be NULL */
    struct stats *stats;                    /* this loop's counters */
    int64_t now;                            /* wall clock, unix seconds */
    const struct entry *matches[ENTRIES_MATCH_MAX]; /* scratch */
};

/* The connection's peer as captured at accept: either captured, or refused
 * with an error and reason. */
struct workload_peer {
    const struct peer *peer; /* NULL when capture failed */
    int capture_error;       /* negative errno from peer_capture */
    const char *capture_reason;
    pid_t pid; /* as SO_PEERCRED said, for logs */
    uid_t uid;
};

/* Answers req into resp (which the caller initialized). Never fails: every
 * problem becomes an error response. */
void workload_handle(struct workload_ctx *ctx, const struct workload_peer *wp,
                     const Sockid__Workload__Request *req, Sockid__Workload__Response *resp);

/* Fills resp with an error of code and message (message copied into the
 * arena). Used for requests that never reach workload_handle. */
void workload_error(struct workload_ctx *ctx, Sockid__Workload__Response *resp,
                    Sockid__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
