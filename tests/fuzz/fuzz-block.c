/*
 * libFuzzer target: a pool's control block (common/fastpool.c) driven by a script of
 * members' operations, deaths inside them with the daemon's repair, and a hostile
 * member's scribbles (docs/fastpath.md 5.4).
 *
 * Input: 3 bytes of geometry (slots 1 + b % 64, member_cap 1 + b % 16, flags: bit 0
 * ordered, bit 1 requeue on death, bit 2 a consume budget), then actions, each an opcode
 * byte (mod 14) and its operands, a missing byte read as 0:
 *
 *   0 join id role      1 leave id            2 acquire id max seq      3 consume id max
 *   4 publish id n (slot nbytes seq)*n        5 release id n requeue (slot)*n
 *   6 end id            7 wait id kind max seq                          8 unwait id
 *   9 poke off_hi off_lo len byte*len: bytes written at or after FpBlockHead.pool
 *  10 die k log: the next member operation dies after its k-th store; the daemon steals
 *     the lock, undoes, reclaims the member (log & 1: the dead member left 16 bytes of
 *     garbage in its log's last entry first)
 *  11 check            12 reads id           13 raw: an operation as a hostile member calls it
 *
 * The driver is the daemon: it joins and reclaims members and keeps its own table of who
 * is live and who waits; a waiting member does nothing but unwait or leave. Slots and seqs
 * are named as a client names them, the held ones or any index. Properties (abort()):
 * no fault (ASan, UBSan); every loop ends (libFuzzer's timeout); until the first poke or
 * raw operation, every operation returns 0 or an errno of its list, never FP_ECORRUPT,
 * fp_check() passes after every action and the table matches the block; after it, every
 * operation returns 0, an errno of the list or FP_ECORRUPT. -EOWNERDEAD only from a death.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sb-fastpool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MEMBERS_MAX = 16, ENTRIES_MAX = 8, ACTIONS_MAX = 4096 };

typedef struct Run {
        const uint8_t *p, *end;
        Fp f;
        bool poked;              /* a scribble or a raw operation: the block may be anything */
        bool budget;             /* consumes of many stop at a budget */
        /* The daemon's table, and what each member was told */
        bool live[MEMBERS_MAX + 1];
        Role role[MEMBERS_MAX + 1];
        bool waiting[MEMBERS_MAX + 1];
        bool wconsume[MEMBERS_MAX + 1];
        uint32_t wmax[MEMBERS_MAX + 1];
        uint64_t stream[MEMBERS_MAX + 1];       /* a consumer's: where it joined, + its eofs */
} Run;

static uint8_t next(Run *r) {
        return r->p < r->end ? *r->p++ : 0;
}

static void require(bool ok) {
        if (!ok)
                abort();
}

/* f->served: the member's wait is over. Honest: it was waiting, its slots are its own in
 * the state its kind gives them, at most its max, and none (an end of stream) only for a
 * consume. */
static void on_served(Fp *f, uint32_t id, void *userdata) {
        Run *r = userdata;
        uint32_t v[FP_MANY_MAX];
        const FpMember *m = fp_member(f, id);
        size_t n = fp_served_slots(f, id, v);

        require(n <= FP_MANY_MAX);
        if (id < 1 || id > MEMBERS_MAX)
                return;
        if (!r->poked) {
                require(m && r->live[id] && r->waiting[id] && m->wmax == 0 && n == m->served && n <= r->wmax[id]);
                require(n > 0 || r->wconsume[id]);
        }
        r->waiting[id] = false;
        if (r->wconsume[id] && n == 0)
                r->stream[id]++;
        if (r->poked)
                return;
        for (size_t i = 0; i < n; i++) {
                const FpSlot *s = fp_slot(f, v[i]);
                require(s && s->holder == id &&
                        s->state == (m->wkind == FP_WAIT_ACQUIRE ? FP_WRITING : FP_READING));
        }
}

static uint32_t pick_id(Run *r) {
        return 1 + next(r) % r->f.g.member_cap;
}

/* Whether slot @i is held by @id in @state (-1: writing or reading). */
static bool held_by(const Run *r, uint32_t i, uint32_t id, int state) {
        const FpSlot *s = fp_slot(&r->f, i);

        return s->holder == id && (state < 0 ? s->state == FP_WRITING || s->state == FP_READING : s->state == state);
}

/* A slot as a client names it: the k-th it holds (in @state, or any held state), else
 * any index, a few past the end included. */
static uint32_t pick_slot(Run *r, uint32_t id, int state) {
        uint8_t b = next(r);
        uint32_t n = 0;

        if (b < 0x80) {
                for (uint32_t i = 0; i < r->f.g.slots; i++)
                        n += held_by(r, i, id, state);
                for (uint32_t i = 0, k = 0; n && i < r->f.g.slots; i++)
                        if (held_by(r, i, id, state) && k++ == b % n)
                                return i;
        }
        return (b & 0x7f) % (r->f.g.slots + 2);
}

/* 0xff: none said; 0x80 and up: near the lowest seq not yet published; else small. */
static int64_t pick_seq(Run *r) {
        uint8_t b = next(r);

        if (b == 0xff)
                return -1;
        if (b >= 0x80)
                return (int64_t)(fp_lowest_unpublished(&r->f) + (b & 7));
        return b % 64;
}

static uint32_t pick_max(Run *r) {
        uint8_t b = next(r);

        return b == 0xff ? 2000 : b % 9;       /* 0 means 1; past FP_MANY_MAX is cut to it */
}

static bool allowed(const Run *r, int res) {
        return res == 0 || res == -EAGAIN || res == -EBUSY || res == -EPERM || res == -ENOENT || res == -EINVAL ||
               (res == FP_ECORRUPT && r->poked);
}

/* After every action: the invariants, and the daemon's table against the block. */
static void check_all(Run *r) {
        const char *why;
        int res = fp_check(&r->f, &why);

        require(res == 0 || (r->poked && res == FP_ECORRUPT));
        if (r->poked)
                return;
        for (uint32_t id = 1; id <= r->f.g.member_cap; id++) {
                const FpMember *m = fp_member(&r->f, id);
                require(!!(m->flags & FP_M_LIVE) == r->live[id]);
                require(!r->live[id] || (m->wmax != 0) == r->waiting[id]);
                require(!r->live[id] || r->role[id] != ROLE_CONSUMER || m->stream == r->stream[id]);
        }
}

/* One member operation of kind @op, as the client of member @id asks it; @run false: its
 * operands read, nothing done (a request the daemon would not pass on), so that the
 * script stays in step. */
static int member_op(Run *r, int op, uint32_t id, bool run) {
        FpPublish pub[ENTRIES_MAX];
        uint32_t v[FP_MANY_MAX], slots[ENTRIES_MAX];
        size_t n, bad;
        uint32_t max, count;
        int64_t seq;
        int res;
        bool requeue;
        uint8_t b;

        switch (op) {
        case 2:
                max = pick_max(r);
                seq = pick_seq(r);
                return run ? fp_take(&r->f, id, FP_WAIT_ACQUIRE, max, seq, v, &n) : 0;
        case 3:
                max = pick_max(r);
                b = next(r);
                if (!run)
                        return 0;
                if (r->budget && b) {
                        r->f.cost_each = 16;
                        r->f.budget = b;
                }
                res = fp_take(&r->f, id, FP_WAIT_CONSUME, max, -1, v, &n);
                r->f.budget = r->f.cost_each = 0;
                if (res == 0 && n == 0 && id <= MEMBERS_MAX)
                        r->stream[id]++;        /* told: end of stream */
                return res;
        case 4:
                count = 1 + next(r) % ENTRIES_MAX;
                for (uint32_t i = 0; i < count; i++) {
                        pub[i].slot = pick_slot(r, id, FP_WRITING);
                        pub[i].nbytes = next(r);        /* the slots hold 200 */
                        seq = pick_seq(r);
                        pub[i].has_seq = seq >= 0;
                        pub[i].seq = seq >= 0 ? (uint64_t)seq : 0;
                        pub[i].meta_at_daemon = seq & 1;
                        pub[i].meta_outside = seq & 2;
                }
                return run ? fp_publish(&r->f, id, pub, count, &bad) : 0;
        case 5:
                count = 1 + next(r) % ENTRIES_MAX;
                requeue = next(r) & 1;
                for (uint32_t i = 0; i < count; i++)
                        slots[i] = pick_slot(r, id, -1);
                return run ? fp_release(&r->f, id, slots, count, requeue, &bad) : 0;
        case 6:
                return run ? fp_end(&r->f, id) : 0;
        case 7:
                b = next(r);
                max = pick_max(r);
                seq = pick_seq(r);
                if (!run)
                        return 0;
                res = fp_wait(&r->f, id, b & 1 ? FP_WAIT_CONSUME : FP_WAIT_ACQUIRE, max, seq, false, NULL);
                if (res == 0 && id <= MEMBERS_MAX) {
                        r->waiting[id] = true;
                        r->wconsume[id] = b & 1;
                        r->wmax[id] = max == 0 ? 1 : max > FP_MANY_MAX ? FP_MANY_MAX : max;
                }
                return res;
        case 8:
                if (!run)
                        return 0;
                res = fp_unwait(&r->f, id);
                if (res == 0 && id <= MEMBERS_MAX)
                        r->waiting[id] = false;
                return res;
        }
        return 0;
}

/* The daemon's repair of member @id, dead inside an operation with the lock. */
static void repair(Run *r, uint32_t id, bool garbage) {
        Fp d = r->f;
        int res;

        d.self = FP_DAEMON;
        d.die_after = 0;
        d.dead = false;
        if (garbage) {
                /* a hostile member's last words: anything in its log's last entry */
                FpUndoLog *u = &fp_head(&d)->undo;
                uint8_t e[sizeof(FpUndo)];
                for (size_t i = 0; i < sizeof(e); i++)
                        e[i] = next(r);
                memcpy(&u->e[u->n ? u->n - 1 : 0], e, sizeof(e));
                r->poked = true;
        }
        res = fp_steal(&d, id);
        require(res == 0 || (r->poked && res == FP_ECORRUPT));
        if (res != 0)
                fp_head(&d)->undo.n = 0;        /* the daemon would rebuild; go on regardless */
        check_all(r);
        if (r->live[id]) {
                res = fp_leave(&d, id);
                require(allowed(r, res) && (r->poked || res == 0));
                r->live[id] = r->waiting[id] = false;
        }
        fp_unlock(&d);
}

/* An operation as a hostile member might call it: any id, whatever the table says. */
static int raw_op(Run *r) {
        uint8_t op = next(r) % 9;
        uint32_t id = next(r) % (r->f.g.member_cap + 2);
        int res;

        r->poked = true;
        switch (op) {
        case 0:
                res = fp_join(&r->f, id, (Role)(next(r) % _ROLE_MAX));
                break;
        case 1:
                res = fp_leave(&r->f, id);
                break;
        default:
                return member_op(r, op, id, true);
        }
        if (id >= 1 && id <= MEMBERS_MAX && res == 0) {
                r->live[id] = op == 0;
                r->role[id] = fp_member(&r->f, id)->role < _ROLE_MAX ? (Role)fp_member(&r->f, id)->role : ROLE_ADMIN;
        }
        return res;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Run r = { .p = data, .end = data + size };
        uint32_t slots = 1 + next(&r) % 64, member_cap = 1 + next(&r) % MEMBERS_MAX, v[FP_MANY_MAX];
        uint8_t flags = next(&r);
        uint64_t die_after = 0;
        bool die_garbage = false;
        const size_t lo = offsetof(FpBlockHead, pool);
        FpGeom g;
        uint8_t *mem;

        if (fp_geom(&g, slots, member_cap, 200, 4096,
                    (flags & 1 ? FP_ORDERED : 0) | (flags & 2 ? FP_REQUEUE_ON_DEATH : 0), flags & 4 ? 64 : 0) != 0)
                abort();
        /* Exactly the block's size: ASan catches an access past it. */
        mem = aligned_alloc(64, g.size);
        if (!mem)
                return 0;
        memset(mem, 0, g.size);
        fp_format(&r.f, mem, &g, FP_DAEMON);
        r.f.served = on_served;
        r.f.userdata = &r;
        r.f.now = 1000000;
        r.budget = flags & 4;
        for (int actions = 0; r.p < r.end && actions < ACTIONS_MAX; actions++) {
                uint8_t op = next(&r) % 14;
                uint32_t id;
                int res = 0;

                r.f.now += 1000;
                switch (op) {
                case 0: {
                        Role role;
                        id = pick_id(&r);
                        role = (Role)(next(&r) % _ROLE_MAX);
                        if (!r.live[id]) {
                                r.f.self = FP_DAEMON;
                                require(fp_trylock(&r.f, NULL) == 0);
                                res = fp_join(&r.f, id, role);
                                fp_unlock(&r.f);
                                require(allowed(&r, res) && (r.poked || res == 0));
                                if (res == 0) {
                                        r.live[id] = true;
                                        r.role[id] = role;
                                        r.stream[id] = fp_member(&r.f, id)->stream;    /* its join reply */
                                }
                        }
                        break;
                }
                case 1:
                        id = pick_id(&r);
                        if (r.live[id]) {
                                r.f.self = FP_DAEMON;
                                require(fp_trylock(&r.f, NULL) == 0);
                                res = fp_leave(&r.f, id);
                                fp_unlock(&r.f);
                                require(allowed(&r, res) && (r.poked || res == 0));
                                r.live[id] = r.waiting[id] = false;
                        }
                        break;
                case 2: case 3: case 4: case 5: case 6: case 7: case 8:
                        id = pick_id(&r);
                        if (!r.live[id] || (r.waiting[id] && op != 8)) {
                                /* the daemon's table: not a request it would pass on */
                                (void)member_op(&r, op, id, false);
                                die_after = 0;
                                break;
                        }
                        r.f.self = id;
                        require(fp_trylock(&r.f, NULL) == 0);
                        r.f.die_after = die_after;
                        res = member_op(&r, op, id, true);
                        r.f.die_after = 0;
                        if (die_after && r.f.dead) {
                                r.f.dead = false;
                                require(res == -EOWNERDEAD);
                                repair(&r, id, die_garbage);
                        } else {
                                require(allowed(&r, res));
                                fp_unlock(&r.f);
                        }
                        die_after = 0;
                        break;
                case 9: {
                        size_t off = (size_t)next(&r) << 8;
                        uint32_t len = 1 + next(&r) % 8;
                        off = lo + (off | next(&r)) % (g.size - lo);
                        for (uint32_t i = 0; i < len && off + i < g.size; i++)
                                mem[off + i] = next(&r);
                        r.poked = true;
                        break;
                }
                case 10: {
                        uint8_t mode;
                        die_after = 1 + next(&r);
                        mode = next(&r);
                        die_garbage = mode & 1;
                        break;
                }
                case 11:
                        break;          /* the check below, and nothing else */
                case 12:
                        id = next(&r) % (member_cap + 2);
                        require(fp_served_slots(&r.f, id, v) <= FP_MANY_MAX);
                        (void)fp_lowest_unpublished(&r.f);
                        (void)fp_waited_usec(&r.f, FP_WAIT_ACQUIRE, r.f.now);
                        (void)fp_waited_usec(&r.f, FP_WAIT_CONSUME, r.f.now);
                        if (fp_member(&r.f, id))
                                (void)fp_member_ended(&r.f, fp_member(&r.f, id));
                        break;
                case 13:
                        r.f.self = FP_DAEMON;
                        require(fp_trylock(&r.f, NULL) == 0);
                        res = raw_op(&r);
                        require(allowed(&r, res));
                        fp_unlock(&r.f);
                        break;
                }
                require(fp_head(&r.f)->undo.n == 0 || r.poked);
                check_all(&r);
        }
        free(mem);
        return 0;
}
