/*
 * Go's sort.Sort as compiled into etcd 3.4.23 (Go 1.19: pattern-defeating
 * quicksort), step for step, so that a Range sorted on a target with ties
 * (VERSION, CREATE, MOD, VALUE) returns the tied keys in the very order etcd
 * returns them. sort.Sort is not stable: the order of equal elements is a
 * by-product of the exact sequence of comparisons and swaps (insertion sort
 * below 13 elements, median-of-three / ninther pivots, partitioning, the
 * xorshift "pattern breaking" seeded by the length). Any deviation here
 * changes tie order, so this follows Go 1.19's src/sort/zsortinterface.go
 * and sort.go operation for operation (read for the algorithm; keel's own
 * code). Go's later releases changed the xorshift constants (13/7/17); 1.19
 * uses 13/17/5.
 *
 * Only the comparison function is the caller's; elements are pointers and
 * Swap exchanges them.
 */
#include "go_sort.h"

#include <stdbool.h>
#include <stdint.h>

struct gs
{
    void **v;
    go_sort_less less;
    void *arg;
};

static bool less(const struct gs *d, long i, long j)
{
    return d->less(d->v[i], d->v[j], d->arg);
}

static void swap(const struct gs *d, long i, long j)
{
    void *t = d->v[i];
    d->v[i] = d->v[j];
    d->v[j] = t;
}

/* Go's bits.Len: the number of bits needed to represent x. */
static int bits_len(uint64_t x)
{
    int n = 0;
    while (x != 0) {
        n++;
        x >>= 1;
    }
    return n;
}

static void insertion_sort(const struct gs *d, long a, long b)
{
    for (long i = a + 1; i < b; i++) {
        for (long j = i; j > a && less(d, j, j - 1); j--) {
            swap(d, j, j - 1);
        }
    }
}

static void sift_down(const struct gs *d, long lo, long hi, long first)
{
    long root = lo;
    for (;;) {
        long child = 2 * root + 1;
        if (child >= hi) {
            return;
        }
        if (child + 1 < hi && less(d, first + child, first + child + 1)) {
            child++;
        }
        if (!less(d, first + root, first + child)) {
            return;
        }
        swap(d, first + root, first + child);
        root = child;
    }
}

static void heap_sort(const struct gs *d, long a, long b)
{
    long first = a, hi = b - a;
    for (long i = (hi - 1) / 2; i >= 0; i--) {
        sift_down(d, i, hi, first);
    }
    for (long i = hi - 1; i >= 0; i--) {
        swap(d, first, first + i);
        sift_down(d, 0, i, first);
    }
}

enum hint { HINT_UNKNOWN, HINT_INCREASING, HINT_DECREASING };

/* order2 / median / medianAdjacent: index juggling that counts swaps (the
 * elements are not moved). */
static void order2(const struct gs *d, long *a, long *b, int *swaps)
{
    if (less(d, *b, *a)) {
        long t = *a;
        (*swaps)++;
        *a = *b;
        *b = t;
    }
}

static long median(const struct gs *d, long a, long b, long c, int *swaps)
{
    order2(d, &a, &b, swaps);
    order2(d, &b, &c, swaps);
    order2(d, &a, &b, swaps);
    return b;
}

static long choose_pivot(const struct gs *d, long a, long b, enum hint *hint)
{
    long l = b - a;
    int swaps = 0;
    long i = a + l / 4 * 1, j = a + l / 4 * 2, k = a + l / 4 * 3;
    if (l >= 8) {
        if (l >= 50) { /* shortestNinther: Tukey's ninther */
            i = median(d, i - 1, i, i + 1, &swaps);
            j = median(d, j - 1, j, j + 1, &swaps);
            k = median(d, k - 1, k, k + 1, &swaps);
        }
        j = median(d, i, j, k, &swaps);
    }
    *hint = swaps == 0    ? HINT_INCREASING
            : swaps == 12 ? HINT_DECREASING /* maxSwaps = 4 * 3 */
                          : HINT_UNKNOWN;
    return j;
}

static void reverse_range(const struct gs *d, long a, long b)
{
    for (long i = a, j = b - 1; i < j; i++, j--) {
        swap(d, i, j);
    }
}

static bool partial_insertion_sort(const struct gs *d, long a, long b)
{
    long i = a + 1;
    for (int step = 0; step < 5; step++) { /* maxSteps */
        while (i < b && !less(d, i, i - 1)) {
            i++;
        }
        if (i == b) {
            return true;
        }
        if (b - a < 50) { /* shortestShifting */
            return false;
        }
        swap(d, i, i - 1);
        if (i - a >= 2) {
            /* Go's loop runs down to 1, not to a (kept as is) */
            for (long j = i - 1; j >= 1; j--) {
                if (!less(d, j, j - 1)) {
                    break;
                }
                swap(d, j, j - 1);
            }
        }
        if (b - i >= 2) {
            for (long j = i + 1; j < b; j++) {
                if (!less(d, j, j - 1)) {
                    break;
                }
                swap(d, j, j - 1);
            }
        }
    }
    return false;
}

static void break_patterns(const struct gs *d, long a, long b)
{
    long length = b - a;
    if (length < 8) {
        return;
    }
    uint64_t r = (uint64_t)length; /* xorshift seeded by the length */
    uint64_t modulus = (uint64_t)1 << bits_len((uint64_t)length);
    for (long idx = a + (length / 4) * 2 - 1; idx <= a + (length / 4) * 2 + 1;
         idx++) {
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        long other = (long)(r & (modulus - 1));
        if (other >= length) {
            other -= length;
        }
        swap(d, idx, a + other);
    }
}

static long partition_equal(const struct gs *d, long a, long b, long pivot)
{
    long i = a + 1, j = b - 1;
    swap(d, a, pivot);
    for (;;) {
        while (i <= j && !less(d, a, i)) {
            i++;
        }
        while (i <= j && less(d, a, j)) {
            j--;
        }
        if (i > j) {
            break;
        }
        swap(d, i, j);
        i++;
        j--;
    }
    return i;
}

static long partition(const struct gs *d, long a, long b, long pivot,
                      bool *already)
{
    long i = a + 1, j = b - 1;
    swap(d, a, pivot);
    while (i <= j && less(d, i, a)) {
        i++;
    }
    while (i <= j && !less(d, j, a)) {
        j--;
    }
    if (i > j) {
        swap(d, j, a);
        *already = true;
        return j;
    }
    swap(d, i, j);
    i++;
    j--;
    for (;;) {
        while (i <= j && less(d, i, a)) {
            i++;
        }
        while (i <= j && !less(d, j, a)) {
            j--;
        }
        if (i > j) {
            break;
        }
        swap(d, i, j);
        i++;
        j--;
    }
    swap(d, j, a);
    *already = false;
    return j;
}

static void pdqsort(const struct gs *d, long a, long b, int limit)
{
    bool was_balanced = true, was_partitioned = true;
    for (;;) {
        long length = b - a;
        if (length <= 12) { /* maxInsertion */
            insertion_sort(d, a, b);
            return;
        }
        if (limit == 0) {
            heap_sort(d, a, b);
            return;
        }
        if (!was_balanced) {
            break_patterns(d, a, b);
            limit--;
        }
        enum hint hint;
        long pivot = choose_pivot(d, a, b, &hint);
        if (hint == HINT_DECREASING) {
            reverse_range(d, a, b);
            pivot = (b - 1) - (pivot - a);
            hint = HINT_INCREASING;
        }
        if (was_balanced && was_partitioned && hint == HINT_INCREASING &&
            partial_insertion_sort(d, a, b)) {
            return;
        }
        if (a > 0 && !less(d, a - 1, pivot)) {
            a = partition_equal(d, a, b, pivot);
            continue;
        }
        bool already;
        long mid = partition(d, a, b, pivot, &already);
        was_partitioned = already;
        long left = mid - a, right = b - mid, threshold = length / 8;
        if (left < right) {
            was_balanced = left >= threshold;
            pdqsort(d, a, mid, limit);
            a = mid + 1;
        } else {
            was_balanced = right >= threshold;
            pdqsort(d, mid + 1, b, limit);
            b = mid;
        }
    }
}

void go_sort(void **v, size_t n, go_sort_less lessf, void *arg)
{
    struct gs d = {v, lessf, arg};
    if (n <= 1) {
        return;
    }
    pdqsort(&d, 0, (long)n, bits_len((uint64_t)n));
}
