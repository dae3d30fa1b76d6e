/*
 * locate.h: where a value is in JSON text, for error messages that name a line.
 */
#pragma once

#include <stddef.h>

/* The 1-based line of byte @off of @text. */
unsigned json_line_of(const char *text, size_t off);

/* The line of top-level key @key of the JSON object @text, of element @index of its array
 * value (if @index >= 0), and of that element's member @sub (if not NULL): the most
 * precise place found, line 1 when nothing is. */
unsigned json_locate(const char *text, size_t len, const char *key, long index, const char *sub);

/* Past the blanks at @p (at most @end). */
const char *json_skip_ws(const char *p, const char *end);
