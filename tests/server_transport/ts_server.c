/*
 * The transport under test, on its own loop thread, with test services:
 *
 *   /etcdserverpb.Maintenance/Status    unary: fixed StatusResponse; records
 *                                       the authorization metadata
 *   /etcdserverpb.Auth/Authenticate     unary: token "tok-<name>"
 *   /etcdserverpb.KV/Range              unary, answered asynchronously
 *                                       (10 ms timer); key "sleep" is never
 *                                       answered until cancelled
 *   /etcdserverpb.KV/Put                unary: empty PutResponse
 *   /etcdserverpb.Watch/Watch           bidi: created + one PUT event per
 *                                       create request; records hasleader
 *   /etcdserverpb.Maintenance/Snapshot  server stream: 512+512+32 bytes
 *   /keeltest.Flood/Flood               server stream, raw bytes: 16 KiB
 *                                       messages every ms, ignoring
 *                                       back-pressure (a misbehaving producer)
 *   /keeltest.Paced/Paced               server stream, 64 x 64 KiB, paced by
 *                                       grpc_call_buffered + on_drain
 *   /keeltest.Count/Count               client stream: "n=<msgs> bytes=<sum>"
 *
 * and HTTP routes /health, /version, /echo (POST), /stream (chunked), /big
 * (64 KiB), /v3/
 * and /v3/kv/range (longest prefix wins).
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "grpc.h"
#include "listener.h"
#include "router.h"
#include "tls.h"
#include "ts.h"

struct ts_observed ts_obs;

static struct
{
    uv_loop_t loop;
    uv_async_t stop;
    uv_timer_t stats;
    pthread_t thread;
    struct grpc_server *grpc;
    struct router *router;
    struct listener tcp;
    struct listener unx;
    struct listener tls;   /* https, client certificates optional */
    struct listener mtls;  /* https, --client-cert-auth */
    struct listener drain; /* stopped gracefully by a test */
    struct listener ka;    /* HTTP/2 keepalive of 150 ms + 150 ms */
    struct listener unxs;  /* unixs:// */
    char tls_sock[128];
    uv_async_t drain_async;
    atomic_int drained;
    int drain_closed;
    char dir[64];
    char sock[128];
    atomic_size_t conns;
    atomic_size_t calls_live;
    pthread_mutex_t mu;
} S;

static void fill_header(Etcdserverpb__ResponseHeader *h)
{
    h->cluster_id = 0x1000;
    h->member_id = 0x2000;
    h->revision = 42;
    h->raft_term = 7;
}

/* ---- gRPC services ---- */

static void status_start(struct grpc_call *call,
                         const ProtobufCMessage *req,
                         void *data)
{
    Etcdserverpb__StatusResponse resp = ETCDSERVERPB__STATUS_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    /* clientv3 sends the auth token as "token" (rpctypes
     * TokenFieldNameGRPC); the gateway as "authorization". */
    const char *auth = grpc_call_header(call, "token");
    (void)req;
    (void)data;
    pthread_mutex_lock(&S.mu);
    snprintf(ts_obs.auth_seen, sizeof ts_obs.auth_seen, "%s",
             auth != NULL ? auth : "");
    snprintf(ts_obs.cn_seen, sizeof ts_obs.cn_seen, "%s",
             grpc_call_peer_cn(call));
    pthread_mutex_unlock(&S.mu);
    ts_obs.status_calls++;
    fill_header(&h);
    resp.header = &h;
    resp.version = "3.4.23";
    resp.dbsize = 24576;
    resp.leader = 0x2000;
    resp.raftindex = 100;
    resp.raftterm = 7;
    resp.raftappliedindex = 100;
    resp.dbsizeinuse = 16384;
    grpc_call_reply(call, &resp.base);
}

static void auth_start(struct grpc_call *call,
                       const ProtobufCMessage *req,
                       void *data)
{
    const Etcdserverpb__AuthenticateRequest *r = (const void *)req;
    Etcdserverpb__AuthenticateResponse resp =
        ETCDSERVERPB__AUTHENTICATE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    char tok[80];
    (void)data;
    if (strcmp(r->name, "bad") == 0) {
        grpc_call_fail_status(call, KEEL_GRPC_INVALID_ARGUMENT,
                              keel_strerror(KEEL_EAUTHFAILED));
        return;
    }
    snprintf(tok, sizeof tok, "tok-%s", r->name);
    fill_header(&h);
    resp.header = &h;
    resp.token = tok;
    grpc_call_reply(call, &resp.base);
}

static void put_start(struct grpc_call *call,
                      const ProtobufCMessage *req,
                      void *data)
{
    Etcdserverpb__PutResponse resp = ETCDSERVERPB__PUT_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    const uint8_t *raw;
    size_t len;
    (void)req;
    (void)data;
    grpc_call_request_bytes(call, &raw, &len);
    ts_obs.put_raw_len = (int)len;
    ts_obs.put_calls++;
    fill_header(&h);
    resp.header = &h;
    grpc_call_reply(call, &resp.base);
}

struct range_ctx
{
    uv_timer_t timer;
    struct grpc_call *call;
};

static void range_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void range_reply(uv_timer_t *t)
{
    struct range_ctx *ctx = t->data;
    struct grpc_call *call = ctx->call;
    const Etcdserverpb__RangeRequest *r = grpc_call_data(call);
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    Mvccpb__KeyValue *kvs[1] = {&kv};
    struct keel_arena *a = grpc_call_arena(call);
    uint8_t *v = keel_arena_alloc(a, r->key.len + 2);

    memcpy(v, "v:", 2);
    if (r->key.len > 0) {
        memcpy(v + 2, r->key.data, r->key.len);
    }
    fill_header(&h);
    kv.key = r->key;
    kv.value.data = v;
    kv.value.len = r->key.len + 2;
    kv.create_revision = 5;
    kv.mod_revision = 42;
    kv.version = 3;
    resp.header = &h;
    resp.kvs = kvs;
    resp.n_kvs = 1;
    resp.count = 1;
    /* The client may have gone meanwhile: reply is then a no-op. */
    grpc_call_reply(call, &resp.base);
    uv_close((uv_handle_t *)&ctx->timer, range_timer_closed);
}

/* The method's cancel callback: ordinary Ranges finish from their timer. */
static void range_cancel(struct grpc_call *call, int code, void *data)
{
    (void)call;
    (void)code;
    (void)data;
}

/* Per-call cancel callback of a "sleep" Range (grpc_call_on_cancel). */
static void sleep_cancel(struct grpc_call *call, int code, void *data)
{
    (void)data;
    ts_obs.range_cancel_code = code;
    ts_obs.range_cancels++;
    grpc_call_finish(call, KEEL_ECANCELED);
}

static void range_start(struct grpc_call *call,
                        const ProtobufCMessage *req,
                        void *data)
{
    ts_obs.range_starts++;
    const Etcdserverpb__RangeRequest *r = (const void *)req;
    struct range_ctx *ctx;
    (void)data;
    grpc_call_set_data(call, (void *)r);
    if (r->key.len == 5 && memcmp(r->key.data, "sleep", 5) == 0) {
        /* Never answered: wait for the deadline or the client to go. */
        ts_obs.sleep_deadline_ms = (int)grpc_call_deadline_ms(call);
        grpc_call_on_cancel(call, sleep_cancel, NULL);
        return;
    }
    ctx = malloc(sizeof *ctx);
    ctx->call = call;
    uv_timer_init(&S.loop, &ctx->timer);
    ctx->timer.data = ctx;
    uv_timer_start(&ctx->timer, range_reply, 10, 0);
}

static void watch_start(struct grpc_call *call,
                        const ProtobufCMessage *req,
                        void *data)
{
    const char *hl = grpc_call_header(call, "hasleader");
    (void)req;
    (void)data;
    ts_obs.watch_starts++;
    if (hl != NULL && strcmp(hl, "true") == 0) {
        ts_obs.watch_hasleader = 1;
    }
}

static void watch_message(struct grpc_call *call,
                          const ProtobufCMessage *msg,
                          const uint8_t *raw,
                          size_t len,
                          void *data)
{
    const Etcdserverpb__WatchRequest *r = (const void *)msg;
    Etcdserverpb__WatchResponse resp = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    Mvccpb__Event ev = MVCCPB__EVENT__INIT;
    Mvccpb__Event *evs[1] = {&ev};
    (void)raw;
    (void)len;
    (void)data;
    if (r->request_union_case !=
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST) {
        return;
    }
    fill_header(&h);
    resp.header = &h;
    resp.created = 1;
    grpc_call_send(call, &resp.base);
    kv.key = r->create_request->key;
    kv.value.data = (uint8_t *)"bar";
    kv.value.len = 3;
    kv.create_revision = 43;
    kv.mod_revision = 43;
    kv.version = 1;
    ev.kv = &kv;
    resp.created = 0;
    resp.events = evs;
    resp.n_events = 1;
    h.revision = 43;
    grpc_call_send(call, &resp.base);
}

static void watch_half_close(struct grpc_call *call, void *data)
{
    (void)data;
    grpc_call_finish(call, 0);
}

static void watch_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    (void)data;
    ts_obs.watch_cancels++;
    grpc_call_finish(call, KEEL_ECANCELED);
}

size_t ts_snapshot_bytes(uint8_t *out, size_t size)
{
    /* etcdctl checks size % 512 == 32 (an appended sha256). */
    size_t n = 512 + 512 + 32;
    assert(size >= n);
    for (size_t i = 0; i < n; i++) {
        out[i] = (uint8_t)('a' + i / 512);
    }
    return n;
}

static void snapshot_start(struct grpc_call *call,
                           const ProtobufCMessage *req,
                           void *data)
{
    uint8_t snap[1100];
    size_t n = ts_snapshot_bytes(snap, sizeof snap);
    size_t off = 0;
    static const size_t parts[] = {512, 512, 32};
    (void)req;
    (void)data;
    ts_obs.snapshot_calls++;
    for (size_t i = 0; i < 3; i++) {
        Etcdserverpb__SnapshotResponse resp =
            ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
        Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        fill_header(&h);
        resp.header = &h;
        resp.blob.data = snap + off;
        resp.blob.len = parts[i];
        off += parts[i];
        resp.remaining_bytes = n - off;
        grpc_call_send(call, &resp.base);
    }
    grpc_call_finish(call, 0);
}

struct flood_ctx
{
    uv_timer_t timer;
    struct grpc_call *call;
};

static void flood_closed(uv_handle_t *h)
{
    free(h->data);
}

static void flood_tick(uv_timer_t *t)
{
    struct flood_ctx *ctx = t->data;
    static uint8_t blob[16 * 1024];
    for (int i = 0; i < 8; i++) {
        if (grpc_call_send_bytes(ctx->call, blob, sizeof blob) != 0) {
            break; /* wait for the cancel */
        }
        ts_obs.flood_sent++;
    }
}

static void flood_cancel(struct grpc_call *call, int code, void *data)
{
    struct flood_ctx *ctx = grpc_call_data(call);
    (void)code;
    (void)data;
    ts_obs.flood_cancels++;
    uv_close((uv_handle_t *)&ctx->timer, flood_closed);
    grpc_call_finish(call, KEEL_ECANCELED);
}

static void flood_start(struct grpc_call *call,
                        const ProtobufCMessage *req,
                        void *data)
{
    struct flood_ctx *ctx = malloc(sizeof *ctx);
    (void)req;
    (void)data;
    ctx->call = call;
    grpc_call_set_data(call, ctx);
    uv_timer_init(&S.loop, &ctx->timer);
    ctx->timer.data = ctx;
    uv_timer_start(&ctx->timer, flood_tick, 0, 1);
}

/* Client stream: counts messages and bytes, answers at half-close. */
struct count_ctx
{
    size_t n, bytes;
};

static void count_start(struct grpc_call *call,
                        const ProtobufCMessage *req,
                        void *data)
{
    struct count_ctx *ctx =
        keel_arena_alloc(grpc_call_arena(call), sizeof *ctx);
    (void)req;
    (void)data;
    ctx->n = ctx->bytes = 0;
    grpc_call_set_data(call, ctx);
}

static void count_message(struct grpc_call *call,
                          const ProtobufCMessage *msg,
                          const uint8_t *raw,
                          size_t len,
                          void *data)
{
    struct count_ctx *ctx = grpc_call_data(call);
    (void)msg;
    (void)data;
    ctx->n++;
    ctx->bytes += len;
    for (size_t i = 0; i < len; i++) {
        assert(raw[i] == (uint8_t)i);
    }
}

static void count_half_close(struct grpc_call *call, void *data)
{
    struct count_ctx *ctx = grpc_call_data(call);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "n=%zu bytes=%zu", ctx->n, ctx->bytes);
    (void)data;
    grpc_call_send_bytes(call, buf, (size_t)n);
    grpc_call_finish(call, 0);
}

static void count_cancel(struct grpc_call *call, int code, void *data)
{
    (void)data;
    ts_obs.count_cancel_code = code;
    grpc_call_finish(call, KEEL_ECANCELED);
}

/* Server stream that respects back-pressure: 64 messages of 64 KiB, never
 * more than 256 KiB queued, resumed by the drain callback. */
struct paced_ctx
{
    int sent;
};

static void paced_pump(struct grpc_call *call, void *data)
{
    static uint8_t blob[64 * 1024];
    struct paced_ctx *ctx = grpc_call_data(call);
    (void)data;
    while (ctx->sent < 64 && grpc_call_buffered(call) < 256 * 1024) {
        if (grpc_call_send_bytes(call, blob, sizeof blob) != 0) {
            return; /* cancelled: the cancel callback finishes */
        }
        ctx->sent++;
        if ((size_t)ts_obs.paced_max_buffered < grpc_call_buffered(call)) {
            ts_obs.paced_max_buffered = (int)grpc_call_buffered(call);
        }
    }
    if (ctx->sent == 64) {
        grpc_call_finish(call, 0);
    }
    /* else: paced_pump runs again from the drain callback */
}

static void paced_start(struct grpc_call *call,
                        const ProtobufCMessage *req,
                        void *data)
{
    struct paced_ctx *ctx =
        keel_arena_alloc(grpc_call_arena(call), sizeof *ctx);
    (void)req;
    ctx->sent = 0;
    grpc_call_set_data(call, ctx);
    grpc_call_on_drain(call, paced_pump, NULL);
    paced_pump(call, data);
}

static void paced_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    (void)data;
    grpc_call_finish(call, KEEL_ECANCELED);
}

/* ---- HTTP routes ---- */

static void health(struct router_req *req, void *data)
{
    static const char body[] = "{\"health\":\"true\"}";
    (void)data;
    router_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void version(struct router_req *req, void *data)
{
    static const char body[] =
        "{\"etcdserver\":\"3.4.23\",\"etcdcluster\":\"3.4.0\"}";
    (void)data;
    router_respond(req, 200, "application/json", body, sizeof body - 1);
}

static void echo(struct router_req *req, void *data)
{
    const char *ct = router_req_header(req, "content-type");
    (void)data;
    router_respond(req, 200, ct != NULL ? ct : "application/octet-stream",
                   req->body, req->body_len);
}

static void v3_generic(struct router_req *req, void *data)
{
    (void)data;
    router_respond(req, 200, "text/plain", "v3-generic", 10);
}

static void v3_range(struct router_req *req, void *data)
{
    (void)data;
    router_respond(req, 200, "text/plain", "v3-range", 8);
}

struct stream_ctx
{
    uv_timer_t timer;
    struct router_req *req;
    int n;
};

static void stream_closed(uv_handle_t *h)
{
    free(h->data);
}

static void stream_tick(uv_timer_t *t)
{
    struct stream_ctx *ctx = t->data;
    char line[64];
    int len;
    if (!router_req_alive(ctx->req) || ctx->n == 3) {
        router_end(ctx->req);
        uv_close((uv_handle_t *)&ctx->timer, stream_closed);
        return;
    }
    len = snprintf(line, sizeof line, "{\"result\":{\"n\":%d}}\n", ctx->n++);
    router_write(ctx->req, line, (size_t)len);
}

static void stream_cancel(struct router_req *req, void *data)
{
    (void)req;
    (void)data;
    ts_obs.http_cancels++;
}

static void stream(struct router_req *req, void *data)
{
    struct stream_ctx *ctx = malloc(sizeof *ctx);
    (void)data;
    ctx->req = req;
    ctx->n = 0;
    router_req_on_cancel(req, stream_cancel, NULL);
    router_start(req, 200, "application/json", NULL, 0);
    uv_timer_init(&S.loop, &ctx->timer);
    ctx->timer.data = ctx;
    uv_timer_start(&ctx->timer, stream_tick, 5, 5);
}

/* Chunked output that ignores back-pressure (a gateway watch whose client
 * stopped reading). */
struct hflood_ctx
{
    uv_timer_t timer;
    struct router_req *req;
};

static void hflood_tick(uv_timer_t *t)
{
    struct hflood_ctx *ctx = t->data;
    static char blob[32 * 1024];
    if (!router_req_alive(ctx->req)) {
        router_end(ctx->req);
        uv_close((uv_handle_t *)&ctx->timer, stream_closed);
        return;
    }
    for (int i = 0; i < 4; i++) {
        router_write(ctx->req, blob, sizeof blob);
    }
}

static void hflood(struct router_req *req, void *data)
{
    struct hflood_ctx *ctx = malloc(sizeof *ctx);
    (void)data;
    ctx->req = req;
    router_req_on_cancel(req, stream_cancel, NULL);
    router_start(req, 200, "application/octet-stream", NULL, 0);
    uv_timer_init(&S.loop, &ctx->timer);
    ctx->timer.data = ctx;
    uv_timer_start(&ctx->timer, hflood_tick, 0, 1);
}

/* A long-poll that never writes (a gateway watch without events): ends
 * only when the client goes away. */
static void hold_cancel(struct router_req *req, void *data)
{
    (void)data;
    ts_obs.http_cancels++;
    router_end(req);
}

static void hold(struct router_req *req, void *data)
{
    (void)data;
    router_req_on_cancel(req, hold_cancel, NULL);
    router_start(req, 200, "application/json", NULL, 0);
}

static void big(struct router_req *req, void *data)
{
    static char body[64 * 1024];
    (void)data;
    ts_obs.big_calls++;
    router_respond(req, 200, "application/octet-stream", body, sizeof body);
}

/* gRPC counters as text, one method per line (read on the loop thread). */
struct stats_buf
{
    char buf[4096];
    size_t len;
};

static void stats_line(const char *service,
                       const char *method,
                       const char *type,
                       const struct grpc_method_stats *st,
                       void *data)
{
    struct stats_buf *b = data;
    int n = snprintf(
        b->buf + b->len, sizeof b->buf - b->len,
        "%s/%s %s started=%llu ok=%llu deadline=%llu "
        "internal=%llu recv=%llu sent=%llu\n",
        service, method, type, (unsigned long long)st->started,
        (unsigned long long)st->handled[KEEL_GRPC_OK],
        (unsigned long long)st->handled[KEEL_GRPC_DEADLINE_EXCEEDED],
        (unsigned long long)st->handled[KEEL_GRPC_INTERNAL],
        (unsigned long long)st->msg_received, (unsigned long long)st->msg_sent);
    if (n > 0 && (size_t)n < sizeof b->buf - b->len) {
        b->len += (size_t)n;
    }
}

static void stats(struct router_req *req, void *data)
{
    struct stats_buf b;
    int n;
    (void)data;
    b.len = 0;
    grpc_server_visit_methods(S.grpc, stats_line, &b);
    n = snprintf(b.buf + b.len, sizeof b.buf - b.len,
                 "bytes recv=%llu sent=%llu\n",
                 (unsigned long long)grpc_server_bytes_received(S.grpc),
                 (unsigned long long)grpc_server_bytes_sent(S.grpc));
    b.len += (size_t)n;
    router_respond(req, 200, "text/plain", b.buf, b.len);
}

/* ---- thread ---- */

static void on_stats(uv_timer_t *t)
{
    (void)t;
    S.conns = S.tcp.n_conns + S.unx.n_conns + S.tls.n_conns + S.mtls.n_conns +
              S.drain.n_conns + S.ka.n_conns;
    S.calls_live = grpc_server_calls_live(S.grpc);
}

static void on_drained(struct listener *l)
{
    (void)l;
    S.drain_closed = 1;
    S.drained = 1;
}

static void on_drain(uv_async_t *a)
{
    (void)a;
    listener_shutdown(&S.drain, 10000, on_drained);
}

static void on_stop(uv_async_t *a)
{
    (void)a;
    if (!S.drain_closed && !S.drain.closing) {
        listener_close(&S.drain, NULL);
    }
    uv_close((uv_handle_t *)&S.drain_async, NULL);
    listener_close(&S.tcp, NULL);
    listener_close(&S.unx, NULL);
    listener_close(&S.tls, NULL);
    listener_close(&S.ka, NULL);
    listener_close(&S.unxs, NULL);
    listener_close(&S.mtls, NULL);
    uv_close((uv_handle_t *)&S.stop, NULL);
    uv_close((uv_handle_t *)&S.stats, NULL);
}

static void *thread_main(void *arg)
{
    (void)arg;
    uv_run(&S.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int reg(const char *path,
               enum grpc_kind kind,
               const ProtobufCMessageDescriptor *d,
               grpc_start_cb start,
               grpc_message_cb on_message,
               grpc_half_close_cb on_half_close,
               grpc_cancel_cb on_cancel)
{
    struct grpc_method m = {path,       kind,          d,         start,
                            on_message, on_half_close, on_cancel, NULL};
    return grpc_server_register(S.grpc, &m);
}

/* A CA, a server certificate for 127.0.0.1/localhost and a client
 * certificate with CN "alice", made with the openssl CLI. */
static int make_certs(void)
{
    char script[2048];
    char *argv[] = {"sh", "-c", script, NULL};
    char *out = NULL;
    int rc;
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    snprintf(
        script, sizeof script,
        "set -e; cd %s; "
        "openssl req -x509 %s -keyout ca.key -out ca.pem -days 2 "
        "-subj /CN=keel-test-ca; "
        "openssl req %s -keyout server.key -out server.csr "
        "-subj /CN=localhost; "
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext; "
        "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -out server.pem -days 2 -extfile san.ext; "
        "openssl req %s -keyout client.key -out client.csr -subj /CN=alice; "
        "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
        "-CAcreateserial -out client.pem -days 2",
        S.dir, ec, ec, ec);
    rc = ts_run(argv, 10000, &out);
    if (rc != 0) {
        fprintf(stderr, "make certs: %s\n", out);
    }
    free(out);
    return rc == 0 ? 0 : -1;
}

int ts_server_start(void)
{
    struct conn_limits lim;
    char url[200];
    int rv = 0;

    memset(&S, 0, sizeof S);
    memset(&ts_obs, 0, sizeof ts_obs);
    ts_obs.range_cancel_code = -1;
    ts_obs.count_cancel_code = -1;
    pthread_mutex_init(&S.mu, NULL);
    snprintf(S.dir, sizeof S.dir, "/tmp/keel-ts-XXXXXX");
    if (mkdtemp(S.dir) == NULL) {
        return -1;
    }
    snprintf(S.sock, sizeof S.sock, "%s/client.sock", S.dir);
    uv_loop_init(&S.loop);
    S.grpc = grpc_server_new();
    S.router = router_new();
    rv |= reg("/etcdserverpb.Maintenance/Status", GRPC_UNARY,
              &etcdserverpb__status_request__descriptor, status_start, NULL,
              NULL, NULL);
    rv |= reg("/etcdserverpb.Auth/Authenticate", GRPC_UNARY,
              &etcdserverpb__authenticate_request__descriptor, auth_start, NULL,
              NULL, NULL);
    rv |= reg("/etcdserverpb.KV/Range", GRPC_UNARY,
              &etcdserverpb__range_request__descriptor, range_start, NULL, NULL,
              range_cancel);
    rv |= reg("/etcdserverpb.KV/Put", GRPC_UNARY,
              &etcdserverpb__put_request__descriptor, put_start, NULL, NULL,
              NULL);
    rv |= reg("/etcdserverpb.Watch/Watch", GRPC_BIDI,
              &etcdserverpb__watch_request__descriptor, watch_start,
              watch_message, watch_half_close, watch_cancel);
    rv |= reg("/etcdserverpb.Maintenance/Snapshot", GRPC_SERVER_STREAM,
              &etcdserverpb__snapshot_request__descriptor, snapshot_start, NULL,
              NULL, NULL);
    rv |= reg("/keeltest.Flood/Flood", GRPC_SERVER_STREAM, NULL, flood_start,
              NULL, NULL, flood_cancel);
    rv |= reg("/keeltest.Count/Count", GRPC_CLIENT_STREAM, NULL, count_start,
              count_message, count_half_close, count_cancel);
    rv |= reg("/keeltest.Paced/Paced", GRPC_SERVER_STREAM, NULL, paced_start,
              NULL, NULL, paced_cancel);
    rv |= router_add(S.router, "GET", "/big", big, NULL);
    rv |= router_add(S.router, "GET", "/stats", stats, NULL);
    rv |= router_add(S.router, "GET", "/hflood", hflood, NULL);
    rv |= router_add(S.router, NULL, "/hold", hold, NULL);
    rv |= router_add(S.router, "GET", "/health", health, NULL);
    rv |= router_add(S.router, NULL, "/version", version, NULL);
    rv |= router_add(S.router, "POST", "/echo", echo, NULL);
    rv |= router_add(S.router, "GET", "/stream", stream, NULL);
    rv |= router_add(S.router, NULL, "/v3/", v3_generic, NULL);
    rv |= router_add(S.router, NULL, "/v3/kv/range", v3_range, NULL);
    if (rv != 0) {
        return -1;
    }
    conn_limits_default(&lim);
    /* Small enough that the flood test reaches them in milliseconds. */
    lim.out_high_water = 256 * 1024;
    lim.max_buffered = 4 * 1024 * 1024;
    lim.max_http_body = 64 * 1024;
    if (listener_init(&S.tcp, &S.loop, "http://127.0.0.1:0", S.grpc, S.router,
                      &lim) != 0) {
        fprintf(stderr, "listen: %s\n", S.tcp.errmsg);
        return -1;
    }
    snprintf(url, sizeof url, "unix://%s", S.sock);
    if (listener_init(&S.unx, &S.loop, url, S.grpc, S.router, &lim) != 0) {
        fprintf(stderr, "listen: %s\n", S.unx.errmsg);
        return -1;
    }
    if (make_certs() != 0) {
        return -1;
    }
    {
        char cert[160], key[160], ca[160];
        struct tls_config tc = {.cert_file = cert, .key_file = key,
                                .trusted_ca_file = ca};
        snprintf(cert, sizeof cert, "%s/server.pem", S.dir);
        snprintf(key, sizeof key, "%s/server.key", S.dir);
        snprintf(ca, sizeof ca, "%s/ca.pem", S.dir);
        if (listener_init_tls(&S.tls, &S.loop, "https://127.0.0.1:0", S.grpc,
                              S.router, &lim, &tc) != 0) {
            fprintf(stderr, "listen: %s\n", S.tls.errmsg);
            return -1;
        }
        snprintf(S.tls_sock, sizeof S.tls_sock, "%s/tls.sock", S.dir);
        snprintf(url, sizeof url, "unixs://%s", S.tls_sock);
        if (listener_init_tls(&S.unxs, &S.loop, url, S.grpc, S.router, &lim,
                              &tc) != 0) {
            fprintf(stderr, "listen: %s\n", S.unxs.errmsg);
            return -1;
        }
        tc.client_cert_auth = 1;
        if (listener_init_tls(&S.mtls, &S.loop, "https://127.0.0.1:0", S.grpc,
                              S.router, &lim, &tc) != 0) {
            fprintf(stderr, "listen: %s\n", S.mtls.errmsg);
            return -1;
        }
    }
    if (listener_init(&S.drain, &S.loop, "http://127.0.0.1:0", S.grpc, S.router,
                      &lim) != 0) {
        return -1;
    }
    {
        struct conn_limits ka = lim;
        ka.keepalive_time_ms = 150;
        ka.keepalive_timeout_ms = 150;
        if (listener_init(&S.ka, &S.loop, "http://127.0.0.1:0", S.grpc,
                          S.router, &ka) != 0) {
            return -1;
        }
    }
    uv_async_init(&S.loop, &S.drain_async, on_drain);
    uv_async_init(&S.loop, &S.stop, on_stop);
    uv_timer_init(&S.loop, &S.stats);
    uv_timer_start(&S.stats, on_stats, 0, 2);
    if (pthread_create(&S.thread, NULL, thread_main, NULL) != 0) {
        return -1;
    }
    return 0;
}

void ts_server_stop(void)
{
    uv_async_send(&S.stop);
    pthread_join(S.thread, NULL);
    assert(grpc_server_calls_live(S.grpc) == 0);
    uv_loop_close(&S.loop);
    grpc_server_free(S.grpc);
    router_free(S.router);
    {
        char *argv[] = {"rm", "-rf", S.dir, NULL};
        char *out = NULL;
        ts_run(argv, 5000, &out);
        free(out);
    }
    pthread_mutex_destroy(&S.mu);
}

int ts_port(void)
{
    return S.tcp.port;
}

int ts_ka_port(void)
{
    return S.ka.port;
}

int ts_drain_port(void)
{
    return S.drain.port;
}

void ts_drain_start(void)
{
    uv_async_send(&S.drain_async);
}

int ts_drained(void)
{
    return S.drained;
}

int ts_tls_port(void)
{
    return S.tls.port;
}

int ts_mtls_port(void)
{
    return S.mtls.port;
}

const char *ts_dir(void)
{
    return S.dir;
}

void ts_cn_seen(char *out, size_t size)
{
    pthread_mutex_lock(&S.mu);
    snprintf(out, size, "%s", ts_obs.cn_seen);
    pthread_mutex_unlock(&S.mu);
}

const char *ts_unixs_path(void)
{
    return S.tls_sock;
}

const char *ts_unix_path(void)
{
    return S.sock;
}

size_t ts_server_conns(void)
{
    return S.conns;
}

size_t ts_server_calls_live(void)
{
    return S.calls_live;
}

void ts_auth_seen(char *out, size_t size)
{
    pthread_mutex_lock(&S.mu);
    snprintf(out, size, "%s", ts_obs.auth_seen);
    pthread_mutex_unlock(&S.mu);
}
