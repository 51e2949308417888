/*
 * lease_rpc: drive the etcdserverpb.Lease service over gRPC (libkeel) with
 * requests etcdctl cannot make (explicit lease ids, several keep-alives on
 * one stream), printing every answer in a fixed text form so that the
 * outputs of a real etcd 3.4 and of keel can be diffed
 * (test_lease_rpc_compat.sh).
 *
 *   lease_rpc ENDPOINT < script
 *
 * Script lines (ids and TTLs in decimal):
 *   grant ID TTL | revoke ID | ttl ID [keys] | leases | put KEY LEASE
 *   keepalive ID...        one stream: a request per ID, then half-close
 * Output: "### <line>", then "error <grpc code> <message>" or the answer's
 * fields, header first (revision, raft_term). Ids the server chose (grant
 * with ID 0) differ between servers: they print as GEN1, GEN2, ...
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

static int64_t generated[64];
static size_t n_generated;

static void print_id(const char *label, int64_t id)
{
    for (size_t i = 0; i < n_generated; i++) {
        if (generated[i] == id) {
            printf("%sGEN%zu", label, i + 1);
            return;
        }
    }
    printf("%s%" PRId64, label, id);
}

static void print_header(const Etcdserverpb__ResponseHeader *h)
{
    if (h == NULL) {
        printf("header none\n");
        return;
    }
    printf("header revision=%" PRId64 " raft_term=%" PRIu64 "\n", h->revision,
           h->raft_term);
}

static int call(struct keel_sync *s,
                struct keel_call *c,
                const char *path,
                const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc)
{
    struct keel_call_opts o = {.timeout_ms = 5000, .flags = 0};
    memset(c, 0, sizeof *c);
    int rv = keel_sync_call(s, c, path, req, resp_desc, &o);
    if (rv != 0) {
        printf("call failed to start: %d\n", rv);
        return -1;
    }
    if (c->status != KEEL_GRPC_OK) {
        printf("error %d %s\n", c->status, c->message);
        keel_call_cleanup(c);
        return -1;
    }
    return 0;
}

static void do_grant(struct keel_sync *s, int64_t id, int64_t ttl)
{
    Etcdserverpb__LeaseGrantRequest req =
        ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    req.id = id;
    req.ttl = ttl;
    struct keel_call c;
    if (call(s, &c, KEEL_M_LEASE_GRANT, &req.base,
             &etcdserverpb__lease_grant_response__descriptor) != 0) {
        return;
    }
    const Etcdserverpb__LeaseGrantResponse *r = (const void *)c.resp;
    print_header(r->header);
    if (id == 0 && n_generated < 64) {
        generated[n_generated++] = r->id;
    }
    print_id("ID=", r->id);
    printf(" TTL=%" PRId64 " error=\"%s\"\n", r->ttl, r->error ? r->error : "");
    keel_call_cleanup(&c);
}

static void do_revoke(struct keel_sync *s, int64_t id)
{
    Etcdserverpb__LeaseRevokeRequest req =
        ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    req.id = id;
    struct keel_call c;
    if (call(s, &c, KEEL_M_LEASE_REVOKE, &req.base,
             &etcdserverpb__lease_revoke_response__descriptor) != 0) {
        return;
    }
    const Etcdserverpb__LeaseRevokeResponse *r = (const void *)c.resp;
    print_header(r->header);
    keel_call_cleanup(&c);
}

static void do_ttl(struct keel_sync *s, int64_t id, int keys)
{
    Etcdserverpb__LeaseTimeToLiveRequest req =
        ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
    req.id = id;
    req.keys = keys;
    struct keel_call c;
    if (call(s, &c, KEEL_M_LEASE_TTL, &req.base,
             &etcdserverpb__lease_time_to_live_response__descriptor) != 0) {
        return;
    }
    const Etcdserverpb__LeaseTimeToLiveResponse *r = (const void *)c.resp;
    print_header(r->header);
    printf("ID=%" PRId64 " TTL=%" PRId64 " grantedTTL=%" PRId64 " keys=[",
           r->id, r->ttl, r->grantedttl);
    for (size_t i = 0; i < r->n_keys; i++) {
        printf("%s%.*s", i ? " " : "", (int)r->keys[i].len,
               (const char *)r->keys[i].data);
    }
    printf("]\n");
    keel_call_cleanup(&c);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void do_leases(struct keel_sync *s)
{
    Etcdserverpb__LeaseLeasesRequest req =
        ETCDSERVERPB__LEASE_LEASES_REQUEST__INIT;
    struct keel_call c;
    if (call(s, &c, KEEL_M_LEASE_LEASES, &req.base,
             &etcdserverpb__lease_leases_response__descriptor) != 0) {
        return;
    }
    const Etcdserverpb__LeaseLeasesResponse *r = (const void *)c.resp;
    print_header(r->header);
    /* etcd orders by expiry with random ties: print sorted by id */
    int64_t *ids = calloc(r->n_leases + 1, sizeof *ids);
    for (size_t i = 0; ids != NULL && i < r->n_leases; i++) {
        ids[i] = r->leases[i]->id;
    }
    if (ids != NULL) {
        qsort(ids, r->n_leases, sizeof *ids, cmp_i64);
    }
    printf("leases=[");
    for (size_t i = 0; ids != NULL && i < r->n_leases; i++) {
        print_id(i ? " " : "", ids[i]);
    }
    printf("]\n");
    free(ids);
    keel_call_cleanup(&c);
}

static void do_put(struct keel_sync *s, const char *key, int64_t lease)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)key;
    req.key.len = strlen(key);
    req.value.data = (uint8_t *)"v";
    req.value.len = 1;
    req.lease = lease;
    struct keel_call c;
    if (call(s, &c, "/etcdserverpb.KV/Put", &req.base,
             &etcdserverpb__put_response__descriptor) != 0) {
        return;
    }
    const Etcdserverpb__PutResponse *r = (const void *)c.resp;
    print_header(r->header);
    keel_call_cleanup(&c);
}

static int stream_done;

static void ka_msg(struct keel_stream *st, ProtobufCMessage *msg)
{
    (void)st;
    const Etcdserverpb__LeaseKeepAliveResponse *r = (const void *)msg;
    print_header(r->header);
    printf("keepalive ID=%" PRId64 " TTL=%" PRId64 "\n", r->id, r->ttl);
}

static void ka_end(struct keel_stream *st, int status, const char *message)
{
    printf("stream end %d %s\n", status, message ? message : "");
    stream_done = 1;
    uv_stop(st->data);
}

static void do_keepalive(struct keel_sync *s, char *ids)
{
    static struct keel_stream st;
    memset(&st, 0, sizeof st);
    st.data = keel_sync_loop(s);
    struct keel_call_opts o = {.timeout_ms = 10000, .flags = 0};
    stream_done = 0;
    if (keel_stream_start(keel_sync_client(s), &st, KEEL_M_LEASE_KEEPALIVE,
                          &etcdserverpb__lease_keep_alive_response__descriptor,
                          &o, ka_msg, ka_end) != 0) {
        printf("stream failed to start\n");
        return;
    }
    char *save = NULL;
    for (char *t = strtok_r(ids, " ", &save); t != NULL;
         t = strtok_r(NULL, " ", &save)) {
        Etcdserverpb__LeaseKeepAliveRequest req =
            ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
        req.id = strtoll(t, NULL, 10);
        keel_stream_send(&st, &req.base);
    }
    keel_stream_close_send(&st);
    while (!stream_done) {
        uv_run(keel_sync_loop(s), UV_RUN_DEFAULT);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: lease_rpc ENDPOINT < script\n");
        return 2;
    }
    const char *ep[1] = {argv[1]};
    struct keel_client_config cfg = {0};
    cfg.endpoints = ep;
    cfg.n_endpoints = 1;
    struct keel_sync *s = NULL;
    if (keel_sync_open(&cfg, &s) != 0) {
        fprintf(stderr, "lease_rpc: cannot open a client\n");
        return 1;
    }
    char line[1024];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == 0 || line[0] == '#') {
            continue;
        }
        printf("### %s\n", line);
        char cmd[32] = "", a[512] = "", b[512] = "";
        int n = sscanf(line, "%31s %511s %511s", cmd, a, b);
        if (strcmp(cmd, "grant") == 0 && n == 3) {
            do_grant(s, strtoll(a, NULL, 10), strtoll(b, NULL, 10));
        } else if (strcmp(cmd, "revoke") == 0 && n == 2) {
            do_revoke(s, strtoll(a, NULL, 10));
        } else if (strcmp(cmd, "ttl") == 0 && n >= 2) {
            do_ttl(s, strtoll(a, NULL, 10), n == 3 && strcmp(b, "keys") == 0);
        } else if (strcmp(cmd, "leases") == 0) {
            do_leases(s);
        } else if (strcmp(cmd, "put") == 0 && n == 3) {
            do_put(s, a, strtoll(b, NULL, 10));
        } else if (strcmp(cmd, "keepalive") == 0 && n >= 2) {
            do_keepalive(s, line + strlen("keepalive "));
        } else {
            printf("bad script line\n");
        }
        fflush(stdout);
    }
    keel_sync_close(s);
    return 0;
}
