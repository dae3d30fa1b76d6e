/*
 * json.c: strict readers of cJSON values and UTF-8 validation.
 */
#include <errno.h>
#include <math.h>
#include <string.h>

#include "sb-json.h"
#include "sb-size.h"
#include "sb-utf8.h"

int sb_json_uint(const cJSON *v, uint64_t max, uint64_t *ret) {
        double d;

        if (!cJSON_IsNumber(v))
                return -EINVAL;
        d = v->valuedouble;
        if (!isfinite(d) || d != floor(d))
                return -EINVAL;
        if (d < 0 || d > (double)max || d > (double)SB_JSON_INT_MAX)
                return -ERANGE;
        *ret = (uint64_t)d;
        return 0;
}

int sb_json_size(const cJSON *v, uint64_t *ret) {
        if (cJSON_IsString(v))
                return sb_parse_size(v->valuestring, ret);
        return sb_json_uint(v, SB_JSON_INT_MAX, ret);
}

int sb_json_mode(const cJSON *v, unsigned *ret) {
        uint64_t m = 0;

        if (cJSON_IsString(v)) {
                const char *p = v->valuestring;
                if (!*p || strlen(p) > 4)
                        return -EINVAL;
                for (; *p; p++) {
                        if (*p < '0' || *p > '7')
                                return -EINVAL;
                        m = m * 8 + (uint64_t)(*p - '0');
                }
        } else {
                int r = sb_json_uint(v, 0777, &m);
                if (r < 0)
                        return r;
        }
        if (m > 0777)
                return -ERANGE;
        *ret = (unsigned)m;
        return 0;
}

const cJSON *sb_json_repeated_key(const cJSON *obj, size_t *index, size_t *first) {
        size_t i = 0;

        for (const cJSON *v = obj ? obj->child : NULL; v; v = v->next, i++) {
                size_t j = 0;
                for (const cJSON *u = obj->child; u != v; u = u->next, j++)
                        if (u->string && v->string && strcmp(u->string, v->string) == 0) {
                                *index = i;
                                *first = j;
                                return v;
                        }
        }
        return NULL;
}

bool sb_utf8_valid(const char *str, size_t len) {
        const unsigned char *s = (const unsigned char *)str, *end = s + len;

        while (s < end) {
                uint64_t w;
                uint32_t cp;
                size_t n;

                /* Requests are nearly all ASCII: take eight bytes at a time while none
                 * has its high bit set or is NUL (the classic has-zero-byte test). */
                while (end - s >= 8) {
                        memcpy(&w, s, 8);
                        if ((w & UINT64_C(0x8080808080808080)) ||
                            ((w - UINT64_C(0x0101010101010101)) & ~w & UINT64_C(0x8080808080808080)))
                                break;
                        s += 8;
                }
                if (s == end)
                        break;
                if (*s == 0 || !(n = sb_utf8_char(s, (size_t)(end - s), &cp)))
                        return false;
                s += n;
        }
        return true;
}
