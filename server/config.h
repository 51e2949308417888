/*
 * keel's configuration: every etcd 3.4 server flag, from the command line
 * (Go flag syntax), ETCD_* environment variables or a YAML --config-file,
 * with etcd's defaults, validation rules and error texts.
 *
 * Sources of truth (read, not copied): etcd 3.4 etcdmain/config.go (flag set,
 * env handling, config-file switch), etcdmain/help.go (help text),
 * embed/config.go (defaults, YAML keys, Validate()), pkg/flags (URL lists,
 * env rules) and the behaviour of the real /usr/bin/etcd 3.4.23.
 *
 * Usage (server/main.c):
 *
 *     struct keel_config cfg;
 *     config_init(&cfg);                       // etcd defaults
 *     rv = config_parse(&cfg, argc, argv, environ);
 *     ... rv tells main what to do (run, help, version, which error) ...
 *     config_close(&cfg);
 *
 * Ownership: every string and list reachable from struct keel_config lives in
 * cfg->arena and is freed by config_close(). Readers borrow them.
 */
#ifndef KEEL_CONFIG_H
#define KEEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "keel_arena.h"

#define KEEL_VERSION "0.1.0"
/* The etcd release keel speaks for (reported by --version and /version). */
#define KEEL_ETCD_VERSION "3.4.23"
#define KEEL_ETCD_CLUSTER_VERSION "3.4"

/* etcd: DefaultQuotaBytes (etcdserver/quota.go), used when the flag is 0. */
#define CONFIG_DEFAULT_QUOTA_BYTES ((int64_t)2 * 1024 * 1024 * 1024)

/* etcd: ErrUnsetAdvertiseClientURLsFlag (embed/config.go); main adds etcd's
 * second line when it sees this error. */
#define CONFIG_ERR_UNSET_ACURLS                                              \
    "--advertise-client-urls is required when --listen-client-urls is set " \
    "explicitly"

/* One parsed URL, e.g. http://127.0.0.1:2379 or unix://localhost:1234. */
struct config_url
{
    const char *str;    /* as etcd prints it: scheme lowercased, no path */
    const char *scheme; /* "http", "https", "unix" or "unixs" */
    const char *host;   /* without IPv6 brackets; may be "" */
    const char *port;   /* digits as given; may be "" */
};

/* A URL list, sorted and without duplicates (etcd's UniqueURLs). */
struct config_urls
{
    const struct config_url *v;
    size_t n;
};

/* A string list (etcd's StringsValue / UniqueStringsValue). */
struct config_strs
{
    const char *const *v;
    size_t n;
};

struct config_tls
{
    const char *cert_file;
    const char *key_file;
    bool client_cert_auth;
    const char *crl_file;
    const char *trusted_ca_file;
    const char *allowed_cn;       /* peer only */
    const char *allowed_hostname;
    bool auto_tls;
    bool skip_client_san_verify; /* peer only (experimental flag) */
};

/* Where a flag's value came from. */
enum config_source {
    CONFIG_SRC_DEFAULT = 0,
    CONFIG_SRC_CMDLINE,
    CONFIG_SRC_ENV,
    CONFIG_SRC_FILE,
};

/* A line the parser wants logged once the logger is up (etcd prints these
 * while parsing, before its logger exists; keel defers them so that they
 * come out in the chosen format). */
enum config_note_kind {
    CONFIG_NOTE_LOG, /* a log record: level, pkg, msg (+ one field for zap) */
    CONFIG_NOTE_RAW, /* a raw stderr line, as etcd's "[WARNING] ..." */
};

struct config_note
{
    enum config_note_kind kind;
    int level;           /* enum log_level (log.h) */
    const char *pkg;     /* capnslog package, e.g. "pkg/flags" */
    const char *text;    /* capnslog message / raw line */
    const char *zap_msg; /* zap message (NULL: same as text) */
    const char *key;     /* optional zap field */
    const char *value;
};

#define CONFIG_MAX_NOTES 64
#define CONFIG_MAX_FLAGS 160

struct keel_config
{
    /* --- Member (etcd: embed.Config) --- */
    const char *name;                  /* name */
    const char *data_dir;              /* data-dir; "" until defaulted */
    const char *wal_dir;               /* wal-dir */
    uint64_t snapshot_count;           /* snapshot-count */
    uint64_t heartbeat_ms;             /* heartbeat-interval (TickMs) */
    uint64_t election_ms;              /* election-timeout */
    bool initial_election_tick_advance;
    struct config_urls listen_peer_urls;
    struct config_urls listen_client_urls;
    struct config_urls listen_metrics_urls;
    uint64_t max_snapshots;
    uint64_t max_wals;
    int64_t quota_backend_bytes;      /* 0: 2 GiB; <0: no quota */
    int64_t backend_batch_interval_ns;
    int64_t backend_batch_limit;
    uint64_t max_txn_ops;
    uint64_t max_request_bytes;
    uint32_t max_concurrent_streams;
    int64_t grpc_keepalive_min_time_ns;
    int64_t grpc_keepalive_interval_ns;
    int64_t grpc_keepalive_timeout_ns;
    bool socket_reuse_port;    /* etcd 3.5 flag, accepted and ignored */
    bool socket_reuse_address; /* etcd 3.5 flag, accepted and ignored */

    /* --- Clustering --- */
    struct config_urls initial_advertise_peer_urls;
    struct config_urls advertise_client_urls; /* n == 0: unset */
    const char *initial_cluster;
    const char *initial_cluster_state; /* "new" | "existing" */
    const char *initial_cluster_token;
    const char *discovery;
    const char *discovery_fallback; /* "proxy" | "exit" */
    const char *discovery_proxy;
    const char *discovery_srv;
    const char *discovery_srv_name;
    bool strict_reconfig_check;
    bool pre_vote;
    const char *auto_compaction_retention;
    const char *auto_compaction_mode; /* "periodic" | "revision" */
    bool enable_v2;

    /* --- Security --- */
    struct config_tls client_tls;
    struct config_tls peer_tls;
    struct config_strs cipher_suites;
    struct config_strs cors;           /* "*" or origins */
    struct config_strs host_whitelist; /* "*" or host names */

    /* --- Auth --- */
    const char *auth_token;
    uint64_t bcrypt_cost;
    uint64_t auth_token_ttl;

    /* --- Profiling and monitoring --- */
    bool enable_pprof;
    const char *metrics; /* "basic" | "extensive" */

    /* --- Logging --- */
    const char *logger;             /* "capnslog" | "zap" */
    struct config_strs log_outputs; /* "default", "stderr", "stdout", paths */
    struct config_strs log_output;  /* deprecated --log-output */
    const char *log_level;          /* debug|info|warn|error|panic|fatal */
    bool debug;
    const char *log_package_levels; /* "etcdmain=DEBUG,..." (capnslog) */

    /* --- v2 proxy (not supported; "off" only) --- */
    const char *proxy;
    uint64_t proxy_failure_wait_ms;
    uint64_t proxy_refresh_interval_ms;
    uint64_t proxy_dial_timeout_ms;
    uint64_t proxy_write_timeout_ms;
    uint64_t proxy_read_timeout_ms;

    /* --- Experimental --- */
    bool experimental_initial_corrupt_check;
    int64_t experimental_corrupt_check_time_ns;
    const char *experimental_enable_v2v3;
    const char *experimental_backend_bbolt_freelist_type;
    bool experimental_enable_lease_checkpoint;
    bool experimental_enable_lease_checkpoint_persist;
    int64_t experimental_compaction_batch_limit;
    int64_t experimental_watch_progress_notify_interval_ns;
    int64_t experimental_warning_apply_duration_ns;

    /* --- Unsafe, gateway --- */
    bool force_new_cluster;
    bool unsafe_no_fsync;
    bool enable_grpc_gateway;

    /* --- Invocation --- */
    const char *config_file; /* --config-file or ETCD_CONFIG_FILE */
    bool print_version;
    const char *progname;    /* basename of argv[0], for messages */

    /* --- Parser state (read-only for users) --- */
    unsigned char source[CONFIG_MAX_FLAGS]; /* enum config_source per flag */
    struct config_note notes[CONFIG_MAX_NOTES];
    size_t nnotes;
    char errmsg[1024]; /* set when config_parse() fails */
    struct keel_arena arena;
};

/* What config_parse() tells main to do. Negative values are failures; the
 * message is in cfg->errmsg. */
enum config_result {
    CONFIG_RUN = 0,      /* start the server */
    CONFIG_HELP = 1,     /* print help (config_print_help), exit 0 */
    CONFIG_VERSION = 2,  /* print version (config_print_version), exit 0 */
    /* Go flag-package error ("flag provided but not defined: -x"): print
     * errmsg and the usage text to stderr, exit 2 (as etcd). */
    CONFIG_EUSAGE = -1,
    /* Verification error: log "error verifying flags, <errmsg>. See 'etcd
     * --help'." and exit 1 (as etcd). */
    CONFIG_EVERIFY = -2,
    /* Fatal from the flags package (env var shadowed by a flag): log
     * errmsg at critical level under pkg/flags, exit 1 (as etcd). */
    CONFIG_EFATAL = -3,
    /* Printed raw to stderr, exit 1 (etcd: bad URL in a config file). */
    CONFIG_ERAW = -4,
    /* Out of memory. */
    CONFIG_ENOMEM = -5,
};

/* Fill cfg with etcd 3.4's defaults (keel's where noted in the flag table:
 * pre-vote on). Never fails: the arena allocates lazily and defaults are
 * static strings. */
void config_init(struct keel_config *cfg);

/* Free everything config_init/config_parse allocated. */
void config_close(struct keel_config *cfg);

/* Parse argv (argv[0] is the program) and the environment envp (NULL-ended
 * "KEY=VALUE" strings, may be NULL), or the config file if one is named by
 * --config-file / ETCD_CONFIG_FILE (then other flags and env are ignored,
 * as etcd does). Validates as etcd's Config.Validate(). Returns an enum
 * config_result. On CONFIG_RUN, cfg->notes holds lines to log. */
int config_parse(struct keel_config *cfg, int argc, char **argv,
                 char **envp);

/* The same checks as etcd's Config.Validate() (plus keel's refusals for
 * unsupported flags); config_parse() calls it. Returns 0 or CONFIG_EVERIFY
 * with cfg->errmsg set. */
int config_validate(struct keel_config *cfg);

/* If data_dir is empty, set it to "<name>.etcd" and return 1 (the caller
 * logs etcd's warning); else return 0. */
int config_default_data_dir(struct keel_config *cfg);

/* etcd's quota rule: 0 -> 2 GiB; negative -> 0 (no quota). */
int64_t config_quota_bytes(const struct keel_config *cfg);

/* etcd's help output: the usage text goes to `err`, the flag list to `out`
 * (etcd prints them on stderr and stdout). */
void config_print_usage(const struct keel_config *cfg, FILE *err);
void config_print_help(const struct keel_config *cfg, FILE *out);

/* etcd's --version output plus a keel line. */
void config_print_version(FILE *out);

/* "linux/amd64" style, as Go's GOOS/GOARCH. */
const char *config_os_arch(void);

/* The flag table as a Markdown table (docs/COMPATIBILITY.md "Flags"). */
void config_flags_markdown(FILE *out);

/* Where a flag's value came from (CONFIG_SRC_*), or -1 for an unknown name
 * (name without dashes, e.g. "data-dir"). */
int config_flag_source(const struct keel_config *cfg, const char *name);

/* Join a URL list with commas into buf (as etcd prints types.URLs). */
const char *config_urls_join(const struct config_urls *u, char *buf,
                             size_t len);
const char *config_strs_join(const struct config_strs *s, char *buf,
                             size_t len);

/* Format a duration in nanoseconds as Go's time.Duration.String() does
 * ("1h0m0s", "100ms", "0s"). */
const char *config_duration_str(int64_t ns, char *buf, size_t len);

/* An errno as Go's syscall.Errno prints it ("no such file or directory":
 * glibc's text with a lower-case first letter). Returns buf. */
const char *config_go_strerror(int err, char *buf, size_t len);

/* Parse a Go duration ("300ms", "1h2m", "1.5s"). 0 on success, -1 on
 * error. */
int config_parse_duration(const char *s, int64_t *ns);

/* --auto-compaction-retention as etcd reads it at startup: a plain number
 * is hours (periodic mode) or revisions (revision mode), anything else a Go
 * duration. 0 and *out, or -1 with etcd's message ("error parsing
 * CompactionRetention: time: invalid duration \"abc\""). */
int config_compaction_retention(const struct keel_config *cfg, int64_t *out,
                                char *err, size_t errlen);

/* Parse a comma-separated URL list as etcd's types.NewURLs (sorted,
 * deduplicated). On error returns -1 and writes etcd's message to err. */
int config_parse_urls(struct keel_config *cfg, const char *s,
                      struct config_urls *out, char *err, size_t errlen);

#endif /* KEEL_CONFIG_H */
