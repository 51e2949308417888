/*
 * Client-port listener: parse a listen URL, bind, accept.
 *
 * Happy path: listener_init() parses the URL, resolves the host (blocking
 * getaddrinfo, once at startup), binds and listens; each new connection is
 * accepted by conn__accept() and lives on its own from there.
 *
 * Close: listener_close() closes every connection and the listening handle;
 * the caller's callback runs when the last of them is freed, so a caller can
 * free the grpc registry and router right after it.
 *
 * Failure modes: a bad URL or a failed bind/listen is reported with errmsg
 * and leaves nothing open; a failed accept (EMFILE, ENOMEM) drops that one
 * connection attempt and keeps listening.
 */
#include "listener.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "keel_err.h"
#include "tls.h"

/* Go's net.Listen uses the kernel's somaxconn; 511 is libuv's habit. */
#define LISTENER_BACKLOG 511

static void on_connection(uv_stream_t *server, int status)
{
    struct listener *l = server->data;
    if (status < 0 || l->closing) {
        return;
    }
    /* A failed accept (EMFILE, ENOMEM) only loses this connection. */
    (void)conn__accept(l);
}

static void on_drain_timer_closed(uv_handle_t *h);

static void maybe_done(struct listener *l)
{
    if (l->closing && l->handle_closed && l->n_conns == 0) {
        if (l->drain_timer != NULL) {
            uv_close((uv_handle_t *)l->drain_timer, on_drain_timer_closed);
            l->drain_timer = NULL;
            return; /* back here from the timer's close callback */
        }
        listener_close_cb cb = l->close_cb;
        free(l->rbuf);
        l->rbuf = NULL;
        tls_ctx_free(l->tls);
        l->tls = NULL;
        l->closing = 0;
        l->forced = 0;
        if (cb != NULL) {
            cb(l);
        }
    }
}

void listener__conn_gone(struct listener *l)
{
    maybe_done(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    l->handle_closed = 1;
    maybe_done(l);
}

static void on_drain_timer_closed(uv_handle_t *h)
{
    struct listener *l = h->data;
    free(h);
    maybe_done(l);
}

void listener_close(struct listener *l, listener_close_cb cb)
{
    assert(!l->closing);
    l->closing = 1;
    l->forced = 1;
    l->close_cb = cb;
    conn__close_all(l);
    uv_close(&l->u.handle, on_handle_closed);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct listener *l = t->data;
    l->forced = 1;
    conn__close_all(l);
}

void listener_shutdown(struct listener *l,
                       uint64_t timeout_ms,
                       listener_close_cb cb)
{
    assert(!l->closing);
    l->closing = 1;
    l->close_cb = cb;
    l->drain_timer = malloc(sizeof *l->drain_timer);
    if (l->drain_timer != NULL) {
        uv_timer_init(l->loop, l->drain_timer);
        l->drain_timer->data = l;
        uv_timer_start(l->drain_timer, on_drain_timeout, timeout_ms, 0);
        conn__shutdown_all(l);
    } else {
        l->forced = 1;
        conn__close_all(l);
    }
    uv_close(&l->u.handle, on_handle_closed);
}

/* Split "host:port" / "[v6]:port" into host and port. */
static int split_host_port(struct listener *l,
                           const char *hp,
                           char *host,
                           size_t host_size,
                           char *port,
                           size_t port_size)
{
    const char *colon;
    const char *h = hp;
    size_t hlen;

    if (hp[0] == '[') {
        const char *end = strchr(hp, ']');
        if (end == NULL || end[1] != ':') {
            goto err;
        }
        h = hp + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL) {
            goto err;
        }
        hlen = (size_t)(colon - hp);
    }
    if (hlen >= host_size || strlen(colon + 1) >= port_size ||
        colon[1] == '\0') {
        goto err;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            goto err;
        }
    }
    return 0;
err:
    snprintf(l->errmsg, sizeof l->errmsg, "listen address %s: want host:port",
             hp);
    return KEEL_EINVAL;
}

/* Bind and listen on a plain socket first, so that a failure leaves no
 * libuv handle behind (a closed handle would still need a loop turn). */
static int listen_fd(const struct sockaddr *sa, socklen_t salen, int *fd_out)
{
    int one = 1;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    if (sa->sa_family != AF_UNIX) {
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, sa, salen) != 0 || listen(fd, LISTENER_BACKLOG) != 0) {
        int rv = -errno;
        close(fd);
        return rv;
    }
    *fd_out = fd;
    return 0;
}

int listener_open_tcp(const char *host, const char *port, int *fd,
                      int *gai_err)
{
    struct addrinfo hints, *res = NULL;
    int rv;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rv = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
    if (rv != 0) {
        *gai_err = rv;
        return KEEL_EINVAL;
    }
    rv = listen_fd(res->ai_addr, res->ai_addrlen, fd);
    freeaddrinfo(res);
    return rv;
}

int listener_fd_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
        return 0;
    }
    return ntohs(ss.ss_family == AF_INET6
                     ? ((struct sockaddr_in6 *)&ss)->sin6_port
                     : ((struct sockaddr_in *)&ss)->sin_port);
}

static int bind_tcp(struct listener *l, const char *hostport)
{
    char host[256], port[16];
    int fd = -1;
    int gai = 0;
    int rv;

    rv = split_host_port(l, hostport, host, sizeof host, port, sizeof port);
    if (rv != 0) {
        return rv;
    }
    rv = listener_open_tcp(host, port, &fd, &gai);
    if (gai != 0) {
        snprintf(l->errmsg, sizeof l->errmsg, "resolve %s: %s", hostport,
                 gai_strerror(gai));
        return KEEL_EINVAL;
    }
    if (rv == 0) {
        rv = uv_tcp_init(l->loop, &l->u.tcp);
        if (rv != 0) {
            close(fd);
        }
    }
    if (rv != 0) {
        snprintf(l->errmsg, sizeof l->errmsg, "listen tcp %s: %s", hostport,
                 uv_strerror(rv));
        return rv;
    }
    /* From here the handle owns fd; errors cannot happen on an open,
     * listening socket except for programmer errors. */
    rv = uv_tcp_open(&l->u.tcp, fd);
    assert(rv == 0);
    rv = uv_listen(&l->u.stream, LISTENER_BACKLOG, on_connection);
    assert(rv == 0);
    (void)rv;
    l->port = listener_fd_port(fd);
    return 0;
}

static int bind_unix(struct listener *l, const char *path)
{
    struct sockaddr_un sun;
    int fd = -1;
    int rv;

    if (path[0] == '\0' || strlen(path) >= sizeof sun.sun_path ||
        strlen(path) >= sizeof l->path) {
        snprintf(l->errmsg, sizeof l->errmsg, "bad unix socket path \"%s\"",
                 path);
        return KEEL_EINVAL;
    }
    strcpy(l->path, path);
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    strcpy(sun.sun_path, path);
    /* etcd removes a stale socket file first (pkg/transport
     * NewUnixListener). */
    (void)unlink(path);
    rv = listen_fd((struct sockaddr *)&sun, sizeof sun, &fd);
    if (rv == 0) {
        rv = uv_pipe_init(l->loop, &l->u.pipe, 0);
        if (rv != 0) {
            close(fd);
        }
    }
    if (rv != 0) {
        snprintf(l->errmsg, sizeof l->errmsg, "listen unix %s: %s", path,
                 uv_strerror(rv));
        return rv;
    }
    rv = uv_pipe_open(&l->u.pipe, fd);
    assert(rv == 0);
    rv = uv_listen(&l->u.stream, LISTENER_BACKLOG, on_connection);
    assert(rv == 0);
    (void)rv;
    l->is_unix = 1;
    return 0;
}

int listener_init(struct listener *l,
                  uv_loop_t *loop,
                  const char *url,
                  struct grpc_server *grpc,
                  struct router *router,
                  const struct conn_limits *limits)
{
    return listener_init_tls(l, loop, url, grpc, router, limits, NULL);
}

int listener_init_tls(struct listener *l,
                      uv_loop_t *loop,
                      const char *url,
                      struct grpc_server *grpc,
                      struct router *router,
                      const struct conn_limits *limits,
                      const struct tls_config *tls)
{
    int secure =
        strncmp(url, "https://", 8) == 0 || strncmp(url, "unixs://", 8) == 0;
    int rv;

    /* A write to a socket the client already reset raises SIGPIPE, which
     * would kill the whole server; libuv reports EPIPE instead once the
     * signal is ignored. Go's runtime does the same for sockets. */
    signal(SIGPIPE, SIG_IGN);
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->grpc = grpc;
    l->router = router;
    if (limits != NULL) {
        l->limits = *limits;
    } else {
        conn_limits_default(&l->limits);
    }
    if (secure) {
        if (tls == NULL) {
            snprintf(l->errmsg, sizeof l->errmsg,
                     "listen %s: TLS URL without certificate and key", url);
            return KEEL_EINVAL;
        }
        rv = tls_ctx_new(tls, &l->tls, l->errmsg, sizeof l->errmsg);
        if (rv != 0) {
            return rv;
        }
    }
    l->rbuf = malloc(LISTENER_RBUF_SIZE);
    if (l->rbuf == NULL) {
        rv = KEEL_ENOMEM;
        goto err;
    }
    if (strncmp(url, "http://", 7) == 0) {
        rv = bind_tcp(l, url + 7);
    } else if (strncmp(url, "https://", 8) == 0) {
        rv = bind_tcp(l, url + 8);
    } else if (strncmp(url, "unix://", 7) == 0) {
        rv = bind_unix(l, url + 7);
    } else if (strncmp(url, "unixs://", 8) == 0) {
        rv = bind_unix(l, url + 8);
    } else {
        snprintf(l->errmsg, sizeof l->errmsg,
                 "listen %s: URL scheme must be http, https, unix or unixs",
                 url);
        rv = KEEL_EINVAL;
    }
    if (rv != 0) {
        goto err;
    }
    l->u.handle.data = l;
    return 0;
err:
    free(l->rbuf);
    l->rbuf = NULL;
    tls_ctx_free(l->tls);
    l->tls = NULL;
    return rv;
}
