/*
 * keel-faultproxy: a TCP proxy that injects network faults, for putting
 * between cluster members (or between clients and a server) in tests.
 *
 *   keel-faultproxy --control SOCKET --route LHOST:LPORT=THOST:TPORT ...
 *   keel-faultproxy ctl SOCKET COMMAND [ARGS...]
 *
 * Happy path: one libuv loop. Each route listens on LHOST:LPORT; every
 * accepted connection gets its own connection to THOST:TPORT and bytes are
 * copied both ways ("up" = from the dialer toward the target, "down" = the
 * replies). A half-close (EOF) is forwarded as a shutdown after the data
 * before it; an error on either side closes both. A connection whose
 * destination has more than 4 MiB queued stops reading its source until the
 * queue drains below 1 MiB.
 *
 * Faults, set per route (named by its listen port, "HOST:PORT", or "all")
 * through the control socket, one command per connection, answered with
 * zero or more lines and then "ok" or "error: ...":
 *   partition R [up|down|both]  both (default): every connection of R is
 *                       reset and new ones are accepted and closed at once
 *                       (a link that refuses); up or down: the bytes in
 *                       that direction are discarded (TCP cannot lose bytes
 *                       in one direction otherwise), the other flows
 *   partition R from ID [up|down|both]   the same, only for connections
 *                       dialed by member ID (hex, as etcdctl member list
 *                       prints it; see "who dialed" below)
 *   blackhole R         connections are accepted but never forwarded:
 *                       bytes both ways vanish, nothing is closed (a link
 *                       where packets disappear: peers notice only by
 *                       their own timeouts)
 *   delay R DURATION [up|down|both]   hold every chunk DURATION ("200ms",
 *                       "1s", "0") before forwarding it, order kept
 *   drop R P            each chunk is lost with probability P (0..1); a
 *                       byte stream cannot lose a chunk and go on, so the
 *                       connection is then reset (a flaky link)
 *   reset R             close every connection of R now (faults unchanged)
 *   heal R              remove every fault of R
 *   status              one line per route: connections, faults, bytes
 * Who dialed: on loopback every member dials from 127.0.0.1, so the proxy
 * reads the sender's member id from the first bytes of each connection
 * (keel's HELLO frame, etcd's X-Server-From header). That lets a test cut
 * the link between two members only (partition R_y from X and R_x from Y)
 * or isolate one member fully (its route, plus every route from it).
 * The ctl form sends one command and prints the answer; its exit status is
 * 0 on "ok", 1 on "error", 2 when the proxy cannot be reached.
 *
 * Failure modes: a target that refuses closes the accepted connection;
 * unparsable arguments exit 2 at start; SIGINT/SIGTERM exit 0.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#define HIGH_WATER (4u << 20)
#define LOW_WATER (1u << 20)

enum { UP, DOWN };

struct conn;

struct route
{
    char listen[64], target[64];
    int port;
    struct sockaddr_storage taddr;
    uv_tcp_t server;
    /* faults */
    int cut[2];       /* bytes in this direction are discarded */
    int refuse;       /* partition both: reset and refuse */
    int blackhole;    /* accept, never forward */
    uint64_t delay[2]; /* ms */
    double drop;
    /* partitions of the connections dialed by one member (see sniff) */
    struct from_cut
    {
        uint64_t id;
        int cut[2];
        int refuse;
    } from[16];
    int nfrom;
    /* counters */
    uint64_t bytes[2], accepted, dropped_conns;
    struct conn *conns;
};

struct chunk
{
    struct chunk *next;
    uint64_t due;   /* uv_now() ms */
    size_t len;     /* 0 = EOF marker */
    char data[];
};

/* One direction of a connection: reads from src, writes to dst. */
struct flow
{
    struct conn *c;
    int dir;
    struct chunk *head, *tail; /* held by a delay */
    uv_timer_t timer;
    int reading;
    int paused; /* stopped for backpressure */
    int eof_seen, eof_sent;
};

struct conn
{
    struct route *r;
    struct conn *next, *prev;
    uv_tcp_t sock[2];      /* [UP] = to the target, [DOWN] = accepted */
    int sock_init[2];
    uv_connect_t creq;
    int connected;         /* target connected */
    int forwarding;        /* not a blackhole/refused connection */
    struct flow flow[2];   /* [UP]: accepted -> target; [DOWN]: back */
    int closing;
    int handles;           /* open handles; freed at 0 */
    /* the dialing member, learnt from its first bytes (see sniff) */
    int from_state;        /* FROM_SNIFFING, FROM_KNOWN, FROM_NONE */
    uint64_t from_id;
    char sniff[2048];
    size_t sniffed;
    int http;              /* an HTTP connection: each request is sniffed */
    char tail[48];         /* its last bytes toward the target */
    size_t tail_len;
};

enum { FROM_SNIFFING, FROM_KNOWN, FROM_NONE };

static uv_loop_t *loop;
static struct route routes[64];
static int nroutes;
static uint64_t rng = 0x853c49e6748fea9bull;

static double rnd01(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* ---- connections ------------------------------------------------------------
 */

static uv_stream_t *src_of(struct flow *f)
{
    return (uv_stream_t *)&f->c->sock[f->dir == UP ? DOWN : UP];
}

static uv_stream_t *dst_of(struct flow *f)
{
    return (uv_stream_t *)&f->c->sock[f->dir == UP ? UP : DOWN];
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles == 0) {
        for (int d = 0; d < 2; d++) {
            struct chunk *k = c->flow[d].head;
            while (k) {
                struct chunk *n = k->next;
                free(k);
                k = n;
            }
        }
        free(c);
    }
}

static void conn_close(struct conn *c)
{
    if (c->closing) {
        return;
    }
    c->closing = 1;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        c->r->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    for (int i = 0; i < 2; i++) {
        if (c->sock_init[i]) {
            uv_close((uv_handle_t *)&c->sock[i], on_handle_closed);
        }
        c->flow[i].timer.data = c; /* on_handle_closed wants the conn */
        uv_close((uv_handle_t *)&c->flow[i].timer, on_handle_closed);
    }
}

static void maybe_done(struct conn *c)
{
    if (c->flow[UP].eof_sent && c->flow[DOWN].eof_sent) {
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    struct chunk *k = malloc(sizeof(*k) + 65536);
    buf->base = k ? k->data : NULL;
    buf->len = k ? 65536 : 0;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void flow_resume(struct flow *f)
{
    if (f->paused && !f->c->closing && !f->eof_seen) {
        f->paused = 0;
        uv_read_start(src_of(f), on_alloc, on_read);
    }
}

/* A write in flight owns its chunk until the callback. */
struct wreq
{
    uv_write_t w;
    struct flow *f;
    struct chunk *k;
};

static void on_written(uv_write_t *w, int status)
{
    struct wreq *r = (struct wreq *)w;
    struct flow *f = r->f;
    free(r->k);
    free(r);
    if (status < 0) {
        conn_close(f->c);
        return;
    }
    if (!f->c->closing &&
        uv_stream_get_write_queue_size(dst_of(f)) < LOW_WATER) {
        flow_resume(f);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct flow *f = req->data;
    free(req);
    (void)status;
    if (!f->c->closing) {
        f->eof_sent = 1;
        maybe_done(f->c);
    }
}

/* Send one chunk (or, len 0, the EOF) to the destination now; takes k. */
static void flow_send(struct flow *f, struct chunk *k)
{
    if (k->len == 0) {
        free(k);
        uv_shutdown_t *req = malloc(sizeof(*req));
        req->data = f;
        if (uv_shutdown(req, dst_of(f), on_shutdown) != 0) {
            free(req);
            conn_close(f->c);
        }
        return;
    }
    struct wreq *r = malloc(sizeof(*r));
    r->f = f;
    r->k = k;
    uv_buf_t b = uv_buf_init(k->data, (unsigned)k->len);
    if (uv_write(&r->w, dst_of(f), &b, 1, on_written) != 0) {
        free(r);
        free(k);
        conn_close(f->c);
    }
}

static void flush_due(struct flow *f);

static void on_delay_timer(uv_timer_t *t)
{
    flush_due(t->data);
}

static void flush_due(struct flow *f)
{
    uint64_t now = uv_now(loop);
    while (f->head && f->head->due <= now && !f->c->closing) {
        struct chunk *k = f->head;
        f->head = k->next;
        if (f->head == NULL) {
            f->tail = NULL;
        }
        flow_send(f, k);
    }
    if (f->head && !f->c->closing) {
        uv_timer_start(&f->timer, on_delay_timer, f->head->due - now, 0);
    }
}

/* The partition of route r that applies to connections from member id,
 * or NULL. */
static struct from_cut *from_cut_of(struct route *r, uint64_t id)
{
    for (int i = 0; i < r->nfrom; i++) {
        if (r->from[i].id == id) {
            return &r->from[i];
        }
    }
    return NULL;
}

static int flow_cut(struct flow *f)
{
    struct conn *c = f->c;
    struct route *r = c->r;
    if (!c->forwarding || r->cut[f->dir] || r->blackhole) {
        return 1;
    }
    if (c->from_state == FROM_KNOWN) {
        struct from_cut *fc = from_cut_of(r, c->from_id);
        return fc && fc->cut[f->dir];
    }
    return 0;
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

/*
 * Who dialed? Peer transports name the sender in their first bytes:
 *   keel: the HELLO frame, [u32 len][u8 1]["KEEL" u16 ver u8 kind u8 0
 *         u64 cluster u64 from u64 to] (server/peer_wire.h);
 *   etcd: every peer HTTP request has "X-Server-From: <hex id>".
 * Bytes toward the target are copied here until one of them is found
 * (FROM_KNOWN), or it cannot be (FROM_NONE: no per-member fault applies).
 */
static void sniff(struct conn *c, const char *data, size_t len)
{
    size_t room = sizeof(c->sniff) - 1 - c->sniffed;
    size_t n = len < room ? len : room;
    memcpy(c->sniff + c->sniffed, data, n);
    c->sniffed += n;
    c->sniff[c->sniffed] = 0;
    const unsigned char *u = (const unsigned char *)c->sniff;
    if (c->sniffed >= 5 && u[4] == 1 && c->sniffed >= 9 &&
        memcmp(u + 5, "KEEL", 4) == 0) {
        if (c->sniffed >= 5 + 24) {
            c->from_id = be64(u + 5 + 16);
            c->from_state = FROM_KNOWN;
        }
        return;
    }
    const char *h = strcasestr(c->sniff, "\r\nX-Server-From:");
    if (h) {
        h += strlen("\r\nX-Server-From:");
        while (*h == ' ') {
            h++;
        }
        char *end;
        uint64_t id = strtoull(h, &end, 16);
        if (end != h && (*end == '\r' || *end == '\n')) {
            c->from_id = id;
            c->from_state = FROM_KNOWN;
            return;
        }
        if (*end == 0) {
            return; /* the value is cut: wait for more */
        }
    }
    if (memcmp(c->sniff, "GET ", 4) == 0 || memcmp(c->sniff, "POST", 4) == 0 ||
        memcmp(c->sniff, "PUT ", 4) == 0) {
        c->http = 1;
    }
    if (strstr(c->sniff, "\r\n\r\n") || c->sniffed == sizeof(c->sniff) - 1 ||
        (c->sniffed >= 9 && memcmp(u + 5, "KEEL", 4) != 0 &&
         memcmp(c->sniff, "GET ", 4) != 0 && memcmp(c->sniff, "POST", 4) != 0 &&
         memcmp(c->sniff, "PUT ", 4) != 0)) {
        c->from_state = FROM_NONE;
    }
}

/* A later request on an HTTP connection that named no sender yet: Go
 * reuses idle connections, and etcd's pipeline shares its transport with
 * the prober, whose GET /raft/probing names nobody; the POSTs of raft
 * messages that follow on the same connection do. The header is looked
 * for in the chunk and across its boundary with the previous one. */
static void sniff_more(struct conn *c, const char *data, size_t len)
{
    static const char hdr[] = "\r\nX-Server-From:";
    char edge[2 * sizeof(c->tail) + 1];
    size_t head = len < sizeof(c->tail) ? len : sizeof(c->tail);
    memcpy(edge, c->tail, c->tail_len);
    memcpy(edge + c->tail_len, data, head);
    size_t elen = c->tail_len + head;
    edge[elen] = 0;
    const char *h = memmem(edge, elen, hdr, sizeof(hdr) - 1);
    const char *end_of = edge + elen;
    if (h == NULL) {
        h = memmem(data, len, hdr, sizeof(hdr) - 1);
        end_of = data + len;
    }
    if (h) {
        h += sizeof(hdr) - 1;
        while (h < end_of && *h == ' ') {
            h++;
        }
        uint64_t id = 0;
        const char *p = h;
        for (; p < end_of && p - h < 16; p++) {
            int d = *p >= '0' && *p <= '9'   ? *p - '0'
                    : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
                    : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10
                                             : -1;
            if (d < 0) {
                break;
            }
            id = id << 4 | (uint64_t)d;
        }
        if (p > h && p < end_of && (*p == '\r' || *p == '\n')) {
            c->from_id = id;
            c->from_state = FROM_KNOWN;
        }
    }
    /* keep the last bytes for a header cut by the chunk boundary */
    if (len >= sizeof(c->tail)) {
        memcpy(c->tail, data + len - sizeof(c->tail), sizeof(c->tail));
        c->tail_len = sizeof(c->tail);
    } else {
        size_t keep = sizeof(c->tail) - len;
        if (keep > c->tail_len) {
            keep = c->tail_len;
        }
        memmove(c->tail, c->tail + c->tail_len - keep, keep);
        memcpy(c->tail + keep, data, len);
        c->tail_len = keep + len;
    }
}

/* A chunk read from the flow's source (k->len 0: EOF). */
static void flow_push(struct flow *f, struct chunk *k)
{
    struct route *r = f->c->r;
    if (f->dir == UP && k->len &&
        (f->c->from_state == FROM_SNIFFING ||
         (f->c->http && f->c->from_state == FROM_NONE))) {
        if (f->c->from_state == FROM_SNIFFING) {
            sniff(f->c, k->data, k->len);
        } else {
            sniff_more(f->c, k->data, k->len);
        }
        struct from_cut *fc = f->c->from_state == FROM_KNOWN
                                  ? from_cut_of(r, f->c->from_id)
                                  : NULL;
        if (fc && fc->refuse) {
            free(k);
            conn_close(f->c);
            return;
        }
    }
    if (flow_cut(f)) {
        /* discarded: bytes vanish, an EOF too (that direction is then
         * over: once both are, the connection closes) */
        if (k->len == 0) {
            f->eof_sent = 1;
            free(k);
            maybe_done(f->c);
            return;
        }
        free(k);
        return;
    }
    if (k->len && r->drop > 0 && rnd01() < r->drop) {
        free(k);
        r->dropped_conns++;
        conn_close(f->c);
        return;
    }
    r->bytes[f->dir] += k->len;
    uint64_t now = uv_now(loop);
    if (r->delay[f->dir] == 0 && f->head == NULL && f->c->connected) {
        flow_send(f, k);
        return;
    }
    k->due = now + r->delay[f->dir];
    if (f->tail && k->due < f->tail->due) {
        k->due = f->tail->due; /* order kept when the delay shrinks */
    }
    k->next = NULL;
    if (f->tail) {
        f->tail->next = k;
    } else {
        f->head = k;
    }
    f->tail = k;
    if (f->c->connected) {
        flush_due(f);
    }
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    struct flow *f = &c->flow[s == (uv_stream_t *)&c->sock[DOWN] ? UP : DOWN];
    struct chunk *k = buf->base ? (struct chunk *)(buf->base -
                                                   offsetof(struct chunk,
                                                            data))
                                : NULL;
    if (n == 0) {
        free(k);
        return;
    }
    if (c->closing) {
        free(k);
        return;
    }
    if (n == UV_EOF) {
        uv_read_stop(s);
        f->eof_seen = 1;
        if (k == NULL) {
            k = malloc(sizeof(*k));
        }
        k->len = 0;
        if (!c->forwarding) {
            free(k);
            conn_close(c); /* nothing to forward the EOF to */
            return;
        }
        flow_push(f, k);
        return;
    }
    if (n < 0) {
        free(k);
        conn_close(c);
        return;
    }
    k->len = (size_t)n;
    flow_push(f, k);
    if (!c->closing && c->forwarding && c->connected &&
        uv_stream_get_write_queue_size(dst_of(f)) > HIGH_WATER) {
        uv_read_stop(s);
        f->paused = 1;
    }
}

static void on_target_connected(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing) {
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->connected = 1;
    uv_read_start((uv_stream_t *)&c->sock[UP], on_alloc, on_read);
    flush_due(&c->flow[UP]);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct route *r = server->data;
    if (status < 0) {
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    c->r = r;
    for (int d = 0; d < 2; d++) {
        c->flow[d].c = c;
        c->flow[d].dir = d;
        uv_timer_init(loop, &c->flow[d].timer);
        c->flow[d].timer.data = &c->flow[d];
        c->handles++;
    }
    uv_tcp_init(loop, &c->sock[DOWN]);
    c->sock[DOWN].data = c;
    c->sock_init[DOWN] = 1;
    c->handles++;
    c->next = r->conns;
    if (r->conns) {
        r->conns->prev = c;
    }
    r->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->sock[DOWN]) != 0) {
        conn_close(c);
        return;
    }
    r->accepted++;
    if (r->refuse) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->sock[DOWN], 1);
    if (r->blackhole) {
        /* never forwarded, even after heal: read and discard */
        uv_read_start((uv_stream_t *)&c->sock[DOWN], on_alloc, on_read);
        return;
    }
    c->forwarding = 1;
    uv_tcp_init(loop, &c->sock[UP]);
    c->sock[UP].data = c;
    c->sock_init[UP] = 1;
    c->handles++;
    uv_tcp_nodelay(&c->sock[UP], 1);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->sock[UP],
                       (const struct sockaddr *)&r->taddr,
                       on_target_connected) != 0) {
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->sock[DOWN], on_alloc, on_read);
}

static void route_reset(struct route *r)
{
    while (r->conns) {
        conn_close(r->conns);
    }
}

/* ---- control -----------------------------------------------------------------
 */

static int parse_addr(const char *s, struct sockaddr_storage *out, int *port)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = 0;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535) {
        return -1;
    }
    if (strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }
    if (host[0] == '[') {
        size_t l = strlen(host);
        if (host[l - 1] != ']') {
            return -1;
        }
        memmove(host, host + 1, l - 2);
        host[l - 2] = 0;
        if (uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)out) != 0) {
            return -1;
        }
    } else if (uv_ip4_addr(host, (int)p, (struct sockaddr_in *)out) != 0) {
        return -1;
    }
    *port = (int)p;
    return 0;
}

/* Duration: "200ms", "1s", "1.5s", "0". -1 if bad. */
static int64_t parse_duration(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) {
        return -1;
    }
    if (strcmp(end, "ms") == 0 || (*end == 0 && v == 0)) {
        return (int64_t)v;
    }
    if (strcmp(end, "s") == 0) {
        return (int64_t)(v * 1000);
    }
    return -1;
}

static int parse_dirs(const char *s, int *up, int *down)
{
    if (s == NULL || strcmp(s, "both") == 0) {
        *up = *down = 1;
    } else if (strcmp(s, "up") == 0) {
        *up = 1;
        *down = 0;
    } else if (strcmp(s, "down") == 0) {
        *up = 0;
        *down = 1;
    } else {
        return -1;
    }
    return 0;
}

static int count_conns(const struct route *r)
{
    int n = 0;
    for (const struct conn *c = r->conns; c; c = c->next) {
        n++;
    }
    return n;
}

/* Run one command; the answer goes into out. */
static void run_command(char *line, char *out, size_t outlen)
{
    char *argv[8];
    int argc = 0;
    char *save;
    for (char *t = strtok_r(line, " \t\r\n", &save); t && argc < 8;
         t = strtok_r(NULL, " \t\r\n", &save)) {
        argv[argc++] = t;
    }
    size_t off = 0;
#define OUT(...)                                                               \
    do {                                                                       \
        int w_ = snprintf(out + off, outlen - off, __VA_ARGS__);               \
        if (w_ > 0 && (size_t)w_ < outlen - off) {                             \
            off += (size_t)w_;                                                 \
        }                                                                      \
    } while (0)
    if (argc == 0) {
        OUT("error: empty command\n");
        return;
    }
    const char *cmd = argv[0];
    if (strcmp(cmd, "status") == 0) {
        if (argc != 1) {
            OUT("error: usage: status\n");
            return;
        }
        for (int i = 0; i < nroutes; i++) {
            struct route *r = &routes[i];
            int known = 0;
            for (const struct conn *c = r->conns; c; c = c->next) {
                known += c->from_state == FROM_KNOWN;
            }
            OUT("route %s -> %s conns %d identified %d accepted %" PRIu64
                " up %s down %s refuse %d blackhole %d delay_up_ms %" PRIu64
                " delay_down_ms %" PRIu64 " drop %.3f reset_by_drop %" PRIu64
                " bytes_up %" PRIu64 " bytes_down %" PRIu64 "\n",
                r->listen, r->target, count_conns(r), known, r->accepted,
                r->cut[UP] ? "cut" : "pass", r->cut[DOWN] ? "cut" : "pass",
                r->refuse, r->blackhole, r->delay[UP], r->delay[DOWN],
                r->drop, r->dropped_conns, r->bytes[UP], r->bytes[DOWN]);
            /* the status line ends with "\n": add the per-member cuts
             * before it */
            for (int k = 0; k < r->nfrom; k++) {
                off--;
                OUT(" from %" PRIx64 " %s\n", r->from[k].id,
                    r->from[k].refuse ? "both"
                    : r->from[k].cut[UP] && r->from[k].cut[DOWN] ? "up,down"
                    : r->from[k].cut[UP] ? "up" : "down");
            }
        }
        OUT("ok\n");
        return;
    }
    static const struct {
        const char *name;
        int min, max; /* arguments after the route */
        const char *usage;
    } cmds[] = {
        {"partition", 0, 3, "partition ROUTE [from MEMBER-ID] [up|down|both]"},
        {"blackhole", 0, 0, "blackhole ROUTE"},
        {"delay", 1, 2, "delay ROUTE DURATION [up|down|both]"},
        {"drop", 1, 1, "drop ROUTE PROBABILITY"},
        {"reset", 0, 0, "reset ROUTE"},
        {"heal", 0, 0, "heal ROUTE"},
    };
    int ci = -1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmd, cmds[i].name) == 0) {
            ci = (int)i;
        }
    }
    if (ci < 0) {
        OUT("error: unknown command \"%s\" (partition, blackhole, delay, "
            "drop, reset, heal, status)\n", cmd);
        return;
    }
    if (argc < 2 + cmds[ci].min || argc > 2 + cmds[ci].max) {
        OUT("error: usage: %s\n", cmds[ci].usage);
        return;
    }
    /* the routes named */
    int sel[64], nsel = 0;
    for (int i = 0; i < nroutes; i++) {
        char portstr[16];
        snprintf(portstr, sizeof(portstr), "%d", routes[i].port);
        if (strcmp(argv[1], "all") == 0 || strcmp(argv[1], portstr) == 0 ||
            strcmp(argv[1], routes[i].listen) == 0) {
            sel[nsel++] = i;
        }
    }
    if (nsel == 0) {
        OUT("error: unknown route \"%s\"\n", argv[1]);
        return;
    }
    int up = 1, down = 1;
    int64_t ms = 0;
    double p = 0;
    int has_from = 0;
    uint64_t from = 0;
    if (strcmp(cmd, "partition") == 0) {
        int a = 2;
        if (argc > a && strcmp(argv[a], "from") == 0) {
            char *end;
            from = argc > a + 1 ? strtoull(argv[a + 1], &end, 16) : 0;
            if (argc <= a + 1 || *end || end == argv[a + 1]) {
                OUT("error: from needs a member id in hex (etcdctl member "
                    "list)\n");
                return;
            }
            has_from = 1;
            a += 2;
        }
        if (argc > a + 1 ||
            parse_dirs(argc > a ? argv[a] : NULL, &up, &down) != 0) {
            OUT("error: direction must be up, down or both\n");
            return;
        }
    }
    if (strcmp(cmd, "delay") == 0) {
        ms = parse_duration(argv[2]);
        if (ms < 0) {
            OUT("error: bad duration \"%s\" (e.g. 200ms, 1s)\n", argv[2]);
            return;
        }
        if (parse_dirs(argc > 3 ? argv[3] : NULL, &up, &down) != 0) {
            OUT("error: direction must be up, down or both\n");
            return;
        }
    }
    if (strcmp(cmd, "drop") == 0) {
        char *end;
        p = strtod(argv[2], &end);
        if (*end || end == argv[2] || p < 0 || p > 1) {
            OUT("error: bad probability \"%s\" (0..1)\n", argv[2]);
            return;
        }
    }
    for (int i = 0; i < nsel; i++) {
        struct route *r = &routes[sel[i]];
        if (strcmp(cmd, "partition") == 0 && has_from) {
            struct from_cut *fc = from_cut_of(r, from);
            if (fc == NULL) {
                if (r->nfrom == (int)(sizeof(r->from) / sizeof(r->from[0]))) {
                    OUT("error: too many members partitioned on %s\n",
                        r->listen);
                    return;
                }
                fc = &r->from[r->nfrom++];
                memset(fc, 0, sizeof(*fc));
                fc->id = from;
            }
            if (up && down) {
                fc->refuse = 1;
                for (struct conn *c = r->conns, *n; c; c = n) {
                    n = c->next;
                    if (c->from_state == FROM_KNOWN && c->from_id == from) {
                        conn_close(c);
                    }
                }
            } else {
                fc->cut[UP] |= up;
                fc->cut[DOWN] |= down;
            }
        } else if (strcmp(cmd, "partition") == 0) {
            if (up && down) {
                r->refuse = 1;
                route_reset(r);
            } else {
                r->cut[UP] |= up;
                r->cut[DOWN] |= down;
            }
        } else if (strcmp(cmd, "blackhole") == 0) {
            r->blackhole = 1;
        } else if (strcmp(cmd, "delay") == 0) {
            if (up) {
                r->delay[UP] = (uint64_t)ms;
            }
            if (down) {
                r->delay[DOWN] = (uint64_t)ms;
            }
        } else if (strcmp(cmd, "drop") == 0) {
            r->drop = p;
        } else if (strcmp(cmd, "reset") == 0) {
            route_reset(r);
        } else if (strcmp(cmd, "heal") == 0) {
            r->cut[UP] = r->cut[DOWN] = 0;
            r->refuse = r->blackhole = 0;
            r->nfrom = 0;
            r->delay[UP] = r->delay[DOWN] = 0;
            r->drop = 0;
            /* chunks held by a delay go out now */
            for (struct conn *c = r->conns; c; c = c->next) {
                for (int d = 0; d < 2; d++) {
                    for (struct chunk *k = c->flow[d].head; k; k = k->next) {
                        k->due = 0;
                    }
                }
            }
            for (struct conn *c = r->conns; c;) {
                struct conn *n = c->next;
                if (c->connected) {
                    flush_due(&c->flow[UP]);
                    flush_due(&c->flow[DOWN]);
                }
                c = n;
            }
        }
    }
    OUT("ok\n");
#undef OUT
}

struct ctl_conn
{
    uv_pipe_t pipe;
    char buf[1024];
    size_t len;
    char answer[16384];
    uv_write_t wreq;
};

static void on_ctl_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_ctl_written(uv_write_t *w, int status)
{
    (void)status;
    struct ctl_conn *cc = w->data;
    uv_close((uv_handle_t *)&cc->pipe, on_ctl_closed);
}

static void ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct ctl_conn *cc = h->data;
    buf->base = cc->buf + cc->len;
    buf->len = sizeof(cc->buf) - 1 - cc->len;
}

static void ctl_answer(struct ctl_conn *cc)
{
    uv_read_stop((uv_stream_t *)&cc->pipe);
    uv_buf_t b = uv_buf_init(cc->answer, (unsigned)strlen(cc->answer));
    cc->wreq.data = cc;
    if (uv_write(&cc->wreq, (uv_stream_t *)&cc->pipe, &b, 1,
                 on_ctl_written) != 0) {
        uv_close((uv_handle_t *)&cc->pipe, on_ctl_closed);
    }
}

static void ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct ctl_conn *cc = s->data;
    if (n == 0) {
        return;
    }
    if (n < 0) {
        if (n == UV_EOF && cc->len > 0) {
            cc->buf[cc->len] = 0;
            run_command(cc->buf, cc->answer, sizeof(cc->answer));
            ctl_answer(cc);
            return;
        }
        uv_close((uv_handle_t *)&cc->pipe, on_ctl_closed);
        return;
    }
    cc->len += (size_t)n;
    cc->buf[cc->len] = 0;
    char *nl = strchr(cc->buf, '\n');
    if (nl || cc->len == sizeof(cc->buf) - 1) {
        if (nl) {
            *nl = 0;
            run_command(cc->buf, cc->answer, sizeof(cc->answer));
        } else {
            snprintf(cc->answer, sizeof(cc->answer),
                     "error: command too long\n");
        }
        ctl_answer(cc);
    }
}

static void on_ctl_accept(uv_stream_t *server, int status)
{
    if (status < 0) {
        return;
    }
    struct ctl_conn *cc = calloc(1, sizeof(*cc));
    uv_pipe_init(loop, &cc->pipe, 0);
    cc->pipe.data = cc;
    if (uv_accept(server, (uv_stream_t *)&cc->pipe) != 0) {
        uv_close((uv_handle_t *)&cc->pipe, on_ctl_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&cc->pipe, ctl_alloc, ctl_read);
}

/* ---- ctl client ---------------------------------------------------------------
 */

static int ctl_main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: keel-faultproxy ctl SOCKET COMMAND [ARGS]\n");
        return 2;
    }
    char cmd[1024];
    size_t off = 0;
    for (int i = 1; i < argc; i++) {
        int w = snprintf(cmd + off, sizeof(cmd) - off, "%s%s", i > 1 ? " " : "",
                         argv[i]);
        if (w < 0 || (size_t)w >= sizeof(cmd) - off - 1) {
            fprintf(stderr, "keel-faultproxy ctl: command too long\n");
            return 2;
        }
        off += (size_t)w;
    }
    cmd[off++] = '\n';
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (strlen(argv[0]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "keel-faultproxy ctl: socket path too long\n");
        return 2;
    }
    strcpy(sa.sun_path, argv[0]);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "keel-faultproxy ctl: %s: %s\n", argv[0],
                strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return 2;
    }
    if (write(fd, cmd, off) != (ssize_t)off) {
        fprintf(stderr, "keel-faultproxy ctl: write: %s\n", strerror(errno));
        close(fd);
        return 2;
    }
    char ans[16384];
    size_t len = 0;
    ssize_t n;
    while ((n = read(fd, ans + len, sizeof(ans) - 1 - len)) > 0) {
        len += (size_t)n;
    }
    close(fd);
    ans[len] = 0;
    fputs(ans, stdout);
    /* the last line decides */
    char *last = ans + len;
    while (last > ans && last[-1] == '\n') {
        *--last = 0;
    }
    char *nl = strrchr(ans, '\n');
    last = nl ? nl + 1 : ans;
    if (strcmp(last, "ok") == 0) {
        return 0;
    }
    return strncmp(last, "error", 5) == 0 ? 1 : 2;
}

/* ---- main ----------------------------------------------------------------------
 */

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    exit(0);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: keel-faultproxy --control SOCKET --route "
            "LHOST:LPORT=THOST:TPORT [--route ...]\n"
            "       keel-faultproxy ctl SOCKET partition|blackhole|delay|"
            "drop|reset|heal|status [ARGS]\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "ctl") == 0) {
        return ctl_main(argc - 2, argv + 2);
    }
    const char *control = NULL;
    loop = uv_default_loop();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--control") == 0 && i + 1 < argc) {
            control = argv[++i];
        } else if (strcmp(argv[i], "--route") == 0 && i + 1 < argc &&
                   nroutes < 64) {
            const char *spec = argv[++i];
            const char *eq = strchr(spec, '=');
            struct route *r = &routes[nroutes];
            struct sockaddr_storage la;
            int tport;
            if (eq == NULL || (size_t)(eq - spec) >= sizeof(r->listen) ||
                strlen(eq + 1) >= sizeof(r->target)) {
                fprintf(stderr, "keel-faultproxy: bad route %s\n", spec);
                return 2;
            }
            memcpy(r->listen, spec, (size_t)(eq - spec));
            r->listen[eq - spec] = 0;
            strcpy(r->target, eq + 1);
            if (parse_addr(r->listen, &la, &r->port) != 0 ||
                parse_addr(r->target, &r->taddr, &tport) != 0) {
                fprintf(stderr, "keel-faultproxy: bad route %s (want "
                                "HOST:PORT=HOST:PORT, numeric hosts)\n", spec);
                return 2;
            }
            uv_tcp_init(loop, &r->server);
            r->server.data = r;
            int rc = uv_tcp_bind(&r->server, (struct sockaddr *)&la, 0);
            if (rc == 0) {
                rc = uv_listen((uv_stream_t *)&r->server, 128, on_accept);
            }
            if (rc != 0) {
                fprintf(stderr, "keel-faultproxy: listen %s: %s\n", r->listen,
                        uv_strerror(rc));
                return 2;
            }
            nroutes++;
        } else {
            usage();
            return 2;
        }
    }
    if (control == NULL || nroutes == 0) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    unlink(control);
    uv_pipe_t ctl;
    uv_pipe_init(loop, &ctl, 0);
    int rc = uv_pipe_bind(&ctl, control);
    if (rc == 0) {
        rc = uv_listen((uv_stream_t *)&ctl, 16, on_ctl_accept);
    }
    if (rc != 0) {
        fprintf(stderr, "keel-faultproxy: control %s: %s\n", control,
                uv_strerror(rc));
        return 2;
    }
    uv_signal_t sigint, sigterm;
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    fprintf(stderr, "keel-faultproxy: %d routes, control %s\n", nroutes,
            control);
    return uv_run(loop, UV_RUN_DEFAULT);
}
