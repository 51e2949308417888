/*
 * HTTP router for the client port: handlers registered by method and path
 * prefix, reached from HTTP/1.1 connections and from HTTP/2 requests that
 * are not gRPC (no application/grpc content-type). The JSON gateway
 * (/v3/...), /health, /version, /metrics and /v2/... plug in here.
 *
 * A handler gets a struct router_req with the whole request (body collected
 * up to conn_limits.max_http_body; larger bodies are answered 413 without
 * calling it) and answers now or later, exactly once, with either
 * router_respond() or router_start() + router_write()* + router_end()
 * (HTTP/1.1 chunked encoding, HTTP/2 DATA frames: the streaming watch of the
 * gateway). If the client goes away first, the cancel callback (if set)
 * runs; the handler must still finish the request (the calls become no-ops
 * returning KEEL_ECANCELED) so its memory is released.
 *
 *   static void health(struct router_req *req, void *data)
 *   {
 *       router_respond(req, 200, "application/json",
 *                      "{\"health\":\"true\"}", 17);
 *   }
 *   router_add(router, "GET", "/health", health, srv);
 *   router_add(router, NULL, "/v3/", gateway, srv);   // any method
 */
#ifndef KEEL_ROUTER_H
#define KEEL_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "keel_arena.h"

struct router;
struct router_req;

/* One request header; names are lower case (HTTP/2 rules; HTTP/1.1 names
 * are folded). */
struct router_header
{
    const char *name;
    const char *value;
};

typedef void (*router_handler_cb)(struct router_req *req, void *data);
typedef void (*router_cancel_cb)(struct router_req *req, void *data);

/* The transport behind a request (http1.c, http2.c). */
struct router_transport
{
    /* Response head. content_length < 0 means streamed (chunked on
     * HTTP/1.1). */
    int (*start)(void *tp,
                 int status,
                 const struct router_header *headers,
                 size_t n_headers,
                 long long content_length);
    int (*write)(void *tp, const void *buf, size_t len);
    int (*end)(void *tp);
    /* Bytes queued and not yet handed to the socket. */
    size_t (*buffered)(void *tp);
    /* The handler finished; the transport drops its pointer to the request
     * and may free its side. Not called if the transport went away first
     * (router__req_detach). */
    void (*release)(void *tp);
};

struct router_req
{
    /* The request; all of it lives in arena until the request finishes. */
    const char *method;
    const char *path;  /* without the query string */
    const char *query; /* after '?', "" if none */
    const struct router_header *headers;
    size_t n_headers;
    const uint8_t *body;
    size_t body_len;
    int http2;               /* arrived over HTTP/2 */
    struct keel_arena arena; /* request memory; handlers may allocate here */
    void *data;              /* for the handler */

    /* Private to router.c and the transports. */
    const struct router_transport *tp;
    void *tp_state; /* NULL once the client went away */
    int started;
    int finished;
    router_cancel_cb cancel_cb;
    void *cancel_data;
};

/* etcd's CORS headers (embed/serve.go accessController, origin "*"), sent
 * on the client port's HTTP answers. */
#define ROUTER_N_CORS 3
extern const struct router_header router_cors[ROUTER_N_CORS];

/* A new empty router (no routes: everything 404). NULL on OOM. */
struct router *router_new(void);
void router_free(struct router *r);

/* Route requests whose path starts with prefix (and method equals method,
 * or any method when method is NULL) to cb. The longest matching prefix
 * wins; a prefix ending in '/' also matches the path without that slash
 * ("/v3/" matches "/v3"). Strings are copied. Returns 0 or KEEL_ENOMEM. */
int router_add(struct router *r,
               const char *method,
               const char *prefix,
               router_handler_cb cb,
               void *data);

/* Value of request header name (lower case), NULL if absent. */
const char *router_req_header(const struct router_req *req, const char *name);

/* Whether the client is still there. */
int router_req_alive(const struct router_req *req);

/* Call cb when the client goes away before the request finishes. */
void router_req_on_cancel(struct router_req *req,
                          router_cancel_cb cb,
                          void *data);

/* Whole response in one call; finishes the request. content_type may be
 * NULL. Returns 0 or KEEL_ECANCELED (client gone; the request is finished
 * anyway). */
int router_respond(struct router_req *req,
                   int status,
                   const char *content_type,
                   const void *body,
                   size_t len);

/* router_respond with extra response headers (may be NULL/0). */
int router_respond_headers(struct router_req *req,
                           int status,
                           const char *content_type,
                           const struct router_header *extra,
                           size_t n_extra,
                           const void *body,
                           size_t len);

/* Streamed response: head, body pieces, end (which finishes the request).
 * extra headers may be NULL. */
int router_start(struct router_req *req,
                 int status,
                 const char *content_type,
                 const struct router_header *extra,
                 size_t n_extra);
int router_write(struct router_req *req, const void *buf, size_t len);
int router_end(struct router_req *req);

/* Bytes a streamed response has queued and not yet sent (0 when gone). */
size_t router_req_buffered(const struct router_req *req);

/* Used by the transports. router__req_new() makes a request (arena
 * initialised, fields zero) owned by the transport until dispatch; after
 * router__dispatch() it is shared: the transport calls router__req_detach()
 * when its side goes away, the handler finishes it; whichever is last frees
 * it. */
struct router_req *router__req_new(void);
void router__req_free(struct router_req *req);
void router__dispatch(struct router *r,
                      struct router_req *req,
                      const struct router_transport *tp,
                      void *tp_state);
void router__req_detach(struct router_req *req);

#endif /* KEEL_ROUTER_H */
