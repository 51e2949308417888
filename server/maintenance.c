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

#define NEW(call, type, desc) \
    ((type *)server_new_message(grpc_call_arena(call), &(desc)))

static int64_t db_size(struct keel_server *s)
{
    struct server_info info;
    server_info(s, &info);
    char path[4096];
    snprintf(path, sizeof path, "%s/member/snap/db", info.data_dir);
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

static int64_t current_rev(struct keel_server *s)
{
    return mvcc_revision(node_store(server_node(s)));
}

static void status_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    (void)msg;
    struct keel_server *s = data;
    Etcdserverpb__StatusResponse *r = NEW(call, Etcdserverpb__StatusResponse,
                                          etcdserverpb__status_response__descriptor);
    if (r != NULL) {
        struct node_status st;
        node_status(server_node(s), &st);
        r->version = (char *)KEEL_ETCD_VERSION;
        r->leader = st.leader;
        r->raftindex = st.commit_index;
        r->raftterm = st.term;
        r->raftappliedindex = st.applied_index;
        r->dbsize = db_size(s);
        /* LMDB reuses freed pages inside the file; keel does not count
         * them separately yet, so in-use equals the file size. */
        r->dbsizeinuse = r->dbsize;
        if (st.leader == 0) {
            static char *no_leader = "etcdserver: no leader";
            r->errors = &no_leader;
            r->n_errors = 1;
        }
    }
    server_reply(s, call, (ProtobufCMessage *)r, current_rev(s));
}

static void hash_start(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    (void)msg;
    struct keel_server *s = data;
    uint32_t h = 0;
    int64_t rev = 0;
    int rv = mvcc_hash(node_store(server_node(s)), &h, &rev);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    Etcdserverpb__HashResponse *r =
        NEW(call, Etcdserverpb__HashResponse,
            etcdserverpb__hash_response__descriptor);
    if (r != NULL) {
        r->hash = h;
    }
    server_reply(s, call, (ProtobufCMessage *)r, rev);
}

static void hashkv_start(struct grpc_call *call, const ProtobufCMessage *msg,
                         void *data)
{
    const Etcdserverpb__HashKVRequest *req =
        (const Etcdserverpb__HashKVRequest *)msg;
    struct keel_server *s = data;
    uint32_t h = 0;
    int64_t compact = 0, cur = 0;
    int rv = mvcc_hash_kv(node_store(server_node(s)), req->revision, &h,
                          &compact, &cur);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    Etcdserverpb__HashKVResponse *r =
        NEW(call, Etcdserverpb__HashKVResponse,
            etcdserverpb__hash_kvresponse__descriptor);
    if (r != NULL) {
        r->hash = h;
        r->compact_revision = compact;
    }
    server_reply(s, call, (ProtobufCMessage *)r, cur);
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
    server_reply(s, call,
                 server_new_message(grpc_call_arena(call),
                                    &etcdserverpb__alarm_response__descriptor),
                 current_rev(s));
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
    server_reply(
        s, call,
        server_new_message(grpc_call_arena(call),
                           &etcdserverpb__move_leader_response__descriptor),
        current_rev(s));
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
    return server_register_methods(g, methods,
                                   sizeof methods / sizeof methods[0]);
}
