/*
 * server/node.c: drives raft/ with storage/ underneath (see node.h).
 *
 * The Ready cycle, one at a time (n->busy guards it):
 *
 *   process_ready ──▶ send rd->msgs (leader traffic, before our fsync)
 *        │
 *        ├─ something to persist? ──▶ uv_queue_work: wal_append + fdatasync
 *        │                                     │
 *        └─────────────────────────────────────┴──▶ after_persist:
 *              memstore += entries, hard state
 *              send rd->msgs_after_persist
 *              apply rd->committed in one MVCC batch (consistent_index in
 *              the same LMDB txn), then events to watchers, then answers
 *              to the waiting proposers
 *              read states -> reads wait for applied >= index
 *              raft_advance; process_ready again
 *
 * Suspended in: the thread-pool work (busy, persist job pending). Nothing
 * else waits.
 *
 * The raft storage is a raft_memstore holding the entries since the last
 * snapshot (as etcd's MemoryStorage); the WAL is its durable copy. At open
 * the WAL is replayed into the memstore, and raft re-delivers every committed
 * entry: the MVCC store skips those at or below its consistent_index, while
 * conf changes are always re-applied to raft (it learns its configuration
 * that way, as etcd does at restart).
 */
#include "node.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel_err.h"
#include "log.h"
#include "metrics.h"
#include "mvcc.h"
#include "raft.h"
#include "raft_codec.h"
#include "wal.h"

#define NODE_WAITER_BUCKETS 1024
#define NODE_MAX_ALARMS 64

struct waiter
{
    uint64_t id;
    node_propose_cb cb;
    void *arg;
    struct keel_arena *arena;
    struct waiter *next;
};

/* A proposal waiting for a leader (etcd blocks proposals until there is
 * one, up to the request timeout). */
struct pending
{
    struct raft_buf *buf;
    struct waiter *w;
    uint64_t deadline_ms;
    struct pending *next;
};

struct read_waiter
{
    node_read_cb cb;
    void *arg;
    uint64_t index; /* valid once the batch got its read state */
    struct read_waiter *next;
};

/* One read-index round: all reads queued when it was issued. */
struct read_batch
{
    uint64_t ctx;
    struct read_waiter *head;
    struct read_batch *next;
};

struct persist_job
{
    uv_work_t work;
    struct node *n;
    struct raft_ready *rd;
    struct wal_entry *ents;
    bool sync; /* false: commit-only hard state, written without fdatasync */
    int rv;
};

struct node
{
    uv_loop_t *loop;
    struct node_options opts;
    char *data_dir;
    struct raft *raft;
    struct raft_memstore *ms;
    struct raft_storage rs;
    struct wal *wal;
    struct mvcc_store *mvcc;
    uv_timer_t tick;
    uv_idle_t kick; /* runs process_ready once per loop iteration when set */
    bool kick_active;
    bool busy;    /* a Ready is between raft_ready and raft_advance */
    bool closing;
    void (*close_cb)(void *);
    void *close_arg;
    int handles_open;
    uint64_t next_id;
    uint64_t applied;
    uint64_t commit;
    struct waiter *waiters[NODE_WAITER_BUCKETS];
    struct read_waiter *reads_queued; /* not yet in a round */
    struct read_waiter **reads_queued_tail;
    struct read_batch *batches;       /* issued rounds, oldest first */
    struct read_waiter *reads_ready;  /* have an index; wait for apply */
    uint64_t next_read_ctx;
    int64_t last_event_rev; /* revision of the last events handed out */
    struct pending *pending; /* FIFO: head */
    struct pending **pending_tail;
    bool single_voter;       /* campaign as soon as the config is known */
    bool compact_pending;    /* physical compaction to continue on ticks */
    struct keel_arena scratch; /* apply of entries nobody here waits for */
    uint64_t promoted_term;    /* on_leader(true) told for this term; 0 */
    uint64_t seen_lead;        /* leader last seen, for /metrics */
    /* Alarms (node_alarms), as applied; mirrored in the alarm table. */
    struct node_alarm alarms[NODE_MAX_ALARMS];
    size_t n_alarms;
    int64_t quota;          /* bytes; 0 = none */
    bool nospace_proposed;  /* an activation is on its way through raft */
    bool raise_nospace;     /* apply found a write over the quota */
    int holds;              /* node_hold: worker threads reading the store */
    bool paused;            /* node_pause: no Ready cycles */
    node_pause_cb pause_cb; /* to run once no Ready is in flight */
    void *pause_arg;
};

/* An always-on invariant check (CONVENTIONS 9.3 KEEL_CHECK): log, abort. */
#define KEEL_NODE_CHECK(cond, ...)                 \
    do {                                           \
        if (!(cond)) {                             \
            log_error("etcdserver", __VA_ARGS__);  \
            abort();                               \
        }                                          \
    } while (0)

static void fatal(const char *what, int rv, const char *detail)
{
    log_error("etcdserver", "%s: %s%s%s", what, keel_strerror(rv),
              detail && *detail ? ": " : "", detail ? detail : "");
    abort();
}

/* ---- waiters ------------------------------------------------------------ */

static struct waiter **waiter_slot(struct node *n, uint64_t id)
{
    struct waiter **pp = &n->waiters[id % NODE_WAITER_BUCKETS];
    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    return pp;
}

static struct waiter *waiter_take(struct node *n, uint64_t id)
{
    struct waiter **pp = waiter_slot(n, id);
    struct waiter *w = *pp;
    if (w != NULL) {
        *pp = w->next;
    }
    return w;
}

static void kick(struct node *n);

/* ---- raft buffers ------------------------------------------------------- */

static int entry_from_wal(const struct wal_entry *we, struct raft_entry *re)
{
    re->term = we->term;
    re->index = we->index;
    re->type = (int)we->type;
    re->data = NULL;
    if (we->len > 0) {
        re->data = raft_buf_new(raft_heap_default(), we->data, we->len);
        if (re->data == NULL) {
            return KEEL_ENOMEM;
        }
    }
    return 0;
}

/* ---- open --------------------------------------------------------------- */

/* A new cluster's log: one AddNode conf change per initial voter at indexes
 * 1..n, term 1, committed (every member writes the same entries, so the
 * logs agree; etcd bootstraps the same way). */
static int bootstrap_log(struct node *n, char *errmsg, size_t errlen)
{
    size_t nv = n->opts.n_voters;
    const uint64_t self = n->opts.member_id;
    const uint64_t *voters = nv > 0 ? n->opts.voters : &self;
    if (nv == 0) {
        nv = 1;
    }
    struct wal_entry *ents = calloc(nv, sizeof *ents);
    struct raft_buf **bufs = calloc(nv, sizeof *bufs);
    int rv = 0;
    if (ents == NULL || bufs == NULL) {
        rv = KEEL_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nv; i++) {
        struct raft_conf_change cc = {.id = 0,
                                      .type = RAFT_CONF_ADD_NODE,
                                      .node_id = voters[i],
                                      .context = NULL};
        bufs[i] = raft_conf_change_encode(raft_heap_default(), &cc);
        if (bufs[i] == NULL) {
            rv = KEEL_ENOMEM;
            goto out;
        }
        ents[i].index = i + 1;
        ents[i].term = 1;
        ents[i].type = RAFT_ENTRY_CONF_CHANGE;
        ents[i].data = bufs[i]->data;
        ents[i].len = bufs[i]->len;
    }
    struct wal_hard_state hs = {.term = 1, .vote = 0, .commit = nv};
    rv = wal_append(n->wal, ents, nv, &hs);
    if (rv != 0) {
        snprintf(errmsg, errlen, "bootstrap: write initial log: %s",
                 wal_errmsg(n->wal));
    }
out:
    if (bufs != NULL) {
        for (size_t i = 0; i < nv; i++) {
            raft_buf_unref(bufs[i]);
        }
    }
    free(bufs);
    free(ents);
    return rv;
}

/* Replay the WAL into the memstore. */
static int load_log(struct node *n, char *errmsg, size_t errlen)
{
    struct wal_snapshot snap = wal_snapshot(n->wal);
    if (snap.index != 0) {
        snprintf(errmsg, errlen,
                 "WAL starts at snapshot index %" PRIu64
                 ": restoring from a raft snapshot is not supported yet",
                 snap.index);
        return KEEL_EUNIMPLEMENTED;
    }
    uint64_t lo = wal_first_index(n->wal);
    uint64_t last = wal_last_index(n->wal);
    while (lo <= last) {
        struct wal_entries es;
        int rv = wal_read(n->wal, lo, last + 1, 16u << 20, &es);
        if (rv != 0) {
            snprintf(errmsg, errlen, "read WAL: %s", wal_errmsg(n->wal));
            wal_entries_free(&es);
            return rv;
        }
        struct raft_entry *re = calloc(es.n, sizeof *re);
        if (re == NULL) {
            wal_entries_free(&es);
            return KEEL_ENOMEM;
        }
        for (size_t i = 0; i < es.n && rv == 0; i++) {
            rv = entry_from_wal(&es.v[i], &re[i]);
        }
        if (rv == 0) {
            rv = raft_memstore_append(n->ms, re, es.n);
        }
        for (size_t i = 0; i < es.n; i++) {
            raft_buf_unref(re[i].data);
        }
        free(re);
        lo += es.n;
        wal_entries_free(&es);
        if (rv != 0) {
            snprintf(errmsg, errlen, "load WAL into raft log: %s",
                     raft_strerror(rv));
            return KEEL_ECORRUPT;
        }
    }
    struct wal_hard_state whs = wal_hard_state(n->wal);
    struct raft_hard_state hs = {
        .term = whs.term, .vote = whs.vote, .commit = whs.commit};
    int rv = raft_memstore_set_hard_state(n->ms, &hs);
    if (rv != 0) {
        snprintf(errmsg, errlen, "load hard state: %s", raft_strerror(rv));
        return KEEL_ECORRUPT;
    }
    n->commit = whs.commit;
    return 0;
}

static void on_tick(uv_timer_t *t);
static void on_kick(uv_idle_t *h);

/* Alarm table: key = the packed etcdserverpb.AlarmMember (etcd's alarm
 * bucket layout, etcdserver/api/v3alarm/alarms.go), empty value. */
static int load_alarm(void *arg, const void *key, size_t klen,
                      const void *val, size_t vlen)
{
    (void)val;
    (void)vlen;
    struct node *n = arg;
    Etcdserverpb__AlarmMember *m =
        etcdserverpb__alarm_member__unpack(NULL, klen, key);
    if (m == NULL) {
        return KEEL_ECORRUPT;
    }
    if (n->n_alarms < NODE_MAX_ALARMS) {
        n->alarms[n->n_alarms].member_id = m->memberid;
        n->alarms[n->n_alarms].alarm = (int)m->alarm;
        n->n_alarms++;
    }
    etcdserverpb__alarm_member__free_unpacked(m, NULL);
    return 0;
}

int node_open(uv_loop_t *loop, const struct node_options *opts,
              struct node **out, char *errmsg, size_t errlen)
{
    char path[4096];
    int rv;
    if (opts->member_id == 0 || opts->data_dir == NULL) {
        snprintf(errmsg, errlen, "node: member id and data dir are required");
        return KEEL_EINVAL;
    }
    struct node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return KEEL_ENOMEM;
    }
    n->loop = loop;
    n->opts = *opts;
    n->data_dir = strdup(opts->data_dir);
    if (n->data_dir == NULL) {
        rv = KEEL_ENOMEM;
        goto err_node;
    }
    n->opts.data_dir = n->data_dir;
    n->opts.voters = NULL; /* only used during open */
    n->reads_queued_tail = &n->reads_queued;
    n->pending_tail = &n->pending;
    keel_arena_init(&n->scratch, 0);
    if (n->opts.heartbeat_ms == 0) {
        n->opts.heartbeat_ms = 100;
    }
    if (n->opts.election_ms < 2 * n->opts.heartbeat_ms) {
        n->opts.election_ms = 10 * n->opts.heartbeat_ms;
    }

    struct wal_options wo = {.segment_size = opts->wal_segment_size};
    rv = wal_open(n->data_dir, &wo, &n->wal, errmsg, errlen);
    if (rv != 0) {
        goto err_node;
    }
    if (wal_last_index(n->wal) == 0 && wal_hard_state(n->wal).term == 0) {
        struct node_options o = *opts;
        n->opts.voters = o.voters;
        rv = bootstrap_log(n, errmsg, errlen);
        n->opts.voters = NULL;
        if (rv != 0) {
            goto err_wal;
        }
    }
    n->ms = raft_memstore_new(raft_heap_default());
    if (n->ms == NULL) {
        rv = KEEL_ENOMEM;
        goto err_wal;
    }
    raft_memstore_storage(n->ms, &n->rs);
    rv = load_log(n, errmsg, errlen);
    if (rv != 0) {
        goto err_ms;
    }

    snprintf(path, sizeof path, "%s/member/snap/db", n->data_dir);
    struct mvcc_options mo = {.map_size = opts->map_size};
    rv = mvcc_open(path, &mo, &n->mvcc, errmsg, errlen);
    if (rv != 0) {
        goto err_ms;
    }
    n->applied = 0;
    n->compact_pending = true; /* resume a compaction a crash interrupted */
    rv = mvcc_table_foreach(n->mvcc, NULL, MVCC_TABLE_ALARM, load_alarm, n);
    if (rv != 0) {
        snprintf(errmsg, errlen, "load alarms: %s", mvcc_errmsg(n->mvcc));
        goto err_mvcc;
    }

    struct raft_config rc;
    raft_config_default(&rc);
    rc.id = opts->member_id;
    rc.heartbeat_tick = 1;
    rc.election_tick = (int)(n->opts.election_ms / n->opts.heartbeat_ms);
    rc.storage = &n->rs;
    rc.rand_seed = opts->member_id ^ (uint64_t)time(NULL);
    rc.pre_vote = true;
    rc.check_quorum = true;
    rv = raft_new(&rc, &n->raft);
    if (rv != 0) {
        snprintf(errmsg, errlen, "start raft: %s", raft_strerror(rv));
        rv = KEEL_EINVAL;
        goto err_mvcc;
    }

    /* Request ids: member id in the top 16 bits, then a time-based counter,
     * so ids stay unique across restarts (etcd: pkg/idutil). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms_now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    n->next_id = ((opts->member_id & 0xffff) << 48) |
                 ((ms_now & 0xffffffffffULL) << 8);
    n->next_read_ctx = 1;

    uv_timer_init(loop, &n->tick);
    n->tick.data = n;
    uv_idle_init(loop, &n->kick);
    n->kick.data = n;
    n->handles_open = 2;
    uv_timer_start(&n->tick, on_tick, n->opts.heartbeat_ms,
                   n->opts.heartbeat_ms);

    /* A single voter need not wait an election timeout to lead: it
     * campaigns once it has applied its configuration (maybe_campaign). */
    size_t nv = opts->n_voters;
    n->single_voter =
        nv == 0 || (nv == 1 && opts->voters[0] == opts->member_id);
    kick(n);
    *out = n;
    return 0;

err_mvcc:
    mvcc_close(n->mvcc);
err_ms:
    raft_memstore_free(n->ms);
err_wal:
    wal_close(n->wal);
err_node:
    free(n->data_dir);
    keel_arena_free(&n->scratch);
    free(n);
    return rv;
}

/* ---- the Ready cycle ---------------------------------------------------- */

static void process_ready(struct node *n);

static void kick(struct node *n)
{
    if (!n->kick_active && !n->closing) {
        n->kick_active = true;
        uv_idle_start(&n->kick, on_kick);
    }
}

static void on_kick(uv_idle_t *h)
{
    struct node *n = h->data;
    n->kick_active = false;
    uv_idle_stop(h);
    process_ready(n);
}

static uint64_t request_timeout_ms(const struct node *n)
{
    /* etcd: ReqTimeout = 5s + 2 * election timeout (etcdserver/config.go) */
    return 5000 + 2 * (uint64_t)n->opts.election_ms;
}

static void propose_pending(struct node *n);
static void leader_check(struct node *n);

static void on_tick(uv_timer_t *t)
{
    struct node *n = t->data;
    raft_tick(n->raft);
    propose_pending(n);
    /* Proposals still waiting for a leader past the request timeout fail
     * as etcd's do. */
    uint64_t now = uv_now(n->loop);
    struct pending **pp = &n->pending;
    while (*pp != NULL) {
        struct pending *p = *pp;
        if (p->deadline_ms > now) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        raft_buf_unref(p->buf);
        metrics_core.proposals_pending--;
        metrics_core.proposals_failed++;
        p->w->cb(p->w->arg, KEEL_ETIMEOUT, NULL);
        free(p->w);
        free(p);
    }
    n->pending_tail = pp;
    /* Physical compaction runs in bounded steps between Ready cycles, off
     * the apply path (etcd: --experimental-compaction-batch-limit 1000). */
    if (n->compact_pending && !n->busy && !n->paused) {
        int done = 0;
        int rv = mvcc_compact_step(n->mvcc, 1000, &done);
        if (rv != 0) {
            log_error("mvcc", "compaction step: %s", mvcc_errmsg(n->mvcc));
            done = 1;
        }
        n->compact_pending = !done;
    }
    leader_check(n);
    process_ready(n);
}

static void persist_work(uv_work_t *w)
{
    struct persist_job *j = w->data;
    struct raft_ready *rd = j->rd;
    struct wal_hard_state hs = {.term = rd->hard_state.term,
                                .vote = rd->hard_state.vote,
                                .commit = rd->hard_state.commit};
    double t0 = metrics_now();
    j->rv = (j->sync ? wal_append : wal_write)(
        j->n->wal, j->ents, rd->n_entries, rd->has_hard_state ? &hs : NULL);
    if (j->sync) {
        metrics_histogram_observe(&metrics_core.wal_fsync,
                                  metrics_now() - t0);
    }
}

static void after_persist(struct node *n, struct raft_ready *rd);

static void persist_done(uv_work_t *w, int status)
{
    struct persist_job *j = w->data;
    struct node *n = j->n;
    struct raft_ready *rd = j->rd;
    if (status != 0 || j->rv != 0) {
        fatal("failed to save Raft hard state and entries",
              status != 0 ? status : j->rv, wal_errmsg(n->wal));
    }
    free(j->ents);
    free(j);
    after_persist(n, rd);
}

static void apply_committed(struct node *n, struct raft_ready *rd);
static void serve_reads(struct node *n);
static void finish_close(struct node *n);

/* node_pause: the barrier is reached once no Ready is in flight. */
static void fire_pause(struct node *n)
{
    if (n->paused && !n->busy && n->pause_cb != NULL) {
        node_pause_cb cb = n->pause_cb;
        n->pause_cb = NULL;
        cb(n->pause_arg);
    }
}

static void process_ready(struct node *n)
{
    if (n->paused) {
        fire_pause(n);
        return;
    }
    if (n->busy || n->raft == NULL || !raft_has_ready(n->raft)) {
        return;
    }
    struct raft_ready *rd = raft_ready(n->raft);
    if (rd == NULL) {
        fatal("raft ready", KEEL_ENOMEM, NULL);
    }
    n->busy = true;
    /* rd->msgs: leader traffic may leave before our own fsync. A single
     * member has no peers; the peer transport (issue 5) sends them. */
    if (rd->n_entries == 0 && !rd->has_hard_state) {
        after_persist(n, rd);
        return;
    }
    struct persist_job *j = calloc(1, sizeof *j);
    struct wal_entry *ents =
        rd->n_entries ? calloc(rd->n_entries, sizeof *ents) : NULL;
    if (j == NULL || (rd->n_entries && ents == NULL)) {
        fatal("persist", KEEL_ENOMEM, NULL);
    }
    for (size_t i = 0; i < rd->n_entries; i++) {
        const struct raft_entry *e = &rd->entries[i];
        ents[i].index = e->index;
        ents[i].term = e->term;
        ents[i].type = (uint32_t)e->type;
        ents[i].data = e->data ? e->data->data : NULL;
        ents[i].len = e->data ? e->data->len : 0;
    }
    j->n = n;
    j->rd = rd;
    j->ents = ents;
    /* etcd's MustSync: only new entries or a new term/vote need the
     * fdatasync before raft may act on them. A commit index alone does not:
     * a lost commit is re-learned from the leader (or, on a single member,
     * re-committed after the restart's election), and entries above
     * consistent_index are re-applied idempotently. Without this a
     * sequential put paid two fdatasyncs (its entries, then its commit). */
    struct wal_hard_state last = wal_hard_state(n->wal);
    j->sync = rd->n_entries > 0 ||
              (rd->has_hard_state && (rd->hard_state.term != last.term ||
                                      rd->hard_state.vote != last.vote));
    j->work.data = j;
    if (!j->sync) {
        /* A buffered write of one small record: cheaper inline than two
         * thread hops (the WAL is ours: no append is in flight, busy was
         * false). */
        persist_work(&j->work);
        persist_done(&j->work, 0);
        return;
    }
    int rv = uv_queue_work(n->loop, &j->work, persist_work, persist_done);
    if (rv != 0) {
        fatal("queue WAL append", rv, NULL);
    }
}

static void maybe_campaign(struct node *n)
{
    if (!n->single_voter) {
        return;
    }
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.state == RAFT_LEADER) {
        n->single_voter = false;
        return;
    }
    if (st.conf.n_voters == 1 && st.conf.voters[0] == n->opts.member_id &&
        st.state != RAFT_CANDIDATE && st.state != RAFT_PRE_CANDIDATE) {
        raft_campaign(n->raft);
        n->single_voter = false;
    }
}

static void propose_nospace(struct node *n);

static void after_persist(struct node *n, struct raft_ready *rd)
{
    if (rd->n_entries > 0) {
        int rv = raft_memstore_append(n->ms, rd->entries, rd->n_entries);
        if (rv != 0) {
            fatal("append to raft log", KEEL_EIO, raft_strerror(rv));
        }
    }
    if (rd->has_hard_state) {
        raft_memstore_set_hard_state(n->ms, &rd->hard_state);
        n->commit = rd->hard_state.commit;
    }
    /* rd->msgs_after_persist would go to peers here (issue 5). */
    if (rd->n_committed > 0) {
        apply_committed(n, rd);
    }
    for (size_t i = 0; i < rd->n_read_states; i++) {
        const struct raft_read_state *rs = &rd->read_states[i];
        uint64_t ctx = 0;
        if (rs->context != NULL && rs->context->len == sizeof ctx) {
            memcpy(&ctx, rs->context->data, sizeof ctx);
        }
        /* Rounds are answered in order; a round whose ctx is older than the
         * answered one was dropped by raft and is re-issued below. */
        struct read_batch **pp = &n->batches;
        while (*pp != NULL) {
            struct read_batch *b = *pp;
            if (b->ctx != ctx) {
                pp = &b->next;
                continue;
            }
            *pp = b->next;
            struct read_waiter *r = b->head;
            while (r != NULL) {
                struct read_waiter *next = r->next;
                r->index = rs->index;
                r->next = n->reads_ready;
                n->reads_ready = r;
                r = next;
            }
            free(b);
            break;
        }
    }
    raft_advance(n->raft, rd);
    if (n->raise_nospace) {
        n->raise_nospace = false;
        propose_nospace(n);
    }
    n->busy = false;
    leader_check(n);
    maybe_campaign(n);
    propose_pending(n);
    serve_reads(n);
    if (n->closing) {
        fire_pause(n);
        if (n->holds == 0) {
            finish_close(n);
        }
        return;
    }
    process_ready(n);
}

/* ---- alarms and quota ---------------------------------------------------- */

static bool alarm_active(const struct node *n, int type)
{
    for (size_t i = 0; i < n->n_alarms; i++) {
        if (n->alarms[i].alarm == type) {
            return true;
        }
    }
    return false;
}

/* etcd: backendQuota.Cost (etcdserver/quota.go): kvOverhead = 256,
 * leaseOverhead = 64; a txn costs its larger branch's puts. */
static size_t put_cost(const Etcdserverpb__PutRequest *p)
{
    return 256 + p->key.len + p->value.len;
}

static size_t txn_cost(const Etcdserverpb__TxnRequest *t)
{
    size_t ok = 0, fail = 0;
    for (size_t i = 0; i < t->n_success; i++) {
        if (t->success[i]->request_case ==
            ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) {
            ok += put_cost(t->success[i]->request_put);
        }
    }
    for (size_t i = 0; i < t->n_failure; i++) {
        if (t->failure[i]->request_case ==
            ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT) {
            fail += put_cost(t->failure[i]->request_put);
        }
    }
    return fail > ok ? fail : ok;
}

static size_t request_cost(const Keelpb__Request *req)
{
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_PUT:
            return put_cost(req->put);
        case KEELPB__REQUEST__OP_TXN:
            return txn_cost(req->txn);
        case KEELPB__REQUEST__OP_LEASE_GRANT:
            return 64;
        default:
            return 0;
    }
}

size_t node_alarms(struct node *n, struct node_alarm *out, size_t max)
{
    for (size_t i = 0; i < n->n_alarms && i < max; i++) {
        out[i] = n->alarms[i];
    }
    return n->n_alarms;
}

void node_set_quota(struct node *n, int64_t bytes)
{
    n->quota = bytes > 0 ? bytes : 0;
    /* The quota must trip before LMDB's map is full: MDB_MAP_FULL in the
     * middle of an apply batch is a storage error (fatal), while the quota
     * refuses writes at propose time. Keep the map at 1.5x the quota plus
     * room for a few batches. */
    size_t map = n->opts.map_size ? n->opts.map_size : MVCC_DEFAULT_MAP_SIZE;
    size_t want = (size_t)n->quota + (size_t)n->quota / 2 + ((size_t)64 << 20);
    if (n->quota > 0 && want > map && !n->busy) {
        int rv = mvcc_set_map_size(n->mvcc, want);
        if (rv != 0) {
            log_warn("etcdserver", "grow the LMDB map for the quota: %s",
                     mvcc_errmsg(n->mvcc));
        } else {
            n->opts.map_size = want;
        }
    }
}

static void nospace_proposed_cb(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)resp;
    struct keel_arena *a = arg;
    if (rv != 0 && rv != KEEL_ESTOPPED) {
        log_error("etcdserver", "raise NOSPACE alarm: %s", keel_strerror(rv));
    }
    keel_arena_free(a);
    free(a);
}

/* Raise NOSPACE through raft (etcd: quotaAlarmer.check). The node flag
 * keeps one activation in flight at a time. */
static void propose_nospace(struct node *n)
{
    if (n->nospace_proposed || n->closing ||
        alarm_active(n, ETCDSERVERPB__ALARM_TYPE__NOSPACE)) {
        return;
    }
    struct keel_arena *a = calloc(1, sizeof *a);
    if (a == NULL) {
        return;
    }
    keel_arena_init(a, 0);
    Etcdserverpb__AlarmRequest ar = ETCDSERVERPB__ALARM_REQUEST__INIT;
    ar.action = ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE;
    ar.memberid = n->opts.member_id;
    ar.alarm = ETCDSERVERPB__ALARM_TYPE__NOSPACE;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_ALARM;
    req.alarm = &ar;
    log_warn("etcdserver", "alarm raised: alarm NOSPACE, from %" PRIx64,
             n->opts.member_id);
    n->nospace_proposed = true;
    if (node_propose(n, &req, a, nospace_proposed_cb, a) != 0) {
        n->nospace_proposed = false;
        keel_arena_free(a);
        free(a);
    }
}

/* etcd: backendQuota.Available is false once size + cost >= quota. */
static bool quota_exceeded(struct node *n, size_t cost)
{
    uint64_t total = 0;
    if (cost == 0 || n->quota == 0 || mvcc_file_size(n->mvcc, &total) != 0) {
        return false;
    }
    return (int64_t)(total + cost) >= n->quota;
}

int node_quota_check(struct node *n, const Keelpb__Request *req)
{
    if (!quota_exceeded(n, request_cost(req))) {
        return 0;
    }
    propose_nospace(n);
    return KEEL_ENOSPACE;
}

/* etcd: applierV3backend.Alarm. The response lists the alarm changed
 * (none when activating an active one or deactivating an absent one). */
static ProtobufCMessage *apply_alarm(struct node *n, struct mvcc_write *w,
                                     const Etcdserverpb__AlarmRequest *ar,
                                     struct keel_arena *a, int *rv)
{
    Etcdserverpb__AlarmResponse *r = keel_arena_alloc(a, sizeof *r);
    Etcdserverpb__AlarmMember *m = keel_arena_alloc(a, sizeof *m);
    Etcdserverpb__AlarmMember **list = keel_arena_alloc(a, sizeof *list);
    if (r == NULL || m == NULL || list == NULL) {
        *rv = KEEL_ENOMEM;
        return NULL;
    }
    etcdserverpb__alarm_response__init(r);
    etcdserverpb__alarm_member__init(m);
    m->memberid = ar->memberid;
    m->alarm = ar->alarm;
    uint8_t key[32];
    size_t klen = etcdserverpb__alarm_member__pack(m, key);
    size_t at = n->n_alarms;
    for (size_t i = 0; i < n->n_alarms; i++) {
        if (n->alarms[i].member_id == ar->memberid &&
            n->alarms[i].alarm == (int)ar->alarm) {
            at = i;
        }
    }
    bool changed = false;
    if (ar->action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__ACTIVATE) {
        if (ar->alarm == ETCDSERVERPB__ALARM_TYPE__NOSPACE) {
            n->nospace_proposed = false;
        }
        if (ar->alarm != ETCDSERVERPB__ALARM_TYPE__NONE &&
            at == n->n_alarms && n->n_alarms < NODE_MAX_ALARMS) {
            *rv = mvcc_table_put(w, MVCC_TABLE_ALARM, key, klen, "", 0);
            if (*rv != 0) {
                return NULL;
            }
            n->alarms[n->n_alarms].member_id = ar->memberid;
            n->alarms[n->n_alarms].alarm = (int)ar->alarm;
            n->n_alarms++;
            changed = true;
        }
    } else if (ar->action ==
                   ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE &&
               at < n->n_alarms) {
        *rv = mvcc_table_del(w, MVCC_TABLE_ALARM, key, klen);
        if (*rv != 0 && *rv != KEEL_ENOTFOUND) {
            return NULL;
        }
        *rv = 0;
        n->alarms[at] = n->alarms[--n->n_alarms];
        changed = true;
    }
    if (changed) {
        list[0] = m;
        r->alarms = list;
        r->n_alarms = 1;
    }
    return &r->base;
}

/* etcd: applierV3Capped — under NOSPACE only requests that cannot grow the
 * store are applied. */
static bool capped(const struct node *n, const Keelpb__Request *req)
{
    return request_cost(req) > 0 &&
           alarm_active(n, ETCDSERVERPB__ALARM_TYPE__NOSPACE);
}

/* ---- holding and pausing the store -------------------------------------- */

void node_hold(struct node *n)
{
    n->holds++;
}

void node_release(struct node *n)
{
    assert(n->holds > 0);
    if (--n->holds == 0 && n->closing && !n->busy) {
        finish_close(n);
    }
}

int node_pause(struct node *n, node_pause_cb cb, void *arg)
{
    if (n->paused || n->closing) {
        return n->closing ? KEEL_ESTOPPED : KEEL_EBUSY;
    }
    n->paused = true;
    n->pause_cb = cb;
    n->pause_arg = arg;
    kick(n);
    return 0;
}

void node_resume(struct node *n)
{
    n->paused = false;
    n->pause_cb = NULL;
    kick(n);
}

bool node_closing(const struct node *n)
{
    return n->closing;
}

/* Apply one request in batch w. Returns the response or NULL with *rv. */
static ProtobufCMessage *apply_request(struct node *n, struct mvcc_write *w,
                                       const Keelpb__Request *req,
                                       struct keel_arena *a, int *rv)
{
    ProtobufCMessage *resp = NULL;
    *rv = 0;
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_PUT: {
            Etcdserverpb__PutResponse *r = NULL;
            *rv = mvcc_put(w, req->put, a, &r);
            resp = (ProtobufCMessage *)r;
            break;
        }
        case KEELPB__REQUEST__OP_DELETE_RANGE: {
            Etcdserverpb__DeleteRangeResponse *r = NULL;
            *rv = mvcc_delete_range(w, req->delete_range, a, &r);
            resp = (ProtobufCMessage *)r;
            break;
        }
        case KEELPB__REQUEST__OP_TXN: {
            Etcdserverpb__TxnResponse *r = NULL;
            *rv = mvcc_txn(w, req->txn, a, &r);
            resp = (ProtobufCMessage *)r;
            break;
        }
        case KEELPB__REQUEST__OP_COMPACTION: {
            Etcdserverpb__CompactionResponse *r =
                keel_arena_alloc(a, sizeof *r);
            if (r == NULL) {
                *rv = KEEL_ENOMEM;
                break;
            }
            etcdserverpb__compaction_response__init(r);
            *rv = mvcc_compact(w, req->compaction->revision);
            if (*rv == 0) {
                n->compact_pending = true;
            }
            resp = &r->base;
            break;
        }
        case KEELPB__REQUEST__OP_LEASE_GRANT: {
            /* The id was chosen at propose time (etcd: v3_server.go
             * LeaseGrant), so every member grants the same lease. */
            Etcdserverpb__LeaseGrantResponse *r =
                keel_arena_alloc(a, sizeof *r);
            if (r == NULL) {
                *rv = KEEL_ENOMEM;
                break;
            }
            etcdserverpb__lease_grant_response__init(r);
            *rv = lease_store_grant(w, req->lease_grant->id,
                                    req->lease_grant->ttl);
            r->id = req->lease_grant->id;
            r->ttl = req->lease_grant->ttl;
            resp = &r->base;
            break;
        }
        case KEELPB__REQUEST__OP_LEASE_REVOKE: {
            Etcdserverpb__LeaseRevokeResponse *r =
                keel_arena_alloc(a, sizeof *r);
            if (r == NULL) {
                *rv = KEEL_ENOMEM;
                break;
            }
            etcdserverpb__lease_revoke_response__init(r);
            *rv = lease_store_revoke(w, req->lease_revoke->id, a);
            resp = &r->base;
            break;
        }
        case KEELPB__REQUEST__OP_LEASE_CHECKPOINT: {
            Etcdserverpb__LeaseCheckpointResponse *r =
                keel_arena_alloc(a, sizeof *r);
            if (r == NULL) {
                *rv = KEEL_ENOMEM;
                break;
            }
            etcdserverpb__lease_checkpoint_response__init(r);
            const Etcdserverpb__LeaseCheckpointRequest *c =
                req->lease_checkpoint;
            for (size_t i = 0; i < c->n_checkpoints && *rv == 0; i++) {
                *rv = lease_store_checkpoint(w, c->checkpoints[i]->id,
                                             c->checkpoints[i]->remaining_ttl);
                if (*rv == KEEL_ELEASENOTFOUND) {
                    *rv = 0; /* revoked meanwhile: nothing to record */
                }
            }
            resp = &r->base;
            break;
        }
        case KEELPB__REQUEST__OP_MEMBER_ATTRIBUTES: {
            /* members table: "<id hex>/attributes" -> MemberAttributes */
            const Keelpb__MemberAttributes *m = req->member_attributes;
            char key[64];
            int kl = snprintf(key, sizeof key, "%016" PRIx64 "/attributes",
                              m->member_id);
            size_t len = keelpb__member_attributes__get_packed_size(m);
            uint8_t *buf = keel_arena_alloc(a, len ? len : 1);
            if (buf == NULL) {
                *rv = KEEL_ENOMEM;
                break;
            }
            keelpb__member_attributes__pack(m, buf);
            *rv = mvcc_table_put(w, MVCC_TABLE_MEMBERS, key, (size_t)kl, buf,
                                 len);
            break;
        }
        case KEELPB__REQUEST__OP_CLUSTER_VERSION: {
            static const char key[] = "cluster_version";
            const char *v = req->cluster_version;
            *rv = mvcc_table_put(w, MVCC_TABLE_MEMBERS, key, sizeof key - 1, v,
                                 strlen(v));
            break;
        }
        case KEELPB__REQUEST__OP_ALARM:
            resp = apply_alarm(n, w, req->alarm, a, rv);
            break;
        default:
            *rv = KEEL_EUNIMPLEMENTED;
            break;
    }
    if (*rv != 0) {
        return NULL;
    }
    return resp;
}

struct applied
{
    struct waiter *waiter; /* NULL: nobody waits here */
    ProtobufCMessage *resp;
    int rv;
    Mvccpb__Event **events;
    size_t n_events;
    int64_t revision;
    bool over_quota; /* applied, answered KEEL_ENOSPACE (quotaApplierV3) */
};

/* Whether the op is an etcd write txn that can change keys (and so has
 * watch events). */
static bool op_writes_keys(const Keelpb__Request *req)
{
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_PUT:
        case KEELPB__REQUEST__OP_DELETE_RANGE:
        case KEELPB__REQUEST__OP_TXN:
        case KEELPB__REQUEST__OP_LEASE_REVOKE:
            return true;
        default:
            return false;
    }
}

static bool is_storage_error(int rv)
{
    return rv == KEEL_ENOSPACE || rv == KEEL_EIO || rv == KEEL_ECORRUPT ||
           rv == KEEL_ENOMEM || (rv < 0 && rv > KEEL_ERR_BASE);
}

/* on_leader(true): this member leads term and applied its empty entry. */
static void leader_applied_own_entry(struct node *n, uint64_t term)
{
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.state != RAFT_LEADER || st.hs.term != term ||
        n->promoted_term == term) {
        return;
    }
    n->promoted_term = term;
    if (n->opts.on_leader != NULL) {
        n->opts.on_leader(n->opts.on_leader_arg, true);
    }
}

/* on_leader(false) once the leadership told to on_leader(true) is gone. */
static void leader_check(struct node *n)
{
    if (n->raft == NULL) {
        return;
    }
    struct raft_status st;
    raft_status(n->raft, &st);
    /* etcd counts every change to a known leader from whatever it saw
     * last, none included (etcdserver/raft.go, leaderChanges). */
    if (st.lead != 0 && st.lead != n->seen_lead) {
        metrics_core.leader_changes++;
    }
    n->seen_lead = st.lead;
    if (n->promoted_term == 0) {
        return;
    }
    if (st.state == RAFT_LEADER && st.hs.term == n->promoted_term) {
        return;
    }
    n->promoted_term = 0;
    if (n->opts.on_leader != NULL) {
        n->opts.on_leader(n->opts.on_leader_arg, false);
    }
}

static void apply_committed(struct node *n, struct raft_ready *rd)
{
    struct applied *res = calloc(rd->n_committed, sizeof *res);
    if (res == NULL) {
        fatal("apply", KEEL_ENOMEM, NULL);
    }
    struct mvcc_write *w = NULL;
    int rv = mvcc_write_begin(n->mvcc, &w);
    if (rv != 0) {
        fatal("begin apply batch", rv, mvcc_errmsg(n->mvcc));
    }
    uint64_t last_index = 0, last_term = 0;
    for (size_t i = 0; i < rd->n_committed; i++) {
        const struct raft_entry *e = &rd->committed[i];
        last_index = e->index;
        last_term = e->term;
        if (e->type == RAFT_ENTRY_CONF_CHANGE) {
            struct raft_conf_change cc;
            rv = raft_conf_change_decode(raft_heap_default(), e->data, &cc);
            if (rv != 0) {
                fatal("decode conf change", KEEL_ECORRUPT, raft_strerror(rv));
            }
            raft_apply_conf_change(n->raft, &cc, NULL);
            raft_buf_unref(cc.context);
            continue;
        }
        if (e->data == NULL || e->data->len == 0) {
            /* A new leader's empty entry: once the leader applies the one
             * of its own term, everything before is applied too. */
            leader_applied_own_entry(n, e->term);
            continue;
        }
        Keelpb__Request *req =
            keelpb__request__unpack(&n->scratch.pb, e->data->len, e->data->data);
        if (req == NULL) {
            fatal("decode committed entry", KEEL_ECORRUPT, NULL);
        }
        uint64_t id = req->header != NULL ? req->header->id : 0;
        res[i].waiter = id != 0 ? waiter_take(n, id) : NULL;
        if (!mvcc_write_should_apply(w, e->index)) {
            /* Already in the store (replay after restart). */
            if (res[i].waiter != NULL) {
                res[i].rv = KEEL_ESTOPPED;
            }
            continue;
        }
        struct keel_arena *a =
            res[i].waiter != NULL ? res[i].waiter->arena : &n->scratch;
        if (capped(n, req)) {
            /* Refused, not a storage failure: the entry has no effect. */
            res[i].rv = KEEL_ENOSPACE;
            metrics_count_applied(req, NULL, res[i].rv, NULL, 0);
            continue;
        }
        res[i].resp = apply_request(n, w, req, a, &res[i].rv);
        if (res[i].rv != 0 && is_storage_error(res[i].rv)) {
            fatal("apply entry", res[i].rv, mvcc_errmsg(n->mvcc));
        }
        if (res[i].rv == 0 && n->quota > 0 &&
            quota_exceeded(n, request_cost(req))) {
            /* etcd's quotaApplierV3: the write is applied, its proposer
             * gets ErrNoSpace and NOSPACE is raised (after this batch). */
            res[i].over_quota = true;
            n->raise_nospace = true;
        }
        if (res[i].rv == 0 && op_writes_keys(req)) {
            /* mvcc_write_events() returns the last KV write call's events:
             * only ask after an op that made one (a lease grant or a table
             * put would see its predecessor's events again). */
            mvcc_write_events(w, &res[i].events, &res[i].n_events);
        }
        if (res[i].rv == 0) {
            if (n->opts.on_applied != NULL) {
                n->opts.on_applied(n->opts.on_applied_arg, req, res[i].resp);
            }
        }
        metrics_count_applied(req, res[i].resp, res[i].rv, res[i].events,
                              res[i].n_events);
    }
    double t0 = metrics_now();
    rv = mvcc_write_commit(w, last_index, last_term);
    metrics_histogram_observe(&metrics_core.backend_commit,
                              metrics_now() - t0);
    if (rv != 0) {
        fatal("commit apply batch", rv, mvcc_errmsg(n->mvcc));
    }
    n->applied = last_index;
    /* Watchers first: a waiter's callback may free its arena, which holds
     * the events of its own request. */
    for (size_t i = 0; i < rd->n_committed; i++) {
        if (res[i].n_events > 0 && n->opts.on_events != NULL) {
            int64_t erev = res[i].events[0]->kv != NULL
                               ? res[i].events[0]->kv->mod_revision
                               : 0;
            /* Watchers rely on strictly increasing revisions. */
            KEEL_NODE_CHECK(erev > n->last_event_rev,
                            "events out of order: revision %lld after %lld",
                            (long long)erev, (long long)n->last_event_rev);
            n->last_event_rev = erev;
            n->opts.on_events(n->opts.on_events_arg, erev, res[i].events,
                              res[i].n_events);
        }
    }
    for (size_t i = 0; i < rd->n_committed; i++) {
        struct waiter *wt = res[i].waiter;
        if (wt != NULL) {
            metrics_core.proposals_pending--;
            int wrv = res[i].over_quota ? KEEL_ENOSPACE : res[i].rv;
            wt->cb(wt->arg, wrv, wrv == 0 ? res[i].resp : NULL);
            free(wt);
        }
    }
    free(res);
    keel_arena_reset(&n->scratch);
}

/* ---- reads -------------------------------------------------------------- */

static void issue_read_round(struct node *n)
{
    if (n->reads_queued == NULL || n->batches != NULL) {
        return; /* one round at a time; later reads join the next one */
    }
    struct read_batch *b = calloc(1, sizeof *b);
    if (b == NULL) {
        return; /* retried on the next tick */
    }
    b->ctx = n->next_read_ctx++;
    struct raft_buf *ctx =
        raft_buf_new(raft_heap_default(), &b->ctx, sizeof b->ctx);
    if (ctx == NULL) {
        free(b);
        return;
    }
    int rv = raft_read_index(n->raft, ctx);
    raft_buf_unref(ctx);
    if (rv != 0) {
        free(b);
        return; /* no leader yet: retried on the next tick */
    }
    b->head = n->reads_queued;
    n->reads_queued = NULL;
    n->reads_queued_tail = &n->reads_queued;
    n->batches = b;
    kick(n);
}

static void serve_reads(struct node *n)
{
    struct read_waiter **pp = &n->reads_ready;
    while (*pp != NULL) {
        struct read_waiter *r = *pp;
        if (r->index <= n->applied) {
            *pp = r->next;
            r->cb(r->arg, 0);
            free(r);
        } else {
            pp = &r->next;
        }
    }
    issue_read_round(n);
}

int node_read_index(struct node *n, node_read_cb cb, void *arg)
{
    if (n->closing) {
        return KEEL_ESTOPPED;
    }
    struct read_waiter *r = calloc(1, sizeof *r);
    if (r == NULL) {
        return KEEL_ENOMEM;
    }
    r->cb = cb;
    r->arg = arg;
    *n->reads_queued_tail = r;
    n->reads_queued_tail = &r->next;
    issue_read_round(n);
    return 0;
}

/* ---- proposals ---------------------------------------------------------- */

int node_propose(struct node *n, Keelpb__Request *req, struct keel_arena *arena,
                 node_propose_cb cb, void *arg)
{
    if (n->closing) {
        return KEEL_ESTOPPED;
    }
    int qrv = node_quota_check(n, req);
    if (qrv != 0) {
        return qrv;
    }
    Keelpb__RequestHeader hdr = KEELPB__REQUEST_HEADER__INIT;
    Keelpb__RequestHeader *saved = req->header;
    if (req->header == NULL) {
        req->header = &hdr;
    }
    uint64_t id = ++n->next_id;
    req->header->id = id;
    /* Packed straight into the raft buffer: it is ours (one reference)
     * until raft_propose shares it. */
    size_t len = keelpb__request__get_packed_size(req);
    struct raft_buf *buf = raft_buf_new(raft_heap_default(), NULL, len);
    if (buf == NULL) {
        req->header = saved;
        return KEEL_ENOMEM;
    }
    keelpb__request__pack(req, buf->data);
    req->header = saved;
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL) {
        raft_buf_unref(buf);
        return KEEL_ENOMEM;
    }
    w->id = id;
    w->cb = cb;
    w->arg = arg;
    w->arena = arena;
    struct pending *p = calloc(1, sizeof *p);
    if (p == NULL) {
        free(w);
        raft_buf_unref(buf);
        return KEEL_ENOMEM;
    }
    p->buf = buf;
    p->w = w;
    p->deadline_ms = uv_now(n->loop) + request_timeout_ms(n);
    *n->pending_tail = p;
    n->pending_tail = &p->next;
    metrics_core.proposals_pending++;
    propose_pending(n);
    return 0;
}

/* Hand queued proposals to raft, in order, while there is a leader. A
 * proposal raft drops (no leader, a transfer in progress) stays queued and
 * is retried on the next tick or Ready. */
static void propose_pending(struct node *n)
{
    while (n->pending != NULL && !n->closing) {
        struct pending *p = n->pending;
        int rv = raft_propose(n->raft, p->buf);
        if (rv == RAFT_EPROPOSAL_DROPPED) {
            return;
        }
        n->pending = p->next;
        if (n->pending == NULL) {
            n->pending_tail = &n->pending;
        }
        raft_buf_unref(p->buf);
        struct waiter *w = p->w;
        free(p);
        if (rv != 0) {
            metrics_core.proposals_pending--;
            metrics_core.proposals_failed++;
            w->cb(w->arg, rv == RAFT_ENOMEM ? KEEL_ENOMEM : KEEL_EINVAL, NULL);
            free(w);
            continue;
        }
        struct waiter **slot = &n->waiters[w->id % NODE_WAITER_BUCKETS];
        w->next = *slot;
        *slot = w;
        kick(n);
    }
}

/* ---- status and close --------------------------------------------------- */

struct mvcc_store *node_store(struct node *n)
{
    return n->mvcc;
}

void node_status(struct node *n, struct node_status *st)
{
    struct raft_status rs;
    raft_status(n->raft, &rs);
    memset(st, 0, sizeof *st);
    st->member_id = n->opts.member_id;
    st->cluster_id = n->opts.cluster_id;
    st->leader = rs.lead;
    st->term = rs.hs.term;
    st->commit_index = rs.hs.commit;
    st->applied_index = n->applied;
    st->raft_index = rs.last_index;
    st->is_leader = rs.state == RAFT_LEADER;
    st->lead_transferee = rs.lead_transferee;
    for (uint32_t i = 0; i < rs.conf.n_voters && i < NODE_MAX_MEMBERS; i++) {
        st->voters[st->n_voters++] = rs.conf.voters[i];
    }
    for (uint32_t i = 0; i < rs.conf.n_learners && i < NODE_MAX_MEMBERS; i++) {
        st->learners[st->n_learners++] = rs.conf.learners[i];
        st->is_learner = st->is_learner || rs.conf.learners[i] == n->opts.member_id;
    }
    st->snapshot_index = raft_memstore_first_index(n->ms) - 1;
}

static void handle_closed(uv_handle_t *h)
{
    struct node *n = h->data;
    if (--n->handles_open > 0) {
        return;
    }
    void (*cb)(void *) = n->close_cb;
    void *arg = n->close_arg;
    free(n);
    if (cb != NULL) {
        cb(arg);
    }
}

static void fail_all(struct node *n)
{
    while (n->pending != NULL) {
        struct pending *p = n->pending;
        n->pending = p->next;
        raft_buf_unref(p->buf);
        metrics_core.proposals_pending--;
        p->w->cb(p->w->arg, KEEL_ESTOPPED, NULL);
        free(p->w);
        free(p);
    }
    n->pending_tail = &n->pending;
    for (size_t b = 0; b < NODE_WAITER_BUCKETS; b++) {
        while (n->waiters[b] != NULL) {
            struct waiter *w = n->waiters[b];
            n->waiters[b] = w->next;
            metrics_core.proposals_pending--;
            w->cb(w->arg, KEEL_ESTOPPED, NULL);
            free(w);
        }
    }
    struct read_waiter *lists[2] = {n->reads_queued, n->reads_ready};
    n->reads_queued = n->reads_ready = NULL;
    n->reads_queued_tail = &n->reads_queued;
    for (int l = 0; l < 2; l++) {
        for (struct read_waiter *r = lists[l]; r != NULL;) {
            struct read_waiter *next = r->next;
            r->cb(r->arg, KEEL_ESTOPPED);
            free(r);
            r = next;
        }
    }
    while (n->batches != NULL) {
        struct read_batch *b = n->batches;
        n->batches = b->next;
        for (struct read_waiter *r = b->head; r != NULL;) {
            struct read_waiter *next = r->next;
            r->cb(r->arg, KEEL_ESTOPPED);
            free(r);
            r = next;
        }
        free(b);
    }
}

static void finish_close(struct node *n)
{
    if (n->raft == NULL) {
        return; /* already done (a release from inside node_close) */
    }
    fail_all(n);
    raft_free(n->raft);
    n->raft = NULL;
    raft_memstore_free(n->ms);
    int rv = mvcc_sync(n->mvcc);
    if (rv != 0) {
        log_error("etcdserver", "sync store at close: %s",
                  mvcc_errmsg(n->mvcc));
    }
    mvcc_close(n->mvcc);
    wal_close(n->wal);
    free(n->data_dir);
    keel_arena_free(&n->scratch);
    uv_close((uv_handle_t *)&n->tick, handle_closed);
    uv_close((uv_handle_t *)&n->kick, handle_closed);
}

void node_close(struct node *n, void (*close_cb)(void *arg), void *arg)
{
    n->closing = true;
    n->close_cb = close_cb;
    n->close_arg = arg;
    uv_timer_stop(&n->tick);
    uv_idle_stop(&n->kick);
    if (!n->busy) {
        fire_pause(n); /* a paused user sees node_closing() and releases */
    }
    if (!n->busy && n->holds == 0) {
        finish_close(n);
    }
    /* else after_persist finishes the close once the WAL append is back */
}

/* ---- peers, membership, leadership -------------------------------------- */

int node_step(struct node *n, const uint8_t *msg, size_t len)
{
    if (n->closing) {
        return KEEL_ESTOPPED;
    }
    struct raft_message m;
    int rv = raft_codec_unpack(msg, len, &m);
    if (rv != 0) {
        return rv;
    }
    if (m.cluster_id != n->opts.cluster_id || m.type == RAFT_MSG_SNAP) {
        raft_codec_message_free(&m);
        return KEEL_EINVAL;
    }
    rv = raft_step(n->raft, &m);
    raft_codec_message_free(&m);
    if (rv == RAFT_ESTEP_LOCAL_MSG) {
        return KEEL_EINVAL;
    }
    kick(n);
    return 0;
}

int node_step_snapshot(struct node *n, const uint8_t *msg, size_t len,
                       const char *path)
{
    (void)n;
    (void)msg;
    (void)len;
    unlink(path);
    return KEEL_EUNIMPLEMENTED;
}

void node_report_unreachable(struct node *n, uint64_t id)
{
    if (n->raft != NULL && !n->closing) {
        raft_report_unreachable(n->raft, id);
        kick(n);
    }
}

void node_report_snapshot(struct node *n, uint64_t id, bool ok)
{
    if (n->raft != NULL && !n->closing) {
        raft_report_snapshot(n->raft, id, !ok);
        kick(n);
    }
}

int node_propose_conf_change(struct node *n, int type, uint64_t node_id,
                             const uint8_t *ctx, size_t ctx_len,
                             node_propose_cb cb, void *arg)
{
    (void)n;
    (void)type;
    (void)node_id;
    (void)ctx;
    (void)ctx_len;
    (void)cb;
    (void)arg;
    return KEEL_EUNIMPLEMENTED;
}

int node_transfer_leader(struct node *n, uint64_t to)
{
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.state != RAFT_LEADER) {
        return KEEL_ENOTLEADER;
    }
    bool voter = false;
    for (uint32_t i = 0; i < st.conf.n_voters; i++) {
        voter = voter || st.conf.voters[i] == to;
    }
    if (!voter) {
        return KEEL_EBADLEADERTRANSFEREE;
    }
    int rv = raft_transfer_leader(n->raft, to);
    kick(n);
    return rv == 0 ? 0 : KEEL_EBADLEADERTRANSFEREE;
}

int node_progress(struct node *n, uint64_t id, uint64_t *match)
{
    struct raft_status st;
    raft_status(n->raft, &st);
    if (st.state != RAFT_LEADER) {
        return KEEL_ENOTLEADER;
    }
    struct raft_progress_status p;
    if (raft_progress(n->raft, id, &p) != 0) {
        return KEEL_EINVAL;
    }
    *match = p.match;
    return 0;
}

void node_log_bounds(struct node *n, uint64_t *first, uint64_t *count)
{
    *first = raft_memstore_first_index(n->ms);
    *count = raft_memstore_last_index(n->ms) + 1 - *first;
}
