/*
 * client.c: a client on the event loop, from accept() to close.
 *
 * Input is handled incrementally: read one bounded chunk, handle every complete line in
 * it. A line longer than max_line gets a "limit" error and the connection is closed.
 * While a request waits (acquire or consume), later lines stay buffered so that replies
 * keep request order; once the buffer is full, the socket is no longer read and the
 * client is held back by its own socket buffer.
 *
 * Output is written as soon as it is queued; EPOLLOUT is asked for only while some of
 * it is left. A client that lets more than CLIENT_OUTPUT_MAX pile up is disconnected.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arena.h"
#include "client.h"
#include "log.h"
#include "ops.h"
#include "protocol.h"
#include "sb-error.h"

static int client_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata);
static int client_on_defer(sd_event_source *s, void *userdata);
static void client_on_wait_done(Wait *w, cJSON *reply);

Client *client_from_session(Session *s) {
        return sb_container_of(s, Client, session);
}

static size_t client_max_line(const Client *c) {
        return (size_t)c->session.broker->config->limits.max_line;
}

static bool over_budget(const Broker *b) {
        return b->buffered > b->config->limits.max_buffered;
}

/* Whether the clients' buffers are over the budget, with this client's as they are now:
 * one client handling a burst of pipelined requests must not overshoot it unseen. */
static bool client_over_budget(const Client *c) {
        const Broker *b = c->session.broker;

        return b->buffered - c->charged + conn_buffered(&c->conn) > b->config->limits.max_buffered;
}

/* Whether its unread replies are to hold the client back now. */
static bool client_output_greedy(const Client *c) {
        return conn_pending_output(&c->conn) > CLIENT_GREEDY && client_over_budget(c);
}

/* Whether its partial line or its unread replies are to stop reading from it now. */
static bool client_greedy(const Client *c) {
        return (conn_pending_output(&c->conn) > CLIENT_GREEDY || sb_bytes_pending(&c->conn.in) > CLIENT_GREEDY) &&
               client_over_budget(c);
}

/* Disconnect a client that does not read what it is sent. */
static void client_check_output(Client *c) {
        if (conn_pending_output(&c->conn) <= CLIENT_OUTPUT_MAX)
                return;
        if (!c->dead)
                log_event(LOG_WARNING, LOG_EVENT_LIMIT, NULL, &c->session.cred,
                          "client %llu (pid %d) does not read its replies: disconnecting it",
                          (unsigned long long)c->session.serial, (int)c->session.cred.pid);
        c->dead = true;
}

/* Queue @reply (taken) as one line. */
static void client_send(Client *c, cJSON *reply) {
        if (!reply || reply_print(reply, &c->conn.out) < 0)
                c->dead = true;
        arena_json_delete(reply);
        client_check_output(c);
}

/* Let the event loop write c's output and go on with its input. */
static void client_kick(Client *c) {
        /* Made on first use: most clients never wait, and an idle one should cost the
         * event loop nothing. */
        if (!c->defer && sd_event_add_defer(c->session.broker->event, &c->defer, client_on_defer, c) < 0) {
                c->dead = true;
                return;
        }
        (void)sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
}

static int client_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)usec;
        return client_on_defer(s, userdata);
}

static void client_retry_soon(Client *c) {
        if (!c->retry &&
            sd_event_add_time_relative(c->session.broker->event, &c->retry, CLOCK_MONOTONIC, 1000, 500,
                                       client_on_retry, c) < 0) {
                c->dead = true;
                return;
        }
        (void)sd_event_source_set_time_relative(c->retry, 1000);
        (void)sd_event_source_set_enabled(c->retry, SD_EVENT_ONESHOT);
}

/* Once the clients' buffers are back within max_buffered, the held-back clients go on. */
static void resume_held_back(Broker *b) {
        Client *k;

        if (over_budget(b))
                return;
        while ((k = sb_list_first_entry(&b->held_back, Client, held_back_link))) {
                sb_list_unlink(&k->held_back_link);
                client_kick(k);
        }
}

static void client_on_wait_done(Wait *w, cJSON *reply) {
        Client *c = client_from_session(sb_container_of(w, Session, wait));

        client_send(c, reply);
        client_kick(c);
}

/*
 * SO_PEERCRED is the pid, uid and gid of the client as of connect(), filled in by the
 * kernel: it cannot be forged, unlike anything the client says. SO_PEERGROUPS (Linux
 * 4.13) adds its supplementary groups, which group permissions must count too.
 */
static int read_credentials(int fd, struct ucred *cred, gid_t *groups, int *n_groups) {
        socklen_t len = sizeof(*cred);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
                return -errno;
        len = SESSION_GROUPS_MAX * sizeof(gid_t);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0) {
                if (errno != ERANGE && errno != ENOPROTOOPT)
                        return -errno;
                /* More groups than we keep, or an old kernel: count the primary one only. */
                len = 0;
        }
        *n_groups = (int)(len / sizeof(gid_t));
        return 0;
}

int client_new(Client **ret, Broker *b, int fd) {
        gid_t groups[SESSION_GROUPS_MAX];
        struct ucred cred;
        SbReason why;
        Client *c;
        int n_groups = 0, r;

        r = read_credentials(fd, &cred, groups, &n_groups);
        if (r < 0) {
                close(fd);
                return r;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        conn_init(&c->conn, fd);
        sb_list_init(&c->held_back_link);
        r = session_init(&c->session, b, &cred, groups, n_groups, client_on_wait_done, &why);
        if (r < 0) {
                client_free(c);
                return r;
        }
        if (sd_event_add_io(b->event, &c->io, fd, EPOLLIN, client_on_io, c) < 0) {
                client_free(c);
                return -ENOMEM;
        }
        if (r == SB_E_LIMIT) {
                log_event(LOG_WARNING, LOG_EVENT_LIMIT, NULL, &cred, "refusing a client of pid %d: %s", (int)cred.pid,
                          why.text);
                client_send(c, reply_new_error(NULL, SB_E_LIMIT, why.text));
                c->closing = true;
                client_kick(c);
        }
        log_event(LOG_DEBUG, LOG_EVENT_CLIENT_CONNECTED, NULL, &cred, "client %llu connected: pid %d uid %u gid %u",
                  (unsigned long long)c->session.serial, (int)cred.pid, (unsigned)cred.uid, (unsigned)cred.gid);
        *ret = c;
        return 0;
}

Client *client_free(Client *c) {
        if (!c)
                return NULL;
        log_event(LOG_DEBUG, LOG_EVENT_CLIENT_DISCONNECTED, NULL, &c->session.cred, "client %llu disconnected",
                  (unsigned long long)c->session.serial);
        Broker *b = c->session.broker;

        session_clear(&c->session);
        sb_list_unlink(&c->held_back_link);
        b->buffered -= c->charged;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->defer);
        sd_event_source_disable_unref(c->retry);
        conn_clear(&c->conn);
        free(c);
        resume_held_back(b);
        return NULL;
}

/* --- input ------------------------------------------------------------------------- */

static void client_line_too_long(Client *c) {
        char msg[128];

        snprintf(msg, sizeof(msg), "request line longer than max_line (%llu bytes): closing the connection",
                 (unsigned long long)client_max_line(c));
        log_event(LOG_WARNING, LOG_EVENT_LIMIT, NULL, &c->session.cred, "client %llu (pid %d): %s",
                  (unsigned long long)c->session.serial, (int)c->session.cred.pid, msg);
        client_send(c, reply_new_error(NULL, SB_E_LIMIT, msg));
        c->closing = true;
}

/* Handle every complete line, in order, until one waits. */
static void client_process(Client *c) {
        size_t max_line = client_max_line(c);

        c->paused = false;
        c->retrying = false;
        while (!session_is_waiting(&c->session) && !c->closing && !c->dead) {
                const char *line;
                size_t len;
                int r;

                if (client_output_greedy(c)) {
                        c->paused = true;      /* its lines wait where they are */
                        break;
                }
                r = conn_next_line(&c->conn, max_line, &line, &len);

                if (r == 0)
                        break;
                if (r < 0) {
                        client_line_too_long(c);
                        break;
                }

                r = ops_handle_line(&c->session, line, len, &c->conn.out);
                if (r == OPS_RETRY) {
                        /* Its pool's lock is held by a member for a moment: the same line
                         * again in a millisecond, and nothing after it before. */
                        conn_put_back(&c->conn);
                        client_retry_soon(c);
                        c->retrying = true;
                        break;
                }
                if (r < 0)
                        c->dead = true;
                client_check_output(c);
        }
        /* At the end of its input a client is answered what can be answered at once; a
         * request that would wait is abandoned, and everything it holds reclaimed. */
        if (c->conn.eof && !c->retrying)
                c->closing = true;
        if (c->closing) {
                wait_cancel(&c->session.wait);
                session_leave_all(&c->session);
                conn_discard_input(&c->conn);
        }
}

static void client_update_events(Client *c) {
        uint32_t events = 0;

        if (client_greedy(c)) {
                if (!sb_list_is_linked(&c->held_back_link))
                        sb_list_append(&c->session.broker->held_back, &c->held_back_link);
        } else if (!c->closing && conn_wants_input(&c->conn, client_max_line(c)))
                events |= EPOLLIN;
        if (conn_pending_output(&c->conn) > 0)
                events |= EPOLLOUT;
        (void)sd_event_source_set_io_events(c->io, events);
}

/* Count the client's buffers into the clients' total; once the total is back within
 * max_buffered, let every held-back client go on. */
static void client_account(Client *c) {
        Broker *b = c->session.broker;

        conn_shrink(&c->conn);
        b->buffered = b->buffered - c->charged + conn_buffered(&c->conn);
        c->charged = conn_buffered(&c->conn);
        resume_held_back(b);
}

/* After any event: write what is queued, and close if the client is done. */
static void client_settle(Client *c) {
        if (!c->dead && conn_flush(&c->conn) < 0)
                c->dead = true;
        if (c->dead || (c->closing && conn_pending_output(&c->conn) == 0)) {
                client_free(c);
                return;
        }
        client_account(c);
        /* Its replies were read: the lines it paused on can be handled now. */
        if (c->paused && !client_output_greedy(c))
                client_kick(c);
        client_update_events(c);
}

static int client_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Client *c = userdata;

        (void)s;
        (void)fd;
        if ((revents & EPOLLIN) && !c->closing) {
                if (conn_read(&c->conn, client_max_line(c)) < 0)
                        c->dead = true;
                else
                        client_process(c);
        } else if (revents & (EPOLLHUP | EPOLLERR)) {
                /* Hung up while we were not reading (its input is full): nobody will read
                 * what we would answer. */
                if (!(revents & EPOLLOUT) || (revents & EPOLLERR))
                        c->dead = true;
        }
        client_settle(c);
        return 0;
}

static int client_on_defer(sd_event_source *s, void *userdata) {
        Client *c = userdata;

        (void)s;
        if (!c->closing)
                client_process(c);
        client_settle(c);
        return 0;
}
