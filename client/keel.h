/*
 * libkeel: a C client for keel and etcd 3.4 (the v3 gRPC API) on libuv.
 *
 * Transport: gRPC over cleartext HTTP/2 (nghttp2) on TCP or a unix socket;
 * messages are protobuf-c. One struct keel_client keeps one HTTP/2
 * connection to one endpoint of its list at a time and multiplexes every
 * call on it; create several clients on the same loop for several
 * connections. On a connect failure, a dropped connection or (for calls
 * flagged idempotent) an Unavailable status, the client moves to the next
 * endpoint.
 *
 * Two ways to use it:
 *   - asynchronous, on the caller's uv_loop_t (daemons, load generators):
 *     keel_client_new() + keel_call_start()/keel_stream_start()/
 *     keel_watch_start(); callbacks run on the loop thread;
 *   - blocking (simple programs): keel_sync_open() runs a private loop;
 *     keel_sync_call() returns when the call has finished.
 *
 * Every RPC goes through one generic entry point, keel_call_start(), given
 * the method path ("/etcdserverpb.KV/Range"), the request message and the
 * response descriptor; the KEEL_M_* macros below name every etcd 3.4 method.
 *
 * Errors: every call ends with a gRPC status code (KEEL_GRPC_* from
 * keel_err.h) and the server's grpc-message, percent-decoded, so callers can
 * match etcd's strings ("etcdserver: mvcc: required revision has been
 * compacted"). Local failures map to gRPC codes too: the call's deadline
 * passing is DEADLINE_EXCEEDED "context deadline exceeded" (Go's text, which
 * etcdctl prints), cancellation is CANCELED, a lost connection UNAVAILABLE.
 *
 * Ownership (CONVENTIONS 9.4): the caller allocates struct keel_call,
 * keel_stream and keel_watch and keeps them alive until their completion
 * callback has run; request messages are borrowed only for the duration of
 * the start/send function (they are serialised at once). Responses live in
 * the call's arena until keel_call_cleanup().
 *
 * Threads: none. Everything on a client must happen on its loop's thread.
 *
 * TLS (OpenSSL, TLS 1.2+, ALPN "h2"): https:// and unixs:// endpoints
 * always use TLS; http:// and unix:// never; an endpoint without a scheme
 * uses TLS when keel_client_config.tls is set (clientv3's rule). The server
 * certificate is verified against tls->cacert (or the system roots) and
 * the endpoint's host name or IP address, unless insecure_skip_verify.
 */
#ifndef KEEL_H
#define KEEL_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "keel_arena.h"
#include "keel_err.h"

/* Method paths of etcd 3.4's v3 API (etcdserverpb/rpc.proto). */
#define KEEL_M_RANGE "/etcdserverpb.KV/Range"
#define KEEL_M_PUT "/etcdserverpb.KV/Put"
#define KEEL_M_DELETE_RANGE "/etcdserverpb.KV/DeleteRange"
#define KEEL_M_TXN "/etcdserverpb.KV/Txn"
#define KEEL_M_COMPACT "/etcdserverpb.KV/Compact"
#define KEEL_M_WATCH "/etcdserverpb.Watch/Watch"
#define KEEL_M_LEASE_GRANT "/etcdserverpb.Lease/LeaseGrant"
#define KEEL_M_LEASE_REVOKE "/etcdserverpb.Lease/LeaseRevoke"
#define KEEL_M_LEASE_KEEPALIVE "/etcdserverpb.Lease/LeaseKeepAlive"
#define KEEL_M_LEASE_TTL "/etcdserverpb.Lease/LeaseTimeToLive"
#define KEEL_M_LEASE_LEASES "/etcdserverpb.Lease/LeaseLeases"
#define KEEL_M_MEMBER_ADD "/etcdserverpb.Cluster/MemberAdd"
#define KEEL_M_MEMBER_REMOVE "/etcdserverpb.Cluster/MemberRemove"
#define KEEL_M_MEMBER_UPDATE "/etcdserverpb.Cluster/MemberUpdate"
#define KEEL_M_MEMBER_LIST "/etcdserverpb.Cluster/MemberList"
#define KEEL_M_MEMBER_PROMOTE "/etcdserverpb.Cluster/MemberPromote"
#define KEEL_M_ALARM "/etcdserverpb.Maintenance/Alarm"
#define KEEL_M_STATUS "/etcdserverpb.Maintenance/Status"
#define KEEL_M_DEFRAGMENT "/etcdserverpb.Maintenance/Defragment"
#define KEEL_M_HASH "/etcdserverpb.Maintenance/Hash"
#define KEEL_M_HASHKV "/etcdserverpb.Maintenance/HashKV"
#define KEEL_M_SNAPSHOT "/etcdserverpb.Maintenance/Snapshot"
#define KEEL_M_MOVE_LEADER "/etcdserverpb.Maintenance/MoveLeader"
#define KEEL_M_AUTH_ENABLE "/etcdserverpb.Auth/AuthEnable"
#define KEEL_M_AUTH_DISABLE "/etcdserverpb.Auth/AuthDisable"
#define KEEL_M_AUTHENTICATE "/etcdserverpb.Auth/Authenticate"
#define KEEL_M_USER_ADD "/etcdserverpb.Auth/UserAdd"
#define KEEL_M_USER_GET "/etcdserverpb.Auth/UserGet"
#define KEEL_M_USER_LIST "/etcdserverpb.Auth/UserList"
#define KEEL_M_USER_DELETE "/etcdserverpb.Auth/UserDelete"
#define KEEL_M_USER_CHANGE_PASSWORD "/etcdserverpb.Auth/UserChangePassword"
#define KEEL_M_USER_GRANT_ROLE "/etcdserverpb.Auth/UserGrantRole"
#define KEEL_M_USER_REVOKE_ROLE "/etcdserverpb.Auth/UserRevokeRole"
#define KEEL_M_ROLE_ADD "/etcdserverpb.Auth/RoleAdd"
#define KEEL_M_ROLE_GET "/etcdserverpb.Auth/RoleGet"
#define KEEL_M_ROLE_LIST "/etcdserverpb.Auth/RoleList"
#define KEEL_M_ROLE_DELETE "/etcdserverpb.Auth/RoleDelete"
#define KEEL_M_ROLE_GRANT_PERMISSION "/etcdserverpb.Auth/RoleGrantPermission"
#define KEEL_M_ROLE_REVOKE_PERMISSION "/etcdserverpb.Auth/RoleRevokePermission"
#define KEEL_M_LOCK "/v3lockpb.Lock/Lock"
#define KEEL_M_UNLOCK "/v3lockpb.Lock/Unlock"
#define KEEL_M_CAMPAIGN "/v3electionpb.Election/Campaign"
#define KEEL_M_PROCLAIM "/v3electionpb.Election/Proclaim"
#define KEEL_M_LEADER "/v3electionpb.Election/Leader"
#define KEEL_M_OBSERVE "/v3electionpb.Election/Observe"
#define KEEL_M_RESIGN "/v3electionpb.Election/Resign"

/* The text a call's deadline produces (Go's context.DeadlineExceeded). */
#define KEEL_DEADLINE_MESSAGE "context deadline exceeded"

struct keel_client;
struct keel_conn;
struct keel_rpc_slot;

/* TLS settings; read by keel_client_new() only (the files are loaded
 * then). */
struct keel_tls_config
{
    const char *cacert; /* PEM CA bundle; NULL or "": the system roots */
    const char *cert;   /* PEM client certificate (chain), or NULL */
    const char *key;    /* its PEM private key (NULL: in cert's file) */
    int insecure_skip_verify; /* accept any server certificate */
};

struct keel_client_config
{
    /* "host:port", "http://host:port", "unix:///path" or "unix:path". At
     * least one. Copied by keel_client_new(). */
    const char *const *endpoints;
    size_t n_endpoints;
    /* Bound on one connection attempt (TCP connect + HTTP/2 settings), ms;
     * 0 means 2000 (etcdctl's --dial-timeout default). */
    uint64_t dial_timeout_ms;
    /* With a username, the client calls Auth.Authenticate when it connects
     * and sends the token with every call; it re-authenticates once when a
     * call fails with "etcdserver: invalid auth token". Copied. */
    const char *username;
    const char *password;
    const struct keel_tls_config *tls; /* NULL: TLS only for https:// */
    /* HTTP/2 PING keepalive (grpc keepalive): after keepalive_time_ms
     * without a ping, send one; no answer within keepalive_timeout_ms
     * closes the connection, and the client moves to the next endpoint
     * (a watch resumes there). 0 = off. etcd refuses pings more often
     * than every 5 s (--grpc-keepalive-min-time); grpc-go uses >= 10 s. */
    uint64_t keepalive_time_ms;
    uint64_t keepalive_timeout_ms;
};

/* Private state shared by calls and streams; fields are not API. */
struct keel_rpc
{
    struct keel_client *client;
    struct keel_rpc *next, *prev;     /* client's active list */
    struct keel_rpc *pnext, *pprev;   /* client's pending queue (FIFO) */
    int in_pending;
    struct keel_rpc *done_next;       /* client's completion queue */
    struct keel_conn *conn;           /* connection it was submitted on */
    struct keel_rpc_slot *slot;       /* nghttp2 stream user data */
    const ProtobufCMessageDescriptor *resp_desc;
    char path[96];
    int kind;                         /* unary or stream */
    int state;                        /* see client.c */
    unsigned flags;
    uint64_t deadline;                /* uv_now() ms; 0 = none */
    uint8_t *sendbuf;                 /* framed outgoing messages, malloc */
    size_t sendlen, sendoff, sendcap;
    int send_closed;                  /* END_STREAM after sendbuf drains */
    int sent_any;                     /* request reached the wire */
    int auth_retried;
    int attempts;
    int got_message;                  /* unary: a response arrived */
    void *dec_state;                  /* struct grpc_decoder, malloc */
    void *status_state;               /* struct grpc_status, malloc */
    int final_code;
    char *final_message;              /* malloc */
};

/* ---- unary calls --------------------------------------------------------- */

/* keel_call_opts.flags */
enum {
    /* Safe to repeat: retried on the next endpoint after a dropped
     * connection or an Unavailable status while the deadline allows. Calls
     * never sent are always retried. */
    KEEL_CALL_IDEMPOTENT = 1u << 0,
    /* Do not attach the auth token (used for Authenticate itself). */
    KEEL_CALL_NO_AUTH = 1u << 1,
    /* Send "hasleader: true" (clientv3.WithRequireLeader): the server
     * fails the call, or cancels the watch, when it has no leader. */
    KEEL_CALL_REQUIRE_LEADER = 1u << 2,
};

struct keel_call_opts
{
    uint64_t timeout_ms; /* 0 = no deadline; sent as grpc-timeout too */
    unsigned flags;
};

struct keel_call;
typedef void (*keel_call_cb)(struct keel_call *call);

struct keel_call
{
    void *data; /* for the caller */
    /* Results, valid in the callback and until keel_call_cleanup(). */
    int status;              /* KEEL_GRPC_* */
    const char *message;     /* grpc-message or local reason; "" if none */
    ProtobufCMessage *resp;  /* the response (status OK), else NULL */
    struct keel_arena arena; /* holds resp and message */
    /* private */
    struct keel_rpc rpc;
    keel_call_cb cb;
};

/* Start a unary call. `path` is a method path (KEEL_M_*), `req` the request
 * (serialised before returning), `resp_desc` the response type's descriptor.
 * opts may be NULL. Returns 0 and then `cb` runs exactly once (never from
 * inside this function), or a negative KEEL_E* / -errno and `cb` never runs.
 * The call struct must stay valid until `cb`; afterwards release the
 * results with keel_call_cleanup() (also before reusing the struct). */
int keel_call_start(struct keel_client *c, struct keel_call *call,
                    const char *path, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    const struct keel_call_opts *opts, keel_call_cb cb);

/* Cancel a call that has not completed: its cb runs with CANCELED (later,
 * from the loop). No effect on a completed call. */
void keel_call_cancel(struct keel_call *call);

/* Free the results of a completed call (idempotent). */
void keel_call_cleanup(struct keel_call *call);

/* ---- streams (Watch, LeaseKeepAlive, Snapshot, Observe) ------------------- */

struct keel_stream;
/* One response message; `msg` and everything it points to are valid only
 * during the callback. The callback may send, close or cancel. */
typedef void (*keel_stream_msg_cb)(struct keel_stream *s,
                                   ProtobufCMessage *msg);
/* The stream ended: status is KEEL_GRPC_OK after a clean end, CANCELED
 * after keel_stream_cancel(); message as for keel_call. Runs exactly once;
 * afterwards the struct may be freed or reused. */
typedef void (*keel_stream_end_cb)(struct keel_stream *s, int status,
                                   const char *message);

struct keel_stream
{
    void *data; /* for the caller */
    /* private */
    struct keel_rpc rpc;
    struct keel_arena arena; /* per message, reset after each msg_cb */
    keel_stream_msg_cb msg_cb;
    keel_stream_end_cb end_cb;
};

/* Open a stream. Nothing is sent until keel_stream_send(). opts may be NULL
 * (timeout_ms applies to the whole stream; streams are never retried, see
 * keel_watch for one that resumes). Returns 0 and end_cb runs exactly once,
 * or an error and no callback runs. */
int keel_stream_start(struct keel_client *c, struct keel_stream *s,
                      const char *path,
                      const ProtobufCMessageDescriptor *resp_desc,
                      const struct keel_call_opts *opts,
                      keel_stream_msg_cb msg_cb, keel_stream_end_cb end_cb);

/* Queue one message (serialised at once). KEEL_EINVAL after close_send or
 * end. */
int keel_stream_send(struct keel_stream *s, const ProtobufCMessage *msg);

/* Half-close: no more messages from us (END_STREAM once the queue drains). */
int keel_stream_close_send(struct keel_stream *s);

/* Reset the stream; end_cb runs with CANCELED (from the loop). */
void keel_stream_cancel(struct keel_stream *s);

/* ---- watch that survives reconnects --------------------------------------- */

struct keel_watch;
struct Etcdserverpb__WatchResponse;
struct Etcdserverpb__WatchCreateRequest;
/* Every WatchResponse (the "created" one too), valid during the callback. */
typedef void (*keel_watch_cb)(struct keel_watch *w,
                              const struct Etcdserverpb__WatchResponse *r);
/* The watch is over: canceled by the server (compaction: r->compact_revision
 * was reported to watch_cb first), by keel_watch_stop() (CANCELED), or a
 * non-retryable stream error. Runs exactly once. */
typedef void (*keel_watch_end_cb)(struct keel_watch *w, int status,
                                  const char *message);

struct keel_watch
{
    void *data;        /* for the caller */
    unsigned flags;    /* KEEL_CALL_* for the stream; set before start */
    int64_t next_rev;  /* revision a resumed watch starts from (read-only) */
    int64_t watch_id;  /* server's id on the current stream (read-only) */
    /* private */
    struct keel_stream stream;
    struct keel_client *client;
    uint8_t *create_req; /* packed WatchCreateRequest, malloc */
    size_t create_len;
    keel_watch_cb cb;
    keel_watch_end_cb end_cb;
    int stopping;
    int ended;
    int resumes;
    uv_timer_t *retry_timer; /* malloc, while waiting to resume */
};

/* Watch per `create` (key, range_end, start_revision, prev_kv, filters...).
 * When the stream drops (connection lost, Unavailable), the watch is
 * re-created on the next endpoint from next_rev = last seen revision + 1,
 * so no event is lost or repeated. Returns 0 and end_cb runs once, or an
 * error and no callback runs. */
int keel_watch_start(struct keel_client *c, struct keel_watch *w,
                     const struct Etcdserverpb__WatchCreateRequest *create,
                     keel_watch_cb cb, keel_watch_end_cb end_cb);

/* Stop the watch; end_cb runs with CANCELED. */
void keel_watch_stop(struct keel_watch *w);

/* Ask the server for a progress notification on this watch's stream: a
 * WatchResponse without events whose header revision says how far the
 * watch is known complete (clientv3 RequestProgress). 0, or KEEL_EINVAL
 * while the watch has no open stream. */
int keel_watch_request_progress(struct keel_watch *w);

/* ---- lease keepalive that survives reconnects ------------------------------ */

struct keel_lease_keepalive;
struct Etcdserverpb__LeaseKeepAliveResponse;
/* Each keepalive response (TTL > 0), valid during the callback. */
typedef void (*keel_lease_keepalive_cb)(
    struct keel_lease_keepalive *k,
    const struct Etcdserverpb__LeaseKeepAliveResponse *r);
/* Ended: NOT_FOUND "etcdserver: requested lease not found" when the lease
 * expired or was revoked (the server answered TTL <= 0), CANCELED after
 * keel_lease_keepalive_stop(), or another non-retryable error. Once. */
typedef void (*keel_lease_keepalive_end_cb)(struct keel_lease_keepalive *k,
                                            int status, const char *message);

struct keel_lease_keepalive
{
    void *data;      /* for the caller */
    int64_t id;      /* the lease (read-only) */
    int64_t ttl;     /* last TTL the server granted (read-only) */
    /* private */
    struct keel_stream stream;
    struct keel_client *client;
    uv_timer_t *timer; /* malloc: next keepalive, or the retry delay */
    keel_lease_keepalive_cb cb;
    keel_lease_keepalive_end_cb end_cb;
    int stopping;
    int ended;
    int stream_open;
    int end_status;
    char end_message[128];
};

/* Keep lease `id` alive: a LeaseKeepAlive stream, one request now and the
 * next TTL/3 after each response (clientv3/lease.go); when the stream drops
 * (connection lost, Unavailable), a new one is opened, on the next endpoint.
 * Returns 0 and end_cb runs once, or an error and no callback runs. */
int keel_lease_keepalive_start(struct keel_client *c,
                               struct keel_lease_keepalive *k, int64_t id,
                               keel_lease_keepalive_cb cb,
                               keel_lease_keepalive_end_cb end_cb);

/* Stop keeping the lease alive (it is not revoked); end_cb runs with
 * CANCELED. */
void keel_lease_keepalive_stop(struct keel_lease_keepalive *k);

/* ---- client --------------------------------------------------------------- */

/* Create a client on `loop`. Connects lazily (on the first call) or at once
 * with keel_client_connect(). Returns 0 and *out, or KEEL_EINVAL (no or
 * malformed endpoint, or a TLS certificate/key that cannot be loaded or do
 * not match), -ENOMEM. A handshake that fails (untrusted or misnamed
 * server certificate, a client certificate the server refuses) is a
 * connection failure: the next endpoint is tried, calls see UNAVAILABLE
 * or their deadline. */
int keel_client_new(uv_loop_t *loop, const struct keel_client_config *cfg,
                    struct keel_client **out);

/* Begin connecting now (otherwise the first call does). */
void keel_client_connect(struct keel_client *c);

/* Whether an HTTP/2 connection is established (settings exchanged). */
int keel_client_connected(const struct keel_client *c);

/* The endpoint currently used (as given in the config). */
const char *keel_client_endpoint(const struct keel_client *c);

/* Text of the last connection failure ("" if none), for diagnostics, in
 * Go's words: "dial tcp 127.0.0.1:2379: connect: connection refused". */
const char *keel_client_last_error(const struct keel_client *c);

typedef void (*keel_client_close_cb)(struct keel_client *c, void *data);

/* Cancel every call and stream (their callbacks run with CANCELED), close
 * the connection, then run cb (may be NULL) and free the client. */
void keel_client_close(struct keel_client *c, keel_client_close_cb cb,
                       void *data);

/* ---- blocking API ---------------------------------------------------------- */

struct keel_sync;

/* A client on a private loop. 0 or an error as keel_client_new(). */
int keel_sync_open(const struct keel_client_config *cfg,
                   struct keel_sync **out);

/* Run one unary call to completion; the results are in *call as for
 * keel_call_start() (release with keel_call_cleanup()). Returns 0 when the
 * call ran (whatever its status), or an error from keel_call_start(). */
int keel_sync_call(struct keel_sync *s, struct keel_call *call,
                   const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc,
                   const struct keel_call_opts *opts);

/* The private loop and client, to run streams with the async API:
 * start them, then uv_run(keel_sync_loop(s), UV_RUN_DEFAULT) or run it
 * until a flag is set. */
uv_loop_t *keel_sync_loop(struct keel_sync *s);
struct keel_client *keel_sync_client(struct keel_sync *s);

/* Close the client, run the loop until everything is released, free. */
void keel_sync_close(struct keel_sync *s);

/* ---- thin typed wrappers for the common KV calls (async) ------------------- */

/* Range [key, range_end) (range_end NULL: just key) at revision rev (0 =
 * latest); the response is an Etcdserverpb__RangeResponse. */
int keel_get(struct keel_client *c, struct keel_call *call, const char *key,
             const char *range_end, int64_t rev, uint64_t timeout_ms,
             keel_call_cb cb);
/* Put key=value (lease 0 = none); response Etcdserverpb__PutResponse. */
int keel_put(struct keel_client *c, struct keel_call *call, const char *key,
             const void *value, size_t value_len, int64_t lease,
             uint64_t timeout_ms, keel_call_cb cb);
/* Delete [key, range_end); response Etcdserverpb__DeleteRangeResponse. */
int keel_delete(struct keel_client *c, struct keel_call *call,
                const char *key, const char *range_end, uint64_t timeout_ms,
                keel_call_cb cb);

/* The range_end that selects every key with `prefix` (etcd's
 * GetPrefixRangeEnd): writes it to out (strlen(prefix)+1 bytes) and returns
 * its length; "\0" (length 1) when every byte is 0xff. */
size_t keel_prefix_end(const char *prefix, size_t len, char *out);

#endif /* KEEL_H */
