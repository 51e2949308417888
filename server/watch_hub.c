/*
 * The watch hub (see watch_hub.h for the model and the API contract).
 *
 * Happy path. A client's create request becomes a struct watch_watcher in its
 * stream. If its start revision is not in the past it is *synced*: it goes
 * into the match index and watch_hub_notify() delivers each later revision to
 * it in one response. Otherwise it is *unsynced*: it sits in its stream's
 * unsynced list with next_rev = the first revision it still needs, and
 * watch_hub_tick() replays history for it from storage, a bounded batch per
 * tick, until next_rev passes the hub's revision; then it joins the index.
 *
 *   create(start <= rev) ──▶ UNSYNCED ──tick: read_history, send batch──┐
 *        │                      ▲  │ (caught up)                        │
 *        │  create(start > rev) │  └──────────────▶ SYNCED ◀────────────┘
 *        └──────────────────────┼─────────────────▶  │ notify: send
 *                               └── stream not writable at notify ──┘
 *   UNSYNCED --(next_rev < compacted rev)--> {compact_revision, canceled}, freed
 *
 * Matching (synced watchers only):
 *  - single-key watchers: a seeded hash table key -> watchers, O(1);
 *  - ranges and from-key watchers: a treap keyed by (start, end) and
 *    augmented with the subtree's greatest end, so "which intervals contain
 *    this key" costs O((1 + K) log R) expected, R distinct intervals, K of
 *    them hit (subtrees whose greatest end is <= key, and right subtrees of
 *    nodes starting after key, are never entered); watchers with identical
 *    intervals share a node, as in etcd's watcher_group.
 * notify(rev, n events) therefore costs O(n log R + K log R + M) for M
 * matching watchers, plus one response per matching watcher, independent of
 * the number of watchers that do not match. Insert/remove: O(1) expected for
 * keys, O(log R) for ranges.
 *
 * Failure modes. send() reporting FULL makes the stream not writable: its
 * watchers fall behind at the next matching event (no buffering). send()
 * failing kills the stream (nothing more is sent). An allocation failure in
 * notify moves the affected watchers to unsynced (replayed later). A
 * read_history error leaves the watcher behind until a later tick;
 * KEEL_ECOMPACTED cancels it with compact_revision, as etcd does.
 */
#include "watch_hub.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_arena.h"
#include "keel_err.h"

enum { WKIND_KEY, WKIND_RANGE, WKIND_FROM };

struct wlist
{
    struct watch_watcher *head, *tail;
};

struct watch_watcher
{
    struct watch_stream *stream;
    int64_t id;
    /* Synced: the lowest revision still to deliver (its start revision, or
     * the one after the last delivered). Unsynced: the first revision not yet
     * sent; everything matching below it has been sent. */
    int64_t next_rev;
    struct watch_watcher *id_next;         /* stream id table chain */
    struct watch_watcher *s_prev, *s_next; /* stream: all its watchers */
    struct watch_watcher *g_prev, *g_next; /* index node or unsynced list */
    void *node;                            /* keynode/ivnode when synced */
    struct watch_watcher *t_next;          /* notify: touched list */
    int32_t pair_head, pair_tail;          /* notify: its events */
    uint8_t *key;
    size_t key_len;
    uint8_t *end; /* WKIND_RANGE only */
    size_t end_len;
    uint8_t kind;
    bool synced, prev_kv, fragment, progress_notify, progress_due;
    bool no_put, no_delete, touched, oom;
    uint8_t bytes[]; /* key, then end */
};

struct keynode
{
    struct keynode *next;
    uint64_t hash;
    struct wlist ws;
    size_t len;
    uint8_t key[];
};

struct ivnode
{
    struct ivnode *l, *r;
    const struct ivnode *maxn; /* node with the greatest end in subtree */
    uint64_t prio;
    struct wlist ws;
    uint8_t *start, *end;
    size_t start_len, end_len;
    bool inf; /* from-key: end is +infinity */
    uint8_t bytes[];
};

struct pair
{
    uint32_t ev;
    int32_t next;
};

/* Upper bound of an encoded response without events: header (<= 46 bytes),
 * ids and flags, a cancel_reason (keel_strerror texts are < 200 bytes). The
 * encode buffer never shrinks below it, so control responses never allocate.
 */
#define WATCH_CTRL_BYTES 512

/* A packed event in the hub's evbuf (send_packed mode). */
struct evref
{
    size_t off, len;
};

struct watch_stream
{
    struct watch_hub *hub;
    void *data;
    struct watch_stream *prev, *next;     /* hub: all streams */
    struct watch_stream *r_prev, *r_next; /* hub: ready for catch-up */
    struct watch_watcher *all_head, *all_tail;
    struct wlist unsynced;
    size_t n_watchers, n_unsynced;
    struct watch_watcher **ids; /* chained hash on id */
    size_t ids_nb;
    int64_t next_id; /* etcd: watchStream.nextID */
    uint64_t progress_interval, next_progress;
    bool writable, dead, in_ready, progress_deferred;
};

struct watch_hub
{
    struct watch_hub_config cfg;
    struct watch_heap heap;
    int64_t rev, compact_rev;
    uint64_t now, rng, hash_seed;
    /* match index */
    struct keynode **keys;
    size_t keys_nb, keys_n;
    struct ivnode *ivroot;
    /* streams */
    struct watch_stream *streams;
    struct watch_stream *ready_head, *ready_tail;
    size_t n_streams, n_watchers, n_unsynced, n_pending;
    /* notify scratch, reused between calls */
    struct pair *pairs;
    size_t n_pairs, cap_pairs;
    struct watch_watcher *touched_head, *touched_tail;
    Mvccpb__Event *strip;
    size_t cap_strip;
    Mvccpb__Event **resp_evs;
    size_t cap_resp;
    /* send_packed mode: packed events, the response being encoded */
    uint8_t *evbuf;
    size_t n_evbuf, cap_evbuf;
    struct evref *evfull, *evstrip, *resp_eb;
    size_t cap_evfull, cap_evstrip, cap_resp_eb;
    uint8_t *out;
    size_t cap_out;
    /* catch-up scratch */
    struct keel_arena arena;
    struct watch_hub_stats st;
};

/* ------------------------------------------------------------------ heap */

static void *libc_malloc(void *ctx, size_t n)
{
    (void)ctx;
    return malloc(n);
}
static void *libc_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return realloc(p, n);
}
static void libc_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void *hmalloc(struct watch_hub *h, size_t n)
{
    return h->heap.malloc(h->heap.ctx, n);
}
static void hfree(struct watch_hub *h, void *p)
{
    if (p != NULL) {
        h->heap.free(h->heap.ctx, p);
    }
}
/* Grow *arr to hold at least need elements of size sz. */
static int grow(struct watch_hub *h, void **arr, size_t *cap, size_t need,
                size_t sz)
{
    if (need <= *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        ncap *= 2;
    }
    void *p = h->heap.realloc(h->heap.ctx, *arr, ncap * sz);
    if (p == NULL) {
        return KEEL_ENOMEM;
    }
    *arr = p;
    *cap = ncap;
    return 0;
}

/* ----------------------------------------------------------- small utils */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t x = seed ^ 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        x = (x ^ p[i]) * 0x100000001b3ULL;
    }
    return mix64(x ^ n);
}

static uint64_t rng_next(struct watch_hub *h)
{
    /* splitmix64 */
    uint64_t z = (h->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

static void wlist_push(struct wlist *l, struct watch_watcher *w)
{
    w->g_next = NULL;
    w->g_prev = l->tail;
    if (l->tail) {
        l->tail->g_next = w;
    } else {
        l->head = w;
    }
    l->tail = w;
}

static void wlist_remove(struct wlist *l, struct watch_watcher *w)
{
    if (w->g_prev) {
        w->g_prev->g_next = w->g_next;
    } else {
        l->head = w->g_next;
    }
    if (w->g_next) {
        w->g_next->g_prev = w->g_prev;
    } else {
        l->tail = w->g_prev;
    }
    w->g_prev = w->g_next = NULL;
}

/* ------------------------------------------------- single-key hash index */

static struct keynode *key_find(struct watch_hub *h, const uint8_t *k,
                                size_t n, uint64_t hv)
{
    for (struct keynode *e = h->keys[hv & (h->keys_nb - 1)]; e; e = e->next) {
        if (e->hash == hv && e->len == n && memcmp(e->key, k, n) == 0) {
            return e;
        }
    }
    return NULL;
}

static void key_rehash(struct watch_hub *h)
{
    size_t nb = h->keys_nb * 2;
    struct keynode **nk = hmalloc(h, nb * sizeof *nk);
    if (nk == NULL) {
        return; /* keep the old table: longer chains, still correct */
    }
    memset(nk, 0, nb * sizeof *nk);
    for (size_t i = 0; i < h->keys_nb; i++) {
        struct keynode *e = h->keys[i];
        while (e) {
            struct keynode *nx = e->next;
            e->next = nk[e->hash & (nb - 1)];
            nk[e->hash & (nb - 1)] = e;
            e = nx;
        }
    }
    hfree(h, h->keys);
    h->keys = nk;
    h->keys_nb = nb;
}

static int key_add(struct watch_hub *h, struct watch_watcher *w)
{
    uint64_t hv = hash_bytes(h->hash_seed, w->key, w->key_len);
    struct keynode *e = key_find(h, w->key, w->key_len, hv);
    if (e == NULL) {
        e = hmalloc(h, sizeof *e + w->key_len);
        if (e == NULL) {
            return KEEL_ENOMEM;
        }
        e->hash = hv;
        e->len = w->key_len;
        memcpy(e->key, w->key, w->key_len);
        e->ws.head = e->ws.tail = NULL;
        e->next = h->keys[hv & (h->keys_nb - 1)];
        h->keys[hv & (h->keys_nb - 1)] = e;
        if (++h->keys_n > h->keys_nb) {
            key_rehash(h);
        }
    }
    wlist_push(&e->ws, w);
    w->node = e;
    return 0;
}

static void key_del(struct watch_hub *h, struct watch_watcher *w)
{
    struct keynode *e = w->node;
    wlist_remove(&e->ws, w);
    w->node = NULL;
    if (e->ws.head != NULL) {
        return;
    }
    struct keynode **pp = &h->keys[e->hash & (h->keys_nb - 1)];
    while (*pp != e) {
        pp = &(*pp)->next;
    }
    *pp = e->next;
    h->keys_n--;
    hfree(h, e);
}

/* ------------------------------------------------------ interval treap */

/* Order of ends, +infinity last. */
static int end_cmp(const struct ivnode *a, const struct ivnode *b)
{
    if (a->inf || b->inf) {
        return (int)a->inf - (int)b->inf;
    }
    return bytes_cmp(a->end, a->end_len, b->end, b->end_len);
}

static int iv_cmp(const struct ivnode *a, const struct ivnode *b)
{
    int c = bytes_cmp(a->start, a->start_len, b->start, b->start_len);
    return c != 0 ? c : end_cmp(a, b);
}

static void iv_update(struct ivnode *n)
{
    n->maxn = n;
    if (n->l && end_cmp(n->l->maxn, n->maxn) > 0) {
        n->maxn = n->l->maxn;
    }
    if (n->r && end_cmp(n->r->maxn, n->maxn) > 0) {
        n->maxn = n->r->maxn;
    }
}

static struct ivnode *rot_right(struct ivnode *n)
{
    struct ivnode *l = n->l;
    n->l = l->r;
    l->r = n;
    iv_update(n);
    iv_update(l);
    return l;
}

static struct ivnode *rot_left(struct ivnode *n)
{
    struct ivnode *r = n->r;
    n->r = r->l;
    r->l = n;
    iv_update(n);
    iv_update(r);
    return r;
}

static struct ivnode *iv_insert(struct ivnode *root, struct ivnode *nn)
{
    if (root == NULL) {
        iv_update(nn);
        return nn;
    }
    if (iv_cmp(nn, root) < 0) {
        root->l = iv_insert(root->l, nn);
        if (root->l->prio > root->prio) {
            return rot_right(root);
        }
    } else {
        root->r = iv_insert(root->r, nn);
        if (root->r->prio > root->prio) {
            return rot_left(root);
        }
    }
    iv_update(root);
    return root;
}

static struct ivnode *iv_merge(struct ivnode *a, struct ivnode *b)
{
    if (a == NULL) {
        return b;
    }
    if (b == NULL) {
        return a;
    }
    if (a->prio > b->prio) {
        a->r = iv_merge(a->r, b);
        iv_update(a);
        return a;
    }
    b->l = iv_merge(a, b->l);
    iv_update(b);
    return b;
}

static struct ivnode *iv_remove(struct ivnode *root, struct ivnode *t)
{
    assert(root != NULL);
    if (root == t) {
        return iv_merge(t->l, t->r);
    }
    if (iv_cmp(t, root) < 0) {
        root->l = iv_remove(root->l, t);
    } else {
        root->r = iv_remove(root->r, t);
    }
    iv_update(root);
    return root;
}

static struct ivnode *iv_find(struct ivnode *n, const struct ivnode *probe)
{
    while (n) {
        int c = iv_cmp(probe, n);
        if (c == 0) {
            return n;
        }
        n = c < 0 ? n->l : n->r;
    }
    return NULL;
}

static void watcher_probe(const struct watch_watcher *w, struct ivnode *p)
{
    p->start = w->key;
    p->start_len = w->key_len;
    p->inf = w->kind == WKIND_FROM;
    p->end = w->end;
    p->end_len = w->end_len;
}

static int iv_add(struct watch_hub *h, struct watch_watcher *w)
{
    struct ivnode probe;
    watcher_probe(w, &probe);
    struct ivnode *n = iv_find(h->ivroot, &probe);
    if (n == NULL) {
        n = hmalloc(h, sizeof *n + w->key_len + w->end_len);
        if (n == NULL) {
            return KEEL_ENOMEM;
        }
        memset(n, 0, sizeof *n);
        n->start = n->bytes;
        n->start_len = w->key_len;
        memcpy(n->start, w->key, w->key_len);
        n->end = n->bytes + w->key_len;
        n->end_len = w->end_len;
        if (w->end_len) {
            memcpy(n->end, w->end, w->end_len);
        }
        n->inf = probe.inf;
        n->prio = rng_next(h);
        h->ivroot = iv_insert(h->ivroot, n);
    }
    wlist_push(&n->ws, w);
    w->node = n;
    return 0;
}

static void iv_del(struct watch_hub *h, struct watch_watcher *w)
{
    struct ivnode *n = w->node;
    wlist_remove(&n->ws, w);
    w->node = NULL;
    if (n->ws.head == NULL) {
        h->ivroot = iv_remove(h->ivroot, n);
        hfree(h, n);
    }
}

static void iv_free_all(struct watch_hub *h, struct ivnode *n)
{
    if (n) {
        iv_free_all(h, n->l);
        iv_free_all(h, n->r);
        hfree(h, n);
    }
}

/* ------------------------------------------------ streams: ready, ids */

static void ready_update(struct watch_stream *s)
{
    struct watch_hub *h = s->hub;
    bool want = s->writable && !s->dead && s->n_unsynced > 0;
    if (want == s->in_ready) {
        return;
    }
    if (want) {
        s->r_next = NULL;
        s->r_prev = h->ready_tail;
        if (h->ready_tail) {
            h->ready_tail->r_next = s;
        } else {
            h->ready_head = s;
        }
        h->ready_tail = s;
        h->n_pending += s->n_unsynced;
    } else {
        if (s->r_prev) {
            s->r_prev->r_next = s->r_next;
        } else {
            h->ready_head = s->r_next;
        }
        if (s->r_next) {
            s->r_next->r_prev = s->r_prev;
        } else {
            h->ready_tail = s->r_prev;
        }
        s->r_prev = s->r_next = NULL;
        h->n_pending -= s->n_unsynced;
    }
    s->in_ready = want;
}

/* Move ready stream s to the tail of the ready list. */
static void ready_rotate(struct watch_hub *h, struct watch_stream *s)
{
    assert(s->in_ready && s->r_next != NULL);
    if (s->r_prev) {
        s->r_prev->r_next = s->r_next;
    } else {
        h->ready_head = s->r_next;
    }
    s->r_next->r_prev = s->r_prev;
    s->r_prev = h->ready_tail;
    s->r_next = NULL;
    h->ready_tail->r_next = s;
    h->ready_tail = s;
}

/* Ids may be chosen by the client: seed the hash so they cannot be picked
 * to collide. */
static size_t id_hash(const struct watch_stream *s, int64_t id, size_t nb)
{
    return mix64((uint64_t)id ^ s->hub->hash_seed) & (nb - 1);
}

static size_t id_slot(const struct watch_stream *s, int64_t id)
{
    return id_hash(s, id, s->ids_nb);
}

static struct watch_watcher *id_find(const struct watch_stream *s, int64_t id)
{
    for (struct watch_watcher *w = s->ids[id_slot(s, id)]; w; w = w->id_next) {
        if (w->id == id) {
            return w;
        }
    }
    return NULL;
}

static void id_insert(struct watch_stream *s, struct watch_watcher *w)
{
    struct watch_hub *h = s->hub;
    if (s->n_watchers >= s->ids_nb) {
        size_t nb = s->ids_nb * 2;
        struct watch_watcher **nt = hmalloc(h, nb * sizeof *nt);
        if (nt != NULL) {
            memset(nt, 0, nb * sizeof *nt);
            for (size_t i = 0; i < s->ids_nb; i++) {
                struct watch_watcher *e = s->ids[i];
                while (e) {
                    struct watch_watcher *nx = e->id_next;
                    size_t b = id_hash(s, e->id, nb);
                    e->id_next = nt[b];
                    nt[b] = e;
                    e = nx;
                }
            }
            hfree(h, s->ids);
            s->ids = nt;
            s->ids_nb = nb;
        }
    }
    size_t b = id_slot(s, w->id);
    w->id_next = s->ids[b];
    s->ids[b] = w;
}

static void id_remove(struct watch_stream *s, struct watch_watcher *w)
{
    struct watch_watcher **pp = &s->ids[id_slot(s, w->id)];
    while (*pp != w) {
        pp = &(*pp)->id_next;
    }
    *pp = w->id_next;
}

/* ------------------------------------------------------------ responses */

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* etcdserverpb.ResponseHeader by hand (protobuf-c's generic packer costs more
 * than the rest of a small response): four varint fields, zeros omitted. */
static size_t header_size(const Etcdserverpb__ResponseHeader *hdr)
{
    size_t n = 0;
    n += hdr->cluster_id ? 1 + varint_len(hdr->cluster_id) : 0;
    n += hdr->member_id ? 1 + varint_len(hdr->member_id) : 0;
    n += hdr->revision ? 1 + varint_len((uint64_t)hdr->revision) : 0;
    n += hdr->raft_term ? 1 + varint_len(hdr->raft_term) : 0;
    return n;
}

static uint8_t *put_header(uint8_t *p, const Etcdserverpb__ResponseHeader *hdr)
{
    if (hdr->cluster_id) {
        *p++ = 0x08;
        p = put_varint(p, hdr->cluster_id);
    }
    if (hdr->member_id) {
        *p++ = 0x10;
        p = put_varint(p, hdr->member_id);
    }
    if (hdr->revision) {
        *p++ = 0x18;
        p = put_varint(p, (uint64_t)hdr->revision);
    }
    if (hdr->raft_term) {
        *p++ = 0x20;
        p = put_varint(p, hdr->raft_term);
    }
    return p;
}

/* Pack ev into evbuf. */
static int pack_event(struct watch_hub *h, const Mvccpb__Event *ev,
                      struct evref *ref)
{
    size_t len = mvccpb__event__get_packed_size(ev);
    if (grow(h, (void **)&h->evbuf, &h->cap_evbuf, h->n_evbuf + len, 1) != 0) {
        return KEEL_ENOMEM;
    }
    mvccpb__event__pack(ev, h->evbuf + h->n_evbuf);
    ref->off = h->n_evbuf;
    ref->len = len;
    h->n_evbuf += len;
    return 0;
}

/* Encode r (events from eb) into h->out as etcdserverpb.WatchResponse,
 * fields in number order and proto3 defaults omitted, as protobuf-c packs it.
 * Returns 0 and the length in *len, or KEEL_ENOMEM. */
static int encode(struct watch_hub *h, const Etcdserverpb__WatchResponse *r,
                  const struct evref *eb, size_t *len)
{
    size_t hl = header_size(r->header);
    size_t reason = r->cancel_reason ? strlen(r->cancel_reason) : 0;
    size_t need = 11 + hl + 11 + 2 + 2 + 11 + 11 + reason + 2;
    for (size_t i = 0; i < r->n_events; i++) {
        need += 11 + eb[i].len;
    }
    if (grow(h, (void **)&h->out, &h->cap_out, need, 1) != 0) {
        return KEEL_ENOMEM;
    }
    uint8_t *p = h->out;
    *p++ = 0x0a; /* 1: header */
    p = put_varint(p, hl);
    p = put_header(p, r->header);
    if (r->watch_id != 0) {
        *p++ = 0x10; /* 2: watch_id, int64 (negative: 10 bytes) */
        p = put_varint(p, (uint64_t)r->watch_id);
    }
    if (r->created) {
        *p++ = 0x18;
        *p++ = 1;
    }
    if (r->canceled) {
        *p++ = 0x20;
        *p++ = 1;
    }
    if (r->compact_revision != 0) {
        *p++ = 0x28;
        p = put_varint(p, (uint64_t)r->compact_revision);
    }
    if (reason > 0) {
        *p++ = 0x32;
        p = put_varint(p, reason);
        memcpy(p, r->cancel_reason, reason);
        p += reason;
    }
    if (r->fragment) {
        *p++ = 0x38;
        *p++ = 1;
    }
    for (size_t i = 0; i < r->n_events; i++) {
        *p++ = 0x5a; /* 11: events */
        p = put_varint(p, eb[i].len);
        memcpy(p, h->evbuf + eb[i].off, eb[i].len);
        p += eb[i].len;
    }
    assert((size_t)(p - h->out) <= need);
    *len = (size_t)(p - h->out);
    return 0;
}

/* Send r on s; eb: r's events packed (send_packed mode only). */
static int send_resp(struct watch_stream *s, Etcdserverpb__WatchResponse *r,
                     const struct evref *eb, int64_t hdr_rev)
{
    struct watch_hub *h = s->hub;
    if (s->dead) {
        return KEEL_ECANCELED;
    }
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    if (h->cfg.fill_header) {
        h->cfg.fill_header(h->cfg.ctx, &hdr);
    }
    hdr.revision = hdr_rev;
    r->header = &hdr;
    int rv;
    if (h->cfg.send_packed) {
        assert(eb != NULL || r->n_events == 0);
        size_t len;
        rv = encode(h, r, eb, &len);
        if (rv != 0) {
            /* nothing was sent; the stream is fine */
            r->header = NULL;
            return rv;
        }
        rv = h->cfg.send_packed(h->cfg.ctx, s, s->data, h->out, len);
    } else {
        rv = h->cfg.send(h->cfg.ctx, s, s->data, r);
    }
    r->header = NULL;
    if (rv < 0) {
        /* the transport gave up on the stream (whatever its reason: callers
         * must not take a transport KEEL_ENOMEM for the hub's own) */
        s->dead = true;
        ready_update(s);
        return KEEL_ECANCELED;
    }
    h->st.responses_sent++;
    h->st.events_sent += r->n_events;
    if (rv == WATCH_SEND_FULL) {
        s->writable = false;
        ready_update(s);
    }
    return 0;
}

/* Send evs[0..n) (packed as eb[0..n) in send_packed mode) to w in one
 * response, or, for a fragmenting watcher whose response would reach
 * fragment_bytes, in several with fragment=true on all but the last (etcd:
 * sendFragments, v3rpc/watch.go: a response holds at least one event and
 * stops before the event that would make it reach the limit). */
static int send_events(struct watch_watcher *w, Mvccpb__Event **evs,
                       const struct evref *eb, size_t n, int64_t hdr_rev)
{
    struct watch_stream *s = w->stream;
    struct watch_hub *h = s->hub;
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = w->id;
    r.n_events = n;
    r.events = evs;
    if (eb != NULL) {
        /* Room for the whole response (or every fragment of it) before
         * anything is sent, so that running out of memory never leaves a
         * revision half sent. */
        size_t need = WATCH_CTRL_BYTES;
        for (size_t i = 0; i < n; i++) {
            need += 11 + eb[i].len;
        }
        if (grow(h, (void **)&h->out, &h->cap_out, need, 1) != 0) {
            return KEEL_ENOMEM;
        }
    }
    if (!w->fragment || n < 2) {
        return send_resp(s, &r, eb, hdr_rev);
    }
    /* Sizes as the client will see them: with a filled header. */
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    if (h->cfg.fill_header) {
        h->cfg.fill_header(h->cfg.ctx, &hdr);
    }
    hdr.revision = hdr_rev;
    r.header = &hdr;
    r.n_events = 0;
    size_t base = etcdserverpb__watch_response__get_packed_size(&r);
    r.header = NULL;
    size_t total = base, fragment_field = 2;
    for (size_t i = 0; i < n; i++) {
        size_t es = eb ? eb[i].len : mvccpb__event__get_packed_size(evs[i]);
        total += 1 + varint_len(es) + es;
    }
    size_t limit = h->cfg.fragment_bytes;
    if (total < limit) {
        r.n_events = n;
        return send_resp(s, &r, eb, hdr_rev);
    }
    size_t idx = 0;
    for (;;) {
        size_t start = idx, sz = base + fragment_field;
        while (idx < n) {
            size_t es =
                eb ? eb[idx].len : mvccpb__event__get_packed_size(evs[idx]);
            size_t add = 1 + varint_len(es) + es;
            if (idx > start && sz + add >= limit) {
                break;
            }
            sz += add;
            idx++;
        }
        r.events = evs + start;
        r.n_events = idx - start;
        r.fragment = idx < n;
        int rv = send_resp(s, &r, eb ? eb + start : NULL, hdr_rev);
        if (rv != 0 || !r.fragment) {
            return rv;
        }
    }
}

/* etcd progress response: no events, header = hub revision. Only called when
 * every watcher of s is synced, so nothing older is still unsent. */
static void send_progress(struct watch_stream *s, int64_t id)
{
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = id;
    assert(s->n_unsynced == 0);
    if (send_resp(s, &r, NULL, s->hub->rev) == 0) {
        s->hub->st.progress_sent++;
    }
}

static void send_error(struct watch_stream *s, const char *reason)
{
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = WATCH_INVALID_ID;
    r.created = 1;
    r.canceled = 1;
    r.cancel_reason = (char *)reason;
    send_resp(s, &r, NULL, s->hub->rev);
}

/* -------------------------------------------------- watcher transitions */

static void unsynced_changed(struct watch_stream *s)
{
    ready_update(s);
    if (s->n_unsynced == 0 && s->progress_deferred && !s->dead) {
        s->progress_deferred = false;
        send_progress(s, WATCH_INVALID_ID);
    }
}

static void index_remove(struct watch_hub *h, struct watch_watcher *w)
{
    if (w->kind == WKIND_KEY) {
        key_del(h, w);
    } else {
        iv_del(h, w);
    }
}

static int index_add(struct watch_hub *h, struct watch_watcher *w)
{
    return w->kind == WKIND_KEY ? key_add(h, w) : iv_add(h, w);
}

/* Put w on its stream's unsynced list (w is in neither list). */
static void enqueue_unsynced(struct watch_watcher *w, int64_t from)
{
    struct watch_stream *s = w->stream;
    w->synced = false;
    w->next_rev = from;
    wlist_push(&s->unsynced, w);
    s->n_unsynced++;
    s->hub->n_unsynced++;
    if (s->in_ready) {
        s->hub->n_pending++;
    }
}

static void make_unsynced(struct watch_watcher *w, int64_t from)
{
    struct watch_hub *h = w->stream->hub;
    assert(w->synced);
    index_remove(h, w);
    h->st.went_unsynced++;
    enqueue_unsynced(w, from);
    unsynced_changed(w->stream);
}

static void dequeue_unsynced(struct watch_watcher *w)
{
    struct watch_stream *s = w->stream;
    wlist_remove(&s->unsynced, w);
    s->n_unsynced--;
    s->hub->n_unsynced--;
    if (s->in_ready) {
        s->hub->n_pending--;
    }
}

/* w has been sent everything up to the hub's revision. */
static void make_synced(struct watch_watcher *w)
{
    struct watch_hub *h = w->stream->hub;
    assert(!w->synced);
    dequeue_unsynced(w);
    if (index_add(h, w) != 0) {
        /* Stay behind; retried at the next tick. */
        enqueue_unsynced(w, w->next_rev);
        return;
    }
    w->synced = true;
    unsynced_changed(w->stream);
}

static void watcher_free(struct watch_watcher *w, bool notify_stream)
{
    struct watch_stream *s = w->stream;
    struct watch_hub *h = s->hub;
    if (w->synced) {
        index_remove(h, w);
    } else {
        dequeue_unsynced(w);
    }
    id_remove(s, w);
    if (w->s_prev) {
        w->s_prev->s_next = w->s_next;
    } else {
        s->all_head = w->s_next;
    }
    if (w->s_next) {
        w->s_next->s_prev = w->s_prev;
    } else {
        s->all_tail = w->s_prev;
    }
    s->n_watchers--;
    h->n_watchers--;
    bool was_unsynced = !w->synced;
    hfree(h, w);
    if (notify_stream && was_unsynced) {
        unsynced_changed(s);
    }
}

/* ---------------------------------------------------------------- create */

static const uint8_t zero_byte = 0;

static int create_watcher(struct watch_stream *s,
                          const Etcdserverpb__WatchCreateRequest *c)
{
    struct watch_hub *h = s->hub;
    const uint8_t *key = c->key.data;
    size_t key_len = c->key.len;
    const uint8_t *end = c->range_end.data;
    size_t end_len = c->range_end.len;
    if (key_len == 0) {
        /* etcd: "\x00 is the smallest key" */
        key = &zero_byte;
        key_len = 1;
    }
    int kind = WKIND_RANGE;
    if (end_len == 0) {
        kind = WKIND_KEY;
    } else if (end_len == 1 && end[0] == 0) {
        kind = WKIND_FROM; /* etcd: support >= key queries */
    }

    if (h->cfg.check_range) {
        int rv = h->cfg.check_range(h->cfg.ctx, s->data, key, key_len,
                                    kind == WKIND_KEY ? NULL : end,
                                    kind == WKIND_KEY ? 0 : end_len);
        if (rv != 0) {
            /* etcd sends the gRPC error's text as the cancel reason:
             * "rpc error: code = PermissionDenied desc = etcdserver: ..." */
            enum keel_grpc_code code = keel_err_grpc_code(rv);
            char reason[160];
            snprintf(reason, sizeof reason, "rpc error: code = %s desc = %s",
                     code == KEEL_GRPC_PERMISSION_DENIED ? "PermissionDenied"
                     : code == KEEL_GRPC_UNAUTHENTICATED ? "Unauthenticated"
                     : code == KEEL_GRPC_INVALID_ARGUMENT ? "InvalidArgument"
                                                          : "Unknown",
                     keel_strerror(rv));
            send_error(s, reason);
            return 0;
        }
    }
    /* etcd: mvcc.ErrEmptyWatcherRange */
    if (kind == WKIND_RANGE && bytes_cmp(key, key_len, end, end_len) >= 0) {
        send_error(s, "mvcc: watcher range is empty");
        return 0;
    }
    /* etcd: clientv3.AutoWatchID is 0; ids are per stream. */
    int64_t id = c->watch_id;
    if (id != 0 && id_find(s, id) != NULL) {
        send_error(s, "mvcc: duplicate watch ID provided on the WatchStream");
        return 0;
    }

    size_t elen = kind == WKIND_RANGE ? end_len : 0;
    struct watch_watcher *w = hmalloc(h, sizeof *w + key_len + elen);
    if (w == NULL) {
        return KEEL_ENOMEM;
    }
    memset(w, 0, sizeof *w);
    w->stream = s;
    w->kind = (uint8_t)kind;
    w->key = w->bytes;
    w->key_len = key_len;
    memcpy(w->key, key, key_len);
    w->end = w->bytes + key_len;
    w->end_len = elen;
    if (elen) {
        memcpy(w->end, end, elen);
    }
    w->prev_kv = c->prev_kv;
    w->fragment = c->fragment;
    w->progress_notify = c->progress_notify;
    w->progress_due = true;
    w->pair_head = w->pair_tail = -1;
    for (size_t i = 0; i < c->n_filters; i++) {
        if (c->filters[i] == ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NOPUT) {
            w->no_put = true;
        } else if (c->filters[i] ==
                   ETCDSERVERPB__WATCH_CREATE_REQUEST__FILTER_TYPE__NODELETE) {
            w->no_delete = true;
        }
    }

    /* etcd: start 0 means "from the next revision"; a start revision above
     * the current one is synced and waits (nothing is sent early). */
    int64_t start = c->start_revision;
    bool synced = start == 0 || start > h->rev;
    if (synced) {
        w->next_rev = start > h->rev + 1 ? start : h->rev + 1;
        if (index_add(h, w) != 0) {
            hfree(h, w);
            return KEEL_ENOMEM;
        }
        w->synced = true;
    }
    if (id == 0) {
        while (id_find(s, s->next_id) != NULL) {
            s->next_id++;
        }
        id = s->next_id++;
    }
    w->id = id;
    id_insert(s, w);
    w->s_prev = s->all_tail;
    if (s->all_tail) {
        s->all_tail->s_next = w;
    } else {
        s->all_head = w;
    }
    s->all_tail = w;
    s->n_watchers++;
    h->n_watchers++;

    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = id;
    r.created = 1;
    send_resp(s, &r, NULL, h->rev);

    if (!synced) {
        enqueue_unsynced(w, start < 1 ? 1 : start);
        unsynced_changed(s);
    }
    return 0;
}

/* ------------------------------------------------------------- public */

int watch_hub_new(const struct watch_hub_config *cfg, struct watch_hub **out)
{
    static const struct watch_heap libc_heap = {NULL, libc_malloc,
                                                libc_realloc, libc_free};
    if (cfg == NULL || (cfg->send == NULL && cfg->send_packed == NULL) ||
        cfg->read_history == NULL) {
        return KEEL_EINVAL;
    }
    const struct watch_heap *heap = cfg->heap ? cfg->heap : &libc_heap;
    struct watch_hub *h = heap->malloc(heap->ctx, sizeof *h);
    if (h == NULL) {
        return KEEL_ENOMEM;
    }
    memset(h, 0, sizeof *h);
    h->cfg = *cfg;
    h->heap = *heap;
    h->cfg.heap = &h->heap;
    if (h->cfg.progress_interval_ms == 0) {
        h->cfg.progress_interval_ms = WATCH_PROGRESS_INTERVAL_MS;
    } else if (h->cfg.progress_interval_ms < WATCH_PROGRESS_INTERVAL_MIN_MS) {
        h->cfg.progress_interval_ms = WATCH_PROGRESS_INTERVAL_MIN_MS;
    }
    if (h->cfg.max_request_bytes == 0) {
        h->cfg.max_request_bytes = WATCH_MAX_REQUEST_BYTES;
    }
    if (h->cfg.fragment_bytes == 0) {
        h->cfg.fragment_bytes =
            h->cfg.max_request_bytes + WATCH_GRPC_OVERHEAD_BYTES;
    }
    if (h->cfg.sync_batch_revs <= 0) {
        h->cfg.sync_batch_revs = WATCH_SYNC_BATCH_REVS;
    }
    if (h->cfg.sync_batch_bytes == 0) {
        h->cfg.sync_batch_bytes = h->cfg.max_request_bytes;
    }
    if (h->cfg.sync_watchers_per_tick <= 0) {
        h->cfg.sync_watchers_per_tick = WATCH_SYNC_WATCHERS_PER_TICK;
    }
    if (h->cfg.sync_bytes_per_tick == 0) {
        h->cfg.sync_bytes_per_tick = WATCH_SYNC_BYTES_PER_TICK;
    }
    h->rng = cfg->seed;
    h->hash_seed = mix64(cfg->seed ^ 0x6b65656c77617463ULL);
    h->keys_nb = 64;
    h->keys = hmalloc(h, h->keys_nb * sizeof *h->keys);
    if (h->keys == NULL) {
        heap->free(heap->ctx, h);
        return KEEL_ENOMEM;
    }
    memset(h->keys, 0, h->keys_nb * sizeof *h->keys);
    keel_arena_init(&h->arena, 0);
    if (cfg->send_packed &&
        grow(h, (void **)&h->out, &h->cap_out, WATCH_CTRL_BYTES, 1) != 0) {
        hfree(h, h->keys);
        heap->free(heap->ctx, h);
        return KEEL_ENOMEM;
    }
    if (cfg->current_revision) {
        h->rev = cfg->current_revision(cfg->ctx);
    }
    *out = h;
    return 0;
}

void watch_hub_free(struct watch_hub *h)
{
    if (h == NULL) {
        return;
    }
    while (h->streams) {
        watch_stream_free(h->streams);
    }
    assert(h->keys_n == 0 && h->ivroot == NULL);
    for (size_t i = 0; i < h->keys_nb; i++) {
        struct keynode *e = h->keys[i];
        while (e) {
            struct keynode *nx = e->next;
            hfree(h, e);
            e = nx;
        }
    }
    iv_free_all(h, h->ivroot);
    hfree(h, h->keys);
    hfree(h, h->pairs);
    hfree(h, h->strip);
    hfree(h, h->resp_evs);
    hfree(h, h->evbuf);
    hfree(h, h->evfull);
    hfree(h, h->evstrip);
    hfree(h, h->resp_eb);
    hfree(h, h->out);
    keel_arena_free(&h->arena);
    struct watch_heap heap = h->heap;
    heap.free(heap.ctx, h);
}

int watch_stream_new(struct watch_hub *h, void *data, struct watch_stream **out)
{
    struct watch_stream *s = hmalloc(h, sizeof *s);
    if (s == NULL) {
        return KEEL_ENOMEM;
    }
    memset(s, 0, sizeof *s);
    s->ids_nb = 8;
    s->ids = hmalloc(h, s->ids_nb * sizeof *s->ids);
    if (s->ids == NULL) {
        hfree(h, s);
        return KEEL_ENOMEM;
    }
    memset(s->ids, 0, s->ids_nb * sizeof *s->ids);
    s->hub = h;
    s->data = data;
    s->writable = true;
    /* etcd: GetProgressReportInterval adds rand(interval/10) of jitter so
     * that streams opened together do not report together. */
    uint64_t iv = h->cfg.progress_interval_ms;
    s->progress_interval = iv + (iv >= 10 ? rng_next(h) % (iv / 10) : 0);
    s->next_progress = 0; /* armed at the next tick */
    s->next = h->streams;
    if (h->streams) {
        h->streams->prev = s;
    }
    h->streams = s;
    h->n_streams++;
    *out = s;
    return 0;
}

void watch_stream_free(struct watch_stream *s)
{
    if (s == NULL) {
        return;
    }
    struct watch_hub *h = s->hub;
    s->dead = true;
    ready_update(s);
    while (s->all_head) {
        watcher_free(s->all_head, false);
    }
    if (s->prev) {
        s->prev->next = s->next;
    } else {
        h->streams = s->next;
    }
    if (s->next) {
        s->next->prev = s->prev;
    }
    h->n_streams--;
    hfree(h, s->ids);
    hfree(h, s);
}

int watch_stream_recv(struct watch_stream *s,
                      const Etcdserverpb__WatchRequest *req)
{
    switch (req->request_union_case) {
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST:
        if (req->create_request == NULL) {
            return 0;
        }
        return create_watcher(s, req->create_request);
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST: {
        if (req->cancel_request == NULL) {
            return 0;
        }
        int64_t id = req->cancel_request->watch_id;
        struct watch_watcher *w = id_find(s, id);
        if (w == NULL) {
            return 0; /* etcd 3.4: ErrWatcherNotExist, nothing is sent */
        }
        bool was_behind = !w->synced;
        watcher_free(w, false);
        Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
        r.watch_id = id;
        r.canceled = 1;
        send_resp(s, &r, NULL, s->hub->rev);
        if (was_behind) {
            /* after the cancel response: a deferred progress response must
             * not reach the client while it still thinks w is live */
            unsynced_changed(s);
        }
        return 0;
    }
    case ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_PROGRESS_REQUEST:
        if (s->n_unsynced == 0) {
            send_progress(s, WATCH_INVALID_ID);
        } else {
            /* etcd 3.5 (fix of #15220): answered once the stream caught up;
             * several requests meanwhile get one answer. */
            s->progress_deferred = true;
        }
        return 0;
    default:
        return 0; /* etcd ignores requests it does not know */
    }
}

void watch_stream_set_writable(struct watch_stream *s, bool writable)
{
    s->writable = writable;
    ready_update(s);
}

size_t watch_stream_watchers(const struct watch_stream *s)
{
    return s->n_watchers;
}

size_t watch_stream_unsynced(const struct watch_stream *s)
{
    return s->n_unsynced;
}

bool watch_stream_writable(const struct watch_stream *s)
{
    return s->writable && !s->dead;
}

int64_t watch_stream_lag(const struct watch_stream *s)
{
    int64_t lag = 0;
    for (const struct watch_watcher *w = s->unsynced.head; w; w = w->g_next) {
        int64_t l = s->hub->rev - (w->next_rev - 1);
        if (l > lag) {
            lag = l;
        }
    }
    return lag;
}

int64_t watch_hub_revision(const struct watch_hub *h)
{
    return h->rev;
}

size_t watch_hub_pending(const struct watch_hub *h)
{
    return h->n_pending;
}

void watch_hub_get_stats(const struct watch_hub *h, struct watch_hub_stats *st)
{
    *st = h->st;
    st->streams = h->n_streams;
    st->watchers = h->n_watchers;
    st->slow_watchers = h->n_unsynced;
}

void watch_hub_compacted(struct watch_hub *h, int64_t rev)
{
    if (rev > h->compact_rev) {
        h->compact_rev = rev;
    }
}

void watch_hub_restore(struct watch_hub *h, int64_t rev)
{
    assert(rev >= h->rev);
    if (rev > h->rev) {
        h->rev = rev;
    }
    for (struct watch_stream *s = h->streams; s; s = s->next) {
        bool moved = false;
        for (struct watch_watcher *w = s->all_head; w; w = w->s_next) {
            if (w->synced) {
                /* next_rev is already the first revision it lacks (or its
                 * future start revision) */
                index_remove(h, w);
                enqueue_unsynced(w, w->next_rev);
                h->st.went_unsynced++;
                moved = true;
            }
        }
        if (moved) {
            unsynced_changed(s);
        }
    }
}

/* --------------------------------------------------------------- notify */

static bool filtered(const struct watch_watcher *w, const Mvccpb__Event *ev)
{
    if (ev->type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
        return w->no_put;
    }
    return w->no_delete;
}

static void match(struct watch_hub *h, struct watch_watcher *w, int64_t rev,
                  const Mvccpb__Event *ev, uint32_t i)
{
    if (rev < w->next_rev || filtered(w, ev)) {
        return;
    }
    if (!w->touched) {
        w->touched = true;
        w->oom = false;
        w->pair_head = w->pair_tail = -1;
        w->t_next = NULL;
        if (h->touched_tail) {
            h->touched_tail->t_next = w;
        } else {
            h->touched_head = w;
        }
        h->touched_tail = w;
    }
    if (w->oom) {
        return;
    }
    if (h->n_pairs >= INT32_MAX) {
        w->oom = true; /* replayed from storage instead */
        return;
    }
    if (grow(h, (void **)&h->pairs, &h->cap_pairs, h->n_pairs + 1,
             sizeof *h->pairs) != 0) {
        w->oom = true;
        return;
    }
    int32_t p = (int32_t)h->n_pairs++;
    h->pairs[p].ev = i;
    h->pairs[p].next = -1;
    if (w->pair_tail >= 0) {
        h->pairs[w->pair_tail].next = p;
    } else {
        w->pair_head = p;
    }
    w->pair_tail = p;
}

struct stab_ctx
{
    struct watch_hub *h;
    int64_t rev;
    const Mvccpb__Event *ev;
    uint32_t i;
    const uint8_t *key;
    size_t key_len;
};

/* Visit every interval containing key. A subtree whose greatest end is <= key
 * has no such interval; right subtrees start >= the node's start. */
static void iv_stab(const struct ivnode *n, const struct stab_ctx *c)
{
    while (n) {
        const struct ivnode *m = n->maxn;
        if (!m->inf && bytes_cmp(m->end, m->end_len, c->key, c->key_len) <= 0) {
            return;
        }
        iv_stab(n->l, c);
        if (bytes_cmp(n->start, n->start_len, c->key, c->key_len) > 0) {
            return;
        }
        if (n->inf || bytes_cmp(n->end, n->end_len, c->key, c->key_len) > 0) {
            for (struct watch_watcher *w = n->ws.head; w; w = w->g_next) {
                match(c->h, w, c->rev, c->ev, c->i);
            }
        }
        n = n->r;
    }
}

void watch_hub_notify(struct watch_hub *h, int64_t rev,
                      Mvccpb__Event *const *events, size_t n)
{
    assert(rev > h->rev);
    if (rev > h->rev) {
        h->rev = rev;
    }
    h->n_pairs = 0;
    h->touched_head = h->touched_tail = NULL;

    for (size_t i = 0; i < n; i++) {
        const Mvccpb__Event *ev = events[i];
        const uint8_t *k = ev->kv->key.data;
        size_t kl = ev->kv->key.len;
        uint64_t hv = hash_bytes(h->hash_seed, k, kl);
        struct keynode *e = key_find(h, k, kl, hv);
        if (e) {
            for (struct watch_watcher *w = e->ws.head; w; w = w->g_next) {
                match(h, w, rev, ev, (uint32_t)i);
            }
        }
        if (h->ivroot) {
            struct stab_ctx c = {h, rev, ev, (uint32_t)i, k, kl};
            iv_stab(h->ivroot, &c);
        }
    }
    if (h->touched_head == NULL) {
        return;
    }

    /* Shallow copies without prev_kv for watchers that did not ask for it. */
    bool strip_ok = grow(h, (void **)&h->strip, &h->cap_strip, n,
                         sizeof *h->strip) == 0;
    if (strip_ok) {
        for (size_t i = 0; i < n; i++) {
            h->strip[i] = *events[i];
            h->strip[i].prev_kv = NULL;
        }
    }
    /* send_packed mode: each event packed once (twice if it has a prev_kv
     * some watcher does not want), shared by every response. */
    bool packed = h->cfg.send_packed != NULL;
    bool pack_ok = true;
    if (packed) {
        h->n_evbuf = 0;
        pack_ok = strip_ok &&
                  grow(h, (void **)&h->evfull, &h->cap_evfull, n,
                       sizeof *h->evfull) == 0 &&
                  grow(h, (void **)&h->evstrip, &h->cap_evstrip, n,
                       sizeof *h->evstrip) == 0;
        for (size_t i = 0; pack_ok && i < n; i++) {
            pack_ok = pack_event(h, events[i], &h->evfull[i]) == 0;
            if (pack_ok && events[i]->prev_kv) {
                pack_ok = pack_event(h, &h->strip[i], &h->evstrip[i]) == 0;
            } else {
                h->evstrip[i] = h->evfull[i];
            }
        }
    }

    struct watch_watcher *w = h->touched_head;
    while (w) {
        struct watch_watcher *nx = w->t_next;
        struct watch_stream *s = w->stream;
        w->touched = false;
        w->t_next = NULL;
        if (s->dead) {
            w = nx;
            continue;
        }
        size_t cnt = 0;
        for (int32_t p = w->pair_head; p >= 0; p = h->pairs[p].next) {
            cnt++;
        }
        bool ok = !w->oom && (w->prev_kv || strip_ok) && pack_ok &&
                  grow(h, (void **)&h->resp_evs, &h->cap_resp, cnt,
                       sizeof *h->resp_evs) == 0 &&
                  (!packed || grow(h, (void **)&h->resp_eb, &h->cap_resp_eb,
                                   cnt, sizeof *h->resp_eb) == 0);
        if (!s->writable || !ok) {
            /* No buffering: the watcher is replayed from storage. */
            make_unsynced(w, rev);
            w = nx;
            continue;
        }
        cnt = 0;
        for (int32_t p = w->pair_head; p >= 0; p = h->pairs[p].next) {
            uint32_t i = h->pairs[p].ev;
            if (packed) {
                h->resp_eb[cnt] = w->prev_kv ? h->evfull[i] : h->evstrip[i];
            }
            h->resp_evs[cnt++] = w->prev_kv ? events[i] : &h->strip[i];
        }
        if (send_events(w, h->resp_evs, packed ? h->resp_eb : NULL, cnt,
                        rev) == KEEL_ENOMEM) {
            make_unsynced(w, rev);
            w = nx;
            continue;
        }
        w->next_rev = rev + 1;
        w->progress_due = false;
        w = nx;
    }
    h->touched_head = h->touched_tail = NULL;
}

/* ------------------------------------------------------------- catch-up */

struct catchup
{
    struct watch_hub *h;
    struct watch_watcher *w;
    int64_t from, to;
    int64_t cur_rev;  /* revision of the last event taken */
    int64_t stop_rev; /* first revision not taken, 0 if all read */
    int nrevs;
    size_t bytes, n, cap;
    Mvccpb__Event **evs;
    bool oom;
};

static Mvccpb__KeyValue *kv_copy(struct keel_arena *a,
                                 const Mvccpb__KeyValue *kv)
{
    Mvccpb__KeyValue *c = keel_arena_alloc(a, sizeof *c);
    if (c == NULL) {
        return NULL;
    }
    mvccpb__key_value__init(c);
    c->key.len = kv->key.len;
    c->key.data = keel_arena_dup(a, kv->key.data, kv->key.len);
    c->value.len = kv->value.len;
    c->value.data = keel_arena_dup(a, kv->value.data, kv->value.len);
    c->create_revision = kv->create_revision;
    c->mod_revision = kv->mod_revision;
    c->version = kv->version;
    c->lease = kv->lease;
    if (c->key.data == NULL || c->value.data == NULL) {
        return NULL;
    }
    return c;
}

static int catchup_emit(void *arg, const Mvccpb__Event *ev)
{
    struct catchup *c = arg;
    if (c->oom || ev->kv == NULL) {
        return c->oom;
    }
    int64_t r = ev->kv->mod_revision;
    if (r < c->from || r > c->to || r < c->cur_rev) {
        return 0; /* outside what was asked: ignore */
    }
    if (r != c->cur_rev) {
        /* A batch ends only between revisions (atomicity). */
        if (c->nrevs > 0 && (c->nrevs >= c->h->cfg.sync_batch_revs ||
                             c->bytes >= c->h->cfg.sync_batch_bytes)) {
            c->stop_rev = r;
            return 1;
        }
        c->nrevs++;
        c->cur_rev = r;
    }
    if (filtered(c->w, ev)) {
        return 0;
    }
    struct keel_arena *a = &c->h->arena;
    Mvccpb__Event *e = keel_arena_alloc(a, sizeof *e);
    if (e == NULL) {
        c->oom = true;
        return 1;
    }
    mvccpb__event__init(e);
    e->type = ev->type;
    e->kv = kv_copy(a, ev->kv);
    if (c->w->prev_kv && ev->prev_kv) {
        e->prev_kv = kv_copy(a, ev->prev_kv);
        if (e->prev_kv == NULL) {
            c->oom = true;
        }
    }
    if (e->kv == NULL || c->oom ||
        grow(c->h, (void **)&c->evs, &c->cap, c->n + 1, sizeof *c->evs) != 0) {
        c->oom = true;
        return 1;
    }
    c->evs[c->n++] = e;
    /* an estimate is enough for a budget */
    c->bytes += 16 + e->kv->key.len + e->kv->value.len;
    if (e->prev_kv) {
        c->bytes += 16 + e->prev_kv->key.len + e->prev_kv->value.len;
    }
    return 0;
}

static void send_compacted(struct watch_watcher *w, int64_t crev)
{
    struct watch_stream *s = w->stream;
    Etcdserverpb__WatchResponse r = ETCDSERVERPB__WATCH_RESPONSE__INIT;
    r.watch_id = w->id;
    r.compact_revision = crev;
    r.canceled = 1;
    /* etcd sends this with the mvcc response's Revision, which is 0 for a
     * compaction notice (watcher_group.go chooseAll). */
    send_resp(s, &r, NULL, 0);
}

enum { CU_BEHIND, CU_SYNCED, CU_FREED, CU_ERROR };

/* One bounded batch of history for unsynced watcher w of a writable stream;
 * adds the bytes of events sent to *bytes. */
static int catch_up(struct watch_hub *h, struct watch_watcher *w,
                    size_t *bytes)
{
    if (h->compact_rev > 0 && w->next_rev < h->compact_rev) {
        send_compacted(w, h->compact_rev);
        watcher_free(w, true);
        return CU_FREED;
    }
    if (w->next_rev > h->rev) {
        make_synced(w);
        return w->synced ? CU_SYNCED : CU_BEHIND;
    }
    struct catchup c;
    memset(&c, 0, sizeof c);
    c.h = h;
    c.w = w;
    c.from = w->next_rev;
    c.to = h->rev;
    c.evs = h->resp_evs;
    c.cap = h->cap_resp;
    keel_arena_reset(&h->arena);
    int64_t crev = 0;
    const uint8_t *end = NULL;
    size_t end_len = 0;
    if (w->kind == WKIND_RANGE) {
        end = w->end;
        end_len = w->end_len;
    } else if (w->kind == WKIND_FROM) {
        end = &zero_byte;
        end_len = 1;
    }
    h->st.history_reads++;
    int rv = h->cfg.read_history(h->cfg.ctx, w->key, w->key_len, end, end_len,
                                 c.from, c.to, w->prev_kv, catchup_emit, &c,
                                 &crev);
    h->resp_evs = c.evs; /* may have grown */
    h->cap_resp = c.cap;
    if (rv == KEEL_ECOMPACTED) {
        if (crev > h->compact_rev) {
            h->compact_rev = crev;
        }
        send_compacted(w, crev > 0 ? crev : h->compact_rev);
        watcher_free(w, true);
        return CU_FREED;
    }
    if (rv != 0 || c.oom) {
        h->st.history_errors += rv != 0;
        return CU_ERROR;
    }
    /* Everything below next is now sent: the header says so and no more. */
    int64_t next = c.stop_rev ? c.stop_rev : c.to + 1;
    const struct evref *eb = NULL;
    if (c.n > 0 && h->cfg.send_packed) {
        if (grow(h, (void **)&h->resp_eb, &h->cap_resp_eb, c.n,
                 sizeof *h->resp_eb) != 0) {
            return CU_ERROR;
        }
        h->n_evbuf = 0;
        for (size_t i = 0; i < c.n; i++) {
            if (pack_event(h, c.evs[i], &h->resp_eb[i]) != 0) {
                return CU_ERROR;
            }
        }
        eb = h->resp_eb;
    }
    *bytes += c.bytes;
    if (c.n > 0 && send_events(w, c.evs, eb, c.n, next - 1) == KEEL_ENOMEM) {
        return CU_ERROR;
    }
    if (c.n > 0) {
        w->progress_due = false;
    }
    w->next_rev = next;
    if (c.stop_rev == 0 && !w->stream->dead) {
        make_synced(w);
        return w->synced ? CU_SYNCED : CU_BEHIND;
    }
    return CU_BEHIND;
}

static void progress_tick(struct watch_hub *h, struct watch_stream *s)
{
    if (s->next_progress == 0) {
        s->next_progress = h->now + s->progress_interval;
        return;
    }
    if (h->now < s->next_progress) {
        return;
    }
    s->next_progress = h->now + s->progress_interval;
    /* etcd sendLoop: a watcher that got no event since the last tick gets a
     * progress response (only if synced: watchable_store.progress). keel asks
     * more: every watcher of the stream synced, and a writable stream. */
    bool can = s->n_unsynced == 0 && s->writable && !s->dead;
    for (struct watch_watcher *w = s->all_head; w; w = w->s_next) {
        if (!w->progress_notify) {
            continue;
        }
        if (can && w->progress_due) {
            send_progress(s, w->id);
        }
        w->progress_due = true;
    }
}

void watch_hub_tick(struct watch_hub *h, uint64_t now_ms)
{
    h->now = now_ms;
    int budget = h->cfg.sync_watchers_per_tick;
    size_t bytes = 0;
    while (budget-- > 0 && bytes < h->cfg.sync_bytes_per_tick &&
           h->ready_head) {
        struct watch_stream *s = h->ready_head;
        struct watch_watcher *w = s->unsynced.head;
        assert(w != NULL);
        int st = catch_up(h, w, &bytes);
        if ((st == CU_BEHIND || st == CU_ERROR) && s->unsynced.head == w &&
            s->unsynced.tail != w) {
            /* Round-robin among the stream's behind watchers. */
            wlist_remove(&s->unsynced, w);
            wlist_push(&s->unsynced, w);
        }
        if (s->in_ready && h->ready_tail != s) {
            /* Round-robin among streams. */
            ready_rotate(h, s);
        }
        if (st == CU_ERROR) {
            break; /* storage trouble: retry at the next tick */
        }
    }
    for (struct watch_stream *s = h->streams; s; s = s->next) {
        progress_tick(h, s);
    }
}

/* ------------------------------------------------------------ invariants */

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            return KEEL_ECORRUPT;                                              \
        }                                                                      \
    } while (0)

/* Treap order, heap property and max-end augmentation; counts nodes and
 * the watchers in them. */
static int check_iv(const struct ivnode *n, size_t *nodes, size_t *watchers)
{
    if (n == NULL) {
        return 0;
    }
    const struct ivnode *m = n;
    if (n->l) {
        CHECK(iv_cmp(n->l, n) < 0 && n->l->prio <= n->prio);
        CHECK(check_iv(n->l, nodes, watchers) == 0);
        if (end_cmp(n->l->maxn, m) > 0) {
            m = n->l->maxn;
        }
    }
    if (n->r) {
        CHECK(iv_cmp(n->r, n) > 0 && n->r->prio <= n->prio);
        CHECK(check_iv(n->r, nodes, watchers) == 0);
        if (end_cmp(n->r->maxn, m) > 0) {
            m = n->r->maxn;
        }
    }
    CHECK(end_cmp(n->maxn, m) == 0);
    CHECK(n->ws.head != NULL);
    for (const struct watch_watcher *w = n->ws.head; w; w = w->g_next) {
        CHECK(w->synced && w->node == n && w->kind != WKIND_KEY);
        (*watchers)++;
    }
    (*nodes)++;
    return 0;
}

int watch_hub_check(const struct watch_hub *h)
{
    size_t watchers = 0, unsynced = 0, pending = 0, streams = 0, synced = 0;
    for (const struct watch_stream *s = h->streams; s; s = s->next) {
        streams++;
        size_t sw = 0, su = 0;
        for (const struct watch_watcher *w = s->all_head; w; w = w->s_next) {
            CHECK(w->stream == s && !w->touched);
            CHECK(id_find(s, w->id) == w);
            sw++;
            if (w->synced) {
                synced++;
                CHECK(w->node != NULL);
            } else {
                CHECK(w->node == NULL);
            }
        }
        for (const struct watch_watcher *w = s->unsynced.head; w;
             w = w->g_next) {
            CHECK(!w->synced && w->stream == s);
            su++;
        }
        CHECK(sw == s->n_watchers && su == s->n_unsynced);
        CHECK(s->in_ready == (s->writable && !s->dead && su > 0));
        CHECK(!(s->progress_deferred && su == 0 && !s->dead));
        watchers += sw;
        unsynced += su;
        if (s->in_ready) {
            pending += su;
        }
    }
    CHECK(streams == h->n_streams && watchers == h->n_watchers);
    CHECK(unsynced == h->n_unsynced && pending == h->n_pending);
    size_t ready = 0;
    for (const struct watch_stream *s = h->ready_head; s; s = s->r_next) {
        CHECK(s->in_ready);
        CHECK(s->r_next ? s->r_next->r_prev == s : h->ready_tail == s);
        ready++;
    }
    size_t keys = 0, indexed = 0;
    for (size_t i = 0; i < h->keys_nb; i++) {
        for (const struct keynode *e = h->keys[i]; e; e = e->next) {
            CHECK((e->hash & (h->keys_nb - 1)) == i && e->ws.head != NULL);
            for (const struct watch_watcher *w = e->ws.head; w;
                 w = w->g_next) {
                CHECK(w->synced && w->node == e && w->kind == WKIND_KEY);
                indexed++;
            }
            keys++;
        }
    }
    CHECK(keys == h->keys_n);
    size_t nodes = 0;
    CHECK(check_iv(h->ivroot, &nodes, &indexed) == 0);
    CHECK(indexed == synced);
    (void)ready;
    return 0;
}
