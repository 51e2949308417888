#!/usr/bin/python3
"""Differential test: the keel MVCC store against a real etcd 3.4.

Random KV requests (range with every option, at old revisions too; put with
prev_kv/ignore_value/ignore_lease/lease; deleterange; txn with compares on
keys and ranges and nested txns; compaction; lease grant/revoke) go to a
local /usr/bin/etcd through its JSON gateway and, the same bytes, to keel's
MVCC store through mvcc_replay (which prints responses with keel's gateway
encoder). Responses must be equal except cluster_id/member_id/raft_term.

Sorted ranges are compared exactly, ties included: etcd's sort.Sort is not
stable, and keel reproduces the order it leaves equal keys in (go_sort.c).

    diff_etcd.py MVCC_REPLAY [--seeds N] [--ops N]

Exit 77 (skipped) when /usr/bin/etcd is not installed.
"""
import base64
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ETCD = "/usr/bin/etcd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def b64(b):
    return base64.b64encode(b).decode()


class Etcd:
    def __init__(self, tmp):
        self.cport, pport = free_port(), free_port()
        self.url = "http://127.0.0.1:%d" % self.cport
        peer = "http://127.0.0.1:%d" % pport
        self.log = open(os.path.join(tmp, "etcd.log"), "w")
        self.p = subprocess.Popen(
            [ETCD, "--name", "d", "--data-dir", os.path.join(tmp, "etcd"),
             "--listen-client-urls", self.url,
             "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer,
             "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "d=" + peer],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                    if b"true" in r.read():
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.time() > deadline:
                raise SystemExit("etcd did not start")
            time.sleep(0.1)

    def call(self, path, body):
        req = urllib.request.Request(self.url + path, data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def events(self, body, until_rev):
        """Events a watch from start_revision gets. Catch-up comes at once:
        read until an event at until_rev (keel's last one) arrived, then
        only as long as more keeps coming quickly."""
        req = urllib.request.Request(
            self.url + "/v3/watch",
            data=json.dumps({"create_request": json.loads(body)}).encode())
        events = []
        r = urllib.request.urlopen(req, timeout=2)
        try:
            while True:
                if events and int(events[-1]["kv"]["mod_revision"]) >= until_rev:
                    r.fp.raw._sock.settimeout(0.05)
                elif until_rev == 0:
                    r.fp.raw._sock.settimeout(0.2)
                line = r.readline()
                if not line:
                    break
                res = json.loads(line).get("result", {})
                events += res.get("events", [])
        except (socket.timeout, TimeoutError, OSError):
            pass
        finally:
            r.close()
        return {"events": events} if events else {}

    def stop(self):
        self.p.terminate()
        self.p.wait()
        self.log.close()


PATHS = {"range": "/v3/kv/range", "put": "/v3/kv/put",
         "deleterange": "/v3/kv/deleterange", "txn": "/v3/kv/txn",
         "compaction": "/v3/kv/compaction", "leasegrant": "/v3/lease/grant",
         "leaserevoke": "/v3/lease/revoke"}


class Replay:
    def __init__(self, binary, tmp):
        self.p = subprocess.Popen([binary, os.path.join(tmp, "keel", "db")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)

    def call(self, op, body):
        self.p.stdin.write("%s %s\n" % (op, body))
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise SystemExit("mvcc_replay died")
        return json.loads(line)

    def stop(self):
        self.p.stdin.close()
        self.p.wait()


def strip_headers(x):
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k == "header" and isinstance(v, dict):
                v = {kk: vv for kk, vv in v.items()
                     if kk not in ("cluster_id", "member_id", "raft_term")}
            out[k] = strip_headers(v)
        return out
    if isinstance(x, list):
        return [strip_headers(v) for v in x]
    return x


def first_diff(a, b, path="$"):
    """Where two JSON values first differ, and the two sides there."""
    if type(a) != type(b):
        return path, a, b
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return path + "." + k, a.get(k), b.get(k)
            d = first_diff(a[k], b[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(a, list):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        if len(a) != len(b):
            return path + ".length", len(a), len(b)
        return None
    return None if a == b else (path, a, b)


def normalize(op, req, resp):
    if "error" in resp:
        # etcd's gateway: {"error": msg, "message": msg, "code": n}
        return {"error": resp.get("message", resp["error"])}
    if op in ("leasegrant", "leaserevoke"):
        return {"ok": True}
    return strip_headers(resp)


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        keys = []
        for n in (1, 2, 3):
            for i in range(3 ** n):
                s, x = "", i
                for _ in range(n):
                    s = "abc"[x % 3] + s
                    x //= 3
                keys.append(s.encode())
        long_prefix = b"b" + b"x" * 449
        keys += [long_prefix + bytes([c]) for c in b"\x00aAz"] + [b"b" + b"x" * 399]
        keys += [b"b" + b"x" * 20000 + b"q", b"c" + b"\xff" * 100000]
        self.keys = keys
        self.rev = 1
        self.compact = 0
        self.leases = []
        self.next_lease = 1000

    def key(self):
        return self.r.choice(self.keys)

    def span(self, d):
        k = self.key()
        d["key"] = b64(k)
        c = self.r.randrange(5)
        if c == 1:
            d["range_end"] = b64(b"\x00")
        elif c == 2:
            k2 = self.key()
            if self.r.randrange(4):  # mostly a non-empty interval
                k, k2 = min(k, k2), max(k, k2)
                d["key"] = b64(k)
            d["range_end"] = b64(k2)
        elif c == 3:
            p = k[:self.r.randrange(1, min(len(k), 3) + 1)]
            d["key"] = b64(p)
            e = p.rstrip(b"\xff")  # etcd's GetPrefixRangeEnd
            d["range_end"] = b64(e[:-1] + bytes([e[-1] + 1]) if e else b"\x00")

    def value(self):
        return b64(bytes(self.r.choice(b"0123") for _ in range(self.r.randrange(5))))

    def revision(self):
        if self.r.randrange(2):
            return 0
        lo = max(1, self.compact - 2)
        return self.r.randrange(lo, self.rev + 3)

    def range_req(self):
        d = {}
        self.span(d)
        r = self.r
        if r.randrange(2):
            d["revision"] = self.revision()
        if r.randrange(2):
            d["limit"] = r.randrange(1, 5)
        if r.randrange(2):
            d["sort_order"] = r.choice(["NONE", "ASCEND", "DESCEND"])
        if r.randrange(2):
            d["sort_target"] = r.choice(["KEY", "VERSION", "CREATE", "MOD", "VALUE"])
        for f in ("keys_only", "count_only"):
            if r.randrange(8) == 0:
                d[f] = True
        for f in ("min_mod_revision", "max_mod_revision",
                  "min_create_revision", "max_create_revision"):
            if r.randrange(6) == 0:
                d[f] = r.randrange(0, self.rev + 1)
        return d

    def put_req(self, plain=False):
        d = {"key": b64(self.key()), "value": self.value()}
        r = self.r
        if plain:
            return d
        if r.randrange(2):
            d["prev_kv"] = True
        if self.leases and r.randrange(4) == 0:
            d["lease"] = self.r.choice(self.leases)
        elif r.randrange(40) == 0:
            d["lease"] = 999999
        if r.randrange(12) == 0:
            d["ignore_value"] = True
            d.pop("value")
        if r.randrange(12) == 0:
            d["ignore_lease"] = True
            d.pop("lease", None)
        return d

    def del_req(self):
        d = {}
        if self.r.randrange(3):
            d["key"] = b64(self.key())
        else:
            self.span(d)
        if self.r.randrange(2):
            d["prev_kv"] = True
        return d

    def compare(self):
        c = {"key": b64(self.key())}
        if self.r.randrange(5) == 0:
            self.span(c)
        c["result"] = self.r.choice(["EQUAL", "GREATER", "LESS", "NOT_EQUAL"])
        t = self.r.choice(["VERSION", "CREATE", "MOD", "VALUE", "LEASE"])
        c["target"] = t
        if t == "VALUE":
            c["value"] = self.value()
        elif t == "LEASE":
            c["lease"] = self.r.choice([0] + self.leases)
        else:
            c[{"VERSION": "version", "CREATE": "create_revision",
               "MOD": "mod_revision"}[t]] = self.r.randrange(0, self.rev + 1)
        return c

    def ops(self, depth):
        out, n = [], self.r.randrange(0, 4)
        for _ in range(n):
            c = self.r.randrange(8 if depth < 2 else 7)
            if c < 3:
                out.append({"request_put": self.put_req(plain=True)})
            elif c < 5:
                out.append({"request_delete_range": self.del_req()})
            elif c < 7:
                rr = self.range_req()
                if self.r.randrange(2):
                    rr.pop("revision", None)
                out.append({"request_range": rr})
            else:
                out.append({"request_txn": self.txn_req(depth + 1)})
        return out

    def txn_req(self, depth=0):
        d = {}
        cmps = [self.compare() for _ in range(self.r.randrange(3))]
        if cmps:
            d["compare"] = cmps
        s, f = self.ops(depth), self.ops(depth)
        if s:
            d["success"] = s
        if f:
            d["failure"] = f
        return d

    def next(self):
        c = self.r.randrange(200) / 2.0
        if c < 1:
            d = {}
            self.span(d)
            d["start_revision"] = self.r.randrange(max(1, self.compact),
                                                   self.rev + 2)
            if self.r.randrange(2):
                d["prev_kv"] = True
            return "events", d
        if c < 30:
            return "range", self.range_req()
        if c < 63:
            return "put", self.put_req()
        if c < 70:
            return "deleterange", self.del_req()
        if c < 91:
            return "txn", self.txn_req()
        if c < 97:
            if self.leases and self.r.randrange(2):
                lid = self.r.choice(self.leases)
                return "leaserevoke", {"ID": lid}
            self.next_lease += 1
            return "leasegrant", {"ID": self.next_lease, "TTL": 3600}
        # mostly keep some history behind the compact revision
        lo = max(1, self.compact)
        hi = self.rev + 2 if self.r.randrange(4) == 0 else lo + (self.rev - lo) // 2 + 1
        return "compaction", {"revision": self.r.randrange(lo - 1, hi),
                              "physical": True}

    def observe(self, op, req, resp):
        """Follow the revision etcd reports."""
        if "error" in resp:
            return
        h = resp.get("header", {})
        if "revision" in h:
            self.rev = max(self.rev, int(h["revision"]))
        if op == "compaction":
            self.compact = req["revision"]
        if op == "leasegrant":
            self.leases.append(req["ID"])
        if op == "leaserevoke" and req["ID"] in self.leases:
            self.leases.remove(req["ID"])


def main():
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        return 2
    replay = args[0]
    seeds = int(args[args.index("--seeds") + 1]) if "--seeds" in args else 3
    nops = int(args[args.index("--ops") + 1]) if "--ops" in args else 800
    if not os.access(ETCD, os.X_OK):
        print("skipped: %s not installed" % ETCD)
        return 77
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    for seed in range(1, seeds + 1):
        tmp = tempfile.mkdtemp(prefix="keel-diff-", dir=base)
        etcd = rep = None
        try:
            etcd = Etcd(tmp)
            rep = Replay(replay, tmp)
            g = Gen(seed)
            stats = {}
            for i in range(nops):
                op, req = g.next()
                body = json.dumps(req)
                if op == "events":
                    b = rep.call(op, body)
                    last = b.get("events", [{}])[-1].get("kv", {})
                    a = etcd.events(body, int(last.get("mod_revision", 0)))
                else:
                    a = etcd.call(PATHS[op], body)
                    b = rep.call(op, body)
                na, nb = normalize(op, req, a), normalize(op, req, b)
                if na != nb:
                    print("seed %d op %d: %s %s" % (seed, i, op, body[:2000]))
                    where, x, y = first_diff(na, nb)
                    print("  first difference at %s" % where)
                    print("  etcd: %s" % json.dumps(x, sort_keys=True)[:2000])
                    print("  keel: %s" % json.dumps(y, sort_keys=True)[:2000])
                    if os.environ.get("DIFF_DEBUG"):
                        print("  etcd full: %s" % json.dumps(na, sort_keys=True))
                        print("  keel full: %s" % json.dumps(nb, sort_keys=True))
                    return 1
                g.observe(op, req, a)
                if "error" in na:
                    what = na["error"].replace("etcdserver: ", "")
                elif op == "txn":
                    what = "txn " + ("succeeded" if na.get("succeeded") else "failed")
                elif op == "range":
                    what = "range with kvs" if na.get("kvs") else "range empty"
                else:
                    what = op
                stats[what] = stats.get(what, 0) + 1
            print("seed %d: %d requests, same answers (revision %d, compacted "
                  "at %d)" % (seed, nops, g.rev, g.compact))
            print("  " + ", ".join("%s: %d" % kv for kv in sorted(stats.items())))
        finally:
            if rep:
                rep.stop()
            if etcd:
                etcd.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
