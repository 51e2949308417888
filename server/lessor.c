/*
 * server/lessor.c: lease expiry, renewal and checkpoints (see lessor.h).
 *
 * State: a hash table id -> struct lease {granted ttl, checkpointed
 * remaining ttl, expiry (us, monotonic clock; LESSOR_FOREVER off the primary),
 * next checkpoint time, time a revoke was last proposed}. Grants, revokes
 * and checkpoints reach it only through the apply hook, so every member's
 * table is the replicated one.
 *
 * The timer (every 500 ms, etcd's runLoop) on the primary:
 *
 *   expired leases? ──▶ ReadIndex round (proves leadership of a quorum)
 *        │                    │ ok and still primary
 *        │                    ▼
 *        │             propose LeaseRevoke for each lease still expired
 *        │             (at most revoke_rate/2 per run; a lease whose revoke
 *        │             is in flight is retried after the request timeout)
 *        ▼
 *   checkpoints due? ──▶ propose one LeaseCheckpoint with up to 1000
 *                        remaining TTLs (etcd maxLeaseCheckpointBatchSize)
 *
 * Suspended in: the ReadIndex round (probing), revoke and checkpoint
 * proposals. Their callbacks only touch the lessor, which lives until the
 * node is closed (the node answers every read and proposal by then).
 *
 * Failure modes: a failed proposal is logged and retried on a later run; an
 * allocation failure skips the run. Nothing here can corrupt the table: the
 * store is changed only by applied entries.
 */
#include "lessor.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_store.h"
#include "keel_err.h"
#include "log.h"
#include "mvcc.h"
#include "node.h"

#define LESSOR_FOREVER INT64_MAX
/* etcd: runLoop's 500 ms period */
#define LESSOR_RUN_MS 500
#define US_PER_S ((int64_t)1000000)
#define US_PER_MS ((int64_t)1000)
/* etcd: maxLeaseCheckpointBatchSize */
#define LESSOR_CHECKPOINT_BATCH 1000
/* etcd: defaultLeaseCheckpointInterval */
#define LESSOR_CHECKPOINT_DEFAULT_MS (5 * 60 * 1000)

struct lease
{
    int64_t id;
    int64_t ttl;        /* granted, seconds */
    int64_t remaining;  /* last checkpointed remaining TTL; 0 = none */
    int64_t expiry_us;  /* monotonic us; LESSOR_FOREVER when not primary */
    int64_t next_cp_us; /* next checkpoint due; 0 = none scheduled */
    int64_t revoke_us;  /* when a revoke was proposed; 0 = none */
    struct lease *next; /* hash chain */
};

struct lessor
{
    uv_loop_t *loop;
    struct node *node;
    struct lessor_options opts;
    int64_t min_ttl;
    int64_t checkpoint_us;
    int64_t retry_us; /* etcd: expiredLeaseRetryInterval = request timeout */
    struct lease **buckets;
    size_t n_buckets;
    size_t n_leases;
    uv_timer_t timer;
    bool started;
    bool stopped;
    bool primary;
    bool probing; /* a ReadIndex round before revoking is in flight */
    int64_t last_run_us;
    uint64_t next_id;
    struct lessor_stats stats;
};

/* ---- table -------------------------------------------------------------- */

static size_t bucket_of(const struct lessor *l, int64_t id)
{
    uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ULL;
    return (size_t)(x >> 32) & (l->n_buckets - 1);
}

static struct lease *lease_find(const struct lessor *l, int64_t id)
{
    for (struct lease *e = l->buckets[bucket_of(l, id)]; e; e = e->next) {
        if (e->id == id) {
            return e;
        }
    }
    return NULL;
}

static int table_grow(struct lessor *l)
{
    size_t nb = l->n_buckets * 2;
    struct lease **b = calloc(nb, sizeof *b);
    if (b == NULL) {
        return KEEL_ENOMEM;
    }
    struct lease **old = l->buckets;
    size_t on = l->n_buckets;
    l->buckets = b;
    l->n_buckets = nb;
    for (size_t i = 0; i < on; i++) {
        while (old[i] != NULL) {
            struct lease *e = old[i];
            old[i] = e->next;
            size_t k = bucket_of(l, e->id);
            e->next = b[k];
            b[k] = e;
        }
    }
    free(old);
    return 0;
}

/* Insert (or find) id. NULL when out of memory. */
static struct lease *lease_add(struct lessor *l, int64_t id)
{
    struct lease *e = lease_find(l, id);
    if (e != NULL) {
        return e;
    }
    if (l->n_leases >= l->n_buckets && table_grow(l) != 0) {
        return NULL;
    }
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        return NULL;
    }
    e->id = id;
    e->expiry_us = LESSOR_FOREVER;
    size_t k = bucket_of(l, id);
    e->next = l->buckets[k];
    l->buckets[k] = e;
    l->n_leases++;
    return e;
}

static void lease_remove(struct lessor *l, int64_t id)
{
    struct lease **pp = &l->buckets[bucket_of(l, id)];
    while (*pp != NULL && (*pp)->id != id) {
        pp = &(*pp)->next;
    }
    if (*pp != NULL) {
        struct lease *e = *pp;
        *pp = e->next;
        free(e);
        l->n_leases--;
    }
}

#define FOR_EACH_LEASE(l, e)                       \
    for (size_t b_ = 0; b_ < (l)->n_buckets; b_++) \
        for (struct lease *e = (l)->buckets[b_]; e != NULL; e = e->next)

/* ---- lease timing ------------------------------------------------------- */

/* Microseconds of the monotonic clock, read fresh (uv_now is the loop's
 * cached millisecond: TimeToLive right after a grant would round up). */
static int64_t now_us(const struct lessor *l)
{
    (void)l;
    return (int64_t)(uv_hrtime() / 1000);
}

/* etcd Lease.RemainingTTL: the checkpointed remaining TTL when set. */
static int64_t lease_remaining_ttl(const struct lease *e)
{
    return e->remaining > 0 ? e->remaining : e->ttl;
}

/* A checkpoint is worth it only for leases longer than the interval
 * (etcd scheduleCheckpointIfNeeded). */
static void schedule_checkpoint(struct lessor *l, struct lease *e)
{
    if (lease_remaining_ttl(e) * US_PER_S > l->checkpoint_us) {
        e->next_cp_us = now_us(l) + l->checkpoint_us;
    } else {
        e->next_cp_us = 0;
    }
}

static int cmp_expiry(const void *a, const void *b)
{
    const struct lease *x = *(struct lease *const *)a;
    const struct lease *y = *(struct lease *const *)b;
    if (x->expiry_us != y->expiry_us) {
        return x->expiry_us < y->expiry_us ? -1 : 1;
    }
    return x->id < y->id ? -1 : x->id > y->id;
}

/* etcd Promote's pile-up rule: with at least revoke_rate leases, leases
 * expiring in the same second beyond 3/4 of the revoke rate are pushed
 * later, so a new leader's first seconds are not one revoke storm. */
static void spread_expiries(struct lessor *l, int64_t extend_us)
{
    if (l->n_leases < l->opts.revoke_rate) {
        return;
    }
    struct lease **v = malloc(l->n_leases * sizeof *v);
    if (v == NULL) {
        return; /* no spreading; expiries stay correct */
    }
    size_t n = 0;
    FOR_EACH_LEASE(l, e)
    {
        v[n++] = e;
    }
    qsort(v, n, sizeof *v, cmp_expiry);
    int64_t now = now_us(l);
    int64_t base = v[0]->expiry_us - now;
    int64_t next_window = base + US_PER_S;
    int64_t expires = 0;
    int64_t target = 3 * (int64_t)l->opts.revoke_rate / 4;
    for (size_t i = 0; i < n; i++) {
        int64_t remaining = v[i]->expiry_us - now;
        if (remaining > next_window) {
            base = remaining;
            next_window = base + US_PER_S;
            expires = 1;
            continue;
        }
        expires++;
        if (expires <= target) {
            continue;
        }
        int64_t delay = US_PER_S * expires / target - (remaining - base);
        next_window = base + delay;
        v[i]->expiry_us =
            now + delay + extend_us + lease_remaining_ttl(v[i]) * US_PER_S;
    }
    free(v);
}

static void promote(struct lessor *l)
{
    int64_t extend = (int64_t)l->opts.election_ms * US_PER_MS;
    int64_t now = now_us(l);
    l->primary = true;
    FOR_EACH_LEASE(l, e)
    {
        e->expiry_us = now + extend + lease_remaining_ttl(e) * US_PER_S;
        e->revoke_us = 0;
        schedule_checkpoint(l, e);
    }
    spread_expiries(l, extend);
    log_info("lease", "promoted: %zu leases expire from their remaining TTL",
             l->n_leases);
}

static void demote(struct lessor *l)
{
    l->primary = false;
    FOR_EACH_LEASE(l, e)
    {
        e->expiry_us = LESSOR_FOREVER;
        e->next_cp_us = 0;
        e->revoke_us = 0;
    }
}

/* ---- proposals ---------------------------------------------------------- */

struct lessor_job
{
    struct lessor *l;
    struct keel_arena a;
    int64_t id; /* revoke: the lease */
};

static struct lessor_job *job_new(struct lessor *l, int64_t id)
{
    struct lessor_job *j = calloc(1, sizeof *j);
    if (j != NULL) {
        j->l = l;
        j->id = id;
        keel_arena_init(&j->a, 0);
    }
    return j;
}

static void job_free(struct lessor_job *j)
{
    keel_arena_free(&j->a);
    free(j);
}

static void revoke_done(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)resp;
    struct lessor_job *j = arg;
    if (rv == 0) {
        j->l->stats.expired++;
    }
    if (rv != 0 && rv != KEEL_ELEASENOTFOUND && rv != KEEL_ESTOPPED) {
        log_warn("etcdserver", "failed to revoke lease %016" PRIx64 " (%s)",
                 (uint64_t)j->id, keel_strerror(rv));
    }
    job_free(j);
}

static void propose_revoke(struct lessor *l, struct lease *e)
{
    struct lessor_job *j = job_new(l, e->id);
    Etcdserverpb__LeaseRevokeRequest *r =
        j ? keel_arena_alloc(&j->a, sizeof *r) : NULL;
    if (r == NULL) {
        if (j) {
            job_free(j);
        }
        return;
    }
    etcdserverpb__lease_revoke_request__init(r);
    r->id = e->id;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_LEASE_REVOKE;
    req.lease_revoke = r;
    Keelpb__RequestHeader hdr;
    auth_store_as_root(&hdr); /* etcd: authStore.WithRoot */
    req.header = &hdr;
    if (node_propose(l->node, &req, &j->a, revoke_done, j) != 0) {
        job_free(j);
        return;
    }
    e->revoke_us = now_us(l);
}

static void checkpoint_done(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)resp;
    struct lessor_job *j = arg;
    if (rv != 0 && rv != KEEL_ESTOPPED) {
        log_warn("lease", "failed to checkpoint leases (%s)",
                 keel_strerror(rv));
    }
    job_free(j);
}

/* Propose one LeaseCheckpoint request for n (id, remaining) pairs. */
static void propose_checkpoints(struct lessor *l,
                                const int64_t *ids,
                                const int64_t *rem,
                                size_t n)
{
    struct lessor_job *j = job_new(l, 0);
    if (j == NULL) {
        return;
    }
    Etcdserverpb__LeaseCheckpointRequest *r =
        keel_arena_alloc(&j->a, sizeof *r);
    Etcdserverpb__LeaseCheckpoint **cps =
        keel_arena_alloc(&j->a, n * sizeof *cps);
    if (r == NULL || cps == NULL) {
        job_free(j);
        return;
    }
    etcdserverpb__lease_checkpoint_request__init(r);
    for (size_t i = 0; i < n; i++) {
        cps[i] = keel_arena_alloc(&j->a, sizeof *cps[i]);
        if (cps[i] == NULL) {
            job_free(j);
            return;
        }
        etcdserverpb__lease_checkpoint__init(cps[i]);
        cps[i]->id = ids[i];
        cps[i]->remaining_ttl = rem[i];
    }
    r->checkpoints = cps;
    r->n_checkpoints = n;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.op_case = KEELPB__REQUEST__OP_LEASE_CHECKPOINT;
    req.lease_checkpoint = r;
    if (node_propose(l->node, &req, &j->a, checkpoint_done, j) != 0) {
        job_free(j);
    }
}

/* ---- the timer ---------------------------------------------------------- */

static bool lease_due(const struct lessor *l,
                      const struct lease *e,
                      int64_t now)
{
    return e->expiry_us <= now &&
           (e->revoke_us == 0 || now - e->revoke_us >= l->retry_us);
}

static bool any_due(const struct lessor *l, int64_t now)
{
    FOR_EACH_LEASE(l, e)
    {
        if (lease_due(l, e, now)) {
            return true;
        }
    }
    return false;
}

static void revoke_expired(struct lessor *l)
{
    size_t limit = l->opts.revoke_rate / 2;
    if (limit == 0) {
        limit = 1;
    }
    int64_t now = now_us(l);
    size_t done = 0;
    FOR_EACH_LEASE(l, e)
    {
        if (done == limit) {
            return;
        }
        if (lease_due(l, e, now)) {
            log_info("lease", "lease %016" PRIx64 " expired: revoking",
                     (uint64_t)e->id);
            propose_revoke(l, e);
            done++;
        }
    }
}

static void probe_done(void *arg, int rv)
{
    struct lessor *l = arg;
    l->probing = false;
    if (rv != 0 || !l->primary || l->stopped) {
        return; /* not proven: nothing is revoked; retried on a later run */
    }
    revoke_expired(l);
}

/* At most LESSOR_CHECKPOINT_BATCH due leases per run, in one proposal;
 * the others stay due for the next run. */
static void checkpoint_due(struct lessor *l)
{
    int64_t *ids = NULL, *rem = NULL;
    size_t n = 0;
    int64_t now = now_us(l);
    FOR_EACH_LEASE(l, e)
    {
        if (e->next_cp_us == 0 || e->next_cp_us > now) {
            continue;
        }
        if (n == LESSOR_CHECKPOINT_BATCH) {
            goto propose; /* the others stay due */
        }
        /* Keep one scheduled while the lease lives (etcd stops once a
         * renewed lease is at its full TTL; then a client that stops
         * renewing later is never checkpointed). */
        e->next_cp_us =
            e->ttl * US_PER_S > l->checkpoint_us ? now + l->checkpoint_us : 0;
        if (e->expiry_us <= now) {
            continue;
        }
        int64_t r = (e->expiry_us - now + US_PER_S - 1) / US_PER_S; /* ceil */
        if (r >= e->ttl || (e->remaining > 0 && r >= e->remaining)) {
            continue; /* nothing new to record */
        }
        if (ids == NULL) {
            ids = malloc(LESSOR_CHECKPOINT_BATCH * sizeof *ids);
            rem = malloc(LESSOR_CHECKPOINT_BATCH * sizeof *rem);
            if (ids == NULL || rem == NULL) {
                goto propose; /* n == 0: retried on a later run */
            }
        }
        ids[n] = e->id;
        rem[n] = r;
        n++;
    }
propose:
    if (n > 0) {
        propose_checkpoints(l, ids, rem, n);
    }
    free(ids);
    free(rem);
}

static void on_timer(uv_timer_t *t)
{
    struct lessor *l = t->data;
    int64_t now = now_us(l);
    int64_t gap = now - l->last_run_us;
    l->last_run_us = now;
    if (l->stopped || !l->primary) {
        return;
    }
    /* The loop stalled (slow disk, SIGSTOP, swapping): nobody could renew
     * meanwhile, so the stall is not counted against the leases. */
    if (gap > ((int64_t)l->opts.election_ms + LESSOR_RUN_MS) * US_PER_MS) {
        int64_t lost = gap - LESSOR_RUN_MS * US_PER_MS;
        log_warn("lease",
                 "lessor was stalled for %" PRId64
                 " ms: lease expiries extended by it",
                 lost / US_PER_MS);
        FOR_EACH_LEASE(l, e)
        {
            if (e->expiry_us != LESSOR_FOREVER) {
                e->expiry_us += lost;
            }
        }
    }
    if (!l->probing && any_due(l, now)) {
        if (node_read_index(l->node, probe_done, l) == 0) {
            l->probing = true;
        }
    }
    checkpoint_due(l);
}

/* ---- hooks -------------------------------------------------------------- */

static void count_grant(struct lessor *l, int64_t ttl)
{
    l->stats.granted++;
    l->stats.ttl_count++;
    l->stats.ttl_sum += ttl;
    for (int i = 0; i < LESSOR_TTL_BUCKETS; i++) {
        if (ttl <= ((int64_t)1 << i)) {
            l->stats.ttl_le[i]++;
        }
    }
}

void lessor_on_applied(void *arg,
                       const Keelpb__Request *req,
                       const ProtobufCMessage *resp)
{
    (void)resp;
    struct lessor *l = arg;
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_LEASE_GRANT: {
            struct lease *e = lease_add(l, req->lease_grant->id);
            if (e == NULL) {
                /* The lease is in the store; without an entry here it
                 * would never expire on this member. */
                log_fatal("lease", "out of memory tracking lease %016" PRIx64,
                          (uint64_t)req->lease_grant->id);
                abort();
            }
            e->ttl = req->lease_grant->ttl < l->min_ttl ? l->min_ttl
                                                        : req->lease_grant->ttl;
            e->remaining = 0;
            e->revoke_us = 0;
            count_grant(l, e->ttl);
            if (l->primary) {
                e->expiry_us = now_us(l) + e->ttl * US_PER_S;
                schedule_checkpoint(l, e);
            } else {
                e->expiry_us = LESSOR_FOREVER;
                e->next_cp_us = 0;
            }
            break;
        }
        case KEELPB__REQUEST__OP_LEASE_REVOKE:
            lease_remove(l, req->lease_revoke->id);
            l->stats.revoked++;
            break;
        case KEELPB__REQUEST__OP_LEASE_CHECKPOINT: {
            const Etcdserverpb__LeaseCheckpointRequest *c =
                req->lease_checkpoint;
            for (size_t i = 0; i < c->n_checkpoints; i++) {
                struct lease *e = lease_find(l, c->checkpoints[i]->id);
                if (e != NULL) {
                    e->remaining = c->checkpoints[i]->remaining_ttl;
                }
            }
            break;
        }
        default:
            break;
    }
}

void lessor_on_leader(void *arg, bool leader)
{
    struct lessor *l = arg;
    if (leader) {
        promote(l);
    } else if (l->primary) {
        log_info("lease", "demoted: leases no longer expire here");
        demote(l);
    }
}

/* ---- public ------------------------------------------------------------- */

int lessor_new(uv_loop_t *loop,
               const struct lessor_options *opts,
               struct lessor **out)
{
    struct lessor *l = calloc(1, sizeof *l);
    if (l == NULL) {
        return KEEL_ENOMEM;
    }
    l->n_buckets = 64;
    l->buckets = calloc(l->n_buckets, sizeof *l->buckets);
    if (l->buckets == NULL) {
        free(l);
        return KEEL_ENOMEM;
    }
    l->loop = loop;
    l->opts = *opts;
    if (l->opts.heartbeat_ms == 0) {
        l->opts.heartbeat_ms = 100;
    }
    if (l->opts.election_ms < 2 * l->opts.heartbeat_ms) {
        l->opts.election_ms = 10 * l->opts.heartbeat_ms; /* as node.c */
    }
    if (l->opts.revoke_rate == 0) {
        l->opts.revoke_rate = 1000; /* etcd: leaseRevokeRate */
    }
    /* etcd: minTTL = (3*ElectionTicks)/2 * heartbeat, rounded up to s */
    int64_t ticks = l->opts.election_ms / l->opts.heartbeat_ms;
    int64_t min_ms = (3 * ticks / 2) * (int64_t)l->opts.heartbeat_ms;
    l->min_ttl = (min_ms + 999) / 1000;
    l->checkpoint_us = (int64_t)l->opts.checkpoint_interval_ms * US_PER_MS;
    if (l->checkpoint_us <= 0) {
        const char *env = getenv("KEEL_LEASE_CHECKPOINT_INTERVAL_MS");
        long long v = env != NULL ? strtoll(env, NULL, 10) : 0;
        l->checkpoint_us =
            (v > 0 ? v : LESSOR_CHECKPOINT_DEFAULT_MS) * US_PER_MS;
    }
    /* etcd: ExpiredLeasesRetryInterval = ReqTimeout() */
    l->retry_us = (5000 + 2 * (int64_t)l->opts.election_ms) * US_PER_MS;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* etcd idutil: 2 bytes of member id, 5 bytes of ms, 1 byte counter */
    l->next_id =
        ((opts->member_id & 0xffff) << 48) | ((ms & 0xffffffffffULL) << 8);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    *out = l;
    return 0;
}

static void table_clear(struct lessor *l)
{
    for (size_t b = 0; b < l->n_buckets; b++) {
        while (l->buckets[b] != NULL) {
            struct lease *e = l->buckets[b];
            l->buckets[b] = e->next;
            free(e);
        }
    }
    l->n_leases = 0;
}

/* The table as n's store has it (no expiry: not primary). */
static int table_load(struct lessor *l, struct node *n)
{
    struct keel_arena a;
    keel_arena_init(&a, 0);
    struct lease_store_lease *v = NULL;
    size_t nv = 0;
    int rv = lease_store_list(node_store(n), NULL, &a, &v, &nv);
    for (size_t i = 0; rv == 0 && i < nv; i++) {
        struct lease *e = lease_add(l, v[i].id);
        if (e == NULL) {
            rv = KEEL_ENOMEM;
            break;
        }
        e->ttl = v[i].ttl < l->min_ttl ? l->min_ttl : v[i].ttl;
        e->remaining = v[i].remaining_ttl;
    }
    keel_arena_free(&a);
    return rv;
}

int lessor_reload(struct lessor *l)
{
    if (l->node == NULL) {
        return 0;
    }
    table_clear(l);
    l->primary = false;
    return table_load(l, l->node);
}

int lessor_start(struct lessor *l, struct node *n)
{
    int rv = table_load(l, n);
    if (rv != 0) {
        return rv;
    }
    l->node = n;
    l->started = true;
    l->last_run_us = now_us(l);
    uv_timer_start(&l->timer, on_timer, LESSOR_RUN_MS, LESSOR_RUN_MS);
    return 0;
}

void lessor_stop(struct lessor *l)
{
    l->stopped = true;
    uv_timer_stop(&l->timer);
}

static void timer_closed(uv_handle_t *h)
{
    struct lessor *l = h->data;
    table_clear(l);
    free(l->buckets);
    free(l);
}

void lessor_close(struct lessor *l)
{
    lessor_stop(l);
    uv_close((uv_handle_t *)&l->timer, timer_closed);
}

int64_t lessor_min_ttl(const struct lessor *l)
{
    return l->min_ttl;
}

int64_t lessor_next_id(struct lessor *l)
{
    for (;;) {
        int64_t id = (int64_t)(++l->next_id & ((1ULL << 63) - 1));
        if (id != 0 && lease_find(l, id) == NULL) {
            return id;
        }
    }
}

bool lessor_is_primary(const struct lessor *l)
{
    return l->primary && !l->stopped;
}

int lessor_renew(struct lessor *l, int64_t id, int64_t *ttl)
{
    if (!lessor_is_primary(l)) {
        return KEEL_ENOTLEADER;
    }
    struct lease *e = lease_find(l, id);
    int64_t now = now_us(l);
    if (e == NULL || e->expiry_us <= now) {
        /* etcd waits for the revoke of an expired lease to finish, then
         * answers not found; its revoke is already under way here. */
        return KEEL_ELEASENOTFOUND;
    }
    if (e->remaining > 0) {
        /* etcd Renew: clear the checkpointed TTL so a new leader does not
         * expire the renewed lease early. */
        int64_t zero = 0;
        propose_checkpoints(l, &e->id, &zero, 1);
    }
    e->expiry_us = now + e->ttl * US_PER_S;
    *ttl = e->ttl;
    l->stats.renewed++;
    return 0;
}

int lessor_time_to_live(struct lessor *l,
                        int64_t id,
                        int64_t *remaining,
                        int64_t *granted)
{
    if (!lessor_is_primary(l)) {
        return KEEL_ENOTLEADER;
    }
    struct lease *e = lease_find(l, id);
    if (e == NULL) {
        return KEEL_ELEASENOTFOUND;
    }
    *remaining = (e->expiry_us - now_us(l)) / US_PER_S; /* truncated, as Go */
    *granted = e->ttl;
    return 0;
}

int lessor_list(struct lessor *l,
                struct keel_arena *a,
                int64_t **ids,
                size_t *n)
{
    *ids = NULL;
    *n = 0;
    if (l->n_leases == 0) {
        return 0;
    }
    struct lease **v = malloc(l->n_leases * sizeof *v);
    int64_t *out = keel_arena_alloc(a, l->n_leases * sizeof *out);
    if (v == NULL || out == NULL) {
        free(v);
        return KEEL_ENOMEM;
    }
    size_t k = 0;
    FOR_EACH_LEASE(l, e)
    {
        v[k++] = e;
    }
    qsort(v, k, sizeof *v, cmp_expiry);
    for (size_t i = 0; i < k; i++) {
        out[i] = v[i]->id;
    }
    free(v);
    *ids = out;
    *n = k;
    return 0;
}

void lessor_stats(const struct lessor *l, struct lessor_stats *out)
{
    *out = l->stats;
}
