/*
 * A watch that survives reconnects.
 *
 *   keel_watch_start ─▶ stream Watch/Watch ─▶ send create(start = next_rev)
 *        ▲                     │ responses: next_rev = last event rev + 1
 *        │                     ▼
 *   retry timer ◀── stream ended Unavailable/Internal (connection lost,
 *                   "no leader"): the client has moved to the next endpoint
 *
 * Ends (end_cb, once) when the server cancels the watch (compaction: OUT_OF
 * RANGE with etcd's ErrCompacted text, as clientv3 reports it), when the
 * caller stops it (CANCELED), or on any other error.
 *
 * Because the resumed watch starts at last-seen + 1 (or, for a watch of
 * "now", at the revision of the created response + 1), events are neither
 * lost nor repeated across endpoints: the same guarantee clientv3's watcher
 * gives with its resumeRevision (clientv3/watch.go).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"
#include "keel_int.h"

#define RESUME_DELAY_MS 50

static int watch_open(struct keel_watch *w);

static void watch_end(struct keel_watch *w, int status, const char *msg)
{
    if (w->ended) {
        return;
    }
    w->ended = 1;
    free(w->create_req);
    w->create_req = NULL;
    w->end_cb(w, status, msg);
}

static void on_msg(struct keel_stream *s, ProtobufCMessage *m)
{
    struct keel_watch *w = s->data;
    Etcdserverpb__WatchResponse *r = (Etcdserverpb__WatchResponse *)m;
    if (r->created) {
        w->watch_id = r->watch_id;
        if (w->next_rev == 0 && r->header) {
            w->next_rev = r->header->revision + 1;
        }
    }
    for (size_t i = 0; i < r->n_events; i++) {
        if (r->events[i]->kv) {
            w->next_rev = r->events[i]->kv->mod_revision + 1;
        }
    }
    if (r->n_events == 0 && !r->created && !r->canceled && r->header &&
        r->header->revision >= w->next_rev) {
        /* Progress notification: nothing below header.revision is left. */
        w->next_rev = r->header->revision + 1;
    }
    w->cb(w, r);
    if (r->canceled) {
        /* ended by the server: 2 = compacted, 3 = other reason */
        w->stopping = r->compact_revision != 0 ? 2 : 3;
        keel_stream_cancel(s);
    }
}

static void resume_closed(uv_handle_t *h)
{
    struct keel_watch *w = h->data;
    free(h);
    w->retry_timer = NULL;
    if (w->stopping) {
        watch_end(w, KEEL_GRPC_CANCELED, "context canceled");
        return;
    }
    int rv = watch_open(w);
    if (rv != 0) {
        watch_end(w, KEEL_GRPC_INTERNAL, keel_strerror(rv));
    }
}

static void resume_cb(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, resume_closed);
}

static void on_end(struct keel_stream *s, int status, const char *msg)
{
    struct keel_watch *w = s->data;
    if (w->stopping == 2) {
        watch_end(w, KEEL_GRPC_OUT_OF_RANGE,
                  "etcdserver: mvcc: required revision has been compacted");
        return;
    }
    if (w->stopping == 3) {
        watch_end(w, KEEL_GRPC_CANCELED, "etcdserver: watch canceled");
        return;
    }
    if (w->stopping) {
        watch_end(w, KEEL_GRPC_CANCELED, "context canceled");
        return;
    }
    if (status == KEEL_GRPC_UNAVAILABLE || status == KEEL_GRPC_INTERNAL) {
        w->retry_timer = malloc(sizeof(*w->retry_timer));
        if (w->retry_timer != NULL) {
            uv_timer_init(keel__client_loop(w->client), w->retry_timer);
            w->retry_timer->data = w;
            uv_timer_start(w->retry_timer, resume_cb, RESUME_DELAY_MS, 0);
            w->resumes++;
            return;
        }
    }
    watch_end(w, status, msg);
}

static int watch_open(struct keel_watch *w)
{
    Etcdserverpb__WatchCreateRequest *create =
        etcdserverpb__watch_create_request__unpack(NULL, w->create_len,
                                                   w->create_req);
    if (create == NULL) {
        return -ENOMEM;
    }
    create->start_revision = w->next_rev;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    req.create_request = create;
    w->stream.data = w;
    struct keel_call_opts o = {0, w->flags};
    int rv = keel_stream_start(w->client, &w->stream, KEEL_M_WATCH,
                               &etcdserverpb__watch_response__descriptor, &o,
                               on_msg, on_end);
    if (rv == 0) {
        rv = keel_stream_send(&w->stream, &req.base);
        if (rv != 0) {
            /* end_cb of the stream will run: report through it. */
            keel_stream_cancel(&w->stream);
            rv = 0;
        }
    }
    etcdserverpb__watch_create_request__free_unpacked(create, NULL);
    return rv;
}

int keel_watch_start(struct keel_client *c, struct keel_watch *w,
                     const Etcdserverpb__WatchCreateRequest *create,
                     keel_watch_cb cb, keel_watch_end_cb end_cb)
{
    void *data = w->data;
    unsigned flags = w->flags;
    memset(w, 0, sizeof(*w));
    w->data = data;
    w->flags = flags;
    w->client = c;
    w->cb = cb;
    w->end_cb = end_cb;
    w->next_rev = create->start_revision;
    w->create_len = protobuf_c_message_get_packed_size(&create->base);
    w->create_req = malloc(w->create_len ? w->create_len : 1);
    if (w->create_req == NULL) {
        return -ENOMEM;
    }
    protobuf_c_message_pack(&create->base, w->create_req);
    int rv = watch_open(w);
    if (rv != 0) {
        free(w->create_req);
        w->create_req = NULL;
    }
    return rv;
}

void keel_watch_stop(struct keel_watch *w)
{
    if (w->ended || w->stopping) {
        return;
    }
    w->stopping = 1;
    if (w->retry_timer) {
        uv_timer_stop(w->retry_timer);
        if (!uv_is_closing((uv_handle_t *)w->retry_timer)) {
            uv_close((uv_handle_t *)w->retry_timer, resume_closed);
        }
        return;
    }
    keel_stream_cancel(&w->stream);
}

int keel_watch_request_progress(struct keel_watch *w)
{
    if (w->ended || w->stopping || w->retry_timer) {
        return KEEL_EINVAL;
    }
    Etcdserverpb__WatchProgressRequest pr =
        ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest req = ETCDSERVERPB__WATCH_REQUEST__INIT;
    req.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    req.progress_request = &pr;
    return keel_stream_send(&w->stream, &req.base);
}
