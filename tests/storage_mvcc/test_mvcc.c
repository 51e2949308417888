/*
 * Unit tests of the MVCC store: revisions, versions and tombstones as etcd,
 * Range options on hand-made data, long keys (600 B, 100 KiB, 1.5 MiB)
 * among short ones, persistence and idempotent re-apply, events since a
 * revision, hashes, txn semantics and error cases, leases, plain tables,
 * a full map (KEEL_ENOSPACE) and compaction edge cases.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <lmdb.h>

#include "mvcc_test_util.h"

struct fx
{
    struct tdir t;
    struct mvcc_store *s;
    struct keel_arena a;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tdir_init(&f->t);
    f->s = open_store(f->t.db, 0);
    keel_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mvcc_close(f->s);
    keel_arena_free(&f->a);
    rm_rf(f->t.dir);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    mvcc_close(f->s);
    f->s = open_store(f->t.db, 0);
}

static Etcdserverpb__RangeResponse *get(struct fx *f, const char *k, int64_t rev)
{
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *r = NULL;
    q.key = str(k);
    q.revision = rev;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    return r;
}

static void assert_kv(const Mvccpb__KeyValue *kv,
                      const char *k,
                      const char *v,
                      int64_t create,
                      int64_t mod,
                      int64_t ver)
{
    assert_non_null(kv);
    assert_int_equal(kv->key.len, strlen(k));
    assert_memory_equal(kv->key.data, k, strlen(k));
    assert_int_equal(kv->value.len, strlen(v));
    if (*v) {
        assert_memory_equal(kv->value.data, v, strlen(v));
    }
    assert_int_equal(kv->create_revision, create);
    assert_int_equal(kv->mod_revision, mod);
    assert_int_equal(kv->version, ver);
}

/* ---- revisions ------------------------------------------------------------- */

static void test_mvcc_revisions_as_etcd(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__PutResponse *pr;
    Etcdserverpb__DeleteRangeResponse *dr;
    Etcdserverpb__RangeResponse *r;

    assert_int_equal(mvcc_revision(f->s), 1);
    assert_int_equal(mvcc_compact_revision(f->s), -1);
    assert_int_equal(put1(f->s, &f->a, str("foo"), str("a"), 0, &pr), 0);
    assert_int_equal(pr->header->revision, 2);
    assert_null(pr->prev_kv);
    assert_int_equal(put1(f->s, &f->a, str("foo"), str("b"), 0, &pr), 0);
    assert_int_equal(pr->header->revision, 3);
    assert_kv(pr->prev_kv, "foo", "a", 2, 2, 1);
    r = get(f, "foo", 0);
    assert_int_equal(r->header->revision, 3);
    assert_int_equal(r->count, 1);
    assert_kv(r->kvs[0], "foo", "b", 2, 3, 2);
    /* delete: tombstone; the next put starts a new generation */
    assert_int_equal(del1(f->s, &f->a, str("foo"), bin(NULL, 0), &dr), 0);
    assert_int_equal(dr->deleted, 1);
    assert_int_equal(dr->header->revision, 4);
    assert_kv(dr->prev_kvs[0], "foo", "b", 2, 3, 2);
    assert_int_equal(get(f, "foo", 0)->count, 0);
    assert_int_equal(put1(f->s, &f->a, str("foo"), str("c"), 0, &pr), 0);
    assert_int_equal(pr->header->revision, 5);
    assert_null(pr->prev_kv);
    assert_kv(get(f, "foo", 0)->kvs[0], "foo", "c", 5, 5, 1);
    /* history */
    assert_kv(get(f, "foo", 2)->kvs[0], "foo", "a", 2, 2, 1);
    assert_kv(get(f, "foo", 3)->kvs[0], "foo", "b", 2, 3, 2);
    assert_int_equal(get(f, "foo", 4)->count, 0);
    assert_int_equal(get(f, "foo", 1)->count, 0);
    /* deleting nothing does not bump the revision */
    assert_int_equal(del1(f->s, &f->a, str("nope"), bin(NULL, 0), &dr), 0);
    assert_int_equal(dr->deleted, 0);
    assert_int_equal(dr->header->revision, 5);
    assert_int_equal(mvcc_revision(f->s), 5);
    keel_arena_reset(&f->a);
}

static void test_mvcc_range_errors(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *r = NULL;

    for (int i = 0; i < 5; i++) {
        assert_int_equal(put1(f->s, &f->a, str("k"), str("v"), 0, NULL), 0);
    }
    q.key = str("k");
    q.revision = 7;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), KEEL_EFUTUREREV);
    assert_non_null(strstr(mvcc_errmsg(f->s), "current is 6"));
    assert_int_equal(compact1(f->s, 4), 0);
    q.revision = 3;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), KEEL_ECOMPACTED);
    q.revision = 4; /* the compact revision itself is readable */
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->kvs[0]->mod_revision, 4);
    q.key = bin(NULL, 0);
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), KEEL_EEMPTYKEY);
    /* compaction errors */
    assert_int_equal(compact1(f->s, 4), KEEL_ECOMPACTED);
    assert_int_equal(compact1(f->s, 3), KEEL_ECOMPACTED);
    assert_int_equal(compact1(f->s, 7), KEEL_EFUTUREREV);
    keel_arena_reset(&f->a);
}


/* etcd (apply.go): with a sort target other than KEY and sort order NONE,
 * only the first limit+1 keys (in key order) are sorted. */
static void test_mvcc_range_sort_quirk_and_count(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *r = NULL;
    static const uint8_t zero = 0;

    /* a:v3 (rev 2), b:v2 (3), c:v1 (4), d:v0 (5) */
    assert_int_equal(put1(f->s, &f->a, str("a"), str("v3"), 0, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("b"), str("v2"), 0, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("c"), str("v1"), 0, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("d"), str("v0"), 0, NULL), 0);
    q.key = str("a");
    q.range_end = bin(&zero, 1);
    q.limit = 2;
    q.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    /* first 3 keys a,b,c sorted by value: c(v1), b(v2) */
    assert_int_equal(r->n_kvs, 2);
    assert_int_equal(r->more, 1);
    assert_int_equal(r->count, 4);
    assert_kv(r->kvs[0], "c", "v1", 4, 4, 1);
    assert_kv(r->kvs[1], "b", "v2", 3, 3, 1);
    /* with an explicit order everything is sorted: d(v0), c(v1) */
    q.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_kv(r->kvs[0], "d", "v0", 5, 5, 1);
    assert_kv(r->kvs[1], "c", "v1", 4, 4, 1);
    /* descending by key, keys_only */
    q.sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
    q.sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    q.keys_only = 1;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_kv(r->kvs[0], "d", "", 5, 5, 1);
    assert_kv(r->kvs[1], "c", "", 4, 4, 1);
    /* filters: count stays the total of the range, more is after filters */
    q.keys_only = 0;
    q.sort_order = 0;
    q.min_mod_revision = 4;
    q.limit = 1;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->count, 4);
    assert_int_equal(r->n_kvs, 1);
    assert_int_equal(r->more, 1);
    assert_kv(r->kvs[0], "c", "v1", 4, 4, 1);
    q.limit = 2;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->n_kvs, 2);
    assert_int_equal(r->more, 0);
    /* count_only */
    q.min_mod_revision = 0;
    q.count_only = 1;
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->count, 4);
    assert_int_equal(r->n_kvs, 0);
    assert_int_equal(r->more, 0);
    /* prefix range "a".."c" and an empty range (end <= key) */
    q.count_only = 0;
    q.limit = 0;
    q.range_end = str("c");
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->n_kvs, 2);
    q.key = str("c");
    q.range_end = str("a");
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->count, 0);
    keel_arena_reset(&f->a);
}

/* ---- long keys ------------------------------------------------------------- */

static uint8_t *mkkey(size_t len, char fill, char last)
{
    uint8_t *k = malloc(len);
    memset(k, fill, len);
    k[len - 1] = (uint8_t)last;
    return k;
}

static void test_mvcc_long_keys_order(void **state)
{
    struct fx *f = *state;
    size_t big = is_sanitized() ? 300 * 1024 : 1536 * 1024;
    struct
    {
        uint8_t *k;
        size_t len;
    } keys[8];
    size_t n = 0;
    Etcdserverpb__RangeResponse *r;
    Etcdserverpb__DeleteRangeResponse *dr;
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;

    /* k*N+"x" is N-1 'k's then "x"; the long ones share a 400-byte prefix
     * and differ only past it. */
    keys[n].k = (uint8_t *)strdup("k");
    keys[n++].len = 1;
    keys[n].k = mkkey(400, 'k', 'k');
    keys[n++].len = 400;
    keys[n].k = mkkey(600, 'k', 'a');
    keys[n++].len = 600;
    keys[n].k = mkkey(100 * 1024, 'k', 'b');
    keys[n++].len = 100 * 1024;
    keys[n].k = mkkey(big, 'k', 'c');
    keys[n++].len = big;
    keys[n].k = mkkey(401, 'k', 'z');
    keys[n++].len = 401;
    keys[n].k = (uint8_t *)strdup("kl");
    keys[n++].len = 2;
    keys[n].k = (uint8_t *)strdup("j");
    keys[n++].len = 1;
    /* put them in a scrambled order */
    static const int order[] = {4, 0, 6, 2, 7, 3, 5, 1};
    for (size_t i = 0; i < n; i++) {
        size_t j = (size_t)order[i];
        assert_int_equal(put1(f->s, &f->a, bin(keys[j].k, keys[j].len),
                              bin(&keys[j].len, sizeof(size_t)), 0, NULL),
                         0);
        keel_arena_reset(&f->a);
    }
    /* expected order: j, k, k*400, k*600a, k*100Kb, k*bigc, k*401z, kl */
    static const int want[] = {7, 0, 1, 2, 3, 4, 5, 6};
    for (int pass = 0; pass < 2; pass++) {
        r = range_all(f->s, &f->a, 0);
        assert_int_equal(r->n_kvs, n);
        for (size_t i = 0; i < n; i++) {
            size_t j = (size_t)want[i];
            assert_int_equal(r->kvs[i]->key.len, keys[j].len);
            assert_memory_equal(r->kvs[i]->key.data, keys[j].k, keys[j].len);
        }
        keel_arena_reset(&f->a);
        reopen(f);
    }
    /* point reads of long keys, a range starting inside the long group */
    q.key = bin(keys[3].k, keys[3].len);
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->count, 1);
    assert_int_equal(r->kvs[0]->key.len, keys[3].len);
    q.range_end = bin(keys[5].k, keys[5].len);
    assert_int_equal(mvcc_range(f->s, &q, &f->a, &r), 0);
    assert_int_equal(r->count, 2); /* 100K-b and big-c; not 401-z */
    assert_int_equal(r->kvs[1]->key.len, big);
    /* prefix range "k".."l" holds all but j; delete it, then it is empty */
    assert_int_equal(del1(f->s, &f->a, str("k"), str("l"), &dr), 0);
    assert_int_equal(dr->deleted, n - 1);
    r = range_all(f->s, &f->a, 0);
    assert_int_equal(r->n_kvs, 1);
    /* history still has them */
    r = range_all(f->s, &f->a, mvcc_revision(f->s) - 1);
    assert_int_equal(r->n_kvs, n);
    /* compaction drops their tombstones and index records */
    assert_int_equal(compact1(f->s, mvcc_revision(f->s)), 0);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    {
        uint64_t cnt;
        assert_int_equal(mvcc_revision_count(f->s, &cnt), 0);
        assert_int_equal(cnt, 1);
    }
    r = range_all(f->s, &f->a, 0);
    assert_int_equal(r->n_kvs, 1);
    for (size_t i = 0; i < n; i++) {
        free(keys[i].k);
    }
    keel_arena_reset(&f->a);
}

/* ---- persistence ------------------------------------------------------------ */

static void test_mvcc_reopen_and_reapply(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *r;
    struct mvcc_write *w;

    /* raft entries 1..3 in one batch */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    for (uint64_t idx = 1; idx <= 3; idx++) {
        char k[8];
        snprintf(k, sizeof(k), "k%llu", (unsigned long long)idx);
        assert_true(mvcc_write_should_apply(w, idx));
        q.key = str(k);
        q.value = str("v");
        assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
    }
    assert_int_equal(mvcc_write_commit(w, 3, 7), 0);
    /* a batch that is aborted (crash before commit) leaves nothing */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    q.key = str("lost");
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
    mvcc_write_abort(w);
    reopen(f);
    assert_int_equal(mvcc_consistent_index(f->s), 3);
    assert_int_equal(mvcc_term(f->s), 7);
    assert_int_equal(mvcc_revision(f->s), 4);
    assert_int_equal(get(f, "lost", 0)->count, 0);
    /* the server re-applies entries 2..5: 2 and 3 are skipped */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    for (uint64_t idx = 2; idx <= 5; idx++) {
        char k[8];
        if (!mvcc_write_should_apply(w, idx)) {
            assert_true(idx <= 3);
            continue;
        }
        assert_true(idx > 3);
        snprintf(k, sizeof(k), "k%llu", (unsigned long long)idx);
        q.key = str(k);
        assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
    }
    assert_int_equal(mvcc_write_commit(w, 5, 7), 0);
    assert_int_equal(mvcc_revision(f->s), 6);
    assert_int_equal(range_all(f->s, &f->a, 0)->count, 5);
    /* consistent_index never goes back */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_write_commit(w, 4, 7), KEEL_EINVAL);
    assert_int_equal(mvcc_consistent_index(f->s), 5);
    /* only one batch at a time */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    {
        struct mvcc_write *w2;
        int done;
        assert_int_equal(mvcc_write_begin(f->s, &w2), KEEL_EBUSY);
        assert_int_equal(mvcc_compact_step(f->s, 10, &done), KEEL_EBUSY);
        assert_int_equal(mvcc_set_map_size(f->s, 1 << 30), KEEL_EBUSY);
    }
    mvcc_write_abort(w);
    keel_arena_reset(&f->a);
}

/* ---- events ------------------------------------------------------------------ */

static void test_mvcc_events_since(void **state)
{
    struct fx *f = *state;
    static const uint8_t zero = 0;
    ProtobufCBinaryData all = bin(&zero, 1);
    Mvccpb__Event **ev;
    size_t n;
    int64_t next;
    ProtobufCBinaryData pk = str("a"), pe = str("b");

    assert_int_equal(put1(f->s, &f->a, str("a1"), str("x"), 0, NULL), 0); /* 2 */
    assert_int_equal(put1(f->s, &f->a, str("b1"), str("y"), 0, NULL), 0); /* 3 */
    assert_int_equal(put1(f->s, &f->a, str("a1"), str("z"), 0, NULL), 0); /* 4 */
    assert_int_equal(del1(f->s, &f->a, str("a"), str("c"), NULL), 0);      /* 5 */
    assert_int_equal(mvcc_events_since(f->s, 3, &all, &all, 0, 1, &f->a, &ev,
                                       &n, &next),
                     0);
    assert_int_equal(n, 4);
    assert_int_equal(next, 6);
    assert_int_equal(ev[0]->type, MVCCPB__EVENT__EVENT_TYPE__PUT);
    assert_kv(ev[0]->kv, "b1", "y", 3, 3, 1);
    assert_null(ev[0]->prev_kv);
    assert_kv(ev[1]->kv, "a1", "z", 2, 4, 2);
    assert_kv(ev[1]->prev_kv, "a1", "x", 2, 2, 1);
    assert_int_equal(ev[2]->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
    assert_kv(ev[2]->kv, "a1", "", 0, 5, 0);
    assert_kv(ev[2]->prev_kv, "a1", "z", 2, 4, 2);
    assert_kv(ev[3]->kv, "b1", "", 0, 5, 0);
    /* key range [a, b) */
    assert_int_equal(mvcc_events_since(f->s, 1, &pk, &pe, 0, 0, &f->a, &ev, &n,
                                       &next),
                     0);
    assert_int_equal(n, 3);
    assert_null(ev[1]->prev_kv); /* not asked for */
    /* limit 1 from revision 5: the whole revision 5 comes (2 events) */
    assert_int_equal(mvcc_events_since(f->s, 5, &all, &all, 1, 0, &f->a, &ev,
                                       &n, &next),
                     0);
    assert_int_equal(n, 2);
    assert_int_equal(next, 6);
    assert_int_equal(mvcc_events_since(f->s, 2, &all, &all, 1, 0, &f->a, &ev,
                                       &n, &next),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(next, 3);
    /* below the compact revision */
    assert_int_equal(compact1(f->s, 4), 0);
    assert_int_equal(mvcc_events_since(f->s, 3, &all, &all, 0, 0, &f->a, &ev,
                                       &n, &next),
                     KEEL_ECOMPACTED);
    assert_int_equal(mvcc_events_since(f->s, 4, &all, &all, 0, 1, &f->a, &ev,
                                       &n, &next),
                     0);
    assert_int_equal(n, 3);
    keel_arena_reset(&f->a);
}

/* ---- hashes -------------------------------------------------------------------- */

static void feed(struct mvcc_store *s, struct keel_arena *a, uint64_t seed, int n)
{
    uint64_t x = seed;
    for (int i = 0; i < n; i++) {
        char k[16], v[16];
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(k, sizeof(k), "h%02u", (unsigned)(x >> 33) % 20);
        snprintf(v, sizeof(v), "%u", (unsigned)(x >> 40));
        if ((x >> 20) % 5 == 0) {
            assert_int_equal(del1(s, a, str(k), bin(NULL, 0), NULL), 0);
        } else {
            assert_int_equal(put1(s, a, str(k), str(v), 0, NULL), 0);
        }
        keel_arena_reset(a);
    }
}

static void test_mvcc_hash_kv(void **state)
{
    struct fx *f = *state;
    struct tdir t2;
    struct mvcc_store *s2;
    uint32_t h1, h2;
    int64_t c1, c2, r1, r2;

    tdir_init(&t2);
    s2 = open_store(t2.db, 0);
    feed(f->s, &f->a, 1, 200);
    feed(s2, &f->a, 1, 200);
    assert_int_equal(mvcc_revision(f->s), mvcc_revision(s2));
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h1, &c1, &r1), 0);
    assert_int_equal(mvcc_hash_kv(s2, 0, &h2, &c2, &r2), 0);
    assert_int_equal(h1, h2);
    assert_int_equal(c1, -1);
    assert_int_equal(r1, mvcc_revision(f->s));
    /* compacted at the same revision: store 1 physically, store 2 not yet */
    assert_int_equal(compact1(f->s, 100), 0);
    assert_int_equal(compact1(s2, 100), 0);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    for (int64_t rev = 101; rev <= mvcc_revision(f->s); rev += 17) {
        assert_int_equal(mvcc_hash_kv(f->s, rev, &h1, &c1, &r1), 0);
        assert_int_equal(mvcc_hash_kv(s2, rev, &h2, &c2, &r2), 0);
        assert_int_equal(h1, h2);
        assert_int_equal(c1, 100);
    }
    assert_int_equal(mvcc_hash_kv(f->s, 100, &h1, &c1, &r1), KEEL_ECOMPACTED);
    assert_int_equal(c1, 100);
    assert_int_equal(mvcc_hash_kv(f->s, r1 + 1, &h1, &c1, &r1), KEEL_EFUTUREREV);
    assert_int_equal(mvcc_hash(f->s, &h1, &r1), 0);
    assert_int_equal(mvcc_compact_run(s2), 0);
    assert_int_equal(mvcc_hash(s2, &h2, &r2), 0);
    assert_int_equal(h1, h2);
    /* one different write: different hashes from there on */
    assert_int_equal(put1(f->s, &f->a, str("h01"), str("A"), 0, NULL), 0);
    assert_int_equal(put1(s2, &f->a, str("h01"), str("B"), 0, NULL), 0);
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h1, &c1, &r1), 0);
    assert_int_equal(mvcc_hash_kv(s2, 0, &h2, &c2, &r2), 0);
    assert_int_not_equal(h1, h2);
    assert_int_equal(mvcc_hash_kv(f->s, r1 - 1, &h1, &c1, &r1), 0);
    assert_int_equal(mvcc_hash_kv(s2, r2 - 1, &h2, &c2, &r2), 0);
    assert_int_equal(h1, h2);
    assert_int_equal(mvcc_hash(f->s, &h1, &r1), 0);
    assert_int_equal(mvcc_hash(s2, &h2, &r2), 0);
    assert_int_not_equal(h1, h2);
    mvcc_close(s2);
    rm_rf(t2.dir);
    keel_arena_reset(&f->a);
}


/* Golden values from etcd 3.4.23 (/usr/bin/etcd, `etcdctl endpoint hashkv`)
 * after the same history: the `key` table bytes are etcd's byte for byte. */
static void test_mvcc_hash_kv_matches_etcd(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT, *cp = &c;
    Etcdserverpb__TxnResponse *tr;
    struct mvcc_write *w;
    uint32_t h;
    int64_t cr, rev;

    assert_int_equal(put1(f->s, &f->a, str("foo"), str("bar"), 0, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("foo"), str("baz"), 0, NULL), 0);
    assert_int_equal(del1(f->s, &f->a, str("foo"), bin(NULL, 0), NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("a"), str("1"), 0, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("b"), str("2"), 0, NULL), 0);
    /* mod("a") = 4 fails; empty failure branch: no revision */
    c.key = str("a");
    c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
    c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
    c.mod_revision = 4;
    t.n_compare = 1;
    t.compare = &cp;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_txn(w, &t, &f->a, &tr), 0);
    assert_false(tr->succeeded);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(put1(f->s, &f->a, str("a"), str("5"), 0, NULL), 0);
    assert_int_equal(del1(f->s, &f->a, str("a"), str("b"), NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("zz"), str(""), 0, NULL), 0);
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h, &cr, &rev), 0);
    assert_int_equal(rev, 9);
    assert_int_equal(cr, -1);
    assert_int_equal(h, 3873234636u);
    assert_int_equal(compact1(f->s, 5), 0);
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h, &cr, &rev), 0);
    assert_int_equal(h, 2829387995u); /* before physical compaction */
    assert_int_equal(cr, 5);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h, &cr, &rev), 0);
    assert_int_equal(h, 2829387995u); /* and after */
    assert_int_equal(put1(f->s, &f->a, str("a"), str("7"), 0, NULL), 0);
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h, &cr, &rev), 0);
    assert_int_equal(rev, 10);
    assert_int_equal(h, 3066489691u);
    keel_arena_reset(&f->a);
}


/* A compacting copy of a store is a store with the same history. */
static void test_mvcc_copy(void **state)
{
    struct fx *f = *state;
    char path[400];
    struct mvcc_store *c;
    uint32_t h1, h2;
    int64_t cr1, cr2, r1, r2;
    int fd;

    feed(f->s, &f->a, 7, 300);
    assert_int_equal(compact1(f->s, 150), 0);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    snprintf(path, sizeof(path), "%s/copy.db", f->t.dir);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(mvcc_copy_fd(f->s, fd, 1), 0);
    close(fd);
    c = open_store(path, 0);
    assert_int_equal(mvcc_revision(c), mvcc_revision(f->s));
    assert_int_equal(mvcc_compact_revision(c), 150);
    assert_int_equal(mvcc_consistent_index(c), mvcc_consistent_index(f->s));
    assert_int_equal(mvcc_hash_kv(f->s, 0, &h1, &cr1, &r1), 0);
    assert_int_equal(mvcc_hash_kv(c, 0, &h2, &cr2, &r2), 0);
    assert_int_equal(h1, h2);
    assert_int_equal(mvcc_hash_kv(f->s, 200, &h1, &cr1, &r1), 0);
    assert_int_equal(mvcc_hash_kv(c, 200, &h2, &cr2, &r2), 0);
    assert_int_equal(h1, h2);
    assert_int_equal(range_all(c, &f->a, 200)->count,
                     range_all(f->s, &f->a, 200)->count);
    /* sizes: compaction frees pages inside the file, the compacting copy
     * leaves them out */
    {
        uint64_t t1, u1, t2, u2;
        assert_int_equal(mvcc_db_size(f->s, &t1, &u1), 0);
        assert_int_equal(mvcc_db_size(c, &t2, &u2), 0);
        assert_true(u1 > 0 && u1 <= t1);
        assert_true(u1 < t1); /* free pages after compaction */
        assert_true(t2 < t1);
        assert_true(u2 <= t2);
    }
    /* a bad fd is an error with a message */
    assert_int_not_equal(mvcc_copy_fd(f->s, -1, 0), 0);
    assert_non_null(strstr(mvcc_errmsg(f->s), "copy"));
    mvcc_close(c);
    keel_arena_reset(&f->a);
}

/* ---- txn ------------------------------------------------------------------------ */

static Etcdserverpb__RequestOp *op_put(struct keel_arena *a,
                                       const char *k,
                                       const char *v)
{
    Etcdserverpb__RequestOp *op = keel_arena_alloc(a, sizeof(*op));
    Etcdserverpb__PutRequest *p = keel_arena_alloc(a, sizeof(*p));
    etcdserverpb__request_op__init(op);
    etcdserverpb__put_request__init(p);
    p->key = str(k);
    p->value = str(v);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = p;
    return op;
}

static Etcdserverpb__RequestOp *op_del(struct keel_arena *a,
                                       const char *k,
                                       const char *end)
{
    Etcdserverpb__RequestOp *op = keel_arena_alloc(a, sizeof(*op));
    Etcdserverpb__DeleteRangeRequest *d = keel_arena_alloc(a, sizeof(*d));
    etcdserverpb__request_op__init(op);
    etcdserverpb__delete_range_request__init(d);
    d->key = str(k);
    if (end != NULL) {
        d->range_end = *end ? str(end) : bin("", 1);
    }
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op->request_delete_range = d;
    return op;
}

static Etcdserverpb__RequestOp *op_txn(struct keel_arena *a,
                                       Etcdserverpb__TxnRequest *t)
{
    Etcdserverpb__RequestOp *op = keel_arena_alloc(a, sizeof(*op));
    etcdserverpb__request_op__init(op);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
    op->request_txn = t;
    return op;
}

static Etcdserverpb__TxnRequest *txn2(struct keel_arena *a,
                                      Etcdserverpb__RequestOp *s0,
                                      Etcdserverpb__RequestOp *s1,
                                      Etcdserverpb__RequestOp *f0)
{
    Etcdserverpb__TxnRequest *t = keel_arena_alloc(a, sizeof(*t));
    etcdserverpb__txn_request__init(t);
    t->success = keel_arena_alloc(a, 2 * sizeof(*t->success));
    t->failure = keel_arena_alloc(a, sizeof(*t->failure));
    if (s0) {
        t->success[t->n_success++] = s0;
    }
    if (s1) {
        t->success[t->n_success++] = s1;
    }
    if (f0) {
        t->failure[t->n_failure++] = f0;
    }
    return t;
}

static void test_mvcc_txn_duplicate_keys(void **state)
{
    struct fx *f = *state;
    struct keel_arena *a = &f->a;

    /* etcd v3rpc/key.go checkIntervals cases */
    assert_int_equal(mvcc_txn_check(txn2(a, op_put(a, "a", "1"),
                                         op_put(a, "a", "2"), NULL)),
                     KEEL_EDUPLICATEKEY);
    assert_int_equal(mvcc_txn_check(txn2(a, op_put(a, "a", "1"),
                                         op_put(a, "b", "2"), NULL)),
                     0);
    /* success and failure branches exclude each other */
    assert_int_equal(mvcc_txn_check(txn2(a, op_put(a, "a", "1"), NULL,
                                         op_put(a, "a", "2"))),
                     0);
    /* put inside a deleted range, either order */
    assert_int_equal(mvcc_txn_check(txn2(a, op_del(a, "a", "c"),
                                         op_put(a, "b", "2"), NULL)),
                     KEEL_EDUPLICATEKEY);
    assert_int_equal(mvcc_txn_check(txn2(a, op_put(a, "b", "2"),
                                         op_del(a, "b", NULL), NULL)),
                     KEEL_EDUPLICATEKEY);
    assert_int_equal(mvcc_txn_check(txn2(a, op_put(a, "c", "2"),
                                         op_del(a, "a", "c"), NULL)),
                     0);
    /* etcd's quirk: a from-key delete ("\0") covers nothing */
    assert_int_equal(mvcc_txn_check(txn2(a, op_put(a, "b", "2"),
                                         op_del(a, "a", ""), NULL)),
                     0);
    /* deletes may overlap deletes */
    assert_int_equal(mvcc_txn_check(txn2(a, op_del(a, "a", "z"),
                                         op_del(a, "b", NULL), NULL)),
                     0);
    /* nested: same key in both branches of a nested txn is fine ... */
    {
        Etcdserverpb__TxnRequest *in =
            txn2(a, op_put(a, "k", "1"), NULL, op_put(a, "k", "2"));
        assert_int_equal(mvcc_txn_check(txn2(a, op_txn(a, in), NULL, NULL)), 0);
        /* ... but not with a put of the outer level */
        assert_int_equal(mvcc_txn_check(txn2(a, op_txn(a, in),
                                             op_put(a, "k", "3"), NULL)),
                         KEEL_EDUPLICATEKEY);
        /* nor under an outer delete */
        assert_int_equal(mvcc_txn_check(txn2(a, op_txn(a, in),
                                             op_del(a, "a", "z"), NULL)),
                         KEEL_EDUPLICATEKEY);
        /* a nested delete against an outer put */
        assert_int_equal(
            mvcc_txn_check(txn2(a, op_txn(a, txn2(a, op_del(a, "k", NULL),
                                                  NULL, NULL)),
                                op_put(a, "k", "3"), NULL)),
            KEEL_EDUPLICATEKEY);
        /* two nested txns putting the same key */
        assert_int_equal(
            mvcc_txn_check(txn2(a, op_txn(a, in), op_txn(a, in), NULL)),
            KEEL_EDUPLICATEKEY);
    }
    keel_arena_reset(a);
}


/* etcd lets a txn put a key and delete it with a from-key DeleteRange (its
 * duplicate check ignores "\0" range ends). The watch events then carry
 * etcd's prev_kv: the key at revision - 1, and none for a put that creates
 * the key (v3rpc/watch.go). The DeleteRange response sees the txn's put. */
static void test_mvcc_events_put_and_delete_in_one_txn(void **state)
{
    struct fx *f = *state;
    struct keel_arena *a = &f->a;
    Etcdserverpb__TxnResponse *r;
    struct mvcc_write *w;
    Mvccpb__Event **ev;
    size_t n;
    static const uint8_t zero = 0;
    ProtobufCBinaryData all = bin(&zero, 1);
    Etcdserverpb__TxnRequest *t;

    assert_int_equal(put1(f->s, a, str("x"), str("old"), 0, NULL), 0); /* 2 */
    /* put y, then delete everything from "x" on: x and y go */
    t = txn2(a, op_put(a, "y", "new"), op_del(a, "x", ""), NULL);
    t->success[1]->request_delete_range->prev_kv = 1;
    assert_int_equal(mvcc_txn_check(t), 0);
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_txn(w, t, a, &r), 0);
    assert_int_equal(r->responses[1]->response_delete_range->deleted, 2);
    assert_kv(r->responses[1]->response_delete_range->prev_kvs[1], "y", "new",
              3, 3, 1);
    mvcc_write_events(w, &ev, &n);
    assert_int_equal(n, 3);
    assert_null(ev[0]->prev_kv);                    /* put y: a create */
    assert_kv(ev[1]->prev_kv, "x", "old", 2, 2, 1); /* delete x */
    assert_null(ev[2]->prev_kv);                    /* delete y: absent at 2 */
    /* delete from "x" on, then put x again: a create, no prev_kv */
    t = txn2(a, op_del(a, "a", ""), op_put(a, "x", "again"), NULL);
    assert_int_equal(mvcc_txn(w, t, a, &r), 0);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(mvcc_events_since(f->s, 3, &all, &all, 0, 1, a, &ev, &n,
                                       &(int64_t){0}),
                     0);
    assert_int_equal(n, 4);
    assert_null(ev[0]->prev_kv);
    assert_kv(ev[1]->prev_kv, "x", "old", 2, 2, 1);
    assert_null(ev[2]->prev_kv);
    assert_kv(ev[3]->kv, "x", "again", 4, 4, 1);
    assert_null(ev[3]->prev_kv);
    keel_arena_reset(a);
}

static void test_mvcc_txn_semantics(void **state)
{
    struct fx *f = *state;
    struct keel_arena *a = &f->a;
    Etcdserverpb__TxnResponse *r = NULL;
    Etcdserverpb__TxnRequest *t;
    Etcdserverpb__Compare c = ETCDSERVERPB__COMPARE__INIT, *cp = &c;
    struct mvcc_write *w;

    assert_int_equal(put1(f->s, a, str("x"), str("1"), 0, NULL), 0); /* rev 2 */
    /* value compare on a missing key is false, even NOT_EQUAL */
    c.key = str("missing");
    c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
    c.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
    c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
    c.value = str("zz");
    t = txn2(a, op_put(a, "y", "s"), NULL, op_put(a, "y", "f"));
    t->compare = &cp;
    t->n_compare = 1;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_txn(w, t, a, &r), 0);
    assert_false(r->succeeded);
    assert_int_equal(r->header->revision, 3);
    /* version of a missing key is 0: create-if-absent */
    c.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
    c.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
    c.version = 0;
    c.key = str("z");
    t = txn2(a, op_put(a, "z", "new"), op_del(a, "x", NULL), NULL);
    t->compare = &cp;
    t->n_compare = 1;
    assert_int_equal(mvcc_txn(w, t, a, &r), 0);
    assert_true(r->succeeded);
    assert_int_equal(r->header->revision, 4);
    assert_int_equal(r->n_responses, 2);
    assert_int_equal(r->responses[0]->response_put->header->revision, 4);
    assert_int_equal(r->responses[1]->response_delete_range->deleted, 1);
    {
        Mvccpb__Event **ev;
        size_t n;
        mvcc_write_events(w, &ev, &n);
        assert_int_equal(n, 2);
        assert_int_equal(ev[0]->kv->mod_revision, 4);
        assert_int_equal(ev[1]->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
    }
    /* again: the compare fails now, the failure branch is empty: no revision */
    assert_int_equal(mvcc_txn(w, t, a, &r), 0);
    assert_false(r->succeeded);
    assert_int_equal(r->n_responses, 0);
    assert_int_equal(r->header->revision, 4);
    /* errors before any write: ignore_value on a missing key, unknown lease;
     * the txn has no effect and the batch goes on */
    t = txn2(a, op_put(a, "p", "1"), op_put(a, "q", ""), NULL);
    t->success[1]->request_put->ignore_value = 1;
    assert_int_equal(mvcc_txn(w, t, a, &r), KEEL_EKEYNOTFOUND);
    t = txn2(a, op_put(a, "p", "1"), op_put(a, "q", "2"), NULL);
    t->success[1]->request_put->lease = 42;
    assert_int_equal(mvcc_txn(w, t, a, &r), KEEL_ELEASENOTFOUND);
    {
        Etcdserverpb__RequestOp rop = ETCDSERVERPB__REQUEST_OP__INIT;
        Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
        rq.key = str("p");
        rq.revision = 99;
        rop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        rop.request_range = &rq;
        t = txn2(a, op_put(a, "p", "1"), &rop, NULL);
        assert_int_equal(mvcc_txn(w, t, a, &r), KEEL_EFUTUREREV);
    }
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(mvcc_revision(f->s), 4);
    assert_int_equal(get(f, "p", 0)->count, 0);
    assert_int_equal(get(f, "z", 0)->count, 1);
    assert_int_equal(get(f, "x", 0)->count, 0);
    /* read-only txn from a read txn; a write in it is refused */
    {
        Etcdserverpb__RequestOp rop = ETCDSERVERPB__REQUEST_OP__INIT;
        Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
        rq.key = str("z");
        rop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        rop.request_range = &rq;
        t = txn2(a, &rop, NULL, NULL);
        assert_int_equal(mvcc_txn_read(f->s, t, a, &r), 0);
        assert_true(r->succeeded);
        assert_int_equal(r->responses[0]->response_range->count, 1);
        t = txn2(a, &rop, NULL, op_put(a, "w", "1"));
        assert_int_equal(mvcc_txn_read(f->s, t, a, &r), KEEL_EINVAL);
    }
    keel_arena_reset(a);
}

static void test_mvcc_put_errors(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *r;
    struct mvcc_write *w;

    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    q.key = str("k");
    q.ignore_value = 1;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_EKEYNOTFOUND);
    q.ignore_value = 0;
    q.ignore_lease = 1;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_EKEYNOTFOUND);
    q.lease = 5;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_ELEASEPROVIDED);
    q.ignore_lease = 0;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_ELEASENOTFOUND);
    assert_non_null(strstr(mvcc_errmsg(f->s), "lease 5 not found"));
    q.lease = 0;
    q.ignore_value = 1;
    q.value = str("v");
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_EVALUEPROVIDED);
    q.key = bin(NULL, 0);
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_EEMPTYKEY);
    /* the batch is still good */
    q.key = str("k");
    q.ignore_value = 0;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
    assert_int_equal(lease_store_grant(w, 9, 30), 0);
    q.lease = 9;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
    /* ignore_value keeps the value, ignore_lease the lease */
    q.value = bin(NULL, 0);
    q.ignore_value = 1;
    q.lease = 0;
    q.ignore_lease = 1;
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    {
        Etcdserverpb__RangeResponse *g = get(f, "k", 0);
        assert_kv(g->kvs[0], "k", "v", 2, 4, 3);
        assert_int_equal(g->kvs[0]->lease, 9);
    }
    keel_arena_reset(&f->a);
}

/* ---- leases --------------------------------------------------------------------- */

static void test_mvcc_lease_revoke(void **state)
{
    struct fx *f = *state;
    struct mvcc_write *w;
    struct lease_store_lease l, *ls;
    ProtobufCBinaryData *keys;
    size_t n;
    Mvccpb__Event **ev;

    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(lease_store_grant(w, 7, 10), 0);
    assert_int_equal(lease_store_grant(w, 8, 20), 0);
    assert_int_equal(lease_store_grant(w, 7, 10), KEEL_ELEASEEXIST);
    assert_int_equal(lease_store_grant(w, 0, 10), KEEL_EINVAL);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(put1(f->s, &f->a, str("l/b"), str("1"), 7, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("l/a"), str("1"), 7, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("l/c"), str("1"), 8, NULL), 0);
    assert_int_equal(put1(f->s, &f->a, str("l/d"), str("1"), 7, NULL), 0);
    /* moving a key to another lease or none detaches it */
    assert_int_equal(put1(f->s, &f->a, str("l/d"), str("2"), 0, NULL), 0);
    assert_int_equal(lease_store_keys(f->s, NULL, 7, &f->a, &keys, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(keys[0].data, "l/a", 3);
    assert_memory_equal(keys[1].data, "l/b", 3);
    assert_int_equal(lease_store_list(f->s, NULL, &f->a, &ls, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ls[0].id, 7);
    assert_int_equal(ls[1].ttl, 20);
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(lease_store_checkpoint(w, 8, 15), 0);
    assert_int_equal(lease_store_checkpoint(w, 99, 15), KEEL_ELEASENOTFOUND);
    assert_int_equal(lease_store_revoke(w, 7, &f->a), 0);
    mvcc_write_events(w, &ev, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ev[0]->kv->mod_revision, 7);
    assert_int_equal(ev[1]->kv->mod_revision, 7);
    assert_int_equal(lease_store_get(f->s, w, 7, &l), KEEL_ELEASENOTFOUND);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(mvcc_revision(f->s), 7);
    assert_int_equal(range_all(f->s, &f->a, 0)->count, 2);
    reopen(f);
    assert_int_equal(lease_store_get(f->s, NULL, 8, &l), 0);
    assert_int_equal(l.ttl, 20);
    assert_int_equal(l.remaining_ttl, 15);
    /* revoking a lease without keys writes no revision */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(lease_store_grant(w, 11, 5), 0);
    assert_int_equal(lease_store_revoke(w, 11, &f->a), 0);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(mvcc_revision(f->s), 7);
    keel_arena_reset(&f->a);
}

/* ---- tables ---------------------------------------------------------------------- */

static int count_cb(void *arg, const void *k, size_t kl, const void *v, size_t vl)
{
    (void)k;
    (void)v;
    (void)kl;
    (void)vl;
    ++*(int *)arg;
    return 0;
}

static void test_mvcc_tables(void **state)
{
    struct fx *f = *state;
    struct mvcc_write *w;
    void *v;
    size_t vl;
    int n = 0;

    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_MEMBERS, "m1", 2, "A", 1), 0);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_MEMBERS, "m2", 2, "B", 1), 0);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_AUTH_USERS, "root", 4, "x", 1),
                     0);
    assert_int_equal(mvcc_table_get(f->s, w, MVCC_TABLE_MEMBERS, "m2", 2, &f->a,
                                    &v, &vl),
                     0);
    assert_memory_equal(v, "B", 1);
    /* not visible outside the batch before commit */
    assert_int_equal(mvcc_table_get(f->s, NULL, MVCC_TABLE_MEMBERS, "m2", 2,
                                    &f->a, &v, &vl),
                     KEEL_ENOTFOUND);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_META, "consistent_index", 16,
                                    "x", 1),
                     KEEL_EINVAL);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_META, "", 0, "x", 1),
                     KEEL_EINVAL);
    assert_int_equal(mvcc_table_del(w, MVCC_TABLE_MEMBERS, "m3", 2),
                     KEEL_ENOTFOUND);
    assert_int_equal(mvcc_table_del(w, MVCC_TABLE_MEMBERS, "m1", 2), 0);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    reopen(f);
    assert_int_equal(mvcc_table_foreach(f->s, NULL, MVCC_TABLE_MEMBERS,
                                        count_cb, &n),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(mvcc_table_get(f->s, NULL, MVCC_TABLE_AUTH_USERS, "root",
                                    4, &f->a, &v, &vl),
                     0);
    assert_int_equal(vl, 1);
    keel_arena_reset(&f->a);
}

/* ---- full map --------------------------------------------------------------------- */

static void test_mvcc_map_full(void **state)
{
    struct fx *f = *state;
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *r;
    static uint8_t val[64 * 1024];
    struct mvcc_write *w;
    int rc = 0, i;

    mvcc_close(f->s);
    f->s = open_store(f->t.db, 1 << 20);
    assert_int_equal(put1(f->s, &f->a, str("keep"), str("me"), 0, NULL), 0);
    /* a batch that does not fit: KEEL_ENOSPACE, poisoned, nothing written */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    q.value = bin(val, sizeof(val));
    for (i = 0; i < 100 && rc == 0; i++) {
        char k[16];
        snprintf(k, sizeof(k), "big%03d", i);
        q.key = str(k);
        rc = mvcc_put(w, &q, &f->a, &r);
        keel_arena_reset(&f->a);
    }
    assert_int_equal(rc, KEEL_ENOSPACE);
    assert_non_null(strstr(mvcc_errmsg(f->s), "MDB_MAP_FULL"));
    q.key = str("after");
    assert_int_equal(mvcc_put(w, &q, &f->a, &r), KEEL_ENOSPACE);
    assert_int_equal(mvcc_write_commit(w, 1000, 1), KEEL_ENOSPACE);
    assert_int_equal(mvcc_revision(f->s), 2);
    reopen(f);
    assert_int_equal(mvcc_revision(f->s), 2);
    assert_int_equal(range_all(f->s, &f->a, 0)->count, 1);
    /* with a bigger map the same batch applies */
    assert_int_equal(mvcc_set_map_size(f->s, 64 << 20), 0);
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    for (int j = 0; j < i; j++) {
        char k[16];
        snprintf(k, sizeof(k), "big%03d", j);
        q.key = str(k);
        assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
        keel_arena_reset(&f->a);
    }
    assert_int_equal(mvcc_write_commit(w, 1000, 1), 0);
    assert_int_equal(range_all(f->s, &f->a, 0)->count, i + 1);
    keel_arena_reset(&f->a);
}

static void test_mvcc_open_errors(void **state)
{
    struct fx *f = *state;
    struct mvcc_store *s = NULL;
    char err[256];
    char path[400];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/garbage", f->t.dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 5000; i++) {
        fputs("not an lmdb file ", fp);
    }
    fclose(fp);
    assert_int_not_equal(mvcc_open(path, NULL, &s, err, sizeof(err)), 0);
    assert_null(s);
    assert_non_null(strstr(err, "garbage"));
    /* a regular file where a directory is needed */
    snprintf(path, sizeof(path), "%s/garbage/member/db", f->t.dir);
    assert_int_not_equal(mvcc_open(path, NULL, &s, err, sizeof(err)), 0);
    assert_non_null(strstr(err, "parent"));
}


/* A store written with another layout is refused with a message, not
 * misread. */
static void test_mvcc_layout_mismatch(void **state)
{
    struct fx *f = *state;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    uint8_t v[8] = {0, 0, 0, 0, 0, 0, 0, 99};
    MDB_val k = {11, "keel_layout"}, mv = {8, v};
    struct mvcc_store *s = NULL;
    char err[256];

    mvcc_close(f->s);
    f->s = NULL;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, f->t.db, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
    assert_int_equal(mdb_put(txn, dbi, &k, &mv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    assert_int_equal(mvcc_open(f->t.db, NULL, &s, err, sizeof(err)),
                     KEEL_ECORRUPT);
    assert_null(s);
    assert_non_null(strstr(err, "layout 99"));
    /* teardown closes f->s: NULL is fine */
}

/* ---- compaction edge cases ---------------------------------------------------------- */

static void test_mvcc_compaction_edges(void **state)
{
    struct fx *f = *state;
    uint64_t n;
    int done;

    assert_int_equal(put1(f->s, &f->a, str("a"), str("1"), 0, NULL), 0); /* 2 */
    assert_int_equal(put1(f->s, &f->a, str("a"), str("2"), 0, NULL), 0); /* 3 */
    assert_int_equal(del1(f->s, &f->a, str("a"), bin(NULL, 0), NULL), 0); /* 4 */
    assert_int_equal(put1(f->s, &f->a, str("a"), str("3"), 0, NULL), 0); /* 5 */
    assert_int_equal(put1(f->s, &f->a, str("b"), str("1"), 0, NULL), 0); /* 6 */
    assert_int_equal(del1(f->s, &f->a, str("b"), bin(NULL, 0), NULL), 0); /* 7 */
    assert_int_equal(put1(f->s, &f->a, str("c"), str("1"), 0, NULL), 0); /* 8 */
    /* at a tombstone revision: a's tombstone and older revisions go */
    assert_int_equal(compact1(f->s, 4), 0);
    /* logical at once, physical later */
    assert_int_equal(mvcc_revision_count(f->s, &n), 0);
    assert_int_equal(n, 7);
    assert_int_equal(mvcc_compact_pending(f->s), 1);
    assert_int_equal(mvcc_compact_step(f->s, 1, &done), 0);
    assert_int_equal(done, 0);
    reopen(f); /* resumes after a restart */
    assert_int_equal(mvcc_compact_revision(f->s), 4);
    assert_int_equal(mvcc_compact_pending(f->s), 1);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    assert_int_equal(mvcc_compact_pending(f->s), 0);
    assert_int_equal(mvcc_revision_count(f->s, &n), 0);
    assert_int_equal(n, 4); /* 5, 6, 7, 8 */
    assert_int_equal(get(f, "a", 4)->count, 0);
    assert_kv(get(f, "a", 5)->kvs[0], "a", "3", 5, 5, 1);
    /* at the current revision: b's tombstone goes with its key */
    assert_int_equal(compact1(f->s, 8), 0);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    assert_int_equal(mvcc_revision_count(f->s, &n), 0);
    assert_int_equal(n, 2); /* a@5, c@8 */
    assert_int_equal(range_all(f->s, &f->a, 8)->count, 2);
    assert_int_equal(mvcc_compact_step(f->s, 1, &done), 0);
    assert_int_equal(done, 1);
    /* a later put supersedes a revision kept by the earlier compaction */
    assert_int_equal(put1(f->s, &f->a, str("a"), str("4"), 0, NULL), 0); /* 9 */
    assert_int_equal(compact1(f->s, 9), 0);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    assert_int_equal(mvcc_revision_count(f->s, &n), 0);
    assert_int_equal(n, 2); /* a@9, c@8 */
    assert_kv(get(f, "a", 0)->kvs[0], "a", "4", 5, 9, 2);
    keel_arena_reset(&f->a);
}


/* ---- crash and concurrency ---------------------------------------------------------- */

/* A writer process killed with SIGKILL at a random point: every batch whose
 * commit returned before the kill is in the store when it is reopened (the
 * env is MDB_NOSYNC, so this covers process crashes; machine crashes are the
 * WAL's job). */
static void test_mvcc_kill_keeps_acknowledged(void **state)
{
    struct fx *f = *state;
    int fds[2];
    pid_t pid;
    uint64_t last = 0, got;
    int64_t want_batches = is_sanitized() ? 50 : 300;

    mvcc_close(f->s);
    f->s = NULL;
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct mvcc_store *s = NULL;
        struct keel_arena a;
        close(fds[0]);
        keel_arena_init(&a, 0);
        if (mvcc_open(f->t.db, NULL, &s, NULL, 0) != 0) {
            _exit(1);
        }
        for (uint64_t i = 1;; i++) {
            Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
            Etcdserverpb__PutResponse *r;
            struct mvcc_write *w;
            char k[32], v[32];
            if (mvcc_write_begin(s, &w) != 0) {
                _exit(1);
            }
            for (int j = 0; j < 3; j++) {
                snprintf(k, sizeof(k), "c%llu/%d", (unsigned long long)i, j);
                snprintf(v, sizeof(v), "%llu", (unsigned long long)i);
                q.key = str(k);
                q.value = str(v);
                if (mvcc_put(w, &q, &a, &r) != 0) {
                    _exit(1);
                }
            }
            if (mvcc_write_commit(w, i, 1) != 0) {
                _exit(1);
            }
            keel_arena_reset(&a);
            if (write(fds[1], &i, sizeof(i)) != sizeof(i)) {
                _exit(1);
            }
        }
    }
    close(fds[1]);
    while (read(fds[0], &got, sizeof(got)) == sizeof(got)) {
        last = got;
        if ((int64_t)got >= want_batches) {
            break;
        }
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    while (read(fds[0], &got, sizeof(got)) == sizeof(got)) {
        last = got;
    }
    close(fds[0]);
    assert_true((int64_t)last >= want_batches);
    f->s = open_store(f->t.db, 0);
    assert_true(mvcc_consistent_index(f->s) >= last);
    /* every committed batch, whole: 3 puts, revisions 2.. */
    assert_int_equal(mvcc_revision(f->s),
                     1 + 3 * (int64_t)mvcc_consistent_index(f->s));
    assert_int_equal(range_all(f->s, &f->a, 0)->count,
                     3 * (int64_t)mvcc_consistent_index(f->s));
    keel_arena_reset(&f->a);
}


/* The disk fills up (RLIMIT_FSIZE: writes past the limit fail with EFBIG)
 * in a writer process: commits start failing with an error naming the
 * failure, and the store reopens with exactly the batches whose commit
 * returned 0. */
static void test_mvcc_failed_commit_keeps_acknowledged(void **state)
{
    struct fx *f = *state;
    int fds[2];
    pid_t pid;
    int64_t report[3] = {0, 0, 0}; /* last acked index, error, 0 */
    struct stat st;
    uint64_t base;

    assert_int_equal(put1(f->s, &f->a, str("first"), str("1"), 0, NULL), 0);
    base = test_ci + 1; /* raft indexes go on from the last batch */
    mvcc_close(f->s);
    f->s = NULL;
    assert_int_equal(stat(f->t.db, &st), 0);
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl;
        struct mvcc_store *s = NULL;
        struct keel_arena a;
        static uint8_t val[8192];
        int64_t out[3] = {0, 0, 0};
        int rc = 0;

        close(fds[0]);
        signal(SIGXFSZ, SIG_IGN);
        keel_arena_init(&a, 0);
        if (mvcc_open(f->t.db, NULL, &s, NULL, 0) != 0) {
            _exit(1);
        }
        rl.rlim_cur = rl.rlim_max = (rlim_t)st.st_size + 256 * 1024;
        setrlimit(RLIMIT_FSIZE, &rl);
        for (uint64_t i = base; rc == 0 && i < base + 1000; i++) {
            Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
            Etcdserverpb__PutResponse *r;
            struct mvcc_write *w;
            char k[32];
            if (mvcc_write_begin(s, &w) != 0) {
                _exit(1);
            }
            snprintf(k, sizeof(k), "f%llu", (unsigned long long)i);
            q.key = str(k);
            q.value = bin(val, sizeof(val));
            if (mvcc_put(w, &q, &a, &r) != 0) {
                _exit(1);
            }
            rc = mvcc_write_commit(w, i, 1);
            if (rc == 0) {
                out[0] = (int64_t)i;
            } else {
                out[1] = rc;
                out[2] = strstr(mvcc_errmsg(s), "commit") != NULL;
            }
            keel_arena_reset(&a);
        }
        if (write(fds[1], out, sizeof(out)) != sizeof(out)) {
            _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    assert_int_equal(read(fds[0], report, sizeof(report)), sizeof(report));
    close(fds[0]);
    waitpid(pid, NULL, 0);
    assert_true(report[0] >= (int64_t)base); /* some batches went through */
    assert_int_equal(report[1], -EFBIG);
    assert_int_equal(report[2], 1);
    f->s = open_store(f->t.db, 0);
    assert_int_equal(mvcc_consistent_index(f->s), (uint64_t)report[0]);
    assert_int_equal(range_all(f->s, &f->a, 0)->count,
                     1 + report[0] - (int64_t)base + 1);
    /* and it is writable again */
    test_ci = (uint64_t)report[0];
    assert_int_equal(put1(f->s, &f->a, str("after"), str("1"), 0, NULL), 0);
    keel_arena_reset(&f->a);
}

struct reader_arg
{
    struct mvcc_store *s;
    atomic_int *stop;
    atomic_int did_read; /* set after the first read: the writer waits */
    int64_t reads, errors; /* this reader's own */
};

/* Readers on other threads see whole batches only, and revisions that
 * never go back. */
static void *reader_main(void *p)
{
    struct reader_arg *ra = p;
    struct keel_arena a;
    int64_t last_rev = 0;

    keel_arena_init(&a, 0);
    while (!atomic_load(ra->stop)) {
        static const uint8_t zero = 0;
        Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
        Etcdserverpb__RangeResponse *r = NULL;
        q.key = bin(&zero, 1);
        q.range_end = bin(&zero, 1);
        if (mvcc_range(ra->s, &q, &a, &r) != 0 ||
            r->header->revision < last_rev ||
            (r->count != 0 && r->count != 10)) {
            ra->errors++;
        } else {
            for (size_t i = 1; i < r->n_kvs; i++) {
                if (r->kvs[i]->value.len != r->kvs[0]->value.len ||
                    memcmp(r->kvs[i]->value.data, r->kvs[0]->value.data,
                           r->kvs[0]->value.len) != 0) {
                    ra->errors++;
                }
            }
            last_rev = r->header->revision;
        }
        ra->reads++;
        atomic_store(&ra->did_read, 1);
        keel_arena_reset(&a);
    }
    keel_arena_free(&a);
    return NULL;
}

static void test_mvcc_concurrent_readers(void **state)
{
    struct fx *f = *state;
    atomic_int stop;
    struct reader_arg ra[2] = {{.s = f->s, .stop = &stop},
                               {.s = f->s, .stop = &stop}};
    pthread_t th[2];
    int batches = is_sanitized() ? 100 : 500;

    atomic_init(&stop, 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &ra[i]), 0);
    }
    /* Keep writing until both readers ran at least once: on a loaded
     * 2-core machine under ASan a reader thread was not scheduled before
     * 100 batches were done (bounded: 1000x more batches at most). */
    for (int b = 0;
         b < batches || ((!atomic_load(&ra[0].did_read) ||
                          !atomic_load(&ra[1].did_read)) &&
                         b < batches * 1000);
         b++) {
        Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
        Etcdserverpb__PutResponse *r;
        struct mvcc_write *w;
        char k[16], v[16];
        assert_int_equal(mvcc_write_begin(f->s, &w), 0);
        snprintf(v, sizeof(v), "%d", b);
        for (int i = 0; i < 10; i++) {
            snprintf(k, sizeof(k), "r%d", i);
            q.key = str(k);
            q.value = str(v);
            assert_int_equal(mvcc_put(w, &q, &f->a, &r), 0);
        }
        assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
        keel_arena_reset(&f->a);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ra[i].errors, 0);
        assert_true(ra[i].reads > 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mvcc_revisions_as_etcd, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_range_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_range_sort_quirk_and_count,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_long_keys_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_reopen_and_reapply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_events_since, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_hash_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_hash_kv_matches_etcd, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_txn_duplicate_keys, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_txn_semantics, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_mvcc_events_put_and_delete_in_one_txn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_put_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_lease_revoke, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_open_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_layout_mismatch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_compaction_edges, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_kill_keeps_acknowledged,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_concurrent_readers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_mvcc_failed_commit_keeps_acknowledged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
