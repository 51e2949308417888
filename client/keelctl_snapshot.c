/*
 * keelctl snapshot save: stream Maintenance.Snapshot into <file>.part,
 * check the sha256 trailer is there (its length: size % 512 == 32), fsync,
 * rename to <file> (etcd: etcdctl/ctlv3/command/snapshot_command.go,
 * clientv3/snapshot/v3_snapshot.go Save, clientv3/maintenance.go Snapshot),
 * with the zap log lines etcdctl prints on stderr.
 *
 * Failure modes: a bad argument count (128), several endpoints, an
 * unwritable path or a stream error (5, ExitInterrupted); the .part file
 * is removed on every failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "grpc_wire.h"
#include "keelctl.h"

void ctl_zap(int iso_ts, const char *level, const char *caller,
                const char *msg, const char *fields)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    fflush(stdout);
    fprintf(stderr, "{\"level\":\"%s\",\"ts\":", level);
    if (iso_ts) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        char b[32];
        strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "\"%s.%03dZ\"", b, (int)(tv.tv_usec / 1000));
    } else {
        fprintf(stderr, "%ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec);
    }
    fprintf(stderr, ",\"caller\":\"%s\",\"msg\":\"%s\"%s}\n", caller, msg,
            fields);
}

const char *ctl_go_errno(int e)
{
    static char buf[128];
    snprintf(buf, sizeof(buf), "%s", strerror(e));
    if (buf[0] >= 'A' && buf[0] <= 'Z') {
        buf[0] = (char)(buf[0] - 'A' + 'a');
    }
    return buf;
}

char *ctl_jfield(const char *name, const char *value)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, ",\"%s\":", name);
    json_string(f, value, strlen(value));
    fclose(f);
    char *out = ctl_strdup(buf);
    free(buf);
    return out;
}

static int snap_fd = -1;
static uint64_t snap_size;
static struct ctl_progress snap_progress;
static int snap_done, snap_status, snap_write_errno;
static char snap_msg[512];

static void snap_msg_cb(struct keel_stream *s, ProtobufCMessage *m)
{
    Etcdserverpb__SnapshotResponse *r = (void *)m;
    size_t off = 0;
    while (off < r->blob.len) {
        ssize_t n = write(snap_fd, r->blob.data + off, r->blob.len - off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            snap_write_errno = errno;
            keel_stream_cancel(s);
            return;
        }
        off += (size_t)n;
    }
    snap_size += r->blob.len;
    ctl_progress_update(&snap_progress, snap_size);
}

static void snap_end_cb(struct keel_stream *s, int status, const char *msg)
{
    (void)s;
    snap_status = status;
    snprintf(snap_msg, sizeof(snap_msg), "%s", msg);
    snap_done = 1;
}

static char *part_path;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (snap_fd >= 0) {
        close(snap_fd);
    }
    if (part_path) {
        unlink(part_path);
    }
    ctl_die(EXIT_INTERRUPTED, "%s", msg);
}

static void snapshot_save_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "snapshot save expects one argument");
    }
    const char *path = argv[0];
    struct keel_sync *s = ctl_client(); /* flags, env, -w as etcdctl */
    if (g.n_endpoints != 1) {
        fail("snapshot must be requested to one selected node, not multiple "
             "[%s]",
             ctl_endpoint_list());
    }
    size_t plen = strlen(path) + 6;
    part_path = ctl_alloc(plen);
    snprintf(part_path, plen, "%s.part", path);
    snap_fd = open(part_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (snap_fd < 0) {
        int e = errno;
        part_path = NULL; /* nothing of ours to remove */
        fail("could not open %s.part (open %s.part: %s)", path, path,
             ctl_go_errno(e));
    }
    ctl_zap(0, "info", "snapshot/v3_snapshot.go:119", "created temporary db file",
        ctl_jfield("path", part_path));

    uint64_t t0 = uv_hrtime();
    struct keel_stream st = {0};
    /* Without --command-timeout, etcdctl puts no deadline on the save. */
    struct keel_call_opts o = {g.command_timeout_set ? g.command_timeout_ms : 0,
                               0};
    int rv = keel_stream_start(keel_sync_client(s), &st, KEEL_M_SNAPSHOT,
                               &etcdserverpb__snapshot_response__descriptor, &o,
                               snap_msg_cb, snap_end_cb);
    if (rv != 0) {
        fail("%s", keel_strerror(rv));
    }
    Etcdserverpb__SnapshotRequest req = ETCDSERVERPB__SNAPSHOT_REQUEST__INIT;
    keel_stream_send(&st, &req.base);
    keel_stream_close_send(&st);
    /* clientv3 logs once the stream is open: wait for the connection. */
    while (!snap_done && !keel_client_connected(keel_sync_client(s))) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    if (keel_client_connected(keel_sync_client(s))) {
        ctl_zap(1, "info", "clientv3/maintenance.go:200",
            "opened snapshot stream; downloading", "");
        ctl_zap(0, "info", "snapshot/v3_snapshot.go:127", "fetching snapshot",
            ctl_jfield("endpoint", g.endpoints[0]));
    }
    ctl_progress_start(&snap_progress, "downloading", 0);
    while (!snap_done) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    ctl_progress_end(&snap_progress);
    if (snap_write_errno) {
        fail("write %s: %s", part_path, ctl_go_errno(snap_write_errno));
    }
    if (snap_status != KEEL_GRPC_OK) {
        char err[700];
        if (snap_status == KEEL_GRPC_DEADLINE_EXCEEDED) {
            snprintf(err, sizeof(err), "%s", KEEL_DEADLINE_MESSAGE);
        } else {
            snprintf(err, sizeof(err), "rpc error: code = %s desc = %s",
                     grpc_code_name(snap_status), snap_msg);
        }
        ctl_zap(1, "warn", "clientv3/maintenance.go:211",
            "failed to receive from snapshot stream; closing",
            ctl_jfield("error", err));
        fail("%s", snap_status == KEEL_GRPC_DEADLINE_EXCEEDED
                       ? KEEL_DEADLINE_MESSAGE
                       : snap_msg);
    }
    ctl_zap(1, "info", "clientv3/maintenance.go:208",
        "completed snapshot read; closing", "");
    if (snap_size % 512 != 32) {
        fail("sha256 checksum not found [bytes: %llu]",
             (unsigned long long)snap_size);
    }
    if (fsync(snap_fd) != 0 || close(snap_fd) != 0) {
        int e = errno;
        snap_fd = -1;
        fail("sync %s: %s", part_path, ctl_go_errno(e));
    }
    snap_fd = -1;
    char size[32], fields[600];
    humanize_bytes(snap_size, size, sizeof(size));
    char *ep = ctl_jfield("endpoint", g.endpoints[0]);
    snprintf(fields, sizeof(fields), "%s,\"size\":\"%s\",\"took\":%.9g", ep,
             size, (double)(uv_hrtime() - t0) / 1e9);
    ctl_zap(0, "info", "snapshot/v3_snapshot.go:142", "fetched snapshot", fields);
    if (rename(part_path, path) != 0) {
        int e = errno;
        fail("could not rename %s to %s (rename %s %s: %s)", part_path, path,
             part_path, path, ctl_go_errno(e));
    }
    ctl_zap(0, "info", "snapshot/v3_snapshot.go:152", "saved",
        ctl_jfield("path", path));
    printf("Snapshot saved at %s\n", path);
}

static struct flag no_flags[] = {{NULL, 0, 0, NULL, 0}};

const struct ctl_cmd ctl_snapshot_cmds[] = {
    {"snapshot save", no_flags, snapshot_save_run},
    {NULL, NULL, NULL},
};
