/*
 * Golden-trace tests (etcd's datadriven style): each file in
 * tests/raft/testdata/ is a script of commands, each followed by "----"
 * and the exact trace it must produce (messages delivered, role changes,
 * entries applied, read states, status lines). A change in behaviour shows
 * up as a readable diff of the protocol's conversation.
 *
 *   KEEL_REWRITE=1 build/bin/test_raft_trace   rewrites the expected traces
 *                                             (review the diff, commit it)
 *
 * Commands: cluster N [VOTERS] | campaign ID | propose ID VALUE | tick ID N |
 * tick-all N | stabilize | isolate ID | cut FROM TO | heal |
 * transfer FROM TO | conf ID add|remove|learner NODE | read ID CTX |
 * compact ID | crash ID | restart ID | status ID
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "raft.h"

#ifndef KEEL_RAFT_TESTDATA
#error "KEEL_RAFT_TESTDATA must name the testdata directory"
#endif

#define MAXN 7
#define MAXQ 4096

struct tnode
{
    uint64_t id;
    struct raft_memstore *ms;
    struct raft_storage st;
    struct raft *r;
    uint64_t applied;
    struct raft_conf_state cs;
    int state;
    uint64_t term;
};

struct env
{
    int n;
    struct tnode nodes[MAXN];
    struct raft_message q[MAXQ];
    int nq;
    bool cut[MAXN + 1][MAXN + 1];
    char *out;
    size_t len, cap;
};

static void outf(struct env *e, const char *fmt, ...)
{
    va_list ap;
    int n;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(e->out + e->len, e->cap - e->len, fmt, ap);
        va_end(ap);
        if ((size_t)n < e->cap - e->len) {
            e->len += (size_t)n;
            return;
        }
        e->cap = e->cap * 2 + (size_t)n + 256;
        e->out = realloc(e->out, e->cap);
    }
}

static const char *state_name(int s)
{
    static const char *const n[] = {"follower", "candidate", "leader",
                                    "pre-candidate"};
    return n[s];
}

static void msg_copy(struct raft_message *d, const struct raft_message *m)
{
    size_t i;
    *d = *m;
    d->entries = NULL;
    if (m->n_entries > 0) {
        d->entries = malloc(m->n_entries * sizeof(*d->entries));
        for (i = 0; i < m->n_entries; i++) {
            d->entries[i] = m->entries[i];
            raft_buf_ref(m->entries[i].data);
        }
    }
    if (m->snapshot != NULL) {
        d->snapshot = malloc(sizeof(*d->snapshot));
        *d->snapshot = *m->snapshot;
        raft_buf_ref(d->snapshot->data);
    }
    raft_buf_ref(d->context);
}

static void msg_free(struct raft_message *m)
{
    size_t i;
    for (i = 0; i < m->n_entries; i++) {
        raft_buf_unref(m->entries[i].data);
    }
    free(m->entries);
    if (m->snapshot != NULL) {
        raft_buf_unref(m->snapshot->data);
        free(m->snapshot);
    }
    raft_buf_unref(m->context);
}

static void describe_entry(struct env *e, const struct raft_entry *en)
{
    if (en->type == RAFT_ENTRY_CONF_CHANGE) {
        struct raft_conf_change cc;
        static const char *const t[] = {"add", "remove", "update", "learner"};
        raft_conf_change_decode(NULL, en->data, &cc);
        raft_buf_unref(cc.context);
        outf(e, "%" PRIu64 "/%" PRIu64 " conf %s %" PRIu64, en->term, en->index,
             t[cc.type], cc.node_id);
    } else if (en->data == NULL) {
        outf(e, "%" PRIu64 "/%" PRIu64 " empty", en->term, en->index);
    } else {
        outf(e, "%" PRIu64 "/%" PRIu64 " %.*s", en->term, en->index,
             (int)en->data->len, (const char *)en->data->data);
    }
}

static void describe_msg(struct env *e, const struct raft_message *m)
{
    size_t i;
    outf(e, "%" PRIu64 "->%" PRIu64 " %s term=%" PRIu64, m->from, m->to,
         raft_msg_type_name(m->type), m->term);
    if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_VOTE ||
        m->type == RAFT_MSG_PRE_VOTE) {
        outf(e, " index=%" PRIu64 " logterm=%" PRIu64, m->index, m->log_term);
    }
    if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT) {
        outf(e, " commit=%" PRIu64, m->commit);
    }
    if (m->type == RAFT_MSG_APP_RESP || m->type == RAFT_MSG_READ_INDEX_RESP) {
        outf(e, " index=%" PRIu64, m->index);
    }
    if (m->reject) {
        outf(e, " reject hint=%" PRIu64, m->reject_hint);
    }
    if (m->snapshot != NULL) {
        outf(e, " snapshot=%" PRIu64 "/%" PRIu64, m->snapshot->meta.term,
             m->snapshot->meta.index);
    }
    if (m->n_entries > 0) {
        outf(e, " [");
        for (i = 0; i < m->n_entries; i++) {
            outf(e, i ? ", " : "");
            describe_entry(e, &m->entries[i]);
        }
        outf(e, "]");
    }
    outf(e, "\n");
}

static struct tnode *node(struct env *e, uint64_t id)
{
    return id >= 1 && id <= (uint64_t)e->n ? &e->nodes[id - 1] : NULL;
}

static void note_role(struct env *e, struct tnode *t)
{
    struct raft_status st;
    raft_status(t->r, &st);
    if (st.state != t->state || st.hs.term != t->term) {
        outf(e, "%" PRIu64 " becomes %s at term %" PRIu64 "\n", t->id,
             state_name(st.state), st.hs.term);
        t->state = st.state;
        t->term = st.hs.term;
    }
}

static void process(struct env *e, struct tnode *t)
{
    while (t->r != NULL && raft_has_ready(t->r)) {
        struct raft_ready *rd = raft_ready(t->r);
        size_t i;
        for (i = 0; i < rd->n_msgs && e->nq < MAXQ; i++) {
            msg_copy(&e->q[e->nq++], &rd->msgs[i]);
        }
        if (rd->has_snapshot) {
            raft_memstore_apply_snapshot(t->ms, &rd->snapshot);
            t->applied = rd->snapshot.meta.index;
            t->cs = rd->snapshot.meta.conf_state;
            outf(e, "%" PRIu64 " installs snapshot %" PRIu64 "/%" PRIu64 "\n",
                 t->id, rd->snapshot.meta.term, rd->snapshot.meta.index);
        }
        raft_memstore_append(t->ms, rd->entries, rd->n_entries);
        if (rd->has_hard_state) {
            raft_memstore_set_hard_state(t->ms, &rd->hard_state);
        }
        for (i = 0; i < rd->n_msgs_after_persist && e->nq < MAXQ; i++) {
            msg_copy(&e->q[e->nq++], &rd->msgs_after_persist[i]);
        }
        for (i = 0; i < rd->n_committed; i++) {
            const struct raft_entry *en = &rd->committed[i];
            if (en->index <= t->applied) {
                continue;
            }
            t->applied = en->index;
            outf(e, "%" PRIu64 " applies ", t->id);
            describe_entry(e, en);
            outf(e, "\n");
            if (en->type == RAFT_ENTRY_CONF_CHANGE) {
                struct raft_conf_change cc;
                raft_conf_change_decode(NULL, en->data, &cc);
                raft_apply_conf_change(t->r, &cc, &t->cs);
                raft_buf_unref(cc.context);
            }
        }
        for (i = 0; i < rd->n_read_states; i++) {
            outf(e, "%" PRIu64 " read %.*s at index %" PRIu64 "\n", t->id,
                 (int)rd->read_states[i].context->len,
                 (const char *)rd->read_states[i].context->data,
                 rd->read_states[i].index);
        }
        raft_advance(t->r, rd);
        note_role(e, t);
    }
}

static void stabilize(struct env *e)
{
    int rounds, i;
    for (rounds = 0; rounds < 100; rounds++) {
        struct raft_message *batch;
        int n;
        for (i = 0; i < e->n; i++) {
            process(e, &e->nodes[i]);
        }
        if (e->nq == 0) {
            return;
        }
        n = e->nq;
        batch = malloc((size_t)n * sizeof(*batch));
        memcpy(batch, e->q, (size_t)n * sizeof(*batch));
        e->nq = 0;
        for (i = 0; i < n; i++) {
            struct raft_message *m = &batch[i];
            struct tnode *to = node(e, m->to);
            if (to != NULL && to->r != NULL && !e->cut[m->from][m->to]) {
                describe_msg(e, m);
                raft_step(to->r, m);
                note_role(e, to);
                process(e, to);
            }
            msg_free(m);
        }
        free(batch);
    }
    outf(e, "did not stabilize\n");
}

static void start(struct env *e, struct tnode *t)
{
    struct raft_config c;
    struct raft_snapshot snap;
    raft_config_default(&c);
    c.id = t->id;
    c.storage = &t->st;
    c.rand_seed = 1;
    t->st.snapshot(t->st.ctx, &snap);
    t->applied = snap.meta.index;
    t->cs = snap.meta.conf_state;
    raft_buf_unref(snap.data);
    raft_new(&c, &t->r);
    t->state = RAFT_FOLLOWER;
    t->term = 0;
    note_role(e, t);
}

static void status_line(struct env *e, struct tnode *t)
{
    struct raft_status st;
    uint32_t i;
    raft_status(t->r, &st);
    outf(e,
         "%" PRIu64 ": %s term=%" PRIu64 " vote=%" PRIu64 " lead=%" PRIu64
         " commit=%" PRIu64 " applied=%" PRIu64 " log=[%" PRIu64 ",%" PRIu64
         "] voters=(",
         t->id, state_name(st.state), st.hs.term, st.hs.vote, st.lead,
         st.hs.commit, st.applied, st.first_index, st.last_index);
    for (i = 0; i < st.conf.n_voters; i++) {
        outf(e, i ? " %" PRIu64 : "%" PRIu64, st.conf.voters[i]);
    }
    outf(e, ") learners=(");
    for (i = 0; i < st.conf.n_learners; i++) {
        outf(e, i ? " %" PRIu64 : "%" PRIu64, st.conf.learners[i]);
    }
    outf(e, ")\n");
}

static void env_free(struct env *e)
{
    int i;
    for (i = 0; i < e->nq; i++) {
        msg_free(&e->q[i]);
    }
    e->nq = 0;
    for (i = 0; i < e->n; i++) {
        raft_free(e->nodes[i].r);
        raft_memstore_free(e->nodes[i].ms);
    }
    e->n = 0;
}

/* Runs one command line; returns false on a malformed one. */
static bool run(struct env *e, char *line)
{
    char cmd[32] = "", arg[32] = "";
    uint64_t a = 0, b = 0;
    struct tnode *t;
    int k = sscanf(line, "%31s %" SCNu64 " %31s %" SCNu64, cmd, &a, arg, &b);
    if (k >= 3 && strcmp(cmd, "conf") != 0) {
        b = strtoull(arg, NULL, 10);
    }
    if (strcmp(cmd, "cluster") == 0) {
        uint64_t ids[MAXN];
        int i, voters;
        env_free(e);
        memset(e->cut, 0, sizeof(e->cut));
        e->n = (int)a;
        for (i = 0; i < e->n; i++) {
            ids[i] = (uint64_t)i + 1;
        }
        voters = k >= 3 ? (int)b : e->n; /* the rest are spares */
        for (i = 0; i < e->n; i++) {
            t = &e->nodes[i];
            memset(t, 0, sizeof(*t));
            t->id = (uint64_t)i + 1;
            t->ms = raft_memstore_new(NULL);
            raft_memstore_storage(t->ms, &t->st);
            if (i < voters) {
                raft_memstore_bootstrap(t->ms, ids, (size_t)voters);
            }
            start(e, t);
        }
        stabilize(e);
        return true;
    }
    if (strcmp(cmd, "stabilize") == 0) {
        stabilize(e);
        return true;
    }
    if (strcmp(cmd, "heal") == 0) {
        memset(e->cut, 0, sizeof(e->cut));
        return true;
    }
    if (strcmp(cmd, "tick-all") == 0) {
        int i;
        while (a-- > 0) {
            for (i = 0; i < e->n; i++) {
                if (e->nodes[i].r != NULL) {
                    raft_tick(e->nodes[i].r);
                    note_role(e, &e->nodes[i]);
                }
            }
            stabilize(e);
        }
        return true;
    }
    if (strcmp(cmd, "cut") == 0) {
        e->cut[a][b] = true;
        return true;
    }
    t = node(e, a);
    if (t == NULL) {
        return false;
    }
    if (strcmp(cmd, "crash") == 0) {
        raft_free(t->r);
        t->r = NULL;
        return true;
    }
    if (strcmp(cmd, "restart") == 0) {
        start(e, t);
        return true;
    }
    if (t->r == NULL) {
        return false;
    }
    if (strcmp(cmd, "campaign") == 0) {
        raft_campaign(t->r);
        note_role(e, t);
    } else if (strcmp(cmd, "propose") == 0) {
        struct raft_buf *d = raft_buf_new(NULL, arg, strlen(arg));
        int rv = raft_propose(t->r, d);
        raft_buf_unref(d);
        if (rv != 0) {
            outf(e, "error: %s\n", raft_strerror(rv));
        }
    } else if (strcmp(cmd, "read") == 0) {
        struct raft_buf *d = raft_buf_new(NULL, arg, strlen(arg));
        int rv = raft_read_index(t->r, d);
        raft_buf_unref(d);
        if (rv != 0) {
            outf(e, "error: %s\n", raft_strerror(rv));
        }
    } else if (strcmp(cmd, "tick") == 0) {
        while (b-- > 0) {
            raft_tick(t->r);
            note_role(e, t);
        }
    } else if (strcmp(cmd, "transfer") == 0) {
        raft_transfer_leader(t->r, b);
    } else if (strcmp(cmd, "isolate") == 0) {
        int i;
        for (i = 1; i <= e->n; i++) {
            e->cut[a][i] = e->cut[i][a] = true;
        }
    } else if (strcmp(cmd, "conf") == 0) {
        struct raft_conf_change cc = {0, 0, b, NULL};
        int rv;
        cc.type = strcmp(arg, "add") == 0      ? RAFT_CONF_ADD_NODE
                  : strcmp(arg, "remove") == 0 ? RAFT_CONF_REMOVE_NODE
                                               : RAFT_CONF_ADD_LEARNER_NODE;
        rv = raft_propose_conf_change(t->r, &cc);
        if (rv != 0) {
            outf(e, "error: %s\n", raft_strerror(rv));
        }
    } else if (strcmp(cmd, "compact") == 0) {
        raft_memstore_create_snapshot(t->ms, t->applied, &t->cs, NULL);
        raft_memstore_compact(t->ms, t->applied);
        outf(e, "%" PRIu64 " compacted to %" PRIu64 "\n", t->id, t->applied);
    } else if (strcmp(cmd, "status") == 0) {
        status_line(e, t);
    } else {
        return false;
    }
    process(e, t);
    return true;
}

/* Runs a script; returns the number of mismatches, rewriting if asked. */
static int run_file(const char *path, bool rewrite)
{
    FILE *f = fopen(path, "r");
    char *text, *p, *next;
    long size;
    int bad = 0;
    struct env e;
    FILE *w = NULL;
    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)size + 1);
    if (fread(text, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(text);
        return 1;
    }
    fclose(f);
    memset(&e, 0, sizeof(e));
    if (rewrite) {
        w = fopen(path, "w");
    }
    /* blocks: comment/blank lines, a command line, "----", expected
     * lines up to a blank line */
    for (p = text; *p != '\0'; p = next) {
        char *eol = strchr(p, '\n'), *exp, *end;
        char cmdline[256];
        size_t cl;
        if (eol == NULL) {
            eol = p + strlen(p);
        }
        next = *eol ? eol + 1 : eol;
        if (p == eol || *p == '#') {
            if (w != NULL) {
                fprintf(w, "%.*s\n", (int)(eol - p), p);
            }
            continue;
        }
        cl = (size_t)(eol - p) < sizeof(cmdline) - 1 ? (size_t)(eol - p)
                                                     : sizeof(cmdline) - 1;
        memcpy(cmdline, p, cl);
        cmdline[cl] = '\0';
        if (strncmp(next, "----\n", 5) != 0) {
            fprintf(stderr, "%s: expected ---- after '%s'\n", path, cmdline);
            bad++;
            break;
        }
        exp = next + 5;
        end = strstr(exp, "\n\n");
        end = end != NULL ? end + 1 : exp + strlen(exp);
        next = *end == '\n' ? end + 1 : end;
        e.len = 0;
        if (e.out == NULL) {
            e.cap = 4096;
            e.out = malloc(e.cap);
        }
        e.out[0] = '\0';
        if (!run(&e, cmdline)) {
            outf(&e, "bad command\n");
        }
        if (e.len == 0) {
            outf(&e, "ok\n");
        }
        if ((size_t)(end - exp) != e.len || memcmp(exp, e.out, e.len) != 0) {
            if (!rewrite) {
                fprintf(stderr, "%s: '%s'\n--- expected\n%.*s--- got\n%.*s\n",
                        path, cmdline, (int)(end - exp), exp, (int)e.len,
                        e.out);
            }
            bad++;
        }
        if (w != NULL) {
            fprintf(w, "%s\n----\n%.*s\n", cmdline, (int)e.len, e.out);
        }
    }
    if (w != NULL) {
        fclose(w);
    }
    env_free(&e);
    free(e.out);
    free(text);
    return rewrite ? 0 : bad;
}

int main(int argc, char **argv)
{
    static const char *const files[] = {"election.txt",   "replication.txt",
                                        "transfer.txt",   "membership.txt",
                                        "read_index.txt", "snapshot.txt"};
    const char *rw = getenv("KEEL_REWRITE");
    bool rewrite = rw != NULL && *rw != '\0' && strcmp(rw, "0") != 0;
    int bad = 0;
    size_t i;
    char path[512];
    (void)argc;
    (void)argv;
    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        int b;
        snprintf(path, sizeof(path), "%s/%s", KEEL_RAFT_TESTDATA, files[i]);
        b = run_file(path, rewrite);
        printf("%s %s\n", b == 0 ? "ok  " : "FAIL", files[i]);
        bad += b;
    }
    return bad == 0 ? 0 : 1;
}
