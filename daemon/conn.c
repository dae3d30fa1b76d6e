/*
 * conn.c: line framing over a non-blocking stream socket.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"

void conn_init(Conn *c, int fd) {
        *c = (Conn){ .fd = fd };
}

void conn_clear(Conn *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        free(c->in.data);
        free(c->out.data);
        c->in = (SbBytes){ 0 };
        c->out = (SbBytes){ 0 };
}

bool conn_wants_input(const Conn *c, size_t max_line) {
        return !c->eof && sb_bytes_pending(&c->in) <= max_line;
}

int conn_read(Conn *c, size_t max_line) {
        size_t pending = sb_bytes_pending(&c->in), room;
        ssize_t n;

        /* A reload may lower max_line below what is already buffered. */
        if (!conn_wants_input(c, max_line))
                return 0;
        room = max_line + 1 - pending;
        /* The buffer never holds more than max_line + 1 bytes: it need not be larger. */
        n = sb_bytes_recv(&c->in, c->fd, room < CONN_READ_CHUNK ? room : CONN_READ_CHUNK, max_line + 1);
        if (n == -EAGAIN)
                return 0;
        if (n < 0)
                return (int)n;
        if (n == 0)
                c->eof = true;
        return 0;
}

int conn_next_line(Conn *c, size_t max_line, const char **line, size_t *len) {
        size_t pending = sb_bytes_pending(&c->in), n;
        const char *l = sb_bytes_line(&c->in, &n);

        if (l) {
                if (n > max_line)
                        return -E2BIG;
                c->taken_at = c->in.off;
                c->taken = n + 1;
                sb_bytes_consume(&c->in, n + 1);
        } else if (pending > max_line) {
                return -E2BIG;
        } else if (c->eof && pending > 0) {
                l = c->in.data + c->in.off;    /* the last line lacks its newline */
                n = pending;
                c->taken_at = c->in.off;
                c->taken = n;
                sb_bytes_consume(&c->in, n);
        } else {
                return 0;
        }
        /* Consuming moves no bytes: the line stays where it is until the next read. */
        *line = l;
        *len = n;
        return 1;
}

void conn_put_back(Conn *c) {
        /* Consuming moves no bytes (conn_next_line()): the line is still where it was, even
         * when taking it emptied the buffer, which then only reset its offsets. */
        c->in.off = c->taken_at;
        if (c->in.len < c->taken_at + c->taken)
                c->in.len = c->taken_at + c->taken;
        c->taken = 0;
}

void conn_discard_input(Conn *c) {
        sb_bytes_consume(&c->in, sb_bytes_pending(&c->in));
}

int conn_flush(Conn *c) {
        return sb_bytes_send(&c->out, c->fd);
}

static void bytes_shrink(SbBytes *b) {
        if (sb_bytes_pending(b) == 0 && b->cap > CONN_READ_CHUNK) {
                free(b->data);
                *b = (SbBytes){ 0 };
        }
}

void conn_shrink(Conn *c) {
        bytes_shrink(&c->in);
        bytes_shrink(&c->out);
}
