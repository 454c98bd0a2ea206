/* Registration entries: validation, the entry model, snapshots with an
 * inverted index, matching, and publication (see entries.h).
 *
 * Index. Every distinct selector string of a snapshot is interned into an
 * open-addressing table keyed by SipHash-2-4 (crypto_shorthash) under a
 * random per-snapshot key, so selectors a workload chooses (its executable
 * path, its cgroup names) cannot be crafted to collide. Each entry is listed
 * under exactly one of its selectors, the rarest one (held by the fewest
 * entries), and keeps its selectors as interned ids. To match, the workload's
 * selectors are looked up (one hash each), the ids found are sorted, and only
 * the entries listed under those ids are candidates; a candidate matches when
 * each of its ids is among the workload's (binary search). An entry whose
 * rarest selector the workload lacks cannot match, so it is never visited:
 * the cost is the workload's selectors plus their postings, whatever the
 * number of entries. Postings are in the stable order; matches from several
 * postings are merged by binary insertion into the caller's array, so
 * matching allocates nothing. A derived snapshot splices its base's two
 * orders (stable and by id) in O(n) and rebuilds the index in O(n).
 *
 * Publication. The registry holds the current snapshot under a mutex and an
 * atomic generation that the publisher bumps inside the same critical
 * section. A reader caches (generation, snapshot), both read under the
 * mutex, and on each get compares its generation with one relaxed load: the
 * fast path touches only the reader's own snapshot, to which it holds a
 * reference, so it needs no ordering beyond coherence (a publish that
 * happens before a get is seen by it). The snapshot's contents are made
 * visible to a reader by the mutex, which it takes whenever the generation
 * differs. Reference counts are incremented relaxed and decremented with
 * acq_rel, so that whoever frees sees every other holder's last use (the
 * same cost as release plus an acquire fence on the freeing path, and
 * ThreadSanitizer understands it). */
#include "entries.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#define SPIFFE_SCHEME     "spiffe://"
#define SPIFFE_SCHEME_LEN (sizeof(SPIFFE_SCHEME) - 1)
/* How much of an offending value a message quotes. */
#define QUOTE_MAX 64u
#define QUOTE_BUF (QUOTE_MAX * 4u + 8u)
#define NONE      UINT32_MAX

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

/* s for a message: printable ASCII as is, anything else as \xNN, at most
 * QUOTE_MAX bytes, so that a hostile value reaches a terminal as text. */
static const char *quote(char out[static QUOTE_BUF], const char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < QUOTE_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, QUOTE_BUF - o, "\\x%02x", c);
    }
    if (len > QUOTE_MAX)
        o += (size_t)snprintf(out + o, QUOTE_BUF - o, "...");
    out[o] = '\0';
    return out;
}

static int sodium_ready(void)
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
    char q[QUOTE_BUF];
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
                        what, quote(q, td + i, 1), i);
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
    char q[QUOTE_BUF];
    if (len <= 1)
        return fail(err, err_len, "SPIFFE ID has no path; it must be spiffe://%s/<path>",
                    quote(q, td, td_len));
    if (path[len - 1] == '/')
        return fail(err, err_len, "SPIFFE ID ends with '/'; remove the trailing slash");
    size_t start = 1;
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/') {
            if (!path_char(path[i]))
                return fail(err, err_len,
                            "SPIFFE ID path may hold only letters, digits, '.', '-', '_' and '/', "
                            "not '%s' at byte %zu",
                            quote(q, path + i, 1), (size_t)(path - td) + SPIFFE_SCHEME_LEN + i);
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

/* trust_domain NULL: any valid trust domain (entry_from_parts). */
static bool spiffe_id_check(const char *id, size_t len, const char *trust_domain, char *err,
                            size_t err_len)
{
    char q[QUOTE_BUF], q2[QUOTE_BUF];
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
                    quote(q, td, td_len), quote(q2, trust_domain, strlen(trust_domain)));
    return spiffe_path_check(slash ? slash : td + td_len, slash ? rest - td_len : 0, td, td_len,
                             err, err_len);
}

bool entries_spiffe_id_valid(const char *id, size_t len, const char *trust_domain, char *err,
                             size_t err_len)
{
    return spiffe_id_check(id, len, trust_domain, err, err_len);
}

bool entries_audience_valid(const char *aud, size_t len, char *err, size_t err_len)
{
    char q[QUOTE_BUF];
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
                        quote(q, aud + i, 1), i);
    }
    return true;
}

bool entries_id_valid(const char *id, size_t len)
{
    if (!id || len != ENTRY_ID_LEN)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

/* The code point of the UTF-8 sequence at s into *cp, returning its length,
 * or 0 when invalid (overlong, surrogate, past U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t left, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
        (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* A hint is shown to operators: UTF-8 text without C0, DEL or C1 controls. */
static bool hint_check(const char *hint, size_t len, char *err, size_t err_len)
{
    if (len > ENTRY_HINT_MAX)
        return fail(err, err_len, "hint is %zu bytes, more than the limit of %u", len,
                    ENTRY_HINT_MAX);
    const unsigned char *p = (const unsigned char *)hint;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return fail(err, err_len, "hint is not valid UTF-8 at byte %zu", i);
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return fail(err, err_len, "hint holds a control character at byte %zu", i);
        i += n;
    }
    return true;
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
    if (n < 2)
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
    char q[QUOTE_BUF], why[160];
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
                        quote(q, sel[i], len), why);
        f->sel[i] = (struct span){sel[i], len};
    }
    f->n_sel = spans_sort_unique(f->sel, n);
    return true;
}

static bool fields_audiences(struct entry_fields *f, const char *const *aud, const size_t *lens,
                             size_t n, char *err, size_t err_len)
{
    char q[QUOTE_BUF], why[160];
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
                        quote(q, aud[i], len), why);
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
    struct entry *e = calloc(1, size);
    if (!e)
        return -ENOMEM;
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
    e->n_audiences = f->n_aud;
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

    int r = sodium_ready();
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

int entry_from_parts(const char *id, const char *spiffe_id, const char *const *selectors,
                     size_t n_selectors, uint32_t ttl, const char *const *audiences,
                     size_t n_audiences, const char *hint, int64_t created_at, uint64_t revision,
                     struct entry **ret, char *err, size_t err_len)
{
    struct entry_fields f = {0};

    if (!ret)
        return -EINVAL;
    if (!id || !entries_id_valid(id, strnlen(id, ENTRY_ID_LEN + 1))) {
        (void)fail(err, err_len, "entry id must be %u lowercase hex characters", ENTRY_ID_LEN);
        return -EINVAL;
    }
    memcpy(f.id, id, ENTRY_ID_LEN + 1);
    size_t id_len = spiffe_id ? strnlen(spiffe_id, SPIFFE_ID_MAX + 1) : 0;
    if (!spiffe_id_check(spiffe_id, id_len, NULL, err, err_len))
        return -EINVAL;
    f.spiffe_id = (struct span){spiffe_id, id_len};
    if (!fields_selectors(&f, selectors, NULL, n_selectors, err, err_len))
        return -EINVAL;
    if (ttl == 0) {
        (void)fail(err, err_len, "ttl is 0; an entry's ttl is 1 second or more");
        return -EINVAL;
    }
    f.ttl = ttl;
    if (!fields_audiences(&f, audiences, NULL, n_audiences, err, err_len) ||
        !fields_hint(&f, hint, hint ? strnlen(hint, ENTRY_HINT_MAX + 1) : 0, err, err_len))
        return -EINVAL;
    f.created_at = created_at;
    f.revision = revision;
    return entry_build(&f, ret);
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

/* --- snapshots ----------------------------------------------------------- */

/* An open-addressing slot: the hash's high half, and an index plus one
 * (0: empty). Tables are at most half full, probed linearly. */
struct slot {
    uint32_t tag;
    uint32_t idx1;
};

struct entries_snapshot {
    atomic_uint refs;
    size_t n;
    struct entry **entries; /* stable order; one reference each */
    struct entry **by_id;   /* the same, sorted by id */
    unsigned char key[crypto_shorthash_KEYBYTES];

    /* Distinct selectors, interned; strings borrowed from the entries. */
    size_t n_sels;
    const char **sel_str;
    uint32_t *sel_len;
    uint64_t *sel_hash;
    struct slot *sel_table;
    size_t sel_mask;

    /* Entry i's selectors as interned ids: ent_sels[ent_off[i] ..
     * ent_off[i + 1]), in the order of its strings. */
    uint32_t *ent_off;
    uint32_t *ent_sels;

    /* Entries listed under their rarest selector: post[post_off[sel] ..
     * post_off[sel + 1]), in the stable order. */
    uint32_t *post_off;
    uint32_t *post;

    /* Entries by SPIFFE ID and selector set. */
    struct slot *id_table;
    size_t id_mask;
};

static uint64_t snap_hash(const struct entries_snapshot *s, const char *p, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;
    (void)crypto_shorthash(out, (const unsigned char *)p, len, s->key);
    memcpy(&h, out, sizeof(h));
    return h;
}

/* A power of two at least twice n (and at least 2). */
static size_t table_size(size_t n)
{
    size_t c = 2;
    while (c < 2 * n)
        c <<= 1;
    return c;
}

static uint32_t sel_lookup(const struct entries_snapshot *s, const char *p, size_t len, uint64_t h)
{
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & s->sel_mask;; i = (i + 1) & s->sel_mask) {
        const struct slot *sl = &s->sel_table[i];
        if (!sl->idx1)
            return NONE;
        uint32_t id = sl->idx1 - 1;
        if (sl->tag == tag && s->sel_len[id] == len && memcmp(s->sel_str[id], p, len) == 0)
            return id;
    }
}

static uint32_t sel_intern(struct entries_snapshot *s, const char *p, size_t len)
{
    uint64_t h = snap_hash(s, p, len);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t i = (size_t)h & s->sel_mask;
    for (;; i = (i + 1) & s->sel_mask) {
        const struct slot *sl = &s->sel_table[i];
        if (!sl->idx1)
            break;
        uint32_t id = sl->idx1 - 1;
        if (sl->tag == tag && s->sel_len[id] == len && memcmp(s->sel_str[id], p, len) == 0)
            return id;
    }
    uint32_t id = (uint32_t)s->n_sels++;
    s->sel_str[id] = p;
    s->sel_len[id] = (uint32_t)len;
    s->sel_hash[id] = h;
    s->sel_table[i] = (struct slot){tag, id + 1};
    return id;
}

/* The SPIFFE ID's hash mixed with its selectors' (in string order). The
 * selector hashes are keyed, so a plain multiply-xor mix spreads them. */
static uint64_t identity_hash(const struct entries_snapshot *s, const char *spiffe_id,
                              const uint64_t *sel_hashes, size_t n)
{
    uint64_t h = snap_hash(s, spiffe_id, strlen(spiffe_id));
    for (size_t i = 0; i < n; i++) {
        h ^= sel_hashes[i];
        h *= 0x9e3779b97f4a7c15u;
        h ^= h >> 29;
    }
    h ^= h >> 32;
    return h;
}

static void snapshot_free(struct entries_snapshot *s)
{
    if (s->entries)
        for (size_t i = 0; i < s->n; i++)
            (void)entry_unref(s->entries[i]);
    free(s->entries);
    free(s->by_id);
    free(s->sel_str);
    free(s->sel_len);
    free(s->sel_hash);
    free(s->sel_table);
    free(s->ent_off);
    free(s->ent_sels);
    free(s->post_off);
    free(s->post);
    free(s->id_table);
    sodium_memzero(s->key, sizeof(s->key));
    free(s);
}

/* Index v (n entries in the stable order, one reference each; by_id, the
 * same sorted by id, unique). Takes v, by_id and the references whatever
 * the outcome. */
static int snapshot_index(struct entry **v, struct entry **by_id, size_t n,
                          struct entries_snapshot **ret)
{
    int r = -ENOMEM;
    uint32_t *count = NULL, *rare = NULL;
    uint64_t hashes[ENTRY_MAX_SELECTORS];
    struct entries_snapshot *s = calloc(1, sizeof(*s));
    if (!s) {
        for (size_t i = 0; i < n; i++)
            (void)entry_unref(v[i]);
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    atomic_init(&s->refs, 1);
    s->entries = v;
    s->by_id = by_id;
    s->n = n;

    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        /* Only entry_new and entry_from_parts make entries, but the index
         * relies on this bound, so a hand-made one is refused. */
        if (v[i]->n_selectors == 0 || v[i]->n_selectors > ENTRY_MAX_SELECTORS) {
            r = -EINVAL;
            goto out;
        }
        total += v[i]->n_selectors;
    }
    if (n >= UINT32_MAX / 2 || total >= UINT32_MAX / 2) {
        r = -E2BIG;
        goto out;
    }
    r = sodium_ready();
    if (r < 0)
        goto out;
    randombytes_buf(s->key, sizeof(s->key));
    r = -ENOMEM;

    size_t cap = total ? total : 1;
    s->sel_mask = table_size(total) - 1;
    s->sel_str = malloc(cap * sizeof(*s->sel_str));
    s->sel_len = malloc(cap * sizeof(*s->sel_len));
    s->sel_hash = malloc(cap * sizeof(*s->sel_hash));
    s->sel_table = calloc(s->sel_mask + 1, sizeof(*s->sel_table));
    s->ent_off = malloc((n + 1) * sizeof(*s->ent_off));
    s->ent_sels = malloc(cap * sizeof(*s->ent_sels));
    count = calloc(cap, sizeof(*count));
    if (!s->sel_str || !s->sel_len || !s->sel_hash || !s->sel_table || !s->ent_off ||
        !s->ent_sels || !count)
        goto out;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        s->ent_off[i] = (uint32_t)k;
        for (size_t j = 0; j < v[i]->n_selectors; j++) {
            const char *sel = v[i]->selectors[j];
            uint32_t id = sel_intern(s, sel, strlen(sel));
            s->ent_sels[k++] = id;
            count[id]++;
        }
    }
    s->ent_off[n] = (uint32_t)k;

    /* Each entry goes under its rarest selector; count, once read, is
     * reused for the postings' fill positions. */
    s->post_off = calloc(s->n_sels + 1, sizeof(*s->post_off));
    s->post = malloc((n ? n : 1) * sizeof(*s->post));
    rare = malloc((n ? n : 1) * sizeof(*rare));
    if (!s->post_off || !s->post || !rare)
        goto out;
    for (size_t i = 0; i < n; i++) {
        uint32_t best = s->ent_sels[s->ent_off[i]];
        for (uint32_t j = s->ent_off[i] + 1; j < s->ent_off[i + 1]; j++)
            if (count[s->ent_sels[j]] < count[best])
                best = s->ent_sels[j];
        rare[i] = best;
        s->post_off[best + 1]++;
    }
    for (size_t i = 0; i < s->n_sels; i++)
        s->post_off[i + 1] += s->post_off[i];
    memcpy(count, s->post_off, s->n_sels * sizeof(*count));
    for (size_t i = 0; i < n; i++)
        s->post[count[rare[i]]++] = (uint32_t)i;

    s->id_mask = table_size(n) - 1;
    s->id_table = calloc(s->id_mask + 1, sizeof(*s->id_table));
    if (!s->id_table)
        goto out;
    for (size_t i = 0; i < n; i++) {
        size_t m = 0;
        for (uint32_t j = s->ent_off[i]; j < s->ent_off[i + 1]; j++)
            hashes[m++] = s->sel_hash[s->ent_sels[j]];
        uint64_t h = identity_hash(s, v[i]->spiffe_id, hashes, m);
        size_t at = (size_t)h & s->id_mask;
        while (s->id_table[at].idx1)
            at = (at + 1) & s->id_mask;
        s->id_table[at] = (struct slot){(uint32_t)(h >> 32), (uint32_t)i + 1};
    }
    *ret = s;
    s = NULL;
    r = 0;
out:
    free(count);
    free(rare);
    if (s)
        snapshot_free(s);
    return r;
}

/* Sort keys that carry what the comparison reads, so that sorting a large
 * snapshot does not chase a pointer per comparison. Ids are validated
 * lowercase hex, so their first 16 characters read as a number in the same
 * order as strcmp; the full id breaks the (rare) tie. */
struct sort_key {
    int64_t created_at;
    uint64_t id_prefix;
    struct entry *e;
};

static uint64_t id_prefix(const char *id)
{
    uint64_t x = 0;
    for (size_t i = 0; i < 16; i++)
        x = x << 4 | (uint64_t)(id[i] <= '9' ? id[i] - '0' : id[i] - 'a' + 10);
    return x;
}

static int cmp_key_id(const void *a, const void *b)
{
    const struct sort_key *x = a, *y = b;
    if (x->id_prefix != y->id_prefix)
        return x->id_prefix < y->id_prefix ? -1 : 1;
    return strcmp(x->e->id, y->e->id);
}

static int cmp_key_stable(const void *a, const void *b)
{
    const struct sort_key *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return cmp_key_id(a, b);
}

int entries_snapshot_new(struct entry *const *entries, size_t n, struct entries_snapshot **ret)
{
    if (!ret || (n && !entries))
        return -EINVAL;
    if (n >= UINT32_MAX / 2)
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        if (!entries[i] || !entries_id_valid(entries[i]->id, strlen(entries[i]->id)))
            return -EINVAL;
    struct sort_key *keys = malloc((n ? n : 1) * sizeof(*keys));
    struct entry **v = malloc((n ? n : 1) * sizeof(*v));
    struct entry **by_id = malloc((n ? n : 1) * sizeof(*by_id));
    if (!keys || !v || !by_id) {
        free(keys);
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        keys[i] = (struct sort_key){entries[i]->created_at, id_prefix(entries[i]->id), entries[i]};
    qsort(keys, n, sizeof(*keys), cmp_key_id);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_key_id(&keys[i - 1], &keys[i]) == 0) {
            free(keys);
            free(v);
            free(by_id);
            return -EEXIST;
        }
        by_id[i] = keys[i].e;
    }
    qsort(keys, n, sizeof(*keys), cmp_key_stable);
    for (size_t i = 0; i < n; i++)
        v[i] = entry_ref(keys[i].e);
    free(keys);
    return snapshot_index(v, by_id, n, ret);
}

/* Where x goes in v (n entries ordered by cmp). */
static size_t insert_at(struct entry *const *v, size_t n, const struct entry *x,
                        int (*cmp)(const struct entry *, const struct entry *))
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(v[mid], x) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int entry_cmp_id(const struct entry *a, const struct entry *b)
{
    return strcmp(a->id, b->id);
}

/* v = base minus gone (NULL: none) plus add (NULL: none), in the order
 * base is in; O(n) copying, O(log n) comparisons. */
static void splice(struct entry **v, struct entry *const *base, size_t n, const struct entry *gone,
                   struct entry *add, int (*cmp)(const struct entry *, const struct entry *))
{
    size_t at = add ? insert_at(base, n, add, cmp) : n;
    size_t skip = gone ? insert_at(base, n, gone, cmp) : n; /* gone is in base */
    size_t w = 0;
    for (size_t i = 0; i <= n; i++) {
        if (add && i == at)
            v[w++] = add;
        if (i < n && i != skip)
            v[w++] = base[i];
    }
}

int entries_snapshot_derive(const struct entries_snapshot *base, struct entry *add,
                            const char *remove_id, struct entries_snapshot **ret)
{
    const struct entry *gone = NULL;
    size_t base_n = base ? base->n : 0;

    if (!ret || (add && (!entries_id_valid(add->id, strlen(add->id)))))
        return -EINVAL;
    if (remove_id) {
        gone = entries_snapshot_find(base, remove_id);
        if (!gone)
            return -ENOENT;
    }
    if (add) {
        const struct entry *same = entries_snapshot_find(base, add->id);
        if (same && same != gone)
            return -EEXIST;
    }
    size_t n = base_n - (gone ? 1 : 0) + (add ? 1 : 0);
    struct entry **v = malloc((n ? n : 1) * sizeof(*v));
    struct entry **by_id = malloc((n ? n : 1) * sizeof(*by_id));
    if (!v || !by_id) {
        free(v);
        free(by_id);
        return -ENOMEM;
    }
    if (base_n) {
        splice(v, base->entries, base_n, gone, add, entry_cmp);
        splice(by_id, base->by_id, base_n, gone, add, entry_cmp_id);
    } else if (add) {
        v[0] = by_id[0] = add;
    }
    for (size_t i = 0; i < n; i++)
        (void)entry_ref(v[i]);
    return snapshot_index(v, by_id, n, ret);
}

struct entries_snapshot *entries_snapshot_ref(struct entries_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

struct entries_snapshot *entries_snapshot_unref(struct entries_snapshot *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        snapshot_free(s);
    }
    return NULL;
}

size_t entries_snapshot_count(const struct entries_snapshot *s)
{
    return s ? s->n : 0;
}

const struct entry *entries_snapshot_at(const struct entries_snapshot *s, size_t i)
{
    return s && i < s->n ? s->entries[i] : NULL;
}

const struct entry *entries_snapshot_find(const struct entries_snapshot *s, const char *id)
{
    if (!s || !id)
        return NULL;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(id, s->by_id[mid]->id);
        if (c == 0)
            return s->by_id[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct entry *entries_snapshot_find_identity(const struct entries_snapshot *s,
                                                   const struct entry *e)
{
    uint64_t hashes[ENTRY_MAX_SELECTORS];
    if (!s || !e || s->n == 0 || e->n_selectors > ENTRY_MAX_SELECTORS)
        return NULL;
    for (size_t i = 0; i < e->n_selectors; i++) {
        size_t len = strlen(e->selectors[i]);
        uint64_t h = snap_hash(s, e->selectors[i], len);
        /* A selector no entry holds: no entry has this identity. */
        if (sel_lookup(s, e->selectors[i], len, h) == NONE)
            return NULL;
        hashes[i] = h;
    }
    uint64_t h = identity_hash(s, e->spiffe_id, hashes, e->n_selectors);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = (size_t)h & s->id_mask;; i = (i + 1) & s->id_mask) {
        const struct slot *sl = &s->id_table[i];
        if (!sl->idx1)
            return NULL;
        if (sl->tag == tag && entry_same_identity(s->entries[sl->idx1 - 1], e))
            return s->entries[sl->idx1 - 1];
    }
}

/* --- matching ------------------------------------------------------------ */

static void sift_down(uint32_t *v, size_t root, size_t n)
{
    for (size_t child; (child = 2 * root + 1) < n; root = child) {
        if (child + 1 < n && v[child + 1] > v[child])
            child++;
        if (v[root] >= v[child])
            return;
        uint32_t t = v[root];
        v[root] = v[child];
        v[child] = t;
    }
}

/* Insertion sort for the usual handful, heapsort past it: no allocation,
 * O(n log n) however many selectors a workload carries. */
static void sort_u32(uint32_t *v, size_t n)
{
    if (n <= 16) {
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            for (; j > 0 && v[j - 1] > x; j--)
                v[j] = v[j - 1];
            v[j] = x;
        }
        return;
    }
    for (size_t i = n / 2; i-- > 0;)
        sift_down(v, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        uint32_t t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift_down(v, 0, end);
    }
}

static bool has_u32(const uint32_t *v, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] == x)
            return true;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

int entries_match(const struct entries_snapshot *s, const struct selector_set *workload,
                  const struct entry **out, size_t cap)
{
    uint32_t wids[SELECTOR_SET_MAX];
    size_t p = 0, found = 0;

    if (!s || !workload || (cap && !out))
        return -EINVAL;
    if (cap > INT_MAX)
        cap = INT_MAX;
    if (s->n == 0)
        return 0;
    size_t wn = workload->n < SELECTOR_SET_MAX ? workload->n : SELECTOR_SET_MAX;
    for (size_t i = 0; i < wn; i++) {
        const char *sel = workload->items[i];
        size_t len = strlen(sel);
        uint32_t id = sel_lookup(s, sel, len, snap_hash(s, sel, len));
        if (id != NONE)
            wids[p++] = id;
    }
    /* Sorted and unique: each posting is walked once even if the caller's
     * set was not sorted, so no entry is reported twice. */
    sort_u32(wids, p);
    size_t u = 0;
    for (size_t i = 0; i < p; i++)
        if (u == 0 || wids[i] != wids[u - 1])
            wids[u++] = wids[i];
    p = u;

    for (size_t w = 0; w < p; w++) {
        uint32_t sel = wids[w];
        for (uint32_t k = s->post_off[sel]; k < s->post_off[sel + 1]; k++) {
            uint32_t idx = s->post[k];
            uint32_t lo = s->ent_off[idx], hi = s->ent_off[idx + 1];
            if (hi - lo > p)
                continue;
            bool all = true;
            for (uint32_t j = lo; j < hi && all; j++)
                all = s->ent_sels[j] == sel || has_u32(wids, p, s->ent_sels[j]);
            if (!all)
                continue;
            if (found == cap)
                return -E2BIG;
            /* Binary insertion keeps out in the stable order. */
            const struct entry *e = s->entries[idx];
            size_t a = 0, b = found;
            while (a < b) {
                size_t mid = a + (b - a) / 2;
                if (entry_cmp(out[mid], e) < 0)
                    a = mid + 1;
                else
                    b = mid;
            }
            memmove(&out[a + 1], &out[a], (found - a) * sizeof(*out));
            out[a] = e;
            found++;
        }
    }
    return (int)found;
}

/* --- publication --------------------------------------------------------- */

struct entries_registry {
    pthread_mutex_t lock;
    /* Bumped under lock with each publish; read without it by readers. */
    _Atomic uint64_t generation;
    struct entries_snapshot *current; /* under lock */
};

/* On success the registry owns initial's reference (NULL: an empty
 * snapshot); on failure the caller keeps it. */
int entries_registry_new(struct entries_snapshot *initial, struct entries_registry **ret)
{
    if (!ret)
        return -EINVAL;
    struct entries_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    int e = pthread_mutex_init(&r->lock, NULL);
    if (e != 0) {
        free(r);
        return -e;
    }
    if (!initial) {
        e = entries_snapshot_new(NULL, 0, &initial);
        if (e < 0) {
            (void)pthread_mutex_destroy(&r->lock);
            free(r);
            return e;
        }
    }
    r->current = initial;
    atomic_init(&r->generation, 1);
    *ret = r;
    return 0;
}

struct entries_registry *entries_registry_free(struct entries_registry *r)
{
    if (!r)
        return NULL;
    (void)entries_snapshot_unref(r->current);
    (void)pthread_mutex_destroy(&r->lock);
    free(r);
    return NULL;
}

void entries_registry_publish(struct entries_registry *r, struct entries_snapshot *s)
{
    if (!r || !s)
        return;
    (void)pthread_mutex_lock(&r->lock);
    struct entries_snapshot *old = r->current;
    r->current = s;
    atomic_fetch_add_explicit(&r->generation, 1, memory_order_relaxed);
    (void)pthread_mutex_unlock(&r->lock);
    /* Outside the lock: freeing a large snapshot must not hold up readers. */
    (void)entries_snapshot_unref(old);
}

const struct entries_snapshot *entries_reader_get(struct entries_registry *r,
                                                  struct entries_reader *reader)
{
    /* Relaxed: on this path the reader uses only its own snapshot, which it
     * already holds; the mutex orders everything else. */
    if (reader->snapshot &&
        atomic_load_explicit(&r->generation, memory_order_relaxed) == reader->generation)
        return reader->snapshot;
    (void)pthread_mutex_lock(&r->lock);
    struct entries_snapshot *s = entries_snapshot_ref(r->current);
    uint64_t g = atomic_load_explicit(&r->generation, memory_order_relaxed);
    (void)pthread_mutex_unlock(&r->lock);
    (void)entries_snapshot_unref(reader->snapshot);
    reader->snapshot = s;
    reader->generation = g;
    return s;
}

void entries_reader_release(struct entries_reader *reader)
{
    if (!reader)
        return;
    reader->snapshot = entries_snapshot_unref(reader->snapshot);
    reader->generation = 0;
}
