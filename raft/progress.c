/*
 * Replication progress: the leader's view of each member (etcd's
 * tracker.Progress and Inflights, design.md "Progress").
 *
 * A member starts in probe (one MsgApp per heartbeat round until an ack
 * tells where its log is), moves to replicate (MsgApps pipelined: next
 * advances optimistically, bounded by an inflight window of
 * max_inflight_msgs messages, freed as acks arrive), and to snapshot when
 * its next entry was compacted (nothing sent until the snapshot is reported
 * or acknowledged). A rejection moves replicate back to probe. Stale acks
 * and rejections (duplicated or reordered messages) change nothing.
 */
#include <assert.h>

#include "raft_impl.h"

bool raft__ins_full(const struct inflights *in)
{
    return in->count == in->size;
}

void raft__ins_add(struct inflights *in, uint64_t i)
{
    assert(!raft__ins_full(in));
    in->buf[(in->start + in->count) % in->size] = i;
    in->count++;
}

void raft__ins_free_le(struct inflights *in, uint64_t to)
{
    while (in->count > 0 && in->buf[in->start] <= to) {
        in->start = (in->start + 1) % in->size;
        in->count--;
    }
    if (in->count == 0) {
        in->start = 0;
    }
}

void raft__ins_free_first(struct inflights *in)
{
    if (in->count > 0) {
        raft__ins_free_le(in, in->buf[in->start]);
    }
}

void raft__ins_reset(struct inflights *in)
{
    in->start = 0;
    in->count = 0;
}

void raft__pr_reset_state(struct progress *pr, int state)
{
    pr->probe_sent = false;
    pr->pending_snapshot = 0;
    pr->state = state;
    raft__ins_reset(&pr->ins);
}

void raft__pr_become_probe(struct progress *pr)
{
    if (pr->state == RAFT_PROGRESS_SNAPSHOT) {
        uint64_t ps = pr->pending_snapshot;
        raft__pr_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = (pr->match + 1 > ps + 1) ? pr->match + 1 : ps + 1;
    } else {
        raft__pr_reset_state(pr, RAFT_PROGRESS_PROBE);
        pr->next = pr->match + 1;
    }
}

void raft__pr_become_replicate(struct progress *pr)
{
    raft__pr_reset_state(pr, RAFT_PROGRESS_REPLICATE);
    pr->next = pr->match + 1;
}

void raft__pr_become_snapshot(struct progress *pr, uint64_t i)
{
    raft__pr_reset_state(pr, RAFT_PROGRESS_SNAPSHOT);
    pr->pending_snapshot = i;
}

bool raft__pr_maybe_update(struct progress *pr, uint64_t n)
{
    bool updated = false;
    if (pr->match < n) {
        pr->match = n;
        updated = true;
        pr->probe_sent = false;
    }
    if (pr->next < n + 1) {
        pr->next = n + 1;
    }
    return updated;
}

/* A rejection of index `rejected` with the follower's hint. False if the
 * rejection is stale (a duplicate or an answer to an old probe). */
bool raft__pr_maybe_decr_to(struct progress *pr,
                            uint64_t rejected,
                            uint64_t match_hint)
{
    uint64_t n;
    if (pr->state == RAFT_PROGRESS_REPLICATE) {
        if (rejected <= pr->match) {
            return false;
        }
        pr->next = pr->match + 1;
        return true;
    }
    if (pr->next - 1 != rejected) {
        return false;
    }
    n = rejected < match_hint + 1 ? rejected : match_hint + 1;
    pr->next = n < 1 ? 1 : n;
    pr->probe_sent = false;
    return true;
}

bool raft__pr_is_paused(const struct progress *pr)
{
    switch (pr->state) {
        case RAFT_PROGRESS_PROBE:
            return pr->probe_sent;
        case RAFT_PROGRESS_REPLICATE:
            return raft__ins_full(&pr->ins);
        default:
            return true;
    }
}
