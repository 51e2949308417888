/*
 * Fuzz target for WAL recovery: the record decoder, the protobuf payload
 * decoders and the replay of segments (storage/wal_record.c), which is all
 * the code that reads bytes from disk on wal_open.
 *
 * Input: byte 0 selects 1..3 segments; each segment but the last is
 * prefixed by a little-endian u16 length; the last takes the rest. Each
 * segment is copied into its own exact-size allocation so ASan sees any
 * read past its end. The segment sequence numbers start at the one in the
 * first segment's header (so seeds taken from a released log work).
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

#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                      \
            abort();                                                          \
        }                                                                     \
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

int wal_fuzz_one(const uint8_t *data, size_t size)
{
    uint8_t *segs[3] = {NULL, NULL, NULL};
    size_t lens[3] = {0, 0, 0}, nseg, pos = 1;
    struct wal__replay r;
    char err[512];
    uint64_t base = 0;
    int rv = 0;

    CHECK(crc32c_extend_sw(0, data, size) == crc32c_value(data, size));
    check_decoders(data, size);
    fuzz_rv = KEEL_ECORRUPT;
    fuzz_entries = 0;
    if (size < 1) {
        return 0;
    }
    nseg = 1 + data[0] % 3;
    for (size_t i = 0; i < nseg; i++) {
        size_t len;
        if (i + 1 < nseg) {
            if (size - pos < 2) {
                nseg = i;
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
        segs[i] = malloc(len ? len : 1);
        CHECK(segs[i] != NULL);
        memcpy(segs[i], data + pos, len);
        lens[i] = len;
        pos += len;
    }
    if (nseg == 0) {
        fuzz_rv = KEEL_ECORRUPT;
        return 0;
    }
    if (lens[0] >= WAL_REC_HDR + 24) {
        base = le64(segs[0] + WAL_REC_HDR + 16);
        if (base > UINT64_MAX - 3) {
            base = 0;
        }
    }

    wal__replay_init(&r, err, sizeof(err));
    for (size_t i = 0; i < nseg && rv == 0; i++) {
        char name[32];
        size_t end = 0, dirty = 0;
        snprintf(name, sizeof(name), "seg%zu", i);
        size_t zero_from = lens[i];
        /* A truthful hint, as SEEK_HOLE gives: where the zeros start. */
        while (zero_from > 0 && segs[i][zero_from - 1] == 0) {
            zero_from--;
        }
        if (data[0] & 0x80) {
            zero_from = lens[i]; /* or no hint at all */
        }
        rv = wal__replay_segment(&r, name, base + i, segs[i], lens[i],
                                 zero_from, i + 1 == nseg, &end, &dirty);
        if (rv == 0) {
            CHECK(end <= lens[i] && end <= dirty && dirty <= lens[i]);
            for (size_t p = dirty; p < lens[i]; p++) {
                CHECK(segs[i][p] == 0);
            }
        } else {
            CHECK(rv == KEEL_ECORRUPT || rv == KEEL_ENOMEM);
            CHECK(rv != KEEL_ECORRUPT || strstr(err, name) != NULL);
        }
    }
    if (rv == 0) {
        rv = wal__replay_finish(&r, "seg0");
    }
    if (rv == 0) {
        CHECK(r.first == r.snap.index + 1);
        for (size_t k = 0; k < r.n; k++) {
            const struct wal__loc *l = &r.locs[k];
            struct wal__rec rec;
            struct wal_entry e;
            const char *why;
            CHECK(l->seq >= base && l->seq - base < nseg);
            size_t s = (size_t)(l->seq - base);
            CHECK(wal__rec_decode(segs[s], lens[s], l->off, &rec, &why) == 0);
            CHECK(rec.type == WAL_REC_ENTRY && rec.len == l->len);
            CHECK(wal__entry_decode(rec.payload, rec.len, &e) == 0);
            CHECK(e.index == r.first + k && e.term == l->term);
        }
    }
    fuzz_rv = rv;
    fuzz_entries = r.n;
    wal__replay_free(&r);
    for (size_t i = 0; i < nseg; i++) {
        free(segs[i]);
    }
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

static void append_n(struct wal *w, uint64_t lo, uint64_t hi, uint64_t term,
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
                CHECK(wal_save_snapshot(w, &(struct wal_snapshot){10, 1}) ==
                      0);
                append_n(w, 20, 40, 2, 1);
                break;
            case 4: /* released prefix */
                append_n(w, 1, 100, 1, 0);
                CHECK(wal_save_snapshot(w, &(struct wal_snapshot){90, 1}) ==
                      0);
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
