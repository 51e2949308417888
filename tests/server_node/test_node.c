/*
 * server/node: the write path of a single member over the real raft core,
 * WAL and MVCC store. Every write goes through raft and the WAL; the tests
 * check what a client would: revisions, responses, events, linearizable
 * read barriers, restart, and that a kill -9 at any moment loses no
 * acknowledged write.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "identity.h"
#include "keel_err.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

/* ---- fixture ------------------------------------------------------------ */

struct fx
{
    char dir[256];
    uv_loop_t loop;
    struct node *node;
    int64_t events_seen;  /* events delivered to the watch callback */
    int64_t last_event_rev;
};

static void on_events(void *arg, int64_t rev, Mvccpb__Event **ev, size_t n)
{
    struct fx *f = arg;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(ev[i]->kv);
        assert_int_equal(ev[i]->kv->mod_revision, rev);
    }
    assert_true(rev > f->last_event_rev);
    f->last_event_rev = rev;
    f->events_seen += (int64_t)n;
}

static void open_node(struct fx *f)
{
    struct node_options o = {0};
    o.data_dir = f->dir;
    o.member_id = 0x1234;
    o.cluster_id = 0x5678;
    o.heartbeat_ms = 10;
    o.election_ms = 100;
    o.wal_segment_size = 1 << 20;
    o.map_size = 256u << 20;
    o.on_events = on_events;
    o.on_events_arg = f;
    char err[512] = "";
    int rv = node_open(&f->loop, &o, &f->node, err, sizeof err);
    if (rv != 0) {
        fail_msg("node_open: %s: %s", keel_strerror(rv), err);
    }
}

static void closed(void *arg)
{
    *(int *)arg = 1;
}

static void close_node(struct fx *f)
{
    int done = 0;
    node_close(f->node, closed, &done);
    while (!done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    f->node = NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/keel-node-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    uv_loop_init(&f->loop);
    open_node(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->node != NULL) {
        close_node(f);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

struct call
{
    int done;
    int rv;
    int64_t revision;
    ProtobufCMessage *resp;
    struct keel_arena arena;
};

static void on_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct call *c = arg;
    c->done++;
    c->rv = rv;
    c->resp = resp;
    if (rv == 0) {
        assert_non_null(resp);
        if (resp->descriptor == &etcdserverpb__put_response__descriptor) {
            c->revision = ((Etcdserverpb__PutResponse *)resp)->header->revision;
        }
    }
}

static void propose_put(struct fx *f, struct call *c, const char *key,
                        const char *val, int ignore_value)
{
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)key;
    put.key.len = strlen(key);
    if (val != NULL) {
        put.value.data = (uint8_t *)val;
        put.value.len = strlen(val);
    }
    put.ignore_value = ignore_value;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_PUT;
    req.put = &put;
    memset(c, 0, sizeof *c);
    keel_arena_init(&c->arena, 0);
    int rv = node_propose(f->node, &req, &c->arena, on_done, c);
    assert_int_equal(rv, 0);
}

static void wait_call(struct fx *f, struct call *c)
{
    while (!c->done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(c->done, 1);
}

static int64_t put_sync(struct fx *f, const char *key, const char *val)
{
    struct call c;
    propose_put(f, &c, key, val, 0);
    wait_call(f, &c);
    assert_int_equal(c.rv, 0);
    int64_t rev = c.revision;
    keel_arena_free(&c.arena);
    return rev;
}

/* The value of key in the store, or NULL; arena owns it. */
static char *get(struct fx *f, const char *key, struct keel_arena *a,
                 int64_t *count)
{
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key.data = (uint8_t *)key;
    rr.key.len = strlen(key);
    Etcdserverpb__RangeResponse *resp = NULL;
    assert_int_equal(mvcc_range(node_store(f->node), &rr, a, &resp), 0);
    if (count != NULL) {
        *count = resp->count;
    }
    if (resp->n_kvs == 0) {
        return NULL;
    }
    char *v = keel_arena_alloc(a, resp->kvs[0]->value.len + 1);
    memcpy(v, resp->kvs[0]->value.data, resp->kvs[0]->value.len);
    v[resp->kvs[0]->value.len] = 0;
    return v;
}

static int64_t count_prefix(struct fx *f, const char *prefix)
{
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    size_t len = strlen(prefix);
    char end[64];
    memcpy(end, prefix, len);
    end[len - 1]++;
    rr.key.data = (uint8_t *)prefix;
    rr.key.len = len;
    rr.range_end.data = (uint8_t *)end;
    rr.range_end.len = len;
    rr.count_only = 1;
    struct keel_arena a;
    keel_arena_init(&a, 0);
    Etcdserverpb__RangeResponse *resp = NULL;
    assert_int_equal(mvcc_range(node_store(f->node), &rr, &a, &resp), 0);
    int64_t n = resp->count;
    keel_arena_free(&a);
    return n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_node_puts_get_consecutive_revisions(void **state)
{
    struct fx *f = *state;
    int64_t first = put_sync(f, "k0", "v0");
    assert_int_equal(first, 2); /* a fresh store is at revision 1 */
    for (int i = 1; i < 100; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "k%d", i);
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(put_sync(f, k, v), first + i);
    }
    struct keel_arena a;
    keel_arena_init(&a, 0);
    assert_string_equal(get(f, "k42", &a, NULL), "v42");
    keel_arena_free(&a);
    assert_int_equal(f->events_seen, 100);
    assert_int_equal(f->last_event_rev, 101);
    struct node_status st;
    node_status(f->node, &st);
    assert_true(st.is_leader);
    assert_int_equal(st.leader, 0x1234);
    assert_true(st.term >= 1);
    assert_true(st.applied_index >= 100);
    assert_int_equal(st.applied_index, st.commit_index);
}

static void test_node_restart_keeps_everything(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "r%02d", i);
        put_sync(f, k, "x");
    }
    int64_t rev = mvcc_revision(node_store(f->node));
    close_node(f);
    open_node(f);
    assert_int_equal(mvcc_revision(node_store(f->node)), rev);
    assert_int_equal(count_prefix(f, "r"), 50);
    /* replay skipped what the store had: no duplicate events or revisions */
    assert_int_equal(put_sync(f, "after", "restart"), rev + 1);
}

static void test_node_semantic_error_has_no_effect(void **state)
{
    struct fx *f = *state;
    int64_t rev = put_sync(f, "a", "1");
    struct call c;
    propose_put(f, &c, "missing", NULL, 1 /* ignore_value */);
    wait_call(f, &c);
    assert_int_equal(c.rv, KEEL_EKEYNOTFOUND);
    assert_null(c.resp);
    keel_arena_free(&c.arena);
    assert_int_equal(mvcc_revision(node_store(f->node)), rev);
    assert_int_equal(put_sync(f, "b", "2"), rev + 1);
}

static void test_node_many_in_flight_group_commit(void **state)
{
    struct fx *f = *state;
    enum { N = 500 };
    struct call *calls = calloc(N, sizeof *calls);
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "g%03d", i);
        propose_put(f, &calls[i], k, "v", 0);
    }
    for (int i = 0; i < N; i++) {
        wait_call(f, &calls[i]);
    }
    /* Every put got its own revision, in proposal order, no gaps. */
    for (int i = 0; i < N; i++) {
        assert_int_equal(calls[i].rv, 0);
        assert_int_equal(calls[i].revision, calls[0].revision + i);
        keel_arena_free(&calls[i].arena);
    }
    free(calls);
    assert_int_equal(count_prefix(f, "g"), N);
}

struct read
{
    int done;
    int rv;
    int64_t rev_at_cb;
    struct fx *f;
};

static void on_read(void *arg, int rv)
{
    struct read *r = arg;
    r->done++;
    r->rv = rv;
    r->rev_at_cb = mvcc_revision(node_store(r->f->node));
}

static void test_node_read_index_sees_acknowledged_writes(void **state)
{
    struct fx *f = *state;
    /* Writes proposed before the read must be visible when it is served. */
    struct call c;
    propose_put(f, &c, "ri", "1", 0);
    wait_call(f, &c);
    struct read r = {.f = f};
    assert_int_equal(node_read_index(f->node, on_read, &r), 0);
    struct read r2 = {.f = f};
    assert_int_equal(node_read_index(f->node, on_read, &r2), 0);
    while (!r.done || !r2.done) {
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    assert_int_equal(r.done, 1);
    assert_int_equal(r.rv, 0);
    assert_int_equal(r2.rv, 0);
    assert_true(r.rev_at_cb >= c.revision);
    keel_arena_free(&c.arena);
}

static void on_read_noval(void *arg, int rv)
{
    struct read *r = arg;
    r->done++;
    r->rv = rv;
}

static void test_node_close_answers_pending_exactly_once(void **state)
{
    struct fx *f = *state;
    enum { N = 20 };
    struct call calls[N];
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "c%d", i);
        propose_put(f, &calls[i], k, "v", 0);
    }
    struct read r = {.f = f};
    /* on_read_noval: the store may be gone when the read is answered */
    assert_int_equal(node_read_index(f->node, on_read_noval, &r), 0);
    close_node(f);
    for (int i = 0; i < N; i++) {
        assert_int_equal(calls[i].done, 1);
        assert_true(calls[i].rv == 0 || calls[i].rv == KEEL_ESTOPPED);
        keel_arena_free(&calls[i].arena);
    }
    assert_int_equal(r.done, 1);
    open_node(f);
}

static void test_node_bad_options_rejected(void **state)
{
    struct fx *f = *state;
    struct node_options o = {0};
    o.data_dir = f->dir;
    char err[256] = "";
    struct node *n = NULL;
    assert_int_equal(node_open(&f->loop, &o, &n, err, sizeof err),
                     KEEL_EINVAL);
    assert_null(n);
    assert_non_null(strstr(err, "member id"));
}

/* A child process writes and reports each acknowledged key on a pipe; the
 * parent kills it with SIGKILL at a pseudo-random moment, reopens the data
 * dir and checks that every acknowledged write is there. */
static void child_writer(const char *dir, int fd, int start)
{
    struct fx f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "%s", dir);
    uv_loop_init(&f.loop);
    open_node(&f);
    for (int i = start;; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "dur%06d", i);
        snprintf(v, sizeof v, "val%d", i);
        struct call c;
        propose_put(&f, &c, k, v, 0);
        wait_call(&f, &c);
        if (c.rv != 0) {
            _exit(3);
        }
        keel_arena_free(&c.arena);
        int32_t ack = i;
        if (write(fd, &ack, sizeof ack) != sizeof ack) {
            _exit(4);
        }
    }
}

static void test_node_kill9_loses_no_acknowledged_write(void **state)
{
    struct fx *f = *state;
    close_node(f);
    int rounds = getenv("KEEL_SANITIZED") ? 3 : 6;
    int total_acked = 0;
    srand(12345);
    for (int round = 0; round < rounds; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_writer(f->dir, p[1], round * 100000);
        }
        close(p[1]);
        int want = 20 + rand() % 200;
        int32_t ack = -1;
        int acked = 0;
        while (acked < want) {
            int32_t prev = ack;
            ssize_t r = read(p[0], &ack, sizeof ack);
            assert_int_equal(r, (ssize_t)sizeof ack);
            if (acked == 0 && ack != round * 100000) {
                fail_msg("first ack %d", ack);
            }
            if (acked > 0 && ack != prev + 1) {
                fail_msg("ack %d after %d", ack, prev);
            }
            acked++;
        }
        kill(pid, SIGKILL);
        /* acks already in the pipe are acknowledged writes too */
        for (;;) {
            int32_t prev = ack;
            ssize_t r = read(p[0], &ack, sizeof ack);
            if (r != sizeof ack) {
                if (r > 0) {
                    fail_msg("partial read %zd", r);
                }
                ack = prev;
                break;
            }
            if (ack != prev + 1) {
                fail_msg("drain: ack %d after %d", ack, prev);
            }
            acked++;
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status));
        close(p[0]);
        assert_int_equal(ack, round * 100000 + acked - 1);
        total_acked += acked;
        open_node(f);
        struct keel_arena a;
        keel_arena_init(&a, 0);
        for (int i = round * 100000; i <= ack; i++) {
            char k[32], v[32];
            snprintf(k, sizeof k, "dur%06d", i);
            snprintf(v, sizeof v, "val%d", i);
            char *got = get(f, k, &a, NULL);
            if (got == NULL || strcmp(got, v) != 0) {
                fail_msg("round %d: acknowledged key %s lost (last ack %d)",
                         round, k, ack);
            }
        }
        keel_arena_free(&a);
        /* earlier rounds' writes are all still there */
        assert_true(count_prefix(f, "dur") >= total_acked);
        /* Writes after the restart continue from the recovered revision,
         * once the replay of the log's tail (entries persisted but not yet
         * applied when the child died) is done: a read barrier waits for
         * it. */
        struct read r = {.f = f};
        assert_int_equal(node_read_index(f->node, on_read, &r), 0);
        while (!r.done) {
            uv_run(&f->loop, UV_RUN_ONCE);
        }
        assert_int_equal(r.rv, 0);
        int64_t rev = mvcc_revision(node_store(f->node));
        assert_int_equal(put_sync(f, "after-crash", "x"), rev + 1);
        close_node(f);
    }
    open_node(f);
}

/* A put and a lease grant applied in the same batch: the grant has no
 * events of its own and must not hand the put's events out again (the
 * watch hub requires strictly increasing revisions; the fixture's
 * on_events asserts it). */
static void test_node_events_once_per_write(void **state)
{
    struct fx *f = *state;
    struct call put, grant;
    propose_put(f, &put, "ev", "1", 0);
    Etcdserverpb__LeaseGrantRequest lg = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    lg.id = 77;
    lg.ttl = 60;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_LEASE_GRANT;
    req.lease_grant = &lg;
    memset(&grant, 0, sizeof grant);
    keel_arena_init(&grant.arena, 0);
    assert_int_equal(node_propose(f->node, &req, &grant.arena, on_done, &grant),
                     0);
    wait_call(f, &put);
    wait_call(f, &grant);
    assert_int_equal(put.rv, 0);
    assert_int_equal(grant.rv, 0);
    assert_int_equal(f->events_seen, 1);
    assert_int_equal(put_sync(f, "ev2", "2"), put.revision + 1);
    assert_int_equal(f->events_seen, 2);
    keel_arena_free(&put.arena);
    keel_arena_free(&grant.arena);
}

/* The ids real etcd 3.4.23 printed for `etcd --name default
 * --initial-advertise-peer-urls http://127.0.0.1:32380 --initial-cluster
 * default=http://127.0.0.1:32380` (default token "etcd-cluster"). */
static void test_server_ids_match_etcd(void **state)
{
    (void)state;
    const char *urls[] = {"http://127.0.0.1:32380"};
    uint64_t m = identity_member_id(urls, 1, "etcd-cluster");
    assert_int_equal(m, 443629905751424238ULL);
    assert_int_equal(identity_cluster_id(&m, 1), 13455796455940752355ULL);
    /* peer URLs are sorted before hashing: order does not matter */
    const char *a[] = {"http://b:2380", "http://a:2380"};
    const char *b[] = {"http://a:2380", "http://b:2380"};
    assert_int_equal(identity_member_id(a, 2, "t"), identity_member_id(b, 2, "t"));
    assert_true(identity_member_id(b, 2, "t") != identity_member_id(b, 2, "u"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_ids_match_etcd),
        cmocka_unit_test_setup_teardown(
            test_node_puts_get_consecutive_revisions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_restart_keeps_everything,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_node_semantic_error_has_no_effect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_many_in_flight_group_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_node_read_index_sees_acknowledged_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_node_close_answers_pending_exactly_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_node_bad_options_rejected, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_node_events_once_per_write, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_node_kill9_loses_no_acknowledged_write, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
