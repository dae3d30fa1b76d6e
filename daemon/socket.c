/*
 * socket.c: creating the listening Unix-domain socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "sb-macro.h"
#include "sb-unix.h"
#include "socket.h"

int socket_from_systemd(int *ret_fd) {
        int n = sd_listen_fds(true), fd = SD_LISTEN_FDS_START, flags;

        if (n < 0)
                return n;
        if (n == 0)
                return 0;
        if (n > 1)
                return -E2BIG;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                return -ENOTSOCK;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        *ret_fd = fd;
        return 1;
}

static int make_parent_dir(const char *path) {
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        char *slash;

        snprintf(dir, sizeof(dir), "%s", path);
        slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

/* Whether a daemon answers on @addr: a refused connect means the file is stale. */
static bool socket_is_live(const struct sockaddr_un *addr) {
        _cleanup_(closep) int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (fd < 0)
                return true;
        return connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == 0 || errno != ECONNREFUSED;
}

int socket_listen_unix(const char *path, unsigned mode, gid_t gid, int *ret_fd) {
        _cleanup_(closep) int fd = -1;
        struct sockaddr_un addr;
        mode_t old_umask;
        int r;

        r = sb_sockaddr_un(&addr, path);
        if (r < 0)
                return r;
        r = make_parent_dir(path);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;

        /* Bind under a umask that yields @mode at once: no moment with wider access. */
        old_umask = umask(~mode & 0777);
        r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
        if (r < 0 && errno == EADDRINUSE && !socket_is_live(&addr)) {
                (void)unlink(path);
                r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
        }
        r = r < 0 ? -errno : 0;
        umask(old_umask);
        if (r < 0)
                return r;
        if (chmod(path, mode) < 0 || (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) < 0)) {
                r = -errno;
                (void)unlink(path);
                return r;
        }
        if (listen(fd, SOMAXCONN) < 0) {
                r = -errno;
                (void)unlink(path);
                return r;
        }
        *ret_fd = sb_steal_fd(&fd);
        return 0;
}
