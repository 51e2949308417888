# Shared helpers for integration tests: start real keel (and, as the
# reference, real etcd 3.4) processes on free loopback ports, wait until they
# serve, and stop every one of them when the test exits (trap), whatever the
# outcome. Source it from a test script:
#   . "$(dirname "$0")/lib.sh"
# KEEL_BIN: the keel binary (default: <build>/bin/keel next to this build).
set -euo pipefail

KT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/keeltest.XXXXXX")
KT_PIDS=()
export ETCDCTL_API=3
# KT_SLOW: how much longer than usual a timing-sensitive test lets things
# take. The ASan+UBSan pass (KEEL_SANITIZED=1, ctest -j2 on two cores) runs
# keel several times slower; scale the upper bounds (how late), never the
# lower ones (how early), so a test still catches what it checks.
KT_SLOW=1
if [ "${KEEL_SANITIZED:-0}" = 1 ]; then KT_SLOW=3; fi

kt_cleanup() {
    local rc=$?
    for p in "${KT_PIDS[@]:-}"; do
        [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
    done
    for p in "${KT_PIDS[@]:-}"; do
        [ -n "$p" ] && wait "$p" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ] && [ -d "$KT_TMP" ]; then
        for f in "$KT_TMP"/*.log; do
            [ -f "$f" ] || continue
            echo "---- $f (last 40 lines)" >&2
            tail -40 "$f" >&2
        done
    fi
    # KT_KEEP=1 keeps the data dirs and logs for a post-mortem.
    if [ "${KT_KEEP:-0}" = 1 ]; then
        echo "kept $KT_TMP" >&2
    else
        rm -rf "$KT_TMP"
    fi
    exit "$rc"
}
trap kt_cleanup EXIT INT TERM

# A free TCP port on 127.0.0.1 (bound then released: racy only against a
# process that picks the same port between the check and our bind).
kt_free_port() {
    # Picked at random below the kernel's ephemeral range, not by binding
    # port 0: a port from that range can be taken, before our server binds
    # it, by the source port of any outgoing connection (etcdctl, curl,
    # peers) of the tests running beside this one.
    python3 -c 'import random, socket
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(1000):
    p = random.randrange(10000, low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
else:
    raise SystemExit("kt_free_port: no free port")'
}

# kt_dead_port: sets KT_DEAD_PORT to a loopback port that refuses every
# connection for the whole test: a socket is bound to it and never listens,
# so no other process (a server of a test running beside this one) can take
# it, as it could a port from kt_free_port left unused. Not to be called in
# a $(...) subshell: the holder is stopped by the EXIT trap via KT_PIDS.
kt_dead_port() {
    local f
    f=$(mktemp "$KT_TMP/dead.XXXXXX")
    python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0))
open(sys.argv[1],"w").write("%d\n" % s.getsockname()[1]); time.sleep(3600)' "$f" &
    KT_PIDS+=($!)
    KT_DEAD_PORT=""
    local i
    for ((i = 0; i < 100; i++)); do
        KT_DEAD_PORT=$(cat "$f")
        [ -n "$KT_DEAD_PORT" ] && return 0
        sleep 0.05
    done
    echo "kt_dead_port: no port" >&2
    return 1
}

# kt_wait_http URL [seconds]: wait until URL answers 200.
kt_wait_http() {
    local url=$1 secs=${2:-20} i
    for ((i = 0; i < secs * 10; i++)); do
        if curl -fsS -m 1 "$url" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timeout waiting for $url" >&2
    return 1
}

# kt_spawn NAME BINARY URLS [extra flags...]: start a single-member server
# (keel or etcd: same flags) on fresh ports without waiting for it; its
# client URLs (listen and advertise) are URLS with %P replaced by the client
# port (e.g. "https://127.0.0.1:%P,http://127.0.0.1:%P"). Sets
# <NAME>_CLIENT (host:port), <NAME>_PORT, <NAME>_PID, <NAME>_DIR and
# <NAME>_LOG.
kt_spawn() {
    local name=$1 bin=$2 urls=$3
    shift 3
    local cport pport dir log
    cport=$(kt_free_port)
    pport=$(kt_free_port)
    dir="$KT_TMP/$name.data"
    log="$KT_TMP/$name.log"
    urls=${urls//%P/$cport}
    "$bin" --name "$name" --data-dir "$dir" \
        --listen-client-urls "$urls" --advertise-client-urls "$urls" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$name=http://127.0.0.1:$pport" "$@" \
        >"$log" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    printf -v "${name}_CLIENT" '%s' "127.0.0.1:$cport"
    printf -v "${name}_PORT" '%s' "$cport"
    printf -v "${name}_PID" '%s' "$pid"
    printf -v "${name}_DIR" '%s' "$dir"
    printf -v "${name}_LOG" '%s' "$log"
}

# kt_start NAME BINARY [extra flags...]: kt_spawn on http://127.0.0.1:<port>,
# then wait until it serves /health.
kt_start() {
    local name=$1 bin=$2
    shift 2
    kt_spawn "$name" "$bin" "http://127.0.0.1:%P" "$@"
    local client_var="${name}_CLIENT"
    kt_wait_http "http://${!client_var}/health" 30
}

# kt_ca DIR CN: a test CA (DIR/ca.crt, DIR/ca.key) made with the openssl CLI.
# kt_leaf DIR NAME CN EXTENSIONS: DIR/NAME.crt and DIR/NAME.key signed by
# that CA; EXTENSIONS is an openssl extension file's text with \n escapes
# ('subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n').
# Both fail the test when openssl does not produce the file.
kt_ca() {
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1/ca.key" \
        -out "$1/ca.crt" -days 2 -subj "/CN=$2" >/dev/null 2>&1
    [ -s "$1/ca.crt" ] || { echo "openssl failed to make $1/ca.crt" >&2; exit 1; }
}
kt_leaf() {
    local d=$1 name=$2
    openssl req -newkey rsa:2048 -nodes -keyout "$d/$name.key" \
        -out "$d/$name.csr" -subj "/CN=$3" >/dev/null 2>&1
    printf '%b' "$4" >"$d/$name.ext"
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
        -CAcreateserial -out "$d/$name.crt" -days 2 -extfile "$d/$name.ext" \
        >/dev/null 2>&1
    [ -s "$d/$name.crt" ] || { echo "openssl failed to make $d/$name.crt" >&2; exit 1; }
}

# kt_fail_case BIN CLIENT_SCHEME PEER_SCHEME [flags...]: start a one-member
# BIN (keel or etcd) on client and peer URLs of those schemes with flags
# that must make it fail; print its exit code and its last critical log
# line (timestamp cut, ports normalised). The whole output stays in
# $KT_TMP/fail.out.
kt_fail_case() {
    local bin=$1 cs=$2 ps=$3 cport pport rc=0
    shift 3
    cport=$(kt_free_port)
    pport=$(kt_free_port)
    rm -rf "$KT_TMP/fail.data"
    timeout 20 "$bin" --name fail --data-dir "$KT_TMP/fail.data" \
        --listen-client-urls "$cs://127.0.0.1:$cport" \
        --advertise-client-urls "$cs://127.0.0.1:$cport" \
        --listen-peer-urls "$ps://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "$ps://127.0.0.1:$pport" \
        --initial-cluster "fail=$ps://127.0.0.1:$pport" "$@" \
        >"$KT_TMP/fail.out" 2>&1 || rc=$?
    echo "rc=$rc $(grep ' C | ' "$KT_TMP/fail.out" | tail -1 | cut -d' ' -f3- |
        sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g')"
}

# kt_check DESCRIPTION EXPECTED ACTUAL: fail the test with a diff.
kt_check() {
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1" >&2
        diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") >&2 || true
        exit 1
    fi
    echo "ok: $1"
}
