/*
 * keelctl snapshot status and snapshot restore for keel snapshot images
 * (etcd: etcdctl/ctlv3/command/snapshot_command.go,
 * clientv3/snapshot/v3_snapshot.go Status and Restore).
 *
 * A keel snapshot (what Maintenance.Snapshot streams, `snapshot save`
 * writes) is a consistent LMDB copy of member/snap/db followed by etcd's
 * 32-byte sha256 trailer. etcdctl cannot read it (it opens bbolt files), so
 * keelctl does, with keel's own storage code: this is the one part of
 * keelctl that links storage/ and raft/ (libkeel does not).
 *
 * status: copies the image (without its trailer) to a private temporary
 * directory and opens it there, so the user's file is never written (LMDB
 * opens read-write), then prints etcd's four fields: hash = the store's
 * hash as the Maintenance.Hash RPC computes it (mvcc_hash: every table but
 * consistent_index/term), revision, total keys = stored revisions plus the
 * entries of every other table (etcd counts every bucket's keys), total
 * size = the LMDB file's size.
 *
 * restore, in etcd's order: validate the cluster flags (etcd's texts), the
 * data dir must not exist, copy the image to <data-dir>/member/snap/db
 * checking the sha256 trailer, then make it the store of a new cluster:
 * members tables rewritten for the new membership, consistent_index = n
 * (the number of members), keel-identity, and a WAL holding one AddNode
 * conf change per member at indexes 1..n, term 1, commit n -- exactly what
 * `keel` writes when it bootstraps a new cluster (server/node.c
 * bootstrap_log), so a member started on it replays them and serves the
 * snapshot's keys at the snapshot's revision. Unlike etcdctl, a failed
 * restore removes the data dir it created.
 *
 * An etcd (bbolt) image is recognised by its meta page and refused with a
 * message saying so.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "identity.h"
#include "keelctl.h"
#include "keelpb/request.pb-c.h"
#include "mvcc.h"
#include "raft.h"
#include "wal.h"

#define SHA256_LEN 32
#define LMDB_MAGIC 0xBEEFC0DEu /* MDB_meta.mm_magic, after a 16-byte page header */
#define BOLT_MAGIC 0xED0CDAEDu /* bbolt meta.magic, after a 16-byte page header */

enum image_kind { IMAGE_KEEL, IMAGE_ETCD, IMAGE_UNKNOWN };

static enum image_kind image_kind(int fd)
{
    unsigned char b[20];
    if (pread(fd, b, sizeof b, 0) != (ssize_t)sizeof b) {
        return IMAGE_UNKNOWN;
    }
    uint32_t m = (uint32_t)b[16] | (uint32_t)b[17] << 8 |
                 (uint32_t)b[18] << 16 | (uint32_t)b[19] << 24;
    return m == LMDB_MAGIC ? IMAGE_KEEL
           : m == BOLT_MAGIC ? IMAGE_ETCD
                             : IMAGE_UNKNOWN;
}

static _Noreturn void refuse_etcd_image(const char *path, const char *what)
{
    ctl_die(EXIT_ERROR,
            "%s is an etcd (bbolt) snapshot, not a keel one: use etcdctl "
            "snapshot %s for it (keelctl reads keel's LMDB snapshots)",
            path, what);
}

/* ---- copying with progress --------------------------------------------- */

/* Copy len bytes of in (from offset 0) to out, feeding them to the sha256
 * context when not NULL. Returns 0 or an errno, *which names the side. */
static int copy_range(int in, int out, uint64_t len, EVP_MD_CTX *sha,
                      const char **which)
{
    static unsigned char buf[1 << 20];
    struct ctl_progress p;
    ctl_progress_start(&p, "restoring", len);
    uint64_t off = 0;
    while (off < len) {
        size_t want = len - off < sizeof buf ? (size_t)(len - off) : sizeof buf;
        ssize_t n = pread(in, buf, want, (off_t)off);
        if (n <= 0) {
            *which = "read";
            ctl_progress_end(&p);
            return n == 0 ? EIO : errno;
        }
        if (sha != NULL) {
            EVP_DigestUpdate(sha, buf, (size_t)n);
        }
        for (ssize_t w = 0; w < n;) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));
            if (k < 0) {
                if (errno == EINTR) {
                    continue;
                }
                *which = "write";
                ctl_progress_end(&p);
                return errno;
            }
            w += k;
        }
        off += (uint64_t)n;
        ctl_progress_update(&p, off);
    }
    ctl_progress_end(&p);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- snapshot status --------------------------------------------------- */

struct counter
{
    uint64_t n;
};

static int count_entry(void *arg, const void *k, size_t kl, const void *v,
                       size_t vl)
{
    (void)k;
    (void)kl;
    (void)v;
    (void)vl;
    ((struct counter *)arg)->n++;
    return 0;
}

static char *status_tmp;

static void status_cleanup(void)
{
    if (status_tmp != NULL) {
        rm_rf(status_tmp);
        status_tmp = NULL;
    }
}

static void snapshot_status_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "snapshot status requires exactly one argument");
    }
    ctl_init_display();
    const char *path = argv[0];
    struct stat st;
    if (stat(path, &st) != 0) {
        ctl_die(EXIT_ERROR, "stat %s: %s", path, ctl_go_errno(errno));
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ctl_die(EXIT_ERROR, "open %s: %s", path, ctl_go_errno(errno));
    }
    enum image_kind kind = image_kind(fd);
    if (kind == IMAGE_ETCD) {
        close(fd);
        refuse_etcd_image(path, "status");
    }
    if (kind != IMAGE_KEEL) {
        /* What etcdctl's bbolt says of a file that is no database. */
        close(fd);
        ctl_die(EXIT_ERROR, "%s",
                st.st_size >= 4096 && st.st_size < 8192 ? "file size too small"
                                                        : "invalid database");
    }
    /* The image without its sha256 trailer, when it has one. */
    uint64_t len = (uint64_t)st.st_size;
    if (len % 512 == SHA256_LEN) {
        len -= SHA256_LEN;
    }
    const char *tmpdir = getenv("TMPDIR");
    size_t tl = strlen(tmpdir ? tmpdir : "/tmp") + 32;
    status_tmp = ctl_alloc(tl);
    snprintf(status_tmp, tl, "%s/keelctl-status.XXXXXX",
             tmpdir ? tmpdir : "/tmp");
    if (mkdtemp(status_tmp) == NULL) {
        int e = errno;
        status_tmp = NULL;
        ctl_die(EXIT_ERROR, "mkdtemp: %s", ctl_go_errno(e));
    }
    atexit(status_cleanup);
    char db[4200];
    snprintf(db, sizeof db, "%s/db", status_tmp);
    int out = open(db, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        ctl_die(EXIT_ERROR, "open %s: %s", db, ctl_go_errno(errno));
    }
    const char *which = NULL;
    int e = copy_range(fd, out, len, NULL, &which);
    close(fd);
    close(out);
    if (e != 0) {
        ctl_die(EXIT_ERROR, "%s %s: %s", which, which[0] == 'r' ? path : db,
                ctl_go_errno(e));
    }
    struct mvcc_store *s = NULL;
    char err[512] = "";
    int rv = mvcc_open(db, NULL, &s, err, sizeof err);
    if (rv != 0) {
        ctl_die(EXIT_ERROR, "snapshot file integrity check failed: %s", err);
    }
    uint32_t hash = 0;
    int64_t rev = 0;
    uint64_t revs = 0, total = 0, in_use = 0;
    struct counter c = {0};
    rv = mvcc_hash(s, &hash, &rev);
    if (rv == 0) {
        rv = mvcc_revision_count(s, &revs);
    }
    for (int t = 0; rv == 0 && t < MVCC_TABLE_COUNT; t++) {
        rv = mvcc_table_foreach(s, NULL, (enum mvcc_table)t, count_entry, &c);
    }
    if (rv == 0) {
        rv = mvcc_db_size(s, &total, &in_use);
    }
    if (rv != 0) {
        char m[300];
        snprintf(m, sizeof m, "%s", mvcc_errmsg(s));
        mvcc_close(s);
        ctl_die(EXIT_ERROR, "snapshot file integrity check failed: %s", m);
    }
    mvcc_close(s);
    status_cleanup();
    uint64_t keys = revs + c.n;
    char hex[32], revs_s[32], keys_s[32], size[32];
    snprintf(hex, sizeof hex, "%x", hash);
    snprintf(revs_s, sizeof revs_s, "%" PRId64, rev);
    snprintf(keys_s, sizeof keys_s, "%" PRIu64, keys);
    humanize_bytes(total, size, sizeof size);
    switch (ctl_fmt) {
        case FMT_SIMPLE:
            printf("%s, %s, %s, %s\n", hex, revs_s, keys_s, size);
            break;
        case FMT_JSON:
            printf("{\"hash\":%u,\"revision\":%" PRId64 ",\"totalKey\":%" PRIu64
                   ",\"totalSize\":%" PRIu64 "}\n",
                   hash, rev, keys, total);
            break;
        case FMT_FIELDS:
            printf("\"Hash\" : %u\n\"Revision\" : %" PRId64
                   "\n\"Keys\" : %" PRIu64 "\n\"Size\" : %" PRIu64 "\n",
                   hash, rev, keys, total);
            break;
        case FMT_TABLE: {
            static const char *const hdr[] = {"hash", "revision", "total keys",
                                              "total size"};
            char *cells[] = {hex, revs_s, keys_s, size};
            char **rows[] = {cells};
            print_table(hdr, 4, rows, 1);
            break;
        }
        default:
            ctl_unsupported_format();
    }
}

/* ---- snapshot restore -------------------------------------------------- */

static const char *rs_data_dir = "";
static const char *rs_wal_dir = "";
static const char *rs_cluster = "default=http://localhost:2380";
static const char *rs_token = "etcd-cluster";
static const char *rs_peer_urls = "http://localhost:2380";
static const char *rs_name = "default";
static int rs_skip_hash;

static struct flag restore_flags[] = {
    {"data-dir", 0, F_STRING, &rs_data_dir, 0},
    {"wal-dir", 0, F_STRING, &rs_wal_dir, 0},
    {"initial-cluster", 0, F_STRING, &rs_cluster, 0},
    {"initial-cluster-token", 0, F_STRING, &rs_token, 0},
    {"initial-advertise-peer-urls", 0, F_STRING, &rs_peer_urls, 0},
    {"name", 0, F_STRING, &rs_name, 0},
    {"skip-hash-check", 0, F_BOOL, &rs_skip_hash, 0},
    {NULL, 0, 0, NULL, 0},
};

#define RS_MAX_URLS 16

struct rs_member
{
    const char *name;
    const char *urls[RS_MAX_URLS];
    size_t n_urls;
    uint64_t id;
};

/* etcd's types.NewURLs check of one URL; NULL when it is valid. */
static const char *url_error(const char *in)
{
    static char msg[600];
    const char *sep = strstr(in, "://");
    size_t sl = sep ? (size_t)(sep - in) : 0;
    if (sep == NULL ||
        !((sl == 4 && strncmp(in, "http", 4) == 0) ||
          (sl == 5 && strncmp(in, "https", 5) == 0) ||
          (sl == 4 && strncmp(in, "unix", 4) == 0) ||
          (sl == 5 && strncmp(in, "unixs", 5) == 0))) {
        snprintf(msg, sizeof msg,
                 "URL scheme must be http, https, unix, or unixs: %s", in);
        return msg;
    }
    const char *host = sep + 3;
    const char *slash = strchr(host, '/');
    size_t hl = slash ? (size_t)(slash - host) : strlen(host);
    const char *colon = memrchr(host, ':', hl);
    const char *rb = memrchr(host, ']', hl);
    if (colon == NULL || (rb != NULL && rb > colon)) {
        snprintf(msg, sizeof msg,
                 "URL address does not have the form \"host:port\": %s", in);
        return msg;
    }
    if (slash != NULL) {
        snprintf(msg, sizeof msg, "URL must not contain a path: %s", in);
        return msg;
    }
    return NULL;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "a,b" of a sorted copy of urls[0..n). */
static char *join_sorted(const char *const *urls, size_t n, const char *pfx)
{
    const char **v = ctl_alloc((n ? n : 1) * sizeof *v);
    memcpy(v, urls, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_cstr);
    size_t len = 1;
    for (size_t i = 0; i < n; i++) {
        len += strlen(pfx) + strlen(v[i]) + 1;
    }
    char *out = ctl_alloc(len);
    for (size_t i = 0; i < n; i++) {
        if (i) {
            strcat(out, ",");
        }
        strcat(out, pfx);
        strcat(out, v[i]);
    }
    return out;
}

/* etcd's URLsMap.String(): every "name=url", sorted, joined by ",". */
static char *urls_map_string(const struct rs_member *m, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        total += m[i].n_urls;
    }
    const char **pairs = ctl_alloc((total ? total : 1) * sizeof *pairs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < m[i].n_urls; j++) {
            size_t l = strlen(m[i].name) + strlen(m[i].urls[j]) + 2;
            char *p = ctl_alloc(l);
            snprintf(p, l, "%s=%s", m[i].name, m[i].urls[j]);
            pairs[k++] = p;
        }
    }
    return join_sorted(pairs, k, "");
}

/* Split s on commas (copied); Go's strings.Split keeps empty fields. */
static size_t split_urls(const char *s, const char **out, size_t max)
{
    char *copy = ctl_strdup(s);
    size_t n = 0;
    for (char *p = copy;; ) {
        char *c = strchr(p, ',');
        if (c) {
            *c = 0;
        }
        if (n == max) {
            ctl_die(EXIT_ERROR, "too many URLs in %s", s);
        }
        /* NewURLs trims spaces */
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        size_t l = strlen(p);
        while (l > 0 && (p[l - 1] == ' ' || p[l - 1] == '\t')) {
            p[--l] = 0;
        }
        out[n++] = p;
        if (c == NULL) {
            break;
        }
        p = c + 1;
    }
    return n;
}

/* --initial-cluster as etcd's types.parse + NewURLsMap, members in order of
 * first appearance (what keel's server uses for the voters' order). */
static size_t parse_cluster(const char *s, struct rs_member *m, size_t max)
{
    char *copy = ctl_strdup(s);
    size_t n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *val = "";
        if (eq != NULL) {
            *eq = 0;
            val = eq + 1;
        }
        size_t i;
        for (i = 0; i < n && strcmp(m[i].name, tok) != 0; i++) {
        }
        if (i == n) {
            if (n == max) {
                ctl_die(EXIT_ERROR, "--initial-cluster: more than %zu members",
                        max);
            }
            m[n].name = tok;
            m[n].n_urls = 0;
            n++;
        }
        if (m[i].n_urls == RS_MAX_URLS) {
            ctl_die(EXIT_ERROR, "--initial-cluster: too many URLs for %s",
                    tok);
        }
        m[i].urls[m[i].n_urls++] = val;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < m[i].n_urls; j++) {
            const char *e = url_error(m[i].urls[j]);
            if (e != NULL) {
                ctl_die(EXIT_ERROR, "%s", e);
            }
        }
    }
    return n;
}

static char *restore_dir_made; /* removed if the restore fails */

static void restore_cleanup(void)
{
    if (restore_dir_made != NULL) {
        rm_rf(restore_dir_made);
    }
}

static int mkdir_all(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                return errno;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
        return errno;
    }
    return 0;
}

struct key_list
{
    char **k;
    size_t *len;
    size_t n, cap;
};

static int collect_key(void *arg, const void *k, size_t kl, const void *v,
                       size_t vl)
{
    (void)v;
    (void)vl;
    struct key_list *l = arg;
    static const char keep[] = "cluster_version";
    if (kl == sizeof keep - 1 && memcmp(k, keep, kl) == 0) {
        return 0; /* etcd keeps the cluster bucket */
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **nk = ctl_alloc(cap * sizeof *nk);
        size_t *nl = ctl_alloc(cap * sizeof *nl);
        if (l->n > 0) {
            memcpy(nk, l->k, l->n * sizeof *nk);
            memcpy(nl, l->len, l->n * sizeof *nl);
        }
        l->k = nk;
        l->len = nl;
        l->cap = cap;
    }
    l->k[l->n] = ctl_strndup(k, kl);
    l->len[l->n] = kl;
    l->n++;
    return 0;
}

/* Make the copied store one of a new cluster: members tables for the new
 * membership, consistent_index = n (the restored WAL's commit), term 1. */
static void reset_store(const char *db, const struct rs_member *m, size_t n)
{
    struct mvcc_store *s = NULL;
    char err[512] = "";
    int rv = mvcc_open(db, NULL, &s, err, sizeof err);
    if (rv != 0) {
        ctl_die(EXIT_ERROR, "open restored db %s: %s", db, err);
    }
    struct mvcc_write *w = NULL;
    rv = mvcc_write_begin(s, &w);
    for (int t = MVCC_TABLE_MEMBERS; rv == 0 && t <= MVCC_TABLE_MEMBERS_REMOVED;
         t++) {
        struct key_list l = {0};
        rv = mvcc_table_foreach(s, w, (enum mvcc_table)t, collect_key, &l);
        for (size_t i = 0; rv == 0 && i < l.n; i++) {
            rv = mvcc_table_del(w, (enum mvcc_table)t, l.k[i], l.len[i]);
        }
    }
    for (size_t i = 0; rv == 0 && i < n; i++) {
        /* The same record a member publishes once it runs (server.c), with
         * no client URLs yet (etcd's restored members have none either). */
        Keelpb__MemberAttributes a = KEELPB__MEMBER_ATTRIBUTES__INIT;
        a.member_id = m[i].id;
        a.name = (char *)m[i].name;
        uint8_t buf[512];
        size_t len = keelpb__member_attributes__get_packed_size(&a);
        if (len > sizeof buf) {
            rv = -ENAMETOOLONG;
            break;
        }
        keelpb__member_attributes__pack(&a, buf);
        char key[64];
        int kl = snprintf(key, sizeof key, "%016" PRIx64 "/attributes",
                          m[i].id);
        rv = mvcc_table_put(w, MVCC_TABLE_MEMBERS, key, (size_t)kl, buf, len);
    }
    if (rv == 0) {
        rv = mvcc_write_commit_reset(w, n, 1);
        w = NULL;
    }
    if (w != NULL) {
        mvcc_write_abort(w);
    }
    if (rv == 0) {
        rv = mvcc_sync(s);
    }
    if (rv != 0) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", mvcc_errmsg(s));
        mvcc_close(s);
        ctl_die(EXIT_ERROR, "reset restored db %s: %s", db, msg);
    }
    mvcc_close(s);
}

/* The new cluster's log: what server/node.c bootstrap_log writes for a new
 * cluster with these voters. */
static void write_wal(const char *data_dir, const struct rs_member *m, size_t n)
{
    struct wal *wal = NULL;
    char err[512] = "";
    int rv = wal_open(data_dir, NULL, &wal, err, sizeof err);
    if (rv != 0) {
        ctl_die(EXIT_ERROR, "create WAL: %s", err);
    }
    struct wal_entry *ents = ctl_alloc(n * sizeof *ents);
    struct raft_buf **bufs = ctl_alloc(n * sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        struct raft_conf_change cc = {.id = 0,
                                      .type = RAFT_CONF_ADD_NODE,
                                      .node_id = m[i].id,
                                      .context = NULL};
        bufs[i] = raft_conf_change_encode(raft_heap_default(), &cc);
        if (bufs[i] == NULL) {
            ctl_die(EXIT_ERROR, "out of memory");
        }
        ents[i].index = i + 1;
        ents[i].term = 1;
        ents[i].type = RAFT_ENTRY_CONF_CHANGE;
        ents[i].data = bufs[i]->data;
        ents[i].len = bufs[i]->len;
    }
    struct wal_hard_state hs = {.term = 1, .vote = 0, .commit = n};
    rv = wal_append(wal, ents, n, &hs);
    for (size_t i = 0; i < n; i++) {
        raft_buf_unref(bufs[i]);
    }
    if (rv != 0) {
        snprintf(err, sizeof err, "%s", wal_errmsg(wal));
        wal_close(wal);
        ctl_die(EXIT_ERROR, "write WAL: %s", err);
    }
    wal_close(wal);
}

static char *restore_fields(const char *path, const char *wal_dir,
                            const char *data_dir, const char *snap_dir)
{
    char *a = ctl_jfield("path", path), *b = ctl_jfield("wal-dir", wal_dir),
         *c = ctl_jfield("data-dir", data_dir),
         *d = ctl_jfield("snap-dir", snap_dir);
    size_t l = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 1;
    char *out = ctl_alloc(l);
    snprintf(out, l, "%s%s%s%s", a, b, c, d);
    return out;
}

static void go_bytes(FILE *f, const unsigned char *b, size_t n)
{
    fputc('[', f);
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s%u", i ? " " : "", b[i]);
    }
    fputc(']', f);
}

static void snapshot_restore_run(int argc, char **argv)
{
    if (argc != 1) {
        ctl_die(EXIT_BAD_ARGS, "snapshot restore requires exactly one argument");
    }
    const char *path = argv[0];
    const char *data_dir = rs_data_dir;
    if (data_dir[0] == 0) {
        size_t l = strlen(rs_name) + 6;
        char *d = ctl_alloc(l);
        snprintf(d, l, "%s.etcd", rs_name);
        data_dir = d;
    }
    size_t dl = strlen(data_dir) + 32;
    char *wal_dir = ctl_alloc(dl), *snap_dir = ctl_alloc(dl),
         *db = ctl_alloc(dl);
    snprintf(wal_dir, dl, "%s/member/wal", data_dir);
    snprintf(snap_dir, dl, "%s/member/snap", data_dir);
    snprintf(db, dl, "%s/db", snap_dir);

    /* etcd: types.NewURLs, NewURLsMap, VerifyBootstrap, in this order. */
    const char *purls[RS_MAX_URLS];
    size_t npurls = split_urls(rs_peer_urls, purls, RS_MAX_URLS);
    for (size_t i = 0; i < npurls; i++) {
        const char *e = url_error(purls[i]);
        if (e != NULL) {
            ctl_die(EXIT_ERROR, "%s", e);
        }
    }
    struct rs_member m[IDENTITY_MAX_VOTERS];
    size_t n = parse_cluster(rs_cluster, m, IDENTITY_MAX_VOTERS);
    size_t self = n;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(m[i].name, rs_name) == 0) {
            self = i;
        }
    }
    if (self == n) {
        FILE *f = stderr;
        fflush(stdout);
        fprintf(f, "Error: couldn't find local name ");
        go_quote(f, (const uint8_t *)rs_name, strlen(rs_name));
        fprintf(f, " in the initial cluster configuration\n");
        exit(EXIT_ERROR);
    }
    char *have = join_sorted(m[self].urls, m[self].n_urls, "");
    char *adv = join_sorted(purls, npurls, "");
    if (strcmp(have, adv) != 0) {
        /* etcd: advertiseMatchesCluster (its URL resolution reduced to a
         * comparison of the URLs as written). */
        int missing_adv = 0;
        for (size_t i = 0; i < m[self].n_urls; i++) {
            int found = 0;
            for (size_t j = 0; j < npurls; j++) {
                found |= strcmp(m[self].urls[i], purls[j]) == 0;
            }
            missing_adv |= !found;
        }
        char why[1200];
        if (m[self].n_urls != npurls) {
            snprintf(why, sizeof why, "len([\"%s\"]) != len([\"%s\"])", adv,
                     have);
        } else {
            snprintf(why, sizeof why, "resolved urls: \"%s\" != \"%s\"", adv,
                     have);
        }
        struct rs_member me = {.name = rs_name, .n_urls = npurls};
        memcpy(me.urls, purls, npurls * sizeof *purls);
        if (missing_adv) {
            size_t pl = strlen(rs_name) + 2;
            char *pfx = ctl_alloc(pl);
            snprintf(pfx, pl, "%s=", rs_name);
            ctl_die(EXIT_ERROR,
                    "--initial-cluster has %s but missing from "
                    "--initial-advertise-peer-urls=%s (%s)",
                    join_sorted(m[self].urls, m[self].n_urls, pfx), adv, why);
        }
        ctl_die(EXIT_ERROR,
                "--initial-advertise-peer-urls has %s but missing from "
                "--initial-cluster=%s",
                adv, urls_map_string(&me, 1));
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < m[i].n_urls; j++) {
            for (size_t k = i; k < n; k++) {
                for (size_t l = k == i ? j + 1 : 0; l < m[k].n_urls; l++) {
                    if (strcmp(m[i].urls[j], m[k].urls[l]) == 0) {
                        ctl_die(EXIT_ERROR,
                                "initial cluster %s has duplicate url",
                                urls_map_string(m, n));
                    }
                }
            }
        }
    }
    uint64_t voters[IDENTITY_MAX_VOTERS];
    for (size_t i = 0; i < n; i++) {
        m[i].id = identity_member_id(m[i].urls, m[i].n_urls, rs_token);
        voters[i] = m[i].id;
        for (size_t j = 0; j < i; j++) {
            if (voters[j] == voters[i]) {
                ctl_die(EXIT_ERROR, "member exists with identical ID %" PRIx64,
                        voters[i]);
            }
        }
    }
    struct stat st;
    if (stat(data_dir, &st) == 0) {
        fflush(stdout);
        fprintf(stderr, "Error: data-dir ");
        go_quote(stderr, (const uint8_t *)data_dir, strlen(data_dir));
        fprintf(stderr, " exists\n");
        exit(EXIT_ERROR);
    }
    if (rs_wal_dir[0] != 0 && strcmp(rs_wal_dir, wal_dir) != 0) {
        ctl_die(EXIT_ERROR,
                "--wal-dir %s: keel keeps its WAL in <data-dir>/member/wal",
                rs_wal_dir);
    }

    char *fields = restore_fields(path, wal_dir, data_dir, snap_dir);
    ctl_zap(0, "info", "snapshot/v3_snapshot.go:296", "restoring snapshot",
            fields);

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ctl_die(EXIT_ERROR, "open %s: %s", path, ctl_go_errno(errno));
    }
    if (fstat(fd, &st) != 0 || st.st_size < SHA256_LEN) {
        ctl_die(EXIT_ERROR, "seek %s: invalid argument", path);
    }
    unsigned char want[SHA256_LEN], got[SHA256_LEN];
    uint64_t size = (uint64_t)st.st_size;
    if (pread(fd, want, SHA256_LEN, (off_t)(size - SHA256_LEN)) !=
        SHA256_LEN) {
        ctl_die(EXIT_ERROR, "read %s: %s", path, ctl_go_errno(errno));
    }
    int has_hash = size % 512 == SHA256_LEN;
    int e = mkdir_all(snap_dir);
    restore_dir_made = ctl_strdup(data_dir);
    atexit(restore_cleanup);
    if (e != 0) {
        ctl_die(EXIT_ERROR, "mkdir %s: %s", snap_dir, ctl_go_errno(e));
    }
    int out = open(db, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (out < 0) {
        ctl_die(EXIT_ERROR, "open %s: %s", db, ctl_go_errno(errno));
    }
    EVP_MD_CTX *sha = EVP_MD_CTX_new();
    if (sha == NULL || EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1) {
        ctl_die(EXIT_ERROR, "sha256: out of memory");
    }
    const char *which = NULL;
    e = copy_range(fd, out, has_hash ? size - SHA256_LEN : size, sha, &which);
    unsigned int glen = 0;
    EVP_DigestFinal_ex(sha, got, &glen);
    EVP_MD_CTX_free(sha);
    if (e == 0 && fsync(out) != 0) {
        e = errno;
        which = "sync";
    }
    close(out);
    if (e != 0) {
        close(fd);
        ctl_die(EXIT_ERROR, "%s %s: %s", which,
                which[0] == 'r' ? path : db, ctl_go_errno(e));
    }
    if (!has_hash && !rs_skip_hash) {
        ctl_die(EXIT_ERROR, "snapshot missing hash but --skip-hash-check=false");
    }
    if (has_hash && !rs_skip_hash && memcmp(want, got, SHA256_LEN) != 0) {
        fflush(stdout);
        fprintf(stderr, "Error: expected sha256 ");
        go_bytes(stderr, want, SHA256_LEN);
        fprintf(stderr, ", got ");
        go_bytes(stderr, got, SHA256_LEN);
        fprintf(stderr, "\n");
        exit(EXIT_ERROR);
    }
    enum image_kind kind = image_kind(fd);
    close(fd);
    if (kind == IMAGE_ETCD) {
        refuse_etcd_image(path, "restore");
    }
    if (kind != IMAGE_KEEL) {
        ctl_die(EXIT_ERROR, "%s is not a keel snapshot (no LMDB meta page)",
                path);
    }
    reset_store(db, m, n);
    char lock[4200];
    snprintf(lock, sizeof lock, "%s-lock", db);
    unlink(lock);
    /* Identity before the first WAL record (a data dir with a WAL always
     * has one, server.c relies on it). */
    e = identity_save(data_dir, m[self].id, identity_cluster_id(voters, n),
                      voters, n);
    if (e != 0) {
        ctl_die(EXIT_ERROR, "write %s/member/keel-identity: %s", data_dir,
                ctl_go_errno(-e));
    }
    write_wal(data_dir, m, n);
    restore_dir_made = NULL;
    ctl_zap(0, "info", "snapshot/v3_snapshot.go:309", "restored snapshot",
            fields);
}

/* ---- backup ---------------------------------------------------------------
 *
 * keelctl backup --data-dir D --backup-dir B: what `etcdctl backup` does for
 * an etcd data dir, for a keel one: a consistent copy of D's store (an
 * LMDB read txn, so D may belong to a running member) made into a new
 * single-member cluster with a fresh random member and cluster id (etcd's
 * backup also gives new ids, to be started with --force-new-cluster), the
 * same bootstrap WAL and consistent_index reset as restore.
 */

static const char *bk_data_dir = "", *bk_wal_dir = "", *bk_backup_dir = "",
                  *bk_backup_wal_dir = "";
static int bk_with_v3;

static struct flag backup_flags[] = {
    {"data-dir", 0, F_STRING, &bk_data_dir, 0},
    {"wal-dir", 0, F_STRING, &bk_wal_dir, 0},
    {"backup-dir", 0, F_STRING, &bk_backup_dir, 0},
    {"backup-wal-dir", 0, F_STRING, &bk_backup_wal_dir, 0},
    {"with-v3", 0, F_BOOL, &bk_with_v3, 0},
    {NULL, 0, 0, NULL, 0},
};

static uint64_t random_id(void)
{
    uint64_t v = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f == NULL || fread(&v, sizeof(v), 1, f) != 1) {
        ctl_die(EXIT_ERROR, "read /dev/urandom: %s", ctl_go_errno(errno));
    }
    fclose(f);
    return v ? v : 1;
}

static void backup_run(int argc, char **argv)
{
    (void)argv;
    if (argc != 0) {
        ctl_die(EXIT_BAD_ARGS, "backup takes no arguments");
    }
    if (bk_data_dir[0] == 0 || bk_backup_dir[0] == 0) {
        ctl_die(EXIT_BAD_ARGS, "backup needs --data-dir and --backup-dir");
    }
    if (bk_wal_dir[0] || bk_backup_wal_dir[0]) {
        ctl_die(EXIT_BAD_ARGS, "--wal-dir/--backup-wal-dir: keel keeps its "
                               "WAL in <data-dir>/member/wal");
    }
    (void)bk_with_v3; /* keel's data is all v3: always copied */
    size_t l = strlen(bk_data_dir) + strlen(bk_backup_dir) + 32;
    char *src = ctl_alloc(l), *member = ctl_alloc(l), *snap = ctl_alloc(l),
         *dst = ctl_alloc(l);
    snprintf(src, l, "%s/member/snap/db", bk_data_dir);
    snprintf(member, l, "%s/member", bk_backup_dir);
    snprintf(snap, l, "%s/member/snap", bk_backup_dir);
    snprintf(dst, l, "%s/member/snap/db", bk_backup_dir);
    struct stat st;
    if (stat(src, &st) != 0) {
        ctl_die(EXIT_ERROR, "open %s: %s", src, ctl_go_errno(errno));
    }
    /* before LMDB opens it (and leaves its lock file in an etcd dir) */
    int kfd = open(src, O_RDONLY | O_CLOEXEC);
    if (kfd >= 0) {
        enum image_kind k = image_kind(kfd);
        close(kfd);
        if (k == IMAGE_ETCD) {
            ctl_die(EXIT_ERROR,
                    "%s is an etcd data dir (bbolt), not a keel one: use "
                    "ETCDCTL_API=2 etcdctl backup for it (keelctl backs up "
                    "keel data dirs)",
                    bk_data_dir);
        }
    }
    if (stat(member, &st) == 0) {
        fflush(stdout);
        fprintf(stderr, "Error: backup-dir ");
        go_quote(stderr, (const uint8_t *)bk_backup_dir, strlen(bk_backup_dir));
        fprintf(stderr, " already holds a member\n");
        exit(EXIT_ERROR);
    }
    int made_dir = stat(bk_backup_dir, &st) != 0;
    int e = mkdir_all(snap);
    if (e != 0) {
        ctl_die(EXIT_ERROR, "mkdir %s: %s", snap, ctl_go_errno(e));
    }
    /* a failed backup removes what it made */
    restore_dir_made = made_dir ? ctl_strdup(bk_backup_dir) : member;
    atexit(restore_cleanup);
    struct mvcc_store *s = NULL;
    char err[512] = "";
    int rv = mvcc_open(src, NULL, &s, err, sizeof(err));
    if (rv != 0) {
        ctl_die(EXIT_ERROR, "open %s: %s", src, err);
    }
    int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        int ee = errno;
        mvcc_close(s);
        ctl_die(EXIT_ERROR, "open %s: %s", dst, ctl_go_errno(ee));
    }
    rv = mvcc_copy_fd(s, fd, 1);
    if (rv == 0 && fsync(fd) != 0) {
        rv = -errno;
    }
    close(fd);
    if (rv != 0) {
        snprintf(err, sizeof(err), "%s", mvcc_errmsg(s));
        mvcc_close(s);
        ctl_die(EXIT_ERROR, "copy %s: %s", src, err);
    }
    mvcc_close(s);
    struct rs_member m = {.name = "", .n_urls = 0, .id = random_id()};
    reset_store(dst, &m, 1);
    char lock[4200];
    snprintf(lock, sizeof(lock), "%s-lock", dst);
    unlink(lock);
    e = identity_save(bk_backup_dir, m.id, random_id(), &m.id, 1);
    if (e != 0) {
        ctl_die(EXIT_ERROR, "write %s/keel-identity: %s", member,
                ctl_go_errno(-e));
    }
    write_wal(bk_backup_dir, &m, 1);
    restore_dir_made = NULL;
}

static struct flag no_flags[] = {{NULL, 0, 0, NULL, 0}};

const struct ctl_cmd ctl_restore_cmds[] = {
    {"backup", backup_flags, backup_run},
    {"snapshot status", no_flags, snapshot_status_run},
    {"snapshot restore", restore_flags, snapshot_restore_run},
    {NULL, NULL, NULL},
};
