/* Emits, then overruns its deadline, then tries to emit again and returns
 * whatever the host said (0 if the host accepted the late selector). Either
 * way the call overran, so the host must use nothing from it. */
#include <errno.h>
#include <stdint.h>
#include <time.h>

#include <sockid/attestor.h>

/* Past the deadline by this much, but never asleep longer than the cap, so
 * a host that sets no deadline does not hang the test. */
#define SLOW_OVERRUN_NS (50ull * 1000000ull)
#define SLOW_CAP_NS     (2000ull * 1000000ull)

static uint64_t slow_now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void slow_sleep_until(uint64_t t)
{
    uint64_t now = slow_now_ns();
    if (t > now + SLOW_CAP_NS)
        t = now + SLOW_CAP_NS;
    while ((now = slow_now_ns()) < t) {
        uint64_t left = t - now;
        struct timespec ts = {.tv_sec = (time_t)(left / 1000000000ull),
                              .tv_nsec = (long)(left % 1000000000ull)};
        (void)nanosleep(&ts, NULL);
    }
}

static int slow_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                       void *emit_ctx)
{
    (void)state;
    int r = emit(emit_ctx, "slow", "early", "yes");
    if (r < 0)
        return r;
    slow_sleep_until(peer->deadline_ns + SLOW_OVERRUN_NS);
    return emit(emit_ctx, "slow", "late", "yes");
}

static const struct sockid_attestor slow_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "slow",
    .attest = slow_attest,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

const struct sockid_attestor *sockid_attestor(void)
{
    return &slow_desc;
}
