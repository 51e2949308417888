#!/usr/bin/env bash
# Integration test of the keel binary's command line, env, config file,
# logging and signal handling.
#
# Where it is cheap (errors that exit at once), the same command runs against
# the real etcd 3.4 (/usr/bin/etcd) and the outputs are compared after
# removing timestamps: keel is run through a symlink named "etcd" so that
# the program name in messages is the same.
#
# usage: test_cli.sh path/to/keel
set -u

KEEL=$(realpath "$1")
ETCD=${ETCD:-/usr/bin/etcd}
TMP=$(mktemp -d /tmp/keel_cli.XXXXXX)
PIDS=()
FAILS=0
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

mkdir -p "$TMP/bin" "$TMP/work"
ln -s "$KEEL" "$TMP/bin/etcd"
KEEL_AS_ETCD="$TMP/bin/etcd"
cd "$TMP/work" || exit 1

# A clean environment: no stray ETCD_* variables from the caller.
CLEAN_ENV=(env -i "PATH=$PATH" "HOME=$TMP" "TZ=UTC"
           "ASAN_OPTIONS=${ASAN_OPTIONS:-}" "UBSAN_OPTIONS=${UBSAN_OPTIONS:-}")

ok() { echo "ok - $*"; }
not_ok() { echo "not ok - $*"; FAILS=$((FAILS + 1)); }
expect() { # desc, then a command that must succeed
    local desc=$1; shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# run NAME cmd... : stdout in $TMP/NAME.out, stderr in $TMP/NAME.err, exit
# code in $TMP/NAME.rc; 10 s limit (these commands exit at once).
run() {
    local name=$1; shift
    timeout -s KILL 10 "${CLEAN_ENV[@]}" "$@" >"$TMP/$name.out" \
        2>"$TMP/$name.err"
    echo $? >"$TMP/$name.rc"
}
rc() { cat "$TMP/$1.rc"; }
# stderr without capnslog timestamps
norm() { sed -E 's/^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6} //' "$TMP/$1.err"; }

HAVE_ETCD=0
if [ -x "$ETCD" ] && "$ETCD" --version 2>/dev/null | grep -q '^etcd Version: 3\.4\.'; then
    HAVE_ETCD=1
else
    echo "# $ETCD (3.4) not found: differential checks skipped"
fi

# ---------------------------------------------------------------------------
# --version, --help

run kv "$KEEL" --version
expect "--version exits 0" test "$(rc kv)" = 0
expect "--version prints etcd's version line" \
    grep -qx 'etcd Version: 3.4.23' "$TMP/kv.out"
expect "--version prints a keel line" grep -q '^keel Version: ' "$TMP/kv.out"
run kh "$KEEL" --help
expect "--help exits 0" test "$(rc kh)" = 0
expect "--help: usage on stderr" grep -q '^Usage:' "$TMP/kh.err"
expect "--help: flags on stdout" grep -qx "  --name 'default'" "$TMP/kh.out"
run kh2 "$KEEL" -h
expect "-h exits 0 with the flag list" \
    sh -c "test $(rc kh2) = 0 && cmp -s '$TMP/kh.out' '$TMP/kh2.out'"

if [ $HAVE_ETCD = 1 ]; then
    run ev "$ETCD" --version
    expect "--version: first line as etcd" \
        test "$(head -1 "$TMP/ev.out")" = "$(head -1 "$TMP/kv.out")"
    expect "--version: Go OS/Arch line as etcd" \
        test "$(grep '^Go OS/Arch' "$TMP/ev.out")" = "$(grep '^Go OS/Arch' "$TMP/kv.out")"
    run eh "$ETCD" --help
    # The same text as etcd's, but for keel's notes ("[keel: ...]" lines)
    # and --pre-vote's default (keel: etcd 3.5's true).
    grep -v '^    \[keel: ' "$TMP/kh.out" |
        sed "s/^  --pre-vote 'true'\$/  --pre-vote 'false'/" >"$TMP/kh.cmp"
    if diff "$TMP/eh.out" "$TMP/kh.cmp" >"$TMP/help.diff"; then
        ok "--help prints etcd's flag list (plus keel notes)"
    else
        not_ok "--help prints etcd's flag list (plus keel notes)"
        sed 's/^/#   /' "$TMP/help.diff"
    fi
    expect "--help: usage line as etcd's Go flag package prints it" \
        test "$(head -1 "$TMP/eh.err")" = "$(head -1 "$TMP/kh.err")"
fi

# ---------------------------------------------------------------------------
# Errors: same text and exit code as etcd

USAGE_CASES=(
    "--bogus-flag"
    "--snapshot-count=abc"
    "--pre-vote=maybe"
    "--listen-client-urls foo"
    "--listen-client-urls http://127.0.0.1:2379/path"
    "--name"
    "---name=x"
    "--initial-cluster-state bogus"
    "--max-concurrent-streams 99999999999"
    "--backend-batch-interval 10"
    "--cors="
)
VERIFY_CASES=(
    "extra"
    "--pre-vote false"
    "--election-timeout 100"
    "--election-timeout 60000"
    "--heartbeat-interval 0"
    "--listen-client-urls http://127.0.0.1:41790"
    "--advertise-client-urls http://:2379"
    "--listen-client-urls http://foo:2379 --advertise-client-urls http://foo:2379"
    "--logger bogus"
    "--auto-compaction-mode bogus"
    "--discovery-srv example.com --initial-cluster a=http://1.2.3.4:1"
    "--listen-client-urls="
    "--log-outputs="
)

i=0
for args in "${USAGE_CASES[@]}"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    run "ku$i" "$KEEL_AS_ETCD" $args
    expect "usage error '$args' exits 2" test "$(rc ku$i)" = 2
    expect "usage error '$args' prints usage" grep -q '^Usage:' "$TMP/ku$i.err"
    if [ $HAVE_ETCD = 1 ]; then
        # shellcheck disable=SC2086
        run "eu$i" "$ETCD" $args
        expect "usage error '$args': same exit code as etcd" \
            test "$(rc ku$i)" = "$(rc eu$i)"
        expect "usage error '$args': same message as etcd" \
            test "$(head -1 "$TMP/ku$i.err")" = "$(head -1 "$TMP/eu$i.err")"
    fi
done

i=0
for args in "${VERIFY_CASES[@]}"; do
    i=$((i + 1))
    # shellcheck disable=SC2086
    run "kv$i" "$KEEL_AS_ETCD" $args
    expect "bad configuration '$args' exits 1" test "$(rc kv$i)" = 1
    expect "bad configuration '$args' says why" \
        grep -q 'E | etcdmain: error verifying flags, ' "$TMP/kv$i.err"
    if [ $HAVE_ETCD = 1 ]; then
        # shellcheck disable=SC2086
        run "ev$i" "$ETCD" $args
        expect "bad configuration '$args': same exit code as etcd" \
            test "$(rc kv$i)" = "$(rc ev$i)"
        if diff <(norm "kv$i") <(norm "ev$i") >"$TMP/v$i.diff"; then
            ok "bad configuration '$args': same stderr as etcd"
        else
            not_ok "bad configuration '$args': same stderr as etcd"
            sed 's/^/#   /' "$TMP/v$i.diff"
        fi
    fi
done

# Environment errors
run ke1 env ETCD_SNAPSHOT_COUNT=abc "$KEEL_AS_ETCD"
run ke2 env ETCD_NAME=x "$KEEL_AS_ETCD" --name y
expect "bad env value exits 1" test "$(rc ke1)" = 1
expect "bad env value names the variable" \
    grep -q 'invalid value "abc" for ETCD_SNAPSHOT_COUNT: parse error' "$TMP/ke1.err"
expect "env shadowed by a flag exits 1" test "$(rc ke2)" = 1
expect "env shadowed by a flag: critical line" \
    grep -q 'C | pkg/flags: conflicting environment variable "ETCD_NAME" is shadowed' "$TMP/ke2.err"
if [ $HAVE_ETCD = 1 ]; then
    run ee1 env ETCD_SNAPSHOT_COUNT=abc "$ETCD"
    run ee2 env ETCD_NAME=x "$ETCD" --name y
    expect "bad env value: same stderr as etcd" \
        test "$(norm ke1)" = "$(norm ee1)"
    expect "env shadowed by a flag: same stderr and code as etcd" \
        test "$(norm ke2)/$(rc ke2)" = "$(norm ee2)/$(rc ee2)"
fi

# Config files etcd rejects: same stderr and exit code
CF_CASES=(
    'name: [1, 2]'
    'snapshot-count: abc'
    'enable-v2: 3'
    'pre-vote: "true"'
    'heartbeat-interval: 1.5'
    'election-timeout: 100'
    '- a'
    'client-transport-security: 5'
    'listen-client-urls: foo'
    'advertise-client-urls: http://:2379'
    'initial-cluster-state: bogus'
    'name: x\n  y: : z'
)
i=0
for text in "${CF_CASES[@]}"; do
    i=$((i + 1))
    printf '%b\n' "$text" >"$TMP/cf$i.yaml"
    run "kc$i" "$KEEL_AS_ETCD" --config-file "$TMP/cf$i.yaml"
    expect "config file '$text' is refused" test "$(rc kc$i)" = 1
    if [ $HAVE_ETCD = 1 ]; then
        run "ec$i" "$ETCD" --config-file "$TMP/cf$i.yaml"
        if [ "$(norm "kc$i")/$(rc kc$i)" = "$(norm "ec$i")/$(rc ec$i)" ]; then
            ok "config file '$text': same stderr and exit code as etcd"
        else
            not_ok "config file '$text': same stderr and exit code as etcd"
            diff <(norm "kc$i") <(norm "ec$i") | sed 's/^/#   /'
        fi
    fi
done
if [ $HAVE_ETCD = 1 ]; then
    run kc0 "$KEEL_AS_ETCD" --config-file "$TMP/missing.yaml"
    run ec0 "$ETCD" --config-file "$TMP/missing.yaml"
    expect "missing config file: same stderr and exit code as etcd" \
        test "$(norm kc0)/$(rc kc0)" = "$(norm ec0)/$(rc ec0)"
fi

# Config file with a bad URL (raw stderr line) and a missing file
printf 'listen-client-urls: foo\n' >"$TMP/bad.yaml"
run kf1 "$KEEL" --config-file "$TMP/bad.yaml"
expect "config file with a bad URL exits 1" test "$(rc kf1)" = 1
expect "config file with a bad URL: etcd's message" \
    grep -qx 'unexpected error setting up listen-client-urls: URL scheme must be http, https, unix, or unixs: foo' "$TMP/kf1.err"
run kf2 "$KEEL" --config-file "$TMP/missing.yaml"
expect "missing config file exits 1" test "$(rc kf2)" = 1
expect "missing config file: etcd's message" \
    grep -q "error verifying flags, open $TMP/missing.yaml: no such file or directory" "$TMP/kf2.err"

# A retention etcd cannot parse: checked at startup, critical line, exit 1
run kr "$KEEL_AS_ETCD" --auto-compaction-retention abc --data-dir "$TMP/dr"
expect "bad retention exits 1" test "$(rc kr)" = 1
expect "bad retention: etcd's message" \
    grep -q 'C | etcdmain: error parsing CompactionRetention: time: invalid duration "abc"$' "$TMP/kr.err"
if [ $HAVE_ETCD = 1 ]; then
    run er "$ETCD" --auto-compaction-retention abc --data-dir "$TMP/dr"
    expect "bad retention: same critical line and exit code as etcd" \
        test "$(norm kr | grep '^C | ')/$(rc kr)" = "$(norm er | grep '^C | ')/$(rc er)"
    expect "bad retention: etcd prints that line too" grep -q ' C | ' "$TMP/er.err"
fi

# A data dir that cannot be created
run kd "$KEEL" --data-dir /proc/keel-cannot-create
expect "uncreatable data dir exits 1" test "$(rc kd)" = 1
expect "uncreatable data dir: etcd's message" \
    grep -q 'C | etcdmain: cannot access data directory: mkdir /proc/keel-cannot-create' "$TMP/kd.err"

# ---------------------------------------------------------------------------
# Running: start keel in the background, wait for a log line, signal it.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# Flags for a server on free loopback ports: NETFLAGS for member NAME, now
# that keel serves (never the default 2379, which another test may use).
net() { # NAME
    CP=$(free_port); PP=$(free_port)
    NETFLAGS=(--listen-client-urls "http://127.0.0.1:$CP"
              --advertise-client-urls "http://127.0.0.1:$CP"
              --listen-peer-urls "http://127.0.0.1:$PP"
              --initial-advertise-peer-urls "http://127.0.0.1:$PP"
              --initial-cluster "$1=http://127.0.0.1:$PP")
}
start() { # NAME cmd... ; pid in $PID
    local name=$1; shift
    "${CLEAN_ENV[@]}" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PID=$!
    PIDS+=("$PID")
}
wait_for() { # FILE PATTERN: up to 10 s
    for _ in $(seq 1 200); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
stop() { # SIGNAL ; exit code in $CODE (137 if it had to be killed)
    kill -"$1" "$PID"
    for _ in $(seq 1 200); do
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$PID" 2>/dev/null
    wait "$PID"
    CODE=$?
}

# ETCD_* environment picked up, data dir created, SIGTERM -> exit 0
net envname
start r1 env ETCD_NAME=envname ETCD_DATA_DIR="$TMP/d1" ETCD_BOGUS=1 \
    ETCD_LISTEN_CLIENT_URLS="http://127.0.0.1:$CP" \
    ETCD_ADVERTISE_CLIENT_URLS="http://127.0.0.1:$CP" \
    ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:$PP" \
    ETCD_INITIAL_CLUSTER="envname=http://127.0.0.1:$PP" "$KEEL"
expect "env: keel starts and logs its config summary" \
    wait_for "$TMP/r1.err" 'embed: name = envname'
expect "env: keel serves" wait_for "$TMP/r1.err" 'ready to serve client requests'
expect "env: logs the variables it used" \
    grep -q 'I | pkg/flags: recognized and used environment variable ETCD_NAME=envname' "$TMP/r1.err"
expect "env: warns about unknown ETCD_ variables" \
    grep -q 'W | pkg/flags: unrecognized environment variable ETCD_BOGUS=1' "$TMP/r1.err"
expect "startup: etcd's version block" \
    grep -q 'I | etcdmain: etcd Version: 3.4.23' "$TMP/r1.err"
expect "startup: data dir line" grep -q "I | embed: data dir = $TMP/d1\$" "$TMP/r1.err"
expect "startup: member dir line" grep -q "I | embed: member dir = $TMP/d1/member\$" "$TMP/r1.err"
expect "startup: serves etcdctl" \
    sh -c "ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$CP put k v | grep -qx OK"
expect "data dir created with mode 0700" test "$(stat -c %a "$TMP/d1")" = 700
expect "member dir created with mode 0700" test "$(stat -c %a "$TMP/d1/member")" = 700
stop TERM
expect "SIGTERM: exit 0" test "$CODE" = 0
expect "SIGTERM: etcd's shutdown line" \
    grep -q 'N | pkg/osutil: received terminated signal, shutting down...' "$TMP/r1.err"

# An initialized data dir is recognized, a too open one is warned about;
# SIGINT -> exit 0
chmod 755 "$TMP/d1"
net again
start r2 "$KEEL" --data-dir "$TMP/d1" --name again "${NETFLAGS[@]}"
expect "restart: data dir recognized as initialized" \
    wait_for "$TMP/r2.err" 'N | etcdmain: the server is already initialized as member before'
expect "restart: keel serves the data it had" \
    sh -c "for i in \$(seq 1 100); do ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:$CP get k --print-value-only 2>/dev/null | grep -qx v && exit 0; sleep 0.1; done; exit 1"
expect "restart: etcd's warning about a data dir that is not 0700" \
    grep -q "W | pkg/fileutil: check file permission: directory \"$TMP/d1\" exist, but the permission is \"drwxr-xr-x\". The recommended permission is \"-rwx------\" to prevent possible unprivileged access to the data." "$TMP/r2.err"
stop INT
expect "SIGINT: exit 0" test "$CODE" = 0
expect "SIGINT: etcd's shutdown line" \
    grep -q 'received interrupt signal, shutting down...' "$TMP/r2.err"

# Config file: flags and env ignored
cat >"$TMP/good.yaml" <<EOF
name: fromfile
data-dir: $TMP/d2
heartbeat-interval: 50
election-timeout: 500
listen-client-urls: http://127.0.0.1:$(free_port)
advertise-client-urls: http://127.0.0.1:$(free_port)
initial-cluster: fromfile=http://localhost:2380
EOF
start r3 env ETCD_NAME=fromenv "$KEEL" --config-file "$TMP/good.yaml" --name fromflag
expect "config file: its name is used" wait_for "$TMP/r3.err" 'embed: name = fromfile'
wait_for "$TMP/r3.err" 'ready to serve client requests'
expect "config file: etcd's loading line" \
    grep -q "I | etcdmain: Loading server configuration from \"$TMP/good.yaml\". Other configuration command line flags and environment variables will be ignored if provided." "$TMP/r3.err"
expect "config file: heartbeat and election from the file" \
    sh -c "grep -q 'embed: heartbeat = 50ms' '$TMP/r3.err' && grep -q 'embed: election = 500ms' '$TMP/r3.err'"
stop TERM
expect "config file run: exit 0" test "$CODE" = 0

# zap: every line is a JSON object with etcd's keys
net zappy
ZAP_URL="http://127.0.0.1:$CP"
start r4 "$KEEL" --logger zap --data-dir "$TMP/d3" --name zappy --enable-pprof \
    "${NETFLAGS[@]}"
expect "zap: starting line" wait_for "$TMP/r4.err" '"msg":"starting an etcd server"'
expect "zap: ready line" wait_for "$TMP/r4.err" '"msg":"ready to serve client requests"'
stop TERM
expect "zap: exit 0 on SIGTERM" test "$CODE" = 0
check_json() { # FILE [required msg [name in the starting line]]
    ZAP_URL="${ZAP_URL:-}" python3 - "$@" <<'PY'
import json, os, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines, "no log lines"
msgs = []
for l in lines:
    o = json.loads(l)
    assert isinstance(o, dict), l
    for k in ("level", "ts", "caller", "msg"):
        assert k in o, (k, l)
    assert o["level"] in ("debug", "info", "warn", "error", "panic", "fatal"), l
    msgs.append(o)
if len(sys.argv) > 2:
    assert any(m["msg"] == sys.argv[2] for m in msgs), sys.argv[2]
start = [m for m in msgs if m["msg"] == "starting an etcd server"]
if start and len(sys.argv) > 3:
    assert start[0]["name"] == sys.argv[3], start[0]
    assert start[0]["etcd-version"] == "3.4.23"
    assert start[0]["heartbeat-interval"] == "100ms"
    assert start[0]["listen-client-urls"] == [os.environ["ZAP_URL"]]
PY
}
expect "zap: every stderr line is valid JSON with level/ts/caller/msg" \
    check_json "$TMP/r4.err" "received signal; shutting down" zappy
expect "zap: ignored flag is reported" \
    grep -q '"msg":"ignoring flag not implemented by keel","flag":"enable-pprof"' "$TMP/r4.err"

# zap to a file
net default
ZAP_URL="http://127.0.0.1:$CP"
start r5 "$KEEL" --logger=zap --log-outputs="$TMP/zap.log" --data-dir "$TMP/d4" --log-level=debug "${NETFLAGS[@]}"
expect "zap file output: ready line" wait_for "$TMP/zap.log" 'ready to serve client'
stop TERM
expect "zap file output: exit 0" test "$CODE" = 0
expect "zap file output: valid JSON lines" \
    check_json "$TMP/zap.log" "starting an etcd server" default
expect "zap file output: nothing on stderr" test ! -s "$TMP/r5.err"

# capnslog to stdout, and --log-level warn hides info lines
net default
start r6 "$KEEL" --log-outputs stdout --log-level warn --data-dir "$TMP/d5" --enable-pprof "${NETFLAGS[@]}"
expect "capnslog to stdout: warning line on stdout" \
    wait_for "$TMP/r6.out" 'W | etcdmain: ignoring flag --enable-pprof'
expect "capnslog to stdout: keel serves" \
    sh -c "for i in \$(seq 1 100); do curl -fs http://127.0.0.1:$CP/health && exit 0; sleep 0.1; done; exit 1"
stop TERM
expect "capnslog to stdout: exit 0" test "$CODE" = 0
expect "--log-level warn: no info lines" \
    sh -c "! grep -q ' I | ' '$TMP/r6.out'"
expect "capnslog to stdout: only the raw deprecation warning on stderr" \
    test "$(cat "$TMP/r6.err")" = "[WARNING] Deprecated '--logger=capnslog' flag is set; use '--logger=zap' flag instead"

# zap verification error is a JSON line too
run kz "$KEEL" --logger zap --election-timeout 100
expect "zap: bad configuration exits 1" test "$(rc kz)" = 1
expect "zap: bad configuration logged as JSON" check_json "$TMP/kz.err" "failed to verify flags"

echo "# $FAILS failure(s)"
[ "$FAILS" = 0 ]
