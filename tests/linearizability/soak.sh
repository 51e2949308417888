#!/usr/bin/env bash
# Soak: cluster_faults.sh for hours on one cluster, in rounds of --round
# seconds (default 300); each round's history is checked, and every
# history and log is kept under --keep (default ./soak-<date>). Not in
# ctest.
#   usage: soak.sh DURATION [--etcd] [--members N] [--round SECS]
#                  [--build DIR] [--keep DIR]
#   DURATION: seconds, or with a unit: 90m, 4h
# Exit status as cluster_faults.sh (77: keel has no clusters yet).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DUR=${1:?usage: soak.sh DURATION [--etcd] [--round SECS] [--build DIR] [--keep DIR]}
shift
case $DUR in
    *h) DUR=$((${DUR%h} * 3600)) ;;
    *m) DUR=$((${DUR%m} * 60)) ;;
    *s) DUR=${DUR%s} ;;
esac
ROUND=300
BUILD="$ROOT/build"
KEEP="$PWD/soak-$(date +%Y%m%d-%H%M%S)"
EXTRA=()
while [ $# -gt 0 ]; do
    case $1 in
        --etcd) EXTRA+=(--etcd) ;;
        --members) EXTRA+=(--members "$2"); shift ;;
        --round) ROUND=$2; shift ;;
        --build) BUILD=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
ROUNDS=$(((DUR + ROUND - 1) / ROUND))
B="$BUILD/bin"
# hours of writes: keep the revision history bounded, as a real cluster would
export MEMBER_FLAGS="${MEMBER_FLAGS:---auto-compaction-mode=revision --auto-compaction-retention=100000}"
echo "soak: $ROUNDS rounds of ${ROUND}s, histories and logs in $KEEP"
exec "$HERE/cluster_faults.sh" "$B/keel" "$B/keel-linwork" "$B/keel-lincheck" \
    "$B/keel-faultproxy" --duration "$ROUND" --rounds "$ROUNDS" \
    --keep "$KEEP" "${EXTRA[@]}"
