/*
 * Client connections: socket I/O, protocol sniffing, outbound back-pressure.
 *
 * State machine of one connection:
 *
 *   accept ──▶ SNIFF ──(24 bytes == HTTP/2 preface)──▶ PROTO (http2.c)
 *                │
 *                └──(a byte differs from the preface)──▶ PROTO (http1.c)
 *   any state ──(EOF, read error, protocol error, conn_close)──▶ CLOSING
 *   CLOSING ──(uv_close callback, after every write callback)──▶ freed
 *
 * Suspended in: uv_read (idle connection), uv_write (output pending),
 * uv_shutdown + linger timer (graceful close), uv_close.
 *
 * Sniffing buffers at most the 24 preface bytes, then replays them into the
 * chosen protocol, so neither protocol needs to know about sniffing.
 *
 * Back-pressure: every outbound buffer passes through conn_write_take() and
 * is counted in out_bytes until its write callback. Above
 * limits.out_high_water the connection stops reading from the socket (a
 * client that sends requests but never reads responses cannot make us queue
 * answers forever); below half of it reading resumes and the protocol is told
 * it may serialise more frames (conn_proto.writable).
 *
 * Read buffers: one 64 KiB buffer per listener, lent to whichever connection
 * libuv is reading; protocols consume the bytes synchronously (nghttp2 and
 * llhttp copy what they keep), so thousands of idle connections cost no
 * read buffers.
 *
 * TLS (tls.c) sits between on_read() and feed() (ciphertext into a memory
 * BIO, plaintext out of SSL_read) and inside conn_write_take() (SSL_write,
 * then the BIO's ciphertext to the socket). Sniffing then runs on the
 * plaintext; it agrees with ALPN "h2" for every conforming client. Nothing
 * above conn.c knows about TLS; back-pressure counts ciphertext bytes.
 *
 * Failure modes: a failed write or read closes the connection; a protocol
 * error closes it after flushing what the protocol queued (a GOAWAY, a 400).
 * Closing never calls back into the protocol synchronously: its destroy()
 * runs from the uv_close callback, so protocol code may call conn_close()
 * from anywhere.
 */
#include "conn.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"
#include "http2.h"
#include "keel_err.h"
#include "listener.h"
#include "log.h"
#include "tls.h"

/* RFC 9113 §3.4 */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

/* How long a graceful close waits for the peer to take our last bytes. */
#define CONN_LINGER_MS 2000

enum conn_state {
    CONN_SNIFF,
    CONN_PROTO,
    CONN_CLOSING,
};

struct conn
{
    struct listener *l;
    struct conn *prev, *next; /* in l->conns */
    union
    {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    uv_timer_t linger; /* conn_schedule(); then the graceful close deadline */
    uv_timer_t timer;  /* conn_start_timer() */
    uv_shutdown_t shutdown_req;
    enum conn_state state;
    int reading;       /* uv_read_start active */
    int paused;        /* conn_pause_read() */
    int backpressured; /* out_bytes went over the high-water mark */
    int handles_open;  /* u.handle and linger, until their close cbs */
    size_t out_bytes;
    uint8_t sniff[H2_PREFACE_LEN];
    size_t sniff_len;
    const struct conn_proto *proto;
    void *proto_state;
    struct tls_conn *tls; /* NULL on plaintext listeners */
};

struct conn_write
{
    uv_write_t req;
    struct conn *c;
    void *buf;
    size_t len;
};

void conn_limits_default(struct conn_limits *l)
{
    l->max_request_bytes = CONN_DEFAULT_MAX_REQUEST_BYTES;
    l->max_recv_bytes =
        CONN_DEFAULT_MAX_REQUEST_BYTES + CONN_GRPC_OVERHEAD_BYTES;
    l->max_http_body =
        CONN_DEFAULT_MAX_REQUEST_BYTES + CONN_GRPC_OVERHEAD_BYTES;
    l->out_high_water = 4u * 1024u * 1024u;
    /* etcd: --grpc-keepalive-interval 2h, --grpc-keepalive-timeout 20s. */
    l->keepalive_time_ms = 2u * 3600u * 1000u;
    l->keepalive_timeout_ms = 20u * 1000u;
    l->max_buffered = 64u * 1024u * 1024u;
    /* etcd sets math.MaxUint32 (v3rpc/grpc.go maxStreams); a bound keeps a
     * single client from pinning unbounded per-stream state. */
    l->max_concurrent_streams = 10000;
}

size_t conn_out_bytes(const struct conn *c)
{
    return c->out_bytes;
}

const struct conn_limits *conn_limits(const struct conn *c)
{
    return &c->l->limits;
}

uv_loop_t *conn_loop(const struct conn *c)
{
    return c->l->loop;
}

struct listener *conn_listener(const struct conn *c)
{
    return c->l;
}

int conn_is_closing(const struct conn *c)
{
    return c->state == CONN_CLOSING;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void update_reading(struct conn *c)
{
    int want = c->state != CONN_CLOSING && !c->paused && !c->backpressured;
    if (want && !c->reading) {
        if (uv_read_start(&c->u.stream, on_alloc, on_read) == 0) {
            c->reading = 1;
        } else {
            conn_close(c, 0);
        }
    } else if (!want && c->reading) {
        uv_read_stop(&c->u.stream);
        c->reading = 0;
    }
}

void conn_pause_read(struct conn *c)
{
    c->paused = 1;
    update_reading(c);
}

void conn_resume_read(struct conn *c)
{
    c->paused = 0;
    update_reading(c);
}

static void conn_free(struct conn *c)
{
    struct listener *l = c->l;
    if (c->proto != NULL) {
        c->proto->destroy(c->proto_state);
        c->proto = NULL;
    }
    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        l->conns = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    l->n_conns--;
    tls__conn_free(c->tls);
    free(c);
    listener__conn_gone(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    assert(c->handles_open > 0);
    if (--c->handles_open == 0) {
        conn_free(c);
    }
}

static void close_handles(struct conn *c)
{
    if (!uv_is_closing(&c->u.handle)) {
        uv_close(&c->u.handle, on_handle_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&c->linger)) {
        uv_close((uv_handle_t *)&c->linger, on_handle_closed);
    }
    if (!uv_is_closing((uv_handle_t *)&c->timer)) {
        uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    }
}

static void on_linger_timeout(uv_timer_t *t)
{
    close_handles(t->data);
}

static void on_scheduled(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == CONN_PROTO && c->proto->writable != NULL) {
        c->proto->writable(c->proto_state);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == CONN_PROTO && c->proto->timeout != NULL) {
        c->proto->timeout(c->proto_state);
    }
}

void conn_start_timer(struct conn *c, uint64_t ms)
{
    if (c->state != CONN_CLOSING) {
        uv_timer_start(&c->timer, on_timer, ms, 0);
    }
}

void conn_schedule(struct conn *c)
{
    /* The linger timer is free until the connection closes. */
    if (c->state != CONN_CLOSING) {
        uv_timer_start(&c->linger, on_scheduled, 0, 0);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    close_handles(req->data);
}

static int tls_flush(struct conn *c);

void conn_close(struct conn *c, int graceful)
{
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (graceful && c->tls != NULL && !c->l->forced) {
        /* queued before CLOSING (which refuses writes); a failed write
         * closes the connection itself */
        tls__close_notify(c->tls);
        (void)tls_flush(c);
        if (c->state == CONN_CLOSING) {
            return;
        }
    }
    c->state = CONN_CLOSING;
    uv_timer_stop(&c->linger);
    uv_timer_stop(&c->timer);
    update_reading(c);
    if (graceful && c->out_bytes > 0 && !c->l->forced) {
        /* Let the queued bytes (a GOAWAY, an error response) reach the
         * client; uv_shutdown completes after the pending writes. */
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, &c->u.stream, on_shutdown) == 0) {
            uv_timer_start(&c->linger, on_linger_timeout, CONN_LINGER_MS, 0);
            return;
        }
    }
    close_handles(c);
}

static void on_write(uv_write_t *req, int status)
{
    struct conn_write *w = (struct conn_write *)req;
    struct conn *c = w->c;
    assert(c->out_bytes >= w->len);
    c->out_bytes -= w->len;
    free(w->buf);
    free(w);
    if (status < 0) {
        conn_close(c, 0);
        return;
    }
    if (c->state == CONN_CLOSING) {
        return;
    }
    if (c->backpressured && c->out_bytes <= c->l->limits.out_high_water / 2) {
        c->backpressured = 0;
        update_reading(c);
    }
    if (c->proto != NULL && c->proto->writable != NULL &&
        c->out_bytes <= c->l->limits.out_high_water / 2) {
        c->proto->writable(c->proto_state);
    }
}

static int raw_write_take(struct conn *c, void *buf, size_t len)
{
    struct conn_write *w;
    uv_buf_t b;
    int rv;

    assert(len > 0);
    if (c->state == CONN_CLOSING) {
        free(buf);
        return KEEL_ECANCELED;
    }
    w = malloc(sizeof *w);
    if (w == NULL) {
        free(buf);
        conn_close(c, 0);
        return KEEL_ENOMEM;
    }
    w->c = c;
    w->buf = buf;
    w->len = len;
    b = uv_buf_init(buf, (unsigned)len);
    rv = uv_write(&w->req, &c->u.stream, &b, 1, on_write);
    if (rv != 0) {
        free(buf);
        free(w);
        conn_close(c, 0);
        return rv;
    }
    c->out_bytes += len;
    if (c->out_bytes > c->l->limits.out_high_water && !c->backpressured) {
        c->backpressured = 1;
        update_reading(c);
    }
    return 0;
}

/* Hand the TLS layer's ciphertext to the socket. */
static int tls_flush(struct conn *c)
{
    size_t n = 0;
    void *b;
    while ((b = tls__take_out(c->tls, &n)) != NULL) {
        int rv;
        if (n == 0) {
            free(b);
            break;
        }
        rv = raw_write_take(c, b, n);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

int conn_write_take(struct conn *c, void *buf, size_t len)
{
    int rv;
    if (c->tls == NULL) {
        return raw_write_take(c, buf, len);
    }
    if (c->state == CONN_CLOSING) {
        free(buf);
        return KEEL_ECANCELED;
    }
    rv = tls__write(c->tls, buf, len);
    free(buf);
    if (rv != 0) {
        conn_close(c, 0);
        return rv;
    }
    return tls_flush(c);
}

const char *conn_peer_cn(const struct conn *c)
{
    return c->tls != NULL ? tls__peer_cn(c->tls) : "";
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->l->rbuf, LISTENER_RBUF_SIZE);
}

static void feed(struct conn *c, const uint8_t *p, size_t n)
{
    int rv;
    if (c->state == CONN_SNIFF) {
        size_t take = H2_PREFACE_LEN - c->sniff_len;
        int is_h2;
        if (take > n) {
            take = n;
        }
        memcpy(c->sniff + c->sniff_len, p, take);
        c->sniff_len += take;
        p += take;
        n -= take;
        if (memcmp(c->sniff, h2_preface, c->sniff_len) == 0 &&
            c->sniff_len < H2_PREFACE_LEN) {
            return; /* still a prefix of the preface: wait for more */
        }
        is_h2 = memcmp(c->sniff, h2_preface, c->sniff_len) == 0;
        rv = is_h2 ? http2__attach(c, &c->proto, &c->proto_state)
                   : http1__attach(c, &c->proto, &c->proto_state);
        if (rv != 0) {
            conn_close(c, 0);
            return;
        }
        c->state = CONN_PROTO;
        rv = c->proto->recv(c->proto_state, c->sniff, c->sniff_len);
        if (rv != 0) {
            conn_close(c, 1);
            return;
        }
    }
    if (n > 0 && c->state == CONN_PROTO) {
        rv = c->proto->recv(c->proto_state, p, n);
        if (rv != 0) {
            conn_close(c, 1);
        }
    }
}

/* etcd (embed/config.go, TLSInfo.HandshakeFailure):
 * "rejected connection from "127.0.0.1:38188" (error "tls: client didn't
 * provide a certificate", ServerName "")". */
static void log_rejected(struct conn *c)
{
    char addr[INET6_ADDRSTRLEN + 8] = "";
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!c->l->is_unix &&
        uv_tcp_getpeername(&c->u.tcp, (struct sockaddr *)&ss, &len) == 0) {
        char ip[INET6_ADDRSTRLEN] = "";
        int port;
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, ip, sizeof ip);
            port = ntohs(a->sin6_port);
            snprintf(addr, sizeof addr, "[%s]:%d", ip, port);
        } else {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            uv_ip4_name(a, ip, sizeof ip);
            port = ntohs(a->sin_port);
            snprintf(addr, sizeof addr, "%s:%d", ip, port);
        }
    }
    tls__log_rejected(c->tls, addr, NULL);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    (void)buf;
    if (nread < 0) {
        /* EOF or error. A half-closed client could still read our answers,
         * but neither gRPC nor HTTP/1.1 clients half-close TCP on purpose;
         * etcd (Go net/http) closes too. */
        conn_close(c, 0);
        return;
    }
    if (nread == 0 || c->state == CONN_CLOSING) {
        return;
    }
    if (c->tls == NULL && c->l->tls != NULL && c->state == CONN_SNIFF &&
        c->sniff_len == 0 && tls_is_handshake_byte((uint8_t)buf->base[0])) {
        /* A listener serving https:// and http:// on one address (etcd
         * merges them into one cmux): a TLS record selects TLS. */
        c->tls = tls__conn_new(c->l->tls);
        if (c->tls == NULL) {
            conn_close(c, 0);
            return;
        }
    }
    if (c->tls != NULL) {
        ssize_t n = 0;
        /* The BIO copies the ciphertext, so the read buffer is free to
         * receive the plaintext. */
        if (tls__feed(c->tls, buf->base, (size_t)nread) != 0) {
            conn_close(c, 0);
            return;
        }
        while (c->state != CONN_CLOSING) {
            n = tls__read(c->tls, c->l->rbuf, LISTENER_RBUF_SIZE);
            if (n <= 0) {
                break;
            }
            feed(c, (const uint8_t *)c->l->rbuf, (size_t)n);
        }
        (void)tls_flush(c); /* handshake records, alerts */
        if (n < 0) {
            if (!tls__established(c->tls) && tls__error(c->tls)[0] != '\0') {
                log_rejected(c);
            }
            conn_close(c, 1);
        }
        return;
    }
    feed(c, (const uint8_t *)buf->base, (size_t)nread);
}

int conn__accept(struct listener *l)
{
    struct conn *c = calloc(1, sizeof *c);
    int rv;

    if (c == NULL) {
        return KEEL_ENOMEM;
    }
    c->l = l;
    if (l->is_unix) {
        rv = uv_pipe_init(l->loop, &c->u.pipe, 0);
    } else {
        rv = uv_tcp_init(l->loop, &c->u.tcp);
    }
    if (rv != 0) {
        free(c);
        return rv;
    }
    c->u.handle.data = c;
    uv_timer_init(l->loop, &c->linger);
    c->linger.data = c;
    uv_timer_init(l->loop, &c->timer);
    c->timer.data = c;
    c->handles_open = 3;
    /* From here on the connection is freed through its close callbacks. */
    c->next = l->conns;
    if (l->conns != NULL) {
        l->conns->prev = c;
    }
    l->conns = c;
    l->n_conns++;
    rv = uv_accept(&l->u.stream, &c->u.stream);
    if (rv != 0) {
        conn_close(c, 0);
        return rv;
    }
    l->n_accepted++;
    if (l->tls != NULL && !l->tls_optional) {
        c->tls = tls__conn_new(l->tls);
        if (c->tls == NULL) {
            conn_close(c, 0);
            return KEEL_ENOMEM;
        }
    }
    if (!l->is_unix) {
        uv_tcp_nodelay(&c->u.tcp, 1);
        /* Go's listeners enable TCP keepalive (15-30 s) on accepted
         * connections; dead peers then free their watches eventually even
         * without HTTP/2 pings. */
        uv_tcp_keepalive(&c->u.tcp, 1, 30);
    }
    update_reading(c);
    return 0;
}

void conn__shutdown_all(struct listener *l)
{
    struct conn *c, *next;
    for (c = l->conns; c != NULL; c = next) {
        next = c->next; /* shutdown may close c (not free it) */
        if (c->state == CONN_PROTO && c->proto->shutdown != NULL) {
            c->proto->shutdown(c->proto_state);
        } else {
            conn_close(c, 0); /* not even a request yet */
        }
    }
}

void conn__close_all(struct listener *l)
{
    struct conn *c;
    for (c = l->conns; c != NULL; c = c->next) {
        conn_close(c, 0);
    }
}
