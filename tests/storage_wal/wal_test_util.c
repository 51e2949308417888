/*
 * Helpers for the WAL tests (see wal_test_util.h).
 */
#include "wal_test_util.h"

/* Test paths are short; a truncated snprintf would fail the test anyway. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *wt_mkdtemp(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    if (path == NULL) {
        abort();
    }
    snprintf(path, 4096, "%s/keel-wal-test-XXXXXX", base ? base : "/tmp");
    if (mkdtemp(path) == NULL) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

char *wt_mkdtemp_fast(void)
{
    char *path = malloc(4096);
    if (path == NULL) {
        abort();
    }
    snprintf(path, 4096, "/dev/shm/keel-wal-test-XXXXXX");
    if (mkdtemp(path) != NULL) {
        return path;
    }
    free(path);
    return wt_mkdtemp();
}

static int rm_one(const char *path,
                  const struct stat *st,
                  int flag,
                  struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void wt_rmrf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint8_t *wt_read_file(const char *path, size_t *len)
{
    struct stat st;
    uint8_t *buf;
    size_t done = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return NULL;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return NULL;
    }
    buf = malloc((size_t)st.st_size + 1);
    while (buf != NULL && done < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + done, (size_t)st.st_size - done);
        if (k <= 0) {
            free(buf);
            buf = NULL;
            break;
        }
        done += (size_t)k;
    }
    close(fd);
    *len = done;
    return buf;
}

int wt_write_file(const char *path, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        return -errno;
    }
    while (len > 0) {
        ssize_t k = write(fd, p, len);
        if (k <= 0) {
            int rv = k < 0 ? -errno : -EIO;
            close(fd);
            return rv;
        }
        p += k;
        len -= (size_t)k;
    }
    close(fd);
    return 0;
}

int wt_copy_dir(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    struct dirent *de;
    int rv = 0;
    if (d == NULL) {
        return -errno;
    }
    if (mkdir(dst, 0700) != 0 && errno != EEXIST) {
        closedir(d);
        return -errno;
    }
    while (rv == 0 && (de = readdir(d)) != NULL) {
        char from[4096], to[4096];
        uint8_t *buf;
        size_t len;
        if (de->d_name[0] == '.') {
            continue;
        }
        snprintf(from, sizeof(from), "%s/%s", src, de->d_name);
        snprintf(to, sizeof(to), "%s/%s", dst, de->d_name);
        buf = wt_read_file(from, &len);
        if (buf == NULL) {
            rv = -EIO;
            break;
        }
        rv = wt_write_file(to, buf, len);
        free(buf);
    }
    closedir(d);
    return rv;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(a, b);
}

size_t wt_list_wal(const char *dir, char names[][64], size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;
    if (d == NULL) {
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len > 4 && len < 64 && strcmp(de->d_name + len - 4, ".wal") == 0 &&
            n < cap) {
            snprintf(names[n++], 64, "%s", de->d_name);
        }
    }
    closedir(d);
    qsort(names, n, 64, cmp_name);
    return n;
}
