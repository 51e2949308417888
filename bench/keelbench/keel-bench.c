/*
 * keel-bench: a load generator for keel (and etcd 3.4) on libkeel, modelled
 * on etcd's own tools/benchmark (same workload names and flags, same
 * "Summary / Response time histogram / Latency distribution" report).
 *
 *   keel-bench [flags] put|range|txn-put|txn-mixed|watch|watch-latency|
 *                      lease-keepalive [workload flags]
 *
 * Happy path: one libuv loop thread; --conns libkeel clients (one HTTP/2
 * connection each); --clients workers spread round-robin over them, each
 * with exactly one request in flight (etcd's benchmark has the same model:
 * a "client" is a goroutine issuing one request after the other). A first
 * cheap call on every connection proves the endpoint serves before the clock
 * starts; then workers issue requests until --total have been issued, paced
 * by a token schedule when --rate is set. Latencies go into a log-linear
 * histogram (64 sub-buckets per power of two of nanoseconds: <1.6% error,
 * constant memory, so 10k watchers x 1000 puts cost nothing to record).
 *
 * Watch workloads: --streams Watch streams (spread over the connections)
 * carry --watch-per-stream watchers each, all watching every key (key
 * "\0", range_end "\0"); once every watcher is created the workers put
 * --total keys whose values start with the put's send time, and every event
 * received is timed against it (same process, same monotonic clock).
 * "watch" puts as fast as the workers go (fan-out throughput), and
 * "watch-latency" paces puts at --rate (default 100/s).
 *
 * lease-keepalive: every worker grants a lease (not timed), opens its own
 * LeaseKeepAlive stream and sends one keepalive after the other.
 *
 * Failure modes: an endpoint that does not serve makes the connection check
 * fail: a message naming the endpoint and the dial error on stderr, exit 1.
 * Failed requests are counted by status and message and reported; any error
 * makes the exit status 2 (the report is still printed). Watch events still
 * missing --wait seconds after the last put are reported as missing (exit 2).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

enum workload {
    W_PUT,
    W_RANGE,
    W_TXN_PUT,
    W_TXN_MIXED,
    W_WATCH,
    W_WATCH_LATENCY,
    W_LEASE_KEEPALIVE,
};

static const char *const workload_names[] = {
    "put",   "range",         "txn-put",         "txn-mixed",
    "watch", "watch-latency", "lease-keepalive",
};

/* ---- log-linear latency histogram (ns) ------------------------------------
 */

#define HIST_SUB 64
#define HIST_BUCKETS (64 * HIST_SUB)

struct hist
{
    uint64_t *counts; /* HIST_BUCKETS */
    uint64_t n;
    uint64_t min, max;
    double sum, sumsq;
};

static int hist_bucket(uint64_t v)
{
    if (v < HIST_SUB) {
        return (int)v;
    }
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6; /* keep 7 significant bits: 64 sub-buckets */
    int sub = (int)((v >> shift) & (HIST_SUB - 1));
    return (shift + 1) * HIST_SUB + sub;
}

/* Upper edge of a bucket's value range (the value reported for it). */
static uint64_t hist_value(int b)
{
    if (b < HIST_SUB) {
        return (uint64_t)b;
    }
    int shift = b / HIST_SUB - 1;
    uint64_t sub = (uint64_t)(b % HIST_SUB);
    return ((HIST_SUB + sub + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t ns)
{
    h->counts[hist_bucket(ns)]++;
    if (h->n == 0 || ns < h->min) {
        h->min = ns;
    }
    if (ns > h->max) {
        h->max = ns;
    }
    h->n++;
    h->sum += (double)ns;
    h->sumsq += (double)ns * (double)ns;
}

/* The q-quantile (0..1), in ns, clamped to the observed min/max. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0) {
        return 0;
    }
    uint64_t rank = (uint64_t)ceil(q * (double)h->n);
    if (rank < 1) {
        rank = 1;
    }
    uint64_t seen = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        seen += h->counts[b];
        if (seen >= rank) {
            uint64_t v = hist_value(b);
            return v > h->max ? h->max : v < h->min ? h->min : v;
        }
    }
    return h->max;
}

static double hist_avg(const struct hist *h)
{
    return h->n ? h->sum / (double)h->n : 0;
}

static double hist_stddev(const struct hist *h)
{
    if (h->n < 2) {
        return 0;
    }
    double m = hist_avg(h);
    double var = h->sumsq / (double)h->n - m * m;
    return var > 0 ? sqrt(var) : 0;
}

/* ---- state ------------------------------------------------------------------
 */

struct bench;

struct worker
{
    struct bench *b;
    int idx;
    struct keel_client *client;
    struct keel_call call;
    uint64_t t0;      /* send time, ns */
    uv_timer_t timer; /* --rate pacing */
    int in_flight;
    /* lease-keepalive */
    int64_t lease;
    struct keel_stream stream;
    int stream_open;
};

struct wstream
{
    struct bench *b;
    struct keel_stream s;
    int open;
};

struct errcount
{
    int status;
    char msg[160];
    uint64_t n;
};

struct bench
{
    uv_loop_t *loop;
    enum workload wl;
    /* flags */
    char **endpoints;
    size_t n_endpoints;
    struct keel_tls_config tls; /* --cacert, --cert, --key, --insecure-... */
    int use_tls;
    int conns, clients;
    uint64_t total;
    int key_size, val_size;
    uint64_t key_space;
    int sequential;
    double rate;
    int json;
    int progress;
    int serializable; /* range --consistency s */
    const char *range_key, *range_end;
    int txn_ops;
    double rw_ratio; /* txn-mixed reads per write */
    int streams, watch_per_stream;
    double wait_s; /* watch: wait for missing events after the puts */
    int64_t lease_ttl;
    uint64_t dial_timeout_ms;
    struct keel_call_opts opts; /* --timeout for every unary request */
    /* runtime */
    char *valbuf; /* --val-size bytes of 'v' (watch: send time first) */
    struct keel_client **cl;
    struct worker *w;
    struct wstream *ws;
    uint64_t issued, done, ok;
    uint64_t seq;
    uint64_t rng;
    uint64_t t_start, t_end;
    double next_slot; /* rate pacing: ns of the next free send slot */
    struct hist lat;
    struct errcount errs[16];
    size_t n_errs;
    uint64_t other_errs;
    /* connection check */
    struct keel_call *probe;
    int probes_left;
    int probe_failed;
    /* watch */
    uint64_t watchers_created, watchers_total;
    uint64_t events, events_expected;
    uint64_t t_last_event;
    struct hist evlat;
    uv_timer_t wait_timer;
    int wait_timer_on;
    uv_timer_t setup_timer; /* watchers must be created within --wait */
    int setup_timer_on;
    uint64_t watch_cancels;
    /* lease-keepalive setup */
    int setup_left;
    /* progress */
    uv_timer_t progress_timer;
    int progress_on;
    int finished;
    int closing;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng_next(struct bench *b)
{
    /* xorshift64* */
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("keel-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static int is_watch(const struct bench *b)
{
    return b->wl == W_WATCH || b->wl == W_WATCH_LATENCY;
}

/* Key number k of the key space as --key-size bytes: the number in decimal,
 * zero-padded (so keys are printable and sort by number). */
static size_t format_key(const struct bench *b, uint64_t k, char *out)
{
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%" PRIu64, k % b->key_space);
    int ks = b->key_size;
    if (n >= ks) {
        memcpy(out, digits + (n - ks), (size_t)ks);
    } else {
        memset(out, '0', (size_t)(ks - n));
        memcpy(out + (ks - n), digits, (size_t)n);
    }
    return (size_t)ks;
}

static uint64_t next_key_num(struct bench *b)
{
    return b->sequential ? b->seq++ % b->key_space : rng_next(b) % b->key_space;
}

static size_t next_key(struct bench *b, char *out)
{
    return format_key(b, next_key_num(b), out);
}

static void record_error(struct bench *b, int status, const char *msg)
{
    for (size_t i = 0; i < b->n_errs; i++) {
        if (b->errs[i].status == status &&
            strncmp(b->errs[i].msg, msg, sizeof(b->errs[i].msg) - 1) == 0) {
            b->errs[i].n++;
            return;
        }
    }
    if (b->n_errs < sizeof(b->errs) / sizeof(b->errs[0])) {
        struct errcount *e = &b->errs[b->n_errs++];
        e->status = status;
        snprintf(e->msg, sizeof(e->msg), "%s", msg);
        e->n = 1;
        return;
    }
    b->other_errs++;
}

static void finish(struct bench *b);
static void worker_next(struct worker *w);
static void watch_wait_start(struct bench *b);

/* ---- progress bar -----------------------------------------------------------
 */

static void progress_draw(struct bench *b, int last)
{
    uint64_t cur = b->done, tot = b->total;
    if (is_watch(b) && b->issued >= b->total && b->events_expected) {
        cur = b->events;
        tot = b->events_expected;
    }
    int width = 40;
    int fill = tot ? (int)((double)cur / (double)tot * width) : width;
    if (fill > width) {
        fill = width;
    }
    char bar[64];
    memset(bar, '=', (size_t)fill);
    memset(bar + fill, ' ', (size_t)(width - fill));
    bar[width] = 0;
    fprintf(stderr, "\r %" PRIu64 " / %" PRIu64 " [%s] %3d%%%s", cur, tot, bar,
            tot ? (int)(100.0 * (double)cur / (double)tot) : 100,
            last ? "\n" : "");
    fflush(stderr);
}

static void on_progress(uv_timer_t *t)
{
    progress_draw(t->data, 0);
}

/* ---- requests --------------------------------------------------------------
 */

static void on_call_done(struct keel_call *call);

static void build_put(struct bench *b,
                      Etcdserverpb__PutRequest *p,
                      uint64_t knum,
                      char *key,
                      char *val,
                      uint64_t t0)
{
    size_t kl = format_key(b, knum, key);
    etcdserverpb__put_request__init(p);
    p->key.data = (uint8_t *)key;
    p->key.len = kl;
    if (is_watch(b)) {
        /* the send time, read back from every event */
        char ts[17];
        snprintf(ts, sizeof(ts), "%016" PRIx64, t0);
        memcpy(val, ts, 16);
    }
    p->value.data = (uint8_t *)val;
    p->value.len = (size_t)b->val_size;
}

static int start_request(struct worker *w)
{
    struct bench *b = w->b;
    char key[256 * 16];
    char *val = b->valbuf;
    w->t0 = now_ns();
    switch (b->wl) {
        case W_PUT:
        case W_WATCH:
        case W_WATCH_LATENCY: {
            Etcdserverpb__PutRequest p;
            build_put(b, &p, next_key_num(b), key, val, w->t0);
            return keel_call_start(w->client, &w->call, KEEL_M_PUT, &p.base,
                                   &etcdserverpb__put_response__descriptor,
                                   &b->opts, on_call_done);
        }
        case W_RANGE: {
            Etcdserverpb__RangeRequest r;
            etcdserverpb__range_request__init(&r);
            if (b->range_key) {
                r.key.data = (uint8_t *)b->range_key;
                r.key.len = strlen(b->range_key);
                if (b->range_end) {
                    r.range_end.data = (uint8_t *)b->range_end;
                    r.range_end.len = strlen(b->range_end);
                }
            } else {
                r.key.data = (uint8_t *)key;
                r.key.len = next_key(b, key);
            }
            r.serializable = b->serializable;
            return keel_call_start(w->client, &w->call, KEEL_M_RANGE, &r.base,
                                   &etcdserverpb__range_response__descriptor,
                                   &b->opts, on_call_done);
        }
        case W_TXN_PUT:
        case W_TXN_MIXED: {
            Etcdserverpb__TxnRequest t;
            etcdserverpb__txn_request__init(&t);
            Etcdserverpb__RequestOp ops[16], *opp[16];
            Etcdserverpb__PutRequest puts[16];
            Etcdserverpb__RangeRequest rr;
            int nops = b->wl == W_TXN_PUT ? b->txn_ops : 1;
            int read = 0;
            /* a txn may not put one key twice: consecutive keys from a first */
            uint64_t k0 = next_key_num(b);
            if (b->wl == W_TXN_MIXED) {
                /* reads:writes = rw_ratio:1 */
                double u = (double)(rng_next(b) >> 11) / 9007199254740992.0;
                read = u < b->rw_ratio / (b->rw_ratio + 1.0);
            }
            for (int i = 0; i < nops; i++) {
                etcdserverpb__request_op__init(&ops[i]);
                opp[i] = &ops[i];
                if (read) {
                    etcdserverpb__range_request__init(&rr);
                    rr.key.data = (uint8_t *)key;
                    rr.key.len = next_key(b, key);
                    ops[i].request_case =
                        ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
                    ops[i].request_range = &rr;
                } else {
                    build_put(b, &puts[i], k0 + (uint64_t)i, key + i * 256, val,
                              w->t0);
                    ops[i].request_case =
                        ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
                    ops[i].request_put = &puts[i];
                }
            }
            t.success = opp;
            t.n_success = (size_t)nops;
            return keel_call_start(w->client, &w->call, KEEL_M_TXN, &t.base,
                                   &etcdserverpb__txn_response__descriptor,
                                   &b->opts, on_call_done);
        }
        case W_LEASE_KEEPALIVE: {
            Etcdserverpb__LeaseKeepAliveRequest k;
            etcdserverpb__lease_keep_alive_request__init(&k);
            k.id = w->lease;
            return keel_stream_send(&w->stream, &k.base);
        }
    }
    return KEEL_EINVAL;
}

/* Every connection is down (the server died or went away): the requests not
 * yet sent are counted as failed at once, instead of each waiting out its
 * --timeout against a dead endpoint; the ones in flight still finish. */
static void give_up_if_disconnected(struct bench *b)
{
    for (int i = 0; i < b->conns; i++) {
        if (keel_client_connected(b->cl[i])) {
            return;
        }
    }
    uint64_t left = b->total - b->issued;
    if (left == 0) {
        return;
    }
    char m[200];
    const char *le = keel_client_last_error(b->cl[0]);
    snprintf(m, sizeof(m), "not sent: every connection lost (%s)",
             le && le[0] ? le : "no detail");
    for (uint64_t i = 0; i < left; i++) {
        record_error(b, KEEL_GRPC_UNAVAILABLE, m);
    }
    b->issued = b->total;
    b->done += left;
}

/* A request finished (OK or not): record it. Returns 1 when the worker
 * should go on (request_next()), 0 when the run is over. */
static int request_record(struct worker *w, int status, const char *msg)
{
    struct bench *b = w->b;
    w->in_flight = 0;
    b->done++;
    if (status == KEEL_GRPC_OK) {
        b->ok++;
        hist_add(&b->lat, now_ns() - w->t0);
    } else {
        record_error(b, status, msg ? msg : "");
        if (status == KEEL_GRPC_UNAVAILABLE ||
            status == KEEL_GRPC_DEADLINE_EXCEEDED) {
            give_up_if_disconnected(b);
        }
    }
    if (b->done == b->total) {
        b->t_end = now_ns();
        if (!is_watch(b) || b->events >= b->events_expected) {
            finish(b);
        } else if (!b->wait_timer_on) {
            /* wait for the events still in flight, at most --wait */
            watch_wait_start(b);
        }
        return 0;
    }
    return 1;
}

static void request_done(struct worker *w, int status, const char *msg)
{
    if (request_record(w, status, msg)) {
        worker_next(w);
    }
}

static void on_call_done(struct keel_call *call)
{
    struct worker *w = call->data;
    int more = request_record(w, call->status, call->message);
    /* the struct is reused by the next request: release the results first */
    keel_call_cleanup(call);
    if (more) {
        worker_next(w);
    }
}

static void send_now(struct worker *w)
{
    struct bench *b = w->b;
    w->in_flight = 1;
    int rv = start_request(w);
    if (rv != 0) {
        w->in_flight = 0;
        b->done++;
        record_error(b, -1, keel_strerror(rv));
        if (b->done == b->total) {
            b->t_end = now_ns();
            finish(b);
        }
    }
}

static void on_pace(uv_timer_t *t)
{
    send_now(t->data);
}

/* Issue this worker's next request, if any are left, honouring --rate. */
static void worker_next(struct worker *w)
{
    struct bench *b = w->b;
    if (b->issued >= b->total || b->closing) {
        return;
    }
    b->issued++;
    if (b->rate > 0) {
        double now = (double)now_ns();
        double step = 1e9 / b->rate;
        if (b->next_slot < now) {
            b->next_slot = now;
        }
        double slot = b->next_slot;
        b->next_slot += step;
        double delay_ms = (slot - now) / 1e6;
        if (delay_ms >= 1.0) {
            uv_timer_start(&w->timer, on_pace, (uint64_t)delay_ms, 0);
            return;
        }
    }
    send_now(w);
}

/* ---- lease-keepalive streams ------------------------------------------------
 */

static void start_workers(struct bench *b);

static void on_ka_msg(struct keel_stream *s, ProtobufCMessage *msg)
{
    struct worker *w = s->data;
    Etcdserverpb__LeaseKeepAliveResponse *r =
        (Etcdserverpb__LeaseKeepAliveResponse *)msg;
    if (!w->in_flight) {
        return;
    }
    if (r->ttl <= 0) {
        request_done(w, KEEL_GRPC_NOT_FOUND,
                     "etcdserver: requested lease not found");
    } else {
        request_done(w, KEEL_GRPC_OK, "");
    }
}

static void on_ka_end(struct keel_stream *s, int status, const char *message)
{
    struct worker *w = s->data;
    w->stream_open = 0;
    if (w->in_flight) {
        request_done(
            w, status == KEEL_GRPC_OK ? KEEL_GRPC_UNAVAILABLE : status,
            status == KEEL_GRPC_OK ? "keepalive stream ended" : message);
    }
}

static void on_grant(struct keel_call *call)
{
    struct worker *w = call->data;
    struct bench *b = w->b;
    if (call->status != KEEL_GRPC_OK) {
        die("lease grant failed: %s", call->message);
    }
    w->lease = ((Etcdserverpb__LeaseGrantResponse *)call->resp)->id;
    keel_call_cleanup(call);
    w->stream.data = w;
    int rv =
        keel_stream_start(w->client, &w->stream, KEEL_M_LEASE_KEEPALIVE,
                          &etcdserverpb__lease_keep_alive_response__descriptor,
                          NULL, on_ka_msg, on_ka_end);
    if (rv != 0) {
        die("cannot open a LeaseKeepAlive stream: %s", keel_strerror(rv));
    }
    w->stream_open = 1;
    if (--b->setup_left == 0) {
        start_workers(b);
    }
}

/* ---- watch streams
 * ----------------------------------------------------------- */

static void on_watch_msg(struct keel_stream *s, ProtobufCMessage *msg)
{
    struct wstream *ws = s->data;
    struct bench *b = ws->b;
    Etcdserverpb__WatchResponse *r = (Etcdserverpb__WatchResponse *)msg;
    if (r->created) {
        if (++b->watchers_created == b->watchers_total) {
            uv_timer_stop(&b->setup_timer);
            start_workers(b);
        }
    }
    if (r->canceled) {
        b->watch_cancels++;
        record_error(b, KEEL_GRPC_CANCELED,
                     r->cancel_reason && r->cancel_reason[0]
                         ? r->cancel_reason
                         : "watch canceled by the server");
    }
    if (r->n_events == 0) {
        return;
    }
    uint64_t t = now_ns();
    for (size_t i = 0; i < r->n_events; i++) {
        const Mvccpb__KeyValue *kv = r->events[i]->kv;
        b->events++;
        if (kv && kv->value.len >= 16) {
            char ts[17];
            memcpy(ts, kv->value.data, 16);
            ts[16] = 0;
            uint64_t t0 = strtoull(ts, NULL, 16);
            if (t0 && t0 <= t) {
                hist_add(&b->evlat, t - t0);
            }
        }
    }
    b->t_last_event = t;
    if (b->done == b->total && b->events >= b->events_expected) {
        finish(b);
    }
}

static void on_watch_end(struct keel_stream *s, int status, const char *message)
{
    struct wstream *ws = s->data;
    ws->open = 0;
    if (!ws->b->finished) {
        record_error(ws->b,
                     status == KEEL_GRPC_OK ? KEEL_GRPC_UNAVAILABLE : status,
                     status == KEEL_GRPC_OK ? "watch stream ended" : message);
        finish(ws->b);
    }
}

static void on_wait_timeout(uv_timer_t *t)
{
    finish(t->data);
}

static void watch_wait_start(struct bench *b)
{
    uv_timer_init(b->loop, &b->wait_timer);
    b->wait_timer.data = b;
    b->wait_timer_on = 1;
    uv_timer_start(&b->wait_timer, on_wait_timeout,
                   (uint64_t)(b->wait_s * 1000), 0);
}

static void on_setup_timeout(uv_timer_t *t)
{
    struct bench *b = t->data;
    die("only %" PRIu64 " of %" PRIu64 " watchers were created within %g s",
        b->watchers_created, b->watchers_total, b->wait_s);
}

static void open_watchers(struct bench *b)
{
    uv_timer_init(b->loop, &b->setup_timer);
    b->setup_timer.data = b;
    b->setup_timer_on = 1;
    uv_timer_start(&b->setup_timer, on_setup_timeout,
                   (uint64_t)(b->wait_s * 1000), 0);
    b->ws = calloc((size_t)b->streams, sizeof(*b->ws));
    b->watchers_total = (uint64_t)b->streams * (uint64_t)b->watch_per_stream;
    b->events_expected = b->watchers_total * b->total;
    for (int i = 0; i < b->streams; i++) {
        struct wstream *ws = &b->ws[i];
        ws->b = b;
        ws->s.data = ws;
        int rv = keel_stream_start(b->cl[i % b->conns], &ws->s, KEEL_M_WATCH,
                                   &etcdserverpb__watch_response__descriptor,
                                   NULL, on_watch_msg, on_watch_end);
        if (rv != 0) {
            die("cannot open a Watch stream: %s", keel_strerror(rv));
        }
        ws->open = 1;
        for (int j = 0; j < b->watch_per_stream; j++) {
            Etcdserverpb__WatchRequest wr;
            Etcdserverpb__WatchCreateRequest cr;
            etcdserverpb__watch_request__init(&wr);
            etcdserverpb__watch_create_request__init(&cr);
            static uint8_t zero = 0;
            cr.key.data = &zero; /* every key: ["\0", "\0") */
            cr.key.len = 1;
            cr.range_end.data = &zero;
            cr.range_end.len = 1;
            wr.request_union_case =
                ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
            wr.create_request = &cr;
            rv = keel_stream_send(&ws->s, &wr.base);
            if (rv != 0) {
                die("cannot send a watch create request: %s",
                    keel_strerror(rv));
            }
        }
    }
}

/* ---- phases
 * ------------------------------------------------------------------ */

static void start_workers(struct bench *b)
{
    b->t_start = now_ns();
    b->next_slot = (double)b->t_start;
    if (b->progress) {
        uv_timer_init(b->loop, &b->progress_timer);
        b->progress_timer.data = b;
        b->progress_on = 1;
        uv_timer_start(&b->progress_timer, on_progress, 200, 200);
    }
    for (int i = 0; i < b->clients; i++) {
        worker_next(&b->w[i]);
    }
}

static void after_probe(struct bench *b)
{
    if (b->probe_failed) {
        exit(1);
    }
    if (is_watch(b)) {
        open_watchers(b);
        return;
    }
    if (b->wl == W_LEASE_KEEPALIVE) {
        b->setup_left = b->clients;
        for (int i = 0; i < b->clients; i++) {
            struct worker *w = &b->w[i];
            Etcdserverpb__LeaseGrantRequest g;
            etcdserverpb__lease_grant_request__init(&g);
            g.ttl = b->lease_ttl;
            w->call.data = w;
            int rv = keel_call_start(
                w->client, &w->call, KEEL_M_LEASE_GRANT, &g.base,
                &etcdserverpb__lease_grant_response__descriptor, NULL,
                on_grant);
            if (rv != 0) {
                die("lease grant: %s", keel_strerror(rv));
            }
        }
        return;
    }
    start_workers(b);
}

static void on_probe(struct keel_call *call)
{
    struct bench *b = call->data;
    if (call->status != KEEL_GRPC_OK) {
        /* find which client this was */
        size_t i = (size_t)(call - b->probe);
        const char *ep = keel_client_endpoint(b->cl[i]);
        const char *le = keel_client_last_error(b->cl[i]);
        fprintf(stderr, "keel-bench: endpoint %s does not serve: %s%s%s\n",
                ep ? ep : "?", call->message, le && le[0] ? ": " : "",
                le ? le : "");
        b->probe_failed = 1;
    }
    keel_call_cleanup(call);
    if (--b->probes_left == 0) {
        after_probe(b);
    }
}

static void probe(struct bench *b)
{
    b->probe = calloc((size_t)b->conns, sizeof(*b->probe));
    b->probes_left = b->conns;
    for (int i = 0; i < b->conns; i++) {
        Etcdserverpb__RangeRequest r;
        etcdserverpb__range_request__init(&r);
        static uint8_t k = 0;
        r.key.data = &k;
        r.key.len = 1;
        r.serializable = 1;
        r.count_only = 1;
        struct keel_call_opts o = {.timeout_ms = b->dial_timeout_ms + 3000,
                                   .flags = KEEL_CALL_IDEMPOTENT};
        b->probe[i].data = b;
        int rv = keel_call_start(b->cl[i], &b->probe[i], KEEL_M_RANGE, &r.base,
                                 &etcdserverpb__range_response__descriptor, &o,
                                 on_probe);
        if (rv != 0) {
            die("cannot start a call: %s", keel_strerror(rv));
        }
    }
}

static void on_client_closed(struct keel_client *c, void *data)
{
    (void)c;
    (void)data;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h) && h->type == UV_TIMER) {
        uv_close(h, NULL);
    }
}

static void finish(struct bench *b)
{
    if (b->finished) {
        return;
    }
    b->finished = 1;
    if (b->t_end == 0) {
        b->t_end = now_ns();
    }
    if (b->progress_on) {
        uv_timer_stop(&b->progress_timer);
        progress_draw(b, 1);
    }
    b->closing = 1;
    for (int i = 0; i < b->conns; i++) {
        keel_client_close(b->cl[i], on_client_closed, NULL);
    }
    /* our own timers (pacing, wait, progress); libkeel closes its own */
    for (int i = 0; i < b->clients; i++) {
        if (!uv_is_closing((uv_handle_t *)&b->w[i].timer)) {
            uv_close((uv_handle_t *)&b->w[i].timer, NULL);
        }
    }
    if (b->wait_timer_on) {
        uv_close((uv_handle_t *)&b->wait_timer, NULL);
    }
    if (b->setup_timer_on) {
        uv_close((uv_handle_t *)&b->setup_timer, NULL);
    }
    if (b->progress_on) {
        uv_close((uv_handle_t *)&b->progress_timer, NULL);
    }
}

/* ---- report ----------------------------------------------------------------
 */

static void print_json_hist(const struct hist *h, const char *name)
{
    printf("\"%s\":{\"count\":%" PRIu64
           ",\"average\":%.6f,"
           "\"stddev\":%.6f,\"fastest\":%.6f,\"p50\":%.6f,\"p90\":%.6f,"
           "\"p99\":%.6f,\"p99.9\":%.6f,\"slowest\":%.6f,\"histogram\":[",
           name, h->n, hist_avg(h) / 1e6, hist_stddev(h) / 1e6,
           (double)h->min / 1e6, (double)hist_quantile(h, 0.5) / 1e6,
           (double)hist_quantile(h, 0.9) / 1e6,
           (double)hist_quantile(h, 0.99) / 1e6,
           (double)hist_quantile(h, 0.999) / 1e6, (double)h->max / 1e6);
    int first = 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        if (h->counts[i]) {
            printf("%s[%.6f,%" PRIu64 "]", first ? "" : ",",
                   (double)hist_value(i) / 1e6, h->counts[i]);
            first = 0;
        }
    }
    printf("]}");
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
        } else if (c < 0x20) {
            printf("\\u%04x", c);
        } else {
            putchar(c);
        }
    }
    putchar('"');
}

/* etcd's benchmark report: Summary, Response time histogram (10 linear
 * buckets between fastest and slowest), Latency distribution. Seconds. */
static void print_text_hist(const struct hist *h,
                            const char *title,
                            double secs,
                            uint64_t n_ok)
{
    printf("\n%s:\n", title);
    printf("  Total:\t%.4f secs.\n", secs);
    printf("  Slowest:\t%.4f secs.\n", (double)h->max / 1e9);
    printf("  Fastest:\t%.4f secs.\n", (double)h->min / 1e9);
    printf("  Average:\t%.4f secs.\n", hist_avg(h) / 1e9);
    printf("  Stddev:\t%.4f secs.\n", hist_stddev(h) / 1e9);
    printf("  Requests/sec:\t%.4f\n", secs > 0 ? (double)n_ok / secs : 0);
    if (h->n == 0) {
        return;
    }
    printf("\nResponse time histogram:\n");
    uint64_t lo = h->min, hi = h->max;
    double step = (double)(hi - lo) / 10.0;
    uint64_t cnt[11] = {0}, maxc = 1;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        if (!h->counts[i]) {
            continue;
        }
        uint64_t v = hist_value(i);
        v = v > hi ? hi : v < lo ? lo : v;
        int j = step > 0 ? (int)(((double)(v - lo)) / step) : 0;
        if (j > 10) {
            j = 10;
        }
        cnt[j] += h->counts[i];
    }
    for (int j = 0; j <= 10; j++) {
        if (cnt[j] > maxc) {
            maxc = cnt[j];
        }
    }
    for (int j = 0; j <= 10; j++) {
        int bars = (int)(40.0 * (double)cnt[j] / (double)maxc);
        printf("  %.4f [%" PRIu64 "]\t|", ((double)lo + step * j) / 1e9,
               cnt[j]);
        for (int k = 0; k < bars; k++) {
            putchar((int)(unsigned char)"\xe2\x88\x8e"[0]);
            putchar((int)(unsigned char)"\xe2\x88\x8e"[1]);
            putchar((int)(unsigned char)"\xe2\x88\x8e"[2]);
        }
        putchar('\n');
    }
    printf("\nLatency distribution:\n");
    static const double qs[] = {0.10, 0.25, 0.50, 0.75,
                                0.90, 0.95, 0.99, 0.999};
    static const char *const qn[] = {"10", "25", "50", "75",
                                     "90", "95", "99", "99.9"};
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
        printf("  %s%% in %.4f secs.\n", qn[i],
               (double)hist_quantile(h, qs[i]) / 1e9);
    }
}

static int report(struct bench *b)
{
    double secs = (double)(b->t_end - b->t_start) / 1e9;
    uint64_t errors = b->done - b->ok;
    uint64_t missing = is_watch(b) && b->events < b->events_expected
                           ? b->events_expected - b->events
                           : 0;
    double ev_secs = b->t_last_event > b->t_start
                         ? (double)(b->t_last_event - b->t_start) / 1e9
                         : 0;
    if (b->json) {
        printf(
            "{\"workload\":\"%s\",\"conns\":%d,\"clients\":%d,"
            "\"total\":%" PRIu64 ",\"ok\":%" PRIu64 ",\"errors\":%" PRIu64
            ",\"duration_s\":%.6f,\"requests_per_s\":%.3f,",
            workload_names[b->wl], b->conns, b->clients, b->total, b->ok,
            errors, secs, secs > 0 ? (double)b->ok / secs : 0);
        print_json_hist(&b->lat, "latency_ms");
        if (is_watch(b)) {
            printf(",\"watchers\":%" PRIu64 ",\"events\":%" PRIu64
                   ",\"events_expected\":%" PRIu64
                   ",\"events_missing\":%" PRIu64 ",\"events_per_s\":%.3f,",
                   b->watchers_total, b->events, b->events_expected, missing,
                   ev_secs > 0 ? (double)b->events / ev_secs : 0);
            print_json_hist(&b->evlat, "event_latency_ms");
        }
        printf(",\"error_messages\":[");
        for (size_t i = 0; i < b->n_errs; i++) {
            printf("%s{\"status\":%d,\"message\":", i ? "," : "",
                   b->errs[i].status);
            json_str(b->errs[i].msg);
            printf(",\"count\":%" PRIu64 "}", b->errs[i].n);
        }
        printf("]}\n");
    } else {
        printf("workload %s: %d conns, %d clients, %" PRIu64
               " requests (%" PRIu64 " ok, %" PRIu64 " errors)\n",
               workload_names[b->wl], b->conns, b->clients, b->total, b->ok,
               errors);
        print_text_hist(&b->lat, "Summary", secs, b->ok);
        if (is_watch(b)) {
            printf("\nWatch: %" PRIu64 " watchers, %" PRIu64 "/%" PRIu64
                   " events (%" PRIu64 " missing), %.1f events/s\n",
                   b->watchers_total, b->events, b->events_expected, missing,
                   ev_secs > 0 ? (double)b->events / ev_secs : 0);
            print_text_hist(&b->evlat, "Event latency (put sent -> event)",
                            ev_secs, b->events);
        }
        for (size_t i = 0; i < b->n_errs; i++) {
            printf("%" PRIu64 " x error (status %d): %s\n", b->errs[i].n,
                   b->errs[i].status, b->errs[i].msg);
        }
        fflush(stdout);
    }
    return errors || missing || b->other_errs || b->watch_cancels ? 2 : 0;
}

/* ---- command line -----------------------------------------------------------
 */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: keel-bench [flags] <workload> [flags]\n"
        "workloads: put, range [key [end]], txn-put, txn-mixed, watch,\n"
        "           watch-latency, lease-keepalive\n"
        "flags (etcd benchmark's names):\n"
        "  --endpoints a,b     gRPC endpoints (default 127.0.0.1:2379)\n"
        "  --conns N           connections (default 1)\n"
        "  --clients N         concurrent requests, one in flight each "
        "(default 1)\n"
        "  --total N           requests; puts for the watch workloads (default "
        "10000)\n"
        "  --key-size N        bytes per key (default 8)\n"
        "  --val-size N        bytes per value (default 8; >= 16 for watch)\n"
        "  --key-space-size N  distinct keys (default 1)\n"
        "  --sequential-keys   keys 0,1,2,... instead of random\n"
        "  --rate N            requests/s over all clients (0 = as fast as "
        "possible;\n"
        "                      watch-latency: 100)\n"
        "  -w, --write-out F   simple (default) or json\n"
        "  --no-progress       no progress bar (none unless stderr is a "
        "terminal)\n"
        "  --dial-timeout MS   connection timeout (default 2000)\n"
        "  --cacert F --cert F --key F, --insecure-skip-tls-verify\n"
        "                      TLS (etcdctl's names; https:// endpoints\n"
        "                      use TLS with the system roots by default)\n"
        "  --timeout MS        deadline of each request (default 30000; a\n"
        "                      request past it counts as an error, so a dead\n"
        "                      server ends the run instead of hanging it)\n"
        "range:     --consistency l|s (default l)\n"
        "txn-put:   --txn-ops N (puts per txn, default 1, max 16)\n"
        "txn-mixed: --rw-ratio R (reads per write, default 1)\n"
        "watch, watch-latency: --streams N (default 10), --watch-per-stream N\n"
        "           (default 100), --wait S (seconds allowed for creating the\n"
        "           watchers, and for the last events after the last put; "
        "default 30)\n"
        "lease-keepalive: --lease-ttl S (default 60)\n"
        "exit status: 0 ok, 1 setup failure (bad flags, endpoint not "
        "serving),\n"
        "             2 some requests failed or watch events are missing\n");
}

static uint64_t parse_u64(const char *flag, const char *v)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno) {
        die("invalid value %s for %s", v, flag);
    }
    return (uint64_t)x;
}

static void split_endpoints(struct bench *b, const char *list)
{
    char *s = strdup(list);
    if (b->endpoints) {
        free(b->endpoints[0]);
        free(b->endpoints);
    }
    b->n_endpoints = 0;
    b->endpoints = calloc(strlen(list) + 1, sizeof(char *));
    for (char *save = NULL, *t = strtok_r(s, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        b->endpoints[b->n_endpoints++] = t;
    }
    if (b->n_endpoints == 0) {
        die("--endpoints is empty");
    }
}

static void parse_args(struct bench *b, int argc, char **argv)
{
    int have_wl = 0, npos = 0;
    int rate_set = 0;
    const char *pos[2] = {NULL, NULL};
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (a[0] != '-' || a[1] == 0) {
            if (!have_wl) {
                int found = -1;
                for (size_t k = 0;
                     k < sizeof(workload_names) / sizeof(workload_names[0]);
                     k++) {
                    if (strcmp(a, workload_names[k]) == 0) {
                        found = (int)k;
                    }
                }
                if (found < 0) {
                    usage(stderr);
                    die("unknown workload %s", a);
                }
                b->wl = (enum workload)found;
                have_wl = 1;
            } else if (npos < 2) {
                pos[npos++] = a;
            } else {
                die("unexpected argument %s", a);
            }
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        char namebuf[64];
        const char *val = NULL;
        const char *eq = strchr(name, '=');
        if (eq) {
            snprintf(namebuf, sizeof(namebuf), "%.*s", (int)(eq - name), name);
            name = namebuf;
            val = eq + 1;
        }
#define BOOLFLAG(n) (strcmp(name, n) == 0)
        if (BOOLFLAG("h") || BOOLFLAG("help")) {
            usage(stdout);
            exit(0);
        }
        if (BOOLFLAG("sequential-keys")) {
            b->sequential = !val || strcmp(val, "false") != 0;
            continue;
        }
        if (BOOLFLAG("no-progress")) {
            b->progress = 0;
            continue;
        }
        if (BOOLFLAG("insecure-skip-tls-verify")) {
            b->tls.insecure_skip_verify = !val || strcmp(val, "false") != 0;
            b->use_tls = 1;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc) {
                die("flag %s needs a value", a);
            }
            val = argv[++i];
        }
        if (BOOLFLAG("endpoints")) {
            split_endpoints(b, val);
        } else if (BOOLFLAG("conns")) {
            b->conns = (int)parse_u64(name, val);
        } else if (BOOLFLAG("clients")) {
            b->clients = (int)parse_u64(name, val);
        } else if (BOOLFLAG("total")) {
            b->total = parse_u64(name, val);
        } else if (BOOLFLAG("key-size")) {
            b->key_size = (int)parse_u64(name, val);
        } else if (BOOLFLAG("val-size")) {
            b->val_size = (int)parse_u64(name, val);
        } else if (BOOLFLAG("key-space-size")) {
            b->key_space = parse_u64(name, val);
        } else if (BOOLFLAG("rate")) {
            b->rate = strtod(val, NULL);
            rate_set = 1;
        } else if (BOOLFLAG("w") || BOOLFLAG("write-out")) {
            if (strcmp(val, "json") == 0) {
                b->json = 1;
            } else if (strcmp(val, "simple") == 0) {
                b->json = 0;
            } else {
                die("--write-out must be simple or json");
            }
        } else if (BOOLFLAG("consistency")) {
            if (strcmp(val, "s") == 0) {
                b->serializable = 1;
            } else if (strcmp(val, "l") == 0) {
                b->serializable = 0;
            } else {
                die("--consistency must be l or s");
            }
        } else if (BOOLFLAG("txn-ops")) {
            b->txn_ops = (int)parse_u64(name, val);
        } else if (BOOLFLAG("rw-ratio")) {
            b->rw_ratio = strtod(val, NULL);
        } else if (BOOLFLAG("streams")) {
            b->streams = (int)parse_u64(name, val);
        } else if (BOOLFLAG("watch-per-stream")) {
            b->watch_per_stream = (int)parse_u64(name, val);
        } else if (BOOLFLAG("wait")) {
            b->wait_s = strtod(val, NULL);
        } else if (BOOLFLAG("lease-ttl")) {
            b->lease_ttl = (int64_t)parse_u64(name, val);
        } else if (BOOLFLAG("timeout")) {
            b->opts.timeout_ms = parse_u64(name, val);
        } else if (BOOLFLAG("dial-timeout")) {
            b->dial_timeout_ms = parse_u64(name, val);
        } else if (BOOLFLAG("cacert")) {
            b->tls.cacert = val;
            b->use_tls = 1;
        } else if (BOOLFLAG("cert")) {
            b->tls.cert = val;
            b->use_tls = 1;
        } else if (BOOLFLAG("key")) {
            b->tls.key = val;
            b->use_tls = 1;

        } else {
            usage(stderr);
            die("unknown flag %s", a);
        }
#undef BOOLFLAG
    }
    if (!have_wl) {
        usage(stderr);
        die("no workload given");
    }
    if (b->wl == W_RANGE) {
        b->range_key = pos[0];
        b->range_end = pos[1];
    } else if (npos) {
        die("unexpected argument %s", pos[0]);
    }
    if (b->wl == W_WATCH_LATENCY && !rate_set) {
        b->rate = 100;
    }
    if (b->conns < 1 || b->clients < 1 || b->total < 1 || b->key_space < 1) {
        die("--conns, --clients, --total and --key-space-size must be >= 1");
    }
    if (b->key_size < 1 || b->key_size > 256) {
        die("--key-size must be 1..256");
    }
    if (b->txn_ops < 1 || b->txn_ops > 16) {
        die("--txn-ops must be 1..16");
    }
    if (b->wl == W_TXN_PUT && (uint64_t)b->txn_ops > b->key_space) {
        die("--txn-ops %d needs --key-space-size >= %d (a txn may not put "
            "one key twice)",
            b->txn_ops, b->txn_ops);
    }
    if (is_watch(b)) {
        if (b->val_size < 16) {
            b->val_size = 16; /* room for the send time */
        }
        if (b->streams < 1 || b->watch_per_stream < 1) {
            die("--streams and --watch-per-stream must be >= 1");
        }
    }
    if ((uint64_t)b->clients > b->total) {
        b->clients = (int)b->total;
    }
}

int main(int argc, char **argv)
{
    /* A server killed mid-run must fail requests, not kill the bench
     * (libuv writes with plain write(2)). */
    signal(SIGPIPE, SIG_IGN);
    struct bench b;
    memset(&b, 0, sizeof(b));
    b.conns = 1;
    b.clients = 1;
    b.total = 10000;
    b.key_size = 8;
    b.val_size = 8;
    b.key_space = 1;
    b.txn_ops = 1;
    b.rw_ratio = 1;
    b.streams = 10;
    b.watch_per_stream = 100;
    b.wait_s = 30;
    b.lease_ttl = 60;
    b.dial_timeout_ms = 2000;
    b.opts.timeout_ms = 30000;
    b.progress = isatty(2);
    b.rng = (uint64_t)now_ns() | 1;
    split_endpoints(&b, "127.0.0.1:2379");
    parse_args(&b, argc, argv);
    if (b.json) {
        b.progress = 0;
    }

    b.valbuf = malloc((size_t)b.val_size + 1);
    memset(b.valbuf, 'v', (size_t)b.val_size);
    b.lat.counts = calloc(HIST_BUCKETS, sizeof(uint64_t));
    b.evlat.counts = calloc(HIST_BUCKETS, sizeof(uint64_t));
    b.loop = uv_default_loop();
    b.cl = calloc((size_t)b.conns, sizeof(*b.cl));
    struct keel_client_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.endpoints = (const char *const *)b.endpoints;
    cfg.n_endpoints = b.n_endpoints;
    cfg.dial_timeout_ms = b.dial_timeout_ms;
    cfg.tls = b.use_tls ? &b.tls : NULL; /* https:// endpoints: TLS anyway */
    for (int i = 0; i < b.conns; i++) {
        /* rotate the endpoint list so connections spread over members */
        const char **eps = calloc(b.n_endpoints, sizeof(char *));
        for (size_t j = 0; j < b.n_endpoints; j++) {
            eps[j] = b.endpoints[(j + (size_t)i) % b.n_endpoints];
        }
        cfg.endpoints = eps;
        int rv = keel_client_new(b.loop, &cfg, &b.cl[i]);
        free(eps);
        if (rv != 0) {
            die("invalid endpoints: %s", keel_strerror(rv));
        }
    }
    b.w = calloc((size_t)b.clients, sizeof(*b.w));
    for (int i = 0; i < b.clients; i++) {
        struct worker *w = &b.w[i];
        w->b = &b;
        w->idx = i;
        w->client = b.cl[i % b.conns];
        w->call.data = w;
        uv_timer_init(b.loop, &w->timer);
        w->timer.data = w;
    }
    probe(&b);
    uv_run(b.loop, UV_RUN_DEFAULT);
    int rc = report(&b);
    if (uv_loop_close(b.loop) != 0) {
        uv_walk(b.loop, close_walk, NULL);
        uv_run(b.loop, UV_RUN_DEFAULT);
        uv_loop_close(b.loop);
    }
    free(b.valbuf);
    free(b.probe);
    free(b.ws);
    free(b.w);
    free(b.cl);
    free(b.lat.counts);
    free(b.evlat.counts);
    free(b.endpoints[0]);
    free(b.endpoints);
    return rc;
}
