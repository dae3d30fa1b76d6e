/*
 * handoff.c: handoffs per second of 64-byte batches through shmbrokerd, beside the
 * bound set by a bare Unix-socket request/reply round trip, measured in one run.
 *
 * Through the daemon: one producer process (acquire, write 64 bytes into the slot,
 * publish; the publish pipelined with the next acquire) and one consumer process
 * (consume, read the 64 bytes, release; the release pipelined with the next consume),
 * so each side pays one round trip per batch, as in steady state. The bare bound: one
 * process sends 64 bytes, the other answers 64 bytes, over a socketpair.
 *
 * Usage: handoff-bench --daemon PATH [--seconds N]   (starts its own daemon)
 *        handoff-bench --socket PATH [--seconds N]   (uses a running daemon)
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int connect_to(const char *path) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

typedef struct Line {
        int fd;
        char buf[65536];
        size_t len;
} Line;

/* Read one reply line into @out (NUL-terminated). */
static int read_line(Line *l, char *out, size_t outlen) {
        for (;;) {
                char *nl = memchr(l->buf, '\n', l->len);
                if (nl) {
                        size_t n = (size_t)(nl - l->buf);
                        if (n >= outlen)
                                return -1;
                        memcpy(out, l->buf, n);
                        out[n] = 0;
                        memmove(l->buf, nl + 1, l->len - n - 1);
                        l->len -= n + 1;
                        return 0;
                }
                ssize_t r = read(l->fd, l->buf + l->len, sizeof(l->buf) - l->len);
                if (r <= 0)
                        return -1;
                l->len += (size_t)r;
        }
}

static int send_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t r = write(fd, s, n);
                if (r <= 0)
                        return -1;
                s += r;
                n -= (size_t)r;
        }
        return 0;
}

static long field(const char *line, const char *key) {
        char pat[64];
        const char *p;

        snprintf(pat, sizeof(pat), "\"%s\":", key);
        p = strstr(line, pat);
        return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

static int expect_ok(Line *l, char *reply, size_t len) {
        if (read_line(l, reply, len) < 0 || !strstr(reply, "\"ok\":true")) {
                fprintf(stderr, "handoff-bench: unexpected reply: %s\n", reply);
                return -1;
        }
        return 0;
}

static int run_producer(const char *sock, double seconds) {
        Line l = { .fd = connect_to(sock) };
        char reply[4096], req[256];
        long slot, shmid;
        char *base;
        double end;

        if (l.fd < 0)
                return 1;
        snprintf(req, sizeof(req), "{\"op\":\"hello\",\"role\":\"producer\"}\n"
                 "{\"op\":\"create\",\"pool\":\"handoff\",\"slot_size\":%d,\"slots\":4}\n"
                 "{\"op\":\"acquire\",\"pool\":\"handoff\"}\n", BATCH);
        if (send_all(l.fd, req, strlen(req)) < 0 || expect_ok(&l, reply, sizeof(reply)) < 0 ||
            expect_ok(&l, reply, sizeof(reply)) < 0)
                return 1;
        shmid = field(reply, "shmid");
        base = shmat((int)shmid, NULL, 0);
        if (base == (void *)-1)
                return 1;
        end = now_s() + seconds + 0.5;
        for (uint64_t n = 0;; n++) {
                if (expect_ok(&l, reply, sizeof(reply)) < 0)
                        return 1;
                slot = field(reply, "slot");
                memset(base + slot * 4096, (int)(n & 0xff), BATCH);
                if (now_s() > end) {
                        snprintf(req, sizeof(req), "{\"op\":\"publish\",\"pool\":\"handoff\",\"slot\":%ld,\"nbytes\":%d}\n"
                                 "{\"op\":\"end\",\"pool\":\"handoff\"}\n", slot, BATCH);
                        send_all(l.fd, req, strlen(req));
                        expect_ok(&l, reply, sizeof(reply));
                        expect_ok(&l, reply, sizeof(reply));
                        break;
                }
                snprintf(req, sizeof(req), "{\"op\":\"publish\",\"pool\":\"handoff\",\"slot\":%ld,\"nbytes\":%d}\n"
                         "{\"op\":\"acquire\",\"pool\":\"handoff\"}\n", slot, BATCH);
                if (send_all(l.fd, req, strlen(req)) < 0 || expect_ok(&l, reply, sizeof(reply)) < 0)
                        return 1;
        }
        shmdt(base);
        close(l.fd);
        return 0;
}

static double run_consumer(const char *sock, double seconds, uint64_t *count) {
        Line l = { .fd = -1 };
        char reply[4096], req[256];
        volatile char sink = 0;
        char *base = NULL;
        double t0 = 0, t1;
        uint64_t n = 0;

        for (int i = 0; i < 200 && l.fd < 0; i++) {
                l.fd = connect_to(sock);
                if (l.fd < 0)
                        usleep(10000);
        }
        if (l.fd < 0)
                return -1;
        /* Wait for the producer to create the pool. */
        for (int i = 0; i < 200; i++) {
                snprintf(req, sizeof(req), "%s{\"op\":\"open\",\"pool\":\"handoff\"}\n",
                         i == 0 ? "{\"op\":\"hello\",\"role\":\"consumer\"}\n" : "");
                send_all(l.fd, req, strlen(req));
                if (i == 0 && expect_ok(&l, reply, sizeof(reply)) < 0)
                        return -1;
                if (read_line(&l, reply, sizeof(reply)) < 0)
                        return -1;
                if (strstr(reply, "\"ok\":true"))
                        break;
                usleep(10000);
        }
        base = shmat((int)field(reply, "shmid"), NULL, SHM_RDONLY);
        if (base == (void *)-1)
                return -1;
        snprintf(req, sizeof(req), "{\"op\":\"consume\",\"pool\":\"handoff\"}\n");
        send_all(l.fd, req, strlen(req));
        for (;;) {
                long slot;
                if (expect_ok(&l, reply, sizeof(reply)) < 0)
                        return -1;
                if (strstr(reply, "\"eof\":true"))
                        break;
                slot = field(reply, "slot");
                for (int i = 0; i < BATCH; i++)
                        sink ^= base[slot * 4096 + i];
                n++;
                if (n == 1000)
                        t0 = now_s();   /* after a warm-up */
                snprintf(req, sizeof(req), "{\"op\":\"release\",\"pool\":\"handoff\",\"slot\":%ld}\n"
                         "{\"op\":\"consume\",\"pool\":\"handoff\"}\n", slot);
                if (send_all(l.fd, req, strlen(req)) < 0 || expect_ok(&l, reply, sizeof(reply)) < 0)
                        return -1;
        }
        t1 = now_s();
        (void)seconds;
        (void)sink;     /* read once: the XOR above is the work measured, and clang wants a use */
        shmdt(base);
        close(l.fd);
        *count = n > 1000 ? n - 1000 : 0;
        return t1 - t0;
}

static double bare_round_trips(double seconds) {
        int sv[2];
        char buf[BATCH];
        pid_t pid;
        uint64_t n = 0;
        double t0, t;

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
                return -1;
        pid = fork();
        if (pid == 0) {
                close(sv[0]);
                for (;;) {
                        size_t got = 0;
                        while (got < BATCH) {
                                ssize_t r = read(sv[1], buf + got, BATCH - got);
                                if (r <= 0)
                                        _exit(0);
                                got += (size_t)r;
                        }
                        if (send_all(sv[1], buf, BATCH) < 0)
                                _exit(0);
                }
        }
        close(sv[1]);
        memset(buf, 1, sizeof(buf));
        t0 = now_s();
        do {
                for (int i = 0; i < 1000; i++) {
                        size_t got = 0;
                        send_all(sv[0], buf, BATCH);
                        while (got < BATCH) {
                                ssize_t r = read(sv[0], buf + got, BATCH - got);
                                if (r <= 0)
                                        return -1;
                                got += (size_t)r;
                        }
                }
                n += 1000;
                t = now_s();
        } while (t - t0 < seconds);
        close(sv[0]);
        waitpid(pid, NULL, 0);
        return (double)n / (t - t0);
}

int main(int argc, char **argv) {
        const char *daemon = NULL, *sock = NULL;
        char path[108];
        double seconds = 2, bare, dt;
        pid_t dpid = -1, ppid;
        uint64_t count = 0;
        int status;

        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--daemon") == 0)
                        daemon = argv[i + 1];
                else if (strcmp(argv[i], "--socket") == 0)
                        sock = argv[i + 1];
                else if (strcmp(argv[i], "--seconds") == 0)
                        seconds = atof(argv[i + 1]);
        }
        if (!daemon == !sock) {
                fprintf(stderr, "usage: handoff-bench (--daemon PATH | --socket PATH) [--seconds N]\n");
                return 2;
        }
        if (daemon) {
                snprintf(path, sizeof(path), "/tmp/shmbroker-bench-%d.sock", (int)getpid());
                sock = path;
                dpid = fork();
                if (dpid == 0) {
                        execl(daemon, daemon, "--socket", path, "--config", "/dev/null", (char *)NULL);
                        _exit(127);
                }
        }
        bare = bare_round_trips(seconds);
        ppid = fork();
        if (ppid == 0) {
                for (int i = 0; i < 200; i++) {
                        if (run_producer(sock, seconds) == 0)
                                _exit(0);
                        usleep(10000);
                }
                _exit(1);
        }
        dt = run_consumer(sock, seconds, &count);
        waitpid(ppid, &status, 0);
        if (dpid > 0) {
                kill(dpid, SIGTERM);
                waitpid(dpid, NULL, 0);
        }
        if (dt <= 0 || count == 0) {
                fprintf(stderr, "handoff-bench: the run through the daemon failed\n");
                return 1;
        }
        printf("bare Unix-socket round trip (64 B):           %10.0f round trips/s\n", bare);
        printf("shmbrokerd acquire/publish/consume/release:   %10.0f handoffs/s  (%.0f%% of the bare round trip)\n",
               (double)count / dt, 100.0 * ((double)count / dt) / bare);
        return 0;
}
