/* Who is on the other end of a connection, as the kernel says, and whether
 * it is still that same process.
 *
 * peer_capture() runs at accept: the kernel's connect-time credentials
 * (SO_PEERCRED, SO_PEERGROUPS) and a pidfd for the connecting process
 * (SO_PEERPIDFD). A pidfd pins the process, not the pid number, so once we
 * hold it no later process can be mistaken for this one. From it we resolve
 * the pid (PIDFD_GET_INFO, or /proc/self/fdinfo) and open /proc/<pid> once as
 * a directory fd; attestors read only through that dirfd.
 *
 * peer_verify() runs after attestation and before any answer that carries
 * identity: the process must still be alive, still the same pid, and still
 * run under its connect-time credentials. */
#ifndef SOCKID_PEER_H
#define SOCKID_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sockid/attestor.h>

#define PEER_INIT                                                                                  \
    {                                                                                              \
        .pidfd = -1, .proc_fd = -1                                                                 \
    }

/* What this kernel offers; probed once at startup. */
struct peer_features {
    bool peer_pidfd;     /* SO_PEERPIDFD (Linux 6.5+) */
    bool pidfd_get_info; /* PIDFD_GET_INFO ioctl (Linux 6.13+) */
    bool peer_groups;    /* SO_PEERGROUPS (Linux 4.13+) */
    /* SO_PEERPIDFD's fd comes close-on-exec (pidfd_prepare() opens it
     * O_CLOEXEC in every kernel that has the option); when false, the
     * agent sets the flag itself, one fcntl per connection. */
    bool peer_pidfd_cloexec;
};

/* The kernel's connect-time credentials of a socket's peer (SO_PEERCRED). */
struct peer_cred {
    pid_t pid; /* 0 when the peer is in a pid namespace the agent cannot see */
    uid_t uid;
    gid_t gid;
};

struct peer {
    pid_t pid;        /* in the agent's pid namespace */
    uid_t uid;        /* connect-time effective uid */
    gid_t gid;        /* connect-time effective gid */
    uint32_t *groups; /* connect-time supplementary gids */
    size_t n_groups;
    int pidfd;
    int proc_fd;        /* /proc/<pid>, O_DIRECTORY */
    uint64_t cgroup_id; /* from PIDFD_GET_INFO; 0 if unknown */
    bool weak;          /* pidfd came from pidfd_open(), not from the socket */
};

/* Fills ret with what the running kernel supports, testing each interface
 * on a socketpair of our own. */
void peer_probe(struct peer_features *ret);

/* Reads SO_PEERCRED of connected socket fd. Returns 0 or a negative errno. */
__attribute__((warn_unused_result)) int peer_read_cred(int fd, struct peer_cred *ret);

/* Captures the peer of connected socket fd, whose SO_PEERCRED the caller
 * read into cred (peer_read_cred: once per connection, as the kernel fixed
 * it at connect()). Returns 0, or:
 *  -ESRCH   the peer has already exited (or was reaped);
 *  -EPERM   the peer is in a pid namespace the agent cannot see (pid 0);
 *  -ENOTSUP the kernel has no SO_PEERPIDFD and require_pidfd is set;
 *  another negative errno for system errors.
 * On failure writes a reason a person can act on into reason and leaves ret
 * untouched. */
__attribute__((warn_unused_result)) int peer_capture(int fd, const struct peer_cred *cred,
                                                     const struct peer_features *features,
                                                     bool require_pidfd, struct peer *ret,
                                                     char *reason, size_t reason_len);

/* Checks that the peer is still the live process that connected, under its
 * connect-time credentials. Returns 0, -ESRCH (exited, or its pid changed),
 * -EPERM (credentials changed since connect), or another negative errno. */
__attribute__((warn_unused_result)) int peer_verify(const struct peer *peer,
                                                    const struct peer_features *features,
                                                    char *reason, size_t reason_len);

/* The read-only view handed to attestors. */
void peer_view(const struct peer *peer, uint64_t deadline_ns, struct sockid_peer *ret);

/* Closes the fds and frees the groups; safe on a peer set to PEER_INIT, on a
 * released one, and on the ret of a failed peer_capture left as it was. */
void peer_release(struct peer *peer);

/* Lower-level steps, exposed for unit tests. */

/* Resolves a pidfd to a pid via /proc/self/fdinfo: -ESRCH when reaped
 * ("Pid: -1"), -EPERM when in another pid namespace ("Pid: 0"). */
__attribute__((warn_unused_result)) int peer_pidfd_pid_fdinfo(int pidfd, pid_t *ret_pid);

/* The fallback for kernels without SO_PEERPIDFD: pidfd_open(pid), then a
 * check that the process started no later than accepted_boot_ns
 * (CLOCK_BOOTTIME), so that a process born after the connection cannot pass
 * for the one that connected (-ESRCH). Has a window the real option does
 * not. */
__attribute__((warn_unused_result)) int peer_pidfd_fallback(pid_t pid, uint64_t accepted_boot_ns,
                                                            int *ret_pidfd);

#endif
