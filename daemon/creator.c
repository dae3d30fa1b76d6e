/*
 * creator.c: the daemon as the creator of every segment, at start.
 *
 * The kernel grants a segment's group bits to the members of its creator's group (the
 * creator's effective gid at shmget(), shm_perm.cgid) as well as to those of its group,
 * and IPC_SET cannot change the creator. Root creates each segment under the pool's own
 * group (segment.c), so the creator's group adds nobody. A daemon without root creates
 * them under its own effective gid: a client in that group could shmat() every pool that
 * gives its group access, whatever the pool's group, bypassing the daemon. So the daemon's
 * group must be one that no client is in, and the socket's group is the one clients are in:
 *  - a socket group that was asked for (socket_group, or the socket systemd passed) and is
 *    the daemon's own is a set-up that gives every client every group pool: refused;
 *  - a socket that keeps the daemon's group because none was asked for (a daemon of one's
 *    own) works, but without group access to pools (broker_create_pool() refuses it).
 */
#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "creator.h"
#include "log.h"
#include "sb-group.h"
#include "segment.h"

/* The group of the socket file systemd passed us: 1 with *ret, or 0 (none, or no file). */
static int systemd_socket_group(gid_t *ret) {
        struct sockaddr_un sa = { 0 };
        socklen_t len = sizeof(sa) - 1;      /* the last byte stays the path's terminator */
        struct stat st;

        if (sd_listen_fds(false) != 1 ||
            getsockname(SD_LISTEN_FDS_START, (struct sockaddr *)&sa, &len) < 0 || sa.sun_family != AF_UNIX ||
            len <= offsetof(struct sockaddr_un, sun_path) || !sa.sun_path[0] || stat(sa.sun_path, &st) < 0)
                return 0;
        *ret = st.st_gid;
        return 1;
}

static const char *group_name(gid_t gid, char *buf, size_t size) {
        struct group gr, *res = NULL;
        char tmp[4096];

        if (getgrgid_r(gid, &gr, tmp, sizeof(tmp), &res) == 0 && res)
                snprintf(buf, size, "\"%s\" (gid %u)", res->gr_name, (unsigned)gid);
        else
                snprintf(buf, size, "(gid %u)", (unsigned)gid);
        return buf;
}

static int check_group(Broker *b, SbReason *why) {
        const char *asked = b->config->socket_group;
        char name[128];
        gid_t gid;

        if (b->uid == 0)
                return 0;
        /* The socket main.c will listen on: systemd's, else one with socket_group, else
         * one that keeps the daemon's group. */
        if (systemd_socket_group(&gid) == 0 && !(asked && sb_group_lookup(asked, false, &gid) == 0)) {
                b->group_access_refused = true;
                log_notice("no socket_group: the socket keeps the daemon's own group %s, and pools with group "
                           "access are refused (the kernel would admit every member of that group to them)",
                           group_name(b->gid, name, sizeof(name)));
                return 0;
        }
        if (gid != b->gid)
                return 0;
        group_name(gid, name, sizeof(name));
        /* SbReason holds 384 bytes: short enough for two group names. */
        return sb_fail(why, -EPERM,
                       "the socket's group %s is the daemon's own group: the kernel grants a segment's group bits "
                       "to its creator's group too, so every client could attach every pool with group access. Run "
                       "the daemon under a group no client is in (Group=shmbrokerd) and give the socket the "
                       "clients' group (socket_group, SocketGroup=)", name);
}

int creator_prepare(Broker *b, SbReason *why) {
        int r = segment_remove_orphans();

        if (r < 0)
                log_warning_errno(r, "cannot look for segments orphaned by a killed shmbrokerd");
        return check_group(b, why);
}
