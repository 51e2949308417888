/*
 * JSON <-> protobuf-c conversion for the v3 JSON gateway, driven only by
 * protobuf-c descriptors (no per-message code).
 *
 * The mapping is the one etcd 3.4's grpc-gateway applies (golang/protobuf
 * jsonpb with OrigName: true, EmitDefaults: false, AllowUnknownFields: true):
 *
 *   output  field names as in the .proto (snake_case, "ID", "TTL", ...), in
 *           field-number order; proto3 zero values, empty repeated fields
 *           and unset messages omitted; oneof members printed when set even
 *           if zero; 64-bit integers as decimal strings, 32-bit ones as
 *           numbers; bytes as padded standard base64; enums by name (by
 *           number when the value has no name); strings escaped as Go's
 *           encoding/json does (<, >, & as \u003c.., U+2028/9, invalid
 *           UTF-8 as \ufffd).
 *   input   both the original and the lowerCamel name of each field (the
 *           camel one wins when both appear; a repeated key: the last wins);
 *           unknown fields ignored; null means "not set"; integers as
 *           numbers or strings; enums as names or numbers; bytes as standard
 *           or URL-safe base64, padded or not (etcd 3.4 only takes padded
 *           standard base64; keel is more lenient, as protojson is).
 *
 * Errors carry the text etcd's gateway sends for the same input (Go's
 * encoding/json and jsonpb messages, e.g. "unexpected EOF", "invalid
 * character 'x' looking for beginning of value", "json: cannot unmarshal
 * string into Go value of type int64", "illegal base64 data at input byte
 * 4", "unknown value \"NOPE\" for enum etcdserverpb.RangeRequest_SortOrder")
 * so that clients and tests matching on them keep working.
 *
 * Known differences from etcd 3.4.23 (everything else was compared byte for
 * byte, see tests/server_json_pb/testdata):
 *   - unpadded and URL-safe base64 are accepted (etcd: "illegal base64
 *     data at input byte N");
 *   - messages nested deeper than JSON_PB_MAX_DEPTH are refused (Go's limit
 *     of 10000 still applies to everything else);
 *   - when an error quotes a rune outside Latin-1, keel prints it as it is,
 *     where Go's strconv would escape the few non-printable ones;
 *   - float/double follow Go's format rules but are not proven identical
 *     (etcd's API has no floating-point fields);
 *   - proto3 map fields are not supported (etcd's API has none).
 */
#ifndef KEEL_JSON_PB_H
#define KEEL_JSON_PB_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "keel_arena.h"

/* Deepest nesting of *messages* accepted (each message object and repeated
 * array counts one; e.g. a Txn inside a Txn is 3 deeper). Values that are
 * not messages (unknown fields, type errors) may nest to Go's own limit of
 * 10000, as in etcd; only message nesting recurses, hence this bound. */
#define JSON_PB_MAX_DEPTH 512

/*
 * Decode the first JSON value in [json, json+len) as a message of type d, as
 * a unary gateway request body. Everything (the message, its strings,
 * bytes, arrays and sub-messages, and scratch space) is allocated in arena
 * `a` and lives as long as the arena; *out is initialised with d's
 * message_init, so unset fields hold their protobuf-c defaults.
 *
 * As etcd's gateway (a Go json.Decoder reading one value): an empty or
 * all-whitespace body, or "null", gives an empty message; bytes after the
 * first value are ignored.
 *
 * Returns 0, KEEL_EINVAL (bad JSON or a value of the wrong type; err holds
 * etcd's message, NUL-terminated and truncated to errlen) or KEEL_ENOMEM.
 * err may be NULL when errlen is 0.
 */
int json_pb_decode(const ProtobufCMessageDescriptor *d, const char *json,
                   size_t len, struct keel_arena *a, ProtobufCMessage **out,
                   char *err, size_t errlen);

/*
 * Decode the next JSON value of a streamed request body (watch, lease
 * keepalive: one JSON object after another). On success *consumed is the
 * number of bytes used up, including whitespace before the value, and *out
 * the message. When the buffer holds only whitespace, or a value that is not
 * complete yet:
 *   final == false -> -EAGAIN (*consumed = 0): call again with more bytes;
 *   final == true  -> whitespace only: 0 with *out = NULL (end of stream);
 *                     a truncated value: KEEL_EINVAL "unexpected EOF".
 * Other errors as json_pb_decode().
 */
int json_pb_decode_next(const ProtobufCMessageDescriptor *d, const char *json,
                        size_t len, bool final, struct keel_arena *a,
                        ProtobufCMessage **out, size_t *consumed, char *err,
                        size_t errlen);

/* A growable output buffer (malloc'd; data is NUL-terminated when len > 0
 * or after any successful append). The owner frees data with free(). */
struct json_pb_buf
{
    char *data;
    size_t len;
    size_t cap;
    int oom; /* sticky: an append failed */
};

/* Append m's JSON form to b. Returns 0 or KEEL_ENOMEM. */
int json_pb_encode_append(const ProtobufCMessage *m, struct json_pb_buf *b);

/* Append s[0..n) as a JSON string literal, escaped as Go's encoding/json
 * does (with its HTML-safe escapes). Returns 0 or KEEL_ENOMEM. */
int json_pb_append_string(struct json_pb_buf *b, const char *s, size_t n);

/* Append raw bytes. Returns 0 or KEEL_ENOMEM. */
int json_pb_append_raw(struct json_pb_buf *b, const char *s, size_t n);

/*
 * m as a JSON document, exactly as etcd's gateway prints it (no trailing
 * newline). Returns a malloc'd NUL-terminated string the caller frees with
 * free(), its length in *len (len may be NULL); NULL when out of memory.
 */
char *json_pb_encode(const ProtobufCMessage *m, size_t *len);

/*
 * One line of a streamed response as the gateway writes it:
 * {"result":<m>} followed by "\n". Ownership as json_pb_encode().
 */
char *json_pb_encode_stream_result(const ProtobufCMessage *m, size_t *len);

/* The Go type name of an enum as jsonpb names it in errors
 * ("etcdserverpb.RangeRequest_SortOrder"), written into buf (NUL-terminated,
 * truncated to n). Returns buf. */
char *json_pb_go_enum_name(const ProtobufCEnumDescriptor *e, char *buf,
                           size_t n);

#endif /* KEEL_JSON_PB_H */
