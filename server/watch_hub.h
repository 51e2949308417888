/*
 * The watch hub: every Watch stream and watcher of the server, matched against
 * applied writes and fed back to clients, with etcd 3.4's stream semantics and
 * keel's fairness rules (DESIGN.md "Watch fairness").
 *
 * The hub is pure: no event loop, no clock, no threads, no storage of its
 * own. The server drives it with four inputs and gives it three callbacks:
 *
 *   inputs                                   callbacks (struct watch_hub_config)
 *   watch_stream_recv()  client requests     send()          one WatchResponse
 *   watch_hub_notify()   each applied rev    read_history()  events since a rev
 *   watch_hub_tick()     timer/idle          fill_header()   cluster/member/term
 *   watch_stream_set_writable() transport    check_range()   auth (optional)
 *
 * A watcher is either *synced* (it has been sent every matching event up to
 * the hub's revision, and is in the match index so notify() reaches it) or
 * *unsynced* (it is behind: a past start_revision, or its stream was not
 * writable when an event arrived). The hub never buffers events for a slow
 * watcher: it remembers the first revision the watcher still needs, and
 * watch_hub_tick() replays it from storage (read_history) in bounded batches
 * (etcd: 1000 revisions) until it has caught up, then puts it back in the
 * index. So notify() is O(matching watchers), never blocks and never grows
 * memory for a slow client (etcd issues #16839, #18109, #22264).
 *
 * Progress: a progress response (explicit progress_request, or the periodic
 * progress_notify) is sent only when every watcher of the stream is synced,
 * and it carries the last revision the hub was notified of: it can never be
 * ahead of an event not yet sent on that stream (etcd bug #15220). An explicit
 * request that arrives while a watcher is behind is deferred until the stream
 * has caught up (as etcd 3.5's fix does).
 *
 * Single-threaded: every function must be called from the thread that owns
 * the hub (the loop thread). Callbacks must not call back into the hub.
 *
 * Wiring (what the server does):
 *   startup        watch_hub_new(cfg) with send_packed (preferred) or send,
 *                  read_history over the MVCC store, fill_header, check_range
 *   Watch stream   open: watch_stream_new(hub, conn, &s); each message:
 *                  unpack (arena) then watch_stream_recv(s, req); close or
 *                  reset: watch_stream_free(s); KEEL_ENOMEM from recv: end
 *                  the stream with RESOURCE_EXHAUSTED
 *   transport      send()/send_packed() returns WATCH_SEND_FULL when the
 *                  stream's outbound budget is used up; when it has drained
 *                  below its low-water mark: watch_stream_set_writable(s, 1)
 *   apply loop     after each applied revision, in order:
 *                  watch_hub_notify(rev, events); after a compaction:
 *                  watch_hub_compacted(rev); after installing a snapshot:
 *                  watch_hub_restore(rev)
 *   timer          watch_hub_tick(now_ms) every 10-100 ms, and from an idle
 *                  or prepare callback while watch_hub_pending() > 0
 * Control responses (created, canceled, errors, progress) are sent even on a
 * full stream: there is one per client request, so they are bounded by what
 * the client sends. Event responses never go to a full stream (a revision
 * already being split into fragments is finished first).
 */
#ifndef KEEL_WATCH_HUB_H
#define KEEL_WATCH_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "mvccpb/kv.pb-c.h"

struct watch_hub;
struct watch_stream;

/* etcd: clientv3.InvalidWatchID. The watch_id of error and progress-request
 * responses. */
#define WATCH_INVALID_ID (-1)

/* etcd: progressReportInterval (etcdserver/api/v3rpc/watch.go), 10 min, plus
 * up to 10% jitter; minWatchProgressInterval is 100 ms. */
#define WATCH_PROGRESS_INTERVAL_MS (10u * 60u * 1000u)
#define WATCH_PROGRESS_INTERVAL_MIN_MS 100u
/* etcd: --max-request-bytes default, and grpcOverheadBytes (v3rpc/grpc.go):
 * a fragmenting watcher's responses are split above their sum. */
#define WATCH_MAX_REQUEST_BYTES (1536u * 1024u)
#define WATCH_GRPC_OVERHEAD_BYTES (512u * 1024u)
/* etcd: watchBatchMaxRevs (mvcc/watcher_group.go) and maxWatchersPerSync
 * (mvcc/watchable_store.go). */
#define WATCH_SYNC_BATCH_REVS 1000
#define WATCH_SYNC_WATCHERS_PER_TICK 512
/* keel: a tick stops catching up after this many bytes of events. */
#define WATCH_SYNC_BYTES_PER_TICK (8u * 1024u * 1024u)

/* Return values of watch_send_cb. */
enum {
    WATCH_SEND_OK = 0,  /* queued; the stream can take more */
    WATCH_SEND_FULL = 1 /* queued, but the outbound queue is now full: the hub
                           sends no more events on this stream until
                           watch_stream_set_writable(s, true) */
};

/* Send one response on stream s (stream_data is what watch_stream_new got).
 * resp and everything it points to are borrowed for the duration of the call:
 * pack or copy it before returning. Return WATCH_SEND_OK, WATCH_SEND_FULL, or
 * a negative error: the stream is then dead (nothing more is sent on it) and
 * the transport is expected to watch_stream_free() it. Must not call into the
 * hub. */
typedef int (*watch_send_cb)(void *ctx, struct watch_stream *s,
                             void *stream_data,
                             const Etcdserverpb__WatchResponse *resp);

/* Optional fast path for send: the response already encoded in protobuf
 * wire format (byte for byte what protobuf-c would pack from the struct). The
 * hub packs each event of a revision once and shares the bytes between all
 * the watchers it goes to, which for a wide fan-out is most of the cost
 * (docs/BENCHMARKS.md). msg is borrowed for the call; same return values and
 * rules as watch_send_cb. */
typedef int (*watch_send_packed_cb)(void *ctx, struct watch_stream *s,
                                    void *stream_data, const uint8_t *msg,
                                    size_t len);

/* Called by read_history for each event found, in revision order (and in
 * order within a revision). ev is borrowed for the call (the hub copies what
 * it keeps). Returns 0 to go on, 1 to stop: the hub has a full batch and this
 * event was NOT consumed (it will be asked for again, from its revision). */
typedef int (*watch_emit_cb)(void *emit_arg, const Mvccpb__Event *ev);

/* Read the events of keys in [key, range_end) (etcd's Range conventions:
 * range_end_len 0 = the single key; range_end "\0" = every key >= key) whose
 * mod_revision is in [from_rev, to_rev], calling emit() for each until it
 * returns 1. prev_kv says whether the watcher wants ev->prev_kv filled.
 * Returns 0, KEEL_ECOMPACTED if from_rev is below the compacted revision
 * (then *compact_rev is set to that revision and emit() is never called), or
 * another negative error (the watcher stays behind and is retried at a later
 * tick). */
typedef int (*watch_read_history_cb)(void *ctx, const uint8_t *key,
                                     size_t key_len, const uint8_t *range_end,
                                     size_t range_end_len, int64_t from_rev,
                                     int64_t to_rev, bool prev_kv,
                                     watch_emit_cb emit, void *emit_arg,
                                     int64_t *compact_rev);

/* The store's current revision; asked once, at watch_hub_new(), to seed the
 * hub's revision. Afterwards the hub's revision is the last one notified: a
 * revision applied but not yet notified is never reported to clients. */
typedef int64_t (*watch_current_revision_cb)(void *ctx);

/* Fill cluster_id, member_id and raft_term (the hub sets revision). */
typedef void (*watch_fill_header_cb)(void *ctx, Etcdserverpb__ResponseHeader *h);

/* Authorise a watch on [key, range_end) (read_history's conventions; key
 * already "\0" if the request had none) for the stream's user. Return 0, or a
 * KEEL_E* code whose gRPC error text becomes the cancel_reason (etcd:
 * isWatchPermitted: "rpc error: code = PermissionDenied desc = etcdserver:
 * permission denied" for KEEL_EPERMISSIONDENIED). */
typedef int (*watch_check_range_cb)(void *ctx, void *stream_data,
                                    const uint8_t *key, size_t key_len,
                                    const uint8_t *range_end,
                                    size_t range_end_len);

/* Allocation hooks (tests inject failures through them). */
struct watch_heap
{
    void *ctx;
    void *(*malloc)(void *ctx, size_t n);
    void *(*realloc)(void *ctx, void *p, size_t n);
    void (*free)(void *ctx, void *p);
};

struct watch_hub_config
{
    void *ctx; /* passed to every callback */
    watch_send_cb send;                 /* required, unless send_packed */
    watch_send_packed_cb send_packed;   /* optional: used instead of send */
    watch_read_history_cb read_history; /* required */
    watch_current_revision_cb current_revision; /* optional (0 if NULL) */
    watch_fill_header_cb fill_header;           /* optional */
    watch_check_range_cb check_range;           /* optional */
    const struct watch_heap *heap;              /* optional: libc */
    /* Tunables; 0 picks the etcd default. */
    uint64_t progress_interval_ms; /* raised to the 100 ms minimum */
    size_t max_request_bytes;      /* --max-request-bytes */
    size_t fragment_bytes;         /* default max_request_bytes + 512 KiB */
    int sync_batch_revs;           /* revisions per catch-up response */
    size_t sync_batch_bytes;       /* bytes per catch-up batch
                                      (default max_request_bytes) */
    int sync_watchers_per_tick;    /* catch-up batches per tick */
    size_t sync_bytes_per_tick;    /* catch-up event bytes per tick (8 MiB):
                                      bounds the time one tick holds the
                                      loop */
    uint64_t seed;                 /* hash seed, progress jitter */
};

/* Counters, named after etcd's etcd_debugging_mvcc_* metrics. */
struct watch_hub_stats
{
    size_t streams;          /* watch_stream_total */
    size_t watchers;         /* watcher_total */
    size_t slow_watchers;    /* slow_watcher_total: unsynced now */
    uint64_t events_sent;    /* events_total */
    uint64_t responses_sent;
    uint64_t progress_sent;
    uint64_t went_unsynced;  /* times a synced watcher fell behind */
    uint64_t history_reads;  /* read_history calls */
    uint64_t history_errors; /* read_history failures (not compaction) */
};

/* Create a hub. cfg is copied. Returns 0 or KEEL_EINVAL (missing callback),
 * KEEL_ENOMEM. */
int watch_hub_new(const struct watch_hub_config *cfg, struct watch_hub **out);

/* Free the hub and every stream and watcher still in it (no responses are
 * sent). */
void watch_hub_free(struct watch_hub *h);

/* One applied write txn: all events of revision rev (each ev->kv->mod_revision
 * == rev, ev->prev_kv filled when the key existed). rev must be greater than
 * any revision notified before. Every matching synced watcher receives them
 * in ONE response (several with fragment=true only for a fragmenting watcher
 * over fragment_bytes). Watchers whose stream is not writable become
 * unsynced. events are borrowed for the call. Never fails: under memory
 * pressure the affected watchers are moved to unsynced and replayed later. */
void watch_hub_notify(struct watch_hub *h, int64_t rev,
                      Mvccpb__Event *const *events, size_t n);

/* Storage compacted up to rev: behind watchers that need an older revision
 * get a response with compact_revision set and are canceled (at the next
 * tick, as etcd does in its sync loop). */
void watch_hub_compacted(struct watch_hub *h, int64_t rev);

/* The store was replaced under the hub (a snapshot from the leader was
 * installed) and its revision is now rev, with no events notified for the
 * revisions in between. Every synced watcher becomes unsynced and is replayed
 * from the new store from where it was (or canceled with compact_revision if
 * the new store no longer has those revisions), as etcd's
 * watchableStore.Restore does. rev may not go backwards. */
void watch_hub_restore(struct watch_hub *h, int64_t rev);

/* Periodic work, now_ms a monotonic clock in ms. Feeds unsynced watchers of
 * writable streams from storage, round-robin across streams, at most
 * sync_watchers_per_tick batches and sync_bytes_per_tick bytes of events;
 * then sends due progress notifications.
 * Call it every ~10-100 ms, and sooner while watch_hub_unsynced() > 0. */
void watch_hub_tick(struct watch_hub *h, uint64_t now_ms);

/* Unsynced watchers on writable streams: catch-up work tick() can do now. */
size_t watch_hub_pending(const struct watch_hub *h);

/* The hub's revision: the last one notified (or seeded). */
int64_t watch_hub_revision(const struct watch_hub *h);

void watch_hub_get_stats(const struct watch_hub *h, struct watch_hub_stats *st);

/* A new Watch stream; data is handed back to send() and check_range(). The
 * stream starts writable. Returns 0 or KEEL_ENOMEM. */
int watch_stream_new(struct watch_hub *h, void *data,
                     struct watch_stream **out);

/* The stream was closed: free it and all its watchers (nothing is sent). */
void watch_stream_free(struct watch_stream *s);

/* One client request (create, cancel or progress), handled as etcd 3.4's
 * serverWatchStream.recvLoop does; the responses are sent before it returns:
 *  - create: {created, watch_id} (header revision = hub revision); errors:
 *    {created, canceled, watch_id -1, cancel_reason} with etcd's texts
 *    ("mvcc: duplicate watch ID provided on the WatchStream", "mvcc: watcher
 *    range is empty", or the check_range error).
 *  - cancel of an existing id: {canceled, watch_id}; unknown ids: nothing.
 *  - progress: {watch_id -1, header revision}, deferred while behind.
 * req is borrowed. Returns 0, or KEEL_ENOMEM (no response was sent: the
 * server should end the stream with RESOURCE_EXHAUSTED). */
int watch_stream_recv(struct watch_stream *s,
                      const Etcdserverpb__WatchRequest *req);

/* The transport's outbound queue for s is full (false) or drained (true). */
void watch_stream_set_writable(struct watch_stream *s, bool writable);

/* Check the hub's internal invariants (counters, lists, match index, treap
 * order/heap/augmentation). O(everything): for tests and debug endpoints.
 * Returns 0 or KEEL_ECORRUPT. */
int watch_hub_check(const struct watch_hub *h);

/* Introspection, for tests and /debug. */
size_t watch_stream_watchers(const struct watch_stream *s);
size_t watch_stream_unsynced(const struct watch_stream *s);
bool watch_stream_writable(const struct watch_stream *s);
/* How many revisions the stream's furthest-behind watcher lags the hub (0
 * when all are synced): the "slowest watchers" of /debug. O(unsynced). */
int64_t watch_stream_lag(const struct watch_stream *s);

#endif /* KEEL_WATCH_HUB_H */
