/*
 * A broker with real pools and sessions, driven without sockets: the status reply as an
 * admin and as a stranger see it, and a wait from its start to its one reply (answered
 * by another session, timed out on the event loop, cancelled, or failed by a drop).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "log.h"
#include "protocol.h"
#include "session.h"
#include "status.h"
#include "unit.h"

static Broker *mkbroker(void) {
        Config *config = config_new_default();
        sd_event *event = NULL;
        Broker *b = NULL;

        log_set_max_priority(LOG_CRIT);
        ck_assert_int_eq(sd_event_new(&event), 0);
        ck_assert_int_eq(broker_new(&b, event, config), 0);
        sd_event_unref(event);
        return b;
}

static Pool *mkpool(Broker *b, const char *name, uint32_t slots, unsigned mode) {
        PoolSpec spec = { .slot_size = 4096, .slots = slots, .mode = mode, .persistent = true, .uid = getuid(),
                          .gid = getgid() };
        SbReason why;
        Pool *p = NULL;

        strcpy(spec.name, name);
        ck_assert_msg(broker_create_pool(b, &spec, &p, &why) == 0, "%s", why.text);
        return p;
}

/* The replies a session's wait ended with, as text. */
static char last_reply[4096];
static int n_replies;

static void on_done(Wait *w, cJSON *reply) {
        char *text = reply ? cJSON_PrintUnformatted(reply) : NULL;

        (void)w;
        snprintf(last_reply, sizeof(last_reply), "%s", text ? text : "(null)");
        n_replies++;
        cJSON_free(text);
        cJSON_Delete(reply);
}

static void mksession(Session *s, Broker *b, uid_t uid, Role role, const char *name, Pool *join) {
        struct ucred cred = { .pid = 4242, .uid = uid, .gid = uid };
        Member *m;

        ck_assert_int_eq(session_init(s, b, &cred, NULL, 0, on_done, NULL), 0);
        s->hello = true;
        s->role = role;
        s->name = name ? strdup(name) : NULL;
        if (join)
                ck_assert_int_eq(session_join(s, join, &m), 0);
}

/* The status reply as a client reads it: printed, then parsed. */
/* Start a wait of @s on pool "train", with no reply seen yet. */
static void begin_wait(Session *s, PoolWaitKind kind, const cJSON *id, uint64_t timeout_usec, uint32_t max) {
        SlotView v[4];
        size_t n;

        n_replies = 0;
        ck_assert_int_eq(wait_begin(&s->wait, session_find_member(s, "train"), kind, id, timeout_usec, max, -1, v, &n),
                         POOL_WAITING);
}

static cJSON *status_of(const Session *asker, const char *pool, int *r) {
        cJSON *reply = reply_new(NULL), *parsed;
        SbReason why;
        char *text;

        *r = status_reply(asker, pool, 0, STATUS_HELD_DEFAULT, reply, &why);
        text = cJSON_PrintUnformatted(reply);
        parsed = cJSON_Parse(text);
        ck_assert_ptr_nonnull(parsed);
        cJSON_free(text);
        cJSON_Delete(reply);
        return parsed;
}

START_TEST(status_shows_pools_and_clients_as_the_asker_may_see_them) {
        Broker *b = mkbroker();
        Pool *p = mkpool(b, "train", 2, 0600), *q = mkpool(b, "other", 1, 0600);
        Session admin, prod, stranger;
        const cJSON *pools, *clients, *held;
        SlotView sv, *s = &sv;
        cJSON *st;
        int r;

        mksession(&admin, b, getuid(), ROLE_ADMIN, NULL, NULL);
        mksession(&prod, b, getuid(), ROLE_PRODUCER, "loader-0", p);
        mksession(&stranger, b, 4242, ROLE_ADMIN, "x", NULL);
        ck_assert_int_eq(pool_acquire(session_find_member(&prod, "train"), s), 0);

        st = status_of(&admin, NULL, &r);
        ck_assert_int_eq(r, 0);
        pools = cJSON_GetObjectItem(st, "pools");
        clients = cJSON_GetObjectItem(st, "clients");
        ck_assert_int_eq(cJSON_GetArraySize(pools), 2);
        ck_assert_int_eq(cJSON_GetArraySize(clients), 3);
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pools, 0), "pool")->valuestring, "train");
        ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pools, 0), "writing")->valueint, 1);
        ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pools, 0), "free")->valueint, 1);
        ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(pools, 0), "shmid")->valueint, p->seg.shmid);
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(clients, 1), "role")->valuestring, "producer");
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(clients, 1), "name")->valuestring, "loader-0");
        held = cJSON_GetObjectItem(cJSON_GetArrayItem(clients, 1), "held");
        ck_assert_int_eq(cJSON_GetArraySize(held), 1);
        ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(held, 0), "state")->valuestring, "writing");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(clients, 0), "name")));
        ck_assert_ptr_nonnull(cJSON_GetObjectItem(st, "uptime_ms"));
        cJSON_Delete(st);

        /* A client the kernel would not let attach a 0600 pool of another uid never
         * learns its shmid. */
        st = status_of(&stranger, NULL, &r);
        ck_assert_int_eq(r, 0);
        ck_assert_ptr_null(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "pools"), 0), "shmid"));
        cJSON_Delete(st);

        /* One pool: that pool and its users only; an unknown pool is an error. */
        st = status_of(&admin, "other", &r);
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "pools")), 1);
        ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(st, "clients")), 0);
        cJSON_Delete(st);
        st = status_of(&admin, "nope", &r);
        ck_assert_int_eq(r, SB_E_NO_SUCH_POOL);
        cJSON_Delete(st);
        (void)q;

        session_clear(&prod);                          /* its slot comes back */
        ck_assert_uint_eq(pool_state(p)->count[SLOT_FREE], 2);
        session_clear(&stranger);
        session_clear(&admin);
        broker_free(b);
}
END_TEST

START_TEST(wait_answered_by_another_session) {
        Broker *b = mkbroker();
        Pool *p = mkpool(b, "train", 4, 0600);
        Session prod, cons;
        cJSON *id = cJSON_CreateNumber(7);
        PoolPublish v[2] = { 0 };
        size_t bad;
        SlotView sv, *s = &sv;

        mksession(&prod, b, getuid(), ROLE_PRODUCER, NULL, p);
        mksession(&cons, b, getuid(), ROLE_CONSUMER, NULL, p);
        begin_wait(&cons, WAIT_CONSUME, id, UINT64_MAX, 2);
        ck_assert(session_is_waiting(&cons));
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_CONSUME], 1);
        for (int i = 0; i < 2; i++) {
                ck_assert_int_eq(pool_acquire(session_find_member(&prod, "train"), s), 0);
                v[i] = (PoolPublish){ .slot = s->index, .nbytes = 3, .meta = "{\"k\":1}", .meta_len = 7 };
        }
        ck_assert_int_eq(pool_publish(session_find_member(&prod, "train"), v, 2, &bad), 0);
        ck_assert_int_eq(n_replies, 1);                /* one reply, with both batches */
        ck_assert(!session_is_waiting(&cons));
        ck_assert_ptr_nonnull(strstr(last_reply, "\"id\":7,\"ok\":true,\"batches\":[{"));
        ck_assert_ptr_nonnull(strstr(last_reply, "\"meta\":{\"k\":1}}]"));
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READING], 2);
        cJSON_Delete(id);
        session_clear(&cons);                          /* requeued, by policy */
        ck_assert_uint_eq(pool_state(p)->count[SLOT_READY], 2);
        session_clear(&prod);
        broker_free(b);
}
END_TEST

START_TEST(wait_times_out_on_the_event_loop) {
        Broker *b = mkbroker();
        Pool *p = mkpool(b, "train", 1, 0600);
        Session prod, other;
        SlotView sv, *s = &sv;

        mksession(&prod, b, getuid(), ROLE_PRODUCER, NULL, p);
        mksession(&other, b, getuid(), ROLE_PRODUCER, NULL, p);
        ck_assert_int_eq(pool_acquire(session_find_member(&prod, "train"), s), 0);
        begin_wait(&other, WAIT_ACQUIRE, NULL, 20000, 0);
        for (int i = 0; i < 100 && n_replies == 0; i++)
                ck_assert_int_ge(sd_event_run(b->event, 100000), 0);
        ck_assert_int_eq(n_replies, 1);
        ck_assert_str_eq(last_reply, "{\"ok\":false,\"error\":\"timeout\",\"message\":\"no slot became free\"}");
        ck_assert(!session_is_waiting(&other));
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_ACQUIRE], 0);
        ck_assert_uint_ge(pool_stats(p)->wait_usec[WAIT_ACQUIRE], 20000);   /* the wait was counted */
        session_clear(&other);
        session_clear(&prod);
        broker_free(b);
}
END_TEST

START_TEST(wait_cancelled_or_failed_by_a_drop) {
        Broker *b = mkbroker();
        Pool *p = mkpool(b, "train", 1, 0600);
        Session cons;

        mksession(&cons, b, getuid(), ROLE_CONSUMER, NULL, p);
        begin_wait(&cons, WAIT_CONSUME, NULL, 1000000, 0);
        wait_cancel(&cons.wait);                       /* its client went away: no reply */
        ck_assert(!session_is_waiting(&cons));
        ck_assert_uint_eq(pool_state(p)->n_waiters[WAIT_CONSUME], 0);
        ck_assert_int_eq(sd_event_run(b->event, 0), 0);  /* and no timer left armed */
        ck_assert_int_eq(n_replies, 0);

        begin_wait(&cons, WAIT_CONSUME, NULL, UINT64_MAX, 0);
        broker_drop_pool(b, p);
        ck_assert_int_eq(n_replies, 1);
        ck_assert_ptr_nonnull(strstr(last_reply, "\"error\":\"no_such_pool\""));
        ck_assert(sb_list_is_empty(&cons.members));     /* the drop closed its membership */
        session_clear(&cons);
        broker_free(b);
}
END_TEST

Suite *suite_session(void) {
        Suite *s = suite_create("session");
        TCase *t = tcase_create("status and waits");

        tcase_add_test(t, status_shows_pools_and_clients_as_the_asker_may_see_them);
        tcase_add_test(t, wait_answered_by_another_session);
        tcase_add_test(t, wait_times_out_on_the_event_loop);
        tcase_add_test(t, wait_cancelled_or_failed_by_a_drop);
        suite_add_tcase(s, t);
        return s;
}
