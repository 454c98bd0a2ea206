/* The cgroup path rules (attestors/common/cgpath.c) against a table of
 * real-world /proc/<pid>/cgroup files, one per runtime, driver and cgroup
 * version, with the exact selectors each attestor must report; then the
 * cgroup, container and systemd plugins loaded as the agent loads them and
 * run on this process and, as root, on children moved into cgroups this
 * test makes.
 *
 * The files are written the way the kernel and the runtimes write them
 * (kernel/cgroup/cgroup.c proc_cgroup_show: "ID:CONTROLLERS:PATH\n"; the
 * hierarchy numbers and controller sets of real Debian/Ubuntu/RHEL hosts).
 * Samples taken from a public project's test data say so where they are;
 * all other fixtures are this project's, with ids made up for them. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <linux/magic.h>

#include <sockid/attestor.h>

#include "cgpath.h"
#include "selector.h"

#ifndef CGPATH_PLUGIN_DIR
#error "CGPATH_PLUGIN_DIR must name the directory of the built plugins"
#endif

/* ---- ids used by the fixtures (made up) ---- */

#define ID_A "3f3d71f9d260e33e8b3370d3438f9a970d488ece448ceac1d6660db26abdb4b3"
#define ID_B "eb884fbb78ddc66480bb05332ce08ce5815aa41be34d2b78df48eed360f0935b"
#define ID_C "360810c4a9ad0536194f2f081c2a0ae0537f8dad85136574202f21579ae842e0"
#define ID_D "d3f4307396827b16a293a269815ad771cebe34e45e82de5df7bf3b0c44fb38d5"
#define ID_E "b6f2fc226fa7b45486c4bfc52f8549abe0ee437d42978e30ab8fc65d15866bed"
#define ID_F "32ceb5f4dc3eecaaeb5816b631fe9d2f9376310e7723583bac4bc2fc06faca65"
#define ID_G "6d2dc8d66819aa7e63537a408b2b9db003e1079249c7cae51188b36214d9397c"
#define ID_H "9cc2b099e4f4da34773e4ee1bb0024bf03d794211ffc2ab7ab1efe0c2fdbecbc"

/* Pod UIDs: as the API server assigns them, and as kubelet's systemd driver
 * writes them into slice names ('-' escaped to '_'). */
#define POD1  "f502e55f-453a-49fa-be9e-db2a34c0dcee"
#define POD1_ "f502e55f_453a_49fa_be9e_db2a34c0dcee"
#define POD2  "74832908-95c3-4d9f-ae26-edd13cc4aca0"
#define POD2_ "74832908_95c3_4d9f_ae26_edd13cc4aca0"
#define POD3  "4eb305f1-e8c2-4101-910e-e8115282daba"
#define POD3_ "4eb305f1_e8c2_4101_910e_e8115282daba"
/* A static (mirror) pod's UID is a hash: 32 hex digits, no dashes. */
#define POD_STATIC "8e5601179c72b9818ecb8c4c7fcffab2"

/* The v1 hierarchies of a systemd host in legacy mode (Debian 10, Ubuntu
 * 18.04, RHEL 7/8 by default), every one showing path P, as runc leaves a
 * container's processes; rdma is a hierarchy runc does not join. */
#define V1(P)                                                                                      \
    "12:rdma:/\n"                                                                                  \
    "11:hugetlb:" P "\n"                                                                           \
    "10:devices:" P "\n"                                                                           \
    "9:pids:" P "\n"                                                                               \
    "8:perf_event:" P "\n"                                                                         \
    "7:net_cls,net_prio:" P "\n"                                                                   \
    "6:cpuset:" P "\n"                                                                             \
    "5:memory:" P "\n"                                                                             \
    "4:cpu,cpuacct:" P "\n"                                                                        \
    "3:freezer:" P "\n"                                                                            \
    "2:blkio:" P "\n"                                                                              \
    "1:name=systemd:" P "\n"

/* A hybrid host (systemd's hybrid mode, Ubuntu 20.04, Debian 11 with
 * systemd.unified_cgroup_hierarchy=0): the v1 lines and a v2 line. */
#define HYBRID(P, P2) V1(P) "0::" P2 "\n"

/* A unified host (Debian 11+, Ubuntu 21.10+, RHEL 9, Fedora 31+). */
#define V2(P) "0::" P "\n"

#define MAX_EXPECT 16

struct fixture {
    const char *name;
    const char *text;
    int parse_rc;                      /* cgpath_parse; when not 0 nothing else is checked */
    int container_rc;                  /* cgpath_container */
    const char *container[MAX_EXPECT]; /* exact selectors, in order, NULL-ended */
    const char *systemd[MAX_EXPECT];
    const char *cgroup[MAX_EXPECT]; /* checked only when cgroup[0] is set */
};

#define SCOPE(x) "systemd:scope:" x
#define UNIT(x)  "systemd:unit:" x
#define SLICE(x) "systemd:slice:" x
#define CID(x)   "container:id:" x
#define RT(x)    "container:runtime:" x
#define POD(x)   "k8s:pod-uid:" x
#define QOS(x)   "k8s:qos:" x

static const struct fixture fixtures[] = {
    /* ---- Docker ---- */
    {
        .name = "docker cgroupfs driver, v1",
        .text = V1("/docker/" ID_A),
        .container = {CID(ID_A), RT("docker")},
        .cgroup = {"cgroup:rdma:/", "cgroup:hugetlb:/docker/" ID_A, "cgroup:devices:/docker/" ID_A,
                   "cgroup:pids:/docker/" ID_A, "cgroup:perf_event:/docker/" ID_A,
                   "cgroup:net_cls,net_prio:/docker/" ID_A, "cgroup:cpuset:/docker/" ID_A,
                   "cgroup:memory:/docker/" ID_A, "cgroup:cpu,cpuacct:/docker/" ID_A,
                   "cgroup:freezer:/docker/" ID_A, "cgroup:blkio:/docker/" ID_A,
                   "cgroup:name=systemd:/docker/" ID_A},
    },
    {
        /* spiffe/spire pkg/agent/plugin/workloadattestor/docker/docker_posix_test.go,
         * testCgroupEntries (a devices line alone). */
        .name = "docker cgroupfs driver, v1, one hierarchy (SPIRE)",
        .text = "10:devices:/docker/"
                "6469646e742065787065637420616e796f6e6520746f20726561642074686973\n",
        .container = {CID("6469646e742065787065637420616e796f6e6520746f20726561642074686973"),
                      RT("docker")},
        .cgroup = {"cgroup:devices:/docker/"
                   "6469646e742065787065637420616e796f6e6520746f20726561642074686973"},
    },
    {
        .name = "docker cgroupfs driver, v2",
        .text = V2("/docker/" ID_B),
        .container = {CID(ID_B), RT("docker")},
        .cgroup = {"cgroup:unified:/docker/" ID_B},
    },
    {
        /* runc on a hybrid host joins the v2 hierarchy as well. */
        .name = "docker cgroupfs driver, hybrid",
        .text = HYBRID("/docker/" ID_C, "/docker/" ID_C),
        .container = {CID(ID_C), RT("docker")},
    },
    {
        .name = "docker systemd driver, v1 (RHEL 7)",
        .text = V1("/system.slice/docker-" ID_D ".scope"),
        .container = {CID(ID_D), RT("docker")},
        .systemd = {SCOPE("docker-" ID_D ".scope"), SLICE("system.slice")},
    },
    {
        .name = "docker systemd driver, v2",
        .text = V2("/system.slice/docker-" ID_E ".scope"),
        .container = {CID(ID_E), RT("docker")},
        .systemd = {SCOPE("docker-" ID_E ".scope"), SLICE("system.slice")},
        .cgroup = {"cgroup:unified:/system.slice/docker-" ID_E ".scope"},
    },
    {
        /* spiffe/spire docker_posix_test.go testCgroupV2Entries: a custom
         * cgroup parent slice (docker run --cgroup-parent=system-unit.slice). */
        .name = "docker systemd driver, v2, custom parent slice (SPIRE)",
        .text = "0::/system.slice/system-unit.slice/"
                "docker-6469646e742065787065637420616e796f6e6520746f20726561642074686973.scope\n",
        .container = {CID("6469646e742065787065637420616e796f6e6520746f20726561642074686973"),
                      RT("docker")},
        .systemd = {SCOPE("docker-6469646e742065787065637420616e796f6e6520746f20726561642074686973"
                          ".scope"),
                    SLICE("system-unit.slice")},
    },
    {
        /* Docker Desktop's VM: dockerd in a container of its own
         * (spiffe/spire docker_posix_test.go, "docker for desktop"). */
        .name = "docker in docker, Docker Desktop (SPIRE)",
        .text = "6:devices:/docker/6469646e742065787065637420616e796f6e6520746f20726561642074686973"
                "/docker/6469646e742065787065637420616e796f6e6520746f20726561642074686973"
                "/system.slice/containerd.service\n",
        .container = {CID("6469646e742065787065637420616e796f6e6520746f20726561642074686973"),
                      RT("docker")},
    },
    {
        .name = "docker in docker, distinct ids, the inner one reported",
        .text = V2("/docker/" ID_A "/docker/" ID_B),
        .container = {CID(ID_B), RT("docker")},
    },

    /* ---- containerd ---- */
    {
        .name = "containerd, k8s.io namespace, v2",
        .text = V2("/k8s.io/" ID_F),
        .container = {CID(ID_F), RT("containerd")},
    },
    {
        .name = "containerd, k8s.io namespace, v1",
        .text = V1("/k8s.io/" ID_F),
        .container = {CID(ID_F), RT("containerd")},
    },
    {
        .name = "containerd CRI outside a pod slice (system.slice:cri-containerd:ID)",
        .text = V2("/system.slice/cri-containerd-" ID_G ".scope"),
        .container = {CID(ID_G), RT("containerd")},
        .systemd = {SCOPE("cri-containerd-" ID_G ".scope"), SLICE("system.slice")},
    },

    /* ---- CRI-O ---- */
    {
        .name = "cri-o systemd, v2, besteffort pod",
        .text = V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD1_
                   ".slice/crio-" ID_A ".scope"),
        .container = {CID(ID_A), RT("cri-o"), POD(POD1), QOS("besteffort")},
        .systemd = {SCOPE("crio-" ID_A ".scope"), SLICE("kubepods-besteffort-pod" POD1_ ".slice")},
    },
    {
        /* conmon_cgroup = "pod": the monitor sits in the pod's slice, named
         * after the container it watches. It is not that container. */
        .name = "cri-o conmon trap, systemd, v2",
        .text = V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD1_
                   ".slice/crio-conmon-" ID_A ".scope"),
        .container = {NULL},
        .systemd = {SCOPE("crio-conmon-" ID_A ".scope"),
                    SLICE("kubepods-besteffort-pod" POD1_ ".slice")},
    },
    {
        .name = "cri-o systemd, v1, burstable pod",
        .text = V1("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD2_
                   ".slice/crio-" ID_B ".scope"),
        .container = {CID(ID_B), RT("cri-o"), POD(POD2), QOS("burstable")},
        .systemd = {SCOPE("crio-" ID_B ".scope"), SLICE("kubepods-burstable-pod" POD2_ ".slice")},
    },
    {
        /* CRI-O's cgroupfs manager: <pod cgroup>/crio-<id>, conmon next to it
         * as crio-conmon-<id>. */
        .name = "cri-o cgroupfs, v1, besteffort pod",
        .text = V1("/kubepods/besteffort/pod" POD3 "/crio-" ID_C),
        .container = {CID(ID_C), RT("cri-o"), POD(POD3), QOS("besteffort")},
    },
    {
        .name = "cri-o conmon trap, cgroupfs, v1",
        .text = V1("/kubepods/besteffort/pod" POD3 "/crio-conmon-" ID_C),
        .container = {NULL},
    },
    {
        .name = "cri-o outside kubernetes, systemd (default parent system.slice)",
        .text = V2("/system.slice/crio-" ID_D ".scope"),
        .container = {CID(ID_D), RT("cri-o")},
        .systemd = {SCOPE("crio-" ID_D ".scope"), SLICE("system.slice")},
    },
    {
        /* spiffe/spire k8s/testdata/cgroups_pid_in_crio_pod.txt (newline
         * added): an agent in a cgroup namespace of its own sees "/.." for
         * everything outside it. Nothing is anchored at a root we know. */
        .name = "cri-o seen from another cgroup namespace (SPIRE)",
        .text =
            "0::/../crio-09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6.scope\n",
        .container = {NULL},
        .systemd = {NULL},
        .cgroup = {"cgroup:unified:/../"
                   "crio-09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6.scope"},
    },

    /* ---- Podman ---- */
    {
        .name = "podman rootful, systemd, v2",
        .text = V2("/machine.slice/libpod-" ID_E ".scope"),
        .container = {CID(ID_E), RT("podman")},
        .systemd = {SCOPE("libpod-" ID_E ".scope"), SLICE("machine.slice")},
    },
    {
        /* --cgroups=split, or a container running systemd: the payload in a
         * "container" child of the scope. */
        .name = "podman rootful, systemd, v2, container sub-cgroup",
        .text = V2("/machine.slice/libpod-" ID_E ".scope/container"),
        .container = {CID(ID_E), RT("podman")},
        .systemd = {SCOPE("libpod-" ID_E ".scope"), SLICE("machine.slice")},
    },
    {
        .name = "podman rootful, v1",
        .text = V1("/machine.slice/libpod-" ID_F ".scope"),
        .container = {CID(ID_F), RT("podman")},
        .systemd = {SCOPE("libpod-" ID_F ".scope"), SLICE("machine.slice")},
    },
    {
        .name = "podman rootful pod (machine-libpod_pod_<id>.slice)",
        .text = V2("/machine.slice/machine-libpod_pod_" ID_G ".slice/libpod-" ID_H ".scope"),
        .container = {CID(ID_H), RT("podman")},
        .systemd = {SCOPE("libpod-" ID_H ".scope"), SLICE("machine-libpod_pod_" ID_G ".slice")},
    },
    {
        .name = "podman rootful conmon trap",
        .text = V2("/machine.slice/libpod-conmon-" ID_E ".scope"),
        .container = {NULL},
        .systemd = {SCOPE("libpod-conmon-" ID_E ".scope"), SLICE("machine.slice")},
    },
    {
        .name = "podman cgroupfs manager, v1",
        .text = V1("/libpod_parent/libpod-" ID_A),
        .container = {CID(ID_A), RT("podman")},
    },
    {
        .name = "podman rootless, v2",
        .text =
            V2("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID_B ".scope"),
        .container = {"container:rootless-id:" ID_B, RT("podman"), "container:owner-uid:1000"},
        .systemd = {"systemd:user-unit:libpod-" ID_B ".scope", "systemd:user:1000"},
    },
    {
        .name = "podman rootless, v2, container sub-cgroup",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID_B
                   ".scope/container"),
        .container = {"container:rootless-id:" ID_B, RT("podman"), "container:owner-uid:1000"},
        .systemd = {"systemd:user-unit:libpod-" ID_B ".scope", "systemd:user:1000"},
    },
    {
        .name = "podman rootless pod",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/user.slice/"
                   "user-libpod_pod_" ID_C ".slice/libpod-" ID_D ".scope"),
        .container = {"container:rootless-id:" ID_D, RT("podman"), "container:owner-uid:1000"},
        .systemd = {"systemd:user-unit:libpod-" ID_D ".scope", "systemd:user:1000"},
    },
    {
        .name = "podman rootless conmon trap",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-conmon-" ID_B
                   ".scope"),
        .container = {NULL},
        .systemd = {"systemd:user-unit:libpod-conmon-" ID_B ".scope", "systemd:user:1000"},
    },
    {
        /* Another user names a cgroup after root's container: it gets its
         * own uid and a rootless id, never container:id. */
        .name = "forgery: rootless name of a root container's id",
        .text =
            V2("/user.slice/user-12345.slice/user@12345.service/app.slice/libpod-" ID_E ".scope"),
        .container = {"container:rootless-id:" ID_E, RT("podman"), "container:owner-uid:12345"},
        .systemd = {"systemd:user-unit:libpod-" ID_E ".scope", "systemd:user:12345"},
    },

    /* ---- Kubernetes, cgroupfs driver ---- */
    {
        .name = "k8s cgroupfs, v1, guaranteed (containerd, k3s)",
        .text = V1("/kubepods/pod" POD1 "/" ID_A),
        .container = {CID(ID_A), POD(POD1), QOS("guaranteed")},
    },
    {
        /* spiffe/spire k8s/testdata/cgroups_init_pid_in_pod.txt */
        .name = "k8s cgroupfs, v1, burstable (SPIRE)",
        .text = "11:hugetlb:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "10:devices:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "9:pids:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "8:perf_event:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "7:net_cls,net_prio:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "6:cpuset:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "5:memory:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "4:cpu,cpuacct:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "3:freezer:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "2:blkio:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n"
                "1:name=systemd:/kubepods/burstable/podd488cae9-b2a0-11e7-9350-020968147796/"
                "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41\n",
        .container = {CID("34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41"),
                      POD("d488cae9-b2a0-11e7-9350-020968147796"), QOS("burstable")},
    },
    {
        .name = "k8s cgroupfs, v1, besteffort",
        .text = V1("/kubepods/besteffort/pod" POD2 "/" ID_B),
        .container = {CID(ID_B), POD(POD2), QOS("besteffort")},
    },
    {
        .name = "k8s cgroupfs, v2, guaranteed",
        .text = V2("/kubepods/pod" POD3 "/" ID_C),
        .container = {CID(ID_C), POD(POD3), QOS("guaranteed")},
    },
    {
        .name = "k8s cgroupfs, v2, burstable",
        .text = V2("/kubepods/burstable/pod" POD1 "/" ID_D),
        .container = {CID(ID_D), POD(POD1), QOS("burstable")},
    },
    {
        .name = "k8s cgroupfs, v2, besteffort",
        .text = V2("/kubepods/besteffort/pod" POD2 "/" ID_E),
        .container = {CID(ID_E), POD(POD2), QOS("besteffort")},
    },
    {
        .name = "k8s cgroupfs, v2, static pod (hash uid)",
        .text = V2("/kubepods/burstable/pod" POD_STATIC "/" ID_F),
        .container = {CID(ID_F), POD(POD_STATIC), QOS("burstable")},
    },

    /* ---- Kubernetes, systemd driver ---- */
    {
        .name = "k8s systemd, v1, guaranteed (containerd)",
        .text = V1("/kubepods.slice/kubepods-pod" POD1_ ".slice/cri-containerd-" ID_A ".scope"),
        .container = {CID(ID_A), RT("containerd"), POD(POD1), QOS("guaranteed")},
        .systemd = {SCOPE("cri-containerd-" ID_A ".scope"), SLICE("kubepods-pod" POD1_ ".slice")},
    },
    {
        /* spiffe/spire k8s/testdata/systemd_cgroups_pid_in_pod.txt: dockershim,
         * and the pod UID with its dashes, as an old kubelet wrote it. */
        .name = "k8s systemd, v1, burstable (dockershim, SPIRE)",
        .text = "11:hugetlb:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "10:devices:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "9:pids:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "8:perf_event:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "7:net_cls,net_prio:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "6:cpuset:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "5:memory:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "4:cpu,cpuacct:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "3:freezer:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "2:blkio:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n"
                "1:name=systemd:/kubepods.slice/kubepods-burstable.slice/"
                "kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice/"
                "docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961.scope\n",
        .container = {CID("9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"),
                      RT("docker"), POD("2c48913c-b29f-11e7-9350-020968147796"), QOS("burstable")},
        .systemd = {SCOPE("docker-9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
                          ".scope"),
                    SLICE("kubepods-burstable-pod2c48913c-b29f-11e7-9350-020968147796.slice")},
    },
    {
        .name = "k8s systemd, v1, besteffort (cri-o)",
        .text = V1("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD3_
                   ".slice/crio-" ID_C ".scope"),
        .container = {CID(ID_C), RT("cri-o"), POD(POD3), QOS("besteffort")},
        .systemd = {SCOPE("crio-" ID_C ".scope"), SLICE("kubepods-besteffort-pod" POD3_ ".slice")},
    },
    {
        .name = "k8s systemd, v2, guaranteed",
        .text = V2("/kubepods.slice/kubepods-pod" POD2_ ".slice/cri-containerd-" ID_D ".scope"),
        .container = {CID(ID_D), RT("containerd"), POD(POD2), QOS("guaranteed")},
        .systemd = {SCOPE("cri-containerd-" ID_D ".scope"), SLICE("kubepods-pod" POD2_ ".slice")},
    },
    {
        .name = "k8s systemd, v2, burstable",
        .text = V2("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD3_
                   ".slice/cri-containerd-" ID_E ".scope"),
        .container = {CID(ID_E), RT("containerd"), POD(POD3), QOS("burstable")},
        .systemd = {SCOPE("cri-containerd-" ID_E ".scope"),
                    SLICE("kubepods-burstable-pod" POD3_ ".slice")},
    },
    {
        .name = "k8s systemd, v2, besteffort",
        .text = V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" POD1_
                   ".slice/cri-containerd-" ID_F ".scope"),
        .container = {CID(ID_F), RT("containerd"), POD(POD1), QOS("besteffort")},
        .systemd = {SCOPE("cri-containerd-" ID_F ".scope"),
                    SLICE("kubepods-besteffort-pod" POD1_ ".slice")},
    },
    {
        .name = "k8s systemd, v2, static pod (hash uid)",
        .text = V2("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD_STATIC
                   ".slice/cri-containerd-" ID_G ".scope"),
        .container = {CID(ID_G), RT("containerd"), POD(POD_STATIC), QOS("burstable")},
        .systemd = {SCOPE("cri-containerd-" ID_G ".scope"),
                    SLICE("kubepods-burstable-pod" POD_STATIC ".slice")},
    },
    {
        /* The pod's own cgroup (where a process lands only by hand) is no
         * container. */
        .name = "k8s systemd, v2, pod slice itself",
        .text =
            V2("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD3_ ".slice"),
        .container = {NULL},
        .systemd = {SLICE("kubepods-burstable-pod" POD3_ ".slice")},
    },
    {
        /* A hybrid host where containerd drives only v1: the v2 line shows
         * the runtime's service, no container. */
        .name = "k8s systemd, hybrid, v2 line in the runtime's service",
        .text = HYBRID("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" POD2_
                       ".slice/cri-containerd-" ID_H ".scope",
                       "/system.slice/containerd.service"),
        .container = {CID(ID_H), RT("containerd"), POD(POD2), QOS("burstable")},
        .systemd = {UNIT("containerd.service"), SLICE("system.slice")},
    },

    /* ---- nested: a kubelet in a container (kind, k3d) ---- */
    {
        /* spiffe/spire k8s/testdata/cgroups_pid_in_kind_pod.txt: a kind node
         * (docker, cgroupfs) on a hybrid host; the node's containerd drives
         * v1 only, so the v2 line shows the node container alone, which
         * encloses the pod's and so agrees with it. */
        .name = "kind, hybrid, cgroupfs (SPIRE)",
        .text =
#define KIND_P                                                                                     \
    "/docker/93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26/kubepods/"           \
    "besteffort/"                                                                                  \
    "poda2830d0d-b0f0-4ff0-81b5-0ee4e299cf80/"                                                     \
    "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6"
            "13:name=systemd:" KIND_P "\n"
            "12:pids:" KIND_P "\n"
            "11:hugetlb:" KIND_P "\n"
            "10:net_prio:" KIND_P "\n"
            "9:perf_event:" KIND_P "\n"
            "8:net_cls:" KIND_P "\n"
            "7:freezer:" KIND_P "\n"
            "6:devices:" KIND_P "\n"
            "5:memory:" KIND_P "\n"
            "4:blkio:" KIND_P "\n"
            "3:cpuacct:" KIND_P "\n"
            "2:cpu:" KIND_P "\n"
            "1:cpuset:" KIND_P "\n"
            "0::/docker/93529524695bb00d91c1f6dba692ea8d3550c3b94fb2463af7bc9ec82f992d26/"
            "system.slice/containerd.service\n",
#undef KIND_P
        .container = {CID("09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6"),
                      POD("a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80"), QOS("besteffort")},
    },
    {
        .name = "kind, v1, cgroupfs, kubelet cgroup root /kubelet",
        .text = V1("/docker/" ID_A "/kubelet/kubepods/burstable/pod" POD1 "/" ID_B),
        .container = {CID(ID_B), POD(POD1), QOS("burstable")},
    },
    {
        /* kind on a unified host with private cgroup namespaces: the node
         * is docker-<outer>.scope, its kubelet uses the systemd driver with
         * cgroup root kubelet.slice. */
        .name = "kind, v2, systemd, kubelet.slice",
        .text = V2("/system.slice/docker-" ID_C ".scope/kubelet.slice/kubelet-kubepods.slice/"
                   "kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" POD2_
                   ".slice/cri-containerd-" ID_D ".scope"),
        .container = {CID(ID_D), RT("containerd"), POD(POD2), QOS("besteffort")},
        .systemd = {SCOPE("docker-" ID_C ".scope"), SLICE("system.slice")},
    },
    {
        .name = "kind, v2, systemd, guaranteed pod",
        .text = V2("/system.slice/docker-" ID_C ".scope/kubelet.slice/kubelet-kubepods.slice/"
                   "kubelet-kubepods-pod" POD3_ ".slice/cri-containerd-" ID_E ".scope"),
        .container = {CID(ID_E), RT("containerd"), POD(POD3), QOS("guaranteed")},
        .systemd = {SCOPE("docker-" ID_C ".scope"), SLICE("system.slice")},
    },
    {
        /* The node's own processes (its kubelet, its containerd) are in the
         * node container, and in the host's docker scope. */
        .name = "kind node's kubelet",
        .text = V2("/system.slice/docker-" ID_C ".scope/system.slice/kubelet.service"),
        .container = {CID(ID_C), RT("docker")},
        .systemd = {SCOPE("docker-" ID_C ".scope"), SLICE("system.slice")},
    },

    /* ---- systemd ---- */
    {
        .name = "systemd system service, v2",
        .text = V2("/system.slice/nginx.service"),
        .container = {NULL},
        .systemd = {UNIT("nginx.service"), SLICE("system.slice")},
        .cgroup = {"cgroup:unified:/system.slice/nginx.service"},
    },
    {
        .name = "systemd system service, v1 (name=systemd)",
        .text = "12:rdma:/\n11:hugetlb:/\n10:devices:/system.slice/cron.service\n"
                "9:pids:/system.slice/cron.service\n8:perf_event:/\n7:net_cls,net_prio:/\n"
                "6:cpuset:/\n5:memory:/system.slice/cron.service\n4:cpu,cpuacct:/system.slice\n"
                "3:freezer:/\n2:blkio:/system.slice\n1:name=systemd:/system.slice/cron.service\n",
        .container = {NULL},
        .systemd = {UNIT("cron.service"), SLICE("system.slice")},
    },
    {
        /* Hybrid, with the v2 line at the root (nothing placed the process in
         * v2): name=systemd has the meaningful path. */
        .name = "systemd system service, hybrid, v2 at the root",
        .text = "1:name=systemd:/system.slice/ssh.service\n0::/\n",
        .container = {NULL},
        .systemd = {UNIT("ssh.service"), SLICE("system.slice")},
        .cgroup = {"cgroup:name=systemd:/system.slice/ssh.service", "cgroup:unified:/"},
    },
    {
        .name = "systemd template instance in a sub-slice",
        .text = V2("/system.slice/system-getty.slice/getty@tty1.service"),
        .systemd = {UNIT("getty@tty1.service"), SLICE("system-getty.slice")},
    },
    {
        /* Escapes stay as systemd wrote them. */
        .name = "systemd escaped unit name",
        .text = V2("/system.slice/system-systemd\\x2dfsck.slice/"
                   "systemd-fsck@dev-disk-by\\x2duuid-0b9a\\x2d44c1.service"),
        .systemd = {UNIT("systemd-fsck@dev-disk-by\\x2duuid-0b9a\\x2d44c1.service"),
                    SLICE("system-systemd\\x2dfsck.slice")},
    },
    {
        /* systemd writes "cpu.service" as "_cpu.service" (a kernel file
         * prefix); the unit's name has no underscore. */
        .name = "systemd cgroup-escaped unit name",
        .text = V2("/system.slice/_cpu.service"),
        .systemd = {UNIT("cpu.service"), SLICE("system.slice")},
    },
    {
        .name = "systemd transient scope (systemd-run --scope)",
        .text = V2("/system.slice/run-r0c5ab1e2d0b7468fa8c0d3cf21a59d2e.scope"),
        .systemd = {SCOPE("run-r0c5ab1e2d0b7468fa8c0d3cf21a59d2e.scope"), SLICE("system.slice")},
    },
    {
        .name = "systemd PID 1 (init.scope at the root)",
        .text = V2("/init.scope"),
        .systemd = {SCOPE("init.scope"), SLICE("-.slice")},
    },
    {
        /* A login session: logind asks PID 1 for it; the user cannot create
         * cgroups in user-UID.slice. */
        .name = "systemd login session, v2",
        .text = V2("/user.slice/user-1000.slice/session-4.scope"),
        .container = {NULL},
        .systemd = {SCOPE("session-4.scope"), SLICE("user-1000.slice")},
    },
    {
        .name = "systemd login session, v1",
        .text = V1("/user.slice/user-1000.slice/session-c2.scope"),
        .container = {NULL},
        .systemd = {SCOPE("session-c2.scope"), SLICE("user-1000.slice")},
    },
    {
        .name = "systemd user service",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service"),
        .container = {NULL},
        .systemd = {"systemd:user-unit:syncthing.service", "systemd:user:1000"},
    },
    {
        .name = "systemd user session bus, session.slice",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/session.slice/"
                   "dbus-broker.service"),
        .systemd = {"systemd:user-unit:dbus-broker.service", "systemd:user:1000"},
    },
    {
        .name = "systemd user app scope in a sub-slice",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/app.slice/"
                   "app-org.gnome.Terminal.slice/vte-spawn-7d2b3c4e\\x2d1f2a.scope"),
        .systemd = {"systemd:user-unit:vte-spawn-7d2b3c4e\\x2d1f2a.scope", "systemd:user:1000"},
    },
    {
        .name = "systemd user manager itself (init.scope)",
        .text = V2("/user.slice/user-1000.slice/user@1000.service/init.scope"),
        .systemd = {"systemd:user-unit:init.scope", "systemd:user:1000"},
    },
    {
        /* Directly in user@UID.service: that cgroup is delegated to the user
         * too, so only the uid is said. */
        .name = "systemd user manager's cgroup itself",
        .text = V2("/user.slice/user-1000.slice/user@1000.service"),
        .systemd = {"systemd:user:1000"},
    },
    {
        .name = "systemd user manager, v1 legacy",
        .text = V1("/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service"),
        .systemd = {"systemd:user-unit:syncthing.service", "systemd:user:1000"},
    },
    {
        /* A Delegate=yes service made a child named like a unit: the process
         * is still in the service. */
        .name = "systemd delegated service's own children",
        .text = V2("/system.slice/ci-runner.service/job-42/worker.service"),
        .systemd = {UNIT("ci-runner.service"), SLICE("system.slice")},
    },

    /* ---- forgery: names in a subtree delegated to a user ---- */
    {
        .name = "forgery: docker scope in a user subtree",
        .text = V2("/user.slice/user-12345.slice/user@12345.service/docker-" ID_A ".scope"),
        .container = {NULL},
        .systemd = {"systemd:user-unit:docker-" ID_A ".scope", "systemd:user:12345"},
    },
    {
        .name = "forgery: docker scope deeper in a user subtree",
        .text =
            V2("/user.slice/user-12345.slice/user@12345.service/app.slice/system.slice/docker-" ID_A
               ".scope"),
        .container = {NULL},
        .systemd = {"systemd:user-unit:docker-" ID_A ".scope", "systemd:user:12345"},
    },
    {
        .name = "forgery: demo.service in a user subtree",
        .text = V2("/user.slice/user-12345.slice/user@12345.service/demo.service"),
        .container = {NULL},
        .systemd = {"systemd:user-unit:demo.service", "systemd:user:12345"},
    },
    {
        .name = "forgery: system.slice spelt inside a user subtree",
        .text = V2("/user.slice/user-12345.slice/user@12345.service/system.slice/demo.service"),
        .systemd = {"systemd:user-unit:demo.service", "systemd:user:12345"},
    },
    {
        .name = "forgery: kubepods inside a user subtree",
        .text = V2("/user.slice/user-12345.slice/user@12345.service/kubepods.slice/"
                   "kubepods-burstable.slice/kubepods-burstable-pod" POD1_
                   ".slice/cri-containerd-" ID_B ".scope"),
        .container = {NULL},
        .systemd = {"systemd:user-unit:cri-containerd-" ID_B ".scope", "systemd:user:12345"},
    },
    {
        .name = "forgery: docker cgroupfs layout inside a user subtree",
        .text = V2("/user.slice/user-12345.slice/user@12345.service/docker/" ID_C),
        .container = {NULL},
        .systemd = {"systemd:user:12345"},
    },
    {
        /* A Delegate=yes service running as some user names a child like a
         * container scope: no slice run reaches it. */
        .name = "forgery: docker scope in a delegated system service",
        .text = V2("/system.slice/ci-runner.service/docker-" ID_D ".scope"),
        .container = {NULL},
        .systemd = {UNIT("ci-runner.service"), SLICE("system.slice")},
    },
    {
        .name = "forgery: a bare id under an arbitrary directory",
        .text = V2("/build/" ID_E),
        .container = {NULL},
    },
    {
        /* Inside a container, a name that is no runtime's layout: the
         * process is still in the container around it. */
        .name = "forgery: untrusted inner name inside a container",
        .text = V2("/docker/" ID_F "/sandbox/docker-" ID_G ".scope"),
        .container = {CID(ID_F), RT("docker")},
    },
    {
        /* A container running its own systemd: its units are not the host's. */
        .name = "systemd in a container",
        .text = V2("/system.slice/docker-" ID_H ".scope/system.slice/sshd.service"),
        .container = {CID(ID_H), RT("docker")},
        .systemd = {SCOPE("docker-" ID_H ".scope"), SLICE("system.slice")},
    },
    {
        .name = "forgery: user-UID.slice and user@UID.service disagree",
        .text =
            V2("/user.slice/user-1000.slice/user@1001.service/user.slice/libpod-" ID_A ".scope"),
        .container = {NULL},
        .systemd = {UNIT("user@1001.service"), SLICE("user-1000.slice")},
    },

    /* ---- lines that disagree ---- */
    {
        .name = "disagree: two container ids",
        .text = "4:memory:/docker/" ID_A "\n0::/docker/" ID_B "\n",
        .container_rc = -EINVAL,
        .systemd = {NULL},
    },
    {
        .name = "disagree: same id, two pods",
        .text = "4:memory:/kubepods/pod" POD1 "/" ID_A "\n0::/kubepods/pod" POD2 "/" ID_A "\n",
        .container_rc = -EINVAL,
    },
    {
        .name = "disagree: same id, two runtimes",
        .text = "4:memory:/docker/" ID_A "\n0::/k8s.io/" ID_A "\n",
        .container_rc = -EINVAL,
    },
    {
        .name = "disagree: rootless in one line, root's container in another",
        .text = "4:memory:/docker/" ID_A "\n0::/user.slice/user-1000.slice/user@1000.service/"
                "user.slice/libpod-" ID_A ".scope\n",
        .container_rc = -EINVAL,
        .systemd = {"systemd:user-unit:libpod-" ID_A ".scope", "systemd:user:1000"},
    },
    {
        .name = "disagree: nested in a different outer container",
        .text = "4:memory:/docker/" ID_A "/docker/" ID_B "\n0::/docker/" ID_C "\n",
        .container_rc = -EINVAL,
    },
    {
        .name = "agree: a line in no container next to one in a container",
        .text = "4:memory:/docker/" ID_A "\n3:rdma:/\n0::/system.slice/containerd.service\n",
        .container = {CID(ID_A), RT("docker")},
        .systemd = {UNIT("containerd.service"), SLICE("system.slice")},
    },

    /* ---- plain hosts ---- */
    {
        .name = "unified host, root cgroup",
        .text = V2("/"),
        .cgroup = {"cgroup:unified:/"},
    },
    {
        /* This machine as a sandbox leaves it: v1 + v2 hybrid, one hierarchy
         * moved by the sandbox's own manager. */
        .name = "hybrid sandbox, no systemd",
        .text = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n5:devices:/\n"
                "4:memory:/process_api/fbb2306298c7ca0c89014d4cf0cdfb64\n3:cpuset:/\n"
                "2:cpuacct:/\n1:cpu:/\n0::/\n",
        .cgroup = {"cgroup:name=systemd:/", "cgroup:pids:/", "cgroup:blkio:/", "cgroup:freezer:/",
                   "cgroup:devices:/",
                   "cgroup:memory:/process_api/fbb2306298c7ca0c89014d4cf0cdfb64", "cgroup:cpuset:/",
                   "cgroup:cpuacct:/", "cgroup:cpu:/", "cgroup:unified:/"},
    },
    {
        .name = "empty file (no hierarchy mounted)",
        .text = "",
    },
    {
        /* A v1 hierarchy with no controller and no name: nothing stable to
         * key a selector on. */
        .name = "v1 hierarchy without controllers or name",
        .text = "5::/x\n4:memory:/y\n",
        .cgroup = {"cgroup:memory:/y"},
    },
    {
        /* Names the kernel allows but a selector cannot carry are left out. */
        .name = "cgroup name with a control character",
        .text = "4:memory:/a\tb\n0::/c d:e\n",
        .cgroup = {"cgroup:unified:/c d:e"},
    },

    /* ---- malformed ---- */
    {.name = "malformed: no final newline", .text = "0::/x", .parse_rc = -EINVAL},
    {.name = "malformed: empty line", .text = "0::/x\n\n", .parse_rc = -EINVAL},
    {.name = "malformed: one colon", .text = "0:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: no colon", .text = "garbage\n", .parse_rc = -EINVAL},
    {.name = "malformed: leading zero", .text = "01:memory:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: signed id", .text = "-1:memory:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: empty id", .text = ":memory:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: id too large", .text = "2147483648:memory:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: v2 with controllers", .text = "0:memory:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: relative path", .text = "0::x\n", .parse_rc = -EINVAL},
    {.name = "malformed: empty path", .text = "4:memory:\n", .parse_rc = -EINVAL},
    {.name = "malformed: space in controllers", .text = "4:mem ory:/x\n", .parse_rc = -EINVAL},
    {.name = "malformed: repeated hierarchy",
     .text = "4:memory:/x\n4:pids:/x\n",
     .parse_rc = -EINVAL},
    {.name = "malformed: repeated controllers",
     .text = "4:memory:/x\n5:memory:/x\n",
     .parse_rc = -EINVAL},
    {.name = "malformed: two v2 lines", .text = "0::/x\n0::/y\n", .parse_rc = -EINVAL},
    {.name = "malformed: carriage return line end",
     .text = "0::/x\r\n1:cpu\r:/\n",
     .parse_rc = -EINVAL},
};

/* ---- collecting selectors as the host takes them ---- */

#define COLLECT_MAX 64
#define SEL_MAX     (SELECTOR_MAX_LEN + 1)

struct collect {
    size_t n;
    char items[COLLECT_MAX][SEL_MAX];
    size_t refused;
};

/* What the host's emit() does: refuses a malformed part with -EINVAL. */
static int collect_emit(void *ctx, const char *type, const char *key, const char *value)
{
    struct collect *c = ctx;
    char buf[SEL_MAX];
    int r = selector_format(buf, sizeof(buf), type, key, value);
    if (r < 0) {
        c->refused++;
        return r;
    }
    assert_true(c->n < COLLECT_MAX);
    memcpy(c->items[c->n++], buf, (size_t)r + 1);
    return 0;
}

static struct collect got; /* large: not on the stack */

static bool expect_list(const char *fixture, const char *what, const struct collect *c,
                        const char *const *want)
{
    size_t n = 0;
    bool ok;
    while (n < MAX_EXPECT && want[n])
        n++;
    ok = c->n == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = strcmp(c->items[i], want[i]) == 0;
    if (!ok) {
        fprintf(stderr, "fixture '%s', %s selectors:\n  got:\n", fixture, what);
        for (size_t i = 0; i < c->n; i++)
            fprintf(stderr, "    %s\n", c->items[i]);
        fprintf(stderr, "  want:\n");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "    %s\n", want[i]);
    }
    return ok;
}

static struct cgpath_table *table_new(void)
{
    struct cgpath_table *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    return t;
}

static void test_fixtures(void **state)
{
    struct cgpath_table *t = table_new();
    size_t failed = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        const struct fixture *f = &fixtures[i];
        struct cgpath_container c;
        struct cgpath_systemd sd;
        int r = cgpath_parse(f->text, strlen(f->text), t);
        bool ok = true;

        if (r != f->parse_rc) {
            fprintf(stderr, "fixture '%s': parse returned %d, want %d\n", f->name, r, f->parse_rc);
            failed++;
            continue;
        }
        if (r < 0)
            continue;

        r = cgpath_container(t, &c);
        if (r != f->container_rc) {
            fprintf(stderr, "fixture '%s': container returned %d, want %d\n", f->name, r,
                    f->container_rc);
            ok = false;
        } else if (r == 0) {
            memset(&got, 0, sizeof(got));
            assert_int_equal(cgpath_emit_container(&c, collect_emit, &got), 0);
            ok &= expect_list(f->name, "container", &got, f->container);
            assert_int_equal(got.refused, 0);
        }

        assert_int_equal(cgpath_systemd(t, &sd), 0);
        memset(&got, 0, sizeof(got));
        assert_int_equal(cgpath_emit_systemd(&sd, collect_emit, &got), 0);
        ok &= expect_list(f->name, "systemd", &got, f->systemd);
        assert_int_equal(got.refused, 0);

        memset(&got, 0, sizeof(got));
        assert_int_equal(cgpath_emit_cgroup(t, collect_emit, &got), 0);
        if (f->cgroup[0])
            ok &= expect_list(f->name, "cgroup", &got, f->cgroup);
        else
            ok &= got.n + got.refused <= t->n;
        if (!ok)
            failed++;
    }
    free(t);
    if (failed)
        fail_msg("%zu of %zu fixtures failed", failed, sizeof(fixtures) / sizeof(fixtures[0]));
}

/* A file cut anywhere but after a newline is not what the kernel wrote. */
static void test_truncated(void **state)
{
    struct cgpath_table *t = table_new();
    (void)state;
    for (size_t i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++) {
        const char *text = fixtures[i].text;
        size_t len = strlen(text);
        if (fixtures[i].parse_rc != 0)
            continue;
        for (size_t cut = 1; cut < len; cut++) {
            int r = cgpath_parse(text, cut, t);
            assert_int_equal(r, text[cut - 1] == '\n' ? 0 : -EINVAL);
        }
    }
    free(t);
}

static void test_parse_fields(void **state)
{
    struct cgpath_table *t = table_new();
    static const char text[] = "2:cpu,cpuacct:/a:b c\n1:name=systemd:/\n0::/x/y\n";
    (void)state;

    assert_int_equal(cgpath_parse(text, sizeof(text) - 1, t), 0);
    assert_int_equal(t->n, 3);
    assert_int_equal(t->lines[0].hierarchy, 2);
    assert_string_equal(t->lines[0].controllers, "cpu,cpuacct");
    assert_string_equal(t->lines[0].path, "/a:b c");
    assert_int_equal(t->lines[1].hierarchy, 1);
    assert_string_equal(t->lines[1].controllers, "name=systemd");
    assert_string_equal(t->lines[1].path, "/");
    assert_int_equal(t->lines[2].hierarchy, 0);
    assert_string_equal(t->lines[2].controllers, "");
    assert_string_equal(t->lines[2].path, "/x/y");
    assert_ptr_equal(cgpath_unified(t), &t->lines[2]);

    /* Embedded NUL: refused. */
    assert_int_equal(cgpath_parse("0::/a\0b\n", 8, t), -EINVAL);
    /* Arguments. */
    assert_int_equal(cgpath_parse(NULL, 1, t), -EINVAL);
    assert_int_equal(cgpath_parse(NULL, 0, t), 0);
    assert_int_equal(t->n, 0);
    free(t);
}

/* A failed parse leaves the table as it was. */
static void test_parse_untouched_on_error(void **state)
{
    struct cgpath_table *t = table_new();
    (void)state;
    assert_int_equal(cgpath_parse("0::/keep\n", 9, t), 0);
    assert_int_equal(cgpath_parse("0::/x\n0::/y\n", 12, t), -EINVAL);
    assert_int_equal(t->n, 1);
    assert_string_equal(t->lines[0].path, "/keep");
    free(t);
}

static void test_bounds(void **state)
{
    struct cgpath_table *t = table_new();
    char *buf = malloc(CGPATH_TEXT_MAX + 2);
    size_t len;
    (void)state;
    assert_non_null(buf);

    /* 64 lines are fine, 65 are not. */
    len = 0;
    for (unsigned i = 0; i < CGPATH_LINES_MAX; i++)
        len += (size_t)sprintf(buf + len, "%u:c%u:/\n", i + 1, i);
    assert_int_equal(cgpath_parse(buf, len, t), 0);
    assert_int_equal(t->n, CGPATH_LINES_MAX);
    len += (size_t)sprintf(buf + len, "0::/\n");
    assert_int_equal(cgpath_parse(buf, len, t), -E2BIG);

    /* A line of exactly CGPATH_LINE_MAX bytes, then one byte more. */
    memcpy(buf, "0::/", 4);
    memset(buf + 4, 'a', CGPATH_LINE_MAX - 4);
    buf[CGPATH_LINE_MAX] = '\n';
    assert_int_equal(cgpath_parse(buf, CGPATH_LINE_MAX + 1, t), 0);
    memset(buf + 4, 'a', CGPATH_LINE_MAX - 3);
    buf[CGPATH_LINE_MAX + 1] = '\n';
    assert_int_equal(cgpath_parse(buf, CGPATH_LINE_MAX + 2, t), -E2BIG);

    /* The whole text. */
    memset(buf, '\n', CGPATH_TEXT_MAX + 1);
    assert_int_equal(cgpath_parse(buf, CGPATH_TEXT_MAX + 1, t), -E2BIG);

    /* Segments: 256 are read, 257 refused. */
    len = 0;
    for (unsigned i = 0; i < CGPATH_SEGMENTS_MAX; i++)
        len += (size_t)sprintf(buf + len, "/s");
    struct cgpath_container c;
    struct cgpath_systemd sd;
    assert_int_equal(cgpath_container_of_path(buf, &c), 0);
    assert_int_equal(c.depth, 0);
    (void)sprintf(buf + len, "/s");
    assert_int_equal(cgpath_container_of_path(buf, &c), -E2BIG);
    assert_int_equal(cgpath_systemd_of_path(buf, &sd), -E2BIG);

    /* A path longer than a line. */
    buf[0] = '/';
    memset(buf + 1, 'a', CGPATH_LINE_MAX);
    buf[CGPATH_LINE_MAX + 1] = '\0';
    assert_int_equal(cgpath_container_of_path(buf, &c), -E2BIG);
    assert_int_equal(cgpath_container_of_path("relative", &c), -EINVAL);
    assert_int_equal(cgpath_systemd_of_path("", &sd), -EINVAL);

    free(buf);
    free(t);
}

/* Eight containers deep are reported; a ninth level fails. */
static void test_nesting_depth(void **state)
{
    char path[CGPATH_LINE_MAX + 1];
    static const char *const ids[] = {ID_A, ID_B, ID_C, ID_D, ID_E, ID_F, ID_G, ID_H, ID_A};
    struct cgpath_container c;
    size_t len = 0;
    (void)state;

    for (size_t i = 0; i < CGPATH_NEST_MAX; i++)
        len += (size_t)sprintf(path + len, "/docker/%s", ids[i]);
    assert_int_equal(cgpath_container_of_path(path, &c), 0);
    assert_int_equal(c.depth, CGPATH_NEST_MAX);
    assert_string_equal(c.levels[0].id, ID_A);
    assert_string_equal(c.levels[CGPATH_NEST_MAX - 1].id, ID_H);
    (void)sprintf(path + len, "/docker/%s", ids[CGPATH_NEST_MAX]);
    assert_int_equal(cgpath_container_of_path(path, &c), -EINVAL);
}

/* The pieces of a container id and a pod uid are exact. */
static void test_id_shapes(void **state)
{
    struct cgpath_container c;
    (void)state;

    /* Uppercase hex, 63 or 65 digits: no id. */
    assert_int_equal(cgpath_container_of_path("/docker/3F3D71F9D260E33E8B3370D3438F9A970D488ECE448"
                                              "CEAC1D6660DB26ABDB4B3",
                                              &c),
                     0);
    assert_int_equal(c.depth, 0);
    assert_int_equal(cgpath_container_of_path("/docker/" ID_A "0", &c), 0);
    assert_int_equal(c.depth, 0);
    assert_int_equal(cgpath_container_of_path("/system.slice/docker-" ID_A ".scopex", &c), 0);
    assert_int_equal(c.depth, 0);
    /* docker-<id> without .scope is not a Docker layout. */
    assert_int_equal(cgpath_container_of_path("/system.slice/docker-" ID_A, &c), 0);
    assert_int_equal(c.depth, 0);
    /* A pod uid with a wrong group length is no pod: no trusted layout. */
    assert_int_equal(
        cgpath_container_of_path("/kubepods/podf502e55f-453a-49fa-be9e-db2a34c0dce/" ID_A, &c), 0);
    assert_int_equal(c.depth, 0);
    /* Mixed separators in a systemd pod slice: container kept, pod not. */
    assert_int_equal(cgpath_container_of_path("/kubepods.slice/kubepods-podf502e55f_453a-49fa_be9e_"
                                              "db2a34c0dcee.slice/cri-containerd-" ID_A ".scope",
                                              &c),
                     0);
    assert_int_equal(c.depth, 1);
    assert_string_equal(c.levels[0].pod_uid, "");
    /* A uid past 4294967294 is no user manager. */
    assert_int_equal(cgpath_container_of_path("/user.slice/user-4294967295.slice/"
                                              "user@4294967295.service/libpod-" ID_A ".scope",
                                              &c),
                     0);
    assert_int_equal(c.depth, 0);
    /* Trailing slash, "." and ".." segments: not canonical, nothing said. */
    assert_int_equal(cgpath_container_of_path("/docker/" ID_A "/", &c), 0);
    assert_int_equal(c.depth, 0);
    assert_int_equal(cgpath_container_of_path("/docker/./" ID_A, &c), 0);
    assert_int_equal(c.depth, 0);
}

/* ---- the plugins, loaded as the agent loads them ---- */

struct plugin {
    const char *name;
    void *handle;
    const struct sockid_attestor *desc;
};

static struct plugin plugins[] = {{.name = "cgroup"}, {.name = "container"}, {.name = "systemd"}};

static int plugins_setup(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        char path[4096];
        sockid_attestor_entry_fn entry;
        (void)snprintf(path, sizeof(path), "%s/%s.so", CGPATH_PLUGIN_DIR, plugins[i].name);
        plugins[i].handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!plugins[i].handle) {
            fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
            return -1;
        }
        *(void **)&entry = dlsym(plugins[i].handle, SOCKID_ATTESTOR_SYMBOL);
        if (!entry)
            return -1;
        plugins[i].desc = entry();
        if (!plugins[i].desc || strcmp(plugins[i].desc->name, plugins[i].name) != 0 ||
            plugins[i].desc->abi_version != SOCKID_ATTESTOR_ABI_VERSION ||
            plugins[i].desc->struct_size != sizeof(struct sockid_attestor))
            return -1;
    }
    return 0;
}

static int plugins_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++)
        if (plugins[i].handle)
            (void)dlclose(plugins[i].handle);
    return 0;
}

static const struct plugin *plugin_named(const char *name)
{
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++)
        if (strcmp(plugins[i].name, name) == 0)
            return &plugins[i];
    fail_msg("no plugin %s", name);
    return NULL;
}

static void *plugin_start(const struct plugin *p)
{
    struct sockid_attestor_config cfg = {.struct_size = sizeof(cfg)};
    char err[256] = "";
    void *st = NULL;
    int r = p->desc->init(&cfg, &st, err, sizeof(err));
    if (r != 0)
        fail_msg("%s init: %d %s", p->name, r, err);
    assert_non_null(st);
    return st;
}

/* The v2 cgroup id of pid as the kernel reports it to the agent
 * (PIDFD_GET_INFO, Linux 6.13), 0 when this kernel cannot say. */
struct test_pidfd_info {
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t fields[12];
};
#define TEST_PIDFD_GET_INFO      _IOWR(0xFF, 11, struct test_pidfd_info)
#define TEST_PIDFD_INFO_CGROUPID (1ull << 2)

static uint64_t kernel_cgroup_id(pid_t pid)
{
    struct test_pidfd_info info = {.mask = TEST_PIDFD_INFO_CGROUPID};
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    uint64_t id = 0;
    if (fd < 0)
        return 0;
    if (ioctl(fd, TEST_PIDFD_GET_INFO, &info) == 0 && (info.mask & TEST_PIDFD_INFO_CGROUPID))
        id = info.cgroupid;
    (void)close(fd);
    return id;
}

static struct sockid_peer peer_of(pid_t pid, uint64_t cgroup_id)
{
    char path[64];
    struct sockid_peer p = {
        .struct_size = sizeof(p),
        .pid = pid,
        .uid = (uint32_t)geteuid(),
        .gid = (uint32_t)getegid(),
        .cgroup_id = cgroup_id,
        .deadline_ns = UINT64_MAX,
    };
    (void)snprintf(path, sizeof(path), "/proc/%d", (int)pid);
    p.proc_dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(p.proc_dirfd >= 0);
    return p;
}

static int plugin_attest(const char *name, const struct sockid_peer *peer, struct collect *c)
{
    const struct plugin *p = plugin_named(name);
    void *st = plugin_start(p);
    memset(c, 0, sizeof(*c));
    int r = p->desc->attest(st, peer, collect_emit, c);
    p->desc->fini(st);
    return r;
}

static void test_plugins_init(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        const char *keys[] = {"bogus"}, *values[] = {"1"};
        struct sockid_attestor_config cfg = {
            .struct_size = sizeof(cfg), .n = 1, .keys = keys, .values = values};
        char err[256] = "";
        void *st = NULL;
        assert_int_equal(plugins[i].desc->init(&cfg, &st, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "bogus"));
        assert_null(st);
        /* No config at all is fine too. */
        assert_int_equal(plugins[i].desc->init(NULL, &st, err, sizeof(err)), 0);
        plugins[i].desc->fini(st);
        plugins[i].desc->fini(NULL);
    }
}

/* The cgroup attestor on this process: its selectors are the lines of
 * /proc/self/cgroup, keyed as the file keys them. */
static void test_plugin_cgroup_self(void **state)
{
    static char text[CGPATH_TEXT_MAX + 1];
    static struct collect want;
    struct sockid_peer peer = peer_of(getpid(), 0);
    FILE *f = fopen("/proc/self/cgroup", "re");
    size_t len;
    (void)state;

    assert_non_null(f);
    len = fread(text, 1, sizeof(text) - 1, f);
    (void)fclose(f);
    text[len] = '\0';
    memset(&want, 0, sizeof(want));
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        assert_non_null(c2);
        *c2 = '\0';
        if (strcmp(line, "0:") == 0)
            (void)collect_emit(&want, "cgroup", "unified", c2 + 1);
        else if (c1[1])
            (void)collect_emit(&want, "cgroup", c1 + 1, c2 + 1);
    }
    assert_true(want.n > 0);

    assert_int_equal(plugin_attest("cgroup", &peer, &got), 0);
    assert_int_equal(got.n, want.n);
    for (size_t i = 0; i < want.n; i++)
        assert_string_equal(got.items[i], want.items[i]);

    /* The container and systemd attestors run on it too, and whatever they
     * report is well-formed (the host refused nothing). */
    assert_int_equal(plugin_attest("container", &peer, &got), 0);
    assert_int_equal(got.refused, 0);
    assert_int_equal(plugin_attest("systemd", &peer, &got), 0);
    assert_int_equal(got.refused, 0);
    (void)close(peer.proc_dirfd);
}

/* With the kernel's cgroup id the attestation goes through; with any other
 * id it fails, for every attestor reading the v2 path. */
static void test_plugin_cgroup_id(void **state)
{
    uint64_t id = kernel_cgroup_id(getpid());
    struct sockid_peer peer;
    (void)state;

    if (id == 0)
        skip();
    peer = peer_of(getpid(), id);
    assert_int_equal(plugin_attest("cgroup", &peer, &got), 0);
    assert_true(got.n > 0);
    assert_int_equal(plugin_attest("container", &peer, &got), 0);
    assert_int_equal(plugin_attest("systemd", &peer, &got), 0);

    peer.cgroup_id = id + 1;
    assert_int_equal(plugin_attest("cgroup", &peer, &got), -ESTALE);
    assert_int_equal(got.n, 0);
    assert_int_equal(plugin_attest("container", &peer, &got), -ESTALE);
    assert_int_equal(plugin_attest("systemd", &peer, &got), -ESTALE);
    peer.cgroup_id = UINT64_MAX;
    assert_int_equal(plugin_attest("cgroup", &peer, &got), -ESTALE);
    (void)close(peer.proc_dirfd);
}

/* A verified (id, path) pair is remembered by the plugin instance; another
 * id with the same path must still fail, and the right one still pass. */
static void test_plugin_cgroup_id_cached(void **state)
{
    uint64_t id = kernel_cgroup_id(getpid());
    (void)state;

    if (id == 0)
        skip();
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        const struct plugin *p = &plugins[i];
        void *st = plugin_start(p);
        struct sockid_peer peer = peer_of(getpid(), id);
        for (int round = 0; round < 3; round++) {
            memset(&got, 0, sizeof(got));
            peer.cgroup_id = id; /* checked, then from the cache */
            assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), 0);
            memset(&got, 0, sizeof(got));
            peer.cgroup_id = id + 1; /* the same path, another cgroup: never cached */
            assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), -ESTALE);
            assert_int_equal(got.n, 0);
            peer.cgroup_id = id ^ (UINT64_C(1) << 40);
            assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), -ESTALE);
        }
        (void)close(peer.proc_dirfd);
        p->desc->fini(st);
    }
}

/* The host's proc_read, played by the test: counts calls, and the view has
 * no usable dirfd, so a plugin that read the file itself would fail. */
struct test_host {
    struct sockid_peer peer;
    unsigned calls;
    size_t len;
    char text[CGPATH_TEXT_MAX + 1];
};

static int test_host_proc_read(const struct sockid_peer *peer, const char *name,
                               const char **ret_data, size_t *ret_len)
{
    struct test_host *h = peer->proc_read_ctx;
    h->calls++;
    if (strcmp(name, "cgroup") != 0)
        return -ENOENT;
    *ret_data = h->text;
    *ret_len = h->len;
    return 0;
}

static struct test_host host; /* large: not on the stack */

static void test_plugins_use_proc_read(void **state)
{
    static struct collect direct;
    (void)state;

    FILE *f = fopen("/proc/self/cgroup", "re");
    assert_non_null(f);
    memset(&host, 0, sizeof(host));
    host.len = fread(host.text, 1, sizeof(host.text) - 1, f);
    (void)fclose(f);
    host.peer = (struct sockid_peer){
        .struct_size = sizeof(host.peer),
        .pid = getpid(),
        .uid = (uint32_t)geteuid(),
        .gid = (uint32_t)getegid(),
        .proc_dirfd = -1,
        .cgroup_id = kernel_cgroup_id(getpid()),
        .deadline_ns = UINT64_MAX,
        .proc_read = test_host_proc_read,
        .proc_read_ctx = &host,
    };
    /* All three get the file from the host, once each, and say what they
     * say when they read it themselves. */
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        struct sockid_peer own = peer_of(getpid(), host.peer.cgroup_id);
        assert_int_equal(plugin_attest(plugins[i].name, &own, &direct), 0);
        (void)close(own.proc_dirfd);
        assert_int_equal(plugin_attest(plugins[i].name, &host.peer, &got), 0);
        assert_int_equal(host.calls, i + 1);
        assert_int_equal(got.n, direct.n);
        for (size_t j = 0; j < got.n; j++)
            assert_string_equal(got.items[j], direct.items[j]);
    }
    /* The id check applies to what proc_read returned. */
    if (host.peer.cgroup_id) {
        host.len = (size_t)snprintf(host.text, sizeof(host.text), "0::/sockid-no-such-%d\n",
                                    (int)getpid());
        assert_int_equal(plugin_attest("cgroup", &host.peer, &got), -ESTALE);
    }
    /* A failure of proc_read is the attestor's failure. */
    host.peer.proc_read = NULL;
    assert_int_equal(plugin_attest("systemd", &host.peer, &got), -EBADF); /* own read, fd -1 */
    host.peer.proc_read = test_host_proc_read;
    host.peer.struct_size = (uint32_t)SOCKID_PEER_SIZE_MIN; /* an older agent */
    assert_int_equal(plugin_attest("container", &host.peer, &got), -EBADF);
    host.peer.struct_size = (uint32_t)SOCKID_PEER_SIZE_MIN - 1;
    assert_int_equal(plugin_attest("cgroup", &host.peer, &got), -EINVAL);
}

/* ---- real cgroups (root, a writable cgroup2 mount) ---- */

static char cg2_mount[256];

static bool cg2_find(void)
{
    static const char *const candidates[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        struct statfs sfs;
        if (statfs(candidates[i], &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC) {
            (void)snprintf(cg2_mount, sizeof(cg2_mount), "%s", candidates[i]);
            return access(cg2_mount, W_OK) == 0;
        }
    }
    return false;
}

/* Creates every directory of rel under the cgroup2 mount. Another test may
 * remove a shared parent (user.slice) as this one creates a child in it:
 * that is retried. */
static void cg2_mkdirs(const char *rel)
{
    char path[1024];
    for (int attempt = 0; attempt < 20; attempt++) {
        bool raced = false;
        for (const char *p = rel + 1;; p++) {
            if (*p == '/' || *p == '\0') {
                (void)snprintf(path, sizeof(path), "%s%.*s", cg2_mount, (int)(p - rel), rel);
                if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                    assert_int_equal(errno, ENOENT);
                    raced = true;
                    break;
                }
            }
            if (*p == '\0')
                break;
        }
        if (!raced)
            return;
    }
    fail_msg("cannot create %s%s", cg2_mount, rel);
}

/* Removes rel and its parents up to (not including) the mount, leaving any
 * another test still uses. */
static void cg2_rmdirs(const char *rel)
{
    char path[1024];
    (void)snprintf(path, sizeof(path), "%s%s", cg2_mount, rel);
    /* The leaf is this test's own: a reaped child may take a moment to
     * leave it. A parent still in use by someone else stays. */
    for (int attempt = 0; attempt < 100 && rmdir(path) < 0 && errno == EBUSY; attempt++)
        (void)usleep(10000);
    for (;;) {
        char *slash = strrchr(path, '/');
        if (!slash || (size_t)(slash - path) <= strlen(cg2_mount))
            break;
        *slash = '\0';
        (void)rmdir(path);
    }
}

struct cg_child {
    pid_t pid;
    int release;
};

/* A child that waits, moved into cgroup rel. */
static struct cg_child cg2_child_in(const char *rel)
{
    char path[1024], num[32];
    int pipefd[2];
    struct cg_child ch;
    int fd;

    assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
    ch.pid = fork();
    assert_true(ch.pid >= 0);
    if (ch.pid == 0) {
        char b;
        (void)close(pipefd[1]);
        _exit(read(pipefd[0], &b, 1) < 0);
    }
    (void)close(pipefd[0]);
    ch.release = pipefd[1];
    (void)snprintf(path, sizeof(path), "%s%s/cgroup.procs", cg2_mount, rel);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    int n = snprintf(num, sizeof(num), "%d", (int)ch.pid);
    assert_int_equal(write(fd, num, (size_t)n), n);
    (void)close(fd);
    return ch;
}

static void cg2_child_end(struct cg_child *ch)
{
    int status;
    (void)close(ch->release);
    assert_int_equal(waitpid(ch->pid, &status, 0), ch->pid);
}

static uint64_t cg2_ino(const char *rel)
{
    char path[1024];
    struct stat st;
    (void)snprintf(path, sizeof(path), "%s%s", cg2_mount, rel);
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_ino;
}

struct real_case {
    const char *rel;
    const char *container[MAX_EXPECT];
    const char *systemd[MAX_EXPECT];
};

static bool run_real_case(const struct real_case *rc)
{
    struct cg_child ch;
    struct sockid_peer peer;
    uint64_t id, kid;
    char unified[1100];
    bool ok = true;

    cg2_mkdirs(rc->rel);
    ch = cg2_child_in(rc->rel);
    id = cg2_ino(rc->rel);
    /* The id the agent gets from the kernel is the directory's inode. */
    kid = kernel_cgroup_id(ch.pid);
    if (kid)
        assert_int_equal(kid, id);
    peer = peer_of(ch.pid, id);

    assert_int_equal(plugin_attest("cgroup", &peer, &got), 0);
    (void)snprintf(unified, sizeof(unified), "cgroup:unified:%s", rc->rel);
    bool found = false;
    for (size_t i = 0; i < got.n; i++)
        found |= strcmp(got.items[i], unified) == 0;
    if (!found) {
        fprintf(stderr, "real cgroup %s: no %s\n", rc->rel, unified);
        ok = false;
    }
    assert_int_equal(plugin_attest("container", &peer, &got), 0);
    ok &= expect_list(rc->rel, "container (real)", &got, rc->container);
    assert_int_equal(plugin_attest("systemd", &peer, &got), 0);
    ok &= expect_list(rc->rel, "systemd (real)", &got, rc->systemd);

    /* The process moved since it connected: the id no longer agrees. */
    peer.cgroup_id = id ^ 1;
    assert_int_equal(plugin_attest("cgroup", &peer, &got), -ESTALE);
    assert_int_equal(plugin_attest("container", &peer, &got), -ESTALE);

    (void)close(peer.proc_dirfd);
    cg2_child_end(&ch);
    cg2_rmdirs(rc->rel);
    return ok;
}

/* What the id cache relies on (cgread.c): a cgroup2 directory cannot be
 * renamed, even by root; only v1 hierarchies allow it. */
static void test_cgroup2_no_rename(void **state)
{
    char a[1024], b[1024];
    (void)state;

    if (geteuid() != 0 || !cg2_find())
        skip();
    (void)snprintf(a, sizeof(a), "%s/sockidtest-rename-%d", cg2_mount, (int)getpid());
    (void)snprintf(b, sizeof(b), "%s/sockidtest-renamed-%d", cg2_mount, (int)getpid());
    assert_int_equal(mkdir(a, 0755), 0);
    int r = rename(a, b);
    int e = errno;
    if (r == 0)
        (void)rmdir(b);
    else
        (void)rmdir(a);
    assert_int_equal(r, -1);
    assert_int_equal(e, EPERM);
}

/* A process that moved to another cgroup after connecting is refused by
 * every cgroup attestor, also once its old (id, path) was verified and
 * cached; back where it connected, it passes again. */
static void test_real_cgroup_moved(void **state)
{
    char a[256], b[256], path[1024], num[32];
    (void)state;

    if (geteuid() != 0 || !cg2_find())
        skip();
    (void)snprintf(a, sizeof(a), "/sockidtest%d-moved.slice/a.service", (int)getpid());
    (void)snprintf(b, sizeof(b), "/sockidtest%d-moved.slice/b.service", (int)getpid());
    cg2_mkdirs(a);
    cg2_mkdirs(b);
    struct cg_child ch = cg2_child_in(a);
    uint64_t ida = cg2_ino(a);
    for (size_t i = 0; i < sizeof(plugins) / sizeof(plugins[0]); i++) {
        const struct plugin *p = &plugins[i];
        void *st = plugin_start(p);
        struct sockid_peer peer = peer_of(ch.pid, ida);
        memset(&got, 0, sizeof(got));
        assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), 0);
        assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), 0);

        /* Moved to b: the kernel's id at connect is a's. */
        (void)snprintf(path, sizeof(path), "%s%s/cgroup.procs", cg2_mount, b);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        int n = snprintf(num, sizeof(num), "%d", (int)ch.pid);
        assert_int_equal(write(fd, num, (size_t)n), n);
        (void)close(fd);
        assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), -ESTALE);

        /* Back in a. */
        (void)snprintf(path, sizeof(path), "%s%s/cgroup.procs", cg2_mount, a);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, num, (size_t)n), n);
        (void)close(fd);
        memset(&got, 0, sizeof(got));
        assert_int_equal(p->desc->attest(st, &peer, collect_emit, &got), 0);
        (void)close(peer.proc_dirfd);
        p->desc->fini(st);
    }
    cg2_child_end(&ch);
    cg2_rmdirs(a);
    cg2_rmdirs(b);
}

static void test_real_cgroups(void **state)
{
    char hex[65], slice[64], uslice[64], umgr[64];
    char rel[8][512];
    char want[8][4][600];
    unsigned seed = (unsigned)getpid() ^ (unsigned)time(NULL);
    unsigned uid = 200000 + (unsigned)getpid() % 100000;
    bool ok = true;
    (void)state;

    if (geteuid() != 0 || !cg2_find())
        skip();
    for (int i = 0; i < 64; i++)
        hex[i] = "0123456789abcdef"[rand_r(&seed) % 16];
    hex[64] = '\0';
    /* A slice of this run's own, so that parallel runs never share one. */
    (void)snprintf(slice, sizeof(slice), "/sockidtest%d.slice", (int)getpid());
    (void)snprintf(uslice, sizeof(uslice), "/user.slice/user-%u.slice", uid);
    (void)snprintf(umgr, sizeof(umgr), "%s/user@%u.service", uslice, uid);

    (void)snprintf(rel[0], sizeof(rel[0]), "%s/docker-%s.scope", slice, hex);
    (void)snprintf(want[0][0], sizeof(want[0][0]), "container:id:%s", hex);
    (void)snprintf(want[0][1], sizeof(want[0][1]), "systemd:scope:docker-%s.scope", hex);
    (void)snprintf(want[0][2], sizeof(want[0][2]), "systemd:slice:%s", slice + 1);

    (void)snprintf(rel[1], sizeof(rel[1]),
                   "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
                   "%.8s_%.4s_%.4s_%.4s_%.12s.slice/cri-containerd-%s.scope",
                   hex, hex + 8, hex + 12, hex + 16, hex + 20, hex);
    (void)snprintf(want[1][0], sizeof(want[1][0]), "k8s:pod-uid:%.8s-%.4s-%.4s-%.4s-%.12s", hex,
                   hex + 8, hex + 12, hex + 16, hex + 20);

    (void)snprintf(rel[2], sizeof(rel[2]), "%s/demo.service", slice);
    (void)snprintf(rel[3], sizeof(rel[3]), "%s/docker-%s.scope", umgr, hex);
    (void)snprintf(rel[4], sizeof(rel[4]), "%s/demo.service", umgr);
    (void)snprintf(want[3][0], sizeof(want[3][0]), "systemd:user-unit:docker-%s.scope", hex);
    (void)snprintf(want[3][1], sizeof(want[3][1]), "systemd:user:%u", uid);

    const struct real_case cases[] = {
        {.rel = rel[0],
         .container = {want[0][0], "container:runtime:docker"},
         .systemd = {want[0][1], want[0][2]}},
        {.rel = rel[1],
         .container = {want[0][0], "container:runtime:containerd", want[1][0],
                       "k8s:qos:burstable"}},
        {.rel = rel[2], .systemd = {"systemd:unit:demo.service", want[0][2]}},
        /* The forgeries: a user's manager subtree. */
        {.rel = rel[3], .systemd = {want[3][0], want[3][1]}},
        {.rel = rel[4], .systemd = {"systemd:user-unit:demo.service", want[3][1]}},
    };
    char sd_kube[600];
    (void)snprintf(sd_kube, sizeof(sd_kube), "systemd:scope:cri-containerd-%s.scope", hex);
    char sd_kube_slice[600];
    (void)snprintf(sd_kube_slice, sizeof(sd_kube_slice),
                   "systemd:slice:kubepods-burstable-pod%.8s_%.4s_%.4s_%.4s_%.12s.slice", hex,
                   hex + 8, hex + 12, hex + 16, hex + 20);
    struct real_case kube = cases[1];
    kube.systemd[0] = sd_kube;
    kube.systemd[1] = sd_kube_slice;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ok &= run_real_case(i == 1 ? &kube : &cases[i]);
    if (!ok)
        fail_msg("a real cgroup did not give the selectors expected");
}

int main(void)
{
    const struct CMUnitTest pure[] = {
        cmocka_unit_test(test_fixtures),     cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_parse_fields), cmocka_unit_test(test_parse_untouched_on_error),
        cmocka_unit_test(test_bounds),       cmocka_unit_test(test_nesting_depth),
        cmocka_unit_test(test_id_shapes),
    };
    const struct CMUnitTest loaded[] = {
        cmocka_unit_test(test_plugins_init),
        cmocka_unit_test(test_plugin_cgroup_self),
        cmocka_unit_test(test_plugin_cgroup_id),
        cmocka_unit_test(test_plugin_cgroup_id_cached),
        cmocka_unit_test(test_plugins_use_proc_read),
        cmocka_unit_test(test_cgroup2_no_rename),
        cmocka_unit_test(test_real_cgroup_moved),
        cmocka_unit_test(test_real_cgroups),
    };
    int failed = cmocka_run_group_tests_name("cgpath", pure, NULL, NULL);
    failed +=
        cmocka_run_group_tests_name("cgroup plugins", loaded, plugins_setup, plugins_teardown);
    return failed ? 1 : 0;
}
