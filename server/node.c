/*
 * server/node.c: drives raft/ with storage/ underneath (see node.h).
 *
 * The Ready cycle, one at a time (n->busy guards it):
 *
 *   process_ready ──▶ a received snapshot in rd? install the image now
 *        │            (mvcc_replace; waits for node_release if a worker
 *        │            reads the store: "parked")
 *        ├──▶ send rd->msgs (leader traffic, before our fsync; MsgSnap:
 *        │    copy the store on the thread pool first, then send)
 *        ├──▶ apply rd->committed now (entries already durable here and on
 *        │    a quorum: see continue_ready), unless a snapshot or a
 *        │    compaction is in this Ready
 *        ├─ something to persist? ──▶ uv_queue_work: [snapshot marker of
 *        │                            the received image] [store sync +
 *        │                            marker + segment release of a due
 *        │                            compaction] wal_append + fdatasync
 *        │                                     │
 *        └─────────────────────────────────────┴──▶ after_persist:
 *              memstore: snapshot, entries, hard state
 *              send rd->msgs_after_persist
 *              (if not applied early) apply rd->committed in one MVCC
 *              batch (consistent_index in
 *              the same LMDB txn; conf changes into the members table),
 *              then events to watchers, then answers to the waiting
 *              proposers, then on_conf_change
 *              read states -> reads wait for applied >= index
 *              raft_advance; compaction due?; process_ready again
 *
 * Suspended in: the thread-pool work (busy, persist job pending), a parked
 * Ready (busy, waiting for holds == 0), snapshot copies for followers
 * (holds > 0, in snaps_out until the transport reports).
 *
 * The raft storage is a raft_memstore holding the entries since the last
 * compaction (as etcd's MemoryStorage); the WAL is its durable copy. At
 * open the WAL is replayed into the memstore from its snapshot marker
 * (index, term, configuration), and raft re-delivers every committed entry
 * after it: the MVCC store skips those at or below its consistent_index,
 * while conf changes are always re-applied to raft (it learns its
 * configuration that way, as etcd does at restart).
 *
 * Durability order of a snapshot: the store must be durable at or past the
 * index a WAL marker names before the marker is written (entries up to it
 * are gone from the WAL after): a compaction syncs the store first; a
 * received image is renamed over member/snap/db (and the directory
 * synced) before its marker.
 *
 * Test-only crash points: with KEEL_CRASHPOINT=<name>[:<nth>] in the
 * environment the process SIGKILLs itself the nth time (default: first)
 * it passes the named point, after writing "keel: crashpoint <name> hit"
 * to stderr; without the variable the points do nothing. Names:
 * compact-synced (a compaction's store sync is done, no marker yet),
 * compact-marker (its WAL marker is written, segments not yet released),
 * compact-released (segments released), snap-renamed (a received image
 * is renamed over member/snap/db, its WAL marker not yet written),
 * snap-marker (that marker is written), apply-committed (an apply batch
 * is committed to LMDB, nobody answered yet). Driven by
 * tests/integration/test_crashpoints.sh; never set it in production.
 */
#include "node.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth_store.h"
#include "keel_err.h"
#include "log.h"
#include "metrics.h"
#include "mvcc.h"
#include "raft.h"
#include "raft_codec.h"
#include "v2store.h"
#include "wal.h"

#define NODE_WAITER_BUCKETS 1024
#define NODE_MAX_ALARMS 64

/* A proposer waiting for its entry to be applied here, keyed by the
 * request id in the entry (or the conf change id). Also on a timeline in
 * deadline order (one request timeout for all, so insertion order): a
 * proposal forwarded to a leader that lost it is never applied, and its
 * waiter fails with KEEL_ETIMEOUT as etcd's requests do. */
struct waiter
{
    uint64_t id;
    node_propose_cb cb;
    void *arg;
    struct keel_arena *arena;
    struct waiter *next;
    uint64_t deadline_ms;
    struct waiter *tprev, *tnext;
    bool conf; /* a node_propose_conf_change (clears conf_inflight) */
};

/* A proposal waiting for a leader (etcd blocks proposals until there is
 * one, up to the request timeout). */
struct pending
{
    struct raft_buf *buf; /* NULL for a conf change */
    struct raft_conf_change cc; /* when buf is NULL (context referenced) */
    struct waiter *w;
    uint64_t deadline_ms;
    struct pending *next;
};

struct read_waiter
{
    node_read_cb cb;
    void *arg;
    uint64_t index; /* valid once the batch got its read state */
    uint64_t deadline_ms;
    struct read_waiter *next;
};

/* One read-index round: all reads queued when it was issued. */
struct read_batch
{
    uint64_t ctx;
    uint64_t issued_ms;
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
    /* A received snapshot's marker (rd->has_snapshot): its image is
     * installed already, so the marker may now say the log starts there. */
    bool save_received;
    struct wal_snapshot received;
    /* Log compaction: sync the store (its consistent_index must be durable
     * past the marker), write the marker, release the segments before. */
    bool compact;
    struct wal_snapshot snap;
    int rv;
    const char *what; /* what failed, for the fatal message */
};

/* A snapshot image being made for, then streamed to, a follower. */
struct snap_out
{
    uv_work_t work;
    struct node *n;
    uint64_t to;
    char path[4200];
    uint8_t *msg; /* the packed MsgSnap */
    size_t len;
    int rv;
    bool sending; /* handed to send(); waits for node_report_snapshot */
    struct snap_out *next;
};

/* A received snapshot image, waiting for raft to decide about it. */
struct snap_in
{
    uint64_t index;
    uint64_t term;
    char *path;
    struct snap_in *next;
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
    struct v2store *v2; /* the v2 key tree, in mvcc's `v2` table */
    uv_timer_t tick;
    uv_idle_t kick; /* runs process_ready once per loop iteration when set */
    bool kick_active;
    bool busy;    /* a Ready is between raft_ready and raft_advance */
    bool applied_early; /* the busy Ready's committed entries are applied
                           (continue_ready), not after its persist */
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
    /* Multi-member state (issue 5). */
    struct waiter *thead, *ttail; /* waiters by deadline */
    struct raft_conf_state applied_conf; /* configuration as of applied */
    uint64_t applied_term;
    bool conf_inflight;      /* a node_propose_conf_change is waiting */
    uint64_t snap_index;     /* the memstore's raft snapshot */
    bool wal_snap_due;       /* a compaction the WAL has not recorded yet */
    struct wal_snapshot wal_snap;
    struct snap_out *snaps_out;
    struct snap_in *snaps_in;
    struct raft_ready *parked; /* a Ready with a snapshot, waiting for
                                  node_release (no reader of the store) */
    struct snap_in *parked_img;
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

static void waiter_add(struct node *n, struct waiter *w)
{
    struct waiter **slot = &n->waiters[w->id % NODE_WAITER_BUCKETS];
    w->next = *slot;
    *slot = w;
    w->tnext = NULL;
    w->tprev = n->ttail;
    if (n->ttail != NULL) {
        n->ttail->tnext = w;
    } else {
        n->thead = w;
    }
    n->ttail = w;
}

static struct waiter *waiter_take(struct node *n, uint64_t id)
{
    struct waiter **pp = waiter_slot(n, id);
    struct waiter *w = *pp;
    if (w == NULL) {
        return NULL;
    }
    *pp = w->next;
    if (w->tprev != NULL) {
        w->tprev->tnext = w->tnext;
    } else {
        n->thead = w->tnext;
    }
    if (w->tnext != NULL) {
        w->tnext->tprev = w->tprev;
    } else {
        n->ttail = w->tprev;
    }
    if (w->conf) {
        n->conf_inflight = false;
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

/* The packed etcdserverpb.Member of m (a new raft buf, or NULL on OOM).
 * clientURLs stay empty: they are published later through raft
 * (OP_MEMBER_ATTRIBUTES), as etcd does. */
static struct raft_buf *member_ctx(const struct node_member *m)
{
    Etcdserverpb__Member pb = ETCDSERVERPB__MEMBER__INIT;
    pb.id = m->id;
    pb.name = (char *)(m->name != NULL ? m->name : "");
    pb.peerurls = (char **)m->peer_urls;
    pb.n_peerurls = m->n_peer_urls;
    pb.islearner = m->learner;
    size_t len = etcdserverpb__member__get_packed_size(&pb);
    struct raft_buf *b = raft_buf_new(raft_heap_default(), NULL, len);
    if (b != NULL) {
        etcdserverpb__member__pack(&pb, b->data);
    }
    return b;
}

/* A new cluster's log: one AddNode (AddLearnerNode) conf change per
 * initial member at indexes 1..n, term 1, committed, context = the
 * member's packed etcdserverpb.Member. Every member writes the same
 * entries, so the logs agree, and applying them fills the members table
 * everywhere (etcd bootstraps the same way: etcdserver/raft.go
 * startNode). */
static int bootstrap_log(struct node *n, const struct node_options *opts,
                         char *errmsg, size_t errlen)
{
    size_t nm = opts->n_initial_members;
    struct node_member self = {.id = opts->member_id};
    struct node_member *legacy = NULL;
    const struct node_member *ms = opts->initial_members;
    if (ms == NULL || nm == 0) {
        nm = opts->n_voters;
        if (nm == 0) {
            ms = &self;
            nm = 1;
        } else {
            legacy = calloc(nm, sizeof *legacy);
            if (legacy == NULL) {
                return KEEL_ENOMEM;
            }
            for (size_t i = 0; i < nm; i++) {
                legacy[i].id = opts->voters[i];
            }
            ms = legacy;
        }
    }
    struct wal_entry *ents = calloc(nm, sizeof *ents);
    struct raft_buf **bufs = calloc(nm, sizeof *bufs);
    int rv = 0;
    if (ents == NULL || bufs == NULL) {
        rv = KEEL_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nm; i++) {
        struct raft_conf_change cc = {
            .id = 0,
            .type = ms[i].learner ? RAFT_CONF_ADD_LEARNER_NODE
                                  : RAFT_CONF_ADD_NODE,
            .node_id = ms[i].id,
            .context = member_ctx(&ms[i])};
        if (cc.context == NULL) {
            rv = KEEL_ENOMEM;
            goto out;
        }
        bufs[i] = raft_conf_change_encode(raft_heap_default(), &cc);
        raft_buf_unref(cc.context);
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
    struct wal_hard_state hs = {.term = 1, .vote = 0, .commit = nm};
    rv = wal_append(n->wal, ents, nm, &hs);
    if (rv != 0) {
        snprintf(errmsg, errlen, "bootstrap: write initial log: %s",
                 wal_errmsg(n->wal));
    }
out:
    if (bufs != NULL) {
        for (size_t i = 0; i < nm; i++) {
            raft_buf_unref(bufs[i]);
        }
    }
    free(bufs);
    free(ents);
    free(legacy);
    return rv;
}

static void conf_from_wal(const struct wal_conf_state *w,
                          struct raft_conf_state *r)
{
    memset(r, 0, sizeof *r);
    memcpy(r->voters, w->voters, w->n_voters * sizeof(uint64_t));
    r->n_voters = w->n_voters;
    memcpy(r->learners, w->learners, w->n_learners * sizeof(uint64_t));
    r->n_learners = w->n_learners;
}

static void conf_to_wal(const struct raft_conf_state *r,
                        struct wal_conf_state *w)
{
    memset(w, 0, sizeof *w);
    memcpy(w->voters, r->voters, r->n_voters * sizeof(uint64_t));
    w->n_voters = r->n_voters;
    memcpy(w->learners, r->learners, r->n_learners * sizeof(uint64_t));
    w->n_learners = r->n_learners;
}

/* Replay the WAL into the memstore. */
static int load_log(struct node *n, char *errmsg, size_t errlen)
{
    struct wal_snapshot snap = wal_snapshot(n->wal);
    if (snap.index != 0) {
        /* A compacted log (or one that started from a leader's snapshot):
         * raft starts from the snapshot's index, term and configuration;
         * the store holds at least that much (its consistent_index was
         * made durable before the marker was written). */
        struct raft_snapshot rs = {.data = NULL};
        rs.meta.index = snap.index;
        rs.meta.term = snap.term;
        conf_from_wal(&snap.conf, &rs.meta.conf_state);
        int rv = raft_memstore_apply_snapshot(n->ms, &rs);
        if (rv != 0) {
            snprintf(errmsg, errlen, "load snapshot marker: %s",
                     raft_strerror(rv));
            return KEEL_ECORRUPT;
        }
        n->snap_index = snap.index;
        n->applied_conf = rs.meta.conf_state;
        n->applied_term = snap.term;
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
    /* A commit-only hard state is written without fdatasync, so the last
     * durable one may lag the snapshot marker (which is synced): the
     * snapshot's entries were applied, hence committed. */
    if (whs.commit < snap.index) {
        whs.commit = snap.index;
    }
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

/* Images a crash left in member/snap/: our copies for followers
 * (*.snap.out) and received images handed to us but not installed
 * (snap-from-*.db, server/peer's names). Nobody will use them: a follower
 * asks again. Only at open, before the loop runs, so no transfer is in
 * flight. */
static void remove_stale_images(const char *data_dir)
{
    char dir[4200], path[4500];
    snprintf(dir, sizeof dir, "%s/member/snap", data_dir);
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        bool out = l > 9 && strcmp(e->d_name + l - 9, ".snap.out") == 0;
        bool in = l > 13 && strncmp(e->d_name, "snap-from-", 10) == 0 &&
                  strcmp(e->d_name + l - 3, ".db") == 0;
        if (out || in) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            (void)unlink(path);
        }
    }
    closedir(d);
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
    n->opts.initial_members = NULL;
    if (n->opts.snapshot_count == 0) {
        n->opts.snapshot_count = 100000; /* etcd: DefaultSnapshotCount */
    }
    if (n->opts.snapshot_catchup_entries == 0) {
        n->opts.snapshot_catchup_entries = 5000; /* SnapshotCatchUpEntries */
    }
    n->reads_queued_tail = &n->reads_queued;
    n->pending_tail = &n->pending;
    keel_arena_init(&n->scratch, 0);
    if (n->opts.heartbeat_ms == 0) {
        n->opts.heartbeat_ms = 100;
    }
    if (n->opts.election_ms < 2 * n->opts.heartbeat_ms) {
        n->opts.election_ms = 10 * n->opts.heartbeat_ms;
    }

    remove_stale_images(n->data_dir);
    struct wal_options wo = {.segment_size = opts->wal_segment_size};
    rv = wal_open(n->data_dir, &wo, &n->wal, errmsg, errlen);
    if (rv != 0) {
        goto err_node;
    }
    bool fresh = wal_last_index(n->wal) == 0 &&
                 wal_hard_state(n->wal).term == 0 &&
                 wal_snapshot(n->wal).index == 0;
    if (fresh && !opts->join_existing) {
        rv = bootstrap_log(n, opts, errmsg, errlen);
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
    rv = v2store_open(n->mvcc, &n->v2);
    if (rv != 0) {
        snprintf(errmsg, errlen, "load the v2 store: %s", keel_strerror(rv));
        goto err_mvcc;
    }
    n->applied = n->snap_index;
    n->last_event_rev = mvcc_revision(n->mvcc);
    if (mvcc_consistent_index(n->mvcc) < n->snap_index) {
        snprintf(errmsg, errlen,
                 "the store (consistent index %" PRIu64
                 ") is older than the raft snapshot at %" PRIu64
                 " the WAL starts from: member/snap/db was replaced or lost",
                 mvcc_consistent_index(n->mvcc), n->snap_index);
        rv = KEEL_ECORRUPT;
        goto err_mvcc;
    }
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
    /* Read contexts are unique across restarts too: a late answer to a
     * round of an earlier run must not match a new one. */
    n->next_read_ctx = n->next_id;

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
    if (opts->initial_members != NULL && opts->n_initial_members > 0) {
        n->single_voter = opts->n_initial_members == 1 &&
                          opts->initial_members[0].id == opts->member_id;
    } else {
        n->single_voter =
            nv == 0 || (nv == 1 && opts->voters[0] == opts->member_id);
    }
    n->single_voter = n->single_voter && !opts->join_existing;
    kick(n);
    *out = n;
    return 0;

err_mvcc:
    v2store_free(n->v2);
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
static void propose_pending(struct node *n);

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
    propose_pending(n);
    process_ready(n);
}

static uint64_t request_timeout_ms(const struct node *n)
{
    /* etcd: ReqTimeout = 5s + 2 * election timeout (etcdserver/config.go) */
    return 5000 + 2 * (uint64_t)n->opts.election_ms;
}

static void leader_check(struct node *n);

/* Fail a proposal that never reached raft (p is freed). */
static void pending_fail(struct node *n, struct pending *p, int rv)
{
    raft_buf_unref(p->buf);
    raft_buf_unref(p->cc.context);
    if (p->w->conf) {
        n->conf_inflight = false;
    }
    metrics_core.proposals_pending--;
    if (rv != KEEL_ESTOPPED) {
        metrics_core.proposals_failed++;
    }
    p->w->cb(p->w->arg, rv, NULL);
    free(p->w);
    free(p);
}

/* Requests past their deadline fail with KEEL_ETIMEOUT, as etcd's do: a
 * proposal forwarded to a leader that lost it, or a read whose round
 * never came back. A read round unanswered for an election timeout (the
 * leader changed: raft drops such rounds) is issued again with a new
 * context. */
static void expire_requests(struct node *n, uint64_t now)
{
    while (n->thead != NULL && n->thead->deadline_ms <= now) {
        struct waiter *w = waiter_take(n, n->thead->id);
        metrics_core.proposals_pending--;
        metrics_core.proposals_failed++;
        w->cb(w->arg, KEEL_ETIMEOUT, NULL);
        free(w);
    }
    if (n->batches != NULL &&
        now - n->batches->issued_ms >= n->opts.election_ms) {
        while (n->batches != NULL) {
            struct read_batch *b = n->batches;
            n->batches = b->next;
            struct read_waiter *tail = b->head;
            while (tail != NULL && tail->next != NULL) {
                tail = tail->next;
            }
            if (tail != NULL) {
                tail->next = n->reads_queued;
                if (n->reads_queued == NULL) {
                    n->reads_queued_tail = &tail->next;
                }
                n->reads_queued = b->head;
            }
            free(b);
        }
    }
    struct read_waiter **lists[2] = {&n->reads_queued, &n->reads_ready};
    for (int l = 0; l < 2; l++) {
        struct read_waiter **pp = lists[l];
        while (*pp != NULL) {
            struct read_waiter *r = *pp;
            if (r->deadline_ms > now) {
                pp = &r->next;
                continue;
            }
            *pp = r->next;
            r->cb(r->arg, KEEL_ETIMEOUT);
            free(r);
        }
        if (l == 0) {
            n->reads_queued_tail = pp;
        }
    }
}

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
        pending_fail(n, p, KEEL_ETIMEOUT);
    }
    n->pending_tail = pp;
    expire_requests(n, now);
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

/* See the header comment: test-only, inert without KEEL_CRASHPOINT. Runs on
 * the loop thread and on the thread pool (the hit count is atomic). */
static void crashpoint(const char *name)
{
    static unsigned long hits;
    const char *spec = getenv("KEEL_CRASHPOINT");
    if (spec == NULL) {
        return;
    }
    size_t len = strlen(name);
    if (strncmp(spec, name, len) != 0 ||
        (spec[len] != '\0' && spec[len] != ':')) {
        return;
    }
    unsigned long nth = spec[len] == ':' ? strtoul(spec + len + 1, NULL, 10)
                                         : 1;
    if (__atomic_add_fetch(&hits, 1, __ATOMIC_SEQ_CST) != (nth ? nth : 1)) {
        return;
    }
    char msg[128];
    int m = snprintf(msg, sizeof msg, "keel: crashpoint %s hit\n", name);
    if (m > 0) {
        (void)!write(STDERR_FILENO, msg, (size_t)m);
    }
    raise(SIGKILL);
}

static void persist_work(uv_work_t *w)
{
    struct persist_job *j = w->data;
    struct node *n = j->n;
    struct raft_ready *rd = j->rd;
    double t0 = metrics_now();
    if (j->save_received) {
        /* The image is installed (process_ready): the log may now start
         * after it. */
        j->what = "failed to save the received snapshot's WAL marker";
        if ((j->rv = wal_save_snapshot(n->wal, &j->received)) != 0) {
            return;
        }
        crashpoint("snap-marker");
    }
    if (j->compact) {
        /* The marker says "entries <= index are in the store": make the
         * store's consistent_index durable first (it runs with
         * MDB_NOSYNC), then the marker, then let the old segments go. */
        j->what = "failed to sync the store before a raft snapshot";
        if ((j->rv = mvcc_sync(n->mvcc)) != 0) {
            return;
        }
        crashpoint("compact-synced");
        j->what = "failed to save the raft snapshot's WAL marker";
        if ((j->rv = wal_save_snapshot(n->wal, &j->snap)) != 0) {
            return;
        }
        crashpoint("compact-marker");
        /* An unlink failure leaves a usable log with more segments; a
         * failed directory sync breaks the WAL and the next append
         * aborts. */
        (void)wal_release(n->wal, j->snap.index);
        crashpoint("compact-released");
    }
    if (rd != NULL && (rd->n_entries > 0 || rd->has_hard_state)) {
        struct wal_hard_state hs = {.term = rd->hard_state.term,
                                    .vote = rd->hard_state.vote,
                                    .commit = rd->hard_state.commit};
        j->what = "failed to save Raft hard state and entries";
        j->rv = (j->sync ? wal_append : wal_write)(
            n->wal, j->ents, rd->n_entries, rd->has_hard_state ? &hs : NULL);
    }
    if (j->sync) {
        metrics_histogram_observe(&metrics_core.wal_fsync,
                                  metrics_now() - t0);
    }
}

static void after_persist(struct node *n, struct raft_ready *rd);
static void finish_close(struct node *n);
static void fire_pause(struct node *n);

static void persist_done(uv_work_t *w, int status)
{
    struct persist_job *j = w->data;
    struct node *n = j->n;
    struct raft_ready *rd = j->rd;
    if (status != 0 || j->rv != 0) {
        fatal(j->what != NULL ? j->what : "persist",
              status != 0 ? status : j->rv, wal_errmsg(n->wal));
    }
    free(j->ents);
    free(j);
    if (rd != NULL) {
        after_persist(n, rd);
        return;
    }
    /* A compaction-only job. */
    n->busy = false;
    if (n->closing) {
        fire_pause(n);
        if (n->holds == 0) {
            finish_close(n);
        }
        return;
    }
    process_ready(n);
}

static void apply_committed(struct node *n, struct raft_ready *rd);
static void serve_reads(struct node *n);

/* node_pause: the barrier is reached once no Ready is in flight. */
static void fire_pause(struct node *n)
{
    if (n->paused && !n->busy && n->pause_cb != NULL) {
        node_pause_cb cb = n->pause_cb;
        n->pause_cb = NULL;
        cb(n->pause_arg);
    }
}

/* ---- outbound messages and snapshots ------------------------------------ */

static void snap_out_free(struct node *n, struct snap_out *so)
{
    struct snap_out **pp = &n->snaps_out;
    while (*pp != NULL && *pp != so) {
        pp = &(*pp)->next;
    }
    if (*pp == so) {
        *pp = so->next;
    }
    unlink(so->path);
    free(so->msg);
    free(so);
}

static void snap_copy_work(uv_work_t *w)
{
    struct snap_out *so = w->data;
    int fd = open(so->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        so->rv = -errno;
        return;
    }
    /* A compacting copy: free pages stay behind, the image is minimal. */
    so->rv = mvcc_copy_fd(so->n->mvcc, fd, 1);
    if (close(fd) != 0 && so->rv == 0) {
        so->rv = -errno;
    }
}

static void snap_copy_done(uv_work_t *w, int status)
{
    struct snap_out *so = w->data;
    struct node *n = so->n;
    if (status != 0 && so->rv == 0) {
        so->rv = status;
    }
    if (n->closing || so->rv != 0) {
        if (!n->closing) {
            log_warn("etcdserver",
                     "failed to make the snapshot image for %016" PRIx64
                     ": %s",
                     so->to, keel_strerror(so->rv));
            raft_report_snapshot(n->raft, so->to, true);
            kick(n);
        }
        snap_out_free(n, so);
    } else {
        so->sending = true;
        log_info("etcdserver",
                 "sending database snapshot to %016" PRIx64 " (%s)", so->to,
                 so->path);
        n->opts.send(n->opts.send_arg, so->to, so->msg, so->len, so->path);
    }
    node_release(n); /* last: may finish a close and free n */
}

/* raft wants to send a snapshot to m->to: copy the store off the loop
 * thread (node_hold keeps it open), then hand the image to the
 * transport. The image's consistent_index is >= the snapshot index in
 * m (the store has applied at least that much). */
static void start_snap_out(struct node *n, const struct raft_message *m)
{
    static uint64_t seq;
    struct snap_out *so = calloc(1, sizeof *so);
    if (so == NULL || n->opts.send == NULL ||
        raft_codec_pack(m, n->opts.cluster_id, &so->msg, &so->len) != 0) {
        free(so);
        raft_report_snapshot(n->raft, m->to, true);
        return;
    }
    so->n = n;
    so->to = m->to;
    snprintf(so->path, sizeof so->path,
             "%s/member/snap/%016" PRIx64 "-%016" PRIx64 "-%" PRIu64
             ".snap.out",
             n->data_dir, m->snapshot->meta.index, m->to, ++seq);
    so->work.data = so;
    so->next = n->snaps_out;
    n->snaps_out = so;
    node_hold(n);
    int rv = uv_queue_work(n->loop, &so->work, snap_copy_work, snap_copy_done);
    if (rv != 0) {
        n->holds--;
        snap_out_free(n, so);
        raft_report_snapshot(n->raft, m->to, true);
    }
}

static void send_msgs(struct node *n, const struct raft_message *msgs,
                      size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const struct raft_message *m = &msgs[i];
        if (m->type == RAFT_MSG_SNAP) {
            start_snap_out(n, m);
            continue;
        }
        if (n->opts.send == NULL) {
            continue; /* no transport: a single member */
        }
        uint8_t *buf = NULL;
        size_t len = 0;
        if (raft_codec_pack(m, n->opts.cluster_id, &buf, &len) != 0) {
            continue; /* dropped: raft retries */
        }
        n->opts.send(n->opts.send_arg, m->to, buf, len, NULL);
        free(buf);
    }
}

/* ---- received snapshots ------------------------------------------------- */

/* Every image stepped before raft_ready() was decided by that Ready: the
 * one its snapshot names is returned (unlinked from the list), the others
 * are deleted. */
static struct snap_in *take_snap_in(struct node *n, const struct raft_ready *rd)
{
    struct snap_in *found = NULL;
    while (n->snaps_in != NULL) {
        struct snap_in *si = n->snaps_in;
        n->snaps_in = si->next;
        if (found == NULL && rd->has_snapshot &&
            si->index == rd->snapshot.meta.index &&
            si->term == rd->snapshot.meta.term) {
            found = si;
            continue;
        }
        unlink(si->path);
        free(si->path);
        free(si);
    }
    return found;
}

/* Replace the store with the leader's image, before the WAL marker that
 * says the log starts after it (a crash in between restarts with the new
 * store and the old log: entries <= its consistent_index are skipped).
 * No reader may have the store open (holds == 0). */
static void install_snapshot(struct node *n, const struct raft_ready *rd,
                             struct snap_in *img)
{
    const struct raft_snapshot_meta *meta = &rd->snapshot.meta;
    int rv = mvcc_replace(n->mvcc, img->path);
    if (rv != 0) {
        fatal("failed to install the received snapshot", rv,
              mvcc_errmsg(n->mvcc));
    }
    crashpoint("snap-renamed");
    free(img->path);
    free(img);
    KEEL_NODE_CHECK(mvcc_consistent_index(n->mvcc) >= meta->index,
                    "snapshot image at consistent index %" PRIu64
                    " is older than its raft snapshot at %" PRIu64,
                    mvcc_consistent_index(n->mvcc), meta->index);
    rv = v2store_reload(n->v2);
    if (rv != 0) {
        fatal("load the v2 store from the received snapshot", rv, NULL);
    }
    n->n_alarms = 0;
    if (mvcc_table_foreach(n->mvcc, NULL, MVCC_TABLE_ALARM, load_alarm, n) !=
        0) {
        log_error("etcdserver", "load alarms from the snapshot: %s",
                  mvcc_errmsg(n->mvcc));
    }
    n->applied = meta->index;
    n->applied_term = meta->term;
    n->applied_conf = meta->conf_state;
    n->last_event_rev = mvcc_revision(n->mvcc);
    n->compact_pending = true;
    n->wal_snap_due = false; /* older than this snapshot */
    log_info("etcdserver",
             "applied snapshot at index %" PRIu64 " term %" PRIu64
             " (store at consistent index %" PRIu64 ", revision %" PRId64 ")",
             meta->index, meta->term, mvcc_consistent_index(n->mvcc),
             mvcc_revision(n->mvcc));
    /* Readers of the store see the new history from now on: tell the
     * watch hub, the lessor and the transport at once (the WAL marker
     * follows; a crash before it restarts on this store too). */
    if (n->opts.on_snapshot != NULL) {
        n->opts.on_snapshot(n->opts.on_snapshot_arg, meta->index,
                            mvcc_revision(n->mvcc));
    }
}

/* ---- the Ready cycle, continued ----------------------------------------- */

/* Persist rd (NULL: only a due compaction) on the thread pool, or inline
 * when nothing needs an fdatasync; then after_persist. */
static void start_persist(struct node *n, struct raft_ready *rd)
{
    bool compact = n->wal_snap_due;
    bool has_snap = rd != NULL && rd->has_snapshot;
    size_t n_entries = rd != NULL ? rd->n_entries : 0;
    if (rd != NULL && n_entries == 0 && !rd->has_hard_state && !has_snap &&
        !compact) {
        after_persist(n, rd);
        return;
    }
    struct persist_job *j = calloc(1, sizeof *j);
    struct wal_entry *ents = n_entries ? calloc(n_entries, sizeof *ents) : NULL;
    if (j == NULL || (n_entries && ents == NULL)) {
        fatal("persist", KEEL_ENOMEM, NULL);
    }
    for (size_t i = 0; i < n_entries; i++) {
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
    if (has_snap) {
        j->save_received = true;
        j->received.index = rd->snapshot.meta.index;
        j->received.term = rd->snapshot.meta.term;
        conf_to_wal(&rd->snapshot.meta.conf_state, &j->received.conf);
    }
    if (compact) {
        j->compact = true;
        j->snap = n->wal_snap;
        n->wal_snap_due = false;
    }
    /* etcd's MustSync: only new entries or a new term/vote need the
     * fdatasync before raft may act on them. A commit index alone does not:
     * a lost commit is re-learned from the leader (or, on a single member,
     * re-committed after the restart's election), and entries above
     * consistent_index are re-applied idempotently. Without this a
     * sequential put paid two fdatasyncs (its entries, then its commit).
     * Snapshot markers always sync. */
    struct wal_hard_state last = wal_hard_state(n->wal);
    j->sync = n_entries > 0 || has_snap || compact ||
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

/* Continue a Ready once no worker reads the store (a snapshot install
 * needs that): install, send the leader traffic, persist. */
static void continue_ready(struct node *n, struct raft_ready *rd,
                           struct snap_in *img)
{
    if (img != NULL) {
        install_snapshot(n, rd, img);
    }
    /* rd->msgs: leader traffic may leave before our own fsync. */
    send_msgs(n, rd->msgs, rd->n_msgs);
    /* Apply while the disk thread persists this Ready's entries, as etcd
     * does (its apply goroutine runs beside raftNode's storage.Save).
     * Ordering invariant: raft hands out only committed entries that were
     * already durable in our WAL before this Ready (raft__log_max_apply:
     * min(commit, stable index)), and committed means durable on a quorum.
     * So applying them, and answering their proposers, needs nothing from
     * the fdatasync in flight, and the store never gets ahead of the WAL
     * (consistent_index <= the WAL's durable last index). Not done when
     * the persist job touches the store or the log's start: a compaction
     * syncs the store on the thread pool (mvcc_sync must not race an
     * apply txn) and a snapshot Ready's marker must precede entries
     * applied on top of it; those apply after the persist as before. */
    n->applied_early = false;
    if (rd->n_committed > 0 && !rd->has_snapshot && !n->wal_snap_due) {
        apply_committed(n, rd);
        n->applied_early = true;
        serve_reads(n); /* reads waiting for this apply */
    }
    start_persist(n, rd);
}

static void process_ready(struct node *n)
{
    if (n->paused) {
        fire_pause(n);
        return;
    }
    if (n->busy || n->raft == NULL || n->closing) {
        return;
    }
    if (!raft_has_ready(n->raft)) {
        if (n->wal_snap_due) {
            n->busy = true;
            start_persist(n, NULL);
        }
        return;
    }
    struct raft_ready *rd = raft_ready(n->raft);
    if (rd == NULL) {
        fatal("raft ready", KEEL_ENOMEM, NULL);
    }
    n->busy = true;
    struct snap_in *img = take_snap_in(n, rd);
    if (rd->has_snapshot && img == NULL) {
        /* raft restores only from a MsgSnap, and node_step refuses those
         * without an image. */
        fatal("raft snapshot without an image", KEEL_ECORRUPT, NULL);
    }
    if (img != NULL && n->holds > 0) {
        /* A snapshot copy or a Snapshot RPC reads the store: the install
         * waits for its node_release. */
        n->parked = rd;
        n->parked_img = img;
        return;
    }
    continue_ready(n, rd, img);
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
static void maybe_compact(struct node *n);

static void after_persist(struct node *n, struct raft_ready *rd)
{
    if (rd->has_snapshot) {
        int rv = raft_memstore_apply_snapshot(n->ms, &rd->snapshot);
        if (rv != 0) {
            fatal("apply snapshot to raft log", KEEL_EIO, raft_strerror(rv));
        }
        n->snap_index = rd->snapshot.meta.index;
    }
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
    /* Votes, append responses...: each may promise what was just made
     * durable. */
    send_msgs(n, rd->msgs_after_persist, rd->n_msgs_after_persist);
    if (rd->n_committed > 0 && !n->applied_early) {
        apply_committed(n, rd);
    }
    n->applied_early = false;
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
    maybe_compact(n);
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

/* etcd's snapshot trigger (etcdserver/server.go triggerSnapshot): once
 * more than snapshot_count entries were applied since the last raft
 * snapshot, record one at the applied index, with the configuration as of
 * that index, and compact the in-memory log keeping
 * snapshot_catchup_entries for followers slightly behind. The WAL marker
 * and segment release follow in the next persist job (the memstore may run
 * ahead of the WAL: a crash before it just keeps more log). */
static void maybe_compact(struct node *n)
{
    uint64_t a = n->applied;
    if (a <= n->snap_index || a - n->snap_index <= n->opts.snapshot_count ||
        a > raft_memstore_last_index(n->ms)) {
        return;
    }
    int rv = raft_memstore_create_snapshot(n->ms, a, &n->applied_conf, NULL);
    if (rv != 0) {
        log_warn("etcdserver", "raft snapshot at %" PRIu64 ": %s", a,
                 raft_strerror(rv));
        return;
    }
    n->snap_index = a;
    uint64_t keep = n->opts.snapshot_catchup_entries;
    if (a > keep && a - keep >= raft_memstore_first_index(n->ms)) {
        raft_memstore_compact(n->ms, a - keep);
    }
    n->wal_snap.index = a;
    n->wal_snap.term = n->applied_term;
    conf_to_wal(&n->applied_conf, &n->wal_snap.conf);
    n->wal_snap_due = true;
    log_info("etcdserver",
             "saved snapshot at index %" PRIu64
             "; compacted raft logs at %" PRIu64,
             a, a > keep ? a - keep : 0);
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
    if (--n->holds > 0) {
        return;
    }
    if (n->parked != NULL) {
        /* A Ready with a snapshot to install waited for the readers. */
        struct raft_ready *rd = n->parked;
        struct snap_in *img = n->parked_img;
        n->parked = NULL;
        n->parked_img = NULL;
        if (n->closing) {
            unlink(img->path);
            free(img->path);
            free(img);
            n->busy = false; /* never persisted: raft_free drops it */
        } else {
            continue_ready(n, rd, img);
            return;
        }
    }
    if (n->closing && !n->busy) {
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
    /* Auth first: permission checks and the auth ops (auth_store.c). */
    ProtobufCMessage *resp = auth_store_apply(n->mvcc, w, req, a, rv);
    if (*rv != 0 || resp != NULL) {
        return resp;
    }
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
            if (*rv == 0) {
                /* etcd publishes through its v2 store (/0/members) */
                *rv = v2store_bump_index(n->v2, w);
            }
            break;
        }
        case KEELPB__REQUEST__OP_CLUSTER_VERSION: {
            static const char key[] = "cluster_version";
            const char *v = req->cluster_version;
            *rv = mvcc_table_put(w, MVCC_TABLE_MEMBERS, key, sizeof key - 1, v,
                                 strlen(v));
            if (*rv == 0) {
                *rv = v2store_bump_index(n->v2, w); /* etcd: /0/version */
            }
            break;
        }
        case KEELPB__REQUEST__OP_V2: {
            Keelpb__V2Response *r = NULL;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            *rv = v2store_apply(n->v2, w, req->v2,
                                (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec,
                                a, &r);
            resp = r != NULL ? &r->base : NULL;
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

/* A conf change applied in a batch, told to on_conf_change after the
 * commit. */
struct applied_conf
{
    struct raft_conf_change cc; /* context referenced */
    struct raft_conf_state cs;
    bool replayed;
};

struct applied
{
    struct waiter *waiter; /* NULL: nobody waits here */
    struct applied_conf *conf;
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

static bool conf_has(const uint64_t *ids, uint32_t n, uint64_t id)
{
    for (uint32_t i = 0; i < n; i++) {
        if (ids[i] == id) {
            return true;
        }
    }
    return false;
}

/* Whether cs (the configuration after cc) shows cc's effect. */
static bool conf_took_effect(const struct raft_conf_change *cc,
                             const struct raft_conf_state *cs)
{
    switch (cc->type) {
        case RAFT_CONF_ADD_NODE:
            return conf_has(cs->voters, cs->n_voters, cc->node_id);
        case RAFT_CONF_ADD_LEARNER_NODE:
            return conf_has(cs->learners, cs->n_learners, cc->node_id) ||
                   conf_has(cs->voters, cs->n_voters, cc->node_id);
        default:
            return true;
    }
}

/* The members table (etcd's members bucket, keel's encoding):
 *   "<id %016x>/raftAttributes" -> packed etcdserverpb.Member (id, name,
 *                                  peerURLs, isLearner) of the last
 *                                  add/update/promote
 *   "<id %016x>/attributes"     -> keelpb.MemberAttributes (published)
 * and members_removed "<id %016x>" -> "removed". isLearner follows the
 * change (AddLearnerNode: true, AddNode: false; UpdateNode keeps it). */
static int apply_conf_to_table(struct node *n, struct mvcc_write *w,
                               const struct raft_conf_change *cc)
{
    char key[64];
    int kl;
    int rv;
    if (cc->type == RAFT_CONF_REMOVE_NODE) {
        static const char *const suffix[] = {"raftAttributes", "attributes"};
        for (size_t i = 0; i < 2; i++) {
            kl = snprintf(key, sizeof key, "%016" PRIx64 "/%s", cc->node_id,
                          suffix[i]);
            rv = mvcc_table_del(w, MVCC_TABLE_MEMBERS, key, (size_t)kl);
            if (rv != 0 && rv != KEEL_ENOTFOUND) {
                return rv;
            }
        }
        kl = snprintf(key, sizeof key, "%016" PRIx64, cc->node_id);
        rv = mvcc_table_put(w, MVCC_TABLE_MEMBERS_REMOVED, key, (size_t)kl,
                            "removed", 7);
        /* etcd deletes /0/members/<id> and creates /0/removed_members/<id>
         * in its v2 store: two indexes */
        if (rv == 0) {
            rv = v2store_bump_index(n->v2, w);
        }
        if (rv == 0) {
            rv = v2store_bump_index(n->v2, w);
        }
        return rv;
    }
    kl = snprintf(key, sizeof key, "%016" PRIx64 "/raftAttributes",
                  cc->node_id);
    Etcdserverpb__Member *m = NULL;
    if (cc->context != NULL) {
        m = etcdserverpb__member__unpack(&n->scratch.pb, cc->context->len,
                                         cc->context->data);
    }
    Etcdserverpb__Member empty = ETCDSERVERPB__MEMBER__INIT;
    if (m == NULL) {
        m = &empty;
    }
    m->id = cc->node_id;
    if (cc->type == RAFT_CONF_ADD_NODE) {
        m->islearner = false;
    } else if (cc->type == RAFT_CONF_ADD_LEARNER_NODE) {
        m->islearner = true;
    } else {
        void *old = NULL;
        size_t olen = 0;
        if (mvcc_table_get(n->mvcc, w, MVCC_TABLE_MEMBERS, key, (size_t)kl,
                           &n->scratch, &old, &olen) == 0) {
            Etcdserverpb__Member *om =
                etcdserverpb__member__unpack(&n->scratch.pb, olen, old);
            if (om != NULL) {
                m->islearner = om->islearner;
            }
        }
    }
    size_t len = etcdserverpb__member__get_packed_size(m);
    uint8_t *buf = keel_arena_alloc(&n->scratch, len ? len : 1);
    if (buf == NULL) {
        return KEEL_ENOMEM;
    }
    etcdserverpb__member__pack(m, buf);
    rv = mvcc_table_put(w, MVCC_TABLE_MEMBERS, key, (size_t)kl, buf, len);
    if (rv == 0) {
        /* etcd's member add/update writes /0/members/<id>/raftAttributes */
        rv = v2store_bump_index(n->v2, w);
    }
    return rv;
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
            raft_apply_conf_change(n->raft, &cc, &n->applied_conf);
            struct applied_conf *ac = calloc(1, sizeof *ac);
            if (ac == NULL) {
                fatal("apply conf change", KEEL_ENOMEM, NULL);
            }
            ac->cc = cc; /* takes the context reference */
            ac->cs = n->applied_conf;
            ac->replayed = !mvcc_write_should_apply(w, e->index);
            res[i].conf = ac;
            res[i].waiter = cc.id != 0 ? waiter_take(n, cc.id) : NULL;
            if (!conf_took_effect(&cc, &ac->cs)) {
                /* raft skipped it (too many members): so does the table */
                res[i].rv = KEEL_EINVAL;
            } else if (!ac->replayed) {
                rv = apply_conf_to_table(n, w, &cc);
                if (rv != 0) {
                    fatal("apply conf change", rv, mvcc_errmsg(n->mvcc));
                }
            }
            continue;
        }
        if (e->data == NULL || e->data->len == 0) {
            /* A new leader's empty entry: once the leader applies the one
             * of its own term, everything before is applied too. */
            leader_applied_own_entry(n, e->term);
            continue;
        }
        if (n->thead == NULL && !mvcc_write_should_apply(w, e->index)) {
            /* Replay of an entry the store has (restart: up to
             * snapshot_count of them in one batch), and nobody waits for
             * anything: no need to decode it. */
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
    if (last_index < mvcc_consistent_index(n->mvcc)) {
        /* A replay wholly below the store: every entry was skipped, the
         * txn wrote nothing, and committing would move consistent_index
         * back. This happens when the store ran ahead of the WAL: a
         * crash after a received image was renamed over the db but
         * before its WAL marker restarts on the new store and the old
         * log (raft re-delivers the old log's commits first). */
        mvcc_write_abort(w);
        rv = 0;
    } else {
        rv = mvcc_write_commit(w, last_index, last_term);
    }
    metrics_histogram_observe(&metrics_core.backend_commit,
                              metrics_now() - t0);
    if (rv != 0) {
        fatal("commit apply batch", rv, mvcc_errmsg(n->mvcc));
    }
    crashpoint("apply-committed");
    n->applied = last_index;
    n->applied_term = last_term;
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
        struct applied_conf *ac = res[i].conf;
        if (ac == NULL) {
            continue;
        }
        if (n->opts.on_conf_change != NULL && res[i].rv == 0) {
            struct node_conf_change c = {
                .type = ac->cc.type,
                .node_id = ac->cc.node_id,
                .ctx = ac->cc.context ? ac->cc.context->data : NULL,
                .ctx_len = ac->cc.context ? ac->cc.context->len : 0,
                .voters = ac->cs.voters,
                .n_voters = ac->cs.n_voters,
                .learners = ac->cs.learners,
                .n_learners = ac->cs.n_learners,
                .replayed = ac->replayed};
            n->opts.on_conf_change(n->opts.on_conf_change_arg, &c);
        }
        raft_buf_unref(ac->cc.context);
        free(ac);
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
    b->issued_ms = uv_now(n->loop);
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
    r->deadline_ms = uv_now(n->loop) + request_timeout_ms(n);
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
    kick(n); /* on_kick proposes everything queued until then at once */
    return 0;
}

/* Hand queued proposals to raft, in order, while there is a leader. A
 * proposal raft drops (no leader, a transfer in progress) stays queued and
 * is retried on the next tick or Ready.
 *
 * Consecutive normal proposals go to raft as one batch (node_propose only
 * queues them; on_kick proposes what one loop iteration queued): one
 * MsgProp, so the leader appends them together and sends one MsgApp per
 * follower for the batch rather than one per request (each a frame, a
 * write(2), a follower step and an MsgAppResp), and a follower forwards
 * them to the leader in one message. */
#define NODE_PROPOSE_BATCH 256
#define NODE_PROPOSE_BATCH_BYTES (1024 * 1024) /* raft's max_size_per_msg */
static void propose_pending(struct node *n)
{
    struct raft_buf *bufs[NODE_PROPOSE_BATCH];
    while (n->pending != NULL && !n->closing) {
        struct pending *p = n->pending;
        size_t nb = 0;
        int rv;
        if (p->buf != NULL) {
            size_t bytes = 0;
            for (struct pending *q = p;
                 q != NULL && q->buf != NULL && nb < NODE_PROPOSE_BATCH &&
                 (nb == 0 || bytes + q->buf->len <= NODE_PROPOSE_BATCH_BYTES);
                 q = q->next) {
                bufs[nb++] = q->buf;
                bytes += q->buf->len;
            }
            rv = nb == 1 ? raft_propose(n->raft, bufs[0])
                         : raft_propose_batch(n->raft, bufs, nb);
        } else {
            nb = 1;
            rv = raft_propose_conf_change(n->raft, &p->cc);
        }
        if (rv == RAFT_EPROPOSAL_DROPPED) {
            return;
        }
        for (size_t i = 0; i < nb; i++) {
            p = n->pending;
            n->pending = p->next;
            if (n->pending == NULL) {
                n->pending_tail = &n->pending;
            }
            if (rv != 0) {
                pending_fail(n, p,
                             rv == RAFT_ENOMEM ? KEEL_ENOMEM : KEEL_EINVAL);
                continue;
            }
            raft_buf_unref(p->buf);
            raft_buf_unref(p->cc.context);
            struct waiter *w = p->w;
            w->deadline_ms = p->deadline_ms;
            free(p);
            waiter_add(n, w);
        }
        kick(n);
    }
}

/* ---- status and close --------------------------------------------------- */

struct mvcc_store *node_store(struct node *n)
{
    return n->mvcc;
}

struct v2store *node_v2store(struct node *n)
{
    return n->v2;
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
    st->snapshot_index = n->snap_index;
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
        pending_fail(n, p, KEEL_ESTOPPED);
    }
    n->pending_tail = &n->pending;
    n->thead = n->ttail = NULL;
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
    while (n->snaps_out != NULL) {
        snap_out_free(n, n->snaps_out); /* no copy runs: holds == 0 */
    }
    while (n->snaps_in != NULL) {
        struct snap_in *si = n->snaps_in;
        n->snaps_in = si->next;
        unlink(si->path);
        free(si->path);
        free(si);
    }
    raft_free(n->raft);
    n->raft = NULL;
    raft_memstore_free(n->ms);
    int rv = mvcc_sync(n->mvcc);
    if (rv != 0) {
        log_error("etcdserver", "sync store at close: %s",
                  mvcc_errmsg(n->mvcc));
    }
    v2store_free(n->v2);
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
    struct raft_message m;
    struct snap_in *si = NULL;
    int rv = n->closing ? KEEL_ESTOPPED : raft_codec_unpack(msg, len, &m);
    if (rv != 0) {
        unlink(path);
        return rv;
    }
    if (m.cluster_id != n->opts.cluster_id || m.type != RAFT_MSG_SNAP ||
        m.snapshot == NULL || m.snapshot->meta.index == 0) {
        rv = KEEL_EINVAL;
        goto err;
    }
    si = calloc(1, sizeof *si);
    if (si == NULL || (si->path = strdup(path)) == NULL) {
        rv = KEEL_ENOMEM;
        goto err;
    }
    si->index = m.snapshot->meta.index;
    si->term = m.snapshot->meta.term;
    /* Listed before raft_step: the next Ready decides about it (installs
     * it if raft restored from it, else deletes it). */
    si->next = n->snaps_in;
    n->snaps_in = si;
    rv = raft_step(n->raft, &m);
    raft_codec_message_free(&m);
    kick(n);
    return rv == RAFT_ESTEP_LOCAL_MSG ? KEEL_EINVAL : 0;
err:
    free(si);
    raft_codec_message_free(&m);
    unlink(path);
    return rv;
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
    /* The oldest image handed to send() for id is done with. */
    struct snap_out *found = NULL;
    for (struct snap_out *so = n->snaps_out; so != NULL; so = so->next) {
        if (so->to == id && so->sending) {
            found = so;
        }
    }
    if (found != NULL) {
        snap_out_free(n, found);
    }
    if (n->raft != NULL && !n->closing) {
        raft_report_snapshot(n->raft, id, !ok);
        kick(n);
    }
}

int node_propose_conf_change(struct node *n, int type, uint64_t node_id,
                             const uint8_t *ctx, size_t ctx_len,
                             node_propose_cb cb, void *arg)
{
    if (n->closing) {
        return KEEL_ESTOPPED;
    }
    if (node_id == 0 || (type != RAFT_CONF_ADD_NODE &&
                         type != RAFT_CONF_REMOVE_NODE &&
                         type != RAFT_CONF_UPDATE_NODE &&
                         type != RAFT_CONF_ADD_LEARNER_NODE)) {
        return KEEL_EINVAL;
    }
    if (n->conf_inflight) {
        return KEEL_EBUSY;
    }
    struct raft_buf *cbuf = NULL;
    if (ctx_len > 0) {
        cbuf = raft_buf_new(raft_heap_default(), ctx, ctx_len);
        if (cbuf == NULL) {
            return KEEL_ENOMEM;
        }
    }
    struct waiter *w = calloc(1, sizeof *w);
    struct pending *p = calloc(1, sizeof *p);
    if (w == NULL || p == NULL) {
        free(w);
        free(p);
        raft_buf_unref(cbuf);
        return KEEL_ENOMEM;
    }
    w->id = ++n->next_id;
    w->cb = cb;
    w->arg = arg;
    w->conf = true;
    p->cc.id = w->id; /* the waiter's key when the entry is applied */
    p->cc.type = type;
    p->cc.node_id = node_id;
    p->cc.context = cbuf;
    p->w = w;
    p->deadline_ms = uv_now(n->loop) + request_timeout_ms(n);
    *n->pending_tail = p;
    n->pending_tail = &p->next;
    n->conf_inflight = true;
    metrics_core.proposals_pending++;
    propose_pending(n);
    return 0;
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
