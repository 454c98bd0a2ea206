/* A bump allocator with a fixed budget, handed to protobuf-c.
 *
 * protobuf-c sizes repeated fields from the wire before it copies them, so a
 * small frame of many empty elements can ask for far more memory than its own
 * size. Unpacking through an arena caps that at the arena's capacity, and
 * frees a whole request at once with arena_reset(). */
#ifndef SOCKID_ARENA_H
#define SOCKID_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct arena {
    uint8_t *base;
    size_t cap;
    size_t used;
    bool exhausted; /* an allocation was refused since the last reset */
    ProtobufCAllocator allocator;
};

/* Uses the caller's buffer of cap bytes. */
void arena_init(struct arena *a, void *buf, size_t cap);
void arena_reset(struct arena *a);
void *arena_alloc(struct arena *a, size_t n);

#endif
