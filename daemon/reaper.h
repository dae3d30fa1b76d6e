/*
 * reaper.h: the segments of dropped pools that clients still have attached, each with the
 * charge of its pool, until the kernel has freed it.
 *
 * Linux frees a segment marked IPC_RMID only when its last user detaches: a pool's
 * memory outlives its drop for as long as a client keeps it attached. So the pool's
 * charge (one pool and its bytes, to its owner) moves into a Leftover at the drop and is
 * given back once the segment is gone: a client cannot create and drop pools past its
 * quota by keeping them attached. The Leftover is allocated with its pool (pool_new()),
 * so a drop never allocates; each counts against max_pools_per_uid, which bounds how
 * many one uid can have.
 */
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "quota.h"
#include "sb-list.h"
#include "segment.h"

typedef struct Leftover {
        SbList link;             /* in Reaper.leftovers */
        int shmid;
        uint64_t size;
        uid_t uid;               /* the pool's owner, for messages */
        QuotaCharge charge;
} Leftover;

typedef struct Reaper {
        SbList leftovers;
        uint32_t n;
        uint64_t bytes;          /* their segments' sizes, added up (for max_bytes) */
        sd_event *event;
        sd_event_source *timer;  /* made with the first leftover; on while there are any */
} Reaper;

/* No leftovers; their timer will be on @event. */
void reaper_init(Reaper *r, sd_event *event);

/* Free every leftover, giving back its charge. */
void reaper_clear(Reaper *r);

/* A Leftover for a pool to keep until its drop (zeroed; free() it if unused). */
Leftover *leftover_new(void);

/*
 * At the drop of a pool of @uid: detach the daemon from @seg; if the segment still exists,
 * *@lo (taken) keeps it with @charge (moved) until it is gone. Never allocates.
 */
void reaper_drop_segment(Reaper *r, Segment *seg, uid_t uid, QuotaCharge *charge, Leftover **lo);

/* How many leftovers of @uid's pools there are, and their bytes. */
void reaper_count(const Reaper *r, uid_t uid, uint64_t *pools, uint64_t *bytes);

/* Look at every leftover now; free those whose segment is gone. Returns how many went. */
uint32_t reaper_reap(Reaper *r);

/* A new segment got @shmid: whatever had it before is gone. */
void reaper_forget(Reaper *r, int shmid);
