/*
 * server/watch_service.c: the etcdserverpb.Watch service. It wires the pure
 * watch hub (server/watch_hub.c, which holds etcd's stream semantics and the
 * fairness rules) to the three things around it:
 *
 *   gRPC Watch bidi stream ──watch_stream_recv──▶ hub ──send_packed──▶ stream
 *   node apply (events per revision) ──watch_hub_notify──▶ hub
 *   MVCC store ◀──read_history (mvcc_events_since)── hub catch-up on ticks
 *
 * Back-pressure: a stream whose outbound queue holds more than
 * WATCH_STREAM_BUDGET bytes is reported full; the hub stops sending events to
 * it (its watchers fall behind and are replayed from storage later) until the
 * transport says the queue drained.
 *
 * A client's half-close does not end the stream (etcd keeps sending until
 * the client cancels the RPC, v3rpc/watch.go); the call ends when the
 * client goes away, or with the server.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "auth.h"
#include "grpc.h"
#include "keel_err.h"
#include "log.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"
#include "watch_hub.h"

/* Outbound bytes a stream may queue before the hub treats it as full. */
#define WATCH_STREAM_BUDGET (1u << 20)
#define WATCH_TICK_MS 100
/* Events read from storage per mvcc_events_since call during catch-up. */
#define WATCH_HISTORY_CHUNK 512

struct watch_service
{
    struct keel_server *s;
    struct watch_hub *hub;
    uv_timer_t tick;
    uv_idle_t idle; /* while the hub has catch-up work */
    bool idle_active;
    int handles;
    void (*closed_cb)(void *);
    void *closed_arg;
};

struct wstream
{
    struct watch_service *svc;
    struct grpc_call *call;
    struct watch_stream *st;
};

/* ---- hub callbacks ------------------------------------------------------ */

static void kick(struct watch_service *w);

static int send_packed(void *ctx, struct watch_stream *st, void *data,
                       const uint8_t *msg, size_t len)
{
    (void)ctx;
    (void)st;
    struct wstream *ws = data;
    int rv = grpc_call_send_bytes(ws->call, msg, len);
    if (rv != 0) {
        return rv;
    }
    return grpc_call_buffered(ws->call) > WATCH_STREAM_BUDGET
               ? WATCH_SEND_FULL
               : WATCH_SEND_OK;
}

static int read_history(void *ctx, const uint8_t *key, size_t key_len,
                        const uint8_t *range_end, size_t range_end_len,
                        int64_t from_rev, int64_t to_rev, bool prev_kv,
                        watch_emit_cb emit, void *emit_arg,
                        int64_t *compact_rev)
{
    struct watch_service *w = ctx;
    struct mvcc_store *store = node_store(server_node(w->s));
    ProtobufCBinaryData k = {key_len, (uint8_t *)key};
    ProtobufCBinaryData e = {range_end_len, (uint8_t *)range_end};
    struct keel_arena a;
    keel_arena_init(&a, 0);
    int rv = 0;
    while (from_rev <= to_rev) {
        Mvccpb__Event **evs = NULL;
        size_t n = 0;
        int64_t next = 0;
        rv = mvcc_events_since(store, from_rev, &k, &e, WATCH_HISTORY_CHUNK,
                               prev_kv, &a, &evs, &n, &next);
        if (rv == KEEL_ECOMPACTED) {
            *compact_rev = mvcc_compact_revision(store);
            break;
        }
        if (rv != 0) {
            break;
        }
        bool stop = n == 0;
        for (size_t i = 0; i < n && !stop; i++) {
            if (evs[i]->kv->mod_revision > to_rev || emit(emit_arg, evs[i])) {
                stop = true;
            }
        }
        if (stop || next <= from_rev) {
            break;
        }
        from_rev = next;
        keel_arena_reset(&a);
    }
    keel_arena_free(&a);
    return rv;
}

static int64_t current_revision(void *ctx)
{
    struct watch_service *w = ctx;
    return mvcc_revision(node_store(server_node(w->s)));
}

static void fill_header(void *ctx, Etcdserverpb__ResponseHeader *h)
{
    struct watch_service *w = ctx;
    int64_t rev = h->revision;
    server_header(w->s, h, NULL, 0);
    h->revision = rev;
}

/* etcd isWatchPermitted: read permission on the watched range. */
static int check_range(void *ctx, void *stream_data, const uint8_t *key,
                       size_t key_len, const uint8_t *range_end,
                       size_t range_end_len)
{
    struct watch_service *w = ctx;
    struct wstream *ws = stream_data;
    return auth_check_key(server_auth(w->s), ws->call, key, key_len,
                          range_end, range_end_len);
}

/* ---- ticking ------------------------------------------------------------ */

static void on_tick(uv_timer_t *t)
{
    struct watch_service *w = t->data;
    watch_hub_tick(w->hub, uv_now(t->loop));
    kick(w);
}

static void on_idle(uv_idle_t *h)
{
    struct watch_service *w = h->data;
    watch_hub_tick(w->hub, uv_now(h->loop));
    if (watch_hub_pending(w->hub) == 0) {
        uv_idle_stop(h);
        w->idle_active = false;
    }
}

static void kick(struct watch_service *w)
{
    if (!w->idle_active && w->hub != NULL && watch_hub_pending(w->hub) > 0) {
        w->idle_active = true;
        uv_idle_start(&w->idle, on_idle);
    }
}

/* ---- the gRPC stream ---------------------------------------------------- */

static void on_drain(struct grpc_call *call, void *data)
{
    (void)call;
    struct wstream *ws = data;
    watch_stream_set_writable(ws->st, true);
    kick(ws->svc);
}

static void watch_start(struct grpc_call *call, const ProtobufCMessage *req,
                        void *data)
{
    (void)req;
    struct watch_service *w = data;
    struct wstream *ws = calloc(1, sizeof *ws);
    if (ws == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    ws->svc = w;
    ws->call = call;
    if (watch_stream_new(w->hub, ws, &ws->st) != 0) {
        free(ws);
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    grpc_call_set_data(call, ws);
    grpc_call_on_drain(call, on_drain, ws);
}

static void end_stream(struct wstream *ws, int rv)
{
    watch_stream_free(ws->st);
    grpc_call_finish(ws->call, rv);
    free(ws);
}

static void watch_message(struct grpc_call *call, const ProtobufCMessage *msg,
                          const uint8_t *raw, size_t len, void *data)
{
    (void)raw;
    (void)len;
    (void)data;
    struct wstream *ws = grpc_call_data(call);
    if (ws == NULL || msg == NULL) {
        return;
    }
    int rv = watch_stream_recv(ws->st, (const Etcdserverpb__WatchRequest *)msg);
    if (rv == KEEL_ENOMEM) {
        end_stream(ws, KEEL_ENOMEM);
        return;
    }
    kick(ws->svc);
}

static void watch_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    (void)data;
    struct wstream *ws = grpc_call_data(call);
    if (ws != NULL) {
        end_stream(ws, 0);
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

int watch_service_start(struct keel_server *s, struct grpc_server *g,
                        const struct keel_config *cfg,
                        struct watch_service **out)
{
    struct watch_service *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return KEEL_ENOMEM;
    }
    w->s = s;
    struct watch_hub_config hc = {0};
    hc.ctx = w;
    hc.send_packed = send_packed;
    hc.read_history = read_history;
    hc.current_revision = current_revision;
    hc.fill_header = fill_header;
    hc.check_range = check_range;
    hc.max_request_bytes = cfg->max_request_bytes;
    if (cfg->experimental_watch_progress_notify_interval_ns > 0) {
        hc.progress_interval_ms =
            (uint64_t)cfg->experimental_watch_progress_notify_interval_ns /
            1000000u;
    }
    hc.seed = (uint64_t)(uintptr_t)w ^ uv_hrtime();
    int rv = watch_hub_new(&hc, &w->hub);
    if (rv != 0) {
        free(w);
        return rv;
    }
    const struct grpc_method m = {"/etcdserverpb.Watch/Watch",
                                  GRPC_BIDI,
                                  &etcdserverpb__watch_request__descriptor,
                                  watch_start,
                                  watch_message,
                                  NULL,
                                  watch_cancel,
                                  w};
    rv = grpc_server_register(g, &m);
    if (rv != 0) {
        watch_hub_free(w->hub);
        free(w);
        return rv;
    }
    uv_loop_t *loop = server_loop(s);
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    uv_idle_init(loop, &w->idle);
    w->idle.data = w;
    w->handles = 2;
    uv_timer_start(&w->tick, on_tick, WATCH_TICK_MS, WATCH_TICK_MS);
    *out = w;
    return 0;
}

void watch_service_notify(struct watch_service *w, int64_t rev,
                          Mvccpb__Event **events, size_t n)
{
    watch_hub_notify(w->hub, rev, events, n);
    kick(w);
}

void watch_service_compacted(struct watch_service *w, int64_t rev)
{
    watch_hub_compacted(w->hub, rev);
    kick(w);
}

void watch_service_restore(struct watch_service *w, int64_t rev)
{
    watch_hub_restore(w->hub, rev);
    kick(w);
}

static void handle_closed(uv_handle_t *h)
{
    struct watch_service *w = h->data;
    if (--w->handles > 0) {
        return;
    }
    /* Every stream was freed by its call's cancel (the listeners closed
     * first); watch_hub_free releases anything left. */
    watch_hub_free(w->hub);
    void (*cb)(void *) = w->closed_cb;
    void *arg = w->closed_arg;
    free(w);
    if (cb != NULL) {
        cb(arg);
    }
}

void watch_service_close(struct watch_service *w, void (*cb)(void *),
                         void *arg)
{
    w->closed_cb = cb;
    w->closed_arg = arg;
    uv_close((uv_handle_t *)&w->tick, handle_closed);
    uv_close((uv_handle_t *)&w->idle, handle_closed);
}
