/*
 * sb-fastpool.h: a pool's slot state machine on a control block (docs/fastpath.md).
 *
 * The block holds everything that changes per batch: the slot records with their
 * holders, the free list, the ready queues (or the ordered heap), the members with their
 * held lists and waits, the streams and the counters. It has no pointers, only indices
 * and byte offsets, so that it means the same in every process that maps it.
 *
 * Every change is made under the block's lock, in steps: a step is one transition that
 * leaves every invariant true (take a slot, publish one batch, serve one waiter), and
 * every store of a step is first written to the undo log. Whoever finds the lock held by
 * a dead owner steals it and undoes the log: the block is back at the last committed
 * step, whatever instruction the owner died at.
 *
 * Nothing read from the block is trusted: every index is checked before it becomes an
 * address, every walk is bounded, and a value that breaks an invariant ends the step
 * with FP_ECORRUPT, undone. The geometry (slot count, member count, offsets) is never
 * read back from the block: each side keeps its own copy in Fp.
 *
 * Error returns: 0, -EAGAIN (nothing to take now), -EBUSY (ordered: the last free slot
 * is kept for a lower seq), -EPERM (the member's role does not allow it), -ENOENT (a slot
 * not held by the member, or named twice), -EINVAL (a bad request: nbytes over the slot
 * size, a seq missing or already published, requeue of a slot being written), -ENOLCK
 * (the lock is held by someone else) or FP_ECORRUPT.
 */
#pragma once

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sb-names.h"

#define FP_MAGIC 0x50465342u    /* "BSFP" */
#define FP_VERSION 1
#define FP_NONE 0xffffffffu     /* ends an index list; "no slot" */
#define FP_DAEMON 0xffffu       /* the daemon's id in the lock word */
#define FP_MEMBERS_MAX 0xfffeu  /* member ids are 1 .. member_cap; 0 is nobody */
#define FP_SLOTS_MAX (1u << 20)
#define FP_MANY_MAX 1024        /* slots one operation may take or give */
/* Stores in one step. The largest step, an ordered consume from a heap of 2^20 slots,
 * makes 2 per heap level (20 levels) and about 20 others. */
#define FP_UNDO_CAP 128
#define FP_ECORRUPT (-EUCLEAN)

typedef enum FpSlotState {
        FP_FREE,
        FP_WRITING,
        FP_READY,
        FP_READING,
        _FP_STATE_MAX,
} FpSlotState;

typedef enum FpWaitKind {
        FP_WAIT_ACQUIRE,
        FP_WAIT_CONSUME,
} FpWaitKind;

enum {
        FP_ORDERED = 1u << 0,         /* FpHeader.flags */
        FP_REQUEUE_ON_DEATH = 1u << 1,
        FP_M_LIVE = 1u << 0,          /* FpMember.flags */
        FP_M_PROXY = 1u << 1,         /* its wait is the daemon's, for a request on its socket */
        FP_S_IN_HEAP = 1u << 0,       /* FpSlot.flags: ready, in the ordered heap (not a list) */
        FP_S_META_AT_DAEMON = 1u << 1,/* its batch came through the daemon, which keeps its meta */
        FP_S_META_OUTSIDE = 1u << 2,  /* its meta is not in the slot's meta area: ask the daemon */
        FP_S_META_FLAGS = FP_S_META_AT_DAEMON | FP_S_META_OUTSIDE,
};

/* FpControl.mode: whether clients may run operations on the block themselves. */
enum {
        FP_MODE_FAST = 0,
        FP_MODE_GONE = 1,             /* the pool was dropped or the daemon stopped: use the socket */
};

/* The lock word: the owner's id, and whether anyone sleeps on it. */
#define FP_LOCK_OWNER 0xffffu
#define FP_LOCK_WAITERS (1u << 30)

/* line 0: written once by its creator; never read back by the daemon. */
typedef struct FpHeader {
        uint32_t magic, version;
        uint32_t slots, member_cap;
        uint64_t slot_size, stride;
        uint32_t meta_inline;
        uint32_t flags;
        uint32_t off_members, off_slots;
        uint32_t off_heap, off_buckets;
        uint32_t nbuckets, off_meta;
} FpHeader;

/* line 1: the daemon's words (used from step 3 of docs/fastpath.md on). */
typedef struct FpControl {
        _Atomic uint32_t mode;
        _Atomic uint32_t epoch;
        _Atomic uint32_t daemon_alive;
        uint32_t pad[13];
} FpControl;

/* line 2: the lock: 0 free, else the owner's id (bits 0-15) and flags. */
typedef struct FpLock {
        _Atomic uint32_t word;
        uint32_t pad[15];
} FpLock;

typedef struct FpUndo {
        uint32_t off;            /* byte offset in the block of the stored field */
        uint32_t width;          /* 4 or 8 */
        uint64_t old;
} FpUndo;

/* The undo log of the step in progress. It belongs to the lock: only its holder writes it. */
typedef struct FpUndoLog {
        volatile uint32_t n;     /* entries of the step in progress; 0: committed */
        uint32_t steps;          /* steps committed */
        uint32_t pad[14];
        FpUndo e[FP_UNDO_CAP];
} FpUndoLog;

/* The pool's state (pool.c's Pool fields, as indices). */
typedef struct FpPool {
        uint32_t free_head;              /* LIFO through FpSlot.next: last freed, first reused */
        uint32_t ready_head, ready_tail; /* publish order; requeued at the head */
        uint32_t early_head, early_tail; /* unordered: batches of the next stream */
        uint32_t count[_FP_STATE_MAX];
        uint32_t wq_head[2], wq_tail[2]; /* waiters by FpWaitKind: member ids, 0 ends */
        uint32_t n_waiters[2];
        uint32_t n_producers;
        uint32_t n_consumers, n_members, n_ended, n_undeclared;
        uint32_t end_seen, order_len;
        uint64_t stream;                 /* the stream producers publish into */
        uint64_t next_seq;               /* ordered: the next seq of the current stream */
        uint64_t waiting_since[2];       /* the start times of the waits going on, added up */
        uint64_t pad;
} FpPool;

/* The counters status shows. */
typedef struct FpStats {
        uint64_t acquired, published, consumed, bytes_published, bytes_consumed, streams_ended;
        uint64_t wait_usec[2];           /* by FpWaitKind: waits that ended */
} FpStats;

/* One opening of the pool. */
typedef struct FpMember {
        _Atomic uint32_t wake;           /* futex word of its waits (step 3) */
        uint16_t flags;                  /* FP_M_LIVE */
        uint8_t role;                    /* Role */
        uint8_t wkind;                   /* FpWaitKind, while waiting */
        uint32_t held_head, held_tail, n_held;
        uint32_t wnext, wprev;           /* its place in the waiter queue of wkind */
        uint32_t wmax;                   /* slots to take when served; 0: not waiting */
        uint32_t served;                 /* slots the last serve handed over (0: end of stream) */
        uint32_t wheld;                  /* n_held when the wait began */
        int64_t wseq;                    /* acquire: the seq it will publish, or -1 */
        uint64_t stream;                 /* consumer: the stream it reads; producer: 1 + the
                                          * stream it sent end in (ended iff pool.stream + 1) */
        uint64_t since_usec;             /* start of its wait */
} FpMember;

typedef struct FpSlot {
        uint8_t state;                   /* FpSlotState */
        uint8_t flags;                   /* FP_S_IN_HEAP */
        uint16_t pad;
        uint32_t holder;                 /* member id while writing or reading, else 0 */
        uint32_t next, prev;             /* the one list it is on */
        uint64_t nbytes, seq, stream;
        int64_t declared;                /* ordered, writing: the seq its acquire said, or -1 */
        uint64_t since_usec;             /* when it entered its state */
        uint32_t heap_pos;               /* ordered, in the heap: its place */
        uint32_t hash_next;              /* ordered, in the heap: chain of the (stream, seq) index */
} FpSlot;

typedef struct FpBlockHead {
        FpHeader header;
        FpControl control;
        FpLock lock;
        FpUndoLog undo;
        FpPool pool;
        FpStats stats;
} FpBlockHead;

/* What each side knows of a block without reading it: its own copy of the geometry. */
typedef struct FpGeom {
        uint32_t slots, member_cap, nbuckets, flags;
        uint64_t slot_size, stride;
        uint32_t off_members, off_slots, off_heap, off_buckets, off_meta;
        uint32_t meta_inline;    /* bytes of meta area per slot: a uint32 length, then the text */
        size_t size;
} FpGeom;

typedef struct Fp Fp;

/* Called after a step that served member @id's wait (its slots are the last
 * FpMember.served of its held list; none: end of stream). Must not call into the block. */
typedef void (*FpServedFn)(Fp *f, uint32_t id, void *userdata);

struct Fp {
        uint8_t *mem;            /* the block, FpGeom.size bytes */
        FpGeom g;
        uint32_t self;           /* the id this side writes into the lock word */
        uint64_t now;            /* sb_now_usec() of the operation, set by the caller */
        FpServedFn served;
        void *userdata;
        /* A consume that takes many stops once the costs of its batches pass @budget
         * (cost[slot] + cost_each each; NULL: no limit but max). */
        const uint32_t *cost;
        uint64_t cost_each, budget;
        bool local_metas;        /* a consume stops before a batch whose meta is outside the block */
        int err;                 /* of the step in progress */
        /* Tests: after this many more logged stores, make no more stores (a death). */
        uint64_t die_after;
        bool dead;
        /* Tests: called after every logged store (libshmbroker's crash tests kill the process
         * there). */
        void (*stored)(Fp *f);
        /* Tests: called after each step's commit, with the stores the step made (the undo
         * tests snapshot the block there, and take the largest step against FP_UNDO_CAP). */
        void (*committed)(Fp *f, uint32_t stores);
};

/* One batch of a publish. */
typedef struct FpPublish {
        uint32_t slot;
        bool has_seq;
        bool meta_at_daemon;     /* the batch comes through the daemon, which keeps its meta */
        bool meta_outside;       /* ... and its meta is not in the slot's meta area */
        uint64_t nbytes;
        uint64_t seq;
} FpPublish;

/* The geometry of a block for @slots slots of @slot_size (@stride apart) and @member_cap
 * members, @flags FP_ORDERED and FP_REQUEUE_ON_DEATH, with @meta_inline bytes of meta area
 * per slot (a multiple of 64, 0: none): 0, or -E2BIG past the limits. */
int fp_geom(FpGeom *g, uint32_t slots, uint32_t member_cap, uint64_t slot_size, uint64_t stride, uint32_t flags,
            uint32_t meta_inline);

/* Whether the header of the block at @mem says what @g says (a client's check of a block
 * against the daemon's reply). */
bool fp_header_matches(const void *mem, const FpGeom *g);

/* Lay out a new block at @mem (g->size bytes, 64-byte aligned, zeroed): every slot free,
 * no member, stream 0; @f is then ready to use it, locking as @self. */
void fp_format(Fp *f, void *mem, const FpGeom *g, uint32_t self);

/* Take the lock for f->self: 0, or -ENOLCK with *owner the id that holds it. */
int fp_trylock(Fp *f, uint32_t *owner);

/* Take the lock, sleeping at most @slice_ms when it is held: 0, or -ETIMEDOUT (the caller
 * looks at its deadline and at the daemon, then calls again). */
int fp_lock(Fp *f, int slice_ms);

/* Give the lock back, waking a sleeper. */
void fp_unlock(Fp *f);

/* Take the lock from @owner, which is dead, and undo its step in progress: 0, -ENOLCK (the
 * lock is no longer @owner's), or FP_ECORRUPT (a bad undo log; the lock is taken). */
int fp_steal(Fp *f, uint32_t owner);

/* Undo the step in progress, newest store first: 0 or FP_ECORRUPT (a bad entry; nothing
 * undone). The lock must be held. */
int fp_undo(Fp *f);

/* Everything below needs the lock. */

/* Open the pool as member @id (1 .. member_cap, not live) in @role. */
int fp_join(Fp *f, uint32_t id, Role role);

/* Close member @id: end its wait, reclaim its slots (writing: freed; reading: requeued
 * first in line or freed, by FP_REQUEUE_ON_DEATH), count a producer as ended, serve. */
int fp_leave(Fp *f, uint32_t id);

/* Take up to @max slots of @kind (acquire for @seq, -1: not said; or consume): 0 with *n
 * slots in @v (*n == 0: end of stream, consume only), -EPERM, -EAGAIN or -EBUSY. */
int fp_take(Fp *f, uint32_t id, FpWaitKind kind, uint32_t max, int64_t seq, uint32_t *v, size_t *n);

/* Publish @n slots being written by @id, in order, all or none: 0, or the first bad entry
 * in *bad and -EPERM, -ENOENT or -EINVAL, nothing changed. */
int fp_publish(Fp *f, uint32_t id, const FpPublish *v, size_t n, size_t *bad);

/* fp_publish()'s checks alone, with no store; and the rest of it, once they passed in the
 * same hold of the lock. */
int fp_publish_check(Fp *f, uint32_t id, const FpPublish *v, size_t n, size_t *bad);
int fp_publish_checked(Fp *f, uint32_t id, const FpPublish *v, size_t n);

/* Give back @n held slots, all or none: freed, or (@requeue, being read) back first in
 * line, the first listed first. 0, or the first bad entry in *bad and -ENOENT or -EINVAL. */
int fp_release(Fp *f, uint32_t id, const uint32_t *v, size_t n, bool requeue, size_t *bad);

/* Producer @id ends the current stream: 0 or -EPERM. */
int fp_end(Fp *f, uint32_t id);

/* Queue @id to be served, first come first served, when a take of @kind can be answered:
 * then up to @max slots are taken for it and f->served is called (-EPERM: its role does
 * not allow a take of @kind). @proxy: the daemon waits for it (a request on its socket);
 * else the member sleeps on its wake word, whose value to sleep on is *wake_v (the
 * counter, the sleep bit clear). */
int fp_wait(Fp *f, uint32_t id, FpWaitKind kind, uint32_t max, int64_t seq, bool proxy, uint32_t *wake_v);

/* Sleep until member @id's wake word moves from @v, at most @slice_ms: 0 (it moved, or
 * maybe: look under the lock) or -ETIMEDOUT. First it spins a little, then yields its CPU
 * up to *yields times (at most FP_WAIT_YIELDS_MAX): on return *yields is how many yields
 * it took to see the word move, or UINT_MAX if it went to sleep. */
#define FP_WAIT_YIELDS_MAX 256u   /* about 0.6 us each when nobody else wants the CPU */
int fp_wake_wait(Fp *f, uint32_t id, uint32_t v, int slice_ms, unsigned *yields);

/* Tell member @id that it was served (after the lock is given back). */
void fp_wake(Fp *f, uint32_t id);

/* Wake everyone who sleeps on the block: each member's word and the lock's (the pool is
 * gone, or the daemon repaired it). */
void fp_wake_all(Fp *f);

/* Slot @index's meta area: a uint32 length, then the text (NULL: the pool has none). */
uint8_t *fp_meta_area(const Fp *f, uint32_t index);

/* Leave the wait queue unserved (timeout, cancel); nothing when not waiting. */
int fp_unwait(Fp *f, uint32_t id);

/* The slots the last serve of @id handed over, oldest first, into @v (FP_MANY_MAX): their
 * number. */
size_t fp_served_slots(Fp *f, uint32_t id, uint32_t *v);

/* The lowest seq of the current stream of an ordered pool not yet published. */
uint64_t fp_lowest_unpublished(Fp *f);

/* Check every invariant in O(slots + members): 0, or FP_ECORRUPT with the first broken
 * one in *why. */
int fp_check(Fp *f, const char **why);

/* Read access, checked: NULL for an index out of range. */
static inline FpBlockHead *fp_head(const Fp *f) {
        return (FpBlockHead *)(void *)f->mem;
}
FpMember *fp_member(const Fp *f, uint32_t id);
FpSlot *fp_slot(const Fp *f, uint32_t index);

/* Whether producer member @m has sent end in the current stream. */
bool fp_member_ended(const Fp *f, const FpMember *m);

/* How long the waits of @kind lasted until @now, the waits going on included. */
uint64_t fp_waited_usec(const Fp *f, FpWaitKind kind, uint64_t now);
