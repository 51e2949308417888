/*
 * libkeel against a real etcd 3.4 server (integration): unary calls through
 * the generic entry point and the typed wrappers, exact error statuses,
 * many calls multiplexed on one connection, failover past a dead endpoint,
 * deadlines, cancellation, server streams (Snapshot), bidi streams
 * (LeaseKeepAlive), a watch that resumes across a server restart without
 * losing or repeating events, and auth with re-authentication after the
 * server forgets its tokens.
 *
 * The fixture starts /usr/bin/etcd on free loopback ports in a fresh data
 * directory and stops it at teardown (also on failure: atexit). Set
 * KEEL_ETCD to use another server binary (e.g. keel, later).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

/* ---- fixture: one etcd --------------------------------------------------- */

static char data_dir[256];
static char endpoint[64];
static char dead_endpoint[64];
static int client_port, peer_port;
static pid_t etcd_pid;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        abort();
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void etcd_stop(void)
{
    if (etcd_pid > 0) {
        kill(etcd_pid, SIGTERM);
        waitpid(etcd_pid, NULL, 0);
        etcd_pid = 0;
    }
}

static struct keel_sync *sync_for(const char *const *eps, size_t n,
                                  const char *user, const char *pass)
{
    struct keel_client_config cfg = {.endpoints = eps,
                                     .n_endpoints = n,
                                     .dial_timeout_ms = 500,
                                     .username = user,
                                     .password = pass};
    struct keel_sync *s;
    assert_int_equal(keel_sync_open(&cfg, &s), 0);
    return s;
}

static void etcd_start(void)
{
    char listen_c[80], listen_p[80];
    snprintf(listen_c, sizeof(listen_c), "http://%s", endpoint);
    snprintf(listen_p, sizeof(listen_p), "http://127.0.0.1:%d", peer_port);
    const char *bin = getenv("KEEL_ETCD") ? getenv("KEEL_ETCD")
                                          : "/usr/bin/etcd";
    etcd_pid = fork();
    if (etcd_pid == 0) {
        char log[300];
        snprintf(log, sizeof(log), "%s.log", data_dir);
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        execl(bin, bin, "--data-dir", data_dir, "--listen-client-urls",
              listen_c, "--advertise-client-urls", listen_c,
              "--listen-peer-urls", listen_p, (char *)NULL);
        _exit(127);
    }
    /* Ready when a read succeeds. */
    const char *eps[1] = {endpoint};
    for (int i = 0; i < 100; i++) {
        struct keel_sync *s = sync_for(eps, 1, NULL, NULL);
        struct keel_call call;
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        struct keel_call_opts o = {.timeout_ms = 300};
        keel_sync_call(s, &call, KEEL_M_RANGE, &req.base,
                       &etcdserverpb__range_response__descriptor, &o);
        int st = call.status;
        keel_call_cleanup(&call);
        keel_sync_close(s);
        /* With auth enabled an anonymous read is refused: still up. */
        if (st == KEEL_GRPC_OK || st == KEEL_GRPC_INVALID_ARGUMENT ||
            st == KEEL_GRPC_PERMISSION_DENIED) {
            return;
        }
        usleep(100 * 1000);
    }
    fail_msg("etcd did not start");
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(data_dir, sizeof(data_dir), "/tmp/libkeel-test.XXXXXX");
    if (mkdtemp(data_dir) == NULL) {
        return -1;
    }
    client_port = free_port();
    peer_port = free_port();
    snprintf(endpoint, sizeof(endpoint), "127.0.0.1:%d", client_port);
    snprintf(dead_endpoint, sizeof(dead_endpoint), "127.0.0.1:%d",
             free_port());
    atexit(etcd_stop);
    etcd_start();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    etcd_stop();
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s.log'", data_dir, data_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers --------------------------------------------------------------- */

static struct keel_sync *live(void)
{
    const char *eps[1] = {endpoint};
    return sync_for(eps, 1, NULL, NULL);
}

static int64_t put(struct keel_sync *s, const char *k, const char *v)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)k;
    req.key.len = strlen(k);
    req.value.data = (uint8_t *)v;
    req.value.len = strlen(v);
    struct keel_call call;
    struct keel_call_opts o = {.timeout_ms = 5000};
    assert_int_equal(keel_sync_call(s, &call, KEEL_M_PUT, &req.base,
                                    &etcdserverpb__put_response__descriptor,
                                    &o),
                     0);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    int64_t rev = ((Etcdserverpb__PutResponse *)call.resp)->header->revision;
    keel_call_cleanup(&call);
    return rev;
}

static void run_until(struct keel_sync *s, const int *flag)
{
    for (int i = 0; !*flag && i < 100000; i++) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_true(*flag);
}

/* ---- tests ------------------------------------------------------------------ */

static int wrapper_done;
static void wrapper_cb(struct keel_call *call)
{
    (void)call;
    wrapper_done++;
}

static void test_libkeel_put_get(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    int64_t rev = put(s, "t/a", "1");
    assert_true(rev > 1);

    struct keel_call call;
    wrapper_done = 0;
    assert_int_equal(keel_get(keel_sync_client(s), &call, "t/a", NULL, 0,
                              5000, wrapper_cb),
                     0);
    run_until(s, &wrapper_done);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    Etcdserverpb__RangeResponse *r = (void *)call.resp;
    assert_int_equal(r->n_kvs, 1);
    assert_memory_equal(r->kvs[0]->value.data, "1", 1);
    assert_int_equal(r->kvs[0]->mod_revision, rev);
    assert_string_equal(call.message, "");
    keel_call_cleanup(&call);

    /* Prefix end and delete through the wrappers. */
    char end[8];
    assert_int_equal(keel_prefix_end("t/", 2, end), 2);
    assert_memory_equal(end, "t0", 2);
    assert_int_equal(keel_prefix_end("\xff", 1, end), 1);
    assert_int_equal(end[0], 0);
    wrapper_done = 0;
    assert_int_equal(keel_delete(keel_sync_client(s), &call, "t/", "t0",
                                 5000, wrapper_cb),
                     0);
    run_until(s, &wrapper_done);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    assert_int_equal(((Etcdserverpb__DeleteRangeResponse *)call.resp)->deleted,
                     1);
    keel_call_cleanup(&call);
    keel_sync_close(s);
}

static void test_libkeel_error_status(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    req.key.data = (uint8_t *)"x";
    req.key.len = 1;
    req.revision = 1000000;
    struct keel_call call;
    assert_int_equal(keel_sync_call(s, &call, KEEL_M_RANGE, &req.base,
                                    &etcdserverpb__range_response__descriptor,
                                    NULL),
                     0);
    assert_int_equal(call.status, KEEL_GRPC_OUT_OF_RANGE);
    assert_string_equal(call.message,
                        keel_strerror(KEEL_EFUTUREREV)); /* etcd's text */
    assert_null(call.resp);
    keel_call_cleanup(&call);

    /* An unknown method: the server says Unimplemented. */
    assert_int_equal(keel_sync_call(s, &call, "/etcdserverpb.KV/Nope",
                                    &req.base,
                                    &etcdserverpb__range_response__descriptor,
                                    NULL),
                     0);
    assert_int_equal(call.status, KEEL_GRPC_UNIMPLEMENTED);
    keel_call_cleanup(&call);

    /* Misuse is refused without a callback. */
    assert_int_equal(keel_call_start(keel_sync_client(s), &call, "no-slash",
                                     &req.base,
                                     &etcdserverpb__range_response__descriptor,
                                     NULL, wrapper_cb),
                     KEEL_EINVAL);
    keel_sync_close(s);
}

#define N_INFLIGHT 200
static int inflight_done;
static void inflight_cb(struct keel_call *call)
{
    inflight_done++;
    (void)call;
}

/* Many calls in flight at once on one client (one HTTP/2 connection). */
static void test_libkeel_multiplexing(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    struct keel_call *calls = calloc(N_INFLIGHT, sizeof(*calls));
    char key[32];
    inflight_done = 0;
    for (int i = 0; i < N_INFLIGHT; i++) {
        snprintf(key, sizeof(key), "m/%03d", i);
        assert_int_equal(keel_put(keel_sync_client(s), &calls[i], key, "v", 1,
                                  0, 10000, inflight_cb),
                         0);
    }
    /* Nothing completes before the loop runs. */
    assert_int_equal(inflight_done, 0);
    while (inflight_done < N_INFLIGHT) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    int64_t seen_min = INT64_MAX, seen_max = 0;
    for (int i = 0; i < N_INFLIGHT; i++) {
        assert_int_equal(calls[i].status, KEEL_GRPC_OK);
        int64_t r =
            ((Etcdserverpb__PutResponse *)calls[i].resp)->header->revision;
        seen_min = r < seen_min ? r : seen_min;
        seen_max = r > seen_max ? r : seen_max;
        keel_call_cleanup(&calls[i]);
    }
    /* Every put got its own revision. */
    assert_int_equal(seen_max - seen_min, N_INFLIGHT - 1);
    free(calls);

    /* A range returns them all. */
    struct keel_call call;
    inflight_done = 0;
    assert_int_equal(keel_get(keel_sync_client(s), &call, "m/", "m0", 0, 5000,
                              inflight_cb),
                     0);
    run_until(s, &inflight_done);
    assert_int_equal(((Etcdserverpb__RangeResponse *)call.resp)->count,
                     N_INFLIGHT);
    keel_call_cleanup(&call);
    keel_sync_close(s);
}

/* A value near etcd's 1.5 MiB request limit goes out in many DATA frames
 * (flow control both ways) and comes back intact; one far over the limit
 * is refused with the server's status. */
static void test_libkeel_large_values(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    size_t n = 1024 * 1024;
    char *v = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        v[i] = (char)('a' + i % 26);
    }
    v[n] = '\0';
    put(s, "big/1", v);
    struct keel_call call;
    wrapper_done = 0;
    assert_int_equal(keel_get(keel_sync_client(s), &call, "big/1", NULL, 0,
                              10000, wrapper_cb),
                     0);
    run_until(s, &wrapper_done);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    Etcdserverpb__RangeResponse *r = (void *)call.resp;
    assert_int_equal(r->n_kvs, 1);
    assert_int_equal(r->kvs[0]->value.len, n);
    assert_memory_equal(r->kvs[0]->value.data, v, n);
    keel_call_cleanup(&call);

    char *huge = malloc(2 * n + 1);
    memset(huge, 'x', 2 * n);
    huge[2 * n] = '\0';
    wrapper_done = 0;
    assert_int_equal(keel_put(keel_sync_client(s), &call, "big/2", huge, 2 * n,
                              0, 10000, wrapper_cb),
                     0);
    run_until(s, &wrapper_done);
    /* grpc-go refuses it before etcd sees it: max-request-bytes plus
     * grpc's overhead is the server's MaxRecvMsgSize. */
    assert_int_equal(call.status, KEEL_GRPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(call.message, "grpc: received message larger "
                                         "than max"));
    keel_call_cleanup(&call);
    free(huge);
    free(v);
    keel_sync_close(s);
}

/* The first endpoint refuses connections: the client moves on. */
static void test_libkeel_failover_dead_endpoint(void **state)
{
    (void)state;
    const char *eps[2] = {dead_endpoint, endpoint};
    struct keel_sync *s = sync_for(eps, 2, NULL, NULL);
    assert_true(put(s, "f/a", "x") > 0);
    assert_string_equal(keel_client_endpoint(keel_sync_client(s)), endpoint);
    assert_true(keel_client_connected(keel_sync_client(s)));
    keel_sync_close(s);
}

static void test_libkeel_deadline(void **state)
{
    (void)state;
    const char *eps[1] = {dead_endpoint};
    struct keel_sync *s = sync_for(eps, 1, NULL, NULL);
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    struct keel_call call;
    struct keel_call_opts o = {.timeout_ms = 300};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(keel_sync_call(s, &call, KEEL_M_RANGE, &req.base,
                                    &etcdserverpb__range_response__descriptor,
                                    &o),
                     0);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    assert_int_equal(call.status, KEEL_GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(call.message, "context deadline exceeded");
    assert_true(ms >= 250 && ms < 3000);
    assert_false(keel_client_connected(keel_sync_client(s)));
    char want[160];
    snprintf(want, sizeof(want), "dial tcp %s: connect: connection refused",
             dead_endpoint);
    assert_string_equal(keel_client_last_error(keel_sync_client(s)), want);
    keel_call_cleanup(&call);
    keel_sync_close(s);
}

static int cancel_done;
static void cancel_cb(struct keel_call *call)
{
    (void)call;
    cancel_done = 1;
}

static int stream_end_status = -1, stream_msgs;
static void count_msg(struct keel_stream *st, ProtobufCMessage *m)
{
    (void)st;
    (void)m;
    stream_msgs++;
}
static void record_end(struct keel_stream *st, int status, const char *msg)
{
    (void)st;
    (void)msg;
    stream_end_status = status;
}

static void test_libkeel_cancel_and_close(void **state)
{
    (void)state;
    /* A call waiting for a connection is canceled. */
    const char *eps[1] = {dead_endpoint};
    struct keel_sync *s = sync_for(eps, 1, NULL, NULL);
    struct keel_call call;
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    cancel_done = 0;
    assert_int_equal(keel_call_start(keel_sync_client(s), &call, KEEL_M_RANGE,
                                     &req.base,
                                     &etcdserverpb__range_response__descriptor,
                                     NULL, cancel_cb),
                     0);
    keel_call_cancel(&call);
    assert_int_equal(cancel_done, 0); /* never from inside cancel */
    run_until(s, &cancel_done);
    assert_int_equal(call.status, KEEL_GRPC_CANCELED);
    keel_call_cleanup(&call);

    /* Closing the client ends what is still open. */
    struct keel_stream st = {0};
    stream_end_status = -1;
    assert_int_equal(keel_stream_start(keel_sync_client(s), &st, KEEL_M_WATCH,
                                       &etcdserverpb__watch_response__descriptor,
                                       NULL, count_msg, record_end),
                     0);
    keel_sync_close(s);
    assert_int_equal(stream_end_status, KEEL_GRPC_CANCELED);
}

/* Maintenance.Snapshot: one request, a stream of chunks, then OK. */
static uint64_t snap_bytes;
static int snap_last_remaining = -1;
static void snap_msg(struct keel_stream *st, ProtobufCMessage *m)
{
    (void)st;
    Etcdserverpb__SnapshotResponse *r = (void *)m;
    snap_bytes += r->blob.len;
    snap_last_remaining = (int)r->remaining_bytes;
    stream_msgs++;
}

static void test_libkeel_server_stream_snapshot(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    struct keel_stream st = {0};
    stream_end_status = -1;
    stream_msgs = 0;
    assert_int_equal(keel_stream_start(keel_sync_client(s), &st,
                                       KEEL_M_SNAPSHOT,
                                       &etcdserverpb__snapshot_response__descriptor,
                                       NULL, snap_msg, record_end),
                     0);
    Etcdserverpb__SnapshotRequest req = ETCDSERVERPB__SNAPSHOT_REQUEST__INIT;
    assert_int_equal(keel_stream_send(&st, &req.base), 0);
    assert_int_equal(keel_stream_close_send(&st), 0);
    assert_int_equal(keel_stream_send(&st, &req.base), KEEL_EINVAL);
    while (stream_end_status < 0) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(stream_end_status, KEEL_GRPC_OK);
    assert_true(stream_msgs >= 1);
    assert_true(snap_bytes > 16384); /* a bolt file plus its sha256 */
    assert_int_equal(snap_last_remaining, 0);
    keel_sync_close(s);
}

/* LeaseKeepAlive: a bidi stream, one response per request. */
static int ka_responses;
static int64_t ka_ttl;
static void ka_msg(struct keel_stream *st, ProtobufCMessage *m)
{
    Etcdserverpb__LeaseKeepAliveResponse *r = (void *)m;
    ka_ttl = r->ttl;
    if (++ka_responses == 2) {
        keel_stream_cancel(st);
        return;
    }
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = r->id;
    assert_int_equal(keel_stream_send(st, &req.base), 0);
}

static void test_libkeel_bidi_keepalive(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.ttl = 60;
    struct keel_call call;
    assert_int_equal(
        keel_sync_call(s, &call, KEEL_M_LEASE_GRANT, &g.base,
                       &etcdserverpb__lease_grant_response__descriptor, NULL),
        0);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    int64_t id = ((Etcdserverpb__LeaseGrantResponse *)call.resp)->id;
    keel_call_cleanup(&call);

    struct keel_stream st = {0};
    stream_end_status = -1;
    ka_responses = 0;
    assert_int_equal(
        keel_stream_start(keel_sync_client(s), &st, KEEL_M_LEASE_KEEPALIVE,
                          &etcdserverpb__lease_keep_alive_response__descriptor,
                          NULL, ka_msg, record_end),
        0);
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = id;
    assert_int_equal(keel_stream_send(&st, &req.base), 0);
    while (stream_end_status < 0) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(ka_responses, 2);
    assert_int_equal(ka_ttl, 60);
    assert_int_equal(stream_end_status, KEEL_GRPC_CANCELED);
    keel_sync_close(s);
}

/* A watch survives a server restart: events before and after arrive
 * exactly once, in order. */
static char watch_seen[16][16];
static int watch_n, watch_end_status = -1;
static void w_cb(struct keel_watch *w, const Etcdserverpb__WatchResponse *r)
{
    (void)w;
    for (size_t i = 0; i < r->n_events && watch_n < 16; i++) {
        snprintf(watch_seen[watch_n++], 16, "%.*s",
                 (int)r->events[i]->kv->key.len,
                 (const char *)r->events[i]->kv->key.data);
    }
}
static void w_end(struct keel_watch *w, int status, const char *msg)
{
    (void)w;
    (void)msg;
    watch_end_status = status;
}

static void test_libkeel_watch_resumes(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    int64_t rev = put(s, "w/0", "before");
    Etcdserverpb__WatchCreateRequest wc =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    wc.key.data = (uint8_t *)"w/";
    wc.key.len = 2;
    wc.range_end.data = (uint8_t *)"w0";
    wc.range_end.len = 2;
    wc.start_revision = rev; /* includes w/0 */
    struct keel_watch w = {0};
    watch_n = 0;
    watch_end_status = -1;
    assert_int_equal(keel_watch_start(keel_sync_client(s), &w, &wc, w_cb,
                                      w_end),
                     0);
    struct keel_sync *writer = live();
    put(writer, "w/1", "x");
    while (watch_n < 2) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    keel_sync_close(writer);

    etcd_stop();
    /* The watch stream ends; the watch keeps trying. */
    for (int i = 0; i < 20; i++) {
        uv_run(keel_sync_loop(s), UV_RUN_NOWAIT);
        usleep(10000);
    }
    etcd_start();
    writer = live();
    put(writer, "w/2", "after");
    keel_sync_close(writer);
    uint64_t t0 = uv_hrtime();
    while (watch_n < 3 && uv_hrtime() - t0 < 10000000000ull) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(watch_n, 3);
    assert_string_equal(watch_seen[0], "w/0");
    assert_string_equal(watch_seen[1], "w/1");
    assert_string_equal(watch_seen[2], "w/2");
    assert_true(w.resumes >= 1);
    assert_int_equal(watch_end_status, -1);
    keel_watch_stop(&w);
    while (watch_end_status < 0) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(watch_end_status, KEEL_GRPC_CANCELED);
    keel_sync_close(s);
}

/* Lease keepalive helper: responses every TTL/3, survives a restart, ends
 * NOT_FOUND when the lease is revoked. */
static int kal_responses, kal_end_status = -1;
static char kal_end_msg[128];
static void kal_cb(struct keel_lease_keepalive *k,
                   const Etcdserverpb__LeaseKeepAliveResponse *r)
{
    assert_int_equal(r->id, k->id);
    assert_true(r->ttl > 0);
    kal_responses++;
}
static void kal_end(struct keel_lease_keepalive *k, int status,
                    const char *msg)
{
    (void)k;
    kal_end_status = status;
    snprintf(kal_end_msg, sizeof(kal_end_msg), "%s", msg);
}

static int64_t grant(struct keel_sync *s, int64_t ttl)
{
    Etcdserverpb__LeaseGrantRequest g = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    g.ttl = ttl;
    struct keel_call call;
    assert_int_equal(
        keel_sync_call(s, &call, KEEL_M_LEASE_GRANT, &g.base,
                       &etcdserverpb__lease_grant_response__descriptor, NULL),
        0);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    int64_t id = ((Etcdserverpb__LeaseGrantResponse *)call.resp)->id;
    keel_call_cleanup(&call);
    return id;
}

static void test_libkeel_lease_keepalive(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    int64_t id = grant(s, 3); /* a keepalive every second */
    struct keel_lease_keepalive k = {0};
    kal_responses = 0;
    kal_end_status = -1;
    assert_int_equal(
        keel_lease_keepalive_start(keel_sync_client(s), &k, id, kal_cb, kal_end),
        0);
    uint64_t t0 = uv_hrtime();
    while (kal_responses < 2 && uv_hrtime() - t0 < 5000000000ull) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(kal_responses, 2);
    assert_int_equal(k.ttl, 3);

    /* Across a restart the stream is reopened. */
    etcd_stop();
    etcd_start();
    int before = kal_responses;
    t0 = uv_hrtime();
    while (kal_responses == before && uv_hrtime() - t0 < 5000000000ull) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_true(kal_responses > before);
    assert_int_equal(kal_end_status, -1);

    /* Revoked: the next response says TTL 0 and the helper ends. */
    struct keel_sync *other = live();
    Etcdserverpb__LeaseRevokeRequest rv = ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    rv.id = id;
    struct keel_call call;
    keel_sync_call(other, &call, KEEL_M_LEASE_REVOKE, &rv.base,
                   &etcdserverpb__lease_revoke_response__descriptor, NULL);
    assert_int_equal(call.status, KEEL_GRPC_OK);
    keel_call_cleanup(&call);
    keel_sync_close(other);
    t0 = uv_hrtime();
    while (kal_end_status < 0 && uv_hrtime() - t0 < 5000000000ull) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(kal_end_status, KEEL_GRPC_NOT_FOUND);
    assert_string_equal(kal_end_msg, "etcdserver: requested lease not found");

    /* Stop ends with CANCELED. */
    id = grant(s, 30);
    kal_end_status = -1;
    assert_int_equal(
        keel_lease_keepalive_start(keel_sync_client(s), &k, id, kal_cb, kal_end),
        0);
    keel_lease_keepalive_stop(&k);
    while (kal_end_status < 0) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    assert_int_equal(kal_end_status, KEEL_GRPC_CANCELED);
    keel_sync_close(s);
}

/* Auth: token from Authenticate, refused password, and a transparent
 * re-authentication when a restarted server no longer knows the token. */
static void auth_call(struct keel_sync *s, const char *path,
                      const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *d)
{
    struct keel_call call;
    assert_int_equal(keel_sync_call(s, &call, path, req, d, NULL), 0);
    if (call.status != KEEL_GRPC_OK) {
        fail_msg("%s: %d %s", path, call.status, call.message);
    }
    keel_call_cleanup(&call);
}

static void test_libkeel_auth_reauthenticates(void **state)
{
    (void)state;
    struct keel_sync *s = live();
    Etcdserverpb__AuthUserAddRequest ua = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    ua.name = "root";
    ua.password = "secret";
    auth_call(s, KEEL_M_USER_ADD, &ua.base,
              &etcdserverpb__auth_user_add_response__descriptor);
    Etcdserverpb__AuthUserGrantRoleRequest gr =
        ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    gr.user = "root";
    gr.role = "root";
    auth_call(s, KEEL_M_USER_GRANT_ROLE, &gr.base,
              &etcdserverpb__auth_user_grant_role_response__descriptor);
    Etcdserverpb__AuthEnableRequest en = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    auth_call(s, KEEL_M_AUTH_ENABLE, &en.base,
              &etcdserverpb__auth_enable_response__descriptor);

    /* Anonymous calls are now refused with etcd's text. */
    Etcdserverpb__RangeRequest rr = ETCDSERVERPB__RANGE_REQUEST__INIT;
    rr.key.data = (uint8_t *)"a";
    rr.key.len = 1;
    struct keel_call call;
    keel_sync_call(s, &call, KEEL_M_RANGE, &rr.base,
                   &etcdserverpb__range_response__descriptor, NULL);
    assert_int_equal(call.status, KEEL_GRPC_INVALID_ARGUMENT);
    assert_string_equal(call.message, "etcdserver: user name is empty");
    keel_call_cleanup(&call);
    keel_sync_close(s);

    const char *eps[1] = {endpoint};
    s = sync_for(eps, 1, "root", "wrong");
    keel_sync_call(s, &call, KEEL_M_RANGE, &rr.base,
                   &etcdserverpb__range_response__descriptor, NULL);
    assert_int_equal(call.status, KEEL_GRPC_INVALID_ARGUMENT);
    assert_string_equal(call.message, keel_strerror(KEEL_EAUTHFAILED));
    keel_call_cleanup(&call);
    keel_sync_close(s);

    s = sync_for(eps, 1, "root", "secret");
    put(s, "auth/a", "1");
    /* Simple tokens live in the server's memory: a restart drops them. */
    etcd_stop();
    etcd_start();
    put(s, "auth/b", "2"); /* "invalid auth token" -> re-auth -> retry */

    /* Leave the server as the other tests expect it. */
    Etcdserverpb__AuthDisableRequest dis =
        ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
    auth_call(s, KEEL_M_AUTH_DISABLE, &dis.base,
              &etcdserverpb__auth_disable_response__descriptor);
    keel_sync_close(s);
}

static void test_libkeel_config_errors(void **state)
{
    (void)state;
    struct keel_sync *s;
    struct keel_client_config cfg = {0};
    assert_int_equal(keel_sync_open(&cfg, &s), KEEL_EINVAL);
    const char *bad[1] = {"127.0.0.1:99999"};
    cfg.endpoints = bad;
    cfg.n_endpoints = 1;
    assert_int_equal(keel_sync_open(&cfg, &s), KEEL_EINVAL);
    /* TLS: an https:// endpoint alone uses the system roots; a client
     * certificate that cannot be loaded is refused at once. */
    const char *tls[1] = {"https://127.0.0.1:2379"};
    cfg.endpoints = tls;
    assert_int_equal(keel_sync_open(&cfg, &s), 0);
    keel_sync_close(s);
    struct keel_tls_config t = {.cert = "/nonexistent.crt",
                                .key = "/nonexistent.key"};
    cfg.tls = &t;
    assert_int_equal(keel_sync_open(&cfg, &s), KEEL_EINVAL);
    /* A cleartext endpoint with a TLS configuration needs no TLS. */
    const char *plain[1] = {"http://localhost:2379"};
    cfg.endpoints = plain;
    assert_int_equal(keel_sync_open(&cfg, &s), 0);
    keel_sync_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_libkeel_config_errors),
        cmocka_unit_test(test_libkeel_put_get),
        cmocka_unit_test(test_libkeel_error_status),
        cmocka_unit_test(test_libkeel_multiplexing),
        cmocka_unit_test(test_libkeel_large_values),
        cmocka_unit_test(test_libkeel_failover_dead_endpoint),
        cmocka_unit_test(test_libkeel_deadline),
        cmocka_unit_test(test_libkeel_cancel_and_close),
        cmocka_unit_test(test_libkeel_server_stream_snapshot),
        cmocka_unit_test(test_libkeel_bidi_keepalive),
        cmocka_unit_test(test_libkeel_watch_resumes),
        cmocka_unit_test(test_libkeel_lease_keepalive),
        cmocka_unit_test(test_libkeel_auth_reauthenticates),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
