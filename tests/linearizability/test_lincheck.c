/*
 * Unit tests of the linearizability checker (tools/lincheck): hand-written
 * histories with a known verdict, histories generated from a real
 * sequential run (always linearizable) and mutated (verdict compared with a
 * brute-force search that shares no code with the checker), and the input
 * errors keel-lincheck reports with a line number.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lincheck.h"

/* ---- helpers ---------------------------------------------------------------
 */

/* Check a history given as JSON lines; the report goes to `report` (may be
 * NULL) when given a buffer. */
static enum lincheck_verdict check_text_opts(const char *text,
                                             const struct lincheck_opts *o,
                                             char *report, size_t replen)
{
    struct lincheck_history h;
    lincheck_history_init(&h);
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    char err[256] = "";
    int rc = lincheck_history_read(&h, f, err, sizeof(err));
    fclose(f);
    if (rc != 0) {
        fail_msg("unexpected parse error: %s", err);
    }
    FILE *r = NULL;
    if (report) {
        memset(report, 0, replen);
        r = fmemopen(report, replen - 1, "w");
    }
    enum lincheck_verdict v = lincheck_check(&h, o, NULL, r);
    if (r) {
        fclose(r);
    }
    lincheck_history_free(&h);
    return v;
}

static enum lincheck_verdict check_text(const char *text)
{
    return check_text_opts(text, NULL, NULL, 0);
}

/* The error message of reading `text` ("" if it parsed). */
static void parse_error(const char *text, char *err, size_t errlen)
{
    struct lincheck_history h;
    lincheck_history_init(&h);
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    err[0] = 0;
    (void)lincheck_history_read(&h, f, err, errlen);
    fclose(f);
    lincheck_history_free(&h);
}

#define LIN LINCHECK_LINEARIZABLE
#define NOT LINCHECK_VIOLATION

/* ---- hand-written histories -----------------------------------------------
 */

static void test_lincheck_sequential_ok(void **state)
{
    (void)state;
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\",\"result\":null}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":2,\"complete\":3,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":4,\"complete\":5,\"outcome\":\"ok\",\"result\":\"a\"}\n"
        "{\"client\":2,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"b\",\"invoke\":6,\"complete\":7,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"c\",\"invoke\":8,\"complete\":9,\"outcome\":\"fail\",\"result\":\"b\"}\n"
        "{\"client\":1,\"op\":\"del\",\"key\":\"k\",\"invoke\":10,\"complete\":11,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":null,\"value\":\"d\",\"invoke\":12,\"complete\":13,\"outcome\":\"ok\"}\n"
        "# comments and blank lines are skipped\n\n"
        "{\"client\":3,\"op\":\"get\",\"key\":\"k\",\"invoke\":14,\"complete\":15,\"outcome\":\"ok\",\"result\":\"d\"}\n"));
    assert_int_equal(LIN, check_text(""));
}

static void test_lincheck_stale_read(void **state)
{
    (void)state;
    char rep[4096];
    assert_int_equal(NOT, check_text_opts(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"b\",\"invoke\":2,\"complete\":3,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":4,\"complete\":5,\"outcome\":\"ok\",\"result\":\"a\"}\n",
        NULL, rep, sizeof(rep)));
    /* the report names the key and the read that fits nowhere */
    assert_non_null(strstr(rep, "key \"k\""));
    assert_non_null(strstr(rep, "line 3"));
    assert_non_null(strstr(rep, "\"result\":\"a\""));
    /* the same read overlapping the second put is fine */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"b\",\"invoke\":2,\"complete\":6,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":4,\"complete\":5,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
}

static void test_lincheck_lost_update(void **state)
{
    (void)state;
    /* two cas from the same expected value both succeed */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"b\",\"invoke\":2,\"complete\":10,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"c\",\"invoke\":3,\"complete\":9,\"outcome\":\"ok\"}\n"));
    /* one of them failing is fine */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"b\",\"invoke\":2,\"complete\":10,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"c\",\"invoke\":3,\"complete\":9,\"outcome\":\"fail\",\"result\":\"b\"}\n"));
    /* a cas that "failed" while reporting the expected value */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"c\",\"invoke\":3,\"complete\":9,\"outcome\":\"fail\",\"result\":\"a\"}\n"));
    /* a failed cas without a result: only "the value differed" */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"a\",\"value\":\"c\",\"invoke\":3,\"complete\":9,\"outcome\":\"fail\"}\n"));
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"b\",\"value\":\"c\",\"invoke\":3,\"complete\":9,\"outcome\":\"fail\"}\n"));
}

static void test_lincheck_value_never_written(void **state)
{
    (void)state;
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":10,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":1,\"complete\":5,\"outcome\":\"ok\",\"result\":\"zz\"}\n"));
    /* a value written to another key does not count */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"j\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":2,\"complete\":5,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* a value whose write definitely failed */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"fail\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":5,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* deleted, then read */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"del\",\"key\":\"k\",\"invoke\":2,\"complete\":3,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":4,\"complete\":5,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
}

static void test_lincheck_concurrent_overlaps(void **state)
{
    (void)state;
    /* two concurrent puts; readers agree on one order */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":100,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"put\",\"key\":\"k\",\"value\":\"b\",\"invoke\":0,\"complete\":100,\"outcome\":\"ok\"}\n"
        "{\"client\":3,\"op\":\"get\",\"key\":\"k\",\"invoke\":10,\"complete\":20,\"outcome\":\"ok\",\"result\":\"b\"}\n"
        "{\"client\":3,\"op\":\"get\",\"key\":\"k\",\"invoke\":30,\"complete\":40,\"outcome\":\"ok\",\"result\":\"a\"}\n"
        "{\"client\":4,\"op\":\"get\",\"key\":\"k\",\"invoke\":50,\"complete\":60,\"outcome\":\"ok\",\"result\":\"a\"}\n"
        "{\"client\":4,\"op\":\"get\",\"key\":\"k\",\"invoke\":110,\"complete\":120,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* ... or not: a then b then a needs three writes */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":100,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"put\",\"key\":\"k\",\"value\":\"b\",\"invoke\":0,\"complete\":100,\"outcome\":\"ok\"}\n"
        "{\"client\":3,\"op\":\"get\",\"key\":\"k\",\"invoke\":10,\"complete\":20,\"outcome\":\"ok\",\"result\":\"a\"}\n"
        "{\"client\":3,\"op\":\"get\",\"key\":\"k\",\"invoke\":30,\"complete\":40,\"outcome\":\"ok\",\"result\":\"b\"}\n"
        "{\"client\":4,\"op\":\"get\",\"key\":\"k\",\"invoke\":50,\"complete\":60,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* a read finishing before the write was invoked sees the old value;
     * touching intervals (complete == invoke) count as concurrent */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":5,\"complete\":8,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":8,\"complete\":9,\"outcome\":\"ok\",\"result\":null}\n"));
    /* keys are independent: each history alone is fine */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"x\",\"value\":\"1\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"y\",\"value\":\"1\",\"invoke\":2,\"complete\":3,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"y\",\"invoke\":4,\"complete\":5,\"outcome\":\"ok\",\"result\":\"1\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"x\",\"invoke\":6,\"complete\":7,\"outcome\":\"ok\",\"result\":\"1\"}\n"));
    /* failed and unknown reads carry no information */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":4,\"complete\":5,\"outcome\":\"fail\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":6,\"outcome\":\"unknown\",\"result\":\"zz\"}\n"));
}

static void test_lincheck_unknown_outcome(void **state)
{
    (void)state;
    /* must be linearized: the only source of the value read */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":0,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* needn't be: never seen (also a read of the old value long after) */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":\"o\"}\n"));
    /* taking effect late: old value, then the unknown one, once */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":\"o\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":200,\"complete\":201,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* ... but not flip back */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":\"a\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":200,\"complete\":201,\"outcome\":\"ok\",\"result\":\"o\"}\n"));
    /* cannot act before it was invoked */
    assert_int_equal(NOT, check_text(
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":10,\"outcome\":\"ok\",\"result\":\"a\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":20,\"outcome\":\"unknown\"}\n"));
    /* an unknown cas applies only if its comparison held */
    assert_int_equal(NOT, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"x\",\"value\":\"a\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"o\",\"value\":\"a\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":\"a\"}\n"));
    /* an unseen unknown write is what makes a failed cas (no result)
     * possible: it must not be pruned away */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"a\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"cas\",\"key\":\"k\",\"expect\":\"o\",\"value\":\"c\",\"invoke\":100,\"complete\":101,\"outcome\":\"fail\"}\n"));
    /* an unknown delete explains an absent key */
    assert_int_equal(LIN, check_text(
        "{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"o\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n"
        "{\"client\":1,\"op\":\"del\",\"key\":\"k\",\"invoke\":2,\"outcome\":\"unknown\"}\n"
        "{\"client\":2,\"op\":\"get\",\"key\":\"k\",\"invoke\":100,\"complete\":101,\"outcome\":\"ok\",\"result\":null}\n"));
}

/* n concurrent puts, each read by a concurrent get, then a read of a value
 * nobody wrote: not linearizable, and proving it visits about 2^(2n)
 * states. */
static void concurrent_writes(char *buf, size_t len, int n)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        off += (size_t)snprintf(buf + off, len - off,
            "{\"client\":%d,\"op\":\"put\",\"key\":\"k\",\"value\":\"v%d\",\"invoke\":0,\"complete\":100,\"outcome\":\"ok\"}\n"
            "{\"client\":%d,\"op\":\"get\",\"key\":\"k\",\"invoke\":1,\"complete\":99,\"outcome\":\"ok\",\"result\":\"v%d\"}\n",
            i, i, 100 + i, i);
    }
    snprintf(buf + off, len - off,
        "{\"client\":99,\"op\":\"get\",\"key\":\"k\",\"invoke\":200,\"complete\":201,\"outcome\":\"ok\",\"result\":\"nope\"}\n");
}

static void test_lincheck_budget(void **state)
{
    (void)state;
    /* many concurrent writes and an impossible read: the search needs more
     * than 50 steps, and must then say so rather than guess */
    char buf[16384];
    concurrent_writes(buf, sizeof(buf), 12);
    struct lincheck_opts o = {.max_steps = 50};
    assert_int_equal(LINCHECK_BUDGET, check_text_opts(buf, &o, NULL, 0));
    /* a tiny cache budget is reported the same way */
    struct lincheck_opts m = {.max_cache_bytes = 4096};
    assert_int_equal(LINCHECK_BUDGET, check_text_opts(buf, &m, NULL, 0));
    /* with the default budget the verdict on a smaller one is definite */
    concurrent_writes(buf, sizeof(buf), 6);
    assert_int_equal(NOT, check_text(buf));
}

static void test_lincheck_bad_input(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\",\"result\":null}\n{oops\n",
         "line 2: invalid JSON"},
        {"[1,2]\n", "line 1: not a JSON object"},
        {"{\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\",\"result\":null}\n",
         "line 1: \"client\" must be an integer"},
        {"{\"client\":1,\"op\":\"inc\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n",
         "line 1: unknown op \"inc\""},
        {"{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"v\",\"invoke\":0,\"complete\":1,\"outcome\":\"maybe\"}\n",
         "line 1: unknown outcome \"maybe\""},
        {"{\"client\":1,\"op\":\"put\",\"value\":\"v\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n",
         "line 1: \"key\" must be a string"},
        {"{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"v\",\"invoke\":\"x\",\"complete\":1,\"outcome\":\"ok\"}\n",
         "line 1: \"invoke\" must be an integer"},
        {"{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"v\",\"invoke\":0,\"outcome\":\"ok\"}\n",
         "line 1: \"complete\" must be an integer"},
        {"{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"value\":\"v\",\"invoke\":5,\"complete\":4,\"outcome\":\"ok\"}\n",
         "line 1: \"complete\" 4 before \"invoke\" 5"},
        {"{\"client\":1,\"op\":\"put\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n",
         "line 1: put needs a string \"value\""},
        {"{\"client\":1,\"op\":\"cas\",\"key\":\"k\",\"value\":\"v\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n",
         "line 1: cas needs \"expect\""},
        {"{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\"}\n",
         "line 1: get with outcome ok needs \"result\""},
        {"{\"client\":1,\"op\":\"get\",\"key\":\"k\",\"invoke\":0,\"complete\":1,\"outcome\":\"ok\",\"result\":3}\n",
         "line 1: \"value\", \"expect\", \"result\" must be strings or null"},
        {"\n# c\n{\"client\":1,\"client\":2}\n", "line 3: invalid JSON"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        parse_error(cases[i].text, err, sizeof(err));
        if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
            fail_msg("case %zu: got \"%s\", want \"%s...\"", i, err,
                     cases[i].want);
        }
    }
}

/* ---- randomized: histories from a real sequential run ----------------------
 */

static uint64_t rng;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int rndn(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

#define NKEYS 2
#define MAXOPS 400

/* A history generated from a sequential run: operation i takes effect at
 * time 10*i+5 (its linearization point), its window is a random interval
 * around that point, and what it observed is what the run produced. */
static void generate(struct lincheck_history *h, int nops, int unknown_pct)
{
    char vals[NKEYS][16];
    int present[NKEYS] = {0};
    int seq = 0;
    for (int i = 0; i < nops; i++) {
        int k = rndn(NKEYS);
        char key[8], val[16], exp[16];
        snprintf(key, sizeof(key), "k%d", k);
        snprintf(val, sizeof(val), "v%d", ++seq);
        struct lincheck_op op;
        memset(&op, 0, sizeof(op));
        op.client = i;
        op.key = key;
        int64_t point = 10 * (int64_t)i + 5;
        op.invoke = point - rndn(40);
        op.complete = point + rndn(40);
        op.outcome = LINCHECK_OK;
        int unknown = rndn(100) < unknown_pct;
        const char *cur = present[k] ? vals[k] : NULL;
        switch (rndn(4)) {
            case 0:
                op.kind = LINCHECK_GET;
                op.result = (char *)cur;
                op.has_result = 1;
                break;
            case 1:
                op.kind = LINCHECK_PUT;
                op.value = val;
                break;
            case 2:
                op.kind = LINCHECK_CAS;
                op.value = val;
                if (cur && rndn(2)) {
                    strcpy(exp, cur); /* vals[k] changes below */
                    op.expect = exp;
                } else if (rndn(3) == 0) {
                    op.expect = NULL;
                } else {
                    snprintf(exp, sizeof(exp), "v%d", 1 + rndn(seq));
                    op.expect = exp;
                }
                if ((op.expect == NULL) != (cur == NULL) ||
                    (cur && strcmp(op.expect, cur) != 0)) {
                    op.outcome = LINCHECK_FAIL;
                    op.has_result = rndn(4) != 0;
                    op.result = (char *)cur;
                }
                break;
            default:
                op.kind = LINCHECK_DEL;
                break;
        }
        int is_write = op.kind != LINCHECK_GET && op.outcome == LINCHECK_OK;
        if (unknown && op.kind != LINCHECK_GET) {
            op.outcome = LINCHECK_UNKNOWN;
            op.has_result = 0;
            /* half the unknown writes never take effect */
            if (rndn(2) == 0) {
                is_write = 0;
                /* a never-applied write that was invoked before its
                 * point; invoke is all the history keeps */
            }
        }
        if (is_write) {
            if (op.kind == LINCHECK_DEL) {
                present[k] = 0;
            } else {
                present[k] = 1;
                strcpy(vals[k], val);
            }
        }
        assert_int_equal(0, lincheck_history_add(h, &op));
    }
}

/* Brute force: try every order of the operations that respects real time,
 * with a dictionary of keys; shares nothing with the checker. */
struct bf
{
    const struct lincheck_op *ops[16];
    int n;
    int optional[16];
    const char *val[NKEYS];
    int present[NKEYS];
};

static int bf_key(const char *k)
{
    return k[1] - '0';
}

static int same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static int bf_search(struct bf *b, unsigned done)
{
    int definite_left = 0;
    for (int i = 0; i < b->n; i++) {
        if (!(done & (1u << i)) && !b->optional[i]) {
            definite_left = 1;
        }
    }
    if (!definite_left) {
        return 1;
    }
    for (int i = 0; i < b->n; i++) {
        if (done & (1u << i)) {
            continue;
        }
        const struct lincheck_op *x = b->ops[i];
        int blocked = 0;
        for (int j = 0; j < b->n; j++) {
            if (!(done & (1u << j)) && !b->optional[j] &&
                b->ops[j]->complete < x->invoke) {
                blocked = 1;
            }
        }
        if (blocked) {
            continue;
        }
        int k = bf_key(x->key);
        const char *cur = b->present[k] ? b->val[k] : NULL;
        int ok = 0, writes = 0;
        const char *nv = NULL;
        switch (x->kind) {
            case LINCHECK_GET:
                ok = same(cur, x->result);
                break;
            case LINCHECK_PUT:
                ok = writes = 1;
                nv = x->value;
                break;
            case LINCHECK_DEL:
                ok = writes = 1;
                break;
            case LINCHECK_CAS:
                if (x->outcome == LINCHECK_FAIL) {
                    ok = !same(cur, x->expect) &&
                         (!x->has_result || same(cur, x->result));
                } else {
                    ok = writes = same(cur, x->expect);
                    nv = x->value;
                }
                break;
        }
        if (!ok) {
            continue;
        }
        const char *sv = b->val[k];
        int sp = b->present[k];
        if (writes) {
            b->val[k] = nv;
            b->present[k] = nv != NULL;
        }
        int r = bf_search(b, done | (1u << i));
        b->val[k] = sv;
        b->present[k] = sp;
        if (r) {
            return 1;
        }
    }
    return 0;
}

static int brute_force(const struct lincheck_history *h)
{
    struct bf b;
    memset(&b, 0, sizeof(b));
    for (size_t i = 0; i < h->n; i++) {
        const struct lincheck_op *op = &h->ops[i];
        if (op->kind == LINCHECK_GET && op->outcome != LINCHECK_OK) {
            continue;
        }
        if (op->kind != LINCHECK_GET && op->kind != LINCHECK_CAS &&
            op->outcome == LINCHECK_FAIL) {
            continue;
        }
        assert_true(b.n < 16);
        b.optional[b.n] = op->outcome == LINCHECK_UNKNOWN;
        b.ops[b.n++] = op;
    }
    return bf_search(&b, 0);
}

/* Change one read's result to another value of the same key (or absent). */
static int mutate_read(struct lincheck_history *h)
{
    int reads[MAXOPS], nr = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (h->ops[i].kind == LINCHECK_GET) {
            reads[nr++] = (int)i;
        }
    }
    if (nr == 0) {
        return 0;
    }
    struct lincheck_op *r = &h->ops[reads[rndn(nr)]];
    const char *cand[MAXOPS + 1];
    int nc = 0;
    cand[nc++] = NULL;
    for (size_t i = 0; i < h->n; i++) {
        if (h->ops[i].value && strcmp(h->ops[i].key, r->key) == 0) {
            cand[nc++] = h->ops[i].value;
        }
    }
    const char *pick = cand[rndn(nc)];
    if (same(pick, r->result)) {
        return 0;
    }
    free(r->result);
    r->result = pick ? strdup(pick) : NULL;
    return 1;
}

static void test_lincheck_random_small_vs_brute_force(void **state)
{
    (void)state;
    int violations = 0, agreed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        rng = 0x9e3779b97f4a7c15ull + (uint64_t)iter * 7919;
        struct lincheck_history h;
        lincheck_history_init(&h);
        generate(&h, 3 + rndn(8), 20);
        if (lincheck_check(&h, NULL, NULL, NULL) != LIN) {
            for (size_t i = 0; i < h.n; i++) {
                lincheck_op_print(stderr, &h.ops[i]);
                fputc('\n', stderr);
            }
            fail_msg("iteration %d: generated history not linearizable", iter);
        }
        assert_int_equal(1, brute_force(&h));
        if (mutate_read(&h)) {
            int bf = brute_force(&h);
            enum lincheck_verdict v = lincheck_check(&h, NULL, NULL, NULL);
            if (v != (bf ? LIN : NOT)) {
                for (size_t i = 0; i < h.n; i++) {
                    lincheck_op_print(stderr, &h.ops[i]);
                    fputc('\n', stderr);
                }
                fail_msg("iteration %d: checker %d, brute force %d", iter, v,
                         bf);
            }
            violations += !bf;
            agreed++;
        }
        lincheck_history_free(&h);
    }
    /* the mutations must produce both verdicts, or the test proves little */
    assert_true(violations > agreed / 10);
    assert_true(violations < agreed);
}

static void test_lincheck_random_large(void **state)
{
    (void)state;
    int iters = getenv("KEEL_SANITIZED") ? 5 : 20;
    int detected = 0, mutated = 0;
    for (int iter = 0; iter < iters; iter++) {
        rng = 0x2545f4914f6cdd1dull + (uint64_t)iter;
        struct lincheck_history h;
        lincheck_history_init(&h);
        generate(&h, MAXOPS, 5);
        assert_int_equal(LIN, lincheck_check(&h, NULL, NULL, NULL));
        if (mutate_read(&h)) {
            enum lincheck_verdict v = lincheck_check(&h, NULL, NULL, NULL);
            assert_true(v == LIN || v == NOT);
            detected += v == NOT;
            mutated++;
        }
        lincheck_history_free(&h);
    }
    /* reads of another value than the current one are mostly caught */
    assert_true(detected * 2 > mutated);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lincheck_sequential_ok),
        cmocka_unit_test(test_lincheck_stale_read),
        cmocka_unit_test(test_lincheck_lost_update),
        cmocka_unit_test(test_lincheck_value_never_written),
        cmocka_unit_test(test_lincheck_concurrent_overlaps),
        cmocka_unit_test(test_lincheck_unknown_outcome),
        cmocka_unit_test(test_lincheck_budget),
        cmocka_unit_test(test_lincheck_bad_input),
        cmocka_unit_test(test_lincheck_random_small_vs_brute_force),
        cmocka_unit_test(test_lincheck_random_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
