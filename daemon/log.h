/*
 * log.h: the daemon's log, on stderr with sd-daemon priority prefixes ("<3>..."),
 * so that journald keeps each line's level when the daemon runs as a service.
 */
#pragma once

#include <syslog.h>

#include "sb-macro.h"

/* Lines above @max_priority (LOG_DEBUG is the most verbose) are not written. */
void log_set_max_priority(int max_priority);

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
