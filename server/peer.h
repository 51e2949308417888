/*
 * server/peer: keel's peer transport (the --listen-peer-urls port, 2380).
 *
 * Carries opaque raft message bytes and snapshot image files between
 * members; it knows nothing of raft or of server/node, so node and
 * transport are wired with callbacks (peer_send has node_send_cb's shape).
 *
 * The wire is keel's own protocol, not etcd's HTTP peer API (a keel member
 * cannot join an etcd cluster): TCP (TLS for https:// URLs, with etcd's
 * --peer-* certificate checks), frames [u32 length][u8 type][payload],
 * a versioned handshake first on every connection naming the cluster and
 * both member ids; the acceptor refuses a wrong cluster id, a to-id other
 * than its own, an unknown or removed sender. See peer_wire.h.
 *
 * Per remote member:
 *   - one outbound message stream (pipelined, TCP_NODELAY). Messages queued
 *     for it are bounded (max_queue_msgs / max_queue_bytes); past that the
 *     message is dropped and on_unreachable reported (raft retransmits).
 *     It reconnects with exponential backoff (50 ms .. 1 s), trying the
 *     member's URLs in turn; a drop reports on_unreachable;
 *   - one connection per snapshot in flight, so heartbeats are never stuck
 *     behind an image: header (message + image size), 1 MiB chunks read
 *     with uv_fs, a sha256 trailer; the receiver writes a temp file in
 *     snap_dir, fsyncs it, checks size and digest, renames it and calls
 *     on_snapshot, then acknowledges. No progress for snap_timeout_ms on
 *     either side fails the transfer (the temp file is deleted).
 * Messages from a member arrive on the stream that member dialed to us, so
 * each direction has its own connection.
 *
 * Threads: everything runs on the loop thread given at peer_open. Callbacks
 * never run inside the peer_* call that caused them: on_unreachable and
 * on_snapshot_sent are delivered from a later loop turn (coalesced: one
 * on_unreachable per member per turn), so a caller may call peer_send while
 * it holds state that those callbacks touch. After peer_close no callback
 * runs except peer_close's own and those of pending peer_calls (with
 * KEEL_ECANCELED, before peer_close's).
 *
 * Wiring to server/node (node.h), all on the same loop:
 *   peer_options.snap_dir   = <data-dir>/member/snap (node installs by rename)
 *   node_options.send       = peer_send, send_arg = the struct peer
 *   on_message              -> node_step(n, msg, len)
 *   on_snapshot             -> node_step_snapshot(n, msg, len, path)
 *   on_snapshot_sent        -> node_report_snapshot(n, to, ok)
 *   on_unreachable          -> node_report_unreachable(n, to)
 *   conf changes applied    -> peer_add / peer_update / peer_remove
 *   max_frame_bytes         >= the largest raft message node may send
 *                              (--max-request-bytes plus overhead)
 * Open both before running the loop, in either order (nothing is
 * delivered before the loop runs); node_open creates member/snap, so on a
 * new data dir open the node first.
 */
#ifndef KEEL_PEER_H
#define KEEL_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct peer;
struct peer_responder;
struct tls_ctx;
struct metrics_registry;

/* A message from member `from` (raft bytes, borrowed for the call). */
typedef void (*peer_message_cb)(void *arg,
                                uint64_t from,
                                const uint8_t *msg,
                                size_t len);
/* A snapshot from `from`: msg as given to the sender's peer_send, path the
 * complete, fsynced, digest-checked image in snap_dir. The callee takes
 * ownership of the file (renames or deletes it). */
typedef void (*peer_snapshot_cb)(void *arg,
                                 uint64_t from,
                                 const uint8_t *msg,
                                 size_t len,
                                 const char *path);
/* The snapshot sent to `to` was received and accepted (ok) or failed. */
typedef void (*peer_snapshot_sent_cb)(void *arg, uint64_t to, bool ok);
/* Messages to `to` were dropped or its stream went down. */
typedef void (*peer_unreachable_cb)(void *arg, uint64_t to);
/* A joining member asks for the cluster: fill *buf (malloc'd; the transport
 * frees it) and *len, return 0; or return a negative code to refuse. */
typedef int (*peer_cluster_info_cb)(void *arg, uint8_t **buf, size_t *len);
/* A request from member `from` (peer_call there): method and body as the
 * caller gave them (body borrowed for the call). Answer exactly once with
 * peer_respond(r, ...), now or later. */
typedef void (*peer_request_cb)(void *arg,
                                uint64_t from,
                                uint32_t method,
                                const uint8_t *body,
                                size_t len,
                                struct peer_responder *r);
/* Member `by` refused our stream because this member was removed from the
 * cluster (etcd: "the member has been permanently removed from the
 * cluster"). */
typedef void (*peer_removed_cb)(void *arg, uint64_t by);

struct peer_options
{
    uv_loop_t *loop;
    uint64_t cluster_id; /* 0: not known yet (see peer_set_cluster_id) */
    uint64_t self_id;    /* != 0 */
    /* --listen-peer-urls: http://host:port or https://host:port (port 0
     * picks a free port, see peer_port). May be empty (a transport that
     * only dials). Read during peer_open. */
    const char *const *listen_urls;
    size_t n_listen_urls;
    /* Where received images are written: snap-from-<id>-<n>.db.tmp, then
     * renamed to snap-from-<id>-<n>.db. Must exist; NULL refuses every
     * incoming snapshot. peer_open deletes leftover snap-from-*.tmp files
     * (a crash mid-transfer). Copied. */
    const char *snap_dir;
    peer_message_cb on_message;
    peer_snapshot_cb on_snapshot;
    peer_snapshot_sent_cb on_snapshot_sent;
    peer_unreachable_cb on_unreachable;
    peer_cluster_info_cb on_cluster_info; /* NULL: requests are refused */
    peer_removed_cb on_removed;           /* may be NULL */
    peer_request_cb on_request; /* NULL: requests get KEEL_EUNIMPLEMENTED */
    void *arg;
    /* Peer TLS (tls.h; borrowed, must outlive the transport): tls_server
     * (role TLS_SERVER) serves the https:// listen URLs and is required
     * for them; tls_client (TLS_CLIENT) dials https:// member URLs (the
     * stream, snapshots, calls); without it those dials fail. A peer
     * failing the handshake or etcd's certificate checks is logged
     * ("rejected connection", rate-limited) and closed; others go on. */
    struct tls_ctx *tls_server;
    struct tls_ctx *tls_client;
    /* etcd --experimental-peer-skip-client-san-verification: accept a
     * client certificate whose SANs do not name the remote address. */
    bool tls_skip_client_san;
    /* Limits; 0 means the default in brackets. */
    size_t max_queue_msgs;         /* per remote, not yet written [4096] */
    size_t max_queue_bytes;        /* per remote, not yet written [32 MiB] */
    size_t max_frame_bytes;        /* largest frame accepted [64 MiB] */
    uint64_t snap_timeout_ms;      /* no progress -> fail [30000] */
    uint64_t snap_sync_bytes;      /* receiver fdatasyncs every [64 MiB] */
    uint64_t backoff_min_ms;       /* first reconnect delay [50] */
    uint64_t backoff_max_ms;       /* longest reconnect delay [1000] */
    uint64_t handshake_timeout_ms; /* dial + handshake deadline [5000] */
    /* A message stream with output pending and no write completing for
     * this long is closed and redialed (a member that stopped reading, a
     * dead host) [5000; etcd: ConnWriteTimeout] */
    uint64_t write_timeout_ms;
    /* Liveness of idle streams (etcd: heartbeats on its streams, and
     * ConnReadTimeout): the dialer sends a PING every keepalive_ms while
     * its output is drained and gives the stream up when no answer came
     * for idle_timeout_ms; the acceptor closes a stream that sent nothing
     * for idle_timeout_ms. [1000, 5000] */
    uint64_t keepalive_ms;
    uint64_t idle_timeout_ms;
};

#define PEER_DEFAULT_MAX_QUEUE_MSGS 4096
#define PEER_DEFAULT_MAX_QUEUE_BYTES (32u * 1024u * 1024u)
#define PEER_DEFAULT_MAX_FRAME_BYTES (64u * 1024u * 1024u)
#define PEER_DEFAULT_SNAP_TIMEOUT_MS 30000
#define PEER_DEFAULT_SNAP_SYNC_BYTES (64u * 1024u * 1024u)
#define PEER_DEFAULT_BACKOFF_MIN_MS 50
#define PEER_DEFAULT_BACKOFF_MAX_MS 1000
#define PEER_DEFAULT_HANDSHAKE_TIMEOUT_MS 5000
#define PEER_DEFAULT_WRITE_TIMEOUT_MS 5000
#define PEER_DEFAULT_KEEPALIVE_MS 1000
#define PEER_DEFAULT_IDLE_TIMEOUT_MS 5000
#define PEER_SNAP_CHUNK (1024u * 1024u)

/* Start listening on every listen URL. Returns 0 and *out, or a negative
 * code with a message in errmsg (a bad or https URL, a failed bind); on
 * error whatever was opened is closed by the loop's next turn (the caller
 * only has to keep running the loop). Sets SIGPIPE to ignored for the
 * process. */
int peer_open(const struct peer_options *opts,
              struct peer **out,
              char *errmsg,
              size_t errlen);

typedef void (*peer_close_cb)(void *data);

/* Stop listening, close every connection (snapshots in flight fail without
 * callbacks; partial received images are deleted), then free t and call cb
 * (may be NULL) from a later loop turn. After this call only pending
 * peer_calls' callbacks run (KEEL_ECANCELED), then cb. */
void peer_close(struct peer *t, peer_close_cb cb, void *data);

/* The TCP port of the i-th listen URL (useful after port 0), 0 if none. */
int peer_port(const struct peer *t, size_t i);

/* A member joining with --initial-cluster-state existing learns the
 * cluster id after start (peer_fetch_cluster_info); connections use the id
 * from now on. */
void peer_set_cluster_id(struct peer *t, uint64_t cluster_id);

/* Add remote member id with its peer URLs (http(s)://host:port, copied)
 * and start dialing it. 0, KEEL_EEXISTS (already added), KEEL_EINVAL (id
 * 0, self, no URL, a URL that is not http(s)://host:port), KEEL_ENOMEM. A member
 * added again after peer_remove is accepted again. */
int peer_add(struct peer *t,
             uint64_t id,
             const char *const *urls,
             size_t n_urls);

/* Replace id's URLs (used from the next dial; an established stream stays
 * up). 0, KEEL_ENOTFOUND, KEEL_EINVAL, KEEL_ENOMEM. */
int peer_update(struct peer *t,
                uint64_t id,
                const char *const *urls,
                size_t n_urls);

/* Forget id: its streams and snapshots are closed (no callbacks), and its
 * future connections are refused as removed. 0 or KEEL_ENOTFOUND. */
int peer_remove(struct peer *t, uint64_t id);

/* Send msg (copied) to member `to`: with snap_path == NULL on its message
 * stream; otherwise as a snapshot carrying the image file snap_path (read
 * while streaming; on_snapshot_sent(to, ok) reports the outcome). Never
 * fails synchronously: a message that cannot be queued (unknown member,
 * queue full, stream down and backing off) is dropped and on_unreachable
 * reported. arg is the struct peer (node_send_cb's shape). */
void peer_send(void *arg,
               uint64_t to,
               const uint8_t *msg,
               size_t len,
               const char *snap_path);

/* Whether the message stream to id is established (handshake accepted)
 * and alive (it takes our bytes within write_timeout_ms and answers PINGs
 * within idle_timeout_ms). etcd's "not enough started members" check
 * counts these. */
bool peer_connected(const struct peer *t, uint64_t id);

/* When (uv_now, ms) the message stream to id came up, 0 if it is down. */
uint64_t peer_active_since(const struct peer *t, uint64_t id);

/* Counters of one remote (for tests and metrics). */
struct peer_stats
{
    uint64_t sent_bytes;     /* frames written to its streams */
    uint64_t received_bytes; /* frames read from its streams */
    uint64_t sent_failures;  /* messages dropped, snapshots failed */
    uint64_t dropped;        /* messages dropped (queue full / down) */
    size_t queued_msgs;      /* messages not yet written to the socket */
    size_t queued_bytes;
    uint64_t connects;           /* times the message stream came up */
    uint64_t disconnects;        /* times it went down after being up */
    uint64_t received_failures;  /* its connections closed for bad frames */
    uint64_t snap_send_ok;       /* snapshots it accepted */
    uint64_t snap_send_failures; /* snapshots to it that failed */
    uint64_t snap_recv_ok;       /* snapshots from it handed over */
    uint64_t snap_recv_failures; /* snapshots from it that failed */
};

/* 0 or KEEL_ENOTFOUND. */
int peer_stats(const struct peer *t, uint64_t id, struct peer_stats *out);

/* Register etcd's network metrics, read from t at scrape time, one sample
 * per remote member (ids in hex as etcd prints them):
 * etcd_network_peer_{sent,received}_bytes_total{To|From},
 * etcd_network_peer_{sent,received}_failures_total{To|From},
 * etcd_network_snapshot_{send,receive}_{success,failures}{To|From},
 * etcd_network_{active_peers,disconnected_peers_total}{Local,Remote}.
 * t must outlive r's use. */
int peer_register_metrics(struct metrics_registry *r, struct peer *t);

/* ---- requests between members ------------------------------------------
 *
 * What etcd sends over its peer port besides raft (a follower forwards
 * LeaseKeepAlive / LeaseTimeToLive to the leader, the corruption checker
 * asks members for their hash): a request with a caller-chosen method
 * number travels on the message stream to `to`, the answer comes back on
 * the same connection. */

struct peer_call;
/* The outcome: status 0 and the body peer_respond gave (borrowed for the
 * call); the responder's negative status (and its body); UV_ETIMEDOUT;
 * UV_ENOTCONN (no stream to the member, or it went down before the answer:
 * the request may or may not have been executed); KEEL_EBUSY (the
 * member's queue is full); KEEL_ECANCELED (peer_call_cancel, peer_close,
 * peer_remove). */
typedef void (*peer_call_cb)(struct peer_call *req,
                             int status,
                             const uint8_t *body,
                             size_t len);

/* Caller-owned; valid from peer_call until its callback. Fields other than
 * data are private. */
struct peer_call
{
    void *data; /* for the caller */
    struct peer *t;
    struct peer_call *next; /* in the remote's pending list */
    uint64_t to;
    uint64_t id;
    uv_timer_t timer;
    peer_call_cb cb;
    int status;
    uint8_t *body;
    size_t len;
    bool finished;
};

/* Send request (method, body copied) to member `to`; the answer, or the
 * failure, arrives through cb exactly once from a later loop turn, at the
 * latest after timeout_ms. Returns 0, or KEEL_ENOTFOUND (unknown member),
 * KEEL_ESHUTDOWN (closing), KEEL_ENOMEM: then cb never runs. */
int peer_call(struct peer *t,
              struct peer_call *req,
              uint64_t to,
              uint32_t method,
              const uint8_t *body,
              size_t len,
              uint64_t timeout_ms,
              peer_call_cb cb);

/* Give up waiting (between peer_call and its callback only): cb runs
 * later with KEEL_ECANCELED, unless another outcome was already decided,
 * which it then gets. */
void peer_call_cancel(struct peer_call *req);

/* Answer a request (see peer_request_cb): status 0 or a negative code,
 * body copied. Frees r. If the asking member's connection is gone the
 * answer is dropped (it already got UV_ENOTCONN). May be called after
 * peer_close. */
void peer_respond(struct peer_responder *r,
                  int status,
                  const uint8_t *body,
                  size_t len);

/* ---- cluster info for a joining member ---------------------------------- */

/* status 0 and the bytes the answering member's on_cluster_info produced
 * (borrowed for the call), or UV_ETIMEDOUT and an error text naming the
 * last failure (refused, no one listening, the member's refusal). */
typedef void (*peer_fetch_cb)(void *arg,
                              int status,
                              const uint8_t *buf,
                              size_t len,
                              const char *errmsg);

/* Ask the members at urls (peer URLs, tried in turn, round robin) for the
 * cluster info, giving up after timeout_ms in total; https:// URLs are
 * dialed with tls (TLS_CLIENT, borrowed until cb; NULL: they fail). On 0,
 * cb runs exactly once from a later loop turn; on error (bad URL, no URL)
 * it never runs. The request owns its memory; the loop must run until
 * cb. */
int peer_fetch_cluster_info(uv_loop_t *loop,
                            struct tls_ctx *tls,
                            const char *const *urls,
                            size_t n_urls,
                            uint64_t timeout_ms,
                            peer_fetch_cb cb,
                            void *arg);

#endif /* KEEL_PEER_H */
