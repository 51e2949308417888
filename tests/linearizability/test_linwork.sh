#!/usr/bin/env bash
# keel-linwork records a history against a real single-member keel and a
# real etcd 3.4; keel-lincheck must find both linearizable, and must reject
# tampered copies (a read of a value written only later; a read of a value
# never written) and a truncated line.
#   usage: test_linwork.sh KEEL_BIN LINWORK_BIN LINCHECK_BIN
. "$(dirname "$0")/../integration/lib.sh"
KEEL_BIN=${1:?keel binary}
LINWORK=${2:?keel-linwork binary}
LINCHECK=${3:?keel-lincheck binary}
SECS=${LINWORK_SECS:-4}

# tamper IN OUT MODE: rewrite one read of IN (mode "future": the result of
# a put invoked after the read completed; "never": a value nobody wrote).
tamper() {
    python3 - "$1" "$2" "$3" <<'PY'
import json, sys
src, dst, mode = sys.argv[1:]
ops = [json.loads(l) for l in open(src)]
done = False
for g in ops:
    if done or g["op"] != "get" or g["outcome"] != "ok":
        continue
    if mode == "never":
        g["result"] = "never-written"
        done = True
        continue
    for p in ops:
        if (p["op"] == "put" and p["key"] == g["key"] and
                p["invoke"] > g["complete"] and p["value"] != g["result"]):
            g["result"] = p["value"]
            done = True
            break
assert done, "nothing to tamper"
with open(dst, "w") as f:
    for o in ops:
        f.write(json.dumps(o) + "\n")
PY
}

run_against() {
    local name=$1 bin=$2
    kt_start "$name" "$bin"
    local ep_var="${name}_CLIENT" h="$KT_TMP/$name.history"
    local wrc=0
    "$LINWORK" --endpoints "${!ep_var}" --output "$h" --duration "$SECS" \
        --clients 8 --keys 4 2>"$KT_TMP/$name.linwork" || wrc=$?
    cat "$KT_TMP/$name.linwork"
    kt_check "$name: keel-linwork exit status" 0 "$wrc"
    local n
    n=$(wc -l <"$h")
    [ "$n" -gt 100 ] || { echo "FAIL: only $n ops recorded on $name" >&2; exit 1; }
    # every op kind was recorded, ok and failed cas included
    for pat in '"op":"get"' '"op":"put"' '"op":"cas".*"outcome":"ok"' \
               '"op":"cas".*"outcome":"fail"' '"op":"del"'; do
        grep -q "$pat" "$h" || { echo "FAIL: no $pat in the $name history" >&2; exit 1; }
    done
    local out rc=0
    out=$("$LINCHECK" "$h" 2>&1) || rc=$?
    kt_check "$name: history of $n ops is linearizable (exit 0)" 0 "$rc"
    kt_check "$name: verdict" linearizable "$(echo "$out" | grep -x linearizable)"

    tamper "$h" "$h.future" future
    rc=0
    out=$("$LINCHECK" "$h.future" 2>/dev/null) || rc=$?
    kt_check "$name: a read of a later write is caught (exit 1)" 1 "$rc"
    echo "$out" | grep -q '^not linearizable: key ' ||
        { echo "FAIL: no key in the report: $out" >&2; exit 1; }
    tamper "$h" "$h.never" never
    rc=0
    "$LINCHECK" "$h.never" >/dev/null 2>&1 || rc=$?
    kt_check "$name: a read of a value never written is caught (exit 1)" 1 "$rc"
}

run_against keel "$KEEL_BIN"
run_against etcd /usr/bin/etcd

# definite failures: with --max-request-bytes=10 every put and cas is
# refused (InvalidArgument "request is too large") and reads still work:
# the puts are recorded "fail", the cas (which compared nothing) dropped
for srv in keel:"$KEEL_BIN" etcd:/usr/bin/etcd; do
    name=${srv%%:*}
    kt_start "small$name" "${srv#*:}" --max-request-bytes=10
    ep_var="small${name}_CLIENT"
    h="$KT_TMP/small$name.history"
    "$LINWORK" --endpoints "${!ep_var}" --output "$h" --ops 150 --clients 2 \
        --prefix p/ --mix 40,40,20,0 2>"$KT_TMP/small$name.linwork"
    cat "$KT_TMP/small$name.linwork"
    grep -q '"op":"put".*"outcome":"fail"' "$h" ||
        { echo "FAIL: $name: no failed put recorded" >&2; exit 1; }
    kt_check "$name: refused puts are not recorded as applied" 0 \
        "$(grep -c '"op":"put".*"outcome":"ok"' "$h" || true)"
    kt_check "$name: refused cas are dropped" 0 "$(grep -c '"op":"cas"' "$h" || true)"
    rc=0
    "$LINCHECK" "$h" >/dev/null 2>&1 || rc=$?
    kt_check "$name: history with definite failures is linearizable" 0 "$rc"
done

# bad input: exit 2 with the line number
head -c 200 "$KT_TMP/keel.history" >"$KT_TMP/cut"
rc=0
err=$("$LINCHECK" "$KT_TMP/cut" 2>&1 >/dev/null) || rc=$?
kt_check "truncated history: exit 2" 2 "$rc"
echo "$err" | grep -q ': line [0-9]*: invalid JSON' ||
    { echo "FAIL: no line number in: $err" >&2; exit 1; }
rc=0
"$LINCHECK" "$KT_TMP/does-not-exist" >/dev/null 2>&1 || rc=$?
kt_check "missing file: exit 2" 2 "$rc"
rc=0
"$LINWORK" --endpoints 127.0.0.1:1 --output "$KT_TMP/x" >/dev/null 2>&1 || rc=$?
kt_check "keel-linwork without --duration/--ops: exit 2" 2 "$rc"
# nothing serves: no op succeeded, exit 1
rc=0
"$LINWORK" --endpoints "127.0.0.1:$(kt_free_port)" --output "$KT_TMP/x" \
    --ops 5 --clients 1 --timeout 300 >/dev/null 2>&1 || rc=$?
kt_check "keel-linwork with no server: exit 1" 1 "$rc"
