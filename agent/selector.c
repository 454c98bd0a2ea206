#include "selector.h"

#include "text.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool fail(char *err, size_t err_len, const char *what)
{
    if (err && err_len)
        (void)snprintf(err, err_len, "%s", what);
    return false;
}

bool selector_type_valid(const char *type, size_t len, char *err, size_t err_len)
{
    if (len == 0)
        return fail(err, err_len, "selector type is empty");
    if (len > SOCKID_SELECTOR_TYPE_MAX)
        return fail(err, err_len, "selector type is longer than 32 bytes");
    for (size_t i = 0; i < len; i++) {
        char c = type[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return fail(err, err_len,
                        "selector type may hold only lowercase letters, digits, '_' and '-'");
    }
    return true;
}

bool selector_key_valid(const char *key, size_t len, char *err, size_t err_len)
{
    if (len == 0)
        return fail(err, err_len, "selector key is empty");
    if (len > SOCKID_SELECTOR_KEY_MAX)
        return fail(err, err_len, "selector key is longer than 64 bytes");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c <= 0x20 || c >= 0x7f || c == ':')
            return fail(err, err_len,
                        "selector key may hold only printable ASCII without spaces or ':'");
    }
    return true;
}

bool selector_value_valid(const char *value, size_t len, char *err, size_t err_len)
{
    if (len == 0)
        return fail(err, err_len, "selector value is empty");
    if (len > SOCKID_SELECTOR_VALUE_MAX)
        return fail(err, err_len, "selector value is longer than 1024 bytes");
    const unsigned char *p = (const unsigned char *)value;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = text_utf8_seq(p + i, len - i, &cp);
        if (n == 0)
            return fail(err, err_len, "selector value is not valid UTF-8");
        /* C0, DEL and C1 (U+009B alone starts a terminal escape sequence on
         * an operator's screen). */
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return fail(err, err_len, "selector value holds a control character");
        i += n;
    }
    return true;
}

bool selector_valid(const char *s, size_t len, char *err, size_t err_len)
{
    const char *c1 = memchr(s, ':', len);
    if (!c1)
        return fail(err, err_len, "selector must be type:key:value (no ':' found)");
    const char *rest = c1 + 1;
    size_t rest_len = len - (size_t)(rest - s);
    const char *c2 = memchr(rest, ':', rest_len);
    if (!c2)
        return fail(err, err_len, "selector must be type:key:value (only one ':' found)");
    return selector_type_valid(s, (size_t)(c1 - s), err, err_len) &&
           selector_key_valid(rest, (size_t)(c2 - rest), err, err_len) &&
           selector_value_valid(c2 + 1, len - (size_t)(c2 + 1 - s), err, err_len);
}

int selector_format(char *out, size_t cap, const char *type, const char *key, const char *value)
{
    size_t lt = strlen(type), lk = strlen(key), lv = strlen(value);
    if (!selector_type_valid(type, lt, NULL, 0) || !selector_key_valid(key, lk, NULL, 0) ||
        !selector_value_valid(value, lv, NULL, 0))
        return -EINVAL;
    size_t total = lt + 1 + lk + 1 + lv;
    if (total + 1 > cap)
        return -E2BIG;
    memcpy(out, type, lt);
    out[lt] = ':';
    memcpy(out + lt + 1, key, lk);
    out[lt + 1 + lk] = ':';
    memcpy(out + lt + 1 + lk + 1, value, lv);
    out[total] = '\0';
    return (int)total;
}

void selector_set_clear(struct selector_set *set)
{
    set->n = 0;
    set->used = 0;
}

int selector_set_add(struct selector_set *set, const char *type, const char *key,
                     const char *value)
{
    if (set->n >= SELECTOR_SET_MAX)
        return -E2BIG;
    int len = selector_format(set->buf + set->used, sizeof(set->buf) - set->used, type, key, value);
    if (len < 0)
        return len;
    set->items[set->n++] = set->buf + set->used;
    set->used += (size_t)len + 1;
    return 0;
}

void selector_set_truncate(struct selector_set *set, size_t n)
{
    if (n >= set->n)
        return;
    /* Items are laid out in insertion order, so the buffer shrinks with them. */
    set->used = (size_t)(set->items[n] - set->buf);
    set->n = n;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void selector_set_sort(struct selector_set *set)
{
    if (set->n < 2)
        return;
    qsort(set->items, set->n, sizeof(set->items[0]), cmp_str);
    size_t w = 1;
    for (size_t r = 1; r < set->n; r++)
        if (strcmp(set->items[r], set->items[w - 1]) != 0)
            set->items[w++] = set->items[r];
    set->n = w;
}

bool selector_set_contains(const struct selector_set *set, const char *s)
{
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->items[i], s) == 0)
            return true;
    return false;
}
