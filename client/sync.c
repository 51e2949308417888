/*
 * libkeel's blocking API: a client on a private uv loop.
 *
 * keel_sync_call() starts a unary call with the async API and runs the loop
 * one iteration at a time until the call's callback has run, so a simple
 * program never sees the loop. Streams use the async API on
 * keel_sync_loop(). keel_sync_close() closes the client and runs the loop
 * until every handle is released, so nothing leaks.
 */
#include <errno.h>
#include <stdlib.h>

#include "keel.h"

struct keel_sync
{
    uv_loop_t loop;
    struct keel_client *client;
};

int keel_sync_open(const struct keel_client_config *cfg,
                   struct keel_sync **out)
{
    struct keel_sync *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return -ENOMEM;
    }
    int rv = uv_loop_init(&s->loop);
    if (rv != 0) {
        free(s);
        return rv;
    }
    rv = keel_client_new(&s->loop, cfg, &s->client);
    if (rv != 0) {
        uv_loop_close(&s->loop);
        free(s);
        return rv;
    }
    *out = s;
    return 0;
}

static void sync_done(struct keel_call *call)
{
    *(int *)call->data = 1;
}

int keel_sync_call(struct keel_sync *s, struct keel_call *call,
                   const char *path, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *resp_desc,
                   const struct keel_call_opts *opts)
{
    int done = 0;
    void *saved = call->data;
    /* The loop does not run between blocking calls: take in what arrived
     * meanwhile (a closed connection above all) before sending on it. */
    uv_run(&s->loop, UV_RUN_NOWAIT);
    call->data = &done;
    int rv = keel_call_start(s->client, call, path, req, resp_desc, opts,
                             sync_done);
    if (rv != 0) {
        call->data = saved;
        return rv;
    }
    while (!done) {
        uv_run(&s->loop, UV_RUN_ONCE);
    }
    call->data = saved;
    return 0;
}

uv_loop_t *keel_sync_loop(struct keel_sync *s)
{
    return &s->loop;
}

struct keel_client *keel_sync_client(struct keel_sync *s)
{
    return s->client;
}

void keel_sync_close(struct keel_sync *s)
{
    keel_client_close(s->client, NULL, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    free(s);
}
