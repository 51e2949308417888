/*
 * keelctl lock and elect: etcd's concurrency recipes on plain KV calls, as
 * etcdctl runs them (etcd: etcdctl/ctlv3/command/lock_command.go,
 * elect_command.go; clientv3/concurrency/{session,mutex,election,key}.go).
 * They do not use the v3lock/v3election services, so they work on any
 * server with KV, Lease and Watch.
 *
 *   session:  LeaseGrant(ttl) + a keep-alive stream; it is "done" when the
 *             keep-alive ends (the lease expired or was revoked).
 *   lock:     key = "<name>/<lease hex>"; Txn(create_revision(key) == 0 ?
 *             put(key, "", lease) : get(key); get(first created under
 *             "<name>/")); unless ours is the first, wait until every key
 *             under the prefix created before ours is deleted (get the
 *             last created one, watch it until DELETE, again).
 *   elect:    the same with the proposal as value (and a Proclaim txn when
 *             the key exists with another value); -l observes: the first
 *             created key under the prefix, its changes, then the next one.
 *
 * Everything runs on the shared client's loop: calls are blocking
 * (ctl_call), waits run the loop until a watch event, SIGINT/SIGTERM or the
 * end of the session's keep-alive. A signal while waiting is Go's canceled
 * context: "context canceled", after giving the lock/candidacy up.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keelctl.h"

static struct keel_sync *cs;
static uv_signal_t sig_int, sig_term;
static int interrupted;
static int session_done;
static struct keel_lease_keepalive session_ka;
static int64_t session_lease;

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    interrupted = 1;
}

static void ka_cb(struct keel_lease_keepalive *k,
                  const Etcdserverpb__LeaseKeepAliveResponse *r)
{
    (void)k;
    (void)r;
}

static void ka_end(struct keel_lease_keepalive *k, int status,
                   const char *msg)
{
    (void)k;
    (void)status;
    (void)msg;
    session_done = 1;
}

static void run_once(void)
{
    uv_run(keel_sync_loop(cs), UV_RUN_ONCE);
}

/* One blocking call; etcdctl's error and exit 1 on failure. The response
 * stays valid until exit (the calls are few). */
static void *call(const char *path, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *desc, unsigned flags)
{
    struct keel_call *c = ctl_alloc(sizeof(*c));
    if (ctl_call(cs, c, path, req, desc, flags) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(c));
    }
    return c->resp;
}

/* concurrency.NewSession: a lease kept alive until exit. */
static void session_new(int64_t ttl)
{
    cs = ctl_client();
    uv_signal_init(keel_sync_loop(cs), &sig_int);
    uv_signal_init(keel_sync_loop(cs), &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    Etcdserverpb__LeaseGrantRequest gr = ETCDSERVERPB__LEASE_GRANT_REQUEST__INIT;
    gr.ttl = ttl;
    Etcdserverpb__LeaseGrantResponse *r =
        call(KEEL_M_LEASE_GRANT, &gr.base,
             &etcdserverpb__lease_grant_response__descriptor, 0);
    session_lease = r->id;
    if (keel_lease_keepalive_start(keel_sync_client(cs), &session_ka, r->id,
                                   ka_cb, ka_end) != 0) {
        ctl_die(EXIT_ERROR, "lease keepalive failed");
    }
}

static void set_str(ProtobufCBinaryData *b, const char *s)
{
    b->data = (uint8_t *)s;
    b->len = strlen(s);
}

static void set_prefix(Etcdserverpb__RangeRequest *r, const char *pfx)
{
    set_str(&r->key, pfx);
    size_t len = strlen(pfx);
    char *end = ctl_alloc(len + 1);
    r->range_end.len = keel_prefix_end(pfx, len, end);
    r->range_end.data = (uint8_t *)end;
}

/* clientv3 WithFirstCreate / WithLastCreate: the prefix sorted by create
 * revision, one key. */
static Etcdserverpb__RangeRequest *range_top(const char *pfx, int last,
                                             int64_t max_create_rev)
{
    Etcdserverpb__RangeRequest *r = ctl_alloc(sizeof(*r));
    etcdserverpb__range_request__init(r);
    set_prefix(r, pfx);
    r->sort_target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    r->sort_order = last ? ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND
                         : ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    r->limit = 1;
    r->max_create_revision = max_create_rev;
    return r;
}

static Etcdserverpb__RangeResponse *get_key(const char *key)
{
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    set_str(&r.key, key);
    return call(KEEL_M_RANGE, &r.base,
                &etcdserverpb__range_response__descriptor,
                KEEL_CALL_IDEMPOTENT);
}

/* ---- waiting on watches --------------------------------------------------- */

struct waiter
{
    struct keel_watch w;
    int want_delete; /* else: a put under the prefix */
    int hit, ended;
    Mvccpb__KeyValue *kv;            /* the put seen (copied) */
    Etcdserverpb__ResponseHeader hdr; /* its response's header */
    /* observe: every put event of the watched key is printed */
    Etcdserverpb__RangeResponse *print_into;
};

static Mvccpb__KeyValue *kv_copy(const Mvccpb__KeyValue *kv)
{
    size_t n = mvccpb__key_value__get_packed_size(kv);
    uint8_t *buf = ctl_alloc(n ? n : 1);
    mvccpb__key_value__pack(kv, buf);
    /* unpacked with malloc: lives until exit, like every response here */
    return mvccpb__key_value__unpack(NULL, n, buf);
}

static void waiter_cb(struct keel_watch *w,
                      const Etcdserverpb__WatchResponse *r)
{
    struct waiter *x = w->data;
    for (size_t i = 0; i < r->n_events && !x->hit; i++) {
        const Mvccpb__Event *e = r->events[i];
        if (x->want_delete) {
            if (e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE) {
                x->hit = 1;
            } else if (x->print_into != NULL && r->header != NULL) {
                /* observe: clientv3 reuses the Get response, header and
                 * kvs replaced */
                Etcdserverpb__ResponseHeader h = *r->header;
                Mvccpb__KeyValue *kvs[1] = {e->kv};
                Etcdserverpb__RangeResponse out = *x->print_into;
                out.header = &h;
                out.kvs = kvs;
                out.n_kvs = 1;
                ctl_print_get(&out, 0);
                fflush(stdout);
            }
        } else if (e->type == MVCCPB__EVENT__EVENT_TYPE__PUT) {
            x->hit = 1;
            x->kv = kv_copy(e->kv);
            if (r->header != NULL) {
                x->hdr = *r->header;
            }
            x->hdr.revision = e->kv->mod_revision;
        }
    }
}

static void waiter_end(struct keel_watch *w, int status, const char *msg)
{
    (void)status;
    (void)msg;
    ((struct waiter *)w->data)->ended = 1;
}

/* Watch key (a prefix when prefix) from rev until the wanted event or a
 * signal. Returns 0 on the event, -1 when interrupted; a watch that ends by
 * itself is etcd's "lost watcher waiting for delete". */
static int wait_event(struct waiter *x, const char *key, int prefix,
                      int64_t rev)
{
    Etcdserverpb__WatchCreateRequest c =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    set_str(&c.key, key);
    if (prefix) {
        size_t len = strlen(key);
        char *end = ctl_alloc(len + 1);
        c.range_end.len = keel_prefix_end(key, len, end);
        c.range_end.data = (uint8_t *)end;
    }
    c.start_revision = rev;
    x->w.data = x;
    if (keel_watch_start(keel_sync_client(cs), &x->w, &c, waiter_cb,
                         waiter_end) != 0) {
        ctl_die(EXIT_ERROR, "watch failed");
    }
    while (!x->hit && !x->ended && !interrupted) {
        run_once();
    }
    if (!x->ended) {
        keel_watch_stop(&x->w);
        while (!x->ended) {
            run_once();
        }
    }
    if (x->hit) {
        return 0;
    }
    if (!interrupted) {
        ctl_die(EXIT_ERROR, "lost watcher waiting for delete");
    }
    return -1;
}

/* concurrency.waitDeletes: until no key under pfx created at or before
 * max_rev is left; *hdr_rev = the revision of the last Get's header. -1
 * when interrupted. */
static int wait_deletes(const char *pfx, int64_t max_rev, int64_t *hdr_rev)
{
    for (;;) {
        Etcdserverpb__RangeResponse *r =
            call(KEEL_M_RANGE, &range_top(pfx, 1, max_rev)->base,
                 &etcdserverpb__range_response__descriptor,
                 KEEL_CALL_IDEMPOTENT);
        if (r->n_kvs == 0) {
            *hdr_rev = r->header ? r->header->revision : 0;
            return 0;
        }
        char *last = ctl_strndup((const char *)r->kvs[0]->key.data,
                                 r->kvs[0]->key.len);
        struct waiter x;
        memset(&x, 0, sizeof(x));
        x.want_delete = 1;
        if (wait_event(&x, last, 0, r->header ? r->header->revision : 0) !=
            0) {
            return -1;
        }
    }
}

/* Txn with one compare on key's create revision. */
static Etcdserverpb__TxnResponse *txn_create_rev(const char *key, int64_t rev,
                                                 Etcdserverpb__RequestOp **then,
                                                 size_t nthen,
                                                 Etcdserverpb__RequestOp **els,
                                                 size_t nels)
{
    Etcdserverpb__Compare cmp = ETCDSERVERPB__COMPARE__INIT;
    cmp.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    cmp.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
    set_str(&cmp.key, key);
    cmp.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
    cmp.create_revision = rev;
    Etcdserverpb__Compare *cmps[1] = {&cmp};
    Etcdserverpb__TxnRequest t = ETCDSERVERPB__TXN_REQUEST__INIT;
    t.compare = cmps;
    t.n_compare = 1;
    t.success = then;
    t.n_success = nthen;
    t.failure = els;
    t.n_failure = nels;
    return call(KEEL_M_TXN, &t.base, &etcdserverpb__txn_response__descriptor,
                0);
}

static Etcdserverpb__RequestOp *op_put(const char *key, const char *val,
                                       int64_t lease)
{
    Etcdserverpb__PutRequest *p = ctl_alloc(sizeof(*p));
    etcdserverpb__put_request__init(p);
    set_str(&p->key, key);
    set_str(&p->value, val);
    p->lease = lease;
    Etcdserverpb__RequestOp *op = ctl_alloc(sizeof(*op));
    etcdserverpb__request_op__init(op);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
    op->request_put = p;
    return op;
}

static Etcdserverpb__RequestOp *op_range(Etcdserverpb__RangeRequest *r)
{
    Etcdserverpb__RequestOp *op = ctl_alloc(sizeof(*op));
    etcdserverpb__request_op__init(op);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
    op->request_range = r;
    return op;
}

static Etcdserverpb__RequestOp *op_get(const char *key)
{
    Etcdserverpb__RangeRequest *r = ctl_alloc(sizeof(*r));
    etcdserverpb__range_request__init(r);
    set_str(&r->key, key);
    return op_range(r);
}

static Etcdserverpb__RequestOp *op_delete(const char *key)
{
    Etcdserverpb__DeleteRangeRequest *d = ctl_alloc(sizeof(*d));
    etcdserverpb__delete_range_request__init(d);
    set_str(&d->key, key);
    Etcdserverpb__RequestOp *op = ctl_alloc(sizeof(*op));
    etcdserverpb__request_op__init(op);
    op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
    op->request_delete_range = d;
    return op;
}

static char *session_key(const char *pfx)
{
    size_t l = strlen(pfx) + 20;
    char *k = ctl_alloc(l);
    snprintf(k, l, "%s%" PRIx64, pfx, (uint64_t)session_lease);
    return k;
}

static char *prefix_of(const char *name)
{
    size_t l = strlen(name) + 2;
    char *p = ctl_alloc(l);
    snprintf(p, l, "%s/", name);
    return p;
}

/* ---- lock ------------------------------------------------------------------ */

static int64_t lock_ttl = 10;
static struct flag lock_flags[] = {
    {"ttl", 0, F_INT64, &lock_ttl, 0},
    {NULL, 0, 0, NULL, 0},
};

static char *my_key;

static void unlock(void)
{
    Etcdserverpb__DeleteRangeRequest d =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    set_str(&d.key, my_key);
    call(KEEL_M_DELETE_RANGE, &d.base,
         &etcdserverpb__delete_range_response__descriptor, 0);
}

/* Go's exec.Command(...).Run() error text, NULL on success. */
static const char *run_command(char **argv, int64_t rev)
{
    static char err[600];
    const char *path = argv[0];
    if (strchr(path, '/') == NULL) {
        const char *pv = getenv("PATH");
        char *found = NULL;
        char *copy = ctl_strdup(pv ? pv : "");
        for (char *save = NULL, *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            size_t l = strlen(d) + strlen(path) + 2;
            char *cand = ctl_alloc(l);
            snprintf(cand, l, "%s/%s", d, path);
            if (access(cand, X_OK) == 0) {
                found = cand;
                break;
            }
        }
        if (found == NULL) {
            snprintf(err, sizeof(err),
                     "exec: \"%s\": executable file not found in $PATH", path);
            return err;
        }
        path = found;
    } else if (access(path, X_OK) != 0) {
        snprintf(err, sizeof(err), "fork/exec %s: %s", path,
                 ctl_go_errno(errno));
        return err;
    }
    char env_rev[64];
    snprintf(env_rev, sizeof(env_rev), "ETCD_LOCK_REV=%" PRId64, rev);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, sizeof(err), "fork/exec %s: %s", path,
                 ctl_go_errno(errno));
        return err;
    }
    if (pid == 0) {
        /* Go: Env = the lock's variables, then the environment; Go keeps
         * the later of duplicates, so an inherited value wins. */
        setenv("ETCD_LOCK_KEY", my_key, 0);
        setenv("ETCD_LOCK_REV", env_rev + strlen("ETCD_LOCK_REV="), 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, 0);
            close(devnull);
        }
        execv(path, argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        snprintf(err, sizeof(err), "exit status %d", WEXITSTATUS(st));
        return err;
    }
    if (WIFSIGNALED(st)) {
        snprintf(err, sizeof(err), "signal: %s", strsignal(WTERMSIG(st)));
        if (err[8] >= 'A' && err[8] <= 'Z') {
            err[8] = (char)(err[8] - 'A' + 'a');
        }
        return err;
    }
    return NULL;
}

static void lock_run(int argc, char **argv)
{
    if (argc == 0) {
        ctl_die(EXIT_BAD_ARGS, "lock takes a lock name argument and an "
                               "optional command to execute");
    }
    session_new(lock_ttl);
    const char *pfx = prefix_of(argv[0]);
    my_key = session_key(pfx);
    Etcdserverpb__RequestOp *then[2] = {op_put(my_key, "", session_lease),
                                        op_range(range_top(pfx, 0, 0))};
    Etcdserverpb__RequestOp *els[2] = {op_get(my_key),
                                       op_range(range_top(pfx, 0, 0))};
    Etcdserverpb__TxnResponse *t = txn_create_rev(my_key, 0, then, 2, els, 2);
    int64_t my_rev = t->header ? t->header->revision : 0;
    int64_t hdr_rev = my_rev;
    if (!t->succeeded) {
        my_rev = t->responses[0]->response_range->kvs[0]->create_revision;
    }
    Etcdserverpb__RangeResponse *owner = t->responses[1]->response_range;
    if (!(owner->n_kvs == 0 || owner->kvs[0]->create_revision == my_rev)) {
        /* Mutex.Header() is then the last waitDeletes Get's header. */
        if (wait_deletes(pfx, my_rev - 1, &hdr_rev) != 0) {
            unlock();
            ctl_die(EXIT_ERROR, "context canceled");
        }
    }
    if (argc > 1) {
        char **cmd = ctl_alloc((size_t)argc * sizeof(char *));
        memcpy(cmd, argv + 1, (size_t)(argc - 1) * sizeof(char *));
        const char *err = run_command(cmd, hdr_rev);
        unlock();
        if (err != NULL) {
            ctl_die(EXIT_ERROR, "%s", err);
        }
        exit(EXIT_OK);
    }
    Etcdserverpb__RangeResponse *k = get_key(my_key);
    if (k->n_kvs == 0) {
        ctl_die(EXIT_ERROR, "lock lost on init");
    }
    ctl_print_get(k, 0);
    fflush(stdout);
    while (!interrupted && !session_done) {
        run_once();
    }
    if (interrupted) {
        unlock();
        exit(EXIT_OK);
    }
    ctl_die(EXIT_ERROR, "session expired");
}

/* ---- elect ----------------------------------------------------------------- */

static int elect_listen;
static struct flag elect_flags[] = {
    {"listen", 'l', F_BOOL, &elect_listen, 0},
    {NULL, 0, 0, NULL, 0},
};

static void observe(const char *name)
{
    const char *pfx = prefix_of(name);
    for (;;) {
        Etcdserverpb__RangeResponse *resp =
            call(KEEL_M_RANGE, &range_top(pfx, 0, 0)->base,
                 &etcdserverpb__range_response__descriptor,
                 KEEL_CALL_IDEMPOTENT);
        Mvccpb__KeyValue *kv;
        Etcdserverpb__ResponseHeader hdr;
        if (resp->n_kvs == 0) {
            struct waiter x;
            memset(&x, 0, sizeof(x));
            if (wait_event(&x, pfx, 1, resp->header->revision) != 0) {
                exit(EXIT_OK);
            }
            kv = x.kv;
            hdr = x.hdr;
        } else {
            kv = resp->kvs[0];
            hdr = *resp->header;
        }
        /* clientv3 sends a GetResponse of just {Header, Kvs}. */
        Etcdserverpb__RangeResponse out = ETCDSERVERPB__RANGE_RESPONSE__INIT;
        Mvccpb__KeyValue *kvs[1] = {kv};
        out.header = &hdr;
        out.kvs = kvs;
        out.n_kvs = 1;
        ctl_print_get(&out, 0);
        fflush(stdout);
        char *key = ctl_strndup((const char *)kv->key.data, kv->key.len);
        struct waiter x;
        memset(&x, 0, sizeof(x));
        x.want_delete = 1;
        x.print_into = resp;
        if (wait_event(&x, key, 0, hdr.revision + 1) != 0) {
            exit(EXIT_OK);
        }
    }
}

static void campaign(const char *name, const char *val)
{
    const char *pfx = prefix_of(name);
    char *key = session_key(pfx);
    Etcdserverpb__RequestOp *then[1] = {op_put(key, val, session_lease)};
    Etcdserverpb__RequestOp *els[1] = {op_get(key)};
    Etcdserverpb__TxnResponse *t = txn_create_rev(key, 0, then, 1, els, 1);
    int64_t rev = t->header ? t->header->revision : 0;
    if (!t->succeeded) {
        Mvccpb__KeyValue *kv = t->responses[0]->response_range->kvs[0];
        rev = kv->create_revision;
        if (kv->value.len != strlen(val) ||
            memcmp(kv->value.data, val, kv->value.len) != 0) {
            /* Proclaim */
            Etcdserverpb__RequestOp *put[1] = {op_put(key, val, session_lease)};
            Etcdserverpb__TxnResponse *p =
                txn_create_rev(key, rev, put, 1, NULL, 0);
            if (!p->succeeded) {
                ctl_die(EXIT_ERROR, "election: not leader");
            }
        }
    }
    Etcdserverpb__RequestOp *del[1] = {op_delete(key)};
    int64_t hdr_rev;
    if (wait_deletes(pfx, rev - 1, &hdr_rev) != 0) {
        txn_create_rev(key, rev, del, 1, NULL, 0); /* Resign */
        ctl_die(EXIT_ERROR, "context canceled");
    }
    ctl_print_get(get_key(key), 0);
    fflush(stdout);
    while (!interrupted && !session_done) {
        run_once();
    }
    if (!interrupted) {
        ctl_die(EXIT_ERROR, "elect: session expired");
    }
    txn_create_rev(key, rev, del, 1, NULL, 0);
    exit(EXIT_OK);
}

static void elect_run(int argc, char **argv)
{
    if (argc != 1 && argc != 2) {
        ctl_die(EXIT_BAD_ARGS, "elect takes one election name argument and "
                               "an optional proposal argument");
    }
    if (argc == 1 && !elect_listen) {
        ctl_die(EXIT_BAD_ARGS, "no proposal argument but -l not set");
    }
    if (argc == 2 && elect_listen) {
        ctl_die(EXIT_BAD_ARGS, "proposal given but -l is set");
    }
    session_new(60); /* concurrency's defaultSessionTTL */
    if (argc == 1) {
        observe(argv[0]);
    } else {
        campaign(argv[0], argv[1]);
    }
}

const struct ctl_cmd ctl_conc_cmds[] = {
    {"lock", lock_flags, lock_run},
    {"elect", elect_flags, elect_run},
    {NULL, NULL, NULL},
};
