/*
 * reaper.c: the segments of dropped pools still attached by clients, and their charges.
 */
#include <errno.h>
#include <stdlib.h>

#include "log.h"
#include "reaper.h"

/* How often to look whether the leftover segments are gone. A create that a leftover's
 * charge stands in the way of looks at once (broker_create_pool()). */
#define REAPER_INTERVAL_USEC (1000 * 1000ULL)

static void leftover_free(Reaper *r, Leftover *lo) {
        sb_list_unlink(&lo->link);
        r->n--;
        r->bytes -= lo->size;
        quota_uncharge(&lo->charge);
        free(lo);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Reaper *r = userdata;

        (void)reaper_reap(r);
        if (r->n == 0)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return sd_event_source_set_time(s, usec + REAPER_INTERVAL_USEC);
}

void reaper_init(Reaper *r, sd_event *event) {
        *r = (Reaper){ .event = sd_event_ref(event) };
        sb_list_init(&r->leftovers);
}

void reaper_clear(Reaper *r) {
        Leftover *lo;

        while ((lo = sb_list_first_entry(&r->leftovers, Leftover, link)))
                leftover_free(r, lo);
        r->timer = sd_event_source_disable_unref(r->timer);
        r->event = sd_event_unref(r->event);
}

/* Look again in REAPER_INTERVAL_USEC. The timer is made only when first needed: a daemon
 * whose dropped pools go at once holds no timer for them. Without one, a create that a
 * leftover stands in the way of still looks. */
static void reaper_arm(Reaper *r) {
        int e;

        if (r->timer)
                e = sd_event_source_set_time_relative(r->timer, REAPER_INTERVAL_USEC);
        else
                e = sd_event_add_time_relative(r->event, &r->timer, CLOCK_MONOTONIC, REAPER_INTERVAL_USEC, 0,
                                               on_timer, r);
        if (e >= 0)
                e = sd_event_source_set_enabled(r->timer, SD_EVENT_ON);
        if (e < 0)
                log_warning_errno(e, "cannot arm the timer that looks whether dropped pools' segments are gone");
}

Leftover *leftover_new(void) {
        Leftover *lo = calloc(1, sizeof(*lo));

        if (lo)
                sb_list_init(&lo->link);
        return lo;
}

void reaper_drop_segment(Reaper *r, Segment *seg, uid_t uid, QuotaCharge *charge, Leftover **lo) {
        int shmid = seg->shmid;
        uint64_t size = seg->size;
        Leftover *kept = *lo;

        /* Detach first, then look: a segment that exists after our detach has another user,
         * and one that is gone cannot come back. Looking first would miss a client that
         * attaches between the look and the detach. */
        segment_release(seg);
        if (shmid < 0 || !kept || !segment_exists(shmid, size))
                return;
        *lo = NULL;
        kept->shmid = shmid;
        kept->size = size;
        kept->uid = uid;
        quota_charge_move(&kept->charge, charge);
        sb_list_append(&r->leftovers, &kept->link);
        r->bytes += size;
        if (r->n++ == 0)
                reaper_arm(r);
        log_debug("segment %d of a dropped pool stays while clients have it attached: it counts until then", shmid);
}

uint32_t reaper_reap(Reaper *r) {
        SbList *it, *tmp;
        uint32_t gone = 0;

        sb_list_for_each_safe(it, tmp, &r->leftovers) {
                Leftover *lo = sb_list_entry(it, Leftover, link);

                if (segment_exists(lo->shmid, lo->size))
                        continue;
                log_debug("segment %d of a dropped pool is gone: its %llu bytes no longer count", lo->shmid,
                          (unsigned long long)lo->size);
                leftover_free(r, lo);
                gone++;
        }
        return gone;
}

void reaper_count(const Reaper *r, uid_t uid, uint64_t *pools, uint64_t *bytes) {
        SbList *it;

        *pools = *bytes = 0;
        sb_list_for_each(it, &r->leftovers) {
                const Leftover *lo = sb_list_entry(it, Leftover, link);

                if (lo->uid == uid) {
                        (*pools)++;
                        *bytes += lo->size;
                }
        }
}

void reaper_forget(Reaper *r, int shmid) {
        SbList *it, *tmp;

        sb_list_for_each_safe(it, tmp, &r->leftovers) {
                Leftover *lo = sb_list_entry(it, Leftover, link);

                if (lo->shmid == shmid)
                        leftover_free(r, lo);
        }
}
