/* The configuration parser: comments, values, defaults, and errors with their line. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static int parse(const char *text, Config **c, char *err) {
        SbReason why = { "" };
        int r = config_parse(text, strlen(text), c, &why);

        memcpy(err, why.text, 256);
        err[255] = 0;
        return r;
}

START_TEST(example_with_comments) {
        const char *text =
                "// a comment\n"
                "{\n"
                "  \"socket\": \"/run/x.sock\", /* inline */ \"socket_mode\": \"0666\",\n"
                "  \"limits\": { \"max_pools\": 3, \"max_bytes\": \"1GiB\", \"max_line\": 4096 },\n"
                "  \"pools\": [ { \"name\": \"train\", \"slot_size\": \"16MiB\", \"slots\": 8,\n"
                "                 \"ordered\": true, \"mode\": \"0660\", \"group\": \"g\", \"on_consumer_death\": \"free\" } ]\n"
                "}\n";
        Config *c = NULL;
        char err[256] = "";

        ck_assert_msg(parse(text, &c, err) == 0, "%s", err);
        ck_assert_str_eq(c->socket, "/run/x.sock");
        ck_assert_uint_eq(c->socket_mode, 0666);
        ck_assert_uint_eq(c->limits.max_pools, 3);
        ck_assert_uint_eq(c->limits.max_bytes, 1u << 30);
        ck_assert_uint_eq(c->limits.max_line, 4096);
        ck_assert_uint_eq(c->limits.max_clients, 1024);  /* default kept */
        ck_assert_uint_eq(c->n_pools, 1);
        ck_assert_str_eq(c->pools[0].name, "train");
        ck_assert_uint_eq(c->pools[0].slot_size, 16u << 20);
        ck_assert_uint_eq(c->pools[0].slots, 8);
        ck_assert(c->pools[0].ordered);
        ck_assert(c->pools[0].persistent);
        ck_assert_uint_eq(c->pools[0].mode, 0660);
        ck_assert_str_eq(c->pools[0].group, "g");
        ck_assert_int_eq(c->pools[0].on_consumer_death, POLICY_FREE);
        config_free(c);
}
END_TEST

START_TEST(comment_markers_inside_strings_are_text) {
        Config *c = NULL;
        char err[256] = "";

        ck_assert_msg(parse("{\"socket\": \"/tmp/a//b/*c*/.sock\"}", &c, err) == 0, "%s", err);
        ck_assert_str_eq(c->socket, "/tmp/a//b/*c*/.sock");
        config_free(c);
}
END_TEST

START_TEST(comments_alone_are_defaults) {
        Config *c = NULL;
        char err[256];

        ck_assert_int_eq(parse("  // nothing\n", &c, err), 0);
        ck_assert_uint_eq(c->n_pools, 0);
        ck_assert_uint_eq(c->limits.max_line, 1048576);
        ck_assert_uint_eq(c->limits.max_bytes, UINT64_C(64) << 30);
        ck_assert_uint_eq(c->limits.max_meta, 64 << 10);
        ck_assert_uint_eq(c->limits.max_meta_bytes, 256 << 20);
        ck_assert_uint_eq(c->limits.max_meta_bytes_per_uid, 64 << 20);
        config_free(c);
        ck_assert_msg(parse("{\"limits\": {\"max_meta\": \"1KiB\", \"max_meta_bytes\": 5000, "
                            "\"max_meta_bytes_per_uid\": \"2KiB\"}}", &c, err) == 0, "%s", err);
        ck_assert_uint_eq(c->limits.max_meta, 1024);
        ck_assert_uint_eq(c->limits.max_meta_bytes, 5000);
        ck_assert_uint_eq(c->limits.max_meta_bytes_per_uid, 2048);
        config_free(c);
}
END_TEST

/* "The example configuration's limits are the defaults." */
START_TEST(example_file_limits_are_the_defaults) {
        Config *c = NULL, *d = config_new_default();
        SbReason why;

        ck_assert_msg(config_load("conf/shmbroker.conf", false, &c, &why) == 0, "%s", why.text);
        ck_assert_int_eq(memcmp(&c->limits, &d->limits, sizeof(c->limits)), 0);
        config_free(c);
        config_free(d);
}
END_TEST

static void assert_error(const char *text, const char *want) {
        Config *c = NULL;
        char err[256] = "";

        ck_assert_int_lt(parse(text, &c, err), 0);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
}

START_TEST(errors_name_line_and_reason) {
        assert_error("{\n\"pools\": [\n {\"name\": \"a\", \"slots\": 2,\n  \"slot_size\": \"12XB\"}\n]}", "line 4:");
        assert_error("{\n\"pools\": [\n {\"name\": \"a\", \"slots\": 2,\n  \"slot_size\": \"12XB\"}\n]}", "slot_size");
        assert_error("{\n \"limits\": {\"max_line\": 5},\n}", "line 2: not valid JSON: a ',' before '}'");
        assert_error("{\n\n \"limitz\": 1 }", "line 3: unknown setting \"limitz\"");
        assert_error("{ /* unterminated\n }", "line 1: unterminated");
        assert_error("{\"pools\": [{\"name\": \"a\", \"slot_size\": 1, \"slots\": 1, \"colour\": 1}]}", "unknown pool setting");
        assert_error("{\"pools\": [{\"name\": \"a b\", \"slot_size\": 1, \"slots\": 1}]}", "pool name");
        assert_error("{\"pools\": [{\"name\": \"a\", \"slot_size\": 1, \"slots\": 0}]}", "pool \"a\": \"slots\"");
        /* A pool is named by its name; one without a usable name, by its place. */
        assert_error("{\"pools\": [{\"name\": \"a\", \"slot_size\": 1, \"slots\": 1},\n {\"slot_size\": 1, \"slots\": 1}]}",
                     "line 2: pool #2 of \"pools\" (it has no valid \"name\"): \"name\" must be a pool name");
        assert_error("{\"pools\": [{\"name\": \"a\", \"slot_size\": 1, \"slots\": 1},\n"
                     " {\"name\": \"a\", \"slot_size\": 1, \"slots\": 1}]}", "line 2: pool \"a\" is configured twice");
        assert_error("{\"pools\": [{\"name\": \"a\", \"slot_size\": 1, \"slots\": 1, \"on_consumer_death\": \"x\"}]}",
                     "on_consumer_death");
        assert_error("{\"socket\": \"relative\"}", "absolute path");
        assert_error("[]", "must be a JSON object");
        assert_error("{} {}", "text after");
        assert_error("{\"limits\": {\"max_meta\": 0}}", "limit \"max_meta\" must be a positive number");
}
END_TEST

/* An empty file is a mistake (read at a reload, it would drop every configured pool): {},
 * comments alone, or /dev/null say "nothing" on purpose. */
START_TEST(an_empty_file_is_refused_but_not_dev_null) {
        char path[] = "/tmp/sbtest-conf-XXXXXX";
        SbReason why = { "" };
        Config *c = NULL;
        int fd;

        assert_error("", "line 1: the file is empty: write {} to configure nothing");
        assert_error(" \n\t\n", "line 1: the file is empty");
        ck_assert_msg(config_load("/dev/null", false, &c, &why) == 0, "%s", why.text);
        ck_assert_uint_eq(c->n_pools, 0);
        ck_assert_uint_eq(c->limits.max_pools, 64);
        c = config_free(c);
        fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        close(fd);
        ck_assert_int_eq(config_load(path, false, &c, &why), -EINVAL);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(why.text, path) && strstr(why.text, ": line 1: the file is empty"), "%s", why.text);
        unlink(path);
}
END_TEST

/* cJSON keeps both members of a key given twice and the readers take the first: refused,
 * at the line of the second, at every level. */
START_TEST(a_key_set_twice_is_refused_where_it_repeats) {
        assert_error("{\n\"socket\": \"/a.sock\",\n\"socket_mode\": \"0600\",\n\"socket\": \"/b.sock\"}",
                     "line 4: \"socket\" is set twice (first on line 2)");
        assert_error("{\"limits\": {\n\"max_pools\": 3,\n\"max_pools_per_uid\": 1,\n\"max_pools\": 4}}",
                     "line 4: \"max_pools\" is set twice in \"limits\" (first on line 2)");
        assert_error("{\"pools\": [{\"name\": \"x\", \"slot_size\": 1, \"slots\": 1},\n"
                     "{\"name\": \"a\", \"slot_size\": 1,\n \"slots\": 1,\n \"slots\": 2}]}",
                     "line 4: \"slots\" is set twice in pool \"a\" (first on line 3)");
        assert_error("{\"pools\": [], \"pools\": []}", "line 1: \"pools\" is set twice");
}
END_TEST

/* cJSON stops where its reading fails: for a missing comma, at the next member. The error
 * names the line of the mistake. */
START_TEST(syntax_errors_point_at_the_mistake) {
        assert_error("{\n  \"socket\": \"/x.sock\"\n  \"socket_mode\": \"0660\"\n}",
                     "line 2: not valid JSON: a ',' is missing between two members (the next starts on line 3)");
        assert_error("{\"pools\": [\n {\"name\": \"a\", \"slot_size\": 1, \"slots\": 1}\n"
                     " {\"name\": \"b\", \"slot_size\": 1, \"slots\": 1}\n]}",
                     "line 2: not valid JSON: a ',' is missing between two elements (the next starts on line 3)");
        assert_error("{\"limits\": {\n  \"max_pools\": 3 // three\n  \"max_bytes\": 5\n}}",
                     "line 2: not valid JSON: a ',' is missing");
        assert_error("{\"pools\": [\n {\"name\": \"a\"},\n]}", "line 2: not valid JSON: a ',' before ']'");
        assert_error("{\n \"socket\" \"/x\"\n}", "line 2: not valid JSON: a ':' is missing after the key");
        assert_error("{\n \"pools\": [\n {\"name\": \"a\"\n ]\n}",
                     "line 3: not valid JSON: the '{' of line 3 is not closed (a '}' is missing before the ']' of line 4)");
        assert_error("{\n \"pools\": [\n\n", "line 2: not valid JSON: the text ends before the '[' of line 2 is closed");
        assert_error("{\n \"socket\": \"/x\n}", "line 2: not valid JSON: a string that is never closed");
        assert_error("{\n \"socket_mode\": ,\n}", "line 2: not valid JSON: a value should be here");
        assert_error("{\n \"limits\": {}}\n}", "line 3: text after the end");
}
END_TEST

/* What parses but does not hold together: config_check() names the line and the reason. */
static void assert_check_error(const char *text, const char *want) {
        SbReason why = { "" };
        Config *c = NULL;
        char err[256] = "";

        ck_assert_msg(parse(text, &c, err) == 0, "%s", err);
        ck_assert_int_eq(config_check(c, &why), -EINVAL);
        ck_assert_msg(strstr(why.text, want) != NULL, "error \"%s\" lacks \"%s\"", why.text, want);
        config_free(c);
}

START_TEST(the_whole_is_checked) {
        SbReason why = { "" };
        Config *c = NULL;
        char err[256] = "";

        assert_check_error("{\"limits\": {\"max_pools\": 1}, \"pools\": [\n"
                           " {\"name\": \"a\", \"slot_size\": 1, \"slots\": 1},\n"
                           " {\"name\": \"b\", \"slot_size\": 1, \"slots\": 1}]}",
                           "line 3: 2 pools exceed max_pools (1)");
        assert_check_error("{\"limits\": {\"max_bytes\": \"1MiB\"}, \"pools\": [\n"
                           " {\"name\": \"a\", \"slot_size\": \"512KiB\", \"slots\": 1},\n"
                           " {\"name\": \"b\", \"slot_size\": \"512KiB\", \"slots\": 1},\n"
                           " {\"name\": \"c\", \"slot_size\": 1, \"slots\": 1}]}",
                           "line 4: pool \"c\" (4 KiB) takes the configured pools past the limit max_bytes (1 MiB)");
        assert_check_error("{\"pools\": [{\"name\": \"a\", \"slot_size\": 9007199254740992, \"slots\": 1048576}]}",
                           "pool \"a\": 1048576 slots of 9007199254740992 bytes overflow");
        assert_check_error("{\n\n\"socket\": \"/run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\"}", "line 3: \"socket\" is longer");

        /* Exactly at the limits is good. */
        ck_assert_msg(parse("{\"limits\": {\"max_pools\": 2, \"max_bytes\": \"1MiB\"}, \"pools\": [\n"
                            " {\"name\": \"a\", \"slot_size\": \"512KiB\", \"slots\": 1},\n"
                            " {\"name\": \"b\", \"slot_size\": \"512KiB\", \"slots\": 1}]}", &c, err) == 0, "%s", err);
        ck_assert_msg(config_check(c, &why) == 0, "%s", why.text);
        ck_assert_ptr_nonnull(config_find_pool(c, "b"));
        ck_assert_ptr_null(config_find_pool(c, "c"));
        config_free(c);
}
END_TEST

Suite *suite_config(void) {
        Suite *s = suite_create("config");
        TCase *t = tcase_create("parse");

        tcase_add_test(t, example_with_comments);
        tcase_add_test(t, comment_markers_inside_strings_are_text);
        tcase_add_test(t, comments_alone_are_defaults);
        tcase_add_test(t, an_empty_file_is_refused_but_not_dev_null);
        tcase_add_test(t, a_key_set_twice_is_refused_where_it_repeats);
        tcase_add_test(t, syntax_errors_point_at_the_mistake);
        tcase_add_test(t, example_file_limits_are_the_defaults);
        tcase_add_test(t, errors_name_line_and_reason);
        tcase_add_test(t, the_whole_is_checked);
        suite_add_tcase(s, t);
        return s;
}
