/* Text that comes from outside (workloads, operators, tokens) and goes to
 * people (messages, logs, terminals): UTF-8 decoding and safe quoting, in
 * one place so that every module draws the same line. */
#ifndef SOCKID_TEXT_H
#define SOCKID_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEXT_QUOTE_MAX 64u
#define TEXT_QUOTE_BUF (TEXT_QUOTE_MAX * 4u + 8u)

/* Length of the UTF-8 sequence at s (at most left bytes) and its code point
 * in *ret_cp (may be NULL); 0 when invalid: overlong forms, surrogates,
 * code points past U+10FFFF, truncated sequences. */
size_t text_utf8_seq(const unsigned char *s, size_t left, uint32_t *ret_cp);

/* How many bytes of s (len bytes) are UTF-8 text without control
 * characters (C0, DEL, C1), counted in whole sequences: len when all of it
 * is, else the offset of the first sequence that is invalid (text_utf8_seq
 * returns 0 there) or a control character. Printable ASCII, the usual
 * content, is checked eight bytes at a time. */
size_t text_printable_span(const char *s, size_t len);

/* s for a message: printable ASCII as is, anything else as \xNN, at most
 * TEXT_QUOTE_MAX bytes then "...", so a hostile value reaches a terminal as
 * text. Returns out. */
const char *text_quote(char out[static TEXT_QUOTE_BUF], const char *s, size_t len);

/* Formats a message into err (err_len bytes) for a caller that asked for
 * one: does nothing when err is NULL or err_len 0. The one way every module
 * writes its "what happened and what to do" messages. */
__attribute__((format(printf, 3, 4))) void text_err(char *err, size_t err_len, const char *fmt,
                                                    ...);

#endif
