/*
 * Snapshot transfer over the peer port: one connection per image, so the
 * member's message stream (heartbeats, votes) never waits behind it.
 *
 * Sender (struct snap_send), from peer_send(..., snap_path):
 *
 *   open + fstat ──▶ dial ──▶ HELLO ──(HELLO_OK)──▶ SNAP_HEADER
 *   ──▶ { uv_fs_read 1 MiB ──▶ SNAP_CHUNK ──(written)──▶ }*
 *   ──▶ SNAP_TRAILER (size, sha256) ──(SNAP_ACK)──▶ on_snapshot_sent(ok)
 *   any step ──(ERROR, EOF, I/O error, no progress for snap_timeout_ms)──▶
 *        on_snapshot_sent(false)
 *
 * One chunk is in flight at a time: the next is read only when the
 * previous one is written, so memory is one chunk per transfer however slow
 * the receiver. Suspended in: the dial, uv_fs_read, uv_write, the ACK.
 *
 * Receiver (struct snap_recv), on an accepted SNAPSHOT connection:
 *
 *   SNAP_HEADER ──▶ create <snap_dir>/snap-from-<id>-<n>.db.tmp (O_EXCL)
 *   SNAP_CHUNK  ──▶ uv_fs_write (socket reads paused until it is done)
 *   SNAP_TRAILER──▶ size and sha256 checked ──▶ uv_fs_fsync ──▶ rename to
 *                   .db ──▶ on_snapshot(from, msg, path) ──▶ SNAP_ACK
 *   any failure ──▶ temp file deleted, ERROR to the sender (if the
 *                   connection is still there), close
 *
 * Suspended in: uv_fs_write, uv_fs_fsync, the socket (deadline
 * snap_timeout_ms, re-armed at each chunk). A transfer whose connection
 * goes away while a file operation is in flight is finished from that
 * operation's callback (struct fields stay valid until then; the transport
 * waits for it through peer__hold).
 */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "keel_err.h"
#include "log.h"
#include "peer_int.h"

#define PKG "rafthttp"

struct snap_send
{
    struct peer *t;
    struct remote *r;       /* NULL once detached: no callback then */
    struct snap_send *next; /* in r->snaps */
    uint64_t to;
    uint8_t *msg;
    size_t msg_len;
    int fd;
    uint64_t size, sent;
    EVP_MD_CTX *sha;
    struct pconn *pc;
    uv_fs_t req;
    struct pframe *chunk; /* being read into */
    bool header_sent, trailer_sent, reading, finished;
    char path[PATH_MAX];
};

struct snap_recv
{
    struct peer *t;
    struct pconn *pc; /* NULL once the connection is gone */
    uint64_t from;
    uint8_t *msg;
    size_t msg_len;
    uint64_t size, got;
    uint64_t synced; /* bytes known on disk (fdatasync'd) */
    EVP_MD_CTX *sha;
    int fd;
    uv_fs_t req;
    uint8_t *buf; /* chunk being written */
    size_t buf_len;
    bool busy;      /* a file operation is in flight */
    unsigned syncs; /* intermediate fdatasyncs, for the log */
    bool aborted;   /* finish from the file operation's callback */
    char tmp[PATH_MAX + 8];
    char final[PATH_MAX];
};

/* ---- sender ----------------------------------------------------------------
 */

static void send_free(struct snap_send *ss)
{
    struct peer *t = ss->t;
    if (ss->fd >= 0) {
        close(ss->fd);
    }
    EVP_MD_CTX_free(ss->sha);
    free(ss->chunk);
    free(ss->msg);
    free(ss);
    peer__release(t);
}

static void send_unlink(struct snap_send *ss)
{
    struct remote *r = ss->r;
    if (r == NULL) {
        return;
    }
    struct snap_send **pp = &r->snaps;
    while (*pp != ss) {
        pp = &(*pp)->next;
    }
    *pp = ss->next;
    ss->r = NULL;
}

static void send_finish(struct snap_send *ss, bool ok, const char *why)
{
    char a[17], b[17];

    if (ss->finished) {
        return;
    }
    ss->finished = true;
    if (ss->r != NULL) {
        if (ok) {
            log_infow(
                PKG, "sent database snapshot to peer",
                LOG_STR("local-member-id", peer__idstr(ss->t->o.self_id, a)),
                LOG_STR("remote-peer-id", peer__idstr(ss->to, b)),
                LOG_UINT("bytes", ss->size), LOG_STR("path", ss->path));
        } else {
            log_warnw(
                PKG, "failed to send database snapshot to peer",
                LOG_STR("local-member-id", peer__idstr(ss->t->o.self_id, a)),
                LOG_STR("remote-peer-id", peer__idstr(ss->to, b)),
                LOG_STR("path", ss->path), LOG_ERR(why));
        }
        send_unlink(ss);
        peer__event_snap(ss->t, ss->to, ok);
    }
    if (ss->pc != NULL) {
        peer__conn_close(ss->pc);
        ss->pc = NULL;
    }
    if (!ss->reading) {
        send_free(ss);
    }
}

static void send_read_next(struct snap_send *ss);

static void on_chunk_read(uv_fs_t *req)
{
    struct snap_send *ss = req->data;
    ssize_t n = req->result;
    size_t want = ss->chunk->len - PEER_WIRE_HEADER;
    struct pframe *f;

    uv_fs_req_cleanup(req);
    ss->reading = false;
    if (ss->finished) {
        send_free(ss);
        return;
    }
    if (n <= 0) {
        send_finish(ss, false,
                    n < 0 ? uv_strerror((int)n)
                          : "the image file is shorter than it was");
        return;
    }
    f = ss->chunk;
    ss->chunk = NULL;
    if ((size_t)n < want) {
        peer_wire_header(f->data, PEER_WIRE_SNAP_CHUNK, (size_t)n);
        f->len = PEER_WIRE_HEADER + (size_t)n;
    }
    EVP_DigestUpdate(ss->sha, f->data + PEER_WIRE_HEADER, (size_t)n);
    ss->sent += (uint64_t)n;
    if (ss->r != NULL) {
        ss->r->st.sent_bytes += f->len;
    }
    peer__conn_deadline(ss->pc, ss->t->o.snap_timeout_ms);
    (void)peer__conn_send(ss->pc, f); /* a failure arrives via on_close */
}

static void send_read_next(struct snap_send *ss)
{
    uint8_t tr[PEER_WIRE_TRAILER_LEN];
    unsigned int dlen = 0;
    uv_buf_t b;
    size_t n;
    int rv;

    if (ss->sent == ss->size) {
        peer_wire_put_u64(tr, ss->size);
        EVP_DigestFinal_ex(ss->sha, tr + 8, &dlen);
        assert(dlen == PEER_WIRE_SHA256_LEN);
        ss->trailer_sent = true;
        (void)peer__conn_sendv(ss->pc, PEER_WIRE_SNAP_TRAILER, tr, sizeof tr,
                               NULL, 0);
        return;
    }
    n = ss->size - ss->sent < PEER_SNAP_CHUNK ? (size_t)(ss->size - ss->sent)
                                              : PEER_SNAP_CHUNK;
    ss->chunk = peer__frame_alloc(PEER_WIRE_SNAP_CHUNK, n);
    if (ss->chunk == NULL) {
        send_finish(ss, false, "out of memory");
        return;
    }
    b = uv_buf_init((char *)ss->chunk->data + PEER_WIRE_HEADER,
                    (unsigned int)n);
    ss->req.data = ss;
    rv = uv_fs_read(ss->t->o.loop, &ss->req, ss->fd, &b, 1, (int64_t)ss->sent,
                    on_chunk_read);
    if (rv != 0) {
        send_finish(ss, false, uv_strerror(rv));
        return;
    }
    ss->reading = true;
}

static void send_on_connect(struct pconn *pc)
{
    struct snap_send *ss = pc->owner;

    peer__conn_deadline(pc, ss->t->o.snap_timeout_ms);
    (void)peer__conn_hello(pc, PEER_WIRE_KIND_SNAPSHOT, ss->t->o.cluster_id,
                           ss->t->o.self_id, ss->to);
}

static int send_on_frame(struct pconn *pc,
                         uint8_t type,
                         const uint8_t *p,
                         size_t len)
{
    struct snap_send *ss = pc->owner;
    uint8_t sz[8];
    uint16_t code, version;
    uint64_t cid, mid;
    const char *reason;
    size_t rlen;
    char why[256];

    if (type == PEER_WIRE_HELLO_OK && !ss->header_sent &&
        peer_wire_hello_ok_decode(p, len, &version, &cid, &mid) == 0) {
        ss->header_sent = true;
        peer_wire_put_u64(sz, ss->size);
        /* The next read starts when this is written (on_drain). */
        return peer__conn_sendv(pc, PEER_WIRE_SNAP_HEADER, sz, sizeof sz,
                                ss->msg, ss->msg_len);
    }
    if (type == PEER_WIRE_SNAP_ACK && ss->trailer_sent) {
        send_finish(ss, true, NULL);
        return 0;
    }
    if (type == PEER_WIRE_ERROR &&
        peer_wire_error_decode(p, len, &code, &reason, &rlen) == 0) {
        snprintf(why, sizeof why, "refused by the receiver: %.*s", (int)rlen,
                 reason);
        send_finish(ss, false, why);
        return 0;
    }
    return KEEL_ECORRUPT;
}

static void send_on_drain(struct pconn *pc)
{
    struct snap_send *ss = pc->owner;
    if (ss->header_sent && !ss->trailer_sent && !ss->reading) {
        send_read_next(ss);
    }
}

static void send_on_close(struct pconn *pc, int rv)
{
    struct snap_send *ss = pc->owner;
    ss->pc = NULL;
    send_finish(ss, false,
                rv == UV_ETIMEDOUT ? "no progress within the snapshot timeout"
                                   : peer__conn_error(pc, rv));
}

static const struct pconn_ops send_ops = {
    .on_frame = send_on_frame,
    .on_connect = send_on_connect,
    .on_close = send_on_close,
    .on_drain = send_on_drain,
};

void peer__snap_send(struct remote *r,
                     const uint8_t *msg,
                     size_t len,
                     const char *snap_path)
{
    struct peer *t = r->t;
    struct snap_send *ss;
    struct stat st;
    char a[17];

    ss = calloc(1, sizeof *ss);
    if (ss == NULL) {
        peer__event_snap(t, r->id, false);
        return;
    }
    ss->t = t;
    ss->to = r->id;
    ss->fd = -1;
    peer__hold(t);
    snprintf(ss->path, sizeof ss->path, "%s", snap_path);
    ss->r = r;
    ss->next = r->snaps;
    r->snaps = ss;
    ss->msg = malloc(len > 0 ? len : 1);
    ss->sha = EVP_MD_CTX_new();
    if (ss->msg == NULL || ss->sha == NULL ||
        EVP_DigestInit_ex(ss->sha, EVP_sha256(), NULL) != 1) {
        send_finish(ss, false, "out of memory");
        return;
    }
    if (len > 0) {
        memcpy(ss->msg, msg, len);
    }
    ss->msg_len = len;
    ss->fd = open(snap_path, O_RDONLY | O_CLOEXEC);
    if (ss->fd < 0 || fstat(ss->fd, &st) != 0) {
        send_finish(ss, false, strerror(errno));
        return;
    }
    ss->size = (uint64_t)st.st_size;
    ss->pc = peer__conn_dial(t, t->o.loop, r->urls[r->good_url % r->n_urls],
                             t->o.tls_client, &send_ops, ss,
                             t->o.max_frame_bytes);
    if (ss->pc == NULL) {
        send_finish(ss, false, "out of memory");
        return;
    }
    peer__conn_deadline(ss->pc, t->o.snap_timeout_ms);
    log_infow(PKG, "sending database snapshot to peer",
              LOG_STR("remote-peer-id", peer__idstr(r->id, a)),
              LOG_UINT("bytes", ss->size), LOG_STR("path", ss->path));
}

void peer__snap_detach_all(struct remote *r)
{
    while (r->snaps != NULL) {
        struct snap_send *ss = r->snaps;
        send_unlink(ss);
        send_finish(ss, false, NULL);
    }
}

/* ---- receiver --------------------------------------------------------------
 */

/* etcd_network_snapshot_receive_{success,failures}{From} */
static void count_recv(struct peer *t, uint64_t from, bool ok)
{
    struct remote *r = peer__remote(t, from);
    if (r != NULL && ok) {
        r->st.snap_recv_ok++;
    } else if (r != NULL) {
        r->st.snap_recv_failures++;
    }
}

/* keep_file: the transfer succeeded (the image is the callee's now). */
static void recv_free(struct snap_recv *sr, bool keep_file)
{
    struct peer *t = sr->t;
    count_recv(t, sr->from, keep_file);
    if (sr->fd >= 0) {
        close(sr->fd);
    }
    if (!keep_file && sr->tmp[0] != '\0') {
        (void)unlink(sr->tmp);
    }
    EVP_MD_CTX_free(sr->sha);
    free(sr->buf);
    free(sr->msg);
    free(sr);
    peer__release(t);
}

/* Refuse the transfer: log, tell the sender, drop the partial file. */
static int recv_fail(struct pconn *pc, const char *why)
{
    struct snap_recv *sr = pc->recv;
    char a[17];

    log_warnw(PKG, "failed to receive database snapshot",
              LOG_STR("remote-peer-id", peer__idstr(pc->from, a)),
              LOG_ERR(why));
    pc->recv = NULL;
    peer__conn_refuse(pc, PEER_WIRE_ERR_SNAPSHOT, why);
    if (sr == NULL) {
        count_recv(pc->t, pc->from, false); /* refused at its header */
    } else {
        sr->pc = NULL;
        if (sr->busy) {
            sr->aborted = true;
        } else {
            recv_free(sr, false);
        }
    }
    return 0;
}

void peer__snap_recv_abort(struct pconn *pc)
{
    struct snap_recv *sr = pc->recv;
    if (sr == NULL) {
        return;
    }
    pc->recv = NULL;
    sr->pc = NULL;
    if (sr->busy) {
        sr->aborted = true;
    } else {
        recv_free(sr, false);
    }
}

static void recv_done(struct snap_recv *sr)
{
    struct peer *t = sr->t;
    struct pconn *pc = sr->pc;
    char a[17];

    /* Detach first: the callback may close the transport, which must not
     * find this transfer any more. */
    pc->recv = NULL;
    sr->pc = NULL;
    log_infow(PKG, "received database snapshot",
              LOG_STR("remote-peer-id", peer__idstr(sr->from, a)),
              LOG_UINT("bytes", sr->size), LOG_UINT("syncs", sr->syncs + 1u),
              LOG_STR("path", sr->final));
    if (t->o.on_snapshot != NULL) {
        t->o.on_snapshot(t->o.arg, sr->from, sr->msg, sr->msg_len, sr->final);
    } else {
        (void)unlink(sr->final);
    }
    if (peer__conn_sendv(pc, PEER_WIRE_SNAP_ACK, NULL, 0, NULL, 0) == 0) {
        peer__conn_close_flush(pc);
    }
    sr->tmp[0] = '\0'; /* renamed: nothing to delete */
    recv_free(sr, true);
}

/* The common end of an fsync request: returns the transfer to go on with,
 * or NULL when it was aborted meanwhile (freed here) or the sync failed
 * (failed here). */
static struct snap_recv *sync_done(uv_fs_t *req)
{
    struct snap_recv *sr = req->data;
    int rv = (int)req->result;

    uv_fs_req_cleanup(req);
    sr->busy = false;
    if (sr->aborted) {
        recv_free(sr, false);
        return NULL;
    }
    if (rv < 0) {
        recv_fail(sr->pc, uv_strerror(rv));
        return NULL;
    }
    return sr;
}

static void on_fsynced(uv_fs_t *req)
{
    struct snap_recv *sr = sync_done(req);
    int rv;

    if (sr == NULL) {
        return;
    }
    rv = close(sr->fd);
    sr->fd = -1;
    if (rv != 0 || rename(sr->tmp, sr->final) != 0) {
        recv_fail(sr->pc, strerror(errno));
        return;
    }
    recv_done(sr);
}

static void on_synced(uv_fs_t *req);

static void on_chunk_written(uv_fs_t *req)
{
    struct snap_recv *sr = req->data;
    ssize_t n = req->result;

    uv_fs_req_cleanup(req);
    sr->busy = false;
    free(sr->buf);
    sr->buf = NULL;
    if (sr->aborted) {
        recv_free(sr, false);
        return;
    }
    if (n < 0 || (size_t)n != sr->buf_len) {
        recv_fail(sr->pc, n < 0 ? uv_strerror((int)n) : "short write");
        return;
    }
    sr->got += (uint64_t)n;
    peer__conn_deadline(sr->pc, sr->t->o.snap_timeout_ms);
    if (sr->got - sr->synced >= sr->t->o.snap_sync_bytes &&
        sr->got < sr->size) {
        /* Flush as we go, so the final fsync (which the sender waits for
         * within its timeout) has at most snap_sync_bytes to write. */
        sr->req.data = sr;
        if (uv_fs_fdatasync(sr->t->o.loop, &sr->req, sr->fd, on_synced) == 0) {
            sr->busy = true;
            return; /* still paused */
        }
    }
    peer__conn_resume(sr->pc);
}

static void on_synced(uv_fs_t *req)
{
    struct snap_recv *sr = sync_done(req);

    if (sr == NULL) {
        return;
    }
    sr->synced = sr->got;
    sr->syncs++;
    peer__conn_deadline(sr->pc, sr->t->o.snap_timeout_ms);
    peer__conn_resume(sr->pc);
}

static int recv_header(struct pconn *pc, const uint8_t *p, size_t len)
{
    struct peer *t = pc->t;
    struct snap_recv *sr;
    const uint8_t *msg;
    size_t msg_len;
    uint64_t size;

    if (peer_wire_snap_header_decode(p, len, &size, &msg, &msg_len) != 0) {
        return KEEL_ECORRUPT;
    }
    if (t->snap_dir == NULL) {
        return recv_fail(pc, "this member takes no snapshots (no directory)");
    }
    sr = calloc(1, sizeof *sr);
    if (sr == NULL) {
        return recv_fail(pc, "out of memory");
    }
    sr->t = t;
    sr->fd = -1;
    sr->from = pc->from;
    sr->size = size;
    peer__hold(t);
    pc->recv = sr;
    sr->pc = pc;
    sr->msg = malloc(msg_len > 0 ? msg_len : 1);
    sr->sha = EVP_MD_CTX_new();
    if (sr->msg == NULL || sr->sha == NULL ||
        EVP_DigestInit_ex(sr->sha, EVP_sha256(), NULL) != 1) {
        return recv_fail(pc, "out of memory");
    }
    memcpy(sr->msg, msg, msg_len);
    sr->msg_len = msg_len;
    /* The name is unique per transport and time, so a file the node still
     * owns from an earlier transfer is never replaced. */
    snprintf(sr->final, sizeof sr->final,
             "%s/snap-from-%" PRIx64 "-%" PRIx64 "-%" PRIu64 ".db", t->snap_dir,
             sr->from, uv_hrtime(), ++t->snap_seq);
    snprintf(sr->tmp, sizeof sr->tmp, "%s.tmp", sr->final);
    sr->fd = open(sr->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (sr->fd < 0) {
        char why[PATH_MAX + 64];
        sr->tmp[0] = '\0'; /* not ours to delete */
        snprintf(why, sizeof why, "create %s.tmp: %s", sr->final,
                 strerror(errno));
        return recv_fail(pc, why);
    }
    peer__conn_deadline(pc, t->o.snap_timeout_ms);
    return 0;
}

int peer__snap_recv_frame(struct pconn *pc,
                          uint8_t type,
                          const uint8_t *p,
                          size_t len)
{
    struct snap_recv *sr = pc->recv;
    const uint8_t *digest;
    uint8_t mine[PEER_WIRE_SHA256_LEN];
    unsigned int dlen = 0;
    uint64_t size;
    uv_buf_t b;
    int rv;

    if (sr == NULL) {
        if (type != PEER_WIRE_SNAP_HEADER) {
            return KEEL_ECORRUPT;
        }
        return recv_header(pc, p, len);
    }
    if (type == PEER_WIRE_SNAP_CHUNK) {
        if (len > sr->size - sr->got) {
            return recv_fail(pc, "more image bytes than announced");
        }
        if (len == 0) {
            return 0;
        }
        sr->buf = malloc(len);
        if (sr->buf == NULL) {
            return recv_fail(pc, "out of memory");
        }
        memcpy(sr->buf, p, len);
        sr->buf_len = len;
        EVP_DigestUpdate(sr->sha, p, len);
        b = uv_buf_init((char *)sr->buf, (unsigned int)len);
        sr->req.data = sr;
        rv = uv_fs_write(pc->loop, &sr->req, sr->fd, &b, 1, (int64_t)sr->got,
                         on_chunk_written);
        if (rv != 0) {
            return recv_fail(pc, uv_strerror(rv));
        }
        sr->busy = true;
        peer__conn_pause(pc); /* one chunk in memory per transfer */
        return 0;
    }
    if (type == PEER_WIRE_SNAP_TRAILER) {
        if (peer_wire_snap_trailer_decode(p, len, &size, &digest) != 0) {
            return KEEL_ECORRUPT;
        }
        if (size != sr->size || sr->got != sr->size) {
            return recv_fail(pc, "image size mismatch");
        }
        EVP_DigestFinal_ex(sr->sha, mine, &dlen);
        if (dlen != sizeof mine || memcmp(mine, digest, sizeof mine) != 0) {
            return recv_fail(pc, "image sha256 mismatch");
        }
        sr->req.data = sr;
        rv = uv_fs_fsync(pc->loop, &sr->req, sr->fd, on_fsynced);
        if (rv != 0) {
            return recv_fail(pc, uv_strerror(rv));
        }
        sr->busy = true;
        peer__conn_pause(pc);
        return 0;
    }
    return KEEL_ECORRUPT;
}
