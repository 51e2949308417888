#!/bin/bash
# keelctl over TLS, compared with etcdctl 3.4: the same cases run with both
# tools, each against its own fresh server started with TLS on the client
# port and client certificates required (--client-cert-auth); stdout,
# stderr (timestamps, client UUIDs and durations normalised) and exit codes
# must be identical.
#
#   test_tls.sh <keelctl> [<keel>]
#
# The server is the real etcd 3.4; with <keel>, the cases run against keel
# too when keel serves TLS (--cert-file/--key-file/--trusted-ca-file);
# otherwise that part says it is skipped. Certificates are made here with
# the openssl CLI: a CA, a server certificate for localhost/127.0.0.1, a
# client certificate, and a second CA that signed nothing we use.
set -u
KEELCTL=${1:?usage: test_tls.sh <keelctl> [keel]}
KEEL=${2:-}
ETCDCTL=/usr/bin/etcdctl
ETCD=/usr/bin/etcd
. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
trap ctl_cleanup EXIT
cd "$TMP" || exit 1

# -- certificates
ctl_make_certs || { echo "openssl failed" >&2; exit 1; }
echo "not a certificate" >junk.pem

CPORT=$(kt_free_port)
PPORT=$(kt_free_port)
EP=127.0.0.1:$CPORT

start_server() { # binary tag [tries of 0.1 s]
    rm -rf "$TMP/data"
    "$1" --name tls --data-dir "$TMP/data" \
        --listen-client-urls "https://$EP" --advertise-client-urls "https://$EP" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "tls=http://127.0.0.1:$PPORT" \
        --cert-file server.crt --key-file server.key \
        --trusted-ca-file ca.crt --client-cert-auth >"$TMP/$2.log" 2>&1 &
    CTL_PID=$!
    for _ in $(seq "${3:-100}"); do
        if curl -fsS -m 1 --cacert ca.crt --cert client.crt --key client.key \
            "https://$EP/health" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}
stop_server() {
    ctl_stop
}

run() { # env-assignments... -- args...
    local -a envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    printf '### %s %s\n' "${envs[*]}" "$*" >>"$OUT"
    env "${envs[@]}" "$CTL" "$@" </dev/null >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$?
    cat "$TMP/stdout" >>"$OUT"
    printf -- '--- stderr\n' >>"$OUT"
    cat "$TMP/stderr" >>"$OUT"
    printf -- '--- rc=%d\n' "$rc" >>"$OUT"
}

cases() {
    local T=(--cacert ca.crt --cert client.crt --key client.key)
    run -- --endpoints="https://$EP" "${T[@]}" put k1 v1
    run -- --endpoints="https://$EP" "${T[@]}" get k1 -w json
    # no scheme: TLS because TLS flags are given
    run -- --endpoints="$EP" "${T[@]}" get k1
    run -- --endpoints="https://localhost:$CPORT" "${T[@]}" get k1 --print-value-only
    run ETCDCTL_CACERT=ca.crt ETCDCTL_CERT=client.crt ETCDCTL_KEY=client.key \
        -- --endpoints="https://$EP" put k2 v2
    run ETCDCTL_CACERT=ca.crt ETCDCTL_CERT=client.crt ETCDCTL_KEY=client.key \
        -- --endpoints="$EP" get k --prefix
    run -- --endpoints="https://$EP" --insecure-skip-tls-verify \
        --cert client.crt --key client.key get k2
    run -- --endpoints="$EP" --insecure-transport=false --insecure-skip-tls-verify \
        --cert client.crt --key client.key del k2
    run -- --endpoints="https://$EP" "${T[@]}" snapshot save "$TMP/s.db"
    run -- --endpoints="https://$EP" "${T[@]}" endpoint health -w json
    run -- --endpoints="https://$EP" "${T[@]}" member list -w table
    run -- --endpoints="https://$EP" "${T[@]}" lease list
    # configuration errors
    run -- --endpoints="https://$EP" --cert client.crt get k1
    run -- --endpoints="https://$EP" --key client.key get k1
    run -- --endpoints="https://$EP" --cacert missing.crt get k1
    run -- --endpoints="https://$EP" --cacert ca.crt --cert missing.crt --key client.key get k1
    run -- --endpoints="https://$EP" --cacert ca.crt --cert junk.pem --key client.key get k1
    run -- --endpoints="https://$EP" --cacert ca.crt --cert client.crt --key junk.pem get k1
    # handshakes that fail: the call waits out its timeout
    run -- --endpoints="https://$EP" --command-timeout=1s --cacert ca.crt get k1
    run -- --endpoints="https://$EP" --command-timeout=1s --cacert otherca.crt \
        --cert client.crt --key client.key get k1
    run -- --endpoints="https://$EP" --command-timeout=1s --cacert junk.pem \
        --cert client.crt --key client.key get k1
    run -- --endpoints="http://$EP" --command-timeout=1s "${T[@]}" get k1
    run -- --endpoints="$EP" --command-timeout=1s get k1
}

normalise() {
    sed -E 's/"ts":"[^"]*"/"ts":"TS"/g; s/client-[0-9a-f-]{36}/client-UUID/g;
        s/"took":"[^"]*"/"took":"D"/g; s/took = [0-9.]+[µm]?s/took = D/g;
        s/"took":[0-9.e-]+/"took":D/g; s/"size":"[^"]*"/"size":"S"/g;
        s/"ts":[0-9.]+/"ts":TS/g'
}

run_tool() { # server-binary tag ctl
    start_server "$1" "$2" || { echo "$2 did not start with TLS" >&2; cat "$TMP/$2.log" >&2; return 1; }
    CTL=$3
    OUT=$TMP/$2.out
    : >"$OUT"
    cases
    stop_server
    normalise <"$OUT" >"$TMP/$2.norm"
    if [ -n "${KEEL_DIFF_OUT:-}" ]; then # keep the transcripts for a look
        cp "$TMP/$2.norm" "$KEEL_DIFF_OUT/"
    fi
}

compare() { # server-binary name
    run_tool "$1" "$2-etcdctl" "$ETCDCTL" || return 1
    run_tool "$1" "$2-keelctl" "$KEELCTL" || return 1
    if ! diff -u "$TMP/$2-etcdctl.norm" "$TMP/$2-keelctl.norm"; then
        echo "FAIL: keelctl differs from etcdctl over TLS against $2"
        return 1
    fi
    echo "ok: keelctl matches etcdctl on $(grep -c '^### ' "$TMP/$2-keelctl.norm") TLS cases against $2"
}

compare "$ETCD" etcd || exit 1
if [ -n "$KEEL" ]; then
    if start_server "$KEEL" keel-probe 30; then
        stop_server
        compare "$KEEL" keel || exit 1
    else
        stop_server 2>/dev/null
        echo "skipped: keel does not serve TLS on the client port yet"
    fi
fi
