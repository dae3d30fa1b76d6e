/*
 * segment.h: one SysV shared-memory segment owned by the daemon, and the kernel's
 * limits on segments (shmmax, shmall, shmmni).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sb-error.h"

typedef struct Segment {
        int shmid;           /* -1 when there is none */
        void *addr;          /* the daemon's own attachment */
        uint64_t size;
} Segment;

#define SEGMENT_NULL ((Segment){ .shmid = -1 })

/* The page size slots are aligned to: the base page, or the default huge page. */
uint64_t segment_page_size(bool huge_pages);

/*
 * Create a segment of @size bytes, attach it, mark it for removal at once, and give it
 * owner @uid, group @gid and permission @mode. Returns 0 or -errno, described in @why;
 * -E2BIG/-ENOSPC/-ENOMEM mean a kernel limit (shmmax, shmall, shmmni, memory).
 */
int segment_create(Segment *seg, uint64_t size, bool huge_pages, uid_t uid, gid_t gid,
                   unsigned mode, SbReason *why);

/* Detach the daemon from the segment; the kernel frees it once no one is attached. */
void segment_release(Segment *seg);
