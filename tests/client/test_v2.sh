#!/bin/bash
# keelctl with ETCDCTL_API=2 vs etcdctl 3.4: the v2 key commands (get, set,
# mk, mkdir, rm, rmdir, update, updatedir, ls): etcdctl against etcd 3.4
# started with --enable-v2, keelctl against SERVER (etcd by default, or
# keel --enable-v2), a fresh server per tool (same indexes); stdout, stderr
# and exit codes diffed.
#
#   test_v2.sh <keelctl> [SERVER]
set -u
KEELCTL=${1:?usage: test_v2.sh <keelctl> [server]}
SERVER=${2:-/usr/bin/etcd}
ETCDCTL=/usr/bin/etcdctl
. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
export ETCDCTL_API=2
trap ctl_cleanup EXIT
cd "$TMP" || exit 1
C=$(kt_free_port)
P=$(kt_free_port)
EP=http://127.0.0.1:$C

cases=("set /a 1" "get /a" "mk /a 2" "mk /b 2" "mkdir /d" "set /d/x 3"
    "set --ttl 100 /d/y 4" "ls --sort" "ls /d --sort" "ls --sort -r" "ls --sort -p"
    "ls /a" "get /nokey" "rm /a" "rm /d" "rmdir /d" "update /b 5" "update /zz 1"
    "mkdir /d" "updatedir /d --ttl 100" "updatedir /nodir --ttl 5" "get /d"
    "-o extended get /b" "set --swap-with-value 5 /b 6"
    "set --swap-with-value 9 /b 7" "set --swap-with-index 1 /b 8"
    "rm --with-value 0 /b" "rm --recursive /d" "get" "set /x" "mk /y"
    "-o extended rm /b" "mkdir /e" "rmdir /e" "rm --dir /e" "ls /nokey")
for tool in etcdctl keelctl; do
    rm -rf data
    if [ "$tool" = etcdctl ]; then BIN=/usr/bin/etcd; else BIN=$SERVER; fi
    "$BIN" --enable-v2 --name v2 --data-dir data \
        --listen-client-urls "$EP" --advertise-client-urls "$EP" \
        --listen-peer-urls "http://127.0.0.1:$P" \
        --initial-advertise-peer-urls "http://127.0.0.1:$P" \
        --initial-cluster "v2=http://127.0.0.1:$P" >"etcd-$tool.log" 2>&1 &
    CTL_PID=$!
    for _ in $(seq 100); do
        curl -fsS -m 1 "$EP/health" >/dev/null 2>&1 && break
        sleep 0.1
    done
    # the member's attributes and the cluster version are published
    # through the v2 store's index (3 on one member) a moment after
    # /health: wait, so the first case gets the same index on both
    for _ in $(seq 100); do
        curl -sS -m 1 -o /dev/null -D - "$EP/v2/keys/" 2>/dev/null |
            tr -d '\r' | grep -qix 'x-etcd-index: 3' && break
        sleep 0.1
    done
    if [ "$tool" = etcdctl ]; then CTL=$ETCDCTL; else CTL=$KEELCTL; fi
    for c in "${cases[@]}"; do
        echo "### $c"
        # shellcheck disable=SC2086
        "$CTL" --endpoints="$EP" $c </dev/null 2>&1
        echo "rc=$?"
    done >"$tool.out"
    ctl_stop
done
if diff -u etcdctl.out keelctl.out; then
    echo "ok: ${#cases[@]} v2 cases identical to etcdctl (keelctl on $(basename "$SERVER") --enable-v2)"
    exit 0
fi
echo "FAIL: keelctl (ETCDCTL_API=2) differs from etcdctl"
exit 1
