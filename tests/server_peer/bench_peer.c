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
 * MB/s (including the receiver's fsync).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>

#include "peer.h"

struct side
{
    struct peer *t;
    size_t got, bytes;
    int snap_ok, snap_done;
    char path[512];
};

static void on_message(void *arg, uint64_t from, const uint8_t *m, size_t n)
{
    struct side *s = arg;
    (void)from, (void)m;
    s->got++;
    s->bytes += n;
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
    a.t = open_side(&loop, &a, 1, "http://127.0.0.1:0", dir);
    b.t = open_side(&loop, &b, 2, "http://127.0.0.1:0", dir);
    snprintf(url_a, sizeof url_a, "http://127.0.0.1:%d", peer_port(a.t, 0));
    snprintf(url_b, sizeof url_b, "http://127.0.0.1:%d", peer_port(b.t, 0));
    u = url_b;
    peer_add(a.t, 2, &u, 1);
    u = url_a;
    peer_add(b.t, 1, &u, 1);
    while (!peer_connected(a.t, 2)) {
        uv_run(&loop, UV_RUN_ONCE);
    }

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
    peer_close(a.t, NULL, NULL);
    peer_close(b.t, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(msg);
    rmdir(dir);
    return a.snap_ok ? 0 : 1;
}
