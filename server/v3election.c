/*
 * server/v3election.c: the v3electionpb.Election service as etcd 3.4's
 * v3election server answers it (etcdserver/api/v3election/election.go on
 * clientv3/concurrency's Election), over keel's own KV/Lease/Watch
 * (server/v3conc.h). The candidates of election N are the keys
 * "N/<lease hex>"; the leader is the one created first.
 *
 * Campaign(name, value, lease):
 *   [lease 0: grant a 60 s session lease]
 *   txn if create_revision(key) == 0 then put(key, value, lease)
 *       else range(key)
 *   [already a candidate with another value: Proclaim it]
 *   waitDeletes(prefix, our create revision - 1)
 *   ─▶ {campaign txn header, leader {name, key, rev, lease}}
 *   The client cancelling the wait resigns (etcd: Campaign's cleanup).
 * Proclaim/Resign: txn if create_revision(key) == rev then put/delete.
 * Leader: the first created key, or "election: no leader".
 * Observe (server stream), etcd's observe loop:
 *   range first created ─┬─ none ─▶ watch the prefix until a put ─┐
 *                        └─ kv ──────────────────────────────────┤
 *   send {header, kv} ◀───────────────────────────────────────────┘
 *   watch kv's key from the next revision: each put is sent; a delete
 *   starts over with the range.
 * Errors are etcd's texts with code Unknown ("election: not leader",
 * "\"leader\" field must be provided", inner KV errors).
 */
#include <string.h>

#include "grpc.h"
#include "keel_err.h"
#include "server.h"
#include "v3conc.h"
#include "v3electionpb/v3election.pb-c.h"

/* etcd: v3election.ErrMissingLeaderKey, concurrency.ErrElectionNotLeader,
 * concurrency.ErrElectionNoLeader */
static const char ERR_MISSING_LEADER[] = "\"leader\" field must be provided";
static const char ERR_NOT_LEADER[] = "election: not leader";
static const char ERR_NO_LEADER[] = "election: no leader";

struct elect
{
    ProtobufCBinaryData name, key, value;
    int64_t lease, rev;
    Etcdserverpb__ResponseHeader *hdr;
    /* Observe: the leader key being followed */
    ProtobufCBinaryData watching;
};

static struct keel_arena *arena(struct v3conc_op *op)
{
    return grpc_call_arena(op->call);
}

static struct v3conc_op *op_new(struct keel_server *s, struct grpc_call *call)
{
    struct v3conc_op *op = v3conc_op_new(s, call);
    struct elect *e = keel_arena_alloc(grpc_call_arena(call), sizeof *e);
    if (op == NULL || e == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return NULL;
    }
    memset(e, 0, sizeof *e);
    op->data = e;
    return op;
}

/* txn if create_revision(key) == rev then put(key, value) (value NULL:
 * delete(key)) */
static void guarded(struct v3conc_op *op, ProtobufCBinaryData key, int64_t rev,
                    const ProtobufCBinaryData *value, int64_t lease,
                    v3conc_step next)
{
    Etcdserverpb__TxnRequest *t = v3conc_txn_if_created(op, key, rev);
    v3conc_txn_add(op, t, true,
                   value != NULL ? v3conc_op_put(op, key, *value, lease)
                                 : v3conc_op_delete(op, key));
    if (t != NULL && t->n_compare == 0) {
        t = NULL;
    }
    v3conc_unary(op, "/etcdserverpb.KV/Txn", t ? &t->base : NULL,
                 &etcdserverpb__txn_response__descriptor, next);
}

/* ---- Campaign ----------------------------------------------------------- */

static void campaign_reply(struct v3conc_op *op, ProtobufCMessage *m)
{
    (void)m;
    struct elect *e = op->data;
    V3electionpb__CampaignResponse *r =
        (V3electionpb__CampaignResponse *)server_new_message(
            arena(op), &v3electionpb__campaign_response__descriptor);
    V3electionpb__LeaderKey *k =
        (V3electionpb__LeaderKey *)server_new_message(
            arena(op), &v3electionpb__leader_key__descriptor);
    if (r != NULL && k != NULL) {
        k->name = e->name;
        k->key = e->key;
        k->rev = e->rev;
        k->lease = e->lease;
        r->leader = k;
        r->header = e->hdr;
    }
    op->on_cancel = NULL;
    v3conc_reply(op, r != NULL && k != NULL ? &r->base : NULL);
}

/* The client left while campaigning: resign (etcd: e.Resign on ctx done). */
static void campaign_cancel(struct v3conc_op *op)
{
    struct elect *e = op->data;
    Etcdserverpb__TxnRequest *t = v3conc_txn_if_created(op, e->key, e->rev);
    v3conc_txn_add(op, t, true, v3conc_op_delete(op, e->key));
    if (t != NULL && t->n_compare > 0) {
        v3conc_fire(op->s, op->call, "/etcdserverpb.KV/Txn", &t->base);
    }
}

static void campaign_wait(struct v3conc_op *op)
{
    struct elect *e = op->data;
    op->on_cancel = campaign_cancel;
    op->own_key = e->key;
    op->max_create_rev = e->rev - 1;
    op->wait_done = campaign_reply;
    v3conc_wait_deletes(op);
}

static void campaign_resigned(struct v3conc_op *op, ProtobufCMessage *m)
{
    (void)m;
    v3conc_fail(op, ERR_NOT_LEADER);
}

static void campaign_proclaimed(struct v3conc_op *op, ProtobufCMessage *m)
{
    struct elect *e = op->data;
    if (!((Etcdserverpb__TxnResponse *)m)->succeeded) {
        /* etcd: Proclaim failed, Resign, return ErrElectionNotLeader */
        guarded(op, e->key, e->rev, NULL, 0, campaign_resigned);
        return;
    }
    campaign_wait(op);
}

static void campaign_txn_done(struct v3conc_op *op, ProtobufCMessage *m)
{
    struct elect *e = op->data;
    Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)m;
    e->hdr = t->header;
    e->rev = t->header != NULL ? t->header->revision : 0;
    if (!t->succeeded) {
        const Etcdserverpb__RangeResponse *own =
            t->n_responses > 0 ? t->responses[0]->response_range : NULL;
        if (own == NULL || own->n_kvs == 0) {
            v3conc_fail(op, keel_strerror(KEEL_EIO));
            return;
        }
        const Mvccpb__KeyValue *kv = own->kvs[0];
        e->rev = kv->create_revision;
        if (kv->value.len != e->value.len ||
            (kv->value.len > 0 &&
             memcmp(kv->value.data, e->value.data, kv->value.len) != 0)) {
            guarded(op, e->key, e->rev, &e->value, e->lease,
                    campaign_proclaimed);
            return;
        }
    }
    campaign_wait(op);
}

static void campaign_with_lease(struct v3conc_op *op, int64_t lease)
{
    struct elect *e = op->data;
    e->lease = lease;
    e->key = v3conc_key(op, &e->name, lease);
    Etcdserverpb__TxnRequest *t = v3conc_txn_if_created(op, e->key, 0);
    v3conc_txn_add(op, t, true, v3conc_op_put(op, e->key, e->value, lease));
    Etcdserverpb__RangeRequest *own =
        (Etcdserverpb__RangeRequest *)server_new_message(
            arena(op), &etcdserverpb__range_request__descriptor);
    if (own != NULL) {
        own->key = e->key;
    }
    v3conc_txn_add(op, t, false, v3conc_op_range(op, own));
    if (t != NULL && t->n_compare == 0) {
        t = NULL;
    }
    v3conc_unary(op, "/etcdserverpb.KV/Txn", t ? &t->base : NULL,
                 &etcdserverpb__txn_response__descriptor, campaign_txn_done);
}

static void campaign_granted(struct v3conc_op *op, ProtobufCMessage *m)
{
    campaign_with_lease(op, ((Etcdserverpb__LeaseGrantResponse *)m)->id);
}

static void campaign_start(struct grpc_call *call, const ProtobufCMessage *msg,
                           void *data)
{
    const V3electionpb__CampaignRequest *req =
        (const V3electionpb__CampaignRequest *)msg;
    struct v3conc_op *op = op_new(data, call);
    if (op == NULL) {
        return;
    }
    struct elect *e = op->data;
    e->name = req->name;
    e->value = req->value;
    op->prefix = v3conc_prefix(op, &req->name);
    if (req->lease == 0) {
        v3conc_grant_session(op, campaign_granted);
        return;
    }
    campaign_with_lease(op, req->lease);
}

/* ---- Proclaim, Resign --------------------------------------------------- */

static void proclaim_done(struct v3conc_op *op, ProtobufCMessage *m)
{
    Etcdserverpb__TxnResponse *t = (Etcdserverpb__TxnResponse *)m;
    if (!t->succeeded) {
        v3conc_fail(op, ERR_NOT_LEADER);
        return;
    }
    V3electionpb__ProclaimResponse *r =
        (V3electionpb__ProclaimResponse *)server_new_message(
            arena(op), &v3electionpb__proclaim_response__descriptor);
    if (r != NULL) {
        r->header = t->header;
    }
    v3conc_reply(op, r != NULL ? &r->base : NULL);
}

static void resign_done(struct v3conc_op *op, ProtobufCMessage *m)
{
    V3electionpb__ResignResponse *r =
        (V3electionpb__ResignResponse *)server_new_message(
            arena(op), &v3electionpb__resign_response__descriptor);
    if (r != NULL) {
        r->header = ((Etcdserverpb__TxnResponse *)m)->header;
    }
    v3conc_reply(op, r != NULL ? &r->base : NULL);
}

/* Proclaim (value) or Resign (value NULL) on behalf of leader. */
static void leader_op(struct grpc_call *call, void *data,
                      const V3electionpb__LeaderKey *leader,
                      const ProtobufCBinaryData *value, v3conc_step next)
{
    struct v3conc_op *op = op_new(data, call);
    if (op == NULL) {
        return;
    }
    if (leader == NULL) {
        v3conc_fail(op, ERR_MISSING_LEADER);
        return;
    }
    guarded(op, leader->key, leader->rev, value, leader->lease, next);
}

static void proclaim_start(struct grpc_call *call, const ProtobufCMessage *msg,
                           void *data)
{
    const V3electionpb__ProclaimRequest *req =
        (const V3electionpb__ProclaimRequest *)msg;
    leader_op(call, data, req->leader, &req->value, proclaim_done);
}

static void resign_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    const V3electionpb__ResignRequest *req =
        (const V3electionpb__ResignRequest *)msg;
    leader_op(call, data, req->leader, NULL, resign_done);
}

/* ---- Leader ------------------------------------------------------------- */

static V3electionpb__LeaderResponse *leader_response(
    struct v3conc_op *op, Etcdserverpb__ResponseHeader *h, Mvccpb__KeyValue *kv)
{
    V3electionpb__LeaderResponse *r =
        (V3electionpb__LeaderResponse *)server_new_message(
            arena(op), &v3electionpb__leader_response__descriptor);
    if (r != NULL) {
        r->header = h;
        r->kv = kv;
    }
    return r;
}

static void leader_done(struct v3conc_op *op, ProtobufCMessage *m)
{
    Etcdserverpb__RangeResponse *rr = (Etcdserverpb__RangeResponse *)m;
    if (rr->n_kvs == 0) {
        v3conc_fail(op, ERR_NO_LEADER);
        return;
    }
    V3electionpb__LeaderResponse *r = leader_response(op, rr->header,
                                                      rr->kvs[0]);
    v3conc_reply(op, r != NULL ? &r->base : NULL);
}

/* The first created key under the election's prefix, to next. */
static void range_leader(struct v3conc_op *op, v3conc_step next)
{
    Etcdserverpb__RangeRequest *r = v3conc_first_create(op, op->prefix);
    v3conc_unary(op, "/etcdserverpb.KV/Range", r ? &r->base : NULL,
                 &etcdserverpb__range_response__descriptor, next);
}

/* Leader and Observe: an op on the election the LeaderRequest names. */
static struct v3conc_op *leader_request_op(struct grpc_call *call,
                                           const ProtobufCMessage *msg,
                                           void *data)
{
    const V3electionpb__LeaderRequest *req =
        (const V3electionpb__LeaderRequest *)msg;
    struct v3conc_op *op = op_new(data, call);
    if (op != NULL) {
        op->prefix = v3conc_prefix(op, &req->name);
    }
    return op;
}

static void leader_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    struct v3conc_op *op = leader_request_op(call, msg, data);
    if (op != NULL) {
        range_leader(op, leader_done);
    }
}

/* ---- Observe ------------------------------------------------------------ */

static void observe_range(struct v3conc_op *op);

static void observe_send(struct v3conc_op *op, Etcdserverpb__ResponseHeader *h,
                         Mvccpb__KeyValue *kv)
{
    V3electionpb__LeaderResponse r = V3ELECTIONPB__LEADER_RESPONSE__INIT;
    r.header = h;
    r.kv = kv;
    if (grpc_call_send(op->call, &r.base) != 0) {
        /* the client is gone: its cancel callback ends the op */
        v3conc_watch_stop(op);
    }
}

/* Following the leader's key: its puts are sent, its delete starts over. */
static void observe_key_event(struct v3conc_op *op,
                              Etcdserverpb__WatchResponse *wr)
{
    for (size_t i = 0; i < wr->n_events; i++) {
        const Mvccpb__Event *ev = wr->events[i];
        if (ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
            v3conc_watch_stop(op);
            observe_range(op);
            return;
        }
        observe_send(op, wr->header, ev->kv);
    }
    if (wr->canceled) {
        v3conc_watch_stop(op);
        observe_range(op);
    }
}

static void observe_follow(struct v3conc_op *op, Mvccpb__KeyValue *kv,
                           int64_t rev)
{
    struct elect *e = op->data;
    uint8_t *k = keel_arena_dup(arena(op), kv->key.data,
                                kv->key.len ? kv->key.len : 1);
    e->watching.data = k;
    e->watching.len = kv->key.len;
    ProtobufCBinaryData none = {0, NULL};
    v3conc_watch(op, e->watching, none, rev + 1, observe_key_event);
}

/* No leader yet: wait for the first put under the prefix. */
static void observe_prefix_event(struct v3conc_op *op,
                                 Etcdserverpb__WatchResponse *wr)
{
    for (size_t i = 0; i < wr->n_events; i++) {
        Mvccpb__Event *ev = wr->events[i];
        if (ev->type != MVCCPB__EVENT__EVENT_TYPE__PUT || ev->kv == NULL) {
            continue;
        }
        /* etcd: the header's revision is set to the put's */
        Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
        if (wr->header != NULL) {
            h = *wr->header;
        }
        h.revision = ev->kv->mod_revision;
        observe_send(op, &h, ev->kv);
        if (op->finished) {
            return;
        }
        v3conc_watch_stop(op);
        observe_follow(op, ev->kv, h.revision);
        return;
    }
    if (wr->canceled) {
        v3conc_watch_stop(op);
        observe_range(op);
    }
}

static void observe_ranged(struct v3conc_op *op, ProtobufCMessage *m)
{
    Etcdserverpb__RangeResponse *rr = (Etcdserverpb__RangeResponse *)m;
    int64_t rev = rr->header != NULL ? rr->header->revision : 0;
    if (rr->n_kvs == 0) {
        v3conc_watch(op, op->prefix, v3conc_prefix_end(op, op->prefix), rev,
                     observe_prefix_event);
        return;
    }
    observe_send(op, rr->header, rr->kvs[0]);
    observe_follow(op, rr->kvs[0], rev);
}

static void observe_range(struct v3conc_op *op)
{
    range_leader(op, observe_ranged);
}

static void observe_start(struct grpc_call *call, const ProtobufCMessage *msg,
                          void *data)
{
    struct v3conc_op *op = leader_request_op(call, msg, data);
    if (op != NULL) {
        observe_range(op);
    }
}

int v3election_register(struct keel_server *s, struct grpc_server *g)
{
#define M(name, kind, req, fn)                                                \
    {"/v3electionpb.Election/" name, kind,                                    \
     &v3electionpb__##req##__descriptor, fn, NULL, NULL, NULL, s}
    const struct grpc_method methods[] = {
        M("Campaign", GRPC_UNARY, campaign_request, campaign_start),
        M("Proclaim", GRPC_UNARY, proclaim_request, proclaim_start),
        M("Leader", GRPC_UNARY, leader_request, leader_start),
        M("Observe", GRPC_SERVER_STREAM, leader_request, observe_start),
        M("Resign", GRPC_UNARY, resign_request, resign_start),
    };
#undef M
    return server_register_methods(g, methods,
                                   sizeof methods / sizeof methods[0]);
}
