/*
 * Lease keepalive that survives reconnects.
 *
 *   start ─▶ open stream ─▶ send(id) ─▶ response TTL > 0 ─▶ cb
 *              ▲                  ▲                         │
 *              │                  └──── timer TTL/3 ◀───────┘
 *              │
 *   retry timer ◀── stream ended Unavailable/Internal (connection lost)
 *
 *   response TTL <= 0 ─▶ end NOT_FOUND "etcdserver: requested lease not
 *                        found" (expired or revoked, as clientv3 reports)
 *   keel_lease_keepalive_stop ─▶ end CANCELED
 *
 * Suspended in: the stream (a response), the timer (next keepalive or the
 * retry delay). One uv_timer_t serves both; it is closed before end_cb
 * runs, so the struct may be freed in end_cb.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"
#include "keel_int.h"

#define RETRY_DELAY_MS 100

static int ka_open(struct keel_lease_keepalive *k);

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void ka_timer_closed(uv_handle_t *h)
{
    struct keel_lease_keepalive *k = h->data;
    free(h);
    k->timer = NULL;
    k->end_cb(k, k->end_status, k->end_message);
}

/* Finish: close the timer, then end_cb (from its close callback). */
static void ka_end(struct keel_lease_keepalive *k, int status,
                   const char *msg)
{
    if (k->ended) {
        return;
    }
    k->ended = 1;
    k->end_status = status;
    snprintf(k->end_message, sizeof(k->end_message), "%s", msg);
    uv_timer_stop(k->timer);
    uv_close((uv_handle_t *)k->timer, ka_timer_closed);
}

static void ka_send(struct keel_lease_keepalive *k)
{
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = k->id;
    if (keel_stream_send(&k->stream, &req.base) != 0) {
        keel_stream_cancel(&k->stream);
    }
}

static void ka_timer_cb(uv_timer_t *t)
{
    struct keel_lease_keepalive *k = t->data;
    if (k->stream_open) {
        ka_send(k);
        return;
    }
    int rv = ka_open(k); /* retry after a lost stream */
    if (rv != 0) {
        ka_end(k, KEEL_GRPC_INTERNAL, keel_strerror(rv));
    }
}

static void ka_msg(struct keel_stream *s, ProtobufCMessage *m)
{
    struct keel_lease_keepalive *k = s->data;
    Etcdserverpb__LeaseKeepAliveResponse *r = (void *)m;
    if (r->ttl <= 0) {
        k->stopping = 2;
        keel_stream_cancel(s);
        return;
    }
    k->ttl = r->ttl;
    k->cb(k, r);
    if (!k->stopping) {
        uint64_t next = (uint64_t)r->ttl * 1000 / 3;
        uv_timer_start(k->timer, ka_timer_cb, next ? next : 1, 0);
    }
}

static void ka_stream_end(struct keel_stream *s, int status, const char *msg)
{
    struct keel_lease_keepalive *k = s->data;
    k->stream_open = 0;
    uv_timer_stop(k->timer);
    if (k->stopping == 2) {
        ka_end(k, KEEL_GRPC_NOT_FOUND, keel_strerror(KEEL_ELEASENOTFOUND));
    } else if (k->stopping) {
        ka_end(k, KEEL_GRPC_CANCELED, "context canceled");
    } else if (status == KEEL_GRPC_UNAVAILABLE ||
               status == KEEL_GRPC_INTERNAL || status == KEEL_GRPC_OK) {
        uv_timer_start(k->timer, ka_timer_cb, RETRY_DELAY_MS, 0);
    } else {
        ka_end(k, status, msg);
    }
}

static int ka_open(struct keel_lease_keepalive *k)
{
    k->stream.data = k;
    int rv = keel_stream_start(
        k->client, &k->stream, KEEL_M_LEASE_KEEPALIVE,
        &etcdserverpb__lease_keep_alive_response__descriptor, NULL, ka_msg,
        ka_stream_end);
    if (rv != 0) {
        return rv;
    }
    k->stream_open = 1;
    ka_send(k);
    return 0;
}

int keel_lease_keepalive_start(struct keel_client *c,
                               struct keel_lease_keepalive *k, int64_t id,
                               keel_lease_keepalive_cb cb,
                               keel_lease_keepalive_end_cb end_cb)
{
    void *data = k->data;
    memset(k, 0, sizeof(*k));
    k->data = data;
    k->id = id;
    k->client = c;
    k->cb = cb;
    k->end_cb = end_cb;
    k->timer = malloc(sizeof(*k->timer));
    if (k->timer == NULL) {
        return -ENOMEM;
    }
    uv_timer_init(keel__client_loop(c), k->timer);
    k->timer->data = k;
    int rv = ka_open(k);
    if (rv != 0) {
        uv_close((uv_handle_t *)k->timer, free_handle);
        k->timer = NULL;
    }
    return rv;
}

void keel_lease_keepalive_stop(struct keel_lease_keepalive *k)
{
    if (k->ended || k->stopping) {
        return;
    }
    k->stopping = 1;
    if (k->stream_open) {
        keel_stream_cancel(&k->stream);
    } else {
        ka_end(k, KEEL_GRPC_CANCELED, "context canceled");
    }
}
