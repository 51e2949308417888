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
#include "router.h"
#include "tls.h"

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
    free(s);
}

/* Resolve identity and initial voters: from the data dir when it has a WAL,
 * else from the flags. */
static int resolve_identity(struct keel_server *s, uint64_t *voters,
                            size_t *n_voters, char *err, size_t errlen)
{
    const struct keel_config *cfg = s->cfg;
    struct init_member m[SERVER_MAX_MEMBERS];
    size_t nm = 0;
    char *buf = strdup(cfg->initial_cluster ? cfg->initial_cluster : "");
    if (buf == NULL) {
        return KEEL_ENOMEM;
    }
    int rv = parse_initial_cluster(buf, m, &nm, err, errlen);
    size_t self = nm;
    for (size_t i = 0; rv == 0 && i < nm; i++) {
        m[i].id = identity_member_id(m[i].urls, m[i].n_urls,
                                   cfg->initial_cluster_token);
        if (strcmp(m[i].name, cfg->name) == 0) {
            self = i;
        }
    }
    /* This member's peer URLs, for MemberList (copied out of buf). */
    if (rv == 0 && self < nm) {
        s->peer_urls = calloc(m[self].n_urls, sizeof *s->peer_urls);
        if (s->peer_urls == NULL) {
            rv = KEEL_ENOMEM;
        } else {
            for (size_t i = 0; i < m[self].n_urls; i++) {
                s->peer_urls[i] = m[self].urls[i];
            }
            s->n_peer_urls = m[self].n_urls;
        }
    }

    if (rv == 0 && wal_exists(cfg->data_dir)) {
        rv = identity_load(cfg->data_dir, &s->member_id, &s->cluster_id,
                           voters, n_voters);
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
        goto out;
    }
    if (rv != 0) {
        goto out;
    }
    if (self == nm) {
        snprintf(err, errlen,
                 "couldn't find local name \"%s\" in the initial cluster "
                 "configuration",
                 cfg->name);
        rv = KEEL_EINVAL;
        goto out;
    }
    s->member_id = m[self].id;
    for (size_t i = 0; i < nm; i++) {
        voters[i] = m[i].id;
    }
    *n_voters = nm;
    s->cluster_id = identity_cluster_id(voters, nm);
    rv = mkdir_p(cfg->data_dir, 0700);
    if (rv == 0) {
        char mdir[4096];
        snprintf(mdir, sizeof mdir, "%s/member", cfg->data_dir);
        rv = mkdir_p(mdir, 0700);
    }
    if (rv == 0) {
        rv = identity_save(cfg->data_dir, s->member_id, s->cluster_id, voters,
                           nm);
    }
    if (rv != 0) {
        snprintf(err, errlen, "cannot create data dir %s: %s", cfg->data_dir,
                 keel_strerror(rv));
    }
out:
    s->initial_cluster = buf; /* peer_urls point into it */
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

/* The client port's TLS settings as etcd derives them from the flags
 * (embed/etcd.go configureClientListeners, embed/config.go ClientSelfCert,
 * pkg/transport TLSInfo.ServerConfig). Strings borrow from cfg or from the
 * buffers here. */
struct client_tls
{
    struct tls_config tc;
    bool empty; /* etcd: TLSInfo.Empty(): neither cert nor key */
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

/* etcd's warnings for an http:// client URL next to TLS settings: zap
 * message with the URL as a field, or the capnslog text (one %s: url). */
static void warn_http_url(const char *url, const char *zap_msg,
                          const char *capnslog_fmt)
{
    if (log_is_zap()) {
        log_warnw("embed", zap_msg, LOG_STR("client-url", url));
    } else {
        log_warn("embed", capnslog_fmt, url);
    }
}

static int client_tls_prepare(const struct keel_config *cfg,
                              struct client_tls *ct, char *errmsg,
                              size_t errlen)
{
    const struct config_tls *t = &cfg->client_tls;
    bool cert_auth = t->client_cert_auth;
    char buf[1024];

    memset(ct, 0, sizeof *ct);
    ct->tc.cert_file = t->cert_file;
    ct->tc.key_file = t->key_file;
    ct->tc.trusted_ca_file = t->trusted_ca_file;
    ct->tc.crl_file = t->crl_file;
    ct->tc.allowed_hostname = t->allowed_hostname;
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
                log_warnw("embed", "ignoring client auto TLS since certs given");
            } else {
                log_warn("embed", "ignoring client auto TLS since certs given");
            }
        } else {
            const char *hosts[64];
            size_t n = 0;
            char dir[4096], hostbuf[64][300];
            int created = 0;
            for (size_t i = 0; i < cfg->listen_client_urls.n && n < 64; i++) {
                const struct config_url *u = &cfg->listen_client_urls.v[i];
                bool v6 = strchr(u->host, ':') != NULL;
                snprintf(hostbuf[n], sizeof hostbuf[n], "%s%s%s:%s",
                         v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
                hosts[n] = hostbuf[n];
                n++;
            }
            snprintf(dir, sizeof dir, "%s/fixtures/client", cfg->data_dir);
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
             * --client-cert-allowed-hostname no longer apply. */
            ct->tc = (struct tls_config){.cert_file = ct->self_cert,
                                         .key_file = ct->self_key,
                                         .cipher_list = ct->tc.cipher_list};
            cert_auth = false;
        }
    }
    /* etcd (TLSInfo.ServerConfig): a trusted CA file alone already makes
     * the server require and verify client certificates. */
    ct->tc.client_cert_auth = cert_auth || str_set(ct->tc.trusted_ca_file);
    ct->empty = !str_set(ct->tc.cert_file) && !str_set(ct->tc.key_file);
    for (size_t i = 0; i < cfg->listen_client_urls.n; i++) {
        const struct config_url *u = &cfg->listen_client_urls.v[i];
        bool secure = strcmp(u->scheme, "https") == 0 ||
                      strcmp(u->scheme, "unixs") == 0;
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
            warn_http_url(u->str,
                          "scheme is HTTP while key and cert files are "
                          "present; ignoring key and cert files",
                          "The scheme of client url %s is HTTP while peer "
                          "key/cert files are presented. Ignored key/cert "
                          "files.");
        }
        if (cert_auth) {
            warn_http_url(u->str,
                          "scheme is HTTP while --client-cert-auth is "
                          "enabled; ignoring client cert auth for this URL",
                          "The scheme of client url %s is HTTP while client "
                          "cert auth (--client-cert-auth) is enabled. Ignored "
                          "client cert auth for this url.");
        }
    }
    if (!ct->empty) {
        tls_info_str(&ct->tc, cert_auth, buf, sizeof buf);
        if (log_is_zap()) {
            log_infow("embed", "starting with client TLS",
                      LOG_STR("tls-info", buf),
                      LOG_STRS("cipher-suites", cfg->cipher_suites.v,
                               cfg->cipher_suites.n));
        } else {
            log_info("embed", "ClientTLS: %s", buf);
        }
    }
    return 0;
}

/* The address part of a client URL ("127.0.0.1:2379", a socket path):
 * etcd serves http:// and https:// URLs of one address on one listener. */
static const char *url_addr(const struct config_url *u)
{
    return u->str + strlen(u->scheme) + strlen("://");
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
    uint64_t voters[SERVER_MAX_MEMBERS];
    size_t n_voters = 0;
    /* etcd checks the client TLS flags (and makes --auto-tls certificates)
     * before it opens the member. */
    struct client_tls ct;
    int rv = client_tls_prepare(cfg, &ct, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
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
            goto err;
        }
        tls_ctx_free(probe);
    }
    rv = resolve_identity(s, voters, &n_voters, errmsg, errlen);
    if (rv != 0) {
        goto err;
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
    no.voters = voters;
    no.n_voters = n_voters;
    no.heartbeat_ms = (unsigned)cfg->heartbeat_ms;
    no.election_ms = (unsigned)cfg->election_ms;
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

    s->grpc = grpc_server_new();
    s->router = router_new();
    s->metrics = metrics_registry_new();
    s->metrics_router = router_new();
    if (s->grpc == NULL || s->router == NULL || s->metrics == NULL ||
        s->metrics_router == NULL) {
        rv = KEEL_ENOMEM;
        goto err_node;
    }
    if ((rv = metrics_register_server(s->metrics, s, s->grpc,
                                      cfg->quota_backend_bytes)) != 0 ||
        (rv = http_endpoints_register_metrics(s, s->metrics_router)) != 0 ||
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
         (rv = gateway_register(s, s->router)) != 0)) {
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
    node_close(s->node, NULL, NULL);
    s->node = NULL;
    lessor_close(s->lessor);
    /* node_close and listener_close finish on the loop; the caller exits. */
    *out = NULL;
    return rv;
err:
    if (s->lessor != NULL) {
        lessor_close(s->lessor);
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

static void node_closed(void *arg)
{
    struct keel_server *s = arg;
    lessor_close(s->lessor); /* the node answered all its proposals */
    uv_timer_init(s->loop, &s->drain_timer);
    s->drain_timer.data = s;
    uv_timer_start(&s->drain_timer, drain_check, 0, 5);
}

static void handle_gone(struct keel_server *s)
{
    if (--s->listeners_open == 0) {
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

void server_stop(struct keel_server *s, void (*cb)(void *arg), void *arg)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    lessor_stop(s->lessor);
    s->stop_cb = cb;
    s->stop_arg = arg;
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
