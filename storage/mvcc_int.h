/*
 * storage/mvcc_int.h: private to storage/mvcc*.c, keycodec.c, lease_store.c.
 * The layout of the LMDB tables is described in mvcc.c.
 */
#ifndef KEEL_MVCC_INT_H
#define KEEL_MVCC_INT_H

#include <lmdb.h>
#include <stdarg.h>
#include <stdint.h>

#include "mvcc.h"

/* ---- long-key codec (keycodec.c) ---------------------------------------- */

/* User keys up to KEYCODEC_PREFIX bytes are stored as themselves in the index
 * table; longer keys as their first KEYCODEC_PREFIX bytes + an 8-byte id
 * (SHA-256 of the whole key, truncated). See keycodec.c. */
#define KEYCODEC_PREFIX 400
#define KEYCODEC_ID 8
#define KEYCODEC_MAX (KEYCODEC_PREFIX + KEYCODEC_ID)

/* Encode user key k into out (KEYCODEC_MAX bytes); returns the length. */
size_t keycodec_encode(const uint8_t *k, size_t len, uint8_t *out);

/* Whether an index-table key stands for a long user key. */
static inline int keycodec_is_long(size_t ikey_len)
{
    return ikey_len > KEYCODEC_PREFIX;
}

/* ---- records ------------------------------------------------------------- */

struct mvcc_rev
{
    int64_t main;
    int64_t sub;
};

#define MVCC_REV_BYTES 17 /* main BE, '_', sub BE (etcd: revision.go) */

/* Index-table record: the latest state of one user key. */
struct mvcc_irec
{
    struct mvcc_rev mod; /* latest revision (put or tombstone) */
    int64_t create;      /* create_revision of the latest generation */
    int64_t version;
    int64_t lease;
    int tomb; /* latest revision is a tombstone */
};
#define MVCC_IREC_BYTES 48

/* revlink-table record: the neighbours of one revision of a key. */
struct mvcc_link
{
    struct mvcc_rev prev; /* {0,0}: none */
    struct mvcc_rev next; /* {0,0}: none */
    int tomb;
};
#define MVCC_LINK_BYTES 33

enum {
    MVCC_DBI_KEY,
    MVCC_DBI_INDEX,
    MVCC_DBI_REVLINK,
    MVCC_DBI_LEASE_KEYS,
    MVCC_DBI_TABLES, /* first of the MVCC_TABLE_* tables */
    MVCC_DBI_COUNT = MVCC_DBI_TABLES + MVCC_TABLE_COUNT
};

struct mvcc_store
{
    MDB_env *env;
    MDB_dbi dbi[MVCC_DBI_COUNT];
    /* Committed state; written by the writer at commit, read by anyone:
     * readers that need a consistent view read meta in their own txn. */
    int64_t rev;
    int64_t compact_rev;
    uint64_t consistent_index;
    uint64_t term;
    int64_t finished_compact;  /* finishedCompactRev */
    struct mvcc_write *writer; /* open batch, or NULL */
};

/* Per-etcd-txn event list. */
struct mvcc_events
{
    Mvccpb__Event **ev;
    size_t n, cap;
};

struct mvcc_write
{
    struct mvcc_store *s;
    MDB_txn *txn;
    int poisoned;           /* storage error: the batch can only abort */
    int64_t rev;            /* current revision inside the batch */
    int64_t compact_rev;    /* compact revision inside the batch */
    int64_t scheduled;      /* compaction scheduled in this batch, or 0 */
    uint64_t ci_at_begin;   /* consistent_index committed before */
    struct mvcc_events events;
};

/* A view for one etcd txn: a read txn, or a write batch's txn. */
struct mvcc_ctx
{
    struct mvcc_store *s;
    struct mvcc_write *w; /* NULL for a read view */
    MDB_txn *txn;
    int64_t begin_rev;   /* revision before this etcd txn */
    int64_t compact_rev;
    int64_t nchanges;    /* changes (sub revisions) written so far */
    struct keel_arena *a;
    struct mvcc_events *events; /* NULL: do not record */
};

/* ---- shared helpers (mvcc.c) ---------------------------------------------- */

/* Format into s->errmsg; returns rv. */
int mvcc__err(struct mvcc_store *s, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Map an LMDB/errno code to a keel code, recording "what: mdb_strerror". */
int mvcc__mdb_err(struct mvcc_store *s, int mrc, const char *what);
/* Mark the batch poisoned after a storage error; returns rv. */
int mvcc__poison(struct mvcc_ctx *c, int rv);

void mvcc__rev_put(uint8_t *b, struct mvcc_rev r);
struct mvcc_rev mvcc__rev_get(const uint8_t *b);
int mvcc__rev_cmp(struct mvcc_rev a, struct mvcc_rev b);
void mvcc__u64_put(uint8_t *b, uint64_t v);
uint64_t mvcc__u64_get(const uint8_t *b);

void mvcc__irec_put(uint8_t *b, const struct mvcc_irec *r);
void mvcc__irec_get(const uint8_t *b, struct mvcc_irec *r);
void mvcc__link_put(uint8_t *b, const struct mvcc_link *l);
void mvcc__link_get(const uint8_t *b, struct mvcc_link *l);

/* Begin a read ctx (own read txn); mvcc__ctx_read_end() ends it. */
int mvcc__ctx_read_begin(struct mvcc_store *s,
                         struct keel_arena *a,
                         struct mvcc_ctx *c);
void mvcc__ctx_read_end(struct mvcc_ctx *c);
/* Begin an etcd txn inside batch w. */
int mvcc__ctx_write_begin(struct mvcc_write *w,
                          struct keel_arena *a,
                          struct mvcc_ctx *c);
/* End it: bump the batch revision if anything was written. */
void mvcc__ctx_write_end(struct mvcc_ctx *c);

/* Current revision visible in c (begin_rev, +1 once it wrote). */
static inline int64_t mvcc__ctx_rev(const struct mvcc_ctx *c)
{
    return c->begin_rev + (c->nchanges > 0 ? 1 : 0);
}

/* ---- keys (keycodec.c) ------------------------------------------------- */

/* Look up the index record of user key k. Returns 0, KEEL_ENOTFOUND or an
 * error. */
int mvcc__index_get(struct mvcc_ctx *c,
                    const uint8_t *k,
                    size_t klen,
                    struct mvcc_irec *out);
int mvcc__index_put(struct mvcc_ctx *c,
                    const uint8_t *k,
                    size_t klen,
                    const struct mvcc_irec *r);
int mvcc__index_del(struct mvcc_ctx *c, const uint8_t *k, size_t klen);

/* Visit the index entries of the user keys in [key, end) in key order
 * (end: NULL/len 0 = the single key; "\0" = no upper bound). The callback
 * gets pointers valid for the call only; a non-zero return stops the walk
 * and is returned (1 is used for "stop, no error"). */
typedef int (*mvcc_index_cb)(void *arg,
                             const uint8_t *k,
                             size_t klen,
                             const struct mvcc_irec *r);
int mvcc__index_walk(struct mvcc_ctx *c,
                     const uint8_t *key,
                     size_t klen,
                     const uint8_t *end,
                     size_t elen,
                     mvcc_index_cb cb,
                     void *arg);

/* Whether user key k is in [key, end) (same end rules). */
int mvcc__in_range(const uint8_t *k,
                   size_t klen,
                   const uint8_t *key,
                   size_t keylen,
                   const uint8_t *end,
                   size_t elen);
int mvcc__key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* ---- kv (mvcc_kv.c) -------------------------------------------------------- */

/* Read the KeyValue stored at revision r (a put) into the arena. */
int mvcc__kv_read(struct mvcc_ctx *c, struct mvcc_rev r, Mvccpb__KeyValue **kv);

/* The event prev_kv of a key at revision `main`, etcd's way: the key at
 * main - 1, walking back from its newest revision `latest`. */
int mvcc__prev_kv(struct mvcc_ctx *c,
                  struct mvcc_rev latest,
                  int64_t main,
                  Mvccpb__KeyValue **out);

/* Delete one live key (tombstone at the ctx's next sub revision). */
int mvcc__delete_key(struct mvcc_ctx *c,
                     const uint8_t *k,
                     size_t klen,
                     const struct mvcc_irec *r,
                     int want_prev,
                     Mvccpb__KeyValue **prev);

#endif /* KEEL_MVCC_INT_H */
