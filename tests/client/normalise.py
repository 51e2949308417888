"""Normalise an etcdctl/keelctl transcript for the differential test.

Replaces only what legitimately differs between two runs of the same
sequence: zap timestamps, the random client UUID of clientv3's log line,
measured durations ("took"), and lease and new member IDs (etcd derives
them from the clock). Usage: normalise.py <lease-id-file> < transcript > normalised
"""
import re
import sys

leases = set()
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if re.fullmatch(r"[0-9a-f]{1,16}", line):
            leases.add(line)

text = sys.stdin.read()
text = re.sub(r'"ts":"[^"]*"', '"ts":"TS"', text)
text = re.sub(r'"ts":[0-9.]+', '"ts":TS', text)
text = re.sub(r'"took":[0-9.e-]+', '"took":D', text)
text = re.sub(r'"size":"[^"]*"', '"size":"S"', text)
text = re.sub(r"(?m)^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}\.[0-9]{6} ", "TS ", text)
text = re.sub(r"client-[0-9a-f]{8}-[0-9a-f-]{27}", "client-UUID", text)
dur = r"[0-9]+(?:\.[0-9]+)?(?:ns|µs|ms|s)"
text = re.sub(r"took = " + dur, "took = D", text)
text = re.sub(r'"took":"' + dur + '"', '"took":"D"', text)
text = re.sub(r'"Took" : ' + dur, '"Took" : D', text)
# The backend's file size depends on bbolt commit timing, not the client.
text = re.sub(r'"dbSize(InUse)?":[0-9]+', r'"dbSize\1":N', text)
text = re.sub(r'"DBSize" : [0-9]+', '"DBSize" : N', text)
text = re.sub(r"(, |\| +)[0-9]+(\.[0-9])? [kMG]?B(,| \|)", r"\1SIZE\3", text)
for lease in sorted(leases, key=len, reverse=True):
    v = int(lease, 16)
    text = text.replace("%016x" % v, "LEASE")
    text = re.sub(r"Member +%x\b" % v, "Member LEASE", text)
    text = re.sub(r"\b%x\b" % v, "LEASE", text)
    text = re.sub(r"\b%d\b" % v, "LEASE", text)
# A random ID may have fewer hex digits: tablewriter pads it.
text = re.sub(r"\| +LEASE \|", "| LEASE |", text)

# A lease's remaining TTL depends on how long the commands since its grant
# took; the KV hash covers keys that carry (time-based) lease IDs, unless
# taken at a revision before them.
out = []
ttl_section = hash_section = False
for line in text.split("\n"):
    if line.startswith("### "):
        ttl_section = "lease timetolive" in line
        hash_section = "endpoint hashkv" in line and "--rev" not in line
    elif hash_section:
        line = re.sub(r"^(\S+, )[0-9]+$", r"\1HASH", line)
        line = re.sub(r'"hash":[0-9]+', '"hash":HASH', line)
        line = re.sub(r'^"Hash" : [0-9]+$', '"Hash" : HASH', line)
        line = re.sub(r"^(\| \S+ \| +)[0-9]+( \|)$", r"\1HASH\2", line)
        if line.startswith("|") or line.startswith("+"):
            line = re.sub(r" +", " ", re.sub(r"-+", "-", line))
    elif ttl_section:
        line = re.sub(r"remaining\([0-9]+s\)", "remaining(Ns)", line)
        line = re.sub(r'"ttl":[0-9]+', '"ttl":N', line)
        line = re.sub(r'^"TTL" : [0-9]+$', '"TTL" : N', line)
    out.append(line)
text = "\n".join(out)

# etcd lists members by ID, and a new member's ID is random: sort what
# depends on that order.
text = re.sub(r'ETCD_INITIAL_CLUSTER="([^"]*)"',
              lambda m: 'ETCD_INITIAL_CLUSTER="%s"'
              % ",".join(sorted(m.group(1).split(","))), text)
lines = text.split("\n")
i = 0
while i < len(lines):
    if lines[i].startswith("| ") and i > 0 and lines[i - 1].startswith("+"):
        j = i
        while j < len(lines) and lines[j].startswith("| "):
            j += 1
        if i >= 2 and lines[i - 2].startswith("| "):  # data rows, not header
            lines[i:j] = sorted(lines[i:j])
        i = j
    i += 1
text = "\n".join(lines)

# tablewriter sizes the TOOK column to the measured duration: only in the
# endpoint health tables are widths normalised.
out = []
health_table = False
for line in text.split("\n"):
    if line.startswith("### "):
        health_table = "endpoint health" in line and "table" in line
    if health_table and (line.startswith("|") or line.startswith("+")):
        line = re.sub(dur, "D", line)
        line = re.sub(r" +", " ", line)
        line = re.sub(r"-+", "-", line)
    out.append(line)
sys.stdout.write("\n".join(out))
