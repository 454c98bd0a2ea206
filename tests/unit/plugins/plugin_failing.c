/* Emits one selector, then fails: the host must drop that selector too. */
#include <errno.h>

#include <sockid/attestor.h>

static int failing_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                          void *emit_ctx)
{
    (void)state;
    (void)peer;
    int r = emit(emit_ctx, "failing", "before", "error");
    if (r < 0)
        return r;
    return -EIO;
}

static const struct sockid_attestor failing_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "failing",
    .attest = failing_attest,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

const struct sockid_attestor *sockid_attestor(void)
{
    return &failing_desc;
}
