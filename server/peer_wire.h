/*
 * The peer port's wire format (keel's own protocol, version 1). Pure
 * encoding/decoding, no I/O, so it is fuzzed on its own.
 *
 * Every connection carries frames:
 *
 *     [u32 length, big endian][u8 type][length bytes of payload]
 *
 * The dialer's first frame is HELLO; the acceptor answers HELLO_OK or
 * ERROR (then closes). What follows depends on HELLO's kind:
 *
 *   STREAM        dialer → acceptor: MSG*, REQUEST*, PING*, interleaved
 *                 acceptor → dialer: RESPONSE* (to the REQUESTs, any order),
 *                                    a PONG for each PING
 *   SNAPSHOT      dialer → acceptor: SNAP_HEADER SNAP_CHUNK* SNAP_TRAILER
 *                 acceptor → dialer: SNAP_ACK, or ERROR
 *   CLUSTER_INFO  acceptor → dialer: CLUSTER_INFO (bytes), or ERROR
 *
 * Payloads (all integers big endian):
 *   HELLO        u32 magic "KEEL", u16 version, u8 kind, u8 0,
 *                u64 cluster_id, u64 from_id, u64 to_id   (32 bytes; longer
 *                payloads are accepted and the tail ignored, so a later
 *                version can add fields)
 *   HELLO_OK     u16 version, u16 0, u32 0, u64 cluster_id, u64 member_id
 *   ERROR        u16 code (enum peer_wire_err), then a UTF-8 reason
 *   MSG          the message
 *   SNAP_HEADER  u64 image size, then the message
 *   SNAP_CHUNK   image bytes
 *   SNAP_TRAILER u64 image size, 32 bytes sha256 of the image
 *   SNAP_ACK     empty
 *   PING, PONG   empty (liveness of an otherwise idle stream)
 *   CLUSTER_INFO the answering member's bytes
 *   REQUEST      u64 call id, u32 method, then the request body
 *   RESPONSE     u64 call id, i32 status (0 or a negative keel code), then
 *                the response body
 *
 * Checklist: a change to any payload layout bumps PEER_WIRE_VERSION.
 */
#ifndef KEEL_PEER_WIRE_H
#define KEEL_PEER_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define PEER_WIRE_MAGIC 0x4b45454cu /* "KEEL" */
#define PEER_WIRE_VERSION 1
#define PEER_WIRE_HEADER 5 /* u32 length + u8 type */
#define PEER_WIRE_HELLO_LEN 32
#define PEER_WIRE_HELLO_OK_LEN 24
#define PEER_WIRE_SHA256_LEN 32
#define PEER_WIRE_TRAILER_LEN (8 + PEER_WIRE_SHA256_LEN)

enum peer_wire_type {
    PEER_WIRE_HELLO = 1,
    PEER_WIRE_HELLO_OK = 2,
    PEER_WIRE_ERROR = 3,
    PEER_WIRE_MSG = 4,
    PEER_WIRE_SNAP_HEADER = 5,
    PEER_WIRE_SNAP_CHUNK = 6,
    PEER_WIRE_SNAP_TRAILER = 7,
    PEER_WIRE_SNAP_ACK = 8,
    PEER_WIRE_CLUSTER_INFO = 9,
    PEER_WIRE_REQUEST = 10,
    PEER_WIRE_RESPONSE = 11,
    PEER_WIRE_PING = 12,
    PEER_WIRE_PONG = 13,
};
#define PEER_WIRE_TYPE_MAX PEER_WIRE_PONG
#define PEER_WIRE_CALL_HEADER 12 /* u64 id + u32 method / i32 status */

enum peer_wire_kind {
    PEER_WIRE_KIND_STREAM = 1,
    PEER_WIRE_KIND_SNAPSHOT = 2,
    PEER_WIRE_KIND_CLUSTER_INFO = 3,
};

/* ERROR codes. */
enum peer_wire_err {
    PEER_WIRE_ERR_VERSION = 1, /* unsupported protocol version */
    PEER_WIRE_ERR_CLUSTER_MISMATCH = 2,
    PEER_WIRE_ERR_WRONG_MEMBER = 3,   /* to_id is not the acceptor */
    PEER_WIRE_ERR_UNKNOWN_MEMBER = 4, /* from_id is not a known member */
    PEER_WIRE_ERR_REMOVED = 5,        /* from_id was removed */
    PEER_WIRE_ERR_NOT_READY = 6,      /* acceptor has no cluster id yet */
    PEER_WIRE_ERR_PROTOCOL = 7,       /* bad frame */
    PEER_WIRE_ERR_SNAPSHOT = 8,       /* snapshot rejected */
    PEER_WIRE_ERR_UNAVAILABLE = 9,    /* no cluster info here */
};

struct peer_wire_hello
{
    uint16_t version;
    uint8_t kind;
    uint64_t cluster_id;
    uint64_t from_id;
    uint64_t to_id;
};

/* Decode one frame at the start of buf[0..len). Returns the bytes it spans
 * (header + payload) and sets *type, *payload, *plen; 0 if buf holds only
 * part of it (*need, if not NULL, gets the full frame size when the header
 * is complete, else PEER_WIRE_HEADER); -1 if the length exceeds max_payload
 * or the type is unknown. */
long peer_wire_decode(const uint8_t *buf,
                      size_t len,
                      size_t max_payload,
                      uint8_t *type,
                      const uint8_t **payload,
                      size_t *plen,
                      size_t *need);

/* Write a frame header for a payload of plen bytes into out[5]. */
void peer_wire_header(uint8_t *out, uint8_t type, size_t plen);

/* HELLO payload into out[PEER_WIRE_HELLO_LEN]. */
void peer_wire_hello_encode(uint8_t *out, const struct peer_wire_hello *h);
/* 0, or -1 if short or the magic is wrong (version is not checked). */
int peer_wire_hello_decode(const uint8_t *p,
                           size_t len,
                           struct peer_wire_hello *h);

/* HELLO_OK payload into out[PEER_WIRE_HELLO_OK_LEN]; decode: 0 or -1. */
void peer_wire_hello_ok_encode(uint8_t *out,
                               uint64_t cluster_id,
                               uint64_t member_id);
int peer_wire_hello_ok_decode(const uint8_t *p,
                              size_t len,
                              uint16_t *version,
                              uint64_t *cluster_id,
                              uint64_t *member_id);

/* ERROR decode: 0 and code plus the reason (not NUL-terminated), or -1. */
int peer_wire_error_decode(const uint8_t *p,
                           size_t len,
                           uint16_t *code,
                           const char **reason,
                           size_t *reason_len);

/* SNAP_HEADER decode: 0 and the image size plus the message, or -1. */
int peer_wire_snap_header_decode(const uint8_t *p,
                                 size_t len,
                                 uint64_t *size,
                                 const uint8_t **msg,
                                 size_t *msg_len);

/* SNAP_TRAILER decode: 0 and size plus digest (pointer into p), or -1. */
int peer_wire_snap_trailer_decode(const uint8_t *p,
                                  size_t len,
                                  uint64_t *size,
                                  const uint8_t **sha256);

/* REQUEST / RESPONSE decode: 0 and id, method or status (as u32; the
 * status is its two's complement), body pointer into p; or -1 if short. */
int peer_wire_call_decode(const uint8_t *p,
                          size_t len,
                          uint64_t *id,
                          uint32_t *word,
                          const uint8_t **body,
                          size_t *body_len);

void peer_wire_put_u16(uint8_t *p, uint16_t v);
void peer_wire_put_u32(uint8_t *p, uint32_t v);
void peer_wire_put_u64(uint8_t *p, uint64_t v);
uint16_t peer_wire_get_u16(const uint8_t *p);
uint32_t peer_wire_get_u32(const uint8_t *p);
uint64_t peer_wire_get_u64(const uint8_t *p);

#endif /* KEEL_PEER_WIRE_H */
