/*
 * server/auth_store.c: etcd 3.4's auth store semantics (auth/store.go,
 * auth/range_perm_cache.go, etcdserver/apply_auth.go) over the auth tables.
 * See auth_store.h for the layout.
 *
 * Permissions are evaluated from the tables at each check (etcd keeps a
 * range permission cache rebuilt at every change; keel reads the user and
 * its roles through the same LMDB txn, which is as cheap and never stale).
 * Only when auth is enabled does a check read more than the enabled flag.
 */
#include <stdlib.h>
#include <string.h>

#include "auth_store.h"
#include "keel_err.h"
#include "mvcc.h"

static const char KEY_ENABLED[] = "authEnabled";
static const char KEY_REVISION[] = "authRevision";

/* ---- reading ------------------------------------------------------------ */

bool auth_store_enabled(struct mvcc_store *s, struct mvcc_write *w)
{
    struct keel_arena a;
    keel_arena_init(&a, 64);
    void *v = NULL;
    size_t vl = 0;
    int rv = mvcc_table_get(s, w, MVCC_TABLE_AUTH, KEY_ENABLED,
                            sizeof KEY_ENABLED - 1, &a, &v, &vl);
    bool on = rv == 0 && vl == 1 && ((const uint8_t *)v)[0] == 1;
    keel_arena_free(&a);
    return on;
}

uint64_t auth_store_revision(struct mvcc_store *s, struct mvcc_write *w)
{
    struct keel_arena a;
    keel_arena_init(&a, 64);
    void *v = NULL;
    size_t vl = 0;
    uint64_t rev = 1; /* etcd: a new auth store starts at revision 1 */
    if (mvcc_table_get(s, w, MVCC_TABLE_AUTH, KEY_REVISION,
                       sizeof KEY_REVISION - 1, &a, &v, &vl) == 0 &&
        vl == 8) {
        const uint8_t *p = v;
        rev = 0;
        for (int i = 0; i < 8; i++) {
            rev = (rev << 8) | p[i];
        }
    }
    keel_arena_free(&a);
    return rev;
}

static int bump_revision(struct mvcc_store *s, struct mvcc_write *w)
{
    uint64_t rev = auth_store_revision(s, w) + 1;
    uint8_t b[8];
    for (int i = 7; i >= 0; i--) {
        b[i] = (uint8_t)rev;
        rev >>= 8;
    }
    return mvcc_table_put(w, MVCC_TABLE_AUTH, KEY_REVISION,
                          sizeof KEY_REVISION - 1, b, sizeof b);
}

int auth_store_user(struct mvcc_store *s, struct mvcc_write *w,
                    const char *name, struct keel_arena *a, Authpb__User **out)
{
    void *v = NULL;
    size_t vl = 0;
    *out = NULL;
    size_t nl = strlen(name);
    if (nl == 0) {
        return KEEL_EUSERNOTFOUND;
    }
    int rv = mvcc_table_get(s, w, MVCC_TABLE_AUTH_USERS, name, nl, a, &v, &vl);
    if (rv == KEEL_ENOTFOUND || rv == KEEL_EINVAL) {
        return KEEL_EUSERNOTFOUND; /* EINVAL: a name no table key can be */
    }
    if (rv != 0) {
        return rv;
    }
    *out = authpb__user__unpack(&a->pb, vl, v);
    return *out != NULL ? 0 : KEEL_ECORRUPT;
}

int auth_store_role(struct mvcc_store *s, struct mvcc_write *w,
                    const char *name, struct keel_arena *a, Authpb__Role **out)
{
    void *v = NULL;
    size_t vl = 0;
    *out = NULL;
    size_t nl = strlen(name);
    if (nl == 0) {
        return KEEL_EROLENOTFOUND;
    }
    int rv = mvcc_table_get(s, w, MVCC_TABLE_AUTH_ROLES, name, nl, a, &v, &vl);
    if (rv == KEEL_ENOTFOUND || rv == KEEL_EINVAL) {
        return KEEL_EROLENOTFOUND;
    }
    if (rv != 0) {
        return rv;
    }
    *out = authpb__role__unpack(&a->pb, vl, v);
    return *out != NULL ? 0 : KEEL_ECORRUPT;
}

struct names_acc
{
    struct keel_arena *a;
    char **v;
    size_t n, cap;
};

static int collect_name(void *arg, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    (void)val;
    (void)vlen;
    struct names_acc *acc = arg;
    if (acc->n == acc->cap) {
        size_t cap = acc->cap ? acc->cap * 2 : 8;
        char **nv = keel_arena_alloc(acc->a, cap * sizeof *nv);
        if (nv == NULL) {
            return KEEL_ENOMEM;
        }
        if (acc->n > 0) {
            memcpy(nv, acc->v, acc->n * sizeof *nv);
        }
        acc->v = nv;
        acc->cap = cap;
    }
    char *str = keel_arena_alloc(acc->a, klen + 1);
    if (str == NULL) {
        return KEEL_ENOMEM;
    }
    memcpy(str, key, klen);
    str[klen] = '\0';
    acc->v[acc->n++] = str;
    return 0;
}

int auth_store_names(struct mvcc_store *s, struct mvcc_write *w, bool roles,
                     struct keel_arena *a, char ***names, size_t *n)
{
    struct names_acc acc = {a, NULL, 0, 0};
    int rv = mvcc_table_foreach(
        s, w, roles ? MVCC_TABLE_AUTH_ROLES : MVCC_TABLE_AUTH_USERS,
        collect_name, &acc);
    *names = acc.v;
    *n = acc.n;
    return rv;
}

bool auth_user_has_role(const Authpb__User *u, const char *role)
{
    for (size_t i = 0; i < u->n_roles; i++) {
        if (strcmp(u->roles[i], role) == 0) {
            return true;
        }
    }
    return false;
}

/* ---- permission intervals (etcd: adt BytesAffine intervals) ------------- */

/* An empty bound is +infinity (etcd: BytesAffineComparable). */
static int affine_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    if (al == 0 || bl == 0) {
        return (al == 0) - (bl == 0);
    }
    size_t m = al < bl ? al : bl;
    int c = memcmp(a, b, m);
    if (c != 0) {
        return c;
    }
    return (al > bl) - (al < bl);
}

struct ivl
{
    const uint8_t *b, *e;
    size_t bl, el;
};

static int ivl_cmp(const void *x, const void *y)
{
    const struct ivl *p = x, *q = y;
    return affine_cmp(p->b, p->bl, q->b, q->bl);
}

/* [key, key+"\0"): the point key, as an interval whose end is in a. */
static int point_end(struct keel_arena *a, const uint8_t *key, size_t kl,
                     const uint8_t **e, size_t *el)
{
    uint8_t *p = keel_arena_alloc(a, kl + 1);
    if (p == NULL) {
        return KEEL_ENOMEM;
    }
    if (kl > 0) {
        memcpy(p, key, kl);
    }
    p[kl] = 0;
    *e = p;
    *el = kl + 1;
    return 0;
}

/* Whether the union of the user's permissions of type perm covers the
 * query (etcd checkKeyPoint / checkKeyInterval). */
static int perms_cover(struct mvcc_store *s, struct mvcc_write *w,
                       const Authpb__User *u, const uint8_t *key, size_t kl,
                       const uint8_t *end, size_t endl, enum auth_perm perm,
                       struct keel_arena *a, bool *ok)
{
    *ok = false;
    size_t n = 0, cap = 0;
    struct ivl *v = NULL;
    for (size_t i = 0; i < u->n_roles; i++) {
        Authpb__Role *r = NULL;
        int rv = auth_store_role(s, w, u->roles[i], a, &r);
        if (rv == KEEL_EROLENOTFOUND) {
            continue;
        }
        if (rv != 0) {
            return rv;
        }
        for (size_t j = 0; j < r->n_keypermission; j++) {
            const Authpb__Permission *p = r->keypermission[j];
            bool rd = p->permtype == AUTHPB__PERMISSION__TYPE__READ ||
                      p->permtype == AUTHPB__PERMISSION__TYPE__READWRITE;
            bool wr = p->permtype == AUTHPB__PERMISSION__TYPE__WRITE ||
                      p->permtype == AUTHPB__PERMISSION__TYPE__READWRITE;
            if (!(perm == AUTH_PERM_READ ? rd : wr)) {
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                struct ivl *nv = keel_arena_alloc(a, cap * sizeof *nv);
                if (nv == NULL) {
                    return KEEL_ENOMEM;
                }
                if (n > 0) {
                    memcpy(nv, v, n * sizeof *nv);
                }
                v = nv;
            }
            struct ivl *x = &v[n++];
            x->b = p->key.data;
            x->bl = p->key.len;
            if (p->range_end.len == 0) {
                int rv2 = point_end(a, p->key.data, p->key.len, &x->e, &x->el);
                if (rv2 != 0) {
                    return rv2;
                }
            } else if (p->range_end.len == 1 && p->range_end.data[0] == 0) {
                x->e = NULL; /* every key >= key */
                x->el = 0;
            } else {
                x->e = p->range_end.data;
                x->el = p->range_end.len;
            }
        }
    }
    if (n == 0) {
        return 0;
    }
    if (endl == 0) {
        /* a point: some interval holds it */
        for (size_t i = 0; i < n; i++) {
            if (affine_cmp(v[i].b, v[i].bl, key, kl) <= 0 &&
                affine_cmp(key, kl, v[i].e, v[i].el) < 0) {
                *ok = true;
                return 0;
            }
        }
        return 0;
    }
    if (endl == 1 && end[0] == 0) {
        end = NULL;
        endl = 0;
    }
    /* an interval: the union of the permissions covers [key, end) */
    qsort(v, n, sizeof *v, ivl_cmp);
    const uint8_t *cur = key;
    size_t curl = kl;
    for (size_t i = 0; i < n; i++) {
        if (affine_cmp(v[i].b, v[i].bl, cur, curl) > 0) {
            break; /* a gap before this interval */
        }
        if (affine_cmp(v[i].e, v[i].el, cur, curl) > 0) {
            cur = v[i].e;
            curl = v[i].el;
        }
        if (affine_cmp(cur, curl, end, endl) >= 0) {
            *ok = true;
            return 0;
        }
    }
    return 0;
}

int auth_store_check(struct mvcc_store *s, struct mvcc_write *w,
                     const char *user, uint64_t rev, const uint8_t *key,
                     size_t key_len, const uint8_t *range_end,
                     size_t range_end_len, enum auth_perm perm,
                     struct keel_arena *a)
{
    if (!auth_store_enabled(s, w)) {
        return 0;
    }
    if (rev == 0) {
        return KEEL_EUSEREMPTY;
    }
    if (rev < auth_store_revision(s, w)) {
        return KEEL_EAUTHOLDREVISION;
    }
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, user != NULL ? user : "", a, &u);
    if (rv == KEEL_EUSERNOTFOUND) {
        return KEEL_EPERMISSIONDENIED;
    }
    if (rv != 0) {
        return rv;
    }
    if (auth_user_has_role(u, AUTH_ROOT)) {
        return 0;
    }
    bool ok = false;
    rv = perms_cover(s, w, u, key, key_len, range_end, range_end_len, perm, a,
                     &ok);
    if (rv != 0) {
        return rv;
    }
    return ok ? 0 : KEEL_EPERMISSIONDENIED;
}

int auth_store_check_admin(struct mvcc_store *s, struct mvcc_write *w,
                           const char *user, struct keel_arena *a)
{
    if (!auth_store_enabled(s, w)) {
        return 0;
    }
    if (user == NULL || user[0] == '\0') {
        return KEEL_EUSEREMPTY;
    }
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, user, a, &u);
    if (rv != 0) {
        return rv;
    }
    return auth_user_has_role(u, AUTH_ROOT) ? 0 : KEEL_EPERMISSIONDENIED;
}

/* ---- writing ------------------------------------------------------------ */

static int put_user(struct mvcc_write *w, const Authpb__User *u,
                    struct keel_arena *a)
{
    size_t len = authpb__user__get_packed_size(u);
    uint8_t *buf = keel_arena_alloc(a, len ? len : 1);
    if (buf == NULL) {
        return KEEL_ENOMEM;
    }
    authpb__user__pack(u, buf);
    return mvcc_table_put(w, MVCC_TABLE_AUTH_USERS, u->name.data, u->name.len,
                          buf, len);
}

static int put_role(struct mvcc_write *w, const Authpb__Role *r,
                    struct keel_arena *a)
{
    size_t len = authpb__role__get_packed_size(r);
    uint8_t *buf = keel_arena_alloc(a, len ? len : 1);
    if (buf == NULL) {
        return KEEL_ENOMEM;
    }
    authpb__role__pack(r, buf);
    return mvcc_table_put(w, MVCC_TABLE_AUTH_ROLES, r->name.data, r->name.len,
                          buf, len);
}

/* Names longer than a table key can be: refused as etcd cannot store them
 * either (bolt's limit is larger, but nobody names a user 480 bytes). */
static int check_name_len(const char *name)
{
    return strlen(name) > 480 ? KEEL_EINVAL : 0;
}

static int set_enabled(struct mvcc_write *w, bool on)
{
    uint8_t b = on ? 1 : 0;
    return mvcc_table_put(w, MVCC_TABLE_AUTH, KEY_ENABLED,
                          sizeof KEY_ENABLED - 1, &b, 1);
}

static int auth_enable(struct mvcc_store *s, struct mvcc_write *w,
                       struct keel_arena *a)
{
    if (auth_store_enabled(s, w)) {
        return 0; /* etcd: "authentication is already enabled; ignored" */
    }
    Authpb__User *root = NULL;
    int rv = auth_store_user(s, w, AUTH_ROOT, a, &root);
    if (rv == KEEL_EUSERNOTFOUND) {
        return KEEL_EROOTUSERNOTEXIST;
    }
    if (rv != 0) {
        return rv;
    }
    if (!auth_user_has_role(root, AUTH_ROOT)) {
        return KEEL_EROOTROLENOTEXIST;
    }
    return set_enabled(w, true);
}

static int auth_disable(struct mvcc_store *s, struct mvcc_write *w)
{
    if (!auth_store_enabled(s, w)) {
        return 0;
    }
    int rv = set_enabled(w, false);
    return rv != 0 ? rv : bump_revision(s, w);
}

static int authenticate(struct mvcc_store *s, struct mvcc_write *w,
                        const Keelpb__Authenticate *r, struct keel_arena *a)
{
    if (!auth_store_enabled(s, w)) {
        return KEEL_EAUTHNOTENABLED;
    }
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, r->name, a, &u);
    if (rv == KEEL_EUSERNOTFOUND) {
        return KEEL_EAUTHFAILED;
    }
    if (rv != 0) {
        return rv;
    }
    if (u->options != NULL && u->options->no_password) {
        return KEEL_EAUTHFAILED;
    }
    if (r->auth_revision != 0 && r->auth_revision != auth_store_revision(s, w)) {
        return KEEL_EAUTHOLDREVISION; /* the password may have changed */
    }
    return 0;
}

static int user_add(struct mvcc_store *s, struct mvcc_write *w,
                    const Etcdserverpb__AuthUserAddRequest *r,
                    struct keel_arena *a)
{
    if (r->name[0] == '\0') {
        return KEEL_EUSEREMPTY;
    }
    int rv = check_name_len(r->name);
    if (rv != 0) {
        return rv;
    }
    Authpb__User *old = NULL;
    rv = auth_store_user(s, w, r->name, a, &old);
    if (rv == 0) {
        return KEEL_EUSERALREADYEXIST;
    }
    if (rv != KEEL_EUSERNOTFOUND) {
        return rv;
    }
    Authpb__UserAddOptions opts = AUTHPB__USER_ADD_OPTIONS__INIT;
    Authpb__User u = AUTHPB__USER__INIT;
    u.name.data = (uint8_t *)r->name;
    u.name.len = strlen(r->name);
    if (r->options != NULL) {
        opts.no_password = r->options->no_password;
    }
    u.options = &opts;
    if (!opts.no_password) {
        u.password.data = (uint8_t *)r->password;
        u.password.len = strlen(r->password);
    }
    rv = put_user(w, &u, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

static int user_delete(struct mvcc_store *s, struct mvcc_write *w,
                       const Etcdserverpb__AuthUserDeleteRequest *r,
                       struct keel_arena *a)
{
    if (auth_store_enabled(s, w) && strcmp(r->name, AUTH_ROOT) == 0) {
        return KEEL_EINVALIDAUTHMGMT;
    }
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, r->name, a, &u);
    if (rv != 0) {
        return rv;
    }
    rv = mvcc_table_del(w, MVCC_TABLE_AUTH_USERS, r->name, strlen(r->name));
    return rv != 0 ? rv : bump_revision(s, w);
}

static int user_change_password(
    struct mvcc_store *s, struct mvcc_write *w,
    const Etcdserverpb__AuthUserChangePasswordRequest *r, struct keel_arena *a)
{
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, r->name, a, &u);
    if (rv != 0) {
        return rv;
    }
    u->password.data = (uint8_t *)r->password;
    u->password.len = strlen(r->password);
    rv = put_user(w, u, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

static int user_grant_role(struct mvcc_store *s, struct mvcc_write *w,
                           const Etcdserverpb__AuthUserGrantRoleRequest *r,
                           struct keel_arena *a)
{
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, r->user, a, &u);
    if (rv != 0) {
        return rv;
    }
    if (strcmp(r->role, AUTH_ROOT) != 0) {
        Authpb__Role *role = NULL;
        rv = auth_store_role(s, w, r->role, a, &role);
        if (rv != 0) {
            return rv;
        }
    }
    if (auth_user_has_role(u, r->role)) {
        return 0; /* etcd: "ignored grant role request to a user" */
    }
    /* roles stay sorted (etcd: sort.Strings) */
    char **roles = keel_arena_alloc(a, (u->n_roles + 1) * sizeof *roles);
    if (roles == NULL) {
        return KEEL_ENOMEM;
    }
    size_t j = 0;
    bool placed = false;
    for (size_t i = 0; i < u->n_roles; i++) {
        if (!placed && strcmp(r->role, u->roles[i]) < 0) {
            roles[j++] = r->role;
            placed = true;
        }
        roles[j++] = u->roles[i];
    }
    if (!placed) {
        roles[j++] = r->role;
    }
    u->roles = roles;
    u->n_roles = j;
    rv = put_user(w, u, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

/* Drop role from u's roles; whether it was there. */
static bool drop_role(Authpb__User *u, const char *role)
{
    size_t j = 0;
    for (size_t i = 0; i < u->n_roles; i++) {
        if (strcmp(u->roles[i], role) != 0) {
            u->roles[j++] = u->roles[i];
        }
    }
    bool dropped = j != u->n_roles;
    u->n_roles = j;
    return dropped;
}

static int user_revoke_role(struct mvcc_store *s, struct mvcc_write *w,
                            const Etcdserverpb__AuthUserRevokeRoleRequest *r,
                            struct keel_arena *a)
{
    if (auth_store_enabled(s, w) && strcmp(r->name, AUTH_ROOT) == 0 &&
        strcmp(r->role, AUTH_ROOT) == 0) {
        return KEEL_EINVALIDAUTHMGMT;
    }
    Authpb__User *u = NULL;
    int rv = auth_store_user(s, w, r->name, a, &u);
    if (rv != 0) {
        return rv;
    }
    if (!drop_role(u, r->role)) {
        return KEEL_EROLENOTGRANTED;
    }
    rv = put_user(w, u, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

static int role_add(struct mvcc_store *s, struct mvcc_write *w,
                    const Etcdserverpb__AuthRoleAddRequest *r,
                    struct keel_arena *a)
{
    if (r->name[0] == '\0') {
        return KEEL_EROLEEMPTY;
    }
    int rv = check_name_len(r->name);
    if (rv != 0) {
        return rv;
    }
    Authpb__Role *old = NULL;
    rv = auth_store_role(s, w, r->name, a, &old);
    if (rv == 0) {
        return KEEL_EROLEALREADYEXIST;
    }
    if (rv != KEEL_EROLENOTFOUND) {
        return rv;
    }
    Authpb__Role role = AUTHPB__ROLE__INIT;
    role.name.data = (uint8_t *)r->name;
    role.name.len = strlen(r->name);
    rv = put_role(w, &role, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

struct role_del_ctx
{
    struct keel_arena *a;
    const char *role;
    Authpb__User **users; /* users holding the role, unpacked */
    size_t n, cap;
};

static int find_holders(void *arg, const void *key, size_t klen,
                        const void *val, size_t vlen)
{
    (void)key;
    (void)klen;
    struct role_del_ctx *c = arg;
    Authpb__User *u = authpb__user__unpack(&c->a->pb, vlen, val);
    if (u == NULL) {
        return KEEL_ECORRUPT;
    }
    if (!auth_user_has_role(u, c->role)) {
        return 0;
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        Authpb__User **nv = keel_arena_alloc(c->a, c->cap * sizeof *nv);
        if (nv == NULL) {
            return KEEL_ENOMEM;
        }
        if (c->n > 0) {
            memcpy(nv, c->users, c->n * sizeof *nv);
        }
        c->users = nv;
    }
    c->users[c->n++] = u;
    return 0;
}

static int role_delete(struct mvcc_store *s, struct mvcc_write *w,
                       const Etcdserverpb__AuthRoleDeleteRequest *r,
                       struct keel_arena *a)
{
    if (auth_store_enabled(s, w) && strcmp(r->role, AUTH_ROOT) == 0) {
        return KEEL_EINVALIDAUTHMGMT;
    }
    Authpb__Role *role = NULL;
    int rv = auth_store_role(s, w, r->role, a, &role);
    if (rv != 0) {
        return rv;
    }
    rv = mvcc_table_del(w, MVCC_TABLE_AUTH_ROLES, r->role, strlen(r->role));
    if (rv != 0) {
        return rv;
    }
    /* Collect first, write after: the walk must not see its own writes. */
    struct role_del_ctx c = {a, r->role, NULL, 0, 0};
    rv = mvcc_table_foreach(s, w, MVCC_TABLE_AUTH_USERS, find_holders, &c);
    for (size_t i = 0; i < c.n && rv == 0; i++) {
        drop_role(c.users[i], r->role);
        rv = put_user(w, c.users[i], a);
    }
    return rv != 0 ? rv : bump_revision(s, w);
}

static int bytes_cmp(const ProtobufCBinaryData *x, const ProtobufCBinaryData *y)
{
    size_t m = x->len < y->len ? x->len : y->len;
    int c = m ? memcmp(x->data, y->data, m) : 0;
    return c != 0 ? c : (x->len > y->len) - (x->len < y->len);
}

static bool bytes_eq(const ProtobufCBinaryData *x, const ProtobufCBinaryData *y)
{
    return bytes_cmp(x, y) == 0;
}

static int role_grant_permission(
    struct mvcc_store *s, struct mvcc_write *w,
    const Etcdserverpb__AuthRoleGrantPermissionRequest *r,
    struct keel_arena *a)
{
    Authpb__Role *role = NULL;
    int rv = auth_store_role(s, w, r->name, a, &role);
    if (rv != 0) {
        return rv;
    }
    static const Authpb__Permission none = AUTHPB__PERMISSION__INIT;
    const Authpb__Permission *p = r->perm != NULL ? r->perm : &none;
    /* etcd: sort.Search for the first permission with key >= p.key; the
     * same key and range end there is updated in place. */
    size_t idx = 0;
    while (idx < role->n_keypermission &&
           bytes_cmp(&role->keypermission[idx]->key, &p->key) < 0) {
        idx++;
    }
    if (idx < role->n_keypermission &&
        bytes_eq(&role->keypermission[idx]->key, &p->key) &&
        bytes_eq(&role->keypermission[idx]->range_end, &p->range_end)) {
        role->keypermission[idx]->permtype = p->permtype;
    } else {
        /* Appended then sorted by key in etcd; its sort is stable for the
         * small lists roles hold, so the new one goes after equal keys. */
        size_t at = idx;
        while (at < role->n_keypermission &&
               bytes_cmp(&role->keypermission[at]->key, &p->key) == 0) {
            at++;
        }
        Authpb__Permission **v = keel_arena_alloc(
            a, (role->n_keypermission + 1) * sizeof *v);
        Authpb__Permission *np = keel_arena_alloc(a, sizeof *np);
        if (v == NULL || np == NULL) {
            return KEEL_ENOMEM;
        }
        authpb__permission__init(np);
        np->key = p->key;
        np->range_end = p->range_end;
        np->permtype = p->permtype;
        for (size_t i = 0, j = 0; i <= role->n_keypermission; i++) {
            v[i] = i == at ? np : role->keypermission[j++];
        }
        role->keypermission = v;
        role->n_keypermission++;
    }
    rv = put_role(w, role, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

static int role_revoke_permission(
    struct mvcc_store *s, struct mvcc_write *w,
    const Etcdserverpb__AuthRoleRevokePermissionRequest *r,
    struct keel_arena *a)
{
    Authpb__Role *role = NULL;
    int rv = auth_store_role(s, w, r->role, a, &role);
    if (rv != 0) {
        return rv;
    }
    size_t j = 0;
    for (size_t i = 0; i < role->n_keypermission; i++) {
        Authpb__Permission *p = role->keypermission[i];
        if (!bytes_eq(&p->key, &r->key) ||
            !bytes_eq(&p->range_end, &r->range_end)) {
            role->keypermission[j++] = p;
        }
    }
    if (j == role->n_keypermission) {
        return KEEL_EPERMISSIONNOTGRANTED;
    }
    role->n_keypermission = j;
    rv = put_role(w, role, a);
    return rv != 0 ? rv : bump_revision(s, w);
}

/* ---- apply -------------------------------------------------------------- */

void auth_store_as_root(Keelpb__RequestHeader *h)
{
    keelpb__request_header__init(h);
    h->username = (char *)AUTH_ROOT;
    h->auth_revision = UINT64_MAX; /* never older than the store's */
}

bool auth_store_is_op(const Keelpb__Request *req)
{
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_AUTH_ENABLE:
        case KEELPB__REQUEST__OP_AUTH_DISABLE:
        case KEELPB__REQUEST__OP_AUTHENTICATE:
        case KEELPB__REQUEST__OP_AUTH_USER_ADD:
        case KEELPB__REQUEST__OP_AUTH_USER_DELETE:
        case KEELPB__REQUEST__OP_AUTH_USER_CHANGE_PASSWORD:
        case KEELPB__REQUEST__OP_AUTH_USER_GRANT_ROLE:
        case KEELPB__REQUEST__OP_AUTH_USER_REVOKE_ROLE:
        case KEELPB__REQUEST__OP_AUTH_ROLE_ADD:
        case KEELPB__REQUEST__OP_AUTH_ROLE_DELETE:
        case KEELPB__REQUEST__OP_AUTH_ROLE_GRANT_PERMISSION:
        case KEELPB__REQUEST__OP_AUTH_ROLE_REVOKE_PERMISSION:
            return true;
        default:
            return false;
    }
}

struct perm_ctx
{
    struct mvcc_store *s;
    struct mvcc_write *w;
    const char *user;
    uint64_t rev;
    struct keel_arena *a;
};

static int chk(const struct perm_ctx *c, const ProtobufCBinaryData *key,
               const ProtobufCBinaryData *end, enum auth_perm perm)
{
    return auth_store_check(c->s, c->w, c->user, c->rev, key->data, key->len,
                            end != NULL ? end->data : NULL,
                            end != NULL ? end->len : 0, perm, c->a);
}

/* Every key attached to the lease must be writable (etcd checkLeasePuts). */
static int check_lease_keys(const struct perm_ctx *c, int64_t lease)
{
    if (lease == 0) {
        return 0;
    }
    ProtobufCBinaryData *keys = NULL;
    size_t n = 0;
    int rv = lease_store_keys(c->s, c->w, lease, c->a, &keys, &n);
    if (rv == KEEL_ELEASENOTFOUND) {
        return 0;
    }
    for (size_t i = 0; i < n && rv == 0; i++) {
        rv = chk(c, &keys[i], NULL, AUTH_PERM_WRITE);
    }
    return rv;
}

static int check_put(const struct perm_ctx *c,
                     const Etcdserverpb__PutRequest *p)
{
    int rv = chk(c, &p->key, NULL, AUTH_PERM_WRITE);
    if (rv == 0) {
        rv = check_lease_keys(c, p->lease);
    }
    if (rv == 0 && p->prev_kv) {
        rv = chk(c, &p->key, NULL, AUTH_PERM_READ);
    }
    return rv;
}

static int check_delete(const struct perm_ctx *c,
                        const Etcdserverpb__DeleteRangeRequest *d)
{
    int rv = chk(c, &d->key, &d->range_end, AUTH_PERM_WRITE);
    if (rv == 0 && d->prev_kv) {
        rv = chk(c, &d->key, &d->range_end, AUTH_PERM_READ);
    }
    return rv;
}

/* etcd checkTxnAuth: compares and the ops of both branches (not nested
 * txns, as in etcd 3.4). */
static int check_txn(const struct perm_ctx *c,
                     const Etcdserverpb__TxnRequest *t)
{
    int rv = 0;
    for (size_t i = 0; i < t->n_compare && rv == 0; i++) {
        rv = chk(c, &t->compare[i]->key, &t->compare[i]->range_end,
                 AUTH_PERM_READ);
    }
    Etcdserverpb__RequestOp **lists[2] = {t->success, t->failure};
    size_t ns[2] = {t->n_success, t->n_failure};
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < ns[l] && rv == 0; i++) {
            const Etcdserverpb__RequestOp *op = lists[l][i];
            switch (op->request_case) {
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE:
                    rv = chk(c, &op->request_range->key,
                             &op->request_range->range_end, AUTH_PERM_READ);
                    break;
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT:
                    rv = chk(c, &op->request_put->key, NULL, AUTH_PERM_WRITE);
                    break;
                case ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE: {
                    const Etcdserverpb__DeleteRangeRequest *d =
                        op->request_delete_range;
                    if (d->prev_kv) {
                        rv = chk(c, &d->key, &d->range_end, AUTH_PERM_READ);
                    }
                    if (rv == 0) {
                        rv = chk(c, &d->key, &d->range_end, AUTH_PERM_WRITE);
                    }
                    break;
                }
                default:
                    break;
            }
        }
    }
    return rv;
}

int auth_store_check_txn(struct mvcc_store *s, struct mvcc_write *w,
                         const char *user, uint64_t rev,
                         const Etcdserverpb__TxnRequest *t,
                         struct keel_arena *a)
{
    struct perm_ctx c = {s, w, user, rev, a};
    return check_txn(&c, t);
}

static ProtobufCMessage *new_resp(struct keel_arena *a,
                                  const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = keel_arena_alloc(a, d->sizeof_message);
    if (m != NULL) {
        protobuf_c_message_init(d, m);
    }
    return m;
}

ProtobufCMessage *auth_store_apply(struct mvcc_store *s, struct mvcc_write *w,
                                   const Keelpb__Request *req,
                                   struct keel_arena *a, int *rv)
{
    const Keelpb__RequestHeader *h = req->header;
    struct perm_ctx c = {s, w, h != NULL ? h->username : "",
                         h != NULL ? h->auth_revision : 0, a};
    *rv = 0;
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_PUT:
            *rv = check_put(&c, req->put);
            return NULL;
        case KEELPB__REQUEST__OP_DELETE_RANGE:
            *rv = check_delete(&c, req->delete_range);
            return NULL;
        case KEELPB__REQUEST__OP_TXN:
            *rv = check_txn(&c, req->txn);
            return NULL;
        case KEELPB__REQUEST__OP_LEASE_REVOKE:
            *rv = check_lease_keys(&c, req->lease_revoke->id);
            return NULL;
        default:
            break;
    }
    if (!auth_store_is_op(req)) {
        return NULL;
    }
    if (req->op_case != KEELPB__REQUEST__OP_AUTHENTICATE) {
        *rv = auth_store_check_admin(s, w, c.user, a);
        if (*rv != 0) {
            return NULL;
        }
    }
    const ProtobufCMessageDescriptor *d = NULL;
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_AUTH_ENABLE:
            d = &etcdserverpb__auth_enable_response__descriptor;
            *rv = auth_enable(s, w, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_DISABLE:
            d = &etcdserverpb__auth_disable_response__descriptor;
            *rv = auth_disable(s, w);
            break;
        case KEELPB__REQUEST__OP_AUTHENTICATE: {
            d = &etcdserverpb__authenticate_response__descriptor;
            *rv = authenticate(s, w, req->authenticate, a);
            break;
        }
        case KEELPB__REQUEST__OP_AUTH_USER_ADD:
            d = &etcdserverpb__auth_user_add_response__descriptor;
            *rv = user_add(s, w, req->auth_user_add, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_USER_DELETE:
            d = &etcdserverpb__auth_user_delete_response__descriptor;
            *rv = user_delete(s, w, req->auth_user_delete, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_USER_CHANGE_PASSWORD:
            d = &etcdserverpb__auth_user_change_password_response__descriptor;
            *rv = user_change_password(s, w, req->auth_user_change_password, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_USER_GRANT_ROLE:
            d = &etcdserverpb__auth_user_grant_role_response__descriptor;
            *rv = user_grant_role(s, w, req->auth_user_grant_role, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_USER_REVOKE_ROLE:
            d = &etcdserverpb__auth_user_revoke_role_response__descriptor;
            *rv = user_revoke_role(s, w, req->auth_user_revoke_role, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_ROLE_ADD:
            d = &etcdserverpb__auth_role_add_response__descriptor;
            *rv = role_add(s, w, req->auth_role_add, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_ROLE_DELETE:
            d = &etcdserverpb__auth_role_delete_response__descriptor;
            *rv = role_delete(s, w, req->auth_role_delete, a);
            break;
        case KEELPB__REQUEST__OP_AUTH_ROLE_GRANT_PERMISSION:
            d = &etcdserverpb__auth_role_grant_permission_response__descriptor;
            *rv = role_grant_permission(s, w, req->auth_role_grant_permission,
                                        a);
            break;
        case KEELPB__REQUEST__OP_AUTH_ROLE_REVOKE_PERMISSION:
            d = &etcdserverpb__auth_role_revoke_permission_response__descriptor;
            *rv = role_revoke_permission(s, w, req->auth_role_revoke_permission,
                                         a);
            break;
        default:
            return NULL;
    }
    if (*rv != 0) {
        return NULL;
    }
    ProtobufCMessage *resp = new_resp(a, d);
    if (resp == NULL) {
        *rv = KEEL_ENOMEM;
        return NULL;
    }
    if (req->op_case == KEELPB__REQUEST__OP_AUTHENTICATE) {
        /* req lives in the apply scratch arena: copy into a */
        const char *t = req->authenticate->simple_token;
        char *tok = keel_arena_dup(a, t, strlen(t) + 1);
        if (tok == NULL) {
            *rv = KEEL_ENOMEM;
            return NULL;
        }
        ((Etcdserverpb__AuthenticateResponse *)resp)->token = tok;
    }
    return resp;
}
