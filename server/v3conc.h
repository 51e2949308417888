/*
 * server/v3conc: what etcd's v3lock and v3election servers get from
 * clientv3/concurrency, on keel's own services: in-process KV, Lease and
 * Watch calls (grpc_server_call_local) made on behalf of a client call,
 * with its auth metadata, and etcd's waitDeletes.
 *
 * A struct v3conc_op belongs to one client call (the "parent"). At most one
 * local call is in flight per op. Each step names the function to run with
 * the decoded response; a failed local call fails the parent with code
 * Unknown and the inner error's text, as etcd's servers answer (their
 * in-process client turns gRPC errors into plain errors).
 *
 * Cancel: when the parent's client goes away, the in-flight local call is
 * cancelled, op->on_cancel (if set) runs and the parent is finished.
 *
 * Everything runs on the loop thread.
 */
#ifndef KEEL_V3CONC_H
#define KEEL_V3CONC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"

struct grpc_call;
struct keel_server;
struct v3conc_op;

/* A step: resp is the decoded response of the local call (in the parent's
 * arena). */
typedef void (*v3conc_step)(struct v3conc_op *op, ProtobufCMessage *resp);
/* One WatchResponse of a local watch (valid during the call only). */
typedef void (*v3conc_watch_cb)(struct v3conc_op *op,
                                Etcdserverpb__WatchResponse *wr);

struct v3conc_op
{
    struct keel_server *s;
    struct grpc_call *call;  /* the parent */
    struct grpc_call *local; /* in flight, or NULL */
    ProtobufCMessage *resp;  /* the local call's reply, once it came */
    const ProtobufCMessageDescriptor *resp_desc;
    v3conc_step next;
    v3conc_watch_cb on_watch;
    bool finished; /* the parent is finished: ignore everything */
    /* Called when the client goes away before the op finished (e.g. to
     * delete a lock key), before the parent is finished. */
    void (*on_cancel)(struct v3conc_op *op);
    /* waitDeletes state */
    ProtobufCBinaryData prefix;  /* "<name>/" */
    ProtobufCBinaryData own_key; /* ends the wait when deleted; may be empty */
    int64_t max_create_rev;
    ProtobufCBinaryData last_key;
    v3conc_step wait_done; /* gets the final RangeResponse */
    void *data;            /* the service's */
};

/* A new op for call (in its arena; the parent's cancel callback is taken). */
struct v3conc_op *v3conc_op_new(struct keel_server *s, struct grpc_call *call);

/* Run the unary method path with req; next gets the response. On failure
 * the parent is failed. */
void v3conc_unary(struct v3conc_op *op, const char *path,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc,
                  v3conc_step next);

/* Finish the parent with resp / an error text (code Unknown). */
void v3conc_reply(struct v3conc_op *op, ProtobufCMessage *resp);
void v3conc_fail(struct v3conc_op *op, const char *message);

/* Run a request with no parent, ignoring the outcome (cleanup after a
 * cancel: etcd deletes a waiter's key with a background context). md_from
 * supplies the auth metadata and must still be alive. */
void v3conc_fire(struct keel_server *s, struct grpc_call *md_from,
                 const char *path, const ProtobufCMessage *req);

/* Watch [key, range_end) from rev (the local call of op); on_watch gets
 * each response until v3conc_watch_stop (which may be called from inside
 * on_watch). The watch ending by itself fails the parent. */
void v3conc_watch(struct v3conc_op *op, ProtobufCBinaryData key,
                  ProtobufCBinaryData range_end, int64_t rev,
                  v3conc_watch_cb on_watch);
void v3conc_watch_stop(struct v3conc_op *op);
/* etcd GetPrefixRangeEnd, in the parent's arena. */
ProtobufCBinaryData v3conc_prefix_end(struct v3conc_op *op,
                                      ProtobufCBinaryData prefix);

/* etcd concurrency.waitDeletes: wait until no key under op->prefix has a
 * create revision <= op->max_create_rev, then op->wait_done(op, the last
 * RangeResponse). If op->own_key is deleted meanwhile (its lease expired
 * or was revoked) the wait fails with "etcdserver: requested lease not
 * found" (etcd would keep waiting on a key that is gone). */
void v3conc_wait_deletes(struct v3conc_op *op);

/* "<name>/" and "<name>/<lease hex>" in the parent's arena. */
ProtobufCBinaryData v3conc_prefix(struct v3conc_op *op,
                                  const ProtobufCBinaryData *name);
ProtobufCBinaryData v3conc_key(struct v3conc_op *op,
                               const ProtobufCBinaryData *name, int64_t lease);

/* etcd clientv3.WithFirstCreate: the key under prefix with the lowest
 * create revision (a RangeRequest in the parent's arena). */
Etcdserverpb__RangeRequest *v3conc_first_create(struct v3conc_op *op,
                                                ProtobufCBinaryData prefix);

/* A Txn "if create_revision(key) == rev" with no ops yet. */
Etcdserverpb__TxnRequest *v3conc_txn_if_created(struct v3conc_op *op,
                                                ProtobufCBinaryData key,
                                                int64_t rev);
/* Append a put (or delete when value == NULL) / range op to a branch. */
void v3conc_txn_add(struct v3conc_op *op, Etcdserverpb__TxnRequest *t,
                    bool success, Etcdserverpb__RequestOp *rop);
Etcdserverpb__RequestOp *v3conc_op_put(struct v3conc_op *op,
                                       ProtobufCBinaryData key,
                                       ProtobufCBinaryData value,
                                       int64_t lease);
Etcdserverpb__RequestOp *v3conc_op_delete(struct v3conc_op *op,
                                          ProtobufCBinaryData key);
Etcdserverpb__RequestOp *v3conc_op_range(struct v3conc_op *op,
                                         Etcdserverpb__RangeRequest *r);

/* etcd concurrency.NewSession without a lease: grant one of 60 s (its
 * default TTL; orphaned, so it expires unless the client keeps it alive),
 * then next(op, LeaseGrantResponse). */
void v3conc_grant_session(struct v3conc_op *op, v3conc_step next);

#endif /* KEEL_V3CONC_H */
