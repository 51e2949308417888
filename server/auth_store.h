/*
 * server/auth_store: etcd 3.4's auth store (auth/store.go) over the MVCC
 * store's auth tables, in etcd's bucket layout:
 *
 *   auth       "authEnabled" -> {1} or {0}; "authRevision" -> 8 bytes BE
 *   authUsers  user name -> authpb.User (password = bcrypt hash)
 *   authRoles  role name -> authpb.Role (permissions sorted by key)
 *
 * Every function takes the store s and a write batch w: with w the batch's
 * own (uncommitted) state is seen (apply), with w == NULL a short read txn
 * (request time). Everything here is deterministic: apply runs it on every
 * member in log order, so the tables and the auth revision agree everywhere.
 *
 * The auth revision starts at 1 (etcd: NewAuthStore commits revision 1 when
 * there is none) and grows by one with every change of users, roles or
 * permissions and with AuthDisable (AuthEnable does not change it, as in
 * etcd).
 *
 * Errors are etcd's (KEEL_EUSERNOTFOUND, KEEL_EROLENOTFOUND, ...) or a
 * storage error from mvcc.
 */
#ifndef KEEL_AUTH_STORE_H
#define KEEL_AUTH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "authpb/auth.pb-c.h"
#include "etcdserverpb/rpc.pb-c.h"
#include "keel_arena.h"
#include "keelpb/request.pb-c.h"

struct mvcc_store;
struct mvcc_write;

#define AUTH_ROOT "root" /* etcd: rootUser and rootRole */

enum auth_perm { AUTH_PERM_READ, AUTH_PERM_WRITE };

bool auth_store_enabled(struct mvcc_store *s, struct mvcc_write *w);
uint64_t auth_store_revision(struct mvcc_store *s, struct mvcc_write *w);

/* The user or role, unpacked into a. KEEL_EUSERNOTFOUND /
 * KEEL_EROLENOTFOUND when absent. */
int auth_store_user(struct mvcc_store *s, struct mvcc_write *w,
                    const char *name, struct keel_arena *a, Authpb__User **out);
int auth_store_role(struct mvcc_store *s, struct mvcc_write *w,
                    const char *name, struct keel_arena *a, Authpb__Role **out);

/* All user (role) names in name order, array and strings in a. */
int auth_store_names(struct mvcc_store *s, struct mvcc_write *w, bool roles,
                     struct keel_arena *a, char ***names, size_t *n);

/* Whether user holds role. */
bool auth_user_has_role(const Authpb__User *u, const char *role);

/* etcd isOpPermitted: 0 when auth is disabled or user (authenticated at
 * auth revision rev) may read/write [key, range_end) (range_end_len 0: the
 * key alone; "\0": every key >= key). KEEL_EUSEREMPTY (rev 0: no user),
 * KEEL_EAUTHOLDREVISION (rev older than the store's), KEEL_EPERMISSIONDENIED.
 * Scratch memory comes from a. */
int auth_store_check(struct mvcc_store *s, struct mvcc_write *w,
                     const char *user, uint64_t rev, const uint8_t *key,
                     size_t key_len, const uint8_t *range_end,
                     size_t range_end_len, enum auth_perm perm,
                     struct keel_arena *a);

/* etcd checkTxnAuth for a whole txn (user, rev as auth_store_check). */
int auth_store_check_txn(struct mvcc_store *s, struct mvcc_write *w,
                         const char *user, uint64_t rev,
                         const Etcdserverpb__TxnRequest *t,
                         struct keel_arena *a);

/* etcd IsAdminPermitted: 0 when auth is disabled or user has the root
 * role; KEEL_EUSEREMPTY, KEEL_EUSERNOTFOUND, KEEL_EPERMISSIONDENIED. */
int auth_store_check_admin(struct mvcc_store *s, struct mvcc_write *w,
                           const char *user, struct keel_arena *a);

/* Fill h for a request the server makes itself (the lessor revoking an
 * expired lease): user root at any auth revision, so apply's checks let it
 * through whatever the auth state (etcd: authStore.WithRoot). Clients
 * cannot forge it: the server writes every header. */
void auth_store_as_root(Keelpb__RequestHeader *h);

/* Whether req is an auth op (auth_* or authenticate). */
bool auth_store_is_op(const Keelpb__Request *req);

/* Apply, in batch w, what auth decides for a request (etcd's
 * authApplierV3), with the user and auth revision of req->header:
 *   - an auth op: the admin check (etcd needAdminPermission) then the op;
 *     returns its response (in a; header left NULL);
 *   - Put, DeleteRange, Txn, LeaseRevoke: the permission check only;
 *     returns NULL with *rv = 0 when the op may proceed;
 *   - anything else: NULL, *rv = 0.
 * On refusal *rv is etcd's error and nothing was written. */
ProtobufCMessage *auth_store_apply(struct mvcc_store *s, struct mvcc_write *w,
                                   const Keelpb__Request *req,
                                   struct keel_arena *a, int *rv);

#endif /* KEEL_AUTH_STORE_H */
