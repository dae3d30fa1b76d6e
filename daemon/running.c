/*
 * running.c: the pools of the daemon that runs on a socket, asked as any client asks (a
 * hello as admin, then a status), for `--check-config`: a file is compared with the pools
 * that exist as a reload would compare it. Blocking, bounded in time and in size: the
 * process that asks does nothing else.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "running.h"
#include "sb-json.h"
#include "sb-macro.h"
#include "sb-time.h"
#include "sb-unix.h"

#define RUNNING_TIMEOUT_USEC (5 * 1000000ULL)
/* A status without held slots: a few hundred bytes a pool and a client. */
#define RUNNING_REPLY_MAX (64u << 20)

static const char request[] = "{\"op\":\"hello\",\"role\":\"admin\",\"name\":\"shmbrokerd --check-config\"}\n"
                              "{\"op\":\"status\",\"held_max\":0}\n";

/* Wait until @fd is ready for @events, at most until @deadline. */
static int wait_fd(int fd, short events, uint64_t deadline) {
        struct pollfd pfd = { .fd = fd, .events = events };
        uint64_t now;
        int r;

        do {
                now = sb_now_usec();
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&pfd, 1, (int)((deadline - now + 999) / 1000));
        } while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        return r == 0 ? -ETIMEDOUT : 0;
}

/* Send the request and read the two reply lines into *ret (to free()), NUL-terminated. */
static int exchange(int fd, char **ret, SbReason *why) {
        _cleanup_(freep) char *buf = NULL;
        uint64_t deadline = sb_now_usec() + RUNNING_TIMEOUT_USEC;
        size_t len = 0, cap = 0, sent = 0, lines = 0;
        ssize_t n;
        int r;

        while (sent < sizeof(request) - 1) {
                if ((r = wait_fd(fd, POLLOUT, deadline)) < 0)
                        return sb_fail(why, r, "no answer in %llu s", RUNNING_TIMEOUT_USEC / 1000000ULL);
                n = send(fd, request + sent, sizeof(request) - 1 - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        return sb_fail(why, -errno, "cannot send: %s", strerror(errno));
                sent += n > 0 ? (size_t)n : 0;
        }
        while (lines < 2) {
                if (cap - len < 4096) {
                        char *bigger;
                        if (cap >= RUNNING_REPLY_MAX)
                                return sb_fail(why, -EPROTO, "a status reply of more than %u MiB",
                                               RUNNING_REPLY_MAX >> 20);
                        cap = cap ? 2 * cap : 65536;
                        if (!(bigger = realloc(buf, cap)))
                                return -ENOMEM;
                        buf = bigger;
                }
                if ((r = wait_fd(fd, POLLIN, deadline)) < 0)
                        return sb_fail(why, r, "no answer in %llu s", RUNNING_TIMEOUT_USEC / 1000000ULL);
                n = recv(fd, buf + len, cap - len - 1, MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                if (n < 0)
                        return sb_fail(why, -errno, "cannot read: %s", strerror(errno));
                if (n == 0)
                        return sb_fail(why, -EPROTO, "the connection was closed before the status came");
                for (ssize_t i = 0; i < n; i++)
                        lines += buf[len + (size_t)i] == '\n';
                len += (size_t)n;
        }
        buf[len] = 0;
        *ret = steal_ptr(buf);
        return 0;
}

/* The pools of a status reply, as PoolSpecs. */
static int pools_from_status(const cJSON *st, PoolSpec **ret, size_t *n, SbReason *why) {
        const cJSON *pools = cJSON_GetObjectItemCaseSensitive(st, "pools"), *p;
        _cleanup_(freep) PoolSpec *specs = NULL;
        size_t i = 0;

        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "ok")) || !cJSON_IsArray(pools))
                return sb_fail(why, -EPROTO, "the status was refused or is not one");
        specs = calloc((size_t)cJSON_GetArraySize(pools) + 1, sizeof(*specs));
        if (!specs)
                return -ENOMEM;
        cJSON_ArrayForEach(p, pools) {
                const cJSON *configured = cJSON_GetObjectItemCaseSensitive(p, "configured");
                const char *bad_key;
                uint64_t uid, gid;
                SbReason bad;

                /* A status entry describes a pool with the keys of a create. */
                if (pool_spec_from_json(p, SPEC_FROM_CREATE, &specs[i], &bad_key, &bad) != 0 ||
                    sb_json_uint(cJSON_GetObjectItemCaseSensitive(p, "uid"), UINT32_MAX, &uid) < 0 ||
                    sb_json_uint(cJSON_GetObjectItemCaseSensitive(p, "gid"), UINT32_MAX, &gid) < 0)
                        return sb_fail(why, -EPROTO, "a pool in the status that is not one");
                specs[i].uid = (uid_t)uid;
                specs[i].gid = (gid_t)gid;
                /* A daemon that does not say is taken for one whose pools are all configured:
                 * nothing is refused for what it cannot tell. */
                specs[i].configured = !configured || cJSON_IsTrue(configured);
                i++;
        }
        *ret = steal_ptr(specs);
        *n = i;
        return 0;
}

int running_pools(const char *path, PoolSpec **ret, size_t *n, SbReason *why) {
        _cleanup_(closep) int fd = -1;
        _cleanup_(freep) char *text = NULL;
        _cleanup_(cJSON_Deletep) cJSON *hello = NULL, *st = NULL;
        struct sockaddr_un addr;
        const char *second;
        int r;

        r = sb_sockaddr_un(&addr, path);
        if (r < 0)
                return sb_fail(why, r, "not a socket path");
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return sb_fail(why, -errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
                return sb_fail(why, -errno, "%s", strerror(errno));
        r = exchange(fd, &text, why);
        if (r < 0)
                return r;
        /* exchange() read two lines: the hello's reply, then the status. */
        second = text ? strchr(text, '\n') : NULL;
        if (!second)
                return sb_fail(why, -EPROTO, "no reply");
        second++;
        hello = cJSON_ParseWithLength(text, (size_t)(second - text));
        st = cJSON_Parse(second);
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(hello, "ok")))
                return sb_fail(why, -EPROTO, "hello was refused or is not a reply");
        return pools_from_status(st, ret, n, why);
}
