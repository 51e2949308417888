#!/usr/bin/env bash
# Differential test of the v3 JSON gateway: curl sends the same sequence of
# HTTP requests (gateway_cases.txt) to a fresh real etcd 3.4 and to a fresh
# keel, started one after the other on the SAME ports and flags (so member
# and cluster ids, derived as etcd derives them, are equal too). Status
# code, Content-Type, Location and body must match after normalising only
# what must differ (db sizes, raft indexes, the whole-db Hash, a remaining
# lease TTL).
#   usage: test_gateway_compat.sh KEEL_BIN [CASES [SERVER FLAGS...]]
# SERVER FLAGS are given to both servers (e.g. --enable-grpc-gateway=false).
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
CASES=${2:-$(dirname "$0")/gateway_cases.txt}
shift $(($# < 2 ? $# : 2))
FLAGS=("$@")
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)

# one_request N MAXTIME "METHOD PATH [BODY]" [CURL HEADER ARGS...]: sends
# one request and writes what is compared to $KT_TMP/r.N.
one_request() {
    local n=$1 maxtime=$2 line=$3 method path body
    shift 3
    IFS=' ' read -r method path body <<<"$line"
    local f="$KT_TMP/q.$n"
    : >"$f.h"
    : >"$f.b"
    printf '%s' "$body" >"$f.req"
    local data=()
    [ "$method" != GET ] && [ "$method" != OPTIONS ] &&
        data=(--data-binary "@$f.req" -H 'Content-Type: application/json')
    local code rc=0
    code=$(curl -sS --path-as-is --max-time "$maxtime" -X "$method" "$@" \
        "${data[@]}" -D "$f.h" -o "$f.b" -w '%{http_code}' \
        "http://127.0.0.1:$CPORT$path" 2>"$f.e") || rc=$?
    {
        echo "### $method $path $body"
        echo "status: $code curl: $rc"
        tr -d '\r' <"$f.h" | grep -iE '^(content-type|location):' |
            tr 'A-Z' 'a-z' | sort || true
        cat "$f.b"
        echo "<EOF>"
    } >"$KT_TMP/r.$n"
}

run_cases() { # $1 = server binary, $2 = output file
    local bin=$1 out=$2 dir="$KT_TMP/data.$(basename "$1")"
    rm -rf "$dir"
    "$bin" --name default --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$CPORT" \
        --advertise-client-urls "http://127.0.0.1:$CPORT" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "default=http://127.0.0.1:$PPORT" "${FLAGS[@]}" \
        >"$KT_TMP/$(basename "$bin").log" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    kt_wait_http "http://127.0.0.1:$CPORT/health" 30
    local line hdr=() n=0 bg=()
    : >"$out"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '#'*|'') continue ;;
            '@'*) hdr+=(-H "${line#@}"); continue ;;
        esac
        n=$((n + 1))
        # [[ == "T "* ]] and ${line:2}, not ${line#T }: bash's pattern
        # removal is quadratic on the 800 kB lines of gateway_limits_cases.txt
        if [[ $line == "T "* ]]; then
            # A stream that stays open (watch) is cut after 2 s. Streams
            # only read state, so consecutive ones run side by side; any
            # other request waits until they are done (ordering of writes).
            one_request "$n" 2 "${line:2}" "${hdr[@]}" &
            bg+=($!)
        else
            [ ${#bg[@]} -gt 0 ] && wait "${bg[@]}"
            bg=()
            one_request "$n" 10 "$line" "${hdr[@]}"
        fi
        hdr=()
    done <"$CASES"
    [ ${#bg[@]} -gt 0 ] && wait "${bg[@]}"
    local i
    for ((i = 1; i <= n; i++)); do
        cat "$KT_TMP/r.$i" >>"$out"
    done
    kill -TERM "$pid"
    local rc=0
    wait "$pid" || rc=$?
    # keel exits 0 after a graceful stop (etcd dies of the signal: 143);
    # under ASan a leak or error at exit makes this non-zero too.
    if [ "$bin" = "$KEEL_BIN" ] && [ "$rc" -ne 0 ]; then
        echo "FAIL: keel exited with $rc after SIGTERM" >&2
        exit 1
    fi
}

normalise() {
    sed -E \
        -e 's/"dbSize":"[0-9]+"/"dbSize":"N"/; s/"dbSizeInUse":"[0-9]+"/"dbSizeInUse":"N"/' \
        -e 's/"raftIndex":"[0-9]+"/"raftIndex":"N"/; s/"raftAppliedIndex":"[0-9]+"/"raftAppliedIndex":"N"/' \
        -e 's/"hash":[0-9]+/"hash":N/' \
        -e 's/"TTL":"[0-9]+","grantedTTL"/"TTL":"N","grantedTTL"/' \
        "$1"
}

run_cases "$ETCD_BIN" "$KT_TMP/etcd.out"
run_cases "$KEEL_BIN" "$KT_TMP/keel.out"
if ! diff -u <(normalise "$KT_TMP/etcd.out") <(normalise "$KT_TMP/keel.out") >"$KT_TMP/diff"; then
    echo "FAIL: gateway answers differ between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
n=$(grep -c '^### ' "$KT_TMP/keel.out")
echo "ok: $n gateway requests get the same answer from keel as from etcd 3.4"
