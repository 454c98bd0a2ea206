/* cgpath: which systemd unit a process's cgroup path places it in (see
 * cgpath.h and the rules above each function). */
#define _GNU_SOURCE
#include "cgpath.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgpath_internal.h"

/* The unit a path places a process in, as systemd itself reads its tree
 * (cg_path_get_unit, cg_path_get_slice), but trusting only what the system
 * manager made: from the root, a run of slices, then the FIRST unit below
 * them. Units never nest in systemd's own tree, so anything below that unit
 * is the unit's own business (a Delegate=yes service, a container running
 * its own systemd) and can name nothing of the host's:
 * "/system.slice/docker-<id>.scope/system.slice/sshd.service" is in docker-<id>.scope.
 *
 *  - services are units, scopes are reported as scopes;
 *  - the slice is the last of the run; a unit directly at the root (init.scope)
 *    is in "-.slice"; a process in a slice but in no unit reports the slice;
 *  - user@UID.service in /user.slice/user-UID.slice is the user manager: its
 *    cgroup and all below are delegated to UID, so a process anywhere in
 *    there (directly in user@UID.service too, which UID can also move its
 *    processes into) is reported only as that user's: the user's own unit
 *    found the same way inside the user manager's tree, and the uid. */
int cgpath_systemd_of_path(const char *path, struct cgpath_systemd *ret)
{
    struct cgpath_split sp;
    struct cgpath_systemd sd;
    char unit[CGPATH_UNIT_MAX + 1];
    size_t i;
    uint32_t uid;
    int r;

    if (!ret)
        return -EINVAL;
    r = cgpath_split(path, &sp);
    if (r < 0)
        return r;
    memset(&sd, 0, sizeof(sd));
    if (r == 0 || sp.n == 0)
        goto out;

    i = cgpath_slice_run(&sp, 0);
    if (i == sp.n || !cgpath_unit_at(&sp, i, unit)) {
        if (i > 0) {
            sd.kind = CGPATH_SYSTEMD_SYSTEM;
            cgpath_slice_name_at(&sp, i - 1, sd.slice);
        }
        goto out;
    }
    if (i == 2 && cgpath_user_manager(&sp, &uid)) {
        sd.kind = CGPATH_SYSTEMD_USER;
        sd.uid = uid;
        if (i + 1 < sp.n) {
            size_t j = cgpath_slice_run(&sp, i + 1);
            if (j < sp.n)
                (void)cgpath_unit_at(&sp, j, sd.unit); /* none: the uid alone */
        }
        goto out;
    }
    sd.kind = CGPATH_SYSTEMD_SYSTEM;
    memcpy(sd.unit, unit, sizeof(unit));
    if (i > 0)
        cgpath_slice_name_at(&sp, i - 1, sd.slice);
    else
        cgpath_copy(sd.slice, sizeof(sd.slice), "-.slice", strlen("-.slice"));
out:
    *ret = sd;
    return 0;
}

/* The v2 hierarchy is systemd's own on unified and hybrid hosts; a legacy
 * (v1-only) host keeps the tree in name=systemd. The v2 line is used when
 * its path is canonical and below the root; otherwise name=systemd. */
int cgpath_systemd(const struct cgpath_table *t, struct cgpath_systemd *ret)
{
    const struct cgpath_line *unified, *named = NULL;
    struct cgpath_split sp;

    if (!t || !ret)
        return -EINVAL;
    unified = cgpath_unified(t);
    for (size_t i = 0; i < t->n; i++)
        if (t->lines[i].hierarchy != 0 && strcmp(t->lines[i].controllers, "name=systemd") == 0)
            named = &t->lines[i];
    if (unified && cgpath_split(unified->path, &sp) == 1 && sp.n > 0)
        return cgpath_systemd_of_path(unified->path, ret);
    if (named)
        return cgpath_systemd_of_path(named->path, ret);
    memset(ret, 0, sizeof(*ret));
    return 0;
}

/* systemd:unit:NAME.service or systemd:scope:NAME.scope, and
 * systemd:slice:NAME.slice, for the system manager's tree; systemd:user-unit:NAME
 * and systemd:user:UID for a user manager's, never more. */
int cgpath_emit_systemd(const struct cgpath_systemd *s, sockid_emit_fn emit, void *emit_ctx)
{
    char uid[sizeof("4294967295")];
    size_t len;
    int r = 0;

    if (!s || !emit)
        return -EINVAL;
    switch (s->kind) {
    case CGPATH_SYSTEMD_SYSTEM:
        len = strnlen(s->unit, sizeof(s->unit));
        if (len)
            r = cgpath_emit(emit, emit_ctx, "systemd",
                            cgpath_mem_ends(s->unit, len, ".scope") ? "scope" : "unit", s->unit);
        if (r == 0 && s->slice[0])
            r = cgpath_emit(emit, emit_ctx, "systemd", "slice", s->slice);
        return r;
    case CGPATH_SYSTEMD_USER:
        (void)snprintf(uid, sizeof(uid), "%" PRIu32, s->uid);
        if (s->unit[0])
            r = cgpath_emit(emit, emit_ctx, "systemd", "user-unit", s->unit);
        if (r == 0)
            r = cgpath_emit(emit, emit_ctx, "systemd", "user", uid);
        return r;
    case CGPATH_SYSTEMD_NONE:
        break;
    }
    return 0;
}
