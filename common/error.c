/*
 * error.c: the one table between SbError values and the protocol's wire codes, and the
 * reasons that go with a failure.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sb-error.h"
#include "sb-macro.h"

static const char *const error_codes[_SB_E_MAX] = {
        [SB_OK] = "ok",
        [SB_E_BAD_REQUEST] = "bad_request",
        [SB_E_UNKNOWN_OP] = "unknown_op",
        [SB_E_NO_SUCH_POOL] = "no_such_pool",
        [SB_E_POOL_EXISTS] = "pool_exists",
        [SB_E_TIMEOUT] = "timeout",
        [SB_E_NOT_HOLDER] = "not_holder",
        [SB_E_PERMISSION_DENIED] = "permission_denied",
        [SB_E_LIMIT] = "limit",
        [SB_E_WRONG_ROLE] = "wrong_role",
        [SB_E_NEED_HELLO] = "need_hello",
        [SB_E_INTERNAL] = "internal",
};

const char *sb_error_code(int e) {
        if (e < 0 || e >= _SB_E_MAX)
                return error_codes[SB_E_INTERNAL];
        return error_codes[e];
}

SbError sb_error_from_code(const char *code) {
        if (!code)
                return SB_E_INTERNAL;
        for (size_t i = 0; i < ELEMENTSOF(error_codes); i++)
                if (strcmp(error_codes[i], code) == 0)
                        return (SbError)i;
        return SB_E_INTERNAL;
}

void sb_reason_set(SbReason *why, const char *fmt, ...) {
        va_list ap;

        if (!why)
                return;
        va_start(ap, fmt);
        vsnprintf(why->text, sizeof(why->text), fmt, ap);
        va_end(ap);
}

void sb_reason_prefix(SbReason *why, const char *fmt, ...) {
        char text[sizeof(why->text)];
        size_t n;
        va_list ap;
        int k;

        if (!why)
                return;
        va_start(ap, fmt);
        k = vsnprintf(text, sizeof(text), fmt, ap);
        va_end(ap);
        /* The place first, whole if it fits (a file's path); the reason after it, cut at
         * the end if it must be. */
        n = k < 0 ? 0 : (size_t)k < sizeof(text) ? (size_t)k : sizeof(text) - 1;
        for (const char *p = ": "; *p && n + 1 < sizeof(text); p++)
                text[n++] = *p;
        for (const char *p = why->text; *p && n + 1 < sizeof(text); p++)
                text[n++] = *p;
        text[n] = 0;
        memcpy(why->text, text, n + 1);
}
