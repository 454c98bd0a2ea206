/* Attestor plugins: loading, checking and calling them.
 *
 * Every *.so in the plugin directory is loaded at startup with
 * dlopen(RTLD_NOW | RTLD_LOCAL); a plugin with the wrong ABI version or a
 * descriptor smaller than the host's is refused with a message naming the
 * plugin and both values, and the agent does not start. */
#ifndef SOCKID_ATTEST_H
#define SOCKID_ATTEST_H

#include <stdbool.h>
#include <stddef.h>

#include <sockid/attestor.h>

#include "config.h"
#include "selector.h"

#define ATTEST_MAX_PLUGINS 32u
/* What one attestor may emit for one peer. */
#define ATTEST_MAX_SELECTORS_PER_PLUGIN 256u

struct attest;

/* The memory behind sockid_peer.proc_read: the /proc files read for one
 * request, kept so that every attestor of that request gets the same bytes
 * from one read. One per event loop, used by one request at a time (so it
 * needs no lock); attest_run_failed empties it at the start of each
 * request, and its buffers are reused from one request to the next. At
 * most SOCKID_PROC_READ_FILES files of SOCKID_PROC_READ_MAX bytes. */
struct attest_cache;

__attribute__((warn_unused_result)) int attest_cache_new(struct attest_cache **ret);
struct attest_cache *attest_cache_free(struct attest_cache *cache);

/* Loads every plugin in dir (sorted by file name) and initializes it with
 * its [attestor.NAME] section. Refuses: a directory or plugin file writable
 * by group or others or owned by someone other than root or the agent's
 * user; a missing entry symbol; a wrong ABI version or struct size; two
 * plugins with one name; a config section naming a plugin that is not there.
 * On failure returns a negative errno and writes why into err. */
__attribute__((warn_unused_result)) int attest_load(const struct config *cfg, const char *dir,
                                                    struct attest **ret, char *err, size_t err_len);

/* Loads one plugin file; used by attest_load and by unit tests. */
__attribute__((warn_unused_result)) int attest_load_one(struct attest *set, const char *path,
                                                        const struct config *cfg, char *err,
                                                        size_t err_len);

/* An empty set, to which attest_load_one adds. */
__attribute__((warn_unused_result)) int attest_new(struct attest **ret);

struct attest *attest_free(struct attest *set);

size_t attest_count(const struct attest *set);
/* The i-th plugin's name, or NULL when i is out of range. */
const char *attest_name(const struct attest *set, size_t i);

/* Runs every attestor on peer and adds their selectors to out. Each call
 * gets its own deadline, timeout_ms from its start (attest_run sets
 * peer->deadline_ns before each call). An attestor that fails or overruns
 * contributes nothing, not even what it emitted before; if it is required,
 * attest_run stops there, returns -EPERM and writes which one and why into
 * reason (out then holds what the attestors before it emitted). Returns 0
 * otherwise. */
__attribute__((warn_unused_result)) int attest_run(const struct attest *set,
                                                   struct sockid_peer *peer, uint32_t timeout_ms,
                                                   struct selector_set *out, char *reason,
                                                   size_t reason_len);

/* The same, also setting bit i of *ret_failed for each attestor i that
 * failed or ran late (required or not), and offering the attestors
 * peer->proc_read backed by cache (emptied first: nothing read for an
 * earlier request is seen). With cache NULL, peer->proc_read is NULL and
 * each attestor reads /proc itself (attest_run does that). */
__attribute__((warn_unused_result)) int
attest_run_failed(const struct attest *set, struct sockid_peer *peer, struct attest_cache *cache,
                  uint32_t timeout_ms, struct selector_set *out, uint32_t *ret_failed, char *reason,
                  size_t reason_len);

#endif
