/*
 * Internals shared by peer.c (transport, message streams, cluster info),
 * peer_conn.c (one framed TCP connection) and peer_snap.c (snapshot
 * transfer). Not a public header.
 *
 * Ownership: struct peer owns its remotes, its connections and its
 * snapshot transfers; every one of them counts in t->live until it is
 * freed, and peer_close's callback runs when t->live reaches 0, so a
 * libuv callback that arrives late always finds its objects alive.
 */
#ifndef KEEL_PEER_INT_H
#define KEEL_PEER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "peer.h"
#include "peer_wire.h"

#include <sys/socket.h>

#define PEER_DIAL_MAX_ADDRS 8
#define PEER_SAN_MAX_NAMES 8

struct tls_ctx;

struct pconn;
struct snap_send;
struct snap_recv;

/* An outbound frame: built once, owned by a queue, then by its uv_write. */
struct pframe
{
    struct pframe *next;
    uv_write_t req;
    struct pconn *pc;
    size_t len;  /* header + payload */
    int counted; /* a raft message counted in its remote's queue */
    uint8_t data[];
};

/* A frame with room for plen payload bytes, header written for plen; the
 * caller fills data[PEER_WIRE_HEADER..]. NULL on OOM. */
struct pframe *peer__frame_alloc(uint8_t type, size_t plen);
/* A frame carrying p1 then p2 (either may be empty). */
struct pframe *peer__frame_new(uint8_t type,
                               const void *p1,
                               size_t n1,
                               const void *p2,
                               size_t n2);

struct pconn_ops
{
    /* A complete frame (payload borrowed). Return 0, or a negative code to
     * close the connection (on_close follows, unless the owner closed it
     * already with peer__conn_close / _refuse / _close_flush). */
    int (*on_frame)(struct pconn *pc,
                    uint8_t type,
                    const uint8_t *p,
                    size_t len);
    /* Dialed connections: connected (0) — the owner sends HELLO now. A
     * failed dial goes to on_close instead. */
    void (*on_connect)(struct pconn *pc);
    /* The connection failed or ended by itself (EOF, I/O error, bad frame,
     * timeout, failed dial): rv < 0. Called once, only while an owner is
     * attached; the connection is closing and the owner must forget it. */
    void (*on_close)(struct pconn *pc, int rv);
    /* Every queued byte was written (optional). */
    void (*on_drain)(struct pconn *pc);
};

struct pconn
{
    struct peer *t;            /* NULL for cluster-info fetches */
    struct pconn *prev, *next; /* in t->conns */
    uv_loop_t *loop;
    const struct pconn_ops *ops;
    void *owner; /* NULL once the owner let go */
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    int pending; /* open handles and requests in flight */
    bool closing;
    bool linger; /* close once the output is written */
    bool paused; /* parsing suspended by the owner */
    bool reading;
    bool connected;
    bool resolving; /* gai in flight */
    bool recycling; /* tcp handle closing to dial the next address */
    /* A dial tries each resolved address in turn (a host name may resolve
     * to an IPv6 address nobody listens on before the IPv4 one). */
    struct sockaddr_storage addrs[PEER_DIAL_MAX_ADDRS];
    size_t n_addrs, cur_addr;
    int dial_rv; /* a dial that failed before starting */
    uint8_t *rbuf;
    size_t rlen, rcap;
    size_t max_frame;
    /* Message streams: no write completes for this long while output is
     * pending -> the connection fails (0: no limit). */
    uint64_t write_timeout_ms;
    size_t out_bytes; /* handed to uv_write, not yet written */
    size_t out_msgs;  /* of which raft messages */
    uint64_t in_bytes;
    uint64_t last_rx; /* uv_now of the last bytes read */
    char addr[280];   /* remote address, for logs */
    /* Owner's per-connection state (inbound role, snapshot, fetch). */
    int role;
    uint64_t from;          /* inbound: the sender named in HELLO */
    struct snap_recv *recv; /* inbound snapshot */
    /* Inbound stream: requests not answered yet (they outlive pc). */
    struct peer_responder *responders;
    /* https:// peer URLs: TLS between the socket and the frames. Frames
     * flow (on_connect, on_frame) only once tls_up. */
    struct tls_conn *tls;
    bool tls_up;   /* handshake done; acceptor: SAN check passed too */
    bool tls_srv;  /* accepted: etcd's checkSAN after the handshake */
    bool skip_san; /* --experimental-peer-skip-client-san-verification */
    uint8_t *cbuf; /* ciphertext read buffer */
    /* etcd's checkSAN by DNS name: the names left to resolve. */
    char (*san)[256];
    size_t n_san, cur_san;
    char tls_err[600]; /* why TLS failed, in Go's words; "" otherwise */
};

/* Dial host:port (from a peer URL) and call ops->on_connect or on_close.
 * An https:// URL dials TLS with tls (borrowed; NULL fails the dial) and
 * calls on_connect after the handshake. Returns the connection (closing it
 * is the owner's job), NULL on OOM. */
struct pconn *peer__conn_dial(struct peer *t,
                              uv_loop_t *loop,
                              const char *url,
                              struct tls_ctx *tls,
                              const struct pconn_ops *ops,
                              void *owner,
                              size_t max_frame);
/* Accept a pending connection on server; with tls (borrowed) the peer must
 * complete a TLS handshake and etcd's checkSAN (unless skip_san) before
 * its frames reach on_frame; a failure closes it with KEEL_ETLS and the
 * reason in tls_err. NULL on failure. */
struct pconn *peer__conn_accept(struct peer *t,
                                uv_stream_t *server,
                                struct tls_ctx *tls,
                                bool skip_san,
                                const struct pconn_ops *ops,
                                size_t max_frame);
/* Whether url is https:// (peer__parse_url accepts http and https). */
bool peer__url_tls(const char *url);
/* Queue f for writing (takes it). Returns 0, or a negative code when the
 * connection is closing (f is freed then). */
int peer__conn_send(struct pconn *pc, struct pframe *f);
/* Build and queue a frame. */
int peer__conn_sendv(struct pconn *pc,
                     uint8_t type,
                     const void *p1,
                     size_t n1,
                     const void *p2,
                     size_t n2);
/* Send the dialer's HELLO (protocol version PEER_WIRE_VERSION). */
int peer__conn_hello(struct pconn *pc,
                     uint8_t kind,
                     uint64_t cluster_id,
                     uint64_t from_id,
                     uint64_t to_id);
/* Queue an ERROR frame, then close once it is written (bounded). The owner
 * is detached: no more callbacks. */
void peer__conn_refuse(struct pconn *pc, uint16_t code, const char *reason);
/* Close now, dropping unwritten output; no callback to the owner. */
void peer__conn_close(struct pconn *pc);
/* Close once the output is written (bounded); no callback to the owner. */
void peer__conn_close_flush(struct pconn *pc);
/* Arm the connection's deadline: at expiry it fails with UV_ETIMEDOUT
 * (on_close). 0 disarms. */
void peer__conn_deadline(struct pconn *pc, uint64_t ms);
/* Suspend / resume frame delivery (and socket reads). Resume delivers the
 * frames already buffered before reading more. */
void peer__conn_pause(struct pconn *pc);
void peer__conn_resume(struct pconn *pc);

/* Text for a connection's failure code: libuv codes (UV_EOF, UV_EAI_*)
 * and keel's. */
const char *peer__strerror(int rv);
/* Why pc failed with rv: Go's TLS reason for KEEL_ETLS, else
 * peer__strerror(rv). */
const char *peer__conn_error(const struct pconn *pc, int rv);

/* Tests only: when set, an address every dial tries before the resolved
 * ones (to exercise the fallback to the next address). */
extern const struct sockaddr *peer__dial_first;

/* Split an http://host:port or https://host:port URL into host and port.
 * 0, or KEEL_EINVAL with a message in err. */
int peer__parse_url(const char *url,
                    char *host,
                    size_t host_size,
                    char *port,
                    size_t port_size,
                    char *err,
                    size_t errlen);

struct remote
{
    struct peer *t;
    struct remote *next;
    uint64_t id;
    char **urls;
    size_t n_urls;
    size_t next_url; /* the URL the next dial tries */
    size_t good_url; /* the URL the stream last came up on */
    enum { R_DIALING, R_HANDSHAKE, R_UP, R_BACKOFF } state;
    bool removed;
    bool unreachable_pending;
    bool was_up; /* logged "became active" since the last "inactive" */
    struct pconn *stream;
    uv_timer_t timer; /* backoff; the remote is freed from its close cb */
    uint64_t backoff_ms;
    uint64_t active_since;
    uint64_t ping_sent; /* uv_now of the unanswered PING, 0: none */
    /* Messages not yet handed to the socket (while dialing). */
    struct pframe *q_head, *q_tail;
    size_t q_msgs, q_bytes;
    struct peer_stats st;
    /* Refusals are logged once per reason per PEER_REFUSAL_LOG_MS. */
    char last_refusal[200];
    uint64_t last_refusal_ms;
    struct snap_send *snaps;
    struct peer_call *calls; /* waiting for a RESPONSE on this stream */
};

/* A deferred callback (see peer.h: callbacks never run inside peer_*). */
struct peer_event
{
    struct peer_event *next;
    uint64_t id;
    bool snap; /* on_snapshot_sent(id, ok), else on_unreachable(id) */
    bool ok;
};

struct plistener
{
    uv_tcp_t tcp;
    struct peer *t;
    int port;
    bool tls; /* https:// */
};

#define PEER_N_METRICS 10
struct peer_metric_ctx
{
    struct peer *t;
    size_t which; /* index into peer.c's metric table */
};

#define PEER_REFUSAL_SLOTS 8
struct peer_refusal
{
    uint64_t from;
    uint16_t code;
    uint64_t ms; /* uv_now + 1 when last logged; 0: free */
};

struct peer
{
    struct peer_options o;
    char *snap_dir;
    struct plistener *lis;
    size_t n_lis;
    struct remote *remotes;
    struct pconn *conns;
    uint64_t *removed;
    size_t n_removed;
    uv_timer_t notify;
    bool notify_armed;
    uv_timer_t sweep; /* idle inbound streams, every keepalive_ms */
    struct peer_event *ev_head, *ev_tail;
    uint64_t snap_seq;
    uint64_t next_call_id;
    struct peer_refusal refusals[PEER_REFUSAL_SLOTS];
    struct peer_metric_ctx metric_ctx[PEER_N_METRICS];
    size_t live; /* listeners, notify timer, remotes, conns, transfers */
    bool closing;
    peer_close_cb close_cb;
    void *close_data;
};

/* One more / one fewer object that peer_close must wait for. */
void peer__hold(struct peer *t);
void peer__release(struct peer *t);

struct remote *peer__remote(const struct peer *t, uint64_t id);
bool peer__is_removed(const struct peer *t, uint64_t id);
/* Queue on_snapshot_sent(to, ok) for a later loop turn. */
void peer__event_snap(struct peer *t, uint64_t to, bool ok);
/* Queue on_unreachable(to) (coalesced per remote per turn). */
void peer__event_unreachable(struct peer *t, uint64_t to);
/* "%x" of a member id, as etcd's types.ID prints it. */
const char *peer__idstr(uint64_t id, char buf[17]);

/* peer_snap.c */
/* Start sending snap_path with msg to r. Failures become on_snapshot_sent
 * (to, false) events. */
void peer__snap_send(struct remote *r,
                     const uint8_t *msg,
                     size_t len,
                     const char *snap_path);
/* Forget r's transfers in flight: they close without callbacks. */
void peer__snap_detach_all(struct remote *r);
/* Inbound SNAPSHOT connection: a frame after HELLO_OK. */
int peer__snap_recv_frame(struct pconn *pc,
                          uint8_t type,
                          const uint8_t *p,
                          size_t len);
/* The inbound snapshot connection is gone: drop the partial image. */
void peer__snap_recv_abort(struct pconn *pc);

/* peer_call.c */
/* Queue a frame on r's message stream within the queue bounds (as
 * peer_send does); 0, or KEEL_EBUSY (full) / UV_ENOTCONN (backing off):
 * then f is freed. */
int peer__stream_push(struct remote *r, struct pframe *f);
/* Every call waiting on r's stream ends with status. */
void peer__calls_fail(struct remote *r, int status);
/* A RESPONSE on r's stream. */
int peer__call_response(struct remote *r, const uint8_t *p, size_t len);
/* A REQUEST on an accepted stream. */
int peer__request(struct pconn *pc, const uint8_t *p, size_t len);
/* pc is being freed: its unanswered requests lose their connection. */
void peer__responders_detach(struct pconn *pc);

/* Role of an accepted connection. */
enum {
    PEER_ROLE_HANDSHAKE = 0,
    PEER_ROLE_STREAM,
    PEER_ROLE_SNAPSHOT,
};

#define PEER_REFUSAL_LOG_MS 30000
#define PEER_HANDSHAKE_MAX_FRAME                \
    4096 /* an accepted connection before HELLO \
          */
#define PEER_LINGER_MS 2000
#define PEER_RBUF_STEP (64u * 1024u)

#endif /* KEEL_PEER_INT_H */
