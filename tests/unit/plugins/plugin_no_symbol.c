/* A shared object that is not an attestor: it exports a function, but not
 * SOCKID_ATTESTOR_SYMBOL. Must be refused at load, naming the symbol. */
#include <sockid/attestor.h>

static int no_symbol_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                            void *emit_ctx)
{
    (void)state;
    (void)peer;
    return emit(emit_ctx, "no_symbol", "loaded", "yes");
}

static const struct sockid_attestor no_symbol_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "no_symbol",
    .attest = no_symbol_attest,
};

/* A near miss of the real name. */
SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor_v1(void);

const struct sockid_attestor *sockid_attestor_v1(void)
{
    return &no_symbol_desc;
}
