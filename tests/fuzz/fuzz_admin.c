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

#include "admin.h"
#include "admin.pb-c.h"
#include "arena.h"
#include "entries.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ARENA (256u * 1024u)

static alignas(max_align_t) uint8_t arena_mem[FUZZ_ARENA];

static void create(const Sockid__Admin__CreateEntryRequest *c)
{
    char err[512];
    struct admin_create_spec cs;
    if (!admin_create_spec(c, &cs, err, sizeof(err)))
        return; /* refused by count before validation */
    struct entry *e = NULL;
    int r = entry_new(&cs.spec, "example.org", 300, 86400, &e, err, sizeof(err));
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
