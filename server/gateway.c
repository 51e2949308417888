/*
 * server/gateway.c: the v3 JSON gateway (etcd 3.4's grpc-gateway v1, set up
 * in embed/serve.go), answered by keel's own gRPC handlers.
 *
 * Happy path (unary, e.g. POST /v3/kv/put):
 *
 *   router ──▶ gw_handle: OPTIONS? /v3beta rewrite, path cleaning, route
 *        match (gateway_routes), JSON body ──json_pb──▶ request message
 *        ──pack──▶ grpc_server_call_local(KV/Put) ──▶ kv.c handler
 *   handler reply ──▶ on_message: keep the packed reply
 *   status ──▶ on_done: OK → unpack, json_pb_encode, 200
 *                        error → gateway_http_status(code) + error body
 *
 * Streams (watch, lease keepalive: bidi; snapshot, observe: server stream):
 * the request body is a sequence of JSON values, each packed and fed to the
 * call with grpc_local_send() in order, then grpc_local_half_close() (as
 * grpc-gateway decodes the body and CloseSends at its end). Each response
 * message becomes one {"result":...}\n chunk, written as it arrives; the
 * response head goes out with the first message or the status (so a watch
 * that never answers sends nothing, as etcd). A status after messages is
 * one more chunk {"error":{...}} (streamChunk), no newline. Flow control:
 * the handler sees the HTTP queue through grpc_call_buffered(); once it
 * passes GATEWAY_DRAIN_WATCH_BYTES the queue is polled and the handler's
 * drain callback runs when it is empty (the router has no drain event).
 *
 * Metadata, as grpc-gateway's AnnotateContext: Authorization passes as
 * "authorization" (etcd's auth reads "token", then "authorization"),
 * Grpc-Metadata-<k> as "<k>", Grpc-Timeout as the call's deadline.
 *
 * Failure modes:
 *   - not POST on a route: 405, unknown path: 404 (Go's http.Error texts);
 *     an unclean path ("//", ".", "..") or "/v3": 301 to the clean one, as
 *     Go's ServeMux;
 *   - undecodable JSON: gateway_decode_request()'s status and body (400; for
 *     the first message of a bidi stream 500 "code":2), before any call;
 *     later undecodable stream messages just end the request side;
 *   - the HTTP client goes away: the local call is cancelled (the handler's
 *     cancel callback runs) and the request finished without output;
 *   - out of memory: 429 ResourceExhausted.
 *
 * Lifetime: the per-request state (struct gw_call) lives in the router
 * request's arena, so it dies when the request is finished: on_done and the
 * client-gone callback each finish it, and whichever runs first detaches
 * the other (grpc_local_cancel / router_req_on_cancel(NULL)).
 *
 * Suspended in: waiting for the handler (unary), or for stream messages and
 * the final status (streams); nothing else.
 */
#include "gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "gateway_routes.h"
#include "grpc.h"
#include "json_pb.h"
#include "router.h"
#include "server.h"

/* embed/serve.go accessController: on every answer of the client port's
 * HTTP mux. */
#define cors router_cors
#define N_CORS ROUTER_N_CORS

/* grpc-gateway: the response header metadata of the call, as
 * Grpc-Metadata-<k> (grpc-go always sends content-type). */
static const struct router_header md_ctype = {"grpc-metadata-content-type",
                                              "application/grpc"};
static const struct router_header nosniff = {"x-content-type-options",
                                             "nosniff"};

struct gw_call
{
    struct router_req *req;
    struct keel_server *s;
    const struct gateway_route *route;
    struct grpc_call *call;     /* until on_done or the client went away */
    struct keel_arena scratch;  /* unpacked response messages */
    struct keel_arena in;       /* decoded stream request messages */
    const uint8_t *reply;       /* unary: the packed reply, in req->arena */
    size_t reply_len;
    int got_reply;
    int started; /* response head sent */
    int feeding; /* inside feed_stream(): gw must stay valid */
    int broken;  /* a message was lost: end the request after feeding */
    uv_timer_t *poll; /* waiting for the HTTP queue to drain */
};

/* Streams: how often a full HTTP queue is checked for having drained (the
 * router has no drain notification), and above how many queued bytes the
 * check starts. Handlers (the watch hub) stop producing above their own
 * budget and resume from their drain callback. */
#define GATEWAY_DRAIN_POLL_MS 5
#define GATEWAY_DRAIN_WATCH_BYTES (64u * 1024u)

/* ---- path handling ------------------------------------------------------ */

size_t gateway_clean_path(const char *path, size_t len, char *out)
{
    size_t n = 0;
    size_t i = 0;

    out[n++] = '/';
    while (i < len) {
        size_t start, elen;
        while (i < len && path[i] == '/') {
            i++;
        }
        start = i;
        while (i < len && path[i] != '/') {
            i++;
        }
        elen = i - start;
        if (elen == 0 || (elen == 1 && path[start] == '.')) {
            continue;
        }
        if (elen == 2 && path[start] == '.' && path[start + 1] == '.') {
            /* Back to the previous '/' (never above the root). */
            while (n > 1 && out[n - 1] != '/') {
                n--;
            }
            if (n > 1) {
                n--;
            }
            continue;
        }
        if (n > 1) {
            out[n++] = '/';
        }
        memcpy(out + n, path + start, elen);
        n += elen;
    }
    if (len > 0 && path[len - 1] == '/' && n > 1) {
        out[n++] = '/';
    }
    out[n] = '\0';
    return n;
}

/* ---- answers ------------------------------------------------------------ */

/* Whole answer with the CORS headers; finishes req. */
static void respond(struct router_req *req, int status, const char *ctype,
                    const struct router_header *extra, size_t n_extra,
                    const void *body, size_t len)
{
    struct router_header h[N_CORS + 4];
    size_t n = 0;
    for (size_t i = 0; i < N_CORS; i++) {
        h[n++] = cors[i];
    }
    for (size_t i = 0; i < n_extra && n < sizeof h / sizeof h[0]; i++) {
        h[n++] = extra[i];
    }
    if (router_start(req, status, ctype, h, n) == 0 && len > 0) {
        (void)router_write(req, body, len);
    }
    (void)router_end(req);
}

static void respond_plain(struct router_req *req, enum gateway_match m)
{
    int status;
    const char *text = gateway_plain_error(m, &status);
    respond(req, status, "text/plain; charset=utf-8", &nosniff, 1, text,
            strlen(text));
}

/* {"error":...,"code":N} with the status grpc-gateway maps code to. */
static void respond_error(struct router_req *req, enum keel_grpc_code code,
                          const char *msg)
{
    size_t len = 0;
    char *body = gateway_error_body(code, msg, &len);
    if (body == NULL) {
        code = KEEL_GRPC_RESOURCE_EXHAUSTED;
    }
    respond(req, gateway_http_status(code), "application/json", NULL, 0,
            body != NULL ? body : "", body != NULL ? len : 0);
    free(body);
}

/* 301 to location (+ the query string), as Go's ServeMux redirects. */
static void redirect(struct router_req *req, const char *location)
{
    size_t n = strlen(location) + strlen(req->query) + 2;
    char *full = keel_arena_alloc(&req->arena, n);
    struct router_header h;
    if (full == NULL) {
        respond_error(req, KEEL_GRPC_RESOURCE_EXHAUSTED,
                      keel_strerror(KEEL_ENOMEM));
        return;
    }
    snprintf(full, n, "%s%s%s", location, req->query[0] ? "?" : "",
             req->query);
    h = (struct router_header){"location", full};
    respond(req, 301, NULL, &h, 1, NULL, 0);
}

/* Streams: the response head, once. */
static void start_stream(struct gw_call *gw, int status)
{
    struct router_header h[N_CORS + 1];
    size_t n = 0;
    if (gw->started) {
        return;
    }
    gw->started = 1;
    for (size_t i = 0; i < N_CORS; i++) {
        h[n++] = cors[i];
    }
    h[n++] = md_ctype;
    (void)router_start(gw->req, status, "application/json", h, n);
}

/* ---- the local call ----------------------------------------------------- */

static void on_poll_closed(uv_handle_t *h)
{
    free(h);
}

static void release(struct gw_call *gw)
{
    keel_arena_free(&gw->scratch);
    keel_arena_free(&gw->in);
    if (gw->poll != NULL) {
        uv_close((uv_handle_t *)gw->poll, on_poll_closed);
        gw->poll = NULL;
    }
}

static size_t local_buffered(void *data)
{
    struct gw_call *gw = data;
    return router_req_buffered(gw->req);
}

static void on_poll(uv_timer_t *t)
{
    struct gw_call *gw = t->data;
    if (router_req_buffered(gw->req) > 0) {
        return;
    }
    uv_timer_stop(t);
    if (gw->call != NULL) {
        grpc_local_drained(gw->call);
    }
}

/* After a write: if the HTTP queue is filling up, watch it until it
 * drains, then tell the handler. */
static void watch_queue(struct gw_call *gw)
{
    if (router_req_buffered(gw->req) < GATEWAY_DRAIN_WATCH_BYTES) {
        return;
    }
    if (gw->poll == NULL) {
        gw->poll = malloc(sizeof *gw->poll);
        if (gw->poll == NULL) {
            return; /* the connection's own cap still bounds the queue */
        }
        uv_timer_init(server_loop(gw->s), gw->poll);
        gw->poll->data = gw;
    }
    if (!uv_is_active((uv_handle_t *)gw->poll)) {
        uv_timer_start(gw->poll, on_poll, GATEWAY_DRAIN_POLL_MS,
                       GATEWAY_DRAIN_POLL_MS);
    }
}

/* End the response without a status: cancel the call, finish the request
 * (gw is freed with it). */
static void abandon(struct gw_call *gw)
{
    struct router_req *req = gw->req;
    if (gw->call != NULL) {
        grpc_local_cancel(gw->call);
        gw->call = NULL;
    }
    router_req_on_cancel(req, NULL, NULL);
    release(gw);
    start_stream(gw, 200);
    (void)router_end(req);
}

static void on_message(void *data, const uint8_t *buf, size_t len)
{
    struct gw_call *gw = data;
    const ProtobufCMessage *m;
    char *line;
    size_t n = 0;

    if (gw->route->kind == GATEWAY_UNARY) {
        if (!gw->got_reply) {
            gw->got_reply = 1;
            gw->reply = keel_arena_dup(&gw->req->arena, buf, len);
            gw->reply_len = len;
        }
        return;
    }
    if (gw->broken) {
        return;
    }
    keel_arena_reset(&gw->scratch);
    m = protobuf_c_message_unpack(gw->route->response, &gw->scratch.pb, len,
                                  len > 0 ? buf : (const uint8_t *)"");
    line = m != NULL ? json_pb_encode_stream_result(m, &n) : NULL;
    if (line == NULL) {
        /* Out of memory (keel's handlers never send what they cannot
         * decode): this message is lost, so the stream cannot go on. */
        if (gw->feeding) {
            gw->broken = 1;
        } else {
            abandon(gw);
        }
        return;
    }
    start_stream(gw, 200);
    (void)router_write(gw->req, line, n);
    free(line);
    watch_queue(gw);
}

static void on_done(void *data, int code, const char *msg)
{
    struct gw_call *gw = data;
    struct router_req *req = gw->req;
    char *out = NULL;
    size_t n = 0;

    gw->call = NULL;
    router_req_on_cancel(req, NULL, NULL);
    if (gw->route->kind != GATEWAY_UNARY) {
        if (code != KEEL_GRPC_OK) {
            out = gateway_stream_error_chunk((enum keel_grpc_code)code, msg,
                                             &n);
            start_stream(gw, gateway_http_status((enum keel_grpc_code)code));
            if (out != NULL) {
                (void)router_write(req, out, n);
            }
            free(out);
        }
        start_stream(gw, 200);
        release(gw);
        (void)router_end(req);
        return;
    }
    if (code == KEEL_GRPC_OK) {
        const ProtobufCMessage *m = NULL;
        if (gw->got_reply && gw->reply != NULL) {
            m = protobuf_c_message_unpack(gw->route->response,
                                          &gw->scratch.pb, gw->reply_len,
                                          gw->reply_len > 0
                                              ? gw->reply
                                              : (const uint8_t *)"");
        }
        out = m != NULL ? json_pb_encode(m, &n) : NULL;
        release(gw);
        if (out != NULL) {
            respond(req, 200, "application/json", &md_ctype, 1, out, n);
            free(out);
        } else if (!gw->got_reply) {
            /* grpc-go's client on a unary call that ended OK without a
             * message (never done by keel's handlers). */
            respond_error(req, KEEL_GRPC_INTERNAL,
                          "grpc: client streaming protocol violation: get "
                          "<nil>, want <EOF>");
        } else {
            respond_error(req, KEEL_GRPC_RESOURCE_EXHAUSTED,
                          keel_strerror(KEEL_ENOMEM));
        }
        return;
    }
    release(gw);
    respond_error(req, (enum keel_grpc_code)code, msg);
}

static void on_client_gone(struct router_req *req, void *data)
{
    struct gw_call *gw = data;
    if (gw->call != NULL) {
        grpc_local_cancel(gw->call);
        gw->call = NULL;
    }
    release(gw);
    /* Nobody to answer: just finish the request (the router frees it). */
    if (gw->started) {
        (void)router_end(req);
    } else {
        (void)router_respond(req, 500, NULL, NULL, 0);
    }
}

/* Feed the rest of a bidi body, one JSON value per message, then
 * half-close. An undecodable value ends the request side, as grpc-gateway's
 * reading goroutine does. */
static void feed_stream(struct gw_call *gw, const char *p, size_t len)
{
    gw->feeding = 1;
    while (gw->call != NULL && !gw->broken && len > 0) {
        ProtobufCMessage *m = NULL;
        size_t used = 0;
        uint8_t *buf;
        size_t plen;
        int rv = json_pb_decode_next(gw->route->request, p, len, true,
                                     &gw->in, &m, &used, NULL, 0);
        if (rv != 0 || m == NULL) {
            break;
        }
        p += used;
        len -= used;
        plen = protobuf_c_message_get_packed_size(m);
        buf = keel_arena_alloc(&gw->in, plen > 0 ? plen : 1);
        if (buf == NULL) {
            break;
        }
        protobuf_c_message_pack(m, buf);
        rv = grpc_local_send(gw->call, buf, plen);
        keel_arena_reset(&gw->in);
        if (rv != 0) {
            break;
        }
    }
    if (gw->call != NULL && !gw->broken) {
        grpc_local_half_close(gw->call);
    }
    gw->feeding = 0;
    if (gw->broken) {
        abandon(gw);
    }
}

/* grpc-gateway's Grpc-Timeout header: digits and a unit (H M S m u n).
 * Converted to a grpc-timeout the transport accepts (at most 8 digits).
 * Returns 0, or -1 when malformed. */
static int convert_timeout(const char *v, char *out, size_t n)
{
    size_t len = strlen(v);
    uint64_t x = 0;
    uint64_t ns_per_unit;
    if (len < 2) {
        return -1;
    }
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9' || x > UINT64_MAX / 10 - 10) {
            return -1;
        }
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[len - 1]) {
        case 'H': ns_per_unit = 3600000000000u; break;
        case 'M': ns_per_unit = 60000000000u; break;
        case 'S': ns_per_unit = 1000000000u; break;
        case 'm': ns_per_unit = 1000000u; break;
        case 'u': ns_per_unit = 1000u; break;
        case 'n': ns_per_unit = 1u; break;
        default: return -1;
    }
    /* In ms, rounded up; at most 99999999S (the transport's limit). */
    uint64_t ms = x > UINT64_MAX / ns_per_unit
                      ? UINT64_MAX / 1000000u
                      : (x * ns_per_unit + 999999u) / 1000000u;
    if (ms <= 99999999u) {
        snprintf(out, n, "%" PRIu64 "m", ms);
    } else {
        uint64_t s = ms / 1000u;
        snprintf(out, n, "%" PRIu64 "S", s > 99999999u ? 99999999u : s);
    }
    return 0;
}

/* grpc-gateway's AnnotateContext: Authorization passes as "authorization"
 * (etcd reads it as the token), Grpc-Metadata-<k> as "<k>", Grpc-Timeout
 * as the deadline. Returns 0, or -1 with *bad set to a malformed timeout. */
static int build_metadata(struct router_req *req, struct router_header **out,
                          size_t *n_out, const char **bad)
{
    static const char prefix[] = "grpc-metadata-";
    struct router_header *md =
        keel_arena_alloc(&req->arena, (req->n_headers + 1) * sizeof *md);
    size_t n = 0;
    if (md == NULL) {
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *name = req->headers[i].name;
        const char *value = req->headers[i].value;
        if (strcmp(name, "authorization") == 0) {
            md[n++] = (struct router_header){"authorization", value};
        } else if (strncmp(name, prefix, sizeof prefix - 1) == 0 &&
                   name[sizeof prefix - 1] != '\0') {
            md[n++] = (struct router_header){name + sizeof prefix - 1, value};
        } else if (strcmp(name, "grpc-timeout") == 0) {
            char *t = keel_arena_alloc(&req->arena, 32);
            if (t == NULL) {
                return KEEL_ENOMEM;
            }
            if (convert_timeout(value, t, 32) != 0) {
                *bad = value;
                return KEEL_EINVAL;
            }
            md[n++] = (struct router_header){"grpc-timeout", t};
        }
    }
    *out = md;
    *n_out = n;
    return 0;
}

/* ---- the handler -------------------------------------------------------- */

static void gw_handle(struct router_req *req, void *data)
{
    struct keel_server *s = data;
    const struct gateway_route *route = NULL;
    size_t plen = strlen(req->path);
    char *path, *clean;
    size_t n;
    enum gateway_match match;
    struct gw_call *gw;
    struct router_header *md = NULL;
    size_t n_md = 0;
    const char *bad = NULL;
    ProtobufCMessage *msg = NULL;
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    size_t consumed = 0;
    int rv;

    /* CORS preflight: answered before routing, for any path. */
    if (strcmp(req->method, "OPTIONS") == 0) {
        respond(req, 200, NULL, NULL, 0, NULL, 0);
        return;
    }
    /* embed/serve.go: /v3beta/... is served as /v3/... */
    path = keel_arena_alloc(&req->arena, plen + 1);
    clean = keel_arena_alloc(&req->arena, plen + 2);
    gw = keel_arena_alloc(&req->arena, sizeof *gw);
    if (path == NULL || clean == NULL || gw == NULL) {
        respond_error(req, KEEL_GRPC_RESOURCE_EXHAUSTED,
                      keel_strerror(KEEL_ENOMEM));
        return;
    }
    if (strncmp(req->path, "/v3beta/", 8) == 0) {
        snprintf(path, plen + 1, "/v3/%s", req->path + 8);
    } else {
        memcpy(path, req->path, plen + 1);
    }
    n = strlen(path);
    gateway_clean_path(path, n, clean);
    if (strcmp(clean, path) != 0) {
        redirect(req, clean);
        return;
    }
    if (strcmp(path, "/v3") == 0) {
        redirect(req, "/v3/");
        return;
    }
    match = gateway_route_match(req->method, path, n, &route);
    if (match != GATEWAY_FOUND) {
        respond_plain(req, match);
        return;
    }

    rv = build_metadata(req, &md, &n_md, &bad);
    if (rv == KEEL_EINVAL) {
        char *m = keel_arena_alloc(&req->arena, strlen(bad) + 32);
        if (m != NULL) {
            sprintf(m, "invalid grpc-timeout: %s", bad);
        }
        respond_error(req, KEEL_GRPC_INVALID_ARGUMENT,
                      m != NULL ? m : "invalid grpc-timeout");
        return;
    }
    if (rv != 0) {
        respond_error(req, KEEL_GRPC_RESOURCE_EXHAUSTED, keel_strerror(rv));
        return;
    }

    if (route->kind != GATEWAY_BIDI_STREAM) {
        int status = 0;
        char *err_body = NULL;
        size_t err_len = 0;
        rv = gateway_decode_request(route, (const char *)req->body,
                                    req->body_len, &req->arena, &msg, &status,
                                    &err_body, &err_len);
        if (rv != 0) {
            respond(req, status, "application/json", NULL, 0,
                    err_body != NULL ? err_body : "",
                    err_body != NULL ? err_len : 0);
            free(err_body);
            return;
        }
    } else {
        /* The first message decides whether the stream starts at all. */
        size_t errlen = req->body_len * 4 + 512;
        char *err = keel_arena_alloc(&req->arena, errlen);
        if (err == NULL) {
            respond_error(req, KEEL_GRPC_RESOURCE_EXHAUSTED,
                          keel_strerror(KEEL_ENOMEM));
            return;
        }
        rv = json_pb_decode_next(route->request, (const char *)req->body,
                                 req->body_len, true, &req->arena, &msg,
                                 &consumed, err, errlen);
        if (rv != 0) {
            respond_error(req,
                          rv == KEEL_EINVAL ? gateway_decode_error_code(route)
                                            : keel_err_grpc_code(rv),
                          rv == KEEL_EINVAL ? err : keel_strerror(rv));
            return;
        }
    }
    if (msg != NULL) {
        packed_len = protobuf_c_message_get_packed_size(msg);
        packed = keel_arena_alloc(&req->arena, packed_len > 0 ? packed_len : 1);
        if (packed == NULL) {
            respond_error(req, KEEL_GRPC_RESOURCE_EXHAUSTED,
                          keel_strerror(KEEL_ENOMEM));
            return;
        }
        protobuf_c_message_pack(msg, packed);
    }

    memset(gw, 0, sizeof *gw);
    gw->req = req;
    gw->s = s;
    gw->route = route;
    keel_arena_init(&gw->scratch, 0);
    keel_arena_init(&gw->in, 0);
    struct grpc_local_opts opts = {
        .loop = server_loop(s),
        .md = md,
        .n_md = n_md,
        /* etcd's gRPC server limits, which its gateway (a gRPC client of
         * the same server) runs into. */
        .max_request_bytes = server_max_request_bytes(s),
        .max_recv_bytes =
            server_max_request_bytes(s) + CONN_GRPC_OVERHEAD_BYTES,
        .on_message = on_message,
        .on_done = on_done,
        .buffered = local_buffered,
        .data = gw,
    };
    router_req_on_cancel(req, on_client_gone, gw);
    gw->feeding = 1; /* handlers may send from their start already */
    if (route->kind == GATEWAY_BIDI_STREAM) {
        rv = grpc_server_call_local(server_grpc(s), route->grpc_method, NULL,
                                    0, &opts, &gw->call);
    } else {
        rv = grpc_server_call_local(server_grpc(s), route->grpc_method, packed,
                                    packed_len, &opts, &gw->call);
    }
    if (rv != 0) {
        gw->feeding = 0;
        router_req_on_cancel(req, NULL, NULL);
        release(gw);
        respond_error(req, keel_err_grpc_code(rv), keel_strerror(rv));
        return;
    }
    if (route->kind != GATEWAY_BIDI_STREAM) {
        gw->feeding = 0;
        if (gw->broken) {
            abandon(gw);
        }
        return;
    }
    if (packed != NULL) {
        rv = grpc_local_send(gw->call, packed, packed_len);
    }
    gw->feeding = 0;
    if (gw->broken) {
        abandon(gw);
    } else if (packed != NULL && rv == 0) {
        feed_stream(gw, (const char *)req->body + consumed,
                    req->body_len - consumed);
    } else if (rv != KEEL_ECANCELED) {
        grpc_local_half_close(gw->call);
    }
}

int gateway_register(struct keel_server *s, struct router *r)
{
    int rv = router_add(r, NULL, "/v3/", gw_handle, s);
    if (rv == 0) {
        rv = router_add(r, NULL, "/v3beta/", gw_handle, s);
    }
    return rv;
}
