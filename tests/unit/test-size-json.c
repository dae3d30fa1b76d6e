/* Sizes with units, strict JSON integers and UTF-8 validation. */
#include <errno.h>
#include <string.h>

#include "sb-json.h"
#include "sb-size.h"
#include "unit.h"

START_TEST(size_units) {
        uint64_t v;

        ck_assert_int_eq(sb_parse_size("4096", &v), 0);
        ck_assert_uint_eq(v, 4096);
        ck_assert_int_eq(sb_parse_size("16MiB", &v), 0);
        ck_assert_uint_eq(v, 16u << 20);
        ck_assert_int_eq(sb_parse_size("64 GiB", &v), 0);
        ck_assert_uint_eq(v, UINT64_C(64) << 30);
        ck_assert_int_eq(sb_parse_size("1k", &v), 0);
        ck_assert_uint_eq(v, 1024);
        ck_assert_int_eq(sb_parse_size("2TiB", &v), 0);
        ck_assert_uint_eq(v, UINT64_C(2) << 40);
        /* Every unit sb_format_size() writes. */
        ck_assert_int_eq(sb_parse_size("3PiB", &v), 0);
        ck_assert_uint_eq(v, UINT64_C(3) << 50);
        ck_assert_int_eq(sb_parse_size("15EiB", &v), 0);
        ck_assert_uint_eq(v, UINT64_C(15) << 60);
}
END_TEST

START_TEST(size_rejects) {
        uint64_t v = 7;

        ck_assert_int_eq(sb_parse_size("", &v), -EINVAL);
        ck_assert_int_eq(sb_parse_size("-1", &v), -EINVAL);
        ck_assert_int_eq(sb_parse_size("1.5MiB", &v), -EINVAL);
        ck_assert_int_eq(sb_parse_size("12XB", &v), -EINVAL);
        ck_assert_int_eq(sb_parse_size("MiB", &v), -EINVAL);
        ck_assert_int_eq(sb_parse_size("18446744073709551616", &v), -ERANGE);
        ck_assert_int_eq(sb_parse_size("16777216TiB", &v), -ERANGE);
        ck_assert_int_eq(sb_parse_size("16EiB", &v), -ERANGE);     /* 2^64: too large, not malformed */
        ck_assert_uint_eq(v, 7);
}
END_TEST

START_TEST(size_format_and_round) {
        char buf[32];
        uint64_t r;

        ck_assert_str_eq(sb_format_size(16u << 20, buf, sizeof(buf)), "16 MiB");
        ck_assert_str_eq(sb_format_size(1536, buf, sizeof(buf)), "1.5 KiB");
        ck_assert_str_eq(sb_format_size(100, buf, sizeof(buf)), "100 B");
        ck_assert(sb_round_up(1, 4096, &r) && r == 4096);
        ck_assert(sb_round_up(8192, 4096, &r) && r == 8192);
        ck_assert(!sb_round_up(UINT64_MAX - 10, 4096, &r));
}
END_TEST

static int uint_of(const char *text, uint64_t max, uint64_t *v) {
        cJSON *j = cJSON_Parse(text);
        int r = sb_json_uint(j, max, v);
        cJSON_Delete(j);
        return r;
}

START_TEST(json_uint_strict) {
        uint64_t v;

        ck_assert_int_eq(uint_of("42", 100, &v), 0);
        ck_assert_uint_eq(v, 42);
        ck_assert_int_eq(uint_of("0", 100, &v), 0);
        ck_assert_int_eq(uint_of("1.5", 100, &v), -EINVAL);
        ck_assert_int_eq(uint_of("-1", 100, &v), -ERANGE);
        ck_assert_int_eq(uint_of("101", 100, &v), -ERANGE);
        ck_assert_int_eq(uint_of("1e300", UINT64_MAX, &v), -ERANGE);
        ck_assert_int_eq(uint_of("\"5\"", 100, &v), -EINVAL);
        ck_assert_int_eq(uint_of("true", 100, &v), -EINVAL);
        ck_assert_int_eq(uint_of("1e16", UINT64_MAX, &v), -ERANGE);
}
END_TEST

START_TEST(json_mode) {
        cJSON *a = cJSON_Parse("\"0660\""), *b = cJSON_Parse("\"0999\""), *c = cJSON_Parse("384");
        unsigned m;

        ck_assert_int_eq(sb_json_mode(a, &m), 0);
        ck_assert_uint_eq(m, 0660);
        ck_assert_int_eq(sb_json_mode(b, &m), -EINVAL);
        ck_assert_int_eq(sb_json_mode(c, &m), 0);
        ck_assert_uint_eq(m, 0600);
        cJSON_Delete(a);
        cJSON_Delete(b);
        cJSON_Delete(c);
}
END_TEST

START_TEST(utf8_validation) {
        ck_assert(sb_utf8_valid("plain", 5));
        ck_assert(sb_utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
        ck_assert(!sb_utf8_valid("\xff\xfe", 2));
        ck_assert(!sb_utf8_valid("\xc0\xaf", 2));            /* overlong '/' */
        ck_assert(!sb_utf8_valid("\xed\xa0\x80", 3));        /* surrogate */
        ck_assert(!sb_utf8_valid("\xf4\x90\x80\x80", 4));    /* above U+10FFFF */
        ck_assert(!sb_utf8_valid("\xe2\x82", 2));            /* truncated */
        ck_assert(!sb_utf8_valid("a\0b", 3));                /* NUL */
}
END_TEST

Suite *suite_size(void) {
        Suite *s = suite_create("size");
        TCase *t = tcase_create("parse");

        tcase_add_test(t, size_units);
        tcase_add_test(t, size_rejects);
        tcase_add_test(t, size_format_and_round);
        suite_add_tcase(s, t);
        return s;
}

Suite *suite_json(void) {
        Suite *s = suite_create("json");
        TCase *t = tcase_create("values");

        tcase_add_test(t, json_uint_strict);
        tcase_add_test(t, json_mode);
        tcase_add_test(t, utf8_validation);
        suite_add_tcase(s, t);
        return s;
}
