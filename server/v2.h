/*
 * server/v2: etcd 3.4's v2 HTTP API (/v2/keys, /v2/members, /v2/machines,
 * /v2/stats/...) and the leader's SYNC ticker that expires v2 TTL keys. See
 * v2.c. Everything runs on the loop thread.
 */
#ifndef KEEL_V2_H
#define KEEL_V2_H

#include <stdbool.h>
#include <stdint.h>

#include "keelpb/request.pb-c.h"

struct keel_server;
struct router;
struct v2;

/* Start the SYNC ticker and, when enable_http (--enable-v2), register the
 * /v2 routes on r (without them /v2/... stays 404 as in etcd). *out is the
 * server's until v2_stop. */
int v2_start(struct keel_server *s, struct router *r, bool enable_http,
             struct v2 **out);

/* End every watcher, stop the ticker; v is freed once its timer closed. */
void v2_stop(struct v2 *v);

/* From the node's on_applied hook on every member: records v2 events in
 * the history and wakes the watchers. */
void v2_on_applied(struct v2 *v, const Keelpb__Request *req,
                   const ProtobufCMessage *resp);

/* After a snapshot install: the history starts over. */
void v2_on_snapshot(struct v2 *v);

/* When this member started (for /v2/stats/self). */
int64_t v2_start_ns(const struct v2 *v);

#endif /* KEEL_V2_H */
