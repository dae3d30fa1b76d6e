/*
 * wire.c: the library's side of the protocol text (docs/protocol.md): every request line
 * it sends, and what it reads out of replies, including the map from protocol codes to
 * errnos. Nothing here touches a socket or a segment.
 *
 * Requests are printed straight into the connection's output buffer: one vsnprintf per
 * piece, no intermediate copies, as the steady state sends one or two lines per batch.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sb-json-text.h"
#include "sb-error.h"
#include "sb-macro.h"

/* The one map from protocol codes to errnos. */
static const int code_errno[] = {
        [SB_CODE_OK] = 0,
        [SB_CODE_BAD_REQUEST] = -EINVAL,
        [SB_CODE_UNKNOWN_OP] = -EOPNOTSUPP,
        [SB_CODE_NO_SUCH_POOL] = -ENOENT,
        [SB_CODE_POOL_EXISTS] = -EEXIST,
        [SB_CODE_TIMEOUT] = -ETIMEDOUT,
        [SB_CODE_NOT_HOLDER] = -EPERM,
        [SB_CODE_PERMISSION_DENIED] = -EACCES,
        [SB_CODE_LIMIT] = -ENOSPC,
        [SB_CODE_WRONG_ROLE] = -EPERM,
        [SB_CODE_NEED_HELLO] = -EPROTO,
        [SB_CODE_INTERNAL] = -EIO,
};

_Static_assert((int)SB_CODE_INTERNAL == (int)SB_E_INTERNAL && (int)SB_CODE_LIMIT == (int)SB_E_LIMIT &&
               (int)SB_CODE_BAD_REQUEST == (int)SB_E_BAD_REQUEST && (int)SB_CODE_NEED_HELLO == (int)SB_E_NEED_HELLO,
               "the public codes mirror the protocol's");

/* hello's role is named by sb_role_name() (common/names.c), which takes a Role. */
_Static_assert((int)ROLE_PRODUCER == (int)SB_ROLE_PRODUCER && (int)ROLE_CONSUMER == (int)SB_ROLE_CONSUMER &&
               (int)ROLE_ADMIN == (int)SB_ROLE_ADMIN && (int)_ROLE_MAX == (int)SB_ROLE_ADMIN + 1,
               "the Role enum is the public sb_role, in the same order");

_public_ const char *sb_code_name(sb_code code) {
        return sb_error_code((int)code);
}

/* --- request lines ------------------------------------------------------------------- */

_printf_(2, 3)
static int out_printf(SbBytes *out, const char *fmt, ...) {
        va_list ap;
        char *at = sb_bytes_reserve(out, 256);
        int n;

        if (!at)
                return -ENOMEM;
        /* One pass when it fits in what is free already, as nearly everything does. */
        va_start(ap, fmt);
        n = vsnprintf(at, sb_bytes_room(out), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= sb_bytes_room(out)) {
                if (!(at = sb_bytes_reserve(out, (size_t)n + 1)))
                        return -ENOMEM;
                va_start(ap, fmt);
                vsnprintf(at, (size_t)n + 1, fmt, ap);
                va_end(ap);
        }
        sb_bytes_commit(out, (size_t)n);  /* the NUL stays past the end: out->data is a string */
        return 0;
}

/* A JSON string literal of @s (with quotes), malloc'd. */
static char *json_quote(const char *s) {
        cJSON *str = cJSON_CreateString(s);
        char *text = str ? cJSON_PrintUnformatted(str) : NULL;

        cJSON_Delete(str);
        return text;
}

/* @meta as one line of JSON, to free(): NULL stays NULL (meaning {}, with nothing to
 * allocate), else it must be a JSON object in strict JSON. Its text goes as it is, numbers
 * and escapes included (a re-print through cJSON would round integers past 2^53); only
 * line breaks, which in strict JSON can only be blanks between tokens, become spaces. */
int sb_wire_meta_text(const char *meta, char **ret) {
        const char *end, *start, *stop;
        cJSON *m;
        char *t;

        *ret = NULL;
        if (!meta)
                return 0;
        end = meta + strlen(meta);
        m = cJSON_ParseWithOpts(meta, NULL, true);
        if (!cJSON_IsObject(m)) {
                cJSON_Delete(m);
                return -EINVAL;
        }
        cJSON_Delete(m);
        start = sb_json_start(meta, (size_t)(end - meta));
        stop = sb_json_strict_end(start, end);
        if (!stop || sb_json_skip_ws(stop, end) != end)
                return -EINVAL;
        t = strndup(start, (size_t)(stop - start));
        if (!t)
                return -ENOMEM;
        for (char *q = t; *q; q++)
                if (*q == '\n' || *q == '\r')
                        *q = ' ';
        *ret = t;
        return 0;
}

/* Give the "meta" member of @obj (text at @p) its own text as the line carries it, in
 * valuestring, where sb_wire_batch() finds it. Only a non-empty meta: {} needs no text. */
static int keep_meta_text(cJSON *obj, const char *p, const char *end) {
        cJSON *it;
        size_t index = 0;

        for (it = obj ? obj->child : NULL; it; it = it->next, index++) {
                const char *v, *e;

                if (!it->string || strcmp(it->string, "meta") != 0)
                        continue;
                if (!cJSON_IsObject(it) || !it->child)
                        return 0;
                v = sb_json_member_value(p, end, index);
                e = v ? sb_json_strict_end(v, end) : NULL;
                if (!e)
                        return 0;       /* not as the daemon writes it: the parsed value will do */
                it->valuestring = strndup(v, (size_t)(e - v));
                return it->valuestring ? 0 : -ENOMEM;
        }
        return 0;
}

int sb_wire_keep_meta(cJSON *reply, const char *line, size_t len) {
        const char *end = line + len, *p = sb_json_start(line, len), *e;
        cJSON *it, *batch;
        size_t index = 0;
        int r;

        if (!cJSON_IsObject(reply))
                return 0;
        r = keep_meta_text(reply, p, end);
        for (it = reply->child; r == 0 && it; it = it->next, index++) {
                if (!it->string || strcmp(it->string, "batches") != 0 || !cJSON_IsArray(it))
                        continue;
                e = sb_json_array_first(sb_json_member_value(p, end, index), end);
                for (batch = it->child; r == 0 && batch && e; batch = batch->next, e = sb_json_array_next(e, end))
                        r = keep_meta_text(batch, e, end);
                break;
        }
        return r;
}

int sb_wire_hello(SbBytes *out, sb_role role, const char *name, bool fast) {
        _cleanup_(freep) char *qname = NULL;

        if (name && !(qname = json_quote(name)))
                return -ENOMEM;
        return out_printf(out, "{\"op\":\"hello\",\"role\":\"%s\"%s%s%s}\n", sb_role_name((Role)role),
                          qname ? ",\"name\":" : "", qname ? qname : "", fast ? ",\"fast\":true" : "");
}

int sb_wire_create(SbBytes *out, const char *pool, uint64_t slot_size, uint32_t slots, const sb_pool_options *o) {
        _cleanup_(freep) char *group = NULL;

        if (o->group && !(group = json_quote(o->group)))
                return -ENOMEM;
        return out_printf(out, "{\"op\":\"create\",\"pool\":\"%s\",\"slot_size\":%llu,\"slots\":%u,\"ordered\":%s,"
                          "\"persistent\":%s,\"huge_pages\":%s,\"on_consumer_death\":\"%s\",\"mode\":\"%04o\"%s%s}\n",
                          pool, (unsigned long long)slot_size, slots, o->ordered ? "true" : "false",
                          o->persistent ? "true" : "false", o->huge_pages ? "true" : "false",
                          o->free_on_consumer_death ? "free" : "requeue", o->mode ? o->mode : 0600,
                          group ? ",\"group\":" : "", group ? group : "");
}

/* A request that names nothing but its pool. */
static int pool_request(SbBytes *out, const char *op, const char *pool) {
        return out_printf(out, "{\"op\":\"%s\",\"pool\":\"%s\"}\n", op, pool);
}

int sb_wire_open(SbBytes *out, const char *pool) {
        return pool_request(out, "open", pool);
}

int sb_wire_end(SbBytes *out, const char *pool) {
        return pool_request(out, "end", pool);
}

int sb_wire_drop(SbBytes *out, const char *pool) {
        return pool_request(out, "drop", pool);
}

int sb_wire_status(SbBytes *out, const char *pool) {
        return pool ? pool_request(out, "status", pool) : out_printf(out, "{\"op\":\"status\"}\n");
}

static int take(SbBytes *out, const char *op, const char *pool, int timeout_ms, size_t max, int64_t seq) {
        char maxs[32] = "", tos[32] = "", seqs[32] = "";

        if (max)
                snprintf(maxs, sizeof(maxs), ",\"max\":%zu", max);
        if (timeout_ms >= 0)
                snprintf(tos, sizeof(tos), ",\"timeout_ms\":%d", timeout_ms);
        if (seq >= 0)
                snprintf(seqs, sizeof(seqs), ",\"seq\":%lld", (long long)seq);
        return out_printf(out, "{\"op\":\"%s\",\"pool\":\"%s\"%s%s%s}\n", op, pool, tos, maxs, seqs);
}

int sb_wire_acquire(SbBytes *out, const char *pool, int timeout_ms, size_t max) {
        return take(out, "acquire", pool, timeout_ms, max, -1);
}

int sb_wire_acquire_seq(SbBytes *out, const char *pool, int timeout_ms, int64_t seq) {
        return take(out, "acquire", pool, timeout_ms, 0, seq);
}

int sb_wire_consume(SbBytes *out, const char *pool, int timeout_ms, size_t max) {
        return take(out, "consume", pool, timeout_ms, max, -1);
}

/* "slot":N,"nbytes":N[,"seq":N],"meta":{...} */
static int publish_fields(SbBytes *out, const sb_publish_item *e) {
        _cleanup_(freep) char *m = NULL;
        char seqs[32] = "";
        int r = sb_wire_meta_text(e->meta, &m);

        if (r < 0)
                return r;
        if (e->seq >= 0)
                snprintf(seqs, sizeof(seqs), ",\"seq\":%lld", (long long)e->seq);
        return out_printf(out, "\"slot\":%u,\"nbytes\":%zu%s,\"meta\":%s", e->slot, e->nbytes, seqs, m ? m : "{}");
}

int sb_wire_publish(SbBytes *out, const char *pool, const sb_publish_item *v, size_t n) {
        int r = out_printf(out, "{\"op\":\"publish\",\"pool\":\"%s\",%s", pool, n == 1 ? "" : "\"batches\":[");

        for (size_t i = 0; i < n && r == 0; i++) {
                if (n > 1)
                        r = out_printf(out, "%s{", i ? "," : "");
                if (r == 0)
                        r = publish_fields(out, &v[i]);
                if (r == 0 && n > 1)
                        r = out_printf(out, "}");
        }
        return r < 0 ? r : out_printf(out, "%s}\n", n == 1 ? "" : "]");
}

int sb_wire_release(SbBytes *out, const char *pool, uint32_t slot, bool requeue) {
        return out_printf(out, "{\"op\":\"release\",\"pool\":\"%s\",\"slot\":%u%s}\n", pool, slot,
                          requeue ? ",\"requeue\":true" : "");
}

int sb_wire_release_many(SbBytes *out, const char *pool, const sb_batch *v, size_t n) {
        int r = out_printf(out, "{\"op\":\"release\",\"pool\":\"%s\",\"slots\":[", pool);

        for (size_t i = 0, k = 0; i < n && r == 0; i++)
                if (!v[i].eof)
                        r = out_printf(out, "%s%u", k++ ? "," : "", v[i].slot);
        return r < 0 ? r : out_printf(out, "]}\n");
}

/* --- replies ------------------------------------------------------------------------- */

int sb_wire_code_errno(sb_code code) {
        return (unsigned)code < ELEMENTSOF(code_errno) ? code_errno[code] : -EIO;
}

int sb_wire_refusal(const cJSON *reply, sb_code *code, char *message, size_t size) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(reply, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(reply, "message");
        SbError e = sb_error_from_code(cJSON_IsString(c) ? c->valuestring : NULL);

        *code = (sb_code)e;
        snprintf(message, size, "%s", cJSON_IsString(m) ? m->valuestring : "");
        return sb_wire_code_errno(*code);
}

uint64_t sb_wire_u64(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (uint64_t)v->valuedouble : 0;
}

int sb_wire_pool(const cJSON *reply, WirePool *ret) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(reply, "pool");
        const cJSON *shmid = cJSON_GetObjectItemCaseSensitive(reply, "shmid");

        *ret = (WirePool){
                .shmid = cJSON_IsNumber(shmid) ? (int)shmid->valuedouble : -1,
                .slot_size = sb_wire_u64(reply, "slot_size"),
                .stride = sb_wire_u64(reply, "stride"),
                .slots = (uint32_t)sb_wire_u64(reply, "slots"),
        };
        const cJSON *fast = cJSON_GetObjectItemCaseSensitive(reply, "fast");
        const cJSON *policy = cJSON_GetObjectItemCaseSensitive(reply, "on_consumer_death");
        const cJSON *fshmid = cJSON_GetObjectItemCaseSensitive(fast, "shmid");

        ret->ordered = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ordered"));
        ret->requeue = !cJSON_IsString(policy) || strcmp(policy->valuestring, "free") != 0;
        ret->fast_shmid = cJSON_IsObject(fast) && cJSON_IsNumber(fshmid) ? (int)fshmid->valuedouble : -1;
        ret->fast_size = sb_wire_u64(fast, "size");
        ret->fast_member = (uint32_t)sb_wire_u64(fast, "member");
        ret->fast_member_cap = (uint32_t)sb_wire_u64(fast, "member_cap");
        ret->fast_meta_inline = (uint32_t)sb_wire_u64(fast, "meta_inline");
        ret->fast_version = (uint32_t)sb_wire_u64(fast, "version");
        snprintf(ret->name, sizeof(ret->name), "%s", cJSON_IsString(name) ? name->valuestring : "");
        if (ret->shmid < 0 || ret->stride < ret->slot_size || sb_wire_u64(reply, "size") < ret->stride * ret->slots)
                return -EPROTO;
        return 0;
}

int sb_wire_slot(const cJSON *reply, uint32_t slots, uint32_t *ret) {
        uint64_t s = sb_wire_u64(reply, "slot");

        if (s >= slots)
                return -EPROTO;
        *ret = (uint32_t)s;
        return 0;
}

bool sb_wire_eof(const cJSON *reply) {
        return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "eof"));
}

int sb_wire_batch(const cJSON *reply, uint32_t slots, uint64_t slot_size, WireBatch *ret) {
        const cJSON *meta;
        uint64_t slot;

        *ret = (WireBatch){ 0 };
        if (sb_wire_eof(reply)) {
                ret->eof = true;
                return 0;
        }
        slot = sb_wire_u64(reply, "slot");
        ret->nbytes = sb_wire_u64(reply, "nbytes");
        if (slot >= slots || ret->nbytes > slot_size)
                return -EPROTO;
        ret->slot = (uint32_t)slot;
        ret->seq = sb_wire_u64(reply, "seq");
        ret->stream = sb_wire_u64(reply, "stream");
        meta = cJSON_GetObjectItemCaseSensitive(reply, "meta");
        /* An empty meta (the common case for raw bytes) needs no copy of its own. The text
         * the line carried (sb_wire_keep_meta()) is the producer's, byte for byte. */
        if (meta && meta->child &&
            !(ret->meta = meta->valuestring ? strdup(meta->valuestring) : cJSON_PrintUnformatted(meta)))
                return -ENOMEM;
        return 0;
}

const cJSON *sb_wire_list(const cJSON *reply, const char *key, size_t max) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(reply, key);

        if (!cJSON_IsArray(list) || (size_t)cJSON_GetArraySize(list) > max)
                return NULL;
        return list;
}
