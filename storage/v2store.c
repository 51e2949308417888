/*
 * storage/v2store.c: etcd 3.4's v2 key tree on the MVCC environment's `v2`
 * table (contract in v2store.h).
 *
 * Happy path of a write: the request is dispatched as etcd's applierV2store
 * does (PUT -> Set / Create / Update / CompareAndSwap by prevExist and the
 * compare fields; POST -> Create unique; DELETE -> Delete or
 * CompareAndDelete; SYNC -> DeleteExpiredKeys), the in-memory tree is
 * changed, every changed node is written to (or removed from) the table in
 * the caller's batch, then the store's index. The event is built in the
 * caller's arena.
 *
 * Failure modes: a v2 error changes nothing except what etcd also keeps
 * (directories made on the way by a failed create stay, as in etcd's
 * checkDir); a table write error returns the C error, and the caller
 * aborts the process (apply errors are fatal), so memory and table never
 * diverge in a running member.
 *
 * The tree: each directory keeps its children sorted by name (binary
 * search), so a sorted listing is a walk. Nodes with a TTL are also in an
 * array (ttl_pos is 1 + their position) scanned by SYNC; expiry order is
 * (expire time, path), deterministic on every member.
 */
#include "v2store.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "keel_err.h"
#include "mvcc.h"

struct v2node
{
    char *path; /* "" for the root, else "/a/b" */
    size_t path_len;
    const char *name; /* after the last '/' */
    struct v2node *parent;
    bool dir;
    uint64_t created, modified;
    int64_t expire; /* unix ns, 0 = permanent */
    uint8_t *value;
    size_t value_len;
    struct v2node **kids; /* sorted by name */
    size_t n_kids, cap_kids;
    size_t ttl_pos; /* 1 + position in v2store.ttl, 0 = none */
};

struct v2store
{
    struct mvcc_store *mvcc;
    struct v2node *root;
    uint64_t index;
    size_t count;
    struct v2node **ttl;
    size_t n_ttl, cap_ttl;
    struct v2store_stats stats;
};

static const char index_key[] = "\0index";
#define INDEX_KEY_LEN 6
#define MAX_PLAIN_KEY 400
/* etcd: minExpireTime, 2000-01-01T00:00:00Z */
#define MIN_EXPIRE_NS (946684800LL * 1000000000LL)

/* ---- errors ---------------------------------------------------------- */

const char *v2store_error_message(int code)
{
    switch (code) {
        case 100: return "Key not found";
        case 101: return "Compare failed";
        case 102: return "Not a file";
        case 103: return "Reached the max number of peers in the cluster";
        case 104: return "Not a directory";
        case 105: return "Key already exists";
        case 106: return "The prefix of given key is a keyword in etcd";
        case 107: return "Root is read only";
        case 108: return "Directory not empty";
        case 109: return "Peer address has existed";
        case 110: return "The request requires user authentication";
        case 200: return "Value is Required in POST form";
        case 201: return "PrevValue is Required in POST form";
        case 202: return "The given TTL in POST form is not a number";
        case 203: return "The given index in POST form is not a number";
        case 204: return "Value or TTL is required in POST form";
        case 205: return "The given timeout in POST form is not a number";
        case 206: return "Name is required in POST form";
        case 207: return "Index or value is required";
        case 208: return "Index and value cannot both be specified";
        case 209: return "Invalid field";
        case 210: return "Invalid POST form";
        case 211: return "Value provided on refresh";
        case 212: return "A TTL must be provided on refresh";
        case 300: return "Raft Internal Error";
        case 301: return "During Leader Election";
        case 400: return "watcher is cleared due to etcd recovery";
        case 401: return "The event in requested index is outdated and cleared";
        case 402: return "Standby Internal Error";
        case 403: return "Invalid active size";
        case 404: return "Standby remove delay";
        case 500: return "Client Internal Error";
        default: return "";
    }
}

int v2store_error_status(int code)
{
    switch (code) {
        case V2_ECODE_KEY_NOT_FOUND: return 404;
        case V2_ECODE_NOT_FILE:
        case V2_ECODE_DIR_NOT_EMPTY: return 403;
        case V2_ECODE_UNAUTHORIZED: return 401;
        case V2_ECODE_TEST_FAILED:
        case V2_ECODE_NODE_EXIST: return 412;
        case V2_ECODE_RAFT_INTERNAL:
        case V2_ECODE_LEADER_ELECT: return 500;
        default: return 400;
    }
}

/* ---- paths ------------------------------------------------------------- */

/* The next element of p[*i, len) after any slashes: its offset in *start,
 * its length returned (0: no more), *i moved past it. */
static size_t next_elem(const char *p, size_t len, size_t *i, size_t *start)
{
    while (*i < len && p[*i] == '/') {
        (*i)++;
    }
    *start = *i;
    while (*i < len && p[*i] != '/') {
        (*i)++;
    }
    return *i - *start;
}

char *v2store_clean_path(struct keel_arena *a, const char *p, size_t len)
{
    /* Go's path.Clean of "/" + p: rooted, so ".." at the root vanishes. */
    char *out = keel_arena_alloc(a, len + 2);
    if (out == NULL) {
        return NULL;
    }
    size_t w = 0;
    size_t pos = 0, i, n;
    out[w++] = '/';
    while ((n = next_elem(p, len, &pos, &i)) > 0) {
        if (n == 1 && p[i] == '.') {
            /* skip */
        } else if (n == 2 && p[i] == '.' && p[i + 1] == '.') {
            while (w > 1 && out[w - 1] != '/') {
                w--;
            }
            if (w > 1) {
                w--; /* the slash before the dropped element */
            }
        } else {
            if (w > 1) {
                out[w++] = '/';
            }
            memcpy(out + w, p + i, n);
            w += n;
        }
    }
    out[w] = '\0';
    return out;
}

/* ---- tree -------------------------------------------------------------- */

static struct v2node *node_new(struct v2node *parent, const char *name,
                               size_t nlen, bool dir)
{
    struct v2node *n = calloc(1, sizeof *n);
    if (n == NULL) {
        return NULL;
    }
    size_t plen = parent != NULL ? parent->path_len + 1 + nlen : 0;
    n->path = malloc(plen + 1);
    if (n->path == NULL) {
        free(n);
        return NULL;
    }
    if (parent != NULL) {
        memcpy(n->path, parent->path, parent->path_len);
        n->path[parent->path_len] = '/';
        memcpy(n->path + parent->path_len + 1, name, nlen);
    }
    n->path[plen] = '\0';
    n->path_len = plen;
    n->name = parent != NULL ? n->path + parent->path_len + 1 : n->path;
    n->parent = parent;
    n->dir = dir;
    return n;
}

/* Position of name among d's children (or where it would go). */
static size_t kid_pos(const struct v2node *d, const char *name, size_t nlen,
                      bool *found)
{
    size_t lo = 0, hi = d->n_kids;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct v2node *k = d->kids[mid];
        size_t klen = k->path_len - (size_t)(k->name - k->path);
        size_t m = klen < nlen ? klen : nlen;
        int c = memcmp(k->name, name, m);
        if (c == 0) {
            c = klen < nlen ? -1 : klen > nlen ? 1 : 0;
        }
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct v2node *kid_get(const struct v2node *d, const char *name,
                              size_t nlen)
{
    bool found;
    size_t i = kid_pos(d, name, nlen, &found);
    return found ? d->kids[i] : NULL;
}

static int kid_add(struct v2store *v, struct v2node *d, struct v2node *k)
{
    bool found;
    size_t nlen = k->path_len - (size_t)(k->name - k->path);
    size_t i = kid_pos(d, k->name, nlen, &found);
    assert(!found);
    if (d->n_kids == d->cap_kids) {
        size_t cap = d->cap_kids ? d->cap_kids * 2 : 4;
        struct v2node **nk = realloc(d->kids, cap * sizeof *nk);
        if (nk == NULL) {
            return KEEL_ENOMEM;
        }
        d->kids = nk;
        d->cap_kids = cap;
    }
    memmove(d->kids + i + 1, d->kids + i, (d->n_kids - i) * sizeof *d->kids);
    d->kids[i] = k;
    d->n_kids++;
    v->count++;
    return 0;
}

static void ttl_remove(struct v2store *v, struct v2node *n)
{
    if (n->ttl_pos == 0) {
        return;
    }
    size_t i = n->ttl_pos - 1;
    v->ttl[i] = v->ttl[--v->n_ttl];
    v->ttl[i]->ttl_pos = i + 1;
    n->ttl_pos = 0;
}

static int ttl_add(struct v2store *v, struct v2node *n)
{
    if (n->ttl_pos != 0) {
        return 0;
    }
    if (v->n_ttl == v->cap_ttl) {
        size_t cap = v->cap_ttl ? v->cap_ttl * 2 : 16;
        struct v2node **nt = realloc(v->ttl, cap * sizeof *nt);
        if (nt == NULL) {
            return KEEL_ENOMEM;
        }
        v->ttl = nt;
        v->cap_ttl = cap;
    }
    v->ttl[v->n_ttl++] = n;
    n->ttl_pos = v->n_ttl;
    return 0;
}

static void node_free_tree(struct v2node *n)
{
    for (size_t i = 0; i < n->n_kids; i++) {
        node_free_tree(n->kids[i]);
    }
    free(n->kids);
    free(n->value);
    free(n->path);
    free(n);
}

/* ---- table records ------------------------------------------------------ */

static void put_u64(uint8_t *p, uint64_t x)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)x;
        x >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) {
        x = x << 8 | p[i];
    }
    return x;
}

/* The table key of a path: the path itself, or a digest when long (LMDB
 * keys are short; the record carries the whole path either way). */
static size_t table_key(const struct v2node *n, uint8_t *buf)
{
    if (n->path_len <= MAX_PLAIN_KEY) {
        memcpy(buf, n->path, n->path_len);
        return n->path_len;
    }
    buf[0] = 1;
    SHA256((const unsigned char *)n->path, n->path_len, buf + 1);
    return 1 + SHA256_DIGEST_LENGTH;
}

#define REC_HEAD (1 + 8 + 8 + 8 + 4)

static int persist(struct v2store *v, struct mvcc_write *w,
                   const struct v2node *n)
{
    uint8_t key[MAX_PLAIN_KEY + 1];
    size_t klen = table_key(n, key);
    size_t len = REC_HEAD + n->path_len + n->value_len;
    uint8_t *rec = malloc(len);
    if (rec == NULL) {
        return KEEL_ENOMEM;
    }
    rec[0] = n->dir ? 1 : 0;
    put_u64(rec + 1, n->created);
    put_u64(rec + 9, n->modified);
    put_u64(rec + 17, (uint64_t)n->expire);
    uint32_t pl = (uint32_t)n->path_len;
    rec[25] = (uint8_t)(pl >> 24);
    rec[26] = (uint8_t)(pl >> 16);
    rec[27] = (uint8_t)(pl >> 8);
    rec[28] = (uint8_t)pl;
    memcpy(rec + REC_HEAD, n->path, n->path_len);
    if (n->value_len > 0) {
        memcpy(rec + REC_HEAD + n->path_len, n->value, n->value_len);
    }
    int rv = mvcc_table_put(w, MVCC_TABLE_V2, key, klen, rec, len);
    free(rec);
    (void)v;
    return rv;
}

static int unpersist(struct mvcc_write *w, const struct v2node *n)
{
    uint8_t key[MAX_PLAIN_KEY + 1];
    size_t klen = table_key(n, key);
    int rv = mvcc_table_del(w, MVCC_TABLE_V2, key, klen);
    return rv == KEEL_ENOTFOUND ? 0 : rv;
}

static int persist_index(struct v2store *v, struct mvcc_write *w)
{
    uint8_t b[8];
    put_u64(b, v->index);
    return mvcc_table_put(w, MVCC_TABLE_V2, index_key, INDEX_KEY_LEN, b, 8);
}

/* Find or make (as a directory placeholder, filled by its own record
 * later) the node at path, for loading. */
static struct v2node *load_node(struct v2store *v, const char *path,
                                size_t len)
{
    struct v2node *cur = v->root;
    size_t pos = 0, i, n;
    while ((n = next_elem(path, len, &pos, &i)) > 0) {
        struct v2node *k = kid_get(cur, path + i, n);
        if (k == NULL) {
            k = node_new(cur, path + i, n, true);
            if (k == NULL || kid_add(v, cur, k) != 0) {
                if (k != NULL) {
                    node_free_tree(k);
                }
                return NULL;
            }
        }
        cur = k;
    }
    return cur;
}

static int load_cb(void *arg, const void *key, size_t klen, const void *val,
                   size_t vlen)
{
    struct v2store *v = arg;
    const uint8_t *r = val;
    if (klen == INDEX_KEY_LEN && memcmp(key, index_key, klen) == 0) {
        if (vlen != 8) {
            return KEEL_ECORRUPT;
        }
        v->index = get_u64(r);
        return 0;
    }
    if (vlen < REC_HEAD) {
        return KEEL_ECORRUPT;
    }
    size_t pl = (size_t)r[25] << 24 | (size_t)r[26] << 16 |
                (size_t)r[27] << 8 | r[28];
    if (REC_HEAD + pl > vlen || pl == 0) {
        return KEEL_ECORRUPT;
    }
    struct v2node *n = load_node(v, (const char *)r + REC_HEAD, pl);
    if (n == NULL) {
        return KEEL_ENOMEM;
    }
    n->dir = r[0] != 0;
    n->created = get_u64(r + 1);
    n->modified = get_u64(r + 9);
    n->expire = (int64_t)get_u64(r + 17);
    size_t val_len = vlen - REC_HEAD - pl;
    free(n->value);
    n->value = NULL;
    n->value_len = 0;
    if (val_len > 0) {
        n->value = malloc(val_len);
        if (n->value == NULL) {
            return KEEL_ENOMEM;
        }
        memcpy(n->value, r + REC_HEAD + pl, val_len);
        n->value_len = val_len;
    }
    if (n->expire != 0) {
        return ttl_add(v, n);
    }
    return 0;
}

static void drop_tree(struct v2store *v)
{
    if (v->root != NULL) {
        node_free_tree(v->root);
    }
    v->root = NULL;
    v->n_ttl = 0;
    v->count = 0;
    v->index = 0;
}

int v2store_reload(struct v2store *v)
{
    drop_tree(v);
    v->root = node_new(NULL, "", 0, true);
    if (v->root == NULL) {
        return KEEL_ENOMEM;
    }
    int rv = mvcc_table_foreach(v->mvcc, NULL, MVCC_TABLE_V2, load_cb, v);
    if (rv == KEEL_ENOTFOUND) {
        rv = 0;
    }
    return rv;
}

int v2store_open(struct mvcc_store *s, struct v2store **out)
{
    struct v2store *v = calloc(1, sizeof *v);
    if (v == NULL) {
        return KEEL_ENOMEM;
    }
    v->mvcc = s;
    int rv = v2store_reload(v);
    if (rv != 0) {
        v2store_free(v);
        return rv;
    }
    *out = v;
    return 0;
}

void v2store_free(struct v2store *v)
{
    if (v == NULL) {
        return;
    }
    drop_tree(v);
    free(v->ttl);
    free(v);
}

uint64_t v2store_index(const struct v2store *v)
{
    return v->index;
}

bool v2store_has_ttl(const struct v2store *v)
{
    return v->n_ttl > 0;
}

size_t v2store_count(const struct v2store *v)
{
    return v->count;
}

void v2store_stats(const struct v2store *v, struct v2store_stats *out)
{
    *out = v->stats;
}

int v2store_bump_index(struct v2store *v, struct mvcc_write *w)
{
    v->index++;
    return persist_index(v, w);
}

/* ---- events ------------------------------------------------------------- */

struct op
{
    struct v2store *v;
    struct mvcc_write *w;
    struct keel_arena *a;
    int64_t now;
    Keelpb__V2Response *resp;
    size_t removed_cap; /* of the event being removed into */
    int rv;             /* C error */
};

static int verr(struct op *o, int code, const char *cause, uint64_t index)
{
    o->resp->error_code = code;
    o->resp->cause = (char *)keel_arena_dup(o->a, cause, strlen(cause) + 1);
    o->resp->index = index;
    if (o->resp->cause == NULL) {
        o->rv = KEEL_ENOMEM;
    }
    return code;
}

/* etcd's expirationAndTTL: ceil((expire - now) / 1 s). */
static int64_t ttl_of(int64_t expire, int64_t now)
{
    int64_t d = expire - now;
    int64_t t = d / 1000000000LL;
    if (d % 1000000000LL > 0) {
        t++;
    }
    return t;
}

static Keelpb__V2Node *xnode_new(struct op *o, const char *key,
                                 uint64_t modified, uint64_t created)
{
    Keelpb__V2Node *x = keel_arena_alloc(o->a, sizeof *x);
    char *k = keel_arena_dup(o->a, key, strlen(key) + 1);
    if (x == NULL || k == NULL) {
        o->rv = KEEL_ENOMEM;
        return NULL;
    }
    keelpb__v2_node__init(x);
    x->key = k;
    x->modified_index = modified;
    x->created_index = created;
    return x;
}

static void xnode_ttl(struct op *o, Keelpb__V2Node *x, const struct v2node *n)
{
    if (n->expire != 0) {
        x->expiration = n->expire;
        x->ttl = ttl_of(n->expire, o->now);
    }
}

static bool hidden(const struct v2node *n)
{
    return n->name[0] == '_';
}

/* etcd's Repr / loadInternalNode: children listed for a directory when
 * `list` (one level, deeper when recursive), hidden children left out. */
static Keelpb__V2Node *repr(struct op *o, const struct v2node *n, bool list,
                            bool recursive)
{
    Keelpb__V2Node *x = xnode_new(o, n->path, n->modified, n->created);
    if (x == NULL) {
        return NULL;
    }
    if (n->dir) {
        x->dir = true;
        if (list) {
            x->nodes = keel_arena_alloc(o->a, (n->n_kids + 1) * sizeof *x->nodes);
            if (x->nodes == NULL) {
                o->rv = KEEL_ENOMEM;
                return NULL;
            }
            for (size_t i = 0; i < n->n_kids; i++) {
                if (hidden(n->kids[i])) {
                    continue;
                }
                Keelpb__V2Node *c = repr(o, n->kids[i], recursive, recursive);
                if (c == NULL) {
                    return NULL;
                }
                x->nodes[x->n_nodes++] = c;
            }
        }
    } else {
        x->has_value = true;
        x->value.data = n->value;
        x->value.len = n->value_len;
        if (n->value_len > 0) {
            x->value.data = keel_arena_dup(o->a, n->value, n->value_len);
            if (x->value.data == NULL) {
                o->rv = KEEL_ENOMEM;
                return NULL;
            }
        }
    }
    xnode_ttl(o, x, n);
    return x;
}

static Keelpb__V2Event *event_new(struct op *o, const char *action,
                                  const char *key, uint64_t modified,
                                  uint64_t created)
{
    Keelpb__V2Event *e = keel_arena_alloc(o->a, sizeof *e);
    Keelpb__V2Event **evs =
        keel_arena_alloc(o->a, (o->resp->n_events + 1) * sizeof *evs);
    if (e == NULL || evs == NULL) {
        o->rv = KEEL_ENOMEM;
        return NULL;
    }
    keelpb__v2_event__init(e);
    e->action = (char *)action;
    e->node = xnode_new(o, key, modified, created);
    if (e->node == NULL) {
        return NULL;
    }
    if (o->resp->n_events > 0) {
        memcpy(evs, o->resp->events, o->resp->n_events * sizeof *evs);
    }
    evs[o->resp->n_events++] = e;
    o->resp->events = evs;
    return e;
}

/* ---- walking ------------------------------------------------------------ */

/* etcd's internalGet on a clean path. NULL with the v2 error set. */
static struct v2node *lookup(struct op *o, const char *path)
{
    struct v2node *cur = o->v->root;
    size_t plen = strlen(path), pos = 0, i, len;
    while ((len = next_elem(path, plen, &pos, &i)) > 0) {
        const char *p = path + i;
        if (!cur->dir) {
            verr(o, V2_ECODE_NOT_DIR, cur->path, o->v->index);
            return NULL;
        }
        struct v2node *k = kid_get(cur, p, len);
        if (k == NULL) {
            char *c = keel_arena_alloc(o->a, cur->path_len + len + 2);
            if (c == NULL) {
                o->rv = KEEL_ENOMEM;
                return NULL;
            }
            memcpy(c, cur->path, cur->path_len);
            c[cur->path_len] = '/';
            memcpy(c + cur->path_len + 1, p, len);
            c[cur->path_len + 1 + len] = '\0';
            verr(o, V2_ECODE_KEY_NOT_FOUND, c, o->v->index);
            return NULL;
        }
        cur = k;
    }
    return cur;
}

/* etcd's walk(dirName, checkDir): the directory for a new node, made (with
 * created index = index + 1) where missing. */
static struct v2node *walk_dirs(struct op *o, const char *path, size_t len)
{
    struct v2node *cur = o->v->root;
    size_t pos = 0, i, n;
    while ((n = next_elem(path, len, &pos, &i)) > 0) {
        struct v2node *k = kid_get(cur, path + i, n);
        if (k != NULL) {
            if (!k->dir) {
                verr(o, V2_ECODE_NOT_DIR, k->path, o->v->index);
                return NULL;
            }
        } else {
            k = node_new(cur, path + i, n, true);
            if (k == NULL) {
                o->rv = KEEL_ENOMEM;
                return NULL;
            }
            k->created = k->modified = o->v->index + 1;
            if ((o->rv = kid_add(o->v, cur, k)) != 0) {
                node_free_tree(k);
                return NULL;
            }
            if ((o->rv = persist(o->v, o->w, k)) != 0) {
                return NULL;
            }
        }
        cur = k;
    }
    return cur;
}

/* Detach n from the tree and the table, children first; the removed
 * paths (for watchers) are appended to e->removed when e is not NULL. */
static int remove_tree(struct op *o, struct v2node *n, Keelpb__V2Event *e)
{
    for (size_t i = 0; i < n->n_kids; i++) {
        int rv = remove_tree(o, n->kids[i], e);
        if (rv != 0) {
            return rv;
        }
    }
    if (e != NULL) {
        if (e->n_removed == o->removed_cap) {
            size_t cap = o->removed_cap ? o->removed_cap * 2 : 8;
            char **nr = keel_arena_alloc(o->a, cap * sizeof *nr);
            if (nr == NULL) {
                return KEEL_ENOMEM;
            }
            if (e->n_removed > 0) {
                memcpy(nr, e->removed, e->n_removed * sizeof *nr);
            }
            e->removed = nr;
            o->removed_cap = cap;
        }
        e->removed[e->n_removed] =
            keel_arena_dup(o->a, n->path, n->path_len + 1);
        if (e->removed[e->n_removed] == NULL) {
            return KEEL_ENOMEM;
        }
        e->n_removed++;
    }
    ttl_remove(o->v, n);
    o->v->count--;
    return unpersist(o->w, n);
}

static int remove_node(struct op *o, struct v2node *n, Keelpb__V2Event *e)
{
    o->removed_cap = 0;
    int rv = remove_tree(o, n, e);
    if (rv != 0) {
        return rv;
    }
    struct v2node *d = n->parent;
    bool found;
    size_t nlen = n->path_len - (size_t)(n->name - n->path);
    size_t i = kid_pos(d, n->name, nlen, &found);
    assert(found);
    memmove(d->kids + i, d->kids + i + 1, (d->n_kids - i - 1) * sizeof *d->kids);
    d->n_kids--;
    node_free_tree(n);
    return 0;
}

static int set_ttl(struct op *o, struct v2node *n, int64_t expire)
{
    n->expire = expire;
    if (expire == 0) {
        ttl_remove(o->v, n);
        return 0;
    }
    return ttl_add(o->v, n);
}

static int set_value(struct v2node *n, const uint8_t *val, size_t len)
{
    uint8_t *nv = NULL;
    if (len > 0) {
        nv = malloc(len);
        if (nv == NULL) {
            return KEEL_ENOMEM;
        }
        memcpy(nv, val, len);
    }
    free(n->value);
    n->value = nv;
    n->value_len = len;
    return 0;
}

static bool is_root(const char *path)
{
    return strcmp(path, "/") == 0;
}

/* etcd's internalCreate. path clean. */
static Keelpb__V2Event *create(struct op *o, const char *path, bool dir,
                               const ProtobufCBinaryData *val, bool unique,
                               bool replace, int64_t expire,
                               const char *action)
{
    struct v2store *v = o->v;
    uint64_t cur = v->index, next = v->index + 1;
    if (unique) {
        size_t len = strlen(path);
        char *p = keel_arena_alloc(o->a, len + 23);
        if (p == NULL) {
            o->rv = KEEL_ENOMEM;
            return NULL;
        }
        snprintf(p, len + 23, "%s/%020" PRIu64, path, next);
        path = v2store_clean_path(o->a, p, strlen(p));
        if (path == NULL) {
            o->rv = KEEL_ENOMEM;
            return NULL;
        }
    }
    if (is_root(path)) {
        verr(o, V2_ECODE_ROOT_RONLY, "/", cur);
        return NULL;
    }
    if (expire < MIN_EXPIRE_NS) {
        expire = 0;
    }
    const char *slash = strrchr(path, '/');
    struct v2node *d = walk_dirs(o, path, (size_t)(slash - path));
    if (d == NULL) {
        if (o->rv == 0) {
            o->resp->index = cur;
        }
        return NULL;
    }
    const char *name = slash + 1;
    size_t nlen = strlen(name);
    Keelpb__V2Node *prev = NULL;
    struct v2node *n = kid_get(d, name, nlen);
    if (n != NULL) {
        if (!replace) {
            verr(o, V2_ECODE_NODE_EXIST, path, cur);
            return NULL;
        }
        if (n->dir) {
            verr(o, V2_ECODE_NOT_FILE, path, cur);
            return NULL;
        }
        prev = repr(o, n, false, false);
        if (prev == NULL || (o->rv = remove_node(o, n, NULL)) != 0) {
            return NULL;
        }
    }
    Keelpb__V2Event *e = event_new(o, action, path, next, next);
    if (e == NULL) {
        return NULL;
    }
    e->prev_node = prev;
    n = node_new(d, name, nlen, dir);
    if (n == NULL) {
        o->rv = KEEL_ENOMEM;
        return NULL;
    }
    n->created = n->modified = next;
    if (!dir && (o->rv = set_value(n, val->data, val->len)) != 0) {
        node_free_tree(n);
        return NULL;
    }
    if ((o->rv = kid_add(v, d, n)) != 0) {
        node_free_tree(n);
        return NULL;
    }
    if (dir) {
        e->node->dir = true;
    } else {
        e->node->has_value = true;
        e->node->value = *val;
    }
    if (expire != 0) {
        if ((o->rv = set_ttl(o, n, expire)) != 0) {
            return NULL;
        }
        xnode_ttl(o, e->node, n);
    }
    if ((o->rv = persist(v, o->w, n)) != 0) {
        return NULL;
    }
    v->index = next;
    e->etcd_index = next;
    return e;
}

/* etcd's node.Compare and getCompareFailCause. */
static bool compare(struct op *o, const struct v2node *n,
                    const ProtobufCBinaryData *pv, uint64_t pi)
{
    bool index_ok = pi == 0 || n->modified == pi;
    bool value_ok = pv->len == 0 || (pv->len == n->value_len &&
                                     memcmp(pv->data, n->value, pv->len) == 0);
    if (index_ok && value_ok) {
        return true;
    }
    size_t cap = 64 + 2 * (pv->len + n->value_len);
    char *c = keel_arena_alloc(o->a, cap);
    if (c == NULL) {
        o->rv = KEEL_ENOMEM;
        return false;
    }
    if (index_ok) {
        snprintf(c, cap, "[%.*s != %.*s]", (int)pv->len, (const char *)pv->data,
                 (int)n->value_len, (const char *)n->value);
    } else if (value_ok) {
        snprintf(c, cap, "[%" PRIu64 " != %" PRIu64 "]", pi, n->modified);
    } else {
        snprintf(c, cap, "[%.*s != %.*s] [%" PRIu64 " != %" PRIu64 "]",
                 (int)pv->len, (const char *)pv->data, (int)n->value_len,
                 (const char *)n->value, pi, n->modified);
    }
    verr(o, V2_ECODE_TEST_FAILED, c, o->v->index);
    return false;
}

static void op_set(struct op *o, const Keelpb__V2Request *r, const char *path)
{
    struct v2node *n = lookup(o, path);
    if (n == NULL) {
        if (o->rv != 0 || o->resp->error_code != V2_ECODE_KEY_NOT_FOUND ||
            r->refresh) {
            return;
        }
        o->resp->error_code = 0;
        o->resp->cause = NULL;
        o->resp->index = 0;
    }
    ProtobufCBinaryData val = r->val;
    Keelpb__V2Node *prev = NULL;
    if (n != NULL) {
        if (r->refresh) {
            val.data = keel_arena_dup(o->a, n->value, n->value_len);
            val.len = n->value_len;
        }
        if (!n->dir) {
            prev = repr(o, n, false, false);
            if (prev == NULL) {
                return;
            }
        }
    }
    Keelpb__V2Event *e =
        create(o, path, r->dir, &val, false, true, r->expiration, "set");
    if (e != NULL) {
        e->prev_node = prev;
        e->refresh = r->refresh;
    }
}

static void op_update(struct op *o, const Keelpb__V2Request *r,
                      const char *path)
{
    struct v2store *v = o->v;
    if (is_root(path)) {
        verr(o, V2_ECODE_ROOT_RONLY, "/", v->index);
        return;
    }
    uint64_t next = v->index + 1;
    struct v2node *n = lookup(o, path);
    if (n == NULL) {
        return;
    }
    if (n->dir && r->val.len != 0) {
        verr(o, V2_ECODE_NOT_FILE, path, v->index);
        return;
    }
    ProtobufCBinaryData val = r->val;
    if (r->refresh) {
        val.data = keel_arena_dup(o->a, n->value, n->value_len);
        val.len = n->value_len;
    }
    Keelpb__V2Event *e = event_new(o, "update", path, next, n->created);
    if (e == NULL || (e->prev_node = repr(o, n, false, false)) == NULL) {
        return;
    }
    if (n->dir) {
        /* etcd's node.Write fails on a directory: its modifiedIndex stays
         * while the event says next. */
        e->node->dir = true;
    } else {
        if ((o->rv = set_value(n, val.data, val.len)) != 0) {
            return;
        }
        n->modified = next;
        e->node->has_value = true;
        e->node->value = val;
    }
    if ((o->rv = set_ttl(o, n, r->expiration)) != 0) {
        return;
    }
    xnode_ttl(o, e->node, n);
    if ((o->rv = persist(v, o->w, n)) != 0) {
        return;
    }
    e->refresh = r->refresh;
    v->index = next;
    e->etcd_index = next;
}

static void op_cas(struct op *o, const Keelpb__V2Request *r, const char *path)
{
    struct v2store *v = o->v;
    if (is_root(path)) {
        verr(o, V2_ECODE_ROOT_RONLY, "/", v->index);
        return;
    }
    struct v2node *n = lookup(o, path);
    if (n == NULL) {
        return;
    }
    if (n->dir) {
        verr(o, V2_ECODE_NOT_FILE, path, v->index);
        return;
    }
    if (!compare(o, n, &r->prev_value, r->prev_index)) {
        return;
    }
    ProtobufCBinaryData val = r->val;
    if (r->refresh) {
        val.data = keel_arena_dup(o->a, n->value, n->value_len);
        val.len = n->value_len;
    }
    uint64_t next = v->index + 1;
    Keelpb__V2Event *e = event_new(o, "compareAndSwap", path, next, n->created);
    if (e == NULL || (e->prev_node = repr(o, n, false, false)) == NULL) {
        return;
    }
    if ((o->rv = set_value(n, val.data, val.len)) != 0) {
        return;
    }
    n->modified = next;
    if ((o->rv = set_ttl(o, n, r->expiration)) != 0) {
        return;
    }
    e->node->has_value = true;
    e->node->value = val;
    xnode_ttl(o, e->node, n);
    if ((o->rv = persist(v, o->w, n)) != 0) {
        return;
    }
    e->refresh = r->refresh;
    v->index = next;
    e->etcd_index = next;
}

/* Delete / CompareAndDelete / expire: n removed with its children. */
static Keelpb__V2Event *remove_event(struct op *o, struct v2node *n,
                                     const char *action)
{
    uint64_t next = o->v->index + 1;
    Keelpb__V2Event *e = event_new(o, action, n->path, next, n->created);
    if (e == NULL || (e->prev_node = repr(o, n, false, false)) == NULL) {
        return NULL;
    }
    if (n->dir) {
        e->node->dir = true;
    }
    if ((o->rv = remove_node(o, n, e)) != 0) {
        return NULL;
    }
    o->v->index = next;
    e->etcd_index = next;
    return e;
}

static void op_delete(struct op *o, const Keelpb__V2Request *r,
                      const char *path)
{
    if (is_root(path)) {
        verr(o, V2_ECODE_ROOT_RONLY, "/", o->v->index);
        return;
    }
    bool dir = r->dir || r->recursive;
    struct v2node *n = lookup(o, path);
    if (n == NULL) {
        return;
    }
    if (n->dir && !dir) {
        verr(o, V2_ECODE_NOT_FILE, n->path, o->v->index);
        return;
    }
    if (n->dir && n->n_kids > 0 && !r->recursive) {
        verr(o, V2_ECODE_DIR_NOT_EMPTY, n->path, o->v->index);
        return;
    }
    Keelpb__V2Event *e = remove_event(o, n, "delete");
    if (e != NULL) {
        e->node->key = (char *)path;
    }
}

static void op_cad(struct op *o, const Keelpb__V2Request *r, const char *path)
{
    struct v2node *n = lookup(o, path);
    if (n == NULL) {
        return;
    }
    if (n->dir) {
        verr(o, V2_ECODE_NOT_FILE, is_root(path) ? "" : path, o->v->index);
        return;
    }
    if (!compare(o, n, &r->prev_value, r->prev_index)) {
        return;
    }
    remove_event(o, n, "compareAndDelete");
}

static int expire_cmp(const void *pa, const void *pb)
{
    const struct v2node *a = *(struct v2node *const *)pa;
    const struct v2node *b = *(struct v2node *const *)pb;
    if (a->expire != b->expire) {
        return a->expire < b->expire ? -1 : 1;
    }
    return strcmp(a->path, b->path);
}

/* etcd's DeleteExpiredKeys(cutoff): every node whose expire <= cutoff, in
 * expiry order; a node already gone with an expired parent is skipped. */
static void op_sync(struct op *o, int64_t cutoff)
{
    struct v2store *v = o->v;
    for (;;) {
        struct v2node *top = NULL;
        for (size_t i = 0; i < v->n_ttl; i++) {
            struct v2node *c = v->ttl[i];
            if (c->expire <= cutoff &&
                (top == NULL || expire_cmp(&c, &top) < 0)) {
                top = c;
            }
        }
        if (top == NULL) {
            return;
        }
        if (remove_event(o, top, "expire") == NULL) {
            return;
        }
        v->stats.expire_count++;
    }
}

/* Which etcd store call a PUT is (etcd: applierV2store.Put). */
enum put_kind { PUT_SET, PUT_CREATE, PUT_UPDATE, PUT_CAS };

static enum put_kind put_kind(const Keelpb__V2Request *r)
{
    bool cmp = r->prev_index > 0 || r->prev_value.len > 0;
    if (r->prev_exist == 2) {
        return cmp ? PUT_CAS : PUT_UPDATE;
    }
    if (r->prev_exist == 1) {
        return PUT_CREATE;
    }
    return cmp ? PUT_CAS : PUT_SET;
}

static void count(struct op *o, uint64_t *ok, uint64_t *fail)
{
    if (o->resp->error_code != 0) {
        (*fail)++;
    } else {
        (*ok)++;
    }
}

static int op_init(struct op *o, struct v2store *v, struct mvcc_write *w,
                   int64_t now, struct keel_arena *a)
{
    memset(o, 0, sizeof *o);
    o->v = v;
    o->w = w;
    o->a = a;
    o->now = now;
    o->resp = keel_arena_alloc(a, sizeof *o->resp);
    if (o->resp == NULL) {
        return KEEL_ENOMEM;
    }
    keelpb__v2_response__init(o->resp);
    return 0;
}

static void op_get(struct op *o, const char *path, bool recursive)
{
    struct v2node *n = lookup(o, path);
    if (n == NULL) {
        o->v->stats.get_fail++;
        return;
    }
    Keelpb__V2Event *e = event_new(o, "get", n->path, n->modified, n->created);
    if (e == NULL) {
        return;
    }
    Keelpb__V2Node *x = repr(o, n, true, recursive);
    if (x == NULL) {
        return;
    }
    x->key = (char *)(is_root(path) ? "" : path);
    e->node = x;
    e->etcd_index = o->v->index;
    o->v->stats.get_success++;
}

int v2store_get(struct v2store *v, const char *path, bool recursive,
                bool sorted, int64_t now_ns, struct keel_arena *a,
                Keelpb__V2Response **resp)
{
    (void)sorted; /* children are always in key order */
    struct op o;
    if (op_init(&o, v, NULL, now_ns, a) != 0) {
        return KEEL_ENOMEM;
    }
    const char *p = v2store_clean_path(a, path, strlen(path));
    if (p == NULL) {
        return KEEL_ENOMEM;
    }
    op_get(&o, p, recursive);
    *resp = o.resp;
    return o.rv;
}

int v2store_apply(struct v2store *v, struct mvcc_write *w,
                  const Keelpb__V2Request *r, int64_t now_ns,
                  struct keel_arena *a, Keelpb__V2Response **resp)
{
    struct op o;
    if (op_init(&o, v, w, now_ns, a) != 0) {
        return KEEL_ENOMEM;
    }
    uint64_t index0 = v->index;
    const char *method = r->method != NULL ? r->method : "";
    const char *path = v2store_clean_path(a, r->path ? r->path : "",
                                          r->path ? strlen(r->path) : 0);
    if (path == NULL) {
        return KEEL_ENOMEM;
    }
    struct v2store_stats *st = &v->stats;
    if (strcmp(method, "SYNC") == 0) {
        op_sync(&o, r->time);
    } else if (strcmp(method, "QGET") == 0) {
        op_get(&o, path, r->recursive);
    } else if (strcmp(method, "POST") == 0) {
        create(&o, path, r->dir, &r->val, true, false, r->expiration,
               "create");
        count(&o, &st->create_success, &st->create_fail);
    } else if (strcmp(method, "DELETE") == 0) {
        if (r->prev_index > 0 || r->prev_value.len > 0) {
            op_cad(&o, r, path);
            count(&o, &st->cad_success, &st->cad_fail);
        } else {
            op_delete(&o, r, path);
            count(&o, &st->delete_success, &st->delete_fail);
        }
    } else if (strcmp(method, "PUT") == 0) {
        switch (put_kind(r)) {
            case PUT_SET:
                op_set(&o, r, path);
                count(&o, &st->set_success, &st->set_fail);
                break;
            case PUT_CREATE:
                create(&o, path, r->dir, &r->val, false, false, r->expiration,
                       "create");
                count(&o, &st->create_success, &st->create_fail);
                break;
            case PUT_UPDATE:
                op_update(&o, r, path);
                count(&o, &st->update_success, &st->update_fail);
                break;
            case PUT_CAS:
                op_cas(&o, r, path);
                count(&o, &st->cas_success, &st->cas_fail);
                break;
        }
    } else {
        verr(&o, V2_ECODE_RAFT_INTERNAL, "unknown method", v->index);
    }
    if (o.rv == 0 && v->index != index0) {
        o.rv = persist_index(v, w);
    }
    *resp = o.resp;
    return o.rv;
}
