/* libFuzzer harness for the admin socket's input: one frame's payload,
 * unpacked as an admin Request through a 256 KiB arena as the agent does,
 * and for CreateEntry the whole entry validation (SPIFFE ID, selectors,
 * audiences, hint) that runs before anything is stored. */
#include <errno.h>
#include <sodium.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admin.pb-c.h"
#include "arena.h"
#include "entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ARENA (256u * 1024u)

static alignas(max_align_t) uint8_t arena_mem[FUZZ_ARENA];

static void create(const Sockid__Admin__CreateEntryRequest *c)
{
    if (c->n_selectors > ENTRY_MAX_SELECTORS || c->n_audiences > ENTRY_MAX_AUDIENCES)
        return; /* refused by count before validation, as admin.c does */
    const char *sels[ENTRY_MAX_SELECTORS], *auds[ENTRY_MAX_AUDIENCES];
    size_t sel_lens[ENTRY_MAX_SELECTORS], aud_lens[ENTRY_MAX_AUDIENCES];
    for (size_t i = 0; i < c->n_selectors; i++) {
        sels[i] = (const char *)c->selectors[i].data;
        sel_lens[i] = c->selectors[i].len;
    }
    for (size_t i = 0; i < c->n_audiences; i++) {
        auds[i] = (const char *)c->audiences[i].data;
        aud_lens[i] = c->audiences[i].len;
    }
    struct entry_spec spec = {
        .spiffe_id = (const char *)c->spiffe_id.data,
        .spiffe_id_len = c->spiffe_id.len,
        .selectors = sels,
        .selector_lens = sel_lens,
        .n_selectors = c->n_selectors,
        .ttl = c->ttl_seconds,
        .audiences = auds,
        .audience_lens = aud_lens,
        .n_audiences = c->n_audiences,
        .hint = c->hint.len ? (const char *)c->hint.data : NULL,
        .hint_len = c->hint.len,
    };
    struct entry *e = NULL;
    char err[512];
    int r = entry_new(&spec, "example.org", 300, 86400, &e, err, sizeof(err));
    if (r == 0) {
        /* What was accepted must hold the invariants matching relies on. */
        if (e->n_selectors == 0 || e->n_selectors > ENTRY_MAX_SELECTORS ||
            strncmp(e->spiffe_id, "spiffe://example.org/", 21) != 0)
            abort();
        for (size_t i = 1; i < e->n_selectors; i++)
            if (strcmp(e->selectors[i - 1], e->selectors[i]) >= 0)
                abort();
        entry_unref(e);
    } else if (r != -EINVAL && r != -ENOMEM) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    if (size > 64u * 1024u)
        return 0;
    struct arena arena;
    arena_init(&arena, arena_mem, sizeof(arena_mem));
    Sockid__Admin__Request *req = sockid__admin__request__unpack(&arena.allocator, size, data);
    if (!req)
        return 0;
    if (req->kind_case == SOCKID__ADMIN__REQUEST__KIND_CREATE_ENTRY && req->create_entry)
        create(req->create_entry);
    return 0;
}
