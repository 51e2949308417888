/*
 * storage/keycodec.c: user keys of any length in the LMDB key index, in
 * byte order.
 *
 * Why: LMDB keys are at most mdb_env_get_maxkeysize() = 511 bytes, but etcd
 * keys may be as long as a request (1.5 MiB), and Range must still return
 * them in byte order among the short ones.
 *
 * Encoding (the `index` table key, "ikey"):
 *   - a user key of at most KEYCODEC_PREFIX (400) bytes is its own ikey;
 *   - a longer key L is stored as  L[0:400] ‖ id8,  where id8 is the first 8
 *     bytes of SHA-256(L); the full key is kept at the end of the index
 *     record (after the 48-byte header).
 *
 * Order: for a short key s and a long key L with prefix p = L[0:400], the
 * byte order of s against p‖id8 is the order of s against L (s has at most
 * 400 bytes, so the first difference, if any, is inside p; if s is a prefix
 * of p, s < L and s < p‖id8). So the index is in user-key order except
 * *inside a group* of long keys sharing the same 400-byte prefix, which are
 * contiguous but ordered by id. The walk below loads such a group, sorts it
 * by full key and filters it on the range before going on. The cost of a
 * group is O(g log g) for g long keys sharing one 400-byte prefix; keys that
 * long are rare, groups of them rarer.
 *
 * Lookups of a long key go straight to prefix‖id8 and compare the stored
 * full key. Two distinct keys with the same prefix and the same 64-bit id
 * (probability ~ g^2 / 2^65) cannot both be stored: the second put fails
 * with KEEL_ECORRUPT and a message naming the collision, nothing else
 * breaks.
 *
 * If you change this encoding, existing stores become unreadable: bump the
 * `keel_layout` meta version in mvcc.c.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "keel_err.h"
#include "mvcc_int.h"

size_t keycodec_encode(const uint8_t *k, size_t len, uint8_t *out)
{
    uint8_t md[SHA256_DIGEST_LENGTH];

    if (len <= KEYCODEC_PREFIX) {
        memcpy(out, k, len);
        return len;
    }
    memcpy(out, k, KEYCODEC_PREFIX);
    SHA256(k, len, md);
    memcpy(out + KEYCODEC_PREFIX, md, KEYCODEC_ID);
    return KEYCODEC_MAX;
}

int mvcc__key_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    int d = n ? memcmp(a, b, n) : 0;

    if (d != 0) {
        return d < 0 ? -1 : 1;
    }
    return alen < blen ? -1 : (alen > blen ? 1 : 0);
}

static int is_unbounded(const uint8_t *end, size_t elen)
{
    return elen == 1 && end[0] == 0;
}

int mvcc__in_range(const uint8_t *k,
                   size_t klen,
                   const uint8_t *key,
                   size_t keylen,
                   const uint8_t *end,
                   size_t elen)
{
    if (elen == 0) {
        return mvcc__key_cmp(k, klen, key, keylen) == 0;
    }
    if (mvcc__key_cmp(k, klen, key, keylen) < 0) {
        return 0;
    }
    return is_unbounded(end, elen) || mvcc__key_cmp(k, klen, end, elen) < 0;
}

int mvcc__index_get(struct mvcc_ctx *c,
                    const uint8_t *k,
                    size_t klen,
                    struct mvcc_irec *out)
{
    uint8_t ik[KEYCODEC_MAX];
    MDB_val mk, mv;
    int rc;

    mk.mv_size = keycodec_encode(k, klen, ik);
    mk.mv_data = ik;
    rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_INDEX], &mk, &mv);
    if (rc == MDB_NOTFOUND) {
        return KEEL_ENOTFOUND;
    }
    if (rc != 0) {
        return mvcc__mdb_err(c->s, rc, "index: mdb_get");
    }
    if (mv.mv_size < MVCC_IREC_BYTES) {
        return mvcc__err(c->s, KEEL_ECORRUPT, "index: record of %zu bytes",
                         mv.mv_size);
    }
    if (keycodec_is_long(mk.mv_size) &&
        mvcc__key_cmp((const uint8_t *)mv.mv_data + MVCC_IREC_BYTES,
                      mv.mv_size - MVCC_IREC_BYTES, k, klen) != 0) {
        /* Same prefix and id, another key: not this one. */
        return KEEL_ENOTFOUND;
    }
    mvcc__irec_get(mv.mv_data, out);
    return 0;
}

int mvcc__index_put(struct mvcc_ctx *c,
                    const uint8_t *k,
                    size_t klen,
                    const struct mvcc_irec *r)
{
    uint8_t ik[KEYCODEC_MAX];
    MDB_val mk, mv;
    int rc;

    mk.mv_size = keycodec_encode(k, klen, ik);
    mk.mv_data = ik;
    if (keycodec_is_long(mk.mv_size)) {
        rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_INDEX], &mk, &mv);
        if (rc == 0 &&
            mvcc__key_cmp((const uint8_t *)mv.mv_data + MVCC_IREC_BYTES,
                          mv.mv_size - MVCC_IREC_BYTES, k, klen) != 0) {
            return mvcc__err(c->s, KEEL_ECORRUPT,
                             "index: long key of %zu bytes collides with "
                             "another key (same 400-byte prefix and 64-bit id)",
                             klen);
        }
        if (rc != 0 && rc != MDB_NOTFOUND) {
            return mvcc__mdb_err(c->s, rc, "index: mdb_get");
        }
    }
    mv.mv_size = MVCC_IREC_BYTES + (keycodec_is_long(mk.mv_size) ? klen : 0);
    mv.mv_data = NULL;
    rc = mdb_put(c->txn, c->s->dbi[MVCC_DBI_INDEX], &mk, &mv, MDB_RESERVE);
    if (rc != 0) {
        return mvcc__mdb_err(c->s, rc, "index: mdb_put");
    }
    mvcc__irec_put(mv.mv_data, r);
    if (keycodec_is_long(mk.mv_size)) {
        memcpy((uint8_t *)mv.mv_data + MVCC_IREC_BYTES, k, klen);
    }
    return 0;
}

int mvcc__index_del(struct mvcc_ctx *c, const uint8_t *k, size_t klen)
{
    uint8_t ik[KEYCODEC_MAX];
    MDB_val mk;
    int rc;

    mk.mv_size = keycodec_encode(k, klen, ik);
    mk.mv_data = ik;
    rc = mdb_del(c->txn, c->s->dbi[MVCC_DBI_INDEX], &mk, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        return mvcc__mdb_err(c->s, rc, "index: mdb_del");
    }
    return 0;
}

/* One member of a group of long keys (pointers into LMDB pages). */
struct group_item
{
    const uint8_t *k;
    size_t klen;
    const uint8_t *rec;
};

static int group_item_cmp(const void *pa, const void *pb)
{
    const struct group_item *a = pa, *b = pb;
    return mvcc__key_cmp(a->k, a->klen, b->k, b->klen);
}

int mvcc__index_walk(struct mvcc_ctx *c,
                     const uint8_t *key,
                     size_t klen,
                     const uint8_t *end,
                     size_t elen,
                     mvcc_index_cb cb,
                     void *arg)
{
    struct group_item *group = NULL;
    size_t gcap = 0;
    struct mvcc_irec r;
    MDB_cursor *cur;
    MDB_val mk, mv;
    int unbounded = is_unbounded(end, elen);
    int rc;

    if (elen == 0) {
        rc = mvcc__index_get(c, key, klen, &r);
        if (rc == KEEL_ENOTFOUND) {
            return 0;
        }
        return rc != 0 ? rc : cb(arg, key, klen, &r);
    }
    if (!unbounded && mvcc__key_cmp(end, elen, key, klen) <= 0) {
        return 0;
    }
    rc = mdb_cursor_open(c->txn, c->s->dbi[MVCC_DBI_INDEX], &cur);
    if (rc != 0) {
        return mvcc__mdb_err(c->s, rc, "index: mdb_cursor_open");
    }
    mk.mv_data = (void *)key;
    mk.mv_size = klen < KEYCODEC_PREFIX ? klen : KEYCODEC_PREFIX;
    rc = mdb_cursor_get(cur, &mk, &mv, MDB_SET_RANGE);
    while (rc == 0) {
        const uint8_t *ik = mk.mv_data;
        size_t n = 0;

        if (!keycodec_is_long(mk.mv_size)) {
            if (!unbounded &&
                mvcc__key_cmp(ik, mk.mv_size, end, elen) >= 0) {
                break;
            }
            if (mvcc__key_cmp(ik, mk.mv_size, key, klen) >= 0) {
                mvcc__irec_get(mv.mv_data, &r);
                rc = cb(arg, ik, mk.mv_size, &r);
                if (rc != 0) {
                    goto out;
                }
            }
            rc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
            continue;
        }
        if (!unbounded &&
            mvcc__key_cmp(ik, KEYCODEC_PREFIX, end, elen) >= 0) {
            break;
        }
        /* A group of long keys sharing ik's 400-byte prefix. */
        do {
            if (n == gcap) {
                size_t ncap = gcap ? 2 * gcap : 16;
                struct group_item *g = realloc(group, ncap * sizeof(*g));
                if (g == NULL) {
                    rc = mvcc__err(c->s, KEEL_ENOMEM, "index: group of %zu",
                                   ncap);
                    goto out;
                }
                group = g;
                gcap = ncap;
            }
            group[n].rec = mv.mv_data;
            group[n].k = (const uint8_t *)mv.mv_data + MVCC_IREC_BYTES;
            group[n].klen = mv.mv_size - MVCC_IREC_BYTES;
            n++;
            rc = mdb_cursor_get(cur, &mk, &mv, MDB_NEXT);
        } while (rc == 0 && keycodec_is_long(mk.mv_size) &&
                 memcmp(mk.mv_data, ik, KEYCODEC_PREFIX) == 0);
        qsort(group, n, sizeof(*group), group_item_cmp);
        for (size_t i = 0; i < n; i++) {
            int rc2;
            if (!mvcc__in_range(group[i].k, group[i].klen, key, klen, end,
                                elen)) {
                continue;
            }
            mvcc__irec_get(group[i].rec, &r);
            rc2 = cb(arg, group[i].k, group[i].klen, &r);
            if (rc2 != 0) {
                rc = rc2;
                goto out;
            }
        }
    }
    if (rc == MDB_NOTFOUND || rc == 0) {
        rc = 0;
    } else {
        rc = mvcc__mdb_err(c->s, rc, "index: mdb_cursor_get");
    }
out:
    free(group);
    mdb_cursor_close(cur);
    return rc;
}
