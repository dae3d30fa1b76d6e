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

#include "order.h"
#include "sb-list.h"
#include "segment.h"

#define POOL_NAME_MAX 64
#define POOL_SLOTS_MAX (1u << 20)
#define POOL_MANY_MAX 1024     /* slots one request may take or give */

typedef struct Pool Pool;
typedef struct Member Member;
typedef struct PoolWaiter PoolWaiter;

typedef enum SlotState {
        SLOT_FREE,
        SLOT_WRITING,
        SLOT_READY,
        SLOT_READING,
        _SLOT_STATE_MAX,
} SlotState;

typedef enum PoolPolicy {
        POLICY_REQUEUE,          /* a dead consumer's slot goes back to the front of the queue */
        POLICY_FREE,             /* ... or is freed, its batch lost */
} PoolPolicy;

typedef enum PoolRole {
        ROLE_ADMIN,
        ROLE_PRODUCER,
        ROLE_CONSUMER,
        _ROLE_MAX,
} PoolRole;

typedef enum PoolWaitKind {
        WAIT_ACQUIRE,
        WAIT_CONSUME,
} PoolWaitKind;

/* What a pool is made of: from the configuration or from a client's create. */
typedef struct PoolSpec {
        char name[POOL_NAME_MAX + 1];
        uint64_t slot_size;
        uint32_t slots;
        bool ordered;
        bool persistent;
        bool configured;         /* from the configuration file */
        bool huge_pages;
        PoolPolicy on_consumer_death;
        unsigned mode;
        uid_t uid;
        gid_t gid;
} PoolSpec;

struct Slot {
        uint32_t index;
        SlotState state;
        Member *holder;          /* while writing or reading */
        SbList link;             /* free list, a ready queue, or the holder's held list */
        uint64_t nbytes;
        uint64_t seq;
        uint64_t stream;
        uint32_t heap_pos;       /* ordered pools: place in the heap */
        uint64_t mark;           /* Pool.mark_gen when a many-slot request last named it */
        char *meta;              /* the producer's meta as JSON text (NULL: {}), while ready or reading */
        uint32_t meta_len;
        uint32_t meta_cap;       /* kept across uses: no allocation per batch in steady state */
        uint64_t since_usec;     /* when it entered its state */
};

/*
 * Called when a wait ends: @result is 0 with @slot the acquired or consumed slot, or
 * NULL for end of stream (consume); or SB_E_NO_SUCH_POOL when the pool was dropped.
 * The callback must not call back into the pool.
 */
typedef void (*PoolWakeFn)(PoolWaiter *w, int result, Slot *slot);

struct PoolWaiter {
        SbList link;             /* in the pool's queue of its kind, first come first served */
        Member *member;
        PoolWaitKind kind;
        PoolWakeFn fn;
        uint64_t since_usec;
};

struct Member {
        Pool *pool;
        void *owner;             /* the connection; the pool never looks inside */
        SbList pool_link;
        SbList owner_link;       /* in the owner's list of opened pools */
        SbList held;             /* Slot.link */
        uint32_t n_held;
        PoolRole role;
        bool ended;              /* producer: sent end in the current stream */
        uint64_t stream;         /* consumer: the stream it is reading */
        PoolWaiter *waiter;      /* its wait, if any */
};

typedef struct PoolStats {
        uint64_t acquired;
        uint64_t published;
        uint64_t consumed;
        uint64_t bytes_published;
        uint64_t producer_wait_usec;   /* time producers waited for a free slot */
        uint64_t consumer_wait_usec;   /* time consumers waited for a ready slot */
        uint64_t streams_ended;
} PoolStats;

struct Pool {
        PoolSpec spec;
        uint64_t stride;
        Segment seg;
        Slot *slots;
        SbList free_slots;
        SbList ready;            /* unordered: publish order; both: requeued at the front */
        SbList early;            /* unordered: batches of the next stream, published early */
        OrderQueue order;        /* ordered: ready batches by (stream, seq) */
        uint32_t count[_SLOT_STATE_MAX];
        SbList members;
        uint32_t n_members;
        uint32_t n_producers;
        uint32_t n_ended;
        bool end_seen;
        uint64_t stream;         /* the stream producers publish into */
        uint64_t next_seq;       /* ordered: the next seq of the current stream */
        SbList acquire_waiters;
        SbList consume_waiters;
        uint32_t n_waiters[2];   /* by PoolWaitKind */
        PoolStats stats;
        uint64_t created_usec;
        uint64_t mark_gen;       /* finds a slot named twice in one request */
        SbList owner_link;       /* in the broker's list of pools */
};

/*
 * The stride (slot size rounded up to the page size) and the segment's size of @spec.
 * Returns 0, or SB_E_BAD_REQUEST / SB_E_LIMIT with the reason in @why.
 */
int pool_spec_layout(const PoolSpec *spec, uint64_t *stride, uint64_t *size, char *why, size_t len);

/* Create a pool and its segment. Returns 0, SB_E_LIMIT or -errno, the reason in @why. */
int pool_new(Pool **ret, const PoolSpec *spec, char *why, size_t len);

/* Fail every wait with no_such_pool, free every member and the pool; NULL-safe. */
Pool *pool_free(Pool *p);

static inline uint64_t slot_offset(const Pool *p, const Slot *s) {
        return (uint64_t)s->index * p->stride;
}

static inline bool pool_is_unused(const Pool *p) {
        return p->n_members == 0;
}

/* Open @p for @owner in @role. Returns 0 or -ENOMEM. */
int pool_join(Pool *p, PoolRole role, void *owner, Member **ret);

/* Close a member: reclaim its slots, drop its wait, count a producer as ended. */
void member_leave(Member *m);

/* Take a free slot for writing. 0, SB_E_WRONG_ROLE or -EAGAIN (none free). */
int pool_acquire(Member *m, Slot **ret);

/* One slot to publish: @meta is JSON object text of @meta_len bytes, or NULL for {}. */
typedef struct PoolPublish {
        uint32_t slot;
        bool has_seq;
        uint64_t nbytes;
        uint64_t seq;
        const char *meta;
        size_t meta_len;
} PoolPublish;

/* Publish @n slots being written by @m, in order, all or none: 0; or the first entry
 * that cannot be published in *bad and SB_E_WRONG_ROLE, SB_E_NOT_HOLDER (also: a slot
 * listed twice), SB_E_BAD_REQUEST (nbytes over slot_size, no seq for an ordered pool, a
 * seq already published or listed twice) or -ENOMEM; nothing changed. */
int pool_publish(Member *m, const PoolPublish *v, size_t n, size_t *bad);

/* Take the next ready slot for reading: 0 with *ret a slot, or NULL for end of stream;
 * SB_E_WRONG_ROLE; -EAGAIN when nothing is ready yet. */
int pool_consume(Member *m, Slot **ret);

/* Take the next ready slot if there is one, never the end of stream: 0 or -EAGAIN. */
int pool_consume_ready(Member *m, Slot **ret);

/* Give back @n held slots, all or none: free them, or (being read, @requeue) put them
 * back first in line, the first listed first. 0; or, nothing changed, the first bad
 * entry in *bad and SB_E_NOT_HOLDER (also: listed twice) or SB_E_BAD_REQUEST (requeue of
 * a slot being written). */
int pool_release(Member *m, const uint32_t *slots, size_t n, bool requeue, size_t *bad);

/* The producer @m ends the current stream. 0 or SB_E_WRONG_ROLE. */
int pool_end(Member *m);

/* Queue @w to be woken by @fn when an acquire or consume of @m can be answered. */
void pool_wait(PoolWaiter *w, Member *m, PoolWaitKind kind, PoolWakeFn fn);

/* Leave the queue without being woken (timeout, cancel). */
void pool_unwait(PoolWaiter *w);

const char *slot_state_name(SlotState s);
const char *pool_role_name(PoolRole r);
int pool_role_from_name(const char *name);

/* A pool name: 1 to 64 of [A-Za-z0-9._-], not starting with '.' or '-'. */
bool pool_name_valid(const char *name);
