/*
 * ops.c: the operations of the protocol.
 *
 * One static table maps each "op" to its handler and says whether it needs hello
 * first; ops_handle_line() alone parses, gates, dispatches and turns a handler's
 * outcome into the reply: 0 (the handler filled an ok reply), a positive SbError (an
 * error reply with req->error as its message), OPS_WAITING, or -errno ("internal").
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "ops.h"
#include "protocol.h"
#include "sb-error.h"
#include "sb-json.h"
#include "sb-time.h"

#define SHMBROKER_VERSION_STRING "0.1.0"

typedef int (*OpHandler)(Conn *c, Request *req, cJSON *reply);

/* --- helpers ----------------------------------------------------------------------- */

/* Integers go out as raw text: cJSON prints every number as a double with
 * sprintf("%1.15g") and reads it back with sscanf() to check it, which a profile of the
 * daemon showed as an eighth of all its instructions per handoff. */
static int add_uint(cJSON *o, const char *key, uint64_t v) {
        char buf[24];

        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
        return cJSON_AddRawToObject(o, key, buf) ? 0 : -ENOMEM;
}

static int add_pool_info(cJSON *o, const Pool *p, bool with_shmid) {
        char mode[8];

        snprintf(mode, sizeof(mode), "%04o", p->spec.mode);
        if (!cJSON_AddStringToObject(o, "pool", p->spec.name) ||
            (with_shmid && add_uint(o, "shmid", (uint64_t)p->seg.shmid) < 0) ||
            add_uint(o, "slot_size", p->spec.slot_size) < 0 || add_uint(o, "stride", p->stride) < 0 ||
            add_uint(o, "slots", p->spec.slots) < 0 || add_uint(o, "size", p->seg.size) < 0 ||
            !cJSON_AddBoolToObject(o, "ordered", p->spec.ordered) ||
            !cJSON_AddBoolToObject(o, "persistent", p->spec.persistent) ||
            !cJSON_AddBoolToObject(o, "huge_pages", p->spec.huge_pages) ||
            !cJSON_AddStringToObject(o, "on_consumer_death",
                                     p->spec.on_consumer_death == POLICY_FREE ? "free" : "requeue") ||
            add_uint(o, "uid", p->spec.uid) < 0 || add_uint(o, "gid", p->spec.gid) < 0 ||
            !cJSON_AddStringToObject(o, "mode", mode))
                return -ENOMEM;
        return 0;
}

static int add_slot(cJSON *o, const Pool *p, const Slot *s) {
        if (add_uint(o, "slot", s->index) < 0 || add_uint(o, "offset", slot_offset(p, s)) < 0)
                return -ENOMEM;
        return 0;
}

static int add_batch(cJSON *o, const Pool *p, const Slot *s) {
        if (add_slot(o, p, s) < 0 || add_uint(o, "nbytes", s->nbytes) < 0 || add_uint(o, "seq", s->seq) < 0 ||
            add_uint(o, "stream", s->stream) < 0)
                return -ENOMEM;
        /* The meta object is referenced, not copied: the reply is printed before the slot
         * can change. */
        if (s->meta ? !cJSON_AddItemReferenceToObject(o, "meta", s->meta) : !cJSON_AddObjectToObject(o, "meta"))
                return -ENOMEM;
        return 0;
}

static int request_pool_name(Request *req, const char **name) {
        int r = request_string(req, "pool", true, name);

        if (r != 0)
                return r;
        if (!pool_name_valid(*name))
                return request_fail(req, SB_E_BAD_REQUEST, "\"pool\" must be 1 to %d letters, digits, '.', '_' or '-'",
                                    POOL_NAME_MAX);
        return 0;
}

/* The member for the request's "pool": open on this connection, else no_such_pool. The
 * name needs no validation here: only valid names can be open. */
static int request_member(Conn *c, Request *req, Member **ret) {
        const char *name;
        int r = request_string(req, "pool", true, &name);

        if (r != 0)
                return r;
        *ret = conn_find_member(c, name);
        if (!*ret)
                return request_fail(req, SB_E_NO_SUCH_POOL, "pool \"%s\" is not open on this connection", name);
        return 0;
}

static int request_slot_index(Request *req, uint32_t *ret) {
        uint64_t v;
        int r = request_uint(req, "slot", POOL_SLOTS_MAX - 1, &v, NULL);

        *ret = (uint32_t)v;
        return r;
}

static int fail_role(Request *req, Conn *c, const char *needed) {
        return request_fail(req, SB_E_WRONG_ROLE, "\"%s\" needs role %s; this connection said hello as %s",
                            req->op, needed, pool_role_name(c->role));
}

/* --- waits ------------------------------------------------------------------------- */

/* The reply fields of an acquired slot, a consumed batch, or (NULL) end of stream. */
static int add_taken(cJSON *reply, PoolWaitKind kind, const Pool *p, const Slot *s) {
        if (!s)  /* only a consume ends with no slot: end of stream */
                return kind == WAIT_CONSUME && cJSON_AddTrueToObject(reply, "eof") ? 0 : -ENOMEM;
        return kind == WAIT_ACQUIRE ? add_slot(reply, p, s) : add_batch(reply, p, s);
}

static void wait_finish(Conn *c) {
        cJSON_Delete(c->wait_id);
        c->wait_id = NULL;
        c->waiting = false;
        if (c->timer)
                (void)sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
}

static void on_wait_wake(PoolWaiter *w, int result, Slot *slot) {
        Conn *c = sb_container_of(w, Conn, waiter);
        cJSON *reply;

        if (result != 0) {
                reply = reply_new_error(c->wait_id, result, "the pool was dropped");
        } else {
                reply = reply_new(c->wait_id);
                if (reply && add_taken(reply, w->kind, slot ? slot->holder->pool : NULL, slot) < 0)
                        reply = (cJSON_Delete(reply), NULL);
        }
        wait_finish(c);
        (void)conn_send(c, reply);
        conn_kick(c);
}

static int on_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Conn *c = userdata;
        const char *what = c->waiter.kind == WAIT_ACQUIRE ? "no slot became free" : "no batch became ready";

        (void)s;
        (void)usec;
        pool_unwait(&c->waiter);
        (void)conn_send_error(c, c->wait_id, SB_E_TIMEOUT, what);
        wait_finish(c);
        conn_kick(c);
        return 0;
}

static int wait_begin(Conn *c, Request *req, Member *m, PoolWaitKind kind, uint64_t timeout, bool forever) {
        int r;

        if (!forever && timeout == 0)
                return request_fail(req, SB_E_TIMEOUT, kind == WAIT_ACQUIRE ? "no slot is free" : "no batch is ready");
        if (!forever) {
                if (!c->timer) {
                        r = sd_event_add_time_relative(c->broker->event, &c->timer, CLOCK_MONOTONIC, timeout, 1000,
                                                       on_wait_timeout, c);
                        if (r < 0)
                                return r;
                } else {
                        r = sd_event_source_set_time_relative(c->timer, timeout);
                        if (r < 0)
                                return r;
                }
                (void)sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        }
        /* The id outlives the request: take it out of the parsed line. */
        c->wait_id = req->id ? cJSON_DetachItemViaPointer(req->root, req->id) : NULL;
        req->id = NULL;
        c->waiting = true;
        pool_wait(&c->waiter, m, kind, on_wait_wake);
        return OPS_WAITING;
}

void ops_cancel_wait(Conn *c) {
        if (!c->waiting)
                return;
        pool_unwait(&c->waiter);
        wait_finish(c);
}

/* --- handlers ---------------------------------------------------------------------- */

static int op_hello(Conn *c, Request *req, cJSON *reply) {
        const char *role, *name;
        int r, role_id;

        if (c->hello)
                return request_fail(req, SB_E_BAD_REQUEST, "hello was already said on this connection");
        r = request_string(req, "role", true, &role);
        if (r == 0)
                r = request_string(req, "name", false, &name);
        if (r != 0)
                return r;
        role_id = pool_role_from_name(role);
        if (role_id < 0)
                return request_fail(req, SB_E_BAD_REQUEST, "\"role\" must be \"producer\", \"consumer\" or \"admin\"");
        if (name && strlen(name) > CONN_NAME_MAX)
                return request_fail(req, SB_E_BAD_REQUEST, "\"name\" must be at most %d bytes", CONN_NAME_MAX);
        if (name && !(c->name = strdup(name)))
                return -ENOMEM;
        c->role = (PoolRole)role_id;
        c->hello = true;
        if (!cJSON_AddNumberToObject(reply, "version", PROTOCOL_VERSION) ||
            !cJSON_AddStringToObject(reply, "server", "shmbrokerd " SHMBROKER_VERSION_STRING) ||
            add_uint(reply, "pid", (uint64_t)c->cred.pid) < 0 || add_uint(reply, "uid", c->cred.uid) < 0 ||
            add_uint(reply, "gid", c->cred.gid) < 0)
                return -ENOMEM;
        return 0;
}

static int resolve_group(Conn *c, Request *req, const char *group, gid_t *gid) {
        char buf[4096];
        struct group gr, *res = NULL;
        char *end;
        unsigned long n = strtoul(group, &end, 10);

        if (*group && !*end)
                *gid = (gid_t)n;
        else if (getgrnam_r(group, &gr, buf, sizeof(buf), &res) == 0 && res)
                *gid = res->gr_gid;
        else
                return request_fail(req, SB_E_BAD_REQUEST, "no such group \"%s\"", group);
        if (c->cred.uid != 0 && !conn_in_group(c, *gid))
                return request_fail(req, SB_E_PERMISSION_DENIED, "you are not a member of group \"%s\"", group);
        return 0;
}

static int join_and_describe(Conn *c, Pool *p, cJSON *reply) {
        Member *m;
        int r = pool_join(p, c->role, c, &m);

        if (r < 0)
                return r;
        sb_list_append(&c->members, &m->owner_link);
        return add_pool_info(reply, p, true);
}

static int op_create(Conn *c, Request *req, cJSON *reply) {
        PoolSpec spec;
        const char *group, *bad_key;
        char why[256];
        Pool *p;
        int r;

        if (pool_spec_from_json(req->root, "pool", false, &spec, &group, why, sizeof(why), &bad_key) < 0)
                return request_fail(req, SB_E_BAD_REQUEST, "%s", why);
        if (conn_find_member(c, spec.name) || broker_find_pool(c->broker, spec.name))
                return request_fail(req, SB_E_POOL_EXISTS, "pool \"%s\" exists", spec.name);
        if ((spec.mode & 0600) != 0600)
                return request_fail(req, SB_E_BAD_REQUEST, "\"mode\" must let the owner read and write (0600)");
        spec.uid = c->cred.uid;
        spec.gid = c->cred.gid;
        if (group) {
                r = resolve_group(c, req, group, &spec.gid);
                if (r != 0)
                        return r;
        }
        r = broker_create_pool(c->broker, &spec, &p, why, sizeof(why));
        if (r != 0)
                return r > 0 ? request_fail(req, r, "%s", why) : r;
        log_info("pool \"%s\" created by pid %d uid %u: %u slots of %llu bytes%s", spec.name, (int)c->cred.pid,
                 (unsigned)c->cred.uid, spec.slots, (unsigned long long)spec.slot_size,
                 spec.persistent ? ", persistent" : "");
        return join_and_describe(c, p, reply);
}

static int op_open(Conn *c, Request *req, cJSON *reply) {
        const char *name;
        Member *m;
        Pool *p;
        int r = request_pool_name(req, &name);

        if (r != 0)
                return r;
        m = conn_find_member(c, name);
        if (m)
                return add_pool_info(reply, m->pool, true);
        p = broker_find_pool(c->broker, name);
        if (!p)
                return request_fail(req, SB_E_NO_SUCH_POOL, "no pool \"%s\"", name);
        /* The daemon never hands out a shmid the kernel would refuse this client. */
        if (!conn_may_access(c, p, c->role == ROLE_PRODUCER))
                return request_fail(req, SB_E_PERMISSION_DENIED, "pool \"%s\" (owner %u, group %u, mode %04o) does not "
                                    "allow uid %u to %s", name, (unsigned)p->spec.uid, (unsigned)p->spec.gid,
                                    p->spec.mode, (unsigned)c->cred.uid,
                                    c->role == ROLE_PRODUCER ? "read and write" : "read");
        return join_and_describe(c, p, reply);
}

static int op_publish(Conn *c, Request *req, cJSON *reply) {
        _cleanup_(cJSON_Deletep) cJSON *meta = NULL;
        uint64_t nbytes, seq = 0;
        bool has_seq;
        uint32_t index;
        Member *m;
        int r;

        (void)reply;
        r = request_member(c, req, &m);
        if (r == 0)
                r = request_slot_index(req, &index);
        if (r == 0)
                r = request_uint(req, "nbytes", m->pool->spec.slot_size, &nbytes, NULL);
        if (r == 0)
                r = request_uint(req, "seq", SB_JSON_INT_MAX, &seq, &has_seq);
        if (r != 0)
                return r;
        meta = cJSON_DetachItemFromObjectCaseSensitive(req->root, "meta");
        if (meta && !cJSON_IsObject(meta))
                return request_fail(req, SB_E_BAD_REQUEST, "\"meta\" must be a JSON object");

        r = pool_publish(m, index, nbytes, has_seq, seq, meta);
        switch (r) {
        case 0:
                meta = NULL;  /* the slot has it now */
                return 0;
        case SB_E_WRONG_ROLE:
                return fail_role(req, c, "producer");
        case SB_E_NOT_HOLDER:
                return request_fail(req, r, "slot %u of pool \"%s\" is not being written by this connection", index,
                                    m->pool->spec.name);
        case SB_E_BAD_REQUEST:
                if (!has_seq)
                        return request_fail(req, r, "pool \"%s\" is ordered: publish needs \"seq\"", m->pool->spec.name);
                return request_fail(req, r, "seq %llu was already published in this stream of pool \"%s\"",
                                    (unsigned long long)seq, m->pool->spec.name);
        default:
                return r;
        }
}

/* acquire and consume: take a slot now, or wait for one. */
static int op_take(Conn *c, Request *req, cJSON *reply, PoolWaitKind kind) {
        uint64_t timeout;
        bool forever;
        Member *m;
        Slot *s;
        int r = request_member(c, req, &m);

        if (r == 0)
                r = request_timeout(req, &timeout, &forever);
        if (r != 0)
                return r;
        r = kind == WAIT_ACQUIRE ? pool_acquire(m, &s) : pool_consume(m, &s);
        if (r == SB_E_WRONG_ROLE)
                return fail_role(req, c, kind == WAIT_ACQUIRE ? "producer" : "consumer");
        if (r == -EAGAIN)
                return wait_begin(c, req, m, kind, timeout, forever);
        return add_taken(reply, kind, m->pool, s);
}

static int op_acquire(Conn *c, Request *req, cJSON *reply) {
        return op_take(c, req, reply, WAIT_ACQUIRE);
}

static int op_consume(Conn *c, Request *req, cJSON *reply) {
        return op_take(c, req, reply, WAIT_CONSUME);
}

static int op_release(Conn *c, Request *req, cJSON *reply) {
        bool requeue = false;
        uint32_t index;
        Member *m;
        int r;

        (void)reply;
        r = request_member(c, req, &m);
        if (r == 0)
                r = request_slot_index(req, &index);
        if (r == 0)
                r = request_bool(req, "requeue", &requeue);
        if (r != 0)
                return r;
        r = pool_release(m, index, requeue);
        if (r == SB_E_NOT_HOLDER)
                return request_fail(req, r, "slot %u of pool \"%s\" is not held by this connection", index,
                                    m->pool->spec.name);
        if (r == SB_E_BAD_REQUEST)
                return request_fail(req, r, "requeue applies to a slot being read, and slot %u is being written", index);
        return r;
}

static int op_end(Conn *c, Request *req, cJSON *reply) {
        Member *m;
        int r = request_member(c, req, &m);

        (void)reply;
        if (r != 0)
                return r;
        r = pool_end(m);
        if (r == SB_E_WRONG_ROLE)
                return fail_role(req, c, "producer");
        return r;
}

static int op_drop(Conn *c, Request *req, cJSON *reply) {
        Member *m;
        Pool *p;
        int r = request_member(c, req, &m);

        (void)reply;
        if (r != 0)
                return r;
        p = m->pool;
        if (c->cred.uid != 0 && c->cred.uid != p->spec.uid)
                return request_fail(req, SB_E_PERMISSION_DENIED, "only its owner (uid %u) or root may drop pool \"%s\"",
                                    (unsigned)p->spec.uid, p->spec.name);
        log_info("pool \"%s\" dropped by pid %d uid %u", p->spec.name, (int)c->cred.pid, (unsigned)c->cred.uid);
        broker_drop_pool(c->broker, p);
        return 0;
}

static int status_pool(const Conn *c, const Pool *p, uint64_t now, cJSON *arr) {
        cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        if (add_pool_info(o, p, conn_may_access(c, p, false)) < 0)
                return -ENOMEM;
        for (int st = 0; st < _SLOT_STATE_MAX; st++)
                if (add_uint(o, slot_state_name((SlotState)st), p->count[st]) < 0)
                        return -ENOMEM;
        if (add_uint(o, "users", p->n_members) < 0 || add_uint(o, "producers", p->n_producers) < 0 ||
            add_uint(o, "stream", p->stream) < 0 || add_uint(o, "acquired", p->stats.acquired) < 0 ||
            add_uint(o, "published", p->stats.published) < 0 || add_uint(o, "consumed", p->stats.consumed) < 0 ||
            add_uint(o, "bytes_published", p->stats.bytes_published) < 0 ||
            add_uint(o, "streams_ended", p->stats.streams_ended) < 0 ||
            add_uint(o, "producer_wait_ms", p->stats.producer_wait_usec / 1000) < 0 ||
            add_uint(o, "consumer_wait_ms", p->stats.consumer_wait_usec / 1000) < 0 ||
            add_uint(o, "acquire_waiters", p->n_waiters[WAIT_ACQUIRE]) < 0 ||
            add_uint(o, "consume_waiters", p->n_waiters[WAIT_CONSUME]) < 0 ||
            add_uint(o, "age_ms", (now - p->created_usec) / 1000) < 0)
                return -ENOMEM;
        return 0;
}

static int status_client(const Conn *k, uint64_t now, cJSON *arr) {
        cJSON *o = cJSON_CreateObject(), *pools, *held;
        SbList *it, *jt;

        if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        if (add_uint(o, "pid", (uint64_t)k->cred.pid) < 0 || add_uint(o, "uid", k->cred.uid) < 0 ||
            add_uint(o, "gid", k->cred.gid) < 0 ||
            !cJSON_AddStringToObject(o, "role", k->hello ? pool_role_name(k->role) : "none") ||
            !(k->name ? cJSON_AddStringToObject(o, "name", k->name) : cJSON_AddNullToObject(o, "name")) ||
            add_uint(o, "connected_ms", (now - k->connected_usec) / 1000) < 0 ||
            !cJSON_AddStringToObject(o, "waiting", !k->waiting ? "" :
                                     k->waiter.kind == WAIT_ACQUIRE ? "acquire" : "consume") ||
            !(pools = cJSON_AddArrayToObject(o, "pools")) || !(held = cJSON_AddArrayToObject(o, "held")))
                return -ENOMEM;
        sb_list_for_each(it, &k->members) {
                const Member *m = sb_list_entry(it, Member, owner_link);
                if (!cJSON_AddItemToArray(pools, cJSON_CreateString(m->pool->spec.name)))
                        return -ENOMEM;
                sb_list_for_each(jt, &m->held) {
                        const Slot *s = sb_list_entry(jt, Slot, link);
                        cJSON *h = cJSON_CreateObject();
                        if (!h || !cJSON_AddItemToArray(held, h) ||
                            !cJSON_AddStringToObject(h, "pool", m->pool->spec.name) ||
                            add_uint(h, "slot", s->index) < 0 ||
                            !cJSON_AddStringToObject(h, "state", slot_state_name(s->state)) ||
                            add_uint(h, "age_ms", (now - s->since_usec) / 1000) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

static int op_status(Conn *c, Request *req, cJSON *reply) {
        uint64_t now = sb_now_usec();
        const char *name;
        cJSON *pools, *clients;
        SbList *it;
        int r;

        r = request_string(req, "pool", false, &name);
        if (r != 0)
                return r;
        if (name && !broker_find_pool(c->broker, name))
                return request_fail(req, SB_E_NO_SUCH_POOL, "no pool \"%s\"", name);
        if (!(pools = cJSON_AddArrayToObject(reply, "pools")) || !(clients = cJSON_AddArrayToObject(reply, "clients")))
                return -ENOMEM;
        sb_list_for_each(it, &c->broker->pools) {
                const Pool *p = sb_list_entry(it, Pool, owner_link);
                if ((!name || strcmp(name, p->spec.name) == 0) && status_pool(c, p, now, pools) < 0)
                        return -ENOMEM;
        }
        sb_list_for_each(it, &c->broker->conns) {
                const Conn *k = sb_list_entry(it, Conn, link);
                if ((!name || conn_find_member((Conn *)k, name)) && status_client(k, now, clients) < 0)
                        return -ENOMEM;
        }
        if (add_uint(reply, "uptime_ms", (now - c->broker->started_usec) / 1000) < 0)
                return -ENOMEM;
        return 0;
}

/* --- dispatch ---------------------------------------------------------------------- */

static const struct {
        const char *name;
        OpHandler handler;
        bool needs_hello;
} op_table[] = {
        { "hello",   op_hello,   false },
        { "create",  op_create,  true },
        { "open",    op_open,    true },
        { "acquire", op_acquire, true },
        { "publish", op_publish, true },
        { "consume", op_consume, true },
        { "release", op_release, true },
        { "end",     op_end,     true },
        { "drop",    op_drop,    true },
        { "status",  op_status,  true },
};

static int ops_dispatch(Conn *c, Request *req, cJSON *reply) {
        for (size_t i = 0; i < ELEMENTSOF(op_table); i++) {
                if (strcmp(op_table[i].name, req->op) != 0)
                        continue;
                if (op_table[i].needs_hello && !c->hello)
                        return request_fail(req, SB_E_NEED_HELLO, "say hello (with a role) before \"%s\"", req->op);
                return op_table[i].handler(c, req, reply);
        }
        return request_fail(req, SB_E_UNKNOWN_OP, "unknown op \"%.64s\"", req->op);
}

int ops_handle_line(Conn *c, const char *line, size_t len) {
        Request req;
        cJSON *reply = NULL;
        int r;

        r = request_parse(&req, line, len);
        if (r == 0) {
                reply = reply_new(req.id);
                r = reply ? ops_dispatch(c, &req, reply) : -ENOMEM;
        }
        if (r == OPS_WAITING) {
                cJSON_Delete(reply);
                request_done(&req);
                return OPS_WAITING;
        }
        if (r != 0) {
                cJSON_Delete(reply);
                if (r < 0) {
                        log_error_errno(r, "client %llu: \"%s\" failed", (unsigned long long)c->serial,
                                        req.op ? req.op : "?");
                        snprintf(req.error, sizeof(req.error), "the daemon failed: %s", strerror(-r));
                        r = SB_E_INTERNAL;
                }
                reply = reply_new_error(req.id, r, req.error);
        }
        r = conn_send(c, reply);
        request_done(&req);
        return r;
}
