#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Eight bytes at a time: a byte per lane. */
#define TEXT_LANES(b) (0x0101010101010101u * (uint64_t)(b))

size_t text_utf8_seq(const unsigned char *s, size_t left, uint32_t *ret_cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
        if (ret_cp)
            *ret_cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    if (ret_cp)
        *ret_cp = cp;
    return n;
}

/* Whether every byte of x is printable ASCII (0x20..0x7e): none has the
 * high bit, none is below 0x20, none is 0x7f. The tests are exact as a
 * whole (a borrow only ever follows a lane that already failed). */
static bool text_lanes_printable(uint64_t x)
{
    uint64_t high = x & TEXT_LANES(0x80);
    uint64_t below = (x - TEXT_LANES(0x20)) & ~x & TEXT_LANES(0x80);
    uint64_t y = x ^ TEXT_LANES(0x7f);
    uint64_t del = (y - TEXT_LANES(0x01)) & ~y & TEXT_LANES(0x80);
    return (high | below | del) == 0;
}

size_t text_printable_span(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint64_t x;
        if (len - i >= sizeof(x)) {
            memcpy(&x, p + i, sizeof(x));
            if (text_lanes_printable(x)) {
                i += sizeof(x);
                continue;
            }
        } else if (len >= sizeof(x)) {
            /* The tail, as the last eight bytes: the ones before it
             * passed already. */
            memcpy(&x, p + len - sizeof(x), sizeof(x));
            if (text_lanes_printable(x))
                return len;
        }
        /* A byte at a time until the next word: at most eight bytes, or
         * one sequence past them. */
        size_t stop = i + sizeof(x) < len ? i + sizeof(x) : len;
        while (i < stop) {
            unsigned char c = p[i];
            if (c >= 0x20 && c < 0x7f) {
                i++;
                continue;
            }
            uint32_t cp;
            size_t n = c < 0x80 ? 0 : text_utf8_seq(p + i, len - i, &cp);
            /* C0 and DEL are ASCII; C1 is U+0080..U+009F. */
            if (n == 0 || (cp >= 0x80 && cp <= 0x9f))
                return i;
            i += n;
        }
    }
    return i;
}

const char *text_quote(char out[static TEXT_QUOTE_BUF], const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < TEXT_QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, TEXT_QUOTE_BUF - o, "\\x%02x", c);
    }
    if (len > TEXT_QUOTE_MAX)
        o += (size_t)snprintf(out + o, TEXT_QUOTE_BUF - o, "...");
    out[o] = '\0';
    return out;
}

void text_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}
