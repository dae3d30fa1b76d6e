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
        /* The clients' socket buffers together (partial lines in, replies out): past it,
         * the greedy ones are held back. */
        uint64_t max_buffered;
        uint64_t max_meta_bytes_per_uid;
} ConfigLimits;

/* The name of the @i-th limit of @l as the file names it ("max_pools"), its value in
 * *@value; NULL past the last. */
const char *config_limit_at(const ConfigLimits *l, size_t i, uint64_t *value);

typedef struct Config {
        char *path;              /* the file it was read from; NULL for text or the defaults */
        char *text;              /* that text, comments blanked: error messages find lines in it */
        size_t text_len;
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
 * Parse configuration @text: its syntax and each value on its own. Returns 0, -EINVAL
 * with "line N: reason" in @why, or -ENOMEM. Groups are not looked up here (the broker
 * does, when it creates the pools), and the whole is not checked (config_check()).
 */
int config_parse(const char *text, size_t len, Config **ret, SbReason *why);

/*
 * Read and parse @path. A missing file is an error unless @missing_ok, which gives the
 * defaults. Errors name the file: "PATH: line N: reason".
 */
int config_load(const char *path, bool missing_ok, Config **ret, SbReason *why);

/*
 * Check @c as a whole, as far as it alone decides: the socket path fits a Unix socket
 * address, every pool's layout can be made, and the configured pools fit max_pools and
 * max_bytes together. Returns 0 or -EINVAL with "PATH: line N: reason" in @why. The
 * broker adds what depends on the pools that exist (broker_check_config()).
 */
int config_check(const Config *c, SbReason *why);

/* Fail with "PATH: line N: reason": the line of top-level @key, of element @index of it
 * (if >= 0), of its member @sub (if set). Returns -EINVAL. */
int config_fail(const Config *c, SbReason *why, const char *key, long index, const char *sub, const char *fmt, ...)
        _printf_(6, 7);

/* The configured pool named @name, or NULL. */
const PoolSpec *config_find_pool(const Config *c, const char *name);
