/*
 * storage/mvcc.h: etcd 3.4's v3 data model (MVCC) on LMDB.
 *
 * The store keeps every revision of every key until it is compacted, exactly
 * as etcd's mvcc package does (etcd: mvcc/kvstore.go, kvstore_txn.go):
 *
 *   - a write transaction (one raft entry = one etcd txn) takes the next main
 *     revision; each change in it gets a sub revision 0, 1, 2, ...; a txn
 *     that changes nothing does not bump the revision;
 *   - a fresh store is at revision 1 (the first write gets revision 2) and
 *     has compact revision -1, as etcd;
 *   - a delete writes a tombstone; the next put starts a new generation
 *     (create_revision = its revision, version 1).
 *
 * Threads: one writer at a time (LMDB). Reads (mvcc_range, mvcc_txn_read,
 * mvcc_events_since, mvcc_hash_kv, table reads with w == NULL) open their own
 * short LMDB read txn and may run on any thread concurrently with the writer.
 * Never call a read function that opens a write txn (mvcc_compact_step) on a
 * thread that has a write batch open: LMDB would deadlock; it is refused with
 * KEEL_EBUSY.
 *
 * Requests and responses are etcd's protobuf-c structs. Ownership: requests
 * are borrowed for the duration of the call. Every response, KeyValue and
 * Event is allocated in the caller's arena (struct keel_arena) and owned by
 * it: valid until the arena is reset or freed; nothing points into LMDB.
 * Response headers carry only `revision`; cluster_id, member_id and raft_term
 * are the server's to fill.
 *
 * Errors: 0 or a negative code. etcd's semantic errors (KEEL_ECOMPACTED,
 * KEEL_EFUTUREREV, KEEL_EKEYNOTFOUND, KEEL_ELEASENOTFOUND, KEEL_EEMPTYKEY,
 * KEEL_EDUPLICATEKEY, KEEL_ELEASEEXIST) are detected before anything is
 * written: the operation had no effect and the batch stays usable. Storage
 * errors (KEEL_ENOSPACE for a full LMDB map, KEEL_EIO, KEEL_ECORRUPT,
 * -errno) poison the batch: every later call on it returns the same error and
 * mvcc_write_commit() aborts the LMDB txn, so the file keeps exactly the last
 * committed batch. mvcc_errmsg() says what failed ("mvcc: put: mdb_put(key):
 * MDB_MAP_FULL: ...").
 */
#ifndef KEEL_MVCC_H
#define KEEL_MVCC_H

#include <stddef.h>
#include <stdint.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel_arena.h"
#include "mvccpb/kv.pb-c.h"

struct mvcc_store;
struct mvcc_write;

/* Default LMDB map size: 8 GiB, sparse (only written pages take disk). The
 * quota (--quota-backend-bytes, etcd's default 2 GiB) is enforced by the
 * server below this; running into the map size gives KEEL_ENOSPACE. */
#define MVCC_DEFAULT_MAP_SIZE ((size_t)8 << 30)

struct mvcc_options
{
    size_t map_size; /* LMDB map size in bytes; 0 = MVCC_DEFAULT_MAP_SIZE */
};

/* ---- lifecycle ---------------------------------------------------------- */

/* Open (creating if needed) the store in the LMDB file `db_path` (etcd's
 * layout: <data-dir>/member/snap/db; missing parent directories are
 * created). Opening reads a few meta keys only: no index rebuild, so it takes
 * milliseconds at any size. A file may be open once per process (LMDB's
 * rule); other processes may open it too. opts may be NULL. On success *out is the store;
 * free it with mvcc_close(). On failure *out is NULL and, when errmsg is not
 * NULL, errmsg (errmsg_len bytes) says why. */
int mvcc_open(const char *db_path,
              const struct mvcc_options *opts,
              struct mvcc_store **out,
              char *errmsg,
              size_t errmsg_len);

/* Close the store. No batch may be open and no read may be running. */
void mvcc_close(struct mvcc_store *s);

/* Flush the LMDB file to disk (mdb_env_sync with force): the env runs with
 * MDB_NOSYNC because the WAL is the durable record. */
int mvcc_sync(struct mvcc_store *s);

/* Write a consistent copy of the whole store (as of the last commit) to fd,
 * from a read txn: writers are not blocked. compact != 0 leaves free pages
 * out (defrag, snapshots for followers). The copy opens with mvcc_open()
 * like the original (same history, consistent_index and hashes). */
int mvcc_copy_fd(struct mvcc_store *s, int fd, int compact);

/* Defragmentation (storage/mvcc_defrag.c), in two steps:
 * mvcc_defrag_copy() writes a compacting copy of the committed state to
 * "<db path>.defrag" and fsyncs it; it reads only (a read txn), so it may
 * run on a worker thread, but nothing may be committed until the swap (the
 * copy would miss it). mvcc_defrag_swap() then, on the writer's thread with
 * no batch open and no read txn open on any thread, replaces the file by
 * the copy and reopens it in place (s keeps its address). An error from
 * the swap other than KEEL_EBUSY leaves the store closed (fatal for the
 * caller). mvcc_defrag_discard() removes a copy that will not be swapped. */
int mvcc_defrag_copy(struct mvcc_store *s);
int mvcc_defrag_swap(struct mvcc_store *s);
void mvcc_defrag_discard(struct mvcc_store *s);

/* Install another store image (a raft snapshot from the leader, made with
 * mvcc_copy_fd): the file `image` (on the same filesystem) is checked to
 * open as a store, then renamed over this store's file and the store is
 * reopened in place (s keeps its address; its revision, compact revision,
 * consistent_index and term become the image's). Same preconditions as
 * mvcc_defrag_swap (writer's thread, no batch and no read txn open
 * anywhere). An image that does not open leaves the store untouched and
 * returns its error; an error after the rename leaves the store closed
 * (fatal for the caller). */
int mvcc_replace(struct mvcc_store *s, const char *image);

/* Size of the LMDB file (one fstat; what mvcc_db_size reports as total,
 * without walking the free list): for per-request checks such as the
 * quota. */
int mvcc_file_size(struct mvcc_store *s, uint64_t *bytes);

/* Change the map size (e.g. after KEEL_ENOSPACE). No batch may be open. */
int mvcc_set_map_size(struct mvcc_store *s, size_t bytes);

/* The message of the last error on the calling thread (each thread has its
 * own: read it on the thread that got the error, before its next call). */
const char *mvcc_errmsg(const struct mvcc_store *s);

/* Committed state, from the last committed batch. Call on the writer's
 * thread (readers get the revision of their view in response headers). */
int64_t mvcc_revision(struct mvcc_store *s);         /* current revision */
int64_t mvcc_compact_revision(struct mvcc_store *s); /* -1 if never */
uint64_t mvcc_consistent_index(struct mvcc_store *s);
uint64_t mvcc_term(struct mvcc_store *s);

/* ---- write batches ------------------------------------------------------ */

/* Begin a batch: one LMDB write txn for several raft entries. Each write
 * call below (mvcc_put, mvcc_delete_range, mvcc_txn, mvcc_compact,
 * lease_store_revoke, ...) is one etcd txn with its own main revision.
 * Only one batch may be open at a time. */
int mvcc_write_begin(struct mvcc_store *s, struct mvcc_write **w);

/* Whether the raft entry `index` must be applied: 0 when the store already
 * reflects it (index <= the consistent_index committed before this batch),
 * 1 otherwise. The server re-applies entries after mvcc_consistent_index()
 * at restart; this makes re-applying a batch a no-op. */
int mvcc_write_should_apply(const struct mvcc_write *w, uint64_t index);

/* Commit the batch with the raft index/term of its last entry, written in
 * the same LMDB txn as the changes. consistent_index must not go backwards
 * (KEEL_EINVAL, and the batch is aborted). Frees w whatever the outcome. On
 * error nothing of the batch is in the file. */
int mvcc_write_commit(struct mvcc_write *w,
                      uint64_t consistent_index,
                      uint64_t term);

/* mvcc_write_commit for `snapshot restore` only: the restored store joins
 * a new raft log that starts again at index 1, so consistent_index may go
 * backwards (etcd: clientv3/snapshot/v3_snapshot.go saveDB sets it to the
 * number of members). Never use it on a live member. */
int mvcc_write_commit_reset(struct mvcc_write *w,
                            uint64_t consistent_index,
                            uint64_t term);

/* Abort the batch: nothing of it is written. Frees w. */
void mvcc_write_abort(struct mvcc_write *w);

/* Events of the last write call on w (one etcd txn), in sub-revision order:
 * PUT events with the new kv, DELETE events with {key, mod_revision}.
 * prev_kv is what etcd's watch sends (etcd: v3rpc/watch.go): the key as it
 * was at the revision before, and none for a put that creates the key. The
 * array and events live in the arena given to that call; n is 0 when it
 * wrote nothing. */
void mvcc_write_events(const struct mvcc_write *w,
                       Mvccpb__Event ***events,
                       size_t *n);

/* ---- KV operations in a batch (etcd: etcdserver/apply.go) --------------- */

/* Put: etcd's checks (empty key, value with ignore_value, lease with
 * ignore_lease, unknown lease, ignore_* on a missing key) come first and
 * have no effect; then one revision. resp->prev_kv when req->prev_kv. */
int mvcc_put(struct mvcc_write *w,
             const Etcdserverpb__PutRequest *req,
             struct keel_arena *a,
             Etcdserverpb__PutResponse **resp);

int mvcc_delete_range(struct mvcc_write *w,
                      const Etcdserverpb__DeleteRangeRequest *req,
                      struct keel_arena *a,
                      Etcdserverpb__DeleteRangeResponse **resp);

/* Txn: compares, then the success or failure ops (nested txns allowed), all
 * at one revision, all or nothing. Checks the ops on the taken path first
 * (ignore_value/ignore_lease on a missing key: KEEL_EKEYNOTFOUND; unknown
 * lease: KEEL_ELEASENOTFOUND; range revision: KEEL_ECOMPACTED/EFUTUREREV).
 * Reads in the txn see its earlier writes; nested txn responses have a
 * header with revision 0, as etcd's. Duplicate keys are the caller's check
 * (mvcc_txn_check, before proposing), as in etcd's v3rpc layer: a txn that
 * fails it may fail half-way here, which poisons the batch. */
int mvcc_txn(struct mvcc_write *w,
             const Etcdserverpb__TxnRequest *req,
             struct keel_arena *a,
             Etcdserverpb__TxnResponse **resp);

/* Range inside the batch: sees the batch's earlier writes. */
int mvcc_write_range(struct mvcc_write *w,
                     const Etcdserverpb__RangeRequest *req,
                     struct keel_arena *a,
                     Etcdserverpb__RangeResponse **resp);

/* Compact at rev: reads below rev fail with KEEL_ECOMPACTED from now on;
 * rev <= the compact revision: KEEL_ECOMPACTED; rev > current: EFUTUREREV.
 * Records etcd's scheduledCompactRev in meta. Physical removal of the
 * superseded revisions runs later, in batches, with mvcc_compact_step(),
 * and resumes after a restart (etcd: finishedCompactRev). */
int mvcc_compact(struct mvcc_write *w, int64_t rev);

/* ---- reads (own read txn) ----------------------------------------------- */

/* etcd's Range, with etcd's observable results: count is the number of keys
 * in the range at that revision before filters and limit; more is set when
 * the (filtered) result had more than limit kvs. With a sort target other
 * than KEY and sort order NONE, etcd sorts ascending the first limit+1 keys
 * only; keel does the same. Ties in a sort come out in etcd's order: keel
 * sorts with Go 1.19's sort.Sort algorithm (go_sort.c). */
int mvcc_range(struct mvcc_store *s,
               const Etcdserverpb__RangeRequest *req,
               struct keel_arena *a,
               Etcdserverpb__RangeResponse **resp);

/* A Txn with ranges only, served from a read txn (etcd serves read-only txns
 * locally). A write op in it: KEEL_EINVAL. */
int mvcc_txn_read(struct mvcc_store *s,
                  const Etcdserverpb__TxnRequest *req,
                  struct keel_arena *a,
                  Etcdserverpb__TxnResponse **resp);

/* etcd's duplicate-key rule for a txn (v3rpc/key.go checkIntervals over
 * success and failure): a key may not be put twice, nor put and deleted, in
 * the operations that can run together. KEEL_EDUPLICATEKEY or 0. Pure. */
int mvcc_txn_check(const Etcdserverpb__TxnRequest *req);

/* Events with revision >= start_rev whose key is in [key, range_end) (same
 * range rules as Range), oldest first, for watch catch-up. Returns at most
 * about `limit` events (0 = no limit) but never splits a revision; *next_rev
 * is the revision to continue from (current revision + 1 when all was
 * read). start_rev below the compact revision: KEEL_ECOMPACTED. Events and
 * their kvs (and prev_kv when with_prev_kv) are allocated in a. */
int mvcc_events_since(struct mvcc_store *s,
                      int64_t start_rev,
                      const ProtobufCBinaryData *key,
                      const ProtobufCBinaryData *range_end,
                      size_t limit,
                      int with_prev_kv,
                      struct keel_arena *a,
                      Mvccpb__Event ***events,
                      size_t *n,
                      int64_t *next_rev);

/* ---- compaction and hashes --------------------------------------------- */

/* Remove up to `batch` superseded revisions (and tombstones) at or below the
 * compact revision, in one write txn of its own; *done is 1 when the
 * scheduled compaction is finished (finishedCompactRev written). Call it on
 * the thread that runs the batches, between two batches (KEEL_EBUSY while
 * one is open): each step holds LMDB's single writer lock briefly, so the
 * apply path never waits for a whole compaction. */
int mvcc_compact_step(struct mvcc_store *s, size_t batch, int *done);

/* mvcc_compact_step until done. */
int mvcc_compact_run(struct mvcc_store *s);

/* Whether a scheduled compaction is not finished yet (e.g. after a restart
 * in the middle of one): the server then runs mvcc_compact_step(). */
int mvcc_compact_pending(struct mvcc_store *s);

/* etcd's HashKV(rev) (mvcc/kvstore.go HashByRev): CRC-32C over the `key`
 * bucket's name then each kept revision <= rev (key bytes, value bytes);
 * revisions at or below the compact revision count only if still live at
 * rev. rev 0 = current. Equal on members with the same history whatever
 * their physical compaction progress. */
int mvcc_hash_kv(struct mvcc_store *s,
                 int64_t rev,
                 uint32_t *hash,
                 int64_t *compact_rev,
                 int64_t *current_rev);

/* Hash of the whole store (etcd's Hash): every table except the meta keys
 * consistent_index and term. */
int mvcc_hash(struct mvcc_store *s, uint32_t *hash, int64_t *current_rev);

/* Size of the LMDB file (total, as etcd_mvcc_db_total_size_in_bytes) and
 * the part in use (without LMDB's free pages, as
 * etcd_mvcc_db_total_size_in_use_in_bytes; what a compacting copy would
 * keep, about). */
int mvcc_db_size(struct mvcc_store *s, uint64_t *total, uint64_t *in_use);

/* Number of stored revisions (entries of the `key` table), for tests and
 * metrics. */
int mvcc_revision_count(struct mvcc_store *s, uint64_t *n);

/* ---- plain tables (etcd buckets), ready for later issues ---------------- */

enum mvcc_table {
    MVCC_TABLE_META,
    MVCC_TABLE_LEASE,
    MVCC_TABLE_ALARM,
    MVCC_TABLE_MEMBERS,
    MVCC_TABLE_MEMBERS_REMOVED,
    MVCC_TABLE_AUTH,
    MVCC_TABLE_AUTH_USERS,
    MVCC_TABLE_AUTH_ROLES,
    MVCC_TABLE_V2,
    MVCC_TABLE_COUNT
};

/* Keys are 1..480 bytes (KEEL_EINVAL otherwise); values any size. Writes go
 * in a batch (same txn as consistent_index). The meta keys mvcc owns
 * (consistent_index, term, scheduledCompactRev, finishedCompactRev, keel_*)
 * are refused (KEEL_EINVAL). */
int mvcc_table_put(struct mvcc_write *w,
                   enum mvcc_table t,
                   const void *key,
                   size_t klen,
                   const void *val,
                   size_t vlen);

/* KEEL_ENOTFOUND when the key is absent. */
int mvcc_table_del(struct mvcc_write *w,
                   enum mvcc_table t,
                   const void *key,
                   size_t klen);

/* Read a value: in the batch w when w is not NULL (sees its writes), else in
 * a read txn of s. The value is copied into a. KEEL_ENOTFOUND if absent. */
int mvcc_table_get(struct mvcc_store *s,
                   struct mvcc_write *w,
                   enum mvcc_table t,
                   const void *key,
                   size_t klen,
                   struct keel_arena *a,
                   void **val,
                   size_t *vlen);

/* Call cb for each entry in key order; the pointers are valid during the
 * call only. A non-zero return from cb stops the walk and is returned. */
typedef int (*mvcc_table_cb)(void *arg,
                             const void *key,
                             size_t klen,
                             const void *val,
                             size_t vlen);
int mvcc_table_foreach(struct mvcc_store *s,
                       struct mvcc_write *w,
                       enum mvcc_table t,
                       mvcc_table_cb cb,
                       void *arg);

/* ---- leases (storage/lease_store.c) ------------------------------------- */

struct lease_store_lease
{
    int64_t id;
    int64_t ttl;           /* granted TTL, seconds */
    int64_t remaining_ttl; /* last checkpointed remaining TTL, 0 = none */
};

/* Grant: KEEL_ELEASEEXIST if id is taken, KEEL_EINVAL for id <= 0. */
int lease_store_grant(struct mvcc_write *w, int64_t id, int64_t ttl);

/* Record a checkpoint of the remaining TTL. KEEL_ELEASENOTFOUND. */
int lease_store_checkpoint(struct mvcc_write *w, int64_t id, int64_t remaining);

/* Revoke: delete every key attached to the lease in one revision (events as
 * for a DeleteRange, see mvcc_write_events; in arena a), then the lease.
 * KEEL_ELEASENOTFOUND if there is no such lease. */
int lease_store_revoke(struct mvcc_write *w, int64_t id, struct keel_arena *a);

/* Look up a lease (w may be NULL: read txn). KEEL_ELEASENOTFOUND. */
int lease_store_get(struct mvcc_store *s,
                    struct mvcc_write *w,
                    int64_t id,
                    struct lease_store_lease *out);

/* All leases in id order, array in a. */
int lease_store_list(struct mvcc_store *s,
                     struct mvcc_write *w,
                     struct keel_arena *a,
                     struct lease_store_lease **out,
                     size_t *n);

/* Keys attached to a lease, in key order, copied into a. */
int lease_store_keys(struct mvcc_store *s,
                     struct mvcc_write *w,
                     int64_t id,
                     struct keel_arena *a,
                     ProtobufCBinaryData **keys,
                     size_t *n);

#endif /* KEEL_MVCC_H */
