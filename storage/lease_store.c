/*
 * storage/lease_store.c: leases in the MVCC store.
 *
 * Tables: `lease` is etcd's bucket: key = lease id as 8 bytes big-endian,
 * value = a leasepb.Lease message {ID=1, TTL=2, RemainingTTL=3} (etcd:
 * lease/lessor.go, lease/leasepb/lease.proto), encoded here by hand (three
 * varints) since keel has no leasepb. `lease_keys` (keel's) maps
 * lease id ‖ ikey -> user key: the keys attached to a lease, maintained by
 * every put and delete in mvcc_kv.c, so revoking a lease deletes its keys
 * without scanning the store.
 *
 * Revoke is one etcd txn: every attached key is deleted at one revision
 * (etcd: lessor.go Revoke, one txn, keys sorted), then the lease is removed.
 * Timers, expiry and checkpoint scheduling are the server's (issue: lease).
 */
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"
#include "mvcc_int.h"

static size_t put_varint(uint8_t *b, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        b[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    b[n++] = (uint8_t)v;
    return n;
}

static size_t lease_encode(uint8_t *b, const struct lease_store_lease *l)
{
    size_t n = 0;
    if (l->id != 0) {
        b[n++] = 0x08;
        n += put_varint(b + n, (uint64_t)l->id);
    }
    if (l->ttl != 0) {
        b[n++] = 0x10;
        n += put_varint(b + n, (uint64_t)l->ttl);
    }
    if (l->remaining_ttl != 0) {
        b[n++] = 0x18;
        n += put_varint(b + n, (uint64_t)l->remaining_ttl);
    }
    return n;
}

static int lease_decode(const uint8_t *b, size_t len, struct lease_store_lease *l)
{
    size_t i = 0;
    memset(l, 0, sizeof(*l));
    while (i < len) {
        uint8_t tag = b[i++];
        uint64_t v = 0;
        int shift = 0;
        for (;;) {
            if (i >= len || shift > 63) {
                return KEEL_ECORRUPT;
            }
            v |= (uint64_t)(b[i] & 0x7f) << shift;
            shift += 7;
            if ((b[i++] & 0x80) == 0) {
                break;
            }
        }
        switch (tag) {
            case 0x08:
                l->id = (int64_t)v;
                break;
            case 0x10:
                l->ttl = (int64_t)v;
                break;
            case 0x18:
                l->remaining_ttl = (int64_t)v;
                break;
            default:
                return KEEL_ECORRUPT; /* only varint fields 1..3 exist */
        }
    }
    return 0;
}

static MDB_txn *txn_of(struct mvcc_store *s, struct mvcc_write *w, int *rc)
{
    MDB_txn *txn = NULL;
    if (w != NULL) {
        *rc = w->poisoned;
        return w->txn;
    }
    *rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (*rc != 0) {
        *rc = mvcc__mdb_err(s, *rc, "lease: mdb_txn_begin");
    }
    return txn;
}

static void txn_done(struct mvcc_write *w, MDB_txn *txn)
{
    if (w == NULL && txn != NULL) {
        mdb_txn_abort(txn);
    }
}

static int lease_read(struct mvcc_store *s,
                      MDB_txn *txn,
                      int64_t id,
                      struct lease_store_lease *out)
{
    uint8_t kb[8];
    MDB_val k = {8, kb}, v;
    int rc;

    mvcc__u64_put(kb, (uint64_t)id);
    rc = mdb_get(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_LEASE], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return mvcc__err(s, KEEL_ELEASENOTFOUND, "lease %llx not found",
                         (unsigned long long)id);
    }
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "lease: mdb_get");
    }
    if (lease_decode(v.mv_data, v.mv_size, out) != 0) {
        return mvcc__err(s, KEEL_ECORRUPT, "lease %llx: record does not decode",
                         (unsigned long long)id);
    }
    return 0;
}

static int lease_write(struct mvcc_write *w, const struct lease_store_lease *l)
{
    uint8_t kb[8], vb[3 * 11];
    MDB_val k = {8, kb}, v = {0, vb};
    int rc;

    mvcc__u64_put(kb, (uint64_t)l->id);
    v.mv_size = lease_encode(vb, l);
    rc = mdb_put(w->txn, w->s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_LEASE], &k, &v,
                 0);
    if (rc != 0) {
        return w->poisoned = mvcc__mdb_err(w->s, rc, "lease: mdb_put");
    }
    return 0;
}

int lease_store_grant(struct mvcc_write *w, int64_t id, int64_t ttl)
{
    struct lease_store_lease l = {id, ttl, 0};
    int rc;

    if (w->poisoned) {
        return w->poisoned;
    }
    if (id <= 0) {
        return mvcc__err(w->s, KEEL_EINVAL, "lease grant: id %lld",
                         (long long)id);
    }
    rc = lease_read(w->s, w->txn, id, &l);
    if (rc == 0) {
        return mvcc__err(w->s, KEEL_ELEASEEXIST, "lease %llx exists",
                         (unsigned long long)id);
    }
    if (rc != KEEL_ELEASENOTFOUND) {
        return rc;
    }
    l.id = id;
    l.ttl = ttl;
    l.remaining_ttl = 0;
    return lease_write(w, &l);
}

int lease_store_checkpoint(struct mvcc_write *w, int64_t id, int64_t remaining)
{
    struct lease_store_lease l;
    int rc;

    if (w->poisoned) {
        return w->poisoned;
    }
    if ((rc = lease_read(w->s, w->txn, id, &l)) != 0) {
        return rc;
    }
    l.remaining_ttl = remaining;
    return lease_write(w, &l);
}

int lease_store_get(struct mvcc_store *s,
                    struct mvcc_write *w,
                    int64_t id,
                    struct lease_store_lease *out)
{
    int rc;
    MDB_txn *txn = txn_of(s, w, &rc);
    if (rc == 0) {
        rc = lease_read(s, txn, id, out);
    }
    txn_done(w, txn);
    return rc;
}

int lease_store_list(struct mvcc_store *s,
                     struct mvcc_write *w,
                     struct keel_arena *a,
                     struct lease_store_lease **out,
                     size_t *n)
{
    MDB_cursor *cur = NULL;
    MDB_stat st;
    MDB_val k, v;
    size_t i = 0;
    int rc;
    MDB_txn *txn = txn_of(s, w, &rc);

    *out = NULL;
    *n = 0;
    if (rc != 0) {
        goto out;
    }
    rc = mdb_stat(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_LEASE], &st);
    if (rc == 0) {
        rc = mdb_cursor_open(txn, s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_LEASE],
                             &cur);
    }
    if (rc != 0) {
        rc = mvcc__mdb_err(s, rc, "lease list");
        goto out;
    }
    *out = keel_arena_alloc(a, (st.ms_entries + 1) * sizeof(**out));
    if (*out == NULL) {
        rc = mvcc__err(s, KEEL_ENOMEM, "lease list: out of memory");
        goto out;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && i < st.ms_entries;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (lease_decode(v.mv_data, v.mv_size, &(*out)[i]) != 0) {
            rc = mvcc__err(s, KEEL_ECORRUPT, "lease list: record does not "
                                             "decode");
            goto out;
        }
        i++;
    }
    rc = (rc == 0 || rc == MDB_NOTFOUND) ? 0
                                         : mvcc__mdb_err(s, rc, "lease list");
    *n = i;
out:
    if (cur != NULL) {
        mdb_cursor_close(cur);
    }
    txn_done(w, txn);
    return rc;
}

static int bin_cmp(const void *pa, const void *pb)
{
    const ProtobufCBinaryData *a = pa, *b = pb;
    return mvcc__key_cmp(a->data, a->len, b->data, b->len);
}

/* Keys attached to lease id, copied into a, in key order. */
static int keys_of(struct mvcc_store *s,
                   MDB_txn *txn,
                   int64_t id,
                   struct keel_arena *a,
                   ProtobufCBinaryData **keys,
                   size_t *n)
{
    uint8_t kb[8];
    MDB_cursor *cur;
    MDB_val k = {8, kb}, v;
    size_t cap = 0;
    int rc;

    *keys = NULL;
    *n = 0;
    mvcc__u64_put(kb, (uint64_t)id);
    rc = mdb_cursor_open(txn, s->dbi[MVCC_DBI_LEASE_KEYS], &cur);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "lease keys: mdb_cursor_open");
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && k.mv_size > 8 && memcmp(k.mv_data, kb, 8) == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            ProtobufCBinaryData *na = keel_arena_alloc(a, ncap * sizeof(*na));
            if (na == NULL) {
                mdb_cursor_close(cur);
                return mvcc__err(s, KEEL_ENOMEM, "lease keys: out of memory");
            }
            if (*n) {
                memcpy(na, *keys, *n * sizeof(*na));
            }
            *keys = na;
            cap = ncap;
        }
        (*keys)[*n].len = v.mv_size;
        (*keys)[*n].data = keel_arena_dup(a, v.mv_data, v.mv_size);
        if ((*keys)[*n].data == NULL) {
            mdb_cursor_close(cur);
            return mvcc__err(s, KEEL_ENOMEM, "lease keys: out of memory");
        }
        (*n)++;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc__mdb_err(s, rc, "lease keys: mdb_cursor_get");
    }
    if (*n > 1) {
        qsort(*keys, *n, sizeof(**keys), bin_cmp);
    }
    return 0;
}

int lease_store_keys(struct mvcc_store *s,
                     struct mvcc_write *w,
                     int64_t id,
                     struct keel_arena *a,
                     ProtobufCBinaryData **keys,
                     size_t *n)
{
    int rc;
    MDB_txn *txn = txn_of(s, w, &rc);
    if (rc == 0) {
        rc = keys_of(s, txn, id, a, keys, n);
    }
    txn_done(w, txn);
    return rc;
}

int lease_store_revoke(struct mvcc_write *w, int64_t id, struct keel_arena *a)
{
    struct lease_store_lease l;
    ProtobufCBinaryData *keys;
    struct mvcc_ctx c;
    uint8_t kb[8];
    MDB_val k = {8, kb};
    size_t n;
    int rc;

    if ((rc = mvcc__ctx_write_begin(w, a, &c)) != 0) {
        return rc;
    }
    if ((rc = lease_read(w->s, w->txn, id, &l)) != 0) {
        return rc;
    }
    if ((rc = keys_of(w->s, w->txn, id, a, &keys, &n)) != 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct mvcc_irec r;
        rc = mvcc__index_get(&c, keys[i].data, keys[i].len, &r);
        if (rc == KEEL_ENOTFOUND || (rc == 0 && r.tomb)) {
            continue; /* cannot happen: deletes detach */
        }
        if (rc == 0) {
            rc = mvcc__delete_key(&c, keys[i].data, keys[i].len, &r, 0, NULL);
        }
        if (rc != 0) {
            mvcc__ctx_write_end(&c);
            return mvcc__poison(&c, rc);
        }
    }
    mvcc__ctx_write_end(&c);
    mvcc__u64_put(kb, (uint64_t)id);
    rc = mdb_del(w->txn, w->s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_LEASE], &k,
                 NULL);
    if (rc != 0) {
        return w->poisoned = mvcc__mdb_err(w->s, rc, "lease revoke: mdb_del");
    }
    return 0;
}
