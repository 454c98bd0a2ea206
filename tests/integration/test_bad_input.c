/* Malformed, oversized, slow and excessive clients against the real agent.
 *
 * Each case must get a clear error (the right code, a message that says what
 * is wrong) or, where there is nothing left to answer, a close; and a normal
 * client must be served right after each, so that no bad client can take the
 * agent down or wedge it.
 *
 * All cases but one share an agent with short frame and idle timeouts; the
 * per-uid limit gets an agent of its own with the default idle timeout,
 * because it holds connections open between requests.
 *
 * Ordering note: a connection this test closes is forgotten by the agent no
 * later than the end of the agent's next event-loop pass, and a request
 * answered on any connection proves such a pass happened. The per-uid case
 * relies on that to count connections exactly, without sleeping. (That holds
 * for the agent's single event loop; with several loops sharing the per-uid
 * counts, the count after a close would need waiting for instead.)
 *
 * Usage: test_bad_input AGENT */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "harness.h"

#define FRAME_TIMEOUT_MS 300
#define IDLE_TIMEOUT_MS  1000
#define PER_UID_LIMIT    4

static const char *agent_exe;
static struct agent agent;

static int64_t now_ms(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int connect_or_fail(const char *what)
{
    int fd = proto_connect(agent.sock);
    H_CHECK(fd >= 0, "%s: cannot connect to %s: %s", what, agent.sock, strerror(-fd));
    return fd;
}

static void served_after(const char *what)
{
    proto_expect_served(agent.sock, geteuid(), what);
}

/* The next thing on fd must be an error response of code whose message
 * contains needle; with then_closed, the agent must close afterwards. */
static void expect_error(int fd, Sockid__ErrorCode code, const char *needle, bool then_closed,
                         const char *what)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    proto_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0, "%s: expected an error response %s, got %s", what, proto_code_name((int)code),
            desc);
    H_CHECK(resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR,
            "%s: expected an error response %s, got %s", what, proto_code_name((int)code), desc);
    H_CHECK(resp->error->code == code, "%s: expected error code %s, got %s", what,
            proto_code_name((int)code), desc);
    H_CHECK(resp->error->message && strstr(resp->error->message, needle),
            "%s: the error message should say what is wrong (mention \"%s\"), got %s", what, needle,
            desc);
    sockid__workload__response__free_unpacked(resp, NULL);
    if (then_closed) {
        r = proto_wait_closed(fd, H_TIMEOUT_MS);
        H_CHECK(r == 0, "%s: the agent answered but did not close the connection (%s)", what,
                strerror(-r));
        h_note("%s: %s, then the connection was closed", what, desc);
    } else {
        h_note("%s: %s", what, desc);
    }
}

static void send_raw_or_fail(int fd, const void *buf, size_t len, const char *what)
{
    int r = proto_send_raw(fd, buf, len);
    H_CHECK(r == 0, "%s: cannot send: %s", what, strerror(-r));
}

static void case_over_limit(void)
{
    const char *what = "frame over the limit (65537 bytes)";
    int fd = connect_or_fail(what);
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_put_header(hdr, FRAME_DEFAULT_MAX + 1);
    send_raw_or_fail(fd, hdr, sizeof(hdr), what);
    expect_error(fd, SOCKID__ERROR_CODE__INVALID_ARGUMENT, "max_frame", true, what);
    (void)close(fd);
    served_after(what);
}

static void case_zero_length(void)
{
    const char *what = "zero-length frame";
    int fd = connect_or_fail(what);
    static const uint8_t zero[FRAME_HEADER_SIZE] = {0};
    send_raw_or_fail(fd, zero, sizeof(zero), what);
    expect_error(fd, SOCKID__ERROR_CODE__INVALID_ARGUMENT, "empty", true, what);
    (void)close(fd);
    served_after(what);
}

/* An empty Request packs to zero bytes, so on the wire it is the zero-length
 * frame again; sent here through the generated code, as a client would. */
static void case_empty_request(void)
{
    const char *what = "empty Request (no field set)";
    int fd = connect_or_fail(what);
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    int r = proto_send(fd, &req);
    H_CHECK(r == 0, "%s: cannot send: %s", what, strerror(-r));
    expect_error(fd, SOCKID__ERROR_CODE__INVALID_ARGUMENT, "empty", true, what);
    (void)close(fd);
    served_after(what);
}

static void case_garbage(void)
{
    const char *what = "garbage protobuf (ff ff ff)";
    int fd = connect_or_fail(what);
    static const uint8_t frame[] = {0, 0, 0, 3, 0xff, 0xff, 0xff};
    send_raw_or_fail(fd, frame, sizeof(frame), what);
    expect_error(fd, SOCKID__ERROR_CODE__INVALID_ARGUMENT, "not a valid", false, what);
    (void)close(fd);
    served_after(what);
}

static void case_unknown_type(void)
{
    const char *what = "unknown request type (field 31)";
    int fd = connect_or_fail(what);
    /* Field 31, varint 1: the tag (31 << 3 | 0) = 248 is the varint f8 01. */
    static const uint8_t frame[] = {0, 0, 0, 3, 0xf8, 0x01, 0x01};
    send_raw_or_fail(fd, frame, sizeof(frame), what);
    expect_error(fd, SOCKID__ERROR_CODE__UNIMPLEMENTED, "unknown request type", false, what);
    /* The stream is still in step: the same connection is served. */
    Sockid__Workload__Response *resp = NULL;
    int r = proto_whoami(fd, &resp);
    char desc[1024];
    proto_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
            "%s: a WhoAmI on the same connection afterwards was not answered: %s", what, desc);
    sockid__workload__response__free_unpacked(resp, NULL);
    (void)close(fd);
    served_after(what);
}

static void case_cut_short(void)
{
    const char *what = "frame cut short, then closed";
    int fd = connect_or_fail(what);
    uint8_t buf[FRAME_HEADER_SIZE + 10] = {0};
    frame_put_header(buf, 100);
    send_raw_or_fail(fd, buf, sizeof(buf), what);
    (void)close(fd);
    served_after(what);
    h_note("%s: agent still serves", what);
}

static void case_pipelined(void)
{
    const char *what = "pipelined requests (WhoAmI, Health, WhoAmI in one write)";
    Sockid__Workload__WhoAmIRequest w = SOCKID__WORKLOAD__WHO_AM_IREQUEST__INIT;
    Sockid__Workload__HealthRequest h = SOCKID__WORKLOAD__HEALTH_REQUEST__INIT;
    Sockid__Workload__Request reqs[3] = {SOCKID__WORKLOAD__REQUEST__INIT,
                                         SOCKID__WORKLOAD__REQUEST__INIT,
                                         SOCKID__WORKLOAD__REQUEST__INIT};
    reqs[0].kind_case = reqs[2].kind_case = SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI;
    reqs[0].whoami = reqs[2].whoami = &w;
    reqs[1].kind_case = SOCKID__WORKLOAD__REQUEST__KIND_HEALTH;
    reqs[1].health = &h;
    uint8_t buf[256];
    size_t len = 0;
    for (size_t i = 0; i < 3; i++) {
        size_t n = sockid__workload__request__get_packed_size(&reqs[i]);
        H_CHECK(n > 0 && len + FRAME_HEADER_SIZE + n <= sizeof(buf), "request too large");
        frame_put_header(buf + len, (uint32_t)n);
        (void)sockid__workload__request__pack(&reqs[i], buf + len + FRAME_HEADER_SIZE);
        len += FRAME_HEADER_SIZE + n;
    }
    int fd = connect_or_fail(what);
    send_raw_or_fail(fd, buf, len, what);
    static const Sockid__Workload__Response__KindCase want[3] = {
        SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
        SOCKID__WORKLOAD__RESPONSE__KIND_HEALTH,
        SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
    };
    for (size_t i = 0; i < 3; i++) {
        Sockid__Workload__Response *resp = NULL;
        int r = proto_recv(fd, H_TIMEOUT_MS, &resp);
        char desc[1024];
        proto_describe_result(r, resp, desc, sizeof(desc));
        H_CHECK(r == 0 && resp->kind_case == want[i],
                "%s: response %zu should be of kind %d, got %s", what, i + 1, (int)want[i], desc);
        if (want[i] == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI)
            H_CHECK(resp->whoami->pid == getpid(), "%s: response %zu names pid %d, expected %d",
                    what, i + 1, (int)resp->whoami->pid, (int)getpid());
        sockid__workload__response__free_unpacked(resp, NULL);
    }
    h_note("%s: 3 responses in order (whoami, health, whoami)", what);
    (void)close(fd);
    served_after(what);
}

/* FetchToken with 32,000 empty audiences: 64,004 bytes on the wire (inside
 * the 64 KiB frame), but protobuf-c would allocate 32,000 16-byte
 * ProtobufCBinaryData for them, over the default request_memory of 256 KiB. */
static void case_request_memory(void)
{
    const char *what = "request that needs more than request_memory to decode";
    enum { N = 32000 };
    const size_t inner = 2u * N; /* each: tag 0x0a, length 0 */
    uint8_t *buf = malloc(FRAME_HEADER_SIZE + 4 + inner);
    H_CHECK(buf != NULL, "out of memory");
    size_t o = FRAME_HEADER_SIZE;
    buf[o++] = 0x12; /* field 2 (fetch_token), length-delimited */
    buf[o++] = (uint8_t)(0x80 | (inner & 0x7f));
    buf[o++] = (uint8_t)(0x80 | ((inner >> 7) & 0x7f));
    buf[o++] = (uint8_t)(inner >> 14);
    for (size_t i = 0; i < N; i++) {
        buf[o++] = 0x0a;
        buf[o++] = 0x00;
    }
    size_t payload = o - FRAME_HEADER_SIZE;
    H_CHECK(payload <= FRAME_DEFAULT_MAX, "test frame too large");
    frame_put_header(buf, (uint32_t)payload);

    int fd = connect_or_fail(what);
    send_raw_or_fail(fd, buf, o, what);
    free(buf);
    Sockid__Workload__Response *resp = NULL;
    int r = proto_recv(fd, H_TIMEOUT_MS, &resp);
    char desc[1024];
    proto_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR,
            "%s: expected RESOURCE_EXHAUSTED or INVALID_ARGUMENT, got %s", what, desc);
    H_CHECK(resp->error->code == SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED ||
                resp->error->code == SOCKID__ERROR_CODE__INVALID_ARGUMENT,
            "%s: expected RESOURCE_EXHAUSTED or INVALID_ARGUMENT, got %s", what, desc);
    H_CHECK(resp->error->code != SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED ||
                strstr(resp->error->message, "request_memory"),
            "%s: the message should name the limit (request_memory), got %s", what, desc);
    h_note("%s: %s", what, desc);
    sockid__workload__response__free_unpacked(resp, NULL);
    (void)close(fd);
    served_after(what);
}

static void case_idle(void)
{
    const char *what = "client that connects and sends nothing";
    int64_t t0 = now_ms();
    int idle = connect_or_fail(what);
    /* Another client is served while the idle one holds its slot. */
    served_after("served while an idle client is connected");
    int64_t t_served = now_ms();
    if (t_served - t0 < IDLE_TIMEOUT_MS / 2) {
        struct pollfd p = {.fd = idle, .events = POLLIN};
        H_CHECK(poll(&p, 1, 0) == 0,
                "%s: the connection was closed %lld ms after connect, long before the idle "
                "timeout (%d ms)",
                what, (long long)(t_served - t0), IDLE_TIMEOUT_MS);
    }
    int r = proto_wait_closed(idle, H_TIMEOUT_MS);
    int64_t elapsed = now_ms() - t0;
    H_CHECK(r == 0, "%s: the agent did not close it within %d ms (idle_timeout_ms = %d)", what,
            H_TIMEOUT_MS, IDLE_TIMEOUT_MS);
    /* The agent's clock starts after our connect, so a correct agent can only
     * close later than this; a few ms of slack for rounding to ms. */
    H_CHECK(elapsed >= IDLE_TIMEOUT_MS - 5,
            "%s: closed after %lld ms, before the idle timeout of %d ms", what, (long long)elapsed,
            IDLE_TIMEOUT_MS);
    h_note("%s: closed by the agent after %lld ms (idle_timeout_ms = %d)", what, (long long)elapsed,
           IDLE_TIMEOUT_MS);
    (void)close(idle);
    served_after(what);
}

static void case_partial(void)
{
    const char *what = "partial frame that never completes";
    int64_t t0 = now_ms();
    int fd = connect_or_fail(what);
    uint8_t buf[FRAME_HEADER_SIZE + 3] = {0};
    frame_put_header(buf, 10);
    send_raw_or_fail(fd, buf, sizeof(buf), what);
    int r = proto_wait_closed(fd, H_TIMEOUT_MS);
    int64_t elapsed = now_ms() - t0;
    H_CHECK(r == 0, "%s: the agent did not close it within %d ms (frame_timeout_ms = %d)", what,
            H_TIMEOUT_MS, FRAME_TIMEOUT_MS);
    H_CHECK(elapsed >= FRAME_TIMEOUT_MS - 5,
            "%s: closed after %lld ms, before the frame timeout of %d ms", what, (long long)elapsed,
            FRAME_TIMEOUT_MS);
    static const char *const line[] = {"refused", "frame_timeout_ms", NULL};
    H_CHECK(agent_log_has_line(&agent, line),
            "%s: the agent's log has no refusal line naming frame_timeout_ms", what);
    h_note("%s: closed by the agent after %lld ms (frame_timeout_ms = %d), refusal logged", what,
           (long long)elapsed, FRAME_TIMEOUT_MS);
    (void)close(fd);
    served_after(what);
}

static int whoami_ok(int fd, const char *what, size_t i)
{
    Sockid__Workload__Response *resp = NULL;
    int r = proto_whoami(fd, &resp);
    char desc[1024];
    proto_describe_result(r, resp, desc, sizeof(desc));
    H_CHECK(r == 0 && resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
            "%s: connection %zu should be served, got %s", what, i, desc);
    sockid__workload__response__free_unpacked(resp, NULL);
    return 0;
}

/* Runs against its own agent, whose idle timeout is the default: the case
 * holds connections open between requests. One event loop, so that an
 * answer on one connection proves the loop has seen an earlier close on
 * another (with several loops the close may still be queued on another
 * loop). */
static void case_per_uid(const char *dir)
{
    const char *what = "per-uid connection limit (max_connections_per_uid = 4)";
    char conf[H_PATH_MAX];
    char text[128];
    (void)snprintf(text, sizeof(text), "[agent]\nmax_connections_per_uid = %d\nworkers = 1\n",
                   PER_UID_LIMIT);
    h_write_file(dir, "per-uid.conf", text, conf);
    static struct agent b;
    const char *const args[] = {"--config", conf, NULL};
    agent_start(&b, agent_exe, dir, args);

    int fds[PER_UID_LIMIT];
    /* Each is answered before the next connects, so by the second answer
     * the agent has forgotten its own startup probe. */
    for (size_t i = 0; i < PER_UID_LIMIT; i++) {
        fds[i] = proto_connect(b.sock);
        H_CHECK(fds[i] >= 0, "%s: connect %zu: %s", what, i + 1, strerror(-fds[i]));
        (void)whoami_ok(fds[i], what, i + 1);
    }
    int extra = proto_connect(b.sock);
    H_CHECK(extra >= 0, "%s: connect 5: %s", what, strerror(-extra));
    /* A request too, so that an agent without the limit shows itself by
     * serving it. The agent may have refused and closed already: the send
     * may fail, and the refusal is still there to read. */
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__WhoAmIRequest w = SOCKID__WORKLOAD__WHO_AM_IREQUEST__INIT;
    req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI;
    req.whoami = &w;
    (void)proto_send(extra, &req);
    Sockid__Workload__Response *resp = NULL;
    int r = proto_recv(extra, H_TIMEOUT_MS, &resp);
    char desc[1024];
    proto_describe_result(r, resp, desc, sizeof(desc));
    if (r == 0) {
        H_CHECK(resp->kind_case != SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI,
                "%s: the 5th connection was served: %s", what, desc);
        H_CHECK(resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR &&
                    resp->error->code == SOCKID__ERROR_CODE__RESOURCE_EXHAUSTED,
                "%s: the 5th connection should get RESOURCE_EXHAUSTED, got %s", what, desc);
        H_CHECK(strstr(resp->error->message, "max_connections_per_uid") != NULL,
                "%s: the message should name the limit (max_connections_per_uid), got %s", what,
                desc);
        sockid__workload__response__free_unpacked(resp, NULL);
        r = proto_wait_closed(extra, H_TIMEOUT_MS);
        H_CHECK(r == 0, "%s: the 5th connection got its error but stayed open", what);
    } else {
        H_CHECK(r == -ECONNRESET, "%s: the 5th connection: expected an error or a close, got %s",
                what, desc);
    }
    h_note("%s: 4 served, the 5th got %s", what, desc);
    (void)close(extra);

    /* Close one; an answer on another proves the agent has seen the close. */
    (void)close(fds[0]);
    (void)whoami_ok(fds[1], what, 2);
    int again = proto_connect(b.sock);
    H_CHECK(again >= 0, "%s: reconnect: %s", what, strerror(-again));
    (void)whoami_ok(again, "after closing one of the 4, a new connection", 5);
    h_note("%s: after closing one, a new connection is served", what);
    (void)close(again);
    for (size_t i = 1; i < PER_UID_LIMIT; i++)
        (void)close(fds[i]);
    agent_stop(&b);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s AGENT\n", argv[0]);
        return 2;
    }
    agent_exe = argv[1];
    char dir[H_PATH_MAX], conf[H_PATH_MAX], text[256];
    h_tmpdir(dir);
    (void)snprintf(text, sizeof(text), "[agent]\nframe_timeout_ms = %d\nidle_timeout_ms = %d\n",
                   FRAME_TIMEOUT_MS, IDLE_TIMEOUT_MS);
    h_write_file(dir, "agent.conf", text, conf);
    const char *const args[] = {"--config", conf, NULL};
    agent_start(&agent, agent_exe, dir, args);

    case_over_limit();
    case_zero_length();
    case_empty_request();
    case_garbage();
    case_unknown_type();
    case_cut_short();
    case_pipelined();
    case_request_memory();
    case_idle();
    case_partial();
    agent_stop(&agent);

    char dir2[H_PATH_MAX];
    h_tmpdir(dir2);
    case_per_uid(dir2);
    h_note("PASS");
    return 0;
}
