/* cgread: the I/O the cgroup, container and systemd attestors share: reading
 * a peer's cgroup file through its /proc dirfd, finding the agent's own
 * cgroup2 mount, and checking the v2 path against the cgroup id the kernel
 * gave at connect time. */
#ifndef SOCKID_CGREAD_H
#define SOCKID_CGREAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sockid/attestor.h>

#include "cgpath.h"
#include "kvcache.h"

#define CGREAD_ROOT_MAX 4096u
/* Cgroup ids whose path was checked, kept per mount (see cgread.c). */
#define CGREAD_VERIFIED_SLOTS 128u

/* The agent's cgroup2 mount: an O_PATH fd on its mount point and the cgroup
 * it shows there (its root as /proc/self/mountinfo writes it, "/" unless it
 * is a bind mount of a subtree). fd is -1 when the agent sees no cgroup2
 * mount. verified holds the (cgroup id, path) pairs already checked under
 * it; NULL when there is no mount or no memory for it (then every check
 * is made again). */
struct cgread_mount {
    int fd;
    dev_t dev;
    char root[CGREAD_ROOT_MAX];
    struct kvcache *verified;
};

/* Finds the cgroup2 mount in the agent's own /proc/self/mountinfo (never a
 * peer's: a workload forges its own mountinfo with bind mounts). hint, when
 * not NULL, names a mount point found another way (libcgroup) that is
 * preferred when mountinfo lists it. Never fails: a host without cgroup2
 * leaves ret->fd at -1. */
void cgread_mount_find(const char *hint, struct cgread_mount *ret);
void cgread_mount_close(struct cgread_mount *m);

/* The state of an attestor that needs only the cgroup2 mount (cgroup,
 * container, systemd): a cgread_mount, found with hint, in *ret_state.
 * Call it from init() once the config is checked. 0, -EINVAL or -ENOMEM. */
__attribute__((warn_unused_result)) int cgread_state_new(const char *hint, void **ret_state);
/* Frees what cgread_state_new made; accepts NULL. Fits fini() as it is. */
void cgread_state_free(void *state);

/* Reads and parses the peer's cgroup file (through the host's proc_read,
 * which reads it once per request for every attestor, or through
 * peer->proc_dirfd when the host has none), then, when the kernel gave a
 * cgroup id (peer->cgroup_id != 0) and the file has a v2 line, checks that
 * the v2 path names that very cgroup under m. Returns 0
 * and a table in *ret (free() it); the errors of cgpath_parse; -ESTALE when
 * the v2 path names another cgroup than the id (the process moved since it
 * connected) or none; -ENODEV when the check cannot be made because the
 * agent sees no cgroup2 mount; -EXDEV when the path is outside what the
 * agent's mount shows; -EINVAL for a view smaller than SOCKID_PEER_SIZE_MIN;
 * -ENOMEM; or the errno of the read. */
__attribute__((warn_unused_result)) int cgread_peer(const struct sockid_peer *peer,
                                                    const struct cgread_mount *m,
                                                    struct cgpath_table **ret);

/* Refuses any config key (none are known yet) with a message naming the
 * attestor; checks the config structure as the host hands it. */
__attribute__((warn_unused_result)) int
cgread_config_none(const char *name, const struct sockid_attestor_config *config, char *err,
                   size_t err_len);

#endif /* SOCKID_CGREAD_H */
