/*
 * order.h: the ready batches of an ordered pool, by (stream, seq): a binary min-heap
 * for "the next one", and a hash index for "is this seq already here?".
 *
 * Both are sized once for the pool's slot count and never allocate afterwards.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct Slot Slot;

typedef struct OrderQueue {
        Slot **heap;
        uint32_t len;
        uint32_t *index;         /* open addressing: slot index + 1, 0 for empty */
        uint32_t mask;
        Slot *slots;
} OrderQueue;

/* Size the queue for the @n slots at @slots. Returns 0 or -ENOMEM. */
int order_init(OrderQueue *q, Slot *slots, uint32_t n);
void order_done(OrderQueue *q);

bool order_contains(const OrderQueue *q, uint64_t stream, uint64_t seq);
void order_push(OrderQueue *q, Slot *s);
Slot *order_peek(const OrderQueue *q);
Slot *order_pop(OrderQueue *q);
