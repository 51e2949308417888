/*
 * HTTP/1.1 on a client connection (llhttp), internal to the transport: every
 * request goes to the HTTP router. Keep-alive, pipelining (one request at a
 * time: the parser pauses until the response ends), bodies up to
 * conn_limits.max_http_body, chunked streamed responses.
 */
#ifndef KEEL_HTTP1_H
#define KEEL_HTTP1_H

#include "conn.h"

/* Install the protocol on a connection whose first bytes were not the
 * HTTP/2 preface (conn.c). */
int http1__attach(struct conn *c, const struct conn_proto **ops, void **state);

#endif /* KEEL_HTTP1_H */
