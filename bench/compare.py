#!/usr/bin/python3
"""keel vs etcd 3.4 side by side (issue 7, "the figure we steer by").

Starts keel and etcd with the same flags (etcd's: --name, the peer and
client URLs, --initial-cluster, --initial-cluster-token,
--initial-cluster-state new; loopback; data dirs under one mktemp -d on the
same disk), runs every workload of keel-bench against each in turn --
interleaved, the order alternating per round -- and prints the medians and
the median of the per-round keel/etcd ratios. Three parts (--parts):

one    one member per server and round: sequential put and serializable
       range from 1 client (latency), then put/range/txn/lease workloads at
       high concurrency (throughput, p50, p99), watch fan-out (events/s),
       watch-latency with 10k watchers; then load N keys (100k; 1M with
       --full), data-dir size, RSS, SIGTERM, restart on the same data dir and
       time until the first served Range (TCP poll every 0.5 ms, then one
       keel-bench call; that call's own cost on a warm server is reported as
       "client floor").
big    the same load/RSS/data-dir/restart measures with 1M keys, on a fresh
       member (--big-rounds, default 1; not with --full, whose rounds load 1M).
three  a fresh three-member cluster per server and round: put at 1, 100 and
       1000 clients and linearizable range at 1000 clients, endpoints all
       three members with the leader first (keel-bench spreads connections
       over the list in turn, so one connection talks to the leader); then
       kill -9 of the leader and the time to the first successful put
       through the remaining members (JSON-gateway puts with 0.2 s timeouts,
       two writer loops per member), restart of the killed member, repeated
       (3 kills per round; --quick 1).

Both servers are driven by the same load generator (keel-bench, on libkeel),
so client cost is the same on both sides. Peak RSS is sampled from
/proc/<pid>/status every 50 ms, anonymous (RssAnon) and file-backed
(RssFile) separately. The machine floor (fdatasync on the data-dir disk,
loopback TCP round trip), nproc, CPU, kernel, disk, the commit and the load
average are recorded.

Every process started here is killed at exit (also on ^C/SIGTERM) and the
temporary directory removed.
"""
import argparse
import http.client
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
    """One member. A single-member server is its own initial cluster; a
    Cluster sets initial_cluster and token on each of its members before
    start()."""

    def __init__(self, kind, binary, tmp, tag, name="m1"):
        self.kind = kind
        self.binary = binary
        self.name = name
        self.dir = os.path.join(tmp, "%s-%s.data" % (kind, tag))
        self.logpath = os.path.join(tmp, "%s-%s.log" % (kind, tag))
        self.cport = free_port()
        self.pport = free_port()
        self.initial_cluster = "%s=%s" % (name, self.peer_url)
        self.token = "keel-compare-" + tag
        self.proc = None
        self.sampler = None

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.pport

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.cport

    def start(self):
        # etcd's cluster flags; on a restart from an existing data dir both
        # servers ignore the initial-* ones
        args = [self.binary, "--name", self.name, "--data-dir", self.dir,
                "--listen-client-urls", "http://%s" % self.endpoint,
                "--advertise-client-urls", "http://%s" % self.endpoint,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new"]
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

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
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


def load_flags(n_keys):
    """The load of the RSS / data-dir / restart measures: n_keys distinct
    16-byte keys with 256-byte values, 1000 clients on 100 connections."""
    return ["--conns", "100", "--clients", "1000", "--total", str(n_keys),
            "--key-size", "16", "--val-size", "256", "--sequential-keys",
            "--key-space-size", str(n_keys)]


def profile(mode):
    """Sizes and workloads per mode. Workloads are (name, workload, flags):
    "one" against one member, "three" against a three-member cluster.
    big_keys: the separate 1M-key load/restart phase (0: none; --full loads
    1M keys in every round already)."""
    q = mode == "quick"
    full = mode == "full"
    big = 1 if q else (3 if full else 1)
    n_keys = 2000 if q else (1000000 if full else 100000)
    big_keys = 5000 if q else (0 if full else 1000000)
    watchers = (2, 50) if q else (100, 100)
    tot = lambda n: max(200, n // 20) if q else n * big
    put = lambda conns, clients, n: [
        "--conns", str(conns), "--clients", str(clients), "--total", str(tot(n)),
        "--key-size", "8", "--val-size", "256", "--sequential-keys",
        "--key-space-size", str(tot(n))]
    one = [
        ("put_seq_1c", "put", put(1, 1, 1000)),
        # a serializable Range from one client: a gRPC round trip through
        # the server with no disk write, next to put_seq_1c's
        ("range_s_1c", "range",
         ["--conns", "1", "--clients", "1", "--total", str(tot(2000)),
          "--key-size", "8", "--key-space-size", str(tot(1000)),
          "--consistency", "s"]),
        ("put_1000c", "put", put(100, 1000, 30000)),
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
    three = [
        ("put_1c", "put", put(1, 1, 1000)),
        ("put_100c", "put", put(10, 100, 10000)),
        ("put_1000c", "put", put(100, 1000, 30000)),
        ("range_l_1000c", "range",
         ["--conns", "100", "--clients", "1000", "--total", str(tot(50000)),
          "--key-size", "8", "--key-space-size", str(tot(30000)),
          "--consistency", "l"]),
    ]
    return {"one": one, "three": three, "n_keys": n_keys,
            "big_keys": big_keys, "watchers": watchers[0] * watchers[1],
            "kills": 1 if q else 3}


def run_server(kind, binary, bench, tmp, tag, prof):
    """One round against one member: the workloads, then the load of
    prof["n_keys"] keys and the restart."""
    n_keys = prof["n_keys"]
    srv = Server(kind, binary, tmp, tag)
    res = {"kind": kind, "n_keys": n_keys}
    t0 = srv.start()
    try:
        res["first_start_s"] = wait_serving(bench, srv, t0)
        res.update(run_workloads(bench, srv.endpoint, [srv], prof["one"],
                                 kind))
        res.update(load_and_restart(bench, srv, load_flags(n_keys), n_keys,
                                    kind))
    except RuntimeError as e:
        res["failed"] = str(e)
        log("  %-5s FAILED: %s" % (kind, e))
    finally:
        srv.stop()
        shutil.rmtree(srv.dir, ignore_errors=True)
    return res


def run_big(kind, binary, bench, tmp, tag, n_keys):
    """The 1M-key phase: a fresh member, load, RSS, data dir, restart."""
    srv = Server(kind, binary, tmp, tag)
    res = {"kind": kind, "n_keys": n_keys}
    t0 = srv.start()
    try:
        wait_serving(bench, srv, t0)
        res.update(load_and_restart(bench, srv, load_flags(n_keys), n_keys,
                                    kind))
    except RuntimeError as e:
        res["failed"] = str(e)
        log("  %-5s FAILED: %s" % (kind, e))
    finally:
        srv.stop()
        shutil.rmtree(srv.dir, ignore_errors=True)
    return res


def gateway(srv, path, body, timeout):
    """POST body (a dict) to srv's JSON gateway; the decoded answer, or
    None on any failure (refused, timed out, an error status)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.cport, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            return None
        return json.loads(data)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


class Cluster:
    """Three members of one kind on loopback, started with etcd's cluster
    flags, data dirs under tmp."""

    def __init__(self, kind, binary, tmp, tag, size=3):
        self.kind = kind
        self.members = [Server(kind, binary, tmp, "%s-m%d" % (tag, i + 1),
                               name="m%d" % (i + 1)) for i in range(size)]
        cluster = ",".join("%s=%s" % (m.name, m.peer_url)
                           for m in self.members)
        for m in self.members:
            m.initial_cluster = cluster
            m.token = "keel-compare-" + tag

    def start(self):
        for m in self.members:
            m.start()

    def stop(self):
        for m in self.members:
            m.stop()
            shutil.rmtree(m.dir, ignore_errors=True)

    def leader(self, limit=30.0):
        """The member every live member names as leader, once a write
        goes through it (raises after limit s)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for m in self.members:
                m.check_alive()
            live = [m for m in self.members
                    if m.proc and m.proc.poll() is None]
            ids = {}
            leaders = set()
            for m in live:
                st = gateway(m, "/v3/maintenance/status", {}, 1.0)
                if st is None:
                    break
                ids[st["header"]["member_id"]] = m
                leaders.add(st.get("leader"))
            else:
                if len(leaders) == 1:
                    ld = ids.get(leaders.pop())
                    if ld is not None and gateway(
                            ld, "/v3/kv/put",
                            {"key": "cHJvYmU=", "value": "eA=="}, 2.0):
                        return ld
            time.sleep(0.05)
        raise RuntimeError("%s cluster has no leader after %.0f s, see %s"
                           % (self.kind, limit,
                              " ".join(m.logpath for m in self.members)))

    def endpoints(self, leader):
        """All members, the leader first: keel-bench spreads connections
        over the list in turn, so a one-connection run talks to the
        leader and a 100-connection run to all three."""
        rest = [m.endpoint for m in self.members if m is not leader]
        return ",".join([leader.endpoint] + rest)

    def kill_leader_to_write(self, timeout=0.2, limit=30.0):
        """kill -9 the leader; seconds until a put succeeds through one of
        the remaining members. Two writer threads per remaining member,
        each a loop of JSON-gateway puts with a timeout-s timeout (so one
        hung request delays the answer by at most that much). The killed
        member is restarted and the cluster settled before returning."""
        victim = self.leader()
        rest = [m for m in self.members if m is not victim]
        done = threading.Event()
        first = []
        lock = threading.Lock()

        def writer(m, i):
            body = {"key": "a2lsbC1wcm9iZQ==", "value": "eA=="}
            while not done.is_set():
                if gateway(m, "/v3/kv/put", body, timeout) is not None:
                    with lock:
                        first.append(time.monotonic())
                    done.set()
                    return
                if time.monotonic() > t0 + limit:
                    return
                time.sleep(0.002)  # refusals come back at once: do not spin

        t0 = time.monotonic()
        victim.proc.kill()
        threads = [threading.Thread(target=writer, args=(m, i), daemon=True)
                   for m in rest for i in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if not first:
            raise RuntimeError("%s: no write succeeded within %.0f s of "
                               "killing the leader" % (self.kind, limit))
        took = min(first) - t0
        victim.stop()  # reaps it
        victim.start()
        self.settle()
        return took

    def settle(self, limit=30.0):
        """Waits for one leader every member names, a write through it, the
        same applied raft index on every member, then 1 s of heartbeats
        (so the next kill finds a cluster in its steady state)."""
        deadline = time.monotonic() + limit
        self.leader(limit)
        while time.monotonic() < deadline:
            idx = set()
            for m in self.members:
                st = gateway(m, "/v3/maintenance/status", {}, 1.0)
                idx.add(st and st.get("raftIndex"))
            if len(idx) == 1 and None not in idx:
                time.sleep(1.0)
                return
            time.sleep(0.05)
        raise RuntimeError("%s cluster: members did not reach the same raft "
                           "index within %.0f s" % (self.kind, limit))


def run_cluster(kind, binary, bench, tmp, tag, prof):
    """One round against a fresh three-member cluster: the workloads with
    every member as an endpoint (the leader first), then prof["kills"]
    leader kills."""
    cl = Cluster(kind, binary, tmp, tag)
    res = {"kind": kind}
    try:
        cl.start()
        leader = cl.leader()
        res["leader_at_start"] = leader.name
        res.update(run_workloads(bench, cl.endpoints(leader), cl.members,
                                 prof["three"], kind))
        kills = []
        for _ in range(prof["kills"]):
            kills.append(cl.kill_leader_to_write())
            log("  %-5s leader kill -9 to first write: %.0f ms"
                % (kind, kills[-1] * 1000))
        res["kill_to_write_s"] = kills
    except RuntimeError as e:
        res["failed"] = str(e)
        log("  %-5s FAILED: %s" % (kind, e))
    finally:
        cl.stop()
    return res


def run_workloads(bench, endpoints, members, wl, kind):
    """Runs the workloads of wl against endpoints; a member of members
    that exits ends the run. Returns name -> result."""
    res = {}
    for name, w, flags in wl:
        d = bench.run(endpoints, w, flags)
        for m in members:
            m.check_alive()
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
    return res


def load_and_restart(bench, srv, load, n_keys, kind):
    """Loads n_keys into srv, samples RSS, stops it, measures the data dir,
    restarts it on that data dir and times the first served Range."""
    res = {}
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


# Table rows: (label, extractor, target ratio text, target check). "N keys"
# in a label becomes the phase's key count.
def L(name, q):
    return lambda r: r[name]["latency_ms"][q]


def R(name):
    return lambda r: r[name]["requests_per_s"]


def rows_one():
    return [
        ("sequential put, 1 client: p50 latency (ms)", L("put_seq_1c", "p50"), "<= 0.5", lambda x: x <= 0.5),
        ("sequential put, 1 client: p99 latency (ms)", L("put_seq_1c", "p99"), "", None),
        ("sequential put, 1 client: req/s", R("put_seq_1c"), "", None),
        ("serializable range, 1 client: p50 latency (ms)", L("range_s_1c", "p50"), "", None),
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
        ("watch event latency, W watchers: p50 (ms)", lambda r: r["watch_latency_10k"]["event_latency_ms"]["p50"], "", None),
        ("watch event latency, W watchers: p99 (ms)", lambda r: r["watch_latency_10k"]["event_latency_ms"]["p99"], "<= 0.5", lambda x: x <= 0.5),
    ]


def rows_load(targets):
    """Rows of load_and_restart(); the aims (anonymous RSS and restart with
    1M keys) are checked only where targets is set."""
    t = lambda text, check: (text, check) if targets else ("", None)
    return [
        ("load N keys, 1000 clients: put/s", R("load"), "", None),
        ("peak RSS anonymous while loading N keys (MiB)", lambda r: r["peak_anon_kib"] / 1024, "", None),
        ("peak RSS file-backed while loading N keys (MiB)", lambda r: r["peak_file_kib"] / 1024, "", None),
        ("RSS anonymous after loading N keys (MiB)", lambda r: r["anon_after_load_kib"] / 1024) + t("<= 0.2", lambda x: x <= 0.2),
        ("RSS file-backed after loading N keys (MiB)", lambda r: r["file_after_load_kib"] / 1024, "", None),
        ("data dir after N keys (MiB)", lambda r: r["datadir_kib"] / 1024, "", None),
        ("restart with N keys to first served Range (ms)", lambda r: r["restart_s"] * 1000) + t("<= 0.05", lambda x: x <= 0.05),
        ("  client floor of that measure (ms)", lambda r: r["client_floor_s"] * 1000, "", None),
        ("RSS anonymous after that restart (MiB)", lambda r: r["anon_after_restart_kib"] / 1024, "", None),
    ]


def rows_three():
    rows = []
    for name, text in (("put_1c", "put, 1 client"),
                       ("put_100c", "put, 100 clients"),
                       ("put_1000c", "put, 1000 clients"),
                       ("range_l_1000c", "range linearizable, 1000 clients")):
        rows += [(text + ": req/s", R(name), "", None),
                 (text + ": p50 (ms)", L(name, "p50"), "", None),
                 (text + ": p99 (ms)", L(name, "p99"), "", None)]
    rows.append(("leader kill -9 to first successful write (ms; median of "
                 "the round's kills)",
                 lambda r: statistics.median(r["kill_to_write_s"]) * 1000,
                 "", None))
    return rows


def table(rows, res, subst):
    """Markdown lines: medians per server and the median of the per-round
    keel/etcd ratios (a round where either side failed gives no ratio)."""

    def get(fn, x):
        try:
            return fn(x)
        except KeyError:  # that server's round failed: no figure
            return None

    lines = ["| measure | keel | etcd 3.4 | keel/etcd | target |",
             "|---|---:|---:|---:|---|"]
    for label, fn, target, check in rows:
        for k, v in subst.items():
            label = label.replace(k, v)
        kv = [get(fn, x) for x in res["keel"]]
        ev = [get(fn, x) for x in res["etcd"]]
        rm = median([k / e for k, e in zip(kv, ev) if k is not None and e])
        met = "" if check is None or rm is None else (
            "yes" if check(rm) else "no")
        lines.append("| %s | %s | %s | %s | %s |" % (
            label, fmt(median(kv)), fmt(median(ev)),
            "-" if rm is None else "%.2f" % rm,
            "%s (%s)" % (target, met) if target else ""))
    return lines


def machine_floor(tmp):
    """Median fdatasync after a 4 KiB overwrite inside a preallocated file on
    the data-dir disk (as a WAL with preallocated segments does: no size
    change to flush), and median loopback TCP round trip (1 byte each way,
    to an echo in another process), both from python (its own overhead, a
    few us, included)."""
    path = os.path.join(tmp, "fsync.probe")
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    buf = b"x" * 4096
    os.write(fd, b"\0" * (4096 * 256))
    os.fsync(fd)
    ts = []
    for i in range(500):
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
    # the echo side is another process, so the round trip crosses two
    # processes as a client and a server do (no GIL hand-over inside it)
    pid = os.fork()
    if pid == 0:
        try:
            c, _ = ls.accept()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                b = c.recv(1)
                if not b:
                    break
                c.sendall(b)
        finally:
            os._exit(0)
    s = socket.create_connection(ls.getsockname())
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ts = []
    for _ in range(2000):
        t0 = time.perf_counter()
        s.sendall(b"x")
        s.recv(1)
        ts.append(time.perf_counter() - t0)
    s.close()
    os.waitpid(pid, 0)
    ls.close()
    return fsync, statistics.median(ts)


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


def machine_info(tmp, etcd):
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
    src = subprocess.run(["df", "--output=source,fstype", tmp],
                         stdout=subprocess.PIPE,
                         text=True).stdout.split("\n")[1].split()
    dev = subprocess.run(["lsblk", "-ndo", "SIZE,ROTA,MODEL", src[0]],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout.split()
    disk = "%s %s" % (src[0], src[1])
    if len(dev) >= 2:
        disk += ", %s, rotational=%s%s" % (dev[0], dev[1],
                                           " " + " ".join(dev[2:]) if dev[2:] else "")
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "nproc": len(os.sched_getaffinity(0)),
        "machine": "%s, nproc %d, %.0f GiB RAM, %s %s" % (
            cpu, len(os.sched_getaffinity(0)), mem_kib / 1048576,
            platform.system(), platform.release()),
        "disk": disk + " (temporary dir %s)" % tmp,
        "etcd": subprocess.run([etcd, "--version"], stdout=subprocess.PIPE,
                               text=True).stdout.splitlines()[0],
        "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true",
                   help="smoke run: tiny totals, 1 round, small key counts")
    g.add_argument("--full", action="store_true",
                   help="1M keys in every round, 3x totals")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds of the one- and three-member parts "
                    "(default 3; --quick 1)")
    ap.add_argument("--big-rounds", type=int, default=1,
                    help="rounds of the 1M-key phase (default 1)")
    ap.add_argument("--parts", default="one,big,three",
                    help="comma-separated subset of one (one member), big "
                    "(1M-key load/RSS/restart), three (three members)")
    ap.add_argument("--keel", default=os.path.join(ROOT, "build-bench/bin/keel"))
    ap.add_argument("--bench",
                    default=os.path.join(ROOT, "build-bench/bin/keel-bench"))
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--out", default=None,
                    help="directory for results.json and table.md")
    args = ap.parse_args()
    mode = "quick" if args.quick else "full" if args.full else "default"
    rounds = args.rounds or (1 if args.quick else 3)
    parts = set(args.parts.split(","))
    if not parts <= {"one", "big", "three"}:
        sys.exit("compare: --parts takes one, big, three")
    prof = profile(mode)
    if not prof["big_keys"]:
        parts.discard("big")  # --full: every round loads 1M keys already
    for b in (args.keel, args.bench, args.etcd):
        if not os.access(b, os.X_OK):
            sys.exit("compare: %s is not executable (build keel first: "
                     "cmake --build build-bench -j2)" % b)

    tmp = tempfile.mkdtemp(prefix="keel-compare.")
    bench = Bench(args.bench)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    res = {p: {"keel": [], "etcd": []} for p in ("one", "big", "three")}
    binary = {"keel": args.keel, "etcd": args.etcd}

    def interleaved(part, n, fn):
        for r in range(n):
            for kind in (["keel", "etcd"] if r % 2 == 0 else ["etcd", "keel"]):
                log("compare: %s, round %d/%d: %s" % (part, r + 1, n, kind))
                res[part][kind].append(fn(kind, binary[kind], bench, tmp,
                                          "%s-r%d" % (part, r)))

    try:
        info = machine_info(tmp, args.etcd)
        info.update(mode=mode, rounds=rounds, parts=sorted(parts))
        log("compare: %s mode, %d round(s), parts %s, commit %s"
            % (mode, rounds, ",".join(sorted(parts)), info["commit"]))
        log("compare: %s; disk %s; load average %s"
            % (info["machine"], info["disk"], " ".join(info["loadavg_start"])))
        fs, rtt = machine_floor(tmp)
        info["fdatasync_start_ms"] = fs * 1000
        info["loopback_rtt_start_ms"] = rtt * 1000
        log("compare: machine floor: fdatasync %.3f ms, loopback round trip %.3f ms"
            % (fs * 1000, rtt * 1000))
        if "one" in parts:
            interleaved("one", rounds,
                        lambda k, b, be, t, tag: run_server(k, b, be, t, tag, prof))
        if "big" in parts:
            interleaved("big", args.big_rounds,
                        lambda k, b, be, t, tag: run_big(k, b, be, t, tag,
                                                         prof["big_keys"]))
        if "three" in parts:
            interleaved("three", rounds,
                        lambda k, b, be, t, tag: run_cluster(k, b, be, t, tag, prof))
        info["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        # again at the end: other load on the disk moves fdatasync a lot;
        # the floor is the mean of the two medians
        fs2, rtt2 = machine_floor(tmp)
        info["fdatasync_end_ms"] = fs2 * 1000
        info["loopback_rtt_end_ms"] = rtt2 * 1000
        info["fdatasync_ms"] = (fs + fs2) * 500
        info["loopback_rtt_ms"] = (rtt + rtt2) * 500
        info["date_end_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    except KeyboardInterrupt:
        log("compare: interrupted")
        return 130
    finally:
        for p in list(PROCS):
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    failures = ["%s round %d %s: %s" % (part, i + 1, k, x["failed"])
                for part in res for k in ("keel", "etcd")
                for i, x in enumerate(res[part][k]) if "failed" in x]
    errors = {k: sum(x[n]["errors"] + x[n].get("events_missing", 0)
                     for part in res for x in res[part][k] for n in x
                     if isinstance(x[n], dict) and "errors" in x[n])
              for k in ("keel", "etcd")}
    keys = lambda n: "{:,} keys".format(n)
    lines = []
    if "one" in parts:
        lines.append("One member, %d round(s), %s loaded per round:"
                     % (rounds, keys(prof["n_keys"])))
        lines.append("")
        lines += table(rows_one() + rows_load(mode == "full"), res["one"],
                       {"N keys": keys(prof["n_keys"]),
                        "W watchers": "{:,} watchers".format(prof["watchers"])})
        lines.append("")
        seq = median([x["put_seq_1c"]["latency_ms"]["p50"]
                      for x in res["one"]["keel"] if "put_seq_1c" in x])
        floor = info["fdatasync_ms"] + info["loopback_rtt_ms"]
        if seq is not None:
            lines.append(
                "Machine floor: fdatasync %.3f ms + loopback round trip %.3f ms "
                "= %.3f ms (medians at start / end: fdatasync %.3f / %.3f, "
                "round trip %.3f / %.3f); keel sequential put p50 %.3f ms = "
                "%.2fx the floor (target <= 1.5x: %s)."
                % (info["fdatasync_ms"], info["loopback_rtt_ms"], floor,
                   info["fdatasync_start_ms"], info["fdatasync_end_ms"],
                   info["loopback_rtt_start_ms"], info["loopback_rtt_end_ms"],
                   seq, seq / floor, "yes" if seq / floor <= 1.5 else "no"))
            lines.append("")
    if "big" in parts:
        lines.append("One member, %s, %d round(s):"
                     % (keys(prof["big_keys"]), args.big_rounds))
        lines.append("")
        lines += table(rows_load(prof["big_keys"] >= 1000000), res["big"],
                       {"N keys": keys(prof["big_keys"])})
        lines.append("")
    if "three" in parts:
        lines.append("Three members on loopback, %d round(s), endpoints: all "
                     "three members, the leader first (1 connection: the "
                     "leader); %d leader kill(s) per round:"
                     % (rounds, prof["kills"]))
        lines.append("")
        lines += table(rows_three(), res["three"], {})
        lines.append("")
        kills = {k: sorted(t * 1000 for x in res["three"][k]
                           for t in x.get("kill_to_write_s", []))
                 for k in ("keel", "etcd")}
        lines.append("Leader kill -9 to first write, every kill (ms): " + "; ".join(
            "%s %s (median %s)" % (k, ", ".join("%.0f" % t for t in v),
                                   fmt(median(v)))
            for k, v in kills.items()) + ".")
        lines.append("")
    for f in failures:
        lines.append("FAILED (no figures from it): " + f + ".")
    lines.append("Failed requests / missing watch events over the run: "
                 "keel %d, etcd %d." % (errors["keel"], errors["etcd"]))
    text = "\n".join(lines)
    head = ("keel vs etcd 3.4 (%s mode; medians; ratio = median of per-round "
            "keel/etcd)\n%s - %s UTC, commit %s\n%s; disk %s; %s\n"
            "load average at start %s, at end %s\n"
            % (mode, info["date_utc"], info["date_end_utc"], info["commit"],
               info["machine"], info["disk"], info["etcd"],
               " ".join(info["loadavg_start"]), " ".join(info["loadavg_end"])))
    print(head)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump({"info": info, "results": res}, f, indent=1)
        with open(os.path.join(args.out, "table.md"), "w") as f:
            f.write(head + "\n" + text + "\n")
        log("compare: results in %s" % args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
