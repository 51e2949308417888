#!/usr/bin/env bash
# Auth by client certificate (etcd AuthInfoFromTLS), etcd 3.4 vs keel: with
# --client-cert-auth and no token, the common name of the client's
# certificate is the user. Certificates for CN=root and CN=u1 (openssl CLI);
# the same etcdctl commands on both servers, outputs compared.
#   usage: test_auth_cert.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
C=$KT_TMP/certs
mkdir -p "$C"
kt_ca "$C" keel-auth-ca
kt_leaf "$C" server server 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
kt_leaf "$C" root root 'extendedKeyUsage=clientAuth\n'
kt_leaf "$C" u1 u1 'extendedKeyUsage=clientAuth\n'
scenario() { # $1 = name, $2 = binary, $3 = transcript
    local out=$3
    kt_spawn "$1" "$2" "https://127.0.0.1:%P" \
        --cert-file "$C/server.crt" --key-file "$C/server.key" \
        --trusted-ca-file "$C/ca.crt" --client-cert-auth
    local port_var="${1}_PORT" pid_var="${1}_PID"
    local CPORT=${!port_var} pid=${!pid_var}
    local i
    for ((i = 0; i < 300; i++)); do
        etcdctl --endpoints="127.0.0.1:$CPORT" --cacert "$C/ca.crt" \
            --cert "$C/root.crt" --key "$C/root.key" endpoint health \
            >/dev/null 2>&1 && break
        sleep 0.1
    done
    : >"$out"
    as() { # as CERT ARGS...
        local cert=$1
        shift
        echo "### [$cert] $*" >>"$out"
        local rc=0
        etcdctl --endpoints="127.0.0.1:$CPORT" --dial-timeout=2s \
            --command-timeout=5s --cacert "$C/ca.crt" \
            --cert "$C/$cert.crt" --key "$C/$cert.key" "$@" \
            >>"$out" 2>&1 </dev/null || rc=$?
        echo "exit: $rc" >>"$out"
    }
    as root user add root:rootpw --interactive=false
    as root user add u1:p1 --interactive=false
    as root role add r1
    as root role grant-permission r1 readwrite --prefix foo
    as root user grant-role u1 r1
    as u1 put foo0 before
    as root auth enable
    # the certificate's CN is the user
    as u1 put foo1 v
    as u1 get --prefix foo
    as u1 put bar v
    as u1 user list
    as root user list
    as root put bar v
    # a token wins over the certificate
    as u1 --user=root:rootpw put bar w
    as root --user=u1:p1 put bar x
    as root --user=u1:bad get foo1
    as root auth disable
    as u1 put bar y
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
}

normalise() {
    sed -E -e 's/"ts":"[^"]*"/"ts":T/; s/client-[0-9a-f-]+/client-ID/' \
        -e 's/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' "$1"
}

scenario etcd "$ETCD_BIN" "$KT_TMP/etcd.out"
scenario keel "$KEEL_BIN" "$KT_TMP/keel.out"
if ! diff -u <(normalise "$KT_TMP/etcd.out") <(normalise "$KT_TMP/keel.out") \
        >"$KT_TMP/diff"; then
    echo "FAIL: certificate auth differs between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
normalise "$KT_TMP/keel.out" | grep -v "\"level\""
echo "ok: $(grep -c '^### ' "$KT_TMP/keel.out") etcdctl commands with certificate users answered as by etcd 3.4"
