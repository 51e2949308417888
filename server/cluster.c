/*
 * server/cluster.c: the etcdserverpb.Cluster service and the members table
 * as the rest of the server reads it.
 *
 * The members table (written by node.c's apply, see apply_conf_to_table)
 * holds "<id %016x>/raftAttributes" (packed etcdserverpb.Member: id, name
 * of a bootstrap member, peerURLs, isLearner) and "<id %016x>/attributes"
 * (keelpb.MemberAttributes: name and client URLs, once the member
 * published them). cluster_members() merges the two; the hex keys sort as
 * the ids do, so members come out ordered by id as etcd's
 * RaftCluster.Members() returns them.
 *
 * Membership changes check etcd 3.4's rules here, on the member that got
 * the request (etcd checks some of them again at apply; keel's node applies
 * what raft committed), then go through raft as a conf change: raft
 * forwards a follower's proposal to the leader. MemberPromote needs the
 * leader's view of the learner's log (etcd forwards it to the leader over
 * HTTP); keel's followers forward it over the peer port (peer_call,
 * CLUSTER_PEER_PROMOTE) and the leader answers with its member list.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "grpc.h"
#include "identity.h"
#include "keel_err.h"
#include "keelpb/request.pb-c.h"
#include "log.h"
#include "mvcc.h"
#include "node.h"
#include "peer.h"
#include "raftpb/raft.pb-c.h"
#include "server.h"

/* etcd: readyPercent (etcdserver/server.go) — a learner whose match index
 * is at least 90% of the leader's may be promoted. */
#define CLUSTER_READY_PERCENT 0.9
/* etcd: maxLearners (etcdserver/api/membership/cluster.go, 3.4) */
#define CLUSTER_MAX_LEARNERS 1
/* etcd: HealthInterval (etcdserver/server.go) */
#define CLUSTER_HEALTH_INTERVAL_MS 5000

/* ---- the members table ---------------------------------------------------- */

struct load
{
    struct keel_arena *a;
    Etcdserverpb__Member **v;
    size_t n, cap;
    int rv;
};

static Etcdserverpb__Member *find(struct load *l, uint64_t id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i]->id == id) {
            return l->v[i];
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        Etcdserverpb__Member **nv = keel_arena_alloc(l->a, cap * sizeof *nv);
        if (nv == NULL) {
            return NULL;
        }
        if (l->n > 0) {
            memcpy(nv, l->v, l->n * sizeof *nv);
        }
        l->v = nv;
        l->cap = cap;
    }
    Etcdserverpb__Member *m = keel_arena_alloc(l->a, sizeof *m);
    if (m == NULL) {
        return NULL;
    }
    etcdserverpb__member__init(m);
    m->id = id;
    m->name = (char *)"";
    l->v[l->n++] = m;
    return m;
}

static int load_one(void *arg, const void *key, size_t klen, const void *val,
                    size_t vlen)
{
    struct load *l = arg;
    char k[64];
    if (klen < 17 || klen >= sizeof k || ((const char *)key)[16] != '/') {
        return 0; /* cluster_version and other keys */
    }
    memcpy(k, key, klen);
    k[klen] = 0;
    char *end = NULL;
    uint64_t id = strtoull(k, &end, 16);
    if (end != k + 16) {
        return 0;
    }
    Etcdserverpb__Member *m = find(l, id);
    if (m == NULL) {
        return l->rv = KEEL_ENOMEM;
    }
    if (strcmp(k + 17, "raftAttributes") == 0) {
        Etcdserverpb__Member *r =
            etcdserverpb__member__unpack(&l->a->pb, vlen, val);
        if (r == NULL) {
            return 0; /* unreadable: listed with what else is known */
        }
        m->peerurls = r->peerurls;
        m->n_peerurls = r->n_peerurls;
        m->islearner = r->islearner;
        if (m->name[0] == 0 && r->name != NULL) {
            m->name = r->name;
        }
    } else if (strcmp(k + 17, "attributes") == 0) {
        Keelpb__MemberAttributes *at =
            keelpb__member_attributes__unpack(&l->a->pb, vlen, val);
        if (at == NULL) {
            return 0;
        }
        if (at->name != NULL && at->name[0] != 0) {
            m->name = at->name;
        }
        m->clienturls = at->client_urls;
        m->n_clienturls = at->n_client_urls;
    }
    return 0;
}

int cluster_members(struct keel_server *s, struct keel_arena *a,
                    Etcdserverpb__Member ***out, size_t *n)
{
    struct load l = {.a = a};
    int rv = mvcc_table_foreach(node_store(server_node(s)), NULL,
                                MVCC_TABLE_MEMBERS, load_one, &l);
    if (rv == 0) {
        rv = l.rv;
    }
    /* This member itself is always listed: a data dir restored from a
     * snapshot (keelctl snapshot restore) or made before the members table
     * had raft attributes knows it from its identity only; it gets the
     * advertised peer URLs. Another member known only by its attributes
     * (published, then removed) is not a member. */
    struct server_info info;
    server_info(s, &info);
    Etcdserverpb__Member *self = rv == 0 ? find(&l, info.member_id) : NULL;
    if (rv == 0 && self == NULL) {
        rv = KEEL_ENOMEM;
    }
    if (self != NULL && self->n_peerurls == 0) {
        self->peerurls = (char **)info.peer_urls;
        self->n_peerurls = info.n_peer_urls;
        if (self->name[0] == 0 && self->n_clienturls == 0) {
            self->name = (char *)info.name;
            self->clienturls = (char **)info.client_urls;
            self->n_clienturls = info.n_client_urls;
        }
    }
    size_t k = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i]->n_peerurls > 0) {
            l.v[k++] = l.v[i];
        }
    }
    /* find() appended self last: keep the list ordered by id */
    for (size_t i = k; i > 1 && l.v[i - 1]->id < l.v[i - 2]->id; i--) {
        Etcdserverpb__Member *t = l.v[i - 1];
        l.v[i - 1] = l.v[i - 2];
        l.v[i - 2] = t;
    }
    *out = l.v;
    *n = k;
    return rv;
}

bool cluster_member_removed(struct keel_server *s, uint64_t id)
{
    char key[32];
    int kl = snprintf(key, sizeof key, "%016" PRIx64, id);
    struct keel_arena a;
    keel_arena_init(&a, 256);
    void *v = NULL;
    size_t vl = 0;
    int rv = mvcc_table_get(node_store(server_node(s)), NULL,
                            MVCC_TABLE_MEMBERS_REMOVED, key, (size_t)kl, &a,
                            &v, &vl);
    keel_arena_free(&a);
    return rv == 0;
}

int cluster_pack_member_list(struct keel_server *s, uint8_t **buf,
                             size_t *len)
{
    struct keel_arena a;
    keel_arena_init(&a, 0);
    Etcdserverpb__MemberListResponse r = ETCDSERVERPB__MEMBER_LIST_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    int rv = cluster_members(s, &a, &r.members, &r.n_members);
    if (rv == 0) {
        r.header = server_header(s, &h, &a, 0);
        *len = etcdserverpb__member_list_response__get_packed_size(&r);
        *buf = malloc(*len ? *len : 1);
        if (*buf == NULL) {
            rv = KEEL_ENOMEM;
        } else {
            etcdserverpb__member_list_response__pack(&r, *buf);
        }
    }
    keel_arena_free(&a);
    return rv;
}

/* ---- RPCs ------------------------------------------------------------------ */

static void member_list_start(struct grpc_call *call,
                              const ProtobufCMessage *msg, void *data)
{
    (void)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__MemberListResponse *r = keel_arena_alloc(a, sizeof *r);
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__member_list_response__init(r);
    int rv = cluster_members(s, a, &r->members, &r->n_members);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    /* etcd's MemberList header carries no revision (cluster.go). */
    server_reply(s, call, &r->base, 0);
}

/* etcd: types.NewURLs — scheme http or https, host:port, no path. */
static bool url_ok(const char *u)
{
    const char *p;
    if (strncmp(u, "http://", 7) == 0) {
        p = u + 7;
    } else if (strncmp(u, "https://", 8) == 0) {
        p = u + 8;
    } else {
        return false;
    }
    const char *colon = strrchr(p, ':');
    if (colon == NULL || colon == p || colon[1] == 0) {
        return false;
    }
    for (const char *c = colon + 1; *c; c++) {
        if (*c < '0' || *c > '9') {
            return false;
        }
    }
    return strchr(p, '/') == NULL;
}

static bool urls_ok(char **u, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!url_ok(u[i])) {
            return false;
        }
    }
    return true;
}

static Etcdserverpb__Member *member_by_id(Etcdserverpb__Member **v, size_t n,
                                          uint64_t id)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i]->id == id) {
            return v[i];
        }
    }
    return NULL;
}

/* Whether any of urls is a peer URL of a member other than `except`. */
static bool peer_url_taken(Etcdserverpb__Member **v, size_t n, char **urls,
                           size_t nu, uint64_t except)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i]->id == except) {
            continue;
        }
        for (size_t j = 0; j < v[i]->n_peerurls; j++) {
            for (size_t k = 0; k < nu; k++) {
                if (strcmp(v[i]->peerurls[j], urls[k]) == 0) {
                    return true;
                }
            }
        }
    }
    return false;
}

/* etcd: Member.IsStarted — it published its name. */
static bool started(const Etcdserverpb__Member *m)
{
    return m->name != NULL && m->name[0] != 0;
}

/* etcd: RaftCluster.IsReadyToAddVotingMember / IsReadyToRemoveVotingMember
 * / IsReadyToPromoteMember: with `extra` members counted as started and
 * present (add, promote: 1) and `skip` left out (remove), are at least a
 * quorum of the voters started? */
static bool enough_started(Etcdserverpb__Member **v, size_t n, int extra,
                           uint64_t skip, bool add)
{
    int members = extra, nstarted = add ? 0 : extra;
    for (size_t i = 0; i < n; i++) {
        if (v[i]->islearner || v[i]->id == skip) {
            continue;
        }
        nstarted += started(v[i]);
        members++;
    }
    if (add && nstarted == 1 && members == 2) {
        return true; /* etcd: restoring a one-member cluster */
    }
    return nstarted >= members / 2 + 1;
}

/* etcd: isConnectedFullySince / numConnectedSince(now - HealthInterval):
 * voters (other than self) whose peer stream is up for 5 s at least. */
static size_t connected_since(struct keel_server *s, Etcdserverpb__Member **v,
                              size_t n, size_t *voters)
{
    struct peer *p = server_peer(s);
    uint64_t now = uv_now(server_loop(s));
    struct server_info info;
    server_info(s, &info);
    size_t ok = 0;
    *voters = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i]->islearner) {
            continue;
        }
        (*voters)++;
        if (v[i]->id == info.member_id) {
            ok++;
            continue;
        }
        uint64_t since = p != NULL ? peer_active_since(p, v[i]->id) : 0;
        if (since != 0 && since + CLUSTER_HEALTH_INTERVAL_MS <= now) {
            ok++;
        }
    }
    return ok;
}

struct conf_call
{
    struct keel_server *s;
    struct grpc_call *call;
    const ProtobufCMessageDescriptor *resp;
    Etcdserverpb__Member *added; /* MemberAdd's new member */
};

static void conf_done(void *arg, int rv, ProtobufCMessage *unused)
{
    (void)unused;
    struct conf_call *cc = arg;
    struct keel_arena *a = grpc_call_arena(cc->call);
    if (rv != 0) {
        grpc_call_fail(cc->call, rv);
        return;
    }
    ProtobufCMessage *r = server_new_message(a, cc->resp);
    if (r == NULL) {
        grpc_call_fail(cc->call, KEEL_ENOMEM);
        return;
    }
    /* Every membership response has members (field 2/3) = the list after
     * the change; MemberAdd also has member (the new one). */
    Etcdserverpb__Member **v = NULL;
    size_t n = 0;
    rv = cluster_members(cc->s, a, &v, &n);
    if (rv != 0) {
        grpc_call_fail(cc->call, rv);
        return;
    }
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(cc->resp, "members");
    if (f != NULL) {
        *(size_t *)((char *)r + f->quantifier_offset) = n;
        *(Etcdserverpb__Member ***)((char *)r + f->offset) = v;
    }
    if (cc->added != NULL) {
        ((Etcdserverpb__MemberAddResponse *)r)->member = cc->added;
    }
    server_reply(cc->s, cc->call, r, 0);
}

static void propose(struct keel_server *s, struct grpc_call *call,
                    const ProtobufCMessageDescriptor *resp, int type,
                    uint64_t id, Etcdserverpb__Member *ctx,
                    Etcdserverpb__Member *added)
{
    struct keel_arena *a = grpc_call_arena(call);
    struct conf_call *cc = keel_arena_alloc(a, sizeof *cc);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (ctx != NULL) {
        len = etcdserverpb__member__get_packed_size(ctx);
        buf = keel_arena_alloc(a, len ? len : 1);
        if (buf != NULL) {
            etcdserverpb__member__pack(ctx, buf);
        }
    }
    if (cc == NULL || (ctx != NULL && buf == NULL)) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    cc->s = s;
    cc->call = call;
    cc->resp = resp;
    cc->added = added;
    int rv = node_propose_conf_change(server_node(s), type, id, buf, len,
                                      conf_done, cc);
    if (rv != 0) {
        /* one conf change at a time: etcd would queue it behind the other
         * and time out the same way when raft drops it */
        grpc_call_fail(call, rv == KEEL_EBUSY ? KEEL_ETIMEOUT : rv);
    }
}

/* The members table for a membership RPC, after checking its peer URLs
 * (urls NULL: none to check); false once the call was failed. */
static bool members_for(struct grpc_call *call, struct keel_server *s,
                        char **urls, size_t n_urls, Etcdserverpb__Member ***v,
                        size_t *n)
{
    if (urls != NULL && !urls_ok(urls, n_urls)) {
        grpc_call_fail(call, KEEL_EMEMBERBADURLS);
        return false;
    }
    /* etcd checkMembershipOperationPermission: root only */
    int rv = auth_check_admin(server_auth(s), call);
    if (rv == 0) {
        rv = cluster_members(s, grpc_call_arena(call), v, n);
    }
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return false;
    }
    return true;
}

static void member_add_start(struct grpc_call *call,
                             const ProtobufCMessage *msg, void *data)
{
    const Etcdserverpb__MemberAddRequest *req =
        (const Etcdserverpb__MemberAddRequest *)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__Member **v = NULL;
    size_t n = 0;
    if (!members_for(call, s, req->peerurls, req->n_peerurls, &v, &n)) {
        return;
    }
    /* etcd: NewMember("", urls, "", &now): sha1(sorted urls + "" + unix
     * seconds). */
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    uint64_t id = identity_member_id((const char *const *)req->peerurls,
                                     req->n_peerurls, now);
    if (server_strict_reconfig(s) && !req->islearner) {
        size_t voters = 0;
        if (!enough_started(v, n, 1, 0, true)) {
            log_warn("etcdserver",
                     "not enough started members, rejecting member add");
            grpc_call_fail(call, KEEL_EMEMBERNOTENOUGHSTARTED);
            return;
        }
        if (connected_since(s, v, n, &voters) < voters) {
            log_warn("etcdserver", "not healthy for reconfigure, rejecting "
                                   "member add");
            grpc_call_fail(call, KEEL_EUNHEALTHY);
            return;
        }
    }
    /* etcd: ValidateConfigurationChange (checked at apply in etcd) */
    if (member_by_id(v, n, id) != NULL) {
        grpc_call_fail(call, KEEL_EMEMBEREXIST);
        return;
    }
    if (peer_url_taken(v, n, req->peerurls, req->n_peerurls, 0)) {
        grpc_call_fail(call, KEEL_EPEERURLEXIST);
        return;
    }
    if (req->islearner) {
        size_t learners = 0;
        for (size_t i = 0; i < n; i++) {
            learners += v[i]->islearner;
        }
        if (learners + 1 > CLUSTER_MAX_LEARNERS) {
            grpc_call_fail(call, KEEL_ETOOMANYLEARNERS);
            return;
        }
    }
    Etcdserverpb__Member *m = keel_arena_alloc(a, sizeof *m);
    if (m == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__member__init(m);
    m->id = id;
    m->peerurls = req->peerurls;
    m->n_peerurls = req->n_peerurls;
    m->islearner = req->islearner;
    propose(s, call, &etcdserverpb__member_add_response__descriptor,
            req->islearner ? RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_LEARNER_NODE
                           : RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_NODE,
            id, m, m);
}

static void member_remove_start(struct grpc_call *call,
                                const ProtobufCMessage *msg, void *data)
{
    const Etcdserverpb__MemberRemoveRequest *req =
        (const Etcdserverpb__MemberRemoveRequest *)msg;
    struct keel_server *s = data;
    Etcdserverpb__Member **v = NULL;
    size_t n = 0;
    if (!members_for(call, s, NULL, 0, &v, &n)) {
        return;
    }
    Etcdserverpb__Member *m = member_by_id(v, n, req->id);
    if (server_strict_reconfig(s) && (m == NULL || !m->islearner)) {
        if (!enough_started(v, n, 0, req->id, false)) {
            log_warn("etcdserver", "not enough started members, rejecting "
                                   "remove member %" PRIx64,
                     req->id);
            grpc_call_fail(call, KEEL_EMEMBERNOTENOUGHSTARTED);
            return;
        }
        struct server_info info;
        server_info(s, &info);
        struct peer *p = server_peer(s);
        bool down = req->id != info.member_id &&
                    (p == NULL || peer_active_since(p, req->id) == 0);
        size_t voters = 0;
        size_t active = connected_since(s, v, n, &voters);
        /* etcd: a member that is down is safe to remove; otherwise the
         * active members minus it must keep a quorum of the voters. */
        if (!down && active - 1 < 1 + (voters - 1) / 2) {
            log_warn("etcdserver", "reconfigure breaks active quorum, "
                                   "rejecting remove member %" PRIx64,
                     req->id);
            grpc_call_fail(call, KEEL_EUNHEALTHY);
            return;
        }
    }
    if (m == NULL) {
        grpc_call_fail(call, KEEL_EMEMBERNOTFOUND);
        return;
    }
    propose(s, call, &etcdserverpb__member_remove_response__descriptor,
            RAFTPB__CONF_CHANGE_TYPE__CONF_REMOVE_NODE, req->id, NULL, NULL);
}

static void member_update_start(struct grpc_call *call,
                                const ProtobufCMessage *msg, void *data)
{
    const Etcdserverpb__MemberUpdateRequest *req =
        (const Etcdserverpb__MemberUpdateRequest *)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__Member **v = NULL;
    size_t n = 0;
    if (!members_for(call, s, req->peerurls, req->n_peerurls, &v, &n)) {
        return;
    }
    Etcdserverpb__Member *old = member_by_id(v, n, req->id);
    if (old == NULL) {
        grpc_call_fail(call, KEEL_EMEMBERNOTFOUND);
        return;
    }
    if (peer_url_taken(v, n, req->peerurls, req->n_peerurls, req->id)) {
        grpc_call_fail(call, KEEL_EPEERURLEXIST);
        return;
    }
    Etcdserverpb__Member *m = keel_arena_alloc(a, sizeof *m);
    if (m == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    etcdserverpb__member__init(m);
    m->id = req->id;
    m->name = old->name;
    m->peerurls = req->peerurls;
    m->n_peerurls = req->n_peerurls;
    m->islearner = old->islearner;
    propose(s, call, &etcdserverpb__member_update_response__descriptor,
            RAFTPB__CONF_CHANGE_TYPE__CONF_UPDATE_NODE, req->id, m, NULL);
}

/* etcd's promote checks (leader only): isLearnerReady first (a member the
 * leader does not know passes), then the strict check, then the apply-time
 * checks. 0 and *ctx (the Member to propose, in a) or a KEEL_E* code. */
static int promote_check(struct keel_server *s, uint64_t id,
                         struct keel_arena *a, Etcdserverpb__Member **ctx)
{
    Etcdserverpb__Member **v = NULL;
    size_t n = 0;
    int rv = cluster_members(s, a, &v, &n);
    if (rv != 0) {
        return rv;
    }
    struct node_status st;
    node_status(server_node(s), &st);
    uint64_t match = 0;
    rv = node_progress(server_node(s), id, &match);
    if (rv == KEEL_ENOTLEADER) {
        return rv;
    }
    if (rv == 0 && (double)match < (double)st.raft_index * CLUSTER_READY_PERCENT) {
        return KEEL_ELEARNERNOTREADY;
    }
    if (server_strict_reconfig(s) && !enough_started(v, n, 1, 0, false)) {
        log_warn("etcdserver", "not enough started members, rejecting "
                               "promote member %" PRIx64,
                 id);
        return KEEL_EMEMBERNOTENOUGHSTARTED;
    }
    Etcdserverpb__Member *m = member_by_id(v, n, id);
    if (m == NULL) {
        return KEEL_EMEMBERNOTFOUND;
    }
    if (!m->islearner) {
        return KEEL_EMEMBERNOTLEARNER;
    }
    Etcdserverpb__Member *c = keel_arena_alloc(a, sizeof *c);
    if (c == NULL) {
        return KEEL_ENOMEM;
    }
    *c = *m;
    c->islearner = false;
    c->clienturls = NULL;
    c->n_clienturls = 0;
    *ctx = c;
    return 0;
}

/* A follower forwards MemberPromote to the leader (etcd does it over its
 * peer HTTP API, promoteMemberHTTP): the leader answers with its member
 * list after the change. */
struct promote_fwd
{
    struct peer_call pc; /* first: the callback gets &pc */
    struct keel_server *s;
    struct grpc_call *call;
};

static void promote_forwarded(struct peer_call *pc, int status,
                              const uint8_t *body, size_t len)
{
    struct promote_fwd *f = (struct promote_fwd *)pc;
    struct keel_arena *a = grpc_call_arena(f->call);
    if (status != 0) {
        /* keel's own codes come back as the leader's answer; a transport
         * failure is a timeout to the client, as etcd's forwarding loop
         * ends */
        grpc_call_fail(f->call, keel_err_is_keel(status) ? status
                                                         : KEEL_ETIMEOUT);
        return;
    }
    Etcdserverpb__MemberListResponse *l =
        etcdserverpb__member_list_response__unpack(&a->pb, len, body);
    Etcdserverpb__MemberPromoteResponse *r =
        (Etcdserverpb__MemberPromoteResponse *)server_new_message(
            a, &etcdserverpb__member_promote_response__descriptor);
    if (l == NULL || r == NULL) {
        grpc_call_fail(f->call, l == NULL ? KEEL_EIO : KEEL_ENOMEM);
        return;
    }
    r->members = l->members;
    r->n_members = l->n_members;
    server_reply(f->s, f->call, &r->base, 0);
}

static void member_promote_start(struct grpc_call *call,
                                 const ProtobufCMessage *msg, void *data)
{
    const Etcdserverpb__MemberPromoteRequest *req =
        (const Etcdserverpb__MemberPromoteRequest *)msg;
    struct keel_server *s = data;
    struct keel_arena *a = grpc_call_arena(call);
    Etcdserverpb__Member *c = NULL;
    /* etcd checkMembershipOperationPermission: root only */
    int rv = auth_check_admin(server_auth(s), call);
    if (rv == 0) {
        rv = promote_check(s, req->id, a, &c);
    }
    if (rv == KEEL_ENOTLEADER && server_peer(s) != NULL) {
        struct node_status st;
        node_status(server_node(s), &st);
        struct promote_fwd *f = keel_arena_alloc(a, sizeof *f);
        uint8_t body[8];
        for (int i = 0; i < 8; i++) {
            body[i] = (uint8_t)(req->id >> (56 - 8 * i));
        }
        if (f == NULL) {
            rv = KEEL_ENOMEM;
        } else if (st.leader == 0) {
            rv = KEEL_ENOLEADER;
        } else {
            f->s = s;
            f->call = call;
            rv = peer_call(server_peer(s), &f->pc, st.leader,
                           CLUSTER_PEER_PROMOTE, body, sizeof body,
                           server_request_timeout_ms(s), promote_forwarded);
            if (rv == 0) {
                return;
            }
        }
    }
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    propose(s, call, &etcdserverpb__member_promote_response__descriptor,
            RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_NODE, req->id, c, NULL);
}

struct promote_req
{
    struct keel_server *s;
    struct peer_responder *r;
    struct keel_arena a;
};

static void promote_req_done(void *arg, int rv, ProtobufCMessage *unused)
{
    (void)unused;
    struct promote_req *p = arg;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rv == 0) {
        rv = cluster_pack_member_list(p->s, &buf, &len);
    }
    peer_respond(p->r, rv, buf, len);
    free(buf);
    keel_arena_free(&p->a);
    free(p);
}

void cluster_serve_promote(struct keel_server *s, const uint8_t *body,
                           size_t len, struct peer_responder *r)
{
    struct promote_req *p = calloc(1, sizeof *p);
    if (p == NULL || len != 8) {
        free(p);
        peer_respond(r, p == NULL ? KEEL_ENOMEM : KEEL_EINVAL, NULL, 0);
        return;
    }
    uint64_t id = 0;
    for (size_t i = 0; i < 8; i++) {
        id = id << 8 | body[i];
    }
    p->s = s;
    p->r = r;
    keel_arena_init(&p->a, 0);
    Etcdserverpb__Member *c = NULL;
    int rv = promote_check(s, id, &p->a, &c);
    uint8_t *ctx = NULL;
    size_t clen = 0;
    if (rv == 0) {
        clen = etcdserverpb__member__get_packed_size(c);
        ctx = keel_arena_alloc(&p->a, clen ? clen : 1);
        rv = ctx == NULL ? KEEL_ENOMEM : 0;
    }
    if (rv == 0) {
        etcdserverpb__member__pack(c, ctx);
        rv = node_propose_conf_change(server_node(s),
                                      RAFTPB__CONF_CHANGE_TYPE__CONF_ADD_NODE,
                                      id, ctx, clen, promote_req_done, p);
        rv = rv == KEEL_EBUSY ? KEEL_ETIMEOUT : rv;
    }
    if (rv != 0) {
        promote_req_done(p, rv, NULL);
    }
}

int cluster_register(struct keel_server *s, struct grpc_server *g)
{
    const struct grpc_method m[] = {
        {"/etcdserverpb.Cluster/MemberList", GRPC_UNARY,
         &etcdserverpb__member_list_request__descriptor, member_list_start,
         NULL, NULL, NULL, s},
        {"/etcdserverpb.Cluster/MemberAdd", GRPC_UNARY,
         &etcdserverpb__member_add_request__descriptor, member_add_start,
         NULL, NULL, NULL, s},
        {"/etcdserverpb.Cluster/MemberRemove", GRPC_UNARY,
         &etcdserverpb__member_remove_request__descriptor,
         member_remove_start, NULL, NULL, NULL, s},
        {"/etcdserverpb.Cluster/MemberUpdate", GRPC_UNARY,
         &etcdserverpb__member_update_request__descriptor,
         member_update_start, NULL, NULL, NULL, s},
        {"/etcdserverpb.Cluster/MemberPromote", GRPC_UNARY,
         &etcdserverpb__member_promote_request__descriptor,
         member_promote_start, NULL, NULL, NULL, s},
    };
    return server_register_methods(g, m, sizeof m / sizeof m[0]);
}
