/*
 * Micro-benchmark of the watch hub (server/watch_hub.c): the cost of
 * watch_hub_notify() with many watchers, and of catch-up from history.
 *
 * No network and no storage: send() either discards the response or packs it
 * into a buffer (what the gRPC transport does first), and read_history()
 * replays an in-memory log. Each scenario prints ns per notify, responses/s
 * and events delivered/s.
 *
 *   bench_watch [-w watchers] [-n notifies] [-r repeats] [-p | -P]
 *   -p: send() packs every response with protobuf-c (what a transport does)
 *   -P: send_packed(): the hub encodes, packing each event once per notify
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel_err.h"
#include "watch_hub.h"

static int pack_responses; /* -p: send() packs each response */
static int hub_packs;      /* -P: send_packed(), the hub encodes */
static uint64_t sent_responses, sent_events, sent_bytes;
static uint8_t *pack_buf;
static size_t pack_cap;

static int b_send(void *ctx, struct watch_stream *s, void *data,
                  const Etcdserverpb__WatchResponse *r)
{
    (void)ctx;
    (void)s;
    (void)data;
    sent_responses++;
    sent_events += r->n_events;
    if (pack_responses) {
        size_t n = etcdserverpb__watch_response__get_packed_size(r);
        if (n > pack_cap) {
            pack_cap = n * 2;
            pack_buf = realloc(pack_buf, pack_cap);
            if (pack_buf == NULL) {
                abort();
            }
        }
        sent_bytes += etcdserverpb__watch_response__pack(r, pack_buf);
    }
    return WATCH_SEND_OK;
}

static int b_send_packed(void *ctx, struct watch_stream *s, void *data,
                         const uint8_t *msg, size_t len)
{
    (void)ctx;
    (void)s;
    (void)data;
    (void)msg;
    sent_responses++;
    sent_bytes += len;
    return WATCH_SEND_OK;
}

/* The history: n_hist events, one per revision 2.., keys /bench/%06d. */
static Mvccpb__Event **hist;
static size_t n_hist;

static int b_read(void *ctx, const uint8_t *key, size_t key_len,
                  const uint8_t *end, size_t end_len, int64_t from, int64_t to,
                  bool prev_kv, watch_emit_cb emit, void *arg,
                  int64_t *compact_rev)
{
    (void)ctx;
    (void)prev_kv;
    (void)compact_rev;
    /* hist[i] is at revision 2 + i */
    for (size_t i = from > 2 ? (size_t)(from - 2) : 0; i < n_hist; i++) {
        const Mvccpb__KeyValue *kv = hist[i]->kv;
        if (kv->mod_revision < from || kv->mod_revision > to) {
            continue;
        }
        size_t m = kv->key.len < key_len ? kv->key.len : key_len;
        int c = memcmp(kv->key.data, key, m);
        if (c == 0) {
            c = (kv->key.len > key_len) - (kv->key.len < key_len);
        }
        if (c < 0 || (end_len == 0 && c != 0)) {
            continue;
        }
        if (end_len > 0 && !(end_len == 1 && end[0] == 0)) {
            m = kv->key.len < end_len ? kv->key.len : end_len;
            int d = memcmp(kv->key.data, end, m);
            if (d == 0) {
                d = (kv->key.len > end_len) - (kv->key.len < end_len);
            }
            if (d >= 0) {
                continue;
            }
        }
        if (emit(arg, hist[i])) {
            break;
        }
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static Mvccpb__Event *mk_event(const char *key, int64_t rev, size_t vlen)
{
    Mvccpb__Event *e = calloc(1, sizeof *e);
    Mvccpb__KeyValue *kv = calloc(1, sizeof *kv);
    if (e == NULL || kv == NULL) {
        abort();
    }
    mvccpb__event__init(e);
    mvccpb__key_value__init(kv);
    kv->key.len = strlen(key);
    kv->key.data = (uint8_t *)strdup(key);
    kv->value.len = vlen;
    kv->value.data = calloc(1, vlen + 1);
    kv->create_revision = 2;
    kv->mod_revision = rev;
    kv->version = rev - 1;
    e->kv = kv;
    return e;
}

static void free_event(Mvccpb__Event *e)
{
    free(e->kv->key.data);
    free(e->kv->value.data);
    free(e->kv);
    free(e);
}

enum { EXACT, PREFIX10, PREFIX_ALL, RANGES };
static const char *const scenario_name[] = {
    "exact keys (1 match/event)", "prefixes of 10 keys", "one shared prefix",
    "random ranges (~50 keys)"};

struct run
{
    double ns_per_notify, resp_per_s, ev_per_s;
    double matches_per_notify;
};

static struct run run_notify(int scenario, int nwatch, int nnotify,
                             int nkeys)
{
    struct watch_hub_config cfg = {.send = b_send, .read_history = b_read};
    if (hub_packs) {
        cfg.send_packed = b_send_packed;
    }
    struct watch_hub *h;
    if (watch_hub_new(&cfg, &h) != 0) {
        abort();
    }
    int nstreams = nwatch / 100 > 0 ? nwatch / 100 : 1;
    struct watch_stream **ss = calloc((size_t)nstreams, sizeof *ss);
    for (int i = 0; i < nstreams; i++) {
        if (watch_stream_new(h, NULL, &ss[i]) != 0) {
            abort();
        }
    }
    char key[64], end[64];
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < nwatch; i++) {
        Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % (uint64_t)nkeys);
        switch (scenario) {
        case EXACT:
            snprintf(key, sizeof key, "/bench/%06d", i % nkeys);
            break;
        case PREFIX10:
            snprintf(key, sizeof key, "/bench/%05d", k / 10);
            snprintf(end, sizeof end, "/bench/%05d", k / 10 + 1);
            break;
        case PREFIX_ALL:
            snprintf(key, sizeof key, "/bench/");
            snprintf(end, sizeof end, "/bench0");
            break;
        default:
            snprintf(key, sizeof key, "/bench/%06d", k);
            snprintf(end, sizeof end, "/bench/%06d", k + 50);
            break;
        }
        c.key.data = (uint8_t *)key;
        c.key.len = strlen(key);
        if (scenario != EXACT) {
            c.range_end.data = (uint8_t *)end;
            c.range_end.len = strlen(end);
        }
        Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
        r.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
        r.create_request = &c;
        if (watch_stream_recv(ss[i % nstreams], &r) != 0) {
            abort();
        }
    }
    sent_responses = sent_events = sent_bytes = 0;
    Mvccpb__Event **evs = calloc((size_t)nnotify, sizeof *evs);
    for (int i = 0; i < nnotify; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(key, sizeof key, "/bench/%06d", (int)(x % (uint64_t)nkeys));
        evs[i] = mk_event(key, 2 + i, 64);
    }
    double t0 = now_s();
    for (int i = 0; i < nnotify; i++) {
        watch_hub_notify(h, 2 + i, &evs[i], 1);
    }
    double dt = now_s() - t0;
    struct watch_hub_stats st;
    watch_hub_get_stats(h, &st);
    struct run out = {
        .ns_per_notify = dt * 1e9 / nnotify,
        .resp_per_s = (double)sent_responses / dt,
        .ev_per_s = (double)st.events_sent / dt,
        .matches_per_notify = (double)st.events_sent / nnotify,
    };
    for (int i = 0; i < nnotify; i++) {
        free_event(evs[i]);
    }
    free(evs);
    watch_hub_free(h);
    free(ss);
    return out;
}

/* One watcher per stream, all behind by the whole history: tick until every
 * one has caught up. */
static double run_catchup(int nwatch, int nrevs, int *ticks_out)
{
    n_hist = (size_t)nrevs;
    hist = calloc(n_hist, sizeof *hist);
    char key[64];
    for (int i = 0; i < nrevs; i++) {
        snprintf(key, sizeof key, "/bench/%06d", i % 1000);
        hist[i] = mk_event(key, 2 + i, 64);
    }
    struct watch_hub_config cfg = {.send = b_send, .read_history = b_read};
    if (hub_packs) {
        cfg.send_packed = b_send_packed;
    }
    struct watch_hub *h;
    if (watch_hub_new(&cfg, &h) != 0) {
        abort();
    }
    for (int i = 0; i < nrevs; i++) {
        watch_hub_notify(h, 2 + i, &hist[i], 1); /* no watchers yet */
    }
    for (int i = 0; i < nwatch; i++) {
        struct watch_stream *s;
        if (watch_stream_new(h, NULL, &s) != 0) {
            abort();
        }
        Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
        c.key.data = (uint8_t *)"/bench/";
        c.key.len = 7;
        c.range_end.data = (uint8_t *)"/bench0";
        c.range_end.len = 7;
        c.start_revision = 2;
        Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
        r.request_union_case =
            ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
        r.create_request = &c;
        if (watch_stream_recv(s, &r) != 0) {
            abort();
        }
    }
    sent_responses = sent_events = sent_bytes = 0;
    double t0 = now_s();
    int ticks = 0;
    while (watch_hub_pending(h) > 0) {
        watch_hub_tick(h, (uint64_t)ticks++);
    }
    double dt = now_s() - t0;
    *ticks_out = ticks;
    struct watch_hub_stats st;
    watch_hub_get_stats(h, &st);
    sent_events = st.events_sent;
    watch_hub_free(h);
    for (size_t i = 0; i < n_hist; i++) {
        free_event(hist[i]);
    }
    free(hist);
    hist = NULL;
    n_hist = 0;
    return (double)sent_events / dt;
}

/* For scale: matching alone, by a linear scan over every watcher's range
 * (what an index-less hub costs per event), on the "random ranges" set. */
static double naive_scan_ns(int nwatch, int nnotify, int nkeys)
{
    char (*keys)[16] = calloc((size_t)nwatch, sizeof *keys);
    char (*ends)[16] = calloc((size_t)nwatch, sizeof *ends);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < nwatch; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % (uint64_t)nkeys);
        snprintf(keys[i], sizeof keys[i], "/b/%06d", k);
        snprintf(ends[i], sizeof ends[i], "/b/%06d", k + 50);
    }
    volatile size_t hits = 0;
    char key[16];
    double t0 = now_s();
    for (int n = 0; n < nnotify; n++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        snprintf(key, sizeof key, "/b/%06d", (int)(x % (uint64_t)nkeys));
        for (int i = 0; i < nwatch; i++) {
            if (strcmp(keys[i], key) <= 0 && strcmp(key, ends[i]) < 0) {
                hits++;
            }
        }
    }
    double dt = now_s() - t0;
    free(keys);
    free(ends);
    return dt * 1e9 / nnotify;
}

int main(int argc, char **argv)
{
    int nwatch = 10000, nnotify = 20000, reps = 5, opt;
    while ((opt = getopt(argc, argv, "w:n:r:pP")) != -1) {
        switch (opt) {
        case 'w':
            nwatch = atoi(optarg);
            break;
        case 'n':
            nnotify = atoi(optarg);
            break;
        case 'r':
            reps = atoi(optarg) > 0 ? atoi(optarg) : 1;
            break;
        case 'p':
            pack_responses = 1;
            break;
        case 'P':
            hub_packs = 1;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-w watchers] [-n notifies] [-r repeats] "
                    "[-p | -P]\n",
                    argv[0]);
            return 2;
        }
    }
    printf("watch hub: %d watchers on %d streams, %d notifies of 1 event "
           "(64-byte value), keyspace 10000 keys, responses %s, best of %d\n\n",
           nwatch, nwatch / 100 > 0 ? nwatch / 100 : 1, nnotify,
           hub_packs ? "encoded by the hub (send_packed)"
           : pack_responses ? "packed by send()" : "not packed",
           reps);
    printf("| scenario | matches/notify | ns/notify | responses/s | "
           "events delivered/s |\n|---|---|---|---|---|\n");
    for (int sc = EXACT; sc <= RANGES; sc++) {
        int n = sc == PREFIX_ALL ? nnotify / 100 : nnotify;
        struct run best = {0};
        for (int i = 0; i < reps; i++) {
            struct run r = run_notify(sc, nwatch, n, 10000);
            if (i == 0 || r.ns_per_notify < best.ns_per_notify) {
                best = r;
            }
        }
        printf("| %s | %.1f | %.0f | %.2f M | %.2f M |\n", scenario_name[sc],
               best.matches_per_notify, best.ns_per_notify,
               best.resp_per_s / 1e6, best.ev_per_s / 1e6);
    }
    double naive = 0;
    for (int i = 0; i < reps; i++) {
        double ns = naive_scan_ns(nwatch, nnotify / 10, 10000);
        if (i == 0 || ns < naive) {
            naive = ns;
        }
    }
    printf("| (linear scan of all ranges, matching only) | - | %.0f | - | - "
           "|\n\n",
           naive);
    double best_cu = 0;
    int ticks = 0;
    for (int i = 0; i < reps; i++) {
        double evs = run_catchup(100, 20000, &ticks);
        if (evs > best_cu) {
            best_cu = evs;
        }
    }
    printf("| catch-up from history | 100 watchers x 20000 revisions behind "
           "| %d ticks | %.2f M events/s |\n",
           ticks, best_cu / 1e6);
    free(pack_buf);
    return 0;
}
