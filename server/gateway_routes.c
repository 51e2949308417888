/*
 * Route table and error mapping of the v3 JSON gateway.
 *
 * The table is data: one row per (path, RPC) from the google.api.http
 * options in etcd 3.4's rpc.proto, v3lock.proto and v3election.proto, in the
 * order etcd registers them (KV, Watch, Lease, Cluster, Maintenance, Auth,
 * Lock, Election; within a service, the gateway file's order). A request
 * matches by exact path after the /v3beta/ -> /v3/ rewrite; the first row
 * wins, which is how /v3/maintenance/hash reaches Hash and never HashKV.
 *
 * Error bodies are built with json_pb's Go-compatible string escaping, so a
 * message with quotes or '<' prints exactly as etcd prints it.
 */
#include "gateway_routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "json_pb.h"
#include "v3electionpb/v3election.pb-c.h"
#include "v3lockpb/v3lock.pb-c.h"

#define ROUTE(path, pkg, svc, svcdesc, meth, req, resp, kind)                  \
    {path,                                                                     \
     "/" pkg "." svc "/" meth,                                                 \
     &svcdesc,                                                                 \
     meth,                                                                     \
     &req,                                                                     \
     &resp,                                                                    \
     kind}

#define KV(path, meth, req, resp)                                              \
    ROUTE(path, "etcdserverpb", "KV", etcdserverpb__kv__descriptor, meth,      \
          etcdserverpb__##req##__descriptor,                                   \
          etcdserverpb__##resp##__descriptor, GATEWAY_UNARY)
#define LEASE(path, meth, req, resp, kind)                                     \
    ROUTE(path, "etcdserverpb", "Lease", etcdserverpb__lease__descriptor,      \
          meth, etcdserverpb__##req##__descriptor,                             \
          etcdserverpb__##resp##__descriptor, kind)
#define CLUSTER(path, meth, req, resp)                                         \
    ROUTE(path, "etcdserverpb", "Cluster", etcdserverpb__cluster__descriptor,  \
          meth, etcdserverpb__##req##__descriptor,                             \
          etcdserverpb__##resp##__descriptor, GATEWAY_UNARY)
#define MAINT(path, meth, req, resp, kind)                                     \
    ROUTE(path, "etcdserverpb", "Maintenance",                                 \
          etcdserverpb__maintenance__descriptor, meth,                         \
          etcdserverpb__##req##__descriptor,                                   \
          etcdserverpb__##resp##__descriptor, kind)
#define AUTH(path, meth, req, resp)                                            \
    ROUTE(path, "etcdserverpb", "Auth", etcdserverpb__auth__descriptor, meth,  \
          etcdserverpb__##req##__descriptor,                                   \
          etcdserverpb__##resp##__descriptor, GATEWAY_UNARY)
#define ELECTION(path, meth, req, resp, kind)                                  \
    ROUTE(path, "v3electionpb", "Election", v3electionpb__election__descriptor, \
          meth, v3electionpb__##req##__descriptor,                             \
          v3electionpb__##resp##__descriptor, kind)

const struct gateway_route gateway_routes[] = {
    KV("/v3/kv/range", "Range", range_request, range_response),
    KV("/v3/kv/put", "Put", put_request, put_response),
    KV("/v3/kv/deleterange", "DeleteRange", delete_range_request,
       delete_range_response),
    KV("/v3/kv/txn", "Txn", txn_request, txn_response),
    KV("/v3/kv/compaction", "Compact", compaction_request,
       compaction_response),

    ROUTE("/v3/watch", "etcdserverpb", "Watch",
          etcdserverpb__watch__descriptor, "Watch",
          etcdserverpb__watch_request__descriptor,
          etcdserverpb__watch_response__descriptor, GATEWAY_BIDI_STREAM),

    LEASE("/v3/lease/grant", "LeaseGrant", lease_grant_request,
          lease_grant_response, GATEWAY_UNARY),
    LEASE("/v3/lease/revoke", "LeaseRevoke", lease_revoke_request,
          lease_revoke_response, GATEWAY_UNARY),
    LEASE("/v3/kv/lease/revoke", "LeaseRevoke", lease_revoke_request,
          lease_revoke_response, GATEWAY_UNARY),
    LEASE("/v3/lease/keepalive", "LeaseKeepAlive", lease_keep_alive_request,
          lease_keep_alive_response, GATEWAY_BIDI_STREAM),
    LEASE("/v3/lease/timetolive", "LeaseTimeToLive",
          lease_time_to_live_request, lease_time_to_live_response,
          GATEWAY_UNARY),
    LEASE("/v3/kv/lease/timetolive", "LeaseTimeToLive",
          lease_time_to_live_request, lease_time_to_live_response,
          GATEWAY_UNARY),
    LEASE("/v3/lease/leases", "LeaseLeases", lease_leases_request,
          lease_leases_response, GATEWAY_UNARY),
    LEASE("/v3/kv/lease/leases", "LeaseLeases", lease_leases_request,
          lease_leases_response, GATEWAY_UNARY),

    CLUSTER("/v3/cluster/member/add", "MemberAdd", member_add_request,
            member_add_response),
    CLUSTER("/v3/cluster/member/remove", "MemberRemove", member_remove_request,
            member_remove_response),
    CLUSTER("/v3/cluster/member/update", "MemberUpdate", member_update_request,
            member_update_response),
    CLUSTER("/v3/cluster/member/list", "MemberList", member_list_request,
            member_list_response),
    CLUSTER("/v3/cluster/member/promote", "MemberPromote",
            member_promote_request, member_promote_response),

    MAINT("/v3/maintenance/alarm", "Alarm", alarm_request, alarm_response,
          GATEWAY_UNARY),
    MAINT("/v3/maintenance/status", "Status", status_request, status_response,
          GATEWAY_UNARY),
    MAINT("/v3/maintenance/defragment", "Defragment", defragment_request,
          defragment_response, GATEWAY_UNARY),
    MAINT("/v3/maintenance/hash", "Hash", hash_request, hash_response,
          GATEWAY_UNARY),
    /* Shadowed by Hash above (same path), as in etcd 3.4. */
    MAINT("/v3/maintenance/hash", "HashKV", hash_kvrequest, hash_kvresponse,
          GATEWAY_UNARY),
    MAINT("/v3/maintenance/snapshot", "Snapshot", snapshot_request,
          snapshot_response, GATEWAY_SERVER_STREAM),
    MAINT("/v3/maintenance/transfer-leadership", "MoveLeader",
          move_leader_request, move_leader_response, GATEWAY_UNARY),

    AUTH("/v3/auth/enable", "AuthEnable", auth_enable_request,
         auth_enable_response),
    AUTH("/v3/auth/disable", "AuthDisable", auth_disable_request,
         auth_disable_response),
    AUTH("/v3/auth/authenticate", "Authenticate", authenticate_request,
         authenticate_response),
    AUTH("/v3/auth/user/add", "UserAdd", auth_user_add_request,
         auth_user_add_response),
    AUTH("/v3/auth/user/get", "UserGet", auth_user_get_request,
         auth_user_get_response),
    AUTH("/v3/auth/user/list", "UserList", auth_user_list_request,
         auth_user_list_response),
    AUTH("/v3/auth/user/delete", "UserDelete", auth_user_delete_request,
         auth_user_delete_response),
    AUTH("/v3/auth/user/changepw", "UserChangePassword",
         auth_user_change_password_request,
         auth_user_change_password_response),
    AUTH("/v3/auth/user/grant", "UserGrantRole", auth_user_grant_role_request,
         auth_user_grant_role_response),
    AUTH("/v3/auth/user/revoke", "UserRevokeRole",
         auth_user_revoke_role_request, auth_user_revoke_role_response),
    AUTH("/v3/auth/role/add", "RoleAdd", auth_role_add_request,
         auth_role_add_response),
    AUTH("/v3/auth/role/get", "RoleGet", auth_role_get_request,
         auth_role_get_response),
    AUTH("/v3/auth/role/list", "RoleList", auth_role_list_request,
         auth_role_list_response),
    AUTH("/v3/auth/role/delete", "RoleDelete", auth_role_delete_request,
         auth_role_delete_response),
    AUTH("/v3/auth/role/grant", "RoleGrantPermission",
         auth_role_grant_permission_request,
         auth_role_grant_permission_response),
    AUTH("/v3/auth/role/revoke", "RoleRevokePermission",
         auth_role_revoke_permission_request,
         auth_role_revoke_permission_response),

    ROUTE("/v3/lock/lock", "v3lockpb", "Lock", v3lockpb__lock__descriptor,
          "Lock", v3lockpb__lock_request__descriptor,
          v3lockpb__lock_response__descriptor, GATEWAY_UNARY),
    ROUTE("/v3/lock/unlock", "v3lockpb", "Lock", v3lockpb__lock__descriptor,
          "Unlock", v3lockpb__unlock_request__descriptor,
          v3lockpb__unlock_response__descriptor, GATEWAY_UNARY),

    ELECTION("/v3/election/campaign", "Campaign", campaign_request,
             campaign_response, GATEWAY_UNARY),
    ELECTION("/v3/election/proclaim", "Proclaim", proclaim_request,
             proclaim_response, GATEWAY_UNARY),
    ELECTION("/v3/election/leader", "Leader", leader_request, leader_response,
             GATEWAY_UNARY),
    ELECTION("/v3/election/observe", "Observe", leader_request,
             leader_response, GATEWAY_SERVER_STREAM),
    ELECTION("/v3/election/resign", "Resign", resign_request, resign_response,
             GATEWAY_UNARY),
};

const size_t gateway_routes_count =
    sizeof gateway_routes / sizeof gateway_routes[0];

enum gateway_match gateway_route_match(const char *method, const char *path,
                                       size_t path_len,
                                       const struct gateway_route **route)
{
    /* "/v3/..." as the table spells it, after etcd's /v3beta/ rewrite. */
    char buf[128];
    const char *rest;
    size_t rest_len;
    *route = NULL;
    if (path_len >= 4 && memcmp(path, "/v3/", 4) == 0) {
        rest = path + 4;
        rest_len = path_len - 4;
    } else if (path_len >= 8 && memcmp(path, "/v3beta/", 8) == 0) {
        rest = path + 8;
        rest_len = path_len - 8;
    } else {
        return GATEWAY_NOT_GATEWAY;
    }
    /* grpc-gateway splits a ":verb" off the last path component; no etcd
     * route has a verb, so "range:" still matches Range but "range:x" not. */
    const char *last = rest;
    for (size_t i = 0; i < rest_len; i++) {
        if (rest[i] == '/') {
            last = rest + i + 1;
        }
    }
    const char *colon = memchr(last, ':', rest_len - (size_t)(last - rest));
    if (colon != NULL) {
        const char *lastcolon = colon;
        const char *p;
        while ((p = memchr(lastcolon + 1, ':',
                           rest_len - (size_t)(lastcolon + 1 - rest))) !=
               NULL) {
            lastcolon = p;
        }
        if (lastcolon == last || lastcolon + 1 != rest + rest_len) {
            return GATEWAY_NOT_FOUND;
        }
        rest_len = (size_t)(lastcolon - rest);
    }
    if (rest_len + 4 >= sizeof buf) {
        return GATEWAY_NOT_FOUND;
    }
    memcpy(buf, "/v3/", 4);
    memcpy(buf + 4, rest, rest_len);
    buf[rest_len + 4] = '\0';
    for (size_t i = 0; i < gateway_routes_count; i++) {
        if (strcmp(gateway_routes[i].path, buf) == 0) {
            if (strcmp(method, "POST") != 0) {
                return GATEWAY_METHOD_NOT_ALLOWED;
            }
            *route = &gateway_routes[i];
            return GATEWAY_FOUND;
        }
    }
    return GATEWAY_NOT_FOUND;
}

const char *gateway_plain_error(enum gateway_match m, int *http_status)
{
    if (m == GATEWAY_METHOD_NOT_ALLOWED) {
        *http_status = 405;
        return "Method Not Allowed\n";
    }
    if (m == GATEWAY_NOT_GATEWAY) {
        /* What Go's ServeMux says for a path nobody handles. */
        *http_status = 404;
        return "404 page not found\n";
    }
    *http_status = 404;
    return "Not Found\n";
}

int gateway_http_status(enum keel_grpc_code code)
{
    switch (code) {
    case KEEL_GRPC_OK: return 200;
    case KEEL_GRPC_CANCELED: return 408;
    case KEEL_GRPC_UNKNOWN: return 500;
    case KEEL_GRPC_INVALID_ARGUMENT: return 400;
    case KEEL_GRPC_DEADLINE_EXCEEDED: return 504;
    case KEEL_GRPC_NOT_FOUND: return 404;
    case KEEL_GRPC_ALREADY_EXISTS: return 409;
    case KEEL_GRPC_PERMISSION_DENIED: return 403;
    case KEEL_GRPC_UNAUTHENTICATED: return 401;
    case KEEL_GRPC_RESOURCE_EXHAUSTED: return 429;
    case KEEL_GRPC_FAILED_PRECONDITION: return 412;
    case KEEL_GRPC_ABORTED: return 409;
    case KEEL_GRPC_OUT_OF_RANGE: return 400;
    case KEEL_GRPC_UNIMPLEMENTED: return 501;
    case KEEL_GRPC_INTERNAL: return 500;
    case KEEL_GRPC_UNAVAILABLE: return 503;
    case KEEL_GRPC_DATA_LOSS: return 500;
    }
    return 500;
}

const char *gateway_http_status_text(int s)
{
    switch (s) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    }
    return "";
}

static char *finish(struct json_pb_buf *b, size_t *len)
{
    if (b->oom) {
        free(b->data);
        return NULL;
    }
    if (len) {
        *len = b->len;
    }
    return b->data;
}

char *gateway_error_body(enum keel_grpc_code code, const char *msg,
                         size_t *len)
{
    struct json_pb_buf b = {0};
    char num[32];
    size_t n = strlen(msg);
    json_pb_append_raw(&b, "{\"error\":", 9);
    json_pb_append_string(&b, msg, n);
    json_pb_append_raw(&b, ",\"message\":", 11);
    json_pb_append_string(&b, msg, n);
    snprintf(num, sizeof num, ",\"code\":%d}", (int)code);
    json_pb_append_raw(&b, num, strlen(num));
    return finish(&b, len);
}

char *gateway_error_body_rv(int rv, int *http_status, size_t *len)
{
    enum keel_grpc_code code = keel_err_grpc_code(rv);
    *http_status = gateway_http_status(code);
    return gateway_error_body(code, keel_strerror(rv), len);
}

char *gateway_stream_error_chunk(enum keel_grpc_code code, const char *msg,
                                 size_t *len)
{
    struct json_pb_buf b = {0};
    char num[64];
    int http = gateway_http_status(code);
    const char *sep = "";
    json_pb_append_raw(&b, "{\"error\":{", 10);
    if (code != KEEL_GRPC_OK) {
        snprintf(num, sizeof num, "\"grpc_code\":%d", (int)code);
        json_pb_append_raw(&b, num, strlen(num));
        sep = ",";
    }
    snprintf(num, sizeof num, "%s\"http_code\":%d", sep, http);
    json_pb_append_raw(&b, num, strlen(num));
    if (msg[0] != '\0') {
        json_pb_append_raw(&b, ",\"message\":", 11);
        json_pb_append_string(&b, msg, strlen(msg));
    }
    json_pb_append_raw(&b, ",\"http_status\":", 15);
    const char *st = gateway_http_status_text(http);
    json_pb_append_string(&b, st, strlen(st));
    json_pb_append_raw(&b, "}}", 2);
    return finish(&b, len);
}

enum keel_grpc_code gateway_decode_error_code(const struct gateway_route *r)
{
    return r->kind == GATEWAY_BIDI_STREAM ? KEEL_GRPC_UNKNOWN
                                          : KEEL_GRPC_INVALID_ARGUMENT;
}

int gateway_decode_request(const struct gateway_route *r, const char *body,
                           size_t len, struct keel_arena *a,
                           ProtobufCMessage **out, int *http_status,
                           char **err_body, size_t *err_len)
{
    /* Error texts quote at most the whole body, 4 bytes per input byte
     * (\xNN), plus a fixed part: never truncated, as etcd's are not. */
    size_t errlen = len * 4 + 512;
    char *err = keel_arena_alloc(a, errlen);
    *err_body = NULL;
    *err_len = 0;
    if (err == NULL) {
        *http_status = gateway_http_status(KEEL_GRPC_RESOURCE_EXHAUSTED);
        *err_body = gateway_error_body(KEEL_GRPC_RESOURCE_EXHAUSTED,
                                       keel_strerror(KEEL_ENOMEM), err_len);
        return KEEL_ENOMEM;
    }
    int rv = json_pb_decode(r->request, body, len, a, out, err, errlen);
    if (rv == 0) {
        *http_status = 200;
        return 0;
    }
    enum keel_grpc_code code = rv == KEEL_EINVAL
                                   ? gateway_decode_error_code(r)
                                   : keel_err_grpc_code(rv);
    *http_status = gateway_http_status(code);
    *err_body = gateway_error_body(code, err, err_len);
    return rv;
}
