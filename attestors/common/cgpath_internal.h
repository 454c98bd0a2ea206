/* What cgpath.c, cgpath_container.c and cgpath_systemd.c share: a path cut
 * into segments, and systemd's naming rules. Not installed, not exported:
 * the library is built with hidden visibility. */
#ifndef SOCKID_CGPATH_INTERNAL_H
#define SOCKID_CGPATH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cgpath.h"

#define CGPATH_UID_MAX UINT32_C(4294967294) /* (uid_t)-1 is no uid */

static inline bool cgpath_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool cgpath_is_lower_hex(char c)
{
    return cgpath_is_digit(c) || (c >= 'a' && c <= 'f');
}

static inline bool cgpath_is_alnum(char c)
{
    return cgpath_is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool cgpath_mem_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

static inline bool cgpath_mem_starts(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static inline bool cgpath_mem_ends(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

bool cgpath_all_lower_hex(const char *s, size_t len);

/* A decimal number as the kernel prints one: digits only, no sign, no
 * leading zero, at most max. */
bool cgpath_parse_u32(const char *s, size_t len, uint32_t max, uint32_t *ret);

/* Copies len bytes of src, cut to fit cap, and a NUL. */
void cgpath_copy(char *dst, size_t cap, const char *src, size_t len);

struct cgpath_seg {
    uint16_t off, len;
};

struct cgpath_split {
    const char *path;
    size_t n;
    struct cgpath_seg segs[CGPATH_SEGMENTS_MAX];
};

/* Splits an absolute path into its segments. Returns 1; 0 when the path is
 * not canonical (an empty, "." or ".." segment: the kernel writes "/.." for
 * a cgroup outside the reader's cgroup namespace, where nothing is anchored
 * at a root we know); -EINVAL when it is not absolute; -E2BIG past the
 * bounds. */
int cgpath_split(const char *path, struct cgpath_split *sp);

static inline const char *cgpath_seg_ptr(const struct cgpath_split *sp, size_t i)
{
    return sp->path + sp->segs[i].off;
}

static inline size_t cgpath_seg_len(const struct cgpath_split *sp, size_t i)
{
    return sp->segs[i].len;
}

static inline bool cgpath_seg_is(const struct cgpath_split *sp, size_t i, const char *lit)
{
    return cgpath_mem_is(cgpath_seg_ptr(sp, i), cgpath_seg_len(sp, i), lit);
}

/* A slice as named in the cgroup tree (escape undone, systemd's rules):
 * returns its stem, the name without ".slice". */
bool cgpath_slice_stem(const char *s, size_t len, const char **ret_stem, size_t *ret_len);

/* The run of slices starting at segment s; returns the index of the first
 * segment after it. */
size_t cgpath_slice_run(const struct cgpath_split *sp, size_t s);

/* Segment i as a service or scope unit, escape undone, into out. */
bool cgpath_unit_at(const struct cgpath_split *sp, size_t i, char out[CGPATH_UNIT_MAX + 1]);

/* Segment i's name with the escape undone, into out. */
void cgpath_slice_name_at(const struct cgpath_split *sp, size_t i, char out[CGPATH_UNIT_MAX + 1]);

/* Segments 0..2 are /user.slice/user-UID.slice/user@UID.service. */
bool cgpath_user_manager(const struct cgpath_split *sp, uint32_t *ret_uid);

/* emit(), with any positive return taken as 0. */
int cgpath_emit(sockid_emit_fn emit, void *emit_ctx, const char *type, const char *key,
                const char *value);

#endif /* SOCKID_CGPATH_INTERNAL_H */
