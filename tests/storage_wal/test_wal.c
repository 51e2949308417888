/*
 * Tests of storage/wal: CRC-32C, record codec, append/read/reopen, torn
 * tails cut at every byte offset, random bit flips (detected or cut, never
 * wrong data), large entries, segment rollover, snapshot markers, release,
 * suffix truncation, hard state, and failed writes/syncs/preallocations
 * injected through wal_options.io (every acknowledged entry must survive).
 *
 * KEEL_SANITIZED=1 (the ASan+UBSan run) shrinks the randomized loops.
 */
/* Test paths are short; a truncated snprintf would fail the test anyway. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "crc32c.h"
#include "keel_err.h"
#include "raftpb/raft.pb-c.h"
#include "wal.h"
#include "wal_record.h"
#include "wal_test_util.h"

/* Fixture. */

struct fx
{
    char *root;
    char *scratch; /* copies of the log (tmpfs when available) */
    char data[4096];
    char waldir[4096];
    char err[512];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->root = wt_mkdtemp();
    f->scratch = wt_mkdtemp_fast();
    snprintf(f->data, sizeof(f->data), "%s/data", f->root);
    snprintf(f->waldir, sizeof(f->waldir), "%s/member/wal", f->data);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    wt_rmrf(f->root);
    wt_rmrf(f->scratch);
    free(f->root);
    free(f->scratch);
    free(f);
    return 0;
}

static int sanitized(void)
{
    const char *s = getenv("KEEL_SANITIZED");
    return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

/* Helpers. */

/* What the test expects at each index: the term and length it appended.
 * Entry data is a function of (index, term, length). */
#define MODEL_MAX 8192
struct model
{
    uint64_t term[MODEL_MAX];
    uint32_t len[MODEL_MAX];
};

static void fill(uint8_t *buf, size_t len, uint64_t index, uint64_t term)
{
    uint32_t x = (uint32_t)(index * 2654435761u) ^ (uint32_t)(term * 40503u);
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
}

static uint8_t scratch[8 * 1024 * 1024];

static struct wal *open_ok(struct fx *f, size_t segment_size)
{
    struct wal_options o = {segment_size, NULL};
    struct wal *w = NULL;
    int rv = wal_open(f->data, &o, &w, f->err, sizeof(f->err));
    if (rv != 0) {
        fail_msg("wal_open: %s: %s", keel_errname(rv), f->err);
    }
    return w;
}

/* Append entries [lo, hi) with term and length len (len 0: vary with the
 * index) in one batch, optionally with hs, and record them in m. */
static int append_range(struct wal *w,
                        struct model *m,
                        uint64_t lo,
                        uint64_t hi,
                        uint64_t term,
                        size_t len,
                        const struct wal_hard_state *hs)
{
    size_t n = (size_t)(hi - lo), off = 0;
    struct wal_entry *ents = calloc(n ? n : 1, sizeof(*ents));
    int rv;
    assert_non_null(ents);
    for (size_t k = 0; k < n; k++) {
        uint64_t i = lo + k;
        size_t l = len ? len : 1 + (i * 37) % 200;
        assert_true(off + l <= sizeof(scratch));
        fill(scratch + off, l, i, term);
        ents[k] = (struct wal_entry){i, term, 0, scratch + off, l};
        off += l;
    }
    rv = wal_append(w, ents, n, hs);
    if (rv == 0 && m != NULL) {
        for (size_t k = 0; k < n; k++) {
            assert_true(lo + k < MODEL_MAX);
            m->term[lo + k] = term;
            m->len[lo + k] = (uint32_t)ents[k].len;
        }
    }
    free(ents);
    return rv;
}

/* One batch per entry, each with hard state {term, 0, index}. */
static void append_each(struct wal *w,
                        struct model *m,
                        uint64_t lo,
                        uint64_t hi,
                        uint64_t term,
                        size_t len)
{
    for (uint64_t i = lo; i < hi; i++) {
        struct wal_hard_state hs = {term, 0, i};
        assert_int_equal(append_range(w, m, i, i + 1, term, len, &hs), 0);
    }
}

static void check_entry(const struct model *m,
                        const struct wal_entry *e,
                        uint64_t index)
{
    uint8_t *want;
    assert_int_equal(e->index, index);
    assert_int_equal(e->term, m->term[index]);
    assert_int_equal(e->type, 0);
    assert_int_equal(e->len, m->len[index]);
    want = malloc(e->len + 1);
    assert_non_null(want);
    fill(want, e->len, index, e->term);
    assert_memory_equal(e->data, want, e->len);
    free(want);
}

/* The log holds exactly the model's entries [lo, hi). */
static void check_log(struct wal *w,
                      const struct model *m,
                      uint64_t lo,
                      uint64_t hi)
{
    struct wal_entries es;
    assert_int_equal(wal_first_index(w), lo);
    assert_int_equal(wal_last_index(w), hi - 1);
    if (lo == hi) {
        return;
    }
    assert_int_equal(wal_read(w, lo, hi, 0, &es), 0);
    assert_int_equal(es.n, hi - lo);
    for (size_t k = 0; k < es.n; k++) {
        uint64_t t;
        check_entry(m, &es.v[k], lo + k);
        assert_int_equal(wal_term(w, lo + k, &t), 0);
        assert_int_equal(t, m->term[lo + k]);
    }
    wal_entries_free(&es);
}

static void path_of(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

/* Records of one segment file, as the tests see them. */
struct recinfo
{
    size_t off, size;
    uint64_t batch;
    uint8_t type;
};

static size_t walk_records(const uint8_t *buf,
                           size_t len,
                           struct recinfo *out,
                           size_t cap)
{
    size_t off = 0, n = 0;
    struct wal__rec rec;
    const char *why;
    while (n < cap && wal__rec_decode(buf, len, off, &rec, &why) == 0) {
        out[n].off = off;
        out[n].size = wal__rec_size(rec.len);
        out[n].batch = rec.batch;
        out[n].type = rec.type;
        n++;
        off += wal__rec_size(rec.len);
    }
    return n;
}

/* Copy f's data dir to <scratch>/<name> (member/wal only). */
static void copy_data(struct fx *f,
                      const char *name,
                      char *data,
                      size_t datalen)
{
    char p[4096];
    snprintf(data, datalen, "%s/%s", f->scratch, name);
    wt_rmrf(data);
    assert_int_equal(mkdir(data, 0700), 0);
    snprintf(p, sizeof(p), "%s/member", data);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/member/wal", data);
    assert_int_equal(wt_copy_dir(f->waldir, p), 0);
}

/* Tests: CRC and codec. */

static void test_crc32c_vectors(void **state)
{
    uint8_t buf[32];
    (void)state;
    /* RFC 3720 B.4 and the usual check value. */
    assert_int_equal(crc32c_value("123456789", 9), 0xE3069283);
    memset(buf, 0, sizeof(buf));
    assert_int_equal(crc32c_value(buf, 32), 0x8A9136AA);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(crc32c_value(buf, 32), 0x62A8AB43);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)i;
    }
    assert_int_equal(crc32c_value(buf, 32), 0x46DD794E);
    for (int i = 0; i < 32; i++) {
        buf[i] = (uint8_t)(31 - i);
    }
    assert_int_equal(crc32c_value(buf, 32), 0x113FDB5C);
    assert_int_equal(crc32c_value(buf, 0), 0);
}

static void test_crc32c_sw_matches_hw_and_chains(void **state)
{
    static uint8_t buf[4096 + 16];
    (void)state;
    srand(7);
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)rand();
    }
    for (int t = 0; t < 500; t++) {
        size_t start = (size_t)rand() % 16, len = (size_t)rand() % 4096;
        size_t cut = len ? (size_t)rand() % len : 0;
        uint32_t whole = crc32c_value(buf + start, len);
        assert_int_equal(crc32c_extend_sw(0, buf + start, len), whole);
        assert_int_equal(crc32c_extend(crc32c_value(buf + start, cut),
                                       buf + start + cut, len - cut),
                         whole);
    }
    print_message("crc32c: SSE4.2 path %s\n",
                  crc32c_hw_available() ? "in use" : "not available");
}

static void test_wal_codec_matches_protobuf_c(void **state)
{
    uint8_t data[300], enc[400];
    (void)state;
    fill(data, sizeof(data), 1, 2);
    for (uint32_t type = 0; type < 3; type++) {
        struct wal_entry e = {UINT64_C(1) << 40, 77, type, data, type * 100};
        struct wal_entry d;
        Raftpb__Entry *pe;
        size_t len = wal__entry_encode(&e, enc);
        assert_int_equal(len, wal__entry_size(&e));
        pe = raftpb__entry__unpack(NULL, len, enc);
        assert_non_null(pe);
        assert_int_equal(pe->index, e.index);
        assert_int_equal(pe->term, 77);
        assert_int_equal(pe->type, type);
        assert_int_equal(pe->data.len, e.len);
        assert_int_equal(wal__entry_decode(enc, len, &d), 0);
        assert_int_equal(d.index, e.index);
        assert_int_equal(d.term, 77);
        assert_int_equal(d.type, type);
        assert_int_equal(d.len, e.len);
        assert_memory_equal(d.data, data, e.len);
        raftpb__entry__free_unpacked(pe, NULL);
        /* Truncated encodings are rejected, never misread. */
        for (size_t cut = 0; cut < len; cut++) {
            if (wal__entry_decode(enc, cut, &d) == 0) {
                /* Only a cut exactly between fields can decode. */
                assert_true(d.len == 0 || d.len == e.len);
            }
        }
    }
    {
        struct wal_hard_state hs = {5, 3, 1000}, hd;
        struct wal_snapshot s = {.index = 99, .term = 4}, sd;
        Raftpb__HardState *ph;
        size_t len = wal__state_encode(&hs, enc);
        ph = raftpb__hard_state__unpack(NULL, len, enc);
        assert_non_null(ph);
        assert_int_equal(ph->commit, 1000);
        raftpb__hard_state__free_unpacked(ph, NULL);
        assert_int_equal(wal__state_decode(enc, len, &hd), 0);
        assert_memory_equal(&hd, &hs, sizeof(hs));
        len = wal__snapshot_encode(&s, enc);
        assert_int_equal(wal__snapshot_decode(enc, len, &sd), 0);
        assert_int_equal(sd.index, 99);
        assert_int_equal(sd.term, 4);
    }
}

static void test_wal_record_rejects_damage(void **state)
{
    uint8_t rec[64];
    struct wal__rec r;
    const char *why;
    (void)state;
    memset(rec, 0, sizeof(rec));
    /* Zeros (preallocated space) are not a record. */
    assert_int_equal(wal__rec_decode(rec, sizeof(rec), 0, &r, &why),
                     KEEL_ECORRUPT);
    memcpy(rec + WAL_REC_HDR, "hello", 5);
    assert_int_equal(
        wal__rec_finish(rec, WAL_REC_ENTRY, WAL_REC_F_COMMIT, 9, 5), 32);
    assert_int_equal(wal__rec_decode(rec, 32, 0, &r, &why), 0);
    assert_int_equal(r.batch, 9);
    assert_int_equal(r.flags, WAL_REC_F_COMMIT);
    assert_int_equal(r.len, 5);
    for (size_t bit = 0; bit < 32 * 8; bit++) {
        rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(wal__rec_decode(rec, 32, 0, &r, &why), KEEL_ECORRUPT);
        assert_non_null(why);
        rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    for (size_t cut = 0; cut < 32; cut++) {
        assert_int_equal(wal__rec_decode(rec, cut, 0, &r, &why), KEEL_ECORRUPT);
    }
}

/* Tests: basic life cycle. */

static void test_wal_fresh_append_reopen(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal_hard_state hs = {3, 2, 7};
    struct wal *w = open_ok(f, 0);
    char names[4][64];

    assert_int_equal(wal_first_index(w), 1);
    assert_int_equal(wal_last_index(w), 0);
    assert_int_equal(wal_hard_state(w).term, 0);
    assert_int_equal(wal_snapshot(w).index, 0);
    assert_int_equal(wal_segment_count(w), 1);
    assert_string_equal(wal_dir(w), f->waldir);
    /* Preallocated to the default size. */
    {
        char p[4200];
        struct stat st;
        assert_int_equal(wt_list_wal(f->waldir, names, 4), 1);
        path_of(p, sizeof(p), f->waldir, names[0]);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, WAL_SEGMENT_SIZE_DEFAULT);
    }
    assert_int_equal(wal_append(w, NULL, 0, NULL), 0); /* no-op */
    assert_int_equal(append_range(w, m, 1, 11, 3, 0, &hs), 0);
    check_log(w, m, 1, 11);
    wal_close(w);

    w = open_ok(f, 0);
    check_log(w, m, 1, 11);
    hs = wal_hard_state(w);
    assert_int_equal(hs.term, 3);
    assert_int_equal(hs.vote, 2);
    assert_int_equal(hs.commit, 7);
    append_each(w, m, 11, 21, 4, 0);
    wal_close(w);
    w = open_ok(f, 0);
    check_log(w, m, 1, 21);
    assert_int_equal(wal_hard_state(w).commit, 20);
    wal_close(w);
    free(m);
}

static void test_wal_hard_state_persistence(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    struct wal_hard_state hs;

    for (uint64_t t = 1; t <= 50; t++) {
        hs = (struct wal_hard_state){t, t % 3, t / 2};
        assert_int_equal(wal_append(w, NULL, 0, &hs), 0);
    }
    wal_close(w);
    w = open_ok(f, 4096);
    hs = wal_hard_state(w);
    assert_int_equal(hs.term, 50);
    assert_int_equal(hs.vote, 2);
    assert_int_equal(hs.commit, 25);
    /* Across rollovers: entries fill several segments, the state written
     * before them must still be the recovered one. */
    assert_int_equal(append_range(w, m, 1, 101, 50, 150, NULL), 0);
    assert_true(wal_segment_count(w) > 2);
    wal_close(w);
    w = open_ok(f, 4096);
    hs = wal_hard_state(w);
    assert_int_equal(hs.term, 50);
    assert_int_equal(hs.commit, 25);
    check_log(w, m, 1, 101);
    /* The newest wins, also when written with entries. */
    hs = (struct wal_hard_state){51, 1, 100};
    assert_int_equal(append_range(w, m, 101, 102, 51, 10, &hs), 0);
    wal_close(w);
    w = open_ok(f, 4096);
    assert_int_equal(wal_hard_state(w).term, 51);
    assert_int_equal(wal_hard_state(w).commit, 100);
    wal_close(w);
    free(m);
}

static void test_wal_append_rejects_bad_batches(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    uint8_t b[4] = {1, 2, 3, 4};
    struct wal_entry e[2];

    assert_int_equal(append_range(w, m, 1, 11, 1, 0, NULL), 0);
    /* A gap. */
    assert_int_equal(append_range(w, NULL, 12, 13, 1, 0, NULL), KEEL_EINVAL);
    assert_string_not_equal(wal_errmsg(w), "");
    /* Not consecutive. */
    e[0] = (struct wal_entry){11, 1, 0, b, 4};
    e[1] = (struct wal_entry){13, 1, 0, b, 4};
    assert_int_equal(wal_append(w, e, 2, NULL), KEEL_EINVAL);
    /* Index 0. */
    e[0].index = 0;
    assert_int_equal(wal_append(w, e, 1, NULL), KEEL_EINVAL);
    /* A length without data. */
    e[0] = (struct wal_entry){11, 1, 0, NULL, 4};
    assert_int_equal(wal_append(w, e, 1, NULL), KEEL_EINVAL);
    /* Too big (the length is checked before data is read). */
    e[0] = (struct wal_entry){11, 1, 0, b, (size_t)WAL_RECORD_MAX + 1};
    assert_int_equal(wal_append(w, e, 1, NULL), KEEL_ETOOBIG);
    /* Not after the snapshot. */
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 5, .term = 1}), 0);
    assert_int_equal(append_range(w, NULL, 5, 6, 2, 0, NULL), KEEL_EINVAL);
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 4, .term = 1}),
                     KEEL_EINVAL);
    /* Nothing of that was written. */
    check_log(w, m, 6, 11);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 6, 11);
    wal_close(w);
    free(m);
}

static void test_wal_read_limits_and_errors(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    struct wal_entries es;
    size_t sum = 0;

    assert_int_equal(append_range(w, m, 1, 51, 2, 100, NULL), 0);
    assert_int_equal(wal_read(w, 1, 51, 500, &es), 0);
    assert_true(es.n >= 1 && es.n < 50);
    for (size_t k = 0; k < es.n; k++) {
        check_entry(m, &es.v[k], 1 + k);
        sum += wal__entry_size(&es.v[k]);
    }
    assert_true(sum <= 500);
    assert_true(sum + wal__entry_size(&es.v[0]) > 500);
    wal_entries_free(&es);
    /* At least one entry, whatever the limit. */
    assert_int_equal(wal_read(w, 7, 51, 1, &es), 0);
    assert_int_equal(es.n, 1);
    check_entry(m, &es.v[0], 7);
    wal_entries_free(&es);
    /* Out of range. */
    assert_int_equal(wal_read(w, 0, 5, 0, &es), KEEL_ENOTFOUND);
    wal_entries_free(&es);
    assert_int_equal(wal_read(w, 10, 52, 0, &es), KEEL_ENOTFOUND);
    wal_entries_free(&es);
    assert_int_equal(wal_read(w, 10, 10, 0, &es), KEEL_ENOTFOUND);
    wal_entries_free(&es);
    {
        uint64_t t;
        assert_int_equal(wal_term(w, 51, &t), KEEL_ENOTFOUND);
        assert_int_equal(wal_term(w, 0, &t), 0); /* the (empty) snapshot */
        assert_int_equal(t, 0);
    }

    /* The disk changes under an open log: the read says so. */
    {
        char names[16][64], p[4200];
        uint8_t byte;
        int fd;
        assert_true(wt_list_wal(f->waldir, names, 16) >= 1);
        path_of(p, sizeof(p), f->waldir, names[0]);
        fd = open(p, O_RDWR);
        assert_true(fd >= 0);
        /* Somewhere in the payload of the first entries. */
        assert_int_equal(pread(fd, &byte, 1, 300), 1);
        byte ^= 0x10;
        assert_int_equal(pwrite(fd, &byte, 1, 300), 1);
        close(fd);
        assert_int_equal(wal_read(w, 1, 51, 0, &es), KEEL_ECORRUPT);
        assert_non_null(strstr(wal_errmsg(w), names[0]));
        wal_entries_free(&es);
        /* Cut short under us. */
        assert_int_equal(truncate(p, 200), 0);
        assert_int_equal(wal_read(w, 1, 51, 0, &es), KEEL_ECORRUPT);
        assert_non_null(strstr(wal_errmsg(w), "short file"));
        wal_entries_free(&es);
    }
    wal_close(w);
    free(m);
}

/* Tests: torn tails and corruption. */

/* Whether damaging [cut, end) the way mode does leaves those bytes as they
 * were (mode 0: the file ends at cut; 1: zeros; 2: 0xA5). */
static int intact(const uint8_t *orig, size_t cut, size_t end, int mode)
{
    if (cut >= end) {
        return 1;
    }
    if (mode == 0) {
        return 0;
    }
    for (size_t i = cut; i < end; i++) {
        if (orig[i] != (mode == 1 ? 0 : 0xA5)) {
            return 0;
        }
    }
    return 1;
}

static void test_wal_torn_tail_every_offset(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 65536);
    struct recinfo recs[64];
    char names[4][64], copy[4096], p[4200];
    size_t len, nrec, start, entry_end, end;
    uint64_t last_batch;
    uint8_t *orig;

    append_each(w, m, 1, 20, 1, 0);
    {
        struct wal_hard_state hs = {2, 1, 20};
        assert_int_equal(append_range(w, m, 20, 21, 2, 40, &hs), 0);
    }
    wal_close(w);
    assert_int_equal(wt_list_wal(f->waldir, names, 4), 1);
    path_of(p, sizeof(p), f->waldir, names[0]);
    orig = wt_read_file(p, &len);
    assert_non_null(orig);
    nrec = walk_records(orig, len, recs, 64);
    last_batch = recs[nrec - 1].batch;
    /* The last batch: entry 20, then the hard state. */
    assert_int_equal(recs[nrec - 2].batch, last_batch);
    assert_int_equal(recs[nrec - 2].type, WAL_REC_ENTRY);
    assert_int_equal(recs[nrec - 1].type, WAL_REC_STATE);
    assert_true(recs[nrec - 3].batch < last_batch);
    start = recs[nrec - 2].off;
    entry_end = recs[nrec - 1].off;
    end = recs[nrec - 1].off + recs[nrec - 1].size;

    for (int mode = 0; mode < 3; mode++) {
        for (size_t cut = start; cut < end; cut++) {
            char seg[4200];
            uint8_t *buf = malloc(len);
            struct wal_options o = {65536, NULL};
            uint64_t want_last, want_commit;
            int rv;
            assert_non_null(buf);
            memcpy(buf, orig, len);
            /* Zeroing zero padding changes nothing: a record is lost only
             * if its bytes changed. */
            want_last = intact(orig, cut, entry_end, mode) ? 20 : 19;
            want_commit = intact(orig, cut, end, mode) ? 20 : 19;
            copy_data(f, "copy", copy, sizeof(copy));
            snprintf(seg, sizeof(seg), "%s/member/wal/%s", copy, names[0]);
            if (mode == 0) { /* the file ends there */
                assert_int_equal(wt_write_file(seg, buf, cut), 0);
            } else { /* zeros or garbage from there to the end */
                memset(buf + cut, mode == 1 ? 0 : 0xA5, end - cut);
                assert_int_equal(wt_write_file(seg, buf, len), 0);
            }
            free(buf);
            rv = wal_open(copy, &o, &w, f->err, sizeof(f->err));
            if (rv != 0) {
                fail_msg("cut %zu mode %d: %s: %s", cut, mode, keel_errname(rv),
                         f->err);
            }
            check_log(w, m, 1, want_last + 1);
            assert_int_equal(wal_hard_state(w).commit, want_commit);
            /* The tail was cleared: appending and reopening works. */
            {
                struct wal_hard_state hs = {3, 0, want_last + 1};
                assert_int_equal(append_range(w, m, want_last + 1,
                                              want_last + 2, 3, 33, &hs),
                                 0);
            }
            wal_close(w);
            w = NULL;
            assert_int_equal(wal_open(copy, &o, &w, f->err, sizeof(f->err)), 0);
            check_log(w, m, 1, want_last + 2);
            assert_int_equal(wal_hard_state(w).commit, want_last + 1);
            wal_close(w);
            /* Restore the model for the next round. */
            m->term[20] = 2;
            m->len[20] = 40;
        }
    }
    free(orig);
    free(m);
}

/* The last batch spans a rollover and the new segment is torn anywhere:
 * the earlier batches are all there, and a prefix of the last one. */
static void test_wal_torn_batch_across_segments(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    char names[16][64], copy[4096], seg[4200], p[4200];
    struct recinfo recs[64];
    size_t nfiles, len, nrec;
    uint8_t *orig;

    append_each(w, m, 1, 11, 1, 100);
    nfiles = wt_list_wal(f->waldir, names, 16);
    assert_int_equal(append_range(w, m, 11, 41, 2, 150, NULL), 0);
    assert_true(wt_list_wal(f->waldir, names, 16) > nfiles);
    nfiles = wt_list_wal(f->waldir, names, 16);
    wal_close(w);
    path_of(p, sizeof(p), f->waldir, names[nfiles - 1]);
    orig = wt_read_file(p, &len);
    assert_non_null(orig);
    nrec = walk_records(orig, len, recs, 64);
    assert_true(nrec > 3); /* header, snapshot, state, entries */
    for (size_t r = 3; r < nrec; r++) {
        size_t cuts[2] = {recs[r].off, recs[r].off + recs[r].size / 2};
        for (int c = 0; c < 2; c++) {
            uint64_t last;
            copy_data(f, "span", copy, sizeof(copy));
            snprintf(seg, sizeof(seg), "%s/member/wal/%s", copy,
                     names[nfiles - 1]);
            assert_int_equal(wt_write_file(seg, orig, cuts[c]), 0);
            w = NULL;
            if (wal_open(copy, NULL, &w, f->err, sizeof(f->err)) != 0) {
                fail_msg("cut at %zu: %s", cuts[c], f->err);
            }
            last = wal_last_index(w);
            assert_true(last >= 10 && last < 40);
            check_log(w, m, 1, last + 1);
            assert_int_equal(wal_hard_state(w).commit, 10);
            wal_close(w);
        }
    }
    free(orig);
    free(m);
}

/* Flip one random bit (or smash a byte) of a random record and reopen: the
 * open fails with KEEL_ECORRUPT naming a file and offset, or it succeeds
 * with correct data, cutting at most the last batch. */
static void test_wal_random_bit_flips(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    const uint64_t n = 150;
    char names[64][64], copy[4096];
    uint8_t *files[64];
    size_t lens[64], nfiles, nrec = 0;
    struct
    {
        size_t file, off, size;
        uint64_t batch;
    } *all = calloc(4096, sizeof(*all));
    uint64_t final_batch = 0;
    int trials = sanitized() ? 80 : 400, corrupt = 0, cut = 0, clean = 0;

    assert_non_null(all);
    append_each(w, m, 1, n + 1, 1, 0);
    wal_close(w);
    nfiles = wt_list_wal(f->waldir, names, 64);
    assert_true(nfiles >= 4);
    for (size_t i = 0; i < nfiles; i++) {
        char p[4200];
        struct recinfo recs[256];
        size_t k;
        path_of(p, sizeof(p), f->waldir, names[i]);
        files[i] = wt_read_file(p, &lens[i]);
        assert_non_null(files[i]);
        k = walk_records(files[i], lens[i], recs, 256);
        for (size_t j = 0; j < k; j++) {
            all[nrec].file = i;
            all[nrec].off = recs[j].off;
            all[nrec].size = recs[j].size;
            all[nrec].batch = recs[j].batch;
            if (recs[j].batch > final_batch) {
                final_batch = recs[j].batch;
            }
            nrec++;
        }
    }

    srand(12345);
    for (int t = 0; t < trials; t++) {
        size_t r, pos;
        char seg[4200];
        struct wal_options o = {4096, NULL};
        uint8_t *buf;
        int rv, in_tail_space = 0;

        if (t % 10 == 0) { /* make sure the last batch gets its share */
            r = nrec - 1 - (size_t)rand() % 2;
        } else {
            r = (size_t)rand() % nrec;
        }
        pos = all[r].off + (size_t)rand() % all[r].size;
        if (t % 25 == 1) { /* garbage in the preallocated space */
            r = nrec - 1;
            pos = all[r].off + all[r].size + (size_t)rand() % 512;
            if (pos >= lens[all[r].file]) {
                pos = lens[all[r].file] - 1;
            }
            in_tail_space = 1;
        }
        buf = malloc(lens[all[r].file]);
        assert_non_null(buf);
        memcpy(buf, files[all[r].file], lens[all[r].file]);
        if (t % 7 == 3) {
            buf[pos] = (uint8_t)(buf[pos] + 1 + rand() % 255);
        } else {
            buf[pos] ^= (uint8_t)(1u << (rand() % 8));
        }
        copy_data(f, "flip", copy, sizeof(copy));
        snprintf(seg, sizeof(seg), "%s/member/wal/%s", copy,
                 names[all[r].file]);
        assert_int_equal(wt_write_file(seg, buf, lens[all[r].file]), 0);
        free(buf);

        w = NULL;
        rv = wal_open(copy, &o, &w, f->err, sizeof(f->err));
        if (rv == KEEL_ECORRUPT) {
            char at[600], next[600];
            snprintf(at, sizeof(at), "%s: offset %zu:", names[all[r].file],
                     all[r].off);
            snprintf(next, sizeof(next), "%s: offset 0:",
                     all[r].file + 1 < nfiles ? names[all[r].file + 1] : "-");
            if (strstr(f->err, at) == NULL && strstr(f->err, next) == NULL) {
                fail_msg(
                    "flip at %s+%zu: message does not name the record:"
                    " %s",
                    names[all[r].file], pos, f->err);
            }
            assert_false(in_tail_space);
            corrupt++;
            continue;
        }
        if (rv != 0) {
            fail_msg("flip at %s+%zu: %s: %s", names[all[r].file], pos,
                     keel_errname(rv), f->err);
        }
        /* Whatever was kept is exactly what was written. */
        assert_int_equal(wal_first_index(w), 1);
        if (all[r].batch < final_batch || in_tail_space) {
            check_log(w, m, 1, n + 1);
            assert_int_equal(wal_hard_state(w).commit, n);
            clean++;
        } else {
            uint64_t last = wal_last_index(w);
            assert_true(last == n || last == n - 1);
            check_log(w, m, 1, last + 1);
            assert_true(wal_hard_state(w).commit >= n - 1);
            assert_true(wal_hard_state(w).commit <= last);
            cut++;
        }
        wal_close(w);
    }
    print_message(
        "bit flips: %d detected as corrupt, %d cut as torn tail, "
        "%d harmless\n",
        corrupt, cut, clean);
    assert_true(corrupt > trials / 2);
    assert_true(cut > 0);
    for (size_t i = 0; i < nfiles; i++) {
        free(files[i]);
    }
    free(all);
    free(m);
}

/* Far into the preallocated space of the last segment (past what a scan
 * bounded by SEEK_HOLE could skip by mistake): garbage is cut and zeroed, a
 * valid record of a later batch means records were lost: corruption. */
static void test_wal_far_tail(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 0);
    const off_t far = 10 * 1024 * 1024;
    char names[4][64], p[4200];
    uint8_t rec[64], back[64];
    struct wal_entry e = {0, 1, 0, "late", 4};
    int fd;

    append_each(w, m, 1, 11, 1, 50);
    wal_close(w);
    assert_int_equal(wt_list_wal(f->waldir, names, 4), 1);
    path_of(p, sizeof(p), f->waldir, names[0]);

    /* Garbage. */
    memset(rec, 0x5A, sizeof(rec));
    fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, rec, sizeof(rec), far), sizeof(rec));
    close(fd);
    w = open_ok(f, 0);
    check_log(w, m, 1, 11);
    wal_close(w);
    fd = open(p, O_RDONLY);
    assert_int_equal(pread(fd, back, sizeof(back), far), sizeof(back));
    close(fd);
    memset(rec, 0, sizeof(rec));
    assert_memory_equal(back, rec, sizeof(back)); /* zeroed on open */

    /* A valid record of a later batch. */
    e.index = 12;
    {
        size_t len = wal__entry_encode(&e, rec + WAL_REC_HDR);
        size_t size = wal__rec_finish(rec, WAL_REC_ENTRY, WAL_REC_F_COMMIT,
                                      1000, (uint32_t)len);
        char want[128];
        fd = open(p, O_RDWR);
        assert_int_equal(pwrite(fd, rec, size, far), (ssize_t)size);
        close(fd);
        assert_int_equal(wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                         KEEL_ECORRUPT);
        snprintf(want, sizeof(want), "valid record follows at offset %lld",
                 (long long)far);
        assert_non_null(strstr(f->err, want));
        assert_non_null(strstr(f->err, names[0]));
    }
    free(m);
}

static void test_wal_lost_record_at_segment_end(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    char names[64][64], copy[4096], seg[4200], p[4200];
    struct recinfo recs[256];
    size_t n, len, k;
    uint8_t *buf;
    int rv;

    /* Entries only: the last record of segment 0 is an entry. */
    for (uint64_t i = 1; i <= 60; i++) {
        assert_int_equal(append_range(w, m, i, i + 1, 1, 100, NULL), 0);
    }
    wal_close(w);
    n = wt_list_wal(f->waldir, names, 64);
    assert_true(n >= 3);
    path_of(p, sizeof(p), f->waldir, names[0]);
    buf = wt_read_file(p, &len);
    k = walk_records(buf, len, recs, 256);
    assert_int_equal(recs[k - 1].type, WAL_REC_ENTRY);

    /* The sealed segment lost its last record: the next segment's header
     * says where the log was when it was created. */
    memset(buf + recs[k - 1].off, 0, recs[k - 1].size);
    copy_data(f, "lost", copy, sizeof(copy));
    snprintf(seg, sizeof(seg), "%s/member/wal/%s", copy, names[0]);
    assert_int_equal(wt_write_file(seg, buf, len), 0);
    rv = wal_open(copy, NULL, &w, f->err, sizeof(f->err));
    assert_int_equal(rv, KEEL_ECORRUPT);
    assert_non_null(strstr(f->err, names[1]));
    assert_non_null(strstr(f->err, "lost"));

    /* A record in the middle of a sealed segment, zeroed. */
    free(buf);
    buf = wt_read_file(p, &len);
    memset(buf + recs[k / 2].off, 0, recs[k / 2].size);
    copy_data(f, "mid", copy, sizeof(copy));
    snprintf(seg, sizeof(seg), "%s/member/wal/%s", copy, names[0]);
    assert_int_equal(wt_write_file(seg, buf, len), 0);
    rv = wal_open(copy, NULL, &w, f->err, sizeof(f->err));
    assert_int_equal(rv, KEEL_ECORRUPT);
    {
        char at[600];
        snprintf(at, sizeof(at), "%s: offset %zu:", names[0], recs[k / 2].off);
        assert_non_null(strstr(f->err, at));
    }
    free(buf);
    free(m);
}

static void test_wal_open_errors(void **state)
{
    struct fx *f = *state;
    struct wal_options o = {100, NULL};
    struct wal *w = NULL;
    char p[4200];
    uint8_t junk[8192];

    assert_int_equal(wal_open(f->data, &o, &w, f->err, sizeof(f->err)),
                     KEEL_EINVAL);
    assert_null(w);
    w = open_ok(f, 4096);
    wal_close(w);

    /* Leftover of an interrupted segment creation: removed. Unrelated
     * files: ignored. */
    path_of(p, sizeof(p), f->waldir,
            "0000000000000001-0000000000000001.wal.tmp");
    assert_int_equal(wt_write_file(p, "x", 1), 0);
    path_of(p, sizeof(p), f->waldir, "README");
    assert_int_equal(wt_write_file(p, "x", 1), 0);
    w = open_ok(f, 4096);
    assert_int_equal(wal_segment_count(w), 1);
    wal_close(w);
    path_of(p, sizeof(p), f->waldir,
            "0000000000000001-0000000000000001.wal.tmp");
    assert_int_equal(access(p, F_OK), -1);

    /* A segment that is not one. */
    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 7 + 1);
    }
    path_of(p, sizeof(p), f->waldir, "0000000000000001-0000000000000001.wal");
    assert_int_equal(wt_write_file(p, junk, sizeof(junk)), 0);
    assert_int_equal(wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                     KEEL_ECORRUPT);
    assert_non_null(strstr(f->err,
                           "0000000000000001-0000000000000001.wal: "
                           "offset 0:"));
    /* etcd's own WAL (same file names, same member/wal directory): a
     * frame length, then walpb.Record{type: crcType, crc: 0}. */
    {
        uint8_t etcd[4096] = {4, 0, 0, 0, 0, 0, 0, 0x84, 0x08, 0x04, 0x10, 0};
        assert_int_equal(wt_write_file(p, etcd, sizeof(etcd)), 0);
        assert_int_equal(wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                         KEEL_ECORRUPT);
        assert_non_null(strstr(f->err, "etcd WAL"));
    }
    /* An empty one. */
    assert_int_equal(wt_write_file(p, junk, 0), 0);
    assert_int_equal(wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                     KEEL_ECORRUPT);
    assert_non_null(strstr(f->err, "0000000000000001-0000000000000001.wal"));
    /* A hole in the sequence. */
    unlink(p);
    path_of(p, sizeof(p), f->waldir, "0000000000000002-0000000000000001.wal");
    assert_int_equal(wt_write_file(p, junk, 100), 0);
    assert_int_equal(wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                     KEEL_ECORRUPT);
    assert_non_null(strstr(f->err, "missing"));
    unlink(p);
    /* A segment renamed to another sequence number. */
    {
        char from[4200], names[4][64];
        wt_rmrf(f->waldir);
        w = open_ok(f, 4096);
        wal_close(w);
        assert_int_equal(wt_list_wal(f->waldir, names, 4), 1);
        path_of(from, sizeof(from), f->waldir, names[0]);
        path_of(p, sizeof(p), f->waldir,
                "0000000000000007-0000000000000001.wal");
        assert_int_equal(rename(from, p), 0);
        assert_int_equal(wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                         KEEL_ECORRUPT);
        assert_non_null(strstr(f->err, "header says segment 0"));
        /* A header of a future format version (valid checksums). */
        {
            uint8_t rec[WAL_REC_HDR + WAL_SEG_HDR_PAYLOAD];
            wal__seg_hdr_encode(7, 0, rec + WAL_REC_HDR);
            rec[WAL_REC_HDR + 8] = 2; /* version */
            wal__rec_finish(rec, WAL_REC_SEGMENT, 0, 1, WAL_SEG_HDR_PAYLOAD);
            assert_int_equal(wt_write_file(p, rec, sizeof(rec)), 0);
            assert_int_equal(
                wal_open(f->data, NULL, &w, f->err, sizeof(f->err)),
                KEEL_ECORRUPT);
            assert_non_null(strstr(f->err, "unsupported WAL version 2"));
        }
        unlink(p);
    }
    /* The data dir is a file. */
    path_of(p, sizeof(p), f->root, "file");
    assert_int_equal(wt_write_file(p, "x", 1), 0);
    assert_true(wal_open(p, NULL, &w, f->err, sizeof(f->err)) < 0);
    assert_string_not_equal(f->err, "");
}

/* Tests: sizes, rollover, many appends. */

static void test_wal_large_entries(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    const size_t big = 1536 * 1024; /* --max-request-bytes */
    struct wal *w = open_ok(f, 1024 * 1024);

    /* Bigger than a segment: each gets a segment of its own size. */
    assert_int_equal(append_range(w, m, 1, 3, 1, big, NULL), 0);
    assert_int_equal(append_range(w, m, 3, 4, 1, 1, NULL), 0);
    assert_int_equal(append_range(w, m, 4, 5, 1, big, NULL), 0);
    assert_true(wal_segment_count(w) >= 3);
    check_log(w, m, 1, 5);
    wal_close(w);
    w = open_ok(f, 1024 * 1024);
    check_log(w, m, 1, 5);
    wal_close(w);
    /* A 7.5 MiB batch in a 16 MiB segment: written in chunks, one sync. */
    w = open_ok(f, 16 * 1024 * 1024);
    assert_int_equal(append_range(w, m, 5, 10, 2, big, NULL), 0);
    check_log(w, m, 1, 10);
    wal_close(w);
    w = open_ok(f, 1024 * 1024);
    check_log(w, m, 1, 10);
    /* Back to small entries, replacing the big ones. */
    assert_int_equal(append_range(w, m, 5, 6, 3, 1, NULL), 0);
    /* An empty entry (a leader's no-op). */
    {
        struct wal_entry e = {6, 3, 0, NULL, 0};
        struct wal_entries es;
        assert_int_equal(wal_append(w, &e, 1, NULL), 0);
        assert_int_equal(wal_read(w, 6, 7, 0, &es), 0);
        assert_int_equal(es.n, 1);
        assert_int_equal(es.v[0].len, 0);
        assert_int_equal(es.v[0].term, 3);
        wal_entries_free(&es);
    }
    wal_close(w);
    free(m);
}

static void test_wal_rollover_and_many_appends(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    uint64_t n = sanitized() ? 600 : 2000;
    struct wal *w = open_ok(f, 16384);
    char names[512][64];

    append_each(w, m, 1, n + 1, 1, 0);
    assert_true(wal_segment_count(w) > 5);
    assert_int_equal(wt_list_wal(f->waldir, names, 512), wal_segment_count(w));
    wal_close(w);
    w = open_ok(f, 16384);
    check_log(w, m, 1, n + 1);
    assert_int_equal(wal_hard_state(w).commit, n);
    /* One batch that spans several segments. */
    assert_int_equal(append_range(w, m, n + 1, n + 201, 2, 300, NULL), 0);
    wal_close(w);
    w = open_ok(f, 16384);
    check_log(w, m, 1, n + 201);
    wal_close(w);
    free(m);
}

/* Tests: suffix truncation, snapshots, release. */

static void test_wal_truncate_suffix(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    uint64_t t;

    assert_int_equal(append_range(w, m, 1, 101, 1, 0, NULL), 0);
    assert_true(wal_segment_count(w) > 3);
    /* Replace 50.. with a shorter suffix of a newer term. */
    assert_int_equal(append_range(w, m, 50, 56, 2, 0, NULL), 0);
    check_log(w, m, 1, 56);
    assert_int_equal(wal_term(w, 49, &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(wal_term(w, 50, &t), 0);
    assert_int_equal(t, 2);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 1, 56);
    /* Reach back into an older segment. */
    assert_int_equal(append_range(w, m, 20, 21, 3, 0, NULL), 0);
    check_log(w, m, 1, 21);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 1, 21);
    append_each(w, m, 21, 31, 3, 0);
    /* Replace the very last entry. */
    assert_int_equal(append_range(w, m, 30, 31, 4, 7, NULL), 0);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 1, 31);
    wal_close(w);
    free(m);
}

static void test_wal_snapshot_marker(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    uint64_t t;

    assert_int_equal(append_range(w, m, 1, 101, 1, 0, NULL), 0);
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 50, .term = 1}), 0);
    check_log(w, m, 51, 101);
    assert_int_equal(wal_term(w, 50, &t), 0);
    assert_int_equal(t, 1);
    assert_int_equal(wal_term(w, 49, &t), KEEL_ENOTFOUND);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 51, 101);
    assert_int_equal(wal_snapshot(w).index, 50);
    assert_int_equal(wal_snapshot(w).term, 1);
    /* A snapshot from a leader, past our log: the log restarts after it. */
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 200, .term = 3}), 0);
    assert_int_equal(wal_first_index(w), 201);
    assert_int_equal(wal_last_index(w), 200);
    assert_int_equal(wal_term(w, 200, &t), 0);
    assert_int_equal(t, 3);
    assert_int_equal(append_range(w, m, 150, 151, 3, 0, NULL), KEEL_EINVAL);
    wal_close(w);
    w = open_ok(f, 4096);
    assert_int_equal(wal_first_index(w), 201);
    assert_int_equal(wal_last_index(w), 200);
    append_each(w, m, 201, 211, 3, 0);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 201, 211);
    assert_int_equal(wal_snapshot(w).index, 200);
    wal_close(w);
    free(m);
}

/* The configuration recorded in a snapshot marker survives reopening and
 * the release of every segment before the marker (each new segment repeats
 * it), so a restart from a compacted log knows its members. */
static void test_wal_snapshot_keeps_conf_state(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    struct wal_snapshot s = {.index = 100, .term = 2};
    s.conf.n_voters = 3;
    s.conf.voters[0] = 0x8e9e05c52164694dULL;
    s.conf.voters[1] = 2;
    s.conf.voters[2] = UINT64_MAX;
    s.conf.n_learners = 1;
    s.conf.learners[0] = 7;

    append_each(w, m, 1, 201, 2, 100);
    assert_int_equal(wal_save_snapshot(w, &s), 0);
    assert_int_equal(wal_release(w, 100), 0);
    append_each(w, m, 201, 301, 2, 100); /* new segments repeat the marker */
    wal_close(w);
    w = open_ok(f, 4096);
    struct wal_snapshot got = wal_snapshot(w);
    assert_int_equal(got.index, 100);
    assert_int_equal(got.term, 2);
    assert_memory_equal(&got.conf, &s.conf, sizeof s.conf);
    check_log(w, m, 101, 301);
    /* A marker without a configuration reads back empty. */
    assert_int_equal(
        wal_save_snapshot(w, &(struct wal_snapshot){.index = 150, .term = 2}),
        0);
    wal_close(w);
    w = open_ok(f, 4096);
    got = wal_snapshot(w);
    assert_int_equal(got.index, 150);
    assert_int_equal(got.conf.n_voters + got.conf.n_learners, 0);
    /* Too many members: refused, nothing written. */
    s.index = 160;
    s.conf.n_voters = WAL_MAX_MEMBERS + 1;
    assert_int_equal(wal_save_snapshot(w, &s), KEEL_EINVAL);
    wal_close(w);
    free(m);
}

static void test_wal_release(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);
    char names[128][64], copy[4096], p[4200];
    size_t before, after;

    append_each(w, m, 1, 201, 1, 100);
    before = wal_segment_count(w);
    assert_true(before > 5);
    /* Not past the snapshot. */
    assert_int_equal(wal_release(w, 10), KEEL_EINVAL);
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 100, .term = 1}), 0);
    assert_int_equal(wt_list_wal(f->waldir, names, 128), before);

    /* A crash half way through the release (only the oldest file gone)
     * leaves a log that opens. */
    copy_data(f, "half", copy, sizeof(copy));
    snprintf(p, sizeof(p), "%s/member/wal/%s", copy, names[0]);
    assert_int_equal(unlink(p), 0);
    {
        struct wal *w2 = NULL;
        assert_int_equal(wal_open(copy, NULL, &w2, f->err, sizeof(f->err)), 0);
        check_log(w2, m, 101, 201);
        wal_close(w2);
    }
    /* Deleting a middle file by hand does not open. */
    copy_data(f, "middle", copy, sizeof(copy));
    snprintf(p, sizeof(p), "%s/member/wal/%s", copy, names[before / 2]);
    assert_int_equal(unlink(p), 0);
    {
        struct wal *w2 = NULL;
        assert_int_equal(wal_open(copy, NULL, &w2, f->err, sizeof(f->err)),
                         KEEL_ECORRUPT);
        assert_non_null(strstr(f->err, "missing"));
    }

    assert_int_equal(wal_release(w, 100), 0);
    after = wal_segment_count(w);
    assert_true(after < before);
    assert_true(after > 1);
    assert_int_equal(wt_list_wal(f->waldir, names, 128), after);
    check_log(w, m, 101, 201);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 101, 201);
    assert_int_equal(wal_snapshot(w).index, 100);
    assert_int_equal(wal_hard_state(w).commit, 200);
    assert_int_equal(wal_segment_count(w), after);

    /* Deleting the oldest file by hand, past what the snapshot covers,
     * does not open: entries would be missing. */
    copy_data(f, "noprefix", copy, sizeof(copy));
    {
        struct wal *w2 = NULL;
        snprintf(p, sizeof(p), "%s/member/wal/%s", copy, names[0]);
        assert_int_equal(unlink(p), 0);
        assert_int_equal(wal_open(copy, NULL, &w2, f->err, sizeof(f->err)),
                         KEEL_ECORRUPT);
        assert_non_null(strstr(f->err, "missing"));
    }

    /* Everything covered: only the segment being written stays. */
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 200, .term = 1}), 0);
    assert_int_equal(wal_release(w, 200), 0);
    assert_int_equal(wal_segment_count(w), 1);
    assert_int_equal(wt_list_wal(f->waldir, names, 128), 1);
    wal_close(w);
    w = open_ok(f, 4096);
    assert_int_equal(wal_first_index(w), 201);
    assert_int_equal(wal_last_index(w), 200);
    assert_int_equal(wal_hard_state(w).commit, 200);
    append_each(w, m, 201, 301, 2, 100);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 201, 301);
    wal_close(w);
    free(m);
}

static void test_wal_release_after_truncation(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 4096);

    append_each(w, m, 1, 101, 1, 100);
    /* Entries 31..100 die; the log goes on from 31 in newer segments. */
    append_each(w, m, 31, 121, 2, 100);
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 60, .term = 2}), 0);
    assert_int_equal(wal_release(w, 60), 0);
    check_log(w, m, 61, 121);
    wal_close(w);
    w = open_ok(f, 4096);
    check_log(w, m, 61, 121);
    assert_int_equal(wal_hard_state(w).commit, 120);
    wal_close(w);
    free(m);
}

/* Tests: injected failures. */

static struct
{
    int kind; /* 0 pwrite, 1 fdatasync, 2 fallocate */
    int fail_at;
    int calls[3];
    int partial; /* a failing pwrite first writes half */
    int fired;
} fault;

static ssize_t f_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (fault.kind == 0 && ++fault.calls[0] == fault.fail_at) {
        fault.fired = 1;
        if (fault.partial && len > 1) {
            ssize_t k = pwrite(fd, buf, len / 2, off);
            (void)k;
        }
        errno = ENOSPC;
        return -1;
    }
    return pwrite(fd, buf, len, off);
}

static int f_fdatasync(int fd)
{
    if (fault.kind == 1 && ++fault.calls[1] == fault.fail_at) {
        fault.fired = 1;
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static int f_fallocate(int fd, off_t off, off_t len)
{
    if (fault.kind == 2 && ++fault.calls[2] == fault.fail_at) {
        fault.fired = 1;
        return ENOSPC;
    }
    return posix_fallocate(fd, off, len);
}

static const struct wal_io fault_io = {f_pwrite, f_fdatasync, f_fallocate};

/* Run the workload with the fail_at-th call of kind failing. Returns
 * whether the fault fired. */
static int fault_round(struct fx *f, int kind, int fail_at, int partial)
{
    struct model *m = calloc(1, sizeof(*m));
    struct wal_options o = {4096, &fault_io};
    struct wal *w = NULL;
    uint64_t acked = 0, acked_commit = 0;
    int rv, fired;

    wt_rmrf(f->data);
    memset(&fault, 0, sizeof(fault));
    fault.kind = kind;
    fault.fail_at = fail_at;
    fault.partial = partial;

    rv = wal_open(f->data, &o, &w, f->err, sizeof(f->err));
    if (rv == 0) {
        for (uint64_t i = 1; i <= 30; i++) {
            struct wal_hard_state hs = {1, 1, i};
            rv = append_range(w, m, i, i + 1, 1, 150 + (i * 53) % 300, &hs);
            if (rv != 0) {
                break;
            }
            acked = i;
            acked_commit = i;
        }
        if (rv != 0) {
            struct wal_entries es;
            /* Never retried: the object refuses more work. */
            assert_int_equal(
                append_range(w, NULL, acked + 1, acked + 2, 1, 10, NULL), rv);
            assert_int_equal(
                wal_save_snapshot(w, &(struct wal_snapshot){.index = acked, .term = 1}), rv);
            assert_int_equal(wal_read(w, 1, 2, 0, &es), rv);
            wal_entries_free(&es);
            assert_string_not_equal(wal_errmsg(w), "");
        }
        wal_close(w);
    }
    fired = fault.fired;
    if (fired) {
        assert_true(rv == -ENOSPC || rv == -EIO);
    }
    memset(&fault, 0, sizeof(fault));

    /* Restart: every acknowledged entry is there. */
    w = NULL;
    rv = wal_open(f->data, &(struct wal_options){4096, NULL}, &w, f->err,
                  sizeof(f->err));
    if (rv != 0) {
        fail_msg("kind %d fail_at %d: reopen: %s: %s", kind, fail_at,
                 keel_errname(rv), f->err);
    }
    assert_true(wal_last_index(w) >= acked);
    assert_true(wal_hard_state(w).commit >= acked_commit);
    assert_true(wal_hard_state(w).commit <= wal_last_index(w));
    if (acked > 0) {
        struct wal_entries es;
        assert_int_equal(wal_read(w, 1, acked + 1, 0, &es), 0);
        for (size_t k = 0; k < es.n; k++) {
            check_entry(m, &es.v[k], 1 + k);
        }
        wal_entries_free(&es);
    }
    /* And the log goes on. */
    {
        uint64_t next = wal_last_index(w) + 1;
        assert_int_equal(append_range(w, m, next, next + 1, 2, 64, NULL), 0);
        wal_close(w);
        w = open_ok(f, 4096);
        assert_int_equal(wal_last_index(w), next);
        wal_close(w);
    }
    free(m);
    return fired;
}

/* Cutting a torn tail on open writes zeros and syncs: if that fails the
 * open fails (nothing is appended after garbage), and a later open works. */
static void test_wal_open_cut_fails(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal_options o = {4096, &fault_io};
    struct wal *w = open_ok(f, 4096);
    char names[4][64], p[4200];
    uint8_t junk[100];
    int fd;

    append_each(w, m, 1, 6, 1, 50);
    wal_close(w);
    assert_int_equal(wt_list_wal(f->waldir, names, 4), 1);
    path_of(p, sizeof(p), f->waldir, names[0]);
    memset(junk, 0x77, sizeof(junk));
    fd = open(p, O_RDWR);
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 2000), sizeof(junk));
    close(fd);
    for (int kind = 0; kind < 2; kind++) {
        memset(&fault, 0, sizeof(fault));
        fault.kind = kind;
        fault.fail_at = 1;
        w = NULL;
        assert_int_equal(wal_open(f->data, &o, &w, f->err, sizeof(f->err)),
                         kind == 0 ? -ENOSPC : -EIO);
        assert_null(w);
        assert_non_null(strstr(f->err, "cannot cut torn tail"));
        assert_non_null(strstr(f->err, names[0]));
    }
    memset(&fault, 0, sizeof(fault));
    w = open_ok(f, 4096);
    check_log(w, m, 1, 6);
    wal_close(w);
    free(m);
}

static void test_wal_failed_io_keeps_acked(void **state)
{
    struct fx *f = *state;
    int step = sanitized() ? 3 : 1;
    int rounds = 0;

    /* Hundreds of short runs whose outcome does not depend on the disk's
     * sync semantics: run them on tmpfs when there is one. */
    snprintf(f->data, sizeof(f->data), "%s/fault", f->scratch);
    snprintf(f->waldir, sizeof(f->waldir), "%s/member/wal", f->data);
    for (int kind = 0; kind < 3; kind++) {
        for (int partial = 0; partial <= (kind == 0); partial++) {
            int at;
            for (at = 1; at < 1000; at += step) {
                rounds++;
                if (!fault_round(f, kind, at, partial)) {
                    break;
                }
            }
            assert_true(at > 3); /* faults did fire */
        }
    }
    print_message("failed I/O: %d rounds\n", rounds);
}

/* Group commit in two steps: wal_write several times, one wal_sync. */
static void test_wal_write_then_sync(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal_options o = {4096, &fault_io};
    struct wal_hard_state hs = {2, 1, 3};
    struct wal *w = NULL;
    int syncs;

    memset(&fault, 0, sizeof(fault));
    fault.kind = 1; /* count fdatasync calls, never fail */
    fault.fail_at = 1 << 30;
    assert_int_equal(wal_open(f->data, &o, &w, f->err, sizeof(f->err)), 0);
    syncs = fault.calls[1];
    /* Several writes, a truncation among them, no sync yet. */
    {
        struct wal_entry e[40];
        for (uint64_t i = 1; i <= 40; i++) {
            size_t l = 1 + (i * 37) % 200;
            fill(scratch + i * 256, l, i, 1);
            e[i - 1] = (struct wal_entry){i, 1, 0, scratch + i * 256, l};
            m->term[i] = 1;
            m->len[i] = (uint32_t)l;
        }
        assert_int_equal(wal_write(w, e, 40, NULL), 0);
    }
    assert_int_equal(append_range(w, NULL, 30, 35, 2, 20, NULL), 0);
    for (uint64_t i = 30; i < 35; i++) {
        m->term[i] = 2;
        m->len[i] = 20;
    }
    /* (append_range used wal_append: that synced. Now without.) */
    syncs = fault.calls[1];
    {
        struct wal_entry e = {35, 2, 0, scratch, 20};
        fill(scratch, 20, 35, 2);
        m->term[35] = 2;
        m->len[35] = 20;
        assert_int_equal(wal_write(w, &e, 1, &hs), 0);
    }
    assert_int_equal(fault.calls[1], syncs); /* no sync yet */
    check_log(w, m, 1, 36);                  /* but readable */
    assert_int_equal(wal_hard_state(w).commit, 3);
    /* Bad input writes nothing. */
    assert_int_equal(append_range(w, NULL, 40, 41, 2, 5, NULL), KEEL_EINVAL);
    assert_int_equal(wal_sync(w), 0);
    assert_int_equal(fault.calls[1], syncs + 1); /* one sync for it all */
    assert_int_equal(wal_sync(w), 0);
    assert_int_equal(fault.calls[1], syncs + 1); /* nothing pending */
    /* An empty wal_append syncs pending writes. */
    {
        struct wal_entry e = {36, 2, 0, scratch, 7};
        fill(scratch, 7, 36, 2);
        m->term[36] = 2;
        m->len[36] = 7;
        assert_int_equal(wal_write(w, &e, 1, NULL), 0);
    }
    assert_int_equal(wal_append(w, NULL, 0, NULL), 0);
    assert_int_equal(fault.calls[1], syncs + 2);
    wal_close(w);
    memset(&fault, 0, sizeof(fault));
    w = open_ok(f, 4096);
    check_log(w, m, 1, 37);
    assert_int_equal(wal_hard_state(w).term, 2);
    assert_int_equal(wal_hard_state(w).commit, 3);
    wal_close(w);
    free(m);
}

/* A batch that never got its commit flag (written, then the process died
 * before wal_sync) is kept by recovery; the next batch torn by a crash must
 * still read as a torn tail, not as corruption. */
static void test_wal_torn_after_unclosed_batch(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal *w = open_ok(f, 65536);
    struct recinfo recs[64];
    char names[4][64], p[4200];
    uint8_t *buf;
    size_t len, nrec, k;

    append_each(w, m, 1, 6, 1, 50);
    /* Written, not synced, process gone (the page cache keeps it). */
    {
        struct wal_entry e[3];
        for (uint64_t i = 6; i < 9; i++) {
            fill(scratch + i * 100, 50, i, 1);
            e[i - 6] = (struct wal_entry){i, 1, 0, scratch + i * 100, 50};
            m->term[i] = 1;
            m->len[i] = 50;
        }
        assert_int_equal(wal_write(w, e, 3, NULL), 0);
    }
    wal_close(w);
    w = open_ok(f, 65536);
    check_log(w, m, 1, 9);
    /* The next batch, then a crash that lost its first record only. */
    assert_int_equal(append_range(w, m, 9, 12, 2, 600, NULL), 0);
    wal_close(w);
    assert_int_equal(wt_list_wal(f->waldir, names, 4), 1);
    path_of(p, sizeof(p), f->waldir, names[0]);
    buf = wt_read_file(p, &len);
    assert_non_null(buf);
    nrec = walk_records(buf, len, recs, 64);
    for (k = 0; k < nrec && !(recs[k].type == WAL_REC_ENTRY &&
                              recs[k].batch == recs[nrec - 1].batch);
         k++) {
    }
    assert_true(k + 2 < nrec + 1);
    memset(buf + recs[k].off, 0, recs[k].size);
    assert_int_equal(wt_write_file(p, buf, len), 0);
    free(buf);
    w = NULL;
    if (wal_open(f->data, NULL, &w, f->err, sizeof(f->err)) != 0) {
        fail_msg("reopen: %s", f->err);
    }
    check_log(w, m, 1, 9);
    wal_close(w);
    free(m);
}

/* A failed directory fsync during release is fatal too, and the log on
 * disk is still complete. */
static void test_wal_release_sync_failure(void **state)
{
    struct fx *f = *state;
    struct model *m = calloc(1, sizeof(*m));
    struct wal_options o = {4096, &fault_io};
    struct wal *w = NULL;

    memset(&fault, 0, sizeof(fault));
    fault.kind = 1;
    assert_int_equal(wal_open(f->data, &o, &w, f->err, sizeof(f->err)), 0);
    append_each(w, m, 1, 101, 1, 100);
    assert_int_equal(wal_save_snapshot(w, &(struct wal_snapshot){.index = 80, .term = 1}), 0);
    assert_true(wal_segment_count(w) > 3);
    fault.fail_at = fault.calls[1] + 2; /* the second delete's fsync */
    assert_int_equal(wal_release(w, 80), -EIO);
    assert_true(fault.fired);
    assert_non_null(strstr(wal_errmsg(w), "release"));
    assert_int_equal(append_range(w, NULL, 101, 102, 1, 10, NULL), -EIO);
    assert_int_equal(wal_release(w, 80), -EIO);
    wal_close(w);
    memset(&fault, 0, sizeof(fault));
    w = open_ok(f, 4096);
    check_log(w, m, 81, 101);
    assert_int_equal(wal_hard_state(w).commit, 100);
    wal_close(w);
    free(m);
}

/* Tests: crashes that lose un-synced writes (lazyfs-style). pwrite only
 * queues; fdatasync applies the fd's queue. At the crash point a random
 * subset of the queued sectors (512 B or 4 KiB) reaches the file (reordered,
 * torn writes), the rest is lost, and the process "dies". */

struct lazy_write
{
    int fd;
    off_t off;
    size_t len;
    uint8_t *data;
};

static struct
{
    struct lazy_write *v;
    size_t n, cap;
    int events, crash_at, crashed;
    size_t sector; /* unit of what survives a crash: 512 or 4096 */
} lazy;

static void lazy_apply(size_t i)
{
    ssize_t k =
        pwrite(lazy.v[i].fd, lazy.v[i].data, lazy.v[i].len, lazy.v[i].off);
    assert_int_equal(k, (ssize_t)lazy.v[i].len);
}

static int lazy_event(void)
{
    if (lazy.crashed || ++lazy.events == lazy.crash_at) {
        lazy.crashed = 1;
        errno = EIO;
        return -1;
    }
    return 0;
}

static ssize_t lazy_pwrite(int fd, const void *buf, size_t len, off_t off)
{
    if (lazy_event() != 0) {
        return -1;
    }
    if (lazy.n == lazy.cap) {
        lazy.cap = lazy.cap ? lazy.cap * 2 : 64;
        lazy.v = realloc(lazy.v, lazy.cap * sizeof(*lazy.v));
        assert_non_null(lazy.v);
    }
    lazy.v[lazy.n].fd = fd;
    lazy.v[lazy.n].off = off;
    lazy.v[lazy.n].len = len;
    lazy.v[lazy.n].data = malloc(len ? len : 1);
    assert_non_null(lazy.v[lazy.n].data);
    memcpy(lazy.v[lazy.n].data, buf, len);
    lazy.n++;
    return (ssize_t)len;
}

static int lazy_fdatasync(int fd)
{
    size_t keep = 0;
    if (lazy_event() != 0) {
        return -1;
    }
    for (size_t i = 0; i < lazy.n; i++) {
        if (lazy.v[i].fd == fd) {
            lazy_apply(i);
            free(lazy.v[i].data);
        } else {
            lazy.v[keep++] = lazy.v[i];
        }
    }
    lazy.n = keep;
    return fdatasync(fd);
}

/* The crash: some sectors of what was not synced make it, in any order. */
static void lazy_crash(unsigned *seed)
{
    for (size_t i = 0; i < lazy.n; i++) {
        struct lazy_write *q = &lazy.v[i];
        size_t pos = 0;
        while (pos < q->len) {
            size_t sect = lazy.sector -
                          (size_t)((q->off + (off_t)pos) % (off_t)lazy.sector);
            if (sect > q->len - pos) {
                sect = q->len - pos;
            }
            if (rand_r(seed) % 2) {
                ssize_t k =
                    pwrite(q->fd, q->data + pos, sect, q->off + (off_t)pos);
                /* EBADF: a segment being created, which the failed
                 * creation already deleted and closed. */
                assert_true(k == (ssize_t)sect || errno == EBADF);
            }
            pos += sect;
        }
        free(q->data);
    }
    lazy.n = 0;
}

static const struct wal_io lazy_io = {lazy_pwrite, lazy_fdatasync, NULL};

/* The logical state of a log, as the records written so far make it. */
struct lstate
{
    struct wal_snapshot snap;
    struct wal_hard_state hs;
    uint64_t first, last;
    struct model m;
};

/* One record of the group being committed. */
struct grec
{
    uint8_t type; /* WAL_REC_ENTRY, WAL_REC_STATE, WAL_REC_SNAPSHOT */
    uint64_t index, term;
    uint32_t len;
    struct wal_hard_state hs;
    struct wal_snapshot snap;
};

static void lstate_apply(struct lstate *st, const struct grec *g)
{
    switch (g->type) {
        case WAL_REC_ENTRY:
            assert_true(g->index > st->snap.index && g->index <= st->last + 1);
            st->last = g->index;
            st->m.term[g->index] = g->term;
            st->m.len[g->index] = g->len;
            break;
        case WAL_REC_STATE:
            st->hs = g->hs;
            break;
        default:
            if (g->snap.index >= st->last) {
                st->last = g->snap.index;
                st->first = g->snap.index + 1;
            } else if (g->snap.index >= st->first) {
                st->first = g->snap.index + 1;
            }
            st->snap = g->snap;
    }
}

/* Does the reopened log hold exactly st? */
static int lstate_matches(struct wal *w, const struct lstate *st)
{
    struct wal_snapshot sn = wal_snapshot(w);
    struct wal_hard_state hs = wal_hard_state(w);
    struct wal_entries es;
    int ok;

    if (sn.index != st->snap.index || sn.term != st->snap.term ||
        memcmp(&hs, &st->hs, sizeof(hs)) != 0 ||
        wal_first_index(w) != st->first || wal_last_index(w) != st->last) {
        return 0;
    }
    if (st->last < st->first) {
        return 1;
    }
    assert_int_equal(wal_read(w, st->first, st->last + 1, 0, &es), 0);
    ok = es.n == st->last - st->first + 1;
    for (size_t k = 0; ok && k < es.n; k++) {
        uint64_t i = st->first + k;
        ok = es.v[k].term == st->m.term[i] && es.v[k].len == st->m.len[i];
        if (ok) {
            uint8_t *want = malloc(es.v[k].len + 1);
            assert_non_null(want);
            fill(want, es.v[k].len, i, es.v[k].term);
            ok = memcmp(want, es.v[k].data, es.v[k].len) == 0;
            free(want);
        }
    }
    wal_entries_free(&es);
    return ok;
}

#define GROUP_MAX 64

/* One run of random groups until the crash. A group is one sync: one
 * wal_append, or up to three wal_write (with truncations between them) and
 * a wal_sync, or a wal_save_snapshot (then a release). After the crash the
 * reopened log must be the acknowledged state plus a prefix of the records
 * of the group in flight: nothing acknowledged lost, nothing invented.
 * Returns whether the crash happened. */
static int crash_round(struct fx *f,
                       struct lstate *acked,
                       unsigned seed,
                       int crash_at)
{
    struct lstate *st = calloc(1, sizeof(*st));
    struct grec *group = calloc(GROUP_MAX, sizeof(*group));
    struct wal_options o = {4096, &lazy_io};
    struct wal *w = NULL;
    const unsigned seed0 = seed;
    size_t ng = 0;
    int rv, crashed, matched = -1;

    assert_non_null(st);
    memset(&lazy, 0, sizeof(lazy));
    lazy.crash_at = crash_at;
    lazy.sector = seed % 3 == 0 ? 4096 : 512;
    rv = wal_open(f->data, &o, &w, f->err, sizeof(f->err));
    for (int op = 0; rv == 0 && op < 40; op++) {
        int what = rand_r(&seed) % 10;
        /* st: the acknowledged state plus what this group wrote so far. */
        memcpy(st, acked, sizeof(*st));
        ng = 0;
        if (what == 0 && acked->last > acked->snap.index) {
            struct grec *g = &group[ng++];
            uint64_t t;
            g->type = WAL_REC_SNAPSHOT;
            g->snap.index = acked->snap.index + 1 +
                            rand_r(&seed) % (acked->last - acked->snap.index);
            assert_int_equal(wal_term(w, g->snap.index, &t), 0);
            g->snap.term = t;
            rv = wal_save_snapshot(w, &g->snap);
            if (rv == 0) {
                lstate_apply(acked, g);
                rv = wal_release(w, g->snap.index);
                ng = 0; /* the snapshot is acknowledged */
            }
            continue;
        }
        {
            int writes = what < 5 ? 1 : 1 + rand_r(&seed) % 3;
            int use_append = writes == 1 && rand_r(&seed) % 2;
            for (int k = 0; rv == 0 && k < writes; k++) {
                struct wal_entry e[8];
                struct wal_hard_state hs;
                uint64_t lo = st->last + 1, hi, term = st->hs.term + 1;
                size_t off = 0, n;
                int with_hs = rand_r(&seed) % 2;
                if (rand_r(&seed) % 4 == 0 && st->last > st->snap.index + 1) {
                    lo = st->last -
                         rand_r(&seed) % (st->last - st->snap.index - 1);
                }
                hi = lo + 1 + rand_r(&seed) % 5;
                n = (size_t)(hi - lo);
                for (uint64_t i = lo; i < hi; i++) {
                    struct grec *g = &group[ng++];
                    g->type = WAL_REC_ENTRY;
                    g->index = i;
                    g->term = term;
                    g->len = (uint32_t)(1 + (i * 131 + term) % 700);
                    fill(scratch + off, g->len, i, term);
                    e[i - lo] =
                        (struct wal_entry){i, term, 0, scratch + off, g->len};
                    off += g->len;
                    lstate_apply(st, g);
                }
                hs = (struct wal_hard_state){term, 1, lo - 1};
                if (with_hs) {
                    struct grec *g = &group[ng++];
                    g->type = WAL_REC_STATE;
                    g->hs = hs;
                    lstate_apply(st, g);
                }
                rv = use_append ? wal_append(w, e, n, with_hs ? &hs : NULL)
                                : wal_write(w, e, n, with_hs ? &hs : NULL);
            }
            if (rv == 0 && !use_append) {
                rv = wal_sync(w);
            }
            if (rv == 0) {
                memcpy(acked, st, sizeof(*acked));
                ng = 0;
            }
        }
    }
    crashed = lazy.crashed;
    if (!crashed) {
        assert_int_equal(rv, 0);
    } else {
        assert_true(rv == -EIO);
    }
    lazy_crash(&seed);
    if (w != NULL) {
        wal_close(w);
    }
    free(lazy.v);
    memset(&lazy, 0, sizeof(lazy));

    /* Restart: the acknowledged state plus some prefix of the group. */
    w = NULL;
    rv = wal_open(f->data, &(struct wal_options){4096, NULL}, &w, f->err,
                  sizeof(f->err));
    if (rv != 0) {
        fail_msg("seed %u crash_at %d: reopen: %s", seed0, crash_at, f->err);
    }
    memcpy(st, acked, sizeof(*st));
    for (size_t p = 0; p <= ng; p++) {
        if (p > 0) {
            lstate_apply(st, &group[p - 1]);
        }
        if (lstate_matches(w, st)) {
            matched = (int)p;
            break;
        }
    }
    if (matched < 0) {
        fail_msg(
            "seed %u crash_at %d: reopened log (snapshot %llu, "
            "entries %llu..%llu, commit %llu) is not the acknowledged "
            "one plus a prefix of the %zu records in flight",
            seed0, crash_at, (unsigned long long)wal_snapshot(w).index,
            (unsigned long long)wal_first_index(w),
            (unsigned long long)wal_last_index(w),
            (unsigned long long)wal_hard_state(w).commit, ng);
    }
    wal_close(w);
    /* What survived is the log now: the next run goes on from there. */
    memcpy(acked, st, sizeof(*acked));
    free(group);
    free(st);
    return crashed;
}

static void test_wal_crash_loses_unsynced_writes(void **state)
{
    struct fx *f = *state;
    struct lstate *acked = calloc(1, sizeof(*acked));
    int rounds = sanitized() ? 30 : 150, crashes = 0, runs = 0;

    assert_non_null(acked);
    snprintf(f->data, sizeof(f->data), "%s/crash", f->scratch);
    snprintf(f->waldir, sizeof(f->waldir), "%s/member/wal", f->data);
    for (int r = 0; r < rounds; r++) {
        /* A fresh log, then several crash-restart cycles on it: a crash
         * must also be survivable right after recovering from one. */
        wt_rmrf(f->data);
        memset(acked, 0, sizeof(*acked));
        acked->first = 1;
        for (int cycle = 0; cycle < 4; cycle++) {
            unsigned seed = 1000u + (unsigned)(r * 4 + cycle);
            /* Now and then a run ends without a crash; half of the crashes
             * hit the first few writes after a recovery. */
            int at = (r + cycle) % 10 == 9 ? 1 << 30
                     : (r + cycle) % 2     ? 1 + (r * 7 + cycle) % 6
                                           : 1 + (r * 7 + cycle) % 120;
            crashes += crash_round(f, acked, seed, at);
            runs++;
        }
    }
    print_message("crashes: %d of %d runs\n", crashes, runs);
    assert_true(crashes > runs / 2 && crashes < runs);
    free(acked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_vectors),
        cmocka_unit_test(test_crc32c_sw_matches_hw_and_chains),
        cmocka_unit_test(test_wal_codec_matches_protobuf_c),
        cmocka_unit_test(test_wal_record_rejects_damage),
        cmocka_unit_test_setup_teardown(test_wal_fresh_append_reopen, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_hard_state_persistence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_append_rejects_bad_batches,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_read_limits_and_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_torn_tail_every_offset, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_torn_batch_across_segments,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_random_bit_flips, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_far_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_lost_record_at_segment_end,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_large_entries, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_rollover_and_many_appends,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_truncate_suffix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_snapshot_marker, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_release_after_truncation,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_failed_io_keeps_acked, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_snapshot_keeps_conf_state,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_open_cut_fails, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_write_then_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_torn_after_unclosed_batch,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_wal_release_sync_failure, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wal_crash_loses_unsynced_writes,
                                        setup, teardown),
    };
    if (getenv("WAL_TEST_FILTER") != NULL) {
        cmocka_set_test_filter(getenv("WAL_TEST_FILTER"));
    }
    return cmocka_run_group_tests_name("storage_wal", tests, NULL, NULL);
}
