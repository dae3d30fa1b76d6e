/*
 * config.c: reading the configuration file.
 *
 * cJSON has no comments and keeps no positions, and cJSON_Minify() strips comments but
 * shifts every offset. So comments are blanked out in place (newlines kept), cJSON
 * parses the result, and an error found later in a value is traced back to its line by
 * config_locate(), a small scanner over the same blanked text.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "sb-json.h"
#include "sb-size.h"

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
                .max_pools_per_uid = 16,
                .max_bytes_per_uid = UINT64_C(16) << 30,
                .max_clients_per_uid = 256,
        };
        return c;
}

Config *config_free(Config *c) {
        if (!c)
                return NULL;
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

static unsigned line_of(const char *text, size_t off) {
        unsigned line = 1;

        for (size_t i = 0; i < off; i++)
                line += text[i] == '\n';
        return line;
}

/* --- locating a value by path in (comment-free) JSON text ---------------------------- */

static const char *skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

static const char *skip_string(const char *p, const char *end) {
        for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                        p++;
        return p < end ? p + 1 : end;
}

static const char *skip_value(const char *p, const char *end, unsigned depth) {
        p = skip_ws(p, end);
        if (p >= end || depth > 64)
                return end;
        if (*p == '"')
                return skip_string(p, end);
        if (*p == '{' || *p == '[') {
                char close = *p == '{' ? '}' : ']';
                for (p++;;) {
                        p = skip_ws(p, end);
                        if (p >= end || *p == close)
                                return p < end ? p + 1 : end;
                        if (*p == ',' || *p == ':')
                                p++;
                        else
                                p = skip_value(p, end, depth + 1);
                }
        }
        while (p < end && !strchr(",]} \t\r\n", *p))
                p++;
        return p;
}

/* The member @key of the object at @p: a pointer to its key, or NULL. */
static const char *find_member(const char *p, const char *end, const char *key) {
        size_t klen = strlen(key);

        p = skip_ws(p, end);
        if (p >= end || *p != '{')
                return NULL;
        for (p++;;) {
                const char *k;
                p = skip_ws(p, end);
                if (p >= end || *p != '"')
                        return NULL;
                k = p;
                p = skip_string(p, end);
                if ((size_t)(p - k) == klen + 2 && memcmp(k + 1, key, klen) == 0)
                        return k;
                p = skip_ws(p, end);
                if (p < end && *p == ':')
                        p++;
                p = skip_ws(skip_value(p, end, 0), end);
                if (p >= end || *p != ',')
                        return NULL;
                p++;
        }
}

static const char *member_value(const char *k, const char *end) {
        const char *p = skip_ws(skip_string(k, end), end);
        return p < end && *p == ':' ? skip_ws(p + 1, end) : end;
}

static const char *find_element(const char *p, const char *end, size_t index) {
        p = skip_ws(p, end);
        if (p >= end || *p != '[')
                return NULL;
        p++;
        for (size_t i = 0;; i++) {
                p = skip_ws(p, end);
                if (p >= end || *p == ']')
                        return NULL;
                if (i == index)
                        return p;
                p = skip_ws(skip_value(p, end, 0), end);
                if (p >= end || *p != ',')
                        return NULL;
                p++;
        }
}

/* The line of top-level key @key, of element @index of it (if >= 0), and of that
 * element's member @sub (if set): the most precise place found. */
static unsigned config_locate(const char *text, size_t len, const char *key, long index, const char *sub) {
        const char *end = text + len, *k, *e, *s;

        k = find_member(text, end, key);
        if (!k)
                return line_of(text, len);
        if (index < 0)
                return line_of(text, (size_t)(k - text));
        e = find_element(member_value(k, end), end, (size_t)index);
        if (!e)
                return line_of(text, (size_t)(k - text));
        s = sub ? find_member(e, end, sub) : NULL;
        return line_of(text, (size_t)((s ? s : e) - text));
}

/* --- values --------------------------------------------------------------------- */

static const char *const pool_keys[] = {
        "name", "pool", "slot_size", "slots", "ordered", "persistent", "mode", "group",
        "huge_pages", "on_consumer_death",
};

static bool key_known(const char *k, const char *const *keys, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(k, keys[i]) == 0)
                        return true;
        return false;
}

static int get_bool(const cJSON *obj, const char *key, bool *ret, char *why, size_t len) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

        if (!v)
                return 0;
        if (!cJSON_IsBool(v)) {
                snprintf(why, len, "\"%s\" must be true or false", key);
                return -EINVAL;
        }
        *ret = cJSON_IsTrue(v);
        return 0;
}

int pool_spec_from_json(const cJSON *obj, const char *name_key, bool strict, PoolSpec *spec,
                        const char **group, char *why, size_t len, const char **bad_key) {
        const cJSON *v;
        uint64_t n;
        int r;

        *spec = (PoolSpec){ .mode = 0600, .on_consumer_death = POLICY_REQUEUE };
        *group = NULL;
        if (!cJSON_IsObject(obj)) {
                *bad_key = NULL;
                snprintf(why, len, "a pool must be a JSON object");
                return -EINVAL;
        }
        if (strict)
                cJSON_ArrayForEach(v, obj) {
                        if (!key_known(v->string, pool_keys, ELEMENTSOF(pool_keys))) {
                                *bad_key = v->string;
                                snprintf(why, len, "unknown pool setting \"%s\"", v->string);
                                return -EINVAL;
                        }
                }

        *bad_key = name_key;
        v = cJSON_GetObjectItemCaseSensitive(obj, name_key);
        if (!cJSON_IsString(v) || !pool_name_valid(v->valuestring)) {
                snprintf(why, len, "\"%s\" must be a pool name: 1 to %d letters, digits, '.', '_' or '-'",
                         name_key, POOL_NAME_MAX);
                return -EINVAL;
        }
        snprintf(spec->name, sizeof(spec->name), "%s", v->valuestring);

        *bad_key = "slot_size";
        r = sb_json_size(cJSON_GetObjectItemCaseSensitive(obj, "slot_size"), &spec->slot_size);
        if (r < 0 || spec->slot_size == 0) {
                snprintf(why, len, "\"slot_size\" must be a size of at least 1 byte (a number, or a string like \"16MiB\")");
                return -EINVAL;
        }
        *bad_key = "slots";
        r = sb_json_uint(cJSON_GetObjectItemCaseSensitive(obj, "slots"), POOL_SLOTS_MAX, &n);
        if (r < 0 || n == 0) {
                snprintf(why, len, "\"slots\" must be an integer from 1 to %u", POOL_SLOTS_MAX);
                return -EINVAL;
        }
        spec->slots = (uint32_t)n;

        *bad_key = "mode";
        v = cJSON_GetObjectItemCaseSensitive(obj, "mode");
        if (v && sb_json_mode(v, &spec->mode) < 0) {
                snprintf(why, len, "\"mode\" must be an octal mode like \"0660\"");
                return -EINVAL;
        }
        *bad_key = "group";
        v = cJSON_GetObjectItemCaseSensitive(obj, "group");
        if (v && !(cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) < 64)) {
                snprintf(why, len, "\"group\" must be a group name");
                return -EINVAL;
        }
        *group = v ? v->valuestring : NULL;

        *bad_key = "on_consumer_death";
        v = cJSON_GetObjectItemCaseSensitive(obj, "on_consumer_death");
        if (v) {
                if (cJSON_IsString(v) && strcmp(v->valuestring, "requeue") == 0)
                        spec->on_consumer_death = POLICY_REQUEUE;
                else if (cJSON_IsString(v) && strcmp(v->valuestring, "free") == 0)
                        spec->on_consumer_death = POLICY_FREE;
                else {
                        snprintf(why, len, "\"on_consumer_death\" must be \"requeue\" or \"free\"");
                        return -EINVAL;
                }
        }
        *bad_key = "ordered";
        if (get_bool(obj, "ordered", &spec->ordered, why, len) < 0)
                return -EINVAL;
        *bad_key = "persistent";
        if (get_bool(obj, "persistent", &spec->persistent, why, len) < 0)
                return -EINVAL;
        *bad_key = "huge_pages";
        if (get_bool(obj, "huge_pages", &spec->huge_pages, why, len) < 0)
                return -EINVAL;
        *bad_key = NULL;
        return 0;
}

/* --- the file ------------------------------------------------------------------- */

typedef struct ParseError {
        char *buf;
        size_t len;
        const char *text;
        size_t text_len;
} ParseError;

_printf_(5, 6)
static int parse_fail(ParseError *pe, const char *key, long index, const char *sub, const char *fmt, ...) {
        va_list ap;
        int n;

        n = snprintf(pe->buf, pe->len, "line %u: ", config_locate(pe->text, pe->text_len, key, index, sub));
        if (n < 0 || (size_t)n >= pe->len)
                return -EINVAL;
        va_start(ap, fmt);
        vsnprintf(pe->buf + n, pe->len - (size_t)n, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int parse_limits(const cJSON *lim, ConfigLimits *l, ParseError *pe) {
        static const char *const keys[] = { "max_pools", "max_bytes", "max_clients", "max_line",
                                            "max_pools_per_uid", "max_bytes_per_uid", "max_clients_per_uid" };
        uint64_t *vals[] = { &l->max_pools, &l->max_bytes, &l->max_clients, &l->max_line,
                             &l->max_pools_per_uid, &l->max_bytes_per_uid, &l->max_clients_per_uid };
        const cJSON *v;

        if (!cJSON_IsObject(lim))
                return parse_fail(pe, "limits", -1, NULL, "\"limits\" must be an object");
        cJSON_ArrayForEach(v, lim) {
                size_t i;
                for (i = 0; i < ELEMENTSOF(keys); i++)
                        if (strcmp(v->string, keys[i]) == 0)
                                break;
                if (i == ELEMENTSOF(keys))
                        return parse_fail(pe, "limits", -1, NULL, "unknown limit \"%s\"", v->string);
                if (sb_json_size(v, vals[i]) < 0 || *vals[i] == 0)
                        return parse_fail(pe, "limits", -1, NULL,
                                          "limit \"%s\" must be a positive number (sizes may take a unit)", v->string);
        }
        if (l->max_line < 256)
                return parse_fail(pe, "limits", -1, NULL, "limit \"max_line\" must be at least 256 bytes");
        if (l->max_line > (UINT64_C(1) << 30))
                return parse_fail(pe, "limits", -1, NULL, "limit \"max_line\" must be at most 1 GiB");
        return 0;
}

static int parse_pools(const cJSON *arr, Config *c, ParseError *pe) {
        const cJSON *v;
        size_t i = 0;

        if (!cJSON_IsArray(arr))
                return parse_fail(pe, "pools", -1, NULL, "\"pools\" must be an array");
        c->n_pools = (size_t)cJSON_GetArraySize(arr);
        c->pools = calloc(c->n_pools ? c->n_pools : 1, sizeof(*c->pools));
        if (!c->pools)
                return -ENOMEM;
        cJSON_ArrayForEach(v, arr) {
                ConfigPool *cp = &c->pools[i];
                const char *group, *bad_key;
                char why[256];

                if (pool_spec_from_json(v, "name", true, &cp->spec, &group, why, sizeof(why), &bad_key) < 0)
                        return parse_fail(pe, "pools", (long)i, bad_key, "pool %zu: %s", i, why);
                cp->spec.persistent = true;
                cp->spec.configured = true;
                snprintf(cp->group, sizeof(cp->group), "%s", group ? group : "");
                for (size_t j = 0; j < i; j++)
                        if (strcmp(c->pools[j].spec.name, cp->spec.name) == 0)
                                return parse_fail(pe, "pools", (long)i, "name", "pool \"%s\" is configured twice",
                                                  cp->spec.name);
                i++;
        }
        return 0;
}

static int parse_socket_settings(const cJSON *root, Config *c, ParseError *pe) {
        const cJSON *v;

        v = cJSON_GetObjectItemCaseSensitive(root, "socket");
        if (v) {
                if (!cJSON_IsString(v) || v->valuestring[0] != '/')
                        return parse_fail(pe, "socket", -1, NULL, "\"socket\" must be an absolute path");
                if (!(c->socket = strdup(v->valuestring)))
                        return -ENOMEM;
        }
        v = cJSON_GetObjectItemCaseSensitive(root, "socket_mode");
        if (v && sb_json_mode(v, &c->socket_mode) < 0)
                return parse_fail(pe, "socket_mode", -1, NULL, "\"socket_mode\" must be an octal mode like \"0660\"");
        v = cJSON_GetObjectItemCaseSensitive(root, "socket_group");
        if (v) {
                if (!cJSON_IsString(v) || !v->valuestring[0])
                        return parse_fail(pe, "socket_group", -1, NULL, "\"socket_group\" must be a group name");
                if (!(c->socket_group = strdup(v->valuestring)))
                        return -ENOMEM;
        }
        return 0;
}

int config_parse(const char *text, size_t len, Config **ret, char *err, size_t errlen) {
        static const char *const top_keys[] = { "socket", "socket_mode", "socket_group", "limits", "pools" };
        _cleanup_(freep) char *buf = NULL;
        _cleanup_(cJSON_Deletep) cJSON *root = NULL;
        _cleanup_(config_freep) Config *c = NULL;
        ParseError pe = { .buf = err, .len = errlen };
        const char *end = NULL;
        const cJSON *v;
        int r, bad;

        buf = malloc(len + 1);
        c = config_new_default();
        if (!buf || !c)
                return -ENOMEM;
        memcpy(buf, text, len);
        buf[len] = 0;
        pe.text = buf;
        pe.text_len = len;

        if (memchr(buf, 0, len) || !sb_utf8_valid(buf, len)) {
                snprintf(err, errlen, "line 1: the file is not UTF-8 text");
                return -EINVAL;
        }
        bad = blank_comments(buf, len);
        if (bad >= 0) {
                snprintf(err, errlen, "line %u: unterminated /* comment", line_of(buf, (size_t)bad));
                return -EINVAL;
        }
        /* A file of nothing but comments configures nothing. */
        if (skip_ws(buf, buf + len) == buf + len) {
                *ret = steal_ptr(c);
                return 0;
        }
        root = cJSON_ParseWithLengthOpts(buf, len, &end, false);
        if (!root) {
                const char *at = cJSON_GetErrorPtr();
                size_t off = (at >= buf && at <= buf + len) ? (size_t)(at - buf) : len;
                snprintf(err, errlen, "line %u: not valid JSON", line_of(buf, off));
                return -EINVAL;
        }
        if (skip_ws(end, buf + len) != buf + len) {
                snprintf(err, errlen, "line %u: text after the end of the JSON object",
                         line_of(buf, (size_t)(end - buf)));
                return -EINVAL;
        }
        if (!cJSON_IsObject(root)) {
                snprintf(err, errlen, "line 1: the configuration must be a JSON object");
                return -EINVAL;
        }
        cJSON_ArrayForEach(v, root)
                if (!key_known(v->string, top_keys, ELEMENTSOF(top_keys)))
                        return parse_fail(&pe, v->string, -1, NULL, "unknown setting \"%s\"", v->string);

        r = parse_socket_settings(root, c, &pe);
        if (r < 0)
                return r;
        v = cJSON_GetObjectItemCaseSensitive(root, "limits");
        if (v && (r = parse_limits(v, &c->limits, &pe)) < 0)
                return r;
        v = cJSON_GetObjectItemCaseSensitive(root, "pools");
        if (v && (r = parse_pools(v, c, &pe)) < 0)
                return r;
        if (c->n_pools > c->limits.max_pools)
                return parse_fail(&pe, "pools", -1, NULL, "%zu pools exceed max_pools (%llu)", c->n_pools,
                                  (unsigned long long)c->limits.max_pools);
        *ret = steal_ptr(c);
        return 0;
}

int config_load(const char *path, bool missing_ok, Config **ret, char *err, size_t errlen) {
        _cleanup_(freep) char *text = NULL;
        char why[512];
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
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
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
        fclose(f);
        if (r < 0 || len > CONFIG_FILE_MAX) {
                snprintf(err, errlen, "%s: %s", path, r < 0 ? "read error" : "file larger than 4 MiB");
                return r < 0 ? r : -EFBIG;
        }
        r = config_parse(text, len, ret, why, sizeof(why));
        if (r < 0)
                snprintf(err, errlen, "%s: %s", path, why);
        return r;
}
