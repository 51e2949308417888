/*
 * Fuzz target for WAL recovery: the record decoder, the protobuf payload
 * decoders and the replay of segments (storage/wal_record.c), which is all
 * the code that reads bytes from disk on wal_open.
 *
 * Input, two modes chosen by byte 0:
 *   raw (bit 0x40 clear): 1..3 segments (byte 0 % 3 + 1); each segment but
 *     the last is prefixed by a little-endian u16 length; the last takes
 *     the rest. The segment sequence numbers start at the one in the first
 *     segment's header (so seeds taken from a released log work). Seeds
 *     seed-0..5 are real logs written by wal.c.
 *   structured (bit 0x40 set): a program of records (entry, hard state,
 *     snapshot marker, new segment, garbage, zeros, bit flips, batch and
 *     commit flags) encoded here with valid checksums, so the fuzzer
 *     reaches the replay rules rather than spending its time on CRCs.
 *     Seeds seed-s*.
 * Every input is replayed with and without the zero-tail hint (SEEK_HOLE's
 * stand-in; bit 0x80 of byte 0 withholds it) and must give the same result.
 * Each segment is its own exact-size allocation so ASan sees any read past
 * its end.
 *
 * Checked on every input: no crash or UB; on success the index is
 * consistent (first == snapshot + 1, every location is inside its segment
 * and decodes to the entry with that index and term), the cut offsets are
 * sane and everything past *dirty is zero; the hand-written protobuf
 * decoder agrees with protobuf-c whenever it accepts; the two CRC paths
 * agree.
 *
 * Built two ways: with libFuzzer (KEEL_FUZZ, clang) as fuzz_wal, and with
 * WAL_FUZZ_DRIVER as a plain program that replays the seed corpus under
 * ctest and can regenerate the seeds (--generate DIR) from real logs.
 */
/* Test paths are short; a truncated snprintf would fail the test anyway. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "keel_err.h"
#include "raftpb/raft.pb-c.h"
#include "wal_record.h"

#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #c);                                                     \
            abort();                                                         \
        }                                                                    \
    } while (0)

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

static void check_decoders(const uint8_t *data, size_t size)
{
    struct wal_entry e;
    struct wal_hard_state hs;

    if (wal__entry_decode(data, size, &e) == 0) {
        Raftpb__Entry *pe = raftpb__entry__unpack(NULL, size, data);
        CHECK(pe != NULL);
        CHECK(pe->term == e.term && pe->index == e.index);
        CHECK((uint32_t)pe->type == e.type);
        CHECK(pe->data.len == e.len);
        CHECK(e.len == 0 || memcmp(pe->data.data, e.data, e.len) == 0);
        raftpb__entry__free_unpacked(pe, NULL);
    }
    if (wal__state_decode(data, size, &hs) == 0) {
        Raftpb__HardState *ph = raftpb__hard_state__unpack(NULL, size, data);
        CHECK(ph != NULL);
        CHECK(ph->term == hs.term && ph->vote == hs.vote &&
              ph->commit == hs.commit);
        raftpb__hard_state__free_unpacked(ph, NULL);
    }
}

int wal_fuzz_one(const uint8_t *data, size_t size);

/* Outcome of the last wal_fuzz_one, for the driver. */
static int fuzz_rv;
static size_t fuzz_entries;

#define FUZZ_SEGS 3
#define FUZZ_SEG_MAX 65536

struct segset
{
    uint8_t *buf[FUZZ_SEGS];
    size_t len[FUZZ_SEGS];
    size_t n;
    uint64_t base;
};

static void segset_free(struct segset *ss)
{
    for (size_t i = 0; i < FUZZ_SEGS; i++) {
        free(ss->buf[i]);
    }
}

/* Raw mode: the input is the segments' bytes (what the seeds are). */
static void raw_segments(const uint8_t *data, size_t size, struct segset *ss)
{
    size_t nseg = 1 + data[0] % FUZZ_SEGS, pos = 1;
    for (size_t i = 0; i < nseg; i++) {
        size_t len;
        if (i + 1 < nseg) {
            if (size - pos < 2) {
                break;
            }
            len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
            pos += 2;
            if (len > size - pos) {
                len = size - pos;
            }
        } else {
            len = size - pos;
        }
        ss->buf[i] = malloc(len ? len : 1);
        CHECK(ss->buf[i] != NULL);
        memcpy(ss->buf[i], data + pos, len);
        ss->len[i] = len;
        ss->n++;
        pos += len;
    }
    if (ss->n > 0 && ss->len[0] >= WAL_REC_HDR + 24) {
        ss->base = le64(ss->buf[0] + WAL_REC_HDR + 16);
        if (ss->base > UINT64_MAX - FUZZ_SEGS) {
            ss->base = 0;
        }
    }
}

/* Structured mode: the input is a program of records, encoded here with
 * valid checksums, so the fuzzer reaches the replay rules (gaps,
 * truncations, snapshot markers, segment headers, batches) instead of
 * spending its time on CRCs. */
struct cursor
{
    const uint8_t *p, *end;
};

static uint8_t take8(struct cursor *c)
{
    return c->p < c->end ? *c->p++ : 0;
}

static uint64_t take_num(struct cursor *c)
{
    uint8_t b = take8(c);
    uint64_t v = 0;
    if (b < 0xF0) {
        return b;
    }
    for (int i = 0; i < 8; i++) {
        v = v << 8 | take8(c);
    }
    return v;
}

static uint8_t *seg_room(struct segset *ss, size_t need)
{
    size_t i = ss->n - 1;
    uint8_t *b;
    if (ss->len[i] + need > FUZZ_SEG_MAX) {
        return NULL;
    }
    b = realloc(ss->buf[i], ss->len[i] + need);
    CHECK(b != NULL);
    ss->buf[i] = b;
    return b + ss->len[i];
}

static void put_record(struct segset *ss,
                       uint8_t type,
                       uint8_t flags,
                       uint64_t batch,
                       const uint8_t *payload,
                       size_t len)
{
    uint8_t *dst = seg_room(ss, wal__rec_size(len));
    if (dst == NULL) {
        return;
    }
    memcpy(dst + WAL_REC_HDR, payload, len);
    ss->len[ss->n - 1] +=
        wal__rec_finish(dst, type, flags, batch, (uint32_t)len);
}

static void new_segment(struct segset *ss, uint64_t last, uint64_t batch)
{
    uint8_t hdr[WAL_SEG_HDR_PAYLOAD];
    ss->n++;
    wal__seg_hdr_encode(ss->base + ss->n - 1, last, hdr);
    put_record(ss, WAL_REC_SEGMENT, 0, batch, hdr, sizeof(hdr));
}

static void structured_segments(const uint8_t *data,
                                size_t size,
                                struct segset *ss)
{
    struct cursor c = {data + 1, data + size};
    uint8_t payload[600];
    uint64_t batch = 1;

    ss->base = data[0] & 0x3;
    new_segment(ss, take_num(&c), batch);
    while (c.p < c.end) {
        uint8_t op = take8(&c);
        uint8_t flags = (op & 0x08) ? WAL_REC_F_COMMIT : 0;
        size_t len, i;
        uint8_t *dst;
        if (op & 0x10) {
            batch += 1 + (op >> 5);
        }
        switch (op & 7) {
            case 0:
                if (ss->n < FUZZ_SEGS) {
                    new_segment(ss, take_num(&c), batch);
                }
                break;
            case 1: {
                uint8_t d[256];
                struct wal_entry e;
                e.index = take_num(&c);
                e.term = take_num(&c);
                e.type = take8(&c) % 3;
                e.len = take8(&c);
                for (i = 0; i < e.len; i++) {
                    d[i] = take8(&c);
                }
                e.data = d;
                len = wal__entry_encode(&e, payload);
                put_record(ss, WAL_REC_ENTRY, flags, batch, payload, len);
                break;
            }
            case 2: {
                struct wal_hard_state hs;
                hs.term = take_num(&c);
                hs.vote = take_num(&c);
                hs.commit = take_num(&c);
                len = wal__state_encode(&hs, payload);
                put_record(ss, WAL_REC_STATE, flags, batch, payload, len);
                break;
            }
            case 3: {
                struct wal_snapshot sn;
                memset(&sn, 0, sizeof sn);
                sn.index = take_num(&c);
                sn.term = take_num(&c);
                /* A few members in the marker's ConfState (the payload
                 * buffer holds 8 ids of 10 bytes easily). */
                sn.conf.n_voters = take8(&c) % 5;
                for (i = 0; i < sn.conf.n_voters; i++) {
                    sn.conf.voters[i] = take_num(&c);
                }
                sn.conf.n_learners = take8(&c) % 4;
                for (i = 0; i < sn.conf.n_learners; i++) {
                    sn.conf.learners[i] = take_num(&c);
                }
                len = wal__snapshot_encode(&sn, payload);
                put_record(ss, WAL_REC_SNAPSHOT, flags, batch, payload, len);
                break;
            }
            case 4: /* garbage */
                len = take8(&c);
                dst = seg_room(ss, len);
                if (dst != NULL) {
                    for (i = 0; i < len; i++) {
                        dst[i] = take8(&c);
                    }
                    ss->len[ss->n - 1] += len;
                }
                break;
            case 5: /* zeros, as preallocated space */
                len = 8 * (size_t)take8(&c);
                dst = seg_room(ss, len);
                if (dst != NULL) {
                    memset(dst, 0, len);
                    ss->len[ss->n - 1] += len;
                }
                break;
            case 6: /* an arbitrary payload with a valid checksum */
                len = take8(&c);
                for (i = 0; i < len; i++) {
                    payload[i] = take8(&c);
                }
                put_record(ss, (uint8_t)(1 + take8(&c) % 4), flags, batch,
                           payload, len);
                break;
            case 7: { /* flip a bit already written */
                size_t at = (size_t)take8(&c) << 8 | take8(&c);
                uint8_t bit = take8(&c);
                if (ss->len[ss->n - 1] > 0) {
                    at %= ss->len[ss->n - 1];
                    ss->buf[ss->n - 1][at] ^= (uint8_t)(1u << (bit % 8));
                }
                break;
            }
        }
    }
}

/* What a replay produced, to compare runs with and without the hint. */
struct outcome
{
    int rv;
    uint64_t first, n;
    struct wal_snapshot snap;
    struct wal_hard_state hs;
    size_t end[FUZZ_SEGS], dirty[FUZZ_SEGS];
};

static void replay_check(struct segset *ss, int hint, struct outcome *out)
{
    struct wal__replay r;
    char err[512];
    int rv = 0;

    memset(out, 0, sizeof(*out));

    wal__replay_init(&r, err, sizeof(err));
    for (size_t i = 0; i < ss->n && rv == 0; i++) {
        char name[32];
        size_t end = 0, dirty = 0, zero_from = ss->len[i];
        /* A truthful hint, as SEEK_HOLE gives: where the zeros start. */
        while (hint && zero_from > 0 && ss->buf[i][zero_from - 1] == 0) {
            zero_from--;
        }
        snprintf(name, sizeof(name), "seg%zu", i);
        rv = wal__replay_segment(&r, name, ss->base + i, ss->buf[i], ss->len[i],
                                 zero_from, i + 1 == ss->n, &end, &dirty);
        out->end[i] = end;
        out->dirty[i] = dirty;
        if (rv == 0) {
            CHECK(end <= ss->len[i] && end <= dirty && dirty <= ss->len[i]);
            for (size_t p = dirty; p < ss->len[i]; p++) {
                CHECK(ss->buf[i][p] == 0);
            }
        } else {
            CHECK(rv == KEEL_ECORRUPT || rv == KEEL_ENOMEM);
            CHECK(rv != KEEL_ECORRUPT || strstr(err, name) != NULL);
        }
    }
    if (rv == 0 && ss->n > 0) {
        rv = wal__replay_finish(&r, "seg0");
    }
    if (rv == 0 && ss->n > 0) {
        CHECK(r.first == r.snap.index + 1);
        for (size_t k = 0; k < r.n; k++) {
            const struct wal__loc *l = &r.locs[k];
            struct wal__rec rec;
            struct wal_entry e;
            const char *why;
            size_t s;
            CHECK(l->seq >= ss->base && l->seq - ss->base < ss->n);
            s = (size_t)(l->seq - ss->base);
            CHECK(wal__rec_decode(ss->buf[s], ss->len[s], l->off, &rec, &why) ==
                  0);
            CHECK(rec.type == WAL_REC_ENTRY && rec.len == l->len);
            CHECK(wal__entry_decode(rec.payload, rec.len, &e) == 0);
            CHECK(e.index == r.first + k && e.term == l->term);
        }
    }
    fuzz_rv = ss->n > 0 ? rv : KEEL_ECORRUPT;
    fuzz_entries = r.n;
    out->rv = rv;
    if (rv == 0) {
        out->first = r.first;
        out->n = r.n;
        out->snap = r.snap;
        out->hs = r.hs;
    }
    wal__replay_free(&r);
}

int wal_fuzz_one(const uint8_t *data, size_t size)
{
    struct segset ss;

    CHECK(crc32c_extend_sw(0, data, size) == crc32c_value(data, size));
    check_decoders(data, size);
    fuzz_rv = KEEL_ECORRUPT;
    fuzz_entries = 0;
    if (size < 1) {
        return 0;
    }
    memset(&ss, 0, sizeof(ss));
    if (data[0] & 0x40) {
        structured_segments(data, size, &ss);
    } else {
        raw_segments(data, size, &ss);
    }
    {
        /* The zero-tail hint only saves work: same outcome without it. */
        struct outcome a, b;
        replay_check(&ss, 0, &b);
        replay_check(&ss, !(data[0] & 0x80), &a);
        CHECK(memcmp(&a, &b, sizeof(a)) == 0);
    }
    segset_free(&ss);
    return 0;
}

#ifndef WAL_FUZZ_DRIVER

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return wal_fuzz_one(data, size);
}

#else /* the plain driver */

#include <dirent.h>

#include "wal.h"
#include "wal_test_util.h"

/* Pack the segment files of waldir (trailing zeros trimmed) as an input. */
static int pack_seed(const char *waldir, const char *out)
{
    char names[64][64];
    uint8_t *buf = NULL;
    size_t n = wt_list_wal(waldir, names, 64), len = 1;
    int rv;

    buf = malloc(1);
    CHECK(buf != NULL && n >= 1);
    if (n > 3) {
        n = 3;
    }
    buf[0] = (uint8_t)(n - 1);
    for (size_t i = 0; i < n; i++) {
        char p[4200];
        size_t flen, used;
        uint8_t *f;
        snprintf(p, sizeof(p), "%s/%s", waldir, names[i]);
        f = wt_read_file(p, &flen);
        CHECK(f != NULL);
        used = flen;
        while (used > 0 && f[used - 1] == 0) {
            used--;
        }
        used = (used + 7) & ~(size_t)7;
        if (used > flen) {
            used = flen;
        }
        CHECK(used < 65536);
        buf = realloc(buf, len + 2 + used);
        CHECK(buf != NULL);
        if (i + 1 < n) {
            buf[len++] = (uint8_t)used;
            buf[len++] = (uint8_t)(used >> 8);
        }
        memcpy(buf + len, f, used);
        len += used;
        free(f);
    }
    rv = wt_write_file(out, buf, len);
    free(buf);
    return rv;
}

static void append_n(struct wal *w,
                     uint64_t lo,
                     uint64_t hi,
                     uint64_t term,
                     int with_hs)
{
    uint8_t data[64];
    for (uint64_t i = lo; i < hi; i++) {
        struct wal_entry e = {i, term, (uint32_t)(i % 2), data,
                              (size_t)(i % 60)};
        struct wal_hard_state hs = {term, 1, i};
        memset(data, (int)i, sizeof(data));
        CHECK(wal_append(w, &e, 1, with_hs ? &hs : NULL) == 0);
    }
}

/* Write a few real logs and pack them as seeds into dir. */
static int generate(const char *dir)
{
    struct wal_options o = {4096, NULL};
    char err[512], data[4200], waldir[4300], out[4200];
    struct wal *w;
    char *root = wt_mkdtemp();
    int seed = 0;

    for (int scenario = 0; scenario < 6; scenario++) {
        snprintf(data, sizeof(data), "%s/s%d", root, scenario);
        snprintf(waldir, sizeof(waldir), "%s/member/wal", data);
        CHECK(wal_open(data, &o, &w, err, sizeof(err)) == 0);
        switch (scenario) {
            case 0: /* fresh */
                break;
            case 1: /* one segment, hard states */
                append_n(w, 1, 20, 1, 1);
                break;
            case 2: /* three segments */
                append_n(w, 1, 70, 1, 0);
                break;
            case 3: /* snapshot marker and suffix truncation */
                append_n(w, 1, 30, 1, 1);
                CHECK(wal_save_snapshot(w, &(struct wal_snapshot){.index = 10, .term = 1}) == 0);
                append_n(w, 20, 40, 2, 1);
                break;
            case 4: /* released prefix */
                append_n(w, 1, 100, 1, 0);
                CHECK(wal_save_snapshot(w, &(struct wal_snapshot){.index = 90, .term = 1}) == 0);
                CHECK(wal_release(w, 90) == 0);
                break;
            case 5: /* hard state only */
                for (uint64_t t = 1; t < 10; t++) {
                    CHECK(wal_append(w, NULL, 0,
                                     &(struct wal_hard_state){t, t, 0}) == 0);
                }
                break;
        }
        wal_close(w);
        snprintf(out, sizeof(out), "%s/seed-%d", dir, seed++);
        CHECK(pack_seed(waldir, out) == 0);
    }
    wt_rmrf(root);
    free(root);
    printf("wrote %d seeds to %s\n", seed, dir);
    return 0;
}

int main(int argc, char **argv)
{
    DIR *d;
    struct dirent *de;
    int n = 0;

    if (argc == 3 && strcmp(argv[1], "--generate") == 0) {
        return generate(argv[2]);
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR | --generate DIR\n", argv[0]);
        return 2;
    }
    d = opendir(argv[1]);
    if (d == NULL) {
        perror(argv[1]);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        char p[4200];
        uint8_t *buf;
        size_t len;
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(p, sizeof(p), "%s/%s", argv[1], de->d_name);
        buf = wt_read_file(p, &len);
        if (buf == NULL) {
            continue;
        }
        wal_fuzz_one(buf, len);
        /* Seeds are real logs: they must replay. */
        if (strncmp(de->d_name, "seed-", 5) == 0 && fuzz_rv != 0) {
            fprintf(stderr, "%s: replay failed: %s\n", p,
                    keel_strerror(fuzz_rv));
            return 1;
        }
        printf("%s: %s, %zu entries\n", de->d_name,
               fuzz_rv ? keel_errname(fuzz_rv) : "ok", fuzz_entries);
        /* Every prefix too: torn copies of real logs. */
        for (size_t cut = 0; cut < len; cut += 1 + len / 64) {
            wal_fuzz_one(buf, cut);
        }
        free(buf);
        n++;
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "no inputs in %s\n", argv[1]);
        return 1;
    }
    printf("replayed %d inputs\n", n);
    return 0;
}

#endif
