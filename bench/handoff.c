/*
 * handoff.c: handoffs per second of 64-byte batches through shmbrokerd, beside a bare
 * Unix-socket bound of the same shape, measured in one run.
 *
 * Through the daemon: one producer process (acquire, write 64 bytes into the slot,
 * publish; the publish pipelined with the next acquire) and one consumer process
 * (consume, read the 64 bytes, release; the release pipelined with the next consume),
 * so each side pays one round trip per batch, and the two sides' round trips overlap:
 * a handoff costs one round trip of each of two clients through one server process.
 *
 * The bound, of the same shape: one echo server process and two client processes, each
 * client in a loop of one 64-byte request and its 64-byte reply over its own Unix socket,
 * the server answering both (poll), so the two clients' round trips overlap as the
 * producer's and the consumer's do. Its figure is round trips per second per client: the
 * handoffs per second of a pair that needed nothing but one round trip each.
 *
 * The two are measured in alternate rounds (bare, daemon, bare, ...), so both see the
 * same machine; each figure is the median of the rounds, with min and max.
 *
 * Usage: handoff-bench --daemon PATH [--seconds N] [--rounds N]   (starts its own daemon)
 *        handoff-bench --socket PATH [--seconds N] [--rounds N]   (uses a running daemon)
 */
#include <errno.h>
#include <poll.h>
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

static int run_producer(const char *sock, const char *pool, double seconds) {
        Line l = { .fd = connect_to(sock) };
        char reply[4096], req[512];
        long slot, shmid, stride;
        char *base;
        double end;

        if (l.fd < 0)
                return 1;
        snprintf(req, sizeof(req), "{\"op\":\"hello\",\"role\":\"producer\"}\n"
                 "{\"op\":\"create\",\"pool\":\"%s\",\"slot_size\":%d,\"slots\":4}\n"
                 "{\"op\":\"acquire\",\"pool\":\"%s\"}\n", pool, BATCH, pool);
        if (send_all(l.fd, req, strlen(req)) < 0 || expect_ok(&l, reply, sizeof(reply)) < 0 ||
            expect_ok(&l, reply, sizeof(reply)) < 0)
                return 1;
        shmid = field(reply, "shmid");
        stride = field(reply, "stride");
        base = shmat((int)shmid, NULL, 0);
        if (base == (void *)-1 || stride <= 0)
                return 1;
        end = now_s() + seconds + 0.5;
        for (uint64_t n = 0;; n++) {
                if (expect_ok(&l, reply, sizeof(reply)) < 0)
                        return 1;
                slot = field(reply, "slot");
                memset(base + slot * stride, (int)(n & 0xff), BATCH);
                if (now_s() > end) {
                        snprintf(req, sizeof(req), "{\"op\":\"publish\",\"pool\":\"%s\",\"slot\":%ld,\"nbytes\":%d}\n"
                                 "{\"op\":\"end\",\"pool\":\"%s\"}\n", pool, slot, BATCH, pool);
                        send_all(l.fd, req, strlen(req));
                        expect_ok(&l, reply, sizeof(reply));
                        expect_ok(&l, reply, sizeof(reply));
                        break;
                }
                snprintf(req, sizeof(req), "{\"op\":\"publish\",\"pool\":\"%s\",\"slot\":%ld,\"nbytes\":%d}\n"
                         "{\"op\":\"acquire\",\"pool\":\"%s\"}\n", pool, slot, BATCH, pool);
                if (send_all(l.fd, req, strlen(req)) < 0 || expect_ok(&l, reply, sizeof(reply)) < 0)
                        return 1;
        }
        shmdt(base);
        close(l.fd);
        return 0;
}

static double run_consumer(const char *sock, const char *pool, uint64_t *count) {
        Line l = { .fd = -1 };
        char reply[4096], req[512];
        volatile char sink = 0;
        char *base = NULL;
        double t0 = 0, t1;
        uint64_t n = 0;
        long stride;

        for (int i = 0; i < 200 && l.fd < 0; i++) {
                l.fd = connect_to(sock);
                if (l.fd < 0)
                        usleep(10000);
        }
        if (l.fd < 0)
                return -1;
        /* Wait for the producer to create the pool. */
        for (int i = 0; i < 200; i++) {
                snprintf(req, sizeof(req), "%s{\"op\":\"open\",\"pool\":\"%s\"}\n",
                         i == 0 ? "{\"op\":\"hello\",\"role\":\"consumer\"}\n" : "", pool);
                send_all(l.fd, req, strlen(req));
                if (i == 0 && expect_ok(&l, reply, sizeof(reply)) < 0)
                        return -1;
                if (read_line(&l, reply, sizeof(reply)) < 0)
                        return -1;
                if (strstr(reply, "\"ok\":true"))
                        break;
                usleep(10000);
        }
        stride = field(reply, "stride");
        base = shmat((int)field(reply, "shmid"), NULL, SHM_RDONLY);
        if (base == (void *)-1 || stride <= 0)
                return -1;
        snprintf(req, sizeof(req), "{\"op\":\"consume\",\"pool\":\"%s\"}\n", pool);
        send_all(l.fd, req, strlen(req));
        for (;;) {
                long slot;
                if (expect_ok(&l, reply, sizeof(reply)) < 0)
                        return -1;
                if (strstr(reply, "\"eof\":true"))
                        break;
                slot = field(reply, "slot");
                for (int i = 0; i < BATCH; i++)
                        sink ^= base[slot * stride + i];
                n++;
                if (n == 1000)
                        t0 = now_s();   /* after a warm-up */
                snprintf(req, sizeof(req), "{\"op\":\"release\",\"pool\":\"%s\",\"slot\":%ld}\n"
                         "{\"op\":\"consume\",\"pool\":\"%s\"}\n", pool, slot, pool);
                if (send_all(l.fd, req, strlen(req)) < 0 || expect_ok(&l, reply, sizeof(reply)) < 0)
                        return -1;
        }
        t1 = now_s();
        (void)sink;     /* read once: the XOR above is the work measured, and clang wants a use */
        shmdt(base);
        close(l.fd);
        *count = n > 1000 ? n - 1000 : 0;
        return t1 - t0;
}

/* One round through the daemon: handoffs/s of a producer and a consumer on pool @pool. */
static double daemon_pair(const char *sock, const char *pool, double seconds) {
        uint64_t count = 0;
        pid_t ppid = fork();
        double dt;
        int status;

        if (ppid < 0)
                return -1;
        if (ppid == 0) {
                for (int i = 0; i < 200; i++) {
                        if (run_producer(sock, pool, seconds) == 0)
                                _exit(0);
                        usleep(10000);
                }
                _exit(1);
        }
        dt = run_consumer(sock, pool, &count);
        waitpid(ppid, &status, 0);
        if (dt <= 0 || count == 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -1;
        return (double)count / dt;
}

static int read_full(int fd, char *buf, size_t n) {
        for (size_t got = 0; got < n;) {
                ssize_t r = read(fd, buf + got, n - got);
                if (r <= 0)
                        return -1;
                got += (size_t)r;
        }
        return 0;
}

/* The echo server of the bare pair: answers each 64-byte request on either socket with
 * 64 bytes, until both clients have closed. */
_Noreturn static void echo_server(int fds[2]) {
        struct pollfd p[2] = { { .fd = fds[0], .events = POLLIN }, { .fd = fds[1], .events = POLLIN } };
        char buf[2][BATCH];
        size_t got[2] = { 0, 0 };
        int live = 2;

        while (live > 0) {
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        _exit(1);
                }
                for (int i = 0; i < 2; i++) {
                        if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t r = read(p[i].fd, buf[i] + got[i], BATCH - got[i]);
                        if (r <= 0) {
                                close(p[i].fd);
                                p[i].fd = -1;
                                live--;
                                continue;
                        }
                        got[i] += (size_t)r;
                        if (got[i] == BATCH) {
                                got[i] = 0;
                                if (send_all(p[i].fd, buf[i], BATCH) < 0)
                                        _exit(1);
                        }
                }
        }
        _exit(0);
}

/* One client of the bare pair: 1,000 round trips to warm up, then round trips for
 * @seconds; returns round trips/s. */
static double echo_client(int fd, double seconds) {
        char buf[BATCH];
        uint64_t n = 0;
        double t0 = 0, t = 0;

        memset(buf, 1, sizeof(buf));
        for (int i = 0; i < 1000; i++)
                if (send_all(fd, buf, BATCH) < 0 || read_full(fd, buf, BATCH) < 0)
                        return -1;
        t0 = now_s();
        do {
                for (int i = 0; i < 256; i++)
                        if (send_all(fd, buf, BATCH) < 0 || read_full(fd, buf, BATCH) < 0)
                                return -1;
                n += 256;
                t = now_s();
        } while (t - t0 < seconds);
        return (double)n / (t - t0);
}

/* One round of the bare pair: round trips/s per client, two clients through one echo
 * server. */
static double bare_pair(double seconds) {
        int sv[2][2], res[2];
        pid_t server, client[2];
        double rate[2];

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[0]) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv[1]) < 0 ||
            pipe(res) < 0)
                return -1;
        server = fork();
        if (server == 0) {
                int fds[2] = { sv[0][0], sv[1][0] };
                close(sv[0][1]);
                close(sv[1][1]);
                close(res[0]);
                close(res[1]);
                echo_server(fds);
        }
        close(sv[0][0]);
        close(sv[1][0]);
        for (int c = 0; c < 2; c++) {
                client[c] = fork();
                if (client[c] == 0) {
                        double r;
                        close(sv[1 - c][1]);
                        close(res[0]);
                        r = echo_client(sv[c][1], seconds);
                        if (write(res[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
                                _exit(1);
                        _exit(0);
                }
        }
        close(sv[0][1]);
        close(sv[1][1]);
        close(res[1]);
        if (read_full(res[0], (char *)&rate[0], sizeof(rate[0])) < 0 ||
            read_full(res[0], (char *)&rate[1], sizeof(rate[1])) < 0)
                rate[0] = rate[1] = -1;
        close(res[0]);
        for (int c = 0; c < 2; c++)
                if (client[c] > 0)
                        waitpid(client[c], NULL, 0);
        if (server > 0)
                waitpid(server, NULL, 0);
        if (rate[0] <= 0 || rate[1] <= 0)
                return -1;
        return (rate[0] + rate[1]) / 2;
}

static int by_value(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* Sorts @v and returns its median. */
static double median(double *v, int n) {
        qsort(v, (size_t)n, sizeof(v[0]), by_value);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define MAX_ROUNDS 64

int main(int argc, char **argv) {
        const char *daemon = NULL, *sock = NULL;
        char path[108], pool[64];
        double seconds = 2, bare[MAX_ROUNDS], pair[MAX_ROUNDS];
        int rounds = 3;
        pid_t dpid = -1;
        int rc = 0;

        for (int i = 1; i + 1 < argc; i += 2) {
                if (strcmp(argv[i], "--daemon") == 0)
                        daemon = argv[i + 1];
                else if (strcmp(argv[i], "--socket") == 0)
                        sock = argv[i + 1];
                else if (strcmp(argv[i], "--seconds") == 0)
                        seconds = atof(argv[i + 1]);
                else if (strcmp(argv[i], "--rounds") == 0)
                        rounds = atoi(argv[i + 1]);
        }
        if (!daemon == !sock || rounds < 1 || rounds > MAX_ROUNDS || !(seconds > 0)) {
                fprintf(stderr, "usage: handoff-bench (--daemon PATH | --socket PATH) [--seconds N] [--rounds N]\n");
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
        for (int r = 0; r < rounds; r++) {
                bare[r] = bare_pair(seconds);
                snprintf(pool, sizeof(pool), "handoff-%d-%d", (int)getpid(), r);
                pair[r] = daemon_pair(sock, pool, seconds);
                if (bare[r] <= 0 || pair[r] <= 0) {
                        fprintf(stderr, "handoff-bench: round %d failed (%s)\n", r + 1,
                                bare[r] <= 0 ? "the bare pair" : "the pair through the daemon");
                        rc = 1;
                        break;
                }
        }
        if (dpid > 0) {
                kill(dpid, SIGTERM);
                waitpid(dpid, NULL, 0);
        }
        if (rc)
                return rc;
        double mb = median(bare, rounds), mp = median(pair, rounds);
        printf("like for like: 2 clients, each one 64-byte round trip per handoff, overlapping, through one\n"
               "server process; median (min-max) of %d alternate rounds of %g s\n", rounds, seconds);
        printf("bare pair (echo server, 2 clients, Unix sockets): %8.0f round trips/s per client (%.0f-%.0f)\n",
               mb, bare[0], bare[rounds - 1]);
        printf("shmbrokerd pair (1 producer, 1 consumer, 4 slots): %8.0f handoffs/s (%.0f-%.0f), "
               "%.0f%% of the bare pair\n", mp, pair[0], pair[rounds - 1], 100.0 * mp / mb);
        return 0;
}
