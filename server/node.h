/*
 * server/node: one keel member's replicated state machine. It owns the raft
 * core, the WAL and the MVCC store, and runs the write path of DESIGN.md:
 *
 *   node_propose(req) -> raft_propose -> Ready
 *     entries + hard state -> WAL append + fdatasync on a worker thread
 *     (group commit: raft produces the next Ready only after advance, so
 *     everything proposed while one fsync runs goes into the next one)
 *     committed entries -> one MVCC write batch (one LMDB txn) per Ready,
 *     consistent_index in the same txn
 *   -> the proposer's callback gets the response; watchers get the events.
 *
 * Every write goes through raft, even on a single member: there is no
 * raft-less write path.
 *
 * Threads: everything here runs on the loop thread except the WAL append,
 * which runs on libuv's thread pool with exclusive use of the struct wal
 * (at most one append in flight: the Ready protocol serialises them).
 *
 * Durability: a failed WAL write or fsync, or an MVCC commit error, aborts
 * the process (CONVENTIONS 9.3): restart recovers from the WAL.
 */
#ifndef KEEL_NODE_H
#define KEEL_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel_arena.h"
#include "keelpb/request.pb-c.h"
#include "mvccpb/kv.pb-c.h"

struct node;
struct mvcc_store;

/* Called with the events of each applied revision (watch fan-out). The
 * events live until the callback returns. */
typedef void (*node_events_cb)(void *arg, int64_t revision,
                               Mvccpb__Event **events, size_t n);

/* Called for each request this member applied with success, in log order,
 * on the loop thread (the lessor follows grants, revokes and checkpoints
 * through it). req and resp live until the callback returns. Not called for
 * entries already in the store when they are replayed at start. */
typedef void (*node_applied_cb)(void *arg, const Keelpb__Request *req,
                                const ProtobufCMessage *resp);

/* Leadership as the lessor needs it (etcd: lessor Promote/Demote).
 * leader=true once this member is leader and has applied every entry of
 * earlier terms (the empty entry of its own term); leader=false when it
 * stops being that leader. */
typedef void (*node_leader_cb)(void *arg, bool leader);

struct node_options
{
    const char *data_dir;  /* <data_dir>/member/{wal,snap/db} */
    uint64_t member_id;    /* non-zero */
    uint64_t cluster_id;
    const uint64_t *voters; /* initial members of a new cluster */
    size_t n_voters;        /* 0 = {member_id} */
    unsigned heartbeat_ms;  /* etcd --heartbeat-interval (100) */
    unsigned election_ms;   /* etcd --election-timeout (1000) */
    size_t wal_segment_size; /* 0 = WAL default (64 MiB) */
    size_t map_size;         /* LMDB map size; 0 = mvcc default */
    node_events_cb on_events;
    void *on_events_arg;
    node_applied_cb on_applied; /* optional */
    void *on_applied_arg;
    node_leader_cb on_leader; /* optional */
    void *on_leader_arg;
};

/* Open the data dir (bootstrapping a new cluster when it has no WAL yet),
 * replay the log into the store, and start ticking on loop. *out is owned by
 * the caller (node_close). Errors: 0 or a negative code with a message in
 * errmsg. */
int node_open(uv_loop_t *loop, const struct node_options *opts,
              struct node **out, char *errmsg, size_t errlen);

/* Stop ticking, wait for the in-flight WAL append, fail every waiting
 * proposal and read with KEEL_ESTOPPED, sync and close the store, free the
 * node. close_cb (may be NULL) runs once everything is released. */
void node_close(struct node *n, void (*close_cb)(void *arg), void *arg);

/* The result of an applied request. resp is the response message of the
 * request's type (PutResponse for a put, ...) allocated in the arena given
 * to node_propose, with header.revision set; NULL when rv != 0. */
typedef void (*node_propose_cb)(void *arg, int rv, ProtobufCMessage *resp);

/* Replicate req and apply it; cb runs exactly once (on error too) on the
 * loop thread, unless node_propose returns non-zero. req->header is filled
 * in by the node (req must have a writable header or NULL). The request is
 * packed before node_propose returns (borrowed). Responses are built in
 * `arena`, which must live until cb. */
int node_propose(struct node *n, Keelpb__Request *req, struct keel_arena *arena,
                 node_propose_cb cb, void *arg);

/* A linearizable read barrier (ReadIndex): cb(arg, 0) runs once the local
 * store has applied everything committed when the read was issued, so a read
 * of the store right then is linearizable. cb(arg, rv) on failure. */
typedef void (*node_read_cb)(void *arg, int rv);
int node_read_index(struct node *n, node_read_cb cb, void *arg);

/* The store, for serializable reads on the loop thread (short read txns). */
struct mvcc_store *node_store(struct node *n);

struct node_status
{
    uint64_t member_id;
    uint64_t cluster_id;
    uint64_t leader;
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    bool is_leader;
};
void node_status(struct node *n, struct node_status *st);

/* ---- alarms and quota (etcd: etcdserver/quota.go, api/v3alarm) ---------
 *
 * Alarms are replicated: an AlarmRequest (ACTIVATE/DEACTIVATE) proposed as
 * a keelpb.Request is applied by every member into the store's `alarm`
 * table and the node's in-memory list. While a NOSPACE alarm is active,
 * apply refuses Put, a Txn with puts and LeaseGrant with KEEL_ENOSPACE
 * (etcd: applierV3Capped); reads, deletes, compaction, revokes pass. */
struct node_alarm
{
    uint64_t member_id;
    int alarm; /* ETCDSERVERPB__ALARM_TYPE__* */
};

/* The active alarms (at most max copied into out); returns their count. */
size_t node_alarms(struct node *n, struct node_alarm *out, size_t max);

/* Set the backend quota in bytes (config_quota_bytes; 0 = no quota). Grows
 * the LMDB map to 1.5x the quota + 64 MiB when smaller, so the quota (an
 * alarm) trips before the map is full (MDB_MAP_FULL during apply is fatal).
 * Call before the loop runs (no txn open). */
void node_set_quota(struct node *n, int64_t bytes);

/* etcd's quota check at propose time (v3rpc/quota.go): when the request
 * writes (Put, a Txn with puts, LeaseGrant) and the db size plus its
 * estimated cost reaches the quota, propose a NOSPACE alarm activation
 * (once) and return KEEL_ENOSPACE; else 0. node_propose runs it for every
 * request. Apply checks again after each such write (etcd's
 * quotaApplierV3): a write that got through propose but finds the quota
 * reached is applied, its proposer gets KEEL_ENOSPACE and NOSPACE is
 * raised. */
int node_quota_check(struct node *n, const Keelpb__Request *req);

/* ---- holding and pausing the store (snapshot, defrag) -------------------
 *
 * node_hold(): a worker thread is about to read the store (a copy); the
 * store stays open (node_close waits) until the matching node_release(),
 * which must be called on the loop thread. n must not be used after the
 * release that lets a pending close finish.
 *
 * node_pause(): stop taking Ready cycles (no apply, no WAL append, no
 * physical compaction step) once the one in flight, if any, is done; cb
 * runs then, on the loop thread, from its own loop turn. Writes acked
 * before cb are all in the store, and nothing writes to it until
 * node_resume(). Proposals and ticks keep being accepted meanwhile (they
 * wait in raft). One pause at a time: KEEL_EBUSY otherwise. */
void node_hold(struct node *n);
void node_release(struct node *n);
typedef void (*node_pause_cb)(void *arg);
int node_pause(struct node *n, node_pause_cb cb, void *arg);
void node_resume(struct node *n);
/* Whether node_close was called (a held or paused user should stop). */
bool node_closing(const struct node *n);

#endif /* KEEL_NODE_H */
