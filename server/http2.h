/*
 * HTTP/2 server side of a client connection (nghttp2), internal to the
 * transport: grpc.c and the router adapter use the http2__stream_* calls.
 *
 * A stream is one request/response exchange. When its request headers are
 * complete, http2.c dispatches it: content-type application/grpc* goes to
 * grpc__stream_begin(), anything else to the HTTP router. The receiver then
 * installs a struct http2_stream_handler to get the request body and the
 * stream's end, and answers with http2__stream_respond / _reserve / _write /
 * _end.
 *
 * A stream pointer stays valid until the handler's closed() callback has
 * run; after it nothing may be called on the stream.
 */
#ifndef KEEL_HTTP2_H
#define KEEL_HTTP2_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"

struct http2_stream;
struct router_header;

struct http2_stream_handler
{
    /* Request body bytes. */
    void (*data)(void *u, const uint8_t *p, size_t n);
    /* The client ended its side (END_STREAM). */
    void (*end)(void *u);
    /* Outbound queue of the stream is empty again after being non-empty. */
    void (*drained)(void *u);
    /* The stream is closed (error_code: the HTTP/2 error code, 0 after a
     * normal end) or the connection is gone (error_code
     * NGHTTP2_CANCEL). Last callback; the stream is freed right after. */
    void (*closed)(void *u, uint32_t error_code);
};

/* Install the protocol on a connection whose first bytes were the preface
 * (conn.c). */
int http2__attach(struct conn *c, const struct conn_proto **ops, void **state);

void http2__stream_set_handler(struct http2_stream *st,
                               const struct http2_stream_handler *h,
                               void *u);

/* Response head. headers[] are (name, value) pairs, names lower case.
 * end_stream: no body and no trailers follow (a "trailers-only" gRPC
 * answer, a bodiless HTTP answer). Returns 0 or a negative code. */
int http2__stream_respond(struct http2_stream *st,
                          const struct router_header *headers,
                          size_t n,
                          int end_stream);

/* Append n body bytes to the stream's queue and return where to write them
 * (valid until http2__stream_commit(), which must follow before anything
 * else is called on this connection), or NULL when the stream
 * is gone or the connection is over conn_limits.max_buffered (then the
 * connection is being closed as a slow consumer). */
uint8_t *http2__stream_reserve(struct http2_stream *st, size_t n);

/* Copying version of reserve. Returns 0 or KEEL_ECANCELED. */
int http2__stream_write(struct http2_stream *st, const void *p, size_t n);

/* No more body; trailers (may be NULL) are sent after the queued bytes and
 * end the stream. If the client is still sending, its side is reset with
 * NO_ERROR once our side ended (RFC 9113 §8.1). */
int http2__stream_end(struct http2_stream *st,
                      const struct router_header *trailers,
                      size_t n);

/* Release n body bytes the receiver was holding (delivered through
 * data()): they leave the flow-control windows so the client may send
 * more. A receiver that keeps partial data (an incomplete gRPC message)
 * releases it when done; until then the client is throttled. */
void http2__stream_consume(struct http2_stream *st, size_t n);
/* Bytes delivered and not yet released. */
size_t http2__stream_held(const struct http2_stream *st);

/* Reset the stream with an HTTP/2 error code. */
void http2__stream_reset(struct http2_stream *st, uint32_t error_code);

/* Bytes queued on the stream and not yet framed. */
size_t http2__stream_buffered(const struct http2_stream *st);

/* The connection of a stream. */
struct conn *http2__stream_conn(const struct http2_stream *st);

/* The bytes of the last reserve are written: send them (now, or when the
 * nghttp2 callback we are in returns). */
void http2__stream_commit(struct http2_stream *st);

#endif /* KEEL_HTTP2_H */
