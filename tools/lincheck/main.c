/*
 * keel-lincheck: decide whether a recorded key-value history is
 * linearizable (lincheck.h has the model, docs/TESTING.md the format).
 *
 *   keel-lincheck [--budget STEPS] [--max-cache-mb MB] [--quiet] [FILE|-]
 *
 * Exit status: 0 linearizable, 1 not linearizable (the key and the
 * operations around the conflict on stdout), 2 bad input or usage (the line
 * number on stderr), 3 unknown: the search budget ran out on some key and
 * no key was found non-linearizable.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lincheck.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: keel-lincheck [--budget STEPS] [--max-cache-mb MB] "
               "[--quiet] [FILE|-]\n"
               "exit 0 linearizable, 1 not linearizable, 2 bad input, "
               "3 search budget exhausted\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || s[0] == '-') {
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct lincheck_opts o;
    memset(&o, 0, sizeof(o));
    int quiet = 0;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        uint64_t v;
        if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], &v)) {
                fprintf(stderr, "keel-lincheck: bad --budget %s\n", argv[i]);
                return 2;
            }
            o.max_steps = v;
        } else if (strcmp(argv[i], "--max-cache-mb") == 0 && i + 1 < argc) {
            if (parse_u64(argv[++i], &v) || v > (SIZE_MAX >> 20)) {
                fprintf(stderr, "keel-lincheck: bad --max-cache-mb %s\n",
                        argv[i]);
                return 2;
            }
            o.max_cache_bytes = (size_t)v << 20;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = 1;
        } else if (strcmp(argv[i], "-h") == 0 ||
                   strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (path == NULL && (argv[i][0] != '-' || argv[i][1] == 0)) {
            path = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    FILE *f = stdin;
    if (path && strcmp(path, "-") != 0) {
        f = fopen(path, "r");
        if (f == NULL) {
            fprintf(stderr, "keel-lincheck: %s: %s\n", path, strerror(errno));
            return 2;
        }
    }
    struct lincheck_history h;
    lincheck_history_init(&h);
    char err[512];
    int rc = lincheck_history_read(&h, f, err, sizeof(err));
    if (f != stdin) {
        fclose(f);
    }
    if (rc != 0) {
        fprintf(stderr, "keel-lincheck: %s: %s\n", path ? path : "-", err);
        lincheck_history_free(&h);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct lincheck_stats st;
    enum lincheck_verdict v = lincheck_check(&h, &o, &st, stdout);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) +
                  (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    switch (v) {
        case LINCHECK_LINEARIZABLE:
            printf("linearizable\n");
            break;
        case LINCHECK_VIOLATION:
            printf("not linearizable\n");
            break;
        case LINCHECK_BUDGET:
            printf("unknown (search budget exhausted)\n");
            break;
        case LINCHECK_BAD_INPUT:
            printf("unknown (out of memory)\n");
            break;
    }
    if (!quiet) {
        fprintf(stderr,
                "keel-lincheck: %zu ops (%zu dropped) over %zu keys, %" PRIu64
                " steps, largest cache %zu states, %.3f s\n",
                st.ops, st.dropped, st.keys, st.steps, st.cache_max, secs);
    }
    lincheck_history_free(&h);
    return (int)v;
}
