/*
 * listener.c: accepting and admitting clients.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
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

static int listener_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;
        Broker *b = l->broker;

        (void)s;
        (void)revents;
        /* Take a bounded number per wake-up so a connect flood cannot starve clients. */
        for (int i = 0; i < 64; i++) {
                Client *c;
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(-errno, "accept failed");
                        break;
                }
                if (b->n_sessions >= b->config->limits.max_clients) {
                        log_warning("refusing a client: max_clients (%llu) reached",
                                    (unsigned long long)b->config->limits.max_clients);
                        refuse_client(b, cfd);
                        continue;
                }
                if (client_new(&c, b, cfd) < 0)
                        log_warning("cannot set up a new client");
        }
        return 0;
}

int listener_new(Listener **ret, Broker *b, int fd) {
        Listener *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->broker = b;
        r = sd_event_add_io(b->event, &l->source, fd, EPOLLIN, listener_on_accept, l);
        if (r < 0) {
                free(l);
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
        while ((s = sb_list_first_entry(&l->broker->sessions, Session, link)))
                client_free(client_from_session(s));
        free(l);
        return NULL;
}
