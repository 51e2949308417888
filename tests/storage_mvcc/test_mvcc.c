/*
 * Unit tests of the MVCC store: revisions, versions and tombstones as etcd,
 * Range options on hand-made data, long keys (600 B, 100 KiB, 1.5 MiB)
 * among short ones, persistence and idempotent re-apply, events since a
 * revision, hashes, txn semantics and error cases, leases, plain tables,
 * a full map (KEEL_ENOSPACE) and compaction edge cases.
 */
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

static inline void reopen(struct fx *f)
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mvcc_revisions_as_etcd, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_range_errors, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
