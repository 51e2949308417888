/*
 * HTTP router: route table and the request/response object shared by the
 * HTTP/1.1 and HTTP/2 transports.
 *
 * Happy path: a transport builds a router_req (method, path, query,
 * headers, body in the request's arena) and calls router__dispatch(); the
 * longest matching route's handler runs and answers through router_respond()
 * or router_start/write/end, which forward to the transport's
 * struct router_transport. Unknown paths get Go's net/http 404 text
 * ("404 page not found"), which etcd's mux answers too.
 *
 * Lifetime: after dispatch a request is shared by the transport (until its
 * connection or stream goes away: router__req_detach) and the handler (until
 * it ends the response). Whichever lets go last frees it. The cancel
 * callback runs synchronously from router__req_detach(): transports detach
 * only from their close paths (connection destroy, HTTP/2 stream close while
 * serialising from the loop), never from inside a router_* call, because
 * router calls only queue bytes and schedule the write.
 */
#include "router.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"

struct route
{
    struct route *next;
    router_handler_cb cb;
    void *data;
    size_t prefix_len;
    char *method; /* NULL: any */
    char prefix[];
};

struct router
{
    struct route *routes;
};

struct router *router_new(void)
{
    return calloc(1, sizeof(struct router));
}

void router_free(struct router *r)
{
    struct route *e, *next;
    if (r == NULL) {
        return;
    }
    for (e = r->routes; e != NULL; e = next) {
        next = e->next;
        free(e->method);
        free(e);
    }
    free(r);
}

int router_add(struct router *r,
               const char *method,
               const char *prefix,
               router_handler_cb cb,
               void *data)
{
    size_t len = strlen(prefix);
    struct route *e = malloc(sizeof *e + len + 1);
    if (e == NULL) {
        return KEEL_ENOMEM;
    }
    e->method = NULL;
    if (method != NULL) {
        e->method = strdup(method);
        if (e->method == NULL) {
            free(e);
            return KEEL_ENOMEM;
        }
    }
    memcpy(e->prefix, prefix, len + 1);
    e->prefix_len = len;
    e->cb = cb;
    e->data = data;
    e->next = r->routes;
    r->routes = e;
    return 0;
}

static int route_matches(const struct route *e, const struct router_req *req)
{
    size_t plen = strlen(req->path);
    if (e->method != NULL && strcmp(e->method, req->method) != 0) {
        return 0;
    }
    if (plen >= e->prefix_len &&
        memcmp(req->path, e->prefix, e->prefix_len) == 0) {
        return 1;
    }
    /* "/v3/" also matches "/v3". */
    return e->prefix_len > 1 && e->prefix[e->prefix_len - 1] == '/' &&
           plen == e->prefix_len - 1 && memcmp(req->path, e->prefix, plen) == 0;
}

const char *router_req_header(const struct router_req *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

int router_req_alive(const struct router_req *req)
{
    return req->tp_state != NULL;
}

void router_req_on_cancel(struct router_req *req,
                          router_cancel_cb cb,
                          void *data)
{
    req->cancel_cb = cb;
    req->cancel_data = data;
}

size_t router_req_buffered(const struct router_req *req)
{
    return req->tp_state != NULL ? req->tp->buffered(req->tp_state) : 0;
}

struct router_req *router__req_new(void)
{
    struct router_req *req = calloc(1, sizeof *req);
    if (req != NULL) {
        keel_arena_init(&req->arena, 4096);
        req->method = "";
        req->path = "";
        req->query = "";
    }
    return req;
}

void router__req_free(struct router_req *req)
{
    keel_arena_free(&req->arena);
    free(req);
}

/* The handler is done with req. */
static void finish(struct router_req *req)
{
    assert(!req->finished);
    req->finished = 1;
    if (req->tp_state != NULL) {
        req->tp->release(req->tp_state);
        req->tp_state = NULL;
    }
    router__req_free(req);
}

void router__req_detach(struct router_req *req)
{
    assert(!req->finished);
    req->tp_state = NULL;
    if (req->cancel_cb != NULL) {
        req->cancel_cb(req, req->cancel_data);
    }
}

const struct router_header router_cors[ROUTER_N_CORS] = {
    {"access-control-allow-headers", "accept, content-type, authorization"},
    {"access-control-allow-methods", "POST, GET, OPTIONS, PUT, DELETE"},
    {"access-control-allow-origin", "*"},
};

int router_start(struct router_req *req,
                 int status,
                 const char *content_type,
                 const struct router_header *extra,
                 size_t n_extra)
{
    struct router_header h[32];
    size_t n = 0;

    assert(!req->started && !req->finished);
    req->started = 1;
    if (req->tp_state == NULL) {
        return KEEL_ECANCELED;
    }
    if (content_type != NULL) {
        h[n++] = (struct router_header){"content-type", content_type};
    }
    for (size_t i = 0; i < n_extra && n < 32; i++) {
        h[n++] = extra[i];
    }
    return req->tp->start(req->tp_state, status, h, n, -1);
}

int router_write(struct router_req *req, const void *buf, size_t len)
{
    assert(req->started && !req->finished);
    if (req->tp_state == NULL) {
        return KEEL_ECANCELED;
    }
    if (len == 0) {
        return 0;
    }
    return req->tp->write(req->tp_state, buf, len);
}

int router_end(struct router_req *req)
{
    int rv = KEEL_ECANCELED;
    assert(req->started && !req->finished);
    if (req->tp_state != NULL) {
        rv = req->tp->end(req->tp_state);
    }
    finish(req);
    return rv;
}

int router_respond(struct router_req *req,
                   int status,
                   const char *content_type,
                   const void *body,
                   size_t len)
{
    return router_respond_headers(req, status, content_type, NULL, 0, body,
                                  len);
}

int router_respond_headers(struct router_req *req,
                           int status,
                           const char *content_type,
                           const struct router_header *extra,
                           size_t n_extra,
                           const void *body,
                           size_t len)
{
    struct router_header h[32];
    size_t n = 0;
    int rv = KEEL_ECANCELED;

    assert(!req->started && !req->finished);
    req->started = 1;
    if (req->tp_state != NULL) {
        if (content_type != NULL) {
            h[n++] = (struct router_header){"content-type", content_type};
        }
        for (size_t i = 0; i < n_extra && n < 32; i++) {
            h[n++] = extra[i];
        }
        rv = req->tp->start(req->tp_state, status, h, n, (long long)len);
        if (rv == 0 && len > 0) {
            rv = req->tp->write(req->tp_state, body, len);
        }
        if (rv == 0) {
            rv = req->tp->end(req->tp_state);
        }
    }
    finish(req);
    return rv;
}

void router__dispatch(struct router *r,
                      struct router_req *req,
                      const struct router_transport *tp,
                      void *tp_state)
{
    static const char not_found[] = "404 page not found\n";
    const struct route *best = NULL;

    req->tp = tp;
    req->tp_state = tp_state;
    for (const struct route *e = r != NULL ? r->routes : NULL; e != NULL;
         e = e->next) {
        if (route_matches(e, req) &&
            (best == NULL || e->prefix_len > best->prefix_len)) {
            best = e;
        }
    }
    if (best == NULL) {
        (void)router_respond(req, 404, "text/plain; charset=utf-8", not_found,
                             sizeof not_found - 1);
        return;
    }
    best->cb(req, best->data);
}
