#!/usr/bin/env bash
# Auth through the JSON gateway, etcd 3.4 vs keel: /v3/auth/authenticate
# with curl, then the token in the Authorization header (and as
# Grpc-Metadata-Token) on KV calls, a wrong or stale token, the maintenance
# and auth RPCs a non-root user may not call. Tokens are random: they are
# shown as TOKEN. (gRPC clients: etcdctl --user in etcdctl_auth_cases.txt.)
#   usage: test_auth_gateway.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}

scenario() { # $1 = name, $2 = binary, $3 = transcript
    local n=$1 out=$3
    kt_start "$n" "$2"
    local ep_var="${n}_CLIENT"
    local ep=${!ep_var}
    local U="http://$ep"
    : >"$out"
    c() { # c PATH BODY [curl args...]
        local p=$1 b=$2
        shift 2
        echo "### $p $b $*" >>"$out"
        curl -sS -m 5 -X POST "$U$p" -d "$b" -w ' [%{http_code}]\n' "$@" \
            >>"$out" 2>&1 || echo "curl failed: $?" >>"$out"
    }
    local E=(etcdctl --endpoints="$ep")
    "${E[@]}" user add root:rootpw --interactive=false >/dev/null
    "${E[@]}" user add u1:p1 --interactive=false >/dev/null
    "${E[@]}" role add r1 >/dev/null
    "${E[@]}" role grant-permission r1 readwrite --prefix foo >/dev/null
    "${E[@]}" user grant-role u1 r1 >/dev/null
    # before auth is enabled
    c /v3/auth/authenticate '{"name":"root","password":"rootpw"}'
    "${E[@]}" auth enable >/dev/null
    c /v3/auth/authenticate '{"name":"root","password":"bad"}'
    c /v3/auth/authenticate '{"name":"nosuch","password":"x"}'
    c /v3/auth/authenticate '{}'
    local tok rtok
    tok=$(curl -sS -X POST "$U/v3/auth/authenticate" \
        -d '{"name":"u1","password":"p1"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    rtok=$(curl -sS -X POST "$U/v3/auth/authenticate" \
        -d '{"name":"root","password":"rootpw"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    # base64: Zm9v=foo Zm9vMQ==foo1 YmFy=bar Zm9w=fop
    c /v3/kv/put '{"key":"Zm9v","value":"YmFy"}'
    c /v3/kv/put '{"key":"Zm9v","value":"YmFy"}' -H "Authorization: $tok"
    c /v3/kv/put '{"key":"Zm9vMQ==","value":"YmFy"}' -H "Grpc-Metadata-Token: $tok"
    c /v3/kv/range '{"key":"Zm9v","range_end":"Zm9w"}' -H "Authorization: $tok"
    c /v3/kv/range '{"key":"YmFy"}' -H "Authorization: $tok"
    c /v3/kv/put '{"key":"YmFy","value":"YmFy"}' -H "Authorization: $tok"
    c /v3/kv/range '{"key":"Zm9v"}' -H "Authorization: nosuch.1"
    c /v3/kv/range '{"key":"Zm9v"}' -H "Authorization: Bearer $tok"
    c /v3/auth/user/list '{}' -H "Authorization: $tok"
    c /v3/auth/user/list '{}' -H "Authorization: $rtok"
    c /v3/auth/role/get '{"role":"r1"}' -H "Authorization: $tok"
    c /v3/auth/user/get '{"name":"u1"}' -H "Authorization: $tok"
    c /v3/maintenance/hash '{}' -H "Authorization: $tok"
    c /v3/maintenance/defragment '{}' -H "Authorization: $tok"
    # Lock and Election pass the caller's token to their inner calls
    # (base64: Zm9vL2xr=foo/lk YmFyL2xr=bar/lk)
    c /v3/lease/grant '{"TTL":"60","ID":"4096"}' -H "Authorization: $tok"
    c /v3/lock/lock '{"name":"Zm9vL2xr","lease":"4096"}' -H "Authorization: $tok"
    c /v3/lock/lock '{"name":"YmFyL2xr","lease":"4096"}' -H "Authorization: $tok"
    c /v3/lock/lock '{"name":"Zm9vL2xr","lease":"4096"}'
    c /v3/lock/unlock '{"key":"Zm9vL2xrLzEwMDA="}' -H "Authorization: $tok"
    c /v3/election/campaign '{"name":"Zm9vL2xr","lease":"4096","value":"eA=="}' -H "Authorization: $tok"
    c /v3/election/leader '{"name":"Zm9vL2xr"}' -H "Authorization: $tok"
    c /v3/election/leader '{"name":"YmFyL2xr"}' -H "Authorization: $tok"
    # a changed password drops the user's tokens
    "${E[@]}" --user=root:rootpw user passwd u1 --interactive=false \
        <<<"p2" >/dev/null
    c /v3/kv/range '{"key":"Zm9v"}' -H "Authorization: $tok"
    c /v3/auth/disable '{}' -H "Authorization: $rtok"
    c /v3/kv/range '{"key":"Zm9v"}'
    c /v3/kv/range '{"key":"Zm9v"}' -H "Authorization: $rtok"
    local pid_var="${n}_PID"
    kill -TERM "${!pid_var}"
    wait "${!pid_var}" 2>/dev/null || true
}

normalise() {
    sed -E -e 's/"token":"[^"]*"/"token":"TOKEN"/' \
        -e 's/Authorization: [A-Za-z]+\.[0-9]+/Authorization: TOKEN/' \
        -e 's/(Bearer|Token:) [A-Za-z]+\.[0-9]+/\1 TOKEN/' \
        -e 's/"(cluster_id|member_id)":"[0-9]+"/"\1":"ID"/g' \
        -e 's/"(db_size|dbSize|db_size_in_use|raft_index|raft_applied_index)":"[0-9]+"/"\1":"N"/g' \
        -e 's/"hash":[0-9]+/"hash":N/' "$1"
}

scenario etcd "$ETCD_BIN" "$KT_TMP/etcd.out"
scenario keel "$KEEL_BIN" "$KT_TMP/keel.out"
if ! diff -u <(normalise "$KT_TMP/etcd.out") <(normalise "$KT_TMP/keel.out") \
        >"$KT_TMP/diff"; then
    echo "FAIL: gateway auth answers differ between etcd 3.4 (-) and keel (+):"
    cat "$KT_TMP/diff"
    exit 1
fi
echo "ok: $(grep -c '^### ' "$KT_TMP/keel.out") gateway auth requests answered as etcd 3.4"

# keel only: auth state survives a restart (tokens do not, as in etcd)
CP=$(kt_free_port)
PP=$(kt_free_port)
start_keel() {
    "$KEEL_BIN" --name r --data-dir "$KT_TMP/restart.data" \
        --listen-client-urls "http://127.0.0.1:$CP" \
        --advertise-client-urls "http://127.0.0.1:$CP" \
        --listen-peer-urls "http://127.0.0.1:$PP" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
        --initial-cluster "r=http://127.0.0.1:$PP" >>"$KT_TMP/restart.log" 2>&1 &
    RPID=$!
    KT_PIDS+=("$RPID")
    kt_wait_http "http://127.0.0.1:$CP/health" 30
}
start_keel
E=(etcdctl --endpoints="127.0.0.1:$CP")
"${E[@]}" user add root:rootpw --interactive=false >/dev/null
"${E[@]}" auth enable >/dev/null
"${E[@]}" --user=root:rootpw put k v >/dev/null
tok=$(curl -sS -X POST "http://127.0.0.1:$CP/v3/auth/authenticate" \
    -d '{"name":"root","password":"rootpw"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
kill -TERM "$RPID"
wait "$RPID" || true
start_keel
kt_check "root still authenticates after a restart" "v" \
    "$("${E[@]}" --user=root:rootpw get k --print-value-only)"
kt_check "auth is still enabled after a restart" \
    "Error: etcdserver: user name is empty" "$("${E[@]}" get k 2>&1 | grep -v '"level"')"
kt_check "tokens do not survive a restart" \
    '{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}' \
    "$(curl -sS -X POST "http://127.0.0.1:$CP/v3/kv/range" -d '{"key":"aw=="}' -H "Authorization: $tok")"

# keel only: --auth-token jwt with unreadable keys is refused at start, an
# unknown token type too; a bad --bcrypt-cost falls back to 10 as in etcd
for spec in "jwt,pub-key=k.pub,priv-key=k,sign-method=RS256" "bogus"; do
    rc=0
    timeout 20 "$KEEL_BIN" --data-dir "$KT_TMP/jwt.data" --auth-token "$spec" \
        --listen-client-urls "http://127.0.0.1:$(kt_free_port)" \
        --advertise-client-urls "http://127.0.0.1:2379" \
        >"$KT_TMP/jwt.log" 2>&1 || rc=$?
    kt_check "--auth-token $spec: refused" 1 "$([ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && echo 1)"
    kt_check "--auth-token $spec: says why" 1 \
        "$(grep -c "invalid auth options" "$KT_TMP/jwt.log")"
done
kill -TERM "$RPID"
wait "$RPID" || true
"$KEEL_BIN" --name r --data-dir "$KT_TMP/restart.data" --bcrypt-cost 99 \
    --listen-client-urls "http://127.0.0.1:$CP" \
    --advertise-client-urls "http://127.0.0.1:$CP" \
    --listen-peer-urls "http://127.0.0.1:$PP" >"$KT_TMP/cost.log" 2>&1 &
RPID=$!
KT_PIDS+=("$RPID")
kt_wait_http "http://127.0.0.1:$CP/health" 30
kt_check "--bcrypt-cost 99 warns" 1 \
    "$(grep -c 'Use default bcrypt-cost 10 instead of the invalid value 99' "$KT_TMP/cost.log")"
kt_check "--bcrypt-cost 99: passwords still work" "v" \
    "$(etcdctl --endpoints="127.0.0.1:$CP" --user=root:rootpw get k --print-value-only)"

# --auth-token-ttl: a token unused for longer expires (each use extends it),
# on etcd 3.4 as on keel
for bin in "$ETCD_BIN" "$KEEL_BIN"; do
    b=$(basename "$bin")
    kt_start "ttl_$b" "$bin" --auth-token-ttl 2
    ep_var="ttl_${b}_CLIENT"
    ep=${!ep_var}
    etcdctl --endpoints="$ep" user add root:rootpw --interactive=false >/dev/null
    etcdctl --endpoints="$ep" auth enable >/dev/null
    tok=$(curl -sS -X POST "http://$ep/v3/auth/authenticate" \
        -d '{"name":"root","password":"rootpw"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    code() {
        curl -sS -o /dev/null -w '%{http_code}' -X POST "http://$ep/v3/kv/range" \
            -d '{"key":"aw=="}' -H "Authorization: $tok"
    }
    # an expired lease is revoked with auth enabled too (etcd: WithRoot)
    lid=$(etcdctl --endpoints="$ep" --user=root:rootpw lease grant 2 |
        sed -n 's/^lease \([0-9a-f]*\) granted.*/\1/p')
    etcdctl --endpoints="$ep" --user=root:rootpw put --lease="$lid" leased v >/dev/null
    kt_check "$b: a fresh token works" 200 "$(code)"
    sleep 1.2
    kt_check "$b: used within its TTL" 200 "$(code)"
    sleep 1.2
    kt_check "$b: each use extends it" 200 "$(code)"
    sleep 4
    kt_check "$b: an idle token expires" 401 "$(code)"
    kt_check "$b: the expired lease's key is gone" "" \
        "$(etcdctl --endpoints="$ep" --user=root:rootpw get leased)"
done
