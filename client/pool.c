/*
 * pool.c: pools as a client holds them: creating or opening one and attaching its segment
 * (or not, for administration),
 * the operations on its slots (acquire, publish, consume, release, end, drop, and status),
 * synchronous, several in one round trip, or asynchronous; and freeing a client, which
 * closes its pools before its connection (so it lives here, above connection.c).
 *
 * A pool handle keeps the meta text of every batch it holds: sb_batch.meta points at it
 * until the batch is released.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>

#include "internal.h"
#include "sb-macro.h"


/* --- pools ---------------------------------------------------------------------------- */

static int pool_from_reply(sb_client *c, const cJSON *reply, bool attach, sb_pool **ret) {
        _cleanup_(freep) sb_pool *p = NULL;
        WirePool w;
        void *base = NULL;
        int r;

        r = sb_wire_pool(reply, &w);
        if (r < 0)
                return r;
        p = malloc(sizeof(*p));
        if (!p)
                return -ENOMEM;
        *p = (sb_pool){ .client = c, .shmid = w.shmid, .slot_size = w.slot_size, .stride = w.stride,
                        .slots = w.slots };
        memcpy(p->name, w.name, sizeof(p->name));
        p->meta = calloc(p->slots ? p->slots : 1, sizeof(char *));
        /* p is freed by its _cleanup_ on every return below but the last. */
        if (!p->meta)
                return -ENOMEM;  // cppcheck-suppress memleak
        /* Attach once. Every role asks for read-write first, so that a consumer may modify
         * its batch in place (trainers normalise batches in place): a consumed slot is the
         * consumer's alone, the daemon hands it to nobody else until it is released (and one
         * released with requeue goes on to the next consumer as modified). Whether a client
         * may write stays the kernel's call, on the owner, group and mode the daemon gave the
         * segment from the pool's: shmat() without SHM_RDONLY needs read and write permission
         * and fails with EACCES when the segment grants this user read alone; a consumer or
         * an admin then attaches read-only. A producer does not fall back: the daemon opened
         * the pool for it because it may write, so a refusal means that the segment's mode
         * was changed behind the daemon's back (by its owner, with shmctl(IPC_SET)), and
         * failing here beats a SIGSEGV at its first write. The segment is already marked for
         * removal by the daemon; Linux still lets us attach it by shmid. */
        if (attach)
                base = shmat(p->shmid, NULL, 0);
        // NOLINTNEXTLINE(performance-no-int-to-ptr): shmat()'s error value
        if (attach && base == (void *)-1 && errno == EACCES && c->role != SB_ROLE_PRODUCER)
                base = shmat(p->shmid, NULL, SHM_RDONLY);
        if (base == (void *)-1) {  /* NOLINT(performance-no-int-to-ptr): shmat()'s error value */
                r = -errno;
                free(p->meta);
                return r;  // cppcheck-suppress memleak
        }
        p->base = base;
        r = sb_fast_attach(p, &w);
        if (r < 0) {
                if (base)
                        (void)shmdt(base);
                free(p->meta);
                return r;  // cppcheck-suppress memleak
        }
        p->next = c->pools;
        c->pools = p;
        *ret = steal_ptr(p);
        return 0;
}

/* Send the create or open line @r says was written and adopt the pool its reply describes. */
static int call_pool(sb_client *c, int r, bool attach, sb_pool **ret) {
        cJSON *reply = NULL;

        r = sb_conn_call_one(c, r, &reply);
        if (r < 0)
                return r;
        r = pool_from_reply(c, reply, attach, ret);
        cJSON_Delete(reply);
        return r;
}

/* Requests carry pool names as they are (wire.c), so a name is checked before it is sent,
 * and one the daemon would refuse is refused here with the daemon's code and rule. */
static int check_name(sb_client *c, const char *name) {
        const int shown = 2 * SB_POOL_NAME_MAX;     /* of a name much too long, its start */

        if (sb_pool_name_valid(name))
                return 0;
        if (!name)
                return sb_conn_refuse(c, SB_CODE_BAD_REQUEST, "no pool name given");
        return sb_conn_refuse(c, SB_CODE_BAD_REQUEST,
                              "\"%.*s%s\" is not a pool name: a pool name is " SB_POOL_NAME_RULE, shown, name,
                              strlen(name) > (size_t)shown ? "..." : "");
}

static int pool_create(sb_client *c, sb_pool **ret, const char *name, uint64_t slot_size, uint32_t slots,
                       const sb_pool_options *opts, bool attach) {
        static const sb_pool_options none = { 0 };
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = check_name(c, name);
        if (r < 0)
                return r;
        return call_pool(c, sb_wire_create(sb_conn_begin(c), name, slot_size, slots, opts ? opts : &none), attach, ret);
}

static int pool_open(sb_client *c, sb_pool **ret, const char *name, bool attach) {
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = check_name(c, name);
        if (r < 0)
                return r;
        return call_pool(c, sb_wire_open(sb_conn_begin(c), name), attach, ret);
}

_public_ int sb_pool_create(sb_client *c, sb_pool **ret, const char *name, uint64_t slot_size, uint32_t slots,
                            const sb_pool_options *opts) {
        return pool_create(c, ret, name, slot_size, slots, opts, true);
}

_public_ int sb_pool_open(sb_client *c, sb_pool **ret, const char *name) {
        return pool_open(c, ret, name, true);
}

_public_ int sb_pool_create_unattached(sb_client *c, sb_pool **ret, const char *name, uint64_t slot_size,
                                       uint32_t slots, const sb_pool_options *opts) {
        return pool_create(c, ret, name, slot_size, slots, opts, false);
}

_public_ int sb_pool_open_unattached(sb_client *c, sb_pool **ret, const char *name) {
        return pool_open(c, ret, name, false);
}

/* What the calls that hand out slots or batches return for a pool opened without its
 * segment: there is no memory to point into. */
static int need_attached(const sb_pool *p) {
        return p->base ? 0 : -EBADFD;
}

_public_ sb_pool *sb_pool_close(sb_pool *p) {
        sb_pool **pp;

        if (!p)
                return NULL;
        for (pp = &p->client->pools; *pp; pp = &(*pp)->next)
                if (*pp == p) {
                        *pp = p->next;
                        break;
                }
        sb_conn_orphan(p->client, p);
        sb_fast_detach(p);
        if (p->base)
                shmdt(p->base);
        for (uint32_t i = 0; i < p->slots; i++)
                free(p->meta[i]);
        free(p->meta);
        free(p);
        return NULL;
}

_public_ sb_client *sb_client_free(sb_client *c) {
        if (!c)
                return NULL;
        /* sb_pool_close() unlinks the pool it frees from c->pools. */
        while (c->pools)
                sb_pool_close(c->pools);  // NOLINT(clang-analyzer-unix.Malloc)
        sb_conn_free(c);
        return NULL;
}

_public_ const char *sb_pool_name(const sb_pool *p) { return p->name; }
_public_ uint64_t sb_pool_slot_size(const sb_pool *p) { return p->slot_size; }
_public_ uint64_t sb_pool_stride(const sb_pool *p) { return p->stride; }
_public_ uint32_t sb_pool_slots(const sb_pool *p) { return p->slots; }
_public_ int sb_pool_shmid(const sb_pool *p) { return p->shmid; }
_public_ void *sb_pool_base(const sb_pool *p) { return p->base; }

/* --- slots and batches from replies ------------------------------------------------- */

/* Fill @b from a consume reply, keeping the meta text with the held slot. */
static int batch_from_reply(sb_pool *p, const cJSON *reply, sb_batch *b) {
        WireBatch w;
        int r = sb_wire_batch(reply, p->slots, p->slot_size, &w);

        *b = (sb_batch){ .eof = w.eof };
        if (r < 0 || w.eof)
                return r;
        free(p->meta[w.slot]);
        p->meta[w.slot] = w.meta;
        b->slot = w.slot;
        b->data = p->base + w.slot * p->stride;
        b->nbytes = w.nbytes;
        b->seq = w.seq;
        b->stream = w.stream;
        b->meta = w.meta ? w.meta : "{}";
        return 0;
}

static int acquired_from_reply(sb_pool *p, const cJSON *reply, void **ptr, uint32_t *slot, size_t *cap) {
        uint32_t s;
        int r = sb_wire_slot(reply, p->slots, &s);

        if (r < 0)
                return r;
        if (ptr)
                *ptr = p->base + s * p->stride;
        if (slot)
                *slot = s;
        if (cap)
                *cap = (size_t)p->slot_size;
        return 0;
}

/* The "slots" of a many-slot acquire reply. */
static int slots_from_reply(sb_pool *p, const cJSON *reply, sb_slot *out, size_t max, size_t *n) {
        const cJSON *it, *list = sb_wire_list(reply, "slots", max);
        int r;

        if (!list)
                return -EPROTO;
        cJSON_ArrayForEach(it, list) {
                sb_slot *s = &out[*n];
                r = acquired_from_reply(p, it, &s->data, &s->slot, &s->capacity);
                if (r < 0)
                        return r;
                (*n)++;
        }
        return 0;
}

/* The "batches" of a many-slot consume reply, or its end of stream. */
static int batches_from_reply(sb_pool *p, const cJSON *reply, sb_batch *out, size_t max, size_t *n) {
        const cJSON *it, *list;
        int r;

        if (sb_wire_eof(reply)) {
                out[0] = (sb_batch){ .eof = true };
                *n = 1;
                return 0;
        }
        list = sb_wire_list(reply, "batches", max);
        if (!list)
                return -EPROTO;
        cJSON_ArrayForEach(it, list) {
                r = batch_from_reply(p, it, &out[*n]);
                if (r < 0)
                        return r;
                (*n)++;
        }
        return 0;
}

static void forget_meta(sb_pool *p, uint32_t slot) {
        if (slot < p->slots) {
                free(p->meta[slot]);
                p->meta[slot] = NULL;
        }
}

/* --- producing and consuming ---------------------------------------------------------- */

/* Two requests in one write: one that gives slots back (publish, release) and one that
 * takes (acquire, consume), the steady state of a producer or a consumer. */
typedef struct Exchange {
        int give, take;          /* their outcomes: 0 or -errno (0 for a request not sent) */
        cJSON *reply;            /* the take's reply, when it succeeded */
} Exchange;

/* Send the requests written since sb_conn_begin() (@r: 0 or the -errno of writing them):
 * the giving one if @give, then the taking one if @take. When nothing could be sent, that
 * failure is the outcome of both. */
static void exchange(sb_client *c, int r, bool give, bool take, Exchange *x) {
        Pending a = { 0 }, b = { 0 };

        *x = (Exchange){ 0 };
        if (give || take)
                r = sb_conn_call(c, r, give ? &a : &b, give && take ? &b : NULL);
        if (r < 0) {
                x->give = x->take = r;
                return;
        }
        x->give = a.error;
        x->take = b.error;
        if (b.error == 0)
                x->reply = steal_ptr(b.reply);
        cJSON_Delete(a.reply);
        cJSON_Delete(b.reply);
}

static void exchange_done(Exchange *x) {
        cJSON_Delete(x->reply);
}

/* What the caller returns: the give's failure if it failed, else the take's. */
static int exchange_result(const Exchange *x) {
        return x->give ? x->give : x->take;
}

/* The many-slot forms take up to SB_MANY_MAX slots each way, and need arrays for them. */
static bool many_valid(size_t n_give, const void *give, size_t max, const void *take) {
        return n_give <= SB_MANY_MAX && max <= SB_MANY_MAX && (n_give == 0 || give) && (max == 0 || take);
}

/* Send the acquire request just written (@written: its outcome) and take its slot. */
static int acquire_call(sb_pool *p, int written, void **ptr, uint32_t *slot, size_t *capacity) {
        cJSON *reply = NULL;
        int r = sb_conn_call_one(p->client, written, &reply);

        if (r == 0)
                r = acquired_from_reply(p, reply, ptr, slot, capacity);
        cJSON_Delete(reply);
        return r;
}

/* An acquire of one slot on the block: SB_FAST_NO when it must go through the socket. */
static int acquire_fast(sb_pool *p, int64_t seq, int timeout_ms, void **ptr, uint32_t *slot, size_t *capacity) {
        sb_slot s;
        size_t n;
        int r = sb_fast_acquire(p, seq, timeout_ms, 0, &s, &n);

        if (r == 0) {
                if (ptr)
                        *ptr = s.data;
                if (slot)
                        *slot = s.slot;
                if (capacity)
                        *capacity = s.capacity;
        }
        return r;
}

_public_ int sb_acquire(sb_pool *p, int timeout_ms, void **ptr, uint32_t *slot, size_t *capacity) {
        int r;

        if (need_attached(p) < 0)
                return need_attached(p);
        r = acquire_fast(p, -1, timeout_ms, ptr, slot, capacity);
        if (r != SB_FAST_NO)
                return r;
        return acquire_call(p, sb_wire_acquire(sb_conn_begin(p->client), p->name, timeout_ms, 0), ptr, slot, capacity);
}

_public_ int sb_acquire_seq(sb_pool *p, uint64_t seq, int timeout_ms, void **ptr, uint32_t *slot, size_t *capacity) {
        int r;

        if (seq > INT64_MAX)
                return -EINVAL;
        if (need_attached(p) < 0)
                return need_attached(p);
        r = acquire_fast(p, (int64_t)seq, timeout_ms, ptr, slot, capacity);
        if (r != SB_FAST_NO)
                return r;
        return acquire_call(p, sb_wire_acquire_seq(sb_conn_begin(p->client), p->name, timeout_ms, (int64_t)seq), ptr,
                            slot, capacity);
}

_public_ int sb_publish(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta) {
        const sb_publish_item e = { .slot = slot, .nbytes = nbytes, .seq = seq, .meta = meta };
        int r = sb_fast_publish(p, &e, 1);

        if (r != SB_FAST_NO)
                return r;
        return sb_conn_call_one(p->client, sb_wire_publish(sb_conn_begin(p->client), p->name, &e, 1), NULL);
}

_public_ int sb_publish_acquire(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta,
                                int timeout_ms, void **ptr, uint32_t *next_slot, size_t *capacity) {
        const sb_publish_item e = { .slot = slot, .nbytes = nbytes, .seq = seq, .meta = meta };
        _cleanup_(exchange_done) Exchange x = { 0 };
        SbBytes *out;
        int r = need_attached(p);

        if (r < 0)
                return r;
        r = sb_fast_publish(p, &e, 1);
        if (r != SB_FAST_NO)
                return r < 0 ? r : sb_acquire(p, timeout_ms, ptr, next_slot, capacity);
        out = sb_conn_begin(p->client);
        r = sb_wire_publish(out, p->name, &e, 1);
        if (r == 0)
                r = sb_wire_acquire(out, p->name, timeout_ms, 0);
        exchange(p->client, r, true, true, &x);
        if (x.take == 0)
                x.take = acquired_from_reply(p, x.reply, ptr, next_slot, capacity);
        return exchange_result(&x);
}

_public_ int sb_publish_acquire_many(sb_pool *p, const sb_publish_item *pub, size_t n_pub, int timeout_ms,
                                     sb_slot *slots, size_t max, size_t *n_got) {
        _cleanup_(exchange_done) Exchange x = { 0 };
        SbBytes *out;
        int r;

        *n_got = 0;
        if (!many_valid(n_pub, pub, max, slots))
                return -EINVAL;
        if (max && need_attached(p) < 0)
                return need_attached(p);
        r = n_pub ? sb_fast_publish(p, pub, n_pub) : 0;
        if (r != SB_FAST_NO) {
                if (r < 0 || !max)
                        return r;
                r = sb_fast_acquire(p, -1, timeout_ms, max, slots, n_got);
                if (r != SB_FAST_NO)
                        return r;
                n_pub = 0;      /* published already: the socket only acquires */
        }
        out = sb_conn_begin(p->client);
        r = n_pub ? sb_wire_publish(out, p->name, pub, n_pub) : 0;
        if (r == 0 && max)
                r = sb_wire_acquire(out, p->name, timeout_ms, max);
        exchange(p->client, r, n_pub, max, &x);
        if (max && x.take == 0)
                x.take = slots_from_reply(p, x.reply, slots, max, n_got);
        return exchange_result(&x);
}

_public_ int sb_consume(sb_pool *p, int timeout_ms, sb_batch *batch) {
        cJSON *reply = NULL;
        int r = need_attached(p);

        if (r < 0)
                return r;
        r = sb_fast_consume(p, timeout_ms, 0, batch, &(size_t){ 0 });
        if (r != SB_FAST_NO)
                return r;
        r = sb_conn_call_one(p->client, sb_wire_consume(sb_conn_begin(p->client), p->name, timeout_ms, 0), &reply);
        if (r == 0)
                r = batch_from_reply(p, reply, batch);
        cJSON_Delete(reply);
        return r;
}

_public_ int sb_release(sb_pool *p, uint32_t slot, bool requeue) {
        int r = sb_fast_release(p, &slot, 1, requeue);

        if (r != SB_FAST_NO) {
                if (r == 0)
                        forget_meta(p, slot);
                return r;
        }
        r = sb_conn_call_one(p->client, sb_wire_release(sb_conn_begin(p->client), p->name, slot, requeue), NULL);

        if (r == 0)
                forget_meta(p, slot);
        return r;
}

_public_ int sb_release_consume(sb_pool *p, sb_batch *batch, int timeout_ms) {
        _cleanup_(exchange_done) Exchange x = { 0 };
        uint32_t old = batch->slot;
        SbBytes *out;
        int r;

        if (batch->eof || need_attached(p) < 0)
                return sb_consume(p, timeout_ms, batch);
        r = sb_fast_release(p, &old, 1, false);
        if (r != SB_FAST_NO) {
                if (r < 0)
                        return r;
                forget_meta(p, old);
                return sb_consume(p, timeout_ms, batch);
        }
        out = sb_conn_begin(p->client);
        r = sb_wire_release(out, p->name, old, false);
        if (r == 0)
                r = sb_wire_consume(out, p->name, timeout_ms, 0);
        exchange(p->client, r, true, true, &x);
        if (x.give == 0)
                forget_meta(p, old);
        if (x.take == 0)
                x.take = batch_from_reply(p, x.reply, batch);
        return exchange_result(&x);
}

/* The release of the batches of @rel that are not eof, on the block. */
static int release_fast(sb_pool *p, const sb_batch *rel, size_t n_rel) {
        uint32_t v[SB_MANY_MAX] = { 0 };
        size_t n = 0;
        int r;

        for (size_t i = 0; i < n_rel; i++)
                if (!rel[i].eof)
                        v[n++] = rel[i].slot;
        r = sb_fast_release(p, v, n, false);
        if (r == 0)
                for (size_t i = 0; i < n; i++)
                        forget_meta(p, v[i]);
        return r;
}

_public_ int sb_release_consume_many(sb_pool *p, const sb_batch *rel, size_t n_rel, int timeout_ms,
                                     sb_batch *batches, size_t max, size_t *n_got) {
        _cleanup_(exchange_done) Exchange x = { 0 };
        size_t held = 0;
        SbBytes *out;
        int r;

        *n_got = 0;
        if (!many_valid(n_rel, rel, max, batches))
                return -EINVAL;
        if (max && need_attached(p) < 0)
                return need_attached(p);
        for (size_t i = 0; i < n_rel; i++)
                held += !rel[i].eof;
        r = held ? release_fast(p, rel, n_rel) : 0;
        if (r != SB_FAST_NO) {
                if (r < 0 || !max)
                        return r;
                r = sb_fast_consume(p, timeout_ms, max, batches, n_got);
                if (r != SB_FAST_NO)
                        return r;
                held = 0;       /* released already: the socket only consumes */
        }
        out = sb_conn_begin(p->client);
        r = held ? sb_wire_release_many(out, p->name, rel, n_rel) : 0;
        if (r == 0 && max)
                r = sb_wire_consume(out, p->name, timeout_ms, max);
        exchange(p->client, r, held, max, &x);
        /* The released slots' metas go before the new batches take theirs: @rel and
         * @batches may be one array, and a slot may come straight back. */
        for (size_t i = 0; x.give == 0 && i < n_rel; i++)
                if (!rel[i].eof)
                        forget_meta(p, rel[i].slot);
        if (max && x.take == 0)
                x.take = batches_from_reply(p, x.reply, batches, max, n_got);
        return exchange_result(&x);
}

_public_ int sb_end(sb_pool *p) {
        int r = sb_fast_end(p);

        if (r != SB_FAST_NO)
                return r;
        return sb_conn_call_one(p->client, sb_wire_end(sb_conn_begin(p->client), p->name), NULL);
}

_public_ int sb_drop(sb_pool *p) {
        return sb_conn_call_one(p->client, sb_wire_drop(sb_conn_begin(p->client), p->name), NULL);
}

_public_ int sb_status(sb_client *c, const char *name, char **json) {
        cJSON *reply = NULL;
        int r;

        if (name && (r = check_name(c, name)) < 0)
                return r;
        r = sb_conn_call_one(c, sb_wire_status(sb_conn_begin(c), name), &reply);
        if (r < 0)
                return r;
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
        *json = cJSON_PrintUnformatted(reply);
        cJSON_Delete(reply);
        return *json ? 0 : -ENOMEM;
}

/* --- asynchronous requests ------------------------------------------------------------ */

static void deliver_plain(Pending *pd, const cJSON *reply, int error) {
        (void)reply;
        pd->fn(pd->pool, error, NULL, 0, NULL, pd->userdata);
}

static void deliver_acquire(Pending *pd, const cJSON *reply, int error) {
        void *ptr = NULL;
        uint32_t slot = 0;

        if (!error)
                error = acquired_from_reply(pd->pool, reply, &ptr, &slot, NULL);
        pd->fn(pd->pool, error, NULL, slot, ptr, pd->userdata);
}

static void deliver_consume(Pending *pd, const cJSON *reply, int error) {
        sb_batch b = { 0 };

        if (!error)
                error = batch_from_reply(pd->pool, reply, &b);
        pd->fn(pd->pool, error, error ? NULL : &b, b.slot, NULL, pd->userdata);
}

/* Send the request @r says was written without waiting; @deliver hands its reply to @fn. */
static int send_async(sb_pool *p, int r, void (*deliver)(Pending *, const cJSON *, int), sb_reply_fn fn,
                      void *userdata) {
        Pending *pd = NULL;

        if (r == 0 && !fn)
                r = -EINVAL;
        if (r == 0 && !(pd = calloc(1, sizeof(*pd))))
                r = -ENOMEM;
        if (pd)
                *pd = (Pending){ .deliver = deliver, .pool = p, .fn = fn, .userdata = userdata };
        r = sb_conn_send(p->client, r, pd);
        if (r < 0)
                free(pd);
        return r;
}

_public_ int sb_acquire_async(sb_pool *p, int timeout_ms, sb_reply_fn fn, void *userdata) {
        if (need_attached(p) < 0)
                return need_attached(p);
        return send_async(p, sb_wire_acquire(sb_conn_begin(p->client), p->name, timeout_ms, 0), deliver_acquire, fn,
                          userdata);
}

_public_ int sb_consume_async(sb_pool *p, int timeout_ms, sb_reply_fn fn, void *userdata) {
        if (need_attached(p) < 0)
                return need_attached(p);
        return send_async(p, sb_wire_consume(sb_conn_begin(p->client), p->name, timeout_ms, 0), deliver_consume, fn,
                          userdata);
}

_public_ int sb_publish_async(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta, sb_reply_fn fn,
                              void *userdata) {
        const sb_publish_item e = { .slot = slot, .nbytes = nbytes, .seq = seq, .meta = meta };

        return send_async(p, sb_wire_publish(sb_conn_begin(p->client), p->name, &e, 1), deliver_plain, fn, userdata);
}

_public_ int sb_release_async(sb_pool *p, uint32_t slot, bool requeue, sb_reply_fn fn, void *userdata) {
        int r = send_async(p, sb_wire_release(sb_conn_begin(p->client), p->name, slot, requeue), deliver_plain, fn,
                           userdata);

        /* Once the release is on its way the batch is gone, whatever the reply says. */
        if (r == 0)
                forget_meta(p, slot);
        return r;
}
