/*
 * keelctl key-value commands: get, put, del, txn, compaction, watch — with
 * etcdctl 3.4's flags, argument checks, request options (as clientv3's
 * OpOptions build them, etcd: clientv3/op.go) and printers
 * (etcd: etcdctl/ctlv3/command/{get,put,del,txn,compaction,watch}_command.go
 * and printer_{simple,fields,json}.go).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "keelctl.h"

static uint8_t zero_byte[1] = {0};

static void set_bytes(ProtobufCBinaryData *b, const char *s)
{
    b->data = (uint8_t *)s;
    b->len = strlen(s);
}

static void prefix_end(ProtobufCBinaryData *end, const char *key)
{
    size_t len = strlen(key);
    char *out = ctl_alloc(len + 1);
    end->len = keel_prefix_end(key, len, out);
    end->data = (uint8_t *)out;
}

/* ---- get ------------------------------------------------------------------ */

static const char *get_consistency, *get_order, *get_sort_by;
static int64_t get_limit, get_rev;
static int get_prefix, get_from_key, get_keys_only, get_value_only;

static struct flag get_flags[] = {
    {"consistency", 0, F_STRING, &get_consistency, 0},
    {"order", 0, F_STRING, &get_order, 0},
    {"sort-by", 0, F_STRING, &get_sort_by, 0},
    {"limit", 0, F_INT64, &get_limit, 0},
    {"prefix", 0, F_BOOL, &get_prefix, 0},
    {"from-key", 0, F_BOOL, &get_from_key, 0},
    {"rev", 0, F_INT64, &get_rev, 0},
    {"keys-only", 0, F_BOOL, &get_keys_only, 0},
    {"print-value-only", 0, F_BOOL, &get_value_only, 0},
    {NULL, 0, 0, NULL, 0},
};

static void get_defaults(void)
{
    get_consistency = "l";
    get_order = get_sort_by = "";
    get_limit = get_rev = 0;
    get_prefix = get_from_key = get_keys_only = get_value_only = 0;
}

static int str_ieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

/* etcd: getGetOp in get_command.go */
static void get_op(int argc, char **argv, Etcdserverpb__RangeRequest *r)
{
    if (argc == 0) {
        ctl_die(EXIT_BAD_ARGS, "get command needs one argument as key and an "
                               "optional argument as range_end");
    }
    if (get_prefix && get_from_key) {
        ctl_die(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at "
                               "the same time, choose one");
    }
    if (strcmp(get_consistency, "s") == 0) {
        r->serializable = 1;
    } else if (strcmp(get_consistency, "l") != 0) {
        ctl_die(EXIT_BAD_FEATURE, "unknown consistency flag \"%s\"",
                get_consistency);
    }
    const char *key = argv[0];
    if (argc > 1) {
        if (get_prefix || get_from_key) {
            ctl_die(EXIT_BAD_ARGS, "too many arguments, only accept one "
                                   "argument when `--prefix` or `--from-key` "
                                   "is set");
        }
        set_bytes(&r->range_end, argv[1]);
    }
    r->limit = get_limit;
    if (get_rev > 0) {
        r->revision = get_rev;
    }
    int order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    if (str_ieq(get_order, "ASCEND")) {
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND;
    } else if (str_ieq(get_order, "DESCEND")) {
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__DESCEND;
    } else if (get_order[0] != '\0') {
        ctl_die(EXIT_BAD_FEATURE, "bad sort order %s", get_order);
    }
    int target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
    if (str_ieq(get_sort_by, "CREATE")) {
        target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__CREATE;
    } else if (str_ieq(get_sort_by, "KEY")) {
        target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY;
    } else if (str_ieq(get_sort_by, "MODIFY")) {
        target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__MOD;
    } else if (str_ieq(get_sort_by, "VALUE")) {
        target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VALUE;
    } else if (str_ieq(get_sort_by, "VERSION")) {
        target = ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__VERSION;
    } else if (get_sort_by[0] != '\0') {
        ctl_die(EXIT_BAD_FEATURE, "bad sort target %s", get_sort_by);
    }
    /* clientv3.WithSort: by key ascending is the server's natural order. */
    if (target == ETCDSERVERPB__RANGE_REQUEST__SORT_TARGET__KEY &&
        order == ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__ASCEND) {
        order = ETCDSERVERPB__RANGE_REQUEST__SORT_ORDER__NONE;
    }
    r->sort_order = order;
    r->sort_target = target;
    set_bytes(&r->key, key);
    if (get_prefix) {
        if (key[0] == '\0') {
            r->key.data = zero_byte;
            r->key.len = 1;
            r->range_end.data = zero_byte;
            r->range_end.len = 1;
        } else {
            prefix_end(&r->range_end, key);
        }
    }
    if (get_from_key) {
        if (key[0] == '\0') {
            r->key.data = zero_byte;
            r->key.len = 1;
        }
        r->range_end.data = zero_byte;
        r->range_end.len = 1;
    }
    if (get_keys_only) {
        r->keys_only = 1;
    }
}

void ctl_print_get(const Etcdserverpb__RangeResponse *r, int value_only)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            for (size_t i = 0; i < r->n_kvs; i++) {
                print_kv_simple(r->kvs[i], value_only);
            }
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            for (size_t i = 0; i < r->n_kvs; i++) {
                fields_kv("", r->kvs[i]);
            }
            printf("\"More\" : %s\n", r->more ? "true" : "false");
            printf("\"Count\" : %lld\n", (long long)r->count);
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static void get_run(int argc, char **argv)
{
    Etcdserverpb__RangeRequest req = ETCDSERVERPB__RANGE_REQUEST__INIT;
    get_op(argc, argv, &req);
    struct keel_sync *s = ctl_client();
    struct keel_call call;
    if (ctl_call(s, &call, KEEL_M_RANGE, &req.base,
                 &etcdserverpb__range_response__descriptor,
                 KEEL_CALL_IDEMPOTENT) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    if (get_value_only && ctl_fmt != FMT_SIMPLE) {
        ctl_die(EXIT_BAD_ARGS,
                "print-value-only is only for `--write-out=simple`");
    }
    ctl_print_get((Etcdserverpb__RangeResponse *)call.resp, get_value_only);
    keel_call_cleanup(&call);
}

/* ---- put ------------------------------------------------------------------ */

static const char *put_lease;
static int put_prev_kv, put_ignore_value, put_ignore_lease;

static struct flag put_flags[] = {
    {"lease", 0, F_STRING, &put_lease, 0},
    {"prev-kv", 0, F_BOOL, &put_prev_kv, 0},
    {"ignore-value", 0, F_BOOL, &put_ignore_value, 0},
    {"ignore-lease", 0, F_BOOL, &put_ignore_lease, 0},
    {NULL, 0, 0, NULL, 0},
};

static void put_defaults(void)
{
    put_lease = "0";
    put_prev_kv = put_ignore_value = put_ignore_lease = 0;
}

static char *stdin_value;
/* In txn, etcdctl's bufio.Reader has already buffered stdin, so a put
 * without a value finds stdin empty. */
static int stdin_consumed;

/* etcd: argOrStdin in util.go — the rest of stdin, verbatim. */
static const char *arg_or_stdin(int argc, char **argv, int i)
{
    if (i < argc) {
        return argv[i];
    }
    if (stdin_consumed) {
        return NULL;
    }
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (cap - len - 1 == 0) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
    }
    if (buf == NULL || len == 0) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    free(stdin_value);
    stdin_value = buf;
    return buf;
}

/* etcd: getPutOp in put_command.go. value_len is set for stdin values. */
static void put_op(int argc, char **argv, Etcdserverpb__PutRequest *r)
{
    if (argc == 0) {
        ctl_die(EXIT_BAD_ARGS, "put command needs 1 argument and input from "
                               "stdin or 2 arguments");
    }
    if (put_ignore_value && argc > 1) {
        ctl_die(EXIT_BAD_ARGS,
                "put command needs only 1 argument when 'ignore-value' is set");
    }
    set_bytes(&r->key, argv[0]);
    if (!put_ignore_value) {
        const char *v = arg_or_stdin(argc, argv, 1);
        if (v == NULL) {
            ctl_die(EXIT_BAD_ARGS, "put command needs 1 argument and input "
                                   "from stdin or 2 arguments");
        }
        set_bytes(&r->value, v);
    }
    int64_t id;
    char err[200];
    if (parse_int64(put_lease, 16, &id, err, sizeof(err)) != 0) {
        ctl_die(EXIT_BAD_ARGS, "bad lease ID (%s), expecting ID in Hex", err);
    }
    r->lease = id;
    r->prev_kv = put_prev_kv;
    r->ignore_value = put_ignore_value;
    r->ignore_lease = put_ignore_lease;
}

static void print_put(const Etcdserverpb__PutResponse *r)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("OK\n");
            if (r->prev_kv) {
                print_kv_simple(r->prev_kv, 0);
            }
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            if (r->prev_kv) {
                fields_kv("Prev", r->prev_kv);
            }
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static void put_run(int argc, char **argv)
{
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    put_op(argc, argv, &req);
    struct keel_sync *s = ctl_client();
    struct keel_call call;
    if (ctl_call(s, &call, KEEL_M_PUT, &req.base,
                 &etcdserverpb__put_response__descriptor, 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    print_put((Etcdserverpb__PutResponse *)call.resp);
    keel_call_cleanup(&call);
}

/* ---- del ------------------------------------------------------------------ */

static int del_prefix, del_prev_kv, del_from_key;

static struct flag del_flags[] = {
    {"prefix", 0, F_BOOL, &del_prefix, 0},
    {"prev-kv", 0, F_BOOL, &del_prev_kv, 0},
    {"from-key", 0, F_BOOL, &del_from_key, 0},
    {NULL, 0, 0, NULL, 0},
};

static void del_defaults(void)
{
    del_prefix = del_prev_kv = del_from_key = 0;
}

/* etcd: getDelOp in del_command.go */
static void del_op(int argc, char **argv, Etcdserverpb__DeleteRangeRequest *r)
{
    if (argc == 0) {
        ctl_die(EXIT_BAD_ARGS, "del command needs one argument as key and an "
                               "optional argument as range_end");
    }
    if (del_prefix && del_from_key) {
        ctl_die(EXIT_BAD_ARGS, "`--prefix` and `--from-key` cannot be set at "
                               "the same time, choose one");
    }
    const char *key = argv[0];
    set_bytes(&r->key, key);
    if (argc > 1) {
        if (del_prefix || del_from_key) {
            ctl_die(EXIT_BAD_ARGS, "too many arguments, only accept one "
                                   "argument when `--prefix` or `--from-key` "
                                   "is set");
        }
        set_bytes(&r->range_end, argv[1]);
    }
    if (del_prefix) {
        if (key[0] == '\0') {
            r->key.data = zero_byte;
            r->key.len = 1;
            r->range_end.data = zero_byte;
            r->range_end.len = 1;
        } else {
            prefix_end(&r->range_end, key);
        }
    }
    r->prev_kv = del_prev_kv;
    if (del_from_key) {
        if (key[0] == '\0') {
            r->key.data = zero_byte;
            r->key.len = 1;
        }
        r->range_end.data = zero_byte;
        r->range_end.len = 1;
    }
}

static void print_del(const Etcdserverpb__DeleteRangeResponse *r)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("%lld\n", (long long)r->deleted);
            for (size_t i = 0; i < r->n_prev_kvs; i++) {
                print_kv_simple(r->prev_kvs[i], 0);
            }
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            printf("\"Deleted\" : %lld\n", (long long)r->deleted);
            for (size_t i = 0; i < r->n_prev_kvs; i++) {
                fields_kv("Prev", r->prev_kvs[i]);
            }
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static void del_run(int argc, char **argv)
{
    Etcdserverpb__DeleteRangeRequest req =
        ETCDSERVERPB__DELETE_RANGE_REQUEST__INIT;
    del_op(argc, argv, &req);
    struct keel_sync *s = ctl_client();
    struct keel_call call;
    if (ctl_call(s, &call, KEEL_M_DELETE_RANGE, &req.base,
                 &etcdserverpb__delete_range_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    print_del((Etcdserverpb__DeleteRangeResponse *)call.resp);
    keel_call_cleanup(&call);
}

/* ---- compaction ------------------------------------------------------------- */

static int compact_physical;
static struct flag compact_flags[] = {
    {"physical", 0, F_BOOL, &compact_physical, 0},
    {NULL, 0, 0, NULL, 0},
};

static void compaction_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "compaction command needs 1 argument");
    }
    int64_t rev;
    char err[200];
    if (parse_int64(argv[0], 10, &rev, err, sizeof(err)) != 0) {
        ctl_die(EXIT_ERROR, "%s", err);
    }
    Etcdserverpb__CompactionRequest req = ETCDSERVERPB__COMPACTION_REQUEST__INIT;
    req.revision = rev;
    req.physical = compact_physical;
    struct keel_sync *s = ctl_client();
    struct keel_call call;
    if (ctl_call(s, &call, KEEL_M_COMPACT, &req.base,
                 &etcdserverpb__compaction_response__descriptor,
                 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    printf("compacted revision %lld\n", (long long)rev);
    keel_call_cleanup(&call);
}

/* ---- txn ------------------------------------------------------------------- */

static int txn_interactive;
static struct flag txn_flags[] = {
    {"interactive", 'i', F_BOOL, &txn_interactive, 0},
    {NULL, 0, 0, NULL, 0},
};

/* bufio.Reader.ReadString('\n') then strings.TrimSpace; EOF before a
 * newline is an error even with data (etcdctl exits "Error: EOF"). */
static char *read_line(void)
{
    static char *line;
    static size_t cap;
    ssize_t n = getline(&line, &cap, stdin);
    if (n <= 0 || line[n - 1] != '\n') {
        ctl_die(EXIT_INVALID_INPUT, "EOF");
    }
    char *s = line;
    while (*s && isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

/* Go's Sscanf %q: a "double-quoted" (with Go escapes) or `raw` string at
 * *p, unquoted into a new string; NULL if malformed. */
static char *scan_quoted(const char **p)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    char q = *s;
    if (q != '"' && q != '`') {
        return NULL;
    }
    char *out = ctl_alloc(strlen(s) + 1);
    size_t n = 0;
    s++;
    while (*s && *s != q) {
        if (q == '"' && *s == '\\') {
            s++;
            switch (*s) {
                case 'n':
                    out[n++] = '\n';
                    break;
                case 't':
                    out[n++] = '\t';
                    break;
                case 'r':
                    out[n++] = '\r';
                    break;
                case '\\':
                case '"':
                case '\'':
                    out[n++] = *s;
                    break;
                case 'x': {
                    char hex[3] = {s[1], s[1] ? s[2] : 0, 0};
                    char *end;
                    long v = strtol(hex, &end, 16);
                    if (*end != '\0' || strlen(hex) != 2) {
                        return NULL;
                    }
                    out[n++] = (char)v;
                    s += 2;
                    break;
                }
                default:
                    return NULL;
            }
            s++;
            continue;
        }
        out[n++] = *s++;
    }
    if (*s != q) {
        return NULL;
    }
    out[n] = '\0';
    *p = s + 1;
    return out;
}

/* etcd: parseCompare in txn_command.go */
static Etcdserverpb__Compare *parse_compare(const char *line)
{
    const char *lp = strchr(line, '(');
    if (lp == NULL) {
        ctl_die(EXIT_INVALID_INPUT, "malformed comparison: %s", line);
    }
    size_t tlen = (size_t)(lp - line);
    const char *p = lp + 1;
    char *key = scan_quoted(&p);
    char op[8] = "";
    char *val = NULL;
    if (key && *p == ')') {
        p++;
        while (*p == ' ') {
            p++;
        }
        size_t k = 0;
        while (*p && *p != ' ' && k < sizeof(op) - 1) {
            op[k++] = *p++;
        }
        op[k] = '\0';
        val = scan_quoted(&p);
    }
    if (key == NULL || val == NULL || op[0] == '\0') {
        /* etcd: "malformed comparison: %s; got %s(%q) %s %q" with what
         * Sscanf managed to read. */
        fflush(stdout);
        fprintf(stderr, "Error: malformed comparison: %s; got %.*s(", line,
                (int)tlen, line);
        go_quote(stderr, (const uint8_t *)(key ? key : ""),
                 key ? strlen(key) : 0);
        fprintf(stderr, ") %s ", op);
        go_quote(stderr, (const uint8_t *)(val ? val : ""),
                 val ? strlen(val) : 0);
        fputc('\n', stderr);
        exit(EXIT_INVALID_INPUT);
    }
    Etcdserverpb__Compare *c = ctl_alloc(sizeof(*c));
    etcdserverpb__compare__init(c);
    set_bytes(&c->key, key);
    if (strcmp(op, "=") == 0) {
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL;
    } else if (strcmp(op, "!=") == 0) {
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__NOT_EQUAL;
    } else if (strcmp(op, ">") == 0) {
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__GREATER;
    } else if (strcmp(op, "<") == 0) {
        c->result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__LESS;
    } else {
        ctl_die(EXIT_INVALID_INPUT, "malformed comparison: %s", line);
    }
    int64_t v = 0;
    char err[200];
    int is_num = 0;
#define TARGET_IS(a) (tlen == strlen(a) && strncmp(line, a, tlen) == 0)
    if (TARGET_IS("ver") || TARGET_IS("version")) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VERSION;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VERSION;
        is_num = 1;
    } else if (TARGET_IS("c") || TARGET_IS("create")) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE;
        c->target_union_case =
            ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION;
        is_num = 1;
    } else if (TARGET_IS("m") || TARGET_IS("mod")) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__MOD;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_MOD_REVISION;
        is_num = 1;
    } else if (TARGET_IS("val") || TARGET_IS("value")) {
        c->target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE;
        c->target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE;
        set_bytes(&c->value, val);
    } else {
        ctl_die(EXIT_INVALID_INPUT,
                "malformed comparison: %s (unknown target %.*s)", line,
                (int)tlen, line);
    }
#undef TARGET_IS
    if (is_num) {
        if (parse_int64(val, 10, &v, err, sizeof(err)) != 0) {
            ctl_die(EXIT_INVALID_INPUT, "invalid txn compare request: %s",
                    line);
        }
        c->version = v; /* the union's int64 members share storage */
    }
    return c;
}

/* etcd: argify in util.go, including its quirk of cutting a 'single-quoted'
 * token to len(args)-1 bytes. Returns the count; tokens are malloc'd. */
static int argify(const char *s, char **out, int max)
{
    int n = 0;
    int single[64] = {0};
    const char *p = s;
    while (*p && n < max) {
        if (isspace((unsigned char)*p)) {
            p++;
            continue;
        }
        if (*p == '"') {
            const char *q = p + 1;
            while (*q && *q != '"') {
                q += (*q == '\\' && q[1]) ? 2 : 1;
            }
            if (*q == '"') {
                const char *t = p;
                char *u = scan_quoted(&t);
                if (u == NULL) {
                    ctl_die(EXIT_INVALID_INPUT, "invalid syntax");
                }
                out[n++] = u;
                p = q + 1;
                continue;
            }
            p++;
            continue;
        }
        if (*p == '\'') {
            const char *q = strchr(p + 1, '\'');
            if (q) {
                single[n] = 1;
                out[n++] = ctl_strndup(p, (size_t)(q - p + 1));
                p = q + 1;
                continue;
            }
            p++;
            continue;
        }
        const char *q = p;
        while (*q && !isspace((unsigned char)*q)) {
            q++;
        }
        out[n++] = ctl_strndup(p, (size_t)(q - p));
        p = q;
    }
    for (int i = 0; i < n; i++) {
        if (single[i]) {
            size_t end = (size_t)(n - 1);
            char *t = out[i];
            if (end < 1 || end > strlen(t)) {
                ctl_die(EXIT_INVALID_INPUT, "invalid syntax");
            }
            out[i] = ctl_strndup(t + 1, end - 1);
        }
    }
    return n;
}

/* Parse flags of one txn op line with the command's flag table. */
static int op_flags(struct flag *set, int argc, char **argv, char **pos)
{
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (a[0] != '-' || a[1] != '-') {
            pos[npos++] = a;
            continue;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        struct flag *f = NULL;
        for (struct flag *x = set; x->name; x++) {
            if (strlen(x->name) == len && strncmp(x->name, name, len) == 0) {
                f = x;
            }
        }
        if (f == NULL) {
            return -1;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (f->type == F_BOOL) {
            *(int *)f->ptr = v == NULL || strcmp(v, "true") == 0;
        } else {
            if (v == NULL) {
                if (i + 1 >= argc) {
                    return -1;
                }
                v = argv[++i];
            }
            if (f->type == F_STRING) {
                *(const char **)f->ptr = v;
            } else {
                char err[100];
                if (parse_int64(v, 10, f->ptr, err, sizeof(err)) != 0) {
                    return -1;
                }
            }
        }
    }
    return npos;
}

/* etcd: parseRequestUnion in txn_command.go */
static Etcdserverpb__RequestOp *parse_op(const char *line)
{
    char **args = ctl_alloc(64 * sizeof(char *));
    int n = argify(line, args, 64);
    if (n < 2) {
        ctl_die(EXIT_INVALID_INPUT, "invalid txn compare request: %s", line);
    }
    char **pos = ctl_alloc(64 * sizeof(char *));
    Etcdserverpb__RequestOp *op = ctl_alloc(sizeof(*op));
    etcdserverpb__request_op__init(op);
    int npos;
    if (strcmp(args[0], "put") == 0) {
        put_defaults();
        npos = op_flags(put_flags, n - 1, args + 1, pos);
        if (npos < 0) {
            ctl_die(EXIT_INVALID_INPUT, "invalid txn request: %s", line);
        }
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT;
        op->request_put = ctl_alloc(sizeof(*op->request_put));
        etcdserverpb__put_request__init(op->request_put);
        put_op(npos, pos, op->request_put);
    } else if (strcmp(args[0], "get") == 0) {
        get_defaults();
        npos = op_flags(get_flags, n - 1, args + 1, pos);
        if (npos < 0) {
            ctl_die(EXIT_INVALID_INPUT, "invalid txn request: %s", line);
        }
        op->request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE;
        op->request_range = ctl_alloc(sizeof(*op->request_range));
        etcdserverpb__range_request__init(op->request_range);
        get_op(npos, pos, op->request_range);
    } else if (strcmp(args[0], "del") == 0) {
        del_defaults();
        npos = op_flags(del_flags, n - 1, args + 1, pos);
        if (npos < 0) {
            ctl_die(EXIT_INVALID_INPUT, "invalid txn request: %s", line);
        }
        op->request_case =
            ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE;
        op->request_delete_range =
            ctl_alloc(sizeof(*op->request_delete_range));
        etcdserverpb__delete_range_request__init(op->request_delete_range);
        del_op(npos, pos, op->request_delete_range);
    } else {
        ctl_die(EXIT_INVALID_INPUT, "invalid txn request: %s", line);
    }
    return op; /* args and pos stay: the request points into them */
}

static void print_txn(const Etcdserverpb__TxnResponse *r)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("%s\n", r->succeeded ? "SUCCESS" : "FAILURE");
            for (size_t i = 0; i < r->n_responses; i++) {
                const Etcdserverpb__ResponseOp *o = r->responses[i];
                printf("\n");
                switch (o->response_case) {
                    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
                        print_del(o->response_delete_range);
                        break;
                    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
                        print_put(o->response_put);
                        break;
                    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
                        ctl_print_get(o->response_range, 0);
                        break;
                    default:
                        printf("unexpected response\n");
                }
            }
            break;
        case FMT_JSON:
            print_json_msg(&r->base);
            break;
        case FMT_PROTOBUF:
            print_protobuf(&r->base);
            break;
        case FMT_FIELDS:
            fields_hdr(r->header);
            printf("\"Succeeded\" : %s\n", r->succeeded ? "true" : "false");
            for (size_t i = 0; i < r->n_responses; i++) {
                const Etcdserverpb__ResponseOp *o = r->responses[i];
                switch (o->response_case) {
                    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
                        print_del(o->response_delete_range);
                        break;
                    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
                        print_put(o->response_put);
                        break;
                    case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
                        ctl_print_get(o->response_range, 0);
                        break;
                    default:
                        break;
                }
            }
            break;
        case FMT_TABLE:
            ctl_unsupported_format();
    }
}

static void txn_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS, "txn command does not accept argument");
    }
    ctl_client(); /* etcdctl creates the client before reading stdin */
    stdin_consumed = 1;
    Etcdserverpb__TxnRequest req = ETCDSERVERPB__TXN_REQUEST__INIT;
    Etcdserverpb__Compare *cmps[128];
    Etcdserverpb__RequestOp *succ[128], *fail[128];
    size_t nc = 0, ns = 0, nf = 0;
    if (txn_interactive) {
        printf("compares:\n");
    }
    for (char *l; *(l = read_line()) != '\0';) {
        if (nc < 128) {
            cmps[nc++] = parse_compare(l);
        }
    }
    if (txn_interactive) {
        printf("success requests (get, put, del):\n");
    }
    for (char *l; *(l = read_line()) != '\0';) {
        if (ns < 128) {
            succ[ns++] = parse_op(l);
        }
    }
    if (txn_interactive) {
        printf("failure requests (get, put, del):\n");
    }
    for (char *l; *(l = read_line()) != '\0';) {
        if (nf < 128) {
            fail[nf++] = parse_op(l);
        }
    }
    req.compare = cmps;
    req.n_compare = nc;
    req.success = succ;
    req.n_success = ns;
    req.failure = fail;
    req.n_failure = nf;
    struct keel_call call;
    if (ctl_call(ctl_client(), &call, KEEL_M_TXN, &req.base,
                 &etcdserverpb__txn_response__descriptor, 0) != KEEL_GRPC_OK) {
        ctl_die(EXIT_ERROR, "%s", ctl_err_text(&call));
    }
    print_txn((Etcdserverpb__TxnResponse *)call.resp);
    keel_call_cleanup(&call);
}

/* ---- watch ------------------------------------------------------------------ */

static int watch_interactive, watch_prefix, watch_prev_kv;
static int64_t watch_rev;
static struct flag watch_flags[] = {
    {"interactive", 'i', F_BOOL, &watch_interactive, 0},
    {"prefix", 0, F_BOOL, &watch_prefix, 0},
    {"rev", 0, F_INT64, &watch_rev, 0},
    {"prev-kv", 0, F_BOOL, &watch_prev_kv, 0},
    {NULL, 0, 0, NULL, 0},
};

static void print_watch(const Etcdserverpb__WatchResponse *r)
{
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            for (size_t i = 0; i < r->n_events; i++) {
                const Mvccpb__Event *e = r->events[i];
                printf("%s\n", e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE
                                   ? "DELETE"
                                   : "PUT");
                if (e->prev_kv) {
                    print_kv_simple(e->prev_kv, 0);
                }
                if (e->kv) {
                    print_kv_simple(e->kv, 0);
                }
            }
            break;
        case FMT_JSON: {
            /* clientv3.WatchResponse has no json tags: Go field names. */
            printf("{\"Header\":");
            if (r->header) {
                json_msg(stdout, &r->header->base);
            } else {
                printf("{}");
            }
            printf(",\"Events\":");
            if (r->n_events == 0) {
                printf("null");
            } else {
                printf("[");
                for (size_t i = 0; i < r->n_events; i++) {
                    if (i) {
                        printf(",");
                    }
                    json_msg(stdout, &r->events[i]->base);
                }
                printf("]");
            }
            printf(",\"CompactRevision\":%lld,\"Canceled\":%s,\"Created\":%s}"
                   "\n",
                   (long long)r->compact_revision,
                   r->canceled ? "true" : "false",
                   r->created ? "true" : "false");
            break;
        }
        case FMT_FIELDS:
            fields_hdr(r->header);
            for (size_t i = 0; i < r->n_events; i++) {
                const Mvccpb__Event *e = r->events[i];
                printf("\"Type\" : %s\n",
                       e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "DELETE"
                                                                    : "PUT");
                if (e->prev_kv) {
                    fields_kv("Prev", e->prev_kv);
                }
                if (e->kv) {
                    fields_kv("", e->kv);
                }
            }
            break;
        case FMT_PROTOBUF:
        case FMT_TABLE:
            ctl_unsupported_format();
    }
    fflush(stdout);
}

static int watch_ended;

/* One watch and the command to run per event ("watch ... -- cmd"). */
struct watch_ctx
{
    struct keel_watch w;
    char **exec;
    int nexec;
    struct watch_ctx *next;
};
static struct watch_ctx *watches; /* every watch started (interactive) */

static void watch_run_exec(const struct watch_ctx *x,
                           const Etcdserverpb__WatchResponse *r,
                           const Mvccpb__Event *e);

static void on_watch(struct keel_watch *w, const Etcdserverpb__WatchResponse *r)
{
    const struct watch_ctx *x = w->data;
    if (r->created && r->n_events == 0) {
        return; /* clientv3 does not deliver the created response */
    }
    if (r->canceled) {
        const char *why = r->compact_revision
                              ? "etcdserver: mvcc: required revision has been "
                                "compacted"
                              : (r->cancel_reason && r->cancel_reason[0]
                                     ? r->cancel_reason
                                     : "etcdserver: watch canceled");
        fflush(stdout);
        fprintf(stderr, "watch was canceled (%s)\n", why);
    }
    if (r->n_events == 0 && !r->canceled && !r->created &&
        r->compact_revision == 0) {
        printf("progress notify: %lld\n",
               (long long)(r->header ? r->header->revision : 0));
    }
    print_watch(r);
    if (x->nexec > 0) {
        for (size_t i = 0; i < r->n_events; i++) {
            watch_run_exec(x, r, r->events[i]);
        }
    }
}

static void on_watch_end(struct keel_watch *w, int status, const char *msg)
{
    (void)w;
    (void)status;
    (void)msg;
    watch_ended = 1;
}

/* Run the exec command of "watch ... -- cmd args" for one event
 * (etcd: printWatchCh in watch_command.go). */

static void go_quote_env(char *out, size_t len, const char *name,
                         const uint8_t *v, size_t vlen)
{
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    go_quote(f, v, vlen);
    fclose(f);
    snprintf(out, len, "%s=%s", name, buf);
    free(buf);
}

static void watch_run_exec(const struct watch_ctx *x,
                           const Etcdserverpb__WatchResponse *r,
                           const Mvccpb__Event *e)
{
    char **watch_exec = x->exec;
    int watch_nexec = x->nexec;
    const char *type =
        e->type == MVCCPB__EVENT__EVENT_TYPE__DELETE ? "DELETE" : "PUT";
    char rev[64];
    snprintf(rev, sizeof(rev), "ETCD_WATCH_REVISION=%lld",
             (long long)(r->header ? r->header->revision : 0));
    size_t klen = e->kv ? e->kv->key.len : 0;
    size_t vlen = e->kv ? e->kv->value.len : 0;
    char *ev = ctl_alloc(64), *ek = ctl_alloc(klen * 4 + 32),
         *evl = ctl_alloc(vlen * 4 + 32);
    go_quote_env(ev, 64, "ETCD_WATCH_EVENT_TYPE", (const uint8_t *)type,
                 strlen(type));
    go_quote_env(ek, klen * 4 + 32, "ETCD_WATCH_KEY",
                 e->kv ? e->kv->key.data : NULL, klen);
    go_quote_env(evl, vlen * 4 + 32, "ETCD_WATCH_VALUE",
                 e->kv ? e->kv->value.data : NULL, vlen);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        putenv(rev);
        putenv(ev);
        putenv(ek);
        putenv(evl);
        execvp(watch_exec[0], watch_exec);
        _exit(127);
    }
    int st = 0;
    if (pid > 0) {
        waitpid(pid, &st, 0);
    }
    if (pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "command [");
        for (int i = 0; i < watch_nexec; i++) {
            if (i) {
                fputc(' ', stderr);
            }
            go_quote(stderr, (const uint8_t *)watch_exec[i],
                     strlen(watch_exec[i]));
        }
        if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
            fprintf(stderr, "] error (exec: \"%s\": executable file not "
                            "found in $PATH)\n",
                    watch_exec[0]);
        } else if (WIFEXITED(st)) {
            fprintf(stderr, "] error (exit status %d)\n", WEXITSTATUS(st));
        } else {
            fprintf(stderr, "] error (signal: %s)\n",
                    strsignal(WTERMSIG(st)));
        }
        exit(EXIT_ERROR);
    }
}

/* etcd: getWatchChan — the WatchCreateRequest clientv3 sends, started
 * with require-leader as etcdctl does. 0, or -1 and err. */
static int watch_start_one(struct watch_ctx *x, const char *key,
                           const char *range_end, char *err, size_t errlen)
{
    if (range_end && watch_prefix) {
        snprintf(err, errlen,
                 "`range_end` and `--prefix` are mutually exclusive");
        return -1;
    }
    Etcdserverpb__WatchCreateRequest req =
        ETCDSERVERPB__WATCH_CREATE_REQUEST__INIT;
    set_bytes(&req.key, key);
    if (range_end) {
        set_bytes(&req.range_end, range_end);
    }
    if (watch_prefix) {
        if (key[0] == '\0') {
            req.key.data = zero_byte;
            req.key.len = 1;
            req.range_end.data = zero_byte;
            req.range_end.len = 1;
        } else {
            prefix_end(&req.range_end, key);
        }
    }
    req.start_revision = watch_rev;
    req.prev_kv = watch_prev_kv;
    struct keel_sync *s = ctl_client();
    x->w.data = x;
    x->w.flags = KEEL_CALL_REQUIRE_LEADER;
    int rv = keel_watch_start(keel_sync_client(s), &x->w, &req, on_watch,
                              on_watch_end);
    if (rv != 0) {
        ctl_die(EXIT_BAD_CONNECTION, "%s", keel_strerror(rv));
    }
    x->next = watches;
    watches = x;
    return 0;
}

/* Flags of one interactive "watch ..." line (pflag on NewWatchCommand's
 * flags, reset for every line). Positionals, "--" excluded, go to pos;
 * *sep is the index in pos where the words after "--" start, or -1. */
static int watch_line_flags(int argc, char **argv, char **pos, int *sep)
{
    watch_prefix = watch_prev_kv = 0;
    watch_rev = 0;
    *sep = -1;
    int npos = 0;
    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        if (*sep < 0 && strcmp(a, "--") == 0) {
            *sep = npos;
            continue;
        }
        if (*sep >= 0 || a[0] != '-' || a[1] == '\0') {
            pos[npos++] = a;
            continue;
        }
        const char *name = a[1] == '-' ? a + 2 : a + 1;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        struct flag *f = NULL;
        for (struct flag *x = watch_flags; x->name; x++) {
            if (a[1] == '-' ? (strlen(x->name) == len &&
                               strncmp(x->name, name, len) == 0)
                            : (len >= 1 && x->shorthand == name[0])) {
                f = x;
            }
        }
        if (f == NULL) {
            if (a[1] == '-') {
                ctl_die(EXIT_BAD_ARGS, "unknown flag: --%.*s", (int)len, name);
            }
            ctl_die(EXIT_BAD_ARGS, "unknown shorthand flag: '%c' in %s",
                    name[0], a);
        }
        if (f->type == F_BOOL) {
            *(int *)f->ptr = eq == NULL || strcmp(eq + 1, "true") == 0;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (v == NULL) {
            if (i + 1 >= argc) {
                ctl_die(EXIT_BAD_ARGS, "flag needs an argument: --%s",
                        f->name);
            }
            v = argv[++i];
        }
        char e[200];
        if (parse_int64(v, 10, f->ptr, e, sizeof(e)) != 0) {
            ctl_die(EXIT_BAD_ARGS,
                    "invalid argument \"%s\" for \"--%s\" flag: %s", v,
                    f->name, e);
        }
    }
    return npos;
}

/* etcd: watchInteractiveFunc — one command per line: "watch ..." or
 * "progress". */
static const char *ienv_key, *ienv_range;

static void interactive_line(char *l)
{
    char **args = ctl_alloc(64 * sizeof(char *));
    int n = argify(l, args, 64);
    if (n < 1) {
        fflush(stdout);
        fprintf(stderr, "Invalid command: %s (watch and progress supported)\n",
                l);
        return;
    }
    if (strcmp(args[0], "progress") == 0) {
        for (struct watch_ctx *x = watches; x; x = x->next) {
            keel_watch_request_progress(&x->w);
        }
        return;
    }
    if (strcmp(args[0], "watch") != 0) {
        fflush(stdout);
        fprintf(stderr, "Invalid command %s (only support watch)\n", l);
        return;
    }
    if (n < 2 && ienv_key == NULL) {
        fflush(stdout);
        fprintf(stderr,
                "Invalid command %s (command type or key is not provided)\n",
                l);
        return;
    }
    /* etcd: parseWatchArgs (interactive) */
    for (int i = 1; i < n; i++) {
        if (strcmp(args[i], "--") == 0) {
            if (i == n - 1) {
                ctl_die(EXIT_BAD_ARGS, "bad number of arguments (found "
                                       "separator --, but no commands)");
            }
            break;
        }
    }
    char **pos = ctl_alloc(70 * sizeof(char *));
    int sep;
    int npos = watch_line_flags(n - 1, args + 1, pos, &sep);
    if (sep < 0 && ienv_key == NULL && npos < 1) {
        ctl_die(EXIT_BAD_ARGS, "bad number of arguments");
    }
    if (sep < 0 && npos > 0 && ienv_key) {
        ctl_die(EXIT_BAD_ARGS,
                "bad number of arguments (found conflicting environment key)");
    }
    struct watch_ctx *x = ctl_alloc(sizeof(*x));
    int nkeys = sep >= 0 ? sep : npos;
    if (sep >= 0) {
        x->exec = pos + sep;
        x->nexec = npos - sep;
    }
    char **wargs = ctl_alloc(((size_t)nkeys + 3) * sizeof(char *));
    int nw = 0;
    if (ienv_key) {
        wargs[nw++] = (char *)ienv_key;
        if (ienv_range) {
            wargs[nw++] = (char *)ienv_range;
        }
    }
    for (int i = 0; i < nkeys; i++) {
        wargs[nw++] = pos[i];
    }
    char err[128];
    if (nw < 1) {
        fflush(stdout);
        fprintf(stderr, "Invalid command %s (bad number of arguments)\n", l);
        return;
    }
    if (watch_start_one(x, wargs[0], nw == 2 ? wargs[1] : NULL, err,
                        sizeof(err)) != 0) {
        fflush(stdout);
        fprintf(stderr, "Invalid command %s (%s)\n", l, err);
    }
}

static char ibuf[65536];
static size_t ilen;

/* Take the complete lines of ibuf; EOF ends etcdctl (the partial line is
 * dropped: bufio.Reader.ReadString returns it with the error). */
static void interactive_feed(ssize_t n)
{
    if (n <= 0) {
        ctl_die(EXIT_INVALID_INPUT, "Error reading watch request line: EOF");
    }
    ilen += (size_t)n;
    char *start = ibuf, *nl;
    while ((nl = memchr(start, '\n', ilen - (size_t)(start - ibuf)))) {
        *nl = '\0';
        interactive_line(ctl_strdup(start));
        start = nl + 1;
    }
    ilen -= (size_t)(start - ibuf);
    memmove(ibuf, start, ilen);
    if (ilen == sizeof(ibuf) - 1) {
        ctl_die(EXIT_INVALID_INPUT, "Error reading watch request line: line "
                                    "too long");
    }
}

static void stdin_cb(uv_poll_t *h, int status, int events)
{
    (void)h;
    (void)status;
    (void)events;
    interactive_feed(read(0, ibuf + ilen, sizeof(ibuf) - 1 - ilen));
}

static void watch_interactive_run(const char *env_key, const char *env_range)
{
    ienv_key = env_key;
    ienv_range = env_range;
    struct keel_sync *s = ctl_client();
    static uv_poll_t poll;
    if (uv_poll_init(keel_sync_loop(s), &poll, 0) != 0) {
        /* A regular file: epoll cannot wait for it; read it through. */
        for (;;) {
            interactive_feed(read(0, ibuf + ilen, sizeof(ibuf) - 1 - ilen));
        }
    }
    uv_poll_start(&poll, UV_READABLE | UV_DISCONNECT, stdin_cb);
    for (;;) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
}

static void watch_run(int argc, char **argv)
{
    const char *env_key = getenv("ETCDCTL_WATCH_KEY");
    const char *env_range = getenv("ETCDCTL_WATCH_RANGE_END");
    if (env_key && !*env_key) {
        env_key = NULL;
    }
    if (env_range && !*env_range) {
        env_range = NULL;
    }
    if (env_key == NULL && env_range) {
        ctl_die(EXIT_BAD_ARGS,
                "ETCDCTL_WATCH_KEY is empty but got "
                "ETCDCTL_WATCH_RANGE_END=\"%s\"",
                env_range);
    }
    if (watch_interactive) {
        watch_interactive_run(env_key, env_range);
        return;
    }
    /* etcd: parseWatchArgs (non-interactive) */
    int raw = 0;
    while (raw < ctl_argc && strcmp(ctl_argv[raw], "watch") != 0) {
        raw++;
    }
    raw++;
    int nraw = ctl_argc - raw > 0 ? ctl_argc - raw : 0;
    int exec_idx = -1;
    for (int i = 0; i < nraw; i++) {
        if (strcmp(ctl_argv[raw + i], "--") == 0) {
            exec_idx = i;
            break;
        }
    }
    if (exec_idx >= 0 && exec_idx == nraw - 1) {
        ctl_die(EXIT_BAD_ARGS,
                "bad number of arguments (found separator --, but no "
                "commands)");
    }
    if (exec_idx < 0 && nraw < 1 && env_key == NULL) {
        ctl_die(EXIT_BAD_ARGS, "bad number of arguments");
    }
    if (exec_idx < 0 && argc > 0 && env_key) {
        ctl_die(EXIT_BAD_ARGS,
                "bad number of arguments (found conflicting environment key)");
    }
    char **wargs = ctl_alloc(((size_t)argc + 3) * sizeof(char *));
    int nw = 0;
    if (env_key) {
        wargs[nw++] = (char *)env_key;
        if (env_range) {
            wargs[nw++] = (char *)env_range;
        }
    }
    int first_exec_pos = argc;
    struct watch_ctx *x = ctl_alloc(sizeof(*x));
    if (exec_idx >= 0) {
        x->exec = ctl_argv + raw + exec_idx + 1;
        x->nexec = nraw - exec_idx - 1;
        /* The positionals end where the exec command starts. */
        for (int i = argc - 1; i >= 0; i--) {
            if (strcmp(argv[i], x->exec[0]) == 0) {
                first_exec_pos = i;
                break;
            }
        }
    }
    for (int i = 0; i < first_exec_pos; i++) {
        wargs[nw++] = argv[i];
    }
    if (nw < 1) {
        ctl_die(EXIT_BAD_ARGS, "bad number of arguments");
    }
    const char *key = wargs[0];
    const char *range_end = nw == 2 ? wargs[1] : NULL;
    char err[128];
    if (watch_start_one(x, key, range_end, err, sizeof(err)) != 0) {
        ctl_die(EXIT_BAD_ARGS, "%s", err);
    }
    struct keel_sync *s = ctl_client();
    while (!watch_ended) {
        uv_run(keel_sync_loop(s), UV_RUN_ONCE);
    }
    ctl_die(EXIT_INTERRUPTED, "watch is canceled by the server");
}

/* ---- table ------------------------------------------------------------------- */

static void get_entry(int argc, char **argv)
{
    get_run(argc, argv);
}

const struct ctl_cmd ctl_kv_cmds[] = {
    {"get", get_flags, get_entry},
    {"put", put_flags, put_run},
    {"del", del_flags, del_run},
    {"txn", txn_flags, txn_run},
    {"compaction", compact_flags, compaction_run},
    {"watch", watch_flags, watch_run},
    {NULL, NULL, NULL},
};

/* Flag defaults (run before main parses flags). */
__attribute__((constructor)) static void kv_defaults(void)
{
    get_defaults();
    put_defaults();
    del_defaults();
}
