#!/usr/bin/env bash
# GET /metrics on a real keel, checked against the real etcd 3.4:
#   - the exposition parses under a strict grammar (metrics_check.py);
#   - every family keel exports exists in etcd's /metrics with the same TYPE,
#     HELP, label names and histogram buckets; the etcd families keel does
#     not export yet are listed, and a core set is required; so are those
#     etcd's shipped Grafana dashboard and alert rules use;
#   - the same etcdctl script (puts, gets, a delete, a put --prev-kv, write
#     and read-only txns) moves keel's mvcc counters exactly as etcd's, and
#     leaves the same current revision and key count;
#   - values move as expected: put_total by the number of puts, proposals
#     committed and applied, has_leader/is_leader 1, the WAL fsync and
#     backend commit histograms count, gRPC counters per method;
#   - --listen-metrics-urls serves /metrics and /health (and 404 elsewhere,
#     as etcd's metrics listener);
#   - keel exits 0 after SIGTERM.
#   usage: test_metrics.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CHECK="python3 $(dirname "$0")/metrics_check.py"

k_mport=$(kt_free_port)
e_mport=$(kt_free_port)
kt_start k "$KEEL_BIN" --listen-metrics-urls "http://127.0.0.1:$k_mport"
kt_start e "$ETCD_BIN" --listen-metrics-urls "http://127.0.0.1:$e_mport"

scrape() { # NAME FILE
    local c="${1}_CLIENT"
    curl -fsS -m 5 "http://${!c}/metrics" >"$2"
}
val() { $CHECK value "$1" "$2"; }
ctl() { # NAME args...
    local c="${1}_CLIENT"
    shift
    etcdctl --endpoints="${!c}" --dial-timeout=2s --command-timeout=5s "$@"
}

# The same client script against both servers.
NPUTS=7
script() {
    local who=$1 i
    for ((i = 0; i < 6; i++)); do ctl "$who" put "key$i" "value$i" >/dev/null; done
    ctl "$who" put --prev-kv key0 again >/dev/null # put 7: a range too
    for ((i = 0; i < 3; i++)); do ctl "$who" get "key$i" >/dev/null; done
    ctl "$who" get --prefix key >/dev/null
    ctl "$who" del key5 >/dev/null
    # a write txn whose compare holds: one put in the success branch
    printf 'value("key1") = "value1"\n\nput key1 txn\n\nget key1\n\n' |
        ctl "$who" txn >/dev/null
    # a read-only txn served without raft
    printf 'value("key2") = "nope"\n\nget key2\n\nget key3\n\n' |
        ctl "$who" txn >/dev/null
}
NPUTS=$((NPUTS + 1)) # the txn's put

for who in k e; do
    scrape "$who" "$KT_TMP/$who.before"
    $CHECK validate "$KT_TMP/$who.before"
done
script k
script e
for who in k e; do
    scrape "$who" "$KT_TMP/$who.after"
    $CHECK validate "$KT_TMP/$who.after"
done

# ---- names: keel's are etcd's -----------------------------------------------
$CHECK compare "$KT_TMP/k.after" "$KT_TMP/e.after"

# etcd's shipped Grafana dashboard and alert rules find their metrics
docs=()
for f in /usr/share/doc/etcd-server/op-guide/grafana.json.gz \
    /usr/share/doc/etcd-server/op-guide/etcd3_alert.rules.yml.gz; do
    [ -f "$f" ] && docs+=("$f")
done
if [ ${#docs[@]} -gt 0 ]; then
    $CHECK dashboards "$KT_TMP/k.after" "$KT_TMP/e.after" "${docs[@]}"
fi

# ---- values ---------------------------------------------------------------------
delta() { # WHO SERIES
    echo $(($(val "$KT_TMP/$1.after" "$2") - $(val "$KT_TMP/$1.before" "$2")))
}
kt_check "put_total grows by the number of puts" "$NPUTS" \
    "$(delta k etcd_debugging_mvcc_put_total)"
for m in put delete txn range; do
    for prefix in etcd_debugging_mvcc etcd_mvcc; do
        kt_check "${prefix}_${m}_total moves as etcd's" \
            "$(delta e ${prefix}_${m}_total)" "$(delta k ${prefix}_${m}_total)"
    done
done
for m in etcd_debugging_mvcc_current_revision etcd_debugging_mvcc_keys_total \
    etcd_debugging_mvcc_compact_revision etcd_server_has_leader \
    etcd_server_is_leader etcd_server_is_learner etcd_server_proposals_pending \
    etcd_server_proposals_failed_total etcd_server_quota_backend_bytes \
    'etcd_server_version{server_version="3.4.23"}' \
    'etcd_cluster_version{cluster_version="3.4"}'; do
    kt_check "$m as etcd's" "$(val "$KT_TMP/e.after" "$m")" \
        "$(val "$KT_TMP/k.after" "$m")"
done
kt_check "has_leader" 1 "$(val "$KT_TMP/k.after" etcd_server_has_leader)"
kt_check "one leader change on a single member" 1 \
    "$(val "$KT_TMP/k.after" etcd_server_leader_changes_seen_total)"
committed=$(delta k etcd_server_proposals_committed_total)
applied=$(delta k etcd_server_proposals_applied_total)
if [ "$committed" -lt 9 ] || [ "$applied" -ne "$committed" ]; then
    echo "FAIL: proposals committed +$committed applied +$applied (want >= 9, equal)" >&2
    exit 1
fi
echo "ok: proposals committed and applied +$committed"
for h in etcd_disk_wal_fsync_duration_seconds etcd_disk_backend_commit_duration_seconds; do
    n=$(delta k "${h}_count")
    if [ "$n" -lt 9 ]; then
        echo "FAIL: $h counted $n observations for 9 writes" >&2
        exit 1
    fi
    echo "ok: $h +$n"
done
id=$(ctl k endpoint status -w json | python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
kt_check "etcd_server_id carries the member id" 1 \
    "$(val "$KT_TMP/k.after" "etcd_server_id{server_id=\"$id\"}")"
ok_put='grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}'
started_range='grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}'
for s in "$ok_put" "$started_range"; do
    kt_check "$s as etcd's" "$(delta e "$s")" "$(delta k "$s")"
done
for s in etcd_network_client_grpc_received_bytes_total \
    etcd_network_client_grpc_sent_bytes_total process_open_fds \
    process_resident_memory_bytes; do
    v=$(val "$KT_TMP/k.after" "$s")
    if [ "$v" -le 0 ]; then
        echo "FAIL: $s is $v" >&2
        exit 1
    fi
done
echo "ok: byte counters and process metrics are positive"
db_total=$(val "$KT_TMP/k.after" etcd_mvcc_db_total_size_in_bytes)
db_in_use=$(val "$KT_TMP/k.after" etcd_mvcc_db_total_size_in_use_in_bytes)
if [ "$db_in_use" -le 0 ] || [ "$db_in_use" -gt "$db_total" ]; then
    echo "FAIL: db size in use $db_in_use, total $db_total" >&2
    exit 1
fi
kt_check "the debugging db size is the total" "$db_total" \
    "$(val "$KT_TMP/k.after" etcd_debugging_mvcc_db_total_size_in_bytes)"
echo "ok: db size $db_total, in use $db_in_use"

# ---- --listen-metrics-urls ------------------------------------------------------
curl -fsS -m 5 "http://127.0.0.1:$k_mport/metrics" >"$KT_TMP/k.mport"
$CHECK validate "$KT_TMP/k.mport"
kt_check "/health on the metrics listener" '{"health":"true"}' \
    "$(curl -fsS -m 5 "http://127.0.0.1:$k_mport/health")"
curl -fsS -m 5 "http://127.0.0.1:$k_mport/metrics" >"$KT_TMP/k.mport2"
kt_check "health checks are counted" \
    $(($(val "$KT_TMP/k.mport" etcd_server_health_success) + 1)) \
    "$(val "$KT_TMP/k.mport2" etcd_server_health_success)"
kt_check "scrapes are counted" \
    $(($(val "$KT_TMP/k.mport" 'promhttp_metric_handler_requests_total{code="200"}') + 1)) \
    "$(val "$KT_TMP/k.mport2" 'promhttp_metric_handler_requests_total{code="200"}')"
for who in k e; do
    p="${who}_mport"
    kt_check "$who: no /version on the metrics listener" 404 \
        "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:${!p}/version")"
done

# ---- clean exit -----------------------------------------------------------------
kill -TERM "$k_PID"
rc=0
wait "$k_PID" || rc=$?
kt_check "keel exits 0 after SIGTERM" 0 "$rc"
