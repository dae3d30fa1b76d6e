/*
 * names.c: the pool-name rule, the rule for the text of other names, and the role names
 * of the protocol.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "sb-names.h"
#include "sb-utf8.h"

static const char *const role_names[_ROLE_MAX] = {
        [ROLE_PRODUCER] = "producer",
        [ROLE_CONSUMER] = "consumer",
        [ROLE_ADMIN] = "admin",
};

bool sb_pool_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n > SB_POOL_NAME_MAX || name[0] == '.' || name[0] == '-')
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

size_t sb_name_char(const char *s, size_t n) {
        uint32_t cp;
        size_t len = sb_utf8_char((const unsigned char *)s, n, &cp);

        if (len == 0 || cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
                return 0;
        return len;
}

bool sb_name_text_valid(const char *name) {
        size_t n = name ? strlen(name) : 0, k;

        if (!name)
                return false;
        for (; n > 0; name += k, n -= k)
                if (!(k = sb_name_char(name, n)))
                        return false;
        return true;
}

char *sb_name_escape(const char *s, char *buf, size_t size) {
        size_t n = strlen(s), at = 0, k;

        if (size == 0)
                return buf;
        for (; n > 0; s += k, n -= k) {
                k = sb_name_char(s, n);
                if (k == 0) {
                        if (at + SB_ESCAPE_BYTE_MAX >= size)
                                break;
                        at += (size_t)snprintf(buf + at, size - at, "\\x%02x", (unsigned char)*s);
                        k = 1;
                        continue;
                }
                if (at + k >= size)
                        break;
                memcpy(buf + at, s, k);
                at += k;
        }
        buf[at] = 0;
        return buf;
}

const char *sb_role_name(Role role) {
        return (unsigned)role < _ROLE_MAX ? role_names[role] : "?";
}

int sb_role_from_name(const char *name) {
        for (int i = 0; i < _ROLE_MAX; i++)
                if (name && strcmp(role_names[i], name) == 0)
                        return i;
        return -EINVAL;
}
