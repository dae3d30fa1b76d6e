/*
 * log.c: one line per message, prefixed "<N>" for journald, written with one
 * write() so that concurrent writers never interleave within a line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int log_max_priority = LOG_INFO;

void log_set_max_priority(int max_priority) {
        log_max_priority = max_priority;
}

static void log_write(int priority, const char *suffix, const char *fmt, va_list ap) {
        char line[2048];
        int n, m;

        if (priority > log_max_priority)
                return;
        n = snprintf(line, sizeof(line), "<%d>", priority);
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
        line[n++] = '\n';
        (void)!write(STDERR_FILENO, line, (size_t)n);
}

void log_full(int priority, const char *fmt, ...) {
        va_list ap;
        int saved = errno;

        va_start(ap, fmt);
        log_write(priority, NULL, fmt, ap);
        va_end(ap);
        errno = saved;
}

int log_full_errno(int priority, int error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_write(priority, strerror(error < 0 ? -error : error), fmt, ap);
        va_end(ap);
        return error;
}
