/*
 * The raft log: storage (persisted) + the unstable tail (etcd's raftLog and
 * unstable, one struct here).
 *
 * Happy path: the leader or a follower appends to the unstable tail; the
 * Ready hands the tail out; once the caller persisted it, raft__log_stable_to
 * drops it from memory (storage has it now). A snapshot received from the
 * leader replaces the whole log (raft__log_restore) and travels the same way.
 *
 * Rules from the paper that live here (raft-correctness.md §4):
 * - truncate only on a real conflict (same index, different term): a
 *   duplicate or reordered MsgApp whose entries all match changes nothing;
 * - a follower commits min(leader commit, last *new* index), never beyond
 *   what the message proved matches;
 * - committed entries are handed out for apply only once they are persisted
 *   locally (raft__log_max_apply), so applied <= durable after a crash.
 */
#include <assert.h>
#include <string.h>

#include "raft_impl.h"

void raft__oom(void)
{
    /* See raft_impl.h: allocation failure mid-transition is fatal. */
    __builtin_trap();
}

void *raft__malloc(const struct raft_heap *h, size_t n)
{
    void *p = h->malloc(h->ctx, n);
    if (p == NULL && n > 0) {
        raft__oom();
    }
    return p;
}

void *raft__realloc(const struct raft_heap *h, void *p, size_t n)
{
    void *q = h->realloc(h->ctx, p, n);
    if (q == NULL && n > 0) {
        raft__oom();
    }
    return q;
}

void raft__free(const struct raft_heap *h, void *p)
{
    if (p != NULL) {
        h->free(h->ctx, p);
    }
}

uint64_t raft__entry_size(const struct raft_entry *e)
{
    return e->data != NULL ? e->data->len : 0;
}

void raft__ents_push(const struct raft_heap *h,
                     struct raft__ents *v,
                     const struct raft_entry *e)
{
    if (v->n == v->cap) {
        v->cap = v->cap == 0 ? 8 : v->cap * 2;
        v->e = raft__realloc(h, v->e, v->cap * sizeof(*v->e));
    }
    v->e[v->n] = *e;
    raft_buf_ref(e->data);
    v->n++;
}

void raft__ents_truncate(struct raft__ents *v, size_t n)
{
    while (v->n > n) {
        v->n--;
        raft_buf_unref(v->e[v->n].data);
    }
}

void raft__ents_free(const struct raft_heap *h, struct raft__ents *v)
{
    raft__ents_truncate(v, 0);
    raft__free(h, v->e);
    v->e = NULL;
    v->cap = 0;
}

int raft__log_init(struct raft__log *l,
                   const struct raft_storage *s,
                   const struct raft_heap *h)
{
    uint64_t first, last;
    int rv;
    memset(l, 0, sizeof(*l));
    l->s = s;
    l->heap = h;
    if ((rv = s->first_index(s->ctx, &first)) != 0 ||
        (rv = s->last_index(s->ctx, &last)) != 0) {
        return rv;
    }
    l->offset = last + 1;
    l->truncated_at = UINT64_MAX;
    l->committed = first - 1;
    l->applied = first - 1;
    return 0;
}

void raft__log_close(struct raft__log *l)
{
    raft__ents_free(l->heap, &l->unstable);
    if (l->has_snap) {
        raft_buf_unref(l->snap.data);
        l->has_snap = false;
    }
}

uint64_t raft__log_first_index(const struct raft__log *l)
{
    uint64_t i;
    if (l->has_snap) {
        return l->snap.meta.index + 1;
    }
    l->s->first_index(l->s->ctx, &i);
    return i;
}

uint64_t raft__log_last_index(const struct raft__log *l)
{
    uint64_t i;
    if (l->unstable.n > 0) {
        return l->offset + l->unstable.n - 1;
    }
    if (l->has_snap) {
        return l->snap.meta.index;
    }
    l->s->last_index(l->s->ctx, &i);
    return i;
}

uint64_t raft__log_stable_index(const struct raft__log *l)
{
    if (l->has_snap) {
        return 0; /* nothing is durable until the snapshot is */
    }
    return l->offset - 1;
}

uint64_t raft__log_max_apply(const struct raft__log *l)
{
    uint64_t s = raft__log_stable_index(l);
    return l->committed < s ? l->committed : s;
}

int raft__log_term(const struct raft__log *l, uint64_t i, uint64_t *t)
{
    uint64_t dummy = raft__log_first_index(l) - 1;
    *t = 0;
    if (i < dummy) {
        return RAFT_ECOMPACTED;
    }
    if (i > raft__log_last_index(l)) {
        return RAFT_EUNAVAILABLE;
    }
    if (i >= l->offset && l->unstable.n > 0) {
        *t = l->unstable.e[i - l->offset].term;
        return 0;
    }
    if (l->has_snap && l->snap.meta.index == i) {
        *t = l->snap.meta.term;
        return 0;
    }
    return l->s->term(l->s->ctx, i, t);
}

uint64_t raft__log_term_or_zero(const struct raft__log *l, uint64_t i)
{
    uint64_t t;
    raft__log_term(l, i, &t);
    return t;
}

uint64_t raft__log_last_term(const struct raft__log *l)
{
    return raft__log_term_or_zero(l, raft__log_last_index(l));
}

bool raft__log_match_term(const struct raft__log *l, uint64_t i, uint64_t t)
{
    uint64_t got;
    if (raft__log_term(l, i, &got) != 0) {
        return false;
    }
    return got == t;
}

bool raft__log_is_up_to_date(const struct raft__log *l,
                             uint64_t lasti,
                             uint64_t term)
{
    uint64_t lt = raft__log_last_term(l);
    return term > lt || (term == lt && lasti >= raft__log_last_index(l));
}

/* Index of the first entry of ents that is new or conflicts, 0 if none. */
static uint64_t find_conflict(const struct raft__log *l,
                              const struct raft_entry *ents,
                              size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (!raft__log_match_term(l, ents[i].index, ents[i].term)) {
            return ents[i].index;
        }
    }
    return 0;
}

void raft__log_append(struct raft__log *l,
                      const struct raft_entry *ents,
                      size_t n)
{
    uint64_t after;
    size_t i;
    if (n == 0) {
        return;
    }
    after = ents[0].index;
    assert(after > l->committed || l->lenient);
    if (after <= l->committed) {
        l->committed = after - 1; /* lenient (mutation runs) only */
    }
    if (after <= raft__log_last_index(l) && after < l->truncated_at) {
        l->truncated_at = after;
    }
    if (after == l->offset + l->unstable.n) {
        /* the common case: directly after */
    } else if (after <= l->offset) {
        /* the storage tail from `after` is replaced (persisting these
         * entries truncates it) */
        raft__ents_truncate(&l->unstable, 0);
        l->offset = after;
    } else {
        raft__ents_truncate(&l->unstable, (size_t)(after - l->offset));
    }
    for (i = 0; i < n; i++) {
        raft__ents_push(l->heap, &l->unstable, &ents[i]);
    }
}

bool raft__log_maybe_append(struct raft__log *l,
                            uint64_t index,
                            uint64_t log_term,
                            uint64_t committed,
                            const struct raft_entry *ents,
                            size_t n,
                            uint64_t *lastnew)
{
    uint64_t ci, last;
    if (!raft__log_match_term(l, index, log_term)) {
        return false;
    }
    last = index + n;
    ci = find_conflict(l, ents, n);
    if (ci != 0) {
        /* a conflict at or below commit would mean a committed entry
         * differs: the Log Matching property is broken */
        assert(ci > l->committed || l->lenient);
        raft__log_append(l, ents + (ci - index - 1),
                         n - (size_t)(ci - index - 1));
    }
    raft__log_commit_to(l, committed < last ? committed : last);
    *lastnew = last;
    return true;
}

int raft__log_slice(const struct raft__log *l,
                    uint64_t lo,
                    uint64_t hi,
                    uint64_t max_size,
                    struct raft__ents *out)
{
    uint64_t size = 0;
    size_t start = out->n;
    if (lo < raft__log_first_index(l)) {
        return RAFT_ECOMPACTED;
    }
    if (hi > raft__log_last_index(l) + 1) {
        return RAFT_EUNAVAILABLE;
    }
    if (lo >= hi) {
        return 0;
    }
    if (lo < l->offset) {
        const struct raft_entry *se;
        size_t sn = 0, i;
        uint64_t shi = hi < l->offset ? hi : l->offset;
        int rv = l->s->entries(l->s->ctx, lo, shi, max_size, &se, &sn);
        if (rv != 0) {
            return rv;
        }
        for (i = 0; i < sn; i++) {
            size += raft__entry_size(&se[i]);
            raft__ents_push(l->heap, out, &se[i]);
        }
        if (sn < shi - lo) {
            return 0; /* the size limit was reached inside storage */
        }
        lo = shi;
    }
    for (; lo < hi; lo++) {
        const struct raft_entry *e = &l->unstable.e[lo - l->offset];
        size += raft__entry_size(e);
        if (out->n > start && size > max_size) {
            break;
        }
        raft__ents_push(l->heap, out, e);
    }
    return 0;
}

void raft__log_commit_to(struct raft__log *l, uint64_t i)
{
    if (l->committed < i) {
        if (l->lenient && i > raft__log_last_index(l)) {
            i = raft__log_last_index(l);
        }
        assert(i <= raft__log_last_index(l));
        l->committed = i;
    }
}

bool raft__log_maybe_commit(struct raft__log *l, uint64_t i, uint64_t term)
{
    if (i > l->committed && raft__log_term_or_zero(l, i) == term) {
        raft__log_commit_to(l, i);
        return true;
    }
    return false;
}

void raft__log_stable_to(struct raft__log *l, uint64_t i, uint64_t t)
{
    size_t k, drop;
    if (i < l->offset || i >= l->offset + l->unstable.n) {
        return;
    }
    /* The ABA guard (etcd async_storage_writes_append_aba_race): only if
     * the entry persisted is still the one in the log. */
    if (l->unstable.e[i - l->offset].term != t) {
        return;
    }
    drop = (size_t)(i - l->offset + 1);
    for (k = 0; k < drop; k++) {
        raft_buf_unref(l->unstable.e[k].data);
    }
    memmove(l->unstable.e, l->unstable.e + drop,
            (l->unstable.n - drop) * sizeof(*l->unstable.e));
    l->unstable.n -= drop;
    l->offset = i + 1;
}

void raft__log_stable_snap_to(struct raft__log *l, uint64_t i)
{
    if (l->has_snap && l->snap.meta.index == i) {
        raft_buf_unref(l->snap.data);
        l->has_snap = false;
    }
}

void raft__log_restore(struct raft__log *l, const struct raft_snapshot *s)
{
    raft__ents_truncate(&l->unstable, 0);
    if (l->has_snap) {
        raft_buf_unref(l->snap.data);
    }
    l->has_snap = true;
    l->snap = *s;
    raft_buf_ref(l->snap.data);
    l->offset = s->meta.index + 1;
    l->committed = s->meta.index;
}

uint64_t raft__log_find_conflict_by_term(const struct raft__log *l,
                                         uint64_t index,
                                         uint64_t term)
{
    uint64_t t;
    for (; index > 0; index--) {
        if (raft__log_term(l, index, &t) != 0) {
            break; /* compacted or beyond: cannot do better */
        }
        if (t <= term) {
            break;
        }
    }
    return index;
}
