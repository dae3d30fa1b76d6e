/*
 * The slot state machine on its control block (common/fastpool.c), on plain heap memory.
 *
 * Each operation is driven as test-pool.c drives pool.c's, with fp_check() after every
 * one. Then the undo log: random runs of operations in which each operation is also
 * stopped after each of its stores in turn, the lock stolen from the dead member and its
 * step undone as the daemon does, and the block compared byte for byte with the block of
 * the last commit before the death. Then the largest step of a pool of 2^20 slots against
 * FP_UNDO_CAP, and blocks scribbled on by a hostile member.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sb-fastpool.h"
#include "unit.h"

/* Checks in the hot loops: ck_assert() reports each one to Check's parent (a write); these
 * say nothing until one fails. */
#define REQUIRE(cond, ...) do { if (!(cond)) ck_abort_msg(__VA_ARGS__); } while (0)
#define REQ(cond) REQUIRE(cond, "%s", #cond)

/* --- a block, and the waiters it serves ------------------------------------------------ */

enum { SERVED_MAX = 256 };

typedef struct Served {
        uint32_t id, n;
        uint32_t first;          /* the first slot handed over; FP_NONE: none (end of stream) */
} Served;

typedef struct ServedLog {
        Served v[SERVED_MAX];
        size_t n;
} ServedLog;

/* f->served: the serve is recorded, and its slots must be the member's, in the state its
 * wait's kind gives them, and the member no longer waiting. */
static void on_served(Fp *f, uint32_t id, void *userdata) {
        ServedLog *l = userdata;
        const FpMember *m = fp_member(f, id);
        uint32_t v[FP_MANY_MAX];
        size_t n;

        REQ(m != NULL);
        REQ(m->wmax == 0);
        n = fp_served_slots(f, id, v);
        REQ(n == m->served);
        for (size_t i = 0; i < n; i++) {
                const FpSlot *s = fp_slot(f, v[i]);
                REQ(s != NULL);
                REQ(s->holder == id);
                REQ(s->state == (m->wkind == FP_WAIT_ACQUIRE ? FP_WRITING : FP_READING));
        }
        REQ(l->n < SERVED_MAX);
        l->v[l->n++] = (Served){ .id = id, .n = (uint32_t)n, .first = n ? v[0] : FP_NONE };
}

typedef struct Blk {
        Fp f;
        FpGeom g;
        uint8_t *mem;
        ServedLog log;
} Blk;

static uint8_t *block_alloc(const FpGeom *g) {
        uint8_t *mem = aligned_alloc(64, g->size);

        REQ(mem != NULL);
        memset(mem, 0, g->size);
        return mem;
}

static void check(Fp *f) {
        const char *why = NULL;
        int r = fp_check(f, &why);

        REQUIRE(r == 0, "fp_check: %d, %s", r, why ? why : "?");
}

/* A block of @slots slots of 100 bytes and @members members, held by the daemon's side. */
static void mk(Blk *b, uint32_t slots, uint32_t members, uint32_t flags) {
        ck_assert_int_eq(fp_geom(&b->g, slots, members, 100, 4096, flags, 64), 0);
        b->mem = block_alloc(&b->g);
        fp_format(&b->f, b->mem, &b->g, FP_DAEMON);
        b->log.n = 0;
        b->f.served = on_served;
        b->f.userdata = &b->log;
        b->f.now = 1000000;
        ck_assert_int_eq(fp_trylock(&b->f, NULL), 0);
        check(&b->f);
}

#define POOL(b) (fp_head(&(b)->f)->pool)
#define STATS(b) (fp_head(&(b)->f)->stats)

/* Each operation at a later time than the one before, and the invariants after it. */
static Fp *tick(Blk *b) {
        b->f.now += 1000;
        return &b->f;
}

static void join(Blk *b, uint32_t id, Role role) {
        ck_assert_int_eq(fp_join(tick(b), id, role), 0);
        check(&b->f);
}

static void leave(Blk *b, uint32_t id) {
        ck_assert_int_eq(fp_leave(tick(b), id), 0);
        check(&b->f);
}

static int take(Blk *b, uint32_t id, FpWaitKind kind, uint32_t max, int64_t seq, uint32_t *v, size_t *n) {
        int r = fp_take(tick(b), id, kind, max, seq, v, n);

        check(&b->f);
        return r;
}

static uint32_t acquire(Blk *b, uint32_t id, int64_t seq) {
        uint32_t v[1];
        size_t n;

        ck_assert_int_eq(take(b, id, FP_WAIT_ACQUIRE, 1, seq, v, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(fp_slot(&b->f, v[0])->state, FP_WRITING);
        ck_assert_uint_eq(fp_slot(&b->f, v[0])->holder, id);
        return v[0];
}

static int publish1(Blk *b, uint32_t id, uint32_t slot, uint64_t nbytes, bool has_seq, uint64_t seq) {
        FpPublish e = { .slot = slot, .nbytes = nbytes, .has_seq = has_seq, .seq = seq };
        size_t bad;
        int r = fp_publish(tick(b), id, &e, 1, &bad);

        check(&b->f);
        return r;
}

static void publish(Blk *b, uint32_t id, uint32_t slot, uint64_t seq) {
        ck_assert_int_eq(publish1(b, id, slot, 10, true, seq), 0);
}

/* Consume one: its seq, -1 for end of stream, -2 when nothing is ready. */
static long consume(Blk *b, uint32_t id, uint32_t *slot) {
        uint32_t v[1];
        size_t n;
        int r = take(b, id, FP_WAIT_CONSUME, 1, -1, v, &n);

        if (r == -EAGAIN)
                return -2;
        ck_assert_int_eq(r, 0);
        if (n == 0)
                return -1;
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(fp_slot(&b->f, v[0])->state, FP_READING);
        ck_assert_uint_eq(fp_slot(&b->f, v[0])->holder, id);
        if (slot)
                *slot = v[0];
        return (long)fp_slot(&b->f, v[0])->seq;
}

static int release1(Blk *b, uint32_t id, uint32_t slot, bool requeue) {
        size_t bad;
        int r = fp_release(tick(b), id, &slot, 1, requeue, &bad);

        check(&b->f);
        return r;
}

static int end(Blk *b, uint32_t id) {
        int r = fp_end(tick(b), id);

        check(&b->f);
        return r;
}

static void wait(Blk *b, uint32_t id, FpWaitKind kind, uint32_t max, int64_t seq) {
        ck_assert_int_eq(fp_wait(tick(b), id, kind, max, seq, false, NULL), 0);
        check(&b->f);
}

static void unwait(Blk *b, uint32_t id) {
        ck_assert_int_eq(fp_unwait(tick(b), id), 0);
        check(&b->f);
}

static bool waiting(Blk *b, uint32_t id) {
        return fp_member(&b->f, id)->wmax != 0;
}

/* --- the operations --------------------------------------------------------------------- */

START_TEST(geometry) {
        FpGeom g;

        ck_assert_int_eq(fp_geom(&g, 0, 1, 1, 1, 0, 0), -E2BIG);
        ck_assert_int_eq(fp_geom(&g, FP_SLOTS_MAX + 1, 1, 1, 1, 0, 0), -E2BIG);
        ck_assert_int_eq(fp_geom(&g, 1, 0, 1, 1, 0, 0), -E2BIG);
        ck_assert_int_eq(fp_geom(&g, 1, FP_MEMBERS_MAX + 1, 1, 1, 0, 0), -E2BIG);
        ck_assert_int_eq(fp_geom(&g, 5, 3, 100, 4096, 0, 0), 0);
        ck_assert_uint_eq(g.off_members % 64, 0);
        ck_assert_uint_ge(g.off_members, sizeof(FpBlockHead));
        ck_assert_uint_eq(g.off_slots, g.off_members + 3 * 64);
        ck_assert_uint_eq(g.size, g.off_slots + 5 * 64);
        ck_assert_uint_eq(g.nbuckets, 0);
        ck_assert_int_eq(fp_geom(&g, 5, 3, 100, 4096, FP_ORDERED, 0), 0);
        ck_assert_uint_eq(g.nbuckets, 16);             /* a power of two, at least twice the slots */
        ck_assert_uint_eq(g.off_heap, g.off_slots + 5 * 64);
        ck_assert_uint_eq(g.off_buckets % 64, 0);
        ck_assert_uint_ge(g.off_buckets, g.off_heap + 5 * 4);
        ck_assert_uint_ge(g.size, g.off_buckets + 16 * 4);
        ck_assert_uint_eq(g.size % 64, 0);
        ck_assert_int_eq(fp_geom(&g, FP_SLOTS_MAX, FP_MEMBERS_MAX, 1, 1, FP_ORDERED, 0), 0);
        ck_assert_uint_eq(g.nbuckets, 2 * FP_SLOTS_MAX);
}
END_TEST

START_TEST(full_cycle) {
        Blk b;
        uint32_t s, idx;

        mk(&b, 3, 4, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        ck_assert_uint_eq(POOL(&b).n_members, 2);
        ck_assert_uint_eq(POOL(&b).n_producers, 1);
        ck_assert_uint_eq(POOL(&b).n_consumers, 1);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 3);
        s = acquire(&b, 1, -1);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 2);
        ck_assert_uint_eq(POOL(&b).count[FP_WRITING], 1);
        ck_assert_uint_eq(fp_member(&b.f, 1)->n_held, 1);
        ck_assert_int_eq(publish1(&b, 1, s, 5, false, 0), 0);
        ck_assert_uint_eq(POOL(&b).count[FP_WRITING], 0);
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 1);
        ck_assert_uint_eq(fp_slot(&b.f, s)->holder, 0);
        ck_assert_uint_eq(fp_slot(&b.f, s)->nbytes, 5);
        ck_assert_uint_eq(fp_member(&b.f, 1)->n_held, 0);
        ck_assert_int_eq(consume(&b, 2, &idx), 0);     /* unordered, no seq: the publish counter */
        ck_assert_uint_eq(idx, s);
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 0);
        ck_assert_uint_eq(POOL(&b).count[FP_READING], 1);
        ck_assert_int_eq(release1(&b, 2, idx, false), 0);
        ck_assert_uint_eq(POOL(&b).count[FP_READING], 0);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 3);
        ck_assert_uint_eq(STATS(&b).acquired, 1);
        ck_assert_uint_eq(STATS(&b).published, 1);
        ck_assert_uint_eq(STATS(&b).consumed, 1);
        ck_assert_uint_eq(STATS(&b).bytes_published, 5);
        ck_assert_uint_eq(STATS(&b).bytes_consumed, 5);
        ck_assert_uint_eq(fp_slot(&b.f, s)->since_usec, b.f.now);
        ck_assert_uint_ge(fp_head(&b.f)->undo.steps, 6);
        ck_assert_uint_eq(fp_head(&b.f)->undo.n, 0);
        /* the free list is LIFO: the slot just freed comes first */
        ck_assert_uint_eq(acquire(&b, 1, -1), s);
        leave(&b, 1);
        leave(&b, 2);
        ck_assert_uint_eq(POOL(&b).n_members, 0);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 3);
        free(b.mem);
}
END_TEST

START_TEST(roles_and_holders_are_enforced) {
        Blk b;
        uint32_t s, v[1], nope = 7;
        size_t n, bad;

        mk(&b, 2, 4, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_PRODUCER);
        join(&b, 3, ROLE_CONSUMER);
        join(&b, 4, ROLE_ADMIN);
        ck_assert_int_eq(take(&b, 3, FP_WAIT_ACQUIRE, 1, -1, v, &n), -EPERM);
        ck_assert_int_eq(take(&b, 1, FP_WAIT_CONSUME, 1, -1, v, &n), -EPERM);
        ck_assert_int_eq(take(&b, 4, FP_WAIT_CONSUME, 1, -1, v, &n), -EPERM);
        ck_assert_int_eq(end(&b, 3), -EPERM);
        ck_assert_int_eq(publish1(&b, 3, 0, 1, false, 0), -EPERM);
        s = acquire(&b, 1, -1);
        ck_assert_int_eq(publish1(&b, 2, s, 1, false, 0), -ENOENT);
        ck_assert_int_eq(release1(&b, 2, s, false), -ENOENT);
        ck_assert_int_eq(release1(&b, 3, 99, false), -ENOENT);
        ck_assert_int_eq(publish1(&b, 1, s, 101, false, 0), -EINVAL);   /* over the slot size */
        ck_assert_int_eq(release1(&b, 1, s, true), -EINVAL);            /* requeue of a slot being written */
        ck_assert_int_eq(fp_release(tick(&b), 3, &nope, 1, false, &bad), -ENOENT);
        ck_assert_uint_eq(POOL(&b).count[FP_WRITING], 1);
        /* a producer gives a slot back unpublished */
        ck_assert_int_eq(release1(&b, 1, s, false), 0);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 2);
        ck_assert_int_eq(consume(&b, 3, NULL), -2);
        free(b.mem);
}
END_TEST

START_TEST(exhaustion_and_publish_order) {
        Blk b;
        uint32_t s[3], v[1];
        size_t n;

        mk(&b, 3, 2, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        for (int i = 0; i < 3; i++)
                s[i] = acquire(&b, 1, -1);
        ck_assert_int_eq(take(&b, 1, FP_WAIT_ACQUIRE, 1, -1, v, &n), -EAGAIN);
        ck_assert_uint_eq(n, 0);
        publish(&b, 1, s[2], 20);
        publish(&b, 1, s[0], 0);
        publish(&b, 1, s[1], 10);
        ck_assert_int_eq(consume(&b, 2, NULL), 20);
        ck_assert_int_eq(consume(&b, 2, NULL), 0);
        ck_assert_int_eq(consume(&b, 2, NULL), 10);
        ck_assert_int_eq(consume(&b, 2, NULL), -2);
        free(b.mem);
}
END_TEST

START_TEST(ordered_delivers_by_seq_and_refuses_duplicates) {
        Blk b;
        uint32_t a, s1, c, d, idx;

        mk(&b, 4, 2, FP_ORDERED | FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        a = acquire(&b, 1, -1);
        s1 = acquire(&b, 1, -1);
        c = acquire(&b, 1, -1);
        d = acquire(&b, 1, -1);
        ck_assert_uint_eq(POOL(&b).n_undeclared, 4);
        ck_assert_int_eq(publish1(&b, 1, a, 1, false, 0), -EINVAL);     /* needs a seq */
        publish(&b, 1, a, 2);
        publish(&b, 1, s1, 1);
        ck_assert_uint_eq(POOL(&b).order_len, 2);
        ck_assert_uint_eq(POOL(&b).n_undeclared, 2);
        ck_assert_int_eq(publish1(&b, 1, c, 1, true, 2), -EINVAL);      /* seq 2 is ready */
        ck_assert_int_eq(consume(&b, 2, NULL), -2);                       /* waits for exactly seq 0 */
        ck_assert_uint_eq(fp_lowest_unpublished(&b.f), 0);
        publish(&b, 1, c, 0);
        ck_assert_uint_eq(fp_lowest_unpublished(&b.f), 3);
        ck_assert_int_eq(consume(&b, 2, &idx), 0);
        ck_assert_uint_eq(POOL(&b).next_seq, 1);
        ck_assert_int_eq(release1(&b, 2, idx, false), 0);
        ck_assert_int_eq(publish1(&b, 1, d, 1, true, 0), -EINVAL);      /* seq 0 was delivered */
        ck_assert_int_eq(consume(&b, 2, NULL), 1);
        ck_assert_int_eq(consume(&b, 2, NULL), 2);
        ck_assert_int_eq(consume(&b, 2, NULL), -2);
        publish(&b, 1, d, 4);                                             /* 3 missing: waits */
        ck_assert_int_eq(consume(&b, 2, NULL), -2);
        free(b.mem);
}
END_TEST

START_TEST(ordered_end_skips_gaps_and_restarts_seqs) {
        Blk b;
        uint32_t idx;

        mk(&b, 4, 2, FP_ORDERED | FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        publish(&b, 1, acquire(&b, 1, 0), 0);
        publish(&b, 1, acquire(&b, 1, 2), 2);          /* seq 1 never comes (its producer died) */
        ck_assert_int_eq(consume(&b, 2, &idx), 0);
        ck_assert_int_eq(release1(&b, 2, idx, false), 0);
        ck_assert_int_eq(consume(&b, 2, NULL), -2);
        ck_assert_int_eq(end(&b, 1), 0);
        ck_assert_uint_eq(POOL(&b).stream, 1);
        ck_assert_uint_eq(POOL(&b).next_seq, 0);
        ck_assert_uint_eq(STATS(&b).streams_ended, 1);
        ck_assert_int_eq(consume(&b, 2, &idx), 2);     /* the ended stream drains over its gap */
        ck_assert_int_eq(release1(&b, 2, idx, false), 0);
        ck_assert_int_eq(consume(&b, 2, NULL), -1);    /* then its end, once */
        ck_assert_int_eq(consume(&b, 2, NULL), -2);
        publish(&b, 1, acquire(&b, 1, 0), 0);          /* the next stream starts at 0 again */
        ck_assert_int_eq(consume(&b, 2, NULL), 0);
        free(b.mem);
}
END_TEST

/* The stream ends once every producer sent end or left. One that ended publishes into the
 * next stream before the others end (the early queue); every consumer gets one eof. */
START_TEST(stream_ends_when_every_producer_ended_or_left) {
        Blk b;
        uint32_t idx;

        mk(&b, 8, 5, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_PRODUCER);
        join(&b, 3, ROLE_CONSUMER);
        join(&b, 4, ROLE_CONSUMER);
        publish(&b, 1, acquire(&b, 1, -1), 1);
        ck_assert_int_eq(end(&b, 1), 0);
        ck_assert(fp_member_ended(&b.f, fp_member(&b.f, 1)));
        ck_assert_uint_eq(POOL(&b).n_ended, 1);
        ck_assert_uint_eq(POOL(&b).stream, 0);
        ck_assert_int_eq(end(&b, 1), 0);                /* twice counts once */
        ck_assert_uint_eq(POOL(&b).n_ended, 1);
        /* 1, already ended, starts the next stream early; 2 is still in this one */
        publish(&b, 1, acquire(&b, 1, -1), 100);
        ck_assert_uint_ne(POOL(&b).early_head, FP_NONE);
        ck_assert_uint_eq(fp_slot(&b.f, POOL(&b).early_head)->stream, 1);
        publish(&b, 2, acquire(&b, 2, -1), 2);
        ck_assert_int_eq(consume(&b, 3, &idx), 1);
        ck_assert_int_eq(release1(&b, 3, idx, false), 0);
        ck_assert_int_eq(consume(&b, 3, &idx), 2);
        ck_assert_int_eq(release1(&b, 3, idx, false), 0);
        ck_assert_int_eq(consume(&b, 3, NULL), -2);    /* 2 has not ended: no eof, no early batch */
        leave(&b, 2);                                   /* leaving counts as ending */
        ck_assert_uint_eq(POOL(&b).stream, 1);
        ck_assert_uint_eq(POOL(&b).early_head, FP_NONE);
        ck_assert(!fp_member_ended(&b.f, fp_member(&b.f, 1)));
        ck_assert_int_eq(consume(&b, 3, NULL), -1);    /* eof once per consumer ... */
        ck_assert_int_eq(consume(&b, 4, NULL), -1);
        ck_assert_int_eq(consume(&b, 3, NULL), 100);   /* ... then the next stream */
        ck_assert_int_eq(consume(&b, 4, NULL), -2);
        ck_assert_uint_eq(STATS(&b).streams_ended, 1);
        /* a consumer that comes after the end starts with the next stream: no eof for it */
        ck_assert_int_eq(end(&b, 1), 0);
        ck_assert_uint_eq(POOL(&b).stream, 2);
        join(&b, 5, ROLE_CONSUMER);
        ck_assert_uint_eq(fp_member(&b.f, 5)->stream, 2);
        ck_assert_int_eq(consume(&b, 5, NULL), -2);
        ck_assert_int_eq(consume(&b, 4, NULL), -1);
        ck_assert_int_eq(consume(&b, 4, NULL), -2);
        free(b.mem);
}
END_TEST

/* A consumer that joins while an ended stream's batches are still ready reads them, then
 * that stream's end. */
START_TEST(late_consumer_reads_an_ended_streams_batches) {
        Blk b;

        mk(&b, 4, 3, FP_ORDERED);
        join(&b, 1, ROLE_PRODUCER);
        publish(&b, 1, acquire(&b, 1, -1), 0);
        publish(&b, 1, acquire(&b, 1, -1), 1);
        ck_assert_int_eq(end(&b, 1), 0);
        join(&b, 2, ROLE_CONSUMER);
        ck_assert_uint_eq(fp_member(&b.f, 2)->stream, 0);
        ck_assert_int_eq(consume(&b, 2, NULL), 0);
        ck_assert_int_eq(consume(&b, 2, NULL), 1);
        ck_assert_int_eq(consume(&b, 2, NULL), -1);
        ck_assert_int_eq(consume(&b, 2, NULL), -2);
        free(b.mem);
}
END_TEST

START_TEST(dying_consumer_requeues_to_front) {
        Blk b;
        uint32_t w;

        mk(&b, 4, 3, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        join(&b, 3, ROLE_CONSUMER);
        publish(&b, 1, acquire(&b, 1, -1), 1);
        publish(&b, 1, acquire(&b, 1, -1), 2);
        w = acquire(&b, 1, -1);                         /* being written */
        ck_assert_int_eq(consume(&b, 2, NULL), 1);
        leave(&b, 2);
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 2);
        ck_assert_int_eq(consume(&b, 3, NULL), 1);     /* the requeued batch comes first */
        ck_assert_int_eq(consume(&b, 3, NULL), 2);
        leave(&b, 1);                                   /* a slot being written is discarded */
        ck_assert_uint_eq(fp_slot(&b.f, w)->state, FP_FREE);
        ck_assert_uint_eq(fp_slot(&b.f, w)->holder, 0);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 2);
        leave(&b, 3);                                   /* both its batches wait for the next consumer */
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 2);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 2);
        ck_assert_uint_eq(POOL(&b).n_members, 0);
        free(b.mem);
}
END_TEST

START_TEST(dying_consumer_frees_by_policy) {
        Blk b;

        mk(&b, 2, 2, FP_ORDERED);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        publish(&b, 1, acquire(&b, 1, 0), 0);
        publish(&b, 1, acquire(&b, 1, 1), 1);
        ck_assert_int_eq(consume(&b, 2, NULL), 0);
        ck_assert_int_eq(consume(&b, 2, NULL), 1);
        leave(&b, 2);
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 2);
        ck_assert_uint_eq(POOL(&b).order_len, 0);
        free(b.mem);
}
END_TEST

START_TEST(requeue_by_consumer) {
        Blk b;
        uint32_t idx;

        mk(&b, 2, 2, FP_ORDERED | FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        publish(&b, 1, acquire(&b, 1, -1), 0);
        publish(&b, 1, acquire(&b, 1, -1), 1);
        ck_assert_int_eq(consume(&b, 2, &idx), 0);
        ck_assert_int_eq(release1(&b, 2, idx, true), 0);
        ck_assert_uint_eq(POOL(&b).ready_head, idx);
        ck_assert_int_eq(consume(&b, 2, NULL), 0);     /* back at the front, even in an ordered pool */
        ck_assert_int_eq(consume(&b, 2, NULL), 1);
        free(b.mem);
}
END_TEST

/* Several slots in one publish or release: all or none, in the order listed. */
START_TEST(many_slots_all_or_none) {
        Blk b;
        uint32_t a, s1, c, held[3], v[4];
        size_t bad, n;
        FpPublish p[3];

        mk(&b, 4, 2, FP_ORDERED | FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        a = acquire(&b, 1, -1);
        s1 = acquire(&b, 1, -1);
        c = acquire(&b, 1, -1);
        p[0] = (FpPublish){ .slot = s1, .nbytes = 5, .has_seq = true, .seq = 1 };
        p[1] = (FpPublish){ .slot = a, .nbytes = 6, .has_seq = true, .seq = 0 };
        p[2] = (FpPublish){ .slot = c, .nbytes = 7, .has_seq = true, .seq = 1 };
        /* seq 1 twice: refused, nothing published, the bad entry named */
        ck_assert_int_eq(fp_publish(tick(&b), 1, p, 3, &bad), -EINVAL);
        ck_assert_uint_eq(bad, 2);
        ck_assert_uint_eq(POOL(&b).count[FP_WRITING], 3);
        check(&b.f);
        /* a slot twice */
        p[2].slot = s1;
        p[2].seq = 2;
        ck_assert_int_eq(fp_publish(tick(&b), 1, p, 3, &bad), -ENOENT);
        ck_assert_uint_eq(bad, 2);
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 0);
        p[2].slot = c;
        ck_assert_int_eq(fp_publish(tick(&b), 1, p, 3, &bad), 0);
        check(&b.f);
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 3);
        ck_assert_uint_eq(STATS(&b).bytes_published, 18);
        /* a consume of many stops at its max, in seq order */
        ck_assert_int_eq(take(&b, 2, FP_WAIT_CONSUME, 2, -1, v, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(v[0], a);
        ck_assert_uint_eq(v[1], s1);
        ck_assert_int_eq(take(&b, 2, FP_WAIT_CONSUME, 4, -1, &v[2], &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(v[2], c);
        memcpy(held, v, sizeof(held));
        /* release: a slot not held makes the whole request fail */
        held[1] = 3;
        ck_assert_int_eq(fp_release(tick(&b), 2, held, 3, false, &bad), -ENOENT);
        ck_assert_uint_eq(bad, 1);
        ck_assert_uint_eq(POOL(&b).count[FP_READING], 3);
        held[1] = s1;
        /* requeued in the order listed: first listed, first consumed again */
        ck_assert_int_eq(fp_release(tick(&b), 2, held, 3, true, &bad), 0);
        check(&b.f);
        ck_assert_int_eq(consume(&b, 2, NULL), 0);
        ck_assert_int_eq(consume(&b, 2, NULL), 1);
        ck_assert_int_eq(consume(&b, 2, NULL), 2);
        free(b.mem);
}
END_TEST

/* A consume of many stops before the batch that would take its costs over the budget. */
START_TEST(consume_stops_at_its_budget) {
        Blk b;
        uint32_t cost[4] = { 10, 10, 50, 10 }, v[4];
        size_t n;

        mk(&b, 4, 2, 0);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        for (uint32_t i = 0; i < 4; i++)
                publish(&b, 1, acquire(&b, 1, -1), i);
        b.f.cost = cost;
        b.f.cost_each = 5;
        b.f.budget = 40;                                /* 15 + 15 fits, + 55 does not */
        ck_assert_int_eq(take(&b, 2, FP_WAIT_CONSUME, 4, -1, v, &n), 0);
        ck_assert_uint_eq(n, 2);
        b.f.budget = 1;                                 /* the first is always taken */
        ck_assert_int_eq(take(&b, 2, FP_WAIT_CONSUME, 4, -1, v, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_uint_eq(v[0], 2);
        free(b.mem);
}
END_TEST

/* --- the last free slot of an ordered pool -------------------------------------------- */

/* A producer dies before publishing seq 0; another fills the pool with the seqs after it.
 * The last free slot is kept for seq 0, so that its replacement gets one and the stream
 * goes on; a producer waiting with a later seq lets the replacement behind it pass. */
START_TEST(ordered_pool_keeps_a_slot_for_the_lowest_missing_seq) {
        Blk b;
        uint32_t v[1], idx;
        size_t n;

        mk(&b, 4, 4, FP_ORDERED | FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_PRODUCER);
        join(&b, 3, ROLE_CONSUMER);
        (void)acquire(&b, 1, -1);                       /* says no seq: it may be writing 0 */
        for (int seq = 1; seq <= 3; seq++)
                publish(&b, 2, acquire(&b, 2, seq), (uint64_t)seq);
        ck_assert_int_eq(take(&b, 2, FP_WAIT_ACQUIRE, 1, 4, v, &n), -EAGAIN);   /* none free */
        wait(&b, 2, FP_WAIT_ACQUIRE, 1, 4);
        join(&b, 4, ROLE_PRODUCER);                     /* the replacement, queued behind 2 */
        wait(&b, 4, FP_WAIT_ACQUIRE, 1, 0);
        b.log.n = 0;
        leave(&b, 1);                                   /* dies without publishing 0 */
        ck_assert_uint_eq(fp_lowest_unpublished(&b.f), 0);
        ck_assert_uint_eq(b.log.n, 1);                  /* the freed slot is kept for 0 ... */
        ck_assert_uint_eq(b.log.v[0].id, 4);            /* ... and goes to the one that writes it */
        ck_assert_uint_eq(b.log.v[0].n, 1);
        ck_assert(waiting(&b, 2));
        ck_assert_int_eq(fp_slot(&b.f, b.log.v[0].first)->declared, 0);
        publish(&b, 4, b.log.v[0].first, 0);
        for (long seq = 0; seq <= 3; seq++) {
                ck_assert_int_eq(consume(&b, 3, &idx), seq);
                ck_assert_int_eq(release1(&b, 3, idx, false), 0);
        }
        ck_assert_uint_eq(b.log.n, 2);                  /* then seq 4 got one */
        ck_assert_uint_eq(b.log.v[1].id, 2);
        ck_assert(!waiting(&b, 2));
        ck_assert_uint_eq(fp_lowest_unpublished(&b.f), 4);
        ck_assert_int_eq(take(&b, 4, FP_WAIT_ACQUIRE, 1, 9, v, &n), 0);   /* three free: no reason to keep one */
        free(b.mem);
}
END_TEST

/* Only a producer that says its seq is held back: one that says nothing may be writing
 * the missing seq itself, and so may anyone while it does. */
START_TEST(slot_kept_only_while_nobody_may_write_the_gap) {
        Blk b;
        uint32_t s0, s, v[1];
        size_t n;

        mk(&b, 3, 2, FP_ORDERED | FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_PRODUCER);
        s0 = acquire(&b, 1, -1);                        /* no seq said: it may be writing 0 */
        publish(&b, 2, acquire(&b, 2, 1), 1);
        s = acquire(&b, 2, 2);                          /* the last slot: allowed */
        ck_assert_int_eq(release1(&b, 2, s, false), 0);
        ck_assert_int_eq(release1(&b, 1, s0, false), 0);        /* nobody may write 0 now */
        (void)acquire(&b, 2, 2);                        /* two free: fine */
        ck_assert_int_eq(take(&b, 2, FP_WAIT_ACQUIRE, 1, 3, v, &n), -EBUSY);   /* the last one is 0's */
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 1);
        s = acquire(&b, 1, 0);                          /* 0 itself takes it */
        ck_assert_int_eq(release1(&b, 1, s, false), 0);
        (void)acquire(&b, 2, -1);                       /* saying nothing still takes it */
        ck_assert_uint_eq(POOL(&b).count[FP_FREE], 0);
        free(b.mem);
}
END_TEST

/* A producer that declared the missing seq is writing it: the last slot is not kept. One
 * that declared it and then ended does not count: it publishes into the next stream. */
START_TEST(slot_kept_unless_the_gap_is_being_written) {
        Blk b;
        uint32_t v[1];
        size_t n;

        mk(&b, 3, 3, FP_ORDERED);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_PRODUCER);
        join(&b, 3, ROLE_PRODUCER);
        (void)acquire(&b, 1, 0);                        /* writes 0 */
        (void)acquire(&b, 2, 1);
        ck_assert_int_eq(take(&b, 2, FP_WAIT_ACQUIRE, 1, 5, v, &n), 0);
        ck_assert_int_eq(release1(&b, 2, v[0], false), 0);
        ck_assert_int_eq(end(&b, 1), 0);                /* 1 ended: its slot is for stream 1 */
        ck_assert_int_eq(take(&b, 2, FP_WAIT_ACQUIRE, 1, 5, v, &n), -EBUSY);
        /* an ended producer is held back even for the lowest seq: that seq is this stream's */
        ck_assert_int_eq(take(&b, 1, FP_WAIT_ACQUIRE, 1, 0, v, &n), -EBUSY);
        ck_assert_int_eq(take(&b, 3, FP_WAIT_ACQUIRE, 1, 0, v, &n), 0);
        free(b.mem);
}
END_TEST

/* --- waiters ------------------------------------------------------------------------------ */

START_TEST(waiters_first_come_first_served) {
        Blk b;
        uint32_t s, v[FP_MANY_MAX];

        mk(&b, 1, 4, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_PRODUCER);
        join(&b, 3, ROLE_PRODUCER);
        join(&b, 4, ROLE_CONSUMER);
        s = acquire(&b, 1, -1);
        wait(&b, 4, FP_WAIT_CONSUME, 1, -1);
        wait(&b, 2, FP_WAIT_ACQUIRE, 1, -1);
        wait(&b, 3, FP_WAIT_ACQUIRE, 1, -1);
        ck_assert_uint_eq(POOL(&b).n_waiters[FP_WAIT_ACQUIRE], 2);
        ck_assert_uint_eq(POOL(&b).n_waiters[FP_WAIT_CONSUME], 1);
        ck_assert_uint_eq(POOL(&b).wq_head[FP_WAIT_ACQUIRE], 2);
        ck_assert_uint_eq(POOL(&b).wq_tail[FP_WAIT_ACQUIRE], 3);
        publish(&b, 1, s, 5);
        ck_assert_uint_eq(b.log.n, 1);                  /* the consumer got the batch */
        ck_assert_uint_eq(b.log.v[0].id, 4);
        ck_assert_uint_eq(b.log.v[0].n, 1);
        ck_assert_uint_eq(b.log.v[0].first, s);
        ck_assert_uint_eq(fp_served_slots(&b.f, 4, v), 1);
        ck_assert_uint_eq(v[0], s);
        ck_assert_uint_eq(fp_slot(&b.f, s)->seq, 5);
        ck_assert(!waiting(&b, 4));
        ck_assert_int_eq(release1(&b, 4, s, false), 0);
        ck_assert_uint_eq(b.log.n, 2);
        ck_assert_uint_eq(b.log.v[1].id, 2);            /* 2 asked first */
        ck_assert_uint_eq(fp_slot(&b.f, s)->holder, 2);
        ck_assert(waiting(&b, 3));
        leave(&b, 2);                                   /* 2 dies writing: 3 gets the slot */
        ck_assert_uint_eq(b.log.n, 3);
        ck_assert_uint_eq(b.log.v[2].id, 3);
        ck_assert_uint_eq(fp_slot(&b.f, s)->holder, 3);
        ck_assert_uint_eq(POOL(&b).n_waiters[FP_WAIT_ACQUIRE], 0);
        ck_assert_uint_eq(POOL(&b).wq_head[FP_WAIT_ACQUIRE], 0);
        free(b.mem);
}
END_TEST

START_TEST(stream_end_wakes_every_waiting_consumer) {
        Blk b;

        mk(&b, 2, 3, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        join(&b, 3, ROLE_CONSUMER);
        wait(&b, 2, FP_WAIT_CONSUME, 1, -1);
        wait(&b, 3, FP_WAIT_CONSUME, 1, -1);
        ck_assert_int_eq(end(&b, 1), 0);
        ck_assert_uint_eq(b.log.n, 2);
        ck_assert_uint_eq(b.log.v[0].id, 2);
        ck_assert_uint_eq(b.log.v[0].n, 0);             /* end of stream */
        ck_assert_uint_eq(b.log.v[0].first, FP_NONE);
        ck_assert_uint_eq(b.log.v[1].id, 3);
        ck_assert_uint_eq(b.log.v[1].n, 0);
        ck_assert_uint_eq(fp_member(&b.f, 2)->stream, 1);
        ck_assert_uint_eq(fp_member(&b.f, 3)->stream, 1);
        ck_assert_int_eq(consume(&b, 2, NULL), -2);    /* no second eof */
        free(b.mem);
}
END_TEST

/* A sleeper costs its waker a system call: fp_wake_wait() yields its CPU up to the budget
 * it is given first, and says how it ended (the yields it took, or UINT_MAX: it slept). */
static void *wake_later(void *arg) {
        Blk *b = arg;
        struct timespec ts = { 0, 2 * 1000 * 1000 };

        nanosleep(&ts, NULL);
        fp_wake(&b->f, 2);
        return NULL;
}

START_TEST(a_waiter_yields_its_budget_then_sleeps) {
        Blk b;
        unsigned yields;
        uint32_t v;
        pthread_t t;

        mk(&b, 1, 2, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        v = atomic_load(&fp_member(&b.f, 2)->wake) & ~1u;
        fp_wake(&b.f, 2);                               /* woken before it waits: no yield */
        yields = 50;
        ck_assert_int_eq(fp_wake_wait(&b.f, 2, v, 1000, &yields), 0);
        ck_assert_uint_eq(yields, 0);
        v += 2;
        yields = 5;                                     /* nobody wakes it: 5 yields, then asleep */
        ck_assert_int_eq(fp_wake_wait(&b.f, 2, v, 1, &yields), -ETIMEDOUT);
        ck_assert_uint_eq(yields, UINT_MAX);
        ck_assert_uint_eq(atomic_load(&fp_member(&b.f, 2)->wake), v | 1);       /* the sleep bit: its waker calls */
        atomic_fetch_and(&fp_member(&b.f, 2)->wake, ~1u);
        ck_assert_int_eq(pthread_create(&t, NULL, wake_later, &b), 0);
        yields = 0;                                     /* no budget: asleep at once, woken by the call */
        ck_assert_int_eq(fp_wake_wait(&b.f, 2, v, 5000, &yields), 0);
        ck_assert_uint_eq(yields, UINT_MAX);
        ck_assert_uint_eq(atomic_load(&fp_member(&b.f, 2)->wake) & ~1u, v + 2);
        pthread_join(t, NULL);
        free(b.mem);
}
END_TEST

/* The waits are counted while they last, by kind, in O(1): the ended ones' total plus
 * n * now minus the sum of the starts of those going on. */
START_TEST(waits_count_while_they_last) {
        Blk b;
        uint64_t t0, t1, t2, t3;

        mk(&b, 1, 3, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        join(&b, 3, ROLE_CONSUMER);
        wait(&b, 2, FP_WAIT_CONSUME, 1, -1);
        t0 = b.f.now;
        wait(&b, 3, FP_WAIT_CONSUME, 1, -1);
        t1 = b.f.now;
        ck_assert_uint_eq(fp_waited_usec(&b.f, FP_WAIT_CONSUME, t1 + 1000), (t1 + 1000 - t0) + 1000);
        ck_assert_uint_eq(fp_waited_usec(&b.f, FP_WAIT_ACQUIRE, t1 + 1000), 0);
        ck_assert_int_eq(publish1(&b, 1, acquire(&b, 1, -1), 77, true, 0), 0);
        t2 = b.f.now;
        ck_assert_uint_eq(b.log.n, 1);                  /* 2 ended its wait; 3's goes on */
        ck_assert_uint_eq(STATS(&b).wait_usec[FP_WAIT_CONSUME], t2 - t0);
        ck_assert_uint_eq(fp_waited_usec(&b.f, FP_WAIT_CONSUME, t2 + 5000), (t2 - t0) + (t2 + 5000 - t1));
        ck_assert_uint_eq(STATS(&b).bytes_consumed, 77);
        unwait(&b, 3);
        t3 = b.f.now;
        ck_assert_uint_eq(b.log.n, 1);
        ck_assert_uint_eq(fp_waited_usec(&b.f, FP_WAIT_CONSUME, UINT64_MAX / 2), (t2 - t0) + (t3 - t1));
        ck_assert_uint_eq(POOL(&b).waiting_since[FP_WAIT_CONSUME], 0);
        unwait(&b, 3);                                  /* not waiting: nothing */
        ck_assert_uint_eq(fp_waited_usec(&b.f, FP_WAIT_CONSUME, 0), (t2 - t0) + (t3 - t1));
        leave(&b, 3);
        ck_assert_uint_eq(POOL(&b).n_consumers, 1);
        free(b.mem);
}
END_TEST

/* A many-slot waiter is handed, in one serve, as many as can be taken at that moment, up
 * to its max: never more. */
START_TEST(waiter_takes_up_to_its_max) {
        Blk b;
        FpPublish p[4];
        uint32_t held[4], v[FP_MANY_MAX];
        size_t bad;

        mk(&b, 4, 3, FP_REQUEUE_ON_DEATH);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        join(&b, 3, ROLE_PRODUCER);
        for (int i = 0; i < 4; i++) {
                held[i] = acquire(&b, 1, -1);
                p[i] = (FpPublish){ .slot = held[i], .nbytes = 1 };
        }
        wait(&b, 2, FP_WAIT_CONSUME, 3, -1);
        wait(&b, 3, FP_WAIT_ACQUIRE, 8, -1);
        ck_assert_int_eq(fp_publish(tick(&b), 1, p, 4, &bad), 0);
        check(&b.f);
        ck_assert_uint_eq(b.log.n, 1);
        ck_assert_uint_eq(b.log.v[0].id, 2);
        ck_assert_uint_eq(b.log.v[0].n, 3);            /* 4 ready, max 3 */
        ck_assert_uint_eq(fp_served_slots(&b.f, 2, v), 3);
        for (int i = 0; i < 3; i++)
                ck_assert_uint_eq(v[i], held[i]);       /* in publish order */
        ck_assert_uint_eq(POOL(&b).count[FP_READING], 3);
        ck_assert_uint_eq(POOL(&b).count[FP_READY], 1);
        ck_assert(waiting(&b, 3));                      /* nothing free yet */
        ck_assert_int_eq(fp_release(tick(&b), 2, held, 3, false, &bad), 0);
        check(&b.f);
        ck_assert_uint_eq(b.log.n, 2);
        ck_assert_uint_eq(b.log.v[1].id, 3);
        ck_assert_uint_eq(b.log.v[1].n, 3);            /* every free slot, under its max of 8 */
        ck_assert_uint_eq(POOL(&b).count[FP_WRITING], 3);
        ck_assert_uint_eq(POOL(&b).n_waiters[0] + POOL(&b).n_waiters[1], 0);
        free(b.mem);
}
END_TEST

/* A waiter served with slots it held before its wait reports only the new ones. */
START_TEST(served_slots_are_the_new_ones) {
        Blk b;
        uint32_t first, v[FP_MANY_MAX];

        mk(&b, 3, 2, 0);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        publish(&b, 1, acquire(&b, 1, -1), 0);
        ck_assert_int_eq(consume(&b, 2, &first), 0);
        wait(&b, 2, FP_WAIT_CONSUME, 2, -1);
        ck_assert_uint_eq(fp_member(&b.f, 2)->wheld, 1);
        publish(&b, 1, acquire(&b, 1, -1), 1);
        ck_assert_uint_eq(b.log.n, 1);
        ck_assert_uint_eq(b.log.v[0].n, 1);
        ck_assert_uint_eq(fp_served_slots(&b.f, 2, v), 1);
        ck_assert_uint_ne(v[0], first);
        ck_assert_uint_eq(fp_slot(&b.f, v[0])->seq, 1);
        free(b.mem);
}
END_TEST

START_TEST(unwait_leaves_the_queue_quietly) {
        Blk b;

        mk(&b, 1, 4, 0);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        join(&b, 3, ROLE_CONSUMER);
        join(&b, 4, ROLE_CONSUMER);
        wait(&b, 2, FP_WAIT_CONSUME, 1, -1);
        wait(&b, 3, FP_WAIT_CONSUME, 1, -1);
        wait(&b, 4, FP_WAIT_CONSUME, 1, -1);
        unwait(&b, 3);                                  /* from the middle */
        ck_assert_uint_eq(POOL(&b).n_waiters[FP_WAIT_CONSUME], 2);
        ck_assert_uint_eq(fp_member(&b.f, 2)->wnext, 4);
        ck_assert_uint_eq(fp_member(&b.f, 4)->wprev, 2);
        unwait(&b, 2);                                  /* the head */
        ck_assert_uint_eq(POOL(&b).wq_head[FP_WAIT_CONSUME], 4);
        publish(&b, 1, acquire(&b, 1, -1), 0);
        ck_assert_uint_eq(b.log.n, 1);
        ck_assert_uint_eq(b.log.v[0].id, 4);
        ck_assert(!waiting(&b, 2));
        ck_assert(!waiting(&b, 3));
        wait(&b, 3, FP_WAIT_CONSUME, 1, -1);            /* and may wait again */
        leave(&b, 3);                                   /* leaving ends the wait */
        ck_assert_uint_eq(POOL(&b).n_waiters[FP_WAIT_CONSUME], 0);
        ck_assert_uint_eq(b.log.n, 1);
        free(b.mem);
}
END_TEST

/* A wait that no take of its member could answer is refused, as the take would be: queued,
 * it would stop its queue, first come first served, for everyone behind it. */
START_TEST(wait_of_the_wrong_role_is_refused) {
        Blk b;

        mk(&b, 1, 3, 0);
        join(&b, 1, ROLE_PRODUCER);
        join(&b, 2, ROLE_CONSUMER);
        join(&b, 3, ROLE_ADMIN);
        (void)acquire(&b, 1, -1);
        ck_assert_int_eq(fp_wait(tick(&b), 2, FP_WAIT_ACQUIRE, 1, -1, false, NULL), -EPERM);
        ck_assert_int_eq(fp_wait(tick(&b), 1, FP_WAIT_CONSUME, 1, -1, false, NULL), -EPERM);
        ck_assert_int_eq(fp_wait(tick(&b), 3, FP_WAIT_CONSUME, 1, -1, false, NULL), -EPERM);
        check(&b.f);
        ck_assert(!waiting(&b, 1) && !waiting(&b, 2) && !waiting(&b, 3));
        wait(&b, 2, FP_WAIT_CONSUME, 1, -1);
        publish(&b, 1, 0, 0);
        ck_assert_uint_eq(b.log.n, 1);
        ck_assert_uint_eq(b.log.v[0].id, 2);
        free(b.mem);
}
END_TEST

/* --- the undo log itself --------------------------------------------------------------- */

START_TEST(lock_steal_and_bad_logs) {
        Blk b;
        Fp d;
        uint32_t owner = 0;
        FpUndoLog *u;
        uint8_t *copy;
        const size_t lo = offsetof(FpBlockHead, pool);

        mk(&b, 2, 3, 0);
        fp_unlock(&b.f);
        b.f.self = 3;
        ck_assert_int_eq(fp_trylock(&b.f, NULL), 0);
        d = b.f;
        d.self = FP_DAEMON;
        ck_assert_int_eq(fp_trylock(&d, &owner), -ENOLCK);
        ck_assert_uint_eq(owner, 3);
        ck_assert_int_eq(fp_steal(&d, 2), -ENOLCK);    /* 2 does not hold it */
        ck_assert_uint_eq(atomic_load(&fp_head(&d)->lock.word), 3);
        u = &fp_head(&d)->undo;
        /* newest first: the oldest value of a field stored twice wins */
        u->e[0] = (FpUndo){ .off = (uint32_t)(lo + offsetof(FpPool, n_members)), .width = 4, .old = 7 };
        u->e[1] = (FpUndo){ .off = (uint32_t)(lo + offsetof(FpPool, n_members)), .width = 4, .old = 9 };
        u->e[2] = (FpUndo){ .off = (uint32_t)(lo + offsetof(FpPool, stream)), .width = 8, .old = 1ull << 40 };
        u->n = 3;
        ck_assert_int_eq(fp_steal(&d, 3), 0);
        ck_assert_uint_eq(atomic_load(&fp_head(&d)->lock.word) & FP_LOCK_OWNER, FP_DAEMON);
        ck_assert_uint_eq(u->n, 0);
        ck_assert_uint_eq(fp_head(&d)->pool.n_members, 7);
        ck_assert_uint_eq(fp_head(&d)->pool.stream, 1ull << 40);
        /* a bad entry anywhere: nothing undone */
        copy = malloc(b.g.size);
        ck_assert_ptr_nonnull(copy);
        const FpUndo bad[] = {
                { .off = 0, .width = 4 },                                       /* the header */
                { .off = (uint32_t)offsetof(FpBlockHead, lock), .width = 4 },   /* the lock */
                { .off = (uint32_t)offsetof(FpBlockHead, undo), .width = 4 },   /* the log */
                { .off = (uint32_t)lo, .width = 3 },
                { .off = (uint32_t)lo + 4, .width = 8 },                        /* misaligned */
                { .off = (uint32_t)b.g.size - 4, .width = 8 },                  /* past the end */
                { .off = (uint32_t)b.g.size, .width = 4 },
                { .off = UINT32_MAX - 3, .width = 4 },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                u->e[0] = (FpUndo){ .off = (uint32_t)(lo + offsetof(FpPool, n_members)), .width = 4, .old = 1 };
                u->e[1] = bad[i];
                u->e[1].old = UINT64_MAX;
                u->n = 2;
                memcpy(copy, d.mem, b.g.size);
                ck_assert_int_eq(fp_undo(&d), FP_ECORRUPT);
                ck_assert_int_eq(memcmp(copy, d.mem, b.g.size), 0);
        }
        u->n = FP_UNDO_CAP + 1;
        ck_assert_int_eq(fp_undo(&d), FP_ECORRUPT);
        u->n = 0;
        fp_head(&d)->pool.n_members = 0;
        check(&d);
        free(copy);
        free(b.mem);
}
END_TEST

/* A failed step (a broken invariant found half way) is undone before it returns. */
START_TEST(corrupt_step_is_undone) {
        Blk b;
        uint32_t v[1];
        size_t n;
        uint8_t *copy;

        mk(&b, 3, 2, 0);
        join(&b, 1, ROLE_PRODUCER);
        /* the free list's second slot claims to be ready: the take finds it after its
         * first stores */
        fp_slot(&b.f, 0)->next = 2;
        fp_slot(&b.f, 2)->prev = 0;
        copy = malloc(b.g.size);
        ck_assert_ptr_nonnull(copy);
        /* the head is checked first: make the head itself bad */
        fp_slot(&b.f, 0)->state = FP_READY;
        memcpy(copy, b.mem, b.g.size);
        ck_assert_int_eq(fp_take(tick(&b), 1, FP_WAIT_ACQUIRE, 1, -1, v, &n), FP_ECORRUPT);
        ck_assert_uint_eq(fp_head(&b.f)->undo.n, 0);
        ck_assert_int_eq(memcmp(copy + offsetof(FpBlockHead, pool), b.mem + offsetof(FpBlockHead, pool),
                                b.g.size - offsetof(FpBlockHead, pool)), 0);
        /* a holder's count too high: found after the slot is unlinked and relinked */
        fp_slot(&b.f, 0)->state = FP_FREE;
        fp_member(&b.f, 1)->n_held = 3;
        memcpy(copy, b.mem, b.g.size);
        ck_assert_int_eq(fp_take(tick(&b), 1, FP_WAIT_ACQUIRE, 1, -1, v, &n), FP_ECORRUPT);
        ck_assert_uint_eq(fp_head(&b.f)->undo.n, 0);
        ck_assert_int_eq(memcmp(copy + offsetof(FpBlockHead, pool), b.mem + offsetof(FpBlockHead, pool),
                                b.g.size - offsetof(FpBlockHead, pool)), 0);
        free(copy);
        free(b.mem);
}
END_TEST

/* A broken (stream, seq) index, found while a publish is checked, fails the publish: it
 * does not go on to link a batch into it. */
START_TEST(broken_index_fails_a_publish) {
        FpPublish e;
        size_t bad;
        uint32_t s;
        Blk b;

        mk(&b, 4, 1, FP_ORDERED);
        join(&b, 1, ROLE_PRODUCER);
        s = acquire(&b, 1, -1);
        for (uint32_t i = 0; i < b.g.nbuckets; i++)
                ((uint32_t *)(void *)(b.mem + b.g.off_buckets))[i] = 77;        /* out of range */
        e = (FpPublish){ .slot = s, .has_seq = true, .seq = 0 };
        ck_assert_int_eq(fp_publish(tick(&b), 1, &e, 1, &bad), FP_ECORRUPT);
        ck_assert_uint_eq(fp_head(&b.f)->undo.n, 0);
        ck_assert_uint_eq(fp_slot(&b.f, s)->state, FP_WRITING);
        ck_assert_uint_eq(fp_head(&b.f)->pool.order_len, 0);
        free(b.mem);
}
END_TEST

/* --- the undo harness ------------------------------------------------------------------- */

/*
 * A random run of operations by HM members. Before each operation the block is copied;
 * then the operation runs on a fresh copy with die_after = 1, 2, 3, ... until it completes
 * without dying. At each death the lock is the dead member's; the daemon's side steals it
 * and undoes the step, and the block must equal the block of the last commit before the
 * death (f->committed snapshots it), byte for byte but for the lock word and the log's
 * entries. Then fp_check() passes, the daemon reclaims the dead member, fp_check() passes,
 * the member holds nothing, and every member's state matches a model that knows only what
 * the members were told: each served wait at most its max, one end of stream per consumer
 * per stream. Now and then the run goes on from a death's repaired block.
 */

enum { HM = 5 };

typedef struct Rng {
        uint64_t s;
} Rng;

static uint32_t rnd(Rng *r) {
        /* splitmix64: a different run for every seed, the same run for one seed */
        uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return (uint32_t)((z ^ (z >> 31)) >> 32);
}

typedef enum OpKind {
        OP_JOIN,
        OP_LEAVE,
        OP_ACQUIRE,
        OP_CONSUME,
        OP_PUBLISH,
        OP_RELEASE,
        OP_END,
        OP_WAIT,
        OP_UNWAIT,
} OpKind;

typedef struct Op {
        OpKind kind;
        uint32_t id;
        Role role;
        FpWaitKind wk;
        uint32_t max;
        int64_t seq;
        bool requeue;
        size_t n;
        FpPublish pub[4];
        uint32_t slots[4];
} Op;

/* What the members know: what they were told, never read from the block. */
typedef struct Model {
        bool live[HM + 1];
        Role role[HM + 1];
        bool waiting[HM + 1];
        FpWaitKind wkind[HM + 1];
        uint32_t wmax[HM + 1];
        uint64_t stream[HM + 1];         /* a consumer's stream: the one it joined in, + its eofs */
} Model;

static int run_op(Fp *f, const Op *o, uint32_t *v, size_t *n) {
        size_t bad;

        *n = 0;
        switch (o->kind) {
        case OP_JOIN:
                return fp_join(f, o->id, o->role);
        case OP_LEAVE:
                return fp_leave(f, o->id);
        case OP_ACQUIRE:
                return fp_take(f, o->id, FP_WAIT_ACQUIRE, o->max, o->seq, v, n);
        case OP_CONSUME:
                return fp_take(f, o->id, FP_WAIT_CONSUME, o->max, -1, v, n);
        case OP_PUBLISH:
                return fp_publish(f, o->id, o->pub, o->n, &bad);
        case OP_RELEASE:
                return fp_release(f, o->id, o->slots, o->n, o->requeue, &bad);
        case OP_END:
                return fp_end(f, o->id);
        case OP_WAIT:
                return fp_wait(f, o->id, o->wk, o->max, o->seq, false, NULL);
        case OP_UNWAIT:
                return fp_unwait(f, o->id);
        }
        return -EINVAL;
}

/* The slots @id holds in @state, read from the block as the member's client knows them. */
static size_t held_in(Fp *f, uint32_t id, FpSlotState state, uint32_t *v, size_t max) {
        size_t n = 0;

        for (uint32_t i = 0; i < f->g.slots && n < max; i++)
                if (fp_slot(f, i)->holder == id && fp_slot(f, i)->state == state)
                        v[n++] = i;
        return n;
}

/* A seq an ordered producer might say: mostly the lowest missing one, which keeps the
 * stream moving; sometimes a later one, which makes gaps; in the next stream, any. */
static int64_t pick_seq(Fp *f, Rng *r, uint32_t id) {
        if (fp_member_ended(f, fp_member(f, id)))
                return rnd(r) % (2 * f->g.slots + 2);
        return (int64_t)(fp_lowest_unpublished(f) + (rnd(r) % 3 == 0 ? rnd(r) % 4 : 0));
}

/* Pick @k of the @n in @v, in a random order. */
static size_t pick_some(Rng *r, uint32_t *v, size_t n, size_t k) {
        for (size_t i = 0; i < k; i++) {
                size_t j = i + rnd(r) % (n - i);
                uint32_t t = v[i];
                v[i] = v[j];
                v[j] = t;
        }
        return k;
}

/* An operation an honest member (or the daemon, for join and leave) would do now. */
static void gen_op(Fp *f, Rng *r, const Model *md, Op *o) {
        bool ordered = f->g.flags & FP_ORDERED;
        uint32_t v[64];
        size_t n;

        *o = (Op){ .id = 1 + rnd(r) % HM };
        if (!md->live[o->id]) {
                uint32_t x = rnd(r) % 20;
                o->kind = OP_JOIN;
                o->role = x < 10 ? ROLE_PRODUCER : x < 19 ? ROLE_CONSUMER : ROLE_ADMIN;
                return;
        }
        if (md->waiting[o->id]) {
                /* a waiting member does nothing else: it is blocked in its wait */
                o->kind = rnd(r) % 5 == 0 ? OP_LEAVE : OP_UNWAIT;
                return;
        }
        if (rnd(r) % 40 == 0) {
                o->kind = OP_LEAVE;
                return;
        }
        switch (md->role[o->id]) {
        case ROLE_PRODUCER: {
                uint32_t x = rnd(r) % 100;
                n = held_in(f, o->id, FP_WRITING, v, 64);
                if (x < 45 && n > 0) {
                        o->kind = OP_PUBLISH;
                        o->n = pick_some(r, v, n, 1 + rnd(r) % (n < 4 ? n : 4));
                        for (size_t i = 0; i < o->n; i++) {
                                const FpSlot *s = fp_slot(f, v[i]);
                                /* now and then over the slot size, or without the seq it needs */
                                o->pub[i] = (FpPublish){ .slot = v[i], .nbytes = rnd(r) % 30 ? rnd(r) % 101 : 101 };
                                if (ordered) {
                                        o->pub[i].has_seq = rnd(r) % 50 != 0;
                                        o->pub[i].seq = s->declared >= 0 ? (uint64_t)s->declared
                                                                         : (uint64_t)pick_seq(f, r, o->id) + i;
                                } else if (rnd(r) % 2) {
                                        o->pub[i].has_seq = true;
                                        o->pub[i].seq = rnd(r) % 1000;
                                }
                        }
                } else if (x < 50 && n > 0) {
                        o->kind = OP_RELEASE;
                        o->n = pick_some(r, v, n, 1 + rnd(r) % (n < 4 ? n : 4));
                        memcpy(o->slots, v, o->n * sizeof(v[0]));
                } else if (x < 60) {
                        o->kind = OP_END;
                } else if (x < 75) {
                        o->kind = OP_WAIT;
                        o->wk = FP_WAIT_ACQUIRE;
                        o->max = 1 + rnd(r) % 3;
                        o->seq = ordered && rnd(r) % 2 ? pick_seq(f, r, o->id) : -1;
                } else {
                        o->kind = OP_ACQUIRE;
                        o->max = 1 + rnd(r) % 3;
                        o->seq = ordered && rnd(r) % 2 ? pick_seq(f, r, o->id) : -1;
                }
                break;
        }
        case ROLE_CONSUMER: {
                uint32_t x = rnd(r) % 100;
                n = held_in(f, o->id, FP_READING, v, 64);
                if (x < 40 && n > 0) {
                        o->kind = OP_RELEASE;
                        o->n = pick_some(r, v, n, 1 + rnd(r) % (n < 4 ? n : 4));
                        memcpy(o->slots, v, o->n * sizeof(v[0]));
                        o->requeue = rnd(r) % 4 == 0;
                } else if (x < 60) {
                        o->kind = OP_WAIT;
                        o->wk = FP_WAIT_CONSUME;
                        o->max = 1 + rnd(r) % 3;
                        o->seq = -1;
                } else {
                        o->kind = OP_CONSUME;
                        o->max = 1 + rnd(r) % 3;
                }
                break;
        }
        default:
                o->kind = rnd(r) % 2 ? OP_CONSUME : OP_LEAVE;
                o->max = 1;
                break;
        }
}

/* The serves the members were told of. */
static void model_served(Model *md, const ServedLog *l) {
        for (size_t i = 0; i < l->n; i++) {
                const Served *s = &l->v[i];
                REQUIRE(s->id >= 1 && s->id <= HM && md->live[s->id] && md->waiting[s->id],
                              "member %u served while not waiting", s->id);
                REQUIRE(s->n <= md->wmax[s->id], "member %u served %u slots, over its max of %u", s->id, s->n,
                              md->wmax[s->id]);
                if (md->wkind[s->id] == FP_WAIT_CONSUME && s->n == 0)
                        md->stream[s->id]++;    /* end of stream */
                REQUIRE(md->wkind[s->id] == FP_WAIT_CONSUME || s->n > 0, "member %u served no slot", s->id);
                md->waiting[s->id] = false;
        }
}

/* What an operation that completed told its member. */
static void model_op(Fp *f, Model *md, const Op *o, int r, size_t n) {
        uint32_t id = o->id;

        switch (o->kind) {
        case OP_JOIN:
                REQ(r == 0);
                md->live[id] = true;
                md->role[id] = o->role;
                md->waiting[id] = false;
                md->stream[id] = fp_member(f, id)->stream;      /* what its join reply says */
                break;
        case OP_LEAVE:
                REQ(r == 0);
                md->live[id] = false;
                md->waiting[id] = false;
                break;
        case OP_ACQUIRE:
                REQUIRE(r == 0 || r == -EAGAIN || r == -EBUSY, "acquire: %d", r);
                REQ(r != 0 || n > 0);
                break;
        case OP_CONSUME:
                REQUIRE(r == 0 || r == -EAGAIN || (r == -EPERM && md->role[id] != ROLE_CONSUMER), "consume: %d",
                              r);
                if (r == 0 && n == 0)
                        md->stream[id]++;
                break;
        case OP_PUBLISH:
                REQUIRE(r == 0 || r == -EINVAL, "publish: %d", r);
                break;
        case OP_RELEASE:
        case OP_END:
        case OP_UNWAIT:
                REQ(r == 0);
                if (o->kind == OP_UNWAIT)
                        md->waiting[id] = false;
                break;
        case OP_WAIT:
                REQ(r == 0);
                md->waiting[id] = true;
                md->wkind[id] = o->wk;
                md->wmax[id] = o->max;
                break;
        }
}

/* The block says what the members were told. */
static void model_check(Fp *f, const Model *md, const char *what) {
        for (uint32_t id = 1; id <= HM; id++) {
                const FpMember *m = fp_member(f, id);
                bool live = m->flags & FP_M_LIVE;

                REQUIRE(live == md->live[id], "%s: member %u: live %d, model %d", what, id, live, md->live[id]);
                if (!live)
                        continue;
                REQ(m->role == md->role[id]);
                REQUIRE((m->wmax != 0) == md->waiting[id], "%s: member %u: waiting %d, model %d", what, id,
                              m->wmax != 0, md->waiting[id]);
                if (md->role[id] == ROLE_CONSUMER)
                        REQUIRE(m->stream == md->stream[id], "%s: consumer %u reads stream %llu, was told %llu",
                                      what, id, (unsigned long long)m->stream, (unsigned long long)md->stream[id]);
        }
}

/* The state of two blocks, all but the lock word and the log's entries (a repair leaves
 * the lock with the daemon and the dead step's entries in the log, beyond its count). */
static void same_state(const uint8_t *a, const uint8_t *b, size_t size, const char *what) {
        const size_t lock = offsetof(FpBlockHead, lock), log = offsetof(FpBlockHead, undo);
        const size_t entries = log + offsetof(FpUndoLog, e), pool = offsetof(FpBlockHead, pool);

        REQUIRE(memcmp(a, b, lock) == 0, "%s: the header or control words differ", what);
        REQUIRE(memcmp(a + log, b + log, entries - log) == 0, "%s: the log's count differs", what);
        if (memcmp(a + pool, b + pool, size - pool) == 0)
                return;
        for (size_t i = pool; i < size; i++)
                REQUIRE(a[i] == b[i], "%s: byte %zu differs (%#x, last commit %#x)", what, i, a[i], b[i]);
}

static struct {
        uint8_t *last;           /* the block at the last commit */
        size_t size;
        uint32_t max_stores;     /* of one step */
        uint64_t deaths;
} H;

static void snapshot(Fp *f, uint32_t stores) {
        if (H.last)
                memcpy(H.last, f->mem, H.size);
        if (stores > H.max_stores)
                H.max_stores = stores;
}

static bool member_op(OpKind k) {
        return k != OP_JOIN && k != OP_LEAVE;
}

/* The daemon's repair of member @id, dead with the lock of block @mem: the lock stolen,
 * the step in progress undone, which must give the block @expect; then the member
 * reclaimed, each with the invariants after it, and nothing left held by it. */
static void repair(const FpGeom *g, uint8_t *mem, uint64_t now, uint32_t id, const uint8_t *expect, ServedLog *log,
                   const char *what) {
        Fp d = { .mem = mem, .g = *g, .self = FP_DAEMON, .now = now, .served = on_served, .userdata = log };

        log->n = 0;
        REQUIRE(atomic_load(&fp_head(&d)->lock.word) == id, "%s: the lock is not the dead member's", what);
        REQUIRE(fp_steal(&d, id) == 0, "%s: steal failed", what);
        same_state(mem, expect, g->size, what);
        check(&d);
        if (fp_member(&d, id)->flags & FP_M_LIVE) {
                REQUIRE(fp_leave(&d, id) == 0, "%s: reclaim failed", what);
                check(&d);
        }
        for (uint32_t i = 0; i < g->slots; i++)
                REQUIRE(fp_slot(&d, i)->holder != id, "%s: slot %u still held by the dead member", what, i);
        fp_unlock(&d);
}

static void undo_run(uint64_t seed, uint32_t flags, int steps) {
        Rng r = { seed };
        uint32_t slots = 1 + rnd(&r) % 8, v[FP_MANY_MAX];
        Model md = { 0 };
        Blk b;
        uint8_t *pre, *work, *after, *cand;
        char what[160];

        mk(&b, slots, HM, flags);
        fp_unlock(&b.f);                 /* between operations nobody holds it */
        pre = block_alloc(&b.g);
        work = block_alloc(&b.g);
        after = block_alloc(&b.g);
        cand = block_alloc(&b.g);
        H.last = block_alloc(&b.g);
        H.size = b.g.size;
        for (int step = 0; step < steps; step++) {
                static ServedLog wlog, dlog;
                Model cand_md = md, dm;
                uint32_t died = 0;
                size_t n = 0;
                Op o;
                int res;

                gen_op(&b.f, &r, &md, &o);
                b.f.now += 1000;
                memcpy(pre, b.mem, b.g.size);
                for (uint64_t k = 1;; k++) {
                        Fp w = { .mem = work, .g = b.g, .self = o.id, .now = b.f.now, .served = on_served,
                                 .userdata = &wlog, .die_after = k, .committed = snapshot };

                        memcpy(work, pre, b.g.size);
                        memcpy(H.last, pre, b.g.size);
                        wlog.n = 0;
                        REQ(fp_trylock(&w, NULL) == 0);
                        res = run_op(&w, &o, v, &n);
                        if (!w.dead)
                                break;
                        died++;
                        H.deaths++;
                        snprintf(what, sizeof(what), "seed %llu step %d op %d by %u, death after store %llu",
                                 (unsigned long long)seed, step, o.kind, o.id, (unsigned long long)k);
                        REQUIRE(res == -EOWNERDEAD, "%s: returned %d", what, res);
                        repair(&b.g, work, b.f.now + 1, o.id, H.last, &dlog, what);
                        /* what the others were told, up to the death and in the reclaim */
                        dm = md;
                        model_served(&dm, &wlog);
                        dm.live[o.id] = dm.waiting[o.id] = false;
                        model_served(&dm, &dlog);
                        model_check(&(Fp){ .mem = work, .g = b.g }, &dm, what);
                        if (member_op(o.kind) && rnd(&r) % died == 0) {
                                memcpy(cand, work, b.g.size);
                                cand_md = dm;
                        }
                }
                snprintf(what, sizeof(what), "seed %llu step %d op %d by %u", (unsigned long long)seed, step, o.kind,
                         o.id);
                check(&(Fp){ .mem = work, .g = b.g });
                /* A death right after the operation returned: nothing to undo, and the
                 * member reclaimed with whatever the operation gave it. */
                memcpy(after, work, b.g.size);
                repair(&b.g, after, b.f.now + 1, o.id, work, &dlog, what);
                dm = md;
                model_op(&(Fp){ .mem = work, .g = b.g }, &dm, &o, res, n);
                model_served(&dm, &wlog);
                dm.live[o.id] = dm.waiting[o.id] = false;
                model_served(&dm, &dlog);
                model_check(&(Fp){ .mem = after, .g = b.g }, &dm, what);
                fp_unlock(&(Fp){ .mem = work, .g = b.g });
                if (died && member_op(o.kind) && rnd(&r) % 4 == 0) {
                        /* go on from a death, repaired */
                        memcpy(b.mem, cand, b.g.size);
                        md = cand_md;
                } else {
                        memcpy(b.mem, work, b.g.size);
                        model_op(&b.f, &md, &o, res, n);
                        model_served(&md, &wlog);
                }
                model_check(&b.f, &md, what);
        }
        free(H.last);
        H.last = NULL;
        free(cand);
        free(after);
        free(work);
        free(pre);
        free(b.mem);
}

START_TEST(undo_after_every_store_unordered) {
        for (uint64_t seed = 1; seed <= 40; seed++)
                undo_run(seed, (seed & 1) ? FP_REQUEUE_ON_DEATH : 0, 300);
        ck_assert_uint_gt(H.deaths, 50000);
}
END_TEST

START_TEST(undo_after_every_store_ordered) {
        for (uint64_t seed = 1; seed <= 40; seed++)
                undo_run(1000 + seed, FP_ORDERED | ((seed & 1) ? FP_REQUEUE_ON_DEATH : 0), 300);
        ck_assert_uint_gt(H.deaths, 50000);
}
END_TEST

/* --- the undo bound --------------------------------------------------------------------- */

/*
 * The largest step: an ordered pool of 2^20 slots, full. Its heap is 20 levels deep. The
 * last 1024 batches are published in falling seq order, each below every other, so that
 * each sifts up from the bottom to the top; then the first 1024 are consumed, and each
 * pop moves the largest-keyed last entry to the top, from where it sifts down to the
 * bottom. Both walk the whole height, two stores a level.
 */
START_TEST(undo_bound_at_the_largest_pool) {
        const uint32_t S = FP_SLOTS_MAX, B = FP_MANY_MAX;
        static FpPublish p[FP_MANY_MAX];
        static uint32_t v[FP_MANY_MAX];
        size_t n, bad;
        Blk b;

        mk(&b, S, 2, FP_ORDERED);
        b.f.committed = snapshot;
        H.last = NULL;
        H.max_stores = 0;
        REQ(fp_join(&b.f, 1, ROLE_PRODUCER) == 0);
        REQ(fp_join(&b.f, 2, ROLE_CONSUMER) == 0);
        for (uint32_t done = 0; done < S; done += B) {
                REQ(fp_take(&b.f, 1, FP_WAIT_ACQUIRE, B, -1, v, &n) == 0);
                REQ(n == B);
                for (uint32_t i = 0; i < B; i++) {
                        /* seqs B .. S-1 rising (each sifts up one level at most), then B-1 .. 0 */
                        uint64_t seq = done + B < S ? B + done + i : B - 1 - i;
                        p[i] = (FpPublish){ .slot = v[i], .nbytes = 1, .has_seq = true, .seq = seq };
                }
                REQ(fp_publish(&b.f, 1, p, B, &bad) == 0);
        }
        ck_assert_uint_eq(fp_head(&b.f)->pool.order_len, S);
        ck_assert_uint_ge(H.max_stores, 2 * 20);       /* a sift-up walked the whole height */
        ck_assert_uint_le(H.max_stores, FP_UNDO_CAP);
        H.max_stores = 0;
        REQ(fp_take(&b.f, 2, FP_WAIT_CONSUME, B, -1, v, &n) == 0);
        REQ(n == B);
        REQ(fp_slot(&b.f, v[B - 1])->seq == B - 1);
        ck_assert_uint_ge(H.max_stores, 2 * 19);       /* a sift-down walked the whole height */
        ck_assert_uint_le(H.max_stores, FP_UNDO_CAP);
        REQ(fp_head(&b.f)->pool.order_len == S - B);
        /* the reclaim of a member holding 1024 slots: one step each */
        H.max_stores = 0;
        ck_assert_int_eq(fp_leave(&b.f, 2), 0);
        ck_assert_uint_le(H.max_stores, FP_UNDO_CAP);
        check(&b.f);
        free(b.mem);
}
END_TEST

/* --- a hostile member's scribbles ------------------------------------------------------- */

/* f->served on a scribbled block: the slots, whatever they are, within their bound. */
static void on_served_any(Fp *f, uint32_t id, void *userdata) {
        uint32_t v[FP_MANY_MAX];

        (void)userdata;
        REQ(fp_served_slots(f, id, v) <= FP_MANY_MAX);
}

static bool allowed(int r) {
        return r == 0 || r == -EAGAIN || r == -EBUSY || r == -EPERM || r == -ENOENT || r == -EINVAL ||
               r == FP_ECORRUPT;
}

/*
 * Random bytes at random places of the pool, the counters, the members, the slots and
 * the order index, between operations of honest members and the daemon: every operation
 * returns 0, an errno of its list or FP_ECORRUPT, and never faults (ASan: never reads or
 * writes outside the block), never loops for ever, and leaves the log empty.
 */
START_TEST(scribbles_never_crash) {
        for (uint64_t seed = 1; seed <= 200; seed++) {
                Rng r = { seed * 7919 };
                uint32_t flags = (seed & 1 ? FP_ORDERED : 0) | (seed & 2 ? FP_REQUEUE_ON_DEATH : 0);
                uint32_t v[FP_MANY_MAX];
                const size_t lo = offsetof(FpBlockHead, pool);
                Model md = { 0 };
                size_t n;
                Blk b;

                mk(&b, 1 + rnd(&r) % 12, HM, flags);
                /* an honest start, so that the scribbles land on lists, heaps and queues */
                for (int i = 0; i < 60; i++) {
                        Op o;
                        int res;
                        gen_op(&b.f, &r, &md, &o);
                        res = run_op(tick(&b), &o, v, &n);
                        model_op(&b.f, &md, &o, res, n);
                        b.log.n = 0;
                }
                b.f.served = on_served_any;
                for (int i = 0; i < 300; i++) {
                        Op o;
                        int res;
                        const char *why;
                        if (rnd(&r) % 3 == 0) {
                                size_t at = lo + rnd(&r) % (b.g.size - lo), len = 1 + rnd(&r) % 8;
                                for (size_t j = 0; j < len && at + j < b.g.size; j++)
                                        b.mem[at + j] = rnd(&r) % 4 == 0 ? 0xff : (uint8_t)rnd(&r);
                        }
                        gen_op(&b.f, &r, &md, &o);
                        if (rnd(&r) % 4 == 0)
                                o.id = rnd(&r) % (HM + 2);      /* the model no longer matters */
                        if (rnd(&r) % 8 == 0)
                                o.kind = (OpKind)(rnd(&r) % (OP_UNWAIT + 1));
                        if (rnd(&r) % 16 == 0) {
                                /* a death inside, repaired by the daemon */
                                Fp d = b.f;
                                b.f.die_after = 1 + rnd(&r) % 40;
                                res = run_op(tick(&b), &o, v, &n);
                                b.f.die_after = 0;
                                d.self = FP_DAEMON;
                                if (b.f.dead) {
                                        b.f.dead = false;
                                        REQ(res == -EOWNERDEAD);
                                        fp_head(&b.f)->lock.word = o.id;
                                        res = fp_steal(&d, o.id);
                                        REQUIRE(res == 0 || res == FP_ECORRUPT, "steal: %d", res);
                                        fp_head(&b.f)->undo.n = 0;
                                        if (fp_member(&d, o.id))
                                                res = fp_leave(&d, o.id);
                                }
                        } else
                                res = run_op(tick(&b), &o, v, &n);
                        REQUIRE(allowed(res), "seed %llu: op %d returned %d", (unsigned long long)seed, o.kind,
                                      res);
                        REQ(fp_head(&b.f)->undo.n == 0);
                        res = fp_check(&b.f, &why);
                        REQ(res == 0 || res == FP_ECORRUPT);
                        (void)fp_lowest_unpublished(&b.f);
                        for (uint32_t id = 0; id <= HM + 1; id++)
                                REQ(fp_served_slots(&b.f, id, v) <= FP_MANY_MAX);
                        (void)fp_waited_usec(&b.f, FP_WAIT_CONSUME, b.f.now);
                        b.log.n = 0;
                        /* the model follows the block where it can: honest ops need a live member */
                        for (uint32_t id = 1; id <= HM; id++) {
                                const FpMember *m = fp_member(&b.f, id);
                                md.live[id] = m->flags & FP_M_LIVE;
                                md.role[id] = m->role < _ROLE_MAX ? (Role)m->role : ROLE_ADMIN;
                                md.waiting[id] = m->wmax != 0;
                        }
                }
                free(b.mem);
        }
}
END_TEST

Suite *suite_fastpool(void) {
        Suite *s = suite_create("fastpool");
        TCase *t = tcase_create("operations");
        TCase *u = tcase_create("undo");
        TCase *h = tcase_create("hardening");

        tcase_add_test(t, geometry);
        tcase_add_test(t, full_cycle);
        tcase_add_test(t, roles_and_holders_are_enforced);
        tcase_add_test(t, exhaustion_and_publish_order);
        tcase_add_test(t, ordered_delivers_by_seq_and_refuses_duplicates);
        tcase_add_test(t, ordered_end_skips_gaps_and_restarts_seqs);
        tcase_add_test(t, stream_ends_when_every_producer_ended_or_left);
        tcase_add_test(t, late_consumer_reads_an_ended_streams_batches);
        tcase_add_test(t, dying_consumer_requeues_to_front);
        tcase_add_test(t, dying_consumer_frees_by_policy);
        tcase_add_test(t, requeue_by_consumer);
        tcase_add_test(t, many_slots_all_or_none);
        tcase_add_test(t, consume_stops_at_its_budget);
        tcase_add_test(t, ordered_pool_keeps_a_slot_for_the_lowest_missing_seq);
        tcase_add_test(t, slot_kept_only_while_nobody_may_write_the_gap);
        tcase_add_test(t, slot_kept_unless_the_gap_is_being_written);
        tcase_add_test(t, waiters_first_come_first_served);
        tcase_add_test(t, stream_end_wakes_every_waiting_consumer);
        tcase_add_test(t, waits_count_while_they_last);
        tcase_add_test(t, waiter_takes_up_to_its_max);
        tcase_add_test(t, served_slots_are_the_new_ones);
        tcase_add_test(t, unwait_leaves_the_queue_quietly);
        tcase_add_test(t, wait_of_the_wrong_role_is_refused);
        suite_add_tcase(s, t);
        /* The random runs and the pool of 2^20 slots take seconds, more under ASan. */
        tcase_add_test(u, lock_steal_and_bad_logs);
        tcase_add_test(u, corrupt_step_is_undone);
        tcase_add_test(u, broken_index_fails_a_publish);
        tcase_add_test(u, a_waiter_yields_its_budget_then_sleeps);
        tcase_add_test(u, undo_after_every_store_unordered);
        tcase_add_test(u, undo_after_every_store_ordered);
        tcase_add_test(u, undo_bound_at_the_largest_pool);
        tcase_set_timeout(u, 120);
        suite_add_tcase(s, u);
        tcase_add_test(h, scribbles_never_crash);
        tcase_set_timeout(h, 120);
        suite_add_tcase(s, h);
        return s;
}
