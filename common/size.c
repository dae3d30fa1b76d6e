/*
 * size.c: parsing and formatting of byte sizes.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sb-macro.h"
#include "sb-size.h"

static const struct {
        const char *suffix;
        unsigned shift;
} size_units[] = {
        { "", 0 },     { "B", 0 },    { "K", 10 },   { "KB", 10 }, { "KiB", 10 },
        { "M", 20 },   { "MB", 20 },  { "MiB", 20 }, { "G", 30 },  { "GB", 30 },
        { "GiB", 30 }, { "T", 40 },   { "TB", 40 },  { "TiB", 40 }, { "P", 50 },
        { "PB", 50 },  { "PiB", 50 }, { "E", 60 },   { "EB", 60 }, { "EiB", 60 },
};

int sb_parse_size(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        const char *p = s;

        if (!s || !isdigit((unsigned char)*p))
                return -EINVAL;
        for (; isdigit((unsigned char)*p); p++) {
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
                        return -ERANGE;
        }
        while (*p == ' ')
                p++;
        for (size_t i = 0; i < ELEMENTSOF(size_units); i++) {
                if (strcasecmp(p, size_units[i].suffix) != 0)
                        continue;
                if (size_units[i].shift > 0 && v > (UINT64_MAX >> size_units[i].shift))
                        return -ERANGE;
                *ret = v << size_units[i].shift;
                return 0;
        }
        return -EINVAL;
}

const char *sb_format_size(uint64_t bytes, char *buf, size_t len) {
        static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        unsigned i = 0;
        uint64_t unit = 1;

        while (i + 1 < ELEMENTSOF(names) && bytes / unit >= 1024) {
                unit <<= 10;
                i++;
        }
        if (bytes % unit == 0)
                snprintf(buf, len, "%llu %s", (unsigned long long)(bytes / unit), names[i]);
        else
                snprintf(buf, len, "%.1f %s", (double)bytes / (double)unit, names[i]);
        return buf;
}
