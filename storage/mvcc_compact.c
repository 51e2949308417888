/*
 * storage/mvcc_compact.c: physical compaction, etcd's hashes, and reading
 * events back for watch catch-up.
 *
 * Compaction (etcd: mvcc/kvstore_compaction.go, key_index.go compact). At
 * compact revision C, a revision r <= C is removed unless it is the newest
 * revision <= C of its key and a put; tombstones <= C always go, and when a
 * key's newest revision is such a tombstone its index record goes too.
 * mvcc_compact() (in a batch) makes the compaction logical at once and
 * records scheduledCompactRev; mvcc_compact_step() then walks the `key`
 * table in revision order from `keel_compact_cursor` up to C, in write txns
 * of `batch` revisions each, so the apply path never waits for a big
 * compaction. For each revision r it sees:
 *   - r's predecessor p (revlink) is removed when p <= C (r supersedes it:
 *     this is what retires revisions kept by an earlier compaction);
 *   - r itself is removed unless it is a put whose successor is > C or
 *     absent.
 * So the work of a compaction is proportional to the revisions written since
 * the previous one, not to the size of the store (etcd rescans from 0). The
 * cursor and finishedCompactRev are committed with each step: a crash
 * mid-compaction resumes where it stopped, and raising C while a compaction
 * is running is fine (the rules above do not depend on where C was when a
 * revision was seen).
 *
 * Reads are unaffected by the progress of physical compaction: a revision
 * removed by it is never the one visible at a revision >= C.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"
#include "mvcc_int.h"

/* ---- CRC-32C (Castagnoli), as Go's hash/crc32 with MakeTable(Castagnoli) */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        crc_table[i] = c;
    }
}

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static uint32_t crc_update(uint32_t crc, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (n--) {
        crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    }
    return ~crc;
}

/* ---- meta helpers (compaction state) ---------------------------------- */

static int meta_rev(struct mvcc_store *s,
                    MDB_txn *txn,
                    const char *name,
                    struct mvcc_rev *out,
                    int64_t dflt_main)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_META], &k, &v);

    if (rc == MDB_NOTFOUND) {
        out->main = dflt_main;
        out->sub = 0;
        return 0;
    }
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "compact: meta get");
    }
    if (v.mv_size == MVCC_REV_BYTES) {
        *out = mvcc__rev_get(v.mv_data);
    } else if (v.mv_size == 8) {
        out->main = (int64_t)mvcc__u64_get(v.mv_data);
        out->sub = 0;
    } else {
        return mvcc__err(s, KEEL_ECORRUPT, "mvcc: meta %s has %zu bytes", name,
                         v.mv_size);
    }
    return 0;
}

static int meta_put_rev(struct mvcc_store *s,
                        MDB_txn *txn,
                        const char *name,
                        struct mvcc_rev r)
{
    uint8_t b[MVCC_REV_BYTES];
    MDB_val k = {strlen(name), (void *)name}, v = {sizeof(b), b};
    int rc;

    mvcc__rev_put(b, r);
    rc = mdb_put(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_META], &k, &v, 0);
    return rc != 0 ? mvcc__mdb_err(s, rc, "compact: meta put") : 0;
}

/* ---- compaction ------------------------------------------------------------ */

static int link_read(struct mvcc_ctx *c, struct mvcc_rev r, struct mvcc_link *l)
{
    uint8_t kb[MVCC_REV_BYTES];
    MDB_val k = {sizeof(kb), kb}, v;
    int rc;

    mvcc__rev_put(kb, r);
    rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_REVLINK], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return KEEL_ENOTFOUND;
    }
    if (rc != 0 || v.mv_size != MVCC_LINK_BYTES) {
        return rc != 0 ? mvcc__mdb_err(c->s, rc, "compact: revlink get")
                       : mvcc__err(c->s, KEEL_ECORRUPT, "mvcc: bad revlink");
    }
    mvcc__link_get(v.mv_data, l);
    return 0;
}

/* Remove revision r (tombstone or not) from `key` and `revlink`; when it is
 * a tombstone with no successor, drop the key's index record too. */
static int remove_rev(struct mvcc_ctx *c,
                      struct mvcc_rev r,
                      const struct mvcc_link *l)
{
    uint8_t kb[MVCC_REV_BYTES + 1];
    MDB_val k = {MVCC_REV_BYTES + (l->tomb ? 1 : 0), kb}, v;
    int rc;

    mvcc__rev_put(kb, r);
    kb[MVCC_REV_BYTES] = 't';
    if (l->tomb && l->next.main == 0) {
        rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_KEY], &k, &v);
        if (rc == 0) {
            Mvccpb__KeyValue *kv =
                mvccpb__key_value__unpack(NULL, v.mv_size, v.mv_data);
            struct mvcc_irec ir;
            if (kv == NULL) {
                return mvcc__err(c->s, KEEL_ECORRUPT,
                                 "mvcc: compact: tombstone %lld_%lld does not "
                                 "decode",
                                 (long long)r.main, (long long)r.sub);
            }
            rc = mvcc__index_get(c, kv->key.data, kv->key.len, &ir);
            if (rc == 0 && ir.tomb && mvcc__rev_cmp(ir.mod, r) == 0) {
                rc = mvcc__index_del(c, kv->key.data, kv->key.len);
            } else if (rc == KEEL_ENOTFOUND) {
                rc = 0;
            }
            mvccpb__key_value__free_unpacked(kv, NULL);
            if (rc != 0) {
                return rc;
            }
        } else if (rc != MDB_NOTFOUND) {
            return mvcc__mdb_err(c->s, rc, "compact: key get");
        }
    }
    rc = mdb_del(c->txn, c->s->dbi[MVCC_DBI_KEY], &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc__mdb_err(c->s, rc, "compact: key del");
    }
    k.mv_size = MVCC_REV_BYTES;
    rc = mdb_del(c->txn, c->s->dbi[MVCC_DBI_REVLINK], &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc__mdb_err(c->s, rc, "compact: revlink del");
    }
    return 0;
}

int mvcc_compact_step(struct mvcc_store *s, size_t batch, int *done)
{
    struct mvcc_rev sched, fin, cursor, *revs = NULL;
    struct mvcc_ctx c = {0};
    MDB_cursor *cur = NULL;
    size_t n = 0;
    MDB_val k, v;
    uint8_t kb[MVCC_REV_BYTES];
    int rc;

    *done = 0;
    if (s->writer != NULL) {
        return mvcc__err(s, KEEL_EBUSY, "mvcc: compact step: a batch is open");
    }
    if (batch == 0) {
        batch = 1000; /* etcd: --experimental-compaction-batch-limit */
    }
    c.s = s;
    rc = mdb_txn_begin(s->env, NULL, 0, &c.txn);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "compact: mdb_txn_begin");
    }
    if ((rc = meta_rev(s, c.txn, "scheduledCompactRev", &sched, -1)) != 0 ||
        (rc = meta_rev(s, c.txn, "finishedCompactRev", &fin, -1)) != 0 ||
        (rc = meta_rev(s, c.txn, "keel_compact_cursor", &cursor, 0)) != 0) {
        goto err;
    }
    if (sched.main <= fin.main) {
        mdb_txn_abort(c.txn);
        s->finished_compact = fin.main;
        *done = 1;
        return 0;
    }
    revs = malloc(batch * sizeof(*revs));
    if (revs == NULL) {
        rc = mvcc__err(s, KEEL_ENOMEM, "mvcc: compact: out of memory");
        goto err;
    }
    /* Collect the next revisions (cursor, sched], then work on them with no
     * cursor open. */
    rc = mdb_cursor_open(c.txn, s->dbi[MVCC_DBI_KEY], &cur);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "compact: mdb_cursor_open");
        goto err;
    }
    {
        struct mvcc_rev from = {cursor.main, cursor.sub + 1};
        if (cursor.main == 0) {
            from.sub = 0;
        }
        mvcc__rev_put(kb, from);
    }
    k.mv_size = MVCC_REV_BYTES;
    k.mv_data = kb;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < batch;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct mvcc_rev r = mvcc__rev_get(k.mv_data);
        if (r.main > sched.main) {
            rc = MDB_NOTFOUND;
            break;
        }
        revs[n++] = r;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        rc = mvcc__mdb_err(s, rc, "compact: mdb_cursor_get");
        goto err;
    }
    for (size_t i = 0; i < n; i++) {
        struct mvcc_link l, pl;
        rc = link_read(&c, revs[i], &l);
        if (rc == KEEL_ENOTFOUND) {
            continue;
        }
        if (rc != 0) {
            goto err;
        }
        if (l.prev.main != 0 && l.prev.main <= sched.main) {
            rc = link_read(&c, l.prev, &pl);
            if (rc == 0) {
                rc = remove_rev(&c, l.prev, &pl);
            } else if (rc == KEEL_ENOTFOUND) {
                rc = 0;
            }
            if (rc != 0) {
                goto err;
            }
        }
        if (l.tomb || (l.next.main != 0 && l.next.main <= sched.main)) {
            if ((rc = remove_rev(&c, revs[i], &l)) != 0) {
                goto err;
            }
        }
    }
    if (n > 0 &&
        (rc = meta_put_rev(s, c.txn, "keel_compact_cursor", revs[n - 1])) != 0) {
        goto err;
    }
    if (n < batch) {
        if ((rc = meta_put_rev(s, c.txn, "finishedCompactRev", sched)) != 0) {
            goto err;
        }
        *done = 1;
    }
    free(revs);
    rc = mdb_txn_commit(c.txn);
    if (rc != 0) {
        *done = 0;
        return mvcc__mdb_err(s, rc, "compact: mdb_txn_commit");
    }
    if (*done) {
        s->finished_compact = sched.main;
    }
    return 0;
err:
    free(revs);
    mdb_txn_abort(c.txn);
    assert(rc != 0);
    return rc;
}

int mvcc_compact_run(struct mvcc_store *s)
{
    int done = 0, rc;
    do {
        rc = mvcc_compact_step(s, 0, &done);
    } while (rc == 0 && !done);
    return rc;
}

int mvcc_revision_count(struct mvcc_store *s, uint64_t *n)
{
    MDB_stat st;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "stat: mdb_txn_begin");
    }
    rc = mdb_stat(txn, s->dbi[MVCC_DBI_KEY], &st);
    mdb_txn_abort(txn);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "stat: mdb_stat");
    }
    *n = st.ms_entries;
    return 0;
}

int mvcc_db_size(struct mvcc_store *s, uint64_t *total, uint64_t *in_use)
{
    MDB_envinfo info;
    MDB_stat est;
    MDB_cursor *cur;
    MDB_txn *txn;
    MDB_val k, v;
    uint64_t free_pages = 0;
    struct stat st;
    int fd, rc;

    *total = *in_use = 0;
    if ((rc = mdb_env_get_fd(s->env, &fd)) != 0 ||
        (rc = mdb_env_info(s->env, &info)) != 0 ||
        (rc = mdb_env_stat(s->env, &est)) != 0) {
        return mvcc__mdb_err(s, rc, "db size: mdb_env_info");
    }
    if (fstat(fd, &st) != 0) {
        return mvcc__err(s, -errno, "mvcc: db size: fstat: %s",
                         keel_strerror(-errno));
    }
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "db size: mdb_txn_begin");
    }
    /* LMDB's free list is DB 0: each record is a list of page numbers led
     * by its length (what `mdb_stat -f` sums). */
    rc = mdb_cursor_open(txn, 0, &cur);
    if (rc == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            size_t n;
            if (v.mv_size >= sizeof(n)) {
                memcpy(&n, v.mv_data, sizeof(n));
                free_pages += n;
            }
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc__mdb_err(s, rc, "db size: free list");
    }
    *total = (uint64_t)st.st_size;
    *in_use = ((uint64_t)info.me_last_pgno + 1 - free_pages) * est.ms_psize;
    if (*in_use > *total) {
        *in_use = *total;
    }
    return 0;
}

/* ---- hashes ---------------------------------------------------------------- */

/* Whether revision r (at or below rev) is in etcd's keep set at rev: the
 * newest revision <= rev of its key, and a put. */
static int kept_at(struct mvcc_ctx *c, struct mvcc_rev r, int64_t rev)
{
    struct mvcc_link l;
    int rc = link_read(c, r, &l);
    if (rc == KEEL_ENOTFOUND) {
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    return !l.tomb && (l.next.main == 0 || l.next.main > rev);
}

int mvcc_hash_kv(struct mvcc_store *s,
                 int64_t rev,
                 uint32_t *hash,
                 int64_t *compact_rev,
                 int64_t *current_rev)
{
    struct mvcc_ctx c;
    MDB_cursor *cur;
    MDB_val k, v;
    int keep_any = 0;
    uint32_t h;
    int rc;

    *hash = 0;
    if ((rc = mvcc__ctx_read_begin(s, NULL, &c)) != 0) {
        return rc;
    }
    *compact_rev = c.compact_rev;
    *current_rev = c.begin_rev;
    if (rev > 0 && rev <= c.compact_rev) {
        rc = mvcc__err(s, KEEL_ECOMPACTED, "mvcc: hash at %lld: compacted at "
                       "%lld", (long long)rev, (long long)c.compact_rev);
        goto out;
    }
    if (rev > c.begin_rev) {
        rc = mvcc__err(s, KEEL_EFUTUREREV, "mvcc: hash at %lld: current is "
                       "%lld", (long long)rev, (long long)c.begin_rev);
        goto out;
    }
    if (rev == 0) {
        rev = c.begin_rev;
    }
    rc = mdb_cursor_open(c.txn, s->dbi[MVCC_DBI_KEY], &cur);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "hash: mdb_cursor_open");
        goto out;
    }
    /* etcd skips compacted-away revisions only when its keep set is not
     * empty (kvstore.go HashByRev); find out whether it is. */
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !keep_any;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct mvcc_rev r = mvcc__rev_get(k.mv_data);
        int kr;
        if (r.main > rev) {
            break;
        }
        kr = kept_at(&c, r, rev);
        if (kr < 0) {
            rc = kr;
            goto out_cur;
        }
        keep_any = kr;
    }
    h = crc_update(0, "key", 3);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct mvcc_rev r = mvcc__rev_get(k.mv_data);
        if (r.main > rev) {
            break;
        }
        if (r.main <= c.compact_rev && keep_any) {
            int kr = kept_at(&c, r, rev);
            if (kr < 0) {
                rc = kr;
                goto out_cur;
            }
            if (!kr) {
                continue;
            }
        }
        h = crc_update(h, k.mv_data, k.mv_size);
        h = crc_update(h, v.mv_data, v.mv_size);
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = 0;
        *hash = h;
    } else {
        rc = mvcc__mdb_err(s, rc, "hash: mdb_cursor_get");
    }
out_cur:
    mdb_cursor_close(cur);
out:
    mvcc__ctx_read_end(&c);
    return rc;
}

static int skip_meta_key(const MDB_val *k)
{
    static const char *const names[] = {"consistent_index", "term"};
    for (size_t i = 0; i < 2; i++) {
        if (k->mv_size == strlen(names[i]) &&
            memcmp(k->mv_data, names[i], k->mv_size) == 0) {
            return 1;
        }
    }
    return k->mv_size >= 5 && memcmp(k->mv_data, "keel_", 5) == 0;
}

int mvcc_hash(struct mvcc_store *s, uint32_t *hash, int64_t *current_rev)
{
    static const int tables[] = {MVCC_DBI_KEY,
                                 MVCC_DBI_TABLES + MVCC_TABLE_META,
                                 MVCC_DBI_TABLES + MVCC_TABLE_LEASE,
                                 MVCC_DBI_TABLES + MVCC_TABLE_ALARM,
                                 MVCC_DBI_TABLES + MVCC_TABLE_MEMBERS,
                                 MVCC_DBI_TABLES + MVCC_TABLE_MEMBERS_REMOVED,
                                 MVCC_DBI_TABLES + MVCC_TABLE_AUTH,
                                 MVCC_DBI_TABLES + MVCC_TABLE_AUTH_USERS,
                                 MVCC_DBI_TABLES + MVCC_TABLE_AUTH_ROLES,
                                 MVCC_DBI_TABLES + MVCC_TABLE_V2};
    struct mvcc_ctx c;
    uint32_t h = 0;
    int rc;

    if ((rc = mvcc__ctx_read_begin(s, NULL, &c)) != 0) {
        return rc;
    }
    *current_rev = c.begin_rev;
    for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]) && rc == 0; t++) {
        MDB_cursor *cur;
        MDB_val k, v;
        int is_meta = tables[t] == MVCC_DBI_TABLES + MVCC_TABLE_META;

        rc = mdb_cursor_open(c.txn, s->dbi[tables[t]], &cur);
        if (rc != 0) {
            rc = mvcc__mdb_err(s, rc, "hash: mdb_cursor_open");
            break;
        }
        {
            uint8_t tb = (uint8_t)t;
            h = crc_update(h, &tb, 1);
        }
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (is_meta && skip_meta_key(&k)) {
                continue;
            }
            h = crc_update(h, k.mv_data, k.mv_size);
            h = crc_update(h, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(cur);
        rc = rc == MDB_NOTFOUND ? 0 : mvcc__mdb_err(s, rc, "hash: cursor get");
    }
    *hash = h;
    mvcc__ctx_read_end(&c);
    return rc;
}

/* ---- events since a revision --------------------------------------------- */

int mvcc_events_since(struct mvcc_store *s,
                      int64_t start_rev,
                      const ProtobufCBinaryData *key,
                      const ProtobufCBinaryData *range_end,
                      size_t limit,
                      int with_prev_kv,
                      struct keel_arena *a,
                      Mvccpb__Event ***events,
                      size_t *n,
                      int64_t *next_rev)
{
    struct mvcc_events ev = {0};
    struct mvcc_ctx c;
    int err = 0;
    MDB_cursor *cur;
    MDB_val k, v;
    uint8_t kb[MVCC_REV_BYTES];
    int64_t last_main = 0;
    int rc;

    *events = NULL;
    *n = 0;
    if ((rc = mvcc__ctx_read_begin(s, a, &c)) != 0) {
        return rc;
    }
    *next_rev = c.begin_rev + 1;
    if (start_rev < 1) {
        start_rev = 1;
    }
    /* etcd: watchable_store.go syncWatchers, minRev < compactRev. */
    if (start_rev < c.compact_rev) {
        rc = mvcc__err(s, KEEL_ECOMPACTED,
                       "mvcc: events since %lld: compacted at %lld",
                       (long long)start_rev, (long long)c.compact_rev);
        goto out;
    }
    rc = mdb_cursor_open(c.txn, s->dbi[MVCC_DBI_KEY], &cur);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "events: mdb_cursor_open");
        goto out;
    }
    {
        struct mvcc_rev from = {start_rev, 0};
        mvcc__rev_put(kb, from);
    }
    k.mv_size = sizeof(kb);
    k.mv_data = kb;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct mvcc_rev r = mvcc__rev_get(k.mv_data);
        int tomb = k.mv_size > MVCC_REV_BYTES;
        Mvccpb__KeyValue *kv, *prev = NULL;
        Mvccpb__Event *e;

        if (limit > 0 && ev.n >= limit && r.main != last_main) {
            *next_rev = r.main;
            break;
        }
        last_main = r.main;
        kv = mvccpb__key_value__unpack(&a->pb, v.mv_size, v.mv_data);
        if (kv == NULL) {
            err = mvcc__err(s, KEEL_ECORRUPT, "mvcc: events: revision %lld_%lld "
                           "does not decode (or out of memory)",
                           (long long)r.main, (long long)r.sub);
            break;
        }
        if (!mvcc__in_range(kv->key.data, kv->key.len, key->data, key->len,
                            range_end ? range_end->data : NULL,
                            range_end ? range_end->len : 0)) {
            continue;
        }
        if (tomb) {
            kv->mod_revision = r.main;
        }
        if (with_prev_kv && (tomb || kv->create_revision != kv->mod_revision)) {
            struct mvcc_link l;
            err = link_read(&c, r, &l);
            if (err == 0 && l.prev.main != 0) {
                err = mvcc__prev_kv(&c, l.prev, r.main, &prev);
            }
            if (err == KEEL_ENOTFOUND) {
                err = 0; /* compacted */
            }
            if (err != 0) {
                break;
            }
        }
        if (ev.n == ev.cap) {
            size_t ncap = ev.cap ? 2 * ev.cap : 16;
            Mvccpb__Event **na = keel_arena_alloc(a, ncap * sizeof(*na));
            if (na == NULL) {
                err = mvcc__err(s, KEEL_ENOMEM, "mvcc: events: out of memory");
                break;
            }
            if (ev.n) {
                memcpy(na, ev.ev, ev.n * sizeof(*na));
            }
            ev.ev = na;
            ev.cap = ncap;
        }
        e = keel_arena_alloc(a, sizeof(*e));
        if (e == NULL) {
            err = mvcc__err(s, KEEL_ENOMEM, "mvcc: events: out of memory");
            break;
        }
        mvccpb__event__init(e);
        e->type = tomb ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                       : MVCCPB__EVENT__EVENT_TYPE__PUT;
        e->kv = kv;
        e->prev_kv = prev;
        ev.ev[ev.n++] = e;
    }
    if (err != 0) {
        rc = err;
    } else if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = 0;
    } else {
        rc = mvcc__mdb_err(s, rc, "events: mdb_cursor_get");
    }
    mdb_cursor_close(cur);
    if (rc == 0) {
        *events = ev.ev;
        *n = ev.n;
    }
out:
    mvcc__ctx_read_end(&c);
    return rc;
}
