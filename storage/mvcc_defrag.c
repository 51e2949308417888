/*
 * storage/mvcc_defrag.c: defragmentation of the LMDB store, etcd's
 * `Defragment` (mvcc/backend/backend.go defrag) done the LMDB way.
 *
 * Happy path:
 *   1. mvcc_defrag_copy(): a compacting copy (MDB_CP_COMPACT: free pages
 *      left out, the B-trees rewritten densely) of the store as of its last
 *      commit into <db>.defrag, fsynced. It runs from a read txn, so it may
 *      run on a worker thread; the caller guarantees nothing is committed
 *      meanwhile (or the copy would miss it: it is swapped in as is).
 *   2. mvcc_defrag_swap(): on the writer's thread with no batch open and no
 *      read txn open anywhere: close the environment, rename the copy over
 *      the file (atomic), fsync the directory, reopen. The struct
 *      mvcc_store keeps its address, so holders of it are unaffected.
 *
 * Failure modes: a failed copy leaves the store untouched (the partial copy
 * is removed). A crash between rename and reopen is harmless: the file at
 * db_path is either the old or the new image, both complete and with the
 * same consistent_index. A reopen failure after the rename is reported;
 * the store is then unusable (its env is closed) and the caller must stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keel_err.h"
#include "mvcc_int.h"

static int copy_path(struct mvcc_store *s, char *buf, size_t len)
{
    const char *path = NULL;
    int rc = mdb_env_get_path(s->env, &path);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "defrag: mdb_env_get_path");
    }
    if ((size_t)snprintf(buf, len, "%s.defrag", path) >= len) {
        return mvcc__err(s, KEEL_EINVAL, "mvcc: defrag: path too long");
    }
    return 0;
}

int mvcc_defrag_copy(struct mvcc_store *s)
{
    char tmp[4096];
    int rv = copy_path(s, tmp, sizeof tmp);
    if (rv != 0) {
        return rv;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rv = -errno;
        return mvcc__err(s, rv, "mvcc: defrag: open %s: %s", tmp,
                         strerror(-rv));
    }
    rv = mvcc_copy_fd(s, fd, 1);
    if (rv == 0 && fdatasync(fd) != 0) {
        rv = -errno;
        mvcc__err(s, rv, "mvcc: defrag: fdatasync %s: %s", tmp, strerror(-rv));
    }
    if (close(fd) != 0 && rv == 0) {
        rv = -errno;
        mvcc__err(s, rv, "mvcc: defrag: close %s: %s", tmp, strerror(-rv));
    }
    if (rv != 0) {
        unlink(tmp);
    }
    return rv;
}

void mvcc_defrag_discard(struct mvcc_store *s)
{
    char tmp[4096];
    if (copy_path(s, tmp, sizeof tmp) == 0) {
        unlink(tmp);
    }
}

static int sync_dir(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    int rv = fsync(fd) != 0 ? -errno : 0;
    close(fd);
    return rv;
}

/* Close the environment, rename src over the store's file, fsync the
 * directory and reopen in place (s keeps its address). same_state: the
 * image must hold exactly the committed state (defrag); else it may be
 * another history (a raft snapshot image) and s's cached state follows
 * it. */
static int swap_in(struct mvcc_store *s, const char *src, int same_state,
                   const char *what)
{
    char path[4096];
    const char *p = NULL;
    MDB_envinfo info;
    int rv;

    if (s->writer != NULL) {
        return mvcc__err(s, KEEL_EBUSY, "mvcc: %s: batch open", what);
    }
    rv = mdb_env_get_path(s->env, &p);
    if (rv == 0) {
        rv = mdb_env_info(s->env, &info);
    }
    if (rv != 0) {
        return mvcc__mdb_err(s, rv, "swap: env info");
    }
    snprintf(path, sizeof path, "%s", p);
    struct mvcc_store *n = NULL;
    char errmsg[256];
    struct mvcc_options o = {.map_size = info.me_mapsize};
    mdb_env_close(s->env);
    s->env = NULL;
    if (rename(src, path) != 0) {
        rv = -errno;
        mvcc__err(s, rv, "mvcc: %s: rename %s: %s", what, src, strerror(-rv));
        /* The old file is still in place: reopen it. */
    } else if ((rv = sync_dir(path)) != 0) {
        mvcc__err(s, rv, "mvcc: %s: fsync dir of %s: %s", what, path,
                  strerror(-rv));
    }
    int orv = mvcc_open(path, &o, &n, errmsg, sizeof errmsg);
    if (orv != 0) {
        return mvcc__err(s, orv, "mvcc: %s: reopen: %s", what, errmsg);
    }
    if (same_state &&
        (n->consistent_index != s->consistent_index || n->rev != s->rev)) {
        mvcc_close(n);
        return mvcc__err(s, KEEL_ECORRUPT,
                         "mvcc: %s: the copy is not the committed state",
                         what);
    }
    s->env = n->env;
    memcpy(s->dbi, n->dbi, sizeof s->dbi);
    s->rev = n->rev;
    s->compact_rev = n->compact_rev;
    s->consistent_index = n->consistent_index;
    s->term = n->term;
    s->finished_compact = n->finished_compact;
    free(n);
    return rv;
}

int mvcc_defrag_swap(struct mvcc_store *s)
{
    char tmp[4096];
    int rv = copy_path(s, tmp, sizeof tmp);
    if (rv != 0) {
        return rv;
    }
    return swap_in(s, tmp, 1, "defrag");
}

int mvcc_replace(struct mvcc_store *s, const char *image)
{
    /* Check the image before closing anything: a bad file must leave the
     * store as it was. */
    struct mvcc_store *t = NULL;
    char errmsg[256];
    int rv = mvcc_open(image, NULL, &t, errmsg, sizeof errmsg);
    if (rv != 0) {
        return mvcc__err(s, rv, "mvcc: replace: open image %s: %s", image,
                         errmsg);
    }
    mvcc_close(t);
    /* mvcc_open of a MDB_NOSUBDIR env leaves a "-lock" file next to it. */
    char lock[4200];
    snprintf(lock, sizeof lock, "%s-lock", image);
    unlink(lock);
    return swap_in(s, image, 0, "replace");
}

int mvcc_file_size(struct mvcc_store *s, uint64_t *bytes)
{
    int fd;
    struct stat st;
    int rc = mdb_env_get_fd(s->env, &fd);
    if (rc != 0) {
        return mvcc__mdb_err(s, rc, "file size: mdb_env_get_fd");
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        return mvcc__err(s, rc, "mvcc: file size: fstat: %s", strerror(-rc));
    }
    *bytes = (uint64_t)st.st_size;
    return 0;
}
