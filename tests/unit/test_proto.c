/*
 * The wire schema and the error table: generated code round-trips etcd's
 * messages with etcd's field numbers, and every error code maps to the exact
 * etcd string and gRPC status that clients match on.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "keel_arena.h"
#include "keel_err.h"
#include "keelpb/request.pb-c.h"
#include "mvccpb/kv.pb-c.h"
#include "raftpb/raft.pb-c.h"

/* A PutRequest{key="k", value="v", lease=5} as etcd's Go client encodes it:
 * field 1 bytes, field 2 bytes, field 3 varint. */
static void test_proto_put_request_wire_format(void **state)
{
    (void)state;
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)"k";
    req.key.len = 1;
    req.value.data = (uint8_t *)"v";
    req.value.len = 1;
    req.lease = 5;
    uint8_t buf[64];
    size_t n = etcdserverpb__put_request__pack(&req, buf);
    const uint8_t want[] = {0x0a, 0x01, 'k', 0x12, 0x01, 'v', 0x18, 0x05};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
}

static void test_proto_range_response_roundtrip(void **state)
{
    (void)state;
    Mvccpb__KeyValue kv = MVCCPB__KEY_VALUE__INIT;
    kv.key.data = (uint8_t *)"foo";
    kv.key.len = 3;
    kv.create_revision = 2;
    kv.mod_revision = 7;
    kv.version = 3;
    Mvccpb__KeyValue *kvs[] = {&kv};
    Etcdserverpb__ResponseHeader hdr = ETCDSERVERPB__RESPONSE_HEADER__INIT;
    hdr.cluster_id = 0xabc;
    hdr.revision = 7;
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    resp.header = &hdr;
    resp.kvs = kvs;
    resp.n_kvs = 1;
    resp.count = 1;
    resp.more = 1;
    uint8_t buf[256];
    size_t n = etcdserverpb__range_response__pack(&resp, buf);
    Etcdserverpb__RangeResponse *out =
        etcdserverpb__range_response__unpack(NULL, n, buf);
    assert_non_null(out);
    assert_int_equal(out->n_kvs, 1);
    assert_int_equal(out->kvs[0]->mod_revision, 7);
    assert_int_equal(out->kvs[0]->version, 3);
    assert_memory_equal(out->kvs[0]->key.data, "foo", 3);
    assert_int_equal(out->header->cluster_id, 0xabc);
    assert_true(out->more);
    etcdserverpb__range_response__free_unpacked(out, NULL);
}

static void test_proto_garbage_is_rejected(void **state)
{
    (void)state;
    /* field 1, wire type 2, length 100 but only 2 bytes follow */
    const uint8_t bad[] = {0x0a, 0x64, 'a', 'b'};
    Etcdserverpb__RangeRequest *r =
        etcdserverpb__range_request__unpack(NULL, sizeof bad, bad);
    assert_null(r);
}

static void test_proto_keel_request_oneof(void **state)
{
    (void)state;
    Etcdserverpb__PutRequest put = ETCDSERVERPB__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)"a";
    put.key.len = 1;
    Keelpb__RequestHeader h = KEELPB__REQUEST_HEADER__INIT;
    h.id = 42;
    Keelpb__Request req = KEELPB__REQUEST__INIT;
    req.header = &h;
    req.op_case = KEELPB__REQUEST__OP_PUT;
    req.put = &put;
    uint8_t buf[64];
    size_t n = keelpb__request__pack(&req, buf);
    Keelpb__Request *out = keelpb__request__unpack(NULL, n, buf);
    assert_non_null(out);
    assert_int_equal(out->op_case, KEELPB__REQUEST__OP_PUT);
    assert_int_equal(out->header->id, 42);
    keelpb__request__free_unpacked(out, NULL);
}

static void test_proto_raft_entry_roundtrip(void **state)
{
    (void)state;
    Raftpb__Entry e = RAFTPB__ENTRY__INIT;
    e.term = 3;
    e.index = 99;
    e.type = RAFTPB__ENTRY_TYPE__ENTRY_CONF_CHANGE;
    uint8_t buf[32];
    size_t n = raftpb__entry__pack(&e, buf);
    Raftpb__Entry *out = raftpb__entry__unpack(NULL, n, buf);
    assert_non_null(out);
    assert_int_equal(out->index, 99);
    assert_int_equal(out->type, RAFTPB__ENTRY_TYPE__ENTRY_CONF_CHANGE);
    raftpb__entry__free_unpacked(out, NULL);
}

static void test_err_etcd_strings_and_codes(void **state)
{
    (void)state;
    assert_string_equal(keel_strerror(KEEL_ECOMPACTED),
                        "etcdserver: mvcc: required revision has been compacted");
    assert_int_equal(keel_err_grpc_code(KEEL_ECOMPACTED),
                     KEEL_GRPC_OUT_OF_RANGE);
    assert_string_equal(keel_strerror(KEEL_ENOSPACE),
                        "etcdserver: mvcc: database space exceeded");
    assert_int_equal(keel_err_grpc_code(KEEL_ENOSPACE),
                     KEEL_GRPC_RESOURCE_EXHAUSTED);
    assert_string_equal(keel_strerror(KEEL_EREQUESTTOOLARGE),
                        "etcdserver: request is too large");
    assert_int_equal(keel_err_grpc_code(KEEL_ELEASENOTFOUND),
                     KEEL_GRPC_NOT_FOUND);
    assert_int_equal(keel_err_grpc_code(KEEL_EINVALIDAUTHTOKEN),
                     KEEL_GRPC_UNAUTHENTICATED);
    assert_string_equal(keel_errname(KEEL_EFUTUREREV), "KEEL_EFUTUREREV");
}

static void test_err_errno_and_unknown(void **state)
{
    (void)state;
    assert_string_equal(keel_strerror(0), "ok");
    assert_string_equal(keel_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(keel_errname(-ENOSPC), "ENOSPC");
    assert_int_equal(keel_err_grpc_code(-ENOMEM),
                     KEEL_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(keel_err_grpc_code(-EIO), KEEL_GRPC_UNKNOWN);
    assert_string_equal(keel_strerror(KEEL_ERR_BASE - 999), "unknown error");
    assert_true(keel_err_is_keel(KEEL_ENOMEM));
    assert_false(keel_err_is_keel(-EIO));
}

static void test_arena_alloc_align_and_big_blocks(void **state)
{
    (void)state;
    struct keel_arena a;
    keel_arena_init(&a, 128);
    char *p = keel_arena_alloc(&a, 3);
    char *q = keel_arena_alloc(&a, 5);
    assert_non_null(p);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % _Alignof(max_align_t), 0);
    assert_true(q != p);
    /* bigger than a block: its own block; the head keeps its free space */
    char *big = keel_arena_alloc(&a, 1000);
    assert_non_null(big);
    memset(big, 7, 1000);
    char *r = keel_arena_alloc(&a, 8);
    assert_true(r == q + 16 || r == q + _Alignof(max_align_t));
    assert_int_equal(a.used, 3 + 5 + 1000 + 8);
    char *d = keel_arena_dup(&a, "hello", 5);
    assert_memory_equal(d, "hello", 5);
    keel_arena_reset(&a);
    assert_int_equal(a.used, 0);
    assert_non_null(a.head); /* first ordinary block kept for reuse */
    char *again = keel_arena_alloc(&a, 8);
    assert_non_null(again);
    keel_arena_free(&a);
    assert_null(a.head);
}

static void test_arena_as_protobuf_allocator(void **state)
{
    (void)state;
    Etcdserverpb__PutRequest req = ETCDSERVERPB__PUT_REQUEST__INIT;
    req.key.data = (uint8_t *)"key";
    req.key.len = 3;
    uint8_t buf[32];
    size_t n = etcdserverpb__put_request__pack(&req, buf);
    struct keel_arena a;
    keel_arena_init(&a, 0);
    Etcdserverpb__PutRequest *out =
        etcdserverpb__put_request__unpack(&a.pb, n, buf);
    assert_non_null(out);
    assert_memory_equal(out->key.data, "key", 3);
    assert_true(a.used > 0);
    keel_arena_free(&a); /* no free_unpacked: the arena owns it all */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_proto_put_request_wire_format),
        cmocka_unit_test(test_proto_range_response_roundtrip),
        cmocka_unit_test(test_proto_garbage_is_rejected),
        cmocka_unit_test(test_proto_keel_request_oneof),
        cmocka_unit_test(test_proto_raft_entry_roundtrip),
        cmocka_unit_test(test_err_etcd_strings_and_codes),
        cmocka_unit_test(test_err_errno_and_unknown),
        cmocka_unit_test(test_arena_alloc_align_and_big_blocks),
        cmocka_unit_test(test_arena_as_protobuf_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
