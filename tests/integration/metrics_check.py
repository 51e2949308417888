#!/usr/bin/python3
"""Prometheus text exposition (format 0.0.4) checks for keel's /metrics.

  metrics_check.py validate FILE
      Strict grammar: every line is "# HELP name text", "# TYPE name type" or
      a sample; each family is one contiguous block with HELP then TYPE
      before its samples; names, label names and escapes are valid; values
      are printed as Go's strconv.FormatFloat(v, 'g', -1, 64) prints them;
      no series appears twice; histograms have ascending le bounds ending
      with +Inf, cumulative counts, _count equal to the +Inf bucket, a _sum.

  metrics_check.py compare KEEL ETCD
      Differential against real etcd 3.4: every family keel exports exists in
      etcd's output with the same TYPE and HELP, the same label names, and
      (histograms) the same buckets. Prints the etcd families keel does not
      export; fails if one of REQUIRED is missing from keel.

  metrics_check.py dashboards KEEL ETCD DOC...
      The etcd 3.4 families used by etcd's shipped Grafana dashboard and
      alert rules (DOC files, .gz allowed) are all exported by keel, but for
      a known not-yet list.

  metrics_check.py value FILE SERIES
      Prints the value of one series, e.g.
      'grpc_server_started_total{grpc_method="Put",...}' or a bare name.

Exit status 0 on success, 1 with a message on stderr otherwise.
"""
import math
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
LVALUE = r'(?:[^"\\\n]|\\[\\"n])*'
SAMPLE_RE = re.compile(
    r"^(" + NAME + r")(?:\{((?:" + LABEL + r'="' + LVALUE + r'"'
    r"(?:," + LABEL + r'="' + LVALUE + r'")*)?)\})? (\S+)$')
LABEL_RE = re.compile(r"(" + LABEL + r')="(' + LVALUE + r')"')
HELP_RE = re.compile(r"^# HELP (" + NAME + r") ((?:[^\\\n]|\\[\\n])*)$")
TYPE_RE = re.compile(r"^# TYPE (" + NAME + r") (counter|gauge|histogram|summary|untyped)$")
# Go's shortest 'g' output: integers up to 6 digits, decimals, or d.ddde±XX
GO_FLOAT_RE = re.compile(
    r"^(?:[+-]Inf|NaN|-?(?:0|[1-9][0-9]{0,5})|-?(?:0|[1-9][0-9]{0,5})\.[0-9]*[1-9]"
    r"|-?[1-9](?:\.[0-9]*[1-9])?e[+-][0-9]{2,3})$")

REQUIRED = """
etcd_server_has_leader etcd_server_is_leader etcd_server_leader_changes_seen_total
etcd_server_proposals_committed_total etcd_server_proposals_applied_total
etcd_server_proposals_pending etcd_server_proposals_failed_total
etcd_server_version etcd_cluster_version etcd_server_id etcd_server_quota_backend_bytes
etcd_disk_wal_fsync_duration_seconds etcd_disk_backend_commit_duration_seconds
etcd_debugging_mvcc_keys_total etcd_debugging_mvcc_put_total etcd_debugging_mvcc_delete_total
etcd_debugging_mvcc_txn_total etcd_debugging_mvcc_range_total
etcd_mvcc_put_total etcd_mvcc_delete_total etcd_mvcc_txn_total etcd_mvcc_range_total
etcd_mvcc_db_total_size_in_bytes etcd_debugging_mvcc_db_total_size_in_bytes
etcd_mvcc_db_total_size_in_use_in_bytes
etcd_debugging_mvcc_current_revision etcd_debugging_mvcc_compact_revision
grpc_server_started_total grpc_server_handled_total grpc_server_msg_received_total
grpc_server_msg_sent_total
etcd_network_client_grpc_received_bytes_total etcd_network_client_grpc_sent_bytes_total
process_cpu_seconds_total process_resident_memory_bytes process_virtual_memory_bytes
process_open_fds process_max_fds process_start_time_seconds
""".split()


def fail(msg):
    sys.stderr.write("FAIL: " + msg + "\n")
    sys.exit(1)


def unescape(v):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse_value(s, where):
    if not GO_FLOAT_RE.match(s):
        fail("%s: value %r is not in Go's shortest float format" % (where, s))
    return float(s)


def parse(path):
    """families: name -> {help, type, samples: [(name, labels dict, value)]}"""
    fams = {}
    order = []
    cur = None
    seen_series = set()
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.endswith("\n"):
        fail("%s: does not end with a newline" % path)
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "%s:%d" % (path, n)
        if line.startswith("#"):
            m = HELP_RE.match(line)
            if m:
                name = m.group(1)
                if name in fams:
                    fail("%s: family %s appears twice" % (where, name))
                fams[name] = {"help": unescape(m.group(2)), "type": None, "samples": []}
                order.append(name)
                cur = name
                continue
            m = TYPE_RE.match(line)
            if m:
                if m.group(1) != cur or fams[cur]["type"] is not None or fams[cur]["samples"]:
                    fail("%s: TYPE line out of place: %r" % (where, line))
                fams[cur]["type"] = m.group(2)
                continue
            fail("%s: bad comment line %r" % (where, line))
        m = SAMPLE_RE.match(line)
        if not m:
            fail("%s: bad sample line %r" % (where, line))
        sname, lstr, vstr = m.group(1), m.group(2) or "", m.group(3)
        if cur is None or fams[cur]["type"] is None:
            fail("%s: sample before HELP/TYPE" % where)
        t = fams[cur]["type"]
        base = sname
        if t in ("histogram", "summary"):
            for suf in ("_bucket", "_sum", "_count"):
                if sname == cur + suf:
                    base = cur
        if base != cur:
            fail("%s: sample %s outside its family block (in %s)" % (where, sname, cur))
        labels = {}
        for lm in LABEL_RE.finditer(lstr):
            if lm.group(1) in labels:
                fail("%s: label %s twice" % (where, lm.group(1)))
            labels[lm.group(1)] = unescape(lm.group(2))
        names = [lm.group(1) for lm in LABEL_RE.finditer(lstr)]
        if names != sorted(names):
            fail("%s: labels not in name order" % where)
        key = (sname, tuple(sorted(labels.items())))
        if key in seen_series:
            fail("%s: series repeated" % where)
        seen_series.add(key)
        fams[cur]["samples"].append((sname, labels, parse_value(vstr, where)))
    if order != sorted(order):
        fail("%s: families not sorted by name" % path)
    for name, fam in fams.items():
        if not fam["samples"]:
            fail("%s: family %s has no samples" % (path, name))
        if fam["type"] == "counter":
            for _, _, v in fam["samples"]:
                if v < 0 or math.isnan(v):
                    fail("%s: counter %s has value %r" % (path, name, v))
        if fam["type"] == "histogram":
            check_histogram(path, name, fam)
    return fams


def check_histogram(path, name, fam):
    groups = {}
    for sname, labels, v in fam["samples"]:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname == name + "_bucket":
            if "le" not in labels:
                fail("%s: %s bucket without le" % (path, name))
            g["buckets"].append((labels["le"], v))
        elif sname == name + "_sum":
            g["sum"] = v
        elif sname == name + "_count":
            g["count"] = v
    for g in groups.values():
        b = g["buckets"]
        if not b or b[-1][0] != "+Inf":
            fail("%s: %s does not end with le=\"+Inf\"" % (path, name))
        bounds = [float(le) for le, _ in b]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            fail("%s: %s le bounds not ascending" % (path, name))
        counts = [v for _, v in b]
        if counts != sorted(counts):
            fail("%s: %s buckets not cumulative" % (path, name))
        if g["sum"] is None or g["count"] is None:
            fail("%s: %s without _sum or _count" % (path, name))
        if g["count"] != counts[-1]:
            fail("%s: %s _count %r != +Inf bucket %r" % (path, name, g["count"], counts[-1]))


def label_names(fam):
    return sorted({tuple(sorted(k for k in labels if k != "le")) for _, labels, _ in fam["samples"]})


def buckets(fam):
    return [labels["le"] for sname, labels, _ in fam["samples"] if "le" in labels]


def compare(keel_path, etcd_path):
    k = parse(keel_path)
    e = parse(etcd_path)
    for name, fam in sorted(k.items()):
        if name not in e:
            fail("keel exports %s, which etcd 3.4 does not" % name)
        ef = e[name]
        if fam["type"] != ef["type"]:
            fail("%s: TYPE %s, etcd says %s" % (name, fam["type"], ef["type"]))
        if fam["help"] != ef["help"]:
            fail("%s: HELP %r, etcd says %r" % (name, fam["help"], ef["help"]))
        if label_names(fam) != label_names(ef):
            fail("%s: label names %r, etcd has %r" % (name, label_names(fam), label_names(ef)))
        if fam["type"] == "histogram" and buckets(fam) != buckets(ef):
            fail("%s: buckets %r, etcd has %r" % (name, buckets(fam), buckets(ef)))
    missing = sorted(set(e) - set(k))
    print("etcd 3.4 families keel does not export yet (%d):" % len(missing))
    for name in missing:
        print("  " + name)
    req_missing = [n for n in REQUIRED if n not in k]
    if req_missing:
        fail("keel lacks required families: %s" % " ".join(req_missing))
    print("ok: %d keel families, all etcd 3.4 names with etcd's TYPE, HELP, labels, buckets" % len(k))


# Used by etcd's shipped dashboard and alert rules, not exported by keel yet:
# peer traffic (no peers yet) and the --metrics=extensive latency histogram.
DASHBOARD_NOT_YET = """
etcd_network_peer_received_bytes_total etcd_network_peer_sent_bytes_total
etcd_network_peer_round_trip_time_seconds grpc_server_handling_seconds
""".split()


def dashboards(keel_path, etcd_path, docs):
    """Every etcd 3.4 family that the dashboard/alert files in docs use must
    be exported by keel, but for DASHBOARD_NOT_YET. (The rules also name
    etcd 3.0's etcd_grpc_* and etcd_http_*, which etcd 3.4 itself lacks.)"""
    import gzip
    k = parse(keel_path)
    e = parse(etcd_path)
    used = set()
    for d in docs:
        opener = gzip.open if d.endswith(".gz") else open
        with opener(d, "rt", encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r"\b(etcd_[a-z_]+|grpc_[a-z_]+|process_[a-z_]+)", text):
            name = m.group(1)
            for suf in ("_bucket", "_sum", "_count"):
                if name.endswith(suf) and name[: -len(suf)] in e:
                    name = name[: -len(suf)]
            if name in e:
                used.add(name)
    missing = sorted(n for n in used if n not in k)
    unexpected = [n for n in missing if n not in DASHBOARD_NOT_YET]
    if unexpected:
        fail("etcd's dashboard/alerts use %s, which keel lacks" % " ".join(unexpected))
    print("ok: keel exports %d of the %d etcd families etcd's dashboard and alerts use"
          " (not yet: %s)" % (len(used) - len(missing), len(used), " ".join(missing) or "none"))


def value(path, series):
    fams = parse(path)
    m = SAMPLE_RE.match(series + " 0")
    if not m:
        fail("bad series %r" % series)
    name = m.group(1)
    want = {lm.group(1): unescape(lm.group(2)) for lm in LABEL_RE.finditer(m.group(2) or "")}
    for fam in fams.values():
        for sname, labels, v in fam["samples"]:
            if sname == name and labels == want:
                print("%.17g" % v if v != int(v) else "%d" % int(v))
                return
    fail("%s: no series %s" % (path, series))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "validate":
        fams = parse(sys.argv[2])
        print("ok: %s parses (%d families)" % (sys.argv[2], len(fams)))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 5 and sys.argv[1] == "dashboards":
        dashboards(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif len(sys.argv) == 4 and sys.argv[1] == "value":
        value(sys.argv[2], sys.argv[3])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
