/*
 * sb-bytes.h: a growable queue of bytes, written at its end and consumed from its start
 * (the output of a connection, on either side of the socket).
 */
#pragma once

#include <errno.h>
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
 * or growing) and return where they go; sb_bytes_room() tells how many fit. Commit what
 * was written there with sb_bytes_commit(). NULL on ENOMEM. */
static inline char *sb_bytes_reserve(SbBytes *b, size_t n) {
        size_t pending = sb_bytes_pending(b);

        if (b->off > 0 && b->len + n > b->cap) {
                memmove(b->data, b->data + b->off, pending);
                b->off = 0;
                b->len = pending;
        }
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *p;
                while (cap < b->len + n)
                        cap *= 2;
                p = realloc(b->data, cap);
                if (!p)
                        return NULL;
                b->data = p;
                b->cap = cap;
        }
        return b->data + b->len;
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
