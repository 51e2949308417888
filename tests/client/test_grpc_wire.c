/*
 * Unit tests for libkeel's gRPC framing and status parsing (client/
 * grpc_wire.c): message reassembly across arbitrary DATA frame splits,
 * several messages per frame, compressed/oversized rejection, trailers-only
 * responses, HTTP-status fallback, percent-decoding of grpc-message and
 * grpc-timeout formatting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "grpc_wire.h"
#include "keel_err.h"

/* ---- helpers --------------------------------------------------------------- */

/* Frame msgs[i] (NUL-terminated strings) into one buffer. */
static size_t frame_all(const char *const *msgs, size_t n, uint8_t *out)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t ml = strlen(msgs[i]);
        grpc_frame_prefix(out + len, (uint32_t)ml);
        memcpy(out + len + 5, msgs[i], ml);
        len += 5 + ml;
    }
    return len;
}

static int hdr(struct grpc_status *s, const char *n, const char *v)
{
    return grpc_status_header(s, n, strlen(n), v, strlen(v));
}

/* ---- tests ----------------------------------------------------------------- */

static void test_grpc_wire_prefix_is_big_endian(void **state)
{
    (void)state;
    uint8_t p[5];
    grpc_frame_prefix(p, 0x01020304);
    uint8_t want[5] = {0, 1, 2, 3, 4};
    assert_memory_equal(p, want, 5);
}

/* Every split point of a 3-message stream, in chunks of every size,
 * yields exactly the three messages in order. */
static void test_grpc_wire_split_everywhere(void **state)
{
    (void)state;
    const char *msgs[] = {"hello", "", "a much longer third message"};
    uint8_t buf[128];
    size_t len = frame_all(msgs, 3, buf);
    for (size_t chunk = 1; chunk <= len; chunk++) {
        struct grpc_decoder d;
        grpc_decoder_init(&d);
        size_t got = 0;
        for (size_t off = 0; off < len; off += chunk) {
            size_t n = len - off < chunk ? len - off : chunk;
            assert_int_equal(grpc_decoder_feed(&d, buf + off, n), 0);
            const uint8_t *m;
            size_t ml;
            int rv;
            while ((rv = grpc_decoder_next(&d, &m, &ml)) == 1) {
                assert_true(got < 3);
                assert_int_equal(ml, strlen(msgs[got]));
                assert_memory_equal(m, msgs[got], ml);
                got++;
            }
            assert_int_equal(rv, 0);
        }
        assert_int_equal(got, 3);
        assert_int_equal(grpc_decoder_pending(&d), 0);
        grpc_decoder_free(&d);
    }
}

static void test_grpc_wire_truncated_is_pending(void **state)
{
    (void)state;
    const char *msgs[] = {"abcdef"};
    uint8_t buf[32];
    size_t len = frame_all(msgs, 1, buf);
    struct grpc_decoder d;
    grpc_decoder_init(&d);
    assert_int_equal(grpc_decoder_feed(&d, buf, len - 2), 0);
    const uint8_t *m;
    size_t ml;
    assert_int_equal(grpc_decoder_next(&d, &m, &ml), 0);
    assert_int_equal(grpc_decoder_pending(&d), len - 2);
    grpc_decoder_free(&d);
}

static void test_grpc_wire_rejects_compressed(void **state)
{
    (void)state;
    uint8_t buf[8] = {1, 0, 0, 0, 1, 'x'};
    struct grpc_decoder d;
    grpc_decoder_init(&d);
    assert_int_equal(grpc_decoder_feed(&d, buf, 6), 0);
    const uint8_t *m;
    size_t ml;
    assert_int_equal(grpc_decoder_next(&d, &m, &ml), KEEL_EUNIMPLEMENTED);
    grpc_decoder_free(&d);
}

static void test_grpc_wire_rejects_oversized(void **state)
{
    (void)state;
    uint8_t buf[5];
    grpc_frame_prefix(buf, KEEL_GRPC_MAX_MSG + 1);
    struct grpc_decoder d;
    grpc_decoder_init(&d);
    assert_int_equal(grpc_decoder_feed(&d, buf, 5), 0);
    const uint8_t *m;
    size_t ml;
    assert_int_equal(grpc_decoder_next(&d, &m, &ml), KEEL_ETOOBIG);
    grpc_decoder_free(&d);
}

/* A trailers-only response: one HEADERS frame with :status, content-type,
 * grpc-status and grpc-message and no DATA. */
static void test_grpc_wire_trailers_only(void **state)
{
    (void)state;
    struct grpc_status s;
    grpc_status_init(&s);
    assert_int_equal(hdr(&s, ":status", "200"), 0);
    assert_int_equal(hdr(&s, "content-type", "application/grpc"), 0);
    assert_int_equal(hdr(&s, "grpc-status", "11"), 0);
    assert_int_equal(
        hdr(&s, "grpc-message",
            "etcdserver: mvcc: required revision is a future revision"),
        0);
    assert_true(s.content_type_ok);
    assert_int_equal(grpc_status_code(&s), KEEL_GRPC_OUT_OF_RANGE);
    assert_string_equal(
        s.message, "etcdserver: mvcc: required revision is a future revision");
    grpc_status_free(&s);
}

static void test_grpc_wire_http_status_fallback(void **state)
{
    (void)state;
    struct grpc_status s;
    grpc_status_init(&s);
    assert_int_equal(grpc_status_code(&s), KEEL_GRPC_UNKNOWN);
    hdr(&s, ":status", "503");
    assert_int_equal(grpc_status_code(&s), KEEL_GRPC_UNAVAILABLE);
    grpc_status_free(&s);
    grpc_status_init(&s);
    hdr(&s, ":status", "404");
    hdr(&s, "content-type", "text/html");
    assert_false(s.content_type_ok);
    assert_int_equal(grpc_status_code(&s), KEEL_GRPC_UNIMPLEMENTED);
    /* A malformed grpc-status is Unknown, not OK. */
    hdr(&s, "grpc-status", "x1");
    assert_int_equal(grpc_status_code(&s), KEEL_GRPC_UNKNOWN);
    grpc_status_free(&s);
}

static void test_grpc_wire_percent_decode(void **state)
{
    (void)state;
    char out[64];
    const char *in = "a%20b%25c%3a%E2%9C%93";
    grpc_percent_decode(in, strlen(in), out);
    assert_string_equal(out, "a b%c:\xe2\x9c\x93");
    /* Malformed escapes stay as they are. */
    in = "100%zz%4";
    grpc_percent_decode(in, strlen(in), out);
    assert_string_equal(out, "100%zz%4");
    in = "%";
    grpc_percent_decode(in, strlen(in), out);
    assert_string_equal(out, "%");

    struct grpc_status s;
    grpc_status_init(&s);
    hdr(&s, "grpc-message", "etcdserver:%20permission%20denied");
    assert_string_equal(s.message, "etcdserver: permission denied");
    grpc_status_free(&s);
}

static void test_grpc_wire_timeout_format(void **state)
{
    (void)state;
    char b[16];
    grpc_timeout_format(1500, b);
    assert_string_equal(b, "1500m");
    grpc_timeout_format(99999999, b);
    assert_string_equal(b, "99999999m");
    grpc_timeout_format(100000000, b);
    assert_string_equal(b, "100000S");
    grpc_timeout_format(UINT64_MAX, b);
    assert_string_equal(b, "99999999H");
}

static void test_grpc_wire_code_names(void **state)
{
    (void)state;
    assert_string_equal(grpc_code_name(KEEL_GRPC_OUT_OF_RANGE), "OutOfRange");
    assert_string_equal(grpc_code_name(KEEL_GRPC_DEADLINE_EXCEEDED),
                        "DeadlineExceeded");
    assert_string_equal(grpc_code_name(99), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grpc_wire_prefix_is_big_endian),
        cmocka_unit_test(test_grpc_wire_split_everywhere),
        cmocka_unit_test(test_grpc_wire_truncated_is_pending),
        cmocka_unit_test(test_grpc_wire_rejects_compressed),
        cmocka_unit_test(test_grpc_wire_rejects_oversized),
        cmocka_unit_test(test_grpc_wire_trailers_only),
        cmocka_unit_test(test_grpc_wire_http_status_fallback),
        cmocka_unit_test(test_grpc_wire_percent_decode),
        cmocka_unit_test(test_grpc_wire_timeout_format),
        cmocka_unit_test(test_grpc_wire_code_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
