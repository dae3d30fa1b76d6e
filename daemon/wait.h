/*
 * wait.h: a client's one pending acquire or consume: its place in the pool's queue, its
 * timeout, and the reply it ends with.
 *
 * The pool decides when a wait can be answered and takes the slots for it (pool_take_or_wait(),
 * pool_dispatch()); the wait turns that, or its timeout, into the reply, and hands the
 * reply to its owner's WaitDoneFn. Nothing else keeps waiting state.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "pool.h"

typedef struct Wait Wait;

/* The wait ended with @reply (taken; NULL when it could not be built: out of memory). */
typedef void (*WaitDoneFn)(Wait *w, cJSON *reply);

struct Wait {
        PoolWaiter waiter;
        sd_event *event;
        sd_event_source *timer;  /* made on the first wait with a timeout, then reused */
        cJSON *id;               /* the waiting request's id, copied out of its arena */
        bool many;               /* the many-slot form ("max" given) */
        WaitDoneFn done;
};

void wait_init(Wait *w, sd_event *event, WaitDoneFn done);

/* Cancel the wait, if any, and free the timer. */
void wait_clear(Wait *w);

/*
 * Take for member @m, or wait for a take of @kind: up to @max slots (0: the one-slot form),
 * for @timeout_usec (UINT64_MAX: as long as it takes); an acquire for @seq (-1: not said).
 * The request's @id is copied. Returns POOL_WAITING; or 0 with what was taken at once in
 * @v and *n (as pool_take()), and no wait; or an error of pool_take_or_wait(), or -errno.
 */
int wait_begin(Wait *w, Member *m, PoolWaitKind kind, const cJSON *id, uint64_t timeout_usec, uint32_t max,
               int64_t seq, SlotView *v, size_t *n);

/* End the wait without a reply (its client went away). */
void wait_cancel(Wait *w);

static inline bool wait_is_active(const Wait *w) {
        return w->waiter.member != NULL;
}
