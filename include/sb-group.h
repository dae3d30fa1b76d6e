/*
 * sb-group.h: looking up a group by name or number, for pools and the socket.
 */
#pragma once

#include <sys/types.h>

#include <stdbool.h>

/*
 * The gid of @group: a group name, or (if @numeric) a decimal gid. Returns 0, -ENOENT (no
 * such group), -ERANGE (a number that is no valid gid), -ENOMEM or another -errno of the
 * lookup.
 */
int sb_group_lookup(const char *group, bool numeric, gid_t *ret);
