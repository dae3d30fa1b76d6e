/*
 * session.h: what the daemon knows of one connected client, as the operations see it:
 * who it is (credentials from the kernel, its hello), the pools it has open with the
 * slots it holds, its one pending wait, and its charge against its uid's quota.
 *
 * The socket side of a client (client.c) sits above the operations (ops.c); this part
 * sits below them, so that the operations act on it without a cycle.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "broker.h"
#include "pool.h"
#include "quota.h"
#include "sb-error.h"
#include "sb-list.h"
#include "sb-names.h"
#include "wait.h"

#define SESSION_NAME_MAX 256
#define SESSION_GROUPS_MAX 1024

typedef struct Session {
        Broker *broker;
        SbList link;             /* in broker->sessions */
        uint64_t serial;
        struct ucred cred;       /* from the kernel (SO_PEERCRED): cannot be forged */
        gid_t groups[SESSION_GROUPS_MAX];  /* supplementary groups (SO_PEERGROUPS) */
        int n_groups;
        bool hello;
        bool fast;               /* its hello said it can run its own operations on a control block */
        Role role;               /* ROLE_ADMIN until hello says otherwise */
        char *name;
        SbList members;          /* Member.owner_link: the pools it has open */
        Wait wait;
        QuotaCharge charge;      /* one client of its uid */
        uint64_t connected_usec;
} Session;

/*
 * Set up @s for a client with @cred and @groups on @b; its wait ends through @done.
 * Returns 0; or SB_E_LIMIT with the reason in @why when the uid has too many clients
 * (the session is set up all the same, uncharged, for a refusal to be sent); or -ENOMEM.
 * Either way session_clear() undoes it.
 */
int session_init(Session *s, Broker *b, const struct ucred *cred, const gid_t *groups, int n_groups,
                 WaitDoneFn done, SbReason *why);

/* Cancel the wait, close every pool (reclaiming slots), give back the charge. */
void session_clear(Session *s);

/* Close every pool the client has open, reclaiming its slots (after its wait). */
void session_leave_all(Session *s);

/* Open @p for the session in its role. 0 or -ENOMEM. */
int session_join(Session *s, Pool *p, Member **ret);

/* The member of pool @name on this session, or NULL. */
Member *session_find_member(const Session *s, const char *name);

/* Whether the client is in group @gid (primary or supplementary). */
bool session_in_group(const Session *s, gid_t gid);

/* Whether the kernel would let this client attach @p, read-only or read-write. */
bool session_may_access(const Session *s, const Pool *p, bool write);

static inline bool session_is_waiting(const Session *s) {
        return wait_is_active(&s->wait);
}
