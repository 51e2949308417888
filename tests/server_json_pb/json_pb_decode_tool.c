/*
 * json_pb_decode_tool: what keel's gateway answers for the decode step of a
 * request, for differential testing against a real etcd
 * (testdata/differential.sh).
 *
 *   json_pb_decode_tool <route path> <file>...
 *
 * Each file holds one fuzz input: a selector byte (ignored here) then the
 * request body. Prints one line per file: "<file>\tOK" when the body
 * decodes, else "<file>\t<http status> <error body>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway_routes.h"
#include "json_pb.h"
#include "keel_arena.h"

int main(int argc, char **argv)
{
    const struct gateway_route *r;
    if (argc < 2 || gateway_route_match("POST", argv[1], strlen(argv[1]),
                                        &r) != GATEWAY_FOUND) {
        fprintf(stderr, "usage: %s <route path> <file>...\n", argv[0]);
        return 2;
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    if (buf == NULL) {
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            free(buf);
            return 1;
        }
        size_t n = fread(buf, 1, cap, f);
        fclose(f);
        struct keel_arena a;
        keel_arena_init(&a, 0);
        ProtobufCMessage *m;
        int st;
        char *body;
        size_t bl;
        int rv = gateway_decode_request(r, buf + (n > 0), n - (n > 0), &a, &m,
                                        &st, &body, &bl);
        if (rv == 0) {
            printf("%s\tOK\n", argv[i]);
        } else {
            printf("%s\t%d %s\n", argv[i], st, body ? body : "(null)");
            free(body);
        }
        keel_arena_free(&a);
    }
    free(buf);
    return 0;
}
