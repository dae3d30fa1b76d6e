/*
 * main.c: shmbrokerd's command line, signals, service notifications and main loop.
 *
 * Only this file turns errors into exit codes: 0 after SIGTERM or SIGINT, 1 when the
 * daemon cannot start (bad configuration, socket in use), 2 for bad usage; with
 * --check-config, 0 for a good file and 1 for a bad one.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "broker.h"
#include "config.h"
#include "creator.h"
#include "listener.h"
#include "log.h"
#include "running.h"
#include "sb-group.h"
#include "sb-macro.h"
#include "socket.h"

typedef struct Options {
        const char *socket;
        const char *config;
        const char *check_config;
        bool verbose;
} Options;

#define STATUS_INTERVAL_USEC (2 * 1000000ULL)
/* Descriptors the daemon needs besides its clients': std streams, the listening socket,
 * the event loop's epoll, signal and timer descriptors. */
#define FD_RESERVE 16

typedef struct Daemon {
        Broker *broker;
        Listener *listener;
        const char *config_path;
        bool config_explicit;
        uint64_t last_published;     /* for the batches/s of STATUS= */
        sd_event_source *status_timer;
} Daemon;

static void help(void) {
        printf("Usage: shmbrokerd [OPTIONS]\n\n"
               "Hand out SysV shared-memory batch slots to producers and consumers.\n\n"
               "  --socket PATH   listen on PATH (default: $SHMBROKER_SOCKET, the configuration's\n"
               "                  \"socket\", or " CONFIG_DEFAULT_SOCKET ")\n"
               "  --config PATH   read PATH (default: " CONFIG_DEFAULT_PATH ", if it exists)\n"
               "  --check-config PATH\n"
               "                  check PATH as a start and a reload do, then exit: 0 if it is\n"
               "                  good, 1 with the line and the reason on stderr if not; against\n"
               "                  the pools of the daemon on the socket, when one listens there\n"
               "  -v, --verbose   log debug messages\n"
               "  -h, --help      show this help\n"
               "  --version       show the version\n");
}

static int parse_argv(int argc, char **argv, Options *o) {
        enum { ARG_SOCKET = 0x100, ARG_CONFIG, ARG_CHECK_CONFIG, ARG_VERSION };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "check-config", required_argument, NULL, ARG_CHECK_CONFIG },
                { "verbose", no_argument, NULL, 'v' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { 0 }
        };
        int c;

        while ((c = getopt_long(argc, argv, "vh", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        o->socket = optarg;
                        break;
                case ARG_CONFIG:
                        o->config = optarg;
                        break;
                case ARG_CHECK_CONFIG:
                        o->check_config = optarg;
                        break;
                case 'v':
                        o->verbose = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("shmbrokerd " SHMBROKER_VERSION "\n");
                        return 0;
                default:
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "shmbrokerd: unexpected argument \"%s\"\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static uint64_t total_published(Broker *b) {
        uint64_t n = 0;
        SbList *it;

        sb_list_for_each(it, &b->pools)
                n += pool_stats(sb_list_entry(it, Pool, owner_link))->published;
        return n;
}

static void notify_status(Daemon *d) {
        Broker *b = d->broker;
        uint64_t now = total_published(b);
        /* Pools come and go, so the total can shrink: count only what grew. */
        uint64_t delta = now >= d->last_published ? now - d->last_published : 0;

        d->last_published = now;
        (void)sd_notifyf(false, "STATUS=%u pools, %u clients, %.1f batches/s", b->n_pools, b->n_sessions,
                         (double)delta * 1e6 / (double)STATUS_INTERVAL_USEC);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        notify_status(userdata);
        return sd_event_source_set_time(s, usec + STATUS_INTERVAL_USEC);
}

/* Keep STATUS= current for `systemctl status`, when there is a service manager to tell. */
static int setup_status_timer(Daemon *d) {
        int r;

        if (!getenv("NOTIFY_SOCKET"))
                return 0;
        r = sd_event_add_time_relative(d->broker->event, &d->status_timer, CLOCK_MONOTONIC, STATUS_INTERVAL_USEC,
                                       0, on_status_timer, d);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(d->status_timer, SD_EVENT_ON);
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void)userdata;
        log_event(LOG_INFO, LOG_EVENT_STOPPING, NULL, NULL, "received %s, shutting down",
                  strsignal((int)si->ssi_signo));
        (void)sd_notify(false, "STOPPING=1");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static bool str_eq(const char *a, const char *b) {
        return a == b || (a && b && strcmp(a, b) == 0);
}

/* The socket is made once, at start: a reload does not move it. */
static bool socket_settings_differ(const Config *running, const Config *next) {
        return !str_eq(running->socket, next->socket) || running->socket_mode != next->socket_mode ||
               !str_eq(running->socket_group, next->socket_group);
}

static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Daemon *d = userdata;
        Config *config;
        SbReason why = { "" };
        bool socket_changed = false;
        int r;

        (void)s;
        (void)si;
        (void)sd_notify(false, "RELOADING=1");
        r = config_load(d->config_path, !d->config_explicit, &config, &why);
        if (r >= 0) {
                socket_changed = socket_settings_differ(d->broker->config, config);
                r = broker_reload(d->broker, config, &why);
        }
        if (r < 0) {
                log_event(LOG_ERR, LOG_EVENT_CONFIG_REFUSED, NULL, NULL,
                          "configuration not reloaded, the running one stays: %s", why.text);
        } else {
                log_event(LOG_INFO, LOG_EVENT_CONFIG_RELOADED, NULL, NULL, "configuration reloaded from %s",
                          d->config_path);
                if (socket_changed)
                        log_notice("the socket settings changed: they apply at the next start");
        }
        (void)sd_notify(false, "READY=1");
        notify_status(d);
        return 0;
}

static int setup_signals(sd_event *event, Daemon *d) {
        sigset_t mask;
        int r;

        /* Signals arrive through sd-event's signalfd, which needs them blocked. A write to
         * a client that went away must fail with EPIPE, not kill the daemon. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        if ((r = sd_event_add_signal(event, NULL, SIGTERM, on_terminate, d)) < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGINT, on_terminate, d)) < 0 ||
            (r = sd_event_add_signal(event, NULL, SIGHUP, on_reload, d)) < 0)
                return r;
        return 0;
}

static const char *socket_path(const Options *o, const Config *c) {
        const char *env = getenv("SHMBROKER_SOCKET");

        if (o->socket)
                return o->socket;
        if (env && *env)
                return env;
        return c->socket ? c->socket : CONFIG_DEFAULT_SOCKET;
}

static gid_t socket_group(const Config *c) {
        gid_t gid;

        if (!c->socket_group)
                return (gid_t)-1;
        if (sb_group_lookup(c->socket_group, false, &gid) < 0) {
                log_warning("socket_group \"%s\" does not exist: the socket keeps the daemon's group",
                            c->socket_group);
                return (gid_t)-1;
        }
        return gid;
}

/* Returns the listening fd, and whether we bound it ourselves (and must unlink it). */
static int open_listener(const Options *o, const Config *c, const char **path, bool *own) {
        int fd = -1, r;

        /* A socket from systemd (socket activation) wins over every path. */
        r = socket_from_systemd(&fd);
        if (r < 0)
                return log_error_errno(r, "cannot use the socket passed by systemd");
        if (r > 0) {
                *own = false;
                *path = NULL;
                log_event(LOG_INFO, LOG_EVENT_STARTED, NULL, NULL, "listening on the socket passed by systemd");
                return fd;
        }
        *path = socket_path(o, c);
        r = socket_listen_unix(*path, c->socket_mode, socket_group(c), &fd);
        if (r == -EADDRINUSE)
                return log_error_errno(r, "%s: another shmbrokerd is listening there", *path);
        if (r < 0)
                return log_error_errno(r, "cannot listen on %s", *path);
        *own = true;
        log_event(LOG_INFO, LOG_EVENT_STARTED, NULL, NULL, "listening on %s", *path);
        return fd;
}

/* One descriptor per client: take every descriptor the hard limit allows (the soft limit
 * is often 1024, below max_clients plus what the daemon needs itself), and say so when
 * that is still too few (the listener then waits for a client to leave: listener.c). */
static void raise_fd_limit(const Config *c) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < c->limits.max_clients + FD_RESERVE)
                log_warning("the descriptor limit (%llu) is too low for max_clients (%llu): raise LimitNOFILE= "
                            "or lower max_clients", (unsigned long long)rl.rlim_max,
                            (unsigned long long)c->limits.max_clients);
}

/* Read and check the configuration at @path, as a start does and --check-config. */
static int read_config(const char *path, bool missing_ok, Config **ret, SbReason *why) {
        _cleanup_(config_freep) Config *c = NULL;
        int r = config_load(path, missing_ok, &c, why);

        if (r < 0)
                return r;
        r = broker_check_config(NULL, c, why);
        if (r < 0)
                return r;
        *ret = steal_ptr(c);
        return 0;
}

/* --check-config: the checks of a start, and, when a daemon listens on the socket the file
 * (or --socket, or $SHMBROKER_SOCKET) names, those of a reload against its pools, with a
 * notice for each configured pool that the file would change (applied only once dropped). */
static int check_config(const Options *o) {
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_(freep) PoolSpec *live = NULL;
        SbReason why = { "" };
        const char *path;
        size_t n = 0;
        int r = config_load(o->check_config, false, &c, &why);

        if (r < 0) {
                log_error("%s", why.text);
                return r;
        }
        path = socket_path(o, c);
        r = running_pools(path, &live, &n, &why);
        if (r == -ENOENT || r == -ECONNREFUSED)
                log_debug("no daemon listens on %s: no pools to compare with", path);
        else if (r < 0)
                log_notice("the pools of the daemon on %s were not compared with the file: %s", path, why.text);
        r = broker_check_config_against(c, live, n, &why);
        if (r < 0)
                log_error("%s", why.text);
        return r;
}

static int run(const Options *o) {
        _cleanup_(broker_freep) Broker *b = NULL;
        sd_event *event = NULL;
        Daemon d = { .config_path = o->config ? o->config : CONFIG_DEFAULT_PATH, .config_explicit = !!o->config };
        const char *path = NULL;
        Config *config;
        SbReason why = { "" };
        bool own = false;
        int fd, r;

        r = read_config(d.config_path, !d.config_explicit, &config, &why);
        if (r < 0) {
                log_error("bad configuration: %s", why.text);
                return r;
        }
        raise_fd_limit(config);
        r = sd_event_default(&event);
        if (r < 0) {
                config_free(config);
                return log_error_errno(r, "cannot create the event loop");
        }
        r = broker_new(&b, event, config);
        sd_event_unref(event);
        if (r < 0)
                return log_error_errno(r, "cannot create the broker");
        d.broker = b;
        r = setup_signals(b->event, &d);
        if (r < 0)
                return log_error_errno(r, "cannot set up signals");
        /* With WATCHDOG_USEC set, sd-event sends WATCHDOG=1 pings on its own. */
        (void)sd_event_set_watchdog(b->event, true);

        r = creator_prepare(b, &why);
        if (r < 0) {
                log_error("%s", why.text);
                return r;
        }
        r = broker_create_configured_pools(b, &why);
        if (r < 0) {
                log_error("cannot create the configured pools: %s", why.text);
                return r;
        }
        fd = open_listener(o, b->config, &path, &own);
        if (fd < 0)
                return fd;
        r = listener_new(&d.listener, b, fd);
        if (r < 0) {
                log_error_errno(r, "cannot watch the socket");
        } else {
                (void)sd_notify(false, "READY=1");
                notify_status(&d);
                r = setup_status_timer(&d);
                if (r >= 0)
                        r = sd_event_loop(b->event);
                if (r < 0)
                        log_error_errno(r, "event loop failed");
        }
        d.status_timer = sd_event_source_disable_unref(d.status_timer);
        /* Disconnect every client, then detach every segment; each goes once its last
         * client detaches too. */
        d.listener = listener_free(d.listener);
        b = broker_free(b);
        if (own)
                (void)unlink(path);
        close(fd);
        return r < 0 ? r : 0;
}

int main(int argc, char **argv) {
        Options o = { 0 };
        int r;

        r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        log_set_max_priority(o.verbose ? LOG_DEBUG : LOG_INFO);
        r = o.check_config ? check_config(&o) : run(&o);
        return r < 0 ? 1 : 0;
}
