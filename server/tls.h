/*
 * TLS for the client port and the peer port: OpenSSL over memory BIOs, so
 * libuv keeps the socket and OpenSSL only transforms bytes (DESIGN.md:
 * "memory BIOs under libuv; ALPN h2"). conn.c (client port) and
 * peer_conn.c (peer port, both the accepting and the dialing side) put it
 * between the socket and the protocol:
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

/* Which end of the handshake a context serves. */
enum tls_role {
    TLS_SERVER = 0, /* accepts: SSL_accept */
    TLS_CLIENT = 1, /* dials (peer transport): SSL_connect */
};

/* etcd's TLS flags (transport.TLSInfo): --cert-file, --key-file,
 * --trusted-ca-file, --client-cert-auth, --client-crl-file,
 * --client-cert-allowed-hostname, --cipher-suites, and their --peer-*
 * forms with --peer-cert-allowed-cn. NULL and "" both mean unset. */
struct tls_config
{
    /* PEM chain and key: required for TLS_SERVER; for TLS_CLIENT
     * optional (then no client certificate is offered, as etcd's
     * TLSInfo.ClientConfig with an empty TLSInfo). */
    const char *cert_file;
    const char *key_file;
    const char *trusted_ca_file; /* PEM CAs for client certs, may be NULL */
    /* Require a client certificate that verifies against trusted_ca_file
     * (the system's CAs without one). etcd also requires one whenever a
     * trusted CA file is given (transport.TLSInfo.ServerConfig); that rule
     * is the caller's (server.c), this flag is taken literally. */
    int client_cert_auth;
    /* Refuse client certificates whose serial this CRL lists (etcd's
     * checkCRL: serials only, the CRL's signature is not checked). */
    const char *crl_file;
    /* Refuse certificates not valid for this host name or IP (etcd:
     * "client certificate authentication failed"). Checked on both ends,
     * as etcd's TLSInfo.baseConfig (VerifyPeerCertificate) does. */
    const char *allowed_hostname;
    /* Refuse certificates whose subject CN is not exactly this (etcd
     * --peer-cert-allowed-cn; exclusive with allowed_hostname). Both
     * ends. */
    const char *allowed_cn;
    enum tls_role role;
    /* TLS_CLIENT: do not verify the server's certificate (etcd does so
     * for its self-signed --peer-auto-tls certificates). */
    int insecure_skip_verify;
    /* Keep each connection's record buffers (~34 KiB) instead of freeing
     * them whenever it is idle: for a few busy connections (the peer
     * port), where the reallocation per record costs throughput. */
    int keep_buffers;
    /* OpenSSL cipher list for TLS 1.2 (tls_cipher_list()); NULL: OpenSSL's
     * defaults. TLS 1.3 suites are never restricted, as in Go. */
    const char *cipher_list;
};

struct tls_ctx;
struct tls_conn;

/* Load certificates. Returns 0 or a negative code with errmsg filled with
 * the text etcd (Go) prints for the same failure: "open <path>: no such
 * file or directory", "tls: failed to find any PEM data in certificate
 * input", "tls: private key does not match public key", ... */
int tls_ctx_new(const struct tls_config *cfg,
                struct tls_ctx **out,
                char *errmsg,
                size_t errlen);
void tls_ctx_free(struct tls_ctx *ctx);

/* Map etcd's --cipher-suites names (Go's crypto/tls names, e.g.
 * TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) to an OpenSSL cipher list in out.
 * Returns 0, or -1 with etcd's message in errmsg ("unexpected TLS cipher
 * suite \"X\""). */
int tls_cipher_list(const char *const *names,
                    size_t n,
                    char *out,
                    size_t outlen,
                    char *errmsg,
                    size_t errlen);

/* etcd's --auto-tls (transport.SelfCert): make sure dir/cert.pem and
 * dir/key.pem exist; when either is missing, create dir (0700) and write a
 * new self-signed ECDSA P-521 certificate valid for one year (subject
 * O=etcd, server auth, SANs from hosts: "host:port" strings, IP literals
 * become IP SANs, names DNS SANs) and its key (0600). *created is set to 1
 * when files were written. Returns 0 or -1 with errmsg filled. */
int tls_self_cert(const char *dir,
                  const char *const *hosts,
                  size_t n,
                  int *created,
                  char *errmsg,
                  size_t errlen);

/* Whether the first byte a client sent starts a TLS record (a handshake:
 * 0x16); listeners serving TLS and plaintext on one port decide on it. */
static inline int tls_is_handshake_byte(unsigned char b)
{
    return b == 0x16;
}

/* Per-connection state, server side (ctx of role TLS_SERVER). NULL on OOM.
 * Reloads the certificate, key and CRL first when their files changed
 * since they were loaded (a failed reload is logged and the previous ones
 * stay). */
struct tls_conn *tls__conn_new(struct tls_ctx *ctx);
/* Client side (ctx of role TLS_CLIENT): the server's certificate must be
 * valid for host (a DNS name, sent as SNI, or an IP literal), as Go's
 * http.Transport checks the URL's host, unless insecure_skip_verify. The
 * first tls__read() produces the ClientHello. NULL on OOM. */
struct tls_conn *tls__conn_new_client(struct tls_ctx *ctx, const char *host);
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

/* Queue a close_notify alert (take it with tls__take_out): a graceful
 * close tells the client the stream ended where it did (Go's TLS stack
 * sends one; OpenSSL 3 clients report an "unexpected eof" otherwise). */
void tls__close_notify(struct tls_conn *t);
/* The same without a buffer of its own: how many bytes wait, and copy up
 * to len of them into buf (returns how many). */
size_t tls__pending_out(const struct tls_conn *t);
size_t tls__take_out_into(struct tls_conn *t, void *buf, size_t len);
/* Why the last tls__read() failed, in Go's words where etcd logs them
 * ("tls: client didn't provide a certificate", "tls: first record does not
 * look like a TLS handshake", "x509: certificate signed by unknown
 * authority", ...). Server side: "" when the client ended the handshake
 * with an alert (etcd logs nothing then); client side: an alert from the
 * server reads "remote error: tls: bad certificate" (Go's text). */
const char *tls__error(const struct tls_conn *t);
/* etcd's log line for a connection refused at the TLS level
 * (embed/config.go logTLSHandshakeFailure): "rejected connection from
 * \"addr\" (error \"...\", ServerName \"\")", or the zap form. err: the
 * reason (NULL: tls__error()). */
void tls__log_rejected(const struct tls_conn *t,
                       const char *addr,
                       const char *err);
/* etcd's checkSAN on the peer listener (pkg/transport/listener_tls.go),
 * after the handshake: a client certificate with IP or DNS SANs must name
 * the address it connects from. Returns 0 (no SANs, or an IP SAN equal to
 * ip), -1 with Go's error in err (IP SANs only, none matches), or the
 * number n > 0 of DNS names copied to names[0..n) (at most max): the
 * caller resolves them and accepts when one resolves to ip, else fails
 * with the message tls__san_dns_error() writes. */
int tls__check_san(const struct tls_conn *t,
                   const char *ip,
                   char names[][256],
                   size_t max,
                   char *err,
                   size_t errlen);
void tls__san_dns_error(const struct tls_conn *t,
                        const char *ip,
                        char *err,
                        size_t errlen);
/* Whether the handshake finished. */
int tls__established(const struct tls_conn *t);
/* The client certificate's common name ("" without one); etcd uses it as
 * the user name with --client-cert-auth. */
const char *tls__peer_cn(const struct tls_conn *t);

#endif /* KEEL_TLS_H */
