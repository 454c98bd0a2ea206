#include "text.h"

#include <stdio.h>

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
