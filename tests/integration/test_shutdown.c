/* Stopping while clients are busy: SIGTERM must end the agent with exit
 * status 0 and its socket removed, whatever its clients do at that moment,
 * and no client may be left hanging.
 *
 * The agent is held with SIGSTOP while the signal is queued and the clients
 * act, so that on SIGCONT it sees the signal and the clients' events in one
 * wake-up, the signal first: the order a busy agent meets at shutdown, made
 * certain instead of left to chance.
 *
 * Usage: test_shutdown AGENT */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define N_CLIENTS 5

static const char *agent_exe;

/* N_CLIENTS connections, each answered once, so the agent watches them all. */
static void open_clients(const struct agent *a, int fds[static N_CLIENTS])
{
    for (size_t i = 0; i < N_CLIENTS; i++) {
        fds[i] = proto_connect(a->sock);
        H_CHECK(fds[i] >= 0, "connect: %s", strerror(-fds[i]));
        Sockid__Workload__Response *resp = NULL;
        int r = proto_whoami(fds[i], &resp);
        H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
                "client %zu was not served before the stop", i + 1);
        sockid__workload__response__free_unpacked(resp, NULL);
    }
}

static void hold(struct agent *a)
{
    int status;
    H_CHECK(kill(a->pid, SIGSTOP) == 0, "cannot stop the agent: %s", strerror(errno));
    H_CHECK(waitpid(a->pid, &status, WUNTRACED) == a->pid && WIFSTOPPED(status),
            "the agent did not stop (status 0x%x)", (unsigned)status);
    H_CHECK(kill(a->pid, SIGTERM) == 0, "cannot signal the agent: %s", strerror(errno));
}

static void release(struct agent *a)
{
    H_CHECK(kill(a->pid, SIGCONT) == 0, "cannot continue the agent: %s", strerror(errno));
}

/* Clients hang up just as the agent is told to stop. */
static void case_clients_close(const char *dir)
{
    const char *what = "SIGTERM as 5 clients close their connections";
    static struct agent a;
    agent_start(&a, agent_exe, dir, NULL);
    int fds[N_CLIENTS];
    open_clients(&a, fds);
    hold(&a);
    for (size_t i = 0; i < N_CLIENTS; i++)
        (void)close(fds[i]);
    release(&a);
    agent_expect_exit(&a, what);
    h_note("%s: exit 0, socket removed", what);
}

/* Clients send a request just as the agent is told to stop: each gets an
 * answer or a close, never silence. */
static void case_clients_ask(const char *dir)
{
    const char *what = "SIGTERM as 5 clients send a request";
    static struct agent a;
    agent_start(&a, agent_exe, dir, NULL);
    int fds[N_CLIENTS];
    open_clients(&a, fds);
    hold(&a);
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__WhoAmIRequest w = SOCKID__WORKLOAD__WHO_AM_IREQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI;
    req.whoami = &w;
    for (size_t i = 0; i < N_CLIENTS; i++)
        H_CHECK(proto_send(fds[i], &req) == 0, "client %zu could not send", i + 1);
    release(&a);
    size_t answered = 0, closed = 0;
    for (size_t i = 0; i < N_CLIENTS; i++) {
        Sockid__Workload__Response *resp = NULL;
        int r = proto_recv(fds[i], H_TIMEOUT_MS, &resp);
        char desc[1024];
        proto_describe_result(r, resp, desc, sizeof(desc));
        H_CHECK(r == 0 || r == -ECONNRESET, "%s: client %zu got neither an answer nor a close: %s",
                what, i + 1, desc);
        if (r == 0) {
            answered++;
            sockid__workload__response__free_unpacked(resp, NULL);
        } else {
            closed++;
        }
        (void)close(fds[i]);
    }
    agent_expect_exit(&a, what);
    h_note("%s: %zu answered, %zu closed; exit 0, socket removed", what, answered, closed);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s AGENT\n", argv[0]);
        return 2;
    }
    agent_exe = argv[1];
    char dir1[H_PATH_MAX], dir2[H_PATH_MAX];
    h_tmpdir(dir1);
    h_tmpdir(dir2);
    case_clients_close(dir1);
    case_clients_ask(dir2);
    h_note("PASS");
    return 0;
}
