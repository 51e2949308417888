/*
 * server/kv.c: the etcdserverpb.KV service (Range, Put, DeleteRange, Txn,
 * Compact) as etcd 3.4 answers it (etcdserver/api/v3rpc/key.go for request
 * checks, etcdserver/v3_server.go for the read and write paths).
 *
 *   Range, read-only Txn: linearizable by default (ReadIndex barrier, then
 *     a short LMDB read txn); serializable ones read at once.
 *   Put, DeleteRange, write Txn, Compact: proposed through raft; answered
 *     when applied.
 *
 * Every handler finishes its call exactly once; a call whose client went
 * away is still finished (grpc.h), which only frees it.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "grpc.h"
#include "keel_err.h"
#include "keelpb/request.pb-c.h"
#include "metrics.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

struct kv_call
{
    struct keel_server *s;
    struct grpc_call *call;
    const ProtobufCMessage *req;
};

static struct kv_call *kv_call_new(struct keel_server *s, struct grpc_call *c,
                                   const ProtobufCMessage *req)
{
    struct kv_call *k = keel_arena_alloc(grpc_call_arena(c), sizeof *k);
    if (k != NULL) {
        k->s = s;
        k->call = c;
        k->req = req;
    }
    return k;
}

/* ---- request checks (etcd: v3rpc/key.go) -------------------------------- */

static int check_range(const Etcdserverpb__RangeRequest *r)
{
    if (r->key.len == 0) {
        return KEEL_EEMPTYKEY;
    }
    /* etcd 3.4 dereferences a nil sort function for a target outside the
     * enum and the panic kills the server; keel answers as etcd 3.5. */
    if ((unsigned)r->sort_order >
            (unsigned)ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND ||
        (unsigned)r->sort_target >
            (unsigned)ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE) {
        return KEEL_EINVALIDSORTOPTION;
    }
    return 0;
}

static int check_put(const Etcdserverpb__PutRequest *r)
{
    if (r->key.len == 0) {
        return KEEL_EEMPTYKEY;
    }
    if (r->ignore_value && r->value.len != 0) {
        return KEEL_EVALUEPROVIDED;
    }
    if (r->ignore_lease && r->lease != 0) {
        return KEEL_ELEASEPROVIDED;
    }
    return 0;
}

static int check_delete(const Etcdserverpb__DeleteRangeRequest *r)
{
    return r->key.len == 0 ? KEEL_EEMPTYKEY : 0;
}

static int check_txn(const Etcdserverpb__TxnRequest *r, uint64_t max_ops);

static int check_op(const Etcdserverpb__RequestOp *op, uint64_t max_ops)
{
    switch (op->request_case) {
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
            return check_range(op->request_range);
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
            return check_put(op->request_put);
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
            return check_delete(op->request_delete_range);
        case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
            return check_txn(op->request_txn, max_ops);
        default:
            /* etcd answers an empty RequestOp with ErrGRPCKeyNotFound */
            return KEEL_EKEYNOTFOUND;
    }
}

static int check_txn(const Etcdserverpb__TxnRequest *r, uint64_t max_ops)
{
    size_t opc = r->n_compare;
    if (opc < r->n_success) {
        opc = r->n_success;
    }
    if (opc < r->n_failure) {
        opc = r->n_failure;
    }
    if (opc > max_ops) {
        return KEEL_ETOOMANYOPS;
    }
    for (size_t i = 0; i < r->n_compare; i++) {
        if (r->compare[i]->key.len == 0) {
            return KEEL_EEMPTYKEY;
        }
    }
    /* etcd passes maxTxnOps-opc down to nested txns (checkRequestOp). */
    uint64_t nested = max_ops - opc;
    for (size_t i = 0; i < r->n_success; i++) {
        int rv = check_op(r->success[i], nested);
        if (rv != 0) {
            return rv;
        }
    }
    for (size_t i = 0; i < r->n_failure; i++) {
        int rv = check_op(r->failure[i], nested);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

static bool txn_is_read_only(const Etcdserverpb__TxnRequest *r)
{
    Etcdserverpb__RequestOp **lists[2] = {r->success, r->failure};
    size_t ns[2] = {r->n_success, r->n_failure};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < ns[l]; i++) {
            const Etcdserverpb__RequestOp *op = lists[l][i];
            if (op->request_case ==
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE) {
                continue;
            }
            if (op->request_case ==
                    ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
                txn_is_read_only(op->request_txn)) {
                continue;
            }
            return false;
        }
    }
    return true;
}

/* ---- reads -------------------------------------------------------------- */

static void range_now(struct kv_call *k)
{
    Etcdserverpb__RangeResponse *resp = NULL;
    int rv = mvcc_range(node_store(server_node(k->s)),
                        (const Etcdserverpb__RangeRequest *)k->req,
                        grpc_call_arena(k->call), &resp);
    metrics_count_range(); /* etcd counts failed ranges too */
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    server_reply(k->s, k->call, &resp->base, 0);
}

static void txn_read_now(struct kv_call *k)
{
    Etcdserverpb__TxnResponse *resp = NULL;
    int rv = mvcc_txn_read(node_store(server_node(k->s)),
                           (const Etcdserverpb__TxnRequest *)k->req,
                           grpc_call_arena(k->call), &resp);
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    metrics_count_txn_read((const Etcdserverpb__TxnRequest *)k->req, resp);
    server_reply(k->s, k->call, &resp->base, 0);
}

static void range_after_read_index(void *arg, int rv)
{
    struct kv_call *k = arg;
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    range_now(k);
}

static void txn_after_read_index(void *arg, int rv)
{
    struct kv_call *k = arg;
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    txn_read_now(k);
}

static void range_start(struct grpc_call *call, const ProtobufCMessage *msg,
                        void *data)
{
    const Etcdserverpb__RangeRequest *req =
        (const Etcdserverpb__RangeRequest *)msg;
    int rv = check_range(req);
    if (rv == 0) {
        rv = auth_check_range(server_auth(data), call, &req->key,
                              &req->range_end);
    }
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    struct kv_call *k = kv_call_new(data, call, msg);
    if (k == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    if (req->serializable) {
        range_now(k);
        return;
    }
    rv = node_read_index(server_node(k->s), range_after_read_index, k);
    if (rv != 0) {
        grpc_call_fail(call, rv);
    }
}

/* ---- writes ------------------------------------------------------------- */

static void write_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct kv_call *k = arg;
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    if (resp->descriptor == &etcdserverpb__compaction_response__descriptor) {
        const Etcdserverpb__CompactionRequest *creq =
            (const Etcdserverpb__CompactionRequest *)k->req;
        struct mvcc_store *st = node_store(server_node(k->s));
        if (creq->physical) {
            /* etcd waits until the compaction is physically done. */
            int crv = mvcc_compact_run(st);
            if (crv != 0) {
                grpc_call_fail(k->call, crv);
                return;
            }
        }
        server_reply(k->s, k->call, resp, mvcc_revision(st));
        return;
    }
    server_reply(k->s, k->call, resp, 0);
}

static void propose(struct keel_server *s, struct grpc_call *call,
                    const ProtobufCMessage *msg, Keelpb__Request *kreq)
{
    struct kv_call *k = kv_call_new(s, call, msg);
    if (k == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    Keelpb__RequestHeader hdr; /* the user, for apply's auth checks */
    int rv = auth_propose_header(server_auth(s), call, kreq, &hdr);
    if (rv == 0) {
        rv = node_propose(server_node(s), kreq, grpc_call_arena(call),
                          write_done, k);
    }
    if (rv != 0) {
        grpc_call_fail(call, rv);
    }
}

static void put_start(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    Etcdserverpb__PutRequest *req = (Etcdserverpb__PutRequest *)msg;
    int rv = check_put(req);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    Keelpb__Request kreq = KEELPB__REQUEST__INIT;
    kreq.op_case = KEELPB__REQUEST__OP_PUT;
    kreq.put = req;
    propose(data, call, msg, &kreq);
}

static void delete_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    Etcdserverpb__DeleteRangeRequest *req =
        (Etcdserverpb__DeleteRangeRequest *)msg;
    int rv = check_delete(req);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    Keelpb__Request kreq = KEELPB__REQUEST__INIT;
    kreq.op_case = KEELPB__REQUEST__OP_DELETE_RANGE;
    kreq.delete_range = req;
    propose(data, call, msg, &kreq);
}

static void txn_start(struct grpc_call *call, const ProtobufCMessage *msg,
                      void *data)
{
    struct keel_server *s = data;
    Etcdserverpb__TxnRequest *req = (Etcdserverpb__TxnRequest *)msg;
    int rv = check_txn(req, server_max_txn_ops(s));
    if (rv == 0) {
        rv = mvcc_txn_check(req);
    }
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    if (txn_is_read_only(req)) {
        struct kv_call *k = kv_call_new(s, call, msg);
        rv = k == NULL ? KEEL_ENOMEM : auth_check_txn(server_auth(s), call, req);
        if (rv != 0) {
            grpc_call_fail(call, rv);
            return;
        }
        rv = node_read_index(server_node(s), txn_after_read_index, k);
        if (rv != 0) {
            grpc_call_fail(call, rv);
        }
        return;
    }
    Keelpb__Request kreq = KEELPB__REQUEST__INIT;
    kreq.op_case = KEELPB__REQUEST__OP_TXN;
    kreq.txn = req;
    propose(s, call, msg, &kreq);
}

static void compact_start(struct grpc_call *call, const ProtobufCMessage *msg,
                          void *data)
{
    Etcdserverpb__CompactionRequest *req =
        (Etcdserverpb__CompactionRequest *)msg;
    Keelpb__Request kreq = KEELPB__REQUEST__INIT;
    kreq.op_case = KEELPB__REQUEST__OP_COMPACTION;
    kreq.compaction = req;
    propose(data, call, msg, &kreq);
}

int kv_register(struct keel_server *s, struct grpc_server *g)
{
    const struct grpc_method methods[] = {
        {"/etcdserverpb.KV/Range", GRPC_UNARY,
         &etcdserverpb__range_request__descriptor, range_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.KV/Put", GRPC_UNARY,
         &etcdserverpb__put_request__descriptor, put_start, NULL, NULL, NULL,
         s},
        {"/etcdserverpb.KV/DeleteRange", GRPC_UNARY,
         &etcdserverpb__delete_range_request__descriptor, delete_start, NULL,
         NULL, NULL, s},
        {"/etcdserverpb.KV/Txn", GRPC_UNARY,
         &etcdserverpb__txn_request__descriptor, txn_start, NULL, NULL, NULL,
         s},
        {"/etcdserverpb.KV/Compact", GRPC_UNARY,
         &etcdserverpb__compaction_request__descriptor, compact_start, NULL,
         NULL, NULL, s},
    };
    return server_register_methods(g, methods,
                                   sizeof methods / sizeof methods[0]);
}
