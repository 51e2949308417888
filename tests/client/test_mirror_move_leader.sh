#!/bin/bash
# keelctl make-mirror and move-leader vs etcdctl 3.4.
#
#   test_mirror_move_leader.sh <keelctl> [<server binary>]  (default etcd)
#
# make-mirror: for each tool, a fresh source and a fresh destination server
# (same flags for both tools, so the same revisions); the source gets keys,
# the mirror runs in the background (plain, --prefix, --dest-prefix,
# --no-dest-prefix) while the source changes, and once a sentinel key has
# arrived the mirror is stopped; the destination's whole keyspace (-w json)
# and the mirror's stdout/stderr/exit code are compared between the tools.
# keelctl's count line is checked with its report period shortened.
# move-leader: a three-member etcd cluster; each tool moves the leadership
# to a follower (output checked against the ids, and the new leader
# verified), and the error cases are diffed.
set -u
KEELCTL=${1:?usage: test_mirror_move_leader.sh <keelctl> [server]}
SERVER=${2:-/usr/bin/etcd}
ETCDCTL=/usr/bin/etcdctl
. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
cd "$TMP" || exit 1
FAIL=0

S_C=$(kt_free_port); S_P=$(kt_free_port); D_C=$(kt_free_port); D_P=$(kt_free_port)
SRC=127.0.0.1:$S_C
DST=127.0.0.1:$D_C

start() { # name cport pport -> sets PID_<name>
    rm -rf "$1.data"
    "$SERVER" --name "$1" --data-dir "$1.data" \
        --listen-client-urls "http://127.0.0.1:$2" --advertise-client-urls "http://127.0.0.1:$2" \
        --listen-peer-urls "http://127.0.0.1:$3" --initial-advertise-peer-urls "http://127.0.0.1:$3" \
        --initial-cluster "$1=http://127.0.0.1:$3" >"$1.log" 2>&1 &
    eval "PID_$1=$!"
    KT_PIDS+=("$!")
    for _ in $(seq 100); do
        curl -fsS -m 1 "http://127.0.0.1:$2/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server $1 did not start" >&2
    exit 1
}
stop() { local p; p=$(eval echo "\$PID_$1"); kill "$p"; wait "$p" 2>/dev/null; }
e() { "$ETCDCTL" --endpoints="$1" "${@:2}" >/dev/null; }
wait_key() { # endpoint key value
    for _ in $(seq 200); do
        [ "$("$ETCDCTL" --endpoints="$1" get "$2" --print-value-only)" = "$3" ] && return 0
        sleep 0.05
    done
    echo "timeout waiting for $2" >>"$OUT"
}
mirror_step() { # label flags...
    local label=$1
    shift
    # a base value of this step: its arrival means the mirror has copied
    # the base, and what follows reaches it through its watch
    e "$SRC" put "$SENTINEL_SRC.base" "base-$label"
    "$CTL" --endpoints="$SRC" make-mirror "$@" "$DST" >m.out 2>m.err &
    local pid=$!
    KT_PIDS+=("$pid")
    wait_key "$DST" "$SENTINEL_DST.base" "base-$label"
    e "$SRC" put "${PFX}new" n1
    e "$SRC" del "${PFX}a1"
    # one source revision with two puts: one destination txn
    printf '\nput %st1 t1\nput %st2 t2\n\n\n' "$PFX" "$PFX" |
        "$ETCDCTL" --endpoints="$SRC" txn >/dev/null
    e "$SRC" put "$SENTINEL_SRC.live" "live-$label"
    wait_key "$DST" "$SENTINEL_DST.live" "live-$label"
    kill -TERM "$pid"
    wait "$pid"
    local rc=$?
    { echo "### make-mirror $label"; cat m.out; echo "--- stderr"; cat m.err;
      echo "--- rc=$rc"; echo "--- destination";
      "$ETCDCTL" --endpoints="$DST" get "" --from-key -w json; echo; } >>"$OUT"
}

mirror_cases() {
    start src "$S_C" "$S_P"
    start dst "$D_C" "$D_P"
    for k in a1 a2 b1; do e "$SRC" put "p/$k" "v-$k"; e "$SRC" put "$k" "root-$k"; done
    # plain: everything, to the same keys
    PFX=p/ SENTINEL_SRC=p/s SENTINEL_DST=p/s
    mirror_step plain
    # --prefix p/: only p/, same keys
    mirror_step prefix --prefix p/
    # --prefix p/ --dest-prefix q/
    SENTINEL_DST=q/s
    mirror_step dest-prefix --prefix p/ --dest-prefix q/
    # --prefix p/ --no-dest-prefix: p/x -> x
    SENTINEL_DST=s
    mirror_step no-dest-prefix --prefix p/ --no-dest-prefix
    run make-mirror
    run make-mirror a b
    run make-mirror --dest-prefix q/ --no-dest-prefix "$DST"
    stop src
    stop dst
}

run() {
    printf '### %s\n' "$*" >>"$OUT"
    "$CTL" --endpoints="$SRC" "$@" </dev/null >stdout 2>stderr
    local rc=$?
    { cat stdout; echo "--- stderr"; cat stderr; echo "--- rc=$rc"; } >>"$OUT"
}

for tool in etcdctl keelctl; do
    if [ "$tool" = etcdctl ]; then CTL=$ETCDCTL; else CTL=$KEELCTL; fi
    OUT=$TMP/mirror-$tool.out
    : >"$OUT"
    mirror_cases
done
[ -n "${KEEL_DIFF_OUT:-}" ] && cp mirror-*.out "$KEEL_DIFF_OUT/"
if diff -u mirror-etcdctl.out mirror-keelctl.out; then
    echo "ok: make-mirror: $(grep -c '^###' mirror-keelctl.out) cases identical to etcdctl"
else
    echo "FAIL: keelctl make-mirror differs from etcdctl"
    FAIL=1
fi

# keelctl prints the count every 30 s as etcdctl; with a short period:
start src "$S_C" "$S_P"
start dst "$D_C" "$D_P"
for k in 1 2 3 4 5; do e "$SRC" put "k$k" v; done
KEELCTL_MIRROR_REPORT_MS=200 "$KEELCTL" --endpoints="$SRC" make-mirror "$DST" >count.out 2>&1 &
MPID=$!
KT_PIDS+=("$MPID")
# (a report may come while the base copy is still running: counts only
# grow, to 5 after the copy, to 6 after one more source put)
for _ in $(seq 200); do [ "$(tail -1 count.out 2>/dev/null)" = 5 ] && break; sleep 0.05; done
e "$SRC" put k6 v
for _ in $(seq 200); do [ "$(tail -1 count.out)" = 6 ] && break; sleep 0.05; done
kill -TERM "$MPID"
wait "$MPID"
if [ "$(tail -1 count.out)" = 6 ] && sort -n -c count.out 2>/dev/null &&
    ! grep -qv '^[0-9]*$' count.out; then
    echo "ok: make-mirror reports its count"
else
    echo "FAIL: make-mirror count lines:"; cat count.out; FAIL=1
fi
stop src
stop dst

# -- move-leader on a three-member cluster
if [ "$(basename "$SERVER")" = etcd ]; then
    P1=$(kt_free_port); P2=$(kt_free_port); P3=$(kt_free_port)
    C1=$(kt_free_port); C2=$(kt_free_port); C3=$(kt_free_port)
    IC="m1=http://127.0.0.1:$P1,m2=http://127.0.0.1:$P2,m3=http://127.0.0.1:$P3"
    for i in 1 2 3; do
        cp=$(eval echo "\$C$i"); pp=$(eval echo "\$P$i")
        "$SERVER" --name "m$i" --data-dir "m$i.data" --initial-cluster "$IC" \
            --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
            --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
            >"m$i.log" 2>&1 &
        KT_PIDS+=("$!")
    done
    ALL=127.0.0.1:$C1,127.0.0.1:$C2,127.0.0.1:$C3
    for _ in $(seq 100); do
        "$ETCDCTL" --endpoints="$ALL" endpoint health >/dev/null 2>&1 && break
        sleep 0.1
    done
    status() { "$ETCDCTL" --endpoints="$ALL" endpoint status -w json |
        python3 -c 'import json,sys; s=json.load(sys.stdin)
ldr=s[0]["Status"]["leader"]
fol=[x for x in s if x["Status"]["header"]["member_id"]!=ldr]
print("%x %x %s" % (ldr, fol[0]["Status"]["header"]["member_id"], fol[0]["Endpoint"]))'; }
    for tool in etcdctl keelctl; do
        if [ "$tool" = etcdctl ]; then CTL=$ETCDCTL; else CTL=$KEELCTL; fi
        read -r L F FEP < <(status)
        got=$("$CTL" --endpoints="$ALL" move-leader "$F" 2>&1)
        if [ "$got" = "Leadership transferred from $L to $F" ] &&
            [ "$(status | cut -d' ' -f1)" = "$F" ]; then
            echo "ok: $tool move-leader $L -> $F"
        else
            echo "FAIL: $tool move-leader $L -> $F: [$got] leader now $(status)"; FAIL=1
        fi
        read -r L F FEP < <(status)
        OUT=$TMP/ml-$tool.out
        : >"$OUT"
        SRC=$FEP run move-leader "$L" # a follower only: no leader endpoint
        SRC=$ALL run move-leader
        SRC=$ALL run move-leader zz
        SRC=$ALL run move-leader 1ffffffffffffffff
        SRC=$ALL run move-leader 1234 # not a member
        SRC=$ALL run move-leader "$F" -w fields
    done
    for t in etcdctl keelctl; do
        sed -E 's/"ts":"[^"]*"/"ts":"TS"/; s/client-[0-9a-f-]{36}/client-UUID/' \
            "ml-$t.out" >"ml-$t.norm"
    done
    if diff -u ml-etcdctl.norm ml-keelctl.norm; then
        echo "ok: move-leader errors identical to etcdctl"
    else
        echo "FAIL: keelctl move-leader differs from etcdctl"; FAIL=1
    fi
fi
exit $FAIL
