/*
 * server/lessor: the in-memory side of leases (etcd: lease/lessor.go).
 *
 * The lease table itself (id, granted TTL, last checkpointed remaining TTL,
 * attached keys) is replicated state in the MVCC store (storage/mvcc.h
 * lease_store_*). The lessor keeps, on the loop thread, what only the
 * leader needs: each lease's expiry time. It follows the table through the
 * node's apply hook (lessor_on_applied) and leadership through its leader
 * hook (lessor_on_leader).
 *
 * Only the primary lessor (the leader, once it applied its own term's empty
 * entry) expires leases, renews them and answers TimeToLive:
 *   - Promote: every lease expires at now + its remaining TTL (the
 *     checkpointed one when there is one, else the granted TTL) + the
 *     election timeout, spread so that no more than 3/4 of the revoke rate
 *     fall in one second; so an election never expires a lease early.
 *   - Demote: no expiry at all until promoted again.
 *   - Every 500 ms: up to revoke_rate/2 expired leases are revoked through
 *     raft, but only after a ReadIndex round proved that this member still
 *     leads a quorum (etcd #15247: a leader back from a stall revoked every
 *     lease). A loop stall longer than the election timeout is not counted
 *     against the leases: their expiries move by the stall.
 *   - Checkpoints (on by default, every checkpoint_interval): the remaining
 *     TTL of each lease longer than the interval is proposed through raft
 *     and persisted, so a new leader (or a restarted member) continues from
 *     it instead of the full TTL (etcd #9395, #13508).
 *
 * Followers keep the table (for LeaseLeases) with no expiry.
 */
#ifndef KEEL_LESSOR_H
#define KEEL_LESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "keel_arena.h"
#include "keelpb/request.pb-c.h"

struct node;
struct lessor;

/* etcd: MaxLeaseTTL (lease/lessor.go), seconds */
#define LESSOR_MAX_TTL 9000000000LL

struct lessor_options
{
    uint64_t member_id;    /* for generated lease ids */
    unsigned heartbeat_ms; /* etcd --heartbeat-interval */
    unsigned election_ms;  /* etcd --election-timeout */
    /* 0: $KEEL_LEASE_CHECKPOINT_INTERVAL_MS if set, else etcd's 5 minutes
     * (defaultLeaseCheckpointInterval). */
    uint64_t checkpoint_interval_ms;
    /* Leases revoked per second at most; 0: etcd's leaseRevokeRate 1000. */
    unsigned revoke_rate;
};

/* A stopped lessor attached to no node. *out is the caller's (lessor_close).
 * Returns 0 or KEEL_ENOMEM. */
int lessor_new(uv_loop_t *loop,
               const struct lessor_options *opts,
               struct lessor **out);

/* Load the lease table from n's store (node_open done, nothing applied
 * since) and start the timer. The node's on_applied/on_leader hooks must
 * point to lessor_on_applied/lessor_on_leader with l as their arg. Returns 0,
 * a storage error or KEEL_ENOMEM (then the lessor stays stopped). */
int lessor_start(struct lessor *l, struct node *n);

/* The store was replaced by a snapshot image (node on_snapshot): drop the
 * table and load it again from the store. A snapshot reaches a follower
 * only, so nothing expires until the next promotion. 0 or a storage error. */
int lessor_reload(struct lessor *l);

/* Stop expiring and checkpointing: nothing more is proposed. Proposals and
 * reads already issued still call back into l, so l must stay alive until
 * the node is closed. */
void lessor_stop(struct lessor *l);

/* Free l (after lessor_stop and after the node is closed): the timer handle
 * is closed and l freed from the loop. */
void lessor_close(struct lessor *l);

/* node hooks (arg = the lessor). */
void lessor_on_applied(void *arg,
                       const Keelpb__Request *req,
                       const ProtobufCMessage *resp);
void lessor_on_leader(void *arg, bool leader);

/* etcd's minimum TTL: ceil((3 * electionTicks / 2) * heartbeat) in seconds
 * (etcdserver/server.go minTTL). Grants below it are raised to it. */
int64_t lessor_min_ttl(const struct lessor *l);

/* A fresh positive lease id not in the table (etcd: reqIDGen.Next() with
 * the sign bit cleared, v3_server.go LeaseGrant). */
int64_t lessor_next_id(struct lessor *l);

/* Whether this member is the primary lessor (leader, promoted). */
bool lessor_is_primary(const struct lessor *l);

/* Renew on the primary: the lease expires its granted TTL from now; *ttl is
 * the granted TTL. A lease with a checkpointed remaining TTL gets a
 * checkpoint clearing it proposed. KEEL_ENOTLEADER when not primary,
 * KEEL_ELEASENOTFOUND for an unknown or already expired lease. */
int lessor_renew(struct lessor *l, int64_t id, int64_t *ttl);

/* TimeToLive on the primary: *remaining seconds (truncated, as etcd's
 * int64(Remaining().Seconds())) and the *granted TTL. KEEL_ENOTLEADER,
 * KEEL_ELEASENOTFOUND. */
int lessor_time_to_live(struct lessor *l,
                        int64_t id,
                        int64_t *remaining,
                        int64_t *granted);

/* Ids of every lease in the table, soonest expiry first (etcd: Leases()),
 * array in a. KEEL_ENOMEM. */
int lessor_list(struct lessor *l,
                struct keel_arena *a,
                int64_t **ids,
                size_t *n);

/* Counters for /metrics, counted where etcd counts them (lease/metrics.go,
 * etcdserver/metrics.go). */
#define LESSOR_TTL_BUCKETS 24
struct lessor_stats
{
    uint64_t granted; /* etcd_debugging_lease_granted_total: grants applied */
    uint64_t revoked; /* etcd_debugging_lease_revoked_total: revokes applied */
    uint64_t renewed; /* etcd_debugging_lease_renewed_total: renewals here
                         as the leader */
    uint64_t expired; /* etcd_debugging_server_lease_expired_total: expiry
                         revokes this member proposed that applied */
    /* etcd_debugging_lease_ttl_total, a histogram of granted TTLs with
     * etcd's buckets 1, 2, 4, ... 2^23 s: ttl_le[i] counts the grants with
     * TTL <= 2^i (cumulative, as Prometheus prints them). */
    uint64_t ttl_le[LESSOR_TTL_BUCKETS];
    uint64_t ttl_count;
    int64_t ttl_sum;
};
void lessor_stats(const struct lessor *l, struct lessor_stats *out);

#endif /* KEEL_LESSOR_H */
