/*
 * Small shared pieces of raft/: the default heap, reference-counted
 * buffers, error strings, message names, and the ConfChange codec.
 *
 * The codec writes raftpb.ConfChange in protobuf wire format by hand (raft/
 * links nothing but libc) so that server/ can read the same bytes with
 * protobuf-c. Decoding is defensive: any truncated varint, bad wire type or
 * length past the end is RAFT_EINVAL, never a crash.
 */
#include <stdlib.h>
#include <string.h>

#include "raft.h"

static void *libc_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return malloc(n);
}

static void *libc_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return realloc(p, n);
}

static void libc_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static const struct raft_heap default_heap = {NULL, libc_malloc, libc_realloc,
                                              libc_free};

const struct raft_heap *raft_heap_default(void)
{
    return &default_heap;
}

struct raft_buf *raft_buf_new(const struct raft_heap *heap,
                              const void *data,
                              size_t len)
{
    struct raft_buf *b;
    if (heap == NULL) {
        heap = &default_heap;
    }
    b = heap->malloc(heap->ctx, sizeof(*b) + len);
    if (b == NULL) {
        return NULL;
    }
    b->heap = heap;
    b->refs = 1;
    b->len = len;
    if (len > 0 && data != NULL) {
        memcpy(b->data, data, len);
    }
    return b;
}

struct raft_buf *raft_buf_ref(struct raft_buf *b)
{
    if (b != NULL) {
        b->refs++;
    }
    return b;
}

void raft_buf_unref(struct raft_buf *b)
{
    if (b != NULL && --b->refs == 0) {
        b->heap->free(b->heap->ctx, b);
    }
}

const char *raft_strerror(int rv)
{
    switch (rv) {
        case 0:
            return "ok";
#define RAFT_ERR_CASE(name, off, msg) \
    case RAFT_E##name:                \
        return msg;
            RAFT_ERR_MAP(RAFT_ERR_CASE)
#undef RAFT_ERR_CASE
        default:
            return "unknown raft error";
    }
}

const char *raft_msg_type_name(int type)
{
    static const char *const names[RAFT_MSG_TYPE_COUNT] = {
        "MsgHup",           "MsgBeat",           "MsgProp",
        "MsgApp",           "MsgAppResp",        "MsgVote",
        "MsgVoteResp",      "MsgSnap",           "MsgHeartbeat",
        "MsgHeartbeatResp", "MsgUnreachable",    "MsgSnapStatus",
        "MsgCheckQuorum",   "MsgTransferLeader", "MsgTimeoutNow",
        "MsgReadIndex",     "MsgReadIndexResp",  "MsgPreVote",
        "MsgPreVoteResp"};
    if (type < 0 || type >= RAFT_MSG_TYPE_COUNT) {
        return "MsgUnknown";
    }
    return names[type];
}

/* ---- ConfChange wire format ---------------------------------------------- */

static size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static int get_varint(const unsigned char *p,
                      size_t len,
                      size_t *pos,
                      uint64_t *v)
{
    uint64_t x = 0;
    unsigned shift = 0;
    while (*pos < len && shift < 64) {
        unsigned char c = p[(*pos)++];
        x |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *v = x;
            return 0;
        }
        shift += 7;
    }
    return RAFT_EINVAL;
}

struct raft_buf *raft_conf_change_encode(const struct raft_heap *heap,
                                         const struct raft_conf_change *cc)
{
    /* 3 varint fields (tag + up to 10 bytes) + context (tag, len, bytes) */
    size_t ctx_len = cc->context != NULL ? cc->context->len : 0;
    unsigned char tmp[64];
    size_t n = 0;
    struct raft_buf *b;

    if (cc->id != 0) {
        tmp[n++] = 1 << 3;
        n += put_varint(tmp + n, cc->id);
    }
    if (cc->type != 0) {
        tmp[n++] = 2 << 3;
        n += put_varint(tmp + n, (uint64_t)cc->type);
    }
    if (cc->node_id != 0) {
        tmp[n++] = 3 << 3;
        n += put_varint(tmp + n, cc->node_id);
    }
    if (ctx_len > 0) {
        tmp[n++] = (4 << 3) | 2;
        n += put_varint(tmp + n, ctx_len);
    }
    b = raft_buf_new(heap, NULL, n + ctx_len);
    if (b == NULL) {
        return NULL;
    }
    memcpy(b->data, tmp, n);
    if (ctx_len > 0) {
        memcpy(b->data + n, cc->context->data, ctx_len);
    }
    return b;
}

int raft_conf_change_decode(const struct raft_heap *heap,
                            const struct raft_buf *b,
                            struct raft_conf_change *cc)
{
    size_t pos = 0;
    memset(cc, 0, sizeof(*cc));
    if (b == NULL) {
        return 0;
    }
    while (pos < b->len) {
        uint64_t key, v;
        int rv = get_varint(b->data, b->len, &pos, &key);
        if (rv != 0) {
            goto err;
        }
        switch (key & 7) {
            case 0:
                if ((rv = get_varint(b->data, b->len, &pos, &v)) != 0) {
                    goto err;
                }
                if ((key >> 3) == 1) {
                    cc->id = v;
                } else if ((key >> 3) == 2) {
                    if (v > RAFT_CONF_ADD_LEARNER_NODE) {
                        goto err;
                    }
                    cc->type = (int)v;
                } else if ((key >> 3) == 3) {
                    cc->node_id = v;
                }
                break;
            case 2:
                if ((rv = get_varint(b->data, b->len, &pos, &v)) != 0 ||
                    v > b->len - pos) {
                    goto err;
                }
                if ((key >> 3) == 4) {
                    raft_buf_unref(cc->context);
                    cc->context = raft_buf_new(heap, b->data + pos, (size_t)v);
                    if (cc->context == NULL) {
                        return RAFT_ENOMEM;
                    }
                }
                pos += (size_t)v;
                break;
            case 1:
                if (b->len - pos < 8) {
                    goto err;
                }
                pos += 8;
                break;
            case 5:
                if (b->len - pos < 4) {
                    goto err;
                }
                pos += 4;
                break;
            default:
                goto err;
        }
    }
    return 0;
err:
    raft_buf_unref(cc->context);
    cc->context = NULL;
    return RAFT_EINVAL;
}
