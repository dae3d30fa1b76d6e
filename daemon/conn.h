/*
 * conn.h: one client connection: its socket and buffers, its credentials, its hello,
 * the pools it has open (with the slots it holds), and its one pending wait.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "pool.h"
#include "sb-bytes.h"
#include "sb-list.h"

typedef struct Broker Broker;

/* Replies queued past this, unread by the client, disconnect it. */
#define CONN_OUTPUT_MAX (8u << 20)
/* Bytes read from a client in one go, so that no client starves the others. */
#define CONN_READ_CHUNK (64u << 10)
#define CONN_NAME_MAX 256
#define CONN_GROUPS_MAX 1024

typedef struct Conn {
        Broker *broker;
        SbList link;
        uint64_t serial;
        int fd;
        sd_event_source *io;
        sd_event_source *defer;  /* resumes the connection after another one woke it */
        sd_event_source *timer;  /* the pending wait's timeout */
        struct ucred cred;
        gid_t groups[CONN_GROUPS_MAX];
        int n_groups;
        bool hello;
        PoolRole role;
        char *name;
        char *in;
        size_t in_len, in_cap;
        SbBytes out;             /* replies not yet written */
        SbList members;          /* Member.owner_link */
        PoolWaiter waiter;
        cJSON *wait_id;          /* the waiting request's id */
        uint32_t wait_max;       /* its "max" (0: the one-slot form) */
        bool waiting;
        bool eof;                /* the client sent all it will send */
        bool closing;            /* answer what is queued, then close */
        bool dead;               /* the socket failed: close now */
        uint64_t connected_usec;
} Conn;

/* A connection on accepted socket @fd (taken, also on failure). Returns 0 or -errno. */
int conn_new(Conn **ret, Broker *b, int fd);

/* Reclaim everything the client holds and close it; NULL-safe. */
Conn *conn_free(Conn *c);

/* Queue @reply (taken) as one line. Returns 0 or -errno (the connection is then dead). */
int conn_send(Conn *c, cJSON *reply);

/* Queue an error reply. */
int conn_send_error(Conn *c, const cJSON *id, int code, const char *message);

/* Let the event loop write c's output and go on with its input (after a wake-up). */
void conn_kick(Conn *c);

/* The member of pool @name on this connection, or NULL. */
Member *conn_find_member(Conn *c, const char *name);

/* Whether the kernel would let this client attach @p, read-only or read-write. */
bool conn_may_access(const Conn *c, const Pool *p, bool write);

/* Whether the client is in group @gid (primary or supplementary). */
bool conn_in_group(const Conn *c, gid_t gid);

/* Close every pool the client has open, reclaiming its slots. */
void conn_leave_all(Conn *c);
