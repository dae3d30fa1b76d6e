/*
 * ops.h: the protocol's operations: dispatch of a request line to its handler, and
 * the waits of acquire and consume.
 */
#pragma once

#include <stddef.h>

typedef struct Conn Conn;

/* Handle one request line. Returns 0 when its reply is queued, OPS_WAITING when the
 * request waits (the connection must not handle more lines until it is answered), or
 * -errno when the connection must be closed. */
int ops_handle_line(Conn *c, const char *line, size_t len);
#define OPS_WAITING 0x1000  /* above every SbError */

/* Abandon the connection's pending wait without a reply (its client went away). */
void ops_cancel_wait(Conn *c);
