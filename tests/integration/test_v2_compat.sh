#!/usr/bin/env bash
# Differential test of the v2 API (--enable-v2): the cases of v2_cases.txt
# (HTTP requests and ETCDCTL_API=2 etcdctl commands, watches, TTL expiry,
# the 1000-event history) run by v2_client.py against a fresh etcd 3.4 and
# then a fresh keel, on the SAME ports, name and flags (so member and
# cluster ids are equal). Status, X-Etcd-Index, Content-Type and bodies,
# etcdctl stdout/stderr/exit codes must match; only clock readings (ttl,
# expiration) and the ports are normalised.
#   usage: test_v2_compat.sh KEEL_BIN [CASES]
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
CASES=${2:-$(dirname "$0")/v2_cases.txt}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)

run_cases() { # $1 = server binary, $2 = output file
    local bin=$1 out=$2 dir="$KT_TMP/data.$(basename "$1")"
    rm -rf "$dir"
    "$bin" --enable-v2 --name default --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$CPORT" \
        --advertise-client-urls "http://127.0.0.1:$CPORT" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "default=http://127.0.0.1:$PPORT" \
        >"$KT_TMP/$(basename "$bin").log" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    kt_wait_http "http://127.0.0.1:$CPORT/health" 30
    # etcd publishes its cluster version a moment after /health answers:
    # wait until both writes of the cluster namespace are in (index 3), so
    # the first case gets the same index on both.
    local i
    for ((i = 0; i < 100; i++)); do
        [ "$(curl -s -o /dev/null -D - "http://127.0.0.1:$CPORT/v2/keys/" |
            tr -d '\r' | awk -F': ' 'tolower($1)=="x-etcd-index"{print $2}')" = 3 ] && break
        sleep 0.1
    done
    python3 "$(dirname "$0")/v2_client.py" "127.0.0.1:$CPORT" "$CASES" >"$out"
    kill -TERM "$pid"
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    # keel exits 0 on SIGTERM (under ASan: no leak, no error at exit)
    if [ "$bin" = "$KEEL_BIN" ] && [ "$rc" -ne 0 ]; then
        echo "FAIL: keel exited $rc after SIGTERM" >&2
        exit 1
    fi
}

run_cases "$ETCD_BIN" "$KT_TMP/etcd.out"
run_cases "$KEEL_BIN" "$KT_TMP/keel.out"
n=$(grep -c '^### ' "$KT_TMP/etcd.out")
if ! diff -u "$KT_TMP/etcd.out" "$KT_TMP/keel.out"; then
    echo "FAIL: keel's v2 API differs from etcd 3.4 (above: - etcd, + keel)"
    exit 1
fi
echo "ok: $n v2 cases identical to etcd 3.4 --enable-v2"
