/*
 * sb-unix.h: the address of a Unix-domain socket path, for the daemon's bind() and the
 * library's connect().
 */
#pragma once

#include <sys/un.h>

/* Fill @addr for @path. Returns 0, -EINVAL for an empty path, or -ENAMETOOLONG when @path
 * does not fit sun_path (108 bytes with its NUL). */
int sb_sockaddr_un(struct sockaddr_un *addr, const char *path);
