/*
 * connection.c: a client's connection to the daemon: connecting and hello, the queue of
 * requests awaiting their replies, and the machinery that moves them (poll, flush, read,
 * dispatch), with the outcome of the last refusal.
 *
 * Every request goes through one queue: wire.c prints it into the output buffer and a
 * Pending is appended; replies come back in request order, so each reply line completes
 * the oldest Pending. A synchronous call queues its request(s) and runs the machinery until
 * its own Pending completes; an asynchronous one returns at once and its reply is
 * delivered from sb_client_process().
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "sb-macro.h"
#include "sb-unix.h"

#define READ_CHUNK (64u << 10)
/* The longest reply line the library takes (a status of many clients is the longest):
 * a daemon sending more is broken, and the connection fails with -EPROTO. */
#define LINE_MAX_BYTES (16u << 20)

_public_ sb_code sb_client_code(const sb_client *c) {
        return c->code;
}

_public_ const char *sb_client_message(const sb_client *c) {
        return c->message;
}

_public_ int sb_client_fd(const sb_client *c) {
        return c->fd;
}

_public_ short sb_client_events(const sb_client *c) {
        return (short)(POLLIN | (sb_bytes_pending(&c->out) > 0 ? POLLOUT : 0));
}

_public_ int sb_client_peer(const sb_client *c, int64_t *pid, int64_t *uid) {
        if (pid)
                *pid = c->pid;
        if (uid)
                *uid = c->uid;
        return 0;
}

/* --- the queue ------------------------------------------------------------------------ */

SbBytes *sb_conn_begin(sb_client *c) {
        c->mark = sb_bytes_pending(&c->out);
        return &c->out;
}

static void push(sb_client *c, Pending *pd) {
        pd->next = NULL;
        if (c->tail)
                c->tail->next = pd;
        else
                c->head = pd;
        c->tail = pd;
}

/* Queue the lines written since sb_conn_begin() with their Pendings, or take them back
 * when writing them failed (@r < 0) or the connection did. */
static int commit(sb_client *c, int r, Pending *a, Pending *b) {
        if (r == 0)
                r = c->broken;
        if (r < 0) {
                /* Pending bytes keep their order when the buffer moves them, so the mark
                 * counts from the first one. */
                c->out.len = c->out.off + c->mark;
                return r;
        }
        push(c, a);
        if (b)
                push(c, b);
        return 0;
}

/* Complete the oldest Pending with @reply (taken). */
static void complete(sb_client *c, cJSON *reply, int error) {
        Pending *pd = c->head;

        c->head = pd->next;
        if (!c->head)
                c->tail = NULL;
        if (pd->orphan) {
                cJSON_Delete(reply);
                free(pd);
                return;
        }
        if (!error && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                error = sb_wire_refusal(reply, &c->code, c->message, sizeof(c->message));
        if (!pd->deliver) {
                pd->done = true;
                pd->error = error;
                pd->reply = reply;
                return;
        }
        pd->deliver(pd, error ? NULL : reply, error);
        cJSON_Delete(reply);
        free(pd);
}

static void fail_all(sb_client *c, int error) {
        c->broken = error;
        while (c->head)
                complete(c, NULL, error);
}

void sb_conn_orphan(sb_client *c, const sb_pool *p) {
        for (Pending *pd = c->head; pd; pd = pd->next)
                if (pd->pool == p && pd->deliver)
                        pd->orphan = true;
}

int sb_conn_refuse(sb_client *c, sb_code code, const char *fmt, ...) {
        va_list ap;

        c->code = code;
        va_start(ap, fmt);
        vsnprintf(c->message, sizeof(c->message), fmt, ap);
        va_end(ap);
        return sb_wire_code_errno(code);
}

/* --- the machinery --------------------------------------------------------------------- */

static int read_replies(sb_client *c) {
        const char *line;
        int handled = 0;
        size_t len;
        ssize_t n;

        n = sb_bytes_recv(&c->in, c->fd, READ_CHUNK, LINE_MAX_BYTES + READ_CHUNK);
        if (n == -EAGAIN)
                return 0;
        if (n < 0)
                return (int)n;
        if (n == 0)
                return -ECONNRESET;
        while ((line = sb_bytes_line(&c->in, &len))) {
                cJSON *reply = cJSON_ParseWithLength(line, len);

                sb_bytes_consume(&c->in, len + 1);
                if (!c->head) {
                        /* A line nobody asked for: the daemon refusing the connection. */
                        int e = reply ? sb_wire_refusal(reply, &c->code, c->message, sizeof(c->message)) : -EPROTO;
                        cJSON_Delete(reply);
                        return e ? e : -EPROTO;
                }
                if (!reply)
                        return -EPROTO;
                if (sb_wire_keep_meta(reply, line, len) < 0) {
                        cJSON_Delete(reply);
                        return -ENOMEM;
                }
                complete(c, reply, 0);
                handled++;
        }
        /* What is left is the start of a line. */
        if (sb_bytes_pending(&c->in) > LINE_MAX_BYTES)
                return -EPROTO;
        return handled;
}

_public_ int sb_client_process(sb_client *c) {
        int r;

        if (c->broken)
                return c->broken;
        r = sb_bytes_send(&c->out, c->fd);
        if (r >= 0)
                r = read_replies(c);
        if (r < 0)
                fail_all(c, r);
        return r;
}

/* Run the machinery until @pd is done; returns its error and leaves its reply in it. */
static int wait_done(sb_client *c, Pending *pd) {
        while (!pd->done) {
                struct pollfd pfd = { .fd = c->fd };
                int r;

                if (c->broken)
                        return c->broken;
                r = sb_bytes_send(&c->out, c->fd);
                if (r < 0) {
                        fail_all(c, r);
                        continue;
                }
                pfd.events = sb_client_events(c);
                if (poll(&pfd, 1, -1) < 0) {
                        if (errno != EINTR)
                                fail_all(c, -errno);
                        continue;
                }
                if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                        r = read_replies(c);
                        if (r < 0)
                                fail_all(c, r);
                }
        }
        return pd->error;
}

int sb_conn_call(sb_client *c, int r, Pending *a, Pending *b) {
        c->code = SB_CODE_OK;
        c->message[0] = 0;
        r = commit(c, r, a, b);
        if (r < 0)
                return r;
        /* Queued requests always complete (fail_all() completes them when the connection
         * fails), so a Pending on the caller's stack is never left in the queue. */
        a->error = wait_done(c, a);
        if (b)
                b->error = wait_done(c, b);
        return 0;
}

int sb_conn_call_one(sb_client *c, int r, cJSON **reply) {
        Pending pd = { 0 };

        r = sb_conn_call(c, r, &pd, NULL);
        if (r == 0)
                r = pd.error;
        if (r == 0 && reply)
                *reply = steal_ptr(pd.reply);
        cJSON_Delete(pd.reply);
        return r;
}

int sb_conn_send(sb_client *c, int r, Pending *pd) {
        r = commit(c, r, pd, NULL);
        if (r < 0)
                return r;
        /* A failure to write is the request's outcome, delivered like a refusal. */
        r = sb_bytes_send(&c->out, c->fd);
        if (r < 0)
                fail_all(c, r);
        return 0;
}

/* --- connecting ------------------------------------------------------------------------ */

static int connect_unix(const char *path) {
        struct sockaddr_un addr;
        int fd, r;

        r = sb_sockaddr_un(&addr, path);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

void sb_conn_free(sb_client *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        fail_all(c, -ECONNABORTED);
        free(c->in.data);
        free(c->out.data);
        free(c);
}

static void sb_conn_freep(sb_client **c) {
        if (*c)
                sb_conn_free(*c);
}

_public_ int sb_connect(sb_client **ret, const char *path, sb_role role, const char *name) {
        _cleanup_(sb_conn_freep) sb_client *c = NULL;
        cJSON *reply = NULL;
        int r;

        if (!ret || role < SB_ROLE_PRODUCER || role > SB_ROLE_ADMIN)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->role = role;
        r = connect_unix(sb_connect_path(path));
        /* c is freed by its _cleanup_ on every return below. */
        if (r < 0)
                return r;  // cppcheck-suppress memleak
        c->fd = r;
        r = sb_conn_call_one(c, sb_wire_hello(sb_conn_begin(c), role, name, sb_fast_wanted()), &reply);
        if (r < 0)
                return r;
        c->pid = (int64_t)sb_wire_u64(reply, "pid");
        c->uid = (int64_t)sb_wire_u64(reply, "uid");
        cJSON_Delete(reply);
        *ret = steal_ptr(c);
        return 0;
}
