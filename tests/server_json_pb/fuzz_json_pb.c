/*
 * libFuzzer target for json_pb_decode().
 *
 * Input: one selector byte choosing a message type (every request and
 * response type of the gateway routes, then the test schema's messages),
 * then the JSON text. Checks, beyond "no crash, no leak, no UB":
 *   - a decoded message packs to protobuf (no NULL where protobuf-c expects
 *     a pointer) and unpacks again;
 *   - encode(decode(x)) decodes again, and encoding that gives the same
 *     bytes (the JSON form is a fixed point after one round);
 *   - json_pb_decode_next(final) agrees with json_pb_decode.
 * Any violation aborts, which libFuzzer (and the replay driver) report.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_routes.h"
#include "json_pb.h"
#include "json_pb_test.pb-c.h"
#include "json_pb_test2.pb-c.h"
#include "keel_arena.h"
#include "keel_err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *pick(uint8_t sel)
{
    static const ProtobufCMessageDescriptor *extra[] = {
        &keeltest__scalars__descriptor,
        &keeltest__repeats__descriptor,
        &keeltest__choice__descriptor,
        &keeltest2__legacy__descriptor,
    };
    size_t n = gateway_routes_count * 2 + sizeof extra / sizeof extra[0];
    size_t i = sel % n;
    if (i < gateway_routes_count * 2) {
        const struct gateway_route *r = &gateway_routes[i / 2];
        return i % 2 ? r->response : r->request;
    }
    return extra[i - gateway_routes_count * 2];
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_json_pb: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    const ProtobufCMessageDescriptor *d = pick(data[0]);
    const char *json = (const char *)data + 1;
    size_t len = size - 1;
    char err[256];
    struct keel_arena a;
    keel_arena_init(&a, 0);

    ProtobufCMessage *m = NULL;
    int rv = json_pb_decode(d, json, len, &a, &m, err, sizeof err);
    check(rv == 0 || rv == KEEL_EINVAL, "unexpected return code");
    if (rv != 0) {
        check(err[0] != '\0', "error without a message");
    }

    ProtobufCMessage *m2 = NULL;
    size_t used = 0;
    int rv2 =
        json_pb_decode_next(d, json, len, true, &a, &m2, &used, err, sizeof err);
    if (m2 == NULL && rv2 == 0) {
        /* whitespace only: decode gives an empty message */
        check(rv == 0, "decode_next EOF but decode failed");
    } else {
        check(rv == rv2, "decode and decode_next disagree");
        check(rv2 != 0 || used <= len, "consumed past the end");
    }

    if (rv == 0) {
        size_t plen = protobuf_c_message_get_packed_size(m);
        uint8_t *pb = malloc(plen + 1);
        check(pb != NULL, "oom");
        check(protobuf_c_message_pack(m, pb) == plen, "pack size mismatch");
        ProtobufCMessage *u = protobuf_c_message_unpack(d, NULL, plen, pb);
        check(u != NULL, "packed message does not unpack");
        protobuf_c_message_free_unpacked(u, NULL);
        free(pb);

        size_t l1, l2;
        char *s1 = json_pb_encode(m, &l1);
        check(s1 != NULL, "encode failed");
        ProtobufCMessage *back = NULL;
        rv = json_pb_decode(d, s1, l1, &a, &back, err, sizeof err);
        if (rv != 0) {
            fprintf(stderr, "re-decode of %s failed: %s\n", s1, err);
        }
        check(rv == 0, "encoded output does not decode");
        char *s2 = json_pb_encode(back, &l2);
        check(s2 != NULL, "encode failed");
        if (l1 != l2 || memcmp(s1, s2, l1) != 0) {
            fprintf(stderr, "first:  %s\nsecond: %s\n", s1, s2);
        }
        check(l1 == l2 && memcmp(s1, s2, l1) == 0, "encoding not stable");
        free(s1);
        free(s2);
    }
    keel_arena_free(&a);
    return 0;
}
