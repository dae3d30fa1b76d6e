/*
 * log.h: the daemon's log. Under journald (stderr is the stream the service manager
 * connected to the journal: JOURNAL_STREAM), each message goes to the journal with its
 * fields: PRIORITY, MESSAGE, MESSAGE_ID for the kinds of event an administrator looks
 * for, POOL, CLIENT_PID and CLIENT_UID. Otherwise it is one line on stderr with its
 * sd-daemon priority prefix ("<3>..."), which journald also understands.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <syslog.h>

#include "sb-macro.h"

/* The kinds of event that carry a MESSAGE_ID (log.c has the one table of the ids). */
typedef enum LogEvent {
        LOG_EVENT_NONE,              /* no MESSAGE_ID */
        LOG_EVENT_STARTED,           /* listening, configured pools made */
        LOG_EVENT_STOPPING,
        LOG_EVENT_CONFIG_RELOADED,
        LOG_EVENT_CONFIG_REFUSED,    /* a reload refused: the running configuration stays */
        LOG_EVENT_POOL_CREATED,
        LOG_EVENT_POOL_DROPPED,      /* by a client's drop */
        LOG_EVENT_POOL_REMOVED,      /* an ephemeral pool whose last user left */
        LOG_EVENT_CLIENT_CONNECTED,
        LOG_EVENT_CLIENT_DISCONNECTED,
        LOG_EVENT_SLOTS_RECLAIMED,   /* a client left holding slots */
        LOG_EVENT_LIMIT,             /* a client refused or disconnected for a limit */
        LOG_EVENT_ORPHAN_REMOVED,    /* a segment of a killed daemon removed at start */
        _LOG_EVENT_MAX,
} LogEvent;

/* The MESSAGE_ID of @event: 32 hex digits, NULL for LOG_EVENT_NONE. */
const char *log_event_id(LogEvent event);

/* The name of @event in the table ("pool_created"), for tests and people. */
const char *log_event_name(LogEvent event);

/* Lines above @max_priority (LOG_DEBUG is the most verbose) are not written. */
void log_set_max_priority(int max_priority);

/* Log @fmt at @priority as @event, about pool @pool and client @client (each NULL when the
 * message is about none). */
void log_event(int priority, LogEvent event, const char *pool, const struct ucred *client, const char *fmt, ...)
        _printf_(5, 6);

void log_full(int priority, const char *fmt, ...) _printf_(2, 3);

/* Log @fmt at @priority with ": <strerror(-error)>" appended; returns @error. */
int log_full_errno(int priority, int error, const char *fmt, ...) _printf_(3, 4);

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_error_errno(error, ...) log_full_errno(LOG_ERR, error, __VA_ARGS__)
#define log_warning_errno(error, ...) log_full_errno(LOG_WARNING, error, __VA_ARGS__)

/* --- below: the journal entry of one message, built apart so that tests can read it --- */

#define LOG_MESSAGE_MAX 2048
#define LOG_FIELDS_MAX 7

typedef struct LogEntry {
        struct iovec fields[LOG_FIELDS_MAX];     /* "NAME=value", as sd_journal_sendv() takes them */
        size_t n_fields;
        char message[sizeof("MESSAGE=") + LOG_MESSAGE_MAX];
        char priority[sizeof("PRIORITY=") + 4];
        char message_id[sizeof("MESSAGE_ID=") + 32];
        char pool[sizeof("POOL=") + 256];
        char pid[sizeof("CLIENT_PID=") + 24];
        char uid[sizeof("CLIENT_UID=") + 24];
} LogEntry;

/* The fields of @message (one line of text, no prefix) at @priority as @event, about
 * @pool and @client (NULL: none). The entry points into itself: do not copy it. */
void log_entry_build(LogEntry *e, int priority, LogEvent event, const char *pool, const struct ucred *client,
                     const char *message);

/* Whether @fd is the stream that @journal_stream ("DEV:INODE", the value of
 * JOURNAL_STREAM, or NULL) names. */
bool log_stream_is(const char *journal_stream, int fd);

/* Whether stderr is the journal's stream that JOURNAL_STREAM names (systemd.exec(5));
 * looked at once. */
bool log_stderr_is_journal(void);
