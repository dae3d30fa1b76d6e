/*
 * pool-spec.c: parsing a pool description, and its layout.
 *
 * A configured pool and a create request describe a pool with the same keys, checked by
 * the same table; they differ only in the key of the name and in how strict they are
 * about keys they do not know.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "pool-spec.h"
#include "sb-json.h"
#include "sb-size.h"
#include "segment.h"

static const char *const policy_names[] = {
        [POLICY_REQUEUE] = "requeue",
        [POLICY_FREE] = "free",
};

const char *pool_policy_name(PoolPolicy policy) {
        return (unsigned)policy < ELEMENTSOF(policy_names) ? policy_names[policy] : "?";
}

typedef enum FieldKind {
        FIELD_SIZE,              /* uint64_t: bytes, or a string with a unit; at least 1 */
        FIELD_COUNT,             /* uint32_t: 1 to POOL_SLOTS_MAX */
        FIELD_MODE,              /* unsigned: octal string or integer, at most 0777 */
        FIELD_GROUP,             /* char[POOL_GROUP_MAX]: a non-empty name */
        FIELD_POLICY,            /* PoolPolicy by name */
        FIELD_BOOL,              /* bool */
} FieldKind;

static const struct {
        const char *key;
        size_t offset;
        const char *expect;      /* the error message when the value is wrong */
        FieldKind kind;
        bool required;
} spec_fields[] = {
        { "slot_size", offsetof(PoolSpec, slot_size),
          "\"slot_size\" must be a size of at least 1 byte (a number, or a string like \"16MiB\")",
          FIELD_SIZE, true },
        { "slots", offsetof(PoolSpec, slots),
          "\"slots\" must be an integer from 1 to 1048576",
          FIELD_COUNT, true },
        { "mode", offsetof(PoolSpec, mode),
          "\"mode\" must be an octal mode like \"0660\"",
          FIELD_MODE, false },
        { "group", offsetof(PoolSpec, group),
          "\"group\" must be a group name",
          FIELD_GROUP, false },
        { "on_consumer_death", offsetof(PoolSpec, on_consumer_death),
          "\"on_consumer_death\" must be \"requeue\" or \"free\"",
          FIELD_POLICY, false },
        { "ordered", offsetof(PoolSpec, ordered),
          "\"ordered\" must be true or false",
          FIELD_BOOL, false },
        { "persistent", offsetof(PoolSpec, persistent),
          "\"persistent\" must be true or false",
          FIELD_BOOL, false },
        { "huge_pages", offsetof(PoolSpec, huge_pages),
          "\"huge_pages\" must be true or false",
          FIELD_BOOL, false },
};
_Static_assert(POOL_SLOTS_MAX == 1048576, "the \"slots\" message names the limit");

/* Store @v into the field at @p. 0, or -EINVAL when @v is not what the field takes. */
static int field_set(FieldKind kind, const cJSON *v, void *p) {
        uint64_t n;

        switch (kind) {
        case FIELD_SIZE:
                return sb_json_size(v, p) < 0 || *(uint64_t *)p == 0 ? -EINVAL : 0;
        case FIELD_COUNT:
                if (sb_json_uint(v, POOL_SLOTS_MAX, &n) < 0 || n == 0)
                        return -EINVAL;
                *(uint32_t *)p = (uint32_t)n;
                return 0;
        case FIELD_MODE:
                return sb_json_mode(v, p) < 0 ? -EINVAL : 0;
        case FIELD_GROUP:
                if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= POOL_GROUP_MAX)
                        return -EINVAL;
                memcpy(p, v->valuestring, strlen(v->valuestring) + 1);
                return 0;
        case FIELD_POLICY:
                for (size_t i = 0; i < ELEMENTSOF(policy_names); i++)
                        if (cJSON_IsString(v) && strcmp(v->valuestring, policy_names[i]) == 0) {
                                *(PoolPolicy *)p = (PoolPolicy)i;
                                return 0;
                        }
                return -EINVAL;
        case FIELD_BOOL:
                if (!cJSON_IsBool(v))
                        return -EINVAL;
                *(bool *)p = cJSON_IsTrue(v);
                return 0;
        }
        return -EINVAL;
}

static bool key_known(const char *key) {
        /* Both spellings of the name: a configured pool may carry "pool" too (ignored). */
        if (strcmp(key, "name") == 0 || strcmp(key, "pool") == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(spec_fields); i++)
                if (strcmp(key, spec_fields[i].key) == 0)
                        return true;
        return false;
}

int pool_spec_from_json(const cJSON *obj, PoolSpecSource source, PoolSpec *spec, const char **bad_key,
                        SbReason *why) {
        const char *name_key = source == SPEC_FROM_CONFIG ? "name" : "pool";
        const cJSON *v;

        *spec = (PoolSpec){ .mode = 0600, .on_consumer_death = POLICY_REQUEUE };
        *bad_key = NULL;
        if (!cJSON_IsObject(obj))
                return sb_fail(why, SB_E_BAD_REQUEST, "a pool must be a JSON object");
        if (source == SPEC_FROM_CONFIG)
                cJSON_ArrayForEach(v, obj) {
                        if (!key_known(v->string)) {
                                *bad_key = v->string;
                                return sb_fail(why, SB_E_BAD_REQUEST, "unknown pool setting \"%s\"", v->string);
                        }
                }

        *bad_key = name_key;
        v = cJSON_GetObjectItemCaseSensitive(obj, name_key);
        if (!cJSON_IsString(v) || !sb_pool_name_valid(v->valuestring))
                return sb_fail(why, SB_E_BAD_REQUEST, "\"%s\" must be a pool name: " SB_POOL_NAME_RULE, name_key);
        memcpy(spec->name, v->valuestring, strlen(v->valuestring) + 1);

        for (size_t i = 0; i < ELEMENTSOF(spec_fields); i++) {
                *bad_key = spec_fields[i].key;
                v = cJSON_GetObjectItemCaseSensitive(obj, spec_fields[i].key);
                if (!v && !spec_fields[i].required)
                        continue;
                if (!v || field_set(spec_fields[i].kind, v, (char *)spec + spec_fields[i].offset) < 0)
                        return sb_fail(why, SB_E_BAD_REQUEST, "%s", spec_fields[i].expect);
        }
        *bad_key = NULL;
        return 0;
}

int pool_spec_layout(const PoolSpec *spec, PoolLayout *ret, SbReason *why) {
        uint64_t page = segment_page_size(spec->huge_pages), stride, size;

        if (spec->slot_size == 0 || spec->slots == 0)
                return sb_fail(why, SB_E_BAD_REQUEST, "slot_size and slots must be at least 1");
        if (spec->slots > POOL_SLOTS_MAX)
                return sb_fail(why, SB_E_LIMIT, "%u slots exceed the limit of %u slots per pool", spec->slots,
                               POOL_SLOTS_MAX);
        if (!sb_round_up(spec->slot_size, page, &stride) || __builtin_mul_overflow(stride, (uint64_t)spec->slots, &size))
                return sb_fail(why, SB_E_LIMIT, "%u slots of %llu bytes overflow a 64-bit size", spec->slots,
                               (unsigned long long)spec->slot_size);
        *ret = (PoolLayout){ .stride = stride, .size = size };
        return 0;
}

/* Append ", @fmt" (or @fmt first) to the list in @buf at *at. */
_printf_(4, 5)
static void add_difference(char *buf, size_t size, size_t *at, const char *fmt, ...) {
        va_list ap;
        int n;

        if (*at >= size)
                return;
        if (*at > 0)
                *at += (size_t)snprintf(buf + *at, size - *at, ", ");
        if (*at >= size)
                return;
        va_start(ap, fmt);
        n = vsnprintf(buf + *at, size - *at, fmt, ap);
        va_end(ap);
        if (n > 0)
                *at += (size_t)n;
}

bool pool_spec_differences(const PoolSpec *want, const PoolSpec *have, char *buf, size_t size) {
        char a[32], b[32];
        size_t at = 0;

        buf[0] = 0;
        if (want->slot_size != have->slot_size)
                add_difference(buf, size, &at, "slot_size %s (live: %s)", sb_format_size(want->slot_size, a, sizeof(a)),
                               sb_format_size(have->slot_size, b, sizeof(b)));
        if (want->slots != have->slots)
                add_difference(buf, size, &at, "slots %u (live: %u)", want->slots, have->slots);
        if (want->huge_pages != have->huge_pages)
                add_difference(buf, size, &at, "huge_pages %s (live: %s)", want->huge_pages ? "true" : "false",
                               have->huge_pages ? "true" : "false");
        if (want->ordered != have->ordered)
                add_difference(buf, size, &at, "ordered %s (live: %s)", want->ordered ? "true" : "false",
                               have->ordered ? "true" : "false");
        if (want->on_consumer_death != have->on_consumer_death)
                add_difference(buf, size, &at, "on_consumer_death \"%s\" (live: \"%s\")",
                               pool_policy_name(want->on_consumer_death), pool_policy_name(have->on_consumer_death));
        if (want->mode != have->mode)
                add_difference(buf, size, &at, "mode %04o (live: %04o)", want->mode, have->mode);
        if (want->gid != (gid_t)-1 && have->gid != (gid_t)-1 && want->gid != have->gid)
                add_difference(buf, size, &at, "group %s%s%s (gid %u; live: gid %u)", want->group[0] ? "\"" : "",
                               want->group[0] ? want->group : "none: the daemon's", want->group[0] ? "\"" : "",
                               (unsigned)want->gid, (unsigned)have->gid);
        return at > 0;
}
