/*
 * libshmbroker.c: the client library.
 *
 * Every request goes through one queue: it is formatted into the output buffer and a
 * Pending record is appended; replies come back in request order, so each reply line
 * completes the oldest Pending. A synchronous call queues its request(s) and runs the
 * same machinery (poll, write, read, dispatch) until its own Pending completes; an
 * asynchronous one returns at once and its callback runs from sb_client_process().
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "sb-bytes.h"
#include "sb-error.h"
#include "sb-macro.h"
#include "shmbroker.h"

#define READ_CHUNK (64u << 10)
#define LINE_MAX_BYTES (16u << 20)

typedef enum ReqKind {
        REQ_HELLO,
        REQ_POOL,         /* create or open */
        REQ_ACQUIRE,
        REQ_CONSUME,
        REQ_PLAIN,        /* publish, release, end, drop: ok or error only */
        REQ_STATUS,
} ReqKind;

typedef struct Pending {
        struct Pending *next;
        ReqKind kind;
        sb_pool *pool;
        sb_reply_fn fn;          /* asynchronous: called with the outcome */
        void *userdata;
        bool orphan;             /* asynchronous, for a pool closed since: drop the reply */
        bool done;               /* synchronous: the outcome is here */
        int error;
        cJSON *reply;
} Pending;

struct sb_pool {
        sb_client *client;
        sb_pool *next;
        char name[65];
        int shmid;
        uint64_t slot_size, stride, size;
        uint32_t slots;
        uint8_t *base;
        char **meta;             /* per slot, while a consumed batch is held */
};

struct sb_client {
        int fd;
        sb_role role;
        int64_t pid, uid;
        char *in;
        size_t in_len, in_cap;
        SbBytes out;             /* requests not yet written */
        Pending *head, *tail;
        sb_pool *pools;
        sb_code code;
        char message[512];
        int broken;              /* -errno once the connection failed */
};

/* The one map from protocol codes to errnos. */
static const int code_errno[] = {
        [SB_CODE_OK] = 0,
        [SB_CODE_BAD_REQUEST] = -EINVAL,
        [SB_CODE_UNKNOWN_OP] = -EOPNOTSUPP,
        [SB_CODE_NO_SUCH_POOL] = -ENOENT,
        [SB_CODE_POOL_EXISTS] = -EEXIST,
        [SB_CODE_TIMEOUT] = -ETIMEDOUT,
        [SB_CODE_NOT_HOLDER] = -EPERM,
        [SB_CODE_PERMISSION_DENIED] = -EACCES,
        [SB_CODE_LIMIT] = -ENOSPC,
        [SB_CODE_WRONG_ROLE] = -EPERM,
        [SB_CODE_NEED_HELLO] = -EPROTO,
        [SB_CODE_INTERNAL] = -EIO,
};

_Static_assert((int)SB_CODE_INTERNAL == (int)SB_E_INTERNAL && (int)SB_CODE_LIMIT == (int)SB_E_LIMIT &&
               (int)SB_CODE_BAD_REQUEST == (int)SB_E_BAD_REQUEST && (int)SB_CODE_NEED_HELLO == (int)SB_E_NEED_HELLO,
               "the public codes mirror the protocol's");

_public_ const char *sb_code_name(sb_code code) {
        return sb_error_code((int)code);
}

_public_ sb_code sb_client_code(const sb_client *c) {
        return c->code;
}

_public_ const char *sb_client_message(const sb_client *c) {
        return c->message;
}

_public_ int sb_client_fd(const sb_client *c) {
        return c->fd;
}

_public_ short sb_client_events(const sb_client *c) {
        return (short)(POLLIN | (sb_bytes_pending(&c->out) > 0 ? POLLOUT : 0));
}

_public_ int sb_client_peer(const sb_client *c, int64_t *pid, int64_t *uid) {
        if (pid)
                *pid = c->pid;
        if (uid)
                *uid = c->uid;
        return 0;
}

static bool name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;

        return n > 0 && n <= 64 && name[0] != '.' && name[0] != '-' &&
               strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* --- the wire ------------------------------------------------------------------------ */

/* Queue one request line (formatted) and its Pending record. */
_printf_(3, 4)
static int queue_request(sb_client *c, Pending *pd, const char *fmt, ...) {
        char small[512], *line = small;
        va_list ap;
        int n, r;

        if (c->broken)
                return c->broken;
        va_start(ap, fmt);
        n = vsnprintf(small, sizeof(small), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= sizeof(small)) {
                line = malloc((size_t)n + 1);
                if (!line)
                        return -ENOMEM;
                va_start(ap, fmt);
                vsnprintf(line, (size_t)n + 1, fmt, ap);
                va_end(ap);
        }
        r = sb_bytes_append(&c->out, line, (size_t)n);
        if (line != small)
                free(line);
        if (r < 0)
                return r;
        pd->next = NULL;
        if (c->tail)
                c->tail->next = pd;
        else
                c->head = pd;
        c->tail = pd;
        return 0;
}

static int flush_out(sb_client *c) {
        while (sb_bytes_pending(&c->out) > 0) {
                ssize_t n = send(c->fd, c->out.data + c->out.off, sb_bytes_pending(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        return -errno;
                }
                sb_bytes_consume(&c->out, (size_t)n);
        }
        return 0;
}

static int reply_error(sb_client *c, cJSON *reply) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(reply, "error");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(reply, "message");
        SbError e = sb_error_from_code(cJSON_IsString(code) ? code->valuestring : NULL);

        c->code = (sb_code)e;
        snprintf(c->message, sizeof(c->message), "%s", cJSON_IsString(msg) ? msg->valuestring : "");
        return code_errno[e];
}

static uint64_t num(const cJSON *o, const char *key) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
        return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (uint64_t)v->valuedouble : 0;
}

/* Fill @b from a consume reply, keeping the meta text with the held slot. */
static int batch_from_reply(sb_pool *p, const cJSON *reply, sb_batch *b) {
        const cJSON *meta;
        uint64_t slot, nbytes;
        char *text;

        *b = (sb_batch){ 0 };
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "eof"))) {
                b->eof = true;
                return 0;
        }
        slot = num(reply, "slot");
        nbytes = num(reply, "nbytes");
        if (slot >= p->slots || nbytes > p->slot_size)
                return -EPROTO;
        meta = cJSON_GetObjectItemCaseSensitive(reply, "meta");
        /* An empty meta (the common case for raw bytes) needs no copy of its own. */
        text = meta && meta->child ? cJSON_PrintUnformatted(meta) : NULL;
        if (meta && meta->child && !text)
                return -ENOMEM;
        free(p->meta[slot]);
        p->meta[slot] = text;
        b->slot = (uint32_t)slot;
        b->data = p->base + slot * p->stride;
        b->nbytes = nbytes;
        b->seq = num(reply, "seq");
        b->stream = num(reply, "stream");
        b->meta = text ? text : "{}";
        return 0;
}

static int acquired_from_reply(sb_pool *p, const cJSON *reply, void **ptr, uint32_t *slot, size_t *cap) {
        uint64_t s = num(reply, "slot");

        if (s >= p->slots)
                return -EPROTO;
        if (ptr)
                *ptr = p->base + s * p->stride;
        if (slot)
                *slot = (uint32_t)s;
        if (cap)
                *cap = (size_t)p->slot_size;
        return 0;
}

/* Complete the oldest Pending with @reply (taken). */
static void complete(sb_client *c, cJSON *reply, int error) {
        Pending *pd = c->head;

        c->head = pd->next;
        if (!c->head)
                c->tail = NULL;
        if (pd->orphan) {
                cJSON_Delete(reply);
                free(pd);
                return;
        }
        if (!error && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "ok")))
                error = reply_error(c, reply);
        if (!pd->fn) {
                pd->done = true;
                pd->error = error;
                pd->reply = reply;
                return;
        }
        if (pd->kind == REQ_CONSUME) {
                sb_batch b = { 0 };
                if (!error)
                        error = batch_from_reply(pd->pool, reply, &b);
                pd->fn(pd->pool, error, error ? NULL : &b, b.slot, NULL, pd->userdata);
        } else if (pd->kind == REQ_ACQUIRE) {
                void *ptr = NULL;
                uint32_t slot = 0;
                if (!error)
                        error = acquired_from_reply(pd->pool, reply, &ptr, &slot, NULL);
                pd->fn(pd->pool, error, NULL, slot, ptr, pd->userdata);
        } else {
                pd->fn(pd->pool, error, NULL, 0, NULL, pd->userdata);
        }
        cJSON_Delete(reply);
        free(pd);
}

static void fail_all(sb_client *c, int error) {
        c->broken = error;
        while (c->head)
                complete(c, NULL, error);
}

static int read_replies(sb_client *c) {
        int handled = 0;
        size_t pos = 0;
        ssize_t n;

        if (c->in_cap - c->in_len < READ_CHUNK) {
                size_t cap = c->in_cap ? c->in_cap * 2 : (size_t)READ_CHUNK * 2;
                char *p;
                if (cap > LINE_MAX_BYTES + READ_CHUNK)
                        return -EPROTO;
                p = realloc(c->in, cap);
                if (!p)
                        return -ENOMEM;
                c->in = p;
                c->in_cap = cap;
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n < 0)
                return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
        if (n == 0)
                return -ECONNRESET;
        c->in_len += (size_t)n;
        for (;;) {
                char *nl = memchr(c->in + pos, '\n', c->in_len - pos);
                cJSON *reply;
                if (!nl)
                        break;
                reply = cJSON_ParseWithLength(c->in + pos, (size_t)(nl - (c->in + pos)));
                pos = (size_t)(nl - c->in) + 1;
                if (!c->head) {
                        /* A line nobody asked for: the daemon refusing the connection. */
                        int e = reply ? reply_error(c, reply) : -EPROTO;
                        cJSON_Delete(reply);
                        return e ? e : -EPROTO;
                }
                if (!reply)
                        return -EPROTO;
                complete(c, reply, 0);
                handled++;
        }
        memmove(c->in, c->in + pos, c->in_len - pos);
        c->in_len -= pos;
        return handled;
}

_public_ int sb_client_process(sb_client *c) {
        int r;

        if (c->broken)
                return c->broken;
        r = flush_out(c);
        if (r >= 0)
                r = read_replies(c);
        if (r < 0)
                fail_all(c, r);
        return r;
}

/* Run the machinery until @pd is done; returns its error and leaves its reply in it. */
static int wait_done(sb_client *c, Pending *pd) {
        while (!pd->done) {
                struct pollfd pfd = { .fd = c->fd, .events = sb_client_events(c) };
                int r;

                if (c->broken && !pd->done)
                        return c->broken;
                r = flush_out(c);
                if (r < 0) {
                        fail_all(c, r);
                        continue;
                }
                pfd.events = sb_client_events(c);
                if (poll(&pfd, 1, -1) < 0) {
                        if (errno != EINTR)
                                fail_all(c, -errno);
                        continue;
                }
                if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
                        r = read_replies(c);
                        if (r < 0)
                                fail_all(c, r);
                }
        }
        return pd->error;
}

static Pending *pending_new(ReqKind kind, sb_pool *p) {
        Pending *pd = calloc(1, sizeof(*pd));

        if (pd) {
                pd->kind = kind;
                pd->pool = p;
        }
        return pd;
}

static Pending *pending_free(Pending *pd) {
        if (pd) {
                cJSON_Delete(pd->reply);
                free(pd);
        }
        return NULL;
}
DEFINE_CLEANUP_FUNC(Pending, pending_free)


/* Queue a synchronous request and wait for its reply: 0 with *reply (to delete), or -errno. */
static int call_line(sb_client *c, ReqKind kind, sb_pool *p, const char *line, cJSON **reply) {
        _cleanup_(pending_freep) Pending *pd = pending_new(kind, p);
        int r;

        if (!pd)
                return -ENOMEM;
        c->code = SB_CODE_OK;
        c->message[0] = 0;
        r = queue_request(c, pd, "%s", line);
        if (r < 0)
                return r;
        r = wait_done(c, pd);
        if (r == 0 && reply)
                *reply = steal_ptr(pd->reply);
        return r;
}

/* A JSON string literal of @s (with quotes), malloc'd. */
static char *json_quote(const char *s) {
        cJSON *str = cJSON_CreateString(s);
        char *out = str ? cJSON_PrintUnformatted(str) : NULL;

        cJSON_Delete(str);
        return out;
}

/* @meta as one line of JSON, to free(): NULL stays NULL (meaning {}, with nothing to
 * allocate), else it must be a JSON object. */
static int meta_line(const char *meta, char **ret) {
        cJSON *m;

        *ret = NULL;
        if (!meta)
                return 0;
        m = cJSON_Parse(meta);
        if (!cJSON_IsObject(m)) {
                cJSON_Delete(m);
                return -EINVAL;
        }
        *ret = cJSON_PrintUnformatted(m);
        cJSON_Delete(m);
        return *ret ? 0 : -ENOMEM;
}

/* --- connections ---------------------------------------------------------------------- */

static int connect_unix(const char *path) {
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        int fd;

        size_t len = strlen(path);

        if (len >= sizeof(addr.sun_path))
                return -ENAMETOOLONG;
        memcpy(addr.sun_path, path, len + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static const char *const role_names[] = { "producer", "consumer", "admin" };

_public_ sb_client *sb_client_free(sb_client *c) {
        if (!c)
                return NULL;
        /* sb_pool_close() unlinks the pool it frees from c->pools. */
        while (c->pools)
                sb_pool_close(c->pools);  // NOLINT(clang-analyzer-unix.Malloc)
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        fail_all(c, -ECONNABORTED);
        free(c->in);
        free(c->out.data);
        free(c);
        return NULL;
}
DEFINE_CLEANUP_FUNC(sb_client, sb_client_free)

_public_ int sb_connect(sb_client **ret, const char *path, sb_role role, const char *name) {
        _cleanup_(sb_client_freep) sb_client *c = NULL;
        _cleanup_(freep) char *qname = NULL, *line = NULL;
        cJSON *reply = NULL;
        int r;

        if (!ret || role < SB_ROLE_PRODUCER || role > SB_ROLE_ADMIN)
                return -EINVAL;
        if (!path)
                path = getenv("SHMBROKER_SOCKET");
        if (!path || !*path)
                path = SHMBROKER_DEFAULT_SOCKET;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = -1;
        c->role = role;
        r = connect_unix(path);
        /* c is freed by its _cleanup_ on every return below. */
        if (r < 0)
                return r;  // cppcheck-suppress memleak
        c->fd = r;
        if (name && !(qname = json_quote(name)))
                return -ENOMEM;  // cppcheck-suppress memleak
        if (asprintf(&line, "{\"op\":\"hello\",\"role\":\"%s\"%s%s}\n", role_names[role], qname ? ",\"name\":" : "",
                     qname ? qname : "") < 0)
                return -ENOMEM;  // cppcheck-suppress memleak
        r = call_line(c, REQ_HELLO, NULL, line, &reply);
        if (r < 0)
                return r;
        c->pid = (int64_t)num(reply, "pid");
        c->uid = (int64_t)num(reply, "uid");
        cJSON_Delete(reply);
        *ret = steal_ptr(c);
        return 0;
}

/* --- pools ---------------------------------------------------------------------------- */

static int pool_from_reply(sb_client *c, const cJSON *reply, sb_pool **ret) {
        sb_pool *p = calloc(1, sizeof(*p));
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(reply, "pool");
        const cJSON *shmid = cJSON_GetObjectItemCaseSensitive(reply, "shmid");
        void *base;

        if (!p)
                return -ENOMEM;
        p->client = c;
        snprintf(p->name, sizeof(p->name), "%s", cJSON_IsString(name) ? name->valuestring : "");
        p->shmid = cJSON_IsNumber(shmid) ? (int)shmid->valuedouble : -1;
        p->slot_size = num(reply, "slot_size");
        p->stride = num(reply, "stride");
        p->slots = (uint32_t)num(reply, "slots");
        p->size = num(reply, "size");
        p->meta = calloc(p->slots ? p->slots : 1, sizeof(char *));
        if (!p->meta || p->shmid < 0 || p->stride < p->slot_size || p->size < p->stride * p->slots) {
                int r = p->meta ? -EPROTO : -ENOMEM;
                free(p->meta);
                free(p);
                return r;
        }
        /* Attach once: producers read-write, others read-only. The segment is already
         * marked for removal by the daemon; Linux still lets us attach it by shmid. */
        base = shmat(p->shmid, NULL, c->role == SB_ROLE_PRODUCER ? 0 : SHM_RDONLY);
        if (base == (void *)-1) {  /* NOLINT(performance-no-int-to-ptr): shmat()'s error value */
                int r = -errno;
                free(p->meta);
                free(p);
                return r;
        }
        p->base = base;
        p->next = c->pools;
        c->pools = p;
        *ret = p;
        return 0;
}

/* Send a create or open line and adopt the pool its reply describes. */
static int call_pool(sb_client *c, const char *line, sb_pool **ret) {
        cJSON *reply = NULL;
        int r = call_line(c, REQ_POOL, NULL, line, &reply);

        if (r < 0)
                return r;
        r = pool_from_reply(c, reply, ret);
        cJSON_Delete(reply);
        return r;
}

_public_ int sb_pool_create(sb_client *c, sb_pool **ret, const char *name, uint64_t slot_size, uint32_t slots,
                            const sb_pool_options *opts) {
        static const sb_pool_options none = { 0 };
        _cleanup_(freep) char *line = NULL, *group = NULL;

        if (!opts)
                opts = &none;
        if (!name_valid(name) || !ret)
                return -EINVAL;
        if (opts->group && !(group = json_quote(opts->group)))
                return -ENOMEM;
        if (asprintf(&line, "{\"op\":\"create\",\"pool\":\"%s\",\"slot_size\":%llu,\"slots\":%u,\"ordered\":%s,"
                     "\"persistent\":%s,\"huge_pages\":%s,\"on_consumer_death\":\"%s\",\"mode\":\"%04o\"%s%s}\n",
                     name, (unsigned long long)slot_size, slots, opts->ordered ? "true" : "false",
                     opts->persistent ? "true" : "false", opts->huge_pages ? "true" : "false",
                     opts->free_on_consumer_death ? "free" : "requeue", opts->mode ? opts->mode : 0600,
                     group ? ",\"group\":" : "", group ? group : "") < 0)
                return -ENOMEM;
        return call_pool(c, line, ret);
}

_public_ int sb_pool_open(sb_client *c, sb_pool **ret, const char *name) {
        _cleanup_(freep) char *line = NULL;

        if (!name_valid(name) || !ret)
                return -EINVAL;
        if (asprintf(&line, "{\"op\":\"open\",\"pool\":\"%s\"}\n", name) < 0)
                return -ENOMEM;
        return call_pool(c, line, ret);
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
        /* Requests still queued for this pool complete without it. */
        for (Pending *pd = p->client->head; pd; pd = pd->next)
                if (pd->pool == p && pd->fn)
                        pd->orphan = true;
        if (p->base)
                shmdt(p->base);
        for (uint32_t i = 0; i < p->slots; i++)
                free(p->meta[i]);
        free(p->meta);
        free(p);
        return NULL;
}

_public_ const char *sb_pool_name(const sb_pool *p) { return p->name; }
_public_ uint64_t sb_pool_slot_size(const sb_pool *p) { return p->slot_size; }
_public_ uint64_t sb_pool_stride(const sb_pool *p) { return p->stride; }
_public_ uint32_t sb_pool_slots(const sb_pool *p) { return p->slots; }
_public_ int sb_pool_shmid(const sb_pool *p) { return p->shmid; }
_public_ void *sb_pool_base(const sb_pool *p) { return p->base; }

/* --- producing and consuming ---------------------------------------------------------- */

/* An acquire or consume request: @op, with a timeout_ms unless it waits forever, and a
 * "max" for the many-slot form (@max > 0). */
static int format_take(const sb_pool *p, const char *op, int timeout_ms, size_t max, char *buf, size_t len) {
        char maxs[32] = "", tos[32] = "";

        if (max)
                snprintf(maxs, sizeof(maxs), ",\"max\":%zu", max);
        if (timeout_ms >= 0)
                snprintf(tos, sizeof(tos), ",\"timeout_ms\":%d", timeout_ms);
        return snprintf(buf, len, "{\"op\":\"%s\",\"pool\":\"%s\"%s%s}\n", op, p->name, tos, maxs);
}

static int format_acquire(const sb_pool *p, int timeout_ms, char *buf, size_t len) {
        return format_take(p, "acquire", timeout_ms, 0, buf, len);
}

static int format_consume(const sb_pool *p, int timeout_ms, char *buf, size_t len) {
        return format_take(p, "consume", timeout_ms, 0, buf, len);
}

static int format_release(const sb_pool *p, uint32_t slot, bool requeue, char *buf, size_t len) {
        return snprintf(buf, len, "{\"op\":\"release\",\"pool\":\"%s\",\"slot\":%u%s}\n", p->name, slot,
                        requeue ? ",\"requeue\":true" : "");
}

_printf_(2, 3)
static int bytes_printf(SbBytes *b, const char *fmt, ...) {
        va_list ap;
        char *at = sb_bytes_reserve(b, 256);
        int n;

        if (!at)
                return -ENOMEM;
        /* One pass when it fits in what is free already, as nearly everything does. */
        va_start(ap, fmt);
        n = vsnprintf(at, sb_bytes_room(b), fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;
        if ((size_t)n >= sb_bytes_room(b)) {
                if (!(at = sb_bytes_reserve(b, (size_t)n + 1)))
                        return -ENOMEM;
                va_start(ap, fmt);
                vsnprintf(at, (size_t)n + 1, fmt, ap);
                va_end(ap);
        }
        sb_bytes_commit(b, (size_t)n);  /* the NUL stays past the end: b->data is a string */
        return 0;
}

/* "slot":N,"nbytes":N[,"seq":N],"meta":{...} */
static int format_publish_fields(SbBytes *b, const sb_publish_item *e) {
        _cleanup_(freep) char *m = NULL;
        char seqs[32] = "";
        int r = meta_line(e->meta, &m);

        if (r < 0)
                return r;
        if (e->seq >= 0)
                snprintf(seqs, sizeof(seqs), ",\"seq\":%lld", (long long)e->seq);
        return bytes_printf(b, "\"slot\":%u,\"nbytes\":%zu%s,\"meta\":%s", e->slot, e->nbytes, seqs, m ? m : "{}");
}

/* A publish of one slot (its fields in the request) or of several ("batches"). */
static int format_publish(const sb_pool *p, const sb_publish_item *v, size_t n, SbBytes *b) {
        int r = bytes_printf(b, "{\"op\":\"publish\",\"pool\":\"%s\",%s", p->name, n == 1 ? "" : "\"batches\":[");

        for (size_t i = 0; i < n && r == 0; i++) {
                if (n > 1)
                        r = bytes_printf(b, "%s{", i ? "," : "");
                if (r == 0)
                        r = format_publish_fields(b, &v[i]);
                if (r == 0 && n > 1)
                        r = bytes_printf(b, "}");
        }
        return r < 0 ? r : bytes_printf(b, "%s}\n", n == 1 ? "" : "]");
}

/* A release of one slot, or of several ("slots"); eof entries have no slot. */
static int format_release_many(const sb_pool *p, const sb_batch *v, size_t n, SbBytes *b) {
        int r = bytes_printf(b, "{\"op\":\"release\",\"pool\":\"%s\",\"slots\":[", p->name);

        for (size_t i = 0, k = 0; i < n && r == 0; i++)
                if (!v[i].eof)
                        r = bytes_printf(b, "%s%u", k++ ? "," : "", v[i].slot);
        return r < 0 ? r : bytes_printf(b, "]}\n");
}

static void bytes_done(SbBytes *b) {
        free(b->data);
}

/* Queue two requests in one write and wait for both: their outcomes in *r1 and *r2, and
 * the second's reply in *reply2 when it succeeded. Either line may be NULL (not sent,
 * outcome 0). Returns 0 or -errno (nothing sent). */
static int call_two(sb_client *c, sb_pool *p, ReqKind k1, const char *l1, ReqKind k2, const char *l2,
                    int *r1, int *r2, cJSON **reply2) {
        _cleanup_(pending_freep) Pending *a = pending_new(k1, p), *b = pending_new(k2, p);
        int r;

        *r1 = *r2 = 0;
        if (!a || !b)
                return -ENOMEM;
        c->code = SB_CODE_OK;
        c->message[0] = 0;
        r = l1 ? queue_request(c, a, "%s", l1) : 0;
        if (r < 0)
                return r;
        r = l2 ? queue_request(c, b, "%s", l2) : 0;
        if (r < 0) {
                if (l1)
                        (void)wait_done(c, a);
                return r;
        }
        if (l1)
                *r1 = wait_done(c, a);
        if (l2)
                *r2 = wait_done(c, b);
        if (l2 && *r2 == 0)
                *reply2 = steal_ptr(b->reply);
        return 0;
}

_public_ int sb_acquire(sb_pool *p, int timeout_ms, void **ptr, uint32_t *slot, size_t *capacity) {
        char line[256];
        cJSON *reply = NULL;
        int r;

        format_acquire(p, timeout_ms, line, sizeof(line));
        r = call_line(p->client, REQ_ACQUIRE, p, line, &reply);
        if (r == 0)
                r = acquired_from_reply(p, reply, ptr, slot, capacity);
        cJSON_Delete(reply);
        return r;
}

_public_ int sb_publish(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta) {
        const sb_publish_item e = { .slot = slot, .nbytes = nbytes, .seq = seq, .meta = meta };
        _cleanup_(bytes_done) SbBytes line = { 0 };
        int r = format_publish(p, &e, 1, &line);

        return r < 0 ? r : call_line(p->client, REQ_PLAIN, p, line.data, NULL);
}

_public_ int sb_publish_acquire(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta,
                                int timeout_ms, void **ptr, uint32_t *next_slot, size_t *capacity) {
        const sb_publish_item e = { .slot = slot, .nbytes = nbytes, .seq = seq, .meta = meta };
        _cleanup_(bytes_done) SbBytes line = { 0 };
        char acq[256];
        cJSON *reply = NULL;
        int r1, r2, r = format_publish(p, &e, 1, &line);

        if (r < 0)
                return r;
        format_acquire(p, timeout_ms, acq, sizeof(acq));
        r = call_two(p->client, p, REQ_PLAIN, line.data, REQ_ACQUIRE, acq, &r1, &r2, &reply);
        if (r < 0)
                return r;
        if (r2 == 0)
                r2 = acquired_from_reply(p, reply, ptr, next_slot, capacity);
        cJSON_Delete(reply);
        return r1 ? r1 : r2;
}

/* The "slots" of a many-slot acquire reply. */
static int slots_from_reply(sb_pool *p, const cJSON *reply, sb_slot *out, size_t max, size_t *n) {
        const cJSON *it, *arr = cJSON_GetObjectItemCaseSensitive(reply, "slots");
        int r;

        if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) > max)
                return -EPROTO;
        cJSON_ArrayForEach(it, arr) {
                sb_slot *s = &out[*n];
                r = acquired_from_reply(p, it, &s->data, &s->slot, &s->capacity);
                if (r < 0)
                        return r;
                (*n)++;
        }
        return 0;
}

_public_ int sb_publish_acquire_many(sb_pool *p, const sb_publish_item *pub, size_t n_pub, int timeout_ms,
                                     sb_slot *slots, size_t max, size_t *n_got) {
        _cleanup_(bytes_done) SbBytes line = { 0 };
        char acq[256];
        cJSON *reply = NULL;
        int r1, r2, r;

        *n_got = 0;
        if (n_pub > SB_MANY_MAX || max > SB_MANY_MAX || (n_pub && !pub) || (max && !slots))
                return -EINVAL;
        if (n_pub && (r = format_publish(p, pub, n_pub, &line)) < 0)
                return r;
        format_take(p, "acquire", timeout_ms, max, acq, sizeof(acq));
        r = call_two(p->client, p, REQ_PLAIN, n_pub ? line.data : NULL, REQ_ACQUIRE, max ? acq : NULL, &r1, &r2,
                     &reply);
        if (r < 0)
                return r;
        if (max && r2 == 0)
                r2 = slots_from_reply(p, reply, slots, max, n_got);
        cJSON_Delete(reply);
        return r1 ? r1 : r2;
}

_public_ int sb_consume(sb_pool *p, int timeout_ms, sb_batch *batch) {
        char line[256];
        cJSON *reply = NULL;
        int r;

        format_consume(p, timeout_ms, line, sizeof(line));
        r = call_line(p->client, REQ_CONSUME, p, line, &reply);
        if (r == 0)
                r = batch_from_reply(p, reply, batch);
        cJSON_Delete(reply);
        return r;
}

static void forget_meta(sb_pool *p, uint32_t slot) {
        if (slot < p->slots) {
                free(p->meta[slot]);
                p->meta[slot] = NULL;
        }
}

_public_ int sb_release(sb_pool *p, uint32_t slot, bool requeue) {
        char line[256];
        int r;

        format_release(p, slot, requeue, line, sizeof(line));
        r = call_line(p->client, REQ_PLAIN, p, line, NULL);
        if (r == 0)
                forget_meta(p, slot);
        return r;
}

_public_ int sb_release_consume(sb_pool *p, sb_batch *batch, int timeout_ms) {
        char rel[256], con[256];
        cJSON *reply = NULL;
        uint32_t old = batch->slot;
        int r, r1, r2;

        if (batch->eof)
                return sb_consume(p, timeout_ms, batch);
        format_release(p, old, false, rel, sizeof(rel));
        format_consume(p, timeout_ms, con, sizeof(con));
        r = call_two(p->client, p, REQ_PLAIN, rel, REQ_CONSUME, con, &r1, &r2, &reply);
        if (r < 0)
                return r;
        if (r1 == 0)
                forget_meta(p, old);
        if (r2 == 0)
                r2 = batch_from_reply(p, reply, batch);
        cJSON_Delete(reply);
        return r1 ? r1 : r2;
}

/* The "batches" of a many-slot consume reply, or its end of stream. */
static int batches_from_reply(sb_pool *p, const cJSON *reply, sb_batch *out, size_t max, size_t *n) {
        const cJSON *it, *arr = cJSON_GetObjectItemCaseSensitive(reply, "batches");
        int r;

        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "eof"))) {
                out[0] = (sb_batch){ .eof = true };
                *n = 1;
                return 0;
        }
        if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) > max)
                return -EPROTO;
        cJSON_ArrayForEach(it, arr) {
                r = batch_from_reply(p, it, &out[*n]);
                if (r < 0)
                        return r;
                (*n)++;
        }
        return 0;
}

_public_ int sb_release_consume_many(sb_pool *p, const sb_batch *rel, size_t n_rel, int timeout_ms,
                                     sb_batch *batches, size_t max, size_t *n_got) {
        _cleanup_(bytes_done) SbBytes line = { 0 };
        char con[256];
        cJSON *reply = NULL;
        size_t held = 0;
        int r1, r2, r;

        *n_got = 0;
        if (n_rel > SB_MANY_MAX || max > SB_MANY_MAX || (n_rel && !rel) || (max && !batches))
                return -EINVAL;
        for (size_t i = 0; i < n_rel; i++)
                held += !rel[i].eof;
        if (held && (r = format_release_many(p, rel, n_rel, &line)) < 0)
                return r;
        format_take(p, "consume", timeout_ms, max, con, sizeof(con));
        r = call_two(p->client, p, REQ_PLAIN, held ? line.data : NULL, REQ_CONSUME, max ? con : NULL, &r1, &r2,
                     &reply);
        if (r < 0)
                return r;
        /* The released slots' metas go before the new batches take theirs: @rel and
         * @batches may be one array, and a slot may come straight back. */
        for (size_t i = 0; r1 == 0 && i < n_rel; i++)
                if (!rel[i].eof)
                        forget_meta(p, rel[i].slot);
        if (max && r2 == 0)
                r2 = batches_from_reply(p, reply, batches, max, n_got);
        cJSON_Delete(reply);
        return r1 ? r1 : r2;
}

_public_ int sb_end(sb_pool *p) {
        char line[128];

        snprintf(line, sizeof(line), "{\"op\":\"end\",\"pool\":\"%s\"}\n", p->name);
        return call_line(p->client, REQ_PLAIN, p, line, NULL);
}

_public_ int sb_drop(sb_pool *p) {
        char line[128];

        snprintf(line, sizeof(line), "{\"op\":\"drop\",\"pool\":\"%s\"}\n", p->name);
        return call_line(p->client, REQ_PLAIN, p, line, NULL);
}

_public_ int sb_status(sb_client *c, const char *name, char **json) {
        char line[128];
        cJSON *reply = NULL;
        int r;

        if (name && !name_valid(name))
                return -EINVAL;
        if (name)
                snprintf(line, sizeof(line), "{\"op\":\"status\",\"pool\":\"%s\"}\n", name);
        else
                snprintf(line, sizeof(line), "{\"op\":\"status\"}\n");
        r = call_line(c, REQ_STATUS, NULL, line, &reply);
        if (r < 0)
                return r;
        cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
        *json = cJSON_PrintUnformatted(reply);
        cJSON_Delete(reply);
        return *json ? 0 : -ENOMEM;
}

/* --- asynchronous requests ------------------------------------------------------------ */

static int queue_async(sb_pool *p, ReqKind kind, const char *line, sb_reply_fn fn, void *userdata) {
        Pending *pd;
        int r;

        if (!fn)
                return -EINVAL;
        pd = pending_new(kind, p);
        if (!pd)
                return -ENOMEM;
        pd->fn = fn;
        pd->userdata = userdata;
        r = queue_request(p->client, pd, "%s", line);
        if (r < 0) {
                free(pd);
                return r;
        }
        r = flush_out(p->client);
        if (r < 0)
                fail_all(p->client, r);
        return 0;
}

_public_ int sb_acquire_async(sb_pool *p, int timeout_ms, sb_reply_fn fn, void *userdata) {
        char line[256];

        format_acquire(p, timeout_ms, line, sizeof(line));
        return queue_async(p, REQ_ACQUIRE, line, fn, userdata);
}

_public_ int sb_consume_async(sb_pool *p, int timeout_ms, sb_reply_fn fn, void *userdata) {
        char line[256];

        format_consume(p, timeout_ms, line, sizeof(line));
        return queue_async(p, REQ_CONSUME, line, fn, userdata);
}

_public_ int sb_publish_async(sb_pool *p, uint32_t slot, size_t nbytes, int64_t seq, const char *meta, sb_reply_fn fn,
                              void *userdata) {
        const sb_publish_item e = { .slot = slot, .nbytes = nbytes, .seq = seq, .meta = meta };
        _cleanup_(bytes_done) SbBytes line = { 0 };
        int r = format_publish(p, &e, 1, &line);

        return r < 0 ? r : queue_async(p, REQ_PLAIN, line.data, fn, userdata);
}

_public_ int sb_release_async(sb_pool *p, uint32_t slot, bool requeue, sb_reply_fn fn, void *userdata) {
        char line[256];

        format_release(p, slot, requeue, line, sizeof(line));
        forget_meta(p, slot);
        return queue_async(p, REQ_PLAIN, line, fn, userdata);
}
