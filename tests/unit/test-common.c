/* The facts both ends share: pool names, roles, group lookup, socket addresses. */
#include <errno.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sb-group.h"
#include "sb-names.h"
#include "sb-unix.h"
#include "unit.h"

START_TEST(pool_names_and_roles) {
        ck_assert(sb_pool_name_valid("train-0.a_b"));
        ck_assert(sb_pool_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));   /* 64 */
        ck_assert(!sb_pool_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));  /* 65 */
        ck_assert(!sb_pool_name_valid(""));
        ck_assert(!sb_pool_name_valid(NULL));
        ck_assert(!sb_pool_name_valid("../x"));
        ck_assert(!sb_pool_name_valid(".hidden"));
        ck_assert(!sb_pool_name_valid("-opt"));
        ck_assert(!sb_pool_name_valid("a b"));
        ck_assert(!sb_pool_name_valid("caf\xc3\xa9"));
        for (int r = 0; r < _ROLE_MAX; r++)
                ck_assert_int_eq(sb_role_from_name(sb_role_name((Role)r)), r);
        ck_assert_str_eq(sb_role_name(ROLE_CONSUMER), "consumer");
        ck_assert_str_eq(sb_role_name(_ROLE_MAX), "?");
        ck_assert_int_eq(sb_role_from_name("root"), -EINVAL);
        ck_assert_int_eq(sb_role_from_name(NULL), -EINVAL);
}
END_TEST

/* The rule for names a person reads, and the escaping of what it refuses. */
START_TEST(name_text_and_its_escapes) {
        char buf[64];

        ck_assert(sb_name_text_valid("loader-0"));
        ck_assert(sb_name_text_valid(""));
        ck_assert(sb_name_text_valid("caf\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80 \xc2\xa0"));  /* é ☃ 😀 NBSP */
        ck_assert(!sb_name_text_valid(NULL));
        ck_assert(!sb_name_text_valid("a\nb"));
        ck_assert(!sb_name_text_valid("\x1b]0;x\x07"));
        ck_assert(!sb_name_text_valid("tab\t"));
        ck_assert(!sb_name_text_valid("del\x7f"));
        ck_assert(!sb_name_text_valid("csi\xc2\x9b"));             /* U+009B */
        ck_assert(!sb_name_text_valid("nel\xc2\x85"));             /* U+0085 */
        ck_assert(!sb_name_text_valid("bad\xff"));
        ck_assert(!sb_name_text_valid("overlong\xc0\xaf"));
        ck_assert(!sb_name_text_valid("cut\xe2\x98"));
        ck_assert(!sb_name_text_valid("surrogate\xed\xa0\x80"));
        ck_assert_uint_eq(sb_name_char("\xe2\x98\x83", 3), 3);
        ck_assert_uint_eq(sb_name_char("\xc2\x9f", 2), 0);
        ck_assert_uint_eq(sb_name_char("\xc2\xa0", 2), 2);
        ck_assert_str_eq(sb_name_escape("a\x1b[2J\nb\xc2\x85\xe2\x98\x83\xff", buf, sizeof(buf)),
                         "a\\x1b[2J\\x0ab\\xc2\\x85\xe2\x98\x83\\xff");
        /* cut short to fit, never inside an escape or a character */
        ck_assert_str_eq(sb_name_escape("ab\x1b", buf, 6), "ab");
        ck_assert_str_eq(sb_name_escape("ab\x1b", buf, 7), "ab\\x1b");
        ck_assert_str_eq(sb_name_escape("a\xe2\x98\x83", buf, 4), "a");
        ck_assert_str_eq(sb_name_escape("x", buf, 1), "");
}
END_TEST

START_TEST(groups_by_name_or_number) {
        struct group *gr = getgrgid(0);
        gid_t gid = 4711;

        ck_assert_ptr_nonnull(gr);
        ck_assert_int_eq(sb_group_lookup(gr->gr_name, true, &gid), 0);
        ck_assert_uint_eq(gid, 0);
        ck_assert_int_eq(sb_group_lookup("1234", true, &gid), 0);
        ck_assert_uint_eq(gid, 1234);
        ck_assert_int_eq(sb_group_lookup("1234", false, &gid), -ENOENT);    /* names only */
        ck_assert_int_eq(sb_group_lookup("4294967295", true, &gid), -ERANGE);   /* (gid_t)-1 is no group */
        ck_assert_int_eq(sb_group_lookup("4294967296", true, &gid), -ERANGE);   /* would wrap to 0 */
        ck_assert_int_eq(sb_group_lookup("99999999999999999999", true, &gid), -ERANGE);
        ck_assert_int_eq(sb_group_lookup("no-such-group-here", true, &gid), -ENOENT);
        ck_assert_int_eq(sb_group_lookup("", true, &gid), -ENOENT);
}
END_TEST

START_TEST(socket_addresses) {
        struct sockaddr_un addr;
        char path[200];

        ck_assert_int_eq(sb_sockaddr_un(&addr, "/run/x.sock"), 0);
        ck_assert_int_eq(addr.sun_family, AF_UNIX);
        ck_assert_str_eq(addr.sun_path, "/run/x.sock");
        memset(path, 'p', sizeof(addr.sun_path) - 1);
        path[sizeof(addr.sun_path) - 1] = 0;
        ck_assert_int_eq(sb_sockaddr_un(&addr, path), 0);        /* 107 bytes and its NUL fit */
        memset(path, 'p', sizeof(addr.sun_path));
        path[sizeof(addr.sun_path)] = 0;
        ck_assert_int_eq(sb_sockaddr_un(&addr, path), -ENAMETOOLONG);
        ck_assert_int_eq(sb_sockaddr_un(&addr, ""), -EINVAL);
}
END_TEST

Suite *suite_common(void) {
        Suite *s = suite_create("common");
        TCase *t = tcase_create("shared facts");

        tcase_add_test(t, pool_names_and_roles);
        tcase_add_test(t, name_text_and_its_escapes);
        tcase_add_test(t, groups_by_name_or_number);
        tcase_add_test(t, socket_addresses);
        suite_add_tcase(s, t);
        return s;
}
