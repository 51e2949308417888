/*
 * lincheck: Wing & Gong / Lowe linearizability search over a register per
 * key (see lincheck.h for the model and the history semantics).
 *
 * Happy path, per key: the key's operations become 2n entries (a call at
 * invoke, a return at complete; unknown outcomes return at +infinity) in
 * one doubly linked list ordered by time, calls before returns at equal
 * times (so touching intervals count as concurrent: the permissive reading,
 * which can miss a violation by one clock tick but never invents one). The
 * search walks the list from its head: a call entry is an operation every
 * real-time predecessor of which is linearized (all returns before it are
 * gone), so it may go next if the model accepts it; it is then "lifted"
 * (its call and return unlinked, pushed on a stack with the state before)
 * and the walk restarts at the head. Meeting a return entry means that
 * operation cannot be linearized before the ones still in the list: pop the
 * last choice, relink it, and try the entry after it. Every state reached is
 * cached as (bitset of linearized operations, register value); reaching a
 * cached state again is pointless, which is what keeps the search
 * polynomial on real histories.
 *
 * Unknown-outcome operations are optional: the key is linearizable as soon
 * as every definite operation is linearized, whatever optional ones are
 * left. Their returns sit at +infinity, after every definite return, so the
 * walk never meets one while a definite operation is still pending.
 *
 * Pruning before the search (sound, see prune_unobserved): an optional
 * write whose value no operation of the key ever observes cannot help any
 * linearization, so it is dropped, as long as the key has no "cas failed"
 * without a result (the only observation that a foreign, unseen value can
 * explain).
 *
 * Failure modes: a step budget and a cache memory budget per key; running
 * out gives LINCHECK_BUDGET. Out of memory gives LINCHECK_BAD_INPUT (the
 * caller cannot tell the difference from bad input, but it never gets a
 * verdict without proof).
 */
#include "lincheck.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* ---- history --------------------------------------------------------------
 */

void lincheck_history_init(struct lincheck_history *h)
{
    memset(h, 0, sizeof(*h));
}

static void op_free(struct lincheck_op *op)
{
    free(op->key);
    free(op->value);
    free(op->expect);
    free(op->result);
}

void lincheck_history_free(struct lincheck_history *h)
{
    for (size_t i = 0; i < h->n; i++) {
        op_free(&h->ops[i]);
    }
    free(h->ops);
    memset(h, 0, sizeof(*h));
}

static int dup_str(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL) {
        return 0;
    }
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

int lincheck_history_add(struct lincheck_history *h,
                         const struct lincheck_op *op)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct lincheck_op *ops = realloc(h->ops, cap * sizeof(*ops));
        if (ops == NULL) {
            return -ENOMEM;
        }
        h->ops = ops;
        h->cap = cap;
    }
    struct lincheck_op *d = &h->ops[h->n];
    *d = *op;
    d->key = d->value = d->expect = d->result = NULL;
    if (dup_str(op->key, &d->key) || dup_str(op->value, &d->value) ||
        dup_str(op->expect, &d->expect) || dup_str(op->result, &d->result)) {
        op_free(d);
        return -ENOMEM;
    }
    if (d->outcome == LINCHECK_UNKNOWN) {
        d->complete = LINCHECK_INFINITY;
    }
    h->n++;
    return 0;
}

/* A string-or-null member: 1 with *out set (NULL for JSON null), 0 when
 * missing, -1 when of another type. */
static int json_str_or_null(json_t *o, const char *name, const char **out)
{
    json_t *v = json_object_get(o, name);
    *out = NULL;
    if (v == NULL) {
        return 0;
    }
    if (json_is_null(v)) {
        return 1;
    }
    if (!json_is_string(v)) {
        return -1;
    }
    *out = json_string_value(v);
    return 1;
}

static int json_time(json_t *o, const char *name, int64_t *out)
{
    json_t *v = json_object_get(o, name);
    if (v == NULL || !json_is_integer(v)) {
        return -1;
    }
    *out = (int64_t)json_integer_value(v);
    return 0;
}

int lincheck_history_parse_line(struct lincheck_history *h, const char *line,
                                int lineno, char *err, size_t errlen)
{
    const char *p = line;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
        p++;
    }
    if (*p == '\0' || *p == '#') {
        return 0;
    }
    json_error_t je;
    json_t *o = json_loads(p, JSON_REJECT_DUPLICATES, &je);
    if (o == NULL) {
        snprintf(err, errlen, "invalid JSON: %s", je.text);
        return -1;
    }
    struct lincheck_op op;
    memset(&op, 0, sizeof(op));
    op.line = lineno;
    int rc = -1;
    const char *s;
    if (!json_is_object(o)) {
        snprintf(err, errlen, "not a JSON object");
        goto out;
    }
    json_t *c = json_object_get(o, "client");
    if (c == NULL || !json_is_integer(c)) {
        snprintf(err, errlen, "\"client\" must be an integer");
        goto out;
    }
    op.client = (int)json_integer_value(c);
    s = json_string_value(json_object_get(o, "op"));
    if (s == NULL) {
        snprintf(err, errlen, "\"op\" must be a string");
        goto out;
    } else if (strcmp(s, "get") == 0) {
        op.kind = LINCHECK_GET;
    } else if (strcmp(s, "put") == 0) {
        op.kind = LINCHECK_PUT;
    } else if (strcmp(s, "cas") == 0) {
        op.kind = LINCHECK_CAS;
    } else if (strcmp(s, "del") == 0) {
        op.kind = LINCHECK_DEL;
    } else {
        snprintf(err, errlen, "unknown op \"%s\" (get, put, cas, del)", s);
        goto out;
    }
    s = json_string_value(json_object_get(o, "outcome"));
    if (s == NULL) {
        snprintf(err, errlen, "\"outcome\" must be a string");
        goto out;
    } else if (strcmp(s, "ok") == 0) {
        op.outcome = LINCHECK_OK;
    } else if (strcmp(s, "fail") == 0) {
        op.outcome = LINCHECK_FAIL;
    } else if (strcmp(s, "unknown") == 0) {
        op.outcome = LINCHECK_UNKNOWN;
    } else {
        snprintf(err, errlen, "unknown outcome \"%s\" (ok, fail, unknown)",
                 s);
        goto out;
    }
    const char *key = json_string_value(json_object_get(o, "key"));
    if (key == NULL) {
        snprintf(err, errlen, "\"key\" must be a string");
        goto out;
    }
    op.key = (char *)key;
    if (json_time(o, "invoke", &op.invoke) != 0) {
        snprintf(err, errlen, "\"invoke\" must be an integer");
        goto out;
    }
    if (op.outcome == LINCHECK_UNKNOWN) {
        op.complete = LINCHECK_INFINITY;
    } else if (json_time(o, "complete", &op.complete) != 0) {
        snprintf(err, errlen, "\"complete\" must be an integer");
        goto out;
    } else if (op.complete < op.invoke) {
        snprintf(err, errlen, "\"complete\" %" PRId64 " before \"invoke\" %"
                 PRId64, op.complete, op.invoke);
        goto out;
    }
    const char *value = NULL, *expect = NULL, *result = NULL;
    int has_value = json_str_or_null(o, "value", &value);
    int has_expect = json_str_or_null(o, "expect", &expect);
    int has_result = json_str_or_null(o, "result", &result);
    if (has_value < 0 || has_expect < 0 || has_result < 0) {
        snprintf(err, errlen,
                 "\"value\", \"expect\", \"result\" must be strings or null");
        goto out;
    }
    if ((op.kind == LINCHECK_PUT || op.kind == LINCHECK_CAS) &&
        (has_value == 0 || value == NULL)) {
        snprintf(err, errlen, "%s needs a string \"value\"",
                 op.kind == LINCHECK_PUT ? "put" : "cas");
        goto out;
    }
    if (op.kind == LINCHECK_CAS && has_expect == 0) {
        snprintf(err, errlen, "cas needs \"expect\" (a string, or null for "
                 "an absent key)");
        goto out;
    }
    if (op.kind == LINCHECK_GET && op.outcome == LINCHECK_OK &&
        has_result == 0) {
        snprintf(err, errlen, "get with outcome ok needs \"result\" (a "
                 "string, or null for an absent key)");
        goto out;
    }
    op.value = (char *)value;
    op.expect = (char *)expect;
    op.result = (char *)result;
    op.has_result = has_result == 1;
    if (lincheck_history_add(h, &op) != 0) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int lincheck_history_read(struct lincheck_history *h, FILE *f, char *err,
                          size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    char msg[256];
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        if (lincheck_history_parse_line(h, line, lineno, msg, sizeof(msg))) {
            snprintf(err, errlen, "line %d: %s", lineno, msg);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "read error after line %d", lineno);
        rc = -1;
    }
    free(line);
    return rc;
}

static void print_json_str(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
        return;
    }
    json_t *j = json_string(s);
    char *t = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    fputs(t ? t : "\"?\"", f);
    free(t);
    json_decref(j);
}

void lincheck_op_print(FILE *f, const struct lincheck_op *op)
{
    static const char *const kinds[] = {"get", "put", "cas", "del"};
    static const char *const outcomes[] = {"ok", "fail", "unknown"};
    fprintf(f, "{\"client\":%d,\"op\":\"%s\",\"key\":", op->client,
            kinds[op->kind]);
    print_json_str(f, op->key);
    if (op->kind == LINCHECK_PUT || op->kind == LINCHECK_CAS) {
        fputs(",\"value\":", f);
        print_json_str(f, op->value);
    }
    if (op->kind == LINCHECK_CAS) {
        fputs(",\"expect\":", f);
        print_json_str(f, op->expect);
    }
    fprintf(f, ",\"invoke\":%" PRId64, op->invoke);
    if (op->outcome != LINCHECK_UNKNOWN) {
        fprintf(f, ",\"complete\":%" PRId64, op->complete);
    }
    fprintf(f, ",\"outcome\":\"%s\"", outcomes[op->outcome]);
    if (op->has_result) {
        fputs(",\"result\":", f);
        print_json_str(f, op->result);
    }
    fputs("}", f);
}

/* ---- per-key model --------------------------------------------------------
 *
 * Values are interned per key: 0 is "absent", 1.. the distinct strings. */

enum model_step {
    M_READ,       /* state must be a (get ok; cas fail with result) */
    M_WRITE,      /* state := b (put; del with b = 0) */
    M_CAS,        /* state must be a; state := b */
    M_NOTEQ,      /* state must differ from a (cas fail, no result) */
    M_IMPOSSIBLE, /* cas "failed" yet reported the expected value */
};

struct kop
{
    const struct lincheck_op *op;
    enum model_step m;
    int32_t a, b;
    int optional;
};

static int model_step(const struct kop *o, int32_t s, int32_t *out)
{
    switch (o->m) {
        case M_READ:
            *out = s;
            return s == o->a;
        case M_WRITE:
            *out = o->b;
            return 1;
        case M_CAS:
            *out = o->b;
            return s == o->a;
        case M_NOTEQ:
            *out = s;
            return s != o->a;
        case M_IMPOSSIBLE:
            break;
    }
    return 0;
}

struct intern
{
    const char **strs; /* slot -> string (NULL = empty slot) */
    int32_t *ids;
    size_t cap, n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t x = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) {
        x = (x ^ (unsigned char)*s) * 1099511628211ull;
    }
    return x;
}

static int intern_init(struct intern *in, size_t want)
{
    in->cap = 16;
    while (in->cap < want * 2) {
        in->cap *= 2;
    }
    in->n = 0;
    in->strs = calloc(in->cap, sizeof(*in->strs));
    in->ids = calloc(in->cap, sizeof(*in->ids));
    return in->strs && in->ids ? 0 : -ENOMEM;
}

static void intern_free(struct intern *in)
{
    free(in->strs);
    free(in->ids);
}

/* The id of s (0 for NULL), adding it if new. The table is sized for every
 * string of the key up front, so it never fills. */
static int32_t intern_id(struct intern *in, const char *s)
{
    if (s == NULL) {
        return 0;
    }
    size_t i = hash_str(s) & (in->cap - 1);
    while (in->strs[i] != NULL) {
        if (strcmp(in->strs[i], s) == 0) {
            return in->ids[i];
        }
        i = (i + 1) & (in->cap - 1);
    }
    in->strs[i] = s;
    in->ids[i] = (int32_t)++in->n;
    return in->ids[i];
}

/* ---- the set of linearized operations ---------------------------------------
 *
 * A bitset over the key's operations (indexed in invoke order) kept with
 * `lead`, the number of leading all-ones words, and `top`, one past the
 * last non-zero word. The search linearizes roughly in invoke order, so
 * nearly every set is "everything before lead, a few bits up to top": the
 * cache stores only words [lead, top), which keeps a state at a few dozen
 * bytes however long the history. (lead, top, those words) is canonical:
 * equal sets give equal records. */

struct bitset
{
    uint64_t *w;
    size_t lead, top;
};

static void bitset_set(struct bitset *b, int i)
{
    size_t k = (size_t)i / 64;
    b->w[k] |= 1ull << (i % 64);
    if (k >= b->top) {
        b->top = k + 1;
    }
    while (b->lead < b->top && b->w[b->lead] == ~0ull) {
        b->lead++;
    }
}

static void bitset_clear(struct bitset *b, int i)
{
    size_t k = (size_t)i / 64;
    b->w[k] &= ~(1ull << (i % 64));
    if (k < b->lead) {
        b->lead = k;
    }
    while (b->top > b->lead && b->w[b->top - 1] == 0) {
        b->top--;
    }
}

/* ---- memoization cache ------------------------------------------------------
 *
 * Records (hash, state, lead, the words [lead, top)) in an array of
 * records plus one growing array of words; an open addressing table of
 * record numbers + 1 (0 = empty) finds them. */

struct crec
{
    uint64_t hash;
    int32_t state;
    uint32_t len;  /* words stored */
    uint64_t lead; /* leading all-ones words */
    uint64_t off;  /* into words */
};

struct cache
{
    struct crec *rec;
    size_t nrec, reccap;
    uint64_t *words;
    size_t nwords, wordcap;
    uint32_t *table;
    size_t tcap;
    size_t max_bytes;
};

static size_t cache_bytes(const struct cache *c)
{
    return c->reccap * sizeof(struct crec) + c->wordcap * 8 + c->tcap * 4;
}

static int cache_init(struct cache *c, size_t max_bytes)
{
    memset(c, 0, sizeof(*c));
    c->max_bytes = max_bytes;
    c->tcap = 1024;
    c->table = calloc(c->tcap, sizeof(*c->table));
    return c->table ? 0 : -ENOMEM;
}

static void cache_free(struct cache *c)
{
    free(c->rec);
    free(c->words);
    free(c->table);
}

/* Grow *p (of *cap elements of size sz) to hold `need`; -1 past the memory
 * budget, -ENOMEM. */
static int cache_grow(struct cache *c, void **p, size_t *cap, size_t sz,
                      size_t need)
{
    if (need <= *cap) {
        return 0;
    }
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need) {
        ncap *= 2;
    }
    if (cache_bytes(c) + (ncap - *cap) * sz > c->max_bytes) {
        return -1;
    }
    void *np = realloc(*p, ncap * sz);
    if (np == NULL) {
        return -ENOMEM;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

static size_t slot_of(uint64_t h, size_t tcap)
{
    return (size_t)(h ^ (h >> 29)) & (tcap - 1);
}

/* 1 when (h, s, b) was new and is now cached, 0 when it was there, -1 when
 * the memory budget is spent, -ENOMEM. */
static int cache_add(struct cache *c, uint64_t h, int32_t s,
                     const struct bitset *b)
{
    size_t len = b->top - b->lead;
    size_t i = slot_of(h, c->tcap);
    for (; c->table[i] != 0; i = (i + 1) & (c->tcap - 1)) {
        const struct crec *r = &c->rec[c->table[i] - 1];
        if (r->hash == h && r->state == s && r->lead == b->lead &&
            r->len == len &&
            memcmp(c->words + r->off, b->w + b->lead, len * 8) == 0) {
            return 0;
        }
    }
    int rc = cache_grow(c, (void **)&c->rec, &c->reccap, sizeof(struct crec),
                        c->nrec + 1);
    if (rc == 0) {
        rc = cache_grow(c, (void **)&c->words, &c->wordcap, 8,
                        c->nwords + len);
    }
    if (rc != 0 || c->nrec + 1 >= UINT32_MAX) {
        return rc ? rc : -1;
    }
    struct crec *r = &c->rec[c->nrec];
    r->hash = h;
    r->state = s;
    r->len = (uint32_t)len;
    r->lead = b->lead;
    r->off = c->nwords;
    memcpy(c->words + c->nwords, b->w + b->lead, len * 8);
    c->nwords += len;
    c->table[i] = (uint32_t)++c->nrec;
    if (c->nrec * 2 > c->tcap) {
        size_t tcap = c->tcap * 2;
        if (cache_bytes(c) + tcap * 4 > c->max_bytes) {
            return -1;
        }
        uint32_t *t = calloc(tcap, sizeof(*t));
        if (t == NULL) {
            return -ENOMEM;
        }
        for (size_t k = 0; k < c->nrec; k++) {
            size_t j = slot_of(c->rec[k].hash, tcap);
            while (t[j] != 0) {
                j = (j + 1) & (tcap - 1);
            }
            t[j] = (uint32_t)(k + 1);
        }
        free(c->table);
        c->table = t;
        c->tcap = tcap;
    }
    return 1;
}

/* ---- the search ------------------------------------------------------------
 */

struct entry
{
    int64_t t;
    int idx; /* into the key's kops */
    int is_ret;
    struct entry *prev, *next, *match;
};

static int entry_cmp(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->t != b->t) {
        return a->t < b->t ? -1 : 1;
    }
    if (a->is_ret != b->is_ret) {
        return a->is_ret - b->is_ret; /* calls first: concurrent */
    }
    return a->idx - b->idx;
}

static void lift(struct entry *call)
{
    call->prev->next = call->next;
    call->next->prev = call->prev; /* a call always has its return after */
    struct entry *ret = call->match;
    ret->prev->next = ret->next;
    if (ret->next) {
        ret->next->prev = ret->prev;
    }
}

static void unlift(struct entry *call)
{
    struct entry *ret = call->match;
    ret->prev->next = ret;
    if (ret->next) {
        ret->next->prev = ret;
    }
    call->prev->next = call;
    call->next->prev = call;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Operations that leave the register as it is: get, failed cas. */
static int is_read(const struct kop *k)
{
    return k->m == M_READ || k->m == M_NOTEQ;
}

struct frame
{
    struct entry *e;
    int32_t state;
    uint64_t hash;
    int forced; /* a read taken without alternatives (see search) */
};

struct key_result
{
    enum lincheck_verdict v;
    uint64_t steps;
    size_t cache_n;
    int best_depth;   /* most operations linearized at once */
    int best_idx;     /* the operation that could not follow them */
    int32_t best_state;
};

/* Pair each call entry with its return after sorting; link the list after
 * the sentinel `head`. 0 or -ENOMEM. */
static int build_list(const struct kop *kops, size_t n, struct entry *ents)
{
    for (size_t i = 0; i < n; i++) {
        struct entry *c = &ents[2 * i], *r = &ents[2 * i + 1];
        c->t = kops[i].op->invoke;
        c->idx = (int)i;
        r->t = kops[i].optional ? LINCHECK_INFINITY : kops[i].op->complete;
        r->idx = (int)i;
        r->is_ret = 1;
    }
    qsort(ents, 2 * n, sizeof(*ents), entry_cmp);
    int *callpos = malloc((n + 1) * sizeof(int));
    if (callpos == NULL) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < 2 * n; i++) {
        if (!ents[i].is_ret) {
            callpos[ents[i].idx] = (int)i;
        }
    }
    for (size_t i = 0; i < 2 * n; i++) {
        if (ents[i].is_ret) {
            ents[callpos[ents[i].idx]].match = &ents[i];
        }
    }
    free(callpos);
    struct entry *head = &ents[2 * n];
    head->prev = NULL;
    head->next = n ? &ents[0] : NULL;
    for (size_t i = 0; i < 2 * n; i++) {
        ents[i].prev = i ? &ents[i - 1] : head;
        ents[i].next = i + 1 < 2 * n ? &ents[i + 1] : NULL;
    }
    return 0;
}

/*
 * The depth-first search. One refinement over Lowe's: a read (get, failed
 * cas) that may go next and agrees with the current value is taken at once
 * and without alternatives ("forced"): any linearization from this state
 * that places it later stays valid with it moved here (it changes nothing,
 * and every operation that real time orders before it is already
 * linearized), so if the state after it fails, the state before it fails
 * too and backtracking goes straight past it. This removes the branching
 * over reads, which is most of the search on read-heavy histories.
 */
static enum lincheck_verdict search(const struct kop *kops, size_t n,
                                    const struct lincheck_opts *o,
                                    struct key_result *kr)
{
    enum lincheck_verdict v = LINCHECK_BAD_INPUT;
    struct entry *ents = calloc(2 * n + 1, sizeof(*ents));
    struct frame *stack = calloc(n + 1, sizeof(*stack));
    uint64_t *zob = calloc(n + 1, sizeof(*zob));
    struct bitset bits = {calloc((n + 63) / 64 + 1, 8), 0, 0};
    struct cache cache;
    int cache_ok = cache_init(&cache, o->max_cache_bytes) == 0;
    if (!ents || !stack || !zob || !bits.w || !cache_ok ||
        build_list(kops, n, ents) != 0) {
        goto out;
    }
    size_t remaining = 0;
    for (size_t i = 0; i < n; i++) {
        zob[i] = splitmix(i * 2654435761u + 12345);
        remaining += !kops[i].optional;
    }
    struct entry *head = &ents[2 * n];
    int32_t state = 0;
    uint64_t hash = 0;
    size_t sp = 0;
    struct entry *e = head->next;
    int fresh = 1; /* just arrived at a new state: look for a forced read */
    kr->best_depth = -1;
    for (;;) {
        if (remaining == 0) {
            v = LINCHECK_LINEARIZABLE;
            break;
        }
        if (++kr->steps > o->max_steps) {
            v = LINCHECK_BUDGET;
            break;
        }
        int forced = 0;
        if (fresh) {
            fresh = 0;
            /* the calls before the first return are the ones that may go
             * next; a read among them that agrees is forced */
            for (struct entry *x = head->next; x && !x->is_ret; x = x->next) {
                int32_t ns;
                if (is_read(&kops[x->idx]) &&
                    model_step(&kops[x->idx], state, &ns)) {
                    e = x;
                    forced = 1;
                    break;
                }
            }
        }
        /* While a definite operation is pending, its return (finite time)
         * lies before the +infinity returns and the end of the list. */
        int lifted = 0;
        if (!e->is_ret) {
            const struct kop *k = &kops[e->idx];
            int32_t ns;
            if (model_step(k, state, &ns)) {
                uint64_t nh = hash ^ zob[e->idx];
                bitset_set(&bits, e->idx);
                int rc = cache_add(&cache, nh ^ splitmix((uint64_t)ns), ns,
                                   &bits);
                if (rc == 1) {
                    stack[sp].e = e;
                    stack[sp].state = state;
                    stack[sp].hash = hash;
                    stack[sp].forced = forced;
                    sp++;
                    state = ns;
                    hash = nh;
                    remaining -= !k->optional;
                    lift(e);
                    e = head->next;
                    fresh = 1;
                    lifted = 1;
                } else {
                    bitset_clear(&bits, e->idx);
                    if (rc < 0) {
                        v = rc == -1 ? LINCHECK_BUDGET : LINCHECK_BAD_INPUT;
                        break;
                    }
                }
            }
            if (!lifted && !forced) {
                e = e->next;
                continue;
            }
            if (lifted) {
                continue;
            }
            /* a forced read leading to a state already explored: this
             * state fails as well; fall through to backtrack */
        } else if ((int)sp > kr->best_depth) {
            kr->best_depth = (int)sp;
            kr->best_idx = e->idx;
            kr->best_state = state;
        }
        /* backtrack: undo the last choice, and past forced reads */
        struct entry *c = NULL;
        int more;
        do {
            if (sp == 0) {
                c = NULL;
                break;
            }
            sp--;
            c = stack[sp].e;
            more = stack[sp].forced;
            state = stack[sp].state;
            hash = stack[sp].hash;
            bitset_clear(&bits, c->idx);
            remaining += !kops[c->idx].optional;
            unlift(c);
        } while (more);
        if (c == NULL) {
            v = LINCHECK_VIOLATION;
            break;
        }
        e = c->next;
    }
    kr->cache_n = cache.nrec;
out:
    if (cache_ok) {
        cache_free(&cache);
    }
    free(ents);
    free(stack);
    free(zob);
    free(bits.w);
    return v;
}

/* ---- per-key preparation ---------------------------------------------------
 */

static int op_key_cmp(const void *pa, const void *pb)
{
    const struct lincheck_op *a = *(const struct lincheck_op *const *)pa;
    const struct lincheck_op *b = *(const struct lincheck_op *const *)pb;
    int c = strcmp(a->key, b->key);
    if (c != 0) {
        return c;
    }
    return a->invoke < b->invoke ? -1 : a->invoke > b->invoke;
}

/* Does the operation take part in the search? Failed or unknown reads say
 * nothing; a write that definitely failed did not happen. A failed cas is a
 * read (the value differed from expect). */
static int op_relevant(const struct lincheck_op *op)
{
    switch (op->kind) {
        case LINCHECK_GET:
            return op->outcome == LINCHECK_OK;
        case LINCHECK_PUT:
        case LINCHECK_DEL:
            return op->outcome != LINCHECK_FAIL;
        case LINCHECK_CAS:
            return 1;
    }
    return 0;
}

/* Drop optional writes whose value nobody observes. Sound when no "cas
 * fail" without a result exists: in any linearization containing such a
 * write W (value w), every operation placed after W and before the next
 * write must accept state w, i.e. observe w (get/cas/cas-fail-with-result
 * equal to w) — there is none — so W is directly followed by a write or by
 * nothing, and removing W leaves a valid linearization. */
static size_t prune_unobserved(struct kop *kops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (kops[i].m == M_NOTEQ) {
            return n;
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int drop = 0;
        if (kops[i].optional) {
            int32_t w = kops[i].b;
            drop = 1;
            for (size_t j = 0; j < n && drop; j++) {
                if ((kops[j].m == M_READ || kops[j].m == M_CAS) &&
                    kops[j].a == w) {
                    drop = 0;
                }
            }
        }
        if (!drop) {
            kops[m++] = kops[i];
        }
    }
    return m;
}

static void report_op(FILE *f, const struct lincheck_op *op, const char *tag)
{
    fprintf(f, "  %s line %d: ", tag, op->line);
    lincheck_op_print(f, op);
    fputc('\n', f);
}

static int by_invoke(const void *pa, const void *pb)
{
    const struct kop *a = pa, *b = pb;
    if (a->op->invoke != b->op->invoke) {
        return a->op->invoke < b->op->invoke ? -1 : 1;
    }
    return a->op->line - b->op->line;
}

/* The operation that could not be linearized, with the writes that
 * completed just before it and every operation overlapping it. */
static void report_violation(FILE *f, const char *key, struct kop *kops,
                             size_t n, const struct key_result *kr,
                             const struct intern *in,
                             const struct lincheck_opts *o)
{
    const struct lincheck_op *bad = kops[kr->best_idx].op;
    const char *state = NULL;
    for (size_t i = 0; i < in->cap; i++) {
        if (in->strs[i] && in->ids[i] == kr->best_state) {
            state = in->strs[i];
        }
    }
    fprintf(f, "not linearizable: key ");
    print_json_str(f, key);
    fprintf(f, ": after %d of its %zu operations were linearized (the value "
            "then: ", kr->best_depth, n);
    print_json_str(f, state);
    fprintf(f, "), the operation at line %d fits nowhere:\n", bad->line);
    report_op(f, bad, "=>");
    qsort(kops, n, sizeof(*kops), by_invoke);
    /* the two last writes completed before it was invoked */
    size_t before[2];
    int nb = 0;
    for (size_t i = n; i-- > 0 && nb < 2;) {
        const struct lincheck_op *p = kops[i].op;
        if (p->complete < bad->invoke && p->kind != LINCHECK_GET &&
            p->outcome == LINCHECK_OK) {
            before[nb++] = i;
        }
    }
    if (nb) {
        fprintf(f, " last writes completed before it:\n");
    }
    for (int k = nb; k-- > 0;) {
        report_op(f, kops[before[k]].op, "  ");
    }
    fprintf(f, " operations overlapping it:\n");
    int shown = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lincheck_op *p = kops[i].op;
        if (p == bad || p->invoke > bad->complete || p->complete < bad->invoke)
        {
            continue;
        }
        if (shown == o->max_report_ops) {
            fprintf(f, "  ... (more)\n");
            break;
        }
        report_op(f, p, "  ");
        shown++;
    }
    if (shown == 0) {
        fprintf(f, "  (none)\n");
    }
}

enum lincheck_verdict lincheck_check(const struct lincheck_history *h,
                                     const struct lincheck_opts *opts,
                                     struct lincheck_stats *stats,
                                     FILE *report)
{
    struct lincheck_opts o = {50 * 1000 * 1000, (size_t)1 << 30, 24};
    if (opts) {
        if (opts->max_steps) {
            o.max_steps = opts->max_steps;
        }
        if (opts->max_cache_bytes) {
            o.max_cache_bytes = opts->max_cache_bytes;
        }
        if (opts->max_report_ops) {
            o.max_report_ops = opts->max_report_ops;
        }
    }
    struct lincheck_stats st;
    memset(&st, 0, sizeof(st));
    enum lincheck_verdict verdict = LINCHECK_LINEARIZABLE;
    const struct lincheck_op **byk = malloc((h->n + 1) * sizeof(*byk));
    struct kop *kops = malloc((h->n + 1) * sizeof(*kops));
    if (!byk || !kops) {
        verdict = LINCHECK_BAD_INPUT;
        goto out;
    }
    for (size_t i = 0; i < h->n; i++) {
        byk[i] = &h->ops[i];
    }
    qsort(byk, h->n, sizeof(*byk), op_key_cmp);
    for (size_t lo = 0, hi; lo < h->n; lo = hi) {
        for (hi = lo; hi < h->n && strcmp(byk[hi]->key, byk[lo]->key) == 0;
             hi++) {
        }
        struct intern in;
        if (intern_init(&in, 3 * (hi - lo) + 1) != 0) {
            intern_free(&in);
            verdict = LINCHECK_BAD_INPUT;
            goto out;
        }
        size_t n = 0;
        for (size_t i = lo; i < hi; i++) {
            const struct lincheck_op *op = byk[i];
            if (!op_relevant(op)) {
                st.dropped++;
                continue;
            }
            struct kop *k = &kops[n++];
            k->op = op;
            k->optional = op->outcome == LINCHECK_UNKNOWN;
            k->a = k->b = 0;
            switch (op->kind) {
                case LINCHECK_GET:
                    k->m = M_READ;
                    k->a = intern_id(&in, op->result);
                    break;
                case LINCHECK_PUT:
                    k->m = M_WRITE;
                    k->b = intern_id(&in, op->value);
                    break;
                case LINCHECK_DEL:
                    k->m = M_WRITE;
                    break;
                case LINCHECK_CAS:
                    k->a = intern_id(&in, op->expect);
                    k->b = intern_id(&in, op->value);
                    if (op->outcome != LINCHECK_FAIL) {
                        k->m = M_CAS;
                    } else if (!op->has_result) {
                        k->m = M_NOTEQ;
                    } else {
                        int32_t r = intern_id(&in, op->result);
                        k->m = r == k->a ? M_IMPOSSIBLE : M_READ;
                        k->a = r;
                    }
                    break;
            }
        }
        size_t kept = prune_unobserved(kops, n);
        st.dropped += n - kept;
        n = kept;
        st.ops += n;
        st.keys++;
        struct key_result kr;
        memset(&kr, 0, sizeof(kr));
        enum lincheck_verdict v = search(kops, n, &o, &kr);
        st.steps += kr.steps;
        if (kr.cache_n > st.cache_max) {
            st.cache_max = kr.cache_n;
        }
        if (v == LINCHECK_VIOLATION) {
            if (report) {
                report_violation(report, byk[lo]->key, kops, n, &kr, &in, &o);
            }
            verdict = LINCHECK_VIOLATION;
        } else if (v == LINCHECK_BUDGET || v == LINCHECK_BAD_INPUT) {
            if (report) {
                fprintf(report, "key ");
                print_json_str(report, byk[lo]->key);
                fprintf(report, ": %s after %" PRIu64 " steps (%zu ops, %zu "
                        "cached states)\n",
                        v == LINCHECK_BUDGET ? "search budget exhausted"
                                             : "out of memory",
                        kr.steps, n, kr.cache_n);
            }
            if (verdict == LINCHECK_LINEARIZABLE) {
                verdict = v;
            }
        }
        intern_free(&in);
    }
out:
    free(byk);
    free(kops);
    if (stats) {
        *stats = st;
    }
    return verdict;
}
