/*
 * group.c: group lookup.
 *
 * getgrnam_r() fails with ERANGE when the caller's buffer cannot hold the entry (a group
 * with many members): that is no answer about the group, so the buffer grows and the
 * lookup is tried again.
 */
#include <errno.h>
#include <grp.h>
#include <stdint.h>
#include <stdlib.h>

#include "sb-group.h"
#include "sb-macro.h"

#define GROUP_BUFFER_MAX (1u << 20)

static int parse_gid(const char *s, gid_t *ret) {
        uint64_t v = 0;

        for (const char *p = s; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                v = v * 10 + (uint64_t)(*p - '0');
                /* (gid_t)-1 means "no change" to chown() and shmctl(): never a group. */
                if (v >= (gid_t)-1)
                        return -ERANGE;
        }
        *ret = (gid_t)v;
        return 0;
}

int sb_group_lookup(const char *group, bool numeric, gid_t *ret) {
        struct group gr, *res = NULL;
        size_t size = 4096;
        int r;

        if (!group || !*group)
                return -ENOENT;
        r = numeric ? parse_gid(group, ret) : -EINVAL;
        if (r != -EINVAL)
                return r;
        for (;;) {
                _cleanup_(freep) char *buf = malloc(size);

                if (!buf)
                        return -ENOMEM;
                r = getgrnam_r(group, &gr, buf, size, &res);
                if (r == ERANGE && size < GROUP_BUFFER_MAX) {
                        size *= 2;
                        continue;
                }
                if (r != 0)
                        return -r;
                if (!res)
                        return -ENOENT;
                *ret = res->gr_gid;
                return 0;
        }
}
