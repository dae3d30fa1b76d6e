/*
 * Tests of libshmbroker against a real shmbrokerd ($SHMBROKERD, else build/shmbrokerd),
 * started for each test on a socket in a fresh temporary directory.
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sb-unix.h"
#include "shmbroker.h"

static char dir[64], sock[96], logpath[96];
static pid_t daemon_pid = -1;

static bool daemon_answers(void) {
        struct sockaddr_un addr;
        int fd, r;

        if (sb_sockaddr_un(&addr, sock) < 0 || (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
                return false;
        r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
        close(fd);
        return r == 0;
}

static void daemon_start(void) {
        const char *bin = getenv("SHMBROKERD") ? getenv("SHMBROKERD") : "build/shmbrokerd";

        snprintf(dir, sizeof(dir), "/tmp/sbtest-lib-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(sock, sizeof(sock), "%s/s.sock", dir);
        snprintf(logpath, sizeof(logpath), "%s/shmbrokerd.log", dir);
        daemon_pid = fork();
        if (daemon_pid == 0) {
                /* Keep the test output readable: the daemon's log goes to a file, kept if it failed. */
                FILE *log = freopen(logpath, "w", stderr);
                (void)log;
                execl(bin, bin, "--socket", sock, "--config", "/dev/null", (char *)NULL);
                _exit(127);
        }
        /* The socket exists from bind(), a moment before listen(): wait until it answers. */
        for (int i = 0; i < 500; i++) {
                if (daemon_answers())
                        return;
                usleep(10000);
        }
        ck_abort_msg("the daemon did not start");
}

/* SIGTERM ends the daemon with status 0: one that crashed, exited on its own or (under
 * ASan) found a leak during the test fails the test, and its log is kept. */
static void daemon_stop(void) {
        int status = 0;

        if (daemon_pid > 0) {
                kill(daemon_pid, SIGTERM);
                ck_assert_int_eq(waitpid(daemon_pid, &status, 0), daemon_pid);
                daemon_pid = -1;
                ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the daemon ended with %s %d; its log: %s",
                              WIFEXITED(status) ? "status" : "signal",
                              WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), logpath);
        }
        unlink(logpath);
        rmdir(dir);
}

static sb_client *connect_as(sb_role role, const char *name) {
        sb_client *c = NULL;
        int r = sb_connect(&c, sock, role, name);
        ck_assert_msg(r == 0, "connect: %s", strerror(-r));
        return c;
}

START_TEST(round_trip_through_pointers) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, "p"), *c = connect_as(SB_ROLE_CONSUMER, "c");
        sb_pool *pp, *cp;
        sb_batch b;
        uint32_t slot;
        size_t cap;
        void *ptr;
        int64_t pid, uid;

        ck_assert_int_eq(sb_client_peer(p, &pid, &uid), 0);
        ck_assert_int_eq(pid, getpid());
        ck_assert_int_eq(uid, getuid());
        ck_assert_int_eq(sb_pool_create(p, &pp, "rt", 10000, 3, NULL), 0);
        ck_assert_uint_eq(sb_pool_stride(pp) % (uint64_t)sysconf(_SC_PAGESIZE), 0);
        ck_assert_uint_eq(sb_pool_slots(pp), 3);
        ck_assert_int_eq(sb_pool_open(c, &cp, "rt"), 0);
        ck_assert_int_eq(sb_pool_shmid(cp), sb_pool_shmid(pp));

        ck_assert_int_eq(sb_acquire(pp, 1000, &ptr, &slot, &cap), 0);
        ck_assert_uint_eq(cap, 10000);
        ck_assert_ptr_eq(ptr, (char *)sb_pool_base(pp) + slot * sb_pool_stride(pp));
        memset(ptr, 0xab, 10000);
        /* The meta arrives as sent, byte for byte (an integer past 2^53 and an exponent out of
         * a double's range included); only its line break became a space. */
        ck_assert_int_eq(sb_publish(pp, slot, 10000, 42, "{\"shape\": [100, 100],\n \"dtype\": \"uint8\", "
                                    "\"id\": 9007199254740993, \"x\": 1e400}"), 0);

        ck_assert_int_eq(sb_consume(cp, 1000, &b), 0);
        ck_assert(!b.eof);
        ck_assert_uint_eq(b.nbytes, 10000);
        ck_assert_uint_eq(b.seq, 42);
        ck_assert_str_eq(b.meta, "{\"shape\": [100, 100],  \"dtype\": \"uint8\", \"id\": 9007199254740993, \"x\": 1e400}");
        for (size_t i = 0; i < 10000; i++)
                ck_assert_uint_eq(((const unsigned char *)b.data)[i], 0xab);
        ck_assert_int_eq(sb_release(cp, b.slot, false), 0);
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

/* The permissions of the mapping of this process that contains @addr ("rw-s"), from the
 * kernel's own account of it; "" if none does. */
static const char *mapping_perms(const void *addr) {
        static char perms[5];
        unsigned long start, end;
        char *line = NULL;
        size_t n = 0;
        bool found = false;
        FILE *f = fopen("/proc/self/maps", "re");

        ck_assert_ptr_nonnull(f);
        while (!found && getline(&line, &n, f) > 0)
                found = sscanf(line, "%lx-%lx %4s", &start, &end, perms) == 3 && (uintptr_t)addr >= start &&
                        (uintptr_t)addr < end;
        free(line);
        fclose(f);
        if (!found)
                perms[0] = '\0';
        return perms;
}

/* A consumer attaches the pool read-write when the kernel lets it (here: root) and may
 * modify its batch in place: the producer's attachment sees the write (the same memory),
 * and a release with requeue passes the modified batch on. An admin attaches it read-write
 * too. Over a read-only attachment the consumer's write would be a SIGSEGV. */
START_TEST(a_consumer_modifies_its_batch_in_place) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, NULL), *c = connect_as(SB_ROLE_CONSUMER, NULL),
                  *a = connect_as(SB_ROLE_ADMIN, NULL);
        sb_pool *pp, *cp, *ap;
        sb_batch b;
        uint32_t slot;
        size_t cap;
        void *ptr;
        char *mine;

        ck_assert_int_eq(sb_pool_create(p, &pp, "inplace", 64, 1, NULL), 0);
        ck_assert_int_eq(sb_pool_open(c, &cp, "inplace"), 0);
        ck_assert_int_eq(sb_pool_open(a, &ap, "inplace"), 0);
        ck_assert_ptr_ne(sb_pool_base(cp), sb_pool_base(pp));   /* each client its own attachment */
        ck_assert_str_eq(mapping_perms(sb_pool_base(pp)), "rw-s");
        ck_assert_str_eq(mapping_perms(sb_pool_base(cp)), "rw-s");
        ck_assert_str_eq(mapping_perms(sb_pool_base(ap)), "rw-s");

        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), 0);
        strcpy(ptr, "batch");
        ck_assert_int_eq(sb_publish(pp, slot, 6, 0, NULL), 0);
        ck_assert_int_eq(sb_consume(cp, 1000, &b), 0);
        mine = (char *)(uintptr_t)b.data;          /* the batch is this consumer's until released */
        mine[0] = 'B';
        ck_assert_str_eq((const char *)sb_pool_base(pp) + b.slot * sb_pool_stride(pp), "Batch");
        ck_assert_int_eq(sb_release(cp, b.slot, true), 0);
        ck_assert_int_eq(sb_consume(cp, 1000, &b), 0);
        ck_assert_str_eq((const char *)b.data, "Batch");   /* requeued as modified */
        ck_assert_int_eq(sb_release(cp, b.slot, false), 0);

        /* freed: the producer's again, and the admin's attachment writes the same memory */
        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), 0);
        ((char *)sb_pool_base(ap) + slot * sb_pool_stride(ap))[1] = 'A';
        ck_assert_str_eq(ptr, "BAtch");
        sb_client_free(a);
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

START_TEST(pipelined_steady_state_and_eof) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, NULL), *c = connect_as(SB_ROLE_CONSUMER, NULL);
        sb_pool *pp, *cp;
        sb_pool_options o = { .ordered = true };
        sb_batch b = { .eof = true };
        uint32_t slot;
        size_t cap;
        void *ptr;
        int n = 0;

        ck_assert_int_eq(sb_pool_create(p, &pp, "pipe", 64, 8, &o), 0);
        ck_assert_int_eq(sb_pool_open(c, &cp, "pipe"), 0);
        ck_assert_int_eq(sb_acquire(pp, -1, &ptr, &slot, &cap), 0);
        for (int i = 0; i < 7; i++) {
                *(int *)ptr = i;
                ck_assert_int_eq(sb_publish_acquire(pp, slot, sizeof(int), i, NULL, -1, &ptr, &slot, &cap), 0);
        }
        *(int *)ptr = 7;
        ck_assert_int_eq(sb_publish(pp, slot, sizeof(int), 7, NULL), 0);
        ck_assert_int_eq(sb_end(pp), 0);
        for (;;) {
                ck_assert_int_eq(n == 0 ? sb_consume(cp, 1000, &b) : sb_release_consume(cp, &b, 1000), 0);
                if (b.eof)
                        break;
                ck_assert_int_eq(*(const int *)b.data, n);
                ck_assert_uint_eq(b.seq, (unsigned)n);
                ck_assert_str_eq(b.meta, "{}");
                n++;
        }
        ck_assert_int_eq(n, 8);
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

/* Several batches per round trip: every byte and meta arrives, in seq order, and a
 * failed publish changes nothing. */
START_TEST(many_batches_per_round_trip) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, NULL), *c = connect_as(SB_ROLE_CONSUMER, NULL);
        sb_pool_options o = { .ordered = true };
        sb_publish_item pub[16];
        sb_slot held[16];
        sb_batch bs[16];
        char meta[16][32];
        size_t nh, nb = 0, k;
        sb_pool *pp, *cp;
        int next = 0, seen = 0;

        ck_assert_int_eq(sb_pool_create(p, &pp, "many", 64, 16, &o), 0);
        ck_assert_int_eq(sb_pool_open(c, &cp, "many"), 0);
        ck_assert_int_eq(sb_publish_acquire_many(pp, NULL, 0, -1, held, 8, &nh), 0);
        ck_assert_uint_eq(nh, 8);
        /* a seq listed twice: refused, nothing published */
        pub[0] = (sb_publish_item){ .slot = held[0].slot, .nbytes = 1, .seq = 0 };
        pub[1] = (sb_publish_item){ .slot = held[1].slot, .nbytes = 1, .seq = 0 };
        ck_assert_int_eq(sb_publish_acquire_many(pp, pub, 2, -1, NULL, 0, &k), -EINVAL);
        ck_assert_int_eq(sb_client_code(p), SB_CODE_BAD_REQUEST);
        ck_assert_int_eq(sb_release_consume_many(cp, NULL, 0, 0, bs, 16, &nb), -ETIMEDOUT);
        while (next < 40) {
                for (k = 0; k < nh; k++, next++) {
                        memset(held[k].data, next, 64);
                        snprintf(meta[k], sizeof(meta[k]), "{\"n\":%d}", next);
                        /* listed backwards: the consumer still gets them by seq */
                        pub[nh - 1 - k] = (sb_publish_item){ .slot = held[k].slot, .nbytes = 64, .seq = next,
                                                             .meta = meta[k] };
                }
                ck_assert_int_eq(sb_publish_acquire_many(pp, pub, nh, -1, held, 40 - next < 8 ? 40 - next : 8, &nh), 0);
                for (size_t got = 0; got < k;) {
                        ck_assert_int_eq(sb_release_consume_many(cp, bs, nb, 1000, bs, 16, &nb), 0);
                        for (size_t i = 0; i < nb; i++, seen++) {
                                char want[32];
                                ck_assert(!bs[i].eof);
                                ck_assert_uint_eq(bs[i].seq, (unsigned)seen);
                                ck_assert_int_eq(((const unsigned char *)bs[i].data)[63], seen);
                                snprintf(want, sizeof(want), "{\"n\":%d}", seen);
                                ck_assert_str_eq(bs[i].meta, want);
                        }
                        got += nb;
                }
                /* release only (max 0): the producer's next acquire finds them free */
                ck_assert_int_eq(sb_release_consume_many(cp, bs, nb, 0, NULL, 0, &nb), 0);
                ck_assert_uint_eq(nb, 0);
        }
        ck_assert_int_eq(sb_end(pp), 0);
        ck_assert_int_eq(sb_release_consume_many(cp, bs, nb, 1000, bs, 16, &nb), 0);
        ck_assert(nb == 1 && bs[0].eof);
        ck_assert_int_eq(seen, 40);
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

START_TEST(errors_carry_code_and_message) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, NULL), *c = connect_as(SB_ROLE_CONSUMER, NULL);
        sb_pool *pp, *cp;
        sb_batch b;
        uint32_t slot;
        size_t cap;
        void *ptr;

        ck_assert_int_eq(sb_pool_open(c, &cp, "missing"), -ENOENT);
        ck_assert_int_eq(sb_client_code(c), SB_CODE_NO_SUCH_POOL);
        ck_assert_str_eq(sb_code_name(sb_client_code(c)), "no_such_pool");
        ck_assert(strstr(sb_client_message(c), "missing") != NULL);
        /* A name the library refuses before sending it is refused as the daemon would refuse
         * it: its code, and a message that gives the rule. */
        ck_assert_int_eq(sb_pool_open(c, &cp, "bad name"), -EINVAL);
        ck_assert_int_eq(sb_client_code(c), SB_CODE_BAD_REQUEST);
        ck_assert_msg(strstr(sb_client_message(c), "\"bad name\" is not a pool name") &&
                      strstr(sb_client_message(c), "letters, digits"), "%s", sb_client_message(c));
        ck_assert_int_eq(sb_pool_create(p, &pp, "a/b c", 64, 1, NULL), -EINVAL);
        ck_assert_int_eq(sb_client_code(p), SB_CODE_BAD_REQUEST);
        ck_assert_int_eq(sb_pool_create(p, &pp, "ok", 64, 0, NULL), -EINVAL);   /* the daemon's refusal */
        ck_assert_int_eq(sb_client_code(p), SB_CODE_BAD_REQUEST);
        ck_assert_msg(strstr(sb_client_message(p), "\"slots\" must be"), "%s", sb_client_message(p));
        ck_assert_int_eq(sb_pool_create(p, &pp, "e", 64, 1, NULL), 0);
        ck_assert_int_eq(sb_pool_create(p, &pp, "e", 64, 1, NULL), -EEXIST);
        ck_assert_int_eq(sb_client_code(p), SB_CODE_POOL_EXISTS);
        ck_assert_int_eq(sb_pool_open(p, &pp, "e"), 0);
        ck_assert_int_eq(sb_pool_open(c, &cp, "e"), 0);
        ck_assert_int_eq(sb_consume(cp, 0, &b), -ETIMEDOUT);
        ck_assert_int_eq(sb_client_code(c), SB_CODE_TIMEOUT);
        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), 0);
        ck_assert_int_eq(sb_acquire(pp, 50, &ptr, &slot, &cap), -ETIMEDOUT);
        ck_assert_int_eq(sb_publish(pp, 0, 65, -1, NULL), -EINVAL);
        ck_assert_int_eq(sb_publish(pp, 0, 1, -1, "[not an object]"), -EINVAL);
        ck_assert_int_eq(sb_release(cp, 0, false), -EPERM);
        ck_assert_int_eq(sb_client_code(c), SB_CODE_NOT_HOLDER);
        ck_assert_int_eq(sb_acquire(cp, 0, &ptr, &slot, &cap), -EPERM);
        ck_assert_int_eq(sb_client_code(c), SB_CODE_WRONG_ROLE);
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

/* Pools opened without their segment: what administration needs (create, drop), and no
 * slot or batch handed out, as there is no memory to point into. */
START_TEST(unattached_pools_serve_administration) {
        sb_client *a = connect_as(SB_ROLE_ADMIN, "admin"), *p = connect_as(SB_ROLE_PRODUCER, "p");
        sb_client *c = connect_as(SB_ROLE_CONSUMER, "c");
        sb_pool *ap, *pp, *cp, *bad = NULL;
        sb_batch b;
        uint32_t slot;
        size_t cap;
        void *ptr;

        ck_assert_int_eq(sb_pool_create_unattached(a, &ap, "u", 10000, 2, NULL), 0);
        ck_assert_ptr_null(sb_pool_base(ap));
        ck_assert_str_eq(sb_pool_name(ap), "u");
        ck_assert_int_ge(sb_pool_shmid(ap), 0);
        ck_assert_uint_eq(sb_pool_slots(ap), 2);
        ck_assert_uint_eq(sb_pool_slot_size(ap), 10000);
        ck_assert_uint_eq(sb_pool_stride(ap) % (uint64_t)sysconf(_SC_PAGESIZE), 0);
        ck_assert_int_eq(sb_pool_create_unattached(a, &bad, "no good", 1, 1, NULL), -EINVAL);
        ck_assert_int_eq(sb_client_code(a), SB_CODE_BAD_REQUEST);
        ck_assert_ptr_null(bad);

        ck_assert_int_eq(sb_pool_open_unattached(p, &pp, "u"), 0);
        ck_assert_int_eq(sb_pool_shmid(pp), sb_pool_shmid(ap));
        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), -EBADFD);
        ck_assert_int_eq(sb_acquire_async(pp, 0, NULL, NULL), -EBADFD);
        ck_assert_int_eq(sb_end(pp), 0);
        ck_assert_int_eq(sb_pool_open_unattached(c, &cp, "u"), 0);
        ck_assert_int_eq(sb_consume(cp, 0, &b), -EBADFD);
        sb_pool_close(cp);
        ck_assert_int_eq(sb_pool_open(c, &cp, "u"), 0);         /* attached, it consumes */
        ck_assert_ptr_nonnull(sb_pool_base(cp));

        ck_assert_int_eq(sb_drop(ap), 0);
        sb_pool_close(ap);
        ck_assert_int_eq(sb_pool_open_unattached(a, &ap, "u"), -ENOENT);
        sb_client_free(c);
        sb_client_free(p);
        sb_client_free(a);
}
END_TEST

START_TEST(connect_failures) {
        sb_client *c = NULL;

        ck_assert_int_eq(sb_connect(&c, "/nonexistent/dir/s.sock", SB_ROLE_ADMIN, NULL), -ENOENT);
        ck_assert_ptr_null(c);
        setenv("SHMBROKER_SOCKET", sock, 1);
        ck_assert_int_eq(sb_connect(&c, NULL, SB_ROLE_ADMIN, NULL), 0);
        sb_client_free(c);
        ck_assert_ptr_null(sb_client_free(NULL));
        ck_assert_ptr_null(sb_pool_close(NULL));
}
END_TEST

/* Drive @a and @b (NULL: only @a) from a poll loop, as an application does, until *@count
 * reaches @want; fails after 5 s. */
static void pump_until(sb_client *a, sb_client *b, const int *count, int want) {
        for (int i = 0; i < 50 && *count < want; i++) {
                struct pollfd fds[2] = { { .fd = sb_client_fd(a), .events = sb_client_events(a) },
                                         { .fd = b ? sb_client_fd(b) : -1, .events = b ? sb_client_events(b) : 0 } };
                ck_assert_int_ge(poll(fds, 2, 100), 0);
                if (fds[0].revents)
                        ck_assert_int_ge(sb_client_process(a), 0);
                if (b && fds[1].revents)
                        ck_assert_int_ge(sb_client_process(b), 0);
        }
        ck_assert_msg(*count >= want, "%d replies, not %d, after 5 s", *count, want);
}

static int acquired, consumed, published;
static uint32_t acquired_slot;

static void on_publish(sb_pool *p, int error, const sb_batch *b, uint32_t slot, void *ptr, void *userdata) {
        (void)p;
        (void)b;
        (void)slot;
        (void)ptr;
        ck_assert_int_eq(error, 0);
        ck_assert_ptr_eq(userdata, &published);
        published++;
}

static void on_acquire(sb_pool *p, int error, const sb_batch *b, uint32_t slot, void *ptr, void *userdata) {
        (void)b;
        ck_assert_int_eq(error, 0);
        ck_assert_ptr_eq(ptr, (char *)sb_pool_base(p) + slot * sb_pool_stride(p));
        ck_assert_ptr_eq(userdata, &acquired);
        acquired_slot = slot;
        acquired++;
}

static void on_consume(sb_pool *p, int error, const sb_batch *b, uint32_t slot, void *ptr, void *userdata) {
        (void)p;
        (void)ptr;
        (void)userdata;
        ck_assert_int_eq(error, 0);
        ck_assert(!b->eof);
        ck_assert_uint_eq(b->slot, slot);
        ck_assert_str_eq((const char *)b->data, "async");
        consumed++;
}

START_TEST(async_requests_in_a_poll_loop) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, NULL), *c = connect_as(SB_ROLE_CONSUMER, NULL);
        sb_pool *pp, *cp;

        ck_assert_int_eq(sb_pool_create(p, &pp, "async", 64, 1, NULL), 0);
        ck_assert_int_eq(sb_pool_open(c, &cp, "async"), 0);
        /* the consume is queued before anything is ready: it must not block us */
        ck_assert_int_eq(sb_consume_async(cp, -1, on_consume, NULL), 0);
        ck_assert_int_eq(sb_acquire_async(pp, -1, on_acquire, &acquired), 0);
        pump_until(p, c, &acquired, 1);
        ck_assert_int_eq(consumed, 0); /* nothing was published yet */
        strcpy((char *)sb_pool_base(pp) + acquired_slot * sb_pool_stride(pp), "async");
        ck_assert_int_eq(sb_publish_async(pp, acquired_slot, 6, -1, NULL, on_publish, &published), 0);
        pump_until(p, c, &published, 1);
        pump_until(p, c, &consumed, 1);
        ck_assert_int_eq(acquired, 1); /* each callback once */
        ck_assert_int_eq(published, 1);
        ck_assert_int_eq(consumed, 1);
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

typedef struct Outcome {
        int calls, error;
} Outcome;

static void on_outcome(sb_pool *p, int error, const sb_batch *b, uint32_t slot, void *ptr, void *userdata) {
        Outcome *o = userdata;

        (void)p;
        (void)b;
        (void)slot;
        (void)ptr;
        o->calls++;
        o->error = error;
}

/* sb_release_async(): with requeue the batch is ready again, without the slot is free for
 * a producer, and a refusal comes through the callback. */
START_TEST(release_async_requeues_frees_and_reports_refusals) {
        sb_client *p = connect_as(SB_ROLE_PRODUCER, NULL), *c = connect_as(SB_ROLE_CONSUMER, NULL);
        Outcome requeued = { 0 }, freed = { 0 }, refused = { 0 };
        sb_pool *pp, *cp;
        sb_batch b;
        uint32_t slot;
        size_t cap;
        void *ptr;

        ck_assert_int_eq(sb_pool_create(p, &pp, "rel", 64, 1, NULL), 0);
        ck_assert_int_eq(sb_pool_open(c, &cp, "rel"), 0);
        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), 0);
        ck_assert_int_eq(sb_publish(pp, slot, 1, 7, NULL), 0);
        ck_assert_int_eq(sb_consume(cp, 1000, &b), 0);

        ck_assert_int_eq(sb_release_async(cp, b.slot, true, on_outcome, &requeued), 0);
        pump_until(c, NULL, &requeued.calls, 1);
        ck_assert_int_eq(requeued.error, 0);
        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), -ETIMEDOUT); /* not free: ready again */
        ck_assert_int_eq(sb_consume(cp, 0, &b), 0);
        ck_assert_uint_eq(b.seq, 7);

        ck_assert_int_eq(sb_release_async(cp, b.slot, false, on_outcome, &freed), 0);
        pump_until(c, NULL, &freed.calls, 1);
        ck_assert_int_eq(freed.error, 0);
        ck_assert_int_eq(sb_consume(cp, 0, &b), -ETIMEDOUT);       /* not requeued */
        ck_assert_int_eq(sb_acquire(pp, 0, &ptr, &slot, &cap), 0); /* free */

        /* the slot is the producer's now, not this consumer's */
        ck_assert_int_eq(sb_release_async(cp, slot, false, on_outcome, &refused), 0);
        pump_until(c, NULL, &refused.calls, 1);
        ck_assert_int_eq(refused.error, -EPERM);
        ck_assert_int_eq(sb_client_code(c), SB_CODE_NOT_HOLDER);
        ck_assert_int_eq(sb_publish(pp, slot, 1, 8, NULL), 0);             /* still the producer's */
        ck_assert_int_eq(requeued.calls + freed.calls + refused.calls, 3); /* each callback once */
        sb_client_free(c);
        sb_client_free(p);
}
END_TEST

/* The lowest descriptor number free in process @pid. */
static int lowest_free_fd(pid_t pid) {
        char path[64];

        for (int fd = 0; fd < 65536; fd++) {
                snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
                if (access(path, F_OK) < 0)
                        return fd;
        }
        return -1;
}

/* A request the daemon fails on, rather than refuses: with its descriptor table full (its
 * soft RLIMIT_NOFILE lowered from outside to its lowest free descriptor), the first wait
 * with a timeout needs a timer descriptor the daemon cannot get. -EIO and code internal,
 * and client and daemon go on once descriptors can be had again. The waits are the
 * daemon's: these clients do not run their own operations (SHMBROKER_FASTPATH=0). */
START_TEST(a_failure_of_the_daemon_is_internal) {
        sb_client *c, *w;
        struct rlimit old, full;
        sb_pool *p, *q;
        uint32_t slot;
        size_t cap;
        void *buf;

        setenv("SHMBROKER_FASTPATH", "0", 1);
        c = connect_as(SB_ROLE_PRODUCER, NULL);
        w = connect_as(SB_ROLE_PRODUCER, NULL);
        ck_assert_int_eq(sb_pool_create(c, &p, "int", 64, 1, NULL), 0);
        ck_assert_int_eq(sb_acquire(p, 0, &buf, &slot, &cap), 0);      /* the only slot */
        ck_assert_int_eq(sb_pool_open(w, &q, "int"), 0);
        ck_assert_int_eq(prlimit(daemon_pid, RLIMIT_NOFILE, NULL, &old), 0);
        full = (struct rlimit){ .rlim_cur = (rlim_t)lowest_free_fd(daemon_pid), .rlim_max = old.rlim_max };
        ck_assert_int_eq(prlimit(daemon_pid, RLIMIT_NOFILE, &full, NULL), 0);
        ck_assert_int_eq(sb_acquire(q, 100, &buf, &slot, &cap), -EIO);
        ck_assert_int_eq(sb_client_code(w), SB_CODE_INTERNAL);
        ck_assert_str_eq(sb_code_name(sb_client_code(w)), "internal");
        ck_assert(strstr(sb_client_message(w), "failed") != NULL);
        ck_assert_int_eq(prlimit(daemon_pid, RLIMIT_NOFILE, &old, NULL), 0);
        ck_assert_int_eq(sb_acquire(q, 10, &buf, &slot, &cap), -ETIMEDOUT);
        sb_client_free(w);
        sb_client_free(c);
        unsetenv("SHMBROKER_FASTPATH");
}
END_TEST

/* sb_acquire_seq(): an ordered pool keeps its last free slot for the lowest seq not yet
 * published; a later seq waits (here: times out), the missing one gets it. */
START_TEST(acquire_for_a_seq_keeps_the_gap_fillable) {
        sb_client *c = connect_as(SB_ROLE_PRODUCER, NULL);
        sb_pool_options o = { .ordered = true };
        sb_pool *p;
        uint32_t s1, s0, s;
        size_t cap;
        void *buf;

        ck_assert_int_eq(sb_pool_create(c, &p, "seqs", 64, 2, &o), 0);
        ck_assert_int_eq(sb_acquire_seq(p, 1, 0, &buf, &s1, &cap), 0);
        ck_assert_int_eq(sb_publish(p, s1, 1, 1, NULL), 0);
        ck_assert_int_eq(sb_acquire_seq(p, 2, 0, &buf, &s, &cap), -ETIMEDOUT);
        ck_assert(strstr(sb_client_message(c), "kept for seq 0") != NULL);
        ck_assert_int_eq(sb_acquire_seq(p, 2, 20, &buf, &s, &cap), -ETIMEDOUT);    /* waiting does not get it */
        ck_assert_int_eq(sb_acquire_seq(p, 0, 0, &buf, &s0, &cap), 0);
        ck_assert_uint_ne(s0, s1);
        ck_assert_int_eq(sb_publish(p, s0, 1, 0, NULL), 0);
        sb_client_free(c);
}
END_TEST

START_TEST(status_is_json) {
        sb_client *c = connect_as(SB_ROLE_ADMIN, "admin");
        sb_pool *p;
        char *json = NULL;

        ck_assert_int_eq(sb_pool_create(c, &p, "st", 64, 2, NULL), 0);
        ck_assert_int_eq(sb_status(c, NULL, &json), 0);
        ck_assert(strstr(json, "\"pools\":[{\"pool\":\"st\"") != NULL);
        ck_assert(strstr(json, "\"name\":\"admin\"") != NULL);
        free(json);
        ck_assert_int_eq(sb_status(c, "nope", &json), -ENOENT);
        ck_assert_int_eq(sb_drop(p), 0);
        ck_assert_int_eq(sb_status(c, NULL, &json), 0);
        ck_assert(strstr(json, "\"pools\":[]") != NULL);
        free(json);
        sb_client_free(c);
}
END_TEST

START_TEST(daemon_gone_is_an_error_not_a_crash) {
        sb_client *c = connect_as(SB_ROLE_CONSUMER, NULL);
        sb_pool *p;
        sb_batch b;
        char *json;

        ck_assert_int_eq(sb_pool_create(c, &p, "gone", 64, 1, NULL), 0);
        daemon_stop();
        ck_assert_int_lt(sb_consume(p, -1, &b), 0);
        ck_assert_int_lt(sb_status(c, NULL, &json), 0);
        sb_client_free(c);
}
END_TEST

#ifdef SB_TEST_HOOKS
/* The pool's slot counts from a status reply: which are writing and reading, whether the
 * daemon found its control block broken. */
static void pool_counts(sb_client *c, const char *pool, long *free_, long *ready, long *held, bool *broken) {
        char *json;
        cJSON *root, *p;

        ck_assert_int_eq(sb_status(c, pool, &json), 0);
        root = cJSON_Parse(json);
        p = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "pools"), 0);
        ck_assert_ptr_nonnull(p);
        *free_ = (long)cJSON_GetObjectItem(p, "free")->valuedouble;
        *ready = (long)cJSON_GetObjectItem(p, "ready")->valuedouble;
        *held = (long)(cJSON_GetObjectItem(p, "writing")->valuedouble + cJSON_GetObjectItem(p, "reading")->valuedouble);
        *broken = cJSON_IsTrue(cJSON_GetObjectItem(p, "broken"));
        cJSON_Delete(root);
        free(json);
}

/* What a child of the crash test does on the fast path, to be killed after its k-th store. */
static void crash_child(bool producer) {
        sb_client *c;
        sb_pool *p;
        sb_batch b;
        uint32_t slot;
        void *buf;
        size_t cap;

        if (sb_connect(&c, sock, producer ? SB_ROLE_PRODUCER : SB_ROLE_CONSUMER, "crash") < 0 ||
            sb_pool_open(c, &p, "crash") < 0)
                _exit(2);
        if (producer) {
                if (sb_acquire(p, 1000, &buf, &slot, &cap) < 0 || sb_publish(p, slot, 8, -1, "{\"k\":1}") < 0 ||
                    sb_acquire(p, 1000, &buf, &slot, &cap) < 0 || sb_release(p, slot, false) < 0 ||
                    sb_acquire(p, 1000, &buf, &slot, &cap) < 0)
                        _exit(3);
        } else if (sb_consume(p, 1000, &b) < 0 || sb_release(p, b.slot, false) < 0 || sb_consume(p, 1000, &b) < 0 ||
                   sb_release(p, b.slot, true) < 0 || sb_consume(p, 1000, &b) < 0) {
                _exit(3);
        }
        _exit(0);       /* holding a slot: the daemon reclaims it */
}
#endif

/*
 * A client killed right after each logged store of its operations on the control block
 * (SHMBROKER_TEST_DIE_AFTER_STORE, test builds), its lock held and its step half done:
 * every time, the daemon takes the lock back, undoes the step, reclaims the client's
 * slots, and the pool goes on with every slot accounted for.
 */
START_TEST(a_client_killed_inside_its_step_is_repaired) {
#ifdef SB_TEST_HOOKS
        sb_client *admin = connect_as(SB_ROLE_ADMIN, NULL), *prod = connect_as(SB_ROLE_PRODUCER, NULL);
        sb_client *cons = connect_as(SB_ROLE_CONSUMER, NULL);
        sb_pool *a, *p, *q;
        int deaths = 0;

        ck_assert_int_eq(sb_pool_create(admin, &a, "crash", 64, 4, &(sb_pool_options){ .persistent = true }), 0);
        ck_assert_int_eq(sb_pool_open(prod, &p, "crash"), 0);
        ck_assert_int_eq(sb_pool_open(cons, &q, "crash"), 0);
        for (int role = 0; role < 2; role++)
                for (unsigned k = 1;; k++) {
                        char n[16];
                        long free_, ready, held;
                        bool broken;
                        int status;
                        pid_t pid;

                        /* Batches ready for a consumer to take. */
                        for (int i = 0; role == 1 && i < 2; i++) {
                                uint32_t slot;
                                void *buf;
                                size_t cap;
                                ck_assert_int_eq(sb_acquire(p, 1000, &buf, &slot, &cap), 0);
                                ck_assert_int_eq(sb_publish(p, slot, 8, -1, "{\"n\":2}"), 0);
                        }
                        snprintf(n, sizeof(n), "%u", k);
                        pid = fork();
                        if (pid == 0) {
                                setenv("SHMBROKER_TEST_DIE_AFTER_STORE", n, 1);
                                crash_child(role == 0);
                        }
                        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                        ck_assert_msg(WIFSIGNALED(status) || WEXITSTATUS(status) == 0, "child %d", WEXITSTATUS(status));
                        deaths += WIFSIGNALED(status);
                        /* The daemon reclaims on the hang-up, in its own time. */
                        for (int i = 0; i < 500; i++) {
                                pool_counts(admin, "crash", &free_, &ready, &held, &broken);
                                if (held == 0)
                                        break;
                                usleep(2000);
                        }
                        ck_assert_msg(!broken && held == 0 && free_ + ready == 4, "k %u: free %ld ready %ld held %ld", k,
                                      free_, ready, held);
                        /* Drain, then every slot can be taken again. */
                        for (long i = 0; i < ready; i++) {
                                sb_batch b;
                                ck_assert_int_eq(sb_consume(q, 1000, &b), 0);
                                ck_assert_int_eq(sb_release(q, b.slot, false), 0);
                        }
                        if (WIFEXITED(status))
                                break;          /* the child ran to its end: every store was swept */
                }
        ck_assert_int_gt(deaths, 20);
        sb_client_free(cons);
        sb_client_free(prod);
        sb_client_free(admin);
#endif
}
END_TEST

static Suite *lib_suite(void) {
        Suite *s = suite_create("libshmbroker");
        TCase *t = tcase_create("against shmbrokerd");

        tcase_add_checked_fixture(t, daemon_start, daemon_stop);
        tcase_set_timeout(t, 20);
        tcase_add_test(t, round_trip_through_pointers);
        tcase_add_test(t, a_consumer_modifies_its_batch_in_place);
        tcase_add_test(t, pipelined_steady_state_and_eof);
        tcase_add_test(t, many_batches_per_round_trip);
        tcase_add_test(t, errors_carry_code_and_message);
        tcase_add_test(t, unattached_pools_serve_administration);
        tcase_add_test(t, connect_failures);
        tcase_add_test(t, async_requests_in_a_poll_loop);
        tcase_add_test(t, release_async_requeues_frees_and_reports_refusals);
        tcase_add_test(t, a_failure_of_the_daemon_is_internal);
        tcase_add_test(t, acquire_for_a_seq_keeps_the_gap_fillable);
        tcase_add_test(t, status_is_json);
        tcase_add_test(t, daemon_gone_is_an_error_not_a_crash);
        tcase_add_test(t, a_client_killed_inside_its_step_is_repaired);
        suite_add_tcase(s, t);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(lib_suite());
        int failed;

        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
