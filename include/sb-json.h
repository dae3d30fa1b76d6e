/*
 * sb-json.h: strict readers of cJSON values, shared by the request and configuration
 * parsers, and strict UTF-8 validation of input lines.
 *
 * cJSON stores every number as a double: these helpers refuse what is not an exact,
 * finite, non-negative integer in range (1.5, -1, 1e300, NaN) instead of truncating.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sb-macro.h"

DEFINE_CLEANUP_FUNC(cJSON, cJSON_Delete)

/* The largest integer a double holds exactly: 2^53. */
#define SB_JSON_INT_MAX UINT64_C(9007199254740992)

/* An exact integer in [0, max]. Returns 0, -EINVAL (not such a number) or -ERANGE. */
int sb_json_uint(const cJSON *v, uint64_t max, uint64_t *ret);

/* A size: an integer number of bytes or a string with a unit (sb_parse_size). */
int sb_json_size(const cJSON *v, uint64_t *ret);

/* A file mode: an octal string ("0660") or an integer; at most 0777. */
int sb_json_mode(const cJSON *v, unsigned *ret);

/* The first member of object @obj whose key an earlier member has too (cJSON keeps both,
 * and reads the first), with its place (0 for the first member) in *index and the earlier
 * one's in *first; NULL when no key repeats. Quadratic in the members up to it: for objects
 * whose keys the caller has checked against the few it knows, so that a repeat comes soon. */
const cJSON *sb_json_repeated_key(const cJSON *obj, size_t *index, size_t *first);

/* True if @s[0..len) is well-formed UTF-8 without NUL bytes, overlongs or surrogates. */
bool sb_utf8_valid(const char *s, size_t len);
