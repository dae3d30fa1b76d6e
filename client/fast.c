/*
 * fast.c: the fast path: a pool's operations run by the client itself on the pool's
 * control block (docs/fastpath.md), without a round trip to the daemon.
 *
 * The daemon hands the block to a member that may write the pool, with the member's id
 * (an open or create reply's "fast" object). Acquire, publish, consume, release and end
 * then run common/fastpool.c under the block's lock, exactly the code the daemon runs for
 * requests on a socket; a wait sleeps on the member's wake word, and whoever serves it
 * wakes it. What the block cannot do goes through the socket as before: asynchronous
 * requests (and everything after one until its reply), a meta too large for the block, a
 * batch whose meta only the daemon has, a pool the daemon dropped or stopped serving.
 *
 * The daemon is the block's repairer: when a member dies, even inside the lock, it takes
 * the lock over, undoes the dead member's step in progress and reclaims its slots, as it
 * does for a connection that closes. It learns of the death from the socket, and we learn
 * of its own the same way: waits sleep in slices and look at the socket in between.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"
#include "sb-json-text.h"

/* How long a wait sleeps before it looks at the socket: how late we may learn that the
 * daemon died while we waited. */
#define FAST_SLICE_MS 50
/* How often operations that do not wait look at the socket (a poll() each time would cost
 * as much as the operation): how long members may go on among themselves after the
 * daemon died. */
#define FAST_CHECK_USEC 10000

/* --- forks ------------------------------------------------------------------------------- */

/* A child of fork() inherits its parent's attachments and member ids, but it is not the
 * member: the daemon reclaims the member's slots when the parent's connection closes.
 * So a pool attached before the last fork goes through the socket in the child. */
static _Atomic uint64_t fork_gen = 1;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void) {
        fork_gen++;
}

static void fork_init(void) {
        (void)pthread_atfork(NULL, NULL, on_fork_child);
}

#ifdef SB_TEST_HOOKS
/* Test builds: SHMBROKER_TEST_DIE_AFTER_STORE=k kills the process (SIGKILL) right after the
 * k-th logged store of its operations on control blocks, wherever in a step that is. */
static uint64_t die_countdown;

static void die_after_store(Fp *f) {
        (void)f;
        if (die_countdown && --die_countdown == 0)
                raise(SIGKILL);
}

static void test_hooks(FastPool *fp) {
        const char *e = getenv("SHMBROKER_TEST_DIE_AFTER_STORE");

        if (e && !die_countdown)
                die_countdown = strtoull(e, NULL, 10);
        fp->fp.stored = die_after_store;
}
#else
static void test_hooks(FastPool *fp) {
        (void)fp;
}
#endif

bool sb_fast_wanted(void) {
        const char *e = getenv("SHMBROKER_FASTPATH");

        return !e || strcmp(e, "0") != 0;
}

/* --- attaching --------------------------------------------------------------------------- */

int sb_fast_attach(sb_pool *p, const WirePool *w) {
        FastPool *fp = &p->fast;
        FpGeom g;
        void *mem;

        *fp = (FastPool){ 0 };
        if (w->fast_shmid < 0 || !p->base || !sb_fast_wanted() || w->fast_version != FP_VERSION)
                return 0;
        (void)pthread_once(&fork_once, fork_init);
        /* The geometry is the daemon's word (its reply), never the block's: the block is
         * written by every member, and its header must only agree. */
        if (fp_geom(&g, w->slots, w->fast_member_cap, w->slot_size, w->stride,
                    (w->ordered ? FP_ORDERED : 0) | (w->requeue ? FP_REQUEUE_ON_DEATH : 0), w->fast_meta_inline) < 0 ||
            g.size != w->fast_size || w->fast_member == 0 || w->fast_member > g.member_cap)
                return 0;
        mem = shmat(w->fast_shmid, NULL, 0);
        if (mem == (void *)-1)  /* NOLINT(performance-no-int-to-ptr): shmat()'s error value */
                return 0;       /* the socket path still works */
        if (!fp_header_matches(mem, &g)) {
                (void)shmdt(mem);
                return 0;
        }
        fp->woken = calloc(g.member_cap, sizeof(*fp->woken));
        if (!fp->woken) {
                (void)shmdt(mem);
                return -ENOMEM;
        }
        fp->fp = (Fp){ .mem = mem, .g = g, .self = w->fast_member, .local_metas = true };
        fp->member = w->fast_member;
        fp->fork_gen = fork_gen;
        test_hooks(fp);
        return 0;
}

void sb_fast_detach(sb_pool *p) {
        if (p->fast.fp.mem)
                (void)shmdt(p->fast.fp.mem);
        free(p->fast.woken);
        p->fast = (FastPool){ 0 };
}

/* Whether an operation on @p may run on the block now. */
static bool fast_usable(const sb_pool *p) {
        const FastPool *fp = &p->fast;

        return fp->fp.mem && fp->fork_gen == fork_gen && !p->client->head && !p->client->broken &&
                atomic_load_explicit(&fp_head(&fp->fp)->control.mode, memory_order_acquire) == FP_MODE_FAST;
}

_public_ bool sb_pool_fast(const sb_pool *p) {
        return fast_usable(p);
}

/* --- the lock, and the daemon's health ------------------------------------------------------ */

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Whether the daemon is still there: its end of the socket is not closed. The daemon
 * sends nothing we did not ask for, so readable means closed. */
static int daemon_alive(sb_client *c) {
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN | POLLRDHUP };
        char byte;

        if (poll(&pfd, 1, 0) <= 0)
                return 0;
        if ((pfd.revents & (POLLHUP | POLLERR | POLLRDHUP)) ||
            recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
                c->broken = -ECONNRESET;
                return -ECONNRESET;
        }
        return 0;
}

static void served(Fp *f, uint32_t id, void *userdata) {
        FastPool *fp = userdata;

        (void)f;
        if (fp->n_woken < fp->fp.g.member_cap)
                fp->woken[fp->n_woken++] = id;
}

/* Take the lock, looking at the daemon between slices. 0, -ECONNRESET, or SB_FAST_NO when
 * the pool no longer takes fast operations (go through the socket). */
static int fast_lock(sb_pool *p) {
        FastPool *fp = &p->fast;
        int r;

        while (fp_lock(&fp->fp, FAST_SLICE_MS) == -ETIMEDOUT) {
                r = daemon_alive(p->client);
                if (r < 0)
                        return r;
        }
        if (atomic_load_explicit(&fp_head(&fp->fp)->control.mode, memory_order_acquire) != FP_MODE_FAST) {
                fp_unlock(&fp->fp);
                return SB_FAST_NO;
        }
        fp->fp.now = now_usec();
        if (fp->fp.now - p->client->alive_checked > FAST_CHECK_USEC) {
                p->client->alive_checked = fp->fp.now;
                if ((r = daemon_alive(p->client)) < 0) {
                        fp_unlock(&fp->fp);
                        return r;
                }
        }
        fp->fp.served = served;
        fp->fp.userdata = fp;
        fp->n_woken = 0;
        return 0;
}

static void fast_unlock(sb_pool *p) {
        FastPool *fp = &p->fast;

        fp_unlock(&fp->fp);
        for (uint32_t i = 0; i < fp->n_woken; i++)
                fp_wake(&fp->fp, fp->woken[i]);
        fp->n_woken = 0;
}

/* --- outcomes ------------------------------------------------------------------------------- */

/* fastpool's outcome of an operation as the daemon would have said it. */
static int refuse(sb_pool *p, int r, const char *op, FpWaitKind kind) {
        sb_client *c = p->client;

        switch (r) {
        case -EPERM:
                return sb_conn_refuse(c, SB_CODE_WRONG_ROLE, "\"%s\" needs role %s; this connection said hello as %s",
                                      op, kind == FP_WAIT_ACQUIRE ? "producer" : "consumer",
                                      sb_role_name((Role)c->role));
        case -ENOENT:
                return sb_conn_refuse(c, SB_CODE_NOT_HOLDER, "a slot named is not held by this connection in pool "
                                      "\"%s\"", p->name);
        case -EINVAL:
                return sb_conn_refuse(c, SB_CODE_BAD_REQUEST, "\"%s\" of pool \"%s\" refused", op, p->name);
        case -ETIMEDOUT:
                return sb_conn_refuse(c, SB_CODE_TIMEOUT, kind == FP_WAIT_ACQUIRE ? "no slot is free" :
                                      "no batch is ready");
        case -EBUSY:
                return sb_conn_refuse(c, SB_CODE_TIMEOUT, "the last free slot is kept for seq %llu, the lowest not "
                                      "yet published", (unsigned long long)fp_lowest_unpublished(&p->fast.fp));
        case FP_ECORRUPT:
        case -EOWNERDEAD:
                return sb_conn_refuse(c, SB_CODE_INTERNAL, "the control block of pool \"%s\" is broken: a member of "
                                      "the pool wrote into it", p->name);
        default:
                return r;
        }
}

/* --- waiting ----------------------------------------------------------------------------------- */

/*
 * How many times a wait yields its CPU before it sleeps (fp_wake_wait()): as many as this
 * pool's waits of that kind have lately needed. A wait that saw its wake after n yields
 * leaves room for 2n + 8; one that had to sleep halves the budget, down to a few. So a
 * producer and a consumer that hand batches over every few microseconds never sleep (a
 * sleeper costs its waker a system call, and often the waker's CPU), while one whose waits
 * are long (a trainer waiting on slower workers) soon sleeps at once: its yields would only
 * hide from the kernel that its CPU is free for a busy process.
 */
#define FAST_YIELDS_FIRST 64u
#define FAST_YIELDS_MIN 4u

static unsigned yield_budget(FastPool *fp, FpWaitKind kind) {
        if (fp->yields[kind] == 0)
                fp->yields[kind] = FAST_YIELDS_FIRST;
        return fp->yields[kind];
}

static void yield_learn(FastPool *fp, FpWaitKind kind, unsigned used) {
        unsigned *b = &fp->yields[kind];

        if (used == UINT_MAX)
                *b = *b / 2 > FAST_YIELDS_MIN ? *b / 2 : FAST_YIELDS_MIN;
        else if (2 * used + 8 > *b)
                *b = 2 * used + 8 < FP_WAIT_YIELDS_MAX ? 2 * used + 8 : FP_WAIT_YIELDS_MAX;
}

/*
 * With the lock held and nothing to take: wait to be served, at most @timeout_ms (< 0:
 * forever). 0 with the slots in @v (n 0: end of stream), a refusal, -ECONNRESET, or
 * SB_FAST_NO (the pool left the fast path: the caller goes through the socket). Returns
 * with the lock given back.
 */
static int fast_wait(sb_pool *p, FpWaitKind kind, uint32_t max, int64_t seq, int timeout_ms, uint32_t *v,
                     size_t *n) {
        FastPool *fp = &p->fast;
        uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_usec() + (uint64_t)timeout_ms * 1000u;
        uint32_t wake;
        int r = fp_wait(&fp->fp, fp->member, kind, max, seq, false, &wake);

        fast_unlock(p);
        if (r < 0)
                return refuse(p, r, kind == FP_WAIT_ACQUIRE ? "acquire" : "consume", kind);
        for (;;) {
                uint64_t now = now_usec();
                int slice = FAST_SLICE_MS;
                const FpMember *m;

                if (deadline != UINT64_MAX && deadline > now && (deadline - now) / 1000 < (uint64_t)slice)
                        slice = (int)((deadline - now + 999) / 1000);
                if (deadline <= now)
                        slice = 0;
                /* A slice that ends unwoken: is the daemon still there? */
                r = 0;
                if (slice > 0) {
                        unsigned yields = yield_budget(fp, kind);

                        if (fp_wake_wait(&fp->fp, fp->member, wake, slice, &yields) == -ETIMEDOUT)
                                r = daemon_alive(p->client);
                        yield_learn(fp, kind, yields);
                }
                if (r == 0)
                        r = fast_lock(p);
                if (r < 0)
                        return r;       /* the daemon ends the wait with the member */
                m = fp_member(&fp->fp, fp->member);
                if (m->wmax == 0) {
                        *n = fp_served_slots(&fp->fp, fp->member, v);
                        fast_unlock(p);
                        return 0;
                }
                if (now_usec() >= deadline) {
                        r = fp_unwait(&fp->fp, fp->member);
                        fast_unlock(p);
                        if (r < 0)
                                return refuse(p, r, "wait", kind);
                        return sb_conn_refuse(p->client, SB_CODE_TIMEOUT, kind == FP_WAIT_ACQUIRE ?
                                              "no slot became free" : "no batch became ready");
                }
                wake = atomic_fetch_and_explicit(&fp_member(&fp->fp, fp->member)->wake, ~1u, memory_order_relaxed) & ~1u;
                fast_unlock(p);
        }
}

/* Take up to @max slots of @kind, waiting as the socket path would. SB_FAST_NO: go through
 * the socket instead. */
static int fast_take(sb_pool *p, FpWaitKind kind, uint32_t max, int64_t seq, int timeout_ms, uint32_t *v, size_t *n) {
        FastPool *fp = &p->fast;
        int r = fast_lock(p);

        if (r < 0)
                return r;
        r = fp_take(&fp->fp, fp->member, kind, max, seq, v, n);
        if ((r == -EAGAIN || r == -EBUSY) && timeout_ms != 0)
                return fast_wait(p, kind, max, seq, timeout_ms, v, n);
        fast_unlock(p);
        if (r == -EREMOTE)
                return SB_FAST_NO;
        if (r == -EAGAIN)
                r = -ETIMEDOUT;
        return r == 0 ? 0 : refuse(p, r, kind == FP_WAIT_ACQUIRE ? "acquire" : "consume", kind);
}

/* --- consumed batches --------------------------------------------------------------------------- */

/* The meta its producer wrote into the slot's meta area, checked as the daemon checks a
 * publish's (any member of the pool may have written there): NULL for {}, or for a text
 * that fails the check, which reads as {}. */
static char *area_meta(const FastPool *fp, uint32_t slot) {
        const uint8_t *area = fp_meta_area(&fp->fp, slot);
        const char *end;
        uint32_t len;
        char *t;

        if (!area)
                return NULL;
        memcpy(&len, area, sizeof(len));
        if (len == 0 || len > fp->fp.g.meta_inline - sizeof(len) || !(t = malloc(len + 1)))
                return NULL;
        memcpy(t, area + sizeof(len), len);
        t[len] = 0;
        end = sb_json_strict_end(t, t + len);
        if (t[0] != '{' || end != t + len || strlen(t) != len || sb_json_has_nul(t, t + len, "")) {
                free(t);
                return NULL;
        }
        return t;
}

/* The slots just consumed as batches. A batch whose meta only the daemon has (served to us
 * by someone else's operation) goes back first in line, with those after it, and
 * SB_FAST_NO sends the caller through the socket for it. */
static int fill_batches(sb_pool *p, const uint32_t *v, size_t n, sb_batch *out) {
        FastPool *fp = &p->fast;
        size_t bad;

        for (size_t i = 0; i < n; i++) {
                const FpSlot *s = fp_slot(&fp->fp, v[i]);
                if (s->flags & FP_S_META_OUTSIDE) {
                        int r = fast_lock(p);
                        if (r == 0) {
                                r = fp_release(&fp->fp, fp->member, v + i, n - i, true, &bad);
                                fast_unlock(p);
                        }
                        return r < 0 ? r : (i ? (int)i : SB_FAST_NO);
                }
                free(p->meta[v[i]]);
                p->meta[v[i]] = area_meta(fp, v[i]);
                out[i] = (sb_batch){ .slot = v[i], .data = p->base + (uint64_t)v[i] * p->stride, .nbytes = s->nbytes,
                                     .seq = s->seq, .stream = s->stream,
                                     .meta = p->meta[v[i]] ? p->meta[v[i]] : "{}" };
                if (s->nbytes > p->slot_size)
                        out[i].nbytes = p->slot_size;
        }
        return (int)n;
}

/* --- the operations ----------------------------------------------------------------------------- */

/* As a request does (sb_conn_call()), an operation clears the last refusal. */
static void fast_begin(sb_pool *p) {
        p->client->code = SB_CODE_OK;
        p->client->message[0] = 0;
}

int sb_fast_acquire(sb_pool *p, int64_t seq, int timeout_ms, size_t max, sb_slot *out, size_t *n_got) {
        uint32_t v[SB_MANY_MAX];
        size_t n = 0;
        int r;

        if (!fast_usable(p))
                return SB_FAST_NO;
        fast_begin(p);
        r = fast_take(p, FP_WAIT_ACQUIRE, (uint32_t)(max ? max : 1), seq, timeout_ms, v, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                out[i] = (sb_slot){ .slot = v[i], .data = p->base + (uint64_t)v[i] * p->stride,
                                    .capacity = (size_t)p->slot_size };
        *n_got = n;
        return 0;
}

int sb_fast_consume(sb_pool *p, int timeout_ms, size_t max, sb_batch *out, size_t *n_got) {
        uint32_t v[SB_MANY_MAX];
        size_t n = 0;
        int r;

        if (!fast_usable(p))
                return SB_FAST_NO;
        fast_begin(p);
        r = fast_take(p, FP_WAIT_CONSUME, (uint32_t)(max ? max : 1), -1, timeout_ms, v, &n);
        if (r < 0)
                return r;
        if (n == 0) {
                out[0] = (sb_batch){ .eof = true };
                *n_got = 1;
                return 0;
        }
        r = fill_batches(p, v, n, out);
        if (r < 0)
                return r;
        *n_got = (size_t)r;
        return 0;
}

/* Whether every meta of @v fits the block: the publish can go the fast way. Each meta's
 * text (as the socket path would send it) into @texts, to free(). */
static int metas_fit(sb_pool *p, const sb_publish_item *v, size_t n, char **texts) {
        for (size_t i = 0; i < n; i++) {
                int r = sb_wire_meta_text(v[i].meta, &texts[i]);
                if (r < 0)
                        return r;
                if (texts[i] && strlen(texts[i]) + sizeof(uint32_t) > p->fast.fp.g.meta_inline)
                        return SB_FAST_NO;
        }
        return 0;
}

/* A refused publish as the daemon says it (daemon/ops.c, publish_failed()). */
static int publish_refusal(sb_pool *p, const sb_publish_item *v, size_t bad, int r) {
        const sb_publish_item *e = &v[bad];

        switch (r) {
        case -ENOENT:
                for (size_t i = 0; i < bad; i++)
                        if (v[i].slot == e->slot)
                                return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "slot %u is listed twice", e->slot);
                return sb_conn_refuse(p->client, SB_CODE_NOT_HOLDER, "slot %u of pool \"%s\" is not being written by "
                                      "this connection", e->slot, p->name);
        case -EINVAL:
                if (e->seq < 0)
                        return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "pool \"%s\" is ordered: publish needs "
                                              "\"seq\"", p->name);
                for (size_t i = 0; i < bad; i++)
                        if (v[i].seq == e->seq)
                                return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "seq %lld is listed twice",
                                                      (long long)e->seq);
                return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "seq %lld was already published in this "
                                      "stream of pool \"%s\"", (long long)e->seq, p->name);
        default:
                return refuse(p, r, "publish", FP_WAIT_ACQUIRE);
        }
}

int sb_fast_publish(sb_pool *p, const sb_publish_item *v, size_t n) {
        FastPool *fp = &p->fast;
        FpPublish e[SB_MANY_MAX];
        char *texts[SB_MANY_MAX];       /* the first n only: a publish is usually of one */
        size_t bad;
        int r;

        if (!fast_usable(p) || n > SB_MANY_MAX)
                return SB_FAST_NO;
        fast_begin(p);
        memset(texts, 0, n * sizeof(texts[0]));
        for (size_t i = 0; i < n; i++)
                if (v[i].nbytes > p->slot_size) {
                        char where[48] = "";
                        if (n > 1)
                                snprintf(where, sizeof(where), "\"batches\" entry %zu: ", i);
                        return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "%s\"nbytes\" must be from 0 to %llu",
                                              where, (unsigned long long)p->slot_size);
                }
        r = metas_fit(p, v, n, texts);
        for (size_t i = 0; r == 0 && i < n; i++) {
                /* Only its holder writes a slot's meta area, and only while it writes the
                 * slot: no lock needed, and a publish refused below leaves nothing seen. */
                uint8_t *area = fp_meta_area(&fp->fp, v[i].slot);
                uint32_t len = texts[i] ? (uint32_t)strlen(texts[i]) : 0;
                const FpSlot *s = fp_slot(&fp->fp, v[i].slot);
                if (area && s && s->holder == fp->member && s->state == FP_WRITING) {
                        memcpy(area, &len, sizeof(len));
                        if (len)
                                memcpy(area + sizeof(len), texts[i], len);
                }
                e[i] = (FpPublish){ .slot = v[i].slot, .has_seq = v[i].seq >= 0, .nbytes = v[i].nbytes,
                                    .seq = v[i].seq >= 0 ? (uint64_t)v[i].seq : 0 };
        }
        for (size_t i = 0; i < n; i++)
                free(texts[i]);
        if (r == -EINVAL)
                return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "\"meta\" must be a JSON object");
        if (r < 0)
                return r;
        r = fast_lock(p);
        if (r < 0)
                return r;
        r = fp_publish(&fp->fp, fp->member, e, n, &bad);
        fast_unlock(p);
        return r == 0 ? 0 : publish_refusal(p, v, bad, r);
}

int sb_fast_release(sb_pool *p, const uint32_t *slots, size_t n, bool requeue) {
        FastPool *fp = &p->fast;
        size_t bad;
        int r;

        if (!fast_usable(p))
                return SB_FAST_NO;
        fast_begin(p);
        r = fast_lock(p);
        if (r < 0)
                return r;
        r = fp_release(&fp->fp, fp->member, slots, n, requeue, &bad);
        fast_unlock(p);
        /* As the daemon says it (daemon/ops.c, op_release()). */
        if (r == -ENOENT) {
                for (size_t i = 0; i < bad; i++)
                        if (slots[i] == slots[bad])
                                return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "slot %u is listed twice",
                                                      slots[bad]);
                return sb_conn_refuse(p->client, SB_CODE_NOT_HOLDER, "slot %u of pool \"%s\" is not held by this "
                                      "connection", slots[bad], p->name);
        }
        if (r == -EINVAL)
                return sb_conn_refuse(p->client, SB_CODE_BAD_REQUEST, "requeue applies to a slot being read, and slot "
                                      "%u is being written", slots[bad]);
        return r == 0 ? 0 : refuse(p, r, "release", FP_WAIT_CONSUME);
}

int sb_fast_end(sb_pool *p) {
        FastPool *fp = &p->fast;
        int r;

        if (!fast_usable(p))
                return SB_FAST_NO;
        fast_begin(p);
        r = fast_lock(p);
        if (r < 0)
                return r;
        r = fp_end(&fp->fp, fp->member);
        fast_unlock(p);
        return r == 0 ? 0 : refuse(p, r, "end", FP_WAIT_ACQUIRE);
}
