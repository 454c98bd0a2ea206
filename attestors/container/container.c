/* The container attestor: which container the peer runs in, read from its
 * cgroup paths (never from mountinfo, which a workload forges with bind
 * mounts), with no container runtime daemon to ask.
 *
 *   container:id:<64 hex>                     a container root's runtime made
 *   container:runtime:docker|containerd|cri-o|podman   when the layout says
 *   k8s:pod-uid:<uuid>, k8s:qos:guaranteed|burstable|besteffort   in a pod
 *   container:rootless-id:<64 hex>, container:runtime:podman,
 *   container:owner-uid:UID                   rootless Podman (see cgpath.c)
 *
 * A process in no container gets nothing from this attestor. The rules for
 * what a path proves are in attestors/common/cgpath.c.
 *
 * No settings. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include <sockid/attestor.h>

#include "cgpath.h"
#include "cgread.h"

static int container_init(const struct sockid_attestor_config *config, void **ret_state, char *err,
                          size_t err_len)
{
    int r = cgread_config_none("container", config, err, err_len);
    return r < 0 ? r : cgread_state_new(NULL, ret_state);
}

static int container_attest(void *vstate, const struct sockid_peer *peer, sockid_emit_fn emit,
                            void *emit_ctx)
{
    struct cgpath_table *t = NULL;
    struct cgpath_container c;
    int r;

    if (!emit)
        return -EINVAL;
    r = cgread_peer(peer, vstate, &t);
    if (r < 0)
        return r;
    r = cgpath_container(t, &c);
    free(t);
    if (r < 0)
        return r;
    return cgpath_emit_container(&c, emit, emit_ctx);
}

static const struct sockid_attestor container_attestor = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "container",
    .init = container_init,
    .attest = container_attest,
    .fini = cgread_state_free,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void)
{
    return &container_attestor;
}
