/*
 * server/maintenance.c: the etcdserverpb.Maintenance service as etcd 3.4
 * answers it (etcdserver/api/v3rpc/maintenance.go): Status, Hash, HashKV,
 * Alarm (GET; alarms are raised by the quota, not built yet), MoveLeader.
 * Defragment and Snapshot are not registered yet: clients get
 * UNIMPLEMENTED rather than a pretend success.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "grpc.h"
#include "keel_err.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

static int64_t db_size(struct keel_server *s)
{
    struct server_info info;
    server_info(s, &info);
    char path[4096];
    snprintf(path, sizeof path, "%s/member/snap/db", info.data_dir);
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

static void status_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    (void)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__StatusResponse *r = keel_arena_alloc(a, sizeof *r);
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__status_response__init(r);
    struct node_status st;
    node_status(server_node(s), &st);
    r->header = server_header(s, NULL, a,
                              mvcc_revision(node_store(server_node(s))));
    r->version = (char *)KEEL_ETCD_VERSION;
    r->leader = st.leader;
    r->raftindex = st.commit_index;
    r->raftterm = st.term;
    r->raftappliedindex = st.applied_index;
    r->dbsize = db_size(s);
    /* LMDB reuses freed pages inside the file; keel does not yet count
     * them separately, so in-use equals the file size. */
    r->dbsizeinuse = r->dbsize;
    r->islearner = 0;
    if (st.leader == 0) {
        static char *no_leader = "etcdserver: no leader";
        r->errors = &no_leader;
        r->n_errors = 1;
    }
    if (r->header == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(call, &r->base);
}

static void hash_start(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    (void)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__HashResponse *r = keel_arena_alloc(a, sizeof *r);
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__hash_response__init(r);
    uint32_t h = 0;
    int64_t rev = 0;
    int rv = mvcc_hash(node_store(server_node(s)), &h, &rev);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    r->hash = h;
    r->header = server_header(s, NULL, a, rev);
    if (r->header == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(call, &r->base);
}

static void hashkv_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    const Etcdserverpb__HashKVRequest *req =
        (const Etcdserverpb__HashKVRequest *)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__HashKVResponse *r = keel_arena_alloc(a, sizeof *r);
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__hash_kvresponse__init(r);
    uint32_t h = 0;
    int64_t compact = 0, cur = 0;
    int rv = mvcc_hash_kv(node_store(server_node(s)), req->revision, &h,
                          &compact, &cur);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    r->hash = h;
    r->compact_revision = compact;
    r->header = server_header(s, NULL, a, cur);
    if (r->header == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(call, &r->base);
}

static void alarm_start(struct grpc_call *call, const ProtobufCMessage *msg,
                        void *data)
{
    const Etcdserverpb__AlarmRequest *req =
        (const Etcdserverpb__AlarmRequest *)msg;
    struct keel_server *s = data;
    if (req->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        /* Activating/deactivating goes through raft with the quota work;
         * until then no alarm can be raised, and nothing to disarm. */
        grpc_call_fail_status(call, KEEL_GRPC_UNIMPLEMENTED,
                              "keel: alarm activate/deactivate not yet "
                              "implemented");
        return;
    }
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__AlarmResponse *r = keel_arena_alloc(a, sizeof *r);
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__alarm_response__init(r);
    r->header = server_header(s, NULL, a,
                              mvcc_revision(node_store(server_node(s))));
    if (r->header == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(call, &r->base);
}

static void move_leader_start(struct grpc_call *call,
                              const ProtobufCMessage *msg, void *data)
{
    const Etcdserverpb__MoveLeaderRequest *req =
        (const Etcdserverpb__MoveLeaderRequest *)msg;
    struct keel_server *s = data;
    struct node_status st;
    node_status(server_node(s), &st);
    if (!st.is_leader) {
        grpc_call_fail(call, KEEL_ENOTLEADER);
        return;
    }
    if (req->targetid != st.member_id) {
        /* A single member has no other voter to hand leadership to. */
        grpc_call_fail(call, KEEL_EBADLEADERTRANSFEREE);
        return;
    }
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__MoveLeaderResponse *r = keel_arena_alloc(a, sizeof *r);
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__move_leader_response__init(r);
    r->header = server_header(s, NULL, a,
                              mvcc_revision(node_store(server_node(s))));
    if (r->header == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    grpc_call_reply(call, &r->base);
}

int maintenance_register(struct keel_server *s, struct grpc_server *g)
{
    const struct grpc_method methods[] = {
        {"/etcdserverpb.Maintenance/Status", GRPC_UNARY,
         &etcdserverpb__status_request__descriptor, status_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/Hash", GRPC_UNARY,
         &etcdserverpb__hash_request__descriptor, hash_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/HashKV", GRPC_UNARY,
         &etcdserverpb__hash_kvrequest__descriptor, hashkv_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/Alarm", GRPC_UNARY,
         &etcdserverpb__alarm_request__descriptor, alarm_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/MoveLeader", GRPC_UNARY,
         &etcdserverpb__move_leader_request__descriptor, move_leader_start,
         NULL, NULL, NULL, s},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int rv = grpc_server_register(g, &methods[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}
