/*
 * Unit tests of server/auth.c's building blocks (bcrypt, token formats,
 * --auth-token values) and of server/auth_store.c on a real MVCC store in
 * a temp dir: each auth op applied as the node applies it, with etcd 3.4's
 * errors and permission semantics (auth/store.go, range_perm_cache.go).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"
#include "auth_jwt.h"
#include "auth_store.h"
#include "keel_err.h"
#include "mvcc.h"

/* ---- fixture: a fresh store ---------------------------------------------- */

struct fx
{
    char dir[64];
    char db[96];
    struct mvcc_store *s;
    struct keel_arena a;
    uint64_t index;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/keel_auth_XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/db", f->dir);
    char err[256];
    assert_int_equal(mvcc_open(f->db, NULL, &f->s, err, sizeof err), 0);
    keel_arena_init(&f->a, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    mvcc_close(f->s);
    keel_arena_free(&f->a);
    unlink(f->db);
    char lock[128];
    snprintf(lock, sizeof lock, "%s-lock", f->db);
    unlink(lock);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* Apply one request as user (NULL: none) in its own batch; returns rv. */
static int apply_as(struct fx *f, const char *user, Keelpb__Request *req)
{
    Keelpb__RequestHeader h = KEELPB__REQUEST_HEADER__INIT;
    if (user != NULL) {
        h.username = (char *)user;
        h.auth_revision = auth_store_revision(f->s, NULL);
    }
    req->header = &h;
    struct mvcc_write *w = NULL;
    assert_int_equal(mvcc_write_begin(f->s, &w), 0);
    int rv = 0;
    ProtobufCMessage *resp = auth_store_apply(f->s, w, req, &f->a, &rv);
    if (auth_store_is_op(req)) {
        assert_true((rv == 0) == (resp != NULL));
    } else {
        assert_null(resp);
    }
    assert_int_equal(mvcc_write_commit(w, ++f->index, 1), 0);
    req->header = NULL;
    return rv;
}

static int user_add(struct fx *f, const char *as, const char *name)
{
    Etcdserverpb__AuthUserAddRequest r = ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    r.name = (char *)name;
    r.password = (char *)"$2b$04$notarealhashbutstoredasis";
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_ADD;
    q.auth_user_add = &r;
    return apply_as(f, as, &q);
}

static int role_add(struct fx *f, const char *as, const char *name)
{
    Etcdserverpb__AuthRoleAddRequest r = ETCDSERVERPB__AUTH_ROLE_ADD_REQUEST__INIT;
    r.name = (char *)name;
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_ROLE_ADD;
    q.auth_role_add = &r;
    return apply_as(f, as, &q);
}

static int grant_role(struct fx *f, const char *as, const char *user,
                      const char *role)
{
    Etcdserverpb__AuthUserGrantRoleRequest r =
        ETCDSERVERPB__AUTH_USER_GRANT_ROLE_REQUEST__INIT;
    r.user = (char *)user;
    r.role = (char *)role;
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_GRANT_ROLE;
    q.auth_user_grant_role = &r;
    return apply_as(f, as, &q);
}

static ProtobufCBinaryData bin(const char *s)
{
    ProtobufCBinaryData b = {strlen(s), (uint8_t *)s};
    return b;
}

static int grant_perm(struct fx *f, const char *role, int type,
                      const char *key, const char *end, size_t end_len)
{
    Authpb__Permission p = AUTHPB__PERMISSION__INIT;
    p.permtype = type;
    p.key = bin(key);
    p.range_end.data = (uint8_t *)end;
    p.range_end.len = end_len;
    Etcdserverpb__AuthRoleGrantPermissionRequest r =
        ETCDSERVERPB__AUTH_ROLE_GRANT_PERMISSION_REQUEST__INIT;
    r.name = (char *)role;
    r.perm = &p;
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_ROLE_GRANT_PERMISSION;
    q.auth_role_grant_permission = &r;
    return apply_as(f, NULL, &q);
}

static int simple_op(struct fx *f, const char *as, int op_case)
{
    Etcdserverpb__AuthEnableRequest en = ETCDSERVERPB__AUTH_ENABLE_REQUEST__INIT;
    Etcdserverpb__AuthDisableRequest dis =
        ETCDSERVERPB__AUTH_DISABLE_REQUEST__INIT;
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = op_case;
    if (op_case == KEELPB__REQUEST__OP_AUTH_ENABLE) {
        q.auth_enable = &en;
    } else {
        q.auth_disable = &dis;
    }
    return apply_as(f, as, &q);
}

static int check(struct fx *f, const char *user, const char *key,
                 const char *end, size_t end_len, enum auth_perm perm)
{
    return auth_store_check(f->s, NULL, user, auth_store_revision(f->s, NULL),
                            (const uint8_t *)key, strlen(key),
                            (const uint8_t *)end, end_len, perm, &f->a);
}

/* root with the root role, u1 with role r1, auth enabled */
static void enable_with_root(struct fx *f)
{
    assert_int_equal(user_add(f, NULL, "root"), 0);
    assert_int_equal(grant_role(f, NULL, "root", "root"), 0);
    assert_int_equal(user_add(f, NULL, "u1"), 0);
    assert_int_equal(role_add(f, NULL, "r1"), 0);
    assert_int_equal(grant_role(f, NULL, "u1", "r1"), 0);
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_ENABLE), 0);
    assert_true(auth_store_enabled(f->s, NULL));
}

/* ---- bcrypt and tokens -------------------------------------------------- */

static void test_auth_bcrypt_roundtrip(void **state)
{
    (void)state;
    char h[128];
    assert_int_equal(auth_bcrypt_hash("s3cret", 4, h, sizeof h), 0);
    assert_memory_equal(h, "$2b$04$", 7);
    assert_int_equal(strlen(h), 60);
    assert_int_equal(auth_bcrypt_verify("s3cret", h), 0);
    assert_int_equal(auth_bcrypt_verify("s3creT", h), KEEL_EAUTHFAILED);
    assert_int_equal(auth_bcrypt_verify("", h), KEEL_EAUTHFAILED);
    /* a fresh salt every time */
    char h2[128];
    assert_int_equal(auth_bcrypt_hash("s3cret", 4, h2, sizeof h2), 0);
    assert_string_not_equal(h, h2);
    assert_int_equal(auth_bcrypt_verify("s3cret", h2), 0);
}

static void test_auth_bcrypt_errors(void **state)
{
    (void)state;
    char h[128];
    assert_int_equal(auth_bcrypt_hash("x", 3, h, sizeof h), KEEL_EINVAL);
    assert_int_equal(auth_bcrypt_hash("x", 32, h, sizeof h), KEEL_EINVAL);
    assert_int_equal(auth_bcrypt_hash("x", 4, h, 60), KEEL_EINVAL);
    /* malformed or foreign hashes never match */
    assert_int_equal(auth_bcrypt_verify("x", ""), KEEL_EAUTHFAILED);
    assert_int_equal(auth_bcrypt_verify("x", "x"), KEEL_EAUTHFAILED);
    assert_int_equal(auth_bcrypt_verify("x", "$2b$04$short"),
                     KEEL_EAUTHFAILED);
    assert_int_equal(auth_bcrypt_verify("x", "$6$salt$abcdefgh"),
                     KEEL_EAUTHFAILED);
    assert_int_equal(auth_bcrypt_verify("x", "$1$abc$xyz"), KEEL_EAUTHFAILED);
}

/* Hashes written by Go's bcrypt (etcd's) are "$2a$": still verified. */
static void test_auth_bcrypt_2a_vector(void **state)
{
    (void)state;
    /* crypt_blowfish's published test vector */
    const char *h = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
    assert_int_equal(auth_bcrypt_verify("U*U", h), 0);
    assert_int_equal(auth_bcrypt_verify("U*V", h), KEEL_EAUTHFAILED);
}

static void test_auth_token_format(void **state)
{
    (void)state;
    assert_int_equal(auth_token_check_format("abcdefghijklmnop.12"), 0);
    assert_int_equal(auth_token_check_format("a.0"), 0);
    const char *bad[] = {"", "abc", ".1", "abc.", "abc.1x", "a.b.c",
                         "abc.-1", "abc.1.2", "abc. 1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(auth_token_check_format(bad[i]),
                         KEEL_EINVALIDAUTHTOKEN);
    }
}

static void test_auth_token_type(void **state)
{
    (void)state;
    assert_int_equal(auth_token_type_check("simple"), AUTH_TOKEN_SIMPLE);
    assert_int_equal(auth_token_type_check("simple,ttl=5m"), AUTH_TOKEN_SIMPLE);
    assert_int_equal(auth_token_type_check("jwt"), AUTH_TOKEN_JWT);
    assert_int_equal(
        auth_token_type_check("jwt,pub-key=a.pub,priv-key=a,sign-method=RS256"),
        AUTH_TOKEN_JWT);
    assert_int_equal(auth_token_type_check("simplex"), KEEL_EINVAL);
    assert_int_equal(auth_token_type_check(""), KEEL_EINVAL);
    assert_int_equal(auth_token_type_check("JWT"), KEEL_EINVAL);
}

/* ---- the store ---------------------------------------------------------- */

static void test_auth_store_enable_needs_root(void **state)
{
    struct fx *f = *state;
    assert_false(auth_store_enabled(f->s, NULL));
    assert_int_equal(auth_store_revision(f->s, NULL), 1);
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_ENABLE),
                     KEEL_EROOTUSERNOTEXIST);
    assert_int_equal(user_add(f, NULL, "root"), 0);
    assert_int_equal(auth_store_revision(f->s, NULL), 2);
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_ENABLE),
                     KEEL_EROOTROLENOTEXIST);
    /* the root role needs no RoleAdd */
    assert_int_equal(grant_role(f, NULL, "root", "root"), 0);
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_ENABLE), 0);
    assert_true(auth_store_enabled(f->s, NULL));
    /* enable does not move the revision; disable does */
    assert_int_equal(auth_store_revision(f->s, NULL), 3);
    /* now only root may change anything */
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_DISABLE),
                     KEEL_EUSEREMPTY);
    assert_int_equal(simple_op(f, "ghost", KEELPB__REQUEST__OP_AUTH_DISABLE),
                     KEEL_EUSERNOTFOUND);
    assert_int_equal(simple_op(f, "root", KEELPB__REQUEST__OP_AUTH_ENABLE), 0);
    assert_int_equal(simple_op(f, "root", KEELPB__REQUEST__OP_AUTH_DISABLE), 0);
    assert_false(auth_store_enabled(f->s, NULL));
    assert_int_equal(auth_store_revision(f->s, NULL), 4);
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_DISABLE), 0);
    assert_int_equal(auth_store_revision(f->s, NULL), 4);
}

static void test_auth_store_user_role_errors(void **state)
{
    struct fx *f = *state;
    assert_int_equal(user_add(f, NULL, ""), KEEL_EUSEREMPTY);
    assert_int_equal(user_add(f, NULL, "a"), 0);
    assert_int_equal(user_add(f, NULL, "a"), KEEL_EUSERALREADYEXIST);
    assert_int_equal(role_add(f, NULL, ""), KEEL_EROLEEMPTY);
    assert_int_equal(role_add(f, NULL, "r"), 0);
    assert_int_equal(role_add(f, NULL, "r"), KEEL_EROLEALREADYEXIST);
    assert_int_equal(grant_role(f, NULL, "nobody", "r"), KEEL_EUSERNOTFOUND);
    assert_int_equal(grant_role(f, NULL, "a", "nosuch"), KEEL_EROLENOTFOUND);
    uint64_t rev = auth_store_revision(f->s, NULL);
    assert_int_equal(grant_role(f, NULL, "a", "r"), 0);
    assert_int_equal(grant_role(f, NULL, "a", "r"), 0); /* ignored */
    assert_int_equal(auth_store_revision(f->s, NULL), rev + 1);
    assert_int_equal(grant_role(f, NULL, "a", "b0"), KEEL_EROLENOTFOUND);
    assert_int_equal(role_add(f, NULL, "b0"), 0);
    assert_int_equal(grant_role(f, NULL, "a", "b0"), 0);
    Authpb__User *u = NULL;
    assert_int_equal(auth_store_user(f->s, NULL, "a", &f->a, &u), 0);
    assert_int_equal(u->n_roles, 2); /* kept sorted */
    assert_string_equal(u->roles[0], "b0");
    assert_string_equal(u->roles[1], "r");
    /* deleting a role takes it from its users */
    Etcdserverpb__AuthRoleDeleteRequest rd =
        ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
    rd.role = (char *)"b0";
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_ROLE_DELETE;
    q.auth_role_delete = &rd;
    assert_int_equal(apply_as(f, NULL, &q), 0);
    assert_int_equal(apply_as(f, NULL, &q), KEEL_EROLENOTFOUND);
    assert_int_equal(auth_store_user(f->s, NULL, "a", &f->a, &u), 0);
    assert_int_equal(u->n_roles, 1);
    assert_string_equal(u->roles[0], "r");
    /* revoking a role the user does not hold */
    Etcdserverpb__AuthUserRevokeRoleRequest rr =
        ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
    rr.name = (char *)"a";
    rr.role = (char *)"b0";
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_REVOKE_ROLE;
    q.auth_user_revoke_role = &rr;
    assert_int_equal(apply_as(f, NULL, &q), KEEL_EROLENOTGRANTED);
    char **names = NULL;
    size_t n = 0;
    assert_int_equal(auth_store_names(f->s, NULL, false, &f->a, &names, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "a");
}

static void test_auth_store_root_rules(void **state)
{
    struct fx *f = *state;
    enable_with_root(f);
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    Etcdserverpb__AuthUserDeleteRequest ud =
        ETCDSERVERPB__AUTH_USER_DELETE_REQUEST__INIT;
    ud.name = (char *)"root";
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_DELETE;
    q.auth_user_delete = &ud;
    assert_int_equal(apply_as(f, "root", &q), KEEL_EINVALIDAUTHMGMT);
    assert_int_equal(apply_as(f, "u1", &q), KEEL_EPERMISSIONDENIED);
    Etcdserverpb__AuthUserRevokeRoleRequest rr =
        ETCDSERVERPB__AUTH_USER_REVOKE_ROLE_REQUEST__INIT;
    rr.name = (char *)"root";
    rr.role = (char *)"root";
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_REVOKE_ROLE;
    q.auth_user_revoke_role = &rr;
    assert_int_equal(apply_as(f, "root", &q), KEEL_EINVALIDAUTHMGMT);
    Etcdserverpb__AuthRoleDeleteRequest rd =
        ETCDSERVERPB__AUTH_ROLE_DELETE_REQUEST__INIT;
    rd.role = (char *)"root";
    q.op_case = KEELPB__REQUEST__OP_AUTH_ROLE_DELETE;
    q.auth_role_delete = &rd;
    assert_int_equal(apply_as(f, "root", &q), KEEL_EINVALIDAUTHMGMT);
    /* once disabled, root is an ordinary user */
    assert_int_equal(simple_op(f, "root", KEELPB__REQUEST__OP_AUTH_DISABLE), 0);
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_REVOKE_ROLE;
    q.auth_user_revoke_role = &rr;
    assert_int_equal(apply_as(f, NULL, &q), 0);
}

static void test_auth_store_permissions(void **state)
{
    struct fx *f = *state;
    enable_with_root(f);
    const int R = AUTHPB__PERMISSION__TYPE__READ;
    const int W = AUTHPB__PERMISSION__TYPE__WRITE;
    const int RW = AUTHPB__PERMISSION__TYPE__READWRITE;
    assert_int_equal(grant_perm(f, "nosuch", R, "k", NULL, 0),
                     KEEL_EUSEREMPTY); /* no user: not root */
    assert_int_equal(simple_op(f, "root", KEELPB__REQUEST__OP_AUTH_DISABLE), 0);
    assert_int_equal(grant_perm(f, "nosuch", R, "k", NULL, 0),
                     KEEL_EROLENOTFOUND);
    assert_int_equal(grant_perm(f, "r1", RW, "foo", NULL, 0), 0);
    assert_int_equal(grant_perm(f, "r1", R, "a", "c", 1), 0);
    assert_int_equal(grant_perm(f, "r1", R, "c", "e", 1), 0);
    assert_int_equal(grant_perm(f, "r1", W, "zz", "\0", 1), 0);
    assert_int_equal(grant_perm(f, "r1", R, "m", "n", 1), 0);
    assert_int_equal(grant_perm(f, "r1", R, "p", "q", 1), 0);
    assert_int_equal(simple_op(f, NULL, KEELPB__REQUEST__OP_AUTH_ENABLE), 0);
    const enum auth_perm PR = AUTH_PERM_READ, PW = AUTH_PERM_WRITE;
    /* single keys */
    assert_int_equal(check(f, "u1", "foo", NULL, 0, PR), 0);
    assert_int_equal(check(f, "u1", "foo", NULL, 0, PW), 0);
    assert_int_equal(check(f, "u1", "foo1", NULL, 0, PR),
                     KEEL_EPERMISSIONDENIED);
    assert_int_equal(check(f, "u1", "b", NULL, 0, PR), 0);
    assert_int_equal(check(f, "u1", "b", NULL, 0, PW), KEEL_EPERMISSIONDENIED);
    assert_int_equal(check(f, "u1", "zzz", NULL, 0, PW), 0);
    assert_int_equal(check(f, "u1", "zz", NULL, 0, PR), KEEL_EPERMISSIONDENIED);
    /* ranges: covered by the union of adjacent permissions, not across a
     * gap */
    assert_int_equal(check(f, "u1", "a", "e", 1, PR), 0);
    assert_int_equal(check(f, "u1", "b", "d", 1, PR), 0);
    assert_int_equal(check(f, "u1", "a", "f", 1, PR), KEEL_EPERMISSIONDENIED);
    assert_int_equal(check(f, "u1", "m", "q", 1, PR), KEEL_EPERMISSIONDENIED);
    assert_int_equal(check(f, "u1", "zz", "\0", 1, PW), 0);
    assert_int_equal(check(f, "u1", "zzz", "\0", 1, PW), 0);
    assert_int_equal(check(f, "u1", "z", "\0", 1, PW), KEEL_EPERMISSIONDENIED);
    assert_int_equal(check(f, "u1", "zz", "zzzz", 4, PW), 0);
    /* root may do anything; strangers, nobody and old revisions may not */
    assert_int_equal(check(f, "root", "x", "\0", 1, PW), 0);
    assert_int_equal(check(f, "ghost", "foo", NULL, 0, PR),
                     KEEL_EPERMISSIONDENIED);
    assert_int_equal(
        auth_store_check(f->s, NULL, NULL, 0, (const uint8_t *)"foo", 3, NULL,
                         0, PR, &f->a),
        KEEL_EUSEREMPTY);
    uint64_t rev = auth_store_revision(f->s, NULL);
    assert_int_equal(
        auth_store_check(f->s, NULL, "u1", rev - 1, (const uint8_t *)"foo", 3,
                         NULL, 0, PR, &f->a),
        KEEL_EAUTHOLDREVISION);
    /* apply-time checks of writes carry the proposer's user */
    Etcdserverpb__PutRequest p = ETCDSERVERPB__PUT_REQUEST__INIT;
    p.key = bin("foo");
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_PUT;
    q.put = &p;
    assert_int_equal(apply_as(f, "u1", &q), 0);
    assert_int_equal(apply_as(f, NULL, &q), KEEL_EUSEREMPTY);
    p.key = bin("b");
    assert_int_equal(apply_as(f, "u1", &q), KEEL_EPERMISSIONDENIED);
    /* prev_kv needs read too */
    p.key = bin("zzz");
    assert_int_equal(apply_as(f, "u1", &q), 0);
    p.prev_kv = 1;
    assert_int_equal(apply_as(f, "u1", &q), KEEL_EPERMISSIONDENIED);
}

static void test_auth_store_grant_revoke_permission(void **state)
{
    struct fx *f = *state;
    assert_int_equal(role_add(f, NULL, "r"), 0);
    const int R = AUTHPB__PERMISSION__TYPE__READ;
    const int W = AUTHPB__PERMISSION__TYPE__WRITE;
    assert_int_equal(grant_perm(f, "r", R, "b", NULL, 0), 0);
    assert_int_equal(grant_perm(f, "r", R, "a", "c", 1), 0);
    assert_int_equal(grant_perm(f, "r", W, "b", NULL, 0), 0); /* update */
    Authpb__Role *role = NULL;
    assert_int_equal(auth_store_role(f->s, NULL, "r", &f->a, &role), 0);
    assert_int_equal(role->n_keypermission, 2);
    assert_int_equal(role->keypermission[0]->key.data[0], 'a');
    assert_int_equal(role->keypermission[1]->key.data[0], 'b');
    assert_int_equal(role->keypermission[1]->permtype, W);
    Etcdserverpb__AuthRoleRevokePermissionRequest rp =
        ETCDSERVERPB__AUTH_ROLE_REVOKE_PERMISSION_REQUEST__INIT;
    rp.role = (char *)"r";
    rp.key = bin("a");
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_ROLE_REVOKE_PERMISSION;
    q.auth_role_revoke_permission = &rp;
    /* the range end must match too */
    assert_int_equal(apply_as(f, NULL, &q), KEEL_EPERMISSIONNOTGRANTED);
    rp.range_end = bin("c");
    assert_int_equal(apply_as(f, NULL, &q), 0);
    assert_int_equal(apply_as(f, NULL, &q), KEEL_EPERMISSIONNOTGRANTED);
    rp.role = (char *)"nosuch";
    assert_int_equal(apply_as(f, NULL, &q), KEEL_EROLENOTFOUND);
}

static int authenticate(struct fx *f, const char *name, uint64_t rev)
{
    Keelpb__Authenticate r = KEELPB__AUTHENTICATE__INIT;
    r.name = (char *)name;
    r.simple_token = (char *)"abcdefghijklmnop.1";
    r.auth_revision = rev;
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTHENTICATE;
    q.authenticate = &r;
    return apply_as(f, NULL, &q);
}

/* A token is only issued if nothing changed since the password check. */
static void test_auth_store_authenticate(void **state)
{
    struct fx *f = *state;
    assert_int_equal(authenticate(f, "root", 0), KEEL_EAUTHNOTENABLED);
    enable_with_root(f);
    uint64_t rev = auth_store_revision(f->s, NULL);
    assert_int_equal(authenticate(f, "root", rev), 0);
    assert_int_equal(authenticate(f, "nobody", rev), KEEL_EAUTHFAILED);
    assert_int_equal(role_add(f, "root", "r2"), 0);
    assert_int_equal(authenticate(f, "root", rev), KEEL_EAUTHOLDREVISION);
    assert_int_equal(authenticate(f, "root", rev + 1), 0);
    /* a user without a password never authenticates */
    Etcdserverpb__AuthUserAddRequest r =
        ETCDSERVERPB__AUTH_USER_ADD_REQUEST__INIT;
    Authpb__UserAddOptions o = AUTHPB__USER_ADD_OPTIONS__INIT;
    o.no_password = 1;
    r.name = (char *)"np";
    r.password = (char *)"";
    r.options = &o;
    Keelpb__Request q = KEELPB__REQUEST__INIT;
    q.op_case = KEELPB__REQUEST__OP_AUTH_USER_ADD;
    q.auth_user_add = &r;
    assert_int_equal(apply_as(f, "root", &q), 0);
    assert_int_equal(authenticate(f, "np", 0), KEEL_EAUTHFAILED);
}

/* ---- JWT ---------------------------------------------------------------- */

struct keys
{
    char dir[64];
    char rsa_key[96], rsa_pub[96], ec_key[96], ec_pub[96], rsa2_pub[96],
        hs[96];
};

static void write_key(EVP_PKEY *k, const char *priv, const char *pub)
{
    FILE *f = fopen(priv, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    f = fopen(pub, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, k), 1);
    fclose(f);
}

static int keys_setup(void **state)
{
    struct keys *k = calloc(1, sizeof *k);
    snprintf(k->dir, sizeof k->dir, "/tmp/keel_jwt_XXXXXX");
    assert_non_null(mkdtemp(k->dir));
#define P(f, n) snprintf(k->f, sizeof k->f, "%s/%s", k->dir, n)
    P(rsa_key, "rsa.key");
    P(rsa_pub, "rsa.pub");
    P(ec_key, "ec.key");
    P(ec_pub, "ec.pub");
    P(rsa2_pub, "rsa2.pub");
    P(hs, "hs.key");
#undef P
    EVP_PKEY *r = EVP_RSA_gen(2048), *e = EVP_EC_gen("P-256"),
             *r2 = EVP_RSA_gen(2048);
    assert_non_null(r);
    assert_non_null(e);
    assert_non_null(r2);
    write_key(r, k->rsa_key, k->rsa_pub);
    write_key(e, k->ec_key, k->ec_pub);
    char unused[112];
    snprintf(unused, sizeof unused, "%s/rsa2.key", k->dir);
    write_key(r2, unused, k->rsa2_pub);
    EVP_PKEY_free(r);
    EVP_PKEY_free(e);
    EVP_PKEY_free(r2);
    FILE *f = fopen(k->hs, "w");
    fputs("a shared secret", f);
    fclose(f);
    *state = k;
    return 0;
}

static int keys_teardown(void **state)
{
    struct keys *k = *state;
    const char *files[] = {"rsa.key", "rsa.pub", "ec.key",  "ec.pub",
                           "rsa2.pub", "rsa2.key", "hs.key"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", k->dir, files[i]);
        unlink(p);
    }
    rmdir(k->dir);
    free(k);
    return 0;
}

static struct auth_jwt *jwt(const char *fmt, const char *a, const char *b,
                            const char *method)
{
    char opts[512], err[256] = "";
    snprintf(opts, sizeof opts, fmt, a, b, method);
    struct auth_jwt *j = NULL;
    int rv = auth_jwt_new(opts, &j, err, sizeof err);
    if (rv != 0) {
        print_message("auth_jwt_new(%s): %s\n", opts, err);
    }
    return j;
}

static void test_auth_jwt_roundtrip(void **state)
{
    struct keys *k = *state;
    const char *rsa[] = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"};
    for (size_t i = 0; i < 10; i++) {
        struct auth_jwt *j;
        if (i < 6) {
            j = jwt("pub-key=%s,priv-key=%s,sign-method=%s", k->rsa_pub,
                    k->rsa_key, rsa[i]);
        } else if (i == 6) {
            j = jwt("pub-key=%s,priv-key=%s,sign-method=%s", k->ec_pub,
                    k->ec_key, "ES256");
        } else {
            const char *m[] = {"HS256", "HS384", "HS512"};
            j = jwt("priv-key=%s%s,sign-method=%s", k->hs, "", m[i - 7]);
        }
        assert_non_null(j);
        char *t = NULL, *u = NULL;
        uint64_t rev = 0;
        assert_int_equal(auth_jwt_sign(j, "alice", 7, 1000, &t), 0);
        assert_int_equal(auth_jwt_verify(j, t, 1000, &u, &rev), 0);
        assert_string_equal(u, "alice");
        assert_int_equal(rev, 7);
        free(u);
        /* expired after its 5 min default ttl */
        assert_int_equal(auth_jwt_verify(j, t, 1000 + 300, &u, &rev), 0);
        free(u);
        assert_int_equal(auth_jwt_verify(j, t, 1000 + 301, &u, &rev),
                         KEEL_EINVALIDAUTHTOKEN);
        /* a flipped signature byte, a truncated or malformed token */
        size_t n = strlen(t);
        t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
        assert_int_equal(auth_jwt_verify(j, t, 1000, &u, &rev),
                         KEEL_EINVALIDAUTHTOKEN);
        t[n - 20] = '\0';
        assert_int_equal(auth_jwt_verify(j, t, 1000, &u, &rev),
                         KEEL_EINVALIDAUTHTOKEN);
        assert_int_equal(auth_jwt_verify(j, "a.b", 1000, &u, &rev),
                         KEEL_EINVALIDAUTHTOKEN);
        assert_int_equal(auth_jwt_verify(j, "abcdefghijklmnop.1", 1000, &u,
                                         &rev),
                         KEEL_EINVALIDAUTHTOKEN);
        assert_int_equal(auth_jwt_verify(j, "a.b.c.d", 1000, &u, &rev),
                         KEEL_EINVALIDAUTHTOKEN);
        free(t);
        auth_jwt_free(j);
    }
}

static void test_auth_jwt_cross_checks(void **state)
{
    struct keys *k = *state;
    struct auth_jwt *rs = jwt("pub-key=%s,priv-key=%s,sign-method=%s",
                              k->rsa_pub, k->rsa_key, "RS256");
    struct auth_jwt *ps = jwt("pub-key=%s,priv-key=%s,sign-method=%s",
                              k->rsa_pub, k->rsa_key, "PS256");
    struct auth_jwt *vo = jwt("pub-key=%s%s,sign-method=%s", k->rsa_pub, "",
                              "RS256");
    struct auth_jwt *ttl = jwt("priv-key=%s,ttl=%s,sign-method=HS256", k->hs,
                               "1m30s", NULL);
    assert_non_null(rs);
    assert_non_null(ps);
    assert_non_null(vo);
    assert_non_null(ttl);
    char *t = NULL, *u = NULL;
    uint64_t rev = 0;
    assert_int_equal(auth_jwt_sign(rs, "bob", 3, 50, &t), 0);
    /* another method with the same key: refused (etcd checks alg) */
    assert_int_equal(auth_jwt_verify(ps, t, 50, &u, &rev),
                     KEEL_EINVALIDAUTHTOKEN);
    /* a verify-only member accepts, cannot issue */
    assert_int_equal(auth_jwt_verify(vo, t, 50, &u, &rev), 0);
    free(u);
    free(t);
    assert_int_equal(auth_jwt_sign(vo, "bob", 3, 50, &t), KEEL_EINVAL);
    assert_null(t);
    /* ttl=1m30s */
    assert_int_equal(auth_jwt_sign(ttl, "c", 1, 0, &t), 0);
    assert_int_equal(auth_jwt_verify(ttl, t, 90, &u, &rev), 0);
    free(u);
    assert_int_equal(auth_jwt_verify(ttl, t, 91, &u, &rev),
                     KEEL_EINVALIDAUTHTOKEN);
    free(t);
    auth_jwt_free(rs);
    auth_jwt_free(ps);
    auth_jwt_free(vo);
    auth_jwt_free(ttl);
}

static void test_auth_jwt_bad_options(void **state)
{
    struct keys *k = *state;
    char opts[512], err[256];
    struct auth_jwt *j = NULL;
    const char *bad[][2] = {
        {"", "sign-method missing"},
        {"sign-method=XX256,priv-key=%s", "unknown method"},
        {"sign-method=RS999,priv-key=%s", "unknown size"},
        {"sign-method=RS256,priv-key=/nonexistent/key", "unreadable key"},
        {"sign-method=RS256", "no key at all"},
        {"sign-method=HS256", "no secret"},
        {"sign-method=ES256,priv-key=%s", "RSA key for ES"},
        {"sign-method=RS256,ttl=5x,priv-key=%s", "bad ttl"},
        {"sign-method=RS256,sign-method=RS256,priv-key=%s", "redundant"},
        {"sign-method=RS256,priv-key", "no '='"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(opts, sizeof opts, bad[i][0], k->rsa_key);
        err[0] = '\0';
        assert_int_equal(auth_jwt_new(opts, &j, err, sizeof err), KEEL_EINVAL);
        assert_null(j);
        assert_true(strlen(err) > 0);
    }
    /* an EC key for RS, a P-256 key for ES384 (jwt-go wants P-384) */
    const char *ec_bad[] = {"sign-method=RS256,priv-key=%s",
                            "sign-method=ES384,priv-key=%s"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(opts, sizeof opts, ec_bad[i], k->ec_key);
        assert_int_equal(auth_jwt_new(opts, &j, err, sizeof err), KEEL_EINVAL);
        assert_null(j);
    }
    /* mismatched public and private keys */
    snprintf(opts, sizeof opts, "sign-method=RS256,priv-key=%s,pub-key=%s",
             k->rsa_key, k->rsa2_pub);
    assert_int_equal(auth_jwt_new(opts, &j, err, sizeof err), KEEL_EINVAL);
    assert_string_equal(err, "auth: public and private keys don't match");
    /* unknown options are only warned about */
    snprintf(opts, sizeof opts, "sign-method=HS256,priv-key=%s,colour=blue",
             k->hs);
    assert_int_equal(auth_jwt_new(opts, &j, err, sizeof err), 0);
    auth_jwt_free(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_bcrypt_roundtrip),
        cmocka_unit_test(test_auth_bcrypt_errors),
        cmocka_unit_test(test_auth_bcrypt_2a_vector),
        cmocka_unit_test(test_auth_token_format),
        cmocka_unit_test(test_auth_token_type),
        cmocka_unit_test_setup_teardown(test_auth_store_enable_needs_root,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_store_user_role_errors,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_store_root_rules, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_store_permissions, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_auth_store_grant_revoke_permission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_store_authenticate, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_auth_jwt_roundtrip, keys_setup,
                                        keys_teardown),
        cmocka_unit_test_setup_teardown(test_auth_jwt_cross_checks,
                                        keys_setup, keys_teardown),
        cmocka_unit_test_setup_teardown(test_auth_jwt_bad_options, keys_setup,
                                        keys_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
