/*
 * server/auth.c: the Auth service, simple tokens and request-time checks
 * (see auth.h).
 *
 * Changes (enable, disable, users, roles, permissions) are proposed through
 * raft with the caller's user in the header; apply (auth_store_apply) runs
 * the admin check and the change on every member. UserAdd and
 * ChangePassword hash the password first, on the thread pool:
 *
 *   start ──bcrypt hash (pool)──▶ propose ──apply──▶ reply
 *
 * Authenticate checks the password on the thread pool, then proposes the
 * token it made up so every member learns it when applying:
 *
 *   start ──read user──▶ bcrypt verify (pool) ──▶ propose Authenticate
 *         ──apply: auth_on_applied adds the token──▶ reply {token}
 *
 * UserGet/UserList/RoleGet/RoleList are reads: after a ReadIndex barrier,
 * from the local store, with etcd's apply-time rules (admin, or the user
 * itself / a holder of the role).
 *
 * A call whose client went away while bcrypt runs is still finished from
 * the pool's completion callback (grpc.h: finishing only frees it).
 */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "auth_jwt.h"
#include "auth_store.h"
#include "config.h"
#include "grpc.h"
#include "keel_err.h"
#include "log.h"
#include "metrics.h"
#include "mvcc.h"
#include "node.h"
#include "server.h"

#define AUTH_TOKEN_BUCKETS 256
#define AUTH_TOKEN_PREFIX_LEN 16 /* etcd: defaultSimpleTokenLength */

struct auth_token
{
    struct auth_token *next;
    uint64_t expires_ms;
    char *user;
    char token[]; /* NUL-terminated */
};

struct auth
{
    struct keel_server *s;
    uv_loop_t *loop;
    uint64_t ttl_ms;
    unsigned cost;
    bool cert_auth; /* --client-cert-auth: a certificate's CN is a user */
    struct auth_jwt *jwt; /* --auth-token jwt: no token table */
    uint64_t next_index; /* the ".<n>" of the tokens this member makes */
    /* Cached from the store; stale once an auth op was applied (refreshed
     * at the next check: apply commits before the loop runs anything). */
    bool cache_valid;
    bool enabled;
    uint64_t revision;
    struct auth_token *tokens[AUTH_TOKEN_BUCKETS];
};

static struct mvcc_store *store(struct auth *au)
{
    return node_store(server_node(au->s));
}

static void refresh(struct auth *au)
{
    if (!au->cache_valid) {
        au->enabled = auth_store_enabled(store(au), NULL);
        au->revision = auth_store_revision(store(au), NULL);
        au->cache_valid = true;
    }
}

/* ---- building blocks ---------------------------------------------------- */

int auth_bcrypt_hash(const char *password, unsigned cost, char *out,
                     size_t outlen)
{
    if (cost < 4 || cost > 31 || outlen < 128) {
        return KEEL_EINVAL;
    }
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$2b$", cost, NULL, 0, salt, sizeof salt) == NULL) {
        return KEEL_EIO;
    }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL) {
        return KEEL_ENOMEM;
    }
    const char *h = crypt_r(password, salt, cd);
    int rv = 0;
    if (h == NULL || h[0] != '$' || strlen(h) >= outlen) {
        rv = KEEL_EIO;
    } else {
        strcpy(out, h);
    }
    free(cd);
    return rv;
}

int auth_bcrypt_verify(const char *password, const char *hash)
{
    size_t hl = strlen(hash);
    /* bcrypt only: "$2a$", "$2b$", "$2y$" (etcd's Go bcrypt writes $2a$) */
    if (hl < 7 || hash[0] != '$' || hash[1] != '2' || hash[3] != '$') {
        return KEEL_EAUTHFAILED;
    }
    struct crypt_data *cd = calloc(1, sizeof *cd);
    if (cd == NULL) {
        return KEEL_ENOMEM;
    }
    const char *h = crypt_r(password, hash, cd);
    int rv = KEEL_EAUTHFAILED;
    if (h != NULL && h[0] == '$' && strlen(h) == hl &&
        CRYPTO_memcmp(h, hash, hl) == 0) {
        rv = 0;
    }
    free(cd);
    return rv;
}

int auth_token_check_format(const char *token)
{
    const char *dot = strchr(token, '.');
    if (dot == NULL || dot == token || dot[1] == '\0' ||
        strchr(dot + 1, '.') != NULL) {
        return KEEL_EINVALIDAUTHTOKEN;
    }
    for (const char *p = dot + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9') {
            return KEEL_EINVALIDAUTHTOKEN;
        }
    }
    return 0;
}

int auth_token_type_check(const char *spec)
{
    size_t n = strcspn(spec, ",");
    if (n == 6 && strncmp(spec, "simple", 6) == 0) {
        return AUTH_TOKEN_SIMPLE;
    }
    if (n == 3 && strncmp(spec, "jwt", 3) == 0) {
        return AUTH_TOKEN_JWT;
    }
    return KEEL_EINVAL;
}

/* ---- the token table ---------------------------------------------------- */

static size_t token_bucket(const char *t)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *t != '\0'; t++) {
        h = (h ^ (uint8_t)*t) * 1099511628211ull;
    }
    return (size_t)(h % AUTH_TOKEN_BUCKETS);
}

/* Drop the tokens of user (every token when user is NULL), and the expired
 * ones. */
static void tokens_drop(struct auth *au, const char *user)
{
    uint64_t now = uv_now(au->loop);
    for (size_t b = 0; b < AUTH_TOKEN_BUCKETS; b++) {
        struct auth_token **pp = &au->tokens[b];
        while (*pp != NULL) {
            struct auth_token *t = *pp;
            if (user == NULL || strcmp(t->user, user) == 0 ||
                t->expires_ms <= now) {
                *pp = t->next;
                free(t->user);
                free(t);
            } else {
                pp = &t->next;
            }
        }
    }
}

static void token_add(struct auth *au, const char *token, const char *user)
{
    size_t tl = strlen(token);
    struct auth_token *t = malloc(sizeof *t + tl + 1);
    char *u = strdup(user);
    if (t == NULL || u == NULL) {
        /* The client gets a token this member does not know: its next
         * request fails with "invalid auth token" and it authenticates
         * again. */
        free(t);
        free(u);
        return;
    }
    memcpy(t->token, token, tl + 1);
    t->user = u;
    t->expires_ms = uv_now(au->loop) + au->ttl_ms;
    size_t b = token_bucket(token);
    t->next = au->tokens[b];
    au->tokens[b] = t;
}

/* The live token, its life extended (etcd resetSimpleToken); NULL if
 * unknown or expired. */
static struct auth_token *token_find(struct auth *au, const char *token)
{
    uint64_t now = uv_now(au->loop);
    for (struct auth_token *t = au->tokens[token_bucket(token)]; t != NULL;
         t = t->next) {
        if (strcmp(t->token, token) == 0) {
            if (t->expires_ms <= now) {
                return NULL;
            }
            t->expires_ms = now + au->ttl_ms;
            return t;
        }
    }
    return NULL;
}

static int make_token(struct auth *au, struct keel_arena *a, char **out)
{
    static const char letters[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    uint8_t rnd[AUTH_TOKEN_PREFIX_LEN];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        return KEEL_EIO;
    }
    char *t = keel_arena_alloc(a, AUTH_TOKEN_PREFIX_LEN + 24);
    if (t == NULL) {
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < AUTH_TOKEN_PREFIX_LEN; i++) {
        t[i] = letters[rnd[i] % (sizeof letters - 1)];
    }
    snprintf(t + AUTH_TOKEN_PREFIX_LEN, 24, ".%llu",
             (unsigned long long)++au->next_index);
    *out = t;
    return 0;
}

/* ---- life --------------------------------------------------------------- */

int auth_new(struct keel_server *s, const struct keel_config *cfg,
             struct auth **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    const char *spec = cfg->auth_token != NULL ? cfg->auth_token : "simple";
    int type = auth_token_type_check(spec);
    if (type < 0) {
        snprintf(errmsg, errlen, "--auth-token %s: auth: invalid auth options",
                 spec);
        return KEEL_EINVAL;
    }
    struct auth *au = calloc(1, sizeof *au);
    if (au == NULL) {
        return KEEL_ENOMEM;
    }
    if (type == AUTH_TOKEN_JWT) {
        const char *opts = spec + 3;
        char jerr[256] = "";
        int rv = auth_jwt_new(*opts == ',' ? opts + 1 : opts, &au->jwt, jerr,
                              sizeof jerr);
        if (rv != 0) {
            snprintf(errmsg, errlen, "--auth-token: %s", jerr);
            free(au);
            return rv;
        }
    }
    au->s = s;
    au->loop = server_loop(s);
    au->ttl_ms = (cfg->auth_token_ttl > 0 ? cfg->auth_token_ttl : 300) * 1000;
    au->cost = (unsigned)cfg->bcrypt_cost;
    if (au->cost < 4 || au->cost > 31) {
        /* etcd NewAuthStore: a warning, not an error */
        log_warn("auth", "Use default bcrypt-cost %d instead of the invalid "
                 "value %llu", 10, (unsigned long long)cfg->bcrypt_cost);
        au->cost = 10;
    }
    if (au->jwt == NULL) {
        log_warn("auth", "simple token is not cryptographically signed");
    }
    au->cert_auth = cfg->client_tls.client_cert_auth;
    *out = au;
    return 0;
}

void auth_free(struct auth *au)
{
    if (au != NULL) {
        tokens_drop(au, NULL);
        auth_jwt_free(au->jwt);
        free(au);
    }
}

void auth_reload(struct auth *au)
{
    au->cache_valid = false;
}

void auth_on_applied(struct auth *au, const Keelpb__Request *req,
                     const ProtobufCMessage *resp)
{
    if (au == NULL || !auth_store_is_op(req)) {
        return;
    }
    au->cache_valid = false;
    switch (req->op_case) {
        case KEELPB__REQUEST__OP_AUTHENTICATE:
            /* a JWT carries its own proof: nothing to remember */
            if (resp != NULL && au->jwt == NULL) {
                token_add(au, req->authenticate->simple_token,
                          req->authenticate->name);
            }
            break;
        case KEELPB__REQUEST__OP_AUTH_DISABLE:
            tokens_drop(au, NULL);
            break;
        case KEELPB__REQUEST__OP_AUTH_USER_DELETE:
            tokens_drop(au, req->auth_user_delete->name);
            break;
        case KEELPB__REQUEST__OP_AUTH_USER_CHANGE_PASSWORD:
            tokens_drop(au, req->auth_user_change_password->name);
            break;
        default:
            break;
    }
}

/* ---- who calls ---------------------------------------------------------- */

/* The caller's user (NULL: none) and the auth revision now (0 without a
 * user): the token's user (etcd AuthInfoFromCtx), else with
 * --client-cert-auth the common name of the client's verified certificate
 * (etcd AuthInfoFromTLS; gateway calls have none). */
static int call_user(struct auth *au, struct grpc_call *call,
                     const char **user, uint64_t *rev)
{
    *user = NULL;
    *rev = 0;
    const char *t = grpc_call_header(call, "token");
    if (t == NULL) {
        t = grpc_call_header(call, "authorization");
    }
    if (t != NULL && au->jwt != NULL) {
        /* etcd: the user and the revision are the token's claims */
        char *u = NULL;
        int rv = auth_jwt_verify(au->jwt, t, (int64_t)time(NULL), &u, rev);
        if (rv != 0) {
            *rev = 0;
            return rv;
        }
        char *copy = keel_arena_dup(grpc_call_arena(call), u, strlen(u) + 1);
        free(u);
        if (copy == NULL) {
            *rev = 0;
            return KEEL_ENOMEM;
        }
        *user = copy;
        return 0;
    }
    if (t == NULL) {
        const char *cn = au->cert_auth ? grpc_call_peer_cn(call) : NULL;
        if (cn != NULL && cn[0] != '\0') {
            refresh(au);
            *user = cn;
            *rev = au->revision;
        }
        return 0;
    }
    struct auth_token *tok =
        auth_token_check_format(t) == 0 ? token_find(au, t) : NULL;
    if (tok == NULL) {
        return KEEL_EINVALIDAUTHTOKEN;
    }
    refresh(au);
    *user = tok->user;
    *rev = au->revision;
    return 0;
}

int auth_propose_header(struct auth *au, struct grpc_call *call,
                        Keelpb__Request *kreq, Keelpb__RequestHeader *hdr)
{
    const char *user = NULL;
    uint64_t rev = 0;
    int rv = call_user(au, call, &user, &rev);
    if (rv != 0) {
        return rv;
    }
    keelpb__request_header__init(hdr);
    if (user != NULL) {
        hdr->username = (char *)user;
        hdr->auth_revision = rev;
    }
    kreq->header = hdr;
    return 0;
}

int auth_check_key(struct auth *au, struct grpc_call *call,
                   const uint8_t *key, size_t key_len,
                   const uint8_t *range_end, size_t range_end_len)
{
    const char *user = NULL;
    uint64_t rev = 0;
    int rv = call_user(au, call, &user, &rev);
    if (rv != 0) {
        return rv;
    }
    refresh(au);
    if (!au->enabled) {
        return 0;
    }
    return auth_store_check(store(au), NULL, user, rev, key, key_len,
                            range_end, range_end_len, AUTH_PERM_READ,
                            grpc_call_arena(call));
}

int auth_check_range(struct auth *au, struct grpc_call *call,
                     const ProtobufCBinaryData *key,
                     const ProtobufCBinaryData *range_end)
{
    return auth_check_key(au, call, key->data, key->len, range_end->data,
                          range_end->len);
}

int auth_check_txn(struct auth *au, struct grpc_call *call,
                   const Etcdserverpb__TxnRequest *txn)
{
    const char *user = NULL;
    uint64_t rev = 0;
    int rv = call_user(au, call, &user, &rev);
    if (rv != 0) {
        return rv;
    }
    refresh(au);
    if (!au->enabled) {
        return 0;
    }
    return auth_store_check_txn(store(au), NULL, user, rev, txn,
                                grpc_call_arena(call));
}

int auth_check_admin(struct auth *au, struct grpc_call *call)
{
    const char *user = NULL;
    uint64_t rev = 0;
    int rv = call_user(au, call, &user, &rev);
    if (rv != 0) {
        return rv;
    }
    refresh(au);
    if (!au->enabled) {
        return 0;
    }
    return auth_store_check_admin(store(au), NULL, user,
                                  grpc_call_arena(call));
}

/* etcd's auth package errors (auth/store.go), which the maintenance
 * service returns as they are: code Unknown, text "auth: ...". */
static const char *raw_message(int rv)
{
    switch (rv) {
        case KEEL_EUSEREMPTY:
            return "auth: user name is empty";
        case KEEL_EUSERNOTFOUND:
            return "auth: user not found";
        case KEEL_EPERMISSIONDENIED:
            return "auth: permission denied";
        case KEEL_EINVALIDAUTHTOKEN:
            return "auth: invalid auth token";
        default:
            return NULL;
    }
}

int auth_check_admin_raw(struct auth *au, struct grpc_call *call)
{
    int rv = auth_check_admin(au, call);
    const char *msg = raw_message(rv);
    if (msg != NULL) {
        grpc_call_fail_status(call, KEEL_GRPC_UNKNOWN, msg);
    } else if (rv != 0) {
        grpc_call_fail(call, rv);
    }
    return rv;
}

/* ---- the service -------------------------------------------------------- */

struct auth_call
{
    struct auth *au;
    struct grpc_call *call;
    const ProtobufCMessage *req;
    Keelpb__Request kreq;
    Keelpb__RequestHeader hdr;
    /* bcrypt on the pool: inputs and result */
    uv_work_t work;
    bool verify;
    const char *password;
    char *stored; /* verify: the user's hash */
    char hash[128];
    int rv;
    uint64_t checked_rev; /* Authenticate: auth revision of the check */
    int attempts;
};

static struct auth_call *auth_call_new(struct keel_server *s,
                                       struct grpc_call *call,
                                       const ProtobufCMessage *req)
{
    struct auth_call *c = keel_arena_alloc(grpc_call_arena(call), sizeof *c);
    if (c != NULL) {
        memset(c, 0, sizeof *c);
        c->au = server_auth(s);
        c->call = call;
        c->req = req;
        keelpb__request__init(&c->kreq);
    }
    return c;
}

static void reply(struct auth_call *c, ProtobufCMessage *resp)
{
    server_reply(c->au->s, c->call, resp, mvcc_revision(store(c->au)));
}

static void authenticate_check(struct auth_call *c);

/* etcd's Authenticate retries when the auth store changed between the
 * password check and the apply of the token. */
#define AUTH_AUTHENTICATE_ATTEMPTS 5

static void op_done(void *arg, int rv, ProtobufCMessage *resp)
{
    struct auth_call *c = arg;
    if (rv == KEEL_EAUTHOLDREVISION &&
        c->kreq.op_case == KEELPB__REQUEST__OP_AUTHENTICATE &&
        ++c->attempts < AUTH_AUTHENTICATE_ATTEMPTS) {
        authenticate_check(c);
        return;
    }
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
        return;
    }
    reply(c, resp);
}

static void propose_op(struct auth_call *c)
{
    int rv = auth_propose_header(c->au, c->call, &c->kreq, &c->hdr);
    if (rv == 0) {
        rv = node_propose(server_node(c->au->s), &c->kreq,
                          grpc_call_arena(c->call), op_done, c);
    }
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
    }
}

static void bcrypt_work(uv_work_t *w)
{
    struct auth_call *c = w->data;
    if (c->verify) {
        c->rv = auth_bcrypt_verify(c->password, c->stored);
    } else {
        c->rv = auth_bcrypt_hash(c->password, c->au->cost, c->hash,
                                 sizeof c->hash);
    }
}

static void authenticate_verified(struct auth_call *c);

static void bcrypt_done(uv_work_t *w, int status)
{
    struct auth_call *c = w->data;
    int rv = status != 0 ? KEEL_ECANCELED : c->rv;
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
        return;
    }
    if (c->verify) {
        authenticate_verified(c);
        return;
    }
    /* the hash replaces the password in the replicated request */
    if (c->kreq.op_case == KEELPB__REQUEST__OP_AUTH_USER_ADD) {
        c->kreq.auth_user_add->password = c->hash;
    } else {
        c->kreq.auth_user_change_password->password = c->hash;
    }
    propose_op(c);
}

static void run_bcrypt(struct auth_call *c)
{
    c->work.data = c;
    int rv = uv_queue_work(c->au->loop, &c->work, bcrypt_work, bcrypt_done);
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
    }
}

#define START(fn, type, field, op)                                           \
    static void fn(struct grpc_call *call, const ProtobufCMessage *msg,      \
                   void *data)                                               \
    {                                                                        \
        struct auth_call *c = auth_call_new(data, call, msg);                \
        if (c == NULL) {                                                     \
            grpc_call_fail(call, KEEL_ENOMEM);                               \
            return;                                                          \
        }                                                                    \
        c->kreq.op_case = op;                                                \
        c->kreq.field = (type *)msg;                                         \
        propose_op(c);                                                       \
    }

START(enable_start, Etcdserverpb__AuthEnableRequest, auth_enable,
      KEELPB__REQUEST__OP_AUTH_ENABLE)
START(disable_start, Etcdserverpb__AuthDisableRequest, auth_disable,
      KEELPB__REQUEST__OP_AUTH_DISABLE)
START(user_delete_start, Etcdserverpb__AuthUserDeleteRequest,
      auth_user_delete, KEELPB__REQUEST__OP_AUTH_USER_DELETE)
START(user_grant_start, Etcdserverpb__AuthUserGrantRoleRequest,
      auth_user_grant_role, KEELPB__REQUEST__OP_AUTH_USER_GRANT_ROLE)
START(user_revoke_start, Etcdserverpb__AuthUserRevokeRoleRequest,
      auth_user_revoke_role, KEELPB__REQUEST__OP_AUTH_USER_REVOKE_ROLE)
START(role_add_start, Etcdserverpb__AuthRoleAddRequest, auth_role_add,
      KEELPB__REQUEST__OP_AUTH_ROLE_ADD)
START(role_delete_start, Etcdserverpb__AuthRoleDeleteRequest,
      auth_role_delete, KEELPB__REQUEST__OP_AUTH_ROLE_DELETE)
START(role_grant_start, Etcdserverpb__AuthRoleGrantPermissionRequest,
      auth_role_grant_permission,
      KEELPB__REQUEST__OP_AUTH_ROLE_GRANT_PERMISSION)
START(role_revoke_start, Etcdserverpb__AuthRoleRevokePermissionRequest,
      auth_role_revoke_permission,
      KEELPB__REQUEST__OP_AUTH_ROLE_REVOKE_PERMISSION)

static void user_add_start(struct grpc_call *call, const ProtobufCMessage *msg,
                           void *data)
{
    Etcdserverpb__AuthUserAddRequest *req =
        (Etcdserverpb__AuthUserAddRequest *)msg;
    struct auth_call *c = auth_call_new(data, call, msg);
    if (c == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    c->kreq.op_case = KEELPB__REQUEST__OP_AUTH_USER_ADD;
    c->kreq.auth_user_add = req;
    if (req->options != NULL && req->options->no_password) {
        req->password = (char *)"";
        propose_op(c);
        return;
    }
    c->password = req->password;
    run_bcrypt(c);
}

static void change_password_start(struct grpc_call *call,
                                  const ProtobufCMessage *msg, void *data)
{
    Etcdserverpb__AuthUserChangePasswordRequest *req =
        (Etcdserverpb__AuthUserChangePasswordRequest *)msg;
    struct auth_call *c = auth_call_new(data, call, msg);
    if (c == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    c->kreq.op_case = KEELPB__REQUEST__OP_AUTH_USER_CHANGE_PASSWORD;
    c->kreq.auth_user_change_password = req;
    c->password = req->password;
    run_bcrypt(c);
}

/* etcd v3_server.go Authenticate + authStore.CheckPassword */
static void authenticate_start(struct grpc_call *call,
                               const ProtobufCMessage *msg, void *data)
{
    struct auth_call *c = auth_call_new(data, call, msg);
    if (c == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    authenticate_check(c);
}

static void authenticate_check(struct auth_call *c)
{
    struct grpc_call *call = c->call;
    const Etcdserverpb__AuthenticateRequest *req =
        (const Etcdserverpb__AuthenticateRequest *)c->req;
    refresh(c->au);
    if (!c->au->enabled) {
        grpc_call_fail(call, KEEL_EAUTHNOTENABLED);
        return;
    }
    c->checked_rev = c->au->revision;
    struct keel_arena *a = grpc_call_arena(call);
    Authpb__User *u = NULL;
    int rv = auth_store_user(store(c->au), NULL, req->name, a, &u);
    if (rv == KEEL_EUSERNOTFOUND ||
        (rv == 0 && u->options != NULL && u->options->no_password)) {
        rv = KEEL_EAUTHFAILED;
    }
    if (rv != 0) {
        grpc_call_fail(call, rv);
        return;
    }
    c->stored = keel_arena_alloc(a, u->password.len + 1);
    if (c->stored == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    memcpy(c->stored, u->password.data, u->password.len);
    c->stored[u->password.len] = '\0';
    c->password = req->password;
    c->verify = true;
    run_bcrypt(c);
}

static void authenticate_verified(struct auth_call *c)
{
    const Etcdserverpb__AuthenticateRequest *req =
        (const Etcdserverpb__AuthenticateRequest *)c->req;
    struct keel_arena *a = grpc_call_arena(c->call);
    Keelpb__Authenticate *op = keel_arena_alloc(a, sizeof *op);
    if (op == NULL) {
        grpc_call_fail(c->call, KEEL_ENOMEM);
        return;
    }
    keelpb__authenticate__init(op);
    op->name = req->name;
    op->auth_revision = c->checked_rev;
    int rv;
    if (c->au->jwt != NULL) {
        /* signed by the member that checked the password, for the revision
         * apply confirms (etcd signs at apply, with the same claims) */
        char *t = NULL;
        rv = auth_jwt_sign(c->au->jwt, req->name, c->checked_rev,
                           (int64_t)time(NULL), &t);
        if (rv == 0) {
            op->simple_token = keel_arena_dup(a, t, strlen(t) + 1);
            rv = op->simple_token != NULL ? 0 : KEEL_ENOMEM;
        }
        free(t);
        if (rv == KEEL_EINVAL) {
            /* etcd: ErrVerifyOnly, returned as it is (code Unknown) */
            grpc_call_fail_status(
                c->call, KEEL_GRPC_UNKNOWN,
                "auth: token signing attempted with verify-only key");
            return;
        }
    } else {
        rv = make_token(c->au, a, &op->simple_token);
    }
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
        return;
    }
    c->kreq.op_case = KEELPB__REQUEST__OP_AUTHENTICATE;
    c->kreq.authenticate = op;
    propose_op(c);
}

/* ---- reads: UserGet, UserList, RoleGet, RoleList ------------------------ */

static void read_now(void *arg, int rv)
{
    struct auth_call *c = arg;
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
        return;
    }
    struct auth *au = c->au;
    struct keel_arena *a = grpc_call_arena(c->call);
    const char *user = NULL;
    uint64_t arev = 0;
    rv = call_user(au, c->call, &user, &arev);
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
        return;
    }
    int admin = auth_store_check_admin(store(au), NULL, user, a);
    const ProtobufCMessageDescriptor *d = c->req->descriptor;
    ProtobufCMessage *resp = NULL;
    if (d == &etcdserverpb__auth_user_get_request__descriptor) {
        const Etcdserverpb__AuthUserGetRequest *r = (const void *)c->req;
        /* etcd authApplierV3.UserGet: root, or the user itself */
        if (admin != 0 && (user == NULL || strcmp(r->name, user) != 0)) {
            grpc_call_fail(c->call, admin);
            return;
        }
        Authpb__User *u = NULL;
        rv = auth_store_user(store(au), NULL, r->name, a, &u);
        Etcdserverpb__AuthUserGetResponse *out = (void *)server_new_message(
            a, &etcdserverpb__auth_user_get_response__descriptor);
        if (rv == 0 && out != NULL) {
            out->roles = u->roles;
            out->n_roles = u->n_roles;
        }
        resp = (ProtobufCMessage *)out;
    } else if (d == &etcdserverpb__auth_role_get_request__descriptor) {
        const Etcdserverpb__AuthRoleGetRequest *r = (const void *)c->req;
        /* etcd authApplierV3.RoleGet: root, or a holder of the role */
        if (admin != 0) {
            Authpb__User *u = NULL;
            if (user == NULL ||
                auth_store_user(store(au), NULL, user, a, &u) != 0 ||
                !auth_user_has_role(u, r->role)) {
                grpc_call_fail(c->call, admin);
                return;
            }
        }
        Authpb__Role *role = NULL;
        rv = auth_store_role(store(au), NULL, r->role, a, &role);
        Etcdserverpb__AuthRoleGetResponse *out = (void *)server_new_message(
            a, &etcdserverpb__auth_role_get_response__descriptor);
        if (rv == 0 && out != NULL) {
            out->perm = role->keypermission;
            out->n_perm = role->n_keypermission;
        }
        resp = (ProtobufCMessage *)out;
    } else {
        bool roles = d == &etcdserverpb__auth_role_list_request__descriptor;
        if (admin != 0) {
            grpc_call_fail(c->call, admin);
            return;
        }
        char **names = NULL;
        size_t n = 0;
        rv = auth_store_names(store(au), NULL, roles, a, &names, &n);
        if (roles) {
            Etcdserverpb__AuthRoleListResponse *out =
                (void *)server_new_message(
                    a, &etcdserverpb__auth_role_list_response__descriptor);
            if (out != NULL) {
                out->roles = names;
                out->n_roles = n;
            }
            resp = (ProtobufCMessage *)out;
        } else {
            Etcdserverpb__AuthUserListResponse *out =
                (void *)server_new_message(
                    a, &etcdserverpb__auth_user_list_response__descriptor);
            if (out != NULL) {
                out->users = names;
                out->n_users = n;
            }
            resp = (ProtobufCMessage *)out;
        }
    }
    if (rv != 0) {
        grpc_call_fail(c->call, rv);
        return;
    }
    reply(c, resp); /* NULL: out of memory, failed there */
}

static void read_start(struct grpc_call *call, const ProtobufCMessage *msg,
                       void *data)
{
    struct auth_call *c = auth_call_new(data, call, msg);
    if (c == NULL) {
        grpc_call_fail(call, KEEL_ENOMEM);
        return;
    }
    int rv = node_read_index(server_node(c->au->s), read_now, c);
    if (rv != 0) {
        grpc_call_fail(call, rv);
    }
}

/* etcd_debugging_auth_revision (etcd: auth/metrics.go) */
static void collect_revision(struct metrics_writer *w,
                             const struct metrics_family *f, void *data)
{
    struct auth *au = data;
    refresh(au);
    metrics_write_sample(w, f->name, NULL, 0, (double)au->revision);
}

int auth_register(struct keel_server *s, struct grpc_server *g)
{
    struct metrics_family f = {0};
    f.name = "etcd_debugging_auth_revision";
    f.help = "The current revision of auth store.";
    f.type = METRICS_GAUGE;
    f.collect = collect_revision;
    f.data = server_auth(s);
    int rv = metrics_register(server_metrics(s), &f);
    if (rv != 0) {
        return rv;
    }
#define M(name, req, fn)                                                      \
    {"/etcdserverpb.Auth/" name, GRPC_UNARY,                                  \
     &etcdserverpb__##req##__descriptor, fn, NULL, NULL, NULL, s}
    const struct grpc_method methods[] = {
        M("AuthEnable", auth_enable_request, enable_start),
        M("AuthDisable", auth_disable_request, disable_start),
        M("Authenticate", authenticate_request, authenticate_start),
        M("UserAdd", auth_user_add_request, user_add_start),
        M("UserGet", auth_user_get_request, read_start),
        M("UserList", auth_user_list_request, read_start),
        M("UserDelete", auth_user_delete_request, user_delete_start),
        M("UserChangePassword", auth_user_change_password_request,
          change_password_start),
        M("UserGrantRole", auth_user_grant_role_request, user_grant_start),
        M("UserRevokeRole", auth_user_revoke_role_request, user_revoke_start),
        M("RoleAdd", auth_role_add_request, role_add_start),
        M("RoleGet", auth_role_get_request, read_start),
        M("RoleList", auth_role_list_request, read_start),
        M("RoleDelete", auth_role_delete_request, role_delete_start),
        M("RoleGrantPermission", auth_role_grant_permission_request,
          role_grant_start),
        M("RoleRevokePermission", auth_role_revoke_permission_request,
          role_revoke_start),
    };
#undef M
    return server_register_methods(g, methods,
                                   sizeof methods / sizeof methods[0]);
}
