#!/bin/bash
# Put throughput of a three-member cluster with plaintext vs TLS peer URLs
# (--peer-cert-file/--peer-key-file/--peer-trusted-ca-file
# --peer-client-cert-auth, certificates from the openssl CLI), alternating
# ROUNDS times: keel-bench put --val-size 256 against the leader with one
# client (3000 puts) and 64 clients on 8 connections (30000 puts).
#   usage: bench/peer_tls.sh KEEL_BIN KEEL_BENCH [ROUNDS]
# (BIN may be /usr/bin/etcd: same flags.) Prints one line per run.
BIN=${1:?keel or etcd binary}
KB=${2:?keel-bench binary}
ROUNDS=${3:-3}
D=$(dirname "$0")/../tests/integration
. "$D/lib.sh"
. "$D/cluster_lib.sh"
C=$KT_TMP/certs
mkdir -p "$C"
kt_ca "$C" ca
kt_leaf "$C" peer peer 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n'
for ((r = 1; r <= ROUNDS; r++)); do
    for mode in plain tls; do
        KC_PSCHEME=http
        FL=()
        if [ "$mode" = tls ]; then
            KC_PSCHEME=https
            FL=(--peer-cert-file "$C/peer.crt" --peer-key-file "$C/peer.key"
                --peer-trusted-ca-file "$C/ca.crt" --peer-client-cert-auth)
        fi
        kc_init "b$r$mode" 3
        kc_start_all "$BIN" "b$r$mode" "${FL[@]}"
        L=$(kc_wait_leader "b$r$mode")
        for c in 1 64; do
            conns=1
            total=3000
            if [ "$c" = 64 ]; then conns=8; total=30000; fi
            echo "$mode clients=$c: $("$KB" put --endpoints "$(kc_ep "b$r$mode" "$L")" \
                --clients "$c" --conns "$conns" --total "$total" --val-size 256 \
                --key-space-size 100000 --no-progress 2>&1 | grep 'Requests/sec' | tr -s ' \t' ' ')"
        done
        for i in 1 2 3; do kc_stop "b$r$mode" "$i"; done
    done
done
