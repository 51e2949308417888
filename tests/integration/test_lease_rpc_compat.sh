#!/usr/bin/env bash
# Differential test of the Lease service over gRPC with requests etcdctl
# cannot make (explicit and extreme lease ids, a taken id, TTL limits,
# unknown leases in every RPC, several keep-alives on one stream): the
# lease_rpc tool runs lease_rpc_cases.txt against a fresh real etcd 3.4 and
# a fresh keel on the same ports; the answers must be identical.
#   usage: test_lease_rpc_compat.sh KEEL_BIN LEASE_RPC_BIN [CASES]
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
RPC_BIN=${2:?lease_rpc binary}
CASES=${3:-$(dirname "$0")/lease_rpc_cases.txt}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)

run_script() { # $1 = server binary, $2 = output file
    local bin=$1 out=$2 dir="$KT_TMP/data.$(basename "$1")"
    rm -rf "$dir"
    "$bin" --name default --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$CPORT" \
        --advertise-client-urls "http://127.0.0.1:$CPORT" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "default=http://127.0.0.1:$PPORT" \
        >"$KT_TMP/$(basename "$bin").log" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    kt_wait_http "http://127.0.0.1:$CPORT/health" 30
    "$RPC_BIN" "127.0.0.1:$CPORT" <"$CASES" >"$out" 2>&1
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    if [ "$bin" = "$KEEL_BIN" ] && [ "$rc" -ne 0 ]; then
        echo "FAIL: keel exited with $rc after SIGTERM" >&2
        exit 1
    fi
}

run_script "$ETCD_BIN" "$KT_TMP/etcd.out"
run_script "$KEEL_BIN" "$KT_TMP/keel.out"
if ! diff -u "$KT_TMP/etcd.out" "$KT_TMP/keel.out" >"$KT_TMP/diff"; then
    echo "FAIL: lease RPC answers differ between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
echo "ok: $(grep -c '^### ' "$KT_TMP/keel.out") lease RPCs answer as on etcd 3.4"
