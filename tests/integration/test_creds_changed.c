/* A process whose credentials change after it connected is refused (DESIGN
 * §2, peer identity rule 5): the agent attests the kernel's connect-time
 * credentials, and a process that now runs as someone else must not be
 * handed an identity for either of them. A process that connects as an
 * unprivileged user and stays so is served as that user.
 *
 * Needs root (to change uid). Usage: test_creds_changed AGENT */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define OTHER_ID 12345

static struct agent agent;

enum scenario {
    CHANGE_AFTER_FIRST_REQUEST,  /* whoami as root, setuid, whoami */
    CHANGE_BEFORE_FIRST_REQUEST, /* connect as root, setuid, whoami */
    UNPRIVILEGED_FROM_START,     /* setuid, connect, whoami, whoami */
};

static pid_t spawn(enum scenario sc, int *ret_rep)
{
    int sv[2];
    H_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair: %s",
            strerror(errno));
    pid_t pid = fork();
    H_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        (void)close(sv[0]);
        int rep = sv[1];
        if (sc == UNPRIVILEGED_FROM_START)
            h_become(&(struct h_creds){.uid = OTHER_ID, .gid = OTHER_ID});
        int fd = proto_connect(agent.sock);
        if (fd < 0)
            h_fail("child: cannot connect: %s", strerror(-fd));
        switch (sc) {
        case CHANGE_AFTER_FIRST_REQUEST:
            report_whoami(rep, fd);
            h_become(&(struct h_creds){.uid = OTHER_ID, .gid = OTHER_ID});
            report_whoami(rep, fd);
            break;
        case CHANGE_BEFORE_FIRST_REQUEST:
            h_become(&(struct h_creds){.uid = OTHER_ID, .gid = OTHER_ID});
            report_whoami(rep, fd);
            break;
        case UNPRIVILEGED_FROM_START:
            report_whoami(rep, fd);
            report_whoami(rep, fd);
            break;
        }
        (void)close(fd);
        _exit(0);
    }
    (void)close(sv[1]);
    *ret_rep = sv[0];
    return pid;
}

static Sockid__Workload__Response *next_report(int rep, const char *what, int *ret_r, char *desc,
                                               size_t desc_len)
{
    Sockid__Workload__Response *resp = NULL;
    int r;
    int e = report_recv(rep, H_TIMEOUT_MS * 2, &r, &resp);
    H_CHECK(e == 0, "%s: no report from the child (%s)", what, strerror(-e));
    proto_describe_result(r, resp, desc, desc_len);
    *ret_r = r;
    return resp;
}

static void reap(pid_t pid, const char *what)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        H_CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
    H_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: the child failed (status 0x%x)",
            what, (unsigned)status);
}

/* A whoami served as uid/gid, naming pid. */
static void expect_served(int r, const Sockid__Workload__Response *resp, const char *desc,
                          pid_t pid, unsigned id, const char *what)
{
    char uid_sel[48], gid_sel[48];
    (void)snprintf(uid_sel, sizeof(uid_sel), "unix:uid:%u", id);
    (void)snprintf(gid_sel, sizeof(gid_sel), "unix:gid:%u", id);
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
            "%s: expected a WhoAmI answer, got %s", what, desc);
    H_CHECK(proto_has_selector(resp->whoami, uid_sel) && proto_has_selector(resp->whoami, gid_sel),
            "%s: expected %s and %s, got %s", what, uid_sel, gid_sel, desc);
    H_CHECK(resp->whoami->uid == id && resp->whoami->pid == pid,
            "%s: expected pid %d uid %u, got %s", what, (int)pid, id, desc);
}

/* A refusal for a changed identity, logged with the pid, the connect-time
 * uid and the reason. */
static void expect_refused(int r, const Sockid__Workload__Response *resp, const char *desc,
                           pid_t pid, const char *what)
{
    H_CHECK(r == 0, "%s: expected an error response, got %s", what, desc);
    H_CHECK(resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR,
            "%s: the agent answered a process whose credentials changed since it connected: %s",
            what, desc);
    H_CHECK(resp->error->code == SOCKID__ERROR_CODE__PERMISSION_DENIED ||
                resp->error->code == SOCKID__ERROR_CODE__PEER_GONE,
            "%s: expected PERMISSION_DENIED or PEER_GONE, got %s", what, desc);
    H_CHECK(strstr(resp->error->message, "changed"),
            "%s: the message should say the credentials changed, got %s", what, desc);
    char pid_field[32];
    (void)snprintf(pid_field, sizeof(pid_field), "pid=%d ", (int)pid);
    const char *const line[] = {
        "refused", pid_field, "uid=0 ", "request=whoami", "credentials changed", NULL};
    if (!agent_log_has_line(&agent, line))
        h_fail("%s: the agent's log (%s) has no line with \"refused\", \"%s\", \"uid=0\", "
               "\"request=whoami\" and \"credentials changed\"",
               what, agent.log, pid_field);
    h_note("%s: %s (and logged)", what, desc);
}

static void scenario_change_after_first_request(void)
{
    const char *what = "uid changed after a served request";
    int rep, r;
    char desc[1024];
    pid_t pid = spawn(CHANGE_AFTER_FIRST_REQUEST, &rep);
    Sockid__Workload__Response *resp = next_report(rep, what, &r, desc, sizeof(desc));
    expect_served(r, resp, desc, pid, 0, "first request, as root");
    h_note("%s: first request as root: %s", what, desc);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    resp = next_report(rep, what, &r, desc, sizeof(desc));
    H_CHECK(r != 0 || resp->kind_case != SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI ||
                !proto_has_selector(resp->whoami, "unix:uid:12345"),
            "%s: the agent attested the new uid: %s", what, desc);
    expect_refused(r, resp, desc, pid, what);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    (void)close(rep);
    reap(pid, what);
}

static void scenario_change_before_first_request(void)
{
    const char *what = "uid changed between connect and the first request";
    int rep, r;
    char desc[1024];
    pid_t pid = spawn(CHANGE_BEFORE_FIRST_REQUEST, &rep);
    Sockid__Workload__Response *resp = next_report(rep, what, &r, desc, sizeof(desc));
    expect_refused(r, resp, desc, pid, what);
    if (resp)
        sockid__workload__response__free_unpacked(resp, NULL);
    (void)close(rep);
    reap(pid, what);
}

static void scenario_unprivileged(void)
{
    const char *what = "connected as uid 12345 and stayed so";
    int rep, r;
    char desc[1024];
    pid_t pid = spawn(UNPRIVILEGED_FROM_START, &rep);
    for (int i = 0; i < 2; i++) {
        Sockid__Workload__Response *resp = next_report(rep, what, &r, desc, sizeof(desc));
        expect_served(r, resp, desc, pid, OTHER_ID, what);
        H_CHECK(!proto_has_selector(resp->whoami, "unix:uid:0"), "%s: got unix:uid:0: %s", what,
                desc);
        sockid__workload__response__free_unpacked(resp, NULL);
    }
    h_note("%s: served twice on one connection: %s", what, desc);
    (void)close(rep);
    reap(pid, what);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s AGENT\n", argv[0]);
        return 2;
    }
    h_require_root("changing a process's uid after it connected");
    char dir[H_PATH_MAX];
    h_tmpdir(dir);
    agent_start(&agent, argv[1], dir, NULL);

    scenario_change_after_first_request();
    scenario_change_before_first_request();
    scenario_unprivileged();
    proto_expect_served(agent.sock, 0, "a root client afterwards");

    agent_stop(&agent);
    h_note("PASS");
    return 0;
}
