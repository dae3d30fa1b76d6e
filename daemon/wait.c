/*
 * wait.c: a pending acquire or consume, from its start to its one reply.
 */
#include <errno.h>

#include "arena.h"
#include "protocol.h"
#include "sb-error.h"
#include "wait.h"

void wait_init(Wait *w, sd_event *event, WaitDoneFn done) {
        *w = (Wait){ .event = event, .done = done };
}

/* The wait is over (answered, timed out or cancelled): forget its request. */
static void wait_finish(Wait *w) {
        cJSON_Delete(w->id);
        w->id = NULL;
        if (w->timer)
                (void)sd_event_source_set_enabled(w->timer, SD_EVENT_OFF);
}

static void on_wake(PoolWaiter *pw, int result, const SlotView *slots, size_t n) {
        Wait *w = sb_container_of(pw, Wait, waiter);
        cJSON *reply;

        if (result != 0)
                reply = reply_new_error(w->id, result, "the pool was dropped");
        else {
                reply = reply_new(w->id);
                if (reply && reply_add_taken(reply, pw->kind, slots, n, w->many) < 0)
                        reply = (cJSON_Delete(reply), NULL);
        }
        wait_finish(w);
        w->done(w, reply);
}

static int wait_arm_timer(Wait *w, uint64_t timeout_usec);

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Wait *w = userdata;
        const char *what = w->waiter.kind == WAIT_ACQUIRE ? "no slot became free" : "no batch became ready";
        cJSON *reply;
        int r;

        (void)s;
        (void)usec;
        /* The pool's lock is held for a moment: look again in a millisecond. */
        r = pool_unwait(&w->waiter, false);
        if (r == POOL_BUSY) {
                (void)wait_arm_timer(w, 1000);
                return 0;
        }
        if (r == POOL_WAITING)
                return 0;       /* served just before the timeout: on_wake() answered */
        reply = reply_new_error(w->id, SB_E_TIMEOUT, what);
        wait_finish(w);
        w->done(w, reply);
        return 0;
}

static int wait_arm_timer(Wait *w, uint64_t timeout_usec) {
        int r;

        if (!w->timer)
                r = sd_event_add_time_relative(w->event, &w->timer, CLOCK_MONOTONIC, timeout_usec, 1000, on_timeout, w);
        else
                r = sd_event_source_set_time_relative(w->timer, timeout_usec);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT);
}

int wait_begin(Wait *w, Member *m, PoolWaitKind kind, const cJSON *id, uint64_t timeout_usec, uint32_t max,
               int64_t seq, SlotView *v, size_t *n) {
        unsigned depth;
        int r;

        if (timeout_usec != UINT64_MAX) {
                r = wait_arm_timer(w, timeout_usec);
                if (r < 0)
                        return r;
        }
        /* The id outlives its request, and so its memory: copy it out of the arena. */
        depth = arena_suspend();
        w->id = id ? cJSON_Duplicate(id, true) : NULL;
        arena_resume(depth);
        if (id && !w->id) {
                wait_finish(w);
                return -ENOMEM;
        }
        w->many = max > 0;
        r = pool_take_or_wait(m, kind, max ? max : 1, seq, v, n, &w->waiter, on_wake);
        if (r != POOL_WAITING)
                wait_finish(w);
        return r;
}

void wait_cancel(Wait *w) {
        if (!wait_is_active(w))
                return;
        (void)pool_unwait(&w->waiter, true);
        wait_finish(w);
}

void wait_clear(Wait *w) {
        wait_cancel(w);
        w->timer = sd_event_source_disable_unref(w->timer);
}
