/*
 * quota.h: what each client uid may hold, charged to the objects that hold it.
 *
 * A QuotaCharge lives inside the charged object (a client's session, a pool): it is
 * taken once, when the object is made, and given back by the object's destructor. The
 * per-uid totals are found once, at charge time; giving back never looks anything up and
 * never allocates, so a destructor cannot fail to return what was charged (dbus-broker's
 * user_charge()). The uids in Quota.exempt (root and the daemon's own) are charged
 * nothing, explicitly.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sb-list.h"

typedef enum QuotaKind {
        QUOTA_CLIENTS,
        QUOTA_POOLS,
        QUOTA_BYTES,
        _QUOTA_MAX,
} QuotaKind;

typedef struct QuotaUser QuotaUser;

typedef struct Quota {
        SbList users;            /* QuotaUser.link: the uids charged anything now */
        uid_t exempt[2];
        uint64_t limit[_QUOTA_MAX];
        uint64_t held;           /* every QuotaHold's bytes, exempt uids' too */
} Quota;

typedef struct QuotaCharge {
        QuotaUser *user;         /* NULL: nothing charged (exempt, or not charged yet) */
        uint64_t amount[_QUOTA_MAX];
} QuotaCharge;

#define QUOTA_CHARGE_NULL ((QuotaCharge){ 0 })

/* No uid charged; @a and @b are exempt; no limits until quota_set_limits(). */
void quota_init(Quota *q, uid_t a, uid_t b);

/* Change the limits (a reload); what is charged stays, even beyond them. */
void quota_set_limits(Quota *q, uint64_t clients, uint64_t pools, uint64_t bytes);

/*
 * Charge @amount to @uid into @charge (which must hold nothing): 0, or without charging
 * anything SB_E_LIMIT with the kind that would pass its limit in *over, or -ENOMEM.
 */
int quota_charge(Quota *q, QuotaCharge *charge, uid_t uid, const uint64_t amount[_QUOTA_MAX], QuotaKind *over);

/* Give back what @charge holds (nothing for QUOTA_CHARGE_NULL); leaves it null. */
void quota_uncharge(QuotaCharge *charge);

/* Move what @src holds into @dst (which holds nothing); @src ends null. */
void quota_charge_move(QuotaCharge *dst, QuotaCharge *src);

/*
 * A hold: bytes that the daemon keeps for a client for a while, in memory of its own (a
 * ready or being-read batch's meta, from publish until its slot is freed). Held by the
 * object that keeps the bytes, like a QuotaCharge; counted against the uid that @payer
 * (the client's own QuotaCharge) is charged to, without looking it up, and against the
 * daemon-wide Quota.held, in which every uid counts, exempt ones too: that total bounds
 * the daemon's memory. The limits come with each hold, from the configuration in force.
 */
typedef struct QuotaHold {
        Quota *quota;            /* NULL: nothing held */
        QuotaUser *user;         /* NULL: an exempt uid, in the total only */
        uint64_t amount;
} QuotaHold;

#define QUOTA_HOLD_NULL ((QuotaHold){ 0 })

typedef enum QuotaHoldLimit {
        QUOTA_HOLD_PER_UID,      /* the payer's uid would hold more than @per_uid */
        QUOTA_HOLD_TOTAL,        /* everybody would hold more than @total */
} QuotaHoldLimit;

/*
 * Hold @amount for the uid of @payer in @h (which must hold nothing): 0, or without
 * holding anything SB_E_LIMIT with the limit that would be passed in *over.
 */
int quota_hold(Quota *q, QuotaHold *h, const QuotaCharge *payer, uint64_t amount, uint64_t per_uid, uint64_t total,
               QuotaHoldLimit *over);

/* Give back what @h holds (nothing for QUOTA_HOLD_NULL); leaves it null. */
void quota_unhold(QuotaHold *h);

/* What the uid of @payer holds now (0 for an exempt one). */
uint64_t quota_held_by(const QuotaCharge *payer);

/* What @uid holds of @kind now. */
uint64_t quota_used(const Quota *q, uid_t uid, QuotaKind kind);

/* What a uid is charged now: @used by kind, and @held, its holds' bytes. */
typedef struct QuotaUsage {
        uid_t uid;
        uint64_t used[_QUOTA_MAX];
        uint64_t held;
} QuotaUsage;

/* Call @fn for every uid charged anything now (never an exempt one), the first charged
 * first; the first nonzero return of @fn stops the walk and is returned. */
int quota_each_user(const Quota *q, int (*fn)(const QuotaUsage *u, void *userdata), void *userdata);

/* The name of a quota as configured ("max_pools_per_uid"). */
const char *quota_limit_name(QuotaKind kind);
