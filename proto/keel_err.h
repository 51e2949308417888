/*
 * keel error codes: one table for the whole project.
 *
 * Every fallible function in keel returns int: 0, a negative errno (system
 * errors, as libuv does), or a negative KEEL_E* code from the reserved range
 * below. Each KEEL_E* code carries, in one row of KEEL_ERR_MAP, what a client
 * can see of it: the gRPC status code and the exact message etcd 3.4 sends
 * (etcd: etcdserver/api/v3rpc/rpctypes/error.go; clients match on the text),
 * or for keel-internal errors a plain description.
 *
 * The table lives in proto/ because those codes and strings are part of the
 * wire contract that every other folder (storage, server, client) shares.
 * If you add a row, keep values unique and inside the reserved range.
 */
#ifndef KEEL_ERR_H
#define KEEL_ERR_H

/* gRPC status codes (grpc/codes). */
enum keel_grpc_code {
    KEEL_GRPC_OK = 0,
    KEEL_GRPC_CANCELED = 1,
    KEEL_GRPC_UNKNOWN = 2,
    KEEL_GRPC_INVALID_ARGUMENT = 3,
    KEEL_GRPC_DEADLINE_EXCEEDED = 4,
    KEEL_GRPC_NOT_FOUND = 5,
    KEEL_GRPC_ALREADY_EXISTS = 6,
    KEEL_GRPC_PERMISSION_DENIED = 7,
    KEEL_GRPC_RESOURCE_EXHAUSTED = 8,
    KEEL_GRPC_FAILED_PRECONDITION = 9,
    KEEL_GRPC_ABORTED = 10,
    KEEL_GRPC_OUT_OF_RANGE = 11,
    KEEL_GRPC_UNIMPLEMENTED = 12,
    KEEL_GRPC_INTERNAL = 13,
    KEEL_GRPC_UNAVAILABLE = 14,
    KEEL_GRPC_DATA_LOSS = 15,
    KEEL_GRPC_UNAUTHENTICATED = 16,
};

/* Reserved range: -30000 .. -30999 (far from any errno). */
#define KEEL_ERR_BASE (-30000)

/* X(name, offset, grpc code, message) */
#define KEEL_ERR_MAP(X)                                                        \
    /* keel-internal */                                                        \
    X(NOMEM, 1, RESOURCE_EXHAUSTED, "out of memory")                           \
    X(IO, 2, INTERNAL, "I/O error")                                            \
    X(CORRUPT, 3, DATA_LOSS, "data is corrupt")                                \
    X(INVAL, 4, INVALID_ARGUMENT, "invalid argument")                          \
    X(NOTFOUND, 5, NOT_FOUND, "not found")                                     \
    X(CANCELED, 6, CANCELED, "operation canceled")                             \
    X(TOOBIG, 7, INVALID_ARGUMENT, "value too large")                          \
    X(EXISTS, 8, ALREADY_EXISTS, "already exists")                             \
    X(DISKFULL, 9, RESOURCE_EXHAUSTED, "no space left on device")              \
    X(BUSY, 10, UNAVAILABLE, "resource busy")                                  \
    X(SHUTDOWN, 11, UNAVAILABLE, "shutting down")                              \
    X(UNIMPLEMENTED, 12, UNIMPLEMENTED, "not implemented")                     \
    /* a client listener cannot serve (its TLS certificate does not load):  \
     * etcd logs these as "listener failed", not "discovery failed" */       \
    X(LISTEN, 13, UNAVAILABLE, "listener failed")                              \
    /* a peer connection failed its TLS handshake or certificate checks */    \
    X(TLS, 14, UNAVAILABLE, "TLS handshake failed")                            \
    /* etcd 3.4 rpctypes, exact text */                                        \
    X(EMPTYKEY, 100, INVALID_ARGUMENT, "etcdserver: key is not provided")      \
    X(KEYNOTFOUND, 101, INVALID_ARGUMENT, "etcdserver: key not found")         \
    X(VALUEPROVIDED, 102, INVALID_ARGUMENT, "etcdserver: value is provided")   \
    X(LEASEPROVIDED, 103, INVALID_ARGUMENT, "etcdserver: lease is provided")   \
    X(TOOMANYOPS, 104, INVALID_ARGUMENT,                                       \
      "etcdserver: too many operations in txn request")                        \
    X(DUPLICATEKEY, 105, INVALID_ARGUMENT,                                     \
      "etcdserver: duplicate key given in txn request")                        \
    X(COMPACTED, 106, OUT_OF_RANGE,                                            \
      "etcdserver: mvcc: required revision has been compacted")                \
    X(FUTUREREV, 107, OUT_OF_RANGE,                                            \
      "etcdserver: mvcc: required revision is a future revision")              \
    X(NOSPACE, 108, RESOURCE_EXHAUSTED,                                        \
      "etcdserver: mvcc: database space exceeded")                             \
    /* etcd 3.5's ErrGRPCInvalidSortOption (3.4 panics instead) */             \
    X(INVALIDSORTOPTION, 109, INVALID_ARGUMENT,                                \
      "etcdserver: invalid sort option")                                       \
    X(LEASENOTFOUND, 110, NOT_FOUND, "etcdserver: requested lease not found")  \
    X(LEASEEXIST, 111, FAILED_PRECONDITION, "etcdserver: lease already exists") \
    X(LEASETTLTOOLARGE, 112, OUT_OF_RANGE, "etcdserver: too large lease TTL")  \
    X(WATCHCANCELED, 113, CANCELED, "etcdserver: watch canceled")              \
    X(MEMBEREXIST, 120, FAILED_PRECONDITION,                                   \
      "etcdserver: member ID already exist")                                   \
    X(PEERURLEXIST, 121, FAILED_PRECONDITION,                                  \
      "etcdserver: Peer URLs already exists")                                  \
    X(MEMBERNOTENOUGHSTARTED, 122, FAILED_PRECONDITION,                        \
      "etcdserver: re-configuration failed due to not enough started members") \
    X(MEMBERBADURLS, 123, INVALID_ARGUMENT,                                    \
      "etcdserver: given member URLs are invalid")                             \
    X(MEMBERNOTFOUND, 124, NOT_FOUND, "etcdserver: member not found")          \
    X(MEMBERNOTLEARNER, 125, FAILED_PRECONDITION,                              \
      "etcdserver: can only promote a learner member")                         \
    X(LEARNERNOTREADY, 126, FAILED_PRECONDITION,                               \
      "etcdserver: can only promote a learner member which is in sync with "   \
      "leader")                                                                \
    X(TOOMANYLEARNERS, 127, FAILED_PRECONDITION,                               \
      "etcdserver: too many learner members in cluster")                       \
    X(REQUESTTOOLARGE, 130, INVALID_ARGUMENT,                                  \
      "etcdserver: request is too large")                                      \
    X(TOOMANYREQUESTS, 131, RESOURCE_EXHAUSTED,                                \
      "etcdserver: too many requests")                                         \
    X(ROOTUSERNOTEXIST, 140, FAILED_PRECONDITION,                              \
      "etcdserver: root user does not exist")                                  \
    X(ROOTROLENOTEXIST, 141, FAILED_PRECONDITION,                              \
      "etcdserver: root user does not have root role")                         \
    X(USERALREADYEXIST, 142, FAILED_PRECONDITION,                              \
      "etcdserver: user name already exists")                                  \
    X(USEREMPTY, 143, INVALID_ARGUMENT, "etcdserver: user name is empty")      \
    X(USERNOTFOUND, 144, FAILED_PRECONDITION,                                  \
      "etcdserver: user name not found")                                       \
    X(ROLEALREADYEXIST, 145, FAILED_PRECONDITION,                              \
      "etcdserver: role name already exists")                                  \
    X(ROLENOTFOUND, 146, FAILED_PRECONDITION,                                  \
      "etcdserver: role name not found")                                       \
    X(ROLEEMPTY, 147, INVALID_ARGUMENT, "etcdserver: role name is empty")      \
    X(AUTHFAILED, 148, INVALID_ARGUMENT,                                       \
      "etcdserver: authentication failed, invalid user ID or password")        \
    X(PERMISSIONDENIED, 149, PERMISSION_DENIED,                                \
      "etcdserver: permission denied")                                         \
    X(ROLENOTGRANTED, 150, FAILED_PRECONDITION,                                \
      "etcdserver: role is not granted to the user")                           \
    X(PERMISSIONNOTGRANTED, 151, FAILED_PRECONDITION,                          \
      "etcdserver: permission is not granted to the role")                     \
    X(AUTHNOTENABLED, 152, FAILED_PRECONDITION,                                \
      "etcdserver: authentication is not enabled")                             \
    X(INVALIDAUTHTOKEN, 153, UNAUTHENTICATED,                                  \
      "etcdserver: invalid auth token")                                        \
    X(INVALIDAUTHMGMT, 154, INVALID_ARGUMENT,                                  \
      "etcdserver: invalid auth management")                                   \
    X(AUTHOLDREVISION, 155, INVALID_ARGUMENT,                                  \
      "etcdserver: revision of auth store is old")                             \
    X(NOLEADER, 160, UNAVAILABLE, "etcdserver: no leader")                     \
    X(NOTLEADER, 161, FAILED_PRECONDITION, "etcdserver: not leader")           \
    X(LEADERCHANGED, 162, UNAVAILABLE, "etcdserver: leader changed")           \
    X(NOTCAPABLE, 163, UNAVAILABLE, "etcdserver: not capable")                 \
    X(STOPPED, 164, UNAVAILABLE, "etcdserver: server stopped")                 \
    X(TIMEOUT, 165, UNAVAILABLE, "etcdserver: request timed out")              \
    X(TIMEOUTLEADERFAIL, 166, UNAVAILABLE,                                     \
      "etcdserver: request timed out, possibly due to previous leader "        \
      "failure")                                                               \
    X(TIMEOUTCONNLOST, 167, UNAVAILABLE,                                       \
      "etcdserver: request timed out, possibly due to connection lost")        \
    X(TIMEOUTWAITAPPLIED, 168, UNAVAILABLE,                                    \
      "etcdserver: request timed out, waiting for the applied index took too " \
      "long")                                                                  \
    X(UNHEALTHY, 169, UNAVAILABLE, "etcdserver: unhealthy cluster")            \
    X(CORRUPTCLUSTER, 170, DATA_LOSS, "etcdserver: corrupt cluster")           \
    X(NOTFORLEARNER, 171, UNAVAILABLE,                                         \
      "etcdserver: rpc not supported for learner")                             \
    X(BADLEADERTRANSFEREE, 172, FAILED_PRECONDITION,                           \
      "etcdserver: bad leader transferee")                                     \
    X(TIMEOUTLEADERTRANSFER, 173, UNKNOWN,                                     \
      "etcdserver: request timed out, leader transfer took too long")

enum keel_err {
#define KEEL_ERR_ENUM(name, off, grpc, msg) KEEL_E##name = KEEL_ERR_BASE - (off),
    KEEL_ERR_MAP(KEEL_ERR_ENUM)
#undef KEEL_ERR_ENUM
};

/* Message for any return code: a KEEL_E* message, strerror(-rv) for a
 * negative errno, "ok" for 0. Never NULL; static storage. */
const char *keel_strerror(int rv);

/* Short name ("KEEL_ECOMPACTED", "ENOENT"), for logs and tests. */
const char *keel_errname(int rv);

/* The gRPC status a client sees for rv (UNKNOWN for unmapped errno values,
 * RESOURCE_EXHAUSTED for -ENOMEM, OK for 0). */
enum keel_grpc_code keel_err_grpc_code(int rv);

/* Whether rv is one of keel's own codes. */
int keel_err_is_keel(int rv);

#endif /* KEEL_ERR_H */
