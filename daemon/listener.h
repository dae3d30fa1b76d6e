/*
 * listener.h: the listening socket: accepting clients and admitting them under
 * max_clients. It owns the clients it admitted, and disconnects them when it goes.
 */
#pragma once

#include <systemd/sd-event.h>

#include "broker.h"
#include "sb-macro.h"

typedef struct Listener {
        Broker *broker;
        sd_event_source *source;
} Listener;

/* Accept clients on @fd (listening, non-blocking; not taken). Returns 0 or -errno. */
int listener_new(Listener **ret, Broker *b, int fd);

/* Stop accepting and disconnect every client; NULL-safe. */
Listener *listener_free(Listener *l);
DEFINE_CLEANUP_FUNC(Listener, listener_free)
