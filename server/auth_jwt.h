/*
 * server/auth_jwt: etcd 3.4's JWT auth tokens (auth/jwt.go, options.go,
 * --auth-token jwt,pub-key=F,priv-key=F,sign-method=M,ttl=D).
 *
 * A token is header.claims.signature (base64url, no padding) with the
 * header {"alg":M,"typ":"JWT"} and the claims {"exp":unix seconds,
 * "revision":auth revision,"username":name}, as jwt-go writes them, so a
 * token etcd signed is accepted by keel and the other way round (same key).
 * Methods: RS256/384/512, PS256/384/512, ES256/384/512 (signature r||s),
 * HS256/384/512 (the priv-key file's bytes are the secret). With only a
 * public key the member verifies but cannot issue tokens.
 *
 * Pure functions over OpenSSL; no loop, no clock (callers pass now).
 */
#ifndef KEEL_AUTH_JWT_H
#define KEEL_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

struct auth_jwt;

/* opts: what follows "jwt," in --auth-token ("" for none). 0, or
 * KEEL_EINVAL with a message in errmsg (unknown sign method, unreadable or
 * missing key, mismatched keys, bad option or ttl). */
int auth_jwt_new(const char *opts, struct auth_jwt **out, char *errmsg,
                 size_t errlen);
void auth_jwt_free(struct auth_jwt *j);

/* Sign a token for user at auth revision rev, expiring ttl after now_s.
 * *out is malloc'd (the caller frees). KEEL_EINVAL for a verify-only
 * provider (etcd: ErrVerifyOnly), KEEL_ENOMEM, KEEL_EIO. */
int auth_jwt_sign(struct auth_jwt *j, const char *user, uint64_t rev,
                  int64_t now_s, char **out);

/* Check token's method, signature and expiry at now_s: 0 and the claims'
 * user (malloc'd into *user) and revision, or KEEL_EINVALIDAUTHTOKEN. */
int auth_jwt_verify(struct auth_jwt *j, const char *token, int64_t now_s,
                    char **user, uint64_t *rev);

#endif /* KEEL_AUTH_JWT_H */
