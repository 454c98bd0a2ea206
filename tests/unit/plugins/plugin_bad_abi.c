/* Built for an ABI the host does not speak: must be refused at load. */
#include <errno.h>

#include <sockid/attestor.h>

static int bad_abi_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                          void *emit_ctx)
{
    (void)state;
    (void)peer;
    return emit(emit_ctx, "bad_abi", "loaded", "yes");
}

static const struct sockid_attestor bad_abi_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION + 1,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "bad_abi",
    .attest = bad_abi_attest,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

const struct sockid_attestor *sockid_attestor(void)
{
    return &bad_abi_desc;
}
