/* Peer identity (agent/peer.h) over a real AF_UNIX listening socket.
 *
 * Each test forks a child that connects and then does what it is told over a
 * pipe: stay, change its uid, or exit. The agent side is the test itself:
 * accept, peer_capture, peer_verify. What a user would notice is a token
 * signed for a process that is no longer the one that connected; these tests
 * are the cases where that could happen. */
#define _GNU_SOURCE /* pipe2, accept4, setresuid, name_to_handle_at */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "peer.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 /* Linux 6.5; Debian 12's headers predate it */
#endif

#define REASON_LEN 512
#define OTHER_UID  12345
#define OTHER_GID  23456

/* ---- helpers ---------------------------------------------------------------- */

struct fx {
    char dir[48];
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    struct peer_features features;
};

static int fx_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    (void)snprintf(fx->dir, sizeof(fx->dir), "/tmp/sockid-test-peer-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    assert_true(snprintf(fx->path, sizeof(fx->path), "%s/agent.sock", fx->dir) <
                (int)sizeof(fx->path));
    fx->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fx->listen_fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, fx->path, sizeof(sa.sun_path));
    assert_int_equal(bind(fx->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fx->listen_fd, 16), 0);
    /* Children that drop root must still reach the socket. */
    assert_int_equal(chmod(fx->dir, 0755), 0);
    assert_int_equal(chmod(fx->path, 0777), 0);
    peer_probe(&fx->features);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *fx = *state;
    close(fx->listen_fd);
    (void)unlink(fx->path);
    (void)rmdir(fx->dir);
    free(fx);
    return 0;
}

static bool need_root(const char *why)
{
    if (geteuid() == 0)
        return true;
    print_message("skipped: needs root to %s\n", why);
    return false;
}

/* Credentials a child takes before it connects. */
struct creds {
    uid_t uid;
    gid_t gid;
    size_t n_groups;
    gid_t groups[4];
};

struct child {
    pid_t pid;
    int ctl; /* commands to the child */
    int ack; /* its answers */
};

static void child_main(const char *path, const struct creds *before, int ctl, int ack)
{
    char c;
    if (before) {
        if (setgroups(before->n_groups, before->groups) < 0 ||
            setresgid(before->gid, before->gid, before->gid) < 0 ||
            setresuid(before->uid, before->uid, before->uid) < 0)
            _exit(10);
    }
    if (path) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        (void)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
        if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            c = 'e';
            (void)!write(ack, &c, 1);
            _exit(11);
        }
        /* s stays open until the child exits. */
    }
    c = 'c';
    if (write(ack, &c, 1) != 1)
        _exit(12);
    while (read(ctl, &c, 1) == 1) {
        if (c == 'u') {
            /* A setuid exec after connect, as far as /proc can tell. */
            if (setresuid(OTHER_UID, OTHER_UID, OTHER_UID) < 0)
                _exit(13);
            if (write(ack, &c, 1) != 1)
                _exit(14);
        } else if (c == 'x') {
            break;
        }
    }
    _exit(0);
}

/* Forks a child that connects to path (if not NULL) and reports back. */
static void child_spawn(struct child *ch, const char *path, const struct creds *before)
{
    int ctl[2], ack[2];
    assert_int_equal(pipe2(ctl, O_CLOEXEC), 0);
    assert_int_equal(pipe2(ack, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ctl[1]);
        close(ack[0]);
        child_main(path, before, ctl[0], ack[1]);
    }
    close(ctl[0]);
    close(ack[1]);
    ch->pid = pid;
    ch->ctl = ctl[1];
    ch->ack = ack[0];
    char c = 0;
    assert_int_equal(read(ch->ack, &c, 1), 1);
    assert_int_equal(c, 'c');
}

static void child_tell(struct child *ch, char cmd)
{
    assert_int_equal(write(ch->ctl, &cmd, 1), 1);
    if (cmd == 'x')
        return;
    char c = 0;
    assert_int_equal(read(ch->ack, &c, 1), 1);
    assert_int_equal(c, cmd);
}

/* Tells the child to exit and waits until it is a zombie, not reaping it. */
static void child_exit_unreaped(struct child *ch)
{
    child_tell(ch, 'x');
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    assert_int_equal(waitid(P_PID, (id_t)ch->pid, &si, WEXITED | WNOWAIT), 0);
    assert_int_equal(si.si_pid, ch->pid);
}

static void child_reap(struct child *ch)
{
    int status;
    assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(ch->ctl);
    close(ch->ack);
}

static void child_finish(struct child *ch)
{
    child_tell(ch, 'x');
    child_reap(ch);
}

static int accept_one(struct fx *fx)
{
    int fd = accept4(fx->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

/* As the agent captures at accept: SO_PEERCRED once, then the rest. */
static int capture(int fd, const struct peer_features *f, bool require, struct peer *p,
                   char *reason, size_t reason_len)
{
    struct peer_cred cred;
    int r = peer_read_cred(fd, &cred);
    if (r < 0)
        return r;
    return peer_capture(fd, &cred, f, require, p, reason, reason_len);
}

static void capture_ok(int fd, const struct peer_features *f, bool require, struct peer *p)
{
    char reason[REASON_LEN] = "";
    int r = capture(fd, f, require, p, reason, sizeof(reason));
    if (r != 0)
        fail_msg("peer_capture: %d (%s)", r, reason);
}

static int verify(const struct peer *p, const struct peer_features *f, char *reason)
{
    reason[0] = '\0';
    return peer_verify(p, f, reason, REASON_LEN);
}

static int pidfd_open_pid(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

static uint64_t boottime_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void assert_same_dir(int fd, pid_t pid)
{
    struct stat a, b;
    char path[64];
    (void)snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    assert_int_equal(fstat(fd, &a), 0);
    assert_int_equal(stat(path, &b), 0);
    assert_true(S_ISDIR(a.st_mode));
    assert_int_equal(a.st_dev, b.st_dev);
    assert_int_equal(a.st_ino, b.st_ino);
}

/* The cgroup v2 id of pid's cgroup, from the cgroup directory's file handle
 * (the same kernfs id PIDFD_GET_INFO reports), or 0 if it cannot be found. */
static uint64_t cgroup_v2_id(pid_t pid)
{
    char path[4096], line[4096], mnt[4096] = "";
    (void)snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    char cg[4096] = "";
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0) {
            (void)snprintf(cg, sizeof(cg), "%s", line + 3);
            cg[strcspn(cg, "\n")] = '\0';
        }
    fclose(f);
    f = fopen("/proc/self/mountinfo", "re");
    if (!f || !cg[0]) {
        if (f)
            fclose(f);
        return 0;
    }
    while (fgets(line, sizeof(line), f)) {
        /* ... mount_point ... - fstype source opts */
        char *sep = strstr(line, " - cgroup2 ");
        if (!sep)
            continue;
        char root[4096], point[4096];
        if (sscanf(line, "%*s %*s %*s %4095s %4095s", root, point) == 2 && strcmp(root, "/") == 0) {
            (void)snprintf(mnt, sizeof(mnt), "%s", point);
            break;
        }
    }
    fclose(f);
    if (!mnt[0])
        return 0;
    (void)snprintf(path, sizeof(path), "%s%s", mnt, strcmp(cg, "/") == 0 ? "" : cg);
    struct file_handle *fh = malloc(sizeof(*fh) + sizeof(uint64_t));
    assert_non_null(fh);
    fh->handle_bytes = sizeof(uint64_t);
    int mount_id;
    uint64_t id = 0;
    if (name_to_handle_at(AT_FDCWD, path, fh, &mount_id, 0) == 0 &&
        fh->handle_bytes == sizeof(uint64_t))
        memcpy(&id, fh->f_handle, sizeof(id));
    free(fh);
    return id;
}

static bool kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma > major || (ma == major && mi >= minor);
}

/* ---- probing ---------------------------------------------------------------- */

static void test_probe(void **state)
{
    struct fx *fx = *state;
    struct utsname u;
    assert_int_equal(uname(&u), 0);
    print_message("kernel %s: SO_PEERPIDFD %s, PIDFD_GET_INFO %s, SO_PEERGROUPS %s\n", u.release,
                  fx->features.peer_pidfd ? "yes" : "no",
                  fx->features.pidfd_get_info ? "yes" : "no",
                  fx->features.peer_groups ? "yes" : "no");
    /* The probe must find what the kernel is known to have. */
    if (kernel_at_least(4, 13))
        assert_true(fx->features.peer_groups);
    if (kernel_at_least(6, 5))
        assert_true(fx->features.peer_pidfd);
    if (kernel_at_least(6, 13))
        assert_true(fx->features.pidfd_get_info);
    /* Probing twice gives the same answer. */
    struct peer_features again;
    peer_probe(&again);
    assert_int_equal(again.peer_pidfd, fx->features.peer_pidfd);
    assert_int_equal(again.pidfd_get_info, fx->features.pidfd_get_info);
    assert_int_equal(again.peer_groups, fx->features.peer_groups);
    assert_int_equal(again.peer_pidfd_cloexec, fx->features.peer_pidfd_cloexec);
}

/* SO_PEERPIDFD's fd is close-on-exec as the kernel hands it over
 * (pidfd_prepare() opens it O_CLOEXEC), which lets the agent skip an fcntl
 * per connection; the probe must say so exactly when it is. */
static void test_probe_pidfd_cloexec(void **state)
{
    struct fx *fx = *state;
    if (!fx->features.peer_pidfd) {
        assert_false(fx->features.peer_pidfd_cloexec);
        skip();
        return;
    }
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int pidfd = -1;
    socklen_t len = sizeof(pidfd);
    assert_int_equal(getsockopt(sv[0], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len), 0);
    int fl = fcntl(pidfd, F_GETFD);
    assert_true(fl >= 0);
    assert_int_equal(fx->features.peer_pidfd_cloexec, (fl & FD_CLOEXEC) != 0);
    print_message("SO_PEERPIDFD returns a close-on-exec fd: %s\n",
                  (fl & FD_CLOEXEC) ? "yes" : "no");
    close(pidfd);

    /* Whichever the kernel does, the captured pidfd ends up close-on-exec:
     * as the kernel gave it, or through the agent's fcntl. */
    for (int cloexec = 0; cloexec < 2; cloexec++) {
        struct peer_features f = fx->features;
        f.peer_pidfd_cloexec = cloexec && fx->features.peer_pidfd_cloexec;
        struct peer p = PEER_INIT;
        capture_ok(sv[0], &f, false, &p);
        fl = fcntl(p.pidfd, F_GETFD);
        assert_true(fl >= 0 && (fl & FD_CLOEXEC));
        peer_release(&p);
    }
    close(sv[0]);
    close(sv[1]);
}

static void test_read_cred(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct peer_cred c = {.pid = -7};
    assert_int_equal(peer_read_cred(sv[0], &c), 0);
    assert_int_equal(c.pid, getpid());
    assert_int_equal(c.uid, geteuid());
    assert_int_equal(c.gid, getegid());
    close(sv[0]);
    close(sv[1]);
    /* Not a socket: an error, and c untouched. */
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(nul >= 0);
    c.pid = -7;
    assert_true(peer_read_cred(nul, &c) < 0);
    assert_int_equal(c.pid, -7);
    close(nul);
}

/* ---- capture and verify ----------------------------------------------------- */

static void test_capture_live_child(void **state)
{
    struct fx *fx = *state;
    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    capture_ok(fd, &fx->features, false, &p);

    assert_int_equal(p.pid, ch.pid);
    assert_int_equal(p.uid, geteuid()); /* the child's, inherited from us */
    assert_int_equal(p.gid, getegid());
    assert_same_dir(p.proc_fd, ch.pid);
    assert_true(p.pidfd >= 0);
    pid_t via_fdinfo = 0;
    assert_int_equal(peer_pidfd_pid_fdinfo(p.pidfd, &via_fdinfo), 0);
    assert_int_equal(via_fdinfo, ch.pid);
    assert_int_equal(p.weak, !fx->features.peer_pidfd);
    if (fx->features.pidfd_get_info) {
        assert_true(p.cgroup_id != 0);
        uint64_t want = cgroup_v2_id(ch.pid);
        if (want)
            assert_int_equal(p.cgroup_id, want);
        else
            print_message("no cgroup v2 mount found; cgroup id not cross-checked\n");
    }
    if (fx->features.peer_groups) {
        gid_t mine[64];
        int n = getgroups(64, mine);
        assert_true(n >= 0);
        assert_int_equal(p.n_groups, (size_t)n);
    }

    char reason[REASON_LEN];
    assert_int_equal(verify(&p, &fx->features, reason), 0);

    /* Exited but not yet reaped: the pid is still taken, the process is not
     * there. */
    child_exit_unreaped(&ch);
    assert_int_equal(verify(&p, &fx->features, reason), -ESRCH);
    assert_true(reason[0] != '\0');
    print_message("after exit: %s\n", reason);

    child_reap(&ch);
    assert_int_equal(verify(&p, &fx->features, reason), -ESRCH);
    assert_true(reason[0] != '\0');

    peer_release(&p);
    peer_release(&p);
    close(fd);
}

static void test_capture_other_user(void **state)
{
    struct fx *fx = *state;
    if (!need_root("connect as another uid, gid and groups")) {
        skip();
        return;
    }
    struct creds c = {.uid = OTHER_UID, .gid = OTHER_GID, .n_groups = 2, .groups = {4343, 4242}};
    struct child ch;
    child_spawn(&ch, fx->path, &c);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    capture_ok(fd, &fx->features, false, &p);
    assert_int_equal(p.pid, ch.pid);
    assert_int_equal(p.uid, OTHER_UID);
    assert_int_equal(p.gid, OTHER_GID);
    if (fx->features.peer_groups) {
        assert_int_equal(p.n_groups, 2);
        bool has_4242 = false, has_4343 = false;
        for (size_t i = 0; i < p.n_groups; i++) {
            has_4242 |= p.groups[i] == 4242;
            has_4343 |= p.groups[i] == 4343;
        }
        assert_true(has_4242 && has_4343);
    }
    /* Unchanged since connect: still this peer. */
    char reason[REASON_LEN];
    assert_int_equal(verify(&p, &fx->features, reason), 0);

    /* The view attestors get carries the same facts. */
    struct sockid_peer v;
    memset(&v, 0xff, sizeof(v));
    peer_view(&p, 424242, &v);
    assert_int_equal(v.struct_size, sizeof(struct sockid_peer));
    assert_int_equal(v.pid, ch.pid);
    assert_int_equal(v.uid, OTHER_UID);
    assert_int_equal(v.gid, OTHER_GID);
    assert_int_equal(v.proc_dirfd, p.proc_fd);
    assert_int_equal(v.cgroup_id, p.cgroup_id);
    assert_int_equal(v.deadline_ns, 424242);
    assert_int_equal(v.n_groups, p.n_groups);
    if (p.n_groups)
        assert_memory_equal(v.groups, p.groups, p.n_groups * sizeof(uint32_t));

    child_finish(&ch);
    peer_release(&p);
    close(fd);
}

static void test_uid_changed_after_connect(void **state)
{
    struct fx *fx = *state;
    if (!need_root("make a child change its uid after it connected")) {
        skip();
        return;
    }
    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    capture_ok(fd, &fx->features, false, &p);
    assert_int_equal(p.uid, 0);
    char reason[REASON_LEN];
    assert_int_equal(verify(&p, &fx->features, reason), 0);

    child_tell(&ch, 'u');
    assert_int_equal(verify(&p, &fx->features, reason), -EPERM);
    assert_true(reason[0] != '\0');
    print_message("after setresuid: %s\n", reason);

    child_finish(&ch);
    peer_release(&p);
    close(fd);
}

static void test_capture_reaped_before_accept(void **state)
{
    struct fx *fx = *state;
    /* The kernel queued the connection; by the time we accept, the process
     * is gone and its pid free for anyone. */
    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    child_finish(&ch);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    char reason[REASON_LEN] = "";
    assert_int_equal(capture(fd, &fx->features, false, &p, reason, sizeof(reason)), -ESRCH);
    assert_true(reason[0] != '\0');
    print_message("reaped before accept: %s\n", reason);
    peer_release(&p);
    close(fd);
}

static void test_capture_exited_before_accept(void **state)
{
    struct fx *fx = *state;
    /* Exited, not yet reaped: the pid still names it, but it has exited,
     * which is what -ESRCH means. */
    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    child_exit_unreaped(&ch);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    char reason[REASON_LEN] = "";
    int r = capture(fd, &fx->features, false, &p, reason, sizeof(reason));
    child_reap(&ch);
    assert_int_equal(r, -ESRCH);
    assert_true(reason[0] != '\0');
    peer_release(&p);
    close(fd);
}

static void test_capture_without_peer_pidfd(void **state)
{
    struct fx *fx = *state;
    /* As on a kernel older than 6.5: the weaker pidfd_open() path. */
    struct peer_features old = {
        .peer_pidfd = false, .pidfd_get_info = false, .peer_groups = fx->features.peer_groups};
    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;

    /* Refused when the config requires the real option. */
    char reason[REASON_LEN] = "";
    assert_int_equal(capture(fd, &old, true, &p, reason, sizeof(reason)), -ENOTSUP);
    assert_true(reason[0] != '\0');
    print_message("require_pidfd without SO_PEERPIDFD: %s\n", reason);

    /* A failed capture left p as it was. */
    assert_int_equal(p.pidfd, -1);
    assert_int_equal(p.proc_fd, -1);
    capture_ok(fd, &old, false, &p);
    assert_int_equal(p.pid, ch.pid);
    assert_true(p.weak);
    assert_same_dir(p.proc_fd, ch.pid);
    assert_int_equal(verify(&p, &old, reason), 0);
    child_exit_unreaped(&ch);
    assert_int_equal(verify(&p, &old, reason), -ESRCH);
    child_reap(&ch);
    assert_int_equal(verify(&p, &old, reason), -ESRCH);
    peer_release(&p);
    close(fd);
}

static void test_capture_require_pidfd(void **state)
{
    struct fx *fx = *state;
    if (!fx->features.peer_pidfd) {
        print_message("skipped: this kernel has no SO_PEERPIDFD\n");
        skip();
        return;
    }
    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    capture_ok(fd, &fx->features, true, &p);
    assert_int_equal(p.pid, ch.pid);
    assert_false(p.weak);
    child_finish(&ch);
    peer_release(&p);
    close(fd);
}

static void test_capture_socketpair_self(void **state)
{
    struct fx *fx = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct peer p = PEER_INIT;
    capture_ok(sv[0], &fx->features, false, &p);
    assert_int_equal(p.pid, getpid());
    assert_same_dir(p.proc_fd, getpid());
    char reason[REASON_LEN];
    assert_int_equal(verify(&p, &fx->features, reason), 0);
    peer_release(&p);
    close(sv[0]);
    close(sv[1]);
}

/* ---- lower-level steps ------------------------------------------------------ */

static void test_pidfd_pid_fdinfo(void **state)
{
    (void)state;
    struct child ch;
    child_spawn(&ch, NULL, NULL);
    int pidfd = pidfd_open_pid(ch.pid);
    assert_true(pidfd >= 0);
    pid_t pid = -7;
    assert_int_equal(peer_pidfd_pid_fdinfo(pidfd, &pid), 0);
    assert_int_equal(pid, ch.pid);

    child_finish(&ch);
    pid = -7;
    assert_int_equal(peer_pidfd_pid_fdinfo(pidfd, &pid), -ESRCH);
    assert_int_equal(pid, -7); /* written only on success */
    close(pidfd);

    /* Not a pidfd at all. */
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(nul >= 0);
    assert_true(peer_pidfd_pid_fdinfo(nul, &pid) < 0);
    assert_int_equal(pid, -7);
    close(nul);
}

static void test_pidfd_fallback(void **state)
{
    (void)state;
    /* /proc's start times count clock ticks (10 ms): leave a margin of
     * several ticks on each side of the accept time. */
    struct child before;
    child_spawn(&before, NULL, NULL);
    sleep_ms(50);
    uint64_t accepted = boottime_ns();
    sleep_ms(50);
    struct child after;
    child_spawn(&after, NULL, NULL);

    int pidfd = -7;
    assert_int_equal(peer_pidfd_fallback(before.pid, accepted, &pidfd), 0);
    assert_true(pidfd >= 0);
    pid_t pid = 0;
    assert_int_equal(peer_pidfd_pid_fdinfo(pidfd, &pid), 0);
    assert_int_equal(pid, before.pid);
    close(pidfd);

    /* Born after the connection was accepted: cannot be the peer. */
    pidfd = -7;
    int r = peer_pidfd_fallback(after.pid, accepted, &pidfd);
    assert_true(r == -ESRCH || r == -EPERM);
    assert_int_equal(pidfd, -7);

    /* Gone. */
    pid_t gone = before.pid;
    child_finish(&before);
    child_finish(&after);
    r = peer_pidfd_fallback(gone, boottime_ns(), &pidfd);
    assert_int_equal(r, -ESRCH);
    assert_int_equal(pidfd, -7);
}

static void test_release(void **state)
{
    struct fx *fx = *state;
    /* Safe on a fresh peer, twice. */
    struct peer z = PEER_INIT;
    peer_release(&z);
    peer_release(&z);

    struct child ch;
    child_spawn(&ch, fx->path, NULL);
    int fd = accept_one(fx);
    struct peer p = PEER_INIT;
    capture_ok(fd, &fx->features, false, &p);
    int pidfd = p.pidfd, proc_fd = p.proc_fd;
    peer_release(&p);
    /* Both fds are closed... */
    assert_int_equal(fcntl(pidfd, F_GETFD), -1);
    assert_int_equal(fcntl(proc_fd, F_GETFD), -1);
    /* ...and a second release does not close them again, whoever has those
     * numbers now. */
    int a = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int b = open("/dev/null", O_RDONLY | O_CLOEXEC);
    peer_release(&p);
    assert_true(fcntl(a, F_GETFD) >= 0);
    assert_true(fcntl(b, F_GETFD) >= 0);
    close(a);
    close(b);
    child_finish(&ch);
    close(fd);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_probe),
        T(test_probe_pidfd_cloexec),
        T(test_read_cred),
        T(test_capture_live_child),
        T(test_capture_other_user),
        T(test_uid_changed_after_connect),
        T(test_capture_reaped_before_accept),
        T(test_capture_exited_before_accept),
        T(test_capture_without_peer_pidfd),
        T(test_capture_require_pidfd),
        T(test_capture_socketpair_self),
        T(test_pidfd_pid_fdinfo),
        T(test_pidfd_fallback),
        T(test_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
