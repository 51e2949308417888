/*
 * gRPC over HTTP/2 for the client port: a method registry and call objects.
 *
 * A service registers each of its methods by full path
 * ("/etcdserverpb.KV/Range"), kind, request descriptor and callbacks. For
 * each call the transport:
 *   - parses metadata (grpc-timeout, grpc-encoding, any other header, e.g.
 *     authorization, hasleader: grpc_call_header());
 *   - reassembles length-prefixed messages, enforces the size limits, unpacks
 *     them with the registered descriptor (into the call's arena for
 *     UNARY/SERVER_STREAM, into a per-message arena for streamed input);
 *   - answers errors the way grpc-go does (unknown method → UNIMPLEMENTED,
 *     bad protobuf → INTERNAL "grpc: error unmarshalling request: ...", ...);
 *   - enforces the deadline (DEADLINE_EXCEEDED, handler notified).
 *
 * Call lifetime. The handler owns the call from start() until it finishes
 * it, exactly once, with grpc_call_reply() (unary), grpc_call_finish() or
 * grpc_call_fail*(). That may be long after start() returned (waiting for a
 * raft commit). If the client goes away or the deadline passes first,
 * on_cancel runs (once) and every send becomes a no-op returning
 * KEEL_ECANCELED — but the handler must still finish the call, which then
 * only frees it. After finishing, the handler must not touch the call.
 *
 * Everything runs on the loop thread.
 *
 * A unary method answered after a raft commit:
 *
 *   static void put_start(struct grpc_call *call, const ProtobufCMessage *m,
 *                         void *data)
 *   {
 *       const Etcdserverpb__PutRequest *req = (const void *)m;
 *       ... propose; keep `call` in the proposal ...
 *   }
 *   // later, from the apply path:
 *   Etcdserverpb__PutResponse *resp =
 *       keel_arena_alloc(grpc_call_arena(call), sizeof *resp);
 *   etcdserverpb__put_response__init(resp);
 *   ...
 *   grpc_call_reply(call, &resp->base);   // or grpc_call_fail(call, rv)
 *
 *   struct grpc_method m = {"/etcdserverpb.KV/Put", GRPC_UNARY,
 *                           &etcdserverpb__put_request__descriptor,
 *                           put_start, NULL, NULL, put_cancel, srv};
 *   grpc_server_register(registry, &m);
 *
 * A bidi stream (Watch): on_message gets each WatchRequest; the handler
 * sends with grpc_call_send(), keeps its queue under a budget with
 * grpc_call_buffered() + grpc_call_on_drain(), and ends with
 * grpc_call_finish() from on_half_close or on_cancel.
 */
#ifndef KEEL_GRPC_H
#define KEEL_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "keel_arena.h"
#include "keel_err.h"

struct grpc_server;
struct grpc_call;
struct router_header;

enum grpc_kind {
    GRPC_UNARY,
    GRPC_CLIENT_STREAM,
    GRPC_SERVER_STREAM,
    GRPC_BIDI,
};

/* The call starts. UNARY and SERVER_STREAM: req is the request message
 * (allocated in grpc_call_arena(), valid until the call is finished; NULL
 * only if the method was registered without a descriptor, then see
 * grpc_call_request_bytes()). CLIENT_STREAM and BIDI: req is NULL, messages
 * follow through on_message. */
typedef void (*grpc_start_cb)(struct grpc_call *call,
                              const ProtobufCMessage *req,
                              void *data);
/* One inbound message of a CLIENT_STREAM/BIDI call, valid only during the
 * callback (its arena is reset afterwards; copy what you keep). raw/len is
 * the undecoded message; msg is NULL without a descriptor. */
typedef void (*grpc_message_cb)(struct grpc_call *call,
                                const ProtobufCMessage *msg,
                                const uint8_t *raw,
                                size_t len,
                                void *data);
/* The client finished sending (CLIENT_STREAM/BIDI). */
typedef void (*grpc_half_close_cb)(struct grpc_call *call, void *data);
/* The call is over before the handler finished it: the client cancelled or
 * disconnected (code KEEL_GRPC_CANCELED), the deadline passed
 * (KEEL_GRPC_DEADLINE_EXCEEDED) or the transport failed it (too large or
 * undecodable streamed message: RESOURCE_EXHAUSTED, INTERNAL). Runs at most
 * once, from its own loop turn (never inside a grpc_call_* function), and
 * only while the handler has not finished the call. The handler must still
 * finish it (e.g. grpc_call_finish(call, KEEL_ECANCELED)). */
typedef void (*grpc_cancel_cb)(struct grpc_call *call, int code, void *data);
/* The call's outbound queue drained (see grpc_call_buffered()); runs from
 * its own loop turn. */
typedef void (*grpc_drain_cb)(struct grpc_call *call, void *data);

struct grpc_method
{
    const char *path; /* "/package.Service/Method" */
    enum grpc_kind kind;
    /* Request type; NULL to receive raw bytes. */
    const ProtobufCMessageDescriptor *request;
    grpc_start_cb start;              /* required */
    grpc_message_cb on_message;       /* CLIENT_STREAM/BIDI */
    grpc_half_close_cb on_half_close; /* optional */
    grpc_cancel_cb on_cancel;         /* optional; grpc_call_on_cancel() too */
    void *data;                       /* passed to every callback */
};

/* Registry. */
struct grpc_server *grpc_server_new(void);
/* Every call must be finished by its handler before this. */
void grpc_server_free(struct grpc_server *srv);

/* Register m (copied, path included). Returns 0, KEEL_EEXISTS for a
 * duplicate path, KEEL_EINVAL for a path not of the form /service/method
 * or a missing callback, KEEL_ENOMEM. */
int grpc_server_register(struct grpc_server *srv, const struct grpc_method *m);

/* Called before every handler starts (an interceptor): a non-zero KEEL_E*
 * return fails the call with it instead. req is the unpacked request of a
 * unary call, NULL for streams. */
typedef int (*grpc_guard_cb)(void *data, const char *path, enum grpc_kind kind,
                             const ProtobufCMessage *req);
void grpc_server_set_guard(struct grpc_server *srv, grpc_guard_cb cb,
                           void *data);

/* Per-method counters, for /metrics: etcd exports go-grpc-prometheus'
 * grpc_server_started_total, grpc_server_handled_total{grpc_code},
 * grpc_server_msg_received_total and grpc_server_msg_sent_total with
 * labels grpc_service, grpc_method, grpc_type. Counted as the interceptor
 * counts them: started when the handler gets the call, handled when a
 * started call's status goes out (calls rejected before their handler ran,
 * e.g. undecodable or too large, are not counted). */
struct grpc_method_stats
{
    uint64_t started;
    uint64_t handled[17]; /* by gRPC status code, KEEL_GRPC_* */
    uint64_t msg_received;
    uint64_t msg_sent;
};

/* cb for every registered method: service ("etcdserverpb.KV"), method
 * ("Range"), type ("unary", "client_stream", "server_stream",
 * "bidi_stream"), counters. */
typedef void (*grpc_method_visit_cb)(const char *service,
                                     const char *method,
                                     const char *type,
                                     const struct grpc_method_stats *stats,
                                     void *data);
void grpc_server_visit_methods(const struct grpc_server *srv,
                               grpc_method_visit_cb cb,
                               void *data);

/* Message bytes (with their 5-byte prefix) received and sent on all calls:
 * etcd_network_client_grpc_received_bytes_total / _sent_bytes_total. */
uint64_t grpc_server_bytes_received(const struct grpc_server *srv);
uint64_t grpc_server_bytes_sent(const struct grpc_server *srv);

/* Calls started and currently live (started, not yet freed). */
uint64_t grpc_server_calls_started(const struct grpc_server *srv);
size_t grpc_server_calls_live(const struct grpc_server *srv);

/* Per-call arena: the unpacked request lives here; build the response here
 * too. Freed with the call. */
struct keel_arena *grpc_call_arena(struct grpc_call *call);

/* The method path of the call. */
const char *grpc_call_method(const struct grpc_call *call);

/* Request metadata: value of header name (lower case), NULL if absent.
 * E.g. "authorization" (etcd auth token), "hasleader" (clientv3
 * WithRequireLeader), "token". Valid until the call is finished. */
const char *grpc_call_header(const struct grpc_call *call, const char *name);

/* Common name of the client's TLS certificate, "" without one (etcd
 * --client-cert-auth uses it as the user name). Valid until finished. */
const char *grpc_call_peer_cn(const struct grpc_call *call);

/* The raw request bytes of a UNARY/SERVER_STREAM call (also with a
 * descriptor). */
void grpc_call_request_bytes(const struct grpc_call *call,
                             const uint8_t **p,
                             size_t *len);

/* Handler data attached to the call. */
void grpc_call_set_data(struct grpc_call *call, void *data);
void *grpc_call_data(const struct grpc_call *call);

/* Replace the method's cancel callback for this call. */
void grpc_call_on_cancel(struct grpc_call *call, grpc_cancel_cb cb, void *data);
/* Call cb whenever the call's outbound queue has been handed to HTTP/2
 * framing completely after a send had queued data (flow control permitting:
 * a client that does not read never drains). */
void grpc_call_on_drain(struct grpc_call *call, grpc_drain_cb cb, void *data);

/* Whether the client is still there and the call not cancelled. */
int grpc_call_alive(const struct grpc_call *call);

/* Remaining time before the deadline in ms, -1 without a deadline. */
int64_t grpc_call_deadline_ms(const struct grpc_call *call);

/* Send one message on a SERVER_STREAM/BIDI call (packed now: msg may be
 * freed after). Returns 0, KEEL_ECANCELED if the call is gone (or the
 * connection exceeded conn_limits.max_buffered and is being closed),
 * KEEL_ENOMEM. */
int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg);
/* Same with an already packed message. */
int grpc_call_send_bytes(struct grpc_call *call, const void *buf, size_t len);

/* Bytes this call has queued and not yet sent; a streaming handler stops
 * producing above its own budget and resumes from on_drain. */
size_t grpc_call_buffered(const struct grpc_call *call);

/* Unary: send msg and status OK; finishes the call. */
int grpc_call_reply(struct grpc_call *call, const ProtobufCMessage *msg);
/* Finish with rv: 0 → OK; a KEEL_E* code → its gRPC code and etcd message
 * (keel_err_grpc_code, keel_strerror); a negative errno → UNKNOWN with
 * strerror. */
int grpc_call_finish(struct grpc_call *call, int rv);
#define grpc_call_fail(call, rv) grpc_call_finish((call), (rv))
/* Finish with an explicit status code and message (message may be NULL). */
int grpc_call_fail_status(struct grpc_call *call,
                          int code,
                          const char *message);

/* ---- in-process calls (the JSON gateway) -------------------------------
 *
 * grpc_server_call_local() runs a registered method for a caller in the same
 * process, with no HTTP/2 stream: the handler sees an ordinary call (same
 * arena, metadata, deadline, stats and cancel rules) and everything it sends
 * goes to the caller's callbacks instead of the wire:
 *
 *   on_message  each response message, packed (unary: the one reply), run
 *               synchronously from inside grpc_call_send/reply, so possibly
 *               before grpc_server_call_local() or grpc_local_send()
 *               returns. buf is valid only during the callback.
 *   on_done     the final status, exactly once, always from its own loop
 *               turn (never inside a grpc_* function), unless the caller
 *               cancelled first. message is "" for none, valid only during
 *               the callback. After on_done the call is no longer the
 *               caller's: it must not be used again.
 *
 * The caller holds the call until on_done runs or it calls
 * grpc_local_cancel() (the client went away): the handler's cancel callback
 * then runs (KEEL_GRPC_CANCELED) and no caller callback runs any more.
 *
 * Flow control: grpc_call_buffered() asks the caller's buffered callback
 * (0 without one), and the handler's on_drain runs (from its own loop turn)
 * when the caller calls grpc_local_drained(). The peer certificate is not
 * available (grpc_call_peer_cn() is "").
 */
typedef void (*grpc_local_message_cb)(void *data,
                                      const uint8_t *buf,
                                      size_t len);
typedef void (*grpc_local_done_cb)(void *data, int code, const char *message);

struct grpc_local_opts
{
    uv_loop_t *loop; /* required: timers of the call run here */
    /* Request metadata as a gRPC client would send it (lower-case names;
     * "grpc-timeout" sets the deadline as on the wire). Copied. */
    const struct router_header *md;
    size_t n_md;
    /* Limits as the listener applies them (0: none): a unary request over
     * max_request_bytes fails INVALID_ARGUMENT "etcdserver: request is too
     * large", any message over max_recv_bytes RESOURCE_EXHAUSTED. */
    size_t max_request_bytes;
    size_t max_recv_bytes;
    grpc_local_message_cb on_message; /* required */
    grpc_local_done_cb on_done;       /* required */
    /* Bytes the caller still has queued towards its client (optional). */
    size_t (*buffered)(void *data);
    void *data; /* passed to the callbacks */
};

/* Start a local call of method path. UNARY/SERVER_STREAM: req/len is the
 * packed request (copied). CLIENT_STREAM/BIDI: req must be NULL/0; feed
 * messages with grpc_local_send() and end with grpc_local_half_close().
 * *out is set before the handler starts (the callbacks may already run).
 * An unknown method, undecodable request or a limit is reported like the
 * transport reports it, through on_done (UNIMPLEMENTED, INTERNAL, ...).
 * Returns 0, KEEL_EINVAL (missing loop/callback) or KEEL_ENOMEM; on error
 * no callback runs and *out is NULL. */
int grpc_server_call_local(struct grpc_server *srv,
                           const char *path,
                           const uint8_t *req,
                           size_t len,
                           const struct grpc_local_opts *opts,
                           struct grpc_call **out);

/* One more request message of a CLIENT_STREAM/BIDI local call (packed;
 * copied). The handler's on_message runs before this returns. Returns 0,
 * KEEL_ECANCELED when the call is already over (status sent or cancelled),
 * KEEL_EINVAL on a unary call. An undecodable or too large message ends
 * the call (on_done gets INTERNAL / RESOURCE_EXHAUSTED), as on the wire. */
int grpc_local_send(struct grpc_call *call, const uint8_t *msg, size_t len);

/* The caller has no more messages (CLIENT_STREAM/BIDI): the handler's
 * on_half_close runs (now). No-op for other kinds or a finished call. */
void grpc_local_half_close(struct grpc_call *call);

/* The caller's queue drained (after grpc_call_buffered() had reported
 * bytes): the handler's on_drain runs from its own loop turn. */
void grpc_local_drained(struct grpc_call *call);

/* The caller goes away: no caller callback runs after this, the handler
 * is told (cancel callback, from its own loop turn) and the call is freed
 * once the handler finished it. The caller must not use call again. */
void grpc_local_cancel(struct grpc_call *call);

/* Used by http2.c: a new HTTP/2 stream with content-type application/grpc.
 * See grpc.c. */
struct http2_stream;
struct router_header;
void grpc__stream_begin(struct grpc_server *srv,
                        struct http2_stream *st,
                        const struct router_header *headers,
                        size_t n);

#endif /* KEEL_GRPC_H */
