/*
 * The watch hub against a fake storage (an in-memory event log that honours
 * compaction) and a fake transport (records every response, packed, as the
 * wire would carry it; can be made full). A validator modelled on etcd's
 * tests/robustness/validate/watch.go replays a stream's recorded responses
 * against the log and checks, per watcher: ordered, no gaps, no duplicates,
 * nothing before the start revision, atomic per revision (fragments
 * reassembled), prev_kv as asked, filters applied, and that no progress
 * notification is ahead of an event not yet sent on the stream.
 *
 * test_watch_matches_etcd_probe is differential: etcd_watch_probe.py was run
 * against /usr/bin/etcd 3.4 and its output recorded next to this file; the
 * same scenario through the hub must print the same lines.
 *
 * Every test runs twice, through send() and through send_packed().
 * KEEL_TEST_FILTER=<name> runs one test; KEEL_WATCH_SEED=<n> replays one
 * seed of the randomized validator; KEEL_SANITIZED=1 scales down.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <malloc.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel_err.h"
#include "mvccpb/kv.pb-c.h"
#include "watch_hub.h"

/* ------------------------------------------------------------- fixture */

#define MAX_STREAMS 64

struct kv
{
    char *key;
    size_t klen;
    char *val;
    size_t vlen;
    int64_t create, mod, version, lease;
};

struct logev
{
    int64_t rev;
    Mvccpb__Event *ev; /* owned; prev_kv always filled when it existed */
};

struct fstream
{
    struct watch_stream *s;
    struct fx *fx;
    uint8_t **msgs;
    size_t *lens;
    size_t n, cap;
    size_t queued;    /* since the last drain */
    size_t limit;     /* queue length that reports FULL; 0: never */
    bool full;        /* FULL was reported and not yet drained */
    bool in_frag;     /* last message had fragment=true */
    bool fail;        /* send() fails */
    /* create requests sent, in order, to bind created responses to them */
    Etcdserverpb__WatchCreateRequest *creqs;
    size_t n_creqs, cap_creqs;
};

struct fx
{
    struct watch_hub *hub;
    struct watch_hub_config cfg;
    struct kv *state;
    size_t n_state, cap_state;
    struct logev *log;
    size_t n_log, cap_log;
    int64_t rev, compact;
    int fail_reads;
    int deny_prefix_x; /* check_range denies keys starting with 'x' */
    struct fstream fs[MAX_STREAMS];
    size_t n_fs;
    uint64_t now;
    /* heap fault injection: fail the Nth allocation from now (1-based) */
    long alloc_countdown;
    size_t reads;
    size_t live_bytes; /* allocated through the hub's heap hooks */
    bool no_notify; /* writes land in the store only (a snapshot) */
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static char *xdup(const void *p, size_t n)
{
    char *c = xmalloc(n + 1);
    memcpy(c, p, n);
    c[n] = 0;
    return c;
}

static Mvccpb__KeyValue *kv_new(const struct kv *k)
{
    Mvccpb__KeyValue *c = xmalloc(sizeof *c);
    mvccpb__key_value__init(c);
    c->key.data = (uint8_t *)xdup(k->key, k->klen);
    c->key.len = k->klen;
    c->value.data = (uint8_t *)xdup(k->val, k->vlen);
    c->value.len = k->vlen;
    c->create_revision = k->create;
    c->mod_revision = k->mod;
    c->version = k->version;
    c->lease = k->lease;
    return c;
}

static void kv_del(Mvccpb__KeyValue *c)
{
    if (c) {
        free(c->key.data);
        free(c->value.data);
        free(c);
    }
}

/* heap hooks with fault injection */
static void *t_malloc(void *ctx, size_t n)
{
    struct fx *f = ctx;
    if (f->alloc_countdown > 0 && --f->alloc_countdown == 0) {
        return NULL;
    }
    void *p = malloc(n);
    if (p) {
        f->live_bytes += malloc_usable_size(p);
    }
    return p;
}
static void *t_realloc(void *ctx, void *p, size_t n)
{
    struct fx *f = ctx;
    if (f->alloc_countdown > 0 && --f->alloc_countdown == 0) {
        return NULL;
    }
    size_t old = p ? malloc_usable_size(p) : 0;
    void *q = realloc(p, n);
    if (q) {
        f->live_bytes += malloc_usable_size(q) - old;
    }
    return q;
}
static void t_free(void *ctx, void *p)
{
    struct fx *f = ctx;
    if (p) {
        f->live_bytes -= malloc_usable_size(p);
    }
    free(p);
}

/* ------------------------------------------------- fake transport/store */

/* Every test runs twice: with send() (the hub hands over structs, the fake
 * transport packs them) and with send_packed() (the hub encodes). */
static bool g_packed;

static int record(struct fx *f, struct fstream *fs,
                  const Etcdserverpb__WatchResponse *r, const uint8_t *bytes,
                  size_t len);

static int t_send(void *ctx, struct watch_stream *s, void *data,
                  const Etcdserverpb__WatchResponse *r)
{
    struct fx *f = ctx;
    struct fstream *fs = data;
    assert_ptr_equal(fs->s, s);
    assert_ptr_equal(fs->fx, f);
    if (fs->fail) {
        return -5;
    }
    return record(f, fs, r, NULL, 0);
}

/* The hub's own encoding must be exactly protobuf-c's. */
static int t_send_packed(void *ctx, struct watch_stream *s, void *data,
                         const uint8_t *msg, size_t len)
{
    struct fx *f = ctx;
    struct fstream *fs = data;
    assert_ptr_equal(fs->s, s);
    if (fs->fail) {
        return -5;
    }
    Etcdserverpb__WatchResponse *r =
        etcdserverpb__watch_response__unpack(NULL, len, msg);
    assert_non_null(r);
    size_t len2 = etcdserverpb__watch_response__get_packed_size(r);
    assert_int_equal(len2, len);
    uint8_t *again = xmalloc(len2);
    etcdserverpb__watch_response__pack(r, again);
    assert_memory_equal(again, msg, len);
    free(again);
    int rv = record(f, fs, r, msg, len);
    etcdserverpb__watch_response__free_unpacked(r, NULL);
    return rv;
}

static int record(struct fx *f, struct fstream *fs,
                  const Etcdserverpb__WatchResponse *r, const uint8_t *bytes,
                  size_t blen)
{
    (void)f;
    /* Back-pressure: once FULL, only control responses and the rest of a
     * fragment series may come. */
    if (fs->full && r->n_events > 0 && !fs->in_frag) {
        fail_msg("event response on a full stream");
    }
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 16;
        fs->msgs = realloc(fs->msgs, fs->cap * sizeof *fs->msgs);
        fs->lens = realloc(fs->lens, fs->cap * sizeof *fs->lens);
        assert_non_null(fs->msgs);
        assert_non_null(fs->lens);
    }
    size_t len = blen;
    uint8_t *buf;
    if (bytes) {
        buf = xmalloc(len);
        memcpy(buf, bytes, len);
    } else {
        len = etcdserverpb__watch_response__get_packed_size(r);
        buf = xmalloc(len);
        assert_int_equal(etcdserverpb__watch_response__pack(r, buf), len);
    }
    fs->msgs[fs->n] = buf;
    fs->lens[fs->n] = len;
    fs->n++;
    fs->in_frag = r->fragment;
    fs->queued++;
    if (fs->limit && fs->queued >= fs->limit) {
        fs->full = true;
        return WATCH_SEND_FULL;
    }
    return WATCH_SEND_OK;
}

static void t_header(void *ctx, Etcdserverpb__ResponseHeader *h)
{
    (void)ctx;
    h->cluster_id = 0x1111;
    h->member_id = 0x2222;
    h->raft_term = 7;
}

static int64_t t_rev(void *ctx)
{
    return ((struct fx *)ctx)->rev;
}

static int t_check(void *ctx, void *data, const uint8_t *key, size_t key_len,
                   const uint8_t *end, size_t end_len)
{
    struct fx *f = ctx;
    (void)data;
    (void)end;
    (void)end_len;
    if (f->deny_prefix_x && key_len > 0 && key[0] == 'x') {
        return KEEL_EPERMISSIONDENIED;
    }
    return 0;
}

/* etcd Range rules: end_len 0 = one key, "\0" = from key on. */
static bool in_range(const uint8_t *k, size_t kl, const uint8_t *key,
                     size_t key_len, const uint8_t *end, size_t end_len)
{
    size_t n = kl < key_len ? kl : key_len;
    int c = memcmp(k, key, n);
    if (c == 0) {
        c = kl < key_len ? -1 : (kl > key_len ? 1 : 0);
    }
    if (end_len == 0) {
        return c == 0;
    }
    if (c < 0) {
        return false;
    }
    if (end_len == 1 && end[0] == 0) {
        return true;
    }
    n = kl < end_len ? kl : end_len;
    c = memcmp(k, end, n);
    if (c == 0) {
        c = kl < end_len ? -1 : (kl > end_len ? 1 : 0);
    }
    return c < 0;
}

static int t_read(void *ctx, const uint8_t *key, size_t key_len,
                  const uint8_t *end, size_t end_len, int64_t from, int64_t to,
                  bool prev_kv, watch_emit_cb emit, void *arg,
                  int64_t *compact_rev)
{
    struct fx *f = ctx;
    f->reads++;
    if (f->fail_reads > 0) {
        f->fail_reads--;
        return KEEL_EIO;
    }
    if (from < f->compact) {
        *compact_rev = f->compact;
        return KEEL_ECOMPACTED;
    }
    for (size_t i = 0; i < f->n_log; i++) {
        struct logev *l = &f->log[i];
        if (l->rev < from || l->rev > to) {
            continue;
        }
        const Mvccpb__KeyValue *kv = l->ev->kv;
        if (!in_range(kv->key.data, kv->key.len, key, key_len, end, end_len)) {
            continue;
        }
        Mvccpb__Event e = *l->ev;
        if (!prev_kv) {
            e.prev_kv = NULL;
        }
        if (emit(arg, &e) != 0) {
            break;
        }
    }
    return 0;
}

static void fx_init(struct fx *f, const struct watch_hub_config *over)
{
    memset(f, 0, sizeof *f);
    static struct watch_heap heap;
    heap.ctx = f;
    heap.malloc = t_malloc;
    heap.realloc = t_realloc;
    heap.free = t_free;
    if (over) {
        f->cfg = *over;
    }
    f->cfg.ctx = f;
    f->cfg.send = g_packed ? NULL : t_send;
    f->cfg.send_packed = g_packed ? t_send_packed : NULL;
    f->cfg.read_history = t_read;
    f->cfg.current_revision = t_rev;
    f->cfg.fill_header = t_header;
    f->cfg.check_range = t_check;
    f->cfg.heap = &heap;
    if (f->cfg.seed == 0) {
        f->cfg.seed = 42;
    }
    f->rev = 1; /* etcd starts at revision 1 */
    assert_int_equal(watch_hub_new(&f->cfg, &f->hub), 0);
}

static struct fstream *fx_stream(struct fx *f)
{
    assert_true(f->n_fs < MAX_STREAMS);
    struct fstream *fs = &f->fs[f->n_fs++];
    memset(fs, 0, sizeof *fs);
    fs->fx = f;
    assert_int_equal(watch_stream_new(f->hub, fs, &fs->s), 0);
    return fs;
}

static void fs_clear(struct fstream *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->msgs[i]);
    }
    free(fs->msgs);
    free(fs->lens);
    for (size_t i = 0; i < fs->n_creqs; i++) {
        free(fs->creqs[i].key.data);
        free(fs->creqs[i].range_end.data);
        free(fs->creqs[i].filters);
    }
    free(fs->creqs);
    fs->msgs = NULL;
    fs->lens = NULL;
    fs->creqs = NULL;
    fs->n = fs->cap = fs->n_creqs = fs->cap_creqs = 0;
}

static void fx_close_stream(struct fstream *fs)
{
    if (fs->s) {
        watch_stream_free(fs->s);
        fs->s = NULL;
    }
}

static void fx_free(struct fx *f)
{
    assert_int_equal(watch_hub_check(f->hub), 0);
    watch_hub_free(f->hub);
    for (size_t i = 0; i < f->n_fs; i++) {
        fs_clear(&f->fs[i]);
    }
    for (size_t i = 0; i < f->n_log; i++) {
        kv_del(f->log[i].ev->kv);
        kv_del(f->log[i].ev->prev_kv);
        free(f->log[i].ev);
    }
    free(f->log);
    for (size_t i = 0; i < f->n_state; i++) {
        free(f->state[i].key);
        free(f->state[i].val);
    }
    free(f->state);
}

/* --------------------------------------------------------- the "store" */

struct op
{
    bool del;
    const char *key;
    const char *val;
};

static struct kv *state_find(struct fx *f, const char *k, size_t kl)
{
    for (size_t i = 0; i < f->n_state; i++) {
        if (f->state[i].klen == kl && memcmp(f->state[i].key, k, kl) == 0) {
            return &f->state[i];
        }
    }
    return NULL;
}

/* Apply one txn at a new revision and notify the hub (as the apply loop
 * will). Returns the revision. */
static int64_t fx_txn(struct fx *f, const struct op *ops, size_t n)
{
    int64_t rev = ++f->rev;
    Mvccpb__Event *evs[64];
    size_t ne = 0;
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(ops[i].key);
        struct kv *cur = state_find(f, ops[i].key, kl);
        Mvccpb__Event *e = NULL;
        if (ops[i].del) {
            if (cur == NULL) {
                continue;
            }
            e = xmalloc(sizeof *e);
            mvccpb__event__init(e);
            e->type = MVCCPB__EVENT__EVENT_TYPE__DELETE;
            struct kv tomb = {cur->key, cur->klen, "", 0, 0, rev, 0, 0};
            e->kv = kv_new(&tomb);
            e->prev_kv = kv_new(cur);
            free(cur->key);
            free(cur->val);
            *cur = f->state[--f->n_state];
        } else {
            e = xmalloc(sizeof *e);
            mvccpb__event__init(e);
            e->type = MVCCPB__EVENT__EVENT_TYPE__PUT;
            size_t vl = strlen(ops[i].val);
            if (cur) {
                e->prev_kv = kv_new(cur);
                free(cur->val);
                cur->val = xdup(ops[i].val, vl);
                cur->vlen = vl;
                cur->mod = rev;
                cur->version++;
            } else {
                if (f->n_state == f->cap_state) {
                    f->cap_state = f->cap_state ? 2 * f->cap_state : 16;
                    f->state = realloc(f->state, f->cap_state * sizeof *f->state);
                    assert_non_null(f->state);
                }
                cur = &f->state[f->n_state++];
                cur->key = xdup(ops[i].key, kl);
                cur->klen = kl;
                cur->val = xdup(ops[i].val, vl);
                cur->vlen = vl;
                cur->create = rev;
                cur->mod = rev;
                cur->version = 1;
                cur->lease = 0;
            }
            e->kv = kv_new(cur);
        }
        evs[ne++] = e;
        if (f->n_log == f->cap_log) {
            f->cap_log = f->cap_log ? 2 * f->cap_log : 64;
            f->log = realloc(f->log, f->cap_log * sizeof *f->log);
            assert_non_null(f->log);
        }
        f->log[f->n_log].rev = rev;
        f->log[f->n_log].ev = e;
        f->n_log++;
    }
    if (ne == 0) {
        /* etcd does not bump the revision for a txn that writes nothing */
        f->rev--;
        return f->rev;
    }
    if (!f->no_notify) {
        watch_hub_notify(f->hub, rev, evs, ne);
    }
    return rev;
}

static int64_t fx_put(struct fx *f, const char *k, const char *v)
{
    struct op o = {false, k, v};
    return fx_txn(f, &o, 1);
}

static int64_t fx_del(struct fx *f, const char *k)
{
    struct op o = {true, k, NULL};
    return fx_txn(f, &o, 1);
}

static void fx_compact(struct fx *f, int64_t rev)
{
    f->compact = rev;
    watch_hub_compacted(f->hub, rev);
}

static void fx_tick(struct fx *f, uint64_t ms)
{
    f->now += ms;
    watch_hub_tick(f->hub, f->now);
}

static void fs_drain(struct fstream *fs)
{
    fs->queued = 0;
    fs->full = false;
    if (fs->s) {
        watch_stream_set_writable(fs->s, true);
    }
}

/* Drain everything and tick until no watcher is behind. */
static void fx_settle(struct fx *f)
{
    for (int i = 0; i < 100000; i++) {
        for (size_t j = 0; j < f->n_fs; j++) {
            fs_drain(&f->fs[j]);
        }
        if (watch_hub_pending(f->hub) == 0) {
            return;
        }
        fx_tick(f, 1);
    }
    fail_msg("hub never settled");
}

/* ------------------------------------------------------------ requests */

struct wopts
{
    const char *key;
    const char *end; /* NULL: none; "\0" spelled as end_zero */
    bool end_zero;
    int64_t start;
    bool prev_kv, fragment, progress, no_put, no_delete;
    int64_t id;
};

static int fs_create(struct fstream *fs, const struct wopts *o)
{
    Etcdserverpb__WatchCreateRequest c = ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    static const uint8_t zero = 0;
    Etcdserverpb__WatchCreateRequest__FilterType ft[2];
    c.key.data = (uint8_t *)o->key;
    c.key.len = o->key ? strlen(o->key) : 0;
    if (o->end_zero) {
        c.range_end.data = (uint8_t *)&zero;
        c.range_end.len = 1;
    } else if (o->end) {
        c.range_end.data = (uint8_t *)o->end;
        c.range_end.len = strlen(o->end);
    }
    c.start_revision = o->start;
    c.prev_kv = o->prev_kv;
    c.fragment = o->fragment;
    c.progress_notify = o->progress;
    c.watch_id = o->id;
    if (o->no_put) {
        ft[c.n_filters++] = ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT;
    }
    if (o->no_delete) {
        ft[c.n_filters++] =
            ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE;
    }
    c.filters = c.n_filters ? ft : NULL;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST;
    r.create_request = &c;
    size_t before = fs->n;
    int rv = watch_stream_recv(fs->s, &r);
    if (rv == 0 && fs->n > before) {
        /* remember it for the validator (the created response is the first
         * message of this call) */
        if (fs->n_creqs == fs->cap_creqs) {
            fs->cap_creqs = fs->cap_creqs ? 2 * fs->cap_creqs : 16;
            fs->creqs = realloc(fs->creqs, fs->cap_creqs * sizeof *fs->creqs);
            assert_non_null(fs->creqs);
        }
        Etcdserverpb__WatchCreateRequest *k = &fs->creqs[fs->n_creqs++];
        *k = c;
        k->key.data = (uint8_t *)xdup(c.key.data ? c.key.data : &zero, c.key.len);
        k->range_end.data =
            (uint8_t *)xdup(c.range_end.data ? c.range_end.data : &zero,
                            c.range_end.len);
        k->filters = xmalloc(sizeof ft);
        memcpy(k->filters, ft, sizeof ft);
    }
    return rv;
}

static void fs_cancel(struct fstream *fs, int64_t id)
{
    Etcdserverpb__WatchCancelRequest c = ETCDSERVERPB__WATCH_CANCEL_REQUEST__INIT;
    c.watch_id = id;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST;
    r.cancel_request = &c;
    assert_int_equal(watch_stream_recv(fs->s, &r), 0);
}

static void fs_progress(struct fstream *fs)
{
    Etcdserverpb__WatchProgressRequest p =
        ETCDSERVERPB__WATCH_PROGRESS_REQUEST__INIT;
    Etcdserverpb__WatchRequest r = ETCDSERVERPB__WATCH_REQUEST__INIT;
    r.request_union_case =
        ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST;
    r.progress_request = &p;
    assert_int_equal(watch_stream_recv(fs->s, &r), 0);
}

static Etcdserverpb__WatchResponse *fs_msg(struct fstream *fs, size_t i)
{
    assert_true(i < fs->n);
    Etcdserverpb__WatchResponse *r =
        etcdserverpb__watch_response__unpack(NULL, fs->lens[i], fs->msgs[i]);
    assert_non_null(r);
    assert_non_null(r->header);
    assert_int_equal(r->header->cluster_id, 0x1111);
    assert_int_equal(r->header->member_id, 0x2222);
    assert_int_equal(r->header->raft_term, 7);
    return r;
}

static void msg_free(Etcdserverpb__WatchResponse *r)
{
    etcdserverpb__watch_response__free_unpacked(r, NULL);
}

/* Create and return the id from the created response. */
static int64_t fs_watch(struct fstream *fs, const struct wopts *o)
{
    size_t before = fs->n;
    assert_int_equal(fs_create(fs, o), 0);
    assert_true(fs->n > before);
    Etcdserverpb__WatchResponse *r = fs_msg(fs, before);
    assert_true(r->created);
    assert_false(r->canceled);
    int64_t id = r->watch_id;
    msg_free(r);
    return id;
}

/* ------------------------------------------------------------ validator */

struct vw
{
    int64_t id;
    const Etcdserverpb__WatchCreateRequest *c;
    int64_t start;
    size_t cursor; /* log index of the next expected event candidate */
    int64_t last_rev;
    bool canceled;
    bool compacted;
};

static bool vw_matches(const struct vw *w, const struct logev *l)
{
    const Etcdserverpb__WatchCreateRequest *c = w->c;
    if (l->rev < w->start) {
        return false;
    }
    const uint8_t *key = c->key.data;
    size_t kl = c->key.len;
    static const uint8_t zero = 0;
    if (kl == 0) {
        key = &zero;
        kl = 1;
    }
    const Mvccpb__KeyValue *kv = l->ev->kv;
    if (!in_range(kv->key.data, kv->key.len, key, kl, c->range_end.data,
                  c->range_end.len)) {
        return false;
    }
    for (size_t i = 0; i < c->n_filters; i++) {
        if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT &&
            l->ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
            return false;
        }
        if (c->filters[i] ==
                ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE &&
            l->ev->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
            return false;
        }
    }
    return true;
}

/* Log index of w's next expected event at or after its cursor, n_log if
 * none. */
static size_t vw_next(const struct fx *f, struct vw *w)
{
    while (w->cursor < f->n_log && !vw_matches(w, &f->log[w->cursor])) {
        w->cursor++;
    }
    return w->cursor;
}

static bool kv_same(const Mvccpb__KeyValue *a, const Mvccpb__KeyValue *b)
{
    return a != NULL && b != NULL && a->key.len == b->key.len &&
           memcmp(a->key.data, b->key.data, a->key.len) == 0 &&
           a->value.len == b->value.len &&
           (a->value.len == 0 ||
            memcmp(a->value.data, b->value.data, a->value.len) == 0) &&
           a->mod_revision == b->mod_revision &&
           a->create_revision == b->create_revision &&
           a->version == b->version;
}

struct vstats
{
    size_t events, responses, fragments, progress, compacted, watchers;
};

/* Print fs's responses [0, upto] (on a validation failure). */
static void dump_stream(struct fstream *fs, size_t upto)
{
    for (size_t i = 0; i <= upto && i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = etcdserverpb__watch_response__unpack(
            NULL, fs->lens[i], fs->msgs[i]);
        print_message("  #%zu id=%lld rev=%lld created=%d canceled=%d "
                      "compact=%lld frag=%d events=%zu", i,
                      (long long)r->watch_id, (long long)r->header->revision,
                      r->created, r->canceled, (long long)r->compact_revision,
                      r->fragment, r->n_events);
        for (size_t e = 0; e < r->n_events; e++) {
            print_message(" %.*s@%lld", (int)r->events[e]->kv->key.len,
                          (const char *)r->events[e]->kv->key.data,
                          (long long)r->events[e]->kv->mod_revision);
        }
        print_message("\n");
        etcdserverpb__watch_response__free_unpacked(r, NULL);
    }
    for (size_t i = 0; i < fs->n_creqs; i++) {
        const Etcdserverpb__WatchCreateRequest *c = &fs->creqs[i];
        print_message("  create#%zu key=%.*s end=%.*s(%zu) start=%lld id=%lld\n",
                      i, (int)c->key.len, (const char *)c->key.data,
                      (int)c->range_end.len, (const char *)c->range_end.data,
                      c->range_end.len, (long long)c->start_revision,
                      (long long)c->watch_id);
    }
}

/* The validator's verdict: "" when the stream is valid. */
static char verr[512];

#define VCHECK(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            snprintf(verr, sizeof verr, __VA_ARGS__);                          \
            goto out;                                                          \
        }                                                                      \
    } while (0)

/* Replay fs's recorded responses against the log; returns false with the
 * reason in verr on the first violation. final: the hub has settled, so
 * every live watcher must have received all it matches. */
static bool check_stream(struct fx *f, struct fstream *fs, bool final,
                         struct vstats *vs)
{
    verr[0] = 0;
    struct vw *ws = calloc(fs->n_creqs + 1, sizeof *ws);
    assert_non_null(ws);
    size_t nw = 0, ci = 0;
    /* a fragment series being reassembled */
    Mvccpb__Event **acc = NULL;
    size_t nacc = 0, capacc = 0;
    int64_t acc_id = 0;
    Etcdserverpb__WatchResponse **accmsgs = NULL;
    size_t naccmsgs = 0;
    int64_t last_progress = 0;
    Etcdserverpb__WatchResponse *r = NULL;
    size_t m;

    for (m = 0; m < fs->n; m++) {
        r = etcdserverpb__watch_response__unpack(NULL, fs->lens[m],
                                                 fs->msgs[m]);
        VCHECK(r != NULL && r->header != NULL, "msg %zu: bad message", m);
        VCHECK(r->header->cluster_id == 0x1111 &&
                   r->header->member_id == 0x2222 &&
                   r->header->raft_term == 7,
               "msg %zu: header not filled", m);
        if (r->created) {
            VCHECK(ci < fs->n_creqs, "msg %zu: created without request", m);
            const Etcdserverpb__WatchCreateRequest *c = &fs->creqs[ci++];
            if (r->canceled) {
                VCHECK(r->watch_id == -1 && strlen(r->cancel_reason) > 0,
                       "msg %zu: bad create error", m);
            } else {
                for (size_t i = 0; i < nw; i++) {
                    VCHECK(ws[i].canceled || ws[i].id != r->watch_id,
                           "msg %zu: id %lld reused while live", m,
                           (long long)r->watch_id);
                }
                VCHECK(c->watch_id == 0 || r->watch_id == c->watch_id,
                       "msg %zu: chosen id not honoured", m);
                struct vw *w = &ws[nw++];
                w->id = r->watch_id;
                w->c = c;
                w->start = c->start_revision ? c->start_revision
                                             : r->header->revision + 1;
                vs->watchers++;
            }
            goto next;
        }
        if (r->n_events == 0 && !r->canceled && !r->fragment &&
            r->compact_revision == 0) {
            /* Progress: nothing that matches any live watcher of this stream
             * at or below its revision may still be unsent. */
            int64_t pr = r->header->revision;
            VCHECK(pr >= last_progress, "msg %zu: progress went back", m);
            VCHECK(nacc == 0, "msg %zu: progress inside fragments", m);
            last_progress = pr;
            vs->progress++;
            for (size_t i = 0; i < nw; i++) {
                if (ws[i].canceled) {
                    continue;
                }
                size_t nx = vw_next(f, &ws[i]);
                VCHECK(nx >= f->n_log || f->log[nx].rev > pr,
                       "msg %zu: progress at %lld ahead of unsent event rev "
                       "%lld of watcher %lld",
                       m, (long long)pr, (long long)f->log[nx].rev,
                       (long long)ws[i].id);
            }
            goto next;
        }
        struct vw *w = NULL;
        for (size_t i = 0; i < nw; i++) {
            if (!ws[i].canceled && ws[i].id == r->watch_id) {
                w = &ws[i];
            }
        }
        VCHECK(w != NULL, "msg %zu: response for unknown/canceled watch id %lld",
               m, (long long)r->watch_id);
        if (r->compact_revision != 0) {
            VCHECK(r->canceled && r->n_events == 0 && nacc == 0,
                   "msg %zu: bad compaction response", m);
            /* it really needed a compacted revision */
            int64_t need = w->last_rev ? w->last_rev + 1 : w->start;
            VCHECK(need < r->compact_revision &&
                       r->compact_revision <= f->compact,
                   "msg %zu: compaction response not due", m);
            w->canceled = true;
            w->compacted = true;
            vs->compacted++;
            goto next;
        }
        if (r->canceled) {
            VCHECK(r->n_events == 0 && nacc == 0,
                   "msg %zu: cancel with events", m);
            w->canceled = true;
            goto next;
        }
        /* events, possibly one fragment of several */
        VCHECK(r->n_events > 0, "msg %zu: empty event response", m);
        if (nacc > 0 || r->fragment) {
            VCHECK(nacc == 0 || acc_id == r->watch_id,
                   "msg %zu: fragments of two watchers interleaved", m);
            VCHECK(w->c->fragment, "msg %zu: fragment not asked for", m);
            acc_id = r->watch_id;
            if (nacc + r->n_events > capacc) {
                capacc = (nacc + r->n_events) * 2;
                acc = realloc(acc, capacc * sizeof *acc);
                assert_non_null(acc);
            }
            memcpy(acc + nacc, r->events, r->n_events * sizeof *acc);
            nacc += r->n_events;
            accmsgs = realloc(accmsgs, (naccmsgs + 1) * sizeof *accmsgs);
            assert_non_null(accmsgs);
            accmsgs[naccmsgs++] = r;
            vs->fragments++;
            bool more = r->fragment;
            r = NULL; /* owned by accmsgs now */
            if (more) {
                continue;
            }
        }
        Mvccpb__Event **evs = nacc ? acc : r->events;
        size_t n = nacc ? nacc : r->n_events;
        int64_t hdr_rev = nacc ? accmsgs[naccmsgs - 1]->header->revision
                               : r->header->revision;
        vs->responses++;
        int64_t resp_last = 0;
        for (size_t i = 0; i < n; i++) {
            size_t nx = vw_next(f, w);
            VCHECK(nx < f->n_log,
                   "msg %zu: watcher %lld got an event it does not match", m,
                   (long long)w->id);
            const struct logev *l = &f->log[nx];
            /* the very next expected event: no gap, no duplicate, in order */
            VCHECK(evs[i]->kv->mod_revision == l->rev,
                   "msg %zu: watcher %lld got rev %lld, expected rev %lld", m,
                   (long long)w->id, (long long)evs[i]->kv->mod_revision,
                   (long long)l->rev);
            VCHECK(evs[i]->type == l->ev->type &&
                       kv_same(evs[i]->kv, l->ev->kv),
                   "msg %zu: watcher %lld: wrong event at rev %lld", m,
                   (long long)w->id, (long long)l->rev);
            if (w->c->prev_kv && l->ev->prev_kv) {
                VCHECK(kv_same(evs[i]->prev_kv, l->ev->prev_kv),
                       "msg %zu: wrong prev_kv", m);
            } else {
                VCHECK(evs[i]->prev_kv == NULL, "msg %zu: unasked prev_kv", m);
            }
            w->last_rev = l->rev;
            resp_last = l->rev;
            w->cursor = nx + 1;
            vs->events++;
        }
        /* atomic: the next expected event is in a later revision */
        size_t nx = vw_next(f, w);
        VCHECK(nx >= f->n_log || f->log[nx].rev != resp_last,
               "msg %zu: watcher %lld: revision %lld split across responses",
               m, (long long)w->id, (long long)resp_last);
        VCHECK(hdr_rev >= resp_last, "msg %zu: header behind its events", m);
        for (size_t i = 0; i < naccmsgs; i++) {
            msg_free(accmsgs[i]);
        }
        naccmsgs = 0;
        nacc = 0;
    next:
        if (r) {
            msg_free(r);
            r = NULL;
        }
    }
    VCHECK(nacc == 0 || !final, "unfinished fragment series");
    if (final) {
        for (size_t i = 0; i < nw; i++) {
            if (ws[i].canceled) {
                continue;
            }
            size_t nx = vw_next(f, &ws[i]);
            VCHECK(nx >= f->n_log, "watcher %lld missed rev %lld",
                   (long long)ws[i].id, (long long)f->log[nx].rev);
        }
    }
out:
    if (r) {
        msg_free(r);
    }
    for (size_t i = 0; i < naccmsgs; i++) {
        msg_free(accmsgs[i]);
    }
    free(accmsgs);
    free(acc);
    free(ws);
    return verr[0] == 0;
}

static void validate(struct fx *f, struct fstream *fs, bool final,
                     struct vstats *vs)
{
    if (!check_stream(f, fs, final, vs)) {
        dump_stream(fs, fs->n);
        fail_msg("validation: %s", verr);
    }
}

/* Last message of fs, unpacked (caller frees). */
static Etcdserverpb__WatchResponse *fs_last(struct fstream *fs)
{
    return fs_msg(fs, fs->n - 1);
}

static bool sanitized(void)
{
    const char *s = getenv("KEEL_SANITIZED");
    return s != NULL && s[0] == '1';
}

/* --------------------------------------------------------------- tests */

static void test_watch_hub_new_needs_callbacks(void **state)
{
    (void)state;
    struct watch_hub_config cfg;
    memset(&cfg, 0, sizeof cfg);
    struct watch_hub *h = NULL;
    assert_int_equal(watch_hub_new(&cfg, &h), KEEL_EINVAL);
    cfg.send = t_send;
    assert_int_equal(watch_hub_new(&cfg, &h), KEEL_EINVAL);
    assert_int_equal(watch_hub_new(NULL, &h), KEEL_EINVAL);
    cfg.send = NULL;
    cfg.send_packed = t_send_packed;
    cfg.read_history = t_read;
    assert_int_equal(watch_hub_new(&cfg, &h), 0);
    watch_hub_free(h);
}

static void test_watch_ids_and_cancel(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fx_put(&f, "a", "1"); /* rev 2 */
    struct wopts o = {.key = "a"};
    /* etcd allocates per stream from 0, skipping ids in use */
    assert_int_equal(fs_watch(fs, &o), 0);
    assert_int_equal(fs_watch(fs, &o), 1);
    o.id = 3;
    assert_int_equal(fs_watch(fs, &o), 3);
    o.id = 5;
    assert_int_equal(fs_watch(fs, &o), 5);
    o.id = 0;
    assert_int_equal(fs_watch(fs, &o), 2);
    assert_int_equal(fs_watch(fs, &o), 4);
    assert_int_equal(fs_watch(fs, &o), 6);
    /* the created response carries the hub revision */
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->header->revision, 2);
    assert_true(r->created);
    msg_free(r);

    /* duplicate client-chosen id */
    o.id = 5;
    size_t n = fs->n;
    assert_int_equal(fs_create(fs, &o), 0);
    assert_int_equal(fs->n, n + 1);
    r = fs_last(fs);
    assert_true(r->created);
    assert_true(r->canceled);
    assert_int_equal(r->watch_id, -1);
    assert_string_equal(r->cancel_reason,
                        "mvcc: duplicate watch ID provided on the WatchStream");
    msg_free(r);
    assert_int_equal(watch_stream_watchers(fs->s), 7);

    /* cancel */
    fs_cancel(fs, 1);
    r = fs_last(fs);
    assert_int_equal(r->watch_id, 1);
    assert_true(r->canceled);
    assert_false(r->created);
    assert_int_equal(r->header->revision, 2);
    msg_free(r);
    assert_int_equal(watch_stream_watchers(fs->s), 6);
    /* unknown id: etcd 3.4 sends nothing */
    n = fs->n;
    fs_cancel(fs, 99);
    fs_cancel(fs, 1);
    assert_int_equal(fs->n, n);
    /* freed ids are not reused by the allocator (etcd: nextID only grows),
     * but a client may choose one again */
    o.id = 0;
    assert_int_equal(fs_watch(fs, &o), 7);
    o.id = 1;
    assert_int_equal(fs_watch(fs, &o), 1);

    /* ids are per stream */
    struct fstream *fs2 = fx_stream(&f);
    o.id = 0;
    assert_int_equal(fs_watch(fs2, &o), 0);

    /* the canceled watcher gets nothing more; the others do */
    fx_put(&f, "a", "2");
    validate(&f, fs, true, &(struct vstats){0});
    validate(&f, fs2, true, &(struct vstats){0});

    /* requests with no union set are ignored */
    Etcdserverpb__WatchRequest empty = ETCDSERVERPB__WATCH_REQUEST__INIT;
    n = fs->n;
    assert_int_equal(watch_stream_recv(fs->s, &empty), 0);
    assert_int_equal(fs->n, n);
    fx_free(&f);
}

static void test_watch_create_errors(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    struct wopts o = {.key = "b", .end = "a"};
    assert_int_equal(fs_create(fs, &o), 0);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_true(r->created && r->canceled);
    assert_int_equal(r->watch_id, -1);
    assert_string_equal(r->cancel_reason, "mvcc: watcher range is empty");
    msg_free(r);
    o.end = "b";
    assert_int_equal(fs_create(fs, &o), 0);
    r = fs_last(fs);
    assert_string_equal(r->cancel_reason, "mvcc: watcher range is empty");
    msg_free(r);

    f.deny_prefix_x = 1;
    struct wopts x = {.key = "xyz"};
    assert_int_equal(fs_create(fs, &x), 0);
    r = fs_last(fs);
    assert_true(r->created && r->canceled);
    assert_int_equal(r->watch_id, -1);
    assert_string_equal(r->cancel_reason, "rpc error: code = PermissionDenied "
                                          "desc = etcdserver: permission denied");
    msg_free(r);
    assert_int_equal(watch_stream_watchers(fs->s), 0);
    /* failed creates do not consume ids */
    struct wopts ok = {.key = "a"};
    assert_int_equal(fs_watch(fs, &ok), 0);
    fx_free(&f);
}

static void test_watch_key_prefix_fromkey(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    int64_t k = fs_watch(fs, &(struct wopts){.key = "foo"});
    int64_t p = fs_watch(fs, &(struct wopts){.key = "foo", .end = "fop"});
    int64_t fk = fs_watch(fs, &(struct wopts){.key = "m", .end_zero = true});
    int64_t all = fs_watch(fs, &(struct wopts){.key = NULL, .end_zero = true});
    int64_t rg = fs_watch(fs, &(struct wopts){.key = "b", .end = "d"});
    const char *keys[] = {"foo", "foo1", "fop", "fo", "m", "z", "a", "b",
                          "c", "czzz", "d", ""};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        if (keys[i][0]) {
            fx_put(&f, keys[i], "v");
        }
    }
    fx_del(&f, "foo1");
    /* count per watcher */
    size_t cnt[8] = {0};
    for (size_t i = 0; i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, i);
        if (!r->created) {
            assert_true(r->watch_id >= 0 && r->watch_id < 8);
            cnt[r->watch_id] += r->n_events;
        }
        msg_free(r);
    }
    assert_int_equal(cnt[k], 1);   /* foo */
    assert_int_equal(cnt[p], 3);   /* foo, foo1, del foo1 */
    assert_int_equal(cnt[fk], 2);  /* m, z */
    assert_int_equal(cnt[all], 12);
    assert_int_equal(cnt[rg], 3);  /* b, c, czzz */
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_start_revision_past(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    for (int i = 0; i < 5; i++) {
        fx_put(&f, "k", "v"); /* revs 2..6 */
    }
    fx_put(&f, "other", "v"); /* 7 */
    int64_t id = fs_watch(fs, &(struct wopts){.key = "k", .start = 3});
    size_t n = fs->n;
    assert_int_equal(watch_stream_unsynced(fs->s), 1);
    assert_int_equal(watch_hub_pending(f.hub), 1);
    /* nothing before the tick: history is read off the notify path */
    assert_int_equal(fs->n, n);
    fx_tick(&f, 10);
    assert_int_equal(fs->n, n + 1);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->watch_id, id);
    assert_int_equal(r->n_events, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(r->events[i]->kv->mod_revision, 3 + i);
    }
    assert_int_equal(r->header->revision, 7);
    msg_free(r);
    assert_int_equal(watch_stream_unsynced(fs->s), 0);
    assert_int_equal(watch_hub_pending(f.hub), 0);
    /* now synced: live events go out from notify */
    fx_put(&f, "k", "w");
    assert_int_equal(fs->n, n + 2);
    /* a negative start revision (etcd 3.4 accepts it) means from the
     * beginning */
    fs_watch(fs, &(struct wopts){.key = "k", .start = -3});
    fx_tick(&f, 10);
    r = fs_last(fs);
    assert_int_equal(r->n_events, 6);
    assert_int_equal(r->events[0]->kv->mod_revision, 2);
    msg_free(r);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_start_revision_future(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fx_put(&f, "k", "v"); /* 2 */
    fs_watch(fs, &(struct wopts){.key = "k", .start = 5});
    size_t n = fs->n;
    assert_int_equal(watch_stream_unsynced(fs->s), 0);
    fx_put(&f, "k", "v"); /* 3 */
    fx_put(&f, "k", "v"); /* 4 */
    fx_tick(&f, 10);
    assert_int_equal(fs->n, n); /* nothing early */
    fx_put(&f, "k", "v"); /* 5 */
    assert_int_equal(fs->n, n + 1);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->events[0]->kv->mod_revision, 5);
    msg_free(r);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_prev_kv_and_filters(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fx_put(&f, "k", "old"); /* 2 */
    int64_t pk = fs_watch(fs, &(struct wopts){.key = "k", .prev_kv = true});
    int64_t nk = fs_watch(fs, &(struct wopts){.key = "k"});
    int64_t np = fs_watch(fs, &(struct wopts){.key = "k", .no_put = true});
    int64_t nd = fs_watch(fs, &(struct wopts){.key = "k", .no_delete = true});
    int64_t hist = fs_watch(
        fs, &(struct wopts){.key = "k", .start = 2, .prev_kv = true,
                            .no_delete = true});
    fx_put(&f, "k", "new"); /* 3 */
    fx_del(&f, "k");        /* 4 */
    fx_settle(&f);
    size_t puts[8] = {0}, dels[8] = {0};
    for (size_t i = 0; i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, i);
        for (size_t e = 0; e < r->n_events; e++) {
            Mvccpb__Event *ev = r->events[e];
            if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
                puts[r->watch_id]++;
            } else {
                dels[r->watch_id]++;
            }
            if (r->watch_id == pk && ev->kv->mod_revision == 3) {
                assert_non_null(ev->prev_kv);
                assert_memory_equal(ev->prev_kv->value.data, "old", 3);
            }
            if (r->watch_id == pk && ev->kv->mod_revision == 4) {
                assert_non_null(ev->prev_kv);
                assert_memory_equal(ev->prev_kv->value.data, "new", 3);
            }
            if (r->watch_id == nk) {
                assert_null(ev->prev_kv);
            }
        }
        msg_free(r);
    }
    assert_int_equal(puts[pk], 1);
    assert_int_equal(dels[pk], 1);
    assert_int_equal(puts[np], 0);
    assert_int_equal(dels[np], 1);
    assert_int_equal(puts[nd], 1);
    assert_int_equal(dels[nd], 0);
    assert_int_equal(puts[hist], 2); /* revs 2 and 3 from history */
    assert_int_equal(dels[hist], 0);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_atomic_txn(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    int64_t pre = fs_watch(fs, &(struct wopts){.key = "/p/", .end = "/p0"});
    int64_t one = fs_watch(fs, &(struct wopts){.key = "/p/b"});
    size_t n = fs->n;
    struct op ops[] = {{false, "/p/a", "1"}, {false, "/p/b", "2"},
                       {false, "/q", "3"}, {false, "/p/c", "4"}};
    fx_txn(&f, ops, 4);
    assert_int_equal(fs->n, n + 2);
    for (size_t i = n; i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, i);
        if (r->watch_id == pre) {
            assert_int_equal(r->n_events, 3);
        } else {
            assert_int_equal(r->watch_id, one);
            assert_int_equal(r->n_events, 1);
        }
        msg_free(r);
    }
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_fragment(void **state)
{
    (void)state;
    struct fx f;
    struct watch_hub_config cfg = {.fragment_bytes = 600};
    fx_init(&f, &cfg);
    struct fstream *fs = fx_stream(&f);
    int64_t fr = fs_watch(fs, &(struct wopts){.key = "a", .end = "b",
                                               .fragment = true,
                                               .prev_kv = true});
    int64_t whole = fs_watch(fs, &(struct wopts){.key = "a", .end = "b"});
    char val[101];
    memset(val, 'v', 100);
    val[100] = 0;
    struct op ops[12];
    char keys[12][24];
    for (int i = 0; i < 12; i++) {
        snprintf(keys[i], sizeof keys[i], "a%02d", i);
        ops[i] = (struct op){false, keys[i], val};
    }
    size_t n = fs->n;
    fx_txn(&f, ops, 12);
    size_t frags = 0, wholes = 0, got = 0;
    for (size_t i = n; i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, i);
        if (r->watch_id == whole) {
            assert_int_equal(r->n_events, 12);
            assert_false(r->fragment);
            wholes++;
        } else {
            assert_int_equal(r->watch_id, fr);
            assert_true(fs->lens[i] < 600 || r->n_events == 1);
            got += r->n_events;
            bool last = got == 12;
            assert_int_equal(r->fragment, !last);
            frags++;
        }
        msg_free(r);
    }
    assert_int_equal(wholes, 1);
    assert_int_equal(got, 12);
    assert_true(frags >= 3);
    /* second write with prev_kv: bigger events, still split and whole */
    fx_txn(&f, ops, 12);
    /* one event larger than the limit is never split further */
    char big[1001];
    memset(big, 'B', 1000);
    big[1000] = 0;
    n = fs->n;
    fx_put(&f, "a77", big);
    for (size_t i = n; i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, i);
        assert_false(r->fragment);
        assert_int_equal(r->n_events, 1);
        msg_free(r);
    }
    /* history batches are fragmented too */
    int64_t late = fs_watch(fs, &(struct wopts){.key = "a", .end = "b",
                                                 .start = 2,
                                                 .fragment = true});
    (void)late;
    fx_settle(&f);
    struct vstats vs = {0};
    validate(&f, fs, true, &vs);
    assert_true(vs.fragments >= 6);
    fx_free(&f);
}

static void test_watch_compacted_start(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    for (int i = 0; i < 6; i++) {
        fx_put(&f, "k", "v"); /* 2..7 */
    }
    fx_compact(&f, 5);
    int64_t bad = fs_watch(fs, &(struct wopts){.key = "k", .start = 3});
    int64_t ok = fs_watch(fs, &(struct wopts){.key = "k", .start = 5});
    fx_tick(&f, 10);
    bool saw_compact = false;
    for (size_t i = 0; i < fs->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, i);
        if (r->compact_revision) {
            assert_int_equal(r->watch_id, bad);
            assert_int_equal(r->compact_revision, 5);
            assert_true(r->canceled);
            assert_int_equal(r->n_events, 0);
            assert_int_equal(r->header->revision, 0); /* as etcd */
            saw_compact = true;
        } else if (r->n_events) {
            assert_int_equal(r->watch_id, ok);
            assert_int_equal(r->events[0]->kv->mod_revision, 5);
        }
        msg_free(r);
    }
    assert_true(saw_compact);
    assert_int_equal(watch_stream_watchers(fs->s), 1);
    /* the compacted watcher gets nothing more */
    fx_put(&f, "k", "v");
    validate(&f, fs, true, &(struct vstats){0});

    /* the storage reports compaction the hub did not hear of yet */
    f.compact = 8;
    int64_t bad2 = fs_watch(fs, &(struct wopts){.key = "k", .start = 6});
    fx_tick(&f, 10);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->watch_id, bad2);
    assert_int_equal(r->compact_revision, 8);
    assert_true(r->canceled);
    msg_free(r);
    fx_free(&f);
}

static void test_watch_slow_stream_catches_up(void **state)
{
    (void)state;
    struct fx f;
    struct watch_hub_config cfg = {.sync_batch_revs = 7};
    fx_init(&f, &cfg);
    struct fstream *slow = fx_stream(&f);
    struct fstream *fast = fx_stream(&f);
    int64_t sid = fs_watch(slow, &(struct wopts){.key = "k", .end = "l"});
    fs_watch(fast, &(struct wopts){.key = "k", .end = "l"});
    slow->limit = 2; /* FULL after two messages in the queue */
    slow->queued = 1;
    for (int i = 0; i < 50; i++) {
        char key[24];
        snprintf(key, sizeof key, "k%d", i % 5);
        fx_put(&f, key, "v");
    }
    /* the slow stream took one event response, then went full; notify went
     * on for the fast one without buffering anything for the slow one */
    assert_int_equal(slow->n, 2);
    assert_true(slow->full);
    assert_false(watch_stream_writable(slow->s));
    assert_int_equal(watch_stream_unsynced(slow->s), 1);
    assert_int_equal(watch_hub_pending(f.hub), 0); /* not writable */
    struct watch_hub_stats st;
    watch_hub_get_stats(f.hub, &st);
    assert_int_equal(st.slow_watchers, 1);
    assert_int_equal(st.went_unsynced, 1);
    /* ticks do nothing for a full stream */
    fx_tick(&f, 10);
    assert_int_equal(slow->n, 2);
    /* revisions 2..51 written, it got 2 only */
    assert_int_equal(watch_stream_lag(slow->s), 49);
    assert_int_equal(watch_stream_lag(fast->s), 0);
    /* drained: batches of at most 7 revisions; writes keep arriving */
    slow->limit = 0;
    fs_drain(slow);
    assert_int_equal(watch_hub_pending(f.hub), 1);
    fx_tick(&f, 10);
    Etcdserverpb__WatchResponse *r = fs_last(slow);
    assert_int_equal(r->watch_id, sid);
    assert_int_equal(r->n_events, 7);
    /* the header never claims more than what was sent */
    assert_int_equal(r->header->revision, r->events[6]->kv->mod_revision);
    msg_free(r);
    assert_int_equal(watch_stream_lag(slow->s), 0); /* 7 batches, 1 tick */
    fx_put(&f, "k1", "during");
    fx_settle(&f);
    assert_int_equal(watch_stream_lag(slow->s), 0);
    fx_put(&f, "k2", "after");
    validate(&f, slow, true, &(struct vstats){0});
    validate(&f, fast, true, &(struct vstats){0});
    watch_hub_get_stats(f.hub, &st);
    assert_int_equal(st.slow_watchers, 0);
    fx_free(&f);
}

/* Catch-up is shared round-robin across streams: a stream with many behind
 * watchers does not starve one with a single watcher, and a tick is bounded
 * in batches and in bytes. */
static void test_watch_catchup_fair_and_bounded(void **state)
{
    (void)state;
    struct fx f;
    struct watch_hub_config cfg = {.sync_watchers_per_tick = 2,
                                   .sync_batch_revs = 5};
    fx_init(&f, &cfg);
    struct fstream *big = fx_stream(&f);
    struct fstream *small = fx_stream(&f);
    for (int i = 0; i < 20; i++) {
        fx_put(&f, "k", "v"); /* revs 2..21 */
    }
    for (int i = 0; i < 10; i++) {
        fs_watch(big, &(struct wopts){.key = "k", .start = 2});
    }
    fs_watch(small, &(struct wopts){.key = "k", .start = 19});
    assert_int_equal(watch_hub_pending(f.hub), 11);
    fx_tick(&f, 10);
    /* one batch each: small (3 revisions) caught up, big did 1 of 10 */
    assert_int_equal(watch_stream_unsynced(small->s), 0);
    assert_int_equal(watch_stream_unsynced(big->s), 10);
    assert_int_equal(f.reads, 2);
    fx_tick(&f, 10);
    assert_int_equal(f.reads, 4); /* two batches per tick, no more */
    /* within a stream, behind watchers take turns too: after 9 batches on
     * the big stream, nine different watchers have had one each */
    for (int i = 0; i < 3; i++) {
        fx_tick(&f, 10);
    }
    size_t got[10] = {0};
    for (size_t i = 0; i < big->n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(big, i);
        if (!r->created) {
            got[r->watch_id]++;
        }
        msg_free(r);
    }
    for (int i = 0; i < 10; i++) {
        assert_int_equal(got[i], i < 9 ? 1 : 0);
    }
    fx_settle(&f);
    validate(&f, big, true, &(struct vstats){0});
    validate(&f, small, true, &(struct vstats){0});
    fx_free(&f);

    /* byte budget: big values, one batch is enough to end the tick */
    struct watch_hub_config cfg2 = {.sync_bytes_per_tick = 1000,
                                    .sync_batch_bytes = 1000};
    fx_init(&f, &cfg2);
    struct fstream *fs = fx_stream(&f);
    char val[801];
    memset(val, 'v', 800);
    val[800] = 0;
    for (int i = 0; i < 6; i++) {
        fx_put(&f, "k", val);
    }
    fs_watch(fs, &(struct wopts){.key = "k", .start = 2});
    fs_watch(fs, &(struct wopts){.key = "k", .start = 2});
    fx_tick(&f, 10);
    assert_int_equal(f.reads, 1);
    fx_settle(&f);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

/* A snapshot replaced the store: the revisions in between were never
 * notified. Synced watchers are replayed from the new store; those whose
 * revisions it no longer has are canceled with compact_revision. */
static void test_watch_restore_replays(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fx_put(&f, "k", "1"); /* 2 */
    int64_t a = fs_watch(fs, &(struct wopts){.key = "k"});
    int64_t fut = fs_watch(fs, &(struct wopts){.key = "k", .start = 50});
    struct fstream *other = fx_stream(&f);
    fs_watch(other, &(struct wopts){.key = "j", .prev_kv = true});
    fx_put(&f, "k", "2"); /* 3: delivered live */
    f.no_notify = true;
    for (int i = 4; i <= 9; i++) {
        fx_put(&f, i % 2 ? "k" : "j", "s");
    }
    f.no_notify = false;
    watch_hub_restore(f.hub, f.rev);
    assert_int_equal(watch_hub_revision(f.hub), 9);
    assert_int_equal(watch_stream_unsynced(fs->s), 2);
    assert_int_equal(watch_stream_unsynced(other->s), 1);
    assert_int_equal(watch_hub_check(f.hub), 0);
    fx_tick(&f, 10);
    assert_int_equal(watch_hub_pending(f.hub), 0);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->watch_id, a);
    assert_int_equal(r->n_events, 3); /* k at 5, 7, 9 */
    msg_free(r);
    fx_put(&f, "j", "live"); /* 10 */
    validate(&f, fs, true, &(struct vstats){0});
    validate(&f, other, true, &(struct vstats){0});

    /* the next snapshot's store is compacted past what they need */
    f.no_notify = true;
    fx_put(&f, "k", "x"); /* 11 */
    fx_put(&f, "k", "y"); /* 12 */
    f.no_notify = false;
    f.compact = 12;
    watch_hub_restore(f.hub, f.rev);
    fx_tick(&f, 10);
    r = fs_last(fs);
    assert_int_equal(r->watch_id, a);
    assert_int_equal(r->compact_revision, 12);
    msg_free(r);
    r = fs_last(other);
    assert_int_equal(r->compact_revision, 12);
    msg_free(r);
    /* the future watcher waits on */
    assert_int_equal(watch_stream_watchers(fs->s), 1);
    assert_int_equal(watch_stream_unsynced(fs->s), 0);
    (void)fut;
    fx_free(&f);
}

/* A stream that stops reading costs the hub nothing per missed event: no
 * buffering, whatever the backlog (etcd buffers victims: #16839). */
static void test_watch_slow_stream_bounded_memory(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    struct fstream *ok = fx_stream(&f);
    for (int i = 0; i < 100; i++) {
        char key[24];
        snprintf(key, sizeof key, "k%02d", i);
        fs_watch(fs, &(struct wopts){.key = key, .prev_kv = i % 2});
        fs_watch(fs, &(struct wopts){.key = "k", .end = "l"});
        fs_watch(ok, &(struct wopts){.key = key});
    }
    char val[201];
    memset(val, 'v', 200);
    val[200] = 0;
    fs->full = true;
    watch_stream_set_writable(fs->s, false);
    /* warm the scratch buffers with a few revisions */
    for (int i = 0; i < 10; i++) {
        struct op ops[] = {{false, "k01", val}, {false, "k02", val}};
        fx_txn(&f, ops, 2);
    }
    size_t before = f.live_bytes;
    int nrev = sanitized() ? 500 : 2000;
    for (int i = 0; i < nrev; i++) {
        char k1[24], k2[24];
        snprintf(k1, sizeof k1, "k%02d", i % 100);
        snprintf(k2, sizeof k2, "k%02d", (i * 7 + 3) % 100);
        struct op ops[] = {{false, k1, val}, {false, k2, val}};
        fx_txn(&f, ops, strcmp(k1, k2) ? 2 : 1);
    }
    /* ~1 MB of events went by; the hub holds none of them */
    print_message("hub heap: %zu bytes before, %zu after %d revisions\n",
                  before, f.live_bytes, nrev);
    assert_true(f.live_bytes <= before + 4096);
    assert_int_equal(watch_stream_unsynced(fs->s), 200);
    fx_settle(&f);
    validate(&f, fs, true, &(struct vstats){0});
    validate(&f, ok, true, &(struct vstats){0});
    fx_free(&f);
}

/* etcd #15220: a progress response must not pass unsent events. */
static void test_watch_progress_never_ahead(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fs_watch(fs, &(struct wopts){.key = "a"});
    fs_watch(fs, &(struct wopts){.key = "b"});
    /* in sync: answered at once with the hub revision */
    fx_put(&f, "a", "1"); /* 2 */
    fs_progress(fs);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->watch_id, -1);
    assert_int_equal(r->header->revision, 2);
    assert_int_equal(r->n_events, 0);
    assert_false(r->created || r->canceled);
    msg_free(r);
    /* the stream fills up; "b" falls behind */
    watch_stream_set_writable(fs->s, false);
    fx_put(&f, "b", "1"); /* 3 */
    fx_put(&f, "c", "1"); /* 4 */
    size_t n = fs->n;
    fs_progress(fs);
    fs_progress(fs);
    assert_int_equal(fs->n, n); /* deferred */
    fx_tick(&f, 10);
    assert_int_equal(fs->n, n);
    fs_drain(fs);
    fx_tick(&f, 10);
    /* the event first, then one progress at 4 */
    assert_int_equal(fs->n, n + 2);
    r = fs_msg(fs, n);
    assert_int_equal(r->n_events, 1);
    assert_int_equal(r->events[0]->kv->mod_revision, 3);
    msg_free(r);
    r = fs_msg(fs, n + 1);
    assert_int_equal(r->watch_id, -1);
    assert_int_equal(r->header->revision, 4);
    msg_free(r);
    /* a stream with no watchers answers at once */
    struct fstream *e = fx_stream(&f);
    fs_progress(e);
    r = fs_last(e);
    assert_int_equal(r->header->revision, 4);
    msg_free(r);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_progress_notify_interval(void **state)
{
    (void)state;
    struct fx f;
    struct watch_hub_config cfg = {.progress_interval_ms = 1000};
    fx_init(&f, &cfg);
    struct fstream *fs = fx_stream(&f);
    int64_t pid = fs_watch(fs, &(struct wopts){.key = "a", .progress = true});
    fs_watch(fs, &(struct wopts){.key = "b"});
    fx_tick(&f, 1); /* arms the stream timer */
    size_t n = fs->n;
    fx_tick(&f, 999);
    assert_int_equal(fs->n, n);
    fx_tick(&f, 101); /* past interval + max jitter (10%) */
    assert_int_equal(fs->n, n + 1);
    Etcdserverpb__WatchResponse *r = fs_last(fs);
    assert_int_equal(r->watch_id, pid);
    assert_int_equal(r->n_events, 0);
    assert_int_equal(r->header->revision, 1);
    msg_free(r);
    /* an event in the interval elides the next notification (etcd) */
    fx_put(&f, "a", "1");
    n = fs->n;
    fx_tick(&f, 1100);
    assert_int_equal(fs->n, n);
    fx_tick(&f, 1100);
    assert_int_equal(fs->n, n + 1);
    /* never while a watcher of the stream is behind */
    watch_stream_set_writable(fs->s, false);
    fx_put(&f, "b", "1");
    n = fs->n;
    fx_tick(&f, 1100);
    fx_tick(&f, 1100);
    assert_int_equal(fs->n, n);
    fs_drain(fs);
    fx_tick(&f, 1);
    fx_tick(&f, 1100);
    assert_int_equal(fs->n, n + 2); /* the event, then the progress */
    r = fs_last(fs);
    assert_int_equal(r->watch_id, pid);
    assert_int_equal(r->header->revision, 3);
    msg_free(r);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

static void test_watch_stream_close_frees_all(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    struct fstream *other = fx_stream(&f);
    for (int i = 0; i < 5; i++) {
        fx_put(&f, "k", "v");
    }
    for (int i = 0; i < 100; i++) {
        char key[24];
        snprintf(key, sizeof key, "k%d", i % 7);
        fs_watch(fs, &(struct wopts){.key = key, .start = i % 3 ? 0 : 2});
        fs_watch(fs, &(struct wopts){.key = key, .end = "z"});
    }
    fs_watch(other, &(struct wopts){.key = "k"});
    struct watch_hub_stats st;
    watch_hub_get_stats(f.hub, &st);
    assert_int_equal(st.watchers, 201);
    assert_int_equal(st.streams, 2);
    assert_true(st.slow_watchers > 0);
    fx_close_stream(fs);
    watch_hub_get_stats(f.hub, &st);
    assert_int_equal(st.watchers, 1);
    assert_int_equal(st.streams, 1);
    assert_int_equal(st.slow_watchers, 0);
    assert_int_equal(watch_hub_pending(f.hub), 0);
    fx_put(&f, "k", "v");
    fx_tick(&f, 10);
    validate(&f, other, true, &(struct vstats){0});
    /* hub_free frees streams still open (ASan checks the rest) */
    for (int i = 0; i < 10; i++) {
        fs_watch(other, &(struct wopts){.key = "q", .end = "r", .start = 2});
    }
    fx_free(&f);
}

static void test_watch_send_failure_kills_stream(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *bad = fx_stream(&f);
    struct fstream *good = fx_stream(&f);
    fs_watch(bad, &(struct wopts){.key = "k"});
    fs_watch(good, &(struct wopts){.key = "k"});
    bad->fail = true;
    fx_put(&f, "k", "1");
    assert_false(watch_stream_writable(bad->s));
    bad->fail = false;
    size_t n = bad->n;
    fx_put(&f, "k", "2");
    fs_progress(bad);
    fx_tick(&f, 10);
    assert_int_equal(bad->n, n); /* nothing more on a dead stream */
    validate(&f, good, true, &(struct vstats){0});
    fx_close_stream(bad);
    fx_free(&f);
}

static void test_watch_history_read_error_retries(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fx_put(&f, "k", "1");
    fx_put(&f, "k", "2");
    fs_watch(fs, &(struct wopts){.key = "k", .start = 1});
    f.fail_reads = 2;
    size_t n = fs->n;
    fx_tick(&f, 10);
    fx_tick(&f, 10);
    assert_int_equal(fs->n, n);
    assert_int_equal(watch_stream_unsynced(fs->s), 1);
    struct watch_hub_stats st;
    watch_hub_get_stats(f.hub, &st);
    assert_int_equal(st.history_errors, 2);
    fx_tick(&f, 10);
    assert_int_equal(fs->n, n + 1);
    assert_int_equal(watch_stream_unsynced(fs->s), 0);
    validate(&f, fs, true, &(struct vstats){0});
    fx_free(&f);
}

/* Fail the Nth allocation of a scenario, for every N: nothing crashes or
 * leaks, requests fail with KEEL_ENOMEM, and once memory is back every
 * watcher that was created is delivered everything (notify never fails: it
 * moves the watchers it could not serve to unsynced). */
static void test_watch_alloc_failures(void **state)
{
    (void)state;
    long nth;
    int enomem_total = 0;
    for (nth = 1; nth < 1000; nth++) {
        struct fx f;
        fx_init(&f, NULL);
        struct fstream *a = fx_stream(&f);
        struct fstream *b = fx_stream(&f);
        fx_put(&f, "k0", "v");
        f.alloc_countdown = nth;
        int enomem = 0;
        for (int i = 0; i < 40; i++) {
            char key[24];
            snprintf(key, sizeof key, "k%d", i % 9);
            struct wopts o = {.key = key};
            if (i % 3 == 1) {
                o.end = "l";
            }
            if (i % 4 == 2) {
                o.start = 2;
            }
            int rv = fs_create(i % 2 ? a : b, &o);
            if (rv != 0) {
                assert_int_equal(rv, KEEL_ENOMEM);
                enomem++;
            }
            struct op ops[] = {{false, key, "x"}, {false, "k1", "y"}};
            fx_txn(&f, ops, 2);
            if (i % 5 == 0) {
                fx_tick(&f, 10);
            }
            assert_int_equal(watch_hub_check(f.hub), 0);
        }
        bool hit = f.alloc_countdown == 0;
        f.alloc_countdown = 0;
        fx_settle(&f);
        validate(&f, a, true, &(struct vstats){0});
        validate(&f, b, true, &(struct vstats){0});
        fx_free(&f);
        enomem_total += enomem;
        if (!hit) {
            break; /* the scenario makes fewer allocations than nth */
        }
    }
    /* every allocation point of the scenario was failed once */
    assert_true(nth > 20 && nth < 1000);
    assert_true(enomem_total > 0);
    print_message("alloc failures: %ld points, %d ENOMEM creates\n", nth - 1,
                  enomem_total);
}

/* 10k watchers on 10 streams, exact keys, prefixes and ranges mixed. */
static void test_watch_fanout_10k(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    int nwatch = sanitized() ? 3000 : 10000;
    int nstreams = 10;
    struct fstream *fs[10];
    for (int i = 0; i < nstreams; i++) {
        fs[i] = fx_stream(&f);
    }
    uint64_t x = 12345;
    char key[32], end[32];
    for (int i = 0; i < nwatch; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int k = (int)((x >> 33) % 500);
        int kind = (int)((x >> 20) % 5);
        struct wopts o = {.key = key};
        snprintf(key, sizeof key, "/r/%03d", k);
        if (kind == 2 || kind == 3) { /* prefix of the hundreds */
            snprintf(key, sizeof key, "/r/%d", k / 100);
            snprintf(end, sizeof end, "/r/%d", k / 100 + 1);
            if (kind == 3) { /* prefix of the tens */
                snprintf(key, sizeof key, "/r/%02d", k / 10);
                snprintf(end, sizeof end, "/r/%02d", k / 10 + 1);
            }
            o.end = end;
        } else if (kind == 4) {
            snprintf(end, sizeof end, "/r/%03d", k + 37);
            o.end = end;
        }
        fs_watch(fs[i % nstreams], &o);
    }
    int ntx = sanitized() ? 100 : 200;
    for (int i = 0; i < ntx; i++) {
        char k1[24], k2[24];
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        snprintf(k1, sizeof k1, "/r/%03d", (int)((x >> 33) % 520));
        snprintf(k2, sizeof k2, "/r/%03d", (int)((x >> 13) % 520));
        struct op ops[] = {{(x >> 7) % 4 == 0, k1, "v"}, {false, k2, "w"}};
        fx_txn(&f, ops, 1 + (int)((x >> 3) % 2));
    }
    struct vstats vs = {0};
    for (int i = 0; i < nstreams; i++) {
        validate(&f, fs[i], true, &vs);
    }
    assert_int_equal(vs.watchers, (size_t)nwatch);
    assert_true(vs.events > (size_t)nwatch); /* a real fan-out happened */
    struct watch_hub_stats st;
    watch_hub_get_stats(f.hub, &st);
    assert_int_equal(st.events_sent, vs.events);
    fx_free(&f);
}

/* The validator is not vacuous: a correct recording passes, and each kind
 * of corruption the hub must never produce (gap, duplicate, reorder, a
 * revision split without fragment, progress ahead of unsent events, events
 * after cancel, a lost tail) is caught. */
struct mut
{
    uint8_t *msgs[32];
    size_t lens[32];
    size_t n;
    uint8_t *owned[8];
    size_t n_owned;
};

static void mut_from(struct mut *m, const struct fstream *fs)
{
    assert_true(fs->n <= 32);
    memset(m, 0, sizeof *m);
    memcpy(m->msgs, fs->msgs, fs->n * sizeof *m->msgs);
    memcpy(m->lens, fs->lens, fs->n * sizeof *m->lens);
    m->n = fs->n;
}

static void mut_insert(struct mut *m, size_t at, uint8_t *buf, size_t len)
{
    assert_true(m->n < 32 && at <= m->n);
    memmove(m->msgs + at + 1, m->msgs + at, (m->n - at) * sizeof *m->msgs);
    memmove(m->lens + at + 1, m->lens + at, (m->n - at) * sizeof *m->lens);
    m->msgs[at] = buf;
    m->lens[at] = len;
    m->n++;
}

static void mut_drop(struct mut *m, size_t at)
{
    memmove(m->msgs + at, m->msgs + at + 1, (m->n - at - 1) * sizeof *m->msgs);
    memmove(m->lens + at, m->lens + at + 1, (m->n - at - 1) * sizeof *m->lens);
    m->n--;
}

static void mut_pack(struct mut *m, size_t at,
                     const Etcdserverpb__WatchResponse *r)
{
    size_t len = etcdserverpb__watch_response__get_packed_size(r);
    uint8_t *buf = xmalloc(len);
    etcdserverpb__watch_response__pack(r, buf);
    assert_true(m->n_owned < 8);
    m->owned[m->n_owned++] = buf;
    mut_insert(m, at, buf, len);
}

static bool mut_check(struct fx *f, struct fstream *fs, struct mut *m)
{
    struct fstream c = *fs;
    c.msgs = m->msgs;
    c.lens = m->lens;
    c.n = m->n;
    struct vstats vs = {0};
    bool ok = check_stream(f, &c, true, &vs);
    for (size_t i = 0; i < m->n_owned; i++) {
        free(m->owned[i]);
    }
    m->n_owned = 0;
    return ok;
}

static void test_watch_validator_catches_corruption(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct fstream *fs = fx_stream(&f);
    fs_watch(fs, &(struct wopts){.key = "p", .end = "q"}); /* 0: A */
    fs_watch(fs, &(struct wopts){.key = "p1"});            /* 1: B */
    struct op ops[] = {{false, "p1", "a"}, {false, "p2", "b"}};
    fx_txn(&f, ops, 2);    /* 2: #2 A[p1 p2], #3 B[p1] */
    fx_put(&f, "p1", "c"); /* 3: #4 A, #5 B */
    fs_progress(fs);       /* #6 progress at 3 */
    fx_put(&f, "p2", "d"); /* 4: #7 A */
    assert_int_equal(fs->n, 8);
    struct mut m;
    mut_from(&m, fs);
    assert_true(mut_check(&f, fs, &m));

    mut_from(&m, fs);
    mut_drop(&m, 4); /* gap */
    assert_false(mut_check(&f, fs, &m));
    assert_non_null(strstr(verr, "rev 3"));

    mut_from(&m, fs);
    mut_insert(&m, 6, m.msgs[5], m.lens[5]); /* duplicate */
    assert_false(mut_check(&f, fs, &m));

    mut_from(&m, fs);
    uint8_t *t = m.msgs[4]; /* reorder */
    size_t tl = m.lens[4];
    m.msgs[4] = m.msgs[7];
    m.lens[4] = m.lens[7];
    m.msgs[7] = t;
    m.lens[7] = tl;
    assert_false(mut_check(&f, fs, &m));

    mut_from(&m, fs);
    mut_drop(&m, 7); /* lost tail */
    assert_false(mut_check(&f, fs, &m));
    assert_non_null(strstr(verr, "missed rev 4"));

    /* A's revision-2 response split in two, without fragment */
    size_t at = 2;
    Etcdserverpb__WatchResponse *r = fs_msg(fs, at);
    if (r->n_events != 2) {
        msg_free(r);
        r = fs_msg(fs, ++at);
    }
    assert_int_equal(r->n_events, 2);
    mut_from(&m, fs);
    mut_drop(&m, at);
    r->n_events = 1;
    mut_pack(&m, at, r);
    r->events++;
    mut_pack(&m, at + 1, r);
    r->events--;
    assert_false(mut_check(&f, fs, &m));
    assert_non_null(strstr(verr, "split"));
    /* ... and with fragment, which A did not ask for */
    mut_from(&m, fs);
    mut_drop(&m, at);
    r->n_events = 1;
    r->fragment = 1;
    mut_pack(&m, at, r);
    r->events++;
    r->fragment = 0;
    mut_pack(&m, at + 1, r);
    r->events--;
    r->n_events = 2;
    assert_false(mut_check(&f, fs, &m));
    msg_free(r);

    /* progress moved before the events of revision 3 */
    mut_from(&m, fs);
    t = m.msgs[6];
    tl = m.lens[6];
    mut_drop(&m, 6);
    mut_insert(&m, 4, t, tl);
    assert_false(mut_check(&f, fs, &m));
    assert_non_null(strstr(verr, "ahead"));

    /* an event after the watcher was canceled */
    Etcdserverpb__WatchResponse c = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    Etcdserverpb__ResponseHeader h = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    h.cluster_id = 0x1111;
    h.member_id = 0x2222;
    h.raft_term = 7;
    h.revision = 3;
    c.header = &h;
    c.watch_id = 0;
    c.canceled = 1;
    mut_from(&m, fs);
    mut_pack(&m, 7, &c);
    assert_false(mut_check(&f, fs, &m));
    assert_non_null(strstr(verr, "canceled"));
    fx_free(&f);
}

/* Differential: the scenario of etcd_watch_probe.py, driven through the
 * hub, must print exactly what etcd 3.4 answered to it (recorded in
 * etcd_watch_probe.etcd-3.4.txt by running the probe against /usr/bin/etcd).
 * The probe's "etcd sync loop" is a tick after each step. */
struct probe
{
    struct fx *f;
    struct fstream *fs;
    size_t seen;
    int64_t base;
    char *out;
    size_t len, cap;
};

static void probe_rel(char *b, size_t n, int64_t base, int64_t rev)
{
    if (rev == 0) {
        snprintf(b, n, "r0");
    } else {
        snprintf(b, n, "r%+lld", (long long)(rev - base));
    }
}

static void probe_printf(struct probe *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char line[1024];
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof line);
    if (p->len + (size_t)n + 1 > p->cap) {
        p->cap = (p->len + (size_t)n + 1) * 2;
        p->out = realloc(p->out, p->cap);
        assert_non_null(p->out);
    }
    memcpy(p->out + p->len, line, (size_t)n + 1);
    p->len += (size_t)n;
}

static int cmp_by_id(const void *a, const void *b)
{
    const Etcdserverpb__WatchResponse *x =
        *(const Etcdserverpb__WatchResponse *const *)a;
    const Etcdserverpb__WatchResponse *y =
        *(const Etcdserverpb__WatchResponse *const *)b;
    if (x->watch_id != y->watch_id) {
        return x->watch_id < y->watch_id ? -1 : 1;
    }
    return x < y ? -1 : (x > y); /* stable: messages are in arrival order */
}

static void probe_show(struct probe *p, const char *tag)
{
    fx_tick(p->f, 100);
    struct fstream *fs = p->fs;
    if (fs->n == p->seen) {
        probe_printf(p, "%s: (nothing)\n", tag);
        return;
    }
    size_t n = fs->n - p->seen;
    Etcdserverpb__WatchResponse **rs = calloc(n, sizeof *rs);
    assert_non_null(rs);
    /* unpack into one array whose order is arrival order, then sort */
    Etcdserverpb__WatchResponse *arr = calloc(n, sizeof *arr);
    assert_non_null(arr);
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__WatchResponse *r = fs_msg(fs, p->seen + i);
        arr[i] = *r;
        free(r); /* the shell only: its fields now live in arr[i] */
        rs[i] = &arr[i];
    }
    qsort(rs, n, sizeof *rs, cmp_by_id);
    for (size_t i = 0; i < n; i++) {
        Etcdserverpb__WatchResponse *r = rs[i];
        char hdr[32], comp[32], evs[512] = "";
        probe_rel(hdr, sizeof hdr, p->base, r->header->revision);
        if (r->n_events > 8) {
            size_t sz = 0;
            for (size_t e = 0; e < r->n_events; e++) {
                sz += mvccpb__event__get_packed_size(r->events[e]);
            }
            probe_printf(p, "%s: id=%lld hdr=%s frag=%d events=%zu size=%zu\n",
                         tag, (long long)r->watch_id, hdr, r->fragment,
                         r->n_events, sz);
            continue;
        }
        if (r->compact_revision) {
            probe_rel(comp, sizeof comp, p->base, r->compact_revision);
        } else {
            snprintf(comp, sizeof comp, "0");
        }
        for (size_t e = 0; e < r->n_events; e++) {
            char er[32];
            const Mvccpb__Event *ev = r->events[e];
            probe_rel(er, sizeof er, p->base, ev->kv->mod_revision);
            size_t l = strlen(evs);
            snprintf(evs + l, sizeof evs - l, "%s%s:%.*s@%s%s", e ? " " : "",
                     ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT ? "PUT" : "DEL",
                     (int)ev->kv->key.len, (const char *)ev->kv->key.data, er,
                     ev->prev_kv ? "+prev" : "");
        }
        probe_printf(p,
                     "%s: id=%lld hdr=%s created=%d canceled=%d compact=%s "
                     "reason='%s' frag=%d events=[%s]\n",
                     tag, (long long)r->watch_id, hdr, r->created, r->canceled,
                     comp, r->cancel_reason, r->fragment, evs);
    }
    for (size_t i = 0; i < n; i++) {
        /* free what unpack allocated under each shell */
        Etcdserverpb__WatchResponse *shell = malloc(sizeof *shell);
        assert_non_null(shell);
        *shell = arr[i];
        etcdserverpb__watch_response__free_unpacked(shell, NULL);
    }
    free(arr);
    free(rs);
    p->seen = fs->n;
}

static void test_watch_matches_etcd_probe(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, NULL);
    struct probe p = {.f = &f};
    p.fs = fx_stream(&f);
    p.base = fx_put(&f, "probe/a", "1");
    fx_tick(&f, 100);
    assert_int_equal(fs_create(p.fs, &(struct wopts){.key = "probe/a"}), 0);
    probe_show(&p, "create auto");
    assert_int_equal(fs_create(p.fs, &(struct wopts){.key = "probe/a"}), 0);
    probe_show(&p, "create auto again");
    fs_create(p.fs, &(struct wopts){.key = "probe/a", .id = 5,
                                    .prev_kv = true});
    probe_show(&p, "create id 5");
    fs_create(p.fs, &(struct wopts){.key = "probe/a", .id = 5});
    probe_show(&p, "create id 5 again");
    fs_create(p.fs, &(struct wopts){.key = "probe/b", .end = "probe/a"});
    probe_show(&p, "create empty range");
    fs_create(p.fs, &(struct wopts){.key = "probe/a", .end = "probe/a"});
    probe_show(&p, "create key == range_end");
    fs_cancel(p.fs, 99);
    probe_show(&p, "cancel unknown id");
    fs_progress(p.fs);
    probe_show(&p, "progress request");
    fx_put(&f, "probe/a", "2");
    probe_show(&p, "put probe/a");
    fs_cancel(p.fs, 1);
    probe_show(&p, "cancel 1");
    fs_create(p.fs, &(struct wopts){.key = "probe/a"});
    probe_show(&p, "create auto after cancel");
    fs_create(p.fs, &(struct wopts){.key = "probe/", .end = "probe0",
                                    .start = p.base, .no_put = true});
    probe_show(&p, "create prefix from base, NOPUT");
    fx_del(&f, "probe/a");
    probe_show(&p, "delete probe/a");
    fx_put(&f, "probe/c", "3");
    fx_compact(&f, p.base + 3);
    fs_create(p.fs, &(struct wopts){.key = "probe/a", .start = p.base + 1});
    probe_show(&p, "create below compaction");
    fs_create(p.fs, &(struct wopts){.key = "probe/c", .start = p.base + 10});
    probe_show(&p, "create in the future");
    /* one revision bigger than max-request-bytes + gRPC overhead (default
     * fragment_bytes) */
    char *big = xmalloc(60001);
    memset(big, 'v', 60000);
    big[60000] = 0;
    char keys[40][16];
    struct op dels[40];
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof keys[i], "probe/f/%02d", i);
        fx_put(&f, keys[i], big);
        dels[i] = (struct op){true, keys[i], NULL};
    }
    free(big);
    fs_create(p.fs, &(struct wopts){.key = "probe/f/", .end = "probe/f0",
                                    .prev_kv = true, .fragment = true});
    fs_create(p.fs, &(struct wopts){.key = "probe/f/", .end = "probe/f0",
                                    .prev_kv = true});
    probe_show(&p, "create fragmenting and whole");
    fx_txn(&f, dels, 40);
    probe_show(&p, "delete 40 big keys");

    FILE *g = fopen(WATCH_PROBE_GOLDEN, "r");
    assert_non_null(g);
    char want[16384];
    size_t wl = fread(want, 1, sizeof want - 1, g);
    fclose(g);
    want[wl] = 0;
    if (strcmp(want, p.out) != 0) {
        print_message("hub:\n%s\netcd 3.4:\n%s\n", p.out, want);
        fail_msg("the hub differs from etcd 3.4 on the probe scenario");
    }
    free(p.out);
    fx_free(&f);
}

/* ---------------------------------------------- randomized validation */

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const char *const rkeys[] = {"a",  "aa", "ab", "b", "ba",
                                    "bb", "c",  "ca", "d", "e"};
#define NRKEYS (sizeof rkeys / sizeof *rkeys)

static void random_run(uint64_t seed, int steps, struct vstats *vs)
{
    uint64_t r = seed * 0x9e3779b97f4a7c15ULL + 1;
    struct fx f;
    struct watch_hub_config cfg = {
        .fragment_bytes = 400,
        .sync_batch_revs = 1 + (int)(rnd(&r) % 10),
        .sync_batch_bytes = 200 + rnd(&r) % 2000,
        .sync_watchers_per_tick = 1 + (int)(rnd(&r) % 8),
        .progress_interval_ms = 100,
        .seed = seed,
    };
    fx_init(&f, &cfg);
    int nstreams = 2 + (int)(rnd(&r) % 3);
    for (int i = 0; i < nstreams; i++) {
        fx_stream(&f)->limit = rnd(&r) % 4;
    }
    char val[256];
    memset(val, 'x', sizeof val - 1);
    val[sizeof val - 1] = 0;
    char ends[8][4];
    for (int step = 0; step < steps; step++) {
        struct fstream *fs = &f.fs[rnd(&r) % f.n_fs];
        int a = (int)(rnd(&r) % 100);
        if (a < 40) {
            struct op ops[3];
            int n = 1 + (int)(rnd(&r) % 3);
            for (int i = 0; i < n; i++) {
                ops[i].key = rkeys[rnd(&r) % NRKEYS];
                ops[i].del = rnd(&r) % 4 == 0;
                ops[i].val = val + sizeof val - 1 - rnd(&r) % 200;
            }
            /* a txn writes a key once (etcd) */
            if (n > 1 && strcmp(ops[0].key, ops[1].key) == 0) {
                n = 1;
            }
            if (n > 2 && (strcmp(ops[2].key, ops[0].key) == 0 ||
                          strcmp(ops[2].key, ops[1].key) == 0)) {
                n = 2;
            }
            fx_txn(&f, ops, (size_t)n);
        } else if (a < 52) {
            struct wopts o = {0};
            const char *k = rkeys[rnd(&r) % NRKEYS];
            char *e = ends[step % 8];
            o.key = k;
            switch (rnd(&r) % 6) {
            case 0:
            case 1:
                break; /* one key */
            case 2: /* prefix */
                snprintf(e, 4, "%s", k);
                e[strlen(e) - 1]++;
                o.end = e;
                break;
            case 3: /* range, sometimes empty (an error) */
                o.end = rkeys[rnd(&r) % NRKEYS];
                break;
            case 4:
                o.end_zero = true;
                break;
            default:
                o.key = NULL;
                o.end_zero = true;
                break;
            }
            int s = (int)(rnd(&r) % 10);
            if (s < 3) {
                int64_t lo = f.compact > 3 ? f.compact - 2 : 1;
                o.start = lo + (int64_t)(rnd(&r) % (uint64_t)(f.rev - lo + 1));
            } else if (s < 5) {
                o.start = f.rev + 1 + (int64_t)(rnd(&r) % 4);
            }
            o.prev_kv = rnd(&r) % 2;
            o.fragment = rnd(&r) % 3 == 0;
            o.progress = rnd(&r) % 3 == 0;
            o.no_put = rnd(&r) % 7 == 0;
            o.no_delete = rnd(&r) % 7 == 0;
            o.id = rnd(&r) % 5 == 0 ? 1 + (int64_t)(rnd(&r) % 20) : 0;
            assert_int_equal(fs_create(fs, &o), 0);
        } else if (a < 57) {
            fs_cancel(fs, (int64_t)(rnd(&r) % 20));
        } else if (a < 62) {
            fs_progress(fs);
        } else if (a < 67) {
            fs->full = true;
            watch_stream_set_writable(fs->s, false);
        } else if (a < 77) {
            fs_drain(fs);
        } else if (a < 80) {
            fs->limit = rnd(&r) % 5;
        } else if (a < 83) {
            int64_t c = f.compact + (int64_t)(rnd(&r) % 4);
            if (c <= f.rev) {
                fx_compact(&f, c);
            }
        } else if (a < 98) {
            fx_tick(&f, 10 + rnd(&r) % 150);
        } else if (a < 99 && rnd(&r) % 3 == 0) {
            /* a snapshot from the leader: revisions never notified */
            f.no_notify = true;
            int n = 1 + (int)(rnd(&r) % 5);
            for (int i = 0; i < n; i++) {
                fx_put(&f, rkeys[rnd(&r) % NRKEYS], "snap");
            }
            f.no_notify = false;
            watch_hub_restore(f.hub, f.rev);
        } else if (a < 99) {
            fx_tick(&f, 10 + rnd(&r) % 150);
        } else {
            /* the client goes away; a new one takes its place */
            validate(&f, fs, false, vs);
            fx_close_stream(fs);
            fs_clear(fs);
            fs->queued = 0;
            fs->full = fs->in_frag = false;
            assert_int_equal(watch_stream_new(f.hub, fs, &fs->s), 0);
        }
        assert_int_equal(watch_hub_check(f.hub), 0);
    }
    fx_settle(&f);
    for (size_t i = 0; i < f.n_fs; i++) {
        validate(&f, &f.fs[i], true, vs);
    }
    fx_free(&f);
}

static void test_watch_random_validator(void **state)
{
    (void)state;
    /* each run of the suite covers other seeds in the second (send_packed)
     * pass; KEEL_WATCH_SEED=n replays one */
    int seeds = sanitized() ? 4 : 16;
    int steps = sanitized() ? 1500 : 3000;
    int first = g_packed ? 1001 : 1;
    const char *env = getenv("KEEL_WATCH_SEED");
    struct vstats vs = {0};
    if (env) {
        random_run(strtoull(env, NULL, 10), steps, &vs);
        return;
    }
    for (int s = first; s < first + seeds; s++) {
        print_message("seed %d\n", s);
        random_run((uint64_t)s, steps, &vs);
    }
    /* the runs exercised what they are meant to */
    assert_true(vs.events > 1000);
    assert_true(vs.fragments > 10);
    assert_true(vs.progress > 10);
    assert_true(vs.compacted > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_hub_new_needs_callbacks),
        cmocka_unit_test(test_watch_ids_and_cancel),
        cmocka_unit_test(test_watch_create_errors),
        cmocka_unit_test(test_watch_key_prefix_fromkey),
        cmocka_unit_test(test_watch_start_revision_past),
        cmocka_unit_test(test_watch_start_revision_future),
        cmocka_unit_test(test_watch_prev_kv_and_filters),
        cmocka_unit_test(test_watch_atomic_txn),
        cmocka_unit_test(test_watch_fragment),
        cmocka_unit_test(test_watch_compacted_start),
        cmocka_unit_test(test_watch_slow_stream_catches_up),
        cmocka_unit_test(test_watch_catchup_fair_and_bounded),
        cmocka_unit_test(test_watch_restore_replays),
        cmocka_unit_test(test_watch_slow_stream_bounded_memory),
        cmocka_unit_test(test_watch_progress_never_ahead),
        cmocka_unit_test(test_watch_progress_notify_interval),
        cmocka_unit_test(test_watch_stream_close_frees_all),
        cmocka_unit_test(test_watch_send_failure_kills_stream),
        cmocka_unit_test(test_watch_history_read_error_retries),
        cmocka_unit_test(test_watch_alloc_failures),
        cmocka_unit_test(test_watch_fanout_10k),
        cmocka_unit_test(test_watch_validator_catches_corruption),
        cmocka_unit_test(test_watch_matches_etcd_probe),
        cmocka_unit_test(test_watch_random_validator),
    };
    /* KEEL_TEST_FILTER=test_watch_fragment runs matching tests only */
    if (getenv("KEEL_TEST_FILTER")) {
        cmocka_set_test_filter(getenv("KEEL_TEST_FILTER"));
    }
    int failed = cmocka_run_group_tests_name("send", tests, NULL, NULL);
    g_packed = true;
    failed += cmocka_run_group_tests_name("send_packed", tests, NULL, NULL);
    return failed;
}
