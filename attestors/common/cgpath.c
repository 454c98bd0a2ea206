/* cgpath: /proc/<pid>/cgroup as the kernel writes it, and what its paths say
 * about containers and systemd units. Pure functions: no I/O, no allocation,
 * bounded work, so that a fixture table and a fuzzer can drive them.
 *
 * Who can name a cgroup decides what its name proves. Only root can create a
 * directory at the root of a hierarchy, only the system manager creates the
 * slices and units of its tree, and a container runtime (root) creates its
 * containers' cgroups where the layouts in cgpath_container.c say. A user
 * whose user manager has a delegated subtree
 * (/user.slice/user-UID.slice/user@UID.service/...) can create anything
 * inside it, named anything; so can a container whose cgroup is delegated
 * to it. So a name proves something only in a position
 * that its creator alone could write. */
#define _GNU_SOURCE
#include "cgpath.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgpath_internal.h"

/* ---- text helpers ---- */

bool cgpath_all_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!cgpath_is_lower_hex(s[i]))
            return false;
    return true;
}

/* A decimal number as the kernel prints one: digits only, no sign, no
 * leading zero, at most max. */
bool cgpath_parse_u32(const char *s, size_t len, uint32_t max, uint32_t *ret)
{
    uint64_t v = 0;
    if (len == 0 || len > 10 || (len > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!cgpath_is_digit(s[i]))
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *ret = (uint32_t)v;
    return true;
}

void cgpath_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* ---- /proc/<pid>/cgroup ---- */

/* Controller lists: kernel controller names ([a-z0-9_]) joined by ',', or
 * "name=X" for a named v1 hierarchy (X: alphanumerics, '_', '-', '.'). */
static bool cgpath_controllers_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!cgpath_is_alnum(c) && c != '_' && c != '-' && c != '.' && c != ',' && c != '=')
            return false;
    }
    return true;
}

struct cgpath_span {
    uint32_t hierarchy;
    size_t ctl_off, ctl_len;
    size_t path_off, path_len;
};

/* Each line is "ID:CONTROLLERS:PATH\n". The path is everything after the
 * second ':' (a cgroup's name may hold ':'; the kernel refuses '\n' in one,
 * which is what keeps this file parseable). Hierarchy 0 is v2 and has no
 * controllers. No hierarchy and no controller list appears twice. The whole
 * text is checked before ret is touched. */
int cgpath_parse(const char *text, size_t len, struct cgpath_table *ret)
{
    struct cgpath_span spans[CGPATH_LINES_MAX];
    size_t n = 0, pos = 0;

    if (!ret || (!text && len))
        return -EINVAL;
    if (len > CGPATH_TEXT_MAX)
        return -E2BIG;
    if (len > 0 && (memchr(text, '\0', len) || text[len - 1] != '\n'))
        return -EINVAL;

    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = (size_t)(nl - line);
        const char *c1, *c2;
        struct cgpath_span *sp;

        if (line_len > CGPATH_LINE_MAX || n == CGPATH_LINES_MAX)
            return -E2BIG;
        c1 = memchr(line, ':', line_len);
        if (!c1)
            return -EINVAL;
        c2 = memchr(c1 + 1, ':', line_len - (size_t)(c1 + 1 - line));
        if (!c2)
            return -EINVAL;
        sp = &spans[n];
        if (!cgpath_parse_u32(line, (size_t)(c1 - line), INT32_MAX, &sp->hierarchy))
            return -EINVAL;
        sp->ctl_off = (size_t)(c1 + 1 - text);
        sp->ctl_len = (size_t)(c2 - (c1 + 1));
        sp->path_off = (size_t)(c2 + 1 - text);
        sp->path_len = (size_t)(nl - (c2 + 1));
        if (!cgpath_controllers_valid(text + sp->ctl_off, sp->ctl_len))
            return -EINVAL;
        if (sp->hierarchy == 0 && sp->ctl_len != 0)
            return -EINVAL;
        if (sp->path_len == 0 || text[sp->path_off] != '/')
            return -EINVAL;
        for (size_t i = 0; i < n; i++) {
            if (spans[i].hierarchy == sp->hierarchy)
                return -EINVAL;
            if (sp->ctl_len && spans[i].ctl_len == sp->ctl_len &&
                memcmp(text + spans[i].ctl_off, text + sp->ctl_off, sp->ctl_len) == 0)
                return -EINVAL;
        }
        n++;
        pos = (size_t)(nl + 1 - text);
    }

    if (len)
        memcpy(ret->buf, text, len);
    ret->buf[len] = '\0';
    for (size_t i = 0; i < n; i++) {
        ret->buf[spans[i].ctl_off + spans[i].ctl_len] = '\0';   /* the second ':' */
        ret->buf[spans[i].path_off + spans[i].path_len] = '\0'; /* the newline */
        ret->lines[i] = (struct cgpath_line){
            .hierarchy = spans[i].hierarchy,
            .controllers = ret->buf + spans[i].ctl_off,
            .path = ret->buf + spans[i].path_off,
        };
    }
    ret->n = n;
    return 0;
}

const struct cgpath_line *cgpath_unified(const struct cgpath_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->lines[i].hierarchy == 0)
            return &t->lines[i];
    return NULL;
}

/* ---- paths and segments ---- */

/* See cgpath_internal.h. */
int cgpath_split(const char *path, struct cgpath_split *sp)
{
    size_t len, i = 1;

    if (!path || path[0] != '/')
        return -EINVAL;
    len = strnlen(path, CGPATH_LINE_MAX + 1);
    if (len > CGPATH_LINE_MAX)
        return -E2BIG;
    sp->path = path;
    sp->n = 0;
    if (len == 1)
        return 1;
    while (i <= len) {
        const char *start = path + i;
        const char *slash = memchr(start, '/', len - i);
        size_t seg_len = slash ? (size_t)(slash - start) : len - i;
        if (seg_len == 0 || cgpath_mem_is(start, seg_len, ".") ||
            cgpath_mem_is(start, seg_len, ".."))
            return 0;
        if (sp->n == CGPATH_SEGMENTS_MAX)
            return -E2BIG;
        sp->segs[sp->n++] = (struct cgpath_seg){.off = (uint16_t)i, .len = (uint16_t)seg_len};
        i += seg_len + 1;
    }
    return 1;
}

/* ---- systemd names ---- */

/* systemd escapes a unit's cgroup name that could clash with a kernel file
 * ("cpu.service" becomes "_cpu.service", "_x.service" becomes
 * "__x.service"); one leading '_' is dropped to get the unit's name back. */
static void cgpath_unescape(const char **s, size_t *len)
{
    if (*len > 0 && (*s)[0] == '_') {
        (*s)++;
        (*len)--;
    }
}

/* systemd's unit name rules: NAME.TYPE, NAME of [A-Za-z0-9:_.\\-] and '@'
 * (the first '@' separates a template from its instance, which must not be
 * empty: a bare template never runs), shorter than 256 bytes. Escapes such
 * as "\x2d" are kept as written. */
static bool cgpath_unit_valid(const char *s, size_t len, const char *type)
{
    const char *dot, *at = NULL;

    if (len == 0 || len > CGPATH_UNIT_MAX)
        return false;
    dot = memrchr(s, '.', len);
    if (!dot || dot == s || !cgpath_mem_is(dot + 1, len - (size_t)(dot + 1 - s), type))
        return false;
    for (const char *p = s; p < dot; p++) {
        if (*p == '@' && !at)
            at = p;
        if (!cgpath_is_alnum(*p) && !strchr(":-_.\\@", *p))
            return false;
    }
    return at != s && (!at || at + 1 != dot);
}

/* A slice as named in the cgroup tree: returns its stem (the unit name
 * without ".slice"). systemd also forbids a leading, trailing or doubled
 * '-' in a slice's stem, as '-' separates the levels of nesting. */
bool cgpath_slice_stem(const char *s, size_t len, const char **ret_stem, size_t *ret_len)
{
    size_t stem_len;

    cgpath_unescape(&s, &len);
    if (!cgpath_unit_valid(s, len, "slice"))
        return false;
    stem_len = len - strlen(".slice");
    if (s[0] == '-' || s[stem_len - 1] == '-' || memmem(s, stem_len, "--", 2))
        return false; /* also refuses "-.slice", the root, which is no directory */
    *ret_stem = s;
    *ret_len = stem_len;
    return true;
}

/* The run of slices starting at segment s (the root of a hierarchy, or of a
 * container's own tree). Returns the index of the first segment after it.
 *
 * systemd nests "a-b.slice" in "a.slice", but that is not required here:
 * every directory directly in a slice is root's (the system manager's
 * units, or what root made by hand), nested or not, and what matters for
 * trust is that no unit, where delegation happens, lies on the way. (Old
 * kubelets wrote pod UIDs with their dashes into slice names, which breaks
 * the nesting rule; SPIRE's fixtures keep that form.) */
size_t cgpath_slice_run(const struct cgpath_split *sp, size_t s)
{
    size_t i;

    for (i = s; i < sp->n; i++) {
        const char *stem;
        size_t len;
        if (!cgpath_slice_stem(cgpath_seg_ptr(sp, i), cgpath_seg_len(sp, i), &stem, &len))
            break;
    }
    return i;
}

/* Segment i as a unit of one of the types that hold processes of their own
 * (service, scope), unescaped, into out. */
bool cgpath_unit_at(const struct cgpath_split *sp, size_t i, char out[CGPATH_UNIT_MAX + 1])
{
    const char *s = cgpath_seg_ptr(sp, i);
    size_t len = cgpath_seg_len(sp, i);

    cgpath_unescape(&s, &len);
    if (!cgpath_unit_valid(s, len, "service") && !cgpath_unit_valid(s, len, "scope"))
        return false;
    cgpath_copy(out, CGPATH_UNIT_MAX + 1, s, len);
    return true;
}

void cgpath_slice_name_at(const struct cgpath_split *sp, size_t i, char out[CGPATH_UNIT_MAX + 1])
{
    const char *s = cgpath_seg_ptr(sp, i);
    size_t len = cgpath_seg_len(sp, i);

    cgpath_unescape(&s, &len);
    cgpath_copy(out, CGPATH_UNIT_MAX + 1, s, len);
}

/* "PREFIX<uid>SUFFIX" where both segments were made by the system manager
 * for one user: user-UID.slice and user@UID.service. */
static bool cgpath_uid_in(const char *s, size_t len, const char *prefix, const char *suffix,
                          uint32_t *ret)
{
    size_t np = strlen(prefix), ns = strlen(suffix);
    if (!cgpath_mem_starts(s, len, prefix) || !cgpath_mem_ends(s, len, suffix) || len < np + ns)
        return false;
    return cgpath_parse_u32(s + np, len - np - ns, CGPATH_UID_MAX, ret);
}

/* Segments 0..2 are /user.slice/user-UID.slice/user@UID.service: the user
 * manager of UID, whose cgroup and everything below it is delegated to UID. */
bool cgpath_user_manager(const struct cgpath_split *sp, uint32_t *ret_uid)
{
    uint32_t a, b;
    if (sp->n < 3 || !cgpath_seg_is(sp, 0, "user.slice") ||
        !cgpath_uid_in(cgpath_seg_ptr(sp, 1), cgpath_seg_len(sp, 1), "user-", ".slice", &a) ||
        !cgpath_uid_in(cgpath_seg_ptr(sp, 2), cgpath_seg_len(sp, 2), "user@", ".service", &b) ||
        a != b)
        return false;
    *ret_uid = a;
    return true;
}

/* ---- selectors ---- */

int cgpath_emit(sockid_emit_fn emit, void *emit_ctx, const char *type, const char *key,
                const char *value)
{
    int r = emit(emit_ctx, type, key, value);
    return r < 0 ? r : 0;
}

/* cgroup:unified:/path for the v2 line, cgroup:CONTROLLERS:/path for each v1
 * line, in the file's order. A v1 line with an empty controller list (a
 * hierarchy with neither controller nor name) is left out: the only thing
 * that tells it apart is its hierarchy number, which is not stable across
 * boots, so a selector naming it would match the wrong hierarchy after a
 * reboot. A path the host refuses (control characters, invalid UTF-8, over
 * 1024 bytes) or a key it refuses (over 64 bytes) is left out too: the
 * kernel allows such names, and leaving a selector out only makes fewer
 * entries match. */
int cgpath_emit_cgroup(const struct cgpath_table *t, sockid_emit_fn emit, void *emit_ctx)
{
    if (!t || !emit)
        return -EINVAL;
    for (size_t i = 0; i < t->n; i++) {
        const struct cgpath_line *l = &t->lines[i];
        const char *key = l->hierarchy == 0 ? "unified" : l->controllers;
        int r;
        if (!key[0])
            continue;
        r = emit(emit_ctx, "cgroup", key, l->path);
        if (r == -EINVAL)
            continue;
        if (r < 0)
            return r;
    }
    return 0;
}
