/*
 * names.c: the pool-name rule and the role names of the protocol.
 */
#include <errno.h>
#include <string.h>

#include "sb-names.h"

static const char *const role_names[_ROLE_MAX] = {
        [ROLE_PRODUCER] = "producer",
        [ROLE_CONSUMER] = "consumer",
        [ROLE_ADMIN] = "admin",
};

bool sb_pool_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n > SB_POOL_NAME_MAX || name[0] == '.' || name[0] == '-')
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

const char *sb_role_name(Role role) {
        return (unsigned)role < _ROLE_MAX ? role_names[role] : "?";
}

int sb_role_from_name(const char *name) {
        for (int i = 0; i < _ROLE_MAX; i++)
                if (name && strcmp(role_names[i], name) == 0)
                        return i;
        return -EINVAL;
}
