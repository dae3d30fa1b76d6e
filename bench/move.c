/*
 * move.c: 2 producers and 1 consumer moving batches through 4 slots of shared memory,
 * every byte written by a producer and read by the consumer, in one of two ways:
 *
 *   --mode ring   the bound: a bare SysV segment cut into slots, with slot numbers passed
 *                 through two pipes (free slots to the producers, ready ones to the
 *                 consumer): the simplest correct ring, no daemon;
 *   --mode lib    shmbroker through libshmbroker: sb_publish_acquire() and
 *                 sb_release_consume(), one round trip per batch on each side;
 *   --mode many   shmbroker with up to --batch K batches per request:
 *                 sb_publish_acquire_many() and sb_release_consume_many();
 *   --mode memcpy one process copying BYTES from one buffer to another, N times: what a
 *                 single extra copy of every batch costs (the floor of copying transports).
 *
 * Usage: move --mode ring|lib|many --size BYTES --count N [--slots N] [--batch K] [--socket PATH]
 * Prints one line: "<batches/s> <GB/s> <seconds>" for the N batches after a warm-up.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmbroker.h"

static unsigned SLOTS = 4;
static unsigned BATCH = 16;
#define PRODUCERS 2
#define WARMUP 8

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t read_all(const void *p, size_t n) {
        const uint64_t *w = p;
        uint64_t s = 0;
        size_t i;

        for (i = 0; i < n / 8; i++)
                s += w[i];
        for (i *= 8; i < n; i++)
                s += ((const uint8_t *)p)[i];
        return s;
}

static volatile uint64_t sink;

static int full_read(int fd, void *buf, size_t n) {
        for (size_t got = 0; got < n;) {
                ssize_t r = read(fd, (char *)buf + got, n - got);
                if (r <= 0)
                        return -1;
                got += (size_t)r;
        }
        return 0;
}

/* --- the bare ring ------------------------------------------------------------------------ */

static double run_ring(size_t size, long count) {
        long page = sysconf(_SC_PAGESIZE);
        size_t stride = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
        int shmid = shmget(IPC_PRIVATE, stride * SLOTS, IPC_CREAT | 0600), freep[2], readyp[2];
        uint8_t *base;
        double t0 = 0;
        long per = (count + WARMUP) / PRODUCERS;

        if (shmid < 0 || pipe(freep) < 0 || pipe(readyp) < 0)
                return -1;
        base = shmat(shmid, NULL, 0);
        shmctl(shmid, IPC_RMID, NULL);     /* gone with its last user, as shmbroker's are */
        if (base == (void *)-1)
                return -1;
        for (uint32_t s = 0; s < SLOTS; s++)
                if (write(freep[1], &s, sizeof(s)) != sizeof(s))
                        return -1;
        for (int p = 0; p < PRODUCERS; p++) {
                if (fork() == 0) {
                        for (long i = 0; i < per; i++) {
                                uint32_t s;
                                if (full_read(freep[0], &s, sizeof(s)) < 0)
                                        _exit(1);
                                memset(base + s * stride, (int)(i & 0xff), size);
                                if (write(readyp[1], &s, sizeof(s)) != sizeof(s))
                                        _exit(1);
                        }
                        _exit(0);
                }
        }
        for (long i = 0; i < per * PRODUCERS; i++) {
                uint32_t s;
                if (i == WARMUP)
                        t0 = now_s();
                if (full_read(readyp[0], &s, sizeof(s)) < 0)
                        return -1;
                sink += read_all(base + s * stride, size);
                if (write(freep[1], &s, sizeof(s)) != sizeof(s))
                        return -1;
        }
        double dt = now_s() - t0;
        while (wait(NULL) > 0)
                ;
        shmdt(base);
        return dt;
}

/* --- through shmbroker -------------------------------------------------------------------- */

static double run_lib(const char *sock, size_t size, long count) {
        char name[64];
        sb_client *c;
        sb_pool *pool;
        sb_batch b = { .eof = true };
        long per = (count + WARMUP) / PRODUCERS, n = 0;
        double t0 = 0;
        int r;

        snprintf(name, sizeof(name), "move-%d", (int)getpid());
        if (sb_connect(&c, sock, SB_ROLE_CONSUMER, "move-consumer") < 0 ||
            sb_pool_create(c, &pool, name, size, SLOTS, NULL) < 0)
                return -1;
        for (int p = 0; p < PRODUCERS; p++) {
                if (fork() == 0) {
                        sb_client *pc;
                        sb_pool *pp;
                        void *ptr;
                        uint32_t slot;
                        size_t cap;
                        if (sb_connect(&pc, sock, SB_ROLE_PRODUCER, "move-producer") < 0 ||
                            sb_pool_open(pc, &pp, name) < 0 || sb_acquire(pp, -1, &ptr, &slot, &cap) < 0)
                                _exit(1);
                        for (long i = 0; i < per; i++) {
                                memset(ptr, (int)(i & 0xff), size);
                                r = i + 1 < per ? sb_publish_acquire(pp, slot, size, -1, NULL, -1, &ptr, &slot, &cap)
                                                : sb_publish(pp, slot, size, -1, NULL);
                                if (r < 0)
                                        _exit(1);
                        }
                        sb_end(pp);
                        sb_client_free(pc);
                        _exit(0);
                }
        }
        for (;;) {
                r = n == 0 ? sb_consume(pool, -1, &b) : sb_release_consume(pool, &b, -1);
                if (r < 0)
                        return -1;
                if (b.eof) {
                        if (n >= per * PRODUCERS)
                                break;
                        continue;        /* one producer ended before the other opened */
                }
                if (n == WARMUP)
                        t0 = now_s();
                sink += read_all(b.data, b.nbytes);
                n++;
        }
        double dt = now_s() - t0;
        while (wait(NULL) > 0)
                ;
        sb_client_free(c);
        return dt;
}

/* --- one copy ------------------------------------------------------------------------------ */

static double run_memcpy(size_t size, long count) {
        char *src = malloc(size), *dst = malloc(size);
        double t0;

        if (!src || !dst)
                return -1;
        memset(src, 1, size);
        memset(dst, 0, size);
        for (long i = 0; i < WARMUP; i++)
                memcpy(dst, src, size);
        t0 = now_s();
        for (long i = 0; i < count; i++) {
                src[(size_t)i % size] = (char)i;    /* a new batch each time: no copy is skipped */
                memcpy(dst, src, size);
                sink += (unsigned char)dst[(size_t)i % size];
        }
        t0 = now_s() - t0;
        free(src);
        free(dst);
        return t0;
}

/* --- through shmbroker, several batches per request ---------------------------------------- */

static void many_producer(const char *sock, const char *name, size_t size, long per) {
        sb_slot held[SB_MANY_MAX];
        sb_publish_item pub[SB_MANY_MAX];
        sb_client *pc;
        sb_pool *pp;
        size_t nh = 0, k;
        long i = 0;

        if (sb_connect(&pc, sock, SB_ROLE_PRODUCER, "move-producer") < 0 || sb_pool_open(pc, &pp, name) < 0 ||
            sb_publish_acquire_many(pp, NULL, 0, -1, held, BATCH < per ? BATCH : (size_t)per, &nh) < 0)
                _exit(1);
        while (nh > 0) {
                for (k = 0; k < nh; k++, i++) {
                        memset(held[k].data, (int)(i & 0xff), size);
                        pub[k] = (sb_publish_item){ .slot = held[k].slot, .nbytes = size, .seq = -1 };
                }
                /* Never take more than is left to write: nothing to give back at the end. */
                size_t want = per - i < (long)BATCH ? (size_t)(per - i) : BATCH;
                if (sb_publish_acquire_many(pp, pub, k, -1, held, want, &nh) < 0)
                        _exit(1);
        }
        sb_end(pp);
        sb_client_free(pc);
        _exit(0);
}

static double run_many(const char *sock, size_t size, long count) {
        static sb_batch bs[SB_MANY_MAX];
        char name[64];
        sb_client *c;
        sb_pool *pool;
        long per = (count + WARMUP) / PRODUCERS, n = 0;
        size_t nb = 0;
        double t0 = 0;

        snprintf(name, sizeof(name), "move-%d", (int)getpid());
        if (sb_connect(&c, sock, SB_ROLE_CONSUMER, "move-consumer") < 0 ||
            sb_pool_create(c, &pool, name, size, SLOTS, NULL) < 0)
                return -1;
        for (int p = 0; p < PRODUCERS; p++)
                if (fork() == 0)
                        many_producer(sock, name, size, per);
        for (;;) {
                if (sb_release_consume_many(pool, bs, nb, -1, bs, BATCH, &nb) < 0)
                        return -1;
                if (bs[0].eof) {
                        if (n >= per * PRODUCERS)
                                break;
                        continue;        /* one producer ended before the other opened */
                }
                for (size_t i = 0; i < nb; i++) {
                        if (n == WARMUP)
                                t0 = now_s();
                        sink += read_all(bs[i].data, bs[i].nbytes);
                        n++;
                }
        }
        double dt = now_s() - t0;
        while (wait(NULL) > 0)
                ;
        sb_client_free(c);
        return dt;
}

int main(int argc, char **argv) {
        const char *mode = NULL, *sock = NULL;
        size_t size = 0;
        long count = 0;
        double dt;

        for (int i = 1; i + 1 < argc; i += 2) {
                if (!strcmp(argv[i], "--mode"))
                        mode = argv[i + 1];
                else if (!strcmp(argv[i], "--size"))
                        size = strtoull(argv[i + 1], NULL, 10);
                else if (!strcmp(argv[i], "--count"))
                        count = strtol(argv[i + 1], NULL, 10);
                else if (!strcmp(argv[i], "--socket"))
                        sock = argv[i + 1];
                else if (!strcmp(argv[i], "--slots"))
                        SLOTS = (unsigned)strtoul(argv[i + 1], NULL, 10);
                else if (!strcmp(argv[i], "--batch"))
                        BATCH = (unsigned)strtoul(argv[i + 1], NULL, 10);
        }
        if (!mode || !size || count <= 0 || SLOTS < 1 || BATCH < 1 || BATCH > SB_MANY_MAX) {
                fprintf(stderr, "usage: move --mode ring|lib|many --size BYTES --count N [--slots N] [--batch K] "
                        "[--socket PATH]\n");
                return 2;
        }
        if (!strcmp(mode, "memcpy")) {
                dt = run_memcpy(size, count);
                printf("%.1f %.3f %.3f\n", (double)count / dt, (double)count * (double)size / dt / 1e9, dt);
                return dt > 0 ? 0 : 1;
        }
        dt = !strcmp(mode, "ring") ? run_ring(size, count) :
             !strcmp(mode, "many") ? run_many(sock, size, count) : run_lib(sock, size, count);
        if (dt <= 0) {
                fprintf(stderr, "move: the %s run failed\n", mode);
                return 1;
        }
        long moved = (count + WARMUP) / PRODUCERS * PRODUCERS - WARMUP;
        printf("%.1f %.3f %.3f\n", (double)moved / dt, (double)moved * (double)size / dt / 1e9, dt);
        return 0;
}
