/*
 * pool.c: a pool as the daemon holds it: its segment, its charge, its control block and
 * the daemon's side of each member and wait.
 *
 * The slot state machine itself (slots, streams, the ordered heap, first come first
 * served waiters) is common/fastpool.c, on the pool's control block. The block is a
 * segment of its own, which the members that may write the pool attach: their clients
 * (libshmbroker) run acquire, publish, consume, release and end on it themselves, under
 * its lock, and the daemon runs the same code for requests that come on a socket. This
 * file keeps what is not per batch: the segments and the quota charge, the members'
 * connections, the metas that came through the daemon (with their quota holds), the
 * callbacks of the daemon's waits, and the repair of a block whose lock a dead member held.
 *
 * The daemon never sleeps on the block. When a live member holds its lock (about a
 * microsecond, unless that client was descheduled or stopped right there), an operation
 * returns POOL_BUSY and its caller tries again shortly; a leave waits in the pool
 * (pool_poll()).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "reaper.h"
#include "sb-error.h"
#include "sb-json-text.h"
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

/* --- the lock ------------------------------------------------------------------------ */

static void pool_mark_broken(Pool *p, const char *why) {
        if (p->broken)
                return;
        p->broken = true;
        log_event(LOG_ERR, LOG_EVENT_LIMIT, p->spec.name, NULL,
                  "pool \"%s\": its control block is broken (%s): a member of the pool wrote into it; its "
                  "operations fail until it is dropped", p->spec.name, why);
}

/*
 * Take the block's lock. A lock held by no live member (a dead client's, whose step in
 * progress is undone, or garbage) is taken over; one held by a live member is waited for a
 * few microseconds, then POOL_BUSY. The daemon's own operations never leave it held.
 */
static int pool_lock(Pool *p) {
        uint32_t owner;
        int r;

        p->fp.now = sb_now_usec();
        if (p->broken)
                return -EUCLEAN;
        for (unsigned i = 0;; i++) {
                Member *m;

                if (fp_trylock(&p->fp, &owner) == 0)
                        return 0;
                m = owner >= 1 && owner <= p->fp.g.member_cap ? p->members[owner - 1] : NULL;
                if (!m || m->gone) {
                        r = fp_steal(&p->fp, owner);
                        if (r == -ENOLCK)
                                continue;
                        p->repaired = true;
                        if (r < 0) {
                                pool_mark_broken(p, "its undo log");
                                fp_unlock(&p->fp);
                                return -EUCLEAN;
                        }
                        return 0;
                }
                if (i >= 64)
                        return POOL_BUSY;
                if (i % 16 == 15)
                        sched_yield();
        }
}

static void pool_unlock(Pool *p) {
        const char *why;

        /* After a repair, the block must hold every invariant again. */
        if (p->repaired && fp_check(&p->fp, &why) != 0)
                pool_mark_broken(p, why);
        fp_unlock(&p->fp);
        for (uint32_t i = 0; i < p->n_woken; i++)
                fp_wake(&p->fp, p->woken[i]);
        p->n_woken = 0;
        if (p->repaired) {
                /* Whoever slept on the lock, or was served by the step that died. */
                fp_wake_all(&p->fp);
                p->repaired = false;
        }
}

#ifdef SB_CHECK_BLOCK
/* Test builds (the ASan daemon the integration suite runs against): every invariant of
 * the block after every operation of the daemon's, where that stays cheap. */
static int pool_verified(Pool *p, int r) {
        const char *why;

        if (r != -EUCLEAN && p->fp.g.slots + p->fp.g.member_cap <= 65536 && fp_check(&p->fp, &why) != 0) {
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

static void on_served(Fp *f, uint32_t id, void *userdata);

/* The daemon's waits that a member running its own operations served (their wait is over
 * in the block): answered with their slots. Under the lock. */
static void answer_served(Pool *p) {
        SbList *it, *tmp;

        if (p->n_proxy == 0)
                return;
        sb_list_for_each_safe(it, tmp, &p->members_list) {
                Member *m = sb_list_entry(it, Member, pool_link);
                if (m->waiter && fp_member(&p->fp, m->id)->wmax == 0)
                        on_served(&p->fp, m->id, p);
        }
}

/* An operation's end: the daemon's waits that were served meanwhile answered, a broken
 * block said once, and the lock given back. Every operation of the daemon's ends here, so
 * a wait served by a member that left at once is answered by the leave. */
static int pool_done(Pool *p, int r) {
        if (r == FP_ECORRUPT) {
                pool_mark_broken(p, "an index or a list out of shape");
                r = -EUCLEAN;
        }
        r = pool_verified(p, r);
        if (p->n_fast || p->n_proxy)
                answer_served(p);
        pool_unlock(p);
        return r;
}

/* --- slots and metas ------------------------------------------------------------------ */

static void slot_drop_meta(Pool *p, uint32_t index) {
        SlotMeta *sm = &p->metas[index];

        free(sm->meta);
        sm->meta = NULL;
        p->meta_len[index] = 0;
        quota_unhold(&sm->meta_hold);
}

/* A meta the daemon keeps belongs to a batch that came through the daemon: a slot that is
 * free, or being written again (a release can hand the slot it frees straight to a waiting
 * producer), keeps none. */
static void slot_settle_meta(Pool *p, uint32_t index) {
        uint8_t st = fp_slot(&p->fp, index)->state;

        if ((st == FP_FREE || st == FP_WRITING) && p->metas[index].meta)
                slot_drop_meta(p, index);
}

/*
 * The meta of a batch being read, for a reply: the daemon's copy when the batch came
 * through it (or the meta did not fit the block), else the text its producer wrote into
 * the slot's meta area, copied out of the block and checked as a publish's meta is: a
 * member of the pool could have written anything there. What fails the check reads as {}.
 */
static void slot_load_meta(Pool *p, uint32_t index) {
        const FpSlot *s = fp_slot(&p->fp, index);
        const uint8_t *area = fp_meta_area(&p->fp, index);
        SlotMeta *sm = &p->metas[index];
        uint32_t len;
        const char *end;
        char *text;

        if ((s->flags & FP_S_META_AT_DAEMON) || !area)
                return;     /* the daemon's own copy, or none */
        slot_drop_meta(p, index);
        memcpy(&len, area, sizeof(len));
        if (len == 0 || len > p->fp.g.meta_inline - sizeof(len))
                return;
        text = malloc(len + 1);
        if (!text)
                return;
        memcpy(text, area + sizeof(len), len);
        text[len] = 0;
        end = sb_json_strict_end(text, text + len);
        if (text[0] != '{' || end != text + len || memchr(text, 0, len) || sb_json_has_nul(text, text + len, "")) {
                free(text);
                return;
        }
        sm->meta = text;
        p->meta_len[index] = len;
}

void pool_slot_view(const Pool *p, uint32_t index, SlotView *ret) {
        const FpSlot *s = fp_slot(&p->fp, index);
        const SlotMeta *sm = &p->metas[index];

        *ret = (SlotView){ .index = index, .state = (SlotState)s->state, .offset = (uint64_t)index * p->stride,
                           .nbytes = s->nbytes, .seq = s->seq, .stream = s->stream, .since_usec = s->since_usec,
                           .meta = sm->meta, .meta_len = p->meta_len[index] };
}

/* The views of slots just taken; a consumer's batches with their metas. */
static void take_views(Pool *p, const uint32_t *idx, size_t n, SlotView *v) {
        for (size_t i = 0; i < n; i++) {
                if (fp_slot(&p->fp, idx[i])->state == FP_READING)
                        slot_load_meta(p, idx[i]);
                pool_slot_view(p, idx[i], &v[i]);
        }
}

/* A wait of member @id was served. The daemon's own (a request on a socket) is answered
 * now; a member that sleeps on its wake word is woken once the lock is given back. */
static void on_served(Fp *f, uint32_t id, void *userdata) {
        Pool *p = userdata;
        Member *m = p->members[id - 1];
        PoolWaiter *w = m ? m->waiter : NULL;
        uint32_t idx[POOL_MANY_MAX];
        SlotView v[POOL_MANY_MAX];
        size_t n;

        if (!w) {
                if (p->n_woken < p->fp.g.member_cap)
                        p->woken[p->n_woken++] = id;
                return;
        }
        n = fp_served_slots(f, id, idx);
        take_views(p, idx, n, v);
        m->waiter = NULL;
        w->member = NULL;
        p->n_proxy--;
        w->fn(w, 0, v, n);
}

/* --- pools ---------------------------------------------------------------------------- */

static uint32_t pool_meta_inline(uint32_t slots) {
        uint32_t per = POOL_META_AREA_MAX / slots;

        return (per < POOL_META_INLINE ? per : POOL_META_INLINE) & ~63u;
}

static int pool_geom(FpGeom *g, const PoolSpec *spec, const PoolLayout *layout, uint32_t member_cap, bool shared) {
        if (member_cap > FP_MEMBERS_MAX)
                member_cap = FP_MEMBERS_MAX;
        return fp_geom(g, spec->slots, member_cap ? member_cap : 1, spec->slot_size, layout->stride,
                       (spec->ordered ? FP_ORDERED : 0) |
                       (spec->on_consumer_death == POLICY_REQUEUE ? FP_REQUEUE_ON_DEATH : 0),
                       shared ? pool_meta_inline(spec->slots) : 0);
}

unsigned pool_block_mode(unsigned mode) {
        unsigned m = 0;

        for (unsigned shift = 0; shift <= 6; shift += 3)
                if (((mode >> shift) & 6) == 6)
                        m |= 6u << shift;
        return m;
}

int pool_new(Pool **ret, const PoolSpec *spec, const PoolLayout *layout, uint32_t member_cap, bool shared,
             SbReason *why) {
        FpGeom g;
        Pool *p;
        int r;

        if (pool_geom(&g, spec, layout, member_cap, shared) < 0)
                return sb_fail(why, SB_E_LIMIT, "pool \"%s\" has too many slots (%u)", spec->name, spec->slots);
        p = calloc(1, sizeof(*p));
        if (!p)
                return sb_fail(why, -ENOMEM, "out of memory for pool \"%s\"", spec->name);
        p->spec = *spec;
        p->stride = layout->stride;
        p->seg = SEGMENT_NULL;
        p->block_seg = SEGMENT_NULL;
        p->created_usec = sb_now_usec();
        sb_list_init(&p->members_list);
        sb_list_init(&p->owner_link);

        p->members = calloc(g.member_cap, sizeof(Member *));  // NOLINT(bugprone-sizeof-expression): an array of pointers
        p->woken = calloc(g.member_cap, sizeof(*p->woken));
        p->metas = calloc(spec->slots, sizeof(*p->metas));
        p->meta_len = calloc(spec->slots, sizeof(*p->meta_len));
        p->leftover = leftover_new();
        if (!p->members || !p->woken || !p->metas || !p->meta_len || !p->leftover) {
                pool_free(p);
                return sb_fail(why, -ENOMEM, "out of memory for the %u slots of pool \"%s\"", spec->slots, spec->name);
        }
        r = segment_create(&p->seg, layout->size, spec->huge_pages, spec->uid, spec->gid, spec->mode, why);
        if (r < 0) {
                pool_free(p);
                return (r == -E2BIG || r == -ENOSPC || r == -ENOMEM || r == -EPERM) ? SB_E_LIMIT : r;
        }
        if (shared) {
                /* The kernel zeroes a new segment: fp_format() starts from zeroes. */
                r = segment_create(&p->block_seg, g.size, false, spec->uid, spec->gid, pool_block_mode(spec->mode), why);
                if (r < 0) {
                        pool_free(p);
                        if (r == -E2BIG || r == -ENOSPC || r == -ENOMEM || r == -EPERM)
                                return sb_fail_within(why, SB_E_LIMIT, "the control block of pool \"%s\" (%zu bytes)",
                                                      spec->name, g.size);
                        return r;
                }
                p->block = p->block_seg.addr;
        } else {
                p->block = aligned_alloc(64, g.size);
                if (!p->block) {
                        pool_free(p);
                        return sb_fail(why, -ENOMEM, "out of memory for pool \"%s\"", spec->name);
                }
                memset(p->block, 0, g.size);
        }
        fp_format(&p->fp, p->block, &g, FP_DAEMON);
        p->fp.now = p->created_usec;
        p->fp.served = on_served;
        p->fp.userdata = p;
        p->fp.cost = p->meta_len;
        p->fp.cost_each = POOL_TAKE_BATCH_BYTES;
        p->fp.budget = POOL_TAKE_BYTES_MAX;
        for (uint32_t i = 0; i < spec->slots; i++)
                fp_slot(&p->fp, i)->since_usec = p->created_usec;
        *ret = p;
        return 0;
}

static void member_free(Member *m) {
        if (m->fast)
                m->pool->n_fast--;
        m->pool->members[m->id - 1] = NULL;
        sb_list_unlink(&m->owner_link);
        sb_list_unlink(&m->pool_link);
        free(m);
}

void pool_retire_block(Pool *p) {
        if (!p->block_seg.addr)
                return;
        /* Clients look at the mode under the lock and before they sleep: once it says gone,
         * each of them goes through the socket, which answers no_such_pool. */
        atomic_store_explicit(&fp_head(&p->fp)->control.mode, FP_MODE_GONE, memory_order_release);
        fp_wake_all(&p->fp);
}

Pool *pool_free(Pool *p) {
        SbList *it, *tmp;

        if (!p)
                return NULL;
        if (p->block)
                pool_retire_block(p);
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
        if (p->block_seg.addr)
                segment_release(&p->block_seg);
        else
                free(p->block);
        segment_release(&p->seg);
        quota_uncharge(&p->charge);
        sb_list_unlink(&p->owner_link);
        free(p->leftover);
        free(p->metas);
        free(p->meta_len);
        free(p->members);
        free(p->woken);
        free(p);
        return NULL;
}

/* --- members ---------------------------------------------------------------------------- */

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
        r = pool_lock(p);
        if (r == 0)
                r = pool_done(p, fp_join(&p->fp, id, role));
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

void member_set_fast(Member *m) {
        if (!m->fast) {
                m->fast = true;
                m->pool->n_fast++;
        }
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

int member_leave(Member *m) {
        Pool *p = m->pool;
        uint32_t n, *held = NULL, k = 0;
        int r;

        /* From now on a lock it holds is a dead one's: its client is gone. */
        m->gone = true;
        if (m->waiter)
                (void)pool_unwait(m->waiter, true);
        sb_list_unlink(&m->owner_link);
        m->owner = NULL;
        r = pool_lock(p);
        if (r == POOL_BUSY)
                return r;
        if (r == 0) {
                /* Which of its slots fastpool frees is its decision (on_consumer_death): look
                 * at them afterwards, and drop the metas of those no longer holding a batch. */
                n = member_n_held(m);
                held = n ? malloc(n * sizeof(*held)) : NULL;
                for (uint32_t i = member_held_first(m); held && i != FP_NONE && k < n; i = member_held_next(m, i))
                        held[k++] = i;
                (void)pool_done(p, fp_leave(&p->fp, m->id));
                if (held)
                        for (uint32_t i = 0; i < k; i++)
                                slot_settle_meta(p, held[i]);
                else if (n)
                        for (uint32_t i = 0; i < p->spec.slots; i++)
                                slot_settle_meta(p, i);
                free(held);
        }
        member_free(m);
        return 0;
}

bool pool_needs_poll(const Pool *p) {
        SbList *it;

        if (p->n_proxy > 0 && p->n_fast > 0)
                return true;
        sb_list_for_each(it, &p->members_list)
                if (sb_list_entry(it, Member, pool_link)->gone)
                        return true;
        return false;
}

void pool_poll(Pool *p) {
        SbList *it, *tmp;

        sb_list_for_each_safe(it, tmp, &p->members_list) {
                Member *m = sb_list_entry(it, Member, pool_link);
                if (m->gone)
                        (void)member_leave(m);
        }
        if (p->n_proxy == 0 || pool_lock(p) != 0)
                return;
        /* A member that runs its own operations serves the daemon's waits as it serves any
         * other: the wait is over (wmax 0) and its slots are the member's. */
        (void)pool_done(p, 0);
}

/* --- operations ------------------------------------------------------------------- */

uint64_t pool_lowest_unpublished(Pool *p) {
        return fp_lowest_unpublished(&p->fp);
}

int pool_acquire_seq(Member *m, int64_t seq, SlotView *ret) {
        size_t n;

        return pool_take(m, WAIT_ACQUIRE, 1, seq, ret, &n);
}

int pool_take(Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, SlotView *v, size_t *n) {
        return pool_take_or_wait(m, kind, max, seq, v, n, NULL, NULL);
}

int pool_take_or_wait(Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, SlotView *v, size_t *n,
                      PoolWaiter *w, PoolWakeFn fn) {
        Pool *p = m->pool;
        uint32_t idx[POOL_MANY_MAX];
        int r = pool_lock(p);

        *n = 0;
        if (r != 0)
                return r;
        r = fp_take(&p->fp, m->id, (FpWaitKind)kind, max, seq, idx, n);
        if (r == 0)
                take_views(p, idx, *n, v);
        if ((r == -EAGAIN || r == -EBUSY) && w) {
                r = fp_wait(&p->fp, m->id, (FpWaitKind)kind, max, seq, true, NULL);
                if (r == 0) {
                        *w = (PoolWaiter){ .member = m, .kind = kind, .fn = fn };
                        m->waiter = w;
                        p->n_proxy++;
                        r = POOL_WAITING;
                }
        }
        return pool_error(pool_done(p, r));
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

/* The batch's meta also goes into the slot's meta area when it fits: members that run
 * their own operations read it there. */
static bool meta_in_block(Pool *p, const PoolPublish *e) {
        uint8_t *area = fp_meta_area(&p->fp, e->slot);
        uint32_t len = (uint32_t)(e->meta ? e->meta_len : 0);

        if (!area || (uint64_t)e->meta_len + sizeof(len) > p->fp.g.meta_inline)
                return false;
        memcpy(area, &len, sizeof(len));
        if (len)
                memcpy(area + sizeof(len), e->meta, len);
        return true;
}

int pool_publish(Member *m, const PoolPublish *v, size_t n, size_t *bad) {
        Pool *p = m->pool;
        FpPublish e[POOL_MANY_MAX];
        int r;

        *bad = 0;
        if (n > POOL_MANY_MAX)
                return SB_E_BAD_REQUEST;
        r = pool_lock(p);
        if (r != 0)
                return r;
        for (size_t i = 0; i < n; i++)
                e[i] = (FpPublish){ .slot = v[i].slot, .has_seq = v[i].has_seq, .nbytes = v[i].nbytes, .seq = v[i].seq };
        r = fp_publish_check(&p->fp, m->id, e, n, bad);
        if (r != 0)
                return pool_error(pool_done(p, r));
        /* A slot being written keeps no meta yet: storing it now changes nothing visible,
         * and a later entry that fails takes back the metas stored before it. */
        for (size_t i = 0; i < n; i++) {
                r = slot_set_meta(p, v[i].slot, v[i].meta, v[i].meta_len, v[i].payer);
                if (r != 0) {
                        *bad = i;
                        while (i-- > 0)
                                slot_drop_meta(p, v[i].slot);
                        return pool_done(p, r);
                }
                e[i].meta_at_daemon = true;
                e[i].meta_outside = !meta_in_block(p, &v[i]);
        }
        return pool_error(pool_done(p, fp_publish_checked(&p->fp, m->id, e, n)));
}

int pool_release(Member *m, const uint32_t *slots, size_t n, bool requeue, size_t *bad) {
        Pool *p = m->pool;
        int r;

        *bad = 0;
        if (n > POOL_MANY_MAX)
                return SB_E_BAD_REQUEST;
        r = pool_lock(p);
        if (r != 0)
                return r;
        r = fp_release(&p->fp, m->id, slots, n, requeue, bad);
        if (r == 0 && !requeue)
                for (size_t i = 0; i < n; i++)
                        slot_settle_meta(p, slots[i]);
        return pool_error(pool_done(p, r));
}

int pool_end(Member *m) {
        int r = pool_lock(m->pool);

        if (r != 0)
                return r;
        return pool_error(pool_done(m->pool, fp_end(&m->pool->fp, m->id)));
}

/* --- waiters ---------------------------------------------------------------------- */

int pool_unwait(PoolWaiter *w, bool force) {
        Member *m = w->member;
        bool locked;
        int r;

        if (!m)
                return 0;
        r = pool_lock(m->pool);
        if (r == POOL_BUSY && !force)
                return r;
        if (r == 0 && !force && fp_member(&m->pool->fp, m->id)->wmax == 0) {
                /* A member that runs its own operations served it before the daemon looked
                 * (pool_poll()): the slots are the waiter's, and it is answered with them. */
                on_served(&m->pool->fp, m->id, m->pool);
                (void)pool_done(m->pool, 0);
                return POOL_WAITING;
        }
        locked = r == 0;
        if (locked)
                r = fp_unwait(&m->pool->fp, m->id);
        /* Without the lock (a leaving client), the block's record of the wait goes with the
         * member's leave. Forgotten before the lock is given back: pool_done() answers the
         * daemon's waits that are over in the block. */
        m->waiter = NULL;
        w->member = NULL;
        m->pool->n_proxy--;
        if (locked)
                (void)pool_done(m->pool, r);
        return 0;
}

uint64_t pool_waited_usec(const Pool *p, PoolWaitKind kind, uint64_t now) {
        return fp_waited_usec(&p->fp, (FpWaitKind)kind, now);
}
