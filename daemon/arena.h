/*
 * arena.h: per-request memory for cJSON (see arena.c for why).
 *
 * Between arena_begin() and arena_end(), cJSON allocates from one block that
 * arena_end() resets: nothing allocated in between may be used after it. Copy what must
 * stay (a waiting request's id) between arena_suspend() and arena_resume().
 */
#pragma once

#include <stddef.h>

#include <cjson/cJSON.h>

void arena_begin(void);
void arena_end(void);

/* Allocate from malloc() again until arena_resume(); returns what to resume with. */
unsigned arena_suspend(void);
void arena_resume(unsigned depth);

/* cJSON_Delete(), which skips the walk when arena_end() will take the whole tree anyway. */
void arena_json_delete(cJSON *item);
