/*
 * sb-unix.h: the address of a Unix-domain socket path, for the daemon's bind() and the
 * library's connect(); and which socket a client connects to, for the library and
 * shmbrokerctl.
 */
#pragma once

#include <sys/un.h>

/* Fill @addr for @path. Returns 0, -EINVAL for an empty path, or -ENAMETOOLONG when @path
 * does not fit sun_path (108 bytes with its NUL). */
int sb_sockaddr_un(struct sockaddr_un *addr, const char *path);

/* The socket sb_connect() connects to for @path: @path, else $SHMBROKER_SOCKET when it is
 * set and not empty, else SHMBROKER_DEFAULT_SOCKET (shmbroker.h). */
const char *sb_connect_path(const char *path);
