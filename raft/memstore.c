/*
 * In-memory raft_storage (etcd's MemoryStorage), for tests and benchmarks.
 *
 * ents[0] is a dummy entry holding the snapshot's index and term, so
 * term(first_index - 1) always answers; the real entries follow it
 * contiguously. The store owns one reference to each payload it holds.
 */
#include <string.h>

#include "raft.h"

struct raft_memstore
{
    const struct raft_heap *heap;
    struct raft_hard_state hs;
    struct raft_snapshot snap;
    struct raft_entry *ents; /* ents[0]: dummy at snap.meta.index */
    size_t n, cap;
    bool snap_unavailable;
};

struct raft_memstore *raft_memstore_new(const struct raft_heap *heap)
{
    struct raft_memstore *ms;
    if (heap == NULL) {
        heap = raft_heap_default();
    }
    ms = heap->malloc(heap->ctx, sizeof(*ms));
    if (ms == NULL) {
        return NULL;
    }
    memset(ms, 0, sizeof(*ms));
    ms->heap = heap;
    ms->cap = 16;
    ms->ents = heap->malloc(heap->ctx, ms->cap * sizeof(*ms->ents));
    if (ms->ents == NULL) {
        heap->free(heap->ctx, ms);
        return NULL;
    }
    memset(&ms->ents[0], 0, sizeof(ms->ents[0]));
    ms->n = 1;
    return ms;
}

static void truncate_to(struct raft_memstore *ms, size_t n)
{
    while (ms->n > n) {
        ms->n--;
        raft_buf_unref(ms->ents[ms->n].data);
    }
}

void raft_memstore_free(struct raft_memstore *ms)
{
    if (ms == NULL) {
        return;
    }
    truncate_to(ms, 1);
    raft_buf_unref(ms->snap.data);
    ms->heap->free(ms->heap->ctx, ms->ents);
    ms->heap->free(ms->heap->ctx, ms);
}

static uint64_t offset(const struct raft_memstore *ms)
{
    return ms->ents[0].index;
}

uint64_t raft_memstore_last_index(const struct raft_memstore *ms)
{
    return offset(ms) + ms->n - 1;
}

uint64_t raft_memstore_first_index(const struct raft_memstore *ms)
{
    return offset(ms) + 1;
}

static int ms_initial_state(void *ctx,
                            struct raft_hard_state *hs,
                            struct raft_conf_state *cs)
{
    struct raft_memstore *ms = ctx;
    *hs = ms->hs;
    *cs = ms->snap.meta.conf_state;
    return 0;
}

static int ms_entries(void *ctx,
                      uint64_t lo,
                      uint64_t hi,
                      uint64_t max_size,
                      const struct raft_entry **out,
                      size_t *n)
{
    struct raft_memstore *ms = ctx;
    uint64_t size = 0;
    size_t i, cnt;
    if (lo <= offset(ms)) {
        return RAFT_ECOMPACTED;
    }
    if (hi > raft_memstore_last_index(ms) + 1 || lo > hi) {
        return RAFT_EUNAVAILABLE;
    }
    *out = &ms->ents[lo - offset(ms)];
    cnt = (size_t)(hi - lo);
    for (i = 0; i < cnt; i++) {
        const struct raft_buf *d = (*out)[i].data;
        size += d != NULL ? d->len : 0;
        if (i > 0 && size > max_size) {
            break;
        }
    }
    *n = i;
    return 0;
}

static int ms_term(void *ctx, uint64_t i, uint64_t *term)
{
    struct raft_memstore *ms = ctx;
    *term = 0;
    if (i < offset(ms)) {
        return RAFT_ECOMPACTED;
    }
    if (i > raft_memstore_last_index(ms)) {
        return RAFT_EUNAVAILABLE;
    }
    *term = ms->ents[i - offset(ms)].term;
    return 0;
}

static int ms_first_index(void *ctx, uint64_t *index)
{
    *index = raft_memstore_first_index(ctx);
    return 0;
}

static int ms_last_index(void *ctx, uint64_t *index)
{
    *index = raft_memstore_last_index(ctx);
    return 0;
}

static int ms_snapshot(void *ctx, struct raft_snapshot *out)
{
    struct raft_memstore *ms = ctx;
    if (ms->snap_unavailable) {
        return RAFT_ESNAP_TEMP_UNAVAILABLE;
    }
    *out = ms->snap;
    raft_buf_ref(out->data);
    return 0;
}

void raft_memstore_storage(struct raft_memstore *ms, struct raft_storage *s)
{
    s->ctx = ms;
    s->initial_state = ms_initial_state;
    s->entries = ms_entries;
    s->term = ms_term;
    s->first_index = ms_first_index;
    s->last_index = ms_last_index;
    s->snapshot = ms_snapshot;
}

void raft_memstore_set_snapshot_unavailable(struct raft_memstore *ms, bool on)
{
    ms->snap_unavailable = on;
}

int raft_memstore_set_hard_state(struct raft_memstore *ms,
                                 const struct raft_hard_state *hs)
{
    ms->hs = *hs;
    return 0;
}

static int reserve(struct raft_memstore *ms, size_t n)
{
    size_t cap = ms->cap;
    struct raft_entry *e;
    if (n <= cap) {
        return 0;
    }
    while (cap < n) {
        cap *= 2;
    }
    e = ms->heap->realloc(ms->heap->ctx, ms->ents, cap * sizeof(*e));
    if (e == NULL) {
        return RAFT_ENOMEM;
    }
    ms->ents = e;
    ms->cap = cap;
    return 0;
}

int raft_memstore_append(struct raft_memstore *ms,
                         const struct raft_entry *entries,
                         size_t n)
{
    uint64_t first = raft_memstore_first_index(ms);
    uint64_t last = entries != NULL && n > 0 ? entries[n - 1].index : 0;
    size_t i, skip = 0;
    int rv;
    if (n == 0 || last < first) {
        return 0;
    }
    if (first > entries[0].index) { /* drop what is already compacted */
        skip = (size_t)(first - entries[0].index);
    }
    if (entries[skip].index > raft_memstore_last_index(ms) + 1) {
        return RAFT_EINVAL; /* a gap */
    }
    truncate_to(ms, (size_t)(entries[skip].index - offset(ms)));
    if ((rv = reserve(ms, ms->n + (n - skip))) != 0) {
        return rv;
    }
    for (i = skip; i < n; i++) {
        ms->ents[ms->n] = entries[i];
        raft_buf_ref(entries[i].data);
        ms->n++;
    }
    return 0;
}

int raft_memstore_bootstrap(struct raft_memstore *ms,
                            const uint64_t *voters,
                            size_t n)
{
    size_t i;
    int rv = 0;
    if (raft_memstore_last_index(ms) != 0 || ms->hs.term != 0 || n == 0) {
        return RAFT_EINVAL;
    }
    for (i = 0; i < n && rv == 0; i++) {
        struct raft_conf_change cc = {0, RAFT_CONF_ADD_NODE, voters[i], NULL};
        struct raft_entry e = {1, i + 1, RAFT_ENTRY_CONF_CHANGE, NULL};
        e.data = raft_conf_change_encode(ms->heap, &cc);
        if (e.data == NULL) {
            return RAFT_ENOMEM;
        }
        rv = raft_memstore_append(ms, &e, 1);
        raft_buf_unref(e.data);
    }
    if (rv == 0) {
        ms->hs.term = 1;
        ms->hs.commit = n;
    }
    return rv;
}

int raft_memstore_apply_snapshot(struct raft_memstore *ms,
                                 const struct raft_snapshot *snap)
{
    if (snap->meta.index < ms->snap.meta.index) {
        return RAFT_ESNAP_OUT_OF_DATE;
    }
    raft_buf_unref(ms->snap.data);
    ms->snap = *snap;
    raft_buf_ref(ms->snap.data);
    truncate_to(ms, 1);
    ms->ents[0].index = snap->meta.index;
    ms->ents[0].term = snap->meta.term;
    return 0;
}

int raft_memstore_create_snapshot(struct raft_memstore *ms,
                                  uint64_t i,
                                  const struct raft_conf_state *cs,
                                  struct raft_buf *data)
{
    uint64_t term;
    if (i <= ms->snap.meta.index) {
        return RAFT_ESNAP_OUT_OF_DATE;
    }
    if (i > raft_memstore_last_index(ms)) {
        return RAFT_EUNAVAILABLE;
    }
    ms_term(ms, i, &term);
    raft_buf_unref(ms->snap.data);
    ms->snap.data = raft_buf_ref(data);
    ms->snap.meta.index = i;
    ms->snap.meta.term = term;
    if (cs != NULL) {
        ms->snap.meta.conf_state = *cs;
    }
    return 0;
}

int raft_memstore_compact(struct raft_memstore *ms, uint64_t i)
{
    size_t k, drop;
    if (i <= offset(ms)) {
        return RAFT_ECOMPACTED;
    }
    if (i > raft_memstore_last_index(ms)) {
        return RAFT_EUNAVAILABLE;
    }
    drop = (size_t)(i - offset(ms));
    for (k = 1; k <= drop; k++) {
        raft_buf_unref(ms->ents[k].data);
    }
    ms->ents[0].index = i;
    ms->ents[0].term = ms->ents[drop].term;
    ms->ents[0].data = NULL;
    memmove(&ms->ents[1], &ms->ents[drop + 1],
            (ms->n - drop - 1) * sizeof(*ms->ents));
    ms->n -= drop;
    return 0;
}
