/* The line transport alone, over a real socket pair: framing, bounds, end of input. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "unit.h"

static int peer;

static void mkconn(Conn *c) {
        int sv[2];

        ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        conn_init(c, sv[0]);
        peer = sv[1];
}

static void put(const char *s) {
        ck_assert_int_eq(write(peer, s, strlen(s)), (ssize_t)strlen(s));
}

/* The next line as a string, or NULL when none is complete. */
static const char *next(Conn *c, size_t max_line, int *r) {
        static char buf[256];
        const char *line;
        size_t len;

        *r = conn_next_line(c, max_line, &line, &len);
        if (*r != 1)
                return NULL;
        ck_assert_uint_lt(len, sizeof(buf));
        memcpy(buf, line, len);
        buf[len] = 0;
        return buf;
}

START_TEST(lines_split_across_reads) {
        Conn c;
        int r;

        mkconn(&c);
        put("a\nbb\ncc");
        ck_assert_int_eq(conn_read(&c, 64), 0);
        ck_assert_str_eq(next(&c, 64, &r), "a");
        ck_assert_str_eq(next(&c, 64, &r), "bb");
        ck_assert_ptr_null(next(&c, 64, &r));          /* "cc" waits for its newline */
        ck_assert_int_eq(r, 0);
        put("c\n\n");
        ck_assert_int_eq(conn_read(&c, 64), 0);
        ck_assert_str_eq(next(&c, 64, &r), "ccc");
        ck_assert_str_eq(next(&c, 64, &r), "");        /* an empty line is a line */
        ck_assert_ptr_null(next(&c, 64, &r));
        ck_assert(!c.eof);
        conn_clear(&c);
        close(peer);
}
END_TEST

/* A line given back (its pool was busy) is taken again, whole, also when taking it had
 * emptied the buffer, and the lines after it follow. */
START_TEST(a_line_put_back_comes_again) {
        Conn c;
        int r;

        mkconn(&c);
        put("one\ntwo\n");
        ck_assert_int_eq(conn_read(&c, 64), 0);
        ck_assert_str_eq(next(&c, 64, &r), "one");
        conn_put_back(&c);
        ck_assert_str_eq(next(&c, 64, &r), "one");
        ck_assert_str_eq(next(&c, 64, &r), "two");     /* the buffer is empty now */
        conn_put_back(&c);
        ck_assert_str_eq(next(&c, 64, &r), "two");
        ck_assert_ptr_null(next(&c, 64, &r));
        put("three\n");
        ck_assert_int_eq(conn_read(&c, 64), 0);
        ck_assert_str_eq(next(&c, 64, &r), "three");
        conn_clear(&c);
        close(peer);
}
END_TEST

START_TEST(last_line_without_newline_at_end_of_input) {
        Conn c;
        int r;

        mkconn(&c);
        put("x\nlast");
        close(peer);
        ck_assert_int_eq(conn_read(&c, 64), 0);
        ck_assert_str_eq(next(&c, 64, &r), "x");
        ck_assert_ptr_null(next(&c, 64, &r));          /* end of input not seen yet */
        ck_assert_int_eq(conn_read(&c, 64), 0);
        ck_assert(c.eof);
        ck_assert(!conn_wants_input(&c, 64));
        ck_assert_str_eq(next(&c, 64, &r), "last");
        ck_assert_ptr_null(next(&c, 64, &r));
        conn_clear(&c);
}
END_TEST

START_TEST(line_over_max_line_is_refused) {
        Conn c;
        int r;

        mkconn(&c);
        put("12345678\n123456789\n");
        ck_assert_int_eq(conn_read(&c, 8), 0);
        ck_assert_str_eq(next(&c, 8, &r), "12345678");   /* exactly max_line: fine */
        ck_assert_ptr_null(next(&c, 8, &r));             /* what was read: max_line + 1 bytes */
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(conn_read(&c, 8), 0);
        ck_assert_ptr_null(next(&c, 8, &r));
        ck_assert_int_eq(r, -E2BIG);
        conn_clear(&c);
        close(peer);

        /* No newline at all: input stops at max_line + 1 bytes, and that is too long. */
        mkconn(&c);
        put("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        ck_assert_int_eq(conn_read(&c, 8), 0);
        ck_assert_uint_eq(sb_bytes_pending(&c.in), 9);
        ck_assert(!conn_wants_input(&c, 8));
        ck_assert_int_eq(conn_read(&c, 8), 0);
        ck_assert_uint_eq(sb_bytes_pending(&c.in), 9);   /* not one byte more */
        ck_assert_uint_le(c.in.cap, 9);                  /* nor a buffer larger than that */
        ck_assert_ptr_null(next(&c, 8, &r));
        ck_assert_int_eq(r, -E2BIG);
        conn_clear(&c);
        close(peer);
}
END_TEST

/* However it grows, the input buffer stays within max_line + 1 bytes. */
START_TEST(input_buffer_stays_within_max_line) {
        static char big[200000];
        size_t max_line = 100000;
        Conn c;

        mkconn(&c);
        memset(big, 'z', sizeof(big));
        ck_assert_int_eq(setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &(int){ 1 << 20 }, sizeof(int)), 0);
        ck_assert_int_eq(write(peer, big, sizeof(big)), (ssize_t)sizeof(big));
        for (int i = 0; i < 10; i++)
                ck_assert_int_eq(conn_read(&c, max_line), 0);
        ck_assert_uint_eq(sb_bytes_pending(&c.in), max_line + 1);
        ck_assert_uint_le(c.in.cap, max_line + 1);
        conn_clear(&c);
        close(peer);
}
END_TEST

START_TEST(reads_one_bounded_chunk) {
        static char big[3 * CONN_READ_CHUNK];
        Conn c;

        mkconn(&c);
        memset(big, 'z', sizeof(big));
        ck_assert_int_eq(setsockopt(peer, SOL_SOCKET, SO_SNDBUF, &(int){ 1 << 20 }, sizeof(int)), 0);
        ck_assert_int_gt(write(peer, big, sizeof(big)), CONN_READ_CHUNK);
        ck_assert_int_eq(conn_read(&c, 1 << 20), 0);
        ck_assert_uint_eq(sb_bytes_pending(&c.in), CONN_READ_CHUNK);
        conn_clear(&c);
        close(peer);
}
END_TEST

START_TEST(output_is_flushed_in_order) {
        char buf[64] = "";
        Conn c;

        mkconn(&c);
        ck_assert_int_eq(sb_bytes_append(&c.out, "one\n", 4), 0);
        ck_assert_int_eq(sb_bytes_append(&c.out, "two\n", 4), 0);
        ck_assert_uint_eq(conn_pending_output(&c), 8);
        ck_assert_int_eq(conn_flush(&c), 0);
        ck_assert_uint_eq(conn_pending_output(&c), 0);
        ck_assert_int_eq(read(peer, buf, sizeof(buf) - 1), 8);
        ck_assert_str_eq(buf, "one\ntwo\n");
        close(peer);
        ck_assert_int_eq(sb_bytes_append(&c.out, "x\n", 2), 0);
        ck_assert_int_eq(conn_flush(&c), -EPIPE);        /* the peer is gone: an error, no signal */
        conn_clear(&c);
}
END_TEST

Suite *suite_conn(void) {
        Suite *s = suite_create("conn");
        TCase *t = tcase_create("framing");

        tcase_add_test(t, lines_split_across_reads);
        tcase_add_test(t, a_line_put_back_comes_again);
        tcase_add_test(t, last_line_without_newline_at_end_of_input);
        tcase_add_test(t, line_over_max_line_is_refused);
        tcase_add_test(t, reads_one_bounded_chunk);
        tcase_add_test(t, input_buffer_stays_within_max_line);
        tcase_add_test(t, output_is_flushed_in_order);
        suite_add_tcase(s, t);
        return s;
}
