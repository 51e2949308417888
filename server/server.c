/*
 * server/server.c: bring a keel member up and down.
 *
 * Start: derive (new cluster) or load (existing data dir) the member and
 * cluster ids, open the node (WAL replay, MVCC store, raft), register the
 * gRPC services and HTTP endpoints, listen on every --listen-client-urls.
 * Stop: close the listeners (no new requests), then the node (pending
 * proposals are answered, the store is synced), then free.
 *
 * Identity (storage/identity.h): <data-dir>/member/keel-identity, written
 * before the first WAL record, so a data dir that has a WAL always has its
 * identity. As in etcd, a restart ignores the --initial-cluster* flags.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "grpc.h"
#include "identity.h"
#include "keel_err.h"
#include "lessor.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "peer.h"
#include "raftpb/raft.pb-c.h"
#include "router.h"
#include "tls.h"
#include "v2.h"

#define SERVER_MAX_MEMBERS IDENTITY_MAX_VOTERS
/* How long in-flight requests and streams get to finish at SIGTERM. */
#define SERVER_SHUTDOWN_GRACE_MS 1000

struct keel_server
{
    uv_loop_t *loop;
    const struct keel_config *cfg;
    uint64_t member_id;
    uint64_t cluster_id;
    struct node *node;
    struct lessor *lessor;
    struct auth *auth;
    struct watch_service *watch;
    struct v2 *v2; /* v2 API and SYNC ticker (server/v2.c) */
    uv_timer_t drain_timer; /* at stop: waits for the last calls to end */
    int drain_ticks;
    struct grpc_server *grpc;
    struct router *router;
    struct metrics_registry *metrics;
    struct router *metrics_router; /* --listen-metrics-urls */
    struct listener *listeners; /* client listeners, then metrics ones */
    size_t n_listeners;
    size_t listeners_open;
    char *initial_cluster; /* parsed copy: owns the peer_urls strings */
    const char **peer_urls; /* this member's, from --initial-cluster */
    size_t n_peer_urls;
    const char **client_urls; /* --advertise-client-urls */
    size_t n_client_urls;
    uv_timer_t publish_timer; /* until attributes and version are applied */
    bool published;
    bool version_set;
    bool publishing; /* a publish proposal is in flight */
    struct keel_arena publish_arena;
    void (*ready_cb)(void *);
    void *ready_arg;
    void (*stop_cb)(void *);
    void *stop_arg;
    bool stopping;
    /* cluster (issue 5) */
    struct peer *peer;
    /* Peer TLS (owned; the transport borrows them): the https:// peer
     * listeners' context (NULL without one) and the dialing one. */
    struct tls_ctx *peer_tls_server, *peer_tls_client;
    bool node_gone;        /* node_close called: no more node_* calls */
    uint64_t peers[SERVER_MAX_MEMBERS]; /* ids given to peer_add */
    size_t n_peers;
    void (*removed_cb)(void *);
    void *removed_arg;
    bool removed;
    bool removed_timer_open;
    uv_timer_t removed_timer; /* etcd: stopWithDelay(1 s) */
};

/* ---- --initial-cluster -------------------------------------------------- */

struct init_member
{
    char name[128];
    const char *urls[16];
    size_t n_urls;
    uint64_t id;
};

/* Parse "n1=u1,n1=u2,n2=u3" into members grouped by name (etcd:
 * types.NewURLsMap). Strings point into buf (a writable copy). */
static int parse_initial_cluster(char *buf, struct init_member *m,
                                 size_t *n_members, char *err, size_t errlen)
{
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (eq == NULL || eq == tok || eq[1] == 0) {
            snprintf(err, errlen, "invalid value \"%s\" for --initial-cluster",
                     tok);
            return KEEL_EINVAL;
        }
        *eq = 0;
        size_t i;
        for (i = 0; i < n; i++) {
            if (strcmp(m[i].name, tok) == 0) {
                break;
            }
        }
        if (i == n) {
            if (n == SERVER_MAX_MEMBERS || strlen(tok) >= sizeof m[i].name) {
                snprintf(err, errlen, "--initial-cluster: too many members");
                return KEEL_EINVAL;
            }
            memset(&m[i], 0, sizeof m[i]);
            snprintf(m[i].name, sizeof m[i].name, "%s", tok);
            n++;
        }
        if (m[i].n_urls == 16) {
            snprintf(err, errlen, "--initial-cluster: too many URLs for %s",
                     tok);
            return KEEL_EINVAL;
        }
        m[i].urls[m[i].n_urls++] = eq + 1;
    }
    *n_members = n;
    return 0;
}

/* ---- data dir ------------------------------------------------------------ */

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
                return -errno;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

static bool wal_exists(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/member/wal", dir);
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- header ------------------------------------------------------------- */

struct node *server_node(struct keel_server *s)
{
    return s->node;
}

struct lessor *server_lessor(struct keel_server *s)
{
    return s->lessor;
}

struct auth *server_auth(struct keel_server *s)
{
    return s->auth;
}

uv_loop_t *server_loop(struct keel_server *s)
{
    return s->loop;
}

struct grpc_server *server_grpc(struct keel_server *s)
{
    return s->grpc;
}

struct metrics_registry *server_metrics(struct keel_server *s)
{
    return s->metrics;
}

int64_t server_quota_bytes(const struct keel_server *s)
{
    return config_quota_bytes(s->cfg);
}

uint64_t server_max_txn_ops(const struct keel_server *s)
{
    return s->cfg->max_txn_ops;
}

size_t server_max_request_bytes(const struct keel_server *s)
{
    return s->cfg->max_request_bytes > 0 ? (size_t)s->cfg->max_request_bytes
                                         : CONN_DEFAULT_MAX_REQUEST_BYTES;
}

Etcdserverpb__ResponseHeader *server_header(struct keel_server *s,
                                            Etcdserverpb__ResponseHeader *hdr,
                                            struct keel_arena *a, int64_t rev)
{
    if (hdr == NULL) {
        hdr = keel_arena_alloc(a, sizeof *hdr);
        if (hdr == NULL) {
            return NULL;
        }
        etcdserverpb__response_header__init(hdr);
    }
    struct node_status st;
    node_status(s->node, &st);
    hdr->cluster_id = s->cluster_id;
    hdr->member_id = s->member_id;
    hdr->raft_term = st.term;
    if (rev > 0) {
        hdr->revision = rev;
    }
    return hdr;
}

ProtobufCMessage *server_new_message(struct keel_arena *a,
                                     const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = keel_arena_alloc(a, d->sizeof_message);
    if (m != NULL) {
        d->message_init(m);
    }
    return m;
}

void server_reply(struct keel_server *s, struct grpc_call *call,
                  ProtobufCMessage *resp, int64_t rev)
{
    if (resp == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(resp->descriptor,
                                                        "header");
    if (f != NULL) {
        Etcdserverpb__ResponseHeader **hdr =
            (Etcdserverpb__ResponseHeader **)((char *)resp + f->offset);
        *hdr = server_header(s, *hdr, grpc_call_arena(call), rev);
        if (*hdr == NULL) {
            grpc_call_fail(call, KEEL_ENOMEM);
            return;
        }
    }
    grpc_call_reply(call, resp);
}

int server_register_methods(struct grpc_server *g,
                            const struct grpc_method *methods, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rv = grpc_server_register(g, &methods[i]);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

void server_info(const struct keel_server *s, struct server_info *info)
{
    info->member_id = s->member_id;
    info->cluster_id = s->cluster_id;
    info->name = s->cfg->name;
    info->peer_urls = s->peer_urls;
    info->n_peer_urls = s->n_peer_urls;
    info->client_urls = s->client_urls;
    info->n_client_urls = s->n_client_urls;
    info->data_dir = s->cfg->data_dir;
}

/* ---- cluster wiring (node <-> peer) ------------------------------------- */

struct peer *server_peer(struct keel_server *s)
{
    return s->peer;
}

bool server_strict_reconfig(const struct keel_server *s)
{
    return s->cfg->strict_reconfig_check;
}

void server_on_removed(struct keel_server *s, void (*cb)(void *arg),
                       void *arg)
{
    s->removed_cb = cb;
    s->removed_arg = arg;
}

static void removed_timer_fired(uv_timer_t *t)
{
    struct keel_server *s = t->data;
    uv_close((uv_handle_t *)t, NULL);
    s->removed_timer_open = false;
    /* etcd: plog.Errorf("%s", err); plog.Infof("the data-dir used by this
     * member must be removed.") */
    log_error("etcdserver",
              "the member has been permanently removed from the cluster");
    log_info("etcdserver", "the data-dir used by this member must be "
                           "removed.");
    if (s->removed_cb != NULL && !s->stopping) {
        s->removed_cb(s->removed_arg);
    }
}

/* This member was removed: stop as etcd does (stopWithDelay 1 s when the
 * removal is applied here; at once when a peer refuses us as removed). */
static void server_removed(struct keel_server *s, uint64_t delay_ms)
{
    if (s->removed || s->stopping) {
        return;
    }
    s->removed = true;
    s->removed_timer_open = true;
    uv_timer_init(s->loop, &s->removed_timer);
    s->removed_timer.data = s;
    uv_timer_start(&s->removed_timer, removed_timer_fired, delay_ms, 0);
}

static bool peer_known(const struct keel_server *s, uint64_t id, size_t *at)
{
    for (size_t i = 0; i < s->n_peers; i++) {
        if (s->peers[i] == id) {
            if (at != NULL) {
                *at = i;
            }
            return true;
        }
    }
    return false;
}

/* Make id's peer URLs these (add it or update it). */
static void peer_set(struct keel_server *s, uint64_t id, char *const *urls,
                     size_t n)
{
    if (s->peer == NULL || id == s->member_id || n == 0) {
        return;
    }
    const char *const *u = (const char *const *)urls;
    int rv;
    if (peer_known(s, id, NULL)) {
        rv = peer_update(s->peer, id, u, n);
    } else {
        rv = peer_add(s->peer, id, u, n);
        if (rv == 0 && s->n_peers < SERVER_MAX_MEMBERS) {
            s->peers[s->n_peers++] = id;
        }
    }
    if (rv != 0) {
        log_warn("rafthttp", "cannot add peer %" PRIx64 " (%s): %s", id,
                 urls[0], keel_strerror(rv));
    } else {
        log_info("rafthttp", "added peer %" PRIx64, id);
    }
}

static void peer_drop(struct keel_server *s, uint64_t id)
{
    size_t at;
    if (s->peer == NULL || !peer_known(s, id, &at)) {
        return;
    }
    peer_remove(s->peer, id);
    s->peers[at] = s->peers[--s->n_peers];
    log_info("rafthttp", "removed peer %" PRIx64, id);
}

/* Give the transport the members table's peers (at start), and with drop
 * forget those no longer in it (after a snapshot install). Never drop at
 * start: a joining member's table is still empty, and a peer_remove'd
 * member is refused as removed (it would stop). */
static void peers_from_table(struct keel_server *s, bool drop)
{
    struct keel_arena a;
    keel_arena_init(&a, 0);
    Etcdserverpb__Member **v = NULL;
    size_t n = 0;
    if (cluster_members(s, &a, &v, &n) == 0) {
        for (size_t i = 0; drop && n > 0 && i < s->n_peers;) {
            bool keep = false;
            for (size_t j = 0; j < n && !keep; j++) {
                keep = v[j]->id == s->peers[i];
            }
            if (keep) {
                i++;
            } else {
                peer_drop(s, s->peers[i]); /* moves the last one here */
            }
        }
        for (size_t j = 0; j < n; j++) {
            peer_set(s, v[j]->id, v[j]->peerurls, v[j]->n_peerurls);
        }
    }
    keel_arena_free(&a);
}

static void srv_send(void *arg, uint64_t to, const uint8_t *msg, size_t len,
                     const char *snap_path)
{
    struct keel_server *s = arg;
    if (s->peer != NULL) {
        peer_send(s->peer, to, msg, len, snap_path);
    } else if (snap_path != NULL && !s->node_gone) {
        node_report_snapshot(s->node, to, false);
    }
}

static void srv_peer_message(void *arg, uint64_t from, const uint8_t *msg,
                             size_t len)
{
    (void)from;
    struct keel_server *s = arg;
    if (s->node != NULL && !s->node_gone) {
        node_step(s->node, msg, len);
    }
}

static void srv_peer_snapshot(void *arg, uint64_t from, const uint8_t *msg,
                              size_t len, const char *path)
{
    (void)from;
    struct keel_server *s = arg;
    if (s->node != NULL && !s->node_gone) {
        node_step_snapshot(s->node, msg, len, path); /* owns the file */
    } else {
        unlink(path);
    }
}

static void srv_snapshot_sent(void *arg, uint64_t to, bool ok)
{
    struct keel_server *s = arg;
    if (s->node != NULL && !s->node_gone) {
        node_report_snapshot(s->node, to, ok);
    }
}

static void srv_unreachable(void *arg, uint64_t to)
{
    struct keel_server *s = arg;
    if (s->node != NULL && !s->node_gone) {
        node_report_unreachable(s->node, to);
    }
}

static int srv_cluster_info(void *arg, uint8_t **buf, size_t *len)
{
    struct keel_server *s = arg;
    if (s->node == NULL || s->node_gone) {
        return KEEL_ESTOPPED;
    }
    return cluster_pack_member_list(s, buf, len);
}

static void srv_peer_request(void *arg, uint64_t from, uint32_t method,
                             const uint8_t *body, size_t len,
                             struct peer_responder *r)
{
    (void)from;
    struct keel_server *s = arg;
    if (s->node == NULL || s->node_gone) {
        peer_respond(r, KEEL_ESTOPPED, NULL, 0);
    } else if (method == CLUSTER_PEER_PROMOTE) {
        cluster_serve_promote(s, body, len, r);
    } else if (method == LEASE_PEER_RENEW || method == LEASE_PEER_TTL) {
        lease_serve_peer(s, method, body, len, r);
    } else {
        peer_respond(r, KEEL_EUNIMPLEMENTED, NULL, 0);
    }
}

static void srv_peer_removed(void *arg, uint64_t by)
{
    struct keel_server *s = arg;
    log_warn("rafthttp", "peer %" PRIx64 " refused this member: it was "
                         "removed from the cluster",
             by);
    server_removed(s, 0);
}

static void srv_conf_change(void *arg, const struct node_conf_change *cc)
{
    struct keel_server *s = arg;
    if (cc->type == RAFTPB__CONF_CHANGE_TYPE__CONF_REMOVE_NODE) {
        if (cc->node_id == s->member_id) {
            server_removed(s, 1000);
        } else {
            peer_drop(s, cc->node_id);
        }
        return;
    }
    if (cc->ctx == NULL || cc->ctx_len == 0) {
        return;
    }
    Etcdserverpb__Member *m =
        etcdserverpb__member__unpack(NULL, cc->ctx_len, cc->ctx);
    if (m != NULL) {
        peer_set(s, cc->node_id, m->peerurls, m->n_peerurls);
        etcdserverpb__member__free_unpacked(m, NULL);
    }
}

static void srv_snapshot_installed(void *arg, uint64_t index, int64_t rev)
{
    struct keel_server *s = arg;
    log_info("etcdserver", "applied incoming snapshot at index %" PRIu64
                           " (revision %" PRId64 ")",
             index, rev);
    if (s->watch != NULL) {
        watch_service_restore(s->watch, rev);
    }
    v2_on_snapshot(s->v2);
    int rv = lessor_reload(s->lessor);
    if (rv != 0) {
        log_error("etcdserver", "cannot reload leases after a snapshot: %s",
                  keel_strerror(rv));
    }
    auth_reload(s->auth);
    peers_from_table(s, true);
}

static int open_peer(struct keel_server *s, char *errmsg, size_t errlen)
{
    const struct keel_config *cfg = s->cfg;
    const char *urls[64];
    size_t n = 0;
    for (size_t i = 0; i < cfg->listen_peer_urls.n && n < 64; i++) {
        urls[n++] = cfg->listen_peer_urls.v[i].str;
    }
    char snap[4096];
    snprintf(snap, sizeof snap, "%s/member/snap", cfg->data_dir);
    int rv = mkdir_p(snap, 0700);
    if (rv != 0) {
        snprintf(errmsg, errlen, "cannot create %s: %s", snap,
                 keel_strerror(rv));
        return rv;
    }
    struct peer_options po = {
        .loop = s->loop,
        .cluster_id = s->cluster_id,
        .self_id = s->member_id,
        .listen_urls = urls,
        .n_listen_urls = n,
        .snap_dir = snap,
        .on_message = srv_peer_message,
        .on_snapshot = srv_peer_snapshot,
        .on_snapshot_sent = srv_snapshot_sent,
        .on_unreachable = srv_unreachable,
        .on_cluster_info = srv_cluster_info,
        .on_removed = srv_peer_removed,
        .on_request = srv_peer_request,
        .arg = s,
        .tls_server = s->peer_tls_server,
        .tls_client = s->peer_tls_client,
        .tls_skip_client_san = cfg->peer_tls.skip_client_san_verify,
        .max_frame_bytes = server_max_request_bytes(s) + 1024 * 1024 >
                                   PEER_DEFAULT_MAX_FRAME_BYTES
                               ? server_max_request_bytes(s) + 1024 * 1024
                               : 0,
    };
    rv = peer_open(&po, &s->peer, errmsg, errlen);
    if (rv != 0) {
        s->peer = NULL;
        return rv;
    }
    for (size_t i = 0; i < n; i++) {
        log_info("embed", "listening for peers on %s", urls[i]);
    }
    return 0;
}

/* etcd 3.4's v3rpc interceptors (isRPCSupportedForLearner): a learner
 * serves Status and serializable Range only, and no stream. */
static int learner_guard(void *data, const char *path, enum grpc_kind kind,
                         const ProtobufCMessage *req)
{
    struct keel_server *s = data;
    if (s->node == NULL || s->node_gone) {
        return 0;
    }
    struct node_status st;
    node_status(s->node, &st);
    if (!st.is_learner) {
        return 0;
    }
    if (kind == GRPC_UNARY &&
        strcmp(path, "/etcdserverpb.Maintenance/Status") == 0) {
        return 0;
    }
    if (kind == GRPC_UNARY && req != NULL &&
        strcmp(path, "/etcdserverpb.KV/Range") == 0 &&
        ((const Etcdserverpb__RangeRequest *)req)->serializable) {
        return 0;
    }
    return KEEL_ENOTFORLEARNER;
}

/* ---- leadership transfer (etcd: MoveLeader, TransferLeadership) --------- */

struct transfer
{
    struct keel_server *s;
    uint64_t lead, to;
    uint64_t started, deadline;
    uv_timer_t timer;
    server_transfer_cb cb;
    void *arg;
    int rv;
};

static void transfer_closed(uv_handle_t *h)
{
    struct transfer *t = h->data;
    t->cb(t->arg, t->rv);
    free(t);
}

static void transfer_poll(uv_timer_t *h)
{
    struct transfer *t = h->data;
    struct keel_server *s = t->s;
    struct node_status st = {0};
    if (!s->node_gone) {
        node_status(s->node, &st);
    }
    uint64_t now = uv_now(s->loop);
    if (!s->node_gone && st.leader == t->to) {
        log_info("etcdserver",
                 "%" PRIx64 " finished leadership transfer from %" PRIx64
                 " to %" PRIx64 " (took %.3fs)",
                 s->member_id, t->lead, t->to,
                 (double)(now - t->started) / 1000.0);
        t->rv = 0;
    } else if (now >= t->deadline || s->node_gone) {
        t->rv = KEEL_ETIMEOUTLEADERTRANSFER;
    } else {
        return;
    }
    uv_timer_stop(h);
    uv_close((uv_handle_t *)h, transfer_closed);
}

int server_move_leader(struct keel_server *s, uint64_t to, uint64_t timeout_ms,
                       server_transfer_cb cb, void *arg)
{
    struct node_status st;
    node_status(s->node, &st);
    if (!st.is_leader) {
        return KEEL_ENOTLEADER;
    }
    bool voter = false;
    for (size_t i = 0; i < st.n_voters; i++) {
        voter = voter || st.voters[i] == to;
    }
    if (!voter) {
        return KEEL_EBADLEADERTRANSFEREE;
    }
    struct transfer *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return KEEL_ENOMEM;
    }
    log_info("etcdserver", "%" PRIx64 " starts leadership transfer from %" PRIx64
                           " to %" PRIx64,
             s->member_id, st.leader, to);
    int rv = to == s->member_id ? 0 : node_transfer_leader(s->node, to);
    if (rv != 0) {
        free(t);
        return rv;
    }
    t->s = s;
    t->lead = st.leader;
    t->to = to;
    t->cb = cb;
    t->arg = arg;
    t->started = uv_now(s->loop);
    t->deadline = t->started + timeout_ms;
    uv_timer_init(s->loop, &t->timer);
    t->timer.data = t;
    uint64_t tick = s->cfg->heartbeat_ms ? s->cfg->heartbeat_ms : 100;
    uv_timer_start(&t->timer, transfer_poll, 0, tick);
    return 0;
}

uint64_t server_request_timeout_ms(const struct keel_server *s)
{
    /* etcd: ReqTimeout = 5s + 2 * election timeout */
    return 5000 + 2 * (s->cfg->election_ms ? s->cfg->election_ms : 1000);
}

/* ---- start / stop ------------------------------------------------------- */

static void server_free(struct keel_server *s)
{
    keel_arena_free(&s->publish_arena);
    if (s->grpc != NULL) {
        grpc_server_free(s->grpc);
    }
    if (s->router != NULL) {
        router_free(s->router);
    }
    if (s->metrics_router != NULL) {
        router_free(s->metrics_router);
    }
    metrics_registry_free(s->metrics);
    free(s->listeners);
    free(s->peer_urls);
    free(s->initial_cluster);
    free(s->client_urls);
    auth_free(s->auth);
    tls_ctx_free(s->peer_tls_server);
    tls_ctx_free(s->peer_tls_client);
    free(s);
}

/* Whether two URL lists name the same URLs (etcd: URLStringsEqual, without
 * resolving host names). */
static bool urls_equal(char *const *a, size_t na, const char *const *b,
                       size_t nb)
{
    if (na != nb) {
        return false;
    }
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++) {
            found = strcmp(a[i], b[j]) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

struct fetch
{
    bool done;
    int status;
    uint8_t *buf;
    size_t len;
    char err[256];
};

static void fetch_cb(void *arg, int status, const uint8_t *buf, size_t len,
                     const char *errmsg)
{
    struct fetch *f = arg;
    f->done = true;
    f->status = status;
    if (status == 0) {
        f->buf = malloc(len ? len : 1);
        if (f->buf == NULL) {
            f->status = KEEL_ENOMEM;
        } else {
            memcpy(f->buf, buf, len);
            f->len = len;
        }
    } else {
        snprintf(f->err, sizeof f->err, "%s", errmsg ? errmsg : "");
    }
}

/* --initial-cluster-state existing (etcd: GetClusterFromRemotePeers +
 * ValidateClusterAndAssignIDs): ask the other members for the member list,
 * match every existing member to one of --initial-cluster by its peer URLs
 * and take the ids (ours included) and the cluster id from the answer. The
 * loop runs here until the answer comes: nothing else is open yet. */
static int join_existing(struct keel_server *s, struct init_member *m,
                         size_t nm, size_t self, char *err, size_t errlen)
{
    const char *urls[SERVER_MAX_MEMBERS * 16];
    size_t nu = 0;
    for (size_t i = 0; i < nm; i++) {
        for (size_t j = 0; i != self && j < m[i].n_urls; j++) {
            urls[nu++] = m[i].urls[j];
        }
    }
    struct fetch f = {0};
    /* etcd: getClusterFromRemotePeers(..., 10*time.Second, ...) */
    int rv = nu == 0 ? KEEL_EINVAL
                     : peer_fetch_cluster_info(s->loop, s->peer_tls_client,
                                               urls, nu, 10000,
                                               fetch_cb, &f);
    while (rv == 0 && !f.done) {
        uv_run(s->loop, UV_RUN_ONCE);
    }
    if (rv != 0 || f.status != 0) {
        if (f.err[0] != 0) {
            log_warn("etcdserver", "could not get cluster response: %s",
                     f.err);
        }
        snprintf(err, errlen,
                 "cannot fetch cluster info from peer urls: could not "
                 "retrieve cluster information from the given URLs");
        free(f.buf);
        return KEEL_EINVAL;
    }
    Etcdserverpb__MemberListResponse *r =
        etcdserverpb__member_list_response__unpack(NULL, f.len, f.buf);
    free(f.buf);
    if (r == NULL || r->header == NULL) {
        snprintf(err, errlen, "cannot fetch cluster info from peer urls: "
                              "could not retrieve cluster information from "
                              "the given URLs");
        if (r != NULL) {
            etcdserverpb__member_list_response__free_unpacked(r, NULL);
        }
        return KEEL_EINVAL;
    }
    rv = 0;
    if (r->n_members != nm) {
        snprintf(err, errlen,
                 "error validating peerURLs {ClusterID:%" PRIx64
                 "}: member count is unequal",
                 r->header->cluster_id);
        rv = KEEL_EINVAL;
    }
    for (size_t i = 0; rv == 0 && i < r->n_members; i++) {
        const Etcdserverpb__Member *em = r->members[i];
        size_t j = 0;
        while (j < nm && !urls_equal(em->peerurls, em->n_peerurls,
                                     m[j].urls, m[j].n_urls)) {
            j++;
        }
        if (j == nm) {
            char u[512] = "";
            size_t off = 0;
            for (size_t k = 0; k < em->n_peerurls && off < sizeof u; k++) {
                off += (size_t)snprintf(u + off, sizeof u - off, "%s%s",
                                        k ? " " : "", em->peerurls[k]);
            }
            snprintf(err, errlen,
                     "error validating peerURLs {ClusterID:%" PRIx64
                     "}: PeerURLs: no match found for existing member "
                     "(%" PRIx64 ", [%s]), last resolver error (<nil>)",
                     r->header->cluster_id, em->id, u);
            rv = KEEL_EINVAL;
            break;
        }
        m[j].id = em->id;
    }
    if (rv == 0) {
        s->member_id = m[self].id;
        s->cluster_id = r->header->cluster_id;
    }
    etcdserverpb__member_list_response__free_unpacked(r, NULL);
    return rv;
}

/* Resolve identity and initial members: from the data dir when it has a
 * WAL (the --initial-cluster* flags are ignored then, as in etcd), else
 * from the flags (new cluster) or from the running cluster (existing). */
static int resolve_identity(struct keel_server *s, struct init_member *m,
                            size_t *n_members, bool *join, char *err,
                            size_t errlen)
{
    const struct keel_config *cfg = s->cfg;
    size_t nm = 0;
    uint64_t voters[SERVER_MAX_MEMBERS];
    size_t n_voters = 0;
    *n_members = 0;
    *join = false;
    char *buf = strdup(cfg->initial_cluster ? cfg->initial_cluster : "");
    if (buf == NULL) {
        return KEEL_ENOMEM;
    }
    s->initial_cluster = buf; /* m[].urls point into it */
    if (wal_exists(cfg->data_dir)) {
        int rv = identity_load(cfg->data_dir, &s->member_id, &s->cluster_id,
                               voters, &n_voters);
        if (rv != 0) {
            snprintf(err, errlen,
                     "cannot read %s/member/keel-identity: %s (a data dir "
                     "with a WAL must have one)",
                     cfg->data_dir, keel_strerror(rv));
        } else {
            log_info("etcdserver",
                     "restarting member %" PRIx64 " in cluster %" PRIx64
                     " at commit index",
                     s->member_id, s->cluster_id);
        }
        return rv;
    }
    int rv = parse_initial_cluster(buf, m, &nm, err, errlen);
    if (rv != 0) {
        return rv;
    }
    size_t self = nm;
    for (size_t i = 0; i < nm; i++) {
        m[i].id = identity_member_id(m[i].urls, m[i].n_urls,
                                     cfg->initial_cluster_token);
        if (strcmp(m[i].name, cfg->name) == 0) {
            self = i;
        }
    }
    if (self == nm) {
        snprintf(err, errlen,
                 "couldn't find local name \"%s\" in the initial cluster "
                 "configuration",
                 cfg->name);
        return KEEL_EINVAL;
    }
    if (strcmp(cfg->initial_cluster_state, "existing") == 0) {
        *join = true;
        rv = join_existing(s, m, nm, self, err, errlen);
        if (rv != 0) {
            return rv;
        }
    } else {
        s->member_id = m[self].id;
        for (size_t i = 0; i < nm; i++) {
            voters[i] = m[i].id;
        }
        n_voters = nm;
        s->cluster_id = identity_cluster_id(voters, nm);
    }
    *n_members = nm;
    rv = mkdir_p(cfg->data_dir, 0700);
    if (rv == 0) {
        char mdir[4096];
        snprintf(mdir, sizeof mdir, "%s/member", cfg->data_dir);
        rv = mkdir_p(mdir, 0700);
    }
    if (rv == 0) {
        rv = identity_save(cfg->data_dir, s->member_id, s->cluster_id, voters,
                           n_voters);
    }
    if (rv != 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s", cfg->data_dir,
                 keel_strerror(rv));
    }
    return rv;
}

/* ---- apply hooks -------------------------------------------------------- */

static void server_on_events(void *arg, int64_t rev, Mvccpb__Event **events,
                             size_t n)
{
    struct keel_server *s = arg;
    if (s->watch != NULL) {
        watch_service_notify(s->watch, rev, events, n);
    }
}

static void server_on_applied(void *arg, const Keelpb__Request *req,
                              const ProtobufCMessage *resp)
{
    struct keel_server *s = arg;
    lessor_on_applied(s->lessor, req, resp);
    auth_on_applied(s->auth, req, resp);
    v2_on_applied(s->v2, req, resp);
    if (req->op_case == KEELPB__REQUEST__OP_COMPACTION && s->watch != NULL) {
        watch_service_compacted(s->watch, req->compaction->revision);
    }
}

/* ---- publishing (etcd: EtcdServer.publish, monitorVersions) ------------- */

static void publish_tick(uv_timer_t *t);

static void version_applied(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)resp;
    struct keel_server *s = arg;
    s->publishing = false;
    keel_arena_reset(&s->publish_arena);
    if (rv != 0) {
        return; /* retried by the timer */
    }
    s->version_set = true;
    log_notice("etcdserver/membership", "set the initial cluster version to %s",
               KEEL_ETCD_CLUSTER_VERSION);
    log_info("etcdserver/api", "enabled capabilities for version %s",
             KEEL_ETCD_CLUSTER_VERSION);
    uv_timer_stop(&s->publish_timer);
}

static void attributes_applied(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)resp;
    struct keel_server *s = arg;
    s->publishing = false;
    keel_arena_reset(&s->publish_arena);
    if (rv != 0) {
        log_warn("etcdserver", "failed to publish local member to cluster "
                               "through raft (%s)",
                 keel_strerror(rv));
        return;
    }
    s->published = true;
    char urls[1024] = "";
    size_t off = 0;
    for (size_t i = 0; i < s->n_client_urls && off < sizeof urls; i++) {
        off += (size_t)snprintf(urls + off, sizeof urls - off, "%s%s",
                                i ? " " : "", s->client_urls[i]);
    }
    log_info("etcdserver", "published {Name:%s ClientURLs:[%s]} to cluster %" PRIx64,
             s->cfg->name, urls, s->cluster_id);
    if (s->ready_cb != NULL) {
        s->ready_cb(s->ready_arg);
    }
    publish_tick(&s->publish_timer);
}

/* Publish this member's attributes through raft once there is a leader,
 * then (leader only) the cluster version. Retried each heartbeat until
 * applied. */
static void publish_tick(uv_timer_t *t)
{
    struct keel_server *s = t->data;
    if (s->publishing || s->stopping) {
        return;
    }
    struct node_status st;
    node_status(s->node, &st);
    if (st.leader == 0) {
        return;
    }
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    if (!s->published) {
        Keelpb__MemberAttributes *m =
            keel_arena_alloc(&s->publish_arena, sizeof *m);
        if (m == NULL) {
            return;
        }
        keelpb__member_attributes__init(m);
        m->member_id = s->member_id;
        m->name = (char *)s->cfg->name;
        m->client_urls = (char **)s->client_urls;
        m->n_client_urls = s->n_client_urls;
        req.op_case = KEELPB__REQUEST__OP_MEMBER_ATTRIBUTES;
        req.member_attributes = m;
        if (node_propose(s->node, &req, &s->publish_arena, attributes_applied,
                         s) == 0) {
            s->publishing = true;
        }
        return;
    }
    if (!s->version_set) {
        if (!st.is_leader) {
            uv_timer_stop(&s->publish_timer); /* the leader decides */
            return;
        }
        log_info("etcdserver", "setting up the initial cluster version to %s",
                 KEEL_ETCD_CLUSTER_VERSION);
        req.op_case = KEELPB__REQUEST__OP_CLUSTER_VERSION;
        req.cluster_version = KEEL_ETCD_CLUSTER_VERSION ".0";
        if (node_propose(s->node, &req, &s->publish_arena, version_applied,
                         s) == 0) {
            s->publishing = true;
        }
    }
}

void server_on_ready(struct keel_server *s, void (*cb)(void *arg), void *arg)
{
    s->ready_cb = cb;
    s->ready_arg = arg;
}

/* The client port's or the peer port's TLS settings as etcd derives them
 * from the flags (embed/etcd.go configureClientListeners and
 * configurePeerListeners, embed/config.go ClientSelfCert / PeerSelfCert,
 * pkg/transport TLSInfo.ServerConfig). Strings borrow from cfg or from the
 * buffers here. */
struct tls_prep
{
    struct tls_config tc;
    bool empty; /* etcd: TLSInfo.Empty(): neither cert nor key */
    bool self;  /* auto TLS: the self-signed certificate is in use */
    char ciphers[1024];
    char self_cert[4200], self_key[4200];
};

static bool str_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

/* etcd: TLSInfo.String() */
static const char *tls_info_str(const struct tls_config *tc, bool cert_auth,
                                char *buf, size_t len)
{
    snprintf(buf, len,
             "cert = %s, key = %s, trusted-ca = %s, client-cert-auth = %s, "
             "crl-file = %s",
             tc->cert_file, tc->key_file,
             tc->trusted_ca_file != NULL ? tc->trusted_ca_file : "",
             cert_auth ? "true" : "false",
             tc->crl_file != NULL ? tc->crl_file : "");
    return buf;
}

/* etcd's warnings for an http:// client or peer URL next to TLS
 * settings: zap message with the URL as a field, or the capnslog text (one
 * %s: url). */
static void warn_http_url(bool peer, const char *url, const char *zap_msg,
                          const char *capnslog_fmt)
{
    if (log_is_zap()) {
        log_warnw("embed", zap_msg,
                  LOG_STR(peer ? "peer-url" : "client-url", url));
    } else {
        log_warn("embed", capnslog_fmt, url);
    }
}

/* etcd's texts where the client and the peer forms differ. */
struct tls_words
{
    const char *side;         /* "client", "peer": fixtures/<side> */
    const char *auto_ignored; /* auto TLS with certificates */
    const char *zap_cert_auth, *cap_keys, *cap_cert_auth;
    const char *zap_start, *cap_start; /* the startup line */
};

static const struct tls_words client_words = {
    "client",
    "ignoring client auto TLS since certs given",
    "scheme is HTTP while --client-cert-auth is enabled; ignoring client "
    "cert auth for this URL",
    "The scheme of client url %s is HTTP while peer key/cert files are "
    "presented. Ignored key/cert files.",
    "The scheme of client url %s is HTTP while client cert auth "
    "(--client-cert-auth) is enabled. Ignored client cert auth for this "
    "url.",
    "starting with client TLS",
    "ClientTLS: %s",
};

static const struct tls_words peer_words = {
    "peer",
    "ignoring peer auto TLS since certs given",
    "scheme is HTTP while --peer-client-cert-auth is enabled; ignoring "
    "client cert auth for this URL",
    "The scheme of peer url %s is HTTP while peer key/cert files are "
    "presented. Ignored peer key/cert files.",
    "The scheme of peer url %s is HTTP while client cert auth "
    "(--peer-client-cert-auth) is enabled. Ignored client cert auth for "
    "this url.",
    "starting with peer TLS",
    "peerTLS: %s",
};

/* The address part of a client URL ("127.0.0.1:2379", a socket path):
 * etcd serves http:// and https:// URLs of one address on one listener. */
static const char *url_addr(const struct config_url *u)
{
    return u->str + strlen(u->scheme) + strlen("://");
}

/* etcd's startup line for TLS settings in use ("ClientTLS: ...",
 * "peerTLS: ..."). */
static void tls_log_start(const struct keel_config *cfg, bool peer,
                          const struct tls_prep *ct)
{
    const struct tls_words *w = peer ? &peer_words : &client_words;
    const struct config_tls *t = peer ? &cfg->peer_tls : &cfg->client_tls;
    char buf[1024];
    if (ct->empty) {
        return;
    }
    tls_info_str(&ct->tc, t->client_cert_auth && !ct->self, buf, sizeof buf);
    if (log_is_zap()) {
        log_infow("embed", w->zap_start, LOG_STR("tls-info", buf),
                  LOG_STRS("cipher-suites", cfg->cipher_suites.v,
                           cfg->cipher_suites.n));
    } else {
        log_info("embed", w->cap_start, buf);
    }
}

static int tls_prepare(const struct keel_config *cfg, bool peer,
                       struct tls_prep *ct, char *errmsg, size_t errlen)
{
    const struct config_tls *t = peer ? &cfg->peer_tls : &cfg->client_tls;
    const struct config_urls *lu =
        peer ? &cfg->listen_peer_urls : &cfg->listen_client_urls;
    const struct tls_words *w = peer ? &peer_words : &client_words;
    bool cert_auth = t->client_cert_auth;
    char buf[1024];

    memset(ct, 0, sizeof *ct);
    ct->tc.cert_file = t->cert_file;
    ct->tc.key_file = t->key_file;
    ct->tc.trusted_ca_file = t->trusted_ca_file;
    ct->tc.crl_file = t->crl_file;
    ct->tc.allowed_hostname = t->allowed_hostname;
    ct->tc.allowed_cn = peer ? t->allowed_cn : NULL;
    if (cfg->cipher_suites.n > 0) {
        if (tls_cipher_list(cfg->cipher_suites.v, cfg->cipher_suites.n,
                            ct->ciphers, sizeof ct->ciphers, errmsg,
                            errlen) != 0) {
            return KEEL_EINVAL;
        }
        ct->tc.cipher_list = ct->ciphers;
    }
    if (t->auto_tls) {
        if (str_set(t->cert_file) || str_set(t->key_file)) {
            if (log_is_zap()) {
                log_warnw("embed", w->auto_ignored);
            } else {
                log_warn("embed", "%s", w->auto_ignored);
            }
        } else {
            const char *hosts[64];
            size_t n = 0;
            char dir[4096], hostbuf[64][300];
            int created = 0;
            for (size_t i = 0; i < lu->n && n < 64; i++) {
                const struct config_url *u = &lu->v[i];
                bool v6 = strchr(u->host, ':') != NULL;
                snprintf(hostbuf[n], sizeof hostbuf[n], "%s%s%s:%s",
                         v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
                hosts[n] = hostbuf[n];
                n++;
            }
            snprintf(dir, sizeof dir, "%s/fixtures/%s", cfg->data_dir,
                     w->side);
            if (tls_self_cert(dir, hosts, n, &created, buf, sizeof buf) != 0) {
                /* etcd: plog.Fatalf("could not get certs (%v)") */
                snprintf(errmsg, errlen, "could not get certs (%s)", buf);
                return KEEL_EINVAL;
            }
            snprintf(ct->self_cert, sizeof ct->self_cert, "%s/cert.pem", dir);
            snprintf(ct->self_key, sizeof ct->self_key, "%s/key.pem", dir);
            if (created && log_is_zap()) {
                log_infow("transport", "created cert file",
                          LOG_STR("path", ct->self_cert));
                log_infow("transport", "created key file",
                          LOG_STR("path", ct->self_key));
            }
            /* etcd replaces the whole TLSInfo with the self-signed one:
             * --trusted-ca-file, --client-cert-auth, --client-crl-file and
             * --client-cert-allowed-hostname no longer apply; its client
             * side skips verification (TLSInfo.selfCert). */
            ct->tc = (struct tls_config){.cert_file = ct->self_cert,
                                         .key_file = ct->self_key,
                                         .cipher_list = ct->tc.cipher_list};
            cert_auth = false;
            ct->self = true;
        }
    }
    /* etcd (TLSInfo.ServerConfig): a trusted CA file alone already makes
     * the server require and verify client certificates. */
    ct->tc.client_cert_auth = cert_auth || str_set(ct->tc.trusted_ca_file);
    ct->empty = !str_set(ct->tc.cert_file) && !str_set(ct->tc.key_file);
    if (peer) {
        tls_log_start(cfg, true, ct); /* etcd logs it before the URLs */
    }
    for (size_t i = 0; i < lu->n; i++) {
        const struct config_url *u = &lu->v[i];
        bool secure = strcmp(u->scheme, "https") == 0 ||
                      strcmp(u->scheme, "unixs") == 0;
        if (secure && ct->empty && peer) {
            /* etcd: transport.newTLSListener */
            snprintf(errmsg, errlen,
                     "cannot listen on TLS for %s: KeyFile and CertFile are "
                     "not presented",
                     url_addr(u));
            return KEEL_EINVAL;
        }
        if (secure && ct->empty) {
            snprintf(errmsg, errlen,
                     "TLS key/cert (--cert-file, --key-file) must be provided "
                     "for client url %s with HTTPS scheme",
                     u->str);
            return KEEL_EINVAL;
        }
        if (secure) {
            continue;
        }
        if (!ct->empty) {
            warn_http_url(peer, u->str,
                          "scheme is HTTP while key and cert files are "
                          "present; ignoring key and cert files",
                          w->cap_keys);
        }
        if (cert_auth) {
            warn_http_url(peer, u->str, w->zap_cert_auth, w->cap_cert_auth);
        }
    }
    return 0;
}


/* The peer transport's TLS contexts (etcd: configurePeerListeners, then
 * the rafthttp transport's TLSInfo.ClientConfig): a server context when a
 * --listen-peer-urls is https://, and always a dialing one, for members
 * whose URLs are https:// (added later too). */
static int peer_tls_open(struct keel_server *s, char *errmsg, size_t errlen)
{
    const struct keel_config *cfg = s->cfg;
    struct tls_prep pt;
    bool https = false;
    int rv = tls_prepare(cfg, true, &pt, errmsg, errlen);
    if (rv != 0) {
        return rv;
    }
    pt.tc.keep_buffers = 1; /* a few connections carrying every message */
    for (size_t i = 0; i < cfg->listen_peer_urls.n; i++) {
        https |= strcmp(cfg->listen_peer_urls.v[i].scheme, "https") == 0;
    }
    if (https &&
        (rv = tls_ctx_new(&pt.tc, &s->peer_tls_server, errmsg, errlen)) != 0) {
        return rv;
    }
    /* The dialing side presents the same certificate and trusts the same
     * CA, as etcd's one PeerTLSInfo; it does not ask for CRL checks. */
    pt.tc.role = TLS_CLIENT;
    pt.tc.crl_file = NULL;
    pt.tc.client_cert_auth = 0;
    pt.tc.insecure_skip_verify = pt.self;
    return tls_ctx_new(&pt.tc, &s->peer_tls_client, errmsg, errlen);
}


int server_start(uv_loop_t *loop, const struct keel_config *cfg,
                 struct keel_server **out, char *errmsg, size_t errlen)
{
    struct keel_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        return KEEL_ENOMEM;
    }
    s->loop = loop;
    s->cfg = cfg;
    struct init_member im[SERVER_MAX_MEMBERS];
    size_t n_im = 0;
    bool join = false;
    /* etcd checks the peer and then the client TLS flags (and makes
     * --auto-tls certificates) before it opens the member. */
    int rv = peer_tls_open(s, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    struct tls_prep ct;
    rv = tls_prepare(cfg, false, &ct, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    tls_log_start(cfg, false, &ct);
    bool any_secure = false;
    for (size_t i = 0; i < cfg->listen_client_urls.n; i++) {
        const char *sc = cfg->listen_client_urls.v[i].scheme;
        any_secure |= strcmp(sc, "https") == 0 || strcmp(sc, "unixs") == 0;
    }
    for (size_t i = 0; i < cfg->listen_metrics_urls.n; i++) {
        any_secure |= strcmp(cfg->listen_metrics_urls.v[i].scheme, "http") != 0;
    }
    if (any_secure) {
        /* Load the certificates once up front, before the member opens,
         * so that a bad file fails with etcd's bare message ("open x.pem:
         * no such file or directory"), not wrapped in a listener error.
         * (etcd finds it later, once serving, and exits the same way.) */
        struct tls_ctx *probe = NULL;
        rv = tls_ctx_new(&ct.tc, &probe, errmsg, errlen);
        if (rv != 0) {
            rv = rv == KEEL_ENOMEM ? rv : KEEL_ELISTEN;
            goto err;
        }
        tls_ctx_free(probe);
    }
    rv = resolve_identity(s, im, &n_im, &join, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    s->n_peer_urls = cfg->initial_advertise_peer_urls.n;
    s->peer_urls = calloc(s->n_peer_urls + 1, sizeof *s->peer_urls);
    if (s->peer_urls == NULL) {
        rv = KEEL_ENOMEM;
        goto err;
    }
    for (size_t i = 0; i < s->n_peer_urls; i++) {
        s->peer_urls[i] = cfg->initial_advertise_peer_urls.v[i].str;
    }
    rv = open_peer(s, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    /* etcd: a joining member's remotes are the members it fetched; the
     * rest comes with the log (or a snapshot). */
    for (size_t i = 0; join && i < n_im; i++) {
        peer_set(s, im[i].id, (char *const *)im[i].urls, im[i].n_urls);
    }

    s->n_client_urls = cfg->advertise_client_urls.n;
    s->client_urls = calloc(s->n_client_urls + 1, sizeof *s->client_urls);
    if (s->client_urls == NULL) {
        rv = KEEL_ENOMEM;
        goto err;
    }
    for (size_t i = 0; i < s->n_client_urls; i++) {
        s->client_urls[i] = cfg->advertise_client_urls.v[i].str;
    }

    struct node_options no = {0};
    no.data_dir = cfg->data_dir;
    no.member_id = s->member_id;
    no.cluster_id = s->cluster_id;
    struct node_member nm[SERVER_MAX_MEMBERS];
    for (size_t i = 0; i < n_im; i++) {
        nm[i] = (struct node_member){.id = im[i].id,
                                     .name = im[i].name,
                                     .peer_urls = im[i].urls,
                                     .n_peer_urls = im[i].n_urls};
    }
    no.initial_members = n_im > 0 && !join ? nm : NULL;
    no.n_initial_members = join ? 0 : n_im;
    no.join_existing = join;
    no.heartbeat_ms = (unsigned)cfg->heartbeat_ms;
    no.election_ms = (unsigned)cfg->election_ms;
    no.snapshot_count = cfg->snapshot_count;
    no.send = srv_send;
    no.send_arg = s;
    no.on_conf_change = srv_conf_change;
    no.on_conf_change_arg = s;
    no.on_snapshot = srv_snapshot_installed;
    no.on_snapshot_arg = s;
    struct lessor_options lo = {.member_id = s->member_id,
                                .heartbeat_ms = no.heartbeat_ms,
                                .election_ms = no.election_ms};
    rv = lessor_new(loop, &lo, &s->lessor);
    if (rv != 0) {
        goto err;
    }
    rv = auth_new(s, cfg, &s->auth, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    no.on_applied = server_on_applied;
    no.on_applied_arg = s;
    no.on_events = server_on_events;
    no.on_events_arg = s;
    no.on_leader = lessor_on_leader;
    no.on_leader_arg = s->lessor;
    rv = node_open(loop, &no, &s->node, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    rv = lessor_start(s->lessor, s->node);
    if (rv != 0) {
        snprintf(errmsg, errlen, "load leases: %s", keel_strerror(rv));
        goto err_node;
    }
    peers_from_table(s, false);

    s->grpc = grpc_server_new();
    s->router = router_new();
    s->metrics = metrics_registry_new();
    s->metrics_router = router_new();
    if (s->grpc == NULL || s->router == NULL || s->metrics == NULL ||
        s->metrics_router == NULL) {
        rv = KEEL_ENOMEM;
        goto err_node;
    }
    grpc_server_set_guard(s->grpc, learner_guard, s);
    if ((rv = metrics_register_server(s->metrics, s, s->grpc,
                                      cfg->quota_backend_bytes)) != 0 ||
        (rv = http_endpoints_register_metrics(s, s->metrics_router)) != 0 ||
        (rv = peer_register_metrics(s->metrics, s->peer)) != 0 ||
        (rv = kv_register(s, s->grpc)) != 0 ||
        (rv = maintenance_register(s, s->grpc)) != 0 ||
        (rv = cluster_register(s, s->grpc)) != 0 ||
        (rv = lease_register(s, s->grpc)) != 0 ||
        (rv = auth_register(s, s->grpc)) != 0 ||
        (rv = v3lock_register(s, s->grpc)) != 0 ||
        (rv = v3election_register(s, s->grpc)) != 0 ||
        (rv = watch_service_start(s, s->grpc, cfg, &s->watch)) != 0 ||
        (rv = http_endpoints_register(s, s->router)) != 0 ||
        (cfg->enable_grpc_gateway &&
         (rv = gateway_register(s, s->router)) != 0) ||
        (rv = v2_start(s, s->router, cfg->enable_v2, &s->v2)) != 0) {
        snprintf(errmsg, errlen, "register services: %s", keel_strerror(rv));
        goto err_node;
    }

    struct conn_limits limits;
    conn_limits_default(&limits);
    if (cfg->max_request_bytes > 0) {
        limits.max_request_bytes = cfg->max_request_bytes;
        limits.max_recv_bytes = cfg->max_request_bytes + 512 * 1024;
    }
    if (cfg->max_concurrent_streams > 0) {
        limits.max_concurrent_streams = cfg->max_concurrent_streams;
    }
    size_t n_urls = cfg->listen_client_urls.n + cfg->listen_metrics_urls.n;
    s->listeners = calloc(n_urls, sizeof *s->listeners);
    if (s->listeners == NULL && n_urls > 0) {
        rv = KEEL_ENOMEM;
        goto err_node;
    }
    for (size_t i = 0; i < cfg->listen_client_urls.n; i++) {
        const struct config_url *cu = &cfg->listen_client_urls.v[i];
        bool secure = strcmp(cu->scheme, "https") == 0 ||
                      strcmp(cu->scheme, "unixs") == 0;
        /* etcd serves the http:// and https:// URLs of one address on one
         * listener (its cmux picks TLS or plaintext per connection). */
        bool seen = false, plain = !secure, tls = secure;
        for (size_t j = 0; j < cfg->listen_client_urls.n; j++) {
            const struct config_url *o = &cfg->listen_client_urls.v[j];
            if (j == i || strcmp(url_addr(o), url_addr(cu)) != 0) {
                continue;
            }
            seen |= j < i;
            if (strcmp(o->scheme, "https") == 0 ||
                strcmp(o->scheme, "unixs") == 0) {
                tls = true;
            } else {
                plain = true;
            }
        }
        if (!seen) {
            struct listener *l = &s->listeners[s->n_listeners];
            char url[1024];
            /* the https:// form when TLS is wanted at all */
            snprintf(url, sizeof url, "%s%s://%s", cu->scheme,
                     tls && !secure ? "s" : "", url_addr(cu));
            rv = listener_init_tls(l, loop, url, s->grpc, s->router, &limits,
                                   &ct.tc);
            if (rv != 0) {
                snprintf(errmsg, errlen, "listen tcp %s: %s", cu->str,
                         l->errmsg);
                goto err_listeners;
            }
            l->tls_optional = tls && plain;
            l->data = s;
            s->n_listeners++;
        }
        if (strcmp(cu->scheme, "unix") == 0) {
            log_notice("embed", "serving unix socket requests on %s",
                       url_addr(cu));
        } else if (secure) {
            /* etcd: "serving client requests on %s" /
             * "serving client traffic securely" */
            if (log_is_zap()) {
                log_infow("embed", "serving client traffic securely",
                          LOG_STR("address", url_addr(cu)));
            } else {
                log_info("embed", "serving client requests on %s",
                         url_addr(cu));
            }
        } else {
            log_notice("embed",
                       "serving insecure client requests on %s:%s, this is "
                       "strongly discouraged!",
                       cu->host, cu->port);
        }
    }
    /* etcd: serveMetrics, /metrics and /health only, no gRPC. */
    for (size_t i = 0; i < cfg->listen_metrics_urls.n; i++) {
        const char *url = cfg->listen_metrics_urls.v[i].str;
        struct listener *l = &s->listeners[s->n_listeners];
        rv = listener_init_tls(l, loop, url, NULL, s->metrics_router,
                               &limits, &ct.tc);
        if (rv != 0) {
            snprintf(errmsg, errlen, "listen tcp %s: %s", url, l->errmsg);
            goto err_listeners;
        }
        l->data = s;
        s->n_listeners++;
        log_info("embed", "listening for metrics on %s", url);
    }
    s->listeners_open = s->n_listeners;
    keel_arena_init(&s->publish_arena, 0);
    uv_timer_init(loop, &s->publish_timer);
    s->publish_timer.data = s;
    uv_timer_start(&s->publish_timer, publish_tick, 0,
                   cfg->heartbeat_ms ? cfg->heartbeat_ms : 100);
    *out = s;
    return 0;

err_listeners:
    /* Listeners opened so far are closed synchronously enough for a failed
     * start: the process exits right after. */
    for (size_t i = 0; i < s->n_listeners; i++) {
        listener_close(&s->listeners[i], NULL);
    }
err_node:
    v2_stop(s->v2);
    s->v2 = NULL;
    node_close(s->node, NULL, NULL);
    s->node = NULL;
    s->node_gone = true;
    lessor_close(s->lessor);
    peer_close(s->peer, NULL, NULL);
    s->peer = NULL;
    /* node_close and listener_close finish on the loop; the caller exits. */
    *out = NULL;
    return rv;
err:
    if (s->lessor != NULL) {
        lessor_close(s->lessor);
    }
    if (s->peer != NULL) {
        /* no callback into s after this; it closes on later loop turns */
        peer_close(s->peer, NULL, NULL);
    }
    server_free(s);
    return rv;
}

static void stopped(void *arg)
{
    struct keel_server *s = arg;
    void (*cb)(void *) = s->stop_cb;
    void *cb_arg = s->stop_arg;
    server_free(s);
    if (cb != NULL) {
        cb(cb_arg);
    }
}

static void drain_timer_closed(uv_handle_t *h)
{
    struct keel_server *s = h->data;
    if (s->watch != NULL) {
        watch_service_close(s->watch, stopped, s);
        s->watch = NULL;
        return;
    }
    stopped(s);
}

/* Streams (watch, keep-alive) are finished by their cancel callbacks, which
 * the transport runs on loop turns after the connections closed: wait for
 * the last call to end before freeing what they use (bounded: 10 s). */
static void drain_check(uv_timer_t *t)
{
    struct keel_server *s = t->data;
    if (grpc_server_calls_live(s->grpc) > 0 && ++s->drain_ticks < 2000) {
        return;
    }
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, drain_timer_closed);
}

static void peer_closed(void *arg)
{
    struct keel_server *s = arg;
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_start(&s->drain_timer, drain_check, 0, 5);
}

static void node_closed(void *arg)
{
    struct keel_server *s = arg;
    lessor_close(s->lessor); /* the node answered all its proposals */
    struct peer *p = s->peer;
    s->peer = NULL;
    peer_close(p, peer_closed, s);
}

static void handle_gone(struct keel_server *s)
{
    if (--s->listeners_open == 0) {
        s->node_gone = true; /* peer callbacks stop reaching the node */
        node_close(s->node, node_closed, s);
    }
}

static void listener_closed(struct listener *l)
{
    handle_gone(l->data);
}

static void publish_timer_closed(uv_handle_t *h)
{
    handle_gone(h->data);
}

static void stop_now(struct keel_server *s)
{
    lessor_stop(s->lessor);
    v2_stop(s->v2);
    s->v2 = NULL;
    if (s->removed_timer_open) {
        s->removed_timer_open = false;
        uv_close((uv_handle_t *)&s->removed_timer, NULL);
    }
    s->listeners_open++; /* the publish timer counts as one more handle */
    uv_close((uv_handle_t *)&s->publish_timer, publish_timer_closed);
    for (size_t i = 0; i < s->n_listeners; i++) {
        /* Stop accepting, let in-flight requests finish (the node keeps
         * running until every listener is done); streams still open after
         * the grace period are cancelled. */
        listener_shutdown(&s->listeners[i], SERVER_SHUTDOWN_GRACE_MS,
                          listener_closed);
    }
}

static void stop_transferred(void *arg, int rv)
{
    struct keel_server *s = arg;
    if (rv != 0) {
        log_warn("etcdserver", "leadership transfer failed: %s",
                 keel_strerror(rv));
    }
    stop_now(s);
}

/* etcd: EtcdServer.TransferLeadership at Stop — a leader of several voters
 * hands leadership to the one connected longest first. */
static bool transfer_before_stop(struct keel_server *s)
{
    struct node_status st;
    node_status(s->node, &st);
    if (!st.is_leader) {
        log_info("etcdserver",
                 "skipped leadership transfer for stopping non-leader member");
        return false;
    }
    if (st.n_voters < 2) {
        log_info("etcdserver",
                 "skipped leadership transfer for single voting member "
                 "cluster");
        return false;
    }
    uint64_t best = 0, oldest = 0;
    for (size_t i = 0; i < st.n_voters; i++) {
        uint64_t t = st.voters[i] == s->member_id || s->peer == NULL
                         ? 0
                         : peer_active_since(s->peer, st.voters[i]);
        if (t != 0 && (best == 0 || t < oldest)) {
            best = st.voters[i];
            oldest = t;
        }
    }
    int rv = best == 0 ? KEEL_EUNHEALTHY
                       : server_move_leader(s, best,
                                            server_request_timeout_ms(s),
                                            stop_transferred, s);
    if (rv != 0) {
        log_warn("etcdserver", "leadership transfer failed: %s",
                 keel_strerror(rv));
        return false;
    }
    return true;
}

void server_stop(struct keel_server *s, void (*cb)(void *arg), void *arg)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    s->stop_cb = cb;
    s->stop_arg = arg;
    if (!transfer_before_stop(s)) {
        stop_now(s);
    }
}
