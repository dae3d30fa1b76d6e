/*
 * shmbrokerctl: inspect and drive shmbrokerd from the command line.
 *
 *   status [POOL] [--json] [--watch]      every pool and client at a glance
 *   status [POOL] --format=openmetrics|prometheus   the same figures as metrics
 *   create POOL --slot-size SIZE --slots N [--ordered] [--mode MODE] [--group GROUP]
 *   drop POOL
 *   produce POOL --count N [--size BYTES]  publish batches filled with a pattern from their seq
 *   consume POOL [--count N]               check every byte of each batch against that pattern
 *
 * Exit status: 0 success, 1 the daemon refused or a batch did not check out, 2 bad usage.
 * A refusal shows the daemon's message and code; bad usage, one line for each mistake.
 */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sb-macro.h"
#include "sb-names.h"
#include "sb-size.h"
#include "sb-unix.h"
#include "sb-utf8.h"
#include "shmbroker.h"
#include "shmbrokerctl-metrics.h"

#define EXIT_DAEMON 1
#define EXIT_USAGE 2

typedef struct Args {
        const char *socket;
        const char *name;
        const char *pool;
        bool json, watch, ordered, no_end, help, version;
        bool metrics;            /* --format=openmetrics or prometheus, in metrics_format */
        MetricsFormat metrics_format;
        uint64_t slot_size, size, count, slots, seq_start, seq_step;
        bool has_slot_size, has_slots, has_size;
        unsigned mode;
        const char *group;
        int timeout_ms;
} Args;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- text from the daemon ------------------------------------------------------------ */

/* Names and messages come from other clients through the daemon: none may move the
 * cursor, retitle the terminal or fake a row. shown() escapes what the name rule refuses
 * (sb_name_char(): control characters, bytes that are not UTF-8) as \xNN, into one of a
 * few buffers, so that one printf() may show several. */
#define SHOWN_MAX 1024
static const char *shown(const char *s) {
        static char bufs[8][SHOWN_MAX * SB_ESCAPE_BYTE_MAX + 1];
        static unsigned next;

        return sb_name_escape(s, bufs[next++ % ELEMENTSOF(bufs)], sizeof(bufs[0]));
}

/* The daemon's JSON for --json: the same characters written as JSON escapes, so that it
 * stays valid JSON with the same strings: \u00NN for a control character, \ufffd for a
 * byte that is not UTF-8. */
static void print_json_shown(const char *text) {
        size_t n = strlen(text), k;
        uint32_t cp;

        for (; n > 0; text += k, n -= k) {
                k = sb_name_char(text, n);
                if (k > 0)
                        fwrite(text, 1, k, stdout);
                else if ((k = sb_utf8_char((const unsigned char *)text, n, &cp)) > 0)
                        printf("\\u%04x", (unsigned)cp);
                else {
                        fputs("\\ufffd", stdout);
                        k = 1;
                }
        }
        putchar('\n');
}

static int fail(sb_client *c, int r, const char *what) {
        if (c && sb_client_code(c) != SB_CODE_OK)
                fprintf(stderr, "shmbrokerctl: %s: %s (%s)\n", what, shown(sb_client_message(c)),
                        sb_code_name(sb_client_code(c)));
        else
                fprintf(stderr, "shmbrokerctl: %s: %s\n", what, strerror(-r));
        return EXIT_DAEMON;
}

/* --- the pattern: derived from the batch's seq -------------------------------------------- */

/*
 * A batch is 4 KiB blocks of one template made from its seq (splitmix64 words), each block
 * stamped in its first 8 bytes with a word of its own from the seq and the block's place:
 * a stale batch (another seq), a block out of place or any changed byte shows, and filling
 * or checking a batch is memcpy() and memcmp() of the template, at the speed of memory, as
 * the bare ring's memset() and reads are.
 */
#define PATTERN_BLOCK 4096u

static uint64_t splitmix(uint64_t z) {
        z += UINT64_C(0x9E3779B97F4A7C15);
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
}

static void pattern_template(uint64_t seq, uint8_t *t) {
        for (size_t k = 0; k < PATTERN_BLOCK / 8; k++) {
                uint64_t w = splitmix(seq * (PATTERN_BLOCK / 8) + k);
                memcpy(t + k * 8, &w, 8);
        }
}

static uint64_t pattern_stamp(uint64_t seq, uint64_t block) {
        return splitmix(~seq ^ (block * UINT64_C(0xD6E8FEB86659FD93)));
}

static void pattern_fill(uint8_t *dst, size_t n, uint64_t seq) {
        uint8_t t[PATTERN_BLOCK];

        pattern_template(seq, t);
        for (size_t off = 0; off < n; off += PATTERN_BLOCK) {
                size_t len = n - off < PATTERN_BLOCK ? n - off : PATTERN_BLOCK;
                uint64_t stamp = pattern_stamp(seq, off / PATTERN_BLOCK);
                memcpy(dst + off, t, len);
                memcpy(dst + off, &stamp, len < 8 ? len : 8);
        }
}

/* The offset of the first byte that differs from the pattern, or -1. */
static long long pattern_check(const uint8_t *src, size_t n, uint64_t seq) {
        uint8_t t[PATTERN_BLOCK];

        pattern_template(seq, t);
        for (size_t off = 0; off < n; off += PATTERN_BLOCK) {
                size_t len = n - off < PATTERN_BLOCK ? n - off : PATTERN_BLOCK;
                uint64_t stamp = pattern_stamp(seq, off / PATTERN_BLOCK);
                memcpy(t, &stamp, 8);
                if (memcmp(src + off, t, len) == 0)
                        continue;
                for (size_t i = 0, at = off; i < len; i++, at++)
                        if (src[at] != t[i])
                                return (long long)at;
        }
        return -1;
}

/* --- status ----------------------------------------------------------------------------- */

static double jnum(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *jstr(const cJSON *o, const char *key, const char *dflt) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* A string field to print. */
static const char *jshown(const cJSON *o, const char *key, const char *dflt) {
        return shown(jstr(o, key, dflt));
}

static void print_status(const cJSON *st, const cJSON *prev, double dt) {
        const cJSON *pools = cJSON_GetObjectItemCaseSensitive(st, "pools");
        const cJSON *clients = cJSON_GetObjectItemCaseSensitive(st, "clients");
        const cJSON *p, *c;
        char a[32], b[32];

        printf("%-16s %8s %5s %10s %5s %5s %5s %5s %10s %10s %10s %9s %9s %10s %10s\n", "POOL", "SHMID", "SLOTS",
               "SLOT SIZE", "FREE", "WRITE", "READY", "READ", "PUBLISHED", "CONSUMED", "BYTES", "BATCH/S", "GB/S",
               "PROD WAIT", "CONS WAIT");
        cJSON_ArrayForEach(p, pools) {
                double pub = jnum(p, "published"), bytes = jnum(p, "bytes_published"), rate_b, rate_g;
                const cJSON *q = NULL, *pp;
                char shmid[16];

                /* Rates: since the last refresh with --watch, else since the pool was made. */
                if (prev)
                        cJSON_ArrayForEach(pp, cJSON_GetObjectItemCaseSensitive(prev, "pools"))
                                if (strcmp(jstr(pp, "pool", ""), jstr(p, "pool", "?")) == 0)
                                        q = pp;
                if (q && dt > 0) {
                        rate_b = (pub - jnum(q, "published")) / dt;
                        rate_g = (bytes - jnum(q, "bytes_published")) / dt / 1e9;
                } else {
                        double age = jnum(p, "age_ms") / 1000.0;
                        rate_b = age > 0 ? pub / age : 0;
                        rate_g = age > 0 ? bytes / age / 1e9 : 0;
                }
                if (cJSON_GetObjectItemCaseSensitive(p, "shmid"))
                        snprintf(shmid, sizeof(shmid), "%.0f", jnum(p, "shmid"));
                else
                        snprintf(shmid, sizeof(shmid), "-");
                printf("%-16s %8s %5.0f %10s %5.0f %5.0f %5.0f %5.0f %10.0f %10.0f %10s %9.1f %9.3f %8.1fs %8.1fs\n",
                       jshown(p, "pool", "?"), shmid, jnum(p, "slots"),
                       sb_format_size((uint64_t)jnum(p, "slot_size"), a, sizeof(a)), jnum(p, "free"),
                       jnum(p, "writing"), jnum(p, "ready"), jnum(p, "reading"), pub, jnum(p, "consumed"),
                       sb_format_size((uint64_t)bytes, b, sizeof(b)), rate_b, rate_g,
                       jnum(p, "producer_wait_ms") / 1000.0, jnum(p, "consumer_wait_ms") / 1000.0);
        }
        printf("\n%-8s %6s %-9s %-20s %-8s %-16s %s\n", "PID", "UID", "ROLE", "NAME", "WAITING", "POOLS",
               "HELD (pool:slot state age)");
        cJSON_ArrayForEach(c, clients) {
                const cJSON *h, *pn;
                char pools_s[256] = "", held_s[512] = "";
                size_t n = 0;
                int listed;

                cJSON_ArrayForEach(pn, cJSON_GetObjectItemCaseSensitive(c, "pools"))
                        if (cJSON_IsString(pn))
                                n += (size_t)snprintf(pools_s + n, n < sizeof(pools_s) ? sizeof(pools_s) - n : 0,
                                                      "%s%s", n ? "," : "", shown(pn->valuestring));
                n = 0;
                cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(c, "held"))
                        n += (size_t)snprintf(held_s + n, n < sizeof(held_s) ? sizeof(held_s) - n : 0,
                                              "%s%s:%.0f %s %.1fs", n ? ", " : "", jshown(h, "pool", "?"),
                                              jnum(h, "slot"), jshown(h, "state", "?"), jnum(h, "age_ms") / 1000.0);
                /* The daemon lists a few held slots and counts them all. */
                listed = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(c, "held"));
                printf("%-8.0f %6.0f %-9s %-20s %-8s %-16s %s", jnum(c, "pid"), jnum(c, "uid"), jshown(c, "role", "?"),
                       jshown(c, "name", "-"), jshown(c, "waiting", ""), pools_s, held_s);
                if (jnum(c, "held_count") > listed)
                        printf("%s(%.0f held in all)", listed ? " " : "", jnum(c, "held_count"));
                printf("\n");
        }
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
        (void)sig;
        interrupted = 1;
}

/* Once, whatever --watch says: a scraper asks again. A failed write must fail the run, so
 * that the textfile timer keeps the last complete file (systemd/shmbroker-metrics.service). */
static int status_metrics(sb_client *c, const Args *a) {
        char *text = NULL;
        int r = sb_status(c, a->pool, &text);

        if (r < 0)
                return fail(c, r, "status");
        r = metrics_print(text, a->metrics_format, stdout);
        free(text);
        if (r < 0) {
                fprintf(stderr, "shmbrokerctl: status: the daemon's reply is not a status\n");
                return EXIT_DAEMON;
        }
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "shmbrokerctl: status: cannot write the metrics: %s\n", strerror(errno));
                return EXIT_DAEMON;
        }
        return 0;
}

static int cmd_status(sb_client *c, const Args *a) {
        /* --watch redraws a terminal; into a pipe or a file it writes each snapshot after
         * the last, a blank line between them, without screen escapes. */
        bool redraw = a->watch && isatty(STDOUT_FILENO);
        cJSON *prev = NULL;
        double prev_t = 0;

        if (a->metrics)
                return status_metrics(c, a);

        signal(SIGINT, on_sigint);
        do {
                char *text = NULL;
                cJSON *st;
                int r = sb_status(c, a->pool, &text);

                if (r < 0) {
                        cJSON_Delete(prev);
                        return fail(c, r, "status");
                }
                if (a->json) {
                        print_json_shown(text);
                        free(text);
                } else {
                        st = cJSON_Parse(text);
                        free(text);
                        if (redraw)
                                printf("\033[H\033[2J");
                        else if (prev)
                                putchar('\n');
                        print_status(st, prev, now_s() - prev_t);
                        cJSON_Delete(prev);
                        prev = st;
                        prev_t = now_s();
                }
                fflush(stdout);
                if (a->watch)
                        sleep(1);
        } while (a->watch && !interrupted);
        cJSON_Delete(prev);
        return 0;
}

/* --- create, drop ----------------------------------------------------------------------- */

/* Neither attaches the segment: administration works wherever the socket reaches, also from
 * another IPC namespace (a container), where the pool's shmid names no segment. */

static int cmd_create(sb_client *c, const Args *a) {
        sb_pool_options o = { .ordered = a->ordered, .persistent = true, .mode = a->mode, .group = a->group };
        sb_pool *p;
        int r;

        r = sb_pool_create_unattached(c, &p, a->pool, a->slot_size, (uint32_t)a->slots, &o);
        if (r < 0)
                return fail(c, r, "create");
        printf("pool %s: %u slots of %llu bytes (stride %llu), shmid %d\n", sb_pool_name(p), sb_pool_slots(p),
               (unsigned long long)sb_pool_slot_size(p), (unsigned long long)sb_pool_stride(p), sb_pool_shmid(p));
        return 0;
}

static int cmd_drop(sb_client *c, const Args *a) {
        sb_pool *p;
        int r = sb_pool_open_unattached(c, &p, a->pool);

        if (r == 0)
                r = sb_drop(p);
        return r < 0 ? fail(c, r, "drop") : 0;
}

/* --- produce, consume ------------------------------------------------------------------- */

/* On a terminal (stderr), produce and consume show their progress and, when a wait lasts,
 * what it waits for: such a wait goes in steps of a second, and each step that ends with
 * nothing taken asks the daemon for the pool's status. Elsewhere they say nothing until the
 * end, and a wait is one request. */
#define PROGRESS_STEP_MS 1000
#define PROGRESS_EVERY_S 0.5

typedef struct Progress {
        bool on;                 /* stderr is a terminal */
        bool drawn;              /* a progress line is on it */
        const char *pool;
        const char *done_what;   /* "published", "consumed" */
        uint64_t total;          /* 0: until the end of the stream */
        double shown;            /* when the line was last drawn (or the run started) */
} Progress;

static void progress_init(Progress *pg, const char *pool, const char *done_what, uint64_t total) {
        *pg = (Progress){ .on = isatty(STDERR_FILENO), .pool = pool, .done_what = done_what, .total = total,
                          .shown = now_s() };
}

/* "3 of 10 batches published" into @buf. */
static const char *progress_count(const Progress *pg, uint64_t done, char *buf, size_t size) {
        if (pg->total)
                snprintf(buf, size, "%llu of %llu batches %s", (unsigned long long)done,
                         (unsigned long long)pg->total, pg->done_what);
        else
                snprintf(buf, size, "%llu batches %s", (unsigned long long)done, pg->done_what);
        return buf;
}

/* Draw the line anew: back to its start, clear it, write it. A line longer than the
 * terminal is cut to fit: a wrapped one would leave its start behind at the next redraw.
 * The text is ASCII (pool names are). */
_printf_(2, 3)
static void progress_line(Progress *pg, const char *fmt, ...) {
        struct winsize ws = { 0 };
        char line[512];
        size_t n;
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        n = strlen(line);
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 && n >= ws.ws_col)
                n = ws.ws_col - 1u;
        fprintf(stderr, "\r\033[K%.*s", (int)n, line);
        fflush(stderr);
        pg->drawn = true;
        pg->shown = now_s();
}

/* After each batch: the count, at most every PROGRESS_EVERY_S. */
static void progress_batch(Progress *pg, uint64_t done) {
        char n[96];

        if (pg->on && now_s() - pg->shown >= PROGRESS_EVERY_S)
                progress_line(pg, "%s: %s", pg->pool, progress_count(pg, done, n, sizeof(n)));
}

/* Clear the line for what comes next. */
static void progress_end(Progress *pg) {
        if (pg->drawn)
                fputs("\r\033[K", stderr);
        pg->drawn = false;
}

/* What a wait for a free slot (@acquire) or a batch that has lasted @waited seconds waits
 * for: the pool's slots by state, and how many clients that could end it have it open. */
static void progress_waiting(Progress *pg, sb_client *c, bool acquire, uint64_t done, double waited) {
        const char *other = acquire ? "consumer" : "producer";
        const cJSON *pool, *cl;
        char n[96], *text = NULL;
        unsigned others = 0;
        cJSON *st;

        progress_count(pg, done, n, sizeof(n));
        if (sb_status(c, pg->pool, &text) < 0) {
                progress_line(pg, "%s: %s; waiting %.0f s for %s", pg->pool, n, waited,
                              acquire ? "a free slot" : "a batch");
                return;
        }
        st = cJSON_Parse(text);
        free(text);
        pool = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(st, "pools"), 0);
        /* A pool's status lists the clients that have it open. */
        cJSON_ArrayForEach(cl, cJSON_GetObjectItemCaseSensitive(st, "clients"))
                others += strcmp(jstr(cl, "role", ""), other) == 0;
        if (acquire)
                progress_line(pg, "%s: %s; waiting %.0f s for a free slot in pool %s: %u %s%s %s it open (%.0f ready, "
                              "%.0f being read, %.0f being written)", pg->pool, n, waited, pg->pool, others, other,
                              others == 1 ? "" : "s", others == 1 ? "has" : "have", jnum(pool, "ready"),
                              jnum(pool, "reading"), jnum(pool, "writing"));
        else
                progress_line(pg, "%s: %s; waiting %.0f s for a batch in pool %s: %u %s%s %s it open", pg->pool, n,
                              waited, pg->pool, others, other, others == 1 ? "" : "s", others == 1 ? "has" : "have");
        cJSON_Delete(st);
}

/* The timeout of the next step of a wait of @timeout_ms (< 0: no end) that started at
 * @since; -1 when it has no end and no steps. */
static int step_ms(const Progress *pg, int timeout_ms, double since) {
        double left;

        if (timeout_ms < 0)
                return pg->on ? PROGRESS_STEP_MS : -1;
        left = timeout_ms - (now_s() - since) * 1000.0;
        if (left < 0)
                left = 0;
        /* Rounded up: a last step cut to whole milliseconds would end just short of the
         * deadline and leave a step of 0 ms, which is not a wait. */
        return pg->on && left > PROGRESS_STEP_MS ? PROGRESS_STEP_MS : (int)ceil(left);
}

/* Whether a step that timed out (@r) leaves time for another. */
static bool wait_goes_on(const Progress *pg, int r, int timeout_ms, double since) {
        return r == -ETIMEDOUT && pg->on && (timeout_ms < 0 || (now_s() - since) * 1000.0 < timeout_ms);
}

static int cmd_produce(sb_client *c, const Args *a) {
        size_t size, cap;
        uint32_t slot;
        void *ptr;
        sb_pool *p;
        const char *what;
        Progress pg;
        double t0, since;
        int r;

        r = sb_pool_open(c, &p, a->pool);
        if (r < 0)
                return fail(c, r, "open");
        size = a->has_size ? (size_t)a->size : (size_t)sb_pool_slot_size(p);
        if (size > sb_pool_slot_size(p)) {
                fprintf(stderr, "shmbrokerctl produce: --size %zu exceeds the slot size %llu of pool %s\n", size,
                        (unsigned long long)sb_pool_slot_size(p), sb_pool_name(p));
                return EXIT_USAGE;
        }
        progress_init(&pg, sb_pool_name(p), "published", a->count);
        t0 = since = now_s();
        if (a->count > 0) {
                r = sb_acquire(p, step_ms(&pg, a->timeout_ms, since), &ptr, &slot, &cap);
                while (wait_goes_on(&pg, r, a->timeout_ms, since)) {
                        progress_waiting(&pg, c, true, 0, now_s() - since);
                        r = sb_acquire(p, step_ms(&pg, a->timeout_ms, since), &ptr, &slot, &cap);
                }
                if (r < 0) {
                        progress_end(&pg);
                        return fail(c, r, "acquire");
                }
        }
        for (uint64_t i = 0; i < a->count; i++) {
                uint64_t seq = a->seq_start + i * a->seq_step;
                char meta[96];

                pattern_fill(ptr, size, seq);
                snprintf(meta, sizeof(meta), "{\"pattern\":\"shmbrokerctl\",\"seq\":%llu}", (unsigned long long)seq);
                if (i + 1 == a->count) {
                        r = sb_publish(p, slot, size, (int64_t)seq, meta);
                        if (r < 0) {
                                progress_end(&pg);
                                return fail(c, r, "publish");
                        }
                        break;
                }
                /* A timeout is the acquire's: the publish went through. */
                since = now_s();
                r = sb_publish_acquire(p, slot, size, (int64_t)seq, meta, step_ms(&pg, a->timeout_ms, since), &ptr,
                                       &slot, &cap);
                what = r == -ETIMEDOUT ? "acquire" : "publish";
                while (wait_goes_on(&pg, r, a->timeout_ms, since)) {
                        progress_waiting(&pg, c, true, i + 1, now_s() - since);
                        r = sb_acquire(p, step_ms(&pg, a->timeout_ms, since), &ptr, &slot, &cap);
                }
                if (r < 0) {
                        progress_end(&pg);
                        return fail(c, r, what);
                }
                progress_batch(&pg, i + 1);
        }
        progress_end(&pg);
        if (!a->no_end && (r = sb_end(p)) < 0)
                return fail(c, r, "end");
        fprintf(stderr, "produced %llu batches of %zu bytes in %.3f s\n", (unsigned long long)a->count, size,
                now_s() - t0);
        return 0;
}

static int cmd_consume(sb_client *c, const Args *a) {
        uint64_t n = 0, bytes = 0;
        sb_batch b = { .eof = true };
        double t0 = 0, dt, since;
        Progress pg;
        sb_pool *p;
        int r;

        r = sb_pool_open(c, &p, a->pool);
        if (r < 0)
                return fail(c, r, "open");
        progress_init(&pg, sb_pool_name(p), "consumed", a->count);
        for (;;) {
                long long bad;

                since = now_s();
                r = (n == 0 || b.eof) ? sb_consume(p, step_ms(&pg, a->timeout_ms, since), &b)
                                      : sb_release_consume(p, &b, step_ms(&pg, a->timeout_ms, since));
                /* A timeout is the consume's: the release went through. */
                while (wait_goes_on(&pg, r, a->timeout_ms, since)) {
                        progress_waiting(&pg, c, false, n, now_s() - since);
                        r = sb_consume(p, step_ms(&pg, a->timeout_ms, since), &b);
                }
                if (r < 0) {
                        progress_end(&pg);
                        return fail(c, r, "consume");
                }
                /* Without --count, the end of the stream ends the run; with it, the run
                 * goes on over stream ends until it has its batches. */
                if (b.eof && !a->count)
                        break;
                if (b.eof)
                        continue;
                if (n == 0)
                        t0 = now_s();
                bad = pattern_check(b.data, b.nbytes, b.seq);
                if (bad >= 0) {
                        progress_end(&pg);
                        fprintf(stderr, "shmbrokerctl consume: batch seq %llu (slot %u) differs from its pattern at "
                                "byte %lld\n", (unsigned long long)b.seq, b.slot, bad);
                        return EXIT_DAEMON;
                }
                n++;
                bytes += b.nbytes;
                if (a->count && n >= a->count)
                        break;
                progress_batch(&pg, n);
        }
        progress_end(&pg);
        if (!b.eof && (r = sb_release(p, b.slot, false)) < 0)
                return fail(c, r, "release");
        dt = n ? now_s() - t0 : 0;
        printf("consumed %llu batches, %llu bytes, every byte checked: %.1f batches/s, %.3f GB/s\n",
               (unsigned long long)n, (unsigned long long)bytes, dt > 0 ? (double)n / dt : 0.0,
               dt > 0 ? (double)bytes / dt / 1e9 : 0.0);
        return 0;
}

/* --- the command line ------------------------------------------------------------------- */

static const struct {
        const char *name;
        int (*fn)(sb_client *c, const Args *a);
        sb_role role;
        bool needs_pool;
        const char *usage;
        const char *help;
} commands[] = {
        { "status", cmd_status, SB_ROLE_ADMIN, false,
          "status [POOL] [--json] [--watch] [--format=text|json|openmetrics|prometheus]",
          "Show every pool (segment, slots by state, batches and bytes passed, rates, how long producers\n"
          "waited for a free slot and consumers for a ready one) and every client (pid, uid, role, name,\n"
          "slots held and for how long). --json prints the daemon's reply; --watch redraws every second\n"
          "(into a pipe or a file: a snapshot every second, a blank line between them).\n"
          "--format=openmetrics prints the figures, with the uids' quotas and the daemon's own, as\n"
          "OpenMetrics text for Prometheus; --format=prometheus as Prometheus text 0.0.4 (node_exporter's\n"
          "textfile collector)." },
        { "create", cmd_create, SB_ROLE_ADMIN, true,
          "create POOL --slot-size SIZE --slots N [--ordered] [--mode MODE] [--group GROUP]",
          "Create a persistent pool: it stays until dropped. Neither create nor drop attaches the segment:\n"
          "they work wherever the socket reaches (also from another IPC namespace)." },
        { "drop", cmd_drop, SB_ROLE_ADMIN, true, "drop POOL",
          "Drop a pool (its owner or root only); its segment goes when its last user detaches." },
        { "produce", cmd_produce, SB_ROLE_PRODUCER, true,
          "produce POOL --count N [--size BYTES] [--seq-start K] [--seq-step K] [--no-end] [--timeout-ms MS]",
          "Publish N batches of BYTES (default: the slot size), each filled with a pattern derived from\n"
          "its seq (K, K+step, ...), then end the stream unless --no-end. On a terminal, shows its progress\n"
          "and, while it waits for a free slot, what the pool holds and how many consumers have it open.\n"
          "--timeout-ms bounds each wait (default: none)." },
        { "consume", cmd_consume, SB_ROLE_CONSUMER, true, "consume POOL [--count N] [--timeout-ms MS]",
          "Consume batches until the end of the stream (or N batches, over stream ends), check every byte\n"
          "against the pattern of its seq, and report batches/s and GB/s. Exits 1 on a mismatch. On a\n"
          "terminal, shows its progress and, while it waits, how many producers have the pool open." },
};

static void usage(FILE *f) {
        fprintf(f, "Usage: shmbrokerctl [--socket PATH] [--name NAME] COMMAND ...\n\nCommands:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  %s\n", commands[i].usage);
        fprintf(f, "\nSizes take units (16MiB). The socket is --socket, else $SHMBROKER_SOCKET, else "
                SHMBROKER_DEFAULT_SOCKET ".\n`shmbrokerctl COMMAND --help` tells more of each; --version shows the "
                "version.\nExit status: 0 success, 1 refused by the daemon or a batch that does not check out, 2 bad "
                "usage.\n");
}

static int find_command(const char *name) {
        for (int i = 0; i < (int)ELEMENTSOF(commands); i++)
                if (strcmp(commands[i].name, name) == 0)
                        return i;
        return -1;
}

static int parse_format(const char *s, Args *a) {
        a->json = strcmp(s, "json") == 0;
        a->metrics = strcmp(s, "openmetrics") == 0 || strcmp(s, "prometheus") == 0;
        a->metrics_format = strcmp(s, "prometheus") == 0 ? METRICS_PROMETHEUS : METRICS_OPENMETRICS;
        if (!a->json && !a->metrics && strcmp(s, "text") != 0) {
                fprintf(stderr, "shmbrokerctl: --format: \"%s\" is none of text, json, openmetrics, prometheus\n", s);
                return -EINVAL;
        }
        return 0;
}

/* The value @s of option @opt, from @min to @max: a number, or a size with a unit where
 * @size. A bad one gets one line that names the option and says what is wrong. */
static int parse_number(const char *opt, const char *s, bool size, uint64_t min, uint64_t max, uint64_t *ret) {
        int r = sb_parse_size(s, ret);

        if (r == -EINVAL && size)
                fprintf(stderr, "shmbrokerctl: %s: \"%s\" is not a size (a number of bytes, or one with a unit: "
                        "16MiB)\n", opt, s);
        else if (r == -EINVAL)
                fprintf(stderr, "shmbrokerctl: %s: \"%s\" is not a number\n", opt, s);
        else if (r < 0 && max == UINT64_MAX)
                fprintf(stderr, "shmbrokerctl: %s: \"%s\" is too large (past 64 bits)\n", opt, s);
        else if (r < 0 || *ret > max)
                fprintf(stderr, "shmbrokerctl: %s: \"%s\" is too large (at most %llu)\n", opt, s,
                        (unsigned long long)max);
        else if (*ret < min)
                fprintf(stderr, "shmbrokerctl: %s: \"%s\" is too small (at least %llu)\n", opt, s,
                        (unsigned long long)min);
        else
                return 0;
        return -EINVAL;
}

/* Fill @a from the command line, and *cmd with the command (-1: none given). Every
 * mistake gets a line of its own; returns -EINVAL after any. */
static int parse_args(int argc, char **argv, Args *a, int *cmd) {
        enum { O_SOCKET = 0x100, O_NAME, O_JSON, O_WATCH, O_SLOT_SIZE, O_SLOTS, O_ORDERED, O_MODE, O_GROUP,
               O_COUNT, O_SIZE, O_SEQ_START, O_SEQ_STEP, O_NO_END, O_TIMEOUT, O_VERSION, O_FORMAT };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, O_SOCKET }, { "name", required_argument, NULL, O_NAME },
                { "json", no_argument, NULL, O_JSON }, { "watch", no_argument, NULL, O_WATCH },
                { "slot-size", required_argument, NULL, O_SLOT_SIZE }, { "slots", required_argument, NULL, O_SLOTS },
                { "ordered", no_argument, NULL, O_ORDERED }, { "mode", required_argument, NULL, O_MODE },
                { "group", required_argument, NULL, O_GROUP }, { "count", required_argument, NULL, O_COUNT },
                { "size", required_argument, NULL, O_SIZE }, { "seq-start", required_argument, NULL, O_SEQ_START },
                { "seq-step", required_argument, NULL, O_SEQ_STEP }, { "no-end", no_argument, NULL, O_NO_END },
                { "timeout-ms", required_argument, NULL, O_TIMEOUT }, { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, O_VERSION },
                { "format", required_argument, NULL, O_FORMAT },
                { 0 }
        };
        bool bad = false;
        uint64_t v;
        int o;

        *a = (Args){ .seq_step = 1, .timeout_ms = -1 };
        *cmd = -1;
        /* getopt_long() names the program by argv[0] in its messages: as every other line does. */
        argv[0] = (char *)"shmbrokerctl";
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case O_SOCKET: a->socket = optarg; break;
                case O_NAME: a->name = optarg; break;
                case O_JSON: a->json = true; break;
                case O_WATCH: a->watch = true; break;
                case O_ORDERED: a->ordered = true; break;
                case O_NO_END: a->no_end = true; break;
                case O_GROUP: a->group = optarg; break;
                case O_SLOT_SIZE:
                        bad |= parse_number("--slot-size", optarg, true, 1, UINT64_MAX, &a->slot_size) < 0;
                        a->has_slot_size = true;
                        break;
                case O_SLOTS:
                        bad |= parse_number("--slots", optarg, false, 1, UINT32_MAX, &a->slots) < 0;
                        a->has_slots = true;
                        break;
                case O_COUNT: bad |= parse_number("--count", optarg, false, 0, UINT64_MAX, &a->count) < 0; break;
                case O_SIZE:
                        bad |= parse_number("--size", optarg, true, 0, SIZE_MAX, &a->size) < 0;
                        a->has_size = true;
                        break;
                case O_SEQ_START:
                        bad |= parse_number("--seq-start", optarg, false, 0, INT64_MAX, &a->seq_start) < 0;
                        break;
                case O_SEQ_STEP:
                        bad |= parse_number("--seq-step", optarg, false, 0, INT64_MAX, &a->seq_step) < 0;
                        break;
                case O_TIMEOUT:
                        if (parse_number("--timeout-ms", optarg, false, 0, INT32_MAX, &v) < 0)
                                bad = true;
                        else
                                a->timeout_ms = (int)v;
                        break;
                case O_MODE: {
                        char *end;
                        unsigned long m = strtoul(optarg, &end, 8);
                        if (!*optarg || *end || m > 0777) {
                                fprintf(stderr, "shmbrokerctl: --mode: \"%s\" is not an octal mode (0600, 0660, ...)\n",
                                        optarg);
                                bad = true;
                        }
                        a->mode = (unsigned)m;
                        break;
                }
                case O_FORMAT:
                        if (parse_format(optarg, a) < 0)
                                return -EINVAL;
                        break;
                case 'h': a->help = true; break;
                case O_VERSION: a->version = true; break;
                default: bad = true; break;        /* getopt_long() said what */
                }
        }
        /* getopt_long() moved the operands behind the options: COMMAND [POOL]. */
        if (optind < argc) {
                *cmd = find_command(argv[optind]);
                if (*cmd < 0) {
                        fprintf(stderr, "shmbrokerctl: unknown command \"%s\"\n", argv[optind]);
                        bad = true;
                }
                a->pool = optind + 1 < argc ? argv[optind + 1] : NULL;
                if (argc - optind > 2) {
                        fprintf(stderr, "shmbrokerctl: unexpected argument \"%s\"\n", argv[optind + 2]);
                        bad = true;
                }
        } else if (!a->help && !a->version && !bad) {
                fprintf(stderr, "shmbrokerctl: no command given\n");
                bad = true;
        }
        return bad ? -EINVAL : 0;
}

/* What the command needs beyond what parse_args() checks, one line for each thing missing. */
static int check_args(int cmd, const Args *a) {
        bool bad = false;

        if (commands[cmd].needs_pool && !a->pool) {
                fprintf(stderr, "shmbrokerctl %s: a POOL is needed\n", commands[cmd].name);
                bad = true;
        }
        if (commands[cmd].fn == cmd_create && !a->has_slot_size) {
                fprintf(stderr, "shmbrokerctl create: --slot-size is needed\n");
                bad = true;
        }
        if (commands[cmd].fn == cmd_create && !a->has_slots) {
                fprintf(stderr, "shmbrokerctl create: --slots is needed\n");
                bad = true;
        }
        return bad ? -EINVAL : 0;
}

int main(int argc, char **argv) {
        sb_client *c = NULL;
        Args a;
        int cmd, r;

        r = parse_args(argc, argv, &a, &cmd);
        if (r == 0 && cmd >= 0 && !a.help && !a.version)
                r = check_args(cmd, &a);
        if (r < 0) {
                fprintf(stderr, "Try 'shmbrokerctl%s%s --help'.\n", cmd >= 0 ? " " : "",
                        cmd >= 0 ? commands[cmd].name : "");
                return EXIT_USAGE;
        }
        if (a.version) {
                printf("shmbrokerctl " SHMBROKER_VERSION "\n");
                return 0;
        }
        if (a.help) {
                if (cmd < 0)
                        usage(stdout);
                else
                        printf("Usage: shmbrokerctl [--socket PATH] [--name NAME] %s\n\n%s\n", commands[cmd].usage,
                               commands[cmd].help);
                return 0;
        }
        r = sb_connect(&c, a.socket, commands[cmd].role, a.name ? a.name : "shmbrokerctl");
        if (r < 0) {
                fprintf(stderr, "shmbrokerctl: cannot connect to %s: %s\n", sb_connect_path(a.socket), strerror(-r));
                return EXIT_DAEMON;
        }
        r = commands[cmd].fn(c, &a);
        sb_client_free(c);
        return r;
}
