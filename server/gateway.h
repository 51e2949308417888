/*
 * The v3 JSON gateway on the client port: /v3/... and /v3beta/... HTTP
 * requests answered by the gRPC handlers registered in the server's
 * grpc_server, called in process (grpc_server_call_local), with etcd 3.4's
 * JSON mapping (json_pb), route table and error bodies (gateway_routes).
 *
 * Unary routes: one JSON body in, one JSON document out. Streaming routes
 * (watch, lease keepalive, snapshot, election observe): the request body
 * holds one JSON value per message; every response message is written as
 * one chunked line {"result":{...}}\n as soon as the handler sends it.
 *
 * The declaration of gateway_register() is in server.h next to the other
 * registration functions; this header holds only what tests may need.
 */
#ifndef KEEL_GATEWAY_H
#define KEEL_GATEWAY_H

#include <stddef.h>

/*
 * Go's ServeMux path cleaning (net/http cleanPath): path.Clean plus a kept
 * trailing slash. Writes the cleaned form of path[0..len) into out
 * (NUL-terminated; out must hold len + 2 bytes) and returns its length.
 * etcd's mux answers 301 to the cleaned path when it differs.
 */
size_t gateway_clean_path(const char *path, size_t len, char *out);

#endif /* KEEL_GATEWAY_H */
