/*
 * server/auth_jwt.c: JWT tokens as etcd 3.4 issues and checks them (see
 * auth_jwt.h). OpenSSL signs and verifies; jansson writes and reads the
 * JSON parts.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "auth_jwt.h"
#include "keel_err.h"
#include "log.h"

enum jwt_kind { JWT_RS, JWT_PS, JWT_ES, JWT_HS };

struct auth_jwt
{
    char alg[8];
    enum jwt_kind kind;
    const EVP_MD *md;
    EVP_PKEY *priv; /* NULL: verify only */
    EVP_PKEY *pub;  /* the key that verifies (priv's public half if none) */
    unsigned char *secret; /* HS */
    size_t secret_len;
    int64_t ttl_s;
};

/* ---- base64url (RFC 7515: no padding) ----------------------------------- */

static const char B64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64url(const unsigned char *p, size_t n)
{
    char *o = malloc(n / 3 * 4 + 5);
    if (o == NULL) {
        return NULL;
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        o[j++] = B64[(v >> 18) & 63];
        o[j++] = B64[(v >> 12) & 63];
        if (i + 1 < n) {
            o[j++] = B64[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            o[j++] = B64[v & 63];
        }
    }
    o[j] = '\0';
    return o;
}

/* Decode n chars of base64url; *out malloc'd. -1 on a bad character. */
static int unb64url(const char *s, size_t n, unsigned char **out, size_t *len)
{
    unsigned char *o = malloc(n / 4 * 3 + 3);
    if (o == NULL) {
        return -1;
    }
    uint32_t v = 0;
    int bits = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = strchr(B64, s[i]);
        if (s[i] == '\0' || c == NULL) {
            free(o);
            return -1;
        }
        v = (v << 6) | (uint32_t)(c - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[j++] = (unsigned char)(v >> bits);
        }
    }
    *out = o;
    *len = j;
    return 0;
}

/* ---- options ------------------------------------------------------------ */

/* Go's time.ParseDuration for what a ttl option holds ("10m", "1h30m",
 * "90s", "1.5h"): seconds, or -1. */
static int64_t go_duration_s(const char *s)
{
    static const struct
    {
        const char *unit;
        double seconds;
    } units[] = {{"ns", 1e-9}, {"us", 1e-6}, {"µs", 1e-6}, {"ms", 1e-3},
                 {"s", 1},     {"m", 60},    {"h", 3600}};
    double total = 0;
    if (*s == '\0') {
        return -1;
    }
    if (strcmp(s, "0") == 0) {
        return 0;
    }
    while (*s != '\0') {
        char *end = NULL;
        double v = strtod(s, &end);
        if (end == s || v < 0) {
            return -1;
        }
        s = end;
        size_t best = 0, bi = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(s, units[i].unit, l) == 0 && l > best) {
                best = l;
                bi = i;
            }
        }
        if (best == 0) {
            return -1;
        }
        total += v * units[bi].seconds;
        s += best;
    }
    return (int64_t)total;
}

static int read_file(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    size_t cap = 4096, n = 0;
    unsigned char *b = malloc(cap);
    size_t r;
    while (b != NULL && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            unsigned char *nb = realloc(b, cap * 2);
            if (nb == NULL) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (b == NULL) {
        return -1;
    }
    *buf = b;
    *len = n;
    return 0;
}

static EVP_PKEY *pem_key(const unsigned char *pem, size_t len, int private)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio == NULL) {
        return NULL;
    }
    EVP_PKEY *k = private ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)
                          : PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (k == NULL && !private) {
        /* jwt-go also takes a certificate for the public key */
        (void)BIO_reset(bio);
        X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (cert != NULL) {
            k = X509_get_pubkey(cert);
            X509_free(cert);
        }
    }
    BIO_free(bio);
    return k;
}

static int set_method(struct auth_jwt *j, const char *m)
{
    static const struct
    {
        char prefix[3];
        enum jwt_kind kind;
    } kinds[] = {{"RS", JWT_RS}, {"PS", JWT_PS}, {"ES", JWT_ES}, {"HS", JWT_HS}};
    if (strlen(m) != 5) {
        return -1;
    }
    const char *bits = m + 2;
    if (strcmp(bits, "256") == 0) {
        j->md = EVP_sha256();
    } else if (strcmp(bits, "384") == 0) {
        j->md = EVP_sha384();
    } else if (strcmp(bits, "512") == 0) {
        j->md = EVP_sha512();
    } else {
        return -1;
    }
    for (size_t i = 0; i < 4; i++) {
        if (strncmp(m, kinds[i].prefix, 2) == 0) {
            j->kind = kinds[i].kind;
            strcpy(j->alg, m);
            return 0;
        }
    }
    return -1;
}

void auth_jwt_free(struct auth_jwt *j)
{
    if (j != NULL) {
        if (j->pub != j->priv) {
            EVP_PKEY_free(j->pub);
        }
        EVP_PKEY_free(j->priv);
        if (j->secret != NULL) {
            OPENSSL_cleanse(j->secret, j->secret_len);
            free(j->secret);
        }
        free(j);
    }
}

/* Load the keys the method needs (etcd: jwtOptions.Key). */
static int load_keys(struct auth_jwt *j, const char *pub_file,
                     const char *priv_file, char *errmsg, size_t errlen)
{
    unsigned char *pub = NULL, *priv = NULL;
    size_t publ = 0, privl = 0;
    if ((pub_file != NULL && read_file(pub_file, &pub, &publ) != 0) ||
        (priv_file != NULL && read_file(priv_file, &priv, &privl) != 0)) {
        snprintf(errmsg, errlen, "auth: invalid auth options (cannot read %s)",
                 pub_file != NULL && pub == NULL ? pub_file : priv_file);
        free(pub);
        free(priv);
        return KEEL_EINVAL;
    }
    int rv = 0;
    if (j->kind == JWT_HS) {
        if (privl == 0) {
            snprintf(errmsg, errlen, "auth: missing key data");
            rv = KEEL_EINVAL;
        } else {
            j->secret = priv;
            j->secret_len = privl;
            priv = NULL;
        }
        goto out;
    }
    int want = j->kind == JWT_ES ? EVP_PKEY_EC : EVP_PKEY_RSA;
    /* jwt-go: ES256/384/512 need a P-256/384/521 key */
    int curve = strcmp(j->alg + 2, "256") == 0   ? 256
                : strcmp(j->alg + 2, "384") == 0 ? 384
                                                 : 521;
    if (privl > 0) {
        j->priv = pem_key(priv, privl, 1);
    }
    if (publ > 0) {
        j->pub = pem_key(pub, publ, 0);
    }
    if ((privl > 0 && j->priv == NULL) || (publ > 0 && j->pub == NULL) ||
        (j->priv != NULL && EVP_PKEY_get_base_id(j->priv) != want) ||
        (j->pub != NULL && EVP_PKEY_get_base_id(j->pub) != want) ||
        (want == EVP_PKEY_EC && j->priv != NULL &&
         EVP_PKEY_get_bits(j->priv) != curve) ||
        (want == EVP_PKEY_EC && j->pub != NULL &&
         EVP_PKEY_get_bits(j->pub) != curve)) {
        snprintf(errmsg, errlen, "%s: not a PEM %s key for %s",
                 j->priv == NULL && privl > 0 ? priv_file
                 : pub_file != NULL           ? pub_file
                                              : priv_file,
                 want == EVP_PKEY_EC ? "ECDSA" : "RSA", j->alg);
        rv = KEEL_EINVAL;
    } else if (j->priv == NULL && j->pub == NULL) {
        snprintf(errmsg, errlen, "auth: missing key data");
        rv = KEEL_EINVAL;
    } else if (j->priv != NULL && j->pub != NULL &&
               EVP_PKEY_eq(j->priv, j->pub) != 1) {
        snprintf(errmsg, errlen, "auth: public and private keys don't match");
        rv = KEEL_EINVAL;
    } else if (j->pub == NULL) {
        j->pub = j->priv;
    }
out:
    free(pub);
    free(priv);
    return rv;
}

int auth_jwt_new(const char *opts, struct auth_jwt **out, char *errmsg,
                 size_t errlen)
{
    *out = NULL;
    struct auth_jwt *j = calloc(1, sizeof *j);
    char *copy = strdup(opts);
    if (j == NULL || copy == NULL) {
        free(j);
        free(copy);
        return KEEL_ENOMEM;
    }
    j->ttl_s = 300; /* etcd: DefaultTTL, 5 min */
    const char *pub = NULL, *priv = NULL, *method = NULL, *ttl = NULL;
    int rv = 0;
    for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv != NULL;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL || strchr(eq + 1, '=') != NULL) {
            snprintf(errmsg, errlen,
                     "auth: invalid auth options (invalid token specific "
                     "option: %s)",
                     kv);
            rv = KEEL_EINVAL;
            goto err;
        }
        *eq = '\0';
        const char **slot = strcmp(kv, "pub-key") == 0      ? &pub
                            : strcmp(kv, "priv-key") == 0   ? &priv
                            : strcmp(kv, "sign-method") == 0 ? &method
                            : strcmp(kv, "ttl") == 0        ? &ttl
                                                            : NULL;
        if (slot == NULL) {
            log_warn("auth", "unknown JWT options: [%s]", kv);
            continue;
        }
        if (*slot != NULL) {
            snprintf(errmsg, errlen,
                     "auth: invalid auth options (redundant token specific "
                     "option: %s)",
                     kv);
            rv = KEEL_EINVAL;
            goto err;
        }
        *slot = eq[1] != '\0' ? eq + 1 : NULL;
    }
    if (ttl != NULL && (j->ttl_s = go_duration_s(ttl)) < 0) {
        snprintf(errmsg, errlen, "auth: invalid auth options (ttl %s)", ttl);
        rv = KEEL_EINVAL;
        goto err;
    }
    if (method == NULL || set_method(j, method) != 0) {
        snprintf(errmsg, errlen,
                 "auth: invalid auth options (sign-method %s: RS/PS/ES/HS "
                 "256/384/512)",
                 method != NULL ? method : "missing");
        rv = KEEL_EINVAL;
        goto err;
    }
    rv = load_keys(j, pub, priv, errmsg, errlen);
    if (rv != 0) {
        goto err;
    }
    free(copy);
    *out = j;
    return 0;
err:
    free(copy);
    auth_jwt_free(j);
    return rv;
}

/* ---- signatures --------------------------------------------------------- */

/* ES: JWS wants r||s, each the curve's size; OpenSSL speaks DER. */
static size_t es_half(EVP_PKEY *k)
{
    return ((size_t)EVP_PKEY_get_bits(k) + 7) / 8;
}

static int sign_input(struct auth_jwt *j, const char *in, size_t inl,
                      unsigned char **sig, size_t *sigl)
{
    *sig = NULL;
    if (j->kind == JWT_HS) {
        unsigned int l = 0;
        *sig = malloc(EVP_MAX_MD_SIZE);
        if (*sig == NULL ||
            HMAC(j->md, j->secret, (int)j->secret_len,
                 (const unsigned char *)in, inl, *sig, &l) == NULL) {
            free(*sig);
            return KEEL_EIO;
        }
        *sigl = l;
        return 0;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    size_t l = 0;
    int ok = ctx != NULL &&
             EVP_DigestSignInit(ctx, &pctx, j->md, NULL, j->priv) == 1 &&
             (j->kind != JWT_PS ||
              (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) ==
                   1)) &&
             EVP_DigestSign(ctx, NULL, &l, (const unsigned char *)in, inl) == 1 &&
             (*sig = malloc(l)) != NULL &&
             EVP_DigestSign(ctx, *sig, &l, (const unsigned char *)in, inl) == 1;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        free(*sig);
        *sig = NULL;
        return KEEL_EIO;
    }
    *sigl = l;
    if (j->kind == JWT_ES) {
        const unsigned char *p = *sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)l);
        size_t half = es_half(j->priv);
        unsigned char *raw = malloc(2 * half);
        const BIGNUM *r = NULL, *s = NULL;
        if (es != NULL) {
            ECDSA_SIG_get0(es, &r, &s);
        }
        ok = es != NULL && raw != NULL && BN_bn2binpad(r, raw, (int)half) > 0 &&
             BN_bn2binpad(s, raw + half, (int)half) > 0;
        ECDSA_SIG_free(es);
        free(*sig);
        *sig = ok ? raw : NULL;
        if (!ok) {
            free(raw);
            return KEEL_EIO;
        }
        *sigl = 2 * half;
    }
    return 0;
}

static int verify_input(struct auth_jwt *j, const char *in, size_t inl,
                        const unsigned char *sig, size_t sigl)
{
    if (j->kind == JWT_HS) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int l = 0;
        return HMAC(j->md, j->secret, (int)j->secret_len,
                    (const unsigned char *)in, inl, mac, &l) != NULL &&
               l == sigl && CRYPTO_memcmp(mac, sig, l) == 0;
    }
    unsigned char *der = NULL;
    if (j->kind == JWT_ES) {
        size_t half = es_half(j->pub);
        if (sigl != 2 * half) {
            return 0;
        }
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)half, NULL);
        BIGNUM *s = BN_bin2bn(sig + half, (int)half, NULL);
        int dl = -1;
        if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s)) {
            r = s = NULL; /* owned by es */
            dl = i2d_ECDSA_SIG(es, &der);
        }
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        if (dl <= 0) {
            return 0;
        }
        sig = der;
        sigl = (size_t)dl;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx != NULL &&
             EVP_DigestVerifyInit(ctx, &pctx, j->md, NULL, j->pub) == 1 &&
             (j->kind != JWT_PS ||
              (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
               EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) ==
                   1)) &&
             EVP_DigestVerify(ctx, sig, sigl, (const unsigned char *)in, inl) ==
                 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    return ok;
}

/* ---- tokens ------------------------------------------------------------- */

static char *b64_json(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    if (s == NULL) {
        return NULL;
    }
    char *b = b64url((const unsigned char *)s, strlen(s));
    free(s);
    return b;
}

int auth_jwt_sign(struct auth_jwt *j, const char *user, uint64_t rev,
                  int64_t now_s, char **out)
{
    *out = NULL;
    if (j->kind != JWT_HS && j->priv == NULL) {
        return KEEL_EINVAL; /* etcd: ErrVerifyOnly */
    }
    char *h = b64_json(json_pack("{s:s,s:s}", "alg", j->alg, "typ", "JWT"));
    char *c = b64_json(json_pack("{s:I,s:I,s:s}", "exp",
                                 (json_int_t)(now_s + j->ttl_s), "revision",
                                 (json_int_t)rev, "username", user));
    int rv = KEEL_ENOMEM;
    char *in = NULL, *sig64 = NULL;
    unsigned char *sig = NULL;
    size_t sigl = 0;
    if (h == NULL || c == NULL) {
        goto out;
    }
    size_t inl = strlen(h) + 1 + strlen(c);
    in = malloc(inl + 1);
    if (in == NULL) {
        goto out;
    }
    snprintf(in, inl + 1, "%s.%s", h, c);
    rv = sign_input(j, in, inl, &sig, &sigl);
    if (rv != 0) {
        goto out;
    }
    sig64 = b64url(sig, sigl);
    char *t = sig64 != NULL ? malloc(inl + 1 + strlen(sig64) + 1) : NULL;
    if (t == NULL) {
        rv = KEEL_ENOMEM;
        goto out;
    }
    sprintf(t, "%s.%s", in, sig64);
    *out = t;
    rv = 0;
out:
    free(h);
    free(c);
    free(in);
    free(sig);
    free(sig64);
    return rv;
}

static json_t *part_json(const char *s, size_t n)
{
    unsigned char *raw = NULL;
    size_t l = 0;
    if (unb64url(s, n, &raw, &l) != 0) {
        return NULL;
    }
    json_t *v = json_loadb((const char *)raw, l, 0, NULL);
    free(raw);
    return v;
}

int auth_jwt_verify(struct auth_jwt *j, const char *token, int64_t now_s,
                    char **user, uint64_t *rev)
{
    *user = NULL;
    const char *d1 = strchr(token, '.');
    const char *d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
    if (d2 == NULL || strchr(d2 + 1, '.') != NULL) {
        return KEEL_EINVALIDAUTHTOKEN;
    }
    int rv = KEEL_EINVALIDAUTHTOKEN;
    json_t *hdr = part_json(token, (size_t)(d1 - token));
    json_t *cl = part_json(d1 + 1, (size_t)(d2 - d1 - 1));
    unsigned char *sig = NULL;
    size_t sigl = 0;
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    if (alg == NULL || strcmp(alg, j->alg) != 0 || !json_is_object(cl) ||
        unb64url(d2 + 1, strlen(d2 + 1), &sig, &sigl) != 0 ||
        !verify_input(j, token, (size_t)(d2 - token), sig, sigl)) {
        goto out;
    }
    /* jwt-go's MapClaims.Valid: exp, iat, nbf when present */
    json_t *exp = json_object_get(cl, "exp"), *iat = json_object_get(cl, "iat"),
           *nbf = json_object_get(cl, "nbf");
    if ((exp != NULL && (!json_is_number(exp) || now_s > json_number_value(exp))) ||
        (iat != NULL && (!json_is_number(iat) || now_s < json_number_value(iat))) ||
        (nbf != NULL && (!json_is_number(nbf) || now_s < json_number_value(nbf)))) {
        goto out;
    }
    const char *u = json_string_value(json_object_get(cl, "username"));
    json_t *r = json_object_get(cl, "revision");
    if (u == NULL || !json_is_number(r) || json_number_value(r) < 0) {
        goto out; /* etcd 3.4 would panic on the type assertion */
    }
    *user = strdup(u);
    *rev = (uint64_t)json_number_value(r);
    rv = *user != NULL ? 0 : KEEL_ENOMEM;
out:
    json_decref(hdr);
    json_decref(cl);
    free(sig);
    return rv;
}
