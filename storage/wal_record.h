/*
 * WAL on-disk format and the pure (no I/O) replay of segments. Private to
 * storage/wal*.c and the WAL tests and fuzzer.
 *
 * Segment files: <data-dir>/member/wal/<seq:016x>-<index:016x>.wal, seq
 * counting up from 0 without holes, index = last log index when the segment
 * was created, plus one (for people; recovery reads it from the header).
 * Each file is preallocated (zeros) and holds records back to back:
 *
 *   offset size
 *   0      4    len       payload length in bytes (little endian, as all)
 *   4      1    type      WAL_REC_*
 *   5      1    flags     WAL_REC_F_COMMIT: last record of a write batch
 *   6      2    reserved  0
 *   8      8    batch     write batch number (one per fdatasync)
 *   16     4    data_crc  CRC-32C of the payload
 *   20     4    hdr_crc   CRC-32C of bytes 0..19
 *   24     len  payload
 *   ...         zero padding to a multiple of 8 (checked on read)
 *
 * All-zero bytes never form a valid header (hdr_crc of zeros is not zero),
 * so the preallocated space reads as "no record".
 *
 * Payloads:
 *   WAL_REC_SEGMENT   32 bytes: "KEELWAL\0", u32 version (1), u32 0,
 *                     u64 seq, u64 last index when the segment was created.
 *                     Always the first record; followed by a SNAPSHOT and a
 *                     STATE record repeating the current ones, so every
 *                     suffix of the segment list is a complete log.
 *   WAL_REC_ENTRY     raftpb.Entry protobuf (proto/raftpb/raft.proto).
 *   WAL_REC_STATE     raftpb.HardState protobuf.
 *   WAL_REC_SNAPSHOT  raftpb.SnapshotMetadata protobuf (index, term only).
 *
 * Replay (the log is the sequence of records of all segments, in order):
 *   ENTRY i     replaces the suffix from i on (raft truncation) and appends:
 *               i must be > the snapshot index and <= last + 1.
 *   SNAPSHOT s  drops entries <= s.index; s.index never goes back.
 *   STATE       the latest one wins.
 * Segments after the first replayed one must start at the last index the
 * replay reached (a lost record at a segment's end is detected there). The
 * first replayed segment (the others were released) starts with entries
 * (snapshot, last] unknown; a later SNAPSHOT must cover them.
 *
 * A batch whose last record lacks the flag (its wal_sync never ran, or a
 * crash kept only a prefix of it) is closed by recovery before anything
 * else is written: the flag is set on its last record and synced, so the
 * next batch's records are never mistaken for a synced batch's.
 *
 * Torn tail versus corruption. Batch n + 1 is written only after batch n's
 * fdatasync returned, and a segment is fdatasynced before the next one is
 * created. So at the first bad record X:
 *   - in a segment that is not the last: any valid record after X proves X
 *     was synced: corruption. Otherwise the segment simply ended at X (the
 *     next segment's header checks that no entry was lost).
 *   - in the last segment: X belongs to batch b (the batch of the record
 *     before X, or b + 1 if that record closed its batch). A valid record of
 *     a batch > b after X proves X was synced: corruption. Otherwise X is a
 *     torn write of the last batch, never acknowledged: the tail is cut.
 *   Damage inside the last batch is indistinguishable from a torn write and
 *   is cut as one. If that batch had been acknowledged, the media lost it
 *   after the fact and no format can tell (etcd cuts any bad tail of its
 *   last segment, wal/repair.go); every earlier batch is protected.
 *
 * If you change this format, bump WAL_VERSION and keep reading version 1.
 */
#ifndef KEEL_WAL_RECORD_H
#define KEEL_WAL_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "wal.h"

#define WAL_VERSION 1
#define WAL_MAGIC "KEELWAL"
#define WAL_REC_HDR 24
#define WAL_SEG_HDR_PAYLOAD 32
/* Indexes and terms at or above this are rejected as corrupt, so replay
 * arithmetic (index + 1) never overflows. */
#define WAL_INDEX_LIMIT (UINT64_C(1) << 62)

enum {
    WAL_REC_SEGMENT = 1,
    WAL_REC_ENTRY = 2,
    WAL_REC_STATE = 3,
    WAL_REC_SNAPSHOT = 4,
};
#define WAL_REC_F_COMMIT 0x01

/* Size of a record on disk with a payload of len bytes. */
static inline size_t wal__rec_size(size_t len)
{
    return WAL_REC_HDR + ((len + 7) & ~(size_t)7);
}

/* A decoded record; payload points into the buffer it was decoded from. */
struct wal__rec
{
    uint8_t type;
    uint8_t flags;
    uint64_t batch;
    uint32_t len;
    const uint8_t *payload;
};

/* Write the header and padding of a record whose payload is already at
 * dst + WAL_REC_HDR. Returns the record size. */
size_t wal__rec_finish(uint8_t *dst,
                       uint8_t type,
                       uint8_t flags,
                       uint64_t batch,
                       uint32_t len);

/* Set WAL_REC_F_COMMIT in an encoded record header (24 bytes) and update
 * its header checksum. */
void wal__rec_set_commit(uint8_t *hdr);

/* Decode the record at buf[off..avail). 0 if whole and valid, else
 * KEEL_ECORRUPT with *why set to a static description. */
int wal__rec_decode(const uint8_t *buf,
                    size_t avail,
                    size_t off,
                    struct wal__rec *rec,
                    const char **why);

/* Protobuf payloads: exact sizes, and encoders writing to dst. */
size_t wal__entry_size(const struct wal_entry *e);
size_t wal__entry_encode(const struct wal_entry *e, uint8_t *dst);
size_t wal__state_size(const struct wal_hard_state *hs);
size_t wal__state_encode(const struct wal_hard_state *hs, uint8_t *dst);
size_t wal__snapshot_size(const struct wal_snapshot *s);
size_t wal__snapshot_encode(const struct wal_snapshot *s, uint8_t *dst);
void wal__seg_hdr_encode(uint64_t seq, uint64_t last_index, uint8_t *dst);

/* Protobuf decoders (no allocation; e->data points into p). 0 or
 * KEEL_ECORRUPT. */
int wal__entry_decode(const uint8_t *p, size_t len, struct wal_entry *e);
int wal__state_decode(const uint8_t *p, size_t len, struct wal_hard_state *hs);
int wal__snapshot_decode(const uint8_t *p, size_t len, struct wal_snapshot *s);

/* Where an entry lives. seq/off/len locate its record. */
struct wal__loc
{
    uint64_t term;
    uint64_t seq;
    uint32_t off; /* record start in the segment */
    uint32_t len; /* payload length */
};

/* Replay state: the log as records have built it so far. Entries
 * first .. first + n - 1 are in locs; (snap.index, first) are unknown
 * (in released segments) until a SNAPSHOT covers them. */
struct wal__replay
{
    struct wal__loc *locs;
    size_t n, cap;
    uint64_t first;
    struct wal_snapshot snap;
    struct wal_hard_state hs;
    uint64_t batch;         /* batch of the last good record */
    int commit;             /* whether that record closed its batch */
    size_t last_off;        /* its offset in the last segment replayed */
    int segments;           /* segments replayed so far */
    uint64_t seg_max_index; /* highest entry index in the last segment
                               replayed (0: none); wal_release uses it */
    char *errmsg;
    size_t errlen;
};

void wal__replay_init(struct wal__replay *r, char *errmsg, size_t errlen);
void wal__replay_free(struct wal__replay *r);
static inline uint64_t wal__replay_last(const struct wal__replay *r)
{
    return r->first + r->n - 1;
}

/* Replay one segment (seq, named name for messages) held in buf[0..len).
 * zero_from (<= len) is a hint that buf[zero_from..len) is all zeros (the
 * file's final hole, from SEEK_HOLE), so the scans past a bad record can
 * stop there; len if unknown. last: whether it is the last segment. On 0,
 * *end is the offset after the
 * last good record (where appends continue) and *dirty is the offset after
 * the last non-zero byte at or after *end (*dirty == *end if the tail is
 * clean). KEEL_ECORRUPT (errmsg names file and offset) or KEEL_ENOMEM. */
int wal__replay_segment(struct wal__replay *r,
                        const char *name,
                        uint64_t seq,
                        const uint8_t *buf,
                        size_t len,
                        size_t zero_from,
                        int last,
                        size_t *end,
                        size_t *dirty);

/* After the last segment: check no entry is missing after the snapshot. */
int wal__replay_finish(struct wal__replay *r, const char *name);

/* Apply an entry / snapshot to the replay state (also used by wal.c to keep
 * its live index, which is a wal__replay). */
int wal__replay_entry(struct wal__replay *r,
                      uint64_t index,
                      const struct wal__loc *loc);
void wal__replay_snapshot(struct wal__replay *r, const struct wal_snapshot *s);

#endif /* KEEL_WAL_RECORD_H */
