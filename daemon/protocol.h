/*
 * protocol.h: one request line in, one reply line out.
 *
 * A Request is a parsed line plus typed, validated access to its fields; a field that
 * is missing or of the wrong type fails the request with bad_request and a message that
 * names the field. Replies are built as cJSON objects, their fields encoded here (the
 * pool, slot and batch fields every operation shares), and printed as one line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "pool.h"
#include "sb-bytes.h"
#include "sb-error.h"
#include "sb-macro.h"

#define PROTOCOL_VERSION 1

typedef struct Request {
        cJSON *root;
        cJSON *id;               /* borrowed from root, NULL if absent */
        const char *op;
        const char *text;        /* the line, valid until the handler returns: the text of */
        const char *text_end;    /* a value passed on as it came (request_text()) */
        SbReason why;            /* the message of a failed request */
} Request;

/*
 * Parse one line (without its newline). Returns 0, or SB_E_BAD_REQUEST with req->error;
 * req->id is set whenever the line was a JSON object with an "id". A string with a NUL
 * in it (\u0000) is refused, except inside the values of "meta" members: cJSON's strings
 * end at the first NUL, so a name would silently lose its tail.
 */
int request_parse(Request *req, const char *line, size_t len);
void request_done(Request *req);

/* Fail the request: its message from @fmt; returns @code (a positive SbError). */
#define request_fail(req, code, ...) sb_fail(&(req)->why, (code), __VA_ARGS__)

/* An integer field in [0, max]. With @present NULL the field is required; otherwise
 * *present tells whether it was there. 0 or SB_E_BAD_REQUEST. */
int request_uint(Request *req, const char *key, uint64_t max, uint64_t *ret, bool *present);

/* The same for a field of @obj, an object inside the request. */
int request_uint_in(Request *req, const cJSON *obj, const char *key, uint64_t max, uint64_t *ret, bool *present);

/* An array field of 1 to @max entries; *ret NULL when absent. 0 or SB_E_BAD_REQUEST. */
int request_array(Request *req, const char *key, size_t max, const cJSON **ret);

/* A boolean field; absent leaves *ret as it is. 0 or SB_E_BAD_REQUEST. */
int request_bool(Request *req, const char *key, bool *ret);

/* A string field; *ret NULL when absent and not @required. 0 or SB_E_BAD_REQUEST. */
int request_string(Request *req, const char *key, bool required, const char **ret);

/*
 * The text of @item, a member of the object @obj (the request itself, or an object
 * inside it whose text starts at @obj_text, found with locate.h), exactly as the line
 * has it: where it starts. O(the text of @obj up to @item).
 */
const char *request_value_text(Request *req, const cJSON *obj, const char *obj_text, const cJSON *item);

/* The same, whole: 0 with [*ret, *ret + *len); SB_E_BAD_REQUEST when it is not strict
 * JSON (sb_json_strict_end()), which a value passed on to others must be. */
int request_text(Request *req, const cJSON *obj, const char *obj_text, const cJSON *item, const char **ret,
                 size_t *len);

/* "timeout_ms": *forever when absent, else *timeout_usec. 0 or SB_E_BAD_REQUEST. */
int request_timeout(Request *req, uint64_t *timeout_usec, bool *forever);

/* {"id": <id>, "ok": true} to add fields to; NULL on ENOMEM. @id is copied. */
cJSON *reply_new(const cJSON *id);

/* {"id": <id>, "ok": false, "error": <code>, "message": <message>}; NULL on ENOMEM. */
cJSON *reply_new_error(const cJSON *id, int code, const char *message);

/* Append @reply to @out as one line with its newline. 0 or -ENOMEM. */
#define REPLY_INLINE_MAX 4096
int reply_print(const cJSON *reply, SbBytes *out);

/* Add integer @v as @key: printed as exact digits (cJSON would print a double). 0 or
 * -ENOMEM. */
int reply_add_uint(cJSON *o, const char *key, uint64_t v);

/* The fields of pool @p (as create and open answer), with its "shmid" if @with_shmid. */
int reply_add_pool(cJSON *o, const Pool *p, bool with_shmid);

/* The "fast" object of an open or create reply: what member @m's client needs to attach
 * the pool's control block and run its own operations on it (docs/protocol.md). */
int reply_add_fast(cJSON *o, const Member *m);

/*
 * The fields of what a take (acquire or consume) gave: @n held slots (n == 0: end of
 * stream). The one-slot form (@many false) puts the slot's fields in the reply itself;
 * the many-slot form puts an array "slots" (acquire) or "batches" (consume). 0 or -ENOMEM.
 */
int reply_add_taken(cJSON *reply, PoolWaitKind kind, const SlotView *v, size_t n, bool many);
