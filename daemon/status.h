/*
 * status.h: the status reply: every pool with its slot counts and counters, every client
 * with what it holds, as one admin sees them.
 */
#pragma once

#include <cjson/cJSON.h>

#include "session.h"

/*
 * Fill @reply with "pools", "clients" and "uptime_ms" as @asker may see them (a pool's
 * shmid only to a client the kernel would let attach it); only pool @pool and its users
 * when @pool is not NULL. Returns 0, SB_E_NO_SUCH_POOL (with @why), or -ENOMEM.
 */
int status_reply(const Session *asker, const char *pool, cJSON *reply, SbReason *why);
