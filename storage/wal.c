/*
 * The WAL: segment files, appends with fdatasync, recovery, reads, release.
 *
 * Happy path. wal_open lists <data-dir>/member/wal/, replays every segment
 * (wal_record.c) into the live index (struct wal__replay: index -> term,
 * segment, offset) and keeps one fd per segment. wal_append encodes the
 * batch into one buffer, pwrites it at the end of the last segment and
 * fdatasyncs once. Group commit: wal_write does the same without the sync,
 * any number of times, and wal_sync then makes all of it durable with one
 * fdatasync. The last record of a batch (what one fdatasync covers)
 * carries WAL_REC_F_COMMIT, which recovery uses to tell a torn write from
 * corruption (wal_record.h); after wal_write, wal_sync sets it by rewriting
 * that record's header in place before syncing.
 *
 * Rollover. When the next record does not fit in the last segment, what is
 * buffered is written and the segment is fdatasynced (sealed); then the new
 * segment is built as <name>.tmp: fallocate, header + snapshot marker + hard
 * state records, fdatasync, rename, fsync of the directory (etcd #6368). So a
 * segment with a final name always has a durable header, and a segment is
 * complete on disk before the next one exists.
 *
 * Recovery maps each segment read-only and replays it (wal_record.c);
 * scans past the last record stop at the file's final hole (SEEK_HOLE), so
 * opening does not read 64 MiB of preallocated zeros. A torn tail in the
 * last segment is zeroed and synced before the first append. Leftover
 * *.tmp files (a creation cut by a crash) are deleted.
 *
 * Failure modes. Any error of write/fallocate/fdatasync/rename during an
 * append is stored in w->broken and returned by every later call that would
 * use the disk: the caller must abort (wal.h), and recovery on restart cuts
 * whatever part of the batch was torn. Errors found before anything is
 * written (bad arguments, ENOMEM while reserving memory) are returned
 * without side effects. Corruption found on open is KEEL_ECORRUPT with the
 * file and offset in the message.
 */
#include "wal.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel_err.h"
#include "wal_record.h"

/* Segment offsets are stored as uint32 in the index. */
#define WAL_SEGMENT_SIZE_MAX (1024u * 1024 * 1024)
#define WAL_SEGMENT_SIZE_MIN 4096u
/* Header record + snapshot marker + hard state, padded: an upper bound. */
#define WAL_SEG_HDR_BYTES 1024
/* A batch is encoded and written in chunks of about this size, so a huge
 * batch does not need a buffer as big as itself (one fdatasync still
 * covers the whole batch). */
#define WAL_WRITE_CHUNK (4u * 1024 * 1024)

struct wal_seg
{
    uint64_t seq;
    int fd;
    size_t cap;         /* bytes we may fill: the preallocated file size */
    uint64_t max_index; /* highest entry index written in it (0: none) */
    char name[48];
};

struct wal
{
    char dir[PATH_MAX];
    int dirfd;
    struct wal_seg *segs; /* segs[i].seq == segs[0].seq + i */
    size_t nsegs, capsegs;
    struct wal__replay log; /* live index, snapshot, hard state */
    uint64_t batch;         /* number of the next write batch */
    size_t off;             /* end of the records in the last segment */
    size_t segment_size;
    struct wal_io io;
    uint8_t *buf;
    size_t bufcap;
    int broken; /* fatal error seen: refuse all disk work */
    /* Records written (wal_write) and not yet synced; the last of them is
     * at last_off in the last segment, with header last_hdr, and carries
     * WAL_REC_F_COMMIT if last_flagged (else wal_sync sets it). */
    int unsynced;
    int last_flagged;
    size_t last_off;
    uint8_t last_hdr[WAL_REC_HDR];
    char errmsg[512];
};

static int errf(char *buf, size_t len, int rv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int errf(char *buf, size_t len, int rv, const char *fmt, ...)
{
    if (buf != NULL && len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return rv;
}

/* Default I/O. */

static ssize_t sys_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

static int sys_fdatasync(int fd)
{
    return fdatasync(fd);
}

static int sys_fallocate(int fd, off_t off, off_t len)
{
    return posix_fallocate(fd, off, len);
}

static int write_all(struct wal *w,
                     int fd,
                     const void *buf,
                     size_t len,
                     off_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t k = w->io.pwrite(fd, p, len, off);
        if (k < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (k == 0) {
            return -EIO;
        }
        p += k;
        len -= (size_t)k;
        off += k;
    }
    return 0;
}

static int sync_fd(struct wal *w, int fd)
{
    if (w->io.fdatasync(fd) != 0) {
        return errno ? -errno : -EIO;
    }
    return 0;
}

/* Record a fatal error: every later disk operation returns it. */
static int fail(struct wal *w, int rv, const char *what, const char *name)
{
    w->broken = rv;
    return errf(w->errmsg, sizeof(w->errmsg), rv, "wal %s %s/%s: %s", what,
                w->dir, name, keel_strerror(rv));
}

static struct wal_seg *last_seg(struct wal *w)
{
    return &w->segs[w->nsegs - 1];
}

static struct wal_seg *seg_by_seq(struct wal *w, uint64_t seq)
{
    assert(seq >= w->segs[0].seq && seq - w->segs[0].seq < w->nsegs);
    return &w->segs[seq - w->segs[0].seq];
}

static int segs_reserve(struct wal *w, size_t n)
{
    if (n > w->capsegs) {
        size_t cap = w->capsegs ? w->capsegs * 2 : 16;
        struct wal_seg *segs;
        while (cap < n) {
            cap *= 2;
        }
        segs = realloc(w->segs, cap * sizeof(*segs));
        if (segs == NULL) {
            return KEEL_ENOMEM;
        }
        w->segs = segs;
        w->capsegs = cap;
    }
    return 0;
}

static int buf_reserve(struct wal *w, size_t n)
{
    if (n > w->bufcap) {
        size_t cap = w->bufcap ? w->bufcap : 64 * 1024;
        uint8_t *buf;
        while (cap < n) {
            cap *= 2;
        }
        buf = realloc(w->buf, cap);
        if (buf == NULL) {
            return KEEL_ENOMEM;
        }
        w->buf = buf;
        w->bufcap = cap;
    }
    return 0;
}

static int locs_reserve(struct wal__replay *r, size_t n)
{
    if (n > r->cap) {
        struct wal__loc *locs = realloc(r->locs, n * sizeof(*locs));
        if (locs == NULL) {
            return KEEL_ENOMEM;
        }
        r->locs = locs;
        r->cap = n;
    }
    return 0;
}

static uint64_t log_last(const struct wal *w)
{
    return wal__replay_last(&w->log);
}

/* Encode the three records every segment starts with into dst; returns
 * their total size. They belong to the batch being written. */
static size_t seg_hdr_records(struct wal *w,
                              uint64_t seq,
                              uint8_t *dst,
                              int commit)
{
    size_t off = 0, len;
    wal__seg_hdr_encode(seq, log_last(w), dst + WAL_REC_HDR);
    off +=
        wal__rec_finish(dst, WAL_REC_SEGMENT, 0, w->batch, WAL_SEG_HDR_PAYLOAD);
    len = wal__snapshot_encode(&w->log.snap, dst + off + WAL_REC_HDR);
    off += wal__rec_finish(dst + off, WAL_REC_SNAPSHOT, 0, w->batch,
                           (uint32_t)len);
    len = wal__state_encode(&w->log.hs, dst + off + WAL_REC_HDR);
    off +=
        wal__rec_finish(dst + off, WAL_REC_STATE, commit ? WAL_REC_F_COMMIT : 0,
                        w->batch, (uint32_t)len);
    assert(off <= WAL_SEG_HDR_BYTES);
    return off;
}

/* Create segment seq (to hold at least need bytes of records after its
 * header) as a tmp file, make it durable, rename it in place and make the
 * directory durable; then make it the last segment. */
static int seg_create(struct wal *w, uint64_t seq, size_t need, int commit)
{
    uint8_t hdr[WAL_SEG_HDR_BYTES];
    char tmp[64];
    struct wal_seg *s;
    size_t hlen, cap;
    int fd, rv;

    rv = segs_reserve(w, w->nsegs + 1);
    if (rv != 0) {
        return fail(w, rv, "cannot grow segment list for", "");
    }
    s = &w->segs[w->nsegs];
    memset(s, 0, sizeof(*s));
    s->seq = seq;
    snprintf(s->name, sizeof(s->name), "%016" PRIx64 "-%016" PRIx64 ".wal", seq,
             log_last(w) + 1);
    snprintf(tmp, sizeof(tmp), "%s.tmp", s->name);
    hlen = seg_hdr_records(w, seq, hdr, commit);
    cap = w->segment_size;
    if (cap < hlen + need) {
        cap = hlen + need;
    }

    fd = openat(w->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return fail(w, -errno, "cannot create", tmp);
    }
    rv = w->io.fallocate(fd, 0, (off_t)cap);
    if (rv != 0) {
        rv = fail(w, -rv, "cannot preallocate", tmp);
        goto err_unlink;
    }
    rv = write_all(w, fd, hdr, hlen, 0);
    if (rv != 0) {
        rv = fail(w, rv, "cannot write header of", tmp);
        goto err_unlink;
    }
    rv = sync_fd(w, fd);
    if (rv != 0) {
        rv = fail(w, rv, "cannot sync", tmp);
        goto err_unlink;
    }
    if (renameat(w->dirfd, tmp, w->dirfd, s->name) != 0) {
        rv = fail(w, -errno, "cannot rename", tmp);
        goto err_unlink;
    }
    rv = sync_fd(w, w->dirfd);
    if (rv != 0) {
        /* The segment is in place but maybe not durable; fatal anyway. */
        close(fd);
        return fail(w, rv, "cannot sync directory after creating", s->name);
    }
    s->fd = fd;
    s->cap = cap;
    w->nsegs++;
    w->off = hlen;
    return 0;

err_unlink:
    unlinkat(w->dirfd, tmp, 0);
    close(fd);
    assert(rv != 0);
    return rv;
}

/* One record of a batch, before encoding. */
struct rec_plan
{
    uint8_t type;
    uint32_t len;
    const void *src;
};

static size_t plan_size(const struct rec_plan *p)
{
    return wal__rec_size(p->len);
}

static size_t plan_encode(const struct rec_plan *p, uint8_t *dst)
{
    switch (p->type) {
        case WAL_REC_ENTRY:
            return wal__entry_encode(p->src, dst);
        case WAL_REC_STATE:
            return wal__state_encode(p->src, dst);
        default:
            return wal__snapshot_encode(p->src, dst);
    }
}

/* Write the planned records (no sync; the last one flagged as closing its
 * batch if commit_last). Updates the live index as records are placed; on
 * error w is broken. */
static int write_records(struct wal *w,
                         const struct rec_plan *plan,
                         size_t n,
                         int commit_last)
{
    size_t used = 0;
    int rv;

    for (size_t k = 0; k < n; k++) {
        const struct rec_plan *p = &plan[k];
        size_t rsize = plan_size(p);
        struct wal_seg *s = last_seg(w);
        uint8_t *dst;
        size_t len;

        if (w->off + used + rsize > s->cap) {
            if (used > 0) {
                rv = write_all(w, s->fd, w->buf, used, (off_t)w->off);
                if (rv != 0) {
                    return fail(w, rv, "cannot write", s->name);
                }
                w->off += used;
                used = 0;
            }
            rv = sync_fd(w, s->fd);
            if (rv != 0) {
                return fail(w, rv, "cannot sync", s->name);
            }
            rv = seg_create(w, s->seq + 1, rsize, 0);
            if (rv != 0) {
                return rv;
            }
            s = last_seg(w);
        }
        dst = w->buf + used;
        len = plan_encode(p, dst + WAL_REC_HDR);
        assert(len == p->len);
        wal__rec_finish(dst, p->type,
                        k == n - 1 && commit_last ? WAL_REC_F_COMMIT : 0,
                        w->batch, (uint32_t)len);
        if (k == n - 1) {
            w->last_off = w->off + used;
            w->last_flagged = commit_last;
            memcpy(w->last_hdr, dst, WAL_REC_HDR);
        }
        if (p->type == WAL_REC_ENTRY) {
            const struct wal_entry *e = p->src;
            struct wal__loc loc = {e->term, s->seq, (uint32_t)(w->off + used),
                                   (uint32_t)len};
            rv = wal__replay_entry(&w->log, e->index, &loc);
            assert(rv == 0); /* capacity was reserved */
            if (e->index > s->max_index) {
                s->max_index = e->index;
            }
        } else if (p->type == WAL_REC_STATE) {
            w->log.hs = *(const struct wal_hard_state *)p->src;
        } else {
            wal__replay_snapshot(&w->log, p->src);
        }
        used += rsize;
        if (used >= WAL_WRITE_CHUNK) {
            rv = write_all(w, s->fd, w->buf, used, (off_t)w->off);
            if (rv != 0) {
                return fail(w, rv, "cannot write", s->name);
            }
            w->off += used;
            used = 0;
        }
    }
    w->unsynced = 1;
    if (used > 0) {
        rv = write_all(w, last_seg(w)->fd, w->buf, used, (off_t)w->off);
        if (rv != 0) {
            return fail(w, rv, "cannot write", last_seg(w)->name);
        }
        w->off += used;
    }
    return 0;
}

/* Close the batch: make sure its last record says so, fdatasync. Earlier
 * segments of the batch were synced when it rolled over. */
static int sync_batch(struct wal *w)
{
    int rv;
    if (!w->unsynced) {
        return 0;
    }
    if (!w->last_flagged) {
        /* Rewriting the header in place is safe: it is part of the batch
         * this fdatasync makes durable, torn or lost with it otherwise. */
        wal__rec_set_commit(w->last_hdr);
        rv = write_all(w, last_seg(w)->fd, w->last_hdr, WAL_REC_HDR,
                       (off_t)w->last_off);
        if (rv != 0) {
            return fail(w, rv, "cannot write", last_seg(w)->name);
        }
        w->last_flagged = 1;
    }
    rv = sync_fd(w, last_seg(w)->fd);
    if (rv != 0) {
        return fail(w, rv, "cannot sync", last_seg(w)->name);
    }
    w->unsynced = 0;
    w->batch++;
    return 0;
}

/* Reserve everything a batch may need, so that write_records cannot fail
 * on memory once it started writing. */
static int reserve_batch(struct wal *w,
                         const struct rec_plan *plan,
                         size_t n,
                         uint64_t first_index,
                         size_t nents)
{
    size_t total = 0, biggest = 0;
    int rv;
    for (size_t k = 0; k < n; k++) {
        size_t size = plan_size(&plan[k]);
        total += size;
        if (size > biggest) {
            biggest = size;
        }
    }
    /* write_records flushes once WAL_WRITE_CHUNK bytes are buffered. */
    if (total > WAL_WRITE_CHUNK + biggest) {
        total = WAL_WRITE_CHUNK + biggest;
    }
    rv = buf_reserve(w, total);
    if (rv == 0 && nents > 0) {
        size_t keep = first_index >= w->log.first
                          ? (size_t)(first_index - w->log.first)
                          : 0;
        rv = locs_reserve(&w->log, keep + nents);
    }
    if (rv == 0) {
        /* A batch can roll over at most once per record. */
        rv = segs_reserve(w, w->nsegs + n);
    }
    return rv;
}

/* wal_append (sync set) and wal_write. */
static int append(struct wal *w,
                  const struct wal_entry *ents,
                  size_t n,
                  const struct wal_hard_state *hs,
                  int sync)
{
    struct rec_plan *plan;
    size_t np = 0;
    int rv;

    if (w->broken) {
        return w->broken;
    }
    if (n == 0 && hs == NULL) {
        return sync ? sync_batch(w) : 0;
    }
    if (n > 0) {
        if (ents[0].index <= w->log.snap.index ||
            ents[0].index > log_last(w) + 1) {
            return errf(w->errmsg, sizeof(w->errmsg), KEEL_EINVAL,
                        "wal append: entry %" PRIu64 " not in (%" PRIu64
                        ", %" PRIu64 "]",
                        ents[0].index, w->log.snap.index, log_last(w) + 1);
        }
        if (ents[0].index + n >= WAL_INDEX_LIMIT) {
            return errf(w->errmsg, sizeof(w->errmsg), KEEL_EINVAL,
                        "wal append: index out of range");
        }
    }
    plan = malloc((n + 1) * sizeof(*plan));
    if (plan == NULL) {
        return KEEL_ENOMEM;
    }
    for (size_t k = 0; k < n; k++) {
        size_t len;
        if (ents[k].index != ents[0].index + k ||
            ents[k].term >= WAL_INDEX_LIMIT || ents[k].type > INT32_MAX ||
            (ents[k].data == NULL && ents[k].len > 0)) {
            rv = errf(w->errmsg, sizeof(w->errmsg), KEEL_EINVAL,
                      "wal append: entry %zu: index not consecutive, term "
                      "or type out of range, or no data",
                      k);
            goto out;
        }
        len = wal__entry_size(&ents[k]);
        if (ents[k].len > WAL_RECORD_MAX || len > WAL_RECORD_MAX) {
            rv = errf(w->errmsg, sizeof(w->errmsg), KEEL_ETOOBIG,
                      "wal append: entry %" PRIu64 " is %zu bytes (max %u)",
                      ents[k].index, ents[k].len, WAL_RECORD_MAX);
            goto out;
        }
        plan[np++] = (struct rec_plan){WAL_REC_ENTRY, (uint32_t)len, &ents[k]};
    }
    if (hs != NULL) {
        plan[np++] =
            (struct rec_plan){WAL_REC_STATE, (uint32_t)wal__state_size(hs), hs};
    }
    rv = reserve_batch(w, plan, np, n > 0 ? ents[0].index : 0, n);
    if (rv == 0) {
        rv = write_records(w, plan, np, sync);
    }
    if (rv == 0 && sync) {
        rv = sync_batch(w);
    }
out:
    free(plan);
    return rv;
}

int wal_append(struct wal *w,
               const struct wal_entry *ents,
               size_t n,
               const struct wal_hard_state *hs)
{
    return append(w, ents, n, hs, 1);
}

int wal_write(struct wal *w,
              const struct wal_entry *ents,
              size_t n,
              const struct wal_hard_state *hs)
{
    return append(w, ents, n, hs, 0);
}

int wal_sync(struct wal *w)
{
    if (w->broken) {
        return w->broken;
    }
    return sync_batch(w);
}

int wal_save_snapshot(struct wal *w, const struct wal_snapshot *snap)
{
    struct rec_plan plan;
    int rv;

    if (w->broken) {
        return w->broken;
    }
    if (snap->index < w->log.snap.index || snap->index >= WAL_INDEX_LIMIT ||
        snap->term >= WAL_INDEX_LIMIT ||
        snap->conf.n_voters > WAL_MAX_MEMBERS ||
        snap->conf.n_learners > WAL_MAX_MEMBERS) {
        return errf(w->errmsg, sizeof(w->errmsg), KEEL_EINVAL,
                    "wal snapshot: index %" PRIu64 " is older than %" PRIu64
                    " or out of range",
                    snap->index, w->log.snap.index);
    }
    plan = (struct rec_plan){WAL_REC_SNAPSHOT,
                             (uint32_t)wal__snapshot_size(snap), snap};
    rv = reserve_batch(w, &plan, 1, 0, 0);
    if (rv == 0) {
        rv = write_records(w, &plan, 1, 1);
    }
    if (rv == 0) {
        rv = sync_batch(w);
    }
    return rv;
}

int wal_release(struct wal *w, uint64_t index)
{
    size_t k = 0;
    int rv = 0;

    if (w->broken) {
        return w->broken;
    }
    if (index > w->log.snap.index) {
        return errf(w->errmsg, sizeof(w->errmsg), KEEL_EINVAL,
                    "wal release: index %" PRIu64
                    " is after the snapshot at %" PRIu64,
                    index, w->log.snap.index);
    }
    /* Oldest first, each delete made durable before the next, so a crash
     * at any point leaves a suffix of the segments: a complete log (every
     * segment repeats snapshot marker and hard state). Without the fsync
     * in between, a filesystem could persist a later unlink and lose an
     * earlier one, leaving a hole in the sequence. */
    while (k + 1 < w->nsegs && w->segs[k].max_index <= index) {
        if (unlinkat(w->dirfd, w->segs[k].name, 0) != 0) {
            rv = errf(w->errmsg, sizeof(w->errmsg), -errno,
                      "wal release: cannot delete %s/%s: %s", w->dir,
                      w->segs[k].name, strerror(errno));
            break;
        }
        close(w->segs[k].fd);
        k++;
        rv = sync_fd(w, w->dirfd);
        if (rv != 0) {
            /* A failed fsync is fatal, like everywhere else (wal.h). */
            rv = fail(w, rv, "release: cannot sync directory after deleting",
                      w->segs[k - 1].name);
            break;
        }
    }
    if (k > 0) {
        memmove(w->segs, w->segs + k, (w->nsegs - k) * sizeof(*w->segs));
        w->nsegs -= k;
    }
    return rv;
}

/* Reading. */

static int read_fail(struct wal *w,
                     int rv,
                     const struct wal_seg *s,
                     size_t off,
                     const char *why)
{
    return errf(w->errmsg, sizeof(w->errmsg), rv,
                "wal read %s/%s: offset %zu: %s", w->dir, s->name, off, why);
}

int wal_read(struct wal *w,
             uint64_t lo,
             uint64_t hi,
             size_t max_bytes,
             struct wal_entries *out)
{
    size_t n, bytes = 0, recbytes = 0, k;
    struct wal__loc *locs;
    uint8_t *recs;

    memset(out, 0, sizeof(*out));
    if (w->broken) {
        return w->broken;
    }
    if (lo < w->log.first || lo >= hi || hi > log_last(w) + 1) {
        return errf(w->errmsg, sizeof(w->errmsg), KEEL_ENOTFOUND,
                    "wal read: [%" PRIu64 ", %" PRIu64 ") not within [%" PRIu64
                    ", %" PRIu64 "]",
                    lo, hi, w->log.first, log_last(w));
    }
    locs = w->log.locs + (lo - w->log.first);
    n = (size_t)(hi - lo);
    for (k = 0; k < n; k++) {
        if (max_bytes > 0 && k > 0 && bytes + locs[k].len > max_bytes) {
            break;
        }
        bytes += locs[k].len;
        recbytes += wal__rec_size(locs[k].len);
    }
    n = k;
    out->mem = malloc(n * sizeof(*out->v) + recbytes);
    if (out->mem == NULL) {
        return KEEL_ENOMEM;
    }
    out->v = out->mem;
    recs = (uint8_t *)(out->v + n);

    /* Adjacent records of one segment are read with one pread. */
    for (k = 0; k < n;) {
        struct wal_seg *s = seg_by_seq(w, locs[k].seq);
        size_t j = k + 1, len = wal__rec_size(locs[k].len), done = 0;
        while (j < n && locs[j].seq == locs[k].seq &&
               locs[j].off == locs[k].off + len) {
            len += wal__rec_size(locs[j].len);
            j++;
        }
        while (done < len) {
            ssize_t r = pread(s->fd, recs + done, len - done,
                              (off_t)locs[k].off + (off_t)done);
            if (r < 0 && errno == EINTR) {
                continue;
            }
            if (r <= 0) {
                return read_fail(w, r < 0 ? -errno : KEEL_ECORRUPT, s,
                                 locs[k].off + done,
                                 r < 0 ? strerror(errno) : "short file");
            }
            done += (size_t)r;
        }
        for (size_t off = 0; k < j; k++) {
            struct wal__rec rec;
            struct wal_entry *e = &out->v[k];
            const char *why;
            if (wal__rec_decode(recs, len, off, &rec, &why) != 0) {
                return read_fail(w, KEEL_ECORRUPT, s, locs[k].off, why);
            }
            if (rec.type != WAL_REC_ENTRY ||
                wal__entry_decode(rec.payload, rec.len, e) != 0 ||
                e->index != lo + k || e->term != locs[k].term) {
                return read_fail(w, KEEL_ECORRUPT, s, locs[k].off,
                                 "record is not the expected entry");
            }
            off += wal__rec_size(rec.len);
            out->n = k + 1;
        }
        recs += len;
    }
    return 0;
}

void wal_entries_free(struct wal_entries *es)
{
    free(es->mem);
    memset(es, 0, sizeof(*es));
}

/* Accessors. */

struct wal_hard_state wal_hard_state(const struct wal *w)
{
    return w->log.hs;
}

struct wal_snapshot wal_snapshot(const struct wal *w)
{
    return w->log.snap;
}

uint64_t wal_first_index(const struct wal *w)
{
    return w->log.first;
}

uint64_t wal_last_index(const struct wal *w)
{
    return log_last(w);
}

int wal_term(const struct wal *w, uint64_t index, uint64_t *term)
{
    if (index == w->log.snap.index) {
        *term = w->log.snap.term;
        return 0;
    }
    if (index < w->log.first || index > log_last(w)) {
        return KEEL_ENOTFOUND;
    }
    *term = w->log.locs[index - w->log.first].term;
    return 0;
}

const char *wal_errmsg(const struct wal *w)
{
    return w->errmsg;
}

size_t wal_segment_count(const struct wal *w)
{
    return w->nsegs;
}

const char *wal_dir(const struct wal *w)
{
    return w->dir;
}

/* Opening and recovery. */

/* mkdir path (0700) and fsync its parent so the new entry is durable. */
static int mkdir_synced(const char *path)
{
    char parent[PATH_MAX];
    char *slash;
    int fd;
    if (mkdir(path, 0700) != 0) {
        return errno == EEXIST ? 0 : -errno;
    }
    snprintf(parent, sizeof(parent), "%s", path);
    slash = strrchr(parent, '/');
    if (slash == NULL) {
        snprintf(parent, sizeof(parent), ".");
    } else if (slash == parent) {
        parent[1] = '\0';
    } else {
        *slash = '\0';
    }
    fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) != 0) {
        int rv = -errno;
        close(fd);
        return rv;
    }
    close(fd);
    return 0;
}

static int cmp_seq(const void *a, const void *b)
{
    const struct wal_seg *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* List the segment files into w->segs (sorted, fds not open yet) and
 * delete leftover .tmp files of an interrupted segment creation. */
static int list_segments(struct wal *w, char *errmsg, size_t errlen)
{
    DIR *d;
    struct dirent *de;
    int fd, rv = 0;

    fd = dup(w->dirfd);
    if (fd < 0) {
        return errf(errmsg, errlen, -errno, "wal: dup: %s", strerror(errno));
    }
    d = fdopendir(fd);
    if (d == NULL) {
        rv = -errno;
        close(fd);
        return errf(errmsg, errlen, rv, "wal: cannot list %s: %s", w->dir,
                    strerror(-rv));
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        unsigned long long seq, idx;
        char tail[8];
        if (len > 4 && strcmp(de->d_name + len - 4, ".tmp") == 0) {
            unlinkat(w->dirfd, de->d_name, 0);
            continue;
        }
        if (len != 16 + 1 + 16 + 4 ||
            sscanf(de->d_name, "%16llx-%16llx%5s", &seq, &idx, tail) != 3 ||
            strcmp(tail, ".wal") != 0) {
            continue;
        }
        rv = segs_reserve(w, w->nsegs + 1);
        if (rv != 0) {
            break;
        }
        memset(&w->segs[w->nsegs], 0, sizeof(w->segs[0]));
        w->segs[w->nsegs].seq = seq;
        w->segs[w->nsegs].fd = -1;
        memcpy(w->segs[w->nsegs].name, de->d_name, len + 1); /* 37 < 48 */
        w->nsegs++;
    }
    closedir(d);
    if (rv != 0) {
        return errf(errmsg, errlen, rv, "wal: out of memory");
    }
    if (w->nsegs > 1) {
        qsort(w->segs, w->nsegs, sizeof(*w->segs), cmp_seq);
    }
    for (size_t i = 1; i < w->nsegs; i++) {
        if (w->segs[i].seq != w->segs[i - 1].seq + 1) {
            return errf(errmsg, errlen, KEEL_ECORRUPT,
                        "wal %s: segment files missing between %s and %s",
                        w->dir, w->segs[i - 1].name, w->segs[i].name);
        }
    }
    return 0;
}

static int zero_range(struct wal *w, int fd, size_t from, size_t to)
{
    static const uint8_t zeros[64 * 1024];
    while (from < to) {
        size_t len = to - from < sizeof(zeros) ? to - from : sizeof(zeros);
        int rv = write_all(w, fd, zeros, len, (off_t)from);
        if (rv != 0) {
            return rv;
        }
        from += len;
    }
    return 0;
}

/* Start of the file's final hole: everything from there on reads as zeros
 * (a preallocated segment is mostly that). The replay's scans past the
 * last record stop there instead of touching 64 MiB of zeros. Falls back
 * to size when the filesystem cannot tell. */
static size_t final_hole(int fd, size_t size)
{
    off_t pos = 0;
    size_t h = 0;
    for (int i = 0; i < 1024; i++) {
        off_t d = lseek(fd, pos, SEEK_DATA), e;
        if (d < 0) {
            return errno == ENXIO ? h : size;
        }
        e = lseek(fd, d, SEEK_HOLE);
        if (e < 0) {
            return size;
        }
        h = (size_t)e;
        if (h >= size) {
            return size;
        }
        pos = e;
    }
    return size;
}

static int recover(struct wal *w, char *errmsg, size_t errlen)
{
    int rv;
    for (size_t i = 0; i < w->nsegs; i++) {
        struct wal_seg *s = &w->segs[i];
        int last = i + 1 == w->nsegs;
        struct stat st;
        size_t end, dirty;
        void *map;

        s->fd = openat(w->dirfd, s->name, O_RDWR | O_CLOEXEC);
        if (s->fd < 0 || fstat(s->fd, &st) != 0) {
            return errf(errmsg, errlen, -errno, "wal: cannot open %s/%s: %s",
                        w->dir, s->name, strerror(errno));
        }
        if (st.st_size < WAL_REC_HDR || st.st_size > WAL_SEGMENT_SIZE_MAX) {
            return errf(errmsg, errlen, KEEL_ECORRUPT,
                        "wal %s/%s: offset 0: bad segment size %lld", w->dir,
                        s->name, (long long)st.st_size);
        }
        s->cap = (size_t)st.st_size;
        map = mmap(NULL, s->cap, PROT_READ, MAP_PRIVATE, s->fd, 0);
        if (map == MAP_FAILED) {
            return errf(errmsg, errlen, -errno, "wal: cannot map %s/%s: %s",
                        w->dir, s->name, strerror(errno));
        }
        madvise(map, s->cap, MADV_SEQUENTIAL);
        rv = wal__replay_segment(&w->log, s->name, s->seq, map, s->cap,
                                 final_hole(s->fd, s->cap), last, &end, &dirty);
        if (rv == 0 && last && !w->log.commit) {
            /* The last batch was never closed: close it (below). */
            memcpy(w->last_hdr, (uint8_t *)map + w->log.last_off, WAL_REC_HDR);
            w->last_off = w->log.last_off;
            w->unsynced = 1;
        }
        munmap(map, s->cap);
        if (rv != 0) {
            if (rv == KEEL_ECORRUPT) {
                return errf(errmsg, errlen, rv, "wal %s/%s", w->dir,
                            w->log.errmsg);
            }
            return errf(errmsg, errlen, rv, "wal: replay: %s",
                        keel_strerror(rv));
        }
        s->max_index = w->log.seg_max_index;
        if (last && (dirty > end || w->unsynced)) {
            /* Torn tail: clear it so the next appends start clean. An
             * unclosed last batch: flag its last record, so that a torn
             * write of the next batch is not read as corruption of this
             * one (wal_record.h). Both synced before any append. */
            w->off = end;
            rv = zero_range(w, s->fd, end, dirty);
            if (rv == 0 && w->unsynced) {
                wal__rec_set_commit(w->last_hdr);
                rv = write_all(w, s->fd, w->last_hdr, WAL_REC_HDR,
                               (off_t)w->last_off);
            }
            if (rv == 0) {
                rv = sync_fd(w, s->fd);
            }
            if (rv != 0) {
                return errf(errmsg, errlen, rv,
                            "wal: cannot cut torn tail of %s/%s at %zu: %s",
                            w->dir, s->name, end, keel_strerror(rv));
            }
            w->unsynced = 0;
            w->last_flagged = 1;
        } else if (last) {
            w->off = end;
        }
    }
    rv = wal__replay_finish(&w->log, w->segs[0].name);
    if (rv != 0) {
        return errf(errmsg, errlen, rv, "wal %s/%s", w->dir, w->log.errmsg);
    }
    w->batch = w->log.batch + 1;
    return 0;
}

int wal_open(const char *data_dir,
             const struct wal_options *opts,
             struct wal **out,
             char *errmsg,
             size_t errlen)
{
    char member[PATH_MAX];
    struct wal *w;
    int rv;

    if (errmsg != NULL && errlen > 0) {
        errmsg[0] = '\0';
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return errf(errmsg, errlen, KEEL_ENOMEM, "wal: out of memory");
    }
    w->dirfd = -1;
    wal__replay_init(&w->log, w->errmsg, sizeof(w->errmsg));
    w->segment_size = WAL_SEGMENT_SIZE_DEFAULT;
    w->io.pwrite = sys_pwrite;
    w->io.fdatasync = sys_fdatasync;
    w->io.fallocate = sys_fallocate;
    if (opts != NULL) {
        if (opts->segment_size != 0) {
            w->segment_size = opts->segment_size;
        }
        if (opts->io != NULL) {
            if (opts->io->pwrite != NULL) {
                w->io.pwrite = opts->io->pwrite;
            }
            if (opts->io->fdatasync != NULL) {
                w->io.fdatasync = opts->io->fdatasync;
            }
            if (opts->io->fallocate != NULL) {
                w->io.fallocate = opts->io->fallocate;
            }
        }
    }
    if (w->segment_size < WAL_SEGMENT_SIZE_MIN ||
        w->segment_size > WAL_SEGMENT_SIZE_MAX / 2) {
        rv = errf(errmsg, errlen, KEEL_EINVAL,
                  "wal: segment size %zu not in [%u, %u]", w->segment_size,
                  WAL_SEGMENT_SIZE_MIN, WAL_SEGMENT_SIZE_MAX / 2);
        goto err;
    }
    if ((size_t)snprintf(member, sizeof(member), "%s/member", data_dir) >=
            sizeof(member) ||
        (size_t)snprintf(w->dir, sizeof(w->dir), "%s/member/wal", data_dir) >=
            sizeof(w->dir)) {
        rv = errf(errmsg, errlen, KEEL_EINVAL, "wal: data dir path too long");
        goto err;
    }
    rv = mkdir_synced(data_dir);
    if (rv == 0) {
        rv = mkdir_synced(member);
    }
    if (rv == 0) {
        rv = mkdir_synced(w->dir);
    }
    if (rv != 0) {
        errf(errmsg, errlen, rv, "wal: cannot create %s: %s", w->dir,
             keel_strerror(rv));
        goto err;
    }
    w->dirfd = open(w->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dirfd < 0) {
        rv = errf(errmsg, errlen, -errno, "wal: cannot open %s: %s", w->dir,
                  strerror(errno));
        goto err;
    }
    rv = list_segments(w, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    if (w->nsegs == 0) {
        /* A new log: segment 0, created at index 0, one committed batch. */
        w->batch = 1;
        rv = seg_create(w, 0, 0, 1);
        if (rv != 0) {
            errf(errmsg, errlen, rv, "%s", w->errmsg);
            goto err;
        }
        w->batch = 2;
    } else {
        rv = recover(w, errmsg, errlen);
        if (rv != 0) {
            goto err;
        }
    }
    w->errmsg[0] = '\0';
    *out = w;
    return 0;

err:
    wal_close(w);
    assert(rv != 0);
    return rv;
}

void wal_close(struct wal *w)
{
    if (w == NULL) {
        return;
    }
    for (size_t i = 0; i < w->nsegs; i++) {
        if (w->segs[i].fd >= 0) {
            close(w->segs[i].fd);
        }
    }
    if (w->dirfd >= 0) {
        close(w->dirfd);
    }
    wal__replay_free(&w->log);
    free(w->segs);
    free(w->buf);
    free(w);
}
