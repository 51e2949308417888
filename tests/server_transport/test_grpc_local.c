/*
 * In-process gRPC calls (grpc_server_call_local), the path of the JSON
 * gateway: replies, statuses and their deferred delivery, unknown methods,
 * limits, undecodable requests, metadata, deadlines, cancellation by the
 * caller, and bidi streams fed message by message. No sockets: a libuv loop
 * and test methods registered on a grpc_server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "etcdserverpb/rpc.pb-c.h"
#include "grpc.h"
#include "keel_err.h"
#include "router.h"

/* ---- fixture ---- */

struct fx
{
    uv_loop_t loop;
    struct grpc_server *srv;
    /* caller side */
    int n_msgs;
    int64_t last_count;
    int done;
    int done_code;
    char done_msg[256];
    /* handler side */
    int cancels;
    int cancel_code;
    int half_closed;
    struct grpc_call *held; /* a call the handler keeps */
    char auth[64];
    size_t queued;    /* what the caller reports as buffered */
    size_t seen_buffered;
    int drains;
};

static struct fx *F;

/* Echo: replies RangeResponse{count = len(key)}, and remembers the
 * authorization metadata. */
static void echo_start(struct grpc_call *call, const ProtobufCMessage *m,
                       void *data)
{
    const Etcdserverpb__RangeRequest *req = (const void *)m;
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    const char *auth = grpc_call_header(call, "authorization");
    (void)data;
    snprintf(F->auth, sizeof F->auth, "%s", auth != NULL ? auth : "");
    resp.count = (int64_t)req->key.len;
    grpc_call_reply(call, &resp.base);
}

static void fail_start(struct grpc_call *call, const ProtobufCMessage *m,
                       void *data)
{
    (void)m;
    (void)data;
    grpc_call_fail(call, KEEL_EEMPTYKEY);
}

/* Never answers on its own; finishes when cancelled. */
static void hold_start(struct grpc_call *call, const ProtobufCMessage *m,
                       void *data)
{
    (void)m;
    (void)data;
    F->held = call;
}

static void hold_cancel(struct grpc_call *call, int code, void *data)
{
    (void)data;
    F->cancels++;
    F->cancel_code = code;
    F->held = NULL;
    grpc_call_finish(call, KEEL_ECANCELED);
}

static void bidi_start(struct grpc_call *call, const ProtobufCMessage *m,
                       void *data)
{
    (void)m;
    (void)data;
    F->held = call;
}

static void bidi_message(struct grpc_call *call, const ProtobufCMessage *m,
                         const uint8_t *raw, size_t len, void *data)
{
    const Etcdserverpb__RangeRequest *req = (const void *)m;
    Etcdserverpb__RangeResponse resp = ETCDSERVERPB__RANGE_RESPONSE__INIT;
    (void)raw;
    (void)len;
    (void)data;
    resp.count = (int64_t)req->key.len;
    assert_int_equal(grpc_call_send(call, &resp.base), 0);
}

static void on_drain(struct grpc_call *call, void *data)
{
    (void)call;
    (void)data;
    F->drains++;
}

static void flow_message(struct grpc_call *call, const ProtobufCMessage *m,
                         const uint8_t *raw, size_t len, void *data)
{
    (void)m;
    (void)raw;
    (void)len;
    (void)data;
    F->seen_buffered = grpc_call_buffered(call);
    grpc_call_on_drain(call, on_drain, NULL);
}

static size_t caller_buffered(void *data)
{
    struct fx *f = data;
    return f->queued;
}

static void bidi_half_close(struct grpc_call *call, void *data)
{
    (void)data;
    F->half_closed++;
    F->held = NULL;
    grpc_call_finish(call, 0);
}

static void on_message(void *data, const uint8_t *buf, size_t len)
{
    struct fx *f = data;
    Etcdserverpb__RangeResponse *r =
        etcdserverpb__range_response__unpack(NULL, len, buf);
    assert_non_null(r);
    f->n_msgs++;
    f->last_count = r->count;
    etcdserverpb__range_response__free_unpacked(r, NULL);
}

static void on_done(void *data, int code, const char *msg)
{
    struct fx *f = data;
    f->done++;
    f->done_code = code;
    snprintf(f->done_msg, sizeof f->done_msg, "%s", msg);
}

static int setup(void **state)
{
    static const struct grpc_method methods[] = {
        {"/t.S/Echo", GRPC_UNARY, &etcdserverpb__range_request__descriptor,
         echo_start, NULL, NULL, NULL, NULL},
        {"/t.S/Fail", GRPC_UNARY, &etcdserverpb__range_request__descriptor,
         fail_start, NULL, NULL, NULL, NULL},
        {"/t.S/Hold", GRPC_UNARY, &etcdserverpb__range_request__descriptor,
         hold_start, NULL, NULL, hold_cancel, NULL},
        {"/t.S/Bidi", GRPC_BIDI, &etcdserverpb__range_request__descriptor,
         bidi_start, bidi_message, bidi_half_close, hold_cancel, NULL},
        {"/t.S/Flow", GRPC_BIDI, &etcdserverpb__range_request__descriptor,
         bidi_start, flow_message, bidi_half_close, hold_cancel, NULL},
    };
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->srv = grpc_server_new();
    assert_non_null(f->srv);
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        assert_int_equal(grpc_server_register(f->srv, &methods[i]), 0);
    }
    F = f;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(grpc_server_calls_live(f->srv), 0);
    grpc_server_free(f->srv);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f);
    F = NULL;
    return 0;
}

/* ---- helpers ---- */

static struct grpc_local_opts opts_for(struct fx *f)
{
    struct grpc_local_opts o = {0};
    o.loop = &f->loop;
    o.on_message = on_message;
    o.on_done = on_done;
    o.data = f;
    return o;
}

/* A packed RangeRequest with a key of n bytes 'k'. */
static size_t pack_range(size_t n, uint8_t *out)
{
    static uint8_t key[64];
    Etcdserverpb__RangeRequest r = ETCDSERVERPB__RANGE_REQUEST__INIT;
    memset(key, 'k', sizeof key);
    r.key.data = key;
    r.key.len = n;
    return etcdserverpb__range_request__pack(&r, out);
}

/* ---- tests ---- */

static void test_grpc_local_unary_reply(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct router_header md[] = {{"authorization", "tok"}};
    struct grpc_call *call;
    uint8_t buf[128];
    size_t len = pack_range(5, buf);

    o.md = md;
    o.n_md = 1;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Echo", buf, len, &o, &call), 0);
    assert_non_null(call);
    /* The reply arrives at once, the status only from the loop. */
    assert_int_equal(f->n_msgs, 1);
    assert_int_equal(f->last_count, 5);
    assert_int_equal(f->done, 0);
    assert_string_equal(f->auth, "tok");
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->done_code, KEEL_GRPC_OK);
    assert_string_equal(f->done_msg, "");
    assert_int_equal(grpc_server_calls_live(f->srv), 0);
}

static void test_grpc_local_error_status(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Fail", NULL, 0, &o, &call), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->n_msgs, 0);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->done_code, KEEL_GRPC_INVALID_ARGUMENT);
    assert_string_equal(f->done_msg, "etcdserver: key is not provided");
}

static void test_grpc_local_unknown_method(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Nope", NULL, 0, &o, &call), 0);
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.X/Nope", NULL, 0, &o, &call), 0);
    assert_int_equal(f->done, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 2);
    assert_int_equal(f->done_code, KEEL_GRPC_UNIMPLEMENTED);
    assert_string_equal(f->done_msg, "unknown service t.X");
}

static void test_grpc_local_limits_and_bad_protobuf(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    uint8_t buf[128];
    size_t len = pack_range(20, buf);

    o.max_request_bytes = 10;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Echo", buf, len, &o, &call), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->n_msgs, 0);
    assert_int_equal(f->done_code, KEEL_GRPC_INVALID_ARGUMENT);
    assert_string_equal(f->done_msg, "etcdserver: request is too large");

    o.max_request_bytes = 0;
    buf[0] = 0xff; /* field 31, wire type 7: invalid */
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Echo", buf, 1, &o, &call), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->n_msgs, 0);
    assert_int_equal(f->done, 2);
    assert_int_equal(f->done_code, KEEL_GRPC_INTERNAL);
}

static void test_grpc_local_cancel_by_caller(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Hold", NULL, 0, &o, &call), 0);
    assert_ptr_equal(f->held, call);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->cancels, 0);
    assert_int_equal(grpc_server_calls_live(f->srv), 1);
    grpc_local_cancel(call);
    /* The handler hears of it from its own loop turn, the caller never
     * again. */
    assert_int_equal(f->cancels, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->cancels, 1);
    assert_int_equal(f->cancel_code, KEEL_GRPC_CANCELED);
    assert_int_equal(f->done, 0);
    assert_int_equal(grpc_server_calls_live(f->srv), 0);
}

static void test_grpc_local_deadline(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct router_header md[] = {{"grpc-timeout", "30m"}};
    struct grpc_call *call;
    o.md = md;
    o.n_md = 1;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Hold", NULL, 0, &o, &call), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->cancels, 1);
    assert_int_equal(f->cancel_code, KEEL_GRPC_DEADLINE_EXCEEDED);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->done_code, KEEL_GRPC_DEADLINE_EXCEEDED);
    assert_string_equal(f->done_msg, "context deadline exceeded");

    md[0].value = "x";
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Hold", NULL, 0, &o, &call), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 2);
    assert_int_equal(f->done_code, KEEL_GRPC_INTERNAL);
    assert_string_equal(f->done_msg, "malformed time-out: x");
}

static void test_grpc_local_bidi(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    uint8_t buf[128];

    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Bidi", NULL, 0, &o, &call), 0);
    for (size_t i = 1; i <= 3; i++) {
        size_t len = pack_range(i, buf);
        assert_int_equal(grpc_local_send(call, buf, len), 0);
        assert_int_equal(f->n_msgs, (int)i);
        assert_int_equal(f->last_count, (int64_t)i);
    }
    /* An undecodable message ends the call as on the wire. */
    buf[0] = 0xff;
    assert_int_equal(grpc_local_send(call, buf, 1), 0);
    assert_int_equal(grpc_local_send(call, buf, 1), KEEL_ECANCELED);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->cancels, 1);
    assert_int_equal(f->cancel_code, KEEL_GRPC_INTERNAL);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->done_code, KEEL_GRPC_INTERNAL);

    /* A clean stream: messages, half-close, OK. */
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Bidi", NULL, 0, &o, &call), 0);
    assert_int_equal(grpc_local_send(call, buf, pack_range(7, buf)), 0);
    assert_int_equal(f->last_count, 7);
    grpc_local_half_close(call);
    assert_int_equal(f->half_closed, 1);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 2);
    assert_int_equal(f->done_code, KEEL_GRPC_OK);

    /* Cancelled by the caller mid-stream. */
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Bidi", NULL, 0, &o, &call), 0);
    assert_int_equal(grpc_local_send(call, buf, pack_range(2, buf)), 0);
    grpc_local_cancel(call);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->cancels, 2);
    assert_int_equal(f->cancel_code, KEEL_GRPC_CANCELED);
    assert_int_equal(f->done, 2);
}

static void test_grpc_local_flow_control(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    uint8_t buf[128];

    o.buffered = caller_buffered;
    f->queued = 12345;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Flow", NULL, 0, &o, &call), 0);
    assert_int_equal(grpc_local_send(call, buf, pack_range(1, buf)), 0);
    assert_int_equal(f->seen_buffered, 12345);
    f->queued = 0;
    grpc_local_drained(call);
    assert_int_equal(f->drains, 0); /* from its own loop turn */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(f->drains, 1);
    grpc_local_half_close(call);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done, 1);
    assert_int_equal(f->done_code, KEEL_GRPC_OK);
}

static void test_grpc_local_stats(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call;
    uint8_t buf[128];
    size_t len = pack_range(3, buf);
    assert_int_equal(grpc_server_call_local(f->srv, "/t.S/Echo", buf, len,
                                            &o, &call),
                     0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(grpc_server_calls_started(f->srv), 1);
    assert_true(grpc_server_bytes_received(f->srv) == len + 5);
    assert_true(grpc_server_bytes_sent(f->srv) > 5);
}

static void test_grpc_local_bad_args(void **state)
{
    struct fx *f = *state;
    struct grpc_local_opts o = opts_for(f);
    struct grpc_call *call = (void *)1;
    o.loop = NULL;
    assert_int_equal(
        grpc_server_call_local(f->srv, "/t.S/Echo", NULL, 0, &o, &call),
        KEEL_EINVAL);
    assert_null(call);
    assert_int_equal(grpc_server_calls_live(f->srv), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grpc_local_unary_reply, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_error_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_unknown_method, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_grpc_local_limits_and_bad_protobuf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_cancel_by_caller,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_deadline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_bidi, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_flow_control, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_stats, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_grpc_local_bad_args, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
