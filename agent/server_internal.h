/* What the server and its event loops share. Private to server.c and
 * loop.c. */
#ifndef SOCKID_SERVER_INTERNAL_H
#define SOCKID_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "admin.h"
#include "attest.h"
#include "config.h"
#include "entries.h"
#include "keys.h"
#include "peer.h"
#include "stats.h"
#include "workload.h"

struct loop;

struct uid_slot {
    uid_t uid;
    uint32_t count;
};

struct server {
    const struct config *cfg;
    const struct attest *attest;
    struct admin *admin;
    struct entries_registry *registry;
    struct keys *keys;
    struct peer_features features;
    uint64_t started_ms;

    int listen_fd;
    int admin_fd;
    int metrics_fd; /* -1 when no metrics socket; served by loop 0 only */
    int lock_fd;
    int signal_fd; /* watched by loop 0 */
    int stop_fd;   /* eventfd, readable once stopping: wakes every loop */
    bool socket_created;
    bool admin_created;
    bool metrics_created;
    bool activated;       /* sockets came from the service manager */
    uint64_t watchdog_us; /* WATCHDOG_USEC, 0 when no watchdog */

    /* Connection accounting across loops; taken at accept and close only. */
    pthread_mutex_t conn_lock;
    struct uid_slot *uids;
    size_t n_uids;
    size_t n_conns;

    atomic_bool stopping;
    uint64_t stop_deadline_ms;

    unsigned n_loops;
    struct loop **loops;

    struct workload_shared_tokens shared_tokens;
};

uint64_t server_now_ms(void);

/* Counts a new connection of uid if the limits allow it; otherwise writes
 * why into msg and returns false. */
bool server_conn_admit(struct server *s, uid_t uid, char *msg, size_t msg_len);
void server_conn_release(struct server *s, uid_t uid);

/* Stops accepting, removes the socket files and wakes every loop. Called by
 * loop 0 on SIGTERM or SIGINT. */
void server_begin_stop(struct server *s);

/* One event loop: its own epoll set, connections, request memory, token
 * cache and counters. */
__attribute__((warn_unused_result)) int loop_new(struct server *s, unsigned index,
                                                 struct loop **ret);
struct loop *loop_free(struct loop *l);

/* Serves until the server stops and this loop's connections are done. */
int loop_run(struct loop *l);

const struct stats *loop_stats(const struct loop *l);

/* The last time (CLOCK_MONOTONIC ms) the loop went round; the watchdog is
 * fed only while every loop goes round. */
uint64_t loop_heartbeat_ms(const struct loop *l);

#endif
