/*
 * keelctl check perf / check datascale (etcd: etcdctl/ctlv3/command/
 * check.go, util.go endpointMemoryMetrics).
 *
 * perf: `clients` connections put 256-byte random keys with 1 KiB values
 * under --prefix, paced at `limit` puts/s (a token every 1/limit s, as
 * golang.org/x/time/rate with burst 1) for 60 s; then the prefix is
 * deleted (optionally compacted and defragmented) and the run is judged as
 * etcdctl does: throughput > 90 % of the limit, slowest request <= 0.5 s,
 * stddev <= 0.1 s, no errors; PASS, or FAIL and exit 1.
 * datascale: `limit` puts of 512+512 bytes by `clients` connections, the
 * server's process_resident_memory_bytes from /metrics before and after.
 *
 * All connections are asynchronous libkeel clients on one loop. Progress
 * (etcdctl draws a pb.v1 bar on stdout) is drawn only when stdout is a
 * terminal. KEELCTL_CHECK_PERF_SECONDS shortens perf's 60 s, for tests
 * only (etcdctl has no such knob).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "keelctl.h"

struct load
{
    const char *name;
    int limit, clients, kv_size;
};

/* etcd's checkPerfCfgMap and checkDatascaleCfgMap. */
static const struct load perf_loads[] = {{"s", 150, 50, 0},
                                         {"m", 1000, 200, 0},
                                         {"l", 8000, 500, 0},
                                         {"xl", 15000, 1000, 0}};
static const struct load scale_loads[] = {{"s", 10000, 50, 1024},
                                          {"m", 100000, 200, 1024},
                                          {"l", 1000000, 500, 1024},
                                          {"xl", 3000000, 1000, 1024}};

static const struct load *find_load(const char *opt, const struct load *t)
{
    static const char *const alias[][2] = {
        {"s", "s"}, {"small", "s"}, {"m", "m"},   {"medium", "m"},
        {"l", "l"}, {"large", "l"}, {"xl", "xl"}, {"xLarge", "xl"}};
    for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++) {
        if (strcmp(opt, alias[i][0]) == 0) {
            for (int k = 0; k < 4; k++) {
                if (strcmp(t[k].name, alias[i][1]) == 0) {
                    return &t[k];
                }
            }
        }
    }
    ctl_die(EXIT_BAD_FEATURE, "unknown load option %s", opt);
}

/* ---- the load ----------------------------------------------------------- */

struct worker
{
    struct keel_client *c;
    struct keel_call call;
    uint64_t start_ns;
    int busy;
};

static struct
{
    uv_loop_t *loop;
    struct worker *w;
    int n;
    const char *prefix;
    size_t ksize, vsize;
    uint8_t *key, *val; /* key = prefix + ksize bytes */
    size_t prefix_len;
    /* pacing (perf) or a fixed count (datascale) */
    double rate; /* puts/s; 0 = as fast as the workers go */
    uint64_t t0_ns, end_ns;
    uint64_t issued, target; /* target = 0: until end_ns */
    int producing;
    /* results */
    uint64_t done, errors;
    double sum, sumsq, slowest;
    uint64_t first_ns, last_ns;
    char err_text[16][160];
    uint64_t err_count[16];
    int n_err;
} L;

/* The progress on a terminal: etcdctl's "Bom !" bar (pb.v1) on stdout. */
static int bar_on;
static uint64_t bar_total, bar_last_ns;
static void bar_draw(uint64_t cur, int final)
{
    if (!bar_on) {
        return;
    }
    uint64_t now = uv_hrtime();
    if (!final && now - bar_last_ns < 200000000ull) {
        return;
    }
    bar_last_ns = now;
    enum { W = 40 };
    char b[W + 1];
    size_t fill = bar_total ? (size_t)((double)W * (double)cur /
                                       (double)bar_total)
                            : 0;
    for (size_t i = 0; i < W; i++) {
        b[i] = i < fill ? 'o' : (i == fill ? 'm' : ' ');
    }
    b[W] = 0;
    printf("\r%" PRIu64 " / %" PRIu64 " B%s! %6.2f%%", cur, bar_total, b,
           bar_total ? 100.0 * (double)cur / (double)bar_total : 0.0);
    if (final) {
        printf("\n");
    }
    fflush(stdout);
}

static void record(struct worker *w)
{
    uint64_t now = uv_hrtime();
    double lat = (double)(now - w->start_ns) / 1e9;
    if (L.done == 0 && L.errors == 0) {
        L.first_ns = w->start_ns;
    }
    L.last_ns = now;
    if (w->call.status != KEEL_GRPC_OK) {
        const char *t = ctl_err_text(&w->call);
        int i;
        for (i = 0; i < L.n_err && strcmp(L.err_text[i], t) != 0; i++) {
        }
        if (i == L.n_err && L.n_err < 16) {
            snprintf(L.err_text[i], sizeof(L.err_text[i]), "%s", t);
            L.n_err++;
        }
        if (i < 16) {
            L.err_count[i]++;
        }
        L.errors++;
        return;
    }
    L.done++;
    L.sum += lat;
    L.sumsq += lat * lat;
    if (lat > L.slowest) {
        L.slowest = lat;
    }
}

static void issue(struct worker *w);

static void put_done(struct keel_call *call)
{
    struct worker *w = call->data;
    record(w);
    keel_call_cleanup(&w->call);
    w->busy = 0;
    if (L.target) {
        bar_draw(L.done + L.errors, 0);
    }
    issue(w);
}

/* How many puts may have started by now: the token bucket (perf), or the
 * fixed count (datascale). */
static uint64_t allowed(void)
{
    if (L.target) {
        return L.target;
    }
    uint64_t now = uv_hrtime();
    if (now >= L.end_ns) {
        L.producing = 0;
        return L.issued;
    }
    return 1 + (uint64_t)((double)(now - L.t0_ns) / 1e9 * L.rate);
}

static void issue(struct worker *w)
{
    if (w->busy || !L.producing || L.issued >= allowed()) {
        return;
    }
    /* binary.PutVarint(k, rand.Int63n(MaxInt64)) over a zeroed key */
    int64_t r = ((int64_t)random() << 32 ^ random()) & INT64_MAX;
    uint8_t *k = L.key + L.prefix_len;
    memset(k, 0, L.ksize);
    uint64_t ux = (uint64_t)r << 1; /* zigzag of a non-negative value */
    size_t i = 0;
    while (ux >= 0x80) {
        k[i++] = (uint8_t)(ux | 0x80);
        ux >>= 7;
    }
    k[i] = (uint8_t)ux;
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key.data = L.key;
    p.key.len = L.prefix_len + L.ksize;
    p.value.data = L.val;
    p.value.len = L.vsize;
    w->call.data = w;
    w->start_ns = uv_hrtime();
    if (keel_call_start(w->c, &w->call, KEEL_M_PUT, &p.base,
                        &etcdserverpb__put_response__descriptor, NULL,
                        put_done) != 0) {
        ctl_die(EXIT_ERROR, "cannot start a put");
    }
    w->busy = 1;
    L.issued++;
    if (L.target && L.issued >= L.target) {
        L.producing = 0;
    }
}

static void pace_cb(uv_timer_t *t)
{
    (void)t;
    for (int i = 0; i < L.n && L.producing && L.issued < allowed(); i++) {
        issue(&L.w[i]);
    }
    if (!L.target && L.end_ns > L.t0_ns) {
        uint64_t now = uv_hrtime();
        uint64_t secs = (now - L.t0_ns) / 1000000000ull;
        bar_draw(secs > bar_total ? bar_total : secs, 0);
    }
}

static int all_idle(void)
{
    for (int i = 0; i < L.n; i++) {
        if (L.w[i].busy) {
            return 0;
        }
    }
    return 1;
}

static void run_load(int clients, double rate, uint64_t seconds,
                     uint64_t count, const char *prefix, size_t ksize,
                     size_t vsize)
{
    L.loop = keel_sync_loop(ctl_client());
    L.n = clients;
    L.w = ctl_alloc((size_t)clients * sizeof(*L.w));
    for (int i = 0; i < clients; i++) {
        L.w[i].c = ctl_async_client(L.loop);
        keel_client_connect(L.w[i].c);
    }
    L.prefix = prefix;
    L.prefix_len = strlen(prefix);
    L.ksize = ksize;
    L.vsize = vsize;
    L.key = ctl_alloc(L.prefix_len + ksize);
    memcpy(L.key, prefix, L.prefix_len);
    L.val = ctl_alloc(vsize);
    L.rate = rate;
    L.target = count;
    L.t0_ns = uv_hrtime();
    L.end_ns = L.t0_ns + seconds * 1000000000ull;
    L.producing = 1;
    srandom((unsigned)L.t0_ns);
    bar_on = isatty(STDOUT_FILENO);
    bar_total = count ? count : seconds;
    uv_timer_t pace;
    uv_timer_init(L.loop, &pace);
    uv_timer_start(&pace, pace_cb, 0, 1);
    while (L.producing || !all_idle()) {
        uv_run(L.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&pace);
    uv_close((uv_handle_t *)&pace, NULL);
    bar_draw(bar_total, 1);
    for (int i = 0; i < clients; i++) {
        keel_client_close(L.w[i].c, NULL, NULL);
    }
    uv_run(L.loop, UV_RUN_NOWAIT);
}

/* ---- before and after --------------------------------------------------- */

static const char *perf_load = "s", *perf_prefix = "/etcdctl-check-perf/";
static const char *scale_load = "s",
                  *scale_prefix = "/etcdctl-check-datascale/";
static int auto_compact, auto_defrag;

static void set_prefix_range(Etcdserverpb__RangeRequest *r, const char *pfx)
{
    size_t len = strlen(pfx);
    char *end = ctl_alloc(len + 1);
    r->key.data = (uint8_t *)pfx;
    r->key.len = len;
    r->range_end.len = keel_prefix_end(pfx, len, end);
    r->range_end.data = (uint8_t *)end;
}

static void require_empty(const char *pfx)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    set_prefix_range(&r, pfx);
    r.limit = 1;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_RANGE, &r.base,
                 &etcdserverpb__range_response__descriptor,
                 KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    if (((Etcdserverpb__RangeResponse *)call.resp)->n_kvs > 0) {
        fflush(stdout);
        fprintf(stderr, "Error: prefix ");
        go_quote(stderr, (const uint8_t *)pfx, strlen(pfx));
        fprintf(stderr, " has keys. Delete with etcdctl del --prefix %s first\n",
                pfx);
        exit(EXIT_INVALID_INPUT);
    }
    keel_call_cleanup(&call);
}

/* Delete the prefix, then etcdctl's compact and defrag steps. */
static void clean_up(const char *pfx)
{
    Etcdserverpb__DeleteRangeRequest d =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Etcdserverpb__RangeRequest tmp = ETCDSERVERPB__RANGE_REQUEST__INIT;
    set_prefix_range(&tmp, pfx);
    d.key = tmp.key;
    d.range_end = tmp.range_end;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_DELETE_RANGE, &d.base,
                 &etcdserverpb__delete_range_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    int64_t rev =
        ((Etcdserverpb__DeleteRangeResponse *)call.resp)->header->revision;
    keel_call_cleanup(&call);
    if (auto_compact) {
        printf("Compacting with revision %" PRId64 "\n", rev);
        fflush(stdout);
        Etcdserverpb__CompactionRequest c =
            ETCDSERVERPB__COMPACTION_REQUEST__INIT;
        c.revision = rev;
        c.physical = 1;
        if (ctl_call(ctl_client(), &call, KEEL_M_COMPACT, &c.base,
                     &etcdserverpb__compaction_response__descriptor,
                     0) != KEEL_GRPC_OK) {
            ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
        }
        keel_call_cleanup(&call);
        printf("Compacted with revision %" PRId64 "\n", rev);
    }
    if (auto_defrag) {
        for (size_t i = 0; i < g.n_endpoints; i++) {
            printf("Defragmenting ");
            go_quote(stdout, (const uint8_t *)g.endpoints[i],
                     strlen(g.endpoints[i]));
            printf("\n");
            fflush(stdout);
            const char *one[1] = {g.endpoints[i]};
            struct keel_sync *s = ctl_client_for(one, 1);
            Etcdserverpb__DefragmentRequest r =
                ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
            ctl_passthrough = 1;
            int rc = ctl_call(s, &call, KEEL_M_DEFRAGMENT, &r.base,
                              &etcdserverpb__defragment_response__descriptor,
                              0);
            ctl_passthrough = 0;
            if (rc != KEEL_GRPC_OK) {
                ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
            }
            keel_call_cleanup(&call);
            keel_sync_close(s);
            printf("Defragmented ");
            go_quote(stdout, (const uint8_t *)g.endpoints[i],
                     strlen(g.endpoints[i]));
            printf("\n");
        }
    }
}

static void print_errors(void)
{
    printf("FAIL: too many errors\n");
    for (int i = 0; i < L.n_err; i++) {
        printf("FAIL: ERROR(%s) -> %" PRIu64 "\n", L.err_text[i],
               L.err_count[i]);
    }
}

/* ---- check perf ---------------------------------------------------------- */

static struct flag perf_flags[] = {
    {"load", 0, F_STRING, &perf_load, 0},
    {"prefix", 0, F_STRING, &perf_prefix, 0},
    {"auto-compact", 0, F_BOOL, &auto_compact, 0},
    {"auto-defrag", 0, F_BOOL, &auto_defrag, 0},
    {NULL, 0, 0, NULL, 0},
};

static void check_perf_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct load *ld = find_load(perf_load, perf_loads);
    uint64_t seconds = 60;
    const char *knob = getenv("KEELCTL_CHECK_PERF_SECONDS");
    if (knob != NULL && atoll(knob) > 0) {
        seconds = (uint64_t)atoll(knob);
    }
    require_empty(perf_prefix);
    run_load(ld->clients, ld->limit, seconds, 0, perf_prefix, 256, 1024);
    clean_up(perf_prefix);

    /* etcd's pkg/report: RPS over the span of the requests, latencies in
     * seconds, population stddev. */
    uint64_t n = L.done;
    double total = L.last_ns > L.first_ns
                       ? (double)(L.last_ns - L.first_ns) / 1e9
                       : 1e-9;
    double rps = (double)(n + L.errors) / total;
    double mean = n ? L.sum / (double)n : 0;
    double var = n ? L.sumsq / (double)n - mean * mean : 0;
    double stddev = var > 0 ? sqrt(var) : 0;
    int ok = 1;
    if (L.errors) {
        print_errors();
        ok = 0;
    }
    if (rps / ld->limit <= 0.9) {
        printf("FAIL: Throughput too low: %d writes/s\n", (int)rps + 1);
        ok = 0;
    } else {
        printf("PASS: Throughput is %d writes/s\n", (int)rps + 1);
    }
    if (L.slowest > 0.5) {
        printf("Slowest request took too long: %fs\n", L.slowest);
        ok = 0;
    } else {
        printf("PASS: Slowest request took %fs\n", L.slowest);
    }
    if (stddev > 0.1) {
        printf("Stddev too high: %fs\n", stddev);
        ok = 0;
    } else {
        printf("PASS: Stddev is %fs\n", stddev);
    }
    printf("%s\n", ok ? "PASS" : "FAIL");
    fflush(stdout);
    exit(ok ? EXIT_OK : EXIT_ERROR);
}

/* ---- check datascale ------------------------------------------------------ */

/* process_resident_memory_bytes from <ep>/metrics; 0 after printing why
 * (etcd: endpointMemoryMetrics). Plain HTTP/1.0, or TLS with the global
 * client certificate for https:// endpoints. */
static double resident_bytes(const char *ep)
{
    const char *host = ep;
    int tls = 0;
    if (strncmp(host, "http://", 7) == 0) {
        host += 7;
    } else if (strncmp(host, "https://", 8) == 0) {
        host += 8;
        tls = 1;
    }
    char hp[256];
    snprintf(hp, sizeof(hp), "%.*s", (int)strcspn(host, "/"), host);
    char *colon = strrchr(hp, ':');
    const char *port = "80";
    if (colon != NULL) {
        *colon = 0;
        port = colon + 1;
    }
    const char *name = hp[0] == '[' ? hp + 1 : hp;
    if (hp[0] == '[' && strchr(hp, ']')) {
        *strchr(hp, ']') = 0;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int fd = -1;
    if (getaddrinfo(name, port, &hints, &res) == 0) {
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype, 0);
            if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        printf("fetch error: Get \"%s%s/metrics\": dial tcp %s: connect: "
               "%s\n",
               tls ? "https://" : "http://", host, host,
               ctl_go_errno(errno));
        return 0;
    }
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        const struct keel_tls_config *t = ctl_tls();
        if (t != NULL && t->cert) {
            SSL_CTX_use_certificate_chain_file(ctx, t->cert);
            SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM);
        }
        if (t != NULL && t->insecure_skip_verify) {
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        } else {
            SSL_CTX_set_default_verify_paths(ctx);
            if (t != NULL && t->cacert) {
                SSL_CTX_load_verify_locations(ctx, t->cacert, NULL);
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        }
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, name);
        if (SSL_connect(ssl) != 1) {
            printf("fetch error: Get \"https://%s/metrics\": tls handshake "
                   "failed\n",
                   host);
            SSL_free(ssl);
            SSL_CTX_free(ctx);
            close(fd);
            return 0;
        }
    }
    char req[400];
    int rl = snprintf(req, sizeof(req),
                      "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", host);
    int wrote = tls ? SSL_write(ssl, req, rl) : (int)write(fd, req, (size_t)rl);
    char *body = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(body, cap);
            if (nb == NULL) {
                break;
            }
            body = nb;
        }
        int n = wrote <= 0 ? 0
                : tls      ? SSL_read(ssl, body + len, (int)(cap - len - 1))
                           : (int)read(fd, body + len, cap - len - 1);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    if (ssl) {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
    close(fd);
    double v = 0;
    const char *key = "process_resident_memory_bytes";
    int found = 0;
    if (body != NULL) {
        body[len] = 0;
        for (char *line = body; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) {
                *nl = 0;
            }
            if (strncmp(line, key, strlen(key)) == 0) {
                v = strtod(line + strlen(key), NULL);
                found = 1;
                break;
            }
            line = nl ? nl + 1 : NULL;
        }
    }
    free(body);
    if (!found) {
        printf("could not find: %s\n", key);
        return 0;
    }
    return v;
}

static struct flag scale_flags[] = {
    {"load", 0, F_STRING, &scale_load, 0},
    {"prefix", 0, F_STRING, &scale_prefix, 0},
    {"auto-compact", 0, F_BOOL, &auto_compact, 0},
    {"auto-defrag", 0, F_BOOL, &auto_defrag, 0},
    {NULL, 0, 0, NULL, 0},
};

static void check_datascale_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const struct load *ld = find_load(scale_load, scale_loads);
    ctl_client();
    require_empty(scale_prefix);
    double before = resident_bytes(g.endpoints[0]);
    if (before == 0) {
        printf("FAIL: Could not read process_resident_memory_bytes before "
               "the put operations.\n");
        exit(EXIT_ERROR);
    }
    printf("Start data scale check for work load [%d key-value pairs, %d "
           "bytes per key-value, %d concurrent clients].\n",
           ld->limit, ld->kv_size, ld->clients);
    fflush(stdout);
    run_load(ld->clients, 0, 0, (uint64_t)ld->limit, scale_prefix, 512, 512);
    double after = resident_bytes(g.endpoints[0]);
    if (after == 0) {
        printf("FAIL: Could not read process_resident_memory_bytes after the "
               "put operations.\n");
        exit(EXIT_ERROR);
    }
    clean_up(scale_prefix);
    if (L.errors) {
        print_errors();
        exit(EXIT_ERROR);
    }
    printf("PASS: Approximate system memory used : %.2f MB.\n",
           (after - before) / (1024 * 1024));
}

const struct ctl_cmd ctl_check_cmds[] = {
    {"check perf", perf_flags, check_perf_run},
    {"check datascale", scale_flags, check_datascale_run},
    {NULL, NULL, NULL},
};
