/*
 * unix.c: Unix-domain socket addresses.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "sb-unix.h"

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
