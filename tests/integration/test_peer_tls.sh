#!/usr/bin/env bash
# Peer-port TLS on keel clusters, with etcd 3.4's flags: three members over
# https:// peer URLs with mutual TLS (--peer-client-cert-auth,
# --peer-trusted-ca-file, --peer-cert-allowed-cn); writes replicate; a
# member killed -9 and restarted catches up; a follower that fell behind the
# leader's compacted log catches up by snapshot (over TLS); a member added
# with an https:// peer URL joins with --initial-cluster-state existing; a
# would-be member with a certificate from another CA, or with the wrong CN,
# is refused with etcd's "rejected connection" line while the cluster stays
# healthy; --peer-auto-tls; and startup errors for bad peer TLS flags
# compared with etcd 3.4's. Certificates are made with the openssl CLI.
#   usage: test_peer_tls.sh KEEL_BIN
KEEL_BIN=${1:?keel binary}
ETCD=${ETCD_BIN:-/usr/bin/etcd}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

C=$KT_TMP/certs
mkdir -p "$C"
kt_ca "$C" keel-peer-ca
PEXT='subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n'
kt_leaf "$C" peer peer "$PEXT"
kt_leaf "$C" wrongcn intruder "$PEXT"
# the same names, signed by a CA the members do not trust
mkdir -p "$C/rogue"
kt_ca "$C/rogue" rogue-ca
kt_leaf "$C/rogue" peer peer "$PEXT"

ptls() { # the peer TLS flags of a member with certificate $1/$2
    printf '%s ' --peer-cert-file "$1/$2.crt" --peer-key-file "$1/$2.key" \
        --peer-trusted-ca-file "$C/ca.crt" --peer-client-cert-auth \
        --peer-cert-allowed-cn peer
}
KC_PSCHEME=https
E() { etcdctl --command-timeout=5s --endpoints="$(kc_ep p "$1")" "${@:2}"; }
# sget I KEY: KEY's value on member I (serializable: its own store)
sget() { E "$1" get "$2" --consistency=s --print-value-only 2>/dev/null || true; }
# wait_val I KEY VALUE [tries]: until member I has KEY=VALUE
wait_val() {
    local t got
    for ((t = 0; t < ${4:-100}; t++)); do
        got=$(sget "$1" "$2")
        [ "$got" = "$3" ] && break
        sleep 0.1
    done
    kt_check "p$1 has $2=$3" "$3" "$got"
}

# ---- 1. three members, mutual TLS on the peer port --------------------------
kc_init p 4 # p4 joins later
# kc_start_all starts members 1..N: start three by hand
IC3=$(kc_initial_cluster p 3)
for i in 1 2 3; do
    # shellcheck disable=SC2046
    kc_start "$KEEL_BIN" p "$i" new "$IC3" $(ptls "$C" peer) --snapshot-count=100
done
for i in 1 2 3; do kc_wait_ready p "$i"; done
L=$(kc_wait_leader p)
grep -q "peerTLS: cert = $C/peer.crt, key = $C/peer.key, trusted-ca = $C/ca.crt, client-cert-auth = true, crl-file = $" \
    "$(kc_var p1 LOG)"
echo "ok: etcd's peerTLS startup line"
E "$L" put /a 1 >/dev/null
for i in 1 2 3; do wait_val "$i" /a 1; done
if grep -qi "rejected connection\|TLS connection to the peer failed" \
    "$(kc_var p1 LOG)" "$(kc_var p2 LOG)" "$(kc_var p3 LOG)"; then
    echo "FAIL: members refused each other" >&2
    exit 1
fi
echo "ok: no refusals between members with good certificates"

# ---- 2. kill -9 a follower, write, restart it: it catches up ----------------
F=$((L % 3 + 1))
kc_stop p "$F" KILL
E "$L" put /b 2 >/dev/null
kc_start "$KEEL_BIN" p "$F" new "$IC3" $(ptls "$C" peer) --snapshot-count=100
kc_wait_ready p "$F"
wait_val "$F" /b 2

# ---- 3. snapshot catch-up over TLS ------------------------------------------
# A stopped follower misses more entries than the leader keeps after
# compacting its log (snapshot-count 100 -> 5000 kept, plus the inflight
# window the leader pushes into the stopped socket): it must be sent a
# snapshot, which travels on its own TLS connection.
L=$(kc_wait_leader p)
F=$((L % 3 + 1))
kill -STOP "$(kc_var "p$F" PID)"
/usr/bin/python3 - "$(kc_ep p "$L")" <<'PY'
import sys, etcd3, etcd3.etcdrpc as r
host, port = sys.argv[1].split(":")
c = etcd3.client(host=host, port=int(port))
for i in range(5800):
    c.kvstub.Put(r.PutRequest(key=b"/fill/%d" % i, value=b"x"))
c.kvstub.Put(r.PutRequest(key=b"/c", value=b"3"))
PY
kill -CONT "$(kc_var "p$F" PID)"
for ((t = 0; t < 150 * KT_SLOW; t++)); do
    grep -q "applied incoming snapshot" "$(kc_var "p$F" LOG)" && break
    sleep 0.2
done
grep -q "applied incoming snapshot" "$(kc_var "p$F" LOG)" ||
    { echo "FAIL: p$F did not catch up by snapshot" >&2; exit 1; }
wait_val "$F" /c 3 150
L=$(kc_wait_leader p)

# ---- 4. refused: another CA, the wrong CN ------------------------------------
# A process with a bad certificate tries to join as an existing member: the
# members refuse it at the TLS handshake (etcd's "rejected connection"
# line), it cannot fetch the cluster and exits, and the cluster goes on.
intruder() { # intruder NAME CERTDIR CERTNAME: exit code of the attempt
    local rc=0 cp pp
    cp=$(kt_free_port)
    pp=$(kt_free_port)
    # shellcheck disable=SC2046
    timeout 60 "$KEEL_BIN" --name "$1" --data-dir "$KT_TMP/$1.data" \
        --listen-client-urls "http://127.0.0.1:$cp" \
        --advertise-client-urls "http://127.0.0.1:$cp" \
        --listen-peer-urls "https://127.0.0.1:$pp" \
        --initial-advertise-peer-urls "https://127.0.0.1:$pp" \
        --initial-cluster "$IC3,$1=https://127.0.0.1:$pp" \
        --initial-cluster-state existing $(ptls "$2" "$3") \
        >"$KT_TMP/$1.log" 2>&1 || rc=$?
    echo "$rc"
}
kt_check "a member with a certificate from another CA cannot join" 1 \
    "$(intruder rogue "$C/rogue" peer)"
grep -q "cannot fetch cluster info from peer urls" "$KT_TMP/rogue.log"
# the intruder's side: Go's words for the members' alert
grep -q "could not get cluster response: .*remote error: tls: " "$KT_TMP/rogue.log"
for i in 1 2 3; do
    if grep -q 'rejected connection from "127.0.0.1:[0-9]*" (error "tls: failed to verify client certificate: x509: certificate signed by unknown authority", ServerName "")' \
        "$(kc_var "p$i" LOG)"; then
        found=1
    fi
done
kt_check "a member logged etcd's rejected connection line (unknown CA)" 1 "${found:-0}"
kt_check "a member with the wrong CN cannot join" 1 \
    "$(intruder wrongcn "$C" wrongcn)"
found=0
for i in 1 2 3; do
    if grep -q 'rejected connection from "127.0.0.1:[0-9]*" (error "client certificate authentication failed", ServerName "")' \
        "$(kc_var "p$i" LOG)"; then
        found=1
    fi
done
kt_check "a member logged etcd's rejected connection line (wrong CN)" 1 "$found"
# garbage instead of a ClientHello on a member's peer port
printf 'GET / HTTP/1.1\r\n\r\n' | timeout 5 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read()); s.settimeout(5)
try:
    s.recv(100)
except Exception:
    pass' "$(kc_var p1 PPORT)"
for ((t = 0; t < 50; t++)); do
    grep -q 'rejected connection from "127.0.0.1:[0-9]*" (error "tls: first record does not look like a TLS handshake"' \
        "$(kc_var p1 LOG)" && break
    sleep 0.1
done
grep -q 'rejected connection from "127.0.0.1:[0-9]*" (error "tls: first record does not look like a TLS handshake"' \
    "$(kc_var p1 LOG)"
echo "ok: plaintext on the TLS peer port is rejected as etcd logs it"
E "$L" put /d 4 >/dev/null
for i in 1 2 3; do wait_val "$i" /d 4; done
kt_check "the cluster stays healthy" 3 \
    "$(etcdctl --endpoints="$(kc_endpoints p 3)" endpoint health 2>&1 | grep -c 'is healthy')"

# ---- 5. member add with an https:// peer URL, joining as existing ------------
P4URL="https://127.0.0.1:$(kc_var p4 PPORT)"
E "$L" member add p4 --peer-urls="$P4URL" >/dev/null
# shellcheck disable=SC2046
kc_start "$KEEL_BIN" p 4 existing "$IC3,p4=$P4URL" $(ptls "$C" peer)
kc_wait_ready p 4
wait_val 4 /d 4 150
E "$L" put /e 5 >/dev/null
wait_val 4 /e 5
kt_check "four members listed, all https" 4 \
    "$(E "$L" member list | grep -c ', https://127.0.0.1:')"
for i in 1 2 3 4; do kc_stop p "$i"; done

# ---- 6. --peer-auto-tls -------------------------------------------------------
kc_init a 3
kc_start_all "$KEEL_BIN" a --peer-auto-tls
La=$(kc_wait_leader a)
etcdctl --endpoints="$(kc_ep a "$La")" put /auto yes >/dev/null
for i in 1 2 3; do
    for ((t = 0; t < 100; t++)); do
        got=$(etcdctl --endpoints="$(kc_ep a "$i")" get /auto --consistency=s --print-value-only 2>/dev/null || true)
        [ "$got" = yes ] && break
        sleep 0.1
    done
    kt_check "auto TLS member a$i replicated" yes "$got"
    [ -s "$(kc_var "a$i" DIR)/fixtures/peer/cert.pem" ]
    [ -s "$(kc_var "a$i" DIR)/fixtures/peer/key.pem" ]
done
openssl x509 -noout -subject -in "$(kc_var a1 DIR)/fixtures/peer/cert.pem" | grep -q 'O *= *etcd'
echo "ok: self-signed certificates in <data-dir>/fixtures/peer"
for i in 1 2 3; do kc_stop a "$i"; done

# ---- 7. startup errors for bad peer TLS flags, against etcd 3.4 ---------------
# fail_case BIN [flags...]: exit code and last critical line, https peer
# URLs
fail_case() { kt_fail_case "$1" http https "${@:2}"; }
for args in \
    "" \
    "--peer-cert-file $KT_TMP/missing.crt --peer-key-file $C/peer.key" \
    "--peer-cert-file $C/peer.crt --peer-key-file $KT_TMP/missing.key" \
    "--peer-cert-file $C/peer.crt" \
    "--peer-key-file $C/peer.key" \
    "--peer-cert-file $C/peer.crt --peer-key-file $C/wrongcn.key" \
    "--peer-cert-file $C/ca.key --peer-key-file $C/peer.key" \
    "--peer-cert-file $C/peer.crt --peer-key-file $C/peer.key --peer-trusted-ca-file $KT_TMP/missing-ca.crt" \
    "--peer-cert-file $C/peer.crt --peer-key-file $C/peer.key --peer-cert-allowed-cn a --peer-cert-allowed-hostname b" \
    "--peer-cert-file $C/peer.crt --peer-key-file $C/peer.key --cipher-suites TLS_FOO"; do
    # shellcheck disable=SC2086
    want=$(fail_case "$ETCD" $args)
    # shellcheck disable=SC2086
    got=$(fail_case "$KEEL_BIN" $args)
    kt_check "startup error as etcd: ${args:-https peer URL without cert flags}" \
        "$want" "$got"
done
# warnings for http:// peer URLs next to peer TLS flags, as etcd prints them
warn_lines() {
    local bin=$1 pport cport
    pport=$(kt_free_port)
    cport=$(kt_free_port)
    rm -rf "$KT_TMP/warn.data"
    "$bin" --name warn --data-dir "$KT_TMP/warn.data" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "warn=http://127.0.0.1:$pport" \
        --peer-cert-file "$C/peer.crt" --peer-key-file "$C/peer.key" \
        --peer-client-cert-auth >"$KT_TMP/warn.out" 2>&1 &
    local pid=$!
    KT_PIDS+=("$pid")
    for ((t = 0; t < 100; t++)); do
        etcdctl --endpoints="127.0.0.1:$cport" endpoint health >/dev/null 2>&1 && break
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -E 'peerTLS|scheme of peer url' "$KT_TMP/warn.out" | cut -d' ' -f3- |
        sed -E 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g'
}
kt_check "http:// peer URL with peer TLS flags: etcd's lines" \
    "$(warn_lines "$ETCD")" "$(warn_lines "$KEEL_BIN")"
echo "PASS"
