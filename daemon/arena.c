/*
 * arena.c: the memory of one request.
 *
 * Handling a request line allocates some thirty small cJSON nodes and strings (the
 * parsed request, the reply, the printed reply), and frees them all together once the
 * reply is queued: a malloc() and a free() for each would be a large part of the daemon's
 * cost per batch. cJSON lets a program replace its allocator
 * (cJSON_InitHooks()), so while a request is handled its allocations are bumped out of
 * one block that is reset when the request is done, and free() of such a pointer does
 * nothing. Outside a request (the configuration, replies sent from a timer), or once the
 * block is used up (a huge request), memory comes from malloc() as before; the free hook
 * tells the two apart by address. Whatever must outlive its request is copied out of the
 * arena with arena_suspend() around the copy.
 *
 * Under AddressSanitizer the unused part of the block is poisoned, so a pointer kept past
 * its request is still reported as a use after free.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "arena.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define ARENA_SIZE ((size_t)256 * 1024)
#define ARENA_ALIGN 16u

static struct {
        unsigned char *block;    /* NULL until the first request, or when malloc failed */
        size_t used;
        size_t fallbacks;        /* allocations from malloc() during this request */
        unsigned depth;          /* > 0 while a request is handled and not suspended */
        bool hooked;
} arena;

static bool arena_owns(const void *p) {
        const unsigned char *q = p;

        return arena.block && q >= arena.block && q < arena.block + ARENA_SIZE;
}

static void *arena_malloc(size_t n) {
        size_t want = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
        void *p;

        if (arena.depth == 0)
                return malloc(n);
        if (!arena.block || want < n || want > ARENA_SIZE - arena.used) {
                arena.fallbacks++;
                return malloc(n);
        }
        p = arena.block + arena.used;
        arena.used += want;
        UNPOISON(p, n);
        return p;
}

static void arena_free(void *p) {
        if (!arena_owns(p))
                free(p);
}

void arena_begin(void) {
        if (!arena.hooked) {
                cJSON_Hooks hooks = { .malloc_fn = arena_malloc, .free_fn = arena_free };

                /* Pointers cJSON allocated before this came from malloc(); arena_free()
                 * hands them to free(), since they are not in the block. */
                cJSON_InitHooks(&hooks);
                arena.hooked = true;
        }
        if (!arena.block && (arena.block = malloc(ARENA_SIZE)))
                POISON(arena.block, ARENA_SIZE);
        arena.depth = 1;
}

void arena_end(void) {
        arena.depth = 0;
        if (arena.block)
                POISON(arena.block, arena.used);
        arena.used = 0;
        arena.fallbacks = 0;
}

void arena_json_delete(cJSON *item) {
        /* Walking a tree only to free nothing costs about as much as building it. A tree
         * whose root is in the block was made during this request; if nothing this request
         * allocated came from malloc(), neither did any of its nodes, and arena_end() takes
         * them all. */
        if (item && arena.depth > 0 && arena.fallbacks == 0 && arena_owns(item))
                return;
        cJSON_Delete(item);
}

unsigned arena_suspend(void) {
        unsigned d = arena.depth;

        arena.depth = 0;
        return d;
}

void arena_resume(unsigned depth) {
        arena.depth = depth;
}
