/*
 * keelctl move-leader and make-mirror (etcd: etcdctl/ctlv3/command/
 * move_leader_command.go, make_mirror_command.go, clientv3/mirror).
 *
 * move-leader: Status on each endpoint in turn (a client per endpoint) until
 * one is the leader, then MoveLeader(target) there.
 *
 * make-mirror: read the source at one revision in pages of 1000 keys and
 * put each into the destination, then watch the source from the next
 * revision and replay each source revision as one destination txn; every
 * key written counts, and the count is printed every 30 s (etcdctl's
 * period; KEELCTL_MIRROR_REPORT_MS shortens it, for tests only). Runs until
 * killed; a compacted watch ends it with etcd's ErrCompacted.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "keelctl.h"

/* ---- move-leader --------------------------------------------------------- */

static void move_leader_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "move-leader command needs 1 argument");
    }
    char *end;
    errno = 0;
    unsigned long long target = strtoull(argv[0], &end, 16);
    if (argv[0][0] == 0 || *end != 0 || argv[0][0] == '-' ||
        argv[0][0] == '+') {
        ctl_die(EXIT_BAD_ARGS, "strconv.ParseUint: parsing \"%s\": invalid "
                               "syntax", argv[0]);
    }
    if (errno == ERANGE) {
        ctl_die(EXIT_BAD_ARGS, "strconv.ParseUint: parsing \"%s\": value out "
                               "of range", argv[0]);
    }
    ctl_client(); /* -w and the global flags, as mustClient */
    struct keel_sync *leader = NULL;
    uint64_t leader_id = 0;
    for (size_t i = 0; i < g.n_endpoints && leader == NULL; i++) {
        const char *one[1] = {g.endpoints[i]};
        struct keel_sync *s = ctl_client_for(one, 1);
        Etcdserverpb__StatusRequest req = ETCDSERVERPB__STATUS_REQUEST__INIT;
        struct keel_call call;
        ctl_passthrough = 1; /* clientv3 Maintenance.Status dials the ep */
        int rc = ctl_call(s, &call, KEEL_M_STATUS, &req.base,
                          &etcdserverpb__status_response__descriptor,
                          KEEL_CALL_IDEMPOTENT);
        ctl_passthrough = 0;
        if (rc != KEEL_GRPC_OK) {
            ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
        }
        Etcdserverpb__StatusResponse *r = (void *)call.resp;
        if (r->header != NULL && r->header->member_id == r->leader) {
            leader = s;
            leader_id = r->leader;
        } else {
            keel_sync_close(s);
        }
        keel_call_cleanup(&call);
    }
    if (leader == NULL) {
        ctl_die(EXIT_BAD_ARGS, "no leader endpoint given at [%s]",
                ctl_endpoint_list());
    }
    Etcdserverpb__MoveLeaderRequest req = ETCDSERVERPB__MOVE_LEADER_REQUEST__INIT;
    req.targetid = target;
    struct keel_call call;
    if (ctl_call(leader, &call, KEEL_M_MOVE_LEADER, &req.base,
                 &etcdserverpb__move_leader_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        const char *err = ctl_strdup(ctl_err_text(&call));
        keel_call_cleanup(&call);
        keel_sync_close(leader);
        ctl_die(EXIT_ERROR, "%s", err);
    }
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("Leadership transferred from %" PRIx64 " to %llx\n",
                   leader_id, target);
            break;
        case FMT_JSON:
            print_json_msg(call.resp);
            break;
        case FMT_PROTOBUF:
            print_protobuf(call.resp);
            break;
        default:
            keel_call_cleanup(&call);
            keel_sync_close(leader);
            ctl_unsupported_format();
    }
    keel_call_cleanup(&call);
    keel_sync_close(leader);
}

/* ---- make-mirror --------------------------------------------------------- */

static const char *mm_prefix = "", *mm_dest_prefix = "";
static int mm_no_dest_prefix;
static const char *mm_cert = "", *mm_key = "", *mm_cacert = "";
static int mm_insecure = 1;

static struct flag mm_flags[] = {
    {"prefix", 0, F_STRING, &mm_prefix, 0},
    {"dest-prefix", 0, F_STRING, &mm_dest_prefix, 0},
    {"no-dest-prefix", 0, F_BOOL, &mm_no_dest_prefix, 0},
    {"dest-cert", 0, F_STRING, &mm_cert, 0},
    {"dest-key", 0, F_STRING, &mm_key, 0},
    {"dest-cacert", 0, F_STRING, &mm_cacert, 0},
    {"dest-insecure-transport", 0, F_BOOL, &mm_insecure, 0},
    {NULL, 0, 0, NULL, 0},
};

static struct keel_sync *mm_src, *mm_dst;
static int64_t mm_total;
static int mm_failed;
static char mm_err[1200];

/* Go's strings.Replace(key, prefix, dest, 1), malloc'd (the caller frees
 * .data): a long mirror must not grow the arena per key. */
static ProtobufCBinaryData modify_prefix(const ProtobufCBinaryData *key)
{
    size_t pl = strlen(mm_prefix), dl = strlen(mm_dest_prefix);
    size_t at = key->len + 1; /* not found */
    if (pl == 0) {
        at = 0;
    } else {
        for (size_t i = 0; i + pl <= key->len; i++) {
            if (memcmp(key->data + i, mm_prefix, pl) == 0) {
                at = i;
                break;
            }
        }
    }
    ProtobufCBinaryData out;
    if (at > key->len) {
        at = 0;
        pl = dl = 0; /* unchanged: a plain copy */
    }
    uint8_t *buf = malloc(key->len - pl + dl + 1);
    if (buf == NULL) {
        ctl_die(EXIT_ERROR, "out of memory");
    }
    memcpy(buf, key->data, at);
    memcpy(buf + at, mm_dest_prefix, dl);
    memcpy(buf + at + dl, key->data + at + pl, key->len - at - pl);
    out.data = buf;
    out.len = key->len - pl + dl;
    return out;
}

static void dest_call(const char *path, const ProtobufCMessage *req,
                      const ProtobufCMessageDescriptor *desc)
{
    struct keel_call call;
    if (ctl_call(mm_dst, &call, path, req, desc, 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    keel_call_cleanup(&call);
}

/* Replay one source revision's events as one destination txn. */
/* One op per event, with its request, both malloc'd with the key. */
struct mm_op
{
    Etcdserverpb__RequestOp op;
    Etcdserverpb__PutRequest put;
    Etcdserverpb__DeleteRangeRequest del;
};

static void flush_ops(Etcdserverpb__RequestOp **ops, size_t n)
{
    if (n == 0) {
        return;
    }
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.success = ops;
    t.n_success = n;
    dest_call(KEEL_M_TXN, &t.base, &etcdserverpb__txn_response__descriptor);
    for (size_t i = 0; i < n; i++) {
        struct mm_op *o = (struct mm_op *)ops[i]; /* op is the first member */
        free(o->put.key.data);
        free(o->del.key.data);
        free(o);
    }
}

static void mm_watch_cb(struct keel_watch *w,
                        const Etcdserverpb__WatchResponse *r)
{
    (void)w;
    if (mm_failed) {
        return;
    }
    if (r->compact_revision != 0) {
        mm_failed = 1;
        snprintf(mm_err, sizeof(mm_err),
                 "etcdserver: mvcc: required revision has been compacted");
        return;
    }
    Etcdserverpb__RequestOp **ops = calloc(r->n_events + 1, sizeof(*ops));
    if (ops == NULL) {
        ctl_die(EXIT_ERROR, "out of memory");
    }
    size_t n = 0;
    int64_t last = 0;
    for (size_t i = 0; i < r->n_events; i++) {
        const Mvccpb__Event *e = r->events[i];
        int64_t next = e->kv->mod_revision;
        if (last != 0 && next > last) {
            flush_ops(ops, n);
            n = 0;
        }
        last = next;
        struct mm_op *o = calloc(1, sizeof(*o));
        if (o == NULL) {
            ctl_die(EXIT_ERROR, "out of memory");
        }
        etcdserverpb__request_op__init(&o->op);
        etcdserverpb__put_request__init(&o->put);
        etcdserverpb__delete_range_request__init(&o->del);
        if (e->type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
            o->put.key = modify_prefix(&e->kv->key);
            o->put.value = e->kv->value;
            o->op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
            o->op.request_put = &o->put;
        } else {
            o->del.key = modify_prefix(&e->kv->key);
            o->op.request_case =
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
            o->op.request_delete_range = &o->del;
        }
        ops[n++] = &o->op;
        mm_total++;
    }
    flush_ops(ops, n);
    free(ops);
}

static int mm_watch_ended;
static void mm_watch_end(struct keel_watch *w, int status, const char *msg)
{
    (void)w;
    (void)status;
    if (!mm_failed) {
        snprintf(mm_err, sizeof(mm_err), "%s", msg);
    }
    mm_watch_ended = 1;
}

static void mm_report(uv_timer_t *t)
{
    (void)t;
    printf("%" PRId64 "\n", mm_total);
    fflush(stdout);
}

static void make_mirror_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "make-mirror takes one destination argument");
    }
    static struct keel_tls_config tls;
    int has_tls = ctl_tls_config(mm_cert, mm_key, mm_cacert, mm_insecure, 0,
                                 &tls);
    const char *dst[1] = {argv[0]};
    mm_dst = ctl_client_with(dst, 1, has_tls ? &tls : NULL, 0);
    mm_src = ctl_client();

    uint64_t every = 30000;
    const char *knob = getenv("KEELCTL_MIRROR_REPORT_MS");
    if (knob != NULL && atoll(knob) > 0) {
        every = (uint64_t)atoll(knob);
    }
    static uv_timer_t report;
    uv_timer_init(keel_sync_loop(mm_src), &report);
    uv_timer_start(&report, mm_report, every, every);

    /* SyncBase: the revision of a Get of "foo", then pages at it. */
    Etcdserverpb__RangeRequest foo = ETCDSERVERPB__RANGE_REQUEST__INIT;
    foo.key.data = (uint8_t *)"foo";
    foo.key.len = 3;
    struct keel_call call;
    if (ctl_call(mm_src, &call, KEEL_M_RANGE, &foo.base,
                 &etcdserverpb__range_response__descriptor,
                 KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    int64_t rev = ((Etcdserverpb__RangeResponse *)call.resp)->header->revision;
    keel_call_cleanup(&call);
    if (mm_no_dest_prefix && mm_dest_prefix[0]) {
        ctl_die(EXIT_BAD_ARGS, "`--dest-prefix` and `--no-dest-prefix` cannot "
                               "be set at the same time, choose one");
    }
    if (!mm_no_dest_prefix && mm_dest_prefix[0] == 0) {
        mm_dest_prefix = mm_prefix;
    }
    static uint8_t zero = 0;
    ProtobufCBinaryData key, range_end;
    size_t pl = strlen(mm_prefix);
    if (pl == 0) {
        key.data = &zero;
        key.len = 1;
        range_end.data = &zero; /* from key */
        range_end.len = 1;
    } else {
        key.data = (uint8_t *)mm_prefix;
        key.len = pl;
        char *end = ctl_alloc(pl + 1);
        range_end.len = keel_prefix_end(mm_prefix, pl, end);
        range_end.data = (uint8_t *)end;
    }
    for (;;) {
        Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
        r.key = key;
        r.range_end = range_end;
        r.limit = 1000; /* clientv3/mirror batchLimit */
        r.revision = rev;
        if (ctl_call(mm_src, &call, KEEL_M_RANGE, &r.base,
                     &etcdserverpb__range_response__descriptor,
                     KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
            ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
        }
        Etcdserverpb__RangeResponse *resp = (void *)call.resp;
        for (size_t i = 0; i < resp->n_kvs; i++) {
            Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
            p.key = modify_prefix(&resp->kvs[i]->key);
            p.value = resp->kvs[i]->value;
            dest_call(KEEL_M_PUT, &p.base,
                      &etcdserverpb__put_response__descriptor);
            free(p.key.data);
            mm_total++;
        }
        int more = resp->more && resp->n_kvs > 0;
        if (more) {
            /* the next page starts after the last key: key + "\0" */
            static uint8_t *next;
            const ProtobufCBinaryData *last = &resp->kvs[resp->n_kvs - 1]->key;
            uint8_t *nb = realloc(next, last->len + 1);
            if (nb == NULL) {
                ctl_die(EXIT_ERROR, "out of memory");
            }
            next = nb;
            memcpy(next, last->data, last->len);
            next[last->len] = 0;
            key.data = next;
            key.len = last->len + 1;
        }
        keel_call_cleanup(&call);
        if (!more) {
            break;
        }
    }

    /* SyncUpdates: watch the prefix from rev + 1. */
    Etcdserverpb__WatchCreateRequest c =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    c.key.data = (uint8_t *)mm_prefix;
    c.key.len = pl;
    if (pl == 0) {
        c.range_end.data = &zero;
        c.range_end.len = 1;
    } else {
        c.range_end = range_end;
    }
    c.start_revision = rev + 1;
    static struct keel_watch w;
    if (keel_watch_start(keel_sync_client(mm_src), &w, &c, mm_watch_cb,
                         mm_watch_end) != 0) {
        ctl_die(EXIT_ERROR, "watch failed");
    }
    while (!mm_failed && !mm_watch_ended) {
        uv_run(keel_sync_loop(mm_src), UV_RUN_ONCE);
    }
    ctl_die(EXIT_ERROR, "%s", mm_err);
}

static struct flag no_flags[] = {{NULL, 0, 0, NULL, 0}};

const struct ctl_cmd ctl_cluster_cmds[] = {
    {"move-leader", no_flags, move_leader_run},
    {"make-mirror", mm_flags, make_mirror_run},
    {NULL, NULL, NULL},
};
