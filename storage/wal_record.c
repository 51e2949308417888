/*
 * WAL records: encoding, decoding and the replay of a segment held in memory.
 * No I/O here, so the fuzzer (tests/storage_wal/fuzz_wal.c) drives exactly
 * the code recovery runs. The format and the torn-tail rule are described in
 * wal_record.h.
 *
 * Payloads are raftpb protobufs, encoded with protobuf-c (so the bytes are
 * exactly raft.proto's) and decoded by the small decoder below: replay reads
 * every entry of every segment and must not allocate or copy entry data.
 * The decoder follows the protobuf wire rules (unknown fields skipped, last
 * value of a repeated scalar wins) so a newer writer's extra fields are
 * harmless.
 */
#include "wal_record.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "keel_err.h"
#include "raftpb/raft.pb-c.h"

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

size_t wal__rec_finish(uint8_t *dst,
                       uint8_t type,
                       uint8_t flags,
                       uint64_t batch,
                       uint32_t len)
{
    size_t size = wal__rec_size(len);
    put_le32(dst, len);
    dst[4] = type;
    dst[5] = flags;
    dst[6] = 0;
    dst[7] = 0;
    put_le64(dst + 8, batch);
    put_le32(dst + 16, crc32c_value(dst + WAL_REC_HDR, len));
    put_le32(dst + 20, crc32c_value(dst, 20));
    memset(dst + WAL_REC_HDR + len, 0, size - WAL_REC_HDR - len);
    return size;
}

void wal__rec_set_commit(uint8_t *hdr)
{
    hdr[5] |= WAL_REC_F_COMMIT;
    put_le32(hdr + 20, crc32c_value(hdr, 20));
}

int wal__rec_decode(const uint8_t *buf,
                    size_t avail,
                    size_t off,
                    struct wal__rec *rec,
                    const char **why)
{
    const uint8_t *h;
    size_t size;
    uint32_t len;

    if (off > avail || avail - off < WAL_REC_HDR) {
        *why = "truncated record header";
        return KEEL_ECORRUPT;
    }
    h = buf + off;
    if (get_le32(h + 20) != crc32c_value(h, 20)) {
        *why = "record header checksum mismatch";
        return KEEL_ECORRUPT;
    }
    len = get_le32(h);
    if (h[4] < WAL_REC_SEGMENT || h[4] > WAL_REC_SNAPSHOT ||
        (h[5] & ~WAL_REC_F_COMMIT) != 0 || h[6] != 0 || h[7] != 0 ||
        len > WAL_RECORD_MAX) {
        *why = "invalid record header";
        return KEEL_ECORRUPT;
    }
    size = wal__rec_size(len);
    if (avail - off < size) {
        *why = "truncated record";
        return KEEL_ECORRUPT;
    }
    if (get_le32(h + 16) != crc32c_value(h + WAL_REC_HDR, len)) {
        *why = "record data checksum mismatch";
        return KEEL_ECORRUPT;
    }
    for (size_t i = WAL_REC_HDR + len; i < size; i++) {
        if (h[i] != 0) {
            *why = "non-zero record padding";
            return KEEL_ECORRUPT;
        }
    }
    rec->type = h[4];
    rec->flags = h[5];
    rec->batch = get_le64(h + 8);
    rec->len = len;
    rec->payload = h + WAL_REC_HDR;
    return 0;
}

/* Encoders: protobuf-c, for byte-exact raft.proto messages. */

size_t wal__entry_size(const struct wal_entry *e)
{
    Raftpb__Entry m = RAFTPB__ENTRY__INIT;
    m.term = e->term;
    m.index = e->index;
    m.type = (Raftpb__EntryType)e->type;
    m.data.data = (uint8_t *)e->data;
    m.data.len = e->len;
    return raftpb__entry__get_packed_size(&m);
}

size_t wal__entry_encode(const struct wal_entry *e, uint8_t *dst)
{
    Raftpb__Entry m = RAFTPB__ENTRY__INIT;
    m.term = e->term;
    m.index = e->index;
    m.type = (Raftpb__EntryType)e->type;
    m.data.data = (uint8_t *)e->data;
    m.data.len = e->len;
    return raftpb__entry__pack(&m, dst);
}

size_t wal__state_size(const struct wal_hard_state *hs)
{
    Raftpb__HardState m = RAFTPB__HARD_STATE__INIT;
    m.term = hs->term;
    m.vote = hs->vote;
    m.commit = hs->commit;
    return raftpb__hard_state__get_packed_size(&m);
}

size_t wal__state_encode(const struct wal_hard_state *hs, uint8_t *dst)
{
    Raftpb__HardState m = RAFTPB__HARD_STATE__INIT;
    m.term = hs->term;
    m.vote = hs->vote;
    m.commit = hs->commit;
    return raftpb__hard_state__pack(&m, dst);
}

/* The SnapshotMetadata of s, with its ConfState when one is recorded
 * (markers without one stay byte-identical to version 1's). */
static void snapshot_pb(const struct wal_snapshot *s,
                        Raftpb__SnapshotMetadata *m,
                        Raftpb__ConfState *cs)
{
    raftpb__snapshot_metadata__init(m);
    raftpb__conf_state__init(cs);
    m->index = s->index;
    m->term = s->term;
    if (s->conf.n_voters + s->conf.n_learners > 0) {
        cs->voters = (uint64_t *)s->conf.voters;
        cs->n_voters = s->conf.n_voters;
        cs->learners = (uint64_t *)s->conf.learners;
        cs->n_learners = s->conf.n_learners;
        m->conf_state = cs;
    }
}

size_t wal__snapshot_size(const struct wal_snapshot *s)
{
    Raftpb__SnapshotMetadata m;
    Raftpb__ConfState cs;
    snapshot_pb(s, &m, &cs);
    return raftpb__snapshot_metadata__get_packed_size(&m);
}

size_t wal__snapshot_encode(const struct wal_snapshot *s, uint8_t *dst)
{
    Raftpb__SnapshotMetadata m;
    Raftpb__ConfState cs;
    snapshot_pb(s, &m, &cs);
    return raftpb__snapshot_metadata__pack(&m, dst);
}

void wal__seg_hdr_encode(uint64_t seq, uint64_t last_index, uint8_t *dst)
{
    memcpy(dst, WAL_MAGIC, 8); /* includes the NUL */
    put_le32(dst + 8, WAL_VERSION);
    put_le32(dst + 12, 0);
    put_le64(dst + 16, seq);
    put_le64(dst + 24, last_index);
}

/* Protobuf wire decoding: just enough for the three messages above. */

/* A varint of at most max_bytes bytes (10 for values; 5 for tags and
 * lengths, the limits protobuf-c applies, so that whatever we accept
 * protobuf-c reads the same way). */
static int read_varint(const uint8_t **p,
                       const uint8_t *end,
                       uint64_t *v,
                       int max_bytes)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 7 * max_bytes; shift += 7) {
        uint8_t b;
        if (*p == end) {
            return KEEL_ECORRUPT;
        }
        b = *(*p)++;
        if (shift == 63 && b > 1) {
            return KEEL_ECORRUPT;
        }
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return KEEL_ECORRUPT;
}

/* Decode a message whose fields 1..3 may be varints (stored in vals[1..3])
 * and whose field bytes_field (if > 0) is length-delimited (stored in
 * bytes and blen). Other fields are skipped by wire type. */
static int pb_decode(const uint8_t *p,
                     size_t len,
                     uint64_t vals[4],
                     int bytes_field,
                     const uint8_t **bytes,
                     size_t *blen)
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t key, v;
        uint64_t field;
        unsigned wire;
        if (read_varint(&p, end, &key, 5) != 0) {
            return KEEL_ECORRUPT;
        }
        field = key >> 3;
        wire = key & 7;
        /* Field numbers are 1 .. 2^29 - 1 (the tag is a 32-bit varint). */
        if (field == 0 || key > UINT32_MAX) {
            return KEEL_ECORRUPT;
        }
        /* A known field with the wrong wire type is an error, as in
         * protobuf-c. */
        if ((int)field == bytes_field ? wire != 2 : (field <= 3 && wire != 0)) {
            return KEEL_ECORRUPT;
        }
        switch (wire) {
            case 0:
                if (read_varint(&p, end, &v, 10) != 0) {
                    return KEEL_ECORRUPT;
                }
                if (field <= 3 && (int)field != bytes_field) {
                    vals[field] = v;
                }
                break;
            case 1:
                if (end - p < 8) {
                    return KEEL_ECORRUPT;
                }
                p += 8;
                break;
            case 2:
                if (read_varint(&p, end, &v, 5) != 0 || v > INT32_MAX ||
                    v > (uint64_t)(end - p)) {
                    return KEEL_ECORRUPT;
                }
                if ((int)field == bytes_field) {
                    *bytes = p;
                    *blen = (size_t)v;
                }
                p += v;
                break;
            case 5:
                if (end - p < 4) {
                    return KEEL_ECORRUPT;
                }
                p += 4;
                break;
            default:
                return KEEL_ECORRUPT;
        }
    }
    return 0;
}

int wal__entry_decode(const uint8_t *p, size_t len, struct wal_entry *e)
{
    uint64_t v[4] = {0, 0, 0, 0};
    const uint8_t *data = NULL;
    size_t dlen = 0;
    /* Entry: term = 1, index = 2, type = 3 (enum, int32), data = 4 */
    if (pb_decode(p, len, v, 4, &data, &dlen) != 0) {
        return KEEL_ECORRUPT;
    }
    /* An int32 enum is sign-extended to 64 bits on the wire. */
    if (v[3] > UINT32_MAX && v[3] < (UINT64_MAX - INT32_MAX)) {
        return KEEL_ECORRUPT;
    }
    e->term = v[1];
    e->index = v[2];
    e->type = (uint32_t)v[3];
    e->data = data;
    e->len = dlen;
    return 0;
}

int wal__state_decode(const uint8_t *p, size_t len, struct wal_hard_state *hs)
{
    uint64_t v[4] = {0, 0, 0, 0};
    if (pb_decode(p, len, v, 0, NULL, NULL) != 0) {
        return KEEL_ECORRUPT;
    }
    hs->term = v[1];
    hs->vote = v[2];
    hs->commit = v[3];
    return 0;
}

/* One repeated uint64 field of a ConfState: packed (wire type 2, what
 * protobuf-c writes for proto3) or one varint per element (wire type 0). */
static int conf_add(uint64_t *ids, uint32_t *n, uint64_t v)
{
    if (*n >= WAL_MAX_MEMBERS) {
        return KEEL_ECORRUPT;
    }
    ids[(*n)++] = v;
    return 0;
}

static int conf_state_decode(const uint8_t *p, size_t len,
                             struct wal_conf_state *cs)
{
    const uint8_t *end = p + len;
    memset(cs, 0, sizeof *cs);
    while (p < end) {
        uint64_t key, v;
        if (read_varint(&p, end, &key, 5) != 0) {
            return KEEL_ECORRUPT;
        }
        uint64_t field = key >> 3;
        unsigned wire = key & 7;
        uint64_t *ids = field == 1 ? cs->voters : cs->learners;
        uint32_t *n = field == 1 ? &cs->n_voters : &cs->n_learners;
        if ((field != 1 && field != 2) || (wire != 0 && wire != 2)) {
            return KEEL_ECORRUPT; /* ConfState has nothing else */
        }
        if (read_varint(&p, end, &v, wire == 0 ? 10 : 5) != 0) {
            return KEEL_ECORRUPT;
        }
        if (wire == 0) {
            if (conf_add(ids, n, v) != 0) {
                return KEEL_ECORRUPT;
            }
            continue;
        }
        if (v > (uint64_t)(end - p)) {
            return KEEL_ECORRUPT;
        }
        const uint8_t *pend = p + v;
        while (p < pend) {
            uint64_t id;
            if (read_varint(&p, pend, &id, 10) != 0 ||
                conf_add(ids, n, id) != 0) {
                return KEEL_ECORRUPT;
            }
        }
    }
    return 0;
}

int wal__snapshot_decode(const uint8_t *p, size_t len, struct wal_snapshot *s)
{
    uint64_t v[4] = {0, 0, 0, 0};
    /* SnapshotMetadata: conf_state = 1 (message), index = 2, term = 3.
     * Field 1 is read as bytes so a varint there is an error. */
    const uint8_t *cs = NULL;
    size_t cslen = 0;
    if (pb_decode(p, len, v, 1, &cs, &cslen) != 0) {
        return KEEL_ECORRUPT;
    }
    s->index = v[2];
    s->term = v[3];
    memset(&s->conf, 0, sizeof s->conf);
    if (cs != NULL && conf_state_decode(cs, cslen, &s->conf) != 0) {
        return KEEL_ECORRUPT;
    }
    return 0;
}

/* Replay. */

static int corrupt(struct wal__replay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int corrupt(struct wal__replay *r, const char *fmt, ...)
{
    if (r->errmsg != NULL && r->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->errmsg, r->errlen, fmt, ap);
        va_end(ap);
    }
    return KEEL_ECORRUPT;
}

void wal__replay_init(struct wal__replay *r, char *errmsg, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    r->first = 1;
    r->errmsg = errmsg;
    r->errlen = errlen;
}

void wal__replay_free(struct wal__replay *r)
{
    free(r->locs);
    r->locs = NULL;
    r->n = r->cap = 0;
}

int wal__replay_entry(struct wal__replay *r,
                      uint64_t index,
                      const struct wal__loc *loc)
{
    assert(index > r->snap.index && index <= wal__replay_last(r) + 1);
    if (index < r->first) {
        /* Truncation into entries held by released segments. */
        r->first = index;
        r->n = 0;
    } else {
        r->n = (size_t)(index - r->first);
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        struct wal__loc *locs = realloc(r->locs, cap * sizeof(*locs));
        if (locs == NULL) {
            return KEEL_ENOMEM;
        }
        r->locs = locs;
        r->cap = cap;
    }
    r->locs[r->n++] = *loc;
    return 0;
}

void wal__replay_snapshot(struct wal__replay *r, const struct wal_snapshot *s)
{
    assert(s->index >= r->snap.index);
    if (s->index >= wal__replay_last(r)) {
        r->first = s->index + 1;
        r->n = 0;
    } else if (s->index >= r->first) {
        size_t drop = (size_t)(s->index - r->first + 1);
        memmove(r->locs, r->locs + drop, (r->n - drop) * sizeof(*r->locs));
        r->n -= drop;
        r->first = s->index + 1;
    }
    r->snap = *s;
}

/* Apply one valid record at off. */
static int apply_record(struct wal__replay *r,
                        const char *name,
                        uint64_t seq,
                        size_t off,
                        const struct wal__rec *rec)
{
    struct wal_entry e;
    struct wal_snapshot s;
    struct wal__loc loc;
    int rv;

    switch (rec->type) {
        case WAL_REC_SEGMENT:
            return corrupt(r, "%s: offset %zu: segment header in the middle",
                           name, off);
        case WAL_REC_ENTRY:
            if (wal__entry_decode(rec->payload, rec->len, &e) != 0) {
                return corrupt(r, "%s: offset %zu: undecodable entry", name,
                               off);
            }
            if (e.index >= WAL_INDEX_LIMIT || e.term >= WAL_INDEX_LIMIT) {
                return corrupt(r,
                               "%s: offset %zu: entry index %llu out of "
                               "range",
                               name, off, (unsigned long long)e.index);
            }
            if (e.index <= r->snap.index) {
                return corrupt(r,
                               "%s: offset %zu: entry %llu is not after "
                               "the snapshot at %llu",
                               name, off, (unsigned long long)e.index,
                               (unsigned long long)r->snap.index);
            }
            if (e.index > wal__replay_last(r) + 1) {
                return corrupt(r,
                               "%s: offset %zu: entry %llu leaves a gap "
                               "after %llu",
                               name, off, (unsigned long long)e.index,
                               (unsigned long long)wal__replay_last(r));
            }
            if (e.index > r->seg_max_index) {
                r->seg_max_index = e.index;
            }
            loc.term = e.term;
            loc.seq = seq;
            loc.off = (uint32_t)off;
            loc.len = rec->len;
            rv = wal__replay_entry(r, e.index, &loc);
            if (rv != 0) {
                return rv;
            }
            return 0;
        case WAL_REC_STATE:
            if (wal__state_decode(rec->payload, rec->len, &r->hs) != 0) {
                return corrupt(r, "%s: offset %zu: undecodable hard state",
                               name, off);
            }
            return 0;
        case WAL_REC_SNAPSHOT:
            if (wal__snapshot_decode(rec->payload, rec->len, &s) != 0) {
                return corrupt(r,
                               "%s: offset %zu: undecodable snapshot "
                               "marker",
                               name, off);
            }
            if (s.index >= WAL_INDEX_LIMIT || s.term >= WAL_INDEX_LIMIT ||
                s.index < r->snap.index) {
                return corrupt(r,
                               "%s: offset %zu: snapshot marker %llu "
                               "goes back from %llu or is out of range",
                               name, off, (unsigned long long)s.index,
                               (unsigned long long)r->snap.index);
            }
            wal__replay_snapshot(r, &s);
            return 0;
    }
    return corrupt(r, "%s: offset %zu: unknown record type %u", name, off,
                   rec->type);
}

/* Is there a valid record after the bad one at off (and before zero_from,
 * past which all is zero), whose batch is above min_batch (any batch when
 * all is set)? */
static int valid_record_after(const uint8_t *buf,
                              size_t len,
                              size_t off,
                              size_t zero_from,
                              int all,
                              uint64_t min_batch,
                              size_t *found)
{
    for (size_t p = off + 8; p < zero_from && p + WAL_REC_HDR <= len; p += 8) {
        struct wal__rec rec;
        const char *why;
        uint64_t word;
        /* Bytes 0..7 hold len and type, and type is never 0: zero words
         * (preallocated space) are skipped without decoding. */
        memcpy(&word, buf + p, 8);
        if (word == 0) {
            continue;
        }
        if (wal__rec_decode(buf, len, p, &rec, &why) == 0 &&
            (all || rec.batch > min_batch)) {
            *found = p;
            return 1;
        }
    }
    return 0;
}

int wal__replay_segment(struct wal__replay *r,
                        const char *name,
                        uint64_t seq,
                        const uint8_t *buf,
                        size_t len,
                        size_t zero_from,
                        int last,
                        size_t *end,
                        size_t *dirty)
{
    struct wal__rec rec;
    const char *why;
    size_t off, found;
    uint64_t hdr_seq, hdr_last;
    int rv;

    if (zero_from > len) {
        zero_from = len;
    }

    /* The header was synced before the file got its name, so it is never
     * torn: a bad one is corruption, also in the last segment. */
    if (wal__rec_decode(buf, len, 0, &rec, &why) != 0) {
        /* etcd names its segments as we do; each starts with a frame length
         * and a walpb.Record{type: crcType (4), crc} (etcd wal/encoder.go).
         * Say so rather than just "corrupt". */
        if (len >= 11 && buf[8] == 0x08 && buf[9] == 0x04 && buf[10] == 0x10) {
            return corrupt(r,
                           "%s: offset 0: this is an etcd WAL segment, not a "
                           "keel one: keel does not replay etcd's WAL",
                           name);
        }
        return corrupt(r, "%s: offset 0: bad segment header: %s", name, why);
    }
    if (rec.type != WAL_REC_SEGMENT || rec.len != WAL_SEG_HDR_PAYLOAD ||
        memcmp(rec.payload, WAL_MAGIC, 8) != 0) {
        return corrupt(r, "%s: offset 0: not a keel WAL segment", name);
    }
    if (get_le32(rec.payload + 8) != WAL_VERSION) {
        return corrupt(r, "%s: offset 0: unsupported WAL version %u", name,
                       get_le32(rec.payload + 8));
    }
    hdr_seq = get_le64(rec.payload + 16);
    hdr_last = get_le64(rec.payload + 24);
    if (hdr_seq != seq) {
        return corrupt(r, "%s: offset 0: header says segment %llu", name,
                       (unsigned long long)hdr_seq);
    }
    if (hdr_last >= WAL_INDEX_LIMIT) {
        return corrupt(r, "%s: offset 0: last index out of range", name);
    }
    if (r->segments == 0) {
        /* Entries up to hdr_last were in released segments. */
        r->first = hdr_last + 1;
        r->n = 0;
    } else if (hdr_last != wal__replay_last(r)) {
        return corrupt(r,
                       "%s: offset 0: segment was created at index %llu "
                       "but the segments before it end at %llu (records "
                       "lost at the end of the previous segment)",
                       name, (unsigned long long)hdr_last,
                       (unsigned long long)wal__replay_last(r));
    }
    r->segments++;
    r->seg_max_index = 0;
    r->batch = rec.batch;
    r->commit = rec.flags & WAL_REC_F_COMMIT;
    r->last_off = 0;
    off = wal__rec_size(rec.len);

    for (;;) {
        if (off >= len) {
            break;
        }
        if (wal__rec_decode(buf, len, off, &rec, &why) != 0) {
            uint64_t bad_batch = r->commit ? r->batch + 1 : r->batch;
            if (valid_record_after(buf, len, off, zero_from, !last, bad_batch,
                                   &found)) {
                return corrupt(r,
                               "%s: offset %zu: %s (valid record follows "
                               "at offset %zu)",
                               name, off, why, found);
            }
            break;
        }
        if (rec.batch < r->batch) {
            return corrupt(r, "%s: offset %zu: write batch goes back", name,
                           off);
        }
        rv = apply_record(r, name, seq, off, &rec);
        if (rv != 0) {
            return rv;
        }
        r->batch = rec.batch;
        r->commit = rec.flags & WAL_REC_F_COMMIT;
        r->last_off = off;
        off += wal__rec_size(rec.len);
    }
    *end = off < len ? off : len;
    *dirty = *end;
    {
        /* The last non-zero byte before zero_from, a word at a time. */
        size_t p = zero_from;
        uint64_t word;
        while (p > *end && (p & 7) != 0 && buf[p - 1] == 0) {
            p--;
        }
        while (p >= *end + 8 && (p & 7) == 0) {
            memcpy(&word, buf + p - 8, 8);
            if (word != 0) {
                break;
            }
            p -= 8;
        }
        while (p > *end && buf[p - 1] == 0) {
            p--;
        }
        *dirty = p > *end ? p : *end;
    }
    return 0;
}

int wal__replay_finish(struct wal__replay *r, const char *name)
{
    if (r->first > r->snap.index + 1) {
        return corrupt(r,
                       "%s: entries %llu..%llu are missing (the snapshot "
                       "is at %llu; were segments deleted?)",
                       name, (unsigned long long)r->snap.index + 1,
                       (unsigned long long)r->first - 1,
                       (unsigned long long)r->snap.index);
    }
    return 0;
}
