/* cgpath: what a process's /proc/<pid>/cgroup says, as pure functions (no
 * I/O), shared by the cgroup, container and systemd attestors and tested
 * directly against a table of real-world files.
 *
 * Three questions, each answered only from names that root or the system
 * manager created (DESIGN §2, "Trust a cgroup name only where root or the
 * system manager creates it"):
 *
 *  - which hierarchies and paths is the process in (cgpath_parse);
 *  - which container is it in (cgpath_container): the segments of each path
 *    are walked from the end to the first container id in a position only
 *    root can create, then back for the Kubernetes pod; all lines must tell
 *    the same story;
 *  - which systemd unit is it in (cgpath_systemd).
 *
 * The rules, precisely, are in cgpath.c above each function. */
#ifndef SOCKID_CGPATH_H
#define SOCKID_CGPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sockid/attestor.h>

/* Bounds on the text of /proc/<pid>/cgroup. The kernel writes one line per
 * mounted hierarchy (a dozen on a v1 host, one on v2). */
#define CGPATH_LINES_MAX 64u
#define CGPATH_LINE_MAX  4096u  /* bytes in one line, its newline not counted */
#define CGPATH_TEXT_MAX  65536u /* bytes in the whole file */
/* Segments of one path; a deeper path is refused rather than half-read. */
#define CGPATH_SEGMENTS_MAX 256u
/* Containers nested in containers (kind: a kubelet in a docker container). */
#define CGPATH_NEST_MAX 8u

#define CGPATH_ID_LEN      64u  /* a container id: 64 lowercase hex digits */
#define CGPATH_POD_UID_MAX 36u  /* a UUID, or 32 hex digits for a static pod */
#define CGPATH_UNIT_MAX    255u /* systemd's UNIT_NAME_MAX less its NUL */

struct cgpath_line {
    uint32_t hierarchy;      /* 0 for the v2 (unified) hierarchy */
    const char *controllers; /* "" for v2; "memory", "cpu,cpuacct", "name=systemd" */
    const char *path;        /* starts with '/' */
};

/* One parsed file. The strings point into buf: the table is one object,
 * copied or freed as a whole. */
struct cgpath_table {
    size_t n;
    struct cgpath_line lines[CGPATH_LINES_MAX];
    char buf[CGPATH_TEXT_MAX + 1];
};

enum cgpath_runtime {
    CGPATH_RUNTIME_UNKNOWN = 0, /* the layout does not say (kubelet's cgroupfs driver) */
    CGPATH_RUNTIME_DOCKER,
    CGPATH_RUNTIME_CONTAINERD,
    CGPATH_RUNTIME_CRIO,
    CGPATH_RUNTIME_PODMAN,
};

enum cgpath_qos {
    CGPATH_QOS_NONE = 0, /* not in a Kubernetes pod */
    CGPATH_QOS_GUARANTEED,
    CGPATH_QOS_BURSTABLE,
    CGPATH_QOS_BESTEFFORT,
};

struct cgpath_container_level {
    char id[CGPATH_ID_LEN + 1];
    enum cgpath_runtime runtime;
    char pod_uid[CGPATH_POD_UID_MAX + 1]; /* "" outside a pod; dashes, never underscores */
    enum cgpath_qos qos;
};

struct cgpath_container {
    size_t depth; /* 0: in no container; 2 and more: nested */
    /* In a user's delegated subtree (rootless Podman): depth is 1, owner_uid
     * names the user, and nothing system-level may be said about it. */
    bool rootless;
    uint32_t owner_uid;
    struct cgpath_container_level levels[CGPATH_NEST_MAX]; /* outermost first */
};

enum cgpath_systemd_kind {
    CGPATH_SYSTEMD_NONE = 0,
    CGPATH_SYSTEMD_SYSTEM, /* in the system manager's tree */
    CGPATH_SYSTEMD_USER,   /* in a user manager's tree (user@UID.service) */
};

struct cgpath_systemd {
    enum cgpath_systemd_kind kind;
    /* SYSTEM: the enclosing slice ("-.slice" for a unit at the root), or ""
     * when none; USER: always "". */
    char slice[CGPATH_UNIT_MAX + 1];
    /* SYSTEM: the unit (NAME.service or NAME.scope); USER: the user unit;
     * "" when the process is in no unit. Escapes such as \x2d are kept. */
    char unit[CGPATH_UNIT_MAX + 1];
    uint32_t uid; /* USER: the user manager's uid */
};

/* Parses the text of /proc/<pid>/cgroup (len bytes, need not be
 * NUL-terminated) into ret. Returns 0; -E2BIG past the bounds above;
 * -EINVAL when the text is not what the kernel writes (a NUL, a missing
 * final newline, a malformed or repeated line). ret is written only on
 * success. */
__attribute__((warn_unused_result)) int cgpath_parse(const char *text, size_t len,
                                                     struct cgpath_table *ret);

/* The v2 line, or NULL. */
const struct cgpath_line *cgpath_unified(const struct cgpath_table *t);

/* The container that one path places a process in. Returns 0 (ret->depth 0
 * when in none), -E2BIG for a path longer or deeper than the bounds,
 * -EINVAL when it does not start with '/' or nests too deeply. */
__attribute__((warn_unused_result)) int cgpath_container_of_path(const char *path,
                                                                 struct cgpath_container *ret);

/* The container of the process, from every line of t. Lines that name
 * different containers fail with -EINVAL; a line naming an enclosing
 * container of another line's (kind on a hybrid host) agrees with it. */
__attribute__((warn_unused_result)) int cgpath_container(const struct cgpath_table *t,
                                                         struct cgpath_container *ret);

/* The systemd unit that one path places a process in. Returns 0 (kind NONE
 * when in none), or -E2BIG / -EINVAL as cgpath_container_of_path. */
__attribute__((warn_unused_result)) int cgpath_systemd_of_path(const char *path,
                                                               struct cgpath_systemd *ret);

/* The systemd unit of the process: from the v2 line, or from the
 * name=systemd line when there is no v2 line with a path below the root. */
__attribute__((warn_unused_result)) int cgpath_systemd(const struct cgpath_table *t,
                                                       struct cgpath_systemd *ret);

/* Emit the selectors each attestor reports, through the host's emit().
 * Return 0 or the first error emit() returned that should stop the
 * attestation (see each function). */
__attribute__((warn_unused_result)) int cgpath_emit_cgroup(const struct cgpath_table *t,
                                                           sockid_emit_fn emit, void *emit_ctx);
__attribute__((warn_unused_result)) int cgpath_emit_container(const struct cgpath_container *c,
                                                              sockid_emit_fn emit, void *emit_ctx);
__attribute__((warn_unused_result)) int cgpath_emit_systemd(const struct cgpath_systemd *s,
                                                            sockid_emit_fn emit, void *emit_ctx);

#endif /* SOCKID_CGPATH_H */
