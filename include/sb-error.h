/*
 * sb-error.h: the protocol's outcome codes, shared by the daemon and the client library.
 *
 * Functions return 0, a negative errno for a failure of the system, or a positive
 * SbError for an expected protocol outcome (the convention of dbus-broker's error.h).
 * sb_error_code() is the one table that maps them to the stable wire codes.
 */
#pragma once

#include "sb-macro.h"

typedef enum SbError {
        SB_OK = 0,
        SB_E_BAD_REQUEST,        /* malformed line, wrong type, missing or bad field */
        SB_E_UNKNOWN_OP,         /* "op" names no operation */
        SB_E_NO_SUCH_POOL,       /* no such pool, not open here, or dropped */
        SB_E_POOL_EXISTS,        /* create of a name that is taken */
        SB_E_TIMEOUT,            /* a wait ran out (or timeout_ms was 0) */
        SB_E_NOT_HOLDER,         /* publish/release of a slot this connection does not hold */
        SB_E_PERMISSION_DENIED,  /* the pool's owner, group and mode refuse this client */
        SB_E_LIMIT,              /* a configured or kernel limit would be exceeded */
        SB_E_WRONG_ROLE,         /* the operation needs another role (hello's "role") */
        SB_E_NEED_HELLO,         /* any operation but hello before hello */
        SB_E_INTERNAL,           /* the daemon failed (out of memory, ...) */
        _SB_E_MAX,
} SbError;

/* The wire code of @e ("bad_request", ...); "internal" for anything out of range. */
const char *sb_error_code(int e);

/* The SbError for a wire code; SB_E_INTERNAL for a code this build does not know. */
SbError sb_error_from_code(const char *code);

/*
 * A reason for a person, passed down the layers instead of a (buffer, length) pair: the
 * layer that finds a failure says why, in words, once; the caller decides where it goes
 * (an error reply, a log line). The text is always a terminated string.
 */
typedef struct SbReason {
        char text[384];
} SbReason;

/* Set @why (NULL-safe) from @fmt. */
void sb_reason_set(SbReason *why, const char *fmt, ...) _printf_(2, 3);

/* Put "@fmt: " in front of what @why (NULL-safe) already says. */
void sb_reason_prefix(SbReason *why, const char *fmt, ...) _printf_(2, 3);

/* Say why, and evaluate to @code: `return sb_fail(why, SB_E_LIMIT, "...", ...)`. A macro,
 * so that callers (and their static analysis) see that @code is what comes back. */
#define sb_fail(why, code, ...) (sb_reason_set((why), __VA_ARGS__), (code))
#define sb_fail_within(why, code, ...) (sb_reason_prefix((why), __VA_ARGS__), (code))
