/*
 * server/http_endpoints.c: the plain HTTP endpoints of the client port,
 * shaped as etcd 3.4 serves them (etcdserver/api/etcdhttp):
 *   GET /version -> {"etcdserver":"3.4.23","etcdcluster":"3.4.0"}
 *   GET /health  -> {"health":"true"} (200) once there is a leader, no
 *                   alarm is active and a linearizable read barrier
 *                   completes within 1 s, else {"health":"false"} (503).
 *   GET /metrics -> Prometheus text (server/metrics.c)
 * The --listen-metrics-urls listeners serve /metrics and /health only, as
 * etcd's (etcdhttp.HandleMetricsHealth).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "keel_err.h"
#include "metrics.h"
#include "node.h"
#include "router.h"
#include "server.h"

static void version_handler(struct router_req *req, void *data)
{
    (void)data;
    char body[160];
    int n = snprintf(body, sizeof body,
                     "{\"etcdserver\":\"%s\",\"etcdcluster\":\"%s.0\"}",
                     KEEL_ETCD_VERSION, KEEL_ETCD_CLUSTER_VERSION);
    router_respond(req, 200, "application/json", body, (size_t)n);
}

struct health_check
{
    struct router_req *req;
    uv_timer_t timer;
    int answered;
    int handles; /* the timer; freed when closed and the read answered */
    int read_pending;
};

static void health_free_maybe(struct health_check *h)
{
    if (h->handles == 0 && !h->read_pending) {
        free(h);
    }
}

static void health_answer(struct health_check *h, int ok)
{
    if (h->answered) {
        return;
    }
    h->answered = 1;
    if (ok) {
        metrics_core.health_success++;
    } else {
        metrics_core.health_failures++;
    }
    static const char yes[] = "{\"health\":\"true\"}";
    static const char no[] = "{\"health\":\"false\"}";
    if (ok) {
        router_respond(h->req, 200, "application/json", yes, sizeof yes - 1);
    } else {
        router_respond(h->req, 503, "application/json", no, sizeof no - 1);
    }
}

static void health_timer_closed(uv_handle_t *t)
{
    struct health_check *h = t->data;
    h->handles = 0;
    health_free_maybe(h);
}

static void health_timeout(uv_timer_t *t)
{
    struct health_check *h = t->data;
    health_answer(h, 0);
    uv_close((uv_handle_t *)&h->timer, health_timer_closed);
}

static void health_read_done(void *arg, int rv)
{
    struct health_check *h = arg;
    h->read_pending = 0;
    if (!h->answered) {
        health_answer(h, rv == 0);
        uv_timer_stop(&h->timer);
        uv_close((uv_handle_t *)&h->timer, health_timer_closed);
        return;
    }
    health_free_maybe(h);
}

static void health_handler(struct router_req *req, void *data)
{
    struct keel_server *s = data;
    struct node_status st;
    node_status(server_node(s), &st);
    /* etcd 3.4 (etcdhttp checkHealth): any active alarm, or no leader,
     * makes the member unhealthy. */
    size_t alarms = node_alarms(server_node(s), NULL, 0);
    struct health_check *h = calloc(1, sizeof *h);
    if (h == NULL || st.leader == 0 || alarms > 0) {
        free(h);
        metrics_core.health_failures++;
        static const char no[] = "{\"health\":\"false\"}";
        router_respond(req, 503, "application/json", no, sizeof no - 1);
        return;
    }
    h->req = req;
    uv_timer_init(server_loop(s), &h->timer);
    h->timer.data = h;
    h->handles = 1;
    h->read_pending = 1;
    if (node_read_index(server_node(s), health_read_done, h) != 0) {
        h->read_pending = 0;
        health_answer(h, 0);
        uv_close((uv_handle_t *)&h->timer, health_timer_closed);
        return;
    }
    uv_timer_start(&h->timer, health_timeout, 1000, 0);
}

int http_endpoints_register(struct keel_server *s, struct router *r)
{
    int rv = router_add(r, "GET", "/version", version_handler, s);
    if (rv == 0) {
        rv = router_add(r, "GET", "/health", health_handler, s);
    }
    if (rv == 0) {
        rv = router_add(r, "GET", "/metrics", metrics_http_handler,
                        server_metrics(s));
    }
    return rv;
}

int http_endpoints_register_metrics(struct keel_server *s, struct router *r)
{
    int rv = router_add(r, "GET", "/health", health_handler, s);
    if (rv == 0) {
        rv = router_add(r, "GET", "/metrics", metrics_http_handler,
                        server_metrics(s));
    }
    return rv;
}
