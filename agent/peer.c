/* Peer identity and the PID-reuse defence (DESIGN §2).
 *
 * A pid number is freed when its process is reaped and can then be given to
 * any new process. A pidfd refers to the process itself: once it exits, the
 * pidfd says so forever, whatever process gets the number next. So we take
 * the pidfd the kernel recorded at connect() (SO_PEERPIDFD), and every
 * conclusion drawn from /proc is confirmed against it. */
#define _GNU_SOURCE
#include "peer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Debian 12's headers predate these kernel interfaces; the values are the
 * kernel's uapi ones (include/uapi/asm-generic/socket.h and
 * include/uapi/linux/pidfd.h). */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; same number on x86-64 and asm-generic */
#endif
#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

/* The first published layout of struct pidfd_info (PIDFD_INFO_SIZE_VER0,
 * 64 bytes, Linux 6.13). Newer kernels accept it and fill only these
 * fields. Named locally so it cannot clash with a newer header's. */
struct peer_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid;
    uint32_t tgid;
    uint32_t ppid;
    uint32_t ruid;
    uint32_t rgid;
    uint32_t euid;
    uint32_t egid;
    uint32_t suid;
    uint32_t sgid;
    uint32_t fsuid;
    uint32_t fsgid;
    uint32_t spare0[1];
};
_Static_assert(sizeof(struct peer_pidfd_info) == 64, "PIDFD_INFO_SIZE_VER0 is 64 bytes");
#define PEER_PIDFD_GET_INFO      _IOWR(0xFF, 11, struct peer_pidfd_info)
#define PEER_PIDFD_INFO_PID      (1ull << 0)
#define PEER_PIDFD_INFO_CREDS    (1ull << 1)
#define PEER_PIDFD_INFO_CGROUPID (1ull << 2)

/* Kernel bound on supplementary groups (NGROUPS_MAX in linux/limits.h). */
#define PEER_GROUPS_MAX 65536u

static void set_reason(char *reason, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reason(char *reason, size_t len, const char *fmt, ...)
{
    if (!reason || len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(reason, len, fmt, ap);
    va_end(ap);
}

static int sys_pidfd_open(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_get_info(int pidfd, struct peer_pidfd_info *ret)
{
    struct peer_pidfd_info info = {
        .mask = PEER_PIDFD_INFO_PID | PEER_PIDFD_INFO_CREDS | PEER_PIDFD_INFO_CGROUPID,
    };
    if (ioctl(pidfd, PEER_PIDFD_GET_INFO, &info) < 0)
        return -errno;
    if (!(info.mask & PEER_PIDFD_INFO_PID) || !(info.mask & PEER_PIDFD_INFO_CREDS))
        return -EIO;
    *ret = info;
    return 0;
}

void peer_probe(struct peer_features *ret)
{
    struct peer_features f = {0};
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
        int pidfd = -1;
        socklen_t len = sizeof(pidfd);
        if (getsockopt(sv[0], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0 && pidfd >= 0) {
            f.peer_pidfd = true;
            int fl = fcntl(pidfd, F_GETFD);
            f.peer_pidfd_cloexec = fl >= 0 && (fl & FD_CLOEXEC);
            struct peer_pidfd_info info;
            f.pidfd_get_info = pidfd_get_info(pidfd, &info) == 0 && (pid_t)info.pid == getpid();
            (void)close(pidfd);
        }
        gid_t groups[1];
        len = sizeof(groups);
        /* ERANGE also proves the option exists. */
        f.peer_groups =
            getsockopt(sv[0], SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0 || errno == ERANGE;
        (void)close(sv[0]);
        (void)close(sv[1]);
    }
    if (!f.peer_pidfd) {
        int pidfd = sys_pidfd_open(getpid());
        if (pidfd >= 0) {
            struct peer_pidfd_info info;
            f.pidfd_get_info = pidfd_get_info(pidfd, &info) == 0;
            (void)close(pidfd);
        }
    }
    *ret = f;
}

/* Reads up to cap-1 bytes of a small pseudo-file opened relative to dirfd. */
static int read_small(int dirfd, const char *path, char *buf, size_t cap)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = -errno;
            (void)close(fd);
            return e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    (void)close(fd);
    return (int)n;
}

/* Finds "\nNAME" (or NAME at the start) in a /proc text file. */
static const char *find_field(const char *buf, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(buf, name, n) == 0)
        return buf + n;
    for (const char *p = strchr(buf, '\n'); p; p = strchr(p + 1, '\n'))
        if (strncmp(p + 1, name, n) == 0)
            return p + 1 + n;
    return NULL;
}

int peer_pidfd_pid_fdinfo(int pidfd, pid_t *ret_pid)
{
    char path[64], buf[2048];
    (void)snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
    int r = read_small(AT_FDCWD, path, buf, sizeof(buf));
    if (r < 0)
        return r;
    const char *p = find_field(buf, "Pid:");
    if (!p)
        return -ENOTSUP; /* not a pidfd, or a kernel older than 5.4 */
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (errno || end == p || v < -1 || v > INT_MAX)
        return -EIO;
    if (v == -1)
        return -ESRCH; /* reaped */
    if (v == 0)
        return -EPERM; /* in a pid namespace we cannot see */
    *ret_pid = (pid_t)v;
    return 0;
}

/* Is the process behind pidfd still running? A pidfd polls readable once its
 * process has exited, zombie or reaped. */
static int pidfd_alive(int pidfd)
{
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        return r == 0 ? 0 : -ESRCH;
    }
}

/* Current effective uid and gid of the process behind proc_fd, from
 * /proc/<pid>/status ("Uid:\treal\teffective\tsaved\tfs"). */
static int proc_effective_ids(int proc_fd, uid_t *ret_euid, gid_t *ret_egid)
{
    char buf[8192];
    int r = read_small(proc_fd, "status", buf, sizeof(buf));
    if (r == -ENOENT)
        return -ESRCH;
    if (r < 0)
        return r;
    unsigned long ruid, euid, rgid, egid;
    const char *u = find_field(buf, "Uid:");
    const char *g = find_field(buf, "Gid:");
    if (!u || !g || sscanf(u, "%lu %lu", &ruid, &euid) != 2 ||
        sscanf(g, "%lu %lu", &rgid, &egid) != 2)
        return -EIO;
    *ret_euid = (uid_t)euid;
    *ret_egid = (gid_t)egid;
    return 0;
}

/* Process start time in clock ticks since boot: field 22 of
 * /proc/<pid>/stat, counted after the last ')' since comm may hold spaces. */
static int proc_start_ticks(int dirfd, const char *path, unsigned long long *ret)
{
    char buf[4096];
    int r = read_small(dirfd, path, buf, sizeof(buf));
    if (r == -ENOENT)
        return -ESRCH;
    if (r < 0)
        return r;
    const char *p = strrchr(buf, ')');
    if (!p)
        return -EIO;
    p++;
    /* After ')' come fields 3.. ; field 22 is the 20th of them. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return -EIO;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p + 1, &end, 10);
    if (errno || end == p + 1)
        return -EIO;
    *ret = v;
    return 0;
}

static uint64_t boottime_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int peer_pidfd_fallback(pid_t pid, uint64_t accepted_boot_ns, int *ret_pidfd)
{
    int pidfd = sys_pidfd_open(pid);
    if (pidfd < 0)
        return errno == ESRCH ? -ESRCH : -errno;
    char path[64];
    (void)snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    unsigned long long start;
    int r = proc_start_ticks(AT_FDCWD, path, &start);
    /* The stat we read belongs to the pidfd's process only if that process
     * was still alive after the read. */
    if (r == 0)
        r = pidfd_alive(pidfd);
    if (r == 0) {
        long hz = sysconf(_SC_CLK_TCK);
        unsigned long long accepted_ticks =
            (unsigned long long)(accepted_boot_ns /
                                 (1000000000ull / (uint64_t)(hz > 0 ? hz : 100)));
        /* Started after the connection was accepted: a newer process that
         * took the pid of the one that connected. */
        if (start > accepted_ticks)
            r = -ESRCH;
    }
    if (r < 0) {
        (void)close(pidfd);
        return r;
    }
    *ret_pidfd = pidfd;
    return 0;
}

static int capture_groups(int fd, struct peer *p)
{
    socklen_t len = 64 * sizeof(gid_t);
    for (;;) {
        gid_t *buf = malloc(len);
        if (!buf)
            return -ENOMEM;
        socklen_t got = len;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, buf, &got) == 0) {
            size_t n = got / sizeof(gid_t);
            _Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t is 32 bits");
            p->groups = (uint32_t *)buf;
            p->n_groups = n;
            return 0;
        }
        int e = errno;
        free(buf);
        /* ERANGE reports the size needed in got. */
        if (e != ERANGE || got <= len || got > PEER_GROUPS_MAX * sizeof(gid_t))
            return -e;
        len = got;
    }
}

int peer_read_cred(int fd, struct peer_cred *ret)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return -errno;
    if (len != sizeof(cred))
        return -EIO;
    *ret = (struct peer_cred){.pid = cred.pid, .uid = cred.uid, .gid = cred.gid};
    return 0;
}

int peer_capture(int fd, const struct peer_cred *cred, const struct peer_features *features,
                 bool require_pidfd, struct peer *ret, char *reason, size_t reason_len)
{
    uint64_t accepted = boottime_ns();
    struct peer p = {.pidfd = -1, .proc_fd = -1};
    socklen_t len;
    int r;

    p.uid = cred->uid;
    p.gid = cred->gid;
    if (cred->pid <= 0) {
        r = -EPERM;
        set_reason(reason, reason_len,
                   "the peer is in a pid namespace the agent cannot see (pid 0); "
                   "run the agent in the workload's pid namespace or an ancestor of it");
        goto fail;
    }
    p.pid = cred->pid;

    if (features->peer_groups) {
        r = capture_groups(fd, &p);
        if (r < 0) {
            set_reason(reason, reason_len, "cannot read the peer's groups (SO_PEERGROUPS): %s",
                       strerror(-r));
            goto fail;
        }
    }

    if (features->peer_pidfd) {
        len = sizeof(p.pidfd);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &p.pidfd, &len) < 0) {
            r = -errno;
            p.pidfd = -1;
            if (r == -EINVAL || r == -ESRCH) {
                r = -ESRCH;
                set_reason(reason, reason_len, "peer exited before it could be attested");
            } else {
                set_reason(reason, reason_len, "cannot get the peer's pidfd (SO_PEERPIDFD): %s",
                           strerror(-r));
            }
            goto fail;
        }
        if (!features->peer_pidfd_cloexec)
            (void)fcntl(p.pidfd, F_SETFD, FD_CLOEXEC);
    } else if (require_pidfd) {
        r = -ENOTSUP;
        set_reason(reason, reason_len,
                   "this kernel has no SO_PEERPIDFD and require_peer_pidfd is set");
        goto fail;
    } else {
        p.weak = true;
        r = peer_pidfd_fallback(p.pid, accepted, &p.pidfd);
        if (r < 0) {
            set_reason(reason, reason_len,
                       "peer exited or its pid was reused before it could "
                       "be attested");
            goto fail;
        }
    }

    /* The pid as the pidfd resolves it now; the SO_PEERCRED number may be
     * stale (the kernel keeps the number of a reaped process). */
    pid_t pid;
    if (features->pidfd_get_info) {
        struct peer_pidfd_info info;
        r = pidfd_get_info(p.pidfd, &info);
        if (r == 0) {
            pid = (pid_t)info.pid;
            if (info.mask & PEER_PIDFD_INFO_CGROUPID)
                p.cgroup_id = info.cgroupid;
            if (info.euid != p.uid || info.egid != p.gid) {
                r = -EPERM;
                set_reason(reason, reason_len,
                           "peer's credentials changed since it connected (uid %lu gid %lu at "
                           "connect, now uid %lu gid %lu); connect again under the identity you "
                           "want attested",
                           (unsigned long)p.uid, (unsigned long)p.gid, (unsigned long)info.euid,
                           (unsigned long)info.egid);
                goto fail;
            }
        }
    } else {
        r = peer_pidfd_pid_fdinfo(p.pidfd, &pid);
    }
    if (r == -ESRCH) {
        set_reason(reason, reason_len, "peer exited before it could be attested");
        goto fail;
    }
    if (r == -EPERM || (r == 0 && pid == 0)) {
        r = -EPERM;
        set_reason(reason, reason_len,
                   "the peer is in a pid namespace the agent cannot see (pid 0); "
                   "run the agent in the workload's pid namespace or an ancestor of it");
        goto fail;
    }
    if (r < 0) {
        set_reason(reason, reason_len, "cannot resolve the peer's pidfd: %s", strerror(-r));
        goto fail;
    }
    if (pid != p.pid) {
        r = -ESRCH;
        set_reason(reason, reason_len, "peer's pid changed since it connected");
        goto fail;
    }

    char path[32];
    (void)snprintf(path, sizeof(path), "/proc/%d", (int)p.pid);
    p.proc_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (p.proc_fd < 0) {
        r = errno == ENOENT ? -ESRCH : -errno;
        set_reason(reason, reason_len, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    /* Alive after the open: so /proc/<pid> was this process when we opened
     * it, and the dirfd stays bound to it (a later process with the same
     * number gets a different struct pid, and the old dirfd reads ESRCH). */
    r = pidfd_alive(p.pidfd);
    if (r < 0) {
        set_reason(reason, reason_len, "peer exited before it could be attested");
        goto fail;
    }
    *ret = p;
    return 0;

fail:
    peer_release(&p);
    return r;
}

int peer_verify(const struct peer *peer, const struct peer_features *features, char *reason,
                size_t reason_len)
{
    uid_t euid = 0;
    gid_t egid = 0;
    int r;

    if (features->pidfd_get_info) {
        struct peer_pidfd_info info = {0};
        r = pidfd_get_info(peer->pidfd, &info);
        if (r == 0 && (pid_t)info.pid != peer->pid)
            r = -ESRCH;
        euid = info.euid;
        egid = info.egid;
    } else {
        pid_t pid;
        r = peer_pidfd_pid_fdinfo(peer->pidfd, &pid);
        if (r == 0 && pid != peer->pid)
            r = -ESRCH;
        if (r == 0)
            r = proc_effective_ids(peer->proc_fd, &euid, &egid);
    }
    if (r == -ESRCH || r == -EPERM) {
        set_reason(reason, reason_len, "peer exited during attestation");
        return -ESRCH;
    }
    if (r < 0) {
        set_reason(reason, reason_len, "cannot check the peer after attestation: %s", strerror(-r));
        return r;
    }
    if (euid != peer->uid || egid != peer->gid) {
        set_reason(reason, reason_len,
                   "peer's credentials changed since it connected (uid %lu gid %lu at connect, "
                   "now uid %lu gid %lu); connect again under the identity you want attested",
                   (unsigned long)peer->uid, (unsigned long)peer->gid, (unsigned long)euid,
                   (unsigned long)egid);
        return -EPERM;
    }
    /* Last: everything above was read from the process that connected only
     * if it is still running now. */
    r = pidfd_alive(peer->pidfd);
    if (r < 0) {
        set_reason(reason, reason_len, "peer exited during attestation");
        return -ESRCH;
    }
    return 0;
}

void peer_view(const struct peer *peer, uint64_t deadline_ns, struct sockid_peer *ret)
{
    *ret = (struct sockid_peer){
        .struct_size = sizeof(struct sockid_peer),
        .pid = peer->pid,
        .uid = peer->uid,
        .gid = peer->gid,
        .groups = peer->groups,
        .n_groups = peer->n_groups,
        .proc_dirfd = peer->proc_fd,
        .cgroup_id = peer->cgroup_id,
        .deadline_ns = deadline_ns,
    };
}

void peer_release(struct peer *peer)
{
    if (peer->pidfd >= 0)
        (void)close(peer->pidfd);
    if (peer->proc_fd >= 0)
        (void)close(peer->proc_fd);
    free(peer->groups);
    peer->groups = NULL;
    peer->n_groups = 0;
    peer->pidfd = -1;
    peer->proc_fd = -1;
}
