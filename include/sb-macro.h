/*
 * sb-macro.h: small language helpers shared by the daemon, the library and the tests.
 *
 * Owns the cleanup attributes, the steal pattern and a few compiler annotations,
 * in the style of systemd's macro.h, reduced to what this project uses.
 */
#pragma once

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _public_ __attribute__((visibility("default")))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define sb_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Take ownership of *pp: return it and leave NULL behind, so a _cleanup_ does nothing. */
static inline void *sb_steal_ptr(void *pp) {
        void **p = pp;
        void *r = *p;
        *p = NULL;
        return r;
}
#define steal_ptr(p) sb_steal_ptr(&(p))

static inline int sb_steal_fd(int *fd) {
        int r = *fd;
        *fd = -1;
        return r;
}

static inline void freep(void *p) {
        free(*(void **)p);
}

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

/* Define TYPE_freep()-style helpers for a function that takes and returns a pointer. */
#define DEFINE_CLEANUP_FUNC(type, func)                                                 \
        static inline void func##p(type **p) {                                          \
                if (*p)                                                                 \
                        (void)func(*p);                                                 \
        }
