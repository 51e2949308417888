#!/usr/bin/env bash
# Differential test: Debian's real etcdctl 3.4 runs the same sequence of
# commands (etcdctl_cases.txt) against a fresh real etcd 3.4 and a fresh
# keel, started one after the other on the SAME ports and flags (so member
# and cluster ids, derived as etcd derives them, are equal too). stdout,
# stderr and exit codes must match after normalising only what must differ
# (timings, db file sizes, raft indexes, the whole-db Hash).
# Case lines: see etcdctl_cases.txt; 'W <watch args> ;; <cmd> ;; <cmd>' runs
# a watch while the commands write.
# Lease ids differ too: each `lease grant` output names its id LEASE<n>
# (and $LEASE, the latest) for the following lines, and outputs show those
# names instead of the ids (LEASE<n>_DEC where JSON prints it in decimal).
# A first line '#flags: <flags>' gives both servers extra flags. Lines are
# eval'd: $KT_TMP (the test's temp dir, the same for both runs) may name
# files, e.g. for `snapshot save`.
#   usage: test_etcdctl_compat.sh KEEL_BIN [CASES]
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
CASES=${2:-$(dirname "$0")/etcdctl_cases.txt}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
CPORT=$(kt_free_port)
PPORT=$(kt_free_port)
EXTRA_FLAGS=()
eval "EXTRA_FLAGS=($(sed -n '1s/^#flags: //p' "$CASES"))"

run_cases() { # $1 = server binary, $2 = output file
    local bin=$1 out=$2 dir="$KT_TMP/data.$(basename "$1")"
    rm -rf "$dir"
    "$bin" --name default --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$CPORT" \
        --advertise-client-urls "http://127.0.0.1:$CPORT" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "default=http://127.0.0.1:$PPORT" \
        "${EXTRA_FLAGS[@]}" \
        >"$KT_TMP/$(basename "$bin").log" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    kt_wait_http "http://127.0.0.1:$CPORT/health" 30
    local stdin="" line nlease=0 lease_sed=(-e 's/^//') nt=0 tpids=() ft=0
    LEASE=none
    : >"$out"
    # flush_t: waits for the pending T watches and appends their blocks
    flush_t() {
        [ ${#tpids[@]} -gt 0 ] && wait "${tpids[@]}"
        tpids=()
        while [ "$ft" -lt "$nt" ]; do
            ft=$((ft + 1))
            cat "$KT_TMP/t.$ft" >>"$out"
            sed "${lease_sed[@]}" "$KT_TMP/t.$ft.o" >>"$out"
            sed "${lease_sed[@]}" -e 's/^/stderr: /' "$KT_TMP/t.$ft.e" >>"$out"
            echo "exit: $(cat "$KT_TMP/t.$ft.rc")" >>"$out"
        done
    }
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            '#'*|'') continue ;;
            '<'*) stdin=${line#<}; continue ;;
        esac
        if [[ $line == "W "* ]]; then
            flush_t
            # W <watch args> ;; <cmd> ;; <cmd>...: a watch running while the
            # commands after ';;' write; its output is compared.
            local rest=${line#W } wargs cmd
            wargs=${rest%%;;*}
            echo "### etcdctl watch $wargs (live)" >>"$out"
            local wa=()
            eval "wa=($wargs)"
            # Pin the start revision so a watch that is slow to start under
            # load still sees exactly the events written after this point.
            local wrev
            wrev=$(etcdctl --endpoints="127.0.0.1:$CPORT" get x -w json |
                   python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"] + 1)')
            wa+=(--rev "$wrev")
            set +e
            timeout 6 etcdctl --endpoints="127.0.0.1:$CPORT" watch "${wa[@]}" \
                >"$KT_TMP/wo" 2>"$KT_TMP/we" </dev/null &
            local wpid=$!
            sleep 0.3
            rest=${rest#*;;}
            while [ -n "$rest" ]; do
                cmd=${rest%%;;*}
                local ca=()
                eval "ca=($cmd)"
                etcdctl --endpoints="127.0.0.1:$CPORT" "${ca[@]}" >/dev/null 2>&1
                [ "$rest" = "${rest#*;;}" ] && break
                rest=${rest#*;;}
            done
            # The watch is stopped (SIGTERM, as timeout would) once its
            # output has not grown for 1 s after the last write: every
            # event was written before, and the watch started from a
            # pinned revision, so late ones are only delayed, not lost.
            local size=-1 still=0
            while [ "$still" -lt 10 ] && kill -0 "$wpid" 2>/dev/null; do
                sleep 0.1
                local now
                now=$(stat -c %s "$KT_TMP/wo")
                if [ "$now" = "$size" ]; then
                    still=$((still + 1))
                else
                    size=$now; still=0
                fi
            done
            kill -TERM "$wpid" 2>/dev/null
            wait "$wpid"
            local wrc=$?
            set -e
            cat "$KT_TMP/wo" >>"$out"
            sed 's/^/stderr: /' "$KT_TMP/we" >>"$out"
            echo "exit: $wrc" >>"$out"
            continue
        fi
        local args=()
        if [[ $line == "T "* ]]; then
            # a watch cut after 2 s; consecutive ones run side by side (they
            # only read) and are written out in order at the next other line
            line=${line:2}
            eval "args=($line)"
            nt=$((nt + 1))
            echo "### etcdctl $line" >"$KT_TMP/t.$nt"
            (
                set +e
                timeout 2 etcdctl --endpoints="127.0.0.1:$CPORT" \
                    --dial-timeout=2s --command-timeout=5s "${args[@]}" \
                    >"$KT_TMP/t.$nt.o" 2>"$KT_TMP/t.$nt.e" </dev/null
                echo $? >"$KT_TMP/t.$nt.rc"
            ) &
            tpids+=($!)
            continue
        fi
        flush_t
        eval "args=($line)"
        echo "### etcdctl $line" >>"$out"
        set +e
        printf '%b' "$stdin" | etcdctl --endpoints="127.0.0.1:$CPORT" \
            --dial-timeout=2s --command-timeout=5s "${args[@]}" \
            >"$KT_TMP/o" 2>"$KT_TMP/e"
        local rc=$?
        set -e
        stdin=""
        local gid
        gid=$(sed -n 's/^lease \([0-9a-f]*\) granted with TTL.*/\1/p' "$KT_TMP/o")
        if [ -z "$gid" ]; then # lease grant -w json
            gid=$(sed -n 's/.*"ID":\([0-9]*\),"TTL".*/\1/p' "$KT_TMP/o")
            [ -z "$gid" ] || gid=$(printf '%016x' "$gid")
        fi
        if [ -n "$gid" ]; then
            nlease=$((nlease + 1))
            LEASE=$gid
            eval "LEASE$nlease=$gid"
            lease_sed+=(-e "s/$gid/LEASE$nlease/g"
                        -e "s/$((16#$gid))/LEASE${nlease}_DEC/g")
        fi
        sed "${lease_sed[@]}" "$KT_TMP/o" >>"$out"
        sed "${lease_sed[@]}" -e 's/^/stderr: /' "$KT_TMP/e" >>"$out"
        echo "exit: $rc" >>"$out"
        # a server that died fails the test at once (instead of every later
        # command timing out)
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "FAIL: $(basename "$bin") died during: etcdctl $line" >&2
            exit 1
        fi
    done <"$CASES"
    flush_t
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
        -e 's/took = [0-9.]+[a-zµ]+s/took = T/' \
        -e 's/"ts":"[^"]*"/"ts":T/; s/client-[0-9a-f-]+/client-ID/' \
        -e 's/"ts":[0-9.e+]+/"ts":T/; s/"size":"[^"]*"/"size":S/; s/"took":"[^"]*"/"took":T/; s/"took":[0-9.e+-]+/"took":T/' \
        -e 's/"dbSize":[0-9]+/"dbSize":N/; s/"dbSizeInUse":[0-9]+/"dbSizeInUse":N/' \
        -e 's/"raftIndex":[0-9]+/"raftIndex":N/; s/"raftAppliedIndex":[0-9]+/"raftAppliedIndex":N/' \
        -e 's/\| *[0-9.]+ [kMG]?B *\|/| SIZE |/' \
        -e 's/^(\| [^|]+\|[^|]+\|[^|]+\| SIZE \|[^|]+\|[^|]+\|[^|]+\|) *[0-9]+ \| *[0-9]+ \|/\1 N | N |/' \
        "$1"
}

run_cases "$ETCD_BIN" "$KT_TMP/etcd.out"
run_cases "$KEEL_BIN" "$KT_TMP/keel.out"
if ! diff -u <(normalise "$KT_TMP/etcd.out") <(normalise "$KT_TMP/keel.out") >"$KT_TMP/diff"; then
    echo "FAIL: etcdctl output differs between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
n=$(grep -c '^### ' "$KT_TMP/keel.out")
echo "ok: $n etcdctl commands give the same output on keel as on etcd 3.4"
