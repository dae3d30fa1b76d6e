/*
 * listener.c: accepting and admitting clients.
 *
 * When accept() fails for want of a descriptor (EMFILE: our RLIMIT_NOFILE; ENFILE: the
 * system's table) or of kernel memory, the connection stays in the backlog and the
 * listening socket stays readable: accepting again at once would spin. So the listener
 * stops watching the socket and tries again when one of its clients has gone, which frees
 * a descriptor, or after RETRY_USEC, for a descriptor freed elsewhere (another process, a
 * raised limit). Connections wait in the backlog meanwhile. It is logged once per
 * episode: from the first failure to the accept() that finds the backlog empty and a
 * descriptor free.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "listener.h"
#include "log.h"
#include "protocol.h"
#include "sb-error.h"

/* Over max_clients: say why in one line, as far as the socket takes it, and close. */
static void refuse_client(Broker *b, int fd) {
        char msg[192];
        SbBytes out = { 0 };
        cJSON *reply;

        snprintf(msg, sizeof(msg), "too many clients: the limit max_clients (%llu) is reached",
                 (unsigned long long)b->config->limits.max_clients);
        reply = reply_new_error(NULL, SB_E_LIMIT, msg);
        if (reply && reply_print(reply, &out) == 0)
                (void)sb_bytes_send(&out, fd);
        cJSON_Delete(reply);
        free(out.data);
        close(fd);
}

#define RETRY_USEC (1000 * 1000ULL)

static bool accept_error_is_exhaustion(int error) {
        return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

static int listener_on_post(sd_event_source *s, void *userdata);

/* Stop watching the socket until a client leaves or RETRY_USEC has passed. Nothing here
 * may need a descriptor: the timer exists from the start, and a post source needs none. */
static void listener_pause(Listener *l, int error) {
        struct rlimit rl = { 0 };

        if (!l->exhausted) {
                (void)getrlimit(RLIMIT_NOFILE, &rl);
                log_warning_errno(error, "cannot accept clients (%u connected, descriptor limit %llu): accepting "
                                  "again when a client leaves", l->broker->n_sessions,
                                  (unsigned long long)rl.rlim_cur);
                l->exhausted = true;
        }
        l->paused_clients = l->broker->n_sessions;
        (void)sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        /* Made here, not at start: sd-event looks at every post source after each event it
         * dispatches, even a disabled one, and that would cost every batch something. */
        if (!l->resume && sd_event_add_post(l->broker->event, &l->resume, listener_on_post, l) < 0)
                l->resume = NULL;       /* then the retry timer alone resumes */
        (void)sd_event_source_set_time_relative(l->retry, RETRY_USEC);
        (void)sd_event_source_set_enabled(l->retry, SD_EVENT_ONESHOT);
}

static void listener_accept(Listener *l);

/* Accept what waits in the backlog now. */
static void listener_resume(Listener *l) {
        l->resume = sd_event_source_disable_unref(l->resume);
        (void)sd_event_source_set_enabled(l->retry, SD_EVENT_OFF);
        (void)sd_event_source_set_enabled(l->source, SD_EVENT_ON);
        listener_accept(l);
}

/* After every loop iteration while paused: has a client gone? */
static int listener_on_post(sd_event_source *s, void *userdata) {
        Listener *l = userdata;

        (void)s;
        if (l->broker->n_sessions < l->paused_clients)
                listener_resume(l);
        return 0;
}

static int listener_on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        (void)s;
        (void)usec;
        listener_resume(userdata);
        return 0;
}

static void listener_accept(Listener *l) {
        Broker *b = l->broker;
        int fd = sd_event_source_get_io_fd(l->source);

        /* Take a bounded number per wake-up so a connect flood cannot starve clients. */
        for (int i = 0; i < 64; i++) {
                Client *c;
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (accept_error_is_exhaustion(errno)) {
                                listener_pause(l, -errno);
                        } else if (errno == EAGAIN && l->exhausted) {
                                /* The backlog is empty and a descriptor is free: the episode is over. */
                                log_info("accepting clients again");
                                l->exhausted = false;
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
                                log_warning_errno(-errno, "accept failed");
                        }
                        break;
                }
                if (b->n_sessions >= b->config->limits.max_clients) {
                        struct ucred cred;
                        socklen_t len = sizeof(cred);
                        /* Who it was, for the journal's fields: whoever floods is named. */
                        bool known = getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0;

                        log_event(LOG_WARNING, LOG_EVENT_LIMIT, NULL, known ? &cred : NULL,
                                  "refusing a client: max_clients (%llu) reached",
                                  (unsigned long long)b->config->limits.max_clients);
                        refuse_client(b, cfd);
                        continue;
                }
                if (client_new(&c, b, cfd) < 0)
                        log_warning("cannot set up a new client");
        }
}

static int listener_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void)s;
        (void)fd;
        (void)revents;
        listener_accept(userdata);
        return 0;
}

int listener_new(Listener **ret, Broker *b, int fd) {
        Listener *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->broker = b;
        r = sd_event_add_io(b->event, &l->source, fd, EPOLLIN, listener_on_accept, l);
        /* Made now, while descriptors are at hand, and with it the clock's timer descriptor.
         * A clock of its own: the waits' CLOCK_MONOTONIC keeps making its descriptor on first
         * use, the failure that the tests of internal errors provoke with a full table. */
        if (r >= 0)
                r = sd_event_add_time_relative(b->event, &l->retry, CLOCK_BOOTTIME, RETRY_USEC, 0, listener_on_retry, l);
        if (r >= 0)
                r = sd_event_source_set_enabled(l->retry, SD_EVENT_OFF);
        if (r < 0) {
                listener_free(l);
                return r;
        }
        *ret = l;
        return 0;
}

Listener *listener_free(Listener *l) {
        Session *s;

        if (!l)
                return NULL;
        l->source = sd_event_source_disable_unref(l->source);
        l->resume = sd_event_source_disable_unref(l->resume);
        l->retry = sd_event_source_disable_unref(l->retry);
        while ((s = sb_list_first_entry(&l->broker->sessions, Session, link)))
                client_free(client_from_session(s));
        free(l);
        return NULL;
}
