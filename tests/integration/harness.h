/* A small harness for integration tests that run the real sockid-agent.
 *
 * A test makes a temporary directory, starts the agent on DIR/agent.sock with
 * its data in DIR/data and its stderr in DIR/agent.log, talks to it with the
 * raw protocol helpers below, and stops it with SIGTERM, checking that it
 * exits 0 and removes its socket.
 *
 * Failure is h_fail(): it prints one line, kills every agent this process
 * started (and prints their logs), removes the temporary directories, and
 * exits 1. A forked child that calls h_fail() only exits: cleanup belongs to
 * the process that made the resources. Agents are started with
 * PR_SET_PDEATHSIG, so even a test killed by a timeout leaves none behind.
 * SOCKID_IT_SHOW_LOGS=1 prints the agents' logs at exit even on success.
 * A struct agent must outlive the test (static or global): the harness keeps
 * a pointer to it for the cleanup. */
#ifndef SOCKID_IT_HARNESS_H
#define SOCKID_IT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "admin.pb-c.h"
#include "workload.pb-c.h"

/* Exit status ctest reports as skipped. */
#define H_SKIP 77
/* The deadline of a single wait: a start, a response, a stop. Generous, so
 * that a slow sanitizer build never fails a test; nothing waits for it
 * unless something is wrong. */
#define H_TIMEOUT_MS 10000

#define H_PATH_MAX 512

struct agent {
    pid_t pid; /* 0: not running */
    char exe[H_PATH_MAX];
    char dir[H_PATH_MAX];
    char sock[H_PATH_MAX];
    char log[H_PATH_MAX];
};

__attribute__((noreturn, format(printf, 1, 2))) void h_fail(const char *fmt, ...);
__attribute__((noreturn, format(printf, 1, 2))) void h_skip(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void h_note(const char *fmt, ...);

#define H_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            h_fail(__VA_ARGS__);                                                                   \
    } while (0)

/* Skips the test unless it runs as root. */
void h_require_root(const char *why);

/* Makes a mode-0755 temporary directory (so other uids reach the socket),
 * removed on exit and on h_fail(). */
void h_tmpdir(char ret[static H_PATH_MAX]);

/* Writes text into DIR/name and stores the whole path in ret. */
void h_write_file(const char *dir, const char *name, const char *text, char ret[static H_PATH_MAX]);

/* Starts exe with --socket DIR/agent.sock --data-dir DIR/data and the extra
 * arguments (NULL-terminated, may be NULL), stderr into DIR/agent.log, and
 * waits until its socket accepts a connection. Fails the test if it exits
 * or does not answer within H_TIMEOUT_MS. */
void agent_start(struct agent *a, const char *exe, const char *dir, const char *const *extra);

/* SIGTERM, then waits for the exit. Fails the test unless the agent exits
 * with status 0 and its socket is gone. */
void agent_stop(struct agent *a);

/* Waits for an agent told to stop: fails the test unless it exits with
 * status 0 within H_TIMEOUT_MS and its socket is gone. */
void agent_expect_exit(struct agent *a, const char *what);

/* SIGKILL and reap, for failure paths; safe on a stopped agent. */
void agent_kill(struct agent *a);

void agent_dump_log(const struct agent *a);

/* Does the agent's log hold a line containing every one of the strings
 * (NULL-terminated)? */
bool agent_log_has_line(const struct agent *a, const char *const *needles);

/* --- raw protocol ------------------------------------------------------ */

/* A connected blocking socket, or a negative errno. */
int proto_connect(const char *path);

/* Packs req into one frame and sends it. */
int proto_send(int fd, const Sockid__Workload__Request *req);

/* Sends bytes as they are. */
int proto_send_raw(int fd, const void *buf, size_t len);

/* Reads one framed Response within timeout_ms. Returns 0 and a response to
 * free with sockid__workload__response__free_unpacked(), or -ECONNRESET when
 * the agent closed the connection, -ETIMEDOUT, -EBADMSG for bytes that do
 * not decode, or another negative errno. */
int proto_recv(int fd, int timeout_ms, Sockid__Workload__Response **ret);

/* Sends one WhoAmI request and reads its answer (as proto_recv). */
int proto_whoami(int fd, Sockid__Workload__Response **ret);

/* Returns 0 once the agent has closed the connection (any bytes it sends
 * first are discarded), -ETIMEDOUT if it did not within timeout_ms. */
int proto_wait_closed(int fd, int timeout_ms);

bool proto_has_selector(const Sockid__Workload__WhoAmIResponse *w, const char *selector);

const char *proto_code_name(int code);

/* One line for logs: "whoami pid=... uid=... selectors=[...]" or
 * "error CODE: message". */
void proto_describe(const Sockid__Workload__Response *resp, char *buf, size_t len);

/* One line for the outcome of a proto_recv(): its response or its error. */
void proto_describe_result(int r, const Sockid__Workload__Response *resp, char *buf, size_t len);

/* Connects, asks WhoAmI and fails the test unless the answer is a WhoAmI
 * response carrying unix:uid:<uid>. */
void proto_expect_served(const char *sock, uid_t uid, const char *what);

/* Passing a proto_recv() outcome from a child process to its parent over a
 * stream socket (a socketpair): the result, then the response's bytes. */
int report_send(int fd, int r, const Sockid__Workload__Response *resp);
int report_recv(int fd, int timeout_ms, int *ret_r, Sockid__Workload__Response **ret_resp);
/* In a child: asks WhoAmI on fd and reports the outcome on rep. */
void report_whoami(int rep, int fd);

/* --- other users --------------------------------------------------------- */

/* Credentials for a child process: uid, gid and exactly these supplementary
 * groups (none when n_groups is 0). */
struct h_creds {
    uid_t uid;
    gid_t gid;
    gid_t groups[4];
    size_t n_groups;
};

/* Switches this process to creds for good (needs root); h_fail() when it
 * cannot. */
void h_become(const struct h_creds *creds);

/* Forks a child that runs with creds (switching needs root; NULL keeps this
 * process's credentials) and dies with the test.
 * Returns the child's pid in the parent and 0 in the child, as fork() does.
 * The child reports failure with h_fail(), which only exits it. */
pid_t h_fork_as(const struct h_creds *creds);

/* Waits for a child (H_TIMEOUT_MS, then kills it and fails the test) and
 * returns its exit status; fails the test if a signal ended it. */
int h_wait_child(pid_t pid, const char *what);

#define H_RUN_OUTPUT_MAX 16384

/* The outcome of h_run(): the child's pid, its exit status, and the start of
 * its stdout and stderr, NUL-terminated. */
struct h_run {
    pid_t pid;
    int status;
    char out[H_RUN_OUTPUT_MAX];
    char err[H_RUN_OUTPUT_MAX];
};

/* Runs argv (argv[0] a path) with creds (NULL: as this process), stdin from
 * /dev/null, stdout and stderr captured, and waits for it as h_wait_child()
 * does. */
void h_run(const struct h_creds *creds, const char *const *argv, struct h_run *ret);

/* --- admin socket ---------------------------------------------------------- */

/* Where agent_start() puts the admin socket: DIR/admin.sock. */
void agent_admin_path(const struct agent *a, char ret[static H_PATH_MAX]);

/* Waits until the admin socket accepts a connection. agent_start() waits for
 * the workload socket only, which the agent opens first. */
void agent_wait_admin(const struct agent *a);

/* Each sends one admin request as one frame: 0 or a negative errno. */
int admin_send_create(int fd, const char *spiffe_id, const char *const *selectors, size_t n);
int admin_send_delete(int fd, const char *id);
int admin_send_get(int fd, const char *id);
int admin_send_list(int fd, const char *page_token, uint32_t page_size);
int admin_send_health(int fd);

/* Reads one framed admin Response, as proto_recv() does a workload one. Free
 * it with sockid__admin__response__free_unpacked(). */
int admin_recv(int fd, int timeout_ms, Sockid__Admin__Response **ret);

/* One line for the outcome of an admin_recv(): "create_entry id=... spiffe_id=...",
 * "error CODE: message", or why there is no response. */
void admin_describe_result(int r, const Sockid__Admin__Response *resp, char *buf, size_t len);

/* Do the bytes equal the C string? */
bool h_bytes_eq(ProtobufCBinaryData b, const char *s);

/* Every entry, read page by page on one connection. */
struct admin_listing {
    size_t n;
    size_t pages;
    char (*ids)[33];
    char **spiffe_ids;
    uint64_t *revisions;
};

/* Lists all entries with pages of page_size (0: the agent's default) and
 * fails the test on any error, or if an entry repeats across pages. */
void admin_list_all(const char *admin_sock, uint32_t page_size, struct admin_listing *ret);
void admin_listing_free(struct admin_listing *l);

/* Index of the entry with this id, or -1. */
long admin_listing_find(const struct admin_listing *l, const char *id);

/* --- tokens ------------------------------------------------------------------ */

/* Each sends one workload request and reads its answer (as proto_recv).
 * proto_fetch_token_bytes takes the audiences and the SPIFFE ID as bytes, so
 * that a test can send what a C string cannot hold (an embedded NUL); an
 * empty spiffe_id asks for every identity. */
int proto_fetch_token_bytes(int fd, const ProtobufCBinaryData *audiences, size_t n,
                            ProtobufCBinaryData spiffe_id, Sockid__Workload__Response **ret);
/* spiffe_id NULL: every identity. */
int proto_fetch_token(int fd, const char *const *audiences, size_t n, const char *spiffe_id,
                      Sockid__Workload__Response **ret);
int proto_fetch_bundle(int fd, Sockid__Workload__Response **ret);
int proto_validate(int fd, const char *token, const char *audience,
                   Sockid__Workload__Response **ret);

/* An entry with a token TTL (0: the agent's default_ttl) and allowed
 * audiences (none: any), as one admin frame: 0 or a negative errno. */
int admin_send_create_full(int fd, const char *spiffe_id, const char *const *selectors, size_t n,
                           uint32_t ttl_seconds, const char *const *audiences, size_t n_audiences);
int admin_send_rotate_key(int fd);

#endif
