#!/bin/bash
# Differential test of the gateway's request decoding: send every input of a
# fuzz corpus to a real etcd 3.4 and to keel's decoder (json_pb_decode_tool)
# and compare the HTTP status and error body. Not run by ctest (it needs an
# etcd and takes a minute per route per 2000 inputs).
#
#   testdata/differential.sh <json_pb_decode_tool> <corpus-dir> [route...]
#
# Routes default to a few that cannot harm the throwaway etcd:
# /v3/kv/range /v3/kv/txn /v3/auth/role/grant /v3/lease/timetolive.
# An etcd answer of 200 or an "etcdserver:" error counts as "decoded".
# Differences are listed, except the deliberate one: keel accepts unpadded
# and URL-safe base64, etcd 3.4 does not.
#
# Known etcd 3.4.23 crash: a Range with sort_target outside 0..4 (e.g.
# {"key":"AA==","sort_target":5}) panics the whole server (nil sorter in
# etcdserver/apply.go); the script restarts etcd when that happens.
set -u
TOOL=$1 CORPUS=$2
shift 2
ROUTES=${*:-/v3/kv/range /v3/kv/txn /v3/auth/role/grant /v3/lease/timetolive}
ETCD=${ETCD:-/usr/bin/etcd}
TMP=$(mktemp -d)
PID=
ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
CP=${ports% *} PP=${ports#* }
E=http://127.0.0.1:$CP
start() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }
    rm -rf "$TMP/data"
    "$ETCD" --data-dir "$TMP/data" --listen-client-urls "$E" \
        --advertise-client-urls "$E" --listen-peer-urls "http://127.0.0.1:$PP" \
        --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
        --initial-cluster "default=http://127.0.0.1:$PP" >"$TMP/log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do curl -sf "$E/health" >/dev/null && return; sleep 0.1; done
    echo "etcd did not start" >&2; exit 1
}
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT
start
files=("$CORPUS"/*)
status=0
for route in $ROUTES; do
    "$TOOL" "$route" "${files[@]}" >"$TMP/keel"
    : >"$TMP/etcd"
    for f in "${files[@]}"; do
        tail -c +2 "$f" >"$TMP/body"
        r=$(curl -s -m 5 -w '\t%{http_code}' -XPOST "$E$route" --data-binary @"$TMP/body")
        case "$r" in *000) echo "etcd died on $f ($route)" >&2; start; continue;; esac
        printf '%s\t%s\n' "$f" "$r" >>"$TMP/etcd"
    done
    python3 - "$TMP/keel" "$TMP/etcd" "$route" <<'PY' || status=1
import sys
keel = {}
for line in open(sys.argv[1], 'rb'):
    f, res = line.rstrip(b'\n').split(b'\t', 1)
    keel[f] = res
same = lenient = 0
diff = []
for line in open(sys.argv[2], 'rb'):
    parts = line.rstrip(b'\n').split(b'\t')
    f, code, body = parts[0], parts[-1], b'\t'.join(parts[1:-1])
    decoded = code == b'200' or body.startswith(b'{"error":"etcdserver: ')
    want = b'OK' if decoded else code + b' ' + body
    if keel[f] == want:
        same += 1
    elif b'illegal base64' in want:
        lenient += 1
    else:
        diff.append((f, want, keel[f]))
print('%s: %d same, %d base64 leniency, %d different'
      % (sys.argv[3], same, lenient, len(diff)))
for f, w, k in diff[:20]:
    print(' ', f.decode(), '\n    etcd:', w[:300], '\n    keel:', k[:300])
sys.exit(1 if diff else 0)
PY
done
exit $status
