/*
 * keelctl with ETCDCTL_API=2: etcdctl 3.4's v2 command set (etcd:
 * etcdctl/ctlv2/ctl.go and command/) over etcd's v2 HTTP APIs
 * (/v2/keys, /v2/members, /v2/auth) as go.etcd.io/etcd/client speaks them:
 * key commands, watch / exec-watch, member, cluster-health, user, role,
 * auth; -o simple/extended/json; --debug's cURL lines; --username; TLS
 * (--cert-file/--key-file/--ca-file, https:// endpoints); --discovery-srv.
 * `backup` is keelctl's own (keel data dirs) and is run by keelctl.c.
 *
 * The client (etcd: client/client.go httpClusterClient): a list of
 * endpoints tried in order per request, each failure (dial error, header
 * timeout, 5xx) remembered for the ClusterError text; before a command the
 * list is replaced by the members' client URLs (Sync) unless --no-sync.
 * Differs: the synced list keeps the members' order (etcd shuffles it), so
 * on a multi-member cluster keelctl asks the first member first.
 *
 * One HTTP/1.1 request per connection ("Connection: close"), blocking,
 * with poll() deadlines: --timeout until the response headers (not for
 * watch waits), --total-timeout for the whole command (not for watch).
 * JSON answers are read with jansson; what is printed as JSON is written
 * in Go's field order and escaping (encoding/json of the client's structs).
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <resolv.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* keelctl.h declares its own json_string(); this file uses jansson's and
 * calls keelctl's as go_json_string() */
#define json_string keelctl_json_string
#include "keelctl.h"
#undef json_string

#include <jansson.h>

/* etcd: etcdctl/ctlv2/command/error.go */
enum {
    V2_OK = 0,
    V2_BAD_ARGS = 1,
    V2_BAD_CONNECTION = 2,
    V2_SERVER = 4,
    V2_CLUSTER_NOT_HEALTHY = 5,
};

struct v2_ep
{
    char *url; /* scheme://host[:port] as Go's url.String() prints it */
    int tls;
    char *host; /* without brackets */
    char *port;
    char *path; /* the URL's own path ("" or "/x") */
};

/* Global options (ctl.go app.Flags) and the client built from them. */
static struct
{
    const char *output, *discovery_srv, *endpoints, *endpoint, *peers;
    const char *cert, *key, *ca, *username;
    int debug, no_sync, insecure_discovery;
    uint64_t timeout_ms, total_timeout_ms;
    struct v2_ep *eps;
    size_t n_eps;
    char *auth; /* "Basic ..." or NULL */
    SSL_CTX *ssl;
    const char *server_name; /* discovery domain as TLS name, or NULL */
    int64_t deadline;        /* ms (monotonic) of --total-timeout, 0: none */
} v = {.output = "simple", .timeout_ms = 2000, .total_timeout_ms = 5000};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* contextWithTotalTimeout: the deadline of the command's requests. */
static void start_total_timeout(void)
{
    v.deadline = v.total_timeout_ms ? now_ms() + (int64_t)v.total_timeout_ms
                                     : 0;
}

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ctl_alloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A string built with stdio, copied into the arena. */
struct sbuf
{
    char *p;
    size_t len;
    FILE *f;
};
static FILE *sb_open(struct sbuf *b)
{
    b->p = NULL;
    b->len = 0;
    b->f = open_memstream(&b->p, &b->len);
    if (b->f == NULL) {
        ctl_die(EXIT_ERROR, "out of memory");
    }
    return b->f;
}
static char *sb_done(struct sbuf *b)
{
    fclose(b->f);
    char *s = ctl_strndup(b->p, b->len);
    free(b->p);
    return s;
}

_Noreturn static void die_plain(int code, const char *msg)
{
    fflush(stdout);
    fprintf(stderr, "%s\n", msg);
    exit(code);
}

/* ---- errors (etcd: client.ClusterError, command.handleError) -------------- */

/* The error of the last request: `msg` is its Error() text; a cluster
 * error also has its per-endpoint list for Detail(). */
static struct
{
    char *msg;
    char *list[64];
    size_t n;
    int cluster;
} err;

static void err_set(const char *msg)
{
    err.msg = ctl_strdup(msg);
    err.cluster = 0;
}

static void err_cluster(void)
{
    struct sbuf b;
    FILE *f = sb_open(&b);
    fputs("client: etcd cluster is unavailable or misconfigured", f);
    for (size_t i = 0; i < err.n; i++) {
        fprintf(f, "; error #%zu: %s\n", i, err.list[i]);
    }
    err.msg = sb_done(&b);
    err.cluster = 1;
}

/* handleError: "Error:  <err>" (+ the cluster detail), exit code. */
_Noreturn static void handle_error(int code)
{
    fflush(stdout);
    fprintf(stderr, "Error:  %s\n", err.msg);
    if (err.cluster) {
        for (size_t i = 0; i < err.n; i++) {
            fprintf(stderr, "error #%zu: %s\n", i, err.list[i]);
        }
        fputc('\n', stderr);
    }
    exit(code);
}

_Noreturn static void handle_error_msg(int code, const char *msg)
{
    err_set(msg);
    handle_error(code);
}

/* fmt.Fprintln(os.Stderr, err.Error()); os.Exit(1) as most non-key
 * commands end. */
_Noreturn static void die_err(void)
{
    die_plain(1, err.msg);
}

/* isConnectionError: every endpoint failed to dial or timed out. */
static int err_is_connection;

/* ---- URLs -------------------------------------------------------------------- */

/* Go's url escaping: path (shouldEscape encodePath) or query component. */
static void url_escape(FILE *f, const char *s, int path)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || strchr("-_.~", *p);
        if (path && *p && strchr("$&+,/:;=@", *p)) {
            keep = 1;
        }
        if (keep) {
            fputc(*p, f);
        } else if (!path && *p == ' ') {
            fputc('+', f);
        } else {
            fprintf(f, "%%%02X", *p);
        }
    }
}

/* Go's path.Clean. */
static char *path_clean(const char *p)
{
    if (p[0] == 0) {
        return ctl_strdup(".");
    }
    int rooted = p[0] == '/';
    size_t n = strlen(p);
    char *out = ctl_alloc(n + 2);
    size_t w = 0, r = 0, dotdot = 0;
    if (rooted) {
        out[w++] = '/';
        r = 1;
        dotdot = 1;
    }
    while (r < n) {
        if (p[r] == '/') {
            r++;
        } else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
            r++;
        } else if (p[r] == '.' && p[r + 1] == '.' &&
                   (r + 2 == n || p[r + 2] == '/')) {
            r += 2;
            if (w > dotdot) {
                w--;
                while (w > dotdot && out[w] != '/') {
                    w--;
                }
            } else if (!rooted) {
                if (w > 0) {
                    out[w++] = '/';
                }
                out[w++] = '.';
                out[w++] = '.';
                dotdot = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0)) {
                out[w++] = '/';
            }
            for (; r < n && p[r] != '/'; r++) {
                out[w++] = p[r];
            }
        }
    }
    if (w == 0) {
        out[w++] = '.';
    }
    out[w] = 0;
    return out;
}

/* pathutil.CanonicalURLPath: rooted, cleaned, trailing slash kept. */
static char *canonical_path(const char *p)
{
    if (p[0] == 0) {
        return ctl_strdup("/");
    }
    if (p[0] != '/') {
        p = xprintf("/%s", p);
    }
    char *np = path_clean(p);
    if (p[strlen(p) - 1] == '/' && strcmp(np, "/") != 0) {
        np = xprintf("%s/", np);
    }
    return np;
}

/* Go's path.Join of two parts. */
static char *path_join(const char *a, const char *b)
{
    return path_clean(a[0] ? xprintf("%s/%s", a, b) : b);
}

static int parse_ep(const char *s, struct v2_ep *ep)
{
    memset(ep, 0, sizeof(*ep));
    const char *rest = s;
    const char *sep = strstr(s, "://");
    if (sep == NULL) {
        ep->tls = 0;
    } else if ((size_t)(sep - s) == 4 && strncmp(s, "http", 4) == 0) {
        rest = sep + 3;
    } else if ((size_t)(sep - s) == 5 && strncmp(s, "https", 5) == 0) {
        ep->tls = 1;
        rest = sep + 3;
    } else {
        return -1;
    }
    size_t hl = strcspn(rest, "/?#");
    char *hostport = ctl_strndup(rest, hl);
    ep->path = ctl_strndup(rest + hl, strcspn(rest + hl, "?#"));
    ep->url = xprintf("%s://%s", ep->tls ? "https" : "http", hostport);
    if (hostport[0] == '[') {
        char *end = strchr(hostport, ']');
        if (end == NULL) {
            return -1;
        }
        ep->host = ctl_strndup(hostport + 1, (size_t)(end - hostport - 1));
        ep->port = end[1] == ':' ? end + 2 : NULL;
    } else {
        char *colon = strrchr(hostport, ':');
        if (colon) {
            *colon = 0;
            ep->port = colon + 1;
        }
        ep->host = hostport;
    }
    if (ep->port == NULL || ep->port[0] == 0) {
        ep->port = ep->tls ? "443" : "80";
    }
    return 0;
}

static void set_endpoints(char **list, size_t n)
{
    v.eps = ctl_alloc(sizeof(*v.eps) * (n ? n : 1));
    v.n_eps = 0;
    for (size_t i = 0; i < n; i++) {
        if (parse_ep(list[i], &v.eps[v.n_eps]) != 0) {
            die_plain(1, xprintf("parse %s: unsupported URL", list[i]));
        }
        v.n_eps++;
    }
}

static const char *endpoints_joined(const char *sep)
{
    struct sbuf b;
    FILE *f = sb_open(&b);
    for (size_t i = 0; i < v.n_eps; i++) {
        fprintf(f, "%s%s%s", i ? sep : "", v.eps[i].url, v.eps[i].path);
    }
    return sb_done(&b);
}

/* ---- DNS SRV discovery (etcd: pkg/srv GetClient) ---------------------------- */

/* Go's resolver error text: "lookup NAME on SERVER:53: no such host". */
static char *srv_lookup(const char *name, char ***urls, size_t *n,
                        const char *scheme)
{
    unsigned char ans[8192];
    int len = res_query(name, ns_c_in, ns_t_srv, ans, sizeof(ans));
    char server[INET6_ADDRSTRLEN + 8] = "127.0.0.1:53";
    if (_res.nscount > 0) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &_res.nsaddr_list[0].sin_addr, a, sizeof(a));
        snprintf(server, sizeof(server), "%s:%d", a,
                 ntohs(_res.nsaddr_list[0].sin_port));
    }
    if (len < 0) {
        const char *why = h_errno == HOST_NOT_FOUND || h_errno == NO_DATA
                              ? "no such host"
                              : "server misbehaving";
        return xprintf("lookup %s on %s: %s", name, server, why);
    }
    ns_msg msg;
    if (ns_initparse(ans, len, &msg) != 0) {
        return xprintf("lookup %s on %s: cannot unmarshal DNS message", name,
                       server);
    }
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) != 0 ||
            ns_rr_type(rr) != ns_t_srv || ns_rr_rdlen(rr) < 7) {
            continue;
        }
        const unsigned char *rd = ns_rr_rdata(rr);
        unsigned port = (unsigned)rd[4] << 8 | rd[5];
        char target[NS_MAXDNAME];
        if (dn_expand(ns_msg_base(msg), ns_msg_end(msg), rd + 6, target,
                      sizeof(target)) < 0) {
            continue;
        }
        *urls = realloc(*urls, sizeof(char *) * (*n + 1));
        if (*urls == NULL) {
            ctl_die(EXIT_ERROR, "out of memory");
        }
        /* Go keeps the target's trailing dot */
        (*urls)[(*n)++] = xprintf("%s://%s.:%u", scheme, target, port);
    }
    return NULL;
}

static char **discover(const char *domain, size_t *n)
{
    const char *svc_name = getenv("ETCDCTL_DISCOVERY_SRV_NAME");
    char **urls = NULL;
    *n = 0;
    res_init();
    const char *suffix = svc_name && svc_name[0] ? xprintf("-%s", svc_name)
                                                 : "";
    char *e1 = srv_lookup(
        xprintf("_etcd-client-ssl%s._tcp.%s", suffix, domain), &urls, n,
        "https");
    char *e2 = srv_lookup(xprintf("_etcd-client%s._tcp.%s", suffix, domain),
                          &urls, n, "http");
    if (e1 && e2) {
        die_plain(1, xprintf("dns lookup errors: %s and %s", e1, e2));
    }
    char **out = ctl_alloc(sizeof(char *) * (*n + 1));
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        if (!v.insecure_discovery && strncmp(urls[i], "http://", 7) == 0) {
            fflush(stdout);
            fprintf(stderr, "ignoring discovered insecure endpoint ");
            go_quote(stderr, (const uint8_t *)urls[i], strlen(urls[i]));
            fputc('\n', stderr);
            continue;
        }
        out[k++] = urls[i];
    }
    free(urls);
    *n = k;
    return out;
}

/* ---- transport ------------------------------------------------------------------ */

static const char *openssl_err(void)
{
    unsigned long e = ERR_get_error();
    return e ? ERR_reason_error_string(e) : "unknown error";
}

/* getTransport (transport.TLSInfo.ClientConfig): exits with its errors
 * through `code` (cluster-health: handleError 4; others: plain 1). */
static void tls_setup(int handle)
{
    const char *ca = v.ca, *cert = v.cert, *key = v.key;
    if (ca == NULL || !ca[0]) {
        ca = getenv("ETCDCTL_CA_FILE");
    }
    if (cert == NULL || !cert[0]) {
        cert = getenv("ETCDCTL_CERT_FILE");
    }
    if (key == NULL || !key[0]) {
        key = getenv("ETCDCTL_KEY_FILE");
    }
    int have_cert = cert && cert[0], have_key = key && key[0];
    const char *fail = NULL;
    if (v.ssl != NULL) {
        return;
    }
    v.ssl = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(v.ssl, TLS1_2_VERSION);
    /* a server that closes after the answer without close_notify (keel
     * does) ends the body, as for Go's client reading to the close */
    SSL_CTX_set_options(v.ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (have_cert || have_key) {
        if (!have_cert || !have_key) {
            fail = xprintf("KeyFile and CertFile must both be present[key: "
                           "%s, cert: %s]",
                           have_key ? key : "", have_cert ? cert : "");
        } else if (access(cert, R_OK) != 0) {
            fail = xprintf("open %s: %s", cert, ctl_go_errno(errno));
        } else if (access(key, R_OK) != 0) {
            fail = xprintf("open %s: %s", key, ctl_go_errno(errno));
        } else if (SSL_CTX_use_certificate_chain_file(v.ssl, cert) != 1 ||
                   SSL_CTX_use_PrivateKey_file(v.ssl, key, SSL_FILETYPE_PEM) !=
                       1 ||
                   SSL_CTX_check_private_key(v.ssl) != 1) {
            fail = xprintf("tls: %s", openssl_err());
        }
    }
    if (fail == NULL && ca && ca[0]) {
        if (access(ca, R_OK) != 0) {
            fail = xprintf("open %s: %s", ca, ctl_go_errno(errno));
        } else if (SSL_CTX_load_verify_locations(v.ssl, ca, NULL) != 1) {
            fail = "failed to append certificates from PEM";
        }
    } else if (fail == NULL) {
        SSL_CTX_set_default_verify_paths(v.ssl);
    }
    if (fail != NULL) {
        if (handle) {
            handle_error_msg(V2_SERVER, fail);
        }
        die_plain(1, fail);
    }
    SSL_CTX_set_verify(v.ssl, SSL_VERIFY_PEER, NULL);
}

struct conn
{
    int fd;
    SSL *ssl;
};

/* Waits for fd to be ready for `events` until deadline (0: none).
 * 1 ready, 0 timed out. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int t = -1;
        if (deadline) {
            int64_t left = deadline - now_ms();
            if (left <= 0) {
                return 0;
            }
            t = (int)left;
        }
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, t);
        if (r > 0) {
            return 1;
        }
        if (r == 0) {
            return 0;
        }
        if (errno != EINTR) {
            return 1;
        }
    }
}

/* Returns bytes moved, 0 at EOF, -1 on error, -2 at the deadline. */
static ssize_t conn_io(struct conn *c, int wr, void *buf, size_t len,
                       int64_t deadline)
{
    for (;;) {
        ssize_t n;
        short ev = wr ? POLLOUT : POLLIN;
        if (c->ssl) {
            int r = wr ? SSL_write(c->ssl, buf, (int)len)
                       : SSL_read(c->ssl, buf, (int)len);
            if (r > 0) {
                return r;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_ZERO_RETURN) {
                return 0;
            }
            if (e == SSL_ERROR_WANT_READ) {
                ev = POLLIN;
            } else if (e == SSL_ERROR_WANT_WRITE) {
                ev = POLLOUT;
            } else {
                /* a peer that closes without close_notify: EOF */
                return (!wr && e == SSL_ERROR_SYSCALL) ? 0 : -1;
            }
        } else {
            n = wr ? write(c->fd, buf, len) : read(c->fd, buf, len);
            if (n >= 0) {
                return n;
            }
            if (errno != EAGAIN && errno != EINTR) {
                return -1;
            }
        }
        if (!wait_fd(c->fd, ev, deadline)) {
            return -2;
        }
    }
}

/* Go's crypto/tls / x509 text for a failed handshake. */
static const char *tls_fail_text(SSL *ssl, const char *host)
{
    long vr = SSL_get_verify_result(ssl);
    switch (vr) {
        case X509_V_OK:
            break;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            return xprintf("x509: certificate is not valid for %s", host);
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CERT_NOT_YET_VALID:
            return "x509: certificate has expired or is not yet valid";
        default:
            return "x509: certificate signed by unknown authority";
    }
    unsigned long e = ERR_peek_last_error();
    if (e && ERR_GET_REASON(e) == SSL_R_TLSV1_ALERT_UNKNOWN_CA) {
        return "remote error: tls: bad certificate";
    }
    if (e && ERR_GET_LIB(e) == ERR_LIB_SSL &&
        ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET) {
        return "remote error: tls: bad certificate";
    }
    return xprintf("tls: %s", e ? ERR_reason_error_string(e)
                                : "handshake failure");
}

/* Dial (+ TLS handshake) within `deadline`; 0 or -1 with *why. */
static int conn_open(const struct v2_ep *ep, struct conn *c, int64_t deadline,
                     int *ctx_expired, char **why)
{
    c->fd = -1;
    c->ssl = NULL;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    const char *hostport = ep->url + (ep->tls ? 8 : 7);
    if (strchr(hostport, ':') == NULL) {
        hostport = xprintf("%s:%s", hostport, ep->port);
    }
    int gai = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (gai != 0) {
        *why = xprintf("dial tcp: lookup %s: %s", ep->host,
                       gai == EAI_NONAME ? "no such host"
                                         : gai_strerror(gai));
        return -1;
    }
    int e = ECONNREFUSED, timed_out = 0;
    for (struct addrinfo *a = res; a && c->fd < 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC |
                                          SOCK_NONBLOCK,
                        0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            if (errno != EINPROGRESS) {
                e = errno;
                close(fd);
                continue;
            }
            if (!wait_fd(fd, POLLOUT, deadline)) {
                timed_out = 1;
                close(fd);
                break;
            }
            socklen_t sl = sizeof(e);
            int so = 0;
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
            if (so != 0) {
                e = so;
                close(fd);
                continue;
            }
        }
        c->fd = fd;
    }
    freeaddrinfo(res);
    if (c->fd < 0) {
        if (timed_out && v.deadline && now_ms() >= v.deadline) {
            *ctx_expired = 1;
        }
        *why = timed_out ? xprintf("dial tcp %s: i/o timeout", hostport)
                         : xprintf("dial tcp %s: connect: %s", hostport,
                                   ctl_go_errno(e));
        return -1;
    }
    if (!ep->tls) {
        return 0;
    }
    if (v.ssl == NULL) {
        tls_setup(0);
    }
    c->ssl = SSL_new(v.ssl);
    SSL_set_fd(c->ssl, c->fd);
    const char *name = v.server_name ? v.server_name : ep->host;
    struct in6_addr ip6;
    struct in_addr ip4;
    if (inet_pton(AF_INET, name, &ip4) == 1 ||
        inet_pton(AF_INET6, name, &ip6) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name);
    } else {
        SSL_set_tlsext_host_name(c->ssl, name);
        SSL_set1_host(c->ssl, name);
    }
    for (;;) {
        ERR_clear_error();
        int r = SSL_connect(c->ssl);
        if (r == 1) {
            return 0;
        }
        int se = SSL_get_error(c->ssl, r);
        short ev = se == SSL_ERROR_WANT_READ    ? POLLIN
                   : se == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                : 0;
        if (ev == 0) {
            *why = (char *)tls_fail_text(c->ssl, name);
            break;
        }
        if (!wait_fd(c->fd, ev, deadline)) {
            *why = "net/http: TLS handshake timeout";
            break;
        }
    }
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
    return -1;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
}

struct v2_resp
{
    int status;
    int has_index;
    uint64_t index; /* X-Etcd-Index */
    char *body;     /* NUL-terminated, in the arena */
    size_t len;
};

/* Dechunks a chunked body in place; returns its new length. */
static size_t dechunk(char *b, size_t len)
{
    size_t r = 0, w = 0;
    while (r < len) {
        char *end;
        unsigned long n = strtoul(b + r, &end, 16);
        char *eol = memchr(b + r, '\n', len - r);
        if (eol == NULL || n == 0) {
            break;
        }
        r = (size_t)(eol - b) + 1;
        if (n > len - r) {
            n = len - r;
        }
        memmove(b + w, b + r, n);
        w += n;
        r += n + 2;
    }
    b[w] = 0;
    return w;
}

static void print_curl(const char *method, const char *url, const char *body)
{
    if (!v.debug) {
        return;
    }
    fflush(stdout);
    fprintf(stderr, "cURL Command: curl -X %s %s", method, url);
    if (body != NULL) {
        fputs(" -d ", stderr);
        go_quote(stderr, (const uint8_t *)body, strlen(body));
    }
    fputc('\n', stderr);
}

/* One request to one endpoint (simpleHTTPClient.Do). 0 with *r;
 * -1 with *why (the endpoint failed); -2 the command's total timeout. */
static int http_once(const struct v2_ep *ep, const char *method,
                     const char *path, const char *query, const char *ctype,
                     const char *body, int wait, struct v2_resp *r,
                     char **why)
{
    struct sbuf ub;
    FILE *uf = sb_open(&ub);
    url_escape(uf, path, 1);
    if (query && query[0]) {
        fprintf(uf, "?%s", query);
    }
    char *target = sb_done(&ub);
    print_curl(method, xprintf("%s%s", ep->url, target), body);

    int64_t start = now_ms();
    int64_t total = wait ? 0 : v.deadline;
    int64_t dial = start + (int64_t)(v.total_timeout_ms && v.total_timeout_ms <
                                                               30000
                                         ? v.total_timeout_ms
                                         : 30000);
    int64_t header = (!wait && v.timeout_ms) ? start + (int64_t)v.timeout_ms
                                             : 0;
    int64_t hdl = header;
    int header_first = 1;
    if (total && (hdl == 0 || total < hdl)) {
        hdl = total;
        header_first = 0;
    }
    if (hdl && hdl < dial) {
        dial = hdl;
    }
    struct conn c;
    int ctx_expired = 0;
    if (conn_open(ep, &c, dial, &ctx_expired, why) != 0) {
        if (ctx_expired || (total && now_ms() >= total)) {
            return -2;
        }
        if (hdl && now_ms() >= hdl && header_first) {
            *why = xprintf("client: endpoint %s exceeded header timeout",
                           ep->url);
        }
        return -1;
    }
    struct sbuf rb;
    FILE *rf = sb_open(&rb);
    fprintf(rf, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Go-http-client/1.1"
                "\r\nConnection: close\r\n",
            method, target, ep->url + (ep->tls ? 8 : 7));
    if (v.auth) {
        fprintf(rf, "Authorization: %s\r\n", v.auth);
    }
    if (ctype) {
        fprintf(rf, "Content-Type: %s\r\n", ctype);
    }
    if (body) {
        fprintf(rf, "Content-Length: %zu\r\n", strlen(body));
    }
    fprintf(rf, "\r\n%s", body ? body : "");
    char *req = sb_done(&rb);
    size_t rlen = strlen(req), off = 0;
    int rc = 0;
    while (off < rlen) {
        ssize_t n = conn_io(&c, 1, req + off, rlen - off, hdl);
        if (n <= 0) {
            rc = n == -2 ? -3 : -1;
            break;
        }
        off += (size_t)n;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    char *hend = NULL;
    while (rc == 0) {
        if (cap - len < 4096) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                conn_close(&c);
                ctl_die(EXIT_ERROR, "out of memory");
            }
            buf = nb;
        }
        ssize_t n = conn_io(&c, 0, buf + len, cap - len - 1,
                            hend ? total : hdl);
        if (n == -2) {
            rc = -3;
        } else if (n < 0) {
            rc = -1;
        } else if (n == 0) {
            break;
        } else {
            len += (size_t)n;
            buf[len] = 0;
            if (hend == NULL) {
                hend = strstr(buf, "\r\n\r\n");
            }
        }
    }
    conn_close(&c);
    if (rc == -3) {
        /* the deadline that passed: --timeout while waiting for the
         * headers if it comes first, else the command's */
        free(buf);
        if (hend != NULL || !header_first) {
            return -2;
        }
        *why = xprintf("client: endpoint %s exceeded header timeout",
                       ep->url);
        return -1;
    }
    if (rc != 0 || hend == NULL) {
        free(buf);
        *why = rc != 0 ? xprintf("read tcp: connection reset by peer")
                       : xprintf("EOF");
        return -1;
    }
    buf[len] = 0;
    memset(r, 0, sizeof(*r));
    sscanf(buf, "HTTP/%*s %d", &r->status);
    *hend = 0;
    char *ix = strcasestr(buf, "\r\nX-Etcd-Index:");
    if (ix != NULL) {
        r->has_index = 1;
        r->index = strtoull(ix + 15, NULL, 10);
    }
    int chunked = strcasestr(buf, "\r\nTransfer-Encoding: chunked") != NULL;
    char *b = hend + 4;
    r->len = len - (size_t)(b - buf);
    if (chunked) {
        r->len = dechunk(b, r->len);
    }
    r->body = ctl_strndup(b, r->len);
    free(buf);
    return 0;
}

/* httpClusterClient.Do: each endpoint in turn. 0 with *r, or -1 with
 * `err` set (the ClusterError, or "context deadline exceeded"). */
static int v2_do(const char *method, const char *path, const char *query,
                 const char *ctype, const char *body, int wait,
                 struct v2_resp *r)
{
    err.n = 0;
    err_is_connection = 1;
    if (v.n_eps == 0) {
        err_set("client: no endpoints available");
        err_is_connection = 0;
        return -1;
    }
    for (size_t i = 0; i < v.n_eps; i++) {
        const struct v2_ep *ep = &v.eps[i];
        char *why = NULL;
        size_t pl = strlen(ep->path);
        while (pl && ep->path[pl - 1] == '/') {
            pl--;
        }
        char *full = xprintf("%.*s%s", (int)pl, ep->path, path);
        int rc = http_once(ep, method, full, query, ctype, body, wait, r, &why);
        if (rc == -2) {
            /* ctx.Err(): a net.Error whose Timeout() is true */
            err_set("context deadline exceeded");
            return -1;
        }
        if (rc == 0 && r->status / 100 != 5) {
            return 0;
        }
        if (rc == 0) {
            err_is_connection = 0;
            why = r->status == 500 || r->status == 503
                      ? xprintf("client: etcd member %s has no leader",
                                ep->url)
                      : xprintf("client: etcd member %s returns server error "
                                "[%s]",
                                ep->url,
                                r->status == 501   ? "Not Implemented"
                                : r->status == 502 ? "Bad Gateway"
                                : r->status == 504 ? "Gateway Timeout"
                                                   : "Internal Server Error");
        } else if (strncmp(why, "dial ", 5) != 0) {
            err_is_connection = 0; /* only dial errors are *net.OpError */
        }
        if (err.n < sizeof(err.list) / sizeof(err.list[0])) {
            err.list[err.n++] = why;
        }
    }
    err_cluster();
    return -1;
}

/* ---- client (etcdctl: mustNewClient / newClient) -------------------------- */

/* speakeasy.Ask: the prompt on stdout, echo off through /bin/stty on our
 * stdin (its complaints reach stderr, as with etcdctl), one line. */
static void run_stty(const char *arg)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/stty", "stty", arg, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) {
        waitpid(pid, NULL, 0);
    }
}

static char *ask_password(const char *prompt)
{
    fputs(prompt, stdout);
    fflush(stdout);
    run_stty("-echo");
    struct sbuf b;
    FILE *f = sb_open(&b);
    char ch;
    while (read(0, &ch, 1) == 1 && ch != '\n') {
        fputc(ch, f);
    }
    char *line = sb_done(&b);
    run_stty("echo");
    fputc('\n', stdout);
    fflush(stdout);
    /* strings.TrimSpace */
    size_t n = strlen(line);
    while (n && strchr(" \t\r\n\v\f", line[n - 1])) {
        line[--n] = 0;
    }
    while (*line && strchr(" \t\r\n\v\f", *line)) {
        line++;
    }
    return line;
}

/* getUsernamePassword: "user:pass", or "user" and a prompt. */
static void user_pass(const char *prompt, const char *flag, char **user,
                      char **pass)
{
    const char *colon = strchr(flag, ':');
    if (colon == NULL) {
        *user = ctl_strdup(flag);
        *pass = ask_password(prompt);
    } else {
        *user = ctl_strndup(flag, (size_t)(colon - flag));
        *pass = ctl_strdup(colon + 1);
    }
}

static char *base64(const char *s)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s);
    char *o = ctl_alloc(n / 3 * 4 + 8), *p = o;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i += 3) {
        unsigned x = (unsigned)u[i] << 16 |
                     (i + 1 < n ? (unsigned)u[i + 1] << 8 : 0) |
                     (i + 2 < n ? u[i + 2] : 0);
        *p++ = t[x >> 18 & 63];
        *p++ = t[x >> 12 & 63];
        *p++ = i + 1 < n ? t[x >> 6 & 63] : '=';
        *p++ = i + 2 < n ? t[x & 63] : '=';
    }
    return o;
}

static char **split(const char *s, const char *sep, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; (p = strstr(p, sep)) != NULL; p += strlen(sep)) {
        cap++;
    }
    char **out = ctl_alloc(sizeof(char *) * (cap + 1));
    *n = 0;
    for (;;) {
        const char *e = strstr(s, sep);
        if (e == NULL) {
            out[(*n)++] = ctl_strdup(s);
            return out;
        }
        out[(*n)++] = ctl_strndup(s, (size_t)(e - s));
        s = e + strlen(sep);
    }
}

static const char *first_set(const char *const *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (c[i] && c[i][0]) {
            return c[i];
        }
    }
    return NULL;
}

/* newClient: endpoints (SRV, flags, env), transport, credentials. */
static void new_client(void)
{
    const char *domain = v.discovery_srv;
    if (domain == NULL || !domain[0]) {
        domain = getenv("ETCDCTL_DISCOVERY_SRV");
    }
    v.insecure_discovery |= getenv("ETCDCTL_INSECURE_DISCOVERY") &&
                            getenv("ETCDCTL_INSECURE_DISCOVERY")[0];
    char **eps = NULL;
    size_t n = 0;
    if (domain && domain[0]) {
        eps = discover(domain, &n);
        if (!v.insecure_discovery) {
            v.server_name = domain;
        }
    }
    if (n == 0) {
        const char *c[] = {v.endpoints, getenv("ETCDCTL_ENDPOINTS"),
                           v.endpoint,  getenv("ETCDCTL_ENDPOINT"),
                           v.peers,     getenv("ETCDCTL_PEERS")};
        const char *s = first_set(c, 6);
        eps = split(s ? s : "http://127.0.0.1:2379,http://127.0.0.1:4001", ",",
                    &n);
    }
    set_endpoints(eps, n);
    int need_tls = 0;
    for (size_t i = 0; i < v.n_eps; i++) {
        need_tls |= v.eps[i].tls;
    }
    const char *tf[] = {v.ca, v.cert, v.key, getenv("ETCDCTL_CA_FILE"),
                        getenv("ETCDCTL_CERT_FILE"), getenv("ETCDCTL_KEY_FILE")};
    if (need_tls || first_set(tf, 6)) {
        tls_setup(0); /* Go builds the transport (and reads the files) */
    }
    const char *u = v.username;
    if (u == NULL || !u[0]) {
        u = getenv("ETCDCTL_USERNAME");
    }
    if (u && u[0]) {
        char *user, *pass;
        user_pass("Password: ", u, &user, &pass);
        v.auth = xprintf("Basic %s", base64(xprintf("%s:%s", user, pass)));
    }
}

/* encoding/json's error for a body that is not one JSON value (NULL when
 * it is): a server without the API answers "404 page not found". */
static const char *go_json_err(const struct v2_resp *r)
{
    const char *b = r->body;
    size_t len = r->len, i = 0;
    while (i < len && strchr(" \t\r\n", b[i])) {
        i++;
    }
    if (i == len) {
        return "unexpected end of JSON input";
    }
    json_error_t je;
    json_t *j = json_loadb(b + i, len - i,
                           JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK, &je);
    const char *where = "looking for beginning of value";
    size_t at = i;
    if (j != NULL) {
        json_decref(j);
        at = i + (size_t)je.position;
        while (at < len && strchr(" \t\r\n", b[at])) {
            at++;
        }
        if (at == len) {
            return NULL;
        }
        where = "after top-level value";
    }
    unsigned char c = (unsigned char)b[at];
    /* Go's quoteChar */
    const char *q = c == '\'' ? "'\\''"
                    : c == '\n' ? "'\\n'"
                    : c == '\t' ? "'\\t'"
                    : c == '\r' ? "'\\r'"
                    : (c < 0x20 || c >= 0x7f) ? xprintf("'\\x%02x'", c)
                                              : xprintf("'%c'", c);
    return xprintf("invalid character %s %s", q, where);
}

static json_t *parse_json(const struct v2_resp *r)
{
    json_error_t je;
    return json_loadb(r->body, r->len, JSON_DECODE_ANY, &je);
}

/* The members (GET /v2/members) into *out; 0, or -1 with `err` set. */
static int members_list(json_t **out)
{
    struct v2_resp r;
    if (v2_do("GET", "/v2/members", NULL, NULL, NULL, 0, &r) != 0) {
        return -1;
    }
    if (r.status != 200) {
        err_set(xprintf("unexpected status code %d", r.status));
        err_is_connection = 0;
        return -1;
    }
    json_t *j = parse_json(&r);
    json_t *m = json_object_get(j, "members");
    if (!json_is_array(m)) {
        json_decref(j);
        const char *je = go_json_err(&r);
        err_set(je ? je : "json: cannot unmarshal into []client.Member");
        err_is_connection = 0;
        return -1;
    }
    json_incref(m);
    json_decref(j);
    *out = m;
    return 0;
}

static void mem_free(void *p)
{
    json_decref(p);
}

/* mustNewClient (sync) / mustNewClientNoSync. */
static void must_client(int sync)
{
    new_client();
    if (!sync) {
        if (v.debug) {
            fprintf(stderr, "Cluster-Endpoints: %s\n", endpoints_joined(", "));
        }
        return;
    }
    if (!v.no_sync) {
        if (v.debug) {
            fprintf(stderr, "start to sync cluster using endpoints(%s)\n",
                    endpoints_joined(","));
        }
        start_total_timeout();
        json_t *ms = NULL;
        if (members_list(&ms) != 0) {
            if (err_is_connection) {
                handle_error(V2_BAD_CONNECTION);
            }
        } else {
            size_t i, k, n = 0;
            json_t *m, *u;
            json_array_foreach(ms, i, m)
            {
                n += json_array_size(json_object_get(m, "clientURLs"));
            }
            char **urls = ctl_alloc(sizeof(char *) * (n + 1));
            n = 0;
            json_array_foreach(ms, i, m)
            {
                json_array_foreach(json_object_get(m, "clientURLs"), k, u)
                {
                    urls[n++] = ctl_strdup(json_string_value(u));
                }
            }
            mem_free(ms);
            if (n == 0) {
                fprintf(stderr,
                        "etcd cluster has no published client endpoints.\n"
                        "Try '--no-sync' if you want to access non-published "
                        "client endpoints(%s).\n",
                        endpoints_joined(","));
                handle_error_msg(V2_SERVER, "client: no endpoints available");
            }
            set_endpoints(urls, n);
        }
        if (v.debug) {
            fprintf(stderr, "got endpoints(%s) after sync\n",
                    endpoints_joined(","));
        }
    }
    if (v.debug) {
        fprintf(stderr, "Cluster-Endpoints: %s\n", endpoints_joined(", "));
    }
}

/* ---- output (format.go printResponseKey) ------------------------------------ */

static const char *jstr(json_t *n, const char *field)
{
    const char *s = json_string_value(json_object_get(n, field));
    return s ? s : "";
}

static long long jint(json_t *n, const char *field)
{
    return (long long)json_integer_value(json_object_get(n, field));
}

static void gostr(FILE *f, const char *s)
{
    go_json_string(f, s, strlen(s));
}

/* A []string as encoding/json writes it (nil: null). */
static const char *json_str_array(char **s, size_t n)
{
    if (n == 0) {
        return "null";
    }
    struct sbuf b;
    FILE *f = sb_open(&b);
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            fputc(',', f);
        }
        gostr(f, s[i]);
    }
    fputc(']', f);
    return sb_done(&b);
}

/* client.Node as encoding/json writes it. */
static void node_json(FILE *f, json_t *n)
{
    if (!json_is_object(n)) {
        fputs("null", f);
        return;
    }
    fputs("{\"key\":", f);
    gostr(f, jstr(n, "key"));
    if (json_is_true(json_object_get(n, "dir"))) {
        fputs(",\"dir\":true", f);
    }
    fputs(",\"value\":", f);
    gostr(f, jstr(n, "value"));
    fputs(",\"nodes\":", f);
    json_t *nodes = json_object_get(n, "nodes");
    if (json_is_array(nodes)) {
        size_t i;
        json_t *c;
        fputc('[', f);
        json_array_foreach(nodes, i, c)
        {
            if (i) {
                fputc(',', f);
            }
            node_json(f, c);
        }
        fputc(']', f);
    } else {
        fputs("null", f);
    }
    fprintf(f, ",\"createdIndex\":%lld,\"modifiedIndex\":%lld",
            jint(n, "createdIndex"), jint(n, "modifiedIndex"));
    const char *exp = json_string_value(json_object_get(n, "expiration"));
    if (exp != NULL) {
        fputs(",\"expiration\":", f);
        gostr(f, exp);
    }
    if (jint(n, "ttl") != 0) {
        fprintf(f, ",\"ttl\":%lld", jint(n, "ttl"));
    }
    fputc('}', f);
}

struct keys_resp
{
    json_t *body;
    uint64_t index;
};

static void print_response(const struct keys_resp *r)
{
    json_t *node = json_object_get(r->body, "node");
    json_t *prev = json_object_get(r->body, "prevNode");
    const char *action = jstr(r->body, "action");
    int del = strcmp(action, "delete") == 0;
    if (strcmp(v.output, "simple") == 0) {
        if (!del) {
            printf("%s\n", jstr(node, "value"));
        } else {
            printf("PrevNode.Value: %s\n", jstr(prev, "value"));
        }
    } else if (strcmp(v.output, "extended") == 0) {
        printf("Key: %s\n", jstr(node, "key"));
        printf("Created-Index: %lld\n", jint(node, "createdIndex"));
        printf("Modified-Index: %lld\n", jint(node, "modifiedIndex"));
        if (json_is_object(prev)) {
            printf("PrevNode.Value: %s\n", jstr(prev, "value"));
        }
        printf("TTL: %lld\n", jint(node, "ttl"));
        printf("Index: %" PRIu64 "\n", r->index);
        if (!del) {
            printf("\n%s\n", jstr(node, "value"));
        }
    } else if (strcmp(v.output, "json") == 0) {
        fputs("{\"action\":", stdout);
        gostr(stdout, action);
        fputs(",\"node\":", stdout);
        node_json(stdout, node);
        fputs(",\"prevNode\":", stdout);
        node_json(stdout, prev);
        fputs("}\n", stdout);
    } else {
        fflush(stdout);
        fprintf(stderr, "Unsupported output format: %s\n", v.output);
    }
    fflush(stdout);
}

/* ---- keys API (client/keys.go) ---------------------------------------------- */

/* url.Values.Encode: key=value pairs sorted by key. `kv` is NULL-ended
 * name/value pairs; a NULL value leaves the pair out. */
static char *encode_values(const char *const *kv)
{
    size_t n = 0;
    while (kv[2 * n]) {
        n++;
    }
    size_t order[16];
    size_t m = 0;
    for (size_t i = 0; i < n && m < 16; i++) {
        if (kv[2 * i + 1] == NULL) {
            continue;
        }
        size_t j = m++;
        while (j > 0 && strcmp(kv[2 * order[j - 1]], kv[2 * i]) > 0) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    struct sbuf b;
    FILE *f = sb_open(&b);
    for (size_t k = 0; k < m; k++) {
        fprintf(f, "%s", k ? "&" : "");
        url_escape(f, kv[2 * order[k]], 0);
        fputc('=', f);
        url_escape(f, kv[2 * order[k] + 1], 0);
    }
    return sb_done(&b);
}

static char *keys_path(const char *key)
{
    return canonical_path(xprintf("/v2/keys%s%s",
                                  key[0] && key[0] != '/' ? "/" : "", key));
}

/* A keys request; exits through handleError on failure. Returns 1 with
 * *out; 0 for a watch (`wait`) answered 200 with an empty body, which the
 * client asks again (etcd: httpWatcher.Next on ErrEmptyBody). */
static int keys_call(const char *method, const char *key, const char *query,
                     const char *form, int wait, struct keys_resp *out)
{
    struct v2_resp r;
    if (!wait) {
        start_total_timeout();
    }
    if (v2_do(method, keys_path(key), query,
              form ? "application/x-www-form-urlencoded" : NULL, form, wait,
              &r) != 0) {
        handle_error(V2_SERVER);
    }
    if (r.status == 200 || r.status == 201) {
        if (r.len == 0) {
            if (wait) {
                return 0;
            }
            handle_error_msg(V2_SERVER, "client: response body is empty");
        }
        out->body = parse_json(&r);
        out->index = r.index;
        if (!json_is_object(out->body)) {
            handle_error_msg(V2_SERVER, "client: response is invalid json. "
                                        "The endpoint is probably not valid "
                                        "etcd cluster endpoint");
        }
        return 1;
    }
    json_t *e = parse_json(&r);
    if (!json_is_object(e)) {
        handle_error_msg(V2_SERVER, "client: response is invalid json. The "
                                    "endpoint is probably not valid etcd "
                                    "cluster endpoint");
    }
    handle_error_msg(V2_SERVER,
                     xprintf("%lld: %s (%s) [%lld]", jint(e, "errorCode"),
                             jstr(e, "message"), jstr(e, "cause"),
                             jint(e, "index")));
}

/* ---- command-line parsing (urfave/cli v1 over Go's flag package) ----------- */

static const char *help_text(const char *key)
{
    for (const struct ctl_v2_help *h = ctl_v2_help; h->key; h++) {
        if (strcmp(h->key, key) == 0) {
            return h->text;
        }
    }
    return NULL;
}

_Noreturn static void print_help(const char *key)
{
    fputs(help_text(key), stdout);
    exit(V2_OK);
}

/* urfave/cli on a flag error: "Incorrect Usage<sep> <err>", the help of
 * `key` on stdout, the error on stderr, exit 1 ("." for the app's own
 * flags, ":" for a command's). */
_Noreturn static void usage_error(const char *key, const char *msg)
{
    printf("Incorrect Usage%s %s\n\n%s", key[0] ? ":" : ".", msg,
           help_text(key));
    fflush(stdout);
    fprintf(stderr, "%s\n", msg);
    exit(1);
}

/* flag.Int's strconv.ParseInt(s, 0, 64) */
static int go_parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    const char *p = s[0] == '+' || s[0] == '-' ? s + 1 : s;
    if (*p == 0 || strchr(p, '_') != NULL) {
        return -1;
    }
    *out = strtoll(s, &end, 0);
    return *end || errno ? -1 : 0;
}

static int go_parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0 || strcmp(s, f[i]) == 0) {
            *out = strcmp(s, t[i]) == 0;
            return 0;
        }
    }
    return -1;
}

struct cflag
{
    const char *names; /* "recursive,r" */
    int has_value;     /* 1: an int, 2: a string */
    const char *val; /* the value, "true" for a set bool */
    char **multi;    /* StringSlice values */
    size_t n_multi;
};

static int cflag_is(const struct cflag *f, const char *name, size_t len)
{
    const char *p = f->names;
    for (;;) {
        size_t l = strcspn(p, ",");
        if (l == len && strncmp(p, name, len) == 0) {
            return 1;
        }
        if (p[l] == 0) {
            return 0;
        }
        p += l + 1;
    }
}

static struct cflag *cflag_find(struct cflag *fl, const char *arg)
{
    if (arg[0] != '-' || arg[1] == 0) {
        return NULL;
    }
    const char *name = arg + 1 + (arg[1] == '-');
    size_t len = strcspn(name, "=");
    for (; fl && fl->names; fl++) {
        if (cflag_is(fl, name, len)) {
            return fl;
        }
    }
    return NULL;
}

static int is_help(const char *a)
{
    const char *name = a[0] == '-' ? a + 1 + (a[1] == '-') : "";
    size_t len = strcspn(name, "=");
    return a[0] == '-' && ((len == 4 && strncmp(name, "help", 4) == 0) ||
                           (len == 1 && name[0] == 'h'));
}

/* reorderArgs then flag.Parse: returns the positional arguments; --help
 * prints the help of `key`; flag errors are reported as urfave/cli does. */
static char **parse_cmd_flags(struct cflag *fl, const char *key, int argc,
                              char **argv, int *nargs)
{
    char **re = ctl_alloc(sizeof(char *) * ((size_t)argc + 2));
    char **rest = ctl_alloc(sizeof(char *) * ((size_t)argc + 2));
    int nre = 0, nrest = 0, may_value = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (may_value && cflag_find(fl, a) == NULL && !is_help(a)) {
            may_value = 0;
            re[nre++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            memmove(rest + 1, rest, sizeof(char *) * (size_t)nrest);
            rest[0] = argv[i];
            nrest++;
            for (int j = i + 1; j < argc; j++) {
                rest[nrest++] = argv[j];
            }
            break;
        } else if (cflag_find(fl, a) != NULL || is_help(a)) {
            re[nre++] = argv[i];
            may_value = strchr(a, '=') == NULL;
        } else {
            rest[nrest++] = argv[i];
        }
    }
    for (int j = 0; j < nrest; j++) {
        re[nre++] = rest[j];
    }
    int i = 0;
    for (; i < nre; i++) {
        const char *a = re[i];
        if (a[0] != '-' || a[1] == 0) {
            break;
        }
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        struct cflag *f = cflag_find(fl, a);
        const char *name = a + 1 + (a[1] == '-');
        int nl = (int)strcspn(name, "=");
        const char *eq = strchr(a, '=');
        const char *val = eq ? eq + 1 : NULL;
        int b = 1;
        if (is_help(a) && (val == NULL || go_parse_bool(val, &b) == 0)) {
            if (b) {
                print_help(key);
            }
            continue;
        }
        if (f == NULL) {
            usage_error(key, xprintf("flag provided but not defined: -%.*s",
                                     nl, name));
        }
        if (f->has_value && val == NULL) {
            if (i + 1 >= nre) {
                usage_error(key, xprintf("flag needs an argument: -%s", name));
            }
            val = re[++i];
        }
        long long iv;
        if (f->has_value && !(f->has_value == 2) && go_parse_int(val, &iv) != 0) {
            usage_error(key, xprintf("invalid value \"%s\" for flag -%.*s: "
                                     "parse error",
                                     val, nl, name));
        }
        if (!f->has_value && val != NULL) {
            if (go_parse_bool(val, &b) != 0) {
                usage_error(key, xprintf("invalid boolean value \"%s\" for "
                                         "-%.*s: parse error",
                                         val, nl, name));
            }
            val = b ? "true" : "false";
        }
        if (!f->has_value && val == NULL) {
            val = "true";
        }
        f->val = val;
        if (f->has_value) {
            char **m = ctl_alloc(sizeof(char *) * (f->n_multi + 1));
            if (f->n_multi) {
                memcpy(m, f->multi, sizeof(char *) * f->n_multi);
            }
            m[f->n_multi++] = (char *)val;
            f->multi = m;
        }
    }
    *nargs = nre - i;
    return re + i;
}

static const char *fl_str(struct cflag *fl, const char *name)
{
    for (; fl->names; fl++) {
        if (cflag_is(fl, name, strlen(name))) {
            return fl->val ? fl->val : "";
        }
    }
    return "";
}

static int fl_bool(struct cflag *fl, const char *name)
{
    return strcmp(fl_str(fl, name), "true") == 0;
}

/* (validated when parsed) */
static long long fl_int(struct cflag *fl, const char *name)
{
    long long x = 0;
    go_parse_int(fl_str(fl, name), &x);
    return x;
}

/* ---- key commands ---------------------------------------------------------- */

/* argOrStdin: args[i], else all of stdin (empty: no value). */
static const char *arg_or_stdin(int argc, char **argv, int i)
{
    if (i < argc) {
        return argv[i];
    }
    struct sbuf b;
    FILE *f = sb_open(&b);
    char buf[4096];
    ssize_t n;
    while ((n = read(0, buf, sizeof(buf))) > 0) {
        fwrite(buf, 1, (size_t)n, f);
    }
    char *s = sb_done(&b);
    return s[0] ? s : NULL;
}

/* an IntFlag sent as uint64 when not 0 (prevIndex: uint64(int)) */
static const char *num_or_null(long long x)
{
    return x ? xprintf("%llu", (unsigned long long)x) : NULL;
}

static void rprint(json_t *n, int p)
{
    int dir = json_is_true(json_object_get(n, "dir"));
    printf(dir && p ? "%s/\n" : "%s\n", jstr(n, "key"));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(n, "nodes"), i, c)
    {
        rprint(c, p);
    }
}

static int node_is_dir(const struct keys_resp *r)
{
    return json_is_true(
        json_object_get(json_object_get(r->body, "node"), "dir"));
}

/* ETCD_WATCH_* for exec-watch's command (environResponse). */
static void exec_for(const struct keys_resp *r, char **cmd)
{
    json_t *node = json_object_get(r->body, "node");
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        ctl_die(EXIT_ERROR, "pipe: %s", ctl_go_errno(errno));
    }
    /* exec.LookPath at exec.Command: a bare name is looked up in $PATH */
    const char *path = cmd[0];
    char *fail = NULL;
    if (strchr(path, '/') == NULL) {
        const char *pe = getenv("PATH");
        size_t n;
        char **dirs = split(pe ? pe : "", ":", &n);
        path = NULL;
        for (size_t i = 0; i < n && path == NULL; i++) {
            char *cand = xprintf("%s/%s", dirs[i][0] ? dirs[i] : ".", cmd[0]);
            if (access(cand, X_OK) == 0) {
                path = cand;
            }
        }
        if (path == NULL) {
            fail = xprintf("exec: \"%s\": executable file not found in $PATH",
                           cmd[0]);
        }
    }
    if (fail == NULL) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("ETCD_WATCH_ACTION", jstr(r->body, "action"), 1);
            char idx[32];
            snprintf(idx, sizeof(idx), "%lld", jint(node, "modifiedIndex"));
            setenv("ETCD_WATCH_MODIFIED_INDEX", idx, 1);
            setenv("ETCD_WATCH_KEY", jstr(node, "key"), 1);
            setenv("ETCD_WATCH_VALUE", jstr(node, "value"), 1);
            signal(SIGINT, SIG_DFL);
            signal(SIGCHLD, SIG_DFL);
            execv(path, cmd);
            int e = errno;
            if (write(pfd[1], &e, sizeof(e)) < 0) {
                _exit(127);
            }
            _exit(127);
        }
        close(pfd[1]);
        int e = 0;
        if (pid < 0) {
            e = errno;
        } else if (read(pfd[0], &e, sizeof(e)) != (ssize_t)sizeof(e)) {
            e = 0;
        }
        close(pfd[0]);
        if (e != 0) {
            fail = xprintf("fork/exec %s: %s", path, ctl_go_errno(e));
        }
    } else {
        close(pfd[0]);
        close(pfd[1]);
    }
    if (fail != NULL) {
        fflush(stdout);
        fputs(fail, stderr); /* etcdctl prints it without a newline */
        exit(1);
    }
}

static void on_sigint(int sig)
{
    (void)sig;
    _exit(0);
}

/* watch and exec-watch (watch_command.go, exec_watch_command.go). */
static void watch_loop(const char *key, long long after, int recursive,
                       int forever, char **cmd)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    if (cmd != NULL) {
        /* the commands run in the background, never waited for */
        struct sigaction sc = {.sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT};
        sigemptyset(&sc.sa_mask);
        sigaction(SIGCHLD, &sc, NULL);
    }
    unsigned long long wait_index = after ? (unsigned long long)after + 1 : 0;
    for (;;) {
        const char *idx = wait_index ? xprintf("%llu", wait_index) : NULL;
        const char *q[] = {"wait",      "true",
                           "waitIndex", idx ? idx : "0",
                           "recursive", recursive ? "true" : "false",
                           NULL};
        struct keys_resp r;
        if (!keys_call("GET", key, encode_values(q), NULL, 1, &r)) {
            continue;
        }
        json_t *node = json_object_get(r.body, "node");
        wait_index = (unsigned long long)jint(node, "modifiedIndex") + 1;
        if (node_is_dir(&r)) {
            if (cmd != NULL) {
                fflush(stdout);
                fprintf(stderr, "Ignored dir %s change\n", jstr(node, "key"));
            }
            json_decref(r.body);
            continue;
        }
        if (cmd != NULL) {
            exec_for(&r, cmd);
        } else {
            if (recursive) {
                printf("[%s] %s\n", jstr(r.body, "action"), jstr(node, "key"));
            }
            print_response(&r);
        }
        json_decref(r.body);
        if (cmd == NULL && !forever) {
            return;
        }
    }
}

static void cmd_keys(const char *cmd, struct cflag *fl, int argc, char **argv)
{
    must_client(1);
    if (strcmp(cmd, "watch") == 0) {
        if (argc == 0) {
            handle_error_msg(V2_BAD_ARGS, "key required");
        }
        watch_loop(argv[0], fl_int(fl, "after-index"), fl_bool(fl, "recursive"),
                   fl_bool(fl, "forever"), NULL);
        return;
    }
    if (strcmp(cmd, "exec-watch") == 0) {
        if (argc < 2) {
            handle_error_msg(V2_BAD_ARGS, "key and command to exec required");
        }
        int sep = 0;
        for (int i = 1; i < argc; i++) {
            sep |= strcmp(argv[i], "--") == 0;
        }
        const char *key;
        char **cmdv = ctl_alloc(sizeof(char *) * ((size_t)argc + 1));
        if (sep) {
            key = argv[0];
            memcpy(cmdv, argv + 2, sizeof(char *) * (size_t)(argc - 2));
        } else {
            key = argv[argc - 1];
            memcpy(cmdv, argv, sizeof(char *) * (size_t)(argc - 1));
        }
        if (cmdv[0] == NULL) {
            /* etcdctl indexes an empty slice here and panics */
            die_plain(2, "panic: runtime error: index out of range [0] with "
                         "length 0");
        }
        watch_loop(key, fl_int(fl, "after-index"), fl_bool(fl, "recursive"), 0,
                   cmdv);
        return;
    }
    struct keys_resp r;
    int simple = strcmp(v.output, "simple") == 0;
    if (strcmp(cmd, "ls") == 0) {
        const char *q[] = {"recursive", fl_bool(fl, "recursive") ? "true" : "false",
                           "sorted",    fl_bool(fl, "sort") ? "true" : "false",
                           "quorum",    fl_bool(fl, "quorum") ? "true" : "false",
                           NULL};
        keys_call("GET", argc ? argv[0] : "/", encode_values(q), NULL, 0, &r);
        if (!simple) {
            print_response(&r);
        } else {
            json_t *node = json_object_get(r.body, "node");
            if (!node_is_dir(&r)) {
                printf("%s\n", jstr(node, "key"));
            }
            size_t i;
            json_t *c;
            json_array_foreach(json_object_get(node, "nodes"), i, c)
            {
                rprint(c, fl_bool(fl, "p"));
            }
        }
        json_decref(r.body);
        return;
    }
    if (argc == 0) {
        handle_error_msg(V2_BAD_ARGS, "key required");
    }
    const char *key = argv[0];
    long long ttl_s = fl_int(fl, "ttl");
    const char *ttl = ttl_s > 0 ? xprintf("%lld", ttl_s) : NULL;
    if (strcmp(cmd, "set") == 0 || strcmp(cmd, "mk") == 0 ||
        strcmp(cmd, "update") == 0) {
        const char *value = arg_or_stdin(argc, argv, 1);
        if (value == NULL) {
            handle_error_msg(V2_BAD_ARGS, "value required");
        }
        const char *form[] = {"value", value, "ttl", ttl, NULL};
        if (strcmp(cmd, "mk") == 0 && fl_bool(fl, "in-order")) {
            keys_call("POST", key, NULL, encode_values(form), 0, &r);
        } else {
            const char *sv = fl_str(fl, "swap-with-value");
            const char *q[] = {
                "prevValue", sv[0] ? sv : NULL,
                "prevIndex", num_or_null(fl_int(fl, "swap-with-index")),
                "prevExist", strcmp(cmd, "mk") == 0       ? "false"
                             : strcmp(cmd, "update") == 0 ? "true"
                                                          : NULL,
                NULL};
            keys_call("PUT", key, encode_values(q), encode_values(form), 0,
                      &r);
        }
        print_response(&r);
    } else if (strcmp(cmd, "get") == 0) {
        const char *q[] = {"recursive", "false",
                           "sorted",    fl_bool(fl, "sort") ? "true" : "false",
                           "quorum",    fl_bool(fl, "quorum") ? "true" : "false",
                           NULL};
        keys_call("GET", key, encode_values(q), NULL, 0, &r);
        if (node_is_dir(&r)) {
            fflush(stdout);
            fprintf(stderr, "%s: is a directory\n",
                    jstr(json_object_get(r.body, "node"), "key"));
            exit(1);
        }
        print_response(&r);
    } else if (strcmp(cmd, "mkdir") == 0 || strcmp(cmd, "updatedir") == 0 ||
               strcmp(cmd, "setdir") == 0) {
        const char *q[] = {"dir", "true", "prevExist",
                           cmd[0] == 'm'   ? "false"
                           : cmd[0] == 'u' ? "true"
                                           : NULL,
                           NULL};
        const char *form[] = {"ttl", ttl, NULL};
        keys_call("PUT", key, encode_values(q), encode_values(form), 0, &r);
        if (!simple) {
            print_response(&r);
        }
    } else { /* rm, rmdir */
        int rmdir = strcmp(cmd, "rmdir") == 0;
        const char *wv = fl_str(fl, "with-value");
        const char *q[] = {
            "prevValue", !rmdir && wv[0] ? wv : NULL,
            "prevIndex", rmdir ? NULL : num_or_null(fl_int(fl, "with-index")),
            "dir",       rmdir || fl_bool(fl, "dir") ? "true" : NULL,
            "recursive", !rmdir && fl_bool(fl, "recursive") ? "true" : NULL,
            NULL};
        keys_call("DELETE", key, encode_values(q), NULL, 0, &r);
        if (!node_is_dir(&r) || !simple) {
            print_response(&r);
        }
    }
    json_decref(r.body);
}

/* ---- member, cluster-health (member_commands.go, cluster_health.go) -------- */

static const char *join_json_strings(json_t *arr, const char *sep)
{
    struct sbuf b;
    FILE *f = sb_open(&b);
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s)
    {
        fprintf(f, "%s%s", i ? sep : "", json_string_value(s));
    }
    return sb_done(&b);
}

/* types.NewURLs: validated, sorted, as a JSON array. */
static char *peer_urls_json(char **urls, size_t n)
{
    if (n == 0) {
        err_set("no valid URLs given");
        return NULL;
    }
    char **u = ctl_alloc(sizeof(char *) * n);
    for (size_t i = 0; i < n; i++) {
        const char *in = urls[i];
        while (*in && strchr(" \t\r\n", *in)) {
            in++;
        }
        char *s = ctl_strdup(in);
        size_t l = strlen(s);
        while (l && strchr(" \t\r\n", s[l - 1])) {
            s[--l] = 0;
        }
        const char *sep = strstr(s, "://");
        size_t sl = sep ? (size_t)(sep - s) : 0;
        if (sep == NULL ||
            !((sl == 4 && strncmp(s, "http", 4) == 0) ||
              (sl == 5 && strncmp(s, "https", 5) == 0) ||
              (sl == 4 && strncmp(s, "unix", 4) == 0) ||
              (sl == 5 && strncmp(s, "unixs", 5) == 0))) {
            err_set(xprintf("URL scheme must be http, https, unix, or unixs: "
                            "%s",
                            s));
            return NULL;
        }
        const char *host = sep + 3;
        size_t hl = strcspn(host, "/?#");
        const char *colon = memrchr(host, ':', hl);
        const char *rb = memrchr(host, ']', hl);
        if (colon == NULL || (rb && colon < rb)) {
            err_set(xprintf("URL address does not have the form "
                            "\"host:port\": %s",
                            s));
            return NULL;
        }
        if (host[hl] == '/') {
            err_set(xprintf("URL must not contain a path: %s", s));
            return NULL;
        }
        u[i] = s;
        for (size_t j = i; j > 0 && strcmp(u[j - 1], u[j]) > 0; j--) {
            char *t = u[j];
            u[j] = u[j - 1];
            u[j - 1] = t;
        }
    }
    return xprintf("{\"peerURLs\":%s}", json_str_array(u, n));
}

/* A member API answer's {"message"} for the listed statuses, else
 * "unexpected status code N"; 0 when the status is `ok`. */
static int members_status(const struct v2_resp *r, int ok, int msg1, int msg2)
{
    if (r->status == ok) {
        return 0;
    }
    if (r->status == msg1 || r->status == msg2) {
        json_t *j = parse_json(r);
        err_set(jstr(j, "message"));
        json_decref(j);
    } else {
        err_set(xprintf("unexpected status code %d", r->status));
    }
    return -1;
}

static void cmd_member(const char *sub, int argc, char **argv)
{
    json_t *ms = NULL;
    struct v2_resp r;
    if (strcmp(sub, "list") == 0) {
        if (argc != 0) {
            die_plain(1, "No arguments accepted");
        }
        must_client(1);
        start_total_timeout();
        if (members_list(&ms) != 0) {
            die_err();
        }
        if (v2_do("GET", "/v2/members/leader", NULL, NULL, NULL, 0, &r) != 0 ||
            members_status(&r, 200, 0, 0) != 0) {
            die_plain(1, xprintf("Failed to get leader:  %s", err.msg));
        }
        json_t *leader = parse_json(&r);
        size_t i;
        json_t *m;
        json_array_foreach(ms, i, m)
        {
            const char *id = jstr(m, "id");
            if (jstr(m, "name")[0] == 0) {
                printf("%s[unstarted]: peerURLs=%s\n", id,
                       join_json_strings(json_object_get(m, "peerURLs"), ","));
            } else {
                printf("%s: name=%s peerURLs=%s clientURLs=%s isLeader=%s\n",
                       id, jstr(m, "name"),
                       join_json_strings(json_object_get(m, "peerURLs"), ","),
                       join_json_strings(json_object_get(m, "clientURLs"), ","),
                       strcmp(id, jstr(leader, "id")) == 0 ? "true" : "false");
            }
        }
        json_decref(leader);
    } else if (strcmp(sub, "add") == 0) {
        if (argc != 2) {
            die_plain(1, "Provide a name and a single member peerURL");
        }
        must_client(1);
        start_total_timeout();
        char *body = peer_urls_json(argv + 1, 1);
        if (body == NULL) {
            die_err();
        }
        if (v2_do("POST", "/v2/members", NULL, "application/json", body, 0,
                  &r) != 0 ||
            members_status(&r, 201, 409, 409) != 0) {
            die_err();
        }
        json_t *nm = parse_json(&r);
        const char *new_id = ctl_strdup(jstr(nm, "id"));
        json_decref(nm);
        printf("Added member named %s with ID %s to cluster\n", argv[0],
               new_id);
        if (members_list(&ms) != 0) {
            die_err();
        }
        struct sbuf b;
        FILE *f = sb_open(&b);
        size_t i, k, n = 0;
        json_t *m, *u;
        json_array_foreach(ms, i, m)
        {
            const char *name = strcmp(jstr(m, "id"), new_id) == 0
                                   ? argv[0]
                                   : jstr(m, "name");
            json_array_foreach(json_object_get(m, "peerURLs"), k, u)
            {
                fprintf(f, "%s%s=%s", n++ ? "," : "", name,
                        json_string_value(u));
            }
        }
        char *conf = sb_done(&b);
        printf("\nETCD_NAME=");
        go_quote(stdout, (const uint8_t *)argv[0], strlen(argv[0]));
        printf("\nETCD_INITIAL_CLUSTER=");
        go_quote(stdout, (const uint8_t *)conf, strlen(conf));
        printf("\nETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
    } else if (strcmp(sub, "remove") == 0) {
        if (argc != 1) {
            die_plain(1, "Provide a single member ID");
        }
        must_client(1);
        start_total_timeout();
        if (members_list(&ms) != 0) {
            die_plain(1, xprintf("Error while verifying ID against known "
                                 "members: %s",
                                 err.msg));
        }
        int found = 0;
        size_t i;
        json_t *m;
        json_array_foreach(ms, i, m)
        {
            found |= strcmp(jstr(m, "id"), argv[0]) == 0;
            if (strcmp(jstr(m, "name"), argv[0]) == 0) {
                fflush(stdout);
                fprintf(stderr,
                        "Found a member named %s; if this is correct, please "
                        "use its ID, eg:\n\tetcdctl member remove %s\n",
                        jstr(m, "name"), jstr(m, "id"));
                fprintf(stderr,
                        "For more details, read the documentation at "
                        "https://github.com/etcd-io/etcd/blob/master/"
                        "Documentation/runtime-configuration.md#remove-a-"
                        "member\n\n");
            }
        }
        if (!found) {
            die_plain(1, xprintf("Couldn't find a member in the cluster with "
                                 "an ID of %s.",
                                 argv[0]));
        }
        if (v2_do("DELETE", path_join("/v2/members", argv[0]), NULL, NULL,
                  NULL, 0, &r) != 0 ||
            (r.status != 410 && members_status(&r, 204, 0, 0) != 0)) {
            fflush(stdout);
            fprintf(stderr, "Received an error trying to remove member %s: %s",
                    argv[0], err.msg);
            exit(1);
        }
        printf("Removed member %s from cluster\n", argv[0]);
    } else if (strcmp(sub, "update") == 0) {
        if (argc != 2) {
            die_plain(1, "Provide an ID and a list of comma separated peerURL "
                         "(0xabcd http://example.com,http://example1.com)");
        }
        must_client(1);
        start_total_timeout();
        size_t n;
        char **urls = split(argv[1], ",", &n);
        char *body = peer_urls_json(urls, n);
        if (body == NULL) {
            die_err();
        }
        if (v2_do("PUT", path_join("/v2/members", argv[0]), NULL,
                  "application/json", body, 0, &r) != 0 ||
            members_status(&r, 204, 404, 409) != 0) {
            die_err();
        }
        printf("Updated member with ID %s in cluster\n", argv[0]);
    } else {
        die_plain(3, xprintf("No help topic for '%s'", sub));
    }
    if (ms) {
        json_decref(ms);
    }
}

/* GET <url>/health as http.Client.Get; 0 with *healthy, or -1 with *why. */
static int health_get(const char *url, int *healthy, char **why)
{
    struct v2_ep ep;
    if (parse_ep(url, &ep) != 0) {
        *why = xprintf("Get \"%s/health\": unsupported protocol scheme", url);
        return -1;
    }
    struct v2_resp r;
    v.deadline = 0;
    uint64_t keep = v.timeout_ms;
    v.timeout_ms = 0; /* http.Client{} has no timeout */
    int rc = http_once(&ep, "GET", xprintf("%s/health", ep.path), NULL, NULL,
                       NULL, 1, &r, why);
    v.timeout_ms = keep;
    if (rc != 0) {
        *why = xprintf("Get \"%s/health\": %s", url, *why);
        return -1;
    }
    json_t *j = parse_json(&r);
    json_t *h = json_object_get(j, "health");
    if (!json_is_object(j)) {
        json_decref(j);
        *why = (char *)go_json_err(&r);
        if (*why == NULL) {
            *why = "json: cannot unmarshal into struct { Health bool }";
        }
        return -1;
    }
    *healthy = (json_is_string(h) && strcmp(json_string_value(h), "true") == 0) ||
               json_is_true(h);
    json_decref(j);
    return 0;
}

static void cmd_cluster_health(struct cflag *fl, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    int forever = fl_bool(fl, "forever");
    if (forever) {
        struct sigaction sa = {.sa_handler = on_sigint};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
    }
    tls_setup(1);
    must_client(0);
    v.deadline = 0; /* context.TODO() */
    json_t *ms = NULL;
    if (members_list(&ms) != 0) {
        printf("cluster may be unhealthy: failed to list members\n");
        handle_error(V2_SERVER);
    }
    v.debug = 0; /* hc.Get is not the etcd client: no cURL lines */
    for (;;) {
        size_t healthy = 0, i, k;
        json_t *m, *u;
        json_array_foreach(ms, i, m)
        {
            const char *id = jstr(m, "id");
            json_t *curls = json_object_get(m, "clientURLs");
            if (json_array_size(curls) == 0) {
                printf("member %s is unreachable: no available published "
                       "client urls\n",
                       id);
                continue;
            }
            int checked = 0;
            json_array_foreach(curls, k, u)
            {
                const char *url = json_string_value(u);
                int ok = 0;
                char *why = NULL;
                if (health_get(url, &ok, &why) != 0) {
                    printf("failed to check the health of member %s on %s: "
                           "%s\n",
                           id, url, why);
                    continue;
                }
                checked = 1;
                if (ok) {
                    printf("member %s is healthy: got healthy result from %s\n",
                           id, url);
                    healthy++;
                } else {
                    printf("member %s is unhealthy: got unhealthy result from "
                           "%s\n",
                           id, url);
                }
                break;
            }
            if (!checked) {
                printf("member %s is unreachable: [%s] are all unreachable\n",
                       id, join_json_strings(curls, " "));
            }
        }
        size_t total = json_array_size(ms);
        printf("%s\n", healthy == total ? "cluster is healthy"
                       : healthy == 0   ? "cluster is unavailable"
                                        : "cluster is degraded");
        fflush(stdout);
        if (!forever) {
            exit(healthy == total ? V2_OK : V2_CLUSTER_NOT_HEALTHY);
        }
        printf("\nnext check after 10 second...\n\n");
        fflush(stdout);
        sleep(10);
    }
}

/* ---- user, role, auth (user_commands.go, role_commands.go, auth_commands.go) */

/* mustNewAuth*API: the client, then Cluster-Endpoints once more. */
static void auth_client(void)
{
    must_client(1);
    if (v.debug) {
        fprintf(stderr, "Cluster-Endpoints: %s\n", endpoints_joined(", "));
    }
    start_total_timeout();
}

/* The authError {"message"} of a failed answer (json error otherwise). */
static void auth_fail(const struct v2_resp *r)
{
    const char *je = go_json_err(r);
    if (je != NULL) {
        die_plain(1, je);
    }
    json_t *j = parse_json(r);
    die_plain(1, jstr(j, "message"));
}

static void auth_req(const char *method, const char *path, const char *body,
                     int ok2, struct v2_resp *r)
{
    if (v2_do(method, path, NULL, body ? "application/json" : NULL, body, 0,
              r) != 0) {
        die_err();
    }
    if (r->status != 200 && r->status != ok2) {
        auth_fail(r);
    }
}

/* client.User as encoding/json writes it. */
static char *user_json(const char *user, const char *pass, const char *gr,
                       char **roles, size_t n)
{
    struct sbuf b;
    FILE *f = sb_open(&b);
    fputs("{\"user\":", f);
    gostr(f, user);
    if (pass && pass[0]) {
        fputs(",\"password\":", f);
        gostr(f, pass);
    }
    fputs(",\"roles\":null", f);
    if (gr && n) {
        fprintf(f, ",\"%s\":%s", gr, json_str_array(roles, n));
    }
    fputc('}', f);
    return sb_done(&b);
}

static void cmd_user(const char *sub, struct cflag *fl, int argc, char **argv)
{
    struct v2_resp r;
    if (strcmp(sub, "list") == 0) {
        if (argc != 0) {
            die_plain(1, "No arguments accepted");
        }
        auth_client();
        auth_req("GET", "/v2/auth/users", NULL, 200, &r);
        json_t *j = parse_json(&r);
        size_t i;
        json_t *u;
        json_array_foreach(json_object_get(j, "users"), i, u)
        {
            printf("%s\n", jstr(u, "user"));
        }
        json_decref(j);
        return;
    }
    int grant = strcmp(sub, "grant") == 0, revoke = strcmp(sub, "revoke") == 0;
    struct cflag *roles = NULL;
    for (struct cflag *f = fl; f && f->names; f++) {
        if (strcmp(f->names, "roles") == 0) {
            roles = f;
        }
    }
    if ((grant || revoke) && (roles == NULL || roles->n_multi == 0)) {
        die_plain(1, "No roles specified; please use `--roles`");
    }
    if (argc != 1) {
        die_plain(1, "Please provide a username");
    }
    auth_client();
    const char *path = path_join("/v2/auth/users", argv[0]);
    if (strcmp(sub, "add") == 0) {
        /* "name:password", or "name" and a prompt */
        char *user, *pass, *ignored;
        user_pass("", xprintf("%s:", argv[0]), &user, &ignored);
        user_pass("New password: ", argv[0], &ignored, &pass);
        auth_req("PUT", path_join("/v2/auth/users", user),
                 user_json(user, pass, NULL, NULL, 0), 201, &r);
        printf("User %s created\n", user);
    } else if (strcmp(sub, "remove") == 0) {
        auth_req("DELETE", path, NULL, 201, &r);
        printf("User %s removed\n", argv[0]);
    } else if (strcmp(sub, "passwd") == 0) {
        char *pass = ask_password("New password: ");
        auth_req("PUT", path, user_json(argv[0], pass, NULL, NULL, 0), 200, &r);
        printf("Password updated\n");
    } else if (grant || revoke) {
        auth_req("PUT", path,
                 user_json(argv[0], NULL, grant ? "grant" : "revoke",
                           roles->multi, roles->n_multi),
                 200, &r);
        printf("User %s updated\n", argv[0]);
    } else if (strcmp(sub, "get") == 0) {
        auth_req("GET", path, NULL, 200, &r);
        json_t *j = parse_json(&r);
        printf("User: %s\nRoles: ", jstr(j, "user"));
        /* etcd 3.4 answers role objects: the client's first Unmarshal into
         * []string fails after leaving one "" per element, and the
         * fallback appends the names after them, so etcdctl prints one
         * space per role before the names */
        size_t i;
        json_t *x, *rl = json_object_get(j, "roles");
        int objects = 0;
        json_array_foreach(rl, i, x)
        {
            objects |= !json_is_string(x);
        }
        if (objects) {
            printf("%*s", (int)json_array_size(rl), "");
        }
        json_array_foreach(rl, i, x)
        {
            printf("%s%s", i ? " " : "",
                   objects ? jstr(x, "role") : json_string_value(x));
        }
        printf("\n");
        json_decref(j);
    } else {
        die_plain(3, xprintf("No help topic for '%s'", sub));
    }
}

/* A role's permissions as client.Permissions JSON ({"kv":{...}}). */
static void perms_json(FILE *f, const char *path, int read, int write)
{
    char *p[1] = {(char *)path};
    fputs("{\"kv\":{\"read\":", f);
    fputs(read ? json_str_array(p, 1) : "null", f);
    fputs(",\"write\":", f);
    fputs(write ? json_str_array(p, 1) : "null", f);
    fputs("}}", f);
}

static void cmd_role(const char *sub, struct cflag *fl, int argc, char **argv)
{
    struct v2_resp r;
    if (strcmp(sub, "list") == 0) {
        if (argc != 0) {
            die_plain(1, "No arguments accepted");
        }
        auth_client();
        if (v2_do("GET", "/v2/auth/roles", NULL, NULL, NULL, 0, &r) != 0) {
            die_err();
        }
        if (r.status != 200) {
            die_plain(1, xprintf("unexpected status code %d", r.status));
        }
        json_t *j = parse_json(&r);
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(j, "roles"), i, x)
        {
            printf("%s\n", jstr(x, "role"));
        }
        json_decref(j);
        return;
    }
    int grant = strcmp(sub, "grant") == 0, revoke = strcmp(sub, "revoke") == 0;
    int rd = 0, wr = 0;
    const char *path = NULL;
    if (grant || revoke) {
        path = fl_str(fl, "path");
        if (path[0] == 0) {
            die_plain(1, "No path specified; please use `--path`");
        }
        const char *canon = canonical_path(path);
        if (strcmp(canon, path) != 0) {
            die_plain(1, xprintf("Not canonical path; please use `--path=%s`",
                                 canon));
        }
        int read = fl_bool(fl, "read"), write = fl_bool(fl, "write"),
            rw = fl_bool(fl, "readwrite");
        if (read + write + rw != 1) {
            die_plain(1, "Please specify exactly one of --read, --write or "
                         "--readwrite");
        }
        rd = read || rw;
        wr = write || rw;
    }
    if (argc != 1) {
        die_plain(1, "Please provide a role name");
    }
    auth_client();
    const char *rpath = path_join("/v2/auth/roles", argv[0]);
    struct sbuf b;
    if (strcmp(sub, "add") == 0) {
        if (v2_do("GET", rpath, NULL, NULL, NULL, 0, &r) == 0 &&
            r.status == 200) {
            die_plain(1, xprintf("Role %s already exists", argv[0]));
        }
        FILE *f = sb_open(&b);
        fputs("{\"role\":", f);
        gostr(f, argv[0]);
        fputs(",\"permissions\":{\"kv\":{\"read\":null,\"write\":null}}}", f);
        auth_req("PUT", rpath, sb_done(&b), 201, &r);
        printf("Role %s created\n", argv[0]);
    } else if (strcmp(sub, "remove") == 0) {
        auth_req("DELETE", rpath, NULL, 201, &r);
        printf("Role %s removed\n", argv[0]);
    } else if (strcmp(sub, "get") == 0) {
        auth_req("GET", rpath, NULL, 200, &r);
        json_t *j = parse_json(&r);
        json_t *kv = json_object_get(json_object_get(j, "permissions"), "kv");
        printf("Role: %s\nKV Read:\n", jstr(j, "role"));
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(kv, "read"), i, x)
        {
            printf("\t%s\n", json_string_value(x));
        }
        printf("KV Write:\n");
        json_array_foreach(json_object_get(kv, "write"), i, x)
        {
            printf("\t%s\n", json_string_value(x));
        }
        json_decref(j);
    } else if (grant || revoke) {
        auth_req("GET", rpath, NULL, 200, &r);
        json_t *cur = parse_json(&r);
        FILE *f = sb_open(&b);
        fputs("{\"role\":", f);
        gostr(f, argv[0]);
        fputs(",\"permissions\":{\"kv\":{\"read\":null,\"write\":null}},\"", f);
        fputs(grant ? "grant\":" : "revoke\":", f);
        perms_json(f, path, rd, wr);
        fputc('}', f);
        auth_req("PUT", rpath, sb_done(&b), 200, &r);
        json_t *now = parse_json(&r);
        /* reflect.DeepEqual(newRole, currentRole) */
        if (json_equal(cur, now)) {
            printf(grant ? "Role unchanged; already granted"
                         : "Role unchanged; already revoked");
        }
        json_decref(cur);
        json_decref(now);
        printf("Role %s updated\n", argv[0]);
    } else {
        die_plain(3, xprintf("No help topic for '%s'", sub));
    }
}

static void cmd_auth(const char *sub, int argc)
{
    int enable = strcmp(sub, "enable") == 0;
    if (!enable && strcmp(sub, "disable") != 0) {
        die_plain(3, xprintf("No help topic for '%s'", sub));
    }
    if (argc != 0) {
        die_plain(1, "No arguments accepted");
    }
    auth_client();
    struct v2_resp r;
    auth_req(enable ? "PUT" : "DELETE", "/v2/auth/enable", NULL, 201, &r);
    printf(enable ? "Authentication Enabled\n" : "Authentication Disabled\n");
}

/* ---- main -------------------------------------------------------------------- */

#define CF(n, hv) {.names = (n), .has_value = (hv)}
static struct cflag f_get[] = {CF("sort", 0), CF("quorum,q", 0), CF(NULL, 0)};
static struct cflag f_set[] = {CF("ttl", 1),
                               CF("swap-with-value", 2),
                               CF("swap-with-index", 1),
                               CF(NULL, 0)};
static struct cflag f_mk[] = {CF("in-order", 0), CF("ttl", 1), CF(NULL, 0)};
static struct cflag f_ttl[] = {CF("ttl", 1), CF(NULL, 0)};
static struct cflag f_rm[] = {CF("dir", 0),
                              CF("recursive,r", 0),
                              CF("with-value", 2),
                              CF("with-index", 1),
                              CF(NULL, 0)};
static struct cflag f_ls[] = {
    CF("sort", 0), CF("recursive,r", 0), CF("p", 0), CF("quorum,q", 0), CF(NULL, 0)};
static struct cflag f_watch[] = {
    CF("forever,f", 0), CF("after-index", 1), CF("recursive,r", 0), CF(NULL, 0)};
static struct cflag f_exec[] = {
    CF("after-index", 1), CF("recursive,r", 0), CF(NULL, 0)};
static struct cflag f_health[] = {CF("forever,f", 0), CF(NULL, 0)};
static struct cflag f_roles[] = {CF("roles", 2), CF(NULL, 0)};
static struct cflag f_perm[] = {CF("path", 2),
                                CF("read", 0),
                                CF("write", 0),
                                CF("readwrite,rw", 0),
                                CF(NULL, 0)};
static struct cflag f_none[] = {CF(NULL, 0)};

static const struct
{
    const char *name;
    struct cflag *flags;
} v2_cmds[] = {
    {"get", f_get},       {"set", f_set},           {"mk", f_mk},
    {"mkdir", f_ttl},     {"setdir", f_ttl},        {"rm", f_rm},
    {"rmdir", f_none},    {"update", f_ttl},        {"updatedir", f_ttl},
    {"ls", f_ls},         {"watch", f_watch},       {"exec-watch", f_exec},
    {"member", f_none},   {"cluster-health", f_health},
    {"user", f_none},     {"role", f_none},         {"auth", f_none},
    {NULL, NULL},
};

struct gflag
{
    const char *names;
    const char **str;
    int *flag;
    uint64_t *dur;
};

static const struct gflag v2_globals[] = {
    {"debug", NULL, &v.debug, NULL},
    {"no-sync", NULL, &v.no_sync, NULL},
    {"output,o", &v.output, NULL, NULL},
    {"discovery-srv,D", &v.discovery_srv, NULL, NULL},
    {"insecure-discovery", NULL, &v.insecure_discovery, NULL},
    {"peers,C", &v.peers, NULL, NULL},
    {"endpoint", &v.endpoint, NULL, NULL},
    {"endpoints", &v.endpoints, NULL, NULL},
    {"cert-file", &v.cert, NULL, NULL},
    {"key-file", &v.key, NULL, NULL},
    {"ca-file", &v.ca, NULL, NULL},
    {"username,u", &v.username, NULL, NULL},
    {"timeout", NULL, NULL, &v.timeout_ms},
    {"total-timeout", NULL, NULL, &v.total_timeout_ms},
    {NULL, NULL, NULL, NULL},
};

static int name_in(const char *names, const char *name, size_t len)
{
    struct cflag f = {.names = names};
    return cflag_is(&f, name, len);
}

/* argv after the program name. Returns the exit code, or -1 for
 * `backup`, which keelctl.c runs as in the v3 API. */
int ctl_v2_main(int argc, char **argv)
{
    SSL_load_error_strings();
    int i = 0;
    /* global options, before the command (Go's flag package) */
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        const char *name = a + 1 + (a[1] == '-');
        size_t nl = strcspn(name, "=");
        const char *eq = name[nl] == '=' ? name + nl + 1 : NULL;
        if (name_in("version,v", name, nl)) {
            printf("etcdctl version: 3.4.23\nAPI version: 2\n");
            return V2_OK;
        }
        if (is_help(a)) {
            print_help("");
        }
        const struct gflag *gf = NULL;
        for (const struct gflag *x = v2_globals; x->names; x++) {
            if (name_in(x->names, name, nl)) {
                gf = x;
            }
        }
        if (gf == NULL) {
            usage_error("", xprintf("flag provided but not defined: -%.*s",
                                    (int)nl, name));
        }
        if (gf->flag) {
            *gf->flag = 1;
            if (eq != NULL && go_parse_bool(eq, gf->flag) != 0) {
                usage_error("", xprintf("invalid boolean value \"%s\" for "
                                        "-%.*s: parse error",
                                        eq, (int)nl, name));
            }
            continue;
        }
        const char *val = eq;
        if (val == NULL) {
            if (i + 1 >= argc) {
                usage_error("", xprintf("flag needs an argument: -%.*s",
                                        (int)nl, name));
            }
            val = argv[++i];
        }
        if (gf->str) {
            *gf->str = val;
        } else if (parse_go_duration(val, gf->dur) != 0) {
            usage_error("", xprintf("invalid value \"%s\" for flag -%.*s: "
                                    "parse error",
                                    val, (int)nl, name));
        }
    }
    if (i == argc) {
        print_help("");
    }
    const char *cmd = argv[i++];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "h") == 0) {
        /* urfave/cli's help command: a command's help, a group's own
         * "help <group>" text, or the app's */
        if (i == argc) {
            print_help("");
        }
        const char *x = argv[i];
        if (strcmp(x, "help") == 0 || strcmp(x, "h") == 0) {
            print_help("help help");
        }
        if (help_text(xprintf("help %s", x)) != NULL) {
            print_help(xprintf("help %s", x));
        }
        if (help_text(x) != NULL && x[0]) {
            print_help(x);
        }
        die_plain(3, xprintf("No help topic for '%s'", x));
    }
    if (strcmp(cmd, "backup") == 0) {
        return -1; /* keelctl.c runs keelctl's own backup */
    }
    struct cflag *flags = NULL;
    for (size_t k = 0; v2_cmds[k].name; k++) {
        if (strcmp(v2_cmds[k].name, cmd) == 0) {
            flags = v2_cmds[k].flags;
        }
    }
    if (flags == NULL) {
        die_plain(3, xprintf("No help topic for '%s'", cmd));
    }
    int group = strcmp(cmd, "member") == 0 || strcmp(cmd, "user") == 0 ||
                strcmp(cmd, "role") == 0 || strcmp(cmd, "auth") == 0;
    const char *sub = NULL;
    if (group) {
        if (i == argc || is_help(argv[i])) {
            print_help(cmd);
        }
        sub = argv[i++];
        if (strcmp(sub, "help") == 0 || strcmp(sub, "h") == 0) {
            if (i == argc) {
                print_help(xprintf("%s help", cmd));
            }
            if (help_text(xprintf("%s %s", cmd, argv[i])) == NULL) {
                die_plain(3, xprintf("No help topic for '%s'", argv[i]));
            }
            print_help(xprintf("%s %s", cmd, argv[i]));
        }
        if (help_text(xprintf("%s %s", cmd, sub)) == NULL) {
            die_plain(3, xprintf("No help topic for '%s'", sub));
        }
        if (strcmp(cmd, "user") == 0 &&
            (strcmp(sub, "grant") == 0 || strcmp(sub, "revoke") == 0)) {
            flags = f_roles;
        } else if (strcmp(cmd, "role") == 0 &&
                   (strcmp(sub, "grant") == 0 || strcmp(sub, "revoke") == 0)) {
            flags = f_perm;
        }
    }
    int nargs = 0;
    char **args = parse_cmd_flags(flags, sub ? xprintf("%s %s", cmd, sub) : cmd,
                                  argc - i, argv + i, &nargs);
    if (strcmp(cmd, "member") == 0) {
        cmd_member(sub, nargs, args);
    } else if (strcmp(cmd, "user") == 0) {
        cmd_user(sub, flags, nargs, args);
    } else if (strcmp(cmd, "role") == 0) {
        cmd_role(sub, flags, nargs, args);
    } else if (strcmp(cmd, "auth") == 0) {
        cmd_auth(sub, nargs);
    } else if (strcmp(cmd, "cluster-health") == 0) {
        cmd_cluster_health(flags, nargs, args);
    } else {
        cmd_keys(cmd, flags, nargs, args);
    }
    fflush(stdout);
    return V2_OK;
}
