/*
 * storage/mvcc_kv.c: etcd's KV operations on the MVCC tables: Range, Put,
 * DeleteRange and Txn, with etcd 3.4's observable semantics (etcd:
 * etcdserver/apply.go, mvcc/kvstore_txn.go).
 *
 * Happy path of a write: look the key up in `index` (its latest state),
 * validate (nothing written yet), then write the new revision to `key`
 * (MDB_APPEND: revisions only grow), link it after the key's previous
 * revision in `revlink`, rewrite the key's `index` record and its lease
 * attachment, and record the event.
 *
 * Reads at the current revision use the `index` record directly; reads at an
 * older revision walk the key's `revlink` chain back from its latest
 * revision to the newest one at or below the asked revision (a chain that
 * ends in a compacted revision means the key did not exist then).
 *
 * Failure modes: validation errors return before any write; any LMDB or
 * memory error after the first write poisons the batch (mvcc.c).
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "go_sort.h"
#include "keel_err.h"
#include "mvcc_int.h"

/* A protobuf-c message of descriptor d in the arena, initialised. */
static void *new_msg(struct keel_arena *a, const ProtobufCMessageDescriptor *d)
{
    void *m = keel_arena_alloc(a, d->sizeof_message);
    if (m != NULL) {
        protobuf_c_message_init(d, m);
    }
    return m;
}

#define NEW(a, T, desc) ((T *)new_msg((a), &(desc)))

static int oom(struct mvcc_ctx *c, const char *what)
{
    return mvcc__poison(c, mvcc__err(c->s, KEEL_ENOMEM,
                                     "mvcc: %s: out of memory", what));
}

static Etcdserverpb__ResponseHeader *new_header(struct mvcc_ctx *c,
                                               int64_t rev)
{
    Etcdserverpb__ResponseHeader *h =
        NEW(c->a, Etcdserverpb__ResponseHeader,
            etcdserverpb__response_header__descriptor);
    if (h != NULL) {
        h->revision = rev;
    }
    return h;
}

/* ---- reading revisions ----------------------------------------------------- */

static int link_get(struct mvcc_ctx *c, struct mvcc_rev r, struct mvcc_link *l)
{
    uint8_t kb[MVCC_REV_BYTES];
    MDB_val k = {sizeof(kb), kb}, v;
    int rc;

    mvcc__rev_put(kb, r);
    rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_REVLINK], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return KEEL_ENOTFOUND;
    }
    if (rc != 0) {
        return mvcc__mdb_err(c->s, rc, "revlink: mdb_get");
    }
    if (v.mv_size != MVCC_LINK_BYTES) {
        return mvcc__err(c->s, KEEL_ECORRUPT, "mvcc: revlink of %zu bytes",
                         v.mv_size);
    }
    mvcc__link_get(v.mv_data, l);
    return 0;
}

int mvcc__kv_read(struct mvcc_ctx *c, struct mvcc_rev r, Mvccpb__KeyValue **kv)
{
    uint8_t kb[MVCC_REV_BYTES];
    MDB_val k = {sizeof(kb), kb}, v;
    int rc;

    mvcc__rev_put(kb, r);
    rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_KEY], &k, &v);
    if (rc != 0) {
        /* The index said this revision exists. */
        return mvcc__err(c->s, rc == MDB_NOTFOUND ? KEEL_ECORRUPT : KEEL_EIO,
                         "mvcc: key table: revision %lld_%lld: %s",
                         (long long)r.main, (long long)r.sub,
                         mdb_strerror(rc));
    }
    *kv = mvccpb__key_value__unpack(&c->a->pb, v.mv_size, v.mv_data);
    if (*kv == NULL) {
        return mvcc__err(c->s, KEEL_ECORRUPT,
                         "mvcc: key table: revision %lld_%lld does not decode "
                         "(or out of memory)",
                         (long long)r.main, (long long)r.sub);
    }
    return 0;
}

/* The revision of the key visible at `at`: 1 and *out, 0 if none. */
static int visible_rev(struct mvcc_ctx *c,
                       const struct mvcc_irec *r,
                       int64_t at,
                       struct mvcc_rev *out)
{
    struct mvcc_rev cur = r->mod;
    struct mvcc_link l;
    int rc;

    if (r->mod.main <= at) {
        *out = r->mod;
        return r->tomb ? 0 : 1;
    }
    for (;;) {
        rc = link_get(c, cur, &l);
        if (rc == KEEL_ENOTFOUND) {
            return 0; /* compacted: the key did not exist at `at` */
        }
        if (rc != 0) {
            return rc;
        }
        if (cur.main <= at) {
            *out = cur;
            return l.tomb ? 0 : 1;
        }
        if (l.prev.main == 0) {
            return 0;
        }
        cur = l.prev;
    }
}

/* etcd's prev_kv for an event of a key at main revision `main` (etcd:
 * v3rpc/watch.go sendLoop reads the key at ModRevision - 1): its version
 * before this revision, not the one an earlier op of the same txn wrote (a
 * txn may put a key and delete it with a from-key DeleteRange). `latest` is
 * the key's newest revision before the event. *out NULL: none. A put that
 * creates its key has no prev_kv at all (the callers check). */
int mvcc__prev_kv(struct mvcc_ctx *c,
                  struct mvcc_rev latest,
                  int64_t main,
                  Mvccpb__KeyValue **out)
{
    struct mvcc_rev cur = latest;
    struct mvcc_link l;
    int rc;

    *out = NULL;
    if (main - 1 < c->compact_rev) {
        return 0; /* etcd's read at main - 1 fails: compacted */
    }
    for (;;) {
        rc = link_get(c, cur, &l);
        if (rc == KEEL_ENOTFOUND) {
            return 0;
        }
        if (rc != 0) {
            return rc;
        }
        if (cur.main < main) {
            return l.tomb ? 0 : mvcc__kv_read(c, cur, out);
        }
        if (l.prev.main == 0) {
            return 0;
        }
        cur = l.prev;
    }
}

/* ---- events ---------------------------------------------------------------- */

static int add_event(struct mvcc_ctx *c,
                     Mvccpb__Event__EventType type,
                     Mvccpb__KeyValue *kv,
                     Mvccpb__KeyValue *prev)
{
    struct mvcc_events *e = c->events;
    Mvccpb__Event *ev;

    if (e == NULL) {
        return 0;
    }
    if (e->n == e->cap) {
        size_t ncap = e->cap ? 2 * e->cap : 8;
        Mvccpb__Event **a = keel_arena_alloc(c->a, ncap * sizeof(*a));
        if (a == NULL) {
            return oom(c, "events");
        }
        if (e->n) {
            memcpy(a, e->ev, e->n * sizeof(*a));
        }
        e->ev = a;
        e->cap = ncap;
    }
    ev = NEW(c->a, Mvccpb__Event, mvccpb__event__descriptor);
    if (ev == NULL) {
        return oom(c, "events");
    }
    ev->type = type;
    ev->kv = kv;
    ev->prev_kv = prev;
    e->ev[e->n++] = ev;
    return 0;
}

/* ---- writing revisions ------------------------------------------------------ */

static int lease_exists(struct mvcc_ctx *c, int64_t lease)
{
    uint8_t kb[8];
    MDB_val k = {8, kb}, v;
    int rc;

    mvcc__u64_put(kb, (uint64_t)lease);
    rc = mdb_get(c->txn, c->s->dbi[MVCC_DBI_TABLES + MVCC_TABLE_LEASE], &k, &v);
    if (rc == MDB_NOTFOUND) {
        return 0;
    }
    return rc == 0 ? 1 : mvcc__mdb_err(c->s, rc, "lease: mdb_get");
}

static int lease_key_set(struct mvcc_ctx *c,
                         int64_t lease,
                         const uint8_t *k,
                         size_t klen,
                         int attach)
{
    uint8_t kb[8 + KEYCODEC_MAX];
    MDB_val mk, mv = {klen, (void *)k};
    int rc;

    mvcc__u64_put(kb, (uint64_t)lease);
    mk.mv_size = 8 + keycodec_encode(k, klen, kb + 8);
    mk.mv_data = kb;
    if (attach) {
        rc = mdb_put(c->txn, c->s->dbi[MVCC_DBI_LEASE_KEYS], &mk, &mv, 0);
    } else {
        rc = mdb_del(c->txn, c->s->dbi[MVCC_DBI_LEASE_KEYS], &mk, NULL);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
        }
    }
    return rc != 0 ? mvcc__mdb_err(c->s, rc, "lease_keys: write") : 0;
}

/* Write one revision (KeyValue kv, tombstone or not) of a key after `old`
 * (the key's index record, NULL if none). */
static int write_rev(struct mvcc_ctx *c,
                     const struct mvcc_irec *old,
                     int tomb,
                     const Mvccpb__KeyValue *kv,
                     struct mvcc_rev *out)
{
    uint8_t kb[MVCC_REV_BYTES + 1], lb[MVCC_LINK_BYTES];
    struct mvcc_rev rev = {c->begin_rev + 1, c->nchanges};
    struct mvcc_link link = {{0, 0}, {0, 0}, tomb};
    MDB_val mk = {MVCC_REV_BYTES + (tomb ? 1 : 0), kb}, mv;
    int rc;

    mvcc__rev_put(kb, rev);
    kb[MVCC_REV_BYTES] = 't';
    mv.mv_size = mvccpb__key_value__get_packed_size(kv);
    mv.mv_data = NULL;
    rc = mdb_put(c->txn, c->s->dbi[MVCC_DBI_KEY], &mk, &mv,
                 MDB_RESERVE | MDB_APPEND);
    if (rc != 0) {
        return mvcc__mdb_err(c->s, rc, "key table: mdb_put");
    }
    mvccpb__key_value__pack(kv, mv.mv_data);

    if (old != NULL) {
        struct mvcc_link ol;
        rc = link_get(c, old->mod, &ol);
        if (rc == 0) {
            ol.next = rev;
            mvcc__link_put(lb, &ol);
            mk.mv_size = MVCC_REV_BYTES;
            mvcc__rev_put(kb, old->mod);
            mv.mv_size = sizeof(lb);
            mv.mv_data = lb;
            rc = mdb_put(c->txn, c->s->dbi[MVCC_DBI_REVLINK], &mk, &mv, 0);
            if (rc != 0) {
                return mvcc__mdb_err(c->s, rc, "revlink: mdb_put");
            }
            link.prev = old->mod;
        } else if (rc != KEEL_ENOTFOUND) {
            return rc;
        }
    }
    mvcc__link_put(lb, &link);
    mk.mv_size = MVCC_REV_BYTES;
    mvcc__rev_put(kb, rev);
    mv.mv_size = sizeof(lb);
    mv.mv_data = lb;
    rc = mdb_put(c->txn, c->s->dbi[MVCC_DBI_REVLINK], &mk, &mv, MDB_APPEND);
    if (rc != 0) {
        return mvcc__mdb_err(c->s, rc, "revlink: mdb_put");
    }
    c->nchanges++;
    *out = rev;
    return 0;
}

static ProtobufCBinaryData dup_bytes(struct mvcc_ctx *c,
                                     const uint8_t *p,
                                     size_t n,
                                     int *ok)
{
    ProtobufCBinaryData b = {n, keel_arena_dup(c->a, p, n)};
    *ok = b.data != NULL;
    return b;
}

/* Put key/value/lease (validated) at the ctx's next sub revision. `old` is
 * the key's index record (NULL: never seen), `oldkv` its live kv or NULL
 * (for the event's prev_kv). */
static int do_put(struct mvcc_ctx *c,
                  const ProtobufCBinaryData *key,
                  const ProtobufCBinaryData *value,
                  int64_t lease,
                  const struct mvcc_irec *old,
                  Mvccpb__KeyValue *oldkv)
{
    Mvccpb__KeyValue *kv;
    struct mvcc_irec nr;
    struct mvcc_rev rev;
    int exists = old != NULL && !old->tomb;
    int ok1, ok2, rc;

    kv = NEW(c->a, Mvccpb__KeyValue, mvccpb__key_value__descriptor);
    if (kv == NULL) {
        return oom(c, "put");
    }
    kv->key = dup_bytes(c, key->data, key->len, &ok1);
    kv->value = dup_bytes(c, value->data, value->len, &ok2);
    if (!ok1 || !ok2) {
        return oom(c, "put");
    }
    kv->mod_revision = c->begin_rev + 1;
    kv->create_revision = exists ? old->create : kv->mod_revision;
    kv->version = exists ? old->version + 1 : 1;
    kv->lease = lease;

    rc = write_rev(c, old, 0, kv, &rev);
    if (rc != 0) {
        return mvcc__poison(c, rc);
    }
    nr.mod = rev;
    nr.create = kv->create_revision;
    nr.version = kv->version;
    nr.lease = lease;
    nr.tomb = 0;
    rc = mvcc__index_put(c, key->data, key->len, &nr);
    if (rc == 0 && exists && old->lease != 0 && old->lease != lease) {
        rc = lease_key_set(c, old->lease, key->data, key->len, 0);
    }
    if (rc == 0 && lease != 0 && !(exists && old->lease == lease)) {
        rc = lease_key_set(c, lease, key->data, key->len, 1);
    }
    if (rc == 0) {
        /* etcd (v3rpc/watch.go isCreateEvent): a put that creates the key
         * has no prev_kv in its event, even if the key was deleted earlier
         * in the same txn. */
        rc = add_event(c, MVCCPB__EVENT__EVENT_TYPE__PUT, kv,
                       kv->create_revision == kv->mod_revision ? NULL : oldkv);
    }
    return mvcc__poison(c, rc);
}

int mvcc__delete_key(struct mvcc_ctx *c,
                     const uint8_t *k,
                     size_t klen,
                     const struct mvcc_irec *r,
                     int want_prev,
                     Mvccpb__KeyValue **prevp)
{
    Mvccpb__KeyValue *prev = NULL, *tkv, *ekv;
    struct mvcc_irec nr;
    struct mvcc_rev rev;
    int ok, rc;

    assert(!r->tomb);
    if (want_prev || c->events != NULL) {
        rc = mvcc__kv_read(c, r->mod, &prev);
        if (rc != 0) {
            return mvcc__poison(c, rc);
        }
    }
    tkv = NEW(c->a, Mvccpb__KeyValue, mvccpb__key_value__descriptor);
    ekv = NEW(c->a, Mvccpb__KeyValue, mvccpb__key_value__descriptor);
    if (tkv == NULL || ekv == NULL) {
        return oom(c, "delete");
    }
    tkv->key = dup_bytes(c, k, klen, &ok);
    if (!ok) {
        return oom(c, "delete");
    }
    rc = write_rev(c, r, 1, tkv, &rev);
    if (rc != 0) {
        return mvcc__poison(c, rc);
    }
    nr = *r;
    nr.mod = rev;
    nr.lease = 0;
    nr.tomb = 1;
    rc = mvcc__index_put(c, k, klen, &nr);
    if (rc == 0 && r->lease != 0) {
        rc = lease_key_set(c, r->lease, k, klen, 0);
    }
    /* etcd's watch event for a delete: {key, mod_revision} (etcd:
     * mvcc/watchable_store_txn.go). */
    ekv->key = tkv->key;
    ekv->mod_revision = rev.main;
    if (prevp != NULL) {
        *prevp = prev;
    }
    if (rc == 0 && c->events != NULL && r->mod.main == rev.main) {
        /* the key was written earlier in this txn */
        rc = mvcc__prev_kv(c, r->mod, rev.main, &prev);
    }
    if (rc == 0) {
        rc = add_event(c, MVCCPB__EVENT__EVENT_TYPE__DELETE, ekv, prev);
    }
    return mvcc__poison(c, rc);
}

/* ---- Range --------------------------------------------------------------- */

struct range_state
{
    struct mvcc_ctx *c;
    const Etcdserverpb__RangeRequest *req;
    int64_t at;
    int64_t fetch_limit; /* 0 = all */
    int64_t count;
    Mvccpb__KeyValue **kvs;
    size_t n, cap;
};

static int range_cb(void *arg,
                    const uint8_t *k,
                    size_t klen,
                    const struct mvcc_irec *r)
{
    struct range_state *st = arg;
    const Etcdserverpb__RangeRequest *q = st->req;
    struct mvcc_rev rev;
    Mvccpb__KeyValue *kv;
    int rc;

    (void)k;
    (void)klen;
    rc = visible_rev(st->c, r, st->at, &rev);
    if (rc <= 0) {
        return rc;
    }
    st->count++;
    if (q->count_only ||
        (st->fetch_limit > 0 && (int64_t)st->n >= st->fetch_limit)) {
        return 0;
    }
    rc = mvcc__kv_read(st->c, rev, &kv);
    if (rc != 0) {
        return rc;
    }
    /* etcd prunes after fetching everything (apply.go pruneKVs). */
    if ((q->max_mod_revision != 0 && kv->mod_revision > q->max_mod_revision) ||
        (q->min_mod_revision != 0 && kv->mod_revision < q->min_mod_revision) ||
        (q->max_create_revision != 0 &&
         kv->create_revision > q->max_create_revision) ||
        (q->min_create_revision != 0 &&
         kv->create_revision < q->min_create_revision)) {
        return 0;
    }
    if (st->n == st->cap) {
        size_t ncap = st->cap ? 2 * st->cap : 16;
        Mvccpb__KeyValue **a = keel_arena_alloc(st->c->a, ncap * sizeof(*a));
        if (a == NULL) {
            return mvcc__err(st->c->s, KEEL_ENOMEM, "mvcc: range: out of memory");
        }
        if (st->n) {
            memcpy(a, st->kvs, st->n * sizeof(*a));
        }
        st->kvs = a;
        st->cap = ncap;
    }
    st->kvs[st->n++] = kv;
    return 0;
}

static int cmp_i64(int64_t a, int64_t b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* etcd's sorters (etcdserver/apply.go kvSortByKey/Version/Create/Mod/
 * Value): each compares its target only, so ties keep whatever order Go's
 * sort.Sort leaves them in (go_sort reproduces it). DESCEND is
 * sort.Reverse: Less(i, j) = Less(j, i). */
static bool kv_sort_less(const void *pa, const void *pb, void *arg)
{
    const int *how = arg; /* {target, descending} */
    const Mvccpb__KeyValue *a = how[1] ? pb : pa;
    const Mvccpb__KeyValue *b = how[1] ? pa : pb;

    switch (how[0]) {
        case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION:
            return a->version < b->version;
        case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE:
            return a->create_revision < b->create_revision;
        case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD:
            return a->mod_revision < b->mod_revision;
        case ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE:
            return mvcc__key_cmp(a->value.data, a->value.len, b->value.data,
                                 b->value.len) < 0;
        default:
            return mvcc__key_cmp(a->key.data, a->key.len, b->key.data,
                                 b->key.len) < 0;
    }
}

static int range_check_rev(struct mvcc_ctx *c, int64_t rev)
{
    int64_t cur = mvcc__ctx_rev(c);
    if (rev > cur) {
        return mvcc__err(c->s, KEEL_EFUTUREREV,
                         "mvcc: range at revision %lld: current is %lld",
                         (long long)rev, (long long)cur);
    }
    if (rev > 0 && rev < c->compact_rev) {
        return mvcc__err(c->s, KEEL_ECOMPACTED,
                         "mvcc: range at revision %lld: compacted at %lld",
                         (long long)rev, (long long)c->compact_rev);
    }
    return 0;
}

static int range_op(struct mvcc_ctx *c,
                    const Etcdserverpb__RangeRequest *q,
                    Etcdserverpb__RangeResponse **out)
{
    struct range_state st = {.c = c, .req = q};
    Etcdserverpb__RangeResponse *resp;
    int64_t limit = q->limit;
    int sort_order = q->sort_order;
    int rc;

    if (q->key.len == 0) {
        return mvcc__err(c->s, KEEL_EEMPTYKEY, "mvcc: range: empty key");
    }
    if ((unsigned)q->sort_order > 2 || (unsigned)q->sort_target > 4) {
        return mvcc__err(c->s, KEEL_EINVAL, "mvcc: range: invalid sort option");
    }
    if ((rc = range_check_rev(c, q->revision)) != 0) {
        return rc;
    }
    st.at = q->revision > 0 ? q->revision : mvcc__ctx_rev(c);
    /* etcd (apply.go Range): sorting or filtering fetches everything;
     * otherwise limit+1 to know `more`. */
    if (q->sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE ||
        q->min_mod_revision != 0 || q->max_mod_revision != 0 ||
        q->min_create_revision != 0 || q->max_create_revision != 0) {
        limit = 0;
    }
    st.fetch_limit = limit > 0 ? limit + 1 : 0;
    rc = mvcc__index_walk(c, q->key.data, q->key.len, q->range_end.data,
                          q->range_end.len, range_cb, &st);
    if (rc != 0) {
        return rc;
    }
    if (q->sort_target != ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        sort_order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE) {
        sort_order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    }
    if (sort_order != ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE &&
        st.n > 1) {
        int how[2] = {q->sort_target,
                      sort_order ==
                          ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND};
        go_sort((void **)st.kvs, st.n, kv_sort_less, how);
    }
    resp = NEW(c->a, Etcdserverpb__RangeResponse,
               etcdserverpb__range_response__descriptor);
    if (resp == NULL || (resp->header = new_header(c, mvcc__ctx_rev(c))) == NULL) {
        return mvcc__err(c->s, KEEL_ENOMEM, "mvcc: range: out of memory");
    }
    if (q->limit > 0 && (int64_t)st.n > q->limit) {
        st.n = (size_t)q->limit;
        resp->more = 1;
    }
    if (q->keys_only) {
        for (size_t i = 0; i < st.n; i++) {
            st.kvs[i]->value.len = 0;
            st.kvs[i]->value.data = NULL;
        }
    }
    resp->count = st.count;
    resp->n_kvs = st.n;
    resp->kvs = st.kvs;
    *out = resp;
    return 0;
}

/* ---- Put / DeleteRange ------------------------------------------------------ */

/* Validation of a put against the current state (etcd: apply.go Put and
 * checkPut). Fills *old (found: 1) and *oldkv (when needed). */
static int put_check(struct mvcc_ctx *c,
                     const Etcdserverpb__PutRequest *q,
                     struct mvcc_irec *old,
                     int *found,
                     Mvccpb__KeyValue **oldkv)
{
    int rc;

    *found = 0;
    *oldkv = NULL;
    if (q->key.len == 0) {
        return mvcc__err(c->s, KEEL_EEMPTYKEY, "mvcc: put: empty key");
    }
    if (q->ignore_value && q->value.len != 0) {
        return mvcc__err(c->s, KEEL_EVALUEPROVIDED, "mvcc: put: value given "
                                                    "with ignore_value");
    }
    if (q->ignore_lease && q->lease != 0) {
        return mvcc__err(c->s, KEEL_ELEASEPROVIDED, "mvcc: put: lease given "
                                                    "with ignore_lease");
    }
    if (q->lease != 0) {
        rc = lease_exists(c, q->lease);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            return mvcc__err(c->s, KEEL_ELEASENOTFOUND,
                             "mvcc: put: lease %llx not found",
                             (unsigned long long)q->lease);
        }
    }
    rc = mvcc__index_get(c, q->key.data, q->key.len, old);
    if (rc != 0 && rc != KEEL_ENOTFOUND) {
        return rc;
    }
    *found = rc == 0;
    if (*found && !old->tomb) {
        rc = mvcc__kv_read(c, old->mod, oldkv);
        if (rc != 0) {
            return rc;
        }
    }
    if ((q->ignore_value || q->ignore_lease) && *oldkv == NULL) {
        return mvcc__err(c->s, KEEL_EKEYNOTFOUND,
                         "mvcc: put: ignore_value/ignore_lease on a missing "
                         "key");
    }
    return 0;
}

static int put_op(struct mvcc_ctx *c,
                  const Etcdserverpb__PutRequest *q,
                  Etcdserverpb__PutResponse **out)
{
    Etcdserverpb__PutResponse *resp;
    Mvccpb__KeyValue *oldkv;
    struct mvcc_irec old;
    int found, rc;

    rc = put_check(c, q, &old, &found, &oldkv);
    if (rc != 0) {
        return rc;
    }
    resp = NEW(c->a, Etcdserverpb__PutResponse,
               etcdserverpb__put_response__descriptor);
    if (resp == NULL) {
        return mvcc__err(c->s, KEEL_ENOMEM, "mvcc: put: out of memory");
    }
    rc = do_put(c, &q->key, q->ignore_value ? &oldkv->value : &q->value,
                q->ignore_lease ? oldkv->lease : q->lease,
                found ? &old : NULL, oldkv);
    if (rc != 0) {
        return rc;
    }
    if ((resp->header = new_header(c, c->begin_rev + 1)) == NULL) {
        return oom(c, "put");
    }
    if (q->prev_kv) {
        resp->prev_kv = oldkv;
    }
    *out = resp;
    return 0;
}

struct del_item
{
    ProtobufCBinaryData key;
    struct mvcc_irec r;
};

struct del_state
{
    struct mvcc_ctx *c;
    struct del_item *items;
    size_t n, cap;
};

static int del_collect_cb(void *arg,
                          const uint8_t *k,
                          size_t klen,
                          const struct mvcc_irec *r)
{
    struct del_state *st = arg;
    int ok;

    if (r->tomb) {
        return 0;
    }
    if (st->n == st->cap) {
        size_t ncap = st->cap ? 2 * st->cap : 16;
        struct del_item *a = keel_arena_alloc(st->c->a, ncap * sizeof(*a));
        if (a == NULL) {
            return mvcc__err(st->c->s, KEEL_ENOMEM, "mvcc: delete: out of memory");
        }
        if (st->n) {
            memcpy(a, st->items, st->n * sizeof(*a));
        }
        st->items = a;
        st->cap = ncap;
    }
    st->items[st->n].key = dup_bytes(st->c, k, klen, &ok);
    if (!ok) {
        return mvcc__err(st->c->s, KEEL_ENOMEM, "mvcc: delete: out of memory");
    }
    st->items[st->n].r = *r;
    st->n++;
    return 0;
}

static int delete_op(struct mvcc_ctx *c,
                     const Etcdserverpb__DeleteRangeRequest *q,
                     Etcdserverpb__DeleteRangeResponse **out)
{
    struct del_state st = {.c = c};
    Etcdserverpb__DeleteRangeResponse *resp;
    int rc;

    if (q->key.len == 0) {
        return mvcc__err(c->s, KEEL_EEMPTYKEY, "mvcc: delete: empty key");
    }
    rc = mvcc__index_walk(c, q->key.data, q->key.len, q->range_end.data,
                          q->range_end.len, del_collect_cb, &st);
    if (rc != 0) {
        return rc;
    }
    resp = NEW(c->a, Etcdserverpb__DeleteRangeResponse,
               etcdserverpb__delete_range_response__descriptor);
    if (resp == NULL) {
        return mvcc__err(c->s, KEEL_ENOMEM, "mvcc: delete: out of memory");
    }
    if (q->prev_kv && st.n > 0) {
        resp->prev_kvs = keel_arena_alloc(c->a, st.n * sizeof(*resp->prev_kvs));
        if (resp->prev_kvs == NULL) {
            return mvcc__err(c->s, KEEL_ENOMEM, "mvcc: delete: out of memory");
        }
        resp->n_prev_kvs = st.n;
    }
    for (size_t i = 0; i < st.n; i++) {
        Mvccpb__KeyValue *prev = NULL;
        rc = mvcc__delete_key(c, st.items[i].key.data, st.items[i].key.len,
                              &st.items[i].r, q->prev_kv, &prev);
        if (rc != 0) {
            return rc;
        }
        if (q->prev_kv) {
            resp->prev_kvs[i] = prev;
        }
    }
    resp->deleted = (int64_t)st.n;
    resp->header = new_header(c, mvcc__ctx_rev(c));
    if (resp->header == NULL) {
        return oom(c, "delete");
    }
    *out = resp;
    return 0;
}

/* ---- Txn ------------------------------------------------------------------ */

struct cmp_state
{
    struct mvcc_ctx *c;
    const Etcdserverpb__Compare *cmp;
    int64_t n;
    int ok;
};

static int compare_kv(const Etcdserverpb__Compare *cmp,
                      const Mvccpb__KeyValue *kv)
{
    int d = 0;
    int64_t want = 0;
    int tu = cmp->target_union_case;

    switch (cmp->target) {
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
            ProtobufCBinaryData v = {0, NULL};
            if (tu == ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE) {
                v = cmp->value;
            }
            d = mvcc__key_cmp(kv->value.data, kv->value.len, v.data, v.len);
            break;
        }
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
            if (tu == ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION) {
                want = cmp->create_revision;
            }
            d = cmp_i64(kv->create_revision, want);
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
            if (tu == ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION) {
                want = cmp->mod_revision;
            }
            d = cmp_i64(kv->mod_revision, want);
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
            if (tu == ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION) {
                want = cmp->version;
            }
            d = cmp_i64(kv->version, want);
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__LEASE:
            if (tu == ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE) {
                want = cmp->lease;
            }
            d = cmp_i64(kv->lease, want);
            break;
        default:
            break;
    }
    switch (cmp->result) {
        case ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL:
            return d == 0;
        case ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL:
            return d != 0;
        case ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER:
            return d > 0;
        case ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS:
            return d < 0;
        default:
            return 1;
    }
}

static int cmp_cb(void *arg,
                  const uint8_t *k,
                  size_t klen,
                  const struct mvcc_irec *r)
{
    struct cmp_state *st = arg;
    Mvccpb__KeyValue *kv;
    int rc;

    (void)k;
    (void)klen;
    if (r->tomb) {
        return 0;
    }
    st->n++;
    rc = mvcc__kv_read(st->c, r->mod, &kv);
    if (rc != 0) {
        return rc;
    }
    if (!compare_kv(st->cmp, kv)) {
        st->ok = 0;
        return 1;
    }
    return 0;
}

/* etcd: apply.go applyCompare. 1 true, 0 false, <0 error. */
static int apply_compare(struct mvcc_ctx *c, const Etcdserverpb__Compare *cmp)
{
    struct cmp_state st = {c, cmp, 0, 1};
    int rc;

    if (cmp->key.len == 0) {
        return mvcc__err(c->s, KEEL_EEMPTYKEY, "mvcc: txn: compare on empty key");
    }
    rc = mvcc__index_walk(c, cmp->key.data, cmp->key.len, cmp->range_end.data,
                          cmp->range_end.len, cmp_cb, &st);
    if (rc < 0) {
        return rc;
    }
    if (!st.ok) {
        return 0;
    }
    if (st.n == 0) {
        Mvccpb__KeyValue empty = MVCCPB__KEY_VALUE__INIT;
        if (cmp->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE) {
            return 0; /* a missing key has no value to compare */
        }
        return compare_kv(cmp, &empty);
    }
    return 1;
}

/* The branch decisions of a txn and its nested txns, in etcd's DFS order
 * (apply.go compareToPath), evaluated before anything is written. */
struct txn_path
{
    uint8_t *taken;
    size_t n, cap, pos;
};

static int path_push(struct mvcc_ctx *c, struct txn_path *p, int v)
{
    if (p->n == p->cap) {
        size_t ncap = p->cap ? 2 * p->cap : 8;
        uint8_t *a = keel_arena_alloc(c->a, ncap);
        if (a == NULL) {
            return mvcc__err(c->s, KEEL_ENOMEM, "mvcc: txn: out of memory");
        }
        if (p->n) {
            memcpy(a, p->taken, p->n);
        }
        p->taken = a;
        p->cap = ncap;
    }
    p->taken[p->n++] = (uint8_t)v;
    return 0;
}

static int compare_to_path(struct mvcc_ctx *c,
                           const Etcdserverpb__TxnRequest *q,
                           struct txn_path *p)
{
    Etcdserverpb__RequestOp **ops;
    size_t nops;
    int ok = 1, rc;

    for (size_t i = 0; i < q->n_compare && ok; i++) {
        rc = apply_compare(c, q->compare[i]);
        if (rc < 0) {
            return rc;
        }
        ok = rc;
    }
    if ((rc = path_push(c, p, ok)) != 0) {
        return rc;
    }
    ops = ok ? q->success : q->failure;
    nops = ok ? q->n_success : q->n_failure;
    for (size_t i = 0; i < nops; i++) {
        if (ops[i]->request_case ==
                ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN &&
            ops[i]->request_txn != NULL) {
            if ((rc = compare_to_path(c, ops[i]->request_txn, p)) != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* etcd: apply.go checkRequests with checkPut and checkRange. */
static int txn_check(struct mvcc_ctx *c,
                     const Etcdserverpb__TxnRequest *q,
                     struct txn_path *p)
{
    int ok = p->taken[p->pos++];
    Etcdserverpb__RequestOp **ops = ok ? q->success : q->failure;
    size_t nops = ok ? q->n_success : q->n_failure;
    int rc;

    for (size_t i = 0; i < nops; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        switch (op->request_case) {
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
                Mvccpb__KeyValue *oldkv;
                struct mvcc_irec old;
                int found;
                rc = put_check(c, op->request_put, &old, &found, &oldkv);
                break;
            }
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                rc = op->request_range->key.len == 0
                         ? mvcc__err(c->s, KEEL_EEMPTYKEY,
                                     "mvcc: txn: range on empty key")
                         : range_check_rev(c, op->request_range->revision);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
                rc = op->request_delete_range->key.len == 0
                         ? mvcc__err(c->s, KEEL_EEMPTYKEY,
                                     "mvcc: txn: delete on empty key")
                         : 0;
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
                rc = txn_check(c, op->request_txn, p);
                break;
            default:
                /* etcd v3rpc: an empty op is "key not found". */
                rc = mvcc__err(c->s, KEEL_EKEYNOTFOUND, "mvcc: txn: empty op");
                break;
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

static int txn_apply(struct mvcc_ctx *c,
                     const Etcdserverpb__TxnRequest *q,
                     struct txn_path *p,
                     Etcdserverpb__TxnResponse *resp)
{
    int ok = p->taken[p->pos++];
    Etcdserverpb__RequestOp **ops = ok ? q->success : q->failure;
    size_t nops = ok ? q->n_success : q->n_failure;
    int rc = 0;

    resp->succeeded = ok;
    resp->n_responses = nops;
    resp->responses = keel_arena_alloc(c->a, (nops ? nops : 1) *
                                                 sizeof(*resp->responses));
    if (resp->responses == NULL) {
        return oom(c, "txn");
    }
    for (size_t i = 0; i < nops; i++) {
        const Etcdserverpb__RequestOp *op = ops[i];
        Etcdserverpb__ResponseOp *ro =
            NEW(c->a, Etcdserverpb__ResponseOp, etcdserverpb__response_op__descriptor);
        if (ro == NULL) {
            return oom(c, "txn");
        }
        resp->responses[i] = ro;
        switch (op->request_case) {
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                ro->response_case =
                    ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE;
                rc = range_op(c, op->request_range, &ro->response_range);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
                ro->response_case =
                    ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT;
                rc = put_op(c, op->request_put, &ro->response_put);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE:
                ro->response_case =
                    ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE;
                rc = delete_op(c, op->request_delete_range,
                               &ro->response_delete_range);
                break;
            case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
                Etcdserverpb__TxnResponse *sub =
                    NEW(c->a, Etcdserverpb__TxnResponse,
                        etcdserverpb__txn_response__descriptor);
                /* etcd leaves nested txn headers at revision 0. */
                if (sub == NULL || (sub->header = new_header(c, 0)) == NULL) {
                    return oom(c, "txn");
                }
                ro->response_case =
                    ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_TXN;
                ro->response_txn = sub;
                rc = txn_apply(c, op->request_txn, p, sub);
                break;
            }
            default:
                break;
        }
        if (rc != 0) {
            /* Checked before: only storage errors get here. */
            return mvcc__poison(c, rc);
        }
    }
    return 0;
}

static int txn_op(struct mvcc_ctx *c,
                  const Etcdserverpb__TxnRequest *q,
                  Etcdserverpb__TxnResponse **out)
{
    struct txn_path p = {0};
    Etcdserverpb__TxnResponse *resp;
    int rc;

    if ((rc = compare_to_path(c, q, &p)) != 0) {
        return rc;
    }
    if ((rc = txn_check(c, q, &p)) != 0) {
        return rc;
    }
    resp = NEW(c->a, Etcdserverpb__TxnResponse,
               etcdserverpb__txn_response__descriptor);
    if (resp == NULL) {
        return mvcc__err(c->s, KEEL_ENOMEM, "mvcc: txn: out of memory");
    }
    p.pos = 0;
    if ((rc = txn_apply(c, q, &p, resp)) != 0) {
        return rc;
    }
    if ((resp->header = new_header(c, mvcc__ctx_rev(c))) == NULL) {
        return oom(c, "txn");
    }
    *out = resp;
    return 0;
}

static int txn_is_readonly(const Etcdserverpb__TxnRequest *q)
{
    for (int br = 0; br < 2; br++) {
        Etcdserverpb__RequestOp **ops = br ? q->failure : q->success;
        size_t n = br ? q->n_failure : q->n_success;
        for (size_t i = 0; i < n; i++) {
            switch (ops[i]->request_case) {
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                    break;
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN:
                    if (!txn_is_readonly(ops[i]->request_txn)) {
                        return 0;
                    }
                    break;
                default:
                    return 0;
            }
        }
    }
    return 1;
}

/* ---- public entry points ------------------------------------------------ */

int mvcc_range(struct mvcc_store *s,
               const Etcdserverpb__RangeRequest *req,
               struct keel_arena *a,
               Etcdserverpb__RangeResponse **resp)
{
    struct mvcc_ctx c;
    int rc = mvcc__ctx_read_begin(s, a, &c);
    if (rc != 0) {
        return rc;
    }
    rc = range_op(&c, req, resp);
    mvcc__ctx_read_end(&c);
    return rc;
}

int mvcc_txn_read(struct mvcc_store *s,
                  const Etcdserverpb__TxnRequest *req,
                  struct keel_arena *a,
                  Etcdserverpb__TxnResponse **resp)
{
    struct mvcc_ctx c;
    int rc;

    if (!txn_is_readonly(req)) {
        return mvcc__err(s, KEEL_EINVAL, "mvcc: txn read: txn writes");
    }
    if ((rc = mvcc__ctx_read_begin(s, a, &c)) != 0) {
        return rc;
    }
    rc = txn_op(&c, req, resp);
    mvcc__ctx_read_end(&c);
    return rc;
}

int mvcc_write_range(struct mvcc_write *w,
                     const Etcdserverpb__RangeRequest *req,
                     struct keel_arena *a,
                     Etcdserverpb__RangeResponse **resp)
{
    struct mvcc_ctx c = {0};

    if (w->poisoned) {
        return w->poisoned;
    }
    c.s = w->s;
    c.w = w;
    c.txn = w->txn;
    c.a = a;
    c.begin_rev = w->rev;
    c.compact_rev = w->compact_rev;
    return range_op(&c, req, resp);
}

int mvcc_put(struct mvcc_write *w,
             const Etcdserverpb__PutRequest *req,
             struct keel_arena *a,
             Etcdserverpb__PutResponse **resp)
{
    struct mvcc_ctx c;
    int rc = mvcc__ctx_write_begin(w, a, &c);
    if (rc == 0) {
        rc = put_op(&c, req, resp);
        mvcc__ctx_write_end(&c);
    }
    return rc;
}

int mvcc_delete_range(struct mvcc_write *w,
                      const Etcdserverpb__DeleteRangeRequest *req,
                      struct keel_arena *a,
                      Etcdserverpb__DeleteRangeResponse **resp)
{
    struct mvcc_ctx c;
    int rc = mvcc__ctx_write_begin(w, a, &c);
    if (rc == 0) {
        rc = delete_op(&c, req, resp);
        mvcc__ctx_write_end(&c);
    }
    return rc;
}

int mvcc_txn(struct mvcc_write *w,
             const Etcdserverpb__TxnRequest *req,
             struct keel_arena *a,
             Etcdserverpb__TxnResponse **resp)
{
    struct mvcc_ctx c;
    int rc = mvcc__ctx_write_begin(w, a, &c);
    if (rc == 0) {
        rc = txn_op(&c, req, resp);
        mvcc__ctx_write_end(&c);
    }
    return rc;
}
