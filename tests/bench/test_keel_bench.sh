#!/usr/bin/env bash
# keel-bench smoke test: start keel on free ports, run each workload with a
# tiny --total, check that the JSON report parses and that its counts add up
# (ok + errors = total, no errors, histogram counts = ok, watch events =
# puts x watchers); then a dead endpoint must give a clear error and exit 1.
# Usage: test_keel_bench.sh KEEL_BIN KEEL_BENCH_BIN
. "$(dirname "$0")/../integration/lib.sh"
KEEL=$1
BENCH=$2

kt_start k "$KEEL"
EP="--endpoints=$k_CLIENT"

check_json() { # FILE WORKLOAD TOTAL [WATCHERS]
    /usr/bin/python3 - "$@" <<'PY'
import json, sys
path, wl, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
watchers = int(sys.argv[4]) if len(sys.argv) > 4 else 0
d = json.load(open(path))
def need(cond, what):
    if not cond:
        sys.exit("FAIL %s: %s\n%s" % (wl, what, json.dumps(d)[:2000]))
need(d["workload"] == wl, "workload name")
need(d["total"] == total, "total")
need(d["ok"] + d["errors"] == d["total"], "ok + errors = total")
need(d["errors"] == 0 and d["error_messages"] == [], "no errors")
lat = d["latency_ms"]
need(lat["count"] == d["ok"], "one latency per ok request")
need(sum(c for _, c in lat["histogram"]) == lat["count"], "histogram sums")
need(0 < lat["fastest"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
     <= lat["p99.9"] <= lat["slowest"], "percentiles ordered")
need(lat["fastest"] <= lat["average"] <= lat["slowest"], "average in range")
need(d["duration_s"] > 0 and d["requests_per_s"] > 0, "rate")
if watchers:
    need(d["watchers"] == watchers, "watchers")
    need(d["events_expected"] == watchers * total, "events expected")
    need(d["events"] == d["events_expected"] and d["events_missing"] == 0,
         "every event delivered")
    ev = d["event_latency_ms"]
    need(ev["count"] == d["events"], "one latency per event")
    need(0 < ev["p50"] <= ev["p99"] <= ev["slowest"], "event percentiles")
print("ok", wl, d["ok"], "requests", d.get("events", ""))
PY
}

run() { # WORKLOAD TOTAL WATCHERS -- flags...
    local wl=$1 total=$2 watchers=$3
    shift 3
    local out="$KT_TMP/$wl.json"
    # a hang is a failure too: at most 60 s per run (timeout exits 124)
    timeout -k 5 60 "$BENCH" "$EP" --total "$total" -w json "$@" "$wl" \
        >"$out" 2>"$KT_TMP/$wl.err" || {
        echo "FAIL: keel-bench $wl $* exited $?" >&2
        cat "$KT_TMP/$wl.err" "$out" >&2
        exit 1
    }
    if [ "$watchers" -gt 0 ]; then
        check_json "$out" "$wl" "$total" "$watchers"
    else
        check_json "$out" "$wl" "$total"
    fi
}

run put 300 0 --conns 2 --clients 8 --key-space-size 50
run put 50 0 --sequential-keys --key-size 16 --val-size 100
run range 300 0 --conns 2 --clients 8 --key-space-size 50
run range 300 0 --clients 4 --key-space-size 50 --consistency s
run txn-put 100 0 --clients 4 --txn-ops 3 --key-space-size 20
run txn-mixed 200 0 --clients 4 --rw-ratio 2 --key-space-size 20
run lease-keepalive 200 0 --conns 2 --clients 4
run watch 40 30 --conns 2 --clients 4 --streams 3 --watch-per-stream 10
run watch-latency 20 10 --streams 2 --watch-per-stream 5 --rate 200
# --rate paces: 30 requests at 100/s take at least ~0.29 s
run put 30 0 --rate 100 --clients 2
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["duration_s"] >= 0.25 else "FAIL: --rate 100 did not pace: %s s" % d["duration_s"])
' "$KT_TMP/put.json"

# the simple report has etcd benchmark's sections
timeout -k 5 60 "$BENCH" "$EP" --total 20 --no-progress put >"$KT_TMP/simple.txt"
for s in "Summary:" "Requests/sec:" "Response time histogram:" "Latency distribution:" "99.9% in"; do
    grep -q "$s" "$KT_TMP/simple.txt" || { echo "FAIL: no '$s' in the simple report" >&2; cat "$KT_TMP/simple.txt" >&2; exit 1; }
done

# error paths: a dead endpoint, an unknown workload, a bad flag
dead=$(kt_free_port)
set +e
timeout -k 5 60 "$BENCH" --endpoints="127.0.0.1:$dead" --dial-timeout 500 --total 5 put >"$KT_TMP/dead.out" 2>"$KT_TMP/dead.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "FAIL: dead endpoint exit status $rc, want 1" >&2; exit 1; }
grep -q "127.0.0.1:$dead does not serve" "$KT_TMP/dead.err" &&
    grep -q "connection refused" "$KT_TMP/dead.err" ||
    { echo "FAIL: unclear dead-endpoint error:" >&2; cat "$KT_TMP/dead.err" >&2; exit 1; }
set +e
timeout -k 5 60 "$BENCH" "$EP" frobnicate 2>"$KT_TMP/bad.err"; rc1=$?
timeout -k 5 60 "$BENCH" "$EP" --total nope put 2>>"$KT_TMP/bad.err"; rc2=$?
set -e
[ "$rc1" -eq 1 ] && [ "$rc2" -eq 1 ] && grep -q "unknown workload frobnicate" "$KT_TMP/bad.err" &&
    grep -q "invalid value nope for total" "$KT_TMP/bad.err" ||
    { echo "FAIL: bad arguments: $rc1 $rc2" >&2; cat "$KT_TMP/bad.err" >&2; exit 1; }
# a server that dies mid-run: the run ends (requests past --timeout count as
# errors), exit status 2, and the report still adds up
kt_start victim "$KEEL"
timeout -k 5 60 "$BENCH" --endpoints="$victim_CLIENT" -w json --total 300 \
    --clients 100 --rate 200 --timeout 500 put >"$KT_TMP/victim.json" \
    2>"$KT_TMP/victim.err" &
bpid=$!
sleep 0.5
kill -KILL "$victim_PID"
set +e
wait "$bpid"
rc=$?
set -e
[ "$rc" -eq 2 ] || { echo "FAIL: server killed mid-run: exit $rc, want 2" >&2; cat "$KT_TMP/victim.err" >&2; exit 1; }
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["ok"] + d["errors"] == d["total"] == 300, d
assert d["ok"] > 0 and d["errors"] > 0, d
assert sum(e["count"] for e in d["error_messages"]) == d["errors"], d
print("ok killed server:", d["ok"], "ok,", d["errors"], "errors")
' "$KT_TMP/victim.json"
echo "keel-bench smoke test passed"
