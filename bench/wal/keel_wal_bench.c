/*
 * keel-wal-bench: what a WAL append costs on this disk, next to what the
 * disk's fdatasync costs by itself in the same directory.
 *
 *   keel-wal-bench [--dir DIR] [--count N] [--rounds R] [--batch B]
 *                  [--size BYTES]
 *
 * Runs, in DIR (default: a temporary directory under the current one, so
 * the figures are for the disk you run it on, not /tmp's):
 *   raw-falloc   pwrite 64 bytes + fdatasync into a file preallocated with
 *                fallocate (what a fresh WAL segment is)
 *   raw-zeroed   the same into a file whose blocks were written with zeros
 *                and synced first (no unwritten-extent conversion)
 *   wal-1        wal_append of one small entry (64 bytes) + hard state
 *   wal-batch    wal_append of B entries of SIZE bytes (default 100 x 256)
 * N syncs each (default 2000; the batched run does N / 10), interleaved in
 * R rounds (default 10) so that a noisy neighbour on a shared disk hurts
 * every run alike, and prints latency percentiles per sync and throughput
 * as a markdown table; then the time to reopen (recover) the log written.
 * A benchmark, not a test: it asserts nothing about speed.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keel_err.h"
#include "wal.h"

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *name,
                   double *lat,
                   int n,
                   double total_us,
                   double entries,
                   double bytes)
{
    qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
    printf("| %-12s | %6d | %8.1f | %8.1f | %8.1f | %10.0f | %8.2f |\n", name,
           n, lat[n / 2], lat[(int)(n * 0.99)], total_us / n,
           entries / (total_us / 1e6), bytes / (total_us / 1e6) / 1e6);
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "keel-wal-bench: %s: %s\n", what, keel_strerror(rv));
    exit(1);
}

/* One file to sync into, preallocated with fallocate or with zeros. */
static int raw_open(const char *dir, int zeroed, size_t size)
{
    char path[4096];
    int fd, rv;

    if ((size_t)snprintf(path, sizeof(path), "%s/raw.%d", dir, zeroed) >=
        sizeof(path)) {
        die("dir name", KEEL_EINVAL);
    }
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        die("open raw file", -errno);
    }
    if (zeroed) {
        static char zeros[1 << 16];
        for (size_t off = 0; off < size; off += sizeof(zeros)) {
            if (pwrite(fd, zeros, sizeof(zeros), (off_t)off) < 0) {
                die("zero raw file", -errno);
            }
        }
    } else if ((rv = posix_fallocate(fd, 0, (off_t)size)) != 0) {
        die("fallocate raw file", -rv);
    }
    if (fsync(fd) != 0) {
        die("fsync", -errno);
    }
    unlink(path);
    return fd;
}

struct run
{
    const char *name;
    double *lat;
    int n;
    double total_us, entries, bytes;
};

static void record(struct run *r, double us, double entries, double bytes)
{
    r->lat[r->n++] = us;
    r->total_us += us;
    r->entries += entries;
    r->bytes += bytes;
}

static void bench(const char *dir,
                  int count,
                  int rounds,
                  int batch,
                  size_t size)
{
    char err[512], data[4096], name[32];
    struct run runs[4];
    int raw_fd[2];
    struct wal *w;
    struct wal_entry *ents = calloc((size_t)batch, sizeof(*ents));
    uint8_t *payload = malloc(size > 64 ? size : 64);
    uint64_t next = 1;
    off_t raw_off = 0;
    int per = count / rounds, batches = per / 10 > 0 ? per / 10 : 1, rv;

    if (ents == NULL || payload == NULL) {
        die("alloc", KEEL_ENOMEM);
    }
    memset(payload, 'v', size > 64 ? size : 64);
    snprintf(name, sizeof(name), "wal-%dx%zu", batch, size);
    runs[0] = (struct run){"raw-falloc", NULL, 0, 0, 0, 0};
    runs[1] = (struct run){"raw-zeroed", NULL, 0, 0, 0, 0};
    runs[2] = (struct run){"wal-1", NULL, 0, 0, 0, 0};
    runs[3] = (struct run){name, NULL, 0, 0, 0, 0};
    for (int i = 0; i < 4; i++) {
        runs[i].lat = malloc((size_t)count * sizeof(double));
        if (runs[i].lat == NULL) {
            die("alloc", KEEL_ENOMEM);
        }
    }
    raw_fd[0] = raw_open(dir, 0, (size_t)count * 64 + 4096);
    raw_fd[1] = raw_open(dir, 1, (size_t)count * 64 + 4096);
    if ((size_t)snprintf(data, sizeof(data), "%s/data", dir) >= sizeof(data)) {
        die("dir name", KEEL_EINVAL);
    }
    rv = wal_open(data, NULL, &w, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "%s\n", err);
        die("wal_open", rv);
    }

    /* Interleaved rounds, so a noisy neighbour hurts every run alike. */
    for (int round = 0; round < rounds; round++) {
        char buf[64];
        memset(buf, 'x', sizeof(buf));
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < per; i++) {
                double t0 = now_us();
                if (pwrite(raw_fd[k], buf, sizeof(buf),
                           raw_off + (off_t)i * 64) != 64 ||
                    fdatasync(raw_fd[k]) != 0) {
                    die("raw write", -errno);
                }
                record(&runs[k], now_us() - t0, 1, 64);
            }
        }
        raw_off += (off_t)per * 64;
        for (int i = 0; i < per; i++) {
            struct wal_entry e = {next, 1, 0, payload, 64};
            struct wal_hard_state hs = {1, 1, next};
            double t0 = now_us();
            rv = wal_append(w, &e, 1, &hs);
            if (rv != 0) {
                die("wal_append", rv);
            }
            record(&runs[2], now_us() - t0, 1, 64);
            next++;
        }
        for (int i = 0; i < batches; i++) {
            struct wal_hard_state hs = {1, 1, next};
            double t0;
            for (int k = 0; k < batch; k++) {
                ents[k] =
                    (struct wal_entry){next + (uint64_t)k, 1, 0, payload, size};
            }
            t0 = now_us();
            rv = wal_append(w, ents, (size_t)batch, &hs);
            if (rv != 0) {
                die("wal_append batch", rv);
            }
            record(&runs[3], now_us() - t0, batch, (double)batch * size);
            next += (uint64_t)batch;
        }
    }
    for (int i = 0; i < 4; i++) {
        report(runs[i].name, runs[i].lat, runs[i].n, runs[i].total_us,
               runs[i].entries, runs[i].bytes);
        free(runs[i].lat);
    }
    close(raw_fd[0]);
    close(raw_fd[1]);
    wal_close(w);
    {
        /* Recovery: open (replay + index) the log just written. */
        double t0 = now_us();
        rv = wal_open(data, NULL, &w, err, sizeof(err));
        if (rv != 0) {
            fprintf(stderr, "%s\n", err);
            die("wal_open", rv);
        }
        printf("\nreopen: %" PRIu64 " entries in %zu segments in %.1f ms\n",
               wal_last_index(w), wal_segment_count(w), (now_us() - t0) / 1e3);
        wal_close(w);
    }
    free(ents);
    free(payload);
}

static void rmrf_bench(const char *dir)
{
    char cmd[4200];
    if ((size_t)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= sizeof(cmd)) {
        return;
    }
    if (system(cmd) != 0) {
        fprintf(stderr, "keel-wal-bench: could not remove %s\n", dir);
    }
}

int main(int argc, char **argv)
{
    char tmpl[4096];
    const char *parent = ".";
    int count = 2000, batch = 100, rounds = 10;
    size_t size = 256;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            parent = argv[++i];
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (size_t)atol(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: %s [--dir DIR] [--count N] [--rounds R] "
                    "[--batch B] [--size BYTES]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rounds < 1 || count < 10 * rounds || batch < 1 || batch > 100000) {
        fprintf(stderr,
                "keel-wal-bench: need rounds >= 1, count >= 10 * "
                "rounds, 1 <= batch <= 100000\n");
        return 2;
    }
    if ((size_t)snprintf(tmpl, sizeof(tmpl), "%s/keel-wal-bench-XXXXXX",
                         parent) >= sizeof(tmpl)) {
        die("dir name", KEEL_EINVAL);
    }
    if (mkdtemp(tmpl) == NULL) {
        die("mkdtemp", -errno);
    }
    printf(
        "dir: %s, %d syncs per run in %d interleaved rounds "
        "(batched run: count / 10 syncs)\n\n",
        tmpl, count, rounds);
    printf(
        "| run          | syncs  | p50 us   | p99 us   | mean us  | "
        "entries/s  | MB/s     |\n");
    printf(
        "|--------------|--------|----------|----------|----------|"
        "------------|----------|\n");
    bench(tmpl, count, rounds, batch, size);
    rmrf_bench(tmpl);
    return 0;
}
