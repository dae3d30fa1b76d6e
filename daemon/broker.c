/*
 * broker.c: the pools by name, the clients, and accepting new clients.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "protocol.h"
#include "sb-error.h"
#include "sb-size.h"
#include "sb-time.h"

int broker_new(Broker **ret, sd_event *event, Config *config) {
        Broker *b = calloc(1, sizeof(*b));

        if (!b) {
                config_free(config);
                return -ENOMEM;
        }
        b->event = sd_event_ref(event);
        b->config = config;
        b->uid = geteuid();
        b->gid = getegid();
        b->started_usec = sb_now_usec();
        sb_list_init(&b->pools);
        sb_list_init(&b->conns);
        *ret = b;
        return 0;
}

Broker *broker_free(Broker *b) {
        if (!b)
                return NULL;
        Conn *c;
        Pool *p;

        while ((c = sb_list_first_entry(&b->conns, Conn, link)))
                conn_free(c);
        while ((p = sb_list_first_entry(&b->pools, Pool, owner_link)))
                broker_drop_pool(b, p);
        sd_event_source_disable_unref(b->listen_source);
        sd_event_unref(b->event);
        config_free(b->config);
        free(b->usage);
        free(b);
        return NULL;
}

UidUsage *broker_usage(Broker *b, uid_t uid) {
        UidUsage *u;

        if (uid == 0 || uid == b->uid)
                return NULL;
        /* Few distinct uids use one daemon: a linear scan at connect and create only. */
        for (size_t i = 0; i < b->n_usage; i++)
                if (b->usage[i].uid == uid)
                        return &b->usage[i];
        u = realloc(b->usage, (b->n_usage + 1) * sizeof(*u));
        if (!u)
                return NULL;
        b->usage = u;
        u = &b->usage[b->n_usage++];
        *u = (UidUsage){ .uid = uid };
        return u;
}

Pool *broker_find_pool(Broker *b, const char *name) {
        SbList *it;

        sb_list_for_each(it, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                if (strcmp(p->spec.name, name) == 0)
                        return p;
        }
        return NULL;
}

int broker_create_pool(Broker *b, const PoolSpec *spec, Pool **ret, char *why, size_t len) {
        const ConfigLimits *lim = &b->config->limits;
        uint64_t stride, size, total;
        UidUsage *usage;
        char x[32], y[32], z[32];
        Pool *p;
        int r;

        if (broker_find_pool(b, spec->name)) {
                snprintf(why, len, "pool \"%s\" exists", spec->name);
                return SB_E_POOL_EXISTS;
        }
        if (b->n_pools >= lim->max_pools) {
                snprintf(why, len, "the limit max_pools (%llu) is reached", (unsigned long long)lim->max_pools);
                return SB_E_LIMIT;
        }
        r = pool_spec_layout(spec, &stride, &size, why, len);
        if (r != 0)
                return r;
        usage = broker_usage(b, spec->uid);
        if (usage && usage->pools >= lim->max_pools_per_uid) {
                snprintf(why, len, "uid %u has %u pools: the quota max_pools_per_uid (%llu) is reached",
                         (unsigned)spec->uid, usage->pools, (unsigned long long)lim->max_pools_per_uid);
                return SB_E_LIMIT;
        }
        if (usage && (__builtin_add_overflow(usage->bytes, size, &total) || total > lim->max_bytes_per_uid)) {
                snprintf(why, len, "a pool of %s would exceed the quota max_bytes_per_uid (%s) of uid %u",
                         sb_format_size(size, x, sizeof(x)), sb_format_size(lim->max_bytes_per_uid, y, sizeof(y)),
                         (unsigned)spec->uid);
                return SB_E_LIMIT;
        }
        if (__builtin_add_overflow(b->pool_bytes, size, &total) || total > lim->max_bytes) {
                snprintf(why, len, "a pool of %s would exceed the limit max_bytes (%s, %s in use)",
                         sb_format_size(size, x, sizeof(x)), sb_format_size(lim->max_bytes, y, sizeof(y)),
                         sb_format_size(b->pool_bytes, z, sizeof(z)));
                return SB_E_LIMIT;
        }
        r = pool_new(&p, spec, why, len);
        if (r != 0)
                return r;
        sb_list_append(&b->pools, &p->owner_link);
        b->n_pools++;
        b->pool_bytes += p->seg.size;
        if (usage) {
                usage->pools++;
                usage->bytes += p->seg.size;
        }
        *ret = p;
        return 0;
}

void broker_drop_pool(Broker *b, Pool *p) {
        UidUsage *usage = broker_usage(b, p->spec.uid);

        if (usage) {
                usage->pools--;
                usage->bytes -= p->seg.size;
        }
        b->n_pools--;
        b->pool_bytes -= p->seg.size;
        pool_free(p);
}

void broker_pool_gc(Broker *b, Pool *p) {
        if (!p->spec.persistent && pool_is_unused(p)) {
                log_debug("pool \"%s\" has no users left: removing it", p->spec.name);
                broker_drop_pool(b, p);
        }
}

static gid_t lookup_group(const char *name, bool *found) {
        char buf[4096];
        struct group gr, *res = NULL;

        *found = getgrnam_r(name, &gr, buf, sizeof(buf), &res) == 0 && res;
        return *found ? res->gr_gid : (gid_t)-1;
}

int broker_create_configured_pools(Broker *b, char *why, size_t len) {
        for (size_t i = 0; i < b->config->n_pools; i++) {
                PoolSpec spec = b->config->pools[i].spec;
                const char *group = b->config->pools[i].group;
                char reason[256];
                Pool *p;
                int r;

                if (broker_find_pool(b, spec.name))
                        continue;
                spec.uid = b->uid;
                spec.gid = b->gid;
                if (group[0]) {
                        bool found;
                        gid_t gid = lookup_group(group, &found);
                        if (found)
                                spec.gid = gid;
                        else {
                                /* Falling back to our own group could admit the wrong users:
                                 * give the group no access instead. */
                                log_warning("pool \"%s\": no group \"%s\" on this system: group access removed",
                                            spec.name, group);
                                spec.mode &= ~070u;
                        }
                }
                r = broker_create_pool(b, &spec, &p, reason, sizeof(reason));
                if (r != 0) {
                        snprintf(why, len, "pool \"%s\": %s", spec.name, r > 0 ? reason : strerror(-r));
                        return r > 0 ? -EINVAL : r;
                }
                log_info("pool \"%s\": %u slots of %llu bytes, shmid %d", spec.name, spec.slots,
                         (unsigned long long)spec.slot_size, p->seg.shmid);
        }
        return 0;
}

/* --- clients ----------------------------------------------------------------------- */

static void refuse_client(Broker *b, int fd) {
        char msg[192];
        SbBytes out = { 0 };
        cJSON *reply;

        snprintf(msg, sizeof(msg), "too many clients: the limit max_clients (%llu) is reached",
                 (unsigned long long)b->config->limits.max_clients);
        reply = reply_new_error(NULL, SB_E_LIMIT, msg);
        if (reply && reply_print(reply, &out) == 0)
                (void)!send(fd, out.data, sb_bytes_pending(&out), MSG_NOSIGNAL | MSG_DONTWAIT);
        cJSON_Delete(reply);
        free(out.data);
        close(fd);
}

static int broker_on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Broker *b = userdata;

        (void)s;
        (void)revents;
        /* Take a bounded number per wake-up so a connect flood cannot starve clients. */
        for (int i = 0; i < 64; i++) {
                Conn *c;
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_warning_errno(-errno, "accept failed");
                        break;
                }
                if (b->n_conns >= b->config->limits.max_clients) {
                        log_warning("refusing a client: max_clients (%llu) reached",
                                    (unsigned long long)b->config->limits.max_clients);
                        refuse_client(b, cfd);
                        continue;
                }
                if (conn_new(&c, b, cfd) < 0)
                        log_warning("cannot set up a new client");
        }
        return 0;
}

int broker_listen(Broker *b, int fd) {
        return sd_event_add_io(b->event, &b->listen_source, fd, EPOLLIN, broker_on_accept, b);
}

static const ConfigPool *config_find_pool(const Config *c, const char *name) {
        for (size_t i = 0; i < c->n_pools; i++)
                if (strcmp(c->pools[i].spec.name, name) == 0)
                        return &c->pools[i];
        return NULL;
}

void broker_reload(Broker *b, Config *config) {
        SbList *it, *tmp;
        char why[512];

        config_free(b->config);
        b->config = config;
        sb_list_for_each_safe(it, tmp, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                const ConfigPool *cp;

                if (!p->spec.configured)
                        continue;
                cp = config_find_pool(config, p->spec.name);
                if (!cp) {
                        log_info("pool \"%s\" is no longer configured: it goes once unused", p->spec.name);
                        p->spec.configured = false;
                        p->spec.persistent = false;
                        broker_pool_gc(b, p);
                } else if (cp->spec.slot_size != p->spec.slot_size || cp->spec.slots != p->spec.slots ||
                           cp->spec.ordered != p->spec.ordered || cp->spec.huge_pages != p->spec.huge_pages) {
                        log_warning("pool \"%s\" keeps its layout until it is dropped", p->spec.name);
                }
        }
        if (broker_create_configured_pools(b, why, sizeof(why)) < 0)
                log_error("configuration reloaded, but %s", why);
}
