/*
 * TLS over memory BIOs for client connections.
 *
 * Happy path: conn.c feeds socket bytes with tls__feed(); tls__read() runs
 * the handshake (SSL_accept state) and then returns application data;
 * handshake records and encrypted answers collect in the write BIO and go to
 * the socket through tls__take_out(). OpenSSL never sees a file descriptor,
 * so the loop stays the only owner of the socket and back-pressure keeps
 * working on ciphertext bytes.
 *
 * Failure modes: a bad certificate file fails tls_ctx_new() with OpenSSL's
 * reason; a failed handshake (no client certificate under
 * --client-cert-auth, wrong protocol, garbage) makes tls__read() return an
 * error after queueing the alert, and the connection is closed.
 *
 * Memory: SSL_MODE_RELEASE_BUFFERS drops the record buffers of idle
 * connections, which matters with thousands of watchers.
 */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "keel_err.h"

struct tls_ctx
{
    SSL_CTX *ctx;
};

struct tls_conn
{
    SSL *ssl;
    BIO *rbio; /* ciphertext in; owned by ssl */
    BIO *wbio; /* ciphertext out; owned by ssl */
    char cn[256];
    int cn_done;
};

static void ssl_err(char *errmsg,
                    size_t errlen,
                    const char *what,
                    const char *file)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    snprintf(errmsg, errlen, "%s %s: %s", what, file != NULL ? file : "",
             e != 0 ? buf : "unknown error");
    ERR_clear_error();
}

/* Prefer h2, accept http/1.1; no overlap is not an error (HTTP/1.1 then). */
static int select_alpn(SSL *ssl,
                       const unsigned char **out,
                       unsigned char *outlen,
                       const unsigned char *in,
                       unsigned int inlen,
                       void *arg)
{
    static const unsigned char ours[] = "\x02h2\x08http/1.1";
    unsigned char *sel;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED) {
        return SSL_TLSEXT_ERR_NOACK;
    }
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

int tls_ctx_new(const struct tls_config *cfg,
                struct tls_ctx **out,
                char *errmsg,
                size_t errlen)
{
    struct tls_ctx *t;
    int rv = KEEL_EINVAL;

    if (cfg->cert_file == NULL || cfg->key_file == NULL) {
        snprintf(errmsg, errlen, "TLS needs a certificate and a key file");
        return KEEL_EINVAL;
    }
    if (cfg->client_cert_auth && cfg->trusted_ca_file == NULL) {
        snprintf(errmsg, errlen,
                 "client certificate authentication needs a trusted CA file");
        return KEEL_EINVAL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return KEEL_ENOMEM;
    }
    ERR_clear_error();
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (t->ctx == NULL) {
        ssl_err(errmsg, errlen, "TLS context", NULL);
        rv = KEEL_ENOMEM;
        goto err;
    }
    /* etcd 3.4 (Go crypto/tls defaults of its time): TLS 1.2 minimum. */
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Client-initiated renegotiation only costs us CPU (Go refuses it
     * on servers too). */
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cfg->cert_file) != 1) {
        ssl_err(errmsg, errlen, "load certificate", cfg->cert_file);
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, cfg->key_file, SSL_FILETYPE_PEM) !=
        1) {
        ssl_err(errmsg, errlen, "load key", cfg->key_file);
        goto err;
    }
    if (SSL_CTX_check_private_key(t->ctx) != 1) {
        ssl_err(errmsg, errlen, "key does not match certificate",
                cfg->cert_file);
        goto err;
    }
    if (cfg->trusted_ca_file != NULL) {
        STACK_OF(X509_NAME) * names;
        if (SSL_CTX_load_verify_locations(t->ctx, cfg->trusted_ca_file, NULL) !=
            1) {
            ssl_err(errmsg, errlen, "load trusted CA", cfg->trusted_ca_file);
            goto err;
        }
        names = SSL_load_client_CA_file(cfg->trusted_ca_file);
        if (names != NULL) {
            SSL_CTX_set_client_CA_list(t->ctx, names);
        }
        SSL_CTX_set_verify(
            t->ctx,
            cfg->client_cert_auth
                ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
                : SSL_VERIFY_PEER,
            NULL);
    }
    SSL_CTX_set_alpn_select_cb(t->ctx, select_alpn, NULL);
    *out = t;
    return 0;
err:
    SSL_CTX_free(t->ctx);
    free(t);
    return rv;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx != NULL) {
        SSL_CTX_free(ctx->ctx);
        free(ctx);
    }
}

struct tls_conn *tls__conn_new(struct tls_ctx *ctx)
{
    struct tls_conn *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return NULL;
    }
    t->ssl = SSL_new(ctx->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls__conn_free(struct tls_conn *t)
{
    if (t != NULL) {
        SSL_free(t->ssl); /* frees both BIOs */
        free(t);
    }
}

int tls__feed(struct tls_conn *t, const void *buf, size_t len)
{
    if (len > 0 && BIO_write(t->rbio, buf, (int)len) != (int)len) {
        return KEEL_ENOMEM;
    }
    return 0;
}

ssize_t tls__read(struct tls_conn *t, void *buf, size_t size)
{
    int n;
    ERR_clear_error();
    n = SSL_read(t->ssl, buf, (int)(size > 1u << 30 ? 1u << 30 : size));
    if (n > 0) {
        return n;
    }
    switch (SSL_get_error(t->ssl, n)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            return 0;
        default: /* handshake failure, bad record, close_notify */
            ERR_clear_error();
            return KEEL_EIO;
    }
}

int tls__write(struct tls_conn *t, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len > 0) {
        int n;
        ERR_clear_error();
        n = SSL_write(t->ssl, p, (int)(len > 1u << 30 ? 1u << 30 : len));
        if (n <= 0) {
            ERR_clear_error();
            return KEEL_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void *tls__take_out(struct tls_conn *t, size_t *len)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    void *buf;
    if (n == 0) {
        return NULL;
    }
    buf = malloc(n);
    if (buf == NULL) {
        return NULL;
    }
    *len = (size_t)BIO_read(t->wbio, buf, (int)n);
    return buf;
}

int tls__established(const struct tls_conn *t)
{
    return SSL_is_init_finished(t->ssl);
}

const char *tls__peer_cn(const struct tls_conn *t)
{
    struct tls_conn *m = (struct tls_conn *)t; /* memoised */
    X509 *cert;
    if (m->cn_done || !SSL_is_init_finished(t->ssl)) {
        return m->cn;
    }
    m->cn_done = 1;
    cert = SSL_get1_peer_certificate(t->ssl);
    if (cert != NULL) {
        X509_NAME *name = X509_get_subject_name(cert);
        if (name == NULL ||
            X509_NAME_get_text_by_NID(name, NID_commonName, m->cn,
                                      (int)sizeof m->cn) < 0) {
            m->cn[0] = '\0';
        }
        X509_free(cert);
    }
    return m->cn;
}
