/* ns: a sockid attestor plugin that reports which Linux namespaces the peer
 * is in, as the inode numbers of its links in /proc/<pid>/ns:
 *
 *   ns:pid:4026531836   ns:mnt:4026531832   ns:net:4026531833
 *   ns:user:4026531837  ns:uts:4026531838   ns:ipc:4026531839
 *   ns:cgroup:4026531835                    ns:time:4026531834
 *
 * (the host's initial namespaces, on Linux 6.18). Two processes are in the
 * same namespace exactly when these numbers are equal; they are what
 * `stat -L -c %i /proc/PID/ns/net` and `lsns` show.
 *
 * Config ([attestor.ns] in the agent's config):
 *   namespaces = pid,net,...   which to report, comma-separated, from
 *                              pid, mnt, net, user, uts, ipc, cgroup, time
 *                              (default: all of them)
 *
 * Built out of tree against the installed <sockid/attestor.h> only: see
 * README.md and the Makefile next to this file. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sockid/attestor.h>

#define NS_TYPE "ns"

/* The namespaces a process can be in, by their names under /proc/<pid>/ns/.
 * Only the process's own ones: pid_for_children and time_for_children name
 * what its next child gets, which it chooses itself. */
static const char *const ns_names[] = {"pid", "mnt", "net", "user", "uts", "ipc", "cgroup", "time"};
#define NS_COUNT (sizeof(ns_names) / sizeof(ns_names[0]))
#define NS_ALL   ((1u << NS_COUNT) - 1u)

/* What init() decided. Read-only once init() returns, so attest() may run
 * on many threads at once without a lock. */
struct ns_state {
    unsigned mask; /* bit i: report ns_names[i] */
};

static int ns_fail(char *err, size_t err_len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int ns_fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return r;
}

static int ns_index(const char *name, size_t len)
{
    for (size_t i = 0; i < NS_COUNT; i++)
        if (strlen(ns_names[i]) == len && memcmp(ns_names[i], name, len) == 0)
            return (int)i;
    return -1;
}

/* "pid,net" to a mask. Spaces around a name are allowed; an empty list, an
 * empty item, an unknown name or a repeated one are not. */
static int ns_parse_list(const char *value, unsigned *ret_mask, char *err, size_t err_len)
{
    unsigned mask = 0;
    const char *p = value;

    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        if (len == 0)
            return ns_fail(err, err_len, -EINVAL,
                           "key 'namespaces': an empty name in \"%.128s\"; list names separated "
                           "by commas, e.g. pid,net",
                           value);
        int i = ns_index(p, len);
        if (i < 0)
            return ns_fail(err, err_len, -EINVAL,
                           "key 'namespaces': unknown namespace '%.*s'; known: pid, mnt, net, "
                           "user, uts, ipc, cgroup, time",
                           (int)(len > 32 ? 32 : len), p);
        if (mask & (1u << i))
            return ns_fail(err, err_len, -EINVAL, "key 'namespaces': '%s' is listed twice",
                           ns_names[i]);
        mask |= 1u << i;
        if (!end)
            break;
        p = end + 1;
    }
    *ret_mask = mask;
    return 0;
}

static int ns_init(const struct sockid_attestor_config *config, void **ret_state, char *err,
                   size_t err_len)
{
    unsigned mask = NS_ALL;
    bool seen = false;
    struct ns_state *state;
    int r;

    if (!ret_state)
        return ns_fail(err, err_len, -EINVAL, "no place to store the plugin state");
    if (config) {
        /* A host older than this header passes a smaller structure: its
         * fields past struct_size do not exist. */
        if (config->struct_size < sizeof(*config))
            return ns_fail(err, err_len, -EINVAL,
                           "config structure is %" PRIu32 " bytes, expected at least %zu",
                           config->struct_size, sizeof(*config));
        if (config->n && (!config->keys || !config->values))
            return ns_fail(err, err_len, -EINVAL, "config has keys but no arrays");
        for (size_t i = 0; i < config->n; i++) {
            const char *key = config->keys[i], *value = config->values[i];
            if (!key || !value)
                return ns_fail(err, err_len, -EINVAL, "config entry %zu is incomplete", i);
            if (strcmp(key, "namespaces") != 0)
                return ns_fail(err, err_len, -EINVAL,
                               "unknown key '%.64s'; the only key is 'namespaces'", key);
            if (seen)
                return ns_fail(err, err_len, -EINVAL, "key 'namespaces' is given twice");
            seen = true;
            r = ns_parse_list(value, &mask, err, err_len);
            if (r < 0)
                return r;
        }
    }

    state = malloc(sizeof(*state));
    if (!state)
        return ns_fail(err, err_len, -ENOMEM, "out of memory");
    state->mask = mask;
    *ret_state = state;
    return 0;
}

static void ns_fini(void *state)
{
    free(state);
}

static int ns_attest(void *vstate, const struct sockid_peer *peer, sockid_emit_fn emit,
                     void *emit_ctx)
{
    const struct ns_state *state = vstate;
    char path[sizeof("ns/") + 16];
    char ino[sizeof("18446744073709551615")];
    struct stat st;
    int r;

    /* Only proc_dirfd is read: a host whose view ends before it is too old. */
    if (!state || !peer || !emit ||
        peer->struct_size < offsetof(struct sockid_peer, proc_dirfd) + sizeof(peer->proc_dirfd))
        return -EINVAL;

    for (size_t i = 0; i < NS_COUNT; i++) {
        if (!(state->mask & (1u << i)))
            continue;
        /* Through the dirfd the host opened on /proc/<pid>, never a path
         * built from the pid: that number may name another process by now.
         * Following the link reaches the namespace's inode in nsfs; reading
         * it needs ptrace-read access to the peer, which the agent has over
         * its own user's processes, or as root over all. */
        (void)snprintf(path, sizeof(path), "ns/%s", ns_names[i]);
        if (fstatat(peer->proc_dirfd, path, &st, 0) < 0) {
            /* A kernel without this kind of namespace (time before 5.6,
             * cgroup before 4.6), or a peer that has exited (the host
             * refuses it anyway): nothing to say about it. */
            if (errno == ENOENT)
                continue;
            /* Anything else (EACCES: no ptrace-read access; ESRCH: the peer
             * is gone) and no selector from this plugin is right: say why. */
            return -errno;
        }
        (void)snprintf(ino, sizeof(ino), "%" PRIu64, (uint64_t)st.st_ino);
        r = emit(emit_ctx, NS_TYPE, ns_names[i], ino);
        if (r < 0)
            return r;
    }
    return 0;
}

static const struct sockid_attestor ns_attestor = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "ns",
    .init = ns_init,
    .attest = ns_attest,
    .fini = ns_fini,
    /* .spare stays NULL: slots for later hooks. */
};

/* The one symbol the plugin exports (see ns.map). */
SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void)
{
    return &ns_attestor;
}
