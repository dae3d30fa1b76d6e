/*
 * json-text.c: where a value is in JSON text.
 *
 * cJSON keeps no positions. These functions scan the same text that cJSON parsed,
 * skipping values by their shape without building anything: to find the line of a key,
 * of an element of its array and of a member of that element (the configuration's error
 * messages); to find the text of a member's value (a batch's meta, passed on as it came);
 * to find the strings that cJSON would cut short at a NUL. Each scan is one pass over the
 * text it covers, with no recursion (cJSON allows 1000 levels of nesting), except the
 * strict check of a value, whose depth cJSON has already bounded.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sb-json-text.h"

unsigned sb_json_line_of(const char *text, size_t off) {
        unsigned line = 1;

        for (size_t i = 0; i < off; i++)
                line += text[i] == '\n';
        return line;
}

const char *sb_json_skip_ws(const char *p, const char *end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
                p++;
        return p;
}

/* What cJSON skips between tokens: every byte up to 32. */
static const char *skip_blank(const char *p, const char *end) {
        while (p < end && (unsigned char)*p <= 32)
                p++;
        return p;
}

static const char *skip_string(const char *p, const char *end) {
        for (p++; p < end && *p != '"'; p++)
                if (*p == '\\')
                        p++;
        return p < end ? p + 1 : end;
}

/* Past the value at @p. The text is valid for cJSON, so the end of an object or array is
 * where its brackets balance, strings skipped whole. */
static const char *skip_value(const char *p, const char *end) {
        size_t depth = 0;

        p = skip_blank(p, end);
        if (p >= end)
                return end;
        if (*p == '"')
                return skip_string(p, end);
        if (*p != '{' && *p != '[') {
                while (p < end && (unsigned char)*p > 32 && *p != ',' && *p != ']' && *p != '}')
                        p++;
                return p;
        }
        while (p < end) {
                if (*p == '"') {
                        p = skip_string(p, end);
                        continue;
                }
                if (*p == '{' || *p == '[')
                        depth++;
                else if ((*p == '}' || *p == ']') && --depth == 0)
                        return p + 1;
                p++;
        }
        return end;
}

const char *sb_json_start(const char *text, size_t len) {
        /* cJSON skips a byte order mark only when the text has at least five bytes. */
        if (len >= 5 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
                return skip_blank(text + 3, text + len);
        return skip_blank(text, text + len);
}

/* Inside the object or array at @p (its @open bracket): the first byte past the blanks
 * after the bracket; NULL when @p is NULL or no such bracket. */
static const char *enter(const char *p, const char *end, char open) {
        if (!p)
                return NULL;
        p = skip_blank(p, end);
        return p < end && *p == open ? skip_blank(p + 1, end) : NULL;
}

/* The value of the member whose key is at @k. */
static const char *member_value(const char *k, const char *end) {
        const char *p = skip_blank(skip_string(k, end), end);
        return p < end && *p == ':' ? skip_blank(p + 1, end) : end;
}

/* Past the value at @v, then past the comma after it: the next member or element; NULL
 * after the last. */
static const char *after_value(const char *v, const char *end) {
        const char *p = skip_blank(skip_value(v, end), end);

        if (p >= end || *p != ',')
                return NULL;
        return skip_blank(p + 1, end);
}

/* The key of the first member of the object at @p, or of the member after the one whose
 * key is at @k: NULL when there is none. */
static const char *first_member(const char *p, const char *end) {
        p = enter(p, end, '{');
        return p && p < end && *p == '"' ? p : NULL;
}

static const char *next_member(const char *k, const char *end) {
        const char *p = after_value(member_value(k, end), end);
        return p && p < end && *p == '"' ? p : NULL;
}

/* The member @key of the object at @p: a pointer to its key, or NULL. Keys are compared
 * as they are written (the configuration's keys carry no escapes). */
static const char *find_member(const char *p, const char *end, const char *key) {
        size_t klen = strlen(key);

        for (p = first_member(p, end); p; p = next_member(p, end)) {
                const char *k = skip_string(p, end);
                if ((size_t)(k - p) == klen + 2 && memcmp(p + 1, key, klen) == 0)
                        return p;
        }
        return NULL;
}

const char *sb_json_member_value(const char *p, const char *end, size_t index) {
        for (p = first_member(p, end); p; p = next_member(p, end))
                if (index-- == 0)
                        return member_value(p, end);
        return NULL;
}

const char *sb_json_array_first(const char *p, const char *end) {
        p = enter(p, end, '[');
        return p && p < end && *p != ']' ? p : NULL;
}

const char *sb_json_array_next(const char *p, const char *end) {
        return after_value(p, end);
}

static const char *find_element(const char *p, const char *end, size_t index) {
        for (p = sb_json_array_first(p, end); p && index > 0; index--)
                p = sb_json_array_next(p, end);
        return p;
}

/* The line of top-level key @key, of element @index of it (if >= 0), and of that
 * element's member @sub (if set): the most precise place found. */
unsigned sb_json_locate(const char *text, size_t len, const char *key, long index, const char *sub) {
        const char *end = text + len, *k, *e, *s;

        k = find_member(text, end, key);
        if (!k)
                return sb_json_line_of(text, len);
        if (index < 0)
                return sb_json_line_of(text, (size_t)(k - text));
        e = find_element(member_value(k, end), end, (size_t)index);
        if (!e)
                return sb_json_line_of(text, (size_t)(k - text));
        s = sub ? find_member(e, end, sub) : NULL;
        return sb_json_line_of(text, (size_t)((s ? s : e) - text));
}

unsigned sb_json_locate_member(const char *text, size_t len, const char *key, long index, size_t n) {
        const char *end = text + len, *p = sb_json_start(text, len), *k;

        if (key) {
                k = find_member(text, end, key);
                p = k ? member_value(k, end) : NULL;
                if (p && index >= 0)
                        p = find_element(p, end, (size_t)index);
        }
        for (p = p ? first_member(p, end) : NULL; p && n > 0; n--)
                p = next_member(p, end);
        return p ? sb_json_line_of(text, (size_t)(p - text)) : 1;
}

/* --- what is wrong with text cJSON refused ------------------------------------------- */

typedef enum Expect {
        EXPECT_VALUE,            /* a value: at the start, after ':', after ',' in an array */
        EXPECT_VALUE_OR_CLOSE,   /* just after '[' */
        EXPECT_KEY,              /* after ',' in an object */
        EXPECT_KEY_OR_CLOSE,     /* just after '{' */
        EXPECT_COLON,            /* after a key */
        EXPECT_NEXT,             /* after a value: ',', or the closing bracket */
} Expect;

static bool starts_value(char c) {
        return c == '"' || c == '{' || c == '[' || c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' ||
               c == 'n';
}

/* Past the value at @p that is not a container, read as cJSON reads it; NULL when it is
 * not one. */
static const char *scalar_end(const char *p, const char *end) {
        static const char *const words[] = { "true", "false", "null" };
        const char *q = p;

        if (*p == '"') {
                for (q++; q < end && *q != '"'; q++)
                        if (*q == '\\')
                                q++;
                return q < end ? q + 1 : NULL;
        }
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
                while (q < end && *q && strchr("0123456789+-.eE", *q))
                        q++;
                return q;
        }
        for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
                size_t n = strlen(words[i]);
                if ((size_t)(end - p) >= n && memcmp(p, words[i], n) == 0)
                        return p + n;
        }
        return NULL;
}

bool sb_json_explain(const char *text, size_t len, size_t *off, char *what, size_t size) {
        const char *end = text + len, *p = sb_json_start(text, len), *last = p, *comma = NULL;
        const char *open[CJSON_NESTING_LIMIT];
        Expect expect = EXPECT_VALUE;
        size_t depth = 0;

#define EXPLAIN(at, ...)                                                                        \
        do {                                                                                    \
                *off = (size_t)((at) - text);                                                   \
                snprintf(what, size, __VA_ARGS__);                                              \
                return true;                                                                    \
        } while (0)

        for (;;) {
                const char *q;
                char c;

                p = skip_blank(p, end);
                if (p >= end) {
                        if (depth > 0)
                                EXPLAIN(last, "the text ends before the '%c' of line %u is closed", *open[depth - 1],
                                        sb_json_line_of(text, (size_t)(open[depth - 1] - text)));
                        if (expect != EXPECT_NEXT)
                                EXPLAIN(last, "the text ends where a value should be");
                        return false;
                }
                c = *p;
                switch (expect) {
                case EXPECT_KEY:
                case EXPECT_KEY_OR_CLOSE:
                        if (c == '}' && expect == EXPECT_KEY)
                                EXPLAIN(comma, "a ',' before '}': JSON allows none after the last member");
                        if (c == '}')
                                break;
                        if (c != '"')
                                EXPLAIN(p, "a key (a string in double quotes) should be here");
                        if (!(q = scalar_end(p, end)))
                                EXPLAIN(p, "a string that is never closed (a '\"' is missing)");
                        last = p = q;
                        expect = EXPECT_COLON;
                        continue;
                case EXPECT_COLON:
                        if (c != ':')
                                EXPLAIN(last, "a ':' is missing after the key");
                        p++;
                        expect = EXPECT_VALUE;
                        continue;
                case EXPECT_NEXT:
                        if (depth == 0)
                                return false;   /* one whole value: what follows is the caller's */
                        if (c == ',') {
                                comma = p++;
                                expect = *open[depth - 1] == '{' ? EXPECT_KEY : EXPECT_VALUE;
                                continue;
                        }
                        if (c == '}' || c == ']')
                                break;
                        if (starts_value(c))
                                EXPLAIN(last, "a ',' is missing between two %s (the next starts on line %u)",
                                        *open[depth - 1] == '{' ? "members" : "elements",
                                        sb_json_line_of(text, (size_t)(p - text)));
                        EXPLAIN(p, "'%c' where a ',' or a '%c' should be", c, *open[depth - 1] == '{' ? '}' : ']');
                case EXPECT_VALUE:
                case EXPECT_VALUE_OR_CLOSE:
                        if (c == ']' && expect == EXPECT_VALUE && comma && depth > 0 && *open[depth - 1] == '[')
                                EXPLAIN(comma, "a ',' before ']': JSON allows none after the last element");
                        if (c == ']' && expect == EXPECT_VALUE_OR_CLOSE)
                                break;
                        if (c == '{' || c == '[') {
                                if (depth == CJSON_NESTING_LIMIT)
                                        EXPLAIN(p, "nested more than %d deep", CJSON_NESTING_LIMIT);
                                open[depth++] = p++;
                                expect = c == '{' ? EXPECT_KEY_OR_CLOSE : EXPECT_VALUE_OR_CLOSE;
                                continue;
                        }
                        if (c == '"' && !scalar_end(p, end))
                                EXPLAIN(p, "a string that is never closed (a '\"' is missing)");
                        if (!(q = scalar_end(p, end)))
                                EXPLAIN(p, "a value should be here (a string in double quotes, a number, true, "
                                        "false, null, an object or an array)");
                        last = p = q;
                        expect = EXPECT_NEXT;
                        continue;
                }
                /* A closing bracket, where one may be. */
                if (depth == 0)
                        EXPLAIN(p, "'%c' closes nothing that is open", c);
                if ((c == '}') != (*open[depth - 1] == '{'))
                        EXPLAIN(last,
                                "the '%c' of line %u is not closed (a '%c' is missing before the '%c' of line %u)",
                                *open[depth - 1], sb_json_line_of(text, (size_t)(open[depth - 1] - text)),
                                *open[depth - 1] == '{' ? '}' : ']', c, sb_json_line_of(text, (size_t)(p - text)));
                depth--;
                last = ++p;
                expect = EXPECT_NEXT;
        }
#undef EXPLAIN
}

/* --- strict JSON ------------------------------------------------------------------- */

static const char *strict_ws(const char *p, const char *end) {
        return sb_json_skip_ws(p, end);
}

static int hex_digit(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static const char *strict_string(const char *p, const char *end) {
        for (p++; p < end; p++) {
                unsigned char c = (unsigned char)*p;
                if (c == '"')
                        return p + 1;
                if (c < 0x20)
                        return NULL;
                if (c != '\\')
                        continue;
                if (++p >= end)
                        return NULL;
                if (*p == 'u') {
                        if (end - p < 5)
                                return NULL;
                        for (int i = 1; i <= 4; i++)
                                if (hex_digit(p[i]) < 0)
                                        return NULL;
                        p += 4;
                } else if (!*p || !strchr("\"\\/bfnrt", *p))
                        return NULL;
        }
        return NULL;
}

static const char *strict_digits(const char *p, const char *end) {
        const char *start = p;

        while (p < end && *p >= '0' && *p <= '9')
                p++;
        return p > start ? p : NULL;
}

static const char *strict_number(const char *p, const char *end) {
        if (p < end && *p == '-')
                p++;
        if (p < end && *p == '0')
                p++;
        else if (!(p < end && *p >= '1' && *p <= '9') || !(p = strict_digits(p, end)))
                return NULL;
        if (p < end && *p == '.' && !(p = strict_digits(p + 1, end)))
                return NULL;
        if (p < end && (*p == 'e' || *p == 'E')) {
                p++;
                if (p < end && (*p == '+' || *p == '-'))
                        p++;
                p = strict_digits(p, end);
        }
        return p;
}

static const char *strict_literal(const char *p, const char *end, const char *word) {
        size_t n = strlen(word);

        return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

static const char *strict_value(const char *p, const char *end, unsigned depth);

/* An object or an array at @p (its opening bracket), its members or elements strict. */
static const char *strict_container(const char *p, const char *end, unsigned depth) {
        char close = *p == '{' ? '}' : ']';

        if (depth >= CJSON_NESTING_LIMIT)
                return NULL;
        p = strict_ws(p + 1, end);
        if (p < end && *p == close)
                return p + 1;
        for (;;) {
                if (close == '}') {
                        if (p >= end || *p != '"' || !(p = strict_string(p, end)))
                                return NULL;
                        p = strict_ws(p, end);
                        if (p >= end || *p != ':')
                                return NULL;
                        p = strict_ws(p + 1, end);
                }
                p = strict_value(p, end, depth + 1);
                if (!p)
                        return NULL;
                p = strict_ws(p, end);
                if (p < end && *p == close)
                        return p + 1;
                if (p >= end || *p != ',')
                        return NULL;
                p = strict_ws(p + 1, end);
        }
}

static const char *strict_value(const char *p, const char *end, unsigned depth) {
        if (p >= end)
                return NULL;
        switch (*p) {
        case '{':
        case '[':
                return strict_container(p, end, depth);
        case '"':
                return strict_string(p, end);
        case 't':
                return strict_literal(p, end, "true");
        case 'f':
                return strict_literal(p, end, "false");
        case 'n':
                return strict_literal(p, end, "null");
        default:
                return strict_number(p, end);
        }
}

const char *sb_json_strict_end(const char *p, const char *end) {
        return strict_value(p, end, 0);
}

/* --- strings that cJSON cuts short ------------------------------------------------- */

/* cJSON's reading of the four hex digits at @p: 0 at the first digit that is not hex. */
static unsigned cjson_hex4(const char *p) {
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
                int d = hex_digit(p[i]);
                if (d < 0)
                        return 0;
                v = v << 4 | (unsigned)d;
        }
        return v;
}

/* Whether the string [s, e) (quotes included) decodes with a NUL in it. */
static bool string_has_nul(const char *s, const char *e) {
        for (const char *p = memchr(s, '\\', (size_t)(e - s)); p && p < e; p = memchr(p, '\\', (size_t)(e - p))) {
                if (e - p < 7 || p[1] != 'u') {
                        p += 2;
                        continue;
                }
                if (cjson_hex4(p + 2) == 0)
                        return true;
                p += 6;    /* the second half of a surrogate pair is never 0: cJSON checks it */
        }
        return false;
}

bool sb_json_has_nul(const char *p, const char *end, const char *skip) {
        size_t skip_len = strlen(skip);

        while ((p = memchr(p, '"', (size_t)(end - p)))) {
                const char *s = p, *after;
                p = skip_string(p, end);
                if (string_has_nul(s, p))
                        return true;
                after = skip_blank(p, end);
                /* Only a key is followed by a colon. */
                if (after < end && *after == ':' && (size_t)(p - s) == skip_len + 2 && memcmp(s + 1, skip, skip_len) == 0)
                        p = skip_value(after + 1, end);
        }
        return false;
}
