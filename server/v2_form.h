/*
 * server/v2_form: the parts of Go's net/url that etcd's v2 handlers see:
 * r.ParseForm (a form body for POST/PUT/PATCH first, then the URL query)
 * and the percent-decoding of the request path. Pure functions.
 */
#ifndef KEEL_V2_FORM_H
#define KEEL_V2_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include "keel_arena.h"

struct v2_form_value
{
    const char *key; /* decoded, NUL-terminated (may contain NULs: use len) */
    size_t key_len;
    const char *val;
    size_t val_len;
};

struct v2_form
{
    struct v2_form_value *v;
    size_t n;
};

/* Parse query (and body first when body != NULL) as
 * application/x-www-form-urlencoded, into a. 0 on success; on a malformed
 * form KEEL_EINVAL with Go's error text in err (e.g. `invalid URL escape
 * "%zz"`, "invalid semicolon separator in query"); KEEL_ENOMEM. */
int v2_form_parse(struct keel_arena *a, const char *body, size_t body_len,
                  const char *query, size_t query_len, struct v2_form *out,
                  char *err, size_t errlen);

/* First value of key, NULL if absent. */
const struct v2_form_value *v2_form_get(const struct v2_form *f,
                                        const char *key);

/* Go's strconv.ParseBool: 1 t T TRUE true True / 0 f F FALSE false False.
 * -1 when s is none of those. */
int v2_form_parse_bool(const char *s, size_t len);

/* strconv.ParseUint(s, 10, 64); false on error. */
bool v2_form_parse_uint(const char *s, size_t len, unsigned long long *out);

/* Percent-decode a URL path (url.PathUnescape), into a; NULL when it has a
 * bad escape or out of memory. */
char *v2_form_unescape_path(struct keel_arena *a, const char *p, size_t len);

#endif /* KEEL_V2_FORM_H */
