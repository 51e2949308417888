#!/bin/bash
# Time from kill -9 of the leader of a three-member cluster to the first
# successful write (etcdctl put through the two survivors, retried every
# 10 ms with a 200 ms command timeout, CMD_TIMEOUT to change), RUNS times on one cluster (the killed
# member restarts and the cluster is healthy again between runs). Prints
# each run and the median, in ms. Same flags for keel and etcd: etcd's
# defaults (--heartbeat-interval 100, --election-timeout 1000).
#   usage: bench/cluster_failover.sh BIN [RUNS]     (BIN: keel or /usr/bin/etcd)
BIN=${1:?keel or etcd binary}
RUNS=${2:-7}
D=$(dirname "$0")/../tests/integration
. "$D/lib.sh"
. "$D/cluster_lib.sh"
now_ms() { date +%s%3N; }

kc_init b 3
kc_start_all "$BIN" b
times=()
for ((r = 1; r <= RUNS; r++)); do
    L=$(kc_wait_leader b)
    # let followers settle (heartbeats flowing, peers connected)
    sleep 2
    SURV=""
    for i in 1 2 3; do [ "$i" != "$L" ] && SURV+="${SURV:+,}$(kc_ep b "$i")"; done
    T0=$(now_ms)
    kc_stop b "$L" KILL
    while ! etcdctl --endpoints="$SURV" --command-timeout=${CMD_TIMEOUT:-200ms} put /bench/failover "$r" \
        >/dev/null 2>&1; do
        sleep 0.01
    done
    T1=$(now_ms)
    times+=($((T1 - T0)))
    echo "run $r: leader b$L killed -> first write $((T1 - T0)) ms"
    kc_start "$BIN" b "$L"
    kc_wait_ready b "$L"
done
printf '%s\n' "${times[@]}" | sort -n |
    awk '{v[NR]=$1} END {printf "median %d ms over %d runs (min %d, max %d)\n", v[int((NR+1)/2)], NR, v[1], v[NR]}'
