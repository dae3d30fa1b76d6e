/*
 * segment.c: creating, attaching and releasing SysV shared-memory segments.
 *
 * The promise "no segment outlives its users" rests on one Linux behaviour: a segment
 * marked with shmctl(IPC_RMID) is destroyed when its attach count drops to zero, and
 * until then Linux (unlike POSIX) still lets processes shmat() it by shmid. So the
 * daemon attaches each segment and marks it IPC_RMID immediately: clients attach it
 * later by shmid, and when the last of the daemon and its clients detaches or dies,
 * whoever dies first, the kernel frees it. Such a segment also has SHM_DEST set and key
 * IPC_PRIVATE (IPC_RMID of an attached segment makes its key private), which makes it
 * immune to logind's RemoveIPC= sweeping (it is already going away).
 *
 * What is left is the window between shmget() and IPC_RMID: a daemon killed there leaves
 * a segment that nobody will remove. So the segment carries a key of the daemon's own
 * during that window (SEGMENT_KEY_PREFIX and the creator's pid, segment.h), and a daemon
 * that starts removes the segments with such a key whose creator is gone and that are
 * exactly as shmget() made them (segment_remove_orphans()). Other programs of the same
 * uid, root's included, use SysV segments too: every test must pass before one is removed.
 *
 * The kernel grants a segment's group bits to the members of its creator's group (cgid,
 * the creator's effective gid at shmget()) as well as to those of its group, and IPC_SET
 * cannot change the creator. A daemon running as root therefore creates each segment
 * under the pool's own group (setegid() around shmget()): the creator's group then admits
 * nobody the pool's group does not. A daemon without root creates them under its own
 * group, which must be one that no client is in (docs/operations.md; creator.c checks).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "log.h"
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

static key_t segment_key(void) {
        return (key_t)(SEGMENT_KEY_PREFIX | ((uint32_t)getpid() & SEGMENT_KEY_PID_MASK));
}

/* shmget() with @gid as the creator's group: root takes it as its effective gid for the
 * call; anyone else creates under its own. Returns the shmid, or -errno described in @why. */
static int shmget_in_group(key_t key, uint64_t size, bool huge_pages, gid_t gid, SbReason *why) {
        int flags = IPC_CREAT | IPC_EXCL | 0600 | (huge_pages ? SHM_HUGETLB : 0);
        gid_t egid = getegid();
        bool switch_group = geteuid() == 0 && gid != egid;
        int shmid, error;

        if (switch_group && setegid(gid) < 0) {
                error = errno;
                return sb_fail(why, -error, "cannot create a segment under group %u: %s", (unsigned)gid,
                               strerror(error));
        }
        shmid = shmget(key, size, flags);
        error = errno;
        /* Root that could take a group can always go back to its own. */
        if (switch_group && setegid(egid) < 0)
                abort();
        if (shmid >= 0)
                return shmid;
        describe_shmget_error(error, size, huge_pages, why);
        return -error;
}

int segment_create(Segment *seg, uint64_t size, bool huge_pages, uid_t uid, gid_t gid,
                   unsigned mode, SbReason *why) {
        struct shmid_ds ds;
        void *addr;
        int shmid, r;

        r = segment_check_limits(size, why);
        if (r < 0)
                return r;

        shmid = shmget_in_group(segment_key(), size, huge_pages, gid, why);
        /* Our key is taken only by a segment of a process that had our pid in another pid
         * namespace (the orphans of our own went at start): do without the key. */
        if (shmid == -EEXIST)
                shmid = shmget_in_group(IPC_PRIVATE, size, huge_pages, gid, why);
        if (shmid < 0)
                return shmid == -EINVAL ? -E2BIG : shmid;

        /*
         * Between shmget() and IPC_RMID the segment would outlive a crash of ours: keep the
         * window to these two calls (what a crash leaves in it carries our key, for the next
         * daemon to remove). Attach first, because IPC_RMID on a segment nobody has attached
         * destroys it immediately.
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

bool segment_exists(int shmid, uint64_t size) {
        struct shmid_ds ds;

        /* EACCES: it is there, but its owner took our read permission away (IPC_SET). */
        if (shmctl(shmid, IPC_STAT, &ds) < 0)
                return errno == EACCES;
        /* Its owner may change its mode and, with it, its ctime; never its creator or size. */
        return ds.shm_cpid == getpid() && ds.shm_perm.cuid == geteuid() && ds.shm_segsz == size;
}

/* /proc/stat's btime: the wall-clock second the machine booted, or 0. */
static uint64_t boot_time(void) {
        unsigned long long t = 0;
        char line[256];
        FILE *f = fopen("/proc/stat", "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "btime %llu", &t) == 1)
                        break;
        fclose(f);
        return t;
}

/*
 * Whether the process that created a segment at @ctime (wall clock) as @pid is gone: no
 * such process, a zombie, ourselves (it had our pid before us), or a process that started
 * after the segment was made (the pid was reused). When in doubt, it is alive.
 */
static bool creator_is_gone(pid_t pid, time_t ctime) {
        char path[64], buf[1024], *p, *save = NULL;
        unsigned long long start_ticks = 0;
        long hz = sysconf(_SC_CLK_TCK);
        uint64_t btime;
        size_t n;
        FILE *f;

        if (pid == getpid())
                return true;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        f = fopen(path, "re");
        if (!f)
                return errno == ENOENT;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        /* "pid (comm) state ppid ...": comm may hold anything, ')' too; the fields after its
         * last ')' are the state (the 3rd) up to the start time (the 22nd). */
        p = strrchr(buf, ')');
        if (!p || p[1] != ' ')
                return false;
        if (p[2] == 'Z' || p[2] == 'X')
                return true;
        p = strtok_r(p + 2, " ", &save);
        for (int field = 3; p && field < 22; field++)
                p = strtok_r(NULL, " ", &save);
        btime = boot_time();
        if (!p || sscanf(p, "%llu", &start_ticks) != 1 || btime == 0 || hz <= 0)
                return false;
        /* Both count whole seconds here: one second of slack. */
        return btime + start_ticks / (unsigned long long)hz > (uint64_t)ctime + 1;
}

static bool is_orphan(const struct shmid_ds *ds) {
        uint32_t key = (uint32_t)ds->shm_perm.__key;
        pid_t pid = (pid_t)(key & SEGMENT_KEY_PID_MASK);

        return (key & SEGMENT_KEY_PREFIX_MASK) == SEGMENT_KEY_PREFIX && ds->shm_cpid == pid &&
               ds->shm_perm.mode == 0600 && ds->shm_nattch == 0 && ds->shm_perm.uid == geteuid() &&
               ds->shm_perm.cuid == geteuid() && creator_is_gone(pid, ds->shm_ctime);
}

int segment_remove_orphans(void) {
        struct shm_info info;
        int max, n = 0;

        /* SHM_INFO gives the highest index in use; SHM_STAT takes an index and gives the
         * shmid. A segment we may not read is not one of ours (ours are 0600 and ours). */
        max = shmctl(0, SHM_INFO, (struct shmid_ds *)(void *)&info);
        if (max < 0)
                return -errno;
        for (int i = 0; i <= max; i++) {
                struct shmid_ds ds;
                int shmid = shmctl(i, SHM_STAT, &ds);

                if (shmid < 0 || !is_orphan(&ds))
                        continue;
                if (shmctl(shmid, IPC_RMID, NULL) < 0) {
                        log_warning_errno(-errno, "cannot remove segment %d orphaned by shmbrokerd pid %d", shmid,
                                          (int)ds.shm_cpid);
                        continue;
                }
                log_event(LOG_NOTICE, LOG_EVENT_ORPHAN_REMOVED, NULL, NULL,
                          "removed segment %d (%llu bytes, key 0x%08x) orphaned by shmbrokerd pid %d, killed before it "
                          "marked it for removal", shmid, (unsigned long long)ds.shm_segsz,
                          (unsigned)ds.shm_perm.__key, (int)ds.shm_cpid);
                n++;
        }
        return n;
}
