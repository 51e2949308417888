/*
 * keel: the daemon's entry point, a drop-in for `etcd` (3.4).
 *
 * Happy path: parse flags / ETCD_* env / --config-file (config.c); print
 * help or version and exit 0 when asked; set up logging (log.c); log the
 * lines etcd 3.4 logs at startup (version block, config summary); create the
 * data directory (<data-dir>/member, mode 0700, as etcd); start the libuv
 * loop with SIGTERM/SIGINT handlers and hand the loop to server_start();
 * on a signal, log etcd's shutdown line, close every handle and exit 0.
 *
 * Failure modes, each with etcd's text and exit code:
 *   flag syntax / unknown flag   -> message + usage on stderr, exit 2
 *   invalid value / verification -> "error verifying flags, ..." , exit 1
 *   env var shadowed by a flag   -> critical log line, exit 1
 *   data dir not creatable       -> critical log line, exit 1
 *
 * Differences from etcd kept on purpose: SIGTERM/SIGINT exit with status 0
 * (etcd re-raises the signal and dies with 128+n); the version block names
 * keel; "Go Version" says there is no Go runtime.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "keel_err.h"
#include "log.h"
#include "server.h"

extern char **environ;

#define MAX_LIST 32

/* ------------------------------------------------------------------------ */

static int ncpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        return CPU_COUNT(&set);
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* filepath.Join(dir, "member") as Go prints it (cleaned). */
static void member_dir(const char *dir, char *buf, size_t len)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s/member", dir);
    /* clean: drop "./" components and duplicate slashes */
    size_t o = 0;
    const char *p = tmp;
    bool abs = p[0] == '/';
    if (abs && o + 1 < len) {
        buf[o++] = '/';
    }
    while (*p != '\0') {
        while (*p == '/') {
            p++;
        }
        size_t n = strcspn(p, "/");
        if (n == 0) {
            break;
        }
        if (!(n == 1 && p[0] == '.')) {
            if (o > (abs ? 1u : 0u) && o + 1 < len) {
                buf[o++] = '/';
            }
            for (size_t i = 0; i < n && o + 1 < len; i++) {
                buf[o++] = p[i];
            }
        }
        p += n;
    }
    buf[o] = '\0';
}

static size_t urls_array(const struct config_urls *u, const char **out)
{
    size_t n = u->n < MAX_LIST ? u->n : MAX_LIST;
    for (size_t i = 0; i < n; i++) {
        out[i] = u->v[i].str;
    }
    return n;
}

static size_t strs_array(const struct config_strs *s, const char **out)
{
    size_t n = s->n < MAX_LIST ? s->n : MAX_LIST;
    for (size_t i = 0; i < n; i++) {
        out[i] = s->v[i];
    }
    return n;
}

static void log_notes(const struct keel_config *cfg)
{
    for (size_t i = 0; i < cfg->nnotes; i++) {
        const struct config_note *n = &cfg->notes[i];
        if (n->kind == CONFIG_NOTE_RAW) {
            if (!log_is_zap()) {
                log_raw(n->text);
            } else {
                /* etcd writes these raw even under zap; keel keeps every
                 * zap line JSON */
                const char *t = n->text;
                if (strncmp(t, "[WARNING] ", 10) == 0) {
                    t += 10;
                }
                log__fields(LOG_LEVEL_WARN, __FILE__, __LINE__, "etcdmain", t,
                            NULL, 0);
            }
            continue;
        }
        if (log_is_zap() && n->zap_msg != NULL) {
            if (n->key != NULL) {
                struct log_field f = LOG_STR(n->key, n->value);
                log__fields(n->level, __FILE__, __LINE__, n->pkg, n->zap_msg,
                            &f, 1);
            } else {
                log__fields(n->level, __FILE__, __LINE__, n->pkg, n->zap_msg,
                            NULL, 0);
            }
        } else {
            log__printf(n->level, __FILE__, __LINE__, n->pkg, "%s", n->text);
        }
    }
}

static void log_version_block(void)
{
    int cpus = ncpu();
    if (log_is_zap()) {
        return; /* zap: part of "starting an etcd server" (as etcd) */
    }
    log_info("etcdmain", "etcd Version: %s", KEEL_ETCD_VERSION);
    log_info("etcdmain", "Git SHA: Not provided");
    log_info("etcdmain", "Go Version: not applicable (keel %s, C11)",
             KEEL_VERSION);
    log_info("etcdmain", "Go OS/Arch: %s", config_os_arch());
    log_info("etcdmain",
             "setting maximum number of CPUs to %d, total number of "
             "available CPUs is %d",
             cpus, cpus);
}

static void log_config_summary(const struct keel_config *cfg, bool initialized,
                               int64_t retention)
{
    char mdir[4096], buf[4096];
    member_dir(cfg->data_dir, mdir, sizeof(mdir));
    uint64_t election = cfg->election_ms / cfg->heartbeat_ms * cfg->heartbeat_ms;

    if (!log_is_zap()) {
        log_info("embed", "name = %s", cfg->name);
        if (cfg->force_new_cluster) {
            log_info("embed", "force new cluster");
        }
        log_info("embed", "data dir = %s", cfg->data_dir);
        log_info("embed", "member dir = %s", mdir);
        if (cfg->wal_dir[0] != '\0') {
            log_info("embed", "dedicated WAL dir = %s", cfg->wal_dir);
        }
        log_info("embed", "heartbeat = %llums",
                 (unsigned long long)cfg->heartbeat_ms);
        log_info("embed", "election = %llums", (unsigned long long)election);
        log_info("embed", "snapshot count = %llu",
                 (unsigned long long)cfg->snapshot_count);
        log_info("embed", "advertise client URLs = %s",
                 config_urls_join(&cfg->advertise_client_urls, buf,
                                  sizeof(buf)));
        if (initialized) {
            log_info("embed", "initial advertise peer URLs = %s",
                     config_urls_join(&cfg->initial_advertise_peer_urls, buf,
                                      sizeof(buf)));
            log_info("embed", "initial cluster = %s", cfg->initial_cluster);
        }
        return;
    }

    const char *apu[MAX_LIST], *lpu[MAX_LIST], *acu[MAX_LIST], *lcu[MAX_LIST],
        *lmu[MAX_LIST], *cors[MAX_LIST], *hw[MAX_LIST];
    size_t napu = urls_array(&cfg->initial_advertise_peer_urls, apu);
    size_t nlpu = urls_array(&cfg->listen_peer_urls, lpu);
    size_t nacu = urls_array(&cfg->advertise_client_urls, acu);
    size_t nlcu = urls_array(&cfg->listen_client_urls, lcu);
    size_t nlmu = urls_array(&cfg->listen_metrics_urls, lmu);
    size_t ncors = strs_array(&cfg->cors, cors);
    size_t nhw = strs_array(&cfg->host_whitelist, hw);
    char osarch[64];
    snprintf(osarch, sizeof(osarch), "%s", config_os_arch());
    char *slash = strchr(osarch, '/');
    const char *goarch = "";
    if (slash != NULL) {
        *slash = '\0';
        goarch = slash + 1;
    }
    int cpus = ncpu();
    log_infow(
        "embed", "starting an etcd server",
        LOG_STR("etcd-version", KEEL_ETCD_VERSION),
        LOG_STR("keel-version", KEEL_VERSION),
        LOG_STR("git-sha", "Not provided"),
        LOG_STR("go-version", "not applicable (C11)"),
        LOG_STR("go-os", osarch), LOG_STR("go-arch", goarch),
        LOG_INT("max-cpu-set", cpus), LOG_INT("max-cpu-available", cpus),
        LOG_BOOL("member-initialized", initialized),
        LOG_STR("name", cfg->name), LOG_STR("data-dir", cfg->data_dir),
        LOG_STR("wal-dir", cfg->wal_dir),
        LOG_STR("wal-dir-dedicated", cfg->wal_dir),
        LOG_STR("member-dir", mdir),
        LOG_BOOL("force-new-cluster", cfg->force_new_cluster),
        LOG_DUR("heartbeat-interval", (int64_t)cfg->heartbeat_ms * 1000000),
        LOG_DUR("election-timeout", (int64_t)election * 1000000),
        LOG_BOOL("initial-election-tick-advance",
                 cfg->initial_election_tick_advance),
        LOG_UINT("snapshot-count", cfg->snapshot_count),
        LOG_UINT("max-wals", cfg->max_wals),
        LOG_UINT("max-snapshots", cfg->max_snapshots),
        /* etcd: DefaultSnapshotCatchUpEntries (not a flag) */
        LOG_UINT("snapshot-catchup-entries", 5000),
        LOG_STRS("initial-advertise-peer-urls", apu, napu),
        LOG_STRS("listen-peer-urls", lpu, nlpu),
        LOG_STRS("advertise-client-urls", acu, nacu),
        LOG_STRS("listen-client-urls", lcu, nlcu),
        LOG_STRS("listen-metrics-urls", lmu, nlmu),
        LOG_STRS("cors", cors, ncors), LOG_STRS("host-whitelist", hw, nhw),
        LOG_STR("initial-cluster", cfg->initial_cluster),
        LOG_STR("initial-cluster-state", cfg->initial_cluster_state),
        LOG_STR("initial-cluster-token", cfg->initial_cluster_token),
        LOG_INT("quota-backend-bytes", config_quota_bytes(cfg)),
        LOG_UINT("max-request-bytes", cfg->max_request_bytes),
        LOG_UINT("max-concurrent-streams", cfg->max_concurrent_streams),
        LOG_BOOL("pre-vote", cfg->pre_vote),
        LOG_BOOL("initial-corrupt-check",
                 cfg->experimental_initial_corrupt_check),
        LOG_DUR("corrupt-check-time-interval",
                cfg->experimental_corrupt_check_time_ns),
        LOG_STR("auto-compaction-mode", cfg->auto_compaction_mode),
        LOG_DUR("auto-compaction-retention", retention),
        LOG_STR("discovery-url", cfg->discovery),
        LOG_STR("discovery-proxy", cfg->discovery_proxy));
}

/* os.MkdirAll(dir, 0700) */
static int mkdir_all(const char *dir)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(path)) {
        return -ENAMETOOLONG;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char c = path[i];
            path[i] = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                return -errno;
            }
            path[i] = c;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0) {
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        return -ENOTDIR;
    }
    return 0;
}

/* Go's os.FileMode.String() for the permission part: "drwxr-xr-x". */
static void go_filemode(mode_t mode, char out[11])
{
    static const char rwx[] = "rwxrwxrwx";
    out[0] = S_ISDIR(mode) ? 'd' : '-';
    for (int i = 0; i < 9; i++) {
        out[1 + i] = (mode & (1u << (8 - i))) ? rwx[i] : '-';
    }
    out[10] = '\0';
}

/* etcd: fileutil.TouchDirAll warns when an existing data dir is not 0700
 * (pkg/fileutil CheckDirPermission). */
static void check_dir_permission(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0 || (st.st_mode & 0777) == 0700) {
        return;
    }
    char mode[11];
    go_filemode(st.st_mode, mode);
    char msg[1400];
    snprintf(msg, sizeof(msg),
             "directory \"%.1024s\" exist, but the permission is \"%s\". The "
             "recommended permission is \"-rwx------\" to prevent possible "
             "unprivileged access to the data.",
             dir, mode);
    if (log_is_zap()) {
        log_warnw("fileutil", "check file permission", LOG_ERR(msg));
    } else {
        log_warn("pkg/fileutil", "check file permission: %s", msg);
    }
}

/* Create <data-dir>/member (0700). Returns 0 or -errno; msg gets etcd's
 * text for the failure. */
static int prepare_data_dir(const struct keel_config *cfg, char *msg,
                            size_t len)
{
    char mdir[1024], eb[128];
    check_dir_permission(cfg->data_dir);
    int rv = mkdir_all(cfg->data_dir);
    if (rv == 0 && access(cfg->data_dir, W_OK) != 0) {
        rv = -errno;
    }
    if (rv != 0) {
        snprintf(msg, len, "cannot access data directory: mkdir %.900s: %s",
                 cfg->data_dir, config_go_strerror(-rv, eb, sizeof(eb)));
        return rv;
    }
    snprintf(mdir, sizeof(mdir), "%s/member", cfg->data_dir);
    rv = mkdir_all(mdir);
    if (rv != 0) {
        snprintf(msg, len, "cannot access data directory: mkdir %.900s: %s",
                 mdir, config_go_strerror(-rv, eb, sizeof(eb)));
    }
    return rv;
}

/* ------------------------------------------------------------------------ */
/* Signals and the loop                                                      */

static void on_close(uv_handle_t *h)
{
    (void)h;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) {
        uv_close(h, on_close);
    }
}

struct main_loop;
static void main_stop(struct main_loop *m);

static void on_signal(uv_signal_t *sig, int signum)
{
    /* Go's os.Signal String(): "terminated", "interrupt" */
    const char *name = signum == SIGTERM ? "terminated" : "interrupt";
    if (log_is_zap()) {
        log_infow("osutil", "received signal; shutting down",
                  LOG_STR("signal", name));
    } else {
        log_notice("pkg/osutil", "received %s signal, shutting down...",
                   name);
    }
    struct main_loop *m = sig->data;
    main_stop(m);
}

/* Signals are watched from the moment the logger is up, so a SIGTERM that
 * arrives during startup is handled (logged, exit 0) like a later one. */
struct main_loop
{
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    struct keel_server *srv; /* NULL until server_start() succeeds */
    /* a signal came while server_start() ran the loop itself (a joining
     * member fetching the cluster): stop once it returns */
    bool stop_requested;
};

static void server_stopped(void *arg)
{
    struct main_loop *m = arg;
    m->srv = NULL;
    uv_stop(&m->loop);
}

/* Stop accepting, finish what is in flight, sync, then leave the loop. */
static void main_stop(struct main_loop *m)
{
    if (m->srv == NULL) {
        m->stop_requested = true;
        uv_stop(&m->loop);
        return;
    }
    server_stop(m->srv, server_stopped, m);
}

static void server_ready(void *arg)
{
    (void)arg;
    if (log_is_zap()) {
        log_infow("embed", "ready to serve client requests");
    } else {
        log_info("embed", "ready to serve client requests");
    }
}

static int loop_init(struct main_loop *m)
{
    m->srv = NULL;
    m->stop_requested = false;
    int rv = uv_loop_init(&m->loop);
    if (rv != 0) {
        return rv;
    }
    uv_signal_init(&m->loop, &m->sigterm);
    uv_signal_init(&m->loop, &m->sigint);
    m->sigterm.data = m;
    m->sigint.data = m;
    uv_signal_start(&m->sigterm, on_signal, SIGTERM);
    uv_signal_start(&m->sigint, on_signal, SIGINT);
    return 0;
}

/* Close whatever is left (signal handlers, server handles), let the close
 * callbacks run, then release the loop. */
static void loop_close(struct main_loop *m)
{
    uv_walk(&m->loop, close_walk, NULL);
    uv_run(&m->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m->loop) != 0) {
        log_warn("etcdmain", "event loop closed with handles still active");
    }
}

static int run_loop(struct main_loop *m, const struct keel_config *cfg)
{
    char err[512] = "";
    int rv = server_start(&m->loop, cfg, &m->srv, err, sizeof(err));
    if (rv != 0) {
        /* etcd: lg.Fatal("discovery failed", ...) / plog.Fatalf("%v"); a
         * certificate that does not load: lg.Fatal("listener failed") */
        if (log_is_zap()) {
            log_w(LOG_LEVEL_CRITICAL, "etcdmain",
                  rv == KEEL_ELISTEN ? "listener failed" : "discovery failed",
                  LOG_ERR(err));
        } else {
            log__printf(LOG_LEVEL_CRITICAL, __FILE__, __LINE__, "etcdmain",
                        "%s", err);
        }
        return 1;
    }
    server_on_ready(m->srv, server_ready, m);
    /* etcd: a removed member stops and exits 0 */
    server_on_removed(m->srv, (void (*)(void *))main_stop, m);
    if (m->stop_requested) {
        main_stop(m);
    }
    uv_run(&m->loop, UV_RUN_DEFAULT);
    if (m->srv != NULL) {
        /* the loop stopped without a signal (should not happen): stop the
         * server cleanly anyway */
        server_stop(m->srv, server_stopped, m);
        uv_run(&m->loop, UV_RUN_DEFAULT);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

static int verify_error(struct keel_config *cfg)
{
    char err[512];
    /* etcd logs with zap when its logger came up, else with capnslog */
    if (strcmp(cfg->logger, "zap") != 0 ||
        log_init(cfg, err, sizeof(err)) != 0) {
        log_close();
    }
    log_notes(cfg);
    if (log_is_zap()) {
        log_warnw("etcdmain", "failed to verify flags", LOG_ERR(cfg->errmsg));
        if (strcmp(cfg->errmsg, CONFIG_ERR_UNSET_ACURLS) == 0) {
            log_warnw("etcdmain", "advertise client URLs are not set",
                      LOG_ERR(cfg->errmsg));
        }
    } else {
        log_error("etcdmain", "error verifying flags, %s. See '%s --help'.",
                  cfg->errmsg, cfg->progname);
        if (strcmp(cfg->errmsg, CONFIG_ERR_UNSET_ACURLS) == 0) {
            log_error("etcdmain",
                      "When listening on specific address(es), this etcd "
                      "process must advertise accessible url(s) to each "
                      "connected client.");
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct keel_config cfg;
    char err[1024];
    int code = 0;

    /* Hold SIGTERM/SIGINT until the loop's handlers are in place, so a stop
     * request during startup still ends with the orderly exit. */
    sigset_t stopsigs;
    sigemptyset(&stopsigs);
    sigaddset(&stopsigs, SIGTERM);
    sigaddset(&stopsigs, SIGINT);
    sigprocmask(SIG_BLOCK, &stopsigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    config_init(&cfg);
    int rv = config_parse(&cfg, argc, argv, environ);
    switch (rv) {
    case CONFIG_RUN:
        break;
    case CONFIG_HELP:
        /* etcd: usage on stderr (Go's flag package), flags on stdout */
        config_print_usage(&cfg, stderr);
        config_print_help(&cfg, stdout);
        goto out;
    case CONFIG_VERSION:
        config_print_version(stdout);
        goto out;
    case CONFIG_EUSAGE:
        fprintf(stderr, "%s\n", cfg.errmsg);
        config_print_usage(&cfg, stderr);
        fputc('\n', stderr);
        code = 2;
        goto out;
    case CONFIG_EFATAL:
        log_notes(&cfg);
        log__printf(LOG_LEVEL_CRITICAL, __FILE__, __LINE__, "pkg/flags", "%s",
                    cfg.errmsg);
        code = 1;
        goto out;
    case CONFIG_ERAW:
    case CONFIG_ENOMEM:
        fprintf(stderr, "%s\n", cfg.errmsg);
        code = 1;
        goto out;
    default:
        code = verify_error(&cfg);
        goto out;
    }

    if (log_init(&cfg, err, sizeof(err)) != 0) {
        snprintf(cfg.errmsg, sizeof(cfg.errmsg), "%s", err);
        code = verify_error(&cfg);
        goto out;
    }
    struct main_loop m;
    rv = loop_init(&m);
    if (rv != 0) {
        log__printf(LOG_LEVEL_CRITICAL, __FILE__, __LINE__, "etcdmain",
                    "cannot start the event loop: %s", uv_strerror(rv));
        code = 1;
        goto out_log;
    }
    sigprocmask(SIG_UNBLOCK, &stopsigs, NULL);
    log_notes(&cfg);
    log_version_block();

    if (config_default_data_dir(&cfg) == 1) {
        if (log_is_zap()) {
            log_warnw("etcdmain", "'data-dir' was empty; using default",
                      LOG_STR("data-dir", cfg.data_dir));
        } else {
            log_warn("etcdmain",
                     "no data-dir provided, using default data-dir ./%s",
                     cfg.data_dir);
        }
    }

    char mdir[4096];
    struct stat st;
    snprintf(mdir, sizeof(mdir), "%s/member", cfg.data_dir);
    bool initialized = stat(mdir, &st) == 0 && S_ISDIR(st.st_mode);
    if (initialized) {
        if (log_is_zap()) {
            log_infow("etcdmain", "server has been already initialized",
                      LOG_STR("data-dir", cfg.data_dir),
                      LOG_STR("dir-type", "member"));
        } else {
            log_notice("etcdmain",
                       "the server is already initialized as member before, "
                       "starting as etcd member...");
        }
    }
    /* etcd: embed.StartEtcd parses the retention before anything else and
     * fails with plog.Fatalf / lg.Fatal("discovery failed") */
    int64_t retention = 0;
    if (config_compaction_retention(&cfg, &retention, err, sizeof(err)) != 0) {
        if (log_is_zap()) {
            log_w(LOG_LEVEL_CRITICAL, "etcdmain", "discovery failed",
                  LOG_ERR(err));
        } else {
            log__printf(LOG_LEVEL_CRITICAL, __FILE__, __LINE__, "etcdmain",
                        "%s", err);
        }
        code = 1;
        goto out_loop;
    }
    log_config_summary(&cfg, initialized, retention);

    if (prepare_data_dir(&cfg, err, sizeof(err)) != 0) {
        if (log_is_zap()) {
            log_errorw("etcdmain", "failed to start etcd", LOG_ERR(err));
        } else {
            log__printf(LOG_LEVEL_CRITICAL, __FILE__, __LINE__, "etcdmain",
                        "%s", err);
        }
        code = 1;
        goto out_loop;
    }

    code = run_loop(&m, &cfg);

out_loop:
    loop_close(&m);
out_log:
    log_close();
out:
    fflush(stdout);
    config_close(&cfg);
    return code;
}
