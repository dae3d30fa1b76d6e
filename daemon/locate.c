/*
 * locate.c: where a value is in JSON text, for error messages that name a line.
 *
 * cJSON keeps no positions. These functions scan the same (comment-free) text that cJSON
 * parsed, skipping values by their shape without building anything, to find the line of
 * a key, of an element of its array, and of a member of that element.
 */
#include <stddef.h>
#include <string.h>

#include "locate.h"

unsigned json_line_of(const char *text, size_t off) {
        unsigned line = 1;

        for (size_t i = 0; i < off; i++)
                line += text[i] == '\n';
        return line;
}

const char *json_skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

static const char *skip_string(const char *p, const char *end) {
        for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                        p++;
        return p < end ? p + 1 : end;
}

static const char *skip_value(const char *p, const char *end, unsigned depth) {
        p = json_skip_ws(p, end);
        if (p >= end || depth > 64)
                return end;
        if (*p == '"')
                return skip_string(p, end);
        if (*p == '{' || *p == '[') {
                char close = *p == '{' ? '}' : ']';
                for (p++;;) {
                        p = json_skip_ws(p, end);
                        if (p >= end || *p == close)
                                return p < end ? p + 1 : end;
                        if (*p == ',' || *p == ':')
                                p++;
                        else
                                p = skip_value(p, end, depth + 1);
                }
        }
        while (p < end && !strchr(",]} \t\r\n", *p))
                p++;
        return p;
}

/* The member @key of the object at @p: a pointer to its key, or NULL. */
static const char *find_member(const char *p, const char *end, const char *key) {
        size_t klen = strlen(key);

        p = json_skip_ws(p, end);
        if (p >= end || *p != '{')
                return NULL;
        for (p++;;) {
                const char *k;
                p = json_skip_ws(p, end);
                if (p >= end || *p != '"')
                        return NULL;
                k = p;
                p = skip_string(p, end);
                if ((size_t)(p - k) == klen + 2 && memcmp(k + 1, key, klen) == 0)
                        return k;
                p = json_skip_ws(p, end);
                if (p < end && *p == ':')
                        p++;
                p = json_skip_ws(skip_value(p, end, 0), end);
                if (p >= end || *p != ',')
                        return NULL;
                p++;
        }
}

static const char *member_value(const char *k, const char *end) {
        const char *p = json_skip_ws(skip_string(k, end), end);
        return p < end && *p == ':' ? json_skip_ws(p + 1, end) : end;
}

static const char *find_element(const char *p, const char *end, size_t index) {
        p = json_skip_ws(p, end);
        if (p >= end || *p != '[')
                return NULL;
        p++;
        for (size_t i = 0;; i++) {
                p = json_skip_ws(p, end);
                if (p >= end || *p == ']')
                        return NULL;
                if (i == index)
                        return p;
                p = json_skip_ws(skip_value(p, end, 0), end);
                if (p >= end || *p != ',')
                        return NULL;
                p++;
        }
}

/* The line of top-level key @key, of element @index of it (if >= 0), and of that
 * element's member @sub (if set): the most precise place found. */
unsigned json_locate(const char *text, size_t len, const char *key, long index, const char *sub) {
        const char *end = text + len, *k, *e, *s;

        k = find_member(text, end, key);
        if (!k)
                return json_line_of(text, len);
        if (index < 0)
                return json_line_of(text, (size_t)(k - text));
        e = find_element(member_value(k, end), end, (size_t)index);
        if (!e)
                return json_line_of(text, (size_t)(k - text));
        s = sub ? find_member(e, end, sub) : NULL;
        return json_line_of(text, (size_t)((s ? s : e) - text));
}

