/*
 * server/v3conc.c: clientv3/concurrency's building blocks over in-process
 * calls (see v3conc.h).
 *
 * waitDeletes as a state machine (etcd: concurrency/key.go):
 *
 *   range(prefix, max_create_rev, last create, limit 1)
 *     ├─ no key ─────────────────────────────▶ wait_done(range response)
 *     └─ last key K ─▶ watch prefix from the range's revision
 *           ├─ DELETE of K ─────────▶ cancel watch, range again
 *           ├─ DELETE of own_key ───▶ fail (lease gone)
 *           └─ anything else ───────▶ keep watching
 *
 * Suspended in: a local Range (op->local), or a local Watch
 * (op->local); the parent's cancel ends either.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "keel_err.h"
#include "router.h"
#include "server.h"
#include "v3conc.h"

#define V3CONC_SESSION_TTL 60 /* etcd: concurrency defaultSessionTTL */

/* The caller's auth metadata travels with the inner calls (etcd's servers
 * pass the request context down to their in-process client). */
static size_t auth_md(struct grpc_call *call, struct router_header *md)
{
    static const char *const names[] = {"token", "authorization"};
    size_t n = 0;
    for (size_t i = 0; i < 2; i++) {
        const char *v = grpc_call_header(call, names[i]);
        if (v != NULL) {
            md[n].name = names[i];
            md[n].value = v;
            n++;
        }
    }
    return n;
}

static void *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf != NULL) {
        protobuf_c_message_pack(m, buf);
    }
    return buf;
}

/* ---- the op and its parent ---------------------------------------------- */

static void finish(struct v3conc_op *op)
{
    op->finished = true;
    if (op->local != NULL) {
        grpc_local_cancel(op->local);
        op->local = NULL;
    }
}

static void parent_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    struct v3conc_op *op = data;
    if (op->finished) {
        return;
    }
    if (op->on_cancel != NULL) {
        op->on_cancel(op);
    }
    finish(op);
    grpc_call_finish(call, KEEL_ECANCELED);
}

struct v3conc_op *v3conc_op_new(struct keel_server *s, struct grpc_call *call)
{
    struct v3conc_op *op = keel_arena_alloc(grpc_call_arena(call), sizeof *op);
    if (op != NULL) {
        memset(op, 0, sizeof *op);
        op->s = s;
        op->call = call;
        grpc_call_on_cancel(call, parent_cancel, op);
    }
    return op;
}

void v3conc_reply(struct v3conc_op *op, ProtobufCMessage *resp)
{
    if (op->finished) {
        return;
    }
    finish(op);
    if (resp == NULL) {
        grpc_call_fail(op->call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(op->call, resp);
}

void v3conc_fail(struct v3conc_op *op, const char *message)
{
    if (op->finished) {
        return;
    }
    finish(op);
    grpc_call_fail_status(op->call, KEEL_GRPC_UNKNOWN, message);
}

/* ---- unary local calls -------------------------------------------------- */

static void unary_message(void *data, const uint8_t *buf, size_t len)
{
    struct v3conc_op *op = data;
    op->resp = protobuf_c_message_unpack(op->resp_desc,
                                         &grpc_call_arena(op->call)->pb, len,
                                         buf);
}

static void unary_done(void *data, int code, const char *message)
{
    struct v3conc_op *op = data;
    op->local = NULL;
    if (op->finished) {
        return;
    }
    if (code != KEEL_GRPC_OK) {
        v3conc_fail(op, message);
        return;
    }
    if (op->resp == NULL) {
        v3conc_fail(op, keel_strerror(KEEL_ENOMEM));
        return;
    }
    op->next(op, op->resp);
}

void v3conc_unary(struct v3conc_op *op, const char *path,
                  const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *resp_desc,
                  v3conc_step next)
{
    if (op->finished) {
        return;
    }
    if (req == NULL) {
        v3conc_fail(op, keel_strerror(KEEL_ENOMEM));
        return;
    }
    size_t len = 0;
    void *buf = pack(req, &len);
    struct router_header md[2];
    struct grpc_local_opts o = {0};
    o.loop = server_loop(op->s);
    o.md = md;
    o.n_md = auth_md(op->call, md);
    o.on_message = unary_message;
    o.on_done = unary_done;
    o.data = op;
    op->resp = NULL;
    op->resp_desc = resp_desc;
    op->next = next;
    int rv = buf == NULL ? KEEL_ENOMEM
                         : grpc_server_call_local(server_grpc(op->s), path, buf,
                                                  len, &o, &op->local);
    free(buf);
    if (rv != 0) {
        op->local = NULL;
        v3conc_fail(op, keel_strerror(rv));
    }
}

/* ---- fire and forget ---------------------------------------------------- */

static void fire_message(void *data, const uint8_t *buf, size_t len)
{
    (void)data;
    (void)buf;
    (void)len;
}

static void fire_done(void *data, int code, const char *message)
{
    (void)data;
    (void)code;
    (void)message;
}

void v3conc_fire(struct keel_server *s, struct grpc_call *md_from,
                 const char *path, const ProtobufCMessage *req)
{
    size_t len = 0;
    void *buf = pack(req, &len);
    if (buf == NULL) {
        return;
    }
    struct router_header md[2];
    struct grpc_local_opts o = {0};
    o.loop = server_loop(s);
    o.md = md;
    o.n_md = auth_md(md_from, md);
    o.on_message = fire_message;
    o.on_done = fire_done;
    struct grpc_call *c = NULL;
    grpc_server_call_local(server_grpc(s), path, buf, len, &o, &c);
    free(buf);
}

/* ---- requests ----------------------------------------------------------- */

static void *alloc(struct v3conc_op *op, size_t n)
{
    return keel_arena_alloc(grpc_call_arena(op->call), n);
}

ProtobufCBinaryData v3conc_prefix(struct v3conc_op *op,
                                  const ProtobufCBinaryData *name)
{
    ProtobufCBinaryData b = {0, NULL};
    uint8_t *p = alloc(op, name->len + 1);
    if (p != NULL) {
        if (name->len > 0) {
            memcpy(p, name->data, name->len);
        }
        p[name->len] = '/';
        b.data = p;
        b.len = name->len + 1;
    }
    return b;
}

ProtobufCBinaryData v3conc_key(struct v3conc_op *op,
                               const ProtobufCBinaryData *name, int64_t lease)
{
    ProtobufCBinaryData b = {0, NULL};
    uint8_t *p = alloc(op, name->len + 18);
    if (p != NULL) {
        if (name->len > 0) {
            memcpy(p, name->data, name->len);
        }
        /* etcd: fmt.Sprintf("%s%x", pfx, lease) */
        int n = snprintf((char *)p + name->len, 18, "/%" PRIx64,
                         (uint64_t)lease);
        b.data = p;
        b.len = name->len + (size_t)n;
    }
    return b;
}

/* The end of the range of every key starting with prefix (etcd
 * GetPrefixRangeEnd). */
static ProtobufCBinaryData prefix_end(struct v3conc_op *op,
                                      ProtobufCBinaryData prefix)
{
    ProtobufCBinaryData e = {0, NULL};
    uint8_t *p = alloc(op, prefix.len ? prefix.len : 1);
    if (p == NULL) {
        return e;
    }
    memcpy(p, prefix.data, prefix.len);
    for (size_t i = prefix.len; i > 0; i--) {
        if (p[i - 1] < 0xff) {
            p[i - 1]++;
            e.data = p;
            e.len = i;
            return e;
        }
    }
    p[0] = 0; /* all 0xff: every key >= prefix */
    e.data = p;
    e.len = 1;
    return e;
}

Etcdserverpb__RangeRequest *v3conc_first_create(struct v3conc_op *op,
                                                ProtobufCBinaryData prefix)
{
    Etcdserverpb__RangeRequest *r = alloc(op, sizeof *r);
    if (r != NULL) {
        etcdserverpb__range_request__init(r);
        r->key = prefix;
        r->range_end = prefix_end(op, prefix);
        r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
        r->sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
        r->limit = 1;
    }
    return r;
}

Etcdserverpb__TxnRequest *v3conc_txn_if_created(struct v3conc_op *op,
                                                ProtobufCBinaryData key,
                                                int64_t rev)
{
    Etcdserverpb__TxnRequest *t = alloc(op, sizeof *t);
    Etcdserverpb__Compare *c = alloc(op, sizeof *c);
    Etcdserverpb__Compare **cv = alloc(op, sizeof *cv);
    if (t == NULL || c == NULL || cv == NULL) {
        return NULL;
    }
    etcdserverpb__txn_request__init(t);
    etcdserverpb__compare__init(c);
    c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    c->key = key;
    c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    c->create_revision = rev;
    cv[0] = c;
    t->compare = cv;
    t->n_compare = 1;
    return t;
}

void v3conc_txn_add(struct v3conc_op *op, Etcdserverpb__TxnRequest *t,
                    bool success, Etcdserverpb__RequestOp *rop)
{
    if (t == NULL) {
        return;
    }
    Etcdserverpb__RequestOp ***list = success ? &t->success : &t->failure;
    size_t *n = success ? &t->n_success : &t->n_failure;
    Etcdserverpb__RequestOp **v = alloc(op, (*n + 1) * sizeof *v);
    if (v == NULL || rop == NULL) {
        /* an incomplete txn must not be sent: drop the compare too */
        t->n_compare = 0;
        t->compare = NULL;
        t->n_success = t->n_failure = 0;
        return;
    }
    if (*n > 0) {
        memcpy(v, *list, *n * sizeof *v);
    }
    v[(*n)++] = rop;
    *list = v;
}

Etcdserverpb__RequestOp *v3conc_op_put(struct v3conc_op *op,
                                       ProtobufCBinaryData key,
                                       ProtobufCBinaryData value,
                                       int64_t lease)
{
    Etcdserverpb__RequestOp *o = alloc(op, sizeof *o);
    Etcdserverpb__PutRequest *p = alloc(op, sizeof *p);
    if (o == NULL || p == NULL) {
        return NULL;
    }
    etcdserverpb__request_op__init(o);
    etcdserverpb__put_request__init(p);
    p->key = key;
    p->value = value;
    p->lease = lease;
    o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    o->request_put = p;
    return o;
}

Etcdserverpb__RequestOp *v3conc_op_delete(struct v3conc_op *op,
                                          ProtobufCBinaryData key)
{
    Etcdserverpb__RequestOp *o = alloc(op, sizeof *o);
    Etcdserverpb__DeleteRangeRequest *d = alloc(op, sizeof *d);
    if (o == NULL || d == NULL) {
        return NULL;
    }
    etcdserverpb__request_op__init(o);
    etcdserverpb__delete_range_request__init(d);
    d->key = key;
    o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    o->request_delete_range = d;
    return o;
}

Etcdserverpb__RequestOp *v3conc_op_range(struct v3conc_op *op,
                                         Etcdserverpb__RangeRequest *r)
{
    Etcdserverpb__RequestOp *o = alloc(op, sizeof *o);
    if (o == NULL || r == NULL) {
        return NULL;
    }
    etcdserverpb__request_op__init(o);
    o->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    o->request_range = r;
    return o;
}

void v3conc_grant_session(struct v3conc_op *op, v3conc_step next)
{
    Etcdserverpb__LeaseGrantRequest *g = alloc(op, sizeof *g);
    if (g != NULL) {
        etcdserverpb__lease_grant_request__init(g);
        g->ttl = V3CONC_SESSION_TTL;
    }
    v3conc_unary(op, "/etcdserverpb.Lease/LeaseGrant", g ? &g->base : NULL,
                 &etcdserverpb__lease_grant_response__descriptor, next);
}

/* ---- waitDeletes -------------------------------------------------------- */

static bool bin_eq(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static void watch_message(void *data, const uint8_t *buf, size_t len)
{
    struct v3conc_op *op = data;
    if (op->finished || op->local == NULL || op->on_watch == NULL) {
        return;
    }
    struct keel_arena tmp;
    keel_arena_init(&tmp, 0);
    Etcdserverpb__WatchResponse *wr =
        etcdserverpb__watch_response__unpack(&tmp.pb, len, buf);
    if (wr == NULL) {
        v3conc_fail(op, keel_strerror(KEEL_ENOMEM));
    } else {
        op->on_watch(op, wr);
    }
    keel_arena_free(&tmp);
}

/* Back-pressure: the local watch sees the parent's queue (an Observe
 * stream to a slow client) and falls behind, to be replayed from storage
 * once the parent drained, instead of queueing without bound. */
static size_t watch_buffered(void *data)
{
    struct v3conc_op *op = data;
    return grpc_call_buffered(op->call); /* the Watch service's budget */
}

static void parent_drained(struct grpc_call *call, void *data)
{
    (void)call;
    struct v3conc_op *op = data;
    if (op->local != NULL && op->on_watch != NULL) {
        grpc_local_drained(op->local);
    }
}

static void watch_done(void *data, int code, const char *message)
{
    struct v3conc_op *op = data;
    op->local = NULL;
    if (!op->finished) {
        v3conc_fail(op, code != KEEL_GRPC_OK ? message
                                             : "lost watcher waiting for delete");
    }
}

void v3conc_watch(struct v3conc_op *op, ProtobufCBinaryData key,
                  ProtobufCBinaryData range_end, int64_t rev,
                  v3conc_watch_cb on_watch)
{
    if (op->finished) {
        return;
    }
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key = key;
    c.range_end = range_end;
    c.start_revision = rev;
    Etcdserverpb__WatchRequest wq = ETCDSERVERPB__WATCH_REQUEST__INIT;
    wq.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    wq.create_request = &c;
    size_t len = 0;
    void *buf = pack(&wq.base, &len);
    struct router_header md[2];
    struct grpc_local_opts o = {0};
    o.loop = server_loop(op->s);
    o.md = md;
    o.n_md = auth_md(op->call, md);
    o.on_message = watch_message;
    o.on_done = watch_done;
    o.buffered = watch_buffered;
    o.data = op;
    op->on_watch = on_watch;
    grpc_call_on_drain(op->call, parent_drained, op);
    int rv = buf == NULL ? KEEL_ENOMEM
                         : grpc_server_call_local(server_grpc(op->s),
                                                  "/etcdserverpb.Watch/Watch",
                                                  NULL, 0, &o, &op->local);
    if (rv == 0 && op->local != NULL) {
        rv = grpc_local_send(op->local, buf, len);
        if (rv == KEEL_ECANCELED) {
            rv = 0; /* ended already: watch_done tells */
        }
    }
    free(buf);
    if (rv != 0 && !op->finished) {
        op->local = NULL;
        v3conc_fail(op, keel_strerror(rv));
    }
}

void v3conc_watch_stop(struct v3conc_op *op)
{
    op->on_watch = NULL;
    if (op->local != NULL) {
        grpc_local_cancel(op->local);
        op->local = NULL;
    }
}

ProtobufCBinaryData v3conc_prefix_end(struct v3conc_op *op,
                                      ProtobufCBinaryData prefix)
{
    return prefix_end(op, prefix);
}

/* ---- waitDeletes -------------------------------------------------------- */

static void wait_range(struct v3conc_op *op);

static void wait_event(struct v3conc_op *op, Etcdserverpb__WatchResponse *wr)
{
    /* canceled (compacted): read again; etcd's waitDelete would report
     * the lost watcher, a fresh range is as good */
    bool again = wr->canceled, gone = false;
    for (size_t i = 0; i < wr->n_events; i++) {
        const Mvccpb__Event *ev = wr->events[i];
        if (ev->type != MVCCPB__EVENT__EVENT_TYPE__DELETE || ev->kv == NULL) {
            continue;
        }
        if (bin_eq(&ev->kv->key, &op->last_key)) {
            again = true;
        } else if (op->own_key.len > 0 && bin_eq(&ev->kv->key, &op->own_key)) {
            gone = true;
        }
    }
    if (gone) {
        v3conc_fail(op, keel_strerror(KEEL_ELEASENOTFOUND));
    } else if (again) {
        v3conc_watch_stop(op);
        wait_range(op);
    }
}

static void wait_ranged(struct v3conc_op *op, ProtobufCMessage *m)
{
    Etcdserverpb__RangeResponse *r = (Etcdserverpb__RangeResponse *)m;
    if (r->n_kvs == 0) {
        op->wait_done(op, m);
        return;
    }
    op->last_key = r->kvs[0]->key;
    v3conc_watch(op, op->prefix, prefix_end(op, op->prefix),
                 r->header != NULL ? r->header->revision : 0, wait_event);
}

static void wait_range(struct v3conc_op *op)
{
    /* etcd: WithLastCreate + WithMaxCreateRev */
    Etcdserverpb__RangeRequest *r = v3conc_first_create(op, op->prefix);
    if (r != NULL) {
        r->sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
        r->max_create_revision = op->max_create_rev;
    }
    v3conc_unary(op, "/etcdserverpb.KV/Range", r ? &r->base : NULL,
                 &etcdserverpb__range_response__descriptor, wait_ranged);
}

void v3conc_wait_deletes(struct v3conc_op *op)
{
    wait_range(op);
}
