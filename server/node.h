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
 * Several members (issue 5): the node packs raft's outbound messages
 * (raftpb.Message) and hands them to a transport through opts.send; the
 * transport feeds inbound ones to node_step / node_step_snapshot. A
 * proposal on a follower is forwarded to the leader by raft and answered
 * when the entry is applied here (request ids carry the member id, so they
 * are unique across members); requests not applied within etcd's request
 * timeout (5 s + 2 election timeouts) fail with KEEL_ETIMEOUT. Membership
 * changes go through node_propose_conf_change; the log is compacted every
 * snapshot_count entries; a follower behind the compacted log gets a copy
 * of the leader's store.
 *
 * Threads: everything here runs on the loop thread except the WAL append
 * (and the store sync of a compaction), which run on libuv's thread pool
 * with exclusive use of the struct wal (at most one append in flight: the
 * Ready protocol serialises them), and the store copies for followers
 * (read txns on the thread pool, under node_hold).
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

/* ---- members, peers and membership (issue 5) ---------------------------- */

/* Most members (voters + learners) of a cluster (raft's RAFT_MAX_MEMBERS). */
#define NODE_MAX_MEMBERS 32

/* An initial member of a new cluster. Borrowed during node_open only. */
struct node_member
{
    uint64_t id; /* non-zero */
    const char *name;
    const char *const *peer_urls;
    size_t n_peer_urls;
    bool learner;
};

/* An outbound raft message to member `to`, on the loop thread, respecting
 * the persistence order (a Ready's msgs before the WAL fsync, its
 * msgs_after_persist only after). msg is a packed raftpb.Message
 * (proto/raftpb/raft.proto, server/raft_codec.h) with cluster_id set,
 * borrowed for the call: copy what you keep. snap_path is NULL except for
 * MSG_SNAP: then it names a complete, consistent copy of this member's
 * LMDB store (member/snap/<index>-<to>.snap.tmp, made off the loop thread)
 * that the receiver must install; the transport streams it (the file is
 * the transport's to read until it reports) and then calls
 * node_report_snapshot(to, ok). The node deletes the file after that
 * report (or at node_close). A send that fails is simply dropped (raft
 * retries); report node_report_unreachable if the peer is down. */
typedef void (*node_send_cb)(void *arg, uint64_t to, const uint8_t *msg,
                             size_t len, const char *snap_path);

/* A configuration change, as applied. ctx is the packed etcdserverpb.Member
 * of the entry (NULL/0 for a removal or a bootstrap entry without one),
 * voters/learners the configuration after it. Everything is borrowed for
 * the call. */
struct node_conf_change
{
    int type; /* RAFTPB__CONF_CHANGE_TYPE__* */
    uint64_t node_id;
    const uint8_t *ctx;
    size_t ctx_len;
    const uint64_t *voters;
    size_t n_voters;
    const uint64_t *learners;
    size_t n_learners;
    bool replayed; /* re-delivered at restart: the store had it already */
};

/* Called after each conf change entry is applied, on every member, in log
 * order, on the loop thread: bootstrap entries included, and at restart
 * for the entries after the last raft snapshot again (replayed = true; the
 * members table already has them). The transport adds/removes peers from
 * it. After a snapshot install (below) the table may have changed without
 * a call: re-read it in on_snapshot. */
typedef void (*node_conf_cb)(void *arg, const struct node_conf_change *cc);

/* Called on the loop thread after this member replaced its store with a
 * snapshot image received from the leader (node_step_snapshot): the store
 * now holds another history (revision `revision`, consistent index
 * `index`). Watchers must resync from the store (events before `revision`
 * were never delivered here), the lessor must reload its leases (lease
 * table), the transport re-reads the members table. node_store() returns
 * the same pointer as before (the store is reopened in place). */
typedef void (*node_snapshot_cb)(void *arg, uint64_t index, int64_t revision);

struct node_options
{
    const char *data_dir;  /* <data_dir>/member/{wal,snap/db} */
    uint64_t member_id;    /* non-zero */
    uint64_t cluster_id;
    /* Initial members of a new cluster (--initial-cluster with
     * --initial-cluster-state new): the log starts with one AddNode (or
     * AddLearnerNode) entry per member, context = its packed
     * etcdserverpb.Member, at indexes 1..n, term 1, committed, as etcd
     * bootstraps. Ignored when the data dir has a WAL. When NULL, voters /
     * n_voters (ids only, no context) are used; both NULL/0 = {member_id}. */
    const struct node_member *initial_members;
    size_t n_initial_members;
    const uint64_t *voters; /* legacy: ids of the initial voters */
    size_t n_voters;        /* 0 = {member_id} */
    /* --initial-cluster-state existing: start with an empty log and no
     * configuration; learn both from the leader (entries or a snapshot).
     * Ignored when the data dir has a WAL. */
    bool join_existing;
    unsigned heartbeat_ms;  /* etcd --heartbeat-interval (100) */
    unsigned election_ms;   /* etcd --election-timeout (1000) */
    size_t wal_segment_size; /* 0 = WAL default (64 MiB) */
    size_t map_size;         /* LMDB map size; 0 = mvcc default */
    /* Log compaction (etcd --snapshot-count): once applied - the last raft
     * snapshot's index > snapshot_count, a raft snapshot is recorded at the
     * applied index, the in-memory log is compacted keeping
     * snapshot_catchup_entries (etcd: SnapshotCatchUpEntries) and the WAL
     * segments before it are released. 0 = 100000 / 5000. */
    uint64_t snapshot_count;
    uint64_t snapshot_catchup_entries;
    node_events_cb on_events;
    void *on_events_arg;
    node_applied_cb on_applied; /* optional */
    void *on_applied_arg;
    node_leader_cb on_leader; /* optional */
    void *on_leader_arg;
    node_send_cb send; /* NULL: a single member with no transport */
    void *send_arg;
    node_conf_cb on_conf_change; /* optional */
    void *on_conf_change_arg;
    node_snapshot_cb on_snapshot; /* optional: after a snapshot install */
    void *on_snapshot_arg;
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

/* The v2 key tree (storage/v2store.h), for v2 reads on the loop thread;
 * changed only by applied entries (keelpb.Request.v2). */
struct v2store;
struct v2store *node_v2store(struct node *n);

struct node_status
{
    uint64_t member_id;
    uint64_t cluster_id;
    uint64_t leader; /* 0: none known */
    uint64_t term;
    uint64_t commit_index;
    uint64_t applied_index;
    uint64_t raft_index; /* last index of the log */
    bool is_leader;
    bool is_learner;
    uint64_t lead_transferee; /* leader: transfer in progress to; else 0 */
    /* The configuration in effect (the latest in the log). */
    uint64_t voters[NODE_MAX_MEMBERS];
    size_t n_voters;
    uint64_t learners[NODE_MAX_MEMBERS];
    size_t n_learners;
    /* Index of the last raft snapshot (0: none): the log is compacted up
     * to snapshot_catchup_entries before it, the WAL up to it. */
    uint64_t snapshot_index;
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

/* ---- peers (issue 5) ----------------------------------------------------- */

/* An inbound raft message (a packed raftpb.Message) from the transport, on
 * the loop thread; msg is borrowed. KEEL_EINVAL if undecodable or of a
 * local type; KEEL_EINVAL too (and nothing stepped) if its cluster_id is
 * not ours (the transport should log "request cluster ID mismatch"); a
 * MSG_SNAP must come through node_step_snapshot (KEEL_EINVAL here);
 * KEEL_ESTOPPED once closing. 0 otherwise, including for messages raft
 * ignores (stale terms, unknown senders). */
int node_step(struct node *n, const uint8_t *msg, size_t len);

/* An inbound MSG_SNAP whose image was received complete into `path` (a
 * file in <data_dir>/member/snap/, so a rename can install it). The node
 * owns the file from this call on, whatever it returns: it installs it at
 * the right point of the Ready order (store first, then the WAL snapshot
 * marker) or deletes it (stale snapshot, error). Same errors as
 * node_step. Images still in member/snap/ at the next node_open (a crash
 * before the install) are deleted then: *.snap.out (ours, for followers)
 * and snap-from-*.db (server/peer's received images). */
int node_step_snapshot(struct node *n, const uint8_t *msg, size_t len,
                       const char *path);

/* The transport could not deliver to `id` (connection down): raft backs
 * off its pipeline to that peer (MsgUnreachable). */
void node_report_unreachable(struct node *n, uint64_t id);

/* The snapshot given to send() for `id` was streamed (ok) or not; the node
 * deletes the image file then. */
void node_report_snapshot(struct node *n, uint64_t id, bool ok);

/* ---- membership and leadership (issue 5) --------------------------------- */

/* Propose a configuration change: type = RAFTPB__CONF_CHANGE_TYPE__*
 * (ADD_NODE adds a voter or promotes a learner, ADD_LEARNER_NODE,
 * REMOVE_NODE, UPDATE_NODE), ctx = packed etcdserverpb.Member (id, name,
 * peerURLs, isLearner) for add/update/promote (borrowed; copied). Apply
 * writes the members table: "<id %016x>/raftAttributes" -> ctx; a removal
 * deletes "<id>/..." and puts "<id>" into members_removed. cb(arg, 0,
 * NULL) once applied here, cb(arg, rv, NULL) on failure: KEEL_ETIMEOUT
 * after the request timeout (no leader, or the leader turned the change
 * into a no-op because another one was pending: raft allows one at a
 * time), KEEL_ESTOPPED at close. One conf change in flight per node:
 * KEEL_EBUSY otherwise. Returns non-zero without calling cb on immediate
 * failure (KEEL_EINVAL for a bad type or id 0). The caller checks etcd's
 * membership rules (member exists, peer URL taken, learner in sync...)
 * first. */
int node_propose_conf_change(struct node *n, int type, uint64_t node_id,
                             const uint8_t *ctx, size_t ctx_len,
                             node_propose_cb cb, void *arg);

/* etcd MoveLeader: start a leadership transfer to `to` (a voter). Leader
 * only: KEEL_ENOTLEADER otherwise, KEEL_EBADLEADERTRANSFEREE if `to` is
 * not a voter (or is a learner). Returns at once; the caller polls
 * node_status (leader == to, or lead_transferee back to 0) for the
 * outcome, as etcd's MoveLeader does. */
int node_transfer_leader(struct node *n, uint64_t to);

/* Leader only: the match index of member id as the leader knows it (for
 * "can only promote a learner member which is in sync with leader").
 * KEEL_ENOTLEADER if this member is not the leader, KEEL_EINVAL if id is
 * not a member. */
int node_progress(struct node *n, uint64_t id, uint64_t *match);

/* Test hook: the in-memory raft log's first index and number of entries
 * (to check compaction keeps it bounded). */
void node_log_bounds(struct node *n, uint64_t *first, uint64_t *count);

#endif /* KEEL_NODE_H */
