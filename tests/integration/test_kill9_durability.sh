#!/usr/bin/env bash
# Durability through the real binary: every put that etcdctl saw
# acknowledged ("OK") survives a kill -9 of keel right after the reply, and
# the restarted member serves the same revision it had.
#   usage: test_kill9_durability.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
ROUNDS=${ROUNDS:-5}
[ -n "${KEEL_SANITIZED:-}" ] && ROUNDS=3
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)
DIR="$KT_TMP/data"
EP="127.0.0.1:$CPORT"

start_keel() {
    "$KEEL_BIN" --name default --data-dir "$DIR" \
        --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "default=http://127.0.0.1:$PPORT" \
        >>"$KT_TMP/keel.log" 2>&1 &
    PID=$!
    KT_PIDS+=("$PID")
    kt_wait_http "http://$EP/health" 30
}

acked=0
for round in $(seq 1 "$ROUNDS"); do
    start_keel
    # all keys acknowledged so far are there after the restart
    got=$(etcdctl --endpoints="$EP" get --prefix dur/ --limit 1 -w json |
          python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))')
    kt_check "round $round: $acked acknowledged keys survived kill -9" "$acked" "$got"
    n=$((20 + RANDOM % 30))
    for i in $(seq 1 "$((n - 1))"); do
        key=$(printf 'dur/%02d-%03d' "$round" "$i")
        out=$(etcdctl --endpoints="$EP" put "$key" "v$i" 2>&1) || true
        [ "$out" = OK ] && acked=$((acked + 1))
    done
    # the last put: kill -9 the moment its reply is in
    last=$(printf 'dur/%02d-%03d' "$round" "$n")
    rev=$(etcdctl --endpoints="$EP" put "$last" "v$n" -w json |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
    kill -KILL "$PID"
    acked=$((acked + 1))
    wait "$PID" 2>/dev/null || true
    start_keel
    rev2=$(etcdctl --endpoints="$EP" get dur/ --prefix --limit 1 -w json |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
    kt_check "round $round: revision after restart" "$rev" "$rev2"
    val=$(etcdctl --endpoints="$EP" get "$last" --print-value-only)
    kt_check "round $round: the last acknowledged put, killed right after" "v$n" "$val"
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
done
echo "ok: $acked acknowledged puts survived $ROUNDS kill -9 rounds"
