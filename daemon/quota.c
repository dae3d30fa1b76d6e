/*
 * quota.c: per-uid totals and the charges that make them up.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "quota.h"
#include "sb-error.h"

struct QuotaUser {
        SbList link;
        uid_t uid;
        uint64_t n_charges;      /* the user goes with its last charge or hold */
        uint64_t used[_QUOTA_MAX];
        uint64_t held;           /* its QuotaHolds' bytes */
};

static const char *const limit_names[_QUOTA_MAX] = {
        [QUOTA_CLIENTS] = "max_clients_per_uid",
        [QUOTA_POOLS] = "max_pools_per_uid",
        [QUOTA_BYTES] = "max_bytes_per_uid",
};

const char *quota_limit_name(QuotaKind kind) {
        return (unsigned)kind < _QUOTA_MAX ? limit_names[kind] : "?";
}

void quota_init(Quota *q, uid_t a, uid_t b) {
        *q = (Quota){ .exempt = { a, b } };
        for (int k = 0; k < _QUOTA_MAX; k++)
                q->limit[k] = UINT64_MAX;
        sb_list_init(&q->users);
}

void quota_set_limits(Quota *q, uint64_t clients, uint64_t pools, uint64_t bytes) {
        q->limit[QUOTA_CLIENTS] = clients;
        q->limit[QUOTA_POOLS] = pools;
        q->limit[QUOTA_BYTES] = bytes;
}

/* Few distinct uids use one daemon: a linear scan, at connect and create only. */
static QuotaUser *quota_find(const Quota *q, uid_t uid) {
        SbList *it;

        sb_list_for_each(it, &q->users) {
                QuotaUser *u = sb_list_entry(it, QuotaUser, link);
                if (u->uid == uid)
                        return u;
        }
        return NULL;
}

int quota_each_user(const Quota *q, int (*fn)(const QuotaUsage *u, void *userdata), void *userdata) {
        SbList *it;

        sb_list_for_each(it, &q->users) {
                const QuotaUser *u = sb_list_entry(it, QuotaUser, link);
                QuotaUsage usage = { .uid = u->uid, .held = u->held };
                int r;

                memcpy(usage.used, u->used, sizeof(usage.used));
                r = fn(&usage, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

uint64_t quota_used(const Quota *q, uid_t uid, QuotaKind kind) {
        QuotaUser *u = quota_find(q, uid);

        return u ? u->used[kind] : 0;
}

int quota_charge(Quota *q, QuotaCharge *charge, uid_t uid, const uint64_t amount[_QUOTA_MAX], QuotaKind *over) {
        QuotaUser *u;

        *charge = QUOTA_CHARGE_NULL;
        if (uid == q->exempt[0] || uid == q->exempt[1])
                return 0;
        u = quota_find(q, uid);
        for (int k = 0; k < _QUOTA_MAX; k++) {
                uint64_t used = u ? u->used[k] : 0, total;
                if (amount[k] && (__builtin_add_overflow(used, amount[k], &total) || total > q->limit[k])) {
                        *over = (QuotaKind)k;
                        return SB_E_LIMIT;
                }
        }
        if (!u) {
                u = calloc(1, sizeof(*u));
                if (!u)
                        return -ENOMEM;
                u->uid = uid;
                sb_list_append(&q->users, &u->link);
        }
        for (int k = 0; k < _QUOTA_MAX; k++) {
                u->used[k] += amount[k];
                charge->amount[k] = amount[k];
        }
        u->n_charges++;
        charge->user = u;
        return 0;
}

static void user_put(QuotaUser *u) {
        if (--u->n_charges == 0) {
                sb_list_unlink(&u->link);
                free(u);
        }
}

void quota_uncharge(QuotaCharge *charge) {
        QuotaUser *u = charge->user;

        if (!u)
                return;
        for (int k = 0; k < _QUOTA_MAX; k++)
                u->used[k] -= charge->amount[k];
        user_put(u);
        *charge = QUOTA_CHARGE_NULL;
}

int quota_hold(Quota *q, QuotaHold *h, const QuotaCharge *payer, uint64_t amount, uint64_t per_uid, uint64_t total,
               QuotaHoldLimit *over) {
        QuotaUser *u = payer->user;
        uint64_t sum;

        *h = QUOTA_HOLD_NULL;
        if (u && (__builtin_add_overflow(u->held, amount, &sum) || sum > per_uid)) {
                *over = QUOTA_HOLD_PER_UID;
                return SB_E_LIMIT;
        }
        if (__builtin_add_overflow(q->held, amount, &sum) || sum > total) {
                *over = QUOTA_HOLD_TOTAL;
                return SB_E_LIMIT;
        }
        q->held += amount;
        if (u) {
                u->held += amount;
                u->n_charges++;
        }
        *h = (QuotaHold){ .quota = q, .user = u, .amount = amount };
        return 0;
}

void quota_unhold(QuotaHold *h) {
        if (!h->quota)
                return;
        h->quota->held -= h->amount;
        if (h->user) {
                h->user->held -= h->amount;
                user_put(h->user);
        }
        *h = QUOTA_HOLD_NULL;
}

uint64_t quota_held_by(const QuotaCharge *payer) {
        return payer->user ? payer->user->held : 0;
}

void quota_charge_move(QuotaCharge *dst, QuotaCharge *src) {
        *dst = *src;
        *src = QUOTA_CHARGE_NULL;
}
