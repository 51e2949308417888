#!/usr/bin/python3
"""keel vs etcd 3.4 side by side (issue 7, "the figure we steer by").

Starts keel and etcd with the same flags (one member on loopback, data dirs
under one mktemp -d on the same disk), runs every workload of keel-bench
against each in turn -- interleaved, the order alternating per round -- and
prints the medians and the median of the per-round keel/etcd ratios.

Both servers are driven by the same load generator (keel-bench, on libkeel),
so client cost is the same on both sides. Per server and round:
  1. sequential put, 1 client (latency), then put/range/txn/lease workloads
     at high concurrency (throughput, p50, p99);
  2. watch fan-out (events/s) and watch-latency with many watchers;
  3. load N keys (100k; 1M with --full), data-dir size, RSS after the load;
  4. SIGTERM, restart on the same data dir, time until the first served
     Range (TCP poll every 0.5 ms, then one keel-bench call; that call's own
     cost on a warm server is reported as "client floor").
Peak RSS is sampled from /proc/<pid>/status every 50 ms, anonymous (RssAnon)
and file-backed (RssFile) separately.

The three-member comparison needs keel's peer transport: the script starts a
three-member keel cluster and runs it only if a member reports healthy; else
it says so and skips it (nothing is faked).

Every process started here is killed at exit (also on ^C/SIGTERM) and the
temporary directory removed.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROCS = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Sampler(threading.Thread):
    """Peak RssAnon/RssFile (kB) of a pid, sampled every 50 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_anon = 0
        self.peak_file = 0
        self.stop_ev = threading.Event()

    def read(self):
        anon = filek = 0
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        anon = int(line.split()[1])
                    elif line.startswith("RssFile:"):
                        filek = int(line.split()[1])
        except OSError:
            pass
        return anon, filek

    def sample(self):
        a, f = self.read()
        self.peak_anon = max(self.peak_anon, a)
        self.peak_file = max(self.peak_file, f)
        return a, f

    def run(self):
        while not self.stop_ev.wait(0.05):
            self.sample()


class Server:
    def __init__(self, kind, binary, tmp, tag):
        self.kind = kind
        self.binary = binary
        self.dir = os.path.join(tmp, "%s-%s.data" % (kind, tag))
        self.logpath = os.path.join(tmp, "%s-%s.log" % (kind, tag))
        self.cport = free_port()
        self.pport = free_port()
        self.proc = None
        self.sampler = None

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.cport

    def start(self):
        args = [self.binary, "--name", "m1", "--data-dir", self.dir,
                "--listen-client-urls", "http://%s" % self.endpoint,
                "--advertise-client-urls", "http://%s" % self.endpoint,
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.pport,
                "--initial-advertise-peer-urls",
                "http://127.0.0.1:%d" % self.pport,
                "--initial-cluster", "m1=http://127.0.0.1:%d" % self.pport]
        logf = open(self.logpath, "a")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        PROCS.append(self.proc)
        self.sampler = Sampler(self.proc.pid)
        self.sampler.start()
        return t0

    def check_alive(self):
        """Raise, quoting the end of its log, if the server has exited."""
        if self.proc and self.proc.poll() is not None:
            with open(self.logpath, errors="replace") as f:
                tail = [l.strip() for l in f.readlines()[-3:]]
            raise RuntimeError("%s exited with status %d during the run: %s"
                               % (self.kind, self.proc.returncode,
                                  " / ".join(tail)))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.sampler:
            self.sampler.stop_ev.set()
            self.sampler.join()
        if self.proc in PROCS:
            PROCS.remove(self.proc)


class Bench:
    def __init__(self, binary):
        self.binary = binary

    def run(self, endpoint, workload, flags, timeout=900):
        cmd = [self.binary, "--endpoints=%s" % endpoint, "-w", "json",
               "--no-progress"] + flags + [workload]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=timeout,
                               text=True)
        except subprocess.TimeoutExpired:
            raise RuntimeError("keel-bench %s did not finish within %d s"
                               % (workload, timeout)) from None
        try:
            d = json.loads(r.stdout)
        except ValueError:
            raise RuntimeError("keel-bench %s failed (exit %d): %s"
                               % (workload, r.returncode,
                                  r.stderr.strip())) from None
        d["_exit"] = r.returncode
        d["_cmd"] = "keel-bench " + " ".join(cmd[2:])
        return d


def wait_serving(bench, srv, t0, limit=60.0):
    """Seconds from t0 (spawn) until a Range is served."""
    deadline = t0 + limit
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            raise RuntimeError("%s exited (%d), see %s"
                               % (srv.kind, srv.proc.returncode, srv.logpath))
        try:
            with socket.create_connection(("127.0.0.1", srv.cport), 0.05):
                pass
        except OSError:
            time.sleep(0.0005)
            continue
        r = subprocess.run([bench.binary, "--endpoints=%s" % srv.endpoint,
                            "--no-progress", "--total", "1",
                            "--dial-timeout", "200", "range", "probe",
                            "--consistency", "s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode == 0:
            return time.monotonic() - t0
        time.sleep(0.001)
    raise RuntimeError("%s did not serve within %.0f s, see %s"
                       % (srv.kind, limit, srv.logpath))


def client_floor(bench, srv, n=5):
    """What one keel-bench Range call costs against a warm server (s)."""
    ts = []
    for _ in range(n):
        t0 = time.monotonic()
        subprocess.run([bench.binary, "--endpoints=%s" % srv.endpoint,
                        "--no-progress", "--total", "1", "range", "probe",
                        "--consistency", "s"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ts.append(time.monotonic() - t0)
    return statistics.median(ts)


def du_kib(path):
    r = subprocess.run(["du", "-sk", path], stdout=subprocess.PIPE, text=True)
    return int(r.stdout.split()[0])


def profile(mode):
    """Workloads and sizes per mode: (name, workload, flags, metrics)."""
    q = mode == "quick"
    full = mode == "full"
    big = 1 if q else (3 if full else 1)
    n_keys = 2000 if q else (1000000 if full else 100000)
    watchers = (2, 50) if q else (100, 100)
    tot = lambda n: max(200, n // 20) if q else n * big
    wl = [
        ("put_seq_1c", "put",
         ["--conns", "1", "--clients", "1", "--total", str(tot(1000)),
          "--key-size", "8", "--val-size", "256", "--sequential-keys"]),
        ("put_1000c", "put",
         ["--conns", "100", "--clients", "1000", "--total", str(tot(30000)),
          "--key-size", "8", "--val-size", "256", "--sequential-keys",
          "--key-space-size", str(tot(30000))]),
        ("range_l_1000c", "range",
         ["--conns", "100", "--clients", "1000", "--total", str(tot(50000)),
          "--key-size", "8", "--key-space-size", str(tot(30000)),
          "--consistency", "l"]),
        ("range_s_1000c", "range",
         ["--conns", "100", "--clients", "1000", "--total", str(tot(50000)),
          "--key-size", "8", "--key-space-size", str(tot(30000)),
          "--consistency", "s"]),
        ("txn_put_200c", "txn-put",
         ["--conns", "20", "--clients", "200", "--total", str(tot(10000)),
          "--val-size", "256", "--key-space-size", "100000"]),
        ("txn_mixed_200c", "txn-mixed",
         ["--conns", "20", "--clients", "200", "--total", str(tot(10000)),
          "--val-size", "256", "--key-space-size", str(tot(30000))]),
        ("lease_keepalive_100c", "lease-keepalive",
         ["--conns", "10", "--clients", "100", "--total", str(tot(30000))]),
        ("watch_fanout", "watch",
         ["--conns", "10", "--clients", "10", "--streams", "10",
          "--watch-per-stream", "100", "--total", "20" if q else "200",
          "--val-size", "64"]),
        ("watch_latency_10k", "watch-latency",
         ["--conns", "10", "--clients", "1", "--streams", str(watchers[0]),
          "--watch-per-stream", str(watchers[1]),
          "--total", "10" if q else "40", "--rate", "20", "--val-size", "64"]),
    ]
    load = ["--conns", "100", "--clients", "1000", "--total", str(n_keys),
            "--key-size", "16", "--val-size", "256", "--sequential-keys",
            "--key-space-size", str(n_keys)]
    return wl, load, n_keys


def run_server(kind, binary, bench, tmp, tag, mode):
    wl, load, n_keys = profile(mode)
    srv = Server(kind, binary, tmp, tag)
    res = {"kind": kind}
    t0 = srv.start()
    try:
        res["first_start_s"] = wait_serving(bench, srv, t0)
        res.update(run_workloads(bench, srv, wl, load, n_keys, kind))
    except RuntimeError as e:
        res["failed"] = str(e)
        log("  %-5s FAILED: %s" % (kind, e))
    finally:
        srv.stop()
        shutil.rmtree(srv.dir, ignore_errors=True)
    res["n_keys"] = n_keys
    return res


def run_workloads(bench, srv, wl, load, n_keys, kind):
    res = {}
    for name, w, flags in wl:
        d = bench.run(srv.endpoint, w, flags)
        srv.check_alive()
        res[name] = d
        extra = ""
        if "events_per_s" in d:
            extra = " events/s %.0f ev p99 %.2f ms missing %d" % (
                d["events_per_s"], d["event_latency_ms"]["p99"],
                d["events_missing"])
        log("  %-5s %-22s %9.0f req/s  p50 %7.3f ms  p99 %8.3f ms%s%s"
            % (kind, name, d["requests_per_s"], d["latency_ms"]["p50"],
               d["latency_ms"]["p99"], extra,
               "  ERRORS %d" % d["errors"] if d["errors"] else ""))
    d = bench.run(srv.endpoint, "put", load, timeout=3600)
    srv.check_alive()
    res["load"] = d
    log("  %-5s load %d keys: %.0f put/s" % (kind, n_keys, d["requests_per_s"]))
    time.sleep(0.5)
    a, f = srv.sampler.sample()
    res["anon_after_load_kib"] = a
    res["file_after_load_kib"] = f
    res["peak_anon_kib"] = srv.sampler.peak_anon
    res["peak_file_kib"] = srv.sampler.peak_file
    srv.stop()
    res["datadir_kib"] = du_kib(srv.dir)
    # restart on the same data dir with n_keys keys
    t0 = srv.start()
    res["restart_s"] = wait_serving(bench, srv, t0)
    a, f = srv.sampler.sample()
    res["anon_after_restart_kib"] = a
    res["client_floor_s"] = client_floor(bench, srv)
    log("  %-5s data dir %.1f MiB, restart %.1f ms (client floor %.1f ms), "
        "peak anon %.1f MiB, file %.1f MiB; after the load anon %.1f "
        "file %.1f MiB; after restart anon %.1f MiB"
        % (kind, res["datadir_kib"] / 1024, res["restart_s"] * 1000,
           res["client_floor_s"] * 1000, res["peak_anon_kib"] / 1024,
           res["peak_file_kib"] / 1024, res["anon_after_load_kib"] / 1024,
           res["file_after_load_kib"] / 1024,
           res["anon_after_restart_kib"] / 1024))
    return res


# (label, extractor, higher_is_better, target ratio text, target check)
def metrics():
    L = lambda name, q: (lambda r: r[name]["latency_ms"][q])
    R = lambda name: (lambda r: r[name]["requests_per_s"])
    return [
        ("sequential put, 1 client: p50 latency (ms)", L("put_seq_1c", "p50"), "<= 0.5", lambda x: x <= 0.5),
        ("sequential put, 1 client: p99 latency (ms)", L("put_seq_1c", "p99"), "", None),
        ("put, 1000 clients: throughput (req/s)", R("put_1000c"), ">= 2", lambda x: x >= 2),
        ("put, 1000 clients: p50 (ms)", L("put_1000c", "p50"), "", None),
        ("put, 1000 clients: p99 (ms)", L("put_1000c", "p99"), "", None),
        ("range linearizable, 1000 clients: req/s", R("range_l_1000c"), ">= 2", lambda x: x >= 2),
        ("range linearizable: p50 (ms)", L("range_l_1000c", "p50"), "", None),
        ("range linearizable: p99 (ms)", L("range_l_1000c", "p99"), "", None),
        ("range serializable, 1000 clients: req/s", R("range_s_1000c"), ">= 3", lambda x: x >= 3),
        ("range serializable: p50 (ms)", L("range_s_1000c", "p50"), "", None),
        ("range serializable: p99 (ms)", L("range_s_1000c", "p99"), "", None),
        ("txn-put, 200 clients: req/s", R("txn_put_200c"), "", None),
        ("txn-put: p99 (ms)", L("txn_put_200c", "p99"), "", None),
        ("txn-mixed, 200 clients: req/s", R("txn_mixed_200c"), "", None),
        ("txn-mixed: p99 (ms)", L("txn_mixed_200c", "p99"), "", None),
        ("lease keepalive, 100 clients: req/s", R("lease_keepalive_100c"), "", None),
        ("lease keepalive: p99 (ms)", L("lease_keepalive_100c", "p99"), "", None),
        ("watch fan-out, 1000 watchers: events/s", lambda r: r["watch_fanout"]["events_per_s"], "", None),
        ("watch event latency, many watchers: p50 (ms)", lambda r: r["watch_latency_10k"]["event_latency_ms"]["p50"], "", None),
        ("watch event latency, many watchers: p99 (ms)", lambda r: r["watch_latency_10k"]["event_latency_ms"]["p99"], "<= 0.5", lambda x: x <= 0.5),
        ("load N keys, 1000 clients: put/s", R("load"), "", None),
        ("peak RSS anonymous (MiB)", lambda r: r["peak_anon_kib"] / 1024, "", None),
        ("peak RSS file-backed (MiB)", lambda r: r["peak_file_kib"] / 1024, "", None),
        ("RSS anonymous after loading N keys (MiB)", lambda r: r["anon_after_load_kib"] / 1024, "<= 0.2", lambda x: x <= 0.2),
        ("RSS file-backed after loading N keys (MiB)", lambda r: r["file_after_load_kib"] / 1024, "", None),
        ("RSS anonymous after restart (MiB)", lambda r: r["anon_after_restart_kib"] / 1024, "", None),
        ("data dir after N keys (MiB)", lambda r: r["datadir_kib"] / 1024, "", None),
        ("restart with N keys to first served Range (ms)", lambda r: r["restart_s"] * 1000, "<= 0.05", lambda x: x <= 0.05),
        ("  client floor of that measure (ms)", lambda r: r["client_floor_s"] * 1000, "", None),
    ]


def machine_floor(tmp):
    """Median fdatasync after a 4 KiB overwrite inside a preallocated file on
    the data-dir disk (as a WAL with preallocated segments does: no size
    change to flush), and median loopback TCP round trip (1 byte each way),
    both from python (its own overhead, a few us, included)."""
    path = os.path.join(tmp, "fsync.probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    buf = b"x" * 4096
    os.write(fd, b"\0" * (4096 * 256))
    os.fsync(fd)
    ts = []
    for i in range(200):
        os.pwrite(fd, buf, 4096 * (i % 256))
        t0 = time.perf_counter()
        os.fdatasync(fd)
        ts.append(time.perf_counter() - t0)
    os.close(fd)
    os.unlink(path)
    fsync = statistics.median(ts)
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def echo():
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            b = c.recv(1)
            if not b:
                break
            c.sendall(b)
        c.close()

    th = threading.Thread(target=echo, daemon=True)
    th.start()
    s = socket.create_connection(ls.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ts = []
    for _ in range(2000):
        t0 = time.perf_counter()
        s.sendall(b"x")
        s.recv(1)
        ts.append(time.perf_counter() - t0)
    s.close()
    th.join(2)
    ls.close()
    return fsync, statistics.median(ts)


def try_three_members(keel, tmp):
    """Start a three-member keel cluster on loopback; True if a member
    reports healthy within 10 s. Always stops the members."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    cluster = ",".join("m%d=http://127.0.0.1:%d" % (i + 1, p[1])
                       for i, p in enumerate(ports))
    procs = []
    status = "no answer"
    try:
        for i, (c, p) in enumerate(ports):
            d = os.path.join(tmp, "three-m%d" % (i + 1))
            lf = open(os.path.join(tmp, "three-m%d.log" % (i + 1)), "w")
            pr = subprocess.Popen(
                [keel, "--name", "m%d" % (i + 1), "--data-dir", d,
                 "--listen-client-urls", "http://127.0.0.1:%d" % c,
                 "--advertise-client-urls", "http://127.0.0.1:%d" % c,
                 "--listen-peer-urls", "http://127.0.0.1:%d" % p,
                 "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % p,
                 "--initial-cluster", cluster],
                stdout=lf, stderr=subprocess.STDOUT)
            lf.close()
            procs.append(pr)
            PROCS.append(pr)
        deadline = time.monotonic() + 10
        import urllib.request
        while time.monotonic() < deadline:
            for c, _ in ports:
                try:
                    with urllib.request.urlopen(
                            "http://127.0.0.1:%d/health" % c, timeout=1) as r:
                        status = r.read().decode().strip()
                except Exception as e:  # noqa: BLE001 (any failure = not yet)
                    status = str(e)
                if '"true"' in status:
                    return True, status
            time.sleep(0.5)
        return False, status
    finally:
        for pr in procs:
            pr.kill()
            pr.wait()
            PROCS.remove(pr)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return "{:,.0f}".format(x)
    if abs(x) >= 10:
        return "%.1f" % x
    return "%.3g" % x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true",
                   help="smoke run: tiny totals, 1 round, 2k keys")
    g.add_argument("--full", action="store_true",
                   help="1M keys, 10k watchers, 3x totals")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds (default 3; --quick 1)")
    ap.add_argument("--keel", default=os.path.join(ROOT, "build-bench/bin/keel"))
    ap.add_argument("--bench",
                    default=os.path.join(ROOT, "build-bench/bin/keel-bench"))
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--out", default=None,
                    help="directory for results.json and table.md")
    args = ap.parse_args()
    mode = "quick" if args.quick else "full" if args.full else "default"
    rounds = args.rounds or (1 if args.quick else 3)
    for b in (args.keel, args.bench, args.etcd):
        if not os.access(b, os.X_OK):
            sys.exit("compare: %s is not executable (build keel first: "
                     "cmake --build build-bench -j2)" % b)

    tmp = tempfile.mkdtemp(prefix="keel-compare.")
    bench = Bench(args.bench)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    info = {}
    results = {"keel": [], "etcd": []}
    try:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"],
                                stdout=subprocess.PIPE, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain",
                                "--untracked-files=no"],
                               stdout=subprocess.PIPE, text=True).stdout.strip()
        cpu = ""
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
        etcd_ver = subprocess.run([args.etcd, "--version"], stdout=subprocess.PIPE,
                                  text=True).stdout.splitlines()[0]
        info = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "commit": commit + (" (with uncommitted changes)" if dirty else ""),
            "mode": mode, "rounds": rounds,
            "machine": "%s, %d cores, %.0f GiB RAM, %s %s" % (
                cpu, os.cpu_count(), mem_kib / 1048576, platform.system(),
                platform.release()),
            "disk": subprocess.run(["df", "-h", "--output=source,fstype", tmp],
                                   stdout=subprocess.PIPE,
                                   text=True).stdout.split("\n")[1].strip(),
            "etcd": etcd_ver,
            "loadavg_start": open("/proc/loadavg").read().split()[:3],
        }
        log("compare: %s mode, %d round(s), commit %s" % (mode, rounds, info["commit"]))
        log("compare: machine %s; load average %s" % (info["machine"],
                                                      " ".join(info["loadavg_start"])))
        fs, rtt = machine_floor(tmp)
        info["fdatasync_ms"] = fs * 1000
        info["loopback_rtt_ms"] = rtt * 1000
        log("compare: machine floor: fdatasync %.3f ms, loopback round trip %.3f ms"
            % (fs * 1000, rtt * 1000))

        ok3, st3 = try_three_members(args.keel, tmp)
        if ok3:
            info["three_member"] = ("keel formed a three-member cluster, but this "
                                    "script does not run the three-member "
                                    "comparison yet")
        else:
            info["three_member"] = (
                "SKIPPED: a three-member keel cluster on loopback did not become "
                "healthy within 10 s (/health: %s); keel has no peer transport "
                "yet, so only the single-member comparison ran" % st3)
        log("compare: three members: " + info["three_member"])

        for r in range(rounds):
            order = ["keel", "etcd"] if r % 2 == 0 else ["etcd", "keel"]
            for kind in order:
                log("compare: round %d/%d: %s" % (r + 1, rounds, kind))
                binary = args.keel if kind == "keel" else args.etcd
                results[kind].append(run_server(kind, binary, bench, tmp,
                                                "r%d" % r, mode))
        info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    except KeyboardInterrupt:
        log("compare: interrupted")
        return 130
    finally:
        for p in list(PROCS):
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    n_keys = results["keel"][0]["n_keys"]
    failures = ["round %d %s: %s" % (i + 1, k, x["failed"])
                for k in ("keel", "etcd")
                for i, x in enumerate(results[k]) if "failed" in x]

    def get_or_none(get, x):
        try:
            return get(x)
        except KeyError:  # that server's round failed: no figure
            return None

    for label, get, target, check in metrics():
        label = label.replace("N keys", "{:,} keys".format(n_keys))
        kv = [get_or_none(get, x) for x in results["keel"]]
        ev = [get_or_none(get, x) for x in results["etcd"]]
        ratios = [k / e for k, e in zip(kv, ev)
                  if k is not None and e]
        rm = median(ratios)
        met = "" if check is None or rm is None else ("yes" if check(rm) else "no")
        rows.append((label, median(kv), median(ev), rm, target, met))
    seq_p50 = median([x["put_seq_1c"]["latency_ms"]["p50"]
                      for x in results["keel"] if "put_seq_1c" in x])
    floor = info["fdatasync_ms"] + info["loopback_rtt_ms"]
    errors = {k: sum(x[n]["errors"] + x[n].get("events_missing", 0)
                     for x in v for n in x
                     if isinstance(x[n], dict) and "errors" in x[n])
              for k, v in results.items()}

    lines = []
    lines.append("| measure | keel | etcd 3.4 | keel/etcd | target |")
    lines.append("|---|---:|---:|---:|---|")
    for label, k, e, rm, target, met in rows:
        t = ("%s (%s)" % (target, met)) if target else ""
        lines.append("| %s | %s | %s | %s | %s |" % (label, fmt(k), fmt(e),
                                                     "-" if rm is None else "%.2f" % rm, t))
    lines.append("")
    if seq_p50 is not None:
        lines.append(
            "Machine floor: fdatasync %.3f ms + loopback round trip %.3f ms "
            "= %.3f ms; keel sequential put p50 %.3f ms = %.2fx the floor "
            "(target <= 1.5x: %s)."
            % (info["fdatasync_ms"], info["loopback_rtt_ms"], floor, seq_p50,
               seq_p50 / floor, "yes" if seq_p50 / floor <= 1.5 else "no"))
    for f in failures:
        lines.append("FAILED (no figures from it): " + f + ".")
    lines.append("Failed requests / missing watch events over the run: keel %d, etcd %d."
                 % (errors["keel"], errors["etcd"]))
    lines.append("Three members: " + info["three_member"] + ".")
    table = "\n".join(lines)
    head = ("keel vs etcd 3.4 (%s mode, %d rounds, medians; ratio = median of "
            "per-round keel/etcd)\ncommit %s\n%s; disk %s; %s\n"
            "load average at start %s, at end %s\n"
            % (mode, rounds, info["commit"], info["machine"], info["disk"],
               info["etcd"], " ".join(info["loadavg_start"]),
               " ".join(info["loadavg_end"])))
    print(head)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"info": info, "results": results}, f, indent=1)
        with open(os.path.join(args.out, "table.md"), "w") as f:
            f.write(head + "\n" + table + "\n")
        log("compare: results in %s" % args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
