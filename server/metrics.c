/*
 * server/metrics.c: the metrics registry, the Prometheus text writer and
 * keel's families with etcd 3.4's names (see metrics.h).
 *
 * Happy path of a scrape (loop thread): GET /metrics -> metrics_http_handler
 * -> every family in name order: its HELP/TYPE lines, then its samples,
 * read from metrics_core (hot-path instruments), from the node and store
 * (status, revisions, file size), from the gRPC transport's per-method
 * counters, or from /proc/self -> one 200 response.
 *
 * Failure modes: out of memory while writing -> 500 and
 * promhttp_metric_handler_requests_total{code="500"}; a /proc file that
 * cannot be read -> that process_* sample is left out (client_golang does
 * the same when procfs fails). Nothing here can stop the server.
 *
 * Names, HELP texts, types, labels and buckets are etcd 3.4.23's, checked
 * against the real binary by tests/integration/test_metrics.sh; where keel
 * measures something slightly differently it says so next to the family.
 */
#include "metrics.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "grpc.h"
#include "keel_arena.h"
#include "keel_err.h"
#include "mvcc.h"
#include "node.h"
#include "router.h"
#include "server.h"

/* etcd: prometheus.ExponentialBuckets(0.001, 2, 14) for walFsyncSec
 * (wal/metrics.go) and commitSec (mvcc/backend/metrics.go). Doubling is
 * exact in binary, so these literals are the doubles Go computes. */
static const double exp_buckets_1ms[] = {0.001, 0.002, 0.004, 0.008, 0.016,
                                         0.032, 0.064, 0.128, 0.256, 0.512,
                                         1.024, 2.048, 4.096, 8.192};
#define N_EXP_BUCKETS (sizeof exp_buckets_1ms / sizeof exp_buckets_1ms[0])

struct metrics_core metrics_core = {
    .wal_fsync = {.bounds = exp_buckets_1ms, .n_bounds = N_EXP_BUCKETS},
    .backend_commit = {.bounds = exp_buckets_1ms, .n_bounds = N_EXP_BUCKETS},
};

/* ---- instruments -------------------------------------------------------- */

void metrics_histogram_observe(struct metrics_histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    for (;;) {
        double sum;
        memcpy(&sum, &old, sizeof sum);
        sum += v;
        uint64_t next;
        memcpy(&next, &sum, sizeof next);
        if (atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, next,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return;
        }
    }
}

double metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- counting mvcc operations as etcd does ------------------------------ */

struct op_counts
{
    uint64_t compares;     /* ranges of compares (read txn) */
    uint64_t check_ranges; /* checkPut ranges (read txn, write txns only) */
    uint64_t ranges;       /* ranges of the ops */
    uint64_t puts;
    uint64_t deletes;
    bool write;
};

/* Walk the ops a txn ran (etcdserver/apply.go: compareToPath, applyTxn):
 * the taken branch of each txn, nested ones included. etcd stops
 * evaluating compares at the first false one; the response does not say
 * which one that was, so a failed txn counts all its compares. */
static void txn_walk(const Etcdserverpb__TxnRequest *req,
                     const Etcdserverpb__TxnResponse *resp,
                     struct op_counts *c)
{
    c->compares += req->n_compare;
    bool ok = resp != NULL && resp->succeeded;
    Etcdserverpb__RequestOp **ops = ok ? req->success : req->failure;
    size_t n = ok ? req->n_success : req->n_failure;
    for (size_t i = 0; i < n; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        switch (op->request_case) {
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                c->ranges++;
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
                const Etcdserverpb__PutRequest *p = op->request_put;
                c->write = true;
                c->puts++;
                if (p->ignore_value || p->ignore_lease) {
                    c->check_ranges++;
                }
                if (p->ignore_value || p->ignore_lease || p->prev_kv) {
                    c->ranges++;
                }
                break;
            }
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
                c->write = true;
                c->deletes++;
                if (op->request_delete_range->prev_kv) {
                    c->ranges++;
                }
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
                const Etcdserverpb__TxnResponse *sub = NULL;
                if (resp != NULL && i < resp->n_responses &&
                    resp->responses[i]->response_case ==
                        ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN) {
                    sub = resp->responses[i]->response_txn;
                }
                txn_walk(op->request_txn, sub, c);
                break;
            }
            default:
                break;
        }
    }
}

/* One etcd mvcc txn ended (metricsTxnWrite.End). */
static void txn_end(uint64_t ranges, uint64_t puts, uint64_t deletes)
{
    metrics_core.ranges += ranges;
    metrics_core.puts += puts;
    metrics_core.deletes += deletes;
    if (ranges + puts + deletes > 1) {
        metrics_core.txns++;
    }
}

static void count_txn(const Etcdserverpb__TxnRequest *req,
                      const Etcdserverpb__TxnResponse *resp)
{
    struct op_counts c = {0};
    txn_walk(req, resp, &c);
    if (c.write) {
        /* Compares (and checkPut's ranges) run in a read txn, the ops in a
         * write txn (applierV3backend.Txn). */
        txn_end(c.compares + c.check_ranges, 0, 0);
        txn_end(c.ranges, c.puts, c.deletes);
    } else {
        txn_end(c.compares + c.ranges, 0, 0);
    }
}

void metrics_count_applied(const Keelpb__Request *req,
                           const ProtobufCMessage *resp,
                           int rv,
                           Mvccpb__Event *const *events,
                           size_t n_events)
{
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_PUT: {
            const Etcdserverpb__PutRequest *p = req->put;
            bool ignore = p->ignore_value || p->ignore_lease;
            if (rv == 0) {
                txn_end(ignore || p->prev_kv ? 1 : 0, 1, 0);
            } else if (rv == KEEL_EKEYNOTFOUND && ignore) {
                txn_end(1, 0, 0); /* the range found nothing */
            }
            break;
        }
        case KEELPB__REQUEST__OP_DELETE_RANGE:
            if (rv == 0) {
                txn_end(req->delete_range->prev_kv ? 1 : 0, 0, 1);
            }
            break;
        case KEELPB__REQUEST__OP_TXN:
            if (rv == 0) {
                count_txn(req->txn, (const Etcdserverpb__TxnResponse *)resp);
            }
            break;
        case KEELPB__REQUEST__OP_LEASE_REVOKE:
            /* lessor.Revoke: one DeleteRange per attached key, one txn. */
            if (rv == 0) {
                uint64_t n = 0;
                for (size_t i = 0; i < n_events; i++) {
                    n += events[i]->type == MVCCPB__EVENT__EVENT_TYPE__DELETE;
                }
                txn_end(0, 0, n);
            }
            break;
        default:
            break;
    }
    for (size_t i = 0; i < n_events; i++) {
        const Mvccpb__Event *e = events[i];
        if (e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
            metrics_core.keys_delta--;
        } else if (e->kv != NULL) {
            if (e->kv->version == 1) {
                metrics_core.keys_delta++; /* a new generation */
            }
            metrics_core.put_bytes += e->kv->key.len + e->kv->value.len;
        }
    }
}

void metrics_count_range(void)
{
    txn_end(1, 0, 0);
}

void metrics_count_txn_read(const Etcdserverpb__TxnRequest *req,
                            const Etcdserverpb__TxnResponse *resp)
{
    count_txn(req, resp);
}

/* ---- text writer -------------------------------------------------------- */

void metrics_writer_init(struct metrics_writer *w)
{
    memset(w, 0, sizeof *w);
}

void metrics_writer_free(struct metrics_writer *w)
{
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static void put_bytes(struct metrics_writer *w, const char *s, size_t n)
{
    if (w->oom) {
        return;
    }
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 16384;
        while (w->len + n + 1 > cap) {
            cap *= 2;
        }
        char *b = realloc(w->buf, cap);
        if (b == NULL) {
            w->oom = 1;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

static void put_str(struct metrics_writer *w, const char *s)
{
    put_bytes(w, s, strlen(s));
}

/* HELP text: \ and newline escaped; label values: also ". */
static void put_escaped(struct metrics_writer *w, const char *s, bool quote)
{
    const char *run = s;
    for (; *s != 0; s++) {
        const char *esc = NULL;
        if (*s == '\\') {
            esc = "\\\\";
        } else if (*s == '\n') {
            esc = "\\n";
        } else if (quote && *s == '"') {
            esc = "\\\"";
        }
        if (esc != NULL) {
            put_bytes(w, run, (size_t)(s - run));
            put_str(w, esc);
            run = s + 1;
        }
    }
    put_bytes(w, run, (size_t)(s - run));
}

size_t metrics_format_value(double v, char *out, size_t len)
{
    int n;
    if (isnan(v)) {
        n = snprintf(out, len, "NaN");
    } else if (isinf(v)) {
        n = snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        n = snprintf(out, len, "0");
    } else {
        /* Shortest digits that read back as v, as Go's strconv does. */
        char e[40];
        int prec = 1;
        for (; prec <= 17; prec++) {
            snprintf(e, sizeof e, "%.*e", prec - 1, v);
            if (strtod(e, NULL) == v) {
                break;
            }
        }
        const char *x = strchr(e, 'e');
        int exp = x != NULL ? atoi(x + 1) : 0;
        /* Go's 'g' with the shortest precision switches to %e when the
         * exponent is < -4 or >= 6 (strconv/ftoa.go: "if precision was the
         * shortest possible, use precision 6 for this decision"). */
        int eprec = 6;
        if (exp < -4 || exp >= eprec) {
            n = snprintf(out, len, "%s", e);
        } else {
            int decimals = prec - 1 - exp;
            n = snprintf(out, len, "%.*f", decimals > 0 ? decimals : 0, v);
        }
    }
    return n < 0 ? 0 : (size_t)n;
}

void metrics_write_sample(struct metrics_writer *w,
                          const char *name,
                          const struct metrics_label *labels,
                          size_t n,
                          double v)
{
    put_str(w, name);
    if (n > 0) {
        put_str(w, "{");
        for (size_t i = 0; i < n; i++) {
            if (i > 0) {
                put_str(w, ",");
            }
            put_str(w, labels[i].name);
            put_str(w, "=\"");
            put_escaped(w, labels[i].value, true);
            put_str(w, "\"");
        }
        put_str(w, "}");
    }
    char num[40];
    metrics_format_value(v, num, sizeof num);
    put_str(w, " ");
    put_str(w, num);
    put_str(w, "\n");
    w->samples++;
}

void metrics_write_histogram(struct metrics_writer *w,
                             const char *name,
                             const struct metrics_histogram *h)
{
    char line[256];
    char le[40];
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < h->n_bounds) {
            metrics_format_value(h->bounds[i], le, sizeof le);
        } else {
            snprintf(le, sizeof le, "+Inf");
        }
        snprintf(line, sizeof line, "%s_bucket", name);
        struct metrics_label l = {"le", le};
        metrics_write_sample(w, line, &l, 1, (double)cum);
    }
    uint64_t bits = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
    double sum;
    memcpy(&sum, &bits, sizeof sum);
    snprintf(line, sizeof line, "%s_sum", name);
    metrics_write_sample(w, line, NULL, 0, sum);
    snprintf(line, sizeof line, "%s_count", name);
    metrics_write_sample(w, line, NULL, 0, (double)cum);
}

/* ---- registry ----------------------------------------------------------- */

struct metrics_server_ctx
{
    struct keel_server *s;
    struct grpc_server *g;
    double quota;
    bool keys_base_known;
    int64_t keys_base;
    char server_id[20];
    struct metrics_label server_id_label;
};

struct metrics_registry
{
    struct metrics_family *fams; /* sorted by name */
    size_t n;
    size_t cap;
    struct metrics_server_ctx *ctx; /* metrics_register_server's */
};

struct metrics_registry *metrics_registry_new(void)
{
    return calloc(1, sizeof(struct metrics_registry));
}

void metrics_registry_free(struct metrics_registry *r)
{
    if (r == NULL) {
        return;
    }
    free(r->fams);
    free(r->ctx);
    free(r);
}

int metrics_register(struct metrics_registry *r, const struct metrics_family *f)
{
    size_t at = 0;
    while (at < r->n && strcmp(r->fams[at].name, f->name) < 0) {
        at++;
    }
    if (at < r->n && strcmp(r->fams[at].name, f->name) == 0) {
        return KEEL_EEXISTS;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        struct metrics_family *fams = realloc(r->fams, cap * sizeof *fams);
        if (fams == NULL) {
            return KEEL_ENOMEM;
        }
        r->fams = fams;
        r->cap = cap;
    }
    memmove(&r->fams[at + 1], &r->fams[at], (r->n - at) * sizeof *r->fams);
    r->fams[at] = *f;
    r->n++;
    return 0;
}

static const char *type_name(enum metrics_type t)
{
    switch (t) {
        case METRICS_COUNTER:
            return "counter";
        case METRICS_GAUGE:
            return "gauge";
        case METRICS_HISTOGRAM:
            return "histogram";
    }
    return "untyped";
}

void metrics_registry_write(struct metrics_registry *r,
                            struct metrics_writer *w)
{
    for (size_t i = 0; i < r->n; i++) {
        const struct metrics_family *f = &r->fams[i];
        size_t mark = w->len;
        size_t samples = w->samples;
        put_str(w, "# HELP ");
        put_str(w, f->name);
        put_str(w, " ");
        put_escaped(w, f->help, false);
        put_str(w, "\n# TYPE ");
        put_str(w, f->name);
        put_str(w, " ");
        put_str(w, type_name(f->type));
        put_str(w, "\n");
        if (f->collect != NULL) {
            f->collect(w, f, f->data);
        } else if (f->hist != NULL) {
            metrics_write_histogram(w, f->name, f->hist);
        } else if (f->u64 != NULL) {
            metrics_write_sample(w, f->name, f->labels, f->n_labels,
                                 (double)*f->u64);
        } else if (f->i64 != NULL) {
            metrics_write_sample(w, f->name, f->labels, f->n_labels,
                                 (double)*f->i64);
        }
        if (w->samples == samples && !w->oom) {
            w->len = mark; /* empty family: left out */
            if (w->buf != NULL) {
                w->buf[w->len] = 0;
            }
        }
    }
}

/* ---- keel's collectors -------------------------------------------------- */

static void one(struct metrics_writer *w,
                const struct metrics_family *f,
                double v)
{
    metrics_write_sample(w, f->name, f->labels, f->n_labels, v);
}

static struct node_status status_of(void *data)
{
    struct metrics_server_ctx *c = data;
    struct node_status st;
    node_status(server_node(c->s), &st);
    return st;
}

static void collect_has_leader(struct metrics_writer *w,
                               const struct metrics_family *f, void *data)
{
    one(w, f, status_of(data).leader != 0 ? 1 : 0);
}

static void collect_is_leader(struct metrics_writer *w,
                              const struct metrics_family *f, void *data)
{
    one(w, f, status_of(data).is_leader ? 1 : 0);
}

/* etcd sets it from the member's IsLearner at startup and on promotion
 * (etcdserver/server.go); keel reads the current raft configuration. */
static void collect_is_learner(struct metrics_writer *w,
                               const struct metrics_family *f, void *data)
{
    one(w, f, status_of(data).is_learner ? 1 : 0);
}

/* etcd sets these gauges to the raft commit and applied indexes
 * (etcdserver/raft.go updateCommittedIndex, server.go applyAll). */
static void collect_committed(struct metrics_writer *w,
                              const struct metrics_family *f, void *data)
{
    one(w, f, (double)status_of(data).commit_index);
}

static void collect_applied(struct metrics_writer *w,
                            const struct metrics_family *f, void *data)
{
    one(w, f, (double)status_of(data).applied_index);
}

static void collect_const(struct metrics_writer *w,
                          const struct metrics_family *f,
                          void *data)
{
    struct metrics_server_ctx *c = data;
    if (f->labels != NULL) {
        one(w, f, 1);
    } else {
        one(w, f, c->quota);
    }
}

static void collect_current_rev(struct metrics_writer *w,
                                const struct metrics_family *f,
                                void *data)
{
    struct metrics_server_ctx *c = data;
    one(w, f, (double)mvcc_revision(node_store(server_node(c->s))));
}

static void collect_compact_rev(struct metrics_writer *w,
                                const struct metrics_family *f,
                                void *data)
{
    struct metrics_server_ctx *c = data;
    one(w, f, (double)mvcc_compact_revision(node_store(server_node(c->s))));
}

/* The LMDB file's size (etcd: bolt's file size) and the part in use, LMDB's
 * free pages left out (etcd: size minus bolt's free pages). */
static void collect_db_size(struct metrics_writer *w,
                            const struct metrics_family *f,
                            void *data)
{
    struct metrics_server_ctx *c = data;
    uint64_t total = 0, in_use = 0;
    if (mvcc_db_size(node_store(server_node(c->s)), &total, &in_use) != 0) {
        return;
    }
    bool use = strcmp(f->name, "etcd_mvcc_db_total_size_in_use_in_bytes") == 0;
    one(w, f, (double)(use ? in_use : total));
}

/* Live keys. etcd counts them while it rebuilds its index at start; keel's
 * index is on disk, so the count is taken once, at the first scrape, and
 * followed from then on with the applied events. */
static void collect_keys(struct metrics_writer *w,
                         const struct metrics_family *f,
                         void *data)
{
    struct metrics_server_ctx *c = data;
    if (!c->keys_base_known) {
        struct keel_arena a;
        keel_arena_init(&a, 0);
        Etcdserverpb__RangeRequest rq = ETCDSERVERPB__RANGE_REQUEST__INIT;
        static uint8_t zero = 0;
        rq.key.data = &zero;
        rq.key.len = 1;
        rq.range_end.data = &zero;
        rq.range_end.len = 1;
        rq.count_only = 1;
        Etcdserverpb__RangeResponse *resp = NULL;
        int rv = mvcc_range(node_store(server_node(c->s)), &rq, &a, &resp);
        if (rv == 0 && resp != NULL) {
            c->keys_base = resp->count - metrics_core.keys_delta;
            c->keys_base_known = true;
        }
        keel_arena_free(&a);
        if (!c->keys_base_known) {
            return;
        }
    }
    one(w, f, (double)(c->keys_base + metrics_core.keys_delta));
}

static void collect_grpc_bytes_received(struct metrics_writer *w,
                                        const struct metrics_family *f,
                                        void *data)
{
    struct metrics_server_ctx *c = data;
    one(w, f, (double)grpc_server_bytes_received(c->g));
}

static void collect_grpc_bytes_sent(struct metrics_writer *w,
                                    const struct metrics_family *f,
                                    void *data)
{
    struct metrics_server_ctx *c = data;
    one(w, f, (double)grpc_server_bytes_sent(c->g));
}

/* gRPC status names as grpc-go's codes.Code.String() prints them. */
static const char *const grpc_code_names[17] = {
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
};

struct grpc_row
{
    char service[128];
    char method[128];
    char type[16];
    struct grpc_method_stats stats;
};

struct grpc_rows
{
    struct grpc_row *v;
    size_t n;
    size_t cap;
    int oom;
};

static void grpc_row_visit(const char *service,
                           const char *method,
                           const char *type,
                           const struct grpc_method_stats *stats,
                           void *data)
{
    struct grpc_rows *rows = data;
    if (rows->oom) {
        return;
    }
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? 2 * rows->cap : 64;
        struct grpc_row *v = realloc(rows->v, cap * sizeof *v);
        if (v == NULL) {
            rows->oom = 1;
            return;
        }
        rows->v = v;
        rows->cap = cap;
    }
    struct grpc_row *r = &rows->v[rows->n++];
    snprintf(r->service, sizeof r->service, "%s", service);
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->type, sizeof r->type, "%s", type);
    r->stats = *stats;
}

/* client_golang orders samples by label values, labels in name order:
 * grpc_method, then grpc_service, then grpc_type. */
static int grpc_row_cmp(const void *pa, const void *pb)
{
    const struct grpc_row *a = pa, *b = pb;
    int d = strcmp(a->method, b->method);
    if (d == 0) {
        d = strcmp(a->service, b->service);
    }
    if (d == 0) {
        d = strcmp(a->type, b->type);
    }
    return d;
}

static int code_name_cmp(const void *pa, const void *pb)
{
    return strcmp(grpc_code_names[*(const int *)pa],
                  grpc_code_names[*(const int *)pb]);
}

enum grpc_family { GRPC_STARTED, GRPC_HANDLED, GRPC_RECEIVED, GRPC_SENT };

static void collect_grpc(struct metrics_writer *w,
                         const struct metrics_family *f,
                         void *data,
                         enum grpc_family which)
{
    struct metrics_server_ctx *c = data;
    struct grpc_rows rows = {0};
    grpc_server_visit_methods(c->g, grpc_row_visit, &rows);
    if (rows.oom) {
        w->oom = 1;
        free(rows.v);
        return;
    }
    qsort(rows.v, rows.n, sizeof *rows.v, grpc_row_cmp);
    int codes[17];
    for (int i = 0; i < 17; i++) {
        codes[i] = i;
    }
    qsort(codes, 17, sizeof codes[0], code_name_cmp);
    int n_codes = which == GRPC_HANDLED ? 17 : 1;
    for (int k = 0; k < n_codes; k++) {
        for (size_t i = 0; i < rows.n; i++) {
            const struct grpc_row *r = &rows.v[i];
            struct metrics_label l[4];
            size_t nl = 0;
            if (which == GRPC_HANDLED) {
                l[nl++] = (struct metrics_label){"grpc_code",
                                                 grpc_code_names[codes[k]]};
            }
            l[nl++] = (struct metrics_label){"grpc_method", r->method};
            l[nl++] = (struct metrics_label){"grpc_service", r->service};
            l[nl++] = (struct metrics_label){"grpc_type", r->type};
            uint64_t v = 0;
            switch (which) {
                case GRPC_STARTED:
                    v = r->stats.started;
                    break;
                case GRPC_HANDLED:
                    v = r->stats.handled[codes[k]];
                    break;
                case GRPC_RECEIVED:
                    v = r->stats.msg_received;
                    break;
                case GRPC_SENT:
                    v = r->stats.msg_sent;
                    break;
            }
            metrics_write_sample(w, f->name, l, nl, (double)v);
        }
    }
    free(rows.v);
}

static void collect_grpc_started(struct metrics_writer *w,
                                 const struct metrics_family *f,
                                 void *data)
{
    collect_grpc(w, f, data, GRPC_STARTED);
}

static void collect_grpc_handled(struct metrics_writer *w,
                                 const struct metrics_family *f,
                                 void *data)
{
    collect_grpc(w, f, data, GRPC_HANDLED);
}

static void collect_grpc_received(struct metrics_writer *w,
                                  const struct metrics_family *f,
                                  void *data)
{
    collect_grpc(w, f, data, GRPC_RECEIVED);
}

static void collect_grpc_sent(struct metrics_writer *w,
                              const struct metrics_family *f,
                              void *data)
{
    collect_grpc(w, f, data, GRPC_SENT);
}

/* ---- process_* (client_golang's process collector, from /proc) ---------- */

struct proc_stat
{
    double cpu_seconds;
    double start_time;
    double vsize;
    double rss;
};

static int read_proc_stat(struct proc_stat *ps)
{
    char buf[2048];
    FILE *fp = fopen("/proc/self/stat", "r");
    if (fp == NULL) {
        return -1;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = 0;
    /* Fields after "(comm)": field 3 (state) onwards; comm may hold
     * spaces and parentheses, so parse after the last ')'. */
    char *p = strrchr(buf, ')');
    if (p == NULL) {
        return -1;
    }
    p++;
    unsigned long long f[25] = {0};
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok != NULL && field < 24;
         tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field >= 14) {
            f[field] = strtoull(tok, NULL, 10);
        }
    }
    if (field < 24) {
        return -1;
    }
    static double btime = -1;
    if (btime < 0) {
        FILE *sf = fopen("/proc/stat", "r");
        char line[256];
        while (sf != NULL && fgets(line, sizeof line, sf) != NULL) {
            if (strncmp(line, "btime ", 6) == 0) {
                btime = strtod(line + 6, NULL);
                break;
            }
        }
        if (sf != NULL) {
            fclose(sf);
        }
        if (btime < 0) {
            return -1;
        }
    }
    double tck = (double)sysconf(_SC_CLK_TCK);
    double page = (double)sysconf(_SC_PAGESIZE);
    ps->cpu_seconds = (double)(f[14] + f[15]) / tck;
    ps->start_time = btime + (double)f[22] / tck;
    ps->vsize = (double)f[23];
    ps->rss = (double)f[24] * page;
    return 0;
}

static void collect_proc(struct metrics_writer *w,
                         const struct metrics_family *f,
                         void *data)
{
    (void)data;
    struct proc_stat ps;
    if (read_proc_stat(&ps) != 0) {
        return;
    }
    const char *n = f->name;
    if (strcmp(n, "process_cpu_seconds_total") == 0) {
        one(w, f, ps.cpu_seconds);
    } else if (strcmp(n, "process_start_time_seconds") == 0) {
        one(w, f, ps.start_time);
    } else if (strcmp(n, "process_virtual_memory_bytes") == 0) {
        one(w, f, ps.vsize);
    } else if (strcmp(n, "process_resident_memory_bytes") == 0) {
        one(w, f, ps.rss);
    }
}

static double rlimit_value(int resource)
{
    struct rlimit rl;
    if (getrlimit(resource, &rl) != 0) {
        return NAN;
    }
    return rl.rlim_cur == RLIM_INFINITY ? 18446744073709551615.0
                                        : (double)rl.rlim_cur;
}

/* Entries of /proc/self/fd, the directory's own descriptor included (as
 * procfs' FileDescriptorsLen counts). */
static void collect_open_fds(struct metrics_writer *w,
                             const struct metrics_family *f,
                             void *data)
{
    (void)data;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return;
    }
    double n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    one(w, f, n);
}

static void collect_max_fds(struct metrics_writer *w,
                            const struct metrics_family *f,
                            void *data)
{
    (void)data;
    double v = rlimit_value(RLIMIT_NOFILE);
    if (!isnan(v)) {
        one(w, f, v);
    }
}

static void collect_max_vm(struct metrics_writer *w,
                           const struct metrics_family *f,
                           void *data)
{
    (void)data;
    double v = rlimit_value(RLIMIT_AS);
    if (!isnan(v)) {
        one(w, f, v);
    }
}

static void collect_scrapes(struct metrics_writer *w,
                            const struct metrics_family *f,
                            void *data)
{
    (void)data;
    struct metrics_label l = {"code", "200"};
    metrics_write_sample(w, f->name, &l, 1, (double)metrics_core.scrapes_ok);
    l.value = "500";
    metrics_write_sample(w, f->name, &l, 1,
                         (double)metrics_core.scrapes_failed);
    l.value = "503";
    metrics_write_sample(w, f->name, &l, 1, 0);
}

static int64_t scrapes_in_flight;

/* ---- registration ------------------------------------------------------- */

static const struct metrics_label server_version_label[] = {
    {"server_version", KEEL_ETCD_VERSION}};
static const struct metrics_label cluster_version_label[] = {
    {"cluster_version", KEEL_ETCD_CLUSTER_VERSION}};

#define C METRICS_COUNTER
#define G METRICS_GAUGE
#define H METRICS_HISTOGRAM

int metrics_register_server(struct metrics_registry *r,
                            struct keel_server *s,
                            struct grpc_server *g,
                            int64_t quota_backend_bytes)
{
    if (r->ctx != NULL) {
        return KEEL_EEXISTS;
    }
    struct metrics_server_ctx *c = calloc(1, sizeof *c);
    if (c == NULL) {
        return KEEL_ENOMEM;
    }
    r->ctx = c;
    c->s = s;
    c->g = g;
    /* etcd: NewBackendQuota sets the flag's value, or DefaultQuotaBytes
     * when it is 0 (etcdserver/quota.go). */
    c->quota = quota_backend_bytes == 0 ? (double)CONFIG_DEFAULT_QUOTA_BYTES
                                        : (double)quota_backend_bytes;
    struct server_info info;
    server_info(s, &info);
    snprintf(c->server_id, sizeof c->server_id, "%" PRIx64, info.member_id);
    c->server_id_label.name = "server_id";
    c->server_id_label.value = c->server_id;

    struct metrics_core *m = &metrics_core;
    const struct metrics_family fams[] = {
        /* etcdserver/metrics.go */
        {"etcd_server_has_leader",
         "Whether or not a leader exists. 1 is existence, 0 is not.", G,
         .collect = collect_has_leader, .data = c},
        {"etcd_server_is_leader",
         "Whether or not this member is a leader. 1 if is, 0 otherwise.", G,
         .collect = collect_is_leader, .data = c},
        {"etcd_server_leader_changes_seen_total",
         "The number of leader changes seen.", C, .u64 = &m->leader_changes},
        {"etcd_server_proposals_committed_total",
         "The total number of consensus proposals committed.", G,
         .collect = collect_committed, .data = c},
        {"etcd_server_proposals_applied_total",
         "The total number of consensus proposals applied.", G,
         .collect = collect_applied, .data = c},
        {"etcd_server_proposals_pending",
         "The current number of pending proposals to commit.", G,
         .i64 = &m->proposals_pending},
        {"etcd_server_proposals_failed_total",
         "The total number of failed proposals seen.", C,
         .u64 = &m->proposals_failed},
        {"etcd_server_quota_backend_bytes",
         "Current backend storage quota size in bytes.", G,
         .collect = collect_const, .data = c},
        {"etcd_server_version",
         "Which version is running. 1 for 'server_version' label with "
         "current version.",
         G, .labels = server_version_label, .n_labels = 1,
         .collect = collect_const, .data = c},
        {"etcd_cluster_version",
         "Which version is running. 1 for 'cluster_version' label with "
         "current cluster version",
         G, .labels = cluster_version_label, .n_labels = 1,
         .collect = collect_const, .data = c},
        {"etcd_server_id",
         "Server or member ID in hexadecimal format. 1 for 'server_id' "
         "label with current ID.",
         G, .labels = &c->server_id_label, .n_labels = 1,
         .collect = collect_const, .data = c},
        {"etcd_server_is_learner",
         "Whether or not this member is a learner. 1 if is, 0 otherwise.", G,
         .collect = collect_is_learner, .data = c},
        {"etcd_server_health_success",
         "The total number of successful health checks", C,
         .u64 = &m->health_success},
        {"etcd_server_health_failures",
         "The total number of failed health checks", C,
         .u64 = &m->health_failures},
        /* wal/metrics.go: keel times its whole WAL append (the writes
         * into the page cache, then fdatasync) on the disk thread. */
        {"etcd_disk_wal_fsync_duration_seconds",
         "The latency distributions of fsync called by WAL.", H,
         .hist = &m->wal_fsync},
        /* mvcc/backend/metrics.go: the LMDB commit of one apply batch. */
        {"etcd_disk_backend_commit_duration_seconds",
         "The latency distributions of commit called by backend.", H,
         .hist = &m->backend_commit},
        /* mvcc/metrics.go */
        {"etcd_mvcc_put_total", "Total number of puts seen by this member.", C,
         .u64 = &m->puts},
        {"etcd_debugging_mvcc_put_total",
         "Total number of puts seen by this member.", C, .u64 = &m->puts},
        {"etcd_mvcc_delete_total",
         "Total number of deletes seen by this member.", C, .u64 = &m->deletes},
        {"etcd_debugging_mvcc_delete_total",
         "Total number of deletes seen by this member.", C, .u64 = &m->deletes},
        {"etcd_mvcc_txn_total", "Total number of txns seen by this member.", C,
         .u64 = &m->txns},
        {"etcd_debugging_mvcc_txn_total",
         "Total number of txns seen by this member.", C, .u64 = &m->txns},
        {"etcd_mvcc_range_total", "Total number of ranges seen by this member.",
         C, .u64 = &m->ranges},
        {"etcd_debugging_mvcc_range_total",
         "Total number of ranges seen by this member.", C, .u64 = &m->ranges},
        {"etcd_debugging_mvcc_total_put_size_in_bytes",
         "The total size of put kv pairs seen by this member.", G,
         .u64 = &m->put_bytes},
        {"etcd_debugging_mvcc_keys_total", "Total number of keys.", G,
         .collect = collect_keys, .data = c},
        {"etcd_debugging_mvcc_current_revision",
         "The current revision of store.", G, .collect = collect_current_rev,
         .data = c},
        {"etcd_debugging_mvcc_compact_revision",
         "The revision of the last compaction in store.", G,
         .collect = collect_compact_rev, .data = c},
        {"etcd_mvcc_db_total_size_in_bytes",
         "Total size of the underlying database physically allocated in "
         "bytes.",
         G, .collect = collect_db_size, .data = c},
        {"etcd_debugging_mvcc_db_total_size_in_bytes",
         "Total size of the underlying database physically allocated in "
         "bytes.",
         G, .collect = collect_db_size, .data = c},
        {"etcd_mvcc_db_total_size_in_use_in_bytes",
         "Total size of the underlying database logically in use in bytes.", G,
         .collect = collect_db_size, .data = c},
        /* etcdserver/api/v3rpc/metrics.go */
        {"etcd_network_client_grpc_received_bytes_total",
         "The total number of bytes received from grpc clients.", C,
         .collect = collect_grpc_bytes_received, .data = c},
        {"etcd_network_client_grpc_sent_bytes_total",
         "The total number of bytes sent to grpc clients.", C,
         .collect = collect_grpc_bytes_sent, .data = c},
        /* go-grpc-prometheus server metrics */
        {"grpc_server_started_total",
         "Total number of RPCs started on the server.", C,
         .collect = collect_grpc_started, .data = c},
        {"grpc_server_handled_total",
         "Total number of RPCs completed on the server, regardless of "
         "success or failure.",
         C, .collect = collect_grpc_handled, .data = c},
        {"grpc_server_msg_received_total",
         "Total number of RPC stream messages received on the server.", C,
         .collect = collect_grpc_received, .data = c},
        {"grpc_server_msg_sent_total",
         "Total number of gRPC stream messages sent by the server.", C,
         .collect = collect_grpc_sent, .data = c},
        /* client_golang's process collector and etcd's os_fd_* */
        {"process_cpu_seconds_total",
         "Total user and system CPU time spent in seconds.", C,
         .collect = collect_proc},
        {"process_start_time_seconds",
         "Start time of the process since unix epoch in seconds.", G,
         .collect = collect_proc},
        {"process_virtual_memory_bytes", "Virtual memory size in bytes.", G,
         .collect = collect_proc},
        {"process_resident_memory_bytes", "Resident memory size in bytes.", G,
         .collect = collect_proc},
        {"process_open_fds", "Number of open file descriptors.", G,
         .collect = collect_open_fds},
        {"process_max_fds", "Maximum number of open file descriptors.", G,
         .collect = collect_max_fds},
        {"process_virtual_memory_max_bytes",
         "Maximum amount of virtual memory available in bytes.", G,
         .collect = collect_max_vm},
        {"os_fd_used", "The number of used file descriptors.", G,
         .collect = collect_open_fds},
        {"os_fd_limit", "The file descriptor limit.", G,
         .collect = collect_max_fds},
        /* promhttp's own */
        {"promhttp_metric_handler_requests_total",
         "Total number of scrapes by HTTP status code.", C,
         .collect = collect_scrapes},
        {"promhttp_metric_handler_requests_in_flight",
         "Current number of scrapes being served.", G,
         .i64 = &scrapes_in_flight},
    };
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        int rv = metrics_register(r, &fams[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

#undef C
#undef G
#undef H

/* ---- GET /metrics ------------------------------------------------------- */

void metrics_http_handler(struct router_req *req, void *data)
{
    struct metrics_registry *r = data;
    struct metrics_writer w;
    metrics_writer_init(&w);
    scrapes_in_flight++;
    metrics_registry_write(r, &w);
    scrapes_in_flight--;
    if (w.oom) {
        static const char msg[] = "out of memory while writing metrics\n";
        metrics_core.scrapes_failed++;
        router_respond(req, 500, "text/plain; charset=utf-8", msg,
                       sizeof msg - 1);
    } else {
        metrics_core.scrapes_ok++;
        router_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                       w.buf != NULL ? w.buf : "", w.len);
    }
    metrics_writer_free(&w);
}
