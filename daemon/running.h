/*
 * running.h: the pools of the daemon that runs on a socket, asked over the protocol as a
 * client asks: what `--check-config` compares a file with, as a reload would.
 */
#pragma once

#include <stddef.h>

#include "pool-spec.h"
#include "sb-error.h"

/*
 * Ask the daemon listening on @path for its pools: *ret (to free()) holds *n of them as
 * its status describes them (layout, mode, owner, gid, and whether configured). Returns 0;
 * -ENOENT or -ECONNREFUSED when nobody listens there; another -errno (-EPROTO for a reply
 * that is not one, -ETIMEDOUT for none in time) with the reason in @why.
 */
int running_pools(const char *path, PoolSpec **ret, size_t *n, SbReason *why);
