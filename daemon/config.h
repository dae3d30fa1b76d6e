/*
 * config.h: the daemon's configuration: socket, limits and configured pools, read from
 * JSON with // and block comments; and the pool description shared with "create".
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "pool.h"

#define CONFIG_DEFAULT_PATH "/etc/shmbroker/shmbroker.conf"
#define CONFIG_DEFAULT_SOCKET "/run/shmbroker/shmbroker.sock"

typedef struct ConfigLimits {
        uint64_t max_pools;
        uint64_t max_bytes;
        uint64_t max_clients;
        uint64_t max_line;
        /* Quotas of each client uid (root and the daemon's own uid are exempt). */
        uint64_t max_pools_per_uid;
        uint64_t max_bytes_per_uid;
        uint64_t max_clients_per_uid;
} ConfigLimits;

typedef struct ConfigPool {
        PoolSpec spec;
        char group[64];          /* "" for the daemon's own group */
} ConfigPool;

typedef struct Config {
        char *socket;            /* NULL: the default */
        unsigned socket_mode;
        char *socket_group;      /* NULL: the daemon's group */
        ConfigLimits limits;
        ConfigPool *pools;
        size_t n_pools;
} Config;

/* The defaults: no pools, the limits of the example configuration. NULL on ENOMEM. */
Config *config_new_default(void);
Config *config_free(Config *c);
DEFINE_CLEANUP_FUNC(Config, config_free)

/*
 * Parse configuration @text. Returns 0, -EINVAL with "line N: reason" in @err, or
 * -ENOMEM. Groups are not looked up here (config_resolve does).
 */
int config_parse(const char *text, size_t len, Config **ret, char *err, size_t errlen);

/*
 * Read and parse @path. A missing file is an error unless @missing_ok, which gives the
 * defaults. Errors name the file: "PATH:N: reason".
 */
int config_load(const char *path, bool missing_ok, Config **ret, char *err, size_t errlen);

/*
 * Fill a pool description from a JSON object (a configured pool, or a create request).
 * @strict refuses unknown keys. The pool name comes from key @name_key. Sets
 * *group to the "group" string, if any (not looked up). Returns 0, or -EINVAL with the
 * reason in @why and the offending key in *bad_key.
 */
int pool_spec_from_json(const cJSON *obj, const char *name_key, bool strict, PoolSpec *spec,
                        const char **group, char *why, size_t len, const char **bad_key);
