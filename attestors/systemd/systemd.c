/* The systemd attestor: which systemd unit the peer runs in, read from its
 * cgroup path (the v2 one, or name=systemd on a v1-only host).
 *
 *   systemd:unit:NAME.service, systemd:scope:NAME.scope,
 *   systemd:slice:NAME.slice        in the system manager's tree
 *   systemd:user-unit:NAME, systemd:user:UID
 *                                   in a user manager's tree (user@UID.service),
 *                                   never a system unit's selector, since the
 *                                   user may name cgroups there as it likes
 *
 * A process in no unit gets nothing from this attestor. The rules for what a
 * path proves are in attestors/common/cgpath.c.
 *
 * No settings. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include <sockid/attestor.h>

#include "cgpath.h"
#include "cgread.h"

static int systemd_init(const struct sockid_attestor_config *config, void **ret_state, char *err,
                        size_t err_len)
{
    int r = cgread_config_none("systemd", config, err, err_len);
    return r < 0 ? r : cgread_state_new(NULL, ret_state);
}

static int systemd_attest(void *vstate, const struct sockid_peer *peer, sockid_emit_fn emit,
                          void *emit_ctx)
{
    struct cgpath_table *t = NULL;
    struct cgpath_systemd sd;
    int r;

    if (!emit)
        return -EINVAL;
    r = cgread_peer(peer, vstate, &t);
    if (r < 0)
        return r;
    r = cgpath_systemd(t, &sd);
    free(t);
    if (r < 0)
        return r;
    return cgpath_emit_systemd(&sd, emit, emit_ctx);
}

static const struct sockid_attestor systemd_attestor = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "systemd",
    .init = systemd_init,
    .attest = systemd_attest,
    .fini = cgread_state_free,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void)
{
    return &systemd_attestor;
}
