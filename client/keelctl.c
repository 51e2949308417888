/*
 * keelctl: an etcdctl 3.4-compatible command line client on libkeel.
 *
 * main(): pick the command from the words of argv (cobra style: flags may
 * come before, between or after them), parse global + command flags
 * (pflag syntax: --name=value, --name value, -w json, -wjson, bool flags
 * without value, "--" ends flags), fill unset global flags from ETCDCTL_*
 * environment variables, then run the command. Commands exit with etcdctl's
 * codes and messages (etcd: etcdctl/ctlv3/command/error.go, global.go).
 *
 * Failure modes: flag errors print cobra's "Error: ..." lines and exit 1;
 * bad arguments exit 128 (ExitBadArgs); server errors print clientv3's
 * retry-interceptor warning (a zap JSON line) and "Error: <etcd message>".
 * etcdctl's help/usage text is not reproduced.
 */
#include "keelctl.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "grpc_wire.h"
#include "keelctl_complete.h"
#include "keelctl_help.h"

struct ctl_globals g = {
    .dial_timeout_ms = 2000,
    .command_timeout_ms = 5000,
    .write_out = "simple",
};
enum ctl_format ctl_fmt = FMT_SIMPLE;
int ctl_argc;
char **ctl_argv;
int ctl_passthrough;

static const char *g_endpoints_str = "127.0.0.1:2379";
static uint64_t g_keepalive_time = 2000, g_keepalive_timeout = 6000;
static const char *g_cacert = "", *g_cert = "", *g_key = "";
static const char *g_discovery_srv = "", *g_discovery_srv_name = "";
static int g_insecure_transport = 1, g_insecure_skip_verify = 0;
static int g_insecure_discovery = 1;
static const char *g_user_str = "", *g_password_str = "";

static struct flag global_flags[] = {
    {"endpoints", 0, F_STRING, &g_endpoints_str, 0},
    {"dial-timeout", 0, F_DURATION, &g.dial_timeout_ms, 0},
    {"command-timeout", 0, F_DURATION, &g.command_timeout_ms, 0},
    {"keepalive-time", 0, F_DURATION, &g_keepalive_time, 0},
    {"keepalive-timeout", 0, F_DURATION, &g_keepalive_timeout, 0},
    {"write-out", 'w', F_STRING, &g.write_out, 0},
    {"hex", 0, F_BOOL, &g.hex, 0},
    {"debug", 0, F_BOOL, &g.debug, 0},
    {"user", 0, F_STRING, &g_user_str, 0},
    {"password", 0, F_STRING, &g_password_str, 0},
    {"cacert", 0, F_STRING, &g_cacert, 0},
    {"cert", 0, F_STRING, &g_cert, 0},
    {"key", 0, F_STRING, &g_key, 0},
    {"insecure-transport", 0, F_BOOL, &g_insecure_transport, 0},
    {"insecure-skip-tls-verify", 0, F_BOOL, &g_insecure_skip_verify, 0},
    {"insecure-discovery", 0, F_BOOL, &g_insecure_discovery, 0},
    {"discovery-srv", 'd', F_STRING, &g_discovery_srv, 0},
    {"discovery-srv-name", 0, F_STRING, &g_discovery_srv_name, 0},
    {NULL, 0, 0, NULL, 0},
};

/* ---- memory ---------------------------------------------------------------- */

static struct keel_arena ctl_arena;

void *ctl_alloc(size_t n)
{
    void *p = keel_arena_alloc(&ctl_arena, n ? n : 1);
    if (p == NULL) {
        ctl_die(EXIT_ERROR, "out of memory");
    }
    memset(p, 0, n ? n : 1);
    return p;
}

char *ctl_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = ctl_alloc(len + 1);
    memcpy(p, s, len);
    return p;
}

char *ctl_strdup(const char *s)
{
    return ctl_strndup(s, strlen(s));
}

/* ---- errors -------------------------------------------------------------- */

void ctl_die(int code, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("Error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(code);
}

/* cobra reports a flag error twice: once itself, once from etcdctl's main
 * (etcd: etcdctl/ctlv3/ctl_nocov.go). */
_Noreturn static void flag_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* The command whose help -h/--help and flag errors print ("" = etcdctl's
 * own). */
static const char *help_path = "";
/* -h/--help was given: the help is printed once every flag parsed (an
 * unknown flag is still an error first, as in cobra). */
static int help_requested;

static void flag_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* cobra: the error, its usage (etcdctl's usage func writes it to
     * stdout, leaving an empty line on stderr), then etcdctl's error */
    fprintf(stderr, "Error: %s\n", msg);
    help_print(help_path);
    fflush(stdout);
    fprintf(stderr, "\nError: %s\n", msg);
    exit(EXIT_ERROR);
}

static int is_etcd_message(const char *msg)
{
#define X(name, off, grpc, text)                                               \
    if ((off) >= 100 && strcmp(msg, text) == 0)                                \
        return 1;
    KEEL_ERR_MAP(X)
#undef X
    /* rpctypes strings keel_err.h does not carry. */
    static const char *const extra[] = {
        "etcdserver: no space",
        "etcdserver: lease not found",
        "etcdserver: permission not given",
        "etcdserver: invalid sort option",
        "etcdserver: leader changed",
        "etcdserver: not capable",
        "etcdserver: invalid auth management",
        NULL,
    };
    for (size_t i = 0; extra[i]; i++) {
        if (strcmp(msg, extra[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

const char *ctl_err_text(const struct keel_call *call)
{
    static char buf[1024];
    if (call->status == KEEL_GRPC_DEADLINE_EXCEEDED &&
        strcmp(call->message, KEEL_DEADLINE_MESSAGE) == 0) {
        return KEEL_DEADLINE_MESSAGE;
    }
    if (is_etcd_message(call->message)) {
        return call->message;
    }
    snprintf(buf, sizeof(buf), "rpc error: code = %s desc = %s",
             grpc_code_name(call->status), call->message);
    return buf;
}

/* ---- client -------------------------------------------------------------- */

static struct keel_sync *shared;
static char client_uuid[40];

static void init_format(void)
{
    static const struct {
        const char *name;
        enum ctl_format f;
    } fmts[] = {{"simple", FMT_SIMPLE},
                {"json", FMT_JSON},
                {"fields", FMT_FIELDS},
                {"protobuf", FMT_PROTOBUF},
                {"table", FMT_TABLE}};
    for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        if (strcmp(g.write_out, fmts[i].name) == 0) {
            ctl_fmt = fmts[i].f;
            return;
        }
    }
    ctl_die(EXIT_BAD_FEATURE, "unsupported output format");
}

void ctl_init_display(void)
{
    init_format();
}

static void make_uuid(void)
{
    unsigned char b[16];
    FILE *f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(b, 1, 16, f) != 16) {
        memset(b, 0x42, sizeof(b));
    }
    if (f) {
        fclose(f);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    snprintf(client_uuid, sizeof(client_uuid),
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
             b[10], b[11], b[12], b[13], b[14], b[15]);
}

/* A file etcdctl reads with ioutil.ReadFile: its error text on failure. */
static void check_readable(const char *path, int is_key)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        ctl_die(EXIT_BAD_ARGS, "open %s: %s", path, ctl_go_errno(errno));
    }
    char buf[64];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    if (strstr(buf, "-----BEGIN") == NULL) {
        /* Go's crypto/tls X509KeyPair and NewCertPool wording. */
        ctl_die(EXIT_BAD_ARGS, "tls: failed to find any PEM data in %s input",
                is_key ? "key" : "certificate");
        /* (NewCert reads the certificate first, then the key.) */
    }
}

/* etcdctl's TLS settings (etcdctl/ctlv3/command/global.go newClientCfg):
 * any of --cert/--key/--cacert makes a TLS configuration, cert and key
 * only together; --insecure-transport=false alone makes an empty one
 * (system roots). NULL when the client is cleartext (endpoints with
 * https:// still get TLS, with the system roots). */
int ctl_tls_config(const char *cert, const char *key, const char *cacert,
                   int insecure_transport, int skip_verify,
                   struct keel_tls_config *tls)
{
    int have = 0;
    memset(tls, 0, sizeof(*tls));
    if (cert[0] || key[0]) {
        if (!cert[0] || !key[0]) {
            ctl_die(EXIT_BAD_ARGS,
                    "KeyFile and CertFile must both be present[key: %s, "
                    "cert: %s]",
                    key, cert);
        }
        check_readable(cert, 0);
        check_readable(key, 1);
        tls->cert = cert;
        tls->key = key;
        have = 1;
    }
    if (cacert[0]) {
        /* A CA file without PEM blocks is an empty pool for etcdctl (no
         * error; the handshake fails later): readable is all it checks. */
        FILE *f = fopen(cacert, "r");
        if (f == NULL) {
            ctl_die(EXIT_BAD_ARGS, "open %s: %s", cacert, ctl_go_errno(errno));
        }
        fclose(f);
        tls->cacert = cacert;
        have = 1;
    }
    if (!insecure_transport) {
        have = 1;
    }
    tls->insecure_skip_verify = skip_verify;
    return have;
}

static const struct keel_tls_config *client_tls(void)
{
    static struct keel_tls_config tls;
    static int done, have;
    if (!done) {
        done = 1;
        have = ctl_tls_config(g_cert, g_key, g_cacert, g_insecure_transport,
                              g_insecure_skip_verify, &tls);
    }
    return have ? &tls : NULL;
}

struct keel_sync *ctl_client_for(const char *const *eps, size_t n)
{
    return ctl_client_with(eps, n, client_tls(), 1);
}

static void fill_config(struct keel_client_config *cfg,
                        const char *const *eps, size_t n,
                        const struct keel_tls_config *tls, int with_auth)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->tls = tls;
    cfg->endpoints = eps;
    cfg->n_endpoints = n;
    cfg->dial_timeout_ms = g.dial_timeout_ms;
    cfg->username = with_auth ? g.user : NULL;
    cfg->password = with_auth ? g.password : NULL;
    /* grpc-go raises the keepalive time to its 10 s minimum
     * ("Adjusting keepalive ping interval to minimum period of 10s"). */
    cfg->keepalive_time_ms = g_keepalive_time < 10000 ? 10000
                                                      : g_keepalive_time;
    cfg->keepalive_timeout_ms = g_keepalive_timeout;
}

const char *ctl_endpoint_list(void)
{
    size_t len = 1;
    for (size_t i = 0; i < g.n_endpoints; i++) {
        len += strlen(g.endpoints[i]) + 1;
    }
    char *out = ctl_alloc(len);
    for (size_t i = 0; i < g.n_endpoints; i++) {
        if (i) {
            strcat(out, " ");
        }
        strcat(out, g.endpoints[i]);
    }
    return out;
}

const struct keel_tls_config *ctl_tls(void)
{
    return client_tls();
}

struct keel_client *ctl_async_client(uv_loop_t *loop)
{
    ctl_client();
    struct keel_client_config cfg;
    fill_config(&cfg, (const char *const *)g.endpoints, g.n_endpoints,
                client_tls(), 1);
    struct keel_client *c;
    int rv = keel_client_new(loop, &cfg, &c);
    if (rv != 0) {
        ctl_die(EXIT_BAD_ARGS, "bad endpoint in --endpoints (%s)",
                keel_strerror(rv));
    }
    return c;
}

struct keel_sync *ctl_client_with(const char *const *eps, size_t n,
                                  const struct keel_tls_config *tls,
                                  int with_auth)
{
    struct keel_client_config cfg;
    fill_config(&cfg, eps, n, tls, with_auth);
    struct keel_sync *s;
    int rv = keel_sync_open(&cfg, &s);
    if (rv == KEEL_EINVAL && tls != NULL) {
        ctl_die(EXIT_BAD_ARGS, "tls: cannot use the certificate files (%s, "
                               "%s, %s)",
                tls->cacert ? tls->cacert : "", tls->cert ? tls->cert : "",
                tls->key ? tls->key : "");
    }
    if (rv != 0) {
        ctl_die(EXIT_BAD_ARGS, "bad endpoint in --endpoints (%s)",
                keel_strerror(rv));
    }
    return s;
}

static void client_config_from_env(void);

struct keel_sync *ctl_client(void)
{
    if (shared == NULL) {
        client_config_from_env();
        init_format();
        shared = ctl_client_for((const char *const *)g.endpoints,
                                g.n_endpoints);
        keel_client_connect(keel_sync_client(shared));
    }
    return shared;
}

/* clientv3's retry interceptor logs every failed unary call with zap
 * (etcd: clientv3/retry_interceptor.go:62); etcdctl users see this line. */
static void log_retry_warning(struct keel_sync *s, const struct keel_call *c)
{
    char ts[64];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));

    const char *ep = keel_client_endpoint(keel_sync_client(s));
    if (strncmp(ep, "http://", 7) == 0) {
        ep += 7;
    } else if (strncmp(ep, "https://", 8) == 0 ||
               strncmp(ep, "unixs://", 8) == 0) {
        ep += 8;
    } else if (strncmp(ep, "unix://", 7) == 0) {
        ep += 7;
    } else if (strncmp(ep, "unix:", 5) == 0) {
        ep += 5;
    }
    char err[1200];
    const char *dial = keel_client_last_error(keel_sync_client(s));
    if (c->status == KEEL_GRPC_DEADLINE_EXCEEDED &&
        !keel_client_connected(keel_sync_client(s)) && ctl_passthrough &&
        dial[0]) {
        /* clientv3.Maintenance dials one endpoint directly: grpc-go
         * reports the dial error itself. */
        snprintf(err, sizeof(err),
                 "rpc error: code = DeadlineExceeded desc = latest balancer "
                 "error: connection error: desc = \"transport: Error while "
                 "dialing %s\"",
                 dial);
    } else if (c->status == KEEL_GRPC_DEADLINE_EXCEEDED &&
               !keel_client_connected(keel_sync_client(s))) {
        snprintf(err, sizeof(err),
                 "rpc error: code = DeadlineExceeded desc = latest balancer "
                 "error: all SubConns are in TransientFailure");
    } else {
        snprintf(err, sizeof(err), "rpc error: code = %s desc = %s",
                 grpc_code_name(c->status), c->message);
    }
    fflush(stdout);
    fprintf(stderr,
            "{\"level\":\"warn\",\"ts\":\"%s\",\"caller\":\"clientv3/"
            "retry_interceptor.go:62\",\"msg\":\"retrying of unary invoker "
            "failed\",\"target\":",
            ts);
    char target[600];
    if (client_uuid[0] == '\0') {
        make_uuid();
    }
    if (ctl_passthrough) {
        snprintf(target, sizeof(target), "passthrough:///%s", ep);
    } else {
        snprintf(target, sizeof(target), "endpoint://client-%s/%s",
                 client_uuid, ep);
    }
    json_string(stderr, target, strlen(target));
    fputs(",\"attempt\":0,\"error\":", stderr);
    json_string(stderr, err, strlen(err));
    fputs("}\n", stderr);
}

int ctl_call(struct keel_sync *s, struct keel_call *call, const char *path,
             const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, unsigned flags)
{
    struct keel_call_opts o = {g.command_timeout_ms, flags};
    int rv = keel_sync_call(s, call, path, req, resp_desc, &o);
    if (rv != 0) {
        ctl_die(EXIT_ERROR, "%s", keel_strerror(rv));
    }
    if (call->status != KEEL_GRPC_OK) {
        log_retry_warning(s, call);
        /* etcdctl authenticates while creating its client and exits with
         * ExitBadConnection when that fails (global.go mustClient). */
        if (g.user && call->status == KEEL_GRPC_INVALID_ARGUMENT &&
            strcmp(call->message, keel_strerror(KEEL_EAUTHFAILED)) == 0) {
            ctl_die(EXIT_BAD_CONNECTION, "%s", call->message);
        }
    }
    return call->status;
}

/* ---- flags ----------------------------------------------------------------- */

int parse_int64(const char *s, int base, int64_t *out, char *err,
                size_t errlen)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, base);
    if (*s == '\0' || *end != '\0' || isspace((unsigned char)*s)) {
        snprintf(err, errlen, "strconv.ParseInt: parsing \"%s\": invalid syntax",
                 s);
        return -1;
    }
    if (errno == ERANGE) {
        snprintf(err, errlen,
                 "strconv.ParseInt: parsing \"%s\": value out of range", s);
        return -1;
    }
    *out = v;
    return 0;
}

/* Go's time.ParseDuration, to milliseconds. */
int parse_go_duration(const char *s, uint64_t *ms)
{
    const char *p = s;
    double total = 0;
    if (*p == '+') {
        p++;
    }
    if (strcmp(p, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (*p == '\0') {
        return -1;
    }
    while (*p) {
        char *end;
        if (!(isdigit((unsigned char)*p) || *p == '.')) {
            return -1;
        }
        double v = strtod(p, &end);
        if (end == p) {
            return -1;
        }
        p = end;
        double unit;
        if (strncmp(p, "ns", 2) == 0) {
            unit = 1e-6, p += 2;
        } else if (strncmp(p, "us", 2) == 0) {
            unit = 1e-3, p += 2;
        } else if (strncmp(p, "\xc2\xb5s", 3) == 0) {
            unit = 1e-3, p += 3;
        } else if (strncmp(p, "ms", 2) == 0) {
            unit = 1, p += 2;
        } else if (*p == 's') {
            unit = 1000, p += 1;
        } else if (*p == 'm') {
            unit = 60000, p += 1;
        } else if (*p == 'h') {
            unit = 3600000, p += 1;
        } else {
            return -1;
        }
        total += v * unit;
    }
    *ms = (uint64_t)(total + 0.5);
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *t[] = {"1", "t", "T", "TRUE", "true", "True", NULL};
    static const char *f[] = {"0", "f", "F", "FALSE", "false", "False", NULL};
    for (int i = 0; t[i]; i++) {
        if (strcmp(v, t[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcmp(v, f[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int flag_quiet; /* env values: a bad one is ignored, as etcdctl */

/* Set a flag from text; src is the flag as written, for errors. */
static void flag_set(struct flag *f, const char *v, const char *src)
{
    char err[300];
    if (flag_quiet) {
        uint64_t ms;
        int64_t n;
        int b;
        if ((f->type == F_BOOL && parse_bool(v, &b) != 0) ||
            (f->type == F_INT64 &&
             parse_int64(v, 10, &n, err, sizeof(err)) != 0) ||
            (f->type == F_DURATION && parse_go_duration(v, &ms) != 0)) {
            return;
        }
    }
    switch (f->type) {
        case F_BOOL:
            if (parse_bool(v, f->ptr) != 0) {
                flag_error("invalid argument \"%s\" for \"%s\" flag: "
                           "strconv.ParseBool: parsing \"%s\": invalid syntax",
                           v, src, v);
            }
            break;
        case F_STRING:
            *(const char **)f->ptr = v;
            break;
        case F_INT64:
            if (parse_int64(v, 10, f->ptr, err, sizeof(err)) != 0) {
                flag_error("invalid argument \"%s\" for \"%s\" flag: %s", v,
                           src, err);
            }
            break;
        case F_DURATION:
            if (parse_go_duration(v, f->ptr) != 0) {
                flag_error("invalid argument \"%s\" for \"%s\" flag: time: "
                           "invalid duration \"%s\"",
                           v, src, v);
            }
            break;
        case F_STRSLICE:
            *(const char **)f->ptr = v;
            break;
    }
    f->changed = 1;
}

static struct flag *find_flag(struct flag *const *sets, const char *name,
                              size_t len, char shorthand)
{
    for (size_t s = 0; sets[s]; s++) {
        for (struct flag *f = sets[s]; f->name; f++) {
            if (shorthand ? f->shorthand == shorthand
                          : (strlen(f->name) == len &&
                             strncmp(f->name, name, len) == 0)) {
                return f;
            }
        }
    }
    return NULL;
}

/* Parse argv (after the program name) against the flag sets; positional
 * words are returned in *pos (in order). `--` ends flag parsing. */
static int parse_flags(int argc, char **argv, struct flag *const *sets,
                       char **pos)
{
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc; i++) {
                pos[npos++] = argv[i];
            }
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            pos[npos++] = a;
            continue;
        }
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            struct flag *f = find_flag(sets, name, len, 0);
            char src[128];
            snprintf(src, sizeof(src), "--%.*s", (int)len, name);
            if (f == NULL) {
                if (len == 4 && strncmp(name, "help", 4) == 0) {
                    help_requested = 1;
                    continue;
                }
                flag_error("unknown flag: %s", src);
            }
            if (eq) {
                flag_set(f, eq + 1, src);
            } else if (f->type == F_BOOL) {
                flag_set(f, "true", src);
            } else if (i + 1 < argc) {
                flag_set(f, argv[++i], src);
            } else {
                flag_error("flag needs an argument: %s", src);
            }
            continue;
        }
        /* Shorthand cluster: -w json, -wjson, -w=json, -i. */
        for (char *p = a + 1; *p; p++) {
            struct flag *f = find_flag(sets, NULL, 0, *p);
            char src[64];
            if (f == NULL) {
                if (*p == 'h') {
                    help_requested = 1;
                    continue;
                }
                flag_error("unknown shorthand flag: '%c' in %s", *p, a);
            }
            snprintf(src, sizeof(src), "-%c, --%s", *p, f->name);
            if (f->type == F_BOOL) {
                if (p[1] == '=') {
                    flag_set(f, p + 2, src);
                    break;
                }
                flag_set(f, "true", src);
                continue;
            }
            if (p[1] == '=') {
                flag_set(f, p + 2, src);
            } else if (p[1]) {
                flag_set(f, p + 1, src);
            } else if (i + 1 < argc) {
                flag_set(f, argv[++i], src);
            } else {
                flag_error("flag needs an argument: '%c' in -%c", *p, *p);
            }
            break;
        }
    }
    return npos;
}

/* etcd: pkg/flags/flag.go SetPflagsFromEnv: unset flags take
 * ETCDCTL_<NAME> (upper case, '-' -> '_'). */
static void flags_from_env(struct flag *set)
{
    for (struct flag *f = set; f->name; f++) {
        if (f->changed) {
            continue;
        }
        char env[96] = "ETCDCTL_";
        size_t n = strlen(env);
        for (const char *p = f->name; *p && n < sizeof(env) - 1; p++) {
            env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        }
        env[n] = '\0';
        const char *v = getenv(env);
        if (v != NULL && v[0] != '\0') {
            char src[100];
            snprintf(src, sizeof(src), "--%s", f->name);
            flag_quiet = 1;
            flag_set(f, v, src);
            flag_quiet = 0;
        }
    }
}

static void split_endpoints(void)
{
    char *copy = ctl_strdup(g_endpoints_str);
    size_t n = 1;
    for (const char *p = copy; *p; p++) {
        n += *p == ',';
    }
    g.endpoints = ctl_alloc((n + 1) * sizeof(char *));
    g.n_endpoints = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') {
            tok++;
        }
        if (*tok) {
            g.endpoints[g.n_endpoints++] = tok;
        }
    }
    if (g.n_endpoints == 0) {
        g.endpoints[g.n_endpoints++] = "127.0.0.1:2379";
    }
}

static void setup_auth(void)
{
    if (g_user_str[0] == '\0') {
        return;
    }
    const char *colon = strchr(g_user_str, ':');
    if (g_password_str[0] != '\0') {
        g.user = g_user_str;
        g.password = g_password_str;
        return;
    }
    if (colon == NULL) {
        /* etcdctl would prompt on the terminal; we read one line. */
        char line[256];
        fprintf(stderr, "Password: ");
        if (fgets(line, sizeof(line), stdin) == NULL) {
            ctl_die(EXIT_BAD_ARGS, "failed to read password");
        }
        line[strcspn(line, "\n")] = '\0';
        g.user = g_user_str;
        g.password = ctl_strdup(line);
        return;
    }
    g.user = ctl_strndup(g_user_str, (size_t)(colon - g_user_str));
    g.password = colon + 1;
}

/* capnslog's line format (etcd's pkg/flags logs through it). */
static void capnslog(char level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void capnslog(char level, const char *fmt, ...)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%d %H:%M:%S", &tm);
    fflush(stdout);
    fprintf(stderr, "%s.%06ld %c | pkg/flags: ", ts, (long)tv.tv_usec, level);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static const struct ctl_cmd *run_cmd;

static void env_name(const char *flag, char *out, size_t len)
{
    size_t n = (size_t)snprintf(out, len, "ETCDCTL_");
    for (const char *p = flag; *p && n < len - 1; p++) {
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    out[n] = '\0';
}

/* etcd: pkg/flags verifyEnv — after the ETCDCTL_* values were taken:
 * a variable shadowed by a command-line flag is fatal, an unknown one is
 * warned about. */
static void verify_env(const int *cmdline_set, const int *used)
{
    extern char **environ;
    int watch = run_cmd && strcmp(run_cmd->path, "watch") == 0;
    for (char **e = environ; *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t nlen = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)nlen, *e);
        if (strcmp(name, "ETCDCTL_API") == 0) {
            continue; /* etcdctl's main unsets it */
        }
        int known = 0;
        for (size_t i = 0; global_flags[i].name; i++) {
            char en[96];
            env_name(global_flags[i].name, en, sizeof(en));
            if (strcmp(en, name) == 0) {
                if (used[i]) {
                    known = 1;
                } else if (cmdline_set[i]) {
                    capnslog('C',
                             "conflicting environment variable \"%s\" is "
                             "shadowed by corresponding command-line flag "
                             "(either unset environment variable or disable "
                             "flag)",
                             name);
                    exit(EXIT_ERROR);
                }
            }
        }
        if (watch && eq && eq[1] &&
            (strcmp(name, "ETCDCTL_WATCH_KEY") == 0 ||
             strcmp(name, "ETCDCTL_WATCH_RANGE_END") == 0)) {
            known = 1;
        }
        if (!known && strncmp(name, "ETCDCTL_", 8) == 0) {
            capnslog('W', "unrecognized environment variable %s", *e);
        }
    }
}

/* etcd: clientConfigFromCmd — ETCDCTL_* for the global flags not given on
 * the command line, then endpoints and credentials. */
static void client_config_from_env(void)
{
    int cmdline_set[32] = {0}, used[32] = {0};
    for (size_t i = 0; global_flags[i].name; i++) {
        cmdline_set[i] = global_flags[i].changed;
    }
    flags_from_env(global_flags);
    for (size_t i = 0; global_flags[i].name; i++) {
        char en[96];
        env_name(global_flags[i].name, en, sizeof(en));
        const char *v = getenv(en);
        used[i] = !cmdline_set[i] && v && v[0];
    }
    verify_env(cmdline_set, used);
    g.command_timeout_set = global_flags[2].changed;
    split_endpoints();
    setup_auth();
}

static void version_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* keelctl speaks etcd 3.4's API; report the etcdctl it replaces. */
    printf("etcdctl version: 3.4.23\nAPI version: 3.4\n");
}

static struct flag no_flags[] = {{NULL, 0, 0, NULL, 0}};
static const struct ctl_cmd misc_cmds[] = {
    {"version", no_flags, version_run},
    {NULL, NULL, NULL},
};

/* Every command table, NULL-terminated. */
static const struct ctl_cmd *const cmd_tables[] = {
    ctl_kv_cmds,      ctl_maint_cmds, ctl_snapshot_cmds, ctl_restore_cmds,
    ctl_auth_cmds,    ctl_conc_cmds,  ctl_cluster_cmds,  ctl_check_cmds,
    misc_cmds,        NULL};

/* Is `name` (without dashes) a bool flag anywhere? Used only to find the
 * command words before the command's own flags are known. */
static int any_bool_flag(const char *name, size_t len, char shorthand)
{
    struct flag *sets[2] = {global_flags, NULL};
    struct flag *f = find_flag(sets, name, len, shorthand);
    if (f) {
        return f->type == F_BOOL;
    }
    for (size_t t = 0; cmd_tables[t]; t++) {
        for (const struct ctl_cmd *c = cmd_tables[t]; c->path; c++) {
            sets[0] = c->flags;
            f = find_flag(sets, name, len, shorthand);
            if (f) {
                return f->type == F_BOOL;
            }
        }
    }
    return 1;
}

/* SIGPIPE as a Go program (etcdctl) gets it: a write to a socket whose
 * server died is an error the call reports (libuv writes with plain
 * write(2), so without this keelctl would die instead); a write to a
 * stdout/stderr whose reader is gone still kills the program, so
 * `keelctl watch k | head -1` ends as etcdctl's does. A pipe whose reader
 * closed reports POLLERR on its write end. Only async-signal-safe calls. */
static void ctl_on_sigpipe(int sig)
{
    struct pollfd p[2] = {{.fd = 1}, {.fd = 2}};
    if (poll(p, 2, 0) > 0 &&
        ((p[0].revents & POLLERR) || (p[1].revents & POLLERR))) {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

int main(int argc, char **argv)
{
    struct sigaction sa = {.sa_handler = ctl_on_sigpipe};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    const char *api = getenv("ETCDCTL_API");
    if (api != NULL && strcmp(api, "2") == 0) {
        /* etcdctl 2's backup is for etcd data dirs; keelctl's own backup
         * (keel data dirs, the same flags) serves both APIs */
        int rc = ctl_v2_main(argc - 1, argv + 1);
        if (rc >= 0) {
            return rc;
        }
    }
    ctl_argc = argc;
    ctl_argv = argv;
    /* cobra's hidden callbacks of the completion scripts */
    if (argc > 2 && (strcmp(argv[1], "__complete") == 0 ||
                     strcmp(argv[1], "__completeNoDesc") == 0)) {
        return complete_run(argc - 2, argv + 2,
                            strcmp(argv[1], "__completeNoDesc") == 0);
    }
    /* 1. The command words, skipping flags and their values. */
    char *words[8];
    size_t nwords = 0;
    for (int i = 1; i < argc && nwords < 3; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            break;
        }
        if (a[0] == '-' && a[1] != '\0') {
            if (a[1] == '-') {
                const char *eq = strchr(a + 2, '=');
                if (!eq && !any_bool_flag(a + 2, strlen(a + 2), 0)) {
                    i++;
                }
            } else if (a[2] == '\0' && !any_bool_flag(NULL, 0, a[1])) {
                i++;
            }
            continue;
        }
        words[nwords++] = a;
    }
    const struct ctl_cmd *cmd = NULL;
    size_t best = 0;
    for (size_t t = 0; cmd_tables[t]; t++) {
        for (const struct ctl_cmd *c = cmd_tables[t]; c->path; c++) {
            /* Match the command's words against the first words. */
            char path[64];
            snprintf(path, sizeof(path), "%s", c->path);
            size_t k = 0;
            int ok = 1;
            for (char *tok = strtok(path, " "); tok; tok = strtok(NULL, " ")) {
                if (k >= nwords || strcmp(tok, words[k]) != 0) {
                    ok = 0;
                    break;
                }
                k++;
            }
            if (ok && k > best) {
                best = k;
                cmd = c;
            }
        }
    }
    if (cmd == NULL) {
        /* etcdctl's help data knows more commands than keelctl runs:
         * groups ("lease"), and leaves keelctl lacks ("migrate",
         * "completion bash"). Longest match, as cobra's Find. */
        int is_help = nwords > 0 && strcmp(words[0], "help") == 0;
        size_t first = is_help ? 1 : 0;
        char found[128] = "", tryp[128] = "";
        size_t matched = 0;
        for (size_t i = first; i < nwords; i++) {
            size_t l = strlen(tryp);
            snprintf(tryp + l, sizeof(tryp) - l, "%s%s", i > first ? " " : "",
                     words[i]);
            if (!help_print_exists(tryp)) {
                break;
            }
            snprintf(found, sizeof(found), "%s", tryp);
            matched++;
        }
        if (is_help || nwords == 0 || matched > 0) {
            help_path = is_help ? "help" : ctl_strdup(found);
            int no_desc = 0;
            struct flag comp_flags[] = {
                {"no-descriptions", 0, F_BOOL, &no_desc, 0}, {NULL, 0, 0, NULL, 0}};
            int is_script = !is_help && strncmp(found, "completion ", 11) == 0;
            struct flag *gsets[] = {global_flags, is_script ? comp_flags : NULL, NULL};
            char **gpos = calloc((size_t)argc + 1, sizeof(char *));
            parse_flags(argc - 1, argv + 1, gsets, gpos);
            free(gpos);
            if (is_help && !help_requested) {
                if (matched == 0 && nwords > 1) {
                    /* cobra: the topic as Go's %#q of the words, then
                     * the root's usage (no help flag registered yet) */
                    fprintf(stderr, "Unknown help topic [");
                    for (size_t i = 1; i < nwords; i++) {
                        fprintf(stderr, "%s`%s`", i > 1 ? " " : "", words[i]);
                    }
                    fprintf(stderr, "]\n");
                    help_print_without_help_flag("");
                    return 0;
                }
                help_path = ctl_strdup(found);
            }
            if (is_script && !help_requested) {
                if (matched < nwords) {
                    /* the shell commands take no arguments (cobra's NoArgs) */
                    help_print(help_path);
                    for (int k = 0; k < 2; k++) {
                        fprintf(stderr, "Error: unknown command \"%s\" for \"etcdctl %s\"\n%s",
                                words[matched], found, k ? "" : "\n");
                    }
                    return EXIT_ERROR;
                }
                complete_script(found + 11, no_desc);
                return 0;
            }
            if (!help_requested && !is_help && nwords > 0 &&
                !help_is_group(help_path)) {
                ctl_die(EXIT_BAD_FEATURE, "\"%s\" is not implemented by keelctl",
                        help_path);
            }
            help_print(help_path);
            return 0;
        }
        fprintf(stderr, "Error: unknown command \"%s\" for \"etcdctl\"\n"
                        "Run 'etcdctl --help' for usage.\n",
                words[0]);
        fprintf(stderr, "Error: unknown command \"%s\" for \"etcdctl\"\n",
                words[0]);
        return EXIT_ERROR;
    }

    /* 2. Flags, with the command words removed from the positionals. */
    help_path = cmd->path;
    struct flag *sets[] = {global_flags, cmd->flags, NULL};
    char **pos = calloc((size_t)argc + 1, sizeof(char *));
    int npos = parse_flags(argc - 1, argv + 1, sets, pos);
    if (help_requested) {
        help_print(help_path);
        free(pos);
        return 0;
    }
    run_cmd = cmd;
    cmd->run(npos - (int)best, pos + best);
    if (shared) {
        keel_sync_close(shared);
    }
    free(pos);
    return 0;
}
