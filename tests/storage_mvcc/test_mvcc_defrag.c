/*
 * Unit tests of storage/mvcc_defrag.c: a compacting copy swapped in place
 * keeps the committed state (revision, consistent_index, every key, HashKV,
 * plain tables), shrinks the file after deletes + compaction, leaves the
 * store writable and reopenable; a discarded copy leaves no file; a swap
 * with a batch open is refused (KEEL_EBUSY) and harmless. mvcc_replace
 * installs another store's image (a raft snapshot from a leader) in place,
 * and refuses a file that is not a store without touching the current one.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mvcc_test_util.h"

struct fx
{
    struct tdir t;
    struct mvcc_store *s;
    struct keel_arena a;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tdir_init(&f->t);
    f->s = open_store(f->t.db, 0);
    keel_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mvcc_close(f->s);
    keel_arena_free(&f->a);
    rm_rf(f->t.dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static void fill(struct fx *f, const char *prefix, int n, size_t vsize)
{
    char *v = malloc(vsize);
    memset(v, 'v', vsize);
    for (int i = 0; i < n; i++) {
        char k[64];
        snprintf(k, sizeof k, "%s%05d", prefix, i);
        assert_int_equal(put1(f->s, &f->a, str(k), bin(v, vsize), 0, NULL), 0);
        keel_arena_reset(&f->a);
    }
    free(v);
}

static uint64_t file_size(struct fx *f)
{
    uint64_t b = 0;
    assert_int_equal(mvcc_file_size(f->s, &b), 0);
    struct stat st;
    assert_int_equal(stat(f->t.db, &st), 0);
    assert_int_equal((uint64_t)st.st_size, b);
    return b;
}

static int copy_exists(struct fx *f)
{
    char p[400];
    snprintf(p, sizeof p, "%s.defrag", f->t.db);
    return access(p, F_OK) == 0;
}

struct state
{
    int64_t rev, compact;
    uint64_t ci;
    uint32_t hash;
    int64_t count;
};

static void snapshot_state(struct fx *f, struct state *st)
{
    int64_t cur = 0;
    st->rev = mvcc_revision(f->s);
    st->ci = mvcc_consistent_index(f->s);
    assert_int_equal(mvcc_hash_kv(f->s, 0, &st->hash, &st->compact, &cur), 0);
    assert_int_equal(cur, st->rev);
    st->count = range_all(f->s, &f->a, 0)->count;
    keel_arena_reset(&f->a);
}

/* ---- tests -------------------------------------------------------------- */

static void test_mvcc_defrag_keeps_state_and_shrinks(void **state)
{
    struct fx *f = *state;
    fill(f, "gone/", 400, 2000);
    fill(f, "keep/", 50, 100);
    struct mvcc_write *w;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_ALARM, "a", 1, "", 0), 0);
    assert_int_equal(mvcc_write_commit(w, ++test_ci, 1), 0);
    assert_int_equal(del1(f->s, &f->a, str("gone/"), str("gone0"), NULL), 0);
    assert_int_equal(compact1(f->s, mvcc_revision(f->s)), 0);
    assert_int_equal(mvcc_compact_run(f->s), 0);
    struct state before, after;
    snapshot_state(f, &before);
    assert_int_equal(before.count, 50);
    uint64_t size0 = file_size(f);

    assert_int_equal(mvcc_defrag_copy(f->s), 0);
    assert_true(copy_exists(f));
    assert_int_equal(mvcc_defrag_swap(f->s), 0);
    assert_false(copy_exists(f));

    uint64_t size1 = file_size(f);
    assert_true(size1 * 2 < size0);
    snapshot_state(f, &after);
    assert_int_equal(after.rev, before.rev);
    assert_int_equal(after.ci, before.ci);
    assert_int_equal(after.compact, before.compact);
    assert_int_equal(after.hash, before.hash);
    assert_int_equal(after.count, 50);
    void *v;
    size_t vlen;
    assert_int_equal(
        mvcc_table_get(f->s, NULL, MVCC_TABLE_ALARM, "a", 1, &f->a, &v, &vlen),
        0);

    /* Writable after the swap, and what is written is there after a
     * reopen of the file. */
    Etcdserverpb__PutResponse *pr = NULL;
    assert_int_equal(put1(f->s, &f->a, str("new"), str("1"), 0, &pr), 0);
    int64_t rev = mvcc_revision(f->s);
    assert_int_equal(rev, before.rev + 1);
    mvcc_close(f->s);
    f->s = open_store(f->t.db, 0);
    assert_int_equal(mvcc_revision(f->s), rev);
    assert_int_equal(range_all(f->s, &f->a, 0)->count, 51);
}

static void test_mvcc_defrag_swap_refused_with_batch_open(void **state)
{
    struct fx *f = *state;
    fill(f, "k/", 10, 10);
    assert_int_equal(mvcc_defrag_copy(f->s), 0);
    struct mvcc_write *w;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_defrag_swap(f->s), KEEL_EBUSY);
    mvcc_write_abort(w);
    mvcc_defrag_discard(f->s);
    assert_false(copy_exists(f));
    /* The store is untouched and usable. */
    assert_int_equal(put1(f->s, &f->a, str("k/x"), str("1"), 0, NULL), 0);
    assert_int_equal(range_all(f->s, &f->a, 0)->count, 11);
}

static void test_mvcc_defrag_empty_store(void **state)
{
    struct fx *f = *state;
    struct state before, after;
    snapshot_state(f, &before);
    assert_int_equal(mvcc_defrag_copy(f->s), 0);
    assert_int_equal(mvcc_defrag_swap(f->s), 0);
    snapshot_state(f, &after);
    assert_int_equal(after.rev, 1);
    assert_int_equal(after.compact, -1);
    assert_int_equal(after.hash, before.hash);
}

/* A follower installs the leader's image: another history (more keys,
 * a later consistent_index) replaces its own in place; the image file is
 * consumed; the store stays writable and reopens as the image. A file that
 * is not a store is refused and the store is untouched. */
static void test_mvcc_replace_installs_image(void **state)
{
    struct fx *f = *state;
    fill(f, "mine/", 5, 10);
    struct state before;
    snapshot_state(f, &before);

    char other[400], img[400], bad[400];
    snprintf(other, sizeof other, "%s.leader", f->t.db);
    snprintf(img, sizeof img, "%s.image", f->t.db);
    snprintf(bad, sizeof bad, "%s.bad", f->t.db);
    struct mvcc_store *o = open_store(other, 0);
    for (int i = 0; i < 40; i++) {
        char k[32];
        snprintf(k, sizeof k, "leader/%03d", i);
        assert_int_equal(put1(o, &f->a, str(k), str("x"), 0, NULL), 0);
        keel_arena_reset(&f->a);
    }
    struct mvcc_write *w;
    assert_int_equal(mvcc_write_begin(o, &w), 0);
    assert_int_equal(mvcc_table_put(w, MVCC_TABLE_MEMBERS, "m", 1, "1", 1), 0);
    assert_int_equal(mvcc_write_commit(w, 1000, 7), 0);
    int64_t orev = mvcc_revision(o);
    uint32_t ohash;
    int64_t ocrev, ocur;
    assert_int_equal(mvcc_hash_kv(o, 0, &ohash, &ocrev, &ocur), 0);
    int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(mvcc_copy_fd(o, fd, 1), 0);
    close(fd);
    mvcc_close(o);

    /* Not a store: refused, nothing changed. */
    FILE *fp = fopen(bad, "w");
    fputs("this is not an LMDB file", fp);
    fclose(fp);
    assert_true(mvcc_replace(f->s, bad) != 0);
    struct state same;
    snapshot_state(f, &same);
    assert_int_equal(same.rev, before.rev);
    assert_int_equal(same.hash, before.hash);

    assert_int_equal(mvcc_replace(f->s, img), 0);
    assert_int_equal(access(img, F_OK), -1); /* renamed over the store */
    struct state after;
    snapshot_state(f, &after);
    assert_int_equal(after.rev, orev);
    assert_int_equal(after.hash, ohash);
    assert_int_equal(after.ci, 1000);
    assert_int_equal(mvcc_term(f->s), 7);
    assert_int_equal(after.count, 40);
    void *val;
    size_t vlen;
    assert_int_equal(mvcc_table_get(f->s, NULL, MVCC_TABLE_MEMBERS, "m", 1,
                                    &f->a, &val, &vlen),
                     0);
    /* Writable, and entries at or below the image's index are skipped. */
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_int_equal(mvcc_write_should_apply(w, 1000), 0);
    assert_int_equal(mvcc_write_should_apply(w, 1001), 1);
    mvcc_write_abort(w);
    test_ci = 1000; /* put1's next index follows the image's */
    assert_int_equal(put1(f->s, &f->a, str("after"), str("1"), 0, NULL), 0);
    assert_int_equal(mvcc_revision(f->s), orev + 1);
    mvcc_close(f->s);
    f->s = open_store(f->t.db, 0);
    assert_int_equal(mvcc_revision(f->s), orev + 1);
    unlink(bad);
    unlink(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_mvcc_defrag_keeps_state_and_shrinks, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_mvcc_defrag_swap_refused_with_batch_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_defrag_empty_store, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_mvcc_replace_installs_image,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
