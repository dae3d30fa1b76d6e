/* main.c: runs every unit suite; the exit status is the number of failures (capped). */
#include <stdlib.h>

#include "unit.h"

int main(void) {
        SRunner *sr = srunner_create(suite_size());
        int failed;

        srunner_add_suite(sr, suite_json());
        srunner_add_suite(sr, suite_protocol());
        srunner_add_suite(sr, suite_config());
        srunner_add_suite(sr, suite_pool());
        srunner_add_suite(sr, suite_common());
        srunner_add_suite(sr, suite_conn());
        srunner_add_suite(sr, suite_quota());
        srunner_add_suite(sr, suite_session());
        srunner_add_suite(sr, suite_log());
        srunner_add_suite(sr, suite_fastpool());
        srunner_run_all(sr, CK_NORMAL);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
