/*
 * libFuzzer target: request lines through the daemon's own framing (conn.c) and
 * operation handlers (ops.c), against a live broker state (pools, waits, held slots).
 * Each input is everything one client sends before it hangs up; the client's session
 * then ends, so every slot it took must come back: the target checks that after every
 * input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "conn.h"
#include "log.h"
#include "ops.h"
#include "session.h"

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

/* Whether @text is one JSON object and nothing else: what a kept meta must be. */
static bool one_object(const char *text, size_t len) {
        const char *end = NULL;
        cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, false);
        bool ok = cJSON_IsObject(v) && end == text + len && strlen(text) == len;

        cJSON_Delete(v);
        return ok;
}

static void check_accounting(Broker *b) {
        uint64_t held = 0;
        SbList *it;

        sb_list_for_each(it, &b->pools) {
                Pool *p = sb_list_entry(it, Pool, owner_link);
                const FpPool *ps = pool_state(p);
                const char *why;
                uint32_t sum = 0;
                for (int s = 0; s < _SLOT_STATE_MAX; s++)
                        sum += ps->count[s];
                if (fp_check(&p->fp, &why) != 0)
                        abort();
                /* a meta is kept, and held, exactly while its batch is ready or being read */
                for (uint32_t i = 0; i < p->spec.slots; i++) {
                        const SlotMeta *m = &p->metas[i];
                        uint8_t state = fp_slot(&p->fp, i)->state;
                        if (m->meta_hold.amount != p->meta_len[i] || (!m->meta) != (p->meta_len[i] == 0) ||
                            (m->meta && state != SLOT_READY && state != SLOT_READING) ||
                            (m->meta && !one_object(m->meta, p->meta_len[i])))
                                abort();
                        held += m->meta_hold.amount;
                }
                /* every slot in exactly one state; nobody left to hold or wait */
                if (sum != p->spec.slots || ps->count[SLOT_WRITING] || ps->count[SLOT_READING] ||
                    ps->n_waiters[0] || ps->n_waiters[1] || !pool_is_unused(p) || !p->spec.persistent)
                        abort();
        }
        if (b->n_sessions != 0 || held != b->quota.held)
                abort();
}

/* A wait of this client answered by another's request: nobody reads the reply here. */
static void on_wait_done(Wait *w, cJSON *reply) {
        (void)w;
        cJSON_Delete(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct ucred cred = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
        size_t max_line = (size_t)(broker ? broker->config->limits.max_line : 4096);
        const char *line;
        Session s;
        Conn c;
        size_t len;

        if (!broker)
                broker = setup();
        conn_init(&c, -1);
        if (sb_bytes_append(&c.in, data, size) < 0 ||
            session_init(&s, broker, &cred, NULL, 0, on_wait_done, NULL) < 0)
                abort();
        c.eof = true;    /* the client sent all of this, then hung up */
        while (!session_is_waiting(&s) && conn_next_line(&c, max_line, &line, &len) > 0) {
                if (ops_handle_line(&s, line, len, &c.out) < 0)
                        break;
                sb_bytes_consume(&c.out, sb_bytes_pending(&c.out));   /* replies are not the point here */
        }
        session_clear(&s);
        conn_clear(&c);
        check_accounting(broker);
        return 0;
}
