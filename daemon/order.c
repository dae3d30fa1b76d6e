/*
 * order.c: heap and seq index of an ordered pool's ready batches.
 */
#include <errno.h>
#include <stdlib.h>

#include "order.h"
#include "slot.h"

static uint32_t order_hash(uint64_t stream, uint64_t seq) {
        uint64_t h = (seq ^ (stream * UINT64_C(0x9e3779b97f4a7c15))) * UINT64_C(0xff51afd7ed558ccd);
        return (uint32_t)(h >> 32);
}

int order_init(OrderQueue *q, Slot *slots, uint32_t n) {
        uint32_t cap = 4;

        /* A load factor of at most one half keeps linear probes short. */
        while (cap < 2 * n)
                cap <<= 1;
        *q = (OrderQueue){ .slots = slots, .mask = cap - 1 };
        q->heap = calloc(n ? n : 1, sizeof(Slot *));  // NOLINT(bugprone-sizeof-expression): an array of pointers
        q->index = calloc(cap, sizeof(*q->index));
        if (!q->heap || !q->index) {
                order_done(q);
                return -ENOMEM;
        }
        return 0;
}

void order_done(OrderQueue *q) {
        free(q->heap);
        free(q->index);
        q->heap = NULL;
        q->index = NULL;
}

static bool key_less(const Slot *a, const Slot *b) {
        return a->stream < b->stream || (a->stream == b->stream && a->seq < b->seq);
}

static void heap_set(OrderQueue *q, uint32_t i, Slot *s) {
        q->heap[i] = s;
        s->heap_pos = i;
}

static void heap_up(OrderQueue *q, uint32_t i) {
        Slot *s = q->heap[i];

        while (i > 0) {
                uint32_t parent = (i - 1) / 2;
                if (!key_less(s, q->heap[parent]))
                        break;
                heap_set(q, i, q->heap[parent]);
                i = parent;
        }
        heap_set(q, i, s);
}

static void heap_down(OrderQueue *q, uint32_t i) {
        Slot *s = q->heap[i];

        for (;;) {
                uint32_t child = 2 * i + 1;
                if (child >= q->len)
                        break;
                if (child + 1 < q->len && key_less(q->heap[child + 1], q->heap[child]))
                        child++;
                if (!key_less(q->heap[child], s))
                        break;
                heap_set(q, i, q->heap[child]);
                i = child;
        }
        heap_set(q, i, s);
}

static uint32_t *index_find(const OrderQueue *q, uint64_t stream, uint64_t seq) {
        for (uint32_t i = order_hash(stream, seq) & q->mask;; i = (i + 1) & q->mask) {
                uint32_t v = q->index[i];
                if (v == 0)
                        return &q->index[i];
                if (q->slots[v - 1].stream == stream && q->slots[v - 1].seq == seq)
                        return &q->index[i];
        }
}

/* Remove the entry at @pos, shifting later members of its probe run back (no tombstones). */
static void index_remove_at(OrderQueue *q, uint32_t pos) {
        uint32_t hole = pos;

        q->index[hole] = 0;
        for (uint32_t i = (hole + 1) & q->mask; q->index[i]; i = (i + 1) & q->mask) {
                const Slot *s = &q->slots[q->index[i] - 1];
                uint32_t home = order_hash(s->stream, s->seq) & q->mask;
                /* Move it into the hole unless its home lies cyclically in (hole, i]. */
                if (((i - home) & q->mask) >= ((i - hole) & q->mask)) {
                        q->index[hole] = q->index[i];
                        q->index[i] = 0;
                        hole = i;
                }
        }
}

bool order_contains(const OrderQueue *q, uint64_t stream, uint64_t seq) {
        return *index_find(q, stream, seq) != 0;
}

void order_push(OrderQueue *q, Slot *s) {
        *index_find(q, s->stream, s->seq) = s->index + 1;
        q->heap[q->len] = s;
        heap_up(q, q->len++);
}

Slot *order_peek(const OrderQueue *q) {
        return q->len ? q->heap[0] : NULL;
}

Slot *order_pop(OrderQueue *q) {
        Slot *top;
        uint32_t *e;

        if (q->len == 0)
                return NULL;
        top = q->heap[0];
        if (--q->len > 0) {
                heap_set(q, 0, q->heap[q->len]);
                heap_down(q, 0);
        }
        e = index_find(q, top->stream, top->seq);
        index_remove_at(q, (uint32_t)(e - q->index));
        return top;
}
