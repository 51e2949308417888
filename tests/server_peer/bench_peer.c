/*
 * bench_peer: throughput of the peer transport between two members on one
 * loop over loopback (a measurement, not a test; it is not registered with
 * ctest).
 *
 *   bench_peer [messages] [message bytes] [snapshot MiB]
 *
 * Sends `messages` messages of `message bytes` from member 1 to member 2
 * in batches of 256 (as a raft leader's Ready would), then one snapshot
 * image of `snapshot MiB`, and prints messages/s, MB/s and the snapshot's
 * MB/s (including the receiver's fsync), then the round trip of one small
 * message bounced back and forth (latency).
 *
 * With KEEL_BENCH_PEER_TLS=DIR (ca.crt, peer.crt, peer.key there; the
 * certificate valid for 127.0.0.1 with server and client auth) both
 * members talk mutual TLS over https:// URLs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "peer.h"
#include "tls.h"

struct side
{
    struct peer *t;
    struct side *other; /* ping-pong: bounce messages back to it */
    size_t bounce;      /* messages left to bounce */
    size_t got, bytes;
    int snap_ok, snap_done;
    char path[512];
};

static void on_message(void *arg, uint64_t from, const uint8_t *m, size_t n)
{
    struct side *s = arg;
    s->got++;
    s->bytes += n;
    if (s->bounce > 0) {
        s->bounce--;
        peer_send(s->t, from, m, n, NULL);
    }
}

static struct tls_ctx *tls_srv, *tls_cli;

/* KEEL_BENCH_PEER_TLS: both contexts from DIR/{ca,peer}.{crt,key}. */
static const char *tls_setup(void)
{
    const char *dir = getenv("KEEL_BENCH_PEER_TLS");
    char crt[600], key[600], ca[600], err[256];
    if (dir == NULL || dir[0] == '\0') {
        return "http";
    }
    snprintf(crt, sizeof crt, "%s/peer.crt", dir);
    snprintf(key, sizeof key, "%s/peer.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    struct tls_config tc = {.cert_file = crt,
                            .key_file = key,
                            .trusted_ca_file = ca,
                            .client_cert_auth = 1,
                            .keep_buffers = 1,
                            .role = TLS_SERVER};
    if (tls_ctx_new(&tc, &tls_srv, err, sizeof err) != 0) {
        fprintf(stderr, "TLS: %s\n", err);
        exit(1);
    }
    tc.role = TLS_CLIENT;
    tc.client_cert_auth = 0;
    if (tls_ctx_new(&tc, &tls_cli, err, sizeof err) != 0) {
        fprintf(stderr, "TLS: %s\n", err);
        exit(1);
    }
    return "https";
}

static void on_snapshot(void *arg,
                        uint64_t from,
                        const uint8_t *m,
                        size_t n,
                        const char *path)
{
    (void)arg, (void)from, (void)m, (void)n;
    unlink(path);
}

static void on_snapshot_sent(void *arg, uint64_t to, bool ok)
{
    struct side *s = arg;
    (void)to;
    s->snap_ok = ok;
    s->snap_done = 1;
}

static void on_unreachable(void *arg, uint64_t to)
{
    (void)arg, (void)to;
}

static struct peer *open_side(uv_loop_t *loop,
                              struct side *s,
                              uint64_t id,
                              const char *url,
                              const char *dir)
{
    struct peer_options o = {
        .loop = loop,
        .cluster_id = 1,
        .self_id = id,
        .listen_urls = &url,
        .n_listen_urls = 1,
        .snap_dir = dir,
        .on_message = on_message,
        .on_snapshot = on_snapshot,
        .on_snapshot_sent = on_snapshot_sent,
        .on_unreachable = on_unreachable,
        .arg = s,
        .tls_server = tls_srv,
        .tls_client = tls_cli,
    };
    char err[256];
    struct peer *t;
    if (peer_open(&o, &t, err, sizeof err) != 0) {
        fprintf(stderr, "peer_open: %s\n", err);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    size_t size = argc > 2 ? strtoull(argv[2], NULL, 10) : 100;
    size_t snap_mib = argc > 3 ? strtoull(argv[3], NULL, 10) : 64;
    uv_loop_t loop;
    struct side a = {0}, b = {0};
    char dir[] = "/tmp/keel-bench-peer-XXXXXX";
    char url_a[64], url_b[64], img[600];
    const char *u;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    uv_loop_init(&loop);
    const char *sch = tls_setup();
    snprintf(url_a, sizeof url_a, "%s://127.0.0.1:0", sch);
    a.t = open_side(&loop, &a, 1, url_a, dir);
    b.t = open_side(&loop, &b, 2, url_a, dir);
    snprintf(url_a, sizeof url_a, "%s://127.0.0.1:%d", sch, peer_port(a.t, 0));
    snprintf(url_b, sizeof url_b, "%s://127.0.0.1:%d", sch, peer_port(b.t, 0));
    u = url_b;
    peer_add(a.t, 2, &u, 1);
    u = url_a;
    peer_add(b.t, 1, &u, 1);
    while (!peer_connected(a.t, 2) || !peer_connected(b.t, 1)) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    printf("peer URLs: %s\n", sch);

    uint8_t *msg = calloc(1, size);
    uint64_t t0 = uv_hrtime();
    size_t sent = 0;
    /* Keep a bounded backlog, as raft's inflight window does, well inside
     * the transport's queue bound (past it messages would be dropped). */
    size_t window = (16u << 20) / (size + 5);
    if (window > 2048) {
        window = 2048;
    }
    if (window < 1) {
        window = 1;
    }
    while (b.got < n) {
        while (sent < n && sent - b.got < window) {
            for (int i = 0; i < 256 && sent < n && sent - b.got < window;
                 i++, sent++) {
                peer_send(a.t, 2, msg, size, NULL);
            }
        }
        uv_run(&loop, UV_RUN_ONCE);
    }
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    printf("messages: %zu x %zu B in %.3f s: %.0f msg/s, %.1f MB/s\n", n, size,
           secs, (double)n / secs, (double)b.bytes / secs / 1e6);

    snprintf(img, sizeof img, "%s/image.db", dir);
    FILE *fp = fopen(img, "w");
    uint8_t *mib = malloc(1 << 20);
    for (size_t i = 0; i < (1 << 20); i++) {
        mib[i] = (uint8_t)(i * 2654435761u >> 13);
    }
    for (size_t i = 0; i < snap_mib; i++) {
        fwrite(mib, 1, 1 << 20, fp);
    }
    fclose(fp);
    free(mib);
    t0 = uv_hrtime();
    peer_send(a.t, 2, (const uint8_t *)"snap", 4, img);
    while (!a.snap_done) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    secs = (double)(uv_hrtime() - t0) / 1e9;
    printf("snapshot: %zu MiB in %.3f s: %.1f MB/s (%s)\n", snap_mib, secs,
           (double)(snap_mib << 20) / secs / 1e6, a.snap_ok ? "ok" : "FAILED");
    unlink(img);

    /* Round trips: b bounces each message back to a, a sends the next. */
    size_t rounds = 20000, before = a.got;
    a.bounce = rounds - 1;
    b.bounce = rounds;
    t0 = uv_hrtime();
    peer_send(a.t, 2, msg, 64, NULL);
    while (a.got - before < rounds) {
        uv_run(&loop, UV_RUN_ONCE);
    }
    secs = (double)(uv_hrtime() - t0) / 1e9;
    printf("round trips: %zu of 64 B in %.3f s: %.1f us each\n", rounds, secs,
           secs * 1e6 / (double)rounds);
    peer_close(a.t, NULL, NULL);
    peer_close(b.t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    tls_ctx_free(tls_srv);
    tls_ctx_free(tls_cli);
    free(msg);
    rmdir(dir);
    return a.snap_ok ? 0 : 1;
}
