/*
 * server/raft_codec.c: see raft_codec.h. The field numbers are those of
 * proto/raftpb/raft.proto; protobuf-c does the wire work.
 */
#include "raft_codec.h"

#include <stdlib.h>
#include <string.h>

#include "keel_err.h"
#include "raftpb/raft.pb-c.h"

static void conf_state_to_pb(const struct raft_conf_state *cs,
                             Raftpb__ConfState *pb, uint64_t *voters,
                             uint64_t *learners)
{
    memcpy(voters, cs->voters, cs->n_voters * sizeof *voters);
    memcpy(learners, cs->learners, cs->n_learners * sizeof *learners);
    pb->voters = voters;
    pb->n_voters = cs->n_voters;
    pb->learners = learners;
    pb->n_learners = cs->n_learners;
}

int raft_codec_pack(const struct raft_message *m, uint64_t cluster_id,
                    uint8_t **out, size_t *len)
{
    Raftpb__Message pb = RAFTPB__MESSAGE__INIT;
    Raftpb__Entry *ents = NULL;
    Raftpb__Entry **eptr = NULL;
    Raftpb__Snapshot snap = RAFTPB__SNAPSHOT__INIT;
    Raftpb__SnapshotMetadata meta = RAFTPB__SNAPSHOT_METADATA__INIT;
    Raftpb__ConfState cs = RAFTPB__CONF_STATE__INIT;
    uint64_t voters[RAFT_MAX_MEMBERS], learners[RAFT_MAX_MEMBERS];
    int rv = 0;

    pb.type = (Raftpb__MessageType)m->type;
    pb.to = m->to;
    pb.from = m->from;
    pb.term = m->term;
    pb.log_term = m->log_term;
    pb.index = m->index;
    pb.commit = m->commit;
    pb.reject = m->reject;
    pb.reject_hint = m->reject_hint;
    pb.cluster_id = cluster_id;
    if (m->context != NULL) {
        pb.context.data = m->context->data;
        pb.context.len = m->context->len;
    }
    if (m->n_entries > 0) {
        ents = calloc(m->n_entries, sizeof *ents);
        eptr = calloc(m->n_entries, sizeof *eptr);
        if (ents == NULL || eptr == NULL) {
            rv = KEEL_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            raftpb__entry__init(&ents[i]);
            ents[i].term = e->term;
            ents[i].index = e->index;
            ents[i].type = (Raftpb__EntryType)e->type;
            if (e->data != NULL) {
                ents[i].data.data = e->data->data;
                ents[i].data.len = e->data->len;
            }
            eptr[i] = &ents[i];
        }
        pb.entries = eptr;
        pb.n_entries = m->n_entries;
    }
    if (m->snapshot != NULL) {
        meta.index = m->snapshot->meta.index;
        meta.term = m->snapshot->meta.term;
        conf_state_to_pb(&m->snapshot->meta.conf_state, &cs, voters,
                         learners);
        meta.conf_state = &cs;
        snap.metadata = &meta;
        pb.snapshot = &snap;
    }
    *len = raftpb__message__get_packed_size(&pb);
    *out = malloc(*len ? *len : 1);
    if (*out == NULL) {
        rv = KEEL_ENOMEM;
        goto out;
    }
    raftpb__message__pack(&pb, *out);
out:
    free(ents);
    free(eptr);
    return rv;
}

static struct raft_buf *buf_of(const ProtobufCBinaryData *b, int *rv)
{
    if (b->len == 0) {
        return NULL;
    }
    struct raft_buf *r = raft_buf_new(raft_heap_default(), b->data, b->len);
    if (r == NULL) {
        *rv = KEEL_ENOMEM;
    }
    return r;
}

int raft_codec_unpack(const uint8_t *buf, size_t len, struct raft_message *m)
{
    memset(m, 0, sizeof *m);
    Raftpb__Message *pb = raftpb__message__unpack(NULL, len, buf);
    if (pb == NULL) {
        return KEEL_EINVAL;
    }
    int rv = 0;
    if ((int)pb->type < 0 || (int)pb->type >= RAFT_MSG_TYPE_COUNT) {
        rv = KEEL_EINVAL;
        goto out;
    }
    m->type = (int)pb->type;
    m->to = pb->to;
    m->from = pb->from;
    m->term = pb->term;
    m->log_term = pb->log_term;
    m->index = pb->index;
    m->commit = pb->commit;
    m->reject = pb->reject;
    m->reject_hint = pb->reject_hint;
    m->cluster_id = pb->cluster_id;
    m->context = buf_of(&pb->context, &rv);
    if (rv != 0) {
        goto out;
    }
    if (pb->n_entries > 0) {
        m->entries = calloc(pb->n_entries, sizeof *m->entries);
        if (m->entries == NULL) {
            rv = KEEL_ENOMEM;
            goto out;
        }
        m->n_entries = pb->n_entries;
        for (size_t i = 0; i < pb->n_entries && rv == 0; i++) {
            const Raftpb__Entry *e = pb->entries[i];
            if ((int)e->type != RAFT_ENTRY_NORMAL &&
                (int)e->type != RAFT_ENTRY_CONF_CHANGE) {
                rv = KEEL_EINVAL;
                break;
            }
            m->entries[i].term = e->term;
            m->entries[i].index = e->index;
            m->entries[i].type = (int)e->type;
            m->entries[i].data = buf_of(&e->data, &rv);
        }
    }
    if (rv == 0 && pb->snapshot != NULL) {
        const Raftpb__SnapshotMetadata *md = pb->snapshot->metadata;
        const Raftpb__ConfState *cs = md != NULL ? md->conf_state : NULL;
        if (cs != NULL && (cs->n_voters > RAFT_MAX_MEMBERS ||
                           cs->n_learners > RAFT_MAX_MEMBERS)) {
            rv = KEEL_EINVAL;
            goto out;
        }
        m->snapshot = calloc(1, sizeof *m->snapshot);
        if (m->snapshot == NULL) {
            rv = KEEL_ENOMEM;
            goto out;
        }
        if (md != NULL) {
            m->snapshot->meta.index = md->index;
            m->snapshot->meta.term = md->term;
        }
        if (cs != NULL) {
            struct raft_conf_state *c = &m->snapshot->meta.conf_state;
            for (size_t i = 0; i < cs->n_voters; i++) {
                c->voters[i] = cs->voters[i];
            }
            c->n_voters = (uint32_t)cs->n_voters;
            for (size_t i = 0; i < cs->n_learners; i++) {
                c->learners[i] = cs->learners[i];
            }
            c->n_learners = (uint32_t)cs->n_learners;
        }
    }
out:
    raftpb__message__free_unpacked(pb, NULL);
    if (rv != 0) {
        raft_codec_message_free(m);
    }
    return rv;
}

void raft_codec_message_free(struct raft_message *m)
{
    for (size_t i = 0; i < m->n_entries; i++) {
        raft_buf_unref(m->entries[i].data);
    }
    free(m->entries);
    raft_buf_unref(m->context);
    if (m->snapshot != NULL) {
        raft_buf_unref(m->snapshot->data);
        free(m->snapshot);
    }
    memset(m, 0, sizeof *m);
}
