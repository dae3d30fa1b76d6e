/*
 * broker.h: the daemon's state below its clients: the configuration in force, the pools
 * by name with the limits on creating them, the per-uid quotas, and the list of client
 * sessions (which status reads; the listener owns the clients themselves).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "pool.h"
#include "quota.h"
#include "reaper.h"
#include "sb-error.h"
#include "sb-list.h"

typedef struct Broker {
        sd_event *event;         /* the loop every client's socket and wait runs on */
        Config *config;
        Quota quota;
        SbList pools;            /* Pool.owner_link */
        uint32_t n_pools;
        uint64_t pool_bytes;     /* the size of every pool's segment, added up */
        Reaper reaper;           /* the segments of dropped pools that clients still attach */
        bool group_access_refused;   /* our group is our socket's: no pool may give its group access (creator.c) */
        SbList sessions;         /* Session.link, in connection order */
        uint32_t n_sessions;
        uint64_t next_serial;
        uint64_t started_usec;
        uid_t uid;
        gid_t gid;
} Broker;

/* A broker on @event with @config (taken, also on failure). Returns 0 or -ENOMEM. */
int broker_new(Broker **ret, sd_event *event, Config *config);

/* Free every pool; NULL-safe. Every session must be gone first (listener_free()). */
Broker *broker_free(Broker *b);
DEFINE_CLEANUP_FUNC(Broker, broker_free)

/* Create the configured pools that do not exist yet. 0, or -EINVAL / -errno with the
 * first failure in @why. */
int broker_create_configured_pools(Broker *b, SbReason *why);

/* Create a pool after checking the name, every limit and its owner's quota (in which
 * dropped pools count until their segments are gone). Returns 0, SB_E_POOL_EXISTS,
 * SB_E_LIMIT, SB_E_BAD_REQUEST, SB_E_PERMISSION_DENIED (group access, when the daemon
 * cannot give it safely) or -errno; the reason in @why. */
int broker_create_pool(Broker *b, const PoolSpec *spec, Pool **ret, SbReason *why);

Pool *broker_find_pool(Broker *b, const char *name);

/* Remove a pool now: its waiters fail, its members are closed, its segment goes once
 * the last client detaches, and its charge stays with its owner until then. */
void broker_drop_pool(Broker *b, Pool *p);

/* Remove @p if it is ephemeral and nobody has it open any more. */
void broker_pool_gc(Broker *b, Pool *p);

/*
 * Apply a new configuration (taken): new limits; new configured pools are created;
 * pools gone from it are removed once unused; changed ones keep their layout until
 * dropped (logged).
 */
void broker_reload(Broker *b, Config *config);
