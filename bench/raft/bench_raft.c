/*
 * keel-raft-bench: proposals committed per second through a 3-member
 * in-memory cluster, and heap allocations per proposal — the cost of the
 * consensus core alone: no disk, no network, no protobuf. Messages go
 * straight from one member's Ready into the next member's raft_step; the
 * "disk" is raft_memstore.
 *
 *   keel-raft-bench [--proposals N] [--batch B] [--size BYTES]
 *
 * A proposal counts once the leader has applied it (committed on a quorum
 * and persisted locally). Allocations are counted on raft's heap (the
 * core) and on the memstore's heap separately.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "raft.h"

struct counting_heap
{
    struct raft_heap h;
    uint64_t allocs;
};

static void *c_malloc(void *ctx, size_t n)
{
    ((struct counting_heap *)ctx)->allocs++;
    return malloc(n);
}

static void *c_realloc(void *ctx, void *p, size_t n)
{
    ((struct counting_heap *)ctx)->allocs++;
    return realloc(p, n);
}

static void c_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void heap_init(struct counting_heap *c)
{
    c->h.ctx = c;
    c->h.malloc = c_malloc;
    c->h.realloc = c_realloc;
    c->h.free = c_free;
    c->allocs = 0;
}

#define N 3

struct member
{
    struct raft_memstore *ms;
    struct raft_storage st;
    struct raft *r;
    uint64_t applied;
};

static struct member m[N + 1];
static uint64_t applied_props; /* normal entries with data, on member 1 */

static void step_all(const struct raft_message *msgs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (msgs[i].to >= 1 && msgs[i].to <= N) {
            raft_step(m[msgs[i].to].r, &msgs[i]);
        }
    }
}

static bool pump(void)
{
    bool any = false;
    int i;
    for (i = 1; i <= N; i++) {
        struct member *x = &m[i];
        struct raft_ready *rd;
        size_t k;
        if (!raft_has_ready(x->r)) {
            continue;
        }
        any = true;
        rd = raft_ready(x->r);
        step_all(rd->msgs, rd->n_msgs);
        if (rd->has_snapshot) {
            raft_memstore_apply_snapshot(x->ms, &rd->snapshot);
        }
        raft_memstore_append(x->ms, rd->entries, rd->n_entries);
        if (rd->has_hard_state) {
            raft_memstore_set_hard_state(x->ms, &rd->hard_state);
        }
        step_all(rd->msgs_after_persist, rd->n_msgs_after_persist);
        for (k = 0; k < rd->n_committed; k++) {
            const struct raft_entry *e = &rd->committed[k];
            if (e->type == RAFT_ENTRY_CONF_CHANGE) {
                struct raft_conf_change cc;
                if (raft_conf_change_decode(NULL, e->data, &cc) == 0) {
                    raft_apply_conf_change(x->r, &cc, NULL);
                    raft_buf_unref(cc.context);
                }
            } else if (i == 1 && e->data != NULL) {
                applied_props++;
            }
            x->applied = e->index;
        }
        raft_advance(x->r, rd);
    }
    return any;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    uint64_t total = 1000000, batch = 64, size = 128, proposed = 0, ids[N];
    struct counting_heap core, store;
    unsigned char *payload;
    double t0, t1;
    uint64_t core0, store0;
    int i;
    for (i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--proposals") == 0) {
            total = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--batch") == 0) {
            batch = strtoull(argv[i + 1], NULL, 10);
        } else if (strcmp(argv[i], "--size") == 0) {
            size = strtoull(argv[i + 1], NULL, 10);
        } else {
            fprintf(stderr,
                    "usage: keel-raft-bench [--proposals N] "
                    "[--batch B] [--size BYTES]\n");
            return 2;
        }
    }
    if (batch == 0) {
        batch = 1;
    }
    heap_init(&core);
    heap_init(&store);
    for (i = 0; i < N; i++) {
        ids[i] = (uint64_t)i + 1;
    }
    for (i = 1; i <= N; i++) {
        struct raft_config c;
        m[i].ms = raft_memstore_new(&store.h);
        raft_memstore_storage(m[i].ms, &m[i].st);
        raft_memstore_bootstrap(m[i].ms, ids, N);
        raft_config_default(&c);
        c.id = (uint64_t)i;
        c.storage = &m[i].st;
        c.heap = &core.h;
        c.max_inflight_msgs = 256;
        c.rand_seed = 1;
        if (raft_new(&c, &m[i].r) != 0) {
            fprintf(stderr, "raft_new failed\n");
            return 1;
        }
    }
    while (pump()) {
    }
    raft_campaign(m[1].r);
    while (pump()) {
    }
    payload = calloc(1, size);
    core0 = core.allocs;
    store0 = store.allocs;
    t0 = now_s();
    while (applied_props < total) {
        uint64_t k;
        for (k = 0; k < batch && proposed < total; k++, proposed++) {
            struct raft_buf *b = raft_buf_new(&core.h, payload, size);
            memcpy(b->data, &proposed, size < 8 ? size : 8);
            if (raft_propose(m[1].r, b) != 0) {
                fprintf(stderr, "proposal dropped\n");
                return 1;
            }
            raft_buf_unref(b);
        }
        while (pump()) {
        }
    }
    t1 = now_s();
    printf("raft core, 3 members in memory: %" PRIu64 " proposals of %" PRIu64
           " B, batch %" PRIu64
           ": %.0f proposals/s (%.2f s); "
           "allocations per proposal: %.2f in raft (incl. the payload "
           "buffer), %.2f in the memstore\n",
           total, size, batch, (double)total / (t1 - t0), t1 - t0,
           (double)(core.allocs - core0) / (double)total,
           (double)(store.allocs - store0) / (double)total);
    for (i = 1; i <= N; i++) {
        raft_free(m[i].r);
        raft_memstore_free(m[i].ms);
    }
    free(payload);
    return 0;
}
