/*
 * libkeel transport: one HTTP/2 connection per client, gRPC calls and
 * streams multiplexed on it, failover across the endpoint list.
 *
 * Happy path of a unary call:
 *
 *   keel_call_start ─▶ rpc PENDING (on c->active) ─▶ idle: dispatch
 *     ─▶ conn READY? nghttp2_submit_request ─▶ SUBMITTED ─▶ idle: flush
 *     ─▶ DATA: message unpacked into call->arena ─▶ trailers: grpc-status
 *     ─▶ on_stream_close ─▶ DONE (c->done queue) ─▶ idle: cb(call)
 *
 * Connection states:
 *
 *   RESOLVING ─▶ CONNECTING ─▶ HANDSHAKE ─(server SETTINGS)─▶ READY
 *                                 (TLS endpoints: the TLS handshake first,
 *                                  then the HTTP/2 session starts)
 *        │            │            │                            │
 *        └────────────┴──── FAILED (dial timeout, error, EOF) ◀─┘
 *                                  │ idle: teardown
 *                                  ▼
 *                     next endpoint (backoff after a full round)
 *   READY ─(GOAWAY, Unavailable failover)─▶ DRAINING ─(no streams)─▶ closed
 *
 * Suspended in: uv_getaddrinfo, uv_tcp_connect/uv_pipe_connect, uv_read,
 * uv_write, the dial timer, the deadline tick, the reconnect backoff timer,
 * and the idle handle that does everything that must not run inside an
 * nghttp2 callback (submitting, flushing, tearing down a connection,
 * running user completion callbacks).
 *
 * Failure modes: a connection failure requeues calls that never reached the
 * wire (and idempotent ones that did) for the next endpoint; other calls and
 * all submitted streams end with UNAVAILABLE. Deadlines end calls with
 * DEADLINE_EXCEEDED "context deadline exceeded". An Unavailable status on
 * an idempotent call moves the client to the next endpoint and retries.
 * "etcdserver: invalid auth token" triggers one re-authentication.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "grpc_wire.h"
#include "keel.h"
#include "keel_int.h"

enum { RPC_UNARY = 1, RPC_STREAM = 2 };
enum { RPC_IDLE = 0, RPC_PENDING, RPC_SUBMITTED, RPC_DONE };
enum {
    CONN_RESOLVING = 1,
    CONN_CONNECTING,
    CONN_HANDSHAKE,
    CONN_READY,
    CONN_DRAINING,
    CONN_FAILED,
    CONN_CLOSING
};

#define TICK_MS 10
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define READ_BUF 65536

struct keel_rpc_slot
{
    struct keel_rpc *rpc; /* NULL once the rpc finished */
    struct keel_conn *conn;
    struct keel_rpc_slot *next, *prev;
    int32_t stream_id;
};

struct keel_conn
{
    struct keel_client *client;
    struct keel_conn *next; /* client's list of live connections */
    int state;
    size_t endpoint;
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    int handle_inited;
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai;
    int gai_active;
    uv_timer_t dial_timer; /* dial timeout, then the keepalive timer */
    int ping_outstanding;
    int refs; /* open handles + gai in flight; freed at 0 after CLOSING */
    nghttp2_session *session;
    /* TLS (endpoint->tls): OpenSSL over two memory BIOs; the socket
     * carries what wbio produces and feeds rbio. The HTTP/2 session
     * starts once the handshake is done. */
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    int tls_done;
    struct keel_rpc_slot *slots;
    int nstreams;
    int dirty;
    char err[200];
    char rbuf[READ_BUF];
};

struct endpoint
{
    char *raw;
    int is_unix;
    char *host; /* or path */
    int port;
    char *authority;
    int tls; /* https://, unixs:// or, without a scheme, cfg->tls set */
};

struct keel_client
{
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx; /* when some endpoint uses TLS */
    int tls_skip_verify;
    struct endpoint *eps;
    size_t n_eps;
    size_t cur;
    uint64_t dial_timeout;
    uint64_t keepalive_time, keepalive_timeout;
    char *username, *password, *token;
    struct keel_conn *conn;  /* current connection, or NULL */
    struct keel_conn *conns; /* every live connection */
    struct keel_rpc *active;  /* every rpc not yet finished */
    struct keel_rpc *pending_head, *pending_tail; /* waiting to be sent */
    struct keel_rpc *done_head, *done_tail;
    uv_idle_t idle;
    uv_timer_t tick;
    uv_timer_t backoff;
    int backoff_active;
    int tick_active;
    int fail_streak;
    int need_dispatch;
    int handles;
    char last_error[256];
    struct keel_call auth_call;
    int auth_inflight;
    int closing;
    keel_client_close_cb close_cb;
    void *close_data;
};

static void schedule(struct keel_client *c);
static void keepalive_arm(struct keel_conn *conn);
static void tick_cb(uv_timer_t *t);
static void backoff_cb(uv_timer_t *t);
static void conn_fail(struct keel_conn *conn, const char *why);
static void rpc_deliver(struct keel_rpc *rpc);

/* ---- endpoints ----------------------------------------------------------- */

static void endpoint_free(struct endpoint *e)
{
    free(e->raw);
    free(e->host);
    free(e->authority);
}

/* clientv3's rule (clientv3/client.go processCreds): http:// and unix://
 * are cleartext, https:// and unixs:// TLS, and an endpoint without a scheme
 * uses TLS when the client has a TLS configuration. */
static int endpoint_parse(const char *s, struct endpoint *e, int default_tls)
{
    memset(e, 0, sizeof(*e));
    e->raw = strdup(s);
    if (e->raw == NULL) {
        return -ENOMEM;
    }
    e->tls = default_tls && strstr(s, "://") == NULL;
    if (strncmp(s, "unix://", 7) == 0 || strncmp(s, "unix:", 5) == 0 ||
        strncmp(s, "unixs:", 6) == 0) {
        size_t scheme = 5; /* "unix:" */
        if (strncmp(s, "unixs:", 6) == 0) {
            e->tls = 1;
            scheme = 6;
        }
        const char *p = s + scheme;
        if (p[0] == '/' && p[1] == '/') {
            p += 2;
        }
        if (*p == '\0') {
            return KEEL_EINVAL;
        }
        e->is_unix = 1;
        e->host = strdup(p);
        e->authority = strdup("localhost");
        return e->host && e->authority ? 0 : -ENOMEM;
    }
    if (strncmp(s, "https://", 8) == 0) {
        e->tls = 1;
        s += 8;
    } else if (strncmp(s, "http://", 7) == 0) {
        s += 7;
    }
    size_t len = strcspn(s, "/");
    if (len == 0) {
        return KEEL_EINVAL;
    }
    char *hp = strndup(s, len);
    if (hp == NULL) {
        return -ENOMEM;
    }
    char *colon = strrchr(hp, ':');
    char *host_start = hp;
    char *host_end;
    int port = 2379;
    if (hp[0] == '[') {
        char *rb = strchr(hp, ']');
        if (rb == NULL) {
            free(hp);
            return KEEL_EINVAL;
        }
        host_start = hp + 1;
        host_end = rb;
        colon = rb[1] == ':' ? rb + 1 : NULL;
    } else {
        host_end = colon ? colon : hp + len;
    }
    if (colon != NULL) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end != '\0' || v <= 0 || v > 65535) {
            free(hp);
            return KEEL_EINVAL;
        }
        port = (int)v;
    }
    e->host = strndup(host_start, (size_t)(host_end - host_start));
    e->authority = strdup(hp);
    free(hp);
    if (e->host == NULL || e->authority == NULL) {
        return -ENOMEM;
    }
    if (e->host[0] == '\0') {
        return KEEL_EINVAL;
    }
    e->port = port;
    return 0;
}

/* ---- rpc bookkeeping ----------------------------------------------------- */

/* Calls waiting for a connection (or a token) queue in start order, so
 * dispatch costs what is waiting, not what is in flight. */
static void pending_push(struct keel_client *c, struct keel_rpc *rpc)
{
    assert(!rpc->in_pending);
    rpc->pnext = NULL;
    rpc->pprev = c->pending_tail;
    if (c->pending_tail) {
        c->pending_tail->pnext = rpc;
    } else {
        c->pending_head = rpc;
    }
    c->pending_tail = rpc;
    rpc->in_pending = 1;
}

static void pending_remove(struct keel_client *c, struct keel_rpc *rpc)
{
    if (!rpc->in_pending) {
        return;
    }
    if (rpc->pprev) {
        rpc->pprev->pnext = rpc->pnext;
    } else {
        c->pending_head = rpc->pnext;
    }
    if (rpc->pnext) {
        rpc->pnext->pprev = rpc->pprev;
    } else {
        c->pending_tail = rpc->pprev;
    }
    rpc->pnext = rpc->pprev = NULL;
    rpc->in_pending = 0;
}

static struct grpc_decoder *rpc_dec(struct keel_rpc *rpc)
{
    return rpc->dec_state;
}

static struct grpc_status *rpc_st(struct keel_rpc *rpc)
{
    return rpc->status_state;
}

static void active_unlink(struct keel_rpc *rpc)
{
    struct keel_client *c = rpc->client;
    if (rpc->prev) {
        rpc->prev->next = rpc->next;
    } else if (c->active == rpc) {
        c->active = rpc->next;
    }
    if (rpc->next) {
        rpc->next->prev = rpc->prev;
    }
    rpc->next = rpc->prev = NULL;
}

static void detach_slot(struct keel_rpc *rpc, int reset_stream)
{
    struct keel_rpc_slot *slot = rpc->slot;
    if (slot == NULL) {
        return;
    }
    slot->rpc = NULL;
    rpc->slot = NULL;
    struct keel_conn *conn = slot->conn;
    if (reset_stream && conn != NULL && conn->session != NULL &&
        conn->state != CONN_FAILED && conn->state != CONN_CLOSING) {
        nghttp2_submit_rst_stream(conn->session, NGHTTP2_FLAG_NONE,
                                  slot->stream_id, NGHTTP2_CANCEL);
        conn->dirty = 1;
        schedule(rpc->client);
    }
}

/* Reset receive state so the rpc can be sent again. */
static void rpc_rewind(struct keel_rpc *rpc)
{
    grpc_decoder_free(rpc_dec(rpc));
    grpc_status_free(rpc_st(rpc));
    rpc->sendoff = 0;
    rpc->sent_any = 0;
    rpc->got_message = 0;
    rpc->conn = NULL;
    rpc->state = RPC_PENDING;
    pending_push(rpc->client, rpc);
    if (rpc->kind == RPC_UNARY) {
        struct keel_call *call =
            (struct keel_call *)((char *)rpc - offsetof(struct keel_call, rpc));
        call->resp = NULL;
        keel_arena_reset(&call->arena);
    }
    rpc->client->need_dispatch = 1;
    schedule(rpc->client);
}

/* End an rpc with (code, message): it leaves the active list and its user
 * callback is queued for the idle handle. */
static void rpc_finish(struct keel_rpc *rpc, int code, const char *message,
                       int reset_stream)
{
    struct keel_client *c = rpc->client;
    if (rpc->state != RPC_PENDING && rpc->state != RPC_SUBMITTED) {
        return;
    }
    detach_slot(rpc, reset_stream);
    active_unlink(rpc);
    pending_remove(c, rpc);
    rpc->state = RPC_DONE;
    rpc->final_code = code;
    free(rpc->final_message);
    rpc->final_message = strdup(message ? message : "");
    rpc->done_next = NULL;
    if (c->done_tail) {
        c->done_tail->done_next = rpc;
    } else {
        c->done_head = rpc;
    }
    c->done_tail = rpc;
    schedule(c);
}

static int rpc_begin(struct keel_client *c, struct keel_rpc *rpc, int kind,
                     const char *path,
                     const ProtobufCMessageDescriptor *resp_desc,
                     const struct keel_call_opts *opts)
{
    if (c->closing) {
        return KEEL_ESHUTDOWN;
    }
    if (strlen(path) >= sizeof(rpc->path) || path[0] != '/') {
        return KEEL_EINVAL;
    }
    memset(rpc, 0, sizeof(*rpc));
    rpc->dec_state = malloc(sizeof(struct grpc_decoder));
    rpc->status_state = malloc(sizeof(struct grpc_status));
    if (rpc->dec_state == NULL || rpc->status_state == NULL) {
        free(rpc->dec_state);
        free(rpc->status_state);
        return -ENOMEM;
    }
    grpc_decoder_init(rpc_dec(rpc));
    grpc_status_init(rpc_st(rpc));
    rpc->client = c;
    rpc->kind = kind;
    rpc->resp_desc = resp_desc;
    strcpy(rpc->path, path);
    if (opts) {
        rpc->flags = opts->flags;
        if (opts->timeout_ms) {
            rpc->deadline = uv_now(c->loop) + opts->timeout_ms;
        }
    }
    return 0;
}

static void rpc_activate(struct keel_rpc *rpc)
{
    struct keel_client *c = rpc->client;
    rpc->state = RPC_PENDING;
    pending_push(c, rpc);
    rpc->next = c->active;
    if (c->active) {
        c->active->prev = rpc;
    }
    c->active = rpc;
    if (rpc->deadline && !c->tick_active) {
        c->tick_active = 1;
        uv_timer_start(&c->tick, tick_cb, TICK_MS, TICK_MS);
    }
    c->need_dispatch = 1;
    schedule(c);
}

static int rpc_append(struct keel_rpc *rpc, const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > UINT32_MAX) {
        return KEEL_ETOOBIG;
    }
    if (rpc->sendoff == rpc->sendlen) {
        rpc->sendoff = rpc->sendlen = 0;
    }
    if (rpc->sendlen + n + 5 > rpc->sendcap) {
        size_t cap = rpc->sendcap ? rpc->sendcap : 64;
        while (cap < rpc->sendlen + n + 5) {
            cap *= 2;
        }
        uint8_t *nb = realloc(rpc->sendbuf, cap);
        if (nb == NULL) {
            return -ENOMEM;
        }
        rpc->sendbuf = nb;
        rpc->sendcap = cap;
    }
    grpc_frame_prefix(rpc->sendbuf + rpc->sendlen, (uint32_t)n);
    protobuf_c_message_pack(msg, rpc->sendbuf + rpc->sendlen + 5);
    rpc->sendlen += n + 5;
    return 0;
}

static void rpc_release(struct keel_rpc *rpc)
{
    if (rpc->dec_state) {
        grpc_decoder_free(rpc_dec(rpc));
        free(rpc->dec_state);
        rpc->dec_state = NULL;
    }
    if (rpc->status_state) {
        grpc_status_free(rpc_st(rpc));
        free(rpc->status_state);
        rpc->status_state = NULL;
    }
    free(rpc->sendbuf);
    rpc->sendbuf = NULL;
    rpc->sendlen = rpc->sendoff = rpc->sendcap = 0;
    free(rpc->final_message);
    rpc->final_message = NULL;
}

/* ---- nghttp2 callbacks --------------------------------------------------- */

static ssize_t data_read_cb(nghttp2_session *session, int32_t stream_id,
                            uint8_t *buf, size_t length, uint32_t *data_flags,
                            nghttp2_data_source *source, void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)user_data;
    struct keel_rpc_slot *slot = source->ptr;
    struct keel_rpc *rpc = slot->rpc;
    if (rpc == NULL) {
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        return 0;
    }
    size_t avail = rpc->sendlen - rpc->sendoff;
    size_t n = avail < length ? avail : length;
    if (n > 0) {
        memcpy(buf, rpc->sendbuf + rpc->sendoff, n);
    }
    rpc->sendoff += n;
    if (n > 0) {
        rpc->sent_any = 1;
    }
    if (rpc->sendoff == rpc->sendlen) {
        if (rpc->send_closed) {
            *data_flags |= NGHTTP2_DATA_FLAG_EOF;
        } else if (n == 0) {
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

static struct keel_rpc *stream_rpc(nghttp2_session *session, int32_t id)
{
    struct keel_rpc_slot *slot = nghttp2_session_get_stream_user_data(session,
                                                                      id);
    return slot ? slot->rpc : NULL;
}

static int on_header_cb(nghttp2_session *session, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *user_data)
{
    (void)flags;
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
    struct keel_rpc *rpc = stream_rpc(session, frame->hd.stream_id);
    if (rpc == NULL) {
        return 0;
    }
    if (grpc_status_header(rpc_st(rpc), (const char *)name, namelen,
                           (const char *)value, valuelen) != 0) {
        rpc_finish(rpc, KEEL_GRPC_RESOURCE_EXHAUSTED, "out of memory", 1);
    }
    return 0;
}

static void deliver_message(struct keel_rpc *rpc, const uint8_t *data,
                            size_t len)
{
    if (rpc->kind == RPC_UNARY) {
        struct keel_call *call =
            (struct keel_call *)((char *)rpc - offsetof(struct keel_call, rpc));
        if (rpc->got_message) {
            rpc_finish(rpc, KEEL_GRPC_INTERNAL,
                       "unary response with more than one message", 1);
            return;
        }
        call->resp = protobuf_c_message_unpack(rpc->resp_desc,
                                               &call->arena.pb, len, data);
        if (call->resp == NULL) {
            rpc_finish(rpc, KEEL_GRPC_INTERNAL,
                       "grpc: failed to unmarshal the received message", 1);
            return;
        }
        rpc->got_message = 1;
        return;
    }
    struct keel_stream *s =
        (struct keel_stream *)((char *)rpc - offsetof(struct keel_stream, rpc));
    ProtobufCMessage *m = protobuf_c_message_unpack(rpc->resp_desc,
                                                    &s->arena.pb, len, data);
    if (m == NULL) {
        keel_arena_reset(&s->arena);
        rpc_finish(rpc, KEEL_GRPC_INTERNAL,
                   "grpc: failed to unmarshal the received message", 1);
        return;
    }
    rpc->got_message = 1;
    s->msg_cb(s, m);
    keel_arena_reset(&s->arena);
}

static int on_data_chunk_cb(nghttp2_session *session, uint8_t flags,
                            int32_t stream_id, const uint8_t *data, size_t len,
                            void *user_data)
{
    (void)flags;
    (void)user_data;
    struct keel_rpc *rpc = stream_rpc(session, stream_id);
    if (rpc == NULL) {
        return 0;
    }
    struct grpc_decoder *d = rpc_dec(rpc);
    if (grpc_decoder_feed(d, data, len) != 0) {
        rpc_finish(rpc, KEEL_GRPC_RESOURCE_EXHAUSTED, "out of memory", 1);
        return 0;
    }
    for (;;) {
        const uint8_t *msg;
        size_t mlen;
        int rv = grpc_decoder_next(d, &msg, &mlen);
        if (rv == 0) {
            break;
        }
        if (rv < 0) {
            rpc_finish(rpc, KEEL_GRPC_INTERNAL,
                       rv == KEEL_ETOOBIG
                           ? "grpc: received message larger than max"
                           : "grpc: compressed message not supported",
                       1);
            break;
        }
        deliver_message(rpc, msg, mlen);
        /* The callback may have cancelled the stream. */
        if (rpc->state != RPC_SUBMITTED) {
            break;
        }
    }
    return 0;
}

static int retryable_after_send(struct keel_rpc *rpc)
{
    struct keel_client *c = rpc->client;
    return rpc->kind == RPC_UNARY && (rpc->flags & KEEL_CALL_IDEMPOTENT) &&
           rpc->attempts < (int)(2 * c->n_eps + 1) && !c->closing;
}

static void conn_retire(struct keel_conn *conn);

/* The HTTP/2 stream of rpc ended; decide how the call ends. */
static void stream_ended(struct keel_rpc *rpc, struct keel_conn *conn,
                         uint32_t error_code)
{
    struct keel_client *c = rpc->client;
    struct grpc_status *st = rpc_st(rpc);
    int code;
    const char *msg = st->message ? st->message : "";
    char buf[96];

    detach_slot(rpc, 0);
    if (st->grpc_status >= 0) {
        code = st->grpc_status;
        if (code == KEEL_GRPC_OK && grpc_decoder_pending(rpc_dec(rpc))) {
            code = KEEL_GRPC_INTERNAL;
            msg = "grpc: truncated message at end of stream";
        }
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        /* Never processed (GOAWAY or concurrency limit): safe to resend. */
        rpc->attempts++;
        if (rpc->kind == RPC_UNARY && !c->closing) {
            rpc_rewind(rpc);
            return;
        }
        code = KEEL_GRPC_UNAVAILABLE;
        msg = "transport: stream refused";
    } else if (error_code != 0) {
        code = error_code == NGHTTP2_CANCEL ? KEEL_GRPC_CANCELED
                                            : KEEL_GRPC_INTERNAL;
        snprintf(buf, sizeof(buf),
                 "stream terminated by RST_STREAM with error code: %s",
                 nghttp2_http2_strerror(error_code));
        msg = buf;
    } else {
        code = grpc_status_code(st);
        snprintf(buf, sizeof(buf),
                 "unexpected HTTP status code received from server: %d",
                 st->http_status);
        msg = st->http_status && st->http_status != 200
                  ? buf
                  : "server closed the stream without sending trailers";
    }

    if (code == KEEL_GRPC_UNAUTHENTICATED && c->username &&
        !rpc->auth_retried &&
        strcmp(msg, "etcdserver: invalid auth token") == 0) {
        rpc->auth_retried = 1;
        free(c->token);
        c->token = NULL;
        rpc_rewind(rpc);
        return;
    }
    if (code == KEEL_GRPC_UNAVAILABLE && retryable_after_send(rpc)) {
        /* etcd answers Unavailable for "no leader" and timeouts: another
         * member may do better. */
        rpc->attempts++;
        if (c->n_eps > 1 && conn == c->conn) {
            conn_retire(conn);
            c->cur = (c->cur + 1) % c->n_eps;
        }
        rpc_rewind(rpc);
        return;
    }
    if (code == KEEL_GRPC_OK && rpc->kind == RPC_UNARY && !rpc->got_message) {
        code = KEEL_GRPC_INTERNAL;
        msg = "grpc: no response message for a unary call";
    }
    rpc_finish(rpc, code, msg, 0);
}

static void conn_maybe_close_drained(struct keel_conn *conn);

static int on_stream_close_cb(nghttp2_session *session, int32_t stream_id,
                              uint32_t error_code, void *user_data)
{
    struct keel_conn *conn = user_data;
    struct keel_rpc_slot *slot = nghttp2_session_get_stream_user_data(
        session, stream_id);
    if (slot == NULL) {
        return 0;
    }
    if (slot->prev) {
        slot->prev->next = slot->next;
    } else {
        conn->slots = slot->next;
    }
    if (slot->next) {
        slot->next->prev = slot->prev;
    }
    conn->nstreams--;
    struct keel_rpc *rpc = slot->rpc;
    if (rpc != NULL) {
        stream_ended(rpc, conn, error_code);
    }
    free(slot);
    conn_maybe_close_drained(conn);
    return 0;
}

/* Keepalive: READY ─(keepalive_time)─▶ PING sent ─(ACK)─▶ READY
 *                                        └─(keepalive_timeout)─▶ FAILED */
static void conn_dirty(struct keel_conn *conn);

static void keepalive_cb(uv_timer_t *t)
{
    struct keel_conn *conn = t->data;
    struct keel_client *c = conn->client;
    if (conn->session == NULL || (conn->state != CONN_READY &&
                                  conn->state != CONN_DRAINING)) {
        return;
    }
    if (conn->ping_outstanding) {
        conn_fail(conn, "keepalive ping not acknowledged");
        return;
    }
    if (nghttp2_submit_ping(conn->session, NGHTTP2_FLAG_NONE, NULL) != 0) {
        conn_fail(conn, "keepalive ping failed");
        return;
    }
    conn->ping_outstanding = 1;
    uv_timer_start(&conn->dial_timer, keepalive_cb, c->keepalive_timeout, 0);
    conn_dirty(conn);
}

static void keepalive_arm(struct keel_conn *conn)
{
    struct keel_client *c = conn->client;
    if (c->keepalive_time) {
        uv_timer_start(&conn->dial_timer, keepalive_cb, c->keepalive_time, 0);
    }
}

static int on_frame_recv_cb(nghttp2_session *session,
                            const nghttp2_frame *frame, void *user_data)
{
    (void)session;
    struct keel_conn *conn = user_data;
    struct keel_client *c = conn->client;
    if (frame->hd.type == NGHTTP2_SETTINGS &&
        !(frame->hd.flags & NGHTTP2_FLAG_ACK) &&
        conn->state == CONN_HANDSHAKE) {
        conn->state = CONN_READY;
        uv_timer_stop(&conn->dial_timer);
        keepalive_arm(conn);
        c->fail_streak = 0;
        c->last_error[0] = '\0';
        c->need_dispatch = 1;
        schedule(c);
    } else if (frame->hd.type == NGHTTP2_PING &&
               (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
        conn->ping_outstanding = 0;
        keepalive_arm(conn);
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        if (conn == c->conn) {
            conn_retire(conn);
            c->cur = (c->cur + 1) % c->n_eps;
        }
    }
    return 0;
}

/* ---- connection ---------------------------------------------------------- */

static void conn_unref(struct keel_conn *conn)
{
    assert(conn->refs > 0);
    if (--conn->refs > 0) {
        return;
    }
    struct keel_client *c = conn->client;
    struct keel_conn **pp = &c->conns;
    while (*pp && *pp != conn) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = conn->next;
    }
    SSL_free(conn->ssl);
    free(conn);
    schedule(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_dirty(struct keel_conn *conn)
{
    conn->dirty = 1;
    schedule(conn->client);
}

static void conn_fail(struct keel_conn *conn, const char *why)
{
    if (conn->state == CONN_FAILED || conn->state == CONN_CLOSING) {
        return;
    }
    snprintf(conn->err, sizeof(conn->err), "%s", why);
    conn->state = CONN_FAILED;
    schedule(conn->client);
}

static void conn_retire(struct keel_conn *conn)
{
    struct keel_client *c = conn->client;
    if (c->conn == conn) {
        c->conn = NULL;
    }
    if (conn->state == CONN_READY) {
        conn->state = CONN_DRAINING;
    }
    c->need_dispatch = 1;
    schedule(c);
}

static void conn_maybe_close_drained(struct keel_conn *conn)
{
    if (conn->state == CONN_DRAINING && conn->nstreams == 0) {
        conn_fail(conn, "connection drained");
    }
}

/* Tear down a failed connection (from idle only, never inside nghttp2). */
static void conn_teardown(struct keel_conn *conn)
{
    struct keel_client *c = conn->client;
    int was_current = c->conn == conn;
    if (was_current) {
        c->conn = NULL;
        snprintf(c->last_error, sizeof(c->last_error), "%s", conn->err);
    }
    conn->state = CONN_CLOSING;
    /* Calls on this connection: retry what is safe, fail the rest. */
    struct keel_rpc_slot *slot = conn->slots;
    while (slot) {
        struct keel_rpc_slot *next = slot->next;
        struct keel_rpc *rpc = slot->rpc;
        if (rpc) {
            rpc->slot = NULL;
            slot->rpc = NULL;
            if (rpc->kind == RPC_UNARY && !c->closing &&
                (!rpc->sent_any || retryable_after_send(rpc))) {
                rpc->attempts++;
                rpc_rewind(rpc);
            } else {
                rpc_finish(rpc, KEEL_GRPC_UNAVAILABLE, "transport is closing",
                           0);
            }
        }
        free(slot);
        slot = next;
    }
    conn->slots = NULL;
    conn->nstreams = 0;
    if (conn->session) {
        nghttp2_session_del(conn->session);
        conn->session = NULL;
    }
    if (conn->gai_active) {
        uv_cancel((uv_req_t *)&conn->gai);
    }
    uv_timer_stop(&conn->dial_timer);
    uv_close((uv_handle_t *)&conn->dial_timer, conn_handle_closed);
    if (conn->handle_inited) {
        uv_close(&conn->h.handle, conn_handle_closed);
    }
    if (was_current && !c->closing) {
        c->cur = (c->cur + 1) % c->n_eps;
        c->fail_streak++;
        c->need_dispatch = 1;
        if (c->fail_streak % (int)c->n_eps == 0) {
            /* A full round failed: back off before the next one. */
            uint64_t ms = BACKOFF_MIN_MS;
            int rounds = c->fail_streak / (int)c->n_eps;
            while (rounds-- > 1 && ms < BACKOFF_MAX_MS) {
                ms *= 2;
            }
            if (ms > BACKOFF_MAX_MS) {
                ms = BACKOFF_MAX_MS;
            }
            c->backoff_active = 1;
            uv_timer_start(&c->backoff, backoff_cb, ms, 0);
        }
    }
}

static void conn_flush(struct keel_conn *conn);

struct write_req
{
    uv_write_t req;
    struct keel_conn *conn;
    size_t len;
    uint8_t data[];
};

static void write_cb(uv_write_t *req, int status)
{
    struct write_req *wr = (struct write_req *)req;
    struct keel_conn *conn = wr->conn;
    free(wr);
    if (status < 0) {
        char why[160];
        snprintf(why, sizeof(why), "write: %s", uv_strerror(status));
        conn_fail(conn, why);
    }
}

/* Send what OpenSSL wrote into wbio. 0, or -1 after conn_fail. */
static int tls_send(struct keel_conn *conn)
{
    size_t pending = BIO_ctrl_pending(conn->wbio);
    if (pending == 0) {
        return 0;
    }
    struct write_req *wr = malloc(sizeof(*wr) + pending);
    if (wr == NULL) {
        conn_fail(conn, "out of memory");
        return -1;
    }
    int n = BIO_read(conn->wbio, wr->data, (int)pending);
    if (n <= 0) {
        free(wr);
        conn_fail(conn, "tls: BIO_read failed");
        return -1;
    }
    wr->conn = conn;
    wr->len = (size_t)n;
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)n);
    int rv = uv_write(&wr->req, &conn->h.stream, &b, 1, write_cb);
    if (rv < 0) {
        free(wr);
        conn_fail(conn, uv_strerror(rv));
        return -1;
    }
    return 0;
}

/* Why the handshake or a TLS read failed, in Go's words where they exist
 * (grpc-go logs "x509: certificate signed by unknown authority"). */
static void tls_fail(struct keel_conn *conn, int ret)
{
    char why[200];
    long vr = SSL_get_verify_result(conn->ssl);
    if (!conn->tls_done && vr != X509_V_OK) {
        if (vr == X509_V_ERR_HOSTNAME_MISMATCH ||
            vr == X509_V_ERR_IP_ADDRESS_MISMATCH) {
            snprintf(why, sizeof(why),
                     "x509: certificate is valid for other names, not %s",
                     conn->client->eps[conn->endpoint].host);
        } else if (vr == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                   vr == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                   vr == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN) {
            snprintf(why, sizeof(why),
                     "x509: certificate signed by unknown authority");
        } else {
            snprintf(why, sizeof(why), "x509: %s",
                     X509_verify_cert_error_string(vr));
        }
    } else {
        unsigned long e = ERR_peek_last_error();
        snprintf(why, sizeof(why), "tls: %s",
                 e ? ERR_reason_error_string(e)
                   : SSL_get_error(conn->ssl, ret) == SSL_ERROR_ZERO_RETURN
                         ? "connection closed"
                         : "handshake failed");
    }
    ERR_clear_error();
    conn_fail(conn, why);
}

static int conn_start_session(struct keel_conn *conn);

/* Advance the handshake; once done, start the HTTP/2 session. 0, or -1
 * after conn_fail. */
static int tls_handshake(struct keel_conn *conn)
{
    int r = SSL_do_handshake(conn->ssl);
    if (r != 1) {
        int e = SSL_get_error(conn->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            tls_send(conn); /* the alert, if any */
            tls_fail(conn, r);
            return -1;
        }
        return tls_send(conn);
    }
    conn->tls_done = 1;
    if (tls_send(conn) != 0) {
        return -1;
    }
    if (conn_start_session(conn) != 0) {
        conn_fail(conn, "out of memory");
        return -1;
    }
    conn_dirty(conn);
    return 0;
}

static int tls_start(struct keel_conn *conn)
{
    const struct endpoint *ep = &conn->client->eps[conn->endpoint];
    conn->ssl = SSL_new(conn->client->ssl_ctx);
    conn->rbio = BIO_new(BIO_s_mem());
    conn->wbio = BIO_new(BIO_s_mem());
    if (conn->ssl == NULL || conn->rbio == NULL || conn->wbio == NULL) {
        BIO_free(conn->rbio);
        BIO_free(conn->wbio);
        conn->rbio = conn->wbio = NULL;
        return -ENOMEM;
    }
    SSL_set_bio(conn->ssl, conn->rbio, conn->wbio);
    SSL_set_connect_state(conn->ssl);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_set_alpn_protos(conn->ssl, alpn, sizeof(alpn));
    if (!ep->is_unix) {
        /* Verify the name the endpoint was given by, as grpc-go does
         * (clientv3 overrides the server name with the host). */
        unsigned char ip[16];
        int is_ip = inet_pton(AF_INET, ep->host, ip) == 1 ||
                    inet_pton(AF_INET6, ep->host, ip) == 1;
        if (is_ip) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), ep->host);
        } else {
            SSL_set_tlsext_host_name(conn->ssl, ep->host);
            SSL_set1_host(conn->ssl, ep->host);
        }
    }
    return 0;
}

static void conn_flush(struct keel_conn *conn)
{
    conn->dirty = 0;
    if (conn->session == NULL || conn->state == CONN_FAILED ||
        conn->state == CONN_CLOSING) {
        return;
    }
    struct write_req *wr = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(conn->session, &data);
        if (n < 0) {
            free(wr);
            conn_fail(conn, nghttp2_strerror((int)n));
            return;
        }
        if (n == 0) {
            break;
        }
        if (len + (size_t)n > cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            while (ncap < len + (size_t)n) {
                ncap *= 2;
            }
            struct write_req *nw = realloc(wr, sizeof(*wr) + ncap);
            if (nw == NULL) {
                free(wr);
                conn_fail(conn, "out of memory");
                return;
            }
            wr = nw;
            cap = ncap;
        }
        memcpy(wr->data + len, data, (size_t)n);
        len += (size_t)n;
    }
    if (len > 0 && conn->ssl != NULL) {
        /* Memory BIOs grow as needed: SSL_write takes it all at once. */
        int w = SSL_write(conn->ssl, wr->data, (int)len);
        free(wr);
        if (w <= 0 || (size_t)w != len) {
            conn_fail(conn, "tls: write failed");
            return;
        }
        if (tls_send(conn) != 0) {
            return;
        }
    } else if (len > 0) {
        wr->conn = conn;
        wr->len = len;
        uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)len);
        int rv = uv_write(&wr->req, &conn->h.stream, &b, 1, write_cb);
        if (rv < 0) {
            free(wr);
            conn_fail(conn, uv_strerror(rv));
            return;
        }
    } else {
        free(wr);
    }
    if (!nghttp2_session_want_read(conn->session) &&
        !nghttp2_session_want_write(conn->session)) {
        conn_fail(conn, "http2 session closed");
    }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct keel_conn *conn = h->data;
    buf->base = conn->rbuf;
    buf->len = sizeof(conn->rbuf);
}

/* Ciphertext from the socket: handshake, then plaintext to nghttp2. The
 * plaintext is read in place over the ciphertext buffer (rbio has copied
 * it). */
static void tls_recv(struct keel_conn *conn, char *data, size_t len)
{
    if (BIO_write(conn->rbio, data, (int)len) != (int)len) {
        conn_fail(conn, "tls: out of memory");
        return;
    }
    if (!conn->tls_done && tls_handshake(conn) != 0) {
        return;
    }
    while (conn->tls_done && conn->session != NULL) {
        int n = SSL_read(conn->ssl, data, (int)sizeof(conn->rbuf));
        if (n <= 0) {
            int e = SSL_get_error(conn->ssl, n);
            if (e == SSL_ERROR_WANT_READ) {
                break;
            }
            if (e == SSL_ERROR_ZERO_RETURN) {
                conn_fail(conn, "EOF");
            } else {
                tls_fail(conn, n);
            }
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(conn->session,
                                              (const uint8_t *)data,
                                              (size_t)n);
        if (rv < 0) {
            conn_fail(conn, nghttp2_strerror((int)rv));
            return;
        }
    }
    if (tls_send(conn) == 0) { /* post-handshake messages, alerts */
        conn_dirty(conn);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct keel_conn *conn = s->data;
    if (nread < 0) {
        conn_fail(conn, nread == UV_EOF ? "EOF" : uv_strerror((int)nread));
        return;
    }
    if (nread == 0 || conn->state == CONN_FAILED ||
        conn->state == CONN_CLOSING) {
        return;
    }
    if (conn->ssl != NULL) {
        tls_recv(conn, buf->base, (size_t)nread);
        return;
    }
    if (conn->session == NULL) {
        return;
    }
    ssize_t rv = nghttp2_session_mem_recv(conn->session,
                                          (const uint8_t *)buf->base,
                                          (size_t)nread);
    if (rv < 0) {
        conn_fail(conn, nghttp2_strerror((int)rv));
        return;
    }
    conn_dirty(conn);
}

static int conn_start_session(struct keel_conn *conn)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0) {
        return -ENOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
                                                              on_data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                         on_frame_recv_cb);
    int rv = nghttp2_session_client_new(&conn->session, cbs, conn);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        return -ENOMEM;
    }
    /* A large window so big Range responses are not throttled per RTT. */
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24},
    };
    nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0,
                                          1 << 26);
    return 0;
}

/* Connection failures read like Go's net errors ("dial tcp
 * 127.0.0.1:2379: connect: connection refused"): keelctl quotes them the
 * way grpc-go does, and they are familiar to etcd users. */
static void dial_error(struct keel_conn *conn, const char *op,
                       const char *what, char *out, size_t len)
{
    const struct endpoint *ep = &conn->client->eps[conn->endpoint];
    if (ep->is_unix) {
        snprintf(out, len, "dial unix %s: %s: %s", ep->host, op, what);
    } else {
        snprintf(out, len, "dial tcp %s: %s: %s", ep->authority, op, what);
    }
}

static void connect_cb(uv_connect_t *req, int status)
{
    struct keel_conn *conn = req->data;
    if (conn->state != CONN_CONNECTING) {
        return;
    }
    if (status < 0) {
        char why[200];
        dial_error(conn, "connect", uv_strerror(status), why, sizeof(why));
        conn_fail(conn, why);
        return;
    }
    if (!conn->client->eps[conn->endpoint].is_unix) {
        uv_tcp_nodelay(&conn->h.tcp, 1);
    }
    int rv = uv_read_start(&conn->h.stream, alloc_cb, read_cb);
    if (rv < 0) {
        conn_fail(conn, uv_strerror(rv));
        return;
    }
    conn->state = CONN_HANDSHAKE;
    if (conn->client->eps[conn->endpoint].tls) {
        if (tls_start(conn) != 0) {
            conn_fail(conn, "out of memory");
            return;
        }
        tls_handshake(conn);
        return;
    }
    if (conn_start_session(conn) != 0) {
        conn_fail(conn, "out of memory");
        return;
    }
    conn_dirty(conn);
}

static void conn_connect_addr(struct keel_conn *conn,
                              const struct sockaddr *addr)
{
    int rv = uv_tcp_init(conn->client->loop, &conn->h.tcp);
    if (rv < 0) {
        conn_fail(conn, uv_strerror(rv));
        return;
    }
    conn->h.handle.data = conn;
    conn->handle_inited = 1;
    conn->refs++;
    conn->state = CONN_CONNECTING;
    conn->connect_req.data = conn;
    rv = uv_tcp_connect(&conn->connect_req, &conn->h.tcp, addr, connect_cb);
    if (rv < 0) {
        char why[200];
        dial_error(conn, "connect", uv_strerror(rv), why, sizeof(why));
        conn_fail(conn, why);
    }
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct keel_conn *conn = req->data;
    conn->gai_active = 0;
    if (conn->state == CONN_RESOLVING) {
        if (status < 0 || res == NULL) {
            char why[200];
            snprintf(why, sizeof(why), "resolve %s: %s",
                     conn->client->eps[conn->endpoint].host,
                     uv_strerror(status));
            conn_fail(conn, why);
        } else {
            conn_connect_addr(conn, res->ai_addr);
        }
    }
    uv_freeaddrinfo(res);
    conn_unref(conn);
}

static void dial_timer_cb(uv_timer_t *t)
{
    struct keel_conn *conn = t->data;
    char why[200];
    dial_error(conn, "connect", "i/o timeout", why, sizeof(why));
    conn_fail(conn, why);
}

static void conn_open(struct keel_client *c)
{
    struct keel_conn *conn = calloc(1, sizeof(*conn));
    if (conn == NULL) {
        snprintf(c->last_error, sizeof(c->last_error), "out of memory");
        return;
    }
    struct endpoint *ep = &c->eps[c->cur];
    conn->client = c;
    conn->endpoint = c->cur;
    conn->next = c->conns;
    c->conns = conn;
    c->conn = conn;
    uv_timer_init(c->loop, &conn->dial_timer);
    conn->dial_timer.data = conn;
    conn->refs = 1;
    uv_timer_start(&conn->dial_timer, dial_timer_cb, c->dial_timeout, 0);

    if (ep->is_unix) {
        int rv = uv_pipe_init(c->loop, &conn->h.pipe, 0);
        if (rv < 0) {
            conn_fail(conn, uv_strerror(rv));
            return;
        }
        conn->h.handle.data = conn;
        conn->handle_inited = 1;
        conn->refs++;
        conn->state = CONN_CONNECTING;
        conn->connect_req.data = conn;
        uv_pipe_connect(&conn->connect_req, &conn->h.pipe, ep->host,
                        connect_cb);
        return;
    }
    struct sockaddr_storage ss;
    if (uv_ip4_addr(ep->host, ep->port, (struct sockaddr_in *)&ss) == 0 ||
        uv_ip6_addr(ep->host, ep->port, (struct sockaddr_in6 *)&ss) == 0) {
        conn_connect_addr(conn, (struct sockaddr *)&ss);
        return;
    }
    conn->state = CONN_RESOLVING;
    conn->gai.data = conn;
    char port[8];
    snprintf(port, sizeof(port), "%d", ep->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rv = uv_getaddrinfo(c->loop, &conn->gai, gai_cb, ep->host, port,
                            &hints);
    if (rv < 0) {
        conn_fail(conn, uv_strerror(rv));
        return;
    }
    conn->gai_active = 1;
    conn->refs++;
}

/* ---- dispatch ------------------------------------------------------------ */

static void auth_done(struct keel_call *call);

static int rpc_submit(struct keel_conn *conn, struct keel_rpc *rpc)
{
    struct keel_client *c = conn->client;
    char timeout[16];
    nghttp2_nv nva[10];
    size_t n = 0;
#define NV(N, V)                                                               \
    do {                                                                       \
        nva[n].name = (uint8_t *)(N);                                          \
        nva[n].namelen = strlen(N);                                            \
        nva[n].value = (uint8_t *)(V);                                         \
        nva[n].valuelen = strlen(V);                                           \
        nva[n].flags = NGHTTP2_NV_FLAG_NONE;                                   \
        n++;                                                                   \
    } while (0)
    NV(":method", "POST");
    NV(":scheme", conn->ssl != NULL ? "https" : "http");
    NV(":path", rpc->path);
    NV(":authority", c->eps[conn->endpoint].authority);
    NV("content-type", "application/grpc");
    NV("te", "trailers");
    NV("user-agent", "keel-client/0.1");
    if (rpc->deadline) {
        uint64_t now = uv_now(c->loop);
        grpc_timeout_format(rpc->deadline > now ? rpc->deadline - now : 1,
                            timeout);
        NV("grpc-timeout", timeout);
    }
    if (c->token && !(rpc->flags & KEEL_CALL_NO_AUTH)) {
        NV("token", c->token);
    }
    if (rpc->flags & KEEL_CALL_REQUIRE_LEADER) {
        NV("hasleader", "true");
    }
#undef NV
    struct keel_rpc_slot *slot = calloc(1, sizeof(*slot));
    if (slot == NULL) {
        return -ENOMEM;
    }
    nghttp2_data_provider prd;
    prd.source.ptr = slot;
    prd.read_callback = data_read_cb;
    int32_t id = nghttp2_submit_request(conn->session, NULL, nva, n, &prd,
                                        slot);
    if (id < 0) {
        free(slot);
        return id == NGHTTP2_ERR_NOMEM ? -ENOMEM : KEEL_EIO;
    }
    slot->rpc = rpc;
    slot->conn = conn;
    slot->stream_id = id;
    slot->next = conn->slots;
    if (conn->slots) {
        conn->slots->prev = slot;
    }
    conn->slots = slot;
    conn->nstreams++;
    rpc->slot = slot;
    rpc->conn = conn;
    rpc->state = RPC_SUBMITTED;
    conn->dirty = 1;
    return 0;
}

static void dispatch(struct keel_client *c)
{
    c->need_dispatch = 0;
    if (c->closing || c->pending_head == NULL) {
        return;
    }
    if (c->conn == NULL) {
        if (!c->backoff_active) {
            conn_open(c);
        }
        return;
    }
    if (c->conn->state != CONN_READY) {
        return;
    }
    int want_token = 0;
    if (c->username && c->token == NULL) {
        for (struct keel_rpc *r = c->pending_head; r; r = r->pnext) {
            want_token |= !(r->flags & KEEL_CALL_NO_AUTH);
        }
    }
    if (want_token && !c->auth_inflight) {
        Etcdserverpb__AuthenticateRequest req =
            ETCDSERVERPB__AUTHENTICATE_REQUEST__INIT;
        req.name = c->username;
        req.password = c->password;
        struct keel_call_opts o = {c->dial_timeout + 5000, KEEL_CALL_NO_AUTH};
        if (keel_call_start(c, &c->auth_call, KEEL_M_AUTHENTICATE, &req.base,
                            &etcdserverpb__authenticate_response__descriptor,
                            &o, auth_done) == 0) {
            c->auth_inflight = 1;
        }
    }
    struct keel_conn *conn = c->conn;
    struct keel_rpc *r = c->pending_head;
    while (r) {
        struct keel_rpc *next = r->pnext;
        if (!(c->username && !(r->flags & KEEL_CALL_NO_AUTH) && !c->token)) {
            pending_remove(c, r);
            int rv = rpc_submit(conn, r);
            if (rv != 0) {
                rpc_finish(r, KEEL_GRPC_INTERNAL, keel_strerror(rv), 0);
            }
        }
        r = next;
    }
}

static void auth_done(struct keel_call *call)
{
    struct keel_client *c =
        (struct keel_client *)((char *)call -
                               offsetof(struct keel_client, auth_call));
    c->auth_inflight = 0;
    if (call->status == KEEL_GRPC_OK) {
        Etcdserverpb__AuthenticateResponse *r = (void *)call->resp;
        free(c->token);
        c->token = strdup(r->token ? r->token : "");
    } else {
        /* Every call waiting for a token fails like Authenticate did. */
        struct keel_rpc *r = c->pending_head;
        while (r) {
            struct keel_rpc *next = r->pnext;
            if (!(r->flags & KEEL_CALL_NO_AUTH)) {
                rpc_finish(r, call->status, call->message, 0);
            }
            r = next;
        }
    }
    keel_call_cleanup(call);
    c->need_dispatch = 1;
    schedule(c);
}

/* ---- loop handles -------------------------------------------------------- */

static void client_handle_closed(uv_handle_t *h)
{
    struct keel_client *c = h->data;
    if (--c->handles > 0) {
        return;
    }
    if (c->close_cb) {
        c->close_cb(c, c->close_data); /* c is freed when it returns */
    }
    for (size_t i = 0; i < c->n_eps; i++) {
        endpoint_free(&c->eps[i]);
    }
    free(c->eps);
    free(c->username);
    free(c->password);
    free(c->token);
    SSL_CTX_free(c->ssl_ctx);
    free(c);
}

static int has_work(struct keel_client *c)
{
    if (c->done_head || c->need_dispatch) {
        return 1;
    }
    for (struct keel_conn *k = c->conns; k; k = k->next) {
        if (k->dirty || k->state == CONN_FAILED) {
            return 1;
        }
    }
    return 0;
}

static void idle_cb(uv_idle_t *h)
{
    struct keel_client *c = h->data;
    for (int round = 0; round < 8 && has_work(c); round++) {
        for (struct keel_conn *k = c->conns; k; k = k->next) {
            if (k->state == CONN_FAILED) {
                conn_teardown(k);
            }
        }
        if (c->need_dispatch) {
            dispatch(c);
        }
        for (struct keel_conn *k = c->conns; k; k = k->next) {
            if (k->dirty) {
                conn_flush(k);
            }
        }
        /* User callbacks last: they may start calls or close the client. */
        while (c->done_head) {
            struct keel_rpc *rpc = c->done_head;
            c->done_head = rpc->done_next;
            if (c->done_head == NULL) {
                c->done_tail = NULL;
            }
            rpc_deliver(rpc);
        }
    }
    if (c->closing && c->conns == NULL && c->active == NULL &&
        c->done_head == NULL) {
        uv_idle_stop(&c->idle);
        if (c->handles == 3 && !uv_is_closing((uv_handle_t *)&c->idle)) {
            uv_close((uv_handle_t *)&c->idle, client_handle_closed);
            uv_close((uv_handle_t *)&c->tick, client_handle_closed);
            uv_close((uv_handle_t *)&c->backoff, client_handle_closed);
        }
        return;
    }
    if (!has_work(c)) {
        uv_idle_stop(&c->idle);
    }
}

static void schedule(struct keel_client *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->idle)) {
        uv_idle_start(&c->idle, idle_cb);
    }
}

static void tick_cb(uv_timer_t *t)
{
    struct keel_client *c = t->data;
    uint64_t now = uv_now(c->loop);
    int any = 0;
    struct keel_rpc *r = c->active;
    while (r) {
        struct keel_rpc *next = r->next;
        if (r->deadline) {
            if (r->deadline <= now) {
                rpc_finish(r, KEEL_GRPC_DEADLINE_EXCEEDED,
                           KEEL_DEADLINE_MESSAGE, 1);
            } else {
                any = 1;
            }
        }
        r = next;
    }
    if (!any) {
        uv_timer_stop(&c->tick);
        c->tick_active = 0;
    } else {
        c->tick_active = 1;
    }
}

static void backoff_cb(uv_timer_t *t)
{
    struct keel_client *c = t->data;
    c->backoff_active = 0;
    c->need_dispatch = 1;
    schedule(c);
}

/* Run the user's callback of a finished rpc (from idle). */
static void rpc_deliver(struct keel_rpc *rpc)
{
    rpc->state = RPC_IDLE;
    if (rpc->kind == RPC_UNARY) {
        struct keel_call *call =
            (struct keel_call *)((char *)rpc - offsetof(struct keel_call, rpc));
        call->status = rpc->final_code;
        const char *m = rpc->final_message ? rpc->final_message : "";
        char *copy = keel_arena_dup(&call->arena, m, strlen(m) + 1);
        call->message = copy ? copy : "";
        if (call->status != KEEL_GRPC_OK) {
            call->resp = NULL;
        }
        rpc_release(rpc);
        call->cb(call);
        return;
    }
    struct keel_stream *s =
        (struct keel_stream *)((char *)rpc - offsetof(struct keel_stream, rpc));
    char *m = rpc->final_message;
    rpc->final_message = NULL;
    int code = rpc->final_code;
    rpc_release(rpc);
    keel_arena_free(&s->arena);
    s->end_cb(s, code, m ? m : "");
    free(m);
}

/* ---- public: client ------------------------------------------------------ */

/* The TLS context: TLS 1.2+ (etcd's minimum), the CA file or the system
 * roots, the client certificate. tls NULL: an https:// endpoint without a
 * TLS configuration verifies against the system roots (clientv3 does). */
static int tls_ctx_new(struct keel_client *c, const struct keel_tls_config *tls)
{
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (c->ssl_ctx == NULL) {
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION);
    int ok = 1;
    if (tls != NULL && tls->cacert != NULL && tls->cacert[0] != '\0') {
        /* As Go's cert pool: what parses is trusted; a file with no
         * certificate leaves the pool empty and every handshake fails. */
        (void)SSL_CTX_load_verify_locations(c->ssl_ctx, tls->cacert, NULL);
    } else {
        ok = SSL_CTX_set_default_verify_paths(c->ssl_ctx);
    }
    if (ok && tls != NULL && tls->cert != NULL && tls->cert[0] != '\0') {
        ok = SSL_CTX_use_certificate_chain_file(c->ssl_ctx, tls->cert) == 1 &&
             SSL_CTX_use_PrivateKey_file(c->ssl_ctx,
                                         tls->key ? tls->key : tls->cert,
                                         SSL_FILETYPE_PEM) == 1 &&
             SSL_CTX_check_private_key(c->ssl_ctx) == 1;
    }
    c->tls_skip_verify = tls != NULL && tls->insecure_skip_verify;
    SSL_CTX_set_verify(c->ssl_ctx,
                       c->tls_skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       NULL);
    ERR_clear_error();
    return ok ? 0 : KEEL_EINVAL;
}

int keel_client_new(uv_loop_t *loop, const struct keel_client_config *cfg,
                    struct keel_client **out)
{
    int rv;
    if (cfg == NULL || cfg->n_endpoints == 0 || cfg->endpoints == NULL) {
        return KEEL_EINVAL;
    }
    struct keel_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return -ENOMEM;
    }
    c->loop = loop;
    c->dial_timeout = cfg->dial_timeout_ms ? cfg->dial_timeout_ms : 2000;
    c->keepalive_time = cfg->keepalive_time_ms;
    c->keepalive_timeout = cfg->keepalive_timeout_ms
                               ? cfg->keepalive_timeout_ms
                               : cfg->keepalive_time_ms;
    c->eps = calloc(cfg->n_endpoints, sizeof(*c->eps));
    if (c->eps == NULL) {
        rv = -ENOMEM;
        goto err;
    }
    c->n_eps = cfg->n_endpoints;
    for (size_t i = 0; i < cfg->n_endpoints; i++) {
        rv = endpoint_parse(cfg->endpoints[i], &c->eps[i], cfg->tls != NULL);
        if (rv != 0) {
            goto err;
        }
        if (c->eps[i].tls && c->ssl_ctx == NULL) {
            rv = tls_ctx_new(c, cfg->tls);
            if (rv != 0) {
                goto err;
            }
        }
    }
    if (cfg->username && cfg->username[0]) {
        c->username = strdup(cfg->username);
        c->password = strdup(cfg->password ? cfg->password : "");
        if (c->username == NULL || c->password == NULL) {
            rv = -ENOMEM;
            goto err;
        }
    }
    uv_idle_init(loop, &c->idle);
    uv_timer_init(loop, &c->tick);
    uv_timer_init(loop, &c->backoff);
    c->idle.data = c->tick.data = c->backoff.data = c;
    c->handles = 3;
    *out = c;
    return 0;

err:
    SSL_CTX_free(c->ssl_ctx);
    if (c->eps) {
        for (size_t i = 0; i < c->n_eps; i++) {
            endpoint_free(&c->eps[i]);
        }
    }
    free(c->eps);
    free(c->username);
    free(c->password);
    free(c);
    assert(rv != 0);
    return rv;
}

void keel_client_connect(struct keel_client *c)
{
    if (c->conn == NULL && !c->closing && !c->backoff_active) {
        conn_open(c);
        schedule(c);
    }
}

int keel_client_connected(const struct keel_client *c)
{
    return c->conn != NULL && c->conn->state == CONN_READY;
}

const char *keel_client_endpoint(const struct keel_client *c)
{
    return c->eps[c->conn ? c->conn->endpoint : c->cur].raw;
}

const char *keel_client_last_error(const struct keel_client *c)
{
    return c->last_error;
}

void keel_client_close(struct keel_client *c, keel_client_close_cb cb,
                       void *data)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    c->close_cb = cb;
    c->close_data = data;
    struct keel_rpc *r = c->active;
    while (r) {
        struct keel_rpc *next = r->next;
        rpc_finish(r, KEEL_GRPC_CANCELED, "grpc: the client connection is "
                                          "closing", 1);
        r = next;
    }
    for (struct keel_conn *k = c->conns; k; k = k->next) {
        if (k->state != CONN_CLOSING) {
            conn_fail(k, "client closed");
        }
    }
    uv_timer_stop(&c->backoff);
    uv_timer_stop(&c->tick);
    c->backoff_active = 0;
    c->tick_active = 0;
    schedule(c);
}

/* ---- public: calls ------------------------------------------------------- */

int keel_call_start(struct keel_client *c, struct keel_call *call,
                    const char *path, const ProtobufCMessage *req,
                    const ProtobufCMessageDescriptor *resp_desc,
                    const struct keel_call_opts *opts, keel_call_cb cb)
{
    int rv = rpc_begin(c, &call->rpc, RPC_UNARY, path, resp_desc, opts);
    if (rv != 0) {
        return rv;
    }
    /* Small blocks: thousands of calls may be in flight at once; a big
     * response gets a block of its own. */
    keel_arena_init(&call->arena, 2048);
    call->status = -1;
    call->message = "";
    call->resp = NULL;
    call->cb = cb;
    rv = rpc_append(&call->rpc, req);
    if (rv != 0) {
        rpc_release(&call->rpc);
        return rv;
    }
    call->rpc.send_closed = 1;
    rpc_activate(&call->rpc);
    return 0;
}

void keel_call_cancel(struct keel_call *call)
{
    rpc_finish(&call->rpc, KEEL_GRPC_CANCELED, "context canceled", 1);
}

void keel_call_cleanup(struct keel_call *call)
{
    keel_arena_free(&call->arena);
    call->resp = NULL;
    call->message = "";
}

int keel_stream_start(struct keel_client *c, struct keel_stream *s,
                      const char *path,
                      const ProtobufCMessageDescriptor *resp_desc,
                      const struct keel_call_opts *opts,
                      keel_stream_msg_cb msg_cb, keel_stream_end_cb end_cb)
{
    int rv = rpc_begin(c, &s->rpc, RPC_STREAM, path, resp_desc, opts);
    if (rv != 0) {
        return rv;
    }
    keel_arena_init(&s->arena, 4096);
    s->msg_cb = msg_cb;
    s->end_cb = end_cb;
    rpc_activate(&s->rpc);
    return 0;
}

static int stream_open(struct keel_stream *s)
{
    return s->rpc.state == RPC_PENDING || s->rpc.state == RPC_SUBMITTED;
}

static void stream_kick(struct keel_stream *s)
{
    struct keel_rpc_slot *slot = s->rpc.slot;
    if (slot && slot->conn && slot->conn->session) {
        nghttp2_session_resume_data(slot->conn->session, slot->stream_id);
        conn_dirty(slot->conn);
    }
}

int keel_stream_send(struct keel_stream *s, const ProtobufCMessage *msg)
{
    if (!stream_open(s) || s->rpc.send_closed) {
        return KEEL_EINVAL;
    }
    int rv = rpc_append(&s->rpc, msg);
    if (rv != 0) {
        return rv;
    }
    stream_kick(s);
    return 0;
}

int keel_stream_close_send(struct keel_stream *s)
{
    if (!stream_open(s) || s->rpc.send_closed) {
        return KEEL_EINVAL;
    }
    s->rpc.send_closed = 1;
    stream_kick(s);
    return 0;
}

void keel_stream_cancel(struct keel_stream *s)
{
    rpc_finish(&s->rpc, KEEL_GRPC_CANCELED, "context canceled", 1);
}

/* ---- typed KV wrappers --------------------------------------------------- */

size_t keel_prefix_end(const char *prefix, size_t len, char *out)
{
    if (len > 0) {
        memcpy(out, prefix, len);
    }
    for (size_t i = len; i > 0; i--) {
        if ((unsigned char)out[i - 1] < 0xff) {
            out[i - 1]++;
            return i;
        }
    }
    out[0] = '\0';
    return 1;
}

int keel_get(struct keel_client *c, struct keel_call *call, const char *key,
             const char *range_end, int64_t rev, uint64_t timeout_ms,
             keel_call_cb cb)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    if (range_end) {
        req.range_end.data = (uint8_t *)range_end;
        req.range_end.len = strlen(range_end);
        if (req.range_end.len == 0) { /* "" can't say "\0": etcd's from-key */
            static uint8_t zero = 0;
            req.range_end.data = &zero;
            req.range_end.len = 1;
        }
    }
    req.revision = rev;
    struct keel_call_opts o = {timeout_ms, KEEL_CALL_IDEMPOTENT};
    return keel_call_start(c, call, KEEL_M_RANGE, &req.base,
                           &etcdserverpb__range_response__descriptor, &o, cb);
}

int keel_put(struct keel_client *c, struct keel_call *call, const char *key,
             const void *value, size_t value_len, int64_t lease,
             uint64_t timeout_ms, keel_call_cb cb)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    req.value.data = (uint8_t *)value;
    req.value.len = value_len;
    req.lease = lease;
    struct keel_call_opts o = {timeout_ms, 0};
    return keel_call_start(c, call, KEEL_M_PUT, &req.base,
                           &etcdserverpb__put_response__descriptor, &o, cb);
}

int keel_delete(struct keel_client *c, struct keel_call *call,
                const char *key, const char *range_end, uint64_t timeout_ms,
                keel_call_cb cb)
{
    Etcdserverpb__DeleteRangeRequest req =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    if (range_end) {
        req.range_end.data = (uint8_t *)range_end;
        req.range_end.len = strlen(range_end);
    }
    struct keel_call_opts o = {timeout_ms, 0};
    return keel_call_start(c, call, KEEL_M_DELETE_RANGE, &req.base,
                           &etcdserverpb__delete_range_response__descriptor,
                           &o, cb);
}

uv_loop_t *keel__client_loop(struct keel_client *c)
{
    return c->loop;
}
