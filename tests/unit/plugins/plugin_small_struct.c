/* Claims a descriptor that ends before the spare slots, as a plugin built
 * against an older, shorter header would: must be refused at load, since the
 * host would read past its end. */
#include <stddef.h>

#include <sockid/attestor.h>

static int small_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                        void *emit_ctx)
{
    (void)state;
    (void)peer;
    return emit(emit_ctx, "small_struct", "loaded", "yes");
}

static const struct sockid_attestor small_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = offsetof(struct sockid_attestor, spare),
    .name = "small_struct",
    .attest = small_attest,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

const struct sockid_attestor *sockid_attestor(void)
{
    return &small_desc;
}
