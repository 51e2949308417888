/*
 * gRPC-over-HTTP/2 wire helpers shared by libkeel's transport (client.c) and
 * its unit tests. No I/O here: these functions turn bytes and header values
 * into messages and statuses, so every framing corner (a message split over
 * many DATA frames, several messages in one frame, trailers-only responses,
 * percent-encoded grpc-message) is testable without a socket.
 *
 * Wire format (grpc/doc/PROTOCOL-HTTP2.md): each message is a 5-byte prefix
 * (1 byte compressed flag, 4 bytes big-endian length) and the payload. The
 * status arrives in the trailers (grpc-status, grpc-message), or in the only
 * HEADERS frame of a "trailers-only" response.
 */
#ifndef KEEL_GRPC_WIRE_H
#define KEEL_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* Largest message we accept from a server: etcd's client default
 * MaxCallRecvMsgSize is math.MaxInt32; we cap lower to keep a bad peer from
 * making us allocate without bound. */
#define KEEL_GRPC_MAX_MSG (512u * 1024u * 1024u)

/* Reassembles length-prefixed messages from arbitrary chunks. */
struct grpc_decoder
{
    uint8_t *buf; /* owned, malloc */
    size_t len;   /* bytes held */
    size_t off;   /* start of the first undelivered byte */
    size_t cap;
};

void grpc_decoder_init(struct grpc_decoder *d);
void grpc_decoder_free(struct grpc_decoder *d);

/* Append a chunk. 0, or -ENOMEM. */
int grpc_decoder_feed(struct grpc_decoder *d, const uint8_t *data, size_t len);

/* Next complete message: 1 and (*msg, *len) pointing into the decoder (valid
 * until the next feed/next/free call), 0 when more bytes are needed, or a
 * negative error: KEEL_EUNIMPLEMENTED for a compressed message (we never
 * negotiate compression), KEEL_ETOOBIG over KEEL_GRPC_MAX_MSG. */
int grpc_decoder_next(struct grpc_decoder *d, const uint8_t **msg,
                      size_t *len);

/* Bytes received but not yet forming a complete message (a stream that ends
 * with a non-zero remainder is a protocol error). */
size_t grpc_decoder_pending(const struct grpc_decoder *d);

/* Write the 5-byte prefix for an uncompressed message of len bytes. */
void grpc_frame_prefix(uint8_t out[5], uint32_t len);

/* Percent-decode a grpc-message value (%XX -> byte; a malformed escape is
 * kept verbatim, as grpc-go does). out must hold strlen(in)+1 bytes. */
void grpc_percent_decode(const char *in, size_t len, char *out);

/* Format a grpc-timeout header value for ms milliseconds ("1500m", or in
 * seconds/hours units when ms needs more than 8 digits). out >= 12 bytes. */
void grpc_timeout_format(uint64_t ms, char *out);

/* Response status being assembled from (trailing) headers. */
struct grpc_status
{
    int http_status;  /* :status, 0 if not seen */
    int grpc_status;  /* -1 if not seen */
    char *message;    /* percent-decoded grpc-message, malloc; NULL if none */
    int content_type_ok; /* content-type starts with application/grpc */
};

void grpc_status_init(struct grpc_status *s);
void grpc_status_free(struct grpc_status *s);

/* Record one header. 0, or -ENOMEM. */
int grpc_status_header(struct grpc_status *s, const char *name,
                       size_t namelen, const char *value, size_t valuelen);

/* The final gRPC code of a finished stream: grpc-status when present;
 * otherwise derived from the HTTP status as the gRPC spec says
 * (http-grpc-status-mapping.md); UNKNOWN when neither tells. */
int grpc_status_code(const struct grpc_status *s);

/* Map an HTTP status to a gRPC code (gRPC's http-grpc-status-mapping). */
int grpc_code_from_http(int http_status);

/* Canonical name of a gRPC code ("OutOfRange"), as grpc-go prints it. */
const char *grpc_code_name(int code);

#endif /* KEEL_GRPC_WIRE_H */
