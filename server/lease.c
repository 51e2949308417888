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
 * Renewals and TimeToLive need the primary lessor: a follower forwards them
 * to the leader over the peer port (peer_call LEASE_PEER_RENEW / _TTL, as
 * etcd's LeaseRenew / LeaseTimeToLive POST to the leader's /leases) and
 * answers with the leader's TTL under its own header. The leader runs the
 * same barrier + lessor code for them (lease_serve_peer). No leader known:
 * "etcdserver: no leader" at once (etcd first waits up to the request
 * timeout for one); leader unreachable: "etcdserver: request timed out"
 * after one attempt (etcd retries until the request timeout).
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
#include "peer.h"
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

/* ---- forwarding to the leader ------------------------------------------- */

/* Where a renewal or TimeToLive goes: *to 0 answers locally (this member
 * leads, its lessor is primary, or it has no peer transport), else the
 * leader to forward to. KEEL_ENOLEADER when none is known. */
static int forward_target(struct keel_server *s, uint64_t *to)
{
    *to = 0;
    if (lessor_is_primary(server_lessor(s)) || server_peer(s) == NULL) {
        return 0;
    }
    struct node_status st;
    node_status(server_node(s), &st);
    if (st.is_leader) {
        return 0;
    }
    if (st.leader == 0) {
        return KEEL_ENOLEADER;
    }
    *to = st.leader;
    return 0;
}

/* Pack msg and peer_call it to the leader; cb runs iff 0 is returned. */
static int forward(struct keel_server *s,
                   struct peer_call *pc,
                   uint64_t to,
                   uint32_t method,
                   const ProtobufCMessage *msg,
                   peer_call_cb cb)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        return KEEL_ENOMEM;
    }
    protobuf_c_message_pack(msg, buf);
    int rv = peer_call(server_peer(s), pc, to, method, buf, n,
                       server_request_timeout_ms(s), cb);
    free(buf); /* peer_call copied it */
    return rv;
}

/* A failed forward: the leader's own code, or a transport failure, which
 * ends as etcd's forwarding loop does at its deadline. */
static int forward_error(int status)
{
    return keel_err_is_keel(status) ? status : KEEL_ETIMEOUT;
}

/* ---- TimeToLive, Leases (local) ----------------------------------------- */

/* The answer from the primary lessor, after a barrier, built in a. */
static int ttl_build(struct keel_server *s,
                     const Etcdserverpb__LeaseTimeToLiveRequest *req,
                     struct keel_arena *a,
                     Etcdserverpb__LeaseTimeToLiveResponse **out)
{
    Etcdserverpb__LeaseTimeToLiveResponse *resp =
        keel_arena_alloc(a, sizeof *resp);
    if (resp == NULL) {
        return KEEL_ENOMEM;
    }
    etcdserverpb__lease_time_to_live_response__init(resp);
    resp->id = req->id;
    int64_t remaining = 0, granted = 0;
    int rv = lessor_time_to_live(server_lessor(s), req->id, &remaining,
                                 &granted);
    if (rv == KEEL_ELEASENOTFOUND) {
        resp->ttl = -1; /* etcd v3rpc: not an error */
        *out = resp;
        return 0;
    }
    if (rv != 0) {
        return rv;
    }
    resp->ttl = remaining;
    resp->grantedttl = granted;
    if (req->keys) {
        rv = lease_store_keys(node_store(server_node(s)), NULL, req->id, a,
                              &resp->keys, &resp->n_keys);
        if (rv != 0 && rv != KEEL_ELEASENOTFOUND) {
            return rv;
        }
    }
    *out = resp;
    return 0;
}

static void ttl_after_read_index(void *arg, int rv)
{
    struct lease_call *k = arg;
    Etcdserverpb__LeaseTimeToLiveResponse *resp = NULL;
    if (rv == 0) {
        rv = ttl_build(k->s, (const Etcdserverpb__LeaseTimeToLiveRequest *)k->req,
                       grpc_call_arena(k->call), &resp);
    }
    if (rv != 0) {
        grpc_call_fail(k->call, rv);
        return;
    }
    reply(k, &resp->base, &resp->header);
}

struct ttl_fwd
{
    struct peer_call pc; /* first: the callback gets &pc */
    struct lease_call *k;
};

static void ttl_forwarded(struct peer_call *pc,
                          int status,
                          const uint8_t *body,
                          size_t len)
{
    struct lease_call *k = ((struct ttl_fwd *)pc)->k;
    if (status != 0) {
        grpc_call_fail(k->call, forward_error(status));
        return;
    }
    Etcdserverpb__LeaseTimeToLiveResponse *resp =
        etcdserverpb__lease_time_to_live_response__unpack(
            &grpc_call_arena(k->call)->pb, len, body);
    if (resp == NULL) {
        grpc_call_fail(k->call, KEEL_EIO);
        return;
    }
    resp->header = NULL; /* this member's own, as etcd's v3rpc fills it */
    reply(k, &resp->base, &resp->header);
}

static void ttl_start(struct grpc_call *call,
                      const ProtobufCMessage *msg,
                      void *data)
{
    struct lease_call *k = lease_call_new(data, call, msg);
    struct ttl_fwd *f = keel_arena_alloc(grpc_call_arena(call), sizeof *f);
    if (k == NULL || f == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    uint64_t to = 0;
    int rv = forward_target(k->s, &to);
    if (rv == 0 && to != 0) {
        f->k = k;
        rv = forward(k->s, &f->pc, to, LEASE_PEER_TTL, msg, ttl_forwarded);
    } else if (rv == 0) {
        rv = node_read_index(server_node(k->s), ttl_after_read_index, k);
    }
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
    bool barrier;   /* a ReadIndex round or a forward (pc) is in flight */
    bool half_closed;
    struct peer_call pc; /* forwards the head request to the leader */
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
static void ka_forwarded(struct peer_call *pc,
                         int status,
                         const uint8_t *body,
                         size_t len);

static void ka_issue_barrier(struct ka_stream *st)
{
    if (st->barrier || st->queued == 0 || st->call == NULL) {
        return;
    }
    uint64_t to = 0;
    int rv = forward_target(st->s, &to);
    if (rv == 0 && to != 0) {
        /* one forward at a time keeps the answers in request order */
        Etcdserverpb__LeaseKeepAliveRequest req =
            ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
        req.id = st->head->id;
        st->pc.data = st;
        rv = forward(st->s, &st->pc, to, LEASE_PEER_RENEW, &req.base,
                     ka_forwarded);
        if (rv != 0) {
            ka_finish(st, rv);
            return;
        }
        st->barrier = true;
        st->covered = 1;
        return;
    }
    if (rv == 0) {
        rv = node_read_index(server_node(st->s), ka_after_read_index, st);
    }
    if (rv != 0) {
        ka_finish(st, rv);
        return;
    }
    st->barrier = true;
    st->covered = st->queued;
}

/* Answer r with the renewal's outcome (rv, ttl: lessor_renew's). */
static void ka_send(struct ka_stream *st, struct ka_req *r, int rv, int64_t ttl)
{
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

static struct ka_req *ka_pop(struct ka_stream *st)
{
    struct ka_req *r = st->head;
    st->head = r->next;
    if (st->head == NULL) {
        st->tail = &st->head;
    }
    st->queued--;
    return r;
}

static void ka_continue(struct ka_stream *st);

static void ka_after_read_index(void *arg, int rv)
{
    struct ka_stream *st = arg;
    st->barrier = false;
    if (rv != 0) {
        ka_finish(st, rv);
    }
    for (size_t i = 0; i < st->covered && st->call != NULL; i++) {
        struct ka_req *r = ka_pop(st);
        int64_t ttl = 0;
        int renewed = lessor_renew(server_lessor(st->s), r->id, &ttl);
        ka_send(st, r, renewed, ttl);
        free(r);
    }
    ka_continue(st);
}

static void ka_forwarded(struct peer_call *pc,
                         int status,
                         const uint8_t *body,
                         size_t len)
{
    struct ka_stream *st = pc->data;
    st->barrier = false;
    int64_t ttl = 0;
    if (status == 0) {
        Etcdserverpb__LeaseKeepAliveResponse *resp =
            etcdserverpb__lease_keep_alive_response__unpack(NULL, len, body);
        status = resp == NULL ? KEEL_EIO : 0;
        if (resp != NULL) {
            ttl = resp->ttl;
            etcdserverpb__lease_keep_alive_response__free_unpacked(resp, NULL);
        }
    } else if (status != KEEL_ELEASENOTFOUND) {
        status = forward_error(status);
    }
    if (st->call != NULL && st->head != NULL) {
        struct ka_req *r = ka_pop(st);
        ka_send(st, r, status, ttl);
        free(r);
    }
    ka_continue(st);
}

/* After the in-flight round answered its requests: the next round, the
 * end of a half-closed stream, or the stream's free. */
static void ka_continue(struct ka_stream *st)
{
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

/* ---- on the leader: renewals and TimeToLive forwarded by followers ------ */

struct peer_lease_req
{
    struct keel_server *s;
    struct peer_responder *r;
    uint32_t method;
    ProtobufCMessage *req; /* in a */
    struct keel_arena a;
};

static void peer_lease_after_read_index(void *arg, int rv)
{
    struct peer_lease_req *p = arg;
    Etcdserverpb__LeaseKeepAliveResponse ka =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_RESPONSE__INIT;
    Etcdserverpb__LeaseTimeToLiveResponse *t = NULL;
    ProtobufCMessage *resp = NULL;
    if (rv == 0 && p->method == LEASE_PEER_RENEW) {
        ka.id = ((const Etcdserverpb__LeaseKeepAliveRequest *)p->req)->id;
        rv = lessor_renew(server_lessor(p->s), ka.id, &ka.ttl);
        resp = &ka.base;
    } else if (rv == 0) {
        rv = ttl_build(p->s, (const Etcdserverpb__LeaseTimeToLiveRequest *)p->req,
                       &p->a, &t);
        resp = rv == 0 ? &t->base : NULL;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    if (rv == 0) {
        n = protobuf_c_message_get_packed_size(resp);
        buf = keel_arena_alloc(&p->a, n ? n : 1);
        rv = buf == NULL ? KEEL_ENOMEM : 0;
    }
    if (rv == 0) {
        protobuf_c_message_pack(resp, buf);
    }
    peer_respond(p->r, rv, rv == 0 ? buf : NULL, rv == 0 ? n : 0);
    keel_arena_free(&p->a);
    free(p);
}

void lease_serve_peer(struct keel_server *s,
                      uint32_t method,
                      const uint8_t *body,
                      size_t len,
                      struct peer_responder *r)
{
    struct peer_lease_req *p = calloc(1, sizeof *p);
    if (p == NULL) {
        peer_respond(r, KEEL_ENOMEM, NULL, 0);
        return;
    }
    p->s = s;
    p->r = r;
    p->method = method;
    keel_arena_init(&p->a, 0);
    p->req = protobuf_c_message_unpack(
        method == LEASE_PEER_RENEW
            ? &etcdserverpb__lease_keep_alive_request__descriptor
            : &etcdserverpb__lease_time_to_live_request__descriptor,
        &p->a.pb, len, body);
    /* the same barrier as a local request: this member still leads and has
     * applied everything, so its lessor is current */
    int rv = p->req == NULL ? KEEL_EINVAL
                            : node_read_index(server_node(s),
                                              peer_lease_after_read_index, p);
    if (rv != 0) {
        peer_lease_after_read_index(p, rv);
    }
}
