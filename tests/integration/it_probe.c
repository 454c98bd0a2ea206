/* A minimal client for the shell tests, independent of the sockid CLI, so
 * that a lifecycle test fails only for the agent's sake.
 *
 *   it_probe connect SOCKET   exit 0 if a connection is accepted
 *   it_probe whoami SOCKET    asks WhoAmI, prints the answer on one line;
 *                             exit 0 for a WhoAmI answer, 1 for an error
 *                             answer, 3 when nothing answers
 *   it_probe stop SOCKET PID TERM|INT
 *                             connects, asks Health, sends the signal to PID
 *                             with the connection still open and waits for
 *                             the agent to close it: the answer proves the
 *                             agent took in every earlier close, so none
 *                             arrives together with the signal (a case
 *                             test_shutdown covers on its own) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static int probe_stop(const char *sock, const char *pid_arg, const char *sig_arg)
{
    int sig = strcmp(sig_arg, "TERM") == 0 ? SIGTERM : strcmp(sig_arg, "INT") == 0 ? SIGINT : 0;
    char *end;
    long pid = strtol(pid_arg, &end, 10);
    if (!sig || *end || pid <= 1) {
        fprintf(stderr, "usage: it_probe stop SOCKET PID TERM|INT\n");
        return 2;
    }
    int fd = proto_connect(sock);
    if (fd < 0) {
        fprintf(stderr, "it_probe: cannot connect to %s: %s\n", sock, strerror(-fd));
        return 3;
    }
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__HealthRequest health = SOCKID__WORKLOAD__HEALTH_REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_HEALTH;
    req.health = &health;
    Sockid__Workload__Response *resp = NULL;
    int r = proto_send(fd, &req);
    if (r == 0)
        r = proto_recv(fd, H_TIMEOUT_MS, &resp);
    if (r < 0) {
        fprintf(stderr, "it_probe: the agent did not answer Health: %s\n", strerror(-r));
        return 3;
    }
    sockid__workload__response__free_unpacked(resp, NULL);
    if (kill((pid_t)pid, sig) < 0) {
        fprintf(stderr, "it_probe: cannot signal pid %ld: %s\n", pid, strerror(errno));
        return 1;
    }
    r = proto_wait_closed(fd, H_TIMEOUT_MS);
    (void)close(fd);
    if (r < 0) {
        fprintf(stderr, "it_probe: the agent did not close its connections after SIG%s\n", sig_arg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "stop") == 0)
        return probe_stop(argv[2], argv[3], argv[4]);
    if (argc != 3 || (strcmp(argv[1], "connect") != 0 && strcmp(argv[1], "whoami") != 0)) {
        fprintf(stderr, "usage: it_probe connect|whoami SOCKET | stop SOCKET PID TERM|INT\n");
        return 2;
    }
    int fd = proto_connect(argv[2]);
    if (fd < 0) {
        fprintf(stderr, "it_probe: cannot connect to %s: %s\n", argv[2], strerror(-fd));
        return 3;
    }
    if (strcmp(argv[1], "connect") == 0) {
        (void)close(fd);
        return 0;
    }
    Sockid__Workload__Response *resp = NULL;
    int r = proto_whoami(fd, &resp);
    (void)close(fd);
    char desc[4096];
    proto_describe_result(r, resp, desc, sizeof(desc));
    printf("%s\n", desc);
    if (r < 0)
        return 3;
    int status = resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI ? 0 : 1;
    sockid__workload__response__free_unpacked(resp, NULL);
    return status;
}
