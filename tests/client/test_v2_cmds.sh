#!/bin/bash
# keelctl with ETCDCTL_API=2 vs etcdctl 3.4, the rest of etcdctl 2's command
# set (test_v2.sh has the plain key commands): -o json, mk --in-order,
# setdir, watch (--after-index, -r, -f), exec-watch (ETCD_WATCH_*), member
# list/add/remove/update, cluster-health, user/role/auth and --username,
# --debug's cURL lines, cluster sync and --no-sync, unreachable and silent
# endpoints (exit codes, --timeout, --total-timeout), TLS (--ca-file,
# --cert-file, --key-file, https endpoints), --discovery-srv errors.
#
# Each suite starts a fresh server per tool with the same flags and ports,
# so indexes match; stdout, stderr and exit code of every case are diffed.
# Normalised, as they cannot match: expiration times and remaining TTLs in
# JSON, and the random ID of a member added by `member add`.
#
#   [V2_SUITES="help keys ..."] [V2_SERVERS=etcd|keel] [V2_BACKUP=1] \
#       test_v2_cmds.sh <keelctl> [<keel>]
#
# The server is etcd 3.4 with --enable-v2; with <keel>, the suites run
# against keel --enable-v2 too when keel serves /v2/keys (else skipped).
set -u
KEELCTL=${1:?usage: test_v2_cmds.sh <keelctl> [keel]}
KEEL=${2:-}
ETCDCTL=/usr/bin/etcdctl
. "$(dirname "$0")/ctl_lib.sh" # ETCDCTL_API=3, lib.sh, TMP
export ETCDCTL_API=2
trap ctl_cleanup EXIT
cd "$TMP" || exit 1

C=$(kt_free_port)
P=$(kt_free_port)
kt_dead_port
DEAD=$KT_DEAD_PORT # refuses connections (bound, not listening)
SILENT=$(kt_free_port) # accepts, never answers
python3 -c 'import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", '"$SILENT"')); s.listen(64); time.sleep(3600)' &
SILENT_PID=$!
KT_PIDS+=("$SILENT_PID") # ended by the EXIT trap

# -- certificates for the TLS suite (openssl CLI)
ctl_make_certs || { echo "openssl failed" >&2; exit 1; }

# show.sh: what exec-watch hands its command
cat >show.sh <<'EOF'
#!/bin/sh
echo "ran $# args: $*"
echo "ETCD_WATCH_ACTION=$ETCD_WATCH_ACTION ETCD_WATCH_KEY=$ETCD_WATCH_KEY ETCD_WATCH_VALUE=$ETCD_WATCH_VALUE ETCD_WATCH_MODIFIED_INDEX=$ETCD_WATCH_MODIFIED_INDEX"
EOF
chmod +x show.sh

SCHEME=http
start_server() { # binary, then extra server flags
    local bin=$1
    shift
    rm -rf data
    "$bin" --enable-v2 --name v2 --data-dir data \
        --listen-client-urls "$SCHEME://127.0.0.1:$C" \
        --advertise-client-urls "${ADV:-$SCHEME://127.0.0.1:$C}" \
        --listen-peer-urls "http://127.0.0.1:$P" \
        --initial-advertise-peer-urls "http://127.0.0.1:$P" \
        --initial-cluster "v2=http://127.0.0.1:$P" "$@" >>server.log 2>&1 &
    CTL_PID=$!
    for _ in $(seq 200); do
        curl -fsS -m 1 --cacert ca.crt --cert client.crt --key client.key \
            "$SCHEME://127.0.0.1:$C/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start" >&2
    return 1
}

# run [IN=stdin] args...: one case, its exit code, stdout and stderr.
run() {
    local in=""
    if [[ ${1-} == IN=* ]]; then
        in=${1#IN=}
        shift
    fi
    echo "### $*"
    # a case that should end but waits is cut after 20 s (rc=124)
    printf '%s' "$in" | timeout 20 "$CTL" "$@" >o 2>e
    echo "rc=$?"
    echo "-- stdout"
    cat o
    echo "-- stderr"
    cat e
}

# runbg LINES args...: a command that runs until SIGINT (watch -f,
# exec-watch): started in the background, interrupted once its stdout has
# LINES lines (or after 30 s), then reported as run does. $TRIGGER, when
# set, is evaluated right after the start (it makes the events).
runbg() {
    local lines=$1
    shift
    echo "### (until $lines lines, then SIGINT) $*"
    "$CTL" "$@" </dev/null >o 2>e &
    local pid=$!
    [ -n "${TRIGGER:-}" ] && eval "$TRIGGER"
    for _ in $(seq 300); do
        [ "$(wc -l <o)" -ge "$lines" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    sleep 0.2 # a command exec-watch started may still be writing
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    echo "rc=$?"
    echo "-- stdout"
    cat o
    echo "-- stderr"
    cat e
}

# The index of the server's last change (X-Etcd-Index).
index_now() {
    curl -sS -m 5 -o /dev/null -D - --cacert ca.crt --cert client.crt \
        --key client.key -u root:rootpw "$SCHEME://127.0.0.1:$C/v2/keys/" |
        tr -d '\r' | sed -n 's/^X-Etcd-Index: //Ip'
}
vset() { # key value (through curl: not part of the compared output)
    curl -sS -m 5 -o /dev/null --cacert ca.crt --cert client.crt \
        --key client.key -u root:rootpw -X PUT \
        "$SCHEME://127.0.0.1:$C/v2/keys$1" -d "value=$2"
}

# What cannot match: expiration times and remaining TTLs; the random ID
# `member add` gives, and so where that member sorts (etcd lists members by
# ID): after a member add, member lines and ETCD_INITIAL_CLUSTER entries
# are sorted.
normalise() {
    sed -E -e 's/"expiration":"[^"]*"/"expiration":"T"/g' \
        -e 's/"ttl":[0-9]+/"ttl":N/g' -e 's/^TTL: [1-9][0-9]*$/TTL: N/' \
        -e 's/^[0-9a-f]+\[unstarted\]/ID[unstarted]/' \
        -e 's/with ID [0-9a-f]+ to/with ID ID to/' \
        -e 's/^member [0-9a-f]+ is unreachable: no available/member ID is unreachable: no available/' |
        python3 -c '
import sys
added = False
block = []
def flush():
    global added
    if added and "-- stdout\n" in block:
        a = block.index("-- stdout\n") + 1
        b = block.index("-- stderr\n")
        out = block[a:b]
        tail = [l for l in out if l.startswith("cluster is ")]
        block[a:b] = sorted(l for l in out if l not in tail) + tail
    sys.stdout.writelines(block)
    added = added or any(l.startswith("Added member") for l in block)
    block.clear()
for line in sys.stdin:
    if line.startswith("ETCD_INITIAL_CLUSTER="):
        v = line.rstrip("\n")[22:-1]
        line = "ETCD_INITIAL_CLUSTER=\"" + ",".join(sorted(v.split(","))) + "\"\n"
    if line.startswith("### "):
        flush()
    block.append(line)
flush()
'
}

# ---- suites: each is a function run once per tool, $CTL and $EP set ----

suite_keys() {
    local E=--endpoints=$EP
    run "$E" -o json set /a 1
    run "$E" -o json get /a
    run "$E" -o json set --ttl 100000 /t 'x<&>"\'
    run "$E" -o json get /t
    run "$E" -o json mk /a 2
    run "$E" -o json mkdir /d
    run "$E" -o json setdir /sd
    run "$E" setdir /sd2
    run "$E" set /sk v
    run "$E" -o json setdir /sk
    run "$E" -o json set /d/x 3
    run "$E" -o json ls --sort
    run "$E" -o json ls --sort -r /d
    run "$E" -o json update /a 5
    run "$E" -o json updatedir --ttl 100000 /d
    run "$E" -o json rm /a
    run "$E" -o json rmdir /sd
    run "$E" -o json rm -r /d
    run "$E" -o json get /nokey
    run "$E" mk --in-order /q v1
    run "$E" -o extended mk --in-order /q v2
    run "$E" -o json mk --in-order --ttl 100000 /q v3
    run "$E" mk --in-order /a v4
    run "$E" ls --sort /q
    run "$E" set /late 1 --ttl 100000
    run "$E" -o extended get /late
    run IN=fromstdin "$E" set /in
    run IN=fromstdin "$E" mk --in-order /q
    run "$E" watch
    run "$E" watch --after-index 3 /t
    run "$E" -o extended watch --after-index 4 /a
    run "$E" -o json watch --after-index 4 /a
    run "$E" watch -r --after-index 1 /
    run "$E" watch -r --after-index=9 /q
    run "$E" -o json watch -r --after-index 6 /d
    local ix
    ix=$(index_now)
    TRIGGER="vset /live 1; vset /live 2; vset /other 3; vset /live 4" \
        runbg 3 "$E" watch -f --after-index "$ix" /live
    ix=$(index_now)
    TRIGGER="vset /r/a 1; vset /r/b 2" \
        runbg 2 "$E" -o json watch --forever -r --after-index "$ix" /r
    run "$E" exec-watch
    run "$E" exec-watch /x
    # one event on /e after $ix; the key and command as urfave/cli's
    # reordering leaves them: "key -- cmd" works only right after a bool
    # flag, else the key is the last argument
    ix=$(index_now)
    run "$E" set /e 'x<&>"\'
    runbg 2 "$E" exec-watch --after-index "$ix" -r /e -- ./show.sh one 'two words'
    runbg 2 "$E" exec-watch --after-index "$ix" ./show.sh x /e
    run "$E" exec-watch --after-index "$ix" ./no-such-command /e
    run "$E" exec-watch --after-index "$ix" no-such-command-in-path /e
    # /d: dir events are skipped ("Ignored dir"), one key event runs show.sh
    runbg 2 "$E" exec-watch --after-index 5 -r /d -- ./show.sh
    run "$E" --debug get /t
    run "$E" --debug --no-sync set /dbg 'a b&c'
    run "$E" --debug --no-sync mkdir /dbgdir
    run "$E" --debug --no-sync mk --in-order --ttl 100000 /q v
    run "$E" --debug --no-sync rm -r /dbgdir
    run "$E" --debug --no-sync -o json watch --after-index 2 /a
    run "$E" --debug --no-sync update /a 1
    run "$E" --debug --no-sync set --swap-with-value 1 --swap-with-index 5 /dbg x
    run "$E" --debug --no-sync ls --sort -r -q /q
    run "$E" --debug member list
    run "$E" --debug --no-sync cluster-health
    run "$E" -o bogus get /t
    run "$E" nosuchcommand
    run --endpoints="$EP,http://127.0.0.1:$DEAD" --no-sync get /t
    run --endpoints="http://127.0.0.1:$DEAD,$EP" --no-sync get /t
    run --endpoints="http://127.0.0.1:$DEAD" get /t
    run --endpoints="http://127.0.0.1:$DEAD" --no-sync get /t
    run --endpoints="http://127.0.0.1:$DEAD" -o json --no-sync get /t
    run --endpoints="http://127.0.0.1:$DEAD" member list
    run --endpoints="http://127.0.0.1:$DEAD" cluster-health
    run --endpoints="http://127.0.0.1:$DEAD" user list
    run --endpoints="http://127.0.0.1:$SILENT" --timeout 300ms --no-sync get /t
    run --endpoints="http://127.0.0.1:$SILENT" --timeout 300ms get /t
    run --endpoints="http://127.0.0.1:$SILENT" --timeout 5s --total-timeout 300ms get /t
    run --endpoints="http://127.0.0.1:$SILENT" --timeout 5s --total-timeout 300ms --no-sync get /t
    run --endpoints="http://127.0.0.1:$SILENT" --timeout 300ms member list
    run --endpoints="$EP" -D example.invalid get /t
    run --endpoints="$EP" --discovery-srv example.invalid --insecure-discovery cluster-health
    ETCDCTL_DISCOVERY_SRV=example.invalid run get /t
    ETCDCTL_ENDPOINTS=$EP run get /t
    ETCDCTL_PEERS=$EP run --no-sync get /t
    run --peers "$EP" get /t
    run -C "$EP" --endpoint "http://127.0.0.1:$DEAD" --no-sync get /t
}

# urfave/cli's help and usage errors (no request is made)
suite_help() {
    local c
    run
    for c in --help -h help h "help help" "help get" "help member" \
        "help member list" "help nosuch" "get --help" "get -h" "get /a --help" \
        "ls -r --help" member "member --help" "member -h" "member help" \
        "member help list" "member h" "member help nosuch" "member nosuch" \
        "member list --help" "member list -h" "user grant --help" \
        "role grant -h" "auth enable --help" "auth" "auth -h" "user help" \
        "role help revoke" "cluster-health --help" "exec-watch --help" \
        "watch -h" "setdir --help" "get --bogus /a" "set --ttl x /a 1" \
        "set --ttl" "rm --dir=x /a" "watch --after-index x /a" \
        "mk --in-order=maybe /q v" "member list --bogus" "--bogus get /a" \
        "--timeout 1x get /a" "--debug=x get /a" "-o" --version -v \
        "--help get" "-o json --help"; do
        # shellcheck disable=SC2086
        run $c
    done
}

suite_members() {
    local E=--endpoints=$EP
    run "$E" member list
    run "$E" member list extra
    run "$E" member
    runbg 4 "$E" cluster-health -f
    run "$E" member add
    run "$E" member add n1
    run "$E" member add n1 bad
    run "$E" member add n1 http://x
    run "$E" member add n1 http://127.0.0.1:1/path
    run "$E" member remove
    run "$E" member remove 1234
    run "$E" member remove v2
    run "$E" member update
    run "$E" member update zz "http://127.0.0.1:$P"
    run "$E" member update zz "bad"
    run "$E" member update "$ID" "http://127.0.0.1:$P"
    run "$E" cluster-health
    run "$E" cluster-health extra
    # last: a second member that never starts costs the quorum
    run "$E" member add n1 "http://127.0.0.1:$DEAD"
    run "$E" member list
    run "$E" cluster-health
}

# cluster-health when a published client URL does not answer
suite_dead_client_url() {
    run --endpoints="$EP" cluster-health
    run --endpoints="$EP" --no-sync get /nokey
    run --endpoints="$EP" get /nokey
}

suite_auth() {
    local E=--endpoints=$EP
    run "$E" user list
    run "$E" user list extra
    run "$E" user add
    run "$E" user add root:rootpw
    run IN=alicepw "$E" user add alice
    run "$E" user add bob:b1
    run "$E" user get bob
    run "$E" user get nobody
    run "$E" user get
    run "$E" user grant bob
    run "$E" user grant --roles r1
    run "$E" role add r1
    run "$E" role add r1
    run "$E" role add
    run "$E" role get r1
    run "$E" role get nope
    run "$E" role grant r1
    run "$E" role grant --path '/foo/*' r1
    run "$E" role grant --path '/foo/*' --read --write r1
    run "$E" role grant --path foo/../x --read r1
    run "$E" role grant --path /x/ --read r1
    run "$E" role grant --path '/foo/*' --read r1
    run "$E" role grant --path '/foo/*' --read r1
    run "$E" role grant --path /bar -rw r1
    run "$E" role grant --path /baz --write r1
    run "$E" role grant --path /baz --write
    run "$E" role get r1
    run "$E" role revoke --path /bar --read r1
    run "$E" role revoke --path /nope --read r1
    run "$E" role revoke --path /nope --read nope
    run "$E" role list
    run "$E" role list extra
    run "$E" user grant --roles r1 bob
    run "$E" user grant --roles r1 --roles root bob
    run "$E" user grant --roles root alice
    run "$E" user get bob
    run "$E" user get alice
    run "$E" -o json user get alice
    run "$E" user revoke --roles r1 bob
    run "$E" user revoke --roles r1 bob
    run "$E" --debug user revoke --roles root alice
    run "$E" user remove nobody
    run "$E" role remove nope
    run "$E" role remove root
    run "$E" --debug role remove r1
    run "$E" auth
    run "$E" auth enable x
    run "$E" auth enable
    run "$E" set /a 1
    run "$E" -u root:bad get /a
    run "$E" -u root:rootpw set /a 1
    run "$E" --username=root:rootpw get /a
    run IN=rootpw "$E" -u root get /a
    run IN=wrong "$E" -u root get /a
    ETCDCTL_USERNAME=root:rootpw run "$E" -o json get /a
    run "$E" -u bob:b1 set /a 2
    run "$E" -u root:rootpw user list
    run "$E" user list
    run "$E" role list
    run "$E" -u bob:b1 member add n1 http://127.0.0.1:1
    run IN=newpw "$E" -u root:rootpw user passwd bob
    run "$E" -u bob:newpw get /a
    run "$E" user passwd
    run "$E" auth disable
    run "$E" -u bob:newpw auth disable
    run "$E" --debug -u root:rootpw auth disable
    run "$E" auth disable
    run "$E" user remove bob
    run "$E" user list
}

suite_tls() {
    local E=--endpoints=$EP
    run "$E" --ca-file ca.crt --cert-file client.crt --key-file client.key set /a 1
    run "$E" --ca-file ca.crt --cert-file client.crt --key-file client.key -o json get /a
    run "$E" --ca-file ca.crt --cert-file client.crt --key-file client.key member list
    run "$E" --ca-file ca.crt --cert-file client.crt --key-file client.key cluster-health
    run "$E" --ca-file ca.crt --cert-file client.crt --key-file client.key --debug --no-sync get /a
    ETCDCTL_CA_FILE=ca.crt ETCDCTL_CERT_FILE=client.crt ETCDCTL_KEY_FILE=client.key \
        run "$E" get /a
    run --endpoints="https://localhost:$C" --ca-file ca.crt --cert-file client.crt --key-file client.key --no-sync get /a
    run "$E" --ca-file otherca.crt --cert-file client.crt --key-file client.key get /a
    run "$E" --ca-file otherca.crt --cert-file client.crt --key-file client.key --no-sync get /a
    run "$E" --cert-file client.crt --key-file client.key --no-sync get /a
    run "$E" --ca-file ca.crt --cert-file client.crt get /a
    run "$E" --ca-file ca.crt --key-file client.key get /a
    run "$E" --ca-file nosuch.crt get /a
    run "$E" --ca-file ca.crt --cert-file nosuch.crt --key-file client.key get /a
    run "$E" --ca-file nosuch.crt cluster-health
    run --endpoints="http://127.0.0.1:$C" --no-sync get /a
}

ETCD=/usr/bin/etcd
# run_suite name server-binary [server flags...]: the suite once per tool,
# outputs diffed; returns 0 when identical.
run_suite() {
    local name=$1 bin=$2 tool
    shift 2
    # V2_SUITES="help keys": only those (when debugging a suite)
    if [ -n "${V2_SUITES:-}" ] && [[ " $V2_SUITES " != *" $name "* ]]; then
        return 0
    fi
    for tool in etcdctl keelctl; do
        if [ "$tool" = etcdctl ]; then CTL=$ETCDCTL; else CTL=$KEELCTL; fi
        start_server "$bin" "$@" || return 1
        ID=$(curl -sS --cacert ca.crt --cert client.crt --key client.key \
            "$SCHEME://127.0.0.1:$C/v2/members" | python3 -c \
            'import json,sys; print(json.load(sys.stdin)["members"][0]["id"])')
        "suite_$name" | normalise >"$name-$tool.out"
        ctl_stop
    done
    local n
    n=$(grep -c '^### ' "$name-etcdctl.out")
    if diff -u "$name-etcdctl.out" "$name-keelctl.out"; then
        echo "ok: $name: $n cases identical to etcdctl"
        return 0
    fi
    echo "FAIL: $name: keelctl (ETCDCTL_API=2) differs from etcdctl"
    return 1
}

# all suites against `bin` (etcd or keel)
run_all() {
    local bin=$1 fails=0
    SCHEME=http EP=http://127.0.0.1:$C
    run_suite help "$bin" || fails=$((fails + 1))
    run_suite keys "$bin" || fails=$((fails + 1))
    run_suite members "$bin" || fails=$((fails + 1))
    ADV="http://127.0.0.1:$DEAD,http://127.0.0.1:$C" run_suite dead_client_url "$bin" ||
        fails=$((fails + 1))
    run_suite auth "$bin" || fails=$((fails + 1))
    SCHEME=https EP=https://127.0.0.1:$C
    run_suite tls "$bin" --cert-file server.crt --key-file server.key \
        --trusted-ca-file ca.crt --client-cert-auth || fails=$((fails + 1))
    SCHEME=http
    return "$fails"
}

# V2_SERVERS="etcd" or "keel": only against that one (make test runs the
# two as separate tests, side by side)
fails=0
if [[ " ${V2_SERVERS:-etcd keel} " == *" etcd "* ]]; then
    run_all "$ETCD" || fails=$?
fi
if [ -n "$KEEL" ] && [[ " ${V2_SERVERS:-etcd keel} " == *" keel "* ]]; then
    # keel serves the v2 API only once its server has it
    start_server "$KEEL"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$C/v2/keys/")
    ctl_stop
    if [ "$code" = 200 ]; then
        echo "-- against keel --enable-v2"
        ETCD=$KEEL
        run_all "$KEEL" || fails=$((fails + $?))
    else
        echo "skipped against keel: /v2/keys answers $code"
    fi
fi
# backup with ETCDCTL_API=2 is keelctl's own, for keel data dirs (etcdctl's
# is for etcd's): an etcd data dir is refused and left untouched.
if [ -z "${V2_SUITES:-}" ] || [ "${V2_BACKUP:-0}" = 1 ]; then
    ETCD=/usr/bin/etcd
    start_server "$ETCD" && ctl_stop
    out=$("$KEELCTL" backup --data-dir data --backup-dir bk 2>&1)
    rc=$?
    if [ "$rc" = 1 ] && [[ $out == *"data is an etcd data dir (bbolt), not a keel one"* ]] &&
        [ ! -e bk ] && [ ! -e data/member/snap/db-lock ]; then
        echo "ok: backup refuses an etcd data dir"
    else
        echo "FAIL: backup of an etcd data dir: rc=$rc $out"
        fails=$((fails + 1))
    fi
    if [ -n "$KEEL" ]; then
        start_server "$KEEL" && ctl_stop
        if "$KEELCTL" backup --data-dir data --backup-dir bk &&
            [ -s bk/member/snap/db ]; then
            echo "ok: backup of a keel data dir"
        else
            echo "FAIL: backup of a keel data dir"
            fails=$((fails + 1))
        fi
    fi
fi
[ "$fails" = 0 ] || { echo "FAIL: $fails check(s) failed"; exit 1; }
exit 0
