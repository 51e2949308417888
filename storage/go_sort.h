/*
 * Go 1.19's sort.Sort (unstable pdqsort) over an array of pointers, so
 * that keel orders ties exactly as etcd 3.4.23 does (see go_sort.c).
 */
#ifndef KEEL_GO_SORT_H
#define KEEL_GO_SORT_H

#include <stdbool.h>
#include <stddef.h>

/* Go's Interface.Less on two elements: a sorts strictly before b. */
typedef bool (*go_sort_less)(const void *a, const void *b, void *arg);

/* Sort v[0..n) as Go's sort.Sort(data) would, where data.Less(i, j) is
 * less(v[i], v[j], arg) and data.Swap exchanges the pointers. For
 * sort.Sort(sort.Reverse(data)) pass a less that swaps its operands. */
void go_sort(void **v, size_t n, go_sort_less less, void *arg);

#endif /* KEEL_GO_SORT_H */
