/*
 * One framed TCP connection of the peer port, dialed or accepted: socket
 * I/O, frame reassembly, the output queue and the close path. The roles
 * (message stream, snapshot, cluster info) live in their owners, which get
 * whole frames through struct pconn_ops.
 *
 *   dial: RESOLVING ──▶ CONNECTING ──▶ OPEN (on_connect; owner sends HELLO)
 *                        │  ▲ refused: the next resolved address, on a new
 *                        └──┘ socket (the failed one is closed first)
 *   accept: ─────────────────────────▶ OPEN
 *   OPEN ──(EOF, I/O error, bad frame, deadline)──▶ on_close(rv) ─▶ CLOSING
 *   OPEN ──(peer__conn_close / _refuse / _close_flush)──────────────▶ CLOSING
 *   CLOSING ──(every handle closed, every request back)──▶ freed
 *
 * Suspended in: uv_getaddrinfo, uv_tcp_connect, uv_read, uv_write, the
 * deadline timer, uv_close.
 *
 * Reassembly: bytes are read straight into rbuf, which grows to hold the
 * frame being read (bounded by max_frame); whole frames are handed to the
 * owner from rbuf (borrowed) and the remainder moved to the front. An
 * oversized length or unknown type closes the connection as soon as the
 * header is in (peer_wire_decode).
 *
 * Failure modes: every error closes only this connection; its owner hears
 * it once through on_close. Frames handed to uv_write are freed by their
 * write callbacks, which libuv runs (with UV_ECANCELED) before the handle's
 * close callback, so a connection is freed only when nothing points at it.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"
#include "peer_int.h"

struct pframe *peer__frame_alloc(uint8_t type, size_t plen)
{
    struct pframe *f = malloc(sizeof *f + PEER_WIRE_HEADER + plen);
    if (f == NULL) {
        return NULL;
    }
    f->next = NULL;
    f->pc = NULL;
    f->counted = 0;
    f->len = PEER_WIRE_HEADER + plen;
    peer_wire_header(f->data, type, plen);
    return f;
}

struct pframe *peer__frame_new(uint8_t type,
                               const void *p1,
                               size_t n1,
                               const void *p2,
                               size_t n2)
{
    struct pframe *f = peer__frame_alloc(type, n1 + n2);
    if (f == NULL) {
        return NULL;
    }
    if (n1 > 0) {
        memcpy(f->data + PEER_WIRE_HEADER, p1, n1);
    }
    if (n2 > 0) {
        memcpy(f->data + PEER_WIRE_HEADER + n1, p2, n2);
    }
    return f;
}

static void conn_unref(struct pconn *pc)
{
    assert(pc->pending > 0);
    if (--pc->pending > 0) {
        return;
    }
    struct peer *t = pc->t;
    peer__responders_detach(pc);
    free(pc->rbuf);
    if (t != NULL) {
        if (pc->prev != NULL) {
            pc->prev->next = pc->next;
        } else {
            t->conns = pc->next;
        }
        if (pc->next != NULL) {
            pc->next->prev = pc->prev;
        }
    }
    free(pc);
    if (t != NULL) {
        peer__release(t);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_shut(struct pconn *pc)
{
    if (pc->closing) {
        return;
    }
    pc->closing = true;
    pc->owner = NULL;
    if (pc->reading) {
        uv_read_stop((uv_stream_t *)&pc->tcp);
        pc->reading = false;
    }
    if (pc->resolving) {
        uv_cancel((uv_req_t *)&pc->gai); /* may be running: then it ends */
    }
    if (!pc->recycling) { /* else on_recycled drops the handle's count */
        uv_close((uv_handle_t *)&pc->tcp, on_handle_closed);
    }
    uv_close((uv_handle_t *)&pc->timer, on_handle_closed);
}

void peer__conn_close(struct pconn *pc)
{
    conn_shut(pc);
}

/* Closed by the connection itself: tell the owner. */
static void conn_fail(struct pconn *pc, int rv)
{
    if (pc->closing) {
        return;
    }
    void *owner = pc->owner;
    if (owner != NULL && pc->ops->on_close != NULL) {
        pc->ops->on_close(pc, rv);
    }
    conn_shut(pc);
}

static void on_timer(uv_timer_t *timer)
{
    struct pconn *pc = timer->data;
    if (pc->linger) {
        conn_shut(pc);
        return;
    }
    conn_fail(pc, pc->dial_rv != 0 ? pc->dial_rv : UV_ETIMEDOUT);
}

void peer__conn_deadline(struct pconn *pc, uint64_t ms)
{
    if (pc->closing || pc->dial_rv != 0) {
        return; /* a failed dial reports from its own 0 ms timer */
    }
    if (ms == 0) {
        uv_timer_stop(&pc->timer);
    } else {
        uv_timer_start(&pc->timer, on_timer, ms, 0);
    }
}

const char *peer__strerror(int rv)
{
    if (rv == UV_EOF) {
        return "connection closed by the remote member";
    }
    return keel_err_is_keel(rv) ? keel_strerror(rv) : uv_strerror(rv);
}

static void on_write(uv_write_t *req, int status)
{
    struct pframe *f = req->data;
    struct pconn *pc = f->pc;

    pc->out_bytes -= f->len;
    if (f->counted) {
        pc->out_msgs--;
    }
    free(f);
    if (pc->closing) {
        return;
    }
    if (status < 0) {
        conn_fail(pc, status);
        return;
    }
    if (pc->write_timeout_ms != 0 && !pc->linger) {
        /* Progress: the stall clock restarts, or stops when idle. */
        peer__conn_deadline(pc, pc->out_bytes > 0 ? pc->write_timeout_ms : 0);
    }
    if (pc->out_bytes == 0) {
        if (pc->linger) {
            conn_shut(pc);
        } else if (pc->owner != NULL && pc->ops->on_drain != NULL) {
            pc->ops->on_drain(pc);
        }
    }
}

int peer__conn_send(struct pconn *pc, struct pframe *f)
{
    uv_buf_t b;
    int rv;

    if (pc->closing || pc->linger) {
        free(f);
        return UV_ECANCELED;
    }
    f->pc = pc;
    f->req.data = f;
    b = uv_buf_init((char *)f->data, (unsigned int)f->len);
    rv = uv_write(&f->req, (uv_stream_t *)&pc->tcp, &b, 1, on_write);
    if (rv != 0) {
        free(f);
        conn_fail(pc, rv);
        return rv;
    }
    if (pc->out_bytes == 0 && pc->write_timeout_ms != 0) {
        peer__conn_deadline(pc, pc->write_timeout_ms);
    }
    pc->out_bytes += f->len;
    if (f->counted) {
        pc->out_msgs++;
    }
    return 0;
}

int peer__conn_sendv(struct pconn *pc,
                     uint8_t type,
                     const void *p1,
                     size_t n1,
                     const void *p2,
                     size_t n2)
{
    struct pframe *f = peer__frame_new(type, p1, n1, p2, n2);
    if (f == NULL) {
        conn_fail(pc, KEEL_ENOMEM);
        return KEEL_ENOMEM;
    }
    return peer__conn_send(pc, f);
}

int peer__conn_hello(struct pconn *pc,
                     uint8_t kind,
                     uint64_t cluster_id,
                     uint64_t from_id,
                     uint64_t to_id)
{
    struct peer_wire_hello h = {
        .version = PEER_WIRE_VERSION,
        .kind = kind,
        .cluster_id = cluster_id,
        .from_id = from_id,
        .to_id = to_id,
    };
    uint8_t p[PEER_WIRE_HELLO_LEN];

    peer_wire_hello_encode(p, &h);
    return peer__conn_sendv(pc, PEER_WIRE_HELLO, p, sizeof p, NULL, 0);
}

void peer__conn_close_flush(struct pconn *pc)
{
    if (pc->closing || pc->linger) {
        return;
    }
    pc->owner = NULL;
    pc->linger = true;
    if (pc->reading) {
        uv_read_stop((uv_stream_t *)&pc->tcp);
        pc->reading = false;
    }
    if (pc->out_bytes == 0) {
        conn_shut(pc);
        return;
    }
    uv_timer_start(&pc->timer, on_timer, PEER_LINGER_MS, 0);
}

void peer__conn_refuse(struct pconn *pc, uint16_t code, const char *reason)
{
    uint8_t c[2];
    peer_wire_put_u16(c, code);
    if (peer__conn_sendv(pc, PEER_WIRE_ERROR, c, 2, reason, strlen(reason)) ==
        0) {
        peer__conn_close_flush(pc);
    } else {
        conn_shut(pc);
    }
}

/* ---- reading ------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct pconn *pc = h->data;
    (void)suggested;
    if (pc->rcap - pc->rlen < PEER_RBUF_STEP) {
        size_t cap = pc->rcap * 2;
        if (cap < pc->rlen + PEER_RBUF_STEP) {
            cap = pc->rlen + PEER_RBUF_STEP;
        }
        /* A frame never needs more than its header, max_frame payload and
         * one read's worth of the next frame. */
        if (cap > pc->max_frame + PEER_WIRE_HEADER + PEER_RBUF_STEP) {
            cap = pc->max_frame + PEER_WIRE_HEADER + PEER_RBUF_STEP;
        }
        uint8_t *nb = cap > pc->rcap ? realloc(pc->rbuf, cap) : NULL;
        if (nb != NULL) {
            pc->rbuf = nb;
            pc->rcap = cap;
        }
    }
    /* Zero length when growing failed: libuv reports UV_ENOBUFS. */
    *buf = uv_buf_init((char *)pc->rbuf + pc->rlen,
                       (unsigned int)(pc->rcap - pc->rlen));
}

/* Hand every complete buffered frame to the owner. */
static void parse(struct pconn *pc)
{
    size_t off = 0;

    while (!pc->closing && !pc->paused && !pc->linger) {
        uint8_t type;
        const uint8_t *p;
        size_t plen;
        long n = peer_wire_decode(pc->rbuf + off, pc->rlen - off, pc->max_frame,
                                  &type, &p, &plen, NULL);
        if (n < 0) {
            conn_fail(pc, KEEL_ECORRUPT);
            return;
        }
        if (n == 0) {
            break;
        }
        off += (size_t)n;
        int rv = pc->ops->on_frame(pc, type, p, plen);
        if (rv < 0) {
            conn_fail(pc, rv);
            return;
        }
    }
    if (pc->closing) {
        return;
    }
    if (off > 0) {
        memmove(pc->rbuf, pc->rbuf + off, pc->rlen - off);
        pc->rlen -= off;
    }
    /* Give back a big buffer once the large frame that needed it is gone. */
    if (pc->rlen == 0 && pc->rcap > 4 * PEER_RBUF_STEP) {
        free(pc->rbuf);
        pc->rbuf = NULL;
        pc->rcap = 0;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct pconn *pc = s->data;
    (void)buf;
    if (nread < 0) {
        conn_fail(pc, (int)nread);
        return;
    }
    pc->rlen += (size_t)nread;
    pc->in_bytes += (uint64_t)nread;
    pc->last_rx = uv_now(pc->loop);
    parse(pc);
}

static int start_reading(struct pconn *pc)
{
    pc->last_rx = uv_now(pc->loop);
    int rv = uv_read_start((uv_stream_t *)&pc->tcp, on_alloc, on_read);
    if (rv == 0) {
        pc->reading = true;
    }
    return rv;
}

void peer__conn_pause(struct pconn *pc)
{
    pc->paused = true;
    if (pc->reading) {
        uv_read_stop((uv_stream_t *)&pc->tcp);
        pc->reading = false;
    }
}

void peer__conn_resume(struct pconn *pc)
{
    if (pc->closing || pc->linger || !pc->paused) {
        return;
    }
    pc->paused = false;
    parse(pc);
    if (!pc->closing && !pc->paused && !pc->linger && !pc->reading) {
        int rv = start_reading(pc);
        if (rv != 0) {
            conn_fail(pc, rv);
        }
    }
}

/* ---- setup -------------------------------------------------------------- */

static struct pconn *conn_new(struct peer *t,
                              uv_loop_t *loop,
                              const struct pconn_ops *ops,
                              void *owner,
                              size_t max_frame)
{
    struct pconn *pc = calloc(1, sizeof *pc);
    if (pc == NULL) {
        return NULL;
    }
    pc->t = t;
    pc->loop = loop;
    pc->ops = ops;
    pc->owner = owner;
    pc->max_frame = max_frame;
    uv_tcp_init(loop, &pc->tcp);
    uv_timer_init(loop, &pc->timer);
    pc->tcp.data = pc;
    pc->timer.data = pc;
    pc->pending = 2;
    if (t != NULL) {
        pc->next = t->conns;
        if (t->conns != NULL) {
            t->conns->prev = pc;
        }
        t->conns = pc;
        peer__hold(t);
    }
    return pc;
}

static void set_addr(struct pconn *pc, const struct sockaddr *sa)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof ip);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
    }
    snprintf(pc->addr, sizeof pc->addr, "%s:%d", ip, port);
}

static void tune(struct pconn *pc)
{
    /* Heartbeats must not wait for Nagle; keepalive finds a dead peer
     * whose stream we only ever write to. */
    uv_tcp_nodelay(&pc->tcp, 1);
    uv_tcp_keepalive(&pc->tcp, 1, 10);
}

const struct sockaddr *peer__dial_first;

static void try_connect(struct pconn *pc);

/* The old socket is closed: a fresh handle for the next address. */
static void on_recycled(uv_handle_t *h)
{
    struct pconn *pc = h->data;
    pc->recycling = false;
    if (pc->closing) {
        conn_unref(pc); /* conn_shut left this handle to us */
        return;
    }
    uv_tcp_init(pc->loop, &pc->tcp);
    pc->tcp.data = pc;
    try_connect(pc);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct pconn *pc = req->data;
    if (pc->closing) {
        conn_unref(pc);
        return;
    }
    conn_unref(pc);
    if (status < 0 && pc->cur_addr + 1 < pc->n_addrs) {
        /* A failed connect leaves the socket unusable: dial the next
         * address on a new one. */
        pc->cur_addr++;
        pc->recycling = true;
        uv_close((uv_handle_t *)&pc->tcp, on_recycled);
        return;
    }
    if (status < 0) {
        conn_fail(pc, status);
        return;
    }
    tune(pc);
    status = start_reading(pc);
    if (status != 0) {
        conn_fail(pc, status);
        return;
    }
    pc->connected = true;
    pc->ops->on_connect(pc);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct pconn *pc = req->data;
    int rv = status;

    pc->resolving = false;
    if (pc->closing) {
        uv_freeaddrinfo(ai);
        conn_unref(pc);
        return;
    }
    if (rv == 0 && peer__dial_first != NULL) {
        memcpy(&pc->addrs[pc->n_addrs++], peer__dial_first,
               peer__dial_first->sa_family == AF_INET6
                   ? sizeof(struct sockaddr_in6)
                   : sizeof(struct sockaddr_in));
    }
    for (struct addrinfo *a = rv == 0 ? ai : NULL;
         a != NULL && pc->n_addrs < PEER_DIAL_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen <= sizeof pc->addrs[0]) {
            memcpy(&pc->addrs[pc->n_addrs++], a->ai_addr, a->ai_addrlen);
        }
    }
    uv_freeaddrinfo(ai);
    conn_unref(pc); /* the resolve request; pending stays > 0: handles */
    if (rv == 0 && pc->n_addrs == 0) {
        rv = UV_EAI_NONAME;
    }
    if (rv != 0) {
        conn_fail(pc, rv);
        return;
    }
    try_connect(pc);
}

static void try_connect(struct pconn *pc)
{
    const struct sockaddr *sa =
        (const struct sockaddr *)&pc->addrs[pc->cur_addr];
    int rv;

    set_addr(pc, sa);
    pc->connect.data = pc;
    rv = uv_tcp_connect(&pc->connect, &pc->tcp, sa, on_connect);
    if (rv == 0) {
        pc->pending++;
    } else {
        conn_fail(pc, rv);
    }
}

struct pconn *peer__conn_dial(struct peer *t,
                              uv_loop_t *loop,
                              const char *url,
                              const struct pconn_ops *ops,
                              void *owner,
                              size_t max_frame)
{
    char host[256], port[16], err[128];
    struct addrinfo hints;
    struct pconn *pc;
    int rv;

    pc = conn_new(t, loop, ops, owner, max_frame);
    if (pc == NULL) {
        return NULL;
    }
    rv = peer__parse_url(url, host, sizeof host, port, sizeof port, err,
                         sizeof err);
    if (rv == 0) {
        snprintf(pc->addr, sizeof pc->addr, "%.255s:%.15s", host, port);
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        pc->gai.data = pc;
        rv = uv_getaddrinfo(loop, &pc->gai, on_resolved, host, port, &hints);
        if (rv == 0) {
            pc->pending++;
            pc->resolving = true;
        }
    }
    if (rv != 0) {
        pc->dial_rv = rv;
        /* Report from the deadline timer's turn, never inside the call. */
        uv_timer_start(&pc->timer, on_timer, 0, 0);
    }
    return pc;
}

struct pconn *peer__conn_accept(struct peer *t,
                                uv_stream_t *server,
                                const struct pconn_ops *ops,
                                size_t max_frame)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    struct pconn *pc = conn_new(t, server->loop, ops, t, max_frame);
    if (pc == NULL) {
        return NULL;
    }
    if (uv_accept(server, (uv_stream_t *)&pc->tcp) != 0) {
        conn_shut(pc);
        return NULL;
    }
    if (uv_tcp_getpeername(&pc->tcp, (struct sockaddr *)&ss, &len) == 0) {
        set_addr(pc, (struct sockaddr *)&ss);
    }
    pc->connected = true;
    tune(pc);
    if (start_reading(pc) != 0) {
        conn_shut(pc);
        return NULL;
    }
    return pc;
}

/* ---- URLs --------------------------------------------------------------- */

int peer__parse_url(const char *url,
                    char *host,
                    size_t host_size,
                    char *port,
                    size_t port_size,
                    char *err,
                    size_t errlen)
{
    const char *hp, *colon, *h, *end;
    size_t hlen, plen;

    if (strncmp(url, "https://", 8) == 0) {
        snprintf(err, errlen,
                 "peer URL %s: https is not supported yet (peer TLS is not "
                 "built); use http://",
                 url);
        return KEEL_EINVAL;
    }
    if (strncmp(url, "http://", 7) != 0) {
        goto bad;
    }
    hp = url + 7;
    end = hp + strcspn(hp, "/");
    if (*end == '/' && end[1] != '\0') {
        goto bad; /* a path: etcd refuses it for peer URLs too */
    }
    if (hp[0] == '[') {
        const char *rb = memchr(hp, ']', (size_t)(end - hp));
        if (rb == NULL || rb[1] != ':') {
            goto bad;
        }
        h = hp + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = NULL;
        for (const char *p = hp; p < end; p++) {
            if (*p == ':') {
                colon = p;
            }
        }
        if (colon == NULL) {
            goto bad;
        }
        h = hp;
        hlen = (size_t)(colon - hp);
    }
    plen = (size_t)(end - colon - 1);
    if (hlen >= host_size || plen == 0 || plen >= port_size) {
        goto bad;
    }
    for (const char *p = colon + 1; p < end; p++) {
        if (*p < '0' || *p > '9') {
            goto bad;
        }
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, colon + 1, plen);
    port[plen] = '\0';
    return 0;
bad:
    snprintf(err, errlen, "peer URL %s: want http://host:port", url);
    return KEEL_EINVAL;
}
