/*
 * sb-utf8.h: decoding one UTF-8 character, the one decoder behind the daemon's check of
 * request lines (sb_utf8_valid()) and the name rule (sb-names.h), which shmbrokerctl
 * applies too. Inline: the library and shmbrokerctl link no JSON code.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The length of the well-formed UTF-8 character at @s (@n > 0 bytes), its code point in
 * *cp; 0 when the bytes there are not one (a stray or missing continuation byte, an
 * overlong form, a surrogate, past U+10FFFF, cut short). NUL is a character here. */
static inline size_t sb_utf8_char(const unsigned char *s, size_t n, uint32_t *cp) {
        unsigned c = s[0];
        size_t len;
        uint32_t v, min;

        if (c < 0x80) {
                *cp = c;
                return 1;
        }
        if ((c & 0xe0) == 0xc0) {
                len = 2; v = c & 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
                len = 3; v = c & 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
                len = 4; v = c & 0x07; min = 0x10000;
        } else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (s[i] & 0x3f);
        }
        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return 0;
        *cp = v;
        return len;
}
