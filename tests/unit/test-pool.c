/*
 * The slot state machine, streams and waiters, driven directly (no sockets). Each pool
 * is a real, small segment: the suite's segment check also covers pool_free().
 */
#include <errno.h>
#include <string.h>
#include <sys/shm.h>
#include <unistd.h>

#include "pool.h"
#include "sb-error.h"
#include "unit.h"

/* A slot as the tests hold it: its view when it was taken (the state now is state_of()). */
typedef SlotView Slot;

static Slot views[512];
static unsigned n_views;

static Slot *keep(const SlotView *v) {
        Slot *s = &views[n_views++ % 512];
        *s = *v;
        return s;
}

static SlotView view_of(Pool *p, const Slot *s) {
        SlotView v;
        pool_slot_view(p, s->index, &v);
        return v;
}

static SlotState state_of(Pool *p, const Slot *s) {
        return view_of(p, s).state;
}

/* pool_acquire_seq that holds what it got in *ret. */
static int try_acquire_seq(Member *m, int64_t seq, Slot **ret) {
        SlotView v;
        int r = pool_acquire_seq(m, seq, &v);

        *ret = r == 0 ? keep(&v) : NULL;
        return r;
}

/* pool_consume that holds what it got: 0 with *ret, or *ret NULL for end of stream. */
static int consume_ready(Member *m, Slot **ret) {
        SlotView v;
        bool eof;
        int r = pool_consume(m, &v, &eof);

        if (r == 0 && eof)
                return -EAGAIN;
        *ret = r == 0 ? keep(&v) : NULL;
        return r;
}

static Pool *mkpool(uint32_t slots, bool ordered, PoolPolicy policy) {
        PoolSpec spec = { .slot_size = 100, .slots = slots, .ordered = ordered, .on_consumer_death = policy,
                          .mode = 0600, .uid = getuid(), .gid = getgid() };
        PoolLayout layout;
        SbReason why;
        Pool *p = NULL;

        strcpy(spec.name, "t");
        ck_assert_msg(pool_spec_layout(&spec, &layout, &why) == 0, "%s", why.text);
        ck_assert_msg(pool_new(&p, &spec, &layout, 16, true, &why) == 0, "%s", why.text);
        return p;
}

static Member *join(Pool *p, Role role) {
        Member *m;
        ck_assert_int_eq(pool_join(p, role, NULL, &m), 0);
        return m;
}

static Slot *acquire(Member *m) {
        SlotView v;
        ck_assert_int_eq(pool_acquire(m, &v), 0);
        ck_assert_int_eq(v.state, SLOT_WRITING);
        return keep(&v);
}

static int publish1(Member *m, uint32_t index, uint64_t nbytes, bool has_seq, uint64_t seq) {
        PoolPublish e = { .slot = index, .nbytes = nbytes, .has_seq = has_seq, .seq = seq };
        size_t bad;

        return pool_publish(m, &e, 1, &bad);
}

static int release1(Member *m, uint32_t index, bool requeue) {
        size_t bad;

        return pool_release(m, &index, 1, requeue, &bad);
}

static void publish(Member *m, Slot *s, uint64_t seq) {
        ck_assert_int_eq(publish1(m, s->index, 10, true, seq), 0);
}

/* Consume and return the seq, -1 for end of stream, -2 when nothing is ready. */
static long consume_seq(Member *m, uint32_t *index) {
        SlotView s;
        bool eof;
        int r = pool_consume(m, &s, &eof);

        if (r == -EAGAIN)
                return -2;
        ck_assert_int_eq(r, 0);
        if (eof)
                return -1;
        if (index)
                *index = s.index;
        return (long)s.seq;
}

static void check_counts(Pool *p) {
        const char *why = NULL;
        ck_assert_msg(fp_check(&p->fp, &why) == 0, "%s", why);
        uint32_t sum = 0;
        for (int i = 0; i < _SLOT_STATE_MAX; i++)
                sum += pool_state(p)->count[i];
        ck_assert_uint_eq(sum, p->spec.slots);
}

START_TEST(full_cycle_and_layout) {
        Pool *p = mkpool(3, false, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        Slot *s;
        uint32_t idx;
        char *mem;

        ck_assert_uint_eq(p->stride % (uint64_t)sysconf(_SC_PAGESIZE), 0);
        ck_assert_uint_eq(p->seg.size, p->stride * 3);
        mem = shmat(p->seg.shmid, NULL, 0);
        ck_assert(mem != (void *)-1);
        s = acquire(prod);
        memcpy(mem + s->offset, "hello", 5);
        ck_assert_int_eq(pool_state(p)->count[SLOT_WRITING], 1);
        publish(prod, s, 7);
        ck_assert_int_eq(pool_state(p)->count[SLOT_READY], 1);
        ck_assert_int_eq(consume_seq(cons, &idx), 7);
        ck_assert_int_eq(memcmp(mem + (uint64_t)idx * p->stride, "hello", 5), 0);
        ck_assert_int_eq(pool_state(p)->count[SLOT_READING], 1);
        ck_assert_int_eq(release1(cons, idx, false), 0);
        ck_assert_int_eq(pool_state(p)->count[SLOT_FREE], 3);
        check_counts(p);
        shmdt(mem);
        pool_free(p);
}
END_TEST

START_TEST(roles_and_holders_are_enforced) {
        Pool *p = mkpool(2, false, POLICY_REQUEUE);
        Member *a = join(p, ROLE_PRODUCER), *b = join(p, ROLE_PRODUCER), *c = join(p, ROLE_CONSUMER);
        Slot *s = NULL;

        ck_assert_int_eq(try_acquire_seq(c, -1, &s), SB_E_WRONG_ROLE);
        ck_assert_int_eq(consume_ready(a, &s), SB_E_WRONG_ROLE);
        ck_assert_int_eq(pool_end(c), SB_E_WRONG_ROLE);
        s = acquire(a);
        ck_assert_int_eq(publish1(b, s->index, 1, false, 0), SB_E_NOT_HOLDER);
        ck_assert_int_eq(release1(b, s->index, false), SB_E_NOT_HOLDER);
        ck_assert_int_eq(release1(c, 99, false), SB_E_NOT_HOLDER);
        ck_assert_int_eq(publish1(a, s->index, 101, false, 0), SB_E_BAD_REQUEST);
        ck_assert_int_eq(release1(a, s->index, true), SB_E_BAD_REQUEST);
        /* a producer gives a slot back unpublished */
        ck_assert_int_eq(release1(a, s->index, false), 0);
        ck_assert_int_eq(pool_state(p)->count[SLOT_FREE], 2);
        ck_assert_int_eq(consume_seq(c, NULL), -2);
        pool_free(p);
}
END_TEST

START_TEST(exhaustion_and_publish_order) {
        Pool *p = mkpool(3, false, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        Slot *s[3];
        SlotView none;

        for (int i = 0; i < 3; i++)
                s[i] = acquire(prod);
        ck_assert_int_eq(pool_acquire(prod, &none), -EAGAIN);
        publish(prod, s[2], 20);
        publish(prod, s[0], 0);
        publish(prod, s[1], 10);
        ck_assert_int_eq(consume_seq(cons, NULL), 20);
        ck_assert_int_eq(consume_seq(cons, NULL), 0);
        ck_assert_int_eq(consume_seq(cons, NULL), 10);
        ck_assert_int_eq(consume_seq(cons, NULL), -2);
        pool_free(p);
}
END_TEST

START_TEST(ordered_delivers_by_seq_and_refuses_duplicates) {
        Pool *p = mkpool(4, true, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        Slot *a = acquire(prod), *b = acquire(prod), *c = acquire(prod), *d = acquire(prod);
        uint32_t idx;

        ck_assert_int_eq(publish1(prod, a->index, 1, false, 0), SB_E_BAD_REQUEST);  /* needs seq */
        publish(prod, a, 2);
        publish(prod, b, 1);
        ck_assert_int_eq(publish1(prod, c->index, 1, true, 2), SB_E_BAD_REQUEST);  /* seq 2 is ready */
        ck_assert_int_eq(consume_seq(cons, NULL), -2);   /* waits for seq 0 */
        publish(prod, c, 0);
        ck_assert_int_eq(consume_seq(cons, &idx), 0);
        ck_assert_int_eq(release1(cons, idx, false), 0);
        ck_assert_int_eq(publish1(prod, d->index, 1, true, 0), SB_E_BAD_REQUEST);  /* seq 0 delivered */
        ck_assert_int_eq(consume_seq(cons, NULL), 1);
        ck_assert_int_eq(consume_seq(cons, NULL), 2);
        pool_free(p);
}
END_TEST

START_TEST(ordered_end_skips_gaps_and_restarts_seqs) {
        Pool *p = mkpool(4, true, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        uint32_t idx;

        publish(prod, acquire(prod), 0);
        publish(prod, acquire(prod), 2);       /* seq 1 never comes (its producer died) */
        ck_assert_int_eq(consume_seq(cons, &idx), 0);
        release1(cons, idx, false);
        ck_assert_int_eq(consume_seq(cons, NULL), -2);
        ck_assert_int_eq(pool_end(prod), 0);
        ck_assert_int_eq(consume_seq(cons, &idx), 2);
        release1(cons, idx, false);
        ck_assert_int_eq(consume_seq(cons, NULL), -1);
        publish(prod, acquire(prod), 0);       /* the next stream starts at 0 again */
        ck_assert_int_eq(consume_seq(cons, NULL), 0);
        pool_free(p);
}
END_TEST

START_TEST(stream_ends_when_every_producer_ended_or_left) {
        Pool *p = mkpool(8, false, POLICY_REQUEUE);
        Member *a = join(p, ROLE_PRODUCER), *b = join(p, ROLE_PRODUCER), *c1 = join(p, ROLE_CONSUMER);
        Member *c2 = join(p, ROLE_CONSUMER);
        uint32_t idx;

        publish(a, acquire(a), 1);
        ck_assert_int_eq(pool_end(a), 0);
        /* a, already ended, starts the next stream early; b is still in this one */
        publish(a, acquire(a), 100);
        publish(b, acquire(b), 2);
        ck_assert_int_eq(consume_seq(c1, &idx), 1);
        release1(c1, idx, false);
        ck_assert_int_eq(consume_seq(c1, &idx), 2);
        release1(c1, idx, false);
        ck_assert_int_eq(consume_seq(c1, NULL), -2);   /* b has not ended: no eof, no early batch */
        member_leave(b);                               /* leaving counts as ending */
        ck_assert_int_eq(consume_seq(c1, NULL), -1);   /* eof once per consumer ... */
        ck_assert_int_eq(consume_seq(c2, NULL), -1);
        ck_assert_int_eq(consume_seq(c1, NULL), 100);  /* ... then the next stream */
        ck_assert_int_eq(consume_seq(c2, NULL), -2);
        ck_assert_uint_eq(pool_stats(p)->streams_ended, 1);
        /* a consumer that comes after the end starts with the next stream: no eof for it */
        ck_assert_int_eq(pool_end(a), 0);
        Member *late = join(p, ROLE_CONSUMER);
        ck_assert_int_eq(consume_seq(late, NULL), -2);
        ck_assert_int_eq(consume_seq(c2, NULL), -1);
        pool_free(p);
}
END_TEST

START_TEST(dying_consumer_requeues_to_front) {
        Pool *p = mkpool(4, false, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *c1 = join(p, ROLE_CONSUMER), *c2 = join(p, ROLE_CONSUMER);
        Slot *w;

        publish(prod, acquire(prod), 1);
        publish(prod, acquire(prod), 2);
        w = acquire(prod);                   /* being written */
        ck_assert_int_eq(consume_seq(c1, NULL), 1);
        member_leave(c1);
        ck_assert_int_eq(pool_state(p)->count[SLOT_READY], 2);
        ck_assert_int_eq(consume_seq(c2, NULL), 1);   /* the requeued batch comes first */
        ck_assert_int_eq(consume_seq(c2, NULL), 2);
        member_leave(prod);                           /* a writing slot is discarded */
        ck_assert_int_eq(state_of(p, w), SLOT_FREE);
        ck_assert_int_eq(pool_state(p)->count[SLOT_FREE], 2);
        member_leave(c2);                             /* both its batches wait for the next consumer */
        ck_assert_int_eq(pool_state(p)->count[SLOT_READY], 2);
        ck_assert_int_eq(pool_state(p)->count[SLOT_FREE], 2);
        ck_assert(pool_is_unused(p));
        pool_free(p);
}
END_TEST

START_TEST(dying_consumer_frees_by_policy) {
        Pool *p = mkpool(2, false, POLICY_FREE);
        Member *prod = join(p, ROLE_PRODUCER), *c1 = join(p, ROLE_CONSUMER);

        publish(prod, acquire(prod), 1);
        ck_assert_int_eq(consume_seq(c1, NULL), 1);
        member_leave(c1);
        ck_assert_int_eq(pool_state(p)->count[SLOT_FREE], 2);
        pool_free(p);
}
END_TEST

START_TEST(requeue_by_consumer) {
        Pool *p = mkpool(2, true, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *c1 = join(p, ROLE_CONSUMER);
        uint32_t idx;

        publish(prod, acquire(prod), 0);
        publish(prod, acquire(prod), 1);
        ck_assert_int_eq(consume_seq(c1, &idx), 0);
        ck_assert_int_eq(release1(c1, idx, true), 0);
        ck_assert_int_eq(consume_seq(c1, NULL), 0);   /* back at the front, even in an ordered pool */
        ck_assert_int_eq(consume_seq(c1, NULL), 1);
        pool_free(p);
}
END_TEST

/* --- waiters --------------------------------------------------------------------- */

typedef struct TestWaiter {
        PoolWaiter w;
        int woken;
        int result;
        Slot *slot;              /* the first slot handed over; NULL for end of stream */
        Slot first;
        size_t n;
} TestWaiter;

/* Queue @w for a take of @kind by @m, which nothing can answer now. */
static void wait_on(PoolWaiter *w, Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, PoolWakeFn fn) {
        static SlotView v[POOL_MANY_MAX];
        size_t n;

        ck_assert_int_eq(pool_take_or_wait(m, kind, max, seq, v, &n, w, fn), POOL_WAITING);
}

static void on_wake(PoolWaiter *w, int result, const SlotView *slots, size_t n) {
        TestWaiter *t = (TestWaiter *)w;
        t->woken++;
        t->result = result;
        if (n)
                t->first = slots[0];
        t->slot = n ? &t->first : NULL;
        t->n = n;
}

START_TEST(waiters_first_come_first_served) {
        Pool *p = mkpool(1, false, POLICY_REQUEUE);
        Member *a = join(p, ROLE_PRODUCER), *b = join(p, ROLE_PRODUCER), *c = join(p, ROLE_PRODUCER);
        Member *cons = join(p, ROLE_CONSUMER);
        TestWaiter wb = { 0 }, wc = { 0 }, wk = { 0 };
        Slot *s = acquire(a);

        wait_on(&wk.w, cons, WAIT_CONSUME, 1, -1, on_wake);
        wait_on(&wb.w, b, WAIT_ACQUIRE, 1, -1, on_wake);
        wait_on(&wc.w, c, WAIT_ACQUIRE, 1, -1, on_wake);
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_ACQUIRE], 2);
        publish(a, s, 5);
        ck_assert_int_eq(wk.woken, 1);                 /* the consumer got the batch */
        ck_assert_int_eq(wk.slot->seq, 5);
        ck_assert_int_eq(wb.woken + wc.woken, 0);
        release1(cons, wk.slot->index, false);
        ck_assert_int_eq(wb.woken, 1);                 /* b asked first */
        ck_assert_int_eq(wc.woken, 0);
        ck_assert_uint_eq(member_held_first(b), wb.slot->index);
        member_leave(b);                               /* b dies writing: c gets the slot */
        ck_assert_int_eq(wc.woken, 1);
        ck_assert_uint_eq(member_held_first(c), wc.slot->index);
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_ACQUIRE], 0);
        pool_free(p);
}
END_TEST

START_TEST(stream_end_wakes_every_waiting_consumer) {
        Pool *p = mkpool(2, false, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *c1 = join(p, ROLE_CONSUMER), *c2 = join(p, ROLE_CONSUMER);
        TestWaiter w1 = { 0 }, w2 = { 0 };

        wait_on(&w1.w, c1, WAIT_CONSUME, 1, -1, on_wake);
        wait_on(&w2.w, c2, WAIT_CONSUME, 1, -1, on_wake);
        pool_end(prod);
        ck_assert_int_eq(w1.woken, 1);
        ck_assert_ptr_null(w1.slot);                   /* end of stream */
        ck_assert_int_eq(w2.woken, 1);
        ck_assert_ptr_null(w2.slot);
        pool_free(p);
}
END_TEST

/* The waits are counted while they last, by kind, in O(1): the ended ones' total plus
 * n * now minus the sum of the starts of those going on. Bytes and roles are counted. */
START_TEST(waits_count_while_they_last) {
        Pool *p = mkpool(1, false, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *c1 = join(p, ROLE_CONSUMER), *c2 = join(p, ROLE_CONSUMER);
        TestWaiter w1 = { 0 }, w2 = { 0 };
        uint64_t t0, t1;
        Slot *s;

        ck_assert_uint_eq(pool_state(p)->n_producers, 1);
        ck_assert_uint_eq(pool_state(p)->n_consumers, 2);
        wait_on(&w1.w, c1, WAIT_CONSUME, 1, -1, on_wake);
        wait_on(&w2.w, c2, WAIT_CONSUME, 1, -1, on_wake);
        t0 = fp_member(&p->fp, c1->id)->since_usec;
        t1 = fp_member(&p->fp, c2->id)->since_usec;
        ck_assert_uint_eq(pool_waited_usec(p, WAIT_CONSUME, t1 + 1000), (t1 + 1000 - t0) + 1000);
        ck_assert_uint_eq(pool_waited_usec(p, WAIT_ACQUIRE, t1 + 1000), 0);
        s = acquire(prod);
        ck_assert_int_eq(publish1(prod, s->index, 77, true, 0), 0);
        ck_assert_int_eq(w1.woken, 1);                 /* c1 ended its wait; c2's goes on */
        ck_assert_uint_eq(pool_waited_usec(p, WAIT_CONSUME, t1 + 5000), pool_stats(p)->wait_usec[WAIT_CONSUME] + 5000);
        ck_assert_uint_eq(pool_stats(p)->bytes_consumed, 77);
        pool_unwait(&w2.w, false);
        ck_assert_uint_eq(pool_waited_usec(p, WAIT_CONSUME, UINT64_MAX / 2), pool_stats(p)->wait_usec[WAIT_CONSUME]);
        member_leave(c2);
        ck_assert_uint_eq(pool_state(p)->n_consumers, 1);
        pool_free(p);
}
END_TEST

/* A many-slot waiter is handed, in one wake-up, the slot it waited for and as many more
 * as can be taken at that moment, up to its max: never more, never in two calls. */
START_TEST(waiter_takes_up_to_its_max) {
        Pool *p = mkpool(4, false, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER), *other = join(p, ROLE_PRODUCER);
        TestWaiter wk = { 0 }, wa = { 0 };
        PoolPublish v[4] = { 0 };
        uint32_t held[4];
        size_t bad;

        for (int i = 0; i < 4; i++) {
                Slot *s = acquire(prod);
                v[i] = (PoolPublish){ .slot = s->index, .nbytes = 1 };
                held[i] = s->index;
        }
        wait_on(&wk.w, cons, WAIT_CONSUME, 3, -1, on_wake);
        wait_on(&wa.w, other, WAIT_ACQUIRE, 8, -1, on_wake);
        ck_assert_int_eq(pool_publish(prod, v, 4, &bad), 0);
        ck_assert_int_eq(wk.woken, 1);
        ck_assert_uint_eq(wk.n, 3);                    /* 4 ready, max 3 */
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READING], 3);
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READY], 1);
        ck_assert_uint_eq(member_held_first(cons), wk.slot->index);
        ck_assert_int_eq(wa.woken, 0);                 /* nothing free yet */
        ck_assert_int_eq(pool_release(cons, held, 3, false, &bad), 0);   /* the first three published */
        ck_assert_int_eq(wa.woken, 1);
        ck_assert_uint_eq(wa.n, 3);                    /* every free slot, under its max of 8 */
        ck_assert_uint_eq(pool_state(p)->count[SLOT_WRITING], 3);
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_ACQUIRE] + pool_state(p)->n_waiters[WAIT_CONSUME], 0);
        pool_free(p);
}
END_TEST

static Slot *acquire_seq(Member *m, int64_t seq) {
        Slot *s = NULL;
        ck_assert_int_eq(try_acquire_seq(m, seq, &s), 0);
        return s;
}

/* A producer dies before publishing seq 0; another fills the pool with the seqs after it.
 * The last free slot is kept for seq 0, so that its replacement gets one and the stream
 * goes on; a producer waiting with a later seq lets the replacement behind it pass. */
START_TEST(ordered_pool_keeps_a_slot_for_the_lowest_missing_seq) {
        Pool *p = mkpool(4, true, POLICY_REQUEUE);
        Member *a = join(p, ROLE_PRODUCER), *b = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        TestWaiter wb = { 0 }, wc = { 0 };
        Member *c;
        Slot *s;
        uint32_t idx;

        (void)acquire(a);                              /* says no seq: it may be writing 0 */
        for (int seq = 1; seq <= 3; seq++)
                publish(b, acquire_seq(b, seq), (uint64_t)seq);
        ck_assert_int_eq(try_acquire_seq(b, 4, &s), -EAGAIN);  /* none free */
        wait_on(&wb.w, b, WAIT_ACQUIRE, 1, 4, on_wake);
        c = join(p, ROLE_PRODUCER);                    /* the replacement, queued behind b */
        wait_on(&wc.w, c, WAIT_ACQUIRE, 1, 0, on_wake);
        member_leave(a);                               /* dies without publishing 0 */
        ck_assert_uint_eq(pool_lowest_unpublished(p), 0);
        ck_assert_int_eq(wb.woken, 0);                 /* the freed slot is kept for 0 ... */
        ck_assert_int_eq(wc.woken, 1);                 /* ... and goes to the one that writes it */
        publish(c, wc.slot, 0);
        for (long seq = 0; seq <= 3; seq++) {
                ck_assert_int_eq(consume_seq(cons, &idx), seq);
                ck_assert_int_eq(release1(cons, idx, false), 0);
        }
        ck_assert_int_eq(wb.woken, 1);                 /* then seq 4 got one */
        ck_assert_uint_eq(pool_lowest_unpublished(p), 4);
        ck_assert_int_eq(try_acquire_seq(c, 9, &s), 0);        /* three free: no reason to keep one */
        pool_free(p);
}
END_TEST

/* Only a producer that says its seq is held back: one that says nothing may be writing
 * the missing seq itself, and so may anyone while it does. */
START_TEST(slot_kept_only_while_nobody_may_write_the_gap) {
        Pool *p = mkpool(3, true, POLICY_REQUEUE);
        Member *a = join(p, ROLE_PRODUCER), *b = join(p, ROLE_PRODUCER);
        Slot *s0, *s;

        s0 = acquire(a);                               /* no seq said: it may be writing 0 */
        publish(b, acquire_seq(b, 1), 1);
        ck_assert_int_eq(try_acquire_seq(b, 2, &s), 0);        /* the last slot: allowed */
        ck_assert_int_eq(release1(b, s->index, false), 0);
        ck_assert_int_eq(release1(a, s0->index, false), 0);     /* nobody may write 0 now */
        ck_assert_int_eq(try_acquire_seq(b, 2, &s), 0);        /* two free: fine */
        ck_assert_int_eq(try_acquire_seq(b, 3, &s), -EBUSY);   /* the last one is 0's */
        ck_assert_int_eq(try_acquire_seq(b, -1, &s), 0);               /* saying nothing still takes it */
        pool_free(p);
}
END_TEST

START_TEST(free_fails_waiters_and_unwait_leaves_quietly) {
        Pool *p = mkpool(1, false, POLICY_REQUEUE);
        Member *a = join(p, ROLE_PRODUCER), *b = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        TestWaiter wb = { 0 }, wk = { 0 };

        (void)acquire(a);
        wait_on(&wb.w, b, WAIT_ACQUIRE, 1, -1, on_wake);
        wait_on(&wk.w, cons, WAIT_CONSUME, 1, -1, on_wake);
        pool_unwait(&wk.w, false);
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_CONSUME], 0);
        pool_free(p);
        ck_assert_int_eq(wb.woken, 1);
        ck_assert_int_eq(wb.result, SB_E_NO_SUCH_POOL);
        ck_assert_int_eq(wk.woken, 0);
}
END_TEST

/* Several slots in one publish or release: all or none, in the order listed. */
START_TEST(many_slots_all_or_none) {
        Pool *p = mkpool(4, true, POLICY_REQUEUE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        Slot *a = acquire(prod), *b = acquire(prod), *c = acquire(prod);
        PoolPublish v[3] = { { .slot = b->index, .nbytes = 5, .has_seq = true, .seq = 1, .meta = "{\"k\":1}", .meta_len = 7 },
                             { .slot = a->index, .nbytes = 6, .has_seq = true, .seq = 0 },
                             { .slot = c->index, .nbytes = 7, .has_seq = true, .seq = 1 } };
        uint32_t held[3];
        size_t bad;
        Slot *s;

        /* seq 1 twice: refused, nothing published, the bad entry named */
        ck_assert_int_eq(pool_publish(prod, v, 3, &bad), SB_E_BAD_REQUEST);
        ck_assert_uint_eq(bad, 2);
        ck_assert_uint_eq(pool_state(p)->count[SLOT_WRITING], 3);
        /* a slot twice */
        v[2].slot = b->index;
        v[2].seq = 2;
        ck_assert_int_eq(pool_publish(prod, v, 3, &bad), SB_E_NOT_HOLDER);
        ck_assert_uint_eq(bad, 2);
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READY], 0);
        v[2].slot = c->index;
        ck_assert_int_eq(pool_publish(prod, v, 3, &bad), 0);
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READY], 3);
        for (uint64_t seq = 0; seq < 3; seq++) {
                ck_assert_int_eq(consume_ready(cons, &s), 0);
                ck_assert_uint_eq(s->seq, seq);
                held[seq] = s->index;
        }
        ck_assert_uint_eq(view_of(p, b).meta_len, 7);
        ck_assert_str_eq(view_of(p, b).meta, "{\"k\":1}");
        ck_assert_int_eq(consume_ready(cons, &s), -EAGAIN);
        /* release: a slot not held makes the whole request fail */
        held[1] = 3;
        ck_assert_int_eq(pool_release(cons, held, 3, false, &bad), SB_E_NOT_HOLDER);
        ck_assert_uint_eq(bad, 1);
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READING], 3);
        held[1] = b->index;
        /* requeued in the order listed: first listed, first consumed again */
        ck_assert_int_eq(pool_release(cons, held, 3, true, &bad), 0);
        ck_assert_int_eq(consume_ready(cons, &s), 0);
        ck_assert_uint_eq(s->index, held[0]);
        ck_assert_int_eq(pool_release(cons, &held[0], 1, false, &bad), 0);
        check_counts(p);
        pool_free(p);
}
END_TEST

/* A meta is held for its producer's uid from publish until its slot is freed: by release,
 * by a consumer's death, with its pool; a refused publish holds nothing. */
START_TEST(meta_held_until_the_slot_is_freed) {
        Pool *p = mkpool(4, false, POLICY_FREE);
        Member *prod = join(p, ROLE_PRODUCER), *cons = join(p, ROLE_CONSUMER);
        Slot *a = acquire(prod), *b = acquire(prod), *c = acquire(prod), *s;
        QuotaCharge client;
        QuotaKind kover;
        Quota q;
        PoolMetaPayer payer = { .quota = &q, .payer = &client, .max_per_uid = 100, .max_total = 1000 };
        PoolPublish v[3] = { { .slot = a->index, .nbytes = 1, .meta = "{\"k\":1}", .meta_len = 7, .payer = &payer },
                             { .slot = b->index, .nbytes = 1, .meta = "{\"k\":22}", .meta_len = 8, .payer = &payer },
                             { .slot = c->index, .nbytes = 1, .meta = "{\"k\":333}", .meta_len = 90, .payer = &payer } };
        size_t bad;

        quota_init(&q, 0, 999);
        ck_assert_int_eq(quota_charge(&q, &client, 1000, (const uint64_t[_QUOTA_MAX]){ [QUOTA_CLIENTS] = 1 }, &kover), 0);
        ck_assert_int_eq(pool_publish(prod, v, 3, &bad), SB_E_LIMIT);
        ck_assert_uint_eq(bad, 2);
        ck_assert_int_eq(payer.over, QUOTA_HOLD_PER_UID);
        ck_assert_uint_eq(q.held, 0);
        ck_assert_ptr_null(view_of(p, a).meta);
        ck_assert_uint_eq(pool_state(p)->count[SLOT_WRITING], 3);
        v[2].meta_len = 9;
        ck_assert_int_eq(pool_publish(prod, v, 3, &bad), 0);
        ck_assert_uint_eq(q.held, 24);
        ck_assert_uint_eq(quota_held_by(&client), 24);
        ck_assert_str_eq(view_of(p, c).meta, "{\"k\":333}");
        /* being read still holds; released, freed */
        ck_assert_int_eq(consume_ready(cons, &s), 0);
        ck_assert_uint_eq(s->index, a->index);
        ck_assert_uint_eq(q.held, 24);
        ck_assert_int_eq(release1(cons, a->index, false), 0);
        ck_assert_uint_eq(q.held, 17);
        ck_assert_ptr_null(view_of(p, a).meta);
        /* a consumer that dies reading (policy free) */
        ck_assert_int_eq(consume_ready(cons, &s), 0);
        member_leave(cons);
        ck_assert_uint_eq(q.held, 9);
        /* the producer goes: its ready batch keeps its hold, and the uid its entry */
        quota_uncharge(&client);
        member_leave(prod);
        ck_assert_uint_eq(q.held, 9);
        pool_free(p);
        ck_assert_uint_eq(q.held, 0);
        ck_assert(sb_list_is_empty(&q.users));
}
END_TEST

START_TEST(layout_limits_overflow) {
        PoolSpec spec = { .slot_size = UINT64_MAX - 5, .slots = 2 };
        PoolLayout l;
        SbReason why;

        ck_assert_int_eq(pool_spec_layout(&spec, &l, &why), SB_E_LIMIT);
        spec.slot_size = UINT64_C(1) << 62;
        spec.slots = 8;
        ck_assert_int_eq(pool_spec_layout(&spec, &l, &why), SB_E_LIMIT);
        spec.slots = POOL_SLOTS_MAX + 1;
        spec.slot_size = 1;
        ck_assert_int_eq(pool_spec_layout(&spec, &l, &why), SB_E_LIMIT);
        spec.slots = 3;
        ck_assert_int_eq(pool_spec_layout(&spec, &l, &why), 0);
        ck_assert_uint_eq(l.size, 3 * l.stride);
}
END_TEST

START_TEST(segment_goes_with_its_last_user) {
        Pool *p = mkpool(1, false, POLICY_REQUEUE);
        int shmid = p->seg.shmid;
        struct shmid_ds ds;
        void *mem = shmat(shmid, NULL, 0);

        /* Marked for removal from the start, yet attachable by shmid. */
        ck_assert(mem != (void *)-1);
        ck_assert_int_eq(shmctl(shmid, IPC_STAT, &ds), 0);
        ck_assert(ds.shm_perm.mode & SHM_DEST);
        pool_free(p);
        ck_assert_int_eq(shmctl(shmid, IPC_STAT, &ds), 0);   /* still ours */
        ck_assert_int_eq(shmdt(mem), 0);
        ck_assert_int_eq(shmctl(shmid, IPC_STAT, &ds), -1);  /* gone */
}
END_TEST

Suite *suite_pool(void) {
        Suite *s = suite_create("pool");
        TCase *t = tcase_create("state machine");

        tcase_add_test(t, full_cycle_and_layout);
        tcase_add_test(t, waits_count_while_they_last);
        tcase_add_test(t, roles_and_holders_are_enforced);
        tcase_add_test(t, exhaustion_and_publish_order);
        tcase_add_test(t, ordered_delivers_by_seq_and_refuses_duplicates);
        tcase_add_test(t, ordered_end_skips_gaps_and_restarts_seqs);
        tcase_add_test(t, stream_ends_when_every_producer_ended_or_left);
        tcase_add_test(t, dying_consumer_requeues_to_front);
        tcase_add_test(t, dying_consumer_frees_by_policy);
        tcase_add_test(t, requeue_by_consumer);
        tcase_add_test(t, waiters_first_come_first_served);
        tcase_add_test(t, stream_end_wakes_every_waiting_consumer);
        tcase_add_test(t, waiter_takes_up_to_its_max);
        tcase_add_test(t, free_fails_waiters_and_unwait_leaves_quietly);
        tcase_add_test(t, ordered_pool_keeps_a_slot_for_the_lowest_missing_seq);
        tcase_add_test(t, slot_kept_only_while_nobody_may_write_the_gap);
        tcase_add_test(t, many_slots_all_or_none);
        tcase_add_test(t, meta_held_until_the_slot_is_freed);
        tcase_add_test(t, layout_limits_overflow);
        tcase_add_test(t, segment_goes_with_its_last_user);
        suite_add_tcase(s, t);
        return s;
}
