/*
 * libFuzzer target: the v2 request parsing of server/v2_form.c (Go's
 * ParseForm: a form body then the query; path unescaping) and the path
 * cleaning of storage/v2store.c, on arbitrary bytes. The input is split
 * at its first two NUL bytes into body, query and path.
 *
 * Checks: no crash or sanitizer report; every parsed pair lies within
 * what the input could decode to; parse errors carry Go's text; a cleaned
 * path is rooted and has no empty, "." or ".." element and no trailing
 * slash (path.Clean's output), and cleaning it again changes nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keel_arena.h"
#include "keel_err.h"
#include "v2_form.h"
#include "v2store.h"

#define CHECK(c)                                                               \
    do {                                                                       \
        if (!(c)) {                                                            \
            abort();                                                           \
        }                                                                      \
    } while (0)

static void check_clean(struct keel_arena *a, const char *p, size_t len)
{
    char *c = v2store_clean_path(a, p, len);
    CHECK(c != NULL);
    size_t cl = strlen(c);
    CHECK(c[0] == '/');
    CHECK(cl == 1 || c[cl - 1] != '/');
    CHECK(strstr(c, "//") == NULL);
    CHECK(strstr(c, "/./") == NULL && strstr(c, "/../") == NULL);
    CHECK(!(cl >= 2 && strcmp(c + cl - 2, "/.") == 0));
    CHECK(!(cl >= 3 && strcmp(c + cl - 3, "/..") == 0));
    char *again = v2store_clean_path(a, c, cl);
    CHECK(again != NULL && strcmp(again, c) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *z1 = memchr(in, '\0', size);
    size_t body_len = z1 ? (size_t)(z1 - in) : size;
    const char *q = z1 ? z1 + 1 : in + size;
    size_t rest = size - (size_t)(q - in);
    const char *z2 = memchr(q, '\0', rest);
    size_t q_len = z2 ? (size_t)(z2 - q) : rest;
    const char *p = z2 ? z2 + 1 : q + q_len;
    size_t p_len = size - (size_t)(p - in);

    struct keel_arena a;
    keel_arena_init(&a, 0);
    struct v2_form f;
    char err[128] = "";
    int rv = v2_form_parse(&a, in, body_len, q, q_len, &f, err, sizeof err);
    CHECK(rv == 0 || rv == KEEL_EINVAL);
    if (rv == KEEL_EINVAL) {
        CHECK(strncmp(err, "invalid URL escape \"%", 21) == 0 ||
              strcmp(err, "invalid semicolon separator in query") == 0);
    }
    for (size_t i = 0; i < f.n; i++) {
        const struct v2_form_value *v = &f.v[i];
        CHECK(v->key_len + v->val_len <= body_len + q_len);
        CHECK(v->key[v->key_len] == '\0' && v->val[v->val_len] == '\0');
        if (strlen(v->key) == v->key_len) { /* no %00 in it */
            const struct v2_form_value *g = v2_form_get(&f, v->key);
            CHECK(g != NULL && g <= v);
        }
        unsigned long long x;
        int b = v2_form_parse_bool(v->val, v->val_len);
        CHECK(b >= -1 && b <= 1);
        if (v2_form_parse_uint(v->val, v->val_len, &x)) {
            CHECK(v->val_len > 0 && v->val[0] >= '0' && v->val[0] <= '9');
        }
    }
    char *path = v2_form_unescape_path(&a, p, p_len);
    if (path != NULL) {
        check_clean(&a, path, strlen(path));
    }
    /* the server cleans NUL-terminated strings */
    check_clean(&a, p, strnlen(p, p_len));
    keel_arena_free(&a);
    return 0;
}
