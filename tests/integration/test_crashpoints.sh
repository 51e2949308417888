#!/bin/bash
# Crash at the durability-critical instants of server/node.c (its test-only
# KEEL_CRASHPOINT hook SIGKILLs the process there), restart, and check that
# every write acknowledged before the crash is still there, that the member
# reopens its WAL and store without an error, and that after convergence
# its revision and HashKV equal the other members'. Three real members:
#   - compact-synced / compact-marker / compact-released: a member takes a
#     raft snapshot (--snapshot-count) while it serves writes;
#   - apply-committed: a batch is in LMDB, the proposer is not answered
#     (on a follower and on the leader);
#   - snap-renamed / snap-marker: a follower that fell behind the leader's
#     compacted log installs the leader's image (needs KEEL_BENCH_BIN to
#     write more than the 5000 entries the leader keeps).
#   usage: test_crashpoints.sh KEEL_BIN [KEEL_BENCH_BIN]
KEEL_BIN=${1:?keel binary}
BENCH_BIN=${2:-}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

ctl() { etcdctl --command-timeout=5s "$@"; }
SNAPCOUNT=100
KC_FLAGS="--snapshot-count=$SNAPCOUNT"
kc_init k 3
kc_start_all "$KEEL_BIN" k
EPS=$(kc_endpoints k)
: >"$KT_TMP/acked"
RUN=0

# "revision hash" of member I (serializable: its own state).
state() {
    ctl --endpoints="$(kc_ep k "$1")" endpoint hashkv -w json |
        python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["HashKV"]; print(s["header"]["revision"], s["hash"])'
}

# count I [-s]: keys on member I (-s: serializable, its own state).
count() {
    ctl --endpoints="$(kc_ep k "$1")" ${2:+--consistency=s} get "" --prefix --limit 1 -w json |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))'
}

# Wait until the three members report the same revision and HashKV.
converged() {
    local t a b c
    for ((t = 0; t < 150; t++)); do
        a=$(state 1 2>/dev/null) b=$(state 2 2>/dev/null) c=$(state 3 2>/dev/null)
        if [ -n "$a" ] && [ "$a" = "$b" ] && [ "$b" = "$c" ]; then
            echo "$a"
            return 0
        fi
        sleep 0.2
    done
    echo "FAIL: members did not converge: k1 '$a' k2 '$b' k3 '$c'" >&2
    return 1
}

# restart_member I [CRASHPOINT]: stop member I (TERM) if it runs, start it
# again (with KEEL_CRASHPOINT set if given), into a fresh log file.
restart_member() {
    local i=$1 cp=${2:-}
    kc_stop k "$i" TERM
    RUN=$((RUN + 1))
    kc_set "k$i" LOG "$KT_TMP/k$i.$RUN.log"
    if [ -n "$cp" ]; then
        KEEL_CRASHPOINT=$cp kc_start "$KEEL_BIN" k "$i"
    else
        kc_start "$KEEL_BIN" k "$i"
    fi
}

# put_until_dead I ENDPOINT PREFIX: put PREFIX<n> through ENDPOINT, one
# etcdctl each, recording the acknowledged ones, until member I is gone.
put_until_dead() {
    local i=$1 ep=$2 prefix=$3 n=0 pid
    pid=$(kc_var "k$i" PID)
    while kill -0 "$pid" 2>/dev/null; do
        n=$((n + 1))
        [ "$n" -le 2000 ] || { echo "FAIL: k$i never reached its crash point" >&2; exit 1; }
        if ctl --endpoints="$ep" put "$prefix$n" "v$n" >/dev/null 2>&1; then
            echo "$prefix$n" >>"$KT_TMP/acked"
        fi
    done
}

# expect_crashed I POINT: member I died of its crash point (SIGKILL).
expect_crashed() {
    local i=$1 point=$2 pid rc=0
    pid=$(kc_var "k$i" PID)
    wait "$pid" 2>/dev/null || rc=$?
    kc_set "k$i" PID ""
    kt_check "k$i killed at $point (exit status)" 137 "$rc"
    grep -q "keel: crashpoint $point hit" "$(kc_var "k$i" LOG)" ||
        { echo "FAIL: k$i did not report crashpoint $point" >&2; exit 1; }
}

# recovered I POINT: restart member I without a crash point; it reopens
# cleanly, converges with the others and serves every acknowledged key.
recovered() {
    local i=$1 point=$2 l st missing
    restart_member "$i"
    # healthy within a minute, and fail at once if it dies reopening
    local t
    for ((t = 0; t < 120; t++)); do
        if ! kill -0 "$(kc_var "k$i" PID)" 2>/dev/null; then
            echo "FAIL: k$i died restarting after $point" >&2
            tail -5 "$(kc_var "k$i" LOG)" >&2
            exit 1
        fi
        ctl --endpoints="$(kc_ep k "$i")" --dial-timeout=1s --command-timeout=1s \
            endpoint health >/dev/null 2>&1 && break
        sleep 0.5
    done
    [ "$t" -lt 120 ] || { echo "FAIL: k$i not healthy after $point" >&2; exit 1; }
    l=$(kc_wait_leader k)
    kt_check "after $point: a write through the leader" OK \
        "$(ctl --endpoints="$(kc_ep k "$l")" put "/c/after-$point" 1)"
    st=$(converged)
    echo "after $point: k1..k3 at revision/hash $st"
    if grep -E '"level":"(error|fatal|panic)"|^[0-9: .-]+ [EC] \|' "$(kc_var "k$i" LOG)"; then
        echo "FAIL: k$i logged an error reopening after $point" >&2
        exit 1
    fi
    ctl --endpoints="$(kc_ep k "$i")" --consistency=s get /c/ --prefix --keys-only |
        grep -v '^$' | sort >"$KT_TMP/have"
    missing=$(sort -u "$KT_TMP/acked" | comm -23 - "$KT_TMP/have" | wc -l)
    kt_check "after $point: every acknowledged write is on k$i ($(wc -l <"$KT_TMP/acked") acked)" 0 "$missing"
}

# -- a raft snapshot (log compaction) on a follower, then on the leader -----
L=$(kc_wait_leader k)
F=$((L % 3 + 1))
for point in compact-synced compact-marker compact-released; do
    restart_member "$F" "$point"
    kc_wait_ready k "$F"
    put_until_dead "$F" "$(kc_ep k "$F")" "/c/$point/"
    expect_crashed "$F" "$point"
    recovered "$F" "$point"
done
L=$(kc_wait_leader k)
restart_member "$L" compact-marker
kc_wait_ready k "$L"
put_until_dead "$L" "$(kc_ep k "$L")" "/c/leader-compact/"
expect_crashed "$L" compact-marker
recovered "$L" compact-marker

# -- an apply batch committed, nobody answered yet --------------------------
L=$(kc_wait_leader k)
F=$((L % 3 + 1))
restart_member "$F" apply-committed:20
kc_wait_ready k "$F"
put_until_dead "$F" "$(kc_ep k "$F")" "/c/apply-follower/"
expect_crashed "$F" apply-committed
recovered "$F" apply-committed
L=$(kc_wait_leader k)
restart_member "$L" apply-committed:20
kc_wait_ready k "$L"
put_until_dead "$L" "$(kc_ep k "$L")" "/c/apply-leader/"
expect_crashed "$L" apply-committed
recovered "$L" apply-committed

# -- a follower behind the compacted log installs the leader's image --------
if [ -n "$BENCH_BIN" ]; then
    for point in snap-renamed snap-marker; do
        L=$(kc_wait_leader k)
        F=$((L % 3 + 1))
        kc_stop k "$F" TERM
        for n in 1 2 3; do
            ctl --endpoints="$(kc_ep k "$L")" put "/c/$point/$n" x >/dev/null &&
                echo "/c/$point/$n" >>"$KT_TMP/acked"
        done
        # more entries than the leader keeps after a snapshot (5000)
        "$BENCH_BIN" --endpoints="$(kc_ep k "$L")" --clients 16 --conns 4 \
            --total 5500 --key-space-size 5500 --sequential-keys put >/dev/null
        restart_member "$F" "$point"
        for ((t = 0; t < 300; t++)); do
            kill -0 "$(kc_var "k$F" PID)" 2>/dev/null || break
            sleep 0.2
        done
        expect_crashed "$F" "$point"
        recovered "$F" "$point"
        lc=$(count "$L" "")
        [ "$lc" -gt 5500 ] || { echo "FAIL: only $lc keys on k$L" >&2; exit 1; }
        kt_check "after $point: k$F serves the bench keys too" "$lc" "$(count "$F" -s)"
    done
fi

for i in 1 2 3; do kc_stop k "$i" TERM; done
echo "ok: every acknowledged write survived each crash point"
