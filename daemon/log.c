/*
 * log.c: one message at a time, to the journal with its fields when stderr is the
 * journal's stream, else as one "<N>message" line on stderr, written with one write() so
 * that concurrent writers never interleave within a line.
 *
 * Why JOURNAL_STREAM rather than "whenever /run/systemd/journal/socket exists": a
 * developer who runs the daemon in a terminal (make run) on a machine with journald wants
 * its messages in that terminal, and a daemon whose stderr someone redirected to a file
 * wants them there. systemd sets JOURNAL_STREAM to the device and inode of the stream it
 * connected stderr to, for exactly this upgrade to the native protocol (systemd.exec(5)).
 * A message that the journal refuses is written on stderr, as it would be otherwise.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Otherwise sd_journal_sendv() adds CODE_FILE= and CODE_LINE= of its call: always log.c. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"

static int log_max_priority = LOG_INFO;

/* One id per kind of event, made once with `systemd-id128 new`: `journalctl
 * MESSAGE_ID=...` finds every event of a kind whatever its words. Never change one. */
static const struct {
        const char *name;
        const char *id;
} events[_LOG_EVENT_MAX] = {
        [LOG_EVENT_NONE] = { "none", NULL },
        [LOG_EVENT_STARTED] = { "started", "825d597c78554cf8a2afd142b1404cdd" },
        [LOG_EVENT_STOPPING] = { "stopping", "d51b757f91174a078a43f6758cae785d" },
        [LOG_EVENT_CONFIG_RELOADED] = { "config_reloaded", "bc011bd1092f4bf3a772d2010fb99663" },
        [LOG_EVENT_CONFIG_REFUSED] = { "config_refused", "65528627d3b44581ba3b62b119c3b451" },
        [LOG_EVENT_POOL_CREATED] = { "pool_created", "256adb7506d541478c00c332b77b7c28" },
        [LOG_EVENT_POOL_DROPPED] = { "pool_dropped", "f3185a3b76ee416084597a42f5e36a68" },
        [LOG_EVENT_POOL_REMOVED] = { "pool_removed", "81a257f4b7874271bb5b5f9b12af709c" },
        [LOG_EVENT_CLIENT_CONNECTED] = { "client_connected", "ecd70058efb444c08bb5c3ec6c02d07f" },
        [LOG_EVENT_CLIENT_DISCONNECTED] = { "client_disconnected", "0aa380b430bf475c9dc751725f982b3d" },
        [LOG_EVENT_SLOTS_RECLAIMED] = { "slots_reclaimed", "57079662f9004778a63cc50dfade6e89" },
        [LOG_EVENT_LIMIT] = { "limit", "2046a4f683b346f6810d3b5a6e04dcec" },
        [LOG_EVENT_ORPHAN_REMOVED] = { "orphan_removed", "cdeffc7e8fb3416d984916f5c2160962" },
};

const char *log_event_id(LogEvent event) {
        return (unsigned)event < _LOG_EVENT_MAX ? events[event].id : NULL;
}

const char *log_event_name(LogEvent event) {
        return (unsigned)event < _LOG_EVENT_MAX ? events[event].name : "?";
}

void log_set_max_priority(int max_priority) {
        log_max_priority = max_priority;
}

bool log_stream_is(const char *journal_stream, int fd) {
        unsigned long long dev, ino;
        struct stat st;
        int n = 0;

        /* A daemon started from a shell of a service inherits the variable with another
         * stderr: only the very stream counts. */
        return journal_stream && sscanf(journal_stream, "%llu:%llu%n", &dev, &ino, &n) == 2 &&
               journal_stream[n] == 0 && fstat(fd, &st) == 0 && (unsigned long long)st.st_dev == dev &&
               (unsigned long long)st.st_ino == ino;
}

bool log_stderr_is_journal(void) {
        static int cached = -1;

        if (cached < 0)
                cached = log_stream_is(getenv("JOURNAL_STREAM"), STDERR_FILENO);
        return cached;
}

static void entry_add(LogEntry *e, char *field) {
        e->fields[e->n_fields++] = (struct iovec){ .iov_base = field, .iov_len = strlen(field) };
}

void log_entry_build(LogEntry *e, int priority, LogEvent event, const char *pool, const struct ucred *client,
                     const char *message) {
        static char identifier[] = "SYSLOG_IDENTIFIER=shmbrokerd";
        const char *id = log_event_id(event);

        e->n_fields = 0;
        snprintf(e->message, sizeof(e->message), "MESSAGE=%s", message);
        entry_add(e, e->message);
        snprintf(e->priority, sizeof(e->priority), "PRIORITY=%d", priority & LOG_PRIMASK);
        entry_add(e, e->priority);
        entry_add(e, identifier);
        if (id) {
                snprintf(e->message_id, sizeof(e->message_id), "MESSAGE_ID=%s", id);
                entry_add(e, e->message_id);
        }
        if (pool) {
                snprintf(e->pool, sizeof(e->pool), "POOL=%s", pool);
                entry_add(e, e->pool);
        }
        if (client) {
                snprintf(e->pid, sizeof(e->pid), "CLIENT_PID=%d", (int)client->pid);
                entry_add(e, e->pid);
                snprintf(e->uid, sizeof(e->uid), "CLIENT_UID=%u", (unsigned)client->uid);
                entry_add(e, e->uid);
        }
}

static void log_write(int priority, LogEvent event, const char *pool, const struct ucred *client, const char *suffix,
                      const char *fmt, va_list ap) {
        char line[LOG_MESSAGE_MAX];
        int prefix, n, m;

        if (priority > log_max_priority)
                return;
        n = prefix = snprintf(line, sizeof(line), "<%d>", priority);
        m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        n = (m < 0) ? n : (n + m >= (int)sizeof(line) - 1 ? (int)sizeof(line) - 2 : n + m);
        if (suffix) {
                m = snprintf(line + n, sizeof(line) - (size_t)n, ": %s", suffix);
                n = n + m >= (int)sizeof(line) - 1 ? (int)sizeof(line) - 2 : n + m;
        }
        /* A message never spans lines: a newline in it would become a second entry. */
        for (int i = 0; i < n; i++)
                if (line[i] == '\n')
                        line[i] = ' ';
        if (log_stderr_is_journal()) {
                LogEntry e;

                line[n] = 0;
                log_entry_build(&e, priority, event, pool, client, line + prefix);
                if (sd_journal_sendv(e.fields, (int)e.n_fields) >= 0)
                        return;
        }
        line[n++] = '\n';
        (void)!write(STDERR_FILENO, line, (size_t)n);
}

void log_event(int priority, LogEvent event, const char *pool, const struct ucred *client, const char *fmt, ...) {
        va_list ap;
        int saved = errno;

        va_start(ap, fmt);
        log_write(priority, event, pool, client, NULL, fmt, ap);
        va_end(ap);
        errno = saved;
}

void log_full(int priority, const char *fmt, ...) {
        va_list ap;
        int saved = errno;

        va_start(ap, fmt);
        log_write(priority, LOG_EVENT_NONE, NULL, NULL, NULL, fmt, ap);
        va_end(ap);
        errno = saved;
}

int log_full_errno(int priority, int error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_write(priority, LOG_EVENT_NONE, NULL, NULL, strerror(error < 0 ? -error : error), fmt, ap);
        va_end(ap);
        return error;
}
