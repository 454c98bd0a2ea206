/* The /proc/<pid>/cgroup parser and the container and systemd rules
 * (attestors/common/cgpath.c) on arbitrary bytes.
 *
 * Besides what the sanitizers catch, it checks what cgpath.h promises: a
 * parsed table has the kernel's shape (bounded, absolute paths, unique
 * hierarchies, no controllers on v2); a failed parse leaves the table as it
 * was; every container and systemd selector the rules produce is one the
 * host accepts; a rootless container says nothing system-level; the answer
 * for the whole file is the deepest line's; and the same bytes taken as one
 * path never crash either rule. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cgpath.h"
#include "selector.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct cgpath_table table;

/* The host's emit(): a selector the rules built must always be accepted. */
static int strict_emit(void *ctx, const char *type, const char *key, const char *value)
{
    char buf[SELECTOR_MAX_LEN + 1];
    size_t *n = ctx;
    if (selector_format(buf, sizeof(buf), type, key, value) < 0)
        abort();
    if (strcmp(type, "container") != 0 && strcmp(type, "k8s") != 0 && strcmp(type, "systemd") != 0)
        abort();
    (*n)++;
    return 0;
}

/* The host's emit() for cgroup selectors, which carry names from the file:
 * it may refuse them, and the attestor goes on. */
static int lenient_emit(void *ctx, const char *type, const char *key, const char *value)
{
    char buf[SELECTOR_MAX_LEN + 1];
    size_t *n = ctx;
    if (strcmp(type, "cgroup") != 0)
        abort();
    if (selector_format(buf, sizeof(buf), type, key, value) < 0)
        return -EINVAL;
    (*n)++;
    return 0;
}

static void check_table(const struct cgpath_table *t)
{
    if (t->n > CGPATH_LINES_MAX)
        abort();
    for (size_t i = 0; i < t->n; i++) {
        const struct cgpath_line *l = &t->lines[i];
        if (l->path[0] != '/' || strlen(l->path) > CGPATH_LINE_MAX || strchr(l->path, '\n'))
            abort();
        if (l->hierarchy == 0 && l->controllers[0])
            abort();
        for (size_t j = 0; j < i; j++)
            if (t->lines[j].hierarchy == l->hierarchy)
                abort();
    }
}

static void check_container(const struct cgpath_container *c)
{
    size_t n = 0;
    if (c->depth > CGPATH_NEST_MAX)
        abort();
    if (c->rootless) {
        const struct cgpath_container_level *l = &c->levels[0];
        if (c->depth != 1 || l->runtime != CGPATH_RUNTIME_PODMAN || l->pod_uid[0] ||
            l->qos != CGPATH_QOS_NONE)
            abort();
    }
    for (size_t i = 0; i < c->depth; i++)
        if (strlen(c->levels[i].id) != CGPATH_ID_LEN ||
            (c->levels[i].pod_uid[0] != '\0') != (c->levels[i].qos != CGPATH_QOS_NONE))
            abort();
    if (cgpath_emit_container(c, strict_emit, &n) != 0 || n > 4)
        abort();
    if ((c->depth == 0) != (n == 0))
        abort();
}

static void check_systemd(const struct cgpath_systemd *sd)
{
    size_t n = 0;
    if (sd->kind == CGPATH_SYSTEMD_USER && sd->slice[0])
        abort();
    if (cgpath_emit_systemd(sd, strict_emit, &n) != 0 || n > 2)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[CGPATH_LINE_MAX + 2];
    struct cgpath_container c, line_c;
    struct cgpath_systemd sd;
    size_t before = table.n, n = 0, deepest = 0;
    int r;

    r = cgpath_parse((const char *)data, size, &table);
    if (r < 0) {
        if ((r != -EINVAL && r != -E2BIG) || table.n != before)
            abort();
    } else {
        check_table(&table);
        if (cgpath_emit_cgroup(&table, lenient_emit, &n) != 0 || n > table.n)
            abort();
        r = cgpath_container(&table, &c);
        if (r == 0) {
            check_container(&c);
            for (size_t i = 0; i < table.n; i++) {
                if (cgpath_container_of_path(table.lines[i].path, &line_c) != 0)
                    abort();
                if (line_c.depth > deepest)
                    deepest = line_c.depth;
            }
            if (c.depth != deepest)
                abort();
        } else if (r != -EINVAL && r != -E2BIG) {
            abort();
        }
        r = cgpath_systemd(&table, &sd);
        if (r == 0)
            check_systemd(&sd);
        else if (r != -E2BIG)
            abort();
    }

    /* The bytes as one path. */
    if (size > CGPATH_LINE_MAX + 1)
        size = CGPATH_LINE_MAX + 1;
    memcpy(path, data, size);
    path[size] = '\0';
    if (cgpath_container_of_path(path, &c) == 0)
        check_container(&c);
    if (cgpath_systemd_of_path(path, &sd) == 0)
        check_systemd(&sd);
    return 0;
}
