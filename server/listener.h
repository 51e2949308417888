/*
 * Client-port listener: one listening socket (TCP or unix) from a URL such as
 * http://127.0.0.1:2379 or unix:///run/keel.sock, accepting connections on a
 * caller's loop and handing each to conn.c. All connections of a listener
 * share its gRPC method registry, its HTTP router and its limits; several
 * listeners (one per --listen-client-urls entry) may share the same
 * registry and router.
 */
#ifndef KEEL_LISTENER_H
#define KEEL_LISTENER_H

#include <stddef.h>

#include <uv.h>

#include "conn.h"

struct grpc_server;
struct router;
struct tls_config;
struct tls_ctx;
struct conn;
struct listener;

typedef void (*listener_close_cb)(struct listener *l);

struct listener
{
    uv_loop_t *loop;
    struct grpc_server *grpc; /* borrowed; may be NULL (no gRPC) */
    struct router *router;    /* borrowed; may be NULL (all 404) */
    struct conn_limits limits;
    union
    {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    int is_unix;
    int port;           /* bound TCP port (after :0), 0 for unix */
    char path[108];     /* unix socket path */
    struct conn *conns; /* live connections (doubly linked) */
    size_t n_conns;     /* live connections */
    size_t n_accepted;  /* connections accepted since start */
    int closing;        /* listener_close() or listener_shutdown() called */
    int forced;         /* connections are being closed without grace */
    int handle_closed;
    uv_timer_t *drain_timer; /* listener_shutdown() deadline */
    listener_close_cb close_cb;
    void *data;          /* for the caller */
    char *rbuf;          /* read buffer lent to the connection being read */
    struct tls_ctx *tls; /* https:// and unixs:// listeners */
    /* With tls: also serve plaintext, chosen per connection by its first
     * byte (a TLS handshake record or not). etcd serves an address listed
     * as both http:// and https:// this way. Set after listener_init_tls(),
     * before the loop runs. */
    int tls_optional;
    char errmsg[256];
};

#define LISTENER_RBUF_SIZE (64 * 1024)

/* Bind and listen on url: http://host:port (host a name or an IP literal,
 * [v6] in brackets, port 0 for any free port) or unix://path (an existing
 * socket file at path is replaced, as etcd does). grpc and router are
 * borrowed and must outlive the listener; limits NULL means defaults.
 * https:// and unixs:// need listener_init_tls(); here they fail with
 * KEEL_EINVAL. Returns 0 or a negative code with l->errmsg filled in; on
 * error nothing is left open and l may be reused. Sets SIGPIPE to ignored
 * for the process (a reset client must not kill the server). */
int listener_init(struct listener *l,
                  uv_loop_t *loop,
                  const char *url,
                  struct grpc_server *grpc,
                  struct router *router,
                  const struct conn_limits *limits);

/* Same, with TLS for https:// and unixs:// URLs (tls is read during the
 * call: certificates are loaded now). For http:// and unix:// URLs tls is
 * ignored, as etcd serves those in plaintext whatever the cert flags. */
int listener_init_tls(struct listener *l,
                      uv_loop_t *loop,
                      const char *url,
                      struct grpc_server *grpc,
                      struct router *router,
                      const struct conn_limits *limits,
                      const struct tls_config *tls);

/* Stop accepting, close every connection (in-flight calls are cancelled),
 * then close the listening socket; cb (may be NULL) runs once everything is
 * closed and freed. l must stay valid until then. */
void listener_close(struct listener *l, listener_close_cb cb);

/* Graceful stop: stop accepting, then let every connection finish what it
 * started: HTTP/2 connections get a GOAWAY (NO_ERROR, last processed
 * stream) and close when their streams are done, HTTP/1.1 connections
 * close after their current response (idle ones at once). Whatever is still
 * open after timeout_ms is closed as by listener_close() (its calls
 * cancelled). cb (may be NULL) runs when everything is closed and freed.
 * Long-lived streams (Watch) never finish by themselves, so the timeout
 * is what ends them; etcd bounds its GracefulStop the same way. */
void listener_shutdown(struct listener *l,
                       uint64_t timeout_ms,
                       listener_close_cb cb);

/* Used by conn.c: a connection of l was freed. */
void listener__conn_gone(struct listener *l);

/* Shared with the peer transport (peer.c): resolve host:port (host "" is
 * every address) and return in *fd a bound, listening, close-on-exec TCP
 * socket with SO_REUSEADDR, before any libuv handle exists, so a failure
 * leaves nothing to close. Returns 0, -errno from socket/bind/listen, or
 * KEEL_EINVAL when the address does not resolve (*gai_err: the getaddrinfo
 * code, for gai_strerror). */
int listener_open_tcp(const char *host, const char *port, int *fd,
                      int *gai_err);
/* The local port a socket is bound to, or 0. */
int listener_fd_port(int fd);

#endif /* KEEL_LISTENER_H */
