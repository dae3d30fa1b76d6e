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

/*
 * The key a segment carries from shmget() until it is marked IPC_RMID (which makes it
 * private again): SEGMENT_KEY_PREFIX in bits 22-30 and the creating daemon's pid in bits
 * 0-21 (Linux pids stay below 2^22). A daemon killed in that window leaves a segment with
 * such a key, which the next daemon recognises and removes (segment_remove_orphans()).
 */
#define SEGMENT_KEY_PREFIX 0x6cc00000u
#define SEGMENT_KEY_PREFIX_MASK 0x7fc00000u
#define SEGMENT_KEY_PID_MASK 0x003fffffu

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
 * owner @uid, group @gid and permission @mode. Run as root, the daemon creates it with
 * @gid as its effective gid, so that its creator's group is its group. Returns 0 or
 * -errno, described in @why; -E2BIG/-ENOSPC/-ENOMEM mean a kernel limit (shmmax, shmall,
 * shmmni, memory).
 */
int segment_create(Segment *seg, uint64_t size, bool huge_pages, uid_t uid, gid_t gid,
                   unsigned mode, SbReason *why);

/* Detach the daemon from the segment; the kernel frees it once no one is attached. */
void segment_release(Segment *seg);

/* Whether segment @shmid of @size bytes, created by this process, still exists (someone
 * still has it attached). A shmid reused by another creator is not it. */
bool segment_exists(int shmid, uint64_t size);

/*
 * Remove the segments that a shmbrokerd of this uid created and then was killed before it
 * could mark them IPC_RMID: its key (the prefix, and a pid that is the segment's creator
 * and is gone), mode 0600 as shmget() left it, not marked, not attached. Every other
 * segment is left alone. Logs each one; returns how many, or -errno.
 */
int segment_remove_orphans(void);
