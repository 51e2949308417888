/*
 * storage/v2store.h: etcd 3.4's v2 key tree (etcd: etcdserver/api/v2store),
 * kept in memory and persisted in the `v2` table of the MVCC environment.
 *
 * Every change comes from a replicated request applied in an MVCC write
 * batch (v2store_apply), so the table is written in the same LMDB txn as
 * consistent_index: a restart or a store image sent to a follower carries
 * exactly the applied state. The in-memory tree is a cache of the table,
 * rebuilt by v2store_open / v2store_reload (after a snapshot install).
 *
 * Paths are the v2 keys namespace as clients see it ("/foo/bar"); the root
 * is "/" in requests and "" in node keys and error causes (etcd keeps keys
 * under "/1" and trims that prefix from what it sends, so its root key is
 * empty). A request path is cleaned as Go's path.Clean(path.Join("/", p)).
 *
 * Semantics, error codes, causes and indexes follow etcd's store.go /
 * node.go exactly (Set, Create, Update, CompareAndSwap, Delete,
 * CompareAndDelete, DeleteExpiredKeys); v2 errors are not C errors: the
 * call returns 0 and the response carries error_code/cause/index. A C
 * error (storage failure, out of memory) poisons the MVCC batch as any
 * other write would.
 *
 * Table layout (keys are never shown to users):
 *   "\x00index"           -> the store's CurrentIndex (8 bytes, big endian)
 *   <path> (or "\x01" + sha256(path) when longer than 400 bytes)
 *                         -> record: u8 dir, u64 created, u64 modified,
 *                            i64 expire (unix ns, 0 = permanent),
 *                            u32 path length, path, value
 *
 * Threads: the writer's thread only (the loop thread in the server).
 */
#ifndef KEEL_V2STORE_H
#define KEEL_V2STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keel_arena.h"
#include "keelpb/request.pb-c.h"

struct mvcc_store;
struct mvcc_write;
struct v2store;

/* etcd's v2error codes (etcdserver/api/v2error/error.go). */
enum {
    V2_ECODE_KEY_NOT_FOUND = 100,
    V2_ECODE_TEST_FAILED = 101,
    V2_ECODE_NOT_FILE = 102,
    V2_ECODE_NOT_DIR = 104,
    V2_ECODE_NODE_EXIST = 105,
    V2_ECODE_ROOT_RONLY = 107,
    V2_ECODE_DIR_NOT_EMPTY = 108,
    V2_ECODE_UNAUTHORIZED = 110,
    V2_ECODE_PREV_VALUE_REQUIRED = 201,
    V2_ECODE_TTL_NAN = 202,
    V2_ECODE_INDEX_NAN = 203,
    V2_ECODE_INVALID_FIELD = 209,
    V2_ECODE_INVALID_FORM = 210,
    V2_ECODE_REFRESH_VALUE = 211,
    V2_ECODE_REFRESH_TTL_REQUIRED = 212,
    V2_ECODE_RAFT_INTERNAL = 300,
    V2_ECODE_LEADER_ELECT = 301,
    V2_ECODE_WATCHER_CLEARED = 400,
    V2_ECODE_EVENT_INDEX_CLEARED = 401,
};

/* etcd's message for a v2 error code ("" for an unknown one) and its HTTP
 * status (400 unless listed in etcd's errorStatus). */
const char *v2store_error_message(int code);
int v2store_error_status(int code);

/* Load the tree from s's `v2` table. *out is owned by the caller
 * (v2store_free). 0 or a negative code (KEEL_ECORRUPT for a bad record). */
int v2store_open(struct mvcc_store *s, struct v2store **out);
void v2store_free(struct v2store *v);

/* Drop the tree and load it again from the table (after the store's file
 * was replaced by a snapshot image). */
int v2store_reload(struct v2store *v);

/* etcd's CurrentIndex: the index of the last v2 change. */
uint64_t v2store_index(const struct v2store *v);

/* Whether some node has a TTL (etcd: HasTTLKeys: the leader proposes SYNC
 * only then). */
bool v2store_has_ttl(const struct v2store *v);

/* Number of nodes, root excluded (tests, stats). */
size_t v2store_count(const struct v2store *v);

/* Apply a replicated request (method PUT, POST, DELETE, QGET or SYNC) in
 * batch w: *resp (in arena a) holds the v2 error or the events. now_ns is
 * this member's clock, used only for the ttl shown in the response (the
 * state depends only on the request). Returns 0, or a C error (the batch
 * is poisoned then). */
int v2store_apply(struct v2store *v, struct mvcc_write *w,
                  const Keelpb__V2Request *req, int64_t now_ns,
                  struct keel_arena *a, Keelpb__V2Response **resp);

/* Take one index for a change etcd makes in its store's cluster namespace
 * ("/0": member added, removed, updated, published, cluster version set)
 * and keel keeps elsewhere, so v2 indexes stay those of etcd. */
int v2store_bump_index(struct v2store *v, struct mvcc_write *w);

/* etcd's Get: one event "get" in *resp (or the v2 error), from memory. */
int v2store_get(struct v2store *v, const char *path, bool recursive,
                bool sorted, int64_t now_ns, struct keel_arena *a,
                Keelpb__V2Response **resp);

/* path cleaned as Go's path.Clean(path.Join("/", p)), in a. */
char *v2store_clean_path(struct keel_arena *a, const char *p, size_t len);

/* etcd's store stats (v2stats: getsSuccess, ... watchers excluded), in
 * JSON field order of etcd's Stats struct. */
struct v2store_stats
{
    uint64_t get_success, get_fail;
    uint64_t set_success, set_fail;
    uint64_t delete_success, delete_fail;
    uint64_t update_success, update_fail;
    uint64_t create_success, create_fail;
    uint64_t cas_success, cas_fail;
    uint64_t cad_success, cad_fail;
    uint64_t expire_count;
};
void v2store_stats(const struct v2store *v, struct v2store_stats *out);

#endif /* KEEL_V2STORE_H */
