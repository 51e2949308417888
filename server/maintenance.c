/*
 * server/maintenance.c: the etcdserverpb.Maintenance service as etcd 3.4
 * answers it (etcdserver/api/v3rpc/maintenance.go): Status, Hash, HashKV,
 * Alarm, MoveLeader, Snapshot and Defragment.
 *
 * Alarm: GET answers from the node's applied alarm list; ACTIVATE and
 * DEACTIVATE go through raft (node.c applies them; the quota raises NOSPACE
 * itself, see node_quota_check).
 *
 * Snapshot (server stream):
 *
 *   start ──▶ temp file (unlinked) ──▶ worker: mvcc_copy_fd (compacting,
 *             from a read txn; the node is held open)
 *        ──▶ loop: pump: 32 KiB chunks (etcd snapshotSendBufferSize) with
 *             remaining_bytes, while the call buffers < SNAP_BUDGET; resumes
 *             from on_drain ──▶ last message: the sha256 of the image
 *             (etcd's trailer, checked by `etcdctl snapshot save`) ──▶ OK
 *
 *   Suspended in: the copy work, or waiting for on_drain. A cancel while
 *   copying finishes the call at once and frees the rest when the work
 *   returns; a cancel while pumping frees everything.
 *
 * Defragment (unary): node_pause (no Ready cycle in flight: every acked
 * write is in the store, nothing writes until resume) ──▶ worker:
 * mvcc_defrag_copy (compacting copy to <db>.defrag) ──▶ loop, once no
 * snapshot copy still reads the old file: mvcc_defrag_swap ──▶ node_resume
 * ──▶ DefragmentResponse. Writes proposed meanwhile wait in raft and apply
 * after the swap; serializable reads keep being served from the old file.
 * One defragmentation at a time; a second request waits for the first to
 * finish and then runs its own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "config.h"
#include "auth.h"
#include "grpc.h"
#include "keel_err.h"
#include "log.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

#define NEW(call, type, desc) \
    ((type *)server_new_message(grpc_call_arena(call), &(desc)))

static int64_t db_size(struct keel_server *s)
{
    struct server_info info;
    server_info(s, &info);
    char path[4096];
    snprintf(path, sizeof path, "%s/member/snap/db", info.data_dir);
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

static int64_t current_rev(struct keel_server *s)
{
    return mvcc_revision(node_store(server_node(s)));
}

static const char *alarm_name(int a)
{
    switch (a) {
        case ETCDSERVERPB__ALARM_TYPE__NOSPACE:
            return "NOSPACE";
        case ETCDSERVERPB__ALARM_TYPE__CORRUPT:
            return "CORRUPT";
        default:
            return "NONE";
    }
}

static void status_start(struct grpc_call *call,
                         const ProtobufCMessage *msg,
                         void *data)
{
    (void)msg;
    struct keel_server *s = data;
    Etcdserverpb__StatusResponse *r =
        NEW(call, Etcdserverpb__StatusResponse,
            etcdserverpb__status_response__descriptor);
    if (r != NULL) {
        struct node_status st;
        node_status(server_node(s), &st);
        r->version = (char *)KEEL_ETCD_VERSION;
        r->leader = st.leader;
        r->raftindex = st.commit_index;
        r->raftterm = st.term;
        r->raftappliedindex = st.applied_index;
        r->islearner = st.is_learner;
        r->dbsize = db_size(s);
        /* etcd: SizeInUse = the file minus its free pages; LMDB's free
         * list is what a defrag (compacting copy) would leave out. */
        uint64_t total = 0, in_use = 0;
        if (mvcc_db_size(node_store(server_node(s)), &total, &in_use) == 0 &&
            in_use <= (uint64_t)r->dbsize) {
            r->dbsizeinuse = (int64_t)in_use;
        } else {
            r->dbsizeinuse = r->dbsize;
        }
        struct node_alarm al[16];
        size_t na = node_alarms(server_node(s), al, 16);
        if (na > 16) {
            na = 16;
        }
        char **errs =
            keel_arena_alloc(grpc_call_arena(call), (na + 1) * sizeof *errs);
        if (errs != NULL) {
            r->errors = errs;
            if (st.leader == 0) {
                errs[r->n_errors++] = (char *)"etcdserver: no leader";
            }
            for (size_t i = 0; i < na; i++) {
                /* Go's proto CompactTextString of the AlarmMember */
                char *e = keel_arena_alloc(grpc_call_arena(call), 64);
                if (e == NULL) {
                    break;
                }
                snprintf(e, 64, "memberID:%" PRIu64 " alarm:%s ",
                         al[i].member_id, alarm_name(al[i].alarm));
                errs[r->n_errors++] = e;
            }
        }
    }
    server_reply(s, call, (ProtobufCMessage *)r, current_rev(s));
}

/* etcd authMaintenanceServer: Hash, HashKV, Snapshot and Defragment are
 * for root only once auth is enabled. Fails the call when not. */
static bool admin_denied(struct keel_server *s, struct grpc_call *call)
{
    return auth_check_admin_raw(server_auth(s), call) != 0;
}

static void hash_start(struct grpc_call *call,
                       const ProtobufCMessage *msg,
                       void *data)
{
    (void)msg;
    struct keel_server *s = data;
    uint32_t h = 0;
    int64_t rev = 0;
    if (admin_denied(s, call)) {
        return;
    }
    int rv = mvcc_hash(node_store(server_node(s)), &h, &rev);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    Etcdserverpb__HashResponse *r =
        NEW(call, Etcdserverpb__HashResponse,
            etcdserverpb__hash_response__descriptor);
    if (r != NULL) {
        r->hash = h;
    }
    server_reply(s, call, (ProtobufCMessage *)r, rev);
}

static void hashkv_start(struct grpc_call *call,
                         const ProtobufCMessage *msg,
                         void *data)
{
    const Etcdserverpb__HashKVRequest *req =
        (const Etcdserverpb__HashKVRequest *)msg;
    struct keel_server *s = data;
    uint32_t h = 0;
    int64_t compact = 0, cur = 0;
    if (admin_denied(s, call)) {
        return;
    }
    int rv = mvcc_hash_kv(node_store(server_node(s)), req->revision, &h,
                          &compact, &cur);
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    Etcdserverpb__HashKVResponse *r =
        NEW(call, Etcdserverpb__HashKVResponse,
            etcdserverpb__hash_kvresponse__descriptor);
    if (r != NULL) {
        r->hash = h;
        r->compact_revision = compact;
    }
    server_reply(s, call, (ProtobufCMessage *)r, cur);
}

struct alarm_call
{
    struct keel_server *s;
    struct grpc_call *call;
};

/* etcd answers every Alarm action without a response header (its applier
 * builds a bare pb.AlarmResponse and maintenanceServer.Alarm fills none):
 * `{}` through the gateway for an empty GET, no header over gRPC. */
static void alarm_reply(struct grpc_call *call, Etcdserverpb__AlarmResponse *r)
{
    if (r == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    r->header = NULL;
    grpc_call_reply(call, &r->base);
}

static void alarm_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct alarm_call *ac = arg;
    if (rv != 0) {
        grpc_call_fail(ac->call, rv);
        return;
    }
    alarm_reply(ac->call, (Etcdserverpb__AlarmResponse *)resp);
}

static void alarm_start(struct grpc_call *call,
                        const ProtobufCMessage *msg,
                        void *data)
{
    const Etcdserverpb__AlarmRequest *req =
        (const Etcdserverpb__AlarmRequest *)msg;
    struct keel_server *s = data;
    if (req->action != ETCDSERVERPB__ALARM_REQUEST__ALARM_ACTION__GET) {
        struct alarm_call *ac =
            keel_arena_alloc(grpc_call_arena(call), sizeof *ac);
        Keelpb__Request *kreq =
            keel_arena_alloc(grpc_call_arena(call), sizeof *kreq);
        if (ac == NULL || kreq == NULL) {
            grpc_call_fail(call, KEEL_ENOMEM);
            return;
        }
        ac->s = s;
        ac->call = call;
        keelpb__request__init(kreq);
        kreq->op_case = KEELPB__REQUEST__OP_ALARM;
        kreq->alarm = (Etcdserverpb__AlarmRequest *)req;
        int rv = node_propose(server_node(s), kreq, grpc_call_arena(call),
                              alarm_done, ac);
        if (rv != 0) {
            grpc_call_fail(call, rv);
        }
        return;
    }
    /* etcd: alarmStore.Get(type): NONE lists every alarm. */
    Etcdserverpb__AlarmResponse *r =
        NEW(call, Etcdserverpb__AlarmResponse,
            etcdserverpb__alarm_response__descriptor);
    struct node_alarm al[64];
    size_t na = node_alarms(server_node(s), al, 64);
    na = na > 64 ? 64 : na;
    struct keel_arena *a = grpc_call_arena(call);
    if (r != NULL && na > 0) {
        r->alarms = keel_arena_alloc(a, na * sizeof *r->alarms);
        if (r->alarms == NULL) {
            r = NULL;
        }
    }
    for (size_t i = 0; r != NULL && i < na; i++) {
        if (req->alarm != ETCDSERVERPB__ALARM_TYPE__NONE &&
            (int)req->alarm != al[i].alarm) {
            continue;
        }
        Etcdserverpb__AlarmMember *m = keel_arena_alloc(a, sizeof *m);
        if (m == NULL) {
            r = NULL;
            break;
        }
        etcdserverpb__alarm_member__init(m);
        m->memberid = al[i].member_id;
        m->alarm = (Etcdserverpb__AlarmType)al[i].alarm;
        r->alarms[r->n_alarms++] = m;
    }
    alarm_reply(call, r);
}

struct move_leader
{
    struct keel_server *s;
    struct grpc_call *call;
};

static void move_leader_done(void *arg, int rv)
{
    struct move_leader *ml = arg;
    if (rv != 0) {
        grpc_call_fail(ml->call, rv);
        return;
    }
    server_reply(
        ml->s, ml->call,
        server_new_message(grpc_call_arena(ml->call),
                           &etcdserverpb__move_leader_response__descriptor),
        current_rev(ml->s));
}

static void move_leader_start(struct grpc_call *call,
                              const ProtobufCMessage *msg,
                              void *data)
{
    const Etcdserverpb__MoveLeaderRequest *req =
        (const Etcdserverpb__MoveLeaderRequest *)msg;
    struct keel_server *s = data;
    struct move_leader *ml =
        keel_arena_alloc(grpc_call_arena(call), sizeof *ml);
    if (ml == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    ml->s = s;
    ml->call = call;
    /* etcd waits until the transferee leads or the client's deadline;
     * without one, its request timeout. */
    int64_t dl = grpc_call_deadline_ms(call);
    uint64_t timeout = dl >= 0 ? (uint64_t)dl : server_request_timeout_ms(s);
    int rv = server_move_leader(s, req->targetid, timeout, move_leader_done,
                                ml);
    if (rv != 0) {
        grpc_call_fail(call, rv);
    }
}

/* ---- Snapshot ----------------------------------------------------------- */

/* etcd: snapshotSendBufferSize (etcdserver/api/v3rpc/maintenance.go) */
#define SNAP_CHUNK (32 * 1024)
/* Bytes a snapshot call may have queued before it waits for on_drain. */
#define SNAP_BUDGET (256 * 1024)

struct snap
{
    struct keel_server *s;
    struct node *node;
    struct grpc_call *call; /* NULL once finished (cancelled) */
    int fd;
    uv_work_t work;
    bool copying;
    int rv;
    char errmsg[256];
    uint64_t total;
    uint64_t sent;
    EVP_MD_CTX *sha;
    uint8_t buf[SNAP_CHUNK];
};

/* Snapshot copies running on worker threads (they read the current LMDB
 * file: a defragmentation waits for them before it swaps the file). */
static int snap_copies;
static void defrag_maybe_swap(void);

static void snap_free(struct snap *sn)
{
    if (sn->fd >= 0) {
        close(sn->fd);
    }
    EVP_MD_CTX_free(sn->sha);
    free(sn);
}

static void snap_finish(struct snap *sn, int rv)
{
    grpc_call_finish(sn->call, rv);
    sn->call = NULL;
    snap_free(sn);
}

/* Send one message. Non-zero: stop pumping; the call is then either gone
 * (KEEL_ECANCELED: the cancel callback finishes it and frees sn) or was
 * finished here and sn freed (KEEL_ENOMEM). */
static int snap_send(struct snap *sn, const Etcdserverpb__SnapshotResponse *r)
{
    int rv = grpc_call_send(sn->call, &r->base);
    if (rv != 0 && rv != KEEL_ECANCELED) {
        log_error("etcdserver", "snapshot: send: %s", keel_strerror(rv));
        snap_finish(sn, rv);
    }
    return rv;
}

static void snap_pump(struct snap *sn)
{
    while (sn->sent < sn->total && grpc_call_buffered(sn->call) < SNAP_BUDGET) {
        uint64_t left = sn->total - sn->sent;
        size_t want = left < SNAP_CHUNK ? (size_t)left : SNAP_CHUNK;
        ssize_t got = pread(sn->fd, sn->buf, want, (off_t)sn->sent);
        if (got <= 0) {
            log_error("etcdserver", "snapshot: read copy: %s",
                      got < 0 ? strerror(errno) : "short file");
            snap_finish(sn, got < 0 ? -errno : KEEL_EIO);
            return;
        }
        sn->sent += (uint64_t)got;
        EVP_DigestUpdate(sn->sha, sn->buf, (size_t)got);
        Etcdserverpb__SnapshotResponse r =
            ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
        r.remaining_bytes = sn->total - sn->sent;
        r.blob.data = sn->buf;
        r.blob.len = (size_t)got;
        if (snap_send(sn, &r) != 0) {
            return;
        }
    }
    if (sn->sent < sn->total) {
        return; /* resumes from on_drain */
    }
    /* etcd's trailer: one more message, remaining 0, blob = sha256. */
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_DigestFinal_ex(sn->sha, md, &mdlen);
    Etcdserverpb__SnapshotResponse r = ETCDSERVERPB__SNAPSHOT_RESPONSE__INIT;
    r.blob.data = md;
    r.blob.len = mdlen;
    if (snap_send(sn, &r) != 0) {
        return;
    }
    log_info("etcdserver",
             "successfully sent database snapshot to client [%" PRIu64
             " bytes]",
             sn->total);
    snap_finish(sn, 0);
}

static void snap_drain(struct grpc_call *call, void *data)
{
    (void)call;
    struct snap *sn = data;
    if (sn->call != NULL && !sn->copying) {
        snap_pump(sn);
    }
}

static void snap_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    struct snap *sn = data;
    grpc_call_finish(call, KEEL_ECANCELED);
    sn->call = NULL;
    if (!sn->copying) {
        snap_free(sn);
    }
    /* else snap_copied frees it */
}

static void snap_copy_work(uv_work_t *w)
{
    struct snap *sn = w->data;
    struct mvcc_store *st = node_store(sn->node);
    sn->rv = mvcc_copy_fd(st, sn->fd, 1);
    if (sn->rv != 0) {
        snprintf(sn->errmsg, sizeof sn->errmsg, "%s", mvcc_errmsg(st));
        return;
    }
    struct stat stt;
    if (fstat(sn->fd, &stt) != 0) {
        sn->rv = -errno;
        snprintf(sn->errmsg, sizeof sn->errmsg, "fstat: %s", strerror(errno));
        return;
    }
    sn->total = (uint64_t)stt.st_size;
}

static void snap_copied(uv_work_t *w, int status)
{
    struct snap *sn = w->data;
    sn->copying = false;
    snap_copies--;
    node_release(sn->node); /* the node may be gone after this */
    sn->node = NULL;
    defrag_maybe_swap();
    if (sn->call == NULL) {
        snap_free(sn);
        return;
    }
    if (status != 0 || sn->rv != 0) {
        log_error("etcdserver", "snapshot: copy the store: %s",
                  status != 0 ? uv_strerror(status) : sn->errmsg);
        snap_finish(sn, status != 0 ? status : sn->rv);
        return;
    }
    log_info("etcdserver",
             "sending database snapshot to client [%" PRIu64 " bytes]",
             sn->total);
    snap_pump(sn);
}

static void snapshot_start(struct grpc_call *call,
                           const ProtobufCMessage *msg,
                           void *data)
{
    (void)msg;
    struct keel_server *s = data;
    if (admin_denied(s, call)) {
        return;
    }
    struct node *n = server_node(s);
    struct server_info info;
    server_info(s, &info);
    struct snap *sn = calloc(1, sizeof *sn);
    if (sn == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    sn->fd = -1;
    sn->sha = EVP_MD_CTX_new();
    if (sn->sha == NULL ||
        EVP_DigestInit_ex(sn->sha, EVP_sha256(), NULL) != 1) {
        snap_free(sn);
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    /* The image goes to an unlinked file next to the db (same disk; a slow
     * client never holds an LMDB read txn or the loop). */
    char path[4096];
    snprintf(path, sizeof path, "%s/member/snap/db.snapshot.XXXXXX",
             info.data_dir);
    sn->fd = mkstemp(path);
    if (sn->fd < 0) {
        int rv = -errno;
        log_error("etcdserver", "snapshot: temp file %s: %s", path,
                  strerror(errno));
        snap_free(sn);
        grpc_call_fail(call, rv);
        return;
    }
    unlink(path);
    sn->s = s;
    sn->node = n;
    sn->call = call;
    sn->work.data = sn;
    grpc_call_on_cancel(call, snap_cancel, sn);
    grpc_call_on_drain(call, snap_drain, sn);
    int rv =
        uv_queue_work(server_loop(s), &sn->work, snap_copy_work, snap_copied);
    if (rv != 0) {
        snap_finish(sn, rv);
        return;
    }
    sn->copying = true;
    snap_copies++;
    node_hold(n);
}

/* ---- Defragment --------------------------------------------------------- */

enum defrag_state {
    DEFRAG_PAUSING, /* waiting for node_pause's barrier */
    DEFRAG_COPYING, /* the compacting copy runs on a worker */
    DEFRAG_SWAP,    /* copied; waiting for snapshot copies to end */
};

struct defrag
{
    struct keel_server *s;
    struct node *node;
    struct grpc_call *call; /* NULL once finished (cancelled) */
    enum defrag_state state;
    uv_work_t work;
    int rv;
    char errmsg[256];
    struct defrag *next; /* queued behind the running one */
};

/* The running defragmentation (one at a time, loop thread only) and the
 * ones waiting for it. */
static struct defrag *defrag_running;
static struct defrag *defrag_queue;

static void defrag_next(void);

static void defrag_reply(struct defrag *d, int rv)
{
    if (d->call == NULL) {
        return;
    }
    if (rv != 0) {
        grpc_call_fail(d->call, rv);
    } else {
        grpc_call_reply(
            d->call,
            server_new_message(grpc_call_arena(d->call),
                               &etcdserverpb__defragment_response__descriptor));
    }
    d->call = NULL;
}

static void defrag_cancel(struct grpc_call *call, int code, void *data)
{
    (void)code;
    struct defrag *d = data;
    grpc_call_finish(call, KEEL_ECANCELED);
    d->call = NULL;
    /* A queued request is dropped; a running one completes. */
    for (struct defrag **pp = &defrag_queue; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            free(d);
            return;
        }
    }
}

static void defrag_end(struct defrag *d, int rv)
{
    defrag_reply(d, rv);
    defrag_running = NULL;
    free(d);
    defrag_next();
}

static void defrag_maybe_swap(void)
{
    struct defrag *d = defrag_running;
    if (d == NULL || d->state != DEFRAG_SWAP || snap_copies > 0) {
        return;
    }
    struct node *n = d->node;
    struct mvcc_store *st = node_store(n);
    int rv = 0;
    if (node_closing(n)) {
        mvcc_defrag_discard(st);
        rv = KEEL_ESTOPPED;
    } else {
        uint64_t before = 0, after = 0, in_use = 0;
        mvcc_db_size(st, &before, &in_use);
        rv = mvcc_defrag_swap(st);
        if (rv != 0) {
            /* The env may be closed now: nothing can be served safely. */
            log_error("etcdserver", "failed to defragment: %s",
                      mvcc_errmsg(st));
            abort();
        }
        mvcc_db_size(st, &after, &in_use);
        log_info("etcdserver",
                 "finished defragmenting the storage backend [%" PRIu64
                 " -> %" PRIu64 " bytes]",
                 before, after);
    }
    node_resume(n);
    node_release(n); /* the node may be gone after this */
    defrag_end(d, rv);
}

static void defrag_copy_work(uv_work_t *w)
{
    struct defrag *d = w->data;
    struct mvcc_store *st = node_store(d->node);
    d->rv = mvcc_defrag_copy(st);
    if (d->rv != 0) {
        snprintf(d->errmsg, sizeof d->errmsg, "%s", mvcc_errmsg(st));
    }
}

static void defrag_copied(uv_work_t *w, int status)
{
    struct defrag *d = w->data;
    if (status != 0 || d->rv != 0) {
        log_error("etcdserver", "failed to defragment: %s",
                  status != 0 ? uv_strerror(status) : d->errmsg);
        node_resume(d->node);
        node_release(d->node);
        defrag_end(d, status != 0 ? status : d->rv);
        return;
    }
    d->state = DEFRAG_SWAP;
    defrag_maybe_swap();
}

static void defrag_paused(void *arg)
{
    struct defrag *d = arg;
    if (node_closing(d->node)) {
        node_resume(d->node);
        node_release(d->node);
        defrag_end(d, KEEL_ESTOPPED);
        return;
    }
    d->state = DEFRAG_COPYING;
    d->work.data = d;
    int rv = uv_queue_work(server_loop(d->s), &d->work, defrag_copy_work,
                           defrag_copied);
    if (rv != 0) {
        node_resume(d->node);
        node_release(d->node);
        defrag_end(d, rv);
    }
}

static void defrag_next(void)
{
    while (defrag_running == NULL && defrag_queue != NULL) {
        struct defrag *d = defrag_queue;
        defrag_queue = d->next;
        d->next = NULL;
        if (d->call == NULL) {
            free(d);
            continue;
        }
        log_info("etcdserver", "starting to defragment the storage backend...");
        defrag_running = d;
        d->state = DEFRAG_PAUSING;
        node_hold(d->node);
        int rv = node_pause(d->node, defrag_paused, d);
        if (rv != 0) {
            node_release(d->node);
            defrag_end(d, rv);
        }
    }
}

static void defragment_start(struct grpc_call *call,
                             const ProtobufCMessage *msg,
                             void *data)
{
    (void)msg;
    struct keel_server *s = data;
    if (admin_denied(s, call)) {
        return;
    }
    struct defrag *d = calloc(1, sizeof *d);
    if (d == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    d->s = s;
    d->node = server_node(s);
    d->call = call;
    grpc_call_on_cancel(call, defrag_cancel, d);
    struct defrag **pp = &defrag_queue;
    while (*pp != NULL) {
        pp = &(*pp)->next;
    }
    *pp = d;
    defrag_next();
}

int maintenance_register(struct keel_server *s, struct grpc_server *g)
{
    node_set_quota(server_node(s), server_quota_bytes(s));
    const struct grpc_method methods[] = {
        {"/etcdserverpb.Maintenance/Status", GRPC_UNARY,
         &etcdserverpb__status_request__descriptor, status_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/Hash", GRPC_UNARY,
         &etcdserverpb__hash_request__descriptor, hash_start, NULL, NULL, NULL,
         s},
        {"/etcdserverpb.Maintenance/HashKV", GRPC_UNARY,
         &etcdserverpb__hash_kvrequest__descriptor, hashkv_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/Alarm", GRPC_UNARY,
         &etcdserverpb__alarm_request__descriptor, alarm_start, NULL, NULL,
         NULL, s},
        {"/etcdserverpb.Maintenance/Snapshot", GRPC_SERVER_STREAM,
         &etcdserverpb__snapshot_request__descriptor, snapshot_start, NULL,
         NULL, NULL, s},
        {"/etcdserverpb.Maintenance/Defragment", GRPC_UNARY,
         &etcdserverpb__defragment_request__descriptor, defragment_start, NULL,
         NULL, NULL, s},
        {"/etcdserverpb.Maintenance/MoveLeader", GRPC_UNARY,
         &etcdserverpb__move_leader_request__descriptor, move_leader_start,
         NULL, NULL, NULL, s},
    };
    return server_register_methods(g, methods,
                                   sizeof methods / sizeof methods[0]);
}
