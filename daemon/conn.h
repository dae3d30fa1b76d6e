/*
 * conn.h: a connection's bytes: newline-delimited lines in, queued output out, over one
 * non-blocking stream socket. It knows nothing of JSON, clients or the event loop, so
 * that the framing can be used (and fuzzed) alone.
 *
 * Input is read one bounded chunk at a time and never holds more than max_line + 1
 * bytes: past that a line is too long, whatever follows. Output is queued and written
 * as far as the socket takes it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "sb-bytes.h"

/* Bytes read from a client in one go, so that no client starves the others. */
#define CONN_READ_CHUNK (64u << 10)

typedef struct Conn {
        int fd;
        SbBytes in;              /* received, not yet taken as lines */
        SbBytes out;             /* queued, not yet sent */
        bool eof;                /* the peer will send no more */
        size_t taken_at, taken;  /* where the line conn_next_line() took last began, its bytes */
} Conn;

/* A connection on socket @fd (taken: conn_clear() closes it; -1 for none). */
void conn_init(Conn *c, int fd);

/* Close the socket and free the buffers. */
void conn_clear(Conn *c);

/* Read one chunk, holding at most @max_line + 1 bytes of input. 0 (also when nothing was
 * there), or -errno of a broken socket. Sets c->eof at the end of input. */
int conn_read(Conn *c, size_t max_line);

/*
 * Take the next line: 1 with @line (without its newline; the last line may lack one once
 * c->eof) valid until the next conn_read(); 0 when no complete line is there; -E2BIG for
 * a line longer than @max_line (the input cannot go on).
 */
int conn_next_line(Conn *c, size_t max_line, const char **line, size_t *len);

/* Give back the line conn_next_line() took last, to be taken again (nothing was read
 * since). */
void conn_put_back(Conn *c);

/* Drop all pending input (a closing connection answers nothing more). */
void conn_discard_input(Conn *c);

/* Whether conn_read() would take more input: no end of input yet, and room left. */
bool conn_wants_input(const Conn *c, size_t max_line);

/* Free the buffers that are empty and larger than a chunk: a burst (a long line, a big
 * reply) does not pin its memory for the life of the connection. */
void conn_shrink(Conn *c);

/* The memory the buffers hold now. */
static inline size_t conn_buffered(const Conn *c) {
        return c->in.cap + c->out.cap;
}

/* Write queued output until done or the socket is full. 0 or -errno. */
int conn_flush(Conn *c);

static inline size_t conn_pending_output(const Conn *c) {
        return sb_bytes_pending(&c->out);
}
