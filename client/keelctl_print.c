/*
 * keelctl output helpers that reproduce what etcdctl's Go printers produce:
 *   - JSON as Go's encoding/json renders the gogo-generated structs
 *     (etcd: etcdctl/ctlv3/command/printer_json.go): field names are the
 *     proto names, every field is omitempty, bytes are base64, int64 and
 *     uint64 are bare numbers, oneofs appear as {"<Oneof>":{"<Member>":..}},
 *     and strings are HTML-escaped (<, >, & as \u003c...);
 *   - Go's %q quoting (printer_fields.go);
 *   - tablewriter tables (printer_table.go): centred upper-case header,
 *     right-aligned cells;
 *   - humanize.Bytes and time.Duration.String().
 * The JSON writer walks protobuf-c descriptors, so it covers every message.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keelctl.h"

/* ---- JSON -------------------------------------------------------------------- */

/* Length of a valid UTF-8 sequence at s (max n bytes), 0 if invalid. */
static size_t utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

void json_string(FILE *f, const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    static const char hex[] = "0123456789abcdef";
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            switch (c) {
                case '"':
                    fputs("\\\"", f);
                    break;
                case '\\':
                    fputs("\\\\", f);
                    break;
                case '\n':
                    fputs("\\n", f);
                    break;
                case '\r':
                    fputs("\\r", f);
                    break;
                case '\t':
                    fputs("\\t", f);
                    break;
                case '<':
                case '>':
                case '&':
                    fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
                    break;
                default:
                    if (c < 0x20) {
                        fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
                    } else {
                        fputc(c, f);
                    }
            }
            i++;
            continue;
        }
        size_t n = utf8_len(s + i, len - i);
        if (n == 0) {
            fputs("\\ufffd", f);
            i++;
            continue;
        }
        if (n == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 &&
            (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
            fprintf(f, "\\u202%c", s[i + 2] == 0xa8 ? '8' : '9');
        } else {
            fwrite(s + i, 1, n, f);
        }
        i += n;
    }
    fputc('"', f);
}

/* The same under a name files that use jansson (which has its own
 * json_string) can call. */
void go_json_string(FILE *f, const char *str, size_t len)
    __attribute__((alias("json_string")));

static void base64(FILE *f, const uint8_t *s, size_t n)
{
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', f);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        fputc(tbl[v >> 18], f);
        fputc(tbl[(v >> 12) & 63], f);
        fputc(tbl[(v >> 6) & 63], f);
        fputc(tbl[v & 63], f);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        fprintf(f, "%c%c==", tbl[v >> 18], tbl[(v >> 12) & 63]);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
        fprintf(f, "%c%c%c=", tbl[v >> 18], tbl[(v >> 12) & 63],
                tbl[(v >> 6) & 63]);
    }
    fputc('"', f);
}

/* Is the value at p (one element of type fd) the Go zero value? */
static int scalar_is_zero(const ProtobufCFieldDescriptor *fd, const void *p)
{
    switch (fd->type) {
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
        case PROTOBUF_C_TYPE_BOOL:
            return *(const protobuf_c_boolean *)p == 0;
        case PROTOBUF_C_TYPE_FLOAT:
            return *(const float *)p == 0;
        case PROTOBUF_C_TYPE_DOUBLE:
            return *(const double *)p == 0;
        case PROTOBUF_C_TYPE_STRING: {
            const char *s = *(const char *const *)p;
            return s == NULL || s[0] == '\0';
        }
        case PROTOBUF_C_TYPE_BYTES:
            return ((const ProtobufCBinaryData *)p)->len == 0;
        case PROTOBUF_C_TYPE_MESSAGE:
            return *(const void *const *)p == NULL;
    }
    return 1;
}

static void json_value(FILE *f, const ProtobufCFieldDescriptor *fd,
                       const void *p)
{
    switch (fd->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_ENUM:
            fprintf(f, "%d", *(const int32_t *)p);
            break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
            fprintf(f, "%u", *(const uint32_t *)p);
            break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
            fprintf(f, "%lld", (long long)*(const int64_t *)p);
            break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
            fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p);
            break;
        case PROTOBUF_C_TYPE_BOOL:
            fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f);
            break;
        case PROTOBUF_C_TYPE_FLOAT:
            fprintf(f, "%g", (double)*(const float *)p);
            break;
        case PROTOBUF_C_TYPE_DOUBLE:
            fprintf(f, "%g", *(const double *)p);
            break;
        case PROTOBUF_C_TYPE_STRING: {
            const char *s = *(const char *const *)p;
            json_string(f, s ? s : "", s ? strlen(s) : 0);
            break;
        }
        case PROTOBUF_C_TYPE_BYTES: {
            const ProtobufCBinaryData *b = p;
            base64(f, b->data, b->len);
            break;
        }
        case PROTOBUF_C_TYPE_MESSAGE:
            json_msg(f, *(const ProtobufCMessage *const *)p);
            break;
    }
}

/* The Go field holding a oneof: the oneof's name in CamelCase. protobuf-c
 * descriptors do not keep oneof names, so the etcd ones are listed. */
static const char *oneof_go_name(const ProtobufCMessageDescriptor *d)
{
    if (strcmp(d->short_name, "ResponseOp") == 0) {
        return "Response";
    }
    if (strcmp(d->short_name, "RequestOp") == 0) {
        return "Request";
    }
    if (strcmp(d->short_name, "Compare") == 0) {
        return "TargetUnion";
    }
    if (strcmp(d->short_name, "WatchRequest") == 0) {
        return "RequestUnion";
    }
    return "Oneof";
}

static void camel(FILE *f, const char *name)
{
    int up = 1;
    for (const char *p = name; *p; p++) {
        if (*p == '_') {
            up = 1;
            continue;
        }
        fputc(up ? (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p) : *p, f);
        up = 0;
    }
}

/* Write the fields of m (no braces); *first tracks the comma. Exposed so
 * clientv3 structs that embed a ResponseHeader can be flattened. */
static void json_fields(FILE *f, const ProtobufCMessage *m, int *first)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        const char *base = (const char *)m;
        const void *member = base + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + fd->quantifier_offset);
            if (n == 0) {
                continue;
            }
            fprintf(f, "%s\"%s\":[", *first ? "" : ",", fd->name);
            *first = 0;
            size_t esz;
            switch (fd->type) {
                case PROTOBUF_C_TYPE_INT64:
                case PROTOBUF_C_TYPE_SINT64:
                case PROTOBUF_C_TYPE_SFIXED64:
                case PROTOBUF_C_TYPE_UINT64:
                case PROTOBUF_C_TYPE_FIXED64:
                case PROTOBUF_C_TYPE_DOUBLE:
                    esz = 8;
                    break;
                case PROTOBUF_C_TYPE_STRING:
                case PROTOBUF_C_TYPE_MESSAGE:
                    esz = sizeof(void *);
                    break;
                case PROTOBUF_C_TYPE_BYTES:
                    esz = sizeof(ProtobufCBinaryData);
                    break;
                case PROTOBUF_C_TYPE_BOOL:
                    esz = sizeof(protobuf_c_boolean);
                    break;
                default:
                    esz = 4;
            }
            const char *arr = *(const char *const *)member;
            for (size_t k = 0; k < n; k++) {
                if (k) {
                    fputc(',', f);
                }
                if (fd->type == PROTOBUF_C_TYPE_MESSAGE &&
                    ((const void *const *)arr)[k] == NULL) {
                    fputs("null", f);
                    continue;
                }
                json_value(f, fd, arr + k * esz);
            }
            fputc(']', f);
            continue;
        }
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(base + fd->quantifier_offset);
            if (which != fd->id) {
                continue;
            }
            fprintf(f, "%s\"%s\":{\"", *first ? "" : ",", oneof_go_name(d));
            camel(f, fd->name);
            fputs("\":", f);
            if (fd->type == PROTOBUF_C_TYPE_MESSAGE &&
                *(const void *const *)member == NULL) {
                fputs("null", f);
            } else {
                json_value(f, fd, member);
            }
            fputc('}', f);
            *first = 0;
            continue;
        }
        if (scalar_is_zero(fd, member)) {
            continue;
        }
        fprintf(f, "%s\"%s\":", *first ? "" : ",", fd->name);
        *first = 0;
        json_value(f, fd, member);
    }
}

void json_msg(FILE *f, const ProtobufCMessage *m)
{
    int first = 1;
    fputc('{', f);
    json_fields(f, m, &first);
    fputc('}', f);
}

void print_json_msg(const ProtobufCMessage *m)
{
    json_msg(stdout, m);
    fputc('\n', stdout);
}

/* {"cluster_id":..,...} of a clientv3 struct embedding *ResponseHeader,
 * followed by `rest` (already formatted, starting with a comma or empty). */
void json_flat_header(const Etcdserverpb__ResponseHeader *h, int *first)
{
    if (h) {
        json_fields(stdout, &h->base, first);
    }
}

void print_protobuf(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        ctl_die(EXIT_ERROR, "out of memory");
    }
    protobuf_c_message_pack(m, buf);
    fwrite(buf, 1, n, stdout);
    free(buf);
}

/* ---- Go %q ----------------------------------------------------------------- */

void go_quote(FILE *f, const uint8_t *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            switch (c) {
                case '\a':
                    fputs("\\a", f);
                    break;
                case '\b':
                    fputs("\\b", f);
                    break;
                case '\f':
                    fputs("\\f", f);
                    break;
                case '\n':
                    fputs("\\n", f);
                    break;
                case '\r':
                    fputs("\\r", f);
                    break;
                case '\t':
                    fputs("\\t", f);
                    break;
                case '\v':
                    fputs("\\v", f);
                    break;
                case '"':
                    fputs("\\\"", f);
                    break;
                case '\\':
                    fputs("\\\\", f);
                    break;
                default:
                    if (c < 0x20 || c == 0x7f) {
                        fprintf(f, "\\x%c%c", hex[c >> 4], hex[c & 15]);
                    } else {
                        fputc(c, f);
                    }
            }
            i++;
            continue;
        }
        size_t n = utf8_len(s + i, len - i);
        if (n == 0) {
            fprintf(f, "\\x%c%c", hex[c >> 4], hex[c & 15]);
            i++;
            continue;
        }
        /* Printable non-ASCII runes are kept; C1 controls are escaped. */
        if (n == 2 && c == 0xc2 && s[i + 1] < 0xa0) {
            fprintf(f, "\\u00%c%c", hex[s[i + 1] >> 4], hex[s[i + 1] & 15]);
        } else {
            fwrite(s + i, 1, n, f);
        }
        i += n;
    }
    fputc('"', f);
}

/* ---- simple and fields printers ---------------------------------------------- */

static void print_bytes(const ProtobufCBinaryData *b)
{
    if (g.hex) {
        for (size_t i = 0; i < b->len; i++) {
            printf("\\x%02x", b->data[i]);
        }
    } else if (b->len > 0) {
        fwrite(b->data, 1, b->len, stdout);
    }
    fputc('\n', stdout);
}

/* etcd: printKV in etcdctl/ctlv3/command/util.go */
void print_kv_simple(const Mvccpb__KeyValue *kv, int value_only)
{
    if (!value_only) {
        print_bytes(&kv->key);
    }
    print_bytes(&kv->value);
}

void fields_hdr(const Etcdserverpb__ResponseHeader *h)
{
    static const Etcdserverpb__ResponseHeader zero =
        ETCDSERVERPB__RESPONSE_HEADER__INIT;
    if (h == NULL) {
        h = &zero;
    }
    printf("\"ClusterID\" : %llu\n", (unsigned long long)h->cluster_id);
    printf("\"MemberID\" : %llu\n", (unsigned long long)h->member_id);
    printf("\"Revision\" : %lld\n", (long long)h->revision);
    printf("\"RaftTerm\" : %llu\n", (unsigned long long)h->raft_term);
}

void fields_kv(const char *pfx, const Mvccpb__KeyValue *kv)
{
    printf("\"%sKey\" : ", pfx);
    go_quote(stdout, kv->key.data, kv->key.len);
    printf("\n\"%sCreateRevision\" : %lld\n", pfx,
           (long long)kv->create_revision);
    printf("\"%sModRevision\" : %lld\n", pfx, (long long)kv->mod_revision);
    printf("\"%sVersion\" : %lld\n", pfx, (long long)kv->version);
    printf("\"%sValue\" : ", pfx);
    go_quote(stdout, kv->value.data, kv->value.len);
    printf("\n\"%sLease\" : %lld\n", pfx, (long long)kv->lease);
}

void ctl_unsupported_format(void)
{
    ctl_die(EXIT_BAD_FEATURE, "%s not supported as output format",
            g.write_out);
}

/* ---- humanize, durations, tables ----------------------------------------------- */

/* github.com/dustin/go-humanize Bytes(): SI units, one decimal below 10. */
void humanize_bytes(uint64_t n, char *out, size_t len)
{
    static const char *const sfx[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
    if (n < 10) {
        snprintf(out, len, "%llu B", (unsigned long long)n);
        return;
    }
    double v = (double)n;
    int e = 0;
    while (v >= 1000 && e < 6) {
        v /= 1000;
        e++;
    }
    /* humanize rounds to one decimal first: floor(v*10+0.5)/10 */
    double r = (double)(long long)(v * 10 + 0.5) / 10;
    snprintf(out, len, r < 10 ? "%.1f %s" : "%.0f %s", r, sfx[e]);
}

/* Go's time.Duration.String() for a non-negative duration. */
void go_duration(uint64_t ns, char *out, size_t len)
{
    if (ns == 0) {
        snprintf(out, len, "0s");
        return;
    }
    char frac[32];
    const char *unit;
    uint64_t whole, rem, scale;
    if (ns < 1000) {
        snprintf(out, len, "%lluns", (unsigned long long)ns);
        return;
    } else if (ns < 1000000) {
        unit = "\xc2\xb5s", scale = 1000;
    } else if (ns < 1000000000ull) {
        unit = "ms", scale = 1000000;
    } else {
        /* seconds, minutes, hours */
        uint64_t s = ns / 1000000000ull;
        rem = ns % 1000000000ull;
        frac[0] = '\0';
        if (rem) {
            snprintf(frac, sizeof(frac), ".%09llu", (unsigned long long)rem);
            size_t l = strlen(frac);
            while (frac[l - 1] == '0') {
                frac[--l] = '\0';
            }
        }
        if (s < 60) {
            snprintf(out, len, "%llu%ss", (unsigned long long)s, frac);
        } else if (s < 3600) {
            snprintf(out, len, "%llum%llu%ss", (unsigned long long)(s / 60),
                     (unsigned long long)(s % 60), frac);
        } else {
            snprintf(out, len, "%lluh%llum%llu%ss",
                     (unsigned long long)(s / 3600),
                     (unsigned long long)(s % 3600 / 60),
                     (unsigned long long)(s % 60), frac);
        }
        return;
    }
    whole = ns / scale;
    rem = ns % scale;
    frac[0] = '\0';
    if (rem) {
        int digits = scale == 1000 ? 3 : 6;
        snprintf(frac, sizeof(frac), ".%0*llu", digits,
                 (unsigned long long)rem);
        size_t l = strlen(frac);
        while (frac[l - 1] == '0') {
            frac[--l] = '\0';
        }
    }
    snprintf(out, len, "%llu%s%s", (unsigned long long)whole, frac, unit);
}

/* Display width: runes, not bytes (tablewriter uses runewidth). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) {
        w += ((unsigned char)*s & 0xc0) != 0x80;
    }
    return w;
}

static void table_line(const size_t *w, size_t ncols)
{
    fputc('+', stdout);
    for (size_t c = 0; c < ncols; c++) {
        for (size_t i = 0; i < w[c] + 2; i++) {
            fputc('-', stdout);
        }
        fputc('+', stdout);
    }
    fputc('\n', stdout);
}

void print_table(const char *const *hdr, size_t ncols, char ***rows,
                 size_t nrows)
{
    size_t w[16] = {0};
    for (size_t c = 0; c < ncols; c++) {
        w[c] = width(hdr[c]);
        for (size_t r = 0; r < nrows; r++) {
            size_t x = width(rows[r][c]);
            if (x > w[c]) {
                w[c] = x;
            }
        }
    }
    table_line(w, ncols);
    fputc('|', stdout);
    for (size_t c = 0; c < ncols; c++) {
        size_t gap = w[c] - width(hdr[c]);
        size_t left = gap / 2;
        printf(" %*s", (int)left, "");
        for (const char *p = hdr[c]; *p; p++) {
            fputc(*p >= 'a' && *p <= 'z' ? *p - 32 : *p, stdout);
        }
        printf("%*s |", (int)(gap - left), "");
    }
    fputc('\n', stdout);
    table_line(w, ncols);
    for (size_t r = 0; r < nrows; r++) {
        fputc('|', stdout);
        for (size_t c = 0; c < ncols; c++) {
            printf(" %*s%s |", (int)(w[c] - width(rows[r][c])), "",
                   rows[r][c]);
        }
        fputc('\n', stdout);
    }
    table_line(w, ncols);
}

/* ---- progress on a terminal ---------------------------------------------- */

void ctl_progress_start(struct ctl_progress *p, const char *what,
                        uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->what = what;
    p->total = total;
    p->on = isatty(STDERR_FILENO);
    p->t0_ns = uv_hrtime();
}

void ctl_progress_update(struct ctl_progress *p, uint64_t done)
{
    if (!p->on) {
        return;
    }
    uint64_t now = uv_hrtime();
    if (now - p->last_ns < 100000000ull && done != p->total) {
        return;
    }
    p->last_ns = now;
    double secs = (double)(now - p->t0_ns) / 1e9;
    char d[32], t[32], r[32];
    humanize_bytes(done, d, sizeof d);
    humanize_bytes(secs > 0 ? (uint64_t)((double)done / secs) : 0, r,
                   sizeof r);
    if (p->total > 0) {
        enum { W = 30 };
        char bar[W + 1];
        size_t fill = (size_t)((double)W * (double)done / (double)p->total);
        for (size_t i = 0; i < W; i++) {
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        }
        bar[W] = 0;
        humanize_bytes(p->total, t, sizeof t);
        fprintf(stderr, "\r\033[K%s [%s] %s / %s  %s/s", p->what, bar, d, t,
                r);
    } else {
        fprintf(stderr, "\r\033[K%s %s  %s/s", p->what, d, r);
    }
    fflush(stderr);
}

void ctl_progress_end(struct ctl_progress *p)
{
    if (p->on && p->last_ns != 0) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->on = 0;
}
