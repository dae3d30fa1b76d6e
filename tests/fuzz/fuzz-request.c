/*
 * libFuzzer target: request lines through the real operation handlers, against a live
 * broker state (pools, waits, held slots), on a connection whose socket nobody reads.
 * Each input is a batch of lines from one client; the client then disconnects, so
 * every slot it took must come back: the target checks that after every input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "ops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Broker *broker;

static Broker *setup(void) {
        Config *config = config_new_default();
        sd_event *event = NULL;
        Broker *b = NULL;

        log_set_max_priority(LOG_CRIT);
        config->limits.max_pools = 4;
        config->limits.max_bytes = 1u << 20;
        config->limits.max_line = 4096;
        if (sd_event_new(&event) < 0 || broker_new(&b, event, config) < 0)
                abort();
        sd_event_unref(event);
        return b;
}

static void check_accounting(Broker *b) {
        SbList *it;

        sb_list_for_each(it, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                uint32_t sum = 0;
                for (int s = 0; s < _SLOT_STATE_MAX; s++)
                        sum += p->count[s];
                /* every slot in exactly one state; nobody left to hold or wait */
                if (sum != p->spec.slots || p->count[SLOT_WRITING] || p->count[SLOT_READING] ||
                    p->n_waiters[0] || p->n_waiters[1] || !pool_is_unused(p) || !p->spec.persistent)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int sv[2];
        Conn *c = NULL;
        size_t pos = 0;

        if (!broker)
                broker = setup();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        if (conn_new(&c, broker, sv[0]) < 0)
                abort();
        while (pos < size && !c->waiting) {
                const uint8_t *nl = memchr(data + pos, '\n', size - pos);
                size_t n = nl ? (size_t)(nl - (data + pos)) : size - pos;
                if (ops_handle_line(c, (const char *)data + pos, n) < 0)
                        break;
                sb_bytes_consume(&c->out, sb_bytes_pending(&c->out));   /* replies are not the point here */
                pos += n + 1;
        }
        conn_free(c);
        close(sv[1]);
        check_accounting(broker);
        return 0;
}
