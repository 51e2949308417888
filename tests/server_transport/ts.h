/*
 * Test harness of the client-port transport: a server thread running the
 * real listener/HTTP/gRPC code with small test services (ts_server.c), and
 * clients to drive it (ts_client.c): a blocking HTTP/2 client built on an
 * nghttp2 client session, raw sockets, and subprocesses (curl, etcdctl).
 */
#ifndef TS_H
#define TS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- server (ts_server.c) ---- */

struct ts_observed
{
    atomic_int status_calls;
    atomic_int range_cancel_code; /* last cancel code of a "sleep" Range */
    atomic_int range_cancels;
    atomic_int range_starts; /* Range handler entered */
    atomic_int watch_starts;
    atomic_int watch_cancels;
    atomic_int watch_hasleader; /* a Watch call carried hasleader */
    atomic_int flood_cancels;
    atomic_int flood_sent; /* messages queued by the flood handler */
    atomic_int snapshot_calls;
    atomic_int http_cancels; /* streamed HTTP responses cancelled */
    atomic_int put_calls;
    atomic_int big_calls;
    atomic_int sleep_deadline_ms; /* grpc_call_deadline_ms of a "sleep" */
    atomic_int put_raw_len;       /* grpc_call_request_bytes of a Put */
    atomic_int count_cancel_code;
    atomic_int paced_max_buffered;
    char auth_seen[64]; /* token metadata of the last Status */
    char cn_seen[64];   /* TLS client CN of the last Status */
};

extern struct ts_observed ts_obs;

/* Start the server thread on 127.0.0.1:<free port> and a unix socket.
 * Returns 0 or -1. */
int ts_server_start(void);
/* ts_obs.auth_seen, read under the server's lock. */
void ts_auth_seen(char *out, size_t size);
/* Stop it (closes every connection, joins the thread, frees everything). */
void ts_server_stop(void);
int ts_port(void);
int ts_tls_port(void); /* https, client certificate optional */
/* A listener for the graceful-shutdown test: its port, the trigger
 * (listener_shutdown with a 10 s timeout, longer than the test waits, so
 * only the graceful path can pass) and whether
 * its close callback ran. */
int ts_drain_port(void);
/* A listener whose HTTP/2 keepalive is 150 ms silence + 150 ms. */
int ts_ka_port(void);
void ts_drain_start(void);
int ts_drained(void);
int ts_mtls_port(void);   /* https, client certificate required */
const char *ts_dir(void); /* ca.pem, client.pem, client.key live here */
void ts_cn_seen(char *out, size_t size);
const char *ts_unix_path(void);
const char *ts_unixs_path(void); /* TLS over a unix socket */
/* Bytes of the fixed snapshot the Snapshot handler streams. */
size_t ts_snapshot_bytes(uint8_t *out, size_t size);
/* Live connections / gRPC calls, read on the server thread. */
size_t ts_server_conns(void);
size_t ts_server_calls_live(void);

/* ---- clients (ts_client.c) ---- */

struct ts_h2_result
{
    int http_status;
    int grpc_status; /* -1 when absent */
    char grpc_message[512];
    uint8_t *body; /* malloc'd, body_len bytes (gRPC: framed messages) */
    size_t body_len;
    int goaway; /* the server sent GOAWAY */
    int reset;  /* the stream was reset */
    uint32_t reset_code;
};

/* One HTTP/2 request on a fresh connection to 127.0.0.1:port; headers are
 * name, value pairs ending with NULL. Returns 0 when the stream finished
 * (whatever the status) or -1 on a connection failure/timeout. */
int ts_h2_request(int port,
                  const char *method,
                  const char *path,
                  const char *const *headers,
                  const uint8_t *body,
                  size_t len,
                  struct ts_h2_result *res);
/* A gRPC unary call: frames msg (flags as the compressed flag byte). */
int ts_grpc_call(int port,
                 const char *path,
                 const char *const *headers,
                 uint8_t flags,
                 const uint8_t *msg,
                 size_t len,
                 struct ts_h2_result *res);
void ts_h2_result_free(struct ts_h2_result *res);
/* n gRPC calls of the same request, concurrently on one connection. */
int ts_grpc_multi(int port,
                  const char *path,
                  const uint8_t *msg,
                  size_t len,
                  size_t n,
                  struct ts_h2_result *res);

/* Raw TCP: connect, send, read until EOF or timeout_ms; returns bytes read
 * (into a malloc'd *out, NUL-terminated) or -1. closed is set when the
 * server closed the connection (EOF/reset) before the timeout. */
ssize_t ts_raw_exchange(int port,
                        const void *data,
                        size_t len,
                        int timeout_ms,
                        char **out,
                        int *closed);
int ts_connect(int port);

/* Run argv (NULL-terminated) with a hard timeout; capture stdout+stderr
 * into *out (malloc'd). Returns the exit status, or -1. */
int ts_run(char *const argv[], int timeout_ms, char **out);
/* Start argv with stdout on a pipe; returns the pid and the pipe fd. */
pid_t ts_spawn(char *const argv[], int *out_fd);
/* Read from fd until needle shows up or timeout; returns 1 if found. */
int ts_wait_output(int fd, const char *needle, int timeout_ms, char **acc);
/* Kill pid (SIGTERM, then SIGKILL) and reap it. */
void ts_kill(pid_t pid);

/* Poll cond (a function of no args) up to timeout_ms. */
int ts_wait_for(int (*cond)(void), int timeout_ms);

#endif /* TS_H */
