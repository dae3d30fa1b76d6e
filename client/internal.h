/*
 * internal.h: what the files of libshmbroker share, and nothing else sees.
 *
 * The library is three layers, and calls go down only:
 *   pool.c        pools and their operations (the public calls on sb_pool), freeing a client
 *   connection.c  the socket, hello, the queue of requests awaiting replies, the I/O machinery
 *   wire.c        request lines (formatting) and replies (parsing): JSON text, no I/O
 * A reply reaches pool.c again only through the Pending of an asynchronous request, whose
 * deliver() pool.c set when it queued it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sb-bytes.h"
#include "sb-fastpool.h"
#include "sb-macro.h"
#include "sb-names.h"
#include "shmbroker.h"

/* A pool's control block as its client runs operations on it (fast.c). */
typedef struct FastPool {
        Fp fp;                   /* fp.mem NULL: the pool goes through the socket */
        uint32_t member;         /* our member id in the block */
        uint64_t fork_gen;       /* the process's fork generation when attached (fast.c) */
        uint32_t *woken;         /* members served by our operation, woken after it */
        uint32_t n_woken;
        unsigned yields[2];      /* by FpWaitKind: a wait's yields before it sleeps (fast.c) */
} FastPool;

struct sb_pool {
        sb_client *client;
        sb_pool *next;
        char name[SB_POOL_NAME_MAX + 1];
        int shmid;
        uint64_t slot_size, stride;
        uint32_t slots;
        uint8_t *base;           /* NULL when opened without attaching */
        char **meta;             /* per slot, while a consumed batch is held */
        FastPool fast;
};

/* --- fast.c: operations on the control block ----------------------------------------------
 * Each returns 0, a refusal (as the daemon would refuse the request, sb_conn_refuse()),
 * -ECONNRESET (the daemon is gone), or SB_FAST_NO: not on the block this time, send the
 * request on the socket instead (nothing was done). */
#define SB_FAST_NO (-EXDEV)

typedef struct WirePool WirePool;

/* Whether this process asks for control blocks (SHMBROKER_FASTPATH is not "0"). */
bool sb_fast_wanted(void);
/* Attach the control block the reply @w gave @p, when it checks out; else leave @p on the
 * socket. 0 or -ENOMEM. */
int sb_fast_attach(sb_pool *p, const WirePool *w);
void sb_fast_detach(sb_pool *p);
/* @seq -1: none; @max 0: one slot (out[0]). */
int sb_fast_acquire(sb_pool *p, int64_t seq, int timeout_ms, size_t max, sb_slot *out, size_t *n_got);
int sb_fast_consume(sb_pool *p, int timeout_ms, size_t max, sb_batch *out, size_t *n_got);
int sb_fast_publish(sb_pool *p, const sb_publish_item *v, size_t n);
int sb_fast_release(sb_pool *p, const uint32_t *slots, size_t n, bool requeue);
int sb_fast_end(sb_pool *p);

/* --- wire.c: request lines ------------------------------------------------------------
 * Each appends one request line (with its '\n') to @out and returns 0 or -errno; on failure
 * part of the line may be there already (connection.c takes it back). Pool names are
 * printed as they are: valid ones need no quoting (sb_pool_name_valid()). */

/* @fast: say that this client can run its own operations on a pool's control block. */
int sb_wire_hello(SbBytes *out, sb_role role, const char *name, bool fast);

/* @meta as one line of strict JSON, to free() (NULL stays NULL, meaning {}); -EINVAL for a
 * meta that is not a JSON object. */
int sb_wire_meta_text(const char *meta, char **ret);
int sb_wire_create(SbBytes *out, const char *pool, uint64_t slot_size, uint32_t slots, const sb_pool_options *o);
int sb_wire_open(SbBytes *out, const char *pool);
/* acquire/consume: a timeout_ms unless @timeout_ms < 0 (wait forever), a "max" if @max > 0. */
int sb_wire_acquire(SbBytes *out, const char *pool, int timeout_ms, size_t max);
int sb_wire_acquire_seq(SbBytes *out, const char *pool, int timeout_ms, int64_t seq);
int sb_wire_consume(SbBytes *out, const char *pool, int timeout_ms, size_t max);
/* A publish of one slot (its fields in the request) or of several ("batches"); -EINVAL
 * for a meta that is not a JSON object. */
int sb_wire_publish(SbBytes *out, const char *pool, const sb_publish_item *v, size_t n);
int sb_wire_release(SbBytes *out, const char *pool, uint32_t slot, bool requeue);
/* A release of the batches of @v that are not eof, as one "slots" list. */
int sb_wire_release_many(SbBytes *out, const char *pool, const sb_batch *v, size_t n);
int sb_wire_end(SbBytes *out, const char *pool);
int sb_wire_drop(SbBytes *out, const char *pool);
/* Of every pool, or of @pool. */
int sb_wire_status(SbBytes *out, const char *pool);

/* --- wire.c: replies ------------------------------------------------------------------ */

/* The refusal in @reply: its code and message into *code and @message, its -errno. */
int sb_wire_refusal(const cJSON *reply, sb_code *code, char *message, size_t size);

/* The -errno of protocol code @code (0 for SB_CODE_OK). */
int sb_wire_code_errno(sb_code code);

/* Member @key of @o as a non-negative integer; 0 when missing or not one. */
uint64_t sb_wire_u64(const cJSON *o, const char *key);

/* What a create or open reply says of the pool. */
struct WirePool {
        char name[SB_POOL_NAME_MAX + 1];
        int shmid;
        uint64_t slot_size, stride;
        uint32_t slots;
        bool ordered, requeue;   /* on_consumer_death "requeue" */
        /* Its "fast" object, when the daemon gave us the control block (fast_shmid >= 0). */
        int fast_shmid;
        uint64_t fast_size;
        uint32_t fast_member, fast_member_cap, fast_meta_inline, fast_version;
};

/* -EPROTO when the reply describes no pool that could be attached and cut into slots
 * (its segment's "size" smaller than its slots). */
int sb_wire_pool(const cJSON *reply, WirePool *ret);

/* The slot an acquire reply (or an entry of its "slots") hands over: -EPROTO unless it is
 * below @slots. */
int sb_wire_slot(const cJSON *reply, uint32_t slots, uint32_t *ret);

/* What a consume reply (or an entry of its "batches") hands over. */
typedef struct WireBatch {
        bool eof;
        uint32_t slot;
        uint64_t nbytes, seq, stream;
        char *meta;              /* to free(); NULL for an empty meta, which needs no copy */
} WireBatch;

/* -EPROTO unless the slot is below @slots and nbytes fits @slot_size; -ENOMEM. */
int sb_wire_batch(const cJSON *reply, uint32_t slots, uint64_t slot_size, WireBatch *ret);

/* Keep, with each non-empty "meta" of @reply (a parsed reply line, @line of @len bytes),
 * its text as the line carries it, for sb_wire_batch(): a batch's meta reaches the program
 * byte for byte as its producer sent it. 0 or -ENOMEM. */
int sb_wire_keep_meta(cJSON *reply, const char *line, size_t len);

/* The array @key of a many-slot reply, of at most @max entries; NULL when it is not one. */
const cJSON *sb_wire_list(const cJSON *reply, const char *key, size_t max);

bool sb_wire_eof(const cJSON *reply);

/* --- connection.c ---------------------------------------------------------------------- */

typedef struct Pending Pending;

/* A request awaiting its reply. Replies come in request order, so each reply completes
 * the oldest Pending. A synchronous one lives on its caller's stack; an asynchronous one
 * is calloc()ed by its sender, handed to deliver(), then freed by connection.c. */
struct Pending {
        Pending *next;
        /* Asynchronous only: */
        void (*deliver)(Pending *pd, const cJSON *reply, int error);
        sb_pool *pool;           /* whose request it is: sb_pool_close() orphans it */
        sb_reply_fn fn;
        void *userdata;
        bool orphan;             /* its pool was closed since: the reply is dropped */
        /* Synchronous only: */
        bool done;
        int error;               /* 0 or -errno */
        cJSON *reply;            /* the caller's to delete */
};

struct sb_client {
        int fd;
        sb_role role;
        int64_t pid, uid;
        SbBytes in;              /* reply bytes not yet parsed */
        SbBytes out;             /* request bytes not yet written */
        size_t mark;             /* what out held before the requests being written */
        Pending *head, *tail;
        sb_pool *pools;          /* pool.c's, closed when the client is freed */
        sb_code code;
        char message[512];
        int broken;              /* -errno once the connection failed */
        uint64_t alive_checked;  /* when fast.c last looked whether the daemon is there */
};

/* Where wire.c writes the next request(s); sb_conn_call() or sb_conn_send() then sends them. */
SbBytes *sb_conn_begin(sb_client *c);

/* Send the requests written since sb_conn_begin() and wait for their replies: @r is 0, or
 * the -errno of writing them (then they are taken back, nothing is sent). @a and @b are
 * their Pendings in order (@b NULL for one request); each gets its outcome in ->error and
 * its reply in ->reply. Returns 0, or -errno when nothing was sent. */
int sb_conn_call(sb_client *c, int r, Pending *a, Pending *b);

/* One request as sb_conn_call(): its outcome, and its reply in *reply (to delete) on success. */
int sb_conn_call_one(sb_client *c, int r, cJSON **reply);

/* Send the request written since sb_conn_begin() without waiting: @pd (asynchronous) is
 * completed from sb_client_process(). Returns 0, or -errno when nothing was sent (then
 * @pd is still the caller's). */
int sb_conn_send(sb_client *c, int r, Pending *pd);

/* Refuse a request before sending it, for a reason the daemon would refuse it for: @code
 * and the message (@fmt) become the client's last refusal, as if the daemon had sent them.
 * Returns the -errno of @code. */
int sb_conn_refuse(sb_client *c, sb_code code, const char *fmt, ...) _printf_(3, 4);

/* The asynchronous requests of @p still queued complete without it. */
void sb_conn_orphan(sb_client *c, const sb_pool *p);

/* Close the connection and free @c; its pools must be closed already. */
void sb_conn_free(sb_client *c);
