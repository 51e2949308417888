/*
 * keelctl lease, member, endpoint, alarm and defrag commands, after
 * etcd: etcdctl/ctlv3/command/{lease,member,ep,alarm,defrag}_command.go and
 * the printers. Per-endpoint commands (endpoint health/status, defrag) talk
 * to each endpoint on its own client, as clientv3's Maintenance does.
 */
#include <stdlib.h>
#include <string.h>

#include "keelctl.h"

static struct flag no_flags[] = {{NULL, 0, 0, NULL, 0}};

static int64_t lease_arg(const char *s)
{
    int64_t id;
    char err[200];
    if (parse_int64(s, 16, &id, err, sizeof(err)) != 0) {
        ctl_die(EXIT_BAD_ARGS, "bad lease ID arg (%s), expecting ID in Hex",
                err);
    }
    return id;
}

/* clientv3's lease responses embed *ResponseHeader, so etcdctl's protobuf
 * printer finds the header's Marshal method and prints only the header. */
static void print_header_pb(const Etcdserverpb__ResponseHeader *h)
{
    static const Etcdserverpb__ResponseHeader zero =
        ETCDSERVERPB__RESPONSE_HEADER__INIT;
    print_protobuf(h ? &h->base : &zero.base);
}

static void json_header_then(const Etcdserverpb__ResponseHeader *h,
                             int *first)
{
    printf("{");
    json_flat_header(h, first);
}

/* ---- lease --------------------------------------------------------------- */

static void lease_grant_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "lease grant command needs TTL argument");
    }
    int64_t ttl;
    char err[200];
    if (parse_int64(argv[0], 10, &ttl, err, sizeof(err)) != 0) {
        ctl_die(EXIT_BAD_ARGS, "bad TTL (%s)", err);
    }
    Etcdserverpb__LeaseGrantRequest req =
        ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    req.ttl = ttl;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_LEASE_GRANT, &req.base,
                 &etcdserverpb__lease_grant_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "failed to grant lease (%s)", ctl_err_text(&call));
    }
    Etcdserverpb__LeaseGrantResponse *r = (void *)call.resp;
    int first = 1;
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("lease %016llx granted with TTL(%llds)\n",
                   (unsigned long long)r->id, (long long)r->ttl);
            break;
        case FMT_JSON:
            /* clientv3.LeaseGrantResponse embeds *ResponseHeader. */
            json_header_then(r->header, &first);
            printf("%s\"ID\":%lld,\"TTL\":%lld,\"Error\":", first ? "" : ",",
                   (long long)r->id, (long long)r->ttl);
            json_string(stdout, r->error ? r->error : "",
                        r->error ? strlen(r->error) : 0);
            printf("}\n");
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            printf("\"ID\" : %lld\n\"TTL\" : %lld\n", (long long)r->id,
                   (long long)r->ttl);
            break;
        case FMT_PROTOBUF:
            print_header_pb(r->header);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
    keel_call_cleanup(&call);
}

static void lease_revoke_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "lease revoke command needs 1 argument");
    }
    int64_t id = lease_arg(argv[0]);
    Etcdserverpb__LeaseRevokeRequest req =
        ETCDSERVERPB__LEASE_REVOKE_REQUEST__INIT;
    req.id = id;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_LEASE_REVOKE, &req.base,
                 &etcdserverpb__lease_revoke_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "failed to revoke lease (%s)",
                ctl_err_text(&call));
    }
    Etcdserverpb__LeaseRevokeResponse *r = (void *)call.resp;
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("lease %016llx revoked\n", (unsigned long long)id);
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
    keel_call_cleanup(&call);
}

static int ttl_keys;
static struct flag ttl_flags[] = {
    {"keys", 0, F_BOOL, &ttl_keys, 0},
    {NULL, 0, 0, NULL, 0},
};

static void lease_ttl_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "lease timetolive command needs lease ID as argument");
    }
    Etcdserverpb__LeaseTimeToLiveRequest req =
        ETCDSERVERPB__LEASE_TIME_TO_LIVE_REQUEST__INIT;
    req.id = lease_arg(argv[0]);
    req.keys = ttl_keys;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_LEASE_TTL, &req.base,
                 &etcdserverpb__lease_time_to_live_response__descriptor,
                 KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
        ctl_die(EXIT_BAD_CONNECTION, "%s", ctl_err_text(&call));
    }
    Etcdserverpb__LeaseTimeToLiveResponse *r = (void *)call.resp;
    int first = 1;
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            if (r->grantedttl == 0 && r->ttl == -1) {
                printf("lease %016llx already expired\n",
                       (unsigned long long)r->id);
                break;
            }
            printf("lease %016llx granted with TTL(%llds), remaining(%llds)",
                   (unsigned long long)r->id, (long long)r->grantedttl,
                   (long long)r->ttl);
            if (ttl_keys) {
                printf(", attached keys([");
                for (size_t i = 0; i < r->n_keys; i++) {
                    printf("%s%.*s", i ? " " : "", (int)r->keys[i].len,
                           (const char *)r->keys[i].data);
                }
                printf("])");
            }
            printf("\n");
            break;
        case FMT_JSON:
            json_header_then(r->header, &first);
            printf("%s\"id\":%lld,\"ttl\":%lld,\"granted-ttl\":%lld,"
                   "\"keys\":",
                   first ? "" : ",", (long long)r->id, (long long)r->ttl,
                   (long long)r->grantedttl);
            if (r->n_keys == 0) {
                printf("null");
            } else {
                /* [][]byte: base64 strings */
                Etcdserverpb__LeaseTimeToLiveResponse only =
                    ETCDSERVERPB__LEASE_TIME_TO_LIVE_RESPONSE__INIT;
                only.keys = r->keys;
                only.n_keys = r->n_keys;
                /* {"keys":[...]} -> print the array part */
                char *buf = NULL;
                size_t len = 0;
                FILE *m = open_memstream(&buf, &len);
                json_msg(m, &only.base);
                fclose(m);
                /* strip {"keys": and the closing brace */
                if (len > 9) {
                    fwrite(buf + 8, 1, len - 9, stdout);
                }
                free(buf);
            }
            printf("}\n");
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            printf("\"ID\" : %lld\n\"TTL\" : %lld\n\"GrantedTTL\" : %lld\n",
                   (long long)r->id, (long long)r->ttl,
                   (long long)r->grantedttl);
            for (size_t i = 0; i < r->n_keys; i++) {
                printf("\"Key\" : ");
                go_quote(stdout, r->keys[i].data, r->keys[i].len);
                printf("\n");
            }
            break;
        case FMT_PROTOBUF:
            print_header_pb(r->header);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
    keel_call_cleanup(&call);
}

static void lease_list_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    Etcdserverpb__LeaseLeasesRequest req =
        ETCDSERVERPB__LEASE_LEASES_REQUEST__INIT;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_LEASE_LEASES, &req.base,
                 &etcdserverpb__lease_leases_response__descriptor,
                 KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
        ctl_die(EXIT_BAD_CONNECTION, "%s", ctl_err_text(&call));
    }
    Etcdserverpb__LeaseLeasesResponse *r = (void *)call.resp;
    int first = 1;
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("found %zu leases\n", r->n_leases);
            for (size_t i = 0; i < r->n_leases; i++) {
                printf("%016llx\n", (unsigned long long)r->leases[i]->id);
            }
            break;
        case FMT_JSON:
            json_header_then(r->header, &first);
            printf("%s\"leases\":[", first ? "" : ",");
            for (size_t i = 0; i < r->n_leases; i++) {
                printf("%s{\"id\":%lld}", i ? "," : "",
                       (long long)r->leases[i]->id);
            }
            printf("]}\n");
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            for (size_t i = 0; i < r->n_leases; i++) {
                printf("\"ID\" : %lld\n", (long long)r->leases[i]->id);
            }
            break;
        case FMT_PROTOBUF:
            print_header_pb(r->header);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
    keel_call_cleanup(&call);
}

/* keep-alive --once: one request on a LeaseKeepAlive stream, one answer
 * (clientv3 KeepAliveOnce); without --once, libkeel's lease keepalive. */
static int ka_once, ka_done, ka_status;
static int64_t ka_id;
static char ka_msg[512];
static struct keel_stream ka_stream;

static struct flag ka_flags[] = {
    {"once", 0, F_BOOL, &ka_once, 0},
    {NULL, 0, 0, NULL, 0},
};

static void ka_send(void)
{
    Etcdserverpb__LeaseKeepAliveRequest req =
        ETCDSERVERPB__LEASE_KEEP_ALIVE_REQUEST__INIT;
    req.id = ka_id;
    keel_stream_send(&ka_stream, &req.base);
}

static void print_keepalive(const Etcdserverpb__LeaseKeepAliveResponse *r)
{
    int first = 1;
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("lease %016llx keepalived with TTL(%lld)\n",
                   (unsigned long long)r->id, (long long)r->ttl);
            break;
        case FMT_JSON:
            json_header_then(r->header, &first);
            printf("%s\"ID\":%lld,\"TTL\":%lld}\n", first ? "" : ",",
                   (long long)r->id, (long long)r->ttl);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            printf("\"ID\" : %lld\n\"TTL\" : %lld\n", (long long)r->id,
                   (long long)r->ttl);
            break;
        case FMT_PROTOBUF:
            print_header_pb(r->header);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
    fflush(stdout);
}

static void ka_msg_cb(struct keel_stream *s, ProtobufCMessage *m)
{
    Etcdserverpb__LeaseKeepAliveResponse *r = (void *)m;
    if (r->ttl <= 0) {
        /* clientv3: the lease is gone; KeepAliveOnce returns
         * ErrLeaseNotFound, KeepAlive closes its channel. */
        ka_status = -1;
        keel_stream_cancel(s);
        return;
    }
    print_keepalive(r);
    keel_stream_cancel(s); /* --once */
}

static void ka_end_cb(struct keel_stream *s, int status, const char *msg)
{
    (void)s;
    if (ka_status == 0 && status != KEEL_GRPC_CANCELED) {
        ka_status = status ? status : -2;
        snprintf(ka_msg, sizeof(ka_msg), "%s", msg);
    }
    ka_done = 1;
}

static int kal_ended;
static void kal_cb(struct keel_lease_keepalive *k,
                   const Etcdserverpb__LeaseKeepAliveResponse *r)
{
    (void)k;
    print_keepalive(r);
}
static void kal_end(struct keel_lease_keepalive *k, int status,
                    const char *msg)
{
    (void)k;
    (void)status;
    (void)msg;
    kal_ended = 1;
}

static void lease_keepalive_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS,
                "lease keep-alive command needs lease ID as argument");
    }
    ka_id = lease_arg(argv[0]);
    struct keel_sync *s = ctl_client();
    if (!ka_once) {
        /* clientv3.KeepAlive: renews until the lease is gone, across
         * reconnects. */
        struct keel_lease_keepalive k = {0};
        int rv = keel_lease_keepalive_start(keel_sync_client(s), &k, ka_id,
                                            kal_cb, kal_end);
        if (rv != 0) {
            ctl_die(EXIT_BAD_CONNECTION, "%s", keel_strerror(rv));
        }
        while (!kal_ended) {
            uv_run(keel_sync_loop(s), UV_RUN_ONCE);
        }
        if (ctl_fmt == FMT_SIMPLE) {
            printf("lease %016llx expired or revoked.\n",
                   (unsigned long long)ka_id);
        }
        return;
    }
    int rv = keel_stream_start(keel_sync_client(s), &ka_stream,
                               KEEL_M_LEASE_KEEPALIVE,
                               &etcdserverpb__lease_keep_alive_response__descriptor,
                               NULL, ka_msg_cb, ka_end_cb);
    if (rv != 0) {
        ctl_die(EXIT_BAD_CONNECTION, "%s", keel_strerror(rv));
    }
    ka_send();
    while (!ka_done) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    if (ka_status == -1) {
        ctl_die(EXIT_BAD_CONNECTION, "etcdserver: requested lease not found");
    }
    if (ka_status != 0) {
        ctl_die(EXIT_BAD_CONNECTION, "%s", ka_msg);
    }
}

/* ---- member --------------------------------------------------------------- */

static void member_row(const Etcdserverpb__Member *m, char **row)
{
    char *buf;
    size_t len;
    row[0] = malloc(24);
    snprintf(row[0], 24, "%llx", (unsigned long long)m->id);
    row[1] = strdup(m->name && m->name[0] ? "started" : "unstarted");
    row[2] = strdup(m->name ? m->name : "");
    for (int k = 0; k < 2; k++) {
        char **urls = k == 0 ? m->peerurls : m->clienturls;
        size_t n = k == 0 ? m->n_peerurls : m->n_clienturls;
        FILE *f = open_memstream(&buf, &len);
        for (size_t i = 0; i < n; i++) {
            fprintf(f, "%s%s", i ? "," : "", urls[i]);
        }
        fclose(f);
        row[3 + k] = buf;
    }
    row[5] = strdup(m->islearner ? "true" : "false");
}

static void free_rows(char ***rows, size_t n, size_t ncols)
{
    for (size_t r = 0; r < n; r++) {
        for (size_t c = 0; c < ncols; c++) {
            free(rows[r][c]);
        }
        free(rows[r]);
    }
    free(rows);
}

static Etcdserverpb__MemberListResponse *member_list(struct keel_call *call)
{
    Etcdserverpb__MemberListRequest req =
        ETCDSERVERPB__MEMBER_LIST_REQUEST__INIT;
    if (ctl_call(ctl_client(), call, KEEL_M_MEMBER_LIST, &req.base,
                 &etcdserverpb__member_list_response__descriptor,
                 KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(call));
    }
    return (void *)call->resp;
}

static void member_list_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct keel_call call;
    Etcdserverpb__MemberListResponse *r = member_list(&call);
    static const char *const hdr[] = {"ID",         "Status",
                                      "Name",       "Peer Addrs",
                                      "Client Addrs", "Is Learner"};
    char ***rows = calloc(r->n_members + 1, sizeof(char **));
    for (size_t i = 0; i < r->n_members; i++) {
        rows[i] = calloc(6, sizeof(char *));
        member_row(r->members[i], rows[i]);
    }
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            for (size_t i = 0; i < r->n_members; i++) {
                printf("%s, %s, %s, %s, %s, %s\n", rows[i][0], rows[i][1],
                       rows[i][2], rows[i][3], rows[i][4], rows[i][5]);
            }
            break;
        case FMT_TABLE:
            print_table(hdr, 6, rows, r->n_members);
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            for (size_t i = 0; i < r->n_members; i++) {
                const Etcdserverpb__Member *m = r->members[i];
                printf("\"ID\" : %llu\n\"Name\" : ", (unsigned long long)m->id);
                go_quote(stdout, (const uint8_t *)(m->name ? m->name : ""),
                         m->name ? strlen(m->name) : 0);
                printf("\n");
                for (size_t k = 0; k < m->n_peerurls; k++) {
                    printf("\"PeerURL\" : ");
                    go_quote(stdout, (const uint8_t *)m->peerurls[k],
                             strlen(m->peerurls[k]));
                    printf("\n");
                }
                for (size_t k = 0; k < m->n_clienturls; k++) {
                    printf("\"ClientURL\" : ");
                    go_quote(stdout, (const uint8_t *)m->clienturls[k],
                             strlen(m->clienturls[k]));
                    printf("\n");
                }
                printf("\"IsLearner\" : %s\n\n",
                       m->islearner ? "true" : "false");
            }
            break;
    }
    free_rows(rows, r->n_members, 6);
    keel_call_cleanup(&call);
}

static uint64_t member_id_arg(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "member ID is not provided");
    }
    char *end;
    uint64_t id = strtoull(argv[0], &end, 16);
    if (argv[0][0] == '\0' || *end != '\0' || argv[0][0] == '-') {
        ctl_die(EXIT_BAD_ARGS,
                "bad member ID arg (strconv.ParseUint: parsing \"%s\": "
                "invalid syntax), expecting ID in Hex",
                argv[0]);
    }
    return id;
}

static const char *member_peer_urls;
static int member_learner;
static struct flag member_add_flags[] = {
    {"peer-urls", 0, F_STRING, &member_peer_urls, 0},
    {"learner", 0, F_BOOL, &member_learner, 0},
    {NULL, 0, 0, NULL, 0},
};
static struct flag member_update_flags[] = {
    {"peer-urls", 0, F_STRING, &member_peer_urls, 0},
    {NULL, 0, 0, NULL, 0},
};

static size_t split_urls(const char *s, char ***out)
{
    char *copy = ctl_strdup(s);
    size_t n = 1;
    for (const char *p = s; *p; p++) {
        n += *p == ',';
    }
    char **v = ctl_alloc(n * sizeof(char *));
    size_t k = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        v[k++] = t;
    }
    *out = v;
    return k;
}

static void member_done(const char *verb, uint64_t id,
                        const Etcdserverpb__ResponseHeader *h,
                        const ProtobufCMessage *m)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("Member %16llx %s cluster %16llx\n",
                   (unsigned long long)id, verb,
                   (unsigned long long)(h ? h->cluster_id : 0));
            break;
        case FMT_JSON:
            print_json_msg(m);
            break;
        case FMT_PROTOBUF:
            print_protobuf(m);
            break;
        case FMT_FIELDS:
            fields_hdr(h);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static void member_add_run(int argc, char **argv)
{
    if (argc < 1) {
        ctl_die(EXIT_BAD_ARGS, "member name not provided");
    }
    if (argc > 1) {
        ctl_die(EXIT_BAD_ARGS, "too many arguments, did you mean "
                               "\"--peer-urls\"?");
    }
    if (member_peer_urls == NULL || member_peer_urls[0] == '\0') {
        ctl_die(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    Etcdserverpb__MemberAddRequest req =
        ETCDSERVERPB__MEMBER_ADD_REQUEST__INIT;
    req.n_peerurls = split_urls(member_peer_urls, &req.peerurls);
    req.islearner = member_learner;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_MEMBER_ADD, &req.base,
                 &etcdserverpb__member_add_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    Etcdserverpb__MemberAddResponse *r = (void *)call.resp;
    uint64_t new_id = r->member ? r->member->id : 0;
    if (ctl_fmt == FMT_SIMPLE) {
        printf("Member %16llx added to cluster %16llx\n",
               (unsigned long long)new_id,
               (unsigned long long)(r->header ? r->header->cluster_id : 0));
        printf("\nETCD_NAME=");
        go_quote(stdout, (const uint8_t *)argv[0], strlen(argv[0]));
        printf("\nETCD_INITIAL_CLUSTER=\"");
        int first = 1;
        for (size_t i = 0; i < r->n_members; i++) {
            const Etcdserverpb__Member *m = r->members[i];
            for (size_t k = 0; k < m->n_peerurls; k++) {
                printf("%s%s=%s", first ? "" : ",",
                       m->id == new_id ? argv[0] : (m->name ? m->name : ""),
                       m->peerurls[k]);
                first = 0;
            }
        }
        printf("\"\nETCD_INITIAL_ADVERTISE_PEER_URLS=");
        go_quote(stdout, (const uint8_t *)member_peer_urls,
                 strlen(member_peer_urls));
        printf("\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
    } else {
        member_done("added to", new_id, r->header, &r->base);
    }
    keel_call_cleanup(&call);
}

static void member_remove_run(int argc, char **argv)
{
    uint64_t id = member_id_arg(argc, argv);
    Etcdserverpb__MemberRemoveRequest req =
        ETCDSERVERPB__MEMBER_REMOVE_REQUEST__INIT;
    req.id = id;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_MEMBER_REMOVE, &req.base,
                 &etcdserverpb__member_remove_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    Etcdserverpb__MemberRemoveResponse *r = (void *)call.resp;
    member_done("removed from", id, r->header, &r->base);
    keel_call_cleanup(&call);
}

static void member_update_run(int argc, char **argv)
{
    uint64_t id = member_id_arg(argc, argv);
    if (member_peer_urls == NULL || member_peer_urls[0] == '\0') {
        ctl_die(EXIT_BAD_ARGS, "member peer urls not provided");
    }
    Etcdserverpb__MemberUpdateRequest req =
        ETCDSERVERPB__MEMBER_UPDATE_REQUEST__INIT;
    req.id = id;
    req.n_peerurls = split_urls(member_peer_urls, &req.peerurls);
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_MEMBER_UPDATE, &req.base,
                 &etcdserverpb__member_update_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    Etcdserverpb__MemberUpdateResponse *r = (void *)call.resp;
    member_done("updated in", id, r->header, &r->base);
    keel_call_cleanup(&call);
}

static void member_promote_run(int argc, char **argv)
{
    uint64_t id = member_id_arg(argc, argv);
    Etcdserverpb__MemberPromoteRequest req =
        ETCDSERVERPB__MEMBER_PROMOTE_REQUEST__INIT;
    req.id = id;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_MEMBER_PROMOTE, &req.base,
                 &etcdserverpb__member_promote_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    Etcdserverpb__MemberPromoteResponse *r = (void *)call.resp;
    member_done("promoted in", id, r->header, &r->base);
    keel_call_cleanup(&call);
}

/* ---- endpoints -------------------------------------------------------------- */

static int ep_cluster;
static struct flag ep_flags[] = {
    {"cluster", 0, F_BOOL, &ep_cluster, 0},
    {NULL, 0, 0, NULL, 0},
};

/* etcd: endpointsFromCluster in ep_command.go */
static size_t endpoints(char ***out)
{
    if (!ep_cluster) {
        *out = g.endpoints;
        return g.n_endpoints;
    }
    struct keel_call call;
    Etcdserverpb__MemberListResponse *r = member_list(&call);
    size_t n = 0;
    for (size_t i = 0; i < r->n_members; i++) {
        n += r->members[i]->n_clienturls;
    }
    char **v = ctl_alloc((n + 1) * sizeof(char *));
    n = 0;
    for (size_t i = 0; i < r->n_members; i++) {
        for (size_t k = 0; k < r->members[i]->n_clienturls; k++) {
            v[n++] = ctl_strdup(r->members[i]->clienturls[k]);
        }
    }
    keel_call_cleanup(&call);
    *out = v;
    return n;
}

struct ep_health
{
    char *ep;
    int health;
    char took[64];
    char *error;
};

static void ep_health_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* etcdctl validates -w here too (initDisplayFromCmd). */
    ctl_client();
    char **eps;
    size_t n = endpoints(&eps);
    struct ep_health *hs = calloc(n + 1, sizeof(*hs));
    int errs = 0;
    for (size_t i = 0; i < n; i++) {
        const char *one[1] = {eps[i]};
        struct keel_sync *s = ctl_client_for(one, 1);
        Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
        req.key.data = (uint8_t *)"health";
        req.key.len = 6;
        uint64_t t0 = uv_hrtime();
        struct keel_call call;
        int st = ctl_call(s, &call, KEEL_M_RANGE, &req.base,
                          &etcdserverpb__range_response__descriptor,
                          KEEL_CALL_IDEMPOTENT);
        go_duration(uv_hrtime() - t0, hs[i].took, sizeof(hs[i].took));
        hs[i].ep = eps[i];
        if (st == KEEL_GRPC_OK ||
            strcmp(call.message, "etcdserver: permission denied") == 0) {
            hs[i].health = 1;
        } else {
            hs[i].error = strdup(ctl_err_text(&call));
            errs = 1;
        }
        keel_call_cleanup(&call);
        keel_sync_close(s);
    }
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            fflush(stdout);
            for (size_t i = 0; i < n; i++) {
                if (hs[i].error == NULL) {
                    fprintf(stderr,
                            "%s is healthy: successfully committed proposal: "
                            "took = %s\n",
                            hs[i].ep, hs[i].took);
                } else {
                    fprintf(stderr,
                            "%s is unhealthy: failed to commit proposal: %s\n",
                            hs[i].ep, hs[i].error);
                }
            }
            break;
        case FMT_JSON:
            printf("[");
            for (size_t i = 0; i < n; i++) {
                printf("%s{\"endpoint\":", i ? "," : "");
                json_string(stdout, hs[i].ep, strlen(hs[i].ep));
                printf(",\"health\":%s,\"took\":",
                       hs[i].health ? "true" : "false");
                json_string(stdout, hs[i].took, strlen(hs[i].took));
                if (hs[i].error) {
                    printf(",\"error\":");
                    json_string(stdout, hs[i].error, strlen(hs[i].error));
                }
                printf("}");
            }
            printf("]\n");
            break;
        case FMT_FIELDS:
            for (size_t i = 0; i < n; i++) {
                printf("\"Endpoint\" : ");
                go_quote(stdout, (const uint8_t *)hs[i].ep, strlen(hs[i].ep));
                printf("\n\"Health\" : %s\n\"Took\" : %s\n\"Error\" : %s\n\n",
                       hs[i].health ? "true" : "false", hs[i].took,
                       hs[i].error ? hs[i].error : "");
            }
            break;
        case FMT_TABLE: {
            static const char *const hdr[] = {"endpoint", "health", "took",
                                              "error"};
            char ***rows = calloc(n + 1, sizeof(char **));
            for (size_t i = 0; i < n; i++) {
                rows[i] = calloc(4, sizeof(char *));
                rows[i][0] = strdup(hs[i].ep);
                rows[i][1] = strdup(hs[i].health ? "true" : "false");
                rows[i][2] = strdup(hs[i].took);
                rows[i][3] = strdup(hs[i].error ? hs[i].error : "");
            }
            print_table(hdr, 4, rows, n);
            free_rows(rows, n, 4);
            break;
        }
        case FMT_PROTOBUF:
            ctl_unsupported_format();
    }
    for (size_t i = 0; i < n; i++) {
        free(hs[i].error);
    }
    free(hs);
    if (errs) {
        ctl_die(EXIT_ERROR, "unhealthy cluster");
    }
}

struct ep_status
{
    const char *ep;
    struct keel_call call;
    Etcdserverpb__StatusResponse *r;
};

static void status_row(const struct ep_status *s, char **row)
{
    const Etcdserverpb__StatusResponse *r = s->r;
    uint64_t mid = r->header ? r->header->member_id : 0;
    char buf[64];
    row[0] = strdup(s->ep);
    snprintf(buf, sizeof(buf), "%llx", (unsigned long long)mid);
    row[1] = strdup(buf);
    row[2] = strdup(r->version ? r->version : "");
    humanize_bytes((uint64_t)r->dbsize, buf, sizeof(buf));
    row[3] = strdup(buf);
    row[4] = strdup(r->leader == mid ? "true" : "false");
    row[5] = strdup(r->islearner ? "true" : "false");
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)r->raftterm);
    row[6] = strdup(buf);
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)r->raftindex);
    row[7] = strdup(buf);
    snprintf(buf, sizeof(buf), "%llu",
             (unsigned long long)r->raftappliedindex);
    row[8] = strdup(buf);
    char *errs;
    size_t len;
    FILE *f = open_memstream(&errs, &len);
    for (size_t i = 0; i < r->n_errors; i++) {
        fprintf(f, "%s%s", i ? ", " : "", r->errors[i]);
    }
    fclose(f);
    row[9] = errs;
}

static void ep_status_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    ctl_client();
    char **eps;
    size_t n = endpoints(&eps);
    struct ep_status *st = calloc(n + 1, sizeof(*st));
    size_t ok = 0;
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        const char *one[1] = {eps[i]};
        struct keel_sync *s = ctl_client_for(one, 1);
        Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
        struct ep_status *e = &st[ok];
        e->ep = eps[i];
        ctl_passthrough = 1;
        int rc = ctl_call(s, &e->call, KEEL_M_STATUS, &req.base,
                     &etcdserverpb__status_response__descriptor,
                     KEEL_CALL_IDEMPOTENT);
        ctl_passthrough = 0;
        if (rc != KEEL_GRPC_OK) {
            fflush(stdout);
            fprintf(stderr, "Failed to get the status of endpoint %s (%s)\n",
                    eps[i], ctl_err_text(&e->call));
            keel_call_cleanup(&e->call);
            failed = 1;
        } else {
            e->r = (void *)e->call.resp;
            ok++;
        }
        keel_sync_close(s);
    }
    static const char *const hdr[] = {
        "endpoint",  "ID",        "version",    "db size",
        "is leader", "is learner", "raft term", "raft index",
        "raft applied index", "errors"};
    char ***rows = calloc(ok + 1, sizeof(char **));
    for (size_t i = 0; i < ok; i++) {
        rows[i] = calloc(10, sizeof(char *));
        status_row(&st[i], rows[i]);
    }
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            for (size_t i = 0; i < ok; i++) {
                for (size_t c = 0; c < 10; c++) {
                    printf("%s%s", c ? ", " : "", rows[i][c]);
                }
                printf("\n");
            }
            break;
        case FMT_TABLE:
            print_table(hdr, 10, rows, ok);
            break;
        case FMT_JSON:
            printf("[");
            for (size_t i = 0; i < ok; i++) {
                printf("%s{\"Endpoint\":", i ? "," : "");
                json_string(stdout, st[i].ep, strlen(st[i].ep));
                printf(",\"Status\":");
                json_msg(stdout, &st[i].r->base);
                printf("}");
            }
            printf("]\n");
            break;
        case FMT_FIELDS:
            for (size_t i = 0; i < ok; i++) {
                const Etcdserverpb__StatusResponse *r = st[i].r;
                fields_hdr(r->header);
                printf("\"Version\" : ");
                go_quote(stdout, (const uint8_t *)(r->version ? r->version : ""),
                         r->version ? strlen(r->version) : 0);
                printf("\n\"DBSize\" : %lld\n\"Leader\" : %llu\n"
                       "\"IsLearner\" : %s\n\"RaftIndex\" : %llu\n"
                       "\"RaftTerm\" : %llu\n\"RaftAppliedIndex\" : %llu\n"
                       "\"Errors\" : [",
                       (long long)r->dbsize, (unsigned long long)r->leader,
                       r->islearner ? "true" : "false",
                       (unsigned long long)r->raftindex,
                       (unsigned long long)r->raftterm,
                       (unsigned long long)r->raftappliedindex);
                for (size_t k = 0; k < r->n_errors; k++) {
                    printf("%s%s", k ? " " : "", r->errors[k]);
                }
                printf("]\n\"Endpoint\" : ");
                go_quote(stdout, (const uint8_t *)st[i].ep, strlen(st[i].ep));
                printf("\n\n");
            }
            break;
        case FMT_PROTOBUF:
            ctl_unsupported_format();
    }
    free_rows(rows, ok, 10);
    for (size_t i = 0; i < ok; i++) {
        keel_call_cleanup(&st[i].call);
    }
    free(st);
    if (failed) {
        fflush(stdout);
        exit(EXIT_ERROR);
    }
}

static int64_t hashkv_rev;
static struct flag hashkv_flags[] = {
    {"cluster", 0, F_BOOL, &ep_cluster, 0},
    {"rev", 0, F_INT64, &hashkv_rev, 0},
    {NULL, 0, 0, NULL, 0},
};

/* etcd: epHashKVCommandFunc */
static void ep_hashkv_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    ctl_client();
    char **eps;
    size_t n = endpoints(&eps);
    struct keel_call *calls = ctl_alloc((n + 1) * sizeof(*calls));
    const char **ok_eps = ctl_alloc((n + 1) * sizeof(char *));
    size_t ok = 0;
    char last_err[600] = "";
    for (size_t i = 0; i < n; i++) {
        const char *one[1] = {eps[i]};
        struct keel_sync *s = ctl_client_for(one, 1);
        Etcdserverpb__HashKVRequest req = ETCDSERVERPB__HASH_KVREQUEST__INIT;
        req.revision = hashkv_rev;
        ctl_passthrough = 1;
        int rc = ctl_call(s, &calls[ok], KEEL_M_HASHKV, &req.base,
                          &etcdserverpb__hash_kvresponse__descriptor,
                          KEEL_CALL_IDEMPOTENT);
        ctl_passthrough = 0;
        if (rc != KEEL_GRPC_OK) {
            snprintf(last_err, sizeof(last_err), "%s",
                     ctl_err_text(&calls[ok]));
            fflush(stdout);
            fprintf(stderr, "Failed to get the hash of endpoint %s (%s)\n",
                    eps[i], last_err);
            keel_call_cleanup(&calls[ok]);
        } else {
            ok_eps[ok++] = eps[i];
        }
        keel_sync_close(s);
    }
    switch (ctl_fmt) {
        case FMT_SIMPLE:
        case FMT_TABLE: {
            static const char *const hdr[] = {"endpoint", "hash"};
            char ***rows = calloc(ok + 1, sizeof(char **));
            for (size_t i = 0; i < ok; i++) {
                Etcdserverpb__HashKVResponse *r = (void *)calls[i].resp;
                rows[i] = calloc(2, sizeof(char *));
                rows[i][0] = strdup(ok_eps[i]);
                rows[i][1] = malloc(16);
                snprintf(rows[i][1], 16, "%u", r->hash);
                if (ctl_fmt == FMT_SIMPLE) {
                    printf("%s, %s\n", rows[i][0], rows[i][1]);
                }
            }
            if (ctl_fmt == FMT_TABLE) {
                print_table(hdr, 2, rows, ok);
            }
            free_rows(rows, ok, 2);
            break;
        }
        case FMT_JSON:
            printf("[");
            for (size_t i = 0; i < ok; i++) {
                printf("%s{\"Endpoint\":", i ? "," : "");
                json_string(stdout, ok_eps[i], strlen(ok_eps[i]));
                printf(",\"HashKV\":");
                json_msg(stdout, calls[i].resp);
                printf("}");
            }
            printf("]\n");
            break;
        case FMT_FIELDS:
            for (size_t i = 0; i < ok; i++) {
                Etcdserverpb__HashKVResponse *r = (void *)calls[i].resp;
                fields_hdr(r->header);
                printf("\"Endpoint\" : ");
                go_quote(stdout, (const uint8_t *)ok_eps[i],
                         strlen(ok_eps[i]));
                printf("\n\"Hash\" : %u\n\n", r->hash);
            }
            break;
        case FMT_PROTOBUF:
            ctl_unsupported_format();
    }
    for (size_t i = 0; i < ok; i++) {
        keel_call_cleanup(&calls[i]);
    }
    if (last_err[0]) {
        ctl_die(EXIT_ERROR, "%s", last_err);
    }
}

/* ---- alarm, defrag ------------------------------------------------------------ */

static void print_alarms(const Etcdserverpb__AlarmResponse *r)
{
    static const char *const names[] = {"NONE", "NOSPACE", "CORRUPT"};
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            /* Go's %+v of *AlarmMember: its proto text form. */
            for (size_t i = 0; i < r->n_alarms; i++) {
                const Etcdserverpb__AlarmMember *a = r->alarms[i];
                unsigned t = (unsigned)a->alarm;
                printf("memberID:%llu alarm:%s \n",
                       (unsigned long long)a->memberid,
                       t < 3 ? names[t] : "UNKNOWN");
            }
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            for (size_t i = 0; i < r->n_alarms; i++) {
                unsigned t = (unsigned)r->alarms[i]->alarm;
                printf("\"MemberID\" : %llu\n\"AlarmType\" : %s\n\n",
                       (unsigned long long)r->alarms[i]->memberid,
                       t < 3 ? names[t] : "UNKNOWN");
            }
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static Etcdserverpb__AlarmResponse *alarm_call(struct keel_call *call,
                                               int action, uint64_t member,
                                               int alarm)
{
    Etcdserverpb__AlarmRequest req = ETCDSERVERPB__ALARM_REQUEST__INIT;
    req.action = action;
    req.memberid = member;
    req.alarm = alarm;
    if (ctl_call(ctl_client(), call, KEEL_M_ALARM, &req.base,
                 &etcdserverpb__alarm_response__descriptor,
                 action == ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET
                     ? KEEL_CALL_IDEMPOTENT
                     : 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(call));
    }
    return (void *)call->resp;
}

static void alarm_list_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS, "alarm list command accepts no arguments");
    }
    struct keel_call call;
    print_alarms(
        alarm_call(&call, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0, 0));
    keel_call_cleanup(&call);
}

static void alarm_disarm_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS, "alarm disarm command accepts no arguments");
    }
    /* clientv3 AlarmDisarm with an empty member: list, then disarm each;
     * the result carries no header. */
    struct keel_call list;
    Etcdserverpb__AlarmResponse *l =
        alarm_call(&list, ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET, 0, 0);
    Etcdserverpb__AlarmResponse ret = ETCDSERVERPB__ALARM_RESPONSE__INIT;
    Etcdserverpb__AlarmMember **all =
        calloc(l->n_alarms + 1, sizeof(*all));
    struct keel_call *calls = calloc(l->n_alarms + 1, sizeof(*calls));
    for (size_t i = 0; i < l->n_alarms; i++) {
        Etcdserverpb__AlarmResponse *d = alarm_call(
            &calls[i], ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__DEACTIVATE,
            l->alarms[i]->memberid, l->alarms[i]->alarm);
        for (size_t k = 0; k < d->n_alarms; k++) {
            all[ret.n_alarms++] = d->alarms[k];
        }
    }
    ret.alarms = all;
    print_alarms(&ret);
    for (size_t i = 0; i < l->n_alarms; i++) {
        keel_call_cleanup(&calls[i]);
    }
    free(calls);
    free(all);
    keel_call_cleanup(&list);
}

static const char *defrag_data_dir;
static struct flag defrag_flags[] = {
    {"cluster", 0, F_BOOL, &ep_cluster, 0},
    {"data-dir", 0, F_STRING, &defrag_data_dir, 0},
    {NULL, 0, 0, NULL, 0},
};

static void defrag_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (defrag_data_dir && defrag_data_dir[0]) {
        fprintf(stderr,
                "Failed to defragment etcd data[%s] (offline defragmentation "
                "is not supported by keelctl yet)\n",
                defrag_data_dir);
        exit(EXIT_ERROR);
    }
    ctl_client();
    char **eps;
    size_t n = endpoints(&eps);
    int failures = 0;
    for (size_t i = 0; i < n; i++) {
        const char *one[1] = {eps[i]};
        struct keel_sync *s = ctl_client_for(one, 1);
        Etcdserverpb__DefragmentRequest req =
            ETCDSERVERPB__DEFRAGMENT_REQUEST__INIT;
        struct keel_call call;
        ctl_passthrough = 1;
        int rc = ctl_call(s, &call, KEEL_M_DEFRAGMENT, &req.base,
                          &etcdserverpb__defragment_response__descriptor, 0);
        ctl_passthrough = 0;
        if (rc != KEEL_GRPC_OK) {
            fflush(stdout);
            fprintf(stderr, "Failed to defragment etcd member[%s] (%s)\n",
                    eps[i], ctl_err_text(&call));
            failures++;
        } else {
            printf("Finished defragmenting etcd member[%s]\n", eps[i]);
        }
        keel_call_cleanup(&call);
        keel_sync_close(s);
    }
    if (failures) {
        fflush(stdout);
        exit(EXIT_ERROR);
    }
}

const struct ctl_cmd ctl_maint_cmds[] = {
    {"lease grant", no_flags, lease_grant_run},
    {"lease revoke", no_flags, lease_revoke_run},
    {"lease timetolive", ttl_flags, lease_ttl_run},
    {"lease list", no_flags, lease_list_run},
    {"lease keep-alive", ka_flags, lease_keepalive_run},
    {"member list", no_flags, member_list_run},
    {"member add", member_add_flags, member_add_run},
    {"member remove", no_flags, member_remove_run},
    {"member update", member_update_flags, member_update_run},
    {"member promote", no_flags, member_promote_run},
    {"endpoint health", ep_flags, ep_health_run},
    {"endpoint status", ep_flags, ep_status_run},
    {"endpoint hashkv", hashkv_flags, ep_hashkv_run},
    {"alarm list", no_flags, alarm_list_run},
    {"alarm disarm", no_flags, alarm_disarm_run},
    {"defrag", defrag_flags, defrag_run},
    {NULL, NULL, NULL},
};
