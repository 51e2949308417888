/*
 * Peer transport: listeners, remote members and their message streams,
 * the acceptor's handshake, deferred callbacks, cluster-info requests and
 * metrics. Connections are peer_conn.c, snapshots peer_snap.c.
 *
 * Message stream to one remote (struct remote):
 *
 *   peer_add ──▶ DIALING ──(connected, HELLO sent)──▶ HANDSHAKE
 *   HANDSHAKE ──(HELLO_OK)──▶ UP: queued messages flushed, backoff reset
 *   DIALING/HANDSHAKE ──(refused, failed, timeout)──▶ BACKOFF
 *   UP ──(EOF, error)──▶ BACKOFF, on_unreachable
 *   BACKOFF ──(timer: backoff_ms, doubled up to backoff_max)──▶ DIALING
 *                                                   (the next URL in turn)
 *
 * Suspended in: the dial/handshake (deadline handshake_timeout_ms), the
 * backoff timer, the stream's writes.
 *
 * Messages while DIALING/HANDSHAKE wait in the remote's queue; in BACKOFF
 * they are dropped at once (the member is down: raft probes again after
 * on_unreachable, as etcd drops messages for an inactive peer). Queue and
 * socket backlog together are bounded by max_queue_msgs/max_queue_bytes,
 * so a member that stops reading costs bounded memory.
 *
 * Acceptor: each accepted connection must start with HELLO within
 * handshake_timeout_ms; a wrong version, cluster id, to-id, an unknown or
 * removed sender gets an ERROR frame with the reason, a log line naming
 * both members, and is closed. A new message stream from a member replaces
 * its older one (a half-open leftover of a restart).
 *
 * Failure modes: anything wrong on one connection closes that connection
 * only. Refusals received by the dialer are logged once per reason per
 * PEER_REFUSAL_LOG_MS, not at every retry.
 */
#include "peer.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netdb.h>
#include <sys/socket.h>

#include "keel_err.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "peer_int.h"
#include "tls.h"

#define PKG "rafthttp"

const char *peer__idstr(uint64_t id, char buf[17])
{
    snprintf(buf, 17, "%" PRIx64, id);
    return buf;
}

/* ---- lifetime ----------------------------------------------------------- */

void peer__hold(struct peer *t)
{
    t->live++;
}

static void free_events(struct peer *t)
{
    while (t->ev_head != NULL) {
        struct peer_event *e = t->ev_head;
        t->ev_head = e->next;
        free(e);
    }
    t->ev_tail = NULL;
}

void peer__release(struct peer *t)
{
    assert(t->live > 0);
    if (--t->live > 0 || !t->closing) {
        return;
    }
    peer_close_cb cb = t->close_cb;
    void *data = t->close_data;
    free_events(t);
    free(t->removed);
    free(t->lis);
    free(t->snap_dir);
    free(t);
    if (cb != NULL) {
        cb(data);
    }
}

static void on_handle_released(uv_handle_t *h)
{
    peer__release(h->data);
}

/* ---- remotes ------------------------------------------------------------ */

struct remote *peer__remote(const struct peer *t, uint64_t id)
{
    for (struct remote *r = t->remotes; r != NULL; r = r->next) {
        if (r->id == id) {
            return r;
        }
    }
    return NULL;
}

bool peer__is_removed(const struct peer *t, uint64_t id)
{
    for (size_t i = 0; i < t->n_removed; i++) {
        if (t->removed[i] == id) {
            return true;
        }
    }
    return false;
}

static void free_urls(char **urls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(urls[i]);
    }
    free(urls);
}

static int copy_urls(const char *const *urls,
                     size_t n,
                     char ***out,
                     char *err,
                     size_t errlen)
{
    char host[256], port[16];
    char **v;

    if (n == 0) {
        snprintf(err, errlen, "no peer URL");
        return KEEL_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        int rv = peer__parse_url(urls[i], host, sizeof host, port, sizeof port,
                                 err, errlen);
        if (rv != 0) {
            return rv;
        }
    }
    v = calloc(n, sizeof *v);
    if (v == NULL) {
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(urls[i]);
        if (v[i] == NULL) {
            free_urls(v, n);
            return KEEL_ENOMEM;
        }
    }
    *out = v;
    return 0;
}

/* ---- deferred callbacks ------------------------------------------------- */

static void on_notify(uv_timer_t *timer)
{
    struct peer *t = timer->data;
    struct peer_event *e;

    t->notify_armed = false;
    /* Take the whole list first: callbacks may queue new events (for the
     * next turn) or close the transport. */
    e = t->ev_head;
    t->ev_head = t->ev_tail = NULL;
    while (e != NULL) {
        struct peer_event *next = e->next;
        if (!t->closing) {
            if (e->snap) {
                if (t->o.on_snapshot_sent != NULL) {
                    t->o.on_snapshot_sent(t->o.arg, e->id, e->ok);
                }
            } else {
                struct remote *r = peer__remote(t, e->id);
                if (r != NULL) {
                    r->unreachable_pending = false;
                }
                if (t->o.on_unreachable != NULL) {
                    t->o.on_unreachable(t->o.arg, e->id);
                }
            }
        }
        free(e);
        e = next;
    }
}

static void push_event(struct peer *t, uint64_t id, bool snap, bool ok)
{
    struct peer_event *e;

    if (t->closing) {
        return;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        return; /* raft recovers from a lost report: it probes again */
    }
    e->id = id;
    e->snap = snap;
    e->ok = ok;
    if (t->ev_tail != NULL) {
        t->ev_tail->next = e;
    } else {
        t->ev_head = e;
    }
    t->ev_tail = e;
    if (!t->notify_armed) {
        t->notify_armed = true;
        uv_timer_start(&t->notify, on_notify, 0, 0);
    }
}

void peer__event_snap(struct peer *t, uint64_t to, bool ok)
{
    struct remote *r = peer__remote(t, to);
    if (r != NULL && !ok) {
        r->st.sent_failures++;
        r->st.snap_send_failures++;
    } else if (r != NULL) {
        r->st.snap_send_ok++;
    }
    push_event(t, to, true, ok);
}

void peer__event_unreachable(struct peer *t, uint64_t to)
{
    struct remote *r = peer__remote(t, to);
    if (r != NULL) {
        if (r->unreachable_pending) {
            return;
        }
        r->unreachable_pending = true;
    }
    push_event(t, to, false, false);
}

/* ---- message stream (dialer) -------------------------------------------- */

static void dial(struct remote *r);

static void drop_queue(struct remote *r)
{
    while (r->q_head != NULL) {
        struct pframe *f = r->q_head;
        r->q_head = f->next;
        free(f);
        r->st.dropped++;
        r->st.sent_failures++;
    }
    r->q_tail = NULL;
    r->q_msgs = r->q_bytes = 0;
}

static void on_backoff(uv_timer_t *timer)
{
    struct remote *r = timer->data;
    dial(r);
}

/* The stream is gone or could not be set up: report, back off, redial. */
static void stream_down(struct remote *r, int rv, const char *why)
{
    struct peer *t = r->t;
    char a[17], b[17];
    bool was_up = r->state == R_UP;

    r->stream = NULL;
    r->active_since = 0;
    peer__calls_fail(r, UV_ENOTCONN); /* answers came on that connection */
    if (r->q_head != NULL || was_up) {
        peer__event_unreachable(t, r->id);
    }
    drop_queue(r);
    if (was_up) {
        r->was_up = false;
        r->st.disconnects++;
        log_warnw(PKG, "peer became inactive (message send to peer failed)",
                  LOG_STR("local-member-id", peer__idstr(t->o.self_id, a)),
                  LOG_STR("remote-peer-id", peer__idstr(r->id, b)),
                  LOG_ERR(why != NULL ? why : peer__strerror(rv)));
        r->backoff_ms = t->o.backoff_min_ms;
    } else {
        r->backoff_ms *= 2;
        if (r->backoff_ms > t->o.backoff_max_ms) {
            r->backoff_ms = t->o.backoff_max_ms;
        }
        if (r->backoff_ms < t->o.backoff_min_ms) {
            r->backoff_ms = t->o.backoff_min_ms;
        }
    }
    r->state = R_BACKOFF;
    if (!t->closing && !r->removed) {
        uv_timer_start(&r->timer, on_backoff, r->backoff_ms, 0);
    }
}

static void stream_on_connect(struct pconn *pc)
{
    struct remote *r = pc->owner;
    struct peer *t = r->t;

    r->state = R_HANDSHAKE;
    (void)peer__conn_hello(pc, PEER_WIRE_KIND_STREAM, t->o.cluster_id,
                           t->o.self_id, r->id);
}

/* A refusal from the acceptor, logged once per reason per period. */
static void log_refusal(struct remote *r,
                        const char *what,
                        const char *reason,
                        size_t reason_len)
{
    struct peer *t = r->t;
    char a[17], b[17];
    char text[sizeof r->last_refusal];
    uint64_t now = uv_now(t->o.loop);

    snprintf(text, sizeof text, "%.*s", (int)reason_len, reason);
    if (strcmp(text, r->last_refusal) == 0 && r->last_refusal_ms != 0 &&
        now - r->last_refusal_ms < PEER_REFUSAL_LOG_MS) {
        return;
    }
    memcpy(r->last_refusal, text, sizeof text);
    r->last_refusal_ms = now;
    log_warnw(PKG, what,
              LOG_STR("local-member-id", peer__idstr(t->o.self_id, a)),
              LOG_STR("remote-peer-id", peer__idstr(r->id, b)),
              LOG_STR("reason", text));
}

/* ERROR from the acceptor of our message stream: logged; returns the
 * code. */
static uint16_t handle_refusal(struct remote *r, const uint8_t *p, size_t len)
{
    uint16_t code = 0;
    const char *reason = "";
    size_t rlen = 0;

    if (peer_wire_error_decode(p, len, &code, &reason, &rlen) != 0) {
        reason = "malformed error frame";
        rlen = strlen(reason);
    }
    log_refusal(r, "peer refused the connection", reason, rlen);
    return code;
}

/* Every keepalive_ms while the stream is up (the backoff timer's other
 * use): a PING when the output is drained, and the stream is given up when
 * a PING stays unanswered for idle_timeout_ms. With output pending the
 * write timeout watches the stream instead: a PONG may be queued behind
 * megabytes the remote has not read yet. */
static void on_keepalive(uv_timer_t *timer)
{
    struct remote *r = timer->data;
    struct peer *t = r->t;
    struct pconn *pc = r->stream;
    uint64_t now = uv_now(t->o.loop);

    if (r->state != R_UP || pc == NULL || pc->out_bytes > 0) {
        return;
    }
    if (r->ping_sent == 0) {
        r->ping_sent = now + 1; /* 0 means none */
        r->st.sent_bytes += PEER_WIRE_HEADER;
        (void)peer__conn_sendv(pc, PEER_WIRE_PING, NULL, 0, NULL, 0);
    } else if (now + 1 - r->ping_sent > t->o.idle_timeout_ms) {
        peer__conn_close(pc);
        stream_down(r, UV_ETIMEDOUT, "no answer from the peer in time");
    }
}

static void stream_up(struct remote *r, struct pconn *pc)
{
    struct peer *t = r->t;
    char a[17], b[17];

    r->state = R_UP;
    r->backoff_ms = t->o.backoff_min_ms;
    r->active_since = uv_now(t->o.loop);
    if (r->active_since == 0) {
        r->active_since = 1;
    }
    r->good_url = (r->next_url + r->n_urls - 1) % r->n_urls;
    r->last_refusal[0] = '\0';
    r->st.connects++;
    if (!r->was_up) {
        r->was_up = true;
        log_infow(PKG, "peer became active",
                  LOG_STR("local-member-id", peer__idstr(t->o.self_id, a)),
                  LOG_STR("remote-peer-id", peer__idstr(r->id, b)));
    }
    peer__conn_deadline(pc, 0);
    pc->write_timeout_ms = t->o.write_timeout_ms;
    r->ping_sent = 0;
    uv_timer_start(&r->timer, on_keepalive, t->o.keepalive_ms,
                   t->o.keepalive_ms);
    while (r->q_head != NULL && !pc->closing) {
        struct pframe *f = r->q_head;
        r->q_head = f->next;
        r->q_msgs--;
        r->q_bytes -= f->len;
        r->st.sent_bytes += f->len;
        (void)peer__conn_send(pc, f);
    }
    if (r->q_head == NULL) {
        r->q_tail = NULL;
    }
}

static int stream_on_frame(struct pconn *pc,
                           uint8_t type,
                           const uint8_t *p,
                           size_t len)
{
    struct remote *r = pc->owner;
    uint16_t version;
    uint64_t cid, mid;

    if (r->state == R_HANDSHAKE && type == PEER_WIRE_HELLO_OK &&
        peer_wire_hello_ok_decode(p, len, &version, &cid, &mid) == 0) {
        stream_up(r, pc);
        return 0;
    }
    if (r->state == R_UP) {
        r->ping_sent = 0; /* anything from the acceptor proves it alive */
    }
    if (r->state == R_UP && type == PEER_WIRE_PONG) {
        return 0;
    }
    if (r->state == R_UP && type == PEER_WIRE_RESPONSE) {
        r->st.received_bytes += PEER_WIRE_HEADER + len;
        return peer__call_response(r, p, len);
    }
    if (r->state == R_HANDSHAKE && type == PEER_WIRE_ERROR) {
        struct peer *t = r->t;
        uint16_t code = handle_refusal(r, p, len);
        peer__conn_close(pc);
        stream_down(r, KEEL_EINVAL, "refused");
        /* Last: the callee may close the transport. */
        if (code == PEER_WIRE_ERR_REMOVED && t->o.on_removed != NULL) {
            t->o.on_removed(t->o.arg, r->id);
        }
        return 0;
    }
    return KEEL_ECORRUPT; /* the acceptor sends nothing else */
}

static void stream_on_close(struct pconn *pc, int rv)
{
    struct remote *r = pc->owner;
    if (rv == KEEL_ETLS) {
        const char *why = peer__conn_error(pc, rv);
        log_refusal(r, "TLS connection to the peer failed", why,
                    strlen(why));
    }
    stream_down(r, rv, peer__conn_error(pc, rv));
}

static const struct pconn_ops stream_ops = {
    .on_frame = stream_on_frame,
    .on_connect = stream_on_connect,
    .on_close = stream_on_close,
};

static void dial(struct remote *r)
{
    struct peer *t = r->t;
    const char *url = r->urls[r->next_url % r->n_urls];

    r->next_url = (r->next_url + 1) % r->n_urls;
    r->state = R_DIALING;
    r->stream = peer__conn_dial(t, t->o.loop, url, t->o.tls_client,
                                &stream_ops, r,
                                t->o.max_frame_bytes);
    if (r->stream == NULL) {
        stream_down(r, KEEL_ENOMEM, NULL);
        return;
    }
    peer__conn_deadline(r->stream, t->o.handshake_timeout_ms);
}

static void on_remote_closed(uv_handle_t *h)
{
    struct remote *r = h->data;
    struct peer *t = r->t;
    free_urls(r->urls, r->n_urls);
    free(r);
    peer__release(t);
}

/* Unlink r and close everything it has; freed from the timer's close. */
static void remote_destroy(struct remote *r)
{
    struct peer *t = r->t;
    struct remote **pp = &t->remotes;

    while (*pp != r) {
        pp = &(*pp)->next;
    }
    *pp = r->next;
    r->removed = true;
    peer__calls_fail(r, KEEL_ECANCELED);
    if (r->stream != NULL) {
        peer__conn_close(r->stream);
        r->stream = NULL;
    }
    drop_queue(r);
    peer__snap_detach_all(r);
    uv_close((uv_handle_t *)&r->timer, on_remote_closed);
}

/* ---- acceptor ------------------------------------------------------------ */

/* A member that keeps dialing with a bad identity is logged once per
 * (sender, reason) per PEER_REFUSAL_LOG_MS, like the dialer's side. */
static bool refusal_should_log(struct peer *t, uint64_t from, uint16_t code)
{
    uint64_t now = uv_now(t->o.loop) + 1; /* 0 marks a free slot */
    size_t oldest = 0;

    for (size_t i = 0; i < PEER_REFUSAL_SLOTS; i++) {
        struct peer_refusal *e = &t->refusals[i];
        if (e->ms != 0 && e->from == from && e->code == code) {
            if (now - e->ms < PEER_REFUSAL_LOG_MS) {
                return false;
            }
            e->ms = now;
            return true;
        }
        if (e->ms < t->refusals[oldest].ms) {
            oldest = i;
        }
    }
    t->refusals[oldest].from = from;
    t->refusals[oldest].code = code;
    t->refusals[oldest].ms = now;
    return true;
}

/* A refusal-log key for a connection that has no member id yet: its
 * address (without the port) and the reason (FNV-1a). */
static uint64_t addr_key(const char *addr, const char *why)
{
    uint64_t h = 14695981039346656037ull;
    const char *colon = strrchr(addr, ':');
    for (const char *p = addr; *p != '\0' && p != colon; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    for (const char *p = why; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    }
    return h | 1; /* never 0, the key of the protocol-error slot */
}

static void refuse(struct pconn *pc,
                   const struct peer_wire_hello *h,
                   uint16_t code,
                   const char *why)
{
    struct peer *t = pc->t;
    char a[17], b[17], c[17], d[17], e[17];
    char reason[256];

    snprintf(reason, sizeof reason,
             "%s (member %s of cluster %s refused member %s of cluster %s, "
             "which asked for member %s)",
             why, peer__idstr(t->o.self_id, a), peer__idstr(t->o.cluster_id, b),
             peer__idstr(h->from_id, c), peer__idstr(h->cluster_id, d),
             peer__idstr(h->to_id, e));
    if (!refusal_should_log(t, h->from_id, code)) {
        peer__conn_refuse(pc, code, reason);
        return;
    }
    log_warnw(
        PKG, "rejected peer connection", LOG_STR("reason", why),
        LOG_STR("local-member-id", a), LOG_STR("local-member-cluster-id", b),
        LOG_STR("remote-peer-id", c), LOG_STR("remote-peer-cluster-id", d),
        LOG_STR("remote-peer-requested-id", e),
        LOG_STR("remote-addr", pc->addr));
    peer__conn_refuse(pc, code, reason);
}

static void answer_cluster_info(struct pconn *pc)
{
    struct peer *t = pc->t;
    uint8_t *buf = NULL;
    size_t len = 0;
    int rv = KEEL_EUNIMPLEMENTED;

    if (t->o.on_cluster_info != NULL) {
        rv = t->o.on_cluster_info(t->o.arg, &buf, &len);
    }
    if (rv != 0) {
        free(buf);
        peer__conn_refuse(pc, PEER_WIRE_ERR_UNAVAILABLE,
                          "no cluster information available on this member");
        return;
    }
    if (peer__conn_sendv(pc, PEER_WIRE_CLUSTER_INFO, buf, len, NULL, 0) == 0) {
        peer__conn_close_flush(pc);
    }
    free(buf);
}

/* The first frame of an accepted connection. */
static int accept_hello(struct pconn *pc, const uint8_t *p, size_t len)
{
    struct peer *t = pc->t;
    struct peer_wire_hello h;
    uint8_t ok[PEER_WIRE_HELLO_OK_LEN];
    char reason[96];

    if (peer_wire_hello_decode(p, len, &h) != 0) {
        return KEEL_ECORRUPT;
    }
    if (h.version != PEER_WIRE_VERSION) {
        snprintf(reason, sizeof reason,
                 "unsupported peer protocol version %u (this member speaks %u)",
                 h.version, PEER_WIRE_VERSION);
        refuse(pc, &h, PEER_WIRE_ERR_VERSION, reason);
        return 0;
    }
    if (h.kind == PEER_WIRE_KIND_CLUSTER_INFO) {
        answer_cluster_info(pc);
        return 0;
    }
    if (h.kind != PEER_WIRE_KIND_STREAM && h.kind != PEER_WIRE_KIND_SNAPSHOT) {
        refuse(pc, &h, PEER_WIRE_ERR_PROTOCOL, "unknown connection kind");
        return 0;
    }
    if (t->o.cluster_id == 0) {
        refuse(pc, &h, PEER_WIRE_ERR_NOT_READY,
               "this member does not know its cluster ID yet");
        return 0;
    }
    if (h.cluster_id != t->o.cluster_id) {
        refuse(pc, &h, PEER_WIRE_ERR_CLUSTER_MISMATCH, "cluster ID mismatch");
        return 0;
    }
    if (h.to_id != t->o.self_id) {
        refuse(pc, &h, PEER_WIRE_ERR_WRONG_MEMBER, "member ID mismatch");
        return 0;
    }
    if (peer__is_removed(t, h.from_id)) {
        refuse(pc, &h, PEER_WIRE_ERR_REMOVED,
               "the member has been permanently removed from the cluster");
        return 0;
    }
    if (peer__remote(t, h.from_id) == NULL) {
        refuse(pc, &h, PEER_WIRE_ERR_UNKNOWN_MEMBER,
               "sender is not a member of this cluster");
        return 0;
    }
    pc->from = h.from_id;
    pc->max_frame = t->o.max_frame_bytes;
    if (h.kind == PEER_WIRE_KIND_STREAM) {
        /* One inbound stream per member: a newer one means the old is a
         * leftover of a restart or a network change. */
        for (struct pconn *o = t->conns; o != NULL; o = o->next) {
            if (o != pc && o->role == PEER_ROLE_STREAM &&
                o->from == h.from_id && !o->closing) {
                peer__conn_close(o);
            }
        }
        pc->role = PEER_ROLE_STREAM;
        peer__conn_deadline(pc, 0);
    } else {
        pc->role = PEER_ROLE_SNAPSHOT;
        peer__conn_deadline(pc, t->o.snap_timeout_ms);
    }
    peer_wire_hello_ok_encode(ok, t->o.cluster_id, t->o.self_id);
    return peer__conn_sendv(pc, PEER_WIRE_HELLO_OK, ok, sizeof ok, NULL, 0);
}

static int inbound_on_frame(struct pconn *pc,
                            uint8_t type,
                            const uint8_t *p,
                            size_t len)
{
    struct peer *t = pc->t;
    struct remote *r;

    switch (pc->role) {
        case PEER_ROLE_HANDSHAKE:
            if (type != PEER_WIRE_HELLO) {
                return KEEL_ECORRUPT;
            }
            return accept_hello(pc, p, len);
        case PEER_ROLE_STREAM:
            if (type == PEER_WIRE_PING) {
                return peer__conn_sendv(pc, PEER_WIRE_PONG, NULL, 0, NULL, 0);
            }
            if (type != PEER_WIRE_MSG && type != PEER_WIRE_REQUEST) {
                return KEEL_ECORRUPT;
            }
            r = peer__remote(t, pc->from);
            if (r != NULL) {
                r->st.received_bytes += PEER_WIRE_HEADER + len;
            }
            if (type == PEER_WIRE_REQUEST) {
                return peer__request(pc, p, len);
            }
            if (t->o.on_message != NULL) {
                t->o.on_message(t->o.arg, pc->from, p, len);
            }
            return 0;
        case PEER_ROLE_SNAPSHOT:
            r = peer__remote(t, pc->from);
            if (r != NULL) {
                r->st.received_bytes += PEER_WIRE_HEADER + len;
            }
            return peer__snap_recv_frame(pc, type, p, len);
        default:
            return KEEL_ECORRUPT;
    }
}

static void inbound_on_close(struct pconn *pc, int rv)
{
    struct peer *t = pc->t;
    struct remote *r = peer__remote(t, pc->from);

    if (r != NULL && pc->role != PEER_ROLE_HANDSHAKE && rv == KEEL_ECORRUPT) {
        r->st.received_failures++; /* a member sent us a bad frame */
    }

    if (pc->role == PEER_ROLE_SNAPSHOT) {
        peer__snap_recv_abort(pc);
    }
    if (rv == KEEL_ETLS && pc->tls_err[0] != '\0' &&
        refusal_should_log(t, addr_key(pc->addr, pc->tls_err),
                           PEER_WIRE_ERR_PROTOCOL)) {
        /* etcd's "rejected connection" (logTLSHandshakeFailure) */
        tls__log_rejected(pc->tls, pc->addr, pc->tls_err);
    }
    if (pc->role == PEER_ROLE_HANDSHAKE && rv == KEEL_ECORRUPT &&
        refusal_should_log(t, 0, PEER_WIRE_ERR_PROTOCOL)) {
        /* etcd's peers and tools speak HTTP on this port. */
        bool http = pc->rlen >= 4 && (memcmp(pc->rbuf, "GET ", 4) == 0 ||
                                      memcmp(pc->rbuf, "POST", 4) == 0 ||
                                      memcmp(pc->rbuf, "PUT ", 4) == 0 ||
                                      memcmp(pc->rbuf, "HEAD", 4) == 0);
        log_warnw(PKG,
                  http ? "closed an HTTP connection on the peer port: keel "
                         "members speak keel's peer protocol, not etcd's"
                       : "closed a peer connection that does not speak "
                         "keel's peer protocol",
                  LOG_STR("remote-addr", pc->addr));
    }
}

static const struct pconn_ops inbound_ops = {
    .on_frame = inbound_on_frame,
    .on_close = inbound_on_close,
};

static void on_connection(uv_stream_t *server, int status)
{
    struct plistener *pl = server->data;
    struct peer *t = pl->t;
    struct pconn *pc;

    if (status < 0 || t->closing) {
        return;
    }
    /* Until its HELLO is accepted a connection is nobody: it may not make
     * us buffer more than a handshake's worth. */
    pc = peer__conn_accept(t, server, pl->tls ? t->o.tls_server : NULL,
                           t->o.tls_skip_client_san, &inbound_ops,
                           PEER_HANDSHAKE_MAX_FRAME);
    if (pc != NULL) {
        peer__conn_deadline(pc, t->o.handshake_timeout_ms);
    }
}

/* Close inbound streams that sent nothing (not even a PING) for
 * idle_timeout_ms: their sender is gone without a FIN. */
static void on_sweep(uv_timer_t *timer)
{
    struct peer *t = timer->data;
    uint64_t now = uv_now(t->o.loop);

    for (struct pconn *pc = t->conns; pc != NULL; pc = pc->next) {
        if (pc->role == PEER_ROLE_STREAM && !pc->closing && !pc->linger &&
            now - pc->last_rx > t->o.idle_timeout_ms) {
            peer__conn_close(pc);
        }
    }
}

/* ---- open / close -------------------------------------------------------- */

static int listen_url(struct peer *t,
                      struct plistener *pl,
                      const char *url,
                      char *err,
                      size_t errlen)
{
    char host[256], port[16];
    int fd = -1, gai = 0, rv;

    rv =
        peer__parse_url(url, host, sizeof host, port, sizeof port, err, errlen);
    if (rv != 0) {
        return rv;
    }
    if (peer__url_tls(url) && t->o.tls_server == NULL) {
        snprintf(err, errlen,
                 "cannot listen on TLS for %s:%s: KeyFile and CertFile are "
                 "not presented",
                 host, port);
        return KEEL_EINVAL;
    }
    rv = listener_open_tcp(host, port, &fd, &gai);
    if (rv != 0) {
        snprintf(err, errlen, "listen %s: %s", url,
                 gai != 0 ? gai_strerror(gai) : strerror(-rv));
        return rv;
    }
    uv_tcp_init(t->o.loop, &pl->tcp);
    pl->tcp.data = pl;
    pl->t = t;
    pl->tls = peer__url_tls(url);
    peer__hold(t);
    rv = uv_tcp_open(&pl->tcp, fd);
    if (rv == 0) {
        rv = uv_listen((uv_stream_t *)&pl->tcp, 511, on_connection);
    }
    if (rv == 0) {
        pl->port = listener_fd_port(fd);
    }
    return rv;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct plistener *pl = h->data;
    peer__release(pl->t);
}

/* Partial images left by a crash mid-transfer (peer_snap.c names them
 * snap-from-*.tmp): nobody will finish them. */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX];

    if (d == NULL) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "snap-from-", 10) == 0 && n > 4 &&
            strcmp(e->d_name + n - 4, ".tmp") == 0 &&
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) <
                sizeof path) {
            (void)unlink(path);
        }
    }
    closedir(d);
}

int peer_open(const struct peer_options *opts,
              struct peer **out,
              char *errmsg,
              size_t errlen)
{
    struct peer *t;
    int rv = 0;

    if (opts->loop == NULL || opts->self_id == 0) {
        snprintf(errmsg, errlen, "peer transport: loop and member ID needed");
        return KEEL_EINVAL;
    }
    /* Refuse bad URLs before anything is opened. */
    for (size_t i = 0; i < opts->n_listen_urls; i++) {
        char host[256], port[16];
        rv = peer__parse_url(opts->listen_urls[i], host, sizeof host, port,
                             sizeof port, errmsg, errlen);
        if (rv != 0) {
            return rv;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return KEEL_ENOMEM;
    }
    t->o = *opts;
    t->o.listen_urls = NULL;
    t->o.n_listen_urls = 0;
    t->o.snap_dir = NULL;
#define DEFAULT(f, v)  \
    if (t->o.f == 0) { \
        t->o.f = (v);  \
    }
    DEFAULT(max_queue_msgs, PEER_DEFAULT_MAX_QUEUE_MSGS);
    DEFAULT(max_queue_bytes, PEER_DEFAULT_MAX_QUEUE_BYTES);
    DEFAULT(max_frame_bytes, PEER_DEFAULT_MAX_FRAME_BYTES);
    DEFAULT(snap_timeout_ms, PEER_DEFAULT_SNAP_TIMEOUT_MS);
    DEFAULT(snap_sync_bytes, PEER_DEFAULT_SNAP_SYNC_BYTES);
    DEFAULT(backoff_min_ms, PEER_DEFAULT_BACKOFF_MIN_MS);
    DEFAULT(backoff_max_ms, PEER_DEFAULT_BACKOFF_MAX_MS);
    DEFAULT(handshake_timeout_ms, PEER_DEFAULT_HANDSHAKE_TIMEOUT_MS);
    DEFAULT(write_timeout_ms, PEER_DEFAULT_WRITE_TIMEOUT_MS);
    DEFAULT(keepalive_ms, PEER_DEFAULT_KEEPALIVE_MS);
    DEFAULT(idle_timeout_ms, PEER_DEFAULT_IDLE_TIMEOUT_MS);
#undef DEFAULT
    if (t->o.max_frame_bytes < PEER_SNAP_CHUNK + 64) {
        t->o.max_frame_bytes = PEER_SNAP_CHUNK + 64;
    }
    if (opts->snap_dir != NULL) {
        t->snap_dir = strdup(opts->snap_dir);
        if (t->snap_dir == NULL) {
            free(t);
            return KEEL_ENOMEM;
        }
        remove_stale_temps(t->snap_dir);
    }
    uv_timer_init(opts->loop, &t->notify);
    t->notify.data = t;
    peer__hold(t);
    uv_timer_init(opts->loop, &t->sweep);
    t->sweep.data = t;
    peer__hold(t);
    uv_timer_start(&t->sweep, on_sweep, t->o.keepalive_ms, t->o.keepalive_ms);
    if (opts->n_listen_urls > 0) {
        t->lis = calloc(opts->n_listen_urls, sizeof *t->lis);
        if (t->lis == NULL) {
            rv = KEEL_ENOMEM;
            snprintf(errmsg, errlen, "out of memory");
        }
    }
    for (size_t i = 0; rv == 0 && i < opts->n_listen_urls; i++) {
        rv = listen_url(t, &t->lis[i], opts->listen_urls[i], errmsg, errlen);
        if (t->lis[i].t != NULL) {
            t->n_lis++; /* an opened handle must be closed even on error */
        }
    }
    if (rv != 0) {
        /* Close what was opened; the loop frees t later, nobody waits. */
        peer_close(t, NULL, NULL);
        return rv;
    }
    *out = t;
    return 0;
}

void peer_close(struct peer *t, peer_close_cb cb, void *data)
{
    assert(!t->closing);
    t->closing = true;
    t->close_cb = cb;
    t->close_data = data;
    free_events(t);
    for (size_t i = 0; i < t->n_lis; i++) {
        uv_close((uv_handle_t *)&t->lis[i].tcp, on_listener_closed);
    }
    while (t->remotes != NULL) {
        remote_destroy(t->remotes);
    }
    for (struct pconn *pc = t->conns; pc != NULL; pc = pc->next) {
        if (pc->role == PEER_ROLE_SNAPSHOT) {
            peer__snap_recv_abort(pc);
        }
        peer__conn_close(pc);
    }
    uv_close((uv_handle_t *)&t->notify, on_handle_released);
    uv_close((uv_handle_t *)&t->sweep, on_handle_released);
}

int peer_port(const struct peer *t, size_t i)
{
    return i < t->n_lis ? t->lis[i].port : 0;
}

void peer_set_cluster_id(struct peer *t, uint64_t cluster_id)
{
    t->o.cluster_id = cluster_id;
}

/* ---- membership ---------------------------------------------------------- */

int peer_add(struct peer *t, uint64_t id, const char *const *urls, size_t n)
{
    char err[256];
    struct remote *r;
    int rv;

    if (id == 0 || id == t->o.self_id) {
        return KEEL_EINVAL;
    }
    if (peer__remote(t, id) != NULL) {
        return KEEL_EEXISTS;
    }
    r = calloc(1, sizeof *r);
    if (r == NULL) {
        return KEEL_ENOMEM;
    }
    rv = copy_urls(urls, n, &r->urls, err, sizeof err);
    if (rv != 0) {
        free(r);
        return rv;
    }
    /* Re-added after a removal: accept its connections again. */
    for (size_t i = 0; i < t->n_removed; i++) {
        if (t->removed[i] == id) {
            t->removed[i] = t->removed[--t->n_removed];
            break;
        }
    }
    r->t = t;
    r->id = id;
    r->n_urls = n;
    r->backoff_ms = t->o.backoff_min_ms;
    uv_timer_init(t->o.loop, &r->timer);
    r->timer.data = r;
    peer__hold(t);
    r->next = t->remotes;
    t->remotes = r;
    dial(r);
    return 0;
}

int peer_update(struct peer *t, uint64_t id, const char *const *urls, size_t n)
{
    char err[256];
    struct remote *r = peer__remote(t, id);
    char **v;
    int rv;

    if (r == NULL) {
        return KEEL_ENOTFOUND;
    }
    rv = copy_urls(urls, n, &v, err, sizeof err);
    if (rv != 0) {
        return rv;
    }
    free_urls(r->urls, r->n_urls);
    r->urls = v;
    r->n_urls = n;
    r->next_url = 0;
    r->good_url = 0;
    if (r->state == R_BACKOFF) {
        /* The old address may be why it failed: try the new one now. */
        r->backoff_ms = t->o.backoff_min_ms;
        uv_timer_start(&r->timer, on_backoff, 0, 0);
    }
    return 0;
}

int peer_remove(struct peer *t, uint64_t id)
{
    struct remote *r = peer__remote(t, id);
    uint64_t *v;

    if (r == NULL) {
        return KEEL_ENOTFOUND;
    }
    remote_destroy(r);
    for (struct pconn *pc = t->conns; pc != NULL; pc = pc->next) {
        if (pc->from == id && !pc->closing) {
            if (pc->role == PEER_ROLE_SNAPSHOT) {
                peer__snap_recv_abort(pc);
            }
            peer__conn_close(pc);
        }
    }
    v = realloc(t->removed, (t->n_removed + 1) * sizeof *v);
    if (v != NULL) {
        t->removed = v;
        t->removed[t->n_removed++] = id;
    }
    return 0;
}

/* ---- sending --------------------------------------------------------------
 */

int peer__stream_push(struct remote *r, struct pframe *f)
{
    struct peer *t = r->t;
    size_t msgs = r->q_msgs, bytes = r->q_bytes;

    if (r->state == R_BACKOFF) {
        free(f);
        return UV_ENOTCONN;
    }
    /* The bound covers what waits for the connection and what the socket
     * has not taken; one frame always fits in an empty queue. */
    if (r->stream != NULL) {
        msgs += r->stream->out_msgs;
        bytes += r->stream->out_bytes;
    }
    if (msgs > 0 && (msgs >= t->o.max_queue_msgs ||
                     bytes + f->len > t->o.max_queue_bytes)) {
        free(f);
        return KEEL_EBUSY;
    }
    f->counted = 1;
    if (r->state == R_UP) {
        r->st.sent_bytes += f->len;
        (void)peer__conn_send(r->stream, f); /* failure: stream_down */
        return 0;
    }
    if (r->q_tail != NULL) {
        r->q_tail->next = f;
    } else {
        r->q_head = f;
    }
    r->q_tail = f;
    r->q_msgs++;
    r->q_bytes += f->len;
    return 0;
}

void peer_send(void *arg,
               uint64_t to,
               const uint8_t *msg,
               size_t len,
               const char *snap_path)
{
    struct peer *t = arg;
    struct remote *r;
    struct pframe *f;

    if (t->closing) {
        return;
    }
    r = peer__remote(t, to);
    if (r == NULL) {
        if (snap_path != NULL) {
            peer__event_snap(t, to, false);
        } else {
            peer__event_unreachable(t, to);
        }
        return;
    }
    if (snap_path != NULL) {
        peer__snap_send(r, msg, len, snap_path);
        return;
    }
    if (len > t->o.max_frame_bytes) {
        goto drop;
    }
    f = peer__frame_new(PEER_WIRE_MSG, msg, len, NULL, 0);
    if (f == NULL || peer__stream_push(r, f) != 0) {
        goto drop;
    }
    return;
drop:
    r->st.dropped++;
    r->st.sent_failures++;
    peer__event_unreachable(t, to);
}

bool peer_connected(const struct peer *t, uint64_t id)
{
    struct remote *r = peer__remote(t, id);
    return r != NULL && r->state == R_UP;
}

uint64_t peer_active_since(const struct peer *t, uint64_t id)
{
    struct remote *r = peer__remote(t, id);
    return r != NULL && r->state == R_UP ? r->active_since : 0;
}

int peer_stats(const struct peer *t, uint64_t id, struct peer_stats *out)
{
    struct remote *r = peer__remote(t, id);
    if (r == NULL) {
        return KEEL_ENOTFOUND;
    }
    *out = r->st;
    out->queued_msgs = r->q_msgs;
    out->queued_bytes = r->q_bytes;
    if (r->stream != NULL) {
        out->queued_msgs += r->stream->out_msgs;
        out->queued_bytes += r->stream->out_bytes;
    }
    return 0;
}

/* ---- metrics --------------------------------------------------------------
 */

/* etcd's rafthttp metrics (etcdserver/api/rafthttp/metrics.go), one
 * sample per remote member, read from its counters at scrape time. */
struct peer_metric
{
    const char *name;
    const char *help;
    enum metrics_type type;
    const char *label; /* "To", "From", or NULL: {Local, Remote} */
    size_t field;      /* offset of a uint64_t in struct peer_stats */
    bool active_only;  /* etcd_network_active_peers: 1 while up */
};

#define PEER_STAT(f) offsetof(struct peer_stats, f)
static const struct peer_metric peer_metrics[PEER_N_METRICS] = {
    {"etcd_network_active_peers",
     "The current number of active peer connections.", METRICS_GAUGE, NULL, 0,
     true},
    {"etcd_network_disconnected_peers_total",
     "The total number of disconnected peers.", METRICS_COUNTER, NULL,
     PEER_STAT(disconnects), false},
    {"etcd_network_peer_received_bytes_total",
     "The total number of bytes received from peers.", METRICS_COUNTER, "From",
     PEER_STAT(received_bytes), false},
    {"etcd_network_peer_received_failures_total",
     "The total number of receive failures from peers.", METRICS_COUNTER,
     "From", PEER_STAT(received_failures), false},
    {"etcd_network_peer_sent_bytes_total",
     "The total number of bytes sent to peers.", METRICS_COUNTER, "To",
     PEER_STAT(sent_bytes), false},
    {"etcd_network_peer_sent_failures_total",
     "The total number of send failures from peers.", METRICS_COUNTER, "To",
     PEER_STAT(sent_failures), false},
    {"etcd_network_snapshot_receive_failures",
     "Total number of snapshot receive failures", METRICS_COUNTER, "From",
     PEER_STAT(snap_recv_failures), false},
    {"etcd_network_snapshot_receive_success",
     "Total number of successful snapshot receives", METRICS_COUNTER, "From",
     PEER_STAT(snap_recv_ok), false},
    {"etcd_network_snapshot_send_failures",
     "Total number of snapshot send failures", METRICS_COUNTER, "To",
     PEER_STAT(snap_send_failures), false},
    {"etcd_network_snapshot_send_success",
     "Total number of successful snapshot sends", METRICS_COUNTER, "To",
     PEER_STAT(snap_send_ok), false},
};

static void collect(struct metrics_writer *w,
                    const struct metrics_family *f,
                    void *data)
{
    const struct peer_metric_ctx *ctx = data;
    const struct peer_metric *m = &peer_metrics[ctx->which];
    struct peer *t = ctx->t;
    char self[17], id[17];

    peer__idstr(t->o.self_id, self);
    for (struct remote *r = t->remotes; r != NULL; r = r->next) {
        double v;
        peer__idstr(r->id, id);
        /* As client_golang shows etcd's vectors: a series exists once
         * its label values were used (a counter's first event; the active
         * gauge's first connection, 0 again after a disconnection). */
        if (m->active_only) {
            if (r->st.connects == 0) {
                continue;
            }
            v = r->state == R_UP ? 1 : 0;
        } else {
            v = (double)*(const uint64_t *)((const char *)&r->st + m->field);
            if (v == 0) {
                continue;
            }
        }
        if (m->label != NULL) {
            struct metrics_label l = {m->label, id};
            metrics_write_sample(w, f->name, &l, 1, v);
        } else {
            struct metrics_label l[2] = {{"Local", self}, {"Remote", id}};
            metrics_write_sample(w, f->name, l, 2, v);
        }
    }
}

int peer_register_metrics(struct metrics_registry *reg, struct peer *t)
{
    for (size_t i = 0; i < PEER_N_METRICS; i++) {
        struct metrics_family fam = {
            .name = peer_metrics[i].name,
            .help = peer_metrics[i].help,
            .type = peer_metrics[i].type,
            .collect = collect,
            .data = &t->metric_ctx[i],
        };
        t->metric_ctx[i].t = t;
        t->metric_ctx[i].which = i;
        int rv = metrics_register(reg, &fam);
        if (rv != 0) {
            return rv;
        }
    }
    return 0;
}

/* ---- cluster info (joining member) --------------------------------------- */

struct fetch
{
    uv_loop_t *loop;
    struct tls_ctx *tls;
    char **urls;
    size_t n_urls;
    size_t next;
    uv_timer_t deadline;
    uv_timer_t retry;
    int handles;
    struct pconn *pc;
    peer_fetch_cb cb;
    void *arg;
    bool done;
    char err[400];
};

static void fetch_dial(struct fetch *fx);

static void fetch_handle_closed(uv_handle_t *h)
{
    struct fetch *fx = h->data;
    if (--fx->handles == 0) {
        free_urls(fx->urls, fx->n_urls);
        free(fx);
    }
}

static void fetch_finish(struct fetch *fx,
                         int status,
                         const uint8_t *buf,
                         size_t len)
{
    if (fx->done) {
        return;
    }
    fx->done = true;
    if (fx->pc != NULL) {
        peer__conn_close(fx->pc);
        fx->pc = NULL;
    }
    fx->cb(fx->arg, status, buf, len, status == 0 ? NULL : fx->err);
    uv_close((uv_handle_t *)&fx->deadline, fetch_handle_closed);
    uv_close((uv_handle_t *)&fx->retry, fetch_handle_closed);
}

static void fetch_on_retry(uv_timer_t *timer)
{
    fetch_dial(timer->data);
}

static void fetch_failed(struct fetch *fx)
{
    fx->pc = NULL;
    /* Next URL after a short pause: a refusing or absent member answers
     * at once, so retrying without a pause would spin. */
    uv_timer_start(&fx->retry, fetch_on_retry, 100, 0);
}

static void fetch_on_connect(struct pconn *pc)
{
    (void)peer__conn_hello(pc, PEER_WIRE_KIND_CLUSTER_INFO, 0, 0, 0);
}

static int fetch_on_frame(struct pconn *pc,
                          uint8_t type,
                          const uint8_t *p,
                          size_t len)
{
    struct fetch *fx = pc->owner;
    uint16_t code;
    const char *reason;
    size_t rlen;

    if (type == PEER_WIRE_CLUSTER_INFO) {
        fetch_finish(fx, 0, p, len);
        return 0;
    }
    if (type == PEER_WIRE_ERROR &&
        peer_wire_error_decode(p, len, &code, &reason, &rlen) == 0) {
        snprintf(fx->err, sizeof fx->err, "%.280s refused: %.*s", pc->addr,
                 (int)rlen, reason);
        peer__conn_close(pc);
        fetch_failed(fx);
        return 0;
    }
    return KEEL_ECORRUPT;
}

static void fetch_on_close(struct pconn *pc, int rv)
{
    struct fetch *fx = pc->owner;
    snprintf(fx->err, sizeof fx->err, "%.280s: %.100s", pc->addr,
             peer__conn_error(pc, rv));
    fetch_failed(fx);
}

static const struct pconn_ops fetch_ops = {
    .on_frame = fetch_on_frame,
    .on_connect = fetch_on_connect,
    .on_close = fetch_on_close,
};

static void fetch_dial(struct fetch *fx)
{
    const char *url = fx->urls[fx->next];
    fx->next = (fx->next + 1) % fx->n_urls;
    fx->pc = peer__conn_dial(NULL, fx->loop, url, fx->tls, &fetch_ops, fx,
                             PEER_DEFAULT_MAX_FRAME_BYTES);
    if (fx->pc == NULL) {
        snprintf(fx->err, sizeof fx->err, "out of memory");
        fetch_failed(fx);
    }
}

static void fetch_on_deadline(uv_timer_t *timer)
{
    struct fetch *fx = timer->data;
    char last[sizeof fx->err];
    memcpy(last, fx->err, sizeof last);
    snprintf(fx->err, sizeof fx->err,
             "could not get the cluster information from the peer URLs "
             "in time (last error: %.150s)",
             last[0] != '\0' ? last : "no answer");
    fetch_finish(fx, UV_ETIMEDOUT, NULL, 0);
}

int peer_fetch_cluster_info(uv_loop_t *loop,
                            struct tls_ctx *tls,
                            const char *const *urls,
                            size_t n_urls,
                            uint64_t timeout_ms,
                            peer_fetch_cb cb,
                            void *arg)
{
    char err[256];
    struct fetch *fx = calloc(1, sizeof *fx);
    int rv;

    if (fx == NULL) {
        return KEEL_ENOMEM;
    }
    rv = copy_urls(urls, n_urls, &fx->urls, err, sizeof err);
    if (rv != 0) {
        free(fx);
        return rv;
    }
    signal(SIGPIPE, SIG_IGN);
    fx->loop = loop;
    fx->tls = tls;
    fx->n_urls = n_urls;
    fx->cb = cb;
    fx->arg = arg;
    uv_timer_init(loop, &fx->deadline);
    uv_timer_init(loop, &fx->retry);
    fx->deadline.data = fx->retry.data = fx;
    fx->handles = 2;
    uv_timer_start(&fx->deadline, fetch_on_deadline, timeout_ms, 0);
    fetch_dial(fx);
    return 0;
}
