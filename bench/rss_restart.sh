#!/bin/bash
# RSS of one keel member under a long write stream, data dir size, and the
# restart time with that data (docs/BENCHMARKS.md, "Raft log compaction").
#
#   bench/rss_restart.sh <keel> <keel-bench> <N puts> [client port]
#
# Starts <keel> on a fresh data dir (loopback, one member), loads N keys
# (16-byte keys, 256-byte values, 100 connections, 1000 clients), prints
# RssAnon/RssFile from /proc, SIGTERMs it, prints the data dir and WAL
# sizes, restarts it on that data dir and times spawn -> first served
# serializable Range (polled every 0.5 ms), then prints RSS again.
set -u
KEEL=$1; BENCH=$2; N=$3; P=${4:-24379}; PP=$((P + 1))
D=$(mktemp -d /tmp/keel-rss-XXXXXX)
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf $D' EXIT
args=(--name m --data-dir $D/data
      --listen-client-urls http://127.0.0.1:$P --advertise-client-urls http://127.0.0.1:$P
      --listen-peer-urls http://127.0.0.1:$PP --initial-advertise-peer-urls http://127.0.0.1:$PP
      --initial-cluster m=http://127.0.0.1:$PP)
rss() { awk '/RssAnon|RssFile/ {printf "%s %d MiB  ", $1, $2/1024}' /proc/$1/status; echo; }
wait_up() {
    for _ in $(seq 1 20000); do
        $BENCH --endpoints=127.0.0.1:$P --total=1 range k --consistency s >/dev/null 2>&1 && return 0
        sleep 0.0005
    done
    return 1
}
$KEEL "${args[@]}" >$D/log1 2>&1 & pid=$!
wait_up || { echo "keel did not start"; tail $D/log1; exit 1; }
$BENCH --endpoints=127.0.0.1:$P --conns=100 --clients=1000 --total=$N --key-size=16 \
    --val-size=256 --sequential-keys put 2>&1 | grep -E "requests|Requests/sec"
sleep 1
echo -n "after $N puts: "; rss $pid
kill -TERM $pid; wait $pid
echo "data dir: $(du -sm $D/data | cut -f1) MiB, of which WAL: $(du -sm $D/data/member/wal | cut -f1) MiB"
t0=$(date +%s%N)
$KEEL "${args[@]}" >$D/log2 2>&1 & pid=$!
wait_up || { echo "keel did not restart"; tail $D/log2; exit 1; }
t1=$(date +%s%N)
echo "restart to first served range: $(( (t1 - t0) / 1000000 )) ms"
echo -n "after restart: "; rss $pid
