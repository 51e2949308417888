#!/bin/bash
# A three-member keel cluster started with etcd's flags, driven by Debian's
# etcdctl 3.4: member and cluster ids and `member list` as a three-member
# etcd 3.4 started with the same flags shows them; a write on one member is
# read (linearizable and serializable) on the others; a watch on a follower
# sees a write made on the leader; `endpoint status/health --cluster` list
# every member; /health turns false when the member has no leader.
#   usage: test_cluster_basic.sh KEEL_BIN
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

# `member list` once every member published its client URLs.
settled_member_list() {
    local eps=$1 t out
    for ((t = 0; t < 100; t++)); do
        out=$(etcdctl --endpoints="$eps" member list 2>/dev/null || true)
        if [ "$(grep -c ', started, .*, http://.*, http://' <<<"$out")" = 3 ]; then
            printf '%s\n' "$out"
            return 0
        fi
        sleep 0.2
    done
    echo "member list did not settle: $out" >&2
    return 1
}

cluster_id() {
    etcdctl --endpoints="$1" endpoint status -w json |
        python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["cluster_id"])'
}

kc_init k 3
kc_start_all "$KEEL_BIN" k
EPS=$(kc_endpoints k)
L=$(kc_wait_leader k)
echo "leader: k$L"
keel_members=$(settled_member_list "$EPS")
keel_cid=$(cluster_id "$(kc_ep k 1)")

# -- the same flags on etcd 3.4 (same names, ports and token): same ids ------
if [ -x "$ETCD_BIN" ]; then
    for i in 1 2 3; do kc_stop k "$i" TERM; done
    for i in 1 2 3; do
        kc_set "k$i" DIR "$KT_TMP/etcd-k$i.data"
        kc_set "k$i" LOG "$KT_TMP/etcd-k$i.log"
    done
    kc_start_all "$ETCD_BIN" k
    etcd_members=$(settled_member_list "$EPS")
    etcd_cid=$(cluster_id "$(kc_ep k 1)")
    kt_check "member list (ids, names, URLs) as etcd 3.4" \
        "$etcd_members" "$keel_members"
    kt_check "cluster id as etcd 3.4" "$etcd_cid" "$keel_cid"
    etcd_table=$(etcdctl --endpoints="$EPS" member list -w table)
    for i in 1 2 3; do kc_stop k "$i" TERM; done
    # back to keel, restarted from its data dirs (initial flags ignored)
    for i in 1 2 3; do
        kc_set "k$i" DIR "$KT_TMP/k$i.data"
        kc_set "k$i" LOG "$KT_TMP/k$i.log"
    done
    for i in 1 2 3; do
        kc_start "$KEEL_BIN" k "$i" new "bogus=http://127.0.0.1:1"
    done
    for i in 1 2 3; do kc_wait_ready k "$i"; done
    kt_check "member list -w table as etcd 3.4 (after a restart)" \
        "$etcd_table" "$(etcdctl --endpoints="$EPS" member list -w table)"
    L=$(kc_wait_leader k)
fi

# -- writes on any member, reads everywhere -----------------------------------
F=$((L % 3 + 1)) # a follower
G=$((F % 3 + 1))
[ "$G" = "$L" ] && G=$((G % 3 + 1))
kt_check "put on a follower" "OK" \
    "$(etcdctl --endpoints="$(kc_ep k "$F")" put /a from-follower)"
kt_check "put on the leader" "OK" \
    "$(etcdctl --endpoints="$(kc_ep k "$L")" put /b from-leader)"
for i in 1 2 3; do
    kt_check "linearizable get on k$i" $'/a\nfrom-follower\n/b\nfrom-leader' \
        "$(etcdctl --endpoints="$(kc_ep k "$i")" get /a /c)"
done
for i in 1 2 3; do
    got=""
    for ((t = 0; t < 50; t++)); do
        got=$(etcdctl --endpoints="$(kc_ep k "$i")" get /b --consistency=s \
            --print-value-only)
        [ "$got" = from-leader ] && break
        sleep 0.1
    done
    kt_check "serializable get on k$i" "from-leader" "$got"
done
revs=$(for i in 1 2 3; do
    etcdctl --endpoints="$(kc_ep k "$i")" get /b -w json |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])'
done | sort -u | wc -l)
kt_check "same revision on every member" 1 "$revs"

# -- a watch on a follower sees the leader's writes --------------------------
etcdctl --endpoints="$(kc_ep k "$G")" watch /w --prefix >"$KT_TMP/watch.out" 2>&1 &
WPID=$!
KT_PIDS+=("$WPID")
sleep 1
etcdctl --endpoints="$(kc_ep k "$L")" put /w/1 one >/dev/null
etcdctl --endpoints="$(kc_ep k "$L")" del /w/1 >/dev/null
for ((t = 0; t < 50; t++)); do
    [ "$(wc -l <"$KT_TMP/watch.out")" -ge 5 ] && break
    sleep 0.1
done
kill "$WPID" 2>/dev/null || true
kt_check "watch on a follower" $'PUT\n/w/1\none\nDELETE\n/w/1' \
    "$(head -5 "$KT_TMP/watch.out")"

# -- endpoint status / health --cluster --------------------------------------
st=$(etcdctl --endpoints="$(kc_ep k 1)" endpoint status --cluster -w table)
echo "$st"
kt_check "endpoint status --cluster: a row per member" 3 \
    "$(grep -c '| http://127.0.0.1:' <<<"$st")"
kt_check "endpoint status --cluster: one leader" 1 \
    "$(grep -c '|  *true |  *false |' <<<"$st")"
hc=$(etcdctl --endpoints="$(kc_ep k 1)" endpoint health --cluster 2>&1)
kt_check "endpoint health --cluster" 3 "$(grep -c 'is healthy' <<<"$hc")"
js=$(etcdctl --endpoints="$EPS" endpoint status -w json)
kt_check "leader, raft term and index agree" 1 \
    "$(python3 -c 'import json,sys
v=json.loads(sys.argv[1])
print(len({(s["Status"]["leader"], s["Status"]["header"]["raft_term"]) for s in v}))' "$js")"

# -- move-leader ---------------------------------------------------------------
FID=$(etcdctl --endpoints="$(kc_ep k "$F")" endpoint status -w json |
    python3 -c 'import json,sys; print("%x" % json.load(sys.stdin)[0]["Status"]["header"]["member_id"])')
out=$(etcdctl --endpoints="$EPS" move-leader "$FID")
grep -q "Leadership transferred from .* to $FID" <<<"$out"
echo "ok: $out"
kt_check "the transferee leads" "$F" "$(kc_leader k)"
rc=0
etcdctl --endpoints="$EPS" move-leader 1234 2>"$KT_TMP/err" || rc=$?
kt_check "move-leader to a non-member" "Error: etcdserver: bad leader transferee rc=1" \
    "$(grep -v '^{' "$KT_TMP/err") rc=$rc"
L=$F
F=$((L % 3 + 1))
G=$((F % 3 + 1))

# -- no leader: /health false, linearizable reads fail, serializable work ----
kc_stop k "$F" TERM
kc_stop k "$G" TERM
sleep $((KC_ET * 3 / 1000 + 1))
kt_check "/health without a leader" '{"health":"false"}' \
    "$(curl -s "http://$(kc_ep k "$L")/health")"
kt_check "serializable get without a leader" "from-leader" \
    "$(etcdctl --endpoints="$(kc_ep k "$L")" get /b --consistency=s --print-value-only)"
if etcdctl --endpoints="$(kc_ep k "$L")" --command-timeout=3s get /b >/dev/null 2>&1; then
    echo "FAIL: a linearizable read succeeded without a quorum" >&2
    exit 1
fi
echo "ok: a linearizable read fails without a quorum"
echo PASS
