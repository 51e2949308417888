#!/bin/bash
# Faults on a three-member keel cluster (real processes, loopback):
#   - kill -9 the leader during a stream of writes: a new leader within
#     about two election timeouts (the time to the first successful write
#     is printed), no acknowledged write lost, the killed member restarts
#     and catches up;
#   - SIGSTOP a follower past the election timeout, then SIGCONT: the
#     leader is unchanged;
#   - stop every member, start them again: same data, same revision;
#   - SIGTERM on the leader hands leadership over before it exits (0).
#   - a follower stopped while the leader compacts its log catches up by
#     snapshot; its open watch sees every put, its lessor every lease
#     (with KEEL_BENCH_BIN, to write enough entries quickly).
#   usage: test_cluster_faults_basic.sh KEEL_BIN [KEEL_BENCH_BIN]
KEEL_BIN=${1:?keel binary}
BENCH_BIN=${2:-}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

ctl() { etcdctl --command-timeout=5s "$@"; }
now_ms() { date +%s%3N; }
leader_id() { # ENDPOINT
    ctl --endpoints="$1" endpoint status -w json |
        python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; print("%x %d" % (s["leader"], s["header"]["raft_term"]))'
}

# a small --snapshot-count so that the leader compacts its log
KC_FLAGS="--snapshot-count=1000"
kc_init k 3
kc_start_all "$KEEL_BIN" k
EPS=$(kc_endpoints k)
L=$(kc_wait_leader k)
echo "leader: k$L"

# -- kill -9 the leader during writes ---------------------------------------
: >"$KT_TMP/acked"
(
    i=0
    while [ ! -e "$KT_TMP/stop-writer" ]; do
        i=$((i + 1))
        if etcdctl --endpoints="$EPS" --command-timeout=3s put "/f/$i" "v$i" \
            >/dev/null 2>&1; then
            echo "$i" >>"$KT_TMP/acked"
        fi
    done
) &
WRITER=$!
KT_PIDS+=("$WRITER")
sleep 2
T0=$(now_ms)
kc_stop k "$L" KILL
# first successful write through the survivors
SURV=""
for i in 1 2 3; do [ "$i" != "$L" ] && SURV+="${SURV:+,}$(kc_ep k "$i")"; done
while ! etcdctl --endpoints="$SURV" --command-timeout=1s put /f/probe x \
    >/dev/null 2>&1; do
    sleep 0.01
done
T1=$(now_ms)
echo "leader killed -> first successful write: $((T1 - T0)) ms (election timeout $KC_ET ms)"
if [ $((T1 - T0)) -gt $((KC_ET * 2 + 3000)) ]; then
    echo "FAIL: failover took $((T1 - T0)) ms" >&2
    exit 1
fi
sleep 1
touch "$KT_TMP/stop-writer"
wait "$WRITER"
NL=$(kc_wait_leader k)
echo "new leader: k$NL"
n_acked=$(wc -l <"$KT_TMP/acked")
[ "$n_acked" -gt 10 ] || { echo "FAIL: only $n_acked writes acked" >&2; exit 1; }
lost=$(ctl --endpoints="$(kc_ep k "$NL")" get /f/ --prefix --keys-only |
    grep -v '^$' | sed 's|^/f/||' | sort >"$KT_TMP/have"
    sort "$KT_TMP/acked" | comm -23 - "$KT_TMP/have" | wc -l)
kt_check "no acknowledged write lost ($n_acked acked)" 0 "$lost"

# the killed member restarts and catches up
kc_start "$KEEL_BIN" k "$L"
kc_wait_ready k "$L"
ctl --endpoints="$(kc_ep k "$NL")" put /f/after-restart yes >/dev/null
got=""
for ((t = 0; t < 100; t++)); do
    got=$(ctl --endpoints="$(kc_ep k "$L")" get /f/after-restart --consistency=s --print-value-only 2>/dev/null || true)
    [ "$got" = yes ] && break
    sleep 0.1
done
kt_check "the killed member caught up" yes "$got"
kt_check "the killed member has every acked key" 0 \
    "$(ctl --endpoints="$(kc_ep k "$L")" get /f/ --prefix --keys-only --consistency=s |
        grep -v '^$' | sed 's|^/f/||' | sort | comm -13 - <(sort "$KT_TMP/acked") | wc -l)"

# -- SIGSTOP a follower past the election timeout ----------------------------
L=$(kc_wait_leader k)
before=$(leader_id "$(kc_ep k "$L")")
F=$((L % 3 + 1))
kill -STOP "$(kc_var "k$F" PID)"
sleep $((KC_ET * 3 / 1000 + 1))
ctl --endpoints="$(kc_ep k "$L")" put /f/while-stopped 1 >/dev/null
kill -CONT "$(kc_var "k$F" PID)"
sleep $((KC_ET * 2 / 1000 + 1))
after=$(leader_id "$(kc_ep k "$L")")
echo "leader and term before/after SIGSTOP of k$F: $before / $after"
kt_check "leader unchanged after a follower's SIGSTOP/SIGCONT" \
    "${before%% *}" "${after%% *}"
kt_check "the stopped follower caught up" 1 \
    "$(for ((t = 0; t < 50; t++)); do
        v=$(ctl --endpoints="$(kc_ep k "$F")" get /f/while-stopped --consistency=s --print-value-only 2>/dev/null || true)
        [ "$v" = 1 ] && break
        sleep 0.1
    done
    echo "$v")"

# -- stop all, start all: same data and revision ------------------------------
state() {
    local i=$1
    ctl --endpoints="$(kc_ep k "$i")" endpoint hashkv -w json |
        python3 -c 'import json,sys; h=json.load(sys.stdin)[0]["HashKV"]; print(h["header"]["revision"], h["hash"])'
}
for i in 1 2 3; do
    for ((t = 0; t < 50; t++)); do
        [ "$(state "$i")" = "$(state "$L")" ] && break
        sleep 0.1
    done
done
before=$(state 1)
kt_check "every member has the same revision and hash" 1 \
    "$(for i in 1 2 3; do state "$i"; done | sort -u | wc -l)"
for i in 1 2 3; do kc_stop k "$i" TERM; done
for i in 1 2 3; do kc_start "$KEEL_BIN" k "$i"; done
for i in 1 2 3; do kc_wait_ready k "$i"; done
for i in 1 2 3; do
    kt_check "k$i after a full restart: same revision and hash" "$before" "$(state "$i")"
done

# -- a follower stopped while the log is compacted catches up by snapshot:
#    its open watch resyncs from the new store, its lessor reloads ----------
if [ -n "$BENCH_BIN" ]; then
    L=$(kc_wait_leader k)
    F=$((L % 3 + 1))
    etcdctl --endpoints="$(kc_ep k "$F")" watch "" --prefix >"$KT_TMP/snapwatch.out" 2>&1 &
    SW=$!
    KT_PIDS+=("$SW")
    sleep 1
    kill -STOP "$(kc_var "k$F" PID)"
    LEASE=$(ctl --endpoints="$(kc_ep k "$L")" lease grant 600 | awk '{print $2}')
    ctl --endpoints="$(kc_ep k "$L")" put /f/leased x --lease="$LEASE" >/dev/null
    # More entries than the leader keeps after a snapshot (5000) plus what
    # it may still send into the stopped follower's socket: its inflight
    # window of 256 appends, each carrying the proposals batched in one
    # loop turn (at most one per client: 4 here, so <= 1024 entries).
    "$BENCH_BIN" --endpoints="$(kc_ep k "$L")" --clients 4 --conns 1 \
        --total 8000 --key-space-size 8000 --sequential-keys put >/dev/null
    ctl --endpoints="$(kc_ep k "$L")" put /f/snap-last 1 >/dev/null
    kill -CONT "$(kc_var "k$F" PID)"
    for ((t = 0; t < 150; t++)); do
        grep -q '^/f/snap-last$' "$KT_TMP/snapwatch.out" && break
        sleep 0.2
    done
    kill "$SW" 2>/dev/null || true
    grep -q "applied incoming snapshot" "$(kc_var "k$F" LOG)"
    echo "ok: k$F caught up by snapshot"
    kt_check "the watch on k$F saw every put made while it was stopped" 8002 \
        "$(grep -c '^PUT$' "$KT_TMP/snapwatch.out")"
    kt_check "k$F's lessor knows the lease granted meanwhile" 1 \
        "$(ctl --endpoints="$(kc_ep k "$F")" lease list | grep -c "$LEASE")"
fi

# -- SIGTERM on the leader hands leadership over -----------------------------
L=$(kc_wait_leader k)
T0=$(now_ms)
kc_stop k "$L" TERM
T1=$(now_ms)
grep -q "finished leadership transfer" "$(kc_var "k$L" LOG)"
echo "ok: the leader handed over leadership before stopping ($((T1 - T0)) ms)"
NL=$(kc_leader k)
[ -n "$NL" ] && [ "$NL" != "$L" ] || { echo "FAIL: no new leader right after SIGTERM" >&2; exit 1; }
echo "ok: k$NL leads at once"
kt_check "writes go on" OK "$(ctl --endpoints="$(kc_ep k "$NL")" put /f/after-term 1)"
echo PASS
