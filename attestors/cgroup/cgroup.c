/* The cgroup attestor: the peer's cgroups as /proc/<pid>/cgroup lists them,
 * read through the peer's /proc dirfd.
 *
 *   cgroup:unified:/path            the v2 hierarchy
 *   cgroup:CONTROLLERS:/path        each v1 hierarchy, keyed as the file
 *                                   writes it: cgroup:memory:/x,
 *                                   cgroup:cpu,cpuacct:/y, cgroup:name=systemd:/z
 *
 * Works on v1-only, v2-only and hybrid hosts. When the kernel gave the
 * peer's v2 cgroup id at connect time (PIDFD_GET_INFO), the v2 path must name
 * that very cgroup, or the attestation fails: the path is read later than
 * the connection, and a process that moved in between is not attested by
 * where it went.
 *
 * libcgroup (2.0.2 on Debian 12) discovers the mounted hierarchies at init;
 * it knows the v1 ones well but the v2 one only through a controller
 * enabled there, so the agent's own /proc/self/mountinfo settles the cgroup2
 * mount (preferring the one libcgroup named) and gives its root. libcgroup
 * logs to stdout by default and a plugin does not log: it gets a logger that
 * drops everything, before cgroup_init(), and none after fini.
 *
 * No settings. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/vfs.h>

#include <libcgroup.h>
#include <linux/magic.h>

#include <sockid/attestor.h>

#include "cgpath.h"
#include "cgread.h"

static void cgroup_quiet(void *userdata, int level, const char *fmt, va_list ap)
{
    (void)userdata;
    (void)level;
    (void)fmt;
    (void)ap;
}

/* The mount point of the v2 hierarchy as libcgroup sees it: the mount of a
 * controller it lists that is a cgroup2 filesystem. Empty when it names
 * none (no controller enabled in v2, as on this kind of hybrid host) or
 * cannot start. */
static void cgroup_libcgroup_v2_hint(char *hint, size_t len)
{
    struct cgroup_mount_point mp;
    void *handle = NULL;
    int r;

    hint[0] = '\0';
    cgroup_set_logger(cgroup_quiet, CGROUP_LOG_ERROR, NULL);
    if (cgroup_init() != 0)
        return;
    for (r = cgroup_get_controller_begin(&handle, &mp); r == 0;
         r = cgroup_get_controller_next(&handle, &mp)) {
        struct statfs sfs;
        if (statfs(mp.path, &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) {
            (void)snprintf(hint, len, "%s", mp.path);
            break;
        }
    }
    if (handle)
        (void)cgroup_get_controller_end(&handle);
}

static int cgroup_plugin_init(const struct sockid_attestor_config *config, void **ret_state,
                              char *err, size_t err_len)
{
    char hint[FILENAME_MAX];
    int r = cgread_config_none("cgroup", config, err, err_len);
    if (r < 0)
        return r;
    cgroup_libcgroup_v2_hint(hint, sizeof(hint));
    return cgread_state_new(hint[0] ? hint : NULL, ret_state);
}

static void cgroup_plugin_fini(void *state)
{
    /* libcgroup may outlive this plugin in the process; its logger must not
     * point into unloaded code. */
    cgroup_set_logger(NULL, CGROUP_LOG_ERROR, NULL);
    cgread_state_free(state);
}

static int cgroup_plugin_attest(void *vstate, const struct sockid_peer *peer, sockid_emit_fn emit,
                                void *emit_ctx)
{
    struct cgpath_table *t = NULL;
    int r;

    if (!emit)
        return -EINVAL;
    r = cgread_peer(peer, vstate, &t);
    if (r < 0)
        return r;
    r = cgpath_emit_cgroup(t, emit, emit_ctx);
    free(t);
    return r;
}

static const struct sockid_attestor cgroup_attestor = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "cgroup",
    .init = cgroup_plugin_init,
    .attest = cgroup_plugin_attest,
    .fini = cgroup_plugin_fini,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void)
{
    return &cgroup_attestor;
}
