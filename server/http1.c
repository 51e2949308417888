/*
 * HTTP/1.1 on a client connection: llhttp parser → router.
 *
 * Happy path: socket bytes go to llhttp; its callbacks collect the URL,
 * headers (names folded to lower case) and body into a router_req; at
 * on_message_complete the parser pauses (HPE_PAUSED), the rest of the input
 * is kept aside (reading goes on, so a disconnect cancels the request, up to
 * H1_MAX_PENDING bytes of pipelined input), and the request is dispatched. The
 * handler's response is written through the router_transport below
 * (Content-Length, or chunked when streamed). When the handler ends the
 * response, parsing resumes from a scheduled loop turn (not from inside the
 * handler's router_end call) with the kept bytes: pipelined requests are
 * answered in order, one at a time.
 *
 *   READ ──message complete──▶ DISPATCHED ──router_end──▶ READ (keep-alive)
 *     │                                            └────▶ CLOSE (no keep-alive)
 *     └──parse error / body too big──▶ 400/413/431 + CLOSE
 *
 * Suspended in: conn read (READ), the handler (DISPATCHED), the socket
 * (a streamed response above conn_limits.max_buffered closes the connection:
 * a gateway watcher that stopped reading).
 */
#include "http1.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "keel_err.h"
#include "listener.h"
#include "router.h"

#define H1_MAX_HEADER_BYTES (64 * 1024)
#define H1_MAX_HEADERS 100
/* Input kept while a request is being handled (pipelined requests). */
#define H1_MAX_PENDING (64 * 1024)

struct sbuf
{
    char *p;
    size_t len, cap;
};

struct http1
{
    struct conn *c;
    llhttp_t parser;
    struct router_req *req; /* being parsed, or dispatched and active */
    int active;             /* req dispatched, response not ended */
    int started;            /* response head written */
    int chunked;            /* streamed response */
    int keep_alive;
    int reject; /* status to answer instead of dispatching */
    int head;   /* HEAD request: no body in the response */
    int paused;
    uint8_t *pending; /* input after the paused message */
    size_t pending_len;
    /* Parse state. */
    struct sbuf url, field, value;
    int in_value;
    struct router_header *hdrs;
    size_t n_hdrs;
    size_t header_bytes;
    struct sbuf body;
};

static int sbuf_add(struct sbuf *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *q;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        q = realloc(b->p, cap);
        if (q == NULL) {
            return KEEL_ENOMEM;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void sbuf_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static struct http1 *from_parser(llhttp_t *p)
{
    return p->data;
}

static const char *reason(int status)
{
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 204:
            return "No Content";
        case 301:
            return "Moved Permanently";
        case 307:
            return "Temporary Redirect";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 409:
            return "Conflict";
        case 412:
            return "Precondition Failed";
        case 413:
            return "Request Entity Too Large";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        default:
            return "Status";
    }
}

static int write_copy(struct http1 *h, const void *p, size_t n)
{
    void *b = malloc(n);
    if (b == NULL) {
        conn_close(h->c, 0);
        return KEEL_ENOMEM;
    }
    memcpy(b, p, n);
    return conn_write_take(h->c, b, n);
}

/* ---- router transport ------------------------------------------------- */

static int t_start(void *tp,
                   int status,
                   const struct router_header *headers,
                   size_t n,
                   long long content_length)
{
    struct http1 *h = tp;
    struct sbuf b = {0};
    char line[128];
    int rv = 0;

    snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason(status));
    rv |= sbuf_add(&b, line, strlen(line));
    for (size_t i = 0; i < n; i++) {
        rv |= sbuf_add(&b, headers[i].name, strlen(headers[i].name));
        rv |= sbuf_add(&b, ": ", 2);
        rv |= sbuf_add(&b, headers[i].value, strlen(headers[i].value));
        rv |= sbuf_add(&b, "\r\n", 2);
    }
    if (content_length >= 0) {
        snprintf(line, sizeof line, "Content-Length: %lld\r\n", content_length);
        h->chunked = 0;
    } else {
        snprintf(line, sizeof line, "Transfer-Encoding: chunked\r\n");
        h->chunked = 1;
    }
    rv |= sbuf_add(&b, line, strlen(line));
    if (!h->keep_alive) {
        rv |= sbuf_add(&b, "Connection: close\r\n", 19);
    }
    rv |= sbuf_add(&b, "\r\n", 2);
    if (rv != 0) {
        sbuf_free(&b);
        conn_close(h->c, 0);
        return KEEL_ENOMEM;
    }
    h->started = 1;
    return conn_write_take(h->c, b.p, b.len);
}

static int t_write(void *tp, const void *buf, size_t len)
{
    struct http1 *h = tp;
    const struct conn_limits *lim = conn_limits(h->c);
    char *b;
    size_t k = 0;

    if (h->head) {
        return 0; /* HEAD: the head only (RFC 9110 §9.3.2) */
    }
    if (conn_out_bytes(h->c) > 0 &&
        conn_out_bytes(h->c) + len > lim->max_buffered) {
        conn_close(h->c, 0); /* a client that stopped reading */
        return KEEL_ECANCELED;
    }
    if (!h->chunked) {
        return write_copy(h, buf, len);
    }
    b = malloc(len + 32);
    if (b == NULL) {
        conn_close(h->c, 0);
        return KEEL_ENOMEM;
    }
    k = (size_t)snprintf(b, 32, "%zx\r\n", len);
    memcpy(b + k, buf, len);
    k += len;
    memcpy(b + k, "\r\n", 2);
    return conn_write_take(h->c, b, k + 2);
}

static int t_end(void *tp)
{
    struct http1 *h = tp;
    int rv = 0;
    if (h->chunked && !h->head) {
        rv = write_copy(h, "0\r\n\r\n", 5);
    }
    return rv;
}

static size_t t_buffered(void *tp)
{
    struct http1 *h = tp;
    return conn_out_bytes(h->c);
}

static void t_release(void *tp)
{
    struct http1 *h = tp;
    h->active = 0;
    h->req = NULL;
    if (!h->keep_alive) {
        conn_close(h->c, 1);
        return;
    }
    /* Parse the next request from a fresh loop turn, not from inside the
     * handler's router_end(). */
    conn_schedule(h->c);
}

static const struct router_transport h1_transport = {
    t_start, t_write, t_end, t_buffered, t_release,
};

/* ---- parser callbacks ------------------------------------------------- */

static void reset_parse(struct http1 *h)
{
    for (size_t i = 0; i < h->n_hdrs; i++) {
        free((char *)h->hdrs[i].name);
    }
    free(h->hdrs);
    h->hdrs = NULL;
    h->n_hdrs = 0;
    h->header_bytes = 0;
    h->in_value = 0;
    h->reject = 0;
    h->url.len = h->field.len = h->value.len = h->body.len = 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct http1 *h = from_parser(p);
    assert(h->req == NULL);
    reset_parse(h);
    h->req = router__req_new();
    return h->req != NULL ? 0 : -1;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http1 *h = from_parser(p);
    h->header_bytes += len;
    if (h->header_bytes > H1_MAX_HEADER_BYTES) {
        h->reject = 431;
        return -1;
    }
    return sbuf_add(&h->url, at, len) == 0 ? 0 : -1;
}

static int commit_header(struct http1 *h)
{
    struct router_header *n;
    char *block;
    if (h->field.len == 0) {
        return 0;
    }
    if (h->n_hdrs >= H1_MAX_HEADERS) {
        h->reject = 431;
        return -1;
    }
    n = realloc(h->hdrs, (h->n_hdrs + 1) * sizeof *n);
    if (n == NULL) {
        return -1;
    }
    h->hdrs = n;
    block = malloc(h->field.len + h->value.len + 2);
    if (block == NULL) {
        return -1;
    }
    for (size_t i = 0; i < h->field.len; i++) {
        block[i] = (char)tolower((unsigned char)h->field.p[i]);
    }
    block[h->field.len] = '\0';
    memcpy(block + h->field.len + 1, h->value.p ? h->value.p : "",
           h->value.len);
    block[h->field.len + 1 + h->value.len] = '\0';
    h->hdrs[h->n_hdrs].name = block;
    h->hdrs[h->n_hdrs].value = block + h->field.len + 1;
    h->n_hdrs++;
    h->field.len = h->value.len = 0;
    h->in_value = 0;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http1 *h = from_parser(p);
    if (h->in_value && commit_header(h) != 0) {
        return -1;
    }
    h->header_bytes += len;
    if (h->header_bytes > H1_MAX_HEADER_BYTES) {
        h->reject = 431;
        return -1;
    }
    return sbuf_add(&h->field, at, len) == 0 ? 0 : -1;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http1 *h = from_parser(p);
    h->in_value = 1;
    h->header_bytes += len;
    if (h->header_bytes > H1_MAX_HEADER_BYTES) {
        h->reject = 431;
        return -1;
    }
    return sbuf_add(&h->value, at, len) == 0 ? 0 : -1;
}

static char *arena_str(struct keel_arena *a, const char *s, size_t n)
{
    char *p = keel_arena_alloc(a, n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http1 *h = from_parser(p);
    struct router_req *req = h->req;
    struct router_header *hv;
    const char *url = h->url.p != NULL ? h->url.p : "/";
    const char *q = strchr(url, '?');
    const char *method = llhttp_method_name(llhttp_get_method(p));

    if (h->in_value && commit_header(h) != 0) {
        return -1;
    }
    hv = keel_arena_alloc(&req->arena, (h->n_hdrs + 1) * sizeof *hv);
    if (hv == NULL) {
        return -1;
    }
    for (size_t i = 0; i < h->n_hdrs; i++) {
        hv[i].name =
            arena_str(&req->arena, h->hdrs[i].name, strlen(h->hdrs[i].name));
        hv[i].value =
            arena_str(&req->arena, h->hdrs[i].value, strlen(h->hdrs[i].value));
        if (hv[i].name == NULL || hv[i].value == NULL) {
            return -1;
        }
    }
    req->headers = hv;
    req->n_headers = h->n_hdrs;
    req->method = arena_str(&req->arena, method, strlen(method));
    req->path = arena_str(&req->arena, url,
                          q != NULL ? (size_t)(q - url) : strlen(url));
    req->query = arena_str(&req->arena, q != NULL ? q + 1 : "",
                           q != NULL ? strlen(q + 1) : 0);
    if (req->method == NULL || req->path == NULL || req->query == NULL) {
        return -1;
    }
    h->head = llhttp_get_method(p) == HTTP_HEAD;
    /* curl and Go clients wait (1 s for curl) for "100 Continue" before
     * sending a body; Go's server sends it when the body is read, we send
     * it at once (the body is always read). */
    for (size_t i = 0; i < h->n_hdrs; i++) {
        if (strcmp(h->hdrs[i].name, "expect") == 0 &&
            strcasecmp(h->hdrs[i].value, "100-continue") == 0 &&
            llhttp_get_http_minor(p) >= 1) {
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            if (write_copy(h, cont, sizeof cont - 1) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http1 *h = from_parser(p);
    if (h->body.len + len > conn_limits(h->c)->max_http_body) {
        h->reject = 413;
        return -1;
    }
    return sbuf_add(&h->body, at, len) == 0 ? 0 : -1;
}

static int on_message_complete(llhttp_t *p)
{
    struct http1 *h = from_parser(p);
    struct router_req *req = h->req;
    if (h->body.len > 0) {
        uint8_t *b = keel_arena_dup(&req->arena, h->body.p, h->body.len);
        if (b == NULL) {
            return -1;
        }
        req->body = b;
        req->body_len = h->body.len;
    }
    h->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
    return HPE_PAUSED; /* dispatched by execute() once llhttp returned */
}

static const llhttp_settings_t h1_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- protocol ---------------------------------------------------------- */

static void answer_error(struct http1 *h, int status)
{
    char buf[256];
    const char *r = reason(status);
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Connection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%d %s",
                     status, r, strlen(r) + 4, status, r);
    (void)write_copy(h, buf, (size_t)n);
}

static int execute(struct http1 *h, const uint8_t *buf, size_t len)
{
    llhttp_errno_t err = llhttp_execute(&h->parser, (const char *)buf, len);
    struct router_req *req;

    if (err == HPE_OK) {
        return 0;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        const uint8_t *pos = (const uint8_t *)llhttp_get_error_pos(&h->parser);
        size_t used = pos != NULL ? (size_t)(pos - buf) : len;
        if (used < len) {
            h->pending = malloc(len - used);
            if (h->pending == NULL) {
                return KEEL_ENOMEM;
            }
            memcpy(h->pending, buf + used, len - used);
            h->pending_len = len - used;
        }
        h->paused = 1;
        /* Keep reading while the request is handled: an EOF must cancel
         * a long-poll (a gateway watch with no events) promptly, as Go's
         * server does with its background read. Pipelined bytes pile up
         * in pending, bounded below. */
        if (h->pending_len > H1_MAX_PENDING) {
            conn_pause_read(h->c);
        }
        req = h->req;
        h->active = 1;
        h->started = 0;
        reset_parse(h);
        router__dispatch(conn_listener(h->c)->router, req, &h1_transport, h);
        return 0;
    }
    /* Malformed request (or one over our limits): answer like Go's
     * net/http and close. */
    answer_error(h, h->reject != 0 ? h->reject : 400);
    if (h->req != NULL) {
        router__req_free(h->req);
        h->req = NULL;
    }
    return KEEL_EINVAL;
}

static int h1_recv(void *p, const uint8_t *buf, size_t len)
{
    struct http1 *h = p;
    if (h->paused) {
        /* Bytes that were already read when we paused: keep them. */
        uint8_t *n = realloc(h->pending, h->pending_len + len);
        if (n == NULL) {
            return KEEL_ENOMEM;
        }
        memcpy(n + h->pending_len, buf, len);
        h->pending = n;
        h->pending_len += len;
        if (h->pending_len > H1_MAX_PENDING) {
            conn_pause_read(h->c); /* a pipelining client far ahead */
        }
        return 0;
    }
    return execute(h, buf, len);
}

static void h1_writable(void *p)
{
    struct http1 *h = p;
    uint8_t *buf;
    size_t len;

    if (!h->paused || h->active || conn_is_closing(h->c)) {
        return;
    }
    if (conn_out_bytes(h->c) > conn_limits(h->c)->out_high_water) {
        /* A pipelining client that does not read its answers: take no
         * new request until the socket drains (conn.c calls us again). */
        return;
    }
    llhttp_resume(&h->parser);
    h->paused = 0;
    buf = h->pending;
    len = h->pending_len;
    h->pending = NULL;
    h->pending_len = 0;
    if (len > 0 && execute(h, buf, len) != 0) {
        conn_close(h->c, 1);
    }
    free(buf);
    if (h->pending_len <= H1_MAX_PENDING) {
        conn_resume_read(h->c);
    }
}

static void h1_destroy(void *p)
{
    struct http1 *h = p;
    if (h->req != NULL) {
        if (h->active) {
            router__req_detach(h->req);
        } else {
            router__req_free(h->req);
        }
    }
    reset_parse(h);
    sbuf_free(&h->url);
    sbuf_free(&h->field);
    sbuf_free(&h->value);
    sbuf_free(&h->body);
    free(h->pending);
    free(h);
}

static void h1_shutdown(void *p)
{
    struct http1 *h = p;
    if (!h->active) {
        conn_close(h->c, 1); /* idle, or between pipelined requests */
        return;
    }
    /* Answer the current request, with "Connection: close" if the head
     * is not out yet, then close (t_release). */
    h->keep_alive = 0;
}

static const struct conn_proto http1_proto = {
    h1_recv, h1_writable, h1_destroy, h1_shutdown, NULL,
};

int http1__attach(struct conn *c, const struct conn_proto **ops, void **state)
{
    struct http1 *h = calloc(1, sizeof *h);
    if (h == NULL) {
        return KEEL_ENOMEM;
    }
    h->c = c;
    llhttp_init(&h->parser, HTTP_REQUEST, &h1_settings);
    h->parser.data = h;
    *ops = &http1_proto;
    *state = h;
    return 0;
}
