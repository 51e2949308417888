/*
 * keelctl internals: the flag model (cobra/pflag-like), the shared client,
 * error exits with etcdctl's exit codes, and the output helpers that
 * reproduce etcdctl 3.4's printers byte for byte.
 */
#ifndef KEELCTL_H
#define KEELCTL_H

#include <stdint.h>
#include <stdio.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel.h"

/* etcd: etcdctl/ctlv3/command/error.go */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_BAD_CONNECTION = 2,
    EXIT_INVALID_INPUT = 3,
    EXIT_BAD_FEATURE = 4,
    EXIT_INTERRUPTED = 5,
    EXIT_IO = 6,
    EXIT_BAD_ARGS = 128,
};

enum flag_type { F_BOOL, F_STRING, F_INT64, F_DURATION, F_STRSLICE };

struct flag
{
    const char *name;
    char shorthand;
    enum flag_type type;
    void *ptr; /* int*, const char**, int64_t*, uint64_t* (ms), char*** */
    int changed;
};

struct ctl_cmd
{
    const char *path; /* "lease grant" */
    struct flag *flags; /* terminated by {NULL} */
    void (*run)(int argc, char **argv);
};

/* Global flags (etcd: etcdctl/ctlv3/ctl.go). */
struct ctl_globals
{
    char **endpoints;
    size_t n_endpoints;
    uint64_t dial_timeout_ms;
    uint64_t command_timeout_ms;
    const char *write_out;
    int hex;
    const char *user;
    const char *password;
    int debug;
    int command_timeout_set; /* --command-timeout given (flag or env) */
};
extern struct ctl_globals g;
/* The raw command line (watch parses "--" itself, as etcdctl does). */
extern int ctl_argc;
extern char **ctl_argv;

enum ctl_format { FMT_SIMPLE, FMT_JSON, FMT_FIELDS, FMT_PROTOBUF, FMT_TABLE };
extern enum ctl_format ctl_fmt;
/* Set while a command talks to one endpoint directly, as clientv3's
 * Maintenance does (its log lines name "passthrough:///<ep>"). */
extern int ctl_passthrough;

/* "Error: <msg>" on stderr and exit(code) (etcd: ExitWithError). */
_Noreturn void ctl_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The shared client (created on first use, after validating -w, as
 * etcdctl's mustClientFromCmd). */
struct keel_sync *ctl_client(void);
/* A client on other endpoints (endpoint health/status use one each). */
struct keel_sync *ctl_client_for(const char *const *eps, size_t n);
/* The same with its own TLS settings (NULL: cleartext) and, when
 * with_auth, the --user credentials (make-mirror's destination has
 * neither of the global ones). */
struct keel_sync *ctl_client_with(const char *const *eps, size_t n,
                                  const struct keel_tls_config *tls,
                                  int with_auth);
/* An asynchronous client on `loop` with the global endpoints, TLS and
 * credentials (check perf/datascale run many at once). */
struct keel_client *ctl_async_client(uv_loop_t *loop);
/* The --endpoints joined by spaces, as Go prints a []string inside its
 * brackets. In the arena. */
const char *ctl_endpoint_list(void);
/* The global TLS settings (--cacert/--cert/--key...), NULL when none. */
const struct keel_tls_config *ctl_tls(void);
/* etcdctl's newClientCfg TLS rules into *tls; 1 when TLS is configured.
 * Exits with etcdctl's errors for unusable files. */
int ctl_tls_config(const char *cert, const char *key, const char *cacert,
                   int insecure_transport, int skip_verify,
                   struct keel_tls_config *tls);

/* Run a unary call with the command timeout. On failure logs clientv3's
 * retry-interceptor warning to stderr and returns the call's status; the
 * call is cleaned up by the caller either way. */
int ctl_call(struct keel_sync *s, struct keel_call *call, const char *path,
             const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, unsigned flags);

/* clientv3's error text for a failed call: etcd's own string when it is one
 * of rpctypes' errors, "context deadline exceeded" for the deadline, else
 * "rpc error: code = X desc = Y". Static storage. */
const char *ctl_err_text(const struct keel_call *call);

/* Output helpers (keelctl_print.c). */
void print_json_msg(const ProtobufCMessage *m); /* + newline */
void json_msg(FILE *f, const ProtobufCMessage *m);
void json_string(FILE *f, const char *s, size_t len);
/* json_string for files that include jansson. */
void go_json_string(FILE *f, const char *s, size_t len);
/* The fields of a header without braces (clientv3 structs embed it). */
void json_flat_header(const Etcdserverpb__ResponseHeader *h, int *first);
void print_protobuf(const ProtobufCMessage *m);
void go_quote(FILE *f, const uint8_t *s, size_t len); /* Go's %q */
void print_kv_simple(const Mvccpb__KeyValue *kv, int value_only);
void fields_hdr(const Etcdserverpb__ResponseHeader *h);
void fields_kv(const char *pfx, const Mvccpb__KeyValue *kv);
void humanize_bytes(uint64_t n, char *out, size_t len);
void go_duration(uint64_t ns, char *out, size_t len);
/* tablewriter: header row + rows of cells, right-aligned, centred header. */
void print_table(const char *const *hdr, size_t ncols, char ***rows,
                 size_t nrows);
/* "table/fields/... not supported as output format" (ExitBadFeature). */
_Noreturn void ctl_unsupported_format(void);

/* Memory that lives until exit (parsed requests, argument lists): one
 * arena, so error exits from anywhere leak nothing. Zeroed; never NULL
 * (out of memory exits). */
void *ctl_alloc(size_t n);
char *ctl_strndup(const char *s, size_t n);
char *ctl_strdup(const char *s);

/* zap's production JSON line on stderr: etcdctl's own logger writes "ts"
 * as epoch seconds (iso_ts 0), clientv3's as ISO 8601 (1). `fields` is
 * ",\"k\":v..." or "". */
void ctl_zap(int iso_ts, const char *level, const char *caller,
             const char *msg, const char *fields);
/* ",\"name\":\"value\"" JSON-escaped, in the arena. */
char *ctl_jfield(const char *name, const char *value);
/* Go's text for an errno: strerror in lower case. Static storage. */
const char *ctl_go_errno(int e);
/* Validate -w (and --hex) as etcdctl's initDisplayFromCmd, for commands
 * that print without a client. */
void ctl_init_display(void);

/* A progress line on stderr, only when stderr is a terminal: bytes done
 * (of total when known, with a bar) and the rate, redrawn at most 10 times
 * a second; ctl_progress_end clears it. */
struct ctl_progress
{
    const char *what;
    uint64_t total; /* 0 = unknown */
    uint64_t t0_ns, last_ns;
    int on;
};
void ctl_progress_start(struct ctl_progress *p, const char *what,
                        uint64_t total);
void ctl_progress_update(struct ctl_progress *p, uint64_t done);
void ctl_progress_end(struct ctl_progress *p);

/* etcdctl's display.Get for the current -w (keelctl_kv.c). */
void ctl_print_get(const Etcdserverpb__RangeResponse *r, int value_only);

/* ETCDCTL_API=2: etcdctl 2's commands (keelctl_v2.c); argv without the
 * program name; returns the exit code, or -1 for `backup` (keelctl's own,
 * run by main as with ETCDCTL_API=3). */
int ctl_v2_main(int argc, char **argv);
/* etcdctl 2's help texts by invocation (keelctl_v2_help_data.c, generated
 * by tools/gen_keelctl_v2_help.py); ends with {NULL, NULL}. */
struct ctl_v2_help
{
    const char *key, *text;
};
extern const struct ctl_v2_help ctl_v2_help[];

/* Parsing helpers. */
int parse_go_duration(const char *s, uint64_t *ms);
int parse_int64(const char *s, int base, int64_t *out, char *err,
                size_t errlen);

/* Commands (keelctl_kv.c, keelctl_maint.c). */
extern const struct ctl_cmd ctl_kv_cmds[];
extern const struct ctl_cmd ctl_maint_cmds[];
extern const struct ctl_cmd ctl_snapshot_cmds[];
extern const struct ctl_cmd ctl_restore_cmds[]; /* keelctl_restore.c */
extern const struct ctl_cmd ctl_auth_cmds[];
extern const struct ctl_cmd ctl_conc_cmds[]; /* keelctl_conc.c */
extern const struct ctl_cmd ctl_cluster_cmds[]; /* keelctl_cluster.c */
extern const struct ctl_cmd ctl_check_cmds[]; /* keelctl_check.c */

#endif /* KEELCTL_H */
