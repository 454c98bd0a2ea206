/* Listening sockets: one agent per socket, and a deliberate file mode. */
#define _GNU_SOURCE
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "text.h"

static int mkdir_parents(const char *path, mode_t mode)
{
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    char *dir = dirname(copy);
    int r = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, mode) < 0 && errno != EEXIST)
            r = -errno;
        *p = '/';
        if (r < 0)
            break;
    }
    if (r == 0 && mkdir(dir, mode) < 0 && errno != EEXIST)
        r = -errno;
    free(copy);
    return r;
}

/* Something already at path: an agent answering there, a stale socket
 * (removed), or not a socket at all (refused). */
static int clear_socket_path(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        text_err(err, err_len,
                 "%s exists and is not a socket; remove it or choose another --socket", path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    int e = errno;
    (void)close(fd);
    if (r == 0) {
        text_err(err, err_len,
                 "another agent already answers on %s; stop it or choose another socket path",
                 path);
        return -EADDRINUSE;
    }
    if (e != ECONNREFUSED) {
        text_err(err, err_len, "cannot tell whether an agent answers on %s: %s", path, strerror(e));
        return -e;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        text_err(err, err_len, "cannot remove the stale socket %s: %s", path, strerror(errno));
        return -errno;
    }
    log_info("removed stale socket %s", path);
    return 0;
}

/* Binds a listening socket at path with a deliberate mode, not whatever
 * umask we inherited. */
int listen_unix(const char *path, uint32_t mode, int *ret_fd, char *err, size_t err_len)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path)) {
        text_err(err, err_len, "socket path %s is longer than %zu bytes; choose a shorter path",
                 path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    memcpy(addr.sun_path, path, strlen(path) + 1);
    int r = mkdir_parents(path, 0755);
    if (r < 0) {
        text_err(err, err_len, "cannot create the directory of %s: %s", path, strerror(-r));
        return r;
    }
    r = clear_socket_path(path, err, err_len);
    if (r < 0)
        return r;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r = -errno;
        text_err(err, err_len, "cannot create a socket: %s", strerror(errno));
        return r;
    }
    mode_t old = umask(0777 & ~(mode_t)mode);
    r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int e = errno;
    (void)umask(old);
    if (r < 0) {
        text_err(err, err_len, "cannot bind %s: %s", path, strerror(e));
        (void)close(fd);
        return -e;
    }
    if (chmod(path, (mode_t)mode) < 0 || listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        text_err(err, err_len, "cannot set up %s: %s", path, strerror(errno));
        (void)unlink(path);
        (void)close(fd);
        return r;
    }
    *ret_fd = fd;
    return 0;
}

int listen_lock(const char *path, int *ret_lock_fd, char *err, size_t err_len)
{
    struct sockaddr_un addr;
    if (strlen(path) >= sizeof(addr.sun_path)) {
        text_err(err, err_len, "socket path %s is longer than %zu bytes; choose a shorter --socket",
                 path, sizeof(addr.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    int r = mkdir_parents(path, 0755);
    if (r < 0) {
        text_err(err, err_len, "cannot create the directory of %s: %s", path, strerror(-r));
        return r;
    }
    char lock_path[sizeof(addr.sun_path) + 8];
    (void)snprintf(lock_path, sizeof(lock_path), "%s.lock", path);
    int fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        r = -errno;
        text_err(err, err_len, "cannot open lock file %s: %s", lock_path, strerror(errno));
        return r;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        r = -errno;
        if (errno == EWOULDBLOCK)
            text_err(err, err_len,
                     "another sockid-agent is running on %s (it holds %s); stop it or choose "
                     "another --socket",
                     path, lock_path);
        else
            text_err(err, err_len, "cannot lock %s: %s", lock_path, strerror(errno));
        (void)close(fd);
        return r == -EWOULDBLOCK ? -EADDRINUSE : r;
    }
    *ret_lock_fd = fd;
    return 0;
}

int listen_activated(int *ret_workload_fd, int *ret_admin_fd, int *ret_metrics_fd, char *err,
                     size_t err_len)
{
    char **names = NULL;
    int n = sd_listen_fds_with_names(1, &names);
    int workload = -1, admin = -1, metrics = -1, r = 0;
    if (n < 0) {
        text_err(err, err_len, "cannot read the sockets passed by the service manager: %s",
                 strerror(-n));
        return n;
    }
    for (int i = 0; i < n && r == 0; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        const char *name = names && names[i] ? names[i] : "unknown";
        int *slot = strcmp(name, "workload") == 0  ? &workload
                    : strcmp(name, "admin") == 0   ? &admin
                    : strcmp(name, "metrics") == 0 ? &metrics
                                                   : NULL;
        if (!slot) {
            text_err(err, err_len,
                     "the service manager passed a socket named '%s'; name the sockets "
                     "'workload', 'admin' and (optionally) 'metrics' with FileDescriptorName=",
                     name);
            r = -EINVAL;
        } else if (*slot >= 0) {
            text_err(err, err_len, "the service manager passed two sockets named '%s'", name);
            r = -EINVAL;
        } else if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
            text_err(err, err_len,
                     "the socket named '%s' passed by the service manager is not a listening "
                     "Unix stream socket; use ListenStream= with a path",
                     name);
            r = -EINVAL;
        } else {
            int flags = fcntl(fd, F_GETFL);
            if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
                fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                r = -errno;
                text_err(err, err_len, "cannot set up the socket named '%s': %s", name,
                         strerror(errno));
            }
            *slot = fd;
        }
    }
    for (int i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    if (r == 0 && n > 0 && workload < 0) {
        text_err(err, err_len,
                 "socket activation passed no socket named 'workload'; add "
                 "FileDescriptorName=workload to the socket unit");
        r = -EINVAL;
    }
    if (r < 0) {
        for (int i = 0; i < n; i++)
            (void)close(SD_LISTEN_FDS_START + i);
        return r;
    }
    *ret_workload_fd = workload;
    *ret_admin_fd = admin;
    *ret_metrics_fd = metrics;
    return n;
}
