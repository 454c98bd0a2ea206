/* UTF-8 decoding shared by libsockid and the sockid CLI, so that both agree
 * on what may reach a terminal as it is. Header-only: the CLI cannot see the
 * library's hidden symbols. */
#ifndef SOCKID_CLIENT_UTF8_H
#define SOCKID_CLIENT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns the length of the well-formed UTF-8 character at s (at most n
 * bytes) and stores its code point, or returns 0 for a malformed one:
 * overlong forms, surrogates, code points past U+10FFFF and cut sequences. */
static inline size_t utf8_decode(const uint8_t *s, size_t n, uint32_t *ret_cp)
{
    if (n == 0)
        return 0;
    uint8_t b = s[0];
    size_t len;
    uint32_t cp, min;
    if (b < 0x80) {
        *ret_cp = b;
        return 1;
    } else if ((b & 0xe0) == 0xc0) {
        len = 2, cp = b & 0x1fu, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, cp = b & 0x0fu, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        len = 4, cp = b & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    *ret_cp = cp;
    return len;
}

/* Characters a terminal acts on or that change how the text around them
 * reads: C0 and C1 controls, DEL, line and paragraph separators, and the
 * bidirectional overrides that can make one selector look like another. */
static inline bool utf8_is_unsafe(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

#endif
