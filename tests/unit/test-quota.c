/* Per-uid quota charges: taken once, refused whole, given back exactly. */
#include "quota.h"
#include "sb-error.h"
#include "unit.h"

#define ONE_POOL(bytes) ((const uint64_t[_QUOTA_MAX]){ [QUOTA_POOLS] = 1, [QUOTA_BYTES] = (bytes) })
#define ONE_CLIENT ((const uint64_t[_QUOTA_MAX]){ [QUOTA_CLIENTS] = 1 })

START_TEST(charges_add_up_to_the_limit) {
        QuotaCharge a, b, c;
        QuotaKind over = _QUOTA_MAX;
        Quota q;

        quota_init(&q, 0, 999);
        quota_set_limits(&q, 10, 2, 100);
        ck_assert_int_eq(quota_charge(&q, &a, 1000, ONE_POOL(60), &over), 0);
        ck_assert_int_eq(quota_charge(&q, &b, 1000, ONE_POOL(50), &over), SB_E_LIMIT);
        ck_assert_int_eq(over, QUOTA_BYTES);
        ck_assert_ptr_null(b.user);                    /* a refusal charges nothing */
        ck_assert_uint_eq(quota_used(&q, 1000, QUOTA_BYTES), 60);
        ck_assert_uint_eq(quota_used(&q, 1000, QUOTA_POOLS), 1);
        ck_assert_int_eq(quota_charge(&q, &b, 1000, ONE_POOL(40), &over), 0);
        ck_assert_int_eq(quota_charge(&q, &c, 1000, ONE_POOL(0), &over), SB_E_LIMIT);
        ck_assert_int_eq(over, QUOTA_POOLS);
        ck_assert_int_eq(quota_charge(&q, &c, 1001, ONE_POOL(100), &over), 0);   /* another uid */
        quota_uncharge(&a);
        ck_assert_uint_eq(quota_used(&q, 1000, QUOTA_BYTES), 40);
        ck_assert_ptr_null(a.user);
        quota_uncharge(&a);                            /* twice: nothing more */
        ck_assert_uint_eq(quota_used(&q, 1000, QUOTA_BYTES), 40);
        quota_uncharge(&b);
        quota_uncharge(&c);
        ck_assert(sb_list_is_empty(&q.users));         /* a uid with nothing charged is forgotten */
}
END_TEST

START_TEST(exempt_uids_are_never_charged) {
        QuotaCharge a, b;
        QuotaKind over;
        Quota q;

        quota_init(&q, 0, 999);
        quota_set_limits(&q, 1, 1, 1);
        ck_assert_int_eq(quota_charge(&q, &a, 0, ONE_POOL(1u << 30), &over), 0);
        ck_assert_int_eq(quota_charge(&q, &b, 999, ONE_POOL(1u << 30), &over), 0);
        ck_assert_ptr_null(a.user);
        ck_assert_uint_eq(quota_used(&q, 0, QUOTA_POOLS), 0);
        ck_assert(sb_list_is_empty(&q.users));
        quota_uncharge(&a);
        quota_uncharge(&b);
}
END_TEST

START_TEST(overflow_and_lowered_limits) {
        QuotaCharge a, b;
        QuotaKind over;
        Quota q;

        quota_init(&q, 0, 0);
        quota_set_limits(&q, 2, 10, UINT64_MAX);
        ck_assert_int_eq(quota_charge(&q, &a, 5, ONE_POOL(UINT64_MAX - 1), &over), 0);
        ck_assert_int_eq(quota_charge(&q, &b, 5, ONE_POOL(2), &over), SB_E_LIMIT);   /* would wrap */
        ck_assert_int_eq(over, QUOTA_BYTES);
        quota_uncharge(&a);
        ck_assert_int_eq(quota_charge(&q, &a, 5, ONE_CLIENT, &over), 0);
        ck_assert_int_eq(quota_charge(&q, &b, 5, ONE_CLIENT, &over), 0);
        quota_set_limits(&q, 1, 10, 100);              /* a reload lowers it: what is held stays */
        ck_assert_uint_eq(quota_used(&q, 5, QUOTA_CLIENTS), 2);
        quota_uncharge(&a);
        ck_assert_int_eq(quota_charge(&q, &a, 5, ONE_CLIENT, &over), SB_E_LIMIT);
        ck_assert_int_eq(over, QUOTA_CLIENTS);
        quota_uncharge(&b);
        ck_assert_int_eq(quota_charge(&q, &a, 5, ONE_CLIENT, &over), 0);
        quota_uncharge(&a);
        ck_assert(sb_list_is_empty(&q.users));
}
END_TEST

START_TEST(a_charge_moves_into_its_object) {
        QuotaCharge tmp, owned = QUOTA_CHARGE_NULL;
        QuotaKind over;
        Quota q;

        quota_init(&q, 0, 0);
        quota_set_limits(&q, 1, 1, 10);
        ck_assert_int_eq(quota_charge(&q, &tmp, 7, ONE_POOL(10), &over), 0);
        quota_charge_move(&owned, &tmp);
        quota_uncharge(&tmp);                          /* what a _cleanup_ does after the move */
        ck_assert_uint_eq(quota_used(&q, 7, QUOTA_BYTES), 10);
        quota_uncharge(&owned);
        ck_assert_uint_eq(quota_used(&q, 7, QUOTA_BYTES), 0);
        ck_assert_str_eq(quota_limit_name(QUOTA_BYTES), "max_bytes_per_uid");
}
END_TEST

/* Holds (a ready batch's meta): per uid through its client's charge, and in a total in
 * which exempt uids count too; refused whole; the uid outlives its last client while a
 * hold remains. */
START_TEST(holds_count_per_uid_and_in_total) {
        QuotaCharge client, root;
        QuotaHold a, b, c, d;
        QuotaHoldLimit over = QUOTA_HOLD_TOTAL;
        QuotaKind kover;
        Quota q;

        quota_init(&q, 0, 999);
        quota_set_limits(&q, 10, 10, 10);
        ck_assert_int_eq(quota_charge(&q, &client, 1000, ONE_CLIENT, &kover), 0);
        ck_assert_int_eq(quota_charge(&q, &root, 0, ONE_CLIENT, &kover), 0);
        ck_assert_int_eq(quota_hold(&q, &a, &client, 60, 100, 150, &over), 0);
        ck_assert_int_eq(quota_hold(&q, &b, &client, 41, 100, 150, &over), SB_E_LIMIT);
        ck_assert_int_eq(over, QUOTA_HOLD_PER_UID);
        ck_assert_ptr_null(b.quota);                   /* a refusal holds nothing */
        ck_assert_int_eq(quota_hold(&q, &b, &root, 80, 100, 150, &over), 0);   /* exempt: no per-uid limit */
        ck_assert_uint_eq(q.held, 140);
        ck_assert_uint_eq(quota_held_by(&client), 60);
        ck_assert_uint_eq(quota_held_by(&root), 0);
        ck_assert_int_eq(quota_hold(&q, &c, &client, 11, 100, 150, &over), SB_E_LIMIT);
        ck_assert_int_eq(over, QUOTA_HOLD_TOTAL);
        ck_assert_int_eq(quota_hold(&q, &c, &client, 10, 100, 150, &over), 0);
        ck_assert_int_eq(quota_hold(&q, &d, &client, UINT64_MAX, UINT64_MAX, UINT64_MAX, &over), SB_E_LIMIT);
        /* The client goes; its uid's holds stay, and so does its entry. */
        quota_uncharge(&client);
        ck_assert_uint_eq(quota_used(&q, 1000, QUOTA_CLIENTS), 0);
        ck_assert(!sb_list_is_empty(&q.users));
        quota_unhold(&a);
        quota_unhold(&a);                              /* twice: nothing more */
        quota_unhold(&b);
        ck_assert_uint_eq(q.held, 10);
        quota_unhold(&c);
        ck_assert_uint_eq(q.held, 0);
        ck_assert(sb_list_is_empty(&q.users));
        quota_uncharge(&root);
}
END_TEST

static int collect(const QuotaUsage *u, void *userdata) {
        QuotaUsage *v = userdata;

        while (v->uid != (uid_t)-1)
                v++;
        *v = *u;
        v[1].uid = (uid_t)-1;
        return u->uid == 1002 ? 7 : 0;
}

/* Status lists the charged uids, first charged first, with what each uses. */
START_TEST(each_user_is_listed_with_its_use) {
        QuotaUsage seen[4] = { { .uid = (uid_t)-1 } };
        QuotaCharge a, b, c, root;
        QuotaHold h;
        QuotaKind over;
        QuotaHoldLimit hover;
        Quota q;

        quota_init(&q, 0, 999);
        ck_assert_int_eq(quota_charge(&q, &root, 0, ONE_CLIENT, &over), 0);
        ck_assert_int_eq(quota_charge(&q, &a, 1001, ONE_POOL(4096), &over), 0);
        ck_assert_int_eq(quota_charge(&q, &b, 1000, ONE_CLIENT, &over), 0);
        ck_assert_int_eq(quota_charge(&q, &c, 1001, ONE_CLIENT, &over), 0);
        ck_assert_int_eq(quota_hold(&q, &h, &c, 30, 100, 100, &hover), 0);
        ck_assert_int_eq(quota_each_user(&q, collect, seen), 0);
        ck_assert_uint_eq(seen[0].uid, 1001);          /* root is exempt: not listed */
        ck_assert_uint_eq(seen[0].used[QUOTA_POOLS], 1);
        ck_assert_uint_eq(seen[0].used[QUOTA_BYTES], 4096);
        ck_assert_uint_eq(seen[0].used[QUOTA_CLIENTS], 1);
        ck_assert_uint_eq(seen[0].held, 30);
        ck_assert_uint_eq(seen[1].uid, 1000);
        ck_assert_uint_eq(seen[1].used[QUOTA_CLIENTS], 1);
        ck_assert_uint_eq(seen[2].uid, (uid_t)-1);
        quota_unhold(&h);
        quota_uncharge(&a);
        quota_uncharge(&b);
        quota_uncharge(&c);
        ck_assert_int_eq(quota_charge(&q, &a, 1002, ONE_CLIENT, &over), 0);
        ck_assert_int_eq(quota_each_user(&q, collect, seen), 7);   /* a nonzero return stops the walk */
        quota_uncharge(&a);
}
END_TEST

Suite *suite_quota(void) {
        Suite *s = suite_create("quota");
        TCase *t = tcase_create("charges");

        tcase_add_test(t, charges_add_up_to_the_limit);
        tcase_add_test(t, exempt_uids_are_never_charged);
        tcase_add_test(t, overflow_and_lowered_limits);
        tcase_add_test(t, a_charge_moves_into_its_object);
        tcase_add_test(t, holds_count_per_uid_and_in_total);
        tcase_add_test(t, each_user_is_listed_with_its_use);
        suite_add_tcase(s, t);
        return s;
}
