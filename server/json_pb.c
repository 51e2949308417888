/*
 * Generic JSON <-> protobuf-c converter for the v3 JSON gateway.
 *
 * Decoding is two steps, as in etcd's gateway (Go's json.Decoder reads one
 * whole value, then jsonpb maps it onto the message):
 *   1. parse: a recursive-descent JSON parser builds a small tree of
 *      `struct jv` nodes in the request arena. Syntax errors are reported with
 *      the text of Go's encoding/json scanner ("invalid character ',' after
 *      object key", "unexpected EOF", ...), which clients have seen from etcd.
 *      The parser is guided by the descriptor (struct hint): the whole body
 *      is syntax-checked, but only values the conversion can use are stored,
 *      so unknown fields cost no memory whatever their size.
 *   2. convert: walk the message descriptor; for each field look up its
 *      original and lowerCamel names in the object; convert the node to the
 *      field's C type in the arena. Type errors use jsonpb's / encoding/json's
 *      texts ("json: cannot unmarshal bool into Go value of type int64").
 *      jsonpb first fills the plain fields, then the oneof members, so a
 *      type error in a plain field is the one reported; we do the same.
 * A 64-bit integer given as a JSON string is handled as jsonpb does: strip
 * the quotes and parse what is left as a complete JSON document, so
 * "\"5x\"" fails with "invalid character 'x' after top-level value".
 *
 * Encoding walks the descriptor in field-number order (the order fields are
 * declared in etcd's .proto files, which is the order Go's structs and so
 * jsonpb print them) into a growable malloc'd buffer.
 *
 * Failure modes: bad input -> KEEL_EINVAL with a message; allocation failure
 * -> KEEL_ENOMEM. Nothing here aborts on input; nesting is bounded by
 * JSON_PB_MAX_DEPTH so recursion cannot blow the stack.
 */
#include "json_pb.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"

/* ------------------------------------------------------------------------ */
/* JSON tree                                                                */

enum jv_kind { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

struct jv_key
{
    const char *s; /* unescaped, or raw when it had no escapes */
    size_t n;
};

struct jv
{
    enum jv_kind kind;
    int b;           /* JV_BOOL */
    size_t n;        /* JV_STR: length of s; JV_ARR/JV_OBJ: entries */
    const char *raw; /* JV_NUM: the literal; JV_STR: bytes between quotes */
    size_t rawlen;
    union {
        char *s;           /* JV_STR: unescaped string (NUL-terminated) */
        struct jv **items; /* JV_ARR items, JV_OBJ values */
    };
    struct jv_key *keys; /* JV_OBJ keys */
};

/*
 * What the parser keeps of a value. Only what the conversion can use is
 * stored, so junk in unknown fields costs no memory however big it is (it
 * is still syntax-checked, as Go checks the whole body):
 *   H_SKIP    validate only, store nothing
 *   H_SCALAR  keep a scalar; of an object/array keep only its kind (it can
 *             only be a type error)
 *   H_MSG     an object is message `msg`: keep the fields it knows
 *   H_LIST    an array of `elem` values (a repeated field)
 */
enum hint_kind { H_SKIP, H_SCALAR, H_MSG, H_LIST };

struct hint
{
    enum hint_kind kind;
    const ProtobufCMessageDescriptor *msg;
    const ProtobufCFieldDescriptor *elem;
};

/* Parser state. `decoder` selects the EOF message: Go's json.Decoder says
 * "unexpected EOF", json.Unmarshal "unexpected end of JSON input". */
struct jp
{
    const char *p, *end;
    struct keel_arena *a;
    int depth;
    int decoder;
    int truncated; /* the error was running out of input */
    int rv;
    char *err;
    size_t errlen;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Go's quoteChar(c) for scanner errors: the byte as a rune, in single
 * quotes, escaped as strconv.Quote would. Writes into buf (>= 16 bytes). */
static void go_quote_char(unsigned char c, char *buf, size_t n)
{
    if (c == '\'') {
        snprintf(buf, n, "'\\''");
    } else if (c == '"') {
        snprintf(buf, n, "'\"'");
    } else if (c == '\a') {
        snprintf(buf, n, "'\\a'");
    } else if (c == '\b') {
        snprintf(buf, n, "'\\b'");
    } else if (c == '\f') {
        snprintf(buf, n, "'\\f'");
    } else if (c == '\n') {
        snprintf(buf, n, "'\\n'");
    } else if (c == '\r') {
        snprintf(buf, n, "'\\r'");
    } else if (c == '\t') {
        snprintf(buf, n, "'\\t'");
    } else if (c == '\v') {
        snprintf(buf, n, "'\\v'");
    } else if (c == '\\') {
        snprintf(buf, n, "'\\\\'");
    } else if (c < 0x20 || c == 0x7f) {
        snprintf(buf, n, "'\\x%02x'", c);
    } else if (c < 0x80) {
        snprintf(buf, n, "'%c'", c);
    } else if (c <= 0xa0 || c == 0xad) {
        /* Latin-1 controls, NBSP and soft hyphen are not "printable" for
         * Go's strconv. */
        snprintf(buf, n, "'\\u%04x'", c);
    } else {
        /* The rune U+00XX, UTF-8 encoded. */
        snprintf(buf, n, "'%c%c'", (char)(0xc0 | (c >> 6)),
                 (char)(0x80 | (c & 0x3f)));
    }
}

/* A syntax error at j->p in context `what`. At the end of input Go's
 * json.Decoder says "unexpected EOF"; json.Unmarshal feeds its scanner one
 * more ' ', so where a space is itself invalid (inside a number, a literal,
 * an escape: space_bad) it reports "invalid character ' ' <what>", and
 * otherwise "unexpected end of JSON input". */
static int jp_fail_ctx(struct jp *j, const char *what, int space_bad)
{
    char q[16];
    if (j->p >= j->end) {
        j->truncated = 1;
        if (j->decoder) {
            set_err(j->err, j->errlen, "unexpected EOF");
        } else if (space_bad) {
            set_err(j->err, j->errlen, "invalid character ' ' %s", what);
        } else {
            set_err(j->err, j->errlen, "unexpected end of JSON input");
        }
    } else {
        go_quote_char((unsigned char)*j->p, q, sizeof q);
        set_err(j->err, j->errlen, "invalid character %s %s", q, what);
    }
    j->rv = KEEL_EINVAL;
    return j->rv;
}

static int jp_fail(struct jp *j, const char *what)
{
    return jp_fail_ctx(j, what, 0);
}

/* Contexts where the next byte may not be a space. */
static int jp_fail_strict(struct jp *j, const char *what)
{
    return jp_fail_ctx(j, what, 1);
}

static int jp_oom(struct jp *j)
{
    set_err(j->err, j->errlen, "out of memory");
    j->rv = KEEL_ENOMEM;
    return j->rv;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void jp_skip_space(struct jp *j)
{
    while (j->p < j->end && is_space(*j->p)) {
        j->p++;
    }
}

static int hexval(char c)
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

static size_t utf8_put(char *o, uint32_t r)
{
    if (r < 0x80) {
        o[0] = (char)r;
        return 1;
    }
    if (r < 0x800) {
        o[0] = (char)(0xc0 | (r >> 6));
        o[1] = (char)(0x80 | (r & 0x3f));
        return 2;
    }
    if (r < 0x10000) {
        o[0] = (char)(0xe0 | (r >> 12));
        o[1] = (char)(0x80 | ((r >> 6) & 0x3f));
        o[2] = (char)(0x80 | (r & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (r >> 18));
    o[1] = (char)(0x80 | ((r >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((r >> 6) & 0x3f));
    o[3] = (char)(0x80 | (r & 0x3f));
    return 4;
}

/* Decode one UTF-8 sequence at s (n bytes left). Returns its length and the
 * rune in *r, or 0 when the bytes are not valid UTF-8 (Go's rules: no
 * overlongs, no surrogates, max U+10FFFF). */
static size_t utf8_get(const unsigned char *s, size_t n, uint32_t *r)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *r = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        return 0;
    }
    *r = v;
    return len;
}

static int read_hex4(const char *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) {
            return -1;
        }
        v = (v << 4) | (uint32_t)h;
    }
    *out = v;
    return 0;
}

/* Unescape a validated string body [s, s+n) as Go does: escapes decoded,
 * surrogate pairs joined, lone surrogates and invalid UTF-8 -> U+FFFD. */
static char *unescape(struct keel_arena *a, const char *s, size_t n,
                      size_t *outlen)
{
    /* Worst case: each invalid byte (1) becomes U+FFFD (3). */
    char *o = keel_arena_alloc(a, n * 3 + 1);
    if (o == NULL) {
        return NULL;
    }
    size_t k = 0;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') {
            char e = s[i + 1];
            i += 2;
            switch (e) {
            case 'b': o[k++] = '\b'; break;
            case 'f': o[k++] = '\f'; break;
            case 'n': o[k++] = '\n'; break;
            case 'r': o[k++] = '\r'; break;
            case 't': o[k++] = '\t'; break;
            case 'u': {
                uint32_t r;
                read_hex4(s + i, &r);
                i += 4;
                if (r >= 0xd800 && r < 0xdc00) {
                    uint32_t lo;
                    if (i + 6 <= n && s[i] == '\\' && s[i + 1] == 'u' &&
                        read_hex4(s + i + 2, &lo) == 0 && lo >= 0xdc00 &&
                        lo < 0xe000) {
                        r = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    } else {
                        r = 0xfffd;
                    }
                } else if (r >= 0xdc00 && r < 0xe000) {
                    r = 0xfffd;
                }
                k += utf8_put(o + k, r);
                break;
            }
            default: o[k++] = e; break; /* " \ / */
            }
            continue;
        }
        uint32_t r;
        size_t l = utf8_get((const unsigned char *)s + i, n - i, &r);
        if (l == 0) {
            k += utf8_put(o + k, 0xfffd);
            i++;
        } else {
            memcpy(o + k, s + i, l);
            k += l;
            i += l;
        }
    }
    o[k] = '\0';
    *outlen = k;
    return o;
}

static struct jv *jv_new(struct jp *j, enum jv_kind kind)
{
    struct jv *v = keel_arena_alloc(j->a, sizeof *v);
    if (v == NULL) {
        jp_oom(j);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->kind = kind;
    return v;
}

/* Scan a string starting at the opening quote; on success j->p is past the
 * closing quote and [*body, *body+*n) is the raw body. */
static int jp_scan_string(struct jp *j, const char **body, size_t *n)
{
    j->p++; /* opening quote */
    const char *start = j->p;
    for (;;) {
        if (j->p >= j->end) {
            return jp_fail(j, "");
        }
        unsigned char c = (unsigned char)*j->p;
        if (c == '"') {
            break;
        }
        if (c < 0x20) {
            return jp_fail(j, "in string literal");
        }
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end) {
                return jp_fail_strict(j, "in string escape code");
            }
            char e = *j->p;
            if (e == 'u') {
                j->p++;
                for (int i = 0; i < 4; i++) {
                    if (j->p >= j->end || hexval(*j->p) < 0) {
                        return jp_fail_strict(
                            j, "in \\u hexadecimal character escape");
                    }
                    j->p++;
                }
                continue;
            }
            if (strchr("\"\\/bfnrt", e) == NULL || e == '\0') {
                return jp_fail(j, "in string escape code");
            }
        }
        j->p++;
    }
    *body = start;
    *n = (size_t)(j->p - start);
    j->p++; /* closing quote */
    return 0;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int jp_scan_number(struct jp *j)
{
    if (*j->p == '-') {
        j->p++;
        if (j->p >= j->end || !is_digit(*j->p)) {
            return jp_fail_strict(j, "in numeric literal");
        }
    }
    if (*j->p == '0') {
        j->p++;
    } else {
        while (j->p < j->end && is_digit(*j->p)) {
            j->p++;
        }
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || !is_digit(*j->p)) {
            return jp_fail_strict(j, "after decimal point in numeric literal");
        }
        while (j->p < j->end && is_digit(*j->p)) {
            j->p++;
        }
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
            j->p++;
        }
        if (j->p >= j->end || !is_digit(*j->p)) {
            return jp_fail_strict(j, "in exponent of numeric literal");
        }
        while (j->p < j->end && is_digit(*j->p)) {
            j->p++;
        }
    }
    return 0;
}

static int jp_literal(struct jp *j, const char *word)
{
    /* The first letter was checked by the caller. */
    char what[48];
    for (size_t i = 1; word[i] != '\0'; i++) {
        j->p++;
        if (j->p >= j->end || *j->p != word[i]) {
            snprintf(what, sizeof what, "in literal %s (expecting '%c')", word,
                     word[i]);
            return jp_fail_strict(j, what);
        }
    }
    j->p++;
    return 0;
}

static struct jv *jp_value(struct jp *j, const struct hint *h);

/* Returned for values parsed with H_SKIP: valid, nothing stored. */
static struct jv jv_skipped;

static int jp_grow(struct jp *j, struct jv *v, size_t *cap, int obj)
{
    size_t ncap = *cap ? *cap * 2 : 4;
    struct jv **items = keel_arena_alloc(j->a, ncap * sizeof *items);
    struct jv_key *keys =
        obj ? keel_arena_alloc(j->a, ncap * sizeof *keys) : NULL;
    if (items == NULL || (obj && keys == NULL)) {
        return jp_oom(j);
    }
    if (v->n) {
        memcpy(items, v->items, v->n * sizeof *items);
        if (obj) {
            memcpy(keys, v->keys, v->n * sizeof *keys);
        }
    }
    v->items = items;
    v->keys = keys;
    *cap = ncap;
    return 0;
}

static void camel_name(const char *name, char *out, size_t n);

/* The field of d named k (original or lowerCamel name), or NULL. */
static const ProtobufCFieldDescriptor *
field_by_json_name(const ProtobufCMessageDescriptor *d, const char *k, size_t n)
{
    char camel[128];
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (strlen(f->name) == n && memcmp(f->name, k, n) == 0) {
            return f;
        }
        camel_name(f->name, camel, sizeof camel);
        if (strlen(camel) == n && memcmp(camel, k, n) == 0) {
            return f;
        }
    }
    return NULL;
}

/* How to parse the value of field f. */
static struct hint field_hint(const ProtobufCFieldDescriptor *f)
{
    struct hint h = {H_SCALAR, NULL, NULL};
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        h.kind = H_LIST;
        h.elem = f;
    } else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
        h.kind = H_MSG;
        h.msg = f->descriptor;
    }
    return h;
}

/* Go's encoding/json nesting limit (maxNestingDepth). */
#define GO_MAX_DEPTH 10000

/*
 * Validate one value at j->p (not whitespace, not end of input) without
 * storing anything and without recursion, so junk nested up to Go's own
 * limit costs neither memory nor stack. Errors are Go's, including
 * "invalid character '[' exceeded max depth" past 10000 open containers
 * (counting the enclosing ones, j->depth).
 */
static int jp_skip(struct jp *j)
{
    /* 'o' or 'a' per open container; heap, as 10 KB is a lot of stack for
     * a libuv callback. */
    char *stack = NULL;
    size_t sp = 0, cap = 0;
    int rv = 0;
    for (;;) {
        /* a value */
        jp_skip_space(j);
        if (j->p >= j->end) {
            rv = jp_fail(j, "");
            goto out;
        }
        char c = *j->p;
        if (c == '{' || c == '[') {
            if ((size_t)j->depth + sp + 1 > GO_MAX_DEPTH) {
                rv = jp_fail(j, "exceeded max depth");
                goto out;
            }
            if (sp == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                char *ns = realloc(stack, ncap);
                if (ns == NULL) {
                    rv = jp_oom(j);
                    goto out;
                }
                stack = ns;
                cap = ncap;
            }
            j->p++;
            jp_skip_space(j);
            if (c == '[') {
                if (j->p < j->end && *j->p == ']') {
                    j->p++;
                    goto after_value;
                }
                stack[sp++] = 'a';
                continue;
            }
            if (j->p < j->end && *j->p == '}') {
                j->p++;
                goto after_value;
            }
            stack[sp++] = 'o';
            goto object_key;
        }
        if (c == '"') {
            const char *body;
            size_t bn;
            if ((rv = jp_scan_string(j, &body, &bn)) != 0) {
                goto out;
            }
        } else if (c == 't' || c == 'f' || c == 'n') {
            if ((rv = jp_literal(j, c == 't'   ? "true"
                                    : c == 'f' ? "false"
                                               : "null")) != 0) {
                goto out;
            }
        } else if (c == '-' || is_digit(c)) {
            if ((rv = jp_scan_number(j)) != 0) {
                goto out;
            }
        } else {
            rv = jp_fail(j, "looking for beginning of value");
            goto out;
        }
    after_value:
        for (;;) {
            if (sp == 0) {
                goto out;
            }
            jp_skip_space(j);
            char top = stack[sp - 1];
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                if (top == 'o') {
                    jp_skip_space(j);
                    goto object_key;
                }
                break; /* next array element */
            }
            if (j->p < j->end && *j->p == (top == 'o' ? '}' : ']')) {
                j->p++;
                sp--;
                continue;
            }
            rv = jp_fail(j, top == 'o' ? "after object key:value pair"
                                       : "after array element");
            goto out;
        }
        continue;
    object_key:
        if (j->p >= j->end || *j->p != '"') {
            rv = jp_fail(j, "looking for beginning of object key string");
            goto out;
        }
        {
            const char *body;
            size_t bn;
            if ((rv = jp_scan_string(j, &body, &bn)) != 0) {
                goto out;
            }
        }
        jp_skip_space(j);
        if (j->p >= j->end || *j->p != ':') {
            rv = jp_fail(j, "after object key");
            goto out;
        }
        j->p++;
    }
out:
    free(stack);
    return rv;
}

/* An object for message h->msg (h->kind == H_MSG): its known fields are
 * kept, the rest validated and dropped. */
static struct jv *jp_object(struct jp *j, const struct hint *h)
{
    static const struct hint skip = {H_SKIP, NULL, NULL};
    size_t cap = 0;
    struct jv *v = jv_new(j, JV_OBJ);
    if (v == NULL) {
        return NULL;
    }
    j->p++; /* { */
    jp_skip_space(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return v;
    }
    for (;;) {
        if (j->p >= j->end || *j->p != '"') {
            jp_fail(j, "looking for beginning of object key string");
            return NULL;
        }
        const char *body;
        size_t bn;
        if (jp_scan_string(j, &body, &bn) != 0) {
            return NULL;
        }
        jp_skip_space(j);
        if (j->p >= j->end || *j->p != ':') {
            jp_fail(j, "after object key");
            return NULL;
        }
        j->p++;
        struct jv_key key = {body, bn};
        if (memchr(body, '\\', bn) != NULL) {
            char *k = unescape(j->a, body, bn, &key.n);
            if (k == NULL) {
                jp_oom(j);
                return NULL;
            }
            key.s = k;
        }
        const ProtobufCFieldDescriptor *f =
            field_by_json_name(h->msg, key.s, key.n);
        struct hint ch = f ? field_hint(f) : skip;
        struct jv *item = jp_value(j, &ch);
        if (item == NULL) {
            return NULL;
        }
        if (f != NULL) {
            if (v->n == cap && jp_grow(j, v, &cap, 1) != 0) {
                return NULL;
            }
            v->keys[v->n] = key;
            v->items[v->n++] = item;
        }
        jp_skip_space(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            jp_skip_space(j);
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return v;
        }
        jp_fail(j, "after object key:value pair");
        return NULL;
    }
}

/* An array for repeated field h->elem (h->kind == H_LIST). */
static struct jv *jp_array(struct jp *j, const struct hint *h)
{
    struct hint eh = {H_SCALAR, NULL, NULL};
    size_t cap = 0;
    struct jv *v = jv_new(j, JV_ARR);
    if (v == NULL) {
        return NULL;
    }
    if (h->elem->type == PROTOBUF_C_TYPE_MESSAGE) {
        eh.kind = H_MSG;
        eh.msg = h->elem->descriptor;
    }
    j->p++; /* [ */
    jp_skip_space(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return v;
    }
    for (;;) {
        struct jv *item = jp_value(j, &eh);
        if (item == NULL) {
            return NULL;
        }
        if (v->n == cap && jp_grow(j, v, &cap, 0) != 0) {
            return NULL;
        }
        v->items[v->n++] = item;
        jp_skip_space(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return v;
        }
        jp_fail(j, "after array element");
        return NULL;
    }
}

static struct jv *jp_value(struct jp *j, const struct hint *h)
{
    jp_skip_space(j);
    if (j->p >= j->end) {
        jp_fail(j, "");
        return NULL;
    }
    char c = *j->p;
    int keep = h->kind != H_SKIP;
    struct jv *v;
    switch (c) {
    case '{':
    case '[':
        if (!keep) {
            return jp_skip(j) == 0 ? &jv_skipped : NULL;
        }
        if ((c == '{') != (h->kind == H_MSG) ||
            (c == '[') != (h->kind == H_LIST)) {
            /* Not the container the field wants: only its kind matters
             * (for the type error). */
            v = jv_new(j, c == '{' ? JV_OBJ : JV_ARR);
            if (v == NULL) {
                return NULL;
            }
            return jp_skip(j) == 0 ? v : NULL;
        }
        /* Message structure: recursion, bounded by keel's own limit. */
        if (++j->depth > JSON_PB_MAX_DEPTH) {
            jp_fail(j, "exceeded max depth");
            return NULL;
        }
        v = c == '{' ? jp_object(j, h) : jp_array(j, h);
        j->depth--;
        return v;
    case '"': {
        const char *body;
        size_t bn;
        if (jp_scan_string(j, &body, &bn) != 0) {
            return NULL;
        }
        if (!keep) {
            return &jv_skipped;
        }
        v = jv_new(j, JV_STR);
        if (v == NULL) {
            return NULL;
        }
        v->raw = body;
        v->rawlen = bn;
        v->s = unescape(j->a, body, bn, &v->n);
        if (v->s == NULL) {
            jp_oom(j);
            return NULL;
        }
        return v;
    }
    case 't':
    case 'f':
        if (jp_literal(j, c == 't' ? "true" : "false") != 0) {
            return NULL;
        }
        if (!keep) {
            return &jv_skipped;
        }
        v = jv_new(j, JV_BOOL);
        if (v != NULL) {
            v->b = c == 't';
        }
        return v;
    case 'n':
        if (jp_literal(j, "null") != 0) {
            return NULL;
        }
        return keep ? jv_new(j, JV_NULL) : &jv_skipped;
    default:
        if (c == '-' || is_digit(c)) {
            const char *start = j->p;
            if (jp_scan_number(j) != 0) {
                return NULL;
            }
            if (!keep) {
                return &jv_skipped;
            }
            v = jv_new(j, JV_NUM);
            if (v != NULL) {
                v->raw = start;
                v->rawlen = (size_t)(j->p - start);
            }
            return v;
        }
        jp_fail(j, "looking for beginning of value");
        return NULL;
    }
}

/* json.Unmarshal semantics: the whole input must be one value. Used for
 * the text of a quoted number, so only a scalar is kept. */
static struct jv *jp_parse_document(struct keel_arena *a, const char *s,
                                    size_t n, int *rv, char *err,
                                    size_t errlen)
{
    static const struct hint scalar = {H_SCALAR, NULL, NULL};
    struct jp j = {.p = s, .end = s + n, .a = a, .err = err, .errlen = errlen};
    struct jv *v = jp_value(&j, &scalar);
    if (v == NULL) {
        *rv = j.rv;
        return NULL;
    }
    jp_skip_space(&j);
    if (j.p < j.end) {
        jp_fail(&j, "after top-level value");
        *rv = j.rv;
        return NULL;
    }
    *rv = 0;
    return v;
}

/* ------------------------------------------------------------------------ */
/* base64                                                                   */

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+' || c == '-') {
        return 62;
    }
    if (c == '/' || c == '_') {
        return 63;
    }
    return -1;
}

/*
 * Decode standard or URL-safe base64, padded or not, skipping CR/LF as Go
 * does. Error positions follow Go's base64 decoder ("illegal base64 data at
 * input byte N"): an illegal byte is reported at its own index; a final group
 * of a single character at the group's start; bad padding at the '=' (or at
 * len when a second '=' is missing); data after padding at its index.
 * Returns the decoded length, or -1 with *bad set.
 */
static long b64_decode(const unsigned char *s, size_t n, uint8_t *out,
                       size_t *bad)
{
    size_t si = 0, k = 0;
    for (;;) {
        uint32_t q[4] = {0, 0, 0, 0};
        size_t j = 0;
        int padded = 0;
        while (j < 4) {
            if (si == n) {
                break;
            }
            unsigned char c = s[si++];
            if (c == '\n' || c == '\r') {
                continue;
            }
            int v = b64val(c);
            if (v >= 0) {
                q[j++] = (uint32_t)v;
                continue;
            }
            if (c != '=' || j < 2) {
                *bad = si - 1;
                return -1;
            }
            /* padding after 2 or 3 symbols */
            if (j == 2) {
                while (si < n && (s[si] == '\n' || s[si] == '\r')) {
                    si++;
                }
                if (si == n) {
                    *bad = n;
                    return -1;
                }
                if (s[si] != '=') {
                    *bad = si - 1;
                    return -1;
                }
                si++;
            }
            while (si < n && (s[si] == '\n' || s[si] == '\r')) {
                si++;
            }
            if (si < n) {
                *bad = si;
                return -1;
            }
            padded = 1;
            break;
        }
        if (j == 0) {
            return (long)k;
        }
        if (j == 1) {
            /* Go reports the start of the incomplete group (si - j, with
             * skipped newlines not counted). */
            *bad = si - 1;
            return -1;
        }
        uint32_t val = q[0] << 18 | q[1] << 12 | q[2] << 6 | q[3];
        out[k++] = (uint8_t)(val >> 16);
        if (j >= 3) {
            out[k++] = (uint8_t)(val >> 8);
        }
        if (j == 4) {
            out[k++] = (uint8_t)val;
        }
        if (padded || j < 4) {
            return (long)k;
        }
    }
}

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* ------------------------------------------------------------------------ */
/* Output buffer                                                            */

static int buf_reserve(struct json_pb_buf *b, size_t extra)
{
    if (b->oom) {
        return KEEL_ENOMEM;
    }
    if (b->len + extra + 1 <= b->cap) {
        return 0;
    }
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + extra + 1) {
        ncap *= 2;
    }
    char *d = realloc(b->data, ncap);
    if (d == NULL) {
        b->oom = 1;
        return KEEL_ENOMEM;
    }
    b->data = d;
    b->cap = ncap;
    return 0;
}

int json_pb_append_raw(struct json_pb_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) != 0) {
        return KEEL_ENOMEM;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int buf_puts(struct json_pb_buf *b, const char *s)
{
    return json_pb_append_raw(b, s, strlen(s));
}

int json_pb_append_string(struct json_pb_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case 6 output bytes per input byte, plus quotes. */
    if (buf_reserve(b, n * 6 + 2) != 0) {
        return KEEL_ENOMEM;
    }
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' &&
                c != '&') {
                *o++ = (char)c;
            } else if (c == '"' || c == '\\') {
                *o++ = '\\';
                *o++ = (char)c;
            } else if (c == '\n') {
                *o++ = '\\';
                *o++ = 'n';
            } else if (c == '\r') {
                *o++ = '\\';
                *o++ = 'r';
            } else if (c == '\t') {
                *o++ = '\\';
                *o++ = 't';
            } else {
                /* other controls and the HTML-sensitive <, >, & */
                *o++ = '\\';
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 0xf];
            }
            i++;
            continue;
        }
        uint32_t r;
        size_t l = utf8_get((const unsigned char *)s + i, n - i, &r);
        if (l == 0) {
            memcpy(o, "\\ufffd", 6);
            o += 6;
            i++;
            continue;
        }
        if (r == 0x2028 || r == 0x2029) {
            memcpy(o, r == 0x2028 ? "\\u2028" : "\\u2029", 6);
            o += 6;
        } else {
            memcpy(o, s + i, l);
            o += l;
        }
        i += l;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

static int buf_base64(struct json_pb_buf *b, const uint8_t *d, size_t n)
{
    if (buf_reserve(b, (n + 2) / 3 * 4 + 2) != 0) {
        return KEEL_ENOMEM;
    }
    char *o = b->data + b->len;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = b64chars[(v >> 6) & 63];
        *o++ = b64chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)d[i] << 16;
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
        *o++ = b64chars[v >> 18];
        *o++ = b64chars[(v >> 12) & 63];
        *o++ = b64chars[(v >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Names                                                                    */

char *json_pb_go_enum_name(const ProtobufCEnumDescriptor *e, char *buf,
                           size_t n)
{
    /* "etcdserverpb.RangeRequest.SortOrder" -> package "etcdserverpb", then
     * nested names joined with '_' as protoc-gen-go names the type. */
    const char *full = e->name;
    size_t plen = e->package_name ? strlen(e->package_name) : 0;
    size_t k = 0;
    if (n == 0) {
        return buf;
    }
    for (size_t i = 0; full[i] != '\0' && k + 1 < n; i++) {
        char c = full[i];
        if (c == '.' && i > plen) {
            c = '_';
        }
        buf[k++] = c;
    }
    buf[k] = '\0';
    return buf;
}

/* protoc's JSON name: drop '_' and upper-case the letter after it. */
static void camel_name(const char *name, char *out, size_t n)
{
    size_t k = 0;
    int up = 0;
    for (size_t i = 0; name[i] != '\0' && k + 1 < n; i++) {
        if (name[i] == '_') {
            up = 1;
            continue;
        }
        char c = name[i];
        if (up && c >= 'a' && c <= 'z') {
            c = (char)(c - 'a' + 'A');
        }
        up = 0;
        out[k++] = c;
    }
    out[k] = '\0';
}

static const char *go_type_name(const ProtobufCFieldDescriptor *f, char *buf,
                                size_t n)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return "int32";
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return "int64";
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return "uint32";
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return "uint64";
    case PROTOBUF_C_TYPE_FLOAT:
        return "float32";
    case PROTOBUF_C_TYPE_DOUBLE:
        return "float64";
    case PROTOBUF_C_TYPE_BOOL:
        return "bool";
    case PROTOBUF_C_TYPE_ENUM:
        return json_pb_go_enum_name(f->descriptor, buf, n);
    case PROTOBUF_C_TYPE_STRING:
        return "string";
    case PROTOBUF_C_TYPE_BYTES:
        return "[]uint8";
    case PROTOBUF_C_TYPE_MESSAGE:
        return "map[string]json.RawMessage";
    }
    return "?";
}

static const char *kind_name(enum jv_kind k)
{
    switch (k) {
    case JV_NULL: return "null";
    case JV_BOOL: return "bool";
    case JV_NUM: return "number";
    case JV_STR: return "string";
    case JV_ARR: return "array";
    case JV_OBJ: return "object";
    }
    return "?";
}

/* Go's %q of raw bytes (approximation of strconv.Quote: ASCII printables as
 * they are, the usual short escapes, \xNN for other controls and invalid
 * UTF-8, \u00NN for Latin-1 controls, other runes as they are). */
static void go_quote_bytes(const char *s, size_t n, char *out, size_t outn)
{
    size_t k = 0;
    if (outn < 3) {
        if (outn) {
            out[0] = '\0';
        }
        return;
    }
    out[k++] = '"';
    for (size_t i = 0; i < n;) {
        char tmp[16];
        size_t tl;
        unsigned char c = (unsigned char)s[i];
        uint32_t r;
        size_t l = 1;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\', tmp[1] = (char)c, tl = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[0] = (char)c, tl = 1;
        } else if (c < 0x80) {
            const char *esc = c == '\a'   ? "\\a"
                              : c == '\b' ? "\\b"
                              : c == '\f' ? "\\f"
                              : c == '\n' ? "\\n"
                              : c == '\r' ? "\\r"
                              : c == '\t' ? "\\t"
                              : c == '\v' ? "\\v"
                                          : NULL;
            if (esc) {
                tl = (size_t)snprintf(tmp, sizeof tmp, "%s", esc);
            } else {
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
            }
        } else if ((l = utf8_get((const unsigned char *)s + i, n - i, &r)) ==
                   0) {
            l = 1;
            tl = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
        } else if (r <= 0xa0 || r == 0xad) {
            tl = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", r);
        } else {
            memcpy(tmp, s + i, l);
            tl = l;
        }
        if (k + tl + 2 > outn) {
            break;
        }
        memcpy(out + k, tmp, tl);
        k += tl;
        i += l;
    }
    out[k++] = '"';
    out[k] = '\0';
}

/* ------------------------------------------------------------------------ */
/* JSON tree -> message                                                     */

struct conv
{
    struct keel_arena *a;
    char *err;
    size_t errlen;
};

static int type_err(struct conv *c, const ProtobufCFieldDescriptor *f,
                    const struct jv *v, int with_literal)
{
    char tn[160];
    const char *t = go_type_name(f, tn, sizeof tn);
    if (with_literal && v->kind == JV_NUM) {
        set_err(c->err, c->errlen,
                "json: cannot unmarshal number %.*s into Go value of type %s",
                (int)v->rawlen, v->raw, t);
    } else {
        set_err(c->err, c->errlen,
                "json: cannot unmarshal %s into Go value of type %s",
                kind_name(v->kind), t);
    }
    return KEEL_EINVAL;
}

/* Parse a JSON number literal as a decimal integer as strconv.ParseInt /
 * ParseUint would (no fraction, no exponent; ParseUint refuses '-'). */
static int parse_int(const char *s, size_t n, int is_signed, int64_t min,
                     int64_t max, uint64_t umax, int64_t *iv, uint64_t *uv)
{
    size_t i = 0;
    int neg = 0;
    if (n == 0) {
        return -1;
    }
    if (s[0] == '-') {
        if (!is_signed) {
            return -1;
        }
        neg = 1;
        i = 1;
        if (n == 1) {
            return -1;
        }
    }
    uint64_t acc = 0;
    for (; i < n; i++) {
        if (!is_digit(s[i])) {
            return -1;
        }
        unsigned d = (unsigned)(s[i] - '0');
        if (acc > (UINT64_MAX - d) / 10) {
            return -1;
        }
        acc = acc * 10 + d;
    }
    if (!is_signed) {
        if (acc > umax) {
            return -1;
        }
        *uv = acc;
        return 0;
    }
    if (neg) {
        /* min == -(max + 1) for every signed type we parse */
        uint64_t limit = (uint64_t)max + 1;
        if (acc > limit) {
            return -1;
        }
        *iv = acc == limit ? min : -(int64_t)acc;
        return 0;
    }
    if (acc > (uint64_t)max) {
        return -1;
    }
    *iv = (int64_t)acc;
    return 0;
}

static int conv_message(struct conv *c, const ProtobufCMessageDescriptor *d,
                        const struct jv *obj, ProtobufCMessage **out);

/* A numeric field (ints, floats) from node v. Quoted values are handled by
 * the caller. Writes into dst, sized for the field type. */
static int conv_number(struct conv *c, const ProtobufCFieldDescriptor *f,
                       const struct jv *v, void *dst, int *set)
{
    *set = 0;
    if (v->kind == JV_NULL) {
        return 0;
    }
    if (v->kind != JV_NUM) {
        return type_err(c, f, v, 0);
    }
    int64_t iv = 0;
    uint64_t uv = 0;
    int r;
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        r = parse_int(v->raw, v->rawlen, 1, INT32_MIN, INT32_MAX, 0, &iv, &uv);
        if (r == 0) {
            *(int32_t *)dst = (int32_t)iv;
        }
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        r = parse_int(v->raw, v->rawlen, 1, INT64_MIN, INT64_MAX, 0, &iv, &uv);
        if (r == 0) {
            *(int64_t *)dst = iv;
        }
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        r = parse_int(v->raw, v->rawlen, 0, 0, 0, UINT32_MAX, &iv, &uv);
        if (r == 0) {
            *(uint32_t *)dst = (uint32_t)uv;
        }
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        r = parse_int(v->raw, v->rawlen, 0, 0, 0, UINT64_MAX, &iv, &uv);
        if (r == 0) {
            *(uint64_t *)dst = uv;
        }
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        char *tmp = keel_arena_alloc(c->a, v->rawlen + 1);
        if (tmp == NULL) {
            return KEEL_ENOMEM;
        }
        memcpy(tmp, v->raw, v->rawlen);
        tmp[v->rawlen] = '\0';
        errno = 0;
        double dv = strtod(tmp, NULL);
        r = (errno == ERANGE && fabs(dv) > 1.0) ? -1 : 0;
        if (f->type == PROTOBUF_C_TYPE_FLOAT) {
            if (r == 0 && fabs(dv) > 3.4028234663852886e38) {
                r = -1;
            }
            if (r == 0) {
                *(float *)dst = (float)dv;
            }
        } else if (r == 0) {
            *(double *)dst = dv;
        }
        break;
    }
    default:
        r = -1;
    }
    if (r != 0) {
        return type_err(c, f, v, 1);
    }
    *set = 1;
    return 0;
}

/* Convert one JSON node into the storage of a singular value of field f at
 * dst (for repeated fields: one element). *set tells whether a value was
 * stored (null leaves the field alone). */
static int conv_value(struct conv *c, const ProtobufCFieldDescriptor *f,
                      const struct jv *v, void *dst, int *set)
{
    *set = 0;
    switch (f->type) {
    case PROTOBUF_C_TYPE_ENUM:
        if (v->kind == JV_STR) {
            /* jsonpb matches the raw text between the quotes, escapes
             * and all: "\u0041SCEND" is not ASCEND. */
            const ProtobufCEnumValue *ev =
                memchr(v->raw, '\\', v->rawlen) != NULL
                    ? NULL
                    : protobuf_c_enum_descriptor_get_value_by_name(
                          f->descriptor, v->s);
            if (ev == NULL) {
                /* quoted, every byte may become \xNN: 4 per byte */
                char tn[160];
                size_t qn = v->rawlen * 4 + 3;
                char *q = keel_arena_alloc(c->a, qn);
                if (q == NULL) {
                    return KEEL_ENOMEM;
                }
                go_quote_bytes(v->raw, v->rawlen, q, qn);
                set_err(c->err, c->errlen, "unknown value %s for enum %s", q,
                        json_pb_go_enum_name(f->descriptor, tn, sizeof tn));
                return KEEL_EINVAL;
            }
            *(int32_t *)dst = ev->value;
            *set = 1;
            return 0;
        }
        return conv_number(c, f, v, dst, set);
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (v->kind == JV_STR) {
            if (f->type == PROTOBUF_C_TYPE_FLOAT ||
                f->type == PROTOBUF_C_TYPE_DOUBLE) {
                double nf = 0;
                int special = 1;
                if (v->rawlen == 3 && memcmp(v->raw, "NaN", 3) == 0) {
                    nf = NAN;
                } else if (v->rawlen == 8 &&
                           memcmp(v->raw, "Infinity", 8) == 0) {
                    nf = INFINITY;
                } else if (v->rawlen == 9 &&
                           memcmp(v->raw, "-Infinity", 9) == 0) {
                    nf = -INFINITY;
                } else {
                    special = 0;
                }
                if (special) {
                    if (f->type == PROTOBUF_C_TYPE_FLOAT) {
                        *(float *)dst = (float)nf;
                    } else {
                        *(double *)dst = nf;
                    }
                    *set = 1;
                    return 0;
                }
            }
            /* jsonpb: drop the quotes, parse the rest as a JSON document. */
            int rv;
            struct jv *inner = jp_parse_document(c->a, v->raw, v->rawlen, &rv,
                                                 c->err, c->errlen);
            if (inner == NULL) {
                return rv;
            }
            return conv_number(c, f, inner, dst, set);
        }
        return conv_number(c, f, v, dst, set);
    case PROTOBUF_C_TYPE_BOOL:
        if (v->kind == JV_NULL) {
            return 0;
        }
        if (v->kind != JV_BOOL) {
            return type_err(c, f, v, 0);
        }
        *(protobuf_c_boolean *)dst = v->b;
        *set = 1;
        return 0;
    case PROTOBUF_C_TYPE_STRING:
        if (v->kind == JV_NULL) {
            return 0;
        }
        if (v->kind != JV_STR) {
            return type_err(c, f, v, 0);
        }
        *(char **)dst = v->s;
        *set = 1;
        return 0;
    case PROTOBUF_C_TYPE_BYTES: {
        if (v->kind == JV_NULL) {
            return 0;
        }
        if (v->kind != JV_STR) {
            return type_err(c, f, v, 0);
        }
        ProtobufCBinaryData *bd = dst;
        uint8_t *data = keel_arena_alloc(c->a, v->n / 4 * 3 + 3);
        if (data == NULL) {
            return KEEL_ENOMEM;
        }
        size_t bad = 0;
        long n = b64_decode((const unsigned char *)v->s, v->n, data, &bad);
        if (n < 0) {
            set_err(c->err, c->errlen, "illegal base64 data at input byte %zu",
                    bad);
            return KEEL_EINVAL;
        }
        bd->data = data;
        bd->len = (size_t)n;
        *set = 1;
        return 0;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        if (v->kind == JV_NULL) {
            return 0;
        }
        ProtobufCMessage *sub = NULL;
        int rv = conv_message(c, f->descriptor, v, &sub);
        if (rv != 0) {
            return rv;
        }
        *(ProtobufCMessage **)dst = sub;
        *set = 1;
        return 0;
    }
    }
    return KEEL_EINVAL;
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* The node for field f in obj: the camel name wins over the original one,
 * and for a repeated key the last occurrence wins (Go map semantics). */
static const struct jv *lookup(const struct jv *obj,
                               const ProtobufCFieldDescriptor *f)
{
    char camel[128];
    camel_name(f->name, camel, sizeof camel);
    size_t on = strlen(f->name), cn = strlen(camel);
    const struct jv *orig = NULL, *cam = NULL;
    for (size_t i = 0; i < obj->n; i++) {
        const struct jv_key *k = &obj->keys[i];
        if (k->n == cn && memcmp(k->s, camel, cn) == 0) {
            cam = obj->items[i];
        } else if (k->n == on && memcmp(k->s, f->name, on) == 0) {
            orig = obj->items[i];
        }
    }
    return cam ? cam : orig;
}

static int is_oneof(const ProtobufCFieldDescriptor *f)
{
    return (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
}

static int conv_field(struct conv *c, const ProtobufCFieldDescriptor *f,
                      const struct jv *v, ProtobufCMessage *m)
{
    char *base = (char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        if (v->kind == JV_NULL) {
            return 0;
        }
        if (v->kind != JV_ARR) {
            set_err(c->err, c->errlen,
                    "json: cannot unmarshal %s into Go value of type "
                    "[]json.RawMessage",
                    kind_name(v->kind));
            return KEEL_EINVAL;
        }
        size_t es = elem_size(f);
        char *arr = NULL;
        if (v->n > 0) {
            arr = keel_arena_alloc(c->a, es * v->n);
            if (arr == NULL) {
                return KEEL_ENOMEM;
            }
            memset(arr, 0, es * v->n);
        }
        for (size_t i = 0; i < v->n; i++) {
            int set;
            void *slot = arr + i * es;
            if (f->type == PROTOBUF_C_TYPE_STRING) {
                *(char **)slot = (char *)protobuf_c_empty_string;
            }
            int rv = conv_value(c, f, v->items[i], slot, &set);
            if (rv != 0) {
                return rv;
            }
            if (!set && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                /* [null]: an empty element, never a NULL pointer that the
                 * packer would trip over. */
                ProtobufCMessage *sub = NULL;
                struct jv empty = {.kind = JV_OBJ};
                rv = conv_message(c, f->descriptor, &empty, &sub);
                if (rv != 0) {
                    return rv;
                }
                *(ProtobufCMessage **)slot = sub;
            }
        }
        *(size_t *)(base + f->quantifier_offset) = v->n;
        *(void **)(base + f->offset) = arr;
        return 0;
    }
    int set;
    int rv = conv_value(c, f, v, base + f->offset, &set);
    if (rv != 0) {
        return rv;
    }
    if (is_oneof(f)) {
        uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
        if (set) {
            *which = f->id;
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE ||
                   f->type == PROTOBUF_C_TYPE_STRING ||
                   f->type == PROTOBUF_C_TYPE_BYTES) {
            /* jsonpb sets a wrapper around a nil pointer: on the wire
             * nothing is sent, so the oneof ends up unset. */
            *which = 0;
        } else {
            /* A null scalar member is still a member set to zero. */
            memset(base + f->offset, 0, elem_size(f));
            *which = f->id;
        }
        return 0;
    }
    if (set && f->label == PROTOBUF_C_LABEL_OPTIONAL &&
        f->quantifier_offset != 0 && f->type != PROTOBUF_C_TYPE_MESSAGE &&
        f->type != PROTOBUF_C_TYPE_STRING) {
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
    }
    return 0;
}

static int conv_message(struct conv *c, const ProtobufCMessageDescriptor *d,
                        const struct jv *obj, ProtobufCMessage **out)
{
    if (obj->kind != JV_OBJ) {
        set_err(c->err, c->errlen,
                "json: cannot unmarshal %s into Go value of type "
                "map[string]json.RawMessage",
                kind_name(obj->kind));
        return KEEL_EINVAL;
    }
    ProtobufCMessage *m = keel_arena_alloc(c->a, d->sizeof_message);
    if (m == NULL) {
        return KEEL_ENOMEM;
    }
    d->message_init(m);
    /* Plain fields first, then oneof members, as jsonpb does. */
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < d->n_fields; i++) {
            const ProtobufCFieldDescriptor *f = &d->fields[i];
            if (is_oneof(f) != pass) {
                continue;
            }
            const struct jv *v = lookup(obj, f);
            if (v == NULL) {
                continue;
            }
            int rv = conv_field(c, f, v, m);
            if (rv != 0) {
                return rv;
            }
        }
    }
    *out = m;
    return 0;
}

static int decode_common(const ProtobufCMessageDescriptor *d, const char *json,
                         size_t len, int final, struct keel_arena *a,
                         ProtobufCMessage **out, size_t *consumed, char *err,
                         size_t errlen)
{
    if (err && errlen) {
        err[0] = '\0';
    }
    *out = NULL;
    struct jp j = {.p = json,
                   .end = json + len,
                   .a = a,
                   .decoder = 1,
                   .err = err,
                   .errlen = errlen};
    jp_skip_space(&j);
    if (j.p == j.end) {
        /* io.EOF: no value at all. */
        if (consumed) {
            *consumed = final ? len : 0;
        }
        return final ? 0 : -EAGAIN;
    }
    struct hint top = {H_MSG, d, NULL};
    struct jv *v = jp_value(&j, &top);
    if (v == NULL) {
        if (j.truncated && !final) {
            if (consumed) {
                *consumed = 0;
            }
            return -EAGAIN;
        }
        return j.rv;
    }
    /* A top-level number may continue in the next chunk. */
    if (!final && v->kind == JV_NUM && j.p == j.end) {
        *consumed = 0;
        return -EAGAIN;
    }
    if (consumed) {
        *consumed = (size_t)(j.p - json);
    }
    struct conv c = {.a = a, .err = err, .errlen = errlen};
    if (v->kind == JV_NULL) {
        struct jv empty = {.kind = JV_OBJ};
        v = &empty;
        return conv_message(&c, d, v, out);
    }
    return conv_message(&c, d, v, out);
}

int json_pb_decode(const ProtobufCMessageDescriptor *d, const char *json,
                   size_t len, struct keel_arena *a, ProtobufCMessage **out,
                   char *err, size_t errlen)
{
    int rv = decode_common(d, json, len, 1, a, out, NULL, err, errlen);
    if (rv == 0 && *out == NULL) {
        /* Empty body: an empty request, as etcd's gateway treats io.EOF. */
        struct conv c = {.a = a, .err = err, .errlen = errlen};
        struct jv empty = {.kind = JV_OBJ};
        rv = conv_message(&c, d, &empty, out);
    }
    if (rv == KEEL_ENOMEM) {
        set_err(err, errlen, "out of memory");
    }
    return rv;
}

int json_pb_decode_next(const ProtobufCMessageDescriptor *d, const char *json,
                        size_t len, bool final, struct keel_arena *a,
                        ProtobufCMessage **out, size_t *consumed, char *err,
                        size_t errlen)
{
    *consumed = 0;
    int rv = decode_common(d, json, len, final, a, out, consumed, err, errlen);
    if (rv == KEEL_ENOMEM) {
        set_err(err, errlen, "out of memory");
    }
    return rv;
}

/* ------------------------------------------------------------------------ */
/* message -> JSON                                                          */

static int enc_message(struct json_pb_buf *b, const ProtobufCMessage *m);

/* Go's strconv.FormatFloat(f, 'g'-like as encoding/json prints floats):
 * shortest representation that round-trips, plain notation for
 * 1e-6 <= |f| < 1e21, exponent notation otherwise. */
static int enc_float(struct json_pb_buf *b, double v, int bits)
{
    char tmp[64];
    if (isnan(v)) {
        return buf_puts(b, "\"NaN\"");
    }
    if (isinf(v)) {
        return buf_puts(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
    }
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        double back = strtod(tmp, NULL);
        if (bits == 32 ? (float)back == (float)v : back == v) {
            break;
        }
    }
    double av = fabs(v);
    if (av != 0 && (av < 1e-6 || av >= 1e21)) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        /* Go cleans a two-digit negative exponent: e-07 -> e-7 (but keeps
         * e+21 and e-100). */
        size_t n = strlen(tmp);
        if (n >= 4 && tmp[n - 4] == 'e' && tmp[n - 3] == '-' &&
            tmp[n - 2] == '0') {
            tmp[n - 2] = tmp[n - 1];
            tmp[n - 1] = '\0';
        }
    } else {
        /* plain notation with the digits found above */
        char g[64];
        snprintf(g, sizeof g, "%.*g", prec, v);
        if (strchr(g, 'e') != NULL) {
            /* %g chose exponent form for a value Go prints plainly. */
            int dec = 0;
            const char *e = strchr(g, 'e');
            int exp = atoi(e + 1);
            int digits = 0;
            for (const char *p = g; p < e; p++) {
                digits += is_digit(*p);
            }
            dec = digits - 1 - exp;
            snprintf(tmp, sizeof tmp, "%.*f", dec > 0 ? dec : 0, v);
        } else {
            snprintf(tmp, sizeof tmp, "%s", g);
        }
    }
    return buf_puts(b, tmp);
}

static int enc_scalar(struct json_pb_buf *b, const ProtobufCFieldDescriptor *f,
                      const void *p)
{
    char tmp[48];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(tmp, sizeof tmp, "%" PRId32, *(const int32_t *)p);
        return buf_puts(b, tmp);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(tmp, sizeof tmp, "%" PRIu32, *(const uint32_t *)p);
        return buf_puts(b, tmp);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(tmp, sizeof tmp, "\"%" PRId64 "\"", *(const int64_t *)p);
        return buf_puts(b, tmp);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(tmp, sizeof tmp, "\"%" PRIu64 "\"", *(const uint64_t *)p);
        return buf_puts(b, tmp);
    case PROTOBUF_C_TYPE_FLOAT:
        return enc_float(b, *(const float *)p, 32);
    case PROTOBUF_C_TYPE_DOUBLE:
        return enc_float(b, *(const double *)p, 64);
    case PROTOBUF_C_TYPE_BOOL:
        return buf_puts(b, *(const protobuf_c_boolean *)p ? "true" : "false");
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t v = *(const int32_t *)p;
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value(f->descriptor, v);
        if (ev != NULL) {
            json_pb_append_raw(b, "\"", 1);
            buf_puts(b, ev->name);
            return json_pb_append_raw(b, "\"", 1);
        }
        snprintf(tmp, sizeof tmp, "%" PRId32, v);
        return buf_puts(b, tmp);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_pb_append_string(b, s ? s : "", s ? strlen(s) : 0);
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *bd = p;
        return buf_base64(b, bd->data, bd->len);
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (sub == NULL) {
            return buf_puts(b, "null");
        }
        return enc_message(b, sub);
    }
    }
    return KEEL_EINVAL;
}

/* Whether a singular (non-oneof) proto3 field holds its zero value. */
static int is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return *(const uint32_t *)p == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)p == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)p;
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s == NULL || s[0] == '\0';
    }
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)p == NULL;
    }
    return 1;
}

static int enc_message(struct json_pb_buf *b, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    int first = 1;
    json_pb_append_raw(b, "{", 1);
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const void *p = base + f->offset;
        size_t count = 0;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            count = *(const size_t *)(base + f->quantifier_offset);
            if (count == 0) {
                continue;
            }
        } else if (is_oneof(f)) {
            if (*(const uint32_t *)(base + f->quantifier_offset) != f->id) {
                continue;
            }
            /* A set oneof member holding a NULL message prints as null,
             * like jsonpb's nil pointer inside a set wrapper. */
        } else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
                   f->quantifier_offset != 0 &&
                   f->type != PROTOBUF_C_TYPE_MESSAGE &&
                   f->type != PROTOBUF_C_TYPE_STRING) {
            /* proto2 / proto3-optional scalar: printed when present. */
            if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset)) {
                continue;
            }
        } else if (f->label != PROTOBUF_C_LABEL_REQUIRED && is_zero(f, p)) {
            continue;
        }
        if (!first) {
            json_pb_append_raw(b, ",", 1);
        }
        first = 0;
        json_pb_append_string(b, f->name, strlen(f->name));
        json_pb_append_raw(b, ":", 1);
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            const char *arr = *(char *const *)p;
            size_t es = elem_size(f);
            json_pb_append_raw(b, "[", 1);
            for (size_t k = 0; k < count; k++) {
                if (k) {
                    json_pb_append_raw(b, ",", 1);
                }
                enc_scalar(b, f, arr + k * es);
            }
            json_pb_append_raw(b, "]", 1);
        } else {
            enc_scalar(b, f, p);
        }
    }
    return json_pb_append_raw(b, "}", 1);
}

int json_pb_encode_append(const ProtobufCMessage *m, struct json_pb_buf *b)
{
    enc_message(b, m);
    return b->oom ? KEEL_ENOMEM : 0;
}

static char *finish(struct json_pb_buf *b, size_t *len)
{
    if (b->oom || b->data == NULL) {
        free(b->data);
        return NULL;
    }
    if (len) {
        *len = b->len;
    }
    return b->data;
}

char *json_pb_encode(const ProtobufCMessage *m, size_t *len)
{
    struct json_pb_buf b = {0};
    json_pb_encode_append(m, &b);
    return finish(&b, len);
}

char *json_pb_encode_stream_result(const ProtobufCMessage *m, size_t *len)
{
    struct json_pb_buf b = {0};
    buf_puts(&b, "{\"result\":");
    json_pb_encode_append(m, &b);
    buf_puts(&b, "}\n");
    return finish(&b, len);
}
