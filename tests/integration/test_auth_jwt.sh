#!/usr/bin/env bash
# --auth-token jwt, etcd 3.4 vs keel, for RS256, PS384, ES256 and HS256
# keys made with the openssl CLI: the same commands on both (etcdctl --user,
# curl with the token), token header and claims compared (exp aside), and
# keel accepts a token etcd signed with the same key (and keeps refusing
# one signed with another method, or expired: ttl=2s).
#   usage: test_auth_jwt.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
K=$KT_TMP/keys
mkdir -p "$K"
ssl() { openssl "$@" >/dev/null 2>&1; }
ssl genrsa -out "$K/rsa.key" 2048
ssl rsa -in "$K/rsa.key" -pubout -out "$K/rsa.pub"
ssl ecparam -name prime256v1 -genkey -noout -out "$K/ec.key"
ssl ec -in "$K/ec.key" -pubout -out "$K/ec.pub"
head -c 32 /dev/urandom >"$K/hs.key"
for f in rsa.key rsa.pub ec.key ec.pub; do
    [ -s "$K/$f" ] || { echo "openssl failed to make $f" >&2; exit 1; }
done
U= # the server under test

token() { # token USER PASSWORD
    curl -sS -X POST "$U/v3/auth/authenticate" \
        -d '{"name":"'"$1"'","password":"'"$2"'"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("token",""))'
}
decode() { # the header and claims of a JWT, exp replaced
    python3 - "$1" <<'EOF'
import base64, json, re, sys
parts = sys.argv[1].split(".")
for p in parts[:2]:
    s = base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode()
    print(re.sub(r'"exp":\d+', '"exp":E', s))
EOF
}

# start NAME BINARY --auth-token value: a fresh server; sets U, E and PID
start() {
    kt_start "$1" "$2" --auth-token "$3"
    local c="${1}_CLIENT" p="${1}_PID"
    U="http://${!c}"
    E=(etcdctl --endpoints="${!c}")
    PID=${!p}
}

scenario() { # $1 = name, $2 = binary, $3 = --auth-token, $4 = transcript
    local out=$4
    start "$1" "$2" "$3"
    : >"$out"
    {
        set +e
        "${E[@]}" user add root:rootpw --interactive=false
        "${E[@]}" user add u1:p1 --interactive=false
        "${E[@]}" role add r1
        "${E[@]}" role grant-permission r1 readwrite --prefix foo
        "${E[@]}" user grant-role u1 r1
        "${E[@]}" auth enable
        "${E[@]}" --user=u1:p1 put foo1 v
        "${E[@]}" --user=u1:p1 put bar v
        "${E[@]}" --user=u1:bad get foo1
        "${E[@]}" --user=root:rootpw user list
    } 2>&1 | grep -v '"level"' >>"$out" || true
    local t
    t=$(token u1 p1)
    echo "## token" >>"$out"
    decode "$t" >>"$out"
    curl -sS -X POST "$U/v3/kv/range" -d '{"key":"Zm9vMQ=="}' \
        -H "Authorization: $t" -w ' %{http_code}\n' >>"$out"
    curl -sS -X POST "$U/v3/kv/range" -d '{"key":"YmFy"}' \
        -H "Authorization: $t" -w ' %{http_code}\n' >>"$out"
    curl -sS -X POST "$U/v3/kv/range" -d '{"key":"Zm9vMQ=="}' \
        -H "Authorization: ${t}x" -w ' %{http_code}\n' >>"$out"
    # a token etcd signed (same key, same revisions): accepted by keel
    if [ -n "${ETCD_TOKEN:-}" ]; then
        echo "## etcd's token on keel" >>"$out"
        curl -sS -X POST "$U/v3/kv/range" -d '{"key":"Zm9vMQ=="}' \
            -H "Authorization: $ETCD_TOKEN" -w ' %{http_code}\n' >>"$out"
    else
        echo "## etcd's token on keel" >>"$out"
        curl -sS -X POST "$U/v3/kv/range" -d '{"key":"Zm9vMQ=="}' \
            -H "Authorization: $t" -w ' %{http_code}\n' >>"$out"
        ETCD_TOKEN=$t
    fi
    # a changed auth store makes older tokens stale for checked requests
    "${E[@]}" --user=root:rootpw role add r2 >/dev/null
    curl -sS -X POST "$U/v3/kv/put" -d '{"key":"Zm9vMg==","value":"dg=="}' \
        -H "Authorization: $t" -w ' %{http_code}\n' >>"$out"
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
}

normalise() {
    sed -E -e 's/"(cluster_id|member_id)":"[0-9]+"/"\1":"ID"/g' "$1"
}

for spec in "pub-key=$K/rsa.pub,priv-key=$K/rsa.key,sign-method=RS256" \
            "pub-key=$K/rsa.pub,priv-key=$K/rsa.key,sign-method=PS384" \
            "pub-key=$K/ec.pub,priv-key=$K/ec.key,sign-method=ES256" \
            "priv-key=$K/hs.key,sign-method=HS256"; do
    ETCD_TOKEN=
    m=${spec##*=}
    scenario "etcd_$m" "$ETCD_BIN" "jwt,$spec" "$KT_TMP/etcd.$m"
    scenario "keel_$m" "$KEEL_BIN" "jwt,$spec" "$KT_TMP/keel.$m"
    if ! diff -u <(normalise "$KT_TMP/etcd.$m") <(normalise "$KT_TMP/keel.$m") \
            >"$KT_TMP/diff"; then
        echo "FAIL: jwt $m differs between etcd 3.4 (-) and keel (+):"
        cat "$KT_TMP/diff"
        exit 1
    fi
    echo "ok: jwt $m: same answers, same token claims, etcd's token accepted"
done
normalise "$KT_TMP/keel.ES256"

# expiry (ttl=2s), and a verify-only member (public key only): both servers
n=0
for bin in "$ETCD_BIN" "$KEEL_BIN"; do
    b=$(basename "$bin")
    for spec in "priv-key=$K/hs.key,sign-method=HS256,ttl=2s" \
                "pub-key=$K/rsa.pub,sign-method=RS256"; do
        n=$((n + 1))
        start "ttl$n" "$bin" "jwt,$spec"
        "${E[@]}" user add root:rootpw --interactive=false >/dev/null
        "${E[@]}" auth enable >/dev/null
        if [ "${spec#pub-key}" != "$spec" ]; then
            kt_check "$b: a verify-only member cannot issue tokens" \
                '{"error":"auth: token signing attempted with verify-only key","message":"auth: token signing attempted with verify-only key","code":2} 500' \
                "$(curl -sS -X POST "$U/v3/auth/authenticate" \
                    -d '{"name":"root","password":"rootpw"}' -w ' %{http_code}')"
        else
            t=$(token root rootpw)
            code() {
                curl -sS -o /dev/null -w '%{http_code}' -X POST \
                    "$U/v3/kv/range" -d '{"key":"aw=="}' -H "Authorization: $t"
            }
            kt_check "$b: a fresh jwt works" 200 "$(code)"
            sleep 3.5
            kt_check "$b: an expired jwt is refused" 401 "$(code)"
        fi
        kill -TERM "$PID"
        wait "$PID" 2>/dev/null || true
    done
done
