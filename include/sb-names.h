/*
 * sb-names.h: the protocol's names that both ends check the same way: pool names and
 * client roles. The daemon, the library and shmbrokerctl call these; nothing else spells
 * the rule or the role names.
 */
#pragma once

#include <stdbool.h>

#define SB_POOL_NAME_MAX 64

/* A pool name: 1 to 64 of [A-Za-z0-9._-], not starting with '.' or '-'. NULL is not. */
bool sb_pool_name_valid(const char *name);

/* What a client said it is in hello. The order is the public sb_role's (shmbroker.h). */
typedef enum Role {
        ROLE_PRODUCER,
        ROLE_CONSUMER,
        ROLE_ADMIN,
        _ROLE_MAX,
} Role;

/* "producer", "consumer", "admin"; "?" out of range. */
const char *sb_role_name(Role role);

/* The role named @name, or -EINVAL. */
int sb_role_from_name(const char *name);
