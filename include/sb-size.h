/*
 * sb-size.h: byte sizes with units ("16MiB"), and overflow-checked size arithmetic.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parse a size: a decimal number of bytes, optionally followed (after optional blanks)
 * by B, KiB, MiB, GiB, TiB, PiB or EiB (also K, M, G, T, P, E and KB, MB, GB, TB, PB, EB,
 * all powers of 1024): every unit sb_format_size() writes. Returns 0, -EINVAL for a
 * malformed string, -ERANGE for one that overflows 64 bits ("16EiB").
 */
int sb_parse_size(const char *s, uint64_t *ret);

/* Format @bytes for a person ("16 MiB", "1.5 GiB", "100 B") into @buf. */
const char *sb_format_size(uint64_t bytes, char *buf, size_t len);

/* Round @v up to a multiple of @align (a power of two); false on overflow. */
static inline bool sb_round_up(uint64_t v, uint64_t align, uint64_t *ret) {
        uint64_t t;
        if (__builtin_add_overflow(v, align - 1, &t))
                return false;
        *ret = t & ~(align - 1);
        return true;
}
