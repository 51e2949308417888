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
    local line hdr=() method path body
    : >"$out"
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '#'*|'') continue ;;
            '@'*) hdr+=(-H "${line#@}"); continue ;;
        esac
        local maxtime=10
        if [ "${line#T }" != "$line" ]; then
            maxtime=2; line=${line#T } # a stream that stays open (watch)
        fi
        method=${line%% *}
        line=${line#* }
        path=${line%% *}
        body=""
        [ "$path" != "$line" ] && body=${line#* }
        printf '%s' "$body" >"$KT_TMP/req"
        local data=()
        [ "$method" != GET ] && [ "$method" != OPTIONS ] &&
            data=(--data-binary "@$KT_TMP/req" -H 'Content-Type: application/json')
        echo "### $method $path $body" >>"$out"
        set +e
        local code
        code=$(curl -sS --path-as-is --max-time "$maxtime" -X "$method" "${hdr[@]}" \
            "${data[@]}" -D "$KT_TMP/h" -o "$KT_TMP/b" -w '%{http_code}' \
            "http://127.0.0.1:$CPORT$path" 2>"$KT_TMP/e")
        local rc=$?
        set -e
        hdr=()
        echo "status: $code curl: $rc" >>"$out"
        tr -d '\r' <"$KT_TMP/h" | grep -iE '^(content-type|location):' |
            tr 'A-Z' 'a-z' | sort >>"$out" || true
        cat "$KT_TMP/b" >>"$out"
        echo "<EOF>" >>"$out"
    done <"$CASES"
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
