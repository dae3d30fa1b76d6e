/*
 * pool.c: a pool's slots, their state machine, streams and waiters.
 *
 * Every slot is in exactly one place: the free list, a ready queue (or the ordered
 * heap), or its holder's held list; so every transition is an O(1) unlink and link,
 * and a dying client's slots are found by walking its own held list only.
 *
 * Streams: producers publish into stream p->stream. The stream ends once at least one
 * producer has sent end and every producer has sent it or left; then p->stream moves on.
 * A producer that has sent end and publishes again, before the others end, publishes
 * into the next stream (the "early" queue): a fast data-loading worker may start the
 * next epoch while a slow one finishes this one. A consumer reads stream m->stream:
 * it gets batches of that stream (or older ones), and once none is ready and the stream
 * has ended, one end-of-stream reply, and moves to the next stream.
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

static void slot_set_state(Pool *p, Slot *s, SlotState state) {
        p->count[s->state]--;
        p->count[state]++;
        s->state = state;
        s->since_usec = sb_now_usec();
}

int pool_new(Pool **ret, const PoolSpec *spec, const PoolLayout *layout, SbReason *why) {
        Pool *p;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return sb_fail(why, -ENOMEM, "out of memory for pool \"%s\"", spec->name);
        p->spec = *spec;
        p->stride = layout->stride;
        p->seg = SEGMENT_NULL;
        p->created_usec = sb_now_usec();
        sb_list_init(&p->free_slots);
        sb_list_init(&p->ready);
        sb_list_init(&p->early);
        sb_list_init(&p->members);
        sb_list_init(&p->acquire_waiters);
        sb_list_init(&p->consume_waiters);
        sb_list_init(&p->owner_link);

        p->slots = calloc(spec->slots, sizeof(*p->slots));
        p->leftover = leftover_new();
        if (!p->slots || !p->leftover || (spec->ordered && order_init(&p->order, p->slots, spec->slots) < 0)) {
                pool_free(p);
                return sb_fail(why, -ENOMEM, "out of memory for the %u slots of pool \"%s\"", spec->slots, spec->name);
        }
        for (uint32_t i = 0; i < spec->slots; i++) {
                Slot *s = &p->slots[i];
                s->index = i;
                s->state = SLOT_FREE;
                s->declared = -1;
                s->since_usec = p->created_usec;
                sb_list_init(&s->link);
                sb_list_append(&p->free_slots, &s->link);
        }
        p->count[SLOT_FREE] = spec->slots;

        r = segment_create(&p->seg, layout->size, spec->huge_pages, spec->uid, spec->gid, spec->mode, why);
        if (r < 0) {
                pool_free(p);
                return (r == -E2BIG || r == -ENOSPC || r == -ENOMEM || r == -EPERM) ? SB_E_LIMIT : r;
        }
        *ret = p;
        return 0;
}

static void member_free_held(Member *m);
static void slot_drop_meta(Slot *s);

/* End every wait in @queue with no_such_pool (the pool is going). */
static void fail_waiters(SbList *queue) {
        PoolWaiter *w;

        while ((w = sb_list_first_entry(queue, PoolWaiter, link))) {
                pool_unwait(w);
                w->fn(w, SB_E_NO_SUCH_POOL, NULL, 0);
        }
}

Pool *pool_free(Pool *p) {
        SbList *it, *tmp;

        if (!p)
                return NULL;
        fail_waiters(&p->acquire_waiters);
        fail_waiters(&p->consume_waiters);
        sb_list_for_each_safe(it, tmp, &p->members) {
                Member *m = sb_list_entry(it, Member, pool_link);
                member_free_held(m);
                sb_list_unlink(&m->owner_link);
                sb_list_unlink(&m->pool_link);
                free(m);
        }
        if (p->slots)
                for (uint32_t i = 0; i < p->spec.slots; i++)
                        slot_drop_meta(&p->slots[i]);
        if (p->spec.ordered)
                order_done(&p->order);
        segment_release(&p->seg);
        quota_uncharge(&p->charge);
        sb_list_unlink(&p->owner_link);
        free(p->leftover);
        free(p->slots);
        free(p);
        return NULL;
}

/* --- transitions ------------------------------------------------------------------ */

/* A slot leaves the writing state: it no longer counts as maybe writing any seq. */
static void slot_end_writing(Pool *p, Slot *s) {
        if (s->state == SLOT_WRITING && p->spec.ordered && s->declared < 0)
                p->n_undeclared--;
        s->declared = -1;
}

static void slot_to_free(Pool *p, Slot *s) {
        slot_end_writing(p, s);
        sb_list_unlink(&s->link);
        if (s->holder)
                s->holder->n_held--;
        s->holder = NULL;
        slot_drop_meta(s);
        slot_set_state(p, s, SLOT_FREE);
        /* Last freed, first reused: its pages are the likeliest to be warm. */
        sb_list_prepend(&p->free_slots, &s->link);
}

static void slot_to_holder(Pool *p, Slot *s, Member *m, SlotState state) {
        sb_list_unlink(&s->link);
        s->holder = m;
        m->n_held++;
        slot_set_state(p, s, state);
        sb_list_append(&m->held, &s->link);
}

/* A batch being read goes back, ahead of everything ready, for the next consumer. */
static void slot_requeue(Pool *p, Slot *s) {
        sb_list_unlink(&s->link);
        s->holder->n_held--;
        s->holder = NULL;
        slot_set_state(p, s, SLOT_READY);
        sb_list_prepend(&p->ready, &s->link);
}

static Slot *next_deliverable(Pool *p, uint64_t stream) {
        Slot *s = sb_list_first_entry(&p->ready, Slot, link);

        if (s && s->stream <= stream)
                return s;
        if (!p->spec.ordered)
                return NULL;
        s = order_peek(&p->order);
        if (!s || s->stream > stream)
                return NULL;
        /* An ended stream is drained in seq order over its gaps (a producer may have died
         * writing one seq); the current one waits for exactly the next seq. */
        if (s->stream < p->stream || s->seq == p->next_seq)
                return s;
        return NULL;
}

static void pool_dispatch(Pool *p);

static void pool_check_end(Pool *p) {
        SbList *it;

        if (!p->end_seen || p->n_ended < p->n_producers)
                return;
        p->stream++;
        p->next_seq = 0;
        p->end_seen = false;
        p->n_ended = 0;
        p->stats.streams_ended++;
        sb_list_for_each(it, &p->members)
                sb_list_entry(it, Member, pool_link)->ended = false;
        sb_list_splice_tail(&p->ready, &p->early);
}

/* --- operations ------------------------------------------------------------------- */

/*
 * The stream a new consumer reads first. When batches of a stream that already ended are
 * still ready, it is the oldest such stream: the consumer gets them, then that stream's
 * eof, so that nobody waits for an end that already happened (`produce`, then `consume`).
 * Otherwise it is the current stream: a consumer that comes between streams does not see
 * an empty one. Ready batches wait in stream order (an ended stream's before the next
 * one's), so the first of them is the oldest.
 */
static uint64_t pool_join_stream(Pool *p) {
        Slot *s = sb_list_first_entry(&p->ready, Slot, link);

        if (!s && p->spec.ordered)
                s = order_peek(&p->order);
        return s && s->stream < p->stream ? s->stream : p->stream;
}

int pool_join(Pool *p, Role role, void *owner, Member **ret) {
        Member *m = calloc(1, sizeof(*m));

        if (!m)
                return -ENOMEM;
        m->pool = p;
        m->owner = owner;
        m->role = role;
        m->stream = pool_join_stream(p);
        sb_list_init(&m->held);
        sb_list_init(&m->owner_link);
        sb_list_append(&p->members, &m->pool_link);
        p->n_members++;
        if (role == ROLE_PRODUCER)
                p->n_producers++;
        else if (role == ROLE_CONSUMER)
                p->n_consumers++;
        *ret = m;
        return 0;
}

static void member_free_held(Member *m) {
        while (!sb_list_is_empty(&m->held)) {
                Slot *s = sb_list_first_entry(&m->held, Slot, link);
                slot_to_free(m->pool, s);
        }
}

void member_leave(Member *m) {
        Pool *p = m->pool;

        if (m->waiter)
                pool_unwait(m->waiter);
        while (!sb_list_is_empty(&m->held)) {
                Slot *s = sb_list_first_entry(&m->held, Slot, link);
                if (s->state == SLOT_READING && p->spec.on_consumer_death == POLICY_REQUEUE)
                        slot_requeue(p, s);
                else
                        slot_to_free(p, s);
        }
        if (m->role == ROLE_PRODUCER) {
                p->n_producers--;
                if (m->ended)
                        p->n_ended--;
        } else if (m->role == ROLE_CONSUMER)
                p->n_consumers--;
        sb_list_unlink(&m->pool_link);
        sb_list_unlink(&m->owner_link);
        p->n_members--;
        free(m);
        pool_check_end(p);
        pool_dispatch(p);
}

uint64_t pool_lowest_unpublished(const Pool *p) {
        uint64_t seq = p->next_seq;

        /* Bounded by the ready batches: each seq found is one of them. */
        while (order_contains(&p->order, p->stream, seq))
                seq++;
        return seq;
}

/* Whether a slot is being written, or may be, for @seq of the current stream. */
static bool someone_writes(const Pool *p, uint64_t seq) {
        if (p->n_undeclared > 0)
                return true;
        /* Only when the last free slot of an ordered pool is asked for: O(slots) then. */
        for (uint32_t i = 0; i < p->spec.slots; i++) {
                const Slot *s = &p->slots[i];
                if (s->state == SLOT_WRITING && s->declared == (int64_t)seq && !s->holder->ended)
                        return true;
        }
        return false;
}

/* Whether @m's acquire for @seq must leave the last free slot to the lowest missing seq. */
static bool acquire_held_back(const Member *m, int64_t seq) {
        const Pool *p = m->pool;
        uint64_t low;

        if (!p->spec.ordered || seq < 0 || p->count[SLOT_FREE] != 1)
                return false;
        low = pool_lowest_unpublished(p);
        if (!m->ended && (uint64_t)seq == low)
                return false;
        return !someone_writes(p, low);
}

int pool_acquire_seq(Member *m, int64_t seq, Slot **ret) {
        Pool *p = m->pool;
        Slot *s;

        if (m->role != ROLE_PRODUCER)
                return SB_E_WRONG_ROLE;
        s = sb_list_first_entry(&p->free_slots, Slot, link);
        if (!s)
                return -EAGAIN;
        if (acquire_held_back(m, seq))
                return -EBUSY;
        slot_to_holder(p, s, m, SLOT_WRITING);
        if (p->spec.ordered) {
                s->declared = seq;
                if (seq < 0)
                        p->n_undeclared++;
        }
        p->stats.acquired++;
        *ret = s;
        return 0;
}

static Slot *member_slot(Member *m, uint32_t index) {
        Pool *p = m->pool;

        if (index >= p->spec.slots || p->slots[index].holder != m)
                return NULL;
        return &p->slots[index];
}

/* The slot's copy of its meta, held for the producer's uid until the slot is freed. A
 * free slot keeps no buffer: what the daemon keeps is what the uids are charged for. */
static int slot_set_meta(Slot *s, const char *meta, size_t len, PoolMetaPayer *payer) {
        int r;

        if (!meta)
                return 0;
        if (len > UINT32_MAX - 1)
                return -ENOMEM;
        if (payer) {
                r = quota_hold(payer->quota, &s->meta_hold, payer->payer, len, payer->max_per_uid, payer->max_total,
                               &payer->over);
                if (r != 0)
                        return r;
        }
        s->meta = malloc(len + 1);
        if (!s->meta) {
                quota_unhold(&s->meta_hold);
                return -ENOMEM;
        }
        memcpy(s->meta, meta, len);
        s->meta[len] = 0;
        s->meta_len = (uint32_t)len;
        return 0;
}

static void slot_drop_meta(Slot *s) {
        free(s->meta);
        s->meta = NULL;
        s->meta_len = 0;
        quota_unhold(&s->meta_hold);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

        return x < y ? -1 : x > y;
}

/* The stream @m publishes into: the next one once it has sent end. */
static uint64_t publish_stream(const Member *m) {
        return m->ended ? m->pool->stream + 1 : m->pool->stream;
}

static int publish_check(Member *m, const PoolPublish *e) {
        Pool *p = m->pool;
        uint64_t stream = publish_stream(m);
        Slot *s = member_slot(m, e->slot);

        if (!s || s->state != SLOT_WRITING || s->mark == p->mark_gen)
                return SB_E_NOT_HOLDER;
        s->mark = p->mark_gen;
        if (e->nbytes > p->spec.slot_size)
                return SB_E_BAD_REQUEST;
        if (p->spec.ordered) {
                if (!e->has_seq)
                        return SB_E_BAD_REQUEST;
                if ((stream == p->stream && e->seq < p->next_seq) || order_contains(&p->order, stream, e->seq))
                        return SB_E_BAD_REQUEST;
        }
        return 0;
}

/* A seq listed twice in one request: the first entry with a seq seen before it. */
static int publish_check_seqs(const PoolPublish *v, size_t n, size_t *bad) {
        uint64_t seqs[POOL_MANY_MAX];

        if (n < 2)
                return 0;
        for (size_t i = 0; i < n; i++)
                seqs[i] = v[i].seq;
        qsort(seqs, n, sizeof(seqs[0]), cmp_u64);
        for (size_t i = 1; i < n; i++) {
                if (seqs[i] != seqs[i - 1])
                        continue;
                for (size_t j = 0, seen = 0; j < n; j++)
                        if (v[j].seq == seqs[i] && seen++) {
                                *bad = j;
                                return SB_E_BAD_REQUEST;
                        }
        }
        return 0;
}

static void publish_apply(Member *m, const PoolPublish *e) {
        Pool *p = m->pool;
        Slot *s = &p->slots[e->slot];

        slot_end_writing(p, s);
        sb_list_unlink(&s->link);
        m->n_held--;
        s->holder = NULL;
        s->nbytes = e->nbytes;
        s->stream = publish_stream(m);
        s->seq = p->spec.ordered || e->has_seq ? e->seq : p->stats.published;
        slot_set_state(p, s, SLOT_READY);
        if (p->spec.ordered)
                order_push(&p->order, s);
        else
                sb_list_append(s->stream == p->stream ? &p->ready : &p->early, &s->link);
        p->stats.published++;
        p->stats.bytes_published += e->nbytes;
}

int pool_publish(Member *m, const PoolPublish *v, size_t n, size_t *bad) {
        Pool *p = m->pool;
        int r;

        *bad = 0;
        if (m->role != ROLE_PRODUCER)
                return SB_E_WRONG_ROLE;
        if (n > POOL_MANY_MAX)
                return SB_E_BAD_REQUEST;
        p->mark_gen++;
        for (size_t i = 0; i < n; i++) {
                r = publish_check(m, &v[i]);
                if (r != 0) {
                        *bad = i;
                        return r;
                }
        }
        if (p->spec.ordered && (r = publish_check_seqs(v, n, bad)) != 0)
                return r;
        /* A slot being written keeps no meta yet: storing it now changes nothing visible,
         * and a later entry that fails takes back the metas stored before it. */
        for (size_t i = 0; i < n; i++) {
                r = slot_set_meta(&p->slots[v[i].slot], v[i].meta, v[i].meta_len, v[i].payer);
                if (r != 0) {
                        *bad = i;
                        while (i-- > 0)
                                slot_drop_meta(&p->slots[v[i].slot]);
                        return r;
                }
        }
        for (size_t i = 0; i < n; i++)
                publish_apply(m, &v[i]);
        pool_dispatch(p);
        return 0;
}

int pool_consume_ready(Member *m, Slot **ret) {
        Pool *p = m->pool;
        Slot *s = next_deliverable(p, m->stream);

        if (!s)
                return -EAGAIN;
        if (sb_list_is_linked(&s->link))
                sb_list_unlink(&s->link);
        else {
                (void)order_pop(&p->order);
                if (s->stream == p->stream)
                        p->next_seq = s->seq + 1;
        }
        slot_to_holder(p, s, m, SLOT_READING);
        p->stats.consumed++;
        p->stats.bytes_consumed += s->nbytes;
        *ret = s;
        return 0;
}

int pool_consume(Member *m, Slot **ret) {
        Pool *p = m->pool;

        if (m->role != ROLE_CONSUMER)
                return SB_E_WRONG_ROLE;
        if (pool_consume_ready(m, ret) == 0)
                return 0;
        if (m->stream < p->stream) {
                m->stream++;
                *ret = NULL;
                return 0;
        }
        return -EAGAIN;
}

int pool_take(Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, Slot **v, size_t *n) {
        int r = kind == WAIT_ACQUIRE ? pool_acquire_seq(m, seq, &v[0]) : pool_consume(m, &v[0]);
        size_t bytes;

        *n = 0;
        if (r != 0)
                return r;
        if (!v[0])
                return 0;        /* end of stream */
        *n = 1;
        if (kind == WAIT_ACQUIRE) {
                while (*n < max && pool_acquire(m, &v[*n]) == 0)
                        (*n)++;
                return 0;
        }
        bytes = v[0]->meta_len + POOL_TAKE_BATCH_BYTES;
        while (*n < max) {
                const Slot *next = next_deliverable(m->pool, m->stream);
                if (!next || bytes + next->meta_len + POOL_TAKE_BATCH_BYTES > POOL_TAKE_BYTES_MAX)
                        break;
                bytes += next->meta_len + POOL_TAKE_BATCH_BYTES;
                (void)pool_consume_ready(m, &v[(*n)++]);
        }
        return 0;
}

int pool_release(Member *m, const uint32_t *slots, size_t n, bool requeue, size_t *bad) {
        Pool *p = m->pool;

        *bad = 0;
        if (n > POOL_MANY_MAX)
                return SB_E_BAD_REQUEST;
        p->mark_gen++;
        for (size_t i = 0; i < n; i++) {
                Slot *s = member_slot(m, slots[i]);
                *bad = i;
                if (!s || s->mark == p->mark_gen)
                        return SB_E_NOT_HOLDER;
                if (requeue && s->state != SLOT_READING)
                        return SB_E_BAD_REQUEST;
                s->mark = p->mark_gen;
        }
        *bad = 0;
        /* Requeued slots go to the front one by one: the last listed first, so that the
         * first listed ends up first in line. */
        for (size_t i = n; i-- > 0;) {
                Slot *s = &p->slots[slots[i]];
                if (requeue)
                        slot_requeue(p, s);
                else
                        slot_to_free(p, s);
        }
        pool_dispatch(p);
        return 0;
}

int pool_end(Member *m) {
        Pool *p = m->pool;

        if (m->role != ROLE_PRODUCER)
                return SB_E_WRONG_ROLE;
        if (!m->ended) {
                m->ended = true;
                p->n_ended++;
        }
        p->end_seen = true;
        pool_check_end(p);
        pool_dispatch(p);
        return 0;
}

/* --- waiters ---------------------------------------------------------------------- */

void pool_wait(PoolWaiter *w, Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, PoolWakeFn fn) {
        Pool *p = m->pool;

        w->member = m;
        w->kind = kind;
        w->max = max ? max : 1;
        w->seq = seq;
        w->fn = fn;
        w->since_usec = sb_now_usec();
        m->waiter = w;
        p->n_waiters[kind]++;
        p->waiting_since[kind] += w->since_usec;
        sb_list_append(kind == WAIT_ACQUIRE ? &p->acquire_waiters : &p->consume_waiters, &w->link);
}

void pool_unwait(PoolWaiter *w) {
        Pool *p;
        uint64_t waited;

        if (!w->member)
                return;
        p = w->member->pool;
        waited = sb_now_usec() - w->since_usec;
        if (w->kind == WAIT_ACQUIRE)
                p->stats.producer_wait_usec += waited;
        else
                p->stats.consumer_wait_usec += waited;
        sb_list_unlink(&w->link);
        p->n_waiters[w->kind]--;
        p->waiting_since[w->kind] -= w->since_usec;
        w->member->waiter = NULL;
        w->member = NULL;
}

uint64_t pool_waited_usec(const Pool *p, PoolWaitKind kind, uint64_t now) {
        uint64_t ended = kind == WAIT_ACQUIRE ? p->stats.producer_wait_usec : p->stats.consumer_wait_usec;

        /* Each wait going on has lasted now - since: n * now - the sum of their starts. */
        return ended + p->n_waiters[kind] * now - p->waiting_since[kind];
}

/* Answer the waiters of @queue, first come first served, while they can be answered. A
 * waiter held back for a lower seq lets the ones behind it try: one of them may be the
 * producer that fills the gap. */
static void dispatch_queue(SbList *queue) {
        Slot *v[POOL_MANY_MAX];
        SbList *it, *next;
        size_t n;

        for (it = queue->next; it != queue; it = next) {
                PoolWaiter *w = sb_list_entry(it, PoolWaiter, link);
                int r = pool_take(w->member, w->kind, w->max, w->seq, v, &n);

                next = it->next;
                if (r == -EBUSY)
                        continue;
                if (r != 0)
                        break;
                pool_unwait(w);
                w->fn(w, 0, v, n);
        }
}

static void pool_dispatch(Pool *p) {
        dispatch_queue(&p->acquire_waiters);
        dispatch_queue(&p->consume_waiters);
}
