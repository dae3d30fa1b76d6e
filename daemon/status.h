/*
 * status.h: the status reply: every pool with its slot counts and counters, every client
 * with what it holds, as one admin sees them.
 */
#pragma once

#include <cjson/cJSON.h>

#include "session.h"

/* How many held slots a client entry lists by default, and at most. */
#define STATUS_HELD_DEFAULT 32
#define STATUS_HELD_MAX 1024

/*
 * Fill @reply with "pools", "clients" and "uptime_ms" as @asker may see them (a pool's
 * shmid only to a client the kernel would let attach it); only pool @pool and its users
 * when @pool is not NULL. Each client's "held" lists at most @held_max of its held slots
 * from the @held_from-th on, and "held_count" counts them all: the reply's size is bounded
 * by the number of clients, whatever they hold. Returns 0, SB_E_NO_SUCH_POOL (with @why),
 * or -ENOMEM.
 */
int status_reply(const Session *asker, const char *pool, uint32_t held_from, uint32_t held_max, cJSON *reply,
                 SbReason *why);
