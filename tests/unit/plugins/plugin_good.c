/* A well-behaved test attestor.
 *
 * Emits "test:fixed:one" and "test:pid:<peer pid>", plus "test:cfg-KEY:VALUE"
 * for each key of its config section, so a test can see what init() was
 * given. init() refuses a key named "bad" and fails on purpose with
 * fail_init=1. The state is heap memory freed by fini(), so a host that never
 * calls fini() shows up as a leak under the sanitizer. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sockid/attestor.h>

#define GOOD_MAX_KEYS 8

struct good_state {
    size_t n;
    char *keys[GOOD_MAX_KEYS];
    char *values[GOOD_MAX_KEYS];
};

static void good_fini(void *state)
{
    struct good_state *st = state;
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++) {
        free(st->keys[i]);
        free(st->values[i]);
    }
    free(st);
}

static int good_init(const struct sockid_attestor_config *config, void **ret_state, char *err,
                     size_t err_len)
{
    size_t n = config ? config->n : 0;
    if (n > GOOD_MAX_KEYS) {
        (void)snprintf(err, err_len, "at most %d keys", GOOD_MAX_KEYS);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(config->keys[i], "bad") == 0) {
            (void)snprintf(err, err_len, "key 'bad' is not allowed here (test plugin)");
            return -EINVAL;
        }
        if (strcmp(config->keys[i], "fail_init") == 0 && strcmp(config->values[i], "1") == 0) {
            (void)snprintf(err, err_len, "init failed on purpose (fail_init=1)");
            return -ENOTRECOVERABLE;
        }
    }
    struct good_state *st = calloc(1, sizeof(*st));
    if (!st)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        st->keys[i] = strdup(config->keys[i]);
        st->values[i] = strdup(config->values[i]);
        st->n = i + 1;
        if (!st->keys[i] || !st->values[i]) {
            good_fini(st);
            return -ENOMEM;
        }
    }
    *ret_state = st;
    return 0;
}

static int good_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                       void *emit_ctx)
{
    const struct good_state *st = state;
    if (!st)
        return -EINVAL; /* init() ran, or the host lost our state */
    if (peer->struct_size < sizeof(struct sockid_peer))
        return -EINVAL;
    /* The dirfd must be usable the way real attestors use it. */
    struct stat sb;
    if (fstatat(peer->proc_dirfd, "status", &sb, 0) < 0)
        return -errno;

    int r = emit(emit_ctx, "test", "fixed", "one");
    if (r < 0)
        return r;
    char pid[16];
    (void)snprintf(pid, sizeof(pid), "%d", (int)peer->pid);
    r = emit(emit_ctx, "test", "pid", pid);
    if (r < 0)
        return r;
    for (size_t i = 0; i < st->n; i++) {
        char key[SOCKID_SELECTOR_KEY_MAX + 1];
        (void)snprintf(key, sizeof(key), "cfg-%s", st->keys[i]);
        r = emit(emit_ctx, "test", key, st->values[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

static const struct sockid_attestor good_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "good",
    .init = good_init,
    .attest = good_attest,
    .fini = good_fini,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

const struct sockid_attestor *sockid_attestor(void)
{
    return &good_desc;
}
