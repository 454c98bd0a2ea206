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

/* What a byte may be: part of a type ([a-z0-9_-]), part of a key
 * (printable ASCII but space and ':'). A table, because every selector of
 * every stored entry is checked again at each start. */
enum { SEL_TYPE = 1, SEL_KEY = 2 };
static const unsigned char selector_class[256] = {
    [0x21 ... 0x2c] = SEL_KEY,
    ['-'] = SEL_KEY | SEL_TYPE,
    [0x2e ... 0x2f] = SEL_KEY,
    ['0' ... '9'] = SEL_KEY | SEL_TYPE,
    /* ':' ends a type or a key */
    [0x3b ... 0x5e] = SEL_KEY,
    ['_'] = SEL_KEY | SEL_TYPE,
    ['`'] = SEL_KEY,
    ['a' ... 'z'] = SEL_KEY | SEL_TYPE,
    [0x7b ... 0x7e] = SEL_KEY,
};

static bool selector_type_char(unsigned char c)
{
    return selector_class[c] & SEL_TYPE;
}

static bool selector_key_char(unsigned char c)
{
    return selector_class[c] & SEL_KEY;
}

bool selector_type_valid(const char *type, size_t len, char *err, size_t err_len)
{
    if (len == 0)
        return fail(err, err_len, "selector type is empty");
    if (len > SOCKID_SELECTOR_TYPE_MAX)
        return fail(err, err_len, "selector type is longer than 32 bytes");
    for (size_t i = 0; i < len; i++)
        if (!selector_type_char((unsigned char)type[i]))
            return fail(err, err_len,
                        "selector type may hold only lowercase letters, digits, '_' and '-'");
    return true;
}

bool selector_key_valid(const char *key, size_t len, char *err, size_t err_len)
{
    if (len == 0)
        return fail(err, err_len, "selector key is empty");
    if (len > SOCKID_SELECTOR_KEY_MAX)
        return fail(err, err_len, "selector key is longer than 64 bytes");
    for (size_t i = 0; i < len; i++)
        if (!selector_key_char((unsigned char)key[i]))
            return fail(err, err_len,
                        "selector key may hold only printable ASCII without spaces or ':'");
    return true;
}

bool selector_value_valid(const char *value, size_t len, char *err, size_t err_len)
{
    if (len == 0)
        return fail(err, err_len, "selector value is empty");
    if (len > SOCKID_SELECTOR_VALUE_MAX)
        return fail(err, err_len, "selector value is longer than 1024 bytes");
    /* No C0, DEL or C1 (U+009B alone starts a terminal escape sequence on
     * an operator's screen). */
    size_t ok = text_printable_span(value, len);
    if (ok == len)
        return true;
    if (text_utf8_seq((const unsigned char *)value + ok, len - ok, NULL) == 0)
        return fail(err, err_len, "selector value is not valid UTF-8");
    return fail(err, err_len, "selector value holds a control character");
}

/* The parts' checks in one pass, without messages: entries are checked
 * again at every start, so this runs for every selector of every stored
 * entry. A type or key ends at its first ':', as in selector_valid. */
static bool selector_valid_fast(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len && selector_type_char(p[i]))
        i++;
    if (i == 0 || i > SOCKID_SELECTOR_TYPE_MAX || i == len || p[i] != ':')
        return false;
    size_t key = ++i;
    while (i < len && selector_key_char(p[i]))
        i++;
    if (i == key || i - key > SOCKID_SELECTOR_KEY_MAX || i == len || p[i] != ':')
        return false;
    size_t value = ++i;
    return len - value >= 1 && len - value <= SOCKID_SELECTOR_VALUE_MAX &&
           text_printable_span(s + value, len - value) == len - value;
}

bool selector_valid(const char *s, size_t len, char *err, size_t err_len)
{
    if (selector_valid_fast(s, len))
        return true;
    /* Invalid: find which part, for the message. */
    const char *c1 = memchr(s, ':', len);
    if (!c1)
        return fail(err, err_len, "selector must be type:key:value (no ':' found)");
    const char *rest = c1 + 1;
    size_t rest_len = len - (size_t)(rest - s);
    const char *c2 = memchr(rest, ':', rest_len);
    if (!c2)
        return fail(err, err_len, "selector must be type:key:value (only one ':' found)");
    if (selector_type_valid(s, (size_t)(c1 - s), err, err_len) &&
        selector_key_valid(rest, (size_t)(c2 - rest), err, err_len) &&
        selector_value_valid(c2 + 1, len - (size_t)(c2 + 1 - s), err, err_len))
        return fail(err, err_len, "selector is not valid"); /* unreachable: the passes agree */
    return false;
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

int selector_set_add(struct selector_set *set, const char *type, const char *key, const char *value)
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
