/*
 * ops.h: the protocol's operations, from a request line to its reply.
 */
#pragma once

#include <stddef.h>

#include "sb-bytes.h"
#include "session.h"

/* ops_handle_line(): the pool the request needs is busy (its control block's lock is held
 * by a member, for a moment): nothing was done; hand the same line in again shortly. */
#define OPS_RETRY 1

/*
 * Handle one request line (without its newline) of session @s, and print its reply into
 * @out; or, when the request waits (session_is_waiting()), print nothing: its wait
 * answers it later. The session must not handle more lines while it waits, so that
 * replies keep request order. Returns 0, OPS_RETRY, or -errno when the connection must be
 * closed.
 */
int ops_handle_line(Session *s, const char *line, size_t len, SbBytes *out);
