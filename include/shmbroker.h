/*
 * shmbroker.h: the C client library of shmbroker (libshmbroker).
 *
 * A client connects to shmbrokerd, says who it is, and opens pools: SysV shared-memory
 * segments cut into slots. The library attaches each pool's segment once and hands out
 * pointers into it; batches never pass through the socket.
 *
 *   sb_client *c;  sb_pool *p;  void *buf;  uint32_t slot;  size_t cap;
 *   sb_connect(&c, NULL, SB_ROLE_PRODUCER, "loader-0");
 *   sb_pool_create(c, &p, "train", 16 << 20, 8, NULL);
 *   sb_acquire(p, -1, &buf, &slot, &cap);
 *   ... write up to cap bytes at buf ...
 *   sb_publish(p, slot, nbytes, 0, "{\"shape\":[64,3,224,224]}");
 *   sb_client_free(c);
 *
 * Errors: every call returns 0 (or a count) on success, or a negative errno. When the
 * daemon refused a request, sb_client_code() gives its protocol code and
 * sb_client_message() its message, which says what was wrong (show it to the user). A
 * request the library refuses before sending it for a reason the daemon gives too (an
 * invalid pool name) sets them the same way. Protocol codes map to errnos as follows:
 * timeout -ETIMEDOUT, no_such_pool -ENOENT, pool_exists -EEXIST, not_holder -EPERM,
 * wrong_role -EPERM, permission_denied -EACCES, limit -ENOSPC, bad_request -EINVAL,
 * unknown_op -EOPNOTSUPP, need_hello -EPROTO, internal -EIO. A broken connection is
 * -ECONNRESET (or the errno of the failed system call). The library never prints,
 * never exits, and frees all it allocates.
 *
 * Threads: a client and its pools are not thread-safe; use each client from one thread
 * at a time (or guard it with a lock). Different clients are independent and may be
 * used from different threads at once. sb_code_name() is safe from any thread.
 *
 * Timeouts: timeout_ms < 0 waits as long as it takes, 0 does not wait, > 0 waits at
 * most that many milliseconds for the daemon to hand over a slot or a batch.
 */
#ifndef SHMBROKER_H
#define SHMBROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMBROKER_DEFAULT_SOCKET "/run/shmbroker/shmbroker.sock"

typedef struct sb_client sb_client;
typedef struct sb_pool sb_pool;

typedef enum sb_role {
        SB_ROLE_PRODUCER,
        SB_ROLE_CONSUMER,
        SB_ROLE_ADMIN,
} sb_role;

/* The protocol's error codes (docs/protocol.md), as the daemon sent them. */
typedef enum sb_code {
        SB_CODE_OK = 0,
        SB_CODE_BAD_REQUEST,
        SB_CODE_UNKNOWN_OP,
        SB_CODE_NO_SUCH_POOL,
        SB_CODE_POOL_EXISTS,
        SB_CODE_TIMEOUT,
        SB_CODE_NOT_HOLDER,
        SB_CODE_PERMISSION_DENIED,
        SB_CODE_LIMIT,
        SB_CODE_WRONG_ROLE,
        SB_CODE_NEED_HELLO,
        SB_CODE_INTERNAL,
} sb_code;

/* Options of sb_pool_create(); zero-initialise and set what you need. */
typedef struct sb_pool_options {
        bool ordered;            /* deliver by seq, not publish order */
        bool persistent;         /* stay until dropped, not until the last user leaves */
        bool huge_pages;         /* SHM_HUGETLB */
        bool free_on_consumer_death;  /* a dead consumer's batch is freed, not requeued */
        unsigned mode;           /* permission bits; 0 means 0600 */
        const char *group;       /* group name, or NULL */
} sb_pool_options;

/* A consumed batch. data, meta and slot stay valid until the batch is released; meta
 * is the producer's JSON object as text. data is const, but a consumer whose pool is
 * attached read-write may modify the batch in place until it releases it (sb_pool_open()). */
typedef struct sb_batch {
        bool eof;                /* end of stream: no batch, nothing to release */
        uint32_t slot;
        const void *data;
        size_t nbytes;
        uint64_t seq;
        uint64_t stream;
        const char *meta;
} sb_batch;

/* The most slots one request may take or give (sb_publish_acquire_many(),
 * sb_release_consume_many()). */
#define SB_MANY_MAX 1024

/* An acquired slot: @capacity bytes at @data to write. */
typedef struct sb_slot {
        uint32_t slot;
        void *data;
        size_t capacity;
} sb_slot;

/* One slot to publish: @nbytes written, @seq (< 0: none), @meta JSON object text (NULL: {}). */
typedef struct sb_publish_item {
        uint32_t slot;
        size_t nbytes;
        int64_t seq;
        const char *meta;
} sb_publish_item;

/* --- connections ---------------------------------------------------------------------- */

/* Connect to @path (NULL: $SHMBROKER_SOCKET, else SHMBROKER_DEFAULT_SOCKET) and say hello
 * as @role with @name (may be NULL). On success *ret is a client to free with
 * sb_client_free(). */
int sb_connect(sb_client **ret, const char *path, sb_role role, const char *name);

/* Close the connection, detach every pool and free them and the client. The daemon
 * reclaims every slot still held. Accepts NULL; returns NULL. */
sb_client *sb_client_free(sb_client *c);

/* The code of the last request the daemon refused on @c (SB_CODE_OK if none): the last
 * call failed with that code's errno. A call that failed with another errno (the
 * connection, memory, arguments) leaves SB_CODE_OK. */
sb_code sb_client_code(const sb_client *c);

/* The daemon's message for that refusal ("" if none), for a person: what was wrong and,
 * where there is one, the rule or limit; valid until the next call on @c. */
const char *sb_client_message(const sb_client *c);

/* The wire name of @code ("timeout", ...). */
const char *sb_code_name(sb_code code);

/* pid and uid of this process as the daemon sees them (from hello). */
int sb_client_peer(const sb_client *c, int64_t *pid, int64_t *uid);

/* --- pools ---------------------------------------------------------------------------- */

/* Create pool @name of @slots slots of @slot_size bytes (@opts may be NULL), open it and
 * attach its segment, as sb_pool_open() does. *ret belongs to @c. */
int sb_pool_create(sb_client *c, sb_pool **ret, const char *name, uint64_t slot_size, uint32_t slots,
                   const sb_pool_options *opts);

/* Open existing pool @name and attach its segment: read-write when the kernel allows it
 * (the pool's mode and group give this user write permission), else read-only. A producer
 * needs it read-write (-EACCES otherwise). A consumer attached read-write may modify a
 * batch in place while it holds it (cast away the const of sb_batch.data): nobody else is
 * given the slot until it is released, and a release with requeue passes the modified batch
 * on. Writing through a read-only attachment kills the process with SIGSEGV. */
int sb_pool_open(sb_client *c, sb_pool **ret, const char *name);

/* sb_pool_create() and sb_pool_open() without attaching the segment, for administration
 * (shmbrokerctl create and drop): they work wherever the socket reaches, also from another
 * IPC namespace, where the pool's shmid names no segment. The handle gives the pool's name,
 * shmid and layout, and serves sb_drop(), sb_publish(), sb_release(), sb_end() and
 * sb_pool_close(); sb_pool_base() is NULL, and the calls that hand out slots or batches
 * fail with -EBADFD. The pool is open on the connection as with sb_pool_open(). */
int sb_pool_create_unattached(sb_client *c, sb_pool **ret, const char *name, uint64_t slot_size, uint32_t slots,
                              const sb_pool_options *opts);
int sb_pool_open_unattached(sb_client *c, sb_pool **ret, const char *name);

/* Detach the pool here and free the handle; the daemon keeps it open for the connection
 * (and its slots held) until the client is freed. Accepts NULL; returns NULL. */
sb_pool *sb_pool_close(sb_pool *p);

const char *sb_pool_name(const sb_pool *p);
uint64_t sb_pool_slot_size(const sb_pool *p);
uint64_t sb_pool_stride(const sb_pool *p);
uint32_t sb_pool_slots(const sb_pool *p);
int sb_pool_shmid(const sb_pool *p);
/* The address of the attached segment (NULL for a pool opened unattached); slot N starts
 * at N * stride. */
void *sb_pool_base(const sb_pool *p);
/* Whether the calls on @p run on the pool's control block, without a round trip to the
 * daemon (the fast path; see SHMBROKER_FASTPATH), right now. */
bool sb_pool_fast(const sb_pool *p);

/* --- producing ------------------------------------------------------------------------ */

/* Take a free slot: *ptr points at it (sb_pool_slot_size() bytes: *capacity), *slot
 * names it for sb_publish(). */
int sb_acquire(sb_pool *p, int timeout_ms, void **ptr, uint32_t *slot, size_t *capacity);

/* sb_acquire() for the batch that will be published with @seq. In an ordered pool the
 * daemon keeps its last free slot for the lowest seq not yet published (while nobody may
 * be writing it): a producer that says its seq cannot take that slot for a later one, and
 * one that takes over a dead producer's seqs always gets a slot to fill the gap. */
int sb_acquire_seq(sb_pool *p, uint64_t seq, int timeout_ms, void **ptr, uint32_t *slot, size_t *capacity);

/* Publish @slot with @nbytes written, sequence number @seq (< 0: none; ordered pools
 * need one) and @meta, a JSON object as text (NULL: {}). */
int sb_publish(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta);

/* sb_publish() and the next sb_acquire() in one round trip. Returns the publish's
 * failure if it failed, else the acquire's; whenever the acquire succeeded, *ptr,
 * *next_slot and *capacity describe the slot now held. */
int sb_publish_acquire(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta, int timeout_ms,
                       void **ptr, uint32_t *next_slot, size_t *capacity);

/* Publish the @n_pub slots of @pub (all or none; @n_pub may be 0) and acquire up to
 * @max slots into @slots (@max may be 0), in one round trip. The acquire waits up to
 * @timeout_ms for the first slot and takes the others only if they are free at once;
 * *n_got says how many it took. Returns the publish's failure if it failed, else the
 * acquire's. Handing over several batches per round trip is what makes small batches
 * fast. At most SB_MANY_MAX each. */
int sb_publish_acquire_many(sb_pool *p, const sb_publish_item *pub, size_t n_pub, int timeout_ms, sb_slot *slots,
                            size_t max, size_t *n_got);

/* End the current stream (epoch) for this producer. */
int sb_end(sb_pool *p);

/* --- consuming ------------------------------------------------------------------------ */

/* Take the next ready batch into *batch, or batch->eof at the end of a stream. */
int sb_consume(sb_pool *p, int timeout_ms, sb_batch *batch);

/* Give back a held slot: a batch being read (with @requeue: back to the front of the
 * queue), or a slot being written (unpublished). */
int sb_release(sb_pool *p, uint32_t slot, bool requeue);

/* Release @batch (unless it is eof) and consume the next one into it, in one round trip:
 * the steady state of a consumer. Returns the release's failure if it failed, else the
 * consume's; whenever the consume succeeded, *batch is the batch now held. */
int sb_release_consume(sb_pool *p, sb_batch *batch, int timeout_ms);

/* Release the @n_rel batches of @rel (all or none; eof entries are skipped) and consume
 * up to @max ready batches into @batches (@max may be 0), in one round trip. The consume
 * waits up to @timeout_ms for the first batch and takes the others only if they are
 * ready at once; *n_got says how many it took. At the end of a stream *n_got is 1 and
 * batches[0].eof is set. @rel and @batches may be the same array. Returns the release's
 * failure if it failed, else the consume's. At most SB_MANY_MAX each. */
int sb_release_consume_many(sb_pool *p, const sb_batch *rel, size_t n_rel, int timeout_ms, sb_batch *batches,
                            size_t max, size_t *n_got);

/* --- administration ------------------------------------------------------------------- */

/* Drop the pool (owner or root only); the handle stays valid only for sb_pool_close(). */
int sb_drop(sb_pool *p);

/* The daemon's status (of pool @name, or all if NULL) as a JSON text in *json, to free(). */
int sb_status(sb_client *c, const char *name, char **json);

/* --- driving a client from your own poll loop ----------------------------------------- */

/* Called when the reply to an asynchronous request arrives: @error is 0 or -errno (as
 * for the synchronous call); @batch is set for consume, with @slot and @ptr for acquire. */
typedef void (*sb_reply_fn)(sb_pool *p, int error, const sb_batch *batch, uint32_t slot, void *ptr,
                            void *userdata);

/* The socket to poll, and the events to poll it for (POLLIN, plus POLLOUT while requests
 * are queued unsent). */
int sb_client_fd(const sb_client *c);
short sb_client_events(const sb_client *c);

/* Queue an acquire or consume without waiting; @fn is called from sb_client_process(). */
int sb_acquire_async(sb_pool *p, int timeout_ms, sb_reply_fn fn, void *userdata);
int sb_consume_async(sb_pool *p, int timeout_ms, sb_reply_fn fn, void *userdata);

/* Queue a publish without waiting: the producer writes its next batch while the daemon
 * answers (the outcome, 0 or the failure, is reported through @fn). */
int sb_publish_async(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta, sb_reply_fn fn,
                     void *userdata);

/* Queue a release without waiting (its failure, if any, is reported through @fn). */
int sb_release_async(sb_pool *p, uint32_t slot, bool requeue, sb_reply_fn fn, void *userdata);

/* Write what is queued and handle the replies that have arrived, without blocking.
 * Returns the number of replies handled, or -errno if the connection failed. */
int sb_client_process(sb_client *c);

#ifdef __cplusplus
}
#endif

#endif
