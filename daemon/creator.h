/*
 * creator.h: the daemon as the creator of every segment, checked and cleaned up at start.
 */
#pragma once

#include "broker.h"
#include "sb-error.h"

/*
 * Before the first pool: remove the segments that a daemon of our uid orphaned when it was
 * killed, and check that the daemon's own group gives no client access to the segments it
 * creates. Returns 0, or -errno with the reason in @why: the daemon must not start.
 */
int creator_prepare(Broker *b, SbReason *why);
