/*
 * Command line, ETCD_* environment and YAML config file, as etcd 3.4.
 *
 * Happy path (config_parse):
 *   1. argv with Go's flag-package rules (etcdmain/config.go newConfig and
 *      Go's flag.FlagSet.parseOne): "-f", "--f", "-f=v", "--f v"; booleans
 *      take a value only with "="; parsing stops at "--" or the first
 *      non-flag argument, which is then an error ("'x' is not a valid
 *      flag"). -h/--help asks for help.
 *   2. --version ends parsing (before env and config file, as etcd).
 *   3. A config file (--config-file, else ETCD_CONFIG_FILE) replaces all
 *      other flags and env vars: defaults + the YAML keys only.
 *   4. Otherwise ETCD_<FLAG> env vars fill flags not given on the command
 *      line (pkg/flags SetFlagsFromEnv): an env var for a flag that was also
 *      given is fatal, unknown ETCD_* vars are warned about.
 *   5. Derived values (advertise-client-urls dropped when only
 *      listen-client-urls was given, initial-cluster from the name) and
 *      config_validate() (embed.Config.Validate's checks, same texts).
 *
 * Failure modes: each error returns an enum config_result telling main how
 * etcd reports it (usage error: exit 2; verification error: exit 1), with
 * etcd's exact text in cfg->errmsg.
 *
 * The flag table below is the single list of flags: parser, env names, YAML
 * keys, --help text and the Markdown for docs/COMPATIBILITY.md all come from
 * it. Each row says whether keel implements the flag:
 *   yes      implemented now;
 *   pending  parsed, validated and stored in struct keel_config; takes effect
 *            when the subsystem that consumes it is wired in (the note says
 *            which); nothing is served yet;
 *   ignored  harmless to ignore (a bbolt or Go runtime knob, or something
 *            keel always does); setting it logs a warning;
 *   no       not supported and not harmless to ignore: setting it to a
 *            non-default value is a startup error.
 * If you change a row, regenerate the Flags section of docs/COMPATIBILITY.md
 * (tests/server_config checks that it matches).
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "log.h"

/* ------------------------------------------------------------------------ */
/* The flag table                                                            */

enum flag_type {
    T_STRING,
    T_BOOL,
    T_UINT,     /* Go uint (64-bit) */
    T_INT,      /* Go int (64-bit) */
    T_UINT32,   /* etcd's uint32Value: raw strconv errors */
    T_DURATION, /* Go time.Duration */
    T_URLS,     /* flags.UniqueURLs */
    T_CORS,     /* flags.UniqueURLs with "*" allowed */
    T_STRS,     /* flags.StringsValue: split on "," */
    T_USTRS,    /* flags.UniqueStringsValue: split, dedup, sort */
    T_CHOICE,   /* flags.SelectiveStringValue */
    T_IGNORED,  /* flags.IgnoredFlag: a bool flag that only warns */
};

enum flag_status { FLAG_YES, FLAG_PENDING, FLAG_IGNORED, FLAG_NO };

enum flag_section {
    S_MEMBER,
    S_CLUSTER,
    S_SECURITY,
    S_AUTH,
    S_PROFILING,
    S_LOGGING,
    S_PROXY,
    S_EXPERIMENTAL,
    S_UNSAFE,
    S_DEPRECATED,
    S_HIDDEN, /* accepted, not in etcd's --help */
    S_COUNT,
};

static const char *const section_title[S_COUNT] = {
    "Member",
    "Clustering",
    "Security",
    "Auth",
    "Profiling and Monitoring",
    "Logging",
    "v2 Proxy (to be deprecated in v4)",
    "Experimental feature",
    "Unsafe feature",
    "TO BE DEPRECATED",
    "Accepted but not listed by etcd --help",
};

/* YAML placement of a flag. */
enum flag_yaml {
    Y_KEY,    /* top-level key with the flag's name */
    Y_NONE,   /* not settable from the config file */
    Y_CLIENT, /* key inside client-transport-security */
    Y_PEER,   /* key inside peer-transport-security */
};

struct flag_def
{
    const char *name;
    enum flag_type type;
    size_t off;
    enum flag_section section;
    const char *def;     /* default as etcd's --help prints it */
    const char *help;    /* etcd's help text */
    const char *choices; /* T_CHOICE: "a|b|c" */
    enum flag_status status;
    const char *note; /* keel's note (help and docs) */
    enum flag_yaml yaml;
    const char *yaml_key; /* Y_CLIENT/Y_PEER: key inside the mapping */
    const char *gotype;   /* Go type, for config-file type errors */
};

#define OFF(field) offsetof(struct keel_config, field)

/* Peer TLS flags: https:// peer URLs carry keel's peer protocol over TLS
 * (server/peer_conn.c), with etcd's checks. */
#define PEER_TLS_NOTE "peer port TLS (https:// peer URLs), as etcd"
#define NOOFF ((size_t)-1)

#define F(sec, nm, ty, field, df, hl, st, nt) \
    {nm, ty, OFF(field), sec, df, hl, NULL, st, nt, Y_KEY, NULL, NULL}
#define FT(sec, nm, ty, field, df, hl, st, nt, gt) \
    {nm, ty, OFF(field), sec, df, hl, NULL, st, nt, Y_KEY, NULL, gt}
#define FC(sec, nm, field, df, hl, ch, st, nt) \
    {nm, T_CHOICE, OFF(field), sec, df, hl, ch, st, nt, Y_KEY, NULL, NULL}
#define FN(sec, nm, ty, field, df, hl, st, nt) \
    {nm, ty, OFF(field), sec, df, hl, NULL, st, nt, Y_NONE, NULL, NULL}
#define FY(sec, nm, ty, field, df, hl, st, nt, y, yk) \
    {nm, ty, OFF(field), sec, df, hl, NULL, st, nt, y, yk, NULL}
#define FI(nm)                                                            \
    {nm, T_IGNORED, NOOFF, S_HIDDEN, "", "", NULL, FLAG_IGNORED,          \
     "etcd 2 flag that etcd 3.4 accepts and ignores", Y_NONE, NULL, NULL}

static const struct flag_def flags[] = {
    /* Member */
    F(S_MEMBER, "name", T_STRING, name, "'default'",
      "Human-readable name for this member.", FLAG_YES, NULL),
    F(S_MEMBER, "data-dir", T_STRING, data_dir, "'${name}.etcd'",
      "Path to the data directory.", FLAG_YES,
      "created with mode 0700, with member/ inside"),
    F(S_MEMBER, "wal-dir", T_STRING, wal_dir, "''",
      "Path to the dedicated wal directory.", FLAG_NO,
      "a dedicated WAL dir is not implemented yet; ignoring it would put "
      "the WAL where a later keel would not look"),
    FT(S_MEMBER, "snapshot-count", T_UINT, snapshot_count, "'100000'",
       "Number of committed transactions to trigger a snapshot to disk.",
       FLAG_YES, "raft log compaction (WAL segments released)", "uint64"),
    F(S_MEMBER, "heartbeat-interval", T_UINT, heartbeat_ms, "'100'",
      "Time (in milliseconds) of a heartbeat interval.", FLAG_YES,
      "raft ticks; validated as etcd"),
    F(S_MEMBER, "election-timeout", T_UINT, election_ms, "'1000'",
      "Time (in milliseconds) for an election to timeout. See tuning "
      "documentation for details.",
      FLAG_YES, "raft election timeout; validated as etcd"),
    F(S_MEMBER, "initial-election-tick-advance", T_BOOL,
      initial_election_tick_advance, "'true'",
      "Whether to fast-forward initial election ticks on boot for faster "
      "election.",
      FLAG_PENDING, "raft"),
    FY(S_MEMBER, "listen-peer-urls", T_URLS, listen_peer_urls,
       "'http://localhost:2380'",
       "List of URLs to listen on for peer traffic.", FLAG_YES,
       "keel's own peer protocol (not etcd's); http or https (peer TLS)",
       Y_KEY, NULL),
    FY(S_MEMBER, "listen-client-urls", T_URLS, listen_client_urls,
       "'http://localhost:2379'",
       "List of URLs to listen on for client traffic.", FLAG_YES,
       "client listeners; validated as etcd", Y_KEY, NULL),
    F(S_MEMBER, "max-snapshots", T_UINT, max_snapshots, "'5'",
      "Maximum number of snapshot files to retain (0 is unlimited).",
      FLAG_PENDING, "storage (snapshots)"),
    F(S_MEMBER, "max-wals", T_UINT, max_wals, "'5'",
      "Maximum number of wal files to retain (0 is unlimited).",
      FLAG_PENDING, "storage (WAL)"),
    FT(S_MEMBER, "quota-backend-bytes", T_INT, quota_backend_bytes, "'0'",
       "Raise alarms when backend size exceeds the given quota (0 defaults "
       "to low space quota).",
       FLAG_YES, "storage quota (0 = 2 GiB); NOSPACE alarm", "int64"),
    FT(S_MEMBER, "backend-batch-interval", T_DURATION,
       backend_batch_interval_ns, "''",
       "BackendBatchInterval is the maximum time before commit the backend "
       "transaction.",
       FLAG_IGNORED, "bbolt batching; keel commits LMDB once per apply batch",
       "time.Duration"),
    F(S_MEMBER, "backend-batch-limit", T_INT, backend_batch_limit, "'0'",
      "BackendBatchLimit is the maximum operations before commit the backend "
      "transaction.",
      FLAG_IGNORED, "bbolt batching; keel commits LMDB once per apply batch"),
    F(S_MEMBER, "max-txn-ops", T_UINT, max_txn_ops, "'128'",
      "Maximum number of operations permitted in a transaction.",
      FLAG_YES, "KV service (Txn)"),
    F(S_MEMBER, "max-request-bytes", T_UINT, max_request_bytes, "'1572864'",
      "Maximum client request size in bytes the server will accept.",
      FLAG_YES, "gRPC/HTTP transport"),
    FT(S_MEMBER, "max-concurrent-streams", T_UINT32, max_concurrent_streams,
       "'math.MaxUint32'",
       "Maximum concurrent streams that each client can open at a time.",
       FLAG_YES, "HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS", "uint32"),
    FT(S_MEMBER, "grpc-keepalive-min-time", T_DURATION,
       grpc_keepalive_min_time_ns, "'5s'",
       "Minimum duration interval that a client should wait before pinging "
       "server.",
       FLAG_PENDING, "HTTP/2 transport", "time.Duration"),
    FT(S_MEMBER, "grpc-keepalive-interval", T_DURATION,
       grpc_keepalive_interval_ns, "'2h'",
       "Frequency duration of server-to-client ping to check if a connection "
       "is alive (0 to disable).",
       FLAG_PENDING, "HTTP/2 transport", "time.Duration"),
    FT(S_MEMBER, "grpc-keepalive-timeout", T_DURATION,
       grpc_keepalive_timeout_ns, "'20s'",
       "Additional duration of wait before closing a non-responsive "
       "connection (0 to disable).",
       FLAG_PENDING, "HTTP/2 transport", "time.Duration"),

    /* Clustering */
    FY(S_CLUSTER, "initial-advertise-peer-urls", T_URLS,
       initial_advertise_peer_urls, "'http://localhost:2380'",
       "List of this member's peer URLs to advertise to the rest of the "
       "cluster.",
       FLAG_YES, "member id (as etcd: sha1 of peer URLs + token)", Y_KEY,
       NULL),
    F(S_CLUSTER, "initial-cluster", T_STRING, initial_cluster,
      "'default=http://localhost:2380'",
      "Initial cluster configuration for bootstrapping.", FLAG_YES,
      "bootstrap; follows --name as etcd"),
    FC(S_CLUSTER, "initial-cluster-state", initial_cluster_state, "'new'",
       "Initial cluster state ('new' or 'existing').", "new|existing",
       FLAG_YES, "existing: fetches the member list over the peer port"),
    F(S_CLUSTER, "initial-cluster-token", T_STRING, initial_cluster_token,
      "'etcd-cluster'",
      "Initial cluster token for the etcd cluster during bootstrap.\n"
      "    Specifying this can protect you from unintended cross-cluster "
      "interaction when running multiple clusters.",
      FLAG_YES, "bootstrap (member and cluster ids, as etcd)"),
    FY(S_CLUSTER, "advertise-client-urls", T_URLS, advertise_client_urls,
       "'http://localhost:2379'",
       "List of this member's client URLs to advertise to the public.\n"
       "    The client URLs advertised should be accessible to machines that "
       "talk to etcd cluster. etcd client libraries parse these URLs to "
       "connect to the cluster.",
       FLAG_YES, "MemberList; required with --listen-client-urls as etcd",
       Y_KEY, NULL),
    F(S_CLUSTER, "discovery", T_STRING, discovery, "''",
      "Discovery URL used to bootstrap the cluster.", FLAG_NO,
      "discovery service bootstrap is not supported; use --initial-cluster"),
    FC(S_CLUSTER, "discovery-fallback", discovery_fallback, "'proxy'",
       "Expected behavior ('exit' or 'proxy') when discovery services "
       "fails.\n    \"proxy\" supports v2 API only.",
       "proxy|exit", FLAG_IGNORED, "only used with --discovery"),
    F(S_CLUSTER, "discovery-proxy", T_STRING, discovery_proxy, "''",
      "HTTP proxy to use for traffic to discovery service.", FLAG_IGNORED,
      "only used with --discovery"),
    F(S_CLUSTER, "discovery-srv", T_STRING, discovery_srv, "''",
      "DNS srv domain used to bootstrap the cluster.", FLAG_NO,
      "DNS SRV bootstrap is not supported; use --initial-cluster"),
    F(S_CLUSTER, "discovery-srv-name", T_STRING, discovery_srv_name, "''",
      "Suffix to the dns srv name queried when bootstrapping.", FLAG_IGNORED,
      "only used with --discovery-srv"),
    F(S_CLUSTER, "strict-reconfig-check", T_BOOL, strict_reconfig_check,
      "'true'", "Reject reconfiguration requests that would cause quorum loss.",
      FLAG_YES, "MemberAdd/Remove/Promote checks as etcd"),
    F(S_CLUSTER, "pre-vote", T_BOOL, pre_vote, "'true'",
      "Enable to run an additional Raft election phase.", FLAG_PENDING,
      "raft; keel defaults to true (etcd 3.5's default), etcd 3.4 to false"),
    F(S_CLUSTER, "auto-compaction-retention", T_STRING,
      auto_compaction_retention, "'0'",
      "Auto compaction retention length. 0 means disable auto compaction.",
      FLAG_PENDING, "compactor"),
    FC(S_CLUSTER, "auto-compaction-mode", auto_compaction_mode,
       "'periodic'",
       "Interpret 'auto-compaction-retention' one of: periodic|revision. "
       "'periodic' for duration based retention, defaulting to hours if no "
       "time unit is provided (e.g. '5m'). 'revision' for revision number "
       "based retention.",
       NULL, FLAG_PENDING, "compactor; validated as etcd"),
    F(S_CLUSTER, "enable-v2", T_BOOL, enable_v2, "'false'",
      "Accept etcd V2 client requests.", FLAG_YES, NULL),

    /* Security */
    FY(S_SECURITY, "cert-file", T_STRING, client_tls.cert_file, "''",
       "Path to the client server TLS cert file.", FLAG_YES,
       "client port TLS (https:// and unixs:// URLs)",
       Y_CLIENT, "cert-file"),
    FY(S_SECURITY, "key-file", T_STRING, client_tls.key_file, "''",
       "Path to the client server TLS key file.", FLAG_YES,
       "client port TLS",
       Y_CLIENT, "key-file"),
    FY(S_SECURITY, "client-cert-auth", T_BOOL, client_tls.client_cert_auth,
       "'false'", "Enable client cert authentication.", FLAG_YES,
       "client port; a client without a valid certificate fails the TLS "
       "handshake, as etcd",
       Y_CLIENT, "client-cert-auth"),
    FN(S_SECURITY, "client-crl-file", T_STRING, client_tls.crl_file, "''",
       "Path to the client certificate revocation list file.", FLAG_YES,
       "client port; serials only; reloaded when the file changes"),
    FN(S_SECURITY, "client-cert-allowed-hostname", T_STRING,
       client_tls.allowed_hostname, "''",
       "Allowed TLS hostname for client cert authentication.", FLAG_YES,
       "client port; the client certificate must be valid for that name "
       "or IP"),
    FY(S_SECURITY, "trusted-ca-file", T_STRING, client_tls.trusted_ca_file,
       "''", "Path to the client server TLS trusted CA cert file.",
       FLAG_YES,
       "client port; as etcd 3.4, a CA file alone already requires client "
       "certificates",
       Y_CLIENT, "trusted-ca-file"),
    FY(S_SECURITY, "auto-tls", T_BOOL, client_tls.auto_tls, "'false'",
       "Client TLS using generated certificates.", FLAG_YES,
       "self-signed ECDSA P-521 certificate in <data-dir>/fixtures/client, "
       "as etcd",
       Y_CLIENT, "auto-tls"),
    FY(S_SECURITY, "peer-cert-file", T_STRING, peer_tls.cert_file, "''",
       "Path to the peer server TLS cert file.", FLAG_YES, PEER_TLS_NOTE,
       Y_PEER, "cert-file"),
    FY(S_SECURITY, "peer-key-file", T_STRING, peer_tls.key_file, "''",
       "Path to the peer server TLS key file.", FLAG_YES, PEER_TLS_NOTE,
       Y_PEER, "key-file"),
    FY(S_SECURITY, "peer-client-cert-auth", T_BOOL,
       peer_tls.client_cert_auth, "'false'",
       "Enable peer client cert authentication.", FLAG_YES, PEER_TLS_NOTE,
       Y_PEER, "client-cert-auth"),
    FY(S_SECURITY, "peer-trusted-ca-file", T_STRING,
       peer_tls.trusted_ca_file, "''",
       "Path to the peer server TLS trusted CA file.", FLAG_YES,
       PEER_TLS_NOTE, Y_PEER, "trusted-ca-file"),
    FN(S_SECURITY, "peer-cert-allowed-cn", T_STRING, peer_tls.allowed_cn,
       "''", "Required CN for client certs connecting to the peer endpoint.",
       FLAG_YES, PEER_TLS_NOTE),
    FN(S_SECURITY, "peer-cert-allowed-hostname", T_STRING,
       peer_tls.allowed_hostname, "''",
       "Allowed TLS hostname for inter peer authentication.", FLAG_YES,
       PEER_TLS_NOTE),
    FY(S_SECURITY, "peer-auto-tls", T_BOOL, peer_tls.auto_tls, "'false'",
       "Peer TLS using self-generated certificates if --peer-key-file and "
       "--peer-cert-file are not provided.",
       FLAG_YES,
       "self-signed ECDSA P-521 certificate in <data-dir>/fixtures/peer; "
       "members do not verify each other's, as etcd",
       Y_PEER, "auto-tls"),
    FN(S_SECURITY, "peer-crl-file", T_STRING, peer_tls.crl_file, "''",
       "Path to the peer certificate revocation list file.", FLAG_YES,
       "peer port; serials only; reloaded when the file changes"),
    FT(S_SECURITY, "cipher-suites", T_STRS, cipher_suites, "''",
       "Comma-separated list of supported TLS cipher suites between "
       "client/server and peers (empty will be auto-populated by Go).",
       FLAG_YES,
       "client and peer ports (Go's names, mapped to OpenSSL's; TLS 1.3 "
       "suites are not restricted, as in Go)",
       "[]string"),
    FT(S_SECURITY, "cors", T_CORS, cors, "'*'",
       "Comma-separated whitelist of origins for CORS, or cross-origin "
       "resource sharing, (empty or * means allow all).",
       FLAG_PENDING, "HTTP gateway", "string"),
    FT(S_SECURITY, "host-whitelist", T_USTRS, host_whitelist, "'*'",
       "Acceptable hostnames from HTTP client requests, if server is not "
       "secure (empty or * means allow all).",
       FLAG_NO,
       "Host checking is not implemented yet; refused rather than ignored "
       "(it protects against DNS rebinding)",
       "string"),

    /* Auth */
    F(S_AUTH, "auth-token", T_STRING, auth_token, "'simple'",
      "Specify a v3 authentication token type and its options ('simple' or "
      "'jwt').",
      FLAG_YES, "simple and jwt (RS, PS, ES, HS)"),
    F(S_AUTH, "bcrypt-cost", T_UINT, bcrypt_cost, "10",
      "Specify the cost / strength of the bcrypt algorithm for hashing auth "
      "passwords. Valid values are between 4 and 31.",
      FLAG_YES, NULL),
    F(S_AUTH, "auth-token-ttl", T_UINT, auth_token_ttl, "300",
      "Time (in seconds) of the auth-token-ttl.", FLAG_YES, NULL),

    /* Profiling and Monitoring */
    F(S_PROFILING, "enable-pprof", T_BOOL, enable_pprof, "'false'",
      "Enable runtime profiling data via HTTP server. Address is at client "
      "URL + \"/debug/pprof/\"",
      FLAG_IGNORED, "Go runtime profiling has no C equivalent"),
    FC(S_PROFILING, "metrics", metrics, "'basic'",
       "Set level of detail for exported metrics, specify 'extensive' to "
       "include histogram metrics.",
       NULL, FLAG_PENDING, "metrics endpoint"),
    FY(S_PROFILING, "listen-metrics-urls", T_URLS, listen_metrics_urls, "''",
       "List of URLs to listen on for the metrics and health endpoints.",
       FLAG_YES, "/metrics and /health; validated as etcd", Y_KEY, NULL),

    /* Logging */
    F(S_LOGGING, "logger", T_STRING, logger, "'capnslog'",
      "Specify 'zap' for structured logging or 'capnslog'. [WARN] 'capnslog' "
      "will be deprecated in v3.5.",
      FLAG_YES, "both formats, as etcd 3.4"),
    FT(S_LOGGING, "log-outputs", T_USTRS, log_outputs, "'default'",
       "Specify 'stdout' or 'stderr' to skip journald logging even when "
       "running under systemd, or list of comma separated output targets.",
       FLAG_YES, "default, stderr, stdout, file paths (zap); systemd/journal "
                 "writes to stderr",
       "[]string"),
    F(S_LOGGING, "log-level", T_STRING, log_level, "'info'",
      "Configures log level. Only supports debug, info, warn, error, panic, "
      "or fatal.",
      FLAG_YES, "an unknown level is an error (etcd panics)"),

    /* v2 proxy */
    FC(S_PROXY, "proxy", proxy, "'off'",
       "Proxy mode setting ('off', 'readonly' or 'on').", "off|readonly|on",
       FLAG_NO, "v2 proxy mode is not supported; only 'off'"),
    F(S_PROXY, "proxy-failure-wait", T_UINT, proxy_failure_wait_ms, "5000",
      "Time (in milliseconds) an endpoint will be held in a failed state.",
      FLAG_IGNORED, "only used with --proxy"),
    F(S_PROXY, "proxy-refresh-interval", T_UINT, proxy_refresh_interval_ms,
      "30000", "Time (in milliseconds) of the endpoints refresh interval.",
      FLAG_IGNORED, "only used with --proxy"),
    F(S_PROXY, "proxy-dial-timeout", T_UINT, proxy_dial_timeout_ms, "1000",
      "Time (in milliseconds) for a dial to timeout.", FLAG_IGNORED,
      "only used with --proxy"),
    F(S_PROXY, "proxy-write-timeout", T_UINT, proxy_write_timeout_ms, "5000",
      "Time (in milliseconds) for a write to timeout.", FLAG_IGNORED,
      "only used with --proxy"),
    F(S_PROXY, "proxy-read-timeout", T_UINT, proxy_read_timeout_ms, "0",
      "Time (in milliseconds) for a read to timeout.", FLAG_IGNORED,
      "only used with --proxy"),

    /* Experimental */
    F(S_EXPERIMENTAL, "experimental-initial-corrupt-check", T_BOOL,
      experimental_initial_corrupt_check, "'false'",
      "Enable to check data corruption before serving any client/peer "
      "traffic.",
      FLAG_PENDING, "corruption checks"),
    FT(S_EXPERIMENTAL, "experimental-corrupt-check-time", T_DURATION,
       experimental_corrupt_check_time_ns, "'0s'",
       "Duration of time between cluster corruption check passes.",
       FLAG_PENDING, "corruption checks", "time.Duration"),
    F(S_EXPERIMENTAL, "experimental-enable-v2v3", T_STRING,
      experimental_enable_v2v3, "''",
      "Serve v2 requests through the v3 backend under a given prefix.",
      FLAG_NO, "v2-on-v3 under a prefix is not supported"),
    F(S_EXPERIMENTAL, "experimental-backend-bbolt-freelist-type", T_STRING,
      experimental_backend_bbolt_freelist_type, "'array'",
      "ExperimentalBackendFreelistType specifies the type of freelist that "
      "boltdb backend uses(array and map are supported types).",
      FLAG_IGNORED, "bbolt only; keel stores in LMDB"),
    F(S_EXPERIMENTAL, "experimental-enable-lease-checkpoint", T_BOOL,
      experimental_enable_lease_checkpoint, "'false'",
      "ExperimentalEnableLeaseCheckpoint enables primary lessor to persist "
      "lease remainingTTL to prevent indefinite auto-renewal of long lived "
      "leases.",
      FLAG_IGNORED, "keel always checkpoints and persists lease TTLs"),
    F(S_EXPERIMENTAL, "experimental-compaction-batch-limit", T_INT,
      experimental_compaction_batch_limit, "1000",
      "ExperimentalCompactionBatchLimit sets the maximum revisions deleted in "
      "each compaction batch.",
      FLAG_PENDING, "compaction"),
    FN(S_EXPERIMENTAL, "experimental-peer-skip-client-san-verification",
       T_BOOL, peer_tls.skip_client_san_verify, "'false'",
       "Skip verification of SAN field in client certificate for peer "
       "connections.",
       FLAG_YES, "peer TLS: etcd's client-certificate SAN check is skipped"),
    FT(S_EXPERIMENTAL, "experimental-watch-progress-notify-interval",
       T_DURATION, experimental_watch_progress_notify_interval_ns, "'10m'",
       "Duration of periodical watch progress notification.", FLAG_YES,
       "watch service", "time.Duration"),
    FT(S_EXPERIMENTAL, "experimental-warning-apply-duration", T_DURATION,
       experimental_warning_apply_duration_ns, "'100ms'",
       "Warning is generated if requests take more than this duration.",
       FLAG_PENDING, "apply loop", "time.Duration"),

    /* Unsafe */
    F(S_UNSAFE, "force-new-cluster", T_BOOL, force_new_cluster, "'false'",
      "Force to create a new one-member cluster.", FLAG_NO,
      "not implemented yet; a recovery flag must not be silently ignored"),

    /* To be deprecated */
    F(S_DEPRECATED, "debug", T_BOOL, debug, "'false'",
      "Enable debug-level logging for etcd. [WARN] Will be deprecated in "
      "v3.5. Use '--log-level=debug' instead.",
      FLAG_YES, "same as --log-level=debug (zap too)"),
    F(S_DEPRECATED, "log-package-levels", T_STRING, log_package_levels, "''",
      "Specify a particular log level for each etcd package (eg: "
      "'etcdmain=CRITICAL,etcdserver=DEBUG').",
      FLAG_YES, "capnslog only, as etcd"),

    /* Accepted but hidden by etcd --help */
    FN(S_HIDDEN, "config-file", T_STRING, config_file, "''",
       "Path to the server configuration file. Note that if a configuration "
       "file is provided, other command line flags and environment variables "
       "will be ignored.",
       FLAG_YES, "etcd's YAML keys; other flags and env are then ignored"),
    FN(S_HIDDEN, "version", T_BOOL, print_version, "'false'",
       "Print the version and exit.", FLAG_YES, "plus a keel Version line"),
    FT(S_HIDDEN, "log-output", T_USTRS, log_output, "'default'",
       "[TO BE DEPRECATED IN v3.5] use '--log-outputs'.", FLAG_YES,
       "deprecated alias of --log-outputs", "[]string"),
    F(S_HIDDEN, "enable-grpc-gateway", T_BOOL, enable_grpc_gateway, "'true'",
      "Enable GRPC gateway.", FLAG_YES, "JSON gateway"),
    F(S_HIDDEN, "experimental-enable-lease-checkpoint-persist", T_BOOL,
      experimental_enable_lease_checkpoint_persist, "'false'",
      "Enable persisting remainingTTL to prevent indefinite auto-renewal of "
      "long lived leases.",
      FLAG_IGNORED, "keel always persists lease checkpoints"),
    F(S_HIDDEN, "unsafe-no-fsync", T_BOOL, unsafe_no_fsync, "'false'",
      "Disables fsync, unsafe, will cause data loss.", FLAG_IGNORED,
      "keel always fsyncs its WAL (ignoring it is the safe side)"),
    FN(S_HIDDEN, "socket-reuse-port", T_BOOL, socket_reuse_port, "'false'",
       "Enable to set socket option SO_REUSEPORT on listeners.",
       FLAG_IGNORED, "etcd 3.5 flag (unknown to etcd 3.4)"),
    FN(S_HIDDEN, "socket-reuse-address", T_BOOL, socket_reuse_address,
       "'false'", "Enable to set socket option SO_REUSEADDR on listeners.",
       FLAG_IGNORED, "etcd 3.5 flag (unknown to etcd 3.4)"),
    FI("cluster-active-size"),
    FI("cluster-remove-delay"),
    FI("cluster-sync-interval"),
    FI("config"),
    FI("force"),
    FI("max-result-buffer"),
    FI("max-retry-attempts"),
    FI("peer-heartbeat-interval"),
    FI("peer-election-timeout"),
    FI("retry-interval"),
    FI("snapshot"),
    FI("v"),
    FI("vv"),
};

#define NFLAGS (sizeof(flags) / sizeof(flags[0]))
_Static_assert(NFLAGS <= CONFIG_MAX_FLAGS, "raise CONFIG_MAX_FLAGS");

static const char *const status_name[] = {"yes", "pending", "ignored", "no"};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

/* etcd: DefaultInitialAdvertisePeerURLs etc. (embed/config.go) */
#define DEFAULT_PEER_URL "http://localhost:2380"
#define DEFAULT_CLIENT_URL "http://localhost:2379"
#define DEFAULT_INITIAL_CLUSTER "default=http://localhost:2380"
/* etcd: maxElectionMs (embed/config.go) */
#define MAX_ELECTION_MS 50000

static const struct flag_def *flag_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < NFLAGS; i++) {
        if (strlen(flags[i].name) == len &&
            memcmp(flags[i].name, name, len) == 0) {
            return &flags[i];
        }
    }
    return NULL;
}

static size_t flag_index(const struct flag_def *f)
{
    return (size_t)(f - flags);
}

static void *field(struct keel_config *cfg, const struct flag_def *f)
{
    return (char *)cfg + f->off;
}

static char *cfg_strndup(struct keel_config *cfg, const char *s, size_t n)
{
    char *p = keel_arena_alloc(&cfg->arena, n + 1);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *cfg_strdup(struct keel_config *cfg, const char *s)
{
    return cfg_strndup(cfg, s, strlen(s));
}

static char *cfg_printf(struct keel_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *cfg_printf(struct keel_config *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    char *p = keel_arena_alloc(&cfg->arena, (size_t)n + 1);
    if (p == NULL) {
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static void seterr(struct keel_config *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void seterr(struct keel_config *cfg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cfg->errmsg, sizeof(cfg->errmsg), fmt, ap);
    va_end(ap);
}

/* Go's %q for the strings we meet: quotes, escapes \" \\ and control
 * characters. */
static const char *goq(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    if (len < 3) {
        return "\"\"";
    }
    buf[o++] = '"';
    for (; *s != '\0' && o + 6 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c == '\n') {
            buf[o++] = '\\';
            buf[o++] = 'n';
        } else if (c == '\t') {
            buf[o++] = '\\';
            buf[o++] = 't';
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

static int add_note(struct keel_config *cfg, enum config_note_kind kind,
                    int level, const char *pkg, const char *text,
                    const char *zap_msg, const char *key, const char *value)
{
    if (cfg->nnotes == CONFIG_MAX_NOTES) {
        return 0; /* drop: notes are informational */
    }
    struct config_note *n = &cfg->notes[cfg->nnotes++];
    n->kind = kind;
    n->level = level;
    n->pkg = pkg;
    n->text = text;
    n->zap_msg = zap_msg;
    n->key = key;
    n->value = value;
    return text == NULL ? -1 : 0; /* text NULL: cfg_printf ran out of memory */
}

/* ------------------------------------------------------------------------ */
/* Value parsers (Go strconv / time / etcd pkg/types semantics)              */

/* strconv.ParseUint(s, 0, bits). Returns 0, -1 (syntax) or -2 (range). */
static int parse_go_uint(const char *s, unsigned bits, uint64_t *out)
{
    const char *p = s;
    int base = 10;
    if (*p == '\0') {
        return -1;
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    } else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O')) {
        base = 8;
        p += 2;
    } else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B')) {
        base = 2;
        p += 2;
    } else if (p[0] == '0' && p[1] != '\0') {
        base = 8;
        p += 1;
    }
    if (*p == '\0') {
        return -1;
    }
    uint64_t max = bits >= 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1;
    uint64_t v = 0;
    bool range = false;
    for (; *p != '\0'; p++) {
        int d;
        if (*p >= '0' && *p <= '9') {
            d = *p - '0';
        } else if (*p >= 'a' && *p <= 'z') {
            d = *p - 'a' + 10;
        } else if (*p >= 'A' && *p <= 'Z') {
            d = *p - 'A' + 10;
        } else {
            return -1;
        }
        if (d >= base) {
            return -1;
        }
        if (v > (max - (uint64_t)d) / (uint64_t)base) {
            range = true;
            v = max;
        } else {
            v = v * (uint64_t)base + (uint64_t)d;
        }
    }
    if (range) {
        return -2;
    }
    *out = v;
    return 0;
}

/* strconv.ParseInt(s, 0, 64). */
static int parse_go_int(const char *s, int64_t *out)
{
    bool neg = false;
    if (*s == '+' || *s == '-') {
        neg = *s == '-';
        s++;
    }
    uint64_t u;
    int rv = parse_go_uint(s, 64, &u);
    if (rv != 0) {
        return rv;
    }
    if (neg) {
        if (u > (uint64_t)INT64_MAX + 1) {
            return -2;
        }
        *out = u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u;
    } else {
        if (u > (uint64_t)INT64_MAX) {
            return -2;
        }
        *out = (int64_t)u;
    }
    return 0;
}

/* strconv.ParseBool */
static int parse_go_bool(const char *s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strcmp(s, t[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, f[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* time.ParseDuration, with Go 1.19's error texts in err (may be NULL). */
static int parse_duration(const char *s, int64_t *ns, char *err, size_t errlen)
{
    char q[256], uq[64];
#define DUR_FAIL(...)                                                        \
    do {                                                                     \
        if (err != NULL) {                                                   \
            snprintf(err, errlen, __VA_ARGS__);                              \
        }                                                                    \
        return -1;                                                           \
    } while (0)
#define DUR_INVALID() DUR_FAIL("time: invalid duration %s", goq(s, q, sizeof(q)))
    /* time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ or "0". */
    static const struct
    {
        const char *unit;
        uint64_t ns;
    } units[] = {
        {"ns", 1},
        {"us", 1000},
        {"\xc2\xb5s", 1000}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000}, /* U+03BC greek mu */
        {"ms", 1000000},
        {"s", 1000000000ULL},
        {"m", 60 * 1000000000ULL},
        {"h", 3600 * 1000000000ULL},
    };
    bool neg = false;
    const char *p = s;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (strcmp(p, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (*p == '\0') {
        DUR_INVALID();
    }
    uint64_t total = 0;
    while (*p != '\0') {
        uint64_t v = 0;
        bool digits = false;
        if (!(*p == '.' || (*p >= '0' && *p <= '9'))) {
            DUR_INVALID();
        }
        while (*p >= '0' && *p <= '9') {
            if (v > (UINT64_MAX - 9) / 10) {
                DUR_INVALID();
            }
            v = v * 10 + (uint64_t)(*p - '0');
            p++;
            digits = true;
        }
        uint64_t frac = 0, scale = 1;
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                if (scale < 1000000000000000000ULL) {
                    frac = frac * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
                p++;
                digits = true;
            }
        }
        if (!digits) {
            DUR_INVALID();
        }
        size_t ul = 0;
        while (p[ul] != '\0' && p[ul] != '.' &&
               !(p[ul] >= '0' && p[ul] <= '9')) {
            ul++;
        }
        if (ul == 0) {
            DUR_FAIL("time: missing unit in duration %s", goq(s, q, sizeof(q)));
        }
        uint64_t unit = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strlen(units[i].unit) == ul &&
                memcmp(units[i].unit, p, ul) == 0) {
                unit = units[i].ns;
            }
        }
        if (unit == 0) {
            char u[64];
            snprintf(u, sizeof(u), "%.*s", (int)(ul < 63 ? ul : 63), p);
            DUR_FAIL("time: unknown unit %s in duration %s",
                     goq(u, uq, sizeof(uq)), goq(s, q, sizeof(q)));
        }
        p += ul;
        if (v > (uint64_t)INT64_MAX / unit) {
            DUR_INVALID();
        }
        v *= unit;
        if (frac > 0) {
            v += (uint64_t)((long double)frac * (long double)unit /
                            (long double)scale);
        }
        total += v;
        if (total > (uint64_t)INT64_MAX) {
            DUR_INVALID();
        }
    }
#undef DUR_INVALID
#undef DUR_FAIL
    *ns = neg ? -(int64_t)total : (int64_t)total;
    return 0;
}

int config_parse_duration(const char *s, int64_t *ns)
{
    return parse_duration(s, ns, NULL, 0);
}

int config_compaction_retention(const struct keel_config *cfg, int64_t *out,
                                char *err, size_t errlen)
{
    /* etcd: parseCompactionRetention (embed/etcd.go): a non-negative
     * integer is hours (periodic) or revisions (revision), anything else a
     * duration */
    const char *r = cfg->auto_compaction_retention;
    if (r[0] == '\0') {
        r = "0";
    }
    int64_t h;
    const char *d = r + (r[0] == '+' || r[0] == '-');
    bool decimal = d[0] != '\0' && strspn(d, "0123456789") == strlen(d);
    if (decimal && parse_go_int(r, &h) == 0 && h >= 0) {
        if (strcmp(cfg->auto_compaction_mode, "revision") == 0) {
            *out = h;
        } else if (strcmp(cfg->auto_compaction_mode, "periodic") == 0) {
            *out = h > INT64_MAX / 3600000000000LL ? INT64_MAX
                                                   : h * 3600000000000LL;
        } else {
            *out = 0;
        }
        return 0;
    }
    char derr[512];
    if (parse_duration(r, out, derr, sizeof(derr)) != 0) {
        snprintf(err, errlen, "error parsing CompactionRetention: %s", derr);
        return -1;
    }
    return 0;
}



/* Append "<int>[.<frac>]" of v/unit with trailing zeros removed. */
static size_t fmt_frac(char *buf, size_t len, uint64_t v, uint64_t unit)
{
    uint64_t ip = v / unit, fp = v % unit;
    int n = snprintf(buf, len, "%llu", (unsigned long long)ip);
    size_t o = n > 0 ? (size_t)n : 0;
    if (fp != 0 && o + 1 < len) {
        int digits = 0;
        for (uint64_t u = unit; u > 1; u /= 10) {
            digits++;
        }
        char tmp[24];
        if (digits > 19) {
            digits = 19;
        }
        snprintf(tmp, sizeof(tmp), "%0*llu", digits % 20,
                 (unsigned long long)fp % 10000000000000000000ULL);
        size_t tl = strlen(tmp);
        while (tl > 0 && tmp[tl - 1] == '0') {
            tmp[--tl] = '\0';
        }
        n = snprintf(buf + o, len - o, ".%s", tmp);
        o += n > 0 ? (size_t)n : 0;
    }
    return o < len ? o : len - 1;
}

const char *config_duration_str(int64_t ns, char *buf, size_t len)
{
    /* time.Duration.String() */
    size_t o = 0;
    if (len == 0) {
        return buf;
    }
    if (ns == 0) {
        snprintf(buf, len, "0s");
        return buf;
    }
    uint64_t u = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    if (ns < 0) {
        o += (size_t)snprintf(buf, len, "-");
    }
    if (u < 1000000000ULL) {
        const char *unit;
        uint64_t div;
        if (u < 1000) {
            unit = "ns";
            div = 1;
        } else if (u < 1000000) {
            unit = "\xc2\xb5s";
            div = 1000;
        } else {
            unit = "ms";
            div = 1000000;
        }
        o += fmt_frac(buf + o, len - o, u, div);
        snprintf(buf + o, len - o, "%s", unit);
        return buf;
    }
    uint64_t h = u / (3600 * 1000000000ULL);
    u -= h * 3600 * 1000000000ULL;
    uint64_t m = u / (60 * 1000000000ULL);
    u -= m * 60 * 1000000000ULL;
    if (h > 0) {
        o += (size_t)snprintf(buf + o, len - o, "%lluh%llum",
                              (unsigned long long)h, (unsigned long long)m);
    } else if (m > 0) {
        o += (size_t)snprintf(buf + o, len - o, "%llum",
                              (unsigned long long)m);
    }
    if (o < len) {
        o += fmt_frac(buf + o, len - o, u, 1000000000ULL);
        snprintf(buf + o, len - o, "s");
    }
    return buf;
}

/* Go's net.SplitHostPort, reduced to what types.NewURLs needs. */
static int split_host_port(const char *hp, size_t n, const char **host,
                           size_t *hlen, const char **port, size_t *plen)
{
    if (n > 0 && hp[0] == '[') {
        const char *end = memchr(hp, ']', n);
        if (end == NULL) {
            return -1;
        }
        size_t rest = n - (size_t)(end - hp) - 1;
        if (rest == 0 || end[1] != ':') {
            return -1; /* missing port */
        }
        *host = hp + 1;
        *hlen = (size_t)(end - hp) - 1;
        *port = end + 2;
        *plen = rest - 1;
        if (memchr(*port, ':', *plen) != NULL) {
            return -1;
        }
        return 0;
    }
    const char *colon = NULL;
    size_t ncolons = 0;
    for (size_t i = 0; i < n; i++) {
        if (hp[i] == ':') {
            colon = hp + i;
            ncolons++;
        }
    }
    if (ncolons != 1) {
        return -1; /* missing port / too many colons */
    }
    *host = hp;
    *hlen = (size_t)(colon - hp);
    *port = colon + 1;
    *plen = n - *hlen - 1;
    return 0;
}

/* One URL as etcd's types.NewURLs checks it (the string is trimmed). */
static int parse_url(struct keel_config *cfg, const char *in, size_t inlen,
                     struct config_url *out, char *err, size_t errlen)
{
    while (inlen > 0 && isspace((unsigned char)in[0])) {
        in++;
        inlen--;
    }
    while (inlen > 0 && isspace((unsigned char)in[inlen - 1])) {
        inlen--;
    }
    char *s = cfg_strndup(cfg, in, inlen);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
    size_t i = 0;
    if (isalpha((unsigned char)s[0])) {
        i = 1;
        while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' ||
               s[i] == '.') {
            i++;
        }
    }
    if (i == 0 || s[i] != ':') {
        snprintf(err, errlen,
                 "URL scheme must be http, https, unix, or unixs: %s", s);
        return -1;
    }
    char scheme[16];
    if (i >= sizeof(scheme)) {
        snprintf(err, errlen,
                 "URL scheme must be http, https, unix, or unixs: %s", s);
        return -1;
    }
    for (size_t k = 0; k < i; k++) {
        scheme[k] = (char)tolower((unsigned char)s[k]);
    }
    scheme[i] = '\0';
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 &&
        strcmp(scheme, "unix") != 0 && strcmp(scheme, "unixs") != 0) {
        snprintf(err, errlen,
                 "URL scheme must be http, https, unix, or unixs: %s", s);
        return -1;
    }
    const char *rest = s + i + 1;
    const char *hp = "";
    size_t hplen = 0;
    const char *path = rest;
    if (rest[0] == '/' && rest[1] == '/') {
        hp = rest + 2;
        hplen = strcspn(hp, "/?#");
        path = hp + hplen;
        /* userinfo is not part of the host */
        const char *at = memchr(hp, '@', hplen);
        if (at != NULL) {
            hplen -= (size_t)(at + 1 - hp);
            hp = at + 1;
        }
    }
    const char *host, *port;
    size_t hlen, plen;
    if (split_host_port(hp, hplen, &host, &hlen, &port, &plen) != 0) {
        snprintf(err, errlen,
                 "URL address does not have the form \"host:port\": %s", s);
        return -1;
    }
    if (path[0] != '\0') {
        snprintf(err, errlen, "URL must not contain a path: %s", s);
        return -1;
    }
    out->scheme = cfg_strdup(cfg, scheme);
    out->host = cfg_strndup(cfg, host, hlen);
    out->port = cfg_strndup(cfg, port, plen);
    out->str = cfg_printf(cfg, "%s://%.*s", scheme, (int)hplen, hp);
    if (out->scheme == NULL || out->host == NULL || out->port == NULL ||
        out->str == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int cmp_url(const void *a, const void *b)
{
    return strcmp(((const struct config_url *)a)->str,
                  ((const struct config_url *)b)->str);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int config_parse_urls(struct keel_config *cfg, const char *s,
                      struct config_urls *out, char *err, size_t errlen)
{
    size_t n = 1;
    for (const char *p = s; *p != '\0'; p++) {
        n += *p == ',';
    }
    struct config_url *v =
        keel_arena_alloc(&cfg->arena, n * sizeof(struct config_url));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    size_t k = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (parse_url(cfg, p, len, &v[k], err, errlen) != 0) {
            return -1;
        }
        k++;
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    qsort(v, k, sizeof(v[0]), cmp_url);
    size_t w = 0;
    for (size_t r = 0; r < k; r++) {
        if (w == 0 || strcmp(v[w - 1].str, v[r].str) != 0) {
            v[w++] = v[r];
        }
    }
    out->v = v;
    out->n = w;
    return 0;
}

static int split_strs(struct keel_config *cfg, const char *s, bool unique,
                      struct config_strs *out)
{
    size_t n = 1;
    for (const char *p = s; *p != '\0'; p++) {
        n += *p == ',';
    }
    const char **v = keel_arena_alloc(&cfg->arena, n * sizeof(char *));
    if (v == NULL) {
        return -1;
    }
    size_t k = 0;
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if ((v[k++] = cfg_strndup(cfg, p, len)) == NULL) {
            return -1;
        }
        if (p[len] == '\0') {
            break;
        }
        p += len + 1;
    }
    if (unique) {
        qsort(v, k, sizeof(v[0]), cmp_str);
        size_t w = 0;
        for (size_t r = 0; r < k; r++) {
            if (w == 0 || strcmp(v[w - 1], v[r]) != 0) {
                v[w++] = v[r];
            }
        }
        k = w;
    }
    out->v = v;
    out->n = k;
    return 0;
}

static bool choice_ok(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;
    for (;;) {
        size_t len = strcspn(p, "|");
        if (len == vl && memcmp(p, v, vl) == 0) {
            return true;
        }
        if (p[len] == '\0') {
            return false;
        }
        p += len + 1;
    }
}

/* flag.Value.Set(): parse `val` into the flag's field. On error writes the
 * Value's error text (what Go's flag package puts after the colon). */
static int flag_set(struct keel_config *cfg, const struct flag_def *f,
                    const char *val, char *err, size_t errlen)
{
    int rv;
    switch (f->type) {
    case T_STRING: {
        const char *s = cfg_strdup(cfg, val);
        if (s == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *(const char **)field(cfg, f) = s;
        return 0;
    }
    case T_BOOL:
        if (parse_go_bool(val, (bool *)field(cfg, f)) != 0) {
            snprintf(err, errlen, "parse error");
            return -1;
        }
        return 0;
    case T_UINT:
        rv = parse_go_uint(val, 64, (uint64_t *)field(cfg, f));
        if (rv != 0) {
            snprintf(err, errlen, "%s",
                     rv == -2 ? "value out of range" : "parse error");
            return -1;
        }
        return 0;
    case T_INT:
        rv = parse_go_int(val, (int64_t *)field(cfg, f));
        if (rv != 0) {
            snprintf(err, errlen, "%s",
                     rv == -2 ? "value out of range" : "parse error");
            return -1;
        }
        return 0;
    case T_UINT32: {
        uint64_t u = 0;
        rv = parse_go_uint(val, 32, &u);
        if (rv != 0) {
            char q[256];
            snprintf(err, errlen, "strconv.ParseUint: parsing %s: %s",
                     goq(val, q, sizeof(q)),
                     rv == -2 ? "value out of range" : "invalid syntax");
            return -1;
        }
        *(uint32_t *)field(cfg, f) = (uint32_t)u;
        return 0;
    }
    case T_DURATION:
        if (config_parse_duration(val, (int64_t *)field(cfg, f)) != 0) {
            snprintf(err, errlen, "parse error");
            return -1;
        }
        return 0;
    case T_URLS: {
        /* etcd's UniqueURLs allows "" and then keeps the previous list
         * (checked with /usr/bin/etcd: --listen-client-urls= is a no-op,
         * though it counts as set) */
        if (val[0] == '\0') {
            return 0;
        }
        return config_parse_urls(cfg, val, field(cfg, f), err, errlen);
    }
    case T_CORS: {
        /* UniqueURLs with "*" allowed: URLs are validated, kept as
         * strings */
        struct config_strs *cs = field(cfg, f);
        if (strcmp(val, "*") != 0) {
            struct config_urls tmp;
            if (config_parse_urls(cfg, val, &tmp, err, errlen) != 0) {
                return -1;
            }
        }
        if (split_strs(cfg, val, true, cs) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    case T_STRS:
    case T_USTRS: {
        struct config_strs *s = field(cfg, f);
        if (f->type == T_STRS && val[0] == '\0') {
            s->v = NULL;
            s->n = 0;
            return 0;
        }
        if (split_strs(cfg, val, f->type == T_USTRS, s) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    case T_CHOICE: {
        if (f->choices != NULL && !choice_ok(f->choices, val)) {
            snprintf(err, errlen, "invalid value");
            return -1;
        }
        const char *s = cfg_strdup(cfg, val);
        if (s == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        *(const char **)field(cfg, f) = s;
        return 0;
    }
    case T_IGNORED:
        /* etcd: flags.IgnoredFlag.Set */
        if (add_note(cfg, CONFIG_NOTE_LOG, LOG_LEVEL_WARN, "pkg/flags",
                     cfg_printf(cfg,
                                "flag \"-%s\" is no longer supported - "
                                "ignoring.",
                                f->name),
                     NULL, NULL, NULL) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        return 0;
    }
    return -1;
}

static bool flag_is_bool(const struct flag_def *f)
{
    return f->type == T_BOOL || f->type == T_IGNORED;
}

/* ------------------------------------------------------------------------ */
/* Defaults                                                                  */

/* Shared, read-only defaults: a flag that is set gets new storage in the
 * config's arena, so these are never written. */
static const struct config_url default_peer_url = {DEFAULT_PEER_URL, "http",
                                                   "localhost", "2380"};
static const struct config_url default_client_url = {
    DEFAULT_CLIENT_URL, "http", "localhost", "2379"};
static const char *const star[] = {"*"};
static const char *const default_output[] = {"default"};

void config_init(struct keel_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    keel_arena_init(&cfg->arena, 0);

    cfg->name = "default";
    cfg->data_dir = "";
    cfg->wal_dir = "";
    cfg->snapshot_count = 100000; /* etcd: DefaultSnapshotCount */
    cfg->heartbeat_ms = 100;
    cfg->election_ms = 1000;
    cfg->initial_election_tick_advance = true;
    cfg->listen_peer_urls = (struct config_urls){&default_peer_url, 1};
    cfg->listen_client_urls = (struct config_urls){&default_client_url, 1};
    cfg->max_snapshots = 5; /* etcd: DefaultMaxSnapshots */
    cfg->max_wals = 5;      /* etcd: DefaultMaxWALs */
    cfg->max_txn_ops = 128; /* etcd: DefaultMaxTxnOps */
    cfg->max_request_bytes = 1572864; /* etcd: DefaultMaxRequestBytes */
    cfg->max_concurrent_streams = UINT32_MAX;
    cfg->grpc_keepalive_min_time_ns = 5 * 1000000000LL;
    cfg->grpc_keepalive_interval_ns = 2 * 3600 * 1000000000LL;
    cfg->grpc_keepalive_timeout_ns = 20 * 1000000000LL;

    cfg->initial_advertise_peer_urls =
        (struct config_urls){&default_peer_url, 1};
    cfg->advertise_client_urls = (struct config_urls){&default_client_url, 1};
    cfg->initial_cluster = DEFAULT_INITIAL_CLUSTER;
    cfg->initial_cluster_state = "new";
    cfg->initial_cluster_token = "etcd-cluster";
    cfg->discovery = "";
    cfg->discovery_fallback = "proxy";
    cfg->discovery_proxy = "";
    cfg->discovery_srv = "";
    cfg->discovery_srv_name = "";
    cfg->strict_reconfig_check = true;
    cfg->pre_vote = true; /* keel: etcd 3.5's default (DESIGN.md) */
    cfg->auto_compaction_retention = "0";
    cfg->auto_compaction_mode = "periodic";
    cfg->enable_v2 = false;

    cfg->client_tls = (struct config_tls){"", "", false, "", "", "", "",
                                          false, false};
    cfg->peer_tls = cfg->client_tls;
    cfg->cors = (struct config_strs){star, 1};
    cfg->host_whitelist = (struct config_strs){star, 1};

    cfg->auth_token = "simple";
    cfg->bcrypt_cost = 10; /* bcrypt.DefaultCost */
    cfg->auth_token_ttl = 300;

    cfg->metrics = "basic";

    cfg->logger = "capnslog";
    cfg->log_outputs = (struct config_strs){default_output, 1};
    cfg->log_output = (struct config_strs){default_output, 1};
    cfg->log_level = "info";
    cfg->log_package_levels = "";

    cfg->proxy = "off";
    cfg->proxy_failure_wait_ms = 5000;
    cfg->proxy_refresh_interval_ms = 30000;
    cfg->proxy_dial_timeout_ms = 1000;
    cfg->proxy_write_timeout_ms = 5000;
    cfg->proxy_read_timeout_ms = 0;

    cfg->experimental_enable_v2v3 = "";
    cfg->experimental_backend_bbolt_freelist_type = "array";
    cfg->experimental_compaction_batch_limit = 1000;
    cfg->experimental_watch_progress_notify_interval_ns =
        10 * 60 * 1000000000LL;
    cfg->experimental_warning_apply_duration_ns = 100 * 1000000LL;

    cfg->enable_grpc_gateway = true;
    cfg->config_file = "";
    cfg->progname = "etcd";
}

void config_close(struct keel_config *cfg)
{
    keel_arena_free(&cfg->arena);
}

/* ------------------------------------------------------------------------ */
/* Command line (Go flag package)                                            */

static bool is_set(const struct keel_config *cfg, const char *name)
{
    const struct flag_def *f = flag_lookup(name, strlen(name));
    return f != NULL && cfg->source[flag_index(f)] != CONFIG_SRC_DEFAULT;
}

int config_flag_source(const struct keel_config *cfg, const char *name)
{
    const struct flag_def *f = flag_lookup(name, strlen(name));
    return f == NULL ? -1 : cfg->source[flag_index(f)];
}

/* flag.FlagSet.Parse. Returns 0 and the index of the first non-flag
 * argument, CONFIG_HELP, or CONFIG_EUSAGE. */
static int parse_args(struct keel_config *cfg, int argc, char **argv,
                      int *first_arg)
{
    int i = 1;
    char q[512], e[512];
    while (i < argc) {
        const char *s = argv[i];
        if (strlen(s) < 2 || s[0] != '-') {
            break;
        }
        int minuses = 1;
        if (s[1] == '-') {
            minuses = 2;
            if (s[2] == '\0') {
                i++; /* "--" ends the flags */
                break;
            }
        }
        const char *name = s + minuses;
        if (name[0] == '-' || name[0] == '=') {
            seterr(cfg, "bad flag syntax: %s", s);
            return CONFIG_EUSAGE;
        }
        i++;
        const char *eq = strchr(name + 1, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const char *value = eq != NULL ? eq + 1 : NULL;
        const struct flag_def *f = flag_lookup(name, nlen);
        if (f == NULL) {
            if ((nlen == 4 && memcmp(name, "help", 4) == 0) ||
                (nlen == 1 && name[0] == 'h')) {
                return CONFIG_HELP;
            }
            seterr(cfg, "flag provided but not defined: -%.*s", (int)nlen,
                   name);
            return CONFIG_EUSAGE;
        }
        if (flag_is_bool(f)) {
            if (value != NULL && flag_set(cfg, f, value, e, sizeof(e)) != 0) {
                seterr(cfg, "invalid boolean value %s for -%s: %s",
                       goq(value, q, sizeof(q)), f->name, e);
                return CONFIG_EUSAGE;
            }
            if (value == NULL && flag_set(cfg, f, "true", e, sizeof(e)) != 0) {
                seterr(cfg, "invalid boolean flag %s: %s", f->name, e);
                return CONFIG_EUSAGE;
            }
        } else {
            if (value == NULL && i < argc) {
                value = argv[i++];
            }
            if (value == NULL) {
                seterr(cfg, "flag needs an argument: -%s", f->name);
                return CONFIG_EUSAGE;
            }
            if (flag_set(cfg, f, value, e, sizeof(e)) != 0) {
                seterr(cfg, "invalid value %s for flag -%s: %s",
                       goq(value, q, sizeof(q)), f->name, e);
                return CONFIG_EUSAGE;
            }
        }
        cfg->source[flag_index(f)] = CONFIG_SRC_CMDLINE;
    }
    *first_arg = i;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Environment (pkg/flags SetFlagsFromEnv)                                   */

static void flag_env_name(const struct flag_def *f, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "ETCD_");
    for (const char *p = f->name; *p != '\0' && o + 1 < len; p++) {
        buf[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    }
    buf[o] = '\0';
}

static const char *env_get(char **envp, const char *key)
{
    size_t kl = strlen(key);
    for (char **e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=') {
            return *e + kl + 1;
        }
    }
    return NULL;
}

static int parse_env(struct keel_config *cfg, char **envp)
{
    bool used[NFLAGS] = {false};
    char key[96], q[512], e[512];
    int rv = 0;

    /* Go's VisitAll goes in flag-name order. */
    const struct flag_def *order[NFLAGS];
    for (size_t i = 0; i < NFLAGS; i++) {
        order[i] = &flags[i];
    }
    for (size_t i = 1; i < NFLAGS; i++) {
        for (size_t j = i; j > 0 && strcmp(order[j - 1]->name,
                                           order[j]->name) > 0; j--) {
            const struct flag_def *t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    }
    for (size_t i = 0; i < NFLAGS; i++) {
        const struct flag_def *f = order[i];
        if (cfg->source[flag_index(f)] == CONFIG_SRC_CMDLINE) {
            continue;
        }
        flag_env_name(f, key, sizeof(key));
        const char *val = env_get(envp, key);
        if (val == NULL || val[0] == '\0') {
            continue;
        }
        used[flag_index(f)] = true;
        if (flag_set(cfg, f, val, e, sizeof(e)) != 0) {
            if (rv == 0) {
                seterr(cfg, "invalid value %s for %s: %s",
                       goq(val, q, sizeof(q)), key, e);
                rv = CONFIG_EVERIFY;
            }
            continue;
        }
        cfg->source[flag_index(f)] = CONFIG_SRC_ENV;
        if (add_note(cfg, CONFIG_NOTE_LOG, LOG_LEVEL_INFO, "pkg/flags",
                     cfg_printf(cfg,
                                "recognized and used environment variable "
                                "%s=%s",
                                key, val),
                     "recognized and used environment variable", "variable",
                     cfg_printf(cfg, "%s=%s", key, val)) != 0) {
            seterr(cfg, "out of memory");
            return CONFIG_ENOMEM;
        }
    }

    /* verifyEnv */
    for (char **ep = envp; ep != NULL && *ep != NULL; ep++) {
        const char *eqp = strchr(*ep, '=');
        size_t kl = eqp != NULL ? (size_t)(eqp - *ep) : strlen(*ep);
        bool known = false;
        for (size_t i = 0; i < NFLAGS; i++) {
            flag_env_name(&flags[i], key, sizeof(key));
            if (strlen(key) == kl && memcmp(key, *ep, kl) == 0) {
                known = true;
                if (used[i]) {
                    break;
                }
                if (cfg->source[i] == CONFIG_SRC_CMDLINE) {
                    seterr(cfg,
                           "conflicting environment variable \"%s\" is "
                           "shadowed by corresponding command-line flag "
                           "(either unset environment variable or disable "
                           "flag)",
                           key);
                    return CONFIG_EFATAL;
                }
                break;
            }
        }
        if (!known && strncmp(*ep, "ETCD_", 5) == 0) {
            if (add_note(cfg, CONFIG_NOTE_LOG, LOG_LEVEL_WARN, "pkg/flags",
                         cfg_printf(cfg,
                                    "unrecognized environment variable %s",
                                    *ep),
                         "unrecognized environment variable",
                         "environment-variable", cfg_strdup(cfg, *ep)) != 0) {
                seterr(cfg, "out of memory");
                return CONFIG_ENOMEM;
            }
        }
    }
    return rv;
}

/* ------------------------------------------------------------------------ */
/* YAML config file (embed.ConfigFromFile)                                   */

/* What sigs.k8s.io/yaml makes of a scalar: its JSON kind. */
enum json_kind { J_NULL, J_BOOL, J_NUMBER, J_STRING };

static enum json_kind scalar_kind(const yaml_node_t *n, bool *bval)
{
    const char *v = (const char *)n->data.scalar.value;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return J_STRING;
    }
    if (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
        strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0) {
        return J_NULL;
    }
    /* YAML 1.1 booleans, as go-yaml v2 resolves them */
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES", "on", "On", "ON", "y", "Y"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO", "off", "Off", "OFF", "n", "N"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(v, yes[i]) == 0) {
            *bval = true;
            return J_BOOL;
        }
        if (strcmp(v, no[i]) == 0) {
            *bval = false;
            return J_BOOL;
        }
    }
    char *end;
    errno = 0;
    (void)strtod(v, &end);
    if (*end == '\0' && end != v && !isspace((unsigned char)v[0])) {
        return J_NUMBER;
    }
    int64_t i64;
    if (parse_go_int(v, &i64) == 0) {
        return J_NUMBER;
    }
    return J_STRING;
}

static const char *kind_name(enum json_kind k)
{
    switch (k) {
    case J_NULL:
        return "null";
    case J_BOOL:
        return "bool";
    case J_NUMBER:
        return "number";
    default:
        return "string";
    }
}

static const char *flag_gotype(const struct flag_def *f)
{
    if (f->gotype != NULL) {
        return f->gotype;
    }
    switch (f->type) {
    case T_BOOL:
        return "bool";
    case T_UINT:
        return "uint";
    case T_INT:
        return "int";
    case T_UINT32:
        return "uint32";
    case T_DURATION:
        return "time.Duration";
    case T_STRS:
    case T_USTRS:
        return "[]string";
    default:
        return "string";
    }
}

static int yaml_type_error(struct keel_config *cfg, const char *what,
                           const struct flag_def *f, const char *field_name)
{
    seterr(cfg,
           "error unmarshaling JSON: while decoding JSON: json: cannot "
           "unmarshal %s into Go struct field %s of type %s",
           what, field_name, flag_gotype(f));
    return CONFIG_EVERIFY;
}

/* URL-list keys are comma-separated strings in the file; a bad one is
 * reported raw on stderr (etcd: "unexpected error setting up ..."). */
static int yaml_set_scalar(struct keel_config *cfg, const struct flag_def *f,
                           const yaml_node_t *n, const char *field_name)
{
    const char *v = (const char *)n->data.scalar.value;
    bool b = false;
    enum json_kind k = scalar_kind(n, &b);
    char e[512];

    if (k == J_NULL) {
        return 0; /* JSON null leaves the Go field alone */
    }
    switch (f->type) {
    case T_BOOL:
        if (k != J_BOOL) {
            return yaml_type_error(cfg, kind_name(k), f, field_name);
        }
        *(bool *)field(cfg, f) = b;
        return 0;
    case T_UINT:
    case T_INT:
    case T_UINT32:
        if (k != J_NUMBER) {
            return yaml_type_error(cfg, kind_name(k), f, field_name);
        }
        if (flag_set(cfg, f, v, e, sizeof(e)) != 0) {
            char what[300];
            snprintf(what, sizeof(what), "number %s", v);
            return yaml_type_error(cfg, what, f, field_name);
        }
        return 0;
    case T_DURATION:
        /* Go decodes a time.Duration from JSON as integer nanoseconds;
         * keel also takes "100ms" (etcd rejects strings). */
        if (k == J_NUMBER) {
            int64_t ns;
            if (parse_go_int(v, &ns) != 0) {
                char what[300];
                snprintf(what, sizeof(what), "number %s", v);
                return yaml_type_error(cfg, what, f, field_name);
            }
            *(int64_t *)field(cfg, f) = ns;
            return 0;
        }
        if (k == J_STRING &&
            config_parse_duration(v, (int64_t *)field(cfg, f)) == 0) {
            return 0;
        }
        return yaml_type_error(cfg, kind_name(k), f, field_name);
    case T_STRS:
    case T_USTRS:
        if (f->gotype != NULL && strcmp(f->gotype, "[]string") == 0) {
            /* a list is expected; a scalar string is a type error in
             * etcd; keel accepts a comma-separated string too */
            if (k != J_STRING) {
                return yaml_type_error(cfg, kind_name(k), f, field_name);
            }
        }
        /* fall through: host-whitelist is a comma-separated string */
        /* FALLTHROUGH */
    default:
        if (k != J_STRING) {
            return yaml_type_error(cfg, kind_name(k), f, field_name);
        }
        if (v[0] == '\0' && (f->type == T_URLS || f->type == T_CORS ||
                             f->type == T_USTRS)) {
            return 0; /* etcd: an empty string keeps the default */
        }
        if (f->type == T_CHOICE && f->off == OFF(initial_cluster_state)) {
            /* a plain string field in etcd's Config: checked by Validate,
             * "" meaning "new" */
            const char *cs = cfg_strdup(cfg, v);
            if (cs == NULL) {
                seterr(cfg, "out of memory");
                return CONFIG_ENOMEM;
            }
            cfg->initial_cluster_state = cs;
            return 0;
        }
        if (flag_set(cfg, f, v, e, sizeof(e)) != 0) {
            if (f->type == T_URLS) {
                seterr(cfg, "unexpected error setting up %s: %s", f->name, e);
                return CONFIG_ERAW;
            }
            if (f->type == T_CORS) {
                seterr(cfg, "unexpected error setting up %s: %s", f->name, e);
                return CONFIG_ERAW;
            }
            if (f->type == T_CHOICE) {
                /* etcd: log.Fatalf in etcdmain configFromFile */
                seterr(cfg, "unexpected error setting up %s: %s",
                       strcmp(f->name, "proxy") == 0
                           ? "proxyFlag"
                           : "discovery-fallback flag",
                       e);
                return CONFIG_ERAW;
            }
            seterr(cfg, "%s", e);
            return CONFIG_EVERIFY;
        }
        return 0;
    }
}

static int yaml_set_seq(struct keel_config *cfg, const struct flag_def *f,
                        yaml_document_t *doc, yaml_node_t *n,
                        const char *field_name)
{
    if (f->type != T_STRS && f->type != T_USTRS) {
        return yaml_type_error(cfg, "array", f, field_name);
    }
    size_t cnt = (size_t)(n->data.sequence.items.top -
                          n->data.sequence.items.start);
    struct config_strs *s = field(cfg, f);
    const char **v = keel_arena_alloc(&cfg->arena,
                                      (cnt ? cnt : 1) * sizeof(char *));
    if (v == NULL) {
        seterr(cfg, "out of memory");
        return CONFIG_ENOMEM;
    }
    size_t k = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         it < n->data.sequence.items.top; it++) {
        yaml_node_t *item = yaml_document_get_node(doc, *it);
        bool b;
        if (item == NULL || item->type != YAML_SCALAR_NODE ||
            scalar_kind(item, &b) != J_STRING) {
            seterr(cfg,
                   "error unmarshaling JSON: while decoding JSON: json: "
                   "cannot unmarshal %s into Go struct field %s of type "
                   "string",
                   item != NULL && item->type == YAML_SCALAR_NODE
                       ? kind_name(scalar_kind(item, &b))
                       : "object",
                   field_name);
            return CONFIG_EVERIFY;
        }
        if ((v[k++] = cfg_strdup(cfg, (const char *)item->data.scalar.value))
            == NULL) {
            seterr(cfg, "out of memory");
            return CONFIG_ENOMEM;
        }
    }
    if (f->type == T_USTRS) {
        qsort(v, k, sizeof(v[0]), cmp_str);
        size_t w = 0;
        for (size_t r = 0; r < k; r++) {
            if (w == 0 || strcmp(v[w - 1], v[r]) != 0) {
                v[w++] = v[r];
            }
        }
        k = w;
    }
    s->v = v;
    s->n = k;
    return 0;
}

static int yaml_apply(struct keel_config *cfg, const struct flag_def *f,
                      yaml_document_t *doc, yaml_node_t *val,
                      const char *field_name)
{
    int rv;
    if (val->type == YAML_SCALAR_NODE) {
        rv = yaml_set_scalar(cfg, f, val, field_name);
    } else if (val->type == YAML_SEQUENCE_NODE) {
        rv = yaml_set_seq(cfg, f, doc, val, field_name);
    } else {
        rv = yaml_type_error(cfg, "object", f, field_name);
    }
    if (rv == 0) {
        cfg->source[flag_index(f)] = CONFIG_SRC_FILE;
    }
    return rv;
}

static int yaml_security(struct keel_config *cfg, yaml_document_t *doc,
                         yaml_node_t *map, enum flag_yaml which,
                         const char *section)
{
    if (map->type == YAML_SCALAR_NODE) {
        bool b;
        if (scalar_kind(map, &b) == J_NULL) {
            return 0;
        }
        seterr(cfg,
               "error unmarshaling JSON: while decoding JSON: json: cannot "
               "unmarshal %s into Go struct field configYAML.%s of type "
               "embed.securityConfig",
               kind_name(scalar_kind(map, &b)), section);
        return CONFIG_EVERIFY;
    }
    if (map->type != YAML_MAPPING_NODE) {
        seterr(cfg,
               "error unmarshaling JSON: while decoding JSON: json: cannot "
               "unmarshal array into Go struct field configYAML.%s of type "
               "embed.securityConfig",
               section);
        return CONFIG_EVERIFY;
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE) {
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        for (size_t i = 0; i < NFLAGS; i++) {
            if (flags[i].yaml == which && strcmp(flags[i].yaml_key, key) == 0) {
                char fname[128];
                snprintf(fname, sizeof(fname), "securityConfig.%s", key);
                int rv = yaml_apply(cfg, &flags[i], doc, v, fname);
                if (rv != 0) {
                    return rv;
                }
            }
        }
    }
    return 0;
}

const char *config_go_strerror(int err, char *buf, size_t len)
{
    snprintf(buf, len, "%s", strerror(err));
    if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) {
        buf[0] = (char)(buf[0] - 'A' + 'a');
    }
    return buf;
}

static int parse_file(struct keel_config *cfg, const char *path)
{
    char eb[128];
    FILE *fp = fopen(path, "rb");
    if (fp == NULL) {
        seterr(cfg, "open %s: %s", path,
               config_go_strerror(errno, eb, sizeof(eb)));
        return CONFIG_EVERIFY;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(fp);
        seterr(cfg, "read %s: %s", path,
               config_go_strerror(EISDIR, eb, sizeof(eb)));
        return CONFIG_EVERIFY;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    int rv = 0;
    if (!yaml_parser_initialize(&parser)) {
        fclose(fp);
        seterr(cfg, "out of memory");
        return CONFIG_ENOMEM;
    }
    yaml_parser_set_input_file(&parser, fp);
    if (!yaml_parser_load(&parser, &doc)) {
        seterr(cfg, "error converting YAML to JSON: yaml: line %zu: %s",
               parser.problem_mark.line + 1,
               parser.problem != NULL ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        fclose(fp);
        return CONFIG_EVERIFY;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        goto out; /* empty file: all defaults */
    }
    if (root->type != YAML_MAPPING_NODE) {
        bool b;
        if (root->type == YAML_SCALAR_NODE && scalar_kind(root, &b) == J_NULL) {
            goto out;
        }
        seterr(cfg,
               "error unmarshaling JSON: while decoding JSON: json: cannot "
               "unmarshal %s into Go value of type embed.configYAML",
               root->type == YAML_SEQUENCE_NODE
                   ? "array"
                   : kind_name(scalar_kind(root, &b)));
        rv = CONFIG_EVERIFY;
        goto out;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start;
         p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        if (k == NULL || v == NULL || k->type != YAML_SCALAR_NODE) {
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "client-transport-security") == 0) {
            rv = yaml_security(cfg, &doc, v, Y_CLIENT, key);
        } else if (strcmp(key, "peer-transport-security") == 0) {
            rv = yaml_security(cfg, &doc, v, Y_PEER, key);
        } else {
            const struct flag_def *f = flag_lookup(key, strlen(key));
            if (f == NULL || f->yaml != Y_KEY) {
                /* etcd ignores unknown keys silently; keel says so */
                if (add_note(cfg, CONFIG_NOTE_LOG, LOG_LEVEL_WARN, "etcdmain",
                             cfg_printf(cfg,
                                        "ignoring unknown key %s in "
                                        "configuration file %s",
                                        key, path),
                             "ignoring unknown configuration key", "key",
                             cfg_strdup(cfg, key)) != 0) {
                    seterr(cfg, "out of memory");
                    rv = CONFIG_ENOMEM;
                }
            } else {
                char fname[128];
                snprintf(fname, sizeof(fname), "configYAML.%s", key);
                rv = yaml_apply(cfg, f, &doc, v, fname);
            }
        }
        if (rv != 0) {
            break;
        }
    }
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(fp);
    return rv;
}

/* ------------------------------------------------------------------------ */
/* Validation (embed.Config.Validate and setupLogging)                       */

static int raw_note(struct keel_config *cfg, const char *text)
{
    if (add_note(cfg, CONFIG_NOTE_RAW, LOG_LEVEL_WARN, "", text, NULL, NULL,
                 NULL) != 0) {
        seterr(cfg, "out of memory");
        return CONFIG_ENOMEM;
    }
    return 0;
}

static bool strs_eq(const struct config_strs *a, const struct config_strs *b)
{
    if (a->n != b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->v[i], b->v[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* Go's %q of a []string: ["a" "b"] */
static const char *goq_strs(const struct config_strs *s, char *buf,
                            size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (size_t i = 0; i < s->n && o < len; i++) {
        char q[256];
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? " " : "",
                              goq(s->v[i], q, sizeof(q)));
    }
    if (o < len) {
        snprintf(buf + o, len - o, "]");
    }
    return buf;
}

static int validate_logging(struct keel_config *cfg)
{
    char q[512], q2[512];
    int rv;
    bool lo_set = is_set(cfg, "log-output");
    bool los_set = is_set(cfg, "log-outputs");

    if (lo_set && !los_set) {
        if ((rv = raw_note(cfg, "'--log-output' flag has been deprecated! "
                                "Please use '--log-outputs'!")) != 0) {
            return rv;
        }
        cfg->log_outputs = cfg->log_output;
    } else if (lo_set && los_set) {
        if (strs_eq(&cfg->log_output, &cfg->log_outputs)) {
            seterr(cfg,
                   "'--log-output=%s' and '--log-outputs=%s' are "
                   "incompatible; only set --log-outputs",
                   goq_strs(&cfg->log_output, q, sizeof(q)),
                   goq_strs(&cfg->log_outputs, q2, sizeof(q2)));
        } else {
            seterr(cfg, "both '--log-output' and '--log-outputs' are set; "
                        "only set '--log-outputs'");
        }
        return CONFIG_EVERIFY;
    }
    if (cfg->log_outputs.n == 0) {
        seterr(cfg, "either '--log-output' or '--log-outputs' flag must be "
                    "set");
        return CONFIG_EVERIFY;
    }
    if (cfg->debug) {
        if ((rv = raw_note(cfg, "[WARNING] Deprecated '--debug' flag is set "
                                "to true (use '--log-level=debug' "
                                "instead")) != 0) {
            return rv;
        }
        if (strcmp(cfg->log_level, "debug") != 0 &&
            (rv = raw_note(cfg, cfg_printf(cfg,
                                           "[WARNING] Deprecated '--debug' "
                                           "flag is set to true with "
                                           "inconsistent '--log-level=%s' "
                                           "flag",
                                           cfg->log_level))) != 0) {
            return rv;
        }
    }
    if (strcmp(cfg->logger, "capnslog") == 0 &&
        (rv = raw_note(cfg, "[WARNING] Deprecated '--logger=capnslog' flag is "
                            "set; use '--logger=zap' flag instead")) != 0) {
        return rv;
    }
    if (cfg->log_package_levels[0] != '\0' &&
        (rv = raw_note(cfg, cfg_printf(cfg,
                                       "[WARNING] Deprecated "
                                       "'--log-package-levels=%s' flag is "
                                       "set; use '--logger=zap' flag instead",
                                       cfg->log_package_levels))) != 0) {
        return rv;
    }
    enum log_level lvl;
    if (log_level_parse(cfg->log_level, &lvl) != 0) {
        /* etcd panics here: panic: unknown level "x" */
        seterr(cfg, "unknown level %s", goq(cfg->log_level, q, sizeof(q)));
        return CONFIG_EVERIFY;
    }
    if (strcmp(cfg->logger, "capnslog") == 0) {
        if (cfg->log_outputs.n != 1) {
            seterr(cfg,
                   "--logger=capnslog supports only 1 value in "
                   "'--log-outputs', got %s",
                   goq_strs(&cfg->log_outputs, q, sizeof(q)));
            return CONFIG_EVERIFY;
        }
        const char *o = cfg->log_outputs.v[0];
        if (strcmp(o, "stderr") != 0 && strcmp(o, "stdout") != 0 &&
            strcmp(o, "default") != 0) {
            seterr(cfg,
                   "unknown log-output %s (only supports \"default\", "
                   "\"stderr\", \"stdout\")",
                   goq(o, q, sizeof(q)));
            return CONFIG_EVERIFY;
        }
    } else if (strcmp(cfg->logger, "zap") == 0) {
        if (cfg->log_outputs.n > 1) {
            for (size_t i = 0; i < cfg->log_outputs.n; i++) {
                if (strcmp(cfg->log_outputs.v[i], "default") == 0) {
                    seterr(cfg, "multi logoutput for \"default\" is not "
                                "supported yet");
                    return CONFIG_EVERIFY;
                }
            }
        }
    } else {
        seterr(cfg, "unknown logger option %s",
               goq(cfg->logger, q, sizeof(q)));
        return CONFIG_EVERIFY;
    }
    return 0;
}

static bool is_ip(const char *h)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* etcd: checkBindURLs */
static int check_bind(struct keel_config *cfg, const struct config_urls *u)
{
    for (size_t i = 0; i < u->n; i++) {
        const struct config_url *x = &u->v[i];
        if (strcmp(x->scheme, "unix") == 0 || strcmp(x->scheme, "unixs") == 0) {
            continue;
        }
        if (strcmp(x->host, "localhost") == 0) {
            continue;
        }
        if (!is_ip(x->host)) {
            seterr(cfg, "expected IP in URL for binding (%s)", x->str);
            return CONFIG_EVERIFY;
        }
    }
    return 0;
}

/* etcd: checkHostURLs */
static int check_host(struct keel_config *cfg, const struct config_urls *u,
                      const char *flag)
{
    for (size_t i = 0; i < u->n; i++) {
        if (u->v[i].host[0] == '\0') {
            char all[1024], q[1100];
            config_urls_join(u, all, sizeof(all));
            seterr(cfg,
                   "--%s %s must be \"host:port\" (unexpected empty host "
                   "(%s))",
                   flag, goq(all, q, sizeof(q)), u->v[i].str);
            return CONFIG_EVERIFY;
        }
    }
    return 0;
}

/* etcd: an empty host whitelist or one containing "*" allows every host */
static bool allows_all(const struct config_strs *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i][0] == '\0' || strcmp(s->v[i], "*") == 0) {
            return true;
        }
    }
    return s->n == 0;
}

/* A flag's value as text, for comparisons (and diagnostics). */
static void flag_value_str(struct keel_config *cfg, const struct flag_def *f,
                           char *buf, size_t len)
{
    void *p = field(cfg, f);
    buf[0] = '\0';
    switch (f->type) {
    case T_STRING:
    case T_CHOICE:
        snprintf(buf, len, "%s", *(const char **)p);
        break;
    case T_BOOL:
        snprintf(buf, len, "%s", *(bool *)p ? "true" : "false");
        break;
    case T_UINT:
        snprintf(buf, len, "%llu", (unsigned long long)*(uint64_t *)p);
        break;
    case T_INT:
    case T_DURATION:
        snprintf(buf, len, "%lld", (long long)*(int64_t *)p);
        break;
    case T_UINT32:
        snprintf(buf, len, "%lu", (unsigned long)*(uint32_t *)p);
        break;
    case T_URLS:
        config_urls_join(p, buf, len);
        break;
    case T_CORS:
    case T_STRS:
    case T_USTRS:
        config_strs_join(p, buf, len);
        break;
    case T_IGNORED:
        break;
    }
}

static bool flag_is_default(const struct keel_config *cfg,
                            const struct flag_def *f)
{
    return cfg->source[flag_index(f)] == CONFIG_SRC_DEFAULT;
}

int config_validate(struct keel_config *cfg)
{
    int rv;
    char q[512];

    if ((rv = validate_logging(cfg)) != 0) {
        return rv;
    }
    if ((rv = check_bind(cfg, &cfg->listen_peer_urls)) != 0 ||
        (rv = check_bind(cfg, &cfg->listen_client_urls)) != 0 ||
        (rv = check_bind(cfg, &cfg->listen_metrics_urls)) != 0) {
        return rv;
    }
    if ((rv = check_host(cfg, &cfg->initial_advertise_peer_urls,
                         "initial-advertise-peer-urls")) != 0 ||
        (rv = check_host(cfg, &cfg->advertise_client_urls,
                         "advertise-client-urls")) != 0) {
        return rv;
    }
    if (strcmp(cfg->initial_cluster_state, "new") != 0 &&
        strcmp(cfg->initial_cluster_state, "existing") != 0) {
        seterr(cfg, "unexpected clusterState %s",
               goq(cfg->initial_cluster_state, q, sizeof(q)));
        return CONFIG_EVERIFY;
    }
    int nset = (cfg->discovery[0] != '\0') +
               (cfg->initial_cluster[0] != '\0') +
               (cfg->discovery_srv[0] != '\0');
    if (nset > 1) {
        /* etcd: ErrConflictBootstrapFlags */
        seterr(cfg, "multiple discovery or bootstrap flags are set. Choose "
                    "one of \"initial-cluster\", \"discovery\" or "
                    "\"discovery-srv\"");
        return CONFIG_EVERIFY;
    }
    if (cfg->heartbeat_ms == 0) {
        seterr(cfg, "--heartbeat-interval must be >0 (set to %llums)",
               (unsigned long long)cfg->heartbeat_ms);
        return CONFIG_EVERIFY;
    }
    if (cfg->election_ms == 0) {
        seterr(cfg, "--election-timeout must be >0 (set to %llums)",
               (unsigned long long)cfg->election_ms);
        return CONFIG_EVERIFY;
    }
    if (cfg->heartbeat_ms > UINT64_MAX / 5 ||
        5 * cfg->heartbeat_ms > cfg->election_ms) {
        seterr(cfg,
               "--election-timeout[%llums] should be at least as 5 times as "
               "--heartbeat-interval[%llums]",
               (unsigned long long)cfg->election_ms,
               (unsigned long long)cfg->heartbeat_ms);
        return CONFIG_EVERIFY;
    }
    if (cfg->election_ms > MAX_ELECTION_MS) {
        seterr(cfg,
               "--election-timeout[%llums] is too long, and should be set "
               "less than %dms",
               (unsigned long long)cfg->election_ms, MAX_ELECTION_MS);
        return CONFIG_EVERIFY;
    }
    if (cfg->listen_client_urls.n > 0 && cfg->advertise_client_urls.n == 0) {
        seterr(cfg, "%s", CONFIG_ERR_UNSET_ACURLS);
        return CONFIG_EVERIFY;
    }
    if (cfg->auto_compaction_mode[0] != '\0' &&
        strcmp(cfg->auto_compaction_mode, "periodic") != 0 &&
        strcmp(cfg->auto_compaction_mode, "revision") != 0) {
        seterr(cfg, "unknown auto-compaction-mode %s",
               goq(cfg->auto_compaction_mode, q, sizeof(q)));
        return CONFIG_EVERIFY;
    }
    if (cfg->experimental_enable_lease_checkpoint_persist &&
        !cfg->experimental_enable_lease_checkpoint) {
        seterr(cfg, "setting experimental-enable-lease-checkpoint-persist "
                    "requires experimental-enable-lease-checkpoint");
        return CONFIG_EVERIFY;
    }

    /* keel: refuse what it cannot do and must not silently ignore; warn
     * about what it ignores. */
    if (strcmp(cfg->proxy, "off") != 0) {
        seterr(cfg, "--proxy=%s is not supported by keel (etcd v2 proxy "
                    "mode); only --proxy=off",
               cfg->proxy);
        return CONFIG_EVERIFY;
    }
    struct keel_config *defaults = malloc(sizeof(*defaults));
    if (defaults == NULL) {
        seterr(cfg, "out of memory");
        return CONFIG_ENOMEM;
    }
    config_init(defaults);
    rv = 0;
    for (size_t i = 0; i < NFLAGS && rv == 0; i++) {
        const struct flag_def *f = &flags[i];
        if (flag_is_default(cfg, f) || f->type == T_IGNORED ||
            (f->status != FLAG_NO && f->status != FLAG_IGNORED)) {
            continue;
        }
        char now[512], def[512];
        flag_value_str(cfg, f, now, sizeof(now));
        flag_value_str(defaults, f, def, sizeof(def));
        if (strcmp(now, def) == 0 ||
            (f->off == OFF(host_whitelist) && allows_all(&cfg->host_whitelist))) {
            continue; /* set, but to the default: nothing to refuse */
        }
        if (f->status == FLAG_NO) {
            seterr(cfg, "--%s is not supported by keel: %s", f->name,
                   f->note);
            rv = CONFIG_EVERIFY;
        } else if (add_note(cfg, CONFIG_NOTE_LOG, LOG_LEVEL_WARN, "etcdmain",
                            cfg_printf(cfg, "ignoring flag --%s: %s", f->name,
                                       f->note),
                            "ignoring flag not implemented by keel", "flag",
                            f->name) != 0) {
            seterr(cfg, "out of memory");
            rv = CONFIG_ENOMEM;
        }
    }
    config_close(defaults);
    free(defaults);
    return rv;
}

/* ------------------------------------------------------------------------ */
/* config_parse                                                              */

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s != NULL ? s + 1 : p;
}

/* etcd: Config.InitialClusterFromName */
static const char *initial_cluster_from_name(struct keel_config *cfg)
{
    const struct config_urls *ap = &cfg->initial_advertise_peer_urls;
    if (ap->n == 0) {
        return "";
    }
    size_t len = 1;
    for (size_t i = 0; i < ap->n; i++) {
        len += strlen(cfg->name) + strlen(ap->v[i].str) + 2;
    }
    char *s = keel_arena_alloc(&cfg->arena, len);
    if (s == NULL) {
        return NULL;
    }
    size_t o = 0;
    for (size_t i = 0; i < ap->n; i++) {
        o += (size_t)snprintf(s + o, len - o, "%s%s=%s", i ? "," : "",
                              cfg->name[0] != '\0' ? cfg->name : "default",
                              ap->v[i].str);
    }
    return s;
}

int config_parse(struct keel_config *cfg, int argc, char **argv, char **envp)
{
    int rv, first = argc;

    if (argc > 0 && argv[0] != NULL) {
        cfg->progname = base_name(argv[0]);
    }
    rv = parse_args(cfg, argc, argv, &first);
    if (rv != 0) {
        return rv;
    }
    if (first < argc) {
        if (strcmp(argv[first], "gateway") == 0 ||
            strcmp(argv[first], "grpc-proxy") == 0) {
            seterr(cfg, "'%s' is not supported by keel", argv[first]);
        } else {
            seterr(cfg, "'%s' is not a valid flag", argv[first]);
        }
        return CONFIG_EVERIFY;
    }
    if (cfg->print_version) {
        return CONFIG_VERSION;
    }

    if (cfg->config_file[0] == '\0') {
        const char *cf = env_get(envp, "ETCD_CONFIG_FILE");
        if (cf != NULL && cf[0] != '\0') {
            if ((cfg->config_file = cfg_strdup(cfg, cf)) == NULL) {
                seterr(cfg, "out of memory");
                return CONFIG_ENOMEM;
            }
        }
    }

    if (cfg->config_file[0] != '\0') {
        /* Start again from the defaults: the file replaces flags and env. */
        struct keel_config *fresh = malloc(sizeof(*fresh));
        if (fresh == NULL) {
            seterr(cfg, "out of memory");
            return CONFIG_ENOMEM;
        }
        config_init(fresh);
        fresh->arena = cfg->arena; /* keep the strings allocated so far */
        fresh->config_file = cfg->config_file;
        fresh->progname = cfg->progname;
        *cfg = *fresh;
        free(fresh);
        cfg->source[flag_index(flag_lookup("config-file", 11))] =
            CONFIG_SRC_CMDLINE;

        rv = parse_file(cfg, cfg->config_file);
        if (rv == 0) {
            if (cfg->initial_cluster_state[0] == '\0') {
                cfg->initial_cluster_state = "new";
            }
            if ((cfg->discovery[0] != '\0' || cfg->discovery_srv[0] != '\0') &&
                strcmp(cfg->initial_cluster, DEFAULT_INITIAL_CLUSTER) == 0) {
                cfg->initial_cluster = "";
            }
            rv = config_validate(cfg);
        }
        /* etcd logs this after loading, whether or not it worked */
        if (rv != CONFIG_ERAW &&
            add_note(cfg, CONFIG_NOTE_LOG, LOG_LEVEL_INFO, "etcdmain",
                     cfg_printf(cfg,
                                "Loading server configuration from \"%s\". "
                                "Other configuration command line flags and "
                                "environment variables will be ignored if "
                                "provided.",
                                cfg->config_file),
                     "loaded server configuration, other configuration "
                     "command line flags and environment variables will be "
                     "ignored if provided",
                     "path", cfg->config_file) != 0) {
            seterr(cfg, "out of memory");
            return CONFIG_ENOMEM;
        }
        if (rv != 0) {
            return rv;
        }
    } else {
        rv = parse_env(cfg, envp);
        if (rv != 0) {
            return rv;
        }
        /* etcd: disable default advertise-client-urls if lcurls is set */
        if (is_set(cfg, "listen-client-urls") &&
            !is_set(cfg, "advertise-client-urls")) {
            cfg->advertise_client_urls.v = NULL;
            cfg->advertise_client_urls.n = 0;
        }
        /* etcd: disable default initial-cluster if discovery is set */
        if ((cfg->discovery[0] != '\0' || cfg->discovery_srv[0] != '\0' ||
             cfg->discovery_srv_name[0] != '\0') &&
            !is_set(cfg, "initial-cluster")) {
            cfg->initial_cluster = "";
        }
        rv = config_validate(cfg);
        if (rv != 0) {
            return rv;
        }
    }

    /* etcd: UpdateDefaultClusterFromName (without default-host detection) */
    if (strcmp(cfg->name, "default") != 0 &&
        strcmp(cfg->initial_cluster, DEFAULT_INITIAL_CLUSTER) == 0) {
        const char *ic = initial_cluster_from_name(cfg);
        if (ic == NULL) {
            seterr(cfg, "out of memory");
            return CONFIG_ENOMEM;
        }
        cfg->initial_cluster = ic;
    }
    return CONFIG_RUN;
}

int config_default_data_dir(struct keel_config *cfg)
{
    if (cfg->data_dir[0] != '\0') {
        return 0;
    }
    const char *d = cfg_printf(cfg, "%s.etcd", cfg->name);
    if (d == NULL) {
        return -1;
    }
    cfg->data_dir = d;
    return 1;
}

int64_t config_quota_bytes(const struct keel_config *cfg)
{
    if (cfg->quota_backend_bytes == 0) {
        return CONFIG_DEFAULT_QUOTA_BYTES;
    }
    return cfg->quota_backend_bytes < 0 ? 0 : cfg->quota_backend_bytes;
}

const char *config_urls_join(const struct config_urls *u, char *buf,
                             size_t len)
{
    size_t o = 0;
    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < u->n && o < len; i++) {
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
                              u->v[i].str);
    }
    return buf;
}

const char *config_strs_join(const struct config_strs *s, char *buf,
                             size_t len)
{
    size_t o = 0;
    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    for (size_t i = 0; i < s->n && o < len; i++) {
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
                              s->v[i]);
    }
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Help, version, Markdown                                                   */

void config_print_usage(const struct keel_config *cfg, FILE *err)
{
    const char *p = cfg->progname;
    fprintf(err,
            "Usage:\n"
            "\n"
            "  %s [flags]\n"
            "    Start a keel server (an etcd 3.4 compatible server).\n"
            "\n"
            "  %s --version\n"
            "    Show the version of keel and of the etcd release it is "
            "compatible with.\n"
            "\n"
            "  %s -h | --help\n"
            "    Show the help information about keel.\n"
            "\n"
            "  %s --config-file\n"
            "    Path to the server configuration file. Note that if a "
            "configuration file is provided, other command line flags and "
            "environment variables will be ignored.\n"
            "\n",
            p, p, p, p);
}

void config_print_help(const struct keel_config *cfg, FILE *out)
{
    (void)cfg;
    for (int s = 0; s < S_COUNT; s++) {
        if (s == S_HIDDEN) {
            continue;
        }
        /* etcd's text has a blank line under this one heading */
        fprintf(out, "\n%s:\n%s", section_title[s],
                s == S_DEPRECATED ? "\n" : "");
        for (size_t i = 0; i < NFLAGS; i++) {
            const struct flag_def *f = &flags[i];
            if ((int)f->section != s) {
                continue;
            }
            fprintf(out, "  --%s %s\n    %s\n", f->name, f->def, f->help);
            if (f->status == FLAG_IGNORED) {
                fprintf(out, "    [keel: accepted and ignored: %s]\n",
                        f->note);
            } else if (f->status == FLAG_NO) {
                fprintf(out, "    [keel: not supported: %s]\n", f->note);
            } else if (f->note != NULL && strstr(f->note, "keel ") != NULL) {
                fprintf(out, "    [keel: %s]\n", f->note);
            }
        }
        if (s == S_UNSAFE) {
            fprintf(out, "\nCAUTIOUS with unsafe flag! It may break the "
                         "guarantees given by the consensus protocol!\n");
        }
    }
    /* etcd: fmt.Println(flagsline), flagsline ending in a newline */
    fprintf(out, "\n");
}

const char *config_os_arch(void)
{
#if defined(__x86_64__)
#define KEEL_GOARCH "amd64"
#elif defined(__aarch64__)
#define KEEL_GOARCH "arm64"
#elif defined(__i386__)
#define KEEL_GOARCH "386"
#elif defined(__arm__)
#define KEEL_GOARCH "arm"
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define KEEL_GOARCH "ppc64le"
#elif defined(__s390x__)
#define KEEL_GOARCH "s390x"
#elif defined(__riscv) && __riscv_xlen == 64
#define KEEL_GOARCH "riscv64"
#else
#define KEEL_GOARCH "unknown"
#endif
#if defined(__linux__)
    return "linux/" KEEL_GOARCH;
#elif defined(__APPLE__)
    return "darwin/" KEEL_GOARCH;
#elif defined(__FreeBSD__)
    return "freebsd/" KEEL_GOARCH;
#else
    return "unknown/" KEEL_GOARCH;
#endif
}

void config_print_version(FILE *out)
{
    fprintf(out,
            "etcd Version: " KEEL_ETCD_VERSION "\n"
            "Git SHA: Not provided\n"
            "Go Version: not applicable (keel is written in C11)\n"
            "Go OS/Arch: %s\n"
            "keel Version: " KEEL_VERSION "\n",
            config_os_arch());
}

static void md_cell(FILE *out, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        if (*s == '|') {
            fputs("\\|", out);
        } else if (*s == '\n') {
            fputc(' ', out);
        } else {
            fputc(*s, out);
        }
    }
}

void config_flags_markdown(FILE *out)
{
    char env[96];
    fprintf(out,
            "Generated from the flag table in `server/config.c` "
            "(`config_flags_markdown()`); `tests/server_config` fails if "
            "this section and the table disagree.\n"
            "\n"
            "Every flag is also read from `ETCD_<FLAG>` (upper case, `-` → "
            "`_`) unless given on the command line (both at once is an "
            "error, as in etcd), and from the YAML `--config-file` under "
            "etcd's keys (then flags and env are ignored, as in etcd).\n"
            "\n"
            "keel column: **yes** implemented; **pending** parsed, validated "
            "and stored in `struct keel_config`, honoured once the "
            "subsystem named in the notes is wired in; **ignored** harmless to ignore, a warning is logged "
            "when set; **no** not supported, setting it is a startup "
            "error.\n"
            "\n"
            "Error texts and exit codes are etcd's (flag syntax: exit 2 with "
            "Go's flag-package message and the usage; invalid "
            "configuration: exit 1 with `error verifying flags, ...`); "
            "`tests/server_config/test_cli.sh` diffs them against "
            "`/usr/bin/etcd`. Deliberate differences:\n"
            "\n"
            "- `--pre-vote` defaults to `true` (etcd 3.5's default).\n"
            "- SIGTERM/SIGINT end keel with exit status 0; etcd re-raises the "
            "signal (status 143/130).\n"
            "- An unknown `--log-level` is a configuration error (etcd 3.4 "
            "panics).\n"
            "- With `--logger zap` every line keel writes is JSON; etcd still "
            "prints some capnslog and raw `[WARNING]` lines.\n"
            "- Config file: durations may also be written `100ms` (etcd "
            "takes only integer nanoseconds), list keys also take a "
            "comma-separated string, unknown keys are warned about (etcd "
            "ignores them silently).\n"
            "- No default-host detection for `0.0.0.0` listen URLs with "
            "default advertise URLs.\n"
            "- `keel gateway` and `keel grpc-proxy` are not supported.\n"
            "- `--version` says `Git SHA: Not provided`, `Go Version: not "
            "applicable` and adds a `keel Version:` line; the usage text "
            "names keel.\n"
            "- `--socket-reuse-port` and `--socket-reuse-address` (etcd 3.5) "
            "are accepted and ignored.\n");
    for (int s = 0; s < S_COUNT; s++) {
        fprintf(out, "\n### %s\n\n", section_title[s]);
        fprintf(out, "| flag | env | etcd 3.4 default | keel | notes |\n");
        fprintf(out, "|---|---|---|---|---|\n");
        for (size_t i = 0; i < NFLAGS; i++) {
            const struct flag_def *f = &flags[i];
            if ((int)f->section != s) {
                continue;
            }
            flag_env_name(f, env, sizeof(env));
            fprintf(out, "| `--%s` | `%s` | ", f->name, env);
            if (strcmp(f->name, "pre-vote") == 0) {
                fputs("`false`", out);
            } else if (f->def[0] == '\0') {
                fputs("(none)", out);
            } else {
                fputc('`', out);
                md_cell(out, f->def);
                fputc('`', out);
            }
            fprintf(out, " | %s | ", status_name[f->status]);
            md_cell(out, f->note);
            fputs(" |\n", out);
        }
    }
}
