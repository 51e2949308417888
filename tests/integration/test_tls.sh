#!/usr/bin/env bash
# Client-port TLS against etcd 3.4: the same flags and certificates
# (a CA, a server and two client certificates made with the openssl CLI) are
# given to keel and to the real etcd, and what etcdctl and curl see is
# compared wherever it is stable (outputs, exit codes, startup errors).
# Covers --cert-file/--key-file, --trusted-ca-file, --client-cert-auth,
# --client-cert-allowed-hostname, --auto-tls, --cipher-suites, https:// and
# http:// on one address, a plaintext client on a TLS port, and etcd's
# startup errors for bad certificate flags.
# usage: test_tls.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL=$1
ETCD=${ETCD_BIN:-/usr/bin/etcd}
C=$KT_TMP/certs
mkdir -p "$C"

# ---- certificates -----------------------------------------------------------
ssl() { openssl "$@" >/dev/null 2>&1; }
kt_ca "$C" keel-test-ca
kt_leaf "$C" server server 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
kt_leaf "$C" client root 'subjectAltName=DNS:client.example\nextendedKeyUsage=clientAuth\n'
kt_leaf "$C" other other 'subjectAltName=DNS:other.example\nextendedKeyUsage=clientAuth\n'
kt_leaf "$C" server2 server2 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
# a client certificate from another CA
ssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/rogue.key" \
    -out "$C/rogue.crt" -days 2 -subj /CN=root
[ -s "$C/rogue.crt" ] || { echo "openssl failed to make rogue.crt" >&2; exit 1; }
TLSFLAGS=(--cert-file "$C/server.crt" --key-file "$C/server.key")
MTLS=(--cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key")

# ---- helpers ----------------------------------------------------------------
# wait_ok CMD...: retry CMD until it succeeds (20 s)
wait_ok() {
    local i
    for ((i = 0; i < 200; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "timeout waiting for: $*" >&2
    return 1
}
# cert_outcomes PORT NAME...: whether curl's /health fails with each client
# certificate NAME ("none": without one), after the server is up
cert_outcomes() {
    local p=$1 c rc
    shift
    wait_ok curl -fsS "${MTLS[@]}" "https://127.0.0.1:$p/health"
    for c in "$@"; do
        local cert=()
        [ "$c" != none ] && cert=(--cert "$C/$c.crt" --key "$C/$c.key")
        rc=0
        curl -sS -m 5 --cacert "$C/ca.crt" "${cert[@]}" \
            "https://127.0.0.1:$p/health" >/dev/null 2>&1 || rc=$?
        echo "$c: fails=$([ $rc -ne 0 ] && echo yes || echo no)"
    done
}
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# ctl PORT [etcdctl args...] with the client certificate
ctl() {
    local port=$1
    shift
    etcdctl --endpoints "https://127.0.0.1:$port" "${MTLS[@]}" \
        --dial-timeout 3s --command-timeout 5s "$@"
}
# normalise ports, durations and ids out of an output
norm() {
    sed -E -e 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' \
        -e 's/took = [^ ]+/took = T/' \
        -e 's/lease [0-9a-f]+/lease ID/g' \
        -e 's/"(cluster_id|member_id|revision|raft_term)":"[0-9]+"/"\1":"N"/g'
}

# ---- 1. TLS with client certificates: etcdctl and curl, keel vs etcd --------
# both listen on https:// and http:// of the same port, as etcd allows
for who in keel etcd; do
    bin=$KEEL
    [ "$who" = etcd ] && bin=$ETCD
    kt_spawn "m$who" "$bin" "https://127.0.0.1:%P,http://127.0.0.1:%P" \
        "${TLSFLAGS[@]}" --trusted-ca-file "$C/ca.crt" --client-cert-auth
done
for who in keel etcd; do
    port_var="m${who}_PORT"
    wait_ok curl -fsS "${MTLS[@]}" "https://127.0.0.1:${!port_var}/health"
done

# scenario PORT: everything a client sees, one line per step
scenario() {
    local p=$1 out rc
    ctl "$p" put /tls/a 1
    ctl "$p" put /tls/b 2
    ctl "$p" get /tls/ --prefix
    ctl "$p" get /tls/a -w json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); print([(k["key"],k["value"]) for k in d["kvs"]])'
    ctl "$p" endpoint health 2>&1 | norm
    # watch over TLS: the event of a put made before the watch starts
    # (--rev: no race with the watch's setup), then a live one
    ctl "$p" put /tls/w x >/dev/null
    local rev
    rev=$(ctl "$p" get /tls/w -w json | python3 -c \
        'import json,sys; print(json.load(sys.stdin)["kvs"][0]["mod_revision"])')
    timeout 20 etcdctl --endpoints "https://127.0.0.1:$p" "${MTLS[@]}" \
        watch /tls/w --rev "$rev" >"$KT_TMP/watch.$p" 2>&1 &
    local wpid=$!
    for _ in $(seq 100); do
        [ "$(wc -l <"$KT_TMP/watch.$p")" -ge 3 ] && break
        sleep 0.1
    done
    ctl "$p" put /tls/w y >/dev/null
    for _ in $(seq 100); do
        [ "$(wc -l <"$KT_TMP/watch.$p")" -ge 6 ] && break
        sleep 0.1
    done
    kill "$wpid" 2>/dev/null || true
    wait "$wpid" 2>/dev/null || true
    echo "watch: $(head -6 "$KT_TMP/watch.$p" | tr '\n' ' ')"
    # lease grant + keep-alive --once
    local id
    id=$(ctl "$p" lease grant 60 | awk '{print $2}')
    ctl "$p" lease keep-alive --once "$id" | norm
    # curl over HTTP/1.1 and HTTP/2 (ALPN h2)
    curl -sS --http1.1 "${MTLS[@]}" "https://127.0.0.1:$p/health"
    echo
    curl -sS --http2 "${MTLS[@]}" "https://127.0.0.1:$p/version" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["etcdserver"], d["etcdcluster"])'
    # no client certificate: the handshake fails (curl's code varies with
    # who closes first, so only failure is compared)
    rc=0
    curl -sS -m 5 --cacert "$C/ca.crt" "https://127.0.0.1:$p/health" \
        >/dev/null 2>&1 || rc=$?
    echo "no client cert: curl fails=$([ $rc -ne 0 ] && echo yes || echo no)"
    rc=0
    curl -sS -m 5 --cacert "$C/ca.crt" --cert "$C/rogue.crt" \
        --key "$C/rogue.key" "https://127.0.0.1:$p/health" \
        >/dev/null 2>&1 || rc=$?
    echo "cert from another CA: curl fails=$([ $rc -ne 0 ] && echo yes || echo no)"
    rc=0
    out=$(etcdctl --endpoints "https://127.0.0.1:$p" --cacert "$C/ca.crt" \
        --dial-timeout 2s --command-timeout 3s endpoint health 2>&1) || rc=$?
    echo "etcdctl without cert: rc=$rc $(echo "$out" | grep -o 'is unhealthy' | head -1)"
    # plaintext on the same port (http:// listed too) works
    curl -sS "http://127.0.0.1:$p/health"
    echo
    # and the server still serves TLS clients
    ctl "$p" get /tls/b --print-value-only
}
scenario "$mkeel_PORT" >"$KT_TMP/keel.out" 2>&1
scenario "$metcd_PORT" >"$KT_TMP/etcd.out" 2>&1
kt_check "TLS + client-cert-auth: keel answers as etcd" \
    "$(cat "$KT_TMP/etcd.out")" "$(cat "$KT_TMP/keel.out")"
# The JSON gateway over TLS. (Not compared: etcd 3.4's gateway fails with
# "broken pipe" under --client-cert-auth, because it dials its own gRPC
# port without a client certificate; keel's gateway calls the services
# directly.)
kt_check "gateway /v3/kv/range over TLS" \
    '{"header":{"cluster_id":"N","member_id":"N","revision":"N","raft_term":"N"},"kvs":[{"key":"L3Rscy9h","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"}' \
    "$(curl -sS "${MTLS[@]}" -X POST "https://127.0.0.1:$mkeel_PORT/v3/kv/range" \
        -d '{"key":"L3Rscy9h"}' | norm)"
grep -q '^OK$' "$KT_TMP/keel.out"
grep -q 'is healthy' "$KT_TMP/keel.out"
grep -q 'ClientTLS: cert = .*server.crt, key = .*server.key, trusted-ca = .*ca.crt, client-cert-auth = true, crl-file = $' "$mkeel_LOG"
grep -q "rejected connection from \"127.0.0.1:[0-9]*\" (error \"tls: client didn't provide a certificate\"" "$mkeel_LOG"
echo "ok: startup line and rejection log as etcd"
# keel-bench (libkeel) over TLS with a client certificate, when built
KB=$(dirname "$KEEL")/keel-bench
if [ -x "$KB" ]; then
    "$KB" put --endpoints "https://127.0.0.1:$mkeel_PORT" \
        --cacert "$C/ca.crt" --cert "$C/client.crt" --key "$C/client.key" \
        --clients 4 --total 200 --no-progress >"$KT_TMP/bench.out" 2>&1
    grep -q "Requests/sec" "$KT_TMP/bench.out"
    rc=0
    "$KB" put --endpoints "https://127.0.0.1:$mkeel_PORT" \
        --cacert "$C/ca.crt" --total 10 --dial-timeout 1000 --timeout 2000 \
        --no-progress >"$KT_TMP/bench2.out" 2>&1 || rc=$?
    kt_check "keel-bench without a client certificate fails" yes \
        "$([ $rc -ne 0 ] && echo yes || echo no)"
fi

# With auth enabled, the verified client certificate's CN is the user when
# no token is given (etcd AuthInfoFromTLS): client.crt is CN=root,
# other.crt CN=other (no such user).
auth_scenario() {
    local p=$1
    ctl "$p" user add root:rootpw --interactive=false
    ctl "$p" user grant-role root root
    ctl "$p" user add other:pw --interactive=false
    ctl "$p" auth enable
    ctl "$p" put /auth/k v 2>&1
    echo "rc=$?"
    ctl "$p" get /auth/k --print-value-only 2>&1
    etcdctl --endpoints "https://127.0.0.1:$p" --cacert "$C/ca.crt" \
        --cert "$C/other.crt" --key "$C/other.key" --command-timeout 5s \
        put /auth/k w 2>&1
    echo "rc=$?"
    ctl "$p" --user other:pw get /auth/k 2>&1
    echo "rc=$?"
}
# clientv3's retry warnings carry a time and a client id: keep the error
unwarn() { sed -E 's/^\{"level":"warn".*"error":"([^"]*)"\}$/warn: \1/'; }
kt_check "auth: the client certificate's CN is the user, as etcd" \
    "$(auth_scenario "$metcd_PORT" | unwarn)" \
    "$(auth_scenario "$mkeel_PORT" | unwarn | tee "$KT_TMP/auth.out")"
grep -q '^watch: PUT /tls/w x PUT /tls/w y $' "$KT_TMP/keel.out"
echo "ok: watch over TLS: history and a live event"
grep -qx 'Authentication Enabled' "$KT_TMP/auth.out"
grep -qx 'OK' "$KT_TMP/auth.out"
grep -qx 'v' "$KT_TMP/auth.out"
grep -q 'permission denied' "$KT_TMP/auth.out"
stop "$mkeel_PID"
stop "$metcd_PID"

# ---- 2. TLS only (no client certs): plaintext and garbage on the port -------
MPORT=$(kt_free_port)
kt_spawn plain "$KEEL" "https://127.0.0.1:%P" "${TLSFLAGS[@]}" \
    --listen-metrics-urls "https://127.0.0.1:$MPORT"
wait_ok curl -fsS --cacert "$C/ca.crt" "https://127.0.0.1:$plain_PORT/health"
# --listen-metrics-urls https:// serves /metrics and /health with the
# client certificate, as etcd
kt_check "https metrics listener: /health" '{"health":"true"}' \
    "$(curl -sS --cacert "$C/ca.crt" "https://127.0.0.1:$MPORT/health")"
metrics=$(curl -sS --cacert "$C/ca.crt" "https://127.0.0.1:$MPORT/metrics")
grep -q '^etcd_server_has_leader 1$' <<<"$metrics"
echo "ok: https metrics listener: /metrics"
rc=0
curl -sS -m 5 "http://127.0.0.1:$plain_PORT/health" >/dev/null 2>&1 || rc=$?
kt_check "plain HTTP on an https port: empty reply, as etcd (curl 52)" 52 "$rc"
head -c 20000 /dev/urandom | timeout 5 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.stdin.buffer.read())
s.settimeout(3)
try:
    while s.recv(4096): pass
except OSError: pass
' "$plain_PORT" || true
kt_check "server still serves after garbage" '{"health":"true"}' \
    "$(curl -sS --cacert "$C/ca.crt" "https://127.0.0.1:$plain_PORT/health")"
kt_check "gRPC over TLS without client certs" "OK" \
    "$(etcdctl --endpoints "https://127.0.0.1:$plain_PORT" --cacert "$C/ca.crt" put k v)"
# a client certificate is not asked for: one from another CA is ignored
kt_check "no client cert auth: any client" '{"health":"true"}' \
    "$(curl -sS --cacert "$C/ca.crt" --cert "$C/rogue.crt" --key "$C/rogue.key" \
        "https://127.0.0.1:$plain_PORT/health")"
stop "$plain_PID"

# ---- 3. --trusted-ca-file alone requires client certs (etcd 3.4) and
# --client-cert-allowed-hostname ------------------------------------------
for who in keel etcd; do
    bin=$KEEL
    [ "$who" = etcd ] && bin=$ETCD
    kt_spawn "h$who" "$bin" "https://127.0.0.1:%P" "${TLSFLAGS[@]}" \
        --trusted-ca-file "$C/ca.crt" \
        --client-cert-allowed-hostname client.example
done
kt_check "trusted CA + allowed hostname: keel as etcd" \
    "$(cert_outcomes "$hetcd_PORT" client other none)" \
    "$(cert_outcomes "$hkeel_PORT" client other none)"
kt_check "allowed hostname: expected outcome" "client: fails=no
other: fails=yes
none: fails=yes" "$(cert_outcomes "$hkeel_PORT" client other none)"
stop "$hkeel_PID"
stop "$hetcd_PID"

# ---- 3b. --client-crl-file: a revoked client certificate is refused ----------
printf '[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\n' \
    "$C" "$C" >"$C/ca.cnf"
: >"$C/index.txt"
echo 01 >"$C/crlnumber"
ssl ca -config "$C/ca.cnf" -keyfile "$C/ca.key" -cert "$C/ca.crt" \
    -revoke "$C/other.crt"
ssl ca -config "$C/ca.cnf" -keyfile "$C/ca.key" -cert "$C/ca.crt" -gencrl \
    -out "$C/crl.pem"
[ -s "$C/crl.pem" ] || { echo "openssl failed to make the CRL" >&2; exit 1; }
for who in keel etcd; do
    bin=$KEEL
    [ "$who" = etcd ] && bin=$ETCD
    kt_spawn "r$who" "$bin" "https://127.0.0.1:%P" "${TLSFLAGS[@]}" \
        --trusted-ca-file "$C/ca.crt" --client-cert-auth \
        --client-crl-file "$C/crl.pem"
done
kt_check "CRL: keel as etcd" "$(cert_outcomes "$retcd_PORT" client other)" \
    "$(cert_outcomes "$rkeel_PORT" client other)"
kt_check "CRL: the revoked certificate is refused" "client: fails=no
other: fails=yes" "$(cert_outcomes "$rkeel_PORT" client other)"
# a new CRL (client.crt revoked too) applies to new connections at once
ssl ca -config "$C/ca.cnf" -keyfile "$C/ca.key" -cert "$C/ca.crt" \
    -revoke "$C/client.crt"
ssl ca -config "$C/ca.cnf" -keyfile "$C/ca.key" -cert "$C/ca.crt" -gencrl \
    -out "$C/crl2.pem"
mv "$C/crl2.pem" "$C/crl.pem"
crl_after() {
    local p=$1 rc=0
    curl -sS -m 5 "${MTLS[@]}" "https://127.0.0.1:$p/health" \
        >/dev/null 2>&1 || rc=$?
    echo "client after the new CRL: fails=$([ $rc -ne 0 ] && echo yes || echo no)"
}
kt_check "CRL: a replaced CRL applies to new connections, as etcd" \
    "$(crl_after "$retcd_PORT")" "$(crl_after "$rkeel_PORT")"
kt_check "CRL: the newly revoked certificate is refused" \
    "client after the new CRL: fails=yes" "$(crl_after "$rkeel_PORT")"
stop "$rkeel_PID"
stop "$retcd_PID"

# ---- 4. --auto-tls ------------------------------------------------------------
kt_spawn auto "$KEEL" "https://127.0.0.1:%P" --auto-tls
wait_ok curl -fsSk "https://127.0.0.1:$auto_PORT/health"
kt_check "auto-tls: etcdctl with --insecure-skip-tls-verify" "OK" \
    "$(etcdctl --endpoints "https://127.0.0.1:$auto_PORT" \
        --insecure-transport=false --insecure-skip-tls-verify put a b)"
kt_check "auto-tls: files and modes as etcd" "600 644 700" \
    "$(stat -c %a "$auto_DIR/fixtures/client/key.pem" \
        "$auto_DIR/fixtures/client/cert.pem" "$auto_DIR/fixtures/client" |
        tr '\n' ' ' | sed 's/ $//')"
openssl x509 -in "$auto_DIR/fixtures/client/cert.pem" -noout -text \
    >"$KT_TMP/auto.txt"
grep -q 'Subject: O = etcd' "$KT_TMP/auto.txt"
grep -q 'NIST CURVE: P-521' "$KT_TMP/auto.txt"
grep -q 'IP Address:127.0.0.1' "$KT_TMP/auto.txt"
echo "ok: auto-tls certificate as etcd's (O=etcd, P-521, IP SAN)"
sum1=$(sha256sum <"$auto_DIR/fixtures/client/cert.pem")
stop "$auto_PID"
# a restart reuses the certificate
"$KEEL" --name auto --data-dir "$auto_DIR" \
    --listen-client-urls "https://127.0.0.1:$auto_PORT" \
    --advertise-client-urls "https://127.0.0.1:$auto_PORT" \
    --listen-peer-urls "http://127.0.0.1:$(kt_free_port)" --auto-tls \
    >>"$auto_LOG" 2>&1 &
auto_PID=$!
KT_PIDS+=("$auto_PID")
wait_ok curl -fsSk "https://127.0.0.1:$auto_PORT/health"
kt_check "auto-tls: restart keeps the certificate" "$sum1" \
    "$(sha256sum <"$auto_DIR/fixtures/client/cert.pem")"
stop "$auto_PID"

# ---- 5. cipher suites -----------------------------------------------------------
kt_spawn ciph "$KEEL" "https://127.0.0.1:%P" "${TLSFLAGS[@]}" \
    --cipher-suites TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
wait_ok curl -fsS --cacert "$C/ca.crt" "https://127.0.0.1:$ciph_PORT/health"
kt_check "cipher-suites: the listed TLS 1.2 suite is used" \
    "ECDHE-RSA-AES128-GCM-SHA256" \
    "$(openssl s_client -connect "127.0.0.1:$ciph_PORT" -tls1_2 </dev/null 2>/dev/null |
        sed -n 's/^ *Cipher *: //p' | head -1)"
rc=0
openssl s_client -connect "127.0.0.1:$ciph_PORT" -tls1_2 \
    -cipher ECDHE-RSA-AES256-GCM-SHA384 </dev/null >/dev/null 2>&1 || rc=$?
kt_check "cipher-suites: another TLS 1.2 suite is refused" 1 "$rc"
stop "$ciph_PID"

# ---- 5b. certificate rotation without restart (etcd reads the files at
# every handshake; keel reloads them when they change) -----------------------
# served_cn PORT: the CN of the certificate a new connection gets
served_cn() {
    openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null |
        sed -n 's/^subject=.*CN *= *//p' | head -1
}
for who in keel etcd; do
    bin=$KEEL
    [ "$who" = etcd ] && bin=$ETCD
    mkdir -p "$KT_TMP/rot$who"
    cp "$C/server.crt" "$C/server.key" "$KT_TMP/rot$who/"
    kt_spawn "rot$who" "$bin" "https://127.0.0.1:%P" \
        --cert-file "$KT_TMP/rot$who/server.crt" \
        --key-file "$KT_TMP/rot$who/server.key"
done
rotate() {
    local d=$1 p=$2 before after
    wait_ok curl -fsS --cacert "$C/ca.crt" "https://127.0.0.1:$p/health"
    before=$(served_cn "$p")
    # replaced the way cert-manager and friends do: new files renamed in
    cp "$C/server2.crt" "$d/new.crt"
    cp "$C/server2.key" "$d/new.key"
    mv "$d/new.key" "$d/server.key"
    mv "$d/new.crt" "$d/server.crt"
    after=$(served_cn "$p")
    echo "$before -> $after"
    curl -sS --cacert "$C/ca.crt" "https://127.0.0.1:$p/health"
    echo
}
rot_etcd=$(rotate "$KT_TMP/rotetcd" "$rotetcd_PORT")
rot_keel=$(rotate "$KT_TMP/rotkeel" "$rotkeel_PORT")
kt_check "rotation: a new connection gets the new certificate, as etcd" \
    "$rot_etcd" "$rot_keel"
kt_check "rotation: the certificates served" 'server -> server2
{"health":"true"}' "$rot_keel"
# a half-written certificate (etcd fails handshakes meanwhile): keel keeps
# serving the last good pair and says why
printf 'garbage' >"$KT_TMP/rotkeel/server.crt"
kt_check "rotation: a broken file keeps the previous certificate" "server2" \
    "$(served_cn "$rotkeel_PORT")"
grep -q "failed to reload TLS certificate .*still serving the previous one" "$rotkeel_LOG"
echo "ok: the failed reload is logged"
stop "$rotkeel_PID"
stop "$rotetcd_PID"

# ---- 6. startup errors: keel exits as etcd, with etcd's message ------------------
# fail_case BIN [flags...]: exit code and last critical line, https client
# URLs
fail_case() { kt_fail_case "$1" https http "${@:2}"; }
for args in \
    "--cert-file $KT_TMP/missing.crt --key-file $C/server.key" \
    "--cert-file $C/server.crt --key-file $KT_TMP/missing.key" \
    "--key-file $C/server.key" \
    "" \
    "--cert-file $C/server.crt --key-file $C/server.key --trusted-ca-file $KT_TMP/missing-ca.crt" \
    "--cert-file $C/server.crt --key-file $C/server.key --cipher-suites TLS_FOO" \
    "--cert-file $C/ca.key --key-file $C/server.key" \
    "--cert-file $C/server.crt --key-file $C/client.key"; do
    # shellcheck disable=SC2086
    want=$(fail_case "$ETCD" $args)
    # shellcheck disable=SC2086
    got=$(fail_case "$KEEL" $args)
    kt_check "startup error as etcd: ${args:-https without cert flags}" \
        "$want" "$got"
done

# the same with --logger zap: etcd's "listener failed" (certificates) and
# "discovery failed" (flags) records
zap_fail() {
    fail_case "$@" --logger zap >/dev/null
    grep '"level":"fatal"' "$KT_TMP/fail.out" | tail -1 | python3 -c '
import json, re, sys
d = json.loads(sys.stdin.read())
print(d["level"], d["msg"], re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", d["error"]))'
}
for args in "--cert-file $KT_TMP/missing.crt --key-file $C/server.key" ""; do
    # shellcheck disable=SC2086
    kt_check "zap startup error as etcd: ${args:-https without cert flags}" \
        "$(zap_fail "$ETCD" $args)" "$(zap_fail "$KEEL" $args)"
done

kt_check "zap: a certificate that does not load is a listener failure" \
    "fatal listener failed open $KT_TMP/missing.crt: no such file or directory" \
    "$(zap_fail "$KEEL" --cert-file "$KT_TMP/missing.crt" --key-file "$C/server.key")"

# (peer TLS: test_peer_tls.sh)
echo "PASS"
