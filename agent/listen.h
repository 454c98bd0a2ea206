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

#endif
