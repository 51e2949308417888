#!/bin/bash
# Lease renewals and TimeToLive sent to a follower of a three-member keel
# cluster are forwarded to the leader (etcd 3.4 does it over its peer port):
# `lease keep-alive --once` and `lease timetolive --keys` through a follower
# print what they print through the leader, and what a three-member etcd 3.4
# prints through a follower; an unknown lease gives etcd's text and exit
# code; a lease kept alive only through a follower outlives its TTL, and
# expires once the renewals stop.
#   usage: test_cluster_lease.sh KEEL_BIN
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

# etcdctl against endpoint $1 with the rest as arguments: stdout and stderr
# (client log lines dropped), the lease id as <id>, then the exit code.
ctl() {
    local ep=$1 rc=0 out
    shift
    out=$(etcdctl --endpoints="$ep" "$@" 2>&1) || rc=$?
    printf '%s rc=%s\n' "$(grep -v '^{' <<<"$out" | sed -E "s/\b$ID\b/<id>/g")" "$rc"
}

# The lease cases through member $2 of cluster $1 (leader $3), printed.
cases() {
    local p=$1 ep
    ep=$(kc_ep "$p" "$2")
    ctl "$ep" lease keep-alive --once "$ID"
    # remaining() depends on when it is asked: checked apart
    ctl "$ep" lease timetolive --keys "$ID" | sed -E 's/remaining\([0-9]+s\)/remaining(N)/'
    ctl "$ep" lease timetolive "$ID" | sed -E 's/remaining\([0-9]+s\)/remaining(N)/'
    ctl "$ep" lease keep-alive --once 1234
    ctl "$ep" lease timetolive 1234
    ctl "$ep" lease timetolive --keys 1234
}

# Grant on the leader of cluster $1, attach a key (one: etcd lists several
# in no fixed order); prints the cases
# through a follower after checking they match the leader's.
run() {
    local p=$1 L F via_leader via_follower
    L=$(kc_wait_leader "$p")
    F=$((L % 3 + 1))
    ID=$(etcdctl --endpoints="$(kc_ep "$p" "$L")" lease grant 100 | awk '{print $2}')
    etcdctl --endpoints="$(kc_ep "$p" "$L")" put --lease="$ID" /a 1 >/dev/null
    via_leader=$(cases "$p" "$L")
    via_follower=$(cases "$p" "$F")
    kt_check "$p: through a follower as through the leader" "$via_leader" "$via_follower" >&2
    printf '%s\n' "$via_follower"
}

kc_init k 3
kc_start_all "$KEEL_BIN" k
keel_out=$(run k)
printf '%s\n' "$keel_out"
grep -q "lease <id> keepalived with TTL(100) rc=0" <<<"$keel_out"
grep -q "attached keys(\[/a\]) rc=0" <<<"$keel_out"
echo "ok: keep-alive and timetolive --keys answered by a follower"

if [ -x "$ETCD_BIN" ] && [ "${KEEL_SANITIZED:-0}" != 1 ]; then
    kc_init e 3
    kc_start_all "$ETCD_BIN" e
    etcd_out=$(run e)
    kt_check "through a follower as a three-member etcd 3.4" "$etcd_out" "$keel_out"
    for i in 1 2 3; do kc_stop e "$i" TERM; done
fi

# -- kept alive only through a follower, past its TTL ------------------------
L=$(kc_wait_leader k)
F=$((L % 3 + 1))
LEP=$(kc_ep k "$L")
FEP=$(kc_ep k "$F")
TTL=4
ID=$(etcdctl --endpoints="$LEP" lease grant "$TTL" | awk '{print $2}')
etcdctl --endpoints="$LEP" put --lease="$ID" /kept v >/dev/null
end=$((SECONDS + TTL * 3))
while [ "$SECONDS" -lt "$end" ]; do
    kt_check "keep-alive through the follower" "lease <id> keepalived with TTL($TTL) rc=0" \
        "$(ctl "$FEP" lease keep-alive --once "$ID")" >/dev/null
    sleep 1
done
kt_check "the key outlived its lease's TTL ($TTL s) by $((TTL * 2)) s" "v" \
    "$(etcdctl --endpoints="$LEP" get /kept --print-value-only)"
rem=$(etcdctl --endpoints="$FEP" lease timetolive "$ID" | sed -nE 's/.*remaining\(([0-9]+)s\).*/\1/p')
[ -n "$rem" ] && [ "$rem" -gt 0 ] && [ "$rem" -le "$TTL" ] ||
    { echo "FAIL: remaining '$rem' after renewals" >&2; exit 1; }
echo "ok: remaining($rem s) through the follower"
# without renewals it expires (so the renewals above were what kept it)
for ((t = 0; t < (TTL + 10) * KT_SLOW * 5; t++)); do
    [ -z "$(etcdctl --endpoints="$FEP" get /kept --print-value-only)" ] && break
    sleep 0.2
done
kt_check "the lease expires once the renewals stop" "" \
    "$(etcdctl --endpoints="$FEP" get /kept --print-value-only)"
kt_check "then keep-alive through the follower" \
    "Error: etcdserver: requested lease not found rc=2" \
    "$(ctl "$FEP" lease keep-alive --once "$ID")"
for i in 1 2 3; do kc_stop k "$i" TERM; done
echo PASS
