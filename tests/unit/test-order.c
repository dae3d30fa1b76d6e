/* The ordered pools' heap and seq index, against a brute-force model. */
#include <stdlib.h>

#include "order.h"
#include "pool.h"
#include "unit.h"

START_TEST(pops_in_stream_then_seq_order) {
        Slot slots[8] = { 0 };
        OrderQueue q;
        const uint64_t keys[8][2] = { { 1, 0 }, { 0, 5 }, { 0, 1 }, { 1, 3 }, { 0, 0 }, { 2, 0 }, { 0, 9 }, { 1, 1 } };
        const int want[8] = { 4, 2, 1, 6, 0, 7, 3, 5 };

        ck_assert_int_eq(order_init(&q, slots, 8), 0);
        for (uint32_t i = 0; i < 8; i++) {
                slots[i].index = i;
                slots[i].stream = keys[i][0];
                slots[i].seq = keys[i][1];
                order_push(&q, &slots[i]);
        }
        ck_assert(order_contains(&q, 0, 9));
        ck_assert(!order_contains(&q, 0, 2));
        for (int i = 0; i < 8; i++) {
                Slot *s = order_pop(&q);
                ck_assert_uint_eq(s->index, (unsigned)want[i]);
                ck_assert(!order_contains(&q, s->stream, s->seq));
        }
        ck_assert_ptr_null(order_pop(&q));
        order_done(&q);
}
END_TEST

START_TEST(random_against_model) {
        enum { N = 64 };
        Slot slots[N] = { 0 };
        bool in[N] = { 0 };
        OrderQueue q;

        srand(12345);
        ck_assert_int_eq(order_init(&q, slots, N), 0);
        for (uint32_t i = 0; i < N; i++)
                slots[i].index = i;
        for (int step = 0; step < 20000; step++) {
                uint32_t i = (uint32_t)rand() % N;
                if (!in[i]) {
                        /* keys unique: seq carries the slot index in its low bits */
                        slots[i].stream = (uint64_t)(rand() % 3);
                        slots[i].seq = (uint64_t)(rand() % 50) * N + i;
                        ck_assert(!order_contains(&q, slots[i].stream, slots[i].seq));
                        order_push(&q, &slots[i]);
                        in[i] = true;
                } else {
                        int best = -1;
                        for (int j = 0; j < N; j++)
                                if (in[j] && (best < 0 || slots[j].stream < slots[best].stream ||
                                              (slots[j].stream == slots[best].stream && slots[j].seq < slots[best].seq)))
                                        best = j;
                        Slot *s = order_pop(&q);
                        ck_assert_uint_eq(s->index, (unsigned)best);
                        in[best] = false;
                        for (int j = 0; j < N; j++)
                                ck_assert(order_contains(&q, slots[j].stream, slots[j].seq) == in[j]);
                }
        }
        order_done(&q);
}
END_TEST

Suite *suite_order(void) {
        Suite *s = suite_create("order");
        TCase *t = tcase_create("heap");

        tcase_add_test(t, pops_in_stream_then_seq_order);
        tcase_add_test(t, random_against_model);
        suite_add_tcase(s, t);
        return s;
}
