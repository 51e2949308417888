/*
 * Fuzz target for the peer port's frame decoder (server/peer_wire.c): the
 * only code that interprets bytes a remote sends to port 2380.
 *
 * Input: byte 0 picks max_payload (a few sizes, small ones so oversized
 * lengths are hit); the rest is a byte stream decoded frame by frame as a
 * connection would, every payload also through each payload decoder.
 *
 * Checked on every input: no crash or UB (ASan sees reads past the input:
 * it is copied into an exact-size allocation); a decoded frame lies inside
 * the input, its payload within max_payload, its header re-encodes to the
 * same bytes; every proper prefix of a frame decodes to "need more" (never
 * to a different frame) unless it already shows the frame is bad; the
 * HELLO decoder round-trips through the encoder.
 *
 * Built two ways: with libFuzzer (KEEL_FUZZ, clang) as fuzz_peer_wire, and
 * with PEER_FUZZ_DRIVER as a plain program that replays the seed corpus
 * under ctest and can regenerate the seeds (--generate DIR).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_wire.h"

#define CHECK(c)                                                             \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #c);                                                     \
            abort();                                                         \
        }                                                                    \
    } while (0)

static void check_payload(uint8_t type, const uint8_t *p, size_t len)
{
    struct peer_wire_hello h;
    uint16_t code, version;
    uint64_t a, b;
    const char *reason;
    const uint8_t *q;
    size_t n;

    if (peer_wire_hello_decode(p, len, &h) == 0) {
        uint8_t enc[PEER_WIRE_HELLO_LEN];
        CHECK(len >= PEER_WIRE_HELLO_LEN);
        peer_wire_hello_encode(enc, &h);
        /* Byte 7 is reserved: the encoder writes 0, the decoder ignores. */
        CHECK(memcmp(enc, p, 7) == 0);
        CHECK(memcmp(enc + 8, p + 8, PEER_WIRE_HELLO_LEN - 8) == 0);
    }
    if (peer_wire_hello_ok_decode(p, len, &version, &a, &b) == 0) {
        CHECK(len >= PEER_WIRE_HELLO_OK_LEN);
    }
    if (peer_wire_error_decode(p, len, &code, &reason, &n) == 0) {
        CHECK((const uint8_t *)reason + n == p + len);
    }
    if (peer_wire_snap_header_decode(p, len, &a, &q, &n) == 0) {
        CHECK(q + n == p + len);
    }
    uint32_t w;
    if (peer_wire_call_decode(p, len, &a, &w, &q, &n) == 0) {
        CHECK(q + n == p + len && len >= PEER_WIRE_CALL_HEADER);
    }
    if (peer_wire_snap_trailer_decode(p, len, &a, &q) == 0) {
        CHECK(len == PEER_WIRE_TRAILER_LEN && q == p + 8);
    }
    (void)type;
}

static void run(const uint8_t *data, size_t size)
{
    static const size_t maxes[] = {0, 16, 40, 1u << 20};
    size_t max;
    uint8_t *buf;
    size_t len, off = 0;

    if (size == 0) {
        return;
    }
    max = maxes[data[0] & 3];
    len = size - 1;
    buf = malloc(len > 0 ? len : 1);
    memcpy(buf, data + 1, len);
    for (;;) {
        uint8_t type = 0;
        const uint8_t *p = NULL;
        size_t plen = 0, need = 0;
        long n = peer_wire_decode(buf + off, len - off, max, &type, &p, &plen,
                                  &need);
        if (n <= 0) {
            CHECK(need >= PEER_WIRE_HEADER);
            if (n == 0) {
                CHECK(need > len - off || need == PEER_WIRE_HEADER);
            }
            break;
        }
        CHECK((size_t)n <= len - off);
        CHECK((size_t)n == PEER_WIRE_HEADER + plen && plen <= max);
        CHECK(p == buf + off + PEER_WIRE_HEADER);
        CHECK(need == (size_t)n);
        uint8_t hdr[PEER_WIRE_HEADER];
        peer_wire_header(hdr, type, plen);
        CHECK(memcmp(hdr, buf + off, PEER_WIRE_HEADER) == 0);
        /* Every proper prefix asks for more or is refused; none decodes. */
        for (size_t k = 0; k < (size_t)n; k += 1 + k / 2) {
            uint8_t t2;
            const uint8_t *p2;
            size_t l2;
            CHECK(peer_wire_decode(buf + off, k, max, &t2, &p2, &l2, NULL) ==
                  0);
        }
        check_payload(type, p, plen);
        off += (size_t)n;
    }
    free(buf);
}

#ifndef PEER_FUZZ_DRIVER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    return 0;
}
#else
static void put_frame(FILE *fp, uint8_t type, const void *p, size_t n)
{
    uint8_t h[PEER_WIRE_HEADER];
    peer_wire_header(h, type, n);
    fwrite(h, 1, sizeof h, fp);
    fwrite(p, 1, n, fp);
}

/* Seeds: real conversations as the transport writes them. */
static int generate(const char *dir)
{
    char path[512];
    struct peer_wire_hello h = {PEER_WIRE_VERSION, PEER_WIRE_KIND_STREAM, 0xc1,
                                1, 2};
    uint8_t hello[PEER_WIRE_HELLO_LEN], ok[PEER_WIRE_HELLO_OK_LEN];
    uint8_t err[40] = {0, PEER_WIRE_ERR_CLUSTER_MISMATCH};
    uint8_t snaphdr[12], trailer[PEER_WIRE_TRAILER_LEN] = {0};

    peer_wire_hello_encode(hello, &h);
    peer_wire_hello_ok_encode(ok, 0xc1, 2);
    memcpy(err + 2, "cluster ID mismatch", 19);
    peer_wire_put_u64(snaphdr, 4);
    memcpy(snaphdr + 8, "msg!", 4);
    peer_wire_put_u64(trailer, 4);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/seed-%d", dir, i);
        FILE *fp = fopen(path, "wb");
        if (fp == NULL) {
            perror(path);
            return 1;
        }
        fputc(3, fp); /* max_payload 1 MiB */
        switch (i) {
            case 0: /* a message stream */
                put_frame(fp, PEER_WIRE_HELLO, hello, sizeof hello);
                put_frame(fp, PEER_WIRE_MSG, "raft-msg", 8);
                put_frame(fp, PEER_WIRE_MSG, "", 0);
                put_frame(fp, PEER_WIRE_REQUEST, "\0\0\0\0\0\0\0\1\0\0\0\2req",
                          15);
                break;
            case 1: /* the acceptor's answers */
                put_frame(fp, PEER_WIRE_HELLO_OK, ok, sizeof ok);
                put_frame(fp, PEER_WIRE_ERROR, err, 21);
                put_frame(fp, PEER_WIRE_RESPONSE,
                          "\0\0\0\0\0\0\0\1\xff\xff\x8a\xcbresp", 16);
                break;
            case 2: /* a snapshot */
                h.kind = PEER_WIRE_KIND_SNAPSHOT;
                peer_wire_hello_encode(hello, &h);
                put_frame(fp, PEER_WIRE_HELLO, hello, sizeof hello);
                put_frame(fp, PEER_WIRE_SNAP_HEADER, snaphdr, sizeof snaphdr);
                put_frame(fp, PEER_WIRE_SNAP_CHUNK, "abcd", 4);
                put_frame(fp, PEER_WIRE_SNAP_TRAILER, trailer, sizeof trailer);
                put_frame(fp, PEER_WIRE_SNAP_ACK, "", 0);
                break;
            default: /* cluster info, then garbage */
                put_frame(fp, PEER_WIRE_CLUSTER_INFO, "info", 4);
                fputs("GET / HTTP/1.1\r\n", fp);
                break;
        }
        fclose(fp);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--generate") == 0) {
        return generate(argv[2]);
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR | --generate DIR\n", argv[0]);
        return 2;
    }
    DIR *d = opendir(argv[1]);
    struct dirent *e;
    size_t files = 0;
    if (d == NULL) {
        perror(argv[1]);
        return 1;
    }
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        FILE *fp = fopen(path, "rb");
        if (fp == NULL) {
            continue;
        }
        uint8_t *data = malloc(1 << 20);
        size_t n = fread(data, 1, 1 << 20, fp);
        fclose(fp);
        run(data, n);
        /* Every truncation and every max_payload choice too. */
        for (size_t k = 0; k < n; k++) {
            run(data, k);
        }
        for (int m = 0; m < 4 && n > 0; m++) {
            data[0] = (uint8_t)m;
            run(data, n);
        }
        free(data);
        files++;
    }
    closedir(d);
    printf("%zu passed, 0 failed\n", files);
    return files > 0 ? 0 : 1;
}
#endif
