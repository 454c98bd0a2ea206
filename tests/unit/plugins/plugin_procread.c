/* A test attestor that reads its peer's "cgroup" file the way the cgroup
 * attestors do: through the host's proc_read when the view has it, else
 * through proc_dirfd itself (an older agent).
 *
 * Emits "procread:via:host" or "procread:via:dirfd", then
 * "procread:line:<first line of the file>"; through the host it also reads
 * the file a second time and emits "procread:twice:same" when the second
 * call returned the very same bytes at the same address. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <sockid/attestor.h>

static int procread_attest(void *state, const struct sockid_peer *peer, sockid_emit_fn emit,
                           void *emit_ctx)
{
    char line[256], buf[4096];
    const char *data;
    size_t len;
    int r;

    (void)state;
    if (peer->struct_size < SOCKID_PEER_SIZE_MIN)
        return -EINVAL;
    if (SOCKID_PEER_HAS(peer, proc_read) && peer->proc_read) {
        r = peer->proc_read(peer, "cgroup", &data, &len);
        if (r < 0)
            return r;
        const char *again;
        size_t again_len;
        r = peer->proc_read(peer, "cgroup", &again, &again_len);
        if (r < 0)
            return r;
        if (again == data && again_len == len && data[len] == '\0') {
            r = emit(emit_ctx, "procread", "twice", "same");
            if (r < 0)
                return r;
        }
        r = emit(emit_ctx, "procread", "via", "host");
    } else {
        int fd = openat(peer->proc_dirfd, "cgroup", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        (void)close(fd);
        if (n < 0)
            return -EIO;
        buf[n] = '\0';
        data = buf;
        len = (size_t)n;
        r = emit(emit_ctx, "procread", "via", "dirfd");
    }
    if (r < 0)
        return r;
    size_t n = strcspn(data, "\n");
    if (n == 0 || n >= sizeof(line))
        return -EIO;
    memcpy(line, data, n);
    line[n] = '\0';
    return emit(emit_ctx, "procread", "line", line);
}

static const struct sockid_attestor procread_desc = {
    .abi_version = SOCKID_ATTESTOR_ABI_VERSION,
    .struct_size = sizeof(struct sockid_attestor),
    .name = "procread",
    .attest = procread_attest,
};

SOCKID_ATTESTOR_EXPORT const struct sockid_attestor *sockid_attestor(void);

const struct sockid_attestor *sockid_attestor(void)
{
    return &procread_desc;
}
