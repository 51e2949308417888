/*
 * keelctl with ETCDCTL_API=2: etcdctl 3.4's v2 key commands (etcd:
 * etcdctl/ctlv2/command/{get,set,mk,mkdir,rm,rmdir,update,updatedir,ls,
 * format,error}_command.go) over the v2 HTTP keys API (/v2/keys), for
 * servers started with --enable-v2. keel's server has no v2 API yet: this
 * is tested against etcd 3.4 only.
 *
 * One blocking HTTP/1.0 request per command to the first endpoint (no
 * cluster sync: --no-sync is implied), the JSON answer read with jansson.
 * Output: -o simple and extended as etcdctl; server errors as etcdctl's
 * handleError ("Error:  100: Key not found (/k) [7]", exit 4).
 *
 * Not here: -o json, watch, exec-watch, member, user, role,
 * cluster-health, backup (v2 form), mk --in-order, TLS and auth flags.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* keelctl.h declares its own json_string(); this file uses jansson's */
#define json_string keelctl_json_string
#include "keelctl.h"
#undef json_string

#include <jansson.h>

enum { V2_OK = 0, V2_BAD_ARGS = 1, V2_BAD_CONNECTION = 2, V2_SERVER = 4 };

static const char *v2_endpoints = "http://127.0.0.1:2379,http://127.0.0.1:4001";
static const char *v2_output = "simple";

_Noreturn static void v2_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void v2_die(int code, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "Error:  ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    exit(code);
}

/* ---- HTTP ------------------------------------------------------------------- */

static void url_escape(FILE *f, const char *s, int path)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
            (*p >= '0' && *p <= '9') || strchr("-_.~", *p) ||
            (path && *p == '/')) {
            fputc(*p, f);
        } else {
            fprintf(f, "%%%02X", *p);
        }
    }
}

struct v2_resp
{
    int status;
    uint64_t index; /* X-Etcd-Index */
    json_t *body;
};

static void v2_request(const char *method, const char *key, const char *query,
                       const char *form, struct v2_resp *out)
{
    char ep[256];
    snprintf(ep, sizeof(ep), "%.*s", (int)strcspn(v2_endpoints, ","),
             v2_endpoints);
    const char *hp = ep;
    if (strncmp(hp, "http://", 7) == 0) {
        hp += 7;
    } else if (strstr(hp, "://") != NULL) {
        v2_die(V2_BAD_ARGS, "keelctl: only http:// endpoints with "
                            "ETCDCTL_API=2");
    }
    char host[256];
    snprintf(host, sizeof(host), "%.*s", (int)strcspn(hp, "/"), hp);
    char *colon = strrchr(host, ':');
    const char *port = "80";
    if (colon) {
        *colon = 0;
        port = colon + 1;
    }
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int fd = -1, err = 0;
    if (getaddrinfo(host, port, &hints, &res) == 0) {
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype, 0);
            if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
                err = errno;
                close(fd);
                fd = -1;
            }
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        v2_die(V2_SERVER,
               "client: etcd cluster is unavailable or misconfigured; error "
               "#0: dial tcp %s:%s: connect: %s",
               host, port, ctl_go_errno(err ? err : ECONNREFUSED));
    }
    char *req = NULL;
    size_t rlen = 0;
    FILE *f = open_memstream(&req, &rlen);
    fprintf(f, "%s /v2/keys", method);
    if (key[0] != '/') {
        fputc('/', f);
    }
    url_escape(f, key, 1);
    fprintf(f, "?%s HTTP/1.0\r\nHost: %s:%s\r\n", query, host, port);
    if (form != NULL) {
        fprintf(f,
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: %zu\r\n",
                strlen(form));
    }
    fprintf(f, "\r\n%s", form ? form : "");
    fclose(f);
    size_t off = 0;
    while (off < rlen) {
        ssize_t n = write(fd, req + off, rlen - off);
        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    free(req);
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap);
            if (buf == NULL) {
                v2_die(V2_SERVER, "out of memory");
            }
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    if (buf == NULL) {
        v2_die(V2_SERVER, "client: no response");
    }
    buf[len] = 0;
    memset(out, 0, sizeof(*out));
    sscanf(buf, "HTTP/%*s %d", &out->status);
    char *body = strstr(buf, "\r\n\r\n");
    char *ix = strcasestr(buf, "\r\nX-Etcd-Index:");
    if (ix != NULL && (body == NULL || ix < body)) {
        out->index = strtoull(ix + 15, NULL, 10);
    }
    json_error_t je;
    out->body = body ? json_loads(body + 4, 0, &je) : NULL;
    free(buf);
    if (out->body == NULL) {
        v2_die(V2_SERVER, "client: response is invalid json");
    }
    json_t *code = json_object_get(out->body, "errorCode");
    if (code != NULL) {
        fflush(stdout);
        fprintf(stderr,
                "Error:  %" JSON_INTEGER_FORMAT ": %s (%s) [%" JSON_INTEGER_FORMAT
                "]\n",
                json_integer_value(code),
                json_string_value(json_object_get(out->body, "message")),
                json_string_value(json_object_get(out->body, "cause")),
                json_integer_value(json_object_get(out->body, "index")));
        json_decref(out->body);
        exit(V2_SERVER);
    }
}

/* ---- output (format.go printResponseKey) ------------------------------------ */

static const char *node_str(json_t *n, const char *field)
{
    const char *s = json_string_value(json_object_get(n, field));
    return s ? s : "";
}

static long long node_int(json_t *n, const char *field)
{
    return (long long)json_integer_value(json_object_get(n, field));
}

static void print_response(const struct v2_resp *r)
{
    json_t *node = json_object_get(r->body, "node");
    json_t *prev = json_object_get(r->body, "prevNode");
    const char *action = node_str(r->body, "action");
    int del = strcmp(action, "delete") == 0;
    if (strcmp(v2_output, "simple") == 0) {
        if (!del) {
            printf("%s\n", node_str(node, "value"));
        } else {
            printf("PrevNode.Value: %s\n", node_str(prev, "value"));
        }
    } else if (strcmp(v2_output, "extended") == 0) {
        printf("Key: %s\n", node_str(node, "key"));
        printf("Created-Index: %lld\n", node_int(node, "createdIndex"));
        printf("Modified-Index: %lld\n", node_int(node, "modifiedIndex"));
        if (prev != NULL && json_is_object(prev)) {
            printf("PrevNode.Value: %s\n", node_str(prev, "value"));
        }
        printf("TTL: %lld\n", node_int(node, "ttl"));
        printf("Index: %" PRIu64 "\n", r->index);
        if (!del) {
            printf("\n%s\n", node_str(node, "value"));
        }
    } else if (strcmp(v2_output, "json") == 0) {
        v2_die(V2_BAD_ARGS, "keelctl: -o json is not supported with "
                            "ETCDCTL_API=2 yet");
    } else {
        fflush(stdout);
        fprintf(stderr, "Unsupported output format: %s\n", v2_output);
    }
}

/* ---- commands ---------------------------------------------------------------- */

struct v2_opts
{
    const char *ttl, *swap_value, *swap_index, *with_value, *with_index;
    int sort, recursive, dir, p, quorum;
};

static char *form_value(const char *v)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    fprintf(f, "value=");
    url_escape(f, v, 0);
    fclose(f);
    char *copy = ctl_strdup(out);
    free(out);
    return copy;
}

static char *query(const char *first, ...)
{
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    va_list ap;
    va_start(ap, first);
    int n = 0;
    for (const char *k = first; k != NULL; k = va_arg(ap, const char *)) {
        const char *v = va_arg(ap, const char *);
        if (v == NULL) {
            continue;
        }
        fprintf(f, "%s%s=", n++ ? "&" : "", k);
        url_escape(f, v, 0);
    }
    va_end(ap);
    fclose(f);
    char *copy = ctl_strdup(out);
    free(out);
    return copy;
}

static void rprint(json_t *n, const struct v2_opts *o)
{
    int dir = json_is_true(json_object_get(n, "dir"));
    printf(dir && o->p ? "%s/\n" : "%s\n", node_str(n, "key"));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(n, "nodes"), i, c)
    {
        rprint(c, o);
    }
}

static void v2_run(const char *cmd, int argc, char **argv,
                   const struct v2_opts *o)
{
    struct v2_resp r;
    const char *key = argc > 0 ? argv[0] : NULL;
    const char *tf = o->ttl;
    if (strcmp(cmd, "ls") == 0) {
        v2_request("GET", key ? key : "/",
                   query("quorum", o->quorum ? "true" : "false", "recursive",
                         o->recursive ? "true" : "false", "sorted",
                         o->sort ? "true" : "false", NULL),
                   NULL, &r);
        if (strcmp(v2_output, "simple") != 0) {
            print_response(&r);
            json_decref(r.body);
            return;
        }
        json_t *node = json_object_get(r.body, "node");
        if (!json_is_true(json_object_get(node, "dir"))) {
            printf("%s\n", node_str(node, "key"));
        }
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(node, "nodes"), i, c)
        {
            rprint(c, o);
        }
        json_decref(r.body);
        return;
    }
    if (key == NULL) {
        v2_die(V2_BAD_ARGS, "key required");
    }
    int needs_value = strcmp(cmd, "set") == 0 || strcmp(cmd, "mk") == 0 ||
                      strcmp(cmd, "update") == 0;
    if (needs_value && argc < 2) {
        v2_die(V2_BAD_ARGS, "value required");
    }
    if (strcmp(cmd, "get") == 0) {
        v2_request("GET", key,
                   query("quorum", o->quorum ? "true" : "false", "recursive",
                         "false", "sorted", o->sort ? "true" : "false", NULL),
                   NULL, &r);
        json_t *node = json_object_get(r.body, "node");
        if (json_is_true(json_object_get(node, "dir"))) {
            fflush(stdout);
            fprintf(stderr, "%s: is a directory\n", node_str(node, "key"));
            json_decref(r.body);
            exit(1);
        }
        print_response(&r);
    } else if (strcmp(cmd, "set") == 0) {
        v2_request("PUT", key,
                   query("prevValue", o->swap_value, "prevIndex",
                         o->swap_index, "ttl", tf, NULL),
                   form_value(argv[1]), &r);
        print_response(&r);
    } else if (strcmp(cmd, "mk") == 0) {
        v2_request("PUT", key, query("prevExist", "false", "ttl", tf, NULL),
                   form_value(argv[1]), &r);
        print_response(&r);
    } else if (strcmp(cmd, "update") == 0) {
        v2_request("PUT", key, query("prevExist", "true", "ttl", tf, NULL),
                   form_value(argv[1]), &r);
        print_response(&r);
    } else if (strcmp(cmd, "mkdir") == 0) {
        v2_request("PUT", key,
                   query("prevExist", "false", "ttl", tf, "dir", "true", NULL),
                   NULL, &r);
    } else if (strcmp(cmd, "updatedir") == 0) {
        v2_request("PUT", key,
                   query("prevExist", "true", "ttl", tf, "dir", "true", NULL),
                   NULL, &r);
    } else if (strcmp(cmd, "rm") == 0) {
        v2_request("DELETE", key,
                   query("prevValue", o->with_value, "prevIndex",
                         o->with_index, "dir", o->dir ? "true" : NULL,
                         "recursive", o->recursive ? "true" : NULL, NULL),
                   NULL, &r);
        json_t *node = json_object_get(r.body, "node");
        if (!json_is_true(json_object_get(node, "dir")) ||
            strcmp(v2_output, "simple") != 0) {
            print_response(&r);
        }
    } else if (strcmp(cmd, "rmdir") == 0) {
        v2_request("DELETE", key, query("dir", "true", NULL), NULL, &r);
        json_t *node = json_object_get(r.body, "node");
        if (!json_is_true(json_object_get(node, "dir")) ||
            strcmp(v2_output, "simple") != 0) {
            print_response(&r);
        }
    }
    json_decref(r.body);
}

/* argv after the program name. Returns the exit code. */
int ctl_v2_main(int argc, char **argv)
{
    int i = 0;
    /* global options, before the command (urfave/cli) */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        const char *eq = strchr(a, '=');
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        const char **dst = NULL;
        if (nl == 11 && strncmp(a, "--endpoints", nl) == 0) {
            dst = &v2_endpoints;
        } else if ((nl == 8 && strncmp(a, "--output", nl) == 0) ||
                   (nl == 2 && strncmp(a, "-o", nl) == 0)) {
            dst = &v2_output;
        } else if (strcmp(a, "--no-sync") == 0 || strcmp(a, "--debug") == 0) {
            continue;
        } else if ((nl == 9 && strncmp(a, "--timeout", nl) == 0) ||
                   (nl == 15 && strncmp(a, "--total-timeout", nl) == 0)) {
            if (!eq) {
                i++;
            }
            continue;
        } else {
            v2_die(V2_BAD_ARGS, "keelctl: %s is not supported with "
                                "ETCDCTL_API=2", a);
        }
        if (eq) {
            *dst = eq + 1;
        } else if (i + 1 < argc) {
            *dst = argv[++i];
        }
    }
    if (i == argc) {
        v2_die(V2_BAD_ARGS, "keelctl: a v2 command is required");
    }
    const char *cmd = argv[i++];
    static const char *const known[] = {"get",   "set",       "mk",
                                        "mkdir", "rm",        "rmdir",
                                        "update", "updatedir", "ls", NULL};
    int ok = 0;
    for (int k = 0; known[k]; k++) {
        ok |= strcmp(known[k], cmd) == 0;
    }
    if (!ok) {
        v2_die(V2_BAD_ARGS, "keelctl: the v2 command \"%s\" is not "
                            "implemented", cmd);
    }
    /* command options, before the arguments */
    struct v2_opts o = {0};
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        const char *a = argv[i];
        while (*a == '-') {
            a++;
        }
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(a, "="), a);
        const char *val = strchr(a, '=') ? strchr(a, '=') + 1 : NULL;
        const char **s = NULL;
        if (strcmp(name, "ttl") == 0) {
            s = &o.ttl;
        } else if (strcmp(name, "swap-with-value") == 0) {
            s = &o.swap_value;
        } else if (strcmp(name, "swap-with-index") == 0) {
            s = &o.swap_index;
        } else if (strcmp(name, "with-value") == 0) {
            s = &o.with_value;
        } else if (strcmp(name, "with-index") == 0) {
            s = &o.with_index;
        } else if (strcmp(name, "sort") == 0) {
            o.sort = 1;
        } else if (strcmp(name, "recursive") == 0 || strcmp(name, "r") == 0) {
            o.recursive = 1;
        } else if (strcmp(name, "dir") == 0) {
            o.dir = 1;
        } else if (strcmp(name, "p") == 0) {
            o.p = 1;
        } else if (strcmp(name, "quorum") == 0 || strcmp(name, "q") == 0) {
            o.quorum = 1;
        } else {
            v2_die(V2_BAD_ARGS, "keelctl: %s is not supported with "
                                "ETCDCTL_API=2", argv[i]);
        }
        if (s != NULL) {
            *s = val ? val : (i + 1 < argc ? argv[++i] : "");
        }
    }
    if (o.ttl && strcmp(o.ttl, "0") == 0) {
        o.ttl = NULL; /* the v2 client sends no ttl for 0 */
    }
    if (o.swap_index && strcmp(o.swap_index, "0") == 0) {
        o.swap_index = NULL;
    }
    if (o.with_index && strcmp(o.with_index, "0") == 0) {
        o.with_index = NULL;
    }
    if (o.swap_value && !o.swap_value[0]) {
        o.swap_value = NULL;
    }
    if (o.with_value && !o.with_value[0]) {
        o.with_value = NULL;
    }
    v2_run(cmd, argc - i, argv + i, &o);
    return V2_OK;
}
