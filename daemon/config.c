/*
 * config.c: reading the configuration file, and checking it as a whole.
 *
 * cJSON has no comments and keeps no positions, and cJSON_Minify() strips comments but
 * shifts every offset. So comments are blanked out in place (newlines kept), cJSON
 * parses the result, and an error found later in a value is traced back to its line by
 * sb_json_locate() (locate.c), a small scanner over the same blanked text. The Config keeps
 * that text, so that the checks of the whole (config_check(), and the broker's) name lines
 * too.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "sb-json-text.h"
#include "sb-json.h"
#include "sb-names.h"
#include "sb-size.h"
#include "sb-unix.h"

#define CONFIG_FILE_MAX (4u << 20)

Config *config_new_default(void) {
        Config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->socket_mode = 0660;
        c->limits = (ConfigLimits){
                .max_pools = 64,
                .max_bytes = UINT64_C(64) << 30,
                .max_clients = 1024,
                .max_line = 1048576,
                .max_meta = UINT64_C(64) << 10,
                .max_meta_bytes = UINT64_C(256) << 20,
                .max_pools_per_uid = 16,
                .max_bytes_per_uid = UINT64_C(16) << 30,
                .max_clients_per_uid = 256,
                .max_buffered = UINT64_C(128) << 20,
                .max_meta_bytes_per_uid = UINT64_C(64) << 20,
        };
        return c;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->path);
        free(c->text);
        free(c->socket);
        free(c->socket_group);
        free(c->pools);
        free(c);
        return NULL;
}

/* Replace // and block comments outside strings by blanks, keeping newlines. */
static int blank_comments(char *s, size_t len) {
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                if (in_string) {
                        if (s[i] == '\\' && i + 1 < len)
                                i++;
                        else if (s[i] == '"')
                                in_string = false;
                } else if (s[i] == '"') {
                        in_string = true;
                } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '/') {
                        for (; i < len && s[i] != '\n'; i++)
                                s[i] = ' ';
                } else if (s[i] == '/' && i + 1 < len && s[i + 1] == '*') {
                        size_t start = i;
                        for (i += 2; i + 1 < len && !(s[i] == '*' && s[i + 1] == '/'); i++)
                                ;
                        if (i + 1 >= len)
                                return (int)start;    /* unterminated comment */
                        for (size_t j = start; j <= i + 1; j++)
                                if (s[j] != '\n')
                                        s[j] = ' ';
                        i++;
                }
        }
        return -1;
}

static bool key_known(const char *k, const char *const *keys, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(k, keys[i]) == 0)
                        return true;
        return false;
}

/* --- the file ------------------------------------------------------------------- */

static int config_vfail(const Config *c, SbReason *why, unsigned line, const char *fmt, va_list ap) {
        vsnprintf(why->text, sizeof(why->text), fmt, ap);
        if (c->text)
                sb_reason_prefix(why, "line %u", line);
        if (c->path)
                sb_reason_prefix(why, "%s", c->path);
        return -EINVAL;
}

int config_fail(const Config *c, SbReason *why, const char *key, long index, const char *sub, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = config_vfail(c, why, c->text ? sb_json_locate(c->text, c->text_len, key, index, sub) : 0, fmt, ap);
        va_end(ap);
        return r;
}

/* Fail at member number @n of the object sb_json_locate_member() finds by @key and @index. */
_printf_(6, 7)
static int config_fail_member(const Config *c, SbReason *why, const char *key, long index, size_t n, const char *fmt,
                              ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = config_vfail(c, why, sb_json_locate_member(c->text, c->text_len, key, index, n), fmt, ap);
        va_end(ap);
        return r;
}

/* cJSON keeps every member of an object: of a key given twice, one would be read and the
 * other silently ignored, whichever the administrator meant. @obj is the object of @key and
 * @index (as config_fail_member() finds it), @where how a person finds it. */
static int refuse_repeated_key(const Config *c, SbReason *why, const cJSON *obj, const char *key, long index,
                               const char *where) {
        size_t n, first;
        const cJSON *v = sb_json_repeated_key(obj, &n, &first);

        if (!v)
                return 0;
        return config_fail_member(c, why, key, index, n, "\"%s\" is set twice%s (first on line %u)", v->string, where,
                                  sb_json_locate_member(c->text, c->text_len, key, index, first));
}

/* How an error names pool @i of the file: by its name when it has one a person can read. */
static const char *pool_label(const cJSON *obj, size_t i, char *buf, size_t size) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");

        if (cJSON_IsString(name) && sb_name_text_valid(name->valuestring) &&
            strlen(name->valuestring) <= (size_t)SB_POOL_NAME_MAX * 2)
                snprintf(buf, size, "pool \"%s\"", name->valuestring);
        else
                snprintf(buf, size, "pool #%zu of \"pools\" (it has no valid \"name\")", i + 1);
        return buf;
}

/* The limits by their names in the file: the file is read by this table, and status
 * reports the limits in force by it. */
static const struct {
        const char *name;
        size_t offset;
} limit_fields[] = {
#define LIMIT(f) { #f, offsetof(ConfigLimits, f) }
        LIMIT(max_pools), LIMIT(max_bytes), LIMIT(max_clients), LIMIT(max_line), LIMIT(max_meta),
        LIMIT(max_meta_bytes), LIMIT(max_pools_per_uid), LIMIT(max_bytes_per_uid), LIMIT(max_clients_per_uid),
        LIMIT(max_meta_bytes_per_uid), LIMIT(max_buffered),
#undef LIMIT
};

static uint64_t *limit_field(ConfigLimits *l, size_t i) {
        return (uint64_t *)(void *)((char *)l + limit_fields[i].offset);
}

const char *config_limit_at(const ConfigLimits *l, size_t i, uint64_t *value) {
        if (i >= ELEMENTSOF(limit_fields))
                return NULL;
        *value = *(const uint64_t *)(const void *)((const char *)l + limit_fields[i].offset);
        return limit_fields[i].name;
}

static int parse_limits(const cJSON *lim, Config *c, SbReason *why) {
        ConfigLimits *l = &c->limits;
        const cJSON *v;

        if (!cJSON_IsObject(lim))
                return config_fail(c, why, "limits", -1, NULL, "\"limits\" must be an object");
        cJSON_ArrayForEach(v, lim) {
                size_t i;
                for (i = 0; i < ELEMENTSOF(limit_fields); i++)
                        if (strcmp(v->string, limit_fields[i].name) == 0)
                                break;
                if (i == ELEMENTSOF(limit_fields))
                        return config_fail(c, why, "limits", -1, NULL, "unknown limit \"%s\"", v->string);
                if (sb_json_size(v, limit_field(l, i)) < 0 || *limit_field(l, i) == 0)
                        return config_fail(c, why, "limits", -1, NULL,
                                          "limit \"%s\" must be a positive number (sizes may take a unit)", v->string);
        }
        if (refuse_repeated_key(c, why, lim, "limits", -1, " in \"limits\"") < 0)
                return -EINVAL;
        if (l->max_line < 256)
                return config_fail(c, why, "limits", -1, NULL, "limit \"max_line\" must be at least 256 bytes");
        if (l->max_line > (UINT64_C(1) << 30))
                return config_fail(c, why, "limits", -1, NULL, "limit \"max_line\" must be at most 1 GiB");
        return 0;
}

static int parse_pools(const cJSON *arr, Config *c, SbReason *why) {
        const cJSON *v;
        size_t i = 0;

        if (!cJSON_IsArray(arr))
                return config_fail(c, why, "pools", -1, NULL, "\"pools\" must be an array");
        c->n_pools = (size_t)cJSON_GetArraySize(arr);
        c->pools = calloc(c->n_pools ? c->n_pools : 1, sizeof(*c->pools));
        if (!c->pools)
                return -ENOMEM;
        cJSON_ArrayForEach(v, arr) {
                PoolSpec *cp = &c->pools[i];
                const char *bad_key;
                char label[3 * SB_POOL_NAME_MAX], in[sizeof(label) + 8];
                SbReason bad;

                if (pool_spec_from_json(v, SPEC_FROM_CONFIG, cp, &bad_key, &bad) != 0)
                        return config_fail(c, why, "pools", (long)i, bad_key, "%s: %s",
                                           pool_label(v, i, label, sizeof(label)), bad.text);
                snprintf(in, sizeof(in), " in %s", pool_label(v, i, label, sizeof(label)));
                if (refuse_repeated_key(c, why, v, "pools", (long)i, in) < 0)
                        return -EINVAL;
                cp->persistent = true;
                cp->configured = true;
                for (size_t j = 0; j < i; j++)
                        if (strcmp(c->pools[j].name, cp->name) == 0)
                                return config_fail(c, why, "pools", (long)i, "name", "pool \"%s\" is configured twice",
                                                  cp->name);
                i++;
        }
        return 0;
}

static int parse_socket_settings(const cJSON *root, Config *c, SbReason *why) {
        const cJSON *v;

        v = cJSON_GetObjectItemCaseSensitive(root, "socket");
        if (v) {
                if (!cJSON_IsString(v) || v->valuestring[0] != '/')
                        return config_fail(c, why, "socket", -1, NULL, "\"socket\" must be an absolute path");
                if (!(c->socket = strdup(v->valuestring)))
                        return -ENOMEM;
        }
        v = cJSON_GetObjectItemCaseSensitive(root, "socket_mode");
        if (v && sb_json_mode(v, &c->socket_mode) < 0)
                return config_fail(c, why, "socket_mode", -1, NULL, "\"socket_mode\" must be an octal mode like \"0660\"");
        v = cJSON_GetObjectItemCaseSensitive(root, "socket_group");
        if (v) {
                if (!cJSON_IsString(v) || !v->valuestring[0])
                        return config_fail(c, why, "socket_group", -1, NULL, "\"socket_group\" must be a group name");
                if (!(c->socket_group = strdup(v->valuestring)))
                        return -ENOMEM;
        }
        return 0;
}

int config_parse(const char *text, size_t len, Config **ret, SbReason *why) {
        static const char *const top_keys[] = { "socket", "socket_mode", "socket_group", "limits", "pools" };
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        const char *end = NULL;
        const cJSON *v;
        char *buf;
        int r, bad;

        c = config_new_default();
        if (!c || !(c->text = malloc(len + 1)))
                return -ENOMEM;
        buf = c->text;
        memcpy(buf, text, len);
        buf[len] = 0;
        c->text_len = len;

        if (memchr(buf, 0, len) || !sb_utf8_valid(buf, len)) {
                sb_reason_set(why, "line 1: the file is not UTF-8 text");
                return -EINVAL;
        }
        /* An empty file is taken for a mistake (a write that never happened, a truncation):
         * read at a reload, it would drop every configured pool. Saying "nothing" takes {},
         * or a file of comments alone, or /dev/null (config_load()). */
        if (sb_json_skip_ws(buf, buf + len) == buf + len) {
                sb_reason_set(why, "line 1: the file is empty: write {} to configure nothing");
                return -EINVAL;
        }
        bad = blank_comments(buf, len);
        if (bad >= 0) {
                sb_reason_set(why, "line %u: unterminated /* comment", sb_json_line_of(buf, (size_t)bad));
                return -EINVAL;
        }
        /* A file of nothing but comments configures nothing. */
        if (sb_json_skip_ws(buf, buf + len) == buf + len) {
                *ret = steal_ptr(c);
                return 0;
        }
        root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
        if (!root) {
                const char *at = cJSON_GetErrorPtr();
                size_t off = (at >= buf && at <= buf + len) ? (size_t)(at - buf) : len;
                char what[160];

                if (sb_json_explain(buf, len, &off, what, sizeof(what)))
                        sb_reason_set(why, "line %u: not valid JSON: %s", sb_json_line_of(buf, off), what);
                else
                        sb_reason_set(why, "line %u: not valid JSON", sb_json_line_of(buf, off));
                return -EINVAL;
        }
        if (sb_json_skip_ws(end, buf + len) != buf + len) {
                sb_reason_set(why, "line %u: text after the end of the JSON object",
                              sb_json_line_of(buf, (size_t)(sb_json_skip_ws(end, buf + len) - buf)));
                return -EINVAL;
        }
        if (!cJSON_IsObject(root)) {
                sb_reason_set(why, "line 1: the configuration must be a JSON object");
                return -EINVAL;
        }
        cJSON_ArrayForEach(v, root)
                if (!key_known(v->string, top_keys, ELEMENTSOF(top_keys)))
                        return config_fail(c, why, v->string, -1, NULL, "unknown setting \"%s\"", v->string);
        if (refuse_repeated_key(c, why, root, NULL, -1, "") < 0)
                return -EINVAL;

        r = parse_socket_settings(root, c, why);
        if (r < 0)
                return r;
        v = cJSON_GetObjectItemCaseSensitive(root, "limits");
        if (v && (r = parse_limits(v, c, why)) < 0)
                return r;
        v = cJSON_GetObjectItemCaseSensitive(root, "pools");
        if (v && (r = parse_pools(v, c, why)) < 0)
                return r;
        *ret = steal_ptr(c);
        return 0;
}

int config_load(const char *path, bool missing_ok, Config **ret, SbReason *why) {
        _cleanup_(freep) char *text = NULL;
        struct stat st;
        size_t len = 0, n;
        FILE *f;
        int r;

        f = fopen(path, "re");
        if (!f) {
                r = -errno;
                if (r == -ENOENT && missing_ok) {
                        *ret = config_new_default();
                        return *ret ? 0 : -ENOMEM;
                }
                sb_reason_set(why, "%s: %s", path, strerror(-r));
                return r;
        }
        text = malloc(CONFIG_FILE_MAX + 1);
        if (!text) {
                fclose(f);
                return -ENOMEM;
        }
        while ((n = fread(text + len, 1, CONFIG_FILE_MAX + 1 - len, f)) > 0)
                len += n;
        r = ferror(f) ? -EIO : 0;
        if (r == 0 && fstat(fileno(f), &st) < 0)
                r = -errno;
        fclose(f);
        if (r < 0 || len > CONFIG_FILE_MAX) {
                sb_reason_set(why, "%s: %s", path, r < 0 ? "read error" : "file larger than 4 MiB");
                return r < 0 ? r : -EFBIG;
        }
        /* What is not a file (/dev/null) and gives nothing says "no configuration" on purpose;
         * an empty file is refused (config_parse()). */
        if (len == 0 && !S_ISREG(st.st_mode))
                r = (*ret = config_new_default()) ? 0 : -ENOMEM;
        else
                r = config_parse(text, len, ret, why);
        if (r < 0) {
                sb_reason_prefix(why, "%s", path);
                return r;
        }
        if (!((*ret)->path = strdup(path))) {
                *ret = config_free(*ret);
                return -ENOMEM;
        }
        return 0;
}

/* --- the whole -------------------------------------------------------------------- */

int config_check(const Config *c, SbReason *why) {
        struct sockaddr_un addr;
        uint64_t total = 0;
        char x[32], y[32];

        if (c->socket && sb_sockaddr_un(&addr, c->socket) < 0)
                return config_fail(c, why, "socket", -1, NULL, "\"socket\" is longer than a socket path may be (%zu bytes)",
                                   sizeof(addr.sun_path) - 1);
        if (c->n_pools > c->limits.max_pools)
                return config_fail(c, why, "pools", (long)c->limits.max_pools, "name", "%zu pools exceed max_pools (%llu)",
                                   c->n_pools, (unsigned long long)c->limits.max_pools);
        for (size_t i = 0; i < c->n_pools; i++) {
                const PoolSpec *spec = &c->pools[i];
                PoolLayout layout;
                SbReason bad;

                if (pool_spec_layout(spec, &layout, &bad) != 0)
                        return config_fail(c, why, "pools", (long)i, "name", "pool \"%s\": %s", spec->name, bad.text);
                if (__builtin_add_overflow(total, layout.size, &total) || total > c->limits.max_bytes)
                        return config_fail(c, why, "pools", (long)i, "name",
                                           "pool \"%s\" (%s) takes the configured pools past the limit max_bytes (%s)",
                                           spec->name, sb_format_size(layout.size, x, sizeof(x)),
                                           sb_format_size(c->limits.max_bytes, y, sizeof(y)));
        }
        return 0;
}

const PoolSpec *config_find_pool(const Config *c, const char *name) {
        for (size_t i = 0; i < c->n_pools; i++)
                if (strcmp(c->pools[i].name, name) == 0)
                        return &c->pools[i];
        return NULL;
}
