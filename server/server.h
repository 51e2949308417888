/*
 * server/server: the keel member as a whole. It owns the replicated state
 * machine (node), the gRPC registry, the HTTP router and the client
 * listeners, registers the v3 services on them, and answers requests with
 * etcd's full response header.
 *
 * Everything runs on the loop thread given to server_start().
 */
#ifndef KEEL_SERVER_H
#define KEEL_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "mvccpb/kv.pb-c.h"
#include "keel_arena.h"

struct keel_config;
struct keel_server;
struct node;
struct grpc_server;
struct router;

/* Open the data dir, start raft and the listeners. On success *out is the
 * running server; stop it with server_stop(). On failure a message is in
 * errmsg (etcd's text) and nothing is left running; KEEL_ELISTEN means the
 * client TLS certificate, key or CA did not load. cfg is borrowed for the
 * server's life. */
int server_start(uv_loop_t *loop, const struct keel_config *cfg,
                 struct keel_server **out, char *errmsg, size_t errlen);

/* cb(arg) runs once this member's attributes are published through raft
 * (etcd logs "ready to serve client requests" then). */
void server_on_ready(struct keel_server *s, void (*cb)(void *arg), void *arg);

/* Graceful stop: stop accepting, close the listeners, finish the node
 * (sync), then cb(arg) and free. */
void server_stop(struct keel_server *s, void (*cb)(void *arg), void *arg);

/* ---- for the services (server/kv.c, maintenance.c, ...) ---------------- */

struct node *server_node(struct keel_server *s);
struct lessor;
struct lessor *server_lessor(struct keel_server *s);
struct auth;
struct auth *server_auth(struct keel_server *s); /* server/auth.h */
uv_loop_t *server_loop(struct keel_server *s);
/* The gRPC registry (the JSON gateway calls the services through it). */
struct grpc_server *server_grpc(struct keel_server *s);
/* The metrics registry behind GET /metrics (server/metrics.h). */
struct metrics_registry;
struct metrics_registry *server_metrics(struct keel_server *s);
uint64_t server_max_txn_ops(const struct keel_server *s);
/* --max-request-bytes (the default when unset); the gRPC receive limit is
 * this + 512 KiB (etcd's grpcOverheadBytes). */
size_t server_max_request_bytes(const struct keel_server *s);
/* --quota-backend-bytes as etcd reads it (config_quota_bytes: 0 -> 2 GiB,
 * negative -> 0 = no quota). */
int64_t server_quota_bytes(const struct keel_server *s);

/* Fill cluster_id, member_id and raft_term of *hdr, allocating it in a
 * when NULL; revision is left to the caller (the store sets it) unless
 * rev > 0. Returns the header, or NULL when out of memory. */
Etcdserverpb__ResponseHeader *server_header(struct keel_server *s,
                                            Etcdserverpb__ResponseHeader *hdr,
                                            struct keel_arena *a, int64_t rev);

/* A new, initialised message of type d in arena a (NULL when out of
 * memory). */
ProtobufCMessage *server_new_message(struct keel_arena *a,
                                     const ProtobufCMessageDescriptor *d);

/* Finish a unary call with resp: fill (allocating when NULL) the response's
 * `header` field (every etcd response has one) with server_header(..., rev)
 * and reply. resp NULL (an allocation failed) fails the call with
 * KEEL_ENOMEM. */
struct grpc_call;
void server_reply(struct keel_server *s, struct grpc_call *call,
                  ProtobufCMessage *resp, int64_t rev);

/* Register n methods; stops at the first error. */
struct grpc_method;
int server_register_methods(struct grpc_server *g,
                            const struct grpc_method *methods, size_t n);

/* Service registration (one file each). */
int kv_register(struct keel_server *s, struct grpc_server *g);
int maintenance_register(struct keel_server *s, struct grpc_server *g);
int cluster_register(struct keel_server *s, struct grpc_server *g);
int lease_register(struct keel_server *s, struct grpc_server *g);
/* v3lockpb.Lock and v3electionpb.Election (server/v3lock.c, v3election.c)
 * call the other services in-process: register after them. */
int v3lock_register(struct keel_server *s, struct grpc_server *g);
int v3election_register(struct keel_server *s, struct grpc_server *g);
int http_endpoints_register(struct keel_server *s, struct router *r);
/* /metrics and /health, for the --listen-metrics-urls listeners. */
int http_endpoints_register_metrics(struct keel_server *s, struct router *r);
/* The /v3 JSON gateway (server/gateway.c): routes on r that answer through
 * server_grpc(s); register after the gRPC services. */
int gateway_register(struct keel_server *s, struct router *r);

/* The Watch service (server/watch_service.c): registered on g, fed by the
 * node's applied events and compactions, closed after every call ended. */
struct watch_service;
int watch_service_start(struct keel_server *s, struct grpc_server *g,
                        const struct keel_config *cfg,
                        struct watch_service **out);
void watch_service_notify(struct watch_service *w, int64_t rev,
                          Mvccpb__Event **events, size_t n);
void watch_service_compacted(struct watch_service *w, int64_t rev);
/* After a snapshot install: every watcher resyncs from the store. */
void watch_service_restore(struct watch_service *w, int64_t rev);
void watch_service_close(struct watch_service *w, void (*cb)(void *),
                         void *arg);

/* For maintenance/cluster/http: identity and listen/advertise URLs. */
struct server_info
{
    uint64_t member_id;
    uint64_t cluster_id;
    const char *name;
    const char *const *peer_urls;
    size_t n_peer_urls;
    const char *const *client_urls;
    size_t n_client_urls;
    const char *data_dir;
};
void server_info(const struct keel_server *s, struct server_info *info);

/* ---- cluster (issue 5) ----------------------------------------------------- */

/* The peer transport (NULL for a member without --listen-peer-urls peers,
 * before it is open, and after stop). */
struct peer;
struct peer *server_peer(struct keel_server *s);
/* --strict-reconfig-check */
bool server_strict_reconfig(const struct keel_server *s);
/* cb(arg) runs when this member must stop on its own (it was removed from
 * the cluster): the caller stops it as for SIGTERM (main.c exits 0, as etcd
 * does). */
void server_on_removed(struct keel_server *s, void (*cb)(void *arg),
                       void *arg);

/* etcd MoveLeader: transfer leadership to `to` (a voter; this member must
 * lead) and wait until it leads, polling each heartbeat; cb(arg, 0) then, or
 * cb(arg, KEEL_ETIMEOUTLEADERTRANSFER) after timeout_ms. Returns
 * KEEL_ENOTLEADER / KEEL_EBADLEADERTRANSFEREE at once (cb not called). */
typedef void (*server_transfer_cb)(void *arg, int rv);
int server_move_leader(struct keel_server *s, uint64_t to, uint64_t timeout_ms,
                       server_transfer_cb cb, void *arg);
/* etcd's ReqTimeout: 5 s + 2 election timeouts. */
uint64_t server_request_timeout_ms(const struct keel_server *s);

/* The members table (server/cluster.c): every member ordered by id, as
 * etcd's MemberList shows them (name and client URLs once published),
 * allocated in a. */
int cluster_members(struct keel_server *s, struct keel_arena *a,
                    Etcdserverpb__Member ***out, size_t *n);
/* Whether id was removed from the cluster (members_removed). */
bool cluster_member_removed(struct keel_server *s, uint64_t id);
/* Peer requests between members (peer_call methods). */
#define CLUSTER_PEER_PROMOTE 1
/* On the leader: a follower forwarded MemberPromote (body: the member id,
 * 8 bytes big endian); answered through peer_respond with the packed
 * member list after the change, or a KEEL_E* code. */
struct peer_responder;
void cluster_serve_promote(struct keel_server *s, const uint8_t *body,
                           size_t len, struct peer_responder *r);
/* On the leader: a follower forwarded a lease renewal (LEASE_PEER_RENEW,
 * body a packed LeaseKeepAliveRequest; answer a packed
 * LeaseKeepAliveResponse {ID, TTL} or KEEL_ELEASENOTFOUND) or a TimeToLive
 * (LEASE_PEER_TTL, body a packed LeaseTimeToLiveRequest; answer a packed
 * LeaseTimeToLiveResponse without header, TTL -1 when unknown). */
#define LEASE_PEER_RENEW 2
#define LEASE_PEER_TTL 3
void lease_serve_peer(struct keel_server *s, uint32_t method,
                      const uint8_t *body, size_t len,
                      struct peer_responder *r);
/* A packed MemberListResponse (header with the cluster id) in *buf
 * (malloc'd): what a joining member gets from peer_fetch_cluster_info. */
int cluster_pack_member_list(struct keel_server *s, uint8_t **buf,
                             size_t *len);

#endif /* KEEL_SERVER_H */
