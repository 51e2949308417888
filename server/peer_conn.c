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
 * TLS (https:// peer URLs): OpenSSL over memory BIOs (tls.h) sits between
 * the socket and the frames. Ciphertext is read into cbuf, decrypted into
 * rbuf and parsed as above; an outgoing frame is encrypted at once and its
 * ciphertext written in its place (out_bytes then counts ciphertext).
 * Handshake records go out as they are produced. A dialed connection
 * reports on_connect after the handshake; an accepted one delivers frames
 * only after the handshake and etcd's checkSAN (the client certificate's
 * IP SANs, else its DNS names resolved with uv_getaddrinfo, must name the
 * remote address). A TLS failure reaches the owner as on_close(KEEL_ETLS)
 * with Go's reason in tls_err; the alert is still flushed before closing.
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
#include "tls.h"

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
    free(pc->cbuf);
    free(pc->san);
    tls__conn_free(pc->tls);
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

const char *peer__conn_error(const struct pconn *pc, int rv)
{
    if (rv == KEEL_ETLS && pc->tls_err[0] != '\0') {
        return pc->tls_err;
    }
    return peer__strerror(rv);
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

static int raw_write(struct pconn *pc, struct pframe *f)
{
    uv_buf_t b;
    int rv;

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

/* Write the ciphertext OpenSSL produced as one write (counted: it carries
 * a raft message, for the queue bounds). */
static int tls_flush(struct pconn *pc, int counted)
{
    size_t n = tls__pending_out(pc->tls);
    struct pframe *f;
    if (n == 0) {
        return 0;
    }
    f = malloc(sizeof *f + n);
    if (f == NULL) {
        conn_fail(pc, KEEL_ENOMEM);
        return KEEL_ENOMEM;
    }
    f->next = NULL;
    f->counted = counted;
    f->len = tls__take_out_into(pc->tls, f->data, n);
    return raw_write(pc, f);
}

int peer__conn_send(struct pconn *pc, struct pframe *f)
{
    if (pc->closing || pc->linger) {
        free(f);
        return UV_ECANCELED;
    }
    if (pc->tls != NULL) {
        int counted = f->counted;
        int rv = tls__write(pc->tls, f->data, f->len);
        free(f);
        if (rv != 0) {
            conn_fail(pc, KEEL_ETLS);
            return rv;
        }
        return tls_flush(pc, counted);
    }
    return raw_write(pc, f);
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

/* Make room in rbuf for the next read (or decryption). */
static void rbuf_grow(struct pconn *pc)
{
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
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct pconn *pc = h->data;
    (void)suggested;
    if (pc->tls != NULL) {
        /* Ciphertext; tls_pump decrypts it into rbuf. */
        if (pc->cbuf == NULL) {
            pc->cbuf = malloc(PEER_RBUF_STEP);
        }
        *buf = uv_buf_init((char *)pc->cbuf,
                           pc->cbuf != NULL ? PEER_RBUF_STEP : 0);
        return;
    }
    rbuf_grow(pc);
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

/* TLS failed: the owner hears KEEL_ETLS, the alert is still flushed. */
static void tls_failed(struct pconn *pc, const char *why)
{
    snprintf(pc->tls_err, sizeof pc->tls_err, "%s", why);
    if (pc->closing || pc->linger) {
        return;
    }
    if (pc->owner != NULL && pc->ops->on_close != NULL) {
        pc->ops->on_close(pc, KEEL_ETLS);
    }
    peer__conn_close_flush(pc);
}

/* The address part of pc->addr ("ip:port"). */
static void remote_ip(const struct pconn *pc, char *ip, size_t len)
{
    const char *colon = strrchr(pc->addr, ':');
    size_t n = colon != NULL ? (size_t)(colon - pc->addr) : strlen(pc->addr);
    snprintf(ip, len, "%.*s", (int)n, pc->addr);
}

static void tls_pump(struct pconn *pc);
static void san_resolve(struct pconn *pc);
static int start_reading(struct pconn *pc);

static void on_san_resolved(uv_getaddrinfo_t *req,
                            int status,
                            struct addrinfo *ai)
{
    struct pconn *pc = req->data;
    char ip[INET6_ADDRSTRLEN + 8], err[sizeof pc->tls_err];
    bool match = false;

    pc->resolving = false;
    if (pc->closing) {
        uv_freeaddrinfo(ai);
        conn_unref(pc);
        return;
    }
    conn_unref(pc); /* the request; the handles keep pc */
    remote_ip(pc, ip, sizeof ip);
    for (struct addrinfo *a = status == 0 ? ai : NULL; a != NULL && !match;
         a = a->ai_next) {
        char got[INET6_ADDRSTRLEN] = "";
        if (a->ai_family == AF_INET) {
            uv_ip4_name((const struct sockaddr_in *)a->ai_addr, got,
                        sizeof got);
        } else if (a->ai_family == AF_INET6) {
            uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, got,
                        sizeof got);
        }
        match = strcmp(got, ip) == 0;
    }
    uv_freeaddrinfo(ai);
    if (match) {
        int rv = 0;
        pc->tls_up = true;
        if (!pc->paused && !pc->reading) {
            rv = start_reading(pc);
        }
        if (rv != 0) {
            conn_fail(pc, rv);
        } else {
            tls_pump(pc);
        }
    } else if (++pc->cur_san < pc->n_san) {
        san_resolve(pc);
    } else {
        tls__san_dns_error(pc->tls, ip, err, sizeof err);
        tls_failed(pc, err);
    }
}

/* etcd's isHostInDNS, forward half: resolve the certificate's next DNS
 * name (wildcards never match: etcd needs a reverse lookup for those). */
static void san_resolve(struct pconn *pc)
{
    struct addrinfo hints;
    int rv;
    while (pc->cur_san < pc->n_san && pc->san[pc->cur_san][0] == '*') {
        pc->cur_san++;
    }
    if (pc->cur_san == pc->n_san) {
        char ip[INET6_ADDRSTRLEN + 8], err[sizeof pc->tls_err];
        remote_ip(pc, ip, sizeof ip);
        tls__san_dns_error(pc->tls, ip, err, sizeof err);
        tls_failed(pc, err);
        return;
    }
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    pc->gai.data = pc;
    rv = uv_getaddrinfo(pc->loop, &pc->gai, on_san_resolved,
                        pc->san[pc->cur_san], NULL, &hints);
    if (rv != 0) {
        conn_fail(pc, rv);
        return;
    }
    pc->pending++;
    pc->resolving = true;
}

/* The handshake finished: a dialer may talk; an acceptor checks the
 * client certificate's SANs against the remote address first. */
static void tls_handshake_done(struct pconn *pc)
{
    char ip[INET6_ADDRSTRLEN + 8], err[sizeof pc->tls_err];
    int n;

    if (!pc->tls_srv) {
        pc->tls_up = true;
        pc->ops->on_connect(pc);
        return;
    }
    remote_ip(pc, ip, sizeof ip);
    pc->san = malloc(PEER_SAN_MAX_NAMES * sizeof *pc->san);
    if (pc->san == NULL) {
        conn_fail(pc, KEEL_ENOMEM);
        return;
    }
    n = pc->skip_san
            ? 0
            : tls__check_san(pc->tls, ip, pc->san, PEER_SAN_MAX_NAMES, err,
                             sizeof err);
    if (n < 0) {
        tls_failed(pc, err);
    } else if (n == 0) {
        pc->tls_up = true;
    } else {
        /* Nothing is read while the names resolve: a client must not
         * make us buffer its traffic before it is accepted. */
        if (pc->reading) {
            uv_read_stop((uv_stream_t *)&pc->tcp);
            pc->reading = false;
        }
        pc->n_san = (size_t)n;
        san_resolve(pc);
    }
}

/* Decrypt what the socket brought, run the handshake, deliver frames. */
static void tls_pump(struct pconn *pc)
{
    while (!pc->closing && !pc->linger) {
        ssize_t n;
        if (pc->tls_up) {
            parse(pc);
            if (pc->closing || pc->paused || pc->linger) {
                return;
            }
        } else if (pc->san != NULL) {
            return; /* SAN check in flight: on_san_resolved resumes */
        }
        rbuf_grow(pc);
        if (pc->rcap == pc->rlen) {
            conn_fail(pc, UV_ENOBUFS);
            return;
        }
        n = tls__read(pc->tls, pc->rbuf + pc->rlen, pc->rcap - pc->rlen);
        if (tls_flush(pc, 0) != 0) {
            return;
        }
        if (n < 0) {
            tls_failed(pc, tls__error(pc->tls));
            return;
        }
        pc->rlen += (size_t)n;
        if (!pc->tls_up && pc->san == NULL && tls__established(pc->tls)) {
            tls_handshake_done(pc);
            continue;
        }
        if (n == 0) {
            return;
        }
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct pconn *pc = s->data;
    if (nread < 0) {
        conn_fail(pc, (int)nread);
        return;
    }
    pc->in_bytes += (uint64_t)nread;
    pc->last_rx = uv_now(pc->loop);
    if (pc->tls != NULL) {
        if (tls__feed(pc->tls, buf->base, (size_t)nread) != 0) {
            conn_fail(pc, KEEL_ENOMEM);
            return;
        }
        tls_pump(pc);
        return;
    }
    pc->rlen += (size_t)nread;
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
    if (pc->tls != NULL) {
        tls_pump(pc); /* plaintext OpenSSL still holds, then frames */
    } else {
        parse(pc);
    }
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
    if (pc->tls != NULL) {
        tls_pump(pc); /* the ClientHello; on_connect after the handshake */
        return;
    }
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
                              struct tls_ctx *tls,
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
    if (rv == 0 && peer__url_tls(url)) {
        if (tls == NULL) {
            snprintf(pc->tls_err, sizeof pc->tls_err,
                     "no peer TLS configuration to dial %s", url);
            rv = KEEL_ETLS;
        } else if ((pc->tls = tls__conn_new_client(tls, host)) == NULL) {
            rv = KEEL_ENOMEM;
        }
    }
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
                                struct tls_ctx *tls,
                                bool skip_san,
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
    if (tls != NULL) {
        pc->tls_srv = true;
        pc->skip_san = skip_san;
        if ((pc->tls = tls__conn_new(tls)) == NULL) {
            conn_shut(pc);
            return NULL;
        }
    }
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

    if (strncmp(url, "http://", 7) != 0 && !peer__url_tls(url)) {
        goto bad;
    }
    hp = url + (peer__url_tls(url) ? 8 : 7);
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
    snprintf(err, errlen, "peer URL %s: want http(s)://host:port", url);
    return KEEL_EINVAL;
}

bool peer__url_tls(const char *url)
{
    return strncmp(url, "https://", 8) == 0;
}
