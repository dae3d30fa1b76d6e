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

#include "arena.h"
#include "broker.h"
#include "conn.h"
#include "log.h"
#include "ops.h"
#include "protocol.h"
#include "sb-error.h"
#include "sb-json.h"
#include "sb-time.h"



typedef int (*OpHandler)(Conn *c, Request *req, cJSON *reply);

/* --- helpers ----------------------------------------------------------------------- */

/* Integers go out as raw text: cJSON prints every number as a double with
 * sprintf("%1.15g") and reads it back with sscanf() to check it, which a profile of the
 * daemon showed as an eighth of all its instructions per handoff. */
static int add_uint(cJSON *o, const char *key, uint64_t v) {
        char buf[24], *p = buf + sizeof(buf) - 1;

        /* By hand, not snprintf(): that was the next tenth of the profile. */
        *p = 0;
        do
                *--p = (char)('0' + v % 10);
        while (v /= 10);
        return cJSON_AddRawToObject(o, key, p) ? 0 : -ENOMEM;
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
        /* The slot keeps the producer's meta as text: it goes out as it came in, with
         * no tree to build or print per consume. */
        return cJSON_AddRawToObject(o, "meta", s->meta_len ? s->meta : "{}") ? 0 : -ENOMEM;
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

/* The number of slots a request asks for with "max": 0 for the one-slot form. */
static int request_max(Request *req, uint32_t *ret) {
        uint64_t v;
        bool present;
        int r = request_uint(req, "max", POOL_MANY_MAX, &v, &present);

        if (r == 0 && present && v == 0)
                r = request_fail(req, SB_E_BAD_REQUEST, "\"max\" must be from 1 to %d", POOL_MANY_MAX);
        *ret = present ? (uint32_t)v : 0;
        return r;
}

static int fail_role(Request *req, Conn *c, const char *needed) {
        return request_fail(req, SB_E_WRONG_ROLE, "\"%s\" needs role %s; this connection said hello as %s",
                            req->op, needed, pool_role_name(c->role));
}

/* --- waits ------------------------------------------------------------------------- */

/* The reply fields of an acquired slot, a consumed batch, or (NULL) end of stream. */
static int add_taken(cJSON *reply, PoolWaitKind kind, const Slot *s) {
        if (!s)  /* only a consume ends with no slot: end of stream */
                return kind == WAIT_CONSUME && cJSON_AddTrueToObject(reply, "eof") ? 0 : -ENOMEM;
        /* A slot just taken is held, by the taker. */
        return kind == WAIT_ACQUIRE ? add_slot(reply, s->holder->pool, s) : add_batch(reply, s->holder->pool, s);
}

/* The many-slot form of a take ("max" given): @s first (NULL: end of stream), then as
 * many more as can be taken right now, up to @max. */
static int add_taken_many(cJSON *reply, PoolWaitKind kind, Member *m, Slot *s, uint32_t max) {
        cJSON *arr = cJSON_AddArrayToObject(reply, kind == WAIT_ACQUIRE ? "slots" : "batches");
        uint32_t n = 0;

        if (!arr)
                return -ENOMEM;
        if (!s)
                return cJSON_AddTrueToObject(reply, "eof") ? 0 : -ENOMEM;
        do {
                cJSON *o = cJSON_CreateObject();
                if (!o || !cJSON_AddItemToArray(arr, o)) {
                        cJSON_Delete(o);
                        return -ENOMEM;
                }
                if (add_taken(o, kind, s) < 0)
                        return -ENOMEM;
        } while (++n < max && (kind == WAIT_ACQUIRE ? pool_acquire(m, &s) : pool_consume_ready(m, &s)) == 0);
        return 0;
}

/* @m may be NULL when @s is (end of stream). */
static int add_taken_any(cJSON *reply, PoolWaitKind kind, Member *m, Slot *s, uint32_t max) {
        return max ? add_taken_many(reply, kind, m, s, max) : add_taken(reply, kind, s);
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
                if (reply && add_taken_any(reply, w->kind, slot ? slot->holder : NULL, slot, c->wait_max) < 0)
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

static int wait_begin(Conn *c, Request *req, Member *m, PoolWaitKind kind, uint64_t timeout, bool forever,
                      uint32_t max) {
        unsigned depth;
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
        /* The id outlives the request, and so its memory: copy it out of the arena. */
        depth = arena_suspend();
        c->wait_id = req->id ? cJSON_Duplicate(req->id, true) : NULL;
        arena_resume(depth);
        if (req->id && !c->wait_id)
                return -ENOMEM;
        c->wait_max = max;
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
            !cJSON_AddStringToObject(reply, "server", "shmbrokerd " SHMBROKER_VERSION) ||
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

/* One entry of a publish: the request itself, or an object of its "batches". */
static int publish_entry(Request *req, const cJSON *obj, const Pool *p, PoolPublish *e) {
        cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "meta");
        uint64_t slot;
        int r = request_uint_in(req, obj, "slot", POOL_SLOTS_MAX - 1, &slot, NULL);

        if (r == 0)
                r = request_uint_in(req, obj, "nbytes", p->spec.slot_size, &e->nbytes, NULL);
        if (r == 0)
                r = request_uint_in(req, obj, "seq", SB_JSON_INT_MAX, &e->seq, &e->has_seq);
        if (r != 0)
                return r;
        e->slot = (uint32_t)slot;
        e->meta = NULL;
        e->meta_len = 0;
        if (!meta)
                return 0;
        if (!cJSON_IsObject(meta))
                return request_fail(req, SB_E_BAD_REQUEST, "\"meta\" must be a JSON object");
        /* Printed once here, in the arena; the slot keeps a copy of the text. */
        e->meta = cJSON_PrintUnformatted(meta);
        if (!e->meta)
                return -ENOMEM;
        e->meta_len = strlen(e->meta);
        return 0;
}

static int publish_failed(Conn *c, Request *req, const Member *m, const PoolPublish *v, size_t bad, int r) {
        const PoolPublish *e = &v[bad];
        const char *name = m->pool->spec.name;

        switch (r) {
        case SB_E_WRONG_ROLE:
                return fail_role(req, c, "producer");
        case SB_E_NOT_HOLDER:
                for (size_t i = 0; i < bad; i++)
                        if (v[i].slot == e->slot)
                                return request_fail(req, SB_E_BAD_REQUEST, "slot %u is listed twice", e->slot);
                return request_fail(req, r, "slot %u of pool \"%s\" is not being written by this connection", e->slot,
                                    name);
        case SB_E_BAD_REQUEST:
                if (!e->has_seq)
                        return request_fail(req, r, "pool \"%s\" is ordered: publish needs \"seq\"", name);
                for (size_t i = 0; i < bad; i++)
                        if (v[i].seq == e->seq)
                                return request_fail(req, r, "seq %llu is listed twice", (unsigned long long)e->seq);
                return request_fail(req, r, "seq %llu was already published in this stream of pool \"%s\"",
                                    (unsigned long long)e->seq, name);
        default:
                return r;
        }
}

/* The entries of a publish and their printed metas. Everything here comes from the
 * arena as a rule, but not once a huge request has used it up: free it all the same. */
typedef struct PublishList {
        PoolPublish one, *v;
        size_t n;
} PublishList;

static void publish_list_done(PublishList *l) {
        for (size_t i = 0; i < l->n; i++)
                cJSON_free((void *)l->v[i].meta);
        if (l->v != &l->one)
                cJSON_free(l->v);
}

static int publish_list_parse(Request *req, const Pool *p, PublishList *l) {
        const cJSON *batches, *it;
        int r = request_array(req, "batches", POOL_MANY_MAX, &batches);

        l->v = &l->one;
        if (r != 0)
                return r;
        if (!batches) {
                r = publish_entry(req, req->root, p, &l->one);
                l->n = r == 0;
                return r;
        }
        l->v = cJSON_malloc(sizeof(*l->v) * (size_t)cJSON_GetArraySize(batches));
        if (!l->v)
                return -ENOMEM;
        cJSON_ArrayForEach(it, batches) {
                r = cJSON_IsObject(it) ? publish_entry(req, it, p, &l->v[l->n]) :
                        request_fail(req, SB_E_BAD_REQUEST, "it must be an object");
                if (r != 0)
                        return r > 0 ? request_fail_within(req, r, "\"batches\" entry %zu", l->n) : r;
                l->n++;
        }
        return 0;
}

/* publish: one slot from the request's own fields, or several from "batches". */
static int op_publish(Conn *c, Request *req, cJSON *reply) {
        _cleanup_(publish_list_done) PublishList l = { 0 };
        size_t bad;
        Member *m;
        int r;

        (void)reply;
        r = request_member(c, req, &m);
        if (r == 0)
                r = publish_list_parse(req, m->pool, &l);
        if (r != 0)
                return r;
        r = pool_publish(m, l.v, l.n, &bad);
        return r == 0 ? 0 : publish_failed(c, req, m, l.v, bad, r);
}

/* acquire and consume: take a slot now, or wait for one; with "max", up to that many. */
static int op_take(Conn *c, Request *req, cJSON *reply, PoolWaitKind kind) {
        uint64_t timeout;
        uint32_t max;
        bool forever;
        Member *m;
        Slot *s;
        int r = request_member(c, req, &m);

        if (r == 0)
                r = request_timeout(req, &timeout, &forever);
        if (r == 0)
                r = request_max(req, &max);
        if (r != 0)
                return r;
        r = kind == WAIT_ACQUIRE ? pool_acquire(m, &s) : pool_consume(m, &s);
        if (r == SB_E_WRONG_ROLE)
                return fail_role(req, c, kind == WAIT_ACQUIRE ? "producer" : "consumer");
        if (r == -EAGAIN)
                return wait_begin(c, req, m, kind, timeout, forever, max);
        return add_taken_any(reply, kind, m, s, max);
}

static int op_acquire(Conn *c, Request *req, cJSON *reply) {
        return op_take(c, req, reply, WAIT_ACQUIRE);
}

static int op_consume(Conn *c, Request *req, cJSON *reply) {
        return op_take(c, req, reply, WAIT_CONSUME);
}

/* The slots of a release: the request's "slot", or its "slots" array, into @v. */
static int release_slots(Request *req, uint32_t *v, size_t *n) {
        const cJSON *slots, *it;
        uint64_t x;
        int r = request_array(req, "slots", POOL_MANY_MAX, &slots);

        *n = 0;
        if (r != 0)
                return r;
        if (!slots) {
                r = request_slot_index(req, &v[0]);
                *n = r == 0;
                return r;
        }
        cJSON_ArrayForEach(it, slots) {
                if (sb_json_uint(it, POOL_SLOTS_MAX - 1, &x) < 0)
                        return request_fail(req, SB_E_BAD_REQUEST, "\"slots\" entry %zu must be a slot number", *n);
                v[(*n)++] = (uint32_t)x;
        }
        return 0;
}

static int op_release(Conn *c, Request *req, cJSON *reply) {
        uint32_t v[POOL_MANY_MAX] = { 0 };
        bool requeue = false;
        size_t n = 0, bad = 0;
        Member *m;
        int r;

        (void)reply;
        r = request_member(c, req, &m);
        if (r == 0)
                r = release_slots(req, v, &n);
        if (r == 0)
                r = request_bool(req, "requeue", &requeue);
        if (r != 0)
                return r;
        r = pool_release(m, v, n, requeue, &bad);
        if (r == SB_E_NOT_HOLDER) {
                for (size_t i = 0; i < bad; i++)
                        if (v[i] == v[bad])
                                return request_fail(req, SB_E_BAD_REQUEST, "slot %u is listed twice", v[bad]);
                return request_fail(req, r, "slot %u of pool \"%s\" is not held by this connection", v[bad],
                                    m->pool->spec.name);
        }
        if (r == SB_E_BAD_REQUEST)
                return request_fail(req, r, "requeue applies to a slot being read, and slot %u is being written", v[bad]);
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

static int handle_line(Conn *c, const char *line, size_t len) {
        Request req;
        cJSON *reply = NULL;
        int r;

        r = request_parse(&req, line, len);
        if (r == 0) {
                reply = reply_new(req.id);
                r = reply ? ops_dispatch(c, &req, reply) : -ENOMEM;
        }
        if (r == OPS_WAITING) {
                arena_json_delete(reply);
                request_done(&req);
                return OPS_WAITING;
        }
        if (r != 0) {
                arena_json_delete(reply);
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

int ops_handle_line(Conn *c, const char *line, size_t len) {
        int r;

        arena_begin();
        r = handle_line(c, line, len);
        arena_end();
        return r;
}
