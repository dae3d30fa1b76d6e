/*
 * fastpool.c: the slot state machine of a pool, on its control block (sb-fastpool.h).
 *
 * Every slot is in exactly one place: the free list (FREE), the ready queue, the early
 * queue or the ordered heap (READY), or its holder's held list (WRITING, READING); so
 * every transition is an O(1) unlink and link, and a dying member's slots are found by
 * walking its own held list.
 *
 * Streams: producers publish into pool.stream. The stream ends once at least one
 * producer has sent end and every producer has sent it or left; then pool.stream moves
 * on. A producer that has sent end and publishes again before the others end publishes
 * into the next stream (the early queue): a fast data-loading worker may start the next
 * epoch while a slow one finishes this one. A consumer reads member.stream: batches of
 * that stream or older ones, and once none is ready and the stream has ended, one end of
 * stream, and it moves to the next.
 *
 * Repair rests on one rule: nothing another process acts on without the lock is stored
 * before the step's commit. Then an undone step was seen by nobody, and a committed one
 * stands.
 */
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "sb-fastpool.h"

_Static_assert(sizeof(FpHeader) == 64, "FpHeader is one line");
_Static_assert(sizeof(FpControl) == 64, "FpControl is one line");
_Static_assert(sizeof(FpLock) == 64, "FpLock is one line");
_Static_assert(sizeof(FpUndoLog) == 64 + 16 * FP_UNDO_CAP, "FpUndoLog");
_Static_assert(sizeof(FpPool) == 128, "FpPool is two lines");
_Static_assert(sizeof(FpStats) == 64, "FpStats is one line");
_Static_assert(sizeof(FpMember) == 64, "FpMember is one line");
_Static_assert(sizeof(FpSlot) == 64, "FpSlot is one line");
_Static_assert(sizeof(FpBlockHead) % 64 == 0, "the head is whole lines");

#define LINE 64u

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ volatile("yield");
#endif
}

static FpPool *P(const Fp *f) {
        return &fp_head(f)->pool;
}

static FpStats *ST(const Fp *f) {
        return &fp_head(f)->stats;
}

static uint32_t *heap_at(const Fp *f) {
        return (uint32_t *)(void *)(f->mem + f->g.off_heap);
}

static uint32_t *buckets_at(const Fp *f) {
        return (uint32_t *)(void *)(f->mem + f->g.off_buckets);
}

static bool ordered(const Fp *f) {
        return f->g.flags & FP_ORDERED;
}

FpSlot *fp_slot(const Fp *f, uint32_t index) {
        return index < f->g.slots ? (FpSlot *)(void *)(f->mem + f->g.off_slots + (size_t)index * LINE) : NULL;
}

FpMember *fp_member(const Fp *f, uint32_t id) {
        return id >= 1 && id <= f->g.member_cap ?
                (FpMember *)(void *)(f->mem + f->g.off_members + (size_t)(id - 1) * LINE) : NULL;
}

static uint32_t slot_index(const Fp *f, const FpSlot *s) {
        return (uint32_t)(((const uint8_t *)s - f->mem - f->g.off_slots) / LINE);
}

static uint32_t member_id(const Fp *f, const FpMember *m) {
        return (uint32_t)(((const uint8_t *)m - f->mem - f->g.off_members) / LINE) + 1;
}

/* --- geometry ------------------------------------------------------------------------ */

static size_t round_line(size_t n) {
        return (n + LINE - 1) & ~(size_t)(LINE - 1);
}

int fp_geom(FpGeom *g, uint32_t slots, uint32_t member_cap, uint64_t slot_size, uint64_t stride, uint32_t flags,
            uint32_t meta_inline) {
        size_t at;

        if (slots == 0 || slots > FP_SLOTS_MAX || member_cap == 0 || member_cap > FP_MEMBERS_MAX ||
            meta_inline % LINE || meta_inline > (1u << 16))
                return -E2BIG;
        *g = (FpGeom){ .slots = slots, .member_cap = member_cap, .flags = flags, .slot_size = slot_size,
                       .stride = stride, .meta_inline = meta_inline };
        at = round_line(sizeof(FpBlockHead));
        g->off_members = (uint32_t)at;
        at += (size_t)member_cap * LINE;
        g->off_slots = (uint32_t)at;
        at += (size_t)slots * LINE;
        g->off_heap = (uint32_t)at;
        g->off_buckets = (uint32_t)at;
        if (flags & FP_ORDERED) {
                uint32_t nb = 4;
                /* Chains through FpSlot.hash_next: with twice as many buckets as slots
                 * they stay short, and an insert or removal is one or two stores. */
                while (nb < 2 * slots)
                        nb <<= 1;
                g->nbuckets = nb;
                at += round_line((size_t)slots * sizeof(uint32_t));
                g->off_buckets = (uint32_t)at;
                at += round_line((size_t)nb * sizeof(uint32_t));
        }
        g->off_meta = (uint32_t)at;
        at += (size_t)slots * meta_inline;
        if (at > UINT32_MAX)
                return -E2BIG;
        g->size = at;
        return 0;
}

bool fp_header_matches(const void *mem, const FpGeom *g) {
        const FpHeader *h = mem;

        return h->magic == FP_MAGIC && h->version == FP_VERSION && h->slots == g->slots &&
                h->member_cap == g->member_cap && h->slot_size == g->slot_size && h->stride == g->stride &&
                h->meta_inline == g->meta_inline && h->flags == g->flags && h->off_members == g->off_members &&
                h->off_slots == g->off_slots && h->off_heap == g->off_heap && h->off_buckets == g->off_buckets &&
                h->nbuckets == g->nbuckets && h->off_meta == g->off_meta;
}

uint8_t *fp_meta_area(const Fp *f, uint32_t index) {
        if (index >= f->g.slots || f->g.meta_inline == 0)
                return NULL;
        return f->mem + f->g.off_meta + (size_t)index * f->g.meta_inline;
}

void fp_format(Fp *f, void *mem, const FpGeom *g, uint32_t self) {
        FpBlockHead *h;

        *f = (Fp){ .mem = mem, .g = *g, .self = self };
        h = fp_head(f);
        h->header = (FpHeader){ .magic = FP_MAGIC, .version = FP_VERSION, .slots = g->slots,
                                .member_cap = g->member_cap, .slot_size = g->slot_size, .stride = g->stride,
                                .flags = g->flags, .off_members = g->off_members, .off_slots = g->off_slots,
                                .off_heap = g->off_heap, .off_buckets = g->off_buckets, .nbuckets = g->nbuckets,
                                .meta_inline = g->meta_inline, .off_meta = g->off_meta };
        h->pool.free_head = FP_NONE;
        h->pool.ready_head = h->pool.ready_tail = FP_NONE;
        h->pool.early_head = h->pool.early_tail = FP_NONE;
        /* Slot 0 first: the free list is LIFO, so push them last to first. */
        for (uint32_t i = g->slots; i-- > 0;) {
                FpSlot *s = fp_slot(f, i);
                *s = (FpSlot){ .state = FP_FREE, .next = h->pool.free_head, .prev = FP_NONE, .declared = -1,
                               .heap_pos = FP_NONE, .hash_next = FP_NONE };
                h->pool.free_head = i;
        }
        h->pool.count[FP_FREE] = g->slots;
        for (uint32_t b = 0; b < g->nbuckets; b++)
                buckets_at(f)[b] = FP_NONE;
}

/* --- the lock ------------------------------------------------------------------------ */

int fp_trylock(Fp *f, uint32_t *owner) {
        uint32_t expected = 0;

        if (atomic_compare_exchange_strong_explicit(&fp_head(f)->lock.word, &expected, f->self, memory_order_acquire,
                                                    memory_order_relaxed))
                return 0;
        if (owner)
                *owner = expected & 0xffffu;
        return -ENOLCK;
}

/* Shared futexes, never FUTEX_PRIVATE_FLAG: the words are in memory other processes map. */
static int futex_wait(_Atomic uint32_t *word, uint32_t v, int timeout_ms) {
        struct timespec ts = { .tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L };

        return (int)syscall(SYS_futex, word, FUTEX_WAIT, v, timeout_ms >= 0 ? &ts : NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n) {
        (void)syscall(SYS_futex, word, FUTEX_WAKE, n, NULL, NULL, 0);
}

/*
 * The lock is Drepper's mutex with the owner's id for "locked" (Futexes Are Tricky, mutex
 * 2): free 0; held: the owner's id; held with sleepers: the id | FP_LOCK_WAITERS. The id
 * is what lets the daemon tell a dead owner from a live one, and so what lets it steal.
 */
int fp_lock(Fp *f, int slice_ms) {
        _Atomic uint32_t *word = &fp_head(f)->lock.word;
        uint32_t c = 0;

        if (atomic_compare_exchange_strong_explicit(word, &c, f->self, memory_order_acquire, memory_order_relaxed))
                return 0;
        /* Held for about a microsecond: a short spin usually finds it free. */
        for (int i = 0; i < 100; i++) {
                cpu_relax();
                c = 0;
                if (atomic_load_explicit(word, memory_order_relaxed) == 0 &&
                    atomic_compare_exchange_strong_explicit(word, &c, f->self, memory_order_acquire,
                                                            memory_order_relaxed))
                        return 0;
        }
        for (;;) {
                c = atomic_load_explicit(word, memory_order_relaxed);
                if (c == 0) {
                        /* Others may sleep: take it marked, so that our unlock wakes one. */
                        if (atomic_compare_exchange_strong_explicit(word, &c, f->self | FP_LOCK_WAITERS,
                                                                    memory_order_acquire, memory_order_relaxed))
                                return 0;
                        continue;
                }
                if (!(c & FP_LOCK_WAITERS) &&
                    !atomic_compare_exchange_strong_explicit(word, &c, c | FP_LOCK_WAITERS, memory_order_relaxed,
                                                             memory_order_relaxed))
                        continue;
                if (futex_wait(word, c | FP_LOCK_WAITERS, slice_ms) < 0 && errno == ETIMEDOUT)
                        return -ETIMEDOUT;
        }
}

void fp_unlock(Fp *f) {
        _Atomic uint32_t *word = &fp_head(f)->lock.word;

        if (atomic_exchange_explicit(word, 0, memory_order_release) & FP_LOCK_WAITERS)
                futex_wake(word, 1);
}

int fp_steal(Fp *f, uint32_t owner) {
        _Atomic uint32_t *word = &fp_head(f)->lock.word;
        uint32_t c = atomic_load_explicit(word, memory_order_acquire);

        /* Keep the sleepers' mark: the unlock after the repair wakes them. */
        if ((c & FP_LOCK_OWNER) != owner || owner == 0 ||
            !atomic_compare_exchange_strong_explicit(word, &c, f->self | FP_LOCK_WAITERS, memory_order_acquire,
                                                     memory_order_relaxed))
                return -ENOLCK;
        return fp_undo(f);
}

/* --- logged stores ------------------------------------------------------------------- */

/*
 * Store @width bytes of @v at @field, after logging the old value. The log entry is
 * complete before it is counted, and counted before the store: a process killed at any
 * instruction has made a prefix of its stores (precise interrupts), so the count never
 * covers an entry half written, and every store made is covered. Only the compiler
 * could reorder them, hence the signal fences; live processes order through the lock.
 */
static inline bool log_old(Fp *f, const void *field, unsigned width, uint64_t old) {
        FpUndoLog *u = &fp_head(f)->undo;
        uint32_t n = u->n;

        if (f->dead || f->err)
                return false;
        if (n >= FP_UNDO_CAP) {
                f->err = FP_ECORRUPT;
                return false;
        }
        u->e[n] = (FpUndo){ .off = (uint32_t)((const uint8_t *)field - f->mem), .width = width, .old = old };
        atomic_signal_fence(memory_order_seq_cst);
        u->n = n + 1;
        atomic_signal_fence(memory_order_seq_cst);
        return true;
}

static inline void stored(Fp *f) {
        if (f->die_after && --f->die_after == 0)
                f->dead = true;
        if (f->stored)
                f->stored(f);
}

/* The fields are naturally aligned members of the block's structs: plain loads and stores
 * (the block is built with -fno-strict-aliasing, and only the lock's holder writes them). */
static inline void store32(Fp *f, uint32_t *field, uint32_t v) {
        if (!log_old(f, field, 4, *field))
                return;
        *field = v;
        stored(f);
}

static inline void store64(Fp *f, uint64_t *field, uint64_t v) {
        if (!log_old(f, field, 8, *field))
                return;
        *field = v;
        stored(f);
}

#define ST32(f, field, v) store32((f), (uint32_t *)&(field), (uint32_t)(v))
#define ST64(f, field, v) store64((f), (uint64_t *)&(field), (uint64_t)(v))

/* The first word of a slot: state and flags. */
static void st_slot_word(Fp *f, FpSlot *s, uint8_t state, uint8_t flags) {
        FpSlot t;
        uint32_t w;

        memcpy(&t, s, 4);
        t.state = state;
        t.flags = flags;
        memcpy(&w, &t, 4);
        store32(f, (uint32_t *)(void *)s, w);
}

/* The second word of a member: flags, role, wkind. */
static void st_member_word(Fp *f, FpMember *m, uint16_t flags, uint8_t role, uint8_t wkind) {
        FpMember t;
        uint32_t w;

        memcpy(&t.flags, &m->flags, 4);
        t.flags = flags;
        t.role = role;
        t.wkind = wkind;
        memcpy(&w, &t.flags, 4);
        store32(f, (uint32_t *)(void *)&m->flags, w);
}

static int corrupt(Fp *f) {
        if (!f->err)
                f->err = FP_ECORRUPT;
        return FP_ECORRUPT;
}

static void step_begin(Fp *f) {
        f->err = 0;
}

/* End the step: commit it, or, after an error, undo it and return the error. */
static int step_end(Fp *f) {
        FpUndoLog *u = &fp_head(f)->undo;
        uint32_t n = u->n;
        int r = f->err;

        if (f->dead)
                return -EOWNERDEAD;
        if (r) {
                if (fp_undo(f) < 0)
                        return FP_ECORRUPT;
                f->err = 0;
                return r;
        }
        atomic_signal_fence(memory_order_seq_cst);
        u->n = 0;
        u->steps++;
        if (f->committed)
                f->committed(f, n);
        return 0;
}

int fp_undo(Fp *f) {
        FpUndoLog *u = &fp_head(f)->undo;
        uint32_t n = u->n;
        /* Only the pool state, the counters, the members, the slots and the order index
         * may be written by a step: never the header, the control words, the lock or the
         * log itself. */
        size_t lo = offsetof(FpBlockHead, pool);

        if (n > FP_UNDO_CAP)
                return FP_ECORRUPT;
        for (uint32_t i = 0; i < n; i++) {
                FpUndo e = u->e[i];
                if ((e.width != 4 && e.width != 8) || e.off < lo || e.off % e.width || e.off > f->g.size - e.width)
                        return FP_ECORRUPT;
        }
        for (uint32_t i = n; i-- > 0;) {
                FpUndo e = u->e[i];
                memcpy(f->mem + e.off, &e.old, e.width);
        }
        atomic_signal_fence(memory_order_seq_cst);
        u->n = 0;
        return 0;
}

/* --- lists of slots -------------------------------------------------------------------- */

static FpSlot *slot_or_corrupt(Fp *f, uint32_t i) {
        FpSlot *s = fp_slot(f, i);

        if (!s)
                corrupt(f);
        return s;
}

static void list_append(Fp *f, uint32_t *head, uint32_t *tail, FpSlot *s) {
        uint32_t idx = slot_index(f, s), t = *tail;
        FpSlot *ts;

        ST32(f, s->next, FP_NONE);
        ST32(f, s->prev, t);
        if (t == FP_NONE) {
                if (*head != FP_NONE)
                        return (void)corrupt(f);
                ST32(f, *head, idx);
        } else {
                ts = slot_or_corrupt(f, t);
                if (!ts || ts->next != FP_NONE)
                        return (void)corrupt(f);
                ST32(f, ts->next, idx);
        }
        ST32(f, *tail, idx);
}

static void list_prepend(Fp *f, uint32_t *head, uint32_t *tail, FpSlot *s) {
        uint32_t idx = slot_index(f, s), h = *head;
        FpSlot *hs;

        ST32(f, s->prev, FP_NONE);
        ST32(f, s->next, h);
        if (h == FP_NONE) {
                if (*tail != FP_NONE)
                        return (void)corrupt(f);
                ST32(f, *tail, idx);
        } else {
                hs = slot_or_corrupt(f, h);
                if (!hs || hs->prev != FP_NONE)
                        return (void)corrupt(f);
                ST32(f, hs->prev, idx);
        }
        ST32(f, *head, idx);
}

static void list_remove(Fp *f, uint32_t *head, uint32_t *tail, FpSlot *s) {
        uint32_t idx = slot_index(f, s), n = s->next, p = s->prev;
        FpSlot *x;

        if (p == FP_NONE) {
                if (*head != idx)
                        return (void)corrupt(f);
                ST32(f, *head, n);
        } else {
                x = slot_or_corrupt(f, p);
                if (!x || x->next != idx)
                        return (void)corrupt(f);
                ST32(f, x->next, n);
        }
        if (n == FP_NONE) {
                if (*tail != idx)
                        return (void)corrupt(f);
                ST32(f, *tail, p);
        } else {
                x = slot_or_corrupt(f, n);
                if (!x || x->prev != idx)
                        return (void)corrupt(f);
                ST32(f, x->prev, p);
        }
}

/* --- the ordered heap and its (stream, seq) index ------------------------------------- */

static uint32_t order_hash(const Fp *f, uint64_t stream, uint64_t seq) {
        uint64_t h = (seq ^ (stream * UINT64_C(0x9e3779b97f4a7c15))) * UINT64_C(0xff51afd7ed558ccd);
        return (uint32_t)(h >> 32) & (f->g.nbuckets - 1);
}

static bool key_less(const FpSlot *a, const FpSlot *b) {
        return a->stream < b->stream || (a->stream == b->stream && a->seq < b->seq);
}

/* Whether (stream, seq) is in the heap; a chain longer than the slots is corrupt. An
 * unordered pool has no index (no buckets: the hash would be past the block). */
static bool order_contains(Fp *f, uint64_t stream, uint64_t seq) {
        uint32_t i;

        if (!ordered(f))
                return false;
        i = buckets_at(f)[order_hash(f, stream, seq)];
        for (uint32_t steps = 0; i != FP_NONE; steps++) {
                FpSlot *s = fp_slot(f, i);
                if (!s || steps >= f->g.slots)
                        return corrupt(f), false;
                if (s->stream == stream && s->seq == seq)
                        return true;
                i = s->hash_next;
        }
        return false;
}

static void index_insert(Fp *f, FpSlot *s) {
        uint32_t *b = &buckets_at(f)[order_hash(f, s->stream, s->seq)];

        ST32(f, s->hash_next, *b);
        ST32(f, *b, slot_index(f, s));
}

static void index_remove(Fp *f, FpSlot *s) {
        uint32_t idx = slot_index(f, s), *link = &buckets_at(f)[order_hash(f, s->stream, s->seq)];

        for (uint32_t steps = 0; *link != idx; steps++) {
                FpSlot *x = fp_slot(f, *link);
                if (!x || steps >= f->g.slots)
                        return (void)corrupt(f);
                link = &x->hash_next;
        }
        ST32(f, *link, s->hash_next);
}

/* The heap entry at @i, checked. */
static FpSlot *heap_slot(Fp *f, uint32_t i) {
        FpSlot *s = fp_slot(f, heap_at(f)[i]);

        if (!s || s->state != FP_READY || !(s->flags & FP_S_IN_HEAP))
                corrupt(f);
        return s;
}

static void heap_set(Fp *f, uint32_t i, FpSlot *s) {
        ST32(f, heap_at(f)[i], slot_index(f, s));
        ST32(f, s->heap_pos, i);
}

static void heap_up(Fp *f, uint32_t i, FpSlot *s) {
        while (i > 0 && !f->err) {
                uint32_t parent = (i - 1) / 2;
                FpSlot *ps = heap_slot(f, parent);
                if (!ps || !key_less(s, ps))
                        break;
                heap_set(f, i, ps);
                i = parent;
        }
        heap_set(f, i, s);
}

static void heap_down(Fp *f, uint32_t i, FpSlot *s, uint32_t len) {
        while (!f->err) {
                uint32_t child = 2 * i + 1;
                FpSlot *c, *c2;
                if (child >= len)
                        break;
                c = heap_slot(f, child);
                if (child + 1 < len && (c2 = heap_slot(f, child + 1)) && c && key_less(c2, c)) {
                        c = c2;
                        child++;
                }
                if (!c || !key_less(c, s))
                        break;
                heap_set(f, i, c);
                i = child;
        }
        heap_set(f, i, s);
}

static FpSlot *order_peek(Fp *f) {
        uint32_t len = P(f)->order_len;

        if (len == 0)
                return NULL;
        if (len > f->g.slots)
                return corrupt(f), NULL;
        return heap_slot(f, 0);
}

static void order_push(Fp *f, FpSlot *s) {
        uint32_t len = P(f)->order_len;

        if (len >= f->g.slots)
                return (void)corrupt(f);
        index_insert(f, s);
        ST32(f, P(f)->order_len, len + 1);
        heap_up(f, len, s);
}

/* Remove the heap's top, @s. */
static void order_pop(Fp *f, FpSlot *s) {
        uint32_t len = P(f)->order_len;
        FpSlot *last;

        if (len == 0 || len > f->g.slots || s->heap_pos != 0)
                return (void)corrupt(f);
        index_remove(f, s);
        ST32(f, P(f)->order_len, len - 1);
        ST32(f, s->heap_pos, FP_NONE);
        if (len - 1 > 0) {
                last = heap_slot(f, len - 1);
                if (last)
                        heap_down(f, 0, last, len - 1);
        }
}

/* --- members --------------------------------------------------------------------------- */

/* Member @id, live; else NULL and corrupt (the caller's own id must be live). */
static FpMember *live_member(Fp *f, uint32_t id) {
        FpMember *m = fp_member(f, id);

        if (!m || !(m->flags & FP_M_LIVE) || m->role >= _ROLE_MAX)
                return corrupt(f), NULL;
        return m;
}

bool fp_member_ended(const Fp *f, const FpMember *m) {
        return m->role == ROLE_PRODUCER && m->stream == P(f)->stream + 1;
}

/* The stream @m publishes into: the next one once it has sent end. */
static uint64_t publish_stream(const Fp *f, const FpMember *m) {
        return fp_member_ended(f, m) ? P(f)->stream + 1 : P(f)->stream;
}

/* --- slot transitions (each inside a step) --------------------------------------------- */

static void set_state(Fp *f, FpSlot *s, FpSlotState state, uint8_t flags) {
        FpPool *p = P(f);
        uint8_t old = s->state;

        if (old >= _FP_STATE_MAX || p->count[old] == 0 || p->count[state] >= f->g.slots)
                return (void)corrupt(f);
        ST32(f, p->count[old], p->count[old] - 1);
        ST32(f, p->count[state], p->count[state] + 1);
        st_slot_word(f, s, (uint8_t)state, flags);
        ST64(f, s->since_usec, f->now);
}

/* A slot leaves the writing state: it no longer counts as maybe writing any seq. */
static void end_writing(Fp *f, FpSlot *s) {
        if (s->state == FP_WRITING && ordered(f) && s->declared < 0) {
                if (P(f)->n_undeclared == 0)
                        return (void)corrupt(f);
                ST32(f, P(f)->n_undeclared, P(f)->n_undeclared - 1);
        }
        if (s->declared != -1)
                ST64(f, s->declared, (uint64_t)-1);
}

/* Take @s off its holder's held list. */
static void unhold(Fp *f, FpSlot *s) {
        FpMember *m = fp_member(f, s->holder);

        if (!m || m->n_held == 0)
                return (void)corrupt(f);
        list_remove(f, &m->held_head, &m->held_tail, s);
        ST32(f, m->n_held, m->n_held - 1);
        ST32(f, s->holder, 0);
}

static void to_free(Fp *f, FpSlot *s) {
        end_writing(f, s);
        unhold(f, s);
        set_state(f, s, FP_FREE, 0);
        /* Last freed, first reused: its pages are the likeliest to be warm. */
        ST32(f, s->prev, FP_NONE);
        ST32(f, s->next, P(f)->free_head);
        ST32(f, P(f)->free_head, slot_index(f, s));
}

static void to_holder(Fp *f, FpSlot *s, FpMember *m, FpSlotState state) {
        ST32(f, s->holder, member_id(f, m));
        if (m->n_held >= f->g.slots)
                return (void)corrupt(f);
        ST32(f, m->n_held, m->n_held + 1);
        /* A batch being read keeps the mark of where its meta is; a slot to write has none. */
        set_state(f, s, state, state == FP_READING ? s->flags & FP_S_META_FLAGS : 0);
        list_append(f, &m->held_head, &m->held_tail, s);
}

/* A batch being read goes back, ahead of everything ready, for the next consumer. */
static void requeue(Fp *f, FpSlot *s) {
        unhold(f, s);
        set_state(f, s, FP_READY, s->flags & FP_S_META_FLAGS);
        list_prepend(f, &P(f)->ready_head, &P(f)->ready_tail, s);
}

/* The next batch a consumer of @stream may take, or NULL. */
static FpSlot *next_deliverable(Fp *f, uint64_t stream) {
        FpPool *p = P(f);
        FpSlot *s = NULL;

        if (p->ready_head != FP_NONE) {
                s = slot_or_corrupt(f, p->ready_head);
                if (s && s->state != FP_READY)
                        return corrupt(f), NULL;
                if (s && s->stream <= stream)
                        return s;
        }
        if (!ordered(f))
                return NULL;
        s = order_peek(f);
        if (!s || s->stream > stream)
                return NULL;
        /* An ended stream is drained in seq order over its gaps (a producer may have died
         * writing one seq); the current one waits for exactly the next seq. */
        if (s->stream < p->stream || s->seq == p->next_seq)
                return s;
        return NULL;
}

/* --- streams --------------------------------------------------------------------------- */

static int check_end(Fp *f) {
        FpPool *p = P(f);

        if (!p->end_seen || p->n_ended < p->n_producers)
                return 0;
        step_begin(f);
        ST64(f, p->stream, p->stream + 1);
        ST64(f, p->next_seq, 0);
        ST32(f, p->end_seen, 0);
        ST32(f, p->n_ended, 0);
        ST64(f, ST(f)->streams_ended, ST(f)->streams_ended + 1);
        /* The early batches are now of the current stream: behind what is ready. */
        if (p->early_head != FP_NONE) {
                FpSlot *eh = slot_or_corrupt(f, p->early_head);
                if (p->ready_tail == FP_NONE) {
                        ST32(f, p->ready_head, p->early_head);
                } else {
                        FpSlot *rt = slot_or_corrupt(f, p->ready_tail);
                        if (rt && eh) {
                                ST32(f, rt->next, p->early_head);
                                ST32(f, eh->prev, p->ready_tail);
                        }
                }
                ST32(f, p->ready_tail, p->early_tail);
                ST32(f, p->early_head, FP_NONE);
                ST32(f, p->early_tail, FP_NONE);
        }
        return step_end(f);
}

/* --- waiters --------------------------------------------------------------------------- */

static void wq_remove(Fp *f, FpMember *m) {
        FpPool *p = P(f);
        uint32_t k = m->wkind, id = member_id(f, m), n = m->wnext, pv = m->wprev;
        FpMember *x;

        if (k > 1)
                return (void)corrupt(f);
        if (pv == 0) {
                if (p->wq_head[k] != id)
                        return (void)corrupt(f);
                ST32(f, p->wq_head[k], n);
        } else {
                x = fp_member(f, pv);
                if (!x || x->wnext != id)
                        return (void)corrupt(f);
                ST32(f, x->wnext, n);
        }
        if (n == 0) {
                if (p->wq_tail[k] != id)
                        return (void)corrupt(f);
                ST32(f, p->wq_tail[k], pv);
        } else {
                x = fp_member(f, n);
                if (!x || x->wprev != id)
                        return (void)corrupt(f);
                ST32(f, x->wprev, pv);
        }
}

/* End @m's wait, adding its length to the totals (inside a step). */
static void unwait(Fp *f, FpMember *m) {
        FpPool *p = P(f);
        uint32_t k = m->wkind;
        uint64_t since = m->since_usec;

        if (m->wmax == 0)
                return;
        if (k > 1 || p->n_waiters[k] == 0)
                return (void)corrupt(f);
        wq_remove(f, m);
        ST64(f, ST(f)->wait_usec[k], ST(f)->wait_usec[k] + (f->now - since));
        ST32(f, p->n_waiters[k], p->n_waiters[k] - 1);
        ST64(f, p->waiting_since[k], p->waiting_since[k] - since);
        ST32(f, m->wmax, 0);
}

int fp_unwait(Fp *f, uint32_t id) {
        FpMember *m;

        step_begin(f);
        m = live_member(f, id);
        if (m)
                unwait(f, m);
        return step_end(f);
}

int fp_wait(Fp *f, uint32_t id, FpWaitKind kind, uint32_t max, int64_t seq, bool proxy, uint32_t *wake_v) {
        FpPool *p = P(f);
        FpMember *m, *t;
        int r;

        step_begin(f);
        m = live_member(f, id);
        if (m && m->wmax != 0)
                corrupt(f);
        /* A wait no take of its member could answer would stop its queue for everyone
         * behind it, first come first served. */
        if (m && !f->err && (kind == FP_WAIT_ACQUIRE ? m->role != ROLE_PRODUCER : m->role != ROLE_CONSUMER))
                return -EPERM;
        if (m && !f->err) {
                uint32_t tail = p->wq_tail[kind];
                st_member_word(f, m, (uint16_t)((m->flags & ~FP_M_PROXY) | (proxy ? FP_M_PROXY : 0)), m->role,
                               (uint8_t)kind);
                ST32(f, m->wmax, max ? (max > FP_MANY_MAX ? FP_MANY_MAX : max) : 1);
                ST64(f, m->wseq, (uint64_t)seq);
                ST64(f, m->since_usec, f->now);
                ST32(f, m->wheld, m->n_held);
                ST32(f, m->served, 0);
                ST32(f, m->wnext, 0);
                ST32(f, m->wprev, tail);
                if (tail == 0) {
                        if (p->wq_head[kind] != 0)
                                corrupt(f);
                        ST32(f, p->wq_head[kind], id);
                } else if (!(t = fp_member(f, tail)) || t->wnext != 0)
                        corrupt(f);
                else
                        ST32(f, t->wnext, id);
                ST32(f, p->wq_tail[kind], id);
                ST32(f, p->n_waiters[kind], p->n_waiters[kind] + 1);
                ST64(f, p->waiting_since[kind], p->waiting_since[kind] + f->now);
        }
        r = step_end(f);
        /* The wake word is not the step's: only its counter matters, and a waker moves it
         * after its own commit (the sleep bit is cleared here, under the lock). */
        if (r == 0 && wake_v)
                *wake_v = atomic_fetch_and_explicit(&m->wake, ~1u, memory_order_relaxed) & ~1u;
        return r;
}

int fp_wake_wait(Fp *f, uint32_t id, uint32_t v, int slice_ms, unsigned *yields) {
        FpMember *m = fp_member(f, id);
        uint32_t c = v;
        unsigned budget = *yields > FP_WAIT_YIELDS_MAX ? FP_WAIT_YIELDS_MAX : *yields;

        if (!m)
                return 0;
        /* A waker that comes first moves the counter: then the sleep bit is never set. */
        *yields = 0;
        for (int i = 0; i < 100; i++) {
                if (atomic_load_explicit(&m->wake, memory_order_acquire) != v)
                        return 0;
                cpu_relax();
        }
        /*
         * Then give the CPU away a while before sleeping. A sleeper costs its waker a system
         * call, and where processes outnumber cores the kernel tends to wake it on its waker's
         * CPU and preempt the waker there (a producer woken by each release of its consumer's
         * takes half of the consumer's CPU: bench/preemption.py's trials at 64 B ran at
         * half speed in 6 of 8). A waiter that yields stays runnable, so its waker
         * makes no call, and it hands its CPU to whoever shares it. But a waiter that yields
         * also keeps its CPU from looking idle, so the kernel does not move a busy process
         * there: the caller gives a budget that follows how its waits end (fast.c).
         */
        for (unsigned i = 0; i < budget; i++) {
                if (atomic_load_explicit(&m->wake, memory_order_acquire) != v) {
                        *yields = i;
                        return 0;
                }
                sched_yield();
        }
        *yields = UINT_MAX;
        if (!atomic_compare_exchange_strong_explicit(&m->wake, &c, v | 1, memory_order_acquire, memory_order_acquire))
                return 0;
        if (futex_wait(&m->wake, v | 1, slice_ms) < 0 && errno == ETIMEDOUT)
                return -ETIMEDOUT;
        return 0;
}

void fp_wake(Fp *f, uint32_t id) {
        FpMember *m = fp_member(f, id);

        if (m && atomic_fetch_add_explicit(&m->wake, 2, memory_order_release) & 1)
                futex_wake(&m->wake, 1);
}

void fp_wake_all(Fp *f) {
        for (uint32_t id = 1; id <= f->g.member_cap; id++) {
                FpMember *m = fp_member(f, id);
                atomic_fetch_add_explicit(&m->wake, 2, memory_order_release);
                futex_wake(&m->wake, INT_MAX);
        }
        futex_wake(&fp_head(f)->lock.word, INT_MAX);
}

uint64_t fp_waited_usec(const Fp *f, FpWaitKind kind, uint64_t now) {
        const FpPool *p = P(f);

        /* Each wait going on has lasted now - since: n * now - the sum of their starts. */
        return ST(f)->wait_usec[kind] + p->n_waiters[kind] * now - p->waiting_since[kind];
}

static int dispatch(Fp *f);

/* --- operations ------------------------------------------------------------------------ */

/* The stream a new consumer reads first: the oldest ended stream with batches still
 * ready (it gets them, then that stream's end: nobody waits for an end that already
 * happened), else the current one. Ready batches wait in stream order. */
static uint64_t join_stream(Fp *f) {
        FpPool *p = P(f);
        FpSlot *s = p->ready_head != FP_NONE ? slot_or_corrupt(f, p->ready_head) : NULL;

        if (!s && ordered(f))
                s = order_peek(f);
        return s && s->stream < p->stream ? s->stream : p->stream;
}

int fp_join(Fp *f, uint32_t id, Role role) {
        FpPool *p = P(f);
        FpMember *m = fp_member(f, id);

        if (!m || (m->flags & FP_M_LIVE) || role >= _ROLE_MAX)
                return FP_ECORRUPT;
        step_begin(f);
        ST32(f, m->held_head, FP_NONE);
        ST32(f, m->held_tail, FP_NONE);
        ST32(f, m->n_held, 0);
        ST32(f, m->wnext, 0);
        ST32(f, m->wprev, 0);
        ST32(f, m->wmax, 0);
        ST32(f, m->served, 0);
        ST64(f, m->stream, role == ROLE_CONSUMER ? join_stream(f) : 0);
        st_member_word(f, m, FP_M_LIVE, (uint8_t)role, 0);
        ST32(f, p->n_members, p->n_members + 1);
        if (role == ROLE_PRODUCER)
                ST32(f, p->n_producers, p->n_producers + 1);
        else if (role == ROLE_CONSUMER)
                ST32(f, p->n_consumers, p->n_consumers + 1);
        return step_end(f);
}

int fp_leave(Fp *f, uint32_t id) {
        FpPool *p = P(f);
        FpMember *m;
        int r;

        r = fp_unwait(f, id);
        if (r < 0)
                return r;
        m = fp_member(f, id);
        /* One step per slot: the undo log stays bounded whatever it holds. */
        for (uint32_t steps = 0; m->held_head != FP_NONE; steps++) {
                FpSlot *s;
                step_begin(f);
                s = slot_or_corrupt(f, m->held_head);
                if (!s || steps >= f->g.slots || s->holder != id)
                        corrupt(f);
                else if (s->state == FP_READING && (f->g.flags & FP_REQUEUE_ON_DEATH))
                        requeue(f, s);
                else
                        to_free(f, s);
                r = step_end(f);
                if (r < 0)
                        return r;
        }
        step_begin(f);
        if (m->role == ROLE_PRODUCER) {
                if (p->n_producers == 0)
                        corrupt(f);
                ST32(f, p->n_producers, p->n_producers - 1);
                if (fp_member_ended(f, m)) {
                        if (p->n_ended == 0)
                                corrupt(f);
                        ST32(f, p->n_ended, p->n_ended - 1);
                }
        } else if (m->role == ROLE_CONSUMER) {
                if (p->n_consumers == 0)
                        corrupt(f);
                ST32(f, p->n_consumers, p->n_consumers - 1);
        }
        if (p->n_members == 0)
                corrupt(f);
        ST32(f, p->n_members, p->n_members - 1);
        st_member_word(f, m, 0, m->role, 0);
        r = step_end(f);
        if (r == 0)
                r = check_end(f);
        if (r == 0)
                r = dispatch(f);
        return r;
}

uint64_t fp_lowest_unpublished(Fp *f) {
        uint64_t seq = P(f)->next_seq;

        /* Bounded by the ready batches: each seq found is one of them. */
        for (uint32_t n = 0; n <= f->g.slots && order_contains(f, P(f)->stream, seq); n++)
                seq++;
        return seq;
}

/* Whether a slot is being written, or may be, for @seq of the current stream. */
static bool someone_writes(Fp *f, uint64_t seq) {
        if (P(f)->n_undeclared > 0)
                return true;
        /* Only when the last free slot of an ordered pool is asked for: O(slots) then. */
        for (uint32_t i = 0; i < f->g.slots; i++) {
                const FpSlot *s = fp_slot(f, i);
                const FpMember *h;
                if (s->state != FP_WRITING || s->declared != (int64_t)seq)
                        continue;
                h = fp_member(f, s->holder);
                if (h && !fp_member_ended(f, h))
                        return true;
        }
        return false;
}

/* Whether @m's acquire for @seq must leave the last free slot to the lowest missing seq. */
static bool acquire_held_back(Fp *f, const FpMember *m, int64_t seq) {
        uint64_t low;

        if (!ordered(f) || seq < 0 || P(f)->count[FP_FREE] != 1)
                return false;
        low = fp_lowest_unpublished(f);
        if (!fp_member_ended(f, m) && (uint64_t)seq == low)
                return false;
        return !someone_writes(f, low);
}

static int acquire_one(Fp *f, FpMember *m, int64_t seq, uint32_t *ret) {
        FpPool *p = P(f);
        uint32_t head = p->free_head;
        FpSlot *s;

        if (head == FP_NONE)
                return -EAGAIN;
        if (acquire_held_back(f, m, seq))
                return f->err ? f->err : -EBUSY;
        step_begin(f);
        s = slot_or_corrupt(f, head);
        if (s && s->state != FP_FREE)
                corrupt(f);
        if (s && !f->err) {
                ST32(f, p->free_head, s->next);
                to_holder(f, s, m, FP_WRITING);
                if (ordered(f)) {
                        ST64(f, s->declared, (uint64_t)seq);
                        if (seq < 0)
                                ST32(f, p->n_undeclared, p->n_undeclared + 1);
                }
                ST64(f, ST(f)->acquired, ST(f)->acquired + 1);
        }
        *ret = head;
        return step_end(f);
}

static int consume_ready(Fp *f, FpMember *m, uint32_t *ret) {
        FpPool *p = P(f);
        FpSlot *s;

        step_begin(f);
        s = next_deliverable(f, m->stream);
        if (!s)
                return f->err ? step_end(f) : -EAGAIN;
        if (f->local_metas && (s->flags & FP_S_META_OUTSIDE))
                return -EREMOTE;
        if (s->flags & FP_S_IN_HEAP) {
                order_pop(f, s);
                if (s->stream == p->stream)
                        ST64(f, p->next_seq, s->seq + 1);
        } else
                list_remove(f, &p->ready_head, &p->ready_tail, s);
        to_holder(f, s, m, FP_READING);
        ST64(f, ST(f)->consumed, ST(f)->consumed + 1);
        ST64(f, ST(f)->bytes_consumed, ST(f)->bytes_consumed + s->nbytes);
        *ret = slot_index(f, s);
        return step_end(f);
}

/* End @m's wait as served (inside a step): its slots are the ones it gained since the
 * wait began. */
static void end_serve(Fp *f, FpMember *m) {
        unwait(f, m);
        if (m->n_held < m->wheld)
                corrupt(f);
        ST32(f, m->served, m->n_held - m->wheld);
}

static int consume_one(Fp *f, FpMember *m, bool serve, uint32_t *ret) {
        int r = consume_ready(f, m, ret);

        if (r != -EAGAIN)
                return r;
        if (m->stream >= P(f)->stream)
                return -EAGAIN;
        step_begin(f);
        ST64(f, m->stream, m->stream + 1);
        /* Served to a waiter, the end of stream and the end of the wait are one step: were
         * they two, a death between them would leave the consumer waiting in the next
         * stream, its end of stream lost. */
        if (serve)
                end_serve(f, m);
        *ret = FP_NONE;
        return step_end(f);
}

static uint64_t cost(const Fp *f, uint32_t slot) {
        return (f->cost ? f->cost[slot] : 0) + f->cost_each;
}

/* Take for @m; @serve: for its wait, which an end of stream ends in the same step. */
static int take(Fp *f, FpMember *m, FpWaitKind kind, uint32_t max, int64_t seq, bool serve, uint32_t *v, size_t *n) {
        int r;
        uint64_t bytes;

        *n = 0;
        if (kind == FP_WAIT_ACQUIRE ? m->role != ROLE_PRODUCER : m->role != ROLE_CONSUMER)
                return -EPERM;
        if (max > FP_MANY_MAX)
                max = FP_MANY_MAX;
        r = kind == FP_WAIT_ACQUIRE ? acquire_one(f, m, seq, &v[0]) : consume_one(f, m, serve, &v[0]);
        if (r != 0)
                return r;
        if (v[0] == FP_NONE)
                return 0;        /* end of stream */
        *n = 1;
        if (kind == FP_WAIT_ACQUIRE) {
                while (*n < max && acquire_one(f, m, -1, &v[*n]) == 0)
                        (*n)++;
                return f->dead ? -EOWNERDEAD : 0;
        }
        bytes = cost(f, v[0]);
        while (*n < max && f->budget) {
                const FpSlot *next = next_deliverable(f, m->stream);
                if (!next || bytes + cost(f, slot_index(f, next)) > f->budget)
                        break;
                bytes += cost(f, slot_index(f, next));
                if (consume_ready(f, m, &v[*n]) != 0)
                        break;
                (*n)++;
        }
        while (*n < max && !f->budget && consume_ready(f, m, &v[*n]) == 0)
                (*n)++;
        return f->dead ? -EOWNERDEAD : 0;
}

int fp_take(Fp *f, uint32_t id, FpWaitKind kind, uint32_t max, int64_t seq, uint32_t *v, size_t *n) {
        FpMember *m = live_member(f, id);

        *n = 0;
        f->err = 0;
        if (!m)
                return FP_ECORRUPT;
        return take(f, m, kind, max ? max : 1, seq, false, v, n);
}

typedef struct Keyed {
        uint64_t key;
        uint32_t pos;
} Keyed;

static int cmp_keyed(const void *a, const void *b) {
        const Keyed *x = a, *y = b;

        if (x->key != y->key)
                return x->key < y->key ? -1 : 1;
        return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Mark in @dup the entries of @keys that repeat an earlier one (O(n log n), no stores). */
static void find_repeats(const uint64_t *keys, size_t n, bool *dup) {
        Keyed v[FP_MANY_MAX];

        memset(dup, 0, n);
        if (n < 2)
                return;
        for (size_t i = 0; i < n; i++)
                v[i] = (Keyed){ .key = keys[i], .pos = (uint32_t)i };
        qsort(v, n, sizeof(v[0]), cmp_keyed);
        for (size_t i = 1; i < n; i++)
                if (v[i].key == v[i - 1].key)
                        dup[v[i].pos] = true;
}

static int publish_check(Fp *f, FpMember *m, const FpPublish *e, bool repeated) {
        FpPool *p = P(f);
        uint64_t stream = publish_stream(f, m);
        const FpSlot *s = fp_slot(f, e->slot);

        if (!s || s->holder != member_id(f, m) || s->state != FP_WRITING || repeated)
                return -ENOENT;
        if (e->nbytes > f->g.slot_size)
                return -EINVAL;
        if (ordered(f)) {
                if (!e->has_seq)
                        return -EINVAL;
                if ((stream == p->stream && e->seq < p->next_seq) || order_contains(f, stream, e->seq))
                        return f->err ? f->err : -EINVAL;
                /* A broken index found on the way: the publish would link into it. */
                if (f->err)
                        return f->err;
        }
        return 0;
}

static void publish_apply(Fp *f, FpMember *m, const FpPublish *e) {
        FpPool *p = P(f);
        FpSlot *s = fp_slot(f, e->slot);
        uint64_t stream = publish_stream(f, m);

        end_writing(f, s);
        unhold(f, s);
        ST64(f, s->nbytes, e->nbytes);
        ST64(f, s->stream, stream);
        ST64(f, s->seq, ordered(f) || e->has_seq ? e->seq : ST(f)->published);
        uint8_t meta = (uint8_t)((e->meta_at_daemon ? FP_S_META_AT_DAEMON : 0) | (e->meta_outside ? FP_S_META_OUTSIDE : 0));

        if (ordered(f)) {
                set_state(f, s, FP_READY, FP_S_IN_HEAP | meta);
                order_push(f, s);
        } else {
                set_state(f, s, FP_READY, meta);
                if (stream == p->stream)
                        list_append(f, &p->ready_head, &p->ready_tail, s);
                else
                        list_append(f, &p->early_head, &p->early_tail, s);
        }
        ST64(f, ST(f)->published, ST(f)->published + 1);
        ST64(f, ST(f)->bytes_published, ST(f)->bytes_published + e->nbytes);
}

int fp_publish_check(Fp *f, uint32_t id, const FpPublish *v, size_t n, size_t *bad) {
        FpMember *m = live_member(f, id);
        uint64_t keys[FP_MANY_MAX];
        bool dup[FP_MANY_MAX];
        int r;

        *bad = 0;
        f->err = 0;
        if (!m)
                return FP_ECORRUPT;
        if (m->role != ROLE_PRODUCER)
                return -EPERM;
        if (n > FP_MANY_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                keys[i] = v[i].slot;
        find_repeats(keys, n, dup);
        for (size_t i = 0; i < n; i++) {
                r = publish_check(f, m, &v[i], dup[i]);
                if (r != 0) {
                        *bad = i;
                        return r;
                }
        }
        if (ordered(f)) {
                for (size_t i = 0; i < n; i++)
                        keys[i] = v[i].seq;
                find_repeats(keys, n, dup);
                for (size_t i = 0; i < n; i++)
                        if (dup[i]) {
                                *bad = i;
                                return -EINVAL;
                        }
        }
        return 0;
}

int fp_publish(Fp *f, uint32_t id, const FpPublish *v, size_t n, size_t *bad) {
        int r = fp_publish_check(f, id, v, n, bad);

        return r != 0 ? r : fp_publish_checked(f, id, v, n);
}

int fp_publish_checked(Fp *f, uint32_t id, const FpPublish *v, size_t n) {
        FpMember *m = fp_member(f, id);
        int r;

        /* One step per batch: a member that dies half way has published the first ones. */
        for (size_t i = 0; i < n; i++) {
                step_begin(f);
                publish_apply(f, m, &v[i]);
                r = step_end(f);
                if (r < 0)
                        return r;
        }
        return dispatch(f);
}

int fp_release(Fp *f, uint32_t id, const uint32_t *v, size_t n, bool requeue_them, size_t *bad) {
        FpMember *m = live_member(f, id);
        uint64_t keys[FP_MANY_MAX];
        bool dup[FP_MANY_MAX];
        int r;

        *bad = 0;
        f->err = 0;
        if (!m)
                return FP_ECORRUPT;
        if (n > FP_MANY_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                keys[i] = v[i];
        find_repeats(keys, n, dup);
        for (size_t i = 0; i < n; i++) {
                const FpSlot *s = fp_slot(f, v[i]);
                *bad = i;
                if (!s || s->holder != id || dup[i] || (s->state != FP_WRITING && s->state != FP_READING))
                        return -ENOENT;
                if (requeue_them && s->state != FP_READING)
                        return -EINVAL;
        }
        *bad = 0;
        /* Requeued slots go to the front one by one: the last listed first, so that the
         * first listed ends up first in line. */
        for (size_t i = n; i-- > 0;) {
                FpSlot *s = fp_slot(f, v[i]);
                step_begin(f);
                if (requeue_them)
                        requeue(f, s);
                else
                        to_free(f, s);
                r = step_end(f);
                if (r < 0)
                        return r;
        }
        return dispatch(f);
}

int fp_end(Fp *f, uint32_t id) {
        FpPool *p = P(f);
        FpMember *m = live_member(f, id);
        int r;

        f->err = 0;
        if (!m)
                return FP_ECORRUPT;
        if (m->role != ROLE_PRODUCER)
                return -EPERM;
        step_begin(f);
        if (!fp_member_ended(f, m)) {
                ST64(f, m->stream, p->stream + 1);
                ST32(f, p->n_ended, p->n_ended + 1);
        }
        ST32(f, p->end_seen, 1);
        r = step_end(f);
        if (r == 0)
                r = check_end(f);
        if (r == 0)
                r = dispatch(f);
        return r;
}

/* --- serving waiters ------------------------------------------------------------------- */

/* Answer the waiters of @kind, first come first served, while they can be answered. A
 * waiter held back for a lower seq lets the ones behind it try: one of them may be the
 * producer that fills the gap. */
static int dispatch_queue(Fp *f, FpWaitKind kind) {
        uint32_t id = P(f)->wq_head[kind], v[FP_MANY_MAX];
        size_t n;

        for (uint32_t steps = 0; id != 0; steps++) {
                FpMember *m = fp_member(f, id);
                uint32_t next;
                int r;

                if (!m || steps > f->g.member_cap || !(m->flags & FP_M_LIVE) || m->wmax == 0 || m->wkind != kind)
                        return FP_ECORRUPT;
                next = m->wnext;
                if (m->n_held > m->wheld) {
                        /* A serve cut short by a death: its first takes were committed, the
                         * end of its wait was not. It ends with what it got; taking again
                         * could hand over more than its max, or an end of stream beside
                         * slots of the stream it ends. */
                        n = m->n_held - m->wheld;
                } else {
                        r = take(f, m, kind, m->wmax, m->wseq, true, v, &n);
                        if (r == -EBUSY) {
                                id = next;
                                continue;
                        }
                        if (r == -EAGAIN || r == -EPERM)
                                break;
                        if (r != 0)
                                return r;
                }
                /* An end of stream ended the wait in its own step. */
                if (n > 0) {
                        step_begin(f);
                        end_serve(f, m);
                        r = step_end(f);
                        if (r != 0)
                                return r;
                }
                if (f->served)
                        f->served(f, id, f->userdata);
                id = next;
        }
        return 0;
}

static int dispatch(Fp *f) {
        int r = dispatch_queue(f, FP_WAIT_ACQUIRE);

        return r == 0 ? dispatch_queue(f, FP_WAIT_CONSUME) : r;
}

size_t fp_served_slots(Fp *f, uint32_t id, uint32_t *v) {
        FpMember *m = fp_member(f, id);
        uint32_t n, i;
        size_t k;

        if (!m)
                return 0;
        n = m->served;
        if (n > FP_MANY_MAX || n > m->n_held)
                return 0;
        /* The last n of its held list, oldest first. */
        i = m->held_tail;
        for (k = n; k > 0; k--) {
                FpSlot *s = fp_slot(f, i);
                if (!s)
                        return 0;
                v[k - 1] = i;
                i = s->prev;
        }
        return n;
}

/* --- the invariants ---------------------------------------------------------------------- */

#define FAIL(msg) do { *why = (msg); return FP_ECORRUPT; } while (0)

/* Walk the list at @head to @tail (doubly linked; @tail FP_NONE: singly), marking its
 * slots in @seen; count them into *n. Its slots are in one of @states (bits). */
static int walk(Fp *f, uint32_t head, uint32_t tail, unsigned states, uint8_t *seen, uint32_t *n,
                const char **why) {
        uint32_t prev = FP_NONE, i = head;

        *n = 0;
        while (i != FP_NONE) {
                const FpSlot *s = fp_slot(f, i);
                if (!s)
                        FAIL("a list holds an index out of range");
                if (seen[i])
                        FAIL("a slot is on two lists, or a list has a cycle");
                if (!(states & (1u << s->state)) || (s->flags & FP_S_IN_HEAP))
                        FAIL("a list holds a slot in the wrong state");
                seen[i] = 1;
                if (tail != FP_NONE && s->prev != prev)
                        FAIL("a list's prev link is wrong");
                prev = i;
                i = s->next;
                (*n)++;
        }
        if (tail != FP_NONE && prev != tail)
                FAIL("a list's tail is wrong");
        return 0;
}

int fp_check(Fp *f, const char **why) {
        const FpPool *p = P(f);
        uint32_t count[_FP_STATE_MAX] = { 0 }, n, total = 0, undeclared = 0, members = 0, producers = 0;
        uint32_t consumers = 0, ended = 0, waiters[2] = { 0 };
        uint8_t *seen;
        int r = 0;
        const char *dummy;

        if (!why)
                why = &dummy;
        *why = NULL;
        if (fp_head(f)->undo.n != 0)
                FAIL("the undo log is not empty");
        seen = calloc(f->g.slots, 1);
        if (!seen)
                return -ENOMEM;
#define CHECK(cond, msg) do { if (!(cond)) { *why = (msg); r = FP_ECORRUPT; goto out; } } while (0)
        for (uint32_t i = 0; i < f->g.slots; i++) {
                const FpSlot *s = fp_slot(f, i);
                const FpMember *h = fp_member(f, s->holder);
                CHECK(s->state < _FP_STATE_MAX, "a slot's state is out of range");
                count[s->state]++;
                if (s->state == FP_WRITING || s->state == FP_READING) {
                        CHECK(h && (h->flags & FP_M_LIVE), "a held slot's holder is not a live member");
                        CHECK(h->role == (s->state == FP_WRITING ? ROLE_PRODUCER : ROLE_CONSUMER),
                              "a held slot's holder has the wrong role");
                } else
                        CHECK(s->holder == 0, "a slot nobody holds names a holder");
                if (s->state == FP_WRITING && ordered(f) && s->declared < 0)
                        undeclared++;
                CHECK(s->state != FP_READY || ordered(f) || !(s->flags & FP_S_IN_HEAP), "a slot is in a heap");
        }
        for (int k = 0; k < _FP_STATE_MAX; k++)
                CHECK(count[k] == p->count[k], "the counts by state are wrong");
        CHECK(!ordered(f) || undeclared == p->n_undeclared, "n_undeclared is wrong");
        CHECK(walk(f, p->free_head, FP_NONE, 1u << FP_FREE, seen, &n, why) == 0, *why);
        CHECK(n == count[FP_FREE], "the free list does not hold every free slot");
        total += n;
        CHECK(walk(f, p->ready_head, p->ready_tail, 1u << FP_READY, seen, &n, why) == 0, *why);
        total += n;
        for (uint32_t i = p->ready_head; i != FP_NONE; i = fp_slot(f, i)->next)
                CHECK(fp_slot(f, i)->stream <= p->stream, "a ready batch is of a stream not yet begun");
        CHECK(walk(f, p->early_head, p->early_tail, 1u << FP_READY, seen, &n, why) == 0, *why);
        total += n;
        for (uint32_t i = p->early_head; i != FP_NONE; i = fp_slot(f, i)->next)
                CHECK(fp_slot(f, i)->stream == p->stream + 1, "an early batch is not of the next stream");
        if (ordered(f)) {
                CHECK(p->order_len <= f->g.slots, "the heap is longer than the pool");
                for (uint32_t i = 0; i < p->order_len; i++) {
                        uint32_t x = heap_at(f)[i];
                        const FpSlot *s = fp_slot(f, x);
                        CHECK(s && !seen[x], "a heap entry is out of range or on a list");
                        seen[x] = 1;
                        CHECK(s->state == FP_READY && (s->flags & FP_S_IN_HEAP) && s->heap_pos == i,
                              "a heap entry is not a ready slot in its place");
                        CHECK(i == 0 || !key_less(s, fp_slot(f, heap_at(f)[(i - 1) / 2])), "the heap is out of order");
                        CHECK(order_contains(f, s->stream, s->seq) && !f->err, "a heap entry is not in the index");
                }
                total += p->order_len;
        }
        for (uint32_t id = 1; id <= f->g.member_cap; id++) {
                const FpMember *m = fp_member(f, id);
                if (!(m->flags & FP_M_LIVE))
                        continue;
                CHECK(m->role < _ROLE_MAX, "a member's role is out of range");
                members++;
                producers += m->role == ROLE_PRODUCER;
                consumers += m->role == ROLE_CONSUMER;
                ended += fp_member_ended(f, m);
                CHECK(walk(f, m->held_head, m->held_tail, (1u << FP_WRITING) | (1u << FP_READING), seen, &n, why) == 0,
                      *why);
                CHECK(n == m->n_held, "a member's n_held is wrong");
                for (uint32_t i = m->held_head; i != FP_NONE; i = fp_slot(f, i)->next)
                        CHECK(fp_slot(f, i)->holder == id, "a held list holds another's slot");
                total += n;
                if (m->wmax) {
                        CHECK(m->wkind <= 1, "a waiter's kind is out of range");
                        waiters[m->wkind]++;
                }
        }
        CHECK(total == f->g.slots, "a slot is on no list");
        for (uint32_t i = 0; i < f->g.slots; i++)
                CHECK(fp_slot(f, i)->state != FP_READY || seen[i], "a ready slot is not queued");
        CHECK(members == p->n_members && producers == p->n_producers && consumers == p->n_consumers,
              "the member counts are wrong");
        CHECK(ended == p->n_ended, "n_ended is wrong");
        for (int k = 0; k < 2; k++) {
                uint32_t id = p->wq_head[k], prev = 0;
                for (n = 0; id != 0; n++) {
                        const FpMember *m = fp_member(f, id);
                        CHECK(n < f->g.member_cap && m && (m->flags & FP_M_LIVE) && m->wmax && m->wkind == k,
                              "a waiter queue holds a member that is not waiting there");
                        CHECK(m->wprev == prev, "a waiter queue's prev link is wrong");
                        prev = id;
                        id = m->wnext;
                }
                CHECK(prev == p->wq_tail[k], "a waiter queue's tail is wrong");
                CHECK(n == waiters[k] && n == p->n_waiters[k], "the waiter counts are wrong");
        }
#undef CHECK
out:
        free(seen);
        f->err = 0;
        return r;
}
