/* sockid attestor plugin ABI.
 *
 * An attestor turns a connected process into selectors ("type:key:value")
 * using only what the kernel reports about it. A plugin is one shared object
 * that exports exactly one symbol, SOCKID_ATTESTOR_SYMBOL, a function that
 * returns a pointer to a constant descriptor:
 *
 *     static const struct sockid_attestor desc = {
 *         .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
 *         .struct_size = sizeof(struct sockid_attestor),
 *         .name = "example",
 *         .init = example_init,
 *         .attest = example_attest,
 *         .fini = example_fini,
 *     };
 *     SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void)
 *     {
 *         return &desc;
 *     }
 *
 * The host loads plugins with dlopen(RTLD_NOW | RTLD_LOCAL) and refuses one
 * whose abi_version differs from the host's or whose struct_size is smaller
 * than the host's, naming the plugin and both values.
 *
 * Rules a plugin keeps:
 *  - Read the peer only through the view it is given: the /proc/<pid> dirfd
 *    (openat, readlinkat, fstatat relative to it), the connect-time uid and
 *    gids. Never build "/proc/<pid>/..." paths: the pid number can be reused,
 *    the dirfd cannot.
 *  - Read only what the workload cannot forge (cgroup membership, the
 *    executable the kernel mapped), never what it can (environment,
 *    command line, mountinfo).
 *  - attest() is called from several threads at once: it must be thread-safe
 *    with respect to its state.
 *  - attest() should return before peer->deadline_ns (CLOCK_MONOTONIC).
 *    emit() refuses selectors after the deadline (noticed within a clock
 *    tick), and a call that overruns counts as a failure of that attestor:
 *    nothing it emitted is used.
 *  - A plugin never hands the host memory to free: emit() copies what it is
 *    given before returning.
 *  - A plugin does not log. init() explains a failure in the buffer it gets.
 *
 * Growing the ABI without a new version: a field is only ever added at the
 * END of struct sockid_peer, and every struct the host hands a plugin says
 * its own size in struct_size. A plugin built against a newer header may
 * run in an older agent, whose struct is shorter: before it reads a field
 * added later it checks SOCKID_PEER_HAS(peer, field), and does without
 * (the header says how, field by field) when the field is not there. It
 * refuses only a view smaller than SOCKID_PEER_SIZE_MIN, the fields every
 * agent of this ABI version has. SOCKID_ATTESTOR_ABI_VERSION changes only
 * for a change an older plugin or agent could not cope with that way.
 */
#ifndef SOCKID_ATTESTOR_H
#define SOCKID_ATTESTOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to the structures below. */
#define SOCKID_ATTESTOR_ABI_VERSION 1u

/* The one symbol a plugin exports. */
#define SOCKID_ATTESTOR_SYMBOL "sockid_attestor"

#define SOCKID_ATTESTOR_EXPORT __attribute__((visibility("default")))

/* Limits the host enforces on what emit() receives. */
#define SOCKID_SELECTOR_TYPE_MAX  32u   /* bytes, [a-z0-9_-] */
#define SOCKID_SELECTOR_KEY_MAX   64u   /* bytes, printable, no ':' */
#define SOCKID_SELECTOR_VALUE_MAX 1024u /* bytes, printable, may hold ':' */

struct sockid_peer;

/* The largest file sockid_peer.proc_read returns, in bytes. */
#define SOCKID_PROC_READ_MAX (64u * 1024u)
/* Distinct names proc_read keeps for one request. */
#define SOCKID_PROC_READ_FILES 4u

/* See sockid_peer.proc_read. */
typedef int (*sockid_proc_read_fn)(const struct sockid_peer *peer, const char *name,
                                   const char **ret_data, size_t *ret_len);

/* Read-only view of the process on the other end of the connection. */
struct sockid_peer {
    uint32_t struct_size;   /* sizeof(struct sockid_peer) in the host */
    int32_t pid;            /* in the agent's pid namespace */
    uint32_t uid;           /* effective uid at connect() (SO_PEERCRED) */
    uint32_t gid;           /* effective gid at connect() (SO_PEERCRED) */
    const uint32_t *groups; /* supplementary gids at connect() (SO_PEERGROUPS) */
    size_t n_groups;
    int proc_dirfd;       /* /proc/<pid>, O_DIRECTORY; borrowed, do not close */
    uint64_t cgroup_id;   /* cgroup v2 id from PIDFD_GET_INFO, 0 if unknown */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC time by which attest() returns;
                             always set by the host */

    /* ---- Added later in ABI version 1: check SOCKID_PEER_HAS first. ---- */

    /* Reads the file NAME of the peer's /proc/<pid> directory, through
     * proc_dirfd, at most once per request: the first attestor that asks
     * for a name makes the host read it, and every later call for that name
     * in the same request, from any attestor, gets the same bytes without a
     * system call. So all attestors of a request see one version of the
     * file, and a request never sees an earlier request's (the host reads
     * again for each request). NAME is one path component of 1 to 32
     * characters from [a-z0-9_-] ("cgroup", "status"; never "..", and no
     * '/'); symbolic links are not followed. On success *ret_data points to
     * *ret_len bytes followed by a NUL, owned by the host and valid until
     * attest() returns: copy what you keep. Returns 0, or -EINVAL (a name
     * not allowed), -E2BIG (the file is larger than SOCKID_PROC_READ_MAX),
     * -ENOBUFS (more than SOCKID_PROC_READ_FILES names in one request: read
     * that one through proc_dirfd yourself), -ENOMEM, or the negative errno
     * of the open or read (-ESRCH, -ENOENT: the peer is gone). Failures are
     * not kept: a later call tries again. Called only from attest(), on the
     * thread that called it.
     *
     * An agent without it (SOCKID_PEER_HAS false), or a view a test built
     * with it NULL: read through proc_dirfd yourself. */
    sockid_proc_read_fn proc_read;
    void *proc_read_ctx; /* the host's, for proc_read: do not touch */
};

/* The size of the view in every agent of this ABI version: the fields up
 * to deadline_ns. A plugin refuses a smaller struct_size. */
#define SOCKID_PEER_SIZE_MIN (offsetof(struct sockid_peer, deadline_ns) + sizeof(uint64_t))

/* Whether the host's view has FIELD (one added after SOCKID_PEER_SIZE_MIN). */
#define SOCKID_PEER_HAS(peer, field)                                                               \
    ((peer)->struct_size >=                                                                        \
     offsetof(struct sockid_peer, field) + sizeof(((const struct sockid_peer *)0)->field))

/* Emits one selector "type:key:value". Returns 0, or a negative errno when the
 * host refuses it: -EINVAL when a part is malformed or longer than its limit
 * above; -E2BIG when there is no room for more selectors (256 per attestor
 * per peer, 512 per peer in all); -ETIMEDOUT past the deadline. A plugin
 * should stop and return that error, unless leaving out that one selector
 * is the better answer (selectors only ever add rights, so a missing one can
 * only make fewer entries match). */
typedef int (*sockid_emit_fn)(void *emit_ctx, const char *type, const char *key, const char *value);

/* The plugin's section of the agent's config ([attestor.NAME]), without the
 * keys the host itself interprets ("required"). */
struct sockid_attestor_config {
    uint32_t struct_size; /* the host's; fields past it do not exist */
    size_t n;
    const char *const *keys;
    const char *const *values;
};

struct sockid_attestor {
    uint32_t abi_version; /* SOCKID_ATTESTOR_ABI_VERSION */
    uint32_t struct_size; /* sizeof(struct sockid_attestor) */
    const char *name;     /* [a-z0-9_-]{1,32}; names the config section */

    /* Called once at load. On success stores the plugin's state (may be
     * NULL) and returns 0; on failure returns a negative errno and writes a
     * one-line reason to err. Reject unknown config keys. May be NULL. */
    int (*init)(const struct sockid_attestor_config *config, void **ret_state, char *err,
                size_t err_len);

    /* Emits selectors for peer. Returns 0, or a negative errno when it could
     * not attest this peer (the host then uses no selector from this call). */
    int (*attest)(void *state, const struct sockid_peer *peer, sockid_emit_fn emit, void *emit_ctx);

    /* Called once at unload with the state init() stored. May be NULL. */
    void (*fini)(void *state);

    /* Reserved for later hooks; must be NULL. */
    void *spare[8];
};

typedef const struct sockid_attestor *(*sockid_attestor_entry_fn)(void);

/* The entry point every plugin defines. Declared here, exported, so that a
 * plugin built with -fvisibility=hidden still exports it and builds cleanly
 * with -Wmissing-prototypes. */
SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

#ifdef __cplusplus
}
#endif

#endif /* SOCKID_ATTESTOR_H */
