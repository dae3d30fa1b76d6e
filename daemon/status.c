/*
 * status.c: rendering the status reply.
 */
#include <errno.h>
#include <string.h>

#include "protocol.h"
#include "sb-time.h"
#include "status.h"

static int status_pool(const Session *asker, const Pool *p, uint64_t now, cJSON *arr) {
        cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        if (reply_add_pool(o, p, session_may_access(asker, p, false)) < 0)
                return -ENOMEM;
        for (int st = 0; st < _SLOT_STATE_MAX; st++)
                if (reply_add_uint(o, slot_state_name((SlotState)st), p->count[st]) < 0)
                        return -ENOMEM;
        if (reply_add_uint(o, "users", p->n_members) < 0 || reply_add_uint(o, "producers", p->n_producers) < 0 ||
            reply_add_uint(o, "stream", p->stream) < 0 || reply_add_uint(o, "acquired", p->stats.acquired) < 0 ||
            reply_add_uint(o, "published", p->stats.published) < 0 ||
            reply_add_uint(o, "consumed", p->stats.consumed) < 0 ||
            reply_add_uint(o, "bytes_published", p->stats.bytes_published) < 0 ||
            reply_add_uint(o, "streams_ended", p->stats.streams_ended) < 0 ||
            reply_add_uint(o, "producer_wait_ms", p->stats.producer_wait_usec / 1000) < 0 ||
            reply_add_uint(o, "consumer_wait_ms", p->stats.consumer_wait_usec / 1000) < 0 ||
            reply_add_uint(o, "acquire_waiters", p->n_waiters[WAIT_ACQUIRE]) < 0 ||
            reply_add_uint(o, "consume_waiters", p->n_waiters[WAIT_CONSUME]) < 0 ||
            reply_add_uint(o, "age_ms", (now - p->created_usec) / 1000) < 0)
                return -ENOMEM;
        return 0;
}

static const char *waiting_name(const Session *s) {
        if (!session_is_waiting(s))
                return "";
        return s->wait.waiter.kind == WAIT_ACQUIRE ? "acquire" : "consume";
}

/* The held slots of @k from the @from-th on, at most @max, into "held"; "held_count" counts
 * them all. A member's list is walked only as far as the window reaches into it; what lies
 * outside is counted from its n_held. */
static int status_held(const Session *k, uint64_t now, uint32_t from, uint32_t max, cJSON *o) {
        cJSON *held = cJSON_AddArrayToObject(o, "held");
        uint64_t count = 0, end = (uint64_t)from + max;
        SbList *it, *jt;

        if (!held)
                return -ENOMEM;
        sb_list_for_each(it, &k->members) {
                const Member *m = sb_list_entry(it, Member, owner_link);
                uint64_t next = count + m->n_held;

                if (next <= from || count >= end) {
                        count = next;
                        continue;
                }
                sb_list_for_each(jt, &m->held) {
                        const Slot *s = sb_list_entry(jt, Slot, link);
                        cJSON *h;
                        if (count >= end)
                                break;
                        if (count++ < from)
                                continue;
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
            !cJSON_AddStringToObject(o, "waiting", waiting_name(k)) || !(pools = cJSON_AddArrayToObject(o, "pools")))
                return -ENOMEM;
        sb_list_for_each(it, &k->members) {
                const Member *m = sb_list_entry(it, Member, owner_link);
                if (!cJSON_AddItemToArray(pools, cJSON_CreateString(m->pool->spec.name)))
                        return -ENOMEM;
        }
        return status_held(k, now, held_from, held_max, o);
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
        if (reply_add_uint(reply, "buffered", b->buffered) < 0)
                return -ENOMEM;
        return reply_add_uint(reply, "uptime_ms", (now - b->started_usec) / 1000);
}
