/*
 * keel-wal-bench: what a WAL append costs on this disk, next to what the
 * disk's fdatasync costs by itself in the same directory.
 *
 *   keel-wal-bench [--dir DIR] [--count N] [--batch B] [--size BYTES]
 *
 * Runs, in DIR (default: a temporary directory under the current one, so
 * the figures are for the disk you run it on, not /tmp's):
 *   raw-falloc   pwrite 64 bytes + fdatasync into a file preallocated with
 *                fallocate (what a fresh WAL segment is)
 *   raw-zeroed   the same into a file whose blocks were written with zeros
 *                and synced first (no unwritten-extent conversion)
 *   wal-1        wal_append of one small entry (64 bytes) + hard state
 *   wal-batch    wal_append of B entries of SIZE bytes (default 100 x 256)
 * and prints latency percentiles per sync and throughput, as a markdown
 * table. A benchmark, not a test: it asserts nothing about speed.
 */
#include <errno.h>
#include <fcntl.h>
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

static void report(const char *name, double *lat, int n, double total_us,
                   double entries, double bytes)
{
    qsort(lat, (size_t)n, sizeof(*lat), cmp_double);
    printf("| %-12s | %6d | %8.1f | %8.1f | %8.1f | %10.0f | %8.2f |\n",
           name, n, lat[n / 2], lat[(int)(n * 0.99)], total_us / n,
           entries / (total_us / 1e6), bytes / (total_us / 1e6) / 1e6);
}

static void die(const char *what, int rv)
{
    fprintf(stderr, "keel-wal-bench: %s: %s\n", what, keel_strerror(rv));
    exit(1);
}

static void raw(const char *dir, int zeroed, int count, double *lat)
{
    char path[4096];
    char buf[64];
    double t0, total = 0;
    size_t size = (size_t)count * 64 + 4096;
    int fd;

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
    } else {
        int rv = posix_fallocate(fd, 0, (off_t)size);
        if (rv != 0) {
            die("fallocate raw file", -rv);
        }
    }
    if (fsync(fd) != 0) {
        die("fsync", -errno);
    }
    memset(buf, 'x', sizeof(buf));
    for (int i = 0; i < count; i++) {
        t0 = now_us();
        if (pwrite(fd, buf, sizeof(buf), (off_t)i * 64) != 64 ||
            fdatasync(fd) != 0) {
            die("raw write", -errno);
        }
        lat[i] = now_us() - t0;
        total += lat[i];
    }
    close(fd);
    unlink(path);
    report(zeroed ? "raw-zeroed" : "raw-falloc", lat, count, total, count,
           count * 64.0);
}

static void wal_runs(const char *dir, int count, int batch, size_t size,
                     double *lat)
{
    char err[512], data[4096];
    struct wal *w;
    struct wal_entry *ents = calloc((size_t)batch, sizeof(*ents));
    uint8_t *payload = malloc(size > 64 ? size : 64);
    uint64_t next = 1;
    double total = 0;
    int rv, batches = count / 10 > 0 ? count / 10 : 1;

    if (ents == NULL || payload == NULL) {
        die("alloc", KEEL_ENOMEM);
    }
    memset(payload, 'v', size > 64 ? size : 64);
    if ((size_t)snprintf(data, sizeof(data), "%s/data", dir) >= sizeof(data)) {
        die("dir name", KEEL_EINVAL);
    }
    rv = wal_open(data, NULL, &w, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "%s\n", err);
        die("wal_open", rv);
    }
    for (int i = 0; i < count; i++) {
        struct wal_entry e = {next, 1, 0, payload, 64};
        struct wal_hard_state hs = {1, 1, next};
        double t0 = now_us();
        rv = wal_append(w, &e, 1, &hs);
        if (rv != 0) {
            die("wal_append", rv);
        }
        lat[i] = now_us() - t0;
        total += lat[i];
        next++;
    }
    report("wal-1", lat, count, total, count, count * 64.0);

    total = 0;
    for (int i = 0; i < batches; i++) {
        struct wal_hard_state hs = {1, 1, next};
        double t0;
        for (int k = 0; k < batch; k++) {
            ents[k] = (struct wal_entry){next + (uint64_t)k, 1, 0, payload,
                                         size};
        }
        t0 = now_us();
        rv = wal_append(w, ents, (size_t)batch, &hs);
        if (rv != 0) {
            die("wal_append batch", rv);
        }
        lat[i] = now_us() - t0;
        total += lat[i];
        next += (uint64_t)batch;
    }
    {
        char name[32];
        snprintf(name, sizeof(name), "wal-%dx%zu", batch, size);
        report(name, lat, batches, total, (double)batches * batch,
               (double)batches * batch * (double)size);
    }
    wal_close(w);
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
    int count = 2000, batch = 100;
    size_t size = 256;
    double *lat;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            parent = argv[++i];
        } else if (strcmp(argv[i], "--count") == 0 && i + 1 < argc) {
            count = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            batch = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
            size = (size_t)atol(argv[++i]);
        } else {
            fprintf(stderr,
                    "usage: %s [--dir DIR] [--count N] [--batch B] "
                    "[--size BYTES]\n",
                    argv[0]);
            return 2;
        }
    }
    if (count < 10 || batch < 1) {
        fprintf(stderr, "keel-wal-bench: count >= 10, batch >= 1\n");
        return 2;
    }
    if ((size_t)snprintf(tmpl, sizeof(tmpl), "%s/keel-wal-bench-XXXXXX",
                         parent) >= sizeof(tmpl)) {
        die("dir name", KEEL_EINVAL);
    }
    if (mkdtemp(tmpl) == NULL) {
        die("mkdtemp", -errno);
    }
    lat = malloc((size_t)count * sizeof(*lat));
    if (lat == NULL) {
        die("alloc", KEEL_ENOMEM);
    }
    printf("dir: %s, %d syncs per run\n\n", tmpl, count);
    printf("| run          | syncs  | p50 us   | p99 us   | mean us  | "
           "entries/s  | MB/s     |\n");
    printf("|--------------|--------|----------|----------|----------|"
           "------------|----------|\n");
    raw(tmpl, 0, count, lat);
    raw(tmpl, 1, count, lat);
    wal_runs(tmpl, count, batch, size, lat);
    rmrf_bench(tmpl);
    free(lat);
    return 0;
}
