/* Request parsing and reply building. */
#include <stdio.h>
#include <string.h>

#include "sb-json-text.h"
#include "protocol.h"
#include "sb-error.h"
#include "unit.h"

static int parse(Request *req, const char *line) {
        return request_parse(req, line, strlen(line));
}

START_TEST(parse_valid) {
        Request req;
        uint64_t v;
        bool present, b = false;
        const char *s;

        ck_assert_int_eq(parse(&req, "{\"id\":[1,{\"a\":2}],\"op\":\"acquire\",\"pool\":\"p\",\"timeout_ms\":5,\"requeue\":true}"), 0);
        ck_assert_str_eq(req.op, "acquire");
        ck_assert(cJSON_IsArray(req.id));
        ck_assert_int_eq(request_uint(&req, "timeout_ms", 100, &v, &present), 0);
        ck_assert(present);
        ck_assert_uint_eq(v, 5);
        ck_assert_int_eq(request_uint(&req, "seq", 100, &v, &present), 0);
        ck_assert(!present);
        ck_assert_int_eq(request_bool(&req, "requeue", &b), 0);
        ck_assert(b);
        ck_assert_int_eq(request_string(&req, "pool", true, &s), 0);
        ck_assert_str_eq(s, "p");
        request_done(&req);
}
END_TEST

START_TEST(parse_invalid) {
        static const char *const bad[] = {
                "", "not json", "[1,2]", "42", "{\"op\":1}", "{\"id\":1}", "{\"op\":\"x\"} trailing",
                "{\"op\":\"x\"", "\xff{\"op\":\"x\"}",
        };
        Request req;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_int_eq(parse(&req, bad[i]), SB_E_BAD_REQUEST);
                ck_assert(strlen(req.why.text) > 0);
                request_done(&req);
        }
}
END_TEST

START_TEST(parse_deep_nesting) {
        char line[8192];
        Request req;
        size_t n = 0;

        n += (size_t)sprintf(line, "{\"op\":\"x\",\"id\":");
        for (int i = 0; i < 3000; i++)
                line[n++] = '[';
        for (int i = 0; i < 3000; i++)
                line[n++] = ']';
        line[n++] = '}';
        ck_assert_int_eq(request_parse(&req, line, n), SB_E_BAD_REQUEST);
        request_done(&req);
}
END_TEST

START_TEST(field_errors_name_the_field) {
        Request req;
        uint64_t v, t;
        bool forever;
        const char *s;

        ck_assert_int_eq(parse(&req, "{\"op\":\"publish\",\"nbytes\":-3,\"slot\":1.5,\"pool\":7,\"timeout_ms\":\"5\"}"), 0);
        ck_assert_int_eq(request_uint(&req, "nbytes", 100, &v, NULL), SB_E_BAD_REQUEST);
        ck_assert_ptr_nonnull(strstr(req.why.text, "nbytes"));
        ck_assert_int_eq(request_uint(&req, "slot", 100, &v, NULL), SB_E_BAD_REQUEST);
        ck_assert_ptr_nonnull(strstr(req.why.text, "slot"));
        ck_assert_int_eq(request_uint(&req, "missing", 100, &v, NULL), SB_E_BAD_REQUEST);
        ck_assert_ptr_nonnull(strstr(req.why.text, "missing"));
        ck_assert_int_eq(request_string(&req, "pool", true, &s), SB_E_BAD_REQUEST);
        ck_assert_int_eq(request_timeout(&req, &t, &forever), SB_E_BAD_REQUEST);
        request_done(&req);
}
END_TEST

/* The text printed into an output queue, as a string. */
static const char *printed(SbBytes *out, const cJSON *r) {
        ck_assert_int_eq(reply_print(r, out), 0);
        ck_assert_int_eq(sb_bytes_reserve(out, 1) != NULL, 1);
        out->data[out->len] = 0;
        return out->data + out->off;
}

START_TEST(reply_shapes) {
        cJSON *id = cJSON_Parse("{\"k\":[1,2]}"), *r, *big;
        SbBytes out = { 0 };
        const char *line;

        r = reply_new(id);
        ck_assert_str_eq(printed(&out, r), "{\"id\":{\"k\":[1,2]},\"ok\":true}\n");
        cJSON_Delete(r);
        sb_bytes_consume(&out, sb_bytes_pending(&out));
        r = reply_new_error(NULL, SB_E_NOT_HOLDER, "slot 3 is not yours");
        ck_assert_str_eq(printed(&out, r), "{\"ok\":false,\"error\":\"not_holder\",\"message\":\"slot 3 is not yours\"}\n");
        cJSON_Delete(r);
        /* A reply bigger than what is printed in place still comes out whole, after what
         * was queued before it. */
        r = reply_new(NULL);
        big = cJSON_AddArrayToObject(r, "a");
        for (int i = 0; i < 3000; i++)
                cJSON_AddItemToArray(big, cJSON_CreateString("xyz"));
        line = printed(&out, r);
        ck_assert_int_eq(strncmp(line, "{\"ok\":false,", 12), 0);
        line = strchr(line, '\n') + 1;
        ck_assert_uint_eq(strlen(line), strlen("{\"ok\":true,\"a\":[]}\n") + 3000 * 6 - 1);
        ck_assert_int_eq(line[strlen(line) - 1], '\n');
        cJSON_Delete(r);
        free(out.data);
        cJSON_Delete(id);
}
END_TEST

/* cJSON's strings end at a NUL: every string that would hold one is refused, keys too,
 * but not inside a "meta", which is passed on as text. */
START_TEST(nul_in_a_string_is_refused_except_in_meta) {
        static const char *const bad[] = {
                "{\"op\":\"hello\",\"name\":\"nul\\u0000../x\"}",
                "{\"op\":\"hello\",\"name\":\"x\\u00zz\"}",            /* cJSON reads a non-hex digit as 0 */
                "{\"op\":\"hello\",\"name\":\"x\\u12G4\"}",
                "{\"op\\u0000\":\"hello\"}",
                "{\"op\":\"x\",\"id\":[\"\\u0000\"]}",
                "{\"op\":\"x\",\"a\":{\"meta\":1},\"b\":\"\\u0000\"}",
                "{\"op\":\"x\",\"meta\\u0000\":{}}",                 /* cJSON would read the key as "meta" */
        };
        static const char *const good[] = {
                "{\"op\":\"hello\",\"name\":\"a\\\\u0000\"}",          /* an escaped backslash, then text */
                "{\"op\":\"x\",\"meta\":{\"s\":\"\\u0000\",\"k\\u0000\":[\"\\u0000\"]}}",
                "{\"op\":\"x\",\"batches\":[{\"meta\":{\"s\":\"a\\u0000\"}}]}",
                "{\"op\":\"x\",\"s\":\"\\ud83d\\ude00\\u0001\"}",
        };
        Request req;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_msg(parse(&req, bad[i]) == SB_E_BAD_REQUEST, "%s", bad[i]);
                ck_assert_ptr_nonnull(strstr(req.why.text, "NUL"));
                request_done(&req);
        }
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                ck_assert_msg(parse(&req, good[i]) == 0, "%s: %s", good[i], req.why.text);
                request_done(&req);
        }
}
END_TEST

/* The text of a member's value, found as cJSON found the member. */
static const char *text_of(Request *req, const cJSON *obj, const char *obj_text, const char *key, size_t *len) {
        const char *t = NULL;

        *len = 0;
        if (request_text(req, obj, obj_text, cJSON_GetObjectItemCaseSensitive(obj, key), &t, len) != 0)
                return NULL;
        return t;
}

START_TEST(member_text_is_the_lines_own) {
        const char *line = "\xef\xbb\xbf \x0b{ \"op\":\"x\" ,\"m\\u0065ta\"\t:\x01{\"n\": 9007199254740993 ,\"s\":[1e400]} , "
                           "\"meta\":{\"second\":1},\"batches\":[ {\"slot\":1} ,{\"z\":[\"]\",{}],\"meta\" : {\"e\":\"\\u00e9\"}}]}";
        const cJSON *batches, *entry;
        const char *t, *at;
        Request req;
        size_t len;

        ck_assert_int_eq(request_parse(&req, line, strlen(line)), 0);
        t = text_of(&req, req.root, NULL, "meta", &len);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq((int)len, (int)strlen("{\"n\": 9007199254740993 ,\"s\":[1e400]}"));
        ck_assert_int_eq(strncmp(t, "{\"n\": 9007199254740993 ,\"s\":[1e400]}", len), 0);
        /* The entries of an array, one after the other. */
        batches = cJSON_GetObjectItemCaseSensitive(req.root, "batches");
        at = sb_json_array_first(request_value_text(&req, req.root, NULL, batches), req.text_end);
        ck_assert_ptr_nonnull(at);
        ck_assert_int_eq(strncmp(at, "{\"slot\":1}", 10), 0);
        at = sb_json_array_next(at, req.text_end);
        entry = cJSON_GetArrayItem(batches, 1);
        t = text_of(&req, entry, at, "meta", &len);
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(strncmp(t, "{\"e\":\"\\u00e9\"}", len), 0);
        ck_assert_uint_eq(len, 14);
        ck_assert_ptr_null(sb_json_array_next(at, req.text_end));
        request_done(&req);

        /* Only strict JSON is passed on: cJSON reads 01, 1., raw control characters
         * inside strings and blanks other than the four. */
        ck_assert_int_eq(parse(&req, "{\"op\":\"x\",\"meta\":{\"a\":01}}"), 0);
        ck_assert_ptr_null(text_of(&req, req.root, NULL, "meta", &len));
        ck_assert_ptr_nonnull(strstr(req.why.text, "strict JSON"));
        request_done(&req);
}
END_TEST

START_TEST(strict_json) {
        static const char *const good[] = {
                "{}", "[]", "{\"a\":[1,-0,0.5,1e5,1E-5,-1.25e+10,true,false,null,\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"]}",
                " {\"a\" :\t1 }", "{\"\":{\"\":[]}}", "\"x\"", "12345678901234567890123",
        };
        static const char *const bad[] = {
                "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":\"\x01\"}",
                "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":1,}", "{\"a\" 1}", "{\"a\":1\x0b}", "{a:1}", "[1,]",
                "{\"a\":tru}", "{\"a\":nul}", "{\"a\":1", "\"open",
        };

        /* The whole text is one strict value, or it is not. */
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                const char *t = good[i], *end = t + strlen(t), *e = sb_json_strict_end(sb_json_skip_ws(t, end), end);
                ck_assert_msg(e && sb_json_skip_ws(e, end) == end, "%s", t);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                const char *t = bad[i], *end = t + strlen(t), *e = sb_json_strict_end(t, end);
                ck_assert_msg(!e || sb_json_skip_ws(e, end) != end, "%s", t);
        }
}
END_TEST

START_TEST(error_table_round_trips) {
        for (int e = 1; e < _SB_E_MAX; e++)
                ck_assert_int_eq(sb_error_from_code(sb_error_code(e)), e);
        ck_assert_str_eq(sb_error_code(SB_E_LIMIT), "limit");
        ck_assert_str_eq(sb_error_code(-5), "internal");
}
END_TEST

Suite *suite_protocol(void) {
        Suite *s = suite_create("protocol");
        TCase *t = tcase_create("requests");

        tcase_add_test(t, parse_valid);
        tcase_add_test(t, parse_invalid);
        tcase_add_test(t, parse_deep_nesting);
        tcase_add_test(t, field_errors_name_the_field);
        tcase_add_test(t, reply_shapes);
        tcase_add_test(t, error_table_round_trips);
        tcase_add_test(t, nul_in_a_string_is_refused_except_in_meta);
        tcase_add_test(t, member_text_is_the_lines_own);
        tcase_add_test(t, strict_json);
        suite_add_tcase(s, t);
        return s;
}
