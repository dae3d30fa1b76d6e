/*
 * conn.c: a client connection's socket, buffers and credentials.
 *
 * Input is handled incrementally: read one bounded chunk, handle every complete line in
 * it, compact the buffer once. A line longer than max_line gets a "limit" error and the
 * connection is closed. While a request waits (acquire or consume), later lines stay
 * buffered so that replies keep request order; once the buffer is full, the socket is
 * no longer read and the client is held back by its own socket buffer.
 *
 * Output is written as soon as it is queued; EPOLLOUT is asked for only while some of
 * it is left. A client that lets more than CONN_OUTPUT_MAX pile up is disconnected.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "arena.h"
#include "conn.h"
#include "log.h"
#include "ops.h"
#include "protocol.h"
#include "sb-error.h"
#include "sb-time.h"

static int conn_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int conn_on_defer(sd_event_source *s, void *userdata);

/*
 * SO_PEERCRED is the pid, uid and gid of the client as of connect(), filled in by the
 * kernel: it cannot be forged, unlike anything the client says. SO_PEERGROUPS (Linux
 * 4.13) adds its supplementary groups, which group permissions must count too.
 */
static int conn_read_credentials(Conn *c) {
        socklen_t len = sizeof(c->cred);

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0)
                return -errno;
        len = sizeof(c->groups);
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) < 0) {
                if (errno != ERANGE && errno != ENOPROTOOPT)
                        return -errno;
                /* More groups than we keep, or an old kernel: count the primary one only. */
                len = 0;
        }
        c->n_groups = (int)(len / sizeof(gid_t));
        return 0;
}

int conn_new(Conn **ret, Broker *b, int fd) {
        UidUsage *usage;
        Conn *c;
        int r;

        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        c->broker = b;
        c->fd = fd;
        c->serial = ++b->next_serial;
        c->role = ROLE_ADMIN;
        c->connected_usec = sb_now_usec();
        sb_list_init(&c->members);
        sb_list_init(&c->waiter.link);
        sb_list_init(&c->link);
        sb_list_append(&b->conns, &c->link);
        b->n_conns++;

        r = conn_read_credentials(c);
        if (r < 0) {
                conn_free(c);
                return r;
        }
        usage = broker_usage(b, c->cred.uid);
        if (usage)
                usage->clients++;
        r = sd_event_add_io(b->event, &c->io, fd, EPOLLIN, conn_on_io, c);
        if (r < 0) {
                conn_free(c);
                return r;
        }
        if (usage && usage->clients > b->config->limits.max_clients_per_uid) {
                char msg[160];
                snprintf(msg, sizeof(msg), "uid %u has too many connections: the quota max_clients_per_uid (%llu) "
                         "is reached", (unsigned)c->cred.uid,
                         (unsigned long long)b->config->limits.max_clients_per_uid);
                log_warning("refusing a client of pid %d: %s", (int)c->cred.pid, msg);
                (void)conn_send_error(c, NULL, SB_E_LIMIT, msg);
                c->closing = true;
                conn_kick(c);
        }
        log_debug("client %llu connected: pid %d uid %u gid %u", (unsigned long long)c->serial,
                  (int)c->cred.pid, (unsigned)c->cred.uid, (unsigned)c->cred.gid);
        *ret = c;
        return 0;
}

void conn_leave_all(Conn *c) {
        while (!sb_list_is_empty(&c->members)) {
                Member *m = sb_list_first_entry(&c->members, Member, owner_link);
                Pool *p = m->pool;
                member_leave(m);
                broker_pool_gc(c->broker, p);
        }
}

Conn *conn_free(Conn *c) {
        UidUsage *usage;

        if (!c)
                return NULL;
        ops_cancel_wait(c);
        conn_leave_all(c);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->defer);
        sd_event_source_disable_unref(c->timer);
        if (c->fd >= 0)
                close(c->fd);
        if (sb_list_is_linked(&c->link)) {
                sb_list_unlink(&c->link);
                c->broker->n_conns--;
        }
        usage = broker_usage(c->broker, c->cred.uid);
        if (usage)
                usage->clients--;
        log_debug("client %llu disconnected", (unsigned long long)c->serial);
        free(c->name);
        free(c->in);
        free(c->out.data);
        free(c);
        return NULL;
}

/* --- output ------------------------------------------------------------------------ */

int conn_send(Conn *c, cJSON *reply) {
        int r = reply ? reply_print(reply, &c->out) : -ENOMEM;

        arena_json_delete(reply);
        if (r < 0) {
                c->dead = true;
                return r;
        }
        if (sb_bytes_pending(&c->out) > CONN_OUTPUT_MAX) {
                log_warning("client %llu (pid %d) does not read its replies: disconnecting it",
                            (unsigned long long)c->serial, (int)c->cred.pid);
                c->dead = true;
                return -ENOBUFS;
        }
        return 0;
}

int conn_send_error(Conn *c, const cJSON *id, int code, const char *message) {
        return conn_send(c, reply_new_error(id, code, message));
}

static void conn_flush(Conn *c) {
        while (sb_bytes_pending(&c->out) > 0 && !c->dead) {
                ssize_t n = send(c->fd, c->out.data + c->out.off, sb_bytes_pending(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return;
                        c->dead = true;
                        return;
                }
                sb_bytes_consume(&c->out, (size_t)n);
        }
}

/* --- input ------------------------------------------------------------------------- */

static size_t conn_input_limit(const Conn *c) {
        return (size_t)c->broker->config->limits.max_line + 1;
}

static int conn_read(Conn *c) {
        size_t limit = conn_input_limit(c), want;
        ssize_t n;

        /* A reload may lower max_line below what is already buffered. */
        if (c->in_len >= limit)
                return 0;
        want = limit - c->in_len < CONN_READ_CHUNK ? limit - c->in_len : CONN_READ_CHUNK;
        if (want == 0)
                return 0;
        if (c->in_len + want > c->in_cap) {
                size_t cap = c->in_cap ? c->in_cap : CONN_READ_CHUNK;
                char *p;
                while (cap < c->in_len + want)
                        cap *= 2;
                if (cap > limit)
                        cap = limit;
                p = realloc(c->in, cap);
                if (!p)
                        return -ENOMEM;
                c->in = p;
                c->in_cap = cap;
        }
        n = recv(c->fd, c->in + c->in_len, want, MSG_DONTWAIT);
        if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
        if (n == 0)
                c->eof = true;
        c->in_len += (size_t)n;
        return 0;
}

static void conn_line_too_long(Conn *c) {
        char msg[128];

        snprintf(msg, sizeof(msg), "request line longer than max_line (%llu bytes): closing the connection",
                 (unsigned long long)c->broker->config->limits.max_line);
        (void)conn_send_error(c, NULL, SB_E_LIMIT, msg);
        c->closing = true;
}

/* Handle every complete line, in order, until one waits; then compact once. */
static void conn_process(Conn *c) {
        size_t pos = 0, max_line = (size_t)c->broker->config->limits.max_line;

        while (!c->waiting && !c->closing && !c->dead) {
                char *nl = memchr(c->in + pos, '\n', c->in_len - pos);
                size_t n;
                int r;

                if (nl)
                        n = (size_t)(nl - (c->in + pos));
                else if (c->eof && pos < c->in_len)
                        n = c->in_len - pos;       /* the last line lacks its newline */
                else {
                        if (c->in_len - pos > max_line)
                                conn_line_too_long(c);
                        break;
                }
                if (n > max_line) {
                        conn_line_too_long(c);
                        break;
                }
                r = ops_handle_line(c, c->in + pos, n);
                pos += n + (nl ? 1 : 0);
                if (r < 0)
                        c->dead = true;
        }
        if (pos > 0) {
                memmove(c->in, c->in + pos, c->in_len - pos);
                c->in_len -= pos;
        }
        /* At the end of its input a client is answered what can be answered at once; a
         * request that would wait is abandoned, and everything it holds reclaimed. */
        if (c->eof)
                c->closing = true;
        if (c->closing) {
                ops_cancel_wait(c);
                conn_leave_all(c);
                c->in_len = 0;
        }
}

static void conn_update_events(Conn *c) {
        uint32_t events = 0;

        if (!c->closing && !c->eof && c->in_len < conn_input_limit(c))
                events |= EPOLLIN;
        if (sb_bytes_pending(&c->out) > 0)
                events |= EPOLLOUT;
        (void)sd_event_source_set_io_events(c->io, events);
}

/* After any event: write what is queued, and close if the connection is done. */
static void conn_settle(Conn *c) {
        if (!c->dead)
                conn_flush(c);
        if (c->dead || (c->closing && sb_bytes_pending(&c->out) == 0)) {
                conn_free(c);
                return;
        }
        conn_update_events(c);
}

static int conn_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        int r;

        (void)s;
        (void)fd;
        if ((revents & EPOLLIN) && !c->closing) {
                r = conn_read(c);
                if (r < 0)
                        c->dead = true;
                else
                        conn_process(c);
        } else if (revents & (EPOLLHUP | EPOLLERR)) {
                /* Hung up while we were not reading (its input is full): nobody will read
                 * what we would answer. */
                if (!(revents & EPOLLOUT) || (revents & EPOLLERR))
                        c->dead = true;
        }
        conn_settle(c);
        return 0;
}

static int conn_on_defer(sd_event_source *s, void *userdata) {
        Conn *c = userdata;

        (void)s;
        if (!c->closing)
                conn_process(c);
        conn_settle(c);
        return 0;
}

void conn_kick(Conn *c) {
        /* Made on first use: most connections never wait, and an idle one should cost the
         * event loop nothing. */
        if (!c->defer && sd_event_add_defer(c->broker->event, &c->defer, conn_on_defer, c) < 0) {
                c->dead = true;
                return;
        }
        (void)sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

/* --- pools and permissions ------------------------------------------------------- */

Member *conn_find_member(Conn *c, const char *name) {
        SbList *it;

        sb_list_for_each(it, &c->members) {
                Member *m = sb_list_entry(it, Member, owner_link);
                if (strcmp(m->pool->spec.name, name) == 0)
                        return m;
        }
        return NULL;
}

bool conn_in_group(const Conn *c, gid_t gid) {
        if (c->cred.gid == gid)
                return true;
        for (int i = 0; i < c->n_groups; i++)
                if (c->groups[i] == gid)
                        return true;
        return false;
}

/* The kernel's own rule for shmat(): owner bits for the owner, else group bits for a
 * member of the group, else the other bits; root (CAP_IPC_OWNER) passes. */
bool conn_may_access(const Conn *c, const Pool *p, bool write) {
        unsigned want = write ? 6 : 4, bits;

        if (c->cred.uid == 0)
                return true;
        if (c->cred.uid == p->spec.uid)
                bits = (p->spec.mode >> 6) & 7;
        else if (conn_in_group(c, p->spec.gid))
                bits = (p->spec.mode >> 3) & 7;
        else
                bits = p->spec.mode & 7;
        return (bits & want) == want;
}
