/*
 * config.h: the daemon's configuration: socket, limits and configured pools, read from
 * JSON with // and block comments.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "pool-spec.h"
#include "sb-error.h"
#include "sb-macro.h"
#include "shmbroker.h"

#define CONFIG_DEFAULT_PATH "/etc/shmbroker/shmbroker.conf"
/* The default socket is the library's (the public header owns it): both ends agree. */
#define CONFIG_DEFAULT_SOCKET SHMBROKER_DEFAULT_SOCKET

typedef struct ConfigLimits {
        uint64_t max_pools;
        uint64_t max_bytes;
        uint64_t max_clients;
        uint64_t max_line;
        uint64_t max_meta;       /* bytes of one batch's meta */
        uint64_t max_meta_bytes; /* the metas of ready and being-read batches, every uid's */
        /* Quotas of each client uid (root and the daemon's own uid are exempt). */
        uint64_t max_pools_per_uid;
        uint64_t max_bytes_per_uid;
        uint64_t max_clients_per_uid;
        uint64_t max_meta_bytes_per_uid;
} ConfigLimits;

typedef struct Config {
        char *socket;            /* NULL: the default */
        unsigned socket_mode;
        char *socket_group;      /* NULL: the daemon's group */
        ConfigLimits limits;
        PoolSpec *pools;         /* persistent and configured; group not looked up yet */
        size_t n_pools;
} Config;

/* The defaults: no pools, the limits of the example configuration. NULL on ENOMEM. */
Config *config_new_default(void);
Config *config_free(Config *c);
DEFINE_CLEANUP_FUNC(Config, config_free)

/*
 * Parse configuration @text. Returns 0, -EINVAL with "line N: reason" in @why, or
 * -ENOMEM. Groups are not looked up here (the broker does, when it creates the pools).
 */
int config_parse(const char *text, size_t len, Config **ret, SbReason *why);

/*
 * Read and parse @path. A missing file is an error unless @missing_ok, which gives the
 * defaults. Errors name the file: "PATH:N: reason".
 */
int config_load(const char *path, bool missing_ok, Config **ret, SbReason *why);
