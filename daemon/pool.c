/*
 * pool.c: a pool as the daemon holds it: its segment, its charge, its control block and
 * the daemon's side of each member and wait.
 *
 * The slot state machine itself (slots, streams, the ordered heap, first come first
 * served waiters) is common/fastpool.c, on the pool's control block. This file keeps what
 * is not per batch: the segment and the quota charge, the members' owners, the metas the
 * producers sent (with their quota holds), and the callbacks of the waits.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "reaper.h"
#include "sb-error.h"
#include "sb-size.h"
#include "sb-time.h"

static const char *const slot_state_names[_SLOT_STATE_MAX] = {
        [SLOT_FREE] = "free",
        [SLOT_WRITING] = "writing",
        [SLOT_READY] = "ready",
        [SLOT_READING] = "reading",
};

const char *slot_state_name(SlotState s) {
        return s < _SLOT_STATE_MAX ? slot_state_names[s] : "?";
}

/* fastpool's outcomes as the protocol's. */
static int pool_error(int r) {
        switch (r) {
        case -EPERM:
                return SB_E_WRONG_ROLE;
        case -ENOENT:
                return SB_E_NOT_HOLDER;
        case -EINVAL:
                return SB_E_BAD_REQUEST;
        default:
                return r;
        }
}

/* Every operation on the block runs at one instant. */
static Fp *pool_fp(Pool *p) {
        p->fp.now = sb_now_usec();
        return &p->fp;
}

#ifdef SB_CHECK_BLOCK
/* Test builds (the ASan daemon the integration suite runs against): every invariant of
 * the block after every operation, where that stays cheap. */
static int pool_verified(Pool *p, int r) {
        const char *why;

        if (p->fp.g.slots + p->fp.g.member_cap <= 65536 && fp_check(&p->fp, &why) != 0) {
                fprintf(stderr, "pool \"%s\": the control block is broken: %s\n", p->spec.name, why);
                abort();
        }
        return r;
}
#else
static inline int pool_verified(Pool *p, int r) {
        (void)p;
        return r;
}
#endif

void pool_slot_view(const Pool *p, uint32_t index, SlotView *ret) {
        const FpSlot *s = fp_slot(&p->fp, index);
        const SlotMeta *sm = &p->metas[index];

        *ret = (SlotView){ .index = index, .state = (SlotState)s->state, .offset = (uint64_t)index * p->stride,
                           .nbytes = s->nbytes, .seq = s->seq, .stream = s->stream, .since_usec = s->since_usec,
                           .meta = sm->meta, .meta_len = p->meta_len[index] };
}

static void slot_drop_meta(Pool *p, uint32_t index) {
        SlotMeta *sm = &p->metas[index];

        free(sm->meta);
        sm->meta = NULL;
        p->meta_len[index] = 0;
        quota_unhold(&sm->meta_hold);
}

/* A meta belongs to a batch: a slot that is free, or being written again (a release can
 * hand the slot it frees straight to a waiting producer), keeps none. */
static void slot_settle_meta(Pool *p, uint32_t index) {
        uint8_t st = fp_slot(&p->fp, index)->state;

        if ((st == FP_FREE || st == FP_WRITING) && p->metas[index].meta)
                slot_drop_meta(p, index);
}

/* A wait of member @id was served: hand its slots to its callback. */
static void on_served(Fp *f, uint32_t id, void *userdata) {
        Pool *p = userdata;
        Member *m = p->members[id - 1];
        PoolWaiter *w = m ? m->waiter : NULL;
        uint32_t idx[POOL_MANY_MAX];
        SlotView v[POOL_MANY_MAX];
        size_t n;

        if (!w)
                return;
        n = fp_served_slots(f, id, idx);
        for (size_t i = 0; i < n; i++)
                pool_slot_view(p, idx[i], &v[i]);
        m->waiter = NULL;
        w->member = NULL;
        w->fn(w, 0, v, n);
}

int pool_new(Pool **ret, const PoolSpec *spec, const PoolLayout *layout, uint32_t member_cap, SbReason *why) {
        FpGeom g;
        Pool *p;
        int r;

        if (member_cap > FP_MEMBERS_MAX)
                member_cap = FP_MEMBERS_MAX;
        r = fp_geom(&g, spec->slots, member_cap ? member_cap : 1, spec->slot_size, layout->stride,
                    (spec->ordered ? FP_ORDERED : 0) | (spec->on_consumer_death == POLICY_REQUEUE ? FP_REQUEUE_ON_DEATH : 0));
        if (r < 0)
                return sb_fail(why, SB_E_LIMIT, "pool \"%s\" has too many slots (%u)", spec->name, spec->slots);
        p = calloc(1, sizeof(*p));
        if (!p)
                return sb_fail(why, -ENOMEM, "out of memory for pool \"%s\"", spec->name);
        p->spec = *spec;
        p->stride = layout->stride;
        p->seg = SEGMENT_NULL;
        p->created_usec = sb_now_usec();
        sb_list_init(&p->members_list);
        sb_list_init(&p->owner_link);

        p->block = aligned_alloc(64, g.size);
        p->members = calloc(g.member_cap, sizeof(Member *));  // NOLINT(bugprone-sizeof-expression): an array of pointers
        p->metas = calloc(spec->slots, sizeof(*p->metas));
        p->meta_len = calloc(spec->slots, sizeof(*p->meta_len));
        p->leftover = leftover_new();
        if (!p->block || !p->members || !p->metas || !p->meta_len || !p->leftover) {
                pool_free(p);
                return sb_fail(why, -ENOMEM, "out of memory for the %u slots of pool \"%s\"", spec->slots, spec->name);
        }
        memset(p->block, 0, g.size);
        fp_format(&p->fp, p->block, &g, FP_DAEMON);
        p->fp.now = p->created_usec;
        p->fp.served = on_served;
        p->fp.userdata = p;
        p->fp.cost = p->meta_len;
        p->fp.cost_each = POOL_TAKE_BATCH_BYTES;
        p->fp.budget = POOL_TAKE_BYTES_MAX;
        for (uint32_t i = 0; i < spec->slots; i++)
                fp_slot(&p->fp, i)->since_usec = p->created_usec;

        r = segment_create(&p->seg, layout->size, spec->huge_pages, spec->uid, spec->gid, spec->mode, why);
        if (r < 0) {
                pool_free(p);
                return (r == -E2BIG || r == -ENOSPC || r == -ENOMEM || r == -EPERM) ? SB_E_LIMIT : r;
        }
        *ret = p;
        return 0;
}

static void member_free(Member *m) {
        m->pool->members[m->id - 1] = NULL;
        sb_list_unlink(&m->owner_link);
        sb_list_unlink(&m->pool_link);
        free(m);
}

Pool *pool_free(Pool *p) {
        SbList *it, *tmp;

        if (!p)
                return NULL;
        /* End every wait with no_such_pool (the pool is going). */
        sb_list_for_each_safe(it, tmp, &p->members_list) {
                Member *m = sb_list_entry(it, Member, pool_link);
                PoolWaiter *w = m->waiter;
                if (w) {
                        m->waiter = NULL;
                        w->member = NULL;
                        w->fn(w, SB_E_NO_SUCH_POOL, NULL, 0);
                }
        }
        sb_list_for_each_safe(it, tmp, &p->members_list)
                member_free(sb_list_entry(it, Member, pool_link));
        if (p->metas && p->meta_len)
                for (uint32_t i = 0; i < p->spec.slots; i++)
                        slot_drop_meta(p, i);
        segment_release(&p->seg);
        quota_uncharge(&p->charge);
        sb_list_unlink(&p->owner_link);
        free(p->leftover);
        free(p->metas);
        free(p->meta_len);
        free(p->members);
        free(p->block);
        free(p);
        return NULL;
}

/* --- operations ------------------------------------------------------------------- */

int pool_join(Pool *p, Role role, void *owner, Member **ret) {
        Member *m;
        uint32_t id = 0;
        int r;

        /* The lowest free id: ids are few, joins rare, and the block's member lines stay
         * packed at its start. */
        for (uint32_t i = 0; i < p->fp.g.member_cap && !id; i++)
                if (!p->members[i])
                        id = i + 1;
        if (!id)
                return SB_E_LIMIT;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        r = pool_verified(p, fp_join(pool_fp(p), id, role));
        if (r < 0) {
                free(m);
                return r;
        }
        m->pool = p;
        m->owner = owner;
        m->id = id;
        p->members[id - 1] = m;
        sb_list_init(&m->owner_link);
        sb_list_append(&p->members_list, &m->pool_link);
        *ret = m;
        return 0;
}

Role member_role(const Member *m) {
        return (Role)fp_member(&m->pool->fp, m->id)->role;
}

uint32_t member_n_held(const Member *m) {
        return fp_member(&m->pool->fp, m->id)->n_held;
}

uint32_t member_held_first(const Member *m) {
        return fp_member(&m->pool->fp, m->id)->held_head;
}

uint32_t member_held_next(const Member *m, uint32_t index) {
        const FpSlot *s = fp_slot(&m->pool->fp, index);

        return s ? s->next : FP_NONE;
}

void member_leave(Member *m) {
        Pool *p = m->pool;
        uint32_t n = member_n_held(m), *held = n ? malloc(n * sizeof(*held)) : NULL;
        uint32_t k = 0;

        if (m->waiter)
                pool_unwait(m->waiter);
        /* Which of its slots fastpool frees is its decision (on_consumer_death): look at
         * them afterwards, and drop the metas of those no longer holding a batch. */
        for (uint32_t i = member_held_first(m); held && i != FP_NONE && k < n; i = member_held_next(m, i))
                held[k++] = i;
        (void)pool_verified(p, fp_leave(pool_fp(p), m->id));
        if (held) {
                for (uint32_t i = 0; i < k; i++)
                        slot_settle_meta(p, held[i]);
        } else if (n) {
                for (uint32_t i = 0; i < p->spec.slots; i++)
                        slot_settle_meta(p, i);
        }
        free(held);
        member_free(m);
}

uint64_t pool_lowest_unpublished(Pool *p) {
        return fp_lowest_unpublished(&p->fp);
}

int pool_acquire_seq(Member *m, int64_t seq, SlotView *ret) {
        size_t n;

        return pool_take(m, WAIT_ACQUIRE, 1, seq, ret, &n);
}

int pool_take(Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, SlotView *v, size_t *n) {
        Pool *p = m->pool;
        uint32_t idx[POOL_MANY_MAX];
        int r = pool_verified(p, fp_take(pool_fp(p), m->id, (FpWaitKind)kind, max, seq, idx, n));

        if (r != 0)
                return pool_error(r);
        for (size_t i = 0; i < *n; i++)
                pool_slot_view(p, idx[i], &v[i]);
        return 0;
}

int pool_consume(Member *m, SlotView *ret, bool *eof) {
        size_t n;
        int r = pool_take(m, WAIT_CONSUME, 1, -1, ret, &n);

        *eof = r == 0 && n == 0;
        return r;
}

/* The slot's copy of its meta, held for the producer's uid until the slot is freed. A
 * free slot keeps no buffer: what the daemon keeps is what the uids are charged for. */
static int slot_set_meta(Pool *p, uint32_t index, const char *meta, size_t len, PoolMetaPayer *payer) {
        SlotMeta *sm = &p->metas[index];
        int r;

        slot_drop_meta(p, index);
        if (!meta)
                return 0;
        if (len > UINT32_MAX - 1)
                return -ENOMEM;
        if (payer) {
                r = quota_hold(payer->quota, &sm->meta_hold, payer->payer, len, payer->max_per_uid, payer->max_total,
                               &payer->over);
                if (r != 0)
                        return r;
        }
        sm->meta = malloc(len + 1);
        if (!sm->meta) {
                quota_unhold(&sm->meta_hold);
                return -ENOMEM;
        }
        memcpy(sm->meta, meta, len);
        sm->meta[len] = 0;
        p->meta_len[index] = (uint32_t)len;
        return 0;
}

int pool_publish(Member *m, const PoolPublish *v, size_t n, size_t *bad) {
        Pool *p = m->pool;
        FpPublish e[POOL_MANY_MAX];
        int r;

        *bad = 0;
        if (n > POOL_MANY_MAX)
                return SB_E_BAD_REQUEST;
        for (size_t i = 0; i < n; i++)
                e[i] = (FpPublish){ .slot = v[i].slot, .has_seq = v[i].has_seq, .nbytes = v[i].nbytes, .seq = v[i].seq };
        r = fp_publish_check(pool_fp(p), m->id, e, n, bad);
        if (r != 0)
                return pool_error(r);
        /* A slot being written keeps no meta yet: storing it now changes nothing visible,
         * and a later entry that fails takes back the metas stored before it. */
        for (size_t i = 0; i < n; i++) {
                r = slot_set_meta(p, v[i].slot, v[i].meta, v[i].meta_len, v[i].payer);
                if (r != 0) {
                        *bad = i;
                        while (i-- > 0)
                                slot_drop_meta(p, v[i].slot);
                        return r;
                }
        }
        return pool_error(pool_verified(p, fp_publish(&p->fp, m->id, e, n, bad)));
}

int pool_release(Member *m, const uint32_t *slots, size_t n, bool requeue, size_t *bad) {
        Pool *p = m->pool;
        int r;

        *bad = 0;
        if (n > POOL_MANY_MAX)
                return SB_E_BAD_REQUEST;
        r = pool_verified(p, fp_release(pool_fp(p), m->id, slots, n, requeue, bad));
        if (r == 0 && !requeue)
                for (size_t i = 0; i < n; i++)
                        slot_settle_meta(p, slots[i]);
        return pool_error(r);
}

int pool_end(Member *m) {
        return pool_error(pool_verified(m->pool, fp_end(pool_fp(m->pool), m->id)));
}

/* --- waiters ---------------------------------------------------------------------- */

int pool_wait(PoolWaiter *w, Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, PoolWakeFn fn) {
        int r = pool_verified(m->pool, fp_wait(pool_fp(m->pool), m->id, (FpWaitKind)kind, max, seq));

        if (r < 0)
                return r;
        w->member = m;
        w->kind = kind;
        w->fn = fn;
        m->waiter = w;
        return 0;
}

void pool_unwait(PoolWaiter *w) {
        Member *m = w->member;

        if (!m)
                return;
        (void)pool_verified(m->pool, fp_unwait(pool_fp(m->pool), m->id));
        m->waiter = NULL;
        w->member = NULL;
}

uint64_t pool_waited_usec(const Pool *p, PoolWaitKind kind, uint64_t now) {
        return fp_waited_usec(&p->fp, (FpWaitKind)kind, now);
}
