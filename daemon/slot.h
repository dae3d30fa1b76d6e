/*
 * slot.h: one slot of a pool and its state. Its own header, below pool.h, because the
 * ordered queue (order.h) keeps slots too.
 */
#pragma once

#include <stdint.h>

#include "quota.h"
#include "sb-list.h"

typedef struct Member Member;

typedef enum SlotState {
        SLOT_FREE,
        SLOT_WRITING,
        SLOT_READY,
        SLOT_READING,
        _SLOT_STATE_MAX,
} SlotState;

typedef struct Slot Slot;

struct Slot {
        uint32_t index;
        SlotState state;
        Member *holder;          /* while writing or reading */
        SbList link;             /* free list, a ready queue, or the holder's held list */
        uint64_t nbytes;
        uint64_t seq;
        uint64_t stream;
        uint32_t heap_pos;       /* ordered pools: place in the heap */
        int64_t declared;        /* ordered pools, while writing: the seq its acquire named, or -1 */
        uint32_t meta_len;
        uint64_t mark;           /* Pool.mark_gen when a many-slot request last named it */
        char *meta;              /* the producer's meta as it sent it (NULL: {}), while ready or reading */
        QuotaHold meta_hold;     /* meta_len bytes, held for the producer's uid while meta is kept */
        uint64_t since_usec;     /* when it entered its state */
};
