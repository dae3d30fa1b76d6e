/*
 * pool.h: a pool of equal slots in one segment, and the slot state machine
 *
 *     free -> writing -> ready -> reading -> free
 *
 * with the streams (epochs) that producers end and consumers drain. A Member is one
 * client's opening of a pool: it holds slots and carries the client's place in the
 * stream. Every operation is O(1) in the number of slots and members, except the
 * O(log n) heap of ordered pools (order.h).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "pool-spec.h"
#include "quota.h"
#include "sb-error.h"
#include "sb-fastpool.h"
#include "sb-list.h"
#include "sb-names.h"
#include "segment.h"

#define POOL_MANY_MAX FP_MANY_MAX     /* slots one request may take or give */
/* A many-slot consume takes batches while their metas (and about 128 bytes of fields
 * each) add up to at most this, the first batch whatever its size: its reply stays well
 * below what a client may leave unread (client.h), whatever the producers' metas are. */
#define POOL_TAKE_BYTES_MAX (1u << 20)
#define POOL_TAKE_BATCH_BYTES 128
/* An operation found the block's lock held by a live member (for about a microsecond,
 * unless it was descheduled or stopped there): nothing was done, try again shortly. */
#define POOL_BUSY (-EINPROGRESS)
/* Meta bytes per slot in the control block, for metas the clients write themselves: at
 * most this, and at most POOL_META_AREA_MAX over all slots. */
#define POOL_META_INLINE 1024u
#define POOL_META_AREA_MAX (1u << 20)

typedef struct Pool Pool;
typedef struct Member Member;
typedef struct PoolWaiter PoolWaiter;

typedef enum SlotState {
        SLOT_FREE = FP_FREE,
        SLOT_WRITING = FP_WRITING,
        SLOT_READY = FP_READY,
        SLOT_READING = FP_READING,
        _SLOT_STATE_MAX = _FP_STATE_MAX,
} SlotState;

typedef enum PoolWaitKind {
        WAIT_ACQUIRE = FP_WAIT_ACQUIRE,
        WAIT_CONSUME = FP_WAIT_CONSUME,
} PoolWaitKind;

/* A slot as it is at one moment, read out of the control block. @meta (NULL: {}) stays
 * valid while the slot is held by the member it was read for. */
typedef struct SlotView {
        uint32_t index;
        SlotState state;
        uint64_t offset;
        uint64_t nbytes;
        uint64_t seq;
        uint64_t stream;
        uint64_t since_usec;     /* when it entered its state */
        const char *meta;
        uint32_t meta_len;
} SlotView;

/* What the daemon keeps of a slot beside the block: the producer's meta, as it sent it. */
typedef struct SlotMeta {
        char *meta;              /* NULL: {}; while ready or reading */
        QuotaHold meta_hold;     /* its bytes, held for the producer's uid while kept */
} SlotMeta;

/*
 * Called when a wait ends, the waiter already out of the queue: @result is 0 with the
 * @n slots the waiter now holds (@n == 0: end of stream, consume only), or
 * SB_E_NO_SUCH_POOL when the pool is going. The callback must not call back into the
 * pool: everything it needs is in its arguments.
 */
typedef void (*PoolWakeFn)(PoolWaiter *w, int result, const SlotView *slots, size_t n);

struct PoolWaiter {
        Member *member;          /* NULL while not waiting */
        PoolWaitKind kind;
        PoolWakeFn fn;
};

/* One client's opening of a pool: member @id of the pool's control block, where its role,
 * its held slots, its stream and its wait are. */
struct Member {
        Pool *pool;
        void *owner;             /* the connection; the pool never looks inside */
        uint32_t id;
        bool fast;               /* its client has the block: it runs its own operations */
        bool gone;               /* its client is gone: it holds nothing the daemon must wait for */
        SbList pool_link;
        SbList owner_link;       /* in the owner's list of opened pools */
        PoolWaiter *waiter;      /* its wait, if any */
};

struct Pool {
        PoolSpec spec;
        uint64_t stride;
        Segment seg;
        QuotaCharge charge;      /* to its owner: one pool, the segment's bytes */
        struct Leftover *leftover;   /* made with the pool: keeps the charge if the segment outlives it (reaper.h) */
        Fp fp;                   /* the slot state machine, on the control block */
        void *block;             /* the control block: block_seg's, or private memory */
        Segment block_seg;       /* the block as a segment its writers may attach (SEGMENT_NULL: none) */
        Member **members;        /* by member id - 1 */
        uint32_t *woken;         /* members served during the operation under way, to wake after it */
        uint32_t n_woken;
        uint32_t n_fast;         /* members whose clients have the block */
        uint32_t n_proxy;        /* daemon waits under way (requests on a socket) */
        bool repaired;           /* the last lock was taken from a dead member and its step undone */
        bool broken;             /* the block broke its invariants: a member wrote garbage into it */
        SlotMeta *metas;         /* by slot */
        uint32_t *meta_len;      /* by slot: what a many-slot consume counts against its reply */
        SbList members_list;
        uint64_t created_usec;
        SbList owner_link;       /* in the broker's list of pools */
};

static inline const FpPool *pool_state(const Pool *p) {
        return &fp_head(&p->fp)->pool;
}

static inline const FpStats *pool_stats(const Pool *p) {
        return &fp_head(&p->fp)->stats;
}

/* Create a pool of @layout (pool_spec_layout()) and its segment, for at most @member_cap
 * openings at a time, with its control block in a segment of its own when @shared (else in
 * private memory: every operation then comes through the daemon). Returns 0, SB_E_LIMIT (a
 * kernel limit) or -errno, the reason in @why. */
int pool_new(Pool **ret, const PoolSpec *spec, const PoolLayout *layout, uint32_t member_cap, bool shared,
             SbReason *why);

/* The mode of a pool's control block: read and write for exactly the classes that may
 * write the pool, nothing for the others (a reader of the block could not be trusted with
 * it either: it decides which batch goes to whom). */
unsigned pool_block_mode(unsigned mode);

/* Fail every wait with no_such_pool, free every member, give back the pool's charge,
 * free the pool; NULL-safe. */
Pool *pool_free(Pool *p);

static inline bool pool_is_unused(const Pool *p) {
        return sb_list_is_empty(&p->members_list);
}

/* Open @p for @owner in @role. Returns 0, -ENOMEM, POOL_BUSY, or SB_E_LIMIT (member_cap
 * openings). */
int pool_join(Pool *p, Role role, void *owner, Member **ret);

/* Close a member: reclaim its slots, drop its wait, count a producer as ended, and free
 * it: 0; or POOL_BUSY, when a live member holds the block's lock: then the member is
 * marked gone, keeps its place, and member_leave() must be called again shortly. */
int member_leave(Member *m);

/* Whether the pool has members that left and wait for the lock to be reclaimed, or waits
 * that members who run their own operations may have answered: the daemon looks again
 * (pool_poll()) shortly. */
bool pool_needs_poll(const Pool *p);

/* Finish the leaves that waited, and answer the daemon's waits that a member served. */
void pool_poll(Pool *p);

/* Give member @m the block: its client runs its own operations from now on. */
void member_set_fast(Member *m);

/*
 * Take a free slot for writing the batch of @seq (-1: not said). An ordered pool keeps
 * its last free slot for the lowest seq of the current stream not yet published, while
 * nobody may be writing it (no slot is being written for it, or for a seq not said):
 * then a producer that replaces a dead one can always fill the gap, and the stream never
 * wedges. 0, SB_E_WRONG_ROLE, -EAGAIN (none free) or -EBUSY (the last one is kept).
 */
int pool_acquire_seq(Member *m, int64_t seq, SlotView *ret);

static inline int pool_acquire(Member *m, SlotView *ret) {
        return pool_acquire_seq(m, -1, ret);
}

/* The lowest seq of the current stream of ordered pool @p not yet published. */
uint64_t pool_lowest_unpublished(Pool *p);

/*
 * Take up to @max (1 to POOL_MANY_MAX) slots of @kind: the first as pool_acquire_seq()
 * (with @seq) or pool_consume() would, then as many more as are free or ready now. 0 with
 * *n slots in @v (*n == 0: end of stream, consume only), SB_E_WRONG_ROLE, -EAGAIN (none
 * yet) or -EBUSY (acquire: the last free slot is kept for a lower seq). Consumed batches
 * stop at POOL_TAKE_BYTES_MAX.
 */
int pool_take(Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, SlotView *v, size_t *n);

/* Who pays for the meta of a publish: the producer's uid, through its own client charge
 * (@payer), within the limits in force; a refusal says which limit in @over. */
typedef struct PoolMetaPayer {
        Quota *quota;
        const QuotaCharge *payer;
        uint64_t max_per_uid;
        uint64_t max_total;
        QuotaHoldLimit over;
} PoolMetaPayer;

/* One slot to publish: @meta is JSON object text of @meta_len bytes, or NULL for {},
 * held for @payer (NULL: nobody pays) from now until the slot is freed. */
typedef struct PoolPublish {
        uint32_t slot;
        bool has_seq;
        uint64_t nbytes;
        uint64_t seq;
        const char *meta;
        size_t meta_len;
        PoolMetaPayer *payer;
} PoolPublish;

/* Publish @n slots being written by @m, in order, all or none: 0; or the first entry
 * that cannot be published in *bad and SB_E_WRONG_ROLE, SB_E_NOT_HOLDER (also: a slot
 * listed twice), SB_E_BAD_REQUEST (nbytes over slot_size, no seq for an ordered pool, a
 * seq already published or listed twice), SB_E_LIMIT (its meta would pass a limit of its
 * payer) or -ENOMEM; nothing changed. */
int pool_publish(Member *m, const PoolPublish *v, size_t n, size_t *bad);

/* Take the next ready slot for reading: 0 with *ret a slot, or *eof for end of stream;
 * SB_E_WRONG_ROLE; -EAGAIN when nothing is ready yet. */
int pool_consume(Member *m, SlotView *ret, bool *eof);

/* Give back @n held slots, all or none: free them, or (being read, @requeue) put them
 * back first in line, the first listed first. 0; or, nothing changed, the first bad
 * entry in *bad and SB_E_NOT_HOLDER (also: listed twice) or SB_E_BAD_REQUEST (requeue of
 * a slot being written). */
int pool_release(Member *m, const uint32_t *slots, size_t n, bool requeue, size_t *bad);

/* The producer @m ends the current stream. 0 or SB_E_WRONG_ROLE. */
int pool_end(Member *m);

/* pool_take_or_wait(): nothing could be taken, the waiter is queued. */
#define POOL_WAITING 1

/* pool_take(), and when nothing can be taken now, queue @w to be woken by @fn when a take
 * can be answered (then the pool takes up to @max slots for it and hands them to @fn), in
 * one hold of the block's lock: a member that runs its own operations cannot slip a batch in
 * between, which nobody would then hand to the waiter. 0 (taken, as pool_take()), POOL_WAITING, or an error
 * of pool_take() but -EAGAIN and -EBUSY; with no @w, exactly pool_take(). */
int pool_take_or_wait(Member *m, PoolWaitKind kind, uint32_t max, int64_t seq, SlotView *v, size_t *n,
                      PoolWaiter *w, PoolWakeFn fn);

/* Leave the queue without being woken (timeout, cancel): 0, POOL_BUSY (try again), or
 * POOL_WAITING when it was served meanwhile (by a member that runs its own operations): its
 * callback has run. With @force, the daemon forgets the wait whatever the block says (its
 * client is leaving: its leave reclaims what it was served). */
int pool_unwait(PoolWaiter *w, bool force);

/* The block was found broken, or the pool is going: tell its fast members to stop. */
void pool_retire_block(Pool *p);

/* How long the waits of @kind in @p have lasted until @now (sb_now_usec()), the waits going
 * on included, in O(1): a starved consumer's wait counts while it lasts. */
uint64_t pool_waited_usec(const Pool *p, PoolWaitKind kind, uint64_t now);

/* Slot @index of @p as it is now (index < slots). */
void pool_slot_view(const Pool *p, uint32_t index, SlotView *ret);

/* The member's role, and its held slots: their number, and a walk (first, then next until
 * FP_NONE) over them in the order they were taken. */
Role member_role(const Member *m);
uint32_t member_n_held(const Member *m);
uint32_t member_held_first(const Member *m);
uint32_t member_held_next(const Member *m, uint32_t index);

const char *slot_state_name(SlotState s);
