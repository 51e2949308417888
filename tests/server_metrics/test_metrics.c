/*
 * server/metrics: the exposition writer prints what etcd's client_golang
 * prints (values in Go's shortest float format, escaped HELP and label
 * values, cumulative histograms), the registry orders families by name and
 * leaves out empty ones, and mvcc operations are counted as etcd's
 * metricsTxnWrite counts them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keel_err.h"
#include "metrics.h"

/* ---- helpers ------------------------------------------------------------ */

static const char *fmt(double v)
{
    static char buf[64];
    metrics_format_value(v, buf, sizeof buf);
    return buf;
}

static void no_samples(struct metrics_writer *w,
                       const struct metrics_family *f,
                       void *data)
{
    (void)w;
    (void)f;
    (void)data;
}

/* ---- tests -------------------------------------------------------------- */

/* Expected strings are Go's strconv.FormatFloat(v, 'g', -1, 64), as seen in
 * etcd 3.4's /metrics. */
static void test_metrics_format_like_go(void **state)
{
    (void)state;
    assert_string_equal(fmt(0), "0");
    assert_string_equal(fmt(1), "1");
    assert_string_equal(fmt(-1), "-1");
    assert_string_equal(fmt(20480), "20480");
    assert_string_equal(fmt(999999), "999999");
    assert_string_equal(fmt(1e6), "1e+06");
    assert_string_equal(fmt(1048576), "1.048576e+06");
    assert_string_equal(fmt(2147483648.0), "2.147483648e+09");
    assert_string_equal(fmt(18446744073709551615.0), "1.8446744073709552e+19");
    assert_string_equal(fmt(0.001), "0.001");
    assert_string_equal(fmt(8.192), "8.192");
    assert_string_equal(fmt(0.0001), "0.0001");
    assert_string_equal(fmt(9.0754e-05), "9.0754e-05");
    assert_string_equal(fmt(0.030961085000000003), "0.030961085000000003");
    assert_string_equal(fmt(1.0 / 0.0), "+Inf");
    assert_string_equal(fmt(-1.0 / 0.0), "-Inf");
    assert_string_equal(fmt(0.0 / 0.0), "NaN");
}

static void test_metrics_sample_escapes_labels(void **state)
{
    (void)state;
    struct metrics_writer w;
    metrics_writer_init(&w);
    struct metrics_label l[2] = {{"a", "x\"y\\z\nw"}, {"b", "plain"}};
    metrics_write_sample(&w, "m", l, 2, 3);
    metrics_write_sample(&w, "n", NULL, 0, 0.5);
    assert_string_equal(w.buf,
                        "m{a=\"x\\\"y\\\\z\\nw\",b=\"plain\"} 3\n"
                        "n 0.5\n");
    assert_int_equal(w.samples, 2);
    metrics_writer_free(&w);
}

static void test_metrics_histogram_cumulative(void **state)
{
    (void)state;
    static const double b[] = {0.001, 0.002};
    struct metrics_histogram h = {.bounds = b, .n_bounds = 2};
    metrics_histogram_observe(&h, 0.0005);
    metrics_histogram_observe(&h, 0.001); /* le is inclusive */
    metrics_histogram_observe(&h, 0.0015);
    metrics_histogram_observe(&h, 5);
    struct metrics_writer w;
    metrics_writer_init(&w);
    metrics_write_histogram(&w, "d", &h);
    assert_string_equal(w.buf,
                        "d_bucket{le=\"0.001\"} 2\n"
                        "d_bucket{le=\"0.002\"} 3\n"
                        "d_bucket{le=\"+Inf\"} 4\n"
                        "d_sum 5.003\n"
                        "d_count 4\n");
    metrics_writer_free(&w);
}

static void test_metrics_registry_sorted_and_skips_empty(void **state)
{
    (void)state;
    struct metrics_registry *r = metrics_registry_new();
    assert_non_null(r);
    uint64_t zz = 7;
    int64_t aa = -2;
    struct metrics_family z = {"zz_total", "Z\\help\nline", METRICS_COUNTER,
                               .u64 = &zz};
    struct metrics_family a = {"aa", "A.", METRICS_GAUGE, .i64 = &aa};
    struct metrics_family e = {"mm", "Empty.", METRICS_GAUGE,
                               .collect = no_samples};
    assert_int_equal(metrics_register(r, &z), 0);
    assert_int_equal(metrics_register(r, &a), 0);
    assert_int_equal(metrics_register(r, &e), 0);
    assert_int_equal(metrics_register(r, &a), KEEL_EEXISTS);
    struct metrics_writer w;
    metrics_writer_init(&w);
    metrics_registry_write(r, &w);
    assert_string_equal(w.buf,
                        "# HELP aa A.\n"
                        "# TYPE aa gauge\n"
                        "aa -2\n"
                        "# HELP zz_total Z\\\\help\\nline\n"
                        "# TYPE zz_total counter\n"
                        "zz_total 7\n");
    metrics_writer_free(&w);
    metrics_registry_free(r);
}

struct counts
{
    uint64_t puts, deletes, txns, ranges;
};

static struct counts snap(void)
{
    struct counts c = {metrics_core.puts, metrics_core.deletes,
                       metrics_core.txns, metrics_core.ranges};
    return c;
}

static void assert_moved(struct counts before,
                         uint64_t puts,
                         uint64_t deletes,
                         uint64_t txns,
                         uint64_t ranges)
{
    struct counts now = snap();
    assert_int_equal(now.puts - before.puts, puts);
    assert_int_equal(now.deletes - before.deletes, deletes);
    assert_int_equal(now.txns - before.txns, txns);
    assert_int_equal(now.ranges - before.ranges, ranges);
}

/* etcd 3.4 (mvcc/metrics_txn.go, etcdserver/apply.go). */
static void test_metrics_counts_ops_as_etcd(void **state)
{
    (void)state;
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_PUT;
    req.put = &put;

    struct counts c = snap();
    metrics_count_applied(&req, NULL, 0, NULL, 0);
    assert_moved(c, 1, 0, 0, 0); /* a plain put */

    put.prev_kv = 1;
    c = snap();
    metrics_count_applied(&req, NULL, 0, NULL, 0);
    assert_moved(c, 1, 0, 1, 1); /* range + put in one txn */

    put.prev_kv = 0;
    put.ignore_value = 1;
    c = snap();
    metrics_count_applied(&req, NULL, KEEL_EKEYNOTFOUND, NULL, 0);
    assert_moved(c, 0, 0, 0, 1); /* the range found nothing */

    /* Txn: 2 compares hold; success: put, delete with prev_kv, range. */
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    Etcdserverpb__Compare *cmps[2] = {&cmp, &cmp};
    Etcdserverpb__PutRequest p2 = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__DeleteRangeRequest d =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.prev_kv = 1;
    Etcdserverpb__RangeRequest rg = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RequestOp ops[3] = {ETCDSERVERPB__REQUEST_OP__INIT,
                                      ETCDSERVERPB__REQUEST_OP__INIT,
                                      ETCDSERVERPB__REQUEST_OP__INIT};
    ops[0].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    ops[0].request_put = &p2;
    ops[1].request_case =
        ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    ops[1].request_delete_range = &d;
    ops[2].request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    ops[2].request_range = &rg;
    Etcdserverpb__RequestOp *opp[3] = {&ops[0], &ops[1], &ops[2]};
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    txn.compare = cmps;
    txn.n_compare = 2;
    txn.success = opp;
    txn.n_success = 3;
    txn.failure = &opp[2];
    txn.n_failure = 1;
    Etcdserverpb__TxnResponse tr = ETCDSERVERPB__TXN_RESPONSE__INIT;
    tr.succeeded = 1;
    req.op_case = KEELPB__REQUEST__OP_TXN;
    req.txn = &txn;
    c = snap();
    metrics_count_applied(&req, &tr.base, 0, NULL, 0);
    /* read txn: 2 compare ranges (txn+1); write txn: range(prev_kv) +
     * range + put + delete (txn+1) */
    assert_moved(c, 1, 1, 2, 4);

    /* The failure branch is read-only: one read txn, 2 compares + 1 range. */
    tr.succeeded = 0;
    c = snap();
    metrics_count_txn_read(&txn, &tr);
    assert_moved(c, 0, 0, 1, 3);

    c = snap();
    metrics_count_range();
    assert_moved(c, 0, 0, 0, 1);
}

static void test_metrics_keys_follow_events(void **state)
{
    (void)state;
    Mvccpb__KeyValue kv1 = MVCCPB__KEY_VALUE__INIT;
    kv1.version = 1;
    kv1.key.len = 3;
    kv1.value.len = 5;
    Mvccpb__KeyValue kv2 = MVCCPB__KEY_VALUE__INIT;
    kv2.version = 4;
    kv2.key.len = 3;
    kv2.value.len = 1;
    Mvccpb__Event put1 = MVCCPB__EVENT__INIT, put2 = MVCCPB__EVENT__INIT;
    put1.kv = &kv1;
    put2.kv = &kv2;
    Mvccpb__Event del = MVCCPB__EVENT__INIT;
    del.type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
    Mvccpb__Event *ev[3] = {&put1, &put2, &del};
    /* A txn that created one key, updated another and deleted a third. */
    Etcdserverpb__TxnRequest txn = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__TxnResponse tr = ETCDSERVERPB__TXN_RESPONSE__INIT;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_TXN;
    req.txn = &txn;
    int64_t keys = metrics_core.keys_delta;
    uint64_t bytes = metrics_core.put_bytes;
    metrics_count_applied(&req, &tr.base, 0, ev, 3);
    assert_int_equal(metrics_core.keys_delta - keys, 0); /* +1 new, -1 */
    assert_int_equal(metrics_core.put_bytes - bytes, 12);

    /* A lease revoke deletes each attached key, in one txn. */
    Mvccpb__Event *dels[2] = {&del, &del};
    req.op_case = KEELPB__REQUEST__OP_LEASE_REVOKE;
    keys = metrics_core.keys_delta;
    struct counts c = snap();
    metrics_count_applied(&req, NULL, 0, dels, 2);
    assert_int_equal(metrics_core.keys_delta - keys, -2);
    assert_moved(c, 0, 2, 1, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_format_like_go),
        cmocka_unit_test(test_metrics_sample_escapes_labels),
        cmocka_unit_test(test_metrics_histogram_cumulative),
        cmocka_unit_test(test_metrics_registry_sorted_and_skips_empty),
        cmocka_unit_test(test_metrics_counts_ops_as_etcd),
        cmocka_unit_test(test_metrics_keys_follow_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
