/*
 * sb-names.h: the protocol's names that both ends check the same way: pool names, the
 * text of other names (clients'), and client roles. The daemon, the library and
 * shmbrokerctl call these; nothing else spells the rules or the role names.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define SB_POOL_NAME_MAX 64
#define SB_STRINGIFY_(x) #x
#define SB_STRINGIFY(x) SB_STRINGIFY_(x)

/* A pool name: 1 to 64 of [A-Za-z0-9._-], not starting with '.' or '-'. NULL is not. */
bool sb_pool_name_valid(const char *name);

/* That rule in words, for the messages of whoever refuses a name (daemon and library). */
#define SB_POOL_NAME_RULE                                                                       \
        "1 to " SB_STRINGIFY(SB_POOL_NAME_MAX) " letters, digits, '.', '_' or '-', not starting with '.' or '-'"

/*
 * The rule for text that a person reads as a name (a client's hello name): UTF-8 without
 * control characters, which could move a terminal's cursor, retitle it or fake rows of
 * a listing. The length of the character at @s (@n > 0 bytes) when a name may hold it;
 * 0 for NUL, another C0 control (below U+0020), DEL (U+007F), a C1 control (U+0080 to
 * U+009F) or a byte that does not start a well-formed UTF-8 character.
 */
size_t sb_name_char(const char *s, size_t n);

/* Whether every character of @name passes sb_name_char(). NULL is not. */
bool sb_name_text_valid(const char *name);

/* Longest text sb_name_escape() makes of one byte. */
#define SB_ESCAPE_BYTE_MAX 4

/*
 * @s, for a terminal: every byte of a character that sb_name_char() refuses written as
 * \xNN, the rest as it is, into @buf of @size bytes (cut short to fit, at a character
 * boundary, always terminated). Returns @buf.
 */
char *sb_name_escape(const char *s, char *buf, size_t size);

/* What a client said it is in hello. The order is the public sb_role's (shmbroker.h). */
typedef enum Role {
        ROLE_PRODUCER,
        ROLE_CONSUMER,
        ROLE_ADMIN,
        _ROLE_MAX,
} Role;

/* "producer", "consumer", "admin"; "?" out of range. */
const char *sb_role_name(Role role);

/* The role named @name, or -EINVAL. */
int sb_role_from_name(const char *name);
