/*
 * storage/mvcc.c: the MVCC store's LMDB environment, meta state, write
 * batches, error reporting and the plain tables.
 *
 * One LMDB file (<data-dir>/member/snap/db, MDB_NOSUBDIR) opened with
 * MDB_NOSYNC: the WAL is the durable record and mvcc_sync() flushes when the
 * server needs it (snapshots, shutdown). Named tables:
 *
 *   key        17-byte revision {main BE, '_', sub BE} (+ 't' for a
 *              tombstone) -> packed mvccpb.KeyValue; a tombstone's value is
 *              KeyValue{key} (etcd: mvcc/revision.go, kvstore_txn.go).
 *   index      ikey (see keycodec.c) -> 48-byte record of the key's latest
 *              state {mod main, mod sub, create, version, lease, flags}
 *              [+ the full key for long keys]. The persistent key index:
 *              nothing is rebuilt at open.
 *   revlink    17-byte revision -> {prev rev, next rev, flags}: the chain of
 *              one key's revisions, for reads at old revisions (walk back
 *              from the latest), prev_kv, and compaction (a revision at or
 *              below the compact revision is superseded iff its next one is).
 *   lease_keys lease id (8 BE) ‖ ikey -> user key: keys attached to a lease.
 *   meta       consistent_index, term (8 BE), scheduledCompactRev,
 *              finishedCompactRev (17-byte revisions, as etcd), keel_rev
 *              (current revision, 8 BE), keel_compact_cursor (last revision
 *              compaction processed), keel_layout (format version).
 *   lease alarm members members_removed auth authUsers authRoles v2: etcd's
 *              buckets, plain key/value (mvcc_table_*, lease_store.c).
 *
 * Happy path of a batch: mvcc_write_begin (LMDB write txn) -> any number of
 * etcd txns, each a main revision -> mvcc_write_commit writes keel_rev,
 * consistent_index and term into meta in the same txn and commits.
 *
 * Failure modes: semantic errors are found before writing and leave the
 * batch usable; an LMDB error (MDB_MAP_FULL -> KEEL_ENOSPACE, others ->
 * KEEL_EIO/KEEL_ECORRUPT) poisons the batch, which can then only abort: the
 * file keeps the last committed batch, nothing acknowledged is lost (an
 * entry is acknowledged only after its batch committed). After
 * KEEL_ENOSPACE the server raises the NOSPACE alarm, may grow the map with
 * mvcc_set_map_size() and re-applies the entries after
 * mvcc_consistent_index(). A failed mdb_txn_commit is returned likewise.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "keel_err.h"
#include "mvcc_int.h"

#define LAYOUT_VERSION 1

static const char *const dbi_names[MVCC_DBI_COUNT] = {
    [MVCC_DBI_KEY] = "key",
    [MVCC_DBI_INDEX] = "index",
    [MVCC_DBI_REVLINK] = "revlink",
    [MVCC_DBI_LEASE_KEYS] = "lease_keys",
    [MVCC_DBI_TABLES + MVCC_TABLE_META] = "meta",
    [MVCC_DBI_TABLES + MVCC_TABLE_LEASE] = "lease",
    [MVCC_DBI_TABLES + MVCC_TABLE_ALARM] = "alarm",
    [MVCC_DBI_TABLES + MVCC_TABLE_MEMBERS] = "members",
    [MVCC_DBI_TABLES + MVCC_TABLE_MEMBERS_REMOVED] = "members_removed",
    [MVCC_DBI_TABLES + MVCC_TABLE_AUTH] = "auth",
    [MVCC_DBI_TABLES + MVCC_TABLE_AUTH_USERS] = "authUsers",
    [MVCC_DBI_TABLES + MVCC_TABLE_AUTH_ROLES] = "authRoles",
    [MVCC_DBI_TABLES + MVCC_TABLE_V2] = "v2",
};

/* ---- errors ---------------------------------------------------------------- */

/* One message per thread: readers on worker threads and the writer never
 * share a buffer. */
static _Thread_local char errmsg_tls[256];

int mvcc__err(struct mvcc_store *s, int rv, const char *fmt, ...)
{
    va_list ap;

    (void)s;
    va_start(ap, fmt);
    vsnprintf(errmsg_tls, sizeof(errmsg_tls), fmt, ap);
    va_end(ap);
    return rv;
}

static int mdb_to_keel(int mrc)
{
    switch (mrc) {
        case MDB_MAP_FULL:
        case MDB_TXN_FULL:
            return KEEL_ENOSPACE;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_VERSION_MISMATCH:
            return KEEL_ECORRUPT;
        case MDB_NOTFOUND:
            return KEEL_ENOTFOUND;
        default:
            return mrc > 0 ? -mrc : KEEL_EIO;
    }
}

int mvcc__mdb_err(struct mvcc_store *s, int mrc, const char *what)
{
    const char *name = mrc == MDB_MAP_FULL ? "MDB_MAP_FULL: " : "";
    return mvcc__err(s, mdb_to_keel(mrc), "mvcc: %s: %s%s", what, name,
                     mdb_strerror(mrc));
}

int mvcc__poison(struct mvcc_ctx *c, int rv)
{
    if (c->w != NULL && rv != 0) {
        c->w->poisoned = rv;
    }
    return rv;
}

const char *mvcc_errmsg(const struct mvcc_store *s)
{
    (void)s;
    return errmsg_tls;
}

/* ---- encodings ------------------------------------------------------------- */

void mvcc__u64_put(uint8_t *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t mvcc__u64_get(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | b[i];
    }
    return v;
}

void mvcc__rev_put(uint8_t *b, struct mvcc_rev r)
{
    mvcc__u64_put(b, (uint64_t)r.main);
    b[8] = '_';
    mvcc__u64_put(b + 9, (uint64_t)r.sub);
}

struct mvcc_rev mvcc__rev_get(const uint8_t *b)
{
    struct mvcc_rev r = {(int64_t)mvcc__u64_get(b),
                         (int64_t)mvcc__u64_get(b + 9)};
    return r;
}

int mvcc__rev_cmp(struct mvcc_rev a, struct mvcc_rev b)
{
    if (a.main != b.main) {
        return a.main < b.main ? -1 : 1;
    }
    if (a.sub != b.sub) {
        return a.sub < b.sub ? -1 : 1;
    }
    return 0;
}

void mvcc__irec_put(uint8_t *b, const struct mvcc_irec *r)
{
    memset(b, 0, MVCC_IREC_BYTES);
    mvcc__u64_put(b, (uint64_t)r->mod.main);
    mvcc__u64_put(b + 8, (uint64_t)r->mod.sub);
    mvcc__u64_put(b + 16, (uint64_t)r->create);
    mvcc__u64_put(b + 24, (uint64_t)r->version);
    mvcc__u64_put(b + 32, (uint64_t)r->lease);
    b[40] = r->tomb ? 1 : 0;
}

void mvcc__irec_get(const uint8_t *b, struct mvcc_irec *r)
{
    r->mod.main = (int64_t)mvcc__u64_get(b);
    r->mod.sub = (int64_t)mvcc__u64_get(b + 8);
    r->create = (int64_t)mvcc__u64_get(b + 16);
    r->version = (int64_t)mvcc__u64_get(b + 24);
    r->lease = (int64_t)mvcc__u64_get(b + 32);
    r->tomb = b[40] & 1;
}

void mvcc__link_put(uint8_t *b, const struct mvcc_link *l)
{
    mvcc__u64_put(b, (uint64_t)l->prev.main);
    mvcc__u64_put(b + 8, (uint64_t)l->prev.sub);
    mvcc__u64_put(b + 16, (uint64_t)l->next.main);
    mvcc__u64_put(b + 24, (uint64_t)l->next.sub);
    b[32] = l->tomb ? 1 : 0;
}

void mvcc__link_get(const uint8_t *b, struct mvcc_link *l)
{
    l->prev.main = (int64_t)mvcc__u64_get(b);
    l->prev.sub = (int64_t)mvcc__u64_get(b + 8);
    l->next.main = (int64_t)mvcc__u64_get(b + 16);
    l->next.sub = (int64_t)mvcc__u64_get(b + 24);
    l->tomb = b[32] & 1;
}

/* ---- meta ------------------------------------------------------------------ */

static int meta_get(struct mvcc_store *s,
                    MDB_txn *txn,
                    const char *name,
                    MDB_val *v)
{
    MDB_val k = {strlen(name), (void *)name};
    int rc = mdb_get(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_META], &k, v);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc__mdb_err(s, rc, "meta: mdb_get");
    }
    return rc;
}

static int meta_put(struct mvcc_store *s,
                    MDB_txn *txn,
                    const char *name,
                    const void *data,
                    size_t len)
{
    MDB_val k = {strlen(name), (void *)name};
    MDB_val v = {len, (void *)data};
    int rc = mdb_put(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_META], &k, &v, 0);
    if (rc != 0) {
        char what[64];
        snprintf(what, sizeof(what), "meta: mdb_put(%s)", name);
        return mvcc__mdb_err(s, rc, what);
    }
    return 0;
}

static int meta_put_u64(struct mvcc_store *s,
                        MDB_txn *txn,
                        const char *name,
                        uint64_t v)
{
    uint8_t b[8];
    mvcc__u64_put(b, v);
    return meta_put(s, txn, name, b, sizeof(b));
}

static int meta_put_rev(struct mvcc_store *s,
                        MDB_txn *txn,
                        const char *name,
                        int64_t main)
{
    uint8_t b[MVCC_REV_BYTES];
    struct mvcc_rev r = {main, 0};
    mvcc__rev_put(b, r);
    return meta_put(s, txn, name, b, sizeof(b));
}

/* Read a number (8 BE) or a revision (17 bytes, its main) from meta. */
static int meta_get_num(struct mvcc_store *s,
                        MDB_txn *txn,
                        const char *name,
                        int64_t dflt,
                        int64_t *out)
{
    MDB_val v;
    int rc = meta_get(s, txn, name, &v);

    if (rc == MDB_NOTFOUND) {
        *out = dflt;
        return 0;
    }
    if (rc != 0) {
        return rc;
    }
    if (v.mv_size == 8) {
        *out = (int64_t)mvcc__u64_get(v.mv_data);
    } else if (v.mv_size == MVCC_REV_BYTES) {
        *out = mvcc__rev_get(v.mv_data).main;
    } else {
        return mvcc__err(s, KEEL_ECORRUPT, "mvcc: meta %s has %zu bytes",
                         name, v.mv_size);
    }
    return 0;
}

static int meta_is_reserved(const void *key, size_t klen)
{
    static const char *const names[] = {"consistent_index", "term",
                                        "scheduledCompactRev",
                                        "finishedCompactRev"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (klen == strlen(names[i]) && memcmp(key, names[i], klen) == 0) {
            return 1;
        }
    }
    return klen >= 5 && memcmp(key, "keel_", 5) == 0;
}

/* The committed state of the store, as seen in txn. */
struct meta_state
{
    int64_t rev, compact_rev, finished;
    int64_t ci, term;
};

static int meta_load(struct mvcc_store *s, MDB_txn *txn, struct meta_state *m)
{
    int rc;
    if ((rc = meta_get_num(s, txn, "keel_rev", 1, &m->rev)) != 0 ||
        (rc = meta_get_num(s, txn, "scheduledCompactRev", -1,
                           &m->compact_rev)) != 0 ||
        (rc = meta_get_num(s, txn, "finishedCompactRev", -1,
                           &m->finished)) != 0 ||
        (rc = meta_get_num(s, txn, "consistent_index", 0, &m->ci)) != 0 ||
        (rc = meta_get_num(s, txn, "term", 0, &m->term)) != 0) {
        return rc;
    }
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------- */

static int mkdir_parents(const char *path)
{
    char buf[4096];
    size_t len = strlen(path);

    if (len >= sizeof(buf)) {
        return -ENAMETOOLONG;
    }
    memcpy(buf, path, len + 1);
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '/') {
            continue;
        }
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            return -errno;
        }
        buf[i] = '/';
    }
    return 0;
}

int mvcc_open(const char *db_path,
              const struct mvcc_options *opts,
              struct mvcc_store **out,
              char *errmsg,
              size_t errmsg_len)
{
    struct mvcc_store *s;
    size_t map_size = MVCC_DEFAULT_MAP_SIZE;
    struct meta_state m;
    MDB_txn *txn;
    int rc;

    *out = NULL;
    if (opts != NULL && opts->map_size != 0) {
        map_size = opts->map_size;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = KEEL_ENOMEM;
        if (errmsg != NULL && errmsg_len > 0) {
            snprintf(errmsg, errmsg_len, "mvcc: open: out of memory");
        }
        return rc;
    }
    rc = mkdir_parents(db_path);
    if (rc != 0) {
        mvcc__err(s, rc, "mvcc: open %s: creating parent directories: %s",
                  db_path, keel_strerror(rc));
        goto err_free;
    }
    rc = mdb_env_create(&s->env);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "open: mdb_env_create");
        goto err_free;
    }
    if ((rc = mdb_env_set_maxdbs(s->env, MVCC_DBI_COUNT)) != 0 ||
        (rc = mdb_env_set_mapsize(s->env, map_size)) != 0 ||
        (rc = mdb_env_set_maxreaders(s->env, 256)) != 0) {
        rc = mvcc__mdb_err(s, rc, "open: mdb_env_set_*");
        goto err_env;
    }
    rc = mdb_env_open(s->env, db_path, MDB_NOSUBDIR | MDB_NOSYNC | MDB_NOTLS,
                      0600);
    if (rc != 0) {
        char what[300];
        snprintf(what, sizeof(what), "open %s: mdb_env_open", db_path);
        rc = mvcc__mdb_err(s, rc, what);
        goto err_env;
    }
    {
        /* Reader slots left by a process that died: free them, or their
         * old snapshots would pin pages forever. */
        int dead = 0;
        mdb_reader_check(s->env, &dead);
    }
    if (mdb_env_get_maxkeysize(s->env) < KEYCODEC_MAX + 8) {
        rc = mvcc__err(s, KEEL_EINVAL, "mvcc: open: LMDB max key size %d < %d",
                       mdb_env_get_maxkeysize(s->env), KEYCODEC_MAX + 8);
        goto err_env;
    }
    rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "open: mdb_txn_begin");
        goto err_env;
    }
    for (int i = 0; i < MVCC_DBI_COUNT; i++) {
        rc = mdb_dbi_open(txn, dbi_names[i], MDB_CREATE, &s->dbi[i]);
        if (rc != 0) {
            char what[64];
            snprintf(what, sizeof(what), "open: mdb_dbi_open(%s)", dbi_names[i]);
            rc = mvcc__mdb_err(s, rc, what);
            goto err_txn;
        }
    }
    {
        int64_t layout;
        if ((rc = meta_get_num(s, txn, "keel_layout", 0, &layout)) != 0) {
            goto err_txn;
        }
        if (layout == 0) {
            rc = meta_put_u64(s, txn, "keel_layout", LAYOUT_VERSION);
        } else if (layout != LAYOUT_VERSION) {
            rc = mvcc__err(s, KEEL_ECORRUPT,
                           "mvcc: open %s: storage layout %lld, expected %d",
                           db_path, (long long)layout, LAYOUT_VERSION);
        }
        if (rc != 0) {
            goto err_txn;
        }
    }
    if ((rc = meta_load(s, txn, &m)) != 0) {
        goto err_txn;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "open: mdb_txn_commit");
        goto err_env;
    }
    s->rev = m.rev;
    s->compact_rev = m.compact_rev;
    s->finished_compact = m.finished;
    s->consistent_index = (uint64_t)m.ci;
    s->term = (uint64_t)m.term;
    errmsg_tls[0] = '\0';
    *out = s;
    return 0;

err_txn:
    mdb_txn_abort(txn);
err_env:
    mdb_env_close(s->env);
err_free:
    if (errmsg != NULL && errmsg_len > 0) {
        snprintf(errmsg, errmsg_len, "%s", errmsg_tls);
    }
    free(s);
    assert(rc != 0);
    return rc;
}

void mvcc_close(struct mvcc_store *s)
{
    if (s == NULL) {
        return;
    }
    assert(s->writer == NULL);
    mdb_env_close(s->env);
    free(s);
}

int mvcc_sync(struct mvcc_store *s)
{
    int rc = mdb_env_sync(s->env, 1);
    return rc != 0 ? mvcc__mdb_err(s, rc, "sync: mdb_env_sync") : 0;
}

int mvcc_copy_fd(struct mvcc_store *s, int fd, int compact)
{
    int rc = mdb_env_copyfd2(s->env, fd, compact ? MDB_CP_COMPACT : 0);
    return rc != 0 ? mvcc__mdb_err(s, rc, "copy: mdb_env_copyfd2") : 0;
}

int mvcc_set_map_size(struct mvcc_store *s, size_t bytes)
{
    int rc;
    if (s->writer != NULL) {
        return mvcc__err(s, KEEL_EBUSY, "mvcc: set map size: batch open");
    }
    rc = mdb_env_set_mapsize(s->env, bytes);
    return rc != 0 ? mvcc__mdb_err(s, rc, "mdb_env_set_mapsize") : 0;
}

int64_t mvcc_revision(struct mvcc_store *s)
{
    return s->rev;
}

int mvcc_compact_pending(struct mvcc_store *s)
{
    return s->compact_rev > s->finished_compact;
}

int64_t mvcc_compact_revision(struct mvcc_store *s)
{
    return s->compact_rev;
}

uint64_t mvcc_consistent_index(struct mvcc_store *s)
{
    return s->consistent_index;
}

uint64_t mvcc_term(struct mvcc_store *s)
{
    return s->term;
}

/* ---- batches --------------------------------------------------------------- */

int mvcc_write_begin(struct mvcc_store *s, struct mvcc_write **out)
{
    struct mvcc_write *w;
    int rc;

    *out = NULL;
    if (s->writer != NULL) {
        return mvcc__err(s, KEEL_EBUSY, "mvcc: write begin: a batch is open");
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return mvcc__err(s, KEEL_ENOMEM, "mvcc: write begin: out of memory");
    }
    rc = mdb_txn_begin(s->env, NULL, 0, &w->txn);
    if (rc != 0) {
        free(w);
        return mvcc__mdb_err(s, rc, "write begin: mdb_txn_begin");
    }
    w->s = s;
    w->rev = s->rev;
    w->compact_rev = s->compact_rev;
    w->ci_at_begin = s->consistent_index;
    s->writer = w;
    *out = w;
    return 0;
}

int mvcc_write_should_apply(const struct mvcc_write *w, uint64_t index)
{
    return index > w->ci_at_begin;
}

void mvcc_write_abort(struct mvcc_write *w)
{
    if (w == NULL) {
        return;
    }
    mdb_txn_abort(w->txn);
    w->s->writer = NULL;
    free(w);
}

int mvcc_write_commit(struct mvcc_write *w, uint64_t ci, uint64_t term)
{
    struct mvcc_store *s = w->s;
    int rc;

    if (w->poisoned) {
        rc = w->poisoned;
        mvcc_write_abort(w);
        return rc;
    }
    if (ci < w->ci_at_begin) {
        mvcc_write_abort(w);
        return mvcc__err(s, KEEL_EINVAL,
                         "mvcc: commit: consistent_index %llu < stored %llu",
                         (unsigned long long)ci,
                         (unsigned long long)s->consistent_index);
    }
    if ((rc = meta_put_u64(s, w->txn, "keel_rev", (uint64_t)w->rev)) != 0 ||
        (rc = meta_put_u64(s, w->txn, "consistent_index", ci)) != 0 ||
        (rc = meta_put_u64(s, w->txn, "term", term)) != 0) {
        goto err;
    }
    if (w->scheduled != 0 &&
        (rc = meta_put_rev(s, w->txn, "scheduledCompactRev", w->scheduled)) !=
            0) {
        goto err;
    }
    rc = mdb_txn_commit(w->txn);
    w->txn = NULL;
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "commit: mdb_txn_commit");
        s->writer = NULL;
        free(w);
        return rc;
    }
    s->rev = w->rev;
    s->compact_rev = w->compact_rev;
    s->consistent_index = ci;
    s->term = term;
    s->writer = NULL;
    free(w);
    return 0;
err:
    mvcc_write_abort(w);
    return rc;
}

int mvcc_write_commit_reset(struct mvcc_write *w, uint64_t ci, uint64_t term)
{
    w->ci_at_begin = 0; /* the one check that restore must pass */
    return mvcc_write_commit(w, ci, term);
}

void mvcc_write_events(const struct mvcc_write *w,
                       Mvccpb__Event ***events,
                       size_t *n)
{
    *events = w->events.ev;
    *n = w->events.n;
}

int mvcc_compact(struct mvcc_write *w, int64_t rev)
{
    if (w->poisoned) {
        return w->poisoned;
    }
    if (rev <= w->compact_rev) {
        return mvcc__err(w->s, KEEL_ECOMPACTED,
                         "mvcc: compact %lld: already compacted at %lld",
                         (long long)rev, (long long)w->compact_rev);
    }
    if (rev > w->rev) {
        return mvcc__err(w->s, KEEL_EFUTUREREV,
                         "mvcc: compact %lld: current revision is %lld",
                         (long long)rev, (long long)w->rev);
    }
    w->compact_rev = rev;
    w->scheduled = rev;
    w->events.n = 0;
    return 0;
}

/* ---- contexts -------------------------------------------------------------- */

int mvcc__ctx_read_begin(struct mvcc_store *s,
                         struct keel_arena *a,
                         struct mvcc_ctx *c)
{
    struct meta_state m;
    int rc;

    memset(c, 0, sizeof(*c));
    c->s = s;
    c->a = a;
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &c->txn);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "read: mdb_txn_begin");
    }
    /* Only the two numbers a read needs: a read txn is opened per request. */
    if ((rc = meta_get_num(s, c->txn, "keel_rev", 1, &m.rev)) != 0 ||
        (rc = meta_get_num(s, c->txn, "scheduledCompactRev", -1,
                           &m.compact_rev)) != 0) {
        mdb_txn_abort(c->txn);
        return rc;
    }
    c->begin_rev = m.rev;
    c->compact_rev = m.compact_rev;
    return 0;
}

void mvcc__ctx_read_end(struct mvcc_ctx *c)
{
    mdb_txn_abort(c->txn);
    c->txn = NULL;
}

int mvcc__ctx_write_begin(struct mvcc_write *w,
                          struct keel_arena *a,
                          struct mvcc_ctx *c)
{
    memset(c, 0, sizeof(*c));
    w->events.n = 0;
    w->events.ev = NULL;
    w->events.cap = 0;
    if (w->poisoned) {
        return w->poisoned;
    }
    c->s = w->s;
    c->w = w;
    c->txn = w->txn;
    c->a = a;
    c->begin_rev = w->rev;
    c->compact_rev = w->compact_rev;
    c->events = &w->events;
    return 0;
}

void mvcc__ctx_write_end(struct mvcc_ctx *c)
{
    if (c->nchanges > 0) {
        c->w->rev = c->begin_rev + 1;
    }
}

/* ---- plain tables ---------------------------------------------------------- */

static int table_check(struct mvcc_store *s,
                       enum mvcc_table t,
                       const void *key,
                       size_t klen,
                       int writing)
{
    if ((unsigned)t >= MVCC_TABLE_COUNT) {
        return mvcc__err(s, KEEL_EINVAL, "mvcc: table %d unknown", (int)t);
    }
    if (klen == 0 || klen > 480) {
        return mvcc__err(s, KEEL_EINVAL, "mvcc: table key of %zu bytes", klen);
    }
    if (writing && t == MVCC_TABLE_META && meta_is_reserved(key, klen)) {
        return mvcc__err(s, KEEL_EINVAL, "mvcc: meta key %.*s is mvcc's",
                         (int)klen, (const char *)key);
    }
    return 0;
}

int mvcc_table_put(struct mvcc_write *w,
                   enum mvcc_table t,
                   const void *key,
                   size_t klen,
                   const void *val,
                   size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc;

    if (w->poisoned) {
        return w->poisoned;
    }
    if ((rc = table_check(w->s, t, key, klen, 1)) != 0) {
        return rc;
    }
    rc = mdb_put(w->txn, w->s->dbi[MVCC_DBI_TABLES + t], &k, &v, 0);
    if (rc != 0) {
        char what[64];
        snprintf(what, sizeof(what), "table %s: mdb_put",
                 dbi_names[MVCC_DBI_TABLES + t]);
        return w->poisoned = mvcc__mdb_err(w->s, rc, what);
    }
    return 0;
}

int mvcc_table_del(struct mvcc_write *w,
                   enum mvcc_table t,
                   const void *key,
                   size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc;

    if (w->poisoned) {
        return w->poisoned;
    }
    if ((rc = table_check(w->s, t, key, klen, 1)) != 0) {
        return rc;
    }
    rc = mdb_del(w->txn, w->s->dbi[MVCC_DBI_TABLES + t], &k, NULL);
    if (rc == MDB_NOTFOUND) {
        return KEEL_ENOTFOUND;
    }
    if (rc != 0) {
        return w->poisoned = mvcc__mdb_err(w->s, rc, "table: mdb_del");
    }
    return 0;
}

/* A txn to read table t in: the batch's, or a fresh read txn. */
static int table_txn(struct mvcc_store *s,
                     struct mvcc_write *w,
                     MDB_txn **txn)
{
    int rc;
    if (w != NULL) {
        *txn = w->txn;
        return w->poisoned;
    }
    rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    return rc != 0 ? mvcc__mdb_err(s, rc, "table: mdb_txn_begin") : 0;
}

int mvcc_table_get(struct mvcc_store *s,
                   struct mvcc_write *w,
                   enum mvcc_table t,
                   const void *key,
                   size_t klen,
                   struct keel_arena *a,
                   void **val,
                   size_t *vlen)
{
    MDB_val k = {klen, (void *)key}, v;
    MDB_txn *txn;
    int rc;

    if ((rc = table_check(s, t, key, klen, 0)) != 0) {
        return rc;
    }
    if ((rc = table_txn(s, w, &txn)) != 0) {
        return rc;
    }
    rc = mdb_get(txn, s->dbi[MVCC_DBI_TABLES + t], &k, &v);
    if (rc == 0) {
        *val = keel_arena_dup(a, v.mv_data, v.mv_size);
        *vlen = v.mv_size;
        if (*val == NULL) {
            rc = mvcc__err(s, KEEL_ENOMEM, "mvcc: table get: out of memory");
        }
    } else if (rc == MDB_NOTFOUND) {
        rc = KEEL_ENOTFOUND;
    } else {
        rc = mvcc__mdb_err(s, rc, "table: mdb_get");
    }
    if (w == NULL) {
        mdb_txn_abort(txn);
    }
    return rc;
}

int mvcc_table_foreach(struct mvcc_store *s,
                       struct mvcc_write *w,
                       enum mvcc_table t,
                       mvcc_table_cb cb,
                       void *arg)
{
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_txn *txn;
    int rc;

    if ((unsigned)t >= MVCC_TABLE_COUNT) {
        return mvcc__err(s, KEEL_EINVAL, "mvcc: table %d unknown", (int)t);
    }
    if ((rc = table_txn(s, w, &txn)) != 0) {
        return rc;
    }
    rc = mdb_cursor_open(txn, s->dbi[MVCC_DBI_TABLES + t], &cur);
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "table: mdb_cursor_open");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        int crc = cb(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (crc != 0) {
            mdb_cursor_close(cur);
            rc = crc;
            goto out;
        }
    }
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    } else {
        rc = mvcc__mdb_err(s, rc, "table: mdb_cursor_get");
    }
    mdb_cursor_close(cur);
out:
    if (w == NULL) {
        mdb_txn_abort(txn);
    }
    return rc;
}
