/*
 * listener.h: the listening socket: accepting clients and admitting them under
 * max_clients. It owns the clients it admitted, and disconnects them when it goes.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "broker.h"
#include "sb-macro.h"

typedef struct Listener {
        Broker *broker;
        sd_event_source *source;
        /* Out of descriptors (or kernel memory) for the next client: accepting pauses until
         * a client leaves (watched after every loop iteration by @resume, made only then) or
         * @retry fires. */
        sd_event_source *resume;
        sd_event_source *retry;
        bool exhausted;          /* since the accept() that failed, until one succeeds */
        uint32_t paused_clients; /* the clients there were when accepting paused */
} Listener;

/* Accept clients on @fd (listening, non-blocking; not taken). Returns 0 or -errno. */
int listener_new(Listener **ret, Broker *b, int fd);

/* Stop accepting and disconnect every client; NULL-safe. */
Listener *listener_free(Listener *l);
DEFINE_CLEANUP_FUNC(Listener, listener_free)
