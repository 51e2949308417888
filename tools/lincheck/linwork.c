/*
 * keel-linwork: a workload that records a history for keel-lincheck.
 *
 *   keel-linwork --endpoints H:P[,H:P...] --output FILE
 *                [--clients N] [--duration SECS | --ops M] [--keys K]
 *                [--prefix P] [--timeout MS] [--seed S]
 *                [--mix GET,PUT,CAS,DEL]
 *
 * Happy path: one libuv loop; N clients, each its own libkeel client (one
 * HTTP/2 connection, the endpoint list rotated so clients start on
 * different members; libkeel fails over along the list) with exactly one
 * operation in flight. Each operation picks a key of K (prefix + "kN") and
 * a kind by --mix (percentages, default 40,30,25,5):
 *   get: a linearizable Range of the key;
 *   put: a Put of a value unique in the run ("c<client>-<seq>");
 *   cas: a Txn comparing the key's value with the last value this client
 *        saw for it (create_revision == 0 when it saw none), success: the
 *        put, failure: a Range of the key (its value goes in "result");
 *   del: a DeleteRange of the key.
 * The invoke and complete times are CLOCK_MONOTONIC nanoseconds (uv_hrtime)
 * taken just before the call is started and first thing in its callback;
 * every finished operation is appended to --output as one JSON line
 * (docs/TESTING.md).
 *
 * Outcomes: OK -> "ok" (a cas whose compare failed -> "fail" with the
 * current value). A failed read is dropped (it says nothing), and so is a
 * cas refused with a definite error (it compared nothing). A failed put or
 * del is "fail" only when the server definitely did not apply it (statuses etcd
 * returns before proposing: InvalidArgument, ResourceExhausted "too many
 * requests", PermissionDenied, ...) or it was never started; anything else
 * (deadline, Unavailable, connection lost, "request timed out", "leader
 * changed") is "unknown": it may still be applied later, and the checker
 * treats it so. A client whose operation did not succeed waits 50 ms before
 * the next, so a dead cluster is not hammered.
 *
 * End: after --duration (or --ops started), no new operation starts; the
 * ones in flight finish (each bounded by --timeout), the clients close and a
 * summary goes to stderr. Exit 0 when at least one operation succeeded, 1
 * otherwise (nothing served: the history proves nothing), 2 on usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

enum { OP_GET, OP_PUT, OP_CAS, OP_DEL, OP_KINDS };
static const char *const op_names[] = {"get", "put", "cas", "del"};

struct work;

struct worker
{
    struct work *w;
    int id;
    struct keel_client *client;
    struct keel_call call;
    uv_timer_t pause;
    int in_flight;
    /* the operation in flight */
    int kind;
    int key;
    char value[48];
    char *expect;      /* cas: malloc copy, NULL = absent */
    uint64_t invoke;
    uint64_t seq;
    /* per key: the last value this client saw (malloc; NULL = absent or
     * never seen: both compare as "absent") */
    char **seen;
};

struct work
{
    uv_loop_t loop;
    uv_timer_t stop_timer;
    struct worker *workers;
    int nclients;
    int nkeys;
    const char *prefix;
    uint64_t timeout_ms;
    uint64_t max_ops;
    uint64_t started_ops;
    int mix[OP_KINDS];
    int stopping;
    int closing;
    uint64_t rng;
    FILE *out;
    uint64_t t_start, t_end;
    /* counters */
    uint64_t n_ok, n_fail, n_unknown, n_dropped;
    uint64_t by_kind[OP_KINDS];
    uint64_t cas_swapped;
};

static uint64_t rnd(struct work *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static void key_name(const struct work *w, int k, char *buf, size_t len)
{
    snprintf(buf, len, "%sk%d", w->prefix, k);
}

static void json_str(FILE *f, const char *s, size_t len)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
        } else if (c < 0x20 || c >= 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

/* outcome: "ok", "fail" or "unknown"; result written when has_result. */
static void record(struct worker *wk, const char *outcome, uint64_t complete,
                   int has_result, const char *result, size_t result_len)
{
    struct work *w = wk->w;
    char key[256];
    key_name(w, wk->key, key, sizeof(key));
    FILE *f = w->out;
    fprintf(f, "{\"client\":%d,\"op\":\"%s\",\"key\":", wk->id,
            op_names[wk->kind]);
    json_str(f, key, strlen(key));
    if (wk->kind == OP_PUT || wk->kind == OP_CAS) {
        fputs(",\"value\":", f);
        json_str(f, wk->value, strlen(wk->value));
    }
    if (wk->kind == OP_CAS) {
        fputs(",\"expect\":", f);
        json_str(f, wk->expect, wk->expect ? strlen(wk->expect) : 0);
    }
    fprintf(f, ",\"invoke\":%" PRIu64, wk->invoke);
    if (strcmp(outcome, "unknown") != 0) {
        fprintf(f, ",\"complete\":%" PRIu64, complete);
    }
    fprintf(f, ",\"outcome\":\"%s\"", outcome);
    if (has_result) {
        fputs(",\"result\":", f);
        json_str(f, result, result_len);
    }
    fputs("}\n", f);
}

static void seen_set(struct worker *wk, const char *v, size_t len)
{
    free(wk->seen[wk->key]);
    wk->seen[wk->key] = v ? strndup(v, len) : NULL;
}

/* Statuses etcd 3.4 returns before a request is proposed to raft, or for a
 * request raft applied as a no-op: the write definitely did not happen. */
static int definitely_not_applied(int status)
{
    switch (status) {
        case KEEL_GRPC_INVALID_ARGUMENT:
        case KEEL_GRPC_NOT_FOUND:
        case KEEL_GRPC_ALREADY_EXISTS:
        case KEEL_GRPC_PERMISSION_DENIED:
        case KEEL_GRPC_RESOURCE_EXHAUSTED:
        case KEEL_GRPC_FAILED_PRECONDITION:
        case KEEL_GRPC_OUT_OF_RANGE:
        case KEEL_GRPC_UNIMPLEMENTED:
        case KEEL_GRPC_UNAUTHENTICATED:
            return 1;
        default:
            return 0;
    }
}

static void next_op(struct worker *wk);
static void maybe_finish(struct work *w);

static void on_pause(uv_timer_t *t)
{
    next_op(t->data);
}

static void on_done(struct keel_call *call)
{
    uint64_t now = uv_hrtime();
    struct worker *wk = call->data;
    struct work *w = wk->w;
    wk->in_flight = 0;
    int ok = call->status == KEEL_GRPC_OK && call->resp != NULL;
    if (!ok) {
        if (wk->kind == OP_GET ||
            (wk->kind == OP_CAS && definitely_not_applied(call->status))) {
            /* says nothing: a cas refused outright did not even compare
             * (a "fail" cas in the history means the comparison failed) */
            w->n_dropped++;
        } else if (definitely_not_applied(call->status)) {
            record(wk, "fail", now, 0, NULL, 0);
            w->n_fail++;
        } else {
            record(wk, "unknown", now, 0, NULL, 0);
            w->n_unknown++;
        }
    } else {
        w->n_ok++;
        switch (wk->kind) {
            case OP_GET: {
                Etcdserverpb__RangeResponse *r = (void *)call->resp;
                const char *v = NULL;
                size_t len = 0;
                if (r->n_kvs > 0) {
                    v = (const char *)r->kvs[0]->value.data;
                    len = r->kvs[0]->value.len;
                    if (v == NULL) {
                        v = "";
                    }
                }
                record(wk, "ok", now, 1, v, len);
                seen_set(wk, v, len);
                break;
            }
            case OP_PUT:
                record(wk, "ok", now, 0, NULL, 0);
                seen_set(wk, wk->value, strlen(wk->value));
                break;
            case OP_DEL:
                record(wk, "ok", now, 0, NULL, 0);
                seen_set(wk, NULL, 0);
                break;
            case OP_CAS: {
                Etcdserverpb__TxnResponse *r = (void *)call->resp;
                if (r->succeeded) {
                    w->cas_swapped++;
                    record(wk, "ok", now, 0, NULL, 0);
                    seen_set(wk, wk->value, strlen(wk->value));
                    break;
                }
                /* the failure branch read the key */
                const char *v = NULL;
                size_t len = 0;
                if (r->n_responses == 1 &&
                    r->responses[0]->response_case ==
                        ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE &&
                    r->responses[0]->response_range->n_kvs > 0) {
                    Mvccpb__KeyValue *kv =
                        r->responses[0]->response_range->kvs[0];
                    v = kv->value.data ? (const char *)kv->value.data : "";
                    len = kv->value.len;
                }
                record(wk, "fail", now, 1, v, len);
                seen_set(wk, v, len);
                break;
            }
        }
    }
    free(wk->expect);
    wk->expect = NULL;
    keel_call_cleanup(call);
    if (w->stopping) {
        maybe_finish(w);
    } else if (!ok) {
        uv_timer_start(&wk->pause, on_pause, 50, 0);
    } else {
        next_op(wk);
    }
}

static int start_op(struct worker *wk)
{
    struct work *w = wk->w;
    char key[256];
    key_name(w, wk->key, key, sizeof(key));
    size_t klen = strlen(key);
    struct keel_call_opts opts = {.timeout_ms = w->timeout_ms, .flags = 0};
    wk->call.data = wk;
    switch (wk->kind) {
        case OP_GET: {
            Etcdserverpb__RangeRequest r;
            etcdserverpb__range_request__init(&r);
            r.key.data = (uint8_t *)key;
            r.key.len = klen;
            /* a read may be repeated on another member */
            opts.flags = KEEL_CALL_IDEMPOTENT;
            return keel_call_start(wk->client, &wk->call, KEEL_M_RANGE,
                                   &r.base,
                                   &etcdserverpb__range_response__descriptor,
                                   &opts, on_done);
        }
        case OP_PUT: {
            Etcdserverpb__PutRequest p;
            etcdserverpb__put_request__init(&p);
            p.key.data = (uint8_t *)key;
            p.key.len = klen;
            p.value.data = (uint8_t *)wk->value;
            p.value.len = strlen(wk->value);
            return keel_call_start(wk->client, &wk->call, KEEL_M_PUT, &p.base,
                                   &etcdserverpb__put_response__descriptor,
                                   &opts, on_done);
        }
        case OP_DEL: {
            Etcdserverpb__DeleteRangeRequest d;
            etcdserverpb__delete_range_request__init(&d);
            d.key.data = (uint8_t *)key;
            d.key.len = klen;
            return keel_call_start(
                wk->client, &wk->call, KEEL_M_DELETE_RANGE, &d.base,
                &etcdserverpb__delete_range_response__descriptor, &opts,
                on_done);
        }
        case OP_CAS: {
            Etcdserverpb__Compare cmp;
            etcdserverpb__compare__init(&cmp);
            Etcdserverpb__Compare *cmps[1] = {&cmp};
            cmp.key.data = (uint8_t *)key;
            cmp.key.len = klen;
            cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
            if (wk->expect) {
                cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
                cmp.target_union_case =
                    ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
                cmp.value.data = (uint8_t *)wk->expect;
                cmp.value.len = strlen(wk->expect);
            } else {
                /* absent: etcd compares a missing key's create_revision
                 * as 0 (a value compare on a missing key always fails) */
                cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
                cmp.target_union_case =
                    ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
                cmp.create_revision = 0;
            }
            Etcdserverpb__PutRequest p;
            etcdserverpb__put_request__init(&p);
            p.key.data = (uint8_t *)key;
            p.key.len = klen;
            p.value.data = (uint8_t *)wk->value;
            p.value.len = strlen(wk->value);
            Etcdserverpb__RequestOp sop, fop;
            etcdserverpb__request_op__init(&sop);
            sop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            sop.request_put = &p;
            Etcdserverpb__RangeRequest r;
            etcdserverpb__range_request__init(&r);
            r.key.data = (uint8_t *)key;
            r.key.len = klen;
            etcdserverpb__request_op__init(&fop);
            fop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
            fop.request_range = &r;
            Etcdserverpb__RequestOp *sops[1] = {&sop}, *fops[1] = {&fop};
            Etcdserverpb__TxnRequest t;
            etcdserverpb__txn_request__init(&t);
            t.compare = cmps;
            t.n_compare = 1;
            t.success = sops;
            t.n_success = 1;
            t.failure = fops;
            t.n_failure = 1;
            return keel_call_start(wk->client, &wk->call, KEEL_M_TXN, &t.base,
                                   &etcdserverpb__txn_response__descriptor,
                                   &opts, on_done);
        }
    }
    return KEEL_EINVAL;
}

static void next_op(struct worker *wk)
{
    struct work *w = wk->w;
    if (w->stopping) {
        maybe_finish(w);
        return;
    }
    if (w->max_ops && w->started_ops >= w->max_ops) {
        w->stopping = 1;
        maybe_finish(w);
        return;
    }
    w->started_ops++;
    wk->key = (int)(rnd(w) % (uint64_t)w->nkeys);
    int dice = (int)(rnd(w) % 100), kind = 0;
    for (int acc = 0; kind < OP_KINDS; kind++) {
        acc += w->mix[kind];
        if (dice < acc) {
            break;
        }
    }
    wk->kind = kind < OP_KINDS ? kind : OP_GET;
    w->by_kind[wk->kind]++;
    snprintf(wk->value, sizeof(wk->value), "c%d-%" PRIu64, wk->id, ++wk->seq);
    free(wk->expect);
    wk->expect = wk->seen[wk->key] ? strdup(wk->seen[wk->key]) : NULL;
    wk->invoke = uv_hrtime();
    int rc = start_op(wk);
    if (rc != 0) {
        /* never started: nothing was sent, nothing to record */
        fprintf(stderr, "keel-linwork: client %d: %s not started: %d\n",
                wk->id, op_names[wk->kind], rc);
        free(wk->expect);
        wk->expect = NULL;
        uv_timer_start(&wk->pause, on_pause, 50, 0);
        return;
    }
    wk->in_flight = 1;
}

static void on_client_closed(struct keel_client *c, void *data)
{
    (void)c;
    (void)data;
}

static void maybe_finish(struct work *w)
{
    if (w->closing) {
        return;
    }
    for (int i = 0; i < w->nclients; i++) {
        if (w->workers[i].in_flight) {
            return;
        }
    }
    w->closing = 1;
    w->t_end = uv_hrtime();
    uv_timer_stop(&w->stop_timer);
    uv_close((uv_handle_t *)&w->stop_timer, NULL);
    for (int i = 0; i < w->nclients; i++) {
        uv_timer_stop(&w->workers[i].pause);
        uv_close((uv_handle_t *)&w->workers[i].pause, NULL);
        keel_client_close(w->workers[i].client, on_client_closed, NULL);
    }
}

static void on_stop(uv_timer_t *t)
{
    struct work *w = t->data;
    w->stopping = 1;
    /* paused workers have nothing in flight: they are done */
    maybe_finish(w);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: keel-linwork --endpoints H:P[,H:P...] --output FILE\n"
            "         [--clients N] [--duration SECS | --ops M] [--keys K]\n"
            "         [--prefix P] [--timeout MS] [--seed S] "
            "[--mix GET,PUT,CAS,DEL]\n");
}

static int parse_num(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct work w;
    memset(&w, 0, sizeof(w));
    const char *endpoints = NULL, *output = NULL;
    uint64_t clients = 8, duration = 0, ops = 0, keys = 4, timeout = 2000;
    uint64_t seed = 0;
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "lin/%d-%" PRIu64 "/", (int)getpid(),
             uv_hrtime() % 1000000000);
    int mix[OP_KINDS] = {40, 30, 25, 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = v == NULL;
        if (strcmp(a, "--endpoints") == 0) {
            endpoints = v;
        } else if (strcmp(a, "--output") == 0) {
            output = v;
        } else if (strcmp(a, "--clients") == 0) {
            bad = bad || parse_num(v, &clients) || clients == 0 ||
                  clients > 10000;
        } else if (strcmp(a, "--duration") == 0) {
            bad = bad || parse_num(v, &duration);
        } else if (strcmp(a, "--ops") == 0) {
            bad = bad || parse_num(v, &ops);
        } else if (strcmp(a, "--keys") == 0) {
            bad = bad || parse_num(v, &keys) || keys == 0 || keys > 100000;
        } else if (strcmp(a, "--prefix") == 0) {
            bad = bad || strlen(v) >= sizeof(prefix) - 16;
            if (!bad) {
                snprintf(prefix, sizeof(prefix), "%s", v);
            }
        } else if (strcmp(a, "--timeout") == 0) {
            bad = bad || parse_num(v, &timeout) || timeout == 0;
        } else if (strcmp(a, "--seed") == 0) {
            bad = bad || parse_num(v, &seed);
        } else if (strcmp(a, "--mix") == 0) {
            bad = bad || sscanf(v, "%d,%d,%d,%d", &mix[0], &mix[1], &mix[2],
                                &mix[3]) != 4 ||
                  mix[0] < 0 || mix[1] < 0 || mix[2] < 0 || mix[3] < 0 ||
                  mix[0] + mix[1] + mix[2] + mix[3] != 100;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "keel-linwork: bad argument %s\n", a);
            usage();
            return 2;
        }
        i++;
    }
    if (endpoints == NULL || output == NULL || (duration == 0 && ops == 0)) {
        fprintf(stderr, "keel-linwork: --endpoints, --output and --duration "
                        "or --ops are required\n");
        usage();
        return 2;
    }
    /* split the endpoint list */
    char *eps_copy = strdup(endpoints);
    const char *eps[64];
    size_t neps = 0;
    for (char *save, *t = strtok_r(eps_copy, ",", &save); t && neps < 64;
         t = strtok_r(NULL, ",", &save)) {
        eps[neps++] = t;
    }
    if (neps == 0) {
        fprintf(stderr, "keel-linwork: empty --endpoints\n");
        free(eps_copy);
        return 2;
    }
    w.out = strcmp(output, "-") == 0 ? stdout : fopen(output, "w");
    if (w.out == NULL) {
        fprintf(stderr, "keel-linwork: %s: %s\n", output, strerror(errno));
        free(eps_copy);
        return 2;
    }
    w.nclients = (int)clients;
    w.nkeys = (int)keys;
    w.prefix = prefix;
    w.timeout_ms = timeout;
    w.max_ops = ops;
    memcpy(w.mix, mix, sizeof(mix));
    w.rng = seed ? seed : (uv_hrtime() | 1);
    /* a server killed mid-write must cost an error, not the process */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_init(&w.loop);
    w.workers = calloc(clients, sizeof(*w.workers));
    for (int i = 0; i < w.nclients; i++) {
        struct worker *wk = &w.workers[i];
        wk->w = &w;
        wk->id = i + 1;
        wk->seen = calloc(keys, sizeof(char *));
        /* rotate the list: client i starts on endpoint i mod n */
        const char *mine[64];
        for (size_t e = 0; e < neps; e++) {
            mine[e] = eps[(e + (size_t)i) % neps];
        }
        struct keel_client_config cfg = {.endpoints = mine,
                                         .n_endpoints = neps,
                                         .dial_timeout_ms = 1000};
        int rv = keel_client_new(&w.loop, &cfg, &wk->client);
        if (rv != 0) {
            fprintf(stderr, "keel-linwork: client: %d\n", rv);
            return 2;
        }
        uv_timer_init(&w.loop, &wk->pause);
        wk->pause.data = wk;
    }
    uv_timer_init(&w.loop, &w.stop_timer);
    w.stop_timer.data = &w;
    if (duration) {
        uv_timer_start(&w.stop_timer, on_stop, duration * 1000, 0);
    }
    w.t_start = uv_hrtime();
    for (int i = 0; i < w.nclients; i++) {
        next_op(&w.workers[i]);
    }
    uv_run(&w.loop, UV_RUN_DEFAULT);
    uv_loop_close(&w.loop);
    double secs = (double)(w.t_end - w.t_start) / 1e9;
    uint64_t total = w.n_ok + w.n_fail + w.n_unknown + w.n_dropped;
    fprintf(stderr,
            "keel-linwork: %" PRIu64 " ops in %.2f s (%.0f ops/s, %d "
            "clients, %d keys): %" PRIu64 " ok, %" PRIu64 " fail, %" PRIu64
            " unknown, %" PRIu64 " dropped; get %" PRIu64
            " put %" PRIu64 " cas %" PRIu64 " (%" PRIu64 " swapped) del %"
            PRIu64 "\n",
            total, secs, secs > 0 ? (double)total / secs : 0.0, w.nclients,
            w.nkeys, w.n_ok, w.n_fail, w.n_unknown, w.n_dropped,
            w.by_kind[OP_GET], w.by_kind[OP_PUT], w.by_kind[OP_CAS],
            w.cas_swapped, w.by_kind[OP_DEL]);
    int failed = w.out != stdout ? fclose(w.out) : fflush(w.out);
    for (int i = 0; i < w.nclients; i++) {
        for (uint64_t k = 0; k < keys; k++) {
            free(w.workers[i].seen[k]);
        }
        free(w.workers[i].seen);
        free(w.workers[i].expect);
    }
    free(w.workers);
    free(eps_copy);
    if (failed) {
        fprintf(stderr, "keel-linwork: writing %s failed\n", output);
        return 2;
    }
    return w.n_ok > 0 ? 0 : 1;
}
