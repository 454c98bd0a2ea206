/* The agent's sockets and event loops (DESIGN §5): N loops, each a thread
 * with its own epoll set sharing the listening sockets (EPOLLEXCLUSIVE); a
 * connection lives on one loop from accept to close. */
#ifndef SOCKID_SERVER_H
#define SOCKID_SERVER_H

#include <stddef.h>

#include "admin.h"
#include "attest.h"
#include "config.h"
#include "entries.h"
#include "keys.h"
#include "peer.h"
#include "stats.h"

struct server;

/* Prepares the sockets: creates their directories, takes SOCKET.lock,
 * refuses when another agent answers on a socket, removes a stale socket
 * file, binds the workload socket with cfg->socket_mode and the admin socket
 * with cfg->admin_socket_mode. Workload requests read entries from registry
 * and sign with keys; admin requests go to admin, which also rotates keys on
 * schedule. On failure writes why into err. */
__attribute__((warn_unused_result)) int
server_new(const struct config *cfg, const struct attest *attest, struct admin *admin,
           struct entries_registry *registry, struct keys *keys,
           const struct peer_features *features, struct server **ret, char *err, size_t err_len);

/* Serves until SIGTERM or SIGINT (which the caller has blocked), then stops
 * accepting, finishes what is in flight, removes the socket and returns 0. */
__attribute__((warn_unused_result)) int server_run(struct server *s);

/* The sum of every loop's counters, a moment old at worst. */
void server_stats(const struct server *s, struct stats *ret);

/* server_stats() and the number of event loops, as an admin_stats_fn whose
 * ctx is the server: what status and metrics report. */
void server_admin_stats(void *ctx, struct stats *ret_stats, unsigned *ret_loops);

struct server *server_free(struct server *s);

#endif
