/*
 * Helpers for the WAL tests: temporary directories, whole-file I/O, copies
 * of a WAL directory, the list of segment files.
 */
#ifndef KEEL_WAL_TEST_UTIL_H
#define KEEL_WAL_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* mkdtemp under $TMPDIR (or /tmp); aborts on failure. Caller frees. */
char *wt_mkdtemp(void);
/* Like wt_mkdtemp but on tmpfs (/dev/shm) when there is one: for the
 * tests that copy a log hundreds of times, where only content matters. */
char *wt_mkdtemp_fast(void);
/* rm -rf path. */
void wt_rmrf(const char *path);
/* Read a whole file (malloc'd, *len set); NULL on error. */
uint8_t *wt_read_file(const char *path, size_t *len);
/* Create/replace path with len bytes; 0 or -errno. */
int wt_write_file(const char *path, const void *buf, size_t len);
/* Copy every regular file of dir src into dir dst (created if needed). */
int wt_copy_dir(const char *src, const char *dst);
/* Sorted names of the *.wal files in dir; returns the count (max cap). */
size_t wt_list_wal(const char *dir, char names[][64], size_t cap);

#endif
