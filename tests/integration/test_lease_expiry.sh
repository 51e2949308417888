#!/usr/bin/env bash
# Lease timing on a real keel, driven by Debian's etcdctl 3.4:
#   - a lease expires on time (not before its TTL) and its keys vanish;
#   - a TTL below the minimum (2 s with the default 1 s election timeout)
#     is raised to it;
#   - keep-alive keeps a lease alive past its TTL; once it stops, the lease
#     expires; revoking a lease ends a running keep-alive;
#   - a restart keeps a live lease and its keys, and (checkpoints every
#     second here) continues from the checkpointed remaining TTL, not the
#     full one, then expires it (a renewal clears the checkpoint);
#   - a stalled server (SIGSTOP longer than the TTL) does not revoke the
#     leases nobody could renew during the stall (etcd #15247) but still
#     expires them afterwards;
#   - a keep-alive stream open at shutdown does not keep keel from exiting
#     cleanly.
#   usage: test_lease_expiry.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
export KEEL_LEASE_CHECKPOINT_INTERVAL_MS=1000

now() { printf '%s' "${EPOCHREALTIME/./}"; } # microseconds
ctl() { etcdctl --endpoints="$k_CLIENT" --dial-timeout=2s --command-timeout=5s "$@"; }
grant() { ctl lease grant "$1" | sed -n 's/^lease \([0-9a-f]*\) granted with TTL(\([0-9]*\)s)$/\1 \2/p'; }
count() { ctl get --prefix --keys-only "$1" | grep -c . || true; }
# ttl ID: the TimeToLive TTL (-1: not found)
ttl() { ctl lease timetolive "$1" -w json | sed -n 's/.*"ttl":\(-\{0,1\}[0-9]*\).*/\1/p'; }
# wait_gone PREFIX SECONDS: microseconds until no key has PREFIX, or fail
wait_gone() {
    local t0 i
    t0=$(now)
    for ((i = 0; i < $2 * 10 * KT_SLOW; i++)); do
        if [ "$(count "$1")" = "" ] || [ "$(count "$1")" = 0 ]; then
            echo $(($(now) - t0))
            return 0
        fi
        sleep 0.1
    done
    echo "FAIL: keys $1* still there after $2 s (x$KT_SLOW)" >&2
    return 1
}
assert_between() { # DESCRIPTION LOW HIGH VALUE
    if [ "$4" -lt "$2" ] || [ "$4" -gt "$3" ]; then
        echo "FAIL: $1: $4 not in [$2, $3]" >&2
        exit 1
    fi
    echo "ok: $1 ($4)"
}
# stop_k: graceful stop; keel must exit 0 (under ASan: no leak, no error)
stop_k() {
    kill -TERM "$k_PID"
    local rc=0
    wait "$k_PID" || rc=$?
    kt_check "keel exits 0 after SIGTERM" 0 "$rc"
}

kt_start k "$KEEL_BIN"

# ---- expiry on time --------------------------------------------------------
# t0 before the grant: the lease cannot expire sooner than 3 s after it
# (timed from after the puts, slow puts made the lower bound flaky)
t0=$(now)
read -r id granted < <(grant 3)
kt_check "grant 3 keeps its TTL" 3 "$granted"
ctl put --lease="$id" exp/a 1 >/dev/null
ctl put --lease="$id" exp/b 2 >/dev/null
# look 1.5 s after the grant (well before the TTL, however slow the puts)
left=$((1500 - ($(now) - t0) / 1000))
if [ "$left" -gt 0 ]; then sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"; fi
kt_check "keys live before the TTL" 2 "$(count exp/)"
wait_gone exp/ 6 >/dev/null
assert_between "keys vanish after the TTL (ms from the grant)" 2800 \
    $((3000 + 2500 * KT_SLOW)) $((($(now) - t0) / 1000))
kt_check "expired lease is gone" -1 "$(ttl "$id")"
rc=0
ctl lease keep-alive --once "$id" >"$KT_TMP/once.out" 2>&1 || rc=$?
# exit code 2 as against etcd 3.4 (etcdctl_lease_cases.txt)
kt_check "keep-alive --once of the expired lease fails" 2 "$rc"
grep -q "requested lease not found" "$KT_TMP/once.out" ||
    { echo "FAIL: keep-alive --once output:"; cat "$KT_TMP/once.out"; exit 1; }

# ---- minimum TTL ----------------------------------------------------------
read -r id granted < <(grant 1)
kt_check "grant 1 is raised to the minimum TTL" 2 "$granted"
ctl put --lease="$id" min/a 1 >/dev/null
wait_gone min/ 5 >/dev/null
echo "ok: a minimum-TTL lease expires"

# ---- keep-alive -------------------------------------------------------------
read -r id granted < <(grant 2)
ctl put --lease="$id" ka/a 1 >/dev/null
timeout 5 etcdctl --endpoints="$k_CLIENT" lease keep-alive "$id" \
    >"$KT_TMP/ka.out" 2>&1 &
ka=$!
sleep 4.5
kt_check "keep-alive keeps the keys past the TTL" 1 "$(count ka/)"
r=$(ttl "$id")
assert_between "TTL while kept alive" 1 2 "$r"
wait "$ka" || true
grep -q "^lease $id keepalived with TTL(2)$" "$KT_TMP/ka.out" ||
    { echo "FAIL: keep-alive output:"; cat "$KT_TMP/ka.out"; exit 1; }
echo "ok: keep-alive answers TTL(2)"
wait_gone ka/ 5 >/dev/null
echo "ok: the lease expires once keep-alive stops"

# revoke ends a running keep-alive stream (TTL 0 answer)
read -r id granted < <(grant 30)
etcdctl --endpoints="$k_CLIENT" lease keep-alive "$id" >"$KT_TMP/ka2.out" 2>&1 &
ka=$!
KT_PIDS+=("$ka")
sleep 1
ctl lease revoke "$id" >/dev/null
for ((i = 0; i < 150; i++)); do
    kill -0 "$ka" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$ka" 2>/dev/null; then
    echo "FAIL: keep-alive still running after revoke" >&2
    exit 1
fi
grep -q "^lease $id expired or revoked.$" "$KT_TMP/ka2.out" ||
    { echo "FAIL: keep-alive output:"; cat "$KT_TMP/ka2.out"; exit 1; }
echo "ok: a revoke ends a running keep-alive"

# ---- a stall is not counted against the leases -----------------------------
read -r id granted < <(grant 3)
ctl put --lease="$id" stall/a 1 >/dev/null
kill -STOP "$k_PID"
sleep 4.5
kill -CONT "$k_PID"
kt_check "a lease outlives a stall longer than its TTL" 1 "$(count stall/)"
kt_check "and can be kept alive after it" "lease $id keepalived with TTL(3)" \
    "$(ctl lease keep-alive --once "$id")"
wait_gone stall/ 8 >/dev/null
echo "ok: after the stall the lease expires"

# ---- restart: the lease survives, from its checkpointed remaining TTL ------
read -r id granted < <(grant 8)
ctl put --lease="$id" rs/a 1 >/dev/null
keep=$(grant 600)
keep=${keep% *}
ctl put --lease="$keep" long/a 1 >/dev/null
read -r rn granted < <(grant 8)
sleep 4 # checkpoints every second: remaining about 4 s
# a renewal clears the checkpointed TTL (etcd lessor.Renew), so this one
# restarts from its full TTL
kt_check "renewed before the restart" "lease $rn keepalived with TTL(8)" \
    "$(ctl lease keep-alive --once "$rn")"
sleep 0.3
stop_k
kt_start k "$KEEL_BIN"
kt_check "the lease's keys survive the restart" 1 "$(count rs/)"
rid=$(ttl "$id")
t0=$(now)
# full TTL after the restart would be 8 (+1 s election extension: 8);
# from the checkpoint: about 4 + 1.
assert_between "TTL after restart continues from the checkpoint" 2 6 "$rid"
r=$(ttl "$rn")
assert_between "a lease renewed before the restart has its full TTL" 7 9 "$r"
ctl lease revoke "$rn" >/dev/null
kt_check "granted TTL after restart" 8 \
    "$(ctl lease timetolive "$id" -w json | sed -n 's/.*"granted-ttl":\([0-9]*\).*/\1/p')"
wait_gone rs/ 10 >/dev/null
since=$((($(now) - t0) / 1000))
assert_between "then expires on time (ms after that TimeToLive)" \
    $((rid * 1000 - 500)) $((rid * 1000 + 3000 * KT_SLOW)) "$since"
kt_check "a long lease survives" 1 "$(count long/)"
r=$(ttl "$keep")
assert_between "long lease TTL after restart" $((600 - 20 * KT_SLOW)) 600 "$r"
kt_check "lease list after expiry" "found 1 leases
$keep" "$(ctl lease list)"
etcdctl --endpoints="$k_CLIENT" lease keep-alive "$keep" >/dev/null 2>&1 &
ka=$!
KT_PIDS+=("$ka")
sleep 1
stop_k # with the keep-alive stream open
kill "$ka" 2>/dev/null || true
echo "ok: lease expiry"
