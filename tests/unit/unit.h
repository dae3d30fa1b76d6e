/* unit.h: the Check suites of the unit tests, one per concept. */
#pragma once

#include <check.h>

Suite *suite_size(void);
Suite *suite_json(void);
Suite *suite_protocol(void);
Suite *suite_config(void);
Suite *suite_pool(void);
Suite *suite_common(void);
Suite *suite_conn(void);
Suite *suite_quota(void);
Suite *suite_session(void);
Suite *suite_log(void);
Suite *suite_fastpool(void);
