/*
 * One accepted client connection on the client port (2379): the socket, the
 * protocol sniffing of its first bytes, the outbound byte queue and its
 * back-pressure, and the close path.
 *
 * A connection carries exactly one protocol, chosen by its first bytes
 * (DESIGN.md "Wire surface on the client port"): the HTTP/2 client preface
 * selects HTTP/2 (gRPC and HTTP/2 JSON), anything else HTTP/1.1. The chosen
 * protocol plugs in through struct conn_proto and talks back to the socket
 * only through conn_write_take(); TLS (tls.c, OpenSSL memory BIOs) sits
 * under that narrow pair, invisible to the protocols, see conn.c.
 *
 * Everything here runs on the loop thread that owns the listener.
 */
#ifndef KEEL_CONN_H
#define KEEL_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct conn;
struct listener;

/* Limits shared by every connection of a listener. */
struct conn_limits
{
    /* etcd: --max-request-bytes (embed.DefaultMaxRequestBytes). A unary gRPC
     * request over it gets InvalidArgument "etcdserver: request is too
     * large". */
    size_t max_request_bytes;
    /* gRPC receive limit; etcd: max_request_bytes + grpcOverheadBytes
     * (512 KiB, etcdserver/api/v3rpc/grpc.go). Over it: ResourceExhausted
     * "grpc: received message larger than max (N vs. M)". */
    size_t max_recv_bytes;
    /* Largest HTTP request body accepted (HTTP/1.1 and HTTP/2 non-gRPC). */
    size_t max_http_body;
    /* Bytes handed to the socket and not yet written. Above it the
     * connection stops reading from the socket and stops serialising new
     * frames until the socket drains below half of it. */
    size_t out_high_water;
    /* Hard cap on everything queued for one connection (socket queue plus
     * per-stream queues). A client that never reads hits it and is
     * disconnected instead of growing the server without bound. */
    size_t max_buffered;
    /* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS advertised to clients. */
    uint32_t max_concurrent_streams;
    /* HTTP/2 keepalive: after this long without input the server sends a
     * PING (etcd --grpc-keepalive-interval, 2h); 0 disables. */
    uint64_t keepalive_time_ms;
    /* ... and closes the connection if nothing arrives within this long
     * after it (etcd --grpc-keepalive-timeout, 20s). */
    uint64_t keepalive_timeout_ms;
};

/* etcd 3.4 defaults (1.5 MiB request, +512 KiB gRPC overhead). */
#define CONN_DEFAULT_MAX_REQUEST_BYTES (1536u * 1024u)
#define CONN_GRPC_OVERHEAD_BYTES (512u * 1024u)

/* Fill l with the defaults above. */
void conn_limits_default(struct conn_limits *l);

/* A protocol running on a connection. Every function gets the protocol
 * state returned by the factory that installed it. */
struct conn_proto
{
    /* Bytes from the peer. Return 0, or a negative code to close the
     * connection (the protocol has queued whatever goodbye it wants, e.g. a
     * GOAWAY; it is flushed best-effort before closing). */
    int (*recv)(void *p, const uint8_t *buf, size_t len);
    /* The outbound queue drained below the low-water mark. */
    void (*writable)(void *p);
    /* The connection is gone: cancel what is in flight and free p. Runs
     * once, from the connection's close callback. */
    void (*destroy)(void *p);
    /* Graceful stop (listener_shutdown): take no new requests, finish the
     * current ones, then conn_close(c, 1). */
    void (*shutdown)(void *p);
    /* The timer armed with conn_start_timer() expired. */
    void (*timeout)(void *p);
};

/* Queue buf (allocated with malloc, len > 0) for writing; takes ownership
 * and frees it when written or when the connection closes. Returns 0, or a
 * negative code (the buffer is freed anyway) if the connection is closing. */
int conn_write_take(struct conn *c, void *buf, size_t len);

/* Bytes queued on the socket and not yet written. */
size_t conn_out_bytes(const struct conn *c);

/* The limits this connection was accepted with. */
const struct conn_limits *conn_limits(const struct conn *c);

/* Common name of the client's TLS certificate, "" without one (plaintext,
 * or no client certificate). */
const char *conn_peer_cn(const struct conn *c);

/* The listener that accepted the connection. */
struct listener *conn_listener(const struct conn *c);

/* The loop the connection runs on. */
uv_loop_t *conn_loop(const struct conn *c);

/* Call the protocol's writable() from the next loop turn (once, however
 * often this is called before). Protocols use it to serialise output
 * outside of their callers' stacks. */
void conn_schedule(struct conn *c);

/* Call the protocol's timeout() in ms milliseconds (re-arming replaces the
 * previous deadline). The timer dies with the connection. */
void conn_start_timer(struct conn *c, uint64_t ms);

/* Stop reading until conn_resume_read(). The protocol uses this while it
 * cannot take more input (HTTP/1.1 pipelining while a response is pending). */
void conn_pause_read(struct conn *c);
void conn_resume_read(struct conn *c);

/* Close the connection: stop reading, drop what is not yet written unless
 * graceful != 0 (then what is queued is written first, bounded by a short
 * timer). The protocol's destroy() runs later from the close callback, never
 * from inside this call, so it is safe to call from protocol callbacks. */
void conn_close(struct conn *c, int graceful);

/* Whether conn_close() was called. */
int conn_is_closing(const struct conn *c);

/* Used by listener.c: accept one pending connection on l and start reading
 * it. Returns 0 or a negative code (nothing is left open then). */
int conn__accept(struct listener *l);

/* Used by listener.c: close every connection of l. */
void conn__close_all(struct listener *l);
/* Used by listener.c: ask every connection of l to finish and close. */
void conn__shutdown_all(struct listener *l);

#endif /* KEEL_CONN_H */
