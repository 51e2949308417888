#!/bin/bash
# Differential test: keelctl must print what etcdctl 3.4 prints.
#
#   diff_etcdctl.sh <keelctl> [<etcdctl>]
#
# Runs the case list of ctl_cases.sh twice, once with the real etcdctl and
# once with keelctl, each against its own freshly started real etcd 3.4
# (same name, ports and flags, hence the same cluster/member IDs and the
# same revisions), normalises what must differ (timestamps, the client
# UUID in clientv3's log line, durations, lease IDs) and diffs stdout,
# stderr and exit codes. Everything started is stopped by the trap.
set -u
KEELCTL=${1:?usage: diff_etcdctl.sh <keelctl> [etcdctl]}
ETCDCTL=${2:-/usr/bin/etcdctl}
ETCD=${ETCD:-/usr/bin/etcd}
HERE=$(cd "$(dirname "$0")" && pwd)

. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
trap ctl_cleanup EXIT

CPORT=$(kt_free_port)
PPORT=$(kt_free_port)
kt_dead_port
DEAD=127.0.0.1:$KT_DEAD_PORT # refuses connections (bound, not listening)
ENDPOINT=127.0.0.1:$CPORT

start_etcd() {
    "$ETCD" --name default --data-dir "$TMP/data-$1" \
        --listen-client-urls "http://$ENDPOINT" \
        --advertise-client-urls "http://$ENDPOINT" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" --bcrypt-cost=4 \
        >"$TMP/etcd-$1.log" 2>&1 &
    CTL_PID=$!
    for _ in $(seq 100); do
        if "$ETCDCTL" --endpoints="$ENDPOINT" --command-timeout=1s \
            endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "etcd did not start:" >&2
    cat "$TMP/etcd-$1.log" >&2
    exit 1
}

stop_etcd() { ctl_stop; }

# shellcheck source=ctl_cases.sh
. "$HERE/ctl_cases.sh"

run_tool() { # name binary
    start_etcd "$1"
    CTL=$2
    OUT=$TMP/$1.out
    : >"$OUT"
    : >"$TMP/leases"
    ctl_cases
    # The leases still alive are part of what must be normalised.
    "$ETCDCTL" --endpoints="$ENDPOINT" lease list | tail -n +2 >>"$TMP/leases"
    stop_etcd
    python3 "$HERE/normalise.py" "$TMP/leases" <"$OUT" >"$TMP/$1.norm"
}

run_tool etcdctl "$ETCDCTL"
run_tool keelctl "$KEELCTL"

if [ -n "${KEEL_DIFF_OUT:-}" ]; then # keep the transcripts for a look
    cp "$TMP/etcdctl.norm" "$TMP/keelctl.norm" "$KEEL_DIFF_OUT/"
fi
if diff -u "$TMP/etcdctl.norm" "$TMP/keelctl.norm" >"$TMP/diff"; then
    echo "keelctl matches etcdctl on $(grep -c '^### ' "$TMP/keelctl.norm") commands"
    exit 0
fi
echo "keelctl differs from etcdctl:"
cat "$TMP/diff"
exit 1
