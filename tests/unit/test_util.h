/* Helpers the unit tests share. Include after <cmocka.h>. */
#ifndef SOCKID_TEST_UTIL_H
#define SOCKID_TEST_UTIL_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A string of n copies of c (free it). */
static inline char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* Fails unless an error message names what it should. */
static inline void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not mention \"%s\"", haystack, needle);
}

/* s (len bytes) as C source would spell it, for failure messages; the
 * first 96 bytes at most. One static buffer: use one per message. */
static inline const char *esc(const char *s, size_t len)
{
    static char out[4 * 96 + 8];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 8 < sizeof(out); i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, sizeof(out) - o, "\\x%02x", c);
    }
    if (o + 8 >= sizeof(out))
        o += (size_t)snprintf(out + o, sizeof(out) - o, "...");
    out[o] = '\0';
    return out;
}

#endif
