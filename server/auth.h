/*
 * server/auth: the etcdserverpb.Auth service, the simple-token table and the
 * request-time auth checks the other services call (etcd 3.4:
 * etcdserver/v3_server.go, auth/store.go, auth/simple_token.go,
 * v3rpc/maintenance.go, v3rpc/watch.go).
 *
 * Who makes a call: the gRPC metadata "token" (then "authorization", what
 * the JSON gateway passes) names a simple token; without one, under
 * --client-cert-auth, the common name of the client's certificate is the
 * user (etcd AuthInfoFromTLS); else there is no user.
 * A token that is not in the table (unknown, expired, or auth disabled
 * since) fails the call with "etcdserver: invalid auth token", whether or
 * not auth is enabled, as etcd does.
 *
 * Where the checks happen, as in etcd:
 *   Range, read-only Txn, Watch create: here, at request time
 *     (auth_check_range / auth_check_txn / auth_check_key);
 *   Put, DeleteRange, Txn, LeaseRevoke, every auth change: at apply time
 *     (auth_store_apply) with the user and auth revision the proposer put
 *     in the request header (auth_propose_header);
 *   Hash, HashKV, Snapshot, Defragment: root only (auth_check_admin).
 *
 * Tokens (--auth-token simple): "<16 random letters>.<n>", chosen by the
 * member that checked the password and replicated through raft (keelpb
 * Authenticate), so every member accepts it. A token lives --auth-token-ttl
 * seconds (300) after its last use. Deleting a user or changing its
 * password drops its tokens; disabling auth drops them all.
 *
 * Tokens (--auth-token jwt,...): server/auth_jwt.h; stateless, the user and
 * auth revision come from the token's claims, as in etcd.
 *
 * Passwords: bcrypt ("$2b$", --bcrypt-cost, 10) computed on libuv's thread
 * pool, never on the loop; the proposer hashes, so apply only stores.
 *
 * Everything else runs on the loop thread.
 */
#ifndef KEEL_AUTH_H
#define KEEL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keelpb/request.pb-c.h"

struct auth;
struct grpc_call;
struct grpc_server;
struct keel_config;
struct keel_server;

/* Token table and settings from cfg (--auth-token, --auth-token-ttl,
 * --bcrypt-cost; a cost outside 4..31 is replaced by 10 with a warning, as
 * etcd does). KEEL_EINVAL with a message for a token type keel does not
 * implement. */
int auth_new(struct keel_server *s, const struct keel_config *cfg,
             struct auth **out, char *errmsg, size_t errlen);
void auth_free(struct auth *au);

/* The node applied req (resp is its response): keeps the token table and
 * the cached enabled flag / auth revision in step. */
void auth_on_applied(struct auth *au, const Keelpb__Request *req,
                     const ProtobufCMessage *resp);

/* The store was replaced under the server (a snapshot from the leader was
 * installed, without auth_on_applied calls): re-read the enabled flag and
 * the auth revision before the next check (etcd: authStore.Recover).
 * Simple tokens stay; one issued in the entries the snapshot covers is
 * unknown here and its client re-authenticates. */
void auth_reload(struct auth *au);

/* Register etcdserverpb.Auth on g (uses server_auth(s)). */
int auth_register(struct keel_server *s, struct grpc_server *g);

/* Put the caller's user and the current auth revision in kreq's header
 * (hdr, borrowed until node_propose returns) for the apply-time checks.
 * KEEL_EINVALIDAUTHTOKEN. */
int auth_propose_header(struct auth *au, struct grpc_call *call,
                        Keelpb__Request *kreq, Keelpb__RequestHeader *hdr);

/* Request-time checks; 0 when permitted (or auth disabled). */
int auth_check_range(struct auth *au, struct grpc_call *call,
                     const ProtobufCBinaryData *key,
                     const ProtobufCBinaryData *range_end);
int auth_check_key(struct auth *au, struct grpc_call *call,
                   const uint8_t *key, size_t key_len,
                   const uint8_t *range_end, size_t range_end_len);
int auth_check_txn(struct auth *au, struct grpc_call *call,
                   const Etcdserverpb__TxnRequest *txn);
int auth_check_admin(struct auth *au, struct grpc_call *call);
/* auth_check_admin for etcd's maintenance service, which answers the auth
 * package's own errors (code Unknown, "auth: permission denied"): fails
 * the call itself when it returns non-zero. */
int auth_check_admin_raw(struct auth *au, struct grpc_call *call);

/* ---- building blocks (unit-tested) -------------------------------------- */

/* bcrypt: hash password with a fresh salt at cost into out (>= 128 bytes):
 * 0, KEEL_EINVAL (cost outside 4..31), KEEL_ENOMEM, KEEL_EIO (no random
 * source). */
int auth_bcrypt_hash(const char *password, unsigned cost, char *out,
                     size_t outlen);
/* 0 when password matches hash; KEEL_EAUTHFAILED otherwise (a malformed
 * hash included). */
int auth_bcrypt_verify(const char *password, const char *hash);

/* Whether token has the simple token's form "<16 letters>.<decimal>"
 * (etcd isValidSimpleToken): 0 or KEEL_EINVALIDAUTHTOKEN. */
int auth_token_check_format(const char *token);

/* --auth-token value: AUTH_TOKEN_SIMPLE for "simple" (options after ','
 * ignored as etcd does), AUTH_TOKEN_JWT for "jwt[,options]", KEEL_EINVAL
 * otherwise. */
enum { AUTH_TOKEN_SIMPLE = 0, AUTH_TOKEN_JWT = 1 };
int auth_token_type_check(const char *spec);

#endif /* KEEL_AUTH_H */
