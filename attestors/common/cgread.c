/* cgread: reading a peer's cgroup membership, and checking it against the
 * cgroup id the kernel recorded for the peer. */
#define _GNU_SOURCE
#include "cgread.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <linux/magic.h>

/* Most cgroup files fit here; a larger one is read into the heap, up to
 * CGPATH_TEXT_MAX. */
#define CGREAD_STACK_BYTES 8192u
/* A mountinfo line: two paths of at most PATH_MAX, escaped (4 bytes each
 * at worst), and options. Longer lines are skipped. */
#define CGREAD_MOUNTINFO_LINE_MAX (40u * 1024u)
#define CGREAD_MOUNTINFO_FIELDS   64u

static int cgread_fail(char *err, size_t err_len, int r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cgread_fail(char *err, size_t err_len, int r, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        (void)vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return r;
}

int cgread_config_none(const char *name, const struct sockid_attestor_config *config, char *err,
                       size_t err_len)
{
    if (!config)
        return 0;
    if (config->struct_size < sizeof(*config))
        return cgread_fail(err, err_len, -EINVAL,
                           "config structure is %" PRIu32 " bytes, expected at least %zu",
                           config->struct_size, sizeof(*config));
    if (config->n == 0)
        return 0;
    if (!config->keys || !config->keys[0])
        return cgread_fail(err, err_len, -EINVAL, "config has keys but no arrays");
    return cgread_fail(err, err_len, -EINVAL,
                       "unknown key '%.64s': the %s attestor takes no settings; remove it from "
                       "[attestor.%s]",
                       config->keys[0], name, name);
}

/* ---- the agent's cgroup2 mount ---- */

/* mountinfo writes ' ', '\t', '\n' and '\\' in paths as \ooo. */
static bool cgread_unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r;) {
        if (r[0] == '\\') {
            if (r[1] < '0' || r[1] > '3' || r[2] < '0' || r[2] > '7' || r[3] < '0' || r[3] > '7')
                return false;
            char c = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
            if (c == '\0')
                return false;
            *w++ = c;
            r += 4;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return true;
}

/* An O_PATH fd on mount_point when it is the root of a cgroup2 mount. */
static int cgread_open_cgroup2(const char *mount_point, dev_t *ret_dev)
{
    struct statfs sfs;
    struct stat st;
    int fd = open(mount_point, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstatfs(fd, &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC || fstat(fd, &st) < 0) {
        (void)close(fd);
        return -1;
    }
    *ret_dev = st.st_dev;
    return fd;
}

/* Splits a mountinfo line into its space-separated fields. */
static size_t cgread_fields(char *line, char **fields, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \n", &save); tok && n < max;
         tok = strtok_r(NULL, " \n", &save))
        fields[n++] = tok;
    return n;
}

/* Fields: ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE
 * SOURCE SUPER_OPTIONS. Of the cgroup2 mounts, the one at hint is preferred,
 * then one showing the whole hierarchy (root "/"), then any. */
void cgread_mount_find(const char *hint, struct cgread_mount *ret)
{
    FILE *f;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int best_rank = 0;

    ret->fd = -1;
    ret->dev = 0;
    ret->root[0] = '\0';
    ret->verified = NULL;
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    while ((n = getline(&line, &cap, f)) > 0) {
        char *fields[CGREAD_MOUNTINFO_FIELDS];
        size_t nf, sep;
        int rank, fd;
        dev_t dev;

        if ((size_t)n > CGREAD_MOUNTINFO_LINE_MAX)
            continue;
        nf = cgread_fields(line, fields, CGREAD_MOUNTINFO_FIELDS);
        for (sep = 6; sep < nf && strcmp(fields[sep], "-") != 0; sep++)
            ;
        if (sep + 1 >= nf || strcmp(fields[sep + 1], "cgroup2") != 0)
            continue;
        if (!cgread_unescape(fields[3]) || !cgread_unescape(fields[4]) || fields[3][0] != '/' ||
            strlen(fields[3]) >= sizeof(ret->root))
            continue;
        rank = hint && strcmp(fields[4], hint) == 0 ? 3 : strcmp(fields[3], "/") == 0 ? 2 : 1;
        if (rank <= best_rank)
            continue;
        fd = cgread_open_cgroup2(fields[4], &dev);
        if (fd < 0)
            continue;
        if (ret->fd >= 0)
            (void)close(ret->fd);
        ret->fd = fd;
        ret->dev = dev;
        (void)snprintf(ret->root, sizeof(ret->root), "%s", fields[3]);
        best_rank = rank;
    }
    free(line);
    (void)fclose(f);
    /* Without the cache every check is made again: slower, never wrong. */
    if (ret->fd >= 0 && kvcache_new(CGREAD_VERIFIED_SLOTS, KVCACHE_VALUE_MAX, &ret->verified) < 0)
        ret->verified = NULL;
}

void cgread_mount_close(struct cgread_mount *m)
{
    if (!m)
        return;
    if (m->fd >= 0) {
        (void)close(m->fd);
        m->fd = -1;
    }
    m->verified = kvcache_free(m->verified);
}

int cgread_state_new(const char *hint, void **ret_state)
{
    if (!ret_state)
        return -EINVAL;
    struct cgread_mount *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    cgread_mount_find(hint, m);
    *ret_state = m;
    return 0;
}

void cgread_state_free(void *state)
{
    if (!state)
        return;
    cgread_mount_close(state);
    free(state);
}

/* ---- the peer's cgroup file ---- */

static int cgread_read_more(int fd, char *buf, size_t cap, size_t *len)
{
    while (*len < cap) {
        ssize_t got = read(fd, buf + *len, cap - *len);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (got == 0)
            return 0; /* end of file */
        *len += (size_t)got;
    }
    return 1; /* buffer full, maybe more */
}

/* Whether rel (relative, "" for the root) has only plain segments, so that
 * resolving it below the mount cannot leave the mount. */
static bool cgread_rel_plain(const char *rel)
{
    if (!*rel)
        return true;
    for (const char *p = rel;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

/* The cgroup id is the inode number of the cgroup's directory in the cgroup2
 * filesystem. A process that moved to another cgroup between connect() and
 * now shows a path whose directory has another inode (or none, if the old
 * one was removed): what it says now is not what it was when it connected.
 *
 * A pair (id, path) that passed is remembered in m->verified, and the same
 * pair later passes without the fstatat. That is sound because the pair's
 * truth cannot change:
 *  - a cgroup id is never given to another cgroup: it is the 64-bit kernfs
 *    node id, allocated increasing (idr_alloc_cyclic for the low 32 bits, a
 *    generation counted up on each wrap for the high 32), so no later
 *    cgroup has this id;
 *  - a cgroup2 directory cannot be renamed: the cgroup2 filesystem offers
 *    kernfs no rename operation, and rename(2) fails with EPERM even for
 *    root (only v1 hierarchies allow it; test_cgpath checks both). So the
 *    cgroup with this id had this path for its whole life.
 * The peer was in cgroup `id` when it connected (the kernel said so), so it
 * was at this path then. The file now says it is at this path. The one
 * case the fstatat refused and the cache passes is a peer that left `id`,
 * whose old cgroup was then removed and created again under the same name,
 * and that moved into the new one: its selectors are then exactly those it
 * had when it connected, which is what the check exists to guarantee. A
 * peer that moved anywhere else shows another path, a pair not in the
 * cache, and is checked again. Were a rename ever allowed, the renamed
 * cgroup's (id, new path) would likewise be a new pair, checked again;
 * (id, old path) could then pass only for a process that is at the old
 * path now and was in `id` at connect. Only pairs that passed are kept,
 * never failures. */
static int cgread_check_id(const struct cgread_mount *m, const struct cgpath_table *t,
                           uint64_t cgroup_id)
{
    const struct cgpath_line *u = cgpath_unified(t);
    const char *rel;
    size_t root_len;
    struct stat st;

    if (cgroup_id == 0 || !u)
        return 0;
    if (!m || m->fd < 0)
        return -ENODEV;
    root_len = strlen(m->root);
    if (strcmp(m->root, "/") == 0)
        rel = u->path + 1;
    else if (strncmp(u->path, m->root, root_len) == 0 &&
             (u->path[root_len] == '\0' || u->path[root_len] == '/'))
        rel = u->path + root_len + (u->path[root_len] == '/');
    else
        return -EXDEV;
    if (!cgread_rel_plain(rel))
        return -EXDEV;
    size_t rel_len = strlen(rel);
    char seen[KVCACHE_VALUE_MAX + 1];
    size_t seen_len;
    if (kvcache_get(m->verified, cgroup_id, 0, seen, sizeof(seen), &seen_len) &&
        seen_len == rel_len && memcmp(seen, rel, rel_len) == 0)
        return 0;
    if (fstatat(m->fd, *rel ? rel : ".", &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT || errno == ENOTDIR ? -ESTALE : -errno;
    if (!S_ISDIR(st.st_mode) || st.st_dev != m->dev || (uint64_t)st.st_ino != cgroup_id)
        return -ESTALE;
    /* Longer paths are not kept; they are checked every time. */
    kvcache_put(m->verified, cgroup_id, rel, rel_len, KVCACHE_NEVER);
    return 0;
}

/* Parses text (the whole cgroup file) into a table of its own and checks
 * the v2 path against the peer's cgroup id. */
static int cgread_parse_checked(const struct sockid_peer *peer, const struct cgread_mount *m,
                                const char *text, size_t len, struct cgpath_table **ret)
{
    struct cgpath_table *t = malloc(sizeof(*t));
    int r;

    if (!t)
        return -ENOMEM;
    r = cgpath_parse(text, len, t);
    if (r == 0)
        r = cgread_check_id(m, t, peer->cgroup_id);
    if (r < 0) {
        free(t);
        return r;
    }
    *ret = t;
    return 0;
}

int cgread_peer(const struct sockid_peer *peer, const struct cgread_mount *m,
                struct cgpath_table **ret)
{
    char stack_buf[CGREAD_STACK_BYTES];
    char *buf = stack_buf, *heap = NULL;
    size_t len = 0;
    int fd, r;

    if (!peer || !m || !ret || peer->struct_size < SOCKID_PEER_SIZE_MIN)
        return -EINVAL;
    /* One read per request for all the attestors that need this file. */
    if (SOCKID_PEER_HAS(peer, proc_read) && peer->proc_read) {
        const char *text;
        r = peer->proc_read(peer, "cgroup", &text, &len);
        if (r < 0)
            return r;
        return cgread_parse_checked(peer, m, text, len, ret);
    }
    /* An agent without proc_read, or a view built without it. */
    fd = openat(peer->proc_dirfd, "cgroup", O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    r = cgread_read_more(fd, buf, sizeof(stack_buf), &len);
    if (r > 0) {
        heap = malloc(CGPATH_TEXT_MAX + 1);
        if (!heap) {
            r = -ENOMEM;
            goto out;
        }
        memcpy(heap, stack_buf, len);
        buf = heap;
        /* One byte past the bound tells a file at the bound from a larger one. */
        r = cgread_read_more(fd, buf, CGPATH_TEXT_MAX + 1, &len);
        if (r > 0) {
            r = -E2BIG;
            goto out;
        }
    }
    if (r < 0)
        goto out;
    r = cgread_parse_checked(peer, m, buf, len, ret);
out:
    free(heap);
    (void)close(fd);
    return r;
}
