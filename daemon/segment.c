/*
 * segment.c: creating, attaching and releasing SysV shared-memory segments.
 *
 * The promise "no segment outlives its users" rests on one Linux behaviour: a segment
 * marked with shmctl(IPC_RMID) is destroyed when its attach count drops to zero, and
 * until then Linux (unlike POSIX) still lets processes shmat() it by shmid. So the
 * daemon attaches each segment and marks it IPC_RMID immediately: clients attach it
 * later by shmid, and when the last of the daemon and its clients detaches or dies,
 * whoever dies first, the kernel frees it. Even SIGKILL of the daemon leaks nothing.
 * Such a segment also has key IPC_PRIVATE and SHM_DEST set, which makes it immune to
 * logind's RemoveIPC= sweeping (it is already going away).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "sb-size.h"
#include "sb-error.h"
#include "segment.h"

static uint64_t read_u64_file(const char *path, uint64_t fallback) {
        unsigned long long v;
        FILE *f = fopen(path, "re");

        if (!f)
                return fallback;
        if (fscanf(f, "%llu", &v) != 1)
                v = fallback;
        fclose(f);
        return v;
}

static uint64_t huge_page_size(void) {
        char line[256];
        unsigned long long kb = 0;
        FILE *f = fopen("/proc/meminfo", "re");

        if (!f)
                return 2u << 20;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Hugepagesize: %llu kB", &kb) == 1)
                        break;
        fclose(f);
        return kb ? kb << 10 : 2u << 20;
}

uint64_t segment_page_size(bool huge_pages) {
        return huge_pages ? huge_page_size() : (uint64_t)sysconf(_SC_PAGESIZE);
}

static int segment_check_limits(uint64_t size, SbReason *why) {
        uint64_t shmmax = read_u64_file("/proc/sys/kernel/shmmax", UINT64_MAX);
        uint64_t shmall = read_u64_file("/proc/sys/kernel/shmall", UINT64_MAX);
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        char a[32], b[32];

        if (size > shmmax)
                return sb_fail(why, -E2BIG, "segment of %s exceeds the kernel limit shmmax (%s)",
                               sb_format_size(size, a, sizeof(a)), sb_format_size(shmmax, b, sizeof(b)));
        /* shmall counts base pages over all segments; one segment alone must fit too. */
        if (size / page > shmall)
                return sb_fail(why, -E2BIG, "segment of %s exceeds the kernel limit shmall (%llu pages)",
                               sb_format_size(size, a, sizeof(a)), (unsigned long long)shmall);
        return 0;
}

static void describe_shmget_error(int error, uint64_t size, bool huge_pages, SbReason *why) {
        char a[32];

        sb_format_size(size, a, sizeof(a));
        switch (error) {
        case ENOSPC:
                sb_reason_set(why, "no room for a segment of %s: the kernel limit shmmni "
                         "(segments) or shmall (total pages) is reached", a);
                break;
        case ENOMEM:
        case EPERM:
                if (huge_pages)
                        sb_reason_set(why, "no huge pages for a segment of %s (vm.nr_hugepages, "
                                 "and the group in vm.hugetlb_shm_group)", a);
                else
                        sb_reason_set(why, "not enough memory for a segment of %s", a);
                break;
        case EINVAL:
                sb_reason_set(why, "the kernel refuses a segment of %s (shmmax or shmmin)", a);
                break;
        default:
                sb_reason_set(why, "cannot create a segment of %s: %s", a, strerror(error));
        }
}

int segment_create(Segment *seg, uint64_t size, bool huge_pages, uid_t uid, gid_t gid,
                   unsigned mode, SbReason *why) {
        struct shmid_ds ds;
        void *addr;
        int shmid, r;

        r = segment_check_limits(size, why);
        if (r < 0)
                return r;

        shmid = shmget(IPC_PRIVATE, size, IPC_CREAT | IPC_EXCL | 0600 | (huge_pages ? SHM_HUGETLB : 0));
        if (shmid < 0) {
                r = -errno;
                describe_shmget_error(-r, size, huge_pages, why);
                return r == -EINVAL ? -E2BIG : r;
        }

        /*
         * Between shmget() and IPC_RMID the segment would outlive a crash of ours: keep
         * the window to these two calls. Attach first, because IPC_RMID on a segment
         * nobody has attached destroys it immediately.
         */
        addr = shmat(shmid, NULL, 0);
        if (addr == (void *)-1) {  /* NOLINT(performance-no-int-to-ptr): shmat()'s error value */
                r = -errno;
                (void)shmctl(shmid, IPC_RMID, NULL);
                sb_reason_set(why, "cannot attach the new segment: %s", strerror(-r));
                return r;
        }
        if (shmctl(shmid, IPC_RMID, NULL) < 0) {
                r = -errno;
                (void)shmdt(addr);
                sb_reason_set(why, "cannot mark the new segment for removal: %s", strerror(-r));
                return r;
        }

        /*
         * Give the segment to the pool's owner and group. The daemon stays its creator
         * (shm_perm.cuid), which keeps its right to change it; the kernel then applies
         * exactly these bits to every client's shmat().
         */
        if (shmctl(shmid, IPC_STAT, &ds) < 0 ||
            (ds.shm_perm.uid = uid, ds.shm_perm.gid = gid, ds.shm_perm.mode = (unsigned short)mode,
             shmctl(shmid, IPC_SET, &ds) < 0)) {
                r = -errno;
                (void)shmdt(addr);
                sb_reason_set(why, "cannot set the owner and mode of the new segment: %s", strerror(-r));
                return r;
        }

        *seg = (Segment){ .shmid = shmid, .addr = addr, .size = size };
        return 0;
}

void segment_release(Segment *seg) {
        if (seg->addr)
                (void)shmdt(seg->addr);
        *seg = SEGMENT_NULL;
}
