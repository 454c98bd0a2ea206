/* Tokens from a real agent, through the raw workload and admin protocols
 * (issue 4), read back with jansson and libsodium directly (it_jwt.c), not
 * with the agent's own token code:
 *
 *   fetch      one token for audience "db": header exactly
 *              {"alg":"EdDSA","kid":KID,"typ":"JWT"}, claims sub (the entry's
 *              SPIFFE ID), aud "db", iat (now), exp = iat + the entry's ttl, a
 *              jti; KID is in FetchBundle's JWKS (each key an OKP Ed25519 key
 *              whose kid is its RFC 7638 thumbprint) and the signature
 *              verifies with it; Validate(token, "db") gives the SPIFFE ID and
 *              Validate(token, "other") is refused naming the audiences. After a
 *              restart with a smaller max_ttl, the entry's ttl is capped.
 *   arguments  0 or 17 audiences, an audience with a space or a NUL, a
 *              malformed or foreign SPIFFE ID: INVALID_ARGUMENT, also on a
 *              connection whose process has exited and been reaped, where a
 *              well-formed request gets PEER_GONE: the arguments are checked
 *              before attestation.
 *   identity   no matching entry: PERMISSION_DENIED "no identity for this
 *              process"; a SPIFFE ID the process lacks: PERMISSION_DENIED; an
 *              entry allowing only audience "a" gives no token for "db"
 *              (refused naming the audience restriction) and one for "a".
 *   several    two matching entries with different SPIFFE IDs: two tokens;
 *              with spiffe_id set: exactly that one.
 *   cache      fetches inside the half-life give byte-identical tokens, on one
 *              connection and on new ones, and for the same audience set in
 *              another order; once more than half the lifetime has passed (but
 *              before exp), a new token; deleting the entry stops issuance at
 *              the very next request. With workers = 2, at most two distinct
 *              tokens over many new connections (one cache per loop).
 *   rotation   RotateKey: the bundle holds both keys and both files exist, new
 *              tokens carry the new kid, the old key's token validates until
 *              its exp; once retired_at + max_ttl has passed the old kid leaves
 *              the bundle and its file leaves DATA_DIR/keys, never earlier.
 *              A restart in between keeps both keys. At the cap of 16 keys a
 *              RotateKey is refused (UNAVAILABLE, saying when to retry) and
 *              the active key keeps signing. Then key_rotation = 2s: the agent
 *              rotates on its own, and drops the old key the same way.
 *
 * Nothing here asserts on elapsed time: waits poll a condition against a
 * deadline, and a check that depends on the wall clock (a token still
 * valid) is made only when the clock, read after the agent's answer, proves
 * the agent's clock was still inside the window.
 *
 * Usage: test_tokens AGENT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "harness.h"
#include "it_jwt.h"

#define TD "spiffe://example.org"

static const char *agent_exe;
static char top[H_PATH_MAX];
static char sel_uid[64], sel_gid[64];

/* The harness keeps pointers to these: they must outlive the test. */
static struct agent agents[8];
static size_t n_agents;

static int64_t wall_now(void)
{
    return (int64_t)time(NULL);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts an agent in TOP/name with conf (NULL: none) and waits for both
 * sockets. */
static struct agent *start(const char *name, const char *conf)
{
    H_CHECK(n_agents < sizeof(agents) / sizeof(agents[0]), "too many agents");
    struct agent *a = &agents[n_agents++];
    char dir[H_PATH_MAX], path[H_PATH_MAX];
    (void)snprintf(dir, sizeof(dir), "%s/%s", top, name);
    H_CHECK(mkdir(dir, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", dir, strerror(errno));
    H_CHECK(chmod(dir, 0755) == 0, "chmod %s: %s", dir, strerror(errno));
    if (conf) {
        h_write_file(dir, "agent.conf", conf, path);
        agent_start(a, agent_exe, dir,
                    (const char *const[]){"--trust-domain", "example.org", "--config", path, NULL});
    } else {
        agent_start(a, agent_exe, dir,
                    (const char *const[]){"--trust-domain", "example.org", NULL});
    }
    agent_wait_admin(a);
    return a;
}

/* Restarts a stopped agent with the same directory and a new config. */
static void restart(struct agent *a, const char *conf)
{
    char dir[H_PATH_MAX], path[H_PATH_MAX];
    (void)snprintf(dir, sizeof(dir), "%s", a->dir);
    h_write_file(dir, "agent.conf", conf, path);
    agent_start(a, agent_exe, dir,
                (const char *const[]){"--trust-domain", "example.org", "--config", path, NULL});
    agent_wait_admin(a);
}

static int connect_or_fail(const char *path)
{
    int fd = proto_connect(path);
    H_CHECK(fd >= 0, "cannot connect to %s: %s", path, strerror(-fd));
    return fd;
}

static int wl(const struct agent *a)
{
    return connect_or_fail(a->sock);
}

static int adm(const struct agent *a)
{
    char path[H_PATH_MAX];
    agent_admin_path(a, path);
    return connect_or_fail(path);
}

/* --- admin calls ------------------------------------------------------------ */

static void entry_create(const struct agent *a, const char *spiffe_id, const char *const *sels,
                         size_t n, uint32_t ttl, const char *const *auds, size_t n_auds,
                         char ret_id[static 33])
{
    int fd = adm(a);
    int r = admin_send_create_full(fd, spiffe_id, sels, n, ttl, auds, n_auds);
    Sockid__Admin__Response *resp = NULL;
    if (r == 0)
        r = admin_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    admin_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_CREATE_ENTRY &&
                resp->create_entry->entry && resp->create_entry->entry->id.len == 32,
            "creating the entry %s: expected the new entry, got %s", spiffe_id, desc);
    const Sockid__Admin__Entry *e = resp->create_entry->entry;
    H_CHECK(ttl == 0 || e->ttl_seconds == ttl, "entry %s: asked for ttl %u, the entry has %u",
            spiffe_id, ttl, e->ttl_seconds);
    memcpy(ret_id, e->id.data, 32);
    ret_id[32] = '\0';
    sockid__admin__response__free_unpacked(resp, NULL);
    (void)close(fd);
}

static void entry_delete(const struct agent *a, const char *id)
{
    int fd = adm(a);
    int r = admin_send_delete(fd, id);
    Sockid__Admin__Response *resp = NULL;
    if (r == 0)
        r = admin_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    admin_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_DELETE_ENTRY,
            "deleting entry %s: expected an acknowledgement, got %s", id, desc);
    sockid__admin__response__free_unpacked(resp, NULL);
    (void)close(fd);
}

static void rotate(const struct agent *a, char ret_active[static JWT_KID_MAX],
                   char ret_retired[static JWT_KID_MAX])
{
    int fd = adm(a);
    int r = admin_send_rotate_key(fd);
    Sockid__Admin__Response *resp = NULL;
    if (r == 0)
        r = admin_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    admin_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_ROTATE_KEY,
            "RotateKey: expected a rotate_key answer, got %s", desc);
    const Sockid__Admin__RotateKeyResponse *k = resp->rotate_key;
    H_CHECK(k->active_kid.len > 0 && k->active_kid.len < JWT_KID_MAX && k->retired_kid.len > 0 &&
                k->retired_kid.len < JWT_KID_MAX,
            "RotateKey: kids of %zu and %zu bytes", k->active_kid.len, k->retired_kid.len);
    (void)snprintf(ret_active, JWT_KID_MAX, "%.*s", (int)k->active_kid.len,
                   (const char *)k->active_kid.data);
    (void)snprintf(ret_retired, JWT_KID_MAX, "%.*s", (int)k->retired_kid.len,
                   (const char *)k->retired_kid.data);
    sockid__admin__response__free_unpacked(resp, NULL);
    (void)close(fd);
}

/* --- workload calls --------------------------------------------------------- */

static void describe(int r, const Sockid__Workload__Response *resp, char *buf, size_t len)
{
    if (r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_TOKEN) {
        size_t o =
            (size_t)snprintf(buf, len, "fetch_token with %zu tokens:", resp->fetch_token->n_tokens);
        for (size_t i = 0; i < resp->fetch_token->n_tokens && o < len; i++) {
            const Sockid__Workload__Token *t = resp->fetch_token->tokens[i];
            o += (size_t)snprintf(buf + o, len - o, " %.*s", (int)t->spiffe_id.len,
                                  (const char *)t->spiffe_id.data);
        }
    } else if (r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_VALIDATE) {
        (void)snprintf(buf, len, "validate spiffe_id=%.*s", (int)resp->validate->spiffe_id.len,
                       (const char *)resp->validate->spiffe_id.data);
    } else if (r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_BUNDLE) {
        (void)snprintf(buf, len, "fetch_bundle %.*s", (int)resp->fetch_bundle->jwks.len,
                       (const char *)resp->fetch_bundle->jwks.data);
    } else {
        proto_describe_result(r, resp, buf, len);
    }
}

/* One token from a FetchToken answer, as a C string. */
struct tok {
    char spiffe_id[256];
    char token[4096];
    int64_t expires_at;
};

/* FetchToken that must succeed with exactly n_want tokens (into ret). */
static void fetch_ok(int fd, const char *const *auds, size_t n_auds, const char *spiffe_id,
                     size_t n_want, struct tok *ret, const char *what)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_fetch_token(fd, auds, n_auds, spiffe_id, &resp);
    char desc[2048];
    describe(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_TOKEN &&
                resp->fetch_token->n_tokens == n_want,
            "%s: expected %zu tokens, got %s", what, n_want, desc);
    for (size_t i = 0; i < n_want; i++) {
        const Sockid__Workload__Token *t = resp->fetch_token->tokens[i];
        H_CHECK(t->spiffe_id.len < sizeof(ret[i].spiffe_id) &&
                    t->token.len < sizeof(ret[i].token) && t->token.len > 0,
                "%s: token %zu has a SPIFFE ID of %zu bytes and a token of %zu", what, i,
                t->spiffe_id.len, t->token.len);
        H_CHECK(!memchr(t->token.data, '\0', t->token.len), "%s: token %zu holds a NUL", what, i);
        (void)snprintf(ret[i].spiffe_id, sizeof(ret[i].spiffe_id), "%.*s", (int)t->spiffe_id.len,
                       (const char *)t->spiffe_id.data);
        (void)snprintf(ret[i].token, sizeof(ret[i].token), "%.*s", (int)t->token.len,
                       (const char *)t->token.data);
        ret[i].expires_at = t->expires_at;
    }
    sockid__workload__response__free_unpacked(resp, NULL);
}

static void expect_error(int r, Sockid__Workload__Response *resp, int code, const char *const *subs,
                         const char *what)
{
    char desc[2048];
    describe(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR &&
                (int)resp->error->code == code && resp->error->message,
            "%s: expected error %s, got %s", what, proto_code_name(code), desc);
    for (size_t i = 0; subs && subs[i]; i++)
        H_CHECK(strstr(resp->error->message, subs[i]) != NULL,
                "%s: the error message does not say \"%s\": %s", what, subs[i], desc);
    sockid__workload__response__free_unpacked(resp, NULL);
}

static void fetch_err(int fd, const char *const *auds, size_t n_auds, const char *spiffe_id,
                      int code, const char *const *subs, const char *what)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_fetch_token(fd, auds, n_auds, spiffe_id, &resp);
    expect_error(r, resp, code, subs, what);
}

/* The JWKS, malloc'd and NUL-terminated. */
static char *bundle(int fd)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_fetch_bundle(fd, &resp);
    char desc[2048];
    describe(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_BUNDLE &&
                resp->fetch_bundle->jwks.len > 0,
            "FetchBundle: expected a JWKS, got %s", desc);
    char *s = strndup((const char *)resp->fetch_bundle->jwks.data, resp->fetch_bundle->jwks.len);
    H_CHECK(s && strlen(s) == resp->fetch_bundle->jwks.len, "FetchBundle: a JWKS holding a NUL");
    sockid__workload__response__free_unpacked(resp, NULL);
    return s;
}

/* The bundle's kids (checked as it_jwt.h says); returns how many. */
static size_t bundle_kids(int fd, char kids[][JWT_KID_MAX], size_t max)
{
    char *jwks = bundle(fd);
    char why[256];
    int n = jwks_kids(jwks, strlen(jwks), kids, max, why, sizeof(why));
    H_CHECK(n >= 0 && (size_t)n <= max, "FetchBundle: %s: %s", n < 0 ? why : "too many keys", jwks);
    free(jwks);
    return (size_t)n;
}

static bool kids_have(char kids[][JWT_KID_MAX], size_t n, const char *kid)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kids[i], kid) == 0)
            return true;
    return false;
}

/* Validate; returns 0 and checks the SPIFFE ID, or returns the error code
 * with its message in why. */
static int validate(int fd, const char *token, const char *aud, const char *want_sub, char *why,
                    size_t why_len, const char *what)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_validate(fd, token, aud, &resp);
    char desc[2048];
    describe(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && (resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_VALIDATE ||
                       resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR),
            "%s: Validate: expected a validate answer or an error, got %s", what, desc);
    int code = 0;
    if (resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR) {
        code = (int)resp->error->code;
        (void)snprintf(why, why_len, "%s", desc);
    } else {
        H_CHECK(h_bytes_eq(resp->validate->spiffe_id, want_sub),
                "%s: Validate gave the SPIFFE ID %.*s, expected %s", what,
                (int)resp->validate->spiffe_id.len, (const char *)resp->validate->spiffe_id.data,
                want_sub);
        json_error_t e;
        json_t *c = json_loadb((const char *)resp->validate->claims_json.data,
                               resp->validate->claims_json.len, 0, &e);
        const char *sub = json_string_value(json_object_get(c, "sub"));
        H_CHECK(sub && strcmp(sub, want_sub) == 0, "%s: Validate's claims_json has no sub %s: %.*s",
                what, want_sub, (int)resp->validate->claims_json.len,
                (const char *)resp->validate->claims_json.data);
        json_decref(c);
    }
    sockid__workload__response__free_unpacked(resp, NULL);
    return code;
}

static void validate_ok(int fd, const char *token, const char *aud, const char *want_sub,
                        const char *what)
{
    char why[2048];
    int code = validate(fd, token, aud, want_sub, why, sizeof(why), what);
    H_CHECK(code == 0, "%s: Validate(%s) refused a valid token: %s", what, aud, why);
}

static void decode_or_fail(const char *token, struct jwt *ret, const char *what)
{
    char why[256];
    H_CHECK(jwt_decode(token, strlen(token), ret, why, sizeof(why)), "%s: token %s: %s", what,
            token, why);
}

static void token_kid(const char *token, char kid[static JWT_KID_MAX], const char *what)
{
    struct jwt t;
    decode_or_fail(token, &t, what);
    (void)snprintf(kid, JWT_KID_MAX, "%s", t.kid);
    jwt_free(&t);
}

static int64_t token_int(const char *token, const char *claim, const char *what)
{
    struct jwt t;
    int64_t v;
    decode_or_fail(token, &t, what);
    H_CHECK(jwt_int_claim(&t, claim, &v), "%s: the token has no integer %s: %s", what, claim,
            t.payload_text);
    jwt_free(&t);
    return v;
}

/* Does DIR/data/keys/KID.key exist? Checks its mode when it does. */
static bool key_file_exists(const struct agent *a, const char *kid)
{
    char path[H_PATH_MAX + 128];
    struct stat st;
    (void)snprintf(path, sizeof(path), "%s/data/keys/%s.key", a->dir, kid);
    if (lstat(path, &st) < 0) {
        H_CHECK(errno == ENOENT, "stat %s: %s", path, strerror(errno));
        return false;
    }
    H_CHECK(S_ISREG(st.st_mode) && (st.st_mode & 07777) == 0600,
            "key file %s: expected a regular file of mode 0600, got mode %04o", path,
            (unsigned)(st.st_mode & 07777));
    return true;
}

/* --- fetch ------------------------------------------------------------------ */

static void test_fetch(void)
{
    struct agent *a = start("fetch", "[agent]\nmax_ttl = 600\n");
    const char *sels[] = {sel_uid};
    const char *id = TD "/tokens/fetch";
    char eid[33];
    entry_create(a, id, sels, 1, 120, NULL, 0, eid);

    int fd = wl(a);
    struct tok t;
    int64_t before = wall_now();
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t, "fetch for db");
    int64_t after = wall_now();
    H_CHECK(strcmp(t.spiffe_id, id) == 0, "fetch: the token is for %s, expected %s", t.spiffe_id,
            id);

    struct jwt j;
    decode_or_fail(t.token, &j, "fetch");
    char want_header[256];
    (void)snprintf(want_header, sizeof(want_header),
                   "{\"alg\":\"EdDSA\",\"kid\":\"%s\",\"typ\":\"JWT\"}", j.kid);
    H_CHECK(strcmp(j.header_text, want_header) == 0, "fetch: the header is %s, expected %s",
            j.header_text, want_header);
    const char *sub = jwt_str_claim(&j, "sub");
    const char *aud = jwt_str_claim(&j, "aud");
    const char *jti = jwt_str_claim(&j, "jti");
    int64_t iat, exp;
    H_CHECK(sub && strcmp(sub, id) == 0, "fetch: sub is not %s: %s", id, j.payload_text);
    H_CHECK(aud && strcmp(aud, "db") == 0, "fetch: aud is not \"db\": %s", j.payload_text);
    H_CHECK(jti && strlen(jti) >= 16, "fetch: no jti of 16 characters or more: %s", j.payload_text);
    H_CHECK(jwt_int_claim(&j, "iat", &iat) && jwt_int_claim(&j, "exp", &exp),
            "fetch: no integer iat and exp: %s", j.payload_text);
    H_CHECK(iat >= before && iat <= after,
            "fetch: iat %" PRId64 " is not between %" PRId64 " and %" PRId64
            " (the wall clock around the request)",
            iat, before, after);
    H_CHECK(exp - iat == 120, "fetch: exp - iat is %" PRId64 ", the entry's ttl is 120", exp - iat);
    H_CHECK(t.expires_at == exp, "fetch: expires_at %" PRId64 " differs from exp %" PRId64,
            t.expires_at, exp);
    h_note("fetch: header %s, claims %s", j.header_text, j.payload_text);

    char *jwks = bundle(fd);
    char why[256];
    H_CHECK(jwks_has_kid(jwks, strlen(jwks), j.kid), "fetch: kid %s is not in the bundle %s", j.kid,
            jwks);
    H_CHECK(jwt_verify_with_jwks(t.token, strlen(t.token), jwks, strlen(jwks), why, sizeof(why)),
            "fetch: verifying the token against the bundle independently: %s", why);
    h_note("fetch: the bundle %s holds the kid and the signature verifies", jwks);
    free(jwks);

    validate_ok(fd, t.token, "db", id, "fetch");
    Sockid__Workload__Response *resp = NULL;
    int r = proto_validate(fd, t.token, "other", &resp);
    expect_error(r, resp, SOCKID__ERROR_CODE__PERMISSION_DENIED,
                 (const char *const[]){"'db'", "'other'", NULL}, "Validate(token, \"other\")");
    h_note("fetch: Validate accepts audience db and refuses other, naming both");

    /* A second jti differs: fetch for another audience set (no cache hit). */
    struct tok t2;
    fetch_ok(fd, (const char *const[]){"db", "cache"}, 2, NULL, 1, &t2, "fetch for db and cache");
    struct jwt j2;
    decode_or_fail(t2.token, &j2, "fetch 2");
    const char *jti2 = jwt_str_claim(&j2, "jti");
    json_t *aud2 = json_object_get(j2.payload, "aud");
    H_CHECK(json_is_array(aud2) && json_array_size(aud2) == 2,
            "fetch for db and cache: aud is not an array of two: %s", j2.payload_text);
    H_CHECK(jti2 && strcmp(jti, jti2) != 0, "two tokens share the jti %s", jti);
    validate_ok(fd, t2.token, "cache", id, "fetch for db and cache");
    jwt_free(&j2);
    jwt_free(&j);
    (void)close(fd);

    /* max_ttl lowered below the entry's ttl: the token lives max_ttl. */
    agent_stop(a);
    restart(a, "[agent]\nmax_ttl = 45\ndefault_ttl = 30\n");
    fd = wl(a);
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t, "fetch after max_ttl = 45");
    int64_t life = token_int(t.token, "exp", "capped") - token_int(t.token, "iat", "capped");
    H_CHECK(life == 45, "an entry with ttl 120 under max_ttl = 45 gave a token for %" PRId64 " s",
            life);
    (void)close(fd);
    agent_stop(a);
    h_note("fetch: with max_ttl lowered to 45 the ttl-120 entry's token lives 45 s");
}

/* --- arguments before attestation -------------------------------------------- */

/* A connection to sock made by a child process that has exited and been
 * reaped since: whatever attestation would find, the peer is gone. */
static int orphan_connection(const char *sock)
{
    int sp[2];
    H_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0, "socketpair: %s",
            strerror(errno));
    pid_t pid = h_fork_as(NULL);
    if (pid == 0) {
        (void)close(sp[0]);
        int fd = proto_connect(sock);
        if (fd < 0)
            h_fail("child: cannot connect to %s: %s", sock, strerror(-fd));
        /* An answer: the agent has accepted and captured us while alive. */
        Sockid__Workload__Response *resp = NULL;
        int r = proto_whoami(fd, &resp);
        if (r < 0 || resp->kind_case != SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI)
            h_fail("child: WhoAmI failed");
        sockid__workload__response__free_unpacked(resp, NULL);
        char c = 'f';
        struct iovec iov = {.iov_base = &c, .iov_len = 1};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } u;
        struct msghdr m = {.msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = u.buf,
                           .msg_controllen = sizeof(u.buf)};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
        if (sendmsg(sp[1], &m, 0) != 1)
            h_fail("child: sendmsg: %s", strerror(errno));
        _exit(0);
    }
    (void)close(sp[1]);
    char c;
    struct iovec iov = {.iov_base = &c, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
    ssize_t n = recvmsg(sp[0], &m, MSG_CMSG_CLOEXEC);
    struct cmsghdr *cm = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
    int fd = -1;
    if (cm && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    int status = h_wait_child(pid, "the connecting child");
    H_CHECK(fd >= 0 && status == 0, "no connection from the child (status %d)", status);
    (void)close(sp[0]);
    return fd;
}

static void bad_requests(int fd, const char *how)
{
    char what[256];
    const char *aud17[17];
    for (size_t i = 0; i < 17; i++)
        aud17[i] = "db";

    (void)snprintf(what, sizeof(what), "%s: no audience", how);
    fetch_err(fd, NULL, 0, NULL, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
              (const char *const[]){"1 to 16 audiences", "got 0", NULL}, what);
    (void)snprintf(what, sizeof(what), "%s: 17 audiences", how);
    fetch_err(fd, aud17, 17, NULL, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
              (const char *const[]){"1 to 16 audiences", "got 17", NULL}, what);
    (void)snprintf(what, sizeof(what), "%s: an audience with a space", how);
    fetch_err(fd, (const char *const[]){"db", "a b"}, 2, NULL, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
              (const char *const[]){"audience 2", "space", NULL}, what);
    (void)snprintf(what, sizeof(what), "%s: an empty audience", how);
    fetch_err(fd, (const char *const[]){""}, 1, NULL, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
              (const char *const[]){"audience 1", "empty", NULL}, what);

    (void)snprintf(what, sizeof(what), "%s: an audience with a NUL", how);
    ProtobufCBinaryData nul = {.len = 3, .data = (uint8_t *)"a\0b"};
    Sockid__Workload__Response *resp = NULL;
    int r = proto_fetch_token_bytes(fd, &nul, 1, (ProtobufCBinaryData){0}, &resp);
    expect_error(r, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT,
                 (const char *const[]){"audience 1", "NUL", NULL}, what);

    (void)snprintf(what, sizeof(what), "%s: a malformed SPIFFE ID", how);
    fetch_err(fd, (const char *const[]){"db"}, 1, "not-a-spiffe-id",
              SOCKID__ERROR_CODE__INVALID_ARGUMENT, (const char *const[]){"SPIFFE ID", NULL}, what);
    (void)snprintf(what, sizeof(what), "%s: a SPIFFE ID with a query", how);
    fetch_err(fd, (const char *const[]){"db"}, 1, TD "/x?y", SOCKID__ERROR_CODE__INVALID_ARGUMENT,
              (const char *const[]){"SPIFFE ID", NULL}, what);
    (void)snprintf(what, sizeof(what), "%s: a SPIFFE ID in another trust domain", how);
    fetch_err(fd, (const char *const[]){"db"}, 1, "spiffe://other.org/x",
              SOCKID__ERROR_CODE__INVALID_ARGUMENT, NULL, what);
    (void)snprintf(what, sizeof(what), "%s: a SPIFFE ID with a NUL", how);
    ProtobufCBinaryData db = {.len = 2, .data = (uint8_t *)"db"};
    ProtobufCBinaryData id = {.len = sizeof(TD "/a\0b") - 1, .data = (uint8_t *)TD "/a\0b"};
    resp = NULL;
    r = proto_fetch_token_bytes(fd, &db, 1, id, &resp);
    expect_error(r, resp, SOCKID__ERROR_CODE__INVALID_ARGUMENT, (const char *const[]){"NUL", NULL},
                 what);
}

static void test_arguments(void)
{
    struct agent *a = start("args", NULL);
    const char *sels[] = {sel_uid};
    char eid[33];
    entry_create(a, TD "/tokens/args", sels, 1, 0, NULL, 0, eid);

    int fd = wl(a);
    bad_requests(fd, "live process");
    struct tok t;
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t, "after the bad requests");
    (void)close(fd);
    h_note("arguments: 0 and 17 audiences, space, empty, NUL, malformed and foreign SPIFFE IDs: "
           "INVALID_ARGUMENT; the connection still serves");

    /* The same requests from a process that is gone: an attestation would
     * say PEER_GONE, so INVALID_ARGUMENT shows none ran. */
    fd = orphan_connection(a->sock);
    bad_requests(fd, "exited process");
    fetch_err(fd, (const char *const[]){"db"}, 1, NULL, SOCKID__ERROR_CODE__PEER_GONE, NULL,
              "exited process: a well-formed request");
    (void)close(fd);
    agent_stop(a);
    h_note("arguments: on a connection whose process exited, the malformed requests still get "
           "INVALID_ARGUMENT and a well-formed one PEER_GONE: arguments come before attestation");
}

/* --- identities --------------------------------------------------------------- */

static void test_identity(void)
{
    struct agent *a = start("identity", NULL);
    int fd = wl(a);
    const char *msg_none[] = {"permission denied: no identity for this process", NULL};
    fetch_err(fd, (const char *const[]){"db"}, 1, NULL, SOCKID__ERROR_CODE__PERMISSION_DENIED,
              msg_none, "no entries at all");

    /* An entry for someone else. */
    char other_uid[64], eid[33];
    (void)snprintf(other_uid, sizeof(other_uid), "unix:uid:%lu",
                   (unsigned long)(getuid() == 54321 ? 54322 : 54321));
    entry_create(a, TD "/tokens/someone-else", (const char *const[]){other_uid}, 1, 0, NULL, 0,
                 eid);
    fetch_err(fd, (const char *const[]){"db"}, 1, NULL, SOCKID__ERROR_CODE__PERMISSION_DENIED,
              msg_none, "an entry for another uid only");
    h_note("identity: no matching entry: PERMISSION_DENIED \"%s\"", msg_none[0]);

    const char *mine = TD "/tokens/mine";
    entry_create(a, mine, (const char *const[]){sel_uid}, 1, 0, NULL, 0, eid);
    fetch_err(fd, (const char *const[]){"db"}, 1, TD "/tokens/someone-else",
              SOCKID__ERROR_CODE__PERMISSION_DENIED,
              (const char *const[]){"no identity", TD "/tokens/someone-else", NULL},
              "asking for another process's identity");
    fetch_err(fd, (const char *const[]){"db"}, 1, TD "/tokens/nobody",
              SOCKID__ERROR_CODE__PERMISSION_DENIED,
              (const char *const[]){"no identity", TD "/tokens/nobody", NULL},
              "asking for an identity nobody has");
    h_note("identity: spiffe_id naming an identity the process lacks: PERMISSION_DENIED");

    const char *restricted = TD "/tokens/restricted";
    entry_create(a, restricted, (const char *const[]){sel_uid, sel_gid}, 2, 0,
                 (const char *const[]){"a"}, 1, eid);
    fetch_err(fd, (const char *const[]){"db"}, 1, restricted, SOCKID__ERROR_CODE__PERMISSION_DENIED,
              (const char *const[]){"audience", restricted, NULL},
              "an entry allowing audience a, asked for db");
    fetch_err(fd, (const char *const[]){"a", "db"}, 2, restricted,
              SOCKID__ERROR_CODE__PERMISSION_DENIED, (const char *const[]){"audience", NULL},
              "an entry allowing audience a, asked for a and db");
    struct tok t[2];
    fetch_ok(fd, (const char *const[]){"a"}, 1, restricted, 1, t, "the restricted entry, for a");
    H_CHECK(strcmp(t[0].spiffe_id, restricted) == 0, "asked for %s, got a token for %s", restricted,
            t[0].spiffe_id);
    validate_ok(fd, t[0].token, "a", restricted, "restricted entry");
    /* Without spiffe_id: the unrestricted identity only, for db... */
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, t, "both identities, for db");
    H_CHECK(strcmp(t[0].spiffe_id, mine) == 0, "for db expected only %s, got %s", mine,
            t[0].spiffe_id);
    /* ... and both for a. */
    fetch_ok(fd, (const char *const[]){"a"}, 1, NULL, 2, t, "both identities, for a");
    (void)close(fd);
    agent_stop(a);
    h_note("identity: an entry restricted to audience a gives no token for db (refused naming "
           "the audience restriction) and one for a");
}

static void test_several(void)
{
    struct agent *a = start("several", NULL);
    const char *one = TD "/tokens/one", *two = TD "/tokens/two";
    char e1[33], e2[33], e3[33];
    entry_create(a, one, (const char *const[]){sel_uid}, 1, 0, NULL, 0, e1);
    entry_create(a, two, (const char *const[]){sel_gid}, 1, 0, NULL, 0, e2);
    /* A second entry with the first SPIFFE ID: still one token for it. */
    entry_create(a, one, (const char *const[]){sel_uid, sel_gid}, 2, 0, NULL, 0, e3);

    int fd = wl(a);
    struct tok t[2];
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 2, t, "two identities");
    bool has_one = false, has_two = false;
    for (size_t i = 0; i < 2; i++) {
        struct jwt j;
        decode_or_fail(t[i].token, &j, "two identities");
        const char *sub = jwt_str_claim(&j, "sub");
        H_CHECK(sub && strcmp(sub, t[i].spiffe_id) == 0,
                "token %zu is labelled %s but its sub is %s", i, t[i].spiffe_id,
                sub ? sub : "(none)");
        has_one |= strcmp(sub, one) == 0;
        has_two |= strcmp(sub, two) == 0;
        jwt_free(&j);
        validate_ok(fd, t[i].token, "db", t[i].spiffe_id, "two identities");
    }
    H_CHECK(has_one && has_two, "two identities: expected tokens for %s and %s, got %s and %s", one,
            two, t[0].spiffe_id, t[1].spiffe_id);
    fetch_ok(fd, (const char *const[]){"db"}, 1, two, 1, t, "asking for the second identity");
    H_CHECK(strcmp(t[0].spiffe_id, two) == 0, "asked for %s, got %s", two, t[0].spiffe_id);
    fetch_ok(fd, (const char *const[]){"db"}, 1, one, 1, t, "asking for the first identity");
    H_CHECK(strcmp(t[0].spiffe_id, one) == 0, "asked for %s, got %s", one, t[0].spiffe_id);
    (void)close(fd);
    agent_stop(a);
    h_note("several: two SPIFFE IDs (three entries) give two tokens; spiffe_id picks exactly one");
}

/* --- cache ------------------------------------------------------------------- */

static void test_cache(void)
{
    /* workers = 1: the cache is per event loop (with N loops a workload
     * making new connections sees up to N tokens, checked at the end), and
     * this part is about the cache's rules, not about which loop a new
     * connection lands on. */
    struct agent *a = start("cache", "[agent]\nworkers = 1\n");
    const char *long_id = TD "/tokens/cache-long", *short_id = TD "/tokens/cache-short";
    char e_long[33], e_short[33];
    entry_create(a, long_id, (const char *const[]){sel_uid}, 1, 120, NULL, 0, e_long);

    int fd = wl(a);
    struct tok t1, t2;
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t1, "cache: first fetch");
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t2, "cache: same connection");
    H_CHECK(strcmp(t1.token, t2.token) == 0,
            "cache: two fetches on one connection inside the half-life differ:\n%s\n%s", t1.token,
            t2.token);
    for (int i = 0; i < 3; i++) {
        int fd2 = wl(a);
        fetch_ok(fd2, (const char *const[]){"db"}, 1, NULL, 1, &t2, "cache: new connection");
        H_CHECK(strcmp(t1.token, t2.token) == 0,
                "cache: a fetch on new connection %d inside the half-life differs:\n%s\n%s", i + 1,
                t1.token, t2.token);
        (void)close(fd2);
    }
    struct tok u1, u2;
    fetch_ok(fd, (const char *const[]){"db", "x"}, 2, NULL, 1, &u1, "cache: db and x");
    fetch_ok(fd, (const char *const[]){"x", "db", "x"}, 3, NULL, 1, &u2, "cache: x, db and x");
    H_CHECK(strcmp(u1.token, u2.token) == 0,
            "cache: the audience sets {db, x} and {x, db, x} gave different tokens");
    H_CHECK(strcmp(u1.token, t1.token) != 0, "cache: audiences {db, x} reused the token for {db}");
    h_note("cache: identical tokens inside the half-life on one connection, on new ones, and for "
           "the same audience set in another order");

    /* Deleting the entry stops issuance at the next request, on the
     * connection that has the token cached and on a new one. */
    entry_delete(a, e_long);
    const char *msg_none[] = {"no identity for this process", NULL};
    fetch_err(fd, (const char *const[]){"db"}, 1, NULL, SOCKID__ERROR_CODE__PERMISSION_DENIED,
              msg_none, "cache: the first fetch after the entry's deletion");
    int fd2 = wl(a);
    fetch_err(fd2, (const char *const[]){"db"}, 1, NULL, SOCKID__ERROR_CODE__PERMISSION_DENIED,
              msg_none, "cache: a new connection after the entry's deletion");
    (void)close(fd2);
    /* The same SPIFFE ID again, as a new entry: a new token, not the old one. */
    entry_create(a, long_id, (const char *const[]){sel_uid}, 1, 120, NULL, 0, e_long);
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t2, "cache: the entry made again");
    H_CHECK(strcmp(t1.token, t2.token) != 0,
            "cache: an entry deleted and made again got the deleted entry's cached token");
    entry_delete(a, e_long);
    h_note("cache: after the delete is acknowledged the very next fetch is PERMISSION_DENIED");

    /* ttl 4: reused while more than 2 s are left; from iat + 3 a fetch must
     * sign anew, though the old token is still valid until iat + 4. */
    entry_create(a, short_id, (const char *const[]){sel_uid}, 1, 4, NULL, 0, e_short);
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t1, "cache: ttl 4, first fetch");
    int64_t iat = token_int(t1.token, "iat", "cache ttl 4");
    int64_t exp = token_int(t1.token, "exp", "cache ttl 4");
    H_CHECK(exp - iat == 4, "cache: an entry of ttl 4 gave a token for %" PRId64 " s", exp - iat);
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t2, "cache: ttl 4, second fetch");
    if (wall_now() < iat + 2)
        H_CHECK(strcmp(t1.token, t2.token) == 0,
                "cache: ttl 4: a second fetch within 2 s of iat gave a new token");
    else
        h_note("cache: (the second ttl-4 fetch came too late to check reuse)");
    /* Poll the wall clock, not a blind sleep: at most about 3 s. */
    int64_t deadline = mono_ms() + 10000;
    while (wall_now() < iat + 3) {
        H_CHECK(mono_ms() < deadline, "cache: the wall clock did not reach iat + 3");
        sleep_ms(50);
    }
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t2, "cache: ttl 4, after half-life");
    int64_t iat2 = token_int(t2.token, "iat", "cache ttl 4 renewed");
    H_CHECK(strcmp(t1.token, t2.token) != 0 && iat2 >= iat + 3,
            "cache: ttl 4: a fetch at iat + 3 or later reused the token of iat %" PRId64
            " (new iat %" PRId64 ")",
            iat, iat2);
    h_note("cache: ttl 4: from iat + 3 (half-life passed, token not yet expired) a new token");
    entry_delete(a, e_short);
    (void)close(fd);
    agent_stop(a);

    /* Two loops, two caches: new connections see at most one token per
     * loop, never one per connection. */
    restart(a, "[agent]\nworkers = 2\n");
    entry_create(a, long_id, (const char *const[]){sel_uid}, 1, 120, NULL, 0, e_long);
    char seen[3][4096];
    size_t n_seen = 0;
    for (int i = 0; i < 30; i++) {
        fd = wl(a);
        fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t1, "cache: two loops");
        (void)close(fd);
        size_t k = 0;
        while (k < n_seen && strcmp(seen[k], t1.token) != 0)
            k++;
        if (k == n_seen) {
            H_CHECK(n_seen < 2, "cache: with workers = 2, 30 new connections got more than two "
                                "different tokens inside the half-life");
            (void)snprintf(seen[n_seen++], sizeof(seen[0]), "%s", t1.token);
        }
    }
    agent_stop(a);
    h_note("cache: with workers = 2, 30 new connections saw %zu distinct tokens (one cache per "
           "loop)",
           n_seen);
}

/* --- rotation ------------------------------------------------------------------ */

/* Waits until kid leaves a's bundle, checking on the way that it stays
 * while the agent's clock is provably before not_before (nothing it signed
 * has expired), and that token validates while the clock is provably
 * before its exp. Returns the number of successful validations. */
static int wait_dropped(const struct agent *a, const char *kid, int64_t not_before,
                        const char *token, const char *sub, int64_t token_exp, const char *what)
{
    int fd = wl(a);
    int64_t deadline = mono_ms() + (not_before - wall_now() + 6) * 1000;
    int validated = 0;
    for (;;) {
        char kids[16][JWT_KID_MAX];
        size_t n = bundle_kids(fd, kids, 16);
        int64_t after = wall_now();
        bool present = kids_have(kids, n, kid);
        if (!present) {
            /* The agent answered at some time <= after. */
            H_CHECK(after >= not_before,
                    "%s: kid %s left the bundle at %" PRId64 " or before, but tokens it signed "
                    "may live until %" PRId64,
                    what, kid, after, not_before);
            break;
        }
        char why[2048];
        int code = validate(fd, token, "db", sub, why, sizeof(why), what);
        after = wall_now();
        if (code == 0)
            validated++;
        else
            H_CHECK(after >= token_exp,
                    "%s: a token signed by retired key %s, valid until %" PRId64
                    ", was refused at %" PRId64 " or before: %s",
                    what, kid, token_exp, after, why);
        H_CHECK(mono_ms() < deadline,
                "%s: retired kid %s still in the bundle at %" PRId64
                ", its tokens all expired by %" PRId64,
                what, kid, wall_now(), not_before);
        sleep_ms(100);
    }
    (void)close(fd);
    return validated;
}

static void test_rotation_admin(void)
{
    struct agent *a = start("rotate", "[agent]\nkey_rotation = 1h\nmax_ttl = 3\ndefault_ttl = 3\n");
    const char *id = TD "/tokens/rotate";
    char eid[33];
    entry_create(a, id, (const char *const[]){sel_uid}, 1, 0, NULL, 0, eid);
    int fd = wl(a);

    struct tok old_tok, new_tok;
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &old_tok, "rotation: before");
    char k1[JWT_KID_MAX], k2[JWT_KID_MAX], active[JWT_KID_MAX], retired[JWT_KID_MAX];
    token_kid(old_tok.token, k1, "rotation: before");
    char kids[16][JWT_KID_MAX];
    size_t n = bundle_kids(fd, kids, 16);
    H_CHECK(n == 1 && strcmp(kids[0], k1) == 0, "rotation: before, the bundle holds %zu keys", n);
    H_CHECK(key_file_exists(a, k1), "rotation: no key file for the active kid %s", k1);
    int64_t old_exp = token_int(old_tok.token, "exp", "rotation");

    int64_t rotated_at = wall_now();
    rotate(a, active, retired);
    H_CHECK(strcmp(retired, k1) == 0 && strcmp(active, k1) != 0,
            "RotateKey: active %s, retired %s; the active key was %s", active, retired, k1);
    n = bundle_kids(fd, kids, 16);
    H_CHECK(n == 2 && kids_have(kids, n, k1) && kids_have(kids, n, active),
            "rotation: after RotateKey the bundle holds %zu keys, expected %s and %s", n, k1,
            active);
    H_CHECK(key_file_exists(a, k1) && key_file_exists(a, active),
            "rotation: after RotateKey the key files of %s and %s are not both there", k1, active);

    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &new_tok, "rotation: after");
    token_kid(new_tok.token, k2, "rotation: after");
    H_CHECK(strcmp(k2, active) == 0,
            "rotation: a token fetched after RotateKey has kid %s, the "
            "active key is %s",
            k2, active);
    H_CHECK(strcmp(old_tok.token, new_tok.token) != 0, "rotation: the old token came from cache");
    char *jwks = bundle(fd);
    char why[256];
    H_CHECK(jwt_verify_with_jwks(old_tok.token, strlen(old_tok.token), jwks, strlen(jwks), why,
                                 sizeof(why)) &&
                jwt_verify_with_jwks(new_tok.token, strlen(new_tok.token), jwks, strlen(jwks), why,
                                     sizeof(why)),
            "rotation: verifying against the bundle with both keys: %s", why);
    free(jwks);
    h_note("rotation: RotateKey: both keys in the bundle and on disk; new tokens carry %s", k2);

    /* The retired key is on disk as retired: a restart keeps it in the
     * bundle, and the old token still validates. */
    (void)close(fd);
    agent_stop(a);
    restart(a, "[agent]\nkey_rotation = 1h\nmax_ttl = 3\ndefault_ttl = 3\n");
    fd = wl(a);
    n = bundle_kids(fd, kids, 16);
    H_CHECK(n == 2 && kids_have(kids, n, k1) && kids_have(kids, n, k2),
            "rotation: after a restart the bundle holds %zu keys, expected %s and %s", n, k1, k2);
    struct tok again;
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &again, "rotation: after a restart");
    char k3[JWT_KID_MAX];
    token_kid(again.token, k3, "rotation: after a restart");
    H_CHECK(strcmp(k3, k2) == 0,
            "rotation: after a restart tokens carry kid %s, expected the "
            "active %s",
            k3, k2);
    h_note("rotation: after a restart both keys are still in the bundle and %s still signs", k2);

    /* No token k1 signed outlives rotated_at + max_ttl. */
    int validated =
        wait_dropped(a, k1, rotated_at + 3, old_tok.token, id, old_exp, "rotation (RotateKey)");
    H_CHECK(!key_file_exists(a, k1),
            "rotation: kid %s left the bundle but its key file is still "
            "in %s/data/keys",
            k1, a->dir);
    H_CHECK(key_file_exists(a, k2), "rotation: the active key's file %s.key is gone", k2);
    n = bundle_kids(fd, kids, 16);
    H_CHECK(n == 1 && strcmp(kids[0], k2) == 0,
            "rotation: after the drop the bundle holds %zu "
            "keys",
            n);
    int code = validate(fd, old_tok.token, "db", id, why, sizeof(why), "rotation: after drop");
    H_CHECK(code == SOCKID__ERROR_CODE__PERMISSION_DENIED,
            "rotation: the old key's token validated after its key was dropped");
    (void)close(fd);
    agent_stop(a);
    h_note("rotation: the old token validated %d times until its exp; then kid %s left the bundle "
           "and DATA_DIR/keys",
           validated, k1);
}

/* KEYS_MAX keys are kept at most: with max_ttl at its default (a day) no
 * retired key can go, so the sixteenth rotation is refused, saying when to
 * retry, and the active key keeps signing. */
static void test_rotation_cap(void)
{
    struct agent *a = start("cap", NULL);
    char eid[33], active[JWT_KID_MAX], retired[JWT_KID_MAX], prev[JWT_KID_MAX] = "";
    entry_create(a, TD "/tokens/cap", (const char *const[]){sel_uid}, 1, 0, NULL, 0, eid);
    for (int i = 0; i < 15; i++) {
        rotate(a, active, retired);
        H_CHECK(i == 0 || strcmp(retired, prev) == 0,
                "rotation %d retired %s, but the active key was %s", i + 1, retired, prev);
        (void)snprintf(prev, sizeof(prev), "%s", active);
    }
    int fd = wl(a);
    char kids[20][JWT_KID_MAX];
    size_t n = bundle_kids(fd, kids, 20);
    H_CHECK(n == 16 && strcmp(kids[0], active) == 0,
            "cap: after 15 rotations the bundle holds %zu keys (first %s), expected 16 with the "
            "active %s first",
            n, n ? kids[0] : "-", active);
    for (size_t i = 0; i < n; i++)
        H_CHECK(key_file_exists(a, kids[i]), "cap: no key file for kid %s", kids[i]);

    int afd = adm(a);
    int r = admin_send_rotate_key(afd);
    Sockid__Admin__Response *resp = NULL;
    if (r == 0)
        r = admin_recv(afd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    admin_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__ADMIN__RESPONSE__KIND_ERROR &&
                resp->error->code == SOCKID__ERROR_CODE__UNAVAILABLE &&
                strstr(resp->error->message, "retry"),
            "cap: the 16th rotation: expected UNAVAILABLE saying when to retry, got %s", desc);
    sockid__admin__response__free_unpacked(resp, NULL);
    (void)close(afd);
    struct tok t;
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t, "cap: after a refused rotation");
    char k[JWT_KID_MAX];
    token_kid(t.token, k, "cap");
    H_CHECK(strcmp(k, active) == 0,
            "cap: after a refused rotation tokens carry %s, not the "
            "active %s",
            k, active);
    n = bundle_kids(fd, kids, 20);
    H_CHECK(n == 16, "cap: a refused rotation left %zu keys in the bundle", n);
    (void)close(fd);
    agent_stop(a);
    h_note("cap: 16 keys kept; the next RotateKey is refused (%s); the active key still signs",
           desc);
}

static void test_rotation_schedule(void)
{
    struct agent *a =
        start("schedule", "[agent]\nkey_rotation = 2s\nmax_ttl = 3\ndefault_ttl = 3\n");
    const char *id = TD "/tokens/schedule";
    char eid[33];
    entry_create(a, id, (const char *const[]){sel_uid}, 1, 0, NULL, 0, eid);
    int fd = wl(a);
    struct tok t;
    fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t, "schedule: first");
    char k1[JWT_KID_MAX], k[JWT_KID_MAX];
    token_kid(t.token, k1, "schedule: first");
    int64_t exp = token_int(t.token, "exp", "schedule");

    /* A new kid on new tokens, with no admin call (2 s, plus a sweep). */
    int64_t deadline = mono_ms() + 10000;
    for (;;) {
        struct tok t2;
        fetch_ok(fd, (const char *const[]){"db"}, 1, NULL, 1, &t2, "schedule: polling");
        token_kid(t2.token, k, "schedule: polling");
        if (strcmp(k, k1) != 0)
            break;
        /* The last token the first key signed is the one that bounds it. */
        int64_t exp2 = token_int(t2.token, "exp", "schedule: polling");
        if (exp2 > exp) {
            t = t2;
            exp = exp2;
        }
        H_CHECK(mono_ms() < deadline,
                "schedule: key_rotation = 2s, but tokens still carry kid "
                "%s after 10 s",
                k1);
        sleep_ms(100);
    }
    const char *needle[] = {"rotated the signing key on schedule", NULL};
    H_CHECK(agent_log_has_line(a, needle), "schedule: the agent did not log the rotation");
    h_note("schedule: tokens carry a new kid without any admin call");
    /* The first key may go once every token it signed has expired, and
     * not before: never before the last one seen. */
    int validated = wait_dropped(a, k1, exp, t.token, id, exp, "rotation (key_rotation = 2s)");
    H_CHECK(!key_file_exists(a, k1),
            "schedule: kid %s left the bundle but its file is still "
            "there",
            k1);
    (void)close(fd);
    agent_stop(a);
    h_note("schedule: the first key's token validated %d times until its exp, then the key left "
           "the bundle and the disk",
           validated);
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
    (void)snprintf(sel_gid, sizeof(sel_gid), "unix:gid:%lu", (unsigned long)getgid());
    h_tmpdir(top);

    int64_t t0 = mono_ms();
    test_fetch();
    test_arguments();
    test_identity();
    test_several();
    test_cache();
    int64_t t1 = mono_ms();
    test_rotation_admin();
    test_rotation_cap();
    test_rotation_schedule();
    h_note("PASS (%.1f s; rotation %.1f s)", (double)(mono_ms() - t0) / 1000.0,
           (double)(mono_ms() - t1) / 1000.0);
    return 0;
}
