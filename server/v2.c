/*
 * server/v2: etcd 3.4's v2 HTTP API with --enable-v2 (etcd:
 * etcdserver/api/v2http/client.go, etcdserver/v2_server.go): /v2/keys,
 * /v2/members, /v2/machines, /v2/stats/{self,leader,store}.
 *
 * Keys: a request is parsed as etcd's parseKeyRequest (same checks, same
 * v2 error codes and causes), then
 *   PUT, POST, DELETE      -> a keelpb.Request{v2} through raft; applied on
 *                             every member by storage/v2store.c; answered
 *                             from the applied response
 *   GET ?quorum=true       -> a ReadIndex barrier, then the local tree
 *   GET, HEAD              -> the local tree
 *   GET ?wait=true         -> the event history, else a watcher
 * and written as etcd does: its JSON (Go's encoding, field order and
 * escaping), status codes, X-Etcd-Index / X-Raft-Index / X-Raft-Term /
 * X-Etcd-Cluster-ID headers.
 *
 * Watches: the last 1000 applied v2 events (etcd's EventHistory) and the
 * waiting watchers live here, in memory, fed by server_on_applied on every
 * member (v2_on_applied). A watcher is a streamed HTTP response; a
 * non-stream watcher ends after its event. A stream whose client does not
 * read (more than V2_WATCH_MAX_BUFFERED bytes queued) is ended, as etcd
 * drops a watcher whose 100-event channel is full. After a restart the
 * history starts empty (etcd replays its WAL tail into it).
 *
 * TTLs: every 500 ms (etcd's sync ticker) a leader whose tree has TTL keys
 * proposes SYNC with its clock; apply removes what expired, on every
 * member, producing "expire" events.
 *
 * Members: the v2 members API maps onto the Cluster service
 * (MemberAdd/Remove/Update), called in-process.
 */
#include "v2.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "config.h"
#include "grpc.h"
#include "keel_err.h"
#include "log.h"
#include "node.h"
#include "router.h"
#include "server.h"
#include "v2_form.h"
#include "v2store.h"

#define V2_HISTORY 1000       /* etcd: newWatchHub(1000) */
#define V2_SYNC_MS 500        /* etcd: the sync ticker */
#define V2_WATCH_MAX_BUFFERED (1u << 20)

struct v2_hist
{
    uint64_t index; /* node.modifiedIndex */
    char *key;
    char *prev_key; /* when prev node is a dir (delete/expire), else NULL */
    bool refresh;
    bool remove; /* delete or expire */
    uint8_t *packed; /* keelpb.V2Event */
    size_t len;
};

struct v2_watcher
{
    struct v2 *v2;
    struct router_req *req;
    char *key;
    bool recursive, stream;
    uint64_t since;
    struct v2_watcher *prev, *next;
};

struct v2
{
    struct keel_server *s;
    uv_timer_t sync;
    struct v2_hist hist[V2_HISTORY];
    size_t hist_front, hist_n;
    /* Oldest index the history answers for while nothing was evicted yet:
     * 1 on a fresh member (etcd's first events are its cluster-namespace
     * writes, which match no key watched here), the store's index + 1
     * after a restart or a snapshot install (the events before are not
     * here: asking for them is "outdated and cleared", never a silent
     * gap). */
    uint64_t hist_floor;
    bool hist_evicted;
    struct v2_watcher *watchers;
    size_t n_watchers;
    bool sync_inflight;
    bool stopped;
};

/* ---- JSON as Go's encoding/json writes it --------------------------------- */

struct jbuf
{
    char *p;
    size_t len, cap;
    bool oom;
};

static void jb_put(struct jbuf *b, const void *s, size_t n)
{
    if (b->oom) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jb_str(struct jbuf *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

static void jb_fmt(struct jbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void jb_fmt(struct jbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    /* callers format numbers and short literals only */
    if (n > 0 && (size_t)n < sizeof tmp) {
        jb_put(b, tmp, (size_t)n);
    } else if (n > 0) {
        b->oom = true;
    }
}

/* Length of the valid UTF-8 sequence at s (0: invalid). */
static size_t utf8_len(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2;
        v = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3;
        v = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        v = v << 6 | (s[i] & 0x3f);
    }
    if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) ||
        (len == 4 && (v < 0x10000 || v > 0x10ffff)) ||
        (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    *cp = v;
    return len;
}

/* A JSON string as Go writes it (HTML-safe escaping, invalid UTF-8 as
 * U+FFFD, U+2028/2029 escaped). */
static void jb_qstr(struct jbuf *b, const void *data, size_t n)
{
    const uint8_t *s = data;
    jb_put(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c == '"' || c == '\\') {
                char e[2] = {'\\', (char)c};
                jb_put(b, e, 2);
            } else if (c == '\n') {
                jb_put(b, "\\n", 2);
            } else if (c == '\r') {
                jb_put(b, "\\r", 2);
            } else if (c == '\t') {
                jb_put(b, "\\t", 2);
            } else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
                jb_fmt(b, "\\u00%02x", c);
            } else {
                jb_put(b, &s[i], 1);
            }
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t l = utf8_len(s + i, n - i, &cp);
        if (l == 0) {
            jb_str(b, "\\ufffd");
            i++;
            continue;
        }
        if (cp == 0x2028 || cp == 0x2029) {
            jb_fmt(b, "\\u%04x", cp);
        } else {
            jb_put(b, s + i, l);
        }
        i += l;
    }
    jb_put(b, "\"", 1);
}

/* Go's time.Time JSON (RFC 3339 with nanoseconds, trailing zeros cut). */
static void jb_time(struct jbuf *b, int64_t ns)
{
    time_t sec = (time_t)(ns / 1000000000LL);
    long frac = (long)(ns % 1000000000LL);
    if (frac < 0) {
        frac += 1000000000L;
        sec--;
    }
    struct tm tm;
    gmtime_r(&sec, &tm);
    char t[64];
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    jb_str(b, "\"");
    jb_str(b, t);
    if (frac != 0) {
        char f[16];
        snprintf(f, sizeof f, ".%09ld", frac);
        size_t l = strlen(f);
        while (f[l - 1] == '0') {
            f[--l] = '\0';
        }
        jb_str(b, f);
    }
    jb_str(b, "Z\"");
}

static void jb_node(struct jbuf *b, const Keelpb__V2Node *x)
{
    bool first = true;
#define SEP() (first ? (first = false, jb_str(b, "")) : jb_str(b, ","))
    jb_str(b, "{");
    if (x->key != NULL && x->key[0] != '\0') {
        SEP();
        jb_str(b, "\"key\":");
        jb_qstr(b, x->key, strlen(x->key));
    }
    if (x->has_value) {
        SEP();
        jb_str(b, "\"value\":");
        jb_qstr(b, x->value.data, x->value.len);
    }
    if (x->dir) {
        SEP();
        jb_str(b, "\"dir\":true");
    }
    if (x->expiration != 0) {
        SEP();
        jb_str(b, "\"expiration\":");
        jb_time(b, x->expiration);
    }
    if (x->ttl != 0) {
        SEP();
        jb_fmt(b, "\"ttl\":%" PRId64, x->ttl);
    }
    if (x->n_nodes > 0) {
        SEP();
        jb_str(b, "\"nodes\":[");
        for (size_t i = 0; i < x->n_nodes; i++) {
            if (i > 0) {
                jb_str(b, ",");
            }
            jb_node(b, x->nodes[i]);
        }
        jb_str(b, "]");
    }
    if (x->modified_index != 0) {
        SEP();
        jb_fmt(b, "\"modifiedIndex\":%" PRIu64, x->modified_index);
    }
    if (x->created_index != 0) {
        SEP();
        jb_fmt(b, "\"createdIndex\":%" PRIu64, x->created_index);
    }
#undef SEP
    jb_str(b, "}");
}

/* etcd's Event JSON (+ "\n" of json.Encoder); no node when nodes is false
 * (noValueOnSuccess). */
static void jb_event(struct jbuf *b, const Keelpb__V2Event *e, bool nodes)
{
    jb_str(b, "{\"action\":");
    jb_qstr(b, e->action, strlen(e->action));
    if (nodes && e->node != NULL) {
        jb_str(b, ",\"node\":");
        jb_node(b, e->node);
    }
    if (nodes && e->prev_node != NULL) {
        jb_str(b, ",\"prevNode\":");
        jb_node(b, e->prev_node);
    }
    jb_str(b, "}\n");
}

/* ---- responses ------------------------------------------------------------- */

struct hdrs
{
    struct router_header h[12];
    char buf[4][32];
    size_t n;
};

/* Every answer carries etcd's CORS headers (embed/serve.go). */
static void hdrs_init(struct hdrs *h)
{
    h->n = 0;
    for (size_t i = 0; i < ROUTER_N_CORS; i++) {
        h->h[h->n++] = router_cors[i];
    }
}

static void hdr_add(struct hdrs *h, const char *name, const char *value)
{
    h->h[h->n++] = (struct router_header){name, value};
}

static void hdr_u64(struct hdrs *h, const char *name, uint64_t v)
{
    char *b = h->buf[h->n % 4]; /* at most 4 numbers per answer */
    snprintf(b, 32, "%" PRIu64, v);
    hdr_add(h, name, b);
}

static void hdr_cluster(struct v2 *v, struct hdrs *h, char *buf)
{
    struct server_info info;
    server_info(v->s, &info);
    snprintf(buf, 32, "%" PRIx64, info.cluster_id);
    hdr_add(h, "x-etcd-cluster-id", buf);
}

static void respond_hdrs(struct router_req *req, int status,
                         const char *ctype, const struct hdrs *h,
                         const void *body, size_t len)
{
    /* HEAD: the head of the GET (Content-Length included), no body */
    (void)router_respond_headers(req, status, ctype, h->h, h->n, body,
                                 strcmp(req->method, "HEAD") != 0 ? len : 0);
}

/* etcd's v2error.Error.WriteTo. */
static void write_v2_error(struct v2 *v, struct router_req *req, int code,
                           const char *cause, uint64_t index)
{
    struct jbuf b = {0};
    jb_fmt(&b, "{\"errorCode\":%d,\"message\":", code);
    const char *msg = v2store_error_message(code);
    jb_qstr(&b, msg, strlen(msg));
    if (cause != NULL && cause[0] != '\0') {
        jb_str(&b, ",\"cause\":");
        jb_qstr(&b, cause, strlen(cause));
    }
    jb_fmt(&b, ",\"index\":%" PRIu64 "}\n", index);
    struct hdrs h;
    hdrs_init(&h);
    char cid[32];
    hdr_cluster(v, &h, cid);
    hdr_u64(&h, "x-etcd-index", index);
    if (b.oom) {
        (void)router_respond(req, 500, NULL, NULL, 0);
    } else {
        respond_hdrs(req, v2store_error_status(code), "application/json", &h,
                     b.p, b.len);
    }
    free(b.p);
}

/* Go's http.Error. */
static void write_http_error(struct router_req *req, int status,
                             const char *text, const char *allow)
{
    char body[128];
    int n = snprintf(body, sizeof body, "%s\n", text);
    struct hdrs h;
    hdrs_init(&h);
    hdr_add(&h, "x-content-type-options", "nosniff");
    if (allow != NULL) {
        hdr_add(&h, "allow", allow);
    }
    respond_hdrs(req, status, "text/plain; charset=utf-8", &h, body,
                 (size_t)n);
}

/* httptypes.HTTPError.WriteTo: {"message":...} without a newline. */
static void write_message(struct v2 *v, struct router_req *req, int status,
                          const char *msg, bool cluster_hdr)
{
    struct jbuf b = {0};
    jb_str(&b, "{\"message\":");
    jb_qstr(&b, msg, strlen(msg));
    jb_str(&b, "}");
    struct hdrs h;
    hdrs_init(&h);
    char cid[32];
    if (cluster_hdr) {
        hdr_cluster(v, &h, cid);
    }
    respond_hdrs(req, status, "application/json", &h, b.p ? b.p : "",
                 b.p ? b.len : 0);
    free(b.p);
}

/* Go's http.NotFound, with the CORS headers. */
static void not_found(struct router_req *req)
{
    static const char nf[] = "404 page not found\n";
    struct hdrs h;
    hdrs_init(&h);
    hdr_add(&h, "x-content-type-options", "nosniff");
    respond_hdrs(req, 404, "text/plain; charset=utf-8", &h, nf,
                 sizeof nf - 1);
}

/* Go's ServeMux answers a path that is not clean (".", "..", "//") with a
 * 301 to the clean one (query kept), before any handler; true if done. */
static bool redirect_unclean(struct router_req *req)
{
    size_t len = strlen(req->path);
    char *np = v2store_clean_path(&req->arena, req->path, len);
    if (np == NULL) {
        (void)router_respond(req, 500, NULL, NULL, 0);
        return true;
    }
    size_t nl = strlen(np);
    bool slash = len > 0 && req->path[len - 1] == '/' && nl > 1;
    if ((nl == len - (slash ? 1 : 0)) && strncmp(np, req->path, nl) == 0 &&
        (!slash || req->path[nl] == '/')) {
        return false;
    }
    struct jbuf loc = {0};
    jb_str(&loc, np);
    if (slash) {
        jb_str(&loc, "/");
    }
    if (req->query[0] != '\0') {
        jb_str(&loc, "?");
        jb_str(&loc, req->query);
    }
    struct jbuf body = {0};
    jb_str(&body, "<a href=\"");
    for (const char *c = loc.p ? loc.p : ""; *c; c++) {
        switch (*c) {
            case '&': jb_str(&body, "&amp;"); break;
            case '<': jb_str(&body, "&lt;"); break;
            case '>': jb_str(&body, "&gt;"); break;
            case '"': jb_str(&body, "&#34;"); break;
            case '\'': jb_str(&body, "&#39;"); break;
            default: jb_put(&body, c, 1); break;
        }
    }
    jb_str(&body, "\">Moved Permanently</a>.\n\n");
    struct hdrs h;
    hdrs_init(&h);
    hdr_add(&h, "location", loc.p ? loc.p : "/");
    bool get = strcmp(req->method, "GET") == 0;
    bool head = strcmp(req->method, "HEAD") == 0;
    if (loc.oom || body.oom) {
        (void)router_respond(req, 500, NULL, NULL, 0);
    } else {
        (void)router_respond_headers(
            req, 301, get || head ? "text/html; charset=utf-8" : NULL, h.h,
            h.n, body.p, get ? body.len : 0);
    }
    free(loc.p);
    free(body.p);
    return true;
}

/* What etcd does before its mux (embed/serve.go accessController: an
 * OPTIONS request gets 200 with the CORS headers) and the mux itself
 * (unclean paths); true when req was answered. */
static bool prelude(struct router_req *req)
{
    if (strcmp(req->method, "OPTIONS") == 0) {
        struct hdrs h;
        hdrs_init(&h);
        respond_hdrs(req, 200, NULL, &h, NULL, 0);
        return true;
    }
    return redirect_unclean(req);
}

static bool allow_method(struct router_req *req, const char *allow)
{
    char list[64];
    snprintf(list, sizeof list, "%s", allow);
    for (char *t = strtok(list, ","); t != NULL; t = strtok(NULL, ",")) {
        if (strcmp(t, req->method) == 0) {
            return true;
        }
    }
    write_http_error(req, 405, "Method Not Allowed", allow);
    return false;
}

static void raft_hdrs(struct v2 *v, struct hdrs *h, uint64_t etcd_index)
{
    struct node_status st;
    node_status(server_node(v->s), &st);
    hdr_u64(h, "x-etcd-index", etcd_index);
    hdr_u64(h, "x-raft-index", st.commit_index);
    hdr_u64(h, "x-raft-term", st.term);
}

/* etcd's writeKeyEvent. */
static void write_event(struct v2 *v, struct router_req *req,
                        const Keelpb__V2Event *e, uint64_t etcd_index,
                        bool novalue)
{
    bool created = strcmp(e->action, "create") == 0 ||
                   (strcmp(e->action, "set") == 0 && e->prev_node == NULL);
    bool drop = novalue && (strcmp(e->action, "set") == 0 ||
                            strcmp(e->action, "compareAndSwap") == 0 ||
                            strcmp(e->action, "create") == 0 ||
                            strcmp(e->action, "update") == 0);
    struct jbuf b = {0};
    jb_event(&b, e, !drop);
    struct hdrs h;
    hdrs_init(&h);
    char cid[32];
    hdr_cluster(v, &h, cid);
    raft_hdrs(v, &h, etcd_index);
    if (b.oom) {
        (void)router_respond(req, 500, NULL, NULL, 0);
    } else {
        respond_hdrs(req, created ? 201 : 200, "application/json", &h, b.p,
                     b.len);
    }
    free(b.p);
}

static void write_response(struct v2 *v, struct router_req *req,
                           const Keelpb__V2Response *r, bool novalue)
{
    if (r->error_code != 0) {
        write_v2_error(v, req, r->error_code, r->cause, r->index);
    } else if (r->n_events == 1) {
        write_event(v, req, r->events[0], r->events[0]->etcd_index, novalue);
    } else {
        write_v2_error(v, req, V2_ECODE_RAFT_INTERNAL,
                       "received response with no Event/Watcher", 0);
    }
}

/* ---- history and watchers (etcd: event_history.go, watcher_hub.go) ------- */

static void hist_free(struct v2_hist *h)
{
    free(h->key);
    free(h->prev_key);
    free(h->packed);
    memset(h, 0, sizeof *h);
}

static struct v2_hist *hist_at(struct v2 *v, size_t i)
{
    return &v->hist[(v->hist_front + i) % V2_HISTORY];
}

static void hist_add(struct v2 *v, const Keelpb__V2Event *e)
{
    struct v2_hist *h;
    if (v->hist_n == V2_HISTORY) {
        h = hist_at(v, 0);
        hist_free(h);
        v->hist_front = (v->hist_front + 1) % V2_HISTORY;
        v->hist_n--;
        v->hist_evicted = true;
    }
    h = hist_at(v, v->hist_n);
    h->index = e->node->modified_index;
    h->key = strdup(e->node->key);
    h->refresh = e->refresh;
    h->remove = strcmp(e->action, "delete") == 0 ||
                strcmp(e->action, "expire") == 0;
    if (h->remove && e->prev_node != NULL && e->prev_node->dir) {
        h->prev_key = strdup(e->prev_node->key);
    }
    /* the removed paths are for live watchers only */
    Keelpb__V2Event copy = *e;
    copy.n_removed = 0;
    copy.removed = NULL;
    e = &copy;
    h->len = keelpb__v2_event__get_packed_size(e);
    h->packed = malloc(h->len ? h->len : 1);
    if (h->key == NULL || h->packed == NULL) {
        /* Out of memory: an event missing from the history only makes a
         * later waitIndex miss it; keep the ring consistent. */
        hist_free(h);
        h->index = e->node->modified_index;
        h->key = NULL;
    } else {
        keelpb__v2_event__pack(e, h->packed);
    }
    v->hist_n++;
}

/* strings.HasPrefix */
static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* etcd's EventHistory.scan: the first event at or after index matching
 * key; *cleared when index is older than the history. */
static struct v2_hist *hist_scan(struct v2 *v, const char *key,
                                 bool recursive, uint64_t index,
                                 uint64_t *start, bool *cleared)
{
    *cleared = false;
    *start = v->hist_evicted ? hist_at(v, 0)->index : v->hist_floor;
    if (index < *start) {
        *cleared = true;
        return NULL;
    }
    if (v->hist_n == 0 || index > hist_at(v, v->hist_n - 1)->index) {
        return NULL;
    }
    /* etcd: a recursive watch matches keys under key + "/" (the root's
     * "/" as it is) */
    size_t kl = strlen(key);
    bool root = strcmp(key, "/") == 0;
    for (size_t i = 0; i < v->hist_n; i++) {
        struct v2_hist *h = hist_at(v, i);
        if (h->index < index) {
            continue;
        }
        if (h->refresh || h->key == NULL) {
            continue;
        }
        const char *hk = h->key[0] != '\0' ? h->key : "/";
        bool ok = strcmp(hk, key) == 0;
        if (recursive) {
            ok = ok || (strncmp(hk, key, kl) == 0 &&
                        (root || hk[kl] == '/'));
        }
        if (h->prev_key != NULL) {
            ok = ok || has_prefix(key, h->prev_key);
        }
        if (ok) {
            return h;
        }
    }
    return NULL;
}

static void watcher_unlink(struct v2_watcher *w)
{
    struct v2 *v = w->v2;
    if (w->prev != NULL) {
        w->prev->next = w->next;
    } else if (v->watchers == w) {
        v->watchers = w->next;
    }
    if (w->next != NULL) {
        w->next->prev = w->prev;
    }
    w->prev = w->next = NULL;
    v->n_watchers--;
}

static void watcher_end(struct v2_watcher *w)
{
    watcher_unlink(w);
    (void)router_end(w->req); /* frees w (in the request's arena) */
}

static void watcher_cancel(struct router_req *req, void *data)
{
    (void)req;
    watcher_end(data);
}

/* etcd's isHidden(watchPath, keyPath). */
static bool is_hidden(const char *watch, const char *key)
{
    size_t wl = strlen(watch), kl = strlen(key);
    if (wl > kl) {
        return false;
    }
    /* path.Clean("/" + key[wl:]) contains "/_": the cleaned form of a
     * clean path's suffix has the same components. */
    const char *rest = key + wl;
    if (rest[0] == '_') {
        return true;
    }
    return strstr(rest, "/_") != NULL;
}

/* Deliver e to w; true when w is done (non-stream, or its client lags). */
static bool watcher_send(struct v2_watcher *w, const Keelpb__V2Event *e)
{
    struct jbuf b = {0};
    jb_event(&b, e, true);
    int rv = b.oom ? KEEL_ENOMEM : router_write(w->req, b.p, b.len);
    free(b.p);
    return !w->stream || rv != 0 ||
           router_req_buffered(w->req) > V2_WATCH_MAX_BUFFERED;
}

/* etcd's watcherHub.notify, with the delete callbacks of node.Remove for
 * a removed directory's watched descendants (deleted = true). */
static void notify(struct v2 *v, const Keelpb__V2Event *e)
{
    const char *key = e->node->key[0] != '\0' ? e->node->key : "/";
    uint64_t index = e->node->modified_index;
    bool removed = strcmp(e->action, "delete") == 0 ||
                   strcmp(e->action, "expire") == 0 ||
                   strcmp(e->action, "compareAndDelete") == 0;
    struct v2_watcher *next;
    /* node.Remove's callback: each removed path, children first, tells
     * the watchers of exactly that path (deleted = true) */
    for (size_t i = 0; removed && i < e->n_removed; i++) {
        const char *rp = e->removed[i][0] != '\0' ? e->removed[i] : "/";
        for (struct v2_watcher *w = v->watchers; w != NULL; w = next) {
            next = w->next;
            if (strcmp(w->key, rp) == 0 && index >= w->since &&
                watcher_send(w, e)) {
                watcher_end(w);
            }
        }
    }
    for (struct v2_watcher *w = v->watchers; w != NULL; w = next) {
        next = w->next;
        size_t wl = strlen(w->key);
        bool on_path = strcmp(w->key, "/") == 0 ||
                       (has_prefix(key, w->key) &&
                        (key[wl] == '\0' || key[wl] == '/'));
        if (!on_path) {
            continue;
        }
        bool original = strcmp(w->key, key) == 0;
        if (!original && is_hidden(strcmp(w->key, "/") == 0 ? "" : w->key,
                                   key)) {
            continue;
        }
        if ((w->recursive || original) && index >= w->since &&
            watcher_send(w, e)) {
            watcher_end(w);
        }
    }
}

void v2_on_applied(struct v2 *v, const Keelpb__Request *req,
                   const ProtobufCMessage *resp)
{
    if (v == NULL || req->op_case != KEELPB__REQUEST__OP_V2 || resp == NULL) {
        return;
    }
    const Keelpb__V2Response *r = (const Keelpb__V2Response *)resp;
    if (r->error_code != 0) {
        return;
    }
    for (size_t i = 0; i < r->n_events; i++) {
        const Keelpb__V2Event *e = r->events[i];
        if (strcmp(e->action, "get") == 0 || e->node == NULL) {
            continue;
        }
        hist_add(v, e);
        if (!e->refresh) {
            notify(v, e);
        }
    }
}

void v2_on_snapshot(struct v2 *v)
{
    /* etcd's store Recovery keeps the history of the snapshot; keel's
     * history is memory only: start over. Watchers stay (they see what
     * is applied from now on). */
    if (v == NULL) {
        return;
    }
    for (size_t i = 0; i < v->hist_n; i++) {
        hist_free(hist_at(v, i));
    }
    v->hist_n = 0;
    v->hist_front = 0;
    v->hist_evicted = false;
    v->hist_floor = v2store_index(node_v2store(server_node(v->s))) + 1;
}

/* ---- keys ------------------------------------------------------------------ */

struct key_req
{
    struct v2 *v2;
    struct router_req *req;
    Keelpb__Request r;
    Keelpb__V2Request v;
    bool novalue;
    bool recursive, sorted;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void proposed(void *arg, int rv, ProtobufCMessage *resp)
{
    struct key_req *k = arg;
    if (rv != 0 || resp == NULL) {
        write_v2_error(k->v2, k->req, V2_ECODE_RAFT_INTERNAL,
                       keel_strerror(rv != 0 ? rv : KEEL_ENOMEM), 0);
        return;
    }
    write_response(k->v2, k->req, (const Keelpb__V2Response *)resp,
                   k->novalue);
}

static void local_get(struct key_req *k)
{
    Keelpb__V2Response *r = NULL;
    int rv = v2store_get(node_v2store(server_node(k->v2->s)), k->v.path,
                         k->recursive, k->sorted, now_ns(), &k->req->arena,
                         &r);
    if (rv != 0) {
        write_v2_error(k->v2, k->req, V2_ECODE_RAFT_INTERNAL,
                       keel_strerror(rv), 0);
        return;
    }
    write_response(k->v2, k->req, r, false);
}

static void read_done(void *arg, int rv)
{
    struct key_req *k = arg;
    if (rv != 0) {
        write_v2_error(k->v2, k->req, V2_ECODE_RAFT_INTERNAL,
                       keel_strerror(rv), 0);
        return;
    }
    local_get(k);
}

static void watch(struct key_req *k, uint64_t since, bool stream)
{
    struct v2 *v = k->v2;
    struct router_req *req = k->req;
    uint64_t store_index = v2store_index(node_v2store(server_node(v->s)));
    if (since == 0) {
        since = store_index + 1;
    }
    const char *key = k->v.path;
    uint64_t start;
    bool cleared;
    struct v2_hist *h = hist_scan(v, key, k->recursive, since, &start,
                                  &cleared);
    if (cleared) {
        char cause[96];
        snprintf(cause, sizeof cause,
                 "the requested history has been cleared [%" PRIu64
                 "/%" PRIu64 "]",
                 start, since);
        write_v2_error(v, req, V2_ECODE_EVENT_INDEX_CLEARED, cause,
                       store_index);
        return;
    }
    struct hdrs hd;
    hdrs_init(&hd);
    char cid[32];
    hdr_cluster(v, &hd, cid);
    raft_hdrs(v, &hd, store_index);
    if (router_start(req, 200, "application/json", hd.h, hd.n) != 0) {
        (void)router_end(req);
        return;
    }
    /* A history hit ends a plain watch. A stream gets every later match
     * from the history too, then the live events (all of them are in the
     * history up to store_index): etcd's hub hands such a stream its one
     * history event and never registers it, so it stays silent until the
     * client leaves; keel streams on without a gap, as its users would
     * wish. */
    while (h != NULL) {
        Keelpb__V2Event *e = keelpb__v2_event__unpack(&req->arena.pb, h->len,
                                                      h->packed);
        if (e != NULL) {
            struct jbuf b = {0};
            jb_event(&b, e, true);
            if (!b.oom) {
                (void)router_write(req, b.p, b.len);
            }
            free(b.p);
            keelpb__v2_event__free_unpacked(e, &req->arena.pb);
        }
        if (!stream) {
            (void)router_end(req);
            return;
        }
        since = store_index + 1;
        h = hist_scan(v, key, k->recursive, h->index + 1, &start, &cleared);
    }
    struct v2_watcher *w = keel_arena_alloc(&req->arena, sizeof *w);
    if (w == NULL) {
        (void)router_end(req);
        return;
    }
    memset(w, 0, sizeof *w);
    w->v2 = v;
    w->req = req;
    w->key = (char *)key;
    w->recursive = k->recursive;
    w->stream = stream;
    w->since = since;
    w->next = v->watchers;
    if (v->watchers != NULL) {
        v->watchers->prev = w;
    }
    v->watchers = w;
    v->n_watchers++;
    router_req_on_cancel(req, watcher_cancel, w);
}

static int form_bool(struct v2 *v, struct router_req *req,
                     const struct v2_form *f, const char *name, bool *out,
                     const char *cause)
{
    const struct v2_form_value *fv = v2_form_get(f, name);
    *out = false;
    if (fv == NULL) {
        return 0;
    }
    int b = v2_form_parse_bool(fv->val, fv->val_len);
    if (b < 0) {
        write_v2_error(v, req, V2_ECODE_INVALID_FIELD, cause, 0);
        return -1;
    }
    *out = b == 1;
    return 0;
}

static int form_uint(struct v2 *v, struct router_req *req,
                     const struct v2_form *f, const char *name,
                     uint64_t *out, int code, const char *cause)
{
    const struct v2_form_value *fv = v2_form_get(f, name);
    *out = 0;
    if (fv == NULL) {
        return 0;
    }
    unsigned long long x;
    if (!v2_form_parse_uint(fv->val, fv->val_len, &x)) {
        write_v2_error(v, req, code, cause, 0);
        return -1;
    }
    *out = x;
    return 0;
}

static bool is_form_body(const struct router_req *req)
{
    if (strcmp(req->method, "POST") != 0 && strcmp(req->method, "PUT") != 0 &&
        strcmp(req->method, "PATCH") != 0) {
        return false;
    }
    const char *ct = router_req_header(req, "content-type");
    if (ct == NULL) {
        return false;
    }
    size_t l = strcspn(ct, ";");
    while (l > 0 && (ct[l - 1] == ' ' || ct[l - 1] == '\t')) {
        l--;
    }
    return l == 33 && strncasecmp(ct, "application/x-www-form-urlencoded",
                                  33) == 0;
}

static void keys_handler(struct router_req *req, void *data)
{
    struct v2 *v = data;
    if (prelude(req)) {
        return;
    }
    if (strcmp(req->path, "/v2/keys") != 0 &&
        !has_prefix(req->path, "/v2/keys/")) {
        not_found(req);
        return;
    }
    if (!allow_method(req, "HEAD,GET,PUT,POST,DELETE")) {
        return;
    }
    struct key_req *k = keel_arena_alloc(&req->arena, sizeof *k);
    if (k == NULL) {
        (void)router_respond(req, 500, NULL, NULL, 0);
        return;
    }
    memset(k, 0, sizeof *k);
    k->v2 = v;
    k->req = req;
    keelpb__request__init(&k->r);
    keelpb__v2_request__init(&k->v);

    char err[128] = "";
    struct v2_form f;
    bool body = is_form_body(req);
    int rv = v2_form_parse(&req->arena, body ? (const char *)req->body : NULL,
                           body ? req->body_len : 0, req->query,
                           strlen(req->query), &f, err, sizeof err);
    if (rv == KEEL_EINVAL) {
        write_v2_error(v, req, V2_ECODE_INVALID_FORM, err, 0);
        return;
    }
    const char *raw = req->path + strlen("/v2/keys");
    char *dec = v2_form_unescape_path(&req->arena, raw, strlen(raw));
    char *path = dec != NULL
                     ? v2store_clean_path(&req->arena, dec, strlen(dec))
                     : NULL;
    if (rv != 0 || path == NULL) {
        write_v2_error(v, req, V2_ECODE_INVALID_FORM,
                       rv != 0 ? keel_strerror(rv) : "invalid URL escape",
                       0);
        return;
    }
    uint64_t pidx, widx, ttl = 0;
    bool rec, sorted, wait, dir, quorum, stream, novalue;
    if (form_uint(v, req, &f, "prevIndex", &pidx, V2_ECODE_INDEX_NAN,
                  "invalid value for \"prevIndex\"") ||
        form_uint(v, req, &f, "waitIndex", &widx, V2_ECODE_INDEX_NAN,
                  "invalid value for \"waitIndex\"") ||
        form_bool(v, req, &f, "recursive", &rec,
                  "invalid value for \"recursive\"") ||
        form_bool(v, req, &f, "sorted", &sorted,
                  "invalid value for \"sorted\"") ||
        form_bool(v, req, &f, "wait", &wait, "invalid value for \"wait\"") ||
        form_bool(v, req, &f, "dir", &dir, "invalid value for \"dir\"") ||
        form_bool(v, req, &f, "quorum", &quorum,
                  "invalid value for \"quorum\"") ||
        form_bool(v, req, &f, "stream", &stream,
                  "invalid value for \"stream\"")) {
        return;
    }
    if (wait && strcmp(req->method, "GET") != 0) {
        write_v2_error(v, req, V2_ECODE_INVALID_FIELD,
                       "\"wait\" can only be used with GET requests", 0);
        return;
    }
    const struct v2_form_value *pv = v2_form_get(&f, "prevValue");
    if (pv != NULL && pv->val_len == 0) {
        write_v2_error(v, req, V2_ECODE_PREV_VALUE_REQUIRED,
                       "\"prevValue\" cannot be empty", 0);
        return;
    }
    if (form_bool(v, req, &f, "noValueOnSuccess", &novalue,
                  "invalid value for \"noValueOnSuccess\"")) {
        return;
    }
    const struct v2_form_value *tv = v2_form_get(&f, "ttl");
    bool has_ttl = tv != NULL && tv->val_len > 0;
    if (has_ttl && form_uint(v, req, &f, "ttl", &ttl, V2_ECODE_TTL_NAN,
                             "invalid value for \"ttl\"")) {
        return;
    }
    const struct v2_form_value *pe = v2_form_get(&f, "prevExist");
    int prev_exist = 0;
    if (pe != NULL) {
        int b = v2_form_parse_bool(pe->val, pe->val_len);
        if (b < 0) {
            write_v2_error(v, req, V2_ECODE_INVALID_FIELD,
                           "invalid value for prevExist", 0);
            return;
        }
        prev_exist = b ? 2 : 1;
    }
    const struct v2_form_value *rf = v2_form_get(&f, "refresh");
    bool refresh = false;
    if (rf != NULL) {
        int b = v2_form_parse_bool(rf->val, rf->val_len);
        if (b < 0) {
            write_v2_error(v, req, V2_ECODE_INVALID_FIELD,
                           "invalid value for refresh", 0);
            return;
        }
        refresh = b == 1;
        if (refresh) {
            const struct v2_form_value *val = v2_form_get(&f, "value");
            if (val != NULL && val->val_len > 0) {
                write_v2_error(v, req, V2_ECODE_REFRESH_VALUE,
                               "A value was provided on a refresh", 0);
                return;
            }
            if (!has_ttl) {
                write_v2_error(v, req, V2_ECODE_REFRESH_TTL_REQUIRED,
                               "No TTL value set", 0);
                return;
            }
        }
    }
    const struct v2_form_value *val = v2_form_get(&f, "value");
    k->v.method = (char *)req->method;
    k->v.path = path;
    if (val != NULL) {
        k->v.val.data = (uint8_t *)val->val;
        k->v.val.len = val->val_len;
    }
    k->v.dir = dir;
    if (pv != NULL) {
        k->v.prev_value.data = (uint8_t *)pv->val;
        k->v.prev_value.len = pv->val_len;
    }
    k->v.prev_index = pidx;
    k->v.prev_exist = prev_exist;
    k->v.recursive = rec;
    k->v.sorted = sorted;
    k->v.refresh = refresh;
    if (has_ttl) {
        k->v.expiration = now_ns() + (int64_t)ttl * 1000000000LL;
    }
    k->novalue = novalue;
    k->recursive = rec;
    k->sorted = sorted;

    if (strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0) {
        if (strcmp(req->method, "GET") == 0 && quorum) {
            rv = node_read_index(server_node(v->s), read_done, k);
            if (rv != 0) {
                read_done(k, rv);
            }
            return;
        }
        if (strcmp(req->method, "GET") == 0 && wait) {
            watch(k, widx, stream);
            return;
        }
        local_get(k);
        return;
    }
    k->r.op_case = KEELPB__REQUEST__OP_V2;
    k->r.v2 = &k->v;
    rv = node_propose(server_node(v->s), &k->r, &req->arena, proposed, k);
    if (rv != 0) {
        proposed(k, rv, NULL);
    }
}

/* ---- SYNC ------------------------------------------------------------------ */

struct sync_req
{
    struct v2 *v2;
    struct keel_arena arena;
    Keelpb__Request r;
    Keelpb__V2Request v;
};

static void sync_done(void *arg, int rv, ProtobufCMessage *resp)
{
    (void)rv;
    (void)resp;
    struct sync_req *sr = arg;
    sr->v2->sync_inflight = false;
    keel_arena_free(&sr->arena);
    free(sr);
}

static void sync_tick(uv_timer_t *t)
{
    struct v2 *v = t->data;
    struct node *n = server_node(v->s);
    if (v->sync_inflight || n == NULL || !v2store_has_ttl(node_v2store(n))) {
        return;
    }
    struct node_status st;
    node_status(n, &st);
    if (!st.is_leader) {
        return;
    }
    struct sync_req *sr = calloc(1, sizeof *sr);
    if (sr == NULL) {
        return;
    }
    sr->v2 = v;
    keel_arena_init(&sr->arena, 4096);
    keelpb__request__init(&sr->r);
    keelpb__v2_request__init(&sr->v);
    sr->v.method = "SYNC";
    sr->v.time = now_ns();
    sr->r.op_case = KEELPB__REQUEST__OP_V2;
    sr->r.v2 = &sr->v;
    v->sync_inflight = true;
    if (node_propose(n, &sr->r, &sr->arena, sync_done, sr) != 0) {
        sync_done(sr, 0, NULL);
    }
}

/* ---- members, machines, stats --------------------------------------------- */

static void jb_member(struct jbuf *b, const Etcdserverpb__Member *m)
{
    jb_fmt(b, "{\"id\":\"%" PRIx64 "\",\"name\":", m->id);
    jb_qstr(b, m->name ? m->name : "", m->name ? strlen(m->name) : 0);
    jb_str(b, ",\"peerURLs\":[");
    for (size_t i = 0; i < m->n_peerurls; i++) {
        if (i > 0) {
            jb_str(b, ",");
        }
        jb_qstr(b, m->peerurls[i], strlen(m->peerurls[i]));
    }
    jb_str(b, "],\"clientURLs\":[");
    for (size_t i = 0; i < m->n_clienturls; i++) {
        if (i > 0) {
            jb_str(b, ",");
        }
        jb_qstr(b, m->clienturls[i], strlen(m->clienturls[i]));
    }
    jb_str(b, "]}");
}

static void respond_json(struct v2 *v, struct router_req *req, int status,
                         struct jbuf *b)
{
    struct hdrs h;
    hdrs_init(&h);
    char cid[32];
    hdr_cluster(v, &h, cid);
    if (b->oom) {
        (void)router_respond(req, 500, NULL, NULL, 0);
    } else {
        respond_hdrs(req, status, "application/json", &h, b->p, b->len);
    }
    free(b->p);
}

/* A /v2/stats answer: etcd's stats handlers set no X-Etcd-Cluster-ID. */
static void respond_stats(struct router_req *req, struct jbuf *b)
{
    if (b->oom) {
        (void)router_respond(req, 500, NULL, NULL, 0);
    } else {
        struct hdrs h;
        hdrs_init(&h);
        respond_hdrs(req, 200, "application/json", &h, b->p, b->len);
    }
    free(b->p);
}

struct member_call
{
    struct v2 *v2;
    struct router_req *req;
    struct grpc_call *call;
    int kind; /* 0 add, 1 remove, 2 update */
    char id[24];
    Etcdserverpb__Member *added;
};

static void member_msg(void *data, const uint8_t *buf, size_t len)
{
    struct member_call *mc = data;
    if (mc->kind == 0) {
        Etcdserverpb__MemberAddResponse *r =
            etcdserverpb__member_add_response__unpack(&mc->req->arena.pb, len,
                                                      buf);
        if (r != NULL) {
            mc->added = r->member;
        }
    }
}

static void member_done(void *data, int code, const char *message)
{
    struct member_call *mc = data;
    struct v2 *v = mc->v2;
    struct router_req *req = mc->req;
    if (code == KEEL_GRPC_OK) {
        if (mc->kind == 0 && mc->added != NULL) {
            struct jbuf b = {0};
            jb_member(&b, mc->added);
            jb_str(&b, "\n");
            respond_json(v, req, 201, &b);
        } else {
            struct hdrs h;
    hdrs_init(&h);
            char cid[32];
            hdr_cluster(v, &h, cid);
            respond_hdrs(req, 204, NULL, &h, NULL, 0);
        }
        return;
    }
    char msg[160];
    int status = 500;
    if (strstr(message, "Peer URLs already exists") != NULL) {
        status = 409;
        snprintf(msg, sizeof msg, "membership: peerURL exists");
    } else if (strstr(message, "member ID already exist") != NULL) {
        status = 409;
        snprintf(msg, sizeof msg, "membership: ID exists");
    } else if (strstr(message, "member not found") != NULL) {
        status = 404;
        snprintf(msg, sizeof msg, "No such member: %s", mc->id);
    } else {
        /* etcdhttp.WriteError: anything else is logged, not shown */
        log_warn("etcdserver/api/v2http", "v2 members request failed: %s",
                 message);
        snprintf(msg, sizeof msg, "Internal Server Error");
    }
    write_message(v, req, status, msg, true);
}

static void member_rpc(struct v2 *v, struct router_req *req, int kind,
                       const char *path, const ProtobufCMessage *msg,
                       const char *id)
{
    struct member_call *mc = keel_arena_alloc(&req->arena, sizeof *mc);
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = keel_arena_alloc(&req->arena, len ? len : 1);
    if (mc == NULL || buf == NULL) {
        (void)router_respond(req, 500, NULL, NULL, 0);
        return;
    }
    memset(mc, 0, sizeof *mc);
    protobuf_c_message_pack(msg, buf);
    mc->v2 = v;
    mc->req = req;
    mc->kind = kind;
    snprintf(mc->id, sizeof mc->id, "%s", id);
    struct grpc_local_opts o = {
        .loop = server_loop(v->s),
        .on_message = member_msg,
        .on_done = member_done,
        .data = mc,
    };
    if (grpc_server_call_local(server_grpc(v->s), path, buf, len, &o,
                               &mc->call) != 0) {
        (void)router_respond(req, 500, NULL, NULL, 0);
    }
}

/* encoding/json's name of a JSON value's type in its errors. */
static const char *go_json_type(const json_t *j)
{
    switch (json_typeof(j)) {
        case JSON_OBJECT: return "object";
        case JSON_ARRAY: return "array";
        case JSON_STRING: return "string";
        case JSON_INTEGER:
        case JSON_REAL: return "number";
        case JSON_TRUE:
        case JSON_FALSE: return "bool";
        default: return "null";
    }
}

/* Go's error for a peerURLs value of the wrong type; frees j, false. */
static bool peer_urls_type_error(struct v2 *v, struct router_req *req,
                                 json_t *j, const json_t *val,
                                 const char *go_type)
{
    char msg[200];
    snprintf(msg, sizeof msg,
             "json: cannot unmarshal %s into Go struct field .peerURLs of "
             "type %s",
             go_json_type(val), go_type);
    write_message(v, req, 400, msg, true);
    json_decref(j);
    return false;
}

/* The request's JSON body with peerURLs, as etcd's MemberCreateRequest /
 * MemberUpdateRequest; false once answered. */
static bool member_body(struct v2 *v, struct router_req *req,
                        const char *go_type, char ***urls, size_t *n)
{
    const char *ct = router_req_header(req, "content-type");
    char ctype[128];
    snprintf(ctype, sizeof ctype, "%s", ct != NULL ? ct : "");
    char *semi = strchr(ctype, ';');
    if (semi != NULL) {
        *semi = '\0';
        for (char *p = ctype; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
        char *p = ctype;
        while (*p == ' ') {
            p++;
        }
        memmove(ctype, p, strlen(p) + 1);
        size_t l = strlen(ctype);
        while (l > 0 && ctype[l - 1] == ' ') {
            ctype[--l] = '\0';
        }
    }
    if (strcmp(ctype, "application/json") != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "Bad Content-Type %s, accept application/json",
                 ctype);
        write_message(v, req, 415, msg, true);
        return false;
    }
    json_error_t je;
    json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &je);
    json_t *pu = j != NULL ? json_object_get(j, "peerURLs") : NULL;
    if (j == NULL || !json_is_object(j) ||
        (pu != NULL && !json_is_array(pu) && !json_is_null(pu))) {
        /* Go's encoding/json texts */
        char msg[200];
        if (j == NULL) {
            snprintf(msg, sizeof msg, "unexpected end of JSON input");
        } else if (!json_is_object(j)) {
            snprintf(msg, sizeof msg,
                     "json: cannot unmarshal %s into Go value of type "
                     "httptypes.%s",
                     go_json_type(j), go_type);
        } else {
            return peer_urls_type_error(v, req, j, pu, "[]string");
        }
        write_message(v, req, 400, msg, true);
        json_decref(j);
        return false;
    }
    *n = json_is_array(pu) ? json_array_size(pu) : 0;
    *urls = keel_arena_alloc(&req->arena, (*n + 1) * sizeof **urls);
    for (size_t i = 0; i < *n && *urls != NULL; i++) {
        json_t *e = json_array_get(pu, i);
        const char *u = json_string_value(e);
        if (u == NULL && !json_is_null(e)) {
            return peer_urls_type_error(v, req, j, e, "string");
        }
        if (u == NULL) {
            u = "";
        }
        if (
            (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)) {
            char msg[300];
            snprintf(msg, sizeof msg,
                     "URL scheme must be http, https, unix, or unixs: %s",
                     u != NULL ? u : "");
            write_message(v, req, 400, msg, true);
            json_decref(j);
            return false;
        }
        (*urls)[i] = keel_arena_dup(&req->arena, u, strlen(u) + 1);
    }
    json_decref(j);
    if (*urls == NULL) {
        (void)router_respond(req, 500, NULL, NULL, 0);
        return false;
    }
    return true;
}

static void members_handler(struct router_req *req, void *data)
{
    struct v2 *v = data;
    if (prelude(req)) {
        return;
    }
    const char *rest = NULL;
    if (strcmp(req->path, "/v2/members") == 0) {
        rest = "";
    } else if (has_prefix(req->path, "/v2/members/")) {
        rest = req->path + strlen("/v2/members/");
    } else {
        not_found(req);
        return;
    }
    if (!allow_method(req, "GET,POST,DELETE,PUT")) {
        return;
    }
    struct keel_server *s = v->s;
    if (strcmp(req->method, "GET") == 0) {
        Etcdserverpb__Member **ms = NULL;
        size_t n = 0;
        if (cluster_members(s, &req->arena, &ms, &n) != 0) {
            (void)router_respond(req, 500, NULL, NULL, 0);
            return;
        }
        struct jbuf b = {0};
        if (rest[0] == '\0') {
            jb_str(&b, "{\"members\":[");
            for (size_t i = 0; i < n; i++) {
                if (i > 0) {
                    jb_str(&b, ",");
                }
                jb_member(&b, ms[i]);
            }
            jb_str(&b, "]}\n");
            respond_json(v, req, 200, &b);
        } else if (strcmp(rest, "leader") == 0) {
            struct node_status st;
            node_status(server_node(s), &st);
            const Etcdserverpb__Member *m = NULL;
            for (size_t i = 0; i < n; i++) {
                if (ms[i]->id == st.leader) {
                    m = ms[i];
                }
            }
            if (st.leader == 0) {
                write_message(v, req, 503, "During election", true);
                return;
            }
            Etcdserverpb__Member empty = ETCDSERVERPB__MEMBER__INIT;
            empty.id = st.leader;
            jb_member(&b, m != NULL ? m : &empty);
            jb_str(&b, "\n");
            respond_json(v, req, 200, &b);
        } else {
            write_message(v, req, 404, "Not found", true);
        }
        return;
    }
    uint64_t id = 0;
    if (strcmp(req->method, "DELETE") == 0 || strcmp(req->method, "PUT") == 0) {
        if (rest[0] == '\0') {
            write_http_error(req, 405, "Method Not Allowed", NULL);
            return;
        }
        char *end = NULL;
        unsigned long long x = strtoull(rest, &end, 16);
        if (end == rest || *end != '\0' || strlen(rest) > 16) {
            char msg[200];
            snprintf(msg, sizeof msg, "No such member: %s", rest);
            write_message(v, req, 404, msg, false);
            return;
        }
        id = x;
    }
    char ids[24];
    snprintf(ids, sizeof ids, "%" PRIx64, id);
    if (strcmp(req->method, "POST") == 0) {
        char **urls = NULL;
        size_t n = 0;
        if (!member_body(v, req, "MemberCreateRequest", &urls, &n)) {
            return;
        }
        Etcdserverpb__MemberAddRequest m = ETCDSERVERPB__MEMBER_ADD_REQUEST__INIT;
        m.peerurls = urls;
        m.n_peerurls = n;
        member_rpc(v, req, 0, "/etcdserverpb.Cluster/MemberAdd", &m.base, "");
    } else if (strcmp(req->method, "DELETE") == 0) {
        if (cluster_member_removed(s, id)) {
            char msg[200];
            snprintf(msg, sizeof msg, "Member permanently removed: %s", ids);
            write_message(v, req, 410, msg, true);
            return;
        }
        Etcdserverpb__MemberRemoveRequest m =
            ETCDSERVERPB__MEMBER_REMOVE_REQUEST__INIT;
        m.id = id;
        member_rpc(v, req, 1, "/etcdserverpb.Cluster/MemberRemove", &m.base,
                   ids);
    } else {
        char **urls = NULL;
        size_t n = 0;
        if (!member_body(v, req, "MemberUpdateRequest", &urls, &n)) {
            return;
        }
        Etcdserverpb__MemberUpdateRequest m =
            ETCDSERVERPB__MEMBER_UPDATE_REQUEST__INIT;
        m.id = id;
        m.peerurls = urls;
        m.n_peerurls = n;
        member_rpc(v, req, 2, "/etcdserverpb.Cluster/MemberUpdate", &m.base,
                   ids);
    }
}

static bool exact(struct router_req *req, const char *path);

static void machines_handler(struct router_req *req, void *data)
{
    struct v2 *v = data;
    if (!exact(req, "/v2/machines")) {
        return;
    }
    if (!allow_method(req, "GET,HEAD")) {
        return;
    }
    Etcdserverpb__Member **ms = NULL;
    size_t n = 0;
    if (cluster_members(v->s, &req->arena, &ms, &n) != 0) {
        (void)router_respond(req, 500, NULL, NULL, 0);
        return;
    }
    struct jbuf b = {0};
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ms[i]->n_clienturls; j++) {
            jb_str(&b, first ? "" : ", ");
            jb_str(&b, ms[i]->clienturls[j]);
            first = false;
        }
    }
    struct hdrs h;
    hdrs_init(&h);
    respond_hdrs(req, 200, "text/plain; charset=utf-8", &h, b.p ? b.p : "",
                 b.p ? b.len : 0);
    free(b.p);
}

/* Go's ServeMux: the stats patterns are exact paths. */
static bool exact(struct router_req *req, const char *path)
{
    if (prelude(req)) {
        return false;
    }
    if (strcmp(req->path, path) == 0) {
        return true;
    }
    not_found(req);
    return false;
}

static void stats_store(struct router_req *req, void *data)
{
    struct v2 *v = data;
    if (!exact(req, "/v2/stats/store")) {
        return;
    }
    if (!allow_method(req, "GET")) {
        return;
    }
    struct v2store_stats st;
    v2store_stats(node_v2store(server_node(v->s)), &st);
    struct jbuf b = {0};
    jb_fmt(&b, "{\"getsSuccess\":%" PRIu64 ",\"getsFail\":%" PRIu64,
           st.get_success, st.get_fail);
    jb_fmt(&b, ",\"setsSuccess\":%" PRIu64 ",\"setsFail\":%" PRIu64,
           st.set_success, st.set_fail);
    jb_fmt(&b, ",\"deleteSuccess\":%" PRIu64 ",\"deleteFail\":%" PRIu64,
           st.delete_success, st.delete_fail);
    jb_fmt(&b, ",\"updateSuccess\":%" PRIu64 ",\"updateFail\":%" PRIu64,
           st.update_success, st.update_fail);
    jb_fmt(&b, ",\"createSuccess\":%" PRIu64 ",\"createFail\":%" PRIu64,
           st.create_success, st.create_fail);
    jb_fmt(&b,
           ",\"compareAndSwapSuccess\":%" PRIu64
           ",\"compareAndSwapFail\":%" PRIu64,
           st.cas_success, st.cas_fail);
    jb_fmt(&b,
           ",\"compareAndDeleteSuccess\":%" PRIu64
           ",\"compareAndDeleteFail\":%" PRIu64,
           st.cad_success, st.cad_fail);
    jb_fmt(&b, ",\"expireCount\":%" PRIu64 ",\"watchers\":%zu}", st.expire_count,
           v->n_watchers);
    respond_stats(req, &b);
}

static void stats_self(struct router_req *req, void *data)
{
    struct v2 *v = data;
    if (!exact(req, "/v2/stats/self")) {
        return;
    }
    if (!allow_method(req, "GET")) {
        return;
    }
    struct server_info info;
    server_info(v->s, &info);
    struct node_status st;
    node_status(server_node(v->s), &st);
    struct jbuf b = {0};
    jb_str(&b, "{\"name\":");
    jb_qstr(&b, info.name, strlen(info.name));
    jb_fmt(&b, ",\"id\":\"%" PRIx64 "\",\"state\":\"%s\",\"startTime\":",
           info.member_id, st.is_leader ? "StateLeader" : "StateFollower");
    jb_time(&b, v2_start_ns(v));
    jb_fmt(&b, ",\"leaderInfo\":{\"leader\":\"%" PRIx64 "\",\"uptime\":\"",
           st.leader);
    int64_t up = now_ns() - v2_start_ns(v);
    jb_fmt(&b, "%.9gs", (double)up / 1e9);
    jb_str(&b, "\",\"startTime\":");
    jb_time(&b, v2_start_ns(v));
    jb_str(&b, "},\"recvAppendRequestCnt\":0,\"sendAppendRequestCnt\":0}");
    respond_stats(req, &b);
}

static void stats_leader(struct router_req *req, void *data)
{
    struct v2 *v = data;
    if (!exact(req, "/v2/stats/leader")) {
        return;
    }
    if (!allow_method(req, "GET")) {
        return;
    }
    struct server_info info;
    server_info(v->s, &info);
    struct node_status st;
    node_status(server_node(v->s), &st);
    if (!st.is_leader) {
        write_message(v, req, 403, "not current leader", false);
        return;
    }
    struct jbuf b = {0};
    jb_fmt(&b, "{\"leader\":\"%" PRIx64 "\",\"followers\":{", info.member_id);
    bool first = true;
    for (size_t i = 0; i < st.n_voters + st.n_learners; i++) {
        uint64_t id = i < st.n_voters ? st.voters[i]
                                      : st.learners[i - st.n_voters];
        if (id == info.member_id) {
            continue;
        }
        jb_fmt(&b,
               "%s\"%" PRIx64 "\":{\"latency\":{\"current\":0,\"average\":0,"
               "\"standardDeviation\":0,\"minimum\":0,\"maximum\":0},"
               "\"counts\":{\"fail\":0,\"success\":0}}",
               first ? "" : ",", id);
        first = false;
    }
    jb_str(&b, "}}");
    respond_stats(req, &b);
}

/* ---- lifecycle --------------------------------------------------------------- */

static int64_t start_ns;

int64_t v2_start_ns(const struct v2 *v)
{
    (void)v;
    return start_ns;
}

int v2_start(struct keel_server *s, struct router *r, bool enable_http,
             struct v2 **out)
{
    struct v2 *v = calloc(1, sizeof *v);
    if (v == NULL) {
        return KEEL_ENOMEM;
    }
    v->s = s;
    start_ns = now_ns();
    v->hist_floor = v2store_index(node_v2store(server_node(s))) + 1;
    int rv = 0;
    if (enable_http) {
        if ((rv = router_add(r, NULL, "/v2/keys", keys_handler, v)) != 0 ||
            (rv = router_add(r, NULL, "/v2/members", members_handler, v)) !=
                0 ||
            (rv = router_add(r, NULL, "/v2/machines", machines_handler, v)) !=
                0 ||
            (rv = router_add(r, NULL, "/v2/stats/store", stats_store, v)) !=
                0 ||
            (rv = router_add(r, NULL, "/v2/stats/self", stats_self, v)) != 0 ||
            (rv = router_add(r, NULL, "/v2/stats/leader", stats_leader, v)) !=
                0) {
            free(v);
            return rv;
        }
    }
    uv_timer_init(server_loop(s), &v->sync);
    v->sync.data = v;
    uv_timer_start(&v->sync, sync_tick, V2_SYNC_MS, V2_SYNC_MS);
    *out = v;
    return 0;
}

static void sync_closed(uv_handle_t *h)
{
    struct v2 *v = h->data;
    for (size_t i = 0; i < v->hist_n; i++) {
        hist_free(hist_at(v, i));
    }
    free(v);
}

void v2_stop(struct v2 *v)
{
    if (v == NULL || v->stopped) {
        return;
    }
    v->stopped = true;
    while (v->watchers != NULL) {
        watcher_end(v->watchers);
    }
    uv_close((uv_handle_t *)&v->sync, sync_closed);
}
