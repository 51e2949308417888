# Helpers for multi-member integration tests (sourced after lib.sh): start
# the members of a keel (or etcd: same flags) cluster on free loopback
# ports, find the leader, stop and restart members.
#
#   kc_init PREFIX N         allocate ports for members PREFIX1..PREFIXN
#   kc_start BIN PREFIX I [STATE [extra flags]]   start member I
#   kc_start_all BIN PREFIX [extra flags]         start every member (new)
#   kc_endpoints PREFIX      comma-separated client endpoints
#   kc_leader PREFIX         index of the member that says it leads
# Per member I: KC_<PREFIX><I>_CPORT, _PPORT, _PID, _DIR, _LOG.

# Election timing for tests: etcd's defaults are slow to wait for, but the
# machine is shared, so not too tight either.
KC_HB=${KC_HB:-100}
KC_ET=${KC_ET:-1000}
# More flags for every member start (word-split), e.g. --snapshot-count.
KC_FLAGS=${KC_FLAGS:-}
# Scheme of the peer URLs: https for peer TLS (certificates in KC_FLAGS).
KC_PSCHEME=${KC_PSCHEME:-http}

kc_var() { local n="KC_$1_$2"; printf '%s' "${!n:-}"; }
kc_set() { printf -v "KC_$1_$2" '%s' "$3"; }

kc_init() {
    local prefix=$1 n=$2 i
    kc_set "$prefix" N "$n"
    for ((i = 1; i <= n; i++)); do
        kc_set "$prefix$i" CPORT "$(kt_free_port)"
        kc_set "$prefix$i" PPORT "$(kt_free_port)"
        kc_set "$prefix$i" DIR "$KT_TMP/$prefix$i.data"
        kc_set "$prefix$i" LOG "$KT_TMP/$prefix$i.log"
    done
}

# The --initial-cluster of members 1..N (or the list given).
kc_initial_cluster() {
    local prefix=$1 i out="" n
    n=${2:-$(kc_var "$prefix" N)}
    for ((i = 1; i <= n; i++)); do
        out+="${out:+,}$prefix$i=$KC_PSCHEME://127.0.0.1:$(kc_var "$prefix$i" PPORT)"
    done
    printf '%s' "$out"
}

kc_endpoints() {
    local prefix=$1 i out="" n
    n=${2:-$(kc_var "$prefix" N)}
    for ((i = 1; i <= n; i++)); do
        out+="${out:+,}127.0.0.1:$(kc_var "$prefix$i" CPORT)"
    done
    printf '%s' "$out"
}

kc_ep() { printf '127.0.0.1:%s' "$(kc_var "$1$2" CPORT)"; }

# kc_start BIN PREFIX I [STATE [INITIAL_CLUSTER [extra flags...]]]
kc_start() {
    local bin=$1 prefix=$2 i=$3 state=${4:-new} ic
    ic=${5:-$(kc_initial_cluster "$prefix")}
    shift 5 2>/dev/null || shift $#
    local m="$prefix$i" cport pport
    cport=$(kc_var "$m" CPORT)
    pport=$(kc_var "$m" PPORT)
    "$bin" --name "$m" --data-dir "$(kc_var "$m" DIR)" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "$KC_PSCHEME://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "$KC_PSCHEME://127.0.0.1:$pport" \
        --initial-cluster "$ic" --initial-cluster-token "kc-$prefix" \
        --initial-cluster-state "$state" \
        --heartbeat-interval "$KC_HB" --election-timeout "$KC_ET" $KC_FLAGS "$@" \
        >>"$(kc_var "$m" LOG)" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    kc_set "$m" PID "$pid"
    kc_set "$m" BIN "$bin"
}

kc_start_all() {
    local bin=$1 prefix=$2 i n
    shift 2
    n=$(kc_var "$prefix" N)
    for ((i = 1; i <= n; i++)); do
        kc_start "$bin" "$prefix" "$i" new "$(kc_initial_cluster "$prefix")" "$@"
    done
    for ((i = 1; i <= n; i++)); do
        kc_wait_ready "$prefix" "$i"
    done
}

# Wait until member I answers a serializable read (it serves and applied
# its log) and the cluster has a leader.
kc_wait_ready() {
    local prefix=$1 i=$2 t
    for ((t = 0; t < 300; t++)); do
        if etcdctl --endpoints="$(kc_ep "$prefix" "$i")" --command-timeout=2s \
            endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "member $prefix$i not healthy" >&2
    return 1
}

# The index of the leader among members 1..N (those that answer), or
# nothing.
kc_leader() {
    local prefix=$1 n i
    n=$(kc_var "$prefix" N)
    for ((i = 1; i <= n; i++)); do
        local pid
        pid=$(kc_var "$prefix$i" PID)
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
        if etcdctl --endpoints="$(kc_ep "$prefix" "$i")" --command-timeout=2s \
            endpoint status -w json 2>/dev/null |
            python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["Status"]; sys.exit(0 if s["header"]["member_id"]==s["leader"] else 1)'; then
            echo "$i"
            return 0
        fi
    done
    return 0
}

# kc_wait_leader PREFIX [seconds]: print the leader's index once there is one.
kc_wait_leader() {
    local prefix=$1 secs=${2:-30} t l
    for ((t = 0; t < secs * 5; t++)); do
        l=$(kc_leader "$prefix")
        if [ -n "$l" ]; then
            echo "$l"
            return 0
        fi
        sleep 0.2
    done
    echo "no leader in $prefix" >&2
    return 1
}

# kc_stop PREFIX I [SIGNAL]: signal member I and wait for it to exit. A
# keel member stopped with TERM must exit 0 (etcd re-raises the signal);
# under ASan this also catches leaks and errors at exit.
kc_stop() {
    local prefix=$1 i=$2 sig=${3:-TERM} pid rc=0
    pid=$(kc_var "$prefix$i" PID)
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || rc=$?
    kc_set "$prefix$i" PID ""
    if [ "$sig" = TERM ] && [ "$(basename "$(kc_var "$prefix$i" BIN)")" = keel ] &&
        [ "$rc" -ne 0 ]; then
        echo "FAIL: $prefix$i exited $rc after SIGTERM" >&2
        tail -30 "$(kc_var "$prefix$i" LOG)" >&2
        return 1
    fi
}

# Normalise etcdctl output across two clusters: member ids and ports become
# stable names.
kc_normalise() {
    sed -E -e 's/\b[0-9a-f]{14,16}\b/<id>/g' -e 's/127\.0\.0\.1:[0-9]+/<addr>/g'
}
