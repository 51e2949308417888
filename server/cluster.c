/*
 * server/cluster.c: the etcdserverpb.Cluster service. MemberList answers
 * from this member's identity (a cluster of one until the peer transport
 * and membership changes land); MemberAdd/Remove/Update/Promote are not
 * registered yet, so clients get UNIMPLEMENTED rather than a pretend
 * success.
 */
#include <stdlib.h>

#include "grpc.h"
#include "keel_err.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

static void member_list_start(struct grpc_call *call,
                              const ProtobufCMessage *msg, void *data)
{
    (void)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    struct server_info info;
    server_info(s, &info);
    Etcdserverpb__MemberListResponse *r = keel_arena_alloc(a, sizeof *r);
    Etcdserverpb__Member *m = keel_arena_alloc(a, sizeof *m);
    Etcdserverpb__Member **list = keel_arena_alloc(a, sizeof *list);
    if (r == NULL || m == NULL || list == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__member_list_response__init(r);
    etcdserverpb__member__init(m);
    m->id = info.member_id;
    m->name = (char *)info.name;
    m->peerurls = (char **)info.peer_urls;
    m->n_peerurls = info.n_peer_urls;
    m->clienturls = (char **)info.client_urls;
    m->n_clienturls = info.n_client_urls;
    list[0] = m;
    r->members = list;
    r->n_members = 1;
    /* etcd's MemberList header carries no revision (cluster.go). */
    server_reply(s, call, &r->base, 0);
}

int cluster_register(struct keel_server *s, struct grpc_server *g)
{
    const struct grpc_method m = {
        "/etcdserverpb.Cluster/MemberList", GRPC_UNARY,
        &etcdserverpb__member_list_request__descriptor, member_list_start,
        NULL, NULL, NULL, s};
    return grpc_server_register(g, &m);
}
