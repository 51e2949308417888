/*
 * The v3 JSON gateway's route table and error mapping, as etcd 3.4 serves
 * them (grpc-gateway v1 registered in embed/serve.go; paths from the
 * google.api.http options of etcdserverpb/rpc.proto, v3lock.proto and
 * v3election.proto).
 *
 * Paths: every route is served under /v3/; etcd 3.4 also rewrites a
 * /v3beta/ prefix to /v3/ before routing (embed/serve.go accessController).
 * /v3alpha/ is not served by 3.4 (Go's "404 page not found").
 * Only POST reaches a handler; another method on a known path gets
 * 405 "Method Not Allowed\n", an unknown path under /v3/ 404 "Not Found\n"
 * (both text/plain, from Go's http.Error).
 *
 * Two RPCs share /v3/maintenance/hash (Hash and HashKV); grpc-gateway v1
 * takes the first registered, Hash, so HashKV has no reachable route (checked
 * against etcd 3.4.23: the hash printed is Hash's). The table keeps HashKV
 * for completeness; gateway_route_match() never returns it.
 *
 * What etcd 3.4.23 sends around these bodies (for the HTTP layer; every
 * answer also carries the CORS headers Access-Control-Allow-Origin: *,
 * -Methods: POST, GET, OPTIONS, PUT, DELETE, -Headers: accept,
 * content-type, authorization):
 *   success         200, Content-Type: application/json,
 *                   Grpc-Metadata-Content-Type: application/grpc
 *   server error    gateway_http_status(code), application/json, chunked,
 *                   "Trailer: Grpc-Trailer-Content-Type" and the trailer
 *                   "Grpc-Trailer-Content-Type: application/grpc"
 *   decode error    400 (500 for bidi streams), application/json, no
 *                   Grpc-* headers
 *   streams         200, chunked, application/json, one
 *                   json_pb_encode_stream_result() line per message
 *   OPTIONS         200, empty body (CORS preflight)
 * and what grpc-gateway (runtime/context.go, mux.go) passes to the RPC:
 *   Authorization: <token>   -> metadata "authorization" (the raw token from
 *                               /v3/auth/authenticate; "Bearer <t>" gets
 *                               401 "etcdserver: invalid auth token")
 *   Grpc-Metadata-<k>: v     -> metadata "<k>" (so Grpc-Metadata-Token: <t>
 *                               authenticates too: etcd reads "token")
 * (all three checked against etcd 3.4.23)
 *   Grpc-Timeout             -> the call's deadline
 * and back: response header metadata <k> as "Grpc-Metadata-<k>", trailer
 * metadata as "Grpc-Trailer-<k>" (hence the Content-Type ones above).
 */
#ifndef KEEL_GATEWAY_ROUTES_H
#define KEEL_GATEWAY_ROUTES_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "keel_arena.h"
#include "keel_err.h"

enum gateway_kind {
    GATEWAY_UNARY,         /* one JSON request body -> one JSON response */
    GATEWAY_SERVER_STREAM, /* one request -> {"result":...} lines */
    GATEWAY_BIDI_STREAM,   /* JSON values one after another in the body ->
                              {"result":...} lines */
};

struct gateway_route
{
    const char *path;        /* "/v3/kv/range" */
    const char *grpc_method; /* "/etcdserverpb.KV/Range" */
    const ProtobufCServiceDescriptor *service;
    const char *method_name; /* "Range", as in the service descriptor */
    const ProtobufCMessageDescriptor *request;
    const ProtobufCMessageDescriptor *response;
    enum gateway_kind kind;
};

/* Every route, in etcd's registration order (first match wins). */
extern const struct gateway_route gateway_routes[];
extern const size_t gateway_routes_count;

enum gateway_match {
    GATEWAY_FOUND = 0,
    GATEWAY_NOT_GATEWAY,        /* not under /v3/ or /v3beta/: not ours */
    GATEWAY_NOT_FOUND,          /* under /v3/ but no route: 404 */
    GATEWAY_METHOD_NOT_ALLOWED, /* a route, but the method is not POST: 405 */
};

/*
 * Route an HTTP request. path is the URL path (no query string), method the
 * HTTP method ("POST"). On GATEWAY_FOUND *route is set. For the two error
 * results, gateway_plain_error() gives the status and body etcd sends.
 */
enum gateway_match gateway_route_match(const char *method, const char *path,
                                       size_t path_len,
                                       const struct gateway_route **route);

/* Status and text/plain body for GATEWAY_NOT_FOUND / METHOD_NOT_ALLOWED
 * ("Not Found\n" 404, "Method Not Allowed\n" 405). */
const char *gateway_plain_error(enum gateway_match m, int *http_status);

/* grpc-gateway's runtime.HTTPStatusFromCode. */
int gateway_http_status(enum keel_grpc_code code);

/* Go's http.StatusText for the statuses above ("Bad Request", ...). */
const char *gateway_http_status_text(int http_status);

/*
 * The JSON body of a failed gateway call, as etcd 3.4 sends it:
 * {"error":"<msg>","message":"<msg>","code":<grpc code>}
 * (sent with gateway_http_status(code)). Returns a malloc'd NUL-terminated
 * string (caller frees), its length in *len; NULL when out of memory.
 */
char *gateway_error_body(enum keel_grpc_code code, const char *msg,
                         size_t *len);

/* The same for a keel return code (KEEL_E* or -errno): its gRPC code and
 * keel_strerror() text. *http_status gets the status to send. */
char *gateway_error_body_rv(int rv, int *http_status, size_t *len);

/*
 * An error in the middle of a streamed response (after the first
 * {"result":...} line was sent), as grpc-gateway's streamChunk writes it:
 * {"error":{"grpc_code":N,"http_code":H,"message":"...","http_status":"..."}}
 * (zero/empty members omitted, as jsonpb does). No trailing newline, as
 * etcd writes none after it. Ownership as gateway_error_body().
 */
char *gateway_stream_error_chunk(enum keel_grpc_code code, const char *msg,
                                 size_t *len);

/*
 * The gRPC code etcd's gateway reports when it cannot decode a request
 * body: InvalidArgument (400) for unary and server-streaming routes; for
 * bidi streams (watch, keepalive) the first message's decode error is not a
 * gRPC status, so it becomes Unknown (HTTP 500) -- checked against etcd
 * 3.4.23. (Later messages of a bidi
 * stream that fail to decode just end the request side of the stream.)
 */
enum keel_grpc_code gateway_decode_error_code(const struct gateway_route *r);

/*
 * Decode the request body of a unary or server-streaming route (for bidi
 * routes, use json_pb_decode_next() per message, and for the first one
 * gateway_decode_error_code()). The message lives in arena a.
 * Returns 0, or KEEL_EINVAL / KEEL_ENOMEM with *http_status set and
 * *err_body a malloc'd error body (caller frees) exactly as etcd answers
 * that body, e.g. 400 {"error":"unexpected EOF",...,"code":3}.
 */
int gateway_decode_request(const struct gateway_route *r, const char *body,
                           size_t len, struct keel_arena *a,
                           ProtobufCMessage **out, int *http_status,
                           char **err_body, size_t *err_len);

#endif /* KEEL_GATEWAY_ROUTES_H */
