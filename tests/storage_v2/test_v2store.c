/*
 * Unit tests of storage/v2store.c against etcd's v2store semantics: every
 * write kind (set, create, update, compareAndSwap, delete, compareAndDelete,
 * in-order create), their v2 error codes, causes and indexes, hidden keys,
 * TTLs and SYNC expiry, path cleaning, and persistence (a reopened store,
 * long paths, an aborted batch leaving nothing).
 */
#include "mvcc_test_util.h"
#include "v2store.h"

struct fx
{
    struct tdir t;
    struct mvcc_store *s;
    struct v2store *v;
    struct keel_arena a;
};

#define SEC 1000000000LL
#define NOW (1800000000LL * SEC) /* 2027-01-15 */

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    tdir_init(&f->t);
    f->s = open_store(f->t.db, 0);
    assert_int_equal(v2store_open(f->s, &f->v), 0);
    keel_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    v2store_free(f->v);
    mvcc_close(f->s);
    keel_arena_free(&f->a);
    rm_rf(f->t.dir);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    v2store_free(f->v);
    mvcc_close(f->s);
    f->s = open_store(f->t.db, 0);
    assert_int_equal(v2store_open(f->s, &f->v), 0);
}

/* A request: method, path, then "k=v" options (val, dir, pv, pi, pe, ttl
 * (absolute ns), rec, refresh, time). */
static Keelpb__V2Response *apply(struct fx *f, const char *method,
                                 const char *path, const char *opts)
{
    Keelpb__V2Request r = KEELPB__V2_REQUEST__INIT;
    r.method = (char *)method;
    r.path = (char *)path;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", opts ? opts : "");
    for (char *t = strtok(buf, " "); t != NULL; t = strtok(NULL, " ")) {
        char *eq = strchr(t, '=');
        char *v = eq ? eq + 1 : "";
        if (eq) {
            *eq = '\0';
        }
        char *c = keel_arena_dup(&f->a, v, strlen(v) + 1);
        if (strcmp(t, "val") == 0) {
            r.val = str(c);
        } else if (strcmp(t, "dir") == 0) {
            r.dir = true;
        } else if (strcmp(t, "pv") == 0) {
            r.prev_value = str(c);
        } else if (strcmp(t, "pi") == 0) {
            r.prev_index = strtoull(v, NULL, 10);
        } else if (strcmp(t, "pe") == 0) {
            r.prev_exist = strcmp(v, "true") == 0 ? 2 : 1;
        } else if (strcmp(t, "ttl") == 0) {
            r.expiration = NOW + strtoll(v, NULL, 10) * SEC;
        } else if (strcmp(t, "rec") == 0) {
            r.recursive = true;
        } else if (strcmp(t, "refresh") == 0) {
            r.refresh = true;
        } else if (strcmp(t, "time") == 0) {
            r.time = NOW + strtoll(v, NULL, 10) * SEC;
        } else {
            fail_msg("bad option %s", t);
        }
    }
    struct mvcc_write *w = NULL;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    assert_true(mvcc_write_should_apply(w, mvcc_consistent_index(f->s) + 1));
    Keelpb__V2Response *resp = NULL;
    assert_int_equal(v2store_apply(f->v, w, &r, NOW, &f->a, &resp), 0);
    assert_int_equal(
        mvcc_write_commit(w, mvcc_consistent_index(f->s) + 1, 1), 0);
    return resp;
}

static Keelpb__V2Response *get(struct fx *f, const char *path, bool rec)
{
    Keelpb__V2Response *r = NULL;
    assert_int_equal(v2store_get(f->v, path, rec, true, NOW, &f->a, &r), 0);
    return r;
}

static void assert_err(const Keelpb__V2Response *r, int code,
                       const char *cause, uint64_t index)
{
    assert_int_equal(r->error_code, code);
    assert_string_equal(r->cause ? r->cause : "", cause);
    assert_int_equal(r->index, index);
}

static const Keelpb__V2Event *ev(const Keelpb__V2Response *r)
{
    assert_int_equal(r->error_code, 0);
    assert_int_equal(r->n_events, 1);
    return r->events[0];
}

static void assert_value(const Keelpb__V2Node *n, const char *v)
{
    assert_true(n->has_value);
    assert_int_equal(n->value.len, strlen(v));
    assert_memory_equal(n->value.data, v, n->value.len);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_v2store_set_get(void **state)
{
    struct fx *f = *state;
    const Keelpb__V2Event *e = ev(apply(f, "PUT", "/foo", "val=bar"));
    assert_string_equal(e->action, "set");
    assert_string_equal(e->node->key, "/foo");
    assert_int_equal(e->node->created_index, 1);
    assert_int_equal(e->node->modified_index, 1);
    assert_null(e->prev_node);
    e = ev(apply(f, "PUT", "/foo", "val=baz"));
    assert_int_equal(e->node->created_index, 2);
    assert_value(e->prev_node, "bar");
    e = ev(get(f, "/foo", false));
    assert_string_equal(e->action, "get");
    assert_value(e->node, "baz");
    assert_int_equal(e->etcd_index, 2);
    assert_int_equal(v2store_index(f->v), 2);
    /* a directory in the way: 102 with the path; a file in the way: 104 */
    apply(f, "PUT", "/d/x", "val=1");
    assert_err(apply(f, "PUT", "/d", "val=1"), V2_ECODE_NOT_FILE, "/d", 3);
    assert_err(apply(f, "PUT", "/foo/x", "val=1"), V2_ECODE_NOT_DIR, "/foo",
               3);
    assert_err(get(f, "/foo/x", false), V2_ECODE_NOT_DIR, "/foo", 3);
    assert_err(get(f, "/nokey", false), V2_ECODE_KEY_NOT_FOUND, "/nokey", 3);
    assert_err(get(f, "/d/no/deeper", false), V2_ECODE_KEY_NOT_FOUND,
               "/d/no", 3);
    assert_err(apply(f, "PUT", "/", "val=1"), V2_ECODE_ROOT_RONLY, "/", 3);
    assert_int_equal(v2store_index(f->v), 3);
}

static void test_v2store_listing_hidden_sorted(void **state)
{
    struct fx *f = *state;
    apply(f, "PUT", "/d/b", "val=2");
    apply(f, "PUT", "/d/a/x", "val=1");
    apply(f, "PUT", "/d/_h", "val=3");
    apply(f, "PUT", "/d/c", "val=4");
    const Keelpb__V2Event *e = ev(get(f, "/d", false));
    assert_true(e->node->dir);
    assert_int_equal(e->node->n_nodes, 3);
    assert_string_equal(e->node->nodes[0]->key, "/d/a");
    assert_int_equal(e->node->nodes[0]->n_nodes, 0); /* not recursive */
    assert_string_equal(e->node->nodes[1]->key, "/d/b");
    assert_string_equal(e->node->nodes[2]->key, "/d/c");
    e = ev(get(f, "/d", true));
    assert_int_equal(e->node->nodes[0]->n_nodes, 1);
    assert_string_equal(e->node->nodes[0]->nodes[0]->key, "/d/a/x");
    /* a hidden key is there when asked for by name */
    assert_value(ev(get(f, "/d/_h", false))->node, "3");
    /* the root: key "" and indexes 0 */
    e = ev(get(f, "/", false));
    assert_string_equal(e->node->key, "");
    assert_int_equal(e->node->modified_index, 0);
    assert_int_equal(e->node->n_nodes, 1);
}

static void test_v2store_create_update_cas(void **state)
{
    struct fx *f = *state;
    assert_string_equal(ev(apply(f, "PUT", "/c", "val=1 pe=false"))->action,
                        "create");
    assert_err(apply(f, "PUT", "/c", "val=2 pe=false"), V2_ECODE_NODE_EXIST,
               "/c", 1);
    const Keelpb__V2Event *e = ev(apply(f, "PUT", "/c", "val=3 pe=true"));
    assert_string_equal(e->action, "update");
    assert_int_equal(e->node->modified_index, 2);
    assert_int_equal(e->node->created_index, 1);
    assert_err(apply(f, "PUT", "/none", "val=3 pe=true"),
               V2_ECODE_KEY_NOT_FOUND, "/none", 2);
    e = ev(apply(f, "PUT", "/c", "val=4 pv=3"));
    assert_string_equal(e->action, "compareAndSwap");
    assert_value(e->prev_node, "3");
    assert_err(apply(f, "PUT", "/c", "val=5 pv=nope"), V2_ECODE_TEST_FAILED,
               "[nope != 4]", 3);
    assert_err(apply(f, "PUT", "/c", "val=5 pi=1"), V2_ECODE_TEST_FAILED,
               "[1 != 3]", 3);
    assert_err(apply(f, "PUT", "/c", "val=5 pi=1 pv=nope"),
               V2_ECODE_TEST_FAILED, "[nope != 4] [1 != 3]", 3);
    assert_string_equal(ev(apply(f, "PUT", "/c", "val=6 pi=3"))->action,
                        "compareAndSwap");
    /* update of a directory keeps its modifiedIndex (etcd's node.Write
     * fails on a dir) while the event says the new index */
    apply(f, "PUT", "/dir", "dir");
    e = ev(apply(f, "PUT", "/dir", "dir pe=true ttl=100"));
    assert_int_equal(e->node->modified_index, 6);
    assert_int_equal(e->node->ttl, 100);
    assert_int_equal(ev(get(f, "/dir", false))->node->modified_index, 5);
    assert_err(apply(f, "PUT", "/dir", "val=x pe=true"), V2_ECODE_NOT_FILE,
               "/dir", 6);
    assert_err(apply(f, "PUT", "/dir", "val=x pv=1"), V2_ECODE_NOT_FILE,
               "/dir", 6);
}

static void test_v2store_delete(void **state)
{
    struct fx *f = *state;
    apply(f, "PUT", "/d/a/b", "val=1");
    apply(f, "PUT", "/f", "val=v");
    assert_err(apply(f, "DELETE", "/d", NULL), V2_ECODE_NOT_FILE, "/d", 2);
    assert_err(apply(f, "DELETE", "/d", "dir"), V2_ECODE_DIR_NOT_EMPTY, "/d",
               2);
    assert_err(apply(f, "DELETE", "/", "rec"), V2_ECODE_ROOT_RONLY, "/", 2);
    assert_err(apply(f, "DELETE", "/nokey", NULL), V2_ECODE_KEY_NOT_FOUND,
               "/nokey", 2);
    const Keelpb__V2Event *e = ev(apply(f, "DELETE", "/d", "rec"));
    assert_string_equal(e->action, "delete");
    assert_true(e->node->dir);
    assert_true(e->prev_node->dir);
    assert_int_equal(e->node->modified_index, 3);
    assert_int_equal(v2store_count(f->v), 1);
    /* removed paths, children first (etcd's node.Remove callbacks) */
    assert_int_equal(e->n_removed, 3);
    assert_string_equal(e->removed[0], "/d/a/b");
    assert_string_equal(e->removed[1], "/d/a");
    assert_string_equal(e->removed[2], "/d");
    assert_err(apply(f, "DELETE", "/f", "pv=x"), V2_ECODE_TEST_FAILED,
               "[x != v]", 3);
    e = ev(apply(f, "DELETE", "/f", "pv=v"));
    assert_string_equal(e->action, "compareAndDelete");
    assert_value(e->prev_node, "v");
    assert_int_equal(v2store_count(f->v), 0);
    /* compareAndDelete of the root: not a file, cause "" as etcd's "/1" */
    assert_err(apply(f, "DELETE", "/", "pv=x"), V2_ECODE_NOT_FILE, "", 4);
}

static void test_v2store_post_in_order(void **state)
{
    struct fx *f = *state;
    const Keelpb__V2Event *e = ev(apply(f, "POST", "/q", "val=a"));
    assert_string_equal(e->action, "create");
    assert_string_equal(e->node->key, "/q/00000000000000000001");
    e = ev(apply(f, "POST", "/q", "val=b"));
    assert_string_equal(e->node->key, "/q/00000000000000000002");
    apply(f, "PUT", "/file", "val=1");
    assert_err(apply(f, "POST", "/file", "val=x"), V2_ECODE_NOT_DIR, "/file",
               3);
}

static void test_v2store_ttl_sync(void **state)
{
    struct fx *f = *state;
    apply(f, "PUT", "/t1", "val=a ttl=10");
    apply(f, "PUT", "/t2", "val=b ttl=5");
    apply(f, "PUT", "/dir/k", "val=c");
    apply(f, "PUT", "/dir", "dir pe=true ttl=5");
    apply(f, "PUT", "/p", "val=perm");
    assert_true(v2store_has_ttl(f->v));
    const Keelpb__V2Event *e = ev(get(f, "/t1", false));
    assert_int_equal(e->node->ttl, 10);
    assert_int_equal(e->node->expiration, NOW + 10 * SEC);
    /* nothing expired yet */
    Keelpb__V2Response *r = apply(f, "SYNC", "", "time=4");
    assert_int_equal(r->n_events, 0);
    assert_int_equal(v2store_index(f->v), 5);
    /* /dir and /t2 (both at +5: path order), then /t1 */
    r = apply(f, "SYNC", "", "time=5");
    assert_int_equal(r->n_events, 2);
    assert_string_equal(r->events[0]->action, "expire");
    assert_string_equal(r->events[0]->node->key, "/dir");
    assert_true(r->events[0]->node->dir);
    assert_int_equal(r->events[0]->node->modified_index, 6);
    assert_string_equal(r->events[1]->node->key, "/t2");
    assert_int_equal(r->events[1]->node->modified_index, 7);
    assert_value(r->events[1]->prev_node, "b");
    r = apply(f, "SYNC", "", "time=100");
    assert_int_equal(r->n_events, 1);
    assert_false(v2store_has_ttl(f->v));
    assert_int_equal(v2store_count(f->v), 1);
    /* refresh keeps the value, needs the key */
    apply(f, "PUT", "/r", "val=keep ttl=5");
    e = ev(apply(f, "PUT", "/r", "ttl=50 refresh"));
    assert_true(e->refresh);
    assert_value(e->node, "keep");
    assert_int_equal(e->node->ttl, 50);
    assert_err(apply(f, "PUT", "/gone", "ttl=5 refresh"),
               V2_ECODE_KEY_NOT_FOUND, "/gone", 10);
    /* an update without ttl makes the key permanent again */
    apply(f, "PUT", "/r", "val=x pe=true");
    assert_false(v2store_has_ttl(f->v));
    /* an expiration before 2000-01-01 is permanent (etcd minExpireTime) */
    Keelpb__V2Request q = KEELPB__V2_REQUEST__INIT;
    q.method = "PUT";
    q.path = "/old";
    q.prev_exist = 1;
    q.expiration = 1000;
    struct mvcc_write *w = NULL;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    Keelpb__V2Response *resp = NULL;
    assert_int_equal(v2store_apply(f->v, w, &q, NOW, &f->a, &resp), 0);
    assert_int_equal(mvcc_write_commit(w, mvcc_consistent_index(f->s) + 1, 1),
                     0);
    assert_int_equal(ev(resp)->node->expiration, 0);
}

static void test_v2store_persistence(void **state)
{
    struct fx *f = *state;
    char longp[1200];
    memset(longp, 'k', sizeof longp);
    longp[0] = '/';
    longp[600] = '/';
    longp[sizeof longp - 1] = '\0';
    apply(f, "PUT", "/a/b", "val=1");
    apply(f, "PUT", "/t", "val=2 ttl=30");
    apply(f, "PUT", longp, "val=long");
    apply(f, "PUT", "/z", "dir");
    apply(f, "DELETE", "/z", "dir");
    struct mvcc_write *bw = NULL;
    assert_int_equal(mvcc_write_begin(f->s, &bw), 0);
    assert_int_equal(v2store_bump_index(f->v, bw), 0); /* a /0 write */
    assert_int_equal(
        mvcc_write_commit(bw, mvcc_consistent_index(f->s) + 1, 1), 0);
    reopen(f);
    assert_int_equal(v2store_index(f->v), 6);
    assert_int_equal(v2store_count(f->v), 5); /* a, a/b, t, long dir, long */
    assert_value(ev(get(f, "/a/b", false))->node, "1");
    assert_value(ev(get(f, longp, false))->node, "long");
    assert_int_equal(ev(get(f, "/t", false))->node->ttl, 30);
    assert_true(v2store_has_ttl(f->v));
    assert_err(get(f, "/z", false), V2_ECODE_KEY_NOT_FOUND, "/z", 6);
    /* deleting the long path removes its hashed record too */
    apply(f, "DELETE", longp, NULL);
    reopen(f);
    assert_int_equal(v2store_count(f->v), 4);
    /* a batch that is aborted leaves nothing in the table */
    struct mvcc_write *w = NULL;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    Keelpb__V2Request q = KEELPB__V2_REQUEST__INIT;
    q.method = "PUT";
    q.path = "/aborted";
    Keelpb__V2Response *resp = NULL;
    assert_int_equal(v2store_apply(f->v, w, &q, NOW, &f->a, &resp), 0);
    mvcc_write_abort(w);
    assert_int_equal(v2store_reload(f->v), 0);
    assert_err(get(f, "/aborted", false), V2_ECODE_KEY_NOT_FOUND, "/aborted",
               7);
}

static void test_v2store_clean_path(void **state)
{
    struct fx *f = *state;
    static const char *const cases[][2] = {
        {"", "/"},           {"/", "/"},         {"a", "/a"},
        {"/a/", "/a"},       {"//a//b", "/a/b"}, {"/a/./b", "/a/b"},
        {"/a/../b", "/b"},   {"/../..", "/"},    {"/a/b/../..", "/"},
        {"/a/..b", "/a/..b"}, {"/.a", "/.a"},    {"/a/b/..", "/a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *c = v2store_clean_path(&f->a, cases[i][0], strlen(cases[i][0]));
        assert_string_equal(c, cases[i][1]);
    }
    assert_string_equal(v2store_error_message(401),
                        "The event in requested index is outdated and cleared");
    assert_int_equal(v2store_error_status(V2_ECODE_NODE_EXIST), 412);
    assert_int_equal(v2store_error_status(V2_ECODE_TTL_NAN), 400);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_v2store_set_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2store_listing_hidden_sorted,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2store_create_update_cas, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v2store_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_v2store_post_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v2store_ttl_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v2store_persistence, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_v2store_clean_path, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
