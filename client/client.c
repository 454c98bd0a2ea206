/* libsockid: one connection to the agent, one framed request and one framed
 * response per call. The library keeps no global state, never logs and never
 * exits; everything it has to say goes through return codes and
 * sockid_client_message(). */
#define _GNU_SOURCE /* secure_getenv */
#include <sockid/client.h>

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "internal.h"
#include "utf8.h"
#include "workload.pb-c.h"

/* Answers carry token sets and bundles, so they may be far larger than the
 * agent's 64 KiB request limit; they are still bounded. */
#define CLIENT_RESPONSE_MAX (4u * 1024u * 1024u)
/* Requests are tiny today; larger ones (many audiences) go to the heap. */
#define CLIENT_REQUEST_STACK 512

static const struct client_socket client_workload_socket = {
    .env = SOCKID_AGENT_SOCKET_ENV,
    .default_path = SOCKID_DEFAULT_AGENT_SOCKET,
    .denied_hint = "ask the agent's administrator for access to the socket and its directory",
};

__attribute__((format(printf, 3, 4))) static void client_format(char *buf, size_t size,
                                                                const char *fmt, ...)
{
    if (!buf || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(buf, size, fmt, ap);
    va_end(ap);
}

int client_fail(struct sockid_client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(c->message, sizeof(c->message), fmt, ap);
    va_end(ap);
    return code;
}

static int64_t client_now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left before deadline for the frame helpers: -1 is no deadline. */
static int client_remaining(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - client_now_ms();
    if (left <= 0)
        return 0;
    return left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Connects fd to sa within timeout_ms. An AF_UNIX connect never returns
 * EINPROGRESS: it either succeeds at once or, when the agent's backlog is
 * full, waits for room for as long as SO_SNDTIMEO allows (or fails with
 * EAGAIN on a non-blocking socket), so the timeout is the kernel's. Returns 0
 * or a negative errno. */
static int client_connect_fd(int fd, const struct sockaddr_un *sa, socklen_t salen, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : client_now_ms() + timeout_ms;
    for (;;) {
        if (timeout_ms > 0) {
            int left = client_remaining(deadline);
            if (left <= 0)
                return -EAGAIN;
            struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
            if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
                return -errno;
        }
        if (connect(fd, (const struct sockaddr *)sa, salen) == 0)
            return 0;
        /* An interrupted AF_UNIX connect leaves the socket unconnected, so
         * it can simply be tried again with the time that is left. */
        if (errno != EINTR)
            return -errno;
    }
}

static int client_connect(const struct client_socket *s, const char *path, int timeout_ms,
                          int *ret_fd, char *errbuf, size_t errbuf_size)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len == 0) {
        client_format(errbuf, errbuf_size,
                      "the agent socket path is empty: give a path, or unset %s to use %s", s->env,
                      s->default_path);
        return SOCKID_EUSAGE;
    }
    if (len >= sizeof(sa.sun_path)) {
        client_format(errbuf, errbuf_size,
                      "the agent socket path %.60s... is %zu bytes long, more than the %zu a "
                      "Unix socket allows: use a shorter path",
                      path, len, sizeof(sa.sun_path) - 1);
        return SOCKID_EUSAGE;
    }
    memcpy(sa.sun_path, path, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);

    int flags = SOCK_STREAM | SOCK_CLOEXEC | (timeout_ms == 0 ? SOCK_NONBLOCK : 0);
    int fd = socket(AF_UNIX, flags, 0);
    if (fd < 0) {
        int e = errno;
        client_format(errbuf, errbuf_size, "cannot create a socket to reach the agent: %s",
                      strerror(e));
        return e == ENOMEM || e == ENOBUFS ? SOCKID_ENOMEM : SOCKID_EUNREACHABLE;
    }
    int r = client_connect_fd(fd, &sa, salen, timeout_ms);
    if (r == 0) {
        *ret_fd = fd;
        return 0;
    }
    (void)close(fd);

    switch (-r) {
    case ENOENT:
    case ENOTDIR:
        client_format(errbuf, errbuf_size,
                      "no agent at %s: start sockid-agent, or set %s to the socket it listens on",
                      path, s->env);
        return SOCKID_EUNREACHABLE;
    case ECONNREFUSED:
        client_format(errbuf, errbuf_size,
                      "no agent listens on %s: start sockid-agent, or set %s to the socket it "
                      "listens on",
                      path, s->env);
        return SOCKID_EUNREACHABLE;
    case EACCES:
    case EPERM:
        client_format(errbuf, errbuf_size, "permission denied on %s: %s", path, s->denied_hint);
        return SOCKID_EUNREACHABLE;
    case EAGAIN:
        client_format(errbuf, errbuf_size,
                      "the agent at %s did not accept the connection within %d ms: it may be "
                      "overloaded; try again or allow a longer timeout",
                      path, timeout_ms);
        return SOCKID_ETIMEDOUT;
    default:
        client_format(errbuf, errbuf_size,
                      "cannot connect to the agent at %s: %s; check that sockid-agent is running",
                      path, strerror(-r));
        return -r == ENOMEM || -r == ENOBUFS ? SOCKID_ENOMEM : SOCKID_EUNREACHABLE;
    }
}

void client_init(struct sockid_client *c, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = timeout_ms;
}

int client_open_path(struct sockid_client *c, const struct client_socket *s, const char *path,
                     char *errbuf, size_t errbuf_size)
{
    if (!path) {
        /* A set-user-ID program must not be pointed at another "agent". */
        const char *env = secure_getenv(s->env);
        path = env && *env ? env : s->default_path;
    }
    int r = client_connect(s, path, c->timeout_ms, &c->fd, errbuf, errbuf_size);
    if (r < 0)
        return r;
    (void)snprintf(c->path, sizeof(c->path), "%s", path);
    return 0;
}

int client_adopt_fd(struct sockid_client *c, int fd)
{
    int type;
    socklen_t len = sizeof(type);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return SOCKID_EUSAGE;
    c->fd = fd;
    (void)snprintf(c->path, sizeof(c->path), "fd %d", fd);
    return 0;
}

void client_release(struct sockid_client *c)
{
    if (c->fd >= 0)
        (void)close(c->fd);
    c->fd = -1;
    free(c->response);
    c->response = NULL;
}

int sockid_client_open_errbuf(const char *path, int timeout_ms, struct sockid_client **ret,
                              char *errbuf, size_t errbuf_size)
{
    if (errbuf && errbuf_size > 0)
        errbuf[0] = '\0';
    if (!ret || timeout_ms < -1) {
        client_format(errbuf, errbuf_size,
                      "sockid_client_open needs a result pointer and a timeout of -1 or more");
        return SOCKID_EUSAGE;
    }
    struct sockid_client *c = malloc(sizeof(*c));
    if (!c) {
        client_format(errbuf, errbuf_size, "out of memory");
        return SOCKID_ENOMEM;
    }
    client_init(c, timeout_ms);
    int r = client_open_path(c, &client_workload_socket, path, errbuf, errbuf_size);
    if (r < 0) {
        free(c);
        return r;
    }
    *ret = c;
    return 0;
}

int sockid_client_open(const char *path, int timeout_ms, struct sockid_client **ret)
{
    return sockid_client_open_errbuf(path, timeout_ms, ret, NULL, 0);
}

int sockid_client_open_fd(int fd, int timeout_ms, struct sockid_client **ret)
{
    if (!ret || timeout_ms < -1)
        return SOCKID_EUSAGE;
    struct sockid_client *c = malloc(sizeof(*c));
    if (!c)
        return SOCKID_ENOMEM;
    client_init(c, timeout_ms);
    int r = client_adopt_fd(c, fd);
    if (r < 0) {
        free(c);
        return r;
    }
    *ret = c;
    return 0;
}

struct sockid_client *sockid_client_close(struct sockid_client *c)
{
    if (!c)
        return NULL;
    client_release(c);
    free(c);
    return NULL;
}

const char *sockid_client_message(const struct sockid_client *c)
{
    return c ? c->message : "";
}

const char *sockid_strerror(int code)
{
    switch (code) {
    case SOCKID_OK:
        return "success";
    case SOCKID_EINVAL:
        return "the agent says the request is invalid";
    case SOCKID_EPERM:
        return "the agent refused: no identity or right for this process";
    case SOCKID_EPEERGONE:
        return "the agent saw this process exit or change identity";
    case SOCKID_EUNAVAILABLE:
        return "the agent is shutting down or overloaded";
    case SOCKID_EINTERNAL:
        return "the agent hit an internal error";
    case SOCKID_EUNIMPLEMENTED:
        return "the agent does not know this request";
    case SOCKID_ELIMIT:
        return "a per-client limit of the agent was reached";
    case SOCKID_EEXIST:
        return "the agent already has what was to be created";
    case SOCKID_ENOTFOUND:
        return "the agent has nothing by that name";
    case SOCKID_EUNREACHABLE:
        return "no agent answers on the socket";
    case SOCKID_ETIMEDOUT:
        return "the agent did not answer in time";
    case SOCKID_EPROTO:
        return "the agent's answer was malformed or cut short";
    case SOCKID_ENOMEM:
        return "out of memory";
    case SOCKID_EUSAGE:
        return "invalid arguments to a libsockid call";
    default:
        return "unknown libsockid error";
    }
}

/* Keeps the agent's explanation for display: bounded, never cut inside a
 * character, malformed UTF-8 and characters that could drive the caller's
 * terminal dropped, line breaks and tabs turned into spaces. */
static void client_set_agent_message(struct sockid_client *c, const char *msg, int code)
{
    const uint8_t *s = (const uint8_t *)(msg ? msg : "");
    size_t n = strlen((const char *)s), o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, n - i, &cp);
        if (l == 0) {
            i++;
            continue;
        }
        if (o + l >= sizeof(c->message))
            break;
        if (cp == '\t' || cp == '\n' || cp == '\r') {
            c->message[o++] = ' ';
        } else if (!utf8_is_unsafe(cp)) {
            memcpy(c->message + o, s + i, l);
            o += l;
        }
        i += l;
    }
    c->message[o] = '\0';
    if (o == 0)
        (void)snprintf(c->message, sizeof(c->message), "%s", sockid_strerror(code));
}

int client_refusal(struct sockid_client *c, const Sockid__Error *e)
{
    int code;
    switch (e->code) {
    case SOCKID__ERROR_CODE__INVALID_ARGUMENT:
        code = SOCKID_EINVAL;
        break;
    case SOCKID__ERROR_CODE__PERMISSION_DENIED:
        code = SOCKID_EPERM;
        break;
    case SOCKID__ERROR_CODE__PEER_GONE:
        code = SOCKID_EPEERGONE;
        break;
    case SOCKID__ERROR_CODE__UNAVAILABLE:
        code = SOCKID_EUNAVAILABLE;
        break;
    case SOCKID__ERROR_CODE__INTERNAL:
        code = SOCKID_EINTERNAL;
        break;
    case SOCKID__ERROR_CODE__UNIMPLEMENTED:
        code = SOCKID_EUNIMPLEMENTED;
        break;
    case SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED:
        code = SOCKID_ELIMIT;
        break;
    case SOCKID__ERROR_CODE__ALREADY_EXISTS:
        code = SOCKID_EEXIST;
        break;
    case SOCKID__ERROR_CODE__NOT_FOUND:
        code = SOCKID_ENOTFOUND;
        break;
    default:
        /* A newer agent's code: its message still says what happened. */
        code = SOCKID_EPROTO;
        break;
    }
    client_set_agent_message(c, e->message, code);
    return code;
}

/* After a failed read or write nobody knows where the next frame starts, so
 * the connection is closed and later calls say so. */
static int client_io_fail(struct sockid_client *c, int r)
{
    (void)close(c->fd);
    c->fd = -1;
    switch (-r) {
    case ETIMEDOUT:
        return client_fail(c, SOCKID_ETIMEDOUT,
                           "the agent at %s did not answer within %d ms: it may be overloaded; "
                           "try again or allow a longer timeout",
                           c->path, c->timeout_ms);
    case ECONNRESET:
    case EPIPE:
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s closed the connection before answering: see the "
                           "agent's log, and open a new connection to retry",
                           c->path);
    case EMSGSIZE:
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s announced an answer of more than %u bytes: check that "
                           "the agent and libsockid versions match",
                           c->path, CLIENT_RESPONSE_MAX);
    case EBADMSG:
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s sent an empty frame: check that it is a sockid agent",
                           c->path);
    default:
        return client_fail(c, SOCKID_EUNREACHABLE,
                           "talking to the agent at %s failed: %s; open a new connection to retry",
                           c->path, strerror(-r));
    }
}

int client_roundtrip(struct sockid_client *c, const ProtobufCMessage *req, uint32_t *ret_len)
{
    c->message[0] = '\0';
    if (c->fd < 0)
        return client_fail(c, SOCKID_EUNREACHABLE,
                           "the connection to the agent at %s was closed after an earlier error: "
                           "open a new one",
                           c->path);
    if (!c->response) {
        /* malloc hands out untouched pages for a buffer this size; only
         * what an answer fills is ever backed by memory. */
        c->response = malloc(CLIENT_RESPONSE_MAX);
        if (!c->response)
            return client_fail(c, SOCKID_ENOMEM, "out of memory for the agent's answer");
    }

    size_t n = protobuf_c_message_get_packed_size(req);
    if (n == 0 || n > FRAME_HARD_MAX)
        return client_fail(c, SOCKID_EUSAGE, "the request is %zu bytes long, more than allowed", n);
    uint8_t stack[CLIENT_REQUEST_STACK];
    uint8_t *out = n <= sizeof(stack) ? stack : malloc(n);
    if (!out)
        return client_fail(c, SOCKID_ENOMEM, "out of memory for the request");
    (void)protobuf_c_message_pack(req, out);

    int64_t deadline = c->timeout_ms < 0 ? -1 : client_now_ms() + c->timeout_ms;
    int r = frame_write(c->fd, out, (uint32_t)n, client_remaining(deadline));
    if (out != stack)
        free(out);
    if (r < 0)
        return client_io_fail(c, r);
    r = frame_read(c->fd, c->response, CLIENT_RESPONSE_MAX, CLIENT_RESPONSE_MAX,
                   client_remaining(deadline), ret_len);
    if (r < 0)
        return client_io_fail(c, r);
    /* The whole frame was consumed, so the stream stays usable whatever the
     * payload turns out to be. */
    return 0;
}

int client_unparsable(struct sockid_client *c)
{
    return client_fail(c, SOCKID_EPROTO,
                       "the agent at %s sent an answer that does not parse: check that the "
                       "agent and libsockid versions match",
                       c->path);
}

int client_wrong_kind(struct sockid_client *c)
{
    return client_fail(c, SOCKID_EPROTO,
                       "the agent at %s answered with something other than what was asked: "
                       "check that the agent and libsockid versions match",
                       c->path);
}

int client_call(struct sockid_client *c, const Sockid__Workload__Request *req,
                Sockid__Workload__Response__KindCase want, Sockid__Workload__Response **ret)
{
    uint32_t len;
    int r = client_roundtrip(c, &req->base, &len);
    if (r < 0)
        return r;
    Sockid__Workload__Response *resp = sockid__workload__response__unpack(NULL, len, c->response);
    if (!resp)
        return client_unparsable(c);
    if (resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR && resp->error) {
        r = client_refusal(c, resp->error);
        sockid__workload__response__free_unpacked(resp, NULL);
        return r;
    }
    if (resp->kind_case != want) {
        sockid__workload__response__free_unpacked(resp, NULL);
        return client_wrong_kind(c);
    }
    *ret = resp;
    return 0;
}

int client_bytes(struct sockid_client *c, const char *s, const char *call, const char *what,
                 ProtobufCBinaryData *ret)
{
    if (!s || !*s)
        return client_fail(c, SOCKID_EUSAGE, "%s needs a non-empty %s", call, what);
    ret->data = (uint8_t *)(uintptr_t)s; /* packed from, never written */
    ret->len = strlen(s);
    return 0;
}

int client_bytes_list(struct sockid_client *c, const char *const *items, size_t n, const char *call,
                      const char *what, ProtobufCBinaryData **ret)
{
    *ret = NULL;
    if (n == 0)
        return 0;
    if (!items)
        return client_fail(c, SOCKID_EUSAGE, "%s was given %zu %ss but no array", call, n, what);
    ProtobufCBinaryData *v = calloc(n, sizeof(*v));
    if (!v)
        return client_fail(c, SOCKID_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int r = client_bytes(c, items[i], call, what, &v[i]);
        if (r < 0) {
            free(v);
            return r;
        }
    }
    *ret = v;
    return 0;
}

int client_copy_bytes(struct sockid_client *c, const ProtobufCBinaryData *b, const char *what,
                      char **ret)
{
    if (b->len > 0 && memchr(b->data, '\0', b->len))
        return client_fail(c, SOCKID_EPROTO,
                           "the agent at %s sent a %s containing a NUL byte: check the agent's "
                           "version",
                           c->path, what);
    char *s = malloc(b->len + 1);
    if (!s)
        return client_fail(c, SOCKID_ENOMEM, "out of memory");
    if (b->len > 0)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    *ret = s;
    return 0;
}

void client_free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

int client_copy_list(struct sockid_client *c, const ProtobufCBinaryData *items, size_t n,
                     const char *what, char ***ret, size_t *ret_n)
{
    char **v = calloc(n > 0 ? n : 1, sizeof(*v));
    if (!v)
        return client_fail(c, SOCKID_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        int r = client_copy_bytes(c, &items[i], what, &v[i]);
        if (r < 0) {
            client_free_list(v, i);
            return r;
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

struct sockid_whoami *sockid_whoami_free(struct sockid_whoami *w)
{
    if (!w)
        return NULL;
    client_free_list(w->selectors, w->n_selectors);
    client_free_list(w->spiffe_ids, w->n_spiffe_ids);
    free(w);
    return NULL;
}

int sockid_whoami(struct sockid_client *c, struct sockid_whoami **ret)
{
    if (!c)
        return SOCKID_EUSAGE;
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_whoami needs a result pointer");

    Sockid__Workload__WhoAmIRequest body = SOCKID__WORKLOAD__WHO_AM_IREQUEST__INIT;
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI;
    req.whoami = &body;
    Sockid__Workload__Response *resp;
    int r = client_call(c, &req, SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI, &resp);
    if (r < 0)
        return r;

    const Sockid__Workload__WhoAmIResponse *in = resp->whoami;
    struct sockid_whoami *w = calloc(1, sizeof(*w));
    if (!w) {
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    w->pid = (pid_t)in->pid;
    w->uid = (uid_t)in->uid;
    w->gid = (gid_t)in->gid;
    r = client_copy_list(c, in->selectors, in->n_selectors, "selector", &w->selectors,
                         &w->n_selectors);
    if (r < 0)
        goto out;
    r = client_copy_list(c, in->spiffe_ids, in->n_spiffe_ids, "SPIFFE ID", &w->spiffe_ids,
                         &w->n_spiffe_ids);
    if (r < 0)
        goto out;
    *ret = w;
    w = NULL;
out:
    w = sockid_whoami_free(w);
    sockid__workload__response__free_unpacked(resp, NULL);
    return r;
}

struct sockid_health *sockid_health_free(struct sockid_health *h)
{
    if (!h)
        return NULL;
    free(h->version);
    free(h);
    return NULL;
}

int sockid_health(struct sockid_client *c, struct sockid_health **ret)
{
    if (!c)
        return SOCKID_EUSAGE;
    if (!ret)
        return client_fail(c, SOCKID_EUSAGE, "sockid_health needs a result pointer");

    Sockid__Workload__HealthRequest body = SOCKID__WORKLOAD__HEALTH_REQUEST__INIT;
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_HEALTH;
    req.health = &body;
    Sockid__Workload__Response *resp;
    int r = client_call(c, &req, SOCKID__WORKLOAD__RESPONSE__KIND_HEALTH, &resp);
    if (r < 0)
        return r;

    const Sockid__Workload__HealthResponse *in = resp->health;
    struct sockid_health *h = calloc(1, sizeof(*h));
    if (!h || !(h->version = strdup(in->version ? in->version : ""))) {
        h = sockid_health_free(h);
        r = client_fail(c, SOCKID_ENOMEM, "out of memory");
        goto out;
    }
    h->peer_pidfd = in->peer_pidfd ? 1 : 0;
    h->pidfd_get_info = in->pidfd_get_info ? 1 : 0;
    h->uptime_ms = in->uptime_ms;
    h->attestors = in->attestors;
    *ret = h;
out:
    sockid__workload__response__free_unpacked(resp, NULL);
    return r;
}
