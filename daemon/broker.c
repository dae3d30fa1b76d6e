/*
 * broker.c: the pools by name, the limits on creating them, and the configured pools.
 *
 * The names in the configuration are reserved: only the daemon creates a pool of such a
 * name, from the configuration, so that the pool trainers open by a configured name is
 * always the administrator's (owner, group, mode), never one a user made first. A pool
 * made from the configuration keeps spec.configured for its life; whether its name is in
 * the configuration now is the configuration's to say (config_find_pool()), and
 * spec.persistent follows it at each reload.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "sb-group.h"
#include "sb-size.h"
#include "sb-time.h"

static void broker_apply_limits(Broker *b) {
        const ConfigLimits *lim = &b->config->limits;

        quota_set_limits(&b->quota, lim->max_clients_per_uid, lim->max_pools_per_uid, lim->max_bytes_per_uid);
}

int broker_new(Broker **ret, sd_event *event, Config *config) {
        Broker *b = calloc(1, sizeof(*b));

        if (!b) {
                config_free(config);
                return -ENOMEM;
        }
        b->event = sd_event_ref(event);
        reaper_init(&b->reaper, event);
        b->config = config;
        b->uid = geteuid();
        b->gid = getegid();
        b->started_usec = sb_now_usec();
        sb_list_init(&b->pools);
        sb_list_init(&b->sessions);
        sb_list_init(&b->held_back);
        /* Root passes every check anyway, and the daemon's own uid owns the configured
         * pools: neither is held to a client's quota. */
        quota_init(&b->quota, 0, b->uid);
        broker_apply_limits(b);
        *ret = b;
        return 0;
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        Pool *p;

        while ((p = sb_list_first_entry(&b->pools, Pool, owner_link)))
                broker_drop_pool(b, p);
        reaper_clear(&b->reaper);
        sd_event_source_disable_unref(b->poll);
        sd_event_unref(b->event);
        config_free(b->config);
        free(b);
        return NULL;
}

Pool *broker_find_pool(Broker *b, const char *name) {
        SbList *it;

        sb_list_for_each(it, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                if (strcmp(p->spec.name, name) == 0)
                        return p;
        }
        return NULL;
}

/* " (with 2 dropped pools still attached: 32 KiB)", or "" for none. */
static const char *dropped_note(char *buf, size_t size, uint64_t pools, uint64_t bytes) {
        char b[32];

        if (pools == 0)
                return "";
        snprintf(buf, size, " (with %llu dropped pool%s still attached: %s)", (unsigned long long)pools,
                 pools == 1 ? "" : "s", sb_format_size(bytes, b, sizeof(b)));
        return buf;
}

/* Charge a pool of @size bytes to @uid into @charge, within max_bytes too: 0, SB_E_LIMIT or
 * -ENOMEM, with nothing charged on failure. Dropped pools whose segments are still
 * attached count in both (reaper.h), and a refusal says how much of it they are. */
static int broker_admit(Broker *b, uid_t uid, uint64_t size, QuotaCharge *charge, SbReason *why) {
        const ConfigLimits *lim = &b->config->limits;
        uint64_t used = b->pool_bytes + b->reaper.bytes, total, dropped, dropped_bytes;
        char x[32], y[32], z[32], buf[96];
        const char *note = "";
        QuotaKind over;
        int r;

        r = quota_charge(&b->quota, charge, uid,
                         (const uint64_t[_QUOTA_MAX]){ [QUOTA_POOLS] = 1, [QUOTA_BYTES] = size }, &over);
        if (r == SB_E_LIMIT) {
                reaper_count(&b->reaper, uid, &dropped, &dropped_bytes);
                note = dropped_note(buf, sizeof(buf), dropped, dropped_bytes);
        }
        if (r == SB_E_LIMIT && over == QUOTA_POOLS)
                return sb_fail(why, r, "uid %u has %llu pools%s: the quota %s (%llu) is reached", (unsigned)uid,
                               (unsigned long long)quota_used(&b->quota, uid, over), note, quota_limit_name(over),
                               (unsigned long long)b->quota.limit[over]);
        if (r == SB_E_LIMIT)
                return sb_fail(why, r, "a pool of %s would exceed the quota %s (%s) of uid %u%s",
                               sb_format_size(size, x, sizeof(x)), quota_limit_name(over),
                               sb_format_size(b->quota.limit[over], y, sizeof(y)), (unsigned)uid, note);
        if (r < 0)
                return sb_fail(why, r, "out of memory for the quota of uid %u", (unsigned)uid);
        if (__builtin_add_overflow(used, size, &total) || total > lim->max_bytes) {
                quota_uncharge(charge);
                return sb_fail(why, SB_E_LIMIT, "a pool of %s would exceed the limit max_bytes (%s, %s in use%s)",
                               sb_format_size(size, x, sizeof(x)), sb_format_size(lim->max_bytes, y, sizeof(y)),
                               sb_format_size(used, z, sizeof(z)),
                               dropped_note(buf, sizeof(buf), b->reaper.n, b->reaper.bytes));
        }
        return 0;
}

int broker_create_pool(Broker *b, const PoolSpec *spec, Pool **ret, SbReason *why) {
        const ConfigLimits *lim = &b->config->limits;
        _cleanup_(quota_uncharge) QuotaCharge charge = QUOTA_CHARGE_NULL;
        PoolLayout layout;
        uint32_t member_cap;
        uint64_t bytes;
        Pool *p;
        int r;

        if (broker_find_pool(b, spec->name))
                return sb_fail(why, SB_E_POOL_EXISTS, "pool \"%s\" exists", spec->name);
        if (!spec->configured && config_find_pool(b->config, spec->name))
                return sb_fail(why, SB_E_PERMISSION_DENIED, "the name \"%s\" is reserved: the configuration holds a "
                               "pool of that name, which only the daemon creates (at start, or on reload)", spec->name);
        if (b->n_pools >= lim->max_pools)
                return sb_fail(why, SB_E_LIMIT, "the limit max_pools (%llu) is reached",
                               (unsigned long long)lim->max_pools);
        if (b->group_access_refused && (spec->mode & 070))
                return sb_fail(why, SB_E_PERMISSION_DENIED,
                               "group access is refused: the daemon's own group (gid %u) is also its socket's group, "
                               "and the kernel grants a segment's group bits to its creator's group: every client "
                               "could attach the pool (give the daemon a group of its own and the socket the "
                               "clients' group, socket_group)", (unsigned)b->gid);
        r = pool_spec_layout(spec, &layout, why);
        if (r != 0)
                return r;
        /* A pool has at most one member per connection. Its control block is the daemon's
         * bookkeeping of its slots, members and small metas, as its heap was before: not
         * the owner's bytes (status shows it: block_bytes). */
        member_cap = lim->max_clients > UINT32_MAX ? UINT32_MAX : (uint32_t)lim->max_clients;
        bytes = layout.size;
        r = broker_admit(b, spec->uid, bytes, &charge, why);
        /* What stands in the way may be dropped pools whose last user has just detached:
         * look now rather than at the reaper's next round. */
        if (r == SB_E_LIMIT && reaper_reap(&b->reaper) > 0)
                r = broker_admit(b, spec->uid, bytes, &charge, why);
        if (r != 0)
                return r;
        r = pool_new(&p, spec, &layout, member_cap, true, why);
        if (r != 0)
                return r;
        reaper_forget(&b->reaper, p->seg.shmid);
        quota_charge_move(&p->charge, &charge);
        sb_list_append(&b->pools, &p->owner_link);
        b->n_pools++;
        b->pool_bytes += p->seg.size;
        *ret = p;
        return 0;
}

void broker_drop_pool(Broker *b, Pool *p) {
        b->n_pools--;
        b->pool_bytes -= p->seg.size;
        reaper_drop_segment(&b->reaper, &p->seg, p->spec.uid, &p->charge, &p->leftover);
        pool_free(p);
}

static int broker_on_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        Broker *b = userdata;
        SbList *it, *tmp;
        bool again = false;

        (void)s;
        (void)usec;
        sb_list_for_each_safe(it, tmp, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                if (!pool_needs_poll(p))
                        continue;
                pool_poll(p);
                if (pool_needs_poll(p))
                        again = true;
                else
                        broker_pool_gc(b, p);
        }
        if (again)
                broker_poll_soon(b);
        return 0;
}

void broker_poll_soon(Broker *b) {
        int enabled = SD_EVENT_OFF;

        if (!b->poll && sd_event_add_time_relative(b->event, &b->poll, CLOCK_MONOTONIC, 1000, 500, broker_on_poll,
                                                   b) < 0) {
                log_error_errno(-ENOMEM, "cannot schedule a look at the pools");
                return;
        }
        if (sd_event_source_get_enabled(b->poll, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        (void)sd_event_source_set_time_relative(b->poll, 1000);
        (void)sd_event_source_set_enabled(b->poll, SD_EVENT_ONESHOT);
}

void broker_pool_gc(Broker *b, Pool *p) {
        if (!p->spec.persistent && pool_is_unused(p)) {
                /* At the level of its creation: who reads that a pool came reads that it went. */
                log_event(LOG_INFO, LOG_EVENT_POOL_REMOVED, p->spec.name, NULL, "pool \"%s\" removed: no users left",
                          p->spec.name);
                broker_drop_pool(b, p);
        }
}

/* Configured pool @spec as it is made now: owned by the daemon's @uid, in its group looked
 * up by name, else in the daemon's @gid ((gid_t)-1 when unknown, for a comparison). False
 * when the system has no such group: the pool then gives its group no access. */
static bool configured_spec(PoolSpec *spec, uid_t uid, gid_t gid) {
        spec->uid = uid;
        spec->gid = gid;
        /* By name only: an administrator names groups, and a name that the system does not
         * know must not grant a number's worth of access. */
        if (spec->group[0] && sb_group_lookup(spec->group, false, &spec->gid) < 0) {
                /* Falling back to our own group could admit the wrong users: give the group
                 * no access instead. */
                spec->gid = gid;
                spec->mode &= ~070u;
                return false;
        }
        return true;
}

void broker_note_changed_pool(const PoolSpec *configured, const PoolSpec *live, uid_t uid, gid_t gid) {
        PoolSpec want = *configured;
        char diff[512];

        (void)configured_spec(&want, uid, gid);
        if (pool_spec_differences(&want, live, diff, sizeof(diff)))
                log_notice("pool \"%s\" keeps what it was made with until it is dropped: the configuration says %s; "
                           "drop it (shmbrokerctl drop %s) once its users are done, and reload to make it anew",
                           live->name, diff, live->name);
}

int broker_create_configured_pools(Broker *b, SbReason *why) {
        for (size_t i = 0; i < b->config->n_pools; i++) {
                PoolSpec spec = b->config->pools[i];
                Pool *p = NULL;
                int r;

                if (broker_find_pool(b, spec.name))
                        continue;
                if (!configured_spec(&spec, b->uid, b->gid))
                        log_warning("pool \"%s\": no group \"%s\" on this system: group access removed",
                                    spec.name, spec.group);
                r = broker_create_pool(b, &spec, &p, why);
                if (r != 0) {
                        sb_reason_prefix(why, "pool \"%s\"", spec.name);
                        return r > 0 ? -EINVAL : r;
                }
                log_event(LOG_INFO, LOG_EVENT_POOL_CREATED, spec.name, NULL,
                          "pool \"%s\": %u slots of %llu bytes, shmid %d", spec.name, spec.slots,
                         (unsigned long long)spec.slot_size, p->seg.shmid);
        }
        return 0;
}

/* A configured name that a pool a client created holds, @live, refuses the file. */
static int check_live_pool(const Config *c, size_t i, const PoolSpec *live, SbReason *why) {
        if (live && !live->configured)
                return config_fail(c, why, "pools", (long)i, "name",
                                   "pool \"%s\" is configured, but a pool of that name created by uid %u exists: drop "
                                   "it first", live->name, (unsigned)live->uid);
        return 0;
}

int broker_check_config(Broker *b, const Config *c, SbReason *why) {
        int r = config_check(c, why);

        if (r < 0 || !b)
                return r;
        for (size_t i = 0; i < c->n_pools; i++) {
                const Pool *p = broker_find_pool(b, c->pools[i].name);

                if (p && (r = check_live_pool(c, i, &p->spec, why)) < 0)
                        return r;
        }
        return 0;
}

static const PoolSpec *find_spec(const PoolSpec *specs, size_t n, const char *name) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(specs[i].name, name) == 0)
                        return &specs[i];
        return NULL;
}

int broker_check_config_against(const Config *c, const PoolSpec *live, size_t n_live, SbReason *why) {
        int r = config_check(c, why);

        for (size_t i = 0; r == 0 && i < c->n_pools; i++)
                r = check_live_pool(c, i, find_spec(live, n_live, c->pools[i].name), why);
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_pools; i++) {
                const PoolSpec *have = find_spec(live, n_live, c->pools[i].name);
                if (have)
                        broker_note_changed_pool(&c->pools[i], have, (uid_t)-1, (gid_t)-1);
        }
        return 0;
}

/* After a reload: the configured pools that the new configuration keeps stay (again),
 * the others go once unused. */
static void broker_update_configured(Broker *b) {
        SbList *it, *tmp;

        sb_list_for_each_safe(it, tmp, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                const PoolSpec *cp;

                if (!p->spec.configured)
                        continue;
                cp = config_find_pool(b->config, p->spec.name);
                if (!cp) {
                        if (p->spec.persistent)
                                log_info("pool \"%s\" is no longer configured: it goes once unused", p->spec.name);
                        p->spec.persistent = false;
                        broker_pool_gc(b, p);
                        continue;
                }
                if (!p->spec.persistent)
                        log_info("pool \"%s\" is configured again: it stays", p->spec.name);
                p->spec.persistent = true;
                broker_note_changed_pool(cp, &p->spec, b->uid, b->gid);
        }
}

int broker_reload(Broker *b, Config *config, SbReason *why) {
        _cleanup_(config_freep) Config *old = NULL;
        SbList *last = b->pools.prev;    /* the pools made for this configuration come after it */
        int r;

        r = broker_check_config(b, config, why);
        if (r < 0) {
                config_free(config);
                return r;
        }
        old = b->config;
        b->config = config;
        broker_apply_limits(b);
        r = broker_create_configured_pools(b, why);
        if (r < 0) {
                /* All or nothing: nobody can have opened these yet (no client ran meanwhile). */
                while (b->pools.prev != last)
                        broker_drop_pool(b, sb_list_entry(b->pools.prev, Pool, owner_link));
                b->config = steal_ptr(old);
                broker_apply_limits(b);
                config_free(config);
                return r;
        }
        broker_update_configured(b);
        return 0;
}
