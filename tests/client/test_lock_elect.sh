#!/bin/bash
# keelctl lock / elect vs etcdctl 3.4: one scripted scenario run with each
# tool against its own fresh server (same flags, so the same revisions),
# background holders and waiters included; every process's stdout, stderr
# and exit code is recorded in order and the normalised transcripts diffed
# (lease ids, which are time-based, are replaced).
#
#   test_lock_elect.sh <keelctl> [<server binary>]   (default /usr/bin/etcd)
set -u
KEELCTL=${1:?usage: test_lock_elect.sh <keelctl> [server]}
SERVER=${2:-/usr/bin/etcd}
ETCDCTL=/usr/bin/etcdctl
HERE=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
cd "$TMP" || exit 1

CPORT=$(kt_free_port)
PPORT=$(kt_free_port)
EP=127.0.0.1:$CPORT

start_server() {
    rm -rf data
    "$SERVER" --name le --data-dir data \
        --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "le=http://127.0.0.1:$PPORT" >"server-$1.log" 2>&1 &
    SRV=$!
    KT_PIDS+=("$SRV")
    for _ in $(seq 100); do
        curl -fsS -m 1 "http://$EP/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start" >&2
    cat "server-$1.log" >&2
    exit 1
}

run() { # args: a foreground command
    printf '### %s\n' "$*" >>"$OUT"
    "$CTL" --endpoints="$EP" "$@" </dev/null >stdout 2>stderr
    local rc=$?
    { cat stdout; echo "--- stderr"; cat stderr; echo "--- rc=$rc"; } >>"$OUT"
}
bg() { # name args...: start in the background
    local n=$1
    shift
    "$CTL" --endpoints="$EP" "$@" </dev/null >"$n.out" 2>"$n.err" &
    eval "BG_$n=$!"
    KT_PIDS+=("$!")
}
wait_lines() { # name n: until name.out has n lines (10 s at most)
    for _ in $(seq 200); do
        [ "$(wc -l <"$1.out")" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "timeout waiting for $2 lines from $1" >>"$OUT"
}
finish() { # name [signal]: stop it (if a signal is given) and record all
    local n=$1 pid
    pid=$(eval echo "\$BG_$n")
    [ -n "${2:-}" ] && kill "-$2" "$pid"
    wait "$pid"
    local rc=$?
    { echo "### [$n]"; cat "$n.out"; echo "--- stderr"; cat "$n.err"; echo "--- rc=$rc"; } >>"$OUT"
}
show() { # name: what it printed so far
    { echo "### [$1 so far]"; cat "$1.out"; } >>"$OUT"
}

scenario() {
    run lock
    run elect
    run elect e1
    run elect -l e1 prop
    run elect a b c
    # a holder, a waiter that runs a command once it has the lock
    bg A lock l1
    wait_lines A 2
    bg B lock l1 -- sh -c 'echo B has $ETCD_LOCK_KEY at $ETCD_LOCK_REV'
    sleep 0.5
    show B
    finish A INT
    finish B
    run get l1 --prefix
    run lock l2 -- sh -c 'echo key $ETCD_LOCK_KEY rev $ETCD_LOCK_REV'
    run lock --ttl 5 l2 -- false
    run lock l2 -- /nonexistent/cmd
    run lock l2 -- no-such-command-keel
    bg J lock -w json l3
    wait_lines J 1
    finish J TERM
    # an election: leader, observer, a second candidate
    bg C elect e1 alpha
    wait_lines C 2
    bg O elect -l e1
    wait_lines O 2
    bg D elect e1 beta
    sleep 0.5
    show D
    finish C INT
    wait_lines D 2
    wait_lines O 4
    finish D INT
    wait_lines O 4
    finish O INT
    run get e1 --prefix
    bg P elect -w json -l e2
    sleep 0.3
    run put e2/x first
    wait_lines P 1
    finish P INT
}

for tool in etcdctl keelctl; do
    start_server "$tool"
    if [ "$tool" = etcdctl ]; then CTL=$ETCDCTL; else CTL=$KEELCTL; fi
    OUT=$TMP/$tool.out
    : >"$OUT"
    scenario
    "$ETCDCTL" --endpoints="$EP" lease list | tail -n +2 >"leases-$tool"
    kill "$SRV"
    wait "$SRV" 2>/dev/null
    # -w json shows the lock/election keys ("<name>/<lease hex>") base64
    python3 -c '
import base64, re, sys
def dec(m):
    k = base64.b64decode(m.group(1)).decode("latin-1")
    return "\"key\":\"%s\"" % k if re.fullmatch(r"\w+/[0-9a-f]+", k) else m.group(0)
sys.stdout.write(re.sub(r"\"key\":\"([A-Za-z0-9+/=]+)\"", dec, sys.stdin.read()))
' <"$OUT" | python3 "$HERE/normalise.py" "leases-$tool" >"$tool.norm"
done

if [ -n "${KEEL_DIFF_OUT:-}" ]; then
    cp etcdctl.norm keelctl.norm "$KEEL_DIFF_OUT/"
fi
if diff -u etcdctl.norm keelctl.norm; then
    echo "ok: keelctl lock/elect match etcdctl ($(grep -c '^###' keelctl.norm) steps against $(basename "$SERVER"))"
    exit 0
fi
echo "FAIL: keelctl lock/elect differ from etcdctl"
exit 1
