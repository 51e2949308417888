/*
 * The raft simulator: members, a virtual clock (1 ms resolution, a raft
 * tick every TICK_MS), a virtual network and virtual disks, all driven by
 * one seeded PRNG, so a seed replays exactly.
 *
 * Each member is a raft plus what a server would hold: a raft_memstore as
 * its disk (only what a Ready's persist step wrote survives a crash) and a
 * volatile state machine (a hash chain over applied entries, snapshotted
 * as {index, hash}). A member processes its Ready as server/ will: leader
 * traffic (rd->msgs) leaves at once, the persist completes after a disk
 * latency, then msgs_after_persist leave, entries are applied, and
 * raft_advance is called. A crash before the persist loses that Ready.
 *
 * Schedule: a fault phase of `steps` ticks with random client proposals,
 * reads, conf changes, transfers, compactions, crashes, partitions and a
 * lossy network; then everything heals and the liveness phase requires a
 * leader and a committed proposal within LIVE_TICKS ticks.
 *
 * Invariants, checked after every event (the member it touched):
 * - election safety: at most one leader per term; a leader was granted
 *   votes by a quorum of the voters of its configuration (so a learner's
 *   vote never counts, nor a vote of another term);
 * - a member that is a learner in a committed configuration never
 *   campaigns;
 * - a leader's commit index is held durably by a quorum of its voters
 *   (learners and unpersisted copies do not count);
 * - log matching: two entries with the same index and term have the same
 *   payload and the same previous term (checked on every entry persisted);
 * - committed entries never change: commit indexes are recorded when they
 *   advance and compared on every member, and every new leader holds all
 *   entries committed in earlier terms (leader completeness);
 * - state machine safety: every member applies the same entry at each
 *   index, contiguously, and snapshots agree with the hash chain;
 * - ReadIndex: a read state's index is >= every commit index seen anywhere
 *   when the read was requested (linearizable reads);
 * - durable state: a member's persisted term and commit never go back, and
 *   it never persists a second vote in one term.
 */
#include "sim.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

#define TICK_MS 10
#define ELECTION_TICK 10
#define HEARTBEAT_TICK 2
#define SPARES 2
#define MAX_NODES (7 + SPARES)
#define LIVE_TICKS 400

/* ---- helpers ------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *c = p;
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < n; i++) {
        h = (h ^ c[i]) * 1099511628211ULL;
    }
    return h;
}

static uint64_t data_hash(const struct raft_entry *e)
{
    uint64_t h = e->data != NULL ? fnv(e->data->data, e->data->len) : 7;
    return h ^ ((uint64_t)e->type << 56);
}

static uint64_t mix(uint64_t h, uint64_t a, uint64_t b)
{
    uint64_t x[3] = {h, a, b};
    return fnv(x, sizeof(x));
}

/* growable uint64 arrays indexed from 0 */
struct u64v
{
    uint64_t *v;
    size_t n;
};

static uint64_t u64v_get(const struct u64v *a, uint64_t i)
{
    return i < a->n ? a->v[i] : 0;
}

static void u64v_set(struct u64v *a, uint64_t i, uint64_t x)
{
    if (i >= a->n) {
        size_t n = a->n ? a->n : 64;
        while (n <= i) {
            n *= 2;
        }
        a->v = realloc(a->v, n * sizeof(uint64_t));
        memset(a->v + a->n, 0, (n - a->n) * sizeof(uint64_t));
        a->n = n;
    }
    a->v[i] = x;
}

/* ---- state --------------------------------------------------------------- */

struct smsg
{
    uint64_t at, seq;
    struct raft_message m;
};

struct node
{
    uint64_t id;
    struct raft_memstore *ms;
    struct raft_storage st;
    struct raft *r; /* NULL while down */
    struct raft_ready *rd;
    uint64_t persist_at;
    uint64_t restart_at; /* when down */
    /* volatile state machine */
    uint64_t applied, hash;
    struct raft_conf_state cs;
    /* tracking */
    uint64_t commit_seen;
    int state_seen;
    uint64_t term_seen;
    bool ever_added; /* an add was proposed: never reuse the id */
    bool crash_soon; /* a targeted crash at the end of this millisecond */
};

struct grant
{
    uint64_t term, voter, cand;
};

struct sim
{
    const struct sim_opts *o;
    struct sim_result *res;
    FILE *out;
    uint64_t rng;
    uint64_t now;
    unsigned faults;
    int n_nodes;
    struct node nodes[MAX_NODES];
    bool blocked[MAX_NODES][MAX_NODES]; /* from -> to */
    uint64_t heal_at;
    bool faults_on;
    bool pre_vote, check_quorum; /* per seed */
    bool lease;                  /* lease-based reads, per seed */
    uint64_t max_uncommitted;    /* per seed; 0: unlimited */
    unsigned crash_on_commit;    /* per million, per seed */

    struct smsg *q; /* binary heap on (at, seq) */
    size_t nq, capq;
    uint64_t seq;

    /* invariant records */
    struct u64v leader_of; /* term -> leader id */
    struct u64v cterm;     /* committed index -> term (0: unknown) */
    struct u64v cobs;      /* committed index -> term it was first seen in */
    uint64_t max_commit;
    struct u64v aterm, adata, chain; /* applied index -> term, data, chain */
    struct grant *grants;
    size_t n_grants, cap_grants;
    /* entry registry: open addressing on (index, term) */
    struct ereg
    {
        uint64_t index, term, data, prev;
    } * reg;
    size_t reg_cap, reg_n;
    /* reads: ctx counter -> minimum index */
    struct u64v read_min;
    uint64_t next_read;
    uint64_t next_prop;
    /* liveness */
    uint64_t marker;
    bool marker_applied;
};

static bool violated(struct sim *s)
{
    return s->res->violation;
}

static void violation(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (s->res->violation) {
        return;
    }
    s->res->violation = true;
    n = snprintf(s->res->what, sizeof(s->res->what),
                 "t=%" PRIu64 "ms: ", s->now);
    va_start(ap, fmt);
    vsnprintf(s->res->what + n, sizeof(s->res->what) - (size_t)n, fmt, ap);
    va_end(ap);
    if (s->o->trace) {
        fprintf(s->out, "VIOLATION %s\n", s->res->what);
    }
}

static void trace(struct sim *s, const char *fmt, ...)
{
    va_list ap;
    if (!s->o->trace) {
        return;
    }
    fprintf(s->out, "%7" PRIu64 " ", s->now);
    va_start(ap, fmt);
    vfprintf(s->out, fmt, ap);
    va_end(ap);
    fputc('\n', s->out);
}

static uint64_t rnd(struct sim *s, uint64_t n)
{
    return n == 0 ? 0 : splitmix(&s->rng) % n;
}

static bool chance(struct sim *s, unsigned per_million)
{
    return rnd(s, 1000000) < per_million;
}

static bool has(struct sim *s, unsigned f)
{
    return s->faults_on && (s->faults & f) != 0;
}

static const char *state_name(int st)
{
    static const char *const n[] = {"follower", "candidate", "leader",
                                    "pre-candidate"};
    return st >= 0 && st < 4 ? n[st] : "?";
}

/* ---- messages ------------------------------------------------------------ */

static void msg_copy(struct raft_message *d, const struct raft_message *m)
{
    size_t i;
    *d = *m;
    if (m->n_entries > 0) {
        d->entries = malloc(m->n_entries * sizeof(*d->entries));
        for (i = 0; i < m->n_entries; i++) {
            d->entries[i] = m->entries[i];
            raft_buf_ref(m->entries[i].data);
        }
    } else {
        d->entries = NULL;
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

static bool q_less(const struct smsg *a, const struct smsg *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void q_push(struct sim *s, uint64_t at, const struct raft_message *m)
{
    size_t i;
    if (s->nq == s->capq) {
        s->capq = s->capq ? s->capq * 2 : 256;
        s->q = realloc(s->q, s->capq * sizeof(*s->q));
    }
    i = s->nq++;
    s->q[i].at = at;
    s->q[i].seq = s->seq++;
    msg_copy(&s->q[i].m, m);
    while (i > 0 && q_less(&s->q[i], &s->q[(i - 1) / 2])) {
        struct smsg t = s->q[i];
        s->q[i] = s->q[(i - 1) / 2];
        s->q[(i - 1) / 2] = t;
        i = (i - 1) / 2;
    }
}

static void q_pop(struct sim *s, struct smsg *out)
{
    size_t i = 0;
    *out = s->q[0];
    s->q[0] = s->q[--s->nq];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->nq && q_less(&s->q[l], &s->q[m])) {
            m = l;
        }
        if (r < s->nq && q_less(&s->q[r], &s->q[m])) {
            m = r;
        }
        if (m == i) {
            break;
        }
        struct smsg t = s->q[i];
        s->q[i] = s->q[m];
        s->q[m] = t;
        i = m;
    }
}

static struct node *node_of(struct sim *s, uint64_t id)
{
    if (id == 0 || id > (uint64_t)s->n_nodes) {
        return NULL;
    }
    return &s->nodes[id - 1];
}

static void record_grant(struct sim *s, const struct raft_message *m)
{
    if (s->n_grants == s->cap_grants) {
        s->cap_grants = s->cap_grants ? s->cap_grants * 2 : 64;
        s->grants = realloc(s->grants, s->cap_grants * sizeof(*s->grants));
    }
    s->grants[s->n_grants].term = m->term;
    s->grants[s->n_grants].voter = m->from;
    s->grants[s->n_grants].cand = m->to;
    s->n_grants++;
}

/* The transport tells the leader how a snapshot send went, as server/
 * will (etcd: ReportSnapshot); without it the follower stays paused. */
static void report_snapshot(struct sim *s,
                            const struct raft_message *m,
                            bool failed)
{
    struct node *from = node_of(s, m->from);
    if (m->type == RAFT_MSG_SNAP && from != NULL && from->r != NULL) {
        trace(s, "n%" PRIu64 " snapshot to n%" PRIu64 " %s", m->from, m->to,
              failed ? "FAILED" : "sent");
        raft_report_snapshot(from->r, m->to, failed);
        s->res->snapshots_sent += !failed;
    }
}

static void net_send(struct sim *s, const struct raft_message *m)
{
    uint64_t lat;
    if (m->type == RAFT_MSG_VOTE_RESP && !m->reject) {
        record_grant(s, m); /* a promise, whatever the network does */
    }
    if (m->to == 0 || m->to > (uint64_t)s->n_nodes || m->to == m->from) {
        return;
    }
    if (s->blocked[m->from - 1][m->to - 1] ||
        (has(s, SIM_F_DROP) && chance(s, 50000))) {
        report_snapshot(s, m, true);
        if (m->type == RAFT_MSG_APP && s->blocked[m->from - 1][m->to - 1] &&
            chance(s, 200000)) {
            /* the transport noticed the link is down */
            struct node *from = node_of(s, m->from);
            if (from != NULL && from->r != NULL) {
                raft_report_unreachable(from->r, m->to);
            }
        }
        return;
    }
    report_snapshot(s, m, false);
    lat = 1 + rnd(s, 5);
    if (has(s, SIM_F_DELAY) && chance(s, 100000)) {
        lat += rnd(s, 80);
    }
    if (has(s, SIM_F_DELAY) && chance(s, 10000)) {
        lat += rnd(s, 400); /* a message stuck in a queue for a while */
    }
    q_push(s, s->now + lat, m);
    if (has(s, SIM_F_DUP) && chance(s, 30000)) {
        q_push(s, s->now + lat + rnd(s, 30), m);
    }
}

/* ---- invariants ---------------------------------------------------------- */

static struct ereg *reg_find(struct sim *s, uint64_t index, uint64_t term)
{
    size_t h = (size_t)(mix(0, index, term) & (s->reg_cap - 1));
    while (s->reg[h].index != 0 &&
           (s->reg[h].index != index || s->reg[h].term != term)) {
        h = (h + 1) & (s->reg_cap - 1);
    }
    return &s->reg[h];
}

static void reg_grow(struct sim *s)
{
    struct ereg *old = s->reg;
    size_t i, cap = s->reg_cap;
    s->reg_cap = cap ? cap * 2 : 1024;
    s->reg = calloc(s->reg_cap, sizeof(*s->reg));
    for (i = 0; i < cap; i++) {
        if (old[i].index != 0) {
            *reg_find(s, old[i].index, old[i].term) = old[i];
        }
    }
    free(old);
}

/* Log matching, checked on every entry a member persists. */
static void check_entry(struct sim *s,
                        struct node *n,
                        const struct raft_entry *e,
                        uint64_t prev)
{
    struct ereg *g;
    uint64_t d = data_hash(e);
    uint64_t ct = u64v_get(&s->cterm, e->index);
    /* a stale member may hold another entry at a committed index (it is
     * in the minority), but never below its own commit index */
    if (ct != 0 && ct != e->term && e->index <= n->commit_seen) {
        violation(s,
                  "n%" PRIu64 " persists entry %" PRIu64 " term %" PRIu64
                  " over committed term %" PRIu64,
                  n->id, e->index, e->term, ct);
        return;
    }
    if (s->reg_n * 2 >= s->reg_cap) {
        reg_grow(s);
    }
    g = reg_find(s, e->index, e->term);
    if (g->index == 0) {
        g->index = e->index;
        g->term = e->term;
        g->data = d;
        g->prev = prev;
        s->reg_n++;
        return;
    }
    if (g->data != d ||
        (prev != UINT64_MAX && g->prev != UINT64_MAX && g->prev != prev)) {
        violation(s,
                  "log matching: n%" PRIu64 " entry %" PRIu64 "/%" PRIu64
                  " differs from another member's",
                  n->id, e->index, e->term);
    }
    if (g->prev == UINT64_MAX) {
        g->prev = prev;
    }
}

static bool is_learner(const struct raft_conf_state *cs, uint64_t id)
{
    uint32_t i;
    for (i = 0; i < cs->n_learners; i++) {
        if (cs->learners[i] == id) {
            return true;
        }
    }
    return false;
}

static void check_new_leader(struct sim *s,
                             struct node *n,
                             const struct raft_status *st)
{
    uint64_t term = st->hs.term, i;
    uint32_t v;
    size_t k;
    int granted = 0;
    /* quorum of this configuration's voters granted the vote this term */
    for (v = 0; v < st->conf.n_voters; v++) {
        uint64_t voter = st->conf.voters[v];
        bool ok = voter == n->id;
        for (k = 0; k < s->n_grants && !ok; k++) {
            ok = s->grants[k].term == term && s->grants[k].voter == voter &&
                 s->grants[k].cand == n->id;
        }
        granted += ok;
    }
    if (granted < (int)st->conf.n_voters / 2 + 1) {
        violation(s,
                  "n%" PRIu64 " leader of term %" PRIu64
                  " with only %d of %u"
                  " voters' grants",
                  n->id, term, granted, st->conf.n_voters);
        return;
    }
    /* leader completeness */
    for (i = 1; i <= s->max_commit; i++) {
        uint64_t ct = u64v_get(&s->cterm, i), t;
        int rv;
        if (ct == 0 || u64v_get(&s->cobs, i) >= term) {
            continue;
        }
        rv = raft_log_term(n->r, i, &t);
        if (rv == RAFT_ECOMPACTED) {
            continue;
        }
        if (rv != 0 || t != ct) {
            violation(s,
                      "leader completeness: n%" PRIu64 " leads term %" PRIu64
                      " without committed entry %" PRIu64 " (term %" PRIu64
                      ", has %" PRIu64 ")",
                      n->id, term, i, ct, t);
            return;
        }
    }
}

/* A leader's commit index must be backed by a quorum of the voters of its
 * configuration holding the entry durably (a learner's copy or an
 * unpersisted one does not count). */
static void check_commit_quorum(struct sim *s,
                                struct node *n,
                                const struct raft_status *st)
{
    uint64_t c = st->hs.commit, t;
    uint32_t v;
    int have = 0;
    if (raft_log_term(n->r, c, &t) != 0) {
        return;
    }
    for (v = 0; v < st->conf.n_voters; v++) {
        struct node *x = node_of(s, st->conf.voters[v]);
        uint64_t xt;
        if (x == NULL) {
            continue;
        }
        if (raft_memstore_first_index(x->ms) > c) {
            have++; /* in its snapshot */
        } else if (raft_memstore_last_index(x->ms) >= c &&
                   x->st.term(x->st.ctx, c, &xt) == 0 && xt == t) {
            have++;
        }
    }
    if (have < (int)st->conf.n_voters / 2 + 1) {
        violation(s,
                  "n%" PRIu64 " (leader, term %" PRIu64 ") commits %" PRIu64
                  " held durably by only %d of %u voters",
                  n->id, st->hs.term, c, have, st->conf.n_voters);
    }
}

static void check_node(struct sim *s, struct node *n)
{
    struct raft_status st;
    uint64_t i;
    if (n->r == NULL || violated(s)) {
        return;
    }
    raft_status(n->r, &st);
    if (st.state != n->state_seen || st.hs.term != n->term_seen) {
        trace(s, "n%" PRIu64 " %s term=%" PRIu64 " lead=%" PRIu64, n->id,
              state_name(st.state), st.hs.term, st.lead);
    }
    if (st.state != RAFT_FOLLOWER && is_learner(&st.conf, n->id) &&
        st.conf_index <= st.hs.commit) {
        violation(s, "learner n%" PRIu64 " is %s", n->id, state_name(st.state));
        return;
    }
    if (st.state == RAFT_LEADER) {
        uint64_t l = u64v_get(&s->leader_of, st.hs.term);
        if (l == 0) {
            u64v_set(&s->leader_of, st.hs.term, n->id);
            s->res->elections++;
            check_new_leader(s, n, &st);
            if (has(s, SIM_F_CRASH) && chance(s, 30000)) {
                n->crash_soon = true; /* a leader dying young */
            }
        } else if (l != n->id) {
            violation(s,
                      "two leaders in term %" PRIu64 ": n%" PRIu64
                      " and n%" PRIu64,
                      st.hs.term, l, n->id);
            return;
        }
    }
    n->state_seen = st.state;
    n->term_seen = st.hs.term;
    if (st.hs.commit > n->commit_seen) {
        if (st.state == RAFT_LEADER) {
            check_commit_quorum(s, n, &st);
            if (violated(s)) {
                return;
            }
        }
        for (i = n->commit_seen + 1; i <= st.hs.commit; i++) {
            uint64_t t, ct;
            if (raft_log_term(n->r, i, &t) != 0) {
                continue; /* compacted: checked when it was applied */
            }
            ct = u64v_get(&s->cterm, i);
            if (ct == 0) {
                u64v_set(&s->cterm, i, t);
                u64v_set(&s->cobs, i, st.hs.term);
            } else if (ct != t) {
                violation(s,
                          "n%" PRIu64 " commits entry %" PRIu64 " term %" PRIu64
                          " but term %" PRIu64 " was committed there",
                          n->id, i, t, ct);
                return;
            }
        }
        n->commit_seen = st.hs.commit;
        /* targeted crashes: right after a leader commits is where a
         * wrong commit rule loses data (Raft paper Figure 8) */
        if (st.state == RAFT_LEADER && has(s, SIM_F_CRASH) &&
            chance(s, s->crash_on_commit)) {
            n->crash_soon = true;
        }
        if (st.hs.commit > s->max_commit) {
            s->max_commit = st.hs.commit;
            s->res->commits = st.hs.commit;
        }
    }
}

/* ---- applying ------------------------------------------------------------ */

static void apply_entry(struct sim *s,
                        struct node *n,
                        const struct raft_entry *e)
{
    uint64_t d = data_hash(e), at;
    if (e->index != n->applied + 1) {
        violation(s,
                  "n%" PRIu64 " applies %" PRIu64 " after %" PRIu64
                  " (gap or repeat)",
                  n->id, e->index, n->applied);
        return;
    }
    at = u64v_get(&s->aterm, e->index);
    if (at == 0) {
        u64v_set(&s->aterm, e->index, e->term);
        u64v_set(&s->adata, e->index, d);
    } else if (at != e->term || u64v_get(&s->adata, e->index) != d) {
        violation(s,
                  "state machine safety: n%" PRIu64 " applies %" PRIu64
                  "/%" PRIu64 ", another member applied %" PRIu64 "/%" PRIu64,
                  n->id, e->index, e->term, e->index, at);
        return;
    }
    n->hash = mix(n->hash, e->index, d);
    n->applied = e->index;
    if (u64v_get(&s->chain, e->index) == 0) {
        u64v_set(&s->chain, e->index, n->hash);
    } else if (u64v_get(&s->chain, e->index) != n->hash) {
        violation(s, "n%" PRIu64 " state differs at %" PRIu64, n->id, e->index);
        return;
    }
    if (e->type == RAFT_ENTRY_CONF_CHANGE) {
        struct raft_conf_change cc;
        if (raft_conf_change_decode(NULL, e->data, &cc) != 0) {
            violation(s, "n%" PRIu64 " cannot decode conf change %" PRIu64,
                      n->id, e->index);
            return;
        }
        raft_apply_conf_change(n->r, &cc, &n->cs);
        raft_buf_unref(cc.context);
        s->res->conf_changes++;
        trace(s,
              "n%" PRIu64 " applies conf change %" PRIu64 ": type %d n%" PRIu64
              " -> %u voters %u learners",
              n->id, e->index, cc.type, cc.node_id, n->cs.n_voters,
              n->cs.n_learners);
    } else if (e->data != NULL && e->data->len == 8 &&
               memcmp(e->data->data, &s->marker, 8) == 0) {
        s->marker_applied = true;
    }
}

static void install_snapshot(struct sim *s,
                             struct node *n,
                             const struct raft_snapshot *snap)
{
    uint64_t h = 0;
    if (snap->data != NULL && snap->data->len == 16) {
        memcpy(&h, snap->data->data + 8, 8);
    }
    if (snap->meta.index > 0 && u64v_get(&s->chain, snap->meta.index) != h) {
        violation(s, "n%" PRIu64 " snapshot at %" PRIu64 " disagrees", n->id,
                  snap->meta.index);
        return;
    }
    n->applied = snap->meta.index;
    n->hash = h;
    n->cs = snap->meta.conf_state;
    trace(s, "n%" PRIu64 " installs snapshot %" PRIu64 "/%" PRIu64, n->id,
          snap->meta.index, snap->meta.term);
}

static void trace_msg(struct sim *s,
                      const char *what,
                      const struct raft_message *m)
{
    if (!s->o->trace) {
        return;
    }
    trace(s,
          "%s n%" PRIu64 "->n%" PRIu64 " %s term=%" PRIu64 " idx=%" PRIu64
          " lt=%" PRIu64 " ents=%zu commit=%" PRIu64 "%s%s",
          what, m->from, m->to, raft_msg_type_name(m->type), m->term, m->index,
          m->log_term, m->n_entries, m->commit, m->reject ? " reject" : "",
          m->type == RAFT_MSG_SNAP ? " (snapshot)" : "");
}

/* ---- ready processing ---------------------------------------------------- */

static void persist(struct sim *s, struct node *n);

static void take_ready(struct sim *s, struct node *n)
{
    struct raft_ready *rd;
    size_t i;
    while (n->r != NULL && n->rd == NULL && !violated(s) &&
           raft_has_ready(n->r)) {
        uint64_t prev = UINT64_MAX;
        rd = raft_ready(n->r);
        n->rd = rd;
        for (i = 0; i < rd->n_entries && !violated(s); i++) {
            if (i > 0) {
                prev = rd->entries[i - 1].term;
            } else if (raft_log_term(n->r, rd->entries[0].index - 1, &prev) !=
                       0) {
                prev = UINT64_MAX;
            }
            check_entry(s, n, &rd->entries[i], prev);
        }
        for (i = 0; i < rd->n_msgs; i++) {
            trace_msg(s, "send", &rd->msgs[i]);
            net_send(s, &rd->msgs[i]);
        }
        n->persist_at = s->now;
        if (has(s, SIM_F_DISK) && chance(s, 300000)) {
            n->persist_at += 1 + rnd(s, 15);
        }
        if (n->persist_at > s->now) {
            return;
        }
        persist(s, n);
    }
}

static void persist(struct sim *s, struct node *n)
{
    struct raft_ready *rd = n->rd;
    size_t i;
    int rv;
    if (rd->has_snapshot) {
        rv = raft_memstore_apply_snapshot(n->ms, &rd->snapshot);
        if (rv != 0) {
            violation(s, "n%" PRIu64 " apply_snapshot: %s", n->id,
                      raft_strerror(rv));
            return;
        }
    }
    if (rd->n_entries > 0 &&
        (rv = raft_memstore_append(n->ms, rd->entries, rd->n_entries)) != 0) {
        violation(s, "n%" PRIu64 " append: %s", n->id, raft_strerror(rv));
        return;
    }
    if (rd->has_hard_state) {
        struct raft_hard_state old;
        struct raft_conf_state cs;
        const struct raft_hard_state *hs = &rd->hard_state;
        n->st.initial_state(n->st.ctx, &old, &cs);
        if (hs->term < old.term || hs->commit < old.commit ||
            (hs->term == old.term && old.vote != 0 && hs->vote != old.vote)) {
            violation(s,
                      "n%" PRIu64 " persists term %" PRIu64 " vote %" PRIu64
                      " commit %" PRIu64 " over term %" PRIu64 " vote %" PRIu64
                      " commit %" PRIu64 " (regression or a second vote)",
                      n->id, hs->term, hs->vote, hs->commit, old.term, old.vote,
                      old.commit);
            return;
        }
        raft_memstore_set_hard_state(n->ms, hs);
    }
    for (i = 0; i < rd->n_msgs_after_persist; i++) {
        trace_msg(s, "send", &rd->msgs_after_persist[i]);
        net_send(s, &rd->msgs_after_persist[i]);
    }
    if (rd->has_snapshot) {
        install_snapshot(s, n, &rd->snapshot);
    }
    for (i = 0; i < rd->n_committed && !violated(s); i++) {
        if (rd->committed[i].index <= n->applied) {
            continue; /* covered by the snapshot just installed */
        }
        apply_entry(s, n, &rd->committed[i]);
    }
    for (i = 0; i < rd->n_read_states && !violated(s); i++) {
        const struct raft_read_state *rs = &rd->read_states[i];
        uint64_t id = 0, min;
        if (rs->context == NULL || rs->context->len != 8) {
            violation(s, "n%" PRIu64 " read state without its context", n->id);
            break;
        }
        memcpy(&id, rs->context->data, 8);
        min = u64v_get(&s->read_min, id);
        if (rs->index + 1 < min) {
            violation(s,
                      "stale read: n%" PRIu64 " read %" PRIu64
                      " at index %" PRIu64 " but %" PRIu64
                      " was committed before it was asked",
                      n->id, id, rs->index, min - 1);
        }
        s->res->reads++;
    }
    raft_advance(n->r, rd);
    n->rd = NULL;
    check_node(s, n);
}

static void after_event(struct sim *s, struct node *n)
{
    check_node(s, n);
    take_ready(s, n);
}

/* ---- node lifecycle ------------------------------------------------------ */

static void node_start(struct sim *s, struct node *n)
{
    struct raft_config c;
    struct raft_snapshot snap;
    struct raft_hard_state hs;
    int rv;
    raft_config_default(&c);
    c.id = n->id;
    c.election_tick = ELECTION_TICK;
    c.heartbeat_tick = HEARTBEAT_TICK;
    c.max_size_per_msg = rnd(s, 3) == 0 ? 0 : 64 + rnd(s, 256);
    c.pre_vote = s->pre_vote;
    c.check_quorum = s->check_quorum || s->lease;
    c.read_only_option =
        s->lease ? RAFT_READ_ONLY_LEASE_BASED : RAFT_READ_ONLY_SAFE;
    c.max_uncommitted_size = s->max_uncommitted;
    c.max_inflight_msgs = 1 + (int)rnd(s, 8);
    c.storage = &n->st;
    c.rand_seed = splitmix(&s->rng);
    c.test_bug = s->o->test_bug;
    /* the state machine comes back from the snapshot, the rest is replay */
    n->st.snapshot(n->st.ctx, &snap);
    n->applied = snap.meta.index;
    n->hash = 0;
    if (snap.data != NULL && snap.data->len == 16) {
        memcpy(&n->hash, snap.data->data + 8, 8);
    }
    n->cs = snap.meta.conf_state;
    raft_buf_unref(snap.data);
    c.applied = n->applied;
    rv = raft_new(&c, &n->r);
    if (rv != 0) {
        violation(s, "n%" PRIu64 " cannot restart: %s", n->id,
                  raft_strerror(rv));
        n->r = NULL;
        return;
    }
    n->st.initial_state(n->st.ctx, &hs, &snap.meta.conf_state);
    n->commit_seen = hs.commit;
    n->state_seen = RAFT_FOLLOWER;
    n->term_seen = hs.term;
}

static void node_crash(struct sim *s, struct node *n)
{
    trace(s, "n%" PRIu64 " CRASH%s", n->id,
          n->rd != NULL ? " (an unpersisted Ready is lost)" : "");
    raft_free(n->r); /* also drops an outstanding Ready */
    n->r = NULL;
    n->rd = NULL;
    /* A leadership whose term never became durable here is forgotten: it
     * was won inside the lost Ready (a single voter wins at once), and
     * raft_ready holds back every message of a Ready that changes the
     * term or vote, so nothing of it reached anyone. After the restart
     * this member may rightly vote for another leader of that term. */
    {
        struct raft_hard_state hs;
        struct raft_conf_state cs;
        uint64_t t;
        n->st.initial_state(n->st.ctx, &hs, &cs);
        for (t = hs.term + 1; t < s->leader_of.n; t++) {
            if (s->leader_of.v[t] == n->id) {
                trace(s, "n%" PRIu64 " leadership of term %" PRIu64
                      " lost before its term was persisted",
                      n->id, t);
                s->leader_of.v[t] = 0;
            }
        }
    }
    n->restart_at = s->now + TICK_MS * (5 + rnd(s, 60));
    s->res->crashes++;
}

static struct node *find_leader(struct sim *s)
{
    struct node *best = NULL;
    uint64_t best_term = 0;
    int i;
    for (i = 0; i < s->n_nodes; i++) {
        struct raft_status st;
        struct node *n = &s->nodes[i];
        if (n->r == NULL) {
            continue;
        }
        raft_status(n->r, &st);
        if (st.state == RAFT_LEADER && st.hs.term >= best_term) {
            best = n;
            best_term = st.hs.term;
        }
    }
    return best;
}

static struct node *live_random(struct sim *s)
{
    int tries;
    for (tries = 0; tries < 4; tries++) {
        struct node *n = &s->nodes[rnd(s, (uint64_t)s->n_nodes)];
        if (n->r != NULL) {
            return n;
        }
    }
    return NULL;
}

/* ---- random actions ------------------------------------------------------ */

static void act_propose(struct sim *s)
{
    struct node *n = live_random(s);
    struct raft_buf *b;
    uint64_t v;
    if (n == NULL) {
        return;
    }
    v = ++s->next_prop;
    b = raft_buf_new(NULL, &v, sizeof(v));
    raft_propose(n->r, b);
    raft_buf_unref(b);
    after_event(s, n);
}

static void act_read(struct sim *s)
{
    struct node *n = live_random(s);
    struct raft_buf *b;
    uint64_t id;
    if (n == NULL) {
        return;
    }
    id = ++s->next_read;
    u64v_set(&s->read_min, id, s->max_commit + 1);
    b = raft_buf_new(NULL, &id, sizeof(id));
    raft_read_index(n->r, b);
    raft_buf_unref(b);
    after_event(s, n);
}

static void act_conf(struct sim *s)
{
    struct node *l = find_leader(s);
    struct raft_status st;
    struct raft_conf_change cc = {0, 0, 0, NULL};
    int i, choice;
    if (l == NULL) {
        return;
    }
    raft_status(l->r, &st);
    choice = (int)rnd(s, 3);
    if (choice == 0) { /* add a learner that was never a member */
        for (i = 0; i < s->n_nodes; i++) {
            if (!s->nodes[i].ever_added &&
                s->nodes[i].id > (uint64_t)s->o->members) {
                cc.type = RAFT_CONF_ADD_LEARNER_NODE;
                cc.node_id = s->nodes[i].id;
                s->nodes[i].ever_added = true;
                break;
            }
        }
    } else if (choice == 1 && st.conf.n_learners > 0) {
        cc.type = RAFT_CONF_ADD_NODE; /* promote */
        cc.node_id = st.conf.learners[rnd(s, st.conf.n_learners)];
    } else if (choice == 2 && st.conf.n_voters + st.conf.n_learners > 1) {
        uint32_t k = (uint32_t)rnd(s, st.conf.n_voters + st.conf.n_learners);
        cc.type = RAFT_CONF_REMOVE_NODE;
        cc.node_id = k < st.conf.n_voters
                         ? st.conf.voters[k]
                         : st.conf.learners[k - st.conf.n_voters];
        if (k < st.conf.n_voters && st.conf.n_voters == 1) {
            return;
        }
    }
    if (cc.node_id == 0) {
        return;
    }
    trace(s, "n%" PRIu64 " proposes conf change type %d n%" PRIu64, l->id,
          cc.type, cc.node_id);
    raft_propose_conf_change(l->r, &cc);
    after_event(s, l);
}

static void act_transfer(struct sim *s)
{
    struct node *l = find_leader(s);
    struct raft_status st;
    uint64_t to;
    if (l == NULL) {
        return;
    }
    raft_status(l->r, &st);
    if (st.conf.n_voters < 2) {
        return;
    }
    to = st.conf.voters[rnd(s, st.conf.n_voters)];
    trace(s, "n%" PRIu64 " transfers leadership to n%" PRIu64, l->id, to);
    raft_transfer_leader(l->r, to);
    after_event(s, l);
}

static void act_compact(struct sim *s)
{
    struct node *n = live_random(s);
    uint64_t first, j;
    struct raft_buf *b;
    uint64_t img[2];
    if (n == NULL || n->applied < raft_memstore_first_index(n->ms)) {
        return;
    }
    img[0] = n->applied;
    img[1] = n->hash;
    b = raft_buf_new(NULL, img, sizeof(img));
    if (raft_memstore_create_snapshot(n->ms, n->applied, &n->cs, b) == 0) {
        first = raft_memstore_first_index(n->ms);
        j = n->applied - rnd(s, 4);
        if (j >= first) {
            raft_memstore_compact(n->ms, j);
        }
        trace(s, "n%" PRIu64 " snapshot at %" PRIu64 ", log from %" PRIu64,
              n->id, n->applied, raft_memstore_first_index(n->ms));
    }
    raft_buf_unref(b);
}

static void act_partition(struct sim *s)
{
    int i, j;
    if (has(s, SIM_F_PARTITION) && chance(s, 500)) {
        uint64_t side = splitmix(&s->rng);
        for (i = 0; i < s->n_nodes; i++) {
            for (j = 0; j < s->n_nodes; j++) {
                s->blocked[i][j] = ((side >> i) & 1) != ((side >> j) & 1);
            }
        }
        s->heal_at = s->now + TICK_MS * (10 + rnd(s, 80));
        trace(s, "PARTITION %#" PRIx64, side & ((1u << s->n_nodes) - 1));
    }
    if (has(s, SIM_F_ONEWAY) && chance(s, 500)) {
        i = (int)rnd(s, (uint64_t)s->n_nodes);
        j = (int)rnd(s, (uint64_t)s->n_nodes);
        s->blocked[i][j] = true;
        if (s->heal_at <= s->now) {
            s->heal_at = s->now + TICK_MS * (10 + rnd(s, 80));
        }
        trace(s, "ONE-WAY n%d -/-> n%d", i + 1, j + 1);
    }
    if (s->heal_at != 0 && s->now >= s->heal_at) {
        memset(s->blocked, 0, sizeof(s->blocked));
        s->heal_at = 0;
        trace(s, "HEAL");
    }
}

static void random_actions(struct sim *s)
{
    int i;
    if (chance(s, 40000)) {
        act_propose(s);
    }
    if (has(s, SIM_F_READ) && chance(s, 10000)) {
        act_read(s);
    }
    if (has(s, SIM_F_CONF) && chance(s, 1500)) {
        act_conf(s);
    }
    if (has(s, SIM_F_TRANSFER) && chance(s, 1000)) {
        act_transfer(s);
    }
    if (has(s, SIM_F_SNAPSHOT) && chance(s, 3000)) {
        act_compact(s);
    }
    act_partition(s);
    for (i = 0; i < s->n_nodes; i++) {
        struct node *n = &s->nodes[i];
        if (n->r != NULL &&
            (n->crash_soon || (has(s, SIM_F_CRASH) && chance(s, 150)))) {
            n->crash_soon = false;
            node_crash(s, n);
        } else if (n->r == NULL && s->now >= n->restart_at) {
            trace(s, "n%" PRIu64 " RESTART", n->id);
            node_start(s, n);
            after_event(s, n);
        }
    }
}

/* ---- main loop ----------------------------------------------------------- */

static void run_ms(struct sim *s)
{
    int i;
    while (s->nq > 0 && s->q[0].at <= s->now && !violated(s)) {
        struct smsg e;
        struct node *n;
        q_pop(s, &e);
        n = node_of(s, e.m.to);
        if (n != NULL && n->r != NULL) {
            trace_msg(s, "recv", &e.m);
            raft_step(n->r, &e.m);
            s->res->events++;
            after_event(s, n);
        }
        msg_free(&e.m);
    }
    for (i = 0; i < s->n_nodes && !violated(s); i++) {
        struct node *n = &s->nodes[i];
        if (n->r != NULL && n->rd != NULL && n->persist_at <= s->now) {
            persist(s, n);
            take_ready(s, n);
        }
    }
    if (s->now % TICK_MS == 0) {
        for (i = 0; i < s->n_nodes && !violated(s); i++) {
            struct node *n = &s->nodes[i];
            if (n->r != NULL) {
                raft_tick(n->r);
                s->res->events++;
                after_event(s, n);
            }
        }
    }
    if (!violated(s)) {
        random_actions(s);
    }
}

static void heal_all(struct sim *s)
{
    int i;
    for (i = 0; i < s->n_nodes; i++) {
        s->nodes[i].crash_soon = false;
    }
    memset(s->blocked, 0, sizeof(s->blocked));
    s->heal_at = 0;
    s->faults_on = false;
    for (i = 0; i < s->n_nodes; i++) {
        if (s->nodes[i].r == NULL) {
            node_start(s, &s->nodes[i]);
            after_event(s, &s->nodes[i]);
        }
    }
    trace(s, "FAULTS STOP: all healed and restarted");
}

static void liveness(struct sim *s)
{
    uint64_t start = s->now, last_prop = 0;
    s->marker = 0xfeed000000000000ULL;
    s->marker_applied = false;
    while (!violated(s) && s->now < start + (uint64_t)LIVE_TICKS * TICK_MS) {
        struct node *l;
        s->now++;
        run_ms(s);
        if (s->marker_applied) {
            s->res->liveness_ticks = (int)((s->now - start) / TICK_MS);
            return;
        }
        if (s->now % TICK_MS == 0 && s->now - last_prop >= 5 * TICK_MS &&
            (l = find_leader(s)) != NULL) {
            struct raft_buf *b = raft_buf_new(NULL, &s->marker, 8);
            raft_propose(l->r, b);
            raft_buf_unref(b);
            after_event(s, l);
            last_prop = s->now;
        }
        if (!s->marker_applied) {
            /* applied by the leader is enough: it is committed */
        }
    }
    if (!violated(s)) {
        violation(s,
                  "liveness: no proposal committed within %d ticks of "
                  "healing",
                  LIVE_TICKS);
    }
}

int sim_run(const struct sim_opts *o, struct sim_result *res)
{
    struct sim *s = calloc(1, sizeof(*s));
    uint64_t voters[7];
    int i, members = o->members;
    memset(res, 0, sizeof(*res));
    s->o = o;
    s->res = res;
    s->out = o->out != NULL ? o->out : stderr;
    s->rng = o->seed * 0x2545f4914f6cdd1dULL + 1;
    s->faults = o->faults;
    s->faults_on = true;
    s->pre_vote = rnd(s, 4) != 0;
    s->check_quorum = rnd(s, 4) != 0;
    s->lease = rnd(s, 4) == 0;
    s->max_uncommitted = rnd(s, 4) == 0 ? 64 : 0; /* 8 proposals */
    {
        /* some seeds kill leaders right after they commit, often: where
         * a wrong commit rule loses data (Figure 8) */
        static const unsigned rates[] = {5000, 20000, 200000};
        s->crash_on_commit = rates[rnd(s, 3)];
    }
    if (members < 1 || members > 7) {
        members = 3;
    }
    s->n_nodes = members + ((o->faults & SIM_F_CONF) ? SPARES : 0);
    for (i = 0; i < s->n_nodes; i++) {
        struct node *n = &s->nodes[i];
        n->id = (uint64_t)i + 1;
        n->ms = raft_memstore_new(NULL);
        raft_memstore_storage(n->ms, &n->st);
        if (i < members) {
            voters[i] = n->id;
            n->ever_added = true;
        }
    }
    for (i = 0; i < members; i++) {
        raft_memstore_bootstrap(s->nodes[i].ms, voters, (size_t)members);
    }
    trace(s,
          "seed %" PRIu64
          ": %d members (+%d spare), %d ticks, pre-vote %s,"
          " check-quorum %s, reads %s",
          o->seed, members, s->n_nodes - members, o->steps,
          s->pre_vote ? "on" : "off",
          s->check_quorum || s->lease ? "on" : "off",
          s->lease ? "lease-based" : "safe");
    for (i = 0; i < s->n_nodes; i++) {
        node_start(s, &s->nodes[i]);
        after_event(s, &s->nodes[i]);
    }
    for (s->now = 1; s->now <= (uint64_t)o->steps * TICK_MS && !violated(s);
         s->now++) {
        run_ms(s);
    }
    if (!violated(s)) {
        heal_all(s);
        liveness(s);
    }
    /* teardown */
    while (s->nq > 0) {
        struct smsg e;
        q_pop(s, &e);
        msg_free(&e.m);
    }
    free(s->q);
    for (i = 0; i < s->n_nodes; i++) {
        raft_free(s->nodes[i].r);
        raft_memstore_free(s->nodes[i].ms);
    }
    free(s->leader_of.v);
    free(s->cterm.v);
    free(s->cobs.v);
    free(s->aterm.v);
    free(s->adata.v);
    free(s->chain.v);
    free(s->read_min.v);
    free(s->grants);
    free(s->reg);
    i = res->violation ? -1 : 0;
    free(s);
    return i;
}

int sim_parse_faults(const char *str, unsigned *mask)
{
    static const struct
    {
        const char *name;
        unsigned bit;
    } names[] = {{"drop", SIM_F_DROP},
                 {"dup", SIM_F_DUP},
                 {"delay", SIM_F_DELAY},
                 {"partition", SIM_F_PARTITION},
                 {"oneway", SIM_F_ONEWAY},
                 {"crash", SIM_F_CRASH},
                 {"conf", SIM_F_CONF},
                 {"transfer", SIM_F_TRANSFER},
                 {"snapshot", SIM_F_SNAPSHOT},
                 {"disk", SIM_F_DISK},
                 {"read", SIM_F_READ},
                 {"all", SIM_F_ALL},
                 {"none", 0}};
    char buf[256], *tok, *save = NULL;
    *mask = 0;
    if (strlen(str) >= sizeof(buf)) {
        return -1;
    }
    strcpy(buf, str);
    for (tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        bool found = false;
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
            if (strcmp(tok, names[i].name) == 0) {
                *mask |= names[i].bit;
                found = true;
            }
        }
        if (!found) {
            return -1;
        }
    }
    return 0;
}
