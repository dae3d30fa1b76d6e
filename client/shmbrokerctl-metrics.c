/*
 * shmbrokerctl-metrics.c: a status reply as metrics, in OpenMetrics or Prometheus text.
 *
 * Every metric is one row of one table: its name, type, unit, help, what it is about (a
 * pool, a uid, the daemon) and the status field it reads. Names follow Prometheus's
 * conventions: the prefix shmbroker_, the base unit last (_bytes, _seconds), counters'
 * samples ending in _total, a limit as its own gauge named max_ beside what it limits
 * (shmbroker_uid_pools and shmbroker_uid_max_pools share their labels, so that one divides
 * by the other). docs/operations.md lists them for administrators.
 *
 * The two formats differ only in a counter's family name (OpenMetrics names the family
 * without _total, the text format 0.0.4 with it), UNIT lines and the final "# EOF", which
 * the 0.0.4 format has not: node_exporter's textfile collector reads 0.0.4 and would take
 * an OpenMetrics counter for an untyped metric.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sb-macro.h"
#include "sb-utf8.h"
#include "shmbrokerctl-metrics.h"

typedef enum Scope {
        SCOPE_DAEMON,
        SCOPE_POOL,              /* one series per entry of "pools", label pool */
        SCOPE_UID,               /* one series per entry of "uids", label uid */
} Scope;

typedef struct Sample {
        const char *label_value; /* the family's label's value; NULL when it has none */
        const char *key;         /* the status field; "limits.NAME": the limit in force */
} Sample;

typedef struct Family {
        const char *name;
        bool counter;
        const char *unit;        /* NULL, "bytes" or "seconds": the name ends with it */
        Scope scope;
        uint32_t divisor;        /* the field counts 1/divisor of the unit: 1, 1000 (ms), 1000000 (us) */
        const char *help;
        const char *label;       /* a label besides pool or uid, or NULL */
        Sample samples[4];       /* up to the first with key NULL */
} Family;

#define ONE(key) { { NULL, key } }

static const Family families[] = {
        { "shmbroker_pool_slots", false, NULL, SCOPE_POOL, 1,
          "Slots of the pool by state; they add up to the pool's slots.", "state",
          { { "free", "free" }, { "writing", "writing" }, { "ready", "ready" }, { "reading", "reading" } } },
        { "shmbroker_pool_slot_size_bytes", false, "bytes", SCOPE_POOL, 1, "Size of each slot of the pool.", NULL,
          ONE("slot_size") },
        { "shmbroker_pool_segment_bytes", false, "bytes", SCOPE_POOL, 1,
          "Size of the pool's shared-memory segment (slots times their page-aligned stride).", NULL, ONE("size") },
        { "shmbroker_pool_clients", false, NULL, SCOPE_POOL, 1, "Connections that have the pool open, by role.",
          "role", { { "producer", "producers" }, { "consumer", "consumers" }, { "admin", "admins" } } },
        { "shmbroker_pool_waiting_clients", false, NULL, SCOPE_POOL, 1,
          "Connections waiting in the daemon: acquire for a free slot, consume for a ready batch.", "request",
          { { "acquire", "acquire_waiters" }, { "consume", "consume_waiters" } } },
        { "shmbroker_pool_slots_acquired", true, NULL, SCOPE_POOL, 1, "Slots taken by producers for writing.", NULL,
          ONE("acquired") },
        { "shmbroker_pool_batches_published", true, NULL, SCOPE_POOL, 1, "Batches published by producers.", NULL,
          ONE("published") },
        { "shmbroker_pool_batches_consumed", true, NULL, SCOPE_POOL, 1,
          "Batches taken by consumers (a requeued batch again).", NULL, ONE("consumed") },
        { "shmbroker_pool_published_bytes", true, "bytes", SCOPE_POOL, 1, "Bytes of the batches published.", NULL,
          ONE("bytes_published") },
        { "shmbroker_pool_consumed_bytes", true, "bytes", SCOPE_POOL, 1, "Bytes of the batches taken by consumers.",
          NULL, ONE("bytes_consumed") },
        { "shmbroker_pool_producer_wait_seconds", true, "seconds", SCOPE_POOL, 1000000,
          "Time producers spent waiting for a free slot (the loaders are ahead), waits going on included.", NULL,
          ONE("producer_wait_us") },
        { "shmbroker_pool_consumer_wait_seconds", true, "seconds", SCOPE_POOL, 1000000,
          "Time consumers spent waiting for a ready batch (the trainer is starved), waits going on included.", NULL,
          ONE("consumer_wait_us") },
        { "shmbroker_pool_streams_ended", true, NULL, SCOPE_POOL, 1, "Streams (epochs) that ended.", NULL,
          ONE("streams_ended") },

        { "shmbroker_uid_connections", false, NULL, SCOPE_UID, 1, "Connections of the uid.", NULL, ONE("clients") },
        { "shmbroker_uid_max_connections", false, NULL, SCOPE_UID, 1,
          "The quota max_clients_per_uid: connections a uid may have.", NULL, ONE("limits.max_clients_per_uid") },
        { "shmbroker_uid_pools", false, NULL, SCOPE_UID, 1,
          "Pools the uid created, dropped ones still attached included.", NULL, ONE("pools") },
        { "shmbroker_uid_max_pools", false, NULL, SCOPE_UID, 1, "The quota max_pools_per_uid.", NULL,
          ONE("limits.max_pools_per_uid") },
        { "shmbroker_uid_pool_bytes", false, "bytes", SCOPE_UID, 1,
          "Bytes of the segments of the uid's pools, dropped ones still attached included.", NULL, ONE("bytes") },
        { "shmbroker_uid_max_pool_bytes", false, "bytes", SCOPE_UID, 1, "The quota max_bytes_per_uid.", NULL,
          ONE("limits.max_bytes_per_uid") },
        { "shmbroker_uid_meta_bytes", false, "bytes", SCOPE_UID, 1,
          "Bytes of the meta of the ready batches the uid published, kept by the daemon.", NULL,
          ONE("meta_bytes") },
        { "shmbroker_uid_max_meta_bytes", false, "bytes", SCOPE_UID, 1, "The quota max_meta_bytes_per_uid.", NULL,
          ONE("limits.max_meta_bytes_per_uid") },

        { "shmbroker_connections", false, NULL, SCOPE_DAEMON, 1, "Client connections.", NULL, ONE("connections") },
        { "shmbroker_max_connections", false, NULL, SCOPE_DAEMON, 1, "The limit max_clients.", NULL,
          ONE("limits.max_clients") },
        { "shmbroker_pools", false, NULL, SCOPE_DAEMON, 1, "Pools.", NULL, ONE("pool_count") },
        { "shmbroker_max_pools", false, NULL, SCOPE_DAEMON, 1, "The limit max_pools.", NULL, ONE("limits.max_pools") },
        { "shmbroker_segment_bytes", false, "bytes", SCOPE_DAEMON, 1, "Bytes of the segments of every pool.", NULL,
          ONE("pool_bytes") },
        { "shmbroker_dropped_pools", false, NULL, SCOPE_DAEMON, 1,
          "Dropped pools whose segments clients still attach.", NULL, ONE("dropped_pools") },
        { "shmbroker_dropped_segment_bytes", false, "bytes", SCOPE_DAEMON, 1,
          "Bytes of the segments of dropped pools that clients still attach.", NULL, ONE("dropped_bytes") },
        { "shmbroker_max_segment_bytes", false, "bytes", SCOPE_DAEMON, 1,
          "The limit max_bytes, on the segments of the pools and of the dropped ones still attached.", NULL,
          ONE("limits.max_bytes") },
        { "shmbroker_buffered_bytes", false, "bytes", SCOPE_DAEMON, 1,
          "Bytes of the client connections' buffers.", NULL, ONE("buffered") },
        { "shmbroker_max_buffered_bytes", false, "bytes", SCOPE_DAEMON, 1, "The limit max_buffered.", NULL,
          ONE("limits.max_buffered") },
        { "shmbroker_uptime_seconds", false, "seconds", SCOPE_DAEMON, 1000, "Time since the daemon started.", NULL,
          ONE("uptime_ms") },
        { "shmbroker_resident_memory_bytes", false, "bytes", SCOPE_DAEMON, 1,
          "Resident memory of the daemon (its own, not the pools' segments).", NULL, ONE("rss_bytes") },
};

/* The number at @key of @entry, or of the reply's limits for "limits.NAME". */
static const cJSON *field(const cJSON *root, const cJSON *entry, const char *key) {
        const cJSON *v;

        if (strncmp(key, "limits.", 7) == 0)
                v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "limits"), key + 7);
        else
                v = cJSON_GetObjectItemCaseSensitive(entry, key);
        return cJSON_IsNumber(v) && v->valuedouble >= 0 ? v : NULL;
}

/* A label value as both formats escape it: backslash, double quote and newline; a byte
 * that is not UTF-8 as U+FFFD (the formats are UTF-8). Pool names need none of it today
 * (sb_pool_name_valid()), but the names are the daemon's to choose. */
static void print_label_value(const char *s, FILE *out) {
        size_t n = strlen(s), k;
        uint32_t cp;

        for (; n > 0; s += k, n -= k) {
                k = sb_utf8_char((const unsigned char *)s, n, &cp);
                if (k == 0) {
                        fputs("\xef\xbf\xbd", out);
                        k = 1;
                } else if (*s == '\\')
                        fputs("\\\\", out);
                else if (*s == '"')
                        fputs("\\\"", out);
                else if (*s == '\n')
                        fputs("\\n", out);
                else
                        fwrite(s, 1, k, out);
        }
}

/* The value of @v in units of 1/@divisor, exactly: the fields are integers (cJSON keeps
 * them as doubles, exact up to 2^53, as Prometheus's own float64 samples are). */
static void print_value(const cJSON *v, uint32_t divisor, FILE *out) {
        double d = v->valuedouble;
        uint64_t u;

        if (divisor == 1 || d >= 18446744073709551615.0) {
                fprintf(out, "%.0f", d / divisor);
                return;
        }
        u = (uint64_t)d;
        fprintf(out, "%llu.%0*llu", (unsigned long long)(u / divisor), divisor == 1000 ? 3 : 6,
                (unsigned long long)(u % divisor));
}

static void print_sample(const Family *f, const Sample *s, const char *scope_label, const char *scope_value,
                         const cJSON *v, FILE *out) {
        const char *sep = "{";

        fprintf(out, "%s%s", f->name, f->counter ? "_total" : "");
        if (scope_label && scope_value) {
                fprintf(out, "%s%s=\"", sep, scope_label);
                print_label_value(scope_value, out);
                fputc('"', out);
                sep = ",";
        }
        if (s->label_value) {
                fprintf(out, "%s%s=\"", sep, f->label);
                print_label_value(s->label_value, out);
                fputc('"', out);
                sep = ",";
        }
        if (*sep == ',')
                fputc('}', out);
        fputc(' ', out);
        print_value(v, f->divisor, out);
        fputc('\n', out);
}

static void print_family(const Family *f, const cJSON *root, MetricsFormat format, FILE *out) {
        const char *suffix = f->counter && format == METRICS_PROMETHEUS ? "_total" : "";
        const cJSON *entries = NULL, *e;
        char uid[24];

        fprintf(out, "# HELP %s%s %s\n", f->name, suffix, f->help);
        fprintf(out, "# TYPE %s%s %s\n", f->name, suffix, f->counter ? "counter" : "gauge");
        if (f->unit && format == METRICS_OPENMETRICS)
                fprintf(out, "# UNIT %s %s\n", f->name, f->unit);
        if (f->scope == SCOPE_DAEMON) {
                for (const Sample *s = f->samples; s < f->samples + ELEMENTSOF(f->samples) && s->key; s++) {
                        const cJSON *v = field(root, root, s->key);
                        if (v)
                                print_sample(f, s, NULL, NULL, v, out);
                }
                return;
        }
        entries = cJSON_GetObjectItemCaseSensitive(root, f->scope == SCOPE_POOL ? "pools" : "uids");
        cJSON_ArrayForEach(e, entries) {
                const char *label, *value;

                if (f->scope == SCOPE_POOL) {
                        const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "pool");
                        if (!cJSON_IsString(name))
                                continue;
                        label = "pool";
                        value = name->valuestring;
                } else {
                        const cJSON *n = field(root, e, "uid");
                        if (!n)
                                continue;
                        snprintf(uid, sizeof(uid), "%.0f", n->valuedouble);
                        label = "uid";
                        value = uid;
                }
                for (const Sample *s = f->samples; s < f->samples + ELEMENTSOF(f->samples) && s->key; s++) {
                        const cJSON *v = field(root, e, s->key);
                        if (v)
                                print_sample(f, s, label, value, v, out);
                }
        }
}

int metrics_print(const char *status_json, MetricsFormat format, FILE *out) {
        cJSON *root = cJSON_Parse(status_json);

        if (!cJSON_IsObject(root) || !cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "pools"))) {
                cJSON_Delete(root);
                return -EINVAL;
        }
        for (size_t i = 0; i < ELEMENTSOF(families); i++)
                print_family(&families[i], root, format, out);
        if (format == METRICS_OPENMETRICS)
                fputs("# EOF\n", out);
        cJSON_Delete(root);
        return 0;
}
