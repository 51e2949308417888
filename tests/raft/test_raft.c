/*
 * Unit tests of raft/: each protocol rule driven by hand on a small
 * in-memory cluster (a fixture that persists, sends and applies Readys the
 * way server/ will, with a switchable network), plus the error paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "raft.h"

/* ---- fixture ------------------------------------------------------------- */

#define MAXN 5
#define MAXQ 4096

struct tnode
{
    uint64_t id;
    struct raft_memstore *ms;
    struct raft_storage st;
    struct raft *r;
    struct raft_config cfg;
    uint64_t applied;
    uint64_t applied_data[256]; /* first 8 bytes of each applied entry */
    int n_applied_data;
    struct raft_conf_state cs;
    struct raft_read_state reads[16];
    int n_reads;
};

struct cluster
{
    int n;
    struct tnode nodes[MAXN];
    struct raft_message q[MAXQ];
    int nq;
    bool cut[MAXN + 1][MAXN + 1];   /* from, to */
    int count[RAFT_MSG_TYPE_COUNT]; /* messages delivered, by type */
    int rejects;                    /* MsgAppResp rejections delivered */
    bool hold; /* queue messages but do not deliver in drain() */
    bool (*drop)(const struct raft_message *m); /* a lossy network */
};

/* allocation accounting: every test ends with zero live allocations */
static long live_allocs;
static long total_allocs;

static void *t_malloc(void *ctx, size_t n)
{
    (void)ctx;
    live_allocs++;
    total_allocs++;
    return malloc(n);
}

static void *t_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (p == NULL) {
        live_allocs++;
        total_allocs++;
    }
    return realloc(p, n);
}

static void t_free(void *ctx, void *p)
{
    (void)ctx;
    if (p != NULL) {
        live_allocs--;
    }
    free(p);
}

static const struct raft_heap theap = {NULL, t_malloc, t_realloc, t_free};

static struct raft_buf *buf_u64(uint64_t v)
{
    return raft_buf_new(&theap, &v, sizeof(v));
}

static void msg_copy(struct raft_message *d, const struct raft_message *m)
{
    size_t i;
    *d = *m;
    d->entries = NULL;
    if (m->n_entries > 0) {
        d->entries = malloc(m->n_entries * sizeof(*d->entries));
        for (i = 0; i < m->n_entries; i++) {
            d->entries[i] = m->entries[i];
            raft_buf_ref(m->entries[i].data);
        }
    }
    if (m->snapshot != NULL) {
        d->snapshot = malloc(sizeof(*d->snapshot));
        *d->snapshot = *m->snapshot;
        raft_buf_ref(d->snapshot->data);
    }
    raft_buf_ref(d->context);
}

static void msg_free(struct raft_message *m)
{
    size_t i;
    for (i = 0; i < m->n_entries; i++) {
        raft_buf_unref(m->entries[i].data);
    }
    free(m->entries);
    if (m->snapshot != NULL) {
        raft_buf_unref(m->snapshot->data);
        free(m->snapshot);
    }
    raft_buf_unref(m->context);
}

static void enqueue(struct cluster *c, const struct raft_message *m)
{
    assert_true(c->nq < MAXQ);
    msg_copy(&c->q[c->nq++], m);
}

static void node_start(struct tnode *t)
{
    struct raft_snapshot snap;
    t->st.snapshot(t->st.ctx, &snap);
    t->applied = snap.meta.index;
    t->cs = snap.meta.conf_state;
    raft_buf_unref(snap.data);
    t->cfg.applied = t->applied;
    assert_int_equal(raft_new(&t->cfg, &t->r), 0);
}

/* One Ready: persist -> send -> apply -> advance, as server/ will.
 * Returns how many read states it carried. */
static size_t process_one(struct cluster *c, struct tnode *t)
{
    struct raft_ready *rd = raft_ready(t->r);
    size_t i, reads;
    assert_non_null(rd);
    reads = rd->n_read_states;
    {
        for (i = 0; i < rd->n_msgs; i++) {
            enqueue(c, &rd->msgs[i]);
        }
        if (rd->has_snapshot) {
            assert_int_equal(raft_memstore_apply_snapshot(t->ms, &rd->snapshot),
                             0);
        }
        assert_int_equal(
            raft_memstore_append(t->ms, rd->entries, rd->n_entries), 0);
        if (rd->has_hard_state) {
            raft_memstore_set_hard_state(t->ms, &rd->hard_state);
        }
        for (i = 0; i < rd->n_msgs_after_persist; i++) {
            enqueue(c, &rd->msgs_after_persist[i]);
        }
        if (rd->has_snapshot) {
            t->applied = rd->snapshot.meta.index;
            t->cs = rd->snapshot.meta.conf_state;
        }
        for (i = 0; i < rd->n_committed; i++) {
            const struct raft_entry *e = &rd->committed[i];
            if (e->index <= t->applied) {
                continue;
            }
            assert_int_equal(e->index, t->applied + 1);
            t->applied = e->index;
            if (e->type == RAFT_ENTRY_CONF_CHANGE) {
                struct raft_conf_change cc;
                assert_int_equal(raft_conf_change_decode(&theap, e->data, &cc),
                                 0);
                assert_int_equal(raft_apply_conf_change(t->r, &cc, &t->cs), 0);
                raft_buf_unref(cc.context);
            } else if (e->data != NULL && e->data->len >= 8 &&
                       t->n_applied_data < 256) {
                memcpy(&t->applied_data[t->n_applied_data++], e->data->data, 8);
            }
        }
        for (i = 0; i < rd->n_read_states && t->n_reads < 16; i++) {
            t->reads[t->n_reads].index = rd->read_states[i].index;
            t->reads[t->n_reads].context =
                raft_buf_ref(rd->read_states[i].context);
            t->n_reads++;
        }
        raft_advance(t->r, rd);
    }
    return reads;
}

static void process(struct cluster *c, struct tnode *t)
{
    while (t->r != NULL && raft_has_ready(t->r)) {
        process_one(c, t);
    }
}

static struct tnode *node(struct cluster *c, uint64_t id)
{
    return &c->nodes[id - 1];
}

/* Delivers queued messages (and the answers) until quiet. */
static void drain(struct cluster *c)
{
    int rounds, i;
    for (rounds = 0; rounds < 1000; rounds++) {
        int n;
        struct raft_message batch[MAXQ];
        for (i = 0; i < c->n; i++) {
            process(c, &c->nodes[i]);
        }
        if (c->nq == 0 || c->hold) {
            return;
        }
        n = c->nq;
        memcpy(batch, c->q, (size_t)n * sizeof(batch[0]));
        c->nq = 0;
        for (i = 0; i < n; i++) {
            struct raft_message *m = &batch[i];
            if (m->to >= 1 && m->to <= (uint64_t)c->n &&
                !c->cut[m->from][m->to] && node(c, m->to)->r != NULL &&
                (c->drop == NULL || !c->drop(m))) {
                c->count[m->type]++;
                if (m->type == RAFT_MSG_APP_RESP && m->reject) {
                    c->rejects++;
                }
                raft_step(node(c, m->to)->r, m);
                process(c, node(c, m->to));
            }
            msg_free(m);
        }
    }
    fail_msg("cluster did not quiesce");
}

static void cluster_init_cfg(struct cluster *c,
                             int n,
                             int voters,
                             void (*tweak)(struct raft_config *))
{
    uint64_t ids[MAXN];
    int i;
    memset(c, 0, sizeof(*c));
    c->n = n;
    for (i = 0; i < voters; i++) {
        ids[i] = (uint64_t)i + 1;
    }
    for (i = 0; i < n; i++) {
        struct tnode *t = &c->nodes[i];
        t->id = (uint64_t)i + 1;
        t->ms = raft_memstore_new(&theap);
        raft_memstore_storage(t->ms, &t->st);
        if (i < voters) {
            assert_int_equal(
                raft_memstore_bootstrap(t->ms, ids, (size_t)voters), 0);
        }
        raft_config_default(&t->cfg);
        t->cfg.id = t->id;
        t->cfg.storage = &t->st;
        t->cfg.heap = &theap;
        t->cfg.rand_seed = 7;
        if (tweak != NULL) {
            tweak(&t->cfg);
        }
        node_start(t);
    }
    drain(c);
}

static void cluster_init(struct cluster *c, int n)
{
    cluster_init_cfg(c, n, n, NULL);
}

static void cluster_free(struct cluster *c)
{
    int i, k;
    for (i = 0; i < c->nq; i++) {
        msg_free(&c->q[i]);
    }
    for (i = 0; i < c->n; i++) {
        for (k = 0; k < c->nodes[i].n_reads; k++) {
            raft_buf_unref(c->nodes[i].reads[k].context);
        }
        raft_free(c->nodes[i].r);
        raft_memstore_free(c->nodes[i].ms);
    }
    assert_int_equal(live_allocs, 0);
}

static void crash(struct tnode *t)
{
    raft_free(t->r);
    t->r = NULL;
}

static struct raft_status status(struct cluster *c, uint64_t id)
{
    struct raft_status st;
    raft_status(node(c, id)->r, &st);
    return st;
}

/* the configuration in effect on id (valid until the next call) */
static const struct raft_conf_state *conf_of(struct cluster *c, uint64_t id)
{
    static struct raft_status st;
    raft_status(node(c, id)->r, &st);
    return &st.conf;
}

static uint64_t raft_status_applied(const struct raft *r)
{
    struct raft_status st;
    raft_status(r, &st);
    return st.applied;
}

static void elect(struct cluster *c, uint64_t id)
{
    assert_int_equal(raft_campaign(node(c, id)->r), 0);
    drain(c);
    assert_int_equal(status(c, id).state, RAFT_LEADER);
}

/* Ticks everyone until some member other than `not` leads. */
static uint64_t wait_leader(struct cluster *c, uint64_t not )
{
    int k, i;
    for (k = 0; k < 100; k++) {
        for (i = 1; i <= c->n; i++) {
            if ((uint64_t)i != not &&c->nodes[i - 1].r != NULL) {
                raft_tick(c->nodes[i - 1].r);
            }
        }
        drain(c);
        for (i = 1; i <= c->n; i++) {
            struct raft_status st;
            if ((uint64_t)i == not || c->nodes[i - 1].r == NULL) {
                continue;
            }
            raft_status(c->nodes[i - 1].r, &st);
            if (st.state == RAFT_LEADER) {
                return (uint64_t)i;
            }
        }
    }
    fail_msg("no leader elected");
    return 0;
}

static void tick(struct cluster *c, uint64_t id, int n)
{
    while (n-- > 0) {
        raft_tick(node(c, id)->r);
        process(c, node(c, id));
    }
}

static void tick_all(struct cluster *c, int n)
{
    int i;
    while (n-- > 0) {
        for (i = 0; i < c->n; i++) {
            if (c->nodes[i].r != NULL) {
                raft_tick(c->nodes[i].r);
            }
        }
        drain(c);
    }
}

static int propose_u64(struct cluster *c, uint64_t id, uint64_t v)
{
    struct raft_buf *b = buf_u64(v);
    int rv = raft_propose(node(c, id)->r, b);
    raft_buf_unref(b);
    return rv;
}

static void isolate(struct cluster *c, uint64_t id)
{
    int i;
    for (i = 1; i <= c->n; i++) {
        c->cut[id][i] = true;
        c->cut[i][id] = true;
    }
}

static void heal(struct cluster *c)
{
    memset(c->cut, 0, sizeof(c->cut));
}

static void propose_cc(struct cluster *c,
                       uint64_t leader,
                       int type,
                       uint64_t id)
{
    struct raft_conf_change cc = {0, type, id, NULL};
    assert_int_equal(raft_propose_conf_change(node(c, leader)->r, &cc), 0);
    drain(c);
}

static bool has_voter(const struct raft_conf_state *cs, uint64_t id)
{
    uint32_t i;
    for (i = 0; i < cs->n_voters; i++) {
        if (cs->voters[i] == id) {
            return true;
        }
    }
    return false;
}

static bool has_learner(const struct raft_conf_state *cs, uint64_t id)
{
    uint32_t i;
    for (i = 0; i < cs->n_learners; i++) {
        if (cs->learners[i] == id) {
            return true;
        }
    }
    return false;
}

/* ---- config and errors --------------------------------------------------- */

static void test_raft_config_rejected(void **state)
{
    struct raft_memstore *ms = raft_memstore_new(&theap);
    struct raft_storage st;
    struct raft_config c;
    struct raft *r = NULL;
    (void)state;
    raft_memstore_storage(ms, &st);
    raft_config_default(&c);
    c.storage = &st;
    c.heap = &theap;
    assert_int_equal(raft_new(&c, &r), RAFT_EINVAL); /* id 0 */
    c.id = 1;
    c.election_tick = 1;
    assert_int_equal(raft_new(&c, &r), RAFT_EINVAL);
    c.election_tick = 10;
    c.check_quorum = false;
    c.read_only_option = RAFT_READ_ONLY_LEASE_BASED;
    assert_int_equal(raft_new(&c, &r), RAFT_EINVAL); /* lease needs CQ */
    c.read_only_option = RAFT_READ_ONLY_SAFE;
    c.max_inflight_msgs = 0;
    assert_int_equal(raft_new(&c, &r), RAFT_EINVAL);
    c.max_inflight_msgs = 4;
    c.storage = NULL;
    assert_int_equal(raft_new(&c, &r), RAFT_EINVAL);
    c.storage = &st;
    c.applied = 5; /* beyond the commit index */
    assert_int_equal(raft_new(&c, &r), RAFT_EINVAL);
    c.applied = 0;
    assert_int_equal(raft_new(&c, &r), 0);
    raft_free(r);
    raft_memstore_free(ms);
    assert_int_equal(live_allocs, 0);
    assert_string_equal(raft_strerror(RAFT_EPROPOSAL_DROPPED),
                        "raft proposal dropped");
    assert_string_equal(raft_strerror(12345), "unknown raft error");
    assert_string_equal(raft_msg_type_name(RAFT_MSG_APP), "MsgApp");
    assert_string_equal(raft_msg_type_name(99), "MsgUnknown");
}

static int fail_initial_state(void *ctx,
                              struct raft_hard_state *hs,
                              struct raft_conf_state *cs)
{
    (void)ctx;
    (void)hs;
    (void)cs;
    return RAFT_EUNAVAILABLE;
}

static void *null_malloc(void *ctx, size_t n)
{
    (void)ctx;
    (void)n;
    return NULL;
}

/* raft_new reports what fails underneath it and allocates nothing then. */
static void test_raft_new_propagates_failures(void **state)
{
    struct raft_memstore *ms = raft_memstore_new(&theap);
    struct raft_storage st, bad;
    struct raft_config c;
    struct raft_heap oom = theap;
    struct raft *r = (struct raft *)&c; /* must come back NULL */
    (void)state;
    raft_memstore_storage(ms, &st);
    bad = st;
    bad.initial_state = fail_initial_state;
    raft_config_default(&c);
    c.id = 1;
    c.heap = &theap;
    c.storage = &bad;
    assert_int_equal(raft_new(&c, &r), RAFT_EUNAVAILABLE);
    assert_null(r);
    oom.malloc = null_malloc;
    c.storage = &st;
    c.heap = &oom;
    assert_int_equal(raft_new(&c, &r), RAFT_ENOMEM);
    assert_null(r);
    assert_null(raft_buf_new(&oom, "x", 1));
    {
        struct raft_conf_change cc = {1, RAFT_CONF_ADD_NODE, 2, NULL};
        assert_null(raft_conf_change_encode(&oom, &cc));
    }
    assert_null(raft_memstore_new(&oom));
    raft_memstore_free(ms);
    assert_int_equal(live_allocs, 0);
}

static void test_raft_step_errors(void **state)
{
    struct cluster c;
    struct raft_message m;
    (void)state;
    cluster_init(&c, 3);
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HUP;
    m.from = 2;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_ESTEP_LOCAL_MSG);
    m.type = RAFT_MSG_APP_RESP;
    m.from = 9; /* unknown peer */
    m.term = 1;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_ESTEP_PEER_NOT_FOUND);
    m.type = 77;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    m.type = RAFT_MSG_APP;
    m.from = 1; /* from itself */
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    /* no leader yet: proposals, reads and transfers are dropped */
    assert_int_equal(propose_u64(&c, 1, 1), RAFT_EPROPOSAL_DROPPED);
    assert_int_equal(raft_transfer_leader(node(&c, 1)->r, 0), RAFT_EINVAL);
    cluster_free(&c);
}

static void test_raft_conf_change_codec(void **state)
{
    struct raft_conf_change cc = {42, RAFT_CONF_ADD_LEARNER_NODE, 300, NULL},
                            out;
    struct raft_buf *b, *bad;
    static const unsigned char trunc[] = {0x08, 0x80};       /* varint cut */
    static const unsigned char badlen[] = {0x22, 0x10, 'x'}; /* len > rest */
    static const unsigned char badtype[] = {0x10, 0x09};     /* type 9 */
    static const unsigned char wire7[] = {0x0f};             /* wire type 7 */
    (void)state;
    cc.context = raft_buf_new(&theap, "peer-urls", 9);
    b = raft_conf_change_encode(&theap, &cc);
    assert_non_null(b);
    assert_int_equal(raft_conf_change_decode(&theap, b, &out), 0);
    assert_int_equal(out.id, 42);
    assert_int_equal(out.type, RAFT_CONF_ADD_LEARNER_NODE);
    assert_int_equal(out.node_id, 300);
    assert_int_equal(out.context->len, 9);
    assert_memory_equal(out.context->data, "peer-urls", 9);
    raft_buf_unref(out.context);
    raft_buf_unref(b);
    raft_buf_unref(cc.context);
    bad = raft_buf_new(&theap, trunc, sizeof(trunc));
    assert_int_equal(raft_conf_change_decode(&theap, bad, &out), RAFT_EINVAL);
    raft_buf_unref(bad);
    bad = raft_buf_new(&theap, badlen, sizeof(badlen));
    assert_int_equal(raft_conf_change_decode(&theap, bad, &out), RAFT_EINVAL);
    raft_buf_unref(bad);
    bad = raft_buf_new(&theap, badtype, sizeof(badtype));
    assert_int_equal(raft_conf_change_decode(&theap, bad, &out), RAFT_EINVAL);
    raft_buf_unref(bad);
    bad = raft_buf_new(&theap, wire7, sizeof(wire7));
    assert_int_equal(raft_conf_change_decode(&theap, bad, &out), RAFT_EINVAL);
    raft_buf_unref(bad);
    assert_int_equal(live_allocs, 0);
}

static void test_raft_conf_state_apply(void **state)
{
    struct raft_conf_state cs;
    struct raft_conf_change cc = {0, RAFT_CONF_ADD_NODE, 1, NULL};
    uint64_t i;
    (void)state;
    memset(&cs, 0, sizeof(cs));
    assert_int_equal(raft_conf_state_apply(&cs, &cc), 0);
    cc.type = RAFT_CONF_ADD_LEARNER_NODE;
    cc.node_id = 2;
    assert_int_equal(raft_conf_state_apply(&cs, &cc), 0);
    assert_true(has_voter(&cs, 1) && has_learner(&cs, 2));
    cc.type = RAFT_CONF_ADD_NODE; /* promotion */
    assert_int_equal(raft_conf_state_apply(&cs, &cc), 0);
    assert_true(has_voter(&cs, 2) && !has_learner(&cs, 2));
    cc.type = RAFT_CONF_REMOVE_NODE;
    cc.node_id = 1;
    assert_int_equal(raft_conf_state_apply(&cs, &cc), 0);
    assert_false(has_voter(&cs, 1));
    cc.type = 9;
    assert_int_equal(raft_conf_state_apply(&cs, &cc), RAFT_EINVAL);
    cc.type = RAFT_CONF_ADD_NODE;
    for (i = 10; i < 10 + RAFT_MAX_MEMBERS - 1; i++) {
        cc.node_id = i;
        assert_int_equal(raft_conf_state_apply(&cs, &cc), 0);
    }
    cc.node_id = 999;
    assert_int_equal(raft_conf_state_apply(&cs, &cc), RAFT_ETOO_MANY_MEMBERS);
    assert_int_equal(cs.n_voters, RAFT_MAX_MEMBERS);
}

static void test_raft_memstore_errors(void **state)
{
    struct raft_memstore *ms = raft_memstore_new(&theap);
    struct raft_storage st;
    struct raft_entry e[3];
    const struct raft_entry *out;
    struct raft_snapshot snap;
    size_t n;
    uint64_t t, ids[1] = {1};
    int i;
    (void)state;
    raft_memstore_storage(ms, &st);
    for (i = 0; i < 3; i++) {
        e[i].term = 1;
        e[i].index = (uint64_t)i + 1;
        e[i].type = RAFT_ENTRY_NORMAL;
        e[i].data = NULL;
    }
    assert_int_equal(raft_memstore_append(ms, e, 3), 0);
    assert_int_equal(raft_memstore_bootstrap(ms, ids, 1), RAFT_EINVAL);
    e[0].index = 9; /* a gap */
    assert_int_equal(raft_memstore_append(ms, e, 1), RAFT_EINVAL);
    assert_int_equal(st.entries(st.ctx, 1, 5, 100, &out, &n),
                     RAFT_EUNAVAILABLE);
    assert_int_equal(raft_memstore_create_snapshot(ms, 2, NULL, NULL), 0);
    assert_int_equal(raft_memstore_create_snapshot(ms, 9, NULL, NULL),
                     RAFT_EUNAVAILABLE);
    assert_int_equal(raft_memstore_create_snapshot(ms, 1, NULL, NULL),
                     RAFT_ESNAP_OUT_OF_DATE);
    assert_int_equal(raft_memstore_compact(ms, 2), 0);
    assert_int_equal(raft_memstore_compact(ms, 2), RAFT_ECOMPACTED);
    assert_int_equal(raft_memstore_compact(ms, 7), RAFT_EUNAVAILABLE);
    assert_int_equal(st.entries(st.ctx, 2, 3, 100, &out, &n), RAFT_ECOMPACTED);
    assert_int_equal(st.term(st.ctx, 1, &t), RAFT_ECOMPACTED);
    assert_int_equal(st.term(st.ctx, 2, &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(st.term(st.ctx, 4, &t), RAFT_EUNAVAILABLE);
    raft_memstore_set_snapshot_unavailable(ms, true);
    assert_int_equal(st.snapshot(st.ctx, &snap), RAFT_ESNAP_TEMP_UNAVAILABLE);
    raft_memstore_set_snapshot_unavailable(ms, false);
    assert_int_equal(st.snapshot(st.ctx, &snap), 0);
    snap.meta.index = 1;
    assert_int_equal(raft_memstore_apply_snapshot(ms, &snap),
                     RAFT_ESNAP_OUT_OF_DATE);
    raft_memstore_free(ms);
    assert_int_equal(live_allocs, 0);
}

/* ---- elections ----------------------------------------------------------- */

static void test_raft_single_node_commits_after_persist(void **state)
{
    struct cluster c;
    struct raft_ready *rd;
    struct raft_status st;
    (void)state;
    cluster_init(&c, 1);
    elect(&c, 1);
    assert_int_equal(propose_u64(&c, 1, 77), 0);
    /* the entry must be persisted before it is committed (etcd #14370) */
    rd = raft_ready(node(&c, 1)->r);
    assert_non_null(rd);
    assert_int_equal(rd->n_entries, 1);
    assert_int_equal(rd->n_committed, 0);
    assert_null(raft_ready(node(&c, 1)->r)); /* one Ready at a time */
    assert_false(raft_has_ready(node(&c, 1)->r));
    assert_int_equal(raft_memstore_append(node(&c, 1)->ms, rd->entries, 1), 0);
    raft_advance(node(&c, 1)->r, rd);
    rd = raft_ready(node(&c, 1)->r);
    assert_non_null(rd);
    assert_int_equal(rd->n_committed, 1);
    assert_int_equal(rd->n_entries, 0);
    assert_true(rd->has_hard_state);
    raft_advance(node(&c, 1)->r, rd);
    raft_status(node(&c, 1)->r, &st);
    assert_int_equal(st.hs.commit, st.last_index);
    cluster_free(&c);
}

static void test_raft_election_and_noop(void **state)
{
    struct cluster c;
    struct raft_status st;
    struct raft_entry e;
    int i;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    st = status(&c, 1);
    assert_int_equal(st.hs.term, 2);
    assert_int_equal(st.lead, 1);
    /* the new leader's first entry is an empty entry of its term */
    assert_int_equal(raft_log_entry(node(&c, 1)->r, 4, &e), 0);
    assert_int_equal(e.term, 2);
    assert_null(e.data);
    assert_int_equal(raft_log_entry(node(&c, 1)->r, 99, &e), RAFT_EUNAVAILABLE);
    for (i = 2; i <= 3; i++) {
        st = status(&c, (uint64_t)i);
        assert_int_equal(st.state, RAFT_FOLLOWER);
        assert_int_equal(st.lead, 1);
        assert_int_equal(st.hs.commit, 4);
        assert_int_equal(st.hs.vote, 1);
    }
    assert_true(c.count[RAFT_MSG_PRE_VOTE] >= 2);
    cluster_free(&c);
}

static void test_raft_election_by_timeout(void **state)
{
    struct cluster c;
    int i, leaders = 0;
    (void)state;
    cluster_init(&c, 5);
    tick_all(&c, 25); /* randomized in [10, 20) ticks */
    for (i = 1; i <= 5; i++) {
        leaders += status(&c, (uint64_t)i).state == RAFT_LEADER;
    }
    assert_int_equal(leaders, 1);
    cluster_free(&c);
}

/* Votes and append responses promise durable state: they must wait for
 * the persist; only the leader's replication traffic may go before. */
static void test_raft_ready_splits_messages(void **state)
{
    struct cluster c;
    struct raft_ready *rd;
    size_t i;
    (void)state;
    cluster_init(&c, 3);
    c.hold = true;
    assert_int_equal(raft_campaign(node(&c, 1)->r), 0);
    rd = raft_ready(node(&c, 1)->r);
    assert_int_equal(rd->n_msgs, 0); /* pre-candidate: nothing before */
    assert_int_equal(rd->n_msgs_after_persist, 2);
    assert_int_equal(rd->msgs_after_persist[0].type, RAFT_MSG_PRE_VOTE);
    raft_advance(node(&c, 1)->r, rd);
    c.hold = false;
    elect(&c, 1);
    c.hold = true;
    assert_int_equal(propose_u64(&c, 1, 5), 0);
    rd = raft_ready(node(&c, 1)->r);
    assert_int_equal(rd->n_msgs, 2);
    for (i = 0; i < rd->n_msgs; i++) {
        assert_int_equal(rd->msgs[i].type, RAFT_MSG_APP);
        enqueue(&c, &rd->msgs[i]);
    }
    assert_int_equal(rd->n_msgs_after_persist, 0);
    assert_int_equal(
        raft_memstore_append(node(&c, 1)->ms, rd->entries, rd->n_entries), 0);
    raft_advance(node(&c, 1)->r, rd);
    /* a follower's ack waits for its persist */
    raft_step(node(&c, 2)->r, &c.q[0]);
    rd = raft_ready(node(&c, 2)->r);
    assert_int_equal(rd->n_msgs, 0);
    assert_int_equal(rd->n_msgs_after_persist, 1);
    assert_int_equal(rd->msgs_after_persist[0].type, RAFT_MSG_APP_RESP);
    assert_int_equal(rd->n_entries, 1);
    raft_advance(node(&c, 2)->r, rd);
    c.hold = false;
    drain(&c);
    cluster_free(&c);
}

/* A follower's forwarded proposals promise nothing about its log: they
 * leave before its persist, even while it persists entries of its own
 * (its ack of those still waits). raft_propose_batch keeps a batch in one
 * MsgProp, and the leader replicates it in one MsgApp per follower. */
static void test_raft_follower_forwards_batch_before_persist(void **state)
{
    struct cluster c;
    struct raft_ready *rd;
    struct raft_buf *bufs[3];
    size_t i;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    c.hold = true;
    /* an entry reaches follower 2: its Ready persists it, acks after */
    assert_int_equal(propose_u64(&c, 1, 7), 0);
    process_one(&c, node(&c, 1));
    for (i = 0; i < (size_t)c.nq; i++) {
        if (c.q[i].to == 2) {
            raft_step(node(&c, 2)->r, &c.q[i]);
        }
    }
    for (i = 0; i < 3; i++) {
        bufs[i] = buf_u64(100 + i);
    }
    assert_int_equal(raft_propose_batch(node(&c, 2)->r, bufs, 3), 0);
    for (i = 0; i < 3; i++) {
        raft_buf_unref(bufs[i]);
    }
    rd = raft_ready(node(&c, 2)->r);
    assert_int_equal(rd->n_entries, 1);
    assert_int_equal(rd->n_msgs, 1);
    assert_int_equal(rd->msgs[0].type, RAFT_MSG_PROP);
    assert_int_equal(rd->msgs[0].to, 1);
    assert_int_equal(rd->msgs[0].n_entries, 3);
    assert_int_equal(rd->n_msgs_after_persist, 1);
    assert_int_equal(rd->msgs_after_persist[0].type, RAFT_MSG_APP_RESP);
    /* the leader appends the batch and sends it in one MsgApp each */
    assert_int_equal(raft_step(node(&c, 1)->r, &rd->msgs[0]), 0);
    assert_int_equal(
        raft_memstore_append(node(&c, 2)->ms, rd->entries, rd->n_entries), 0);
    raft_advance(node(&c, 2)->r, rd);
    rd = raft_ready(node(&c, 1)->r);
    assert_int_equal(rd->n_entries, 3);
    assert_int_equal(rd->n_msgs, 2);
    for (i = 0; i < rd->n_msgs; i++) {
        assert_int_equal(rd->msgs[i].type, RAFT_MSG_APP);
        assert_int_equal(rd->msgs[i].n_entries, 3);
    }
    raft_advance(node(&c, 1)->r, rd);
    /* an empty batch is refused */
    assert_int_equal(raft_propose_batch(node(&c, 1)->r, NULL, 0), RAFT_EINVAL);
    cluster_free(&c);
}

/* Leader stickiness: a follower that hears a live leader ignores a
 * disruptive vote request, even with a higher term. */
static void test_raft_ignores_disruptive_vote(void **state)
{
    struct cluster c;
    struct raft_message m;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_VOTE;
    m.from = 3;
    m.to = 2;
    m.term = 9;
    m.index = 100;
    m.log_term = 9;
    assert_int_equal(raft_step(node(&c, 2)->r, &m), 0);
    assert_int_equal(status(&c, 2).hs.term, 2);
    assert_int_equal(status(&c, 2).lead, 1);
    /* once the election timeout passed without the leader, it votes */
    isolate(&c, 1);
    tick(&c, 2, 10);
    assert_int_equal(raft_step(node(&c, 2)->r, &m), 0);
    process(&c, node(&c, 2));
    assert_int_equal(status(&c, 2).hs.term, 9);
    assert_int_equal(status(&c, 2).hs.vote, 3);
    heal(&c);
    drain(&c);
    cluster_free(&c);
}

/* Pre-vote: a partitioned member does not inflate its term, and does not
 * disrupt the leader when it comes back. */
static void test_raft_pre_vote_no_disruption(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 3);
    tick(&c, 3, 100);
    assert_int_equal(status(&c, 3).hs.term, 2);
    assert_int_equal(status(&c, 3).state, RAFT_PRE_CANDIDATE);
    heal(&c);
    tick_all(&c, 5);
    assert_int_equal(status(&c, 1).state, RAFT_LEADER);
    assert_int_equal(status(&c, 1).hs.term, 2);
    assert_int_equal(status(&c, 3).lead, 1);
    cluster_free(&c);
}

/* Without pre-vote the same partition bumps the term (the control). */
static void no_pre_vote(struct raft_config *cfg)
{
    cfg->pre_vote = false;
}

static void test_raft_without_pre_vote_term_grows(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init_cfg(&c, 3, 3, no_pre_vote);
    elect(&c, 1);
    isolate(&c, 3);
    tick(&c, 3, 100);
    assert_true(status(&c, 3).hs.term > 4);
    cluster_free(&c);
}

static void test_raft_check_quorum_steps_down(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 1);
    tick(&c, 1, 9);
    assert_int_equal(status(&c, 1).state, RAFT_LEADER);
    tick(&c, 1, 11);
    assert_int_equal(status(&c, 1).state, RAFT_FOLLOWER);
    assert_int_equal(status(&c, 1).lead, 0);
    heal(&c);
    drain(&c);
    cluster_free(&c);
}

/* A stale leader learns the new term from the answer to its heartbeat. */
static void test_raft_stale_leader_steps_down(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 1);
    tick_all(&c, 30); /* 2 or 3 takes over; 1 may stay leader alone... */
    heal(&c);
    tick_all(&c, 3);
    assert_int_equal(status(&c, 1).state, RAFT_FOLLOWER);
    assert_true(status(&c, 1).hs.term >= 3);
    cluster_free(&c);
}

/* ---- replication --------------------------------------------------------- */

static void test_raft_replicates_and_applies(void **state)
{
    struct cluster c;
    int i;
    uint64_t v;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    for (v = 100; v < 110; v++) {
        assert_int_equal(propose_u64(&c, 1 + v % 3, v), 0); /* forwarded too */
        drain(&c);
    }
    for (i = 0; i < 3; i++) {
        assert_int_equal(c.nodes[i].n_applied_data, 10);
        assert_memory_equal(c.nodes[i].applied_data, c.nodes[0].applied_data,
                            10 * sizeof(uint64_t));
    }
    cluster_free(&c);
}

/* The paper's Figure 8 rule: a leader never commits a previous-term entry
 * by counting replicas; with the test switch it does (the mutation the
 * simulator must catch). */
/* The first MsgApp carrying the no-op (a probe n2 rejects: it lacks 4)
 * goes through; later ones are lost. */
static int noop_seen;

static bool drop_noop_to_2(const struct raft_message *m)
{
    return m->to == 2 && m->type == RAFT_MSG_APP && m->n_entries > 0 &&
           m->entries[m->n_entries - 1].index >= 5 && noop_seen++ > 0;
}

static void figure8(int bug, uint64_t *commit_before, uint64_t *commit_after)
{
    struct cluster c;
    struct raft_entry e = {2, 4, RAFT_ENTRY_NORMAL, NULL};
    struct raft_hard_state hs = {2, 0, 3};
    int i;
    memset(&c, 0, sizeof(c));
    cluster_init(&c, 3);
    /* n1 holds an entry of an old term (2) that never reached the others */
    for (i = 1; i <= 3; i++) {
        crash(node(&c, (uint64_t)i));
        raft_memstore_set_hard_state(node(&c, (uint64_t)i)->ms, &hs);
        node(&c, (uint64_t)i)->cfg.max_size_per_msg = 0; /* 1 entry/msg */
        node(&c, (uint64_t)i)->cfg.test_bug = bug;
    }
    e.data = buf_u64(44);
    assert_int_equal(raft_memstore_append(node(&c, 1)->ms, &e, 1), 0);
    raft_buf_unref(e.data);
    for (i = 1; i <= 3; i++) {
        node_start(node(&c, (uint64_t)i));
    }
    drain(&c);
    c.cut[1][3] = true; /* only n2 hears n1 */
    c.cut[3][1] = true;
    /* n2 gets entry 4 (term 2) but the no-op 5 (term 3) is "lost" */
    c.drop = drop_noop_to_2;
    noop_seen = 0;
    elect(&c, 1); /* term 3, no-op at 5 */
    assert_int_equal(status(&c, 1).hs.term, 3);
    tick_all(&c, 3);
    assert_int_equal(status(&c, 2).last_index, 4);
    *commit_before = status(&c, 1).hs.commit;
    c.drop = NULL;
    drain(&c);
    tick_all(&c, 3);
    *commit_after = status(&c, 1).hs.commit;
    heal(&c);
    cluster_free(&c);
}

static void test_raft_no_commit_of_old_term_by_counting(void **state)
{
    uint64_t before, after;
    (void)state;
    figure8(RAFT_BUG_NONE, &before, &after);
    assert_int_equal(before, 3); /* 4 is on a majority, but of term 2 */
    assert_int_equal(after, 5);  /* committed with the no-op of term 3 */
    figure8(RAFT_BUG_COMMIT_OLD_TERM, &before, &after);
    assert_int_equal(before, 4); /* the switch breaks the rule */
}

/* A duplicated (or reordered) MsgApp whose entries all match must not
 * truncate what follows them. */
static void test_raft_duplicate_append_does_not_truncate(void **state)
{
    struct cluster c;
    struct raft_message dup;
    bool saved = false;
    int i;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    c.hold = true;
    assert_int_equal(propose_u64(&c, 1, 1), 0);
    process(&c, node(&c, 1));
    for (i = 0; i < c.nq; i++) {
        if (c.q[i].to == 2 && !saved) {
            msg_copy(&dup, &c.q[i]);
            saved = true;
        }
    }
    c.hold = false;
    drain(&c);
    assert_true(saved);
    assert_int_equal(propose_u64(&c, 1, 2), 0);
    drain(&c);
    assert_int_equal(status(&c, 2).last_index, 6);
    raft_step(node(&c, 2)->r, &dup); /* the old message again */
    process(&c, node(&c, 2));
    msg_free(&dup);
    assert_int_equal(status(&c, 2).last_index, 6);
    drain(&c);
    cluster_free(&c);
}

/* Divergent follower logs are repaired, with the conflict hint avoiding
 * one round trip per entry. */
static void test_raft_conflicting_log_fast_backoff(void **state)
{
    struct cluster c;
    uint64_t l, m;
    int i;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    /* n1 appends 30 entries that only it has, then loses leadership */
    isolate(&c, 1);
    for (i = 0; i < 30; i++) {
        assert_int_equal(propose_u64(&c, 1, 1000 + (uint64_t)i), 0);
    }
    drain(&c);
    crash(node(&c, 1));
    heal(&c);
    isolate(&c, 1);
    l = wait_leader(&c, 1);
    for (i = 0; i < 36; i++) {
        assert_int_equal(propose_u64(&c, l, 2000 + (uint64_t)i), 0);
    }
    drain(&c);
    /* n1 comes back and the other survivor (m) leads: its probe starts
     * past n1's log, and n1's 30 entries of term 2 all conflict */
    node_start(node(&c, 1));
    assert_int_equal(status(&c, 1).last_index, 34);
    heal(&c);
    isolate(&c, l);
    c.rejects = 0;
    m = wait_leader(&c, l);
    assert_true(m != 1);
    drain(&c);
    tick_all(&c, 2);
    /* one round trip per term, not one per entry */
    assert_true(c.rejects >= 1);
    assert_true(c.rejects <= 3);
    assert_int_equal(status(&c, 1).last_index, status(&c, m).last_index);
    assert_int_equal(status(&c, 1).hs.commit, status(&c, m).hs.commit);
    assert_int_equal(node(&c, 1)->n_applied_data, 36);
    heal(&c);
    cluster_free(&c);
}

static void small_window(struct raft_config *cfg)
{
    cfg->max_inflight_msgs = 2;
    cfg->max_size_per_msg = 250;
}

/* Flow control: a replicating follower gets at most max_inflight_msgs
 * unacknowledged MsgApps; each is size-limited but carries one entry at
 * least. */
static void test_raft_flow_control(void **state)
{
    struct cluster c;
    struct raft_progress_status p;
    unsigned char big[100];
    int i, apps = 0;
    size_t k;
    (void)state;
    cluster_init_cfg(&c, 2, 2, small_window);
    elect(&c, 1);
    assert_int_equal(raft_progress(node(&c, 1)->r, 2, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(raft_progress(node(&c, 2)->r, 1, &p), RAFT_EINVAL);
    c.hold = true;
    memset(big, 'x', sizeof(big));
    for (i = 0; i < 10; i++) {
        struct raft_buf *b = raft_buf_new(&theap, big, sizeof(big));
        assert_int_equal(raft_propose(node(&c, 1)->r, b), 0);
        raft_buf_unref(b);
    }
    process(&c, node(&c, 1));
    for (i = 0; i < c.nq; i++) {
        if (c.q[i].type == RAFT_MSG_APP) {
            apps++;
            assert_true(c.q[i].n_entries >= 1 && c.q[i].n_entries <= 2);
        }
    }
    assert_int_equal(apps, 2); /* the window is full */
    c.hold = false;
    drain(&c);
    assert_int_equal(status(&c, 2).last_index, status(&c, 1).last_index);
    /* one entry bigger than the limit still goes, alone */
    {
        unsigned char huge[1000];
        struct raft_buf *b;
        memset(huge, 'y', sizeof(huge));
        b = raft_buf_new(&theap, huge, sizeof(huge));
        c.hold = true;
        assert_int_equal(raft_propose(node(&c, 1)->r, b), 0);
        raft_buf_unref(b);
        process(&c, node(&c, 1));
        for (k = 0; k < (size_t)c.nq; k++) {
            assert_int_equal(c.q[k].n_entries, 1);
        }
        c.hold = false;
        drain(&c);
    }
    assert_int_equal(status(&c, 2).hs.commit, status(&c, 1).hs.commit);
    cluster_free(&c);
}

/* A follower that does not answer goes back to probing: one MsgApp per
 * heartbeat response, not a stream. */
static void test_raft_probe_after_unreachable(void **state)
{
    struct cluster c;
    struct raft_progress_status p;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    raft_report_unreachable(node(&c, 1)->r, 3);
    assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_PROBE);
    isolate(&c, 3);
    c.count[RAFT_MSG_APP] = 0;
    assert_int_equal(propose_u64(&c, 1, 1), 0);
    assert_int_equal(propose_u64(&c, 1, 2), 0);
    c.hold = true;
    process(&c, node(&c, 1));
    {
        int i, to3 = 0;
        for (i = 0; i < c.nq; i++) {
            to3 += c.q[i].to == 3 && c.q[i].type == RAFT_MSG_APP;
        }
        assert_int_equal(to3, 1); /* probe_sent pauses the rest */
    }
    c.hold = false;
    drain(&c);
    heal(&c);
    tick_all(&c, 3);
    assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(p.match, status(&c, 1).last_index);
    cluster_free(&c);
}

/* A follower that is caught up but was put back to probing (unreachable
 * report, lost answers) returns to replicate on the next heartbeat round,
 * without waiting for a new proposal (etcd testdata
 * heartbeat_resp_recovers_from_probing). */
static void test_raft_heartbeat_recovers_from_probe(void **state)
{
    struct cluster c;
    struct raft_progress_status p;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    raft_report_unreachable(node(&c, 1)->r, 2);
    assert_int_equal(raft_progress(node(&c, 1)->r, 2, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_PROBE);
    assert_int_equal(p.match, status(&c, 1).last_index);
    tick_all(&c, 1);
    assert_int_equal(raft_progress(node(&c, 1)->r, 2, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    cluster_free(&c);
}

static void limited_uncommitted(struct raft_config *cfg)
{
    cfg->max_uncommitted_size = 20;
}

static void test_raft_uncommitted_limit(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init_cfg(&c, 3, 3, limited_uncommitted);
    elect(&c, 1);
    isolate(&c, 1);
    assert_int_equal(propose_u64(&c, 1, 1), 0);
    assert_int_equal(propose_u64(&c, 1, 2), 0);
    assert_int_equal(propose_u64(&c, 1, 3), RAFT_EPROPOSAL_DROPPED);
    heal(&c);
    drain(&c);
    tick_all(&c, 2);
    assert_int_equal(propose_u64(&c, 1, 4), 0); /* room again */
    drain(&c);
    cluster_free(&c);
}

/* Restart from persisted state only: term, vote and log survive; what was
 * committed is applied again. */
static void test_raft_restart_from_storage(void **state)
{
    struct cluster c;
    struct raft_status st;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    assert_int_equal(propose_u64(&c, 1, 5), 0);
    drain(&c);
    tick_all(&c, 2);
    crash(node(&c, 2));
    node(&c, 2)->n_applied_data = 0;
    node_start(node(&c, 2));
    st = status(&c, 2);
    assert_int_equal(st.hs.term, 2);
    assert_int_equal(st.hs.vote, 1);
    assert_int_equal(st.last_index, 5);
    drain(&c);
    assert_int_equal(node(&c, 2)->n_applied_data, 1);
    assert_int_equal(node(&c, 2)->applied_data[0], 5);
    /* storage that lost acknowledged entries is refused */
    crash(node(&c, 3));
    {
        struct raft_hard_state hs = {2, 1, 50};
        raft_memstore_set_hard_state(node(&c, 3)->ms, &hs);
        node(&c, 3)->cfg.applied = 0;
        assert_int_equal(raft_new(&node(&c, 3)->cfg, &node(&c, 3)->r),
                         RAFT_EINVAL);
        node(&c, 3)->r = NULL;
    }
    cluster_free(&c);
}

/* ---- snapshots ----------------------------------------------------------- */

static void test_raft_snapshot_to_lagging_follower(void **state)
{
    struct cluster c;
    struct raft_status st;
    struct raft_buf *img;
    uint64_t v;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 3);
    for (v = 0; v < 20; v++) {
        assert_int_equal(propose_u64(&c, 1, v), 0);
        drain(&c);
    }
    /* the leader compacts past what n3 has */
    img = buf_u64(424242);
    assert_int_equal(
        raft_memstore_create_snapshot(node(&c, 1)->ms, node(&c, 1)->applied,
                                      &node(&c, 1)->cs, img),
        0);
    raft_buf_unref(img);
    assert_int_equal(
        raft_memstore_compact(node(&c, 1)->ms, node(&c, 1)->applied - 2), 0);
    /* the snapshot is not ready yet: nothing is sent, then it is */
    raft_memstore_set_snapshot_unavailable(node(&c, 1)->ms, true);
    heal(&c);
    tick_all(&c, 3);
    assert_int_equal(c.count[RAFT_MSG_SNAP], 0);
    raft_memstore_set_snapshot_unavailable(node(&c, 1)->ms, false);
    tick_all(&c, 3);
    assert_int_equal(c.count[RAFT_MSG_SNAP], 1);
    st = status(&c, 3);
    assert_int_equal(st.first_index, node(&c, 1)->applied + 1);
    {
        struct raft_progress_status p;
        /* the follower's answer to the snapshot moved it straight to
         * replicate (etcd PR #10308); a late report changes nothing */
        assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
        assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
        raft_report_snapshot(node(&c, 1)->r, 3, false);
        tick_all(&c, 3);
        assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
        assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
        assert_int_equal(p.match, status(&c, 1).last_index);
    }
    assert_int_equal(propose_u64(&c, 1, 999), 0);
    drain(&c);
    assert_int_equal(node(&c, 3)->applied, node(&c, 1)->applied);
    assert_int_equal(node(&c, 3)->cs.n_voters, 3);
    /* the follower restarts from its installed snapshot */
    crash(node(&c, 3));
    node_start(node(&c, 3));
    assert_int_equal(status(&c, 3).conf.n_voters, 3);
    drain(&c);
    cluster_free(&c);
}

/* Restarting with applied = 0 resumes after the storage's snapshot, not
 * after the entries kept below it (they are in the state machine). */
static void test_raft_restart_applied_defaults_to_snapshot(void **state)
{
    struct cluster c;
    struct raft_ready *rd;
    struct raft *r;
    uint64_t v, applied;
    (void)state;
    cluster_init(&c, 1);
    elect(&c, 1);
    for (v = 0; v < 10; v++) {
        assert_int_equal(propose_u64(&c, 1, v), 0);
    }
    drain(&c);
    applied = node(&c, 1)->applied;
    assert_int_equal(raft_memstore_create_snapshot(node(&c, 1)->ms, applied,
                                                   &node(&c, 1)->cs, NULL),
                     0);
    assert_int_equal(raft_memstore_compact(node(&c, 1)->ms, applied - 3), 0);
    crash(node(&c, 1));
    node(&c, 1)->cfg.applied = 0;
    assert_int_equal(raft_new(&node(&c, 1)->cfg, &r), 0);
    assert_int_equal(raft_status_applied(r), applied);
    rd = raft_ready(r);
    assert_non_null(rd);
    assert_int_equal(rd->n_committed, 0); /* nothing applied twice */
    raft_advance(r, rd);
    assert_int_equal(raft_status_applied(r), applied);
    node(&c, 1)->r = r;
    cluster_free(&c);
}

static bool drop_snap(const struct raft_message *m)
{
    return m->type == RAFT_MSG_SNAP;
}

static void test_raft_snapshot_failure_reprobes(void **state)
{
    struct cluster c;
    struct raft_progress_status p;
    uint64_t v;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 3);
    for (v = 0; v < 5; v++) {
        assert_int_equal(propose_u64(&c, 1, v), 0);
        drain(&c);
    }
    assert_int_equal(
        raft_memstore_create_snapshot(node(&c, 1)->ms, node(&c, 1)->applied,
                                      &node(&c, 1)->cs, NULL),
        0);
    assert_int_equal(
        raft_memstore_compact(node(&c, 1)->ms, node(&c, 1)->applied), 0);
    heal(&c);
    c.drop = drop_snap; /* the snapshot send fails */
    tick_all(&c, 3);
    assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_SNAPSHOT);
    tick_all(&c, 3); /* paused: nothing more is sent meanwhile */
    raft_report_snapshot(node(&c, 1)->r, 3, true);
    assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_PROBE);
    c.drop = NULL;
    tick_all(&c, 4); /* the next heartbeat answer restarts the probe */
    assert_int_equal(raft_progress(node(&c, 1)->r, 3, &p), 0);
    assert_int_equal(p.state, RAFT_PROGRESS_REPLICATE);
    assert_int_equal(status(&c, 3).hs.commit, status(&c, 1).hs.commit);
    cluster_free(&c);
}

/* ---- reads --------------------------------------------------------------- */

static void test_raft_read_index_needs_heartbeat_quorum(void **state)
{
    struct cluster c;
    struct raft_buf *a = buf_u64(1), *b = buf_u64(2), *f = buf_u64(3);
    uint64_t ctx;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 1);
    c.count[RAFT_MSG_HEARTBEAT] = 0;
    assert_int_equal(raft_read_index(node(&c, 1)->r, a), 0);
    assert_int_equal(raft_read_index(node(&c, 1)->r, b), 0);
    drain(&c);
    assert_int_equal(node(&c, 1)->n_reads, 0); /* no quorum heard */
    heal(&c);
    tick_all(&c, 1); /* the next heartbeat round carries b: acks both */
    assert_int_equal(node(&c, 1)->n_reads, 2);
    memcpy(&ctx, node(&c, 1)->reads[0].context->data, 8);
    assert_int_equal(ctx, 1);
    assert_int_equal(node(&c, 1)->reads[1].index, status(&c, 1).hs.commit);
    /* a follower's read is forwarded and answered to it */
    assert_int_equal(raft_read_index(node(&c, 2)->r, f), 0);
    drain(&c);
    assert_int_equal(node(&c, 2)->n_reads, 1);
    assert_int_equal(node(&c, 2)->reads[0].index, status(&c, 1).hs.commit);
    raft_buf_unref(a);
    raft_buf_unref(b);
    raft_buf_unref(f);
    cluster_free(&c);
}

/* A new leader answers no read before its own no-op commits (etcd #7331). */
static void test_raft_read_index_waits_for_current_term_commit(void **state)
{
    struct cluster c;
    struct raft_buf *a = buf_u64(10);
    (void)state;
    /* a single voter after a restart: its commit index lags what it
     * committed before (etcd-io/raft#105) */
    cluster_init(&c, 1);
    elect(&c, 1);
    crash(node(&c, 1));
    node_start(node(&c, 1));
    assert_int_equal(raft_campaign(node(&c, 1)->r), 0);
    assert_true(status(&c, 1).hs.commit < status(&c, 1).last_index);
    assert_int_equal(raft_read_index(node(&c, 1)->r, a), 0);
    /* the Ready that persists the no-op carries no read state yet */
    assert_int_equal(process_one(&c, node(&c, 1)), 0);
    assert_int_equal(node(&c, 1)->n_reads, 0);
    drain(&c);
    assert_int_equal(node(&c, 1)->n_reads, 1);
    assert_int_equal(node(&c, 1)->reads[0].index, status(&c, 1).hs.commit);
    raft_buf_unref(a);
    cluster_free(&c);
}

static void lease_reads(struct raft_config *cfg)
{
    cfg->read_only_option = RAFT_READ_ONLY_LEASE_BASED;
}

/* Lease reads: answered at once while a quorum answered heartbeats sent
 * less than an election timeout (minus a margin) ago; after that the
 * leader falls back to a ReadIndex round. */
static void test_raft_lease_read_is_immediate(void **state)
{
    struct cluster c;
    struct raft_buf *a = buf_u64(5), *b = buf_u64(6);
    uint64_t l;
    (void)state;
    cluster_init_cfg(&c, 3, 3, lease_reads);
    l = wait_leader(&c, 0);
    tick_all(&c, 2); /* heartbeats answered: the lease starts */
    isolate(&c, l);
    assert_int_equal(raft_read_index(node(&c, l)->r, a), 0);
    drain(&c);
    assert_int_equal(node(&c, l)->n_reads, 1); /* no round trip */
    tick(&c, l, 8); /* the lease ran out (check-quorum has not yet) */
    assert_int_equal(status(&c, l).state, RAFT_LEADER);
    assert_int_equal(raft_read_index(node(&c, l)->r, b), 0);
    drain(&c);
    assert_int_equal(node(&c, l)->n_reads, 1); /* waits for a quorum */
    heal(&c);
    tick_all(&c, 1);
    assert_int_equal(node(&c, l)->n_reads, 2);
    raft_buf_unref(a);
    raft_buf_unref(b);
    cluster_free(&c);
}

/* In lease mode a member refuses votes for an election timeout after it
 * starts: it may have answered the old leader's heartbeat just before a
 * crash, and that leader may still serve reads from its lease. */
static void test_raft_lease_restarted_member_refuses_votes(void **state)
{
    struct cluster c;
    struct raft_message m;
    (void)state;
    cluster_init_cfg(&c, 3, 3, lease_reads);
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_VOTE;
    m.from = 2;
    m.to = 3;
    m.term = 5;
    m.index = 10;
    m.log_term = 4;
    assert_int_equal(raft_step(node(&c, 3)->r, &m), 0);
    assert_int_equal(status(&c, 3).hs.term, 1); /* ignored */
    tick(&c, 3, 9);
    assert_int_equal(raft_step(node(&c, 3)->r, &m), 0);
    assert_int_equal(status(&c, 3).hs.term, 1);
    tick(&c, 3, 1); /* an election timeout since the start: it votes */
    assert_int_equal(raft_step(node(&c, 3)->r, &m), 0);
    assert_int_equal(status(&c, 3).hs.term, 5);
    assert_int_equal(status(&c, 3).hs.vote, 2);
    drain(&c);
    cluster_free(&c);
}

/* ---- membership ---------------------------------------------------------- */

static void test_raft_learner_receives_log_but_never_counts(void **state)
{
    struct cluster c;
    int i;
    (void)state;
    cluster_init_cfg(&c, 3, 2, NULL); /* n3 is a spare */
    elect(&c, 1);
    propose_cc(&c, 1, RAFT_CONF_ADD_LEARNER_NODE, 3);
    tick_all(&c, 3);
    assert_true(has_learner(conf_of(&c, 1), 3));
    assert_true(has_learner(&node(&c, 3)->cs, 3));
    assert_int_equal(status(&c, 3).hs.commit, status(&c, 1).hs.commit);
    /* quorum is among voters: with n2 gone, n1 + learner n3 commit nothing */
    isolate(&c, 2);
    {
        uint64_t before = status(&c, 1).hs.commit;
        assert_int_equal(propose_u64(&c, 1, 1), 0);
        drain(&c);
        assert_int_equal(status(&c, 1).hs.commit, before);
        assert_int_equal(status(&c, 3).last_index, status(&c, 1).last_index);
    }
    /* a learner never campaigns */
    isolate(&c, 1);
    tick(&c, 3, 100);
    assert_int_equal(status(&c, 3).state, RAFT_FOLLOWER);
    heal(&c);
    tick_all(&c, 3);
    /* promotion: now it counts */
    propose_cc(&c, 1, RAFT_CONF_ADD_NODE, 3);
    tick_all(&c, 2);
    assert_true(has_voter(conf_of(&c, 3), 3));
    isolate(&c, 2);
    {
        uint64_t before = status(&c, 1).hs.commit;
        assert_int_equal(propose_u64(&c, 1, 2), 0);
        drain(&c);
        assert_true(status(&c, 1).hs.commit > before);
    }
    heal(&c);
    drain(&c);
    for (i = 1; i <= 3; i++) {
        assert_int_equal(status(&c, (uint64_t)i).conf.n_voters, 3);
    }
    cluster_free(&c);
}

static void test_raft_one_conf_change_at_a_time(void **state)
{
    struct cluster c;
    struct raft_conf_change a = {0, RAFT_CONF_ADD_LEARNER_NODE, 4, NULL};
    struct raft_conf_change b = {0, RAFT_CONF_ADD_LEARNER_NODE, 5, NULL};
    struct raft_conf_change bad = {0, 9, 5, NULL};
    (void)state;
    cluster_init_cfg(&c, 5, 3, NULL);
    elect(&c, 1);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &bad),
                     RAFT_EINVAL);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &a), 0);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &b), 0);
    drain(&c);
    tick_all(&c, 3);
    assert_true(has_learner(conf_of(&c, 1), 4));
    assert_false(has_learner(conf_of(&c, 1), 5)); /* became a no-op */
    cluster_free(&c);
}

static bool drop_app(const struct raft_message *m)
{
    return m->type == RAFT_MSG_APP;
}

/* A new leader appends no conf change before an entry of its own term is
 * committed (Ongaro's 2015 bug with single-server changes): until then a
 * proposed change becomes an empty entry. */
static void test_raft_conf_change_waits_for_own_term_commit(void **state)
{
    struct cluster c;
    struct raft_conf_change cc = {0, RAFT_CONF_ADD_LEARNER_NODE, 4, NULL};
    struct raft_entry e;
    uint64_t last;
    (void)state;
    cluster_init_cfg(&c, 4, 3, NULL);
    c.drop = drop_app; /* the no-op cannot commit */
    elect(&c, 1);
    assert_true(status(&c, 1).hs.commit < status(&c, 1).last_index);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &cc), 0);
    last = status(&c, 1).last_index;
    assert_int_equal(raft_log_entry(node(&c, 1)->r, last, &e), 0);
    assert_int_equal(e.type, RAFT_ENTRY_NORMAL);
    assert_null(e.data);
    c.drop = NULL;
    tick_all(&c, 2);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &cc), 0);
    drain(&c);
    assert_true(has_learner(conf_of(&c, 1), 4));
    cluster_free(&c);
}

static void test_raft_remove_follower(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    propose_cc(&c, 1, RAFT_CONF_REMOVE_NODE, 3);
    tick_all(&c, 2);
    assert_int_equal(status(&c, 1).conf.n_voters, 2);
    /* the two left commit without n3 */
    isolate(&c, 3);
    assert_int_equal(propose_u64(&c, 1, 8), 0);
    drain(&c);
    assert_int_equal(node(&c, 2)->applied_data[node(&c, 2)->n_applied_data - 1],
                     8);
    cluster_free(&c);
}

static void test_raft_removed_leader_hands_off(void **state)
{
    struct cluster c;
    int i;
    uint64_t lead = 0;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    propose_cc(&c, 1, RAFT_CONF_REMOVE_NODE, 1);
    tick_all(&c, 3);
    assert_int_equal(status(&c, 1).state, RAFT_FOLLOWER);
    for (i = 2; i <= 3; i++) {
        if (status(&c, (uint64_t)i).state == RAFT_LEADER) {
            lead = (uint64_t)i;
        }
    }
    assert_true(lead == 2 || lead == 3);
    assert_false(has_voter(conf_of(&c, lead), 1));
    /* n1 no longer hears from the cluster: it knows no leader */
    assert_int_equal(propose_u64(&c, 1, 1), RAFT_EPROPOSAL_DROPPED);
    assert_int_equal(propose_u64(&c, lead, 2), 0);
    drain(&c);
    assert_true(status(&c, 1).hs.commit < status(&c, lead).hs.commit);
    /* n1 is not a member: it never campaigns again */
    isolate(&c, lead);
    tick(&c, 1, 100);
    assert_int_equal(status(&c, 1).state, RAFT_FOLLOWER);
    heal(&c);
    cluster_free(&c);
}

/* A conf change entry that gets truncated is rolled back (append-time
 * configuration). */
static void test_raft_truncated_conf_change_rolls_back(void **state)
{
    struct cluster c;
    struct raft_conf_change cc = {0, RAFT_CONF_REMOVE_NODE, 3, NULL};
    uint64_t l;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 1);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &cc), 0);
    drain(&c);
    assert_int_equal(status(&c, 1).conf.n_voters, 2); /* in effect on n1 */
    crash(node(&c, 1));
    heal(&c);
    isolate(&c, 1);
    l = wait_leader(&c, 1);
    assert_int_equal(propose_u64(&c, l, 5), 0);
    drain(&c);
    node_start(node(&c, 1));
    assert_int_equal(status(&c, 1).conf.n_voters, 2); /* from its log */
    heal(&c);
    tick_all(&c, 3);
    assert_int_equal(status(&c, 1).conf.n_voters, 3); /* truncated: undone */
    assert_int_equal(status(&c, 1).lead, l);
    cluster_free(&c);
}

/* Regression (simulator seed 181 of an earlier version): a leader of two
 * voters appends its own removal, which reaches nobody, and restarts.
 * n2 still uses {1,2} and needs n1's vote, which n1 refuses (its log is
 * longer). n1 must be allowed to campaign under {2} and finish the change,
 * or the cluster is dead for ever. */
static void test_raft_uncommitted_self_removal_does_not_deadlock(void **state)
{
    struct cluster c;
    struct raft_conf_change cc = {0, RAFT_CONF_REMOVE_NODE, 1, NULL};
    uint64_t l;
    (void)state;
    cluster_init(&c, 2);
    elect(&c, 1);
    isolate(&c, 1);
    assert_int_equal(raft_propose_conf_change(node(&c, 1)->r, &cc), 0);
    drain(&c);
    assert_false(has_voter(conf_of(&c, 1), 1));
    crash(node(&c, 1));
    node_start(node(&c, 1));
    heal(&c);
    l = wait_leader(&c, 0);
    tick_all(&c, 30);
    /* the change committed and n2 leads the one-member cluster */
    assert_int_equal(status(&c, 2).state, RAFT_LEADER);
    assert_int_equal(status(&c, 2).conf.n_voters, 1);
    assert_true(has_voter(conf_of(&c, 2), 2));
    assert_true(status(&c, 2).hs.commit >= status(&c, 2).conf_index);
    assert_int_equal(propose_u64(&c, 2, 11), 0);
    drain(&c);
    assert_int_equal(node(&c, 2)->applied_data[node(&c, 2)->n_applied_data - 1],
                     11);
    (void)l;
    cluster_free(&c);
}

/* A learner asked for its vote grants it: the candidate's (newer)
 * configuration may already list it as a voter (etcd PR #10998). */
static void test_raft_learner_votes_when_asked(void **state)
{
    struct cluster c;
    struct raft_message m;
    (void)state;
    cluster_init_cfg(&c, 3, 2, NULL);
    elect(&c, 1);
    propose_cc(&c, 1, RAFT_CONF_ADD_LEARNER_NODE, 3);
    isolate(&c, 1);
    tick(&c, 3, 10); /* the lease expires */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_VOTE;
    m.from = 2;
    m.to = 3;
    m.term = status(&c, 3).hs.term + 1;
    m.index = status(&c, 3).last_index;
    m.log_term = status(&c, 3).hs.term;
    c.hold = true;
    assert_int_equal(raft_step(node(&c, 3)->r, &m), 0);
    process(&c, node(&c, 3));
    assert_int_equal(c.nq, 1);
    assert_int_equal(c.q[0].type, RAFT_MSG_VOTE_RESP);
    assert_false(c.q[0].reject);
    assert_int_equal(status(&c, 3).hs.vote, 2);
    c.hold = false;
    heal(&c);
    drain(&c);
    cluster_free(&c);
}

/* ---- leadership transfer ------------------------------------------------- */

static void test_raft_transfer_leader(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    assert_int_equal(raft_transfer_leader(node(&c, 1)->r, 3), 0);
    drain(&c);
    assert_int_equal(status(&c, 3).state, RAFT_LEADER);
    assert_int_equal(status(&c, 1).state, RAFT_FOLLOWER);
    assert_int_equal(status(&c, 1).lead, 3);
    /* asked on a follower: forwarded to the leader */
    assert_int_equal(raft_transfer_leader(node(&c, 2)->r, 2), 0);
    drain(&c);
    assert_int_equal(status(&c, 2).state, RAFT_LEADER);
    cluster_free(&c);
}

static void test_raft_transfer_blocks_proposals_and_times_out(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init(&c, 3);
    elect(&c, 1);
    isolate(&c, 3);
    assert_int_equal(propose_u64(&c, 1, 1), 0); /* n3 falls behind */
    drain(&c);
    assert_int_equal(raft_transfer_leader(node(&c, 1)->r, 3), 0);
    drain(&c);
    assert_int_equal(status(&c, 1).lead_transferee, 3);
    assert_int_equal(propose_u64(&c, 1, 2), RAFT_EPROPOSAL_DROPPED);
    tick(&c, 1, 10); /* an election timeout: abandoned */
    assert_int_equal(status(&c, 1).lead_transferee, 0);
    assert_int_equal(status(&c, 1).state, RAFT_LEADER);
    heal(&c);
    drain(&c);
    assert_int_equal(propose_u64(&c, 1, 3), 0);
    drain(&c);
    cluster_free(&c);
}

static void test_raft_transfer_to_learner_ignored(void **state)
{
    struct cluster c;
    (void)state;
    cluster_init_cfg(&c, 3, 2, NULL);
    elect(&c, 1);
    propose_cc(&c, 1, RAFT_CONF_ADD_LEARNER_NODE, 3);
    assert_int_equal(raft_transfer_leader(node(&c, 1)->r, 3), 0);
    drain(&c);
    assert_int_equal(status(&c, 1).lead_transferee, 0);
    assert_int_equal(status(&c, 1).state, RAFT_LEADER);
    cluster_free(&c);
}

/* Malformed messages from a peer are refused, never asserted on. */
static void test_raft_rejects_malformed_messages(void **state)
{
    struct cluster c;
    struct raft_message m;
    struct raft_entry es[2] = {{2, 5, RAFT_ENTRY_NORMAL, NULL},
                               {2, 7, RAFT_ENTRY_NORMAL, NULL}};
    struct raft_snapshot snap;
    (void)state;
    cluster_init(&c, 3);
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_APP;
    m.from = 2;
    m.term = 2;
    m.index = 4;
    m.log_term = 1;
    m.entries = es;
    m.n_entries = 2; /* 5 then 7: a gap */
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    es[1].index = 6;
    es[1].term = 1; /* terms going back */
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    es[1].term = 3; /* beyond the message's term */
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    es[1].term = 2;
    es[1].type = 7;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    es[1].type = RAFT_ENTRY_NORMAL;
    m.entries = NULL;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    m.entries = es;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), 0); /* now well formed */
    m.type = RAFT_MSG_SNAP;
    m.n_entries = 0;
    m.snapshot = NULL;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL);
    memset(&snap, 0, sizeof(snap));
    m.snapshot = &snap;
    assert_int_equal(raft_step(node(&c, 1)->r, &m), RAFT_EINVAL); /* index 0 */
    drain(&c);
    cluster_free(&c);
}

static uint64_t fz_next(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random messages, well formed or not, to members in every role: raft
 * answers or refuses, never crashes, leaks or corrupts its log (run under
 * ASan + UBSan in make test). */
static void test_raft_random_messages(void **state)
{
    uint64_t x = 88172645463325252ULL;
    int round, k;
    (void)state;
    for (round = 0; round < 12; round++) {
        struct cluster c;
        cluster_init(&c, 3);
        if (round % 3 == 1) {
            elect(&c, 1);
        } else if (round % 3 == 2) {
            isolate(&c, 1);
            assert_int_equal(raft_campaign(node(&c, 1)->r), 0);
            drain(&c);
        }
        isolate(&c, 1); /* n1's answers go nowhere */
        for (k = 0; k < 2000; k++) {
            struct raft_message m;
            struct raft_entry es[3];
            struct raft_snapshot snap;
            size_t i;
            memset(&m, 0, sizeof(m));
            m.type = (int)(fz_next(&x) % (RAFT_MSG_TYPE_COUNT + 1));
            m.from = 2 + fz_next(&x) % 4; /* 2, 3, or unknown 4, 5 */
            m.to = 1;
            m.term = fz_next(&x) % 6;
            m.index = fz_next(&x) % 12;
            m.log_term = fz_next(&x) % 6;
            m.commit = fz_next(&x) % 14;
            m.reject = fz_next(&x) % 2;
            m.reject_hint = fz_next(&x) % 12;
            m.n_entries = fz_next(&x) % 4;
            for (i = 0; i < m.n_entries; i++) {
                es[i].index =
                    fz_next(&x) % 4 == 0 ? fz_next(&x) % 14 : m.index + 1 + i;
                es[i].term = m.log_term + fz_next(&x) % 2;
                es[i].type = (int)(fz_next(&x) % 3);
                es[i].data = NULL;
            }
            m.entries = m.n_entries > 0 ? es : NULL;
            if (fz_next(&x) % 4 == 0) {
                memset(&snap, 0, sizeof(snap));
                snap.meta.index = fz_next(&x) % 14;
                snap.meta.term = fz_next(&x) % 6;
                snap.meta.conf_state.n_voters = 1 + fz_next(&x) % 3;
                for (i = 0; i < snap.meta.conf_state.n_voters; i++) {
                    snap.meta.conf_state.voters[i] = 1 + i;
                }
                m.snapshot = &snap;
            }
            raft_step(node(&c, 1)->r, &m);
            if (k % 7 == 0) {
                raft_tick(node(&c, 1)->r);
            }
            process(&c, node(&c, 1));
        }
        {
            struct raft_status st = status(&c, 1);
            assert_true(st.hs.commit <= st.last_index);
            assert_true(st.applied <= st.hs.commit);
        }
        heal(&c);
        drain(&c);
        cluster_free(&c);
    }
}

static int reset_allocs(void **state)
{
    (void)state;
    live_allocs = 0; /* a failed test must not fail the next ones */
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_raft_config_rejected, reset_allocs),
        cmocka_unit_test_setup(test_raft_new_propagates_failures, reset_allocs),
        cmocka_unit_test_setup(test_raft_step_errors, reset_allocs),
        cmocka_unit_test_setup(test_raft_conf_change_codec, reset_allocs),
        cmocka_unit_test_setup(test_raft_conf_state_apply, reset_allocs),
        cmocka_unit_test_setup(test_raft_memstore_errors, reset_allocs),
        cmocka_unit_test_setup(test_raft_single_node_commits_after_persist,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_election_and_noop, reset_allocs),
        cmocka_unit_test_setup(test_raft_election_by_timeout, reset_allocs),
        cmocka_unit_test_setup(test_raft_ready_splits_messages, reset_allocs),
        cmocka_unit_test_setup(test_raft_follower_forwards_batch_before_persist,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_ignores_disruptive_vote, reset_allocs),
        cmocka_unit_test_setup(test_raft_pre_vote_no_disruption, reset_allocs),
        cmocka_unit_test_setup(test_raft_without_pre_vote_term_grows,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_check_quorum_steps_down, reset_allocs),
        cmocka_unit_test_setup(test_raft_stale_leader_steps_down, reset_allocs),
        cmocka_unit_test_setup(test_raft_replicates_and_applies, reset_allocs),
        cmocka_unit_test_setup(test_raft_no_commit_of_old_term_by_counting,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_duplicate_append_does_not_truncate,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_conflicting_log_fast_backoff,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_flow_control, reset_allocs),
        cmocka_unit_test_setup(test_raft_probe_after_unreachable, reset_allocs),
        cmocka_unit_test_setup(test_raft_heartbeat_recovers_from_probe,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_uncommitted_limit, reset_allocs),
        cmocka_unit_test_setup(test_raft_restart_from_storage, reset_allocs),
        cmocka_unit_test_setup(test_raft_snapshot_to_lagging_follower,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_snapshot_failure_reprobes,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_restart_applied_defaults_to_snapshot,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_read_index_needs_heartbeat_quorum,
                               reset_allocs),
        cmocka_unit_test_setup(
            test_raft_read_index_waits_for_current_term_commit, reset_allocs),
        cmocka_unit_test_setup(test_raft_lease_read_is_immediate, reset_allocs),
        cmocka_unit_test_setup(test_raft_lease_restarted_member_refuses_votes,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_learner_receives_log_but_never_counts,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_one_conf_change_at_a_time,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_conf_change_waits_for_own_term_commit,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_remove_follower, reset_allocs),
        cmocka_unit_test_setup(test_raft_removed_leader_hands_off,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_truncated_conf_change_rolls_back,
                               reset_allocs),
        cmocka_unit_test_setup(
            test_raft_uncommitted_self_removal_does_not_deadlock, reset_allocs),
        cmocka_unit_test_setup(test_raft_learner_votes_when_asked,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_transfer_leader, reset_allocs),
        cmocka_unit_test_setup(test_raft_rejects_malformed_messages,
                               reset_allocs),
        cmocka_unit_test_setup(test_raft_random_messages, reset_allocs),
        cmocka_unit_test_setup(
            test_raft_transfer_blocks_proposals_and_times_out, reset_allocs),
        cmocka_unit_test_setup(test_raft_transfer_to_learner_ignored,
                               reset_allocs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
