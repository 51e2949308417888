/*
 * gRPC calls over HTTP/2 streams: method lookup, message framing, limits,
 * deadlines, status trailers.
 *
 * Happy path (unary): http2.c dispatches a stream with content-type
 * application/grpc to grpc__stream_begin(): the method is looked up, the
 * metadata copied into the call's arena, the deadline armed. DATA bytes are
 * reassembled into the length-prefixed message (5-byte prefix: compressed
 * flag, 4-byte big-endian length), unpacked into the arena and handed to the
 * method's start(). The handler answers (now or later) with
 * grpc_call_reply(): response HEADERS (:status 200, content-type), one DATA
 * message, trailers grpc-status/grpc-message.
 *
 * Call states:
 *
 *   begin ──(unary: message)──▶ STARTED ──finish──▶ FINISHED ─┐
 *     │  (streams: at once) ───────▲         │                 ├─ freed when
 *     │                                      └─ cancel ──▶ ... │  both sides
 *     └─(transport error)──▶ status sent (never started) ──────┘  are done
 *
 * A call is shared by the transport (its HTTP/2 stream, until closed) and
 * the handler (from start until it finishes the call); it is freed when
 * both let go, so a handler answering after the client disconnected writes
 * nothing and frees the call, and a stream closed under a handler only
 * detaches. Cancel callbacks run at most once and never while the handler
 * is inside a grpc_call_* function on the same call (in_api defers them).
 *
 * Errors sent like grpc-go (google.golang.org/grpc server.go, rpc_util.go):
 *   unknown method/service   UNIMPLEMENTED "unknown service X" / "unknown
 *                            method M for service X"
 *   compressed, no codec     UNIMPLEMENTED "grpc: Decompressor is not
 *                            installed for grpc-encoding \"gzip\""
 *   flag with identity       INTERNAL "grpc: compressed flag set with
 *                            identity or empty encoding"
 *   over receive limit       RESOURCE_EXHAUSTED "grpc: received message
 *                            larger than max (N vs. M)"
 *   bad protobuf             INTERNAL "grpc: error unmarshalling request: …"
 * and etcd's: a unary request over --max-request-bytes gets
 * INVALID_ARGUMENT "etcdserver: request is too large" (etcd rejects it
 * when proposing, v3_server.go processInternalRaftRequestOnce).
 */
#include "grpc.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "http2.h"
#include "router.h"

struct method_entry
{
    struct method_entry *next;
    struct grpc_method m; /* m.path points to path[] */
    size_t service_len;   /* "/pkg.Service" */
    struct grpc_method_stats stats;
    char path[];
};

struct grpc_server
{
    struct method_entry *methods;
    uint64_t calls_started;
    size_t calls_live;
    uint64_t bytes_received;
    uint64_t bytes_sent;
    grpc_guard_cb guard; /* may refuse a call before its handler starts */
    void *guard_data;
};

struct grpc_call
{
    struct grpc_server *srv;
    const struct grpc_method *m; /* NULL: rejected at begin */
    struct method_entry *entry;  /* m's registry entry (stats) */
    int counted;                 /* started counted: count handled too */
    int handled_counted;
    struct http2_stream *st; /* NULL once the stream closed */
    struct keel_arena arena;
    struct keel_arena msg_arena;
    const char *path;
    const char *peer_cn;
    struct router_header *hdrs;
    size_t n_hdrs;
    /* Inbound framing. */
    uint8_t prefix[5];
    size_t prefix_len;
    uint32_t msg_len;
    uint8_t *msg;
    size_t msg_got;
    int msg_in_arena;
    int got_request; /* UNARY/SERVER_STREAM: the one message arrived */
    const uint8_t *req_raw;
    size_t req_raw_len;
    /* Outbound. */
    int responded;   /* response HEADERS submitted */
    int status_sent; /* trailers (or trailers-only) submitted */
    /* Ownership and cancellation. */
    int app_holds;   /* handler has the call (start .. finish) */
    int cancelled;   /* sends are no-ops */
    int cancel_code; /* pending or delivered cancel reason */
    int cancel_pending;
    int in_api;
    grpc_cancel_cb cancel_cb;
    void *cancel_data;
    grpc_drain_cb drain_cb;
    void *drain_data;
    void *data;
    uv_loop_t *loop;
    uv_timer_t *deadline;
    uint64_t deadline_at; /* uv_now() ms, 0 = none */
    uv_timer_t *async;    /* runs pending cancel/drain/done callbacks */
    int drain_pending;
    /* In-process call (grpc_server_call_local): no stream; the caller holds
     * the call (local_open) until on_done is delivered or it cancels. */
    int local;
    int local_open;
    size_t max_request_bytes;
    size_t max_recv_bytes;
    grpc_local_message_cb local_msg;
    grpc_local_done_cb local_done;
    size_t (*local_buffered)(void *data);
    void *local_data;
    int done_pending;
    int done_code;
    const char *done_msg; /* in arena */
};

/* ---- registry --------------------------------------------------------- */

struct grpc_server *grpc_server_new(void)
{
    return calloc(1, sizeof(struct grpc_server));
}

void grpc_server_free(struct grpc_server *srv)
{
    struct method_entry *e, *next;
    if (srv == NULL) {
        return;
    }
    assert(srv->calls_live == 0);
    for (e = srv->methods; e != NULL; e = next) {
        next = e->next;
        free(e);
    }
    free(srv);
}

static const struct method_entry *lookup(const struct grpc_server *srv,
                                         const char *path)
{
    const struct method_entry *e;
    for (e = srv != NULL ? srv->methods : NULL; e != NULL; e = e->next) {
        if (strcmp(e->path, path) == 0) {
            return e;
        }
    }
    return NULL;
}

int grpc_server_register(struct grpc_server *srv, const struct grpc_method *m)
{
    struct method_entry *e;
    const char *slash;
    size_t len;

    if (m->path == NULL || m->path[0] != '/' || m->start == NULL) {
        return KEEL_EINVAL;
    }
    slash = strchr(m->path + 1, '/');
    if (slash == NULL || slash == m->path + 1 || slash[1] == '\0' ||
        strchr(slash + 1, '/') != NULL) {
        return KEEL_EINVAL;
    }
    if ((m->kind == GRPC_CLIENT_STREAM || m->kind == GRPC_BIDI) &&
        m->on_message == NULL) {
        return KEEL_EINVAL;
    }
    if (lookup(srv, m->path) != NULL) {
        return KEEL_EEXISTS;
    }
    len = strlen(m->path);
    e = calloc(1, sizeof *e + len + 1); /* stats start at zero */
    if (e == NULL) {
        return KEEL_ENOMEM;
    }
    memcpy(e->path, m->path, len + 1);
    e->m = *m;
    e->m.path = e->path;
    e->service_len = (size_t)(slash - m->path);
    e->next = srv->methods;
    srv->methods = e;
    return 0;
}

void grpc_server_visit_methods(const struct grpc_server *srv,
                               grpc_method_visit_cb cb,
                               void *data)
{
    static const char *types[] = {"unary", "client_stream", "server_stream",
                                  "bidi_stream"};
    for (const struct method_entry *e = srv->methods; e != NULL; e = e->next) {
        char service[256];
        size_t n = e->service_len - 1;
        if (n >= sizeof service) {
            n = sizeof service - 1;
        }
        memcpy(service, e->path + 1, n);
        service[n] = '\0';
        cb(service, e->path + e->service_len + 1, types[e->m.kind], &e->stats,
           data);
    }
}

uint64_t grpc_server_bytes_received(const struct grpc_server *srv)
{
    return srv->bytes_received;
}

uint64_t grpc_server_bytes_sent(const struct grpc_server *srv)
{
    return srv->bytes_sent;
}

uint64_t grpc_server_calls_started(const struct grpc_server *srv)
{
    return srv->calls_started;
}

size_t grpc_server_calls_live(const struct grpc_server *srv)
{
    return srv->calls_live;
}

/* ---- call accessors --------------------------------------------------- */

struct keel_arena *grpc_call_arena(struct grpc_call *call)
{
    return &call->arena;
}

const char *grpc_call_method(const struct grpc_call *call)
{
    return call->path;
}

const char *grpc_call_header(const struct grpc_call *call, const char *name)
{
    for (size_t i = 0; i < call->n_hdrs; i++) {
        if (strcmp(call->hdrs[i].name, name) == 0) {
            return call->hdrs[i].value;
        }
    }
    return NULL;
}

const char *grpc_call_peer_cn(const struct grpc_call *call)
{
    return call->peer_cn != NULL ? call->peer_cn : "";
}

void grpc_call_request_bytes(const struct grpc_call *call,
                             const uint8_t **p,
                             size_t *len)
{
    *p = call->req_raw;
    *len = call->req_raw_len;
}

void grpc_call_set_data(struct grpc_call *call, void *data)
{
    call->data = data;
}

void *grpc_call_data(const struct grpc_call *call)
{
    return call->data;
}

void grpc_call_on_cancel(struct grpc_call *call, grpc_cancel_cb cb, void *data)
{
    call->cancel_cb = cb;
    call->cancel_data = data;
}

void grpc_call_on_drain(struct grpc_call *call, grpc_drain_cb cb, void *data)
{
    call->drain_cb = cb;
    call->drain_data = data;
}

/* The transport side (HTTP/2 stream or local caller) still holds the call. */
static int transport_holds(const struct grpc_call *call)
{
    return call->st != NULL || call->local_open;
}

int grpc_call_alive(const struct grpc_call *call)
{
    return transport_holds(call) && !call->cancelled;
}

size_t grpc_call_buffered(const struct grpc_call *call)
{
    if (call->local) {
        return call->local_open && call->local_buffered != NULL
                   ? call->local_buffered(call->local_data)
                   : 0;
    }
    return call->st != NULL ? http2__stream_buffered(call->st) : 0;
}

int64_t grpc_call_deadline_ms(const struct grpc_call *call)
{
    uint64_t now;
    if (call->deadline_at == 0 || call->deadline == NULL) {
        return -1;
    }
    now = uv_now(call->deadline->loop);
    return now >= call->deadline_at ? 0 : (int64_t)(call->deadline_at - now);
}

/* ---- lifetime --------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void stop_deadline(struct grpc_call *call)
{
    if (call->deadline != NULL) {
        uv_close((uv_handle_t *)call->deadline, on_timer_closed);
        call->deadline = NULL;
    }
}

static void maybe_free(struct grpc_call *call)
{
    if (call->app_holds || transport_holds(call) || call->in_api > 0) {
        return;
    }
    stop_deadline(call);
    if (call->async != NULL) {
        uv_close((uv_handle_t *)call->async, on_timer_closed);
        call->async = NULL;
    }
    if (!call->msg_in_arena) {
        free(call->msg);
    }
    keel_arena_free(&call->msg_arena);
    keel_arena_free(&call->arena);
    if (call->srv != NULL) {
        call->srv->calls_live--;
    }
    free(call);
}

static void on_async(uv_timer_t *t);

/* Handler notifications (cancel, drain) always run from their own loop
 * turn: they can be triggered deep inside a grpc_call_* function (a send
 * flushes, the flush finds the stream reset) and a handler's cancel
 * callback typically frees the handler's state. */
static void schedule(struct grpc_call *call)
{
    if (call->async == NULL) {
        call->async = malloc(sizeof *call->async);
        if (call->async == NULL) {
            return; /* delivered by the next schedule() or never needed */
        }
        uv_timer_init(call->loop, call->async);
        call->async->data = call;
    }
    uv_timer_start(call->async, on_async, 0, 0);
}

static void cancel(struct grpc_call *call, int code)
{
    if (call->cancelled) {
        return;
    }
    call->cancelled = 1;
    call->cancel_code = code;
    if (call->app_holds) {
        call->cancel_pending = 1;
        schedule(call);
    }
}

static void api_enter(struct grpc_call *call)
{
    call->in_api++;
}

static void api_leave(struct grpc_call *call)
{
    assert(call->in_api > 0);
    call->in_api--;
    if (call->in_api == 0) {
        maybe_free(call);
    }
}

static void on_async(uv_timer_t *t)
{
    struct grpc_call *call = t->data;
    api_enter(call);
    if (call->cancel_pending && call->app_holds) {
        call->cancel_pending = 0;
        if (call->cancel_cb != NULL) {
            call->cancel_cb(call, call->cancel_code, call->cancel_data);
        }
    }
    if (call->drain_pending && call->app_holds && !call->cancelled &&
        call->drain_cb != NULL) {
        call->drain_pending = 0;
        call->drain_cb(call, call->drain_data);
    }
    if (call->done_pending && call->local_open) {
        /* The status of a local call: the caller lets go of it here. */
        call->done_pending = 0;
        call->local_open = 0;
        stop_deadline(call);
        call->local_done(call->local_data, call->done_code,
                         call->done_msg != NULL ? call->done_msg : "");
    }
    api_leave(call);
}

/* ---- outbound --------------------------------------------------------- */

/* grpc-message is percent-encoded (gRPC HTTP/2 protocol spec). */
static void percent_encode(const char *in, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p != '\0'; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            if (k + 1 >= size) {
                break;
            }
            out[k++] = (char)*p;
        } else {
            if (k + 3 >= size) {
                break;
            }
            out[k++] = '%';
            out[k++] = hex[*p >> 4];
            out[k++] = hex[*p & 15];
        }
    }
    out[k] = '\0';
}

static int ensure_headers(struct grpc_call *call)
{
    static const struct router_header h[] = {
        {":status", "200"},
        {"content-type", "application/grpc"},
    };
    int rv;
    if (call->responded) {
        return 0;
    }
    rv = http2__stream_respond(call->st, h, 2, 0);
    if (rv == 0) {
        call->responded = 1;
    }
    return rv;
}

static void count_handled(struct grpc_call *call, int code)
{
    if (call->counted && !call->handled_counted && code >= 0 && code <= 16) {
        call->handled_counted = 1;
        call->entry->stats.handled[code]++;
    }
}

/* Put the status on the wire (once). */
static void send_status(struct grpc_call *call, int code, const char *msg)
{
    char cbuf[12];
    char mbuf[1024];
    struct router_header h[4];
    size_t n = 0;

    if (call->local) {
        if (!call->local_open || call->status_sent) {
            return;
        }
        call->status_sent = 1;
        count_handled(call, code);
        call->done_code = code;
        call->done_msg = msg != NULL
                             ? keel_arena_dup(&call->arena, msg, strlen(msg) + 1)
                             : NULL;
        call->done_pending = 1;
        schedule(call); /* the timer exists from the call's creation */
        return;
    }
    if (call->st == NULL || call->status_sent) {
        return;
    }
    call->status_sent = 1;
    count_handled(call, code);
    snprintf(cbuf, sizeof cbuf, "%d", code);
    if (!call->responded) {
        /* Trailers-only response: one HEADERS frame with END_STREAM. */
        h[n++] = (struct router_header){":status", "200"};
        h[n++] = (struct router_header){"content-type", "application/grpc"};
    }
    h[n++] = (struct router_header){"grpc-status", cbuf};
    if (msg != NULL && msg[0] != '\0') {
        percent_encode(msg, mbuf, sizeof mbuf);
        h[n++] = (struct router_header){"grpc-message", mbuf};
    }
    if (!call->responded) {
        call->responded = 1;
        if (http2__stream_respond(call->st, h, n, 1) != 0) {
            http2__stream_reset(call->st, 2 /* INTERNAL_ERROR */);
        }
    } else if (http2__stream_end(call->st, h, n) != 0) {
        http2__stream_reset(call->st, 2 /* INTERNAL_ERROR */);
    }
}

/* The transport ends the call with an error (limits, bad input, deadline):
 * status to the client, cancel to the handler if it has the call. */
static void fail_call(struct grpc_call *call, int code, const char *msg)
{
    api_enter(call);
    send_status(call, code, msg);
    cancel(call, code);
    api_leave(call);
}

static void count_sent(struct grpc_call *call, size_t len)
{
    if (call->entry != NULL) {
        call->entry->stats.msg_sent++;
    }
    if (call->srv != NULL) {
        call->srv->bytes_sent += len + 5;
    }
}

/* A message of a local call goes straight to the caller. */
static void local_emit(struct grpc_call *call, const void *buf, size_t len)
{
    call->local_msg(call->local_data, buf, len);
    count_sent(call, len);
}

int grpc_call_send_bytes(struct grpc_call *call, const void *buf, size_t len)
{
    uint8_t *p;
    int rv;

    if (!grpc_call_alive(call) || call->status_sent) {
        return KEEL_ECANCELED;
    }
    api_enter(call);
    if (call->local) {
        local_emit(call, len > 0 ? buf : "", len);
        api_leave(call);
        return 0;
    }
    rv = ensure_headers(call);
    if (rv == 0) {
        p = http2__stream_reserve(call->st, 5 + len);
        if (p == NULL) {
            rv = KEEL_ECANCELED;
        } else {
            p[0] = 0;
            p[1] = (uint8_t)(len >> 24);
            p[2] = (uint8_t)(len >> 16);
            p[3] = (uint8_t)(len >> 8);
            p[4] = (uint8_t)len;
            memcpy(p + 5, buf, len);
            http2__stream_commit(call->st);
            count_sent(call, len);
        }
    }
    api_leave(call);
    return rv;
}

int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg)
{
    size_t len;
    uint8_t *p;
    int rv;

    if (!grpc_call_alive(call) || call->status_sent) {
        return KEEL_ECANCELED;
    }
    api_enter(call);
    len = protobuf_c_message_get_packed_size(msg);
    if (call->local) {
        p = malloc(len > 0 ? len : 1);
        if (p == NULL) {
            rv = KEEL_ENOMEM;
        } else {
            protobuf_c_message_pack(msg, p);
            local_emit(call, p, len);
            free(p);
            rv = 0;
        }
        api_leave(call);
        return rv;
    }
    rv = ensure_headers(call);
    if (rv == 0) {
        p = http2__stream_reserve(call->st, 5 + len);
        if (p == NULL) {
            rv = KEEL_ECANCELED;
        } else {
            p[0] = 0;
            p[1] = (uint8_t)(len >> 24);
            p[2] = (uint8_t)(len >> 16);
            p[3] = (uint8_t)(len >> 8);
            p[4] = (uint8_t)len;
            protobuf_c_message_pack(msg, p + 5);
            http2__stream_commit(call->st);
            count_sent(call, len);
        }
    }
    api_leave(call);
    return rv;
}

static int finish(struct grpc_call *call, int code, const char *msg)
{
    int rv = grpc_call_alive(call) ? 0 : KEEL_ECANCELED;
    assert(call->app_holds);
    api_enter(call);
    send_status(call, code, msg);
    /* The client was gone: count what the handler answered, as the
     * interceptor counts the handler's return value. */
    count_handled(call, code);
    call->app_holds = 0;
    call->cancel_pending = 0;
    api_leave(call);
    return rv;
}

int grpc_call_fail_status(struct grpc_call *call, int code, const char *message)
{
    return finish(call, code, message);
}

int grpc_call_finish(struct grpc_call *call, int rv)
{
    if (rv == 0) {
        return finish(call, KEEL_GRPC_OK, NULL);
    }
    if (rv <= KEEL_ERR_BASE) {
        return finish(call, (int)keel_err_grpc_code(rv), keel_strerror(rv));
    }
    return finish(call, KEEL_GRPC_UNKNOWN, keel_strerror(rv));
}

int grpc_call_reply(struct grpc_call *call, const ProtobufCMessage *msg)
{
    int rv;
    api_enter(call);
    rv = grpc_call_send(call, msg);
    if (rv == 0 || rv == KEEL_ECANCELED) {
        /* Sent, or nobody to send to: the handler succeeded either way
         * (and is counted as OK, as grpc-go's interceptor would). */
        (void)finish(call, KEEL_GRPC_OK, NULL);
    } else {
        (void)finish(call, KEEL_GRPC_INTERNAL, keel_strerror(rv));
    }
    api_leave(call);
    return rv;
}

/* ---- inbound ---------------------------------------------------------- */

static void start_handler(struct grpc_call *call, const ProtobufCMessage *req)
{
    call->app_holds = 1;
    call->counted = 1;
    call->entry->stats.started++;
    if (call->cancel_cb == NULL) {
        call->cancel_cb = call->m->on_cancel;
        call->cancel_data = call->m->data;
    }
    api_enter(call);
    int rv = call->srv->guard == NULL
                 ? 0
                 : call->srv->guard(call->srv->guard_data, call->m->path,
                                    call->m->kind, req);
    if (rv != 0) {
        grpc_call_fail(call, rv);
    } else {
        call->m->start(call, req, call->m->data);
    }
    api_leave(call);
}

void grpc_server_set_guard(struct grpc_server *srv, grpc_guard_cb cb,
                           void *data)
{
    srv->guard = cb;
    srv->guard_data = data;
}

/* A whole message arrived in call->msg. */
static void deliver_message(struct grpc_call *call)
{
    const struct grpc_method *m = call->m;
    const ProtobufCMessage *msg = NULL;
    char err[128];
    int streamed = m->kind == GRPC_CLIENT_STREAM || m->kind == GRPC_BIDI;
    struct keel_arena *a = streamed ? &call->msg_arena : &call->arena;

    if (!streamed && call->got_request) {
        return; /* grpc-go reads one request message and ignores the rest */
    }
    if (m->request != NULL) {
        msg = protobuf_c_message_unpack(
            m->request, &a->pb, call->msg_len,
            call->msg != NULL ? call->msg : (uint8_t *)"");
        if (msg == NULL) {
            snprintf(err, sizeof err,
                     "grpc: error unmarshalling request: proto: cannot parse "
                     "invalid wire-format data for %s",
                     m->request->name);
            fail_call(call, KEEL_GRPC_INTERNAL, err);
            return;
        }
    }
    call->entry->stats.msg_received++;
    call->srv->bytes_received += call->msg_len + 5;
    if (!streamed) {
        call->got_request = 1;
        call->req_raw = call->msg;
        call->req_raw_len = call->msg_len;
        start_handler(call, msg);
        return;
    }
    api_enter(call);
    m->on_message(call, msg, call->msg, call->msg_len, m->data);
    api_leave(call);
}

static void begin_message(struct grpc_call *call)
{
    const struct conn_limits *lim = conn_limits(http2__stream_conn(call->st));
    const struct grpc_method *m = call->m;
    int streamed = m->kind == GRPC_CLIENT_STREAM || m->kind == GRPC_BIDI;
    uint8_t flag = call->prefix[0];
    uint32_t len = (uint32_t)call->prefix[1] << 24 |
                   (uint32_t)call->prefix[2] << 16 |
                   (uint32_t)call->prefix[3] << 8 | call->prefix[4];
    char err[160];

    call->msg_len = len;
    call->msg_got = 0;
    if (flag == 1) {
        /* Only identity is accepted (other encodings were refused at
         * begin), so a compressed message is a client bug. */
        fail_call(call, KEEL_GRPC_INTERNAL,
                  "grpc: compressed flag set with identity or empty "
                  "encoding");
        return;
    }
    if (flag != 0) {
        snprintf(err, sizeof err, "grpc: received unexpected payload format %u",
                 flag);
        fail_call(call, KEEL_GRPC_INTERNAL, err);
        return;
    }
    if (len > lim->max_recv_bytes) {
        snprintf(err, sizeof err,
                 "grpc: received message larger than max (%" PRIu32 " vs. %zu)",
                 len, lim->max_recv_bytes);
        fail_call(call, KEEL_GRPC_RESOURCE_EXHAUSTED, err);
        return;
    }
    if (!streamed && len > lim->max_request_bytes) {
        fail_call(call, KEEL_GRPC_INVALID_ARGUMENT,
                  keel_strerror(KEEL_EREQUESTTOOLARGE));
        return;
    }
    if (!call->msg_in_arena) {
        free(call->msg);
    }
    call->msg = NULL;
    call->msg_in_arena = 0;
    if (len == 0) {
        return;
    }
    if (!streamed && !call->got_request) {
        /* The request stays with the call: keep it in the arena. */
        call->msg = keel_arena_alloc(&call->arena, len);
        call->msg_in_arena = 1;
    } else {
        call->msg = malloc(len);
    }
    if (call->msg == NULL) {
        fail_call(call, KEEL_GRPC_RESOURCE_EXHAUSTED,
                  keel_strerror(KEEL_ENOMEM));
    }
}

static void on_data(void *u, const uint8_t *p, size_t n)
{
    struct grpc_call *call = u;
    struct http2_stream *st = call->st;

    api_enter(call);
    while (n > 0 && !call->status_sent && !call->cancelled) {
        if (call->prefix_len < 5) {
            size_t take = 5 - call->prefix_len;
            if (take > n) {
                take = n;
            }
            memcpy(call->prefix + call->prefix_len, p, take);
            call->prefix_len += take;
            p += take;
            n -= take;
            if (call->prefix_len < 5) {
                break;
            }
            begin_message(call);
            if (call->status_sent || call->cancelled) {
                break;
            }
        } else {
            size_t take = call->msg_len - call->msg_got;
            if (take > n) {
                take = n;
            }
            memcpy(call->msg + call->msg_got, p, take);
            call->msg_got += take;
            p += take;
            n -= take;
        }
        if (call->msg_got == call->msg_len) {
            call->prefix_len = 0;
            deliver_message(call);
            if (call->m->kind == GRPC_CLIENT_STREAM ||
                call->m->kind == GRPC_BIDI) {
                keel_arena_reset(&call->msg_arena);
            }
        }
    }
    /* Flow control: bytes of a message still being assembled stay
     * charged to the client's windows; everything else is released. */
    if (st != NULL && call->st == st &&
        (call->prefix_len == 0 || call->status_sent || call->cancelled)) {
        http2__stream_consume(st, http2__stream_held(st));
    }
    api_leave(call);
}

static void on_end(void *u)
{
    struct grpc_call *call = u;
    const struct grpc_method *m = call->m;

    if (call->status_sent || call->cancelled || m == NULL) {
        return;
    }
    if (call->prefix_len > 0) {
        fail_call(call, KEEL_GRPC_INTERNAL,
                  "grpc: error unmarshalling request: unexpected EOF");
        return;
    }
    if (m->kind == GRPC_UNARY || m->kind == GRPC_SERVER_STREAM) {
        if (!call->got_request) {
            fail_call(call, KEEL_GRPC_INTERNAL,
                      "grpc: error unmarshalling request: EOF");
        }
        return;
    }
    if (m->on_half_close != NULL) {
        api_enter(call);
        m->on_half_close(call, m->data);
        api_leave(call);
    }
}

static void on_drained(void *u)
{
    struct grpc_call *call = u;
    if (call->drain_cb != NULL && call->app_holds && !call->cancelled) {
        call->drain_pending = 1;
        schedule(call);
    }
}

static void on_closed(void *u, uint32_t error_code)
{
    struct grpc_call *call = u;
    (void)error_code;
    call->st = NULL;
    stop_deadline(call);
    api_enter(call);
    cancel(call, KEEL_GRPC_CANCELED);
    api_leave(call);
}

static const struct http2_stream_handler grpc_stream_handler = {
    on_data,
    on_end,
    on_drained,
    on_closed,
};

static void on_deadline(uv_timer_t *t)
{
    struct grpc_call *call = t->data;
    /* etcd handlers return ctx.Err() → "context deadline exceeded". */
    fail_call(call, KEEL_GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
}

/* grpc-timeout: 1..8 digits and a unit (H M S m u n). Returns ms (rounded
 * up, at least 1) or -1 if malformed. */
static int64_t parse_timeout(const char *v)
{
    size_t len = strlen(v);
    uint64_t n = 0;
    if (len < 2 || len > 9) {
        return -1;
    }
    for (size_t i = 0; i + 1 < len; i++) {
        if (!isdigit((unsigned char)v[i])) {
            return -1;
        }
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[len - 1]) {
        case 'H':
            return (int64_t)(n * 3600000u);
        case 'M':
            return (int64_t)(n * 60000u);
        case 'S':
            return (int64_t)(n * 1000u);
        case 'm':
            return (int64_t)n;
        case 'u':
            return (int64_t)((n + 999u) / 1000u);
        case 'n':
            return (int64_t)((n + 999999u) / 1000000u);
        default:
            return -1;
    }
}

/* The call's deadline from a grpc-timeout value. Returns 0, KEEL_ENOMEM, or
 * KEEL_EINVAL with grpc-go's "malformed time-out: ..." (an Internal error)
 * in err. */
static int arm_deadline(struct grpc_call *call,
                        const char *timeout,
                        char *err,
                        size_t errlen)
{
    int64_t ms = parse_timeout(timeout);
    if (ms < 0) {
        snprintf(err, errlen, "malformed time-out: %.100s", timeout);
        return KEEL_EINVAL;
    }
    call->deadline = malloc(sizeof *call->deadline);
    if (call->deadline == NULL) {
        return KEEL_ENOMEM;
    }
    uv_timer_init(call->loop, call->deadline);
    call->deadline->data = call;
    call->deadline_at = uv_now(call->loop) + (uint64_t)ms;
    uv_timer_start(call->deadline, on_deadline, (uint64_t)ms, 0);
    return 0;
}

/* grpc-go's "unknown service" / "unknown method" / "malformed" text. */
static void unknown_method(const struct grpc_server *srv,
                           const char *path,
                           char *buf,
                           size_t size)
{
    const char *slash = path[0] == '/' ? strrchr(path, '/') : NULL;
    const struct method_entry *e;
    size_t slen;

    if (slash == NULL || slash == path) {
        snprintf(buf, size, "malformed method name: \"%s\"", path);
        return;
    }
    slen = (size_t)(slash - path);
    for (e = srv != NULL ? srv->methods : NULL; e != NULL; e = e->next) {
        if (e->service_len == slen && strncmp(e->path, path, slen) == 0) {
            snprintf(buf, size, "unknown method %s for service %.*s", slash + 1,
                     (int)slen - 1, path + 1);
            return;
        }
    }
    snprintf(buf, size, "unknown service %.*s", (int)slen - 1, path + 1);
}

void grpc__stream_begin(struct grpc_server *srv,
                        struct http2_stream *st,
                        const struct router_header *headers,
                        size_t n)
{
    struct grpc_call *call = calloc(1, sizeof *call);
    const struct method_entry *e;
    const char *path = "";
    const char *enc = NULL;
    const char *timeout = NULL;
    size_t k = 0;
    char err[300];

    if (call == NULL) {
        http2__stream_reset(st, 2 /* INTERNAL_ERROR */);
        return;
    }
    /* Counted even when srv is NULL (no gRPC service at all): the call
     * must still answer UNIMPLEMENTED. */
    call->srv = srv;
    call->st = st;
    call->loop = conn_loop(http2__stream_conn(st));
    keel_arena_init(&call->arena, 0);
    keel_arena_init(&call->msg_arena, 0);
    if (srv != NULL) {
        srv->calls_started++;
        srv->calls_live++;
    }
    http2__stream_set_handler(st, &grpc_stream_handler, call);

    call->hdrs = keel_arena_alloc(&call->arena, (n + 1) * sizeof *call->hdrs);
    if (call->hdrs == NULL) {
        goto nomem;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = headers[i].name;
        const char *value = headers[i].value;
        if (strcmp(name, ":path") == 0) {
            path = value;
        } else if (strcmp(name, "grpc-encoding") == 0) {
            enc = value;
        } else if (strcmp(name, "grpc-timeout") == 0) {
            timeout = value;
        }
        if (name[0] == ':') {
            continue;
        }
        call->hdrs[k].name =
            keel_arena_dup(&call->arena, name, strlen(name) + 1);
        call->hdrs[k].value =
            keel_arena_dup(&call->arena, value, strlen(value) + 1);
        if (call->hdrs[k].name == NULL || call->hdrs[k].value == NULL) {
            goto nomem;
        }
        k++;
    }
    call->n_hdrs = k;
    call->path = keel_arena_dup(&call->arena, path, strlen(path) + 1);
    {
        const char *cn = conn_peer_cn(http2__stream_conn(st));
        call->peer_cn = keel_arena_dup(&call->arena, cn, strlen(cn) + 1);
    }
    if (call->path == NULL || call->peer_cn == NULL) {
        goto nomem;
    }

    e = lookup(srv, path);
    if (e == NULL) {
        unknown_method(srv, path, err, sizeof err);
        fail_call(call, KEEL_GRPC_UNIMPLEMENTED, err);
        return;
    }
    call->m = &e->m;
    call->entry = (struct method_entry *)e;
    if (enc != NULL && strcmp(enc, "identity") != 0) {
        snprintf(err, sizeof err,
                 "grpc: Decompressor is not installed for grpc-encoding "
                 "\"%.200s\"",
                 enc);
        fail_call(call, KEEL_GRPC_UNIMPLEMENTED, err);
        return;
    }
    if (timeout != NULL) {
        int rv = arm_deadline(call, timeout, err, sizeof err);
        if (rv == KEEL_ENOMEM) {
            goto nomem;
        }
        if (rv != 0) {
            fail_call(call, KEEL_GRPC_INTERNAL, err);
            return;
        }
    }
    if (e->m.kind == GRPC_CLIENT_STREAM || e->m.kind == GRPC_BIDI) {
        start_handler(call, NULL);
    }
    return;
nomem:
    fail_call(call, KEEL_GRPC_RESOURCE_EXHAUSTED, keel_strerror(KEEL_ENOMEM));
}

/* ---- in-process calls ------------------------------------------------- */

static int streamed_kind(const struct grpc_method *m)
{
    return m->kind == GRPC_CLIENT_STREAM || m->kind == GRPC_BIDI;
}

int grpc_server_call_local(struct grpc_server *srv,
                           const char *path,
                           const uint8_t *req,
                           size_t len,
                           const struct grpc_local_opts *opts,
                           struct grpc_call **out)
{
    struct grpc_call *call;
    const struct method_entry *e;
    const char *timeout = NULL;
    char err[300];
    size_t k = 0;

    *out = NULL;
    if (srv == NULL || path == NULL || opts == NULL || opts->loop == NULL ||
        opts->on_message == NULL || opts->on_done == NULL) {
        return KEEL_EINVAL;
    }
    call = calloc(1, sizeof *call);
    if (call == NULL) {
        return KEEL_ENOMEM;
    }
    call->async = malloc(sizeof *call->async);
    if (call->async == NULL) {
        free(call);
        return KEEL_ENOMEM;
    }
    call->srv = srv;
    call->loop = opts->loop;
    call->local = 1;
    call->local_open = 1;
    call->max_request_bytes = opts->max_request_bytes;
    call->max_recv_bytes = opts->max_recv_bytes;
    call->local_msg = opts->on_message;
    call->local_done = opts->on_done;
    call->local_buffered = opts->buffered;
    call->local_data = opts->data;
    uv_timer_init(call->loop, call->async);
    call->async->data = call;
    keel_arena_init(&call->arena, 0);
    keel_arena_init(&call->msg_arena, 0);
    srv->calls_started++;
    srv->calls_live++;

    call->hdrs =
        keel_arena_alloc(&call->arena, (opts->n_md + 1) * sizeof *call->hdrs);
    call->path = keel_arena_dup(&call->arena, path, strlen(path) + 1);
    call->peer_cn = "";
    if (call->hdrs == NULL || call->path == NULL) {
        goto nomem;
    }
    for (size_t i = 0; i < opts->n_md; i++) {
        const char *name = opts->md[i].name;
        const char *value = opts->md[i].value;
        if (strcmp(name, "grpc-timeout") == 0) {
            timeout = value;
        }
        call->hdrs[k].name =
            keel_arena_dup(&call->arena, name, strlen(name) + 1);
        call->hdrs[k].value =
            keel_arena_dup(&call->arena, value, strlen(value) + 1);
        if (call->hdrs[k].name == NULL || call->hdrs[k].value == NULL) {
            goto nomem;
        }
        k++;
    }
    call->n_hdrs = k;

    *out = call;
    api_enter(call);
    e = lookup(srv, path);
    if (e == NULL) {
        unknown_method(srv, path, err, sizeof err);
        fail_call(call, KEEL_GRPC_UNIMPLEMENTED, err);
        goto out;
    }
    call->m = &e->m;
    call->entry = (struct method_entry *)e;
    if (timeout != NULL) {
        int rv = arm_deadline(call, timeout, err, sizeof err);
        if (rv != 0) {
            fail_call(call,
                      rv == KEEL_ENOMEM ? KEEL_GRPC_RESOURCE_EXHAUSTED
                                        : KEEL_GRPC_INTERNAL,
                      rv == KEEL_ENOMEM ? keel_strerror(rv) : err);
            goto out;
        }
    }
    if (streamed_kind(call->m)) {
        start_handler(call, NULL);
        goto out;
    }
    if (call->max_recv_bytes > 0 && len > call->max_recv_bytes) {
        snprintf(err, sizeof err,
                 "grpc: received message larger than max (%zu vs. %zu)", len,
                 call->max_recv_bytes);
        fail_call(call, KEEL_GRPC_RESOURCE_EXHAUSTED, err);
        goto out;
    }
    if (call->max_request_bytes > 0 && len > call->max_request_bytes) {
        fail_call(call, KEEL_GRPC_INVALID_ARGUMENT,
                  keel_strerror(KEEL_EREQUESTTOOLARGE));
        goto out;
    }
    /* The request stays with the call (grpc_call_request_bytes). */
    call->msg = len > 0 ? keel_arena_dup(&call->arena, req, len) : NULL;
    call->msg_in_arena = 1;
    call->msg_len = (uint32_t)len;
    if (len > 0 && call->msg == NULL) {
        fail_call(call, KEEL_GRPC_RESOURCE_EXHAUSTED,
                  keel_strerror(KEEL_ENOMEM));
        goto out;
    }
    deliver_message(call);
out:
    api_leave(call);
    return 0;
nomem:
    call->local_open = 0;
    maybe_free(call);
    return KEEL_ENOMEM;
}

int grpc_local_send(struct grpc_call *call, const uint8_t *msg, size_t len)
{
    char err[160];

    assert(call->local && call->local_open);
    if (call->status_sent || call->cancelled || call->m == NULL) {
        return KEEL_ECANCELED;
    }
    if (!streamed_kind(call->m)) {
        return KEEL_EINVAL;
    }
    api_enter(call);
    if (call->max_recv_bytes > 0 && len > call->max_recv_bytes) {
        snprintf(err, sizeof err,
                 "grpc: received message larger than max (%zu vs. %zu)", len,
                 call->max_recv_bytes);
        fail_call(call, KEEL_GRPC_RESOURCE_EXHAUSTED, err);
    } else {
        /* Borrowed for the delivery only: msg_in_arena keeps it from being
         * freed. */
        call->msg = (uint8_t *)(uintptr_t)msg;
        call->msg_in_arena = 1;
        call->msg_len = (uint32_t)len;
        deliver_message(call);
        call->msg = NULL;
        call->msg_in_arena = 0;
        keel_arena_reset(&call->msg_arena);
    }
    api_leave(call);
    return 0;
}

void grpc_local_half_close(struct grpc_call *call)
{
    assert(call->local && call->local_open);
    if (call->status_sent || call->cancelled || call->m == NULL ||
        !streamed_kind(call->m) || call->m->on_half_close == NULL) {
        return;
    }
    api_enter(call);
    call->m->on_half_close(call, call->m->data);
    api_leave(call);
}

void grpc_local_drained(struct grpc_call *call)
{
    assert(call->local && call->local_open);
    on_drained(call);
}

void grpc_local_cancel(struct grpc_call *call)
{
    assert(call->local && call->local_open);
    call->local_open = 0;
    call->done_pending = 0;
    stop_deadline(call);
    api_enter(call);
    cancel(call, KEEL_GRPC_CANCELED);
    api_leave(call);
}
