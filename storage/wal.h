/*
 * storage/wal: the Raft log and hard state on disk.
 *
 * Segmented, preallocated, append-only files under <data-dir>/member/wal/.
 * Every record carries a type, a length and CRC-32C checksums; an append
 * returns only after fdatasync, so everything it acknowledged survives a
 * crash. On open the log is replayed: a torn tail (a write that was cut by a
 * crash) is truncated at the last whole record, corruption anywhere before it
 * stops the open with KEEL_ECORRUPT and a message naming the file and offset.
 * The on-disk format is described in storage/wal_record.h.
 *
 * Threads: a struct wal is used by one thread at a time (the server's disk
 * thread). Every call is synchronous and may block on the disk.
 *
 * Durability failures are fatal (CONVENTIONS 9.3): when wal_append,
 * wal_write, wal_sync, wal_save_snapshot or wal_release returns an I/O
 * error from writing or syncing (-errno from write, fallocate, fdatasync,
 * rename, ...), the caller must abort the process and let recovery run on
 * restart. Never retry: after a failed fdatasync the kernel may have
 * dropped the dirty pages and a later "successful" fsync would be a lie
 * (PostgreSQL's "fsyncgate"). The wal object then refuses every later call
 * that uses the disk (reads included) with the same error, to make retrying
 * impossible; wal_close still works.
 */
#ifndef KEEL_WAL_H
#define KEEL_WAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Default preallocated size of a segment file (etcd: SegmentSizeBytes,
 * wal/wal.go, is 64 MB). */
#define WAL_SEGMENT_SIZE_DEFAULT (64u * 1024 * 1024)

/* Largest payload of one record (a raftpb.Entry with its data). Bigger than
 * the 1.5 MiB --max-request-bytes with room for raft overhead. */
#define WAL_RECORD_MAX (64u * 1024 * 1024)

/* One raft log entry. In wal_append/wal_write, data is borrowed for the
 * call. */
struct wal_entry
{
    uint64_t index;
    uint64_t term;
    uint32_t type; /* raftpb.EntryType: 0 normal, 1 conf change */
    const void *data;
    size_t len;
};

/* Raft's persistent state (raftpb.HardState). */
struct wal_hard_state
{
    uint64_t term;
    uint64_t vote;
    uint64_t commit;
};

/* Most members a recorded configuration holds (raft's RAFT_MAX_MEMBERS). */
#define WAL_MAX_MEMBERS 32

/* Raft's configuration (raftpb.ConfState). */
struct wal_conf_state
{
    uint64_t voters[WAL_MAX_MEMBERS];
    uint32_t n_voters;
    uint64_t learners[WAL_MAX_MEMBERS];
    uint32_t n_learners;
};

/* The latest snapshot: the log starts after index. {0, 0} when none.
 * conf is the raft configuration as of index (what a restart from this
 * snapshot starts with; the conf changes after it are in the log); it is
 * recorded in the marker (raftpb.SnapshotMetadata.conf_state) and repeated
 * at the start of every later segment, so it survives the release of the
 * segments that held the conf change entries. Empty when not recorded. */
struct wal_snapshot
{
    uint64_t index;
    uint64_t term;
    struct wal_conf_state conf;
};

/* Test-only I/O hooks, for fault injection. NULL members (or a NULL
 * wal_options.io) mean the real system calls. Each returns what the system
 * call returns (-1 and errno on failure). fdatasync is also used for the
 * directory syncs after creating and deleting segments. */
struct wal_io
{
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    int (*fdatasync)(int fd);
    int (*fallocate)(int fd, off_t off, off_t len); /* returns an errno */
};

struct wal_options
{
    /* Preallocated segment size; 0 = WAL_SEGMENT_SIZE_DEFAULT. Minimum 4096.
     * A record bigger than a segment gets a segment of its own size. */
    size_t segment_size;
    const struct wal_io *io; /* tests only; NULL in production */
};

struct wal;

/* Open the WAL of data_dir (creating <data_dir>/member/wal and a first
 * segment if there is none) and recover it: replay every segment, cut a torn
 * tail at the last whole record (zeroing the garbage after it and syncing),
 * and build the in-memory index of the entries after the snapshot marker.
 *
 * opts may be NULL. On success *out is a new wal, to be freed with
 * wal_close. On failure *out is untouched and errmsg (if not NULL) holds a
 * message naming what failed: for KEEL_ECORRUPT the segment file and byte
 * offset of the bad record. Returns 0, KEEL_ECORRUPT, KEEL_EINVAL (bad
 * options), KEEL_ENOMEM or -errno. */
int wal_open(const char *data_dir,
             const struct wal_options *opts,
             struct wal **out,
             char *errmsg,
             size_t errlen);

/* Close the files and free w. Does not sync: entries of a wal_write not
 * followed by wal_sync may or may not survive. */
void wal_close(struct wal *w);

/* Recovered and current state. */
struct wal_hard_state wal_hard_state(const struct wal *w);
struct wal_snapshot wal_snapshot(const struct wal *w);
/* First and last index of the entries held (after the snapshot). When the
 * log is empty, first == snapshot.index + 1 and last == snapshot.index. */
uint64_t wal_first_index(const struct wal *w);
uint64_t wal_last_index(const struct wal *w);

/* Term of entry index; the snapshot's term for index == snapshot.index.
 * KEEL_ENOTFOUND when index is outside [snapshot.index, last]. */
int wal_term(const struct wal *w, uint64_t index, uint64_t *term);

/* Append n entries and, if hs is not NULL, a new hard state (written after
 * the entries), then fdatasync: one sync covers the whole batch (and
 * whatever wal_write left pending: group commit across several batches is
 * wal_write, wal_write, ..., wal_sync).
 *
 * Entries must have consecutive indexes. If ents[0].index <= last index, the
 * log's suffix from ents[0].index on is replaced (raft's conflicting-suffix
 * truncation). Errors without writing anything: KEEL_EINVAL when indexes are
 * not consecutive, leave a gap (ents[0].index > last + 1), or reach back to
 * or before the snapshot index, or an entry has len > 0 and no data;
 * KEEL_ETOOBIG for an entry over WAL_RECORD_MAX. n == 0 with hs == NULL
 * writes nothing (it syncs what wal_write left pending, if anything).
 *
 * Returns only after fdatasync succeeded (which also covers earlier
 * wal_write calls). Any I/O error is fatal (see top). */
int wal_append(struct wal *w,
               const struct wal_entry *ents,
               size_t n,
               const struct wal_hard_state *hs);

/* Group commit in two steps: wal_write validates and writes like
 * wal_append but does not sync; wal_sync makes everything written since the
 * last sync durable with one fdatasync. A disk thread that finds several
 * raft Readys queued calls wal_write for each (truncations between them
 * included) and wal_sync once, then acknowledges them all. Nothing written
 * is durable, and nothing may be acknowledged, before wal_sync returns 0;
 * it may or may not survive a crash before that. Reads see written entries
 * at once. wal_append, wal_save_snapshot and wal_sync each sync whatever is
 * pending. wal_sync with nothing pending returns 0 without touching the
 * disk. I/O errors of both are fatal (see top). */
int wal_write(struct wal *w,
              const struct wal_entry *ents,
              size_t n,
              const struct wal_hard_state *hs);
int wal_sync(struct wal *w);

/* Record that a snapshot at snap->index/term has been saved (the snapshot
 * file itself lives elsewhere) and fdatasync. Entries <= snap->index are
 * dropped from the index; later ones stay (raft truncates them with
 * wal_append if they conflict). KEEL_EINVAL if snap->index is older than the
 * current snapshot or the configuration has more than WAL_MAX_MEMBERS
 * voters or learners. Call it before wal_release (etcd: "Must save the
 * snapshot file and WAL snapshot entry before saving any other entries or
 * hardstate", etcdserver/raft.go). I/O errors are fatal. */
int wal_save_snapshot(struct wal *w, const struct wal_snapshot *snap);

/* Delete the oldest segments, one at a time with a directory fsync after
 * each, as long as every entry ever written to them has an index <= index;
 * never the segment being written. index must be <= the saved snapshot
 * index (KEEL_EINVAL otherwise). The segment holding index + 1 and all
 * later ones are kept, and every segment starts with the snapshot marker
 * and hard state current when it was created, so the log opens complete
 * after a crash at any point. Returns 0, KEEL_EINVAL, -errno from unlink
 * (the log is consistent and usable, fewer segments were released), or
 * -errno from the directory fsync, which is fatal like any failed sync. */
int wal_release(struct wal *w, uint64_t index);

/* Entries read back from the log; wal_entries_free releases them. */
struct wal_entries
{
    struct wal_entry *v; /* v[i].data points into mem */
    size_t n;
    void *mem;
};

/* Read entries [lo, hi) into *out (which the caller frees with
 * wal_entries_free, also after an error). If max_bytes > 0, stop before the
 * entry that would bring the sum of encoded entry sizes (raftpb.Entry, as
 * etcd's limitSize counts) over max_bytes, but always return at least one
 * entry. Each record's CRC is checked again:
 * KEEL_ECORRUPT if the disk changed under us. KEEL_ENOTFOUND unless
 * first <= lo < hi <= last + 1. */
int wal_read(struct wal *w,
             uint64_t lo,
             uint64_t hi,
             size_t max_bytes,
             struct wal_entries *out);
void wal_entries_free(struct wal_entries *es);

/* Message of the last error on w ("" if none). */
const char *wal_errmsg(const struct wal *w);

/* Number of segment files and the path of the directory (tests, metrics). */
size_t wal_segment_count(const struct wal *w);
const char *wal_dir(const struct wal *w);

#endif /* KEEL_WAL_H */
