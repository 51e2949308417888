/*
 * server/lease.c: the etcdserverpb.Lease service as etcd 3.4 answers it
 * (etcdserver/api/v3rpc/lease.go, etcdserver/v3_server.go).
 *
 *   LeaseGrant: TTL above MaxLeaseTTL -> "too large lease TTL"; a TTL
 *     below the minimum is raised to it; ID 0 gets a fresh positive id
 *     chosen here, before proposing, so every member grants the same lease.
 *     Proposed through raft; a taken id fails at apply ("lease already
 *     exists").
 *   LeaseRevoke: proposed; unknown lease -> "requested lease not found".
 *   LeaseKeepAlive (bidi): each request is answered {ID, TTL}, in order, after
 * a ReadIndex barrier (this member still leads and has applied everything), by
 * the primary lessor; an unknown or expired lease gets TTL 0 (etcd:
 * ErrLeaseNotFound -> ttl 0). The header is filled before the renewal, as etcd
 * does, so its revision is never past it. LeaseTimeToLive: after the barrier,
 * from the primary lessor; keys from the store; unknown lease -> TTL -1 with
 * the ID echoed, no error. LeaseLeases: the local lessor's table, soonest
 * expiry first.
 *
 * Renewals and TimeToLive need the primary lessor: on a member that is not
 * the leader they fail with "etcdserver: not leader" (etcd forwards them to
 * the leader over the peer port; keel has no peer transport yet).
 *
 * Every handler finishes its call exactly once.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "grpc.h"
#include "keel_err.h"
#include "keelpb/request.pb-c.h"
#include "lessor.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

struct lease_call
{
    struct keel_server *s;
    struct grpc_call *call;
    const ProtobufCMessage *req;
};

static struct lease_call *lease_call_new(struct keel_server *s,
                                         struct grpc_call *c,
                                         const ProtobufCMessage *req)
{
    struct lease_call *k = keel_arena_alloc(grpc_call_arena(c), sizeof *k);
    if (k != NULL) {
        k->s = s;
        k->call = c;
        k->req = req;
    }
    return k;
}

static int64_t current_revision(struct keel_server *s)
{
    return mvcc_revision(node_store(server_node(s)));
}

/* Fill *hdr (allocated when NULL) and reply. */
static void reply(struct lease_call *k,
                  ProtobufCMessage *resp,
                  Etcdserverpb__ResponseHeader **hdr)
{
    *hdr = server_header(k->s, *hdr, grpc_call_arena(k->call),
                         current_revision(k->s));
    if (*hdr == NULL) {
        grpc_call_fail(k->call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(k->call, resp);
}

/* ---- Grant / Revoke (through raft) -------------------------------------- */

static void write_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct lease_call *k = arg;
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    if (resp->descriptor == &etcdserverpb__lease_grant_response__descriptor) {
        Etcdserverpb__LeaseGrantResponse *r =
            (Etcdserverpb__LeaseGrantResponse *)resp;
        reply(k, resp, &r->header);
    } else if (resp->descriptor ==
               &etcdserverpb__lease_revoke_response__descriptor) {
        Etcdserverpb__LeaseRevokeResponse *r =
            (Etcdserverpb__LeaseRevokeResponse *)resp;
        reply(k, resp, &r->header);
    } else {
        grpc_call_fail(k->call, KEEL_EINVAL);
    }
}

static void propose(struct keel_server *s,
                    struct grpc_call *call,
                    const ProtobufCMessage *msg,
                    Keelpb__Request *kreq)
{
    struct lease_call *k = lease_call_new(s, call, msg);
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

static void grant_start(struct grpc_call *call,
                        const ProtobufCMessage *msg,
                        void *data)
{
    struct keel_server *s = data;
    struct lessor *l = server_lessor(s);
    Etcdserverpb__LeaseGrantRequest *req =
        (Etcdserverpb__LeaseGrantRequest *)msg;
    if (req->ttl > LESSOR_MAX_TTL) {
        grpc_call_fail(call, KEEL_ELEASETTLTOOLARGE);
        return;
    }
    if (req->ttl < lessor_min_ttl(l)) {
        req->ttl = lessor_min_ttl(l); /* etcd lessor.Grant */
    }
    if (req->id == 0) {
        req->id = lessor_next_id(l);
    }
    Keelpb__Request kreq = KEELPB__REQUEST__INIT;
    kreq.op_case = KEELPB__REQUEST__OP_LEASE_GRANT;
    kreq.lease_grant = req;
    propose(s, call, msg, &kreq);
}

static void revoke_start(struct grpc_call *call,
                         const ProtobufCMessage *msg,
                         void *data)
{
    Etcdserverpb__LeaseRevokeRequest *req =
        (Etcdserverpb__LeaseRevokeRequest *)msg;
    Keelpb__Request kreq = KEELPB__REQUEST__INIT;
    kreq.op_case = KEELPB__REQUEST__OP_LEASE_REVOKE;
    kreq.lease_revoke = req;
    propose(data, call, msg, &kreq);
}

/* ---- TimeToLive, Leases (local) ----------------------------------------- */

static void ttl_after_read_index(void *arg, int rv)
{
    struct lease_call *k = arg;
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    const Etcdserverpb__LeaseTimeToLiveRequest *req =
        (const Etcdserverpb__LeaseTimeToLiveRequest *)k->req;
    struct keel_arena *a = grpc_call_arena(k->call);
    Etcdserverpb__LeaseTimeToLiveResponse *resp =
        keel_arena_alloc(a, sizeof *resp);
    if (resp == NULL) {
        grpc_call_fail(k->call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__lease_time_to_live_response__init(resp);
    resp->id = req->id;
    int64_t remaining = 0, granted = 0;
    rv =
        lessor_time_to_live(server_lessor(k->s), req->id, &remaining, &granted);
    if (rv == KEEL_ELEASENOTFOUND) {
        resp->ttl = -1; /* etcd v3rpc: not an error */
        reply(k, &resp->base, &resp->header);
        return;
    }
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    resp->ttl = remaining;
    resp->grantedttl = granted;
    if (req->keys) {
        rv = lease_store_keys(node_store(server_node(k->s)), NULL, req->id, a,
                              &resp->keys, &resp->n_keys);
        if (rv != 0 && rv != KEEL_ELEASENOTFOUND) {
            grpc_call_fail(k->call, rv);
            return;
        }
    }
    reply(k, &resp->base, &resp->header);
}

static void ttl_start(struct grpc_call *call,
                      const ProtobufCMessage *msg,
                      void *data)
{
    struct lease_call *k = lease_call_new(data, call, msg);
    if (k == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    int rv = node_read_index(server_node(k->s), ttl_after_read_index, k);
    if (rv != 0) {
        grpc_call_fail(call, rv);
    }
}

static void leases_start(struct grpc_call *call,
                         const ProtobufCMessage *msg,
                         void *data)
{
    struct lease_call *k = lease_call_new(data, call, msg);
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__LeaseLeasesResponse *resp = keel_arena_alloc(a, sizeof *resp);
    if (k == NULL || resp == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__lease_leases_response__init(resp);
    int64_t *ids = NULL;
    size_t n = 0;
    int rv = lessor_list(server_lessor(k->s), a, &ids, &n);
    Etcdserverpb__LeaseStatus **st =
        n > 0 ? keel_arena_alloc(a, n * sizeof *st) : NULL;
    if (rv != 0 || (n > 0 && st == NULL)) {
        grpc_call_fail(call, rv != 0 ? rv : KEEL_ENOMEM);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        st[i] = keel_arena_alloc(a, sizeof *st[i]);
        if (st[i] == NULL) {
            grpc_call_fail(call, KEEL_ENOMEM);
            return;
        }
        etcdserverpb__lease_status__init(st[i]);
        st[i]->id = ids[i];
    }
    resp->leases = st;
    resp->n_leases = n;
    reply(k, &resp->base, &resp->header);
}

/* ---- KeepAlive (bidi stream) -------------------------------------------- */

/* One stream. Requests are answered in order: each waits in a FIFO for a
 * ReadIndex barrier issued after it arrived; one barrier per stream is in
 * flight at a time and answers every request queued when it was issued.
 * The barrier's callback may come after the call is finished (cancel,
 * error), so the stream lives until the call is finished and no barrier is
 * in flight. */
struct ka_req
{
    int64_t id;
    Etcdserverpb__ResponseHeader hdr; /* filled before the renewal */
    struct ka_req *next;
};

struct ka_stream
{
    struct keel_server *s;
    struct grpc_call *call; /* NULL once finished */
    struct ka_req *head, **tail;
    size_t queued;
    size_t covered; /* requests the in-flight barrier answers */
    bool barrier;   /* a ReadIndex round is in flight */
    bool half_closed;
};

static void ka_drop_queue(struct ka_stream *st)
{
    while (st->head != NULL) {
        struct ka_req *r = st->head;
        st->head = r->next;
        free(r);
    }
    st->tail = &st->head;
    st->queued = 0;
}

static void ka_finish(struct ka_stream *st, int rv)
{
    if (st->call != NULL) {
        struct grpc_call *c = st->call;
        st->call = NULL;
        grpc_call_finish(c, rv);
    }
    ka_drop_queue(st);
}

static void ka_maybe_free(struct ka_stream *st)
{
    if (st->call == NULL && !st->barrier) {
        ka_drop_queue(st);
        free(st);
    }
}

static void ka_after_read_index(void *arg, int rv);

static void ka_issue_barrier(struct ka_stream *st)
{
    if (st->barrier || st->queued == 0 || st->call == NULL) {
        return;
    }
    int rv = node_read_index(server_node(st->s), ka_after_read_index, st);
    if (rv != 0) {
        ka_finish(st, rv);
        return;
    }
    st->barrier = true;
    st->covered = st->queued;
}

static void ka_answer(struct ka_stream *st, struct ka_req *r)
{
    int64_t ttl = 0;
    int rv = lessor_renew(server_lessor(st->s), r->id, &ttl);
    if (rv == KEEL_ELEASENOTFOUND) {
        rv = 0; /* etcd: answered with TTL 0 */
        ttl = 0;
    }
    if (rv != 0) {
        ka_finish(st, rv);
        return;
    }
    Etcdserverpb__LeaseKeepAliveResponse resp =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    resp.header = &r->hdr;
    resp.id = r->id;
    resp.ttl = ttl;
    grpc_call_send(st->call, &resp.base);
}

static void ka_after_read_index(void *arg, int rv)
{
    struct ka_stream *st = arg;
    st->barrier = false;
    if (rv != 0) {
        ka_finish(st, rv);
    }
    for (size_t i = 0; i < st->covered && st->call != NULL; i++) {
        struct ka_req *r = st->head;
        st->head = r->next;
        if (st->head == NULL) {
            st->tail = &st->head;
        }
        st->queued--;
        ka_answer(st, r);
        free(r);
    }
    st->covered = 0;
    if (st->call != NULL) {
        if (st->queued > 0) {
            ka_issue_barrier(st);
        } else if (st->half_closed) {
            ka_finish(st, 0);
        }
    }
    ka_maybe_free(st);
}

static void ka_start(struct grpc_call *call,
                     const ProtobufCMessage *msg,
                     void *data)
{
    (void)msg;
    struct ka_stream *st = calloc(1, sizeof *st);
    if (st == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    st->s = data;
    st->call = call;
    st->tail = &st->head;
    grpc_call_set_data(call, st);
}

static void ka_message(struct grpc_call *call,
                       const ProtobufCMessage *msg,
                       const uint8_t *raw,
                       size_t len,
                       void *data)
{
    (void)raw;
    (void)len;
    (void)data;
    struct ka_stream *st = grpc_call_data(call);
    if (st == NULL || st->call == NULL) {
        return;
    }
    const Etcdserverpb__LeaseKeepAliveRequest *req =
        (const Etcdserverpb__LeaseKeepAliveRequest *)msg;
    struct ka_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        ka_finish(st, KEEL_ENOMEM);
        ka_maybe_free(st);
        return;
    }
    r->id = req->id;
    etcdserverpb__response_header__init(&r->hdr);
    server_header(st->s, &r->hdr, NULL, current_revision(st->s));
    *st->tail = r;
    st->tail = &r->next;
    st->queued++;
    ka_issue_barrier(st);
    ka_maybe_free(st);
}

static void ka_half_close(struct grpc_call *call, void *data)
{
    (void)data;
    struct ka_stream *st = grpc_call_data(call);
    if (st == NULL || st->call == NULL) {
        return;
    }
    st->half_closed = true;
    if (st->queued == 0 && !st->barrier) {
        ka_finish(st, 0);
        ka_maybe_free(st);
    }
}

static void ka_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    (void)data;
    struct ka_stream *st = grpc_call_data(call);
    if (st == NULL || st->call == NULL) {
        return;
    }
    ka_finish(st, KEEL_ECANCELED);
    ka_maybe_free(st);
}

int lease_register(struct keel_server *s, struct grpc_server *g)
{
    const struct grpc_method methods[] = {
        {"/etcdserverpb.Lease/LeaseGrant", GRPC_UNARY,
         &etcdserverpb__lease_grant_request__descriptor, grant_start, NULL,
         NULL, NULL, s},
        {"/etcdserverpb.Lease/LeaseRevoke", GRPC_UNARY,
         &etcdserverpb__lease_revoke_request__descriptor, revoke_start, NULL,
         NULL, NULL, s},
        {"/etcdserverpb.Lease/LeaseKeepAlive", GRPC_BIDI,
         &etcdserverpb__lease_keep_alive_request__descriptor, ka_start,
         ka_message, ka_half_close, ka_cancel, s},
        {"/etcdserverpb.Lease/LeaseTimeToLive", GRPC_UNARY,
         &etcdserverpb__lease_time_to_live_request__descriptor, ttl_start, NULL,
         NULL, NULL, s},
        {"/etcdserverpb.Lease/LeaseLeases", GRPC_UNARY,
         &etcdserverpb__lease_leases_request__descriptor, leases_start, NULL,
         NULL, NULL, s},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int rv = grpc_server_register(g, &methods[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}
