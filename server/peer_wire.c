/*
 * Peer wire format: frame and payload codecs (see peer_wire.h for the
 * layout). Every decoder checks lengths before reading and never reads past
 * len; they are the only code that interprets bytes from the peer port, and
 * tests/server_peer/fuzz_peer_wire.c fuzzes them.
 */
#include "peer_wire.h"

#include <string.h>

void peer_wire_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void peer_wire_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

void peer_wire_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint16_t peer_wire_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

uint32_t peer_wire_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
           p[3];
}

uint64_t peer_wire_get_u64(const uint8_t *p)
{
    return (uint64_t)peer_wire_get_u32(p) << 32 | peer_wire_get_u32(p + 4);
}

long peer_wire_decode(const uint8_t *buf,
                      size_t len,
                      size_t max_payload,
                      uint8_t *type,
                      const uint8_t **payload,
                      size_t *plen,
                      size_t *need)
{
    uint32_t n;

    if (need != NULL) {
        *need = PEER_WIRE_HEADER;
    }
    /* An oversized length or an unknown type is refused as soon as its
     * bytes are in, not after waiting for a payload that may never come. */
    if (len < 4) {
        return 0;
    }
    n = peer_wire_get_u32(buf);
    if (n > max_payload || n > (uint32_t)0x7fffffff) {
        return -1;
    }
    if (len < PEER_WIRE_HEADER) {
        return 0;
    }
    if (buf[4] < PEER_WIRE_HELLO || buf[4] > PEER_WIRE_TYPE_MAX) {
        return -1;
    }
    if (need != NULL) {
        *need = PEER_WIRE_HEADER + (size_t)n;
    }
    if (len - PEER_WIRE_HEADER < n) {
        return 0;
    }
    *type = buf[4];
    *payload = buf + PEER_WIRE_HEADER;
    *plen = n;
    return (long)(PEER_WIRE_HEADER + (size_t)n);
}

void peer_wire_header(uint8_t *out, uint8_t type, size_t plen)
{
    peer_wire_put_u32(out, (uint32_t)plen);
    out[4] = type;
}

void peer_wire_hello_encode(uint8_t *out, const struct peer_wire_hello *h)
{
    peer_wire_put_u32(out, PEER_WIRE_MAGIC);
    peer_wire_put_u16(out + 4, h->version);
    out[6] = h->kind;
    out[7] = 0;
    peer_wire_put_u64(out + 8, h->cluster_id);
    peer_wire_put_u64(out + 16, h->from_id);
    peer_wire_put_u64(out + 24, h->to_id);
}

int peer_wire_hello_decode(const uint8_t *p,
                           size_t len,
                           struct peer_wire_hello *h)
{
    if (len < PEER_WIRE_HELLO_LEN || peer_wire_get_u32(p) != PEER_WIRE_MAGIC) {
        return -1;
    }
    h->version = peer_wire_get_u16(p + 4);
    h->kind = p[6];
    h->cluster_id = peer_wire_get_u64(p + 8);
    h->from_id = peer_wire_get_u64(p + 16);
    h->to_id = peer_wire_get_u64(p + 24);
    return 0;
}

void peer_wire_hello_ok_encode(uint8_t *out,
                               uint64_t cluster_id,
                               uint64_t member_id)
{
    memset(out, 0, PEER_WIRE_HELLO_OK_LEN);
    peer_wire_put_u16(out, PEER_WIRE_VERSION);
    peer_wire_put_u64(out + 8, cluster_id);
    peer_wire_put_u64(out + 16, member_id);
}

int peer_wire_hello_ok_decode(const uint8_t *p,
                              size_t len,
                              uint16_t *version,
                              uint64_t *cluster_id,
                              uint64_t *member_id)
{
    if (len < PEER_WIRE_HELLO_OK_LEN) {
        return -1;
    }
    *version = peer_wire_get_u16(p);
    *cluster_id = peer_wire_get_u64(p + 8);
    *member_id = peer_wire_get_u64(p + 16);
    return 0;
}

int peer_wire_error_decode(const uint8_t *p,
                           size_t len,
                           uint16_t *code,
                           const char **reason,
                           size_t *reason_len)
{
    if (len < 2) {
        return -1;
    }
    *code = peer_wire_get_u16(p);
    *reason = (const char *)p + 2;
    *reason_len = len - 2;
    return 0;
}

int peer_wire_snap_header_decode(const uint8_t *p,
                                 size_t len,
                                 uint64_t *size,
                                 const uint8_t **msg,
                                 size_t *msg_len)
{
    if (len < 8) {
        return -1;
    }
    *size = peer_wire_get_u64(p);
    *msg = p + 8;
    *msg_len = len - 8;
    return 0;
}

int peer_wire_snap_trailer_decode(const uint8_t *p,
                                  size_t len,
                                  uint64_t *size,
                                  const uint8_t **sha256)
{
    if (len != PEER_WIRE_TRAILER_LEN) {
        return -1;
    }
    *size = peer_wire_get_u64(p);
    *sha256 = p + 8;
    return 0;
}

int peer_wire_call_decode(const uint8_t *p,
                          size_t len,
                          uint64_t *id,
                          uint32_t *word,
                          const uint8_t **body,
                          size_t *body_len)
{
    if (len < PEER_WIRE_CALL_HEADER) {
        return -1;
    }
    *id = peer_wire_get_u64(p);
    *word = peer_wire_get_u32(p + 8);
    *body = p + PEER_WIRE_CALL_HEADER;
    *body_len = len - PEER_WIRE_CALL_HEADER;
    return 0;
}
