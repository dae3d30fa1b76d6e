/*
 * protocol.c: parsing request lines, and building and printing reply lines.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "sb-json-text.h"
#include "protocol.h"
#include "sb-error.h"
#include "sb-json.h"

int request_parse(Request *req, const char *line, size_t len) {
        const char *end = NULL;
        const cJSON *op;

        /* Field by field: zeroing the whole message buffer per request is measurable on
         * the per-batch path, and an empty string is all it needs. */
        req->root = req->id = NULL;
        req->op = NULL;
        req->text = line;
        req->text_end = line + len;
        req->why.text[0] = 0;
        /* cJSON copies string bytes as they are: refuse what is not UTF-8 before it does,
         * so that nothing invalid is ever echoed back (in "id") or logged. */
        if (!sb_utf8_valid(line, len))
                return request_fail(req, SB_E_BAD_REQUEST, "the request is not valid UTF-8 text");
        req->root = cJSON_ParseWithLengthOpts(line, len, &end, false);
        if (!req->root)
                return request_fail(req, SB_E_BAD_REQUEST, "the request is not valid JSON (or nested too deeply)");
        for (; end < line + len; end++)
                if (*end != ' ' && *end != '\t' && *end != '\r')
                        return request_fail(req, SB_E_BAD_REQUEST, "text after the end of the JSON request");
        if (!cJSON_IsObject(req->root))
                return request_fail(req, SB_E_BAD_REQUEST, "the request must be a JSON object");
        req->id = cJSON_GetObjectItemCaseSensitive(req->root, "id");
        /* Only a \u escape can make a NUL: most lines have no backslash at all, and
         * need no scan (memchr() is the fastest look). */
        if (memchr(line, '\\', len) && memmem(line, len, "\\u", 2) && sb_json_has_nul(line, line + len, "meta"))
                return request_fail(req, SB_E_BAD_REQUEST, "a string of the request holds NUL (\\u0000), which only "
                                    "\"meta\" may");
        op = cJSON_GetObjectItemCaseSensitive(req->root, "op");
        if (!op)
                return request_fail(req, SB_E_BAD_REQUEST, "the request has no \"op\"");
        if (!cJSON_IsString(op))
                return request_fail(req, SB_E_BAD_REQUEST, "\"op\" must be a string");
        req->op = op->valuestring;
        return 0;
}

void request_done(Request *req) {
        arena_json_delete(req->root);
        req->root = req->id = NULL;
        req->op = NULL;
}

int request_uint(Request *req, const char *key, uint64_t max, uint64_t *ret, bool *present) {
        return request_uint_in(req, req->root, key, max, ret, present);
}

int request_uint_in(Request *req, const cJSON *obj, const char *key, uint64_t max, uint64_t *ret, bool *present) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
        int r;

        if (present)
                *present = v != NULL;
        if (!v) {
                if (present)
                        return 0;
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" is missing", key);
        }
        r = sb_json_uint(v, max, ret);
        if (r == -ERANGE)
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" must be from 0 to %llu", key,
                                    (unsigned long long)(max < SB_JSON_INT_MAX ? max : SB_JSON_INT_MAX));
        if (r < 0)
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" must be a non-negative integer", key);
        return 0;
}

int request_bool(Request *req, const char *key, bool *ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->root, key);

        if (!v)
                return 0;
        if (!cJSON_IsBool(v))
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" must be true or false", key);
        *ret = cJSON_IsTrue(v);
        return 0;
}

int request_string(Request *req, const char *key, bool required, const char **ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->root, key);

        *ret = NULL;
        if (!v) {
                if (!required)
                        return 0;
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" is missing", key);
        }
        if (!cJSON_IsString(v))
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" must be a string", key);
        *ret = v->valuestring;
        return 0;
}

const char *request_value_text(Request *req, const cJSON *obj, const char *obj_text, const cJSON *item) {
        size_t index = 0;

        if (obj == req->root)
                obj_text = sb_json_start(req->text, (size_t)(req->text_end - req->text));
        for (const cJSON *it = obj->child; it && it != item; it = it->next)
                index++;
        /* cJSON keeps the members in the order of the text, duplicates too: the item's
         * place among them finds its text, however its key was written. */
        return obj_text ? sb_json_member_value(obj_text, req->text_end, index) : NULL;
}

int request_text(Request *req, const cJSON *obj, const char *obj_text, const cJSON *item, const char **ret,
                 size_t *len) {
        const char *v = request_value_text(req, obj, obj_text, item);
        const char *e = v ? sb_json_strict_end(v, req->text_end) : NULL;

        if (!e)
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" must be strict JSON (RFC 8259): it is passed on as "
                                    "it is written", item->string);
        *ret = v;
        *len = (size_t)(e - v);
        return 0;
}

int request_array(Request *req, const char *key, size_t max, const cJSON **ret) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->root, key);
        int n;

        *ret = NULL;
        if (!v)
                return 0;
        n = cJSON_GetArraySize(v);
        if (!cJSON_IsArray(v) || n < 1 || (size_t)n > max)
                return request_fail(req, SB_E_BAD_REQUEST, "\"%s\" must be an array of 1 to %zu entries", key, max);
        *ret = v;
        return 0;
}

int request_timeout(Request *req, uint64_t *timeout_usec, bool *forever) {
        uint64_t ms;
        bool present;
        int r;

        r = request_uint(req, "timeout_ms", SB_JSON_INT_MAX, &ms, &present);
        if (r != 0)
                return r;
        *forever = !present;
        /* Past ten years a timeout is as good as none, and the sum cannot overflow. */
        if (present && ms > UINT64_C(315360000000))
                *forever = true;
        *timeout_usec = present ? ms * 1000 : 0;
        return 0;
}

static cJSON *reply_base(const cJSON *id, bool ok) {
        cJSON *r = cJSON_CreateObject();

        if (!r)
                return NULL;
        if (id) {
                cJSON *dup = cJSON_Duplicate(id, true);
                if (!dup || !cJSON_AddItemToObject(r, "id", dup)) {
                        cJSON_Delete(dup);
                        cJSON_Delete(r);
                        return NULL;
                }
        }
        if (!cJSON_AddBoolToObject(r, "ok", ok)) {
                cJSON_Delete(r);
                return NULL;
        }
        return r;
}

cJSON *reply_new(const cJSON *id) {
        return reply_base(id, true);
}

cJSON *reply_new_error(const cJSON *id, int code, const char *message) {
        cJSON *r = reply_base(id, false);

        if (!r)
                return NULL;
        if (!cJSON_AddStringToObject(r, "error", sb_error_code(code)) ||
            !cJSON_AddStringToObject(r, "message", message)) {
                cJSON_Delete(r);
                return NULL;
        }
        return r;
}

int reply_print(const cJSON *reply, SbBytes *out) {
        /* Most replies are a few hundred bytes: print them straight into the output
         * queue. cJSON wants a few bytes of slack past the text it prints. */
        char *p = sb_bytes_reserve(out, REPLY_INLINE_MAX), *s;
        size_t n;

        if (!p)
                return -ENOMEM;
        if (cJSON_PrintPreallocated((cJSON *)reply, p, (int)sb_bytes_room(out) - 1, false)) {
                n = strlen(p);
                p[n] = '\n';
                sb_bytes_commit(out, n + 1);
                return 0;
        }
        s = cJSON_PrintUnformatted(reply);
        if (!s)
                return -ENOMEM;
        n = strlen(s);
        s[n] = '\n';  /* over the NUL: the length is known */
        if (sb_bytes_append(out, s, n + 1) < 0) {
                cJSON_free(s);
                return -ENOMEM;
        }
        cJSON_free(s);
        return 0;
}

/* --- reply fields ------------------------------------------------------------------ */

int reply_add_uint(cJSON *o, const char *key, uint64_t v) {
        char buf[24], *p = buf + sizeof(buf) - 1;

        /* As raw digits, written by hand: cJSON prints every number as a double through
         * sprintf("%1.15g") and reads it back to check it, and even snprintf() costs more
         * than this loop on the per-batch path. */
        *p = 0;
        do
                *--p = (char)('0' + v % 10);
        while (v /= 10);
        return cJSON_AddRawToObject(o, key, p) ? 0 : -ENOMEM;
}

int reply_add_pool(cJSON *o, const Pool *p, bool with_shmid) {
        char mode[8];

        snprintf(mode, sizeof(mode), "%04o", p->spec.mode);
        if (!cJSON_AddStringToObject(o, "pool", p->spec.name) ||
            (with_shmid && reply_add_uint(o, "shmid", (uint64_t)p->seg.shmid) < 0) ||
            reply_add_uint(o, "slot_size", p->spec.slot_size) < 0 || reply_add_uint(o, "stride", p->stride) < 0 ||
            reply_add_uint(o, "slots", p->spec.slots) < 0 || reply_add_uint(o, "size", p->seg.size) < 0 ||
            !cJSON_AddBoolToObject(o, "ordered", p->spec.ordered) ||
            !cJSON_AddBoolToObject(o, "persistent", p->spec.persistent) ||
            !cJSON_AddBoolToObject(o, "configured", p->spec.configured) ||
            !cJSON_AddBoolToObject(o, "huge_pages", p->spec.huge_pages) ||
            !cJSON_AddStringToObject(o, "on_consumer_death", pool_policy_name(p->spec.on_consumer_death)) ||
            reply_add_uint(o, "uid", p->spec.uid) < 0 || reply_add_uint(o, "gid", p->spec.gid) < 0 ||
            !cJSON_AddStringToObject(o, "mode", mode))
                return -ENOMEM;
        return 0;
}

int reply_add_fast(cJSON *o, const Member *m) {
        const Pool *p = m->pool;
        cJSON *f = cJSON_AddObjectToObject(o, "fast");

        if (!f || reply_add_uint(f, "shmid", (uint64_t)p->block_seg.shmid) < 0 ||
            reply_add_uint(f, "size", p->fp.g.size) < 0 || reply_add_uint(f, "member", m->id) < 0 ||
            reply_add_uint(f, "member_cap", p->fp.g.member_cap) < 0 ||
            reply_add_uint(f, "meta_inline", p->fp.g.meta_inline) < 0 || reply_add_uint(f, "version", FP_VERSION) < 0)
                return -ENOMEM;
        return 0;
}

/* The fields of one slot just taken, and so held: by a producer (its place) or by a
 * consumer (the batch in it). */
static int add_one_taken(cJSON *o, PoolWaitKind kind, const SlotView *s) {
        if (reply_add_uint(o, "slot", s->index) < 0 || reply_add_uint(o, "offset", s->offset) < 0)
                return -ENOMEM;
        if (kind == WAIT_ACQUIRE)
                return 0;
        if (reply_add_uint(o, "nbytes", s->nbytes) < 0 || reply_add_uint(o, "seq", s->seq) < 0 ||
            reply_add_uint(o, "stream", s->stream) < 0)
                return -ENOMEM;
        /* The slot keeps the producer's meta as text: it goes out as it came in, with no
         * tree to build or print per consume. */
        return cJSON_AddRawToObject(o, "meta", s->meta_len ? s->meta : "{}") ? 0 : -ENOMEM;
}

int reply_add_taken(cJSON *reply, PoolWaitKind kind, const SlotView *v, size_t n, bool many) {
        cJSON *arr;

        if (!many)
                return n == 0 ? (cJSON_AddTrueToObject(reply, "eof") ? 0 : -ENOMEM) : add_one_taken(reply, kind, &v[0]);
        arr = cJSON_AddArrayToObject(reply, kind == WAIT_ACQUIRE ? "slots" : "batches");
        if (!arr)
                return -ENOMEM;
        if (n == 0)
                return cJSON_AddTrueToObject(reply, "eof") ? 0 : -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                cJSON *o = cJSON_CreateObject();
                if (!o || !cJSON_AddItemToArray(arr, o)) {
                        cJSON_Delete(o);
                        return -ENOMEM;
                }
                if (add_one_taken(o, kind, &v[i]) < 0)
                        return -ENOMEM;
        }
        return 0;
}
