/* Registration entries: validation and the entry model (see entries.h).
 *
 * This file checks what an operator or the store hands in (SPIFFE IDs,
 * trust domains, audiences, selectors, hints), builds an entry in one
 * allocation, and gives entries their reference count and stable order.
 * Snapshots, their index, matching and publication are in entries_index.c,
 * which reads entries only through entries.h; the ordering of reference
 * counts is explained at its top. */
#include "entries.h"
#include "entries_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "text.h"

#define SPIFFE_SCHEME     "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)
/* How much of an offending value a message quotes. */

__attribute__((format(printf, 3, 4))) static bool fail(char *err, size_t err_len, const char *fmt,
                                                       ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return false;
}

int entries_sodium_ready(void)
{
    /* Idempotent and thread-safe; main() need not have called it. */
    return sodium_init() < 0 ? -EIO : 0;
}

/* --- validation ---------------------------------------------------------- */

static bool td_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool td_check(const char *what, const char *td, size_t len, char *err, size_t err_len)
{
    char q[TEXT_QUOTE_BUF];
    if (len == 0)
        return fail(err, err_len, "%s is empty; it needs 1 to %u bytes", what, TRUST_DOMAIN_MAX);
    if (len > TRUST_DOMAIN_MAX)
        return fail(err, err_len, "%s is %zu bytes, more than the limit of %u", what, len,
                    TRUST_DOMAIN_MAX);
    for (size_t i = 0; i < len; i++)
        if (!td_char(td[i]))
            return fail(err, err_len,
                        "%s may hold only lowercase letters, digits, '.', '-' and '_', not '%s' "
                        "at byte %zu",
                        what, text_quote(q, td + i, 1), i);
    return true;
}

bool entries_trust_domain_valid(const char *td, size_t len, char *err, size_t err_len)
{
    if (!td)
        return fail(err, err_len, "trust domain is missing");
    return td_check("trust domain", td, len, err, err_len);
}

static bool path_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* The SPIFFE ID's path, from its first '/' to the end. */
static bool spiffe_path_check(const char *path, size_t len, const char *td, size_t td_len,
                              char *err, size_t err_len)
{
    char q[TEXT_QUOTE_BUF];
    if (len <= 1)
        return fail(err, err_len, "SPIFFE ID has no path; it must be spiffe://%s/<path>",
                    text_quote(q, td, td_len));
    if (path[len - 1] == '/')
        return fail(err, err_len, "SPIFFE ID ends with '/'; remove the trailing slash");
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/') {
            if (!path_char(path[i]))
                return fail(err, err_len,
                            "SPIFFE ID path may hold only letters, digits, '.', '-', '_' and '/', "
                            "not '%s' at byte %zu",
                            text_quote(q, path + i, 1),
                            (size_t)(path - td) + SPIFFE_SCHEME_LEN + i);
            continue;
        }
        size_t seg = i - start;
        if (seg == 0)
            return fail(err, err_len, "SPIFFE ID has an empty segment ('//') in its path");
        if (seg == 1 && path[start] == '.')
            return fail(err, err_len, "SPIFFE ID has a '.' segment in its path");
        if (seg == 2 && path[start] == '.' && path[start + 1] == '.')
            return fail(err, err_len, "SPIFFE ID has a '..' segment in its path");
        start = i + 1;
    }
    return true;
}

/* Character classes of a SPIFFE ID: the trust domain's, the path's. */
enum { SPIFFE_TD = 1, SPIFFE_PATH = 2 };
static const unsigned char spiffe_class[256] = {
    ['a' ... 'z'] = SPIFFE_TD | SPIFFE_PATH, ['0' ... '9'] = SPIFFE_TD | SPIFFE_PATH,
    ['.'] = SPIFFE_TD | SPIFFE_PATH,         ['-'] = SPIFFE_TD | SPIFFE_PATH,
    ['_'] = SPIFFE_TD | SPIFFE_PATH,         ['A' ... 'Z'] = SPIFFE_PATH,
};

/* spiffe_id_check's rules in one pass, without messages: every stored
 * entry's SPIFFE ID is checked again at every start. The trust domain is
 * the run of its characters after the scheme, which must end at the
 * path's first '/'; each segment is a run of path characters, not empty,
 * not "." or "..". Anything else (a '?', '#', '%', '@', ':', NUL, a
 * trailing '/') ends a run where a '/' or the end must be. */
static bool spiffe_id_valid_fast(const char *id, size_t len, const char *trust_domain)
{
    if (len < SPIFFE_SCHEME_LEN || len > SPIFFE_ID_MAX ||
        memcmp(id, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0)
        return false;
    const unsigned char *td = (const unsigned char *)id + SPIFFE_SCHEME_LEN;
    const unsigned char *end = (const unsigned char *)id + len, *p = td;
    while (p < end && (spiffe_class[*p] & SPIFFE_TD))
        p++;
    size_t td_len = (size_t)(p - td);
    if (td_len == 0 || td_len > TRUST_DOMAIN_MAX || p == end || *p != '/')
        return false;
    while (p < end) {
        const unsigned char *seg = ++p; /* past the '/' */
        while (p < end && (spiffe_class[*p] & SPIFFE_PATH))
            p++;
        size_t n = (size_t)(p - seg);
        if (n == 0 || (seg[0] == '.' && (n == 1 || (n == 2 && seg[1] == '.'))))
            return false;
        if (p < end && *p != '/')
            return false;
    }
    return !trust_domain ||
           (strlen(trust_domain) == td_len && memcmp(trust_domain, td, td_len) == 0);
}

/* trust_domain NULL: any valid trust domain (entry_from_parts). */
static bool spiffe_id_check(const char *id, size_t len, const char *trust_domain, char *err,
                            size_t err_len)
{
    char q[TEXT_QUOTE_BUF], q2[TEXT_QUOTE_BUF];
    if (id && spiffe_id_valid_fast(id, len, trust_domain))
        return true;
    /* Invalid: the rules one by one, for the message. */
    if (!id || len == 0)
        return fail(err, err_len, "SPIFFE ID is empty; it must be spiffe://<trust domain>/<path>");
    if (len > SPIFFE_ID_MAX)
        return fail(err, err_len, "SPIFFE ID is %zu bytes, more than the limit of %u", len,
                    SPIFFE_ID_MAX);
    const char *nul = memchr(id, '\0', len);
    if (nul)
        return fail(err, err_len, "SPIFFE ID holds a NUL byte at byte %zu", (size_t)(nul - id));
    if (len < SPIFFE_SCHEME_LEN || memcmp(id, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) != 0) {
        if (len >= SPIFFE_SCHEME_LEN && strncasecmp(id, SPIFFE_SCHEME, SPIFFE_SCHEME_LEN) == 0)
            return fail(err, err_len, "SPIFFE ID scheme must be lowercase 'spiffe://'");
        return fail(err, err_len, "SPIFFE ID must start with 'spiffe://'");
    }
    for (size_t i = SPIFFE_SCHEME_LEN; i < len; i++) {
        if (id[i] == '?')
            return fail(err, err_len, "SPIFFE ID must not have a query ('?')");
        if (id[i] == '#')
            return fail(err, err_len, "SPIFFE ID must not have a fragment ('#')");
        if (id[i] == '%')
            return fail(err, err_len, "SPIFFE ID must not hold percent-encoding ('%%')");
    }
    const char *td = id + SPIFFE_SCHEME_LEN;
    size_t rest = len - SPIFFE_SCHEME_LEN;
    const char *slash = memchr(td, '/', rest);
    size_t td_len = slash ? (size_t)(slash - td) : rest;
    if (memchr(td, '@', td_len))
        return fail(err, err_len, "SPIFFE ID must not hold userinfo ('@') in its trust domain");
    if (memchr(td, ':', td_len))
        return fail(err, err_len, "SPIFFE ID must not hold a port (':') in its trust domain");
    if (!td_check("SPIFFE ID's trust domain", td, td_len, err, err_len))
        return false;
    if (trust_domain && (strlen(trust_domain) != td_len || memcmp(trust_domain, td, td_len) != 0))
        return fail(err, err_len,
                    "SPIFFE ID's trust domain '%s' is not the agent's trust domain '%s'",
                    text_quote(q, td, td_len), text_quote(q2, trust_domain, strlen(trust_domain)));
    if (!spiffe_path_check(slash ? slash : td + td_len, slash ? rest - td_len : 0, td, td_len, err,
                           err_len))
        return false;
    /* Unreachable: the two passes agree (the unit tests compare them). */
    return fail(err, err_len, "SPIFFE ID is not valid");
}

bool entries_spiffe_id_valid(const char *id, size_t len, const char *trust_domain, char *err,
                             size_t err_len)
{
    return spiffe_id_check(id, len, trust_domain, err, err_len);
}

bool entries_audience_valid(const char *aud, size_t len, char *err, size_t err_len)
{
    char q[TEXT_QUOTE_BUF];
    if (!aud || len == 0)
        return fail(err, err_len, "audience is empty; it needs 1 to %u bytes", ENTRY_AUDIENCE_MAX);
    if (len > ENTRY_AUDIENCE_MAX)
        return fail(err, err_len, "audience is %zu bytes, more than the limit of %u", len,
                    ENTRY_AUDIENCE_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)aud[i];
        if (c < 0x21 || c > 0x7e)
            return fail(err, err_len,
                        "audience may hold only printable ASCII without spaces, not '%s' at byte "
                        "%zu",
                        text_quote(q, aud + i, 1), i);
    }
    return true;
}

/* One byte per lane, as in text.c. */
#define LANES(b) (0x0101010101010101u * (uint64_t)(b))

/* The lanes of x that are not lowercase hex digits, as their high bits.
 * With the high bit set in every lane first, subtracting a constant below
 * 0x80 never borrows from the next lane, so each lane's high bit says
 * whether its byte is at least that constant. */
static uint64_t hex_lanes_bad(uint64_t x)
{
    uint64_t t = x | LANES(0x80);
    uint64_t digit = (t - LANES('0')) & ~(t - LANES('9' + 1));
    uint64_t af = (t - LANES('a')) & ~(t - LANES('f' + 1));
    return (x | ~(digit | af)) & LANES(0x80);
}

bool entries_id_valid(const char *id, size_t len)
{
    if (!id || len != ENTRY_ID_LEN)
        return false;
    uint64_t bad = 0;
    for (size_t i = 0; i < ENTRY_ID_LEN; i += sizeof(uint64_t)) {
        uint64_t x;
        memcpy(&x, id + i, sizeof(x));
        bad |= hex_lanes_bad(x);
    }
    return bad == 0;
}

_Static_assert(sizeof(void *) != 8 || sizeof(struct entry) == 104,
               "struct entry has no holes on LP64: a load holds one per entry");

bool entry_id_ok(const struct entry *e)
{
    /* The array is ENTRY_ID_LEN + 1 bytes: a NUL at the end, none before
     * (hex digits are not NUL). */
    return e->id[ENTRY_ID_LEN] == '\0' && entries_id_valid(e->id, ENTRY_ID_LEN);
}

/* A hint is shown to operators: UTF-8 text without C0, DEL or C1 controls. */
static bool hint_check(const char *hint, size_t len, char *err, size_t err_len)
{
    if (len > ENTRY_HINT_MAX)
        return fail(err, err_len, "hint is %zu bytes, more than the limit of %u", len,
                    ENTRY_HINT_MAX);
    size_t ok = text_printable_span(hint, len);
    if (ok == len)
        return true;
    if (text_utf8_seq((const unsigned char *)hint + ok, len - ok, NULL) == 0)
        return fail(err, err_len, "hint is not valid UTF-8 at byte %zu", ok);
    return fail(err, err_len, "hint holds a control character at byte %zu", ok);
}

/* --- entries ------------------------------------------------------------- */

struct span {
    const char *p;
    size_t len;
};

/* Bytewise, shorter first on a common prefix: strcmp's order for NUL-free
 * strings. */
static int span_cmp(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    int c = memcmp(x->p, y->p, x->len < y->len ? x->len : y->len);
    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static size_t spans_sort_unique(struct span *v, size_t n)
{
    /* Sorted and unique already (as the store keeps them): n - 1
     * comparisons, no sort. */
    size_t i = 1;
    while (i < n && span_cmp(&v[i - 1], &v[i]) < 0)
        i++;
    if (i >= n)
        return n;
    qsort(v, n, sizeof(*v), span_cmp);
    size_t w = 1;
    for (size_t r = 1; r < n; r++)
        if (span_cmp(&v[r], &v[w - 1]) != 0)
            v[w++] = v[r];
    return w;
}

/* Fields checked and ready to copy into one allocation. */
struct entry_fields {
    char id[ENTRY_ID_LEN + 1];
    struct span spiffe_id;
    struct span sel[ENTRY_MAX_SELECTORS];
    size_t n_sel;
    struct span aud[ENTRY_MAX_AUDIENCES];
    size_t n_aud;
    struct span hint; /* p NULL: none */
    uint32_t ttl;
    int64_t created_at;
    uint64_t revision;
};

/* lens NULL: the strings are NUL-terminated (bounded by max + 1, so an
 * over-long one is reported as such rather than read to its end). */
static size_t part_len(const char *s, const size_t *lens, size_t i, size_t max)
{
    return lens ? lens[i] : strnlen(s, max + 1);
}

static bool fields_selectors(struct entry_fields *f, const char *const *sel, const size_t *lens,
                             size_t n, char *err, size_t err_len)
{
    char q[TEXT_QUOTE_BUF], why[160];
    if (n == 0)
        return fail(err, err_len, "an entry needs at least 1 selector, got 0");
    if (n > ENTRY_MAX_SELECTORS)
        return fail(err, err_len, "an entry has at most %u selectors, got %zu", ENTRY_MAX_SELECTORS,
                    n);
    if (!sel)
        return fail(err, err_len, "selectors are missing");
    for (size_t i = 0; i < n; i++) {
        if (!sel[i])
            return fail(err, err_len, "selector %zu of %zu is missing", i + 1, n);
        size_t len = part_len(sel[i], lens, i, SELECTOR_MAX_LEN);
        if (len > SELECTOR_MAX_LEN)
            return fail(err, err_len, "selector %zu of %zu is %zu bytes, more than the limit of %u",
                        i + 1, n, len, (unsigned)SELECTOR_MAX_LEN);
        if (!selector_valid(sel[i], len, why, sizeof(why)))
            return fail(err, err_len, "selector %zu of %zu ('%s'): %s", i + 1, n,
                        text_quote(q, sel[i], len), why);
        f->sel[i] = (struct span){sel[i], len};
    }
    f->n_sel = spans_sort_unique(f->sel, n);
    return true;
}

static bool fields_audiences(struct entry_fields *f, const char *const *aud, const size_t *lens,
                             size_t n, char *err, size_t err_len)
{
    char q[TEXT_QUOTE_BUF], why[160];
    if (n > ENTRY_MAX_AUDIENCES)
        return fail(err, err_len, "an entry has at most %u audiences, got %zu", ENTRY_MAX_AUDIENCES,
                    n);
    if (n && !aud)
        return fail(err, err_len, "audiences are missing");
    for (size_t i = 0; i < n; i++) {
        if (!aud[i])
            return fail(err, err_len, "audience %zu of %zu is missing", i + 1, n);
        size_t len = part_len(aud[i], lens, i, ENTRY_AUDIENCE_MAX);
        if (!entries_audience_valid(aud[i], len, why, sizeof(why)))
            return fail(err, err_len, "audience %zu of %zu ('%s'): %s", i + 1, n,
                        text_quote(q, aud[i], len), why);
        f->aud[i] = (struct span){aud[i], len};
    }
    f->n_aud = spans_sort_unique(f->aud, n);
    return true;
}

static bool fields_hint(struct entry_fields *f, const char *hint, size_t len, char *err,
                        size_t err_len)
{
    if (!hint || len == 0)
        return true; /* an empty hint is no hint */
    if (!hint_check(hint, len, err, err_len))
        return false;
    f->hint = (struct span){hint, len};
    return true;
}

static char *copy_span(char **pos, struct span s)
{
    char *out = *pos;
    memcpy(out, s.p, s.len);
    out[s.len] = '\0';
    *pos += s.len + 1;
    return out;
}

/* One allocation holds the entry, its pointer arrays and its strings. */
static int entry_build(const struct entry_fields *f, struct entry **ret)
{
    size_t size = sizeof(struct entry) + (f->n_sel + f->n_aud) * sizeof(char *);
    size += f->spiffe_id.len + 1 + (f->hint.p ? f->hint.len + 1 : 0);
    for (size_t i = 0; i < f->n_sel; i++)
        size += f->sel[i].len + 1;
    for (size_t i = 0; i < f->n_aud; i++)
        size += f->aud[i].len + 1;
    struct entry *e = malloc(size); /* every byte is written below */
    if (!e)
        return -ENOMEM;
    memset(e, 0, sizeof(*e));
    /* sizeof(struct entry) is a multiple of its alignment, which covers a
     * pointer's. */
    char **ptrs = (char **)(e + 1);
    char *pos = (char *)(ptrs + f->n_sel + f->n_aud);
    atomic_init(&e->refs, 1);
    memcpy(e->id, f->id, sizeof(e->id));
    e->spiffe_id = copy_span(&pos, f->spiffe_id);
    e->n_selectors = f->n_sel;
    e->selectors = ptrs;
    for (size_t i = 0; i < f->n_sel; i++)
        e->selectors[i] = copy_span(&pos, f->sel[i]);
    e->n_audiences = (uint32_t)f->n_aud;
    e->audiences = f->n_aud ? ptrs + f->n_sel : NULL;
    for (size_t i = 0; i < f->n_aud; i++)
        e->audiences[i] = copy_span(&pos, f->aud[i]);
    e->hint = f->hint.p ? copy_span(&pos, f->hint) : NULL;
    e->ttl = f->ttl;
    e->created_at = f->created_at;
    e->revision = f->revision;
    *ret = e;
    return 0;
}

int entry_new(const struct entry_spec *spec, const char *trust_domain, uint32_t default_ttl,
              uint32_t max_ttl, struct entry **ret, char *err, size_t err_len)
{
    struct entry_fields f = {0};
    unsigned char raw[ENTRY_ID_LEN / 2];

    if (!spec || !ret)
        return -EINVAL;
    if (!trust_domain) {
        (void)fail(err, err_len, "no trust domain is configured");
        return -EINVAL;
    }
    if (!spiffe_id_check(spec->spiffe_id, spec->spiffe_id_len, trust_domain, err, err_len))
        return -EINVAL;
    f.spiffe_id = (struct span){spec->spiffe_id, spec->spiffe_id_len};
    if (!fields_selectors(&f, spec->selectors, spec->selector_lens, spec->n_selectors, err,
                          err_len))
        return -EINVAL;
    if (spec->ttl > max_ttl) {
        (void)fail(err, err_len, "ttl %u seconds is more than the limit of %u seconds (max_ttl)",
                   spec->ttl, max_ttl);
        return -EINVAL;
    }
    f.ttl = spec->ttl ? spec->ttl : default_ttl;
    if (f.ttl == 0) {
        (void)fail(err, err_len, "ttl is 0 and so is the default ttl; give a ttl of 1 to %u",
                   max_ttl);
        return -EINVAL;
    }
    if (!fields_audiences(&f, spec->audiences, spec->audience_lens, spec->n_audiences, err,
                          err_len) ||
        !fields_hint(&f, spec->hint, spec->hint_len, err, err_len))
        return -EINVAL;

    int r = entries_sodium_ready();
    if (r < 0) {
        (void)fail(err, err_len, "libsodium failed to initialize");
        return r;
    }
    randombytes_buf(raw, sizeof(raw));
    (void)sodium_bin2hex(f.id, sizeof(f.id), raw, sizeof(raw));
    f.created_at = (int64_t)time(NULL);
    f.revision = 1;
    return entry_build(&f, ret);
}

/* Everything entry_new checks but the trust domain, then one allocation. */
static int entry_from_checked_parts(const char *id, size_t id_len, const char *spiffe_id,
                                    size_t spiffe_id_len, const char *const *selectors,
                                    const size_t *selector_lens, size_t n_selectors, uint32_t ttl,
                                    const char *const *audiences, const size_t *audience_lens,
                                    size_t n_audiences, const char *hint, size_t hint_len,
                                    int64_t created_at, uint64_t revision, struct entry **ret,
                                    char *err, size_t err_len)
{
    /* Not zeroed as a whole (it is mostly span arrays, filled up to their
     * counts): a load builds every entry through here. */
    struct entry_fields f;
    f.n_sel = f.n_aud = 0;
    f.hint = (struct span){NULL, 0};

    if (!entries_id_valid(id, id_len)) {
        (void)fail(err, err_len, "entry id must be %u lowercase hex characters", ENTRY_ID_LEN);
        return -EINVAL;
    }
    memcpy(f.id, id, ENTRY_ID_LEN);
    f.id[ENTRY_ID_LEN] = '\0';
    if (!spiffe_id_check(spiffe_id, spiffe_id_len, NULL, err, err_len))
        return -EINVAL;
    f.spiffe_id = (struct span){spiffe_id, spiffe_id_len};
    if (!fields_selectors(&f, selectors, selector_lens, n_selectors, err, err_len))
        return -EINVAL;
    if (ttl == 0) {
        (void)fail(err, err_len, "ttl is 0; an entry's ttl is 1 second or more");
        return -EINVAL;
    }
    f.ttl = ttl;
    if (!fields_audiences(&f, audiences, audience_lens, n_audiences, err, err_len) ||
        !fields_hint(&f, hint, hint_len, err, err_len))
        return -EINVAL;
    f.created_at = created_at;
    f.revision = revision;
    return entry_build(&f, ret);
}

int entry_from_parts(const char *id, const char *spiffe_id, const char *const *selectors,
                     size_t n_selectors, uint32_t ttl, const char *const *audiences,
                     size_t n_audiences, const char *hint, int64_t created_at, uint64_t revision,
                     struct entry **ret, char *err, size_t err_len)
{
    if (!ret)
        return -EINVAL;
    return entry_from_checked_parts(id, id ? strnlen(id, ENTRY_ID_LEN + 1) : 0, spiffe_id,
                                    spiffe_id ? strnlen(spiffe_id, SPIFFE_ID_MAX + 1) : 0,
                                    selectors, NULL, n_selectors, ttl, audiences, NULL, n_audiences,
                                    hint, hint ? strnlen(hint, ENTRY_HINT_MAX + 1) : 0, created_at,
                                    revision, ret, err, err_len);
}

/* Splits a block of strings that each end with a NUL into at most max
 * pointers and lengths; returns how many strings it holds (more than max
 * when it holds too many), or SIZE_MAX when the last has no NUL. */
static size_t entry_block_split(const char *block, size_t len, const char **ptrs, size_t *lens,
                                size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < len; n++) {
        const char *nul = memchr(block + i, '\0', len - i);
        if (!nul)
            return SIZE_MAX;
        if (n < max) {
            ptrs[n] = block + i;
            lens[n] = (size_t)(nul - (block + i));
        }
        i = (size_t)(nul - block) + 1;
    }
    return n;
}

int entry_from_stored(const struct entry_stored *in, struct entry **ret, char *err, size_t err_len)
{
    const char *sel[ENTRY_MAX_SELECTORS], *aud[ENTRY_MAX_AUDIENCES];
    size_t sel_lens[ENTRY_MAX_SELECTORS], aud_lens[ENTRY_MAX_AUDIENCES];

    if (!in || !ret || (in->selectors_len && !in->selectors) ||
        (in->audiences_len && !in->audiences))
        return -EINVAL;
    size_t n_sel =
        entry_block_split(in->selectors, in->selectors_len, sel, sel_lens, ENTRY_MAX_SELECTORS);
    size_t n_aud =
        entry_block_split(in->audiences, in->audiences_len, aud, aud_lens, ENTRY_MAX_AUDIENCES);
    if (n_sel == SIZE_MAX || n_aud == SIZE_MAX) {
        (void)fail(err, err_len, "the %s are not a list of strings that each end with a NUL",
                   n_sel == SIZE_MAX ? "selectors" : "audiences");
        return -EINVAL;
    }
    return entry_from_checked_parts(in->id, in->id_len, in->spiffe_id, in->spiffe_id_len, sel,
                                    sel_lens, n_sel, in->ttl, aud, aud_lens, n_aud, in->hint,
                                    in->hint ? in->hint_len : 0, in->created_at, in->revision, ret,
                                    err, err_len);
}

struct entry *entry_ref(struct entry *e)
{
    if (e)
        atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

struct entry *entry_unref(struct entry *e)
{
    if (e && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        free(e);
    }
    return NULL;
}

int entry_cmp(const struct entry *a, const struct entry *b)
{
    if (a->created_at != b->created_at)
        return a->created_at < b->created_at ? -1 : 1;
    return strcmp(a->id, b->id);
}

bool entry_same_identity(const struct entry *a, const struct entry *b)
{
    if (a->n_selectors != b->n_selectors || strcmp(a->spiffe_id, b->spiffe_id) != 0)
        return false;
    for (size_t i = 0; i < a->n_selectors; i++)
        if (strcmp(a->selectors[i], b->selectors[i]) != 0)
            return false;
    return true;
}
