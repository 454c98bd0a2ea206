/* Selectors (agent/selector.h): "type:key:value" and the set one workload
 * carries.
 *
 * Selectors come from attestors that read /proc, where a workload chooses its
 * executable's path and sometimes its cgroup names, and they are printed back
 * to operators by `sockid whoami` and `sockid entry list`. So the rules that
 * matter are the ones that keep a hostile value from being ambiguous or from
 * reaching a terminal as something other than text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "selector.h"
#include "text.h"

typedef bool (*part_fn)(const char *, size_t, char *, size_t);

struct bad_case {
    const char *s;
    size_t len;      /* 0: strlen(s) */
    const char *why; /* a word the error message must hold */
};

static void check_good(part_fn fn, const char *const *good, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char err[256] = "";
        if (!fn(good[i], strlen(good[i]), err, sizeof(err)))
            fail_msg("\"%s\" refused: %s", esc(good[i], strlen(good[i])), err);
    }
}

static void check_bad(part_fn fn, const struct bad_case *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].s);
        char err[256] = "";
        if (fn(bad[i].s, len, err, sizeof(err)))
            fail_msg("case %zu (\"%s\") accepted", i, esc(bad[i].s, len));
        assert_contains(err, bad[i].why);
        /* Without an error buffer the verdict is the same. */
        assert_false(fn(bad[i].s, len, NULL, 0));
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- parts ------------------------------------------------------------------ */

static void test_type_rules(void **state)
{
    (void)state;
    char *max = repeat('a', SOCKID_SELECTOR_TYPE_MAX);
    const char *good[] = {"unix", "k8s", "cgroup", "a", "user-unit", "x_1", "0", max};
    check_good(selector_type_valid, good, N(good));

    char *over = repeat('a', SOCKID_SELECTOR_TYPE_MAX + 1);
    const struct bad_case bad[] = {
        {"", 0, "empty"},         {over, 0, "longer"},
        {"Unix", 0, "lowercase"}, {"unix.v2", 0, "lowercase"},
        {"a b", 0, "lowercase"},  {"a:b", 0, "lowercase"},
        {"a/b", 0, "lowercase"},  {"\xc3\xa9", 0, "lowercase"},
        {"a\tb", 0, "lowercase"}, {"a\0b", 3, "lowercase"},
    };
    check_bad(selector_type_valid, bad, N(bad));
    /* The message says which part. */
    char err[128];
    assert_false(selector_type_valid("", 0, err, sizeof(err)));
    assert_contains(err, "type");
    assert_false(selector_type_valid(over, strlen(over), err, sizeof(err)));
    assert_contains(err, "32");
    free(max);
    free(over);
}

static void test_key_rules(void **state)
{
    (void)state;
    char *max = repeat('k', SOCKID_SELECTOR_KEY_MAX);
    const char *good[] = {"uid",
                          "pod-uid",
                          "supplementary_gid",
                          "memory,cpu",
                          "name=systemd",
                          "A/b.c",
                          "~!@#$%^&*()[]{}<>?|\\\"'`+=,;",
                          max};
    check_good(selector_key_valid, good, N(good));

    char *over = repeat('k', SOCKID_SELECTOR_KEY_MAX + 1);
    const struct bad_case bad[] = {
        {"", 0, "empty"},          {over, 0, "longer"},
        {"a:b", 0, "':'"},         {":", 0, "':'"},
        {"a b", 0, "printable"},   {"a\tb", 0, "printable"},
        {"a\nb", 0, "printable"},  {"\x1b[0m", 0, "printable"},
        {"a\x7f", 0, "printable"}, {"\xc3\xa9", 0, "printable"},
        {"a\0b", 3, "printable"},
    };
    check_bad(selector_key_valid, bad, N(bad));
    char err[128];
    assert_false(selector_key_valid("", 0, err, sizeof(err)));
    assert_contains(err, "key");
    assert_false(selector_key_valid(over, strlen(over), err, sizeof(err)));
    assert_contains(err, "64");
    free(max);
    free(over);
}

static void test_value_rules(void **state)
{
    (void)state;
    char *max = repeat('v', SOCKID_SELECTOR_VALUE_MAX);
    /* 1024 bytes of two-byte characters: the limit is in bytes. */
    char *max_mb = malloc(SOCKID_SELECTOR_VALUE_MAX + 1);
    assert_non_null(max_mb);
    for (size_t i = 0; i < SOCKID_SELECTOR_VALUE_MAX; i += 2) {
        max_mb[i] = '\xc3';
        max_mb[i + 1] = '\xa9';
    }
    max_mb[SOCKID_SELECTOR_VALUE_MAX] = '\0';
    const char *good[] = {
        "/usr/bin/nginx",
        "/system.slice/docker-abc.scope",
        "a:b:c", /* colons belong to the value */
        ":",
        " leading and trailing spaces ",
        "caf\xc3\xa9",      /* U+00E9, 2 bytes */
        "\xe2\x82\xac",     /* U+20AC, 3 bytes */
        "\xf0\x9d\x84\x9e", /* U+1D11E, 4 bytes */
        "\xe0\xa0\x80",     /* U+0800, smallest 3-byte form */
        "\xf0\x90\x80\x80", /* U+10000, smallest 4-byte form */
        "\xed\x9f\xbf",     /* U+D7FF, just below the surrogates */
        "\xee\x80\x80",     /* U+E000, just above them */
        "\xef\xbf\xbd",     /* U+FFFD */
        "\xf4\x8f\xbf\xbf", /* U+10FFFF, the last code point */
        "~",
        max,
        max_mb,
    };
    check_good(selector_value_valid, good, N(good));

    char *over = repeat('v', SOCKID_SELECTOR_VALUE_MAX + 1);
    const struct bad_case bad[] = {
        {"", 0, "empty"},
        {over, 0, "longer"},
        {"a\nb", 0, "control"},
        {"a\rb", 0, "control"},
        {"a\tb", 0, "control"},
        {"\x1b[31mred", 0, "control"},
        {"\x01", 0, "control"},
        {"a\x7f", 0, "control"},
        {"a\0b", 3, "control"},
        {"\xc0\xaf", 0, "UTF-8"},                 /* overlong '/' */
        {"\xc1\xbf", 0, "UTF-8"},                 /* overlong U+007F */
        {"\xe0\x80\xaf", 0, "UTF-8"},             /* overlong '/', 3 bytes */
        {"\xe0\x9f\xbf", 0, "UTF-8"},             /* overlong U+07FF */
        {"\xf0\x80\x80\xaf", 0, "UTF-8"},         /* overlong '/', 4 bytes */
        {"\xf0\x8f\xbf\xbf", 0, "UTF-8"},         /* overlong U+FFFF */
        {"\xed\xa0\x80", 0, "UTF-8"},             /* U+D800, a surrogate */
        {"\xed\xbf\xbf", 0, "UTF-8"},             /* U+DFFF */
        {"\xed\xa0\xbd\xed\xb2\xa9", 0, "UTF-8"}, /* CESU-8 pair */
        {"\xf4\x90\x80\x80", 0, "UTF-8"},         /* U+110000 */
        {"\xf5\x80\x80\x80", 0, "UTF-8"},
        {"\xf7\xbf\xbf\xbf", 0, "UTF-8"},
        {"\xf8\x88\x80\x80\x80", 0, "UTF-8"}, /* 5-byte form */
        {"\xe2\x82", 0, "UTF-8"},             /* truncated at the end */
        {"ab\xf0\x9d\x84", 0, "UTF-8"},
        {"\xc3", 0, "UTF-8"},
        {"\xe2\x82x", 0, "UTF-8"}, /* bad continuation byte */
        {"\xc3\xc3\xa9", 0, "UTF-8"},
        {"\x80", 0, "UTF-8"}, /* lone continuation byte */
        {"a\xbf", 0, "UTF-8"},
        {"\xfe", 0, "UTF-8"},
        {"\xff", 0, "UTF-8"},
    };
    check_bad(selector_value_valid, bad, N(bad));
    char err[128];
    assert_false(selector_value_valid("", 0, err, sizeof(err)));
    assert_contains(err, "value");
    assert_false(selector_value_valid(over, strlen(over), err, sizeof(err)));
    assert_contains(err, "1024");

    /* A multibyte character that would end one byte past the limit. */
    char *over_mb = malloc(SOCKID_SELECTOR_VALUE_MAX + 2);
    assert_non_null(over_mb);
    memset(over_mb, 'v', SOCKID_SELECTOR_VALUE_MAX - 1);
    over_mb[SOCKID_SELECTOR_VALUE_MAX - 1] = '\xc3';
    over_mb[SOCKID_SELECTOR_VALUE_MAX] = '\xa9';
    over_mb[SOCKID_SELECTOR_VALUE_MAX + 1] = '\0';
    assert_false(selector_value_valid(over_mb, SOCKID_SELECTOR_VALUE_MAX + 1, err, sizeof(err)));
    assert_contains(err, "longer");
    /* Cut at the limit, the same bytes are a truncated sequence. */
    assert_false(selector_value_valid(over_mb, SOCKID_SELECTOR_VALUE_MAX, err, sizeof(err)));
    assert_contains(err, "UTF-8");

    free(max);
    free(max_mb);
    free(over);
    free(over_mb);
}

static void test_value_c1_controls(void **state)
{
    (void)state;
    /* U+0080..U+009F are control characters too (Unicode category Cc), and
     * U+009B is CSI: a terminal that honours 8-bit controls runs what follows
     * as an escape sequence when an operator lists a workload's selectors. */
    const struct bad_case bad[] = {
        {"\xc2\x80", 0, "control"},
        {"\xc2\x85", 0, "control"}, /* NEL, a line break */
        {"\xc2\x9b"
         "2J",
         0, "control"},
        {"/usr/bin/\xc2\x9f", 0, "control"},
    };
    check_bad(selector_value_valid, bad, N(bad));
    /* U+00A0 is the first character past them. */
    const char *good[] = {"\xc2\xa0"};
    check_good(selector_value_valid, good, N(good));
}

static void test_small_error_buffer(void **state)
{
    (void)state;
    /* A short buffer gets a truncated, terminated message, never more. */
    char err[8];
    memset(err, 'Z', sizeof(err));
    assert_false(selector_value_valid("\xff", 1, err, 6));
    assert_int_equal(strlen(err), 5);
    assert_int_equal(err[6], 'Z');
    assert_false(selector_type_valid("", 0, err, 1));
    assert_int_equal(err[0], '\0');
}

/* ---- whole selectors -------------------------------------------------------- */

static bool valid_str(const char *s)
{
    return selector_valid(s, strlen(s), NULL, 0);
}

static void test_selector_valid(void **state)
{
    (void)state;
    assert_true(valid_str("unix:uid:0"));
    assert_true(valid_str("cgroup:unified:/system.slice/nginx.service"));
    assert_true(valid_str("unix:path:/opt/a:b"));
    assert_true(valid_str("k8s:pod-uid:0a1b2c3d-0000-1111-2222-333344445555"));
    assert_true(valid_str("x:y:::"));
    assert_true(valid_str("t:k:caf\xc3\xa9"));

    const struct bad_case bad[] = {
        {"", 0, "type:key:value"},
        {"unix", 0, "type:key:value"},
        {"unix:uid", 0, "type:key:value"},
        {"unix:uid:", 0, "value is empty"},
        {":uid:0", 0, "type is empty"},
        {"unix::0", 0, "key is empty"},
        {"::", 0, "empty"},
        {"Unix:uid:0", 0, "type"},
        {"unix:u id:0", 0, "key"},
        {"unix:uid:0\n", 0, "control"},
        {"unix:uid:\xc0\xb0", 0, "UTF-8"},
        /* Embedded NULs: a C consumer would see "unix:uid:0" only. */
        {"unix:uid:0\0:1", 13, "control"},
        {"unix\0:uid:0", 11, "type"},
        {"unix:ui\0d:0", 11, "key"},
        {"unix:uid\0:0", 11, "key"},
    };
    check_bad(selector_valid, bad, N(bad));

    /* A length shorter than the string is what counts. */
    assert_true(selector_valid("unix:uid:0 trailing", 10, NULL, 0));
    assert_false(selector_valid("unix:uid:0", 9, NULL, 0));

    /* The longest selector there can be is valid; one byte more is not. */
    char *t = repeat('t', SOCKID_SELECTOR_TYPE_MAX);
    char *k = repeat('k', SOCKID_SELECTOR_KEY_MAX);
    char *v = repeat('v', SOCKID_SELECTOR_VALUE_MAX + 1);
    char *s = malloc(SELECTOR_MAX_LEN + 2);
    assert_non_null(s);
    int n = snprintf(s, SELECTOR_MAX_LEN + 2, "%s:%s:%s", t, k, v);
    assert_int_equal(n, SELECTOR_MAX_LEN + 1);
    assert_true(selector_valid(s, SELECTOR_MAX_LEN, NULL, 0));
    char err[128];
    assert_false(selector_valid(s, SELECTOR_MAX_LEN + 1, err, sizeof(err)));
    assert_contains(err, "value");
    free(t);
    free(k);
    free(v);
    free(s);
}

/* ---- formatting ------------------------------------------------------------- */

static void test_format(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(selector_format(out, sizeof(out), "unix", "uid", "1000"), 13);
    assert_string_equal(out, "unix:uid:1000");

    /* Colons in the value stay in the value, and the result parses back. */
    int n = selector_format(out, sizeof(out), "unix", "path", "/opt/a:b:c");
    assert_int_equal(n, (int)strlen("unix:path:/opt/a:b:c"));
    assert_string_equal(out, "unix:path:/opt/a:b:c");
    assert_true(selector_valid(out, (size_t)n, NULL, 0));

    /* Exactly enough room (with the NUL), and one byte less. */
    char small[14];
    memset(small, 'Z', sizeof(small));
    assert_int_equal(selector_format(small, 14, "unix", "uid", "1000"), 13);
    assert_string_equal(small, "unix:uid:1000");
    assert_int_equal(selector_format(small, 13, "unix", "uid", "1000"), -E2BIG);
    assert_int_equal(selector_format(small, 0, "unix", "uid", "1000"), -E2BIG);

    /* Any invalid part. */
    assert_int_equal(selector_format(out, sizeof(out), "", "uid", "0"), -EINVAL);
    assert_int_equal(selector_format(out, sizeof(out), "Unix", "uid", "0"), -EINVAL);
    assert_int_equal(selector_format(out, sizeof(out), "unix", "u:id", "0"), -EINVAL);
    assert_int_equal(selector_format(out, sizeof(out), "unix", "", "0"), -EINVAL);
    assert_int_equal(selector_format(out, sizeof(out), "unix", "uid", ""), -EINVAL);
    assert_int_equal(selector_format(out, sizeof(out), "unix", "uid", "a\nb"), -EINVAL);
    assert_int_equal(selector_format(out, sizeof(out), "unix", "uid", "\xed\xa0\x80"), -EINVAL);
}

/* ---- sets ------------------------------------------------------------------- */

static struct selector_set *set_new(void)
{
    struct selector_set *set = malloc(sizeof(*set));
    assert_non_null(set);
    selector_set_clear(set);
    return set;
}

static void test_set_add_contains(void **state)
{
    (void)state;
    struct selector_set *set = set_new();
    assert_int_equal(set->n, 0);
    assert_false(selector_set_contains(set, "unix:uid:0"));
    assert_int_equal(selector_set_add(set, "unix", "uid", "0"), 0);
    assert_int_equal(selector_set_add(set, "unix", "path", "/bin/a:b"), 0);
    assert_int_equal(set->n, 2);
    assert_string_equal(set->items[0], "unix:uid:0");
    assert_string_equal(set->items[1], "unix:path:/bin/a:b");

    assert_true(selector_set_contains(set, "unix:uid:0"));
    assert_true(selector_set_contains(set, "unix:path:/bin/a:b"));
    /* Whole selectors only: no prefixes, no extensions, exact case. */
    assert_false(selector_set_contains(set, "unix:uid:"));
    assert_false(selector_set_contains(set, "unix:uid:00"));
    assert_false(selector_set_contains(set, "unix:path:/bin/a"));
    assert_false(selector_set_contains(set, "UNIX:uid:0"));
    assert_false(selector_set_contains(set, ""));

    /* An invalid part is refused and leaves the set as it was. */
    assert_int_equal(selector_set_add(set, "unix", "uid", "0\n"), -EINVAL);
    assert_int_equal(selector_set_add(set, "", "uid", "0"), -EINVAL);
    assert_int_equal(set->n, 2);
    assert_int_equal(selector_set_add(set, "unix", "gid", "0"), 0);
    assert_string_equal(set->items[2], "unix:gid:0");
    assert_string_equal(set->items[0], "unix:uid:0");

    selector_set_clear(set);
    assert_int_equal(set->n, 0);
    assert_false(selector_set_contains(set, "unix:uid:0"));
    free(set);
}

static void test_set_full_by_count(void **state)
{
    (void)state;
    struct selector_set *set = set_new();
    char v[16];
    for (unsigned i = 0; i < SELECTOR_SET_MAX; i++) {
        (void)snprintf(v, sizeof(v), "%u", i);
        assert_int_equal(selector_set_add(set, "t", "k", v), 0);
    }
    assert_int_equal(set->n, SELECTOR_SET_MAX);
    assert_int_equal(selector_set_add(set, "t", "k", "one-more"), -E2BIG);
    assert_int_equal(set->n, SELECTOR_SET_MAX);
    assert_false(selector_set_contains(set, "t:k:one-more"));
    assert_true(selector_set_contains(set, "t:k:0"));
    assert_true(selector_set_contains(set, "t:k:511"));
    free(set);
}

static void test_set_full_by_bytes(void **state)
{
    (void)state;
    /* Long selectors run out of bytes well before 512 of them. */
    struct selector_set *set = set_new();
    char *v = repeat('v', SOCKID_SELECTOR_VALUE_MAX);
    const size_t each = strlen("t:k:") + SOCKID_SELECTOR_VALUE_MAX + 1;
    const size_t fit = SELECTOR_SET_BYTES / each;
    int r = 0;
    size_t added = 0;
    for (size_t i = 0; i < fit + 2 && r == 0; i++) {
        v[0] = (char)('a' + i % 26);
        v[1] = (char)('a' + i / 26 % 26);
        r = selector_set_add(set, "t", "k", v);
        if (r == 0)
            added++;
    }
    assert_int_equal(r, -E2BIG);
    assert_int_equal(added, fit);
    assert_int_equal(set->n, fit);
    assert_true(set->used <= SELECTOR_SET_BYTES);
    /* What is in the set is intact. */
    for (size_t i = 0; i < set->n; i++)
        assert_int_equal(strlen(set->items[i]), each - 1);
    /* A short one still fits in what is left. */
    assert_int_equal(selector_set_add(set, "t", "k", "x"), 0);
    free(v);
    free(set);
}

static void test_set_truncate(void **state)
{
    (void)state;
    struct selector_set *set = set_new();
    assert_int_equal(selector_set_add(set, "good", "a", "1"), 0);
    size_t mark = set->n;
    /* An attestor emits two, then fails. */
    assert_int_equal(selector_set_add(set, "bad", "b", "2"), 0);
    assert_int_equal(selector_set_add(set, "bad", "c", "3"), 0);
    selector_set_truncate(set, mark);
    assert_int_equal(set->n, 1);
    assert_true(selector_set_contains(set, "good:a:1"));
    assert_false(selector_set_contains(set, "bad:b:2"));
    assert_false(selector_set_contains(set, "bad:c:3"));

    /* The space is reused, and what comes next is stored whole. */
    assert_int_equal(selector_set_add(set, "next", "d", "4"), 0);
    assert_int_equal(set->n, 2);
    assert_string_equal(set->items[1], "next:d:4");
    assert_string_equal(set->items[0], "good:a:1");

    /* Truncating to the current size or beyond changes nothing. */
    selector_set_truncate(set, 2);
    selector_set_truncate(set, 100);
    assert_int_equal(set->n, 2);
    assert_string_equal(set->items[1], "next:d:4");

    /* To zero. */
    selector_set_truncate(set, 0);
    assert_int_equal(set->n, 0);
    assert_int_equal(selector_set_add(set, "x", "y", "z"), 0);
    assert_string_equal(set->items[0], "x:y:z");

    /* A set emptied by truncation has its full byte budget again. */
    selector_set_clear(set);
    char *v = repeat('v', SOCKID_SELECTOR_VALUE_MAX);
    size_t n = 0;
    while (selector_set_add(set, "t", "k", v) == 0)
        n++;
    selector_set_truncate(set, 0);
    size_t again = 0;
    while (selector_set_add(set, "t", "k", v) == 0)
        again++;
    assert_int_equal(again, n);
    free(v);
    free(set);
}

static void test_set_sort_dedup(void **state)
{
    (void)state;
    struct selector_set *set = set_new();
    const char *in[][3] = {
        {"unix", "uid", "0"},          {"cgroup", "unified", "/a"}, {"unix", "uid", "0"},
        {"unix", "gid", "0"},          {"unix", "path", "/z"},      {"unix", "path", "/Z"},
        {"unix", "path", "/\xc3\xa9"}, {"cgroup", "unified", "/a"}, {"unix", "uid", "0"},
    };
    for (size_t i = 0; i < N(in); i++)
        assert_int_equal(selector_set_add(set, in[i][0], in[i][1], in[i][2]), 0);
    selector_set_sort(set);
    /* Bytewise: uppercase before lowercase, UTF-8 after ASCII. */
    const char *want[] = {"cgroup:unified:/a", "unix:gid:0",          "unix:path:/Z",
                          "unix:path:/z",      "unix:path:/\xc3\xa9", "unix:uid:0"};
    assert_int_equal(set->n, N(want));
    for (size_t i = 0; i < N(want); i++)
        assert_string_equal(set->items[i], want[i]);
    for (size_t i = 0; i < N(want); i++)
        assert_true(selector_set_contains(set, want[i]));

    /* Sorting again changes nothing; all duplicates collapse to one. */
    selector_set_sort(set);
    assert_int_equal(set->n, N(want));
    selector_set_clear(set);
    for (int i = 0; i < 5; i++)
        assert_int_equal(selector_set_add(set, "a", "b", "c"), 0);
    selector_set_sort(set);
    assert_int_equal(set->n, 1);
    assert_string_equal(set->items[0], "a:b:c");

    /* Empty and single sets are fine. */
    selector_set_clear(set);
    selector_set_sort(set);
    assert_int_equal(set->n, 0);
    free(set);
}

/* ---- the fast checks against a plain reference ------------------------------ */

/* The rules spelled out as plainly as possible, independently of the
 * agent's code (UTF-8 by RFC 3629's table of well-formed sequences): what
 * the checks, which take shortcuts for speed, must agree with. */
static size_t ref_utf8_len(const unsigned char *s, size_t left, uint32_t *cp)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    uint32_t v = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
    for (size_t i = 1; i < n; i++)
        v = v << 6 | (s[i] & 0x3f);
    *cp = v;
    return n;
}

/* The offset of the first sequence that is not UTF-8 text without
 * controls; len when there is none. */
static size_t ref_printable_span(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = ref_utf8_len(p + i, len - i, &cp);
        if (n == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return i;
        i += n;
    }
    return len;
}

static bool ref_type(const char *s, size_t len)
{
    if (len < 1 || len > SOCKID_SELECTOR_TYPE_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", s[i]) || s[i] == '\0')
            return false;
    return true;
}

static bool ref_key(const char *s, size_t len)
{
    if (len < 1 || len > SOCKID_SELECTOR_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e || s[i] == ':')
            return false;
    return true;
}

static bool ref_value(const char *s, size_t len)
{
    return len >= 1 && len <= SOCKID_SELECTOR_VALUE_MAX && ref_printable_span(s, len) == len;
}

static bool ref_selector(const char *s, size_t len)
{
    const char *c1 = memchr(s, ':', len);
    if (!c1)
        return false;
    const char *c2 = memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - s));
    if (!c2)
        return false;
    return ref_type(s, (size_t)(c1 - s)) && ref_key(c1 + 1, (size_t)(c2 - c1 - 1)) &&
           ref_value(c2 + 1, len - (size_t)(c2 + 1 - s));
}

static uint64_t rng = 0x5e1ec7045e1ec704u;
static uint32_t rnd(uint32_t below)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % below);
}

/* Appends a random piece: mostly what selectors are made of, and every
 * kind of byte and sequence the rules are about; only printable ones when
 * clean (so that many strings are valid, and the checks' success paths are
 * compared as well as their failures). */
static size_t rnd_piece(char *out, bool clean)
{
    static const char *const seqs[] = {
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9d\x84\x9e",
        "\xf4\x8f\xbf\xbf",
        "\xc2\xa0",
        "\xc2\x80",
        "\xc2\x9b",
        "\xc2\x9f",
        "\xc0\xaf",
        "\xc1\xbf",
        "\xe0\x80\xaf",
        "\xe0\x9f\xbf",
        "\xe0\xa0\x80",
        "\xed\x9f\xbf",
        "\xed\xa0\x80",
        "\xee\x80\x80",
        "\xf0\x8f\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf4\x90\x80\x80",
        "\xf5\x80\x80\x80",
        "\xe2\x82",
        "\xc3",
        "\x80",
        "\xbf",
        "\xfe",
        "\xff",
        "\x7f",
        "\x1b[",
        "\n",
        "\t",
        " ",
        ":",
        "::",
        "unix",
        "uid",
        "/usr/bin/app",
    };
    switch (clean ? 3 + rnd(5) : rnd(8)) {
    case 0: {
        const char *q = seqs[rnd(N(seqs))];
        memcpy(out, q, strlen(q));
        return strlen(q);
    }
    case 1:
        out[0] = (char)rnd(256); /* anything, NUL included */
        return 1;
    case 2:
        out[0] = ':';
        return 1;
    default:
        out[0] = (char)(0x20 + rnd(0x5f)); /* printable ASCII */
        return 1;
    }
}

/* A random string: often shaped like a selector, sometimes long. */
static size_t rnd_string(char *out, size_t cap)
{
    size_t len = 0;
    if (rnd(2)) {
        static const char *const types[] = {"unix", "k8s", "cgroup", "t_y-p3", "", "UNIX"};
        static const char *const keys[] = {"uid", "path", "pod-name", "a.b/c", "", "k y"};
        const char *t = types[rnd(N(types))], *k = keys[rnd(N(keys))];
        len = (size_t)snprintf(out, cap, "%s:%s:", t, k);
    }
    size_t pieces = rnd(4) == 0 ? 200 + rnd(400) : rnd(40);
    bool clean = rnd(2);
    for (size_t i = 0; i < pieces && len + 8 < cap; i++) {
        if (clean && rnd(4) == 0) {
            const char *q = rnd(2) ? "\xc3\xa9" : "\xf0\x9d\x84\x9e"; /* valid UTF-8 */
            memcpy(out + len, q, strlen(q));
            len += strlen(q);
            continue;
        }
        len += rnd_piece(out + len, clean && rnd(64) != 0);
    }
    return len;
}

/* The fast checks and the reference agree on random input, for the whole
 * selector, the value alone, and the span of printable text. */
static void test_fast_checks_match_reference(void **state)
{
    (void)state;
    char buf[2048];
    size_t accepted = 0;
    for (int iter = 0; iter < 300000; iter++) {
        size_t len = rnd_string(buf, sizeof(buf));
        bool want = ref_selector(buf, len);
        if (selector_valid(buf, len, NULL, 0) != want)
            fail_msg("selector_valid(\"%s\", %zu) is %d, the reference says %d", esc(buf, len), len,
                     !want, want);
        accepted += want;
        /* The value check on its own, from a random offset. */
        size_t off = len ? rnd((uint32_t)len) : 0;
        if (selector_value_valid(buf + off, len - off, NULL, 0) != ref_value(buf + off, len - off))
            fail_msg("selector_value_valid(\"%s\") disagrees with the reference",
                     esc(buf + off, len - off));
        size_t span = text_printable_span(buf + off, len - off);
        if (span != ref_printable_span(buf + off, len - off))
            fail_msg("text_printable_span(\"%s\", %zu) is %zu, the reference says %zu",
                     esc(buf + off, len - off), len - off, span,
                     ref_printable_span(buf + off, len - off));
    }
    print_message("reference: 300000 random strings, %zu valid selectors\n", accepted);
    assert_true(accepted > 20000); /* the test says something */
}

/* Every position of a bad byte in a long printable run: the eight-byte
 * steps and the overlapping tail find it wherever it is. */
static void test_printable_span_positions(void **state)
{
    (void)state;
    static const char *const bad[] = {"\x01", "\x7f", "\x80", "\xc2\x9b", "\xc3", "\xed\xa0\x80"};
    char buf[80];
    for (size_t len = 0; len < 40; len++) {
        memset(buf, 'a', len);
        assert_int_equal(text_printable_span(buf, len), len);
        for (size_t at = 0; at < len; at++) {
            for (size_t b = 0; b < N(bad); b++) {
                size_t bl = strlen(bad[b]);
                memset(buf, 'a', sizeof(buf));
                memcpy(buf + at, bad[b], bl);
                size_t n = len > at + bl ? len : at + bl;
                assert_int_equal(text_printable_span(buf, n), ref_printable_span(buf, n));
                assert_int_equal(text_printable_span(buf, n), at);
            }
            /* A two-byte character straddling the position. */
            memset(buf, 'a', sizeof(buf));
            memcpy(buf + at, "\xc3\xa9", 2);
            assert_int_equal(text_printable_span(buf, len + 1), ref_printable_span(buf, len + 1));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_rules),
        cmocka_unit_test(test_key_rules),
        cmocka_unit_test(test_value_rules),
        cmocka_unit_test(test_value_c1_controls),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_selector_valid),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_set_add_contains),
        cmocka_unit_test(test_set_full_by_count),
        cmocka_unit_test(test_set_full_by_bytes),
        cmocka_unit_test(test_set_truncate),
        cmocka_unit_test(test_set_sort_dedup),
        cmocka_unit_test(test_fast_checks_match_reference),
        cmocka_unit_test(test_printable_span_positions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
