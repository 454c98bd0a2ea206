/* Selectors: "type:key:value" strings that describe a workload.
 *
 * type  [a-z0-9_-], 1..SOCKID_SELECTOR_TYPE_MAX bytes
 * key   printable ASCII except ':', 1..SOCKID_SELECTOR_KEY_MAX bytes
 * value valid UTF-8 without control characters (C0, DEL, C1), 1..SOCKID_SELECTOR_VALUE_MAX
 *       bytes; may itself hold ':' (the value is everything after the
 *       second colon). */
#ifndef SOCKID_SELECTOR_H
#define SOCKID_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include <sockid/attestor.h>

#define SELECTOR_MAX_LEN                                                                           \
    (SOCKID_SELECTOR_TYPE_MAX + 1 + SOCKID_SELECTOR_KEY_MAX + 1 + SOCKID_SELECTOR_VALUE_MAX)
/* What one workload may carry, from all attestors together. */
#define SELECTOR_SET_MAX   512u
#define SELECTOR_SET_BYTES (64u * 1024u)

/* Checks one part; on failure writes why into err (may be NULL). */
bool selector_type_valid(const char *type, size_t len, char *err, size_t err_len);
bool selector_key_valid(const char *key, size_t len, char *err, size_t err_len);
bool selector_value_valid(const char *value, size_t len, char *err, size_t err_len);

/* Checks a whole "type:key:value" of len bytes (embedded NULs are invalid). */
bool selector_valid(const char *s, size_t len, char *err, size_t err_len);

/* Writes "type:key:value" into out. Returns its length, or -EINVAL when a part
 * is invalid, -E2BIG when out is too small. */
__attribute__((warn_unused_result)) int selector_format(char *out, size_t cap, const char *type,
                                                        const char *key, const char *value);

/* A bounded set of selectors, storage owned by the set. */
struct selector_set {
    size_t n;
    const char *items[SELECTOR_SET_MAX];
    size_t used;
    char buf[SELECTOR_SET_BYTES];
};

void selector_set_clear(struct selector_set *set);

/* Adds "type:key:value". Returns 0, -EINVAL for an invalid part, -E2BIG when
 * the set is full. */
__attribute__((warn_unused_result)) int selector_set_add(struct selector_set *set, const char *type,
                                                         const char *key, const char *value);

/* Forgets the selectors added after the set held n (an attestor that failed
 * half way contributes nothing). Only valid before selector_set_sort(). */
void selector_set_truncate(struct selector_set *set, size_t n);

/* Sorts bytewise and drops duplicates. */
void selector_set_sort(struct selector_set *set);

bool selector_set_contains(const struct selector_set *set, const char *s);

#endif
