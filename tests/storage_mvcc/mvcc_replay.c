/*
 * mvcc_replay: apply etcd JSON-gateway requests to a keel MVCC store and
 * print the responses as etcd's gateway would, for the differential test
 * against a real etcd 3.4 (diff_etcd.py).
 *
 *   mvcc_replay DB_PATH  < requests
 *
 * Each input line is "<op> <json body>" with op one of range, put,
 * deleterange, txn, compaction, leasegrant, leaserevoke, events (a
 * WatchCreateRequest: the events mvcc_events_since() gives for it, printed
 * as a WatchResponse with events only); each write is one
 * batch (its own raft index). Each output line is the response JSON, or
 * {"error":"<etcd's message>"} when the request fails. Requests get the
 * checks etcd's v3rpc layer makes before apply (empty key, duplicate keys
 * in a txn) so that both sides see the same errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_pb.h"
#include "keel_arena.h"
#include "keel_err.h"
#include "mvcc.h"

static uint64_t ci;

static void print_msg(const ProtobufCMessage *m)
{
    size_t len;
    char *j = json_pb_encode(m, &len);
    if (j == NULL) {
        fprintf(stderr, "mvcc_replay: out of memory\n");
        exit(1);
    }
    printf("%s\n", j);
    free(j);
}

static void print_err(int rc, struct mvcc_store *s)
{
    struct json_pb_buf b = {0};
    const char *msg = keel_strerror(rc);
    json_pb_append_raw(&b, "{\"error\":", 9);
    json_pb_append_string(&b, msg, strlen(msg));
    json_pb_append_raw(&b, "}", 1);
    printf("%s\n", b.data);
    if (getenv("MVCC_REPLAY_DEBUG") != NULL) {
        fprintf(stderr, "mvcc_replay: %s\n", mvcc_errmsg(s));
    }
    free(b.data);
}

int main(int argc, char **argv)
{
    struct mvcc_store *s = NULL;
    struct keel_arena a;
    char err[256];
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    if (argc != 2) {
        fprintf(stderr, "usage: mvcc_replay DB_PATH < requests\n");
        return 2;
    }
    if (mvcc_open(argv[1], NULL, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "mvcc_replay: %s\n", err);
        return 1;
    }
    keel_arena_init(&a, 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((n = getline(&line, &cap, stdin)) > 0) {
        char *sp = strchr(line, ' ');
        const char *body;
        const ProtobufCMessageDescriptor *d;
        ProtobufCMessage *req = NULL;
        ProtobufCMessage *resp = NULL;
        struct mvcc_write *w = NULL;
        int rc = 0;

        if (sp == NULL) {
            fprintf(stderr, "mvcc_replay: bad line\n");
            return 1;
        }
        *sp = '\0';
        body = sp + 1;
        if (!strcmp(line, "range")) {
            d = &etcdserverpb__range_request__descriptor;
        } else if (!strcmp(line, "put")) {
            d = &etcdserverpb__put_request__descriptor;
        } else if (!strcmp(line, "deleterange")) {
            d = &etcdserverpb__delete_range_request__descriptor;
        } else if (!strcmp(line, "txn")) {
            d = &etcdserverpb__txn_request__descriptor;
        } else if (!strcmp(line, "compaction")) {
            d = &etcdserverpb__compaction_request__descriptor;
        } else if (!strcmp(line, "leasegrant")) {
            d = &etcdserverpb__lease_grant_request__descriptor;
        } else if (!strcmp(line, "leaserevoke")) {
            d = &etcdserverpb__lease_revoke_request__descriptor;
        } else if (!strcmp(line, "events")) {
            d = &etcdserverpb__watch_create_request__descriptor;
        } else {
            fprintf(stderr, "mvcc_replay: unknown op %s\n", line);
            return 1;
        }
        if (json_pb_decode(d, body, strlen(body), &a, &req, err, sizeof(err)) !=
            0) {
            fprintf(stderr, "mvcc_replay: %s: %s\n", line, err);
            return 1;
        }
        if (d == &etcdserverpb__range_request__descriptor) {
            rc = mvcc_range(s, (Etcdserverpb__RangeRequest *)req, &a,
                            (Etcdserverpb__RangeResponse **)&resp);
            goto done;
        }
        if (d == &etcdserverpb__watch_create_request__descriptor) {
            Etcdserverpb__WatchCreateRequest *wc = (void *)req;
            Etcdserverpb__WatchResponse *wr = keel_arena_alloc(&a, sizeof(*wr));
            int64_t next;
            etcdserverpb__watch_response__init(wr);
            rc = mvcc_events_since(s, wc->start_revision, &wc->key,
                                   &wc->range_end, 0, wc->prev_kv, &a,
                                   &wr->events, &wr->n_events, &next);
            resp = &wr->base;
            goto done;
        }
        if (d == &etcdserverpb__txn_request__descriptor &&
            (rc = mvcc_txn_check((Etcdserverpb__TxnRequest *)req)) != 0) {
            goto done;
        }
        if ((rc = mvcc_write_begin(s, &w)) != 0) {
            goto done;
        }
        if (d == &etcdserverpb__put_request__descriptor) {
            rc = mvcc_put(w, (Etcdserverpb__PutRequest *)req, &a,
                          (Etcdserverpb__PutResponse **)&resp);
        } else if (d == &etcdserverpb__delete_range_request__descriptor) {
            rc = mvcc_delete_range(w, (Etcdserverpb__DeleteRangeRequest *)req,
                                   &a,
                                   (Etcdserverpb__DeleteRangeResponse **)&resp);
        } else if (d == &etcdserverpb__txn_request__descriptor) {
            rc = mvcc_txn(w, (Etcdserverpb__TxnRequest *)req, &a,
                          (Etcdserverpb__TxnResponse **)&resp);
        } else if (d == &etcdserverpb__compaction_request__descriptor) {
            Etcdserverpb__CompactionResponse *cr;
            rc = mvcc_compact(w, ((Etcdserverpb__CompactionRequest *)req)->revision);
            cr = keel_arena_alloc(&a, sizeof(*cr));
            etcdserverpb__compaction_response__init(cr);
            cr->header = keel_arena_alloc(&a, sizeof(*cr->header));
            etcdserverpb__response_header__init(cr->header);
            cr->header->revision = mvcc_revision(s);
            resp = &cr->base;
        } else if (d == &etcdserverpb__lease_grant_request__descriptor) {
            Etcdserverpb__LeaseGrantRequest *lg = (void *)req;
            rc = lease_store_grant(w, lg->id, lg->ttl);
            resp = NULL;
        } else {
            Etcdserverpb__LeaseRevokeRequest *lr = (void *)req;
            rc = lease_store_revoke(w, lr->id, &a);
            resp = NULL;
        }
        if (rc == 0) {
            rc = mvcc_write_commit(w, ++ci, 1);
        } else {
            mvcc_write_abort(w);
        }
        if (rc == 0 && d == &etcdserverpb__compaction_request__descriptor) {
            rc = mvcc_compact_run(s);
        }
    done:
        if (rc != 0) {
            print_err(rc, s);
        } else if (resp != NULL) {
            print_msg(resp);
        } else {
            printf("{}\n");
        }
        keel_arena_reset(&a);
    }
    free(line);
    keel_arena_free(&a);
    mvcc_close(s);
    return 0;
}
