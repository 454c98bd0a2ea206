/* The agent's key files (issue 4): DATA_DIR/keys (mode 0700) holds one
 * KID.key (mode 0600) per key, and the agent refuses to start on a key file
 * or directory that others could read or that another user owns, naming it
 * and the command that fixes it:
 *
 *   - a first start makes one key; its kid is the kid of the tokens served;
 *   - the key file chmod 0644, then 0640: the next start exits non-zero,
 *     and stderr names the file and says "chmod 600 FILE";
 *   - the directory chmod 0755: refused naming the directory ("chmod 700");
 *   - as root, the key file chown 12345: refused naming the file and the
 *     chown that fixes it;
 *   - each refusal leaves no socket behind and no sanitizer report;
 *   - restored: the agent starts, keeps the same single key file, and serves
 *     tokens with the SAME kid (the key persisted).
 *
 * Usage: test_keyfiles AGENT */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "harness.h"
#include "it_jwt.h"

#define OUTSIDER 12345u

static const char *agent_exe;
static struct agent agent; /* the harness keeps a pointer to it */
static char dir[H_PATH_MAX];
static char keys_dir[H_PATH_MAX + 16];
static char sel_uid[64];

/* The one KID.key in keys_dir, into kid; fails unless there is exactly one. */
static void only_key(char kid[static JWT_KID_MAX], const char *what)
{
    DIR *d = opendir(keys_dir);
    H_CHECK(d != NULL, "%s: cannot open %s: %s", what, keys_dir, strerror(errno));
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        size_t len = strlen(de->d_name);
        H_CHECK(len > 4 && strcmp(de->d_name + len - 4, ".key") == 0 && len - 4 < JWT_KID_MAX,
                "%s: unexpected file %s in %s", what, de->d_name, keys_dir);
        (void)snprintf(kid, JWT_KID_MAX, "%.*s", (int)(len - 4), de->d_name);
        n++;
    }
    (void)closedir(d);
    H_CHECK(n == 1, "%s: %zu key files in %s, expected one", what, n, keys_dir);
}

static void key_path(const char *kid, char ret[static H_PATH_MAX + 128])
{
    (void)snprintf(ret, H_PATH_MAX + 128, "%s/%s.key", keys_dir, kid);
}

static void expect_mode(const char *path, unsigned mode)
{
    struct stat st;
    H_CHECK(lstat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
    H_CHECK((st.st_mode & 07777) == mode && st.st_uid == geteuid(),
            "%s: mode %04o owner %u, expected mode %04o owner %u", path,
            (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, mode, (unsigned)geteuid());
}

/* Starts the agent, fetches a token for audience db and returns its kid. */
static void serve_kid(char kid[static JWT_KID_MAX], const char *what)
{
    agent_start(&agent, agent_exe, dir,
                (const char *const[]){"--trust-domain", "example.org", NULL});
    int fd = proto_connect(agent.sock);
    H_CHECK(fd >= 0, "%s: connect: %s", what, strerror(-fd));
    Sockid__Workload__Response *resp = NULL;
    int r = proto_fetch_token(fd, (const char *const[]){"db"}, 1, NULL, &resp);
    char desc[1024];
    proto_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_TOKEN &&
                resp->fetch_token->n_tokens == 1,
            "%s: expected one token, got %s", what, desc);
    const ProtobufCBinaryData tok = resp->fetch_token->tokens[0]->token;
    struct jwt j;
    char why[256];
    H_CHECK(jwt_decode((const char *)tok.data, tok.len, &j, why, sizeof(why)), "%s: token: %s",
            what, why);
    (void)snprintf(kid, JWT_KID_MAX, "%s", j.kid);
    jwt_free(&j);
    sockid__workload__response__free_unpacked(resp, NULL);

    r = proto_fetch_bundle(fd, &resp);
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_BUNDLE,
            "%s: FetchBundle failed", what);
    char kids[4][JWT_KID_MAX];
    int n = jwks_kids((const char *)resp->fetch_bundle->jwks.data, resp->fetch_bundle->jwks.len,
                      kids, 4, why, sizeof(why));
    H_CHECK(n == 1 && strcmp(kids[0], kid) == 0,
            "%s: the bundle should hold exactly the token's kid %s: %.*s", what, kid,
            (int)resp->fetch_bundle->jwks.len, (const char *)resp->fetch_bundle->jwks.data);
    sockid__workload__response__free_unpacked(resp, NULL);
    (void)close(fd);
}

/* Runs the agent, which must refuse to start: non-zero exit, every needle
 * in its stderr, no socket left, no sanitizer report. An agent that serves
 * instead fails the test at once, rather than at a timeout. */
static void expect_refusal(const char *const *needles, const char *what)
{
    char data[H_PATH_MAX + 8], admin[H_PATH_MAX + 16], errpath[H_PATH_MAX + 16];
    (void)snprintf(data, sizeof(data), "%s/data", dir);
    (void)snprintf(admin, sizeof(admin), "%s/admin.sock", dir);
    (void)snprintf(errpath, sizeof(errpath), "%s/refusal.err", dir);
    const char *argv[] = {agent_exe,    "--socket", agent.sock,       "--admin-socket", admin,
                          "--data-dir", data,       "--trust-domain", "example.org",    NULL};
    int err_fd = open(errpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    H_CHECK(err_fd >= 0, "cannot create %s: %s", errpath, strerror(errno));
    pid_t pid = h_fork_as(NULL);
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDWR);
        if (null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(null_fd, 1) < 0 || dup2(err_fd, 2) < 0)
            _exit(127);
        execv(agent_exe, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    for (int64_t waited = 0;; waited += 10) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        int fd = proto_connect(agent.sock);
        if (fd >= 0 || waited >= H_TIMEOUT_MS) {
            if (fd >= 0)
                (void)close(fd);
            (void)kill(pid, SIGKILL);
            (void)waitpid(pid, &status, 0);
            h_fail("%s: the agent %s instead of refusing to start", what,
                   fd >= 0 ? "accepted connections" : "neither exited nor served within 10 s");
        }
        struct timespec ts = {.tv_nsec = 10 * 1000000L};
        (void)nanosleep(&ts, NULL);
    }
    static char text[16384];
    ssize_t len = pread(err_fd, text, sizeof(text) - 1, 0);
    (void)close(err_fd);
    text[len > 0 ? len : 0] = '\0';
    H_CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0,
            "%s: the agent ended with wait status 0x%x; expected a non-zero exit. stderr:\n%s",
            what, (unsigned)status, text);
    for (size_t i = 0; needles[i]; i++)
        H_CHECK(strstr(text, needles[i]) != NULL, "%s: the agent's stderr does not say \"%s\":\n%s",
                what, needles[i], text);
    H_CHECK(!strstr(text, "Sanitizer"), "%s: a sanitizer report:\n%s", what, text);
    struct stat st;
    H_CHECK(lstat(agent.sock, &st) < 0 && errno == ENOENT &&
                (lstat(admin, &st) < 0 && errno == ENOENT),
            "%s: the refusing agent left a socket behind", what);
    /* The last line is the one an operator reads. */
    size_t n = strlen(text);
    while (n > 0 && text[n - 1] == '\n')
        text[--n] = '\0';
    const char *last = strrchr(text, '\n');
    h_note("%s: exit status %d: %s", what, WEXITSTATUS(status), last ? last + 1 : text);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s AGENT\n", argv[0]);
        return 2;
    }
    agent_exe = argv[1];
    H_CHECK(sodium_init() >= 0, "sodium_init failed");
    (void)snprintf(sel_uid, sizeof(sel_uid), "unix:uid:%lu", (unsigned long)getuid());
    h_tmpdir(dir);
    (void)snprintf(keys_dir, sizeof(keys_dir), "%s/data/keys", dir);

    /* First start: one key, 0600 in a 0700 directory; an entry to fetch with. */
    agent_start(&agent, agent_exe, dir,
                (const char *const[]){"--trust-domain", "example.org", NULL});
    agent_wait_admin(&agent);
    char admin[H_PATH_MAX];
    agent_admin_path(&agent, admin);
    int fd = proto_connect(admin);
    H_CHECK(fd >= 0, "connect %s: %s", admin, strerror(-fd));
    int r =
        admin_send_create(fd, "spiffe://example.org/keyfiles", (const char *const[]){sel_uid}, 1);
    Sockid__Admin__Response *aresp = NULL;
    if (r == 0)
        r = admin_recv(fd, H_TIMEOUT_MS, &aresp);
    char desc[1024];
    admin_describe_result(r, aresp, desc, sizeof(desc));
    H_CHECK(r == 0 && aresp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY,
            "creating the entry: %s", desc);
    sockid__admin__response__free_unpacked(aresp, NULL);
    (void)close(fd);
    agent_stop(&agent);

    char kid[JWT_KID_MAX], file[H_PATH_MAX + 128];
    only_key(kid, "after the first start");
    key_path(kid, file);
    expect_mode(keys_dir, 0700);
    expect_mode(file, 0600);
    h_note("first start: %s, mode 0600, in a 0700 directory", file);

    char served[JWT_KID_MAX];
    serve_kid(served, "second start");
    H_CHECK(strcmp(served, kid) == 0, "tokens carry kid %s, the key file is %s.key", served, kid);
    agent_stop(&agent);

    /* Loose modes on the key file. */
    char fix[H_PATH_MAX + 160];
    (void)snprintf(fix, sizeof(fix), "chmod 600 %s", file);
    static const unsigned loose[] = {0644, 0640, 0604};
    for (size_t i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
        char what[64];
        (void)snprintf(what, sizeof(what), "key file mode %04o", loose[i]);
        H_CHECK(chmod(file, loose[i]) == 0, "chmod %s: %s", file, strerror(errno));
        expect_refusal((const char *const[]){file, fix, NULL}, what);
    }
    H_CHECK(chmod(file, 0600) == 0, "chmod %s: %s", file, strerror(errno));

    /* A loose keys directory. */
    (void)snprintf(fix, sizeof(fix), "chmod 700 %s", keys_dir);
    H_CHECK(chmod(keys_dir, 0755) == 0, "chmod %s: %s", keys_dir, strerror(errno));
    expect_refusal((const char *const[]){keys_dir, fix, NULL}, "keys directory mode 0755");
    H_CHECK(chmod(keys_dir, 0700) == 0, "chmod %s: %s", keys_dir, strerror(errno));

    /* Another owner. */
    if (geteuid() == 0) {
        H_CHECK(chown(file, OUTSIDER, (gid_t)-1) == 0, "chown %s: %s", file, strerror(errno));
        char owner[64];
        (void)snprintf(owner, sizeof(owner), "owned by uid %u", OUTSIDER);
        (void)snprintf(fix, sizeof(fix), "chown %u %s", (unsigned)geteuid(), file);
        expect_refusal((const char *const[]){file, owner, fix, NULL}, "key file owned by 12345");
        H_CHECK(chown(file, geteuid(), (gid_t)-1) == 0, "chown %s: %s", file, strerror(errno));
    } else {
        h_note("SKIP (part): the key file owned by another uid needs root to chown");
    }

    /* Restored: the same key serves again. */
    serve_kid(served, "restored");
    H_CHECK(strcmp(served, kid) == 0, "after the restore, tokens carry kid %s, not %s", served,
            kid);
    char again[JWT_KID_MAX];
    only_key(again, "after the restore");
    H_CHECK(strcmp(again, kid) == 0, "after the restore the key file is %s.key, not %s.key", again,
            kid);
    expect_mode(file, 0600);
    agent_stop(&agent);
    h_note("restored: the agent starts and serves tokens with the same kid %s", kid);
    h_note("PASS");
    return 0;
}
