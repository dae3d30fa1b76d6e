/*
 * sb-time.h: the monotonic clock in microseconds, the unit of every timestamp here.
 */
#pragma once

#include <stdint.h>
#include <time.h>

static inline uint64_t sb_now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * UINT64_C(1000000) + (uint64_t)ts.tv_nsec / 1000;
}
