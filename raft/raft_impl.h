/*
 * raft/ internals shared between its files (not part of the contract).
 *
 * Allocation failure inside a protocol step is fatal (raft__oom aborts): a
 * half-applied state transition cannot be rolled back, the same policy as
 * OOM during apply (CONVENTIONS 9.3). Entry points that can fail cleanly
 * (raft_new, raft_ready) check before they change anything.
 */
#ifndef KEEL_RAFT_IMPL_H
#define KEEL_RAFT_IMPL_H

#include "raft.h"

void raft__oom(void);
void *raft__malloc(const struct raft_heap *h, size_t n);
void *raft__realloc(const struct raft_heap *h, void *p, size_t n);
void raft__free(const struct raft_heap *h, void *p);

/* A growable array of entries owning one reference to each payload. */
struct raft__ents
{
    struct raft_entry *e;
    size_t n, cap;
};
void raft__ents_push(const struct raft_heap *h,
                     struct raft__ents *v,
                     const struct raft_entry *e);
void raft__ents_truncate(struct raft__ents *v, size_t n);
void raft__ents_free(const struct raft_heap *h, struct raft__ents *v);
uint64_t raft__entry_size(const struct raft_entry *e);

/*
 * The log: what storage has (persisted) plus the unstable tail (entries and
 * possibly a snapshot received but not yet persisted). unstable.e[i] has
 * index offset + i; everything below offset is in storage.
 */
struct raft__log
{
    const struct raft_storage *s;
    const struct raft_heap *heap;
    bool has_snap;
    struct raft_snapshot snap;
    struct raft__ents unstable;
    uint64_t offset;
    uint64_t committed;
    uint64_t applied;
    /* Set only with a test_bug: let a broken rule proceed so the
     * simulator, not an assert, reports what it breaks. */
    bool lenient;
    /* Lowest index an append truncated since the owner last looked
     * (UINT64_MAX: none); the configuration tracker uses it. */
    uint64_t truncated_at;
};

int raft__log_init(struct raft__log *l,
                   const struct raft_storage *s,
                   const struct raft_heap *h);
void raft__log_close(struct raft__log *l);
uint64_t raft__log_first_index(const struct raft__log *l);
uint64_t raft__log_last_index(const struct raft__log *l);
uint64_t raft__log_last_term(const struct raft__log *l);
/* Term of i, or 0 with RAFT_ECOMPACTED/RAFT_EUNAVAILABLE. */
int raft__log_term(const struct raft__log *l, uint64_t i, uint64_t *t);
uint64_t raft__log_term_or_zero(const struct raft__log *l, uint64_t i);
bool raft__log_match_term(const struct raft__log *l, uint64_t i, uint64_t t);
bool raft__log_is_up_to_date(const struct raft__log *l,
                             uint64_t lasti,
                             uint64_t term);
/* Append after a log-matching check; returns false if (index, log_term)
 * does not match, else sets *lastnew. Commits min(committed, lastnew). */
bool raft__log_maybe_append(struct raft__log *l,
                            uint64_t index,
                            uint64_t log_term,
                            uint64_t committed,
                            const struct raft_entry *ents,
                            size_t n,
                            uint64_t *lastnew);
/* Unconditional append at ents[0].index (truncating the unstable tail). */
void raft__log_append(struct raft__log *l,
                      const struct raft_entry *ents,
                      size_t n);
/* [lo, hi) into out (references taken), at most max_size payload bytes but
 * at least one entry. */
int raft__log_slice(const struct raft__log *l,
                    uint64_t lo,
                    uint64_t hi,
                    uint64_t max_size,
                    struct raft__ents *out);
void raft__log_commit_to(struct raft__log *l, uint64_t i);
bool raft__log_maybe_commit(struct raft__log *l, uint64_t i, uint64_t term);
void raft__log_stable_to(struct raft__log *l, uint64_t i, uint64_t t);
void raft__log_stable_snap_to(struct raft__log *l, uint64_t i);
void raft__log_restore(struct raft__log *l, const struct raft_snapshot *s);
uint64_t raft__log_find_conflict_by_term(const struct raft__log *l,
                                         uint64_t index,
                                         uint64_t term);
/* Last index that is persisted (and still part of the log). */
uint64_t raft__log_stable_index(const struct raft__log *l);
/* Highest index that may be handed out for apply. */
uint64_t raft__log_max_apply(const struct raft__log *l);

/*
 * Replication progress of one member, as the leader sees it (etcd's
 * tracker.Progress; progress.c). probe: one MsgApp at a time until the
 * follower's log position is known; replicate: pipelined MsgApps within an
 * inflight window; snapshot: paused until the snapshot is reported.
 */
struct inflights
{
    uint64_t *buf;
    int start, count, size;
};

struct progress
{
    uint64_t id;
    uint64_t match, next;
    int state;
    uint64_t pending_snapshot;
    bool recent_active;
    bool probe_sent;
    bool learner;
    int vote; /* VOTE_*: this member's answer in the current election */
    /* Lease: the newest heartbeat (by our send tick) this member answered
     * in this term; it refuses other candidates for an election timeout
     * after receiving it. */
    uint64_t lease_tick;
    struct inflights ins;
};

bool raft__ins_full(const struct inflights *in);
void raft__ins_add(struct inflights *in, uint64_t i);
/* Frees every inflight message up to and including index `to`. */
void raft__ins_free_le(struct inflights *in, uint64_t to);
void raft__ins_free_first(struct inflights *in);
void raft__ins_reset(struct inflights *in);
void raft__pr_reset_state(struct progress *pr, int state);
void raft__pr_become_probe(struct progress *pr);
void raft__pr_become_replicate(struct progress *pr);
void raft__pr_become_snapshot(struct progress *pr, uint64_t i);
/* The follower acknowledged index n; true if match moved. */
bool raft__pr_maybe_update(struct progress *pr, uint64_t n);
/* The follower rejected index `rejected`, hinting it matches up to
 * match_hint; false if the rejection is stale. */
bool raft__pr_maybe_decr_to(struct progress *pr,
                            uint64_t rejected,
                            uint64_t match_hint);
bool raft__pr_is_paused(const struct progress *pr);

#endif /* KEEL_RAFT_IMPL_H */
