/*
 * Clients for the transport tests: a blocking one-request HTTP/2 client on
 * an nghttp2 client session (a real, independent HTTP/2 implementation),
 * raw TCP exchanges for malformed input, and subprocess helpers for curl and
 * etcdctl with hard timeouts (no process outlives its test).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

#include "ts.h"

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How long an HTTP/2 exchange may go without receiving a byte. Measured
 * from the last progress, not from the start: a long stream on a loaded
 * machine (ctest -j2 under ASan) may take longer than this in total while
 * never stalling; a server that stops answering still fails the call. */
static int64_t h2_idle_ms(void)
{
    return getenv("KEEL_SANITIZED") != NULL ? 20000 : 8000;
}

int ts_connect(int port)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- HTTP/2 client ---- */

struct h2req
{
    struct ts_h2_result *res;
    const uint8_t *body;
    size_t len, off;
};

struct h2c
{
    int fd;
    size_t open; /* streams not yet closed */
    int goaway;
};

static ssize_t c_send(nghttp2_session *s,
                      const uint8_t *data,
                      size_t len,
                      int flags,
                      void *ud)
{
    struct h2c *c = ud;
    ssize_t n;
    (void)s;
    (void)flags;
    n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
        return errno == EAGAIN ? NGHTTP2_ERR_WOULDBLOCK
                               : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    return n;
}

static int unhex(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

static int c_header(nghttp2_session *s,
                    const nghttp2_frame *frame,
                    const uint8_t *name,
                    size_t namelen,
                    const uint8_t *value,
                    size_t valuelen,
                    uint8_t flags,
                    void *ud)
{
    struct h2req *r =
        nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    struct ts_h2_result *res;
    char v[1024];
    (void)flags;
    (void)ud;
    if (r == NULL) {
        return 0;
    }
    res = r->res;
    if (valuelen >= sizeof v) {
        valuelen = sizeof v - 1;
    }
    memcpy(v, value, valuelen);
    v[valuelen] = '\0';
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        res->http_status = atoi(v);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        res->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        size_t k = 0;
        for (size_t i = 0; i < valuelen && k + 1 < sizeof res->grpc_message;
             i++) {
            if (v[i] == '%' && i + 2 < valuelen && unhex(v[i + 1]) >= 0 &&
                unhex(v[i + 2]) >= 0) {
                res->grpc_message[k++] =
                    (char)(unhex(v[i + 1]) * 16 + unhex(v[i + 2]));
                i += 2;
            } else {
                res->grpc_message[k++] = v[i];
            }
        }
        res->grpc_message[k] = '\0';
    }
    return 0;
}

static int c_data(nghttp2_session *s,
                  uint8_t flags,
                  int32_t id,
                  const uint8_t *data,
                  size_t len,
                  void *ud)
{
    struct h2req *r = nghttp2_session_get_stream_user_data(s, id);
    struct ts_h2_result *res;
    uint8_t *b;
    (void)flags;
    (void)ud;
    if (r == NULL) {
        return 0;
    }
    res = r->res;
    b = realloc(res->body, res->body_len + len + 1);
    if (b == NULL) {
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    memcpy(b + res->body_len, data, len);
    res->body = b;
    res->body_len += len;
    b[res->body_len] = 0;
    return 0;
}

static int c_frame_recv(nghttp2_session *s,
                        const nghttp2_frame *frame,
                        void *ud)
{
    struct h2c *c = ud;
    (void)s;
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
    }
    return 0;
}

static int c_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
    struct h2c *c = ud;
    struct h2req *r = nghttp2_session_get_stream_user_data(s, id);
    if (r != NULL) {
        if (code != 0) {
            r->res->reset = 1;
            r->res->reset_code = code;
        }
        c->open--;
    }
    return 0;
}

static ssize_t c_body(nghttp2_session *s,
                      int32_t id,
                      uint8_t *buf,
                      size_t length,
                      uint32_t *flags,
                      nghttp2_data_source *src,
                      void *ud)
{
    struct h2req *r = src->ptr;
    size_t n = r->len - r->off;
    (void)s;
    (void)id;
    (void)ud;
    if (n > length) {
        n = length;
    }
    memcpy(buf, r->body + r->off, n);
    r->off += n;
    if (r->off == r->len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* n requests (same method/path/headers/body) on one connection, all
 * submitted before any answer is read. */
static int h2_requests(int port,
                       const char *method,
                       const char *path,
                       const char *const *headers,
                       const uint8_t *body,
                       size_t len,
                       size_t count,
                       struct ts_h2_result *res)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_session *s;
    nghttp2_nv nv[32];
    nghttp2_data_provider prd;
    struct h2c c;
    struct h2req *reqs = calloc(count, sizeof *reqs);
    size_t n = 0;
    int64_t deadline = now_ms() + h2_idle_ms();
    /* a hard cap even for a server that trickles forever */
    int64_t cap = now_ms() + 6 * h2_idle_ms();
    int rv = -1;
    char authority[32];

    memset(&c, 0, sizeof c);
    for (size_t i = 0; i < count; i++) {
        memset(&res[i], 0, sizeof res[i]);
        res[i].grpc_status = -1;
        reqs[i].res = &res[i];
        reqs[i].body = body;
        reqs[i].len = len;
    }
    c.fd = ts_connect(port);
    if (c.fd < 0) {
        free(reqs);
        return -1;
    }
    snprintf(authority, sizeof authority, "127.0.0.1:%d", port);
#define NV(n_, v_)                 \
    nv[n].name = (uint8_t *)(n_);  \
    nv[n].namelen = strlen(n_);    \
    nv[n].value = (uint8_t *)(v_); \
    nv[n].valuelen = strlen(v_);   \
    nv[n].flags = 0;               \
    n++
    NV(":method", method);
    NV(":scheme", "http");
    NV(":authority", authority);
    NV(":path", path);
    for (size_t i = 0; headers != NULL && headers[i] != NULL && n < 30;
         i += 2) {
        NV(headers[i], headers[i + 1]);
    }
#undef NV
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, c_send);
    nghttp2_session_callbacks_set_on_header_callback(cbs, c_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_close);
    nghttp2_session_client_new(&s, cbs, &c);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
    prd.read_callback = c_body;
    for (size_t i = 0; i < count; i++) {
        prd.source.ptr = &reqs[i];
        if (nghttp2_submit_request(s, NULL, nv, n, body != NULL ? &prd : NULL,
                                   &reqs[i]) < 0) {
            goto out;
        }
        c.open++;
    }
    while (c.open > 0) {
        struct pollfd pfd = {c.fd, POLLIN, 0};
        uint8_t buf[65536];
        ssize_t got;
        int64_t left = (deadline < cap ? deadline : cap) - now_ms();
        if (nghttp2_session_send(s) != 0 || left <= 0) {
            goto out;
        }
        if (poll(&pfd, 1, (int)left) <= 0) {
            goto out;
        }
        got = recv(c.fd, buf, sizeof buf, 0);
        if (got <= 0) {
            goto out;
        }
        deadline = now_ms() + h2_idle_ms();
        if (nghttp2_session_mem_recv(s, buf, (size_t)got) < 0) {
            goto out;
        }
    }
    rv = 0;
out:
    for (size_t i = 0; i < count; i++) {
        res[i].goaway = c.goaway;
    }
    nghttp2_session_del(s);
    close(c.fd);
    free(reqs);
    return rv;
}

int ts_h2_request(int port,
                  const char *method,
                  const char *path,
                  const char *const *headers,
                  const uint8_t *body,
                  size_t len,
                  struct ts_h2_result *res)
{
    return h2_requests(port, method, path, headers, body, len, 1, res);
}

static uint8_t *frame_grpc(uint8_t flags, const uint8_t *msg, size_t len)
{
    uint8_t *framed = malloc(len + 5);
    framed[0] = flags;
    framed[1] = (uint8_t)(len >> 24);
    framed[2] = (uint8_t)(len >> 16);
    framed[3] = (uint8_t)(len >> 8);
    framed[4] = (uint8_t)len;
    if (len > 0) {
        memcpy(framed + 5, msg, len);
    }
    return framed;
}

int ts_grpc_multi(int port,
                  const char *path,
                  const uint8_t *msg,
                  size_t len,
                  size_t n,
                  struct ts_h2_result *res)
{
    static const char *h[] = {"content-type", "application/grpc", "te",
                              "trailers", NULL};
    uint8_t *framed = frame_grpc(0, msg, len);
    int rv = h2_requests(port, "POST", path, h, framed, len + 5, n, res);
    free(framed);
    return rv;
}

int ts_grpc_call(int port,
                 const char *path,
                 const char *const *headers,
                 uint8_t flags,
                 const uint8_t *msg,
                 size_t len,
                 struct ts_h2_result *res)
{
    const char *h[40];
    size_t n = 0;
    uint8_t *framed = frame_grpc(flags, msg, len);
    int rv;

    int has_ct = 0;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        has_ct |= strcmp(headers[i], "content-type") == 0;
    }
    if (!has_ct) {
        h[n++] = "content-type";
        h[n++] = "application/grpc";
    }
    h[n++] = "te";
    h[n++] = "trailers";
    for (size_t i = 0; headers != NULL && headers[i] != NULL && n < 38; i++) {
        h[n++] = headers[i];
    }
    h[n] = NULL;
    rv = ts_h2_request(port, "POST", path, h, framed, len + 5, res);
    free(framed);
    return rv;
}

void ts_h2_result_free(struct ts_h2_result *res)
{
    free(res->body);
    res->body = NULL;
}

/* ---- raw sockets ---- */

ssize_t ts_raw_exchange(int port,
                        const void *data,
                        size_t len,
                        int timeout_ms,
                        char **out,
                        int *closed)
{
    int fd = ts_connect(port);
    char *acc = NULL;
    size_t n = 0;
    int64_t deadline = now_ms() + timeout_ms;

    *closed = 0;
    *out = NULL;
    if (fd < 0) {
        return -1;
    }
    if (len > 0 && send(fd, data, len, MSG_NOSIGNAL) != (ssize_t)len) {
        close(fd);
        return -1;
    }
    for (;;) {
        struct pollfd pfd = {fd, POLLIN, 0};
        char buf[4096];
        ssize_t got;
        int64_t left = deadline - now_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            break;
        }
        got = recv(fd, buf, sizeof buf, 0);
        if (got <= 0) {
            *closed = 1;
            break;
        }
        acc = realloc(acc, n + (size_t)got + 1);
        memcpy(acc + n, buf, (size_t)got);
        n += (size_t)got;
    }
    close(fd);
    if (acc == NULL) {
        acc = calloc(1, 1);
    }
    acc[n] = '\0';
    *out = acc;
    return (ssize_t)n;
}

/* ---- subprocesses ---- */

pid_t ts_spawn(char *const argv[], int *out_fd)
{
    int p[2];
    pid_t pid;
    if (pipe2(p, O_CLOEXEC) != 0) {
        return -1;
    }
    pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    *out_fd = p[0];
    return pid;
}

static int read_some(int fd, char **acc, size_t *n, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    char buf[4096];
    ssize_t got;
    if (poll(&pfd, 1, timeout_ms) <= 0) {
        return 0;
    }
    got = read(fd, buf, sizeof buf);
    if (got <= 0) {
        return -1;
    }
    *acc = realloc(*acc, *n + (size_t)got + 1);
    memcpy(*acc + *n, buf, (size_t)got);
    *n += (size_t)got;
    (*acc)[*n] = '\0';
    return 1;
}

void ts_kill(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

int ts_run(char *const argv[], int timeout_ms, char **out)
{
    int fd, st;
    char *acc = NULL;
    size_t n = 0;
    int64_t deadline = now_ms() + timeout_ms;
    pid_t pid = ts_spawn(argv, &fd);

    if (pid < 0) {
        return -1;
    }
    for (;;) {
        int64_t left = deadline - now_ms();
        int r;
        if (left <= 0) {
            ts_kill(pid);
            close(fd);
            *out = acc != NULL ? acc : calloc(1, 1);
            return -1;
        }
        r = read_some(fd, &acc, &n, (int)left);
        if (r < 0) {
            break;
        }
    }
    close(fd);
    waitpid(pid, &st, 0);
    *out = acc != NULL ? acc : calloc(1, 1);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int ts_wait_output(int fd, const char *needle, int timeout_ms, char **acc)
{
    size_t n = *acc != NULL ? strlen(*acc) : 0;
    int64_t deadline = now_ms() + timeout_ms;
    while (*acc == NULL || strstr(*acc, needle) == NULL) {
        int64_t left = deadline - now_ms();
        if (left <= 0 || read_some(fd, acc, &n, (int)left) < 0) {
            return 0;
        }
    }
    return 1;
}

int ts_wait_for(int (*cond)(void), int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    while (!cond()) {
        if (now_ms() > deadline) {
            return 0;
        }
        usleep(2000);
    }
    return 1;
}
