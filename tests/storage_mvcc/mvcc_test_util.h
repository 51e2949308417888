/*
 * Helpers shared by the MVCC tests: a temporary data dir, request builders,
 * single-op batches.
 */
#ifndef KEEL_MVCC_TEST_UTIL_H
#define KEEL_MVCC_TEST_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

#include <cmocka.h>

#include "keel_arena.h"
#include "keel_err.h"
#include "mvcc.h"

static int rm_entry(const char *p, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

struct tdir
{
    char dir[256];
    char db[300];
};

static inline void tdir_init(struct tdir *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/keel-mvcc-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->db, sizeof(t->db), "%s/member/snap/db", t->dir);
}

static inline struct mvcc_store *open_store(const char *db, size_t map_size)
{
    struct mvcc_options o = {map_size};
    struct mvcc_store *s = NULL;
    char err[256] = "";
    int rc = mvcc_open(db, &o, &s, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "mvcc_open: %s (%s)\n", err, keel_strerror(rc));
    }
    assert_int_equal(rc, 0);
    return s;
}

static inline ProtobufCBinaryData bin(const void *p, size_t n)
{
    ProtobufCBinaryData b = {n, (uint8_t *)p};
    return b;
}

static inline ProtobufCBinaryData str(const char *s)
{
    return bin(s, strlen(s));
}

static inline int is_sanitized(void)
{
    const char *e = getenv("KEEL_SANITIZED");
    return e != NULL && *e && strcmp(e, "0") != 0;
}

/* One-op batches. */
static uint64_t test_ci = 0;

static inline int put1(struct mvcc_store *s,
                       struct keel_arena *a,
                       ProtobufCBinaryData k,
                       ProtobufCBinaryData v,
                       int64_t lease,
                       Etcdserverpb__PutResponse **resp)
{
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *r = NULL;
    struct mvcc_write *w;
    int rc;

    q.key = k;
    q.value = v;
    q.lease = lease;
    q.prev_kv = 1;
    assert_int_equal(mvcc_write_begin(s, &w), 0);
    rc = mvcc_put(w, &q, a, &r);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    if (resp != NULL) {
        *resp = r;
    }
    return rc;
}

static inline int del1(struct mvcc_store *s,
                       struct keel_arena *a,
                       ProtobufCBinaryData k,
                       ProtobufCBinaryData end,
                       Etcdserverpb__DeleteRangeResponse **resp)
{
    Etcdserverpb__DeleteRangeRequest q =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Etcdserverpb__DeleteRangeResponse *r = NULL;
    struct mvcc_write *w;
    int rc;

    q.key = k;
    q.range_end = end;
    q.prev_kv = 1;
    assert_int_equal(mvcc_write_begin(s, &w), 0);
    rc = mvcc_delete_range(w, &q, a, &r);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    if (resp != NULL) {
        *resp = r;
    }
    return rc;
}

static inline int compact1(struct mvcc_store *s, int64_t rev)
{
    struct mvcc_write *w;
    int rc;
    assert_int_equal(mvcc_write_begin(s, &w), 0);
    rc = mvcc_compact(w, rev);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    return rc;
}

static inline Etcdserverpb__RangeResponse *range_all(struct mvcc_store *s,
                                                     struct keel_arena *a,
                                                     int64_t rev)
{
    static const uint8_t zero = 0;
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *r = NULL;
    q.key = bin(&zero, 1);
    q.range_end = bin(&zero, 1);
    q.revision = rev;
    assert_int_equal(mvcc_range(s, &q, a, &r), 0);
    return r;
}

#endif
