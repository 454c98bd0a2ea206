/* The admin socket's requests: registration entries, health, key rotation,
 * status and metrics (DESIGN §4).
 *
 * Every call is authorized again, by the caller's kernel-reported
 * credentials, against admin_uids and admin_gids: the socket file's mode is
 * a first fence, never the only one. Changes go to the store first (durable)
 * and are then published as a new entry snapshot, so a workload sees an
 * entry as soon as its create is acknowledged. */
#ifndef SOCKID_ADMIN_H
#define SOCKID_ADMIN_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "admin.pb-c.h"
#include "arena.h"
#include "attest.h"
#include "config.h"
#include "entries.h"
#include "keys.h"
#include "metrics.h"
#include "peer.h"
#include "stats.h"
#include "store.h"

/* The server's counters summed over its event loops, and how many loops it
 * runs. The server is created after the admin, so it is reached through
 * this callback, set by admin_attach(). */
typedef void admin_stats_fn(void *ctx, struct stats *ret_stats, unsigned *ret_loops);

struct admin {
    const struct config *cfg;
    struct store *store;
    struct entries_registry *registry;
    struct keys *keys; /* rotated here, under lock, on schedule or on request */
    /* The writer's reference to the newest snapshot, which the next change
     * derives from. Guarded by lock: admin calls may come from any loop. */
    struct entries_snapshot *current;
    pthread_mutex_t lock;
    uint64_t started_ms;
    char last_key_error[256]; /* logged once, not every sweep */
    int64_t last_key_error_at;
    /* For status and metrics; set once by admin_attach() before the event
     * loops start, read-only after. Unset, they report no plugins, no
     * kernel features and zero counters. */
    const struct attest *attest;
    struct peer_features features;
    admin_stats_fn *stats_fn;
    void *stats_ctx;
};

/* Who is calling, as the kernel said at connect(). */
struct admin_caller {
    pid_t pid;
    uid_t uid;
    gid_t gid;
    const uint32_t *groups; /* supplementary, SO_PEERGROUPS */
    size_t n_groups;
    bool known; /* false when the peer could not be captured */
};

/* Takes a reference to current (the snapshot loaded at startup). */
__attribute__((warn_unused_result)) int
admin_init(struct admin *a, const struct config *cfg, struct store *store,
           struct entries_registry *registry, struct keys *keys, struct entries_snapshot *current,
           uint64_t started_ms);
void admin_fini(struct admin *a);

/* What status and metrics report besides the entries and keys: the plugins,
 * the kernel features in use, and the server's counters (fn(ctx, ...)).
 * Call before the event loops start. */
void admin_attach(struct admin *a, const struct attest *attest,
                  const struct peer_features *features, admin_stats_fn *fn, void *ctx);

/* The agent as status and metrics report it, now. */
void admin_metrics_input(struct admin *a, struct metrics_input *ret);

/* The status and metrics calls (admin_status.c), for admin_handle once the
 * caller is authorized. */
/* An entry_spec over a CreateEntry request's fields, and the arrays it
 * points into. */
struct admin_create_spec {
    struct entry_spec spec;
    const char *sels[ENTRY_MAX_SELECTORS];
    size_t sel_lens[ENTRY_MAX_SELECTORS];
    const char *auds[ENTRY_MAX_AUDIENCES];
    size_t aud_lens[ENTRY_MAX_AUDIENCES];
};

/* Fills out from c, whose bytes it points to (entry_new validates them).
 * false, with why in err, when c holds more selectors or audiences than an
 * entry may. */
bool admin_create_spec(const Sockid__Admin__CreateEntryRequest *c, struct admin_create_spec *out,
                       char *err, size_t err_len);

void admin_status(struct admin *a, struct arena *arena, Sockid__Admin__Response *resp);
void admin_metrics(struct admin *a, struct arena *arena, Sockid__Admin__Response *resp);

/* Rotates the signing key when it is older than key_rotation and drops
 * retired keys whose tokens have all expired. Logs what it did. */
void admin_maintain_keys(struct admin *a, int64_t now);

/* Entries in the newest snapshot. */
size_t admin_entry_count(struct admin *a);

/* Root and the agent's own uid always; admin_uids; members of admin_gids. */
bool admin_authorized(const struct config *cfg, const struct admin_caller *caller);

/* Answers req into resp (initialized by the caller), with memory from
 * arena. Never fails: every problem is an error response. Logs refusals and
 * every change with the caller's uid. The response may point into entries
 * of *ret_hold (or it is NULL), which the caller releases with
 * entries_snapshot_unref() once the response is packed. */
void admin_handle(struct admin *a, struct arena *arena, const struct admin_caller *caller,
                  const Sockid__Admin__Request *req, Sockid__Admin__Response *resp,
                  struct entries_snapshot **ret_hold);

/* An error response outside of admin_handle. */
void admin_error(struct arena *arena, Sockid__Admin__Response *resp, Sockid__ErrorCode code,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
