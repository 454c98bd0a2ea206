/* Who may use the admin socket. Every admin call is authorized by the
 * caller's kernel-reported credentials, whatever the socket file's mode:
 *
 *   - at the default mode 0600, uid 12345 cannot even connect (the CLI exits
 *     3, unreachable);
 *   - with the socket chmod 0666, uid 12345 connects but every call (create,
 *     delete, get, list, health) is refused with PERMISSION_DENIED, "permission
 *     denied" and "not an admin", through the raw protocol and through the
 *     CLI (exit 1); each refusal is logged with the caller's pid and uid; the
 *     entries are unchanged; the workload socket still serves uid 12345;
 *   - admin_uids = 12345 lets uid 12345 create (and no other uid); admin_gids
 *     lets in a caller whose primary or supplementary group is listed.
 *
 * Usage: test_admin_auth AGENT SOCKID */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

#define OUTSIDER  12345u
#define ADMIN_GID 23456u

static const char *agent_exe;
static const char *sockid_exe;

static const struct h_creds outsider = {.uid = OUTSIDER, .gid = OUTSIDER};

struct call {
    const char *name;     /* the request as the agent logs it */
    const char *cli_verb; /* NULL: the CLI has no such call */
};

static const struct call calls[] = {
    {"create_entry", "create"}, {"delete_entry", "delete"}, {"get_entry", "show"},
    {"list_entries", "list"},   {"admin_health", NULL},
};
#define N_CALLS (sizeof(calls) / sizeof(calls[0]))

/* Creates an entry as this process and returns its id. */
static void create_entry(const char *admin, const char *spiffe_id, const char *selector,
                         char ret_id[static 33])
{
    int fd = proto_connect(admin);
    H_CHECK(fd >= 0, "connect %s: %s", admin, strerror(-fd));
    const char *sels[] = {selector};
    int r = admin_send_create(fd, spiffe_id, sels, 1);
    Sockid__Admin__Response *resp = NULL;
    if (r == 0)
        r = admin_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    admin_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY &&
                resp->create_entry->entry && resp->create_entry->entry->id.len == 32,
            "uid %lu: creating %s: expected the new entry, got %s", (unsigned long)getuid(),
            spiffe_id, desc);
    memcpy(ret_id, resp->create_entry->entry->id.data, 32);
    ret_id[32] = '\0';
    sockid__admin__response__free_unpacked(resp, NULL);
    (void)close(fd);
}

static int send_call(int fd, size_t i, const char *id)
{
    static const char *const sels[] = {"unix:uid:12345"};
    switch (i) {
    case 0:
        return admin_send_create(fd, "spiffe://example.org/intruder", sels, 1);
    case 1:
        return admin_send_delete(fd, id);
    case 2:
        return admin_send_get(fd, id);
    case 3:
        return admin_send_list(fd, NULL, 0);
    default:
        return admin_send_health(fd);
    }
}

/* In a child running as the outsider: each call on one connection is refused
 * with PERMISSION_DENIED and a message that says why. */
static void child_expect_refused(const char *admin, const char *victim_id)
{
    int fd = proto_connect(admin);
    H_CHECK(fd >= 0, "uid %u: cannot connect to the mode-0666 admin socket: %s", OUTSIDER,
            strerror(-fd));
    for (size_t i = 0; i < N_CALLS; i++) {
        Sockid__Admin__Response *resp = NULL;
        int r = send_call(fd, i, victim_id);
        if (r == 0)
            r = admin_recv(fd, H_TIMEOUT_MS, &resp);
        char desc[1024];
        admin_describe_result(r, resp, desc, sizeof(desc));
        H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_ERROR &&
                    resp->error->code == SOCKID__ERROR_CODE__PERMISSION_DENIED,
                "uid %u, %s: expected PERMISSION_DENIED, got %s", OUTSIDER, calls[i].name, desc);
        const char *msg = resp->error->message ? resp->error->message : "";
        H_CHECK(strcasestr(msg, "permission denied") && strstr(msg, "not an admin"),
                "uid %u, %s: the refusal does not say \"permission denied\" and \"not an "
                "admin\": %s",
                OUTSIDER, calls[i].name, desc);
        h_note("uid %u (pid %d) %s: %s", OUTSIDER, (int)getpid(), calls[i].name, desc);
        sockid__admin__response__free_unpacked(resp, NULL);
    }
    (void)close(fd);
}

/* A refusal of request by pid as uid OUTSIDER is in the agent's log. */
static void expect_refusal_logged(const struct agent *a, pid_t pid, const char *request)
{
    char who[64], what[64];
    (void)snprintf(who, sizeof(who), "pid=%d uid=%u ", (int)pid, OUTSIDER);
    (void)snprintf(what, sizeof(what), "request=%s ", request);
    const char *needles[] = {"refused", who, what, "not an admin", NULL};
    H_CHECK(agent_log_has_line(a, needles),
            "the agent's log has no refusal of %s for pid %d uid %u (expected a line with "
            "\"refused\", \"%s\", \"%s\" and \"not an admin\")",
            request, (int)pid, OUTSIDER, who, what);
}

static bool same_listing(const struct admin_listing *x, const struct admin_listing *y)
{
    if (x->n != y->n)
        return false;
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->ids[i], y->ids[i]) != 0 || strcmp(x->spiffe_ids[i], y->spiffe_ids[i]) != 0 ||
            x->revisions[i] != y->revisions[i])
            return false;
    return true;
}

static void describe_listing(const struct admin_listing *l, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < l->n && o < len; i++) {
        int k = snprintf(buf + o, len - o, "%s%s=%s@%llu", i ? ", " : "", l->ids[i],
                         l->spiffe_ids[i], (unsigned long long)l->revisions[i]);
        o += k > 0 ? (size_t)k : 0;
    }
}

/* Runs `sockid ARGS...` (NULL-terminated) with creds. */
static void run_cli(const struct h_creds *creds, struct h_run *res, const char *const *args)
{
    const char *argv[32];
    size_t n = 0;
    argv[n++] = sockid_exe;
    for (size_t i = 0; args[i]; i++) {
        H_CHECK(n < sizeof(argv) / sizeof(argv[0]) - 1, "too many CLI arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    h_run(creds, argv, res);
}

static void case_default_mode(const struct agent *a, const char *admin)
{
    struct stat st;
    H_CHECK(stat(admin, &st) == 0, "stat %s: %s", admin, strerror(errno));
    H_CHECK((st.st_mode & 07777) == 0600 && st.st_uid == 0,
            "the admin socket has mode %04o and owner %lu, expected 0600 and root (0)",
            (unsigned)(st.st_mode & 07777), (unsigned long)st.st_uid);

    pid_t pid = h_fork_as(&outsider);
    if (pid == 0) {
        int fd = proto_connect(admin);
        H_CHECK(fd == -EACCES, "uid %u connected to the mode-0600 admin socket (%s)", OUTSIDER,
                fd >= 0 ? "connected" : strerror(-fd));
        _exit(0);
    }
    H_CHECK(h_wait_child(pid, "connect at mode 0600") == 0, "see above");

    static struct h_run res;
    run_cli(&outsider, &res, (const char *const[]){"entry", "list", "--admin-socket", admin, NULL});
    H_CHECK(res.status == 3 && res.err[0],
            "at mode 0600, 'sockid entry list' as uid %u exited %d with stderr \"%s\", expected "
            "3 (unreachable) and a message",
            OUTSIDER, res.status, res.err);
    h_note("admin socket mode 0600: uid %u cannot connect (EACCES); 'sockid entry list' exits 3: "
           "%s",
           OUTSIDER, strtok(res.err, "\n"));
    (void)a;
}

static void case_refused(const struct agent *a, const char *admin)
{
    char keep_root[33], keep_outsider[33];
    create_entry(admin, "spiffe://example.org/keep/root", "unix:uid:0", keep_root);
    create_entry(admin, "spiffe://example.org/keep/outsider", "unix:uid:12345", keep_outsider);
    struct admin_listing before, after;
    admin_list_all(admin, 0, &before);
    H_CHECK(before.n == 2, "root lists %zu entries, expected 2", before.n);

    H_CHECK(chmod(admin, 0666) == 0, "chmod 0666 %s: %s", admin, strerror(errno));

    /* The raw protocol: every call, one connection. */
    pid_t pid = h_fork_as(&outsider);
    if (pid == 0) {
        child_expect_refused(admin, keep_root);
        _exit(0);
    }
    H_CHECK(h_wait_child(pid, "admin calls as an outsider") == 0, "see above");
    for (size_t i = 0; i < N_CALLS; i++)
        expect_refusal_logged(a, pid, calls[i].name);
    h_note("raw protocol: all %zu calls refused, each refusal logged with pid %d uid %u", N_CALLS,
           (int)pid, OUTSIDER);

    /* The CLI: every call it has, one process each. */
    for (size_t i = 0; i < N_CALLS; i++) {
        if (!calls[i].cli_verb)
            continue;
        static struct h_run res;
        const char *v = calls[i].cli_verb;
        if (strcmp(v, "create") == 0)
            run_cli(&outsider, &res,
                    (const char *const[]){"entry", "create", "--admin-socket", admin, "--spiffe-id",
                                          "spiffe://example.org/intruder", "--selector",
                                          "unix:uid:12345", NULL});
        else if (strcmp(v, "list") == 0)
            run_cli(&outsider, &res,
                    (const char *const[]){"entry", "list", "--admin-socket", admin, NULL});
        else
            run_cli(&outsider, &res,
                    (const char *const[]){"entry", v, "--admin-socket", admin, keep_root, NULL});
        H_CHECK(res.status == 1, "'sockid entry %s' as uid %u exited %d, expected 1; stderr: %s", v,
                OUTSIDER, res.status, res.err);
        H_CHECK(strcasestr(res.err, "permission denied") && strstr(res.err, "not an admin"),
                "'sockid entry %s' as uid %u: stderr does not say \"permission denied\" and \"not "
                "an admin\": %s",
                v, OUTSIDER, res.err);
        H_CHECK(res.out[0] == '\0', "'sockid entry %s' as uid %u printed on stdout: %s", v,
                OUTSIDER, res.out);
        expect_refusal_logged(a, res.pid, calls[i].name);
        h_note("'sockid entry %s' as uid %u (pid %d): exit 1, refusal logged: %s", v, OUTSIDER,
               (int)res.pid, strtok(res.err, "\n"));
    }

    /* Nothing changed. */
    admin_list_all(admin, 0, &after);
    char b[1024], c[1024];
    describe_listing(&before, b, sizeof(b));
    describe_listing(&after, c, sizeof(c));
    H_CHECK(same_listing(&before, &after),
            "the entries changed under refused calls: before [%s], after [%s]", b, c);
    h_note("root lists the same entries before and after: [%s]", c);
    admin_listing_free(&before);
    admin_listing_free(&after);

    /* The workload socket still serves the outsider, with its identity. */
    static struct h_run res;
    run_cli(&outsider, &res, (const char *const[]){"whoami", "--socket", a->sock, "--json", NULL});
    H_CHECK(res.status == 0, "'sockid whoami' as uid %u exited %d: %s", OUTSIDER, res.status,
            res.err);
    H_CHECK(strstr(res.out, "\"unix:uid:12345\"") &&
                strstr(res.out, "\"spiffe://example.org/keep/outsider\"") &&
                !strstr(res.out, "spiffe://example.org/keep/root"),
            "'sockid whoami --json' as uid %u: expected unix:uid:12345 and only the identity "
            "spiffe://example.org/keep/outsider, got %s",
            OUTSIDER, res.out);
    h_note("the workload socket serves uid %u: whoami lists spiffe://example.org/keep/outsider",
           OUTSIDER);
}

/* In a child with creds: create an entry; exit 0 if allowed, 1 if refused with
 * PERMISSION_DENIED, 2 otherwise. */
static int try_create(const char *admin, const struct h_creds *creds, const char *spiffe_id,
                      pid_t *ret_pid)
{
    pid_t pid = h_fork_as(creds);
    if (pid == 0) {
        int fd = proto_connect(admin);
        if (fd < 0) {
            fprintf(stderr, "uid %lu: connect %s: %s\n", (unsigned long)getuid(), admin,
                    strerror(-fd));
            _exit(2);
        }
        const char *sels[] = {"unix:uid:12345"};
        int r = admin_send_create(fd, spiffe_id, sels, 1);
        Sockid__Admin__Response *resp = NULL;
        if (r == 0)
            r = admin_recv(fd, H_TIMEOUT_MS, &resp);
        char desc[1024];
        admin_describe_result(r, resp, desc, sizeof(desc));
        h_note("uid %lu gid %lu groups %zu (pid %d) creates %s: %s", (unsigned long)getuid(),
               (unsigned long)getgid(), creds->n_groups, (int)getpid(), spiffe_id, desc);
        if (r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY &&
            resp->create_entry->entry &&
            h_bytes_eq(resp->create_entry->entry->spiffe_id, spiffe_id))
            _exit(0);
        if (r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_ERROR &&
            resp->error->code == SOCKID__ERROR_CODE__PERMISSION_DENIED)
            _exit(1);
        _exit(2);
    }
    *ret_pid = pid;
    return h_wait_child(pid, spiffe_id);
}

static bool listed(const char *admin, const char *spiffe_id)
{
    struct admin_listing l;
    admin_list_all(admin, 0, &l);
    bool found = false;
    for (size_t i = 0; i < l.n; i++)
        found = found || strcmp(l.spiffe_ids[i], spiffe_id) == 0;
    admin_listing_free(&l);
    return found;
}

static void case_admin_uids(const char *dir)
{
    static struct agent a;
    char conf[H_PATH_MAX], admin[H_PATH_MAX];
    h_write_file(dir, "agent.conf", "[agent]\nadmin_uids = 12345\nadmin_socket_mode = 0666\n",
                 conf);
    agent_start(&a, agent_exe, dir,
                (const char *const[]){"--trust-domain", "example.org", "--config", conf, NULL});
    agent_wait_admin(&a);
    agent_admin_path(&a, admin);
    struct stat st;
    H_CHECK(stat(admin, &st) == 0 && (st.st_mode & 07777) == 0666,
            "with admin_socket_mode = 0666 the admin socket has mode %04o",
            (unsigned)(st.st_mode & 07777));

    pid_t pid;
    const char *id = "spiffe://example.org/by-admin-uid";
    int s = try_create(admin, &outsider, id, &pid);
    H_CHECK(s == 0, "with admin_uids = 12345, uid 12345 could not create an entry (see above)");
    H_CHECK(listed(admin, id), "uid 12345's create was answered, but root does not list %s", id);
    char who[64];
    (void)snprintf(who, sizeof(who), "uid %u (pid %d) created entry", OUTSIDER, (int)pid);
    H_CHECK(agent_log_has_line(&a, (const char *const[]){who, id, NULL}),
            "the agent did not log \"%s ... %s\"", who, id);

    static struct h_run res;
    run_cli(&outsider, &res,
            (const char *const[]){"entry", "create", "--admin-socket", admin, "--spiffe-id",
                                  "spiffe://example.org/by-admin-uid-cli", "--selector",
                                  "unix:uid:12345", NULL});
    H_CHECK(res.status == 0 && strlen(res.out) == 33,
            "with admin_uids = 12345, 'sockid entry create' as uid 12345 exited %d: %s%s",
            res.status, res.out, res.err);
    H_CHECK(listed(admin, "spiffe://example.org/by-admin-uid-cli"),
            "the CLI's create was answered, but root does not list it");

    const struct h_creds other = {.uid = OUTSIDER + 1, .gid = OUTSIDER + 1};
    s = try_create(admin, &other, "spiffe://example.org/not-by-admin-uid", &pid);
    H_CHECK(s == 1, "with admin_uids = 12345, uid %u was not refused (status %d)", OUTSIDER + 1, s);
    h_note("admin_uids = 12345: uid 12345 creates (raw and CLI), uid %u is still refused",
           OUTSIDER + 1);
    agent_stop(&a);
}

static void case_admin_gids(const char *dir)
{
    static struct agent a;
    char conf[H_PATH_MAX], admin[H_PATH_MAX];
    h_write_file(dir, "agent.conf", "[agent]\nadmin_gids = 23456\nadmin_socket_mode = 0666\n",
                 conf);
    agent_start(&a, agent_exe, dir,
                (const char *const[]){"--trust-domain", "example.org", "--config", conf, NULL});
    agent_wait_admin(&a);
    agent_admin_path(&a, admin);

    pid_t pid;
    const struct h_creds primary = {.uid = OUTSIDER, .gid = ADMIN_GID};
    int s = try_create(admin, &primary, "spiffe://example.org/by-primary-gid", &pid);
    H_CHECK(s == 0, "with admin_gids = %u, uid %u with primary gid %u was refused (status %d)",
            ADMIN_GID, OUTSIDER, ADMIN_GID, s);
    const struct h_creds supplementary = {
        .uid = OUTSIDER, .gid = OUTSIDER, .groups = {ADMIN_GID}, .n_groups = 1};
    s = try_create(admin, &supplementary, "spiffe://example.org/by-supplementary-gid", &pid);
    H_CHECK(s == 0,
            "with admin_gids = %u, uid %u with supplementary group %u was refused (status %d)",
            ADMIN_GID, OUTSIDER, ADMIN_GID, s);
    s = try_create(admin, &outsider, "spiffe://example.org/by-no-gid", &pid);
    H_CHECK(s == 1, "with admin_gids = %u, uid %u in no such group was not refused (status %d)",
            ADMIN_GID, OUTSIDER, s);
    H_CHECK(listed(admin, "spiffe://example.org/by-primary-gid") &&
                listed(admin, "spiffe://example.org/by-supplementary-gid") &&
                !listed(admin, "spiffe://example.org/by-no-gid"),
            "the entries root lists do not match the answers");
    h_note("admin_gids = %u: primary or supplementary group %u creates; no group is refused",
           ADMIN_GID, ADMIN_GID);
    agent_stop(&a);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s AGENT SOCKID\n", argv[0]);
        return 2;
    }
    agent_exe = argv[1];
    sockid_exe = argv[2];
    h_require_root("running callers under uid 12345");
    (void)signal(SIGPIPE, SIG_IGN);

    char dir1[H_PATH_MAX], dir2[H_PATH_MAX], dir3[H_PATH_MAX];
    h_tmpdir(dir1);
    h_tmpdir(dir2);
    h_tmpdir(dir3);

    static struct agent a;
    char admin[H_PATH_MAX];
    agent_start(&a, agent_exe, dir1, (const char *const[]){"--trust-domain", "example.org", NULL});
    agent_wait_admin(&a);
    agent_admin_path(&a, admin);
    case_default_mode(&a, admin);
    case_refused(&a, admin);
    agent_stop(&a);

    case_admin_uids(dir2);
    case_admin_gids(dir3);
    h_note("PASS");
    return 0;
}
