/*
 * sb-bytes.h: a growable queue of bytes, written at its end and consumed from its start:
 * the input and the output of a connection, on either side of the socket. The inline
 * part is the queue itself; bytes.c moves it to and from a socket and splits lines.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct SbBytes {
        char *data;
        size_t off;              /* consumed up to here */
        size_t len;              /* written up to here */
        size_t cap;
} SbBytes;

static inline size_t sb_bytes_pending(const SbBytes *b) {
        return b->len - b->off;
}

/* Make room for at least @n more bytes at the end (moving what is pending to the front,
 * or growing, by doubling but never past @cap_max unless @n needs it) and return where
 * they go; sb_bytes_room() tells how many fit. Commit what was written there with
 * sb_bytes_commit(). NULL on ENOMEM. */
static inline char *sb_bytes_reserve_max(SbBytes *b, size_t n, size_t cap_max) {
        size_t pending = sb_bytes_pending(b);

        if (b->off > 0 && b->len + n > b->cap) {
                memmove(b->data, b->data + b->off, pending);
                b->off = 0;
                b->len = pending;
        }
        /* An empty queue has no buffer yet: even zero bytes get one, so that the pointer
         * returned is never NULL plus an offset. */
        if (b->len + n > b->cap || !b->data) {
                size_t cap = b->cap ? b->cap : 4096;
                char *p;
                while (cap < b->len + n)
                        cap *= 2;
                if (cap > cap_max)
                        cap = cap_max > b->len + n ? cap_max : b->len + n;
                if (cap == 0)
                        cap = 1;        /* realloc(p, 0) would free */
                p = realloc(b->data, cap);
                if (!p)
                        return NULL;
                b->data = p;
                b->cap = cap;
        }
        return b->data + b->len;
}

static inline char *sb_bytes_reserve(SbBytes *b, size_t n) {
        return sb_bytes_reserve_max(b, n, SIZE_MAX);
}

static inline size_t sb_bytes_room(const SbBytes *b) {
        return b->cap - b->len;
}

static inline void sb_bytes_commit(SbBytes *b, size_t n) {
        b->len += n;
}

/* Append @n bytes. 0 or -ENOMEM. */
static inline int sb_bytes_append(SbBytes *b, const void *data, size_t n) {
        char *p = sb_bytes_reserve(b, n);

        if (!p)
                return -ENOMEM;
        memcpy(p, data, n);
        sb_bytes_commit(b, n);
        return 0;
}

/* Mark @n bytes consumed; an emptied queue starts again at its front. */
static inline void sb_bytes_consume(SbBytes *b, size_t n) {
        b->off += n;
        if (b->off == b->len)
                b->off = b->len = 0;
}

/* Receive at most @want bytes from socket @fd onto the end of @b, without blocking, the
 * buffer growing to at most @cap_max bytes (or what pending + @want needs). Returns the
 * count received (0: the peer will send no more), -EAGAIN when nothing is there yet,
 * -ENOMEM, or another -errno of recv(). */
ssize_t sb_bytes_recv(SbBytes *b, int fd, size_t want, size_t cap_max);

/* Send what is pending to socket @fd until all is sent or the socket is full, without
 * blocking (and without SIGPIPE). Returns 0, or the -errno of a failed send(). */
int sb_bytes_send(SbBytes *b, int fd);

/* The next complete line pending in @b, without its '\n', its length in *len; NULL when
 * no newline is pending. It stays valid until @b is written; consume it (len + 1). */
const char *sb_bytes_line(const SbBytes *b, size_t *len);
