/*
 * lincheck: a linearizability checker for key-value histories (one register
 * per key), used by keel-lincheck and its unit tests.
 *
 * A history is a list of operations, each with the interval in which a
 * client had it in flight (invoke .. complete) and what it observed. The
 * checker decides whether some total order of the operations (a) respects
 * real time (an operation that completed before another was invoked comes
 * first) and (b) is a legal sequential run of the register model:
 *
 *   get   ok: returns the current value (NULL = the key is absent)
 *   put   ok: sets the value
 *   del   ok: makes the key absent
 *   cas   ok: the current value equals `expect` (NULL = absent); sets value
 *   cas fail: the current value differs from `expect`; when `result` is
 *             given (has_result) the current value *is* result
 *
 * Operations whose outcome is unknown (timeout, connection lost) may have
 * taken effect at any time after their invoke, or never: they are optional
 * and their complete is +infinity. An unknown cas, if it took effect, is a
 * successful one (a failed cas changes nothing, the same as never). Reads
 * that failed or whose outcome is unknown carry no information and are
 * ignored, as are writes that definitely failed.
 *
 * Algorithm: Wing & Gong's search with Lowe's memoization, as in Porcupine:
 * the history is split per key (linearizability is compositional), each key
 * is searched depth-first over the operations that may come next (calls
 * whose every predecessor in real time is already linearized), and a cache
 * of (set of linearized operations, register value) prunes states seen
 * before. The search is bounded (steps and cache memory); running out gives
 * LINCHECK_UNKNOWN, never a verdict without proof.
 */
#ifndef LINCHECK_H
#define LINCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum lincheck_kind {
    LINCHECK_GET,
    LINCHECK_PUT,
    LINCHECK_CAS,
    LINCHECK_DEL,
};

enum lincheck_outcome {
    LINCHECK_OK,
    LINCHECK_FAIL,
    LINCHECK_UNKNOWN,
};

/* Verdicts (also keel-lincheck's exit codes). */
enum lincheck_verdict {
    LINCHECK_LINEARIZABLE = 0,
    LINCHECK_VIOLATION = 1,
    LINCHECK_BAD_INPUT = 2,
    LINCHECK_BUDGET = 3,
};

#define LINCHECK_INFINITY INT64_MAX

/* One operation. Strings are owned by the history (copied on add); NULL
 * means "absent" for value, expect and result. */
struct lincheck_op
{
    int client;
    enum lincheck_kind kind;
    enum lincheck_outcome outcome;
    char *key;
    char *value;  /* put, cas: the value written */
    char *expect; /* cas: the compared value */
    char *result; /* get: the value read; cas fail: the current value */
    int has_result;
    int64_t invoke;
    int64_t complete; /* LINCHECK_INFINITY when the outcome is unknown */
    int line;         /* 1-based line in the input, 0 if added by code */
};

struct lincheck_history
{
    struct lincheck_op *ops;
    size_t n, cap;
};

struct lincheck_opts
{
    /* Search steps allowed per key (0: 50 million). */
    uint64_t max_steps;
    /* Memory for the memoization cache of one key, bytes (0: 1 GiB). */
    size_t max_cache_bytes;
    /* Most operations printed around a violation (0: 24). */
    int max_report_ops;
};

/* Totals of one check, for the caller's summary line. */
struct lincheck_stats
{
    size_t ops;       /* operations taking part (after dropping) */
    size_t keys;
    size_t dropped;   /* ignored reads/failed writes/unobserved unknowns */
    uint64_t steps;   /* search steps, all keys */
    size_t cache_max; /* largest cache, entries */
};

void lincheck_history_init(struct lincheck_history *h);
void lincheck_history_free(struct lincheck_history *h);

/* Copy `op` (and its strings) into the history. 0 or -ENOMEM. */
int lincheck_history_add(struct lincheck_history *h,
                         const struct lincheck_op *op);

/* Parse one JSON line of the history format (docs/TESTING.md) and add it.
 * Blank lines and lines starting with '#' are skipped. Returns 0, or -1
 * with a message (without the line number) in err. */
int lincheck_history_parse_line(struct lincheck_history *h, const char *line,
                                int lineno, char *err, size_t errlen);

/* Read a whole history from f. 0, or -1 with "line N: ..." in err. */
int lincheck_history_read(struct lincheck_history *h, FILE *f, char *err,
                          size_t errlen);

/* Check the history. Writes a human-readable explanation of a violation
 * or of a budget exhaustion to `report` (may be NULL); stats may be NULL.
 * Returns LINCHECK_LINEARIZABLE, LINCHECK_VIOLATION (some key has no
 * linearization; wins over a budget exhaustion on another key),
 * LINCHECK_BUDGET, or LINCHECK_BAD_INPUT when out of memory. */
enum lincheck_verdict lincheck_check(const struct lincheck_history *h,
                                     const struct lincheck_opts *opts,
                                     struct lincheck_stats *stats,
                                     FILE *report);

/* Print one operation as a history line (the input format). */
void lincheck_op_print(FILE *f, const struct lincheck_op *op);

#endif /* LINCHECK_H */
