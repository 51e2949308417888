#!/usr/bin/env bash
# Python's etcd3gw (Debian python3-etcd3gw, a real v3 JSON gateway client)
# runs gateway_client.py against a fresh real etcd 3.4 and a fresh keel on
# the same ports; the printed results must be identical. Both /v3/ and
# /v3beta/ (etcd3gw's default /v3alpha/ is not served by etcd 3.4).
#   usage: test_gateway_client.sh KEEL_BIN [watch]
# With "watch", etcd3gw's watch_once/watch_prefix_once run too.
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
WATCH=${2:-}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
PY=/usr/bin/python3
if ! "$PY" -c 'import etcd3gw' 2>/dev/null; then
    echo "FAIL: python3-etcd3gw is not installed (apt-get install python3-etcd3gw)" >&2
    exit 1
fi
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)

run() { # $1 = server binary, $2 = output file
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
    for api in /v3/ /v3beta/; do
        echo "## $api" >>"$out"
        "$PY" "$(dirname "$0")/gateway_client.py" 127.0.0.1 "$CPORT" "$api" $WATCH \
            >>"$out" 2>&1 || echo "exit: $?" >>"$out"
    done
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    if [ "$bin" = "$KEEL_BIN" ] && [ "$rc" -ne 0 ]; then
        echo "FAIL: keel exited with $rc after SIGTERM" >&2
        exit 1
    fi
}

run "$ETCD_BIN" "$KT_TMP/etcd.out"
run "$KEEL_BIN" "$KT_TMP/keel.out"
if ! diff -u "$KT_TMP/etcd.out" "$KT_TMP/keel.out" >"$KT_TMP/diff"; then
    echo "FAIL: etcd3gw results differ between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
n=$(grep -c ' -> ' "$KT_TMP/keel.out")
echo "ok: $n etcd3gw calls give the same results on keel as on etcd 3.4"
