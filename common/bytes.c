/*
 * bytes.c: byte queues to and from non-blocking sockets, and line splitting.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "sb-bytes.h"

ssize_t sb_bytes_recv(SbBytes *b, int fd, size_t want, size_t cap_max) {
        char *p = sb_bytes_reserve_max(b, want, cap_max);
        ssize_t n;

        if (!p)
                return -ENOMEM;
        n = recv(fd, p, want, MSG_DONTWAIT);
        if (n < 0)
                return errno == EINTR ? -EAGAIN : -errno;
        sb_bytes_commit(b, (size_t)n);
        return n;
}

int sb_bytes_send(SbBytes *b, int fd) {
        while (sb_bytes_pending(b) > 0) {
                /* MSG_NOSIGNAL: a peer that went away is an EPIPE here, not a signal that
                 * ends the process. */
                ssize_t n = send(fd, b->data + b->off, sb_bytes_pending(b), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return -errno;
                }
                sb_bytes_consume(b, (size_t)n);
        }
        return 0;
}

const char *sb_bytes_line(const SbBytes *b, size_t *len) {
        const char *start = b->data + b->off, *nl;

        if (sb_bytes_pending(b) == 0)
                return NULL;
        nl = memchr(start, '\n', sb_bytes_pending(b));
        if (!nl)
                return NULL;
        *len = (size_t)(nl - start);
        return start;
}
