/*
 * client.h: one connected client: its socket (a Conn) on the event loop, its session,
 * and the rules of its life: requests handled in order, one at a time while one waits,
 * answered at the end of its input, closed when it stops reading its replies.
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "broker.h"
#include "conn.h"
#include "session.h"

/* Replies queued past this, unread by the client, disconnect it. */
#define CLIENT_OUTPUT_MAX (8u << 20)
/* While the clients' buffers together are over max_buffered, a client with more than this
 * of a partial line or of unread replies is held back: not read, its requests not handled,
 * until it reads or the total goes down. Well-behaved clients (short lines, replies read)
 * never hold that much and go on. */
#define CLIENT_GREEDY (64u << 10)

typedef struct Client {
        Conn conn;
        Session session;
        sd_event_source *io;
        sd_event_source *defer;  /* resumes the client after another one woke its wait */
        sd_event_source *retry;  /* resumes it after its request found its pool busy */
        uint64_t charged;        /* its buffers' bytes in broker->buffered */
        SbList held_back_link;   /* in broker->held_back while held back */
        bool retrying;           /* a line waits for its pool's lock (client_retry_soon()) */
        bool paused;             /* its lines wait: its unread replies are too many for now */
        bool closing;            /* answer what is queued, then close */
        bool dead;               /* the socket failed, or the client does not read: close now */
} Client;

/* A client on accepted socket @fd (taken, also on failure). A client over its uid's
 * quota is set up to send its refusal and close. Returns 0 or -errno. */
int client_new(Client **ret, Broker *b, int fd);

/* Reclaim everything the client holds and close it; NULL-safe. */
Client *client_free(Client *c);

/* The client whose session @s is (every session is a client's, but in tests). */
Client *client_from_session(Session *s);
