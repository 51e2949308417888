/*
 * keel raft: the consensus core as a pure state machine.
 *
 * No I/O, no clock, no threads, no global state. The caller drives it:
 *
 *   inputs   raft_tick()            one logical clock tick
 *            raft_step(msg)         a message from a peer
 *            raft_propose(data)     a client proposal (leader, or forwarded)
 *            raft_propose_conf_change(cc)
 *            raft_read_index(ctx)   a linearizable read barrier
 *            raft_transfer_leader(id), raft_campaign()
 *   output   raft_ready() -> struct raft_ready, then raft_advance(ready)
 *
 * The Ready protocol (same shape as etcd's raft, with the persistence order
 * made explicit; see shared/reference/raft-correctness.md §1):
 *
 *   1. rd = raft_ready(r)                    (only if raft_has_ready(r))
 *   2. send rd->msgs now (they are leader traffic: MsgApp, MsgHeartbeat,
 *      MsgSnap, MsgTimeoutNow, MsgReadIndexResp; thesis §10.2.1 lets the
 *      leader replicate in parallel with its own fsync; and from any
 *      member what promises nothing about its log or vote: MsgProp and
 *      MsgReadIndex forwarded to the leader, MsgHeartbeatResp. A Ready
 *      that changes the term or vote holds every message for step 4)
 *   3. persist, in this order: rd->snapshot (if rd->has_snapshot), then
 *      rd->entries (appending at entries[0].index truncates anything after
 *      it), then rd->hard_state (if rd->has_hard_state); fsync.
 *   4. only now send rd->msgs_after_persist (votes, append responses,
 *      everything a follower or candidate says: each may promise state that
 *      step 3 made durable)
 *   5. apply rd->snapshot to the state machine, then rd->committed in order
 *      (for a conf-change entry call raft_apply_conf_change()); publish
 *      rd->read_states once applied >= their index
 *   6. raft_advance(r, rd)
 *
 * raft_step/raft_tick/raft_propose... may be called between 1 and 6 (e.g.
 * while the fsync runs on another thread): the Ready is a self-contained
 * batch that later calls do not modify. A new Ready is only produced after
 * raft_advance(). The leader counts its own log toward the commit index only
 * at raft_advance(), i.e. after its own fsync (etcd #14370), and committed
 * entries are handed out only once they are durable locally.
 *
 * Memory. raft allocates only through the struct raft_heap given at init.
 * Entry payloads, snapshot data, conf-change and read contexts are immutable
 * reference-counted struct raft_buf: raft takes its own reference whenever it
 * keeps one, so the server can hand the same buffer to the WAL writer, the
 * peer sender and the apply path without copying: take a reference
 * (raft_buf_ref) to keep a buffer beyond raft_advance(), release it with
 * raft_buf_unref. Everything inside a struct raft_ready is owned by raft and
 * valid until raft_advance(r, rd) (or raft_free). Pointers passed in are
 * borrowed for the duration of the call unless a comment says otherwise.
 * Reference counts are not atomic: take and drop references only on the
 * thread that drives raft; another thread may read a buffer's bytes while
 * a reference is held for it (the WAL writer reading rd->entries before
 * raft_advance needs no reference of its own). raft is not thread-safe:
 * one thread calls all of its functions.
 *
 * Membership: one change at a time (thesis §4.1), taking effect on each
 * member as soon as the entry is in its log (see raft.c for why), so the
 * application only mirrors committed changes (raft_apply_conf_change).
 *
 * Errors: functions return 0 or a negative RAFT_E* code (own range, so
 * raft/ needs no other header; server/ maps them to KEEL_E* at the edge).
 */
#ifndef KEEL_RAFT_H
#define KEEL_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_NONE 0 /* no node (ids are non-zero) */
/* Most members (voters + learners) a configuration can hold. */
#define RAFT_MAX_MEMBERS 32

/* Error codes: reserved range -31000 .. -31099. */
#define RAFT_ERR_MAP(X)                                                 \
    X(NOMEM, 1, "raft: out of memory")                                  \
    X(COMPACTED, 2, "requested index is unavailable due to compaction") \
    X(UNAVAILABLE, 3, "requested entry at index is unavailable")        \
    X(SNAP_TEMP_UNAVAILABLE, 4, "snapshot is temporarily unavailable")  \
    X(PROPOSAL_DROPPED, 5, "raft proposal dropped")                     \
    X(STEP_LOCAL_MSG, 6, "raft: cannot step raft local message")        \
    X(STEP_PEER_NOT_FOUND, 7, "raft: cannot step as peer not found")    \
    X(INVAL, 8, "raft: invalid argument")                               \
    X(SNAP_OUT_OF_DATE, 9,                                              \
      "requested index is older than the existing snapshot")            \
    X(TOO_MANY_MEMBERS, 10, "raft: too many members")

enum {
#define RAFT_ERR_ENUM(name, off, msg) RAFT_E##name = -31000 - (off),
    RAFT_ERR_MAP(RAFT_ERR_ENUM)
#undef RAFT_ERR_ENUM
};

/* Message for a RAFT_E* code ("unknown raft error" otherwise). */
const char *raft_strerror(int rv);

/* ---- allocation ---------------------------------------------------------- */

struct raft_heap
{
    void *ctx;
    void *(*malloc)(void *ctx, size_t n);
    void *(*realloc)(void *ctx, void *p, size_t n);
    void (*free)(void *ctx, void *p);
};

/* The libc heap (malloc/realloc/free). */
const struct raft_heap *raft_heap_default(void);

/* Immutable, reference-counted bytes. `heap` must outlive the buffer. */
struct raft_buf
{
    const struct raft_heap *heap;
    uint32_t refs;
    size_t len;
    unsigned char data[];
};

/* A new buffer holding a copy of data[0..len) with one reference (owned by
 * the caller). NULL on allocation failure. */
struct raft_buf *raft_buf_new(const struct raft_heap *heap,
                              const void *data,
                              size_t len);
/* Takes one more reference; NULL-safe; returns b. */
struct raft_buf *raft_buf_ref(struct raft_buf *b);
/* Drops one reference, freeing the buffer at zero; NULL-safe. */
void raft_buf_unref(struct raft_buf *b);

/* ---- plain structs mirroring proto/raftpb/raft.proto -----------------------
 */

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0,      /* data: a request, or NULL (leader no-op) */
    RAFT_ENTRY_CONF_CHANGE = 1, /* data: raft_conf_change_encode() output */
};

struct raft_entry
{
    uint64_t term;
    uint64_t index;
    int type;              /* enum raft_entry_type */
    struct raft_buf *data; /* NULL for an empty entry */
};

struct raft_hard_state
{
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

struct raft_conf_state
{
    uint64_t voters[RAFT_MAX_MEMBERS];
    uint32_t n_voters;
    uint64_t learners[RAFT_MAX_MEMBERS];
    uint32_t n_learners;
};

struct raft_snapshot_meta
{
    struct raft_conf_state conf_state;
    uint64_t index;
    uint64_t term;
};

struct raft_snapshot
{
    struct raft_buf *data; /* state machine image; may be NULL */
    struct raft_snapshot_meta meta;
};

enum raft_conf_change_type {
    RAFT_CONF_ADD_NODE = 0, /* add a voter, or promote a learner */
    RAFT_CONF_REMOVE_NODE = 1,
    RAFT_CONF_UPDATE_NODE = 2, /* no change to the configuration */
    RAFT_CONF_ADD_LEARNER_NODE = 3,
};

struct raft_conf_change
{
    uint64_t id;
    int type; /* enum raft_conf_change_type */
    uint64_t node_id;
    struct raft_buf *context; /* server-defined; may be NULL */
};

enum raft_msg_type {
    RAFT_MSG_HUP = 0,
    RAFT_MSG_BEAT = 1,
    RAFT_MSG_PROP = 2,
    RAFT_MSG_APP = 3,
    RAFT_MSG_APP_RESP = 4,
    RAFT_MSG_VOTE = 5,
    RAFT_MSG_VOTE_RESP = 6,
    RAFT_MSG_SNAP = 7,
    RAFT_MSG_HEARTBEAT = 8,
    RAFT_MSG_HEARTBEAT_RESP = 9,
    RAFT_MSG_UNREACHABLE = 10,
    RAFT_MSG_SNAP_STATUS = 11,
    RAFT_MSG_CHECK_QUORUM = 12,
    RAFT_MSG_TRANSFER_LEADER = 13,
    RAFT_MSG_TIMEOUT_NOW = 14,
    RAFT_MSG_READ_INDEX = 15,
    RAFT_MSG_READ_INDEX_RESP = 16,
    RAFT_MSG_PRE_VOTE = 17,
    RAFT_MSG_PRE_VOTE_RESP = 18,
    RAFT_MSG_TYPE_COUNT
};

struct raft_message
{
    int type; /* enum raft_msg_type */
    uint64_t to;
    uint64_t from;
    uint64_t term;
    uint64_t log_term;
    uint64_t index;
    struct raft_entry *entries;
    size_t n_entries;
    uint64_t commit;
    /* MsgSnap only, else NULL. In a Ready it is raft's; in raft_step it is
     * borrowed (raft references the data it keeps). */
    struct raft_snapshot *snapshot;
    bool reject;
    uint64_t reject_hint;
    struct raft_buf *context;
    uint64_t cluster_id; /* not used by raft; for the transport */
};

/* Name of a message type ("MsgApp"...), for traces. */
const char *raft_msg_type_name(int type);

/* ConfChange <-> bytes, in the protobuf wire format of raftpb.ConfChange so
 * server/ can decode it with protobuf-c. encode returns a new buffer (one
 * reference, caller's) or NULL on OOM; decode returns RAFT_EINVAL on
 * malformed input and gives cc->context a new reference (caller's). */
struct raft_buf *raft_conf_change_encode(const struct raft_heap *heap,
                                         const struct raft_conf_change *cc);
int raft_conf_change_decode(const struct raft_heap *heap,
                            const struct raft_buf *b,
                            struct raft_conf_change *cc);

/* ---- storage ------------------------------------------------------------- */

/*
 * What raft reads of the durable log (server/: storage/wal; tests: the
 * memory storage below). raft never writes through it: the caller persists
 * a Ready's snapshot/entries/hard state into it before raft_advance().
 *
 * The storage holds a snapshot (possibly empty: index 0) and the entries
 * (snapshot.index, last_index]. Index snapshot.index has a known term (the
 * snapshot's), so term(first_index - 1) must succeed.
 */
struct raft_storage
{
    void *ctx;
    /* The persisted hard state and the configuration of the latest snapshot. */
    int (*initial_state)(void *ctx,
                         struct raft_hard_state *hs,
                         struct raft_conf_state *cs);
    /* Entries [lo, hi), at most max_size bytes of payload but at least one
     * entry. *out points into storage-owned memory, valid until the next
     * mutation of the storage; raft references what it keeps. Returns
     * RAFT_ECOMPACTED if lo <= snapshot index, RAFT_EUNAVAILABLE if hi - 1 >
     * last index. */
    int (*entries)(void *ctx,
                   uint64_t lo,
                   uint64_t hi,
                   uint64_t max_size,
                   const struct raft_entry **out,
                   size_t *n);
    /* Term of entry i, for i in [first_index - 1, last_index]. */
    int (*term)(void *ctx, uint64_t i, uint64_t *term);
    int (*first_index)(void *ctx, uint64_t *index);
    int (*last_index)(void *ctx, uint64_t *index);
    /* The latest snapshot; out->data gets a new reference owned by raft.
     * RAFT_ESNAP_TEMP_UNAVAILABLE if it is being produced. */
    int (*snapshot)(void *ctx, struct raft_snapshot *out);
};

/* In-memory storage (tests, benchmarks; etcd's MemoryStorage). */
struct raft_memstore;
struct raft_memstore *raft_memstore_new(const struct raft_heap *heap);
void raft_memstore_free(struct raft_memstore *ms);
/* Fills s with ms's callbacks; s borrows ms. */
void raft_memstore_storage(struct raft_memstore *ms, struct raft_storage *s);
/* Write a fresh cluster's first entries: one AddNode conf change per voter
 * at indexes 1..n, term 1, hard state {term 1, commit n}. Only on an empty
 * store. The members learn their configuration by applying them. */
int raft_memstore_bootstrap(struct raft_memstore *ms,
                            const uint64_t *voters,
                            size_t n);
int raft_memstore_set_hard_state(struct raft_memstore *ms,
                                 const struct raft_hard_state *hs);
/* Append (references the payloads); entries[0].index may be <= last+1, in
 * which case the conflicting suffix is replaced. */
int raft_memstore_append(struct raft_memstore *ms,
                         const struct raft_entry *entries,
                         size_t n);
/* Replace everything with snap (RAFT_ESNAP_OUT_OF_DATE if older). */
int raft_memstore_apply_snapshot(struct raft_memstore *ms,
                                 const struct raft_snapshot *snap);
/* Record a snapshot at applied index i (<= last) with cs and data (a new
 * reference is taken); entries are kept until raft_memstore_compact. */
int raft_memstore_create_snapshot(struct raft_memstore *ms,
                                  uint64_t i,
                                  const struct raft_conf_state *cs,
                                  struct raft_buf *data);
/* Drop entries up to and including i (i <= last index). */
int raft_memstore_compact(struct raft_memstore *ms, uint64_t i);
uint64_t raft_memstore_last_index(const struct raft_memstore *ms);
uint64_t raft_memstore_first_index(const struct raft_memstore *ms);
/* Test hook: make storage->snapshot() fail with ESNAP_TEMP_UNAVAILABLE. */
void raft_memstore_set_snapshot_unavailable(struct raft_memstore *ms, bool on);

/* ---- the state machine --------------------------------------------------- */

enum raft_state {
    RAFT_FOLLOWER = 0,
    RAFT_CANDIDATE = 1,
    RAFT_LEADER = 2,
    RAFT_PRE_CANDIDATE = 3,
};

enum raft_read_only_option {
    RAFT_READ_ONLY_SAFE = 0, /* ReadIndex with a heartbeat round */
    /* Answer at once while a quorum answered heartbeats sent less than
     * election_tick - 2 ticks ago (see lease_valid in raft.c). Needs
     * check_quorum, the same option on every member, and tick rates that
     * differ by less than ~10% between members. */
    RAFT_READ_ONLY_LEASE_BASED = 1,
};

/* Test-only switches (the simulator's mutation check). Never set them
 * outside tests: each breaks a Raft safety rule on purpose. */
enum raft_test_bug {
    RAFT_BUG_NONE = 0,
    RAFT_BUG_COMMIT_OLD_TERM = 1,    /* commit previous-term entries by count */
    RAFT_BUG_VOTE_OLD_TERM = 2,      /* count vote grants from older terms */
    RAFT_BUG_NO_LOG_CHECK = 3,       /* grant votes to out-of-date logs */
    RAFT_BUG_ACK_BEFORE_PERSIST = 4, /* leader counts unpersisted entries */
    RAFT_BUG_ENDLESS_LEASE = 5,      /* lease reads trust check-quorum alone */
    RAFT_BUG_LEARNERS_COUNT = 6      /* learners' logs count toward commit */
};

struct raft_config
{
    uint64_t id;        /* non-zero */
    int election_tick;  /* follower timeout, in ticks; > heartbeat_tick */
    int heartbeat_tick; /* leader heartbeat interval, in ticks */
    /* Last index the state machine had applied at restart; 0: the storage
     * snapshot's index (the state machine was loaded from it). Committed
     * entries after it are handed out again. */
    uint64_t applied;
    uint64_t max_size_per_msg;     /* payload bytes per MsgApp (0: 1 entry) */
    uint64_t max_uncommitted_size; /* 0: unlimited */
    int max_inflight_msgs;         /* > 0 */
    bool pre_vote;
    bool check_quorum;
    int read_only_option; /* enum raft_read_only_option */
    /* Randomness for the election timeout: rand(ctx) or, if NULL, a PRNG
     * seeded with rand_seed (raft has no global state). */
    uint64_t (*rand)(void *ctx);
    void *rand_ctx;
    uint64_t rand_seed;
    const struct raft_storage *storage; /* borrowed; outlives the raft */
    const struct raft_heap *heap;       /* NULL: raft_heap_default() */
    int test_bug;                       /* enum raft_test_bug; tests only */
};

/* Defaults: election 10, heartbeat 1, 1 MiB per msg, 256 inflight, pre-vote
 * and check-quorum on, ReadIndex safe. Caller sets id and storage. */
void raft_config_default(struct raft_config *c);

struct raft;

/* Starts (or restarts) from c->storage. *out is owned by the caller
 * (raft_free). RAFT_EINVAL on a bad config. */
int raft_new(const struct raft_config *c, struct raft **out);
void raft_free(struct raft *r);

int raft_tick(struct raft *r);
/* A message from the network: m is borrowed (raft references the buffers it
 * keeps). Local message types are rejected with RAFT_ESTEP_LOCAL_MSG. */
int raft_step(struct raft *r, const struct raft_message *m);
/* Proposes data (a reference is taken; NULL for an empty entry).
 * RAFT_EPROPOSAL_DROPPED if there is no leader, a transfer is in progress,
 * or the uncommitted size limit is reached. Success does not mean commit. */
int raft_propose(struct raft *r, struct raft_buf *data);
/* raft_propose for n > 0 normal entries at once, in order: one MsgProp, so
 * a leader appends them together and replicates them in one MsgApp per
 * follower, and a follower forwards them in one message. All or none:
 * RAFT_EPROPOSAL_DROPPED drops the whole batch. */
int raft_propose_batch(struct raft *r, struct raft_buf *const *data, size_t n);
/* Only one conf change may be pending: a leader replaces a second one (and
 * one proposed before its first own-term entry is committed) with an empty
 * normal entry, as etcd does. */
int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc);
/* Requests a read index; the answer comes as a raft_read_state carrying ctx
 * (a reference is taken), on this member, once a quorum confirmed the
 * leader after the request and the leader committed an entry of its term.
 * A follower forwards it to the leader (RAFT_EPROPOSAL_DROPPED if it knows
 * none). Requests pending when leadership changes are dropped without an
 * answer: retry with a new ctx after a timeout; ctx must be unique per
 * attempt, or a late answer to an old attempt could serve a stale read
 * (etcd #20418). */
int raft_read_index(struct raft *r, struct raft_buf *ctx);
int raft_transfer_leader(struct raft *r, uint64_t transferee);
int raft_campaign(struct raft *r);
/* The application applies a committed conf change: raft already uses the
 * new configuration (it took effect when the entry was appended); this
 * returns in *cs (may be NULL) the configuration as of the applied entry,
 * which is what a snapshot taken at the applied index must record. A
 * change every member skips (too many members) returns 0 and *cs
 * unchanged. A leader that removed itself hands leadership over once the
 * change commits. */
int raft_apply_conf_change(struct raft *r,
                           const struct raft_conf_change *cc,
                           struct raft_conf_state *cs);
/* cs with cc applied (pure): RAFT_ETOO_MANY_MEMBERS or RAFT_EINVAL leave
 * cs unchanged. */
int raft_conf_state_apply(struct raft_conf_state *cs,
                          const struct raft_conf_change *cc);
/* Reports the result of sending a snapshot to `to` (MsgSnapStatus). */
void raft_report_snapshot(struct raft *r, uint64_t to, bool failed);
/* The transport could not reach `to` (MsgUnreachable): pipeline back off. */
void raft_report_unreachable(struct raft *r, uint64_t to);

struct raft_read_state
{
    uint64_t index;           /* read may be served once applied >= index */
    struct raft_buf *context; /* the ctx given to raft_read_index */
};

struct raft_ready
{
    bool has_hard_state;
    struct raft_hard_state hard_state;
    bool has_snapshot;
    struct raft_snapshot snapshot; /* to persist, then install */
    struct raft_entry *entries;    /* to persist (unstable) */
    size_t n_entries;
    struct raft_entry *committed; /* to apply, in order */
    size_t n_committed;
    struct raft_message *msgs; /* may be sent before persisting */
    size_t n_msgs;
    struct raft_message *msgs_after_persist; /* only after persisting */
    size_t n_msgs_after_persist;
    struct raft_read_state *read_states;
    size_t n_read_states;
    /* Volatile state, not to persist: */
    uint64_t lead;
    int state; /* enum raft_state */
    bool soft_state_changed;
};

bool raft_has_ready(const struct raft *r);
/* The next batch (NULL on allocation failure or if a previous Ready has not
 * been advanced). Owned by raft until raft_advance(r, rd). */
struct raft_ready *raft_ready(struct raft *r);
/* The caller persisted, sent and applied rd: raft releases it. */
void raft_advance(struct raft *r, struct raft_ready *rd);

enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,
    RAFT_PROGRESS_REPLICATE = 1,
    RAFT_PROGRESS_SNAPSHOT = 2,
};

struct raft_progress_status
{
    uint64_t id;
    uint64_t match;
    uint64_t next;
    int state; /* enum raft_progress_state */
    bool learner;
    bool recent_active;
    uint64_t pending_snapshot;
};

struct raft_status
{
    uint64_t id;
    struct raft_hard_state hs;
    int state; /* enum raft_state */
    uint64_t lead;
    uint64_t applied;
    uint64_t first_index; /* first entry still in the log */
    uint64_t last_index;
    uint64_t stable_index; /* last index persisted (acknowledged) */
    uint64_t lead_transferee;
    struct raft_conf_state conf; /* in effect (latest in the log) */
    uint64_t conf_index; /* entry that made it (0: snapshot or bootstrap) */
};

void raft_status(const struct raft *r, struct raft_status *st);
/* The leader's view of member id's replication; RAFT_EINVAL if this node
 * is not the leader or id is not a member. */
int raft_progress(const struct raft *r,
                  uint64_t id,
                  struct raft_progress_status *p);
/* Term of entry i in the node's log (0 and RAFT_ECOMPACTED/UNAVAILABLE if
 * unknown). For invariant checks and tools. */
int raft_log_term(const struct raft *r, uint64_t i, uint64_t *term);
/* A copy of entry i (data referenced; unref it). */
int raft_log_entry(const struct raft *r, uint64_t i, struct raft_entry *e);

#endif /* KEEL_RAFT_H */
