/*
 * server/lessor over a real single-member node (raft, WAL, MVCC store), with
 * a 10 ms heartbeat and 100 ms election timeout so that leases of 1 s (the
 * minimum TTL then) expire quickly. Leadership changes are driven through
 * the lessor's own hook (lessor_on_leader), as the node would call it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "keel_err.h"
#include "lessor.h"
#include "mvcc.h"
#include "node.h"

/* ---- fixture ------------------------------------------------------------ */

struct fx
{
    char dir[256];
    uv_loop_t loop;
    struct node *node;
    struct lessor *lessor;
    unsigned revoke_rate;
    uint64_t checkpoint_ms;
    /* revokes and checkpoints seen applied (wrapping the lessor's hook) */
    int revokes;
    uint64_t first_revoke_ms, last_revoke_ms;
    int checkpoints;
    int64_t last_checkpoint_remaining;
};

static void on_applied(void *arg, const Keelpb__Request *req,
                       const ProtobufCMessage *resp)
{
    struct fx *f = arg;
    if (req->op_case == KEELPB__REQUEST__OP_LEASE_REVOKE) {
        uint64_t now = uv_now(&f->loop);
        if (f->revokes++ == 0) {
            f->first_revoke_ms = now;
        }
        f->last_revoke_ms = now;
    }
    if (req->op_case == KEELPB__REQUEST__OP_LEASE_CHECKPOINT &&
        req->lease_checkpoint->n_checkpoints > 0) {
        f->checkpoints++;
        f->last_checkpoint_remaining =
            req->lease_checkpoint->checkpoints[0]->remaining_ttl;
    }
    lessor_on_applied(f->lessor, req, resp);
}

static void run_for(struct fx *f, uint64_t ms);

static void open_all(struct fx *f)
{
    struct lessor_options lo = {.member_id = 0x1234,
                                .heartbeat_ms = 10,
                                .election_ms = 100,
                                .checkpoint_interval_ms = f->checkpoint_ms,
                                .revoke_rate = f->revoke_rate};
    assert_int_equal(lessor_new(&f->loop, &lo, &f->lessor), 0);
    struct node_options o = {0};
    o.data_dir = f->dir;
    o.member_id = 0x1234;
    o.cluster_id = 0x5678;
    o.heartbeat_ms = 10;
    o.election_ms = 100;
    o.wal_segment_size = 1 << 20;
    o.map_size = 64u << 20;
    o.on_applied = on_applied;
    o.on_applied_arg = f;
    o.on_leader = lessor_on_leader;
    o.on_leader_arg = f->lessor;
    char err[512] = "";
    int rv = node_open(&f->loop, &o, &f->node, err, sizeof err);
    if (rv != 0) {
        fail_msg("node_open: %s: %s", keel_strerror(rv), err);
    }
    assert_int_equal(lessor_start(f->lessor, f->node), 0);
    for (int i = 0; i < 300 && !lessor_is_primary(f->lessor); i++) {
        run_for(f, 10);
    }
    assert_true(lessor_is_primary(f->lessor));
}

static void closed(void *arg)
{
    *(int *)arg = 1;
}

static void close_all(struct fx *f)
{
    int done = 0;
    lessor_stop(f->lessor);
    node_close(f->node, closed, &done);
    while (!done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    lessor_close(f->lessor);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    f->node = NULL;
    f->lessor = NULL;
}

static int setup_with(void **state, unsigned revoke_rate, uint64_t cp_ms)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/keel-lessor-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    uv_loop_init(&f->loop);
    f->revoke_rate = revoke_rate;
    f->checkpoint_ms = cp_ms;
    open_all(f);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, 0, 0);
}

static int setup_slow_revokes(void **state)
{
    return setup_with(state, 4, 0);
}

static int setup_checkpoints(void **state)
{
    return setup_with(state, 0, 200);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->node != NULL) {
        close_all(f);
    }
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static void timer_fired(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

static void timer_closed(uv_handle_t *h)
{
    (void)h;
}

/* Run the loop for ms. */
static void run_for(struct fx *f, uint64_t ms)
{
    uv_timer_t t;
    int fired = 0;
    uv_timer_init(&f->loop, &t);
    t.data = &fired;
    uv_timer_start(&t, timer_fired, ms, 0);
    while (!fired) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, timer_closed);
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

struct call
{
    int done;
    int rv;
    struct keel_arena arena;
};

static void on_done(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)resp;
    struct call *c = arg;
    c->done++;
    c->rv = rv;
}

static int propose_sync(struct fx *f, Keelpb__Request *req)
{
    struct call c = {0};
    keel_arena_init(&c.arena, 0);
    assert_int_equal(node_propose(f->node, req, &c.arena, on_done, &c), 0);
    while (!c.done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    keel_arena_free(&c.arena);
    return c.rv;
}

static int grant(struct fx *f, int64_t id, int64_t ttl)
{
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.id = id;
    g.ttl = ttl;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_LEASE_GRANT;
    req.lease_grant = &g;
    return propose_sync(f, &req);
}

static void put(struct fx *f, const char *key, int64_t lease)
{
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key.data = (uint8_t *)key;
    p.key.len = strlen(key);
    p.lease = lease;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_PUT;
    req.put = &p;
    assert_int_equal(propose_sync(f, &req), 0);
}

static bool in_store(struct fx *f, int64_t id)
{
    struct lease_store_lease l;
    int rv = lease_store_get(node_store(f->node), NULL, id, &l);
    assert_true(rv == 0 || rv == KEEL_ELEASENOTFOUND);
    return rv == 0;
}

static size_t keys_of(struct fx *f, int64_t id)
{
    struct keel_arena a;
    keel_arena_init(&a, 0);
    ProtobufCBinaryData *keys = NULL;
    size_t n = 0;
    int rv = lease_store_keys(node_store(f->node), NULL, id, &a, &keys, &n);
    keel_arena_free(&a);
    return rv == 0 ? n : 0;
}

static int64_t ttl_of(struct fx *f, int64_t id)
{
    int64_t remaining = 0, granted = 0;
    int rv = lessor_time_to_live(f->lessor, id, &remaining, &granted);
    return rv == 0 ? remaining : rv;
}

/* ---- tests -------------------------------------------------------------- */

/* etcd: minTTL = ceil(((3 * electionTicks) / 2) * heartbeat) seconds */
static void test_lessor_min_ttl_as_etcd(void **state)
{
    (void)state;
    static const struct
    {
        unsigned hb, el;
        int64_t min;
    } cases[] = {
        {100, 1000, 2}, /* defaults: 15 * 100 ms = 1.5 s */
        {100, 500, 1},  /* 7 ticks (integer 15/2) * 100 ms */
        {50, 1000, 2},  /* 30 * 50 ms */
        {100, 3000, 5}, /* 45 * 100 ms = 4.5 s */
        {10, 100, 1},
    };
    uv_loop_t loop;
    uv_loop_init(&loop);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct lessor_options o = {.member_id = 1,
                                   .heartbeat_ms = cases[i].hb,
                                   .election_ms = cases[i].el};
        struct lessor *l = NULL;
        assert_int_equal(lessor_new(&loop, &o, &l), 0);
        assert_int_equal(lessor_min_ttl(l), cases[i].min);
        /* not attached, not primary */
        int64_t ttl = 0, g = 0;
        assert_false(lessor_is_primary(l));
        assert_int_equal(lessor_renew(l, 1, &ttl), KEEL_ENOTLEADER);
        assert_int_equal(lessor_time_to_live(l, 1, &ttl, &g), KEEL_ENOTLEADER);
        lessor_close(l);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_lessor_grant_renew_time_to_live(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 10, 5), 0);
    int64_t remaining = 0, granted = 0;
    assert_int_equal(lessor_time_to_live(f->lessor, 10, &remaining, &granted),
                     0);
    assert_int_equal(granted, 5);
    assert_int_equal(remaining, 4); /* truncated, as etcd */
    int64_t ttl = 0;
    assert_int_equal(lessor_renew(f->lessor, 10, &ttl), 0);
    assert_int_equal(ttl, 5);
    assert_int_equal(lessor_renew(f->lessor, 99, &ttl), KEEL_ELEASENOTFOUND);
    assert_int_equal(lessor_time_to_live(f->lessor, 99, &remaining, &granted),
                     KEEL_ELEASENOTFOUND);
    assert_int_equal(grant(f, 10, 5), KEEL_ELEASEEXIST);

    struct lessor_stats st;
    lessor_stats(f->lessor, &st);
    assert_int_equal(st.granted, 1);
    assert_int_equal(st.renewed, 1);
    assert_int_equal(st.revoked, 0);
    assert_int_equal(st.ttl_count, 1);
    assert_int_equal(st.ttl_sum, 5);
    assert_int_equal(st.ttl_le[2], 0); /* <= 4 s */
    assert_int_equal(st.ttl_le[3], 1); /* <= 8 s */
    assert_int_equal(st.ttl_le[LESSOR_TTL_BUCKETS - 1], 1);
}

static void test_lessor_next_id_positive_unique(void **state)
{
    struct fx *f = *state;
    int64_t prev = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t id = lessor_next_id(f->lessor);
        assert_true(id > 0);
        assert_true(id != prev);
        prev = id;
    }
    /* an id already granted is skipped */
    int64_t next = lessor_next_id(f->lessor) + 1;
    assert_int_equal(grant(f, next, 5), 0);
    assert_true(lessor_next_id(f->lessor) != next);
}

static void test_lessor_list_soonest_first(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 1, 50), 0);
    assert_int_equal(grant(f, 2, 20), 0);
    assert_int_equal(grant(f, 3, 90), 0);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    int64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(lessor_list(f->lessor, &a, &ids, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 2);
    assert_int_equal(ids[1], 1);
    assert_int_equal(ids[2], 3);
    keel_arena_free(&a);
}

static void test_lessor_expiry_revokes_keys(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 7, 1), 0);
    assert_int_equal(grant(f, 8, 30), 0);
    put(f, "a", 7);
    put(f, "b", 7);
    put(f, "c", 8);
    assert_int_equal(keys_of(f, 7), 2);
    run_for(f, 700);
    assert_true(in_store(f, 7)); /* not before its TTL */
    for (int i = 0; i < 200 && in_store(f, 7); i++) {
        run_for(f, 10);
    }
    assert_false(in_store(f, 7));
    assert_int_equal(keys_of(f, 7), 0);
    assert_int_equal(ttl_of(f, 7), KEEL_ELEASENOTFOUND);
    assert_true(in_store(f, 8));
    assert_int_equal(keys_of(f, 8), 1);
    assert_int_equal(f->revokes, 1);
    struct lessor_stats st;
    lessor_stats(f->lessor, &st);
    assert_int_equal(st.granted, 2);
    assert_int_equal(st.revoked, 1);
    assert_int_equal(st.expired, 1);
    assert_int_equal(st.ttl_le[0], 1); /* the 1 s lease */
}

static void test_lessor_keepalive_defers_expiry(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 5, 1), 0);
    int64_t ttl;
    for (int i = 0; i < 6; i++) {
        run_for(f, 400);
        assert_int_equal(lessor_renew(f->lessor, 5, &ttl), 0);
    }
    assert_true(in_store(f, 5));
    run_for(f, 900);
    assert_true(in_store(f, 5));
    for (int i = 0; i < 300 && in_store(f, 5); i++) {
        run_for(f, 10);
    }
    assert_false(in_store(f, 5));
    assert_int_equal(lessor_renew(f->lessor, 5, &ttl), KEEL_ELEASENOTFOUND);
}

/* revoke_rate 4: at most 2 revokes per 500 ms run. */
static void test_lessor_revokes_rate_limited(void **state)
{
    struct fx *f = *state;
    for (int64_t id = 1; id <= 6; id++) {
        assert_int_equal(grant(f, id, 1), 0);
    }
    for (int i = 0; i < 400 && f->revokes < 6; i++) {
        run_for(f, 10);
    }
    assert_int_equal(f->revokes, 6);
    /* three runs at least: 1 s between the first and the last revoke */
    assert_true(f->last_revoke_ms - f->first_revoke_ms >= 900);
}

/* Promote with at least revoke_rate leases spreads a pile-up: beyond 3/4 of
 * the rate per second, expiries move later (etcd Promote). */
static void test_lessor_promote_spreads_pile_up(void **state)
{
    struct fx *f = *state;
    for (int64_t id = 1; id <= 6; id++) {
        assert_int_equal(grant(f, id, 2), 0);
    }
    lessor_on_leader(f->lessor, false);
    lessor_on_leader(f->lessor, true);
    int later = 0;
    for (int64_t id = 1; id <= 6; id++) {
        int64_t t = ttl_of(f, id);
        assert_true(t >= 2); /* 2 s + the election timeout at least */
        later += t >= 3;
    }
    assert_int_equal(later, 3); /* target 3 per second: 3 moved */
}

static void test_lessor_demote_stops_expiry(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 4, 1), 0);
    lessor_on_leader(f->lessor, false);
    assert_false(lessor_is_primary(f->lessor));
    int64_t ttl;
    assert_int_equal(lessor_renew(f->lessor, 4, &ttl), KEEL_ENOTLEADER);
    assert_int_equal(ttl_of(f, 4), KEEL_ENOTLEADER);
    /* a grant applied on a follower does not expire either */
    assert_int_equal(grant(f, 6, 1), 0);
    run_for(f, 1600);
    assert_true(in_store(f, 4));
    assert_true(in_store(f, 6));
    struct keel_arena a;
    keel_arena_init(&a, 0);
    int64_t *ids = NULL;
    size_t n = 0;
    assert_int_equal(lessor_list(f->lessor, &a, &ids, &n), 0);
    assert_int_equal(n, 2);
    keel_arena_free(&a);
    /* promoted again: full TTL (+ election timeout) from now */
    lessor_on_leader(f->lessor, true);
    assert_int_equal(ttl_of(f, 4), 1);
    run_for(f, 700);
    assert_true(in_store(f, 4));
    for (int i = 0; i < 300 && (in_store(f, 4) || in_store(f, 6)); i++) {
        run_for(f, 10);
    }
    assert_false(in_store(f, 4));
    assert_false(in_store(f, 6));
}

/* The loop stalled longer than the election timeout: the stall is not
 * counted against the leases. */
static void test_lessor_stall_not_counted(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 3, 1), 0);
    run_for(f, 100);
    usleep(1500 * 1000); /* the loop is stuck */
    run_for(f, 300);
    assert_true(in_store(f, 3));
    for (int i = 0; i < 200 && in_store(f, 3); i++) {
        run_for(f, 10);
    }
    assert_false(in_store(f, 3));
}

/* Checkpoints (every 200 ms here) record the remaining TTL; a renewal
 * clears it; a restart continues from it. */
static void test_lessor_checkpoint_and_restart(void **state)
{
    struct fx *f = *state;
    assert_int_equal(grant(f, 9, 3), 0);
    for (int i = 0; i < 200 && f->checkpoints == 0; i++) {
        run_for(f, 10);
    }
    assert_true(f->checkpoints > 0);
    assert_int_equal(f->last_checkpoint_remaining, 2); /* ceil(2.x) */
    struct lease_store_lease l;
    assert_int_equal(lease_store_get(node_store(f->node), NULL, 9, &l), 0);
    assert_int_equal(l.remaining_ttl, 2);
    assert_int_equal(l.ttl, 3);

    int64_t ttl;
    int before = f->checkpoints;
    assert_int_equal(lessor_renew(f->lessor, 9, &ttl), 0);
    assert_int_equal(ttl, 3);
    for (int i = 0; i < 100 && f->checkpoints == before; i++) {
        run_for(f, 1);
    }
    assert_int_equal(f->last_checkpoint_remaining, 0);
    assert_int_equal(lease_store_get(node_store(f->node), NULL, 9, &l), 0);
    assert_int_equal(l.remaining_ttl, 0);

    /* let a checkpoint record about 1 s, then restart */
    for (int i = 0; i < 300 && f->last_checkpoint_remaining != 1; i++) {
        run_for(f, 10);
    }
    assert_int_equal(f->last_checkpoint_remaining, 1);
    close_all(f);
    open_all(f);
    /* 1 s + 0.1 s election timeout, not the full 3 s */
    assert_int_equal(ttl_of(f, 9), 1);
    for (int i = 0; i < 300 && in_store(f, 9); i++) {
        run_for(f, 10);
    }
    assert_false(in_store(f, 9));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lessor_min_ttl_as_etcd),
        cmocka_unit_test_setup_teardown(test_lessor_grant_renew_time_to_live,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lessor_next_id_positive_unique,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lessor_list_soonest_first, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lessor_expiry_revokes_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lessor_keepalive_defers_expiry,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_lessor_revokes_rate_limited,
                                        setup_slow_revokes, teardown),
        cmocka_unit_test_setup_teardown(test_lessor_promote_spreads_pile_up,
                                        setup_slow_revokes, teardown),
        cmocka_unit_test_setup_teardown(test_lessor_demote_stops_expiry, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lessor_stall_not_counted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lessor_checkpoint_and_restart,
                                        setup_checkpoints, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
