/*
 * status.c: rendering the status reply: pools, clients, and the daemon's own figures (its
 * connections, the uids' quotas, the limits in force, its memory) that a monitoring
 * system scrapes through `shmbrokerctl status --format=openmetrics`.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "protocol.h"
#include "sb-time.h"
#include "status.h"

static int status_pool(const Session *asker, const Pool *p, uint64_t now, cJSON *arr) {
        uint64_t producer_wait = pool_waited_usec(p, WAIT_ACQUIRE, now);
        uint64_t consumer_wait = pool_waited_usec(p, WAIT_CONSUME, now);
        const FpPool *ps = pool_state(p);
        const FpStats *stats = pool_stats(p);
        cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        if (reply_add_pool(o, p, session_may_access(asker, p, false)) < 0)
                return -ENOMEM;
        for (int st = 0; st < _SLOT_STATE_MAX; st++)
                if (reply_add_uint(o, slot_state_name((SlotState)st), ps->count[st]) < 0)
                        return -ENOMEM;
        if (reply_add_uint(o, "users", ps->n_members) < 0 || reply_add_uint(o, "producers", ps->n_producers) < 0 ||
            reply_add_uint(o, "consumers", ps->n_consumers) < 0 ||
            reply_add_uint(o, "admins", ps->n_members - ps->n_producers - ps->n_consumers) < 0 ||
            reply_add_uint(o, "stream", ps->stream) < 0 || reply_add_uint(o, "acquired", stats->acquired) < 0 ||
            reply_add_uint(o, "published", stats->published) < 0 || reply_add_uint(o, "consumed", stats->consumed) < 0 ||
            reply_add_uint(o, "bytes_published", stats->bytes_published) < 0 ||
            reply_add_uint(o, "bytes_consumed", stats->bytes_consumed) < 0 ||
            reply_add_uint(o, "streams_ended", stats->streams_ended) < 0 ||
            reply_add_uint(o, "producer_wait_ms", producer_wait / 1000) < 0 ||
            reply_add_uint(o, "consumer_wait_ms", consumer_wait / 1000) < 0 ||
            reply_add_uint(o, "producer_wait_us", producer_wait) < 0 ||
            reply_add_uint(o, "consumer_wait_us", consumer_wait) < 0 ||
            reply_add_uint(o, "acquire_waiters", ps->n_waiters[WAIT_ACQUIRE]) < 0 ||
            reply_add_uint(o, "consume_waiters", ps->n_waiters[WAIT_CONSUME]) < 0 ||
            reply_add_uint(o, "age_ms", (now - p->created_usec) / 1000) < 0 ||
            reply_add_uint(o, "fast_members", p->n_fast) < 0 ||
            reply_add_uint(o, "block_bytes", p->block_seg.size) < 0 ||
            !cJSON_AddBoolToObject(o, "broken", p->broken))
                return -ENOMEM;
        return 0;
}

static const char *waiting_name(const Session *s) {
        SbList *it;

        if (session_is_waiting(s))
                return s->wait.waiter.kind == WAIT_ACQUIRE ? "acquire" : "consume";
        /* A client that runs its own operations waits in the block: its member says so. */
        sb_list_for_each(it, &s->members) {
                const Member *m = sb_list_entry(it, Member, owner_link);
                const FpMember *fm = fp_member(&m->pool->fp, m->id);
                if (m->fast && fm->wmax)
                        return fm->wkind == FP_WAIT_ACQUIRE ? "acquire" : "consume";
        }
        return "";
}

/* "fast" when the client runs its own operations on the control block of a pool it has
 * open, else "socket": every operation of it comes to the daemon. */
static const char *path_name(const Session *s) {
        SbList *it;

        sb_list_for_each(it, &s->members)
                if (sb_list_entry(it, Member, owner_link)->fast)
                        return "fast";
        return "socket";
}

/* The held slots of @k from the @from-th on, at most @max, into "held"; "held_count" counts
 * them all. A member's list is walked only as far as the window reaches into it; what lies
 * outside is counted from its n_held. */
static int status_held(const Session *k, uint64_t now, uint32_t from, uint32_t max, cJSON *o) {
        cJSON *held = cJSON_AddArrayToObject(o, "held");
        uint64_t count = 0, end = (uint64_t)from + max;
        SbList *it;

        if (!held)
                return -ENOMEM;
        sb_list_for_each(it, &k->members) {
                const Member *m = sb_list_entry(it, Member, owner_link);
                uint64_t next = count + member_n_held(m);

                if (next <= from || count >= end) {
                        count = next;
                        continue;
                }
                for (uint32_t i = member_held_first(m); i != FP_NONE; i = member_held_next(m, i)) {
                        SlotView sv, *s = &sv;
                        cJSON *h;
                        if (count >= end)
                                break;
                        if (count++ < from)
                                continue;
                        pool_slot_view(m->pool, i, &sv);
                        h = cJSON_CreateObject();
                        if (!h || !cJSON_AddItemToArray(held, h)) {
                                cJSON_Delete(h);
                                return -ENOMEM;
                        }
                        if (!cJSON_AddStringToObject(h, "pool", m->pool->spec.name) ||
                            reply_add_uint(h, "slot", s->index) < 0 ||
                            !cJSON_AddStringToObject(h, "state", slot_state_name(s->state)) ||
                            reply_add_uint(h, "age_ms", (now - s->since_usec) / 1000) < 0)
                                return -ENOMEM;
                }
                count = next;
        }
        return reply_add_uint(o, "held_count", count);
}

static int status_client(const Session *k, uint64_t now, uint32_t held_from, uint32_t held_max, cJSON *arr) {
        cJSON *o = cJSON_CreateObject(), *pools;
        SbList *it;

        if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        if (reply_add_uint(o, "pid", (uint64_t)k->cred.pid) < 0 || reply_add_uint(o, "uid", k->cred.uid) < 0 ||
            reply_add_uint(o, "gid", k->cred.gid) < 0 ||
            !cJSON_AddStringToObject(o, "role", k->hello ? sb_role_name(k->role) : "none") ||
            !(k->name ? cJSON_AddStringToObject(o, "name", k->name) : cJSON_AddNullToObject(o, "name")) ||
            reply_add_uint(o, "connected_ms", (now - k->connected_usec) / 1000) < 0 ||
            !cJSON_AddStringToObject(o, "waiting", waiting_name(k)) ||
            !cJSON_AddStringToObject(o, "path", path_name(k)) || !(pools = cJSON_AddArrayToObject(o, "pools")))
                return -ENOMEM;
        sb_list_for_each(it, &k->members) {
                const Member *m = sb_list_entry(it, Member, owner_link);
                if (!cJSON_AddItemToArray(pools, cJSON_CreateString(m->pool->spec.name)))
                        return -ENOMEM;
        }
        return status_held(k, now, held_from, held_max, o);
}

static int status_uid(const QuotaUsage *u, void *userdata) {
        cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddItemToArray(userdata, o)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        if (reply_add_uint(o, "uid", u->uid) < 0 || reply_add_uint(o, "clients", u->used[QUOTA_CLIENTS]) < 0 ||
            reply_add_uint(o, "pools", u->used[QUOTA_POOLS]) < 0 ||
            reply_add_uint(o, "bytes", u->used[QUOTA_BYTES]) < 0 || reply_add_uint(o, "meta_bytes", u->held) < 0)
                return -ENOMEM;
        return 0;
}

static int status_limits(const ConfigLimits *l, cJSON *reply) {
        cJSON *o = cJSON_AddObjectToObject(reply, "limits");
        const char *name;
        uint64_t v;

        if (!o)
                return -ENOMEM;
        for (size_t i = 0; (name = config_limit_at(l, i, &v)); i++)
                if (reply_add_uint(o, name, v) < 0)
                        return -ENOMEM;
        return 0;
}

/* The daemon's resident memory (the second figure of /proc/self/statm, in pages); 0 when
 * it cannot be read. getrusage() would give only the peak. */
static uint64_t resident_bytes(void) {
        unsigned long long size, resident = 0;
        FILE *f = fopen("/proc/self/statm", "re");

        if (!f)
                return 0;
        if (fscanf(f, "%llu %llu", &size, &resident) != 2)
                resident = 0;
        fclose(f);
        return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The daemon as a whole, whichever pool the status is about. */
static int status_daemon(const Broker *b, uint64_t now, cJSON *reply) {
        cJSON *uids = cJSON_AddArrayToObject(reply, "uids");
        uint64_t rss = resident_bytes();

        if (!uids || quota_each_user(&b->quota, status_uid, uids) < 0 || status_limits(&b->config->limits, reply) < 0)
                return -ENOMEM;
        if (reply_add_uint(reply, "connections", b->n_sessions) < 0 ||
            reply_add_uint(reply, "pool_count", b->n_pools) < 0 || reply_add_uint(reply, "pool_bytes", b->pool_bytes) < 0 ||
            reply_add_uint(reply, "dropped_pools", b->reaper.n) < 0 ||
            reply_add_uint(reply, "dropped_bytes", b->reaper.bytes) < 0 ||
            (rss && reply_add_uint(reply, "rss_bytes", rss) < 0) || reply_add_uint(reply, "buffered", b->buffered) < 0)
                return -ENOMEM;
        return reply_add_uint(reply, "uptime_ms", (now - b->started_usec) / 1000);
}

int status_reply(const Session *asker, const char *pool, uint32_t held_from, uint32_t held_max, cJSON *reply,
                 SbReason *why) {
        Broker *b = asker->broker;
        uint64_t now = sb_now_usec();
        cJSON *pools, *clients;
        SbList *it;

        if (pool && !broker_find_pool(b, pool))
                return sb_fail(why, SB_E_NO_SUCH_POOL, "no pool \"%s\"", pool);
        if (!(pools = cJSON_AddArrayToObject(reply, "pools")) || !(clients = cJSON_AddArrayToObject(reply, "clients")))
                return -ENOMEM;
        sb_list_for_each(it, &b->pools) {
                const Pool *p = sb_list_entry(it, Pool, owner_link);
                if ((!pool || strcmp(pool, p->spec.name) == 0) && status_pool(asker, p, now, pools) < 0)
                        return -ENOMEM;
        }
        sb_list_for_each(it, &b->sessions) {
                const Session *k = sb_list_entry(it, Session, link);
                if ((!pool || session_find_member(k, pool)) && status_client(k, now, held_from, held_max, clients) < 0)
                        return -ENOMEM;
        }
        return status_daemon(b, now, reply);
}
