#!/usr/bin/env bash
# SIGTERM while clients are busy: keel stops accepting, lets in-flight
# requests finish, syncs and exits 0 (with a watch stream still open); every
# put a client saw acknowledged is there after the restart.
#   usage: test_graceful_stop.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)
EP="127.0.0.1:$CPORT"
start_keel() {
    "$KEEL_BIN" --name default --data-dir "$KT_TMP/data" \
        --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "default=http://127.0.0.1:$PPORT" \
        >>"$KT_TMP/keel.log" 2>&1 &
    PID=$!
    KT_PIDS+=("$PID")
    kt_wait_http "http://$EP/health" 30
}

start_keel
etcdctl --endpoints="$EP" watch --prefix w >"$KT_TMP/watch.out" 2>&1 &
WPID=$!
KT_PIDS+=("$WPID")
# two writers acknowledging puts as fast as they can
WRITERS=()
for wr in a b; do
    (for i in $(seq 1 400); do
         out=$(etcdctl --endpoints="$EP" --dial-timeout=1s --command-timeout=3s put "w/$wr$i" x 2>/dev/null) || true
         # the first refused put is the stop: the writer ends there
         if [ "$out" = OK ]; then echo "w/$wr$i"; else break; fi
     done >"$KT_TMP/acked.$wr") &
    WRITERS+=("$!")
    KT_PIDS+=("$!")
done
sleep 1.5
t0=$(date +%s%N)
kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
kt_check "keel exits 0 on SIGTERM under load, with a watch open" 0 "$rc"
[ "$ms" -lt 10000 ] || { echo "FAIL: stop took ${ms} ms" >&2; exit 1; }
echo "ok: stopped in ${ms} ms"
kill "$WPID" 2>/dev/null || true
wait "$WPID" 2>/dev/null || true
wait "${WRITERS[@]}" || true
n=$(cat "$KT_TMP"/acked.* | wc -l)
[ "$n" -gt 0 ] || { echo "FAIL: no put was acknowledged before the stop" >&2; exit 1; }
grep -q '^w/' "$KT_TMP/watch.out" || { echo "FAIL: the watch saw no event" >&2; exit 1; }
start_keel
missing=0
while read -r k; do
    v=$(etcdctl --endpoints="$EP" get "$k" --print-value-only)
    [ "$v" = x ] || { echo "lost acknowledged put: $k" >&2; missing=$((missing + 1)); }
done < <(cat "$KT_TMP"/acked.*)
kt_check "acknowledged puts lost across the graceful stop" 0 "$missing"
kill -TERM "$PID"
wait "$PID" || true
echo "ok: $n acknowledged puts survived a SIGTERM under load"
