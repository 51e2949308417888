/*
 * The Raft state machine: elections, replication, commit, snapshots sent
 * and received, ReadIndex, membership, leadership transfer, and the Ready /
 * advance hand-off (etcd raft.go + rawnode.go, written for keel).
 *
 * Happy path: a follower's election timer runs out (raft_tick) → pre-vote
 * round (term+1 asked, nothing persisted) → vote round (term bumped, self
 * vote persisted before any MsgVote leaves: msgs_after_persist) → leader
 * appends an empty entry of its term → MsgApp pipelines to each follower
 * within its inflight window → followers persist then ack → the leader
 * counts matches (its own only after its own persist, at raft_advance) and
 * commits entries of its own term → committed entries are handed out.
 *
 * Failure modes handled here: stale terms (dropped or answered so the
 * sender steps down), disruptive candidates (ignored while a leader is
 * heard: stickiness), a leader cut from a quorum (check-quorum steps it
 * down), rejected appends (back off by the follower's term hint), followers
 * whose next entry was compacted (snapshot), duplicated and reordered
 * messages (all idempotent: acks name the index they acknowledge, and
 * truncation happens only on a real conflict).
 *
 * Membership: single-server changes (thesis §4.1), one at a time, each
 * taking effect on every member as soon as the entry is in its log
 * (appended, committed or not), and rolled back if that entry is
 * truncated. Why this is safe: any majority of a configuration C and any
 * majority of C±1 member intersect, so two leaders cannot be elected in
 * one term by C and C±1; a leader appends a change only when the previous
 * one is committed and after an entry of its own term is committed (the
 * fix for Ongaro's 2015 raft-dev bug: pending_conf_index starts at the new
 * leader's no-op), so at most two adjacent configurations are ever in use.
 * Why not etcd's apply-time semantics: a member that has the entry removing
 * the old leader but not its commit keeps the old configuration and needs
 * the removed member's vote, which that member (with a longer log) may
 * refuse for ever; an earlier version of the simulator found that deadlock
 * (test_raft_uncommitted_self_removal_does_not_deadlock replays it).
 * A leader that removes or demotes itself keeps leading without counting
 * itself until the change commits, then hands leadership to the most
 * up-to-date voter (thesis §4.2.2).
 */
#include <assert.h>
#include <string.h>

#include "raft_impl.h"

#define CAMPAIGN_TRANSFER "CampaignTransfer"

enum { VOTE_NONE = 0, VOTE_GRANTED = 1, VOTE_REJECTED = 2 };
enum { CAMPAIGN_PRE = 0, CAMPAIGN_ELECTION = 1, CAMPAIGN_TRANSFER_KIND = 2 };

struct read_req
{
    uint64_t index;
    uint64_t from; /* RAFT_NONE or self: local; else a follower */
    struct raft_buf *ctx;
    uint64_t acks[RAFT_MAX_MEMBERS];
    int n_acks;
};

struct msg_vec
{
    struct raft_message *m;
    size_t n, cap;
};

struct raft
{
    const struct raft_heap *heap;
    uint64_t id;
    uint64_t term;
    uint64_t vote;
    int state;
    uint64_t lead;
    uint64_t lead_transferee;
    /* A leader whose own removal (or demotion) committed: it accepts no
     * proposals and hands leadership to a voter (the new leader's term
     * makes it step down). */
    bool leaving;
    uint64_t pending_conf_index;
    uint64_t uncommitted_size;
    struct raft__log log;

    struct progress prs[RAFT_MAX_MEMBERS];
    int n_prs;

    /* Configuration tracking (append-time): conf_base is the configuration
     * of the snapshot plus every committed change; hist holds one entry per
     * uncommitted conf change in the log, oldest first (rolled back when
     * truncated). Log entries up to conf_scanned have been looked at. */
    struct raft_conf_state conf_base;
    struct conf_hist
    {
        uint64_t index;
        struct raft_conf_state cs;
    } * hist;
    int n_hist, cap_hist;
    uint64_t conf_scanned;
    /* The configuration as of the last applied conf change (what the
     * application records in its snapshots; raft_apply_conf_change). */
    struct raft_conf_state applied_conf;

    uint64_t ticks; /* raft_tick calls since start: a local clock */
    int election_elapsed;
    int heartbeat_elapsed;
    int election_timeout;
    int heartbeat_timeout;
    int randomized_election_timeout;
    bool check_quorum;
    bool pre_vote;
    int read_only_option;
    uint64_t max_msg_size;
    uint64_t max_uncommitted_size;
    int max_inflight;
    int test_bug;

    uint64_t (*rand)(void *ctx);
    void *rand_ctx;
    uint64_t rand_state;

    /* ReadIndex: requests waiting for a heartbeat quorum, in order; and
     * requests waiting for the first commit of this leader's term. */
    struct read_req *reads;
    int n_reads, cap_reads;
    struct raft_message *pending_reads;
    int n_pending_reads, cap_pending_reads;
    struct raft_read_state *read_states;
    size_t n_read_states, cap_read_states;

    struct msg_vec msgs;
    struct msg_vec msgs_after;

    struct raft_hard_state prev_hs; /* last handed out in a Ready */
    uint64_t prev_lead;
    int prev_state;

    bool ready_out; /* a Ready is outstanding */
    struct raft_ready rd;
    /* The Ready's arrays, kept with their capacity from one Ready to the
     * next so a steady stream of Readys allocates nothing for them. */
    struct raft__ents rd_ents, rd_committed;
    struct msg_vec rd_msgs, rd_after, spare_msgs, spare_after;
};

static int step_internal(struct raft *r, const struct raft_message *m);
static void conf_sync(struct raft *r);
static void leader_committed(struct raft *r);

/* ---- randomness ---------------------------------------------------------- */

static uint64_t next_rand(struct raft *r)
{
    uint64_t z;
    if (r->rand != NULL) {
        return r->rand(r->rand_ctx);
    }
    /* splitmix64 */
    z = (r->rand_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void reset_randomized_election_timeout(struct raft *r)
{
    r->randomized_election_timeout =
        r->election_timeout +
        (int)(next_rand(r) % (uint64_t)r->election_timeout);
}

/* ---- members ------------------------------------------------------------- */

static struct progress *pr_get(struct raft *r, uint64_t id)
{
    int i;
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == id) {
            return &r->prs[i];
        }
    }
    return NULL;
}

static const struct progress *pr_cget(const struct raft *r, uint64_t id)
{
    return pr_get((struct raft *)r, id);
}

static struct progress *pr_add(struct raft *r, uint64_t id, bool learner)
{
    struct progress *pr;
    if (r->n_prs == RAFT_MAX_MEMBERS) {
        return NULL;
    }
    pr = &r->prs[r->n_prs++];
    memset(pr, 0, sizeof(*pr));
    pr->id = id;
    pr->learner = learner;
    pr->next = raft__log_last_index(&r->log) + 1;
    pr->recent_active = true; /* give a new member time to answer */
    pr->ins.size = r->max_inflight;
    pr->ins.buf =
        raft__malloc(r->heap, sizeof(uint64_t) * (size_t)r->max_inflight);
    return pr;
}

static void pr_remove(struct raft *r, uint64_t id)
{
    int i;
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id == id) {
            raft__free(r->heap, r->prs[i].ins.buf);
            r->prs[i] = r->prs[r->n_prs - 1];
            r->n_prs--;
            return;
        }
    }
}

static int n_voters(const struct raft *r)
{
    int i, n = 0;
    for (i = 0; i < r->n_prs; i++) {
        n += !r->prs[i].learner;
    }
    return n;
}

static int quorum(const struct raft *r)
{
    return n_voters(r) / 2 + 1;
}

static bool is_voter(const struct raft *r, uint64_t id)
{
    const struct progress *pr = pr_cget(r, id);
    return pr != NULL && !pr->learner;
}

static bool conf_has_voter(const struct raft_conf_state *cs, uint64_t id);
static const struct raft_conf_state *conf_previous(const struct raft *r);

/* May this member campaign? A voter may. So may a member whose latest
 * configuration drops it while that change is not known committed, if it
 * was a voter before: it may hold the longest log (a leader that appended
 * its own removal and lost leadership), and the members still on the old
 * configuration need it; it counts votes under the new configuration
 * (without itself), and once leader it commits the change and hands off. */
static bool promotable(const struct raft *r)
{
    if (is_voter(r, r->id)) {
        return true;
    }
    return r->n_hist > 0 && r->hist[r->n_hist - 1].index > r->log.committed &&
           conf_has_voter(conf_previous(r), r->id);
}

/* The largest index matched by a quorum of voters. */
static uint64_t quorum_match(const struct raft *r)
{
    uint64_t m[RAFT_MAX_MEMBERS];
    int n = 0, i, j;
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].learner && r->test_bug != RAFT_BUG_LEARNERS_COUNT) {
            continue;
        }
        /* insertion sort, descending */
        for (j = n; j > 0 && m[j - 1] < r->prs[i].match; j--) {
            m[j] = m[j - 1];
        }
        m[j] = r->prs[i].match;
        n++;
    }
    if (n == 0) {
        return 0;
    }
    if (r->test_bug == RAFT_BUG_LEARNERS_COUNT) {
        return m[quorum(r) - 1]; /* deliberately wrong (mutation check) */
    }
    return m[n / 2 + 1 - 1];
}

/* ---- messages ------------------------------------------------------------ */

static void msg_release(const struct raft_heap *h, struct raft_message *m)
{
    size_t i;
    for (i = 0; i < m->n_entries; i++) {
        raft_buf_unref(m->entries[i].data);
    }
    raft__free(h, m->entries);
    if (m->snapshot != NULL) {
        raft_buf_unref(m->snapshot->data);
        raft__free(h, m->snapshot);
    }
    raft_buf_unref(m->context);
    memset(m, 0, sizeof(*m));
}

static void msg_vec_push(const struct raft_heap *h,
                         struct msg_vec *v,
                         const struct raft_message *m)
{
    if (v->n == v->cap) {
        v->cap = v->cap == 0 ? 16 : v->cap * 2;
        v->m = raft__realloc(h, v->m, v->cap * sizeof(*v->m));
    }
    v->m[v->n++] = *m;
}

static void msg_vec_free(const struct raft_heap *h, struct msg_vec *v)
{
    size_t i;
    for (i = 0; i < v->n; i++) {
        msg_release(h, &v->m[i]);
    }
    raft__free(h, v->m);
    memset(v, 0, sizeof(*v));
}

/* Messages that may leave before this member's own persist: the leader's
 * traffic, and what any member says without promising anything about its
 * log or vote: a proposal or read request forwarded to the leader, and a
 * heartbeat response (it acknowledges the leader of our current term,
 * which is durable unless this Ready changes it: raft_ready then holds
 * every message back). Holding the forwarded ones behind a follower's
 * fsync delayed every request a follower received by one to two of its
 * persist cycles. */
static bool sendable_before_persist(const struct raft *r, int type)
{
    if (type == RAFT_MSG_PROP || type == RAFT_MSG_READ_INDEX ||
        type == RAFT_MSG_HEARTBEAT_RESP) {
        return true;
    }
    if (r->state != RAFT_LEADER) {
        return false;
    }
    switch (type) {
        case RAFT_MSG_APP:
        case RAFT_MSG_HEARTBEAT:
        case RAFT_MSG_SNAP:
        case RAFT_MSG_TIMEOUT_NOW:
        case RAFT_MSG_READ_INDEX_RESP:
            return true;
        default:
            return false;
    }
}

/* Queues m; takes ownership of everything m references. */
static void send(struct raft *r, struct raft_message *m)
{
    m->from = r->id;
    if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_VOTE_RESP ||
        m->type == RAFT_MSG_PRE_VOTE || m->type == RAFT_MSG_PRE_VOTE_RESP) {
        assert(m->term != 0);
    } else if (m->type != RAFT_MSG_PROP && m->type != RAFT_MSG_READ_INDEX) {
        /* proposals and forwarded reads carry no term: a local message */
        m->term = r->term;
    }
    if (sendable_before_persist(r, m->type)) {
        msg_vec_push(r->heap, &r->msgs, m);
    } else {
        msg_vec_push(r->heap, &r->msgs_after, m);
    }
}

static void send_simple(struct raft *r, int type, uint64_t to)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = type;
    m.to = to;
    send(r, &m);
}

static struct raft_entry *copy_entries(const struct raft_heap *h,
                                       const struct raft_entry *e,
                                       size_t n)
{
    struct raft_entry *out;
    size_t i;
    if (n == 0) {
        return NULL;
    }
    out = raft__malloc(h, n * sizeof(*out));
    for (i = 0; i < n; i++) {
        out[i] = e[i];
        raft_buf_ref(e[i].data);
    }
    return out;
}

/* Sends the next MsgApp (or MsgSnap) to `to`. Returns whether it sent. */
static bool maybe_send_append(struct raft *r, uint64_t to, bool send_if_empty)
{
    struct progress *pr = pr_get(r, to);
    struct raft_message m;
    struct raft__ents ents = {0};
    uint64_t term;
    int errt, erre;

    if (pr == NULL || raft__pr_is_paused(pr)) {
        return false;
    }
    memset(&m, 0, sizeof(m));
    m.to = to;
    errt = raft__log_term(&r->log, pr->next - 1, &term);
    erre = raft__log_slice(&r->log, pr->next, raft__log_last_index(&r->log) + 1,
                           r->max_msg_size, &ents);
    if (ents.n == 0 && !send_if_empty && errt == 0 && erre == 0) {
        raft__ents_free(r->heap, &ents);
        return false;
    }
    if (errt != 0 || erre != 0) {
        /* the follower's next entry is compacted: send a snapshot */
        int rv;
        raft__ents_free(r->heap, &ents);
        if (!pr->recent_active) {
            return false;
        }
        m.snapshot = raft__malloc(r->heap, sizeof(*m.snapshot));
        rv = r->log.s->snapshot(r->log.s->ctx, m.snapshot);
        if (rv != 0 || m.snapshot->meta.index == 0) {
            /* e.g. SNAP_TEMP_UNAVAILABLE: retry later */
            if (rv == 0) {
                raft_buf_unref(m.snapshot->data);
            }
            raft__free(r->heap, m.snapshot);
            return false;
        }
        m.type = RAFT_MSG_SNAP;
        raft__pr_become_snapshot(pr, m.snapshot->meta.index);
    } else {
        m.type = RAFT_MSG_APP;
        m.index = pr->next - 1;
        m.log_term = term;
        m.entries = ents.e; /* ownership moves into the message */
        m.n_entries = ents.n;
        m.commit = r->log.committed;
        if (ents.n > 0) {
            uint64_t last = ents.e[ents.n - 1].index;
            if (pr->state == RAFT_PROGRESS_REPLICATE) {
                pr->next = last + 1; /* pipelining: optimistic */
                raft__ins_add(&pr->ins, last);
            } else if (pr->state == RAFT_PROGRESS_PROBE) {
                pr->probe_sent = true;
            }
        }
    }
    send(r, &m);
    return true;
}

static void send_append(struct raft *r, uint64_t to)
{
    maybe_send_append(r, to, true);
}

static void send_heartbeat(struct raft *r, uint64_t to, struct raft_buf *ctx)
{
    const struct progress *pr = pr_get(r, to);
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HEARTBEAT;
    m.to = to;
    /* never tell a follower to commit beyond what it is known to have */
    m.commit = pr->match < r->log.committed ? pr->match : r->log.committed;
    m.index = r->ticks; /* echoed back: when this heartbeat left (lease) */
    m.context = raft_buf_ref(ctx);
    send(r, &m);
}

static void bcast_append(struct raft *r)
{
    int i;
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id != r->id) {
            send_append(r, r->prs[i].id);
        }
    }
}

static void bcast_heartbeat(struct raft *r, struct raft_buf *ctx)
{
    int i;
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].id != r->id) {
            send_heartbeat(r, r->prs[i].id, ctx);
        }
    }
}

/* ---- read index ---------------------------------------------------------- */

static void add_read_state(struct raft *r, uint64_t index, struct raft_buf *ctx)
{
    if (r->n_read_states == r->cap_read_states) {
        r->cap_read_states = r->cap_read_states ? r->cap_read_states * 2 : 8;
        r->read_states =
            raft__realloc(r->heap, r->read_states,
                          r->cap_read_states * sizeof(*r->read_states));
    }
    r->read_states[r->n_read_states].index = index;
    r->read_states[r->n_read_states].context = raft_buf_ref(ctx);
    r->n_read_states++;
}

static void reads_clear(struct raft *r)
{
    int i;
    for (i = 0; i < r->n_reads; i++) {
        raft_buf_unref(r->reads[i].ctx);
    }
    r->n_reads = 0;
    for (i = 0; i < r->n_pending_reads; i++) {
        msg_release(r->heap, &r->pending_reads[i]);
    }
    r->n_pending_reads = 0;
}

static bool buf_eq(const struct raft_buf *a, const struct raft_buf *b)
{
    size_t la = a ? a->len : 0, lb = b ? b->len : 0;
    return la == lb && (la == 0 || memcmp(a->data, b->data, la) == 0);
}

/* Answers a read request: locally or to the follower that asked. */
static void answer_read(struct raft *r,
                        uint64_t from,
                        uint64_t index,
                        struct raft_buf *ctx)
{
    if (from == RAFT_NONE || from == r->id) {
        add_read_state(r, index, ctx);
    } else {
        struct raft_message m;
        memset(&m, 0, sizeof(m));
        m.type = RAFT_MSG_READ_INDEX_RESP;
        m.to = from;
        m.index = index;
        m.context = raft_buf_ref(ctx);
        send(r, &m);
    }
}

static bool committed_entry_in_current_term(const struct raft *r)
{
    return raft__log_term_or_zero(&r->log, r->log.committed) == r->term;
}

static void read_ack(struct read_req *q, uint64_t id)
{
    int i;
    for (i = 0; i < q->n_acks; i++) {
        if (q->acks[i] == id) {
            return;
        }
    }
    if (q->n_acks < RAFT_MAX_MEMBERS) {
        q->acks[q->n_acks++] = id;
    }
}

static int read_ack_voters(const struct raft *r, const struct read_req *q)
{
    int i, n = 0;
    for (i = 0; i < q->n_acks; i++) {
        n += is_voter(r, q->acks[i]);
    }
    return n;
}

/*
 * The leader lease (ReadOnlyLeaseBased), made safe without trusting the
 * election timer of the leader alone: a follower that received a heartbeat
 * refuses every candidate but a transfer target until it has ticked
 * election_timeout times (stickiness, step_internal); heartbeats carry the
 * leader's tick count and answers echo it. So if a quorum answered
 * heartbeats sent at tick s or later, no other leader can exist before
 * about s + election_timeout ticks; we stop LEASE_MARGIN ticks earlier,
 * for tick phase (1) and clock drift (tick rates within ~10%). A member
 * restarting refuses votes for its first election timeout (it may have
 * acknowledged a heartbeat just before it crashed). Starting a transfer
 * voids the lease (the target campaigns through stickiness).
 */
#define LEASE_MARGIN 2

static bool lease_valid(const struct raft *r)
{
    uint64_t t[RAFT_MAX_MEMBERS];
    int n = 0, i, j, q = quorum(r);
    if (r->test_bug == RAFT_BUG_ENDLESS_LEASE) {
        return true; /* deliberately wrong: valid until check-quorum */
    }
    for (i = 0; i < r->n_prs; i++) {
        uint64_t v;
        if (r->prs[i].learner) {
            continue;
        }
        v = r->prs[i].id == r->id ? r->ticks : r->prs[i].lease_tick;
        for (j = n; j > 0 && t[j - 1] < v; j--) {
            t[j] = t[j - 1];
        }
        t[j] = v;
        n++;
    }
    if (n < q || t[q - 1] == 0) {
        return false;
    }
    return r->ticks + LEASE_MARGIN < t[q - 1] + (uint64_t)r->election_timeout;
}

/* The leader handles a read (m->from is the asker, m->context its ctx). */
static void leader_read_index(struct raft *r, const struct raft_message *m)
{
    struct read_req *q;
    bool lease = r->read_only_option == RAFT_READ_ONLY_LEASE_BASED &&
                 r->lead_transferee == RAFT_NONE && /* etcd-io/raft#99 */
                 !r->leaving && lease_valid(r);
    if (quorum(r) == 1 && is_voter(r, r->id)) {
        answer_read(r, m->from, r->log.committed, m->context);
        return;
    }
    if (lease) {
        answer_read(r, m->from, r->log.committed, m->context);
        return;
    }
    if (r->n_reads == r->cap_reads) {
        r->cap_reads = r->cap_reads ? r->cap_reads * 2 : 8;
        r->reads =
            raft__realloc(r->heap, r->reads, (size_t)r->cap_reads * sizeof(*q));
    }
    q = &r->reads[r->n_reads++];
    memset(q, 0, sizeof(*q));
    q->index = r->log.committed;
    q->from = m->from;
    q->ctx = raft_buf_ref(m->context);
    read_ack(q, r->id);
    bcast_heartbeat(r, m->context);
}

/* Reads that arrived before this leader committed in its term (etcd #7331:
 * answering them with an older commit index could read stale data). */
static void release_pending_reads(struct raft *r)
{
    int i, n = r->n_pending_reads;
    if (n == 0 || !committed_entry_in_current_term(r)) {
        return;
    }
    r->n_pending_reads = 0;
    for (i = 0; i < n; i++) {
        leader_read_index(r, &r->pending_reads[i]);
        msg_release(r->heap, &r->pending_reads[i]);
    }
}

static void leader_recv_read_ack(struct raft *r,
                                 uint64_t from,
                                 const struct raft_buf *ctx)
{
    int i, k;
    for (i = 0; i < r->n_reads; i++) {
        if (buf_eq(r->reads[i].ctx, ctx)) {
            break;
        }
    }
    if (i == r->n_reads) {
        return;
    }
    read_ack(&r->reads[i], from);
    if (read_ack_voters(r, &r->reads[i]) < quorum(r)) {
        return;
    }
    /* a quorum heard us after every request up to i was queued */
    for (k = 0; k <= i; k++) {
        answer_read(r, r->reads[k].from, r->reads[k].index, r->reads[k].ctx);
        raft_buf_unref(r->reads[k].ctx);
    }
    memmove(r->reads, r->reads + i + 1,
            (size_t)(r->n_reads - i - 1) * sizeof(*r->reads));
    r->n_reads -= i + 1;
}

/* ---- role changes -------------------------------------------------------- */

static void abort_leader_transfer(struct raft *r)
{
    r->lead_transferee = RAFT_NONE;
}

static void reset(struct raft *r, uint64_t term)
{
    int i;
    uint64_t last = raft__log_last_index(&r->log);
    if (r->term != term) {
        r->term = term;
        r->vote = RAFT_NONE; /* only a new term clears the vote */
    }
    r->lead = RAFT_NONE;
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    reset_randomized_election_timeout(r);
    abort_leader_transfer(r);
    for (i = 0; i < r->n_prs; i++) {
        struct progress *pr = &r->prs[i];
        pr->vote = VOTE_NONE;
        pr->lease_tick = 0;
        raft__pr_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = last + 1;
        pr->match = 0;
        pr->recent_active = false;
        if (pr->id == r->id) {
            pr->match = raft__log_stable_index(&r->log);
            pr->recent_active = true;
        }
    }
    r->pending_conf_index = 0;
    r->uncommitted_size = 0;
    r->leaving = false;
    reads_clear(r);
}

static void become_follower(struct raft *r, uint64_t term, uint64_t lead)
{
    reset(r, term);
    r->lead = lead;
    r->state = RAFT_FOLLOWER;
}

static void become_candidate(struct raft *r)
{
    assert(r->state != RAFT_LEADER);
    reset(r, r->term + 1);
    r->vote = r->id;
    r->state = RAFT_CANDIDATE;
}

static void become_pre_candidate(struct raft *r)
{
    int i;
    assert(r->state != RAFT_LEADER);
    /* no term bump, no vote: a pre-vote round changes nothing durable */
    for (i = 0; i < r->n_prs; i++) {
        r->prs[i].vote = VOTE_NONE;
    }
    r->state = RAFT_PRE_CANDIDATE;
    r->lead = RAFT_NONE; /* forget the leader (etcd PR #8334) */
}

/* Appends entries at the end of the leader's log (assigning term/index). */
static bool append_entries(struct raft *r, struct raft_entry *es, size_t n)
{
    uint64_t li = raft__log_last_index(&r->log);
    uint64_t size = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        size += raft__entry_size(&es[i]);
    }
    if (r->max_uncommitted_size > 0 && r->uncommitted_size > 0 &&
        r->uncommitted_size + size > r->max_uncommitted_size) {
        return false;
    }
    r->uncommitted_size += size;
    for (i = 0; i < n; i++) {
        es[i].term = r->term;
        es[i].index = li + 1 + i;
    }
    raft__log_append(&r->log, es, n);
    conf_sync(r);
    if (r->test_bug == RAFT_BUG_ACK_BEFORE_PERSIST && pr_get(r, r->id)) {
        /* etcd 3.4's behaviour, the root of etcd #14370 */
        raft__pr_maybe_update(pr_get(r, r->id), raft__log_last_index(&r->log));
    }
    return true;
}

static bool maybe_commit(struct raft *r)
{
    uint64_t mci = quorum_match(r);
    if (r->test_bug == RAFT_BUG_COMMIT_OLD_TERM && mci > r->log.committed) {
        /* deliberately wrong: commits a previous-term entry by counting */
        raft__log_commit_to(&r->log, mci);
        return true;
    }
    return raft__log_maybe_commit(&r->log, mci, r->term);
}

static void become_leader(struct raft *r)
{
    struct raft_entry empty = {0, 0, RAFT_ENTRY_NORMAL, NULL};
    struct progress *self;
    assert(r->state != RAFT_FOLLOWER);
    reset(r, r->term);
    r->lead = r->id;
    r->state = RAFT_LEADER;
    self = pr_get(r, r->id);
    if (self != NULL) {
        raft__pr_become_replicate(self);
        self->match = raft__log_stable_index(&r->log);
    }
    append_entries(r, &empty, 1);
    /* no conf change until this entry of our term is committed (Ongaro's
     * 2015 single-server change bug) */
    r->pending_conf_index = raft__log_last_index(&r->log);
    r->uncommitted_size = 0;
    /* a single voter with everything persisted commits at advance() */
}

static int poll(struct raft *r, uint64_t id, bool granted)
{
    struct progress *pr = pr_get(r, id);
    int i, g = 0, rej = 0, q = quorum(r);
    if (pr != NULL && pr->vote == VOTE_NONE) {
        pr->vote = granted ? VOTE_GRANTED : VOTE_REJECTED;
    }
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].learner) {
            continue; /* learners never count toward a quorum */
        }
        g += r->prs[i].vote == VOTE_GRANTED;
        rej += r->prs[i].vote == VOTE_REJECTED;
    }
    if (g >= q) {
        return VOTE_GRANTED;
    }
    if (rej >= q) {
        return VOTE_REJECTED;
    }
    return VOTE_NONE;
}

static void campaign(struct raft *r, int kind)
{
    int i, vote_type;
    uint64_t term;
    if (kind == CAMPAIGN_PRE) {
        become_pre_candidate(r);
        vote_type = RAFT_MSG_PRE_VOTE;
        term = r->term + 1; /* the term we would have, not persisted */
    } else {
        become_candidate(r);
        vote_type = RAFT_MSG_VOTE;
        term = r->term;
    }
    if (poll(r, r->id, true) == VOTE_GRANTED) {
        /* a single voter wins at once */
        if (kind == CAMPAIGN_PRE) {
            campaign(r, CAMPAIGN_ELECTION);
        } else {
            become_leader(r);
        }
        return;
    }
    for (i = 0; i < r->n_prs; i++) {
        struct raft_message m;
        if (r->prs[i].id == r->id || r->prs[i].learner) {
            continue;
        }
        memset(&m, 0, sizeof(m));
        m.type = vote_type;
        m.to = r->prs[i].id;
        m.term = term;
        m.index = raft__log_last_index(&r->log);
        m.log_term = raft__log_last_term(&r->log);
        if (kind == CAMPAIGN_TRANSFER_KIND) {
            m.context = raft_buf_new(r->heap, CAMPAIGN_TRANSFER,
                                     sizeof(CAMPAIGN_TRANSFER) - 1);
            if (m.context == NULL) {
                raft__oom();
            }
        }
        send(r, &m);
    }
}

static void hup(struct raft *r, int kind)
{
    if (r->state == RAFT_LEADER || !promotable(r)) {
        return;
    }
    if (kind == CAMPAIGN_TRANSFER_KIND) {
        campaign(r, kind);
    } else {
        campaign(r, r->pre_vote ? CAMPAIGN_PRE : CAMPAIGN_ELECTION);
    }
}

static void send_timeout_now(struct raft *r, uint64_t to)
{
    send_simple(r, RAFT_MSG_TIMEOUT_NOW, to);
}

/* Leadership transfer (thesis §3.10): catch the target up, then
 * MsgTimeoutNow; proposals are refused meanwhile and the transfer is
 * abandoned after an election timeout (raft_tick). */
static void start_transfer(struct raft *r, struct progress *pr)
{
    uint64_t to = pr->id;
    int i;
    if (pr->learner) {
        return; /* never to a learner */
    }
    if (r->lead_transferee != RAFT_NONE) {
        if (r->lead_transferee == to) {
            return;
        }
        abort_leader_transfer(r);
    }
    if (to == r->id) {
        return;
    }
    r->election_elapsed = 0; /* the transfer must end within a timeout */
    r->lead_transferee = to;
    for (i = 0; i < r->n_prs; i++) {
        r->prs[i].lease_tick = 0; /* the target will bypass stickiness */
    }
    if (pr->match == raft__log_last_index(&r->log)) {
        send_timeout_now(r, to);
    } else {
        send_append(r, to);
    }
}

/* A leaving leader hands over to the most up-to-date voter. Staying
 * leader until then matters: the others may not know yet that the change
 * removing it committed, and under the old configuration they would need
 * its vote; the transfer brings the target's log (and commit) level with
 * ours first. */
static void hand_off(struct raft *r)
{
    struct progress *best = NULL;
    int i;
    for (i = 0; i < r->n_prs; i++) {
        struct progress *p = &r->prs[i];
        if (p->id != r->id && !p->learner &&
            (best == NULL || p->match > best->match)) {
            best = p;
        }
    }
    if (best == NULL) {
        become_follower(r, r->term, RAFT_NONE);
        return;
    }
    start_transfer(r, best);
}

/* ---- configuration ------------------------------------------------------- */

static int conf_find(const uint64_t *ids, uint32_t n, uint64_t id)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        if (ids[i] == id) {
            return (int)i;
        }
    }
    return -1;
}

static void conf_drop(uint64_t *ids, uint32_t *n, uint64_t id)
{
    int i = conf_find(ids, *n, id);
    if (i >= 0) {
        memmove(ids + i, ids + i + 1, (*n - (uint32_t)i - 1) * sizeof(*ids));
        (*n)--;
    }
}

int raft_conf_state_apply(struct raft_conf_state *cs,
                          const struct raft_conf_change *cc)
{
    struct raft_conf_state next = *cs;
    if (cc->node_id == RAFT_NONE || cc->type == RAFT_CONF_UPDATE_NODE) {
        return 0;
    }
    if (cc->type < RAFT_CONF_ADD_NODE ||
        cc->type > RAFT_CONF_ADD_LEARNER_NODE) {
        return RAFT_EINVAL;
    }
    conf_drop(next.voters, &next.n_voters, cc->node_id);
    conf_drop(next.learners, &next.n_learners, cc->node_id);
    if (cc->type != RAFT_CONF_REMOVE_NODE &&
        next.n_voters + next.n_learners >= RAFT_MAX_MEMBERS) {
        return RAFT_ETOO_MANY_MEMBERS;
    }
    if (cc->type == RAFT_CONF_ADD_NODE) {
        next.voters[next.n_voters++] = cc->node_id;
    } else if (cc->type == RAFT_CONF_ADD_LEARNER_NODE) {
        next.learners[next.n_learners++] = cc->node_id;
    }
    *cs = next;
    return 0;
}

static bool conf_has_voter(const struct raft_conf_state *cs, uint64_t id)
{
    return conf_find(cs->voters, cs->n_voters, id) >= 0;
}

static const struct raft_conf_state *conf_previous(const struct raft *r)
{
    return r->n_hist > 1 ? &r->hist[r->n_hist - 2].cs : &r->conf_base;
}

static const struct raft_conf_state *conf_current(const struct raft *r)
{
    return r->n_hist > 0 ? &r->hist[r->n_hist - 1].cs : &r->conf_base;
}

/* Index of the entry that made the current configuration (0: the base). */
static uint64_t conf_current_index(const struct raft *r)
{
    return r->n_hist > 0 ? r->hist[r->n_hist - 1].index : 0;
}

/* Makes the progress table match the current configuration, keeping the
 * progress of members that stay. */
static void sync_progress(struct raft *r)
{
    const struct raft_conf_state *cs = conf_current(r);
    struct progress *pr;
    uint32_t k;
    int i;
    for (i = r->n_prs - 1; i >= 0; i--) {
        uint64_t id = r->prs[i].id;
        if (conf_find(cs->voters, cs->n_voters, id) < 0 &&
            conf_find(cs->learners, cs->n_learners, id) < 0) {
            pr_remove(r, id);
        }
    }
    for (k = 0; k < cs->n_voters + cs->n_learners; k++) {
        bool learner = k >= cs->n_voters;
        uint64_t id = learner ? cs->learners[k - cs->n_voters] : cs->voters[k];
        pr = pr_get(r, id);
        if (pr == NULL) {
            pr = pr_add(r, id, learner);
            if (pr != NULL && id == r->id) {
                pr->match = raft__log_stable_index(&r->log);
            }
        } else {
            pr->learner = learner;
        }
    }
    if (r->state != RAFT_LEADER) {
        return;
    }
    if (r->lead_transferee != RAFT_NONE && !is_voter(r, r->lead_transferee)) {
        abort_leader_transfer(r);
    }
    if (maybe_commit(r)) { /* the quorum may be smaller now */
        leader_committed(r);
    }
}

/* Brings the configuration up to date with the log: rolls back changes
 * whose entries were truncated, then takes in new conf-change entries. */
static void conf_sync(struct raft *r)
{
    uint64_t last = raft__log_last_index(&r->log);
    bool changed = false;
    int i;
    if (r->log.truncated_at > r->conf_scanned && r->conf_scanned < last &&
        r->log.unstable.n > 0 && r->conf_scanned + 1 >= r->log.offset) {
        /* fast path: the new entries are all in the unstable tail */
        size_t k = (size_t)(r->conf_scanned + 1 - r->log.offset);
        for (; k < r->log.unstable.n; k++) {
            if (r->log.unstable.e[k].type == RAFT_ENTRY_CONF_CHANGE) {
                break;
            }
        }
        if (k == r->log.unstable.n) {
            r->conf_scanned = last;
            r->log.truncated_at = UINT64_MAX;
            return;
        }
    }
    if (r->log.truncated_at <= r->conf_scanned) {
        while (r->n_hist > 0 &&
               r->hist[r->n_hist - 1].index >= r->log.truncated_at) {
            r->n_hist--;
            changed = true;
        }
        r->conf_scanned = r->log.truncated_at - 1;
    }
    r->log.truncated_at = UINT64_MAX;
    if (r->conf_scanned < last) {
        struct raft__ents es = {0};
        size_t k;
        if (raft__log_slice(&r->log, r->conf_scanned + 1, last + 1, UINT64_MAX,
                            &es) == 0) {
            for (k = 0; k < es.n; k++) {
                struct raft_conf_change cc;
                struct raft_conf_state next = *conf_current(r);
                if (es.e[k].type != RAFT_ENTRY_CONF_CHANGE ||
                    raft_conf_change_decode(r->heap, es.e[k].data, &cc) != 0) {
                    continue;
                }
                raft_buf_unref(cc.context);
                if (raft_conf_state_apply(&next, &cc) != 0) {
                    continue; /* every member skips it alike */
                }
                if (r->n_hist == r->cap_hist) {
                    r->cap_hist = r->cap_hist ? r->cap_hist * 2 : 4;
                    r->hist =
                        raft__realloc(r->heap, r->hist,
                                      (size_t)r->cap_hist * sizeof(*r->hist));
                }
                r->hist[r->n_hist].index = es.e[k].index;
                r->hist[r->n_hist].cs = next;
                r->n_hist++;
                changed = true;
            }
        }
        raft__ents_free(r->heap, &es);
        r->conf_scanned = last;
    }
    /* committed changes can never be rolled back: fold them into the base */
    for (i = 0; i < r->n_hist && r->hist[i].index <= r->log.committed; i++) {
    }
    if (i > 0 && !r->log.lenient) {
        r->conf_base = r->hist[i - 1].cs;
        memmove(r->hist, r->hist + i,
                (size_t)(r->n_hist - i) * sizeof(*r->hist));
        r->n_hist -= i;
    }
    if (changed) {
        sync_progress(r);
    }
}

/* The leader's commit index moved. */
static void leader_committed(struct raft *r)
{
    release_pending_reads(r);
    bcast_append(r);
    if (!is_voter(r, r->id) && !r->leaving &&
        conf_current_index(r) <= r->log.committed) {
        /* our removal (or demotion) is committed: hand over */
        r->leaving = true;
        hand_off(r);
    }
}

/* ---- follower-side handlers ---------------------------------------------- */

static void handle_append_entries(struct raft *r, const struct raft_message *m)
{
    struct raft_message resp;
    uint64_t lastnew;
    memset(&resp, 0, sizeof(resp));
    resp.type = RAFT_MSG_APP_RESP;
    resp.to = m->from;
    if (m->index < r->log.committed) {
        resp.index = r->log.committed;
        send(r, &resp);
        return;
    }
    if (raft__log_maybe_append(&r->log, m->index, m->log_term, m->commit,
                               m->entries, m->n_entries, &lastnew)) {
        conf_sync(r);
        resp.index = lastnew;
    } else {
        /* fast back-off: the largest index <= the probe with a term <= the
         * leader's term there (etcd findConflictByTerm) */
        uint64_t last = raft__log_last_index(&r->log);
        uint64_t hint = m->index < last ? m->index : last;
        hint = raft__log_find_conflict_by_term(&r->log, hint, m->log_term);
        resp.index = m->index;
        resp.reject = true;
        resp.reject_hint = hint;
        resp.log_term = raft__log_term_or_zero(&r->log, hint);
    }
    send(r, &resp);
}

static void handle_heartbeat(struct raft *r, const struct raft_message *m)
{
    struct raft_message resp;
    uint64_t c = m->commit, last = raft__log_last_index(&r->log);
    raft__log_commit_to(&r->log, c < last ? c : last);
    memset(&resp, 0, sizeof(resp));
    resp.type = RAFT_MSG_HEARTBEAT_RESP;
    resp.to = m->from;
    resp.index = m->index;
    resp.context = raft_buf_ref(m->context);
    send(r, &resp);
}

static bool restore(struct raft *r, const struct raft_snapshot *s)
{
    if (s->meta.index <= r->log.committed) {
        return false;
    }
    if (raft__log_match_term(&r->log, s->meta.index, s->meta.term)) {
        /* we have it: fast-forward the commit index instead */
        raft__log_commit_to(&r->log, s->meta.index);
        return false;
    }
    raft__log_restore(&r->log, s);
    r->conf_base = s->meta.conf_state;
    r->applied_conf = s->meta.conf_state;
    r->n_hist = 0;
    r->conf_scanned = s->meta.index;
    r->log.truncated_at = UINT64_MAX;
    sync_progress(r);
    return true;
}

static void handle_snapshot(struct raft *r, const struct raft_message *m)
{
    struct raft_message resp;
    memset(&resp, 0, sizeof(resp));
    resp.type = RAFT_MSG_APP_RESP;
    resp.to = m->from;
    if (restore(r, m->snapshot)) {
        resp.index = raft__log_last_index(&r->log);
    } else {
        resp.index = r->log.committed;
    }
    send(r, &resp);
}

/* ---- step per role ------------------------------------------------------- */

static int step_leader(struct raft *r, const struct raft_message *m)
{
    struct progress *pr;
    switch (m->type) {
        case RAFT_MSG_BEAT:
            /* carry the newest pending read: if the round it started was
             * lost, this one confirms it (and every read before it) */
            bcast_heartbeat(
                r, r->n_reads > 0 ? r->reads[r->n_reads - 1].ctx : NULL);
            return 0;
        case RAFT_MSG_CHECK_QUORUM: {
            int i, active = 0;
            for (i = 0; i < r->n_prs; i++) {
                struct progress *p = &r->prs[i];
                if (p->id == r->id) {
                    active += !p->learner;
                    continue;
                }
                active += p->recent_active && !p->learner;
                p->recent_active = false;
            }
            /* a leaving leader keeps trying to hand off instead: stepping
             * down could strand members that still need its vote */
            if (active < quorum(r) && !r->leaving) {
                become_follower(r, r->term, RAFT_NONE);
            }
            return 0;
        }
        case RAFT_MSG_PROP: {
            struct raft_entry stack_es[4], *es;
            size_t i;
            bool ok;
            if (m->n_entries == 0) {
                return RAFT_EINVAL;
            }
            if (pr_get(r, r->id) == NULL || r->lead_transferee != RAFT_NONE ||
                r->leaving) {
                return RAFT_EPROPOSAL_DROPPED;
            }
            /* the common single proposal needs no heap copy */
            es = m->n_entries <= 4
                     ? stack_es
                     : raft__malloc(r->heap, m->n_entries * sizeof(*es));
            for (i = 0; i < m->n_entries; i++) {
                es[i] = m->entries[i];
                raft_buf_ref(es[i].data);
            }
            for (i = 0; i < m->n_entries; i++) {
                if (es[i].type != RAFT_ENTRY_CONF_CHANGE) {
                    continue;
                }
                if (r->pending_conf_index > r->log.committed) {
                    /* one at a time: the earlier change (or this leader's
                     * first entry) is not committed yet */
                    raft_buf_unref(es[i].data);
                    es[i].data = NULL;
                    es[i].type = RAFT_ENTRY_NORMAL;
                } else {
                    r->pending_conf_index =
                        raft__log_last_index(&r->log) + (uint64_t)i + 1;
                }
            }
            ok = append_entries(r, es, m->n_entries);
            for (i = 0; i < m->n_entries; i++) {
                raft_buf_unref(es[i].data);
            }
            if (es != stack_es) {
                raft__free(r->heap, es);
            }
            if (!ok) {
                return RAFT_EPROPOSAL_DROPPED;
            }
            bcast_append(r);
            if (r->test_bug == RAFT_BUG_ACK_BEFORE_PERSIST && maybe_commit(r)) {
                leader_committed(r);
            }
            return 0;
        }
        case RAFT_MSG_READ_INDEX:
            /* also for a single voter: after a restart its commit index may
             * lag what it committed before the crash (etcd-io/raft#105) */
            if (!committed_entry_in_current_term(r)) {
                struct raft_message *q;
                if (r->n_pending_reads == r->cap_pending_reads) {
                    r->cap_pending_reads =
                        r->cap_pending_reads ? r->cap_pending_reads * 2 : 8;
                    r->pending_reads = raft__realloc(
                        r->heap, r->pending_reads,
                        (size_t)r->cap_pending_reads * sizeof(*q));
                }
                q = &r->pending_reads[r->n_pending_reads++];
                memset(q, 0, sizeof(*q));
                q->type = m->type;
                q->from = m->from;
                q->context = raft_buf_ref(m->context);
                return 0;
            }
            leader_read_index(r, m);
            return 0;
        default:
            break;
    }

    pr = pr_get(r, m->from);
    if (pr == NULL) {
        return 0;
    }
    switch (m->type) {
        case RAFT_MSG_APP_RESP:
            pr->recent_active = true;
            if (m->reject) {
                uint64_t next_probe = m->reject_hint;
                if (m->log_term > 0) {
                    next_probe = raft__log_find_conflict_by_term(
                        &r->log, m->reject_hint, m->log_term);
                }
                if (raft__pr_maybe_decr_to(pr, m->index, next_probe)) {
                    if (pr->state == RAFT_PROGRESS_REPLICATE) {
                        raft__pr_become_probe(pr);
                    }
                    send_append(r, m->from);
                }
            } else {
                bool old_paused = raft__pr_is_paused(pr);
                /* a caught-up follower stuck in probe moves on too (etcd
                 * testdata heartbeat_resp_recovers_from_probing) */
                if (raft__pr_maybe_update(pr, m->index) ||
                    (pr->match == m->index &&
                     pr->state == RAFT_PROGRESS_PROBE)) {
                    if (pr->state == RAFT_PROGRESS_PROBE) {
                        raft__pr_become_replicate(pr);
                    } else if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
                               pr->match >= pr->pending_snapshot) {
                        raft__pr_become_probe(pr);
                        raft__pr_become_replicate(pr);
                    } else if (pr->state == RAFT_PROGRESS_REPLICATE) {
                        raft__ins_free_le(&pr->ins, m->index);
                    }
                    if (maybe_commit(r)) {
                        leader_committed(r);
                    } else if (old_paused) {
                        send_append(r, m->from);
                    }
                    while (maybe_send_append(r, m->from, false)) {
                    }
                    if (m->from == r->lead_transferee &&
                        pr->match == raft__log_last_index(&r->log)) {
                        send_timeout_now(r, m->from);
                    }
                }
            }
            return 0;
        case RAFT_MSG_HEARTBEAT_RESP:
            pr->recent_active = true;
            pr->probe_sent = false;
            if (pr->state == RAFT_PROGRESS_REPLICATE &&
                raft__ins_full(&pr->ins)) {
                raft__ins_free_first(&pr->ins);
            }
            if (pr->match < raft__log_last_index(&r->log) ||
                pr->state == RAFT_PROGRESS_PROBE) {
                send_append(r, m->from); /* its answer ends the probe */
            }
            if (m->index <= r->ticks && m->index > pr->lease_tick) {
                pr->lease_tick = m->index;
            }
            if (m->context != NULL && m->context->len > 0) {
                leader_recv_read_ack(r, m->from, m->context);
            }
            return 0;
        case RAFT_MSG_SNAP_STATUS:
            if (pr->state != RAFT_PROGRESS_SNAPSHOT) {
                return 0;
            }
            if (m->reject) {
                pr->pending_snapshot = 0;
            }
            raft__pr_become_probe(pr);
            /* wait for a heartbeat response before probing again */
            pr->probe_sent = true;
            return 0;
        case RAFT_MSG_UNREACHABLE:
            if (pr->state == RAFT_PROGRESS_REPLICATE) {
                raft__pr_become_probe(pr);
            }
            return 0;
        case RAFT_MSG_TRANSFER_LEADER:
            start_transfer(r, pr);
            return 0;
        default:
            return 0;
    }
}

static int step_candidate(struct raft *r, const struct raft_message *m)
{
    int resp_type = r->state == RAFT_PRE_CANDIDATE ? RAFT_MSG_PRE_VOTE_RESP
                                                   : RAFT_MSG_VOTE_RESP;
    switch (m->type) {
        case RAFT_MSG_PROP:
            return RAFT_EPROPOSAL_DROPPED;
        case RAFT_MSG_APP:
            become_follower(r, m->term, m->from);
            handle_append_entries(r, m);
            return 0;
        case RAFT_MSG_HEARTBEAT:
            become_follower(r, m->term, m->from);
            handle_heartbeat(r, m);
            return 0;
        case RAFT_MSG_SNAP:
            become_follower(r, m->term, m->from);
            handle_snapshot(r, m);
            return 0;
        case RAFT_MSG_TIMEOUT_NOW:
            return 0;
        case RAFT_MSG_READ_INDEX:
        case RAFT_MSG_TRANSFER_LEADER:
            return RAFT_EPROPOSAL_DROPPED;
        default:
            break;
    }
    if (m->type == resp_type) {
        int res = poll(r, m->from, !m->reject);
        if (res == VOTE_GRANTED) {
            if (r->state == RAFT_PRE_CANDIDATE) {
                campaign(r, CAMPAIGN_ELECTION);
            } else {
                become_leader(r);
                bcast_append(r);
            }
        } else if (res == VOTE_REJECTED) {
            become_follower(r, r->term, RAFT_NONE);
        }
    }
    return 0;
}

static int step_follower(struct raft *r, const struct raft_message *m)
{
    struct raft_message fwd, *sent;
    switch (m->type) {
        case RAFT_MSG_PROP:
        case RAFT_MSG_TRANSFER_LEADER:
        case RAFT_MSG_READ_INDEX:
            if (r->lead == RAFT_NONE) {
                return RAFT_EPROPOSAL_DROPPED;
            }
            memset(&fwd, 0, sizeof(fwd));
            fwd.type = m->type;
            fwd.to = r->lead;
            fwd.entries = copy_entries(r->heap, m->entries, m->n_entries);
            fwd.n_entries = m->n_entries;
            fwd.context = raft_buf_ref(m->context);
            send(r, &fwd);
            sent = sendable_before_persist(r, m->type)
                       ? &r->msgs.m[r->msgs.n - 1]
                       : &r->msgs_after.m[r->msgs_after.n - 1];
            /* send() stamped from = self: a transfer request names its target
             * in from, so keep the original */
            sent->from = m->from;
            if (m->type == RAFT_MSG_TRANSFER_LEADER) {
                sent->term = 0;
            }
            return 0;
        case RAFT_MSG_APP:
            r->election_elapsed = 0;
            r->lead = m->from;
            handle_append_entries(r, m);
            return 0;
        case RAFT_MSG_HEARTBEAT:
            r->election_elapsed = 0;
            r->lead = m->from;
            handle_heartbeat(r, m);
            return 0;
        case RAFT_MSG_SNAP:
            r->election_elapsed = 0;
            r->lead = m->from;
            handle_snapshot(r, m);
            return 0;
        case RAFT_MSG_TIMEOUT_NOW:
            if (promotable(r)) {
                /* leadership transfer: campaign now, even inside a lease */
                hup(r, CAMPAIGN_TRANSFER_KIND);
            }
            return 0;
        case RAFT_MSG_READ_INDEX_RESP:
            add_read_state(r, m->index, m->context);
            return 0;
        default:
            return 0;
    }
}

/* ---- step ---------------------------------------------------------------- */

static bool is_vote_request(int t)
{
    return t == RAFT_MSG_VOTE || t == RAFT_MSG_PRE_VOTE;
}

static int step_internal(struct raft *r, const struct raft_message *m)
{
    if (m->term == 0) {
        /* local message */
    } else if (m->term > r->term) {
        if (is_vote_request(m->type)) {
            bool force = m->context != NULL &&
                         m->context->len == sizeof(CAMPAIGN_TRANSFER) - 1 &&
                         memcmp(m->context->data, CAMPAIGN_TRANSFER,
                                m->context->len) == 0;
            bool in_lease = r->check_quorum && r->lead != RAFT_NONE &&
                            r->election_elapsed < r->election_timeout;
            if (r->read_only_option == RAFT_READ_ONLY_LEASE_BASED &&
                r->ticks < (uint64_t)r->election_timeout) {
                in_lease = true; /* just restarted: see lease_valid */
            }
            if (!force && in_lease) {
                /* stickiness: a live leader is heard, ignore the
                 * disruptive candidate (thesis §4.2.3) */
                return 0;
            }
        }
        if (m->type == RAFT_MSG_PRE_VOTE) {
            /* never change term for a pre-vote */
        } else if (m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject) {
            /* granted pre-votes carry the future term */
        } else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
                   m->type == RAFT_MSG_SNAP) {
            become_follower(r, m->term, m->from);
        } else {
            become_follower(r, m->term, RAFT_NONE);
        }
    } else if (m->term < r->term) {
        if (r->test_bug == RAFT_BUG_VOTE_OLD_TERM &&
            (m->type == RAFT_MSG_VOTE_RESP ||
             m->type == RAFT_MSG_PRE_VOTE_RESP)) {
            /* deliberately wrong: count a stale vote (mutation check) */
            if (r->state == RAFT_CANDIDATE || r->state == RAFT_PRE_CANDIDATE) {
                return step_candidate(r, m);
            }
            return 0;
        }
        if ((r->check_quorum || r->pre_vote) &&
            (m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_APP)) {
            /* tell a stale leader (e.g. back from a partition) our term so
             * it steps down; without pre-vote it would have learned it from
             * our vote requests */
            send_simple(r, RAFT_MSG_APP_RESP, m->from);
        } else if (m->type == RAFT_MSG_PRE_VOTE) {
            struct raft_message resp;
            memset(&resp, 0, sizeof(resp));
            resp.type = RAFT_MSG_PRE_VOTE_RESP;
            resp.to = m->from;
            resp.term = r->term;
            resp.reject = true;
            send(r, &resp);
        }
        return 0;
    }

    switch (m->type) {
        case RAFT_MSG_HUP:
            hup(r, CAMPAIGN_ELECTION);
            return 0;
        case RAFT_MSG_VOTE:
        case RAFT_MSG_PRE_VOTE: {
            struct raft_message resp;
            bool can_vote = r->vote == m->from ||
                            (r->vote == RAFT_NONE && r->lead == RAFT_NONE) ||
                            (m->type == RAFT_MSG_PRE_VOTE && m->term > r->term);
            bool up_to_date =
                r->test_bug == RAFT_BUG_NO_LOG_CHECK ||
                raft__log_is_up_to_date(&r->log, m->index, m->log_term);
            memset(&resp, 0, sizeof(resp));
            resp.to = m->from;
            resp.type = m->type == RAFT_MSG_VOTE ? RAFT_MSG_VOTE_RESP
                                                 : RAFT_MSG_PRE_VOTE_RESP;
            /* learners vote too when asked: the candidate's newer config may
             * list them as voters (etcd PR #10998) */
            if (can_vote && up_to_date) {
                resp.term = m->term;
                send(r, &resp);
                if (m->type == RAFT_MSG_VOTE) {
                    r->election_elapsed = 0;
                    r->vote = m->from;
                }
            } else {
                resp.term = r->term;
                resp.reject = true;
                send(r, &resp);
            }
            return 0;
        }
        default:
            break;
    }
    switch (r->state) {
        case RAFT_LEADER:
            return step_leader(r, m);
        case RAFT_CANDIDATE:
        case RAFT_PRE_CANDIDATE:
            return step_candidate(r, m);
        default:
            return step_follower(r, m);
    }
}

/* ---- public API ---------------------------------------------------------- */

void raft_config_default(struct raft_config *c)
{
    memset(c, 0, sizeof(*c));
    c->election_tick = 10;
    c->heartbeat_tick = 1;
    c->max_size_per_msg = 1024 * 1024;
    c->max_inflight_msgs = 256;
    c->pre_vote = true;
    c->check_quorum = true;
    c->read_only_option = RAFT_READ_ONLY_SAFE;
}

int raft_new(const struct raft_config *c, struct raft **out)
{
    const struct raft_heap *h = c->heap != NULL ? c->heap : raft_heap_default();
    struct raft_hard_state hs;
    struct raft_conf_state cs;
    struct raft_snapshot snap;
    uint64_t snap_index, applied;
    struct raft *r;
    int rv;

    *out = NULL;
    if (c->id == RAFT_NONE || c->heartbeat_tick <= 0 ||
        c->election_tick <= c->heartbeat_tick || c->max_inflight_msgs <= 0 ||
        c->storage == NULL ||
        (c->read_only_option == RAFT_READ_ONLY_LEASE_BASED &&
         !c->check_quorum) ||
        (c->read_only_option != RAFT_READ_ONLY_SAFE &&
         c->read_only_option != RAFT_READ_ONLY_LEASE_BASED)) {
        return RAFT_EINVAL;
    }
    if ((rv = c->storage->initial_state(c->storage->ctx, &hs, &cs)) != 0) {
        return rv;
    }
    if (cs.n_voters + cs.n_learners > RAFT_MAX_MEMBERS) {
        return RAFT_ETOO_MANY_MEMBERS;
    }
    r = h->malloc(h->ctx, sizeof(*r));
    if (r == NULL) {
        return RAFT_ENOMEM;
    }
    memset(r, 0, sizeof(*r));
    r->heap = h;
    r->id = c->id;
    r->election_timeout = c->election_tick;
    r->heartbeat_timeout = c->heartbeat_tick;
    r->check_quorum = c->check_quorum;
    r->pre_vote = c->pre_vote;
    r->read_only_option = c->read_only_option;
    r->max_msg_size = c->max_size_per_msg;
    r->max_uncommitted_size = c->max_uncommitted_size;
    r->max_inflight = c->max_inflight_msgs;
    r->test_bug = c->test_bug;
    r->rand = c->rand;
    r->rand_ctx = c->rand_ctx;
    r->rand_state = c->rand_seed ^ (c->id * 0x9e3779b97f4a7c15ULL);
    if ((rv = raft__log_init(&r->log, c->storage, h)) != 0) {
        h->free(h->ctx, r);
        return rv;
    }
    if (hs.commit > raft__log_last_index(&r->log)) {
        /* the storage lost entries it had acknowledged */
        h->free(h->ctx, r);
        return RAFT_EINVAL;
    }
    r->log.lenient = c->test_bug != RAFT_BUG_NONE;
    r->term = hs.term;
    r->vote = hs.vote;
    if (hs.commit > r->log.committed) {
        r->log.committed = hs.commit;
    }
    /* Entries kept below the snapshot (trailing entries for slow
     * followers) are in the state machine and in the snapshot's
     * configuration already. */
    snap_index = 0;
    if (c->storage->snapshot(c->storage->ctx, &snap) == 0) {
        if (snap.meta.index <= raft__log_last_index(&r->log)) {
            snap_index = snap.meta.index;
        }
        raft_buf_unref(snap.data);
    }
    applied = c->applied != 0 ? c->applied : snap_index;
    if (applied > r->log.applied) {
        if (applied > r->log.committed) {
            raft_free(r);
            return RAFT_EINVAL;
        }
        r->log.applied = applied;
    }
    r->prev_hs = hs;
    /* the configuration: the snapshot's, then every conf change in the
     * log (committed or not: append-time semantics) */
    r->conf_base = cs;
    r->applied_conf = cs;
    r->conf_scanned = raft__log_first_index(&r->log) - 1;
    if (snap_index > r->conf_scanned) {
        r->conf_scanned = snap_index;
    }
    conf_sync(r);
    sync_progress(r);
    become_follower(r, r->term, RAFT_NONE);
    r->prev_lead = RAFT_NONE;
    r->prev_state = RAFT_FOLLOWER;
    *out = r;
    return 0;
}

/* Releases what v's messages hold and empties it, keeping its array. */
static void msg_vec_clear(const struct raft_heap *h, struct msg_vec *v)
{
    size_t i;
    for (i = 0; i < v->n; i++) {
        msg_release(h, &v->m[i]);
    }
    v->n = 0;
}

static void ready_release(struct raft *r, struct raft_ready *rd)
{
    size_t i;
    raft__ents_truncate(&r->rd_ents, 0);
    raft__ents_truncate(&r->rd_committed, 0);
    msg_vec_clear(r->heap, &r->rd_msgs);
    msg_vec_free(r->heap, &r->spare_msgs);
    r->spare_msgs = r->rd_msgs;
    memset(&r->rd_msgs, 0, sizeof(r->rd_msgs));
    msg_vec_clear(r->heap, &r->rd_after);
    msg_vec_free(r->heap, &r->spare_after);
    r->spare_after = r->rd_after;
    memset(&r->rd_after, 0, sizeof(r->rd_after));
    for (i = 0; i < rd->n_read_states; i++) {
        raft_buf_unref(rd->read_states[i].context);
    }
    raft__free(r->heap, rd->read_states);
    if (rd->has_snapshot) {
        raft_buf_unref(rd->snapshot.data);
    }
    memset(rd, 0, sizeof(*rd));
}

void raft_free(struct raft *r)
{
    int i;
    if (r == NULL) {
        return;
    }
    if (r->ready_out) {
        ready_release(r, &r->rd);
    }
    raft__log_close(&r->log);
    for (i = 0; i < r->n_prs; i++) {
        raft__free(r->heap, r->prs[i].ins.buf);
    }
    reads_clear(r);
    raft__free(r->heap, r->reads);
    raft__free(r->heap, r->pending_reads);
    raft__free(r->heap, r->hist);
    for (size_t k = 0; k < r->n_read_states; k++) {
        raft_buf_unref(r->read_states[k].context);
    }
    raft__free(r->heap, r->read_states);
    msg_vec_free(r->heap, &r->msgs);
    msg_vec_free(r->heap, &r->msgs_after);
    msg_vec_free(r->heap, &r->spare_msgs);
    msg_vec_free(r->heap, &r->spare_after);
    raft__ents_free(r->heap, &r->rd_ents);
    raft__ents_free(r->heap, &r->rd_committed);
    r->heap->free(r->heap->ctx, r);
}

int raft_tick(struct raft *r)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.from = r->id;
    r->ticks++;
    if (r->state != RAFT_LEADER) {
        r->election_elapsed++;
        if (promotable(r) &&
            r->election_elapsed >= r->randomized_election_timeout) {
            r->election_elapsed = 0;
            m.type = RAFT_MSG_HUP;
            return step_internal(r, &m);
        }
        return 0;
    }
    r->heartbeat_elapsed++;
    r->election_elapsed++;
    if (r->election_elapsed >= r->election_timeout) {
        r->election_elapsed = 0;
        if (r->check_quorum) {
            m.type = RAFT_MSG_CHECK_QUORUM;
            step_internal(r, &m);
        }
        if (r->state == RAFT_LEADER && r->lead_transferee != RAFT_NONE) {
            abort_leader_transfer(r); /* it did not finish in time */
        }
    }
    if (r->state != RAFT_LEADER) {
        return 0;
    }
    if (r->leaving && r->lead_transferee == RAFT_NONE) {
        hand_off(r); /* retry */
    }
    if (r->heartbeat_elapsed >= r->heartbeat_timeout) {
        r->heartbeat_elapsed = 0;
        m.type = RAFT_MSG_BEAT;
        step_internal(r, &m);
    }
    return 0;
}

static bool is_local_type(int t)
{
    return t == RAFT_MSG_HUP || t == RAFT_MSG_BEAT ||
           t == RAFT_MSG_UNREACHABLE || t == RAFT_MSG_SNAP_STATUS ||
           t == RAFT_MSG_CHECK_QUORUM;
}

/* What a peer sends must be self-consistent before it reaches the log:
 * contiguous entries after m->index, terms that never decrease nor pass
 * the message's term, a snapshot with MsgSnap. A bad peer gets an error,
 * never an assertion or a corrupt log. */
static bool well_formed(const struct raft_message *m)
{
    size_t i;
    if ((m->n_entries > 0 && m->entries == NULL) ||
        (m->type == RAFT_MSG_SNAP &&
         (m->snapshot == NULL || m->snapshot->meta.index == 0 ||
          m->snapshot->meta.term == 0 ||
          m->snapshot->meta.conf_state.n_voters +
                  m->snapshot->meta.conf_state.n_learners >
              RAFT_MAX_MEMBERS))) {
        return false;
    }
    if (m->term == 0 && m->type != RAFT_MSG_PROP &&
        m->type != RAFT_MSG_READ_INDEX && m->type != RAFT_MSG_TRANSFER_LEADER) {
        return false; /* only forwarded requests travel without a term */
    }
    for (i = 0; i < m->n_entries; i++) {
        if (m->entries[i].type != RAFT_ENTRY_NORMAL &&
            m->entries[i].type != RAFT_ENTRY_CONF_CHANGE) {
            return false;
        }
    }
    if (m->type != RAFT_MSG_APP || m->n_entries == 0) {
        return true;
    }
    if (m->index >= UINT64_MAX - m->n_entries) {
        return false;
    }
    for (i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        uint64_t prev = i == 0 ? m->log_term : m->entries[i - 1].term;
        if (e->index != m->index + 1 + i || e->term < prev ||
            e->term > m->term) {
            return false;
        }
    }
    return true;
}

int raft_step(struct raft *r, const struct raft_message *m)
{
    if (m->type < 0 || m->type >= RAFT_MSG_TYPE_COUNT) {
        return RAFT_EINVAL;
    }
    if (is_local_type(m->type)) {
        return RAFT_ESTEP_LOCAL_MSG;
    }
    if (m->from == RAFT_NONE || m->from == r->id || !well_formed(m)) {
        return RAFT_EINVAL;
    }
    /* responses from a peer we do not know are ignored (etcd rawnode) */
    if ((m->type == RAFT_MSG_APP_RESP || m->type == RAFT_MSG_HEARTBEAT_RESP ||
         m->type == RAFT_MSG_SNAP_STATUS) &&
        pr_get(r, m->from) == NULL) {
        return RAFT_ESTEP_PEER_NOT_FOUND;
    }
    return step_internal(r, m);
}

static int propose_entry(struct raft *r, int type, struct raft_buf *data)
{
    struct raft_message m;
    struct raft_entry e = {0, 0, type, data};
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_PROP;
    m.from = r->id;
    m.entries = &e;
    m.n_entries = 1;
    return step_internal(r, &m);
}

int raft_propose(struct raft *r, struct raft_buf *data)
{
    return propose_entry(r, RAFT_ENTRY_NORMAL, data);
}

int raft_propose_batch(struct raft *r, struct raft_buf *const *data, size_t n)
{
    struct raft_message m;
    struct raft_entry stack_es[16], *es;
    size_t i;
    int rv;
    if (n == 0) {
        return RAFT_EINVAL;
    }
    es = n <= 16 ? stack_es : raft__malloc(r->heap, n * sizeof(*es));
    for (i = 0; i < n; i++) {
        es[i] = (struct raft_entry){0, 0, RAFT_ENTRY_NORMAL, data[i]};
    }
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_PROP;
    m.from = r->id;
    m.entries = es;
    m.n_entries = n;
    rv = step_internal(r, &m);
    if (es != stack_es) {
        raft__free(r->heap, es);
    }
    return rv;
}

int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc)
{
    struct raft_buf *b;
    int rv;
    if (cc->type < RAFT_CONF_ADD_NODE ||
        cc->type > RAFT_CONF_ADD_LEARNER_NODE) {
        return RAFT_EINVAL;
    }
    b = raft_conf_change_encode(r->heap, cc);
    if (b == NULL) {
        return RAFT_ENOMEM;
    }
    rv = propose_entry(r, RAFT_ENTRY_CONF_CHANGE, b);
    raft_buf_unref(b);
    return rv;
}

int raft_read_index(struct raft *r, struct raft_buf *ctx)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_READ_INDEX;
    m.from = r->id;
    m.context = ctx;
    return step_internal(r, &m);
}

int raft_transfer_leader(struct raft *r, uint64_t transferee)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_TRANSFER_LEADER;
    m.from = transferee; /* etcd's convention: from names the target */
    if (transferee == RAFT_NONE) {
        return RAFT_EINVAL;
    }
    return step_internal(r, &m);
}

int raft_campaign(struct raft *r)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_HUP;
    m.from = r->id;
    return step_internal(r, &m);
}

void raft_report_snapshot(struct raft *r, uint64_t to, bool failed)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_SNAP_STATUS;
    m.from = to;
    m.reject = failed;
    step_internal(r, &m);
}

void raft_report_unreachable(struct raft *r, uint64_t to)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_MSG_UNREACHABLE;
    m.from = to;
    step_internal(r, &m);
}

static void conf_state_of(const struct raft *r, struct raft_conf_state *cs)
{
    int i;
    memset(cs, 0, sizeof(*cs));
    for (i = 0; i < r->n_prs; i++) {
        if (r->prs[i].learner) {
            cs->learners[cs->n_learners++] = r->prs[i].id;
        } else {
            cs->voters[cs->n_voters++] = r->prs[i].id;
        }
    }
}

int raft_apply_conf_change(struct raft *r,
                           const struct raft_conf_change *cc,
                           struct raft_conf_state *cs)
{
    int rv = raft_conf_state_apply(&r->applied_conf, cc);
    if (rv == RAFT_ETOO_MANY_MEMBERS) {
        rv = 0; /* skipped by every member alike (conf_sync) */
    }
    if (cs != NULL) {
        *cs = r->applied_conf;
    }
    return rv;
}

bool raft_has_ready(const struct raft *r)
{
    struct raft_hard_state hs = {r->term, r->vote, r->log.committed};
    if (r->ready_out) {
        return false;
    }
    return r->lead != r->prev_lead || r->state != r->prev_state ||
           memcmp(&hs, &r->prev_hs, sizeof(hs)) != 0 || r->log.has_snap ||
           r->log.unstable.n > 0 || r->msgs.n > 0 || r->msgs_after.n > 0 ||
           r->n_read_states > 0 ||
           raft__log_max_apply(&r->log) > r->log.applied;
}

struct raft_ready *raft_ready(struct raft *r)
{
    struct raft_ready *rd = &r->rd;
    struct raft_hard_state hs = {r->term, r->vote, r->log.committed};
    uint64_t hi;
    size_t i;

    if (r->ready_out) {
        return NULL;
    }
    memset(rd, 0, sizeof(*rd));
    r->ready_out = true;
    if (memcmp(&hs, &r->prev_hs, sizeof(hs)) != 0) {
        rd->has_hard_state = true;
        rd->hard_state = hs;
    }
    if (r->log.has_snap) {
        rd->has_snapshot = true;
        rd->snapshot = r->log.snap;
        raft_buf_ref(rd->snapshot.data);
    }
    for (i = 0; i < r->log.unstable.n; i++) {
        raft__ents_push(r->heap, &r->rd_ents, &r->log.unstable.e[i]);
    }
    rd->entries = r->rd_ents.e;
    rd->n_entries = r->rd_ents.n;
    hi = raft__log_max_apply(&r->log);
    if (hi > r->log.applied) {
        raft__log_slice(&r->log, r->log.applied + 1, hi + 1, UINT64_MAX,
                        &r->rd_committed);
        rd->committed = r->rd_committed.e;
        rd->n_committed = r->rd_committed.n;
    }
    /* Leader traffic may go before the persist, unless this Ready changes
     * the term or vote: then every message waits (a single voter can win
     * an election inside one Ready). */
    if (rd->has_hard_state &&
        (hs.term != r->prev_hs.term || hs.vote != r->prev_hs.vote)) {
        for (i = 0; i < r->msgs.n; i++) {
            msg_vec_push(r->heap, &r->msgs_after, &r->msgs.m[i]);
        }
        r->msgs.n = 0;
    }
    r->rd_msgs = r->msgs;
    r->msgs = r->spare_msgs;
    memset(&r->spare_msgs, 0, sizeof(r->spare_msgs));
    rd->msgs = r->rd_msgs.m;
    rd->n_msgs = r->rd_msgs.n;
    r->rd_after = r->msgs_after;
    r->msgs_after = r->spare_after;
    memset(&r->spare_after, 0, sizeof(r->spare_after));
    rd->msgs_after_persist = r->rd_after.m;
    rd->n_msgs_after_persist = r->rd_after.n;
    rd->read_states = r->read_states;
    rd->n_read_states = r->n_read_states;
    r->read_states = NULL;
    r->n_read_states = r->cap_read_states = 0;
    rd->lead = r->lead;
    rd->state = r->state;
    rd->soft_state_changed =
        r->lead != r->prev_lead || r->state != r->prev_state;
    r->prev_lead = r->lead;
    r->prev_state = r->state;
    if (rd->has_hard_state) {
        r->prev_hs = hs;
    }
    return rd;
}

void raft_advance(struct raft *r, struct raft_ready *rd)
{
    uint64_t applied = r->log.applied;
    struct progress *self;
    assert(rd == &r->rd && r->ready_out);
    if (rd->has_snapshot) {
        raft__log_stable_snap_to(&r->log, rd->snapshot.meta.index);
        if (rd->snapshot.meta.index > applied) {
            applied = rd->snapshot.meta.index;
        }
    }
    if (rd->n_entries > 0) {
        const struct raft_entry *last = &rd->entries[rd->n_entries - 1];
        raft__log_stable_to(&r->log, last->index, last->term);
    }
    if (rd->n_committed > 0) {
        uint64_t ci = rd->committed[rd->n_committed - 1].index;
        if (ci > applied) {
            applied = ci;
        }
        if (r->state == RAFT_LEADER) {
            uint64_t size = 0;
            size_t i;
            for (i = 0; i < rd->n_committed; i++) {
                size += raft__entry_size(&rd->committed[i]);
            }
            r->uncommitted_size =
                size > r->uncommitted_size ? 0 : r->uncommitted_size - size;
        }
    }
    if (applied > r->log.applied && applied <= r->log.committed) {
        r->log.applied = applied;
    }
    ready_release(r, rd);
    r->ready_out = false;
    /* The leader's own log counts toward the commit only now that it is
     * durable (etcd #14370). */
    self = pr_get(r, r->id);
    if (r->state == RAFT_LEADER && self != NULL &&
        raft__pr_maybe_update(self, raft__log_stable_index(&r->log))) {
        if (maybe_commit(r)) {
            leader_committed(r);
        }
    }
}

void raft_status(const struct raft *r, struct raft_status *st)
{
    memset(st, 0, sizeof(*st));
    st->id = r->id;
    st->hs.term = r->term;
    st->hs.vote = r->vote;
    st->hs.commit = r->log.committed;
    st->state = r->state;
    st->lead = r->lead;
    st->applied = r->log.applied;
    st->first_index = raft__log_first_index(&r->log);
    st->last_index = raft__log_last_index(&r->log);
    st->stable_index = raft__log_stable_index(&r->log);
    st->lead_transferee = r->lead_transferee;
    conf_state_of(r, &st->conf);
    st->conf_index = conf_current_index(r);
}

int raft_progress(const struct raft *r,
                  uint64_t id,
                  struct raft_progress_status *p)
{
    const struct progress *pr = pr_cget(r, id);
    if (r->state != RAFT_LEADER || pr == NULL) {
        return RAFT_EINVAL;
    }
    p->id = pr->id;
    p->match = pr->match;
    p->next = pr->next;
    p->state = pr->state;
    p->learner = pr->learner;
    p->recent_active = pr->recent_active;
    p->pending_snapshot = pr->pending_snapshot;
    return 0;
}

int raft_log_term(const struct raft *r, uint64_t i, uint64_t *term)
{
    return raft__log_term(&r->log, i, term);
}

int raft_log_entry(const struct raft *r, uint64_t i, struct raft_entry *e)
{
    struct raft__ents es = {0};
    int rv = raft__log_slice(&r->log, i, i + 1, UINT64_MAX, &es);
    memset(e, 0, sizeof(*e));
    if (rv == 0 && es.n == 1) {
        *e = es.e[0]; /* the reference moves to the caller */
        es.n = 0;
    } else if (rv == 0) {
        rv = RAFT_EUNAVAILABLE;
    }
    raft__ents_free(r->heap, &es);
    return rv;
}
