/*
 * Randomized model test of the MVCC store: long random sequences of put,
 * delete, txn (with nested txns), lease grant/revoke, compaction (logical,
 * partial and complete physical), close/reopen, checked op by op against a
 * plain in-memory model written here: every response field, every Range
 * option at random revisions, events since a revision, and the number of
 * revisions left after compaction. Several seeds; the failing seed is
 * printed. KEEL_SANITIZED=1 shortens the runs.
 *
 * Keys: all strings of 1..3 letters over {a,b,c}, plus long keys in one
 * group sharing a 400-byte prefix (399..600 bytes), so ranges cross the
 * long-key encoding boundaries of keycodec.c.
 */
#include "go_sort.h"
#include "mvcc_test_util.h"

/* ---- PRNG ------------------------------------------------------------------ */

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t rn(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* ---- model ----------------------------------------------------------------- */

struct mver
{
    int64_t main, sub;
    int tomb;
    int64_t create, version, lease;
    uint8_t val[24];
    size_t vlen;
};

struct mkey
{
    uint8_t *k;
    size_t klen;
    struct mver *v;
    size_t n, cap;
};

struct mevent
{
    int64_t main, sub;
    int del;
    int key;       /* pool index */
    struct mver v; /* for puts */
    int has_prev;
    struct mver prev;
};

#define MAX_LEASES 8

struct model
{
    struct mkey *keys; /* sorted by key bytes */
    size_t nkeys;
    int64_t rev, compact;
    struct mevent *ev;
    size_t nev, cev;
    int64_t leases[MAX_LEASES];
    size_t nleases;
    int64_t next_lease;
};

static int bcmp2(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int d = n ? memcmp(a, b, n) : 0;
    if (d) {
        return d < 0 ? -1 : 1;
    }
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

static int mkey_cmp(const void *pa, const void *pb)
{
    const struct mkey *a = pa, *b = pb;
    return bcmp2(a->k, a->klen, b->k, b->klen);
}

static void model_init(struct model *m)
{
    static const char al[] = "abc";
    size_t cap = 64;
    memset(m, 0, sizeof(*m));
    m->keys = calloc(cap, sizeof(*m->keys));
    m->rev = 1;
    m->compact = -1;
    m->next_lease = 100;
    for (int len = 1; len <= 3; len++) {
        int total = len == 1 ? 3 : (len == 2 ? 9 : 27);
        for (int i = 0; i < total; i++) {
            struct mkey *k = &m->keys[m->nkeys++];
            int x = i;
            k->k = malloc(len);
            k->klen = len;
            for (int j = len - 1; j >= 0; j--) {
                k->k[j] = al[x % 3];
                x /= 3;
            }
        }
    }
    /* Long keys: "b" + 399 'x' prefix group, and neighbours. */
    {
        static const size_t lens[] = {399, 400, 401, 402, 450, 600, 401};
        for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
            struct mkey *k = &m->keys[m->nkeys++];
            k->klen = lens[i];
            k->k = malloc(lens[i]);
            k->k[0] = 'b';
            memset(k->k + 1, 'x', lens[i] - 1);
            if (lens[i] > 400) {
                /* differ after the prefix */
                k->k[400] = (uint8_t)('a' + i);
                if (i == 6) {
                    k->k[400] = 0x00;
                }
            }
        }
    }
    qsort(m->keys, m->nkeys, sizeof(*m->keys), mkey_cmp);
}

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->nkeys; i++) {
        free(m->keys[i].k);
        free(m->keys[i].v);
    }
    free(m->keys);
    free(m->ev);
}

/* Visible version of key i at `at`, or NULL. */
static const struct mver *visible(const struct model *m, size_t i, int64_t at)
{
    const struct mkey *k = &m->keys[i];
    for (size_t j = k->n; j-- > 0;) {
        if (k->v[j].main <= at) {
            return k->v[j].tomb ? NULL : &k->v[j];
        }
    }
    return NULL;
}

static const struct mver *live(const struct model *m, size_t i)
{
    return visible(m, i, INT64_MAX);
}

static void push_ver(struct mkey *k, const struct mver *v)
{
    if (k->n == k->cap) {
        k->cap = k->cap ? 2 * k->cap : 8;
        k->v = realloc(k->v, k->cap * sizeof(*k->v));
    }
    k->v[k->n++] = *v;
}

static void push_event(struct model *m, const struct mevent *e)
{
    if (m->nev == m->cev) {
        m->cev = m->cev ? 2 * m->cev : 64;
        m->ev = realloc(m->ev, m->cev * sizeof(*m->ev));
    }
    m->ev[m->nev++] = *e;
}

/* Apply a put at (rev, sub) in the model. */
static void model_put(struct model *m,
                      size_t i,
                      int64_t main,
                      int64_t sub,
                      const uint8_t *val,
                      size_t vlen,
                      int64_t lease)
{
    const struct mver *old = live(m, i);
    struct mver v = {0};
    struct mevent e = {0};

    v.main = main;
    v.sub = sub;
    v.create = old ? old->create : main;
    v.version = old ? old->version + 1 : 1;
    v.lease = lease;
    memcpy(v.val, val, vlen);
    v.vlen = vlen;
    e.main = main;
    e.sub = sub;
    e.key = (int)i;
    e.v = v;
    if (old) {
        e.has_prev = 1;
        e.prev = *old;
    }
    push_ver(&m->keys[i], &v);
    push_event(m, &e);
}

static void model_del(struct model *m, size_t i, int64_t main, int64_t sub)
{
    const struct mver *old = live(m, i);
    struct mver v = {0};
    struct mevent e = {0};

    assert_non_null(old);
    v.main = main;
    v.sub = sub;
    v.tomb = 1;
    e.main = main;
    e.sub = sub;
    e.del = 1;
    e.key = (int)i;
    e.has_prev = 1;
    e.prev = *old;
    push_ver(&m->keys[i], &v);
    push_event(m, &e);
}

static int in_range(const struct model *m,
                    size_t i,
                    const ProtobufCBinaryData *key,
                    const ProtobufCBinaryData *end)
{
    const struct mkey *k = &m->keys[i];
    if (end->len == 0) {
        return bcmp2(k->k, k->klen, key->data, key->len) == 0;
    }
    if (bcmp2(k->k, k->klen, key->data, key->len) < 0) {
        return 0;
    }
    if (end->len == 1 && end->data[0] == 0) {
        return 1;
    }
    return bcmp2(k->k, k->klen, end->data, end->len) < 0;
}

/* ---- checks ---------------------------------------------------------------- */

static void check_kv(const struct model *m,
                     size_t i,
                     const struct mver *v,
                     const Mvccpb__KeyValue *kv,
                     int keys_only)
{
    const struct mkey *k = &m->keys[i];
    assert_non_null(kv);
    assert_int_equal(kv->key.len, k->klen);
    assert_memory_equal(kv->key.data, k->k, k->klen);
    assert_int_equal(kv->mod_revision, v->main);
    assert_int_equal(kv->create_revision, v->create);
    assert_int_equal(kv->version, v->version);
    assert_int_equal(kv->lease, v->lease);
    if (keys_only) {
        assert_int_equal(kv->value.len, 0);
    } else {
        assert_int_equal(kv->value.len, v->vlen);
        if (v->vlen) {
            assert_memory_equal(kv->value.data, v->val, v->vlen);
        }
    }
}

struct ritem
{
    size_t i;
    const struct mver *v;
};

static int g_target, g_desc;
static const struct model *g_m;

static int i64c(int64_t a, int64_t b)
{
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* etcd's sorters compare the target only; ties are left in the order
 * Go's sort.Sort leaves them (go_sort, checked against etcd by
 * storage.mvcc_vs_etcd). */
static bool ritem_less(const void *pa, const void *pb, void *arg)
{
    const struct ritem *a = g_desc ? pb : pa, *b = g_desc ? pa : pb;
    (void)arg;
    switch (g_target) {
        case 1:
            return a->v->version < b->v->version;
        case 2:
            return a->v->create < b->v->create;
        case 3:
            return a->v->main < b->v->main;
        case 4:
            return bcmp2(a->v->val, a->v->vlen, b->v->val, b->v->vlen) < 0;
        default:
            return bcmp2(g_m->keys[a->i].k, g_m->keys[a->i].klen,
                         g_m->keys[b->i].k, g_m->keys[b->i].klen) < 0;
    }
}

/* etcd's Range on the model (apply.go Range + kvstore_txn.go rangeKeys). */
static void check_range(const struct model *m,
                        int64_t cur_rev,
                        const Etcdserverpb__RangeRequest *q,
                        int rc,
                        const Etcdserverpb__RangeResponse *r)
{
    struct ritem *items = calloc(m->nkeys + 1, sizeof(*items));
    size_t n = 0, count = 0, fetch;
    int64_t at = q->revision > 0 ? q->revision : cur_rev;
    int order = q->sort_order, more = 0;

    if (q->revision > cur_rev) {
        assert_int_equal(rc, KEEL_EFUTUREREV);
        free(items);
        return;
    }
    if (q->revision > 0 && q->revision < m->compact) {
        assert_int_equal(rc, KEEL_ECOMPACTED);
        free(items);
        return;
    }
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < m->nkeys; i++) {
        const struct mver *v;
        if (!in_range(m, i, &q->key, &q->range_end) ||
            (v = visible(m, i, at)) == NULL) {
            continue;
        }
        count++;
        items[n].i = i;
        items[n].v = v;
        n++;
    }
    if (q->count_only) {
        n = 0;
    }
    fetch = n;
    if (q->sort_order == 0 && !q->min_mod_revision && !q->max_mod_revision &&
        !q->min_create_revision && !q->max_create_revision && q->limit > 0 &&
        (size_t)q->limit + 1 < n) {
        fetch = (size_t)q->limit + 1;
    }
    n = 0;
    for (size_t j = 0; j < fetch; j++) {
        const struct mver *v = items[j].v;
        if ((q->max_mod_revision && v->main > q->max_mod_revision) ||
            (q->min_mod_revision && v->main < q->min_mod_revision) ||
            (q->max_create_revision && v->create > q->max_create_revision) ||
            (q->min_create_revision && v->create < q->min_create_revision)) {
            continue;
        }
        items[n++] = items[j];
    }
    if (q->sort_target != 0 && order == 0) {
        order = 1;
    }
    if (order != 0) {
        g_target = q->sort_target;
        g_desc = order == 2;
        g_m = m;
        struct ritem **ptrs = calloc(n + 1, sizeof(*ptrs));
        struct ritem *sorted = calloc(n + 1, sizeof(*sorted));
        assert_non_null(ptrs);
        assert_non_null(sorted);
        for (size_t j = 0; j < n; j++) {
            ptrs[j] = &items[j];
        }
        go_sort((void **)ptrs, n, ritem_less, NULL);
        for (size_t j = 0; j < n; j++) {
            sorted[j] = *ptrs[j];
        }
        memcpy(items, sorted, n * sizeof(*items));
        free(sorted);
        free(ptrs);
    }
    if (q->limit > 0 && n > (size_t)q->limit) {
        n = (size_t)q->limit;
        more = 1;
    }
    assert_non_null(r);
    assert_int_equal(r->header->revision, cur_rev);
    assert_int_equal(r->count, count);
    assert_int_equal(r->more, more);
    assert_int_equal(r->n_kvs, n);
    for (size_t j = 0; j < n; j++) {
        check_kv(m, items[j].i, items[j].v, r->kvs[j], q->keys_only);
    }
    free(items);
}

/* ---- random requests ------------------------------------------------------- */

struct env
{
    struct model m;
    struct tdir t;
    struct mvcc_store *s;
    struct keel_arena a;
    uint64_t ci;
    uint8_t endbuf[700];
};

static ProtobufCBinaryData pool_key(struct env *e, size_t i)
{
    return bin(e->m.keys[i].k, e->m.keys[i].klen);
}

static void random_span(struct env *e,
                        ProtobufCBinaryData *key,
                        ProtobufCBinaryData *end)
{
    static const uint8_t zero = 0;
    size_t i = rn(e->m.nkeys);
    *key = pool_key(e, i);
    switch (rn(5)) {
        case 0:
        case 1:
            end->len = 0;
            end->data = NULL;
            break;
        case 2:
            *end = bin(&zero, 1);
            break;
        case 3:
            *end = pool_key(e, rn(e->m.nkeys));
            break;
        default: { /* prefix range: key with its last byte + 1 */
            size_t n = key->len < 3 ? key->len : 1 + rn(key->len);
            memcpy(e->endbuf, key->data, n);
            e->endbuf[n - 1]++;
            *end = bin(e->endbuf, n);
            if (rn(3) == 0) { /* prefix of the prefix: from "b" */
                key->len = n;
            }
            break;
        }
    }
}

static void random_value(uint8_t *v, size_t *n)
{
    *n = rn(6);
    for (size_t i = 0; i < *n; i++) {
        v[i] = (uint8_t)('0' + rn(4));
    }
}

static int64_t random_rev(const struct model *m)
{
    switch (rn(4)) {
        case 0:
        case 1:
            return 0;
        default: {
            int64_t lo = m->compact > 3 ? m->compact - 2 : 1;
            return lo + (int64_t)rn((uint64_t)(m->rev + 2 - lo + 1));
        }
    }
}

static void random_range(struct env *e, Etcdserverpb__RangeRequest *q)
{
    etcdserverpb__range_request__init(q);
    random_span(e, &q->key, &q->range_end);
    q->revision = random_rev(&e->m);
    q->limit = rn(2) ? 0 : (int64_t)(1 + rn(5));
    q->sort_order = rn(2) ? 0 : rn(3);
    q->sort_target = rn(2) ? 0 : rn(5);
    q->keys_only = rn(8) == 0;
    q->count_only = rn(10) == 0;
    if (rn(6) == 0) {
        q->min_mod_revision = (int64_t)rn((uint64_t)e->m.rev + 1);
    }
    if (rn(6) == 0) {
        q->max_mod_revision = (int64_t)rn((uint64_t)e->m.rev + 1);
    }
    if (rn(6) == 0) {
        q->min_create_revision = (int64_t)rn((uint64_t)e->m.rev + 1);
    }
    if (rn(6) == 0) {
        q->max_create_revision = (int64_t)rn((uint64_t)e->m.rev + 1);
    }
}

/* ---- ops --------------------------------------------------------------------- */

static int lease_known(const struct model *m, int64_t id)
{
    for (size_t i = 0; i < m->nleases; i++) {
        if (m->leases[i] == id) {
            return 1;
        }
    }
    return 0;
}

static void op_put(struct env *e, struct mvcc_write *w)
{
    Etcdserverpb__PutRequest q = ETCDSERVERPB__PUT_REQUEST__INIT;
    Etcdserverpb__PutResponse *r = NULL;
    uint8_t val[8];
    size_t vlen, i = rn(e->m.nkeys);
    const struct mver *old = live(&e->m, i);
    int64_t lease = 0;
    int rc, want = 0;
    Mvccpb__Event **ev;
    size_t nev;

    random_value(val, &vlen);
    q.key = pool_key(e, i);
    q.value = bin(val, vlen);
    q.prev_kv = rn(2);
    if (e->m.nleases && rn(4) == 0) {
        lease = e->m.leases[rn(e->m.nleases)];
    } else if (rn(30) == 0) {
        lease = 99999; /* never granted */
    }
    q.lease = lease;
    if (rn(15) == 0) {
        q.ignore_value = 1;
        q.value = bin(NULL, 0);
    }
    if (rn(15) == 0) {
        q.ignore_lease = 1;
        q.lease = 0;
    }
    rc = mvcc_put(w, &q, &e->a, &r);
    if (q.lease != 0 && !lease_known(&e->m, q.lease)) {
        want = KEEL_ELEASENOTFOUND;
    } else if ((q.ignore_value || q.ignore_lease) && old == NULL) {
        want = KEEL_EKEYNOTFOUND;
    }
    assert_int_equal(rc, want);
    if (want) {
        return;
    }
    e->m.rev++;
    assert_int_equal(r->header->revision, e->m.rev);
    if (q.prev_kv && old) {
        check_kv(&e->m, i, old, r->prev_kv, 0);
    } else {
        assert_null(r->prev_kv);
    }
    {
        struct mver prev = old ? *old : (struct mver){0};
        model_put(&e->m, i, e->m.rev, 0, q.ignore_value ? prev.val : val,
                  q.ignore_value ? prev.vlen : vlen,
                  q.ignore_lease ? prev.lease : q.lease);
    }
    mvcc_write_events(w, &ev, &nev);
    assert_int_equal(nev, 1);
    assert_int_equal(ev[0]->type, MVCCPB__EVENT__EVENT_TYPE__PUT);
    check_kv(&e->m, i, live(&e->m, i), ev[0]->kv, 0);
    if (old) {
        check_kv(&e->m, i, &e->m.ev[e->m.nev - 1].prev, ev[0]->prev_kv, 0);
    } else {
        assert_null(ev[0]->prev_kv);
    }
}

static void op_delete(struct env *e, struct mvcc_write *w)
{
    Etcdserverpb__DeleteRangeRequest q =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    Etcdserverpb__DeleteRangeResponse *r = NULL;
    size_t hits[128], n = 0;
    Mvccpb__Event **ev;
    size_t nev;

    random_span(e, &q.key, &q.range_end);
    q.prev_kv = rn(2);
    for (size_t i = 0; i < e->m.nkeys; i++) {
        if (in_range(&e->m, i, &q.key, &q.range_end) && live(&e->m, i)) {
            hits[n++] = i;
        }
    }
    assert_int_equal(mvcc_delete_range(w, &q, &e->a, &r), 0);
    assert_int_equal(r->deleted, n);
    if (n > 0) {
        e->m.rev++;
    }
    assert_int_equal(r->header->revision, e->m.rev);
    assert_int_equal(r->n_prev_kvs, q.prev_kv ? n : 0);
    for (size_t j = 0; j < n; j++) {
        if (q.prev_kv) {
            check_kv(&e->m, hits[j], live(&e->m, hits[j]), r->prev_kvs[j], 0);
        }
        model_del(&e->m, hits[j], e->m.rev, (int64_t)j);
    }
    mvcc_write_events(w, &ev, &nev);
    assert_int_equal(nev, n);
    for (size_t j = 0; j < n; j++) {
        assert_int_equal(ev[j]->type, MVCCPB__EVENT__EVENT_TYPE__DELETE);
        assert_int_equal(ev[j]->kv->mod_revision, e->m.rev);
        assert_int_equal(ev[j]->kv->key.len, e->m.keys[hits[j]].klen);
        assert_non_null(ev[j]->prev_kv);
    }
}

static void op_range(struct env *e, struct mvcc_write *w)
{
    Etcdserverpb__RangeRequest q;
    Etcdserverpb__RangeResponse *r = NULL;
    int rc;

    random_range(e, &q);
    if (w != NULL) {
        rc = mvcc_write_range(w, &q, &e->a, &r);
    } else if (rn(3) == 0) {
        /* the same read as a read-only txn served from a read txn */
        Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
        Etcdserverpb__RequestOp op = ETCDSERVERPB__REQUEST_OP__INIT, *opp = &op;
        Etcdserverpb__TxnResponse *tr = NULL;
        op.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        op.request_range = &q;
        t.n_success = 1;
        t.success = &opp;
        rc = mvcc_txn_read(e->s, &t, &e->a, &tr);
        if (rc == 0) {
            assert_true(tr->succeeded);
            assert_int_equal(tr->header->revision, e->m.rev);
            assert_int_equal(tr->n_responses, 1);
            r = tr->responses[0]->response_range;
        }
    } else {
        rc = mvcc_range(e->s, &q, &e->a, &r);
    }
    check_range(&e->m, e->m.rev, &q, rc, r);
}

/* A txn over distinct keys: compares, success/failure ops (put, delete of
 * one key, range), sometimes a nested txn. */
#define TXN_MAXOPS 6

struct txn_gen
{
    Etcdserverpb__TxnRequest t, nested;
    Etcdserverpb__Compare cmp[2], ncmp;
    Etcdserverpb__Compare *cmpp[2], *ncmpp;
    Etcdserverpb__RequestOp op[2][TXN_MAXOPS], nop, *opp[2][TXN_MAXOPS],
        *nopp;
    Etcdserverpb__PutRequest put[2][TXN_MAXOPS], nput;
    Etcdserverpb__DeleteRangeRequest del[2][TXN_MAXOPS];
    Etcdserverpb__RangeRequest rng[2][TXN_MAXOPS];
    uint8_t vals[2][TXN_MAXOPS][8], nval[8];
    size_t vlens[2][TXN_MAXOPS], nvlen;
    size_t keyidx[2][TXN_MAXOPS], nkeyidx;
    uint8_t cval[2][8];
};

static void gen_compare(struct env *e,
                        Etcdserverpb__Compare *c,
                        uint8_t *cval)
{
    size_t i = rn(e->m.nkeys);
    const struct mver *v = live(&e->m, i);

    etcdserverpb__compare__init(c);
    c->key = pool_key(e, i);
    if (rn(5) == 0) {
        ProtobufCBinaryData k, end;
        random_span(e, &k, &end);
        c->key = k;
        c->range_end = end;
    }
    c->result = rn(4);
    c->target = rn(5);
    switch (c->target) {
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
            c->version = v && rn(2) ? v->version : (int64_t)rn(3);
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE:
            c->target_union_case =
                ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
            c->create_revision = v && rn(2) ? v->create : (int64_t)rn(
                                                               (uint64_t)e->m.rev + 1);
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD:
            c->target_union_case =
                ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
            c->mod_revision = v && rn(2) ? v->main : (int64_t)rn(
                                                         (uint64_t)e->m.rev + 1);
            break;
        case ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE: {
            size_t n;
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
            if (v && rn(2)) {
                memcpy(cval, v->val, v->vlen);
                n = v->vlen;
            } else {
                random_value(cval, &n);
            }
            c->value = bin(cval, n);
            break;
        }
        default:
            c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_LEASE;
            c->lease = v && rn(2) ? v->lease : 0;
            break;
    }
}

static int model_compare_kv(const Etcdserverpb__Compare *c,
                            const struct mver *v)
{
    static const struct mver empty;
    int d;
    if (v == NULL) {
        v = &empty;
    }
    switch (c->target) {
        case 0:
            d = i64c(v->version, c->version);
            break;
        case 1:
            d = i64c(v->create, c->create_revision);
            break;
        case 2:
            d = i64c(v->main, c->mod_revision);
            break;
        case 3:
            d = bcmp2(v->val, v->vlen, c->value.data, c->value.len);
            break;
        default:
            d = i64c(v->lease, c->lease);
            break;
    }
    switch (c->result) {
        case 0:
            return d == 0;
        case 1:
            return d > 0;
        case 2:
            return d < 0;
        default:
            return d != 0;
    }
}

static int model_compare(const struct model *m, const Etcdserverpb__Compare *c)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nkeys; i++) {
        const struct mver *v;
        if (!in_range(m, i, &c->key, &c->range_end) ||
            (v = live(m, i)) == NULL) {
            continue;
        }
        n++;
        if (!model_compare_kv(c, v)) {
            return 0;
        }
    }
    if (n == 0) {
        return c->target == ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE
                   ? 0
                   : model_compare_kv(c, NULL);
    }
    return 1;
}

static void op_txn(struct env *e, struct mvcc_write *w)
{
    struct txn_gen *g = calloc(1, sizeof(*g));
    Etcdserverpb__TxnResponse *r = NULL;
    uint8_t used[128] = {0};
    int ok, nested_ok = 0, has_nested = 0;
    size_t nb[2];
    int64_t sub = 0;
    int wrote = 0;

    etcdserverpb__txn_request__init(&g->t);
    g->t.n_compare = rn(3);
    for (size_t c = 0; c < g->t.n_compare; c++) {
        gen_compare(e, &g->cmp[c], g->cval[c]);
        g->cmpp[c] = &g->cmp[c];
    }
    g->t.compare = g->cmpp;
    for (int b = 0; b < 2; b++) {
        nb[b] = rn(b == 0 ? 4 : 3);
        for (size_t j = 0; j < nb[b]; j++) {
            size_t i;
            Etcdserverpb__RequestOp *op = &g->op[b][j];
            do {
                i = rn(e->m.nkeys);
            } while (used[i]);
            used[i] = 1;
            g->keyidx[b][j] = i;
            etcdserverpb__request_op__init(op);
            switch (rn(3)) {
                case 0:
                    etcdserverpb__put_request__init(&g->put[b][j]);
                    g->put[b][j].key = pool_key(e, i);
                    random_value(g->vals[b][j], &g->vlens[b][j]);
                    g->put[b][j].value = bin(g->vals[b][j], g->vlens[b][j]);
                    g->put[b][j].prev_kv = 1;
                    op->request_case =
                        ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
                    op->request_put = &g->put[b][j];
                    break;
                case 1:
                    etcdserverpb__delete_range_request__init(&g->del[b][j]);
                    g->del[b][j].key = pool_key(e, i);
                    op->request_case =
                        ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
                    op->request_delete_range = &g->del[b][j];
                    break;
                default:
                    etcdserverpb__range_request__init(&g->rng[b][j]);
                    g->rng[b][j].key = pool_key(e, i);
                    op->request_case =
                        ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
                    op->request_range = &g->rng[b][j];
                    break;
            }
            g->opp[b][j] = op;
        }
    }
    /* Sometimes a nested txn at the end of the success branch. */
    if (rn(4) == 0) {
        size_t i;
        do {
            i = rn(e->m.nkeys);
        } while (used[i]);
        used[i] = 1;
        g->nkeyidx = i;
        etcdserverpb__txn_request__init(&g->nested);
        gen_compare(e, &g->ncmp, g->nval);
        g->ncmpp = &g->ncmp;
        g->nested.n_compare = 1;
        g->nested.compare = &g->ncmpp;
        etcdserverpb__put_request__init(&g->nput);
        g->nput.key = pool_key(e, i);
        g->nvlen = 3;
        memcpy(g->nval, "nst", 3);
        g->nput.value = bin(g->nval, 3);
        etcdserverpb__request_op__init(&g->nop);
        g->nop.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        g->nop.request_put = &g->nput;
        g->nopp = &g->nop;
        if (rn(2)) {
            g->nested.n_success = 1;
            g->nested.success = &g->nopp;
        } else {
            g->nested.n_failure = 1;
            g->nested.failure = &g->nopp;
        }
        etcdserverpb__request_op__init(&g->op[0][nb[0]]);
        g->op[0][nb[0]].request_case =
            ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN;
        g->op[0][nb[0]].request_txn = &g->nested;
        g->opp[0][nb[0]] = &g->op[0][nb[0]];
        nb[0]++;
        has_nested = 1;
    }
    g->t.n_success = nb[0];
    g->t.success = g->opp[0];
    g->t.n_failure = nb[1];
    g->t.failure = g->opp[1];
    assert_int_equal(mvcc_txn_check(&g->t), 0);

    /* Model: decide the whole path first, on the state before the txn. */
    ok = 1;
    for (size_t c = 0; c < g->t.n_compare && ok; c++) {
        ok = model_compare(&e->m, &g->cmp[c]);
    }
    if (has_nested && ok) {
        nested_ok = model_compare(&e->m, &g->ncmp);
    }
    assert_int_equal(mvcc_txn(w, &g->t, &e->a, &r), 0);
    assert_int_equal(r->succeeded, ok);
    {
        int b = ok ? 0 : 1;
        assert_int_equal(r->n_responses, nb[b]);
        for (size_t j = 0; j < nb[b]; j++) {
            Etcdserverpb__RequestOp *op = g->opp[b][j];
            Etcdserverpb__ResponseOp *ro = r->responses[j];
            size_t i = g->keyidx[b][j];
            int64_t cur = e->m.rev + (wrote ? 1 : 0);
            switch (op->request_case) {
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT: {
                    const struct mver *old = live(&e->m, i);
                    assert_int_equal(ro->response_case,
                                     ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT);
                    assert_int_equal(ro->response_put->header->revision,
                                     e->m.rev + 1);
                    if (old) {
                        check_kv(&e->m, i, old, ro->response_put->prev_kv, 0);
                    } else {
                        assert_null(ro->response_put->prev_kv);
                    }
                    model_put(&e->m, i, e->m.rev + 1, sub++, g->vals[b][j],
                              g->vlens[b][j], 0);
                    wrote = 1;
                    break;
                }
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE: {
                    int had = live(&e->m, i) != NULL;
                    assert_int_equal(ro->response_delete_range->deleted, had);
                    if (had) {
                        model_del(&e->m, i, e->m.rev + 1, sub++);
                        wrote = 1;
                    }
                    assert_int_equal(
                        ro->response_delete_range->header->revision,
                        e->m.rev + (wrote ? 1 : 0));
                    break;
                }
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE: {
                    /* reads see the txn's earlier writes */
                    const struct mver *v = visible(&e->m, i, INT64_MAX);
                    Etcdserverpb__RangeResponse *rr = ro->response_range;
                    assert_int_equal(rr->header->revision, cur);
                    assert_int_equal(rr->count, v ? 1 : 0);
                    assert_int_equal(rr->n_kvs, v ? 1 : 0);
                    if (v) {
                        check_kv(&e->m, i, v, rr->kvs[0], 0);
                    }
                    break;
                }
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_TXN: {
                    Etcdserverpb__TxnResponse *nr = ro->response_txn;
                    int runs = nested_ok ? g->nested.n_success
                                         : g->nested.n_failure;
                    assert_int_equal(nr->succeeded, nested_ok);
                    assert_int_equal(nr->header->revision, 0);
                    assert_int_equal(nr->n_responses, runs);
                    if (runs) {
                        model_put(&e->m, g->nkeyidx, e->m.rev + 1, sub++,
                                  g->nval, g->nvlen, 0);
                        wrote = 1;
                    }
                    break;
                }
                default:
                    fail();
            }
        }
    }
    if (wrote) {
        e->m.rev++;
    }
    assert_int_equal(r->header->revision, e->m.rev);
    {
        Mvccpb__Event **ev;
        size_t nev;
        mvcc_write_events(w, &ev, &nev);
        assert_int_equal(nev, (size_t)sub);
    }
    free(g);
}

static void op_lease(struct env *e, struct mvcc_write *w)
{
    if (e->m.nleases < MAX_LEASES && rn(2)) {
        int64_t id = e->m.next_lease++;
        assert_int_equal(lease_store_grant(w, id, 60), 0);
        assert_int_equal(lease_store_grant(w, id, 60), KEEL_ELEASEEXIST);
        e->m.leases[e->m.nleases++] = id;
        return;
    }
    if (e->m.nleases == 0) {
        assert_int_equal(lease_store_revoke(w, 12345, &e->a),
                         KEEL_ELEASENOTFOUND);
        return;
    }
    {
        size_t li = rn(e->m.nleases);
        int64_t id = e->m.leases[li];
        size_t n = 0;
        Mvccpb__Event **ev;
        size_t nev;
        ProtobufCBinaryData *keys;
        size_t nkeys;

        assert_int_equal(lease_store_keys(e->s, w, id, &e->a, &keys, &nkeys), 0);
        for (size_t i = 0; i < e->m.nkeys; i++) {
            const struct mver *v = live(&e->m, i);
            if (v && v->lease == id) {
                assert_true(n < nkeys);
                assert_int_equal(keys[n].len, e->m.keys[i].klen);
                assert_memory_equal(keys[n].data, e->m.keys[i].k,
                                    e->m.keys[i].klen);
                n++;
            }
        }
        assert_int_equal(nkeys, n);
        assert_int_equal(lease_store_revoke(w, id, &e->a), 0);
        n = 0;
        for (size_t i = 0; i < e->m.nkeys; i++) {
            const struct mver *v = live(&e->m, i);
            if (v && v->lease == id) {
                model_del(&e->m, i, e->m.rev + 1, (int64_t)n++);
            }
        }
        if (n) {
            e->m.rev++;
        }
        mvcc_write_events(w, &ev, &nev);
        assert_int_equal(nev, n);
        e->m.leases[li] = e->m.leases[--e->m.nleases];
        assert_int_equal(lease_store_revoke(w, id, &e->a), KEEL_ELEASENOTFOUND);
    }
}

static void op_compact(struct env *e, struct mvcc_write *w)
{
    int64_t lo = e->m.compact < 1 ? 1 : e->m.compact;
    int64_t rev;
    int rc;

    if (rn(5) == 0) {
        rev = rn(2) ? lo - (int64_t)rn(2) : e->m.rev + 1 + (int64_t)rn(3);
        if (e->m.compact < 0 && rev <= e->m.rev) {
            rev = e->m.rev + 1;
        }
    } else {
        /* keep some history behind: half-way at most */
        rev = lo + (int64_t)rn((uint64_t)(e->m.rev - lo) / 2 + 1);
    }
    rc = mvcc_compact(w, rev);
    if (rev <= e->m.compact) {
        assert_int_equal(rc, KEEL_ECOMPACTED);
    } else if (rev > e->m.rev) {
        assert_int_equal(rc, KEEL_EFUTUREREV);
    } else {
        assert_int_equal(rc, 0);
        e->m.compact = rev;
    }
}

/* ---- whole-store checks ---------------------------------------------------- */

static void check_all(struct env *e)
{
    static const uint8_t zero = 0;
    Etcdserverpb__RangeRequest q = ETCDSERVERPB__RANGE_REQUEST__INIT;
    Etcdserverpb__RangeResponse *r = NULL;
    int rc;

    q.key = bin(&zero, 1);
    q.range_end = bin(&zero, 1);
    rc = mvcc_range(e->s, &q, &e->a, &r);
    check_range(&e->m, e->m.rev, &q, rc, r);
    assert_int_equal(mvcc_revision(e->s), e->m.rev);
    assert_int_equal(mvcc_compact_revision(e->s), e->m.compact);
    keel_arena_reset(&e->a);
}

/* After a complete compaction: what is left is every revision above the
 * compact revision plus, per key, its newest put at or below it. */
static void check_compacted_count(struct env *e)
{
    uint64_t want = 0, got;
    for (size_t i = 0; i < e->m.nkeys; i++) {
        const struct mkey *k = &e->m.keys[i];
        for (size_t j = 0; j < k->n; j++) {
            if (k->v[j].main > e->m.compact) {
                want++;
            }
        }
        if (visible(&e->m, i, e->m.compact) != NULL) {
            want++;
        }
    }
    assert_int_equal(mvcc_revision_count(e->s, &got), 0);
    assert_int_equal(got, want);
}

static void check_events(struct env *e)
{
    static const uint8_t zero = 0;
    ProtobufCBinaryData key, end;
    int64_t lo = e->m.compact < 1 ? 1 : e->m.compact + 1;
    int64_t start = lo + (int64_t)rn((uint64_t)(e->m.rev + 1 - lo + 1));
    size_t limit = rn(2) ? 0 : 1 + rn(4);
    Mvccpb__Event **ev;
    size_t n, j = 0, matched = 0;
    int64_t next;

    if (rn(2)) {
        key = bin(&zero, 1);
        end = bin(&zero, 1);
    } else {
        random_span(e, &key, &end);
    }
    if (e->m.compact > 1 && rn(4) == 0) {
        assert_int_equal(mvcc_events_since(e->s, e->m.compact - 1, &key, &end,
                                           0, 1, &e->a, &ev, &n, &next),
                         KEEL_ECOMPACTED);
    }
    assert_int_equal(mvcc_events_since(e->s, start, &key, &end, limit, 1,
                                       &e->a, &ev, &n, &next),
                     0);
    for (size_t x = 0; x < e->m.nev; x++) {
        const struct mevent *me = &e->m.ev[x];
        Mvccpb__Event *got;
        if (me->main < start || !in_range(&e->m, (size_t)me->key, &key, &end)) {
            continue;
        }
        if (j == n) {
            /* stopped at a revision boundary because of the limit */
            assert_true(limit > 0 && n >= limit);
            assert_true(next <= me->main);
            assert_true(next > ev[n - 1]->kv->mod_revision);
            assert_true(matched == 0 || e->m.ev[matched - 1].main < me->main);
            break;
        }
        got = ev[j++];
        matched = x + 1;
        assert_int_equal(got->type, me->del ? MVCCPB__EVENT__EVENT_TYPE__DELETE
                                            : MVCCPB__EVENT__EVENT_TYPE__PUT);
        assert_int_equal(got->kv->mod_revision, me->main);
        assert_int_equal(got->kv->key.len, e->m.keys[me->key].klen);
        assert_memory_equal(got->kv->key.data, e->m.keys[me->key].k,
                            got->kv->key.len);
        if (!me->del) {
            check_kv(&e->m, (size_t)me->key, &me->v, got->kv, 0);
        }
        if (me->has_prev) {
            check_kv(&e->m, (size_t)me->key, &me->prev, got->prev_kv, 0);
        } else {
            assert_null(got->prev_kv);
        }
    }
    assert_int_equal(j, n);
    if (j == n && (limit == 0 || n < limit)) {
        assert_int_equal(next, e->m.rev + 1);
    }
    keel_arena_reset(&e->a);
}

/* ---- driver ------------------------------------------------------------------ */

static void run_seed(uint64_t seed, int steps)
{
    struct env *e = calloc(1, sizeof(*e));
    int pending_compact = 0;

    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    fprintf(stderr, "model seed %llu, %d steps\n", (unsigned long long)seed,
            steps);
    model_init(&e->m);
    tdir_init(&e->t);
    keel_arena_init(&e->a, 0);
    e->s = open_store(e->t.db, 0);

    for (int step = 0; step < steps; step++) {
        struct mvcc_write *w;
        int nops = 1 + (int)rn(4);
        uint64_t x = rn(100);

        if (x < 3) { /* close and reopen */
            mvcc_close(e->s);
            e->s = open_store(e->t.db, 0);
            check_all(e);
            continue;
        }
        if (x < 8) {
            op_range(e, NULL);
            keel_arena_reset(&e->a);
            continue;
        }
        if (x < 11) {
            check_events(e);
            continue;
        }
        if (x < 15 && pending_compact) {
            int done = 0;
            if (rn(2)) {
                assert_int_equal(mvcc_compact_step(e->s, 1 + rn(8), &done), 0);
            } else {
                assert_int_equal(mvcc_compact_run(e->s), 0);
                done = 1;
            }
            if (done) {
                pending_compact = 0;
                check_compacted_count(e);
            }
            check_all(e);
            continue;
        }
        assert_int_equal(mvcc_write_begin(e->s, &w), 0);
        for (int o = 0; o < nops; o++) {
            uint64_t y = rn(100);
            if (y < 40) {
                op_put(e, w);
            } else if (y < 55) {
                op_delete(e, w);
            } else if (y < 75) {
                op_txn(e, w);
            } else if (y < 85) {
                op_range(e, w);
            } else if (y < 97) {
                op_lease(e, w);
            } else {
                op_compact(e, w);
                pending_compact = 1;
            }
        }
        assert_int_equal(mvcc_write_commit(w, ++e->ci, 2), 0);
        keel_arena_reset(&e->a);
        if (step % 50 == 0) {
            check_all(e);
        }
    }
    check_all(e);
    fprintf(stderr, "  revision %lld, compacted at %lld, %zu events\n",
            (long long)e->m.rev, (long long)e->m.compact, e->m.nev);
    assert_int_equal(mvcc_compact_run(e->s), 0);
    if (e->m.compact > 0) {
        check_compacted_count(e);
    }
    for (int i = 0; i < 20; i++) {
        op_range(e, NULL);
        keel_arena_reset(&e->a);
        check_events(e);
    }
    mvcc_close(e->s);
    keel_arena_free(&e->a);
    rm_rf(e->t.dir);
    model_free(&e->m);
    free(e);
}

static void test_mvcc_model_random(void **state)
{
    int steps = is_sanitized() ? 2000 : 15000;
    (void)state;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        run_seed(seed, steps);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mvcc_model_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
