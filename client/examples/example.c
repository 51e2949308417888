/*
 * libkeel example: put a key, read it back with the blocking API, then watch
 * a prefix with the async API on the same (private) loop until one event
 * arrives.
 *
 *   keel-client-example [endpoint]     (default 127.0.0.1:2379)
 */
#include <stdio.h>
#include <string.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

static int events_seen;

static void on_watch(struct keel_watch *w, const Etcdserverpb__WatchResponse *r)
{
    for (size_t i = 0; i < r->n_events; i++) {
        const Mvccpb__KeyValue *kv = r->events[i]->kv;
        printf("event %s %.*s=%.*s\n",
               r->events[i]->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? "PUT"
                                                                    : "DELETE",
               (int)kv->key.len, (const char *)kv->key.data,
               (int)kv->value.len, (const char *)kv->value.data);
        events_seen++;
    }
    if (events_seen > 0) {
        keel_watch_stop(w);
    }
}

static void on_watch_end(struct keel_watch *w, int status, const char *msg)
{
    uv_stop(w->data); /* the loop: the connection would keep it running */
    printf("watch ended: %s %s\n", status == KEEL_GRPC_CANCELED ? "canceled"
                                                                 : "error",
           msg);
}

static void on_put(struct keel_call *call)
{
    if (call->status != KEEL_GRPC_OK) {
        fprintf(stderr, "put failed: %s\n", call->message);
    }
    keel_call_cleanup(call);
}

int main(int argc, char **argv)
{
    const char *ep = argc > 1 ? argv[1] : "127.0.0.1:2379";
    struct keel_client_config cfg = {.endpoints = &ep, .n_endpoints = 1};
    struct keel_sync *s;
    int rv = keel_sync_open(&cfg, &s);
    if (rv != 0) {
        fprintf(stderr, "open: %s\n", keel_strerror(rv));
        return 1;
    }

    /* Blocking: generic call with any method path and descriptors. */
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)"example/a";
    put.key.len = strlen("example/a");
    put.value.data = (uint8_t *)"1";
    put.value.len = 1;
    struct keel_call call;
    struct keel_call_opts opts = {.timeout_ms = 5000};
    keel_sync_call(s, &call, KEEL_M_PUT, &put.base,
                   &etcdserverpb__put_response__descriptor, &opts);
    if (call.status != KEEL_GRPC_OK) {
        fprintf(stderr, "Error: %s\n", call.message);
        keel_call_cleanup(&call);
        keel_sync_close(s);
        return 1;
    }
    Etcdserverpb__PutResponse *pr = (Etcdserverpb__PutResponse *)call.resp;
    printf("put at revision %lld\n", (long long)pr->header->revision);
    int64_t rev = pr->header->revision;
    keel_call_cleanup(&call);

    /* Async on the same loop: watch from the next revision, then put. */
    Etcdserverpb__WatchCreateRequest wc =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    char end[16];
    size_t elen = keel_prefix_end("example/", 8, end);
    wc.key.data = (uint8_t *)"example/";
    wc.key.len = 8;
    wc.range_end.data = (uint8_t *)end;
    wc.range_end.len = elen;
    wc.start_revision = rev + 1;
    struct keel_watch w = {.data = keel_sync_loop(s)};
    rv = keel_watch_start(keel_sync_client(s), &w, &wc, on_watch,
                          on_watch_end);
    if (rv == 0) {
        struct keel_call put2;
        keel_put(keel_sync_client(s), &put2, "example/b", "2", 1, 0, 5000,
                 on_put);
        uv_run(keel_sync_loop(s), UV_RUN_DEFAULT);
    }
    keel_sync_close(s);
    return events_seen > 0 ? 0 : 1;
}
