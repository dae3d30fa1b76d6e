/*
 * pool-spec.h: what a pool is made of (from the configuration file or a client's
 * create), parsed from JSON by one table, and the layout that follows from it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "sb-error.h"
#include "sb-names.h"

#define POOL_SLOTS_MAX (1u << 20)
#define POOL_GROUP_MAX 64

typedef enum PoolPolicy {
        POLICY_REQUEUE,          /* a dead consumer's slot goes back to the front of the queue */
        POLICY_FREE,             /* ... or is freed, its batch lost */
} PoolPolicy;

typedef struct PoolSpec {
        char name[SB_POOL_NAME_MAX + 1];
        uint64_t slot_size;
        uint32_t slots;
        bool ordered;
        bool persistent;
        bool configured;         /* from the configuration file */
        bool huge_pages;
        PoolPolicy on_consumer_death;
        unsigned mode;
        char group[POOL_GROUP_MAX];  /* as given ("" for none); looked up by the caller */
        uid_t uid;
        gid_t gid;
} PoolSpec;

/* Where slots lie in the segment: each starts on a page boundary. */
typedef struct PoolLayout {
        uint64_t stride;         /* slot_size rounded up to the (huge) page size */
        uint64_t size;           /* the segment: stride * slots */
} PoolLayout;

typedef enum PoolSpecSource {
        SPEC_FROM_CREATE,        /* a create request: the name is "pool", other keys are ignored */
        SPEC_FROM_CONFIG,        /* a configured pool: the name is "name", unknown keys refused */
} PoolSpecSource;

/*
 * Fill @spec from the JSON object @obj; defaults for what it leaves out (mode 0600,
 * requeue). Returns 0, or SB_E_BAD_REQUEST with the reason in @why and the offending key
 * in *bad_key (NULL when the object itself is wrong).
 */
int pool_spec_from_json(const cJSON *obj, PoolSpecSource source, PoolSpec *spec, const char **bad_key,
                        SbReason *why);

/* The layout of @spec. Returns 0, or SB_E_BAD_REQUEST / SB_E_LIMIT with the reason. */
int pool_spec_layout(const PoolSpec *spec, PoolLayout *ret, SbReason *why);

const char *pool_policy_name(PoolPolicy policy);

/*
 * What a pool made from @want now would have that the pool @have, which holds its name,
 * has not: the layout (slot_size, slots, huge_pages), ordered, on_consumer_death, mode, and
 * the group when both gids are known (not (gid_t)-1). A list for a person into @buf
 * ("slots 8 (live: 4), mode 0660 (live: 0600)"); false, and "", when nothing differs.
 */
bool pool_spec_differences(const PoolSpec *want, const PoolSpec *have, char *buf, size_t size);
