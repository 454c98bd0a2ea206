/* Listening sockets: the lock that makes one agent per socket, and binding
 * a Unix socket with a deliberate mode. */
#ifndef SOCKID_LISTEN_H
#define SOCKID_LISTEN_H

#include <stddef.h>
#include <stdint.h>

/* Creates the socket's directory (0755) and takes SOCKET_PATH.lock, held
 * for the agent's life: it settles a race between two agents starting at
 * once. -EADDRINUSE (with a message) when another agent holds it. */
__attribute__((warn_unused_result)) int listen_lock(const char *socket_path, int *ret_lock_fd,
                                                    char *err, size_t err_len);

/* Binds and listens on a non-blocking Unix stream socket at path with file
 * mode `mode` (not whatever umask we inherited), after creating its
 * directory and removing a stale socket there. Refuses when another agent
 * answers at path or when path is not a socket. */
__attribute__((warn_unused_result)) int listen_unix(const char *path, uint32_t mode, int *ret_fd,
                                                    char *err, size_t err_len);

/* Sockets passed by a service manager (systemd socket activation:
 * LISTEN_FDS, LISTEN_FDNAMES). Each named one (FileDescriptorName=workload,
 * =admin and the optional =metrics) is checked to be a listening Unix
 * stream socket and made non-blocking; the agent never unlinks or chmods
 * them. A socket not passed is -1. Returns the number of sockets taken (0
 * when not socket-activated), or a negative errno with a message (an
 * unknown name, a socket of the wrong kind, no "workload"). */
__attribute__((warn_unused_result)) int listen_activated(int *ret_workload_fd, int *ret_admin_fd,
                                                         int *ret_metrics_fd, char *err,
                                                         size_t err_len);

#endif
