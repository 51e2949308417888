/*
 * server/v3lock.c: the v3lockpb.Lock service as etcd 3.4's v3lock server
 * answers it (etcdserver/api/v3lock/lock.go on clientv3/concurrency's
 * Mutex), over keel's own KV/Lease/Watch (server/v3conc.h).
 *
 * Lock(name, lease):
 *   [lease 0: grant a 60 s session lease]
 *   txn if create_revision("<name>/<lease hex>") == 0
 *       then put(key, "", lease), range(first created under "<name>/")
 *       else range(key), range(first created)
 *   ├─ we are the oldest key (or the only one) ─▶ reply {txn header, key}
 *   └─ else waitDeletes(prefix, our create revision - 1)
 *         ─▶ reply {last range's header, key}
 * The wait holds nothing but a local watch; the client cancelling it
 * deletes our key (etcd: Mutex.Lock unlocks when its wait fails), and our
 * key disappearing (lease revoked or expired) ends it with "etcdserver:
 * requested lease not found".
 *
 * Unlock(key): delete the key; reply {header}.
 */
#include <string.h>

#include "grpc.h"
#include "keel_err.h"
#include "server.h"
#include "v3conc.h"
#include "v3lockpb/v3lock.pb-c.h"

struct lock
{
    ProtobufCBinaryData key;
    int64_t lease;
    int64_t my_rev;
    Etcdserverpb__ResponseHeader *hdr;
};

static void lock_reply(struct v3conc_op *op, Etcdserverpb__ResponseHeader *h)
{
    struct lock *l = op->data;
    V3lockpb__LockResponse *r =
        (V3lockpb__LockResponse *)server_new_message(
            grpc_call_arena(op->call), &v3lockpb__lock_response__descriptor);
    if (r != NULL) {
        r->header = h;
        r->key = l->key;
    }
    op->on_cancel = NULL;
    v3conc_reply(op, r != NULL ? &r->base : NULL);
}

static void lock_waited(struct v3conc_op *op, ProtobufCMessage *m)
{
    lock_reply(op, ((Etcdserverpb__RangeResponse *)m)->header);
}

/* The client left while we waited: drop our place in the queue. */
static void lock_cancel(struct v3conc_op *op)
{
    struct lock *l = op->data;
    Etcdserverpb__DeleteRangeRequest d = ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    d.key = l->key;
    v3conc_fire(op->s, op->call, "/etcdserverpb.KV/DeleteRange", &d.base);
}

static void lock_txn_done(struct v3conc_op *op, ProtobufCMessage *m)
{
    struct lock *l = op->data;
    Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)m;
    if (t->n_responses < 2 || t->header == NULL) {
        v3conc_fail(op, keel_strerror(KEEL_EIO));
        return;
    }
    l->my_rev = t->header->revision;
    if (!t->succeeded) {
        const Etcdserverpb__RangeResponse *own =
            t->responses[0]->response_range;
        if (own == NULL || own->n_kvs == 0) {
            v3conc_fail(op, keel_strerror(KEEL_EIO));
            return;
        }
        l->my_rev = own->kvs[0]->create_revision;
    }
    const Etcdserverpb__RangeResponse *owner = t->responses[1]->response_range;
    if (owner == NULL || owner->n_kvs == 0 ||
        owner->kvs[0]->create_revision == l->my_rev) {
        lock_reply(op, t->header);
        return;
    }
    op->on_cancel = lock_cancel;
    op->own_key = l->key;
    op->max_create_rev = l->my_rev - 1;
    op->wait_done = lock_waited;
    v3conc_wait_deletes(op);
}

static void lock_with_lease(struct v3conc_op *op, int64_t lease)
{
    struct lock *l = op->data;
    l->lease = lease;
    Etcdserverpb__TxnRequest *t = v3conc_txn_if_created(op, l->key, 0);
    ProtobufCBinaryData empty = {0, NULL};
    Etcdserverpb__RequestOp *first =
        v3conc_op_range(op, v3conc_first_create(op, op->prefix));
    v3conc_txn_add(op, t, true, v3conc_op_put(op, l->key, empty, lease));
    v3conc_txn_add(op, t, true, first);
    Etcdserverpb__RangeRequest *own =
        (Etcdserverpb__RangeRequest *)server_new_message(
            grpc_call_arena(op->call), &etcdserverpb__range_request__descriptor);
    if (own != NULL) {
        own->key = l->key;
    }
    v3conc_txn_add(op, t, false, v3conc_op_range(op, own));
    v3conc_txn_add(op, t, false, first);
    if (t != NULL && t->n_compare == 0) {
        t = NULL; /* out of memory while building it */
    }
    v3conc_unary(op, "/etcdserverpb.KV/Txn", t ? &t->base : NULL,
                 &etcdserverpb__txn_response__descriptor, lock_txn_done);
}

static void lock_granted(struct v3conc_op *op, ProtobufCMessage *m)
{
    struct lock *l = op->data;
    int64_t lease = ((Etcdserverpb__LeaseGrantResponse *)m)->id;
    l->key = v3conc_key(op, &l->key, lease); /* l->key held the name */
    lock_with_lease(op, lease);
}

static void lock_start(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    const V3lockpb__LockRequest *req = (const V3lockpb__LockRequest *)msg;
    struct v3conc_op *op = v3conc_op_new(data, call);
    struct lock *l = keel_arena_alloc(grpc_call_arena(call), sizeof *l);
    if (op == NULL || l == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    memset(l, 0, sizeof *l);
    op->data = l;
    op->prefix = v3conc_prefix(op, &req->name);
    if (req->lease == 0) {
        l->key = req->name;
        v3conc_grant_session(op, lock_granted);
        return;
    }
    l->key = v3conc_key(op, &req->name, req->lease);
    lock_with_lease(op, req->lease);
}

static void unlock_done(struct v3conc_op *op, ProtobufCMessage *m)
{
    V3lockpb__UnlockResponse *r =
        (V3lockpb__UnlockResponse *)server_new_message(
            grpc_call_arena(op->call), &v3lockpb__unlock_response__descriptor);
    if (r != NULL) {
        r->header = ((Etcdserverpb__DeleteRangeResponse *)m)->header;
    }
    v3conc_reply(op, r != NULL ? &r->base : NULL);
}

static void unlock_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    const V3lockpb__UnlockRequest *req = (const V3lockpb__UnlockRequest *)msg;
    struct v3conc_op *op = v3conc_op_new(data, call);
    Etcdserverpb__DeleteRangeRequest *d =
        (Etcdserverpb__DeleteRangeRequest *)server_new_message(
            grpc_call_arena(call),
            &etcdserverpb__delete_range_request__descriptor);
    if (op == NULL || d == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    d->key = req->key;
    v3conc_unary(op, "/etcdserverpb.KV/DeleteRange", &d->base,
                 &etcdserverpb__delete_range_response__descriptor,
                 unlock_done);
}

int v3lock_register(struct keel_server *s, struct grpc_server *g)
{
    const struct grpc_method methods[] = {
        {"/v3lockpb.Lock/Lock", GRPC_UNARY, &v3lockpb__lock_request__descriptor,
         lock_start, NULL, NULL, NULL, s},
        {"/v3lockpb.Lock/Unlock", GRPC_UNARY,
         &v3lockpb__unlock_request__descriptor, unlock_start, NULL, NULL, NULL,
         s},
    };
    return server_register_methods(g, methods,
                                   sizeof methods / sizeof methods[0]);
}
