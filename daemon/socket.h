/*
 * socket.h: the daemon's listening socket: taken from systemd, or bound by the daemon.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* The socket systemd passed (LISTEN_FDS): 1 with *ret_fd set, 0 if none, or -errno. */
int socket_from_systemd(int *ret_fd);

/*
 * Bind and listen on @path with permission @mode and (if @gid is not -1) group @gid.
 * A stale socket file left by a dead daemon is replaced; a live one is -EADDRINUSE.
 * Returns 0 or -errno.
 */
int socket_listen_unix(const char *path, unsigned mode, gid_t gid, int *ret_fd);
