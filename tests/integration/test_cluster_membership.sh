#!/bin/bash
# Membership changes on a three-member keel cluster with Debian's etcdctl
# 3.4: `member add --learner`, the new member started with
# --initial-cluster-state existing catches up (by log, then a second one by
# snapshot once the log is compacted), a learner refuses writes and
# linearizable reads, `member promote`, `member update`, `member remove`
# (the removed member logs etcd's line and exits 0). The error cases are
# run against a three-member etcd 3.4 too and must print the same
# (etcdctl's stderr and exit code).
#   usage: test_cluster_membership.sh KEEL_BIN [KEEL_BENCH_BIN]
KEEL_BIN=${1:?keel binary}
BENCH_BIN=${2:-}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

ctl() { etcdctl --command-timeout=10s "$@"; }
member_id() { # ENDPOINT NAME-or-peer-port
    # ", $2": match a whole field; a bare "e2," also matched a member whose
    # hex id ends in e2 (etcd's e-prefixed cluster, one run in ~8).
    ctl --endpoints="$1" member list | grep -- ", $2" | cut -d, -f1
}

# The error cases, on cluster PREFIX (members 1..3 up, leader L): prints
# each command's stderr (etcdctl's retry warnings dropped) and exit code.
error_cases() {
    local prefix=$1 bin=$2 L ep lid v1
    L=$(kc_wait_leader "$prefix")
    ep=$(kc_ep "$prefix" "$L")
    v1=$(member_id "$ep" "${prefix}1,")
    run() {
        echo "\$ $*" | kc_normalise
        local rc=0
        ctl --endpoints="$ep" "$@" >/dev/null 2>"$KT_TMP/err" || rc=$?
        grep -v '^{' "$KT_TMP/err" | kc_normalise
        echo "rc=$rc"
    }
    # etcd's HealthInterval: reconfiguration waits for 5 s of connectivity
    sleep 6
    run member add dup --peer-urls="http://127.0.0.1:$(kc_var "${prefix}2" PPORT)"
    run member add bad --peer-urls=http://127.0.0.1:2380/path
    run member remove 1234
    run member update 1234 --peer-urls=http://127.0.0.1:1
    run member promote "$v1"
    run member promote 1234
    run member add l1 --learner --peer-urls=http://127.0.0.1:1
    run member add l2 --learner --peer-urls=http://127.0.0.1:2
    lid=$(member_id "$ep" "http://127.0.0.1:1,")
    run member promote "$lid"
    run member remove "$lid"
    # a member down: adding a voter or removing a live one breaks quorum
    local down=$((L % 3 + 1)) other
    other=$((down % 3 + 1))
    [ "$other" = "$L" ] && other=$((other % 3 + 1))
    kc_stop "$prefix" "$down" KILL
    run member add v4 --peer-urls=http://127.0.0.1:4
    run member remove "$(member_id "$ep" "${prefix}${other},")"
    kc_start "$bin" "$prefix" "$down"
    kc_wait_ready "$prefix" "$down"
}

kc_init k 5
kc_set k N 3
kc_start_all "$KEEL_BIN" k --snapshot-count=100
# Not $(error_cases ...): it restarts a member, and a restart made in a
# command substitution's subshell would escape KT_PIDS (the EXIT trap) and
# leave its PID stale in the parent. `|| true` keeps what the subshell
# gave: a step that prints nothing (grep -v with no line) is not a failure;
# the comparison of the whole output below is the check.
error_cases k "$KEEL_BIN" >"$KT_TMP/keel_errors" || true
keel_errors=$(cat "$KT_TMP/keel_errors")
printf '%s\n' "$keel_errors"
if [ -x "$ETCD_BIN" ]; then
    kc_init e 3
    kc_start_all "$ETCD_BIN" e
    error_cases e "$ETCD_BIN" >"$KT_TMP/etcd_errors" || true
    etcd_errors=$(cat "$KT_TMP/etcd_errors")
    for i in 1 2 3; do kc_stop e "$i" KILL; done
    kt_check "membership errors as etcd 3.4" "$etcd_errors" "$keel_errors"
fi

EPS=$(kc_endpoints k)
L=$(kc_wait_leader k)
LEP=$(kc_ep k "$L")
for i in $(seq 1 20); do ctl --endpoints="$EPS" put "/m/$i" "v$i" >/dev/null; done

# -- joining without being added: etcd's errors, exit 1 ---------------------
join_fails() { # EXPECTED-TEXT INITIAL-CLUSTER
    local rc=0
    timeout 30 "$KEEL_BIN" --name x --data-dir "$KT_TMP/x.data" \
        --listen-client-urls "http://127.0.0.1:$(kc_var k5 CPORT)" \
        --advertise-client-urls "http://127.0.0.1:$(kc_var k5 CPORT)" \
        --listen-peer-urls "http://127.0.0.1:$(kc_var k5 PPORT)" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(kc_var k5 PPORT)" \
        --initial-cluster "$2" --initial-cluster-token kc-k \
        --initial-cluster-state existing >"$KT_TMP/x.log" 2>&1 || rc=$?
    kt_check "join refused: $1" "1 1" \
        "$rc $(grep -c "$1" "$KT_TMP/x.log")"
    rm -rf "$KT_TMP/x.data"
}
join_fails "member count is unequal" \
    "$(kc_initial_cluster k 3),x=http://127.0.0.1:$(kc_var k5 PPORT)"
join_fails "PeerURLs: no match found for existing member" \
    "k1=http://127.0.0.1:$(kc_var k1 PPORT),k2=http://127.0.0.1:$(kc_var k2 PPORT),x=http://127.0.0.1:$(kc_var k5 PPORT)"
join_fails "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs" \
    "x=http://127.0.0.1:$(kc_var k5 PPORT),y=http://127.0.0.1:$(kt_free_port)"

# -- add a learner, start it with --initial-cluster-state existing ----------
out=$(ctl --endpoints="$LEP" member add k4 --learner \
    --peer-urls="http://127.0.0.1:$(kc_var k4 PPORT)")
grep -q 'ETCD_INITIAL_CLUSTER_STATE="existing"' <<<"$out"
ic=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
kc_start "$KEEL_BIN" k 4 existing "$ic"
K4=$(kc_ep k 4)
got=""
for ((t = 0; t < 100; t++)); do
    got=$(ctl --endpoints="$K4" get /m/20 --consistency=s --print-value-only 2>/dev/null || true)
    [ "$got" = v20 ] && break
    sleep 0.2
done
kt_check "the learner caught up (serializable read on it)" v20 "$got"
kt_check "member list shows the learner" "k4, http://127.0.0.1:$(kc_var k4 PPORT), http://$K4, true" \
    "$(ctl --endpoints="$LEP" member list | grep k4 | cut -d, -f3- | sed 's/^ //')"
kt_check "a learner's etcd_server_is_learner" "etcd_server_is_learner 1" \
    "$(curl -s "http://$K4/metrics" | grep '^etcd_server_is_learner ')"
kt_check "a voter's etcd_server_is_learner" "etcd_server_is_learner 0" \
    "$(curl -s "http://$LEP/metrics" | grep '^etcd_server_is_learner ')"
rc=0
ctl --endpoints="$K4" put /m/x y 2>"$KT_TMP/err" || rc=$?
kt_check "a learner refuses writes" "Error: etcdserver: rpc not supported for learner rc=1" \
    "$(grep -v '^{' "$KT_TMP/err") rc=$rc"
rc=0
ctl --endpoints="$K4" get /m/1 2>"$KT_TMP/err" >/dev/null || rc=$?
kt_check "a learner refuses linearizable reads" "Error: etcdserver: rpc not supported for learner rc=1" \
    "$(grep -v '^{' "$KT_TMP/err") rc=$rc"

# -- promote it (through a follower: forwarded to the leader as etcd does) --
ID4=$(member_id "$LEP" "k4,")
FEP=$(kc_ep k $((L % 3 + 1)))
rc=0
ctl --endpoints="$FEP" member promote "$(member_id "$LEP" "k$L,")" 2>"$KT_TMP/err" || rc=$?
kt_check "promote of a voter through a follower" \
    "Error: etcdserver: can only promote a learner member rc=1" \
    "$(grep -v '^{' "$KT_TMP/err") rc=$rc"
# etcdctl prints both ids with %16x: space-padded when they are shorter
kt_check "member promote" "Member $(printf '%16s' "$ID4") promoted in cluster $(ctl --endpoints="$LEP" endpoint status -w json | python3 -c 'import json,sys; print("%16x" % json.load(sys.stdin)[0]["Status"]["header"]["cluster_id"])')" \
    "$(ctl --endpoints="$FEP" member promote "$ID4")"
kt_check "k4 is a voter" "false" \
    "$(ctl --endpoints="$LEP" member list | grep k4 | awk -F', ' '{print $6}')"
for ((t = 0; t < 50; t++)); do # k4 applies its own promotion
    m=$(curl -s "http://$K4/metrics" | grep '^etcd_server_is_learner ')
    [ "$m" = "etcd_server_is_learner 0" ] && break
    sleep 0.1
done
kt_check "etcd_server_is_learner once promoted" "etcd_server_is_learner 0" "$m"
ctl --endpoints="$K4" put /m/from-k4 yes >/dev/null
kt_check "k4 serves writes once promoted" yes \
    "$(ctl --endpoints="$LEP" get /m/from-k4 --print-value-only)"

# -- update its peer URLs, restart it on the new one -------------------------
NEWP=$(kt_free_port)
ctl --endpoints="$LEP" member update "$ID4" --peer-urls="http://127.0.0.1:$NEWP" >/dev/null
kt_check "member update" "http://127.0.0.1:$NEWP" \
    "$(ctl --endpoints="$LEP" member list | grep k4 | awk -F', ' '{print $4}')"
kc_stop k 4 TERM
kc_set k4 PPORT "$NEWP"
kc_start "$KEEL_BIN" k 4 existing "ignored=http://127.0.0.1:1"
ctl --endpoints="$LEP" put /m/after-update 1 >/dev/null
got=""
for ((t = 0; t < 100; t++)); do
    got=$(ctl --endpoints="$K4" get /m/after-update --consistency=s --print-value-only 2>/dev/null || true)
    [ "$got" = 1 ] && break
    sleep 0.2
done
kt_check "k4 replicates on its new peer URL" 1 "$got"

# -- remove it: it stops with etcd's log line and exits 0 -------------------
kt_check "member remove" "Member $(printf '%16s' "$ID4") removed from cluster $(ctl --endpoints="$LEP" endpoint status -w json | python3 -c 'import json,sys; print("%16x" % json.load(sys.stdin)[0]["Status"]["header"]["cluster_id"])')" \
    "$(ctl --endpoints="$LEP" member remove "$ID4")"
rc=0
for ((t = 0; t < 100; t++)); do
    kill -0 "$(kc_var k4 PID)" 2>/dev/null || break
    sleep 0.1
done
wait "$(kc_var k4 PID)" || rc=$?
kt_check "the removed member exited 0" 0 "$rc"
grep -q "the member has been permanently removed from the cluster" "$(kc_var k4 LOG)"
echo "ok: the removed member logged etcd's line"
kt_check "member list after remove" 3 "$(ctl --endpoints="$LEP" member list | wc -l)"
# restarted from its data dir, the removed member is refused by its former
# peers and stops again, exit 0
: >"$(kc_var k4 LOG)"
kc_start "$KEEL_BIN" k 4
rc=0
for ((t = 0; t < 150; t++)); do
    kill -0 "$(kc_var k4 PID)" 2>/dev/null || break
    sleep 0.1
done
wait "$(kc_var k4 PID)" || rc=$?
kt_check "a removed member restarted stops again (exit 0)" "0 1" \
    "$rc $(grep -c 'E | etcdserver: the member has been permanently removed from the cluster' "$(kc_var k4 LOG)")"

# -- a member far behind catches up by snapshot (log compacted) --------------
if [ -n "$BENCH_BIN" ]; then
    # more entries than the leader keeps after compaction (5000)
    "$BENCH_BIN" --endpoints="$EPS" --clients 32 --conns 4 --total 6000 \
        --key-space-size 6000 --sequential-keys put >/dev/null
    ctl --endpoints="$LEP" put /m/last snap >/dev/null
    out=$(ctl --endpoints="$LEP" member add k5 --learner \
        --peer-urls="http://127.0.0.1:$(kc_var k5 PPORT)")
    ic=$(sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p' <<<"$out")
    kc_start "$KEEL_BIN" k 5 existing "$ic"
    got=""
    for ((t = 0; t < 150; t++)); do
        got=$(ctl --endpoints="$(kc_ep k 5)" get /m/last --consistency=s --print-value-only 2>/dev/null || true)
        [ "$got" = snap ] && break
        sleep 0.2
    done
    kt_check "k5 caught up" snap "$got"
    grep -q "applied incoming snapshot" "$(kc_var k5 LOG)"
    echo "ok: k5 caught up by snapshot"
    count() {
        ctl --endpoints="$1" get --from-key '' --limit 1 --consistency=s -w json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])'
    }
    kt_check "k5 has every key the leader has" "$(count "$LEP")" \
        "$(count "$(kc_ep k 5)")"
fi
echo PASS
