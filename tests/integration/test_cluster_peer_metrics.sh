#!/bin/bash
# The peer port's metrics on a real three-member cluster, against a
# three-member etcd 3.4 started with the same flags: every family a keel
# cluster member exports (the etcd_network_* ones among them) exists in
# etcd's /metrics with the same TYPE, HELP and label names
# (metrics_check.py compare), and the traffic counters
# of the leader name each other member (ids in hex, as etcd prints them)
# with bytes in both directions. Then a follower is stopped: the leader
# counts the disconnection and its active-peers gauge for it drops to 0, as
# etcd's does.
#   usage: test_cluster_peer_metrics.sh KEEL_BIN
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"
CHECK="python3 $(dirname "$0")/metrics_check.py"

# Member PREFIX I's /metrics into FILE.
scrape() {
    curl -fsS "http://$(kc_ep "$1" "$2")/metrics" >"$3"
}

member_id_hex() {
    etcdctl --endpoints="$(kc_ep "$1" "$2")" endpoint status -w json |
        python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])'
}

kc_init k 3
kc_init e 3
kc_start_all "$KEEL_BIN" k
kc_start_all "$ETCD_BIN" e
L=$(kc_wait_leader k)
EL=$(kc_wait_leader e)
# The leader talks to every member both ways (a follower hears nothing from
# the other follower, so it has no series for it: neither has etcd).
F=$((L % 3 + 1))
G=$((F % 3 + 1))
for p in k e; do
    for ((i = 0; i < 20; i++)); do
        etcdctl --endpoints="$(kc_endpoints $p)" put "/k$i" "v$i" >/dev/null
    done
done

scrape k "$L" "$KT_TMP/keel.txt"
scrape e "$EL" "$KT_TMP/etcd.txt"
$CHECK compare "$KT_TMP/keel.txt" "$KT_TMP/etcd.txt"

idl=$(member_id_hex k "$L")
idf=$(member_id_hex k "$F")
idg=$(member_id_hex k "$G")
for id in "$idf" "$idg"; do
    for fam in "etcd_network_peer_sent_bytes_total{To=\"$id\"}" \
        "etcd_network_peer_received_bytes_total{From=\"$id\"}"; do
        v=$($CHECK value "$KT_TMP/keel.txt" "$fam")
        if ! python3 -c "import sys; sys.exit(0 if float('$v') > 0 else 1)"; then
            echo "FAIL: $fam is $v" >&2
            exit 1
        fi
    done
    kt_check "active peer $id" 1 \
        "$($CHECK value "$KT_TMP/keel.txt" "etcd_network_active_peers{Local=\"$idl\",Remote=\"$id\"}")"
done

# A member goes away: counted as etcd counts it.
kc_stop k "$G" TERM
for ((t = 0; t < 100; t++)); do
    scrape k "$L" "$KT_TMP/keel2.txt"
    grep -q "^etcd_network_disconnected_peers_total{Local=\"$idl\",Remote=\"$idg\"} 1$" \
        "$KT_TMP/keel2.txt" && break
    sleep 0.1
done
kt_check "disconnected $idg" 1 \
    "$($CHECK value "$KT_TMP/keel2.txt" "etcd_network_disconnected_peers_total{Local=\"$idl\",Remote=\"$idg\"}")"
kt_check "active peer $idg after the stop" 0 \
    "$($CHECK value "$KT_TMP/keel2.txt" "etcd_network_active_peers{Local=\"$idl\",Remote=\"$idg\"}")"
echo PASS
