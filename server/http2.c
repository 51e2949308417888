/*
 * HTTP/2 on a client connection: an nghttp2 server session driven by memory
 * buffers (nghttp2_session_mem_recv / mem_send) from conn.c's socket I/O.
 *
 * Happy path: conn.c feeds socket bytes to h2_recv() → nghttp2 parses frames
 * and calls back: on_begin_headers creates a struct http2_stream,
 * on_header collects the request headers, on_frame_recv (request HEADERS)
 * dispatches the stream to grpc.c (content-type application/grpc*) or to the
 * router, on_data_chunk_recv passes body bytes on, on_stream_close ends it.
 * Answers are queued per stream (a chunk list read by an nghttp2 data
 * provider, with trailers submitted at its end) and serialised by flush().
 *
 * Stream states (ours, on top of RFC 9113's):
 *
 *   HEADERS ──dispatch──▶ OPEN ──respond()──▶ RESPONDING ──end()──▶ ENDED
 *                           │                      │                  │
 *                           └──────────────────────┴── RST / close ───┴─▶
 * closed()
 *
 * Suspended in: the data provider (NGHTTP2_ERR_DEFERRED while the queue is
 * empty and the response not ended), flow control (nghttp2 stops asking the
 * data provider when the peer's window is exhausted), the socket
 * (flush() stops above conn_limits.out_high_water and resumes from
 * conn_proto.writable).
 *
 * Re-entrancy: nghttp2 forbids mem_send/mem_recv from inside its callbacks,
 * and handlers (called from callbacks) answer synchronously. in_session
 * marks those sections; flush() requested inside one only sets want_flush
 * and the outermost caller flushes when nghttp2 returns.
 *
 * Memory bounds: per-stream queues count into h2->buffered; past
 * conn_limits.max_buffered (a client that stopped reading while a stream
 * keeps producing) the connection is closed. Request headers are bounded by
 * SETTINGS_MAX_HEADER_LIST_SIZE, request bodies by the receivers' limits.
 *
 * Failure modes: invalid frames make nghttp2 queue a GOAWAY (connection
 * errors) or RST_STREAM (stream errors); fatal ones (bad preface, flooding)
 * make mem_recv fail and the connection is closed after a best-effort
 * GOAWAY. Closing the connection closes every stream with NGHTTP2_CANCEL.
 */
#include "http2.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "grpc.h"
#include "keel_err.h"
#include "listener.h"
#include "router.h"

/* Coalesce serialised frames into writes of about this size. */
#define H2_WRITE_CHUNK (64 * 1024)
/* Minimum receive windows. A stream's window must hold the largest
 * message (gRPC bytes are released only once their message is complete),
 * so it grows with the limits; the connection window then bounds what one
 * connection can make us hold in partial messages. */
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW (16 << 20)
#define H2_MAX_HEADER_LIST (64 * 1024)

struct chunk
{
    struct chunk *next;
    size_t len;
    size_t off;
    uint8_t data[];
};

struct http2;

struct http2_stream
{
    struct http2 *h2;
    int32_t id;
    struct http2_stream *prev, *next;
    /* Request headers until dispatch. */
    struct router_header *hdrs;
    size_t n_hdrs, cap_hdrs;
    size_t hdr_bytes;
    /* Receiver. */
    const struct http2_stream_handler *h;
    void *u;
    int dispatched;
    int remote_ended;
    size_t held; /* body bytes delivered and not yet released (consume) */
    /* Response. */
    int responded; /* head submitted */
    int has_body;  /* a data provider is attached */
    int ended;     /* http2__stream_end() called */
    int deferred;  /* data provider returned NGHTTP2_ERR_DEFERRED */
    int had_data;  /* for drained() */
    struct chunk *qhead, *qtail;
    size_t queued;
    nghttp2_nv *trailers;
    size_t n_trailers;
};

struct http2
{
    struct conn *c;
    nghttp2_session *s;
    struct http2_stream *streams;
    size_t buffered;
    int in_session;
    int want_flush;
    int dead;
    int shutting_down;     /* GOAWAY sent: close when the last stream ends */
    uint64_t last_recv;    /* uv_now() of the last input */
    uint64_t ping_sent_at; /* keepalive PING outstanding since, or 0 */
    uint8_t *out;
    size_t out_len;
};

static void flush(struct http2 *h2);
static void request_flush(struct http2 *h2);

/* ---- streams ---------------------------------------------------------- */

static struct http2_stream *stream_new(struct http2 *h2, int32_t id)
{
    struct http2_stream *st = calloc(1, sizeof *st);
    if (st == NULL) {
        return NULL;
    }
    st->h2 = h2;
    st->id = id;
    st->next = h2->streams;
    if (h2->streams != NULL) {
        h2->streams->prev = st;
    }
    h2->streams = st;
    return st;
}

static void free_headers(struct http2_stream *st)
{
    for (size_t i = 0; i < st->n_hdrs; i++) {
        free((char *)st->hdrs[i].name); /* name and value: one block */
    }
    free(st->hdrs);
    st->hdrs = NULL;
    st->n_hdrs = st->cap_hdrs = 0;
}

static void free_trailers(struct http2_stream *st)
{
    for (size_t i = 0; i < st->n_trailers; i++) {
        free(st->trailers[i].name);
    }
    free(st->trailers);
    st->trailers = NULL;
    st->n_trailers = 0;
}

/* Unlink, tell the receiver, free. */
static void stream_close(struct http2_stream *st, uint32_t error_code)
{
    struct http2 *h2 = st->h2;
    struct chunk *ch, *next;

    if (st->prev != NULL) {
        st->prev->next = st->next;
    } else {
        h2->streams = st->next;
    }
    if (st->next != NULL) {
        st->next->prev = st->prev;
    }
    if (st->h != NULL && st->h->closed != NULL) {
        st->h->closed(st->u, error_code);
    }
    if (st->held > 0 && !h2->dead) {
        /* The stream window dies with the stream; the connection window
         * must get the bytes back. */
        nghttp2_session_consume_connection(h2->s, st->held);
    }
    for (ch = st->qhead; ch != NULL; ch = next) {
        next = ch->next;
        free(ch);
    }
    assert(h2->buffered >= st->queued);
    h2->buffered -= st->queued;
    free_headers(st);
    free_trailers(st);
    free(st);
}

static int add_header(struct http2_stream *st,
                      const uint8_t *name,
                      size_t namelen,
                      const uint8_t *value,
                      size_t valuelen)
{
    char *block;
    if (st->n_hdrs == st->cap_hdrs) {
        size_t cap = st->cap_hdrs ? st->cap_hdrs * 2 : 8;
        struct router_header *n = realloc(st->hdrs, cap * sizeof *n);
        if (n == NULL) {
            return KEEL_ENOMEM;
        }
        st->hdrs = n;
        st->cap_hdrs = cap;
    }
    block = malloc(namelen + valuelen + 2);
    if (block == NULL) {
        return KEEL_ENOMEM;
    }
    memcpy(block, name, namelen);
    block[namelen] = '\0';
    memcpy(block + namelen + 1, value, valuelen);
    block[namelen + 1 + valuelen] = '\0';
    st->hdrs[st->n_hdrs].name = block;
    st->hdrs[st->n_hdrs].value = block + namelen + 1;
    st->n_hdrs++;
    return 0;
}

static const char *find_header(const struct http2_stream *st, const char *name)
{
    for (size_t i = 0; i < st->n_hdrs; i++) {
        if (strcmp(st->hdrs[i].name, name) == 0) {
            return st->hdrs[i].value;
        }
    }
    return NULL;
}

/* ---- router adapter: HTTP/2 requests that are not gRPC ---------------- */

struct h2_rreq
{
    struct http2_stream *st; /* NULL once closed */
    struct router_req *req;  /* NULL once the handler finished */
    struct router *router;
    uint8_t *body;
    size_t body_len, body_cap;
    size_t max_body;
    int too_big;
    int dispatched;
};

static int rt_start(void *tp,
                    int status,
                    const struct router_header *headers,
                    size_t n,
                    long long content_length)
{
    struct h2_rreq *rr = tp;
    struct router_header hv[40];
    char sbuf[8], lbuf[24];
    size_t k = 0;

    if (rr->st == NULL) {
        return KEEL_ECANCELED;
    }
    snprintf(sbuf, sizeof sbuf, "%d", status);
    hv[k++] = (struct router_header){":status", sbuf};
    for (size_t i = 0; i < n && k < 38; i++) {
        hv[k++] = headers[i];
    }
    if (content_length >= 0) {
        snprintf(lbuf, sizeof lbuf, "%lld", content_length);
        hv[k++] = (struct router_header){"content-length", lbuf};
    }
    return http2__stream_respond(rr->st, hv, k, 0);
}

static int rt_write(void *tp, const void *buf, size_t len)
{
    struct h2_rreq *rr = tp;
    if (rr->st == NULL) {
        return KEEL_ECANCELED;
    }
    return http2__stream_write(rr->st, buf, len);
}

static int rt_end(void *tp)
{
    struct h2_rreq *rr = tp;
    if (rr->st == NULL) {
        return KEEL_ECANCELED;
    }
    return http2__stream_end(rr->st, NULL, 0);
}

static size_t rt_buffered(void *tp)
{
    struct h2_rreq *rr = tp;
    return rr->st != NULL ? http2__stream_buffered(rr->st) : 0;
}

static void rt_release(void *tp)
{
    struct h2_rreq *rr = tp;
    rr->req = NULL;
}

static const struct router_transport h2_router_transport = {
    rt_start, rt_write, rt_end, rt_buffered, rt_release,
};

static void rr_data(void *u, const uint8_t *p, size_t n)
{
    struct h2_rreq *rr = u;
    /* The body is copied here, bounded by max_http_body per stream. */
    http2__stream_consume(rr->st, n);
    if (rr->dispatched || rr->too_big) {
        return;
    }
    if (rr->body_len + n > rr->max_body) {
        rr->too_big = 1;
        return;
    }
    if (rr->body_len + n > rr->body_cap) {
        size_t cap = rr->body_cap ? rr->body_cap : 4096;
        uint8_t *b;
        while (cap < rr->body_len + n) {
            cap *= 2;
        }
        b = realloc(rr->body, cap);
        if (b == NULL) {
            rr->too_big = 1;
            return;
        }
        rr->body = b;
        rr->body_cap = cap;
    }
    memcpy(rr->body + rr->body_len, p, n);
    rr->body_len += n;
}

static void rr_end(void *u)
{
    struct h2_rreq *rr = u;
    struct router_req *req = rr->req;

    if (rr->dispatched) {
        return;
    }
    rr->dispatched = 1;
    if (!rr->too_big && rr->body_len > 0) {
        uint8_t *b = keel_arena_dup(&req->arena, rr->body, rr->body_len);
        if (b == NULL) {
            rr->too_big = 1;
        } else {
            req->body = b;
            req->body_len = rr->body_len;
        }
    }
    free(rr->body);
    rr->body = NULL;
    if (rr->too_big) {
        /* Answer ourselves; the handler never sees the request. */
        static const char msg[] = "http: request body too large\n";
        struct router_header h = {"content-type", "text/plain; charset=utf-8"};
        (void)rt_start(rr, 413, &h, 1, (long long)sizeof msg - 1);
        (void)rt_write(rr, msg, sizeof msg - 1);
        (void)rt_end(rr);
        router__req_free(req);
        rr->req = NULL;
        return;
    }
    router__dispatch(rr->router, req, &h2_router_transport, rr);
}

static void rr_closed(void *u, uint32_t error_code)
{
    struct h2_rreq *rr = u;
    (void)error_code;
    rr->st = NULL;
    if (rr->req != NULL) {
        if (rr->dispatched) {
            router__req_detach(rr->req);
        } else {
            router__req_free(rr->req);
        }
    }
    free(rr->body);
    free(rr);
}

static const struct http2_stream_handler h2_router_handler = {
    rr_data,
    rr_end,
    NULL,
    rr_closed,
};

/* Copy the request into a router_req and wait for its body. */
static int router_begin(struct http2_stream *st, struct router *r)
{
    struct h2_rreq *rr = calloc(1, sizeof *rr);
    struct router_req *req = router__req_new();
    struct router_header *hv = NULL;
    const char *path = find_header(st, ":path");
    const char *method = find_header(st, ":method");
    const char *q;
    char *p;
    size_t n = 0, plen;

    if (rr == NULL || req == NULL || path == NULL || method == NULL) {
        goto err;
    }
    hv = keel_arena_alloc(&req->arena, (st->n_hdrs + 1) * sizeof *hv);
    if (hv == NULL) {
        goto err;
    }
    for (size_t i = 0; i < st->n_hdrs; i++) {
        const char *name = st->hdrs[i].name;
        if (name[0] == ':') {
            continue;
        }
        hv[n].name = keel_arena_dup(&req->arena, name, strlen(name) + 1);
        hv[n].value = keel_arena_dup(&req->arena, st->hdrs[i].value,
                                     strlen(st->hdrs[i].value) + 1);
        if (hv[n].name == NULL || hv[n].value == NULL) {
            goto err;
        }
        n++;
    }
    /* HTTP/2 carries the authority as a pseudo-header; handlers look for
     * "host" as in HTTP/1.1. */
    if (find_header(st, ":authority") != NULL) {
        const char *a = find_header(st, ":authority");
        hv[n].name = "host";
        hv[n].value = keel_arena_dup(&req->arena, a, strlen(a) + 1);
        if (hv[n].value == NULL) {
            goto err;
        }
        n++;
    }
    req->headers = hv;
    req->n_headers = n;
    req->http2 = 1;
    req->method = keel_arena_dup(&req->arena, method, strlen(method) + 1);
    q = strchr(path, '?');
    plen = q != NULL ? (size_t)(q - path) : strlen(path);
    p = keel_arena_alloc(&req->arena, plen + 1);
    req->query = keel_arena_dup(&req->arena, q != NULL ? q + 1 : "",
                                q != NULL ? strlen(q + 1) + 1 : 1);
    if (req->method == NULL || p == NULL || req->query == NULL) {
        goto err;
    }
    memcpy(p, path, plen);
    p[plen] = '\0';
    req->path = p;
    rr->st = st;
    rr->req = req;
    rr->router = r;
    rr->max_body = conn_limits(st->h2->c)->max_http_body;
    http2__stream_set_handler(st, &h2_router_handler, rr);
    return 0;
err:
    if (req != NULL) {
        router__req_free(req);
    }
    free(rr);
    return KEEL_ENOMEM;
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

static int on_begin_headers(nghttp2_session *s,
                            const nghttp2_frame *frame,
                            void *ud)
{
    struct http2 *h2 = ud;
    struct http2_stream *st;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    st = stream_new(h2, frame->hd.stream_id);
    if (st == NULL) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST this stream */
    }
    nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, st);
    return 0;
}

static int on_header(nghttp2_session *s,
                     const nghttp2_frame *frame,
                     const uint8_t *name,
                     size_t namelen,
                     const uint8_t *value,
                     size_t valuelen,
                     uint8_t flags,
                     void *ud)
{
    struct http2_stream *st;
    (void)flags;
    (void)ud;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0; /* request trailers: gRPC clients send none */
    }
    st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st == NULL) {
        return 0;
    }
    /* Our advertised SETTINGS_MAX_HEADER_LIST_SIZE, counted as RFC 9113
     * §6.5.2 does; a client ignoring it gets its stream reset. */
    st->hdr_bytes += namelen + valuelen + 32;
    if (st->hdr_bytes > H2_MAX_HEADER_LIST) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (add_header(st, name, namelen, value, valuelen) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static void dispatch(struct http2 *h2, struct http2_stream *st)
{
    struct listener *l = conn_listener(h2->c);
    const char *ct = find_header(st, "content-type");
    int rv = 0;

    st->dispatched = 1;
    if (find_header(st, ":path") == NULL ||
        find_header(st, ":method") == NULL) {
        http2__stream_reset(st, NGHTTP2_PROTOCOL_ERROR);
        free_headers(st);
        return;
    }
    if (ct != NULL && strncmp(ct, "application/grpc", 16) == 0 &&
        (ct[16] == '\0' || ct[16] == '+' || ct[16] == ';')) {
        grpc__stream_begin(l->grpc, st, st->hdrs, st->n_hdrs);
    } else if (l->router != NULL) {
        rv = router_begin(st, l->router);
    } else {
        static const char msg[] = "404 page not found\n";
        struct router_header hv[] = {
            {":status", "404"},
            {"content-type", "text/plain; charset=utf-8"},
        };
        rv = http2__stream_respond(st, hv, 2, 0);
        if (rv == 0) {
            rv = http2__stream_write(st, msg, sizeof msg - 1);
        }
        if (rv == 0) {
            rv = http2__stream_end(st, NULL, 0);
        }
    }
    if (rv != 0) {
        http2__stream_reset(st, NGHTTP2_INTERNAL_ERROR);
    }
    /* The receivers copied what they keep. */
    free_headers(st);
}

static int on_frame_recv(nghttp2_session *s,
                         const nghttp2_frame *frame,
                         void *ud)
{
    struct http2 *h2 = ud;
    struct http2_stream *st;

    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st == NULL) {
        return 0;
    }
    if (frame->hd.type == NGHTTP2_HEADERS &&
        frame->headers.cat == NGHTTP2_HCAT_REQUEST && !st->dispatched) {
        dispatch(h2, st);
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !st->remote_ended) {
        st->remote_ended = 1;
        if (st->h != NULL && st->h->end != NULL) {
            st->h->end(st->u);
        }
    }
    return 0;
}

static int on_data_chunk_recv(nghttp2_session *s,
                              uint8_t flags,
                              int32_t stream_id,
                              const uint8_t *data,
                              size_t len,
                              void *ud)
{
    struct http2_stream *st;
    (void)flags;
    (void)ud;
    st = nghttp2_session_get_stream_user_data(s, stream_id);
    if (st == NULL || len == 0) {
        /* Not ours (rejected at begin): give the window back. */
        nghttp2_session_consume(s, stream_id, len);
        return 0;
    }
    st->held += len;
    if (st->h != NULL && st->h->data != NULL) {
        st->h->data(st->u, data, len);
    } else {
        http2__stream_consume(st, len);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s,
                           int32_t stream_id,
                           uint32_t error_code,
                           void *ud)
{
    struct http2_stream *st;
    (void)ud;
    st = nghttp2_session_get_stream_user_data(s, stream_id);
    if (st != NULL) {
        nghttp2_session_set_stream_user_data(s, stream_id, NULL);
        stream_close(st, error_code);
    }
    return 0;
}

static int on_frame_send(nghttp2_session *s,
                         const nghttp2_frame *frame,
                         void *ud)
{
    struct http2_stream *st;
    (void)ud;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        return 0;
    }
    st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st != NULL && !st->remote_ended) {
        /* We answered before the client finished sending (an oversized or
         * rejected request): tell it to stop (RFC 9113 §8.1). */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                  NGHTTP2_NO_ERROR);
    }
    return 0;
}

static ssize_t data_read(nghttp2_session *s,
                         int32_t stream_id,
                         uint8_t *buf,
                         size_t length,
                         uint32_t *flags,
                         nghttp2_data_source *source,
                         void *ud)
{
    struct http2_stream *st = source->ptr;
    struct http2 *h2 = ud;
    size_t done = 0;

    for (;;) {
        while (done < length && st->qhead != NULL) {
            struct chunk *ch = st->qhead;
            size_t n = ch->len - ch->off;
            if (n > length - done) {
                n = length - done;
            }
            memcpy(buf + done, ch->data + ch->off, n);
            ch->off += n;
            done += n;
            st->queued -= n;
            h2->buffered -= n;
            if (ch->off == ch->len) {
                st->qhead = ch->next;
                if (st->qhead == NULL) {
                    st->qtail = NULL;
                }
                free(ch);
            }
        }
        if (st->qhead == NULL && !st->ended && st->had_data) {
            /* Tell the producer (a watch, a snapshot) it may queue more;
             * if it does, keep filling this frame. */
            st->had_data = 0;
            if (st->h != NULL && st->h->drained != NULL) {
                st->h->drained(st->u);
                if ((st->qhead != NULL && done < length) || st->ended) {
                    continue;
                }
            }
        }
        break;
    }
    if (st->qhead == NULL && st->ended) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->n_trailers > 0) {
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            if (nghttp2_submit_trailer(s, stream_id, st->trailers,
                                       st->n_trailers) != 0) {
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
        }
        return (ssize_t)done;
    }
    if (done == 0) {
        st->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)done;
}

/* ---- stream API for grpc.c and the router ----------------------------- */

void http2__stream_consume(struct http2_stream *st, size_t n)
{
    struct http2 *h2 = st->h2;
    assert(n <= st->held);
    st->held -= n;
    if (n > 0 && !h2->dead) {
        nghttp2_session_consume(h2->s, st->id, n);
        request_flush(h2); /* a WINDOW_UPDATE may be due */
    }
}

size_t http2__stream_held(const struct http2_stream *st)
{
    return st->held;
}

void http2__stream_set_handler(struct http2_stream *st,
                               const struct http2_stream_handler *h,
                               void *u)
{
    st->h = h;
    st->u = u;
}

struct conn *http2__stream_conn(const struct http2_stream *st)
{
    return st->h2->c;
}

size_t http2__stream_buffered(const struct http2_stream *st)
{
    return st->queued;
}

static nghttp2_nv *make_nv(const struct router_header *headers, size_t n)
{
    nghttp2_nv *nv = calloc(n ? n : 1, sizeof *nv);
    if (nv == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        nv[i].name = (uint8_t *)headers[i].name;
        nv[i].namelen = strlen(headers[i].name);
        nv[i].value = (uint8_t *)headers[i].value;
        nv[i].valuelen = strlen(headers[i].value);
        nv[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    return nv;
}

int http2__stream_respond(struct http2_stream *st,
                          const struct router_header *headers,
                          size_t n,
                          int end_stream)
{
    struct http2 *h2 = st->h2;
    nghttp2_data_provider prd;
    nghttp2_nv *nv;
    int rv;

    assert(!st->responded);
    if (h2->dead) {
        return KEEL_ECANCELED;
    }
    nv = make_nv(headers, n); /* nghttp2 copies names and values */
    if (nv == NULL) {
        return KEEL_ENOMEM;
    }
    prd.source.ptr = st;
    prd.read_callback = data_read;
    rv =
        nghttp2_submit_response(h2->s, st->id, nv, n, end_stream ? NULL : &prd);
    free(nv);
    if (rv != 0) {
        return KEEL_ECANCELED;
    }
    st->responded = 1;
    st->has_body = !end_stream;
    st->ended = end_stream;
    request_flush(h2);
    return 0;
}

void http2__stream_commit(struct http2_stream *st)
{
    if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(st->h2->s, st->id);
    }
    request_flush(st->h2);
}

uint8_t *http2__stream_reserve(struct http2_stream *st, size_t n)
{
    struct http2 *h2 = st->h2;
    const struct conn_limits *lim = conn_limits(h2->c);
    struct chunk *ch;

    assert(st->has_body && !st->ended);
    if (h2->dead || conn_is_closing(h2->c)) {
        return NULL;
    }
    /* A single message larger than the cap still goes out if nothing else
     * is queued; only accumulation means a client that does not read. */
    if (h2->buffered > 0 && h2->buffered + n > lim->max_buffered) {
        conn_close(h2->c, 0);
        return NULL;
    }
    ch = malloc(sizeof *ch + n);
    if (ch == NULL) {
        return NULL;
    }
    ch->next = NULL;
    ch->len = n;
    ch->off = 0;
    if (st->qtail != NULL) {
        st->qtail->next = ch;
    } else {
        st->qhead = ch;
    }
    st->qtail = ch;
    st->queued += n;
    st->had_data = 1;
    h2->buffered += n;
    return ch->data;
}

int http2__stream_write(struct http2_stream *st, const void *p, size_t n)
{
    uint8_t *dst;
    if (n == 0) {
        return 0;
    }
    dst = http2__stream_reserve(st, n);
    if (dst == NULL) {
        return KEEL_ECANCELED;
    }
    memcpy(dst, p, n);
    http2__stream_commit(st);
    return 0;
}

int http2__stream_end(struct http2_stream *st,
                      const struct router_header *trailers,
                      size_t n)
{
    struct http2 *h2 = st->h2;

    assert(st->has_body && !st->ended);
    if (h2->dead) {
        return KEEL_ECANCELED;
    }
    if (n > 0) {
        st->trailers = calloc(n, sizeof *st->trailers);
        if (st->trailers == NULL) {
            return KEEL_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            size_t nl = strlen(trailers[i].name);
            size_t vl = strlen(trailers[i].value);
            uint8_t *b = malloc(nl + vl + 2);
            if (b == NULL) {
                free_trailers(st);
                return KEEL_ENOMEM;
            }
            memcpy(b, trailers[i].name, nl + 1);
            memcpy(b + nl + 1, trailers[i].value, vl + 1);
            st->trailers[i].name = b;
            st->trailers[i].namelen = nl;
            st->trailers[i].value = b + nl + 1;
            st->trailers[i].valuelen = vl;
            st->trailers[i].flags = NGHTTP2_NV_FLAG_NONE;
            st->n_trailers = i + 1;
        }
    }
    st->ended = 1;
    http2__stream_commit(st);
    return 0;
}

void http2__stream_reset(struct http2_stream *st, uint32_t error_code)
{
    struct http2 *h2 = st->h2;
    if (h2->dead) {
        return;
    }
    nghttp2_submit_rst_stream(h2->s, NGHTTP2_FLAG_NONE, st->id, error_code);
    request_flush(h2);
}

/* ---- session I/O ------------------------------------------------------ */

static void write_out(struct http2 *h2)
{
    if (h2->out_len > 0) {
        (void)conn_write_take(h2->c, h2->out, h2->out_len);
        h2->out = NULL;
        h2->out_len = 0;
    }
}

static int append_out(struct http2 *h2, const uint8_t *p, size_t n)
{
    if (h2->out == NULL) {
        h2->out = malloc(n > H2_WRITE_CHUNK ? n : H2_WRITE_CHUNK);
        if (h2->out == NULL) {
            return KEEL_ENOMEM;
        }
    } else if (h2->out_len + n > H2_WRITE_CHUNK) {
        write_out(h2);
        return append_out(h2, p, n);
    }
    memcpy(h2->out + h2->out_len, p, n);
    h2->out_len += n;
    return 0;
}

/* From the stream API: never serialise synchronously. Handlers call the
 * API from anywhere (timers, other streams' callbacks) and serialising may
 * close streams, whose callbacks would then run inside the handler's call.
 * Deferring to the next loop turn also coalesces many small sends into one
 * write. Inside nghttp2 callbacks, the running recv/flush picks it up. */
static void request_flush(struct http2 *h2)
{
    if (h2->in_session) {
        h2->want_flush = 1;
    } else if (!h2->dead) {
        conn_schedule(h2->c);
    }
}

static void flush(struct http2 *h2)
{
    const struct conn_limits *lim;

    if (h2->in_session) {
        h2->want_flush = 1;
        return;
    }
    if (h2->dead || conn_is_closing(h2->c)) {
        return;
    }
    lim = conn_limits(h2->c);
    h2->in_session = 1;
    do {
        h2->want_flush = 0;
        while (!conn_is_closing(h2->c) &&
               conn_out_bytes(h2->c) + h2->out_len < lim->out_high_water) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h2->s, &data);
            if (n < 0) {
                conn_close(h2->c, 0);
                break;
            }
            if (n == 0) {
                break;
            }
            if (append_out(h2, data, (size_t)n) != 0) {
                conn_close(h2->c, 0);
                break;
            }
        }
        write_out(h2);
    } while (h2->want_flush && !conn_is_closing(h2->c) &&
             conn_out_bytes(h2->c) < lim->out_high_water);
    h2->in_session = 0;
    if (!conn_is_closing(h2->c) && ((!nghttp2_session_want_read(h2->s) &&
                                     !nghttp2_session_want_write(h2->s)) ||
                                    (h2->shutting_down && h2->streams == NULL &&
                                     !nghttp2_session_want_write(h2->s)))) {
        /* GOAWAY exchanged (or sent by our shutdown) and every stream
         * done. */
        conn_close(h2->c, 1);
    }
}

static int h2_recv(void *p, const uint8_t *buf, size_t len)
{
    struct http2 *h2 = p;
    ssize_t n;

    /* Any input proves the peer alive (grpc-go's keepalive does the
     * same); the timer looks at these lazily. */
    h2->last_recv = uv_now(conn_loop(h2->c));
    h2->ping_sent_at = 0;
    h2->in_session = 1;
    n = nghttp2_session_mem_recv(h2->s, buf, len);
    h2->in_session = 0;
    if (n < 0) {
        /* Fatal (bad preface, flooding, our callback failed): say goodbye
         * if the session still can, then close. */
        if (n != NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
            nghttp2_session_terminate_session(h2->s, NGHTTP2_PROTOCOL_ERROR);
            flush(h2);
        }
        return KEEL_EINVAL;
    }
    flush(h2);
    return 0;
}

static void h2_writable(void *p)
{
    flush(p);
}

static void h2_destroy(void *p)
{
    struct http2 *h2 = p;
    h2->dead = 1;
    while (h2->streams != NULL) {
        struct http2_stream *st = h2->streams;
        stream_close(st, NGHTTP2_CANCEL);
    }
    nghttp2_session_del(h2->s);
    free(h2->out);
    free(h2);
}

static void h2_shutdown(void *p)
{
    struct http2 *h2 = p;
    h2->shutting_down = 1;
    /* RFC 9113 §6.8: streams up to the last one we processed still
     * complete; the client retries later ones elsewhere. */
    nghttp2_submit_goaway(h2->s, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(h2->s),
                          NGHTTP2_NO_ERROR, NULL, 0);
    flush(h2);
}

/* Keepalive (gRPC's server keepalive, etcd --grpc-keepalive-interval and
 * --grpc-keepalive-timeout): PING a connection that has been silent for
 * keepalive_time, close it if the silence lasts keepalive_timeout more. */
static void h2_timeout(void *p)
{
    struct http2 *h2 = p;
    const struct conn_limits *lim = conn_limits(h2->c);
    uint64_t now = uv_now(conn_loop(h2->c));
    uint64_t idle = now - h2->last_recv;

    if (h2->ping_sent_at != 0) {
        uint64_t waited = now - h2->ping_sent_at;
        if (waited >= lim->keepalive_timeout_ms) {
            conn_close(h2->c, 0);
            return;
        }
        conn_start_timer(h2->c, lim->keepalive_timeout_ms - waited);
        return;
    }
    if (idle >= lim->keepalive_time_ms) {
        static const uint8_t payload[8] = {'k', 'e', 'e', 'l',
                                           'p', 'i', 'n', 'g'};
        nghttp2_submit_ping(h2->s, NGHTTP2_FLAG_NONE, payload);
        h2->ping_sent_at = now;
        flush(h2);
        conn_start_timer(h2->c, lim->keepalive_timeout_ms);
        return;
    }
    conn_start_timer(h2->c, lim->keepalive_time_ms - idle);
}

static const struct conn_proto http2_proto = {
    h2_recv, h2_writable, h2_destroy, h2_shutdown, h2_timeout,
};

int http2__attach(struct conn *c, const struct conn_proto **ops, void **state)
{
    struct http2 *h2 = calloc(1, sizeof *h2);
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[3];
    int32_t stream_window, conn_window;
    int rv = KEEL_ENOMEM;

    if (h2 == NULL) {
        return KEEL_ENOMEM;
    }
    h2->c = c;
    if (nghttp2_session_callbacks_new(&cbs) != 0 ||
        nghttp2_option_new(&opt) != 0) {
        goto err;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
                                                            on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
                                                           on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_option_set_max_send_header_block_length(opt, H2_MAX_HEADER_LIST);
    /* nghttp2's HTTP checks reject an :authority that is a unix socket
     * path, which grpc-go sends for unix:// endpoints (Go's server accepts
     * it). Framing is still checked; dispatch() checks the pseudo-headers
     * we rely on. */
    nghttp2_option_set_no_http_messaging(opt, 1);
    /* Inbound flow control follows what the receivers hold (see
     * http2__stream_consume). */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* nghttp2 otherwise keeps every closed stream of a connection for the
     * RFC 7540 priority tree: ~280 bytes per request on a long-lived gRPC
     * connection, never freed until it closes (measured: 300 MiB of RSS
     * after 1M puts over 100 connections). gRPC does not use priorities. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (nghttp2_session_server_new2(&h2->s, cbs, h2, opt) != 0) {
        goto err;
    }
    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = conn_limits(c)->max_concurrent_streams;
    {
        const struct conn_limits *lim = conn_limits(c);
        size_t w = H2_STREAM_WINDOW;
        if (lim->max_recv_bytes + 5 > w) {
            w = lim->max_recv_bytes + 5;
        }
        if (lim->max_http_body > w) {
            w = lim->max_http_body;
        }
        if (w > NGHTTP2_MAX_WINDOW_SIZE / 2) {
            w = NGHTTP2_MAX_WINDOW_SIZE / 2;
        }
        stream_window = (int32_t)w;
        conn_window = 2 * stream_window > H2_CONN_WINDOW ? 2 * stream_window
                                                         : H2_CONN_WINDOW;
    }
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = (uint32_t)stream_window;
    iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[2].value = H2_MAX_HEADER_LIST;
    if (nghttp2_submit_settings(h2->s, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
        nghttp2_session_set_local_window_size(h2->s, NGHTTP2_FLAG_NONE, 0,
                                              conn_window) != 0) {
        goto err_session;
    }
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    h2->last_recv = uv_now(conn_loop(c));
    if (conn_limits(c)->keepalive_time_ms > 0) {
        conn_start_timer(c, conn_limits(c)->keepalive_time_ms);
    }
    *ops = &http2_proto;
    *state = h2;
    return 0;
err_session:
    nghttp2_session_del(h2->s);
err:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    free(h2);
    assert(rv != 0);
    return rv;
}
