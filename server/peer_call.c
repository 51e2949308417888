/*
 * Requests between members over the peer port (peer_call / peer_respond):
 * the non-raft traffic etcd sends to other members (lease renewals
 * forwarded to the leader, hash checks).
 *
 * Caller side: the REQUEST frame goes on the remote's message stream (same
 * queue and bounds as raft messages), the call waits in r->calls for the
 * RESPONSE with its id on the same connection:
 *
 *   peer_call ──▶ queued/written ──(RESPONSE id)──────────▶ finish(status)
 *                    │  ──(timer: timeout_ms)──────────────▶ UV_ETIMEDOUT
 *                    │  ──(stream down: no answer can come)─▶ UV_ENOTCONN
 *                    └  ──(cancel, peer_remove, peer_close)─▶ KEEL_ECANCELED
 *   finish ──▶ uv_close(timer) ──▶ cb (so never inside a peer_* call)
 *
 * Suspended in: the stream's queue and socket, the timer, its close.
 *
 * Responder side: a REQUEST on an accepted stream becomes a struct
 * peer_responder handed to on_request; peer_respond writes the RESPONSE
 * on that connection if it still exists (the connection forgets its
 * responders when it is freed, so a late answer is dropped, never
 * written to freed memory).
 */
#include <stdlib.h>
#include <string.h>

#include "keel_err.h"
#include "peer_int.h"

struct peer_responder
{
    struct pconn *pc; /* NULL once the connection is gone */
    struct peer_responder *prev, *next;
    uint64_t id;
};

/* ---- caller ---------------------------------------------------------------
 */

static void on_call_closed(uv_handle_t *h)
{
    struct peer_call *req = h->data;
    struct peer *t = req->t;
    uint8_t *body = req->body;

    req->cb(req, req->status, body, req->len);
    free(body); /* req may be gone: the callback owns it */
    peer__release(t);
}

/* Unlink req from its remote (if still there) and deliver status. */
static void call_finish(struct peer_call *req,
                        int status,
                        const uint8_t *body,
                        size_t len)
{
    struct remote *r;

    if (req->finished) {
        return;
    }
    req->finished = true;
    r = peer__remote(req->t, req->to);
    if (r != NULL) {
        for (struct peer_call **pp = &r->calls; *pp != NULL;
             pp = &(*pp)->next) {
            if (*pp == req) {
                *pp = req->next;
                break;
            }
        }
    }
    req->status = status;
    req->body = NULL;
    req->len = 0;
    if (len > 0) {
        req->body = malloc(len);
        if (req->body != NULL) {
            memcpy(req->body, body, len);
            req->len = len;
        } else if (status == 0) {
            req->status = KEEL_ENOMEM;
        }
    }
    uv_close((uv_handle_t *)&req->timer, on_call_closed);
}

static void on_call_timeout(uv_timer_t *timer)
{
    call_finish(timer->data, UV_ETIMEDOUT, NULL, 0);
}

int peer_call(struct peer *t,
              struct peer_call *req,
              uint64_t to,
              uint32_t method,
              const uint8_t *body,
              size_t len,
              uint64_t timeout_ms,
              peer_call_cb cb)
{
    uint8_t hdr[PEER_WIRE_CALL_HEADER];
    struct remote *r;
    struct pframe *f;
    int rv;

    if (t->closing) {
        return KEEL_ESHUTDOWN;
    }
    r = peer__remote(t, to);
    if (r == NULL) {
        return KEEL_ENOTFOUND;
    }
    req->t = t;
    req->to = to;
    req->id = ++t->next_call_id;
    req->cb = cb;
    req->finished = false;
    req->body = NULL;
    req->len = 0;
    peer_wire_put_u64(hdr, req->id);
    peer_wire_put_u32(hdr + 8, method);
    f = peer__frame_new(PEER_WIRE_REQUEST, hdr, sizeof hdr, body, len);
    if (f == NULL) {
        return KEEL_ENOMEM;
    }
    uv_timer_init(t->o.loop, &req->timer);
    req->timer.data = req;
    peer__hold(t);
    uv_timer_start(&req->timer, on_call_timeout, timeout_ms, 0);
    /* Listed first: a write failing inside the push ends it properly. */
    req->next = r->calls;
    r->calls = req;
    rv = peer__stream_push(r, f);
    if (rv != 0) {
        call_finish(req, rv, NULL, 0);
    }
    return 0;
}

void peer_call_cancel(struct peer_call *req)
{
    call_finish(req, KEEL_ECANCELED, NULL, 0);
}

void peer__calls_fail(struct remote *r, int status)
{
    /* Unlinked here: r may already be out of the transport's list. */
    while (r->calls != NULL) {
        struct peer_call *c = r->calls;
        r->calls = c->next;
        c->next = NULL;
        call_finish(c, status, NULL, 0);
    }
}

int peer__call_response(struct remote *r, const uint8_t *p, size_t len)
{
    uint64_t id;
    uint32_t status;
    const uint8_t *body;
    size_t blen;

    if (peer_wire_call_decode(p, len, &id, &status, &body, &blen) != 0) {
        return KEEL_ECORRUPT;
    }
    for (struct peer_call *c = r->calls; c != NULL; c = c->next) {
        if (c->id == id) {
            /* A responder's status is 0 or negative; anything else is
             * not one of ours. */
            int st = (int)(int32_t)status;
            call_finish(c, st > 0 ? KEEL_ECORRUPT : st, body, blen);
            return 0;
        }
    }
    return 0; /* cancelled or timed out meanwhile: nobody waits */
}

/* ---- responder ------------------------------------------------------------
 */

int peer__request(struct pconn *pc, const uint8_t *p, size_t len)
{
    struct peer *t = pc->t;
    struct peer_responder *resp;
    uint64_t id;
    uint32_t method;
    const uint8_t *body;
    size_t blen;

    if (peer_wire_call_decode(p, len, &id, &method, &body, &blen) != 0) {
        return KEEL_ECORRUPT;
    }
    resp = calloc(1, sizeof *resp);
    if (resp == NULL) {
        return KEEL_ENOMEM;
    }
    resp->id = id;
    resp->pc = pc;
    resp->next = pc->responders;
    if (pc->responders != NULL) {
        pc->responders->prev = resp;
    }
    pc->responders = resp;
    if (t->o.on_request == NULL) {
        peer_respond(resp, KEEL_EUNIMPLEMENTED, NULL, 0);
        return 0;
    }
    t->o.on_request(t->o.arg, pc->from, method, body, blen, resp);
    return 0;
}

void peer__responders_detach(struct pconn *pc)
{
    for (struct peer_responder *r = pc->responders; r != NULL; r = r->next) {
        r->pc = NULL;
    }
    pc->responders = NULL;
}

void peer_respond(struct peer_responder *r,
                  int status,
                  const uint8_t *body,
                  size_t len)
{
    struct pconn *pc = r->pc;
    uint8_t hdr[PEER_WIRE_CALL_HEADER];

    if (pc != NULL) {
        if (r->prev != NULL) {
            r->prev->next = r->next;
        } else {
            pc->responders = r->next;
        }
        if (r->next != NULL) {
            r->next->prev = r->prev;
        }
        peer_wire_put_u64(hdr, r->id);
        peer_wire_put_u32(hdr + 8, (uint32_t)status);
        (void)peer__conn_sendv(pc, PEER_WIRE_RESPONSE, hdr, sizeof hdr, body,
                               len);
    }
    free(r);
}
