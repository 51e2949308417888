#!/usr/bin/env bash
# keel-faultproxy between curl/etcdctl and a real keel: bytes intact,
# partition stops traffic and heal restores it, one-way cuts, delay adds
# measurable latency, blackhole swallows, drop resets, reset closes open
# connections, bad control commands are answered with an error.
#   usage: test_faultproxy.sh KEEL_BIN LINWORK_BIN LINCHECK_BIN PROXY_BIN
. "$(dirname "$0")/../integration/lib.sh"
KEEL_BIN=${1:?keel binary}
PROXY=${4:?keel-faultproxy binary}
CTL="$KT_TMP/ctl"

kt_start m "$KEEL_BIN"
PP=$(kt_free_port)
"$PROXY" --control "$CTL" --route "127.0.0.1:$PP=$m_CLIENT" \
    >"$KT_TMP/proxy.log" 2>&1 &
KT_PIDS+=($!)
for _ in $(seq 50); do "$PROXY" ctl "$CTL" status >/dev/null 2>&1 && break; sleep 0.1; done
EP="127.0.0.1:$PP"
ctl() { "$PROXY" ctl "$CTL" "$@"; }
# curl_rc ARGS: curl's exit status (0 = answered), with 52 (empty reply)
# and 56 (reset: closed with our request unread) both as "closed"
curl_rc() {
    local rc=0
    curl -sS -o /dev/null "$@" 2>/dev/null || rc=$?
    case $rc in 52|56) echo closed ;; *) echo "$rc" ;; esac
}

kt_check "curl /health through the proxy" '{"health":"true"}' \
    "$(curl -fsS -m 5 "http://$EP/health")"
head -c 300000 /dev/urandom | base64 -w0 >"$KT_TMP/big"
big=$(cat "$KT_TMP/big")
etcdctl --endpoints="$EP" put big <"$KT_TMP/big" >/dev/null
kt_check "a 400 KB value through the proxy, intact" \
    "$(sha256sum <"$KT_TMP/big")" \
    "$(etcdctl --endpoints="$EP" get big --print-value-only | tr -d '\n' | sha256sum)"
status=$(ctl status)
echo "$status" | grep -q "^route 127.0.0.1:$PP -> $m_CLIENT conns" ||
    { echo "FAIL: status: $status" >&2; exit 1; }
up=$(echo "$status" | sed -n 's/.* bytes_up \([0-9]*\).*/\1/p')
[ "$up" -gt 400000 ] || { echo "FAIL: bytes_up $up" >&2; exit 1; }
echo "ok: status counts $up bytes up"

# partition: refused at once, the server unreachable; heal restores
kt_check "partition answers ok" ok "$(ctl partition "$PP")"
kt_check "curl during a partition: closed without an answer" closed "$(curl_rc -m 5 "http://$EP/health")"
rc=0
etcdctl --endpoints="$EP" --dial-timeout=1s --command-timeout=2s get big >/dev/null 2>&1 || rc=$?
kt_check "etcdctl during a partition fails" 1 "$rc"
ctl heal "$PP" >/dev/null
kt_check "curl after heal" 0 "$(curl_rc -m 5 "http://$EP/health")"
kt_check "etcdctl after heal" "$(sha256sum <"$KT_TMP/big")" \
    "$(etcdctl --endpoints="$EP" get big --print-value-only | tr -d '\n' | sha256sum)"

# one-way: requests vanish (up), or the answers do (down)
ctl partition "$PP" up >/dev/null
kt_check "up cut: the request never arrives (timeout)" 28 "$(curl_rc -m 1 "http://$EP/health")"
ctl heal "$PP" >/dev/null
ctl partition all down >/dev/null
kt_check "down cut: the answer never comes back (timeout)" 28 "$(curl_rc -m 1 "http://$EP/health")"
ctl heal all >/dev/null

# delay: 400 ms each way is at least 0.8 s for a request/response
ctl delay "$PP" 400ms >/dev/null
t=$(curl -fsS -o /dev/null -m 10 -w '%{time_total}' "http://$EP/health")
python3 -c "import sys; t=float('$t'); sys.exit(0 if t >= 0.8 else 1)" ||
    { echo "FAIL: delayed request took $t s" >&2; exit 1; }
echo "ok: 400ms delay each way: request took $t s"
ctl delay "$PP" 0 >/dev/null
t=$(curl -fsS -o /dev/null -m 10 -w '%{time_total}' "http://$EP/health")
python3 -c "import sys; t=float('$t'); sys.exit(0 if t < 0.8 else 1)" ||
    { echo "FAIL: undelayed request took $t s" >&2; exit 1; }
echo "ok: delay 0: request took $t s"

# blackhole: accepted, never answered, never closed
ctl blackhole "$PP" >/dev/null
kt_check "blackhole: timeout" 28 "$(curl_rc -m 1 "http://$EP/health")"
ctl heal "$PP" >/dev/null

# drop 1: every chunk lost, so every connection is reset
ctl drop "$PP" 1 >/dev/null
kt_check "drop 1: closed without an answer" closed "$(curl_rc -m 5 "http://$EP/health")"
ctl heal "$PP" >/dev/null
kt_check "after heal" 0 "$(curl_rc -m 5 "http://$EP/health")"

# reset closes an idle open connection (the client sees EOF at once)
ctl reset all >/dev/null
python3 - "$PP" "$PROXY" "$CTL" <<'PY'
import socket, subprocess, sys, time
port, proxy, ctl = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
time.sleep(0.3)
st = subprocess.run([proxy, "ctl", ctl, "status"], capture_output=True, text=True).stdout
assert " conns 1 " in st, st
t0 = time.time()
assert subprocess.run([proxy, "ctl", ctl, "reset", str(port)]).returncode == 0
s.settimeout(5)
try:
    data = s.recv(10)
except ConnectionResetError:
    data = b""
assert data == b"", data
print("ok: reset closed the open connection in %.3f s" % (time.time() - t0))
PY

# per-member partitions: a second proxy in front of an echo server; fake
# peer connections name their sender as keel (HELLO frame) and etcd
# (X-Server-From) do
EPORT=$(kt_free_port)
python3 - "$EPORT" >"$KT_TMP/echo.log" 2>&1 <<'PY' &
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1])))
srv.listen(16)
def echo(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
PY
KT_PIDS+=($!)
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $EPORT))" 2>/dev/null && break; sleep 0.1; done
PP2=$(kt_free_port)
CTL2="$KT_TMP/ctl2"
"$PROXY" --control "$CTL2" --route "127.0.0.1:$PP2=127.0.0.1:$EPORT" \
    >"$KT_TMP/proxy2.log" 2>&1 &
KT_PIDS+=($!)
for _ in $(seq 50); do "$PROXY" ctl "$CTL2" status >/dev/null 2>&1 && break; sleep 0.1; done
python3 - "$PP2" "$PROXY" "$CTL2" <<'PY'
import socket, struct, subprocess, sys, time
port, proxy, ctl = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def ctl_(*a):
    r = subprocess.run([proxy, "ctl", ctl] + list(a), capture_output=True, text=True)
    assert r.returncode == 0, (a, r.stdout)
    return r.stdout
def keel_peer(from_id):
    s = socket.create_connection(("127.0.0.1", port))
    hello = struct.pack(">IHBBQQQ", 0x4B45454C, 1, 1, 0, 7, from_id, 9)
    s.sendall(struct.pack(">IB", len(hello), 1) + hello)
    return s
def etcd_peer(from_id):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /raftstream/message/1 HTTP/1.1\r\nHost: x\r\n"
              b"X-Server-From: %x\r\nX-Raft-To: 2\r\n\r\n" % from_id)
    return s
def alive(s, tag):
    # the echo answers (the hello/headers came back first: drain them)
    s.settimeout(2)
    s.sendall(tag)
    got = b""
    while not got.endswith(tag):
        d = s.recv(65536)
        if not d:
            return False
        got += d
    return True
def closed(s):
    s.settimeout(2)
    try:
        s.sendall(b"x")
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
def silent(s, tag):
    s.settimeout(0.5)
    s.sendall(tag)
    try:
        d = s.recv(65536)
        # only what was echoed before the cut may come back
        return tag not in d
    except socket.timeout:
        return True
a, b, c = keel_peer(0xabc), etcd_peer(0xdef), keel_peer(0x123)
for s, t in ((a, b"A1"), (b, b"B1"), (c, b"C1")):
    assert alive(s, t)
st = ctl_("status")
assert " identified 3 " in st, st
ctl_("partition", str(port), "from", "abc")
ctl_("partition", str(port), "from", "DEF", "up")
st = ctl_("status")
assert " from abc both" in st and " from def up" in st, st
assert closed(a), "abc's connection survived its partition"
assert silent(b, b"B2"), "def's bytes crossed an up cut"
assert alive(c, b"C2"), "123 was cut with the others"
a2 = keel_peer(0xabc)
assert closed(a2), "a new connection from abc was forwarded"
e2 = etcd_peer(0xabc)
assert closed(e2), "a new etcd-style connection from abc was forwarded"
# Go reuses a connection whose first request named nobody (etcd's prober)
# for later requests that do (raft messages): those are caught too
r = socket.create_connection(("127.0.0.1", port))
r.sendall(b"GET /raft/probing HTTP/1.1\r\nHost: x\r\n\r\n")
assert alive(r, b"R1")
ctl_("partition", str(port), "from", "777")
assert alive(r, b"R2"), "an anonymous connection was cut"
r.sendall(b"POST /raft HTTP/1.1\r\nHost: x\r\nX-Server-Fr")
time.sleep(0.2)
r.sendall(b"om: 777\r\nContent-Length: 0\r\n\r\n")
assert closed(r), "a reused connection from 777 was not cut"
ctl_("heal", str(port))
a3 = keel_peer(0xabc)
assert alive(a3, b"A3") and alive(c, b"C3")
print("ok: per-member partitions: keel HELLO and etcd X-Server-From senders told apart")
PY

# bad commands: an error line and exit 1; no proxy: exit 2
bad() {
    local want=$1 rc=0 out
    shift
    out=$(ctl "$@") || rc=$?
    kt_check "ctl $*: exit 1" 1 "$rc"
    kt_check "ctl $*: message" "$want" "$out"
}
bad 'error: unknown command "frobnicate" (partition, blackhole, delay, drop, reset, heal, status)' frobnicate
bad 'error: unknown route "1"' partition 1
bad 'error: usage: partition ROUTE [from MEMBER-ID] [up|down|both]' partition
bad 'error: from needs a member id in hex (etcdctl member list)' partition "$PP" from xyz
bad 'error: direction must be up, down or both' partition "$PP" from ab sideways
bad 'error: direction must be up, down or both' partition "$PP" sideways
bad 'error: bad duration "soon" (e.g. 200ms, 1s)' delay "$PP" soon
bad 'error: bad probability "1.5" (0..1)' drop "$PP" 1.5
bad 'error: usage: status' status now
rc=0
"$PROXY" ctl "$KT_TMP/nope" status >/dev/null 2>&1 || rc=$?
kt_check "ctl without a proxy: exit 2" 2 "$rc"
rc=0
"$PROXY" --control "$KT_TMP/c2" --route "127.0.0.1:x=1" >/dev/null 2>&1 || rc=$?
kt_check "bad --route: exit 2" 2 "$rc"
# the proxy survived all of it and still forwards
kt_check "still forwarding" '{"health":"true"}' "$(curl -fsS -m 5 "http://$EP/health")"
