/*
 * server/metrics: Prometheus metrics with etcd 3.4's names, served as text
 * (exposition format 0.0.4) on GET /metrics of the client port and of every
 * --listen-metrics-urls listener.
 *
 * Two halves:
 *   - instruments updated on hot paths: the process-wide `metrics_core`
 *     (etcd's metrics are package globals too; keel runs one member per
 *     process). Fields written on the loop thread are plain integers;
 *     histograms are atomics because the WAL fsync is timed on the disk
 *     thread. An update is an add, or a few relaxed atomic adds.
 *   - a registry of metric families and the exposition writer. A family
 *     points at an instrument or has a collect callback that reads its
 *     values at scrape time (node status, store revisions, gRPC transport
 *     counters, /proc). Scrapes run on the loop thread.
 *
 * The text matches what etcd's client_golang prints: families sorted by
 * name, "# HELP" (with \\ and \n escaped) and "# TYPE" lines, labels sorted
 * by name with \\, \" and \n escaped in values, values in Go's shortest
 * float format (strconv.FormatFloat(v, 'g', -1, 64)), histograms as
 * cumulative _bucket{le} lines ending at le="+Inf", then _sum and _count.
 */
#ifndef KEEL_METRICS_H
#define KEEL_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keelpb/request.pb-c.h"
#include "mvccpb/kv.pb-c.h"

/* ---- instruments -------------------------------------------------------- */

#define METRICS_MAX_BUCKETS 24

/* A histogram with fixed upper bounds (ascending, +Inf implied). observe()
 * may run on any thread; a scrape reads each bucket once and derives _count
 * from the buckets it read, so the lines it prints agree with each other. */
struct metrics_histogram
{
    const double *bounds;
    size_t n_bounds; /* <= METRICS_MAX_BUCKETS */
    _Atomic uint64_t buckets[METRICS_MAX_BUCKETS + 1]; /* not cumulative */
    _Atomic uint64_t sum_bits; /* the sum, a double's bits */
};

void metrics_histogram_observe(struct metrics_histogram *h, double v);

/* Seconds on a monotonic clock, for timing (any thread). */
double metrics_now(void);

/* The instruments updated where things happen. Loop-thread fields unless
 * marked. Counters only grow. */
struct metrics_core
{
    uint64_t leader_changes;   /* etcd_server_leader_changes_seen_total */
    int64_t proposals_pending; /* etcd_server_proposals_pending */
    uint64_t proposals_failed; /* etcd_server_proposals_failed_total */
    /* etcd_mvcc_{put,delete,txn,range}_total and their
     * etcd_debugging_mvcc_* twins, counted as etcd's metricsTxnWrite does
     * (mvcc/metrics_txn.go): see metrics_count_applied. */
    uint64_t puts;
    uint64_t deletes;
    uint64_t txns;
    uint64_t ranges;
    uint64_t put_bytes;       /* etcd_debugging_mvcc_total_put_size_in_bytes */
    int64_t keys_delta;       /* keys created minus keys deleted since start */
    uint64_t health_success;  /* etcd_server_health_success */
    uint64_t health_failures; /* etcd_server_health_failures */
    uint64_t scrapes_ok;      /* promhttp_metric_handler_requests_total */
    uint64_t scrapes_failed;  /* ... {code="500"} */
    /* Any thread. */
    struct metrics_histogram wal_fsync;      /* etcd_disk_wal_fsync_... */
    struct metrics_histogram backend_commit; /* etcd_disk_backend_commit_... */
};

extern struct metrics_core metrics_core;

/* Count the mvcc operations of one applied request as etcd 3.4 does
 * (mvcc/metrics_txn.go + etcdserver/apply.go): a Put is a put (plus a range
 * when prev_kv or ignore_*), a DeleteRange a delete (plus a range with
 * prev_kv), a Txn the ranges of its compares in one read txn, then its ops
 * in one write txn; a txn whose ranges+puts+deletes exceed one also counts
 * in txn_total; a lease revoke deletes each of its keys in one txn. rv is
 * the apply result, resp the response (NULL on failure), events what the
 * request wrote (they also move etcd_debugging_mvcc_keys_total). */
void metrics_count_applied(const Keelpb__Request *req,
                           const ProtobufCMessage *resp,
                           int rv,
                           Mvccpb__Event *const *events,
                           size_t n_events);

/* A Range served (one range in one read txn), and a read-only Txn served
 * without raft (its compares and ranges in one read txn). */
void metrics_count_range(void);
void metrics_count_txn_read(const Etcdserverpb__TxnRequest *req,
                            const Etcdserverpb__TxnResponse *resp);

/* ---- exposition --------------------------------------------------------- */

enum metrics_type {
    METRICS_COUNTER,
    METRICS_GAUGE,
    METRICS_HISTOGRAM,
};

struct metrics_label
{
    const char *name;
    const char *value;
};

/* A growing text buffer; on OOM it stops growing and sets oom. */
struct metrics_writer
{
    char *buf;
    size_t len;
    size_t cap;
    int oom;
    size_t samples; /* sample lines written */
};

void metrics_writer_init(struct metrics_writer *w);
void metrics_writer_free(struct metrics_writer *w);

/* v in Go's strconv.FormatFloat(v, 'g', -1, 64) as client_golang prints
 * values ("+Inf", "NaN", "1e+06", "0.001"). Returns the length written into
 * out (NUL-terminated; 32 bytes are always enough). */
size_t metrics_format_value(double v, char *out, size_t len);

/* One sample line: name, labels (in name order; may be NULL when n is 0),
 * value. */
void metrics_write_sample(struct metrics_writer *w,
                          const char *name,
                          const struct metrics_label *labels,
                          size_t n,
                          double v);

/* The _bucket, _sum and _count lines of h under name. */
void metrics_write_histogram(struct metrics_writer *w,
                             const char *name,
                             const struct metrics_histogram *h);

struct metrics_family;
typedef void (*metrics_collect_cb)(struct metrics_writer *w,
                                   const struct metrics_family *f,
                                   void *data);

/* A metric family. Samples come from exactly one source: *u64 (counter or
 * gauge), *i64 (gauge), hist, or collect (which writes the sample lines
 * with metrics_write_*; the HELP/TYPE lines are written for it, and left
 * out when it writes no sample, as client_golang leaves out empty
 * families). labels/n_labels are constant labels of a u64/i64 sample.
 * Strings and pointers are borrowed for the registry's life. */
struct metrics_family
{
    const char *name;
    const char *help;
    enum metrics_type type;
    const uint64_t *u64;
    const int64_t *i64;
    const struct metrics_histogram *hist;
    const struct metrics_label *labels;
    size_t n_labels;
    metrics_collect_cb collect;
    void *data;
};

struct metrics_registry;

/* NULL on OOM. */
struct metrics_registry *metrics_registry_new(void);
void metrics_registry_free(struct metrics_registry *r);

/* Add f (copied). 0, KEEL_EEXISTS for a name already there, KEEL_ENOMEM. */
int metrics_register(struct metrics_registry *r,
                     const struct metrics_family *f);

/* Every family, sorted by name, into w. */
void metrics_registry_write(struct metrics_registry *r,
                            struct metrics_writer *w);

/* ---- keel's families ---------------------------------------------------- */

struct keel_server;
struct grpc_server;
struct router_req;

/* Register every metric keel exports (etcd's names) into r: node and store
 * state read from s at scrape time, gRPC counters from g, the configured
 * quota (etcd: 0 means the 2 GiB default), process_* from /proc. s and g
 * must outlive r. */
int metrics_register_server(struct metrics_registry *r,
                            struct keel_server *s,
                            struct grpc_server *g,
                            int64_t quota_backend_bytes);

/* Router handler for GET /metrics; data is the struct metrics_registry. */
void metrics_http_handler(struct router_req *req, void *data);

#endif /* KEEL_METRICS_H */
