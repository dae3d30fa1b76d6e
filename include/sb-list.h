/*
 * sb-list.h: intrusive circular doubly-linked lists (the shape of c-list).
 *
 * A node that is not on any list points to itself, so unlinking twice is harmless
 * and "is it linked?" is a pointer comparison. Every operation is O(1); the slot
 * free list, ready queues, held lists and waiter queues are all built on it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "sb-macro.h"

typedef struct SbList {
        struct SbList *prev, *next;
} SbList;

static inline void sb_list_init(SbList *l) {
        l->prev = l->next = l;
}

static inline bool sb_list_is_empty(const SbList *l) {
        return l->next == l;
}

static inline bool sb_list_is_linked(const SbList *n) {
        return n->next != n;
}

static inline void sb_list_link_between(SbList *n, SbList *prev, SbList *next) {
        n->prev = prev;
        n->next = next;
        prev->next = n;
        next->prev = n;
}

static inline void sb_list_append(SbList *l, SbList *n) {
        sb_list_link_between(n, l->prev, l);
}

static inline void sb_list_prepend(SbList *l, SbList *n) {
        sb_list_link_between(n, l, l->next);
}

static inline void sb_list_unlink(SbList *n) {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        sb_list_init(n);
}

/* Move every node of @src to the tail of @dst; @src ends empty. */
static inline void sb_list_splice_tail(SbList *dst, SbList *src) {
        if (sb_list_is_empty(src))
                return;
        src->next->prev = dst->prev;
        dst->prev->next = src->next;
        src->prev->next = dst;
        dst->prev = src->prev;
        sb_list_init(src);
}

#define sb_list_entry(ptr, type, member) sb_container_of(ptr, type, member)

#define sb_list_first_entry(l, type, member)                                            \
        (sb_list_is_empty(l) ? NULL : sb_list_entry((l)->next, type, member))

#define sb_list_for_each(it, l) for ((it) = (l)->next; (it) != (l); (it) = (it)->next)

/* Iterate while allowing the current node to be unlinked. */
#define sb_list_for_each_safe(it, tmp, l)                                               \
        for ((it) = (l)->next, (tmp) = (it)->next; (it) != (l); (it) = (tmp), (tmp) = (it)->next)
