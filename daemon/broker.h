/*
 * broker.h: the daemon's state: its configuration, the pools by name, the connected
 * clients, and the listening socket they come through.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "pool.h"
#include "sb-list.h"

/* What one client uid holds: counted against the per-uid quotas. */
typedef struct UidUsage {
        uid_t uid;
        uint32_t clients;
        uint32_t pools;
        uint64_t bytes;
} UidUsage;

typedef struct Broker {
        sd_event *event;
        Config *config;
        sd_event_source *listen_source;
        SbList pools;            /* Pool.owner_link */
        uint32_t n_pools;
        uint64_t pool_bytes;     /* the size of every pool's segment, added up */
        SbList conns;            /* Conn.link */
        uint32_t n_conns;
        uint64_t next_serial;
        uint64_t started_usec;
        uid_t uid;
        gid_t gid;
        UidUsage *usage;         /* per client uid, for the quotas */
        size_t n_usage;
} Broker;

/* A broker on @event with @config (taken, also on failure). Returns 0 or -ENOMEM. */
int broker_new(Broker **ret, sd_event *event, Config *config);

/* Disconnect every client, free every pool; NULL-safe. Does not close the listening socket. */
Broker *broker_free(Broker *b);
DEFINE_CLEANUP_FUNC(Broker, broker_free)

/* Accept clients on @fd (listening, non-blocking). Returns 0 or -errno. */
int broker_listen(Broker *b, int fd);

/* Create the configured pools. Returns 0 or the first failure, described in @why. */
int broker_create_configured_pools(Broker *b, char *why, size_t len);

/* Create a pool after checking the name and every limit. Returns 0, SB_E_POOL_EXISTS,
 * SB_E_LIMIT, SB_E_BAD_REQUEST or -errno; the reason in @why. */
int broker_create_pool(Broker *b, const PoolSpec *spec, Pool **ret, char *why, size_t len);

Pool *broker_find_pool(Broker *b, const char *name);

/* Remove a pool now: its waiters fail, its members are closed, its segment goes once
 * the last client detaches. */
void broker_drop_pool(Broker *b, Pool *p);

/*
 * Apply a new configuration (taken): new limits; new configured pools are created;
 * pools gone from it are removed once unused; changed ones keep their layout until
 * dropped (logged).
 */
void broker_reload(Broker *b, Config *config);

/* The usage of @uid (created on first use), or NULL when @uid is exempt (root, the
 * daemon's own uid) or on ENOMEM. */
UidUsage *broker_usage(Broker *b, uid_t uid);

/* Remove @p if it is ephemeral and nobody has it open any more. */
void broker_pool_gc(Broker *b, Pool *p);
