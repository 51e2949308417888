/*
 * storage/mvcc_check.c: etcd's duplicate-key rule for a Txn request.
 *
 * etcd (etcdserver/api/v3rpc/key.go checkIntervals) rejects a txn when the
 * operations that could run together put the same key twice, or put a key
 * that a delete in the same or an enclosing level (or an earlier nested txn)
 * covers. The two branches of a nested txn exclude each other, so a key put
 * in both its success and failure branches is fine. This file follows
 * checkIntervals step by step, including its quirks: a delete's interval is
 * [key, range_end) compared as plain bytes, so a from-key delete
 * (range_end "\0") covers nothing; deletes are not checked against deletes;
 * the puts of a nested txn are checked against the deletes collected so far
 * (this level's and earlier nested txns'), not later ones.
 *
 * Pure: reads the request only; the work is O(n^2) in the number of ops,
 * bounded by --max-txn-ops.
 */
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"
#include "mvcc_int.h"

struct span
{
    const ProtobufCBinaryData *key;
    const ProtobufCBinaryData *end; /* NULL or len 0: a point */
};

struct sets
{
    const ProtobufCBinaryData **puts;
    size_t nputs, cputs;
    struct span *dels;
    size_t ndels, cdels;
};

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap) {
        return 0;
    }
    size_t ncap = *cap ? 2 * *cap : 8;
    void *q = realloc(*p, ncap * size);
    if (q == NULL) {
        return KEEL_ENOMEM;
    }
    *p = q;
    *cap = ncap;
    return 0;
}

static int bytes_cmp(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return mvcc__key_cmp(a->data, a->len, b->data, b->len);
}

static int has_put(const struct sets *s, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < s->nputs; i++) {
        if (bytes_cmp(s->puts[i], k) == 0) {
            return 1;
        }
    }
    return 0;
}

static int dels_cover(const struct sets *s, const ProtobufCBinaryData *k)
{
    for (size_t i = 0; i < s->ndels; i++) {
        const struct span *d = &s->dels[i];
        if (d->end == NULL || d->end->len == 0) {
            if (bytes_cmp(d->key, k) == 0) {
                return 1;
            }
        } else if (bytes_cmp(d->key, k) <= 0 && bytes_cmp(k, d->end) < 0) {
            return 1;
        }
    }
    return 0;
}

static int add_put(struct sets *s, const ProtobufCBinaryData *k)
{
    if (has_put(s, k)) {
        return 0;
    }
    if (grow((void **)&s->puts, &s->cputs, s->nputs, sizeof(*s->puts))) {
        return KEEL_ENOMEM;
    }
    s->puts[s->nputs++] = k;
    return 0;
}

static int add_del(struct sets *s, struct span d)
{
    if (grow((void **)&s->dels, &s->cdels, s->ndels, sizeof(*s->dels))) {
        return KEEL_ENOMEM;
    }
    s->dels[s->ndels++] = d;
    return 0;
}

static void sets_free(struct sets *s)
{
    free(s->puts);
    free(s->dels);
}

static int check_intervals(Etcdserverpb__RequestOp *const *ops,
                           size_t n,
                           struct sets *out)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        if (op->request_case ==
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE &&
            op->request_delete_range != NULL) {
            struct span d = {&op->request_delete_range->key,
                             &op->request_delete_range->range_end};
            rc = add_del(out, d);
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        const Etcdserverpb__TxnRequest *t;
        struct sets th = {0}, el = {0};

        if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN ||
            (t = op->request_txn) == NULL) {
            continue;
        }
        rc = check_intervals(t->success, t->n_success, &th);
        if (rc == 0) {
            rc = check_intervals(t->failure, t->n_failure, &el);
        }
        for (size_t j = 0; rc == 0 && j < th.nputs; j++) {
            if (has_put(out, th.puts[j]) || dels_cover(out, th.puts[j])) {
                rc = KEEL_EDUPLICATEKEY;
            } else {
                rc = add_put(out, th.puts[j]);
            }
        }
        for (size_t j = 0; rc == 0 && j < el.nputs; j++) {
            if ((has_put(out, el.puts[j]) && !has_put(&th, el.puts[j])) ||
                dels_cover(out, el.puts[j])) {
                rc = KEEL_EDUPLICATEKEY;
            } else {
                rc = add_put(out, el.puts[j]);
            }
        }
        for (size_t j = 0; rc == 0 && j < th.ndels; j++) {
            rc = add_del(out, th.dels[j]);
        }
        for (size_t j = 0; rc == 0 && j < el.ndels; j++) {
            rc = add_del(out, el.dels[j]);
        }
        sets_free(&th);
        sets_free(&el);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        const ProtobufCBinaryData *k;
        if (op->request_case != ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT ||
            op->request_put == NULL) {
            continue;
        }
        k = &op->request_put->key;
        if (has_put(out, k) || dels_cover(out, k)) {
            rc = KEEL_EDUPLICATEKEY;
        } else {
            rc = add_put(out, k);
        }
    }
    return rc;
}

int mvcc_txn_check(const Etcdserverpb__TxnRequest *req)
{
    struct sets a = {0}, b = {0};
    int rc = check_intervals(req->success, req->n_success, &a);
    if (rc == 0) {
        rc = check_intervals(req->failure, req->n_failure, &b);
    }
    sets_free(&a);
    sets_free(&b);
    return rc;
}
