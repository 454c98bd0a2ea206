/* The PID-reuse attack (DESIGN §2, "Peer identity and PID reuse").
 *
 * An attacker connects, hands its socket to a child (the holder) and exits;
 * once it is reaped its pid number is free, and a victim running as another
 * user is made to take that very number. The holder then asks WhoAmI. An
 * agent that looked the peer up by pid (SO_PEERCRED's number, /proc/<pid>)
 * would now describe the victim and hand the attacker the victim's identity.
 * The agent must refuse instead, or close the connection: never answer with
 * the victim's selectors.
 *
 * To make the victim take the attacker's pid on demand, the test runs in a
 * pid namespace of its own, whose pid 1 (a child of the test)
 * mounts a proc of the namespace (in a mount namespace of its own, so the
 * host's /proc is untouched), starts the agent inside, and steers the next
 * fork's pid through /proc/sys/kernel/ns_last_pid.
 *
 * The pid namespace is unshared by a helper process and the mount namespace
 * by pid 1, never by the test process itself: a process that unshared
 * CLONE_NEWPID can fork no more once that namespace's pid 1 is gone, and a
 * proc of the new namespace on the test process's /proc would break its
 * /proc/self; the sanitizers' leak checker needs both at exit.
 *
 * Variants:
 *   control   the attacker stays alive: the holder is served, as the attacker
 *             (a socket passed to a child is attested as the process that
 *             connected, DESIGN §2 "Known limits"), so the setup works;
 *   1         captured alive: the attacker is served once, then exits, is
 *             reaped and its pid reused before the holder asks;
 *   2a        the attacker exits right after connect, before any request
 *             (whether the agent accepted it first is left to timing);
 *   2b        the attacker exits before the agent even accepts: the agent is
 *             held with SIGSTOP until the pid belongs to the victim.
 *
 * Needs root. Usage: test_pid_reuse AGENT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define ATTACKER_ID    23456
#define VICTIM_ID      12345
#define REUSE_ATTEMPTS 5

static const char *agent_exe;
static char dir[H_PATH_MAX];
static struct agent agent;

static void wait_byte(int fd)
{
    char c;
    ssize_t n;
    while ((n = read(fd, &c, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1)
        h_fail("child: pid 1 went away");
}

static void send_byte(int fd)
{
    H_CHECK(write(fd, "x", 1) == 1, "cannot signal a child: %s", strerror(errno));
}

struct attacker {
    pid_t pid;
    int rep;   /* reports from the attacker and its holder */
    int go_wr; /* a byte here makes the holder send its WhoAmI */
};

/* Forks the attacker: it switches to ATTACKER_ID, connects, asks WhoAmI
 * itself if first_request (reported), forks the holder, which keeps the
 * socket and asks WhoAmI when told to (reported), and then exits at once
 * (exit_now) or waits to be killed. */
static void attacker_spawn(struct attacker *a, bool first_request, bool exit_now)
{
    int sv[2], go[2];
    H_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s",
            strerror(errno));
    H_CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        (void)close(sv[0]);
        (void)close(go[1]);
        h_become(&(struct h_creds){.uid = ATTACKER_ID, .gid = ATTACKER_ID});
        int fd = proto_connect(agent.sock);
        if (fd < 0)
            h_fail("attacker: cannot connect: %s", strerror(-fd));
        if (first_request)
            report_whoami(sv[1], fd);
        pid_t holder = fork();
        if (holder < 0)
            h_fail("attacker: fork: %s", strerror(errno));
        if (holder == 0) {
            wait_byte(go[0]);
            /* Closed before the report, so that pid 1 knows the close
             * happened before it goes on. */
            Sockid__Workload__Response *resp = NULL;
            int r = proto_whoami(fd, &resp);
            (void)close(fd);
            if (report_send(sv[1], r, resp) < 0)
                h_fail("holder: cannot report to pid 1");
            _exit(0);
        }
        (void)close(fd);
        if (exit_now)
            _exit(0);
        for (;;)
            pause();
    }
    (void)close(sv[1]);
    (void)close(go[0]);
    *a = (struct attacker){.pid = pid, .rep = sv[0], .go_wr = go[1]};
}

static void attacker_close(struct attacker *a)
{
    (void)close(a->rep);
    (void)close(a->go_wr);
}

static Sockid__Workload__Response *next_report(int rep, const char *who, int *ret_r, char *desc,
                                               size_t desc_len)
{
    Sockid__Workload__Response *resp = NULL;
    int r;
    int e = report_recv(rep, H_TIMEOUT_MS * 2, &r, &resp);
    H_CHECK(e == 0, "no report from the %s (%s)", who, strerror(-e));
    proto_describe_result(r, resp, desc, desc_len);
    *ret_r = r;
    return resp;
}

static void reap_status(pid_t pid, int *ret_status)
{
    while (waitpid(pid, ret_status, 0) < 0)
        H_CHECK(errno == EINTR, "waitpid %d: %s", (int)pid, strerror(errno));
}

static void reap(pid_t pid)
{
    int status;
    reap_status(pid, &status);
}

static void kill_reap(pid_t pid)
{
    (void)kill(pid, SIGKILL);
    reap(pid);
}

/* The real and effective uid of pid, from this namespace's /proc. */
static void proc_uids(pid_t pid, unsigned long *ret_ruid, unsigned long *ret_euid)
{
    char path[64], buf[4096];
    (void)snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    H_CHECK(fd >= 0, "cannot open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    (void)close(fd);
    H_CHECK(n > 0, "cannot read %s", path);
    buf[n] = '\0';
    const char *u = strstr(buf, "\nUid:");
    H_CHECK(u && sscanf(u + 5, "%lu %lu", ret_ruid, ret_euid) == 2, "no Uid: line in %s", path);
}

static void set_last_pid(pid_t pid)
{
    int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC);
    H_CHECK(fd >= 0, "cannot open /proc/sys/kernel/ns_last_pid: %s", strerror(errno));
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d", (int)pid);
    H_CHECK(write(fd, buf, (size_t)len) == len, "cannot write ns_last_pid: %s", strerror(errno));
    (void)close(fd);
}

/* Makes a victim, running as VICTIM_ID, that has the pid `want` (free, since
 * its owner was reaped). Returns its pid. */
static pid_t victim_take_pid(pid_t want)
{
    for (int attempt = 1; attempt <= REUSE_ATTEMPTS; attempt++) {
        int ready[2];
        H_CHECK(pipe2(ready, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
        set_last_pid(want - 1);
        pid_t v = fork();
        H_CHECK(v >= 0, "fork: %s", strerror(errno));
        if (v == 0) {
            (void)close(ready[0]);
            h_become(&(struct h_creds){.uid = VICTIM_ID, .gid = VICTIM_ID});
            if (write(ready[1], "v", 1) != 1)
                _exit(1);
            for (;;)
                pause();
        }
        (void)close(ready[1]);
        char c;
        ssize_t n;
        while ((n = read(ready[0], &c, 1)) < 0 && errno == EINTR)
            ;
        (void)close(ready[0]);
        H_CHECK(n == 1, "the victim failed to switch to uid %d", VICTIM_ID);
        if (v == want) {
            unsigned long ruid, euid;
            proc_uids(v, &ruid, &euid);
            H_CHECK(ruid == VICTIM_ID && euid == VICTIM_ID,
                    "/proc/%d/status shows uid %lu/%lu, expected the victim's %d", (int)v, ruid,
                    euid, VICTIM_ID);
            return v;
        }
        h_note("  attempt %d: the victim got pid %d, not %d; retrying", attempt, (int)v, (int)want);
        kill_reap(v);
    }
    h_fail("could not make a victim take pid %d in %d attempts; the attack cannot be staged",
           (int)want, REUSE_ATTEMPTS);
}

/* The holder's answer, after the attacker's pid went to the victim. */
static void check_attack_answer(const char *variant, pid_t victim, int r,
                                const Sockid__Workload__Response *resp, const char *desc)
{
    char victim_uid[32];
    (void)snprintf(victim_uid, sizeof(victim_uid), "unix:uid:%d", VICTIM_ID);
    if (r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI) {
        const Sockid__Workload__WhoAmIResponse *w = resp->whoami;
        H_CHECK(!proto_has_selector(w, victim_uid) && !(w->pid == victim && w->uid == VICTIM_ID),
                "variant %s: THE AGENT WAS FOOLED: it answered the attacker's holder with the "
                "victim's identity: %s",
                variant, desc);
        h_fail("variant %s: the agent answered for a peer that has exited and been reaped "
               "(expected PEER_GONE, PERMISSION_DENIED or a close): %s",
               variant, desc);
    }
    if (r == -ECONNRESET) {
        h_note("variant %s: the agent closed the connection", variant);
        return;
    }
    H_CHECK(r == 0, "variant %s: expected an error response or a close, got %s", variant, desc);
    H_CHECK(resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR,
            "variant %s: expected an error response, got %s", variant, desc);
    H_CHECK(resp->error->code == SOCKID__ERROR_CODE__PEER_GONE ||
                resp->error->code == SOCKID__ERROR_CODE__PERMISSION_DENIED,
            "variant %s: expected PEER_GONE or PERMISSION_DENIED, got %s", variant, desc);
    /* What an operator sees: the refusal, with the pid and the attacker's
     * connect-time uid. */
    char pid_field[32], uid_field[32];
    (void)snprintf(pid_field, sizeof(pid_field), "pid=%d ", (int)victim);
    (void)snprintf(uid_field, sizeof(uid_field), "uid=%d ", ATTACKER_ID);
    const char *const line[] = {"refused", pid_field, uid_field, "request=whoami", NULL};
    H_CHECK(agent_log_has_line(&agent, line),
            "variant %s: the agent's log has no refusal line with \"%s\" and \"%s\"", variant,
            pid_field, uid_field);
    h_note("variant %s: the agent answered %s (refusal logged)", variant, desc);
}

static void expect_attacker_served(const char *variant, pid_t pid, int r,
                                   const Sockid__Workload__Response *resp, const char *desc)
{
    char sel[32];
    (void)snprintf(sel, sizeof(sel), "unix:uid:%d", ATTACKER_ID);
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI &&
                proto_has_selector(resp->whoami, sel) && resp->whoami->pid == pid,
            "variant %s: expected a WhoAmI answer with %s and pid %d, got %s", variant, sel,
            (int)pid, desc);
}

static void run_control(void)
{
    const char *v = "control (attacker alive)";
    struct attacker a;
    char desc[2048];
    int r;
    h_note("variant %s:", v);
    attacker_spawn(&a, true, false);
    Sockid__Workload__Response *resp = next_report(a.rep, "attacker", &r, desc, sizeof(desc));
    expect_attacker_served(v, a.pid, r, resp, desc);
    h_note("  attacker pid %d asked itself: %s", (int)a.pid, desc);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    send_byte(a.go_wr);
    resp = next_report(a.rep, "holder", &r, desc, sizeof(desc));
    expect_attacker_served(v, a.pid, r, resp, desc);
    h_note("variant %s: the holder, on the attacker's connection, got %s", v, desc);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    kill_reap(a.pid);
    attacker_close(&a);
}

/* first_request: the attacker is served once before it exits (variant 1);
 * stop_agent: the agent is stopped from before the connect until the pid is
 * reused, so it accepts a connection whose peer is long gone (variant 2b). */
static void run_attack(const char *v, bool first_request, bool stop_agent)
{
    struct attacker a;
    char desc[2048];
    int r, status;
    h_note("variant %s:", v);
    if (stop_agent) {
        H_CHECK(kill(agent.pid, SIGSTOP) == 0, "cannot stop the agent: %s", strerror(errno));
        H_CHECK(waitpid(agent.pid, &status, WUNTRACED) == agent.pid && WIFSTOPPED(status),
                "the agent did not stop (status 0x%x)", (unsigned)status);
        h_note("  agent stopped (SIGSTOP): it accepts nothing until the pid is reused");
    }
    attacker_spawn(&a, first_request, true);
    if (first_request) {
        Sockid__Workload__Response *resp = next_report(a.rep, "attacker", &r, desc, sizeof(desc));
        expect_attacker_served(v, a.pid, r, resp, desc);
        h_note("  attacker pid %d (uid %d) was served while alive: %s", (int)a.pid, ATTACKER_ID,
               desc);
        if (resp)
            sockid__workload__response__free_unpacked(resp, NULL);
    }
    reap(a.pid);
    h_note("  attacker pid %d exited and was reaped; its holder keeps the socket", (int)a.pid);

    pid_t victim = victim_take_pid(a.pid);
    h_note("  victim now has pid %d and /proc/%d/status shows uid %d: an agent going by pid "
           "would see the victim",
           (int)victim, (int)victim, VICTIM_ID);
    if (stop_agent) {
        H_CHECK(kill(agent.pid, SIGCONT) == 0, "cannot continue the agent: %s", strerror(errno));
        h_note("  agent continued (SIGCONT)");
    }

    send_byte(a.go_wr);
    Sockid__Workload__Response *resp = next_report(a.rep, "holder", &r, desc, sizeof(desc));
    check_attack_answer(v, victim, r, resp, desc);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    kill_reap(victim);
    attacker_close(&a);
    proto_expect_served(agent.sock, 0, "a root client after the attack");
}

/* The namespace's pid 1. */
static int pid1_main(void)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (unshare(CLONE_NEWNS) < 0) {
        if (errno == EPERM)
            h_skip("unshare(CLONE_NEWNS): %s", strerror(errno));
        h_fail("unshare(CLONE_NEWNS): %s", strerror(errno));
    }
    H_CHECK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0,
            "cannot make mounts private: %s", strerror(errno));
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        if (errno == EPERM)
            h_skip("cannot mount a proc for the new pid namespace: %s", strerror(errno));
        h_fail("cannot mount a proc for the new pid namespace: %s", strerror(errno));
    }

    agent_start(&agent, agent_exe, dir, NULL);
    proto_expect_served(agent.sock, 0, "a root client before the attack");

    run_control();
    run_attack("1 (captured alive, exits before the request)", true, false);
    run_attack("2a (exits right after connect, before any request)", false, false);
    run_attack("2b (exits and is reaped before the agent accepts)", false, true);

    proto_expect_served(agent.sock, 0, "a root client at the end");
    agent_stop(&agent);
    /* Holders and anything else left: pid 1 may kill the whole namespace. */
    (void)kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
        ;
    h_note("PASS");
    return 0;
}

/* Runs in a helper process, because unshare(CLONE_NEWPID) puts every later
 * child of its caller in the new namespace, and once that namespace's pid 1
 * is gone the caller can fork no more (the leak checker's own clone at exit
 * included). Returns pid 1's exit status. */
static int helper_main(void)
{
    if (unshare(CLONE_NEWPID) < 0) {
        if (errno == EPERM)
            h_skip("unshare(CLONE_NEWPID): %s", strerror(errno));
        h_fail("unshare(CLONE_NEWPID): %s", strerror(errno));
    }
    pid_t pid = fork();
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (getpid() != 1)
            h_fail("the first child of unshare(CLONE_NEWPID) is pid %d, not 1", (int)getpid());
        exit(pid1_main());
    }
    /* The namespace's own waits are bounded; this one covers a hang. */
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        H_CHECK(w == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
        if (waited >= 90000) {
            (void)kill(pid, SIGKILL);
            reap(pid);
            h_fail("the test's pid namespace did not finish within 90 s");
        }
        struct timespec ts = {.tv_nsec = 10 * 1000000L};
        (void)nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    h_fail("pid 1 of the test namespace was killed by signal %d", WTERMSIG(status));
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s AGENT\n", argv[0]);
        return 2;
    }
    agent_exe = argv[1];
    h_require_root("a pid namespace and ns_last_pid");
    h_tmpdir(dir);
    fflush(stdout);
    pid_t helper = fork();
    H_CHECK(helper >= 0, "fork: %s", strerror(errno));
    if (helper == 0)
        _exit(helper_main());
    int status;
    reap_status(helper, &status);
    if (WIFEXITED(status) && WEXITSTATUS(status) == H_SKIP)
        return H_SKIP;
    H_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the test's pid namespace failed");
    return 0;
}
