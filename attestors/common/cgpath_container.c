/* cgpath: which container a process's cgroup paths place it in (see
 * cgpath.h and the rules above each function). */
#define _GNU_SOURCE
#include "cgpath.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cgpath_internal.h"

enum cgpath_seg_kind {
    CGPATH_SEG_OTHER = 0,
    CGPATH_SEG_BARE,   /* <id>: Docker's and containerd's cgroupfs layouts, kubelet's */
    CGPATH_SEG_SCOPE,  /* RUNTIME-<id>.scope: a systemd scope a runtime asked for */
    CGPATH_SEG_CRIO,   /* crio-<id>: CRI-O's cgroupfs manager */
    CGPATH_SEG_LIBPOD, /* libpod-<id>: Podman's cgroupfs manager */
};

struct cgpath_seg_info {
    enum cgpath_seg_kind kind;
    enum cgpath_runtime runtime;
    const char *id;
};

static const struct {
    const char *prefix;
    enum cgpath_runtime runtime;
} cgpath_scope_prefixes[] = {
    {"docker-", CGPATH_RUNTIME_DOCKER},
    {"cri-containerd-", CGPATH_RUNTIME_CONTAINERD},
    {"crio-", CGPATH_RUNTIME_CRIO},
    {"libpod-", CGPATH_RUNTIME_PODMAN},
};

/* What segment i is, if it holds a container id. The conmon monitors
 * ("crio-conmon-<id>", "libpod-conmon-<id>", with or without ".scope") hold
 * the id of the container they watch but are not in it: "conmon-<id>" is
 * not 64 hex digits, so they fall through to OTHER here, by design. */
static bool cgpath_classify(const struct cgpath_split *sp, size_t i, struct cgpath_seg_info *ret)
{
    const char *s = cgpath_seg_ptr(sp, i);
    size_t len = cgpath_seg_len(sp, i);

    memset(ret, 0, sizeof(*ret));
    if (len == CGPATH_ID_LEN && cgpath_all_lower_hex(s, len)) {
        ret->kind = CGPATH_SEG_BARE;
        ret->id = s;
        return true;
    }
    for (size_t k = 0; k < sizeof(cgpath_scope_prefixes) / sizeof(cgpath_scope_prefixes[0]); k++) {
        size_t np = strlen(cgpath_scope_prefixes[k].prefix);
        if (!cgpath_mem_starts(s, len, cgpath_scope_prefixes[k].prefix) ||
            len < np + CGPATH_ID_LEN || !cgpath_all_lower_hex(s + np, CGPATH_ID_LEN))
            continue;
        ret->runtime = cgpath_scope_prefixes[k].runtime;
        ret->id = s + np;
        if (len == np + CGPATH_ID_LEN + strlen(".scope") && cgpath_mem_ends(s, len, ".scope")) {
            ret->kind = CGPATH_SEG_SCOPE;
            return true;
        }
        if (len == np + CGPATH_ID_LEN && ret->runtime == CGPATH_RUNTIME_CRIO) {
            ret->kind = CGPATH_SEG_CRIO;
            return true;
        }
        if (len == np + CGPATH_ID_LEN && ret->runtime == CGPATH_RUNTIME_PODMAN) {
            ret->kind = CGPATH_SEG_LIBPOD;
            return true;
        }
    }
    memset(ret, 0, sizeof(*ret));
    return false;
}

/* A pod UID: a UUID (8-4-4-4-12 lowercase hex, the groups separated by sep:
 * '-' in cgroupfs paths, '_' in systemd slice names, where '-' nests), or 32
 * lowercase hex digits (a static pod's, a hash). Written out with dashes. */
static bool cgpath_pod_uid(const char *s, size_t len, char sep, char out[CGPATH_POD_UID_MAX + 1])
{
    char uid[CGPATH_POD_UID_MAX + 1];

    if (len == 32 && cgpath_all_lower_hex(s, len)) {
        cgpath_copy(out, CGPATH_POD_UID_MAX + 1, s, len);
        return true;
    }
    if (len != 36)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool sep_here = i == 8 || i == 13 || i == 18 || i == 23;
        if (sep_here ? s[i] != sep : !cgpath_is_lower_hex(s[i]))
            return false;
        uid[i] = sep_here ? '-' : s[i];
    }
    uid[len] = '\0';
    memcpy(out, uid, sizeof(uid));
    return true;
}

/* The pod slice of kubelet's systemd driver, as its stem:
 * [kubelet-]kubepods[-burstable|-besteffort]-pod<uid>, the uid's dashes
 * written as '_' (kubelet escapes them since systemd reads '-' as nesting;
 * the dashed form of older kubelets is read too). A guaranteed pod sits
 * directly in kubepods.slice. */
static bool cgpath_kube_pod_slice(const char *stem, size_t len, struct cgpath_container_level *lvl)
{
    const char *p = stem, *end = stem + len;
    enum cgpath_qos qos = CGPATH_QOS_GUARANTEED;

    if (cgpath_mem_starts(p, (size_t)(end - p), "kubelet-"))
        p += strlen("kubelet-");
    if (!cgpath_mem_starts(p, (size_t)(end - p), "kubepods-"))
        return false;
    p += strlen("kubepods-");
    if (cgpath_mem_starts(p, (size_t)(end - p), "burstable-")) {
        qos = CGPATH_QOS_BURSTABLE;
        p += strlen("burstable-");
    } else if (cgpath_mem_starts(p, (size_t)(end - p), "besteffort-")) {
        qos = CGPATH_QOS_BESTEFFORT;
        p += strlen("besteffort-");
    }
    if (!cgpath_mem_starts(p, (size_t)(end - p), "pod"))
        return false;
    p += strlen("pod");
    if (!cgpath_pod_uid(p, (size_t)(end - p), '_', lvl->pod_uid) &&
        !cgpath_pod_uid(p, (size_t)(end - p), '-', lvl->pod_uid))
        return false;
    lvl->qos = qos;
    return true;
}

/* kubelet's cgroupfs driver: segments s..e-1 are
 * [kubelet/]kubepods[/burstable|/besteffort]/pod<uid>. */
static bool cgpath_kube_cgroupfs(const struct cgpath_split *sp, size_t s, size_t e,
                                 struct cgpath_container_level *lvl)
{
    enum cgpath_qos qos = CGPATH_QOS_GUARANTEED;
    size_t k = s;
    const char *pod;
    size_t pod_len;

    if (k < e && cgpath_seg_is(sp, k, "kubelet"))
        k++;
    if (k >= e || !cgpath_seg_is(sp, k, "kubepods"))
        return false;
    k++;
    if (k < e && cgpath_seg_is(sp, k, "burstable")) {
        qos = CGPATH_QOS_BURSTABLE;
        k++;
    } else if (k < e && cgpath_seg_is(sp, k, "besteffort")) {
        qos = CGPATH_QOS_BESTEFFORT;
        k++;
    }
    if (k + 1 != e)
        return false;
    pod = cgpath_seg_ptr(sp, k);
    pod_len = cgpath_seg_len(sp, k);
    if (!cgpath_mem_starts(pod, pod_len, "pod") ||
        !cgpath_pod_uid(pod + 3, pod_len - 3, '-', lvl->pod_uid))
        return false;
    lvl->qos = qos;
    return true;
}

/* Whether the container segment i sits where its runtime (root) puts it,
 * relative to segment s: the root of the hierarchy, or the segment after an
 * enclosing trusted container (its runtime's own root, as in kind). The
 * layouts:
 *
 *   SLICE.../RUNTIME-<id>.scope     systemd drivers: Docker, containerd (CRI),
 *                                   CRI-O, Podman; one or more slices
 *                                   (system.slice, machine.slice,
 *                                   kubepods-...-pod<uid>.slice), which only
 *                                   the system manager creates, and no unit
 *                                   between them
 *   docker/<id>                     Docker, cgroupfs driver
 *   k8s.io/<id>                     containerd's k8s.io namespace
 *   crio/crio-<id>                  CRI-O, cgroupfs, no pod
 *   libpod_parent/libpod-<id>       Podman, cgroupfs manager
 *   [kubelet/]kubepods/[QOS/]pod<uid>/<id> or .../crio-<id>
 *                                   kubelet's cgroupfs driver (the runtime of a
 *                                   bare id is not said: containerd and
 *                                   dockershim both write it) */
static bool cgpath_layout(const struct cgpath_split *sp, size_t s, size_t i,
                          const struct cgpath_seg_info *si, struct cgpath_container_level *lvl)
{
    memset(lvl, 0, sizeof(*lvl));
    cgpath_copy(lvl->id, sizeof(lvl->id), si->id, CGPATH_ID_LEN);
    lvl->runtime = si->runtime;

    switch (si->kind) {
    case CGPATH_SEG_SCOPE:
        if (i == s || cgpath_slice_run(sp, s) < i)
            return false;
        {
            const char *stem;
            size_t len;
            (void)cgpath_slice_stem(cgpath_seg_ptr(sp, i - 1), cgpath_seg_len(sp, i - 1), &stem,
                                    &len);
            (void)cgpath_kube_pod_slice(stem, len, lvl);
        }
        return true;
    case CGPATH_SEG_BARE:
        if (i == s + 1 && cgpath_seg_is(sp, s, "docker")) {
            lvl->runtime = CGPATH_RUNTIME_DOCKER;
            return true;
        }
        if (i == s + 1 && cgpath_seg_is(sp, s, "k8s.io")) {
            lvl->runtime = CGPATH_RUNTIME_CONTAINERD;
            return true;
        }
        return cgpath_kube_cgroupfs(sp, s, i, lvl);
    case CGPATH_SEG_CRIO:
        if (i == s + 1 && cgpath_seg_is(sp, s, "crio"))
            return true;
        return cgpath_kube_cgroupfs(sp, s, i, lvl);
    case CGPATH_SEG_LIBPOD:
        return i == s + 1 && cgpath_seg_is(sp, s, "libpod_parent");
    case CGPATH_SEG_OTHER:
        break;
    }
    return false;
}

/* Rootless Podman: /user.slice/user-UID.slice/user@UID.service/.../
 * libpod-<id>.scope, the last such segment. Everything below user@UID.service
 * is the user's to name, so the only thing proven is that UID (or root) put
 * the process there; what is reported says no more than that. Any other
 * runtime's name in there (a docker-<id>.scope made with mkdir) yields
 * nothing at all. */
static void cgpath_rootless(const struct cgpath_split *sp, struct cgpath_container *ret)
{
    uint32_t uid;

    if (!cgpath_user_manager(sp, &uid))
        return;
    for (size_t i = sp->n; i-- > 3;) {
        struct cgpath_seg_info si;
        if (!cgpath_classify(sp, i, &si) || si.kind != CGPATH_SEG_SCOPE ||
            si.runtime != CGPATH_RUNTIME_PODMAN)
            continue;
        ret->depth = 1;
        ret->rootless = true;
        ret->owner_uid = uid;
        cgpath_copy(ret->levels[0].id, sizeof(ret->levels[0].id), si.id, CGPATH_ID_LEN);
        ret->levels[0].runtime = CGPATH_RUNTIME_PODMAN;
        return;
    }
}

/* A container segment found in a trusted position. */
struct cgpath_found {
    size_t seg;
    int parent; /* index in the found array of the enclosing container, -1 for none */
    size_t depth;
    struct cgpath_container_level lvl;
};

/* A container segment is at least 65 bytes of path ("/<id>"). */
#define CGPATH_FOUND_MAX (CGPATH_LINE_MAX / (CGPATH_ID_LEN + 1) + 1)

/* Walks the segments from the root and keeps every container segment in a
 * trusted position (its layout anchored at the root, or at an enclosing
 * trusted container); the answer is the last one, which is the first found
 * walking from the end: the innermost container. A container segment in no
 * trusted position (docker-<id>.scope in a delegated subtree, a bare id under
 * an arbitrary directory) is passed over: the process is still inside the
 * trusted container around it, if any. */
int cgpath_container_of_path(const char *path, struct cgpath_container *ret)
{
    struct cgpath_split sp;
    struct cgpath_found found[CGPATH_FOUND_MAX];
    struct cgpath_container c;
    size_t n_found = 0;
    int r;

    if (!ret)
        return -EINVAL;
    r = cgpath_split(path, &sp);
    if (r < 0)
        return r;
    memset(&c, 0, sizeof(c));
    if (r == 0) {
        *ret = c;
        return 0;
    }

    for (size_t i = 0; i < sp.n; i++) {
        struct cgpath_seg_info si;
        if (!cgpath_classify(&sp, i, &si))
            continue;
        /* The nearest enclosing container first, then the root. */
        for (int a = (int)n_found - 1; a >= -1; a--) {
            size_t s = a < 0 ? 0 : found[a].seg + 1;
            struct cgpath_container_level lvl;
            if (!cgpath_layout(&sp, s, i, &si, &lvl))
                continue;
            if (a >= 0 && found[a].depth >= CGPATH_NEST_MAX)
                return -EINVAL;
            if (n_found == CGPATH_FOUND_MAX)
                return -E2BIG;
            found[n_found] = (struct cgpath_found){
                .seg = i,
                .parent = a,
                .depth = a < 0 ? 1 : found[a].depth + 1,
                .lvl = lvl,
            };
            n_found++;
            break;
        }
    }

    if (n_found > 0) {
        const struct cgpath_found *f = &found[n_found - 1];
        c.depth = f->depth;
        for (size_t d = c.depth; d > 0; d--) {
            c.levels[d - 1] = f->lvl;
            f = f->parent >= 0 ? &found[f->parent] : NULL;
        }
    } else {
        cgpath_rootless(&sp, &c);
    }
    *ret = c;
    return 0;
}

static bool cgpath_level_eq(const struct cgpath_container_level *a,
                            const struct cgpath_container_level *b)
{
    return strcmp(a->id, b->id) == 0 && a->runtime == b->runtime &&
           strcmp(a->pod_uid, b->pod_uid) == 0 && a->qos == b->qos;
}

/* Every line that places the process in a container must place it in the
 * same one, or in one that encloses it (on a hybrid host a kind node's inner
 * runtime manages only the v1 hierarchies; the v2 line then shows the node's
 * container alone). Anything else is two stories, and no guess is made. */
int cgpath_container(const struct cgpath_table *t, struct cgpath_container *ret)
{
    struct cgpath_container best, c;

    if (!t || !ret)
        return -EINVAL;
    memset(&best, 0, sizeof(best));
    for (size_t i = 0; i < t->n; i++) {
        int r = cgpath_container_of_path(t->lines[i].path, &c);
        if (r < 0)
            return r;
        if (c.depth == 0)
            continue;
        if (best.depth) {
            size_t common = c.depth < best.depth ? c.depth : best.depth;
            if (c.rootless != best.rootless || c.owner_uid != best.owner_uid)
                return -EINVAL;
            for (size_t k = 0; k < common; k++)
                if (!cgpath_level_eq(&c.levels[k], &best.levels[k]))
                    return -EINVAL;
        }
        if (c.depth > best.depth)
            best = c;
    }
    *ret = best;
    return 0;
}

static const char *cgpath_runtime_name(enum cgpath_runtime r)
{
    switch (r) {
    case CGPATH_RUNTIME_DOCKER:
        return "docker";
    case CGPATH_RUNTIME_CONTAINERD:
        return "containerd";
    case CGPATH_RUNTIME_CRIO:
        return "cri-o";
    case CGPATH_RUNTIME_PODMAN:
        return "podman";
    case CGPATH_RUNTIME_UNKNOWN:
        break;
    }
    return NULL;
}

static const char *cgpath_qos_name(enum cgpath_qos q)
{
    switch (q) {
    case CGPATH_QOS_GUARANTEED:
        return "guaranteed";
    case CGPATH_QOS_BURSTABLE:
        return "burstable";
    case CGPATH_QOS_BESTEFFORT:
        return "besteffort";
    case CGPATH_QOS_NONE:
        break;
    }
    return NULL;
}

/* The innermost container: container:id, container:runtime (when the layout
 * says), k8s:pod-uid and k8s:qos (in a pod). A rootless container reports
 * container:rootless-id instead of container:id, with container:runtime:podman
 * and container:owner-uid: its id is a name its user chose (any user can read
 * a root container's id in /proc and name a cgroup libpod-<that id>.scope),
 * so it must never satisfy an entry written for container:id. Every
 * selector here is built from checked characters; the host refusing one is
 * an error. */
int cgpath_emit_container(const struct cgpath_container *c, sockid_emit_fn emit, void *emit_ctx)
{
    const struct cgpath_container_level *l;
    const char *name;
    char uid[sizeof("4294967295")];
    int r;

    if (!c || !emit || c->depth > CGPATH_NEST_MAX)
        return -EINVAL;
    if (c->depth == 0)
        return 0;
    l = &c->levels[c->depth - 1];
    if (c->rootless) {
        (void)snprintf(uid, sizeof(uid), "%" PRIu32, c->owner_uid);
        r = cgpath_emit(emit, emit_ctx, "container", "rootless-id", l->id);
        if (r == 0)
            r = cgpath_emit(emit, emit_ctx, "container", "runtime", "podman");
        if (r == 0)
            r = cgpath_emit(emit, emit_ctx, "container", "owner-uid", uid);
        return r;
    }
    r = cgpath_emit(emit, emit_ctx, "container", "id", l->id);
    name = cgpath_runtime_name(l->runtime);
    if (r == 0 && name)
        r = cgpath_emit(emit, emit_ctx, "container", "runtime", name);
    name = cgpath_qos_name(l->qos);
    if (r == 0 && l->pod_uid[0] && name) {
        r = cgpath_emit(emit, emit_ctx, "k8s", "pod-uid", l->pod_uid);
        if (r == 0)
            r = cgpath_emit(emit, emit_ctx, "k8s", "qos", name);
    }
    return r;
}
