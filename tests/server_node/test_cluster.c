/*
 * server/node as a cluster: 3 and 5 real nodes (real raft, WAL and LMDB in
 * temp dirs) in one process on one uv loop. The harness plays the peer
 * transport: node_send_cb messages are queued and delivered to the other
 * nodes' node_step on a later loop turn (links can be cut to partition),
 * snapshot images are copied into the receiver's member/snap/ and handed to
 * node_step_snapshot, then reported back to the sender.
 *
 * The checks are what a user of a cluster sees: every member ends with the
 * same revision and KV hash, acknowledged writes survive a leader's loss,
 * a minority cannot commit, the log is compacted and a restart from the
 * compacted log is the same store, a member far behind (or new, joining
 * with an empty data dir) catches up by snapshot, and membership changes
 * (add learner, promote, remove) land in every member's members table.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "keel_err.h"
#include "mvcc.h"
#include "node.h"
#include "raftpb/raft.pb-c.h"

#define MAXN 6
#define WAIT_MS 20000 /* generous: CI machines are slow and shared */

struct cluster;

struct member
{
    struct cluster *c;
    int idx;
    uint64_t id;
    char dir[300];
    struct node *node;
    int64_t last_event_rev;
    int snapshots_installed;
    int conf_changes;     /* on_conf_change calls */
    size_t last_voters;   /* from the last on_conf_change */
    size_t last_learners;
};

struct msg
{
    int from, to;
    uint8_t *data;
    size_t len;
    char *snap; /* image path at the sender, or NULL */
    struct msg *next;
};

struct cluster
{
    uv_loop_t loop;
    uv_idle_t deliver;
    bool deliver_active;
    char base[256];
    int n; /* members in use (slots 0..n-1) */
    struct member m[MAXN];
    bool cut[MAXN][MAXN]; /* drop messages from i to j */
    struct msg *head, **tail;
    uint64_t snapshot_count, catchup;
    size_t wal_segment_size;
    int snaps_sent; /* images delivered */
};

static const char *const urls[MAXN][1] = {
    {"http://127.0.0.1:12380"}, {"http://127.0.0.1:22380"},
    {"http://127.0.0.1:32380"}, {"http://127.0.0.1:42380"},
    {"http://127.0.0.1:52380"}, {"http://127.0.0.1:62380"}};
static const char *const names[MAXN] = {"m0", "m1", "m2", "m3", "m4", "m5"};

static uint64_t member_id(int i)
{
    return 0x8e9e05c521640000ULL + (uint64_t)(i + 1) * 0x1111;
}

/* ---- the transport ------------------------------------------------------ */

static int index_of(struct cluster *c, uint64_t id)
{
    for (int i = 0; i < MAXN; i++) {
        if (c->m[i].id == id) {
            return i;
        }
    }
    return -1;
}

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    assert_true(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(out >= 0);
    char buf[65536];
    ssize_t r;
    while ((r = read(in, buf, sizeof buf)) > 0) {
        assert_int_equal(write(out, buf, (size_t)r), r);
    }
    assert_int_equal(r, 0);
    close(in);
    close(out);
}

static void deliver(uv_idle_t *h)
{
    struct cluster *c = h->data;
    struct msg *list = c->head;
    c->head = NULL;
    c->tail = &c->head;
    uv_idle_stop(h);
    c->deliver_active = false;
    while (list != NULL) {
        struct msg *m = list;
        list = m->next;
        struct member *src = &c->m[m->from];
        struct member *dst = m->to >= 0 ? &c->m[m->to] : NULL;
        bool ok = dst != NULL && dst->node != NULL && !c->cut[m->from][m->to];
        if (m->snap != NULL && src->node == NULL) {
            ok = false; /* the sender closed: its image is gone */
        }
        if (m->snap != NULL) {
            if (ok) {
                char path[400];
                static int seq;
                snprintf(path, sizeof path, "%s/member/snap/recv-%d.snap",
                         dst->dir, ++seq);
                copy_file(m->snap, path);
                int rv = node_step_snapshot(dst->node, m->data, m->len, path);
                assert_int_equal(rv, 0);
                c->snaps_sent++;
            }
            if (src->node != NULL) {
                node_report_snapshot(src->node, dst != NULL ? dst->id : 0,
                                     ok);
            }
        } else if (ok) {
            int rv = node_step(dst->node, m->data, m->len);
            assert_int_equal(rv, 0);
        } else if (src->node != NULL && dst != NULL) {
            node_report_unreachable(src->node, dst->id);
        }
        free(m->data);
        free(m->snap);
        free(m);
    }
}

static void on_send(void *arg, uint64_t to, const uint8_t *data, size_t len,
                    const char *snap)
{
    struct member *mb = arg;
    struct cluster *c = mb->c;
    /* Every message is a valid raftpb.Message of our cluster. */
    Raftpb__Message *pm = raftpb__message__unpack(NULL, len, data);
    assert_non_null(pm);
    assert_int_equal(pm->cluster_id, 0xc1u);
    assert_int_equal(pm->to, to);
    assert_int_equal(pm->from, mb->id);
    assert_true((snap != NULL) == (pm->type == RAFTPB__MESSAGE_TYPE__MSG_SNAP));
    raftpb__message__free_unpacked(pm, NULL);
    struct msg *m = calloc(1, sizeof *m);
    m->from = mb->idx;
    m->to = index_of(c, to);
    m->data = malloc(len);
    memcpy(m->data, data, len);
    m->len = len;
    m->snap = snap != NULL ? strdup(snap) : NULL;
    *c->tail = m;
    c->tail = &m->next;
    if (!c->deliver_active) {
        c->deliver_active = true;
        uv_idle_start(&c->deliver, deliver);
    }
}

/* ---- members ------------------------------------------------------------ */

static void on_events(void *arg, int64_t rev, Mvccpb__Event **ev, size_t n)
{
    struct member *mb = arg;
    (void)ev;
    (void)n;
    assert_true(rev > mb->last_event_rev);
    mb->last_event_rev = rev;
}

static void on_conf(void *arg, const struct node_conf_change *cc)
{
    struct member *mb = arg;
    mb->conf_changes++;
    mb->last_voters = cc->n_voters;
    mb->last_learners = cc->n_learners;
}

static void on_snapshot(void *arg, uint64_t index, int64_t rev)
{
    struct member *mb = arg;
    assert_true(index > 0);
    mb->snapshots_installed++;
    mb->last_event_rev = rev;
}

/* Open member i; n_init initial members (0: join an existing cluster). */
static void open_member(struct cluster *c, int i, int n_init)
{
    struct member *mb = &c->m[i];
    struct node_member init[MAXN];
    for (int k = 0; k < n_init; k++) {
        init[k] = (struct node_member){.id = member_id(k),
                                       .name = names[k],
                                       .peer_urls = urls[k],
                                       .n_peer_urls = 1};
    }
    struct node_options o = {0};
    o.data_dir = mb->dir;
    o.member_id = mb->id;
    o.cluster_id = 0xc1;
    o.initial_members = n_init > 0 ? init : NULL;
    o.n_initial_members = (size_t)n_init;
    o.join_existing = n_init == 0;
    /* Not etcd's 100/1000 ms (the tests would crawl), but slow enough
     * that a loaded machine does not start elections by itself. */
    o.heartbeat_ms = 20;
    o.election_ms = 300;
    o.wal_segment_size = c->wal_segment_size;
    o.map_size = 256u << 20;
    o.snapshot_count = c->snapshot_count;
    o.snapshot_catchup_entries = c->catchup;
    o.on_events = on_events;
    o.on_events_arg = mb;
    o.send = on_send;
    o.send_arg = mb;
    o.on_conf_change = on_conf;
    o.on_conf_change_arg = mb;
    o.on_snapshot = on_snapshot;
    o.on_snapshot_arg = mb;
    char err[512] = "";
    int rv = node_open(&c->loop, &o, &mb->node, err, sizeof err);
    if (rv != 0) {
        fail_msg("node_open %d: %s: %s", i, keel_strerror(rv), err);
    }
}

static void closed(void *arg)
{
    *(int *)arg = 1;
}

static void close_member(struct cluster *c, int i)
{
    int done = 0;
    node_close(c->m[i].node, closed, &done);
    c->m[i].node = NULL;
    while (!done) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

static struct cluster *cluster_new(int n, uint64_t snapshot_count,
                                   uint64_t catchup)
{
    struct cluster *c = calloc(1, sizeof *c);
    snprintf(c->base, sizeof c->base, "/tmp/keel-cluster-XXXXXX");
    assert_non_null(mkdtemp(c->base));
    uv_loop_init(&c->loop);
    uv_idle_init(&c->loop, &c->deliver);
    c->deliver.data = c;
    c->tail = &c->head;
    c->n = n;
    c->snapshot_count = snapshot_count;
    c->catchup = catchup;
    c->wal_segment_size = 64 << 10;
    for (int i = 0; i < MAXN; i++) {
        c->m[i].c = c;
        c->m[i].idx = i;
        c->m[i].id = member_id(i);
        snprintf(c->m[i].dir, sizeof c->m[i].dir, "%s/m%d", c->base, i);
    }
    for (int i = 0; i < n; i++) {
        open_member(c, i, n);
    }
    return c;
}

static void cluster_free(struct cluster *c)
{
    for (int i = 0; i < MAXN; i++) {
        if (c->m[i].node != NULL) {
            close_member(c, i);
        }
    }
    deliver(&c->deliver); /* drop what is queued */
    uv_close((uv_handle_t *)&c->deliver, NULL);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->base);
    assert_int_equal(system(cmd), 0);
    free(c);
}

/* Run the loop until pred(c, arg) holds; fails after WAIT_MS. */
static void run_until(struct cluster *c, bool (*pred)(struct cluster *, void *),
                      void *arg, const char *what)
{
    uint64_t start = uv_now(&c->loop);
    while (!pred(c, arg)) {
        uv_run(&c->loop, UV_RUN_ONCE);
        if (uv_now(&c->loop) - start > WAIT_MS) {
            fail_msg("timed out waiting for %s", what);
        }
    }
}

static void run_for(struct cluster *c, uint64_t ms)
{
    uint64_t start = uv_now(&c->loop);
    while (uv_now(&c->loop) - start < ms) {
        uv_run(&c->loop, UV_RUN_ONCE);
    }
}

/* The leader seen by every running member in `set` (bitmask; 0: all), or
 * -1 when they do not agree on one that is running. */
static int agreed_leader(struct cluster *c, unsigned set)
{
    uint64_t lead = 0;
    for (int i = 0; i < MAXN; i++) {
        if (c->m[i].node == NULL || (set != 0 && !(set & (1u << i)))) {
            continue;
        }
        struct node_status st;
        node_status(c->m[i].node, &st);
        if (st.leader == 0 || (lead != 0 && st.leader != lead)) {
            return -1;
        }
        lead = st.leader;
    }
    int li = index_of(c, lead);
    if (li < 0 || c->m[li].node == NULL) {
        return -1;
    }
    struct node_status st;
    node_status(c->m[li].node, &st);
    return st.is_leader ? li : -1;
}

/* A leader among set, agreed on by the members of set. */
static bool have_leader(struct cluster *c, void *arg)
{
    unsigned set = *(unsigned *)arg;
    int l = agreed_leader(c, set);
    return l >= 0 && (set == 0 || (set & (1u << l)));
}

static int wait_leader(struct cluster *c, unsigned set)
{
    run_until(c, have_leader, &set, "a leader");
    return agreed_leader(c, set);
}

struct call
{
    int done;
    int rv;
    int64_t revision;
    struct keel_arena arena;
};

static void on_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct call *cl = arg;
    cl->done++;
    cl->rv = rv;
    if (rv == 0 && resp != NULL &&
        resp->descriptor == &etcdserverpb__put_response__descriptor) {
        cl->revision = ((Etcdserverpb__PutResponse *)resp)->header->revision;
    }
}

static void propose_put(struct cluster *c, int i, struct call *cl,
                        const char *key, const char *val)
{
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)key;
    put.key.len = strlen(key);
    put.value.data = (uint8_t *)val;
    put.value.len = strlen(val);
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_PUT;
    req.put = &put;
    memset(cl, 0, sizeof *cl);
    keel_arena_init(&cl->arena, 0);
    assert_int_equal(node_propose(c->m[i].node, &req, &cl->arena, on_done, cl),
                     0);
}

static bool call_done(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct call *)arg)->done > 0;
}

/* A put through member i, acknowledged. */
static int64_t put_via(struct cluster *c, int i, const char *key,
                       const char *val)
{
    struct call cl;
    propose_put(c, i, &cl, key, val);
    run_until(c, call_done, &cl, "a put");
    assert_int_equal(cl.done, 1);
    if (cl.rv != 0) {
        fail_msg("put %s via m%d: %s", key, i, keel_strerror(cl.rv));
    }
    keel_arena_free(&cl.arena);
    return cl.revision;
}

/* n puts through member i, many in flight at once. */
static void put_many(struct cluster *c, int i, const char *prefix, int n)
{
    struct call *cl = calloc((size_t)n, sizeof *cl);
    char key[64], val[64];
    for (int k = 0; k < n; k++) {
        snprintf(key, sizeof key, "%s%06d", prefix, k);
        snprintf(val, sizeof val, "value-%d", k);
        propose_put(c, i, &cl[k], key, val);
    }
    for (int k = 0; k < n; k++) {
        run_until(c, call_done, &cl[k], "a batch of puts");
        if (cl[k].rv != 0) {
            fail_msg("put %d via m%d: %s", k, i, keel_strerror(cl[k].rv));
        }
        keel_arena_free(&cl[k].arena);
    }
    free(cl);
}

static char *get(struct cluster *c, int i, const char *key,
                 struct keel_arena *a)
{
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key.data = (uint8_t *)key;
    rr.key.len = strlen(key);
    Etcdserverpb__RangeResponse *resp = NULL;
    assert_int_equal(mvcc_range(node_store(c->m[i].node), &rr, a, &resp), 0);
    if (resp->n_kvs == 0) {
        return NULL;
    }
    char *v = keel_arena_alloc(a, resp->kvs[0]->value.len + 1);
    memcpy(v, resp->kvs[0]->value.data, resp->kvs[0]->value.len);
    v[resp->kvs[0]->value.len] = 0;
    return v;
}

/* Whether every running member in set has applied what the first one
 * committed and they hold the same revision. */
static bool converged(struct cluster *c, void *arg)
{
    unsigned set = *(unsigned *)arg;
    int64_t rev = -1;
    uint64_t applied = 0;
    for (int i = 0; i < MAXN; i++) {
        if (c->m[i].node == NULL || (set != 0 && !(set & (1u << i)))) {
            continue;
        }
        struct node_status st;
        node_status(c->m[i].node, &st);
        int64_t r = mvcc_revision(node_store(c->m[i].node));
        if (rev == -1) {
            rev = r;
            applied = st.applied_index;
        } else if (r != rev || st.applied_index != applied) {
            return false;
        }
        if (st.applied_index < st.commit_index) {
            return false;
        }
    }
    return true;
}

/* Wait for convergence, then check the KV hashes agree. */
static void check_same(struct cluster *c, unsigned set)
{
    run_until(c, converged, &set, "members to converge");
    uint32_t h0 = 0;
    int64_t r0 = 0;
    bool first = true;
    for (int i = 0; i < MAXN; i++) {
        if (c->m[i].node == NULL || (set != 0 && !(set & (1u << i)))) {
            continue;
        }
        uint32_t h;
        int64_t crev, rev;
        assert_int_equal(
            mvcc_hash_kv(node_store(c->m[i].node), 0, &h, &crev, &rev), 0);
        if (first) {
            h0 = h;
            r0 = rev;
            first = false;
        } else {
            assert_int_equal(rev, r0);
            assert_int_equal(h, h0);
        }
    }
}

/* Files in <dir>/member/<sub> whose name contains `part`. */
static size_t count_files(const char *dir, const char *sub, const char *part)
{
    char p[400];
    snprintf(p, sizeof p, "%s/member/%s", dir, sub);
    DIR *d = opendir(p);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        n += strstr(e->d_name, part) != NULL;
    }
    closedir(d);
    return n;
}

static size_t wal_files(const char *dir)
{
    return count_files(dir, "wal", ".wal");
}

static size_t snap_files(const char *dir)
{
    return count_files(dir, "snap", ".snap");
}

/* The members table entry "<id>/raftAttributes" of member i's store:
 * found, and its isLearner. */
static bool member_row(struct cluster *c, int i, uint64_t id, bool *learner)
{
    char key[64];
    int kl = snprintf(key, sizeof key, "%016" PRIx64 "/raftAttributes", id);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    void *val = NULL;
    size_t vlen = 0;
    int rv = mvcc_table_get(node_store(c->m[i].node), NULL, MVCC_TABLE_MEMBERS,
                            key, (size_t)kl, &a, &val, &vlen);
    bool found = rv == 0;
    if (found) {
        Etcdserverpb__Member *m =
            etcdserverpb__member__unpack(NULL, vlen, val);
        assert_non_null(m);
        assert_int_equal(m->id, id);
        if (learner != NULL) {
            *learner = m->islearner;
        }
        etcdserverpb__member__free_unpacked(m, NULL);
    } else {
        assert_int_equal(rv, KEEL_ENOTFOUND);
    }
    keel_arena_free(&a);
    return found;
}

/* ---- tests -------------------------------------------------------------- */

static void replicate(int n)
{
    struct cluster *c = cluster_new(n, 0, 0);
    int l = wait_leader(c, 0);
    /* Writes through the leader and through a follower (forwarded). */
    int f = (l + 1) % n;
    int64_t r1 = put_via(c, l, "a", "1");
    int64_t r2 = put_via(c, f, "b", "2");
    assert_true(r2 == r1 + 1);
    put_many(c, l, "k", 200);
    put_many(c, f, "j", 50);
    check_same(c, 0);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    for (int i = 0; i < n; i++) {
        assert_string_equal(get(c, i, "b", &a), "2");
        assert_string_equal(get(c, i, "k000199", &a), "value-199");
        /* Every member's table lists every member (bootstrap entries). */
        for (int k = 0; k < n; k++) {
            bool learner = true;
            assert_true(member_row(c, i, member_id(k), &learner));
            assert_false(learner);
        }
        struct node_status st;
        node_status(c->m[i].node, &st);
        assert_int_equal(st.n_voters, (size_t)n);
        assert_int_equal(st.n_learners, 0);
        assert_true(st.raft_index >= st.applied_index);
        assert_int_equal(c->m[i].conf_changes, n); /* one per bootstrap entry */
    }
    keel_arena_free(&a);
    cluster_free(c);
}

static void test_cluster_replicates_to_three(void **state)
{
    (void)state;
    replicate(3);
}

static void test_cluster_replicates_to_five(void **state)
{
    (void)state;
    replicate(5);
}

struct read_call
{
    int done, rv;
};

static void on_read(void *arg, int rv)
{
    struct read_call *r = arg;
    r->done++;
    r->rv = rv;
}

static bool read_done(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct read_call *)arg)->done > 0;
}

/* ReadIndex from a follower goes through the leader; the barrier holds
 * once the follower applied the leader's commit at the time. */
static void test_cluster_follower_read_index(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(3, 0, 0);
    int l = wait_leader(c, 0);
    int f = (l + 2) % 3;
    put_via(c, l, "x", "before");
    struct read_call r = {0};
    assert_int_equal(node_read_index(c->m[f].node, on_read, &r), 0);
    run_until(c, read_done, &r, "a read index");
    assert_int_equal(r.rv, 0);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    assert_string_equal(get(c, f, "x", &a), "before");
    keel_arena_free(&a);
    cluster_free(c);
}

/* The leader goes away during a stream of writes: a new one is elected,
 * no acknowledged write is lost, and the old leader, reopened from its
 * data dir, catches up. */
static void test_cluster_leader_loss(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(3, 0, 0);
    int l = wait_leader(c, 0);
    put_many(c, l, "pre", 100);
    /* Some writes in flight when the leader stops: they fail or land. */
    struct call inflight[10];
    char key[32];
    for (int k = 0; k < 10; k++) {
        snprintf(key, sizeof key, "fly%d", k);
        propose_put(c, l, &inflight[k], key, "v");
    }
    close_member(c, l);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(inflight[k].done, 1);
        keel_arena_free(&inflight[k].arena);
    }
    unsigned rest = 7u & ~(1u << l);
    int l2 = wait_leader(c, rest);
    assert_true(l2 != l);
    put_many(c, l2, "post", 50);
    check_same(c, rest);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    for (int i = 0; i < 3; i++) {
        if (i == l) {
            continue;
        }
        assert_string_equal(get(c, i, "pre000099", &a), "value-99");
        assert_string_equal(get(c, i, "post000049", &a), "value-49");
    }
    open_member(c, l, 3);
    check_same(c, 0);
    assert_string_equal(get(c, l, "post000049", &a), "value-49");
    keel_arena_free(&a);
    cluster_free(c);
}

/* A leader cut off from both followers cannot commit; the majority elects
 * a leader and commits; after healing everyone converges on the
 * majority's history and the minority's write fails. */
static void test_cluster_partitioned_minority_cannot_commit(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(3, 0, 0);
    int l = wait_leader(c, 0);
    put_via(c, l, "k", "0");
    for (int i = 0; i < 3; i++) {
        if (i != l) {
            c->cut[l][i] = c->cut[i][l] = true;
        }
    }
    struct call cl;
    propose_put(c, l, &cl, "k", "minority");
    unsigned maj = 7u & ~(1u << l);
    int l2 = wait_leader(c, maj);
    assert_true(l2 != l);
    int64_t rev = put_via(c, l2, "k", "majority");
    run_for(c, 300);
    assert_int_equal(cl.done, 0); /* not committed, not answered */
    struct keel_arena a;
    keel_arena_init(&a, 0);
    assert_string_equal(get(c, l, "k", &a), "0");
    memset(c->cut, 0, sizeof c->cut);
    check_same(c, 0);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(get(c, i, "k", &a), "majority");
        assert_int_equal(mvcc_revision(node_store(c->m[i].node)), rev);
    }
    /* The minority's proposal was never committed: its waiter times out. */
    run_until(c, call_done, &cl, "the minority put to fail");
    assert_int_equal(cl.rv, KEEL_ETIMEOUT);
    keel_arena_free(&cl.arena);
    keel_arena_free(&a);
    cluster_free(c);
}

static bool log_compacted(struct cluster *c, void *arg)
{
    (void)arg;
    for (int i = 0; i < c->n; i++) {
        struct node_status st;
        node_status(c->m[i].node, &st);
        if (st.snapshot_index == 0) {
            return false;
        }
    }
    return true;
}

/* --snapshot-count: the in-memory log is compacted, WAL segments are
 * released, and a restart from the compacted log gives the same store. */
static void test_cluster_log_compaction_and_restart(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(3, 50, 10);
    c->wal_segment_size = 8 << 10;
    for (int i = 0; i < 3; i++) { /* reopen with small WAL segments */
        close_member(c, i);
        open_member(c, i, 3);
    }
    int l = wait_leader(c, 0);
    put_many(c, l, "c", 600);
    check_same(c, 0);
    run_until(c, log_compacted, NULL, "log compaction");
    for (int i = 0; i < 3; i++) {
        uint64_t first, count;
        node_log_bounds(c->m[i].node, &first, &count);
        /* snapshot_count + catchup + what arrived since the last snapshot */
        assert_true(count <= 50 + 10 + 60);
        assert_true(first > 400);
    }
    /* Segments were released: the 600 entries took many 8 KiB segments. */
    run_for(c, 200);
    size_t after = wal_files(c->m[l].dir);
    assert_true(after < 20);
    int64_t rev = mvcc_revision(node_store(c->m[l].node));
    uint32_t h;
    int64_t crev, r;
    assert_int_equal(mvcc_hash_kv(node_store(c->m[l].node), 0, &h, &crev, &r),
                     0);
    for (int i = 0; i < 3; i++) {
        close_member(c, i);
    }
    for (int i = 0; i < 3; i++) {
        open_member(c, i, 3);
    }
    l = wait_leader(c, 0);
    check_same(c, 0);
    uint32_t h2;
    assert_int_equal(
        mvcc_hash_kv(node_store(c->m[l].node), 0, &h2, &crev, &r), 0);
    assert_int_equal(r, rev);
    assert_int_equal(h2, h);
    put_via(c, l, "after-restart", "ok");
    check_same(c, 0);
    cluster_free(c);
}

/* A follower cut off while the log is compacted past it catches up by a
 * snapshot of the leader's store. */
static void test_cluster_lagging_follower_gets_snapshot(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(3, 50, 10);
    int l = wait_leader(c, 0);
    int f = (l + 1) % 3;
    put_via(c, l, "first", "1");
    check_same(c, 0);
    for (int i = 0; i < 3; i++) {
        c->cut[f][i] = c->cut[i][f] = true;
    }
    put_many(c, l, "s", 300);
    /* Let what the leader queued for f meanwhile be dropped: a MsgApp
     * still queued when the link heals would catch f up without a
     * snapshot (a late message, legal in raft). */
    run_for(c, 100);
    assert_int_equal(c->m[f].snapshots_installed, 0);
    /* A reader holds the follower's store (a Snapshot RPC, say): the
     * image arrives, but is installed only once the reader is gone. */
    node_hold(c->m[f].node);
    memset(c->cut, 0, sizeof c->cut);
    uint64_t start = uv_now(&c->loop);
    while (c->snaps_sent == 0) {
        uv_run(&c->loop, UV_RUN_ONCE);
        assert_true(uv_now(&c->loop) - start < WAIT_MS);
    }
    run_for(c, 200);
    assert_int_equal(c->m[f].snapshots_installed, 0);
    node_release(c->m[f].node);
    check_same(c, 0);
    assert_true(c->m[f].snapshots_installed >= 1);
    assert_true(c->snaps_sent >= 1);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    assert_string_equal(get(c, f, "s000299", &a), "value-299");
    keel_arena_free(&a);
    /* The sender deleted its image after the report. */
    run_for(c, 100);
    assert_int_equal(snap_files(c->m[l].dir), 0);
    /* The follower restarts from the snapshot it installed. Images a
     * crash would have left behind are deleted at open. */
    close_member(c, f);
    static const char *const stale[] = {
        "0000000000000100-0000000000000002-1.snap.out", "snap-from-1-2-3.db"};
    char path[400];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/member/snap/%s", c->m[f].dir,
                 stale[k]);
        FILE *fp = fopen(path, "w");
        assert_non_null(fp);
        fclose(fp);
    }
    assert_int_equal(count_files(c->m[f].dir, "snap", ".snap.out"), 1);
    assert_int_equal(count_files(c->m[f].dir, "snap", "snap-from-"), 1);
    open_member(c, f, 3);
    assert_int_equal(snap_files(c->m[f].dir), 0);
    assert_int_equal(count_files(c->m[f].dir, "snap", "snap-from-"), 0);
    put_via(c, l, "after", "x");
    check_same(c, 0);
    cluster_free(c);
}

struct conf_call
{
    int done, rv;
};

static void on_conf_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct conf_call *cc = arg;
    assert_null(resp);
    cc->done++;
    cc->rv = rv;
}

static bool conf_done(struct cluster *c, void *arg)
{
    (void)c;
    return ((struct conf_call *)arg)->done > 0;
}

static void conf_change(struct cluster *c, int via, int type, int who,
                        bool learner)
{
    uint8_t ctx[256];
    size_t len = 0;
    if (type != RAFTPB__CONF_CHANGE_TYPE__CONF_REMOVE_NODE) {
        Etcdserverpb__Member m = ETCDSERVERPB__MEMBER__INIT;
        m.id = member_id(who);
        m.peerurls = (char **)urls[who];
        m.n_peerurls = 1;
        m.islearner = learner;
        len = etcdserverpb__member__pack(&m, ctx);
    }
    struct conf_call cc = {0};
    /* A client retries a change that timed out (a leader change lost the
     * forwarded proposal); applying one twice changes nothing. */
    for (int attempt = 0; attempt < 3; attempt++) {
        memset(&cc, 0, sizeof cc);
        assert_int_equal(node_propose_conf_change(c->m[via].node, type,
                                                  member_id(who), ctx, len,
                                                  on_conf_done, &cc),
                         0);
        /* One conf change in flight per node. */
        assert_int_equal(node_propose_conf_change(c->m[via].node, type,
                                                  member_id(who), ctx, len,
                                                  on_conf_done, NULL),
                         KEEL_EBUSY);
        run_until(c, conf_done, &cc, "a conf change");
        if (cc.rv != KEEL_ETIMEOUT) {
            break;
        }
    }
    assert_int_equal(cc.rv, 0);
}

struct sync_arg
{
    int leader, who;
};

static bool learner_in_sync(struct cluster *c, void *arg)
{
    struct sync_arg *s = arg;
    uint64_t match = 0;
    struct node_status st;
    node_status(c->m[s->leader].node, &st);
    return node_progress(c->m[s->leader].node, member_id(s->who), &match) ==
               0 &&
           match >= st.commit_index;
}

/* Membership: a new member with an empty data dir joins as a learner
 * (it learns everything from the leader: the log was compacted, so by
 * snapshot), catches up, is promoted, and another member is removed.
 * Every member's table follows. */
static void membership(bool compacted)
{
    struct cluster *c = cluster_new(3, compacted ? 50 : 0, 10);
    int l = wait_leader(c, 0);
    put_many(c, l, "m", compacted ? 200 : 20);
    /* Errors first: bad arguments, and node_progress off the leader. */
    uint64_t match;
    assert_int_equal(node_progress(c->m[(l + 1) % 3].node, member_id(l),
                                   &match),
                     KEEL_ENOTLEADER);
    assert_int_equal(node_progress(c->m[l].node, member_id(5), &match),
                     KEEL_EINVAL);
    assert_int_equal(node_propose_conf_change(c->m[l].node, 9, member_id(3),
                                              NULL, 0, on_conf_done, NULL),
                     KEEL_EINVAL);
    assert_int_equal(node_propose_conf_change(
                         c->m[l].node, RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_NODE,
                         0, NULL, 0, on_conf_done, NULL),
                     KEEL_EINVAL);

    /* Add member 3 as a learner (through a follower: forwarded). */
    c->n = 4;
    conf_change(c, (l + 1) % 3, RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_LEARNER_NODE,
                3, true);
    open_member(c, 3, 0); /* --initial-cluster-state existing, empty dir */
    struct sync_arg sa = {l, 3};
    run_until(c, learner_in_sync, &sa, "the learner to catch up");
    check_same(c, 0);
    if (compacted) {
        assert_true(c->m[3].snapshots_installed >= 1);
    }
    struct node_status st;
    node_status(c->m[3].node, &st);
    assert_true(st.is_learner);
    assert_int_equal(st.n_voters, 3);
    assert_int_equal(st.n_learners, 1);
    bool learner = false;
    for (int i = 0; i < 4; i++) {
        assert_true(member_row(c, i, member_id(3), &learner));
        assert_true(learner);
        assert_true(member_row(c, i, member_id(0), &learner));
    }
    /* A learner does not vote: a transfer to it is refused. */
    assert_int_equal(node_transfer_leader(c->m[l].node, member_id(3)),
                     KEEL_EBADLEADERTRANSFEREE);

    /* Promote it. */
    conf_change(c, l, RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_NODE, 3, false);
    check_same(c, 0);
    for (int i = 0; i < 4; i++) {
        assert_true(member_row(c, i, member_id(3), &learner));
        assert_false(learner);
        node_status(c->m[i].node, &st);
        assert_int_equal(st.n_voters, 4);
        assert_int_equal(st.n_learners, 0);
    }
    assert_int_equal(c->m[l].last_voters, 4);

    /* Remove a follower that is not the new member. */
    int gone = (l + 1) % 3;
    conf_change(c, l, RAFTPB__CONF_CHANGE_TYPE__CONF_REMOVE_NODE, gone, false);
    close_member(c, gone);
    unsigned rest = 0xfu & ~(1u << gone);
    put_via(c, l, "after-remove", "y");
    check_same(c, rest);
    for (int i = 0; i < 4; i++) {
        if (i == gone) {
            continue;
        }
        assert_false(member_row(c, i, member_id(gone), NULL));
        char key[32];
        int kl = snprintf(key, sizeof key, "%016" PRIx64, member_id(gone));
        struct keel_arena a;
        keel_arena_init(&a, 0);
        void *val;
        size_t vlen;
        assert_int_equal(mvcc_table_get(node_store(c->m[i].node), NULL,
                                        MVCC_TABLE_MEMBERS_REMOVED, key,
                                        (size_t)kl, &a, &val, &vlen),
                         0);
        keel_arena_free(&a);
        node_status(c->m[i].node, &st);
        assert_int_equal(st.n_voters, 3);
    }
    /* Leadership moves to the new member on request. */
    assert_int_equal(node_transfer_leader(c->m[l].node, member_id(3)), 0);
    uint64_t start = uv_now(&c->loop);
    for (;;) {
        node_status(c->m[3].node, &st);
        if (st.is_leader) {
            break;
        }
        uv_run(&c->loop, UV_RUN_ONCE);
        if (uv_now(&c->loop) - start > WAIT_MS) {
            fail_msg("leadership transfer to the new member");
        }
    }
    assert_int_equal(node_transfer_leader(c->m[l].node, member_id(3)),
                     KEEL_ENOTLEADER);
    put_via(c, 3, "new-leader", "z");
    check_same(c, rest);
    cluster_free(c);
}

static void test_cluster_membership_changes(void **state)
{
    (void)state;
    membership(false);
}

static void test_cluster_new_member_joins_by_snapshot(void **state)
{
    (void)state;
    membership(true);
}

/* Bad input on the peer path: garbage, another cluster's message, a
 * MsgSnap without an image; the node keeps working. */
static void test_cluster_step_rejects_bad_messages(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(3, 0, 0);
    int l = wait_leader(c, 0);
    struct node *n = c->m[l].node;
    static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0x01, 0x02};
    assert_int_equal(node_step(n, garbage, sizeof garbage), KEEL_EINVAL);
    Raftpb__Message m = RAFTPB__MESSAGE__INIT;
    m.type = RAFTPB__MESSAGE_TYPE__MSG_HEARTBEAT;
    m.from = member_id((l + 1) % 3);
    m.to = member_id(l);
    m.term = 1000;
    m.cluster_id = 0xbad;
    uint8_t buf[128];
    size_t len = raftpb__message__pack(&m, buf);
    assert_int_equal(node_step(n, buf, len), KEEL_EINVAL);
    m.cluster_id = 0xc1;
    m.type = RAFTPB__MESSAGE_TYPE__MSG_SNAP;
    len = raftpb__message__pack(&m, buf);
    assert_int_equal(node_step(n, buf, len), KEEL_EINVAL);
    /* A snapshot message for an image path: refused without a snapshot,
     * and the file is deleted either way. */
    char path[400];
    snprintf(path, sizeof path, "%s/member/snap/bogus.snap", c->m[l].dir);
    FILE *fp = fopen(path, "w");
    fputs("not lmdb", fp);
    fclose(fp);
    assert_int_equal(node_step_snapshot(n, buf, len, path), KEEL_EINVAL);
    assert_int_equal(access(path, F_OK), -1);
    m.type = 99;
    len = raftpb__message__pack(&m, buf);
    assert_int_equal(node_step(n, buf, len), KEEL_EINVAL);
    /* Still the leader of a working cluster (the bad term was refused). */
    struct node_status st;
    node_status(n, &st);
    assert_true(st.is_leader);
    put_via(c, l, "still", "ok");
    check_same(c, 0);
    cluster_free(c);
}

/* A single member keeps its in-memory log bounded under a long write
 * stream. */
static void test_single_member_log_stays_bounded(void **state)
{
    (void)state;
    struct cluster *c = cluster_new(1, 100, 20);
    int l = wait_leader(c, 0);
    uint64_t max_count = 0;
    for (int round = 0; round < 10; round++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "r%d-", round);
        put_many(c, l, prefix, 200);
        uint64_t first, count;
        node_log_bounds(c->m[l].node, &first, &count);
        if (count > max_count) {
            max_count = count;
        }
    }
    assert_true(max_count <= 100 + 20 + 210);
    struct node_status st;
    node_status(c->m[l].node, &st);
    assert_true(st.snapshot_index >= 1800);
    assert_true(wal_files(c->m[l].dir) < 10);
    close_member(c, l);
    open_member(c, l, 1);
    wait_leader(c, 0);
    assert_int_equal(mvcc_revision(node_store(c->m[l].node)), 2001);
    put_via(c, l, "again", "1");
    cluster_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_replicates_to_three),
        cmocka_unit_test(test_cluster_replicates_to_five),
        cmocka_unit_test(test_cluster_follower_read_index),
        cmocka_unit_test(test_cluster_leader_loss),
        cmocka_unit_test(test_cluster_partitioned_minority_cannot_commit),
        cmocka_unit_test(test_cluster_log_compaction_and_restart),
        cmocka_unit_test(test_cluster_lagging_follower_gets_snapshot),
        cmocka_unit_test(test_cluster_membership_changes),
        cmocka_unit_test(test_cluster_new_member_joins_by_snapshot),
        cmocka_unit_test(test_cluster_step_rejects_bad_messages),
        cmocka_unit_test(test_single_member_log_stays_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
