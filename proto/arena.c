#include "arena.h"

#include <stdalign.h>
#include <stdint.h>

static void *arena_pb_alloc(void *data, size_t n)
{
    return arena_alloc(data, n);
}

static void arena_pb_free(void *data, void *p)
{
    /* Freed all at once by arena_reset(). */
    (void)data;
    (void)p;
}

void arena_init(struct arena *a, void *buf, size_t cap)
{
    a->base = buf;
    a->cap = cap;
    a->used = 0;
    a->exhausted = false;
    a->allocator.alloc = arena_pb_alloc;
    a->allocator.free = arena_pb_free;
    a->allocator.allocator_data = a;
}

void arena_reset(struct arena *a)
{
    a->used = 0;
    a->exhausted = false;
}

void *arena_alloc(struct arena *a, size_t n)
{
    /* Align the address, not the offset: the caller's buffer may not be. */
    const uintptr_t align = alignof(max_align_t);
    uintptr_t at = (uintptr_t)(a->base + a->used);
    size_t start = a->used + (size_t)(((at + align - 1) & ~(align - 1)) - at);
    if (n == 0)
        n = 1;
    if (start > a->cap || n > a->cap - start) {
        a->exhausted = true;
        return NULL;
    }
    a->used = start + n;
    return a->base + start;
}
