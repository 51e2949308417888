#!/bin/bash
# keelctl check perf / check datascale.
#
#   test_check.sh <keelctl> [<keel>]
#
# Error paths are diffed with etcdctl 3.4 against etcd 3.4 (unknown load,
# a prefix that already has keys). etcdctl's check perf runs 60 s, too long
# for CI: keelctl's run is shortened with KEELCTL_CHECK_PERF_SECONDS (a
# test-only knob) and its report is checked line by line against
# etcdctl's format (PASS/FAIL lines, compaction and defragmentation
# lines, exit code consistent with the verdict, the prefix deleted
# afterwards), against etcd and keel; check datascale --load s runs whole.
set -u
KEELCTL=${1:?usage: test_check.sh <keelctl> [keel]}
KEEL=${2:-}
ETCDCTL=/usr/bin/etcdctl
. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
cd "$TMP" || exit 1
FAIL=0
start() { # binary name -> EP (data in $TMP/name.data, log $TMP/name.log)
    local v="$2_CLIENT"
    kt_start "$2" "$1" || { echo "$2 did not start" >&2; exit 1; }
    EP=${!v}
}
fail() { echo "FAIL: $*"; FAIL=1; }

start /usr/bin/etcd etcd
ETCD_EP=$EP
# -- errors, both tools
errors() {
    local ctl=$1
    for args in "check perf --load q" "check datascale --load huge" \
        "check perf --load xLarge --prefix /has/" \
        "check datascale --prefix /has/"; do
        echo "### $args"
        # shellcheck disable=SC2086
        "$ctl" --endpoints="$ETCD_EP" $args </dev/null 2>&1
        echo "rc=$?"
    done
}
"$ETCDCTL" --endpoints="$ETCD_EP" put /has/k v >/dev/null
errors "$ETCDCTL" >errors-etcdctl.txt
errors "$KEELCTL" >errors-keelctl.txt
if diff -u errors-etcdctl.txt errors-keelctl.txt; then
    echo "ok: check errors identical to etcdctl ($(grep -c '^###' errors-keelctl.txt) cases)"
else
    fail "check errors differ from etcdctl"
fi

perf_run() { # endpoint label
    KEELCTL_CHECK_PERF_SECONDS=2 "$KEELCTL" --endpoints="$1" check perf \
        --auto-compact --auto-defrag >perf.out 2>perf.err
    local rc=$?
    local re_ok='^(PASS: Throughput is [0-9]+ writes/s|FAIL: Throughput too low: [0-9]+ writes/s)
(PASS: Slowest request took [0-9]+\.[0-9]{6}s|Slowest request took too long: [0-9]+\.[0-9]{6}s)
(PASS: Stddev is [0-9]+\.[0-9]{6}s|Stddev too high: [0-9]+\.[0-9]{6}s)
(PASS|FAIL)$'
    local head tail
    head=$(head -4 perf.out)
    tail=$(tail -4 perf.out)
    if ! [[ "$head" =~ ^Compacting\ with\ revision\ ([0-9]+).Compacted\ with\ revision\ ([0-9]+).Defragmenting\ \"$1\".Defragmented\ \"$1\"$ ]]; then
        fail "$2: compaction/defrag lines: $head"
    elif ! [[ "$tail" =~ $re_ok ]]; then
        fail "$2: report: $tail"
    elif [ "$(tail -1 perf.out)" = PASS ] && [ $rc -ne 0 ]; then
        fail "$2: PASS with exit $rc"
    elif [ "$(tail -1 perf.out)" = FAIL ] && [ $rc -ne 1 ]; then
        fail "$2: FAIL with exit $rc"
    elif [ -n "$("$ETCDCTL" --endpoints="$1" get /etcdctl-check-perf/ --prefix --keys-only)" ]; then
        fail "$2: keys left under the prefix"
    elif [ -s perf.err ]; then
        fail "$2: stderr: $(cat perf.err)"
    else
        echo "ok: check perf report against $2 ($(tail -4 perf.out | head -1))"
    fi
}
scale_run() { # endpoint label
    "$KEELCTL" --endpoints="$1" check datascale >scale.out 2>&1
    local rc=$?
    local re='^Start data scale check for work load \[10000 key-value pairs, 1024 bytes per key-value, 50 concurrent clients\]\.
PASS: Approximate system memory used : -?[0-9]+\.[0-9]{2} MB\.$'
    if [ $rc -ne 0 ] || ! [[ "$(cat scale.out)" =~ $re ]]; then
        fail "$2: check datascale (rc $rc): $(cat scale.out)"
    elif [ -n "$("$ETCDCTL" --endpoints="$1" get /etcdctl-check-datascale/ --prefix --keys-only)" ]; then
        fail "$2: datascale keys left"
    else
        echo "ok: check datascale against $2 ($(tail -1 scale.out))"
    fi
}
# On a terminal the progress bar is drawn (etcdctl's "Bom !" format).
script -qec "KEELCTL_CHECK_PERF_SECONDS=1 $KEELCTL --endpoints=$ETCD_EP check perf" \
    /dev/null >tty.out 2>&1
if grep -q '1 / 1 Bo*!' tty.out; then
    echo "ok: check perf progress bar on a terminal"
else
    fail "no progress bar on a terminal: $(cat -v tty.out | head -3)"
fi
perf_run "$ETCD_EP" etcd
scale_run "$ETCD_EP" etcd
if [ -n "$KEEL" ]; then
    start "$KEEL" keel
    perf_run "$EP" keel
    scale_run "$EP" keel
fi
exit $FAIL
