/*
 * storage/identity.c: member and cluster ids as etcd derives them, and the
 * keel-identity file of a data dir (see identity.h).
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "keel_err.h"

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

uint64_t identity_member_id(const char *const *peer_urls, size_t n,
                            const char *cluster_token)
{
    const char **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (sorted == NULL) {
        return 0;
    }
    memcpy(sorted, peer_urls, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    /* SHA1 over the concatenation: build it in one buffer (one-shot SHA1()
     * is not deprecated in OpenSSL 3). */
    size_t total = strlen(cluster_token);
    for (size_t i = 0; i < n; i++) {
        total += strlen(sorted[i]);
    }
    char *cat = malloc(total + 1);
    if (cat == NULL) {
        free(sorted);
        return 0;
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(sorted[i]);
        memcpy(cat + off, sorted[i], l);
        off += l;
    }
    memcpy(cat + off, cluster_token, strlen(cluster_token));
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)cat, total, md);
    free(cat);
    free(sorted);
    return be64(md);
}

uint64_t identity_cluster_id(const uint64_t *member_ids, size_t n)
{
    uint64_t sorted[IDENTITY_MAX_VOTERS];
    if (n > IDENTITY_MAX_VOTERS) {
        n = IDENTITY_MAX_VOTERS;
    }
    memcpy(sorted, member_ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    unsigned char buf[8 * IDENTITY_MAX_VOTERS];
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < 8; b++) {
            buf[8 * i + (size_t)b] = (unsigned char)(sorted[i] >> (56 - 8 * b));
        }
    }
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(buf, 8 * n, md);
    return be64(md);
}

int identity_load(const char *dir, uint64_t *member, uint64_t *cluster,
                  uint64_t *voters, size_t *n_voters)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/member/keel-identity", dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -errno;
    }
    int rv = 0;
    if (fscanf(f, "member %" SCNx64 " cluster %" SCNx64, member, cluster) !=
        2) {
        rv = KEEL_ECORRUPT;
    }
    size_t n = 0;
    uint64_t v;
    while (rv == 0 && n < IDENTITY_MAX_VOTERS &&
           fscanf(f, " voter %" SCNx64, &v) == 1) {
        voters[n++] = v;
    }
    *n_voters = n;
    fclose(f);
    return rv;
}

int identity_save(const char *dir, uint64_t member, uint64_t cluster,
                  const uint64_t *voters, size_t n_voters)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/member/keel-identity", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return -errno;
    }
    char buf[2048];
    int len = snprintf(buf, sizeof buf, "member %016" PRIx64
                                        " cluster %016" PRIx64 "\n",
                       member, cluster);
    for (size_t i = 0; i < n_voters && len < (int)sizeof buf - 40; i++) {
        len += snprintf(buf + len, sizeof buf - (size_t)len,
                        "voter %016" PRIx64 "\n", voters[i]);
    }
    int rv = 0;
    if (write(fd, buf, (size_t)len) != len || fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    if (rv == 0 && rename(tmp, path) != 0) {
        rv = -errno;
    }
    if (rv == 0) {
        char mdir[4096];
        snprintf(mdir, sizeof mdir, "%s/member", dir);
        int dfd = open(mdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            if (fsync(dfd) != 0) {
                rv = -errno;
            }
            close(dfd);
        }
    }
    return rv;
}
