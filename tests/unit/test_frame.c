/* Framing (proto/frame.h) and the request arena (proto/arena.h).
 *
 * frame_parse is what the agent's event loop runs on every read, so its cases
 * are the ones a stream produces: bytes arriving in pieces, frames back to
 * back, a hostile length. frame_read/frame_write are what libsockid runs on a
 * blocking socket, so they are tested over a real socketpair with a peer that
 * dawdles, hangs up or lies about the length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "arena.h"
#include "frame.h"
#include "workload.pb-c.h"

/* A value frame_parse/frame_read must leave alone unless they succeed. */
#define UNTOUCHED 0xdeadbeefu

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void make_pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void send_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        assert_true(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

/* ---- frame_parse ---------------------------------------------------------- */

static void test_parse_partial_header(void **state)
{
    (void)state;
    /* Even a header that will announce an oversized or zero length is not
     * judged before all four bytes are in. */
    const uint8_t big[4] = {0xff, 0xff, 0xff, 0xff};
    const uint8_t zero[4] = {0, 0, 0, 0};
    for (size_t len = 0; len < FRAME_HEADER_SIZE; len++) {
        uint32_t n = UNTOUCHED;
        assert_int_equal(frame_parse(big, len, FRAME_DEFAULT_MAX, &n), 0);
        assert_int_equal(frame_parse(zero, len, FRAME_DEFAULT_MAX, &n), 0);
        assert_int_equal(n, UNTOUCHED);
    }
}

static void test_parse_header_only_and_partial_payload(void **state)
{
    (void)state;
    uint8_t buf[4 + 10];
    put_be32(buf, 10);
    memset(buf + 4, 'x', 10);
    for (size_t len = FRAME_HEADER_SIZE; len < sizeof(buf); len++) {
        uint32_t n = UNTOUCHED;
        assert_int_equal(frame_parse(buf, len, FRAME_DEFAULT_MAX, &n), 0);
        assert_int_equal(n, UNTOUCHED);
    }
    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_parse(buf, sizeof(buf), FRAME_DEFAULT_MAX, &n), 1);
    assert_int_equal(n, 10);
}

static void test_parse_exact_limit(void **state)
{
    (void)state;
    const uint32_t max = 512;
    uint8_t *buf = calloc(1, FRAME_HEADER_SIZE + max);
    assert_non_null(buf);
    put_be32(buf, max);
    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_parse(buf, FRAME_HEADER_SIZE + max - 1, max, &n), 0);
    assert_int_equal(frame_parse(buf, FRAME_HEADER_SIZE + max, max, &n), 1);
    assert_int_equal(n, max);

    /* The default workload limit, 64 KiB, is itself accepted. */
    uint8_t hdr[4];
    put_be32(hdr, FRAME_DEFAULT_MAX);
    assert_int_equal(frame_parse(hdr, sizeof(hdr), FRAME_DEFAULT_MAX, &n), 0);
    free(buf);
}

static void test_parse_one_over_limit(void **state)
{
    (void)state;
    /* Refused from the header alone: the agent must not buffer 64 KiB + 1
     * bytes before it can say no. */
    uint8_t hdr[4];
    uint32_t n = UNTOUCHED;
    put_be32(hdr, 513);
    assert_int_equal(frame_parse(hdr, sizeof(hdr), 512, &n), -EMSGSIZE);
    put_be32(hdr, FRAME_DEFAULT_MAX + 1);
    assert_int_equal(frame_parse(hdr, sizeof(hdr), FRAME_DEFAULT_MAX, &n), -EMSGSIZE);
    put_be32(hdr, UINT32_MAX);
    assert_int_equal(frame_parse(hdr, sizeof(hdr), FRAME_HARD_MAX, &n), -EMSGSIZE);
    assert_int_equal(n, UNTOUCHED);
}

static void test_parse_zero_length(void **state)
{
    (void)state;
    uint8_t buf[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_parse(buf, 4, FRAME_DEFAULT_MAX, &n), -EBADMSG);
    /* What follows does not make a zero length valid. */
    assert_int_equal(frame_parse(buf, sizeof(buf), FRAME_DEFAULT_MAX, &n), -EBADMSG);
    assert_int_equal(n, UNTOUCHED);
}

static void test_parse_back_to_back(void **state)
{
    (void)state;
    /* Frame A (3 bytes), frame B (5 bytes), then 2 bytes of a third header. */
    uint8_t buf[4 + 3 + 4 + 5 + 2];
    put_be32(buf, 3);
    memcpy(buf + 4, "abc", 3);
    put_be32(buf + 7, 5);
    memcpy(buf + 11, "hello", 5);
    buf[16] = 0;
    buf[17] = 0;

    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_parse(buf, sizeof(buf), FRAME_DEFAULT_MAX, &n), 1);
    assert_int_equal(n, 3);
    assert_memory_equal(buf + FRAME_HEADER_SIZE, "abc", 3);

    size_t off = FRAME_HEADER_SIZE + n;
    n = UNTOUCHED;
    assert_int_equal(frame_parse(buf + off, sizeof(buf) - off, FRAME_DEFAULT_MAX, &n), 1);
    assert_int_equal(n, 5);
    assert_memory_equal(buf + off + FRAME_HEADER_SIZE, "hello", 5);

    off += FRAME_HEADER_SIZE + n;
    n = UNTOUCHED;
    assert_int_equal(sizeof(buf) - off, 2);
    assert_int_equal(frame_parse(buf + off, sizeof(buf) - off, FRAME_DEFAULT_MAX, &n), 0);
    assert_int_equal(frame_parse(buf + off, 0, FRAME_DEFAULT_MAX, &n), 0);
    assert_int_equal(n, UNTOUCHED);
}

static void test_parse_big_endian(void **state)
{
    (void)state;
    uint8_t hdr[4] = {0x00, 0x01, 0x02, 0x03};
    const uint32_t want = 0x00010203; /* 66051, not 0x03020100 */
    uint8_t *buf = calloc(1, FRAME_HEADER_SIZE + want);
    assert_non_null(buf);
    memcpy(buf, hdr, sizeof(hdr));
    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_parse(buf, FRAME_HEADER_SIZE + want, FRAME_HARD_MAX, &n), 1);
    assert_int_equal(n, want);
    assert_int_equal(frame_parse(buf, FRAME_HEADER_SIZE + want - 1, FRAME_HARD_MAX, &n), 0);
    /* One below the decoded length as the limit: refused, so the high bytes
     * were read as the high bytes. */
    assert_int_equal(frame_parse(hdr, sizeof(hdr), want - 1, &n), -EMSGSIZE);
    free(buf);

    uint8_t one[5] = {0x00, 0x00, 0x00, 0x01, 'z'};
    assert_int_equal(frame_parse(one, sizeof(one), FRAME_DEFAULT_MAX, &n), 1);
    assert_int_equal(n, 1);
}

static void test_put_header(void **state)
{
    (void)state;
    uint8_t out[FRAME_HEADER_SIZE];
    frame_put_header(out, 0x00010203);
    assert_memory_equal(out, ((uint8_t[]){0x00, 0x01, 0x02, 0x03}), 4);
    frame_put_header(out, 0xa1b2c3d4);
    assert_memory_equal(out, ((uint8_t[]){0xa1, 0xb2, 0xc3, 0xd4}), 4);

    /* What one end writes, the other end parses. */
    uint8_t buf[4 + 300] = {0};
    frame_put_header(buf, 300);
    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_parse(buf, sizeof(buf), FRAME_DEFAULT_MAX, &n), 1);
    assert_int_equal(n, 300);
}

/* ---- frame_write / frame_read over a socketpair ---------------------------- */

static void test_rw_round_trip(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    const uint8_t msg[] = "\x0a\x04whoami\x00tail"; /* binary, with a NUL */
    assert_int_equal(frame_write(sv[0], msg, sizeof(msg), 1000), 0);

    uint8_t buf[64];
    uint32_t n = UNTOUCHED;
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 1000, &n), 0);
    assert_int_equal(n, sizeof(msg));
    assert_memory_equal(buf, msg, sizeof(msg));

    /* On the wire: a big-endian length, then the payload, nothing else. */
    assert_int_equal(frame_write(sv[0], msg, 3, -1), 0);
    uint8_t raw[16];
    assert_int_equal(recv(sv[1], raw, 7, MSG_WAITALL), 7);
    assert_memory_equal(raw, ((uint8_t[]){0, 0, 0, 3}), 4);
    assert_memory_equal(raw + 4, msg, 3);
    assert_int_equal(recv(sv[1], raw, sizeof(raw), MSG_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    close(sv[0]);
    close(sv[1]);
}

static void test_rw_back_to_back(void **state)
{
    (void)state;
    /* frame_read must take exactly one frame off the stream. */
    int sv[2];
    make_pair(sv);
    assert_int_equal(frame_write(sv[0], (const uint8_t *)"first", 5, 1000), 0);
    assert_int_equal(frame_write(sv[0], (const uint8_t *)"second!", 7, 1000), 0);
    uint8_t buf[32];
    uint32_t n;
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 1000, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(buf, "first", 5);
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 1000, &n), 0);
    assert_int_equal(n, 7);
    assert_memory_equal(buf, "second!", 7);
    close(sv[0]);
    close(sv[1]);
}

struct trickle {
    int fd;
    const uint8_t *bytes;
    size_t len;
    long delay_ms;
    bool close_after;
};

static void *trickle_thread(void *arg)
{
    struct trickle *t = arg;
    for (size_t i = 0; i < t->len; i++) {
        if (send(t->fd, t->bytes + i, 1, MSG_NOSIGNAL) != 1)
            break;
        sleep_ms(t->delay_ms);
    }
    if (t->close_after)
        close(t->fd);
    return NULL;
}

static void test_rw_one_byte_at_a_time(void **state)
{
    (void)state;
    int sv[2];
    make_pair(sv);
    uint8_t wire[4 + 20];
    put_be32(wire, 20);
    for (int i = 0; i < 20; i++)
        wire[4 + i] = (uint8_t)('a' + i);
    struct trickle t = {.fd = sv[0], .bytes = wire, .len = sizeof(wire), .delay_ms = 2};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trickle_thread, &t), 0);

    uint8_t buf[32];
    uint32_t n = UNTOUCHED;
    int r = frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 10000, &n);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(r, 0);
    assert_int_equal(n, 20);
    assert_memory_equal(buf, wire + 4, 20);
    close(sv[0]);
    close(sv[1]);
}

struct big_writer {
    int fd;
    const uint8_t *payload;
    uint32_t len;
    int result;
};

static void *big_writer_thread(void *arg)
{
    struct big_writer *w = arg;
    w->result = frame_write(w->fd, w->payload, w->len, 10000);
    return NULL;
}

static void test_rw_larger_than_socket_buffer(void **state)
{
    (void)state;
    /* 1 MiB cannot sit in a socket buffer: both ends must loop on partial
     * sends and receives. */
    const uint32_t len = 1u << 20;
    uint8_t *payload = malloc(len);
    uint8_t *buf = malloc(len);
    assert_non_null(payload);
    assert_non_null(buf);
    for (uint32_t i = 0; i < len; i++)
        payload[i] = (uint8_t)(i * 2654435761u >> 13);
    int sv[2];
    make_pair(sv);
    struct big_writer w = {.fd = sv[0], .payload = payload, .len = len};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, big_writer_thread, &w), 0);
    uint32_t n = UNTOUCHED;
    int r = frame_read(sv[1], buf, len, FRAME_HARD_MAX, 10000, &n);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(w.result, 0);
    assert_int_equal(r, 0);
    assert_int_equal(n, len);
    assert_memory_equal(buf, payload, len);
    close(sv[0]);
    close(sv[1]);
    free(payload);
    free(buf);
}

static void test_read_peer_closes(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint32_t n = UNTOUCHED;
    int sv[2];

    /* Mid-payload: the header promised 10 bytes, 3 came. */
    make_pair(sv);
    uint8_t part[4 + 3];
    put_be32(part, 10);
    memcpy(part + 4, "abc", 3);
    send_all(sv[0], part, sizeof(part));
    close(sv[0]);
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 1000, &n), -ECONNRESET);
    close(sv[1]);

    /* Mid-header. */
    make_pair(sv);
    send_all(sv[0], part, 2);
    close(sv[0]);
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 1000, &n), -ECONNRESET);
    close(sv[1]);

    /* Between frames. */
    make_pair(sv);
    close(sv[0]);
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 1000, &n), -ECONNRESET);
    close(sv[1]);

    /* Slowly, so the close arrives while frame_read is already waiting. */
    make_pair(sv);
    struct trickle t = {
        .fd = sv[0], .bytes = part, .len = sizeof(part), .delay_ms = 5, .close_after = true};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, trickle_thread, &t), 0);
    int r = frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 10000, &n);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(r, -ECONNRESET);
    close(sv[1]);
    assert_int_equal(n, UNTOUCHED);
}

static void test_read_timeout(void **state)
{
    (void)state;
    uint8_t buf[64];
    uint32_t n = UNTOUCHED;
    int sv[2];

    /* Nothing at all. */
    make_pair(sv);
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 50, &n), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);

    /* A header and part of the payload, and the peer stays connected. */
    make_pair(sv);
    uint8_t part[4 + 3];
    put_be32(part, 10);
    memcpy(part + 4, "abc", 3);
    send_all(sv[0], part, sizeof(part));
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 50, &n), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);

    /* Half a header. */
    make_pair(sv);
    send_all(sv[0], part, 2);
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), FRAME_DEFAULT_MAX, 50, &n), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(n, UNTOUCHED);
}

static void test_read_over_limit(void **state)
{
    (void)state;
    uint32_t n = UNTOUCHED;
    int sv[2];
    uint8_t hdr[4];

    /* The header alone is enough to refuse; no payload is sent or awaited. */
    make_pair(sv);
    uint8_t buf[64];
    put_be32(hdr, 65);
    send_all(sv[0], hdr, sizeof(hdr));
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), 64, 1000, &n), -EMSGSIZE);
    close(sv[0]);
    close(sv[1]);

    /* A buffer smaller than max_payload bounds the frame too: 9 bytes do not
     * go into a buffer of 8, whatever max_payload says. (A heap buffer, so the
     * sanitizer sees an overflow if they did.) */
    make_pair(sv);
    uint8_t *small = malloc(8);
    assert_non_null(small);
    uint8_t nine[4 + 9];
    put_be32(nine, 9);
    memset(nine + 4, 'n', 9);
    send_all(sv[0], nine, sizeof(nine));
    assert_int_equal(frame_read(sv[1], small, 8, FRAME_DEFAULT_MAX, 1000, &n), -EMSGSIZE);
    free(small);
    close(sv[0]);
    close(sv[1]);

    /* A zero length. */
    make_pair(sv);
    put_be32(hdr, 0);
    send_all(sv[0], hdr, sizeof(hdr));
    assert_int_equal(frame_read(sv[1], buf, sizeof(buf), 64, 1000, &n), -EBADMSG);
    close(sv[0]);
    close(sv[1]);
    assert_int_equal(n, UNTOUCHED);
}

static void test_write_errors(void **state)
{
    (void)state;
    int sv[2];

    /* Nothing to frame. */
    make_pair(sv);
    assert_int_equal(frame_write(sv[0], (const uint8_t *)"", 0, 1000), -EBADMSG);

    /* The reader is gone: an error, not a SIGPIPE that kills the client. */
    close(sv[1]);
    assert_int_equal(frame_write(sv[0], (const uint8_t *)"x", 1, 1000), -ECONNRESET);
    close(sv[0]);

    /* The reader never reads: the socket buffer fills and the deadline
     * passes. */
    make_pair(sv);
    const uint32_t len = 8u << 20;
    uint8_t *payload = calloc(1, len);
    assert_non_null(payload);
    assert_int_equal(frame_write(sv[0], payload, len, 50), -ETIMEDOUT);
    free(payload);
    close(sv[0]);
    close(sv[1]);
}

/* ---- arena ------------------------------------------------------------------ */

static bool is_aligned(const void *p)
{
    return ((uintptr_t)p % alignof(max_align_t)) == 0;
}

static void test_arena_alignment(void **state)
{
    (void)state;
    alignas(max_align_t) static uint8_t buf[1024];
    struct arena a;
    arena_init(&a, buf, sizeof(buf));
    uint8_t *prev_end = buf;
    const size_t sizes[] = {1, 3, 8, 17, 33, 1, 100};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t *p = arena_alloc(&a, sizes[i]);
        assert_non_null(p);
        assert_true(is_aligned(p));
        /* Inside the buffer, after (not overlapping) the previous block. */
        assert_true(p >= prev_end);
        assert_true(p + sizes[i] <= buf + sizeof(buf));
        memset(p, 0xa5, sizes[i]);
        prev_end = p + sizes[i];
    }
    assert_false(a.exhausted);
}

static void test_arena_alignment_unaligned_buffer(void **state)
{
    (void)state;
    /* protobuf-c stores structs with 64-bit fields and pointers in what the
     * allocator returns, so it must be aligned like malloc's, whatever
     * alignment the caller's buffer happens to have. */
    alignas(max_align_t) static uint8_t buf[1024 + 1];
    struct arena a;
    arena_init(&a, buf + 1, sizeof(buf) - 1);
    void *p = arena_alloc(&a, 24);
    assert_non_null(p);
    assert_true(is_aligned(p));
    p = arena_alloc(&a, 5);
    assert_non_null(p);
    assert_true(is_aligned(p));
}

static void test_arena_exhaustion(void **state)
{
    (void)state;
    alignas(max_align_t) static uint8_t buf[256];
    struct arena a;
    arena_init(&a, buf, sizeof(buf));

    /* The whole buffer can be handed out. */
    uint8_t *p = arena_alloc(&a, sizeof(buf));
    assert_ptr_equal(p, buf);
    assert_false(a.exhausted);
    assert_null(arena_alloc(&a, 1));
    assert_true(a.exhausted);

    /* After a reset: one request too big, the flag stays set (the unpack
     * that hit it failed) even when a later, smaller request fits. */
    arena_reset(&a);
    assert_false(a.exhausted);
    assert_null(arena_alloc(&a, sizeof(buf) + 1));
    assert_true(a.exhausted);
    assert_non_null(arena_alloc(&a, 16));
    assert_true(a.exhausted);

    /* Sizes near SIZE_MAX must not wrap around into a "fit". */
    arena_reset(&a);
    assert_non_null(arena_alloc(&a, 1));
    assert_null(arena_alloc(&a, SIZE_MAX));
    assert_null(arena_alloc(&a, SIZE_MAX - 8));
    assert_true(a.exhausted);

    /* A capacity that is not a multiple of the alignment: the padding before
     * the second block already runs past the end. */
    struct arena b;
    arena_init(&b, buf, 20);
    assert_non_null(arena_alloc(&b, 17));
    assert_null(arena_alloc(&b, 1));
    assert_true(b.exhausted);

    /* An empty arena refuses everything. */
    struct arena c;
    arena_init(&c, buf, 0);
    assert_null(arena_alloc(&c, 1));
    assert_true(c.exhausted);
}

static void test_arena_reset_reuses(void **state)
{
    (void)state;
    alignas(max_align_t) static uint8_t buf[128];
    struct arena a;
    arena_init(&a, buf, sizeof(buf));
    void *first = arena_alloc(&a, 40);
    assert_non_null(arena_alloc(&a, 40));
    arena_reset(&a);
    assert_int_equal(a.used, 0);
    /* The same memory, from the start. */
    assert_ptr_equal(arena_alloc(&a, 40), first);

    /* And through the protobuf-c interface. */
    arena_reset(&a);
    void *q = a.allocator.alloc(a.allocator.allocator_data, 100);
    assert_ptr_equal(q, first);
    a.allocator.free(a.allocator.allocator_data, q); /* a no-op, must not crash */
    assert_null(a.allocator.alloc(a.allocator.allocator_data, 100));
    assert_true(a.exhausted);
}

/* A FetchTokenRequest of n empty audiences: 2 bytes each on the wire, one
 * ProtobufCBinaryData (16 bytes) each once unpacked. */
static uint8_t *many_empty_audiences(size_t n, size_t *ret_len)
{
    uint8_t *p = malloc(2 * n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = 0x0a; /* field 1, length-delimited */
        p[2 * i + 1] = 0x00;
    }
    *ret_len = 2 * n;
    return p;
}

static void test_arena_caps_protobuf_expansion(void **state)
{
    (void)state;
    /* The agent's defaults: frames up to 64 KiB, 256 KiB to unpack one. */
    const size_t budget = 256u * 1024u;
    uint8_t *mem = malloc(budget);
    assert_non_null(mem);
    struct arena a;
    arena_init(&a, mem, budget);

    /* A full frame of empty audiences asks for 8x its size: refused. */
    size_t len;
    uint8_t *wire = many_empty_audiences(FRAME_DEFAULT_MAX / 2, &len);
    assert_int_equal(len, FRAME_DEFAULT_MAX);
    Sockid__Workload__FetchTokenRequest *req =
        sockid__workload__fetch_token_request__unpack(&a.allocator, len, wire);
    assert_null(req);
    assert_true(a.exhausted);
    assert_true(a.used <= budget);

    /* The same bytes are a valid message: with no budget they unpack, so the
     * refusal above was the budget and nothing else. */
    req = sockid__workload__fetch_token_request__unpack(NULL, len, wire);
    assert_non_null(req);
    assert_int_equal(req->n_audiences, FRAME_DEFAULT_MAX / 2);
    sockid__workload__fetch_token_request__free_unpacked(req, NULL);
    free(wire);

    /* Within budget it works, and a reset makes the whole budget available
     * to the next request again. (protobuf-c also spends about 40 bytes per
     * wire field on scratch space while it scans, from the same allocator, so
     * the budget holds far fewer fields than budget / 16.) */
    arena_reset(&a);
    wire = many_empty_audiences(1000, &len);
    req = sockid__workload__fetch_token_request__unpack(&a.allocator, len, wire);
    assert_non_null(req);
    assert_false(a.exhausted);
    assert_int_equal(req->n_audiences, 1000);
    for (size_t i = 0; i < req->n_audiences; i++)
        assert_int_equal(req->audiences[i].len, 0);
    assert_true(a.used > 1000 * sizeof(ProtobufCBinaryData));
    print_message("1000 empty audiences (2000 bytes) took %zu bytes of the arena\n", a.used);
    sockid__workload__fetch_token_request__free_unpacked(req, &a.allocator);
    free(wire);

    /* The count whose array alone no longer fits. */
    arena_reset(&a);
    size_t too_many = budget / sizeof(ProtobufCBinaryData) + 1;
    wire = many_empty_audiences(too_many, &len);
    req = sockid__workload__fetch_token_request__unpack(&a.allocator, len, wire);
    assert_null(req);
    assert_true(a.exhausted);
    free(wire);

    /* A normal request still goes through after a refused one. */
    arena_reset(&a);
    const uint8_t ok[] = {0x0a, 0x03, 'a', 'u', 'd', 0x12, 0x01, 'x'};
    req = sockid__workload__fetch_token_request__unpack(&a.allocator, sizeof(ok), ok);
    assert_non_null(req);
    assert_int_equal(req->n_audiences, 1);
    assert_int_equal(req->audiences[0].len, 3);
    assert_memory_equal(req->audiences[0].data, "aud", 3);
    assert_int_equal(req->spiffe_id.len, 1);
    sockid__workload__fetch_token_request__free_unpacked(req, &a.allocator);
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_partial_header),
        cmocka_unit_test(test_parse_header_only_and_partial_payload),
        cmocka_unit_test(test_parse_exact_limit),
        cmocka_unit_test(test_parse_one_over_limit),
        cmocka_unit_test(test_parse_zero_length),
        cmocka_unit_test(test_parse_back_to_back),
        cmocka_unit_test(test_parse_big_endian),
        cmocka_unit_test(test_put_header),
        cmocka_unit_test(test_rw_round_trip),
        cmocka_unit_test(test_rw_back_to_back),
        cmocka_unit_test(test_rw_one_byte_at_a_time),
        cmocka_unit_test(test_rw_larger_than_socket_buffer),
        cmocka_unit_test(test_read_peer_closes),
        cmocka_unit_test(test_read_timeout),
        cmocka_unit_test(test_read_over_limit),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_arena_alignment),
        cmocka_unit_test(test_arena_alignment_unaligned_buffer),
        cmocka_unit_test(test_arena_exhaustion),
        cmocka_unit_test(test_arena_reset_reuses),
        cmocka_unit_test(test_arena_caps_protobuf_expansion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
