/*
 * libkeel's transport against a scripted HTTP/2 gRPC server (nghttp2 server
 * session on the same uv loop): what etcd never does on purpose but a
 * network or another server may. Each method path selects a scenario:
 *
 *   /t/split      one response message cut into 3-byte DATA frames
 *   /t/multi      three messages in one DATA frame (server stream)
 *   /t/trailers   trailers-only response, percent-encoded grpc-message
 *   /t/http503    HTTP 503 without any grpc-status
 *   /t/rst        RST_STREAM(INTERNAL_ERROR) instead of an answer
 *   /t/truncated  a message shorter than its prefix says, then status 0
 *   /t/compressed a message with the compressed flag set
 *   /t/drop       the connection closes after the response headers; the
 *                 second attempt (idempotent calls only) is answered
 *   /t/hang       never answered (deadline)
 *   /t/stall      headers, then the server stops reading (so it never
 *                 acknowledges a keepalive PING)
 *   /t/unavail    Unavailable "etcdserver: no leader" from the first
 *                 listener, an answer from the second
 *
 * No real server is involved, so this runs as a unit test.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

/* ---- scripted server -------------------------------------------------------- */

struct srv_stream
{
    char path[64];
    char timeout[32];
    char hasleader[16];
    uint8_t body[256]; /* what we send */
    size_t len, off;
    size_t chunk; /* max bytes per DATA frame */
    int trailers_status;
    const char *trailers_message;
};

struct srv_conn
{
    struct srv_stream *streams[64]; /* freed with the session */
    int nstreams;
    int second; /* accepted on the second listener */
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe; /* for the unix socket listener */
    };
    nghttp2_session *session;
    char rbuf[65536];
    int closing;
};

static uv_loop_t loop;
static uv_tcp_t listener, listener2;
static int answered_by_second;
static char endpoint[64];
static int drop_attempts;
static char last_timeout[32];
static char last_hasleader[16];
static struct srv_conn *conns[8];
static int nconns;

static void srv_flush(struct srv_conn *c);

static void srv_closed(uv_handle_t *h)
{
    struct srv_conn *c = h->data;
    nghttp2_session_del(c->session);
    for (int i = 0; i < c->nstreams; i++) {
        free(c->streams[i]);
    }
    for (int i = 0; i < nconns; i++) {
        if (conns[i] == c) {
            conns[i] = conns[--nconns];
        }
    }
    free(c);
}

static void srv_close(struct srv_conn *c)
{
    if (c->closing != 1) {
        c->closing = 1;
        uv_close((uv_handle_t *)&c->tcp, srv_closed);
    }
}

/* Frame a RangeResponse whose count says which message it is. */
static size_t frame_msg(uint8_t *out, int64_t count)
{
    Etcdserverpb__RangeResponse r = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    r.count = count;
    size_t n = protobuf_c_message_pack(&r.base, out + 5);
    out[0] = 0;
    out[1] = out[2] = 0;
    out[3] = (uint8_t)(n >> 8);
    out[4] = (uint8_t)n;
    return n + 5;
}

static ssize_t srv_read(nghttp2_session *session, int32_t id, uint8_t *buf,
                        size_t length, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)user;
    struct srv_stream *s = src->ptr;
    size_t n = s->len - s->off;
    if (n > length) {
        n = length;
    }
    if (s->chunk && n > s->chunk) {
        n = s->chunk;
    }
    memcpy(buf, s->body + s->off, n);
    s->off += n;
    if (s->off == s->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        char st[8];
        snprintf(st, sizeof(st), "%d", s->trailers_status);
        nghttp2_nv tr[2] = {
            {(uint8_t *)"grpc-status", (uint8_t *)st, 11, strlen(st), 0},
            {(uint8_t *)"grpc-message", (uint8_t *)s->trailers_message, 12,
             strlen(s->trailers_message), 0},
        };
        nghttp2_submit_trailer(session, id, tr, 2);
    }
    return (ssize_t)n;
}

#define NV(n, v)                                                               \
    {                                                                          \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0        \
    }

static void respond(nghttp2_session *session, int32_t id,
                    struct srv_stream *s, struct srv_conn *c)
{
    nghttp2_nv ok[] = {NV(":status", "200"),
                       NV("content-type", "application/grpc")};
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = srv_read};
    s->trailers_status = 0;
    s->trailers_message = "";
    snprintf(last_timeout, sizeof(last_timeout), "%s", s->timeout);
    snprintf(last_hasleader, sizeof(last_hasleader), "%s", s->hasleader);
    if (strcmp(s->path, "/t/split") == 0) {
        s->len = frame_msg(s->body, 42);
        s->chunk = 3;
        nghttp2_submit_response(session, id, ok, 2, &prd);
    } else if (strcmp(s->path, "/t/multi") == 0) {
        s->len = frame_msg(s->body, 1);
        s->len += frame_msg(s->body + s->len, 2);
        s->len += frame_msg(s->body + s->len, 3);
        nghttp2_submit_response(session, id, ok, 2, &prd);
    } else if (strcmp(s->path, "/t/trailers") == 0) {
        nghttp2_nv only[] = {
            NV(":status", "200"), NV("content-type", "application/grpc"),
            NV("grpc-status", "5"),
            NV("grpc-message", "etcdserver:%20requested%20lease%20not%20found")};
        nghttp2_submit_response(session, id, only, 4, NULL);
    } else if (strcmp(s->path, "/t/http503") == 0) {
        nghttp2_nv h[] = {NV(":status", "503"), NV("content-type", "text/plain")};
        nghttp2_submit_response(session, id, h, 2, NULL);
    } else if (strcmp(s->path, "/t/rst") == 0) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
                                  NGHTTP2_INTERNAL_ERROR);
    } else if (strcmp(s->path, "/t/truncated") == 0) {
        s->len = frame_msg(s->body, 7) - 1;
        nghttp2_submit_response(session, id, ok, 2, &prd);
    } else if (strcmp(s->path, "/t/compressed") == 0) {
        s->len = frame_msg(s->body, 7);
        s->body[0] = 1;
        nghttp2_submit_response(session, id, ok, 2, &prd);
    } else if (strcmp(s->path, "/t/drop") == 0) {
        if (drop_attempts++ == 0) {
            nghttp2_submit_headers(session, NGHTTP2_FLAG_NONE, id, NULL, ok,
                                   2, NULL);
            srv_flush(c);
            srv_close(c);
            return;
        }
        s->len = frame_msg(s->body, 99);
        nghttp2_submit_response(session, id, ok, 2, &prd);
    }
    if (strcmp(s->path, "/t/unavail") == 0) {
        if (!c->second) {
            nghttp2_nv only[] = {NV(":status", "200"),
                                 NV("content-type", "application/grpc"),
                                 NV("grpc-status", "14"),
                                 NV("grpc-message", "etcdserver: no leader")};
            nghttp2_submit_response(session, id, only, 4, NULL);
        } else {
            answered_by_second = 1;
            s->len = frame_msg(s->body, 2);
            nghttp2_submit_response(session, id, ok, 2, &prd);
        }
    }
    if (strcmp(s->path, "/t/stall") == 0) {
        nghttp2_submit_headers(session, NGHTTP2_FLAG_NONE, id, NULL, ok, 2,
                               NULL);
        srv_flush(c);
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->closing = 2; /* no more writes; closed at teardown */
    }
    /* /t/hang: nothing */
}

static int srv_begin_headers(nghttp2_session *session,
                             const nghttp2_frame *frame, void *user)
{
    struct srv_conn *c = user;
    struct srv_stream *s = calloc(1, sizeof(*s));
    c->streams[c->nstreams++] = s;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    return 0;
}

static int srv_header(nghttp2_session *session, const nghttp2_frame *frame,
                      const uint8_t *name, size_t namelen,
                      const uint8_t *value, size_t valuelen, uint8_t flags,
                      void *user)
{
    (void)flags;
    (void)user;
    struct srv_stream *s =
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL) {
        return 0;
    }
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        snprintf(s->path, sizeof(s->path), "%.*s", (int)valuelen, value);
    } else if (namelen == 9 && memcmp(name, "hasleader", 9) == 0) {
        snprintf(s->hasleader, sizeof(s->hasleader), "%.*s", (int)valuelen,
                 value);
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        snprintf(s->timeout, sizeof(s->timeout), "%.*s", (int)valuelen,
                 value);
    }
    return 0;
}

static int srv_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
                          void *user)
{
    struct srv_conn *c = user;
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct srv_stream *s =
            nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (s) {
            respond(session, frame->hd.stream_id, s, c);
        }
    }
    return 0;
}

static int srv_stream_close(nghttp2_session *session, int32_t id,
                            uint32_t code, void *user)
{
    (void)code;
    struct srv_conn *c = user;
    struct srv_stream *s = nghttp2_session_get_stream_user_data(session, id);
    for (int i = 0; i < c->nstreams; i++) {
        if (c->streams[i] == s) {
            c->streams[i] = c->streams[--c->nstreams];
            free(s);
            break;
        }
    }
    return 0;
}

static void srv_write_cb(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void srv_flush(struct srv_conn *c)
{
    const uint8_t *data;
    ssize_t n;
    while (!c->closing && (n = nghttp2_session_mem_send(c->session, &data)) > 0) {
        uv_write_t *req = malloc(sizeof(*req) + (size_t)n);
        memcpy(req + 1, data, (size_t)n);
        uv_buf_t b = uv_buf_init((char *)(req + 1), (unsigned)n);
        uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, srv_write_cb);
    }
}

static void srv_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)s;
    struct srv_conn *c = h->data;
    *b = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void srv_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct srv_conn *c = st->data;
    if (n < 0) {
        srv_close(c);
        return;
    }
    if (c->closing) {
        return;
    }
    nghttp2_session_mem_recv(c->session, (const uint8_t *)b->base, (size_t)n);
    srv_flush(c);
}

static void srv_on_conn(uv_stream_t *l, int status)
{
    assert_int_equal(status, 0);
    struct srv_conn *c = calloc(1, sizeof(*c));
    if (l->type == UV_NAMED_PIPE) {
        uv_pipe_init(&loop, &c->pipe, 0);
    } else {
        uv_tcp_init(&loop, &c->tcp);
    }
    c->tcp.data = c;
    c->second = l == (uv_stream_t *)&listener2;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb,
                                                            srv_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, srv_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb,
                                                           srv_stream_close);
    nghttp2_session_server_new(&c->session, cb, c);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, NULL, 0);
    conns[nconns++] = c;
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read_cb);
    srv_flush(c);
}

/* ---- fixture ------------------------------------------------------------------ */

static struct keel_client *client;
static uint64_t keepalive_ms; /* for the next setup */

static int setup(void **state)
{
    (void)state;
    uv_loop_init(&loop);
    uv_tcp_init(&loop, &listener);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&listener, (struct sockaddr *)&a, 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&listener, (struct sockaddr *)&a, &len);
    snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d",
             ntohs(a.sin_port));
    uv_listen((uv_stream_t *)&listener, 8, srv_on_conn);
    const char *eps[1] = {endpoint};
    struct keel_client_config cfg = {.endpoints = eps,
                                     .n_endpoints = 1,
                                     .keepalive_time_ms = keepalive_ms,
                                     .keepalive_timeout_ms = keepalive_ms};
    drop_attempts = 0;
    return keel_client_new(&loop, &cfg, &client);
}

static int teardown(void **state)
{
    (void)state;
    keel_client_close(client, NULL, NULL);
    while (nconns > 0) {
        srv_close(conns[0]);
        uv_run(&loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&listener, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : -1;
}

/* ---- helpers -------------------------------------------------------------------- */

static int done;
static void on_done(struct keel_call *call)
{
    (void)call;
    done = 1;
}

static void call(struct keel_call *c, const char *path, unsigned flags,
                 uint64_t timeout_ms)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    struct keel_call_opts o = {timeout_ms, flags};
    done = 0;
    assert_int_equal(keel_call_start(client, c, path, &req.base,
                                     &etcdserverpb__range_response__descriptor,
                                     &o, on_done),
                     0);
    while (!done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
}

/* ---- tests -------------------------------------------------------------------- */

static void test_transport_split_message(void **state)
{
    (void)state;
    struct keel_call c;
    call(&c, "/t/split", 0, 5000);
    assert_int_equal(c.status, KEEL_GRPC_OK);
    assert_int_equal(((Etcdserverpb__RangeResponse *)c.resp)->count, 42);
    /* The deadline travelled as grpc-timeout in milliseconds. */
    assert_true(strlen(last_timeout) >= 2);
    assert_int_equal(last_timeout[strlen(last_timeout) - 1], 'm');
    assert_true(atoi(last_timeout) > 4000 && atoi(last_timeout) <= 5000);
    assert_string_equal(last_hasleader, "");
    keel_call_cleanup(&c);
    /* Without a deadline there is no grpc-timeout; require-leader adds
     * clientv3's hasleader metadata. */
    call(&c, "/t/split", KEEL_CALL_REQUIRE_LEADER, 0);
    assert_int_equal(c.status, KEEL_GRPC_OK);
    assert_string_equal(last_timeout, "");
    assert_string_equal(last_hasleader, "true");
    keel_call_cleanup(&c);
}

static int64_t counts[8];
static int nmsgs, end_status = -1;
static void on_msg(struct keel_stream *s, ProtobufCMessage *m)
{
    (void)s;
    counts[nmsgs++] = ((Etcdserverpb__RangeResponse *)m)->count;
}
static void on_end(struct keel_stream *s, int status, const char *msg)
{
    (void)s;
    (void)msg;
    end_status = status;
}

static void test_transport_many_messages_one_frame(void **state)
{
    (void)state;
    struct keel_stream s = {0};
    nmsgs = 0;
    end_status = -1;
    assert_int_equal(keel_stream_start(client, &s, "/t/multi",
                                       &etcdserverpb__range_response__descriptor,
                                       NULL, on_msg, on_end),
                     0);
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    assert_int_equal(keel_stream_send(&s, &req.base), 0);
    assert_int_equal(keel_stream_close_send(&s), 0);
    while (end_status < 0) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(end_status, KEEL_GRPC_OK);
    assert_int_equal(nmsgs, 3);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 2);
    assert_int_equal(counts[2], 3);
}

static void test_transport_trailers_only(void **state)
{
    (void)state;
    struct keel_call c;
    call(&c, "/t/trailers", 0, 0);
    assert_int_equal(c.status, KEEL_GRPC_NOT_FOUND);
    assert_string_equal(c.message, "etcdserver: requested lease not found");
    assert_null(c.resp);
    keel_call_cleanup(&c);
}

static void test_transport_http_status_without_grpc_status(void **state)
{
    (void)state;
    struct keel_call c;
    call(&c, "/t/http503", 0, 0);
    assert_int_equal(c.status, KEEL_GRPC_UNAVAILABLE);
    assert_string_equal(c.message,
                        "unexpected HTTP status code received from server: "
                        "503");
    keel_call_cleanup(&c);
}

static void test_transport_rst_stream(void **state)
{
    (void)state;
    struct keel_call c;
    call(&c, "/t/rst", 0, 0);
    assert_int_equal(c.status, KEEL_GRPC_INTERNAL);
    assert_non_null(strstr(c.message, "RST_STREAM"));
    keel_call_cleanup(&c);
}

static void test_transport_truncated_and_compressed(void **state)
{
    (void)state;
    struct keel_call c;
    call(&c, "/t/truncated", 0, 0);
    assert_int_equal(c.status, KEEL_GRPC_INTERNAL);
    assert_string_equal(c.message, "grpc: truncated message at end of stream");
    keel_call_cleanup(&c);
    call(&c, "/t/compressed", 0, 0);
    assert_int_equal(c.status, KEEL_GRPC_INTERNAL);
    keel_call_cleanup(&c);
}

static void test_transport_dropped_connection(void **state)
{
    (void)state;
    struct keel_call c;
    /* Not idempotent: the request may have been applied; report it. */
    call(&c, "/t/drop", 0, 5000);
    assert_int_equal(c.status, KEEL_GRPC_UNAVAILABLE);
    assert_string_equal(c.message, "transport is closing");
    keel_call_cleanup(&c);
    /* Idempotent: retried on a new connection and answered. */
    drop_attempts = 0;
    call(&c, "/t/drop", KEEL_CALL_IDEMPOTENT, 5000);
    assert_int_equal(c.status, KEEL_GRPC_OK);
    assert_int_equal(((Etcdserverpb__RangeResponse *)c.resp)->count, 99);
    assert_int_equal(drop_attempts, 2);
    keel_call_cleanup(&c);
}

static void test_transport_deadline_and_concurrency(void **state)
{
    (void)state;
    /* A hanging call does not hold up others on the same connection. */
    struct keel_call hang, quick;
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    struct keel_call_opts o = {200, 0};
    int hang_done = 0;
    hang.data = &hang_done;
    assert_int_equal(keel_call_start(client, &hang, "/t/hang", &req.base,
                                     &etcdserverpb__range_response__descriptor,
                                     &o, on_done),
                     0);
    call(&quick, "/t/split", 0, 0);
    assert_int_equal(quick.status, KEEL_GRPC_OK);
    keel_call_cleanup(&quick);
    done = 0;
    while (!done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    assert_int_equal(hang.status, KEEL_GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(hang.message, KEEL_DEADLINE_MESSAGE);
    keel_call_cleanup(&hang);
}

/* A silent server is detected by keepalive pings; a live one is not
 * disturbed by them. */
static int setup_keepalive(void **state)
{
    keepalive_ms = 100;
    int rv = setup(state);
    keepalive_ms = 0;
    return rv;
}

static void test_transport_keepalive(void **state)
{
    (void)state;
    struct keel_call c;
    /* Pings answered for 500 ms: the call ends by its deadline. */
    call(&c, "/t/hang", 0, 500);
    assert_int_equal(c.status, KEEL_GRPC_DEADLINE_EXCEEDED);
    keel_call_cleanup(&c);
    /* Pings unanswered: the connection is given up well before 5 s. */
    uint64_t t0 = uv_hrtime();
    call(&c, "/t/stall", 0, 5000);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(c.status, KEEL_GRPC_UNAVAILABLE);
    assert_true(ms < 2000);
    assert_string_equal(keel_client_last_error(client),
                        "keepalive ping not acknowledged");
    keel_call_cleanup(&c);
}

/* unix:// endpoints: the same gRPC over a unix socket. */
static int closed_flag;
static void on_client_closed(struct keel_client *c, void *data)
{
    (void)c;
    *(int *)data = 1;
}

static void pipe_closed(uv_handle_t *h)
{
    *(int *)h->data = 1;
}

static void test_transport_unix_socket_and_close_cb(void **state)
{
    (void)state;
    char path[] = "/tmp/keel-transport.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    uv_pipe_t pl;
    uv_pipe_init(&loop, &pl, 0);
    assert_int_equal(uv_pipe_bind(&pl, path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&pl, 8, srv_on_conn), 0);

    char ep[64];
    snprintf(ep, sizeof(ep), "unix://%s", path);
    const char *eps[1] = {ep};
    struct keel_client_config cfg = {.endpoints = eps, .n_endpoints = 1};
    struct keel_client *uc;
    assert_int_equal(keel_client_new(&loop, &cfg, &uc), 0);
    struct keel_client *tcp_client = client;
    client = uc;
    struct keel_call c;
    call(&c, "/t/split", 0, 2000);
    assert_int_equal(c.status, KEEL_GRPC_OK);
    assert_int_equal(((Etcdserverpb__RangeResponse *)c.resp)->count, 42);
    keel_call_cleanup(&c);
    client = tcp_client;

    /* keel_client_close runs its callback once everything is released. */
    closed_flag = 0;
    keel_client_close(uc, on_client_closed, &closed_flag);
    while (!closed_flag) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    /* pl lives on this stack frame: wait until libuv is done with it. */
    pl.data = &closed_flag;
    closed_flag = 0;
    uv_close((uv_handle_t *)&pl, pipe_closed);
    while (!closed_flag) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    unlink(path);
}

/* Unavailable from one endpoint: an idempotent call moves to the next one,
 * another call reports it. */
static void test_transport_unavailable_failover(void **state)
{
    (void)state;
    uv_tcp_init(&loop, &listener2);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&listener2, (struct sockaddr *)&a, 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&listener2, (struct sockaddr *)&a, &len);
    uv_listen((uv_stream_t *)&listener2, 8, srv_on_conn);
    char ep2[64];
    snprintf(ep2, sizeof(ep2), "127.0.0.1:%d", ntohs(a.sin_port));
    const char *eps[2] = {endpoint, ep2};
    struct keel_client_config cfg = {.endpoints = eps, .n_endpoints = 2};
    struct keel_client *two;
    assert_int_equal(keel_client_new(&loop, &cfg, &two), 0);
    struct keel_client *saved = client;
    client = two;

    struct keel_call c;
    answered_by_second = 0;
    call(&c, "/t/unavail", 0, 2000);
    assert_int_equal(c.status, KEEL_GRPC_UNAVAILABLE);
    assert_string_equal(c.message, "etcdserver: no leader");
    assert_int_equal(answered_by_second, 0);
    keel_call_cleanup(&c);

    call(&c, "/t/unavail", KEEL_CALL_IDEMPOTENT, 2000);
    assert_int_equal(c.status, KEEL_GRPC_OK);
    assert_int_equal(answered_by_second, 1);
    assert_string_equal(keel_client_endpoint(two), ep2);
    keel_call_cleanup(&c);

    client = saved;
    closed_flag = 0;
    keel_client_close(two, on_client_closed, &closed_flag);
    while (!closed_flag) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    listener2.data = &closed_flag;
    closed_flag = 0;
    uv_close((uv_handle_t *)&listener2, pipe_closed);
    while (!closed_flag) {
        uv_run(&loop, UV_RUN_ONCE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_transport_split_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transport_many_messages_one_frame,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_trailers_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_transport_http_status_without_grpc_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_rst_stream, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_transport_truncated_and_compressed,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_dropped_connection,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_deadline_and_concurrency,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_keepalive,
                                        setup_keepalive, teardown),
        cmocka_unit_test_setup_teardown(test_transport_unix_socket_and_close_cb,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_transport_unavailable_failover,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
