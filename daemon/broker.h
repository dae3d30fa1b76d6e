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
        uint64_t buffered;       /* the clients' connection buffers, added up (max_buffered) */
        SbList held_back;        /* clients held back while buffered is over max_buffered */
        sd_event_source *poll;   /* a look at the pools that need one (pool_needs_poll()) */
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

/*
 * Check configuration @c completely: what a start, a reload and `shmbrokerd --check-config`
 * check alike. config_check() (the file as a whole), and that no name it configures is
 * held by a pool a client created among the pools of @b (NULL: no daemon runs, no such
 * pool). Returns 0 or -EINVAL with "PATH: line N: reason" in @why.
 */
int broker_check_config(Broker *b, const Config *c, SbReason *why);

/*
 * broker_check_config() outside the daemon (`--check-config`), against the pools @live of
 * the daemon that runs (as its status describes them: configured or not, owner, gid): a
 * configured name held by a pool a client created refuses the file, as a reload would.
 * When the file passes, each configured pool whose live one differs gets a notice
 * (broker_note_changed_pool()). Returns 0 or -EINVAL with "PATH: line N: reason" in @why.
 */
int broker_check_config_against(const Config *c, const PoolSpec *live, size_t n_live, SbReason *why);

/*
 * A pool keeps its layout, mode and group until it is dropped (its segment cannot change
 * under its users): when configured pool @configured would now be made otherwise than
 * @live, the pool of its name, log a notice that says what differs and how to apply it.
 * @uid and @gid are the daemon's ((uid_t)-1, (gid_t)-1 when unknown: outside the daemon).
 */
void broker_note_changed_pool(const PoolSpec *configured, const PoolSpec *live, uid_t uid, gid_t gid);

/* Create the configured pools that do not exist yet. 0, or -EINVAL / -errno with the
 * first failure in @why. */
int broker_create_configured_pools(Broker *b, SbReason *why);

/* Create a pool after checking the name (taken, or reserved by the configuration for
 * any other pool than the configured one), every limit and its owner's quota (in which
 * dropped pools count until their segments are gone). Returns 0, SB_E_POOL_EXISTS,
 * SB_E_PERMISSION_DENIED (a reserved name; group access, when the daemon cannot give it
 * safely), SB_E_LIMIT, SB_E_BAD_REQUEST or -errno; the reason in @why. */
int broker_create_pool(Broker *b, const PoolSpec *spec, Pool **ret, SbReason *why);

Pool *broker_find_pool(Broker *b, const char *name);

/* Remove a pool now: its waiters fail, its members are closed, its segment goes once
 * the last client detaches, and its charge stays with its owner until then. */
void broker_drop_pool(Broker *b, Pool *p);

/* Remove @p if it is ephemeral and nobody has it open any more. */
void broker_pool_gc(Broker *b, Pool *p);

/* Look at the pools that need it (pool_needs_poll()) in a millisecond, and every
 * millisecond while one does. */
void broker_poll_soon(Broker *b);

/*
 * Apply a new configuration (taken, also on failure), all or nothing. It must pass
 * broker_check_config(), and its new configured pools must be made under its limits;
 * otherwise the pools made for it go again, the running configuration stays whole
 * (limits included), and the reason is in @why. Once applied: the new limits hold for
 * what comes next, configured pools removed from the file go once unused, those put
 * back (even while they were going) are configured and persistent again, and changed
 * ones keep their layout until dropped (a notice, broker_note_changed_pool()). Returns 0,
 * -EINVAL or -errno.
 */
int broker_reload(Broker *b, Config *config, SbReason *why);
