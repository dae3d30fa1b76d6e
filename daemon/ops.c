/*
 * ops.c: the operations of the protocol.
 *
 * One static table maps each "op" to its handler and says whether it needs hello
 * first; ops_handle_line() alone parses, gates, dispatches and turns a handler's
 * outcome into the reply: 0 (the handler filled an ok reply), a positive SbError (an
 * error reply with req->why as its message), or -errno ("internal"). A request that
 * waits is answered later, by its wait (wait.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "broker.h"
#include "sb-json-text.h"
#include "log.h"
#include "ops.h"
#include "protocol.h"
#include "sb-error.h"
#include "sb-group.h"
#include "sb-json.h"
#include "sb-size.h"
#include "session.h"
#include "status.h"

typedef int (*OpHandler)(Session *s, Request *req, cJSON *reply);

/* --- request fields ---------------------------------------------------------------- */

static int request_pool_name(Request *req, const char **name) {
        int r = request_string(req, "pool", true, name);

        if (r != 0)
                return r;
        if (!sb_pool_name_valid(*name))
                return request_fail(req, SB_E_BAD_REQUEST, "\"pool\" must be a pool name: " SB_POOL_NAME_RULE);
        return 0;
}

/* The member for the request's "pool": open on this connection, else no_such_pool. The
 * name needs no validation here: only valid names can be open. */
static int request_member(Session *s, Request *req, Member **ret) {
        const char *name;
        int r = request_string(req, "pool", true, &name);

        if (r != 0)
                return r;
        *ret = session_find_member(s, name);
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

static int fail_role(Request *req, Session *s, Role needed) {
        return request_fail(req, SB_E_WRONG_ROLE, "\"%s\" needs role %s; this connection said hello as %s",
                            req->op, sb_role_name(needed), sb_role_name(s->role));
}

/* --- handlers ---------------------------------------------------------------------- */

static int op_hello(Session *s, Request *req, cJSON *reply) {
        const char *role, *name;
        bool fast = false;
        int r, role_id;

        if (s->hello)
                return request_fail(req, SB_E_BAD_REQUEST, "hello was already said on this connection");
        r = request_string(req, "role", true, &role);
        if (r == 0)
                r = request_string(req, "name", false, &name);
        if (r == 0)
                r = request_bool(req, "fast", &fast);
        if (r != 0)
                return r;
        role_id = sb_role_from_name(role);
        if (role_id < 0)
                return request_fail(req, SB_E_BAD_REQUEST, "\"role\" must be \"producer\", \"consumer\" or \"admin\"");
        if (name && strlen(name) > SESSION_NAME_MAX)
                return request_fail(req, SB_E_BAD_REQUEST, "\"name\" must be at most %d bytes", SESSION_NAME_MAX);
        /* Status shows it to every admin: no control character may come with it. */
        if (name && !sb_name_text_valid(name))
                return request_fail(req, SB_E_BAD_REQUEST, "\"name\" must be printable text: no control characters");
        if (name && !(s->name = strdup(name)))
                return -ENOMEM;
        s->role = (Role)role_id;
        s->fast = fast;
        s->hello = true;
        if (!cJSON_AddNumberToObject(reply, "version", PROTOCOL_VERSION) ||
            !cJSON_AddStringToObject(reply, "server", "shmbrokerd " SHMBROKER_VERSION) ||
            reply_add_uint(reply, "pid", (uint64_t)s->cred.pid) < 0 || reply_add_uint(reply, "uid", s->cred.uid) < 0 ||
            reply_add_uint(reply, "gid", s->cred.gid) < 0)
                return -ENOMEM;
        return 0;
}

static int resolve_group(Session *s, Request *req, const char *group, gid_t *gid) {
        int r = sb_group_lookup(group, true, gid);

        if (r == -ENOENT || r == -ERANGE)
                return request_fail(req, SB_E_BAD_REQUEST, "no such group \"%s\"", group);
        if (r < 0)
                return r;
        if (s->cred.uid != 0 && !session_in_group(s, *gid))
                return request_fail(req, SB_E_PERMISSION_DENIED, "you are not a member of group \"%s\"", group);
        return 0;
}

static int join_and_describe(Session *s, Request *req, Pool *p, cJSON *reply) {
        Member *m;
        int r = session_join(s, p, &m);

        if (r == SB_E_LIMIT)
                return request_fail(req, r, "pool \"%s\" is open on %u connections, the most it takes (max_clients "
                                    "when it was made)", p->spec.name, p->fp.g.member_cap);
        if (r != 0)
                return r;
        /* A client that can run its own operations gets the control block when it may
         * write the pool: then the kernel lets it attach the block too (its mode). */
        if (s->fast && p->block_seg.addr && s->role != ROLE_ADMIN && session_may_access(s, p, true)) {
                member_set_fast(m);
                if (p->n_proxy)
                        broker_poll_soon(s->broker);
        }
        if (m->fast && (r = reply_add_fast(reply, m)) < 0)
                return r;
        return reply_add_pool(reply, p, true);
}

static int op_create(Session *s, Request *req, cJSON *reply) {
        const char *bad_key;
        PoolSpec spec;
        Pool *p;
        int r;

        r = pool_spec_from_json(req->root, SPEC_FROM_CREATE, &spec, &bad_key, &req->why);
        if (r != 0)
                return r;
        if (session_find_member(s, spec.name) || broker_find_pool(s->broker, spec.name))
                return request_fail(req, SB_E_POOL_EXISTS, "pool \"%s\" exists", spec.name);
        if ((spec.mode & 0600) != 0600)
                return request_fail(req, SB_E_BAD_REQUEST, "\"mode\" must let the owner read and write (0600)");
        spec.uid = s->cred.uid;
        spec.gid = s->cred.gid;
        if (spec.group[0]) {
                r = resolve_group(s, req, spec.group, &spec.gid);
                if (r != 0)
                        return r;
        }
        r = broker_create_pool(s->broker, &spec, &p, &req->why);
        if (r == SB_E_LIMIT)
                log_event(LOG_WARNING, LOG_EVENT_LIMIT, spec.name, &s->cred, "pool \"%s\" refused to pid %d uid %u: %s",
                          spec.name, (int)s->cred.pid, (unsigned)s->cred.uid, req->why.text);
        if (r != 0)
                return r;
        log_event(LOG_INFO, LOG_EVENT_POOL_CREATED, spec.name, &s->cred,
                  "pool \"%s\" created by pid %d uid %u: %u slots of %llu bytes%s", spec.name, (int)s->cred.pid,
                  (unsigned)s->cred.uid, spec.slots, (unsigned long long)spec.slot_size,
                  spec.persistent ? ", persistent" : "");
        return join_and_describe(s, req, p, reply);
}

static int op_open(Session *s, Request *req, cJSON *reply) {
        const char *name;
        Member *m;
        Pool *p;
        int r = request_pool_name(req, &name);

        if (r != 0)
                return r;
        m = session_find_member(s, name);
        if (m)
                return reply_add_pool(reply, m->pool, true) < 0 || (m->fast && reply_add_fast(reply, m) < 0) ? -ENOMEM : 0;
        p = broker_find_pool(s->broker, name);
        if (!p)
                return request_fail(req, SB_E_NO_SUCH_POOL, "no pool \"%s\"", name);
        /* The daemon never hands out a shmid the kernel would refuse this client. */
        if (!session_may_access(s, p, s->role == ROLE_PRODUCER))
                return request_fail(req, SB_E_PERMISSION_DENIED, "pool \"%s\" (owner %u, group %u, mode %04o) does not "
                                    "allow uid %u to %s", name, (unsigned)p->spec.uid, (unsigned)p->spec.gid,
                                    p->spec.mode, (unsigned)s->cred.uid,
                                    s->role == ROLE_PRODUCER ? "read and write" : "read");
        return join_and_describe(s, req, p, reply);
}

/* One entry of a publish: the request itself, or an object of its "batches". Its meta,
 * unless absent or empty ({}, as an absent one reads), in *meta: its text is found
 * afterwards, and only then (publish_meta()). */
static int publish_entry(Request *req, const cJSON *obj, const Pool *p, PoolPublish *e, const cJSON **meta) {
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
        *meta = cJSON_GetObjectItemCaseSensitive(obj, "meta");
        if (*meta && !cJSON_IsObject(*meta))
                return request_fail(req, SB_E_BAD_REQUEST, "\"meta\" must be a JSON object");
        if (*meta && !(*meta)->child)
                *meta = NULL;
        return 0;
}

/* The text of @meta, a member of the entry @obj whose text starts at @text: the slot
 * keeps it byte for byte. cJSON's tree would not do: it has every number as a double
 * (9007199254740993 would come out as 9007199254740992). */
static int publish_meta(Request *req, const cJSON *obj, const char *text, const cJSON *meta, uint64_t max_meta,
                        PoolPublish *e) {
        char x[32];
        int r = request_text(req, obj, text, meta, &e->meta, &e->meta_len);

        if (r != 0)
                return r;
        if (e->meta_len > max_meta)
                return request_fail(req, SB_E_LIMIT, "\"meta\" has %zu bytes: over the limit max_meta (%s)", e->meta_len,
                                    sb_format_size(max_meta, x, sizeof(x)));
        return 0;
}

static int publish_failed(Session *s, Request *req, const Member *m, const PoolPublish *v, size_t bad, int r) {
        const PoolPublish *e = &v[bad];
        const char *name = m->pool->spec.name;

        switch (r) {
        case SB_E_WRONG_ROLE:
                return fail_role(req, s, ROLE_PRODUCER);
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

/* The entries of a publish: the one of the request itself, or an array from the arena
 * (or from the heap, once a huge request has used the arena up). Their metas point into
 * the request line. */
typedef struct PublishList {
        PoolPublish one, *v;
        size_t n;
} PublishList;

static void publish_list_done(PublishList *l) {
        if (l->v != &l->one)
                cJSON_free(l->v);
}

static int publish_list_parse(Request *req, const Pool *p, uint64_t max_meta, PublishList *l) {
        const cJSON *batches, *it, *meta;
        const char *at = NULL;
        size_t at_index = 0;
        bool walking = false;
        int r = request_array(req, "batches", POOL_MANY_MAX, &batches);

        l->v = &l->one;
        if (r != 0)
                return r;
        if (!batches) {
                r = publish_entry(req, req->root, p, &l->one, &meta);
                if (r == 0 && meta)
                        r = publish_meta(req, req->root, NULL, meta, max_meta, &l->one);
                l->n = r == 0;
                return r;
        }
        l->v = cJSON_malloc(sizeof(*l->v) * (size_t)cJSON_GetArraySize(batches));
        if (!l->v)
                return -ENOMEM;
        cJSON_ArrayForEach(it, batches) {
                r = cJSON_IsObject(it) ? publish_entry(req, it, p, &l->v[l->n], &meta) :
                        request_fail(req, SB_E_BAD_REQUEST, "it must be an object");
                if (r == 0 && meta) {
                        /* The entries' texts are walked once, forward, and only as far as
                         * an entry with a meta: batches without one cost no walk at all. */
                        if (!walking) {
                                at = sb_json_array_first(request_value_text(req, req->root, NULL, batches), req->text_end);
                                walking = true;
                        }
                        for (; at && at_index < l->n; at_index++)
                                at = sb_json_array_next(at, req->text_end);
                        r = publish_meta(req, it, at, meta, max_meta, &l->v[l->n]);
                }
                if (r != 0)
                        return r > 0 ? sb_fail_within(&req->why, r, "\"batches\" entry %zu", l->n) : r;
                l->n++;
        }
        return 0;
}

/* The message of a meta that its producer's uid, or everybody, may not hold more of. */
static int publish_over_quota(Session *s, Request *req, const PoolMetaPayer *payer, const PoolPublish *e) {
        const ConfigLimits *lim = &s->broker->config->limits;
        char x[32], y[32];

        if (payer->over == QUOTA_HOLD_PER_UID)
                return request_fail(req, SB_E_LIMIT, "a meta of %zu bytes would pass the quota max_meta_bytes_per_uid "
                                    "(%s) of uid %u, whose batches not yet released hold %s of meta", e->meta_len,
                                    sb_format_size(lim->max_meta_bytes_per_uid, x, sizeof(x)), (unsigned)s->cred.uid,
                                    sb_format_size(quota_held_by(payer->payer), y, sizeof(y)));
        return request_fail(req, SB_E_LIMIT, "a meta of %zu bytes would pass the limit max_meta_bytes (%s): the batches "
                            "not yet released hold %s of meta", e->meta_len,
                            sb_format_size(lim->max_meta_bytes, x, sizeof(x)),
                            sb_format_size(payer->quota->held, y, sizeof(y)));
}

/* publish: one slot from the request's own fields, or several from "batches". */
static int op_publish(Session *s, Request *req, cJSON *reply) {
        const ConfigLimits *lim = &s->broker->config->limits;
        _cleanup_(publish_list_done) PublishList l = { 0 };
        PoolMetaPayer payer = { .quota = &s->broker->quota, .payer = &s->charge,
                                .max_per_uid = lim->max_meta_bytes_per_uid, .max_total = lim->max_meta_bytes };
        size_t bad;
        Member *m;
        int r;

        (void)reply;
        r = request_member(s, req, &m);
        if (r == 0)
                r = publish_list_parse(req, m->pool, lim->max_meta, &l);
        if (r != 0)
                return r;
        for (size_t i = 0; i < l.n; i++)
                l.v[i].payer = &payer;
        r = pool_publish(m, l.v, l.n, &bad);
        if (r == 0)
                return 0;
        if (r != SB_E_LIMIT)
                return publish_failed(s, req, m, l.v, bad, r);
        r = publish_over_quota(s, req, &payer, &l.v[bad]);
        return l.n > 1 ? sb_fail_within(&req->why, r, "\"batches\" entry %zu", bad) : r;
}

/* The "seq" an acquire says it will publish: -1 when absent. Not with "max": a seq names
 * one batch. */
static int request_acquire_seq(Request *req, PoolWaitKind kind, uint32_t max, int64_t *ret) {
        uint64_t v;
        bool present = false;
        int r = kind == WAIT_ACQUIRE ? request_uint(req, "seq", SB_JSON_INT_MAX, &v, &present) : 0;

        *ret = present ? (int64_t)v : -1;
        if (r == 0 && present && max > 0)
                r = request_fail(req, SB_E_BAD_REQUEST, "\"seq\" names one batch: acquire it without \"max\"");
        return r;
}

/* acquire and consume: take a slot now, or wait for one; with "max", up to that many. */
static int op_take(Session *s, Request *req, cJSON *reply, PoolWaitKind kind) {
        SlotView v[POOL_MANY_MAX];
        uint64_t timeout;
        uint32_t max;
        int64_t seq;
        bool forever;
        Member *m;
        size_t n;
        int r = request_member(s, req, &m);

        if (r == 0)
                r = request_timeout(req, &timeout, &forever);
        if (r == 0)
                r = request_max(req, &max);
        if (r == 0)
                r = request_acquire_seq(req, kind, max, &seq);
        if (r != 0)
                return r;
        if (forever || timeout > 0) {
                r = wait_begin(&s->wait, m, kind, req->id, forever ? UINT64_MAX : timeout, max, seq, v, &n);
                if (r == POOL_WAITING) {
                        /* A member that runs its own operations may be the one to serve it. */
                        if (m->pool->n_fast)
                                broker_poll_soon(s->broker);
                        return 0;
                }
        } else
                r = pool_take(m, kind, max ? max : 1, seq, v, &n);
        if (r == POOL_BUSY)
                return r;
        if (r == SB_E_WRONG_ROLE)
                return fail_role(req, s, kind == WAIT_ACQUIRE ? ROLE_PRODUCER : ROLE_CONSUMER);
        if (r == -EBUSY && !forever && timeout == 0)
                return request_fail(req, SB_E_TIMEOUT, "the last free slot is kept for seq %llu, the lowest not yet "
                                    "published", (unsigned long long)pool_lowest_unpublished(m->pool));
        if (r == -EAGAIN || r == -EBUSY)
                return request_fail(req, SB_E_TIMEOUT, kind == WAIT_ACQUIRE ? "no slot is free" : "no batch is ready");
        if (r != 0)
                return r;
        return reply_add_taken(reply, kind, v, n, max > 0);
}

static int op_acquire(Session *s, Request *req, cJSON *reply) {
        return op_take(s, req, reply, WAIT_ACQUIRE);
}

static int op_consume(Session *s, Request *req, cJSON *reply) {
        return op_take(s, req, reply, WAIT_CONSUME);
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

static int op_release(Session *s, Request *req, cJSON *reply) {
        uint32_t v[POOL_MANY_MAX] = { 0 };
        bool requeue = false;
        size_t n = 0, bad = 0;
        Member *m;
        int r;

        (void)reply;
        r = request_member(s, req, &m);
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

static int op_end(Session *s, Request *req, cJSON *reply) {
        Member *m;
        int r = request_member(s, req, &m);

        (void)reply;
        if (r != 0)
                return r;
        r = pool_end(m);
        if (r == SB_E_WRONG_ROLE)
                return fail_role(req, s, ROLE_PRODUCER);
        return r;
}

static int op_drop(Session *s, Request *req, cJSON *reply) {
        Member *m;
        Pool *p;
        int r = request_member(s, req, &m);

        (void)reply;
        if (r != 0)
                return r;
        p = m->pool;
        if (s->cred.uid != 0 && s->cred.uid != p->spec.uid)
                return request_fail(req, SB_E_PERMISSION_DENIED, "only its owner (uid %u) or root may drop pool \"%s\"",
                                    (unsigned)p->spec.uid, p->spec.name);
        log_event(LOG_INFO, LOG_EVENT_POOL_DROPPED, p->spec.name, &s->cred, "pool \"%s\" dropped by pid %d uid %u",
                  p->spec.name, (int)s->cred.pid, (unsigned)s->cred.uid);
        broker_drop_pool(s->broker, p);
        return 0;
}

static int op_status(Session *s, Request *req, cJSON *reply) {
        uint64_t from, max;
        const char *name;
        bool present;
        int r = request_string(req, "pool", false, &name);

        if (r == 0)
                r = request_uint(req, "held_from", UINT32_MAX, &from, &present);
        if (r == 0 && !present)
                from = 0;
        if (r == 0)
                r = request_uint(req, "held_max", STATUS_HELD_MAX, &max, &present);
        if (r != 0)
                return r;
        return status_reply(s, name, (uint32_t)from, present ? (uint32_t)max : STATUS_HELD_DEFAULT, reply, &req->why);
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

static int ops_dispatch(Session *s, Request *req, cJSON *reply) {
        for (size_t i = 0; i < ELEMENTSOF(op_table); i++) {
                if (strcmp(op_table[i].name, req->op) != 0)
                        continue;
                if (op_table[i].needs_hello && !s->hello)
                        return request_fail(req, SB_E_NEED_HELLO, "say hello (with a role) before \"%s\"", req->op);
                return op_table[i].handler(s, req, reply);
        }
        return request_fail(req, SB_E_UNKNOWN_OP, "unknown op \"%.64s\"", req->op);
}

static int handle_line(Session *s, const char *line, size_t len, SbBytes *out) {
        Request req;
        cJSON *reply = NULL;
        int r;

        r = request_parse(&req, line, len);
        if (r == 0) {
                reply = reply_new(req.id);
                r = reply ? ops_dispatch(s, &req, reply) : -ENOMEM;
        }
        if (r == POOL_BUSY) {
                arena_json_delete(reply);
                request_done(&req);
                return OPS_RETRY;
        }
        if (r == 0 && session_is_waiting(s)) {
                /* Answered later, by the wait. */
                arena_json_delete(reply);
                request_done(&req);
                return 0;
        }
        if (r != 0) {
                arena_json_delete(reply);
                if (r < 0) {
                        log_error_errno(r, "client %llu: \"%s\" failed", (unsigned long long)s->serial,
                                        req.op ? req.op : "?");
                        sb_reason_set(&req.why, "the daemon failed: %s", strerror(-r));
                        r = SB_E_INTERNAL;
                }
                reply = reply_new_error(req.id, r, req.why.text);
        }
        r = reply ? reply_print(reply, out) : -ENOMEM;
        arena_json_delete(reply);
        request_done(&req);
        return r;
}

int ops_handle_line(Session *s, const char *line, size_t len, SbBytes *out) {
        int r;

        arena_begin();
        r = handle_line(s, line, len, out);
        arena_end();
        return r;
}
