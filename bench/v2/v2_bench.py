#!/usr/bin/env python3
"""v2 keys API load: etcd 3.4 vs keel, one fresh single member each, same
flags (--enable-v2), started one after the other on the same ports.

    bench/v2/v2_bench.py KEEL_BIN [--ops N] [--clients C]

Per server: C client threads, each with one keep-alive HTTP/1.1
connection, do N/C sequential PUTs of distinct keys (value 64 bytes),
then N/C GETs of them; reports requests/s and the p50/p99 latency of each
phase, and the server's RSS after the run. A measurement, not a test.
"""
import argparse
import http.client
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(binary, d, cport, pport):
    args = [binary, "--enable-v2", "--name", "b", "--data-dir", d,
            "--listen-client-urls", "http://127.0.0.1:%d" % cport,
            "--advertise-client-urls", "http://127.0.0.1:%d" % cport,
            "--listen-peer-urls", "http://127.0.0.1:%d" % pport,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % pport,
            "--initial-cluster", "b=http://127.0.0.1:%d" % pport]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", cport, timeout=1)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return p
        except OSError:
            pass
        time.sleep(0.05)
    p.kill()
    raise SystemExit("server did not start: " + binary)


def phase(cport, clients, per, method):
    lat = []
    lock = threading.Lock()

    def worker(w):
        c = http.client.HTTPConnection("127.0.0.1", cport, timeout=30)
        mine = []
        for i in range(per):
            path = "/v2/keys/bench/c%d/k%d" % (w, i)
            t0 = time.perf_counter()
            if method == "PUT":
                c.request("PUT", path, body="value=" + "x" * 64, headers={
                    "Content-Type": "application/x-www-form-urlencoded"})
            else:
                c.request("GET", path)
            r = c.getresponse()
            r.read()
            if r.status not in (200, 201):
                raise SystemExit("status %d" % r.status)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    el = time.perf_counter() - t0
    lat.sort()
    return (len(lat) / el, lat[len(lat) // 2] * 1e3,
            lat[int(len(lat) * 0.99)] * 1e3)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("keel")
    ap.add_argument("--ops", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    per = a.ops // a.clients
    cport, pport = free_port(), free_port()
    for name, binary in (("etcd", "/usr/bin/etcd"), ("keel", a.keel)):
        d = tempfile.mkdtemp(prefix="v2bench.")
        p = start(binary, os.path.join(d, "data"), cport, pport)
        try:
            put = phase(cport, a.clients, per, "PUT")
            get = phase(cport, a.clients, per, "GET")
            rss = rss_kb(p.pid)
        finally:
            p.terminate()
            p.wait()
            shutil.rmtree(d)
        print("%s: PUT %.0f req/s (p50 %.2f ms, p99 %.2f ms); "
              "GET %.0f req/s (p50 %.2f ms, p99 %.2f ms); RSS %d MiB"
              % ((name,) + put + get + (rss // 1024,)))


main()
