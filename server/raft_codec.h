/*
 * server/raft_codec: raft/'s plain struct raft_message <-> the packed
 * raftpb.Message of the peer wire (proto/raftpb/raft.proto).
 *
 * raft/ knows nothing of protobuf (it depends on libc only); the node
 * packs every outbound message here before handing it to the transport,
 * and unpacks inbound ones before raft_step.
 */
#ifndef KEEL_RAFT_CODEC_H
#define KEEL_RAFT_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "raft.h"

/* Pack m into a new malloc'd buffer (*out, the caller's: free()), with
 * cluster_id as the message's cluster_id (m->cluster_id is ignored). A
 * MsgSnap's snapshot data is not packed (the image travels as a file).
 * KEEL_ENOMEM. */
int raft_codec_pack(const struct raft_message *m, uint64_t cluster_id,
                    uint8_t **out, size_t *len);

/* Unpack buf into *m. Entries, their payloads, the context and the
 * snapshot are allocated (raft bufs with the default raft heap); release
 * them with raft_codec_message_free. KEEL_EINVAL for bytes that are not a
 * raftpb.Message, a message type out of range, an entry type out of range,
 * or a snapshot with more than RAFT_MAX_MEMBERS members; KEEL_ENOMEM. On
 * error *m holds nothing to free. */
int raft_codec_unpack(const uint8_t *buf, size_t len, struct raft_message *m);
void raft_codec_message_free(struct raft_message *m);

#endif /* KEEL_RAFT_CODEC_H */
