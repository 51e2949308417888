/*
 * keel-mvcc-bench: throughput of the MVCC store (storage/mvcc.h).
 *
 *   keel-mvcc-bench [--keys N] [--batch B] [--dir DIR] [--reads R]
 *
 * Loads N distinct 8-byte keys (pseudo-random order) with 256-byte values,
 * B puts per write batch (one LMDB txn, as the apply loop batches raft
 * entries), then measures: point Range of random keys (one read txn each),
 * Range of 100 consecutive keys (limit 100), overwrite puts, and the time to
 * close and re-open the store and serve the first Range. The data dir is a
 * fresh temporary directory (removed at the end) unless --dir is given.
 * Prints one line per measure: name, operations, seconds, operations/s.
 */
#include <ftw.h>
#include <sys/stat.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keel_arena.h"
#include "keel_err.h"
#include "mvcc.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static void key_of(uint64_t i, uint8_t k[8])
{
    uint64_t x = mix(i);
    for (int j = 7; j >= 0; j--) {
        k[j] = (uint8_t)x;
        x >>= 8;
    }
}

static void report(const char *what, uint64_t ops, double secs)
{
    printf("%-34s %10llu ops %9.3f s %12.0f ops/s\n", what,
           (unsigned long long)ops, secs, secs > 0 ? (double)ops / secs : 0.0);
    fflush(stdout);
}

static void die(struct mvcc_store *s, int rc, const char *what)
{
    fprintf(stderr, "keel-mvcc-bench: %s: %s (%s)\n", what, keel_strerror(rc),
            s ? mvcc_errmsg(s) : "");
    exit(1);
}

static int rm_entry(const char *p, const struct stat *sb, int f, struct FTW *w)
{
    (void)sb;
    (void)f;
    (void)w;
    return remove(p);
}

static uint64_t ci;

static void load(struct mvcc_store *s, uint64_t from, uint64_t n, uint64_t batch,
                 uint64_t salt)
{
    static uint8_t val[256];
    struct keel_arena a;
    uint8_t k[8];

    keel_arena_init(&a, 64 * 1024);
    for (uint64_t i = from; i < from + n;) {
        struct mvcc_write *w;
        int rc = mvcc_write_begin(s, &w);
        if (rc != 0) {
            die(s, rc, "write begin");
        }
        for (uint64_t j = 0; j < batch && i < from + n; j++, i++) {
            Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
            Etcdserverpb__PutResponse *r;
            key_of(i, k);
            memcpy(val, &salt, sizeof(salt));
            memcpy(val + 8, &i, sizeof(i));
            q.key.data = k;
            q.key.len = 8;
            q.value.data = val;
            q.value.len = sizeof(val);
            if ((rc = mvcc_put(w, &q, &a, &r)) != 0) {
                die(s, rc, "put");
            }
        }
        if ((rc = mvcc_write_commit(w, ++ci, 1)) != 0) {
            die(s, rc, "commit");
        }
        keel_arena_reset(&a);
    }
    keel_arena_free(&a);
}

int main(int argc, char **argv)
{
    uint64_t nkeys = 100000, batch = 100, reads = 200000;
    const char *dir = NULL;
    char tmp[] = "/tmp/keel-mvcc-bench-XXXXXX", db[512];
    struct mvcc_store *s = NULL;
    struct keel_arena a;
    char err[256];
    double t0;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--keys") && i + 1 < argc) {
            nkeys = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--reads") && i + 1 < argc) {
            reads = strtoull(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: keel-mvcc-bench [--keys N] [--batch B] "
                    "[--reads R] [--dir DIR]\n");
            return 2;
        }
    }
    if (batch == 0) {
        batch = 1;
    }
    if (dir == NULL) {
        if (mkdtemp(tmp) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmp;
    }
    snprintf(db, sizeof(db), "%s/member/snap/db", dir);
    if ((rc = mvcc_open(db, NULL, &s, err, sizeof(err))) != 0) {
        fprintf(stderr, "keel-mvcc-bench: %s\n", err);
        return 1;
    }
    printf("keel-mvcc-bench: %llu keys (8 B), 256 B values, %llu puts per "
           "batch\n",
           (unsigned long long)nkeys, (unsigned long long)batch);

    t0 = now();
    load(s, 0, nkeys, batch, 1);
    report("put (new keys)", nkeys, now() - t0);
    t0 = now();
    if ((rc = mvcc_sync(s)) != 0) {
        die(s, rc, "sync");
    }
    report("sync (fsync of the LMDB file)", 1, now() - t0);
    {
        struct stat st;
        if (stat(db, &st) == 0) {
            printf("%-34s %10.1f MiB on disk (%.0f B/key)\n", "db file",
                   (double)st.st_blocks * 512 / 1048576.0,
                   (double)st.st_blocks * 512 / (double)nkeys);
        }
    }

    keel_arena_init(&a, 64 * 1024);
    {
        uint64_t found = 0;
        uint8_t k[8];
        t0 = now();
        for (uint64_t i = 0; i < reads; i++) {
            Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
            Etcdserverpb__RangeResponse *r;
            key_of(mix(i + 7) % nkeys, k);
            q.key.data = k;
            q.key.len = 8;
            if ((rc = mvcc_range(s, &q, &a, &r)) != 0) {
                die(s, rc, "range");
            }
            found += r->n_kvs;
            keel_arena_reset(&a);
        }
        report("range (1 key)", reads, now() - t0);
        if (found != reads) {
            fprintf(stderr, "keel-mvcc-bench: %llu of %llu keys found\n",
                    (unsigned long long)found, (unsigned long long)reads);
            return 1;
        }
    }
    {
        /* [k, k + 100 * 2^64 / N): about 100 of the uniformly spread keys */
        uint64_t n = reads / 20, kvs = 0, span = UINT64_MAX / nkeys * 100;
        uint8_t k[8], e[8];
        t0 = now();
        for (uint64_t i = 0; i < n; i++) {
            Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
            Etcdserverpb__RangeResponse *r;
            uint64_t x = mix(mix(i + 11) % nkeys), y = x + span;
            key_of(mix(i + 11) % nkeys, k);
            if (y < x) {
                y = UINT64_MAX;
            }
            for (int j = 7; j >= 0; j--) {
                e[j] = (uint8_t)y;
                y >>= 8;
            }
            q.key.data = k;
            q.key.len = 8;
            q.range_end.data = e;
            q.range_end.len = 8;
            if ((rc = mvcc_range(s, &q, &a, &r)) != 0) {
                die(s, rc, "range");
            }
            kvs += r->n_kvs;
            keel_arena_reset(&a);
        }
        report("range (~100 keys)", n, now() - t0);
        report("  keys returned by those ranges", kvs, now() - t0);
    }
    {
        /* etcd's count is the whole range: this walks all keys after k */
        uint64_t n = 50;
        uint8_t k[8];
        static const uint8_t zero = 0;
        t0 = now();
        for (uint64_t i = 0; i < n; i++) {
            Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
            Etcdserverpb__RangeResponse *r;
            key_of(0, k);
            q.key.data = k;
            q.key.len = 1;
            k[0] = 0;
            q.range_end.data = (uint8_t *)&zero;
            q.range_end.len = 1;
            q.limit = 100;
            if ((rc = mvcc_range(s, &q, &a, &r)) != 0 || r->count != (int64_t)nkeys) {
                die(s, rc, "range all");
            }
            keel_arena_reset(&a);
        }
        report("range (all keys, limit 100, count)", n, now() - t0);
    }
    {
        uint64_t n = nkeys < 100000 ? nkeys : 100000;
        t0 = now();
        load(s, 0, n, batch, 2);
        report("put (overwrite)", n, now() - t0);
    }
    {
        int64_t rev = mvcc_revision(s);
        Etcdserverpb__RangeResponse *r;
        Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
        uint8_t k[8];

        mvcc_close(s);
        s = NULL;
        t0 = now();
        if ((rc = mvcc_open(db, NULL, &s, err, sizeof(err))) != 0) {
            fprintf(stderr, "keel-mvcc-bench: reopen: %s\n", err);
            return 1;
        }
        key_of(nkeys / 2, k);
        q.key.data = k;
        q.key.len = 8;
        if ((rc = mvcc_range(s, &q, &a, &r)) != 0 || r->n_kvs != 1 ||
            mvcc_revision(s) != rev) {
            die(s, rc, "range after reopen");
        }
        report("open + first range", 1, now() - t0);
        keel_arena_reset(&a);
    }
    keel_arena_free(&a);
    mvcc_close(s);
    if (dir == tmp) {
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    return 0;
}
