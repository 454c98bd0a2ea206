/* Registration entries (agent/entries.h): validation, the model, snapshots,
 * matching and publication.
 *
 * Operators read the validation messages, so every refusal is checked for
 * the words that name the problem and its limit. Matching is checked against
 * a brute-force reference on thousands of random entries, and derived
 * snapshots against snapshots rebuilt from scratch. The registry is checked
 * under AddressSanitizer for a reader holding a snapshot the registry has
 * let go of, and with threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_util.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "entries.h"

#define TD          "example.org"
#define DEFAULT_TTL 300u
#define MAX_TTL     86400u
#define N(a)        (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---------------------------------------------------------------- */

struct vcase {
    const char *s;
    size_t len;       /* 0: strlen(s) */
    const char *why;  /* NULL: valid; else a word the message must hold */
    const char *why2; /* a second word, or NULL */
};

/* splitmix64: reproducible randomness for the reference tests. */
static uint64_t rng_state = 0x5eed5eed5eed5eedu;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}
static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* Builds through entry_new with explicit lengths. */
static int make(const char *spiffe, const char *const *sels, size_t n, uint32_t ttl,
                const char *const *auds, size_t na, const char *hint, struct entry **ret, char *err,
                size_t err_len)
{
    size_t sl[64], al[64];
    assert_true(n <= N(sl) && na <= N(al));
    for (size_t i = 0; i < n; i++)
        sl[i] = strlen(sels[i]);
    for (size_t i = 0; i < na; i++)
        al[i] = strlen(auds[i]);
    struct entry_spec spec = {
        .spiffe_id = spiffe,
        .spiffe_id_len = strlen(spiffe),
        .selectors = sels,
        .selector_lens = sl,
        .n_selectors = n,
        .ttl = ttl,
        .audiences = auds,
        .audience_lens = al,
        .n_audiences = na,
        .hint = hint,
        .hint_len = hint ? strlen(hint) : 0,
    };
    return entry_new(&spec, TD, DEFAULT_TTL, MAX_TTL, ret, err, err_len);
}

/* An entry_new that must fail with -EINVAL and a message holding why. */
static void refuse(const char *spiffe, const char *const *sels, size_t n, uint32_t ttl,
                   const char *const *auds, size_t na, const char *hint, const char *why)
{
    char err[512] = "";
    struct entry *e = NULL;
    int r = make(spiffe, sels, n, ttl, auds, na, hint, &e, err, sizeof(err));
    if (r != -EINVAL) {
        e = entry_unref(e);
        fail_msg("expected -EINVAL for \"%s\", got %d", why, r);
    }
    assert_null(e);
    assert_contains(err, why);
}

static void set_add_str(struct selector_set *set, const char *s)
{
    char buf[SELECTOR_MAX_LEN + 1];
    assert_true(strlen(s) < sizeof(buf));
    strcpy(buf, s);
    char *c1 = strchr(buf, ':');
    assert_non_null(c1);
    *c1 = '\0';
    char *c2 = strchr(c1 + 1, ':');
    assert_non_null(c2);
    *c2 = '\0';
    assert_int_equal(selector_set_add(set, buf, c1 + 1, c2 + 1), 0);
}

static struct selector_set *set_new(const char *const *sels, size_t n)
{
    struct selector_set *set = malloc(sizeof(*set));
    assert_non_null(set);
    selector_set_clear(set);
    for (size_t i = 0; i < n; i++)
        set_add_str(set, sels[i]);
    selector_set_sort(set);
    return set;
}

static const char *const ONE_SEL[] = {"unix:uid:1000"};

/* ---- validation tables ------------------------------------------------------- */

static void test_trust_domain_rules(void **state)
{
    (void)state;
    char *max = repeat('a', TRUST_DOMAIN_MAX);
    char *over = repeat('a', TRUST_DOMAIN_MAX + 1);
    const struct vcase cases[] = {
        {"example.org", 0, NULL, NULL},
        {"a", 0, NULL, NULL},
        {"prod-1.corp_x.example", 0, NULL, NULL},
        {"0.0", 0, NULL, NULL},
        {max, 0, NULL, NULL},
        {"", 0, "trust domain", "empty"},
        {over, 0, "trust domain", "255"},
        {"Example.org", 0, "lowercase", "byte 0"},
        {"example.org:443", 0, "lowercase", "':'"},
        {"exa mple", 0, "lowercase", NULL},
        {"a/b", 0, "lowercase", NULL},
        {"caf\xc3\xa9", 0, "lowercase", "\\xc3"},
        {"a\0b", 3, "lowercase", "\\x00"},
        {"user@example.org", 0, "lowercase", NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
        char err[512] = "";
        bool ok = entries_trust_domain_valid(cases[i].s, len, err, sizeof(err));
        if (ok != !cases[i].why)
            fail_msg("trust domain case %zu (\"%s\"): %s", i, esc(cases[i].s, len),
                     ok ? "accepted" : err);
        if (cases[i].why) {
            assert_contains(err, cases[i].why);
            if (cases[i].why2)
                assert_contains(err, cases[i].why2);
            assert_false(entries_trust_domain_valid(cases[i].s, len, NULL, 0));
        }
    }
    free(max);
    free(over);
}

static void test_spiffe_id_rules(void **state)
{
    (void)state;
    /* Exactly 2048 bytes, and one more. */
    char *max = repeat('a', SPIFFE_ID_MAX);
    memcpy(max, "spiffe://example.org/", 21);
    char *over = repeat('a', SPIFFE_ID_MAX + 1);
    memcpy(over, "spiffe://example.org/", 21);
    const struct vcase cases[] = {
        {"spiffe://example.org/a", 0, NULL, NULL},
        {"spiffe://example.org/ns/prod/sa/web", 0, NULL, NULL},
        {"spiffe://example.org/Web-Front_end.v2", 0, NULL, NULL},
        {"spiffe://example.org/.hidden/a..b/...", 0, NULL, NULL},
        {max, 0, NULL, NULL},
        {"", 0, "empty", NULL},
        {over, 0, "2048", "2049"},
        {"SPIFFE://example.org/a", 0, "lowercase", "spiffe://"},
        {"Spiffe://example.org/a", 0, "lowercase", NULL},
        {"https://example.org/a", 0, "spiffe://", NULL},
        {"spiffe:/example.org/a", 0, "spiffe://", NULL},
        {"spiffe", 0, "spiffe://", NULL},
        {"spiffe://example.org", 0, "no path", NULL},
        {"spiffe://example.org/", 0, "no path", NULL},
        {"spiffe://example.org/a/", 0, "trailing slash", NULL},
        {"spiffe://example.org//a", 0, "empty segment", NULL},
        {"spiffe://example.org/a//b", 0, "empty segment", NULL},
        {"spiffe://example.org/./a", 0, "'.' segment", NULL},
        {"spiffe://example.org/a/.", 0, "'.' segment", NULL},
        {"spiffe://example.org/a/../b", 0, "'..'", NULL},
        {"spiffe://example.org/..", 0, "'..'", NULL},
        {"spiffe://example.org/a?b=c", 0, "query", NULL},
        {"spiffe://example.org/a#frag", 0, "fragment", NULL},
        {"spiffe://example.org/a%2Fb", 0, "percent", NULL},
        {"spiffe://user@example.org/a", 0, "userinfo", NULL},
        {"spiffe://example.org:8443/a", 0, "port", NULL},
        {"spiffe://other.org/a", 0, "other.org", "example.org"},
        {"spiffe://example.org.evil/a", 0, "not the agent's trust domain", NULL},
        {"spiffe://example.or/a", 0, "not the agent's trust domain", NULL},
        {"spiffe:///a", 0, "trust domain", "empty"},
        {"spiffe://Example.org/a", 0, "trust domain", "lowercase"},
        {"spiffe://exa mple.org/a", 0, "trust domain", NULL},
        {"spiffe://example.org/a b", 0, "letters, digits", "' '"},
        {"spiffe://example.org/a:b", 0, "letters, digits", "':'"},
        {"spiffe://example.org/caf\xc3\xa9", 0, "letters, digits", "\\xc3"},
        {"spiffe://example.org/a\x1b[0m", 0, "letters, digits", "\\x1b"},
        {"spiffe://example.org/a\0b", 24, "NUL", NULL},
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
        char err[512] = "";
        bool ok = entries_spiffe_id_valid(cases[i].s, len, TD, err, sizeof(err));
        if (ok != !cases[i].why)
            fail_msg("SPIFFE ID case %zu (\"%s\"): %s", i, esc(cases[i].s, len),
                     ok ? "accepted" : err);
        if (cases[i].why) {
            assert_contains(err, "SPIFFE ID");
            assert_contains(err, cases[i].why);
            if (cases[i].why2)
                assert_contains(err, cases[i].why2);
            assert_false(entries_spiffe_id_valid(cases[i].s, len, TD, NULL, 0));
        }
    }
    /* A trust domain of NULL accepts any valid one (entries loaded after
     * the trust domain was reconfigured). */
    assert_true(entries_spiffe_id_valid("spiffe://other.org/a", 20, NULL, NULL, 0));
    assert_false(entries_spiffe_id_valid("spiffe://Other.org/a", 20, NULL, NULL, 0));
    /* A tiny error buffer is truncated, never overrun. */
    char tiny[8];
    assert_false(entries_spiffe_id_valid("spiffe://other.org/a", 20, TD, tiny, sizeof(tiny)));
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    free(max);
    free(over);
}

static void test_audience_rules(void **state)
{
    (void)state;
    char *max = repeat('a', ENTRY_AUDIENCE_MAX);
    char *over = repeat('a', ENTRY_AUDIENCE_MAX + 1);
    const struct vcase cases[] = {
        {"a", 0, NULL, NULL},
        {"https://api.example.org/v1?x=1#y", 0, NULL, NULL},
        {"~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./", 0, NULL, NULL},
        {max, 0, NULL, NULL},
        {"", 0, "audience", "empty"},
        {over, 0, "audience", "256"},
        {"a b", 0, "without spaces", "' '"},
        {"a\tb", 0, "printable ASCII", "\\x09"},
        {"a\x7f", 0, "printable ASCII", "\\x7f"},
        {"caf\xc3\xa9", 0, "printable ASCII", NULL},
        {"a\0b", 3, "printable ASCII", "\\x00"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].s);
        char err[512] = "";
        bool ok = entries_audience_valid(cases[i].s, len, err, sizeof(err));
        if (ok != !cases[i].why)
            fail_msg("audience case %zu (\"%s\"): %s", i, esc(cases[i].s, len),
                     ok ? "accepted" : err);
        if (cases[i].why) {
            assert_contains(err, cases[i].why);
            if (cases[i].why2)
                assert_contains(err, cases[i].why2);
        }
    }
    free(max);
    free(over);
}

static void test_id_rules(void **state)
{
    (void)state;
    assert_true(entries_id_valid("0123456789abcdef0123456789abcdef", 32));
    assert_false(entries_id_valid("0123456789ABCDEF0123456789abcdef", 32));
    assert_false(entries_id_valid("0123456789abcdef0123456789abcde", 31));
    assert_false(entries_id_valid("0123456789abcdef0123456789abcdef0", 33));
    assert_false(entries_id_valid("0123456789abcdef0123456789abcdeg", 32));
    assert_false(entries_id_valid("0123456789abcdef\0"
                                  "123456789abcdef",
                                  32));
    assert_false(entries_id_valid("", 0));
    assert_false(entries_id_valid(NULL, 32));
}

/* ---- entry_new ------------------------------------------------------------------ */

static void test_entry_new_good(void **state)
{
    (void)state;
    const char *sels[] = {"unix:uid:1000", "cgroup:unified:/a:b", "unix:uid:1000", "k8s:pod-uid:x"};
    const char *auds[] = {"zeta", "alpha", "zeta"};
    char err[512] = "";
    struct entry *e = NULL, *f = NULL;
    assert_int_equal(make("spiffe://example.org/web", sels, N(sels), 0, auds, N(auds),
                          "web front end \xe2\x80\x94 caf\xc3\xa9", &e, err, sizeof(err)),
                     0);
    assert_int_equal(atomic_load(&e->refs), 1);
    assert_true(entries_id_valid(e->id, strlen(e->id)));
    assert_string_equal(e->spiffe_id, "spiffe://example.org/web");
    /* Duplicates folded, sorted bytewise. */
    assert_int_equal(e->n_selectors, 3);
    assert_string_equal(e->selectors[0], "cgroup:unified:/a:b");
    assert_string_equal(e->selectors[1], "k8s:pod-uid:x");
    assert_string_equal(e->selectors[2], "unix:uid:1000");
    assert_int_equal(e->n_audiences, 2);
    assert_string_equal(e->audiences[0], "alpha");
    assert_string_equal(e->audiences[1], "zeta");
    assert_int_equal(e->ttl, DEFAULT_TTL);
    assert_int_equal(e->revision, 1);
    int64_t now = (int64_t)time(NULL);
    assert_true(e->created_at <= now && e->created_at >= now - 5);
    assert_non_null(e->hint);

    /* Fresh ids; no audiences, no hint; an empty hint is none. */
    assert_int_equal(
        make("spiffe://example.org/web", sels, 1, MAX_TTL, NULL, 0, "", &f, err, sizeof(err)), 0);
    assert_string_not_equal(e->id, f->id);
    assert_int_equal(f->ttl, MAX_TTL);
    assert_int_equal(f->n_audiences, 0);
    assert_null(f->hint);

    /* References. */
    assert_ptr_equal(entry_ref(e), e);
    assert_int_equal(atomic_load(&e->refs), 2);
    assert_null(entry_unref(e));
    assert_null(entry_unref(e));
    assert_null(entry_unref(f));
    assert_null(entry_unref(NULL));
}

static void test_entry_selector_limits(void **state)
{
    (void)state;
    char buf[40][32];
    const char *sels[40];
    for (size_t i = 0; i < N(sels); i++) {
        (void)snprintf(buf[i], sizeof(buf[i]), "unix:gid:%zu", i);
        sels[i] = buf[i];
    }
    struct entry *e = NULL;
    char err[512];
    /* 32 is the limit, 33 is one too many. */
    assert_int_equal(
        make("spiffe://example.org/a", sels, 32, 0, NULL, 0, NULL, &e, err, sizeof(err)), 0);
    assert_int_equal(e->n_selectors, 32);
    e = entry_unref(e);
    refuse("spiffe://example.org/a", sels, 33, 0, NULL, 0, NULL,
           "an entry has at most 32 selectors, got 33");
    refuse("spiffe://example.org/a", sels, 0, 0, NULL, 0, NULL, "at least 1 selector");

    /* Each part's own limit, and which selector. */
    char *long_value = repeat('v', 7 + SOCKID_SELECTOR_VALUE_MAX + 1);
    memcpy(long_value, "unix:p:", 7);
    const struct {
        const char *sel;
        const char *why;
    } bad[] = {
        {"unix::1000", "key is empty"},  {":uid:1", "type is empty"},
        {"unix:uid:", "value is empty"}, {"unix", "type:key:value"},
        {"unix:uid", "type:key:value"},  {"Unix:uid:1", "lowercase"},
        {"unix:u id:1", "key"},          {"unix:uid:a\nb", "control"},
        {"unix:uid:\xff", "UTF-8"},      {long_value, "1024"},
    };
    for (size_t i = 0; i < N(bad); i++) {
        const char *two[] = {"unix:gid:1", bad[i].sel};
        refuse("spiffe://example.org/a", two, 2, 0, NULL, 0, NULL, bad[i].why);
        refuse("spiffe://example.org/a", two, 2, 0, NULL, 0, NULL, "selector 2 of 2");
    }
    free(long_value);

    /* An embedded NUL is refused, not truncated. */
    const char *nul[] = {"unix:uid:1\0"
                         "000"};
    size_t nul_len[] = {14};
    struct entry_spec spec = {.spiffe_id = "spiffe://example.org/a",
                              .spiffe_id_len = 22,
                              .selectors = nul,
                              .selector_lens = nul_len,
                              .n_selectors = 1};
    assert_int_equal(entry_new(&spec, TD, DEFAULT_TTL, MAX_TTL, &e, err, sizeof(err)), -EINVAL);
    assert_contains(err, "control");
}

static void test_entry_field_limits(void **state)
{
    (void)state;
    /* SPIFFE ID limits through entry_new. */
    char *over = repeat('a', SPIFFE_ID_MAX + 1);
    memcpy(over, "spiffe://example.org/", 21);
    refuse(over, ONE_SEL, 1, 0, NULL, 0, NULL, "more than the limit of 2048");
    free(over);
    refuse("spiffe://other.org/a", ONE_SEL, 1, 0, NULL, 0, NULL,
           "SPIFFE ID's trust domain 'other.org' is not the agent's trust domain 'example.org'");
    refuse("spiffe://example.org/a/../b", ONE_SEL, 1, 0, NULL, 0, NULL, "'..'");

    /* TTL. */
    refuse("spiffe://example.org/a", ONE_SEL, 1, MAX_TTL + 1, NULL, 0, NULL, "86400");
    refuse("spiffe://example.org/a", ONE_SEL, 1, MAX_TTL + 1, NULL, 0, NULL, "max_ttl");
    refuse("spiffe://example.org/a", ONE_SEL, 1, UINT32_MAX, NULL, 0, NULL, "max_ttl");
    struct entry *e = NULL;
    char err[512];
    assert_int_equal(
        make("spiffe://example.org/a", ONE_SEL, 1, 1, NULL, 0, NULL, &e, err, sizeof(err)), 0);
    assert_int_equal(e->ttl, 1);
    e = entry_unref(e);

    /* Audiences. */
    const char *auds[17];
    char abuf[17][8];
    for (size_t i = 0; i < 17; i++) {
        (void)snprintf(abuf[i], sizeof(abuf[i]), "aud%zu", i);
        auds[i] = abuf[i];
    }
    assert_int_equal(
        make("spiffe://example.org/a", ONE_SEL, 1, 0, auds, 16, NULL, &e, err, sizeof(err)), 0);
    assert_int_equal(e->n_audiences, 16);
    e = entry_unref(e);
    refuse("spiffe://example.org/a", ONE_SEL, 1, 0, auds, 17, NULL,
           "an entry has at most 16 audiences, got 17");
    char *long_aud = repeat('a', ENTRY_AUDIENCE_MAX + 1);
    const char *bad_auds[] = {"ok", long_aud};
    refuse("spiffe://example.org/a", ONE_SEL, 1, 0, bad_auds, 2, NULL, "256");
    refuse("spiffe://example.org/a", ONE_SEL, 1, 0, bad_auds, 2, NULL, "audience 2 of 2");
    free(long_aud);
    const char *space_aud[] = {"a b"};
    refuse("spiffe://example.org/a", ONE_SEL, 1, 0, space_aud, 1, NULL, "without spaces");

    /* Hints. */
    char *hint_max = repeat('h', ENTRY_HINT_MAX);
    char *hint_over = repeat('h', ENTRY_HINT_MAX + 1);
    const struct vcase hints[] = {
        {"web", 0, NULL, NULL},
        {"caf\xc3\xa9 \xe2\x98\x95 \xf0\x9f\x94\x91", 0, NULL, NULL},
        {hint_max, 0, NULL, NULL},
        {hint_over, 0, "hint", "256"},
        {"a\nb", 0, "hint", "control"},
        {"a\x1b[31m", 0, "hint", "control"},
        {"a\x7f", 0, "hint", "control"},
        {"a\xc2\x9b"
         "31m",
         0, "hint", "control"}, /* C1 CSI */
        {"a\xff", 0, "hint", "UTF-8"},
        {"a\xc0\xaf", 0, "hint", "UTF-8"},         /* overlong '/' */
        {"a\xed\xa0\x80", 0, "hint", "UTF-8"},     /* surrogate */
        {"a\xe2\x82", 0, "hint", "UTF-8"},         /* truncated */
        {"a\xf4\x90\x80\x80", 0, "hint", "UTF-8"}, /* past U+10FFFF */
    };
    for (size_t i = 0; i < N(hints); i++) {
        if (!hints[i].why) {
            assert_int_equal(make("spiffe://example.org/a", ONE_SEL, 1, 0, NULL, 0, hints[i].s, &e,
                                  err, sizeof(err)),
                             0);
            assert_string_equal(e->hint, hints[i].s);
            e = entry_unref(e);
            continue;
        }
        refuse("spiffe://example.org/a", ONE_SEL, 1, 0, NULL, 0, hints[i].s, hints[i].why);
        refuse("spiffe://example.org/a", ONE_SEL, 1, 0, NULL, 0, hints[i].s, hints[i].why2);
    }
    free(hint_max);
    free(hint_over);
}

static void test_entry_from_parts(void **state)
{
    (void)state;
    const char *sels[] = {"unix:uid:1", "unix:gid:1", "unix:uid:1"};
    const char *auds[] = {"b", "a"};
    struct entry *e = NULL;
    char err[512] = "";
    /* Another trust domain loads: the agent's may have been reconfigured. */
    assert_int_equal(entry_from_parts("0123456789abcdef0123456789abcdef", "spiffe://other.org/x",
                                      sels, N(sels), 60, auds, N(auds), "h", 1234, 7, &e, err,
                                      sizeof(err)),
                     0);
    assert_string_equal(e->id, "0123456789abcdef0123456789abcdef");
    assert_int_equal(e->n_selectors, 2);
    assert_string_equal(e->selectors[0], "unix:gid:1");
    assert_string_equal(e->audiences[0], "a");
    assert_int_equal(e->created_at, 1234);
    assert_int_equal(e->revision, 7);
    assert_int_equal(e->ttl, 60);
    e = entry_unref(e);

    assert_int_equal(entry_from_parts("0123456789ABCDEF0123456789abcdef", "spiffe://a/x", sels, 1,
                                      60, NULL, 0, NULL, 0, 1, &e, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "32 lowercase hex");
    assert_int_equal(entry_from_parts("0123456789abcdef0123456789abcdef0", "spiffe://a/x", sels, 1,
                                      60, NULL, 0, NULL, 0, 1, &e, err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(entry_from_parts("0123456789abcdef0123456789abcdef", "spiffe://a/x/", sels, 1,
                                      60, NULL, 0, NULL, 0, 1, &e, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "trailing slash");
    assert_int_equal(entry_from_parts("0123456789abcdef0123456789abcdef", "spiffe://a/x", sels, 1,
                                      0, NULL, 0, NULL, 0, 1, &e, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "ttl");
    const char *bad[] = {"unix::1"};
    assert_int_equal(entry_from_parts("0123456789abcdef0123456789abcdef", "spiffe://a/x", bad, 1,
                                      60, NULL, 0, NULL, 0, 1, &e, err, sizeof(err)),
                     -EINVAL);
    assert_contains(err, "key is empty");
    assert_null(e);
}

static struct entry *parts(const char *id, const char *spiffe, const char *const *sels, size_t n,
                           int64_t created_at)
{
    struct entry *e = NULL;
    char err[512] = "";
    if (entry_from_parts(id, spiffe, sels, n, 60, NULL, 0, NULL, created_at, 1, &e, err,
                         sizeof(err)) != 0)
        fail_msg("entry_from_parts: %s", err);
    return e;
}

static void test_entry_order_and_identity(void **state)
{
    (void)state;
    const char *s1[] = {"unix:uid:1", "unix:gid:2"};
    const char *s2[] = {"unix:gid:2", "unix:uid:1", "unix:gid:2"};
    const char *s3[] = {"unix:uid:1"};
    struct entry *a = parts("00000000000000000000000000000002", "spiffe://t/a", s1, 2, 10);
    struct entry *b = parts("00000000000000000000000000000001", "spiffe://t/a", s2, 3, 10);
    struct entry *c = parts("00000000000000000000000000000000", "spiffe://t/a", s3, 1, 11);
    struct entry *d = parts("00000000000000000000000000000003", "spiffe://t/b", s1, 2, 9);
    /* Oldest first; the id breaks a tie. */
    assert_true(entry_cmp(d, a) < 0);
    assert_true(entry_cmp(b, a) < 0);
    assert_true(entry_cmp(a, c) < 0);
    assert_int_equal(entry_cmp(a, a), 0);
    assert_true(entry_same_identity(a, b));
    assert_false(entry_same_identity(a, c));
    assert_false(entry_same_identity(a, d));

    struct entry *all[] = {c, a, d, b};
    struct entries_snapshot *s = NULL;
    assert_int_equal(entries_snapshot_new(all, N(all), &s), 0);
    assert_int_equal(entries_snapshot_count(s), 4);
    assert_ptr_equal(entries_snapshot_at(s, 0), d);
    assert_ptr_equal(entries_snapshot_at(s, 1), b);
    assert_ptr_equal(entries_snapshot_at(s, 2), a);
    assert_ptr_equal(entries_snapshot_at(s, 3), c);
    assert_null(entries_snapshot_at(s, 4));
    assert_ptr_equal(entries_snapshot_find(s, a->id), a);
    assert_ptr_equal(entries_snapshot_find(s, c->id), c);
    assert_null(entries_snapshot_find(s, "ffffffffffffffffffffffffffffffff"));
    assert_null(entries_snapshot_find(s, ""));
    const struct entry *same = entries_snapshot_find_identity(s, a);
    assert_true(same == a || same == b);
    assert_ptr_equal(entries_snapshot_find_identity(s, c), c);
    assert_ptr_equal(entries_snapshot_find_identity(s, d), d);
    const char *s4[] = {"unix:uid:1", "unix:gid:3"};
    struct entry *x = parts("00000000000000000000000000000009", "spiffe://t/a", s4, 2, 1);
    assert_null(entries_snapshot_find_identity(s, x));
    struct entry *y = parts("00000000000000000000000000000008", "spiffe://t/c", s3, 1, 1);
    assert_null(entries_snapshot_find_identity(s, y));

    /* The snapshot holds its own references. */
    assert_int_equal(atomic_load(&a->refs), 2);
    struct entry *dup_id[] = {a, x, a};
    struct entries_snapshot *bad = NULL;
    assert_int_equal(entries_snapshot_new(dup_id, N(dup_id), &bad), -EEXIST);
    assert_null(bad);
    assert_int_equal(atomic_load(&a->refs), 2);

    /* Derive: add, remove, replace, and the refusals. */
    struct entries_snapshot *s2p = NULL;
    assert_int_equal(entries_snapshot_derive(s, x, NULL, &s2p), 0);
    assert_ptr_equal(entries_snapshot_at(s2p, 0), x);
    assert_int_equal(entries_snapshot_count(s2p), 5);
    assert_int_equal(entries_snapshot_derive(s, x, x->id, &bad), -ENOENT);
    assert_int_equal(entries_snapshot_derive(s, a, NULL, &bad), -EEXIST);
    struct entries_snapshot *s3p = NULL;
    assert_int_equal(entries_snapshot_derive(s2p, NULL, a->id, &s3p), 0);
    assert_int_equal(entries_snapshot_count(s3p), 4);
    assert_null(entries_snapshot_find(s3p, a->id));
    assert_ptr_equal(entries_snapshot_find_identity(s3p, a), b);
    struct entries_snapshot *empty = NULL;
    assert_int_equal(entries_snapshot_new(NULL, 0, &empty), 0);
    assert_int_equal(entries_snapshot_count(empty), 0);
    assert_null(entries_snapshot_find_identity(empty, a));
    struct entries_snapshot *one = NULL;
    assert_int_equal(entries_snapshot_derive(empty, y, NULL, &one), 0);
    assert_ptr_equal(entries_snapshot_at(one, 0), y);

    s = entries_snapshot_unref(s);
    s2p = entries_snapshot_unref(s2p);
    s3p = entries_snapshot_unref(s3p);
    empty = entries_snapshot_unref(empty);
    one = entries_snapshot_unref(one);
    assert_int_equal(atomic_load(&a->refs), 1);
    entry_unref(a);
    entry_unref(b);
    entry_unref(c);
    entry_unref(d);
    entry_unref(x);
    entry_unref(y);
}

/* ---- matching ------------------------------------------------------------------ */

static void test_match_basic(void **state)
{
    (void)state;
    const char *s1[] = {"unix:uid:1000"};
    const char *s2[] = {"unix:uid:1000", "unix:path:/usr/bin/app"};
    const char *s3[] = {"unix:uid:1000", "unix:path:/usr/bin/other"};
    const char *s4[] = {"cgroup:unified:/x", "unix:gid:5"};
    struct entry *v[] = {
        parts("000000000000000000000000000000a3", "spiffe://t/a3", s3, 1, 5),
        parts("000000000000000000000000000000a2", "spiffe://t/a2", s2, 2, 7),
        parts("000000000000000000000000000000a1", "spiffe://t/a1", s1, 1, 7),
        parts("000000000000000000000000000000a4", "spiffe://t/a4", s3, 2, 1),
        parts("000000000000000000000000000000a5", "spiffe://t/a5", s4, 2, 1),
    };
    struct entries_snapshot *s = NULL;
    assert_int_equal(entries_snapshot_new(v, N(v), &s), 0);
    const char *w[] = {"unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/app"};
    struct selector_set *set = set_new(w, N(w));
    const struct entry *out[8];
    int n = entries_match(s, set, out, N(out));
    assert_int_equal(n, 3);
    assert_ptr_equal(out[0], v[0]); /* created 5 */
    assert_ptr_equal(out[1], v[2]); /* created 7, id a1 */
    assert_ptr_equal(out[2], v[1]); /* created 7, id a2 */
    assert_int_equal(entries_match(s, set, out, 2), -E2BIG);
    assert_int_equal(entries_match(s, set, out, 3), 3);

    /* A workload set handed over unsorted and with duplicates still
     * reports each entry once, in order. */
    struct selector_set *raw = malloc(sizeof(*raw));
    assert_non_null(raw);
    selector_set_clear(raw);
    const char *w3[] = {"unix:path:/usr/bin/app", "unix:uid:1000", "unix:uid:1000",
                        "unix:path:/usr/bin/app"};
    for (size_t i = 0; i < N(w3); i++)
        set_add_str(raw, w3[i]);
    assert_int_equal(entries_match(s, raw, out, N(out)), 3);
    assert_ptr_equal(out[0], v[0]);
    assert_ptr_equal(out[1], v[2]);
    assert_ptr_equal(out[2], v[1]);
    free(raw);

    /* Nothing in common; an empty workload. */
    const char *w2[] = {"unix:uid:1", "k8s:qos:burstable"};
    struct selector_set *set2 = set_new(w2, N(w2));
    assert_int_equal(entries_match(s, set2, out, N(out)), 0);
    selector_set_clear(set2);
    assert_int_equal(entries_match(s, set2, out, N(out)), 0);

    for (size_t i = 0; i < N(v); i++)
        entry_unref(v[i]);
    entries_snapshot_unref(s);
    free(set);
    free(set2);
}

/* The reference: every entry, every selector, in a sorted workload. */
static bool in_set(const struct selector_set *set, const char *s)
{
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s, set->items[mid]);
        if (c == 0)
            return true;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return false;
}

static size_t brute_match(struct entry *const *sorted, size_t n, const struct selector_set *set,
                          const struct entry **out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool all = true;
        for (size_t j = 0; j < sorted[i]->n_selectors && all; j++)
            all = in_set(set, sorted[i]->selectors[j]);
        if (all)
            out[k++] = sorted[i];
    }
    return k;
}

static int cmp_entry_ptr(const void *a, const void *b)
{
    return entry_cmp(*(struct entry *const *)a, *(struct entry *const *)b);
}

#define VOCAB 300
static char vocab[VOCAB][48];

static void vocab_init(void)
{
    static const char *const kinds[] = {
        "unix:uid:",    "unix:gid:",  "unix:path:/bin/", "cgroup:unified:/svc/",
        "k8s:pod-uid:", "unix:user:u"};
    for (size_t i = 0; i < VOCAB; i++)
        (void)snprintf(vocab[i], sizeof(vocab[i]), "%s%zu", kinds[i % N(kinds)], i);
}

/* Skewed towards low indices, so that some selectors are common and
 * workloads often satisfy entries. */
static size_t vocab_pick(void)
{
    size_t a = rnd_below(VOCAB), b = rnd_below(VOCAB);
    return a < b ? (a * (rnd_below(4) + 1)) % VOCAB : b / 8;
}

static struct entry *random_entry(size_t serial)
{
    const char *sels[5];
    char id[ENTRY_ID_LEN + 1], spiffe[64];
    size_t n = 1 + rnd_below(5);
    for (size_t i = 0; i < n; i++)
        sels[i] = vocab[vocab_pick()];
    (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
    (void)snprintf(spiffe, sizeof(spiffe), "spiffe://example.org/w/%zu", serial);
    /* Few distinct times: many ties, so the id tie-break matters. */
    return parts(id, spiffe, sels, n, (int64_t)rnd_below(40));
}

static void random_workload(struct selector_set *set)
{
    selector_set_clear(set);
    size_t n = 1 + rnd_below(16);
    for (size_t i = 0; i < n; i++)
        set_add_str(set, vocab[vocab_pick()]);
    /* Selectors no entry holds. */
    if (rnd_below(2))
        set_add_str(set, "unix:path:/not/in/vocabulary");
    if (rnd_below(4) == 0)
        set_add_str(set, "container:id:0123");
    selector_set_sort(set);
}

static void check_against_reference(const struct entries_snapshot *s, struct entry **sorted,
                                    size_t n, size_t workloads, size_t *ret_matches)
{
    struct selector_set *set = malloc(sizeof(*set));
    const struct entry **got = malloc(n * sizeof(*got)), **want = malloc(n * sizeof(*want));
    assert_true(set && got && want);
    size_t total = 0;
    for (size_t w = 0; w < workloads; w++) {
        random_workload(set);
        size_t k = brute_match(sorted, n, set, want);
        int r = entries_match(s, set, got, n);
        if (r < 0 || (size_t)r != k)
            fail_msg("workload %zu: %d matches, reference says %zu", w, r, k);
        for (size_t i = 0; i < k; i++)
            if (got[i] != want[i])
                fail_msg("workload %zu: match %zu is %s, reference says %s", w, i, got[i]->id,
                         want[i]->id);
        if (k > 0) {
            assert_int_equal(entries_match(s, set, got, k - 1), -E2BIG);
            assert_int_equal(entries_match(s, set, got, k), (int)k);
        }
        total += k;
    }
    free(set);
    free(got);
    free(want);
    if (ret_matches)
        *ret_matches = total;
}

static void test_match_reference(void **state)
{
    (void)state;
    vocab_init();
    const size_t n = 5000;
    struct entry **v = malloc(n * sizeof(*v));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = random_entry(i);
    struct entries_snapshot *s = NULL;
    assert_int_equal(entries_snapshot_new(v, n, &s), 0);
    qsort(v, n, sizeof(*v), cmp_entry_ptr);
    for (size_t i = 0; i < n; i++)
        assert_ptr_equal(entries_snapshot_at(s, i), v[i]);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(entries_snapshot_find(s, v[i]->id), v[i]);
        const struct entry *same = entries_snapshot_find_identity(s, v[i]);
        assert_non_null(same);
        assert_true(entry_same_identity(same, v[i]));
    }
    size_t matches = 0;
    check_against_reference(s, v, n, 3000, &matches);
    print_message("reference: 5000 entries, 3000 workloads, %zu matches in all\n", matches);
    assert_true(matches > 3000); /* the test says something */
    entries_snapshot_unref(s);
    for (size_t i = 0; i < n; i++)
        entry_unref(v[i]);
    free(v);
}

static void test_derive_reference(void **state)
{
    (void)state;
    vocab_init();
    size_t n = 0, cap = 4000, serial = 100000;
    struct entry **v = malloc(cap * sizeof(*v));
    assert_non_null(v);
    for (; n < 1500; n++)
        v[n] = random_entry(serial++);
    struct entries_snapshot *cur = NULL;
    assert_int_equal(entries_snapshot_new(v, n, &cur), 0);
    for (size_t step = 0; step < 300; step++) {
        struct entry *add = NULL;
        const char *remove_id = NULL;
        size_t remove_at = SIZE_MAX;
        unsigned op = (unsigned)rnd_below(3); /* add, remove, replace */
        if (op != 1)
            add = random_entry(serial++);
        if (op != 0 && n > 0) {
            remove_at = rnd_below(n);
            remove_id = v[remove_at]->id;
        }
        struct entries_snapshot *next = NULL;
        assert_int_equal(entries_snapshot_derive(cur, add, remove_id, &next), 0);
        if (remove_at != SIZE_MAX) {
            entry_unref(v[remove_at]);
            v[remove_at] = v[--n];
        }
        if (add)
            v[n++] = add; /* our reference moves to v */
        cur = entries_snapshot_unref(cur);
        cur = next;
        if (step % 25 != 0)
            continue;
        /* A snapshot rebuilt from scratch agrees in order, lookups and
         * matches. */
        struct entries_snapshot *fresh = NULL;
        assert_int_equal(entries_snapshot_new(v, n, &fresh), 0);
        assert_int_equal(entries_snapshot_count(cur), n);
        for (size_t i = 0; i < n; i++)
            assert_ptr_equal(entries_snapshot_at(cur, i), entries_snapshot_at(fresh, i));
        for (size_t i = 0; i < n; i++)
            assert_ptr_equal(entries_snapshot_find(cur, v[i]->id), v[i]);
        struct entry **sorted = malloc(n * sizeof(*sorted));
        assert_non_null(sorted);
        memcpy(sorted, v, n * sizeof(*v));
        qsort(sorted, n, sizeof(*sorted), cmp_entry_ptr);
        check_against_reference(cur, sorted, n, 200, NULL);
        check_against_reference(fresh, sorted, n, 50, NULL);
        free(sorted);
        entries_snapshot_unref(fresh);
    }
    /* The snapshot holds the only other reference to each entry. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&v[i]->refs), 2);
    entries_snapshot_unref(cur);
    for (size_t i = 0; i < n; i++)
        entry_unref(v[i]);
    free(v);
}

/* ---- publication ------------------------------------------------------------- */

static struct entries_snapshot *snapshot_of(const char *spiffe, const char *sel)
{
    const char *sels[] = {sel};
    char id[ENTRY_ID_LEN + 1];
    (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
    struct entry *e = parts(id, spiffe, sels, 1, 1);
    struct entries_snapshot *s = NULL;
    assert_int_equal(entries_snapshot_new(&e, 1, &s), 0);
    entry_unref(e);
    return s;
}

static void test_registry_publish(void **state)
{
    (void)state;
    struct entries_registry *r = NULL;
    struct entries_snapshot *s1 = snapshot_of("spiffe://t/one", "unix:uid:1");
    assert_int_equal(entries_registry_new(s1, &r), 0);
    struct entries_reader a = {0}, b = {0};
    assert_ptr_equal(entries_reader_get(r, &a), s1);
    assert_ptr_equal(entries_reader_get(r, &a), s1);

    /* A reader sees the new snapshot at its next get... */
    struct entries_snapshot *s2 = snapshot_of("spiffe://t/two", "unix:uid:1");
    entries_registry_publish(r, s2);
    assert_ptr_equal(entries_reader_get(r, &b), s2);
    /* ...while one that has not asked again keeps the old one, alive even
     * though the registry let go of it (ASan reports any use after free). */
    const char *w[] = {"unix:uid:1"};
    struct selector_set *set = set_new(w, 1);
    const struct entry *out[4];
    assert_int_equal(entries_match(a.snapshot, set, out, 4), 1);
    assert_string_equal(out[0]->spiffe_id, "spiffe://t/one");
    const struct entries_snapshot *now = entries_reader_get(r, &a);
    assert_ptr_equal(now, s2);
    assert_int_equal(entries_match(now, set, out, 4), 1);
    assert_string_equal(out[0]->spiffe_id, "spiffe://t/two");

    /* Several publishes between gets: the reader lands on the last. */
    struct entries_snapshot *last = NULL;
    for (int i = 0; i < 5; i++) {
        last = snapshot_of("spiffe://t/n", "unix:uid:2");
        entries_registry_publish(r, last);
    }
    assert_ptr_equal(entries_reader_get(r, &a), last);
    entries_reader_release(&a);
    entries_reader_release(&a); /* twice is harmless */
    /* A reader outlives the registry with its snapshot. */
    r = entries_registry_free(r);
    assert_null(r);
    assert_int_equal(entries_match(b.snapshot, set, out, 4), 1);
    entries_reader_release(&b);
    assert_null(b.snapshot);

    /* No initial snapshot: an empty one. */
    assert_int_equal(entries_registry_new(NULL, &r), 0);
    assert_int_equal(entries_snapshot_count(entries_reader_get(r, &a)), 0);
    entries_reader_release(&a);
    entries_registry_free(r);
    free(set);
}

struct stress {
    struct entries_registry *r;
    atomic_bool done;
    atomic_ulong gets;
};

static void *stress_reader(void *arg)
{
    struct stress *st = arg;
    struct entries_reader reader = {0};
    struct selector_set *set = malloc(sizeof(*set));
    const char *w[] = {"unix:uid:1000", "unix:gid:1000", "unix:path:/usr/bin/app"};
    selector_set_clear(set);
    for (size_t i = 0; i < N(w); i++)
        set_add_str(set, w[i]);
    selector_set_sort(set);
    const struct entry *out[ENTRIES_MATCH_MAX];
    unsigned long gets = 0;
    while (!atomic_load(&st->done)) {
        const struct entries_snapshot *s = entries_reader_get(st->r, &reader);
        int n = entries_match(s, set, out, N(out));
        if (n < 0)
            abort();
        for (int i = 0; i < n; i++)
            if (strncmp(out[i]->spiffe_id, "spiffe://example.org/", 21) != 0)
                abort();
        if (entries_snapshot_count(s) > 0 && !entries_snapshot_at(s, 0)->id[0])
            abort();
        gets++;
    }
    entries_reader_release(&reader);
    free(set);
    atomic_fetch_add(&st->gets, gets);
    return NULL;
}

static void test_registry_threads(void **state)
{
    (void)state;
    struct stress st = {0};
    atomic_init(&st.done, false);
    atomic_init(&st.gets, 0);
    assert_int_equal(entries_registry_new(NULL, &st.r), 0);
    pthread_t th[2];
    for (size_t i = 0; i < N(th); i++)
        assert_int_equal(pthread_create(&th[i], NULL, stress_reader, &st), 0);

    struct entries_snapshot *cur = NULL;
    assert_int_equal(entries_snapshot_new(NULL, 0, &cur), 0);
    const char *ids[64] = {0};
    char idbuf[64][ENTRY_ID_LEN + 1];
    for (size_t i = 0; i < 1000; i++) {
        const char *sels[] = {"unix:uid:1000", i % 2 ? "unix:path:/usr/bin/app" : "unix:gid:7"};
        char spiffe[64];
        size_t slot = i % N(ids);
        (void)snprintf(idbuf[slot], sizeof(idbuf[slot]), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
        (void)snprintf(spiffe, sizeof(spiffe), "spiffe://example.org/s/%zu", i);
        struct entry *e = parts(idbuf[slot], spiffe, sels, 2, (int64_t)i);
        struct entries_snapshot *next = NULL;
        /* Once full, each change replaces the oldest entry. */
        const char *remove_id = ids[slot] ? entries_snapshot_at(cur, 0)->id : NULL;
        assert_int_equal(entries_snapshot_derive(cur, e, remove_id, &next), 0);
        ids[slot] = idbuf[slot];
        entry_unref(e);
        entries_snapshot_unref(cur);
        cur = next;
        entries_registry_publish(st.r, entries_snapshot_ref(cur));
    }
    atomic_store(&st.done, true);
    for (size_t i = 0; i < N(th); i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(entries_snapshot_count(cur), N(ids));
    print_message("registry stress: 1000 publishes, %lu reader gets\n", atomic_load(&st.gets));
    entries_snapshot_unref(cur);
    entries_registry_free(st.r);
}

/* ---- measurement (printed, never asserted) ---------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ns_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e9 + (double)(t1.tv_nsec - t0->tv_nsec);
}

static void measure(size_t n_entries)
{
    struct entry **v = malloc((n_entries + 2) * sizeof(*v));
    assert_non_null(v);
    size_t n = 0;
    char id[ENTRY_ID_LEN + 1], spiffe[64], uid[32], path[64];
    /* Two entries the workload satisfies, the rest random uid and path. */
    const char *m1[] = {"unix:uid:1000"};
    const char *m2[] = {"unix:uid:1000", "unix:path:/usr/bin/app"};
    (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
    v[n++] = parts(id, "spiffe://example.org/m1", m1, 1, 1);
    (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
    v[n++] = parts(id, "spiffe://example.org/m2", m2, 2, 2);
    for (size_t i = 0; i + 2 < n_entries; i++) {
        (void)snprintf(uid, sizeof(uid), "unix:uid:%zu", rnd_below(65536));
        (void)snprintf(path, sizeof(path), "unix:path:/opt/app/%016" PRIx64, rnd());
        const char *sels[] = {uid, path};
        (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
        (void)snprintf(spiffe, sizeof(spiffe), "spiffe://example.org/e/%zu", i);
        v[n++] = parts(id, spiffe, sels, 2, (int64_t)rnd_below(1000));
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct entries_snapshot *s = NULL;
    assert_int_equal(entries_snapshot_new(v, n, &s), 0);
    double build_ms = ns_since(&t0) / 1e6;

    const char *w[] = {"unix:uid:1000",          "unix:gid:1000",
                       "unix:user:alice",        "unix:group:alice",
                       "unix:path:/usr/bin/app", "cgroup:unified:/system.slice/app.service"};
    struct selector_set *set = set_new(w, N(w));
    const struct entry *out[ENTRIES_MATCH_MAX];
    enum { BATCHES = 201, PER_BATCH = 200 };
    double per_call[BATCHES];
    int sink = 0;
    for (size_t b = 0; b < BATCHES; b++) {
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < PER_BATCH; i++)
            sink += entries_match(s, set, out, N(out));
        per_call[b] = ns_since(&t0) / PER_BATCH;
    }
    assert_int_equal(sink, 2 * BATCHES * PER_BATCH);
    qsort(per_call, BATCHES, sizeof(per_call[0]), cmp_double);
    print_message("match, 6 selectors against %zu entries: median %.0f ns per call "
                  "(min %.0f, max %.0f over %d batches of %d); snapshot build %.1f ms\n",
                  n_entries, per_call[BATCHES / 2], per_call[0], per_call[BATCHES - 1], BATCHES,
                  PER_BATCH, build_ms);
    entries_snapshot_unref(s);
    for (size_t i = 0; i < n; i++)
        entry_unref(v[i]);
    free(v);
    free(set);
}

/* ---- the fast checks against a plain reference ------------------------------ */

/* A SPIFFE ID's rules spelled out plainly (what the check, which takes one
 * pass with a table, must agree with). */
static bool ref_spiffe_id(const char *id, size_t len, const char *td_want)
{
    if (len == 0 || len > SPIFFE_ID_MAX || memchr(id, '\0', len))
        return false;
    if (len < 9 || memcmp(id, "spiffe://", 9) != 0)
        return false;
    for (size_t i = 9; i < len; i++)
        if (id[i] == '?' || id[i] == '#' || id[i] == '%')
            return false;
    const char *td = id + 9, *end = id + len;
    const char *slash = memchr(td, '/', (size_t)(end - td));
    size_t td_len = slash ? (size_t)(slash - td) : (size_t)(end - td);
    if (td_len == 0 || td_len > TRUST_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < td_len; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789.-_", td[i]))
            return false;
    if (td_want && (strlen(td_want) != td_len || memcmp(td_want, td, td_len) != 0))
        return false;
    if (!slash || end - slash <= 1 || end[-1] == '/')
        return false;
    for (const char *seg = slash + 1; seg < end;) {
        const char *next = memchr(seg, '/', (size_t)(end - seg));
        size_t n = next ? (size_t)(next - seg) : (size_t)(end - seg);
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        for (size_t i = 0; i < n; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
                        seg[i]))
                return false;
        seg = next ? next + 1 : end;
    }
    return true;
}

static bool ref_id(const char *id, size_t len)
{
    if (!id || len != ENTRY_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

/* A random SPIFFE ID: mostly well formed, with every kind of flaw. */
static size_t rnd_spiffe(char *out, size_t cap)
{
    static const char *const schemes[] = {"spiffe://", "spiffe://", "spiffe://",
                                          "SPIFFE://", "spiffe:/",  ""};
    static const char *const tds[] = {
        "example.org", "example.org", "other.org", "a", "Ex.org", "u@x", "x:1", "", "e_x-a.m9"};
    static const char pieces[] = "abcxyzABZ019.-_/.?#% :\x7f\x80\xc3\xa9";
    size_t len =
        (size_t)snprintf(out, cap, "%s%s", schemes[rnd_below(N(schemes))], tds[rnd_below(N(tds))]);
    size_t segs = rnd_below(6);
    for (size_t i = 0; i < segs && len + 16 < cap; i++) {
        out[len++] = '/';
        switch (rnd_below(8)) {
        case 0:
            out[len++] = '.';
            break;
        case 1:
            out[len++] = '.';
            out[len++] = '.';
            break;
        case 2:
            break; /* an empty segment */
        default: {
            size_t k = 1 + rnd_below(12);
            for (size_t j = 0; j < k; j++)
                out[len++] = rnd_below(10) ? "abcdefghXYZ0189.-_"[rnd_below(18)]
                                           : pieces[rnd_below(sizeof(pieces) - 1)];
        }
        }
    }
    if (rnd_below(16) == 0)
        out[len++] = '/';
    if (rnd_below(32) == 0)
        out[rnd_below(len + 1)] = '\0';
    return len;
}

static void test_fast_checks_match_reference(void **state)
{
    (void)state;
    char buf[256], err[512];
    size_t valid = 0;
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = rnd_spiffe(buf, sizeof(buf));
        for (int with_td = 0; with_td < 2; with_td++) {
            const char *td = with_td ? TD : NULL;
            bool want = ref_spiffe_id(buf, len, td);
            err[0] = '\0';
            if (entries_spiffe_id_valid(buf, len, td, err, sizeof(err)) != want)
                fail_msg("SPIFFE ID \"%s\" (trust domain %s): %s, the reference says %s",
                         esc(buf, len), td ? td : "any", want ? err : "accepted",
                         want ? "valid" : "invalid");
            /* A refusal always says why. */
            assert_true(want || strstr(err, "SPIFFE ID") != NULL);
            valid += want;
        }
    }
    print_message("reference: 200000 random SPIFFE IDs, %zu valid\n", valid);
    assert_true(valid > 5000); /* the test says something */

    for (int iter = 0; iter < 200000; iter++) {
        char id[40];
        (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, rnd(), rnd());
        size_t len = ENTRY_ID_LEN;
        switch (rnd_below(6)) {
        case 0:
            id[rnd_below(ENTRY_ID_LEN)] = (char)rnd_below(256);
            break;
        case 1:
            len = rnd_below(ENTRY_ID_LEN + 2);
            break;
        default:
            break;
        }
        if (entries_id_valid(id, len) != ref_id(id, len))
            fail_msg("id \"%s\" (%zu bytes) disagrees with the reference", esc(id, len), len);
    }
}

/* A hint is UTF-8 text without controls, as a selector's value is: up to
 * its own limit, the two checks agree (test_selector compares the value's
 * with a reference). */
static void test_hint_matches_value_rules(void **state)
{
    (void)state;
    static const char *const pieces[] = {"a",
                                         " ",
                                         "\xc3\xa9",
                                         "\xe2\x9c\x93",
                                         "\xc2\x9b",
                                         "\x7f",
                                         "\x01",
                                         "\xed\xa0\x80",
                                         "\xc3",
                                         "\x80",
                                         "\xf4\x90\x80\x80"};
    const char *sel[] = {"unix:uid:1"};
    char hint[ENTRY_HINT_MAX + 8], err[512];
    for (int iter = 0; iter < 50000; iter++) {
        size_t len = 0, want_len = 1 + rnd_below(ENTRY_HINT_MAX + 4);
        bool clean = rnd_below(2);
        while (len < want_len) {
            const char *p =
                clean && rnd_below(40) ? pieces[rnd_below(4)] : pieces[rnd_below(N(pieces))];
            size_t n = strlen(p);
            if (len + n > want_len)
                break;
            memcpy(hint + len, p, n);
            len += n;
        }
        if (len == 0)
            continue;
        struct entry_stored in = {
            .id = "0123456789abcdef0123456789abcdef",
            .id_len = 32,
            .spiffe_id = "spiffe://example.org/a",
            .spiffe_id_len = 22,
            .selectors = "unix:uid:1\0",
            .selectors_len = 11,
            .hint = hint,
            .hint_len = len,
            .ttl = 60,
        };
        (void)sel;
        struct entry *e = NULL;
        bool want = len <= ENTRY_HINT_MAX && selector_value_valid(hint, len, NULL, 0);
        int r = entry_from_stored(&in, &e, err, sizeof(err));
        if ((r == 0) != want)
            fail_msg("hint \"%s\": %s", esc(hint, len), r == 0 ? "accepted" : err);
        if (r == 0) {
            assert_int_equal(strlen(e->hint), len);
            assert_memory_equal(e->hint, hint, len);
        }
        e = entry_unref(e);
    }
}

/* ---- stored entries ----------------------------------------------------------- */

static int stored(const char *sel, size_t sel_len, const char *aud, size_t aud_len,
                  struct entry **ret, char *err)
{
    struct entry_stored in = {
        .id = "0123456789abcdef0123456789abcdef",
        .id_len = 32,
        .spiffe_id = "spiffe://example.org/a",
        .spiffe_id_len = 22,
        .selectors = sel,
        .selectors_len = sel_len,
        .audiences = aud,
        .audiences_len = aud_len,
        .ttl = 60,
        .created_at = -3,
        .revision = 9,
    };
    return entry_from_stored(&in, ret, err, 512);
}

static void test_entry_from_stored(void **state)
{
    (void)state;
    char err[512] = "";
    struct entry *e = NULL;
    /* Out of order and repeated (a file not written by us): sorted, once. */
    static const char sels[] = "unix:uid:2\0unix:gid:1\0unix:uid:2\0";
    static const char auds[] = "b\0a\0";
    assert_int_equal(stored(sels, sizeof(sels) - 1, auds, sizeof(auds) - 1, &e, err), 0);
    assert_int_equal(e->n_selectors, 2);
    assert_string_equal(e->selectors[0], "unix:gid:1");
    assert_string_equal(e->selectors[1], "unix:uid:2");
    assert_int_equal(e->n_audiences, 2);
    assert_string_equal(e->audiences[0], "a");
    assert_string_equal(e->audiences[1], "b");
    assert_null(e->hint);
    assert_int_equal(e->created_at, -3);
    assert_int_equal(e->revision, 9);
    e = entry_unref(e);
    /* No audiences: NULL or empty. */
    assert_int_equal(stored("unix:uid:1", 11, NULL, 0, &e, err), 0);
    assert_int_equal(e->n_audiences, 0);
    assert_null(e->audiences);
    e = entry_unref(e);

    /* Malformed blocks. */
    assert_int_equal(stored("unix:uid:1", 10, NULL, 0, &e, err), -EINVAL);
    assert_contains(err, "the selectors are not a list of strings that each end with a NUL");
    assert_int_equal(stored("unix:uid:1", 11, "a", 1, &e, err), -EINVAL);
    assert_contains(err, "the audiences are not");
    assert_int_equal(stored("", 0, NULL, 0, &e, err), -EINVAL);
    assert_contains(err, "at least 1 selector, got 0");
    assert_int_equal(stored("\0", 1, NULL, 0, &e, err), -EINVAL);
    assert_contains(err, "selector 1 of 1");
    assert_null(e);

    /* 32 selectors, and 33. */
    char many[33 * 16];
    size_t len = 0;
    for (unsigned i = 0; i < 33; i++)
        len += (size_t)snprintf(many + len, sizeof(many) - len, "unix:gid:%u", i) + 1;
    size_t len32 = len - strlen("unix:gid:32") - 1;
    assert_int_equal(stored(many, len32, NULL, 0, &e, err), 0);
    assert_int_equal(e->n_selectors, 32);
    e = entry_unref(e);
    assert_int_equal(stored(many, len, NULL, 0, &e, err), -EINVAL);
    assert_contains(err, "at most 32 selectors, got 33");
    /* 17 audiences. */
    char aud17[17 * 4];
    len = 0;
    for (unsigned i = 0; i < 17; i++)
        len += (size_t)snprintf(aud17 + len, sizeof(aud17) - len, "a%u", i) + 1;
    assert_int_equal(stored("unix:uid:1", 11, aud17, len, &e, err), -EINVAL);
    assert_contains(err, "at most 16 audiences, got 17");
    assert_null(e);
}

/* ---- orders --------------------------------------------------------------------- */

/* Entries whose ids share their first 8 or 16 characters and whose times
 * are few, spread wide, or at the ends of int64: every tie the sorts break
 * by a second key or the full comparison. */
static struct entry *tie_entry(size_t serial, unsigned mode)
{
    static const int64_t wide[] = {
        INT64_MIN,        INT64_MIN + 1,      -1, 0, 1, INT64_MAX - 1, INT64_MAX,
        (int64_t)1 << 40, -((int64_t)1 << 40)};
    char id[ENTRY_ID_LEN + 1], spiffe[64];
    const char *sel[] = {"unix:uid:1"};
    uint64_t hi = rnd(), lo = rnd();
    if (rnd_below(3) == 0)
        hi = 0x0123456789abcdefu; /* the first 16 characters shared */
    else if (rnd_below(3) == 0)
        hi = (0x89abcdefu << 0) | (uint64_t)0x01234567u << 32 | (hi & 0xffffffffu);
    (void)snprintf(id, sizeof(id), "%016" PRIx64 "%016" PRIx64, hi, lo);
    (void)snprintf(spiffe, sizeof(spiffe), "spiffe://example.org/t/%zu", serial);
    int64_t t;
    switch (mode) {
    case 0:
        t = (int64_t)rnd_below(3);
        break;
    case 1:
        t = wide[rnd_below(N(wide))];
        break;
    case 2:
        t = 1700000000 + (int64_t)rnd_below(100000);
        break;
    default:
        t = 5; /* all the same: the id decides */
        break;
    }
    return parts(id, spiffe, sel, 1, t);
}

static int cmp_id_ptr(const void *a, const void *b)
{
    return strcmp((*(struct entry *const *)a)->id, (*(struct entry *const *)b)->id);
}

static void test_orders_match_qsort(void **state)
{
    (void)state;
    for (unsigned mode = 0; mode < 4; mode++) {
        for (size_t n = 0; n < 3000; n = n ? n * 3 : 1) {
            struct entry **v = malloc((n ? n : 1) * sizeof(*v));
            struct entry **want = malloc((n ? n : 1) * sizeof(*want));
            assert_true(v && want);
            for (size_t i = 0; i < n; i++)
                v[i] = tie_entry(i, mode);
            memcpy(want, v, n * sizeof(*v));
            qsort(want, n, sizeof(*want), cmp_entry_ptr);
            struct entries_snapshot *s = NULL;
            assert_int_equal(entries_snapshot_new(v, n, &s), 0);
            assert_int_equal(entries_sort(v, n), 0);
            for (size_t i = 0; i < n; i++) {
                assert_ptr_equal(v[i], want[i]);
                assert_ptr_equal(entries_snapshot_at(s, i), want[i]);
            }
            /* The id order, through lookups of every id and of ids next to
             * them that no entry has. */
            qsort(want, n, sizeof(*want), cmp_id_ptr);
            for (size_t i = 0; i < n; i++) {
                assert_ptr_equal(entries_snapshot_find(s, want[i]->id), want[i]);
                char near[ENTRY_ID_LEN + 1];
                memcpy(near, want[i]->id, sizeof(near));
                near[ENTRY_ID_LEN - 1] = near[ENTRY_ID_LEN - 1] == 'f' ? 'e' : 'f';
                const struct entry *f = entries_snapshot_find(s, near);
                assert_true(!f || strcmp(f->id, near) == 0);
            }
            entries_snapshot_unref(s);
            for (size_t i = 0; i < n; i++)
                entry_unref(v[i]);
            free(v);
            free(want);
        }
    }
}

/* The same entries given sorted, in reverse, or shuffled make the same
 * snapshot: the same order, lookups and matches. */
static void test_snapshot_sorted_or_not(void **state)
{
    (void)state;
    vocab_init();
    const size_t n = 3000;
    struct entry **v = malloc(n * sizeof(*v));
    struct entry **w = malloc(n * sizeof(*w));
    assert_true(v && w);
    for (size_t i = 0; i < n; i++)
        v[i] = random_entry(i);
    qsort(v, n, sizeof(*v), cmp_entry_ptr);
    struct entries_snapshot *sorted = NULL, *other = NULL;
    assert_int_equal(entries_snapshot_new(v, n, &sorted), 0);
    for (int variant = 0; variant < 2; variant++) {
        for (size_t i = 0; i < n; i++)
            w[i] = v[variant == 0 ? n - 1 - i : i];
        if (variant == 1)
            for (size_t i = n - 1; i > 0; i--) {
                size_t j = rnd_below(i + 1);
                struct entry *t = w[i];
                w[i] = w[j];
                w[j] = t;
            }
        assert_int_equal(entries_snapshot_new(w, n, &other), 0);
        assert_int_equal(entries_snapshot_count(other), n);
        for (size_t i = 0; i < n; i++) {
            assert_ptr_equal(entries_snapshot_at(other, i), entries_snapshot_at(sorted, i));
            assert_ptr_equal(entries_snapshot_find(other, v[i]->id), v[i]);
            assert_ptr_equal(entries_snapshot_find_identity(other, v[i]),
                             entries_snapshot_find_identity(sorted, v[i]));
        }
        check_against_reference(other, v, n, 300, NULL);
        check_against_reference(sorted, v, n, 300, NULL);
        other = entries_snapshot_unref(other);
    }
    entries_snapshot_unref(sorted);
    for (size_t i = 0; i < n; i++)
        entry_unref(v[i]);
    free(v);
    free(w);
}

/* The builder refuses what a snapshot cannot hold, and keeps nothing it
 * was handed when it is dropped. */
static void test_builder(void **state)
{
    (void)state;
    struct entries_builder *b = NULL;
    struct entries_snapshot *s = NULL;
    const char *sel[] = {"unix:uid:1"};
    assert_null(entries_builder_free(NULL));
    assert_int_equal(entries_builder_add(NULL, NULL), -EINVAL);
    assert_int_equal(entries_builder_finish(NULL, &s), -EINVAL);

    /* Empty. */
    assert_int_equal(entries_builder_new(&b), 0);
    assert_int_equal(entries_builder_finish(b, &s), 0);
    assert_int_equal(entries_snapshot_count(s), 0);
    s = entries_snapshot_unref(s);

    /* A hand-made entry (no selectors; a bad id): refused, and its
     * reference taken all the same (ASan sees a leak otherwise). */
    struct entry *good = parts("00000000000000000000000000000001", "spiffe://t/a", sel, 1, 1);
    assert_int_equal(entries_builder_new(&b), 0);
    struct entry *bad = calloc(1, sizeof(*bad));
    assert_non_null(bad);
    atomic_init(&bad->refs, 1);
    memcpy(bad->id, good->id, sizeof(bad->id));
    assert_int_equal(entries_builder_add(b, bad), -EINVAL);
    bad = calloc(1, sizeof(*bad));
    assert_non_null(bad);
    atomic_init(&bad->refs, 1);
    bad->n_selectors = 1;
    bad->selectors = (char **)sel;
    memcpy(bad->id, "0000000000000000000000000000000G", sizeof(bad->id));
    assert_int_equal(entries_builder_add(b, bad), -EINVAL);
    assert_int_equal(entries_builder_add(b, entry_ref(good)), 0);
    b = entries_builder_free(b); /* drops its reference to good */
    assert_int_equal(atomic_load(&good->refs), 1);

    /* The same id twice. */
    struct entry *twin = parts("00000000000000000000000000000001", "spiffe://t/b", sel, 1, 2);
    assert_int_equal(entries_builder_new(&b), 0);
    assert_int_equal(entries_builder_add(b, entry_ref(good)), 0);
    assert_int_equal(entries_builder_add(b, entry_ref(twin)), 0);
    assert_int_equal(entries_builder_finish(b, &s), -EEXIST);
    assert_null(s);
    assert_int_equal(atomic_load(&good->refs), 1);
    assert_int_equal(atomic_load(&twin->refs), 1);
    entry_unref(good);
    entry_unref(twin);
}

static void test_measure(void **state)
{
    (void)state;
    measure(10);
    measure(100000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trust_domain_rules),
        cmocka_unit_test(test_spiffe_id_rules),
        cmocka_unit_test(test_audience_rules),
        cmocka_unit_test(test_id_rules),
        cmocka_unit_test(test_entry_new_good),
        cmocka_unit_test(test_entry_selector_limits),
        cmocka_unit_test(test_entry_field_limits),
        cmocka_unit_test(test_entry_from_parts),
        cmocka_unit_test(test_fast_checks_match_reference),
        cmocka_unit_test(test_hint_matches_value_rules),
        cmocka_unit_test(test_entry_from_stored),
        cmocka_unit_test(test_orders_match_qsort),
        cmocka_unit_test(test_snapshot_sorted_or_not),
        cmocka_unit_test(test_builder),
        cmocka_unit_test(test_entry_order_and_identity),
        cmocka_unit_test(test_match_basic),
        cmocka_unit_test(test_match_reference),
        cmocka_unit_test(test_derive_reference),
        cmocka_unit_test(test_registry_publish),
        cmocka_unit_test(test_registry_threads),
        cmocka_unit_test(test_measure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
