/*
 * sb-json-text.h: where a value is in JSON text: the line of a key, for the configuration's
 * error messages; the text of a member's value, for what the daemon passes on as it came
 * (a batch's meta); the strings that cJSON would cut short.
 *
 * Every function but sb_json_line_of() and sb_json_skip_ws() takes text that cJSON has parsed
 * whole, and splits it exactly where cJSON did (its blanks are every byte up to 32).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The 1-based line of byte @off of @text. */
unsigned sb_json_line_of(const char *text, size_t off);

/* The line of top-level key @key of the JSON object @text, of element @index of its array
 * value (if @index >= 0), and of that element's member @sub (if not NULL): the most
 * precise place found, line 1 when nothing is. */
unsigned sb_json_locate(const char *text, size_t len, const char *key, long index, const char *sub);

/*
 * What is wrong with @text, which cJSON refused, for a person: the offset of the mistake in
 * *off and what it is in @what. cJSON stops where its reading fails, which for a missing
 * comma is at the next member, often on the next line; this points at the value the comma
 * should follow, at a comma that JSON does not allow, at a bracket left open. It reads as
 * cJSON does (blanks are every byte up to 32; numbers, strings and words as cJSON takes
 * them); false when it finds nothing wrong (cJSON's own place then stands).
 */
bool sb_json_explain(const char *text, size_t len, size_t *off, char *what, size_t size);

/* The line of member number @n (0 for the first, in the order of the text) of an object:
 * the top-level one (@key NULL), the value of its member @key (@index < 0), or element
 * @index of that value. Line 1 when there is no such member. */
unsigned sb_json_locate_member(const char *text, size_t len, const char *key, long index, size_t n);

/* Past the blanks at @p (at most @end): space, tab, newline, carriage return. */
const char *sb_json_skip_ws(const char *p, const char *end);

/* Where cJSON starts the value of text @text of @len bytes: past a UTF-8 byte order
 * mark and blanks. */
const char *sb_json_start(const char *text, size_t len);

/* The value of member number @index (0 for the first, in the order of the text) of the
 * object at @p: its first byte; NULL when the object has fewer members (or @p is NULL). */
const char *sb_json_member_value(const char *p, const char *end, size_t index);

/* The first element of the array at @p; NULL when it is empty (or @p is NULL). */
const char *sb_json_array_first(const char *p, const char *end);

/* The element after the one at @p; NULL when that was the last. */
const char *sb_json_array_next(const char *p, const char *end);

/*
 * Past the value at @p when it is strict JSON (RFC 8259), else NULL. cJSON accepts more:
 * blanks other than the four, control characters inside strings, numbers like 01 or 1.;
 * text that is passed on must not carry them to a stricter reader.
 */
const char *sb_json_strict_end(const char *p, const char *end);

/*
 * Whether a string (key or value) of [p, end) decodes to one with a NUL in it, which
 * cJSON's C strings would cut short: \u0000, and any \u escape that cJSON reads as 0 (its
 * hex reader gives 0 for a digit that is not hex). The strings inside the values of
 * members named @skip do not count.
 */
bool sb_json_has_nul(const char *p, const char *end, const char *skip);
