/*
 * TLS for client connections: OpenSSL over memory BIOs, so libuv keeps the
 * socket and OpenSSL only transforms bytes (DESIGN.md: "memory BIOs under
 * libuv; ALPN h2"). conn.c puts it between the socket and the protocol:
 *
 *   socket ──ciphertext──▶ tls__feed ─▶ tls__read ──plaintext──▶ sniff/proto
 *   proto ──plaintext──▶ tls__write ─▶ tls__take_out ──ciphertext──▶ socket
 *
 * ALPN: "h2" is selected when the client offers it (grpc-go, curl --http2),
 * else "http/1.1"; the protocol is still chosen by sniffing the plaintext,
 * which agrees with ALPN for every conforming client.
 */
#ifndef KEEL_TLS_H
#define KEEL_TLS_H

#include <stddef.h>
#include <sys/types.h>

/* etcd's client TLS flags: --cert-file, --key-file, --trusted-ca-file,
 * --client-cert-auth. */
struct tls_config
{
    const char *cert_file;       /* PEM chain, required */
    const char *key_file;        /* PEM key, required */
    const char *trusted_ca_file; /* PEM CAs for client certs, may be NULL */
    int client_cert_auth;        /* require a client cert signed by them */
};

struct tls_ctx;
struct tls_conn;

/* Load certificates. Returns 0 or a negative code with errmsg filled. */
int tls_ctx_new(const struct tls_config *cfg,
                struct tls_ctx **out,
                char *errmsg,
                size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

/* Per-connection state (server side). NULL on OOM. */
struct tls_conn *tls__conn_new(struct tls_ctx *ctx);
void tls__conn_free(struct tls_conn *t);

/* Ciphertext from the socket. Returns 0 or KEEL_ENOMEM. */
int tls__feed(struct tls_conn *t, const void *buf, size_t len);
/* Plaintext for the protocol (drives the handshake): > 0 bytes, 0 when
 * more ciphertext is needed, < 0 on a TLS error (handshake failure, bad
 * record, close_notify): close the connection after sending what
 * tls__take_out() has. */
ssize_t tls__read(struct tls_conn *t, void *buf, size_t size);
/* Encrypt plaintext. Returns 0 or a negative code. */
int tls__write(struct tls_conn *t, const void *buf, size_t len);
/* Ciphertext waiting for the socket: a malloc'd buffer for
 * conn_write_take(), or NULL when there is none. */
void *tls__take_out(struct tls_conn *t, size_t *len);
/* Whether the handshake finished. */
int tls__established(const struct tls_conn *t);
/* The client certificate's common name ("" without one); etcd uses it as
 * the user name with --client-cert-auth. */
const char *tls__peer_cn(const struct tls_conn *t);

#endif /* KEEL_TLS_H */
