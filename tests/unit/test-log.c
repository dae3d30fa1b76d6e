/*
 * The log: the journal fields of each kind of event, the ids' table, which stream counts
 * as the journal's, and the plain "<N>" lines otherwise.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "unit.h"

/* The fields of @e as one string, "A=1|B=2". */
static const char *fields(const LogEntry *e) {
        static char buf[4096];
        size_t n = 0;

        buf[0] = 0;
        for (size_t i = 0; i < e->n_fields; i++)
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.*s", i ? "|" : "", (int)e->fields[i].iov_len,
                                      (const char *)e->fields[i].iov_base);
        return buf;
}

START_TEST(every_event_has_its_own_fixed_id) {
        ck_assert_ptr_null(log_event_id(LOG_EVENT_NONE));
        ck_assert_ptr_null(log_event_id(_LOG_EVENT_MAX));
        for (int i = 1; i < _LOG_EVENT_MAX; i++) {
                const char *id = log_event_id((LogEvent)i);

                ck_assert_ptr_nonnull(id);
                ck_assert_uint_eq(strlen(id), 32);                      /* 128 bits, as journalctl prints them */
                for (const char *c = id; *c; c++)
                        ck_assert_msg(isxdigit((unsigned char)*c) && !isupper((unsigned char)*c), "%s", id);
                for (int j = 1; j < i; j++) {
                        ck_assert_str_ne(id, log_event_id((LogEvent)j));
                        ck_assert_str_ne(log_event_name((LogEvent)i), log_event_name((LogEvent)j));
                }
        }
        /* Ids never change: journalctl MESSAGE_ID=... queries and alerts name them. */
        ck_assert_str_eq(log_event_id(LOG_EVENT_POOL_CREATED), "256adb7506d541478c00c332b77b7c28");
        ck_assert_str_eq(log_event_name(LOG_EVENT_POOL_REMOVED), "pool_removed");
}
END_TEST

START_TEST(an_event_about_a_pool_and_a_client_carries_both) {
        struct ucred cred = { .pid = 4242, .uid = 1000, .gid = 1000 };
        LogEntry e;

        log_entry_build(&e, LOG_INFO, LOG_EVENT_POOL_CREATED, "train", &cred, "pool \"train\" created");
        ck_assert_str_eq(fields(&e), "MESSAGE=pool \"train\" created|PRIORITY=6|SYSLOG_IDENTIFIER=shmbrokerd|"
                                     "MESSAGE_ID=256adb7506d541478c00c332b77b7c28|POOL=train|CLIENT_PID=4242|"
                                     "CLIENT_UID=1000");
}
END_TEST

START_TEST(fields_only_for_what_the_message_is_about) {
        struct ucred root = { .pid = 1, .uid = 0 };
        LogEntry e;

        log_entry_build(&e, LOG_ERR, LOG_EVENT_NONE, NULL, NULL, "cannot listen");
        ck_assert_str_eq(fields(&e), "MESSAGE=cannot listen|PRIORITY=3|SYSLOG_IDENTIFIER=shmbrokerd");
        log_entry_build(&e, LOG_INFO, LOG_EVENT_POOL_REMOVED, "e.1", NULL, "removed");
        ck_assert_str_eq(fields(&e), "MESSAGE=removed|PRIORITY=6|SYSLOG_IDENTIFIER=shmbrokerd|"
                                     "MESSAGE_ID=81a257f4b7874271bb5b5f9b12af709c|POOL=e.1");
        log_entry_build(&e, LOG_WARNING, LOG_EVENT_LIMIT, NULL, &root, "refused");
        ck_assert_str_eq(fields(&e), "MESSAGE=refused|PRIORITY=4|SYSLOG_IDENTIFIER=shmbrokerd|"
                                     "MESSAGE_ID=2046a4f683b346f6810d3b5a6e04dcec|CLIENT_PID=1|CLIENT_UID=0");
        ck_assert_uint_le(e.n_fields, LOG_FIELDS_MAX);
}
END_TEST

START_TEST(a_long_message_is_cut_not_overrun) {
        char big[3 * LOG_MESSAGE_MAX];
        LogEntry e;

        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        log_entry_build(&e, LOG_INFO, LOG_EVENT_NONE, NULL, NULL, big);
        ck_assert_uint_eq(e.fields[0].iov_len, sizeof(e.message) - 1);
}
END_TEST

/* JOURNAL_STREAM names the journal's stream by device and inode: only that very stream
 * counts, not another one the variable was inherited with. */
START_TEST(only_the_named_stream_is_the_journal) {
        char name[] = "/tmp/shmbroker-log-XXXXXX", value[64];
        int fd = mkstemp(name), other = open("/dev/null", O_WRONLY);
        struct stat st;

        ck_assert_int_ge(fd, 0);
        unlink(name);
        ck_assert_int_eq(fstat(fd, &st), 0);
        snprintf(value, sizeof(value), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        ck_assert(log_stream_is(value, fd));
        ck_assert(!log_stream_is(value, other));
        ck_assert(!log_stream_is(NULL, fd));
        ck_assert(!log_stream_is("", fd));
        snprintf(value, sizeof(value), "%llu:%llux", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        ck_assert(!log_stream_is(value, fd));
        snprintf(value, sizeof(value), "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino + 1);
        ck_assert(!log_stream_is(value, fd));
        close(fd);
        close(other);
}
END_TEST

/* Not the journal's stream: one "<N>message" line, a newline in it made a space, the
 * errno text after ": ", lines above the maximum priority left out. */
START_TEST(plain_lines_otherwise) {
        char name[] = "/tmp/shmbroker-log-XXXXXX", buf[512] = "";
        int fd = mkstemp(name), saved = dup(STDERR_FILENO);
        ssize_t n;

        ck_assert_int_ge(fd, 0);
        unlink(name);
        unsetenv("JOURNAL_STREAM");
        ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
        log_event(LOG_INFO, LOG_EVENT_POOL_CREATED, "p", NULL, "pool \"%s\"\ncreated", "p");
        (void)log_full_errno(LOG_WARNING, -ENOENT, "cannot open %s", "x");
        log_set_max_priority(LOG_INFO);
        log_debug("not shown");
        dup2(saved, STDERR_FILENO);
        close(saved);
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        close(fd);
        ck_assert_int_gt(n, 0);
        ck_assert_str_eq(buf, "<6>pool \"p\" created\n<4>cannot open x: No such file or directory\n");
}
END_TEST

Suite *suite_log(void) {
        Suite *s = suite_create("log");
        TCase *t = tcase_create("entries");

        tcase_add_test(t, every_event_has_its_own_fixed_id);
        tcase_add_test(t, an_event_about_a_pool_and_a_client_carries_both);
        tcase_add_test(t, fields_only_for_what_the_message_is_about);
        tcase_add_test(t, a_long_message_is_cut_not_overrun);
        tcase_add_test(t, only_the_named_stream_is_the_journal);
        tcase_add_test(t, plain_lines_otherwise);
        suite_add_tcase(s, t);
        return s;
}
