/*
 * unix.c: Unix-domain socket addresses, and the socket a client connects to.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sb-unix.h"
#include "shmbroker.h"

int sb_sockaddr_un(struct sockaddr_un *addr, const char *path) {
        size_t len = strlen(path);

        *addr = (struct sockaddr_un){ .sun_family = AF_UNIX };
        if (len == 0)
                return -EINVAL;
        if (len >= sizeof(addr->sun_path))
                return -ENAMETOOLONG;
        memcpy(addr->sun_path, path, len + 1);
        return 0;
}

const char *sb_connect_path(const char *path) {
        if (!path)
                path = getenv("SHMBROKER_SOCKET");
        return path && *path ? path : SHMBROKER_DEFAULT_SOCKET;
}
