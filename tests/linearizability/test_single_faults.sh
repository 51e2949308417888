#!/usr/bin/env bash
# Linearizability of one member under faults, keel and etcd 3.4 alike:
# keel-linwork's clients reach the server through keel-faultproxy while it
# is killed -9 and restarted, stopped past the clients' timeout (their
# writes end "unknown" and may still apply after SIGCONT), its client
# connections reset and delayed; the history must be linearizable, with
# unknown outcomes in it.
#   usage: test_single_faults.sh KEEL_BIN LINWORK LINCHECK PROXY
. "$(dirname "$0")/../integration/lib.sh"
KEEL_BIN=${1:?keel binary}
LINWORK=${2:?keel-linwork}
LINCHECK=${3:?keel-lincheck}
PROXY=${4:?keel-faultproxy}
SECS=16

run() {
    local name=$1 bin=$2
    local cport pport xport dir="$KT_TMP/$name.data" ctl="$KT_TMP/$name.ctl"
    local h="$KT_TMP/$name.history" log="$KT_TMP/$name.log"
    cport=$(kt_free_port); pport=$(kt_free_port); xport=$(kt_free_port)
    local pid
    start() {
        "$bin" --name "$name" --data-dir "$dir" \
            --listen-client-urls "http://127.0.0.1:$cport" \
            --advertise-client-urls "http://127.0.0.1:$cport" \
            --listen-peer-urls "http://127.0.0.1:$pport" \
            --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
            --initial-cluster "$name=http://127.0.0.1:$pport" \
            >>"$log" 2>&1 &
        pid=$!
        KT_PIDS+=("$pid")
        kt_wait_http "http://127.0.0.1:$cport/health" 30
    }
    start
    "$PROXY" --control "$ctl" --route "127.0.0.1:$xport=127.0.0.1:$cport" \
        >"$KT_TMP/$name.proxy.log" 2>&1 &
    KT_PIDS+=($!)
    for _ in $(seq 50); do "$PROXY" ctl "$ctl" status >/dev/null 2>&1 && break; sleep 0.1; done
    "$LINWORK" --endpoints "127.0.0.1:$xport" --output "$h" --duration $SECS \
        --clients 6 --keys 3 --timeout 800 2>"$KT_TMP/$name.linwork" &
    local wpid=$!
    KT_PIDS+=("$wpid")
    sleep 2
    echo "$name: kill -9, restart"
    kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5; start
    sleep 1.5
    echo "$name: SIGSTOP 2s (clients time out after 0.8s)"
    kill -STOP "$pid"; sleep 2; kill -CONT "$pid"
    sleep 1.5
    echo "$name: reset client connections, then 300ms delay for 2s"
    "$PROXY" ctl "$ctl" reset all >/dev/null
    "$PROXY" ctl "$ctl" delay all 300ms >/dev/null
    sleep 2
    "$PROXY" ctl "$ctl" heal all >/dev/null
    sleep 1.5
    echo "$name: kill -9, restart"
    kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
    sleep 0.5; start
    local rc=0
    wait "$wpid" || rc=$?
    cat "$KT_TMP/$name.linwork"
    kt_check "$name: keel-linwork ran" 0 "$rc"
    local unknown
    unknown=$(grep -c '"outcome":"unknown"' "$h" || true)
    [ "$unknown" -gt 0 ] || { echo "FAIL: $name: no unknown outcome recorded" >&2; exit 1; }
    rc=0
    "$LINCHECK" "$h" || rc=$?
    kt_check "$name: $(wc -l <"$h") ops ($unknown unknown) through kill -9, SIGSTOP, resets: linearizable" 0 "$rc"
}

run keel "$KEEL_BIN"
run etcd /usr/bin/etcd
