/*
 * produce_consume: a trainer fed by data-loading workers, in C, through shmbrokerd.
 *
 *   build/produce_consume [WORKERS [BATCHES]]       (the daemon at $SHMBROKER_SOCKET)
 *
 * The trainer (the main thread, a consumer) creates a pool of its own and starts WORKERS
 * workers (default 2), each a producer with its own connection: worker k writes batches
 * k, k + WORKERS, k + 2 * WORKERS, ... (BATCHES in all, default 64) straight into the
 * pool's shared memory, 4096 doubles each with their shape and dtype in the meta, and ends
 * the stream. The trainer reads each batch in place until the end of the stream, checks
 * every value and that every batch came exactly once, and exits 0 if all is well.
 *
 * Each side moves a batch in one round trip to the daemon: a worker publishes a batch and
 * acquires the slot for its next one together (sb_publish_acquire()), the trainer releases
 * a batch and consumes the next together (sb_release_consume()).
 *
 * The workers are threads here to keep the example short; a worker could as well be a
 * process of its own: a connection of its own is all it needs. The pool is ephemeral: it
 * goes when the last of its clients does. Built by `make`, against libshmbroker.a; a
 * program of your own links with `pkg-config --cflags --libs shmbroker` (libshmbroker(3)).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <shmbroker.h>

#define VALUES 4096
#define BATCH_BYTES (VALUES * sizeof(double))
#define SLOTS 8
/* How long either side waits for a slot or a batch before it gives up: a side that failed
 * cannot hang the other for ever. */
#define WAIT_MS 10000

typedef struct Worker {
        pthread_t thread;
        unsigned k, workers, batches;
        const char *pool;
        pthread_barrier_t *opened;
        int status;
} Worker;

/* Say why @what failed: in the daemon's words when it refused the request, else the
 * system's (the connection failed, say). */
static int fail(sb_client *c, const char *who, const char *what, int r) {
        if (c && sb_client_code(c) != SB_CODE_OK)
                fprintf(stderr, "%s: %s: %s (%s)\n", who, what, sb_client_message(c),
                        sb_code_name(sb_client_code(c)));
        else
                fprintf(stderr, "%s: %s: %s\n", who, what, strerror(-r));
        return 1;
}

/* Value @i of batch @seq: what the worker writes and the trainer checks. */
static double value(uint64_t seq, size_t i) {
        return (double)seq * VALUES + (double)i;
}

static int produce(Worker *w, sb_client *c) {
        char who[32], meta[128];
        sb_pool *p = NULL;
        uint32_t slot = 0;
        void *buf = NULL;
        size_t capacity;
        int r;

        snprintf(who, sizeof(who), "worker-%u", w->k);
        r = sb_pool_open(c, &p, w->pool);
        /* A stream ends once every producer that has the pool open has ended it: no worker
         * may end it before every worker has the pool open. */
        pthread_barrier_wait(w->opened);
        if (r < 0)
                return fail(c, who, "open", r);
        for (uint64_t seq = w->k; seq < w->batches; seq += w->workers) {
                if (seq == w->k) {
                        r = sb_acquire(p, WAIT_MS, &buf, &slot, &capacity);
                        if (r < 0)
                                return fail(c, who, "acquire", r);
                        if (capacity < BATCH_BYTES) {
                                fprintf(stderr, "%s: slots of %zu bytes are too small\n", who, capacity);
                                return 1;
                        }
                }
                double *v = buf;
                for (size_t i = 0; i < VALUES; i++)
                        v[i] = value(seq, i);
                snprintf(meta, sizeof(meta), "{\"shape\":[%d],\"dtype\":\"float64\",\"worker\":%u}", VALUES, w->k);
                if (seq + w->workers < w->batches)
                        /* Publish this batch and take the slot for the next, in one round trip. */
                        r = sb_publish_acquire(p, slot, BATCH_BYTES, (int64_t)seq, meta, WAIT_MS, &buf, &slot,
                                               &capacity);
                else
                        r = sb_publish(p, slot, BATCH_BYTES, (int64_t)seq, meta);
                if (r < 0)
                        return fail(c, who, "publish", r);
        }
        r = sb_end(p);
        if (r < 0)
                return fail(c, who, "end", r);
        return 0;
}

static void *worker_main(void *arg) {
        Worker *w = arg;
        char who[32];
        sb_client *c = NULL;
        int r;

        snprintf(who, sizeof(who), "worker-%u", w->k);
        r = sb_connect(&c, NULL, SB_ROLE_PRODUCER, who);
        if (r < 0) {
                pthread_barrier_wait(w->opened);
                w->status = fail(NULL, who, "connect", r);
                return NULL;
        }
        w->status = produce(w, c);
        /* Closes the connection: the daemon reclaims any slot still held. */
        sb_client_free(c);
        return NULL;
}

/* Check one batch the trainer holds: its size, its meta, every value. */
static bool batch_ok(const sb_batch *b, unsigned batches, unsigned char *seen) {
        const double *v = b->data;

        if (b->seq >= batches || seen[b->seq]++ || b->nbytes != BATCH_BYTES ||
            !strstr(b->meta, "\"dtype\":\"float64\"")) {
                fprintf(stderr, "trainer: unexpected batch: seq %llu, %zu bytes, meta %s\n",
                        (unsigned long long)b->seq, b->nbytes, b->meta);
                return false;
        }
        for (size_t i = 0; i < VALUES; i++)
                if (v[i] != value(b->seq, i)) {
                        fprintf(stderr, "trainer: batch %llu: value %zu is %g\n", (unsigned long long)b->seq, i,
                                v[i]);
                        return false;
                }
        return true;
}

static int consume(sb_client *c, sb_pool *p, unsigned batches, unsigned char *seen) {
        /* Nothing is held yet: with eof set, sb_release_consume() only consumes. */
        sb_batch b = { .eof = true };
        unsigned n = 0;
        int r;

        while ((r = sb_release_consume(p, &b, WAIT_MS)) == 0 && !b.eof) {
                if (!batch_ok(&b, batches, seen))
                        return 1;
                n++;
        }
        if (r < 0)
                return fail(c, "trainer", "consume", r);
        /* The end of the stream: b holds no batch, there is nothing to release. */
        if (n != batches) {
                fprintf(stderr, "trainer: %u of %u batches before the end of the stream\n", n, batches);
                return 1;
        }
        return 0;
}

static bool parse_count(const char *s, unsigned max, unsigned *ret) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);

        if (!*s || *end || v < 1 || v > max)
                return false;
        *ret = (unsigned)v;
        return true;
}

int main(int argc, char **argv) {
        unsigned workers = 2, batches = 64;
        pthread_barrier_t opened;
        unsigned char *seen;
        Worker *w;
        sb_client *c = NULL;
        sb_pool *p = NULL;
        char pool[64];
        int r, status;

        if (argc > 3 || (argc > 1 && !parse_count(argv[1], 64, &workers)) ||
            (argc > 2 && !parse_count(argv[2], 1000000, &batches))) {
                fprintf(stderr, "usage: produce_consume [WORKERS (1-64) [BATCHES (1-1000000)]]\n");
                return 2;
        }
        /* $SHMBROKER_SOCKET, else the system's socket. */
        r = sb_connect(&c, NULL, SB_ROLE_CONSUMER, "trainer");
        if (r < 0)
                return fail(NULL, "trainer", "connect", r);
        /* Ephemeral (no sb_pool_options.persistent): the daemon removes it when the last
         * client that has it open is gone. A name of its own, so that runs side by side
         * do not meet. */
        snprintf(pool, sizeof(pool), "produce-consume-%ld", (long)getpid());
        r = sb_pool_create(c, &p, pool, BATCH_BYTES, SLOTS, NULL);
        if (r < 0) {
                status = fail(c, "trainer", "create", r);
                sb_client_free(c);
                return status;
        }
        seen = calloc(batches, 1);
        w = calloc(workers, sizeof(*w));
        if (!seen || !w) {
                fprintf(stderr, "trainer: out of memory\n");
                return 1;
        }
        pthread_barrier_init(&opened, NULL, workers);
        for (unsigned k = 0; k < workers; k++) {
                w[k] = (Worker){ .k = k, .workers = workers, .batches = batches, .pool = pool, .opened = &opened };
                if (pthread_create(&w[k].thread, NULL, worker_main, &w[k]) != 0) {
                        fprintf(stderr, "trainer: cannot start worker %u\n", k);
                        return 1;
                }
        }
        status = consume(c, p, batches, seen);
        /* On failure, drop the pool: the workers' waits on it end at once (-ENOENT). */
        if (status != 0)
                sb_drop(p);
        for (unsigned k = 0; k < workers; k++) {
                pthread_join(w[k].thread, NULL);
                status |= w[k].status;
        }
        if (status == 0)
                printf("trainer: %u batches of %zu bytes from %u workers, each read in place and checked, "
                       "then the end of the stream\n",
                       batches, BATCH_BYTES, workers);
        sb_client_free(c);
        pthread_barrier_destroy(&opened);
        free(w);
        free(seen);
        return status;
}
