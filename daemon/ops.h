/*
 * ops.h: the protocol's operations, from a request line to its reply.
 */
#pragma once

#include <stddef.h>

#include "sb-bytes.h"
#include "session.h"

/*
 * Handle one request line (without its newline) of session @s, and print its reply into
 * @out; or, when the request waits (session_is_waiting()), print nothing: its wait
 * answers it later. The session must not handle more lines while it waits, so that
 * replies keep request order. Returns 0, or -errno when the connection must be closed.
 */
int ops_handle_line(Session *s, const char *line, size_t len, SbBytes *out);
