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

typedef struct Client {
        Conn conn;
        Session session;
        sd_event_source *io;
        sd_event_source *defer;  /* resumes the client after another one woke its wait */
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
