/*
 * server/node over server/peer: three real members (raft, WAL, LMDB in temp
 * dirs), each with its own peer transport on a loopback port, all on one
 * loop, wired as peer.h describes. What the node tests do with an
 * in-memory transport, done here over real sockets: a leader is elected,
 * writes replicate, a member that was stopped catches up when it comes
 * back (from the log, or from an LMDB image streamed over its peer port).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "keel_err.h"
#include "mvcc.h"
#include "node.h"
#include "peer.h"
#include "peer_test_util.h"

#define N 3
#define CLUSTER 0xc1u
#define WAIT_MS 30000

struct cluster;

struct member
{
    struct cluster *c;
    int idx;
    uint64_t id;
    char dir[300];
    char snapdir[320];
    char url[64];
    struct node *node;
    struct peer *peer;
    int snapshots_installed;
};

struct cluster
{
    uv_loop_t loop;
    char base[256];
    struct member m[N];
    uint64_t snapshot_count, catchup;
};

static uint64_t member_id(int i)
{
    return 0x8e9e05c521640000ULL + (uint64_t)(i + 1) * 0x1111;
}

/* ---- wiring (what server.c will do) ------------------------------------- */

static void on_send(void *arg,
                    uint64_t to,
                    const uint8_t *msg,
                    size_t len,
                    const char *snap)
{
    struct member *mb = arg;
    if (mb->peer != NULL) {
        peer_send(mb->peer, to, msg, len, snap);
    }
}

static void on_message(void *arg, uint64_t from, const uint8_t *msg, size_t len)
{
    struct member *mb = arg;
    (void)from;
    if (mb->node != NULL) {
        assert_int_equal(node_step(mb->node, msg, len), 0);
    }
}

static void on_peer_snapshot(void *arg,
                             uint64_t from,
                             const uint8_t *msg,
                             size_t len,
                             const char *path)
{
    struct member *mb = arg;
    (void)from;
    if (mb->node != NULL) {
        assert_int_equal(node_step_snapshot(mb->node, msg, len, path), 0);
    } else {
        unlink(path);
    }
}

static void on_snapshot_sent(void *arg, uint64_t to, bool ok)
{
    struct member *mb = arg;
    if (mb->node != NULL) {
        node_report_snapshot(mb->node, to, ok);
    }
}

static void on_unreachable(void *arg, uint64_t to)
{
    struct member *mb = arg;
    if (mb->node != NULL) {
        node_report_unreachable(mb->node, to);
    }
}

static void on_installed(void *arg, uint64_t index, int64_t rev)
{
    struct member *mb = arg;
    (void)index;
    (void)rev;
    mb->snapshots_installed++;
}

static void open_member(struct cluster *c, int i)
{
    struct member *mb = &c->m[i];
    struct node_member init[N];
    const char *urls[N];
    char err[512] = "";

    for (int k = 0; k < N; k++) {
        urls[k] = c->m[k].url;
        init[k] = (struct node_member){.id = member_id(k),
                                       .name = "m",
                                       .peer_urls = &urls[k],
                                       .n_peer_urls = 1};
    }
    struct node_options o = {0};
    o.data_dir = mb->dir;
    o.member_id = mb->id;
    o.cluster_id = CLUSTER;
    o.initial_members = init;
    o.n_initial_members = N;
    o.heartbeat_ms = 20;
    o.election_ms = 200;
    o.wal_segment_size = 64 << 10;
    o.map_size = 256u << 20;
    o.snapshot_count = c->snapshot_count;
    o.snapshot_catchup_entries = c->catchup;
    o.send = on_send;
    o.send_arg = mb;
    o.on_snapshot = on_installed;
    o.on_snapshot_arg = mb;
    int rv = node_open(&c->loop, &o, &mb->node, err, sizeof err);
    if (rv != 0) {
        fail_msg("node_open %d: %s: %s", i, keel_strerror(rv), err);
    }

    const char *listen = mb->url;
    struct peer_options po = {
        .loop = &c->loop,
        .cluster_id = CLUSTER,
        .self_id = mb->id,
        .listen_urls = &listen,
        .n_listen_urls = 1,
        .snap_dir = mb->snapdir,
        .on_message = on_message,
        .on_snapshot = on_peer_snapshot,
        .on_snapshot_sent = on_snapshot_sent,
        .on_unreachable = on_unreachable,
        .arg = mb,
        .backoff_max_ms = 200,
    };
    rv = peer_open(&po, &mb->peer, err, sizeof err);
    if (rv != 0) {
        fail_msg("peer_open %d: %s", i, err);
    }
    for (int k = 0; k < N; k++) {
        if (k != i) {
            assert_int_equal(peer_add(mb->peer, member_id(k), &urls[k], 1), 0);
        }
    }
}

static void closed(void *arg)
{
    (*(int *)arg)++;
}

/* Transport first (no callback after it), then the node. */
static void close_member(struct cluster *c, int i)
{
    int done = 0;
    struct member *mb = &c->m[i];
    peer_close(mb->peer, closed, &done);
    mb->peer = NULL;
    node_close(mb->node, closed, &done);
    mb->node = NULL;
    while (done < 2) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

static struct cluster *cluster_new(uint64_t snapshot_count, uint64_t catchup)
{
    struct cluster *c = calloc(1, sizeof *c);
    snprintf(c->base, sizeof c->base, "/tmp/keel-peer-node-XXXXXX");
    assert_non_null(mkdtemp(c->base));
    uv_loop_init(&c->loop);
    c->snapshot_count = snapshot_count;
    c->catchup = catchup;
    for (int i = 0; i < N; i++) {
        struct member *mb = &c->m[i];
        mb->c = c;
        mb->idx = i;
        mb->id = member_id(i);
        snprintf(mb->dir, sizeof mb->dir, "%s/m%d", c->base, i);
        snprintf(mb->snapdir, sizeof mb->snapdir, "%s/m%d/member/snap", c->base,
                 i);
        snprintf(mb->url, sizeof mb->url, "http://127.0.0.1:%d",
                 peer_test_free_port());
    }
    for (int i = 0; i < N; i++) {
        open_member(c, i);
    }
    return c;
}

static void cluster_free(struct cluster *c)
{
    for (int i = 0; i < N; i++) {
        if (c->m[i].node != NULL) {
            close_member(c, i);
        }
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->base);
    assert_int_equal(system(cmd), 0);
    free(c);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

#define RUN_UNTIL(c, cond)                                   \
    do {                                                     \
        uv_timer_t tick_;                                    \
        uv_timer_init(&(c)->loop, &tick_);                   \
        uv_timer_start(&tick_, on_tick, 5, 5);               \
        uint64_t start_ = uv_now(&(c)->loop);                \
        while (!(cond)) {                                    \
            uv_run(&(c)->loop, UV_RUN_ONCE);                 \
            if (uv_now(&(c)->loop) - start_ > WAIT_MS) {     \
                fail_msg("timed out waiting for %s", #cond); \
            }                                                \
        }                                                    \
        uv_close((uv_handle_t *)&tick_, NULL);               \
        uv_run(&(c)->loop, UV_RUN_NOWAIT);                   \
    } while (0)

/* The leader every running member agrees on, or -1. */
static int leader(struct cluster *c)
{
    uint64_t lead = 0;
    for (int i = 0; i < N; i++) {
        if (c->m[i].node == NULL) {
            continue;
        }
        struct node_status st;
        node_status(c->m[i].node, &st);
        if (st.leader == 0 || (lead != 0 && st.leader != lead)) {
            return -1;
        }
        lead = st.leader;
    }
    for (int i = 0; i < N; i++) {
        if (c->m[i].id == lead && c->m[i].node != NULL) {
            struct node_status st;
            node_status(c->m[i].node, &st);
            return st.is_leader ? i : -1;
        }
    }
    return -1;
}

struct call
{
    int done, rv;
    struct keel_arena arena;
};

static void on_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct call *cl = arg;
    (void)resp;
    cl->done++;
    cl->rv = rv;
}

/* n puts through member i, all in flight at once; all acknowledged. */
static void put_many(struct cluster *c, int i, const char *prefix, int n)
{
    struct call *cl = calloc((size_t)n, sizeof *cl);
    char key[64], val[64];
    for (int k = 0; k < n; k++) {
        Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
        snprintf(key, sizeof key, "%s%06d", prefix, k);
        snprintf(val, sizeof val, "value-%d", k);
        put.key.data = (uint8_t *)key;
        put.key.len = strlen(key);
        put.value.data = (uint8_t *)val;
        put.value.len = strlen(val);
        Keelpb__Request req = KEELPB__REQUEST__INIT;
        req.op_case = KEELPB__REQUEST__OP_PUT;
        req.put = &put;
        keel_arena_init(&cl[k].arena, 0);
        assert_int_equal(
            node_propose(c->m[i].node, &req, &cl[k].arena, on_done, &cl[k]), 0);
    }
    for (int k = 0; k < n; k++) {
        RUN_UNTIL(c, cl[k].done > 0);
        if (cl[k].rv != 0) {
            fail_msg("put %d via m%d: %s", k, i, keel_strerror(cl[k].rv));
        }
        keel_arena_free(&cl[k].arena);
    }
    free(cl);
}

/* Every running member applied everything and holds the same revision. */
static bool converged(struct cluster *c)
{
    int64_t rev = -1;
    for (int i = 0; i < N; i++) {
        if (c->m[i].node == NULL) {
            continue;
        }
        struct node_status st;
        node_status(c->m[i].node, &st);
        int64_t r = mvcc_revision(node_store(c->m[i].node));
        if ((rev != -1 && r != rev) || st.applied_index < st.commit_index) {
            return false;
        }
        rev = r;
    }
    return true;
}

/* Converged, with equal KV hashes; returns the revision. */
static int64_t check_same(struct cluster *c)
{
    RUN_UNTIL(c, converged(c));
    uint32_t h0 = 0;
    int64_t r0 = -1;
    for (int i = 0; i < N; i++) {
        if (c->m[i].node == NULL) {
            continue;
        }
        uint32_t h;
        int64_t crev, rev;
        assert_int_equal(
            mvcc_hash_kv(node_store(c->m[i].node), 0, &h, &crev, &rev), 0);
        if (r0 == -1) {
            h0 = h;
            r0 = rev;
        } else {
            assert_int_equal(rev, r0);
            assert_int_equal(h, h0);
        }
    }
    return r0;
}

/* ---- tests -----------------------------------------------------------------
 */

static void test_peer_node_replicates(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(0, 0);
    RUN_UNTIL(c, leader(c) >= 0);
    int l = leader(c);
    put_many(c, l, "k", 300);
    /* A follower's proposals go to the leader over its own stream. */
    put_many(c, (l + 1) % N, "f", 50);
    assert_true(check_same(c) >= 351);
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < N; k++) {
            if (k != i) {
                assert_true(peer_connected(c->m[i].peer, member_id(k)));
            }
        }
    }
    cluster_free(c);
}

/* A follower stopped during writes comes back on the same port and
 * catches up from the leader's log. */
static void test_peer_node_member_restart(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(0, 0);
    RUN_UNTIL(c, leader(c) >= 0);
    int l = leader(c);
    int f = (l + 1) % N;
    put_many(c, l, "a", 50);
    check_same(c);
    close_member(c, f);
    put_many(c, l, "b", 200); /* a majority is still up */
    open_member(c, f);
    put_many(c, l, "c", 10);
    assert_true(check_same(c) >= 261);
    cluster_free(c);
}

/* A follower that missed more than the leader keeps in its log receives
 * the LMDB image over the peer port, installs it and catches up. */
static void test_peer_node_snapshot_catchup(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(50, 10);
    RUN_UNTIL(c, leader(c) >= 0);
    int l = leader(c);
    int f = (l + 1) % N;
    put_many(c, l, "a", 20);
    check_same(c);
    close_member(c, f);
    put_many(c, l, "s", 400);
    open_member(c, f);
    RUN_UNTIL(c, c->m[f].snapshots_installed >= 1);
    put_many(c, l, "t", 5);
    assert_true(check_same(c) >= 426);
    cluster_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_node_replicates),
        cmocka_unit_test(test_peer_node_member_restart),
        cmocka_unit_test(test_peer_node_snapshot_catchup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
