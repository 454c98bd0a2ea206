/* The bench client's side of the wire: requests packed once, the fewest
 * system calls per round trip (one send, usually one recv), and a check
 * of every answer. The agent and the floor are driven by this same code. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "frame.h"
#include "workload.pb-c.h"

uint64_t wire_now_ns(void)
{
    struct timespec ts;
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void wire_sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000u, .tv_nsec = (long)(us % 1000000u) * 1000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int wire_request(enum bench_kind kind, uint64_t seq, uint8_t *buf, size_t cap)
{
    Sockid__Workload__Request req = SOCKID__WORKLOAD__REQUEST__INIT;
    Sockid__Workload__WhoAmIRequest who = SOCKID__WORKLOAD__WHO_AM_IREQUEST__INIT;
    Sockid__Workload__FetchTokenRequest fetch = SOCKID__WORKLOAD__FETCH_TOKEN_REQUEST__INIT;
    char aud[BENCH_AUDIENCE_LEN + 1];
    ProtobufCBinaryData auds[1];

    if (kind == BENCH_WHOAMI) {
        req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI;
        req.whoami = &who;
    } else {
        /* "bench-" and 12 digits: the cached audience is seq 0. */
        (void)snprintf(aud, sizeof(aud), "bench-%012llu",
                       (unsigned long long)(kind == BENCH_FETCH ? 0 : seq % 1000000000000ull));
        auds[0] = (ProtobufCBinaryData){.len = BENCH_AUDIENCE_LEN, .data = (uint8_t *)aud};
        fetch.n_audiences = 1;
        fetch.audiences = auds;
        req.kind_case = SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN;
        req.fetch_token = &fetch;
    }
    size_t size = protobuf_c_message_get_packed_size(&req.base);
    if (FRAME_HEADER_SIZE + size > cap)
        return -ENOBUFS;
    frame_put_header(buf, (uint32_t)size);
    (void)protobuf_c_message_pack(&req.base, buf + FRAME_HEADER_SIZE);
    return (int)(FRAME_HEADER_SIZE + size);
}

int wire_connect(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if (len >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    memcpy(addr.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int e = errno;
        (void)close(fd);
        return -e;
    }
    return fd;
}

int wire_roundtrip(int fd, const uint8_t *req, size_t req_len, uint8_t *buf, size_t cap)
{
    size_t off = 0;
    while (off < req_len) {
        ssize_t w = send(fd, req + off, req_len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        off += (size_t)w;
    }
    size_t have = 0;
    for (;;) {
        uint32_t len;
        int r = frame_parse(buf, have, (uint32_t)(cap - FRAME_HEADER_SIZE), &len);
        if (r < 0)
            return r;
        if (r == 1)
            return have == FRAME_HEADER_SIZE + len ? (int)len : -EPROTO; /* one answer only */
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        have += (size_t)n;
    }
}

bool wire_check(enum bench_kind kind, const uint8_t *payload, size_t len, char *why, size_t why_len)
{
    Sockid__Workload__Response *resp = sockid__workload__response__unpack(NULL, len, payload);
    bool ok = false;
    if (!resp) {
        (void)snprintf(why, why_len, "the answer is not a sockid.workload.Response");
        return false;
    }
    if (resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_ERROR && resp->error) {
        (void)snprintf(why, why_len, "error %d: %s", (int)resp->error->code,
                       resp->error->message ? resp->error->message : "");
    } else if (kind == BENCH_WHOAMI) {
        ok = resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_WHOAMI &&
             resp->whoami->n_selectors > 0;
        if (!ok)
            (void)snprintf(why, why_len, "a WhoAmI answer without selectors");
    } else {
        ok = resp->kind_case == SOCKID__WORKLOAD__RESPONSE__KIND_FETCH_TOKEN &&
             resp->fetch_token->n_tokens > 0 && resp->fetch_token->tokens[0]->token.len > 0;
        if (!ok)
            (void)snprintf(why, why_len, "a FetchToken answer without a token");
    }
    sockid__workload__response__free_unpacked(resp, NULL);
    return ok;
}

int wire_once(const char *path, enum bench_kind kind, uint8_t *ret_frame, size_t cap,
              size_t *ret_len, char *why, size_t why_len)
{
    uint8_t req[256], buf[BENCH_RESPONSE_MAX];
    int len = wire_request(kind, 0, req, sizeof(req));
    if (len < 0)
        return len;
    int fd = wire_connect(path);
    if (fd < 0) {
        (void)snprintf(why, why_len, "cannot connect to %s: %s", path, strerror(-fd));
        return fd;
    }
    struct timeval tv = {.tv_sec = 10};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int n = wire_roundtrip(fd, req, (size_t)len, buf, sizeof(buf));
    (void)close(fd);
    if (n < 0) {
        (void)snprintf(why, why_len, "no answer from %s: %s", path, strerror(-n));
        return n;
    }
    if (!wire_check(kind, buf + FRAME_HEADER_SIZE, (size_t)n, why, why_len))
        return -EPROTO;
    size_t total = FRAME_HEADER_SIZE + (size_t)n;
    if (ret_frame) {
        if (total > cap)
            return -ENOBUFS;
        memcpy(ret_frame, buf, total);
    }
    if (ret_len)
        *ret_len = total;
    return 0;
}
