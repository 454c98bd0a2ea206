/* libFuzzer harness for the workload socket's input path: the input is the
 * byte stream a client sends on one connection. It is cut into frames with
 * frame_parse (64 KiB limit, as the agent's default), and each whole frame is
 * unpacked as a Request through a 256 KiB arena, as the agent does per
 * request. Everything the unpacked message holds is read, so the sanitizers
 * see any length that points outside what was allocated.
 *
 * A message without unknown fields that unpacks must also pack again and
 * unpack to the same size. (Not one with unknown fields: protobuf-c 1.4.1
 * accepts field number 0 when its tag is a non-minimal varint, 0x81 0x00,
 * keeps it as an unknown field, packs it back as 0x01 and then refuses its
 * own output. Harmless to the agent, which ignores unknown fields.) */
#include <errno.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "frame.h"
#include "workload.pb-c.h"

#define FUZZ_MAX_FRAME (64u * 1024u)
#define FUZZ_ARENA     (256u * 1024u)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static alignas(max_align_t) uint8_t arena_mem[FUZZ_ARENA];

/* Keeps the reads below from being optimized away. */
static volatile uint32_t sink;

static void touch(const ProtobufCBinaryData *b)
{
    if (b->len > 0 && !b->data)
        abort();
    uint32_t h = (uint32_t)b->len;
    for (size_t i = 0; i < b->len; i++)
        h = h * 31u + b->data[i];
    sink ^= h;
}

static void touch_request(const Sockid__Workload__Request *req)
{
    sink ^= (uint32_t)req->kind_case;
    switch (req->kind_case) {
    case SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI:
        if (!req->whoami)
            abort();
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN: {
        const Sockid__Workload__FetchTokenRequest *f = req->fetch_token;
        if (!f)
            abort();
        sink ^= (uint32_t)f->n_audiences;
        if (f->n_audiences > 0 && !f->audiences)
            abort();
        for (size_t i = 0; i < f->n_audiences; i++)
            touch(&f->audiences[i]);
        touch(&f->spiffe_id);
        break;
    }
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE:
        if (!req->fetch_bundle)
            abort();
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE:
        if (!req->validate)
            abort();
        touch(&req->validate->token);
        touch(&req->validate->audience);
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_HEALTH:
        if (!req->health)
            abort();
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND__NOT_SET:
        break;
    default:
        /* protobuf-c never sets a case the schema does not have. */
        abort();
    }
}

static bool has_unknown_fields(const Sockid__Workload__Request *req)
{
    const ProtobufCMessage *sub = NULL;
    switch (req->kind_case) {
    case SOCKID__WORKLOAD__REQUEST__KIND_WHOAMI:
        sub = &req->whoami->base;
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_TOKEN:
        sub = &req->fetch_token->base;
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_FETCH_BUNDLE:
        sub = &req->fetch_bundle->base;
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_VALIDATE:
        sub = &req->validate->base;
        break;
    case SOCKID__WORKLOAD__REQUEST__KIND_HEALTH:
        sub = &req->health->base;
        break;
    default:
        break;
    }
    return req->base.n_unknown_fields > 0 || (sub && sub->n_unknown_fields > 0);
}

/* Packs req and unpacks the result again: the two must agree. */
static void check_round_trip(const Sockid__Workload__Request *req)
{
    if (has_unknown_fields(req))
        return;
    size_t n = sockid__workload__request__get_packed_size(req);
    if (n > 4 * FUZZ_MAX_FRAME)
        abort(); /* can only grow by re-encoding varints, never this much */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    if (sockid__workload__request__pack(req, buf) != n)
        abort();
    Sockid__Workload__Request *again = sockid__workload__request__unpack(NULL, n, buf);
    if (!again)
        abort();
    if (again->kind_case != req->kind_case ||
        sockid__workload__request__get_packed_size(again) != n)
        abort();
    sockid__workload__request__free_unpacked(again, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct arena arena;
    arena_init(&arena, arena_mem, sizeof(arena_mem));

    size_t off = 0;
    for (;;) {
        uint32_t len = 0;
        int r = frame_parse(data + off, size - off, FUZZ_MAX_FRAME, &len);
        if (r <= 0) {
            /* 0: wait for more bytes (the input ends here); < 0: the agent
             * drops the connection. */
            if (r < 0 && r != -EMSGSIZE && r != -EBADMSG)
                abort();
            break;
        }
        if (len == 0 || len > FUZZ_MAX_FRAME || len > size - off - FRAME_HEADER_SIZE)
            abort();
        const uint8_t *payload = data + off + FRAME_HEADER_SIZE;
        off += FRAME_HEADER_SIZE + len;

        arena_reset(&arena);
        Sockid__Workload__Request *req =
            sockid__workload__request__unpack(&arena.allocator, len, payload);
        if (arena.used > arena.cap)
            abort();
        if (!req)
            continue; /* malformed or over budget: an error reply, then on */
        touch_request(req);
        check_round_trip(req);
        sockid__workload__request__free_unpacked(req, &arena.allocator);
    }
    return 0;
}
