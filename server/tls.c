/*
 * TLS over memory BIOs, for the client port (server side) and the peer
 * port (both sides: a member accepts and dials).
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
 * Rotation: like etcd (which reads the files at every handshake), a new
 * connection first reloads the certificate, key and CRL if their files
 * changed (stat: inode, size, mtime); a pair that does not load (half
 * written, key not yet matching) leaves the previous one in service.
 *
 * Memory: SSL_MODE_RELEASE_BUFFERS drops the record buffers of idle
 * connections, which matters with thousands of watchers.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "keel_err.h"
#include "log.h"

/* What a file looked like when it was loaded: a change of any field means
 * it was replaced or rewritten. */
struct file_stamp
{
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct tls_ctx
{
    SSL_CTX *ctx;
    enum tls_role role;
    X509_CRL *crl;           /* --client-crl-file, NULL without */
    char *allowed_hostname;  /* --client-cert-allowed-hostname, NULL without */
    char *allowed_cn;        /* --peer-cert-allowed-cn, NULL without */
    /* Reloading (tls__conn_new): etcd reads the certificate, key and CRL
     * again for every handshake, so operators rotate them in place; keel
     * reloads them when their files change. */
    char *cert_file, *key_file, *crl_file;
    struct file_stamp cert_st, key_st, crl_st;
};

struct tls_conn
{
    SSL *ssl;
    BIO *rbio; /* ciphertext in; owned by ssl */
    BIO *wbio; /* ciphertext out; owned by ssl */
    char cn[256];
    int cn_done;
    char err[560]; /* why the handshake failed (tls__error) */
    /* Set by verify_cb: the certificate passed OpenSSL's chain checks but
     * failed etcd's own (CRL serial, allowed hostname or CN). */
    const char *reject;
    /* Set by verify_cb at the first chain failure: Go's x509 text. */
    char verr[480];
    char host[256]; /* client side: the name the server must be valid for */
};

static int is_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

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

/* Go's crypto/tls names (etcd --cipher-suites, pkg/tlsutil) and OpenSSL's
 * names for the same TLS 1.2 suites. The TLS 1.3 names are accepted as Go
 * does; Go never applies them (1.3 suites are not configurable), so they
 * add nothing to the OpenSSL list. */
static const struct
{
    const char *go, *ossl;
} cipher_map[] = {
    {"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
     "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
     "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
     "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
     "ECDHE-ECDSA-CHACHA20-POLY1305"},
    /* pkg/tlsutil's aliases */
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
     "ECDHE-ECDSA-CHACHA20-POLY1305"},
    {"TLS_AES_128_GCM_SHA256", NULL},
    {"TLS_AES_256_GCM_SHA384", NULL},
    {"TLS_CHACHA20_POLY1305_SHA256", NULL},
};

int tls_cipher_list(const char *const *names,
                    size_t n,
                    char *out,
                    size_t outlen,
                    char *errmsg,
                    size_t errlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t j;
        for (j = 0; j < sizeof cipher_map / sizeof cipher_map[0]; j++) {
            if (strcmp(names[i], cipher_map[j].go) == 0) {
                break;
            }
        }
        if (j == sizeof cipher_map / sizeof cipher_map[0]) {
            snprintf(errmsg, errlen, "unexpected TLS cipher suite \"%s\"",
                     names[i]);
            return -1;
        }
        if (cipher_map[j].ossl != NULL) {
            int w = snprintf(out + o, outlen - o, "%s%s", o > 0 ? ":" : "",
                             cipher_map[j].ossl);
            if (w < 0 || (size_t)w >= outlen - o) {
                snprintf(errmsg, errlen, "too many TLS cipher suites");
                return -1;
            }
            o += (size_t)w;
        }
    }
    return 0;
}

/* Fill *st from path; false when it cannot be stat'ed (then nothing is
 * reloaded: a file being replaced is briefly absent). */
static bool stamp(const char *path, struct file_stamp *st)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        return false;
    }
    st->dev = sb.st_dev;
    st->ino = sb.st_ino;
    st->size = sb.st_size;
    st->mtime = sb.st_mtim;
    return true;
}

static bool stamp_equal(const struct file_stamp *a, const struct file_stamp *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec &&
           a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* Read a whole file, as Go's ioutil.ReadFile; on failure errmsg gets Go's
 * "open <path>: <reason>". */
static BIO *read_file(const char *path, char *errmsg, size_t errlen)
{
    char eb[128];
    FILE *f = fopen(path, "rb");
    BIO *b;
    char buf[4096];
    size_t n;
    if (f == NULL) {
        snprintf(errmsg, errlen, "open %s: %s", path,
                 config_go_strerror(errno, eb, sizeof eb));
        return NULL;
    }
    b = BIO_new(BIO_s_mem());
    if (b != NULL) {
        /* BIO_reset() rewinds instead of discarding (re-parsing on error) */
        BIO_set_flags(b, BIO_FLAGS_NONCLEAR_RST);
    }
    while (b != NULL && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (BIO_write(b, buf, (int)n) != (int)n) {
            BIO_free(b);
            b = NULL;
        }
    }
    if (b != NULL && ferror(f)) {
        snprintf(errmsg, errlen, "read %s: %s", path,
                 config_go_strerror(errno != 0 ? errno : EIO, eb, sizeof eb));
        BIO_free(b);
        b = NULL;
    } else if (b == NULL) {
        snprintf(errmsg, errlen, "read %s: out of memory", path);
    }
    fclose(f);
    return b;
}

/* The PEM block types in b other than want (a type, or a suffix when want
 * starts with a space), as Go's skippedBlockTypes: "[A B]". Returns how
 * many; *only_one_suffix tells whether the single skipped type ends with
 * suffix. */
static int skipped_types(BIO *b, const char *want, const char *suffix,
                         char *out, size_t outlen, int *only_match)
{
    char *data;
    long len = BIO_get_mem_data(b, &data);
    const char *p = data, *end = data + (len > 0 ? len : 0);
    size_t o = 0;
    int n = 0;
    *only_match = 0;
    snprintf(out, outlen, "[");
    o = 1;
    while (p < end) {
        const char *beg = memmem(p, (size_t)(end - p), "-----BEGIN ", 11);
        const char *stop;
        size_t tl;
        if (beg == NULL) {
            break;
        }
        beg += 11;
        stop = memmem(beg, (size_t)(end - beg), "-----", 5);
        if (stop == NULL) {
            break;
        }
        tl = (size_t)(stop - beg);
        p = stop + 5;
        if ((want[0] == ' ' && tl >= strlen(want) &&
             memcmp(stop - strlen(want), want, strlen(want)) == 0) ||
            (tl == strlen(want) && memcmp(beg, want, tl) == 0)) {
            continue;
        }
        n++;
        *only_match = n == 1 && tl >= strlen(suffix) &&
                      memcmp(stop - strlen(suffix), suffix, strlen(suffix)) ==
                          0;
        if (o < outlen) {
            o += (size_t)snprintf(out + o, outlen - o, "%s%.*s",
                                  n > 1 ? " " : "", (int)tl, beg);
        }
    }
    if (o < outlen) {
        snprintf(out + o, outlen - o, "]");
    }
    if (n > 1) {
        *only_match = 0;
    }
    return n;
}

/* Certificate chain and key, with Go's tls.X509KeyPair error texts (etcd
 * reads both files before parsing either, so a missing key file is
 * reported even when the certificate is bad). */
static int load_pair(SSL_CTX *ctx,
                     const char *cert_file,
                     const char *key_file,
                     char *errmsg,
                     size_t errlen)
{
    BIO *cb = read_file(cert_file, errmsg, errlen), *kb = NULL;
    X509 *leaf = NULL, *extra;
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    int rv = -1;

    if (cb == NULL || (kb = read_file(key_file, errmsg, errlen)) == NULL) {
        goto out;
    }
    leaf = PEM_read_bio_X509(cb, NULL, NULL, NULL);
    if (leaf == NULL) {
        char types[256];
        int one, n;
        (void)BIO_reset(cb);
        n = skipped_types(cb, "CERTIFICATE", "PRIVATE KEY", types,
                          sizeof types, &one);
        if (n == 0) {
            snprintf(errmsg, errlen,
                     "tls: failed to find any PEM data in certificate input");
        } else if (one) {
            snprintf(errmsg, errlen,
                     "tls: failed to find certificate PEM data in "
                     "certificate input, but did find a private key; PEM "
                     "inputs may have been switched");
        } else {
            snprintf(errmsg, errlen,
                     "tls: failed to find \"CERTIFICATE\" PEM block in "
                     "certificate input after skipping PEM blocks of the "
                     "following types: %s",
                     types);
        }
        goto out;
    }
    key = PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL);
    if (key == NULL) {
        char types[256];
        int one, n;
        (void)BIO_reset(kb);
        n = skipped_types(kb, " PRIVATE KEY", "CERTIFICATE", types,
                          sizeof types, &one);
        if (n == 0) {
            snprintf(errmsg, errlen,
                     "tls: failed to find any PEM data in key input");
        } else if (one) {
            snprintf(errmsg, errlen,
                     "tls: found a certificate rather than a key in the PEM "
                     "for the private key");
        } else {
            snprintf(errmsg, errlen,
                     "tls: failed to find PEM block with type ending in "
                     "\"PRIVATE KEY\" in key input after skipping PEM "
                     "blocks of the following types: %s",
                     types);
        }
        goto out;
    }
    if (X509_check_private_key(leaf, key) != 1) {
        snprintf(errmsg, errlen, "tls: private key does not match public key");
        goto out;
    }
    if ((chain = sk_X509_new_null()) == NULL) {
        snprintf(errmsg, errlen, "tls: out of memory");
        goto out;
    }
    while ((extra = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(chain, extra) <= 0) {
            X509_free(extra);
            snprintf(errmsg, errlen, "tls: out of memory");
            goto out;
        }
    }
    /* Everything parsed and matches: only now replace what ctx serves, so
     * a failed reload leaves the previous pair in place. */
    if (SSL_CTX_use_certificate(ctx, leaf) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_set1_chain(ctx, chain) != 1) {
        snprintf(errmsg, errlen, "tls: private key does not match public key");
        goto out;
    }
    rv = 0;
out:
    ERR_clear_error();
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
    EVP_PKEY_free(key);
    BIO_free(cb);
    BIO_free(kb);
    return rv;
}

/* Trusted CAs (Go: tlsutil.NewCertPool): every PEM block must parse. Their
 * names are also sent in the CertificateRequest, as Go does. */
static int load_cas(SSL_CTX *ctx, const char *path, char *errmsg,
                    size_t errlen)
{
    BIO *b = read_file(path, errmsg, errlen);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509 *x;
    int rv = -1;
    if (b == NULL || names == NULL) {
        goto out;
    }
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
        if (X509_STORE_add_cert(store, x) != 1 || nm == NULL ||
            sk_X509_NAME_push(names, nm) <= 0) {
            X509_NAME_free(nm);
            X509_free(x);
            snprintf(errmsg, errlen, "x509: failed to add CA from %s", path);
            goto out;
        }
        X509_free(x);
    }
    /* The loop ends at EOF (no more PEM) or at a block that is not a
     * certificate: only the first is fine. */
    if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
        snprintf(errmsg, errlen, "x509: malformed certificate");
        goto out;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    names = NULL;
    rv = 0;
out:
    ERR_clear_error();
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    BIO_free(b);
    return rv;
}

/* The certificate's IP (ip != 0) or DNS SANs, ", "-separated as Go
 * joins them; returns how many. */
static int san_text(X509 *cert, int ip, char *out, size_t outlen)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL,
                                           NULL);
    size_t o = 0;
    int n = 0;
    out[0] = '\0';
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char buf[INET6_ADDRSTRLEN] = "";
        const char *v = NULL;
        if (ip && g->type == GEN_IPADD) {
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            if (len == 4 || len == 16) {
                v = inet_ntop(len == 4 ? AF_INET : AF_INET6, d, buf,
                              sizeof buf);
            }
        } else if (!ip && g->type == GEN_DNS) {
            v = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        }
        if (v != NULL && o < outlen) {
            int w = snprintf(out + o, outlen - o, "%s%s", n > 0 ? ", " : "",
                             v);
            o += w > 0 ? (size_t)w : 0;
            n++;
        }
    }
    GENERAL_NAMES_free(gens);
    return n;
}

/* Go's crypto/x509 words for a failed verification (what etcd logs). */
static void go_x509_error(struct tls_conn *c, int err, X509 *cert)
{
    char names[160];
    unsigned char bin[16];
    bool ip = inet_pton(AF_INET, c->host, bin) == 1 ||
              inet_pton(AF_INET6, c->host, bin) == 1;
    switch (err) {
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
        case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
        case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        case X509_V_ERR_CERT_SIGNATURE_FAILURE:
            snprintf(c->verr, sizeof c->verr,
                     "x509: certificate signed by unknown authority");
            break;
        case X509_V_ERR_CERT_HAS_EXPIRED:
        case X509_V_ERR_CERT_NOT_YET_VALID:
            snprintf(c->verr, sizeof c->verr,
                     "x509: certificate has expired or is not yet valid");
            break;
        case X509_V_ERR_INVALID_PURPOSE:
            snprintf(c->verr, sizeof c->verr,
                     "x509: certificate specifies an incompatible key usage");
            break;
        case X509_V_ERR_HOSTNAME_MISMATCH:
        case X509_V_ERR_IP_ADDRESS_MISMATCH:
            if (cert != NULL && san_text(cert, ip, names, sizeof names) > 0) {
                snprintf(c->verr, sizeof c->verr,
                         "x509: certificate is valid for %s, not %s", names,
                         c->host);
            } else if (ip) {
                snprintf(c->verr, sizeof c->verr,
                         "x509: cannot validate certificate for %s because "
                         "it doesn't contain any IP SANs",
                         c->host);
            } else {
                snprintf(c->verr, sizeof c->verr,
                         "x509: certificate is not valid for any names, but "
                         "wanted to match %s",
                         c->host);
            }
            break;
        default:
            snprintf(c->verr, sizeof c->verr, "x509: %s",
                     X509_verify_cert_error_string(err));
    }
}

/* etcd's checks beyond chain verification, on the leaf (depth 0):
 * --client-crl-file (checkCRL in pkg/transport/listener_tls.go),
 * --client-cert-allowed-hostname and --peer-cert-allowed-cn
 * (TLSInfo.baseConfig). Also keeps Go's text of the first chain failure. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl;
    struct tls_ctx *t;
    struct tls_conn *c;
    X509 *cert;
    ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    c = SSL_get_app_data(ssl);
    cert = X509_STORE_CTX_get_current_cert(xs);
    if (!ok && c != NULL && c->verr[0] == '\0') {
        go_x509_error(c, X509_STORE_CTX_get_error(xs), cert);
    }
    if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0) {
        return ok;
    }
    if (t == NULL || c == NULL || cert == NULL) {
        return ok;
    }
    if (t->crl != NULL) {
        X509_REVOKED *r = NULL;
        if (X509_CRL_get0_by_serial(t->crl, &r,
                                    X509_get0_serialNumber(cert)) == 1) {
            /* Go: fmt.Errorf("transport: certificate serial %x revoked") */
            BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
            char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
            for (char *p = hex; p != NULL && *p != '\0'; p++) {
                *p = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
            }
            snprintf(c->verr, sizeof c->verr,
                     "transport: certificate serial %s revoked",
                     hex != NULL ? hex : "");
            OPENSSL_free(hex);
            BN_free(bn);
            c->reject = c->verr;
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REVOKED);
            return 0;
        }
    }
    if (t->allowed_hostname != NULL) {
        int match = X509_check_ip_asc(cert, t->allowed_hostname, 0);
        if (match < 0) { /* not an IP literal: a DNS name */
            match = X509_check_host(cert, t->allowed_hostname, 0, 0, NULL);
        }
        if (match != 1) {
            c->reject = "client certificate authentication failed";
            /* the alert Go sends: bad_certificate */
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
            return 0;
        }
    }
    if (t->allowed_cn != NULL) {
        char cn[256] = "";
        X509_NAME *nm = X509_get_subject_name(cert);
        if (nm == NULL ||
            X509_NAME_get_text_by_NID(nm, NID_commonName, cn, sizeof cn) < 0 ||
            strcmp(cn, t->allowed_cn) != 0) {
            c->reject = "client certificate authentication failed";
            /* the alert Go sends: bad_certificate */
            X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REJECTED);
            return 0;
        }
    }
    return ok;
}

static int load_crl(struct tls_ctx *t, const char *path, char *errmsg,
                    size_t errlen)
{
    BIO *b = read_file(path, errmsg, errlen);
    if (b == NULL) {
        return -1;
    }
    X509_CRL *crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
    if (crl == NULL) { /* Go's x509.ParseCRL also takes DER */
        (void)BIO_reset(b);
        crl = d2i_X509_CRL_bio(b, NULL);
    }
    BIO_free(b);
    ERR_clear_error();
    if (crl == NULL) {
        snprintf(errmsg, errlen, "x509: malformed crl");
        return -1;
    }
    X509_CRL_free(t->crl);
    t->crl = crl;
    return 0;
}

int tls_ctx_new(const struct tls_config *cfg,
                struct tls_ctx **out,
                char *errmsg,
                size_t errlen)
{
    struct tls_ctx *t;
    int rv = KEEL_EINVAL;
    bool client = cfg->role == TLS_CLIENT;
    /* A client without a certificate offers none (TLSInfo.Empty). */
    bool pair = !client || is_set(cfg->cert_file) || is_set(cfg->key_file);

    if (pair && (!is_set(cfg->cert_file) || !is_set(cfg->key_file))) {
        /* etcd: TLSInfo.baseConfig */
        snprintf(errmsg, errlen,
                 "KeyFile and CertFile must both be present[key: %s, cert: "
                 "%s]",
                 cfg->key_file != NULL ? cfg->key_file : "",
                 cfg->cert_file != NULL ? cfg->cert_file : "");
        return KEEL_EINVAL;
    }
    if (pair && is_set(cfg->allowed_cn) && is_set(cfg->allowed_hostname)) {
        snprintf(errmsg, errlen,
                 "AllowedCN and AllowedHostname are mutually exclusive "
                 "(cn=\"%s\", hostname=\"%s\")",
                 cfg->allowed_cn, cfg->allowed_hostname);
        return KEEL_EINVAL;
    }
    t = calloc(1, sizeof *t);
    if (t == NULL) {
        return KEEL_ENOMEM;
    }
    t->role = cfg->role;
    ERR_clear_error();
    t->ctx = SSL_CTX_new(client ? TLS_client_method() : TLS_server_method());
    if (t->ctx == NULL) {
        ssl_err(errmsg, errlen, "TLS context", NULL);
        rv = KEEL_ENOMEM;
        goto err;
    }
    SSL_CTX_set_app_data(t->ctx, t);
    /* etcd 3.4: MinVersion tls.VersionTLS12 (TLSInfo.baseConfig). */
    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
    if (!cfg->keep_buffers) {
        SSL_CTX_set_mode(t->ctx, SSL_MODE_RELEASE_BUFFERS);
    }
    /* Client-initiated renegotiation only costs us CPU (Go refuses it
     * on servers too). */
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION);
    if (pair) {
        t->cert_file = strdup(cfg->cert_file);
        t->key_file = strdup(cfg->key_file);
        if (t->cert_file == NULL || t->key_file == NULL) {
            rv = KEEL_ENOMEM;
            goto err;
        }
        stamp(t->cert_file, &t->cert_st);
        stamp(t->key_file, &t->key_st);
        if (load_pair(t->ctx, cfg->cert_file, cfg->key_file, errmsg,
                      errlen) != 0) {
            goto err;
        }
    }
    if (is_set(cfg->cipher_list) &&
        SSL_CTX_set_cipher_list(t->ctx, cfg->cipher_list) != 1) {
        ssl_err(errmsg, errlen, "cipher suites", cfg->cipher_list);
        goto err;
    }
    if (is_set(cfg->trusted_ca_file)) {
        if (load_cas(t->ctx, cfg->trusted_ca_file, errmsg, errlen) != 0) {
            goto err;
        }
    } else if (cfg->client_cert_auth || (client && !cfg->insecure_skip_verify)) {
        /* Go verifies against the system pool when ClientCAs is nil. */
        SSL_CTX_set_default_verify_paths(t->ctx);
    }
    if (is_set(cfg->crl_file)) {
        if ((t->crl_file = strdup(cfg->crl_file)) == NULL) {
            rv = KEEL_ENOMEM;
            goto err;
        }
        stamp(t->crl_file, &t->crl_st);
        if (load_crl(t, cfg->crl_file, errmsg, errlen) != 0) {
            goto err;
        }
    }
    if ((is_set(cfg->allowed_hostname) &&
         (t->allowed_hostname = strdup(cfg->allowed_hostname)) == NULL) ||
        (is_set(cfg->allowed_cn) &&
         (t->allowed_cn = strdup(cfg->allowed_cn)) == NULL)) {
        rv = KEEL_ENOMEM;
        goto err;
    }
    if (client) {
        /* Go's client verifies the server unless InsecureSkipVerify, and
         * runs VerifyPeerCertificate (allowed CN / hostname) either way;
         * with verification off keel skips those too. */
        if (!cfg->insecure_skip_verify) {
            SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_cb);
        }
        *out = t;
        return 0;
    }
    if (cfg->client_cert_auth) {
        SSL_CTX_set_verify(t->ctx,
                           SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           verify_cb);
    } else if (is_set(cfg->trusted_ca_file)) {
        /* Ask for a certificate, verify one if given. */
        SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, verify_cb);
    }
    SSL_CTX_set_alpn_select_cb(t->ctx, select_alpn, NULL);
    *out = t;
    return 0;
err:
    tls_ctx_free(t);
    return rv;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
    if (ctx != NULL) {
        SSL_CTX_free(ctx->ctx);
        X509_CRL_free(ctx->crl);
        free(ctx->allowed_hostname);
        free(ctx->allowed_cn);
        free(ctx->cert_file);
        free(ctx->key_file);
        free(ctx->crl_file);
        free(ctx);
    }
}

/* Load again whatever changed on disk since it was loaded. A file caught
 * half-written (or a key not yet matching its new certificate) fails to
 * load: the previous one keeps being served and the next connection tries
 * again (etcd fails the handshake instead). */
static void reload_changed(struct tls_ctx *ctx)
{
    struct file_stamp c = ctx->cert_st, k = ctx->key_st, r;
    char err[256];
    bool pair = false;
    if (ctx->cert_file != NULL) {
        pair = stamp(ctx->cert_file, &c) && !stamp_equal(&c, &ctx->cert_st);
        pair |= stamp(ctx->key_file, &k) && !stamp_equal(&k, &ctx->key_st);
    }
    if (pair) {
        if (load_pair(ctx->ctx, ctx->cert_file, ctx->key_file, err,
                      sizeof err) == 0) {
            ctx->cert_st = c;
            ctx->key_st = k;
            log_info("embed", "reloaded TLS certificate %s, key %s",
                     ctx->cert_file, ctx->key_file);
        } else {
            log_warn("embed",
                     "failed to reload TLS certificate %s, key %s "
                     "(%s); still serving the previous one",
                     ctx->cert_file, ctx->key_file, err);
        }
    }
    if (ctx->crl_file != NULL && stamp(ctx->crl_file, &r) &&
        !stamp_equal(&r, &ctx->crl_st)) {
        if (load_crl(ctx, ctx->crl_file, err, sizeof err) == 0) {
            ctx->crl_st = r;
        } else {
            log_warn("embed",
                     "failed to reload CRL %s (%s); still using the "
                     "previous one",
                     ctx->crl_file, err);
        }
    }
}

static struct tls_conn *conn_new(struct tls_ctx *ctx)
{
    struct tls_conn *t;
    reload_changed(ctx);
    t = calloc(1, sizeof *t);
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
    SSL_set_app_data(t->ssl, t);
    return t;
}

struct tls_conn *tls__conn_new(struct tls_ctx *ctx)
{
    struct tls_conn *t = conn_new(ctx);
    if (t != NULL) {
        SSL_set_accept_state(t->ssl);
    }
    return t;
}

struct tls_conn *tls__conn_new_client(struct tls_ctx *ctx, const char *host)
{
    struct tls_conn *t = conn_new(ctx);
    unsigned char bin[16];
    bool ip;
    if (t == NULL) {
        return NULL;
    }
    snprintf(t->host, sizeof t->host, "%s", host);
    ip = inet_pton(AF_INET, host, bin) == 1 ||
         inet_pton(AF_INET6, host, bin) == 1;
    /* Go's http.Transport: ServerName is the URL's host; SNI only for
     * names, the certificate checked for the name or the IP. */
    if ((!ip && SSL_set_tlsext_host_name(t->ssl, host) != 1) ||
        (ip && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host) !=
                   1) ||
        (!ip && SSL_set1_host(t->ssl, host) != 1)) {
        tls__conn_free(t);
        return NULL;
    }
    SSL_set_connect_state(t->ssl);
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

/* Describe a failed read as Go's crypto/tls would (etcd logs it in
 * "rejected connection from ..."); OpenSSL's reason otherwise. */
static void set_error(struct tls_conn *t)
{
    unsigned long e = ERR_peek_error();
    int reason = ERR_GET_REASON(e);
    long vr = SSL_get_verify_result(t->ssl);
    bool client = !SSL_is_server(t->ssl);
    if (client && reason >= SSL_AD_REASON_OFFSET && t->reject == NULL) {
        /* Go: "remote error: tls: " + the alert's name */
        int alert = reason - SSL_AD_REASON_OFFSET;
        const char *name = SSL_alert_desc_string_long(alert);
        if (alert == SSL_AD_BAD_CERTIFICATE) {
            name = "bad certificate";
        } else if (alert == SSL_AD_UNKNOWN_CA) {
            name = "unknown certificate authority";
        } else if (alert == SSL_AD_HANDSHAKE_FAILURE) {
            name = "handshake failure";
        } else if (alert == SSL_AD_CERTIFICATE_REQUIRED) {
            name = "certificate required";
        }
        snprintf(t->err, sizeof t->err, "remote error: tls: %s", name);
    } else if (reason >= SSL_AD_REASON_OFFSET && t->reject == NULL) {
        /* An alert from the client (it refused our certificate): Go's
         * listener does not report these, so neither does keel. */
        t->err[0] = '\0';
    } else if (t->reject != NULL) {
        snprintf(t->err, sizeof t->err, "%s", t->reject);
    } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        snprintf(t->err, sizeof t->err,
                 "tls: client didn't provide a certificate");
    } else if (reason == SSL_R_HTTP_REQUEST ||
               reason == SSL_R_HTTPS_PROXY_REQUEST ||
               reason == SSL_R_WRONG_VERSION_NUMBER ||
               reason == SSL_R_UNKNOWN_PROTOCOL ||
               reason == SSL_R_PACKET_LENGTH_TOO_LONG) {
        snprintf(t->err, sizeof t->err,
                 "tls: first record does not look like a TLS handshake");
    } else if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK) {
        if (t->verr[0] == '\0') {
            go_x509_error(t, (int)vr, NULL);
        }
        snprintf(t->err, sizeof t->err, "%s%s",
                 client ? "" : "tls: failed to verify client certificate: ",
                 t->verr);
    } else if (e != 0) {
        ERR_error_string_n(e, t->err, sizeof t->err);
    } else if (SSL_get_error(t->ssl, -1) == SSL_ERROR_ZERO_RETURN) {
        snprintf(t->err, sizeof t->err, "EOF");
    } else {
        snprintf(t->err, sizeof t->err, "tls: handshake failure");
    }
}

const char *tls__error(const struct tls_conn *t)
{
    return t->err;
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
            set_error(t);
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

void tls__close_notify(struct tls_conn *t)
{
    /* One SSL_shutdown: queue our close_notify (we do not wait for the
     * peer's). Only on an established session; a failure is ignored (the
     * socket is closed anyway). */
    if (t->ssl != NULL && SSL_is_init_finished(t->ssl)) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

size_t tls__pending_out(const struct tls_conn *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t tls__take_out_into(struct tls_conn *t, void *buf, size_t len)
{
    int n = BIO_read(t->wbio, buf, (int)(len > 1u << 30 ? 1u << 30 : len));
    return n > 0 ? (size_t)n : 0;
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

/* Go's %q of a []string: ["a" "b"]; from san_text's ", " list. */
static void go_quote_list(const char *list, char *out, size_t outlen)
{
    size_t o = 0;
    const char *p = list;
    o += (size_t)snprintf(out, outlen, "[");
    while (*p != '\0' && o < outlen) {
        size_t n = strcspn(p, ",");
        o += (size_t)snprintf(out + o, outlen - o, "%s\"%.*s\"",
                              p == list ? "" : " ", (int)n, p);
        p += n;
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    if (o < outlen) {
        snprintf(out + o, outlen - o, "]");
    }
}

/* Split san_text's ", " list in place. */
static size_t split_list(char *s, const char **v, size_t max)
{
    size_t n = 0;
    while (*s != '\0' && n < max) {
        size_t l = strcspn(s, ",");
        v[n++] = s;
        s += l;
        if (*s == '\0') {
            break;
        }
        *s++ = '\0';
        while (*s == ' ') {
            s++;
        }
    }
    return n;
}

void tls__log_rejected(const struct tls_conn *t,
                       const char *addr,
                       const char *err)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    char ips[200] = "", dns[200] = "", qi[256], qd[256];
    if (err == NULL) {
        err = t->err;
    }
    if (cert != NULL) {
        san_text(cert, 1, ips, sizeof ips);
        san_text(cert, 0, dns, sizeof dns);
        go_quote_list(ips, qi, sizeof qi);
        go_quote_list(dns, qd, sizeof qd);
    }
    if (log_is_zap()) {
        if (cert != NULL) {
            const char *vi[8], *vd[8];
            size_t ni = split_list(ips, vi, 8), nd = split_list(dns, vd, 8);
            log_warnw("embed", "rejected connection",
                      LOG_STR("remote-addr", addr), LOG_STR("server-name", ""),
                      LOG_STRS("ip-addresses", vi, ni),
                      LOG_STRS("dns-names", vd, nd), LOG_ERR(err));
        } else {
            log_warnw("embed", "rejected connection",
                      LOG_STR("remote-addr", addr), LOG_STR("server-name", ""),
                      LOG_ERR(err));
        }
    } else if (cert != NULL) {
        log_info("embed",
                 "rejected connection from \"%s\" (error \"%s\", ServerName "
                 "\"\", IPAddresses %s, DNSNames %s)",
                 addr, err, qi, qd);
    } else {
        log_info("embed",
                 "rejected connection from \"%s\" (error \"%s\", ServerName "
                 "\"\")",
                 addr, err);
    }
}

int tls__check_san(const struct tls_conn *t,
                   const char *ip,
                   char names[][256],
                   size_t max,
                   char *err,
                   size_t errlen)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    char ips[200], dns[1024];
    int nip, ndns;
    size_t n = 0;
    if (cert == NULL) {
        return 0;
    }
    nip = san_text(cert, 1, ips, sizeof ips);
    ndns = san_text(cert, 0, dns, sizeof dns);
    if (nip == 0 && ndns == 0) {
        return 0;
    }
    if (nip > 0) {
        if (X509_check_ip_asc(cert, ip, 0) == 1) {
            return 0;
        }
        if (ndns == 0) {
            snprintf(err, errlen, "x509: certificate is valid for %s, not %s",
                     ips, ip);
            return -1;
        }
    }
    for (const char *p = dns; *p != '\0' && n < max;) {
        size_t l = strcspn(p, ",");
        snprintf(names[n++], 256, "%.*s", (int)l, p);
        p += l;
        while (*p == ',' || *p == ' ') {
            p++;
        }
    }
    return (int)n;
}

void tls__san_dns_error(const struct tls_conn *t,
                        const char *ip,
                        char *err,
                        size_t errlen)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    char dns[200] = "", q[256];
    if (cert != NULL) {
        san_text(cert, 0, dns, sizeof dns);
    }
    go_quote_list(dns, q, sizeof q);
    snprintf(err, errlen, "tls: \"%s\" does not match any of DNSNames %s", ip,
             q);
}

/* mkdir -p with mode for every created level (Go: fileutil.TouchDirAll). */
static int mkdir_all(const char *dir, char *errmsg, size_t errlen)
{
    char p[4096], eb[128];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof p) {
        snprintf(errmsg, errlen, "mkdir %s: invalid path", dir);
        return -1;
    }
    memcpy(p, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (p[i] != '/' && p[i] != '\0') {
            continue;
        }
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            snprintf(errmsg, errlen, "mkdir %s: %s", p,
                     config_go_strerror(errno, eb, sizeof eb));
            return -1;
        }
        p[i] = c;
    }
    return 0;
}

/* "IP:1.2.3.4,DNS:name,..." for the SAN extension, from "host:port"
 * strings as Go's net.SplitHostPort splits them ("[::1]:2379" → ::1). */
static void san_list(const char *const *hosts, size_t n, char *out,
                     size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char h[256];
        const char *s = hosts[i], *colon = strrchr(s, ':');
        size_t hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
        unsigned char bin[16];
        int w;
        if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
            s++;
            hl -= 2;
        }
        if (hl == 0 || hl >= sizeof h) {
            continue;
        }
        memcpy(h, s, hl);
        h[hl] = '\0';
        w = snprintf(out + o, outlen - o, "%s%s:%s", o > 0 ? "," : "",
                     inet_pton(AF_INET, h, bin) == 1 ||
                             inet_pton(AF_INET6, h, bin) == 1
                         ? "IP"
                         : "DNS",
                     h);
        if (w < 0 || (size_t)w >= outlen - o) {
            out[o] = '\0';
            return;
        }
        o += (size_t)w;
    }
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    int ok;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (ext == NULL) {
        return 0;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

static int write_key(FILE *f, EVP_PKEY *key)
{
    BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
    int ok = b != NULL && PEM_write_bio_PrivateKey_traditional(
                              b, key, NULL, NULL, 0, NULL, NULL);
    BIO_free(b);
    return ok;
}

int tls_self_cert(const char *dir,
                  const char *const *hosts,
                  size_t n,
                  int *created,
                  char *errmsg,
                  size_t errlen)
{
    char cert_path[4200], key_path[4200], san[2048], eb[128];
    struct stat st;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    BIGNUM *serial = NULL;
    FILE *f = NULL;
    int fd, rv = -1;

    *created = 0;
    if (mkdir_all(dir, errmsg, errlen) != 0) {
        return -1;
    }
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    if (stat(cert_path, &st) == 0 && stat(key_path, &st) == 0) {
        return 0; /* etcd reuses what an earlier start generated */
    }
    ERR_clear_error();
    key = EVP_EC_gen("P-521");
    x = X509_new();
    serial = BN_new();
    if (key == NULL || x == NULL || serial == NULL ||
        !BN_rand(serial, 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) == NULL ||
        !X509_set_version(x, X509_VERSION_3) ||
        X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 365L * 24 * 3600) == NULL ||
        !X509_set_pubkey(x, key) ||
        !X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O",
                                    MBSTRING_ASC,
                                    (const unsigned char *)"etcd", -1, -1,
                                    0) ||
        !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        !add_ext(x, NID_key_usage,
                 "critical,digitalSignature,keyEncipherment") ||
        !add_ext(x, NID_ext_key_usage, "serverAuth") ||
        !add_ext(x, NID_basic_constraints, "critical,CA:FALSE")) {
        ssl_err(errmsg, errlen, "cannot generate x509 certificate", NULL);
        goto out;
    }
    san_list(hosts, n, san, sizeof san);
    if ((san[0] != '\0' && !add_ext(x, NID_subject_alt_name, san)) ||
        !X509_sign(x, key, EVP_sha512())) {
        ssl_err(errmsg, errlen, "cannot generate x509 certificate", NULL);
        goto out;
    }
    f = fopen(cert_path, "w");
    if (f == NULL || !PEM_write_X509(f, x) || fclose(f) != 0) {
        snprintf(errmsg, errlen, "open %s: %s", cert_path,
                 config_go_strerror(errno != 0 ? errno : EIO, eb, sizeof eb));
        if (f != NULL) {
            fclose(f);
        }
        f = NULL;
        goto out;
    }
    f = NULL;
    fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    /* "EC PRIVATE KEY" (SEC1), as Go's x509.MarshalECPrivateKey */
    if (f == NULL || !write_key(f, key) || fclose(f) != 0) {
        snprintf(errmsg, errlen, "open %s: %s", key_path,
                 config_go_strerror(errno != 0 ? errno : EIO, eb, sizeof eb));
        if (f != NULL) {
            fclose(f);
        } else if (fd >= 0) {
            close(fd);
        }
        f = NULL;
        goto out;
    }
    *created = 1;
    rv = 0;
out:
    ERR_clear_error();
    BN_free(serial);
    X509_free(x);
    EVP_PKEY_free(key);
    return rv;
}
