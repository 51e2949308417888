/*
 * server/v2_form: Go's url.ParseQuery as etcd's v2 handlers see it
 * (contract in v2_form.h). Pairs split on '&'; a ';' in a pair is an error
 * (Go >= 1.17); "+" is a space; a pair without '=' has the value "". The
 * first error is reported, parsing goes on (Go keeps the good pairs, but
 * etcd answers the error anyway).
 */
#include "v2_form.h"

#include <stdio.h>
#include <string.h>

#include "keel_err.h"

static int unhex(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decode [s, s+len) into a new NUL-terminated string; plus: '+' is ' '.
 * Returns NULL with *bad set to the offset of a bad escape (or -1 for no
 * memory). */
static char *decode(struct keel_arena *a, const char *s, size_t len,
                    bool plus, size_t *out_len, long *bad)
{
    char *o = keel_arena_alloc(a, len + 1);
    if (o == NULL) {
        *bad = -1;
        return NULL;
    }
    size_t w = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len) {
                *bad = (long)i;
                return NULL;
            }
            int hi = unhex(s[i + 1]), lo = unhex(s[i + 2]);
            if (hi < 0 || lo < 0) {
                *bad = (long)i;
                return NULL;
            }
            o[w++] = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus) {
            o[w++] = ' ';
        } else {
            o[w++] = c;
        }
    }
    o[w] = '\0';
    *out_len = w;
    return o;
}

static void escape_err(char *err, size_t errlen, const char *s, size_t len,
                       long at)
{
    /* Go: `invalid URL escape "%zz"`: up to 3 bytes from the '%' */
    size_t n = len - (size_t)at;
    if (n > 3) {
        n = 3;
    }
    snprintf(err, errlen, "invalid URL escape \"%.*s\"", (int)n, s + at);
}

static int parse_into(struct keel_arena *a, const char *s, size_t len,
                      struct v2_form_value *v, size_t *n, char *err,
                      size_t errlen, int *first_err)
{
    size_t i = 0;
    while (i <= len && len > 0) {
        size_t j = i;
        while (j < len && s[j] != '&') {
            j++;
        }
        const char *p = s + i;
        size_t pl = j - i;
        i = j + 1;
        if (pl == 0) {
            if (j >= len) {
                break;
            }
            continue;
        }
        if (memchr(p, ';', pl) != NULL) {
            if (*first_err == 0) {
                snprintf(err, errlen, "invalid semicolon separator in query");
                *first_err = KEEL_EINVAL;
            }
            if (j >= len) {
                break;
            }
            continue;
        }
        const char *eq = memchr(p, '=', pl);
        size_t kl = eq != NULL ? (size_t)(eq - p) : pl;
        const char *vp = eq != NULL ? eq + 1 : p + pl;
        size_t vl = eq != NULL ? pl - kl - 1 : 0;
        long bad = 0;
        size_t dk = 0, dv = 0;
        char *k = decode(a, p, kl, true, &dk, &bad);
        if (k == NULL) {
            if (bad < 0) {
                return KEEL_ENOMEM;
            }
            if (*first_err == 0) {
                escape_err(err, errlen, p, kl, bad);
                *first_err = KEEL_EINVAL;
            }
            if (j >= len) {
                break;
            }
            continue;
        }
        char *val = decode(a, vp, vl, true, &dv, &bad);
        if (val == NULL) {
            if (bad < 0) {
                return KEEL_ENOMEM;
            }
            if (*first_err == 0) {
                escape_err(err, errlen, vp, vl, bad);
                *first_err = KEEL_EINVAL;
            }
            if (j >= len) {
                break;
            }
            continue;
        }
        v[*n].key = k;
        v[*n].key_len = dk;
        v[*n].val = val;
        v[*n].val_len = dv;
        (*n)++;
        if (j >= len) {
            break;
        }
    }
    return 0;
}

static size_t count_pairs(const char *s, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++) {
        n += s[i] == '&';
    }
    return n;
}

int v2_form_parse(struct keel_arena *a, const char *body, size_t body_len,
                  const char *query, size_t query_len, struct v2_form *out,
                  char *err, size_t errlen)
{
    size_t cap = count_pairs(query, query_len) +
                 (body != NULL ? count_pairs(body, body_len) : 0);
    out->n = 0;
    out->v = keel_arena_alloc(a, cap * sizeof *out->v);
    if (out->v == NULL) {
        return KEEL_ENOMEM;
    }
    int first = 0;
    int rv = 0;
    if (body != NULL) {
        rv = parse_into(a, body, body_len, out->v, &out->n, err, errlen,
                        &first);
    }
    if (rv == 0) {
        rv = parse_into(a, query, query_len, out->v, &out->n, err, errlen,
                        &first);
    }
    return rv != 0 ? rv : first;
}

const struct v2_form_value *v2_form_get(const struct v2_form *f,
                                        const char *key)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i < f->n; i++) {
        if (f->v[i].key_len == kl && memcmp(f->v[i].key, key, kl) == 0) {
            return &f->v[i];
        }
    }
    return NULL;
}

int v2_form_parse_bool(const char *s, size_t len)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < 6; i++) {
        if (strlen(t[i]) == len && memcmp(s, t[i], len) == 0) {
            return 1;
        }
        if (strlen(f[i]) == len && memcmp(s, f[i], len) == 0) {
            return 0;
        }
    }
    return -1;
}

bool v2_form_parse_uint(const char *s, size_t len, unsigned long long *out)
{
    if (len == 0) {
        return false;
    }
    unsigned long long x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (~0ULL - d) / 10) {
            return false;
        }
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

char *v2_form_unescape_path(struct keel_arena *a, const char *p, size_t len)
{
    size_t n = 0;
    long bad = 0;
    return decode(a, p, len, false, &n, &bad);
}
