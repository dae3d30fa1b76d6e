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
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
        bool json, watch, ordered, no_end, help;
        bool metrics;            /* --format=openmetrics or prometheus, in metrics_format */
        MetricsFormat metrics_format;
        uint64_t slot_size, size, count, slots, seq_start, seq_step;
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

/* --- the pattern: 64-bit words derived from the batch's seq -------------------------------- */

static uint64_t pattern_word(uint64_t seq, uint64_t k) {
        uint64_t z = seq * UINT64_C(0x9E3779B97F4A7C15) + k * UINT64_C(0xBF58476D1CE4E5B9) + 1;
        z ^= z >> 31;
        return z;
}

static void pattern_fill(uint8_t *dst, size_t n, uint64_t seq) {
        size_t k = 0;

        for (; (k + 1) * 8 <= n; k++) {
                uint64_t w = pattern_word(seq, k);
                memcpy(dst + k * 8, &w, 8);
        }
        if (k * 8 < n) {
                uint64_t w = pattern_word(seq, k);
                memcpy(dst + k * 8, &w, n - k * 8);
        }
}

/* The offset of the first byte that differs from the pattern, or -1. */
static long long pattern_check(const uint8_t *src, size_t n, uint64_t seq) {
        size_t k = 0;

        for (; (k + 1) * 8 <= n; k++) {
                uint64_t w = pattern_word(seq, k), v;
                memcpy(&v, src + k * 8, 8);
                if (v != w)
                        break;
        }
        for (size_t i = k * 8; i < n; i++) {
                uint64_t w = pattern_word(seq, i / 8);
                if (src[i] != ((const uint8_t *)&w)[i % 8])
                        return (long long)i;
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
                        if (a->watch)
                                printf("\033[H\033[2J");
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

static int cmd_create(sb_client *c, const Args *a) {
        sb_pool_options o = { .ordered = a->ordered, .persistent = true, .mode = a->mode, .group = a->group };
        sb_pool *p;
        int r;

        if (!a->slot_size || !a->slots) {
                fprintf(stderr, "shmbrokerctl create: --slot-size and --slots are needed\n");
                return EXIT_USAGE;
        }
        r = sb_pool_create(c, &p, a->pool, a->slot_size, (uint32_t)a->slots, &o);
        if (r < 0)
                return fail(c, r, "create");
        printf("pool %s: %u slots of %llu bytes (stride %llu), shmid %d\n", sb_pool_name(p), sb_pool_slots(p),
               (unsigned long long)sb_pool_slot_size(p), (unsigned long long)sb_pool_stride(p), sb_pool_shmid(p));
        return 0;
}

static int cmd_drop(sb_client *c, const Args *a) {
        sb_pool *p;
        int r = sb_pool_open(c, &p, a->pool);

        if (r == 0)
                r = sb_drop(p);
        return r < 0 ? fail(c, r, "drop") : 0;
}

/* --- produce, consume ------------------------------------------------------------------- */

static int cmd_produce(sb_client *c, const Args *a) {
        size_t size, cap;
        uint32_t slot;
        void *ptr;
        sb_pool *p;
        double t0;
        int r;

        r = sb_pool_open(c, &p, a->pool);
        if (r < 0)
                return fail(c, r, "open");
        size = a->size ? (size_t)a->size : (size_t)sb_pool_slot_size(p);
        if (size > sb_pool_slot_size(p)) {
                fprintf(stderr, "shmbrokerctl produce: --size %zu exceeds the slot size %llu\n", size,
                        (unsigned long long)sb_pool_slot_size(p));
                return EXIT_USAGE;
        }
        t0 = now_s();
        if (a->count > 0 && (r = sb_acquire(p, a->timeout_ms, &ptr, &slot, &cap)) < 0)
                return fail(c, r, "acquire");
        for (uint64_t i = 0; i < a->count; i++) {
                uint64_t seq = a->seq_start + i * a->seq_step;
                char meta[96];

                pattern_fill(ptr, size, seq);
                snprintf(meta, sizeof(meta), "{\"pattern\":\"shmbrokerctl\",\"seq\":%llu}", (unsigned long long)seq);
                if (i + 1 < a->count)
                        r = sb_publish_acquire(p, slot, size, (int64_t)seq, meta, a->timeout_ms, &ptr, &slot, &cap);
                else
                        r = sb_publish(p, slot, size, (int64_t)seq, meta);
                if (r < 0)
                        return fail(c, r, "publish");
        }
        if (!a->no_end && (r = sb_end(p)) < 0)
                return fail(c, r, "end");
        fprintf(stderr, "produced %llu batches of %zu bytes in %.3f s\n", (unsigned long long)a->count, size,
                now_s() - t0);
        return 0;
}

static int cmd_consume(sb_client *c, const Args *a) {
        uint64_t n = 0, bytes = 0;
        sb_batch b = { .eof = true };
        double t0 = 0, dt;
        sb_pool *p;
        int r;

        r = sb_pool_open(c, &p, a->pool);
        if (r < 0)
                return fail(c, r, "open");
        for (;;) {
                long long bad;

                r = (n == 0 || b.eof) ? sb_consume(p, a->timeout_ms, &b) : sb_release_consume(p, &b, a->timeout_ms);
                if (r < 0)
                        return fail(c, r, "consume");
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
                        fprintf(stderr, "shmbrokerctl consume: batch seq %llu (slot %u) differs from its pattern at "
                                "byte %lld\n", (unsigned long long)b.seq, b.slot, bad);
                        return EXIT_DAEMON;
                }
                n++;
                bytes += b.nbytes;
                if (a->count && n >= a->count)
                        break;
        }
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
          "slots held and for how long). --json prints the daemon's reply; --watch redraws every second.\n"
          "--format=openmetrics prints the figures, with the uids' quotas and the daemon's own, as\n"
          "OpenMetrics text for Prometheus; --format=prometheus as Prometheus text 0.0.4 (node_exporter's\n"
          "textfile collector)." },
        { "create", cmd_create, SB_ROLE_ADMIN, true,
          "create POOL --slot-size SIZE --slots N [--ordered] [--mode MODE] [--group GROUP]",
          "Create a persistent pool: it stays until dropped." },
        { "drop", cmd_drop, SB_ROLE_ADMIN, true, "drop POOL",
          "Drop a pool (its owner or root only); its segment goes when its last user detaches." },
        { "produce", cmd_produce, SB_ROLE_PRODUCER, true,
          "produce POOL --count N [--size BYTES] [--seq-start K] [--seq-step K] [--no-end] [--timeout-ms MS]",
          "Publish N batches of BYTES (default: the slot size), each filled with a pattern derived from\n"
          "its seq (K, K+step, ...), then end the stream unless --no-end." },
        { "consume", cmd_consume, SB_ROLE_CONSUMER, true, "consume POOL [--count N] [--timeout-ms MS]",
          "Consume batches until the end of the stream (or N batches, over stream ends), check every byte\n"
          "against the pattern of its seq, and report batches/s and GB/s. Exits 1 on a mismatch." },
};

static void usage(FILE *f) {
        fprintf(f, "Usage: shmbrokerctl [--socket PATH] [--name NAME] COMMAND ...\n\nCommands:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  %s\n", commands[i].usage);
        fprintf(f, "\nSizes take units (16MiB). The socket is --socket, else $SHMBROKER_SOCKET, else "
                SHMBROKER_DEFAULT_SOCKET ".\nExit status: 0 success, 1 refused by the daemon or a batch that does "
                "not check out, 2 bad usage.\n");
}

static int parse_number(const char *opt, const char *s, uint64_t *ret) {
        if (sb_parse_size(s, ret) < 0) {
                fprintf(stderr, "shmbrokerctl: %s: \"%s\" is not a number or size\n", opt, s);
                return -EINVAL;
        }
        return 0;
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

static int parse_args(int argc, char **argv, Args *a, int *cmd) {
        enum { O_SOCKET = 0x100, O_NAME, O_JSON, O_WATCH, O_SLOT_SIZE, O_SLOTS, O_ORDERED, O_MODE, O_GROUP,
               O_COUNT, O_SIZE, O_SEQ_START, O_SEQ_STEP, O_NO_END, O_TIMEOUT, O_FORMAT };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, O_SOCKET }, { "name", required_argument, NULL, O_NAME },
                { "json", no_argument, NULL, O_JSON }, { "watch", no_argument, NULL, O_WATCH },
                { "slot-size", required_argument, NULL, O_SLOT_SIZE }, { "slots", required_argument, NULL, O_SLOTS },
                { "ordered", no_argument, NULL, O_ORDERED }, { "mode", required_argument, NULL, O_MODE },
                { "group", required_argument, NULL, O_GROUP }, { "count", required_argument, NULL, O_COUNT },
                { "size", required_argument, NULL, O_SIZE }, { "seq-start", required_argument, NULL, O_SEQ_START },
                { "seq-step", required_argument, NULL, O_SEQ_STEP }, { "no-end", no_argument, NULL, O_NO_END },
                { "timeout-ms", required_argument, NULL, O_TIMEOUT }, { "help", no_argument, NULL, 'h' },
                { "format", required_argument, NULL, O_FORMAT },
                { 0 }
        };
        uint64_t v;
        int o;

        *a = (Args){ .seq_step = 1, .timeout_ms = -1 };
        while ((o = getopt_long(argc, argv, "h", opts, NULL)) >= 0) {
                switch (o) {
                case O_SOCKET: a->socket = optarg; break;
                case O_NAME: a->name = optarg; break;
                case O_JSON: a->json = true; break;
                case O_WATCH: a->watch = true; break;
                case O_ORDERED: a->ordered = true; break;
                case O_NO_END: a->no_end = true; break;
                case O_GROUP: a->group = optarg; break;
                case O_SLOT_SIZE: if (parse_number("--slot-size", optarg, &a->slot_size) < 0) return -EINVAL; break;
                case O_SLOTS: if (parse_number("--slots", optarg, &a->slots) < 0) return -EINVAL; break;
                case O_COUNT: if (parse_number("--count", optarg, &a->count) < 0) return -EINVAL; break;
                case O_SIZE: if (parse_number("--size", optarg, &a->size) < 0) return -EINVAL; break;
                case O_SEQ_START: if (parse_number("--seq-start", optarg, &a->seq_start) < 0) return -EINVAL; break;
                case O_SEQ_STEP: if (parse_number("--seq-step", optarg, &a->seq_step) < 0) return -EINVAL; break;
                case O_TIMEOUT:
                        if (parse_number("--timeout-ms", optarg, &v) < 0 || v > INT32_MAX)
                                return -EINVAL;
                        a->timeout_ms = (int)v;
                        break;
                case O_MODE: {
                        char *end;
                        unsigned long m = strtoul(optarg, &end, 8);
                        if (*end || m > 0777) {
                                fprintf(stderr, "shmbrokerctl: --mode: \"%s\" is not an octal mode\n", optarg);
                                return -EINVAL;
                        }
                        a->mode = (unsigned)m;
                        break;
                }
                case O_FORMAT:
                        if (parse_format(optarg, a) < 0)
                                return -EINVAL;
                        break;
                case 'h': a->help = true; break;
                default: return -EINVAL;
                }
        }
        /* getopt_long() moved the operands behind the options: COMMAND [POOL]. */
        if (optind >= argc && a->help) {
                *cmd = -1;
                return 0;
        }
        if (optind >= argc || argc - optind > 2)
                return -EINVAL;
        for (*cmd = 0; *cmd < (int)ELEMENTSOF(commands); (*cmd)++)
                if (strcmp(commands[*cmd].name, argv[optind]) == 0)
                        break;
        if (*cmd == (int)ELEMENTSOF(commands)) {
                fprintf(stderr, "shmbrokerctl: unknown command \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        a->pool = optind + 1 < argc ? argv[optind + 1] : NULL;
        return 0;
}

int main(int argc, char **argv) {
        sb_client *c = NULL;
        Args a;
        int cmd, r;

        if (parse_args(argc, argv, &a, &cmd) < 0) {
                usage(stderr);
                return EXIT_USAGE;
        }
        if (a.help) {
                if (cmd < 0)
                        usage(stdout);
                else
                        printf("Usage: shmbrokerctl [--socket PATH] [--name NAME] %s\n\n%s\n", commands[cmd].usage,
                               commands[cmd].help);
                return 0;
        }
        if (commands[cmd].needs_pool && !a.pool) {
                fprintf(stderr, "Usage: shmbrokerctl %s\n", commands[cmd].usage);
                return EXIT_USAGE;
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
