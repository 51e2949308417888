#!/usr/bin/env python3
"""Run v2 API cases against one server and print what a client sees,
normalised only where two servers must differ (ports, ids, clocks).

    v2_client.py HOST:PORT CASES_FILE

Case lines (# comments and blank lines ignored):
    ctl ARGS...               ETCDCTL_API=2 etcdctl --endpoints=... ARGS
                              (stdout, stderr, exit code)
    http METHOD PATH [BODY]   one request; BODY is a form
                              (application/x-www-form-urlencoded); prints
                              the status, X-Etcd-Index, the content type
                              and the body
    json METHOD PATH [BODY]   the same with an application/json body
    hdr METHOD PATH           only the status and the names of the headers
                              etcd sends for it (X-Etcd-*, X-Raft-*,
                              CORS, Allow, Location, Content-Type, ...)
    repeat N http ...         N requests, printing only a summary
    bg NAME http ...          start the request in the background
    join NAME                 wait for it (up to 30 s) and print it
    sleep SECONDS
    streamjoin NAME N         wait for N events of a stream=true watch
"""
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time

EP = sys.argv[1]
HOST, PORT = EP.split(":")
out = []


def emit(s):
    out.append(s)


def normalise(s):
    s = s.replace(EP, "HOST:PORT")
    s = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:P", s)
    s = re.sub(r'"expiration":"[^"]*"', '"expiration":"T"', s)
    s = re.sub(r'"ttl":\d+', '"ttl":N', s)
    s = re.sub(r"(Expiration|TTL): .*", r"\1: X", s)


    return s


def request(method, path, body=None, ctype=None, stream_n=0, timeout=30):
    c = http.client.HTTPConnection(HOST, int(PORT), timeout=timeout)
    headers = {}
    if body is not None:
        headers["Content-Type"] = ctype or "application/x-www-form-urlencoded"
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    if stream_n:
        lines = []
        while len(lines) < stream_n:
            line = r.fp.readline()
            if not line:
                break
            line = line.strip()
            # chunked framing is undone by http.client only through read();
            # skip chunk-size lines
            if line and not line.startswith(b"{"):
                continue
            if line:
                lines.append(line.decode())
        data = "\n".join(lines) + "\n"
    else:
        data = r.read().decode("utf-8", "replace")
    res = "status=%d index=%s type=%s\n%s" % (
        r.status, r.getheader("X-Etcd-Index"), r.getheader("Content-Type"),
        data)
    c.close()
    return res


def header_names(method, path):
    c = http.client.HTTPConnection(HOST, int(PORT), timeout=30)
    c.request(method, path)
    r = c.getresponse()
    r.read()
    names = sorted(k.lower() for k, _ in r.getheaders()
                   if k.lower().startswith(("x-etcd", "x-raft", "access-control",
                                            "x-content-type", "allow",
                                            "location", "content-type")))
    c.close()
    return "status=%d headers=%s" % (r.status, ",".join(names))


def ctl(args):
    env = dict(os.environ, ETCDCTL_API="2")
    p = subprocess.run(["/usr/bin/etcdctl", "--endpoints=http://" + EP] + args,
                       env=env, capture_output=True, text=True, timeout=60)
    return "%s%src=%d" % (p.stdout, p.stderr, p.returncode)


def split_http(words):
    method, path = words[1], words[2]
    body = " ".join(words[3:]) if len(words) > 3 else None
    return method, path, body


bg = {}


def run(line):
    words = line.split()
    if words[0] == "ctl":
        import shlex
        emit(ctl(shlex.split(line)[1:]))
    elif words[0] in ("http", "json"):
        m, p, b = split_http(words)
        try:
            emit(request(m, p, b, "application/json" if words[0] == "json"
                         else None, timeout=10))
        except Exception as e:  # noqa: BLE001 - reported in the output
            emit("error: %s" % type(e).__name__)
    elif words[0] == "hdr":
        emit(header_names(words[1], words[2]))
    elif words[0] == "repeat":
        n = int(words[1])
        m, p, b = split_http(words[2:])
        codes = {}
        for _ in range(n):
            s = request(m, p, b).split()[0]
            codes[s] = codes.get(s, 0) + 1
        emit("repeat %d: %s" % (n, sorted(codes.items())))
    elif words[0] == "bg":
        name = words[1]
        stream_n = 0
        if words[2] == "stream":
            stream_n = int(words[3])
            words = words[:2] + words[4:]
        m, p, b = split_http(words[2:])
        res = {}

        def go():
            try:
                res["out"] = request(m, p, b, stream_n=stream_n)
            except Exception as e:  # noqa: BLE001 - reported in the output
                res["out"] = "error: %s" % type(e).__name__
        t = threading.Thread(target=go, daemon=True)
        t.start()
        bg[name] = (t, res)
        time.sleep(0.3)  # let the watch register before the next write
    elif words[0] == "join":
        t, res = bg.pop(words[1])
        t.join(30)
        emit(res.get("out", "timeout: no event"))
    elif words[0] == "sleep":
        time.sleep(float(words[1]))
    else:
        raise SystemExit("bad case line: " + line)


for raw in open(sys.argv[2]):
    line = raw.strip()
    if not line or line.startswith("#"):
        continue
    emit("### " + line)
    run(line)

print(normalise("\n".join(out)))
