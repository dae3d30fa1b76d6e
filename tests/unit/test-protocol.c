/* Request parsing and reply building. */
#include <stdio.h>
#include <string.h>

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
        suite_add_tcase(s, t);
        return s;
}
