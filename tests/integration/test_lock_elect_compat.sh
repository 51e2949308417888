#!/usr/bin/env bash
# etcdctl 3.4's `lock` and `elect` (clientv3/concurrency on KV, Lease and
# Watch) against etcd 3.4 and keel: the same script of concurrent clients on
# each, transcripts compared. Lease ids in keys ("L/694d7b4a5c6d8b12") are
# named by order of appearance (LEASE1, LEASE2, ...).
#   - a lock holder, a waiter that must wait, the holder killed (-9: its
#     session lease expires) -> the waiter runs its command;
#   - a holder released by SIGINT -> the next waiter gets it at once;
#   - elect: a leader, a listener (elect -l), a second candidate that waits;
#     the leader resigns (SIGINT) -> the listener sees the second one;
#   - the Election service's Observe stream (curl, gateway) while the
#     leader proclaims, resigns and another candidate takes over;
#   - keel only: a Lock waiter whose lease is revoked stops waiting.
#   usage: test_lock_elect_compat.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}

# wait_for FILE PATTERN [seconds]: until FILE has a line matching PATTERN.
wait_for() {
    local i
    for ((i = 0; i < ${3:-15} * 10; i++)); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "timeout waiting for '$2' in $1" >&2
    return 1
}

# shown FILE: a client's output without clientv3's "context canceled"
# retry warning, which etcdctl logs when SIGINT lands during a unary call
# (a race in the client, on etcd as on keel).
shown() {
    grep -v '"msg":"retrying of unary invoker failed".*context canceled' "$1" || true
}

scenario() { # $1 = name (etcd|keel), $2 = binary, $3 = transcript
    local n=$1 out=$3 d="$KT_TMP/$1"
    mkdir -p "$d"
    kt_start "$n" "$2"
    local ep_var="${n}_CLIENT"
    local E=(etcdctl --endpoints="${!ep_var}")
    : >"$out"

    # -- lock: holder (session TTL 3 s), waiter with a command
    "${E[@]}" lock --ttl=3 L >"$d/h1" 2>&1 &
    local h1=$!
    KT_PIDS+=("$h1")
    wait_for "$d/h1" '^L/'
    "${E[@]}" lock L -- sh -c 'echo "waiter ran with $ETCD_LOCK_KEY"' \
        >"$d/w1" 2>&1 &
    local w1=$!
    KT_PIDS+=("$w1")
    sleep 1
    echo "## holder: $(cat "$d/h1")" >>"$out"
    echo "## waiter before the holder dies: [$(cat "$d/w1")]" >>"$out"
    echo "## queue:" >>"$out"
    "${E[@]}" get --prefix L --keys-only | sed '/^$/d' >>"$out"
    kill -9 "$h1"
    wait "$h1" 2>/dev/null || true
    local rc=0
    wait "$w1" || rc=$?
    echo "## waiter after the holder's lease expired (exit $rc):" >>"$out"
    cat "$d/w1" >>"$out"
    "${E[@]}" get --prefix L --keys-only | sed '/^$/d' >>"$out"

    # -- lock: release by SIGINT hands over at once
    "${E[@]}" lock M >"$d/h2" 2>&1 &
    local h2=$!
    KT_PIDS+=("$h2")
    wait_for "$d/h2" '^M/'
    "${E[@]}" lock M >"$d/w2" 2>&1 &
    local w2=$!
    KT_PIDS+=("$w2")
    sleep 0.5
    echo "## second M waiter before release: [$(cat "$d/w2")]" >>"$out"
    kill -INT "$h2"
    wait "$h2" 2>/dev/null || true
    wait_for "$d/w2" '^M/' 5
    echo "## second M waiter after release: $(cat "$d/w2")" >>"$out"
    kill -INT "$w2"
    wait "$w2" 2>/dev/null || true
    "${E[@]}" get --prefix M --keys-only | sed '/^$/d' >>"$out"
    echo "## after both released: $("${E[@]}" get --prefix M --keys-only)" >>"$out"

    # -- elect: leader p1, listener, candidate p2; p1 resigns
    "${E[@]}" elect -l E >"$d/l" 2>&1 &
    local l=$!
    KT_PIDS+=("$l")
    sleep 0.5
    "${E[@]}" elect E p1 >"$d/c1" 2>&1 &
    local c1=$!
    KT_PIDS+=("$c1")
    wait_for "$d/c1" '^p1$'
    "${E[@]}" elect E p2 >"$d/c2" 2>&1 &
    local c2=$!
    KT_PIDS+=("$c2")
    wait_for "$d/l" '^p1$'
    sleep 0.5
    echo "## candidate p2 before p1 resigns: [$(cat "$d/c2")]" >>"$out"
    kill -INT "$c1"
    wait "$c1" 2>/dev/null || true
    wait_for "$d/c2" '^p2$'
    wait_for "$d/l" '^p2$'
    echo "## leader p1:" >>"$out"
    shown "$d/c1" >>"$out"
    echo "## leader p2:" >>"$out"
    shown "$d/c2" >>"$out"
    kill -INT "$c2" "$l"
    wait "$c2" 2>/dev/null || true
    wait "$l" 2>/dev/null || true
    echo "## listener:" >>"$out"
    shown "$d/l" >>"$out"
    echo "## candidates left: $("${E[@]}" get --prefix E --keys-only)" >>"$out"

    # -- the Election service's Observe stream (gateway) while the leader
    # proclaims, resigns and another candidate takes over
    local U="http://${!ep_var}"
    # base64: Tw==O Ty8xMDAw=O/1000 djE=v1 djI=v2 djM=v3
    curl -sS -X POST "$U/v3/lease/grant" -d '{"TTL":"60","ID":"4096"}' >/dev/null
    curl -sS -X POST "$U/v3/lease/grant" -d '{"TTL":"60","ID":"8192"}' >/dev/null
    local camp rev
    camp=$(curl -sS -X POST "$U/v3/election/campaign" \
        -d '{"name":"Tw==","lease":"4096","value":"djE="}')
    rev=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["leader"]["rev"])' "$camp")
    curl -sS -N -m 5 -X POST "$U/v3/election/observe" -d '{"name":"Tw=="}' \
        >"$d/obs" 2>/dev/null &
    local obs=$!
    KT_PIDS+=("$obs")
    wait_for "$d/obs" djE= 5
    local lk='{"name":"Tw==","key":"Ty8xMDAw","rev":"'$rev'","lease":"4096"}'
    curl -sS -X POST "$U/v3/election/proclaim" \
        -d '{"leader":'"$lk"',"value":"djI="}' >/dev/null
    curl -sS -X POST "$U/v3/election/resign" -d '{"leader":'"$lk"'}' >/dev/null
    curl -sS -X POST "$U/v3/election/campaign" \
        -d '{"name":"Tw==","lease":"8192","value":"djM="}' >/dev/null
    wait_for "$d/obs" djM= 5
    kill "$obs" 2>/dev/null || true
    wait "$obs" 2>/dev/null || true
    echo "## observe:" >>"$out"
    sed -E 's/"(cluster_id|member_id)":"[0-9]+"/"\1":"ID"/g' "$d/obs" >>"$out"
    local pid_var="${n}_PID"
    kill -TERM "${!pid_var}"
    wait "${!pid_var}" 2>/dev/null || true
}

# Name each lease id (16 hex digits or fewer after a "/") by first
# appearance.
normalise() {
    python3 - "$1" <<'EOF'
import re, sys
names = {}
def name(m):
    names.setdefault(m.group(1), "LEASE%d" % (len(names) + 1))
    return "/" + names[m.group(1)]
for line in open(sys.argv[1]):
    sys.stdout.write(re.sub(r"/([0-9a-f]{6,16})\b", name, line))
EOF
}

scenario etcd "$ETCD_BIN" "$KT_TMP/etcd.out"
scenario keel "$KEEL_BIN" "$KT_TMP/keel.out"

# keel only (etcd 3.4 keeps waiting): a Lock waiter whose lease is revoked
# stops waiting with "requested lease not found", and its key is gone.
kt_start solo "$KEEL_BIN"
U="http://$solo_CLIENT"
curl -sS -X POST "$U/v3/lease/grant" -d '{"TTL":"60","ID":"4096"}' >/dev/null
curl -sS -X POST "$U/v3/lease/grant" -d '{"TTL":"60","ID":"8192"}' >/dev/null
curl -sS -X POST "$U/v3/lock/lock" -d '{"name":"bXk=","lease":"4096"}' >/dev/null
curl -sS -m 10 -X POST "$U/v3/lock/lock" -d '{"name":"bXk=","lease":"8192"}' \
    -w ' %{http_code}' >"$KT_TMP/waiter" 2>&1 &
waiter=$!
sleep 0.5
kt_check "the waiter still waits" "" "$(cat "$KT_TMP/waiter")"
curl -sS -X POST "$U/v3/lease/revoke" -d '{"ID":"8192"}' >/dev/null
wait "$waiter" || true
kt_check "a revoked waiter ends" \
    '{"error":"etcdserver: requested lease not found","message":"etcdserver: requested lease not found","code":2} 500' \
    "$(cat "$KT_TMP/waiter")"
kt_check "only the holder is queued" "my/1000" \
    "$(etcdctl --endpoints="$solo_CLIENT" get --prefix my --keys-only | sed '/^$/d')"
if ! diff -u <(normalise "$KT_TMP/etcd.out") <(normalise "$KT_TMP/keel.out") \
        >"$KT_TMP/diff"; then
    echo "FAIL: etcdctl lock/elect differ between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
normalise "$KT_TMP/keel.out"
echo "ok: etcdctl lock and elect behave on keel as on etcd 3.4"
