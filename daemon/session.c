/*
 * session.c: a client's identity, its open pools and its charge.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sb-time.h"
#include "session.h"

int session_init(Session *s, Broker *b, const struct ucred *cred, const gid_t *groups, int n_groups,
                 WaitDoneFn done, SbReason *why) {
        QuotaKind over;
        int r;

        *s = (Session){
                .broker = b,
                .serial = ++b->next_serial,
                .cred = *cred,
                .role = ROLE_ADMIN,
                .connected_usec = sb_now_usec(),
        };
        if (n_groups < 0 || n_groups > SESSION_GROUPS_MAX)
                n_groups = 0;   /* more groups than we keep: count the primary one only */
        if (n_groups > 0)
                memcpy(s->groups, groups, (size_t)n_groups * sizeof(gid_t));
        s->n_groups = n_groups;
        sb_list_init(&s->members);
        wait_init(&s->wait, b->event, done);
        sb_list_append(&b->sessions, &s->link);
        b->n_sessions++;

        r = quota_charge(&b->quota, &s->charge, cred->uid, (const uint64_t[_QUOTA_MAX]){ [QUOTA_CLIENTS] = 1 },
                         &over);
        if (r == SB_E_LIMIT)
                return sb_fail(why, r, "uid %u has too many connections: the quota %s (%llu) is reached",
                               (unsigned)cred->uid, quota_limit_name(over), (unsigned long long)b->quota.limit[over]);
        return r;
}

/* Say what becomes of the slots a leaving client holds in @m (member_leave() reclaims
 * them): an administrator looking for a lost batch finds it here. */
static void log_reclaim(const Session *s, const Member *m) {
        const Pool *p = m->pool;
        uint32_t writing = 0, reading, n = member_n_held(m);
        SlotView v;

        if (n == 0)
                return;
        for (uint32_t i = member_held_first(m); i != FP_NONE; i = member_held_next(m, i)) {
                pool_slot_view(p, i, &v);
                writing += v.state == SLOT_WRITING;
        }
        reading = n - writing;
        log_event(LOG_INFO, LOG_EVENT_SLOTS_RECLAIMED, p->spec.name, &s->cred,
                  "client %llu (pid %d uid %u) left pool \"%s\" holding %u slot%s: %u being written (discarded), %u "
                  "being read (%s)", (unsigned long long)s->serial, (int)s->cred.pid, (unsigned)s->cred.uid,
                  p->spec.name, n, n == 1 ? "" : "s", writing, reading,
                  p->spec.on_consumer_death == POLICY_REQUEUE ? "requeued" : "freed");
}

void session_leave_all(Session *s) {
        while (!sb_list_is_empty(&s->members)) {
                Member *m = sb_list_first_entry(&s->members, Member, owner_link);
                Pool *p = m->pool;
                log_reclaim(s, m);
                /* Its slots are reclaimed now, or, while a member holds the block's lock,
                 * by the broker's next look at the pool. */
                if (member_leave(m) == POOL_BUSY)
                        broker_poll_soon(s->broker);
                broker_pool_gc(s->broker, p);
        }
}

void session_clear(Session *s) {
        wait_clear(&s->wait);
        session_leave_all(s);
        quota_uncharge(&s->charge);
        if (sb_list_is_linked(&s->link)) {
                sb_list_unlink(&s->link);
                s->broker->n_sessions--;
        }
        free(s->name);
        s->name = NULL;
}

int session_join(Session *s, Pool *p, Member **ret) {
        int r = pool_join(p, s->role, s, ret);

        if (r != 0)
                return r;
        sb_list_append(&s->members, &(*ret)->owner_link);
        return 0;
}

Member *session_find_member(const Session *s, const char *name) {
        SbList *it;

        sb_list_for_each(it, &s->members) {
                Member *m = sb_list_entry(it, Member, owner_link);
                if (strcmp(m->pool->spec.name, name) == 0)
                        return m;
        }
        return NULL;
}

bool session_in_group(const Session *s, gid_t gid) {
        if (s->cred.gid == gid)
                return true;
        for (int i = 0; i < s->n_groups; i++)
                if (s->groups[i] == gid)
                        return true;
        return false;
}

/* The kernel's own rule for shmat(): owner bits for the owner, else group bits for a
 * member of the group, else the other bits; root (CAP_IPC_OWNER) passes. */
bool session_may_access(const Session *s, const Pool *p, bool write) {
        unsigned want = write ? 6 : 4, bits;

        if (s->cred.uid == 0)
                return true;
        if (s->cred.uid == p->spec.uid)
                bits = (p->spec.mode >> 6) & 7;
        else if (session_in_group(s, p->spec.gid))
                bits = (p->spec.mode >> 3) & 7;
        else
                bits = p->spec.mode & 7;
        return (bits & want) == want;
}
