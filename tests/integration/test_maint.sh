#!/usr/bin/env bash
# Maintenance on keel beyond what etcdctl's output shows (the differential
# part is etcdctl_maint_cases.txt):
#   - `etcdctl snapshot save` gives an LMDB image (mdb_stat/mdb_dump read
#     it, with the keys written) followed by the sha256 of the image;
#   - deletes + compaction + defrag shrink dbSize;
#   - defrag while a client writes keeps every acknowledged write, also
#     across a restart (the swapped file is what keel reopens);
#   - snapshots and defrags running at the same time all succeed;
#   - snapshot clients gone mid-stream leave the server serving (and, under
#     ASan, leak nothing);
#   - a snapshot client that stops reading does not make keel queue the
#     image in memory (paced by the call's send queue);
#   - alarms are persisted: one raised before a restart is active after it;
#   - keel exits 0 after SIGTERM.
#   usage: test_maint.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
KEEL_BIN=${1:?keel binary}
PY=/usr/bin/python3
CLI="$(dirname "$0")/maint_client.py"

kt_start k "$KEEL_BIN"
E=(etcdctl --endpoints="$k_CLIENT" --command-timeout=20s)
db_size() { "${E[@]}" endpoint status -w json | sed -E 's/.*"dbSize":([0-9]+).*/\1/'; }

# ---- snapshot: an LMDB image + sha256 trailer -----------------------------
$PY "$CLI" fill "$k_CLIENT" key/ 300 4000
"${E[@]}" snapshot save "$KT_TMP/s.db" >/dev/null 2>&1
size=$(stat -c %s "$KT_TMP/s.db")
kt_check "snapshot file: image (multiple of 512) + 32-byte sha256" \
    32 $((size % 512))
head -c $((size - 32)) "$KT_TMP/s.db" >"$KT_TMP/img.db"
kt_check "sha256 trailer is the image's hash" \
    "$(sha256sum <"$KT_TMP/img.db" | cut -d' ' -f1)" \
    "$(tail -c 32 "$KT_TMP/s.db" | od -An -tx1 -v | tr -d ' \n')"
entries=$(mdb_stat -n -s key "$KT_TMP/img.db" | sed -n 's/^ *Entries: //p')
kt_check "the image's key table holds the 300 revisions" 300 "$entries"
kt_check "the image holds the written keys" 300 \
    "$(mdb_dump -n -p -s key "$KT_TMP/img.db" | grep -c 'key/[0-9]\{5\}')"

# ---- deletes + compaction + defrag shrink the file ------------------------
before=$(db_size)
"${E[@]}" del --prefix key/ >/dev/null
rev=$("${E[@]}" get x -w json | sed -E 's/.*"revision":([0-9]+).*/\1/')
"${E[@]}" compaction "$rev" >/dev/null
sleep 0.5 # physical compaction runs in steps on the ticks
"${E[@]}" defrag >/dev/null
after=$(db_size)
echo "dbSize: $before -> $after"
[ "$after" -lt $((before / 2)) ] || { echo "FAIL: defrag did not shrink" >&2; exit 1; }
echo "ok: deletes + compaction + defrag shrink dbSize"

# ---- defrag under writes keeps every acknowledged write -------------------
$PY "$CLI" writer "$k_CLIENT" w/ 3 "$KT_TMP/acked" &
wpid=$!
for _ in 1 2 3 4 5; do
    sleep 0.3
    "${E[@]}" defrag >/dev/null
done
wait "$wpid"
n=$($PY "$CLI" check "$k_CLIENT" "$KT_TMP/acked")
echo "ok: $n writes acknowledged during 5 defrags are all there"

# ---- snapshots and defrags at the same time -------------------------------
# (a defrag swaps the file only once no snapshot copy reads it)
pids=()
for i in 1 2 3; do
    "${E[@]}" snapshot save "$KT_TMP/p$i.db" >/dev/null 2>&1 &
    pids+=($!)
    "${E[@]}" defrag >/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for i in 1 2 3; do
    f="$KT_TMP/p$i.db"
    kt_check "concurrent snapshot $i: sha256 trailer" \
        "$(head -c -32 "$f" | sha256sum | cut -d' ' -f1)" \
        "$(tail -c 32 "$f" | od -An -tx1 -v | tr -d ' \n')"
done
n=$($PY "$CLI" check "$k_CLIENT" "$KT_TMP/acked")

# ---- snapshot clients killed mid-stream -----------------------------------
$PY "$CLI" fill "$k_CLIENT" big/ 200 8000
for _ in 1 2 3; do
    $PY "$CLI" abandon "$k_CLIENT"
done
for t in 0.05 0.1 0.15 0.2; do
    timeout -s KILL "$t" "${E[@]}" snapshot save "$KT_TMP/c.db" \
        >/dev/null 2>&1 || true
done
"${E[@]}" snapshot save "$KT_TMP/s2.db" >/dev/null 2>&1
kt_check "a snapshot after cancelled ones" 32 \
    $(($(stat -c %s "$KT_TMP/s2.db") % 512))

# ---- a stalled snapshot client: the server's heap stays bounded ------------
# 20 MB of values; the client reads one message and stops reading for 2 s.
# Without pacing the whole image would be queued on the heap; with it, at
# most the call's budget plus the HTTP/2 window. RssAnon excludes LMDB's
# file-backed map. (Under ASan, shadow memory and the free quarantine make
# the number meaningless: only printed.)
$PY "$CLI" fill "$k_CLIENT" huge/ 200 100000
anon() { sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$k_PID/status"; }
a0=$(anon)
$PY "$CLI" stall "$k_CLIENT" 2 &
spid=$!
sleep 1.5
a1=$(anon)
wait "$spid"
echo "heap (RssAnon) before a stalled 20 MB snapshot: $a0 kB, during: $a1 kB"
if [ "${KEEL_SANITIZED:-0}" != 1 ] && [ $((a1 - a0)) -gt 8192 ]; then
    echo "FAIL: a stalled snapshot grew the heap by $((a1 - a0)) kB" >&2
    exit 1
fi
echo "ok: a stalled snapshot client does not make the server queue the image"

# ---- an alarm raised through the API survives a restart -------------------
curl -fsS -XPOST "http://$k_CLIENT/v3/maintenance/alarm" \
    -d '{"action":"ACTIVATE","memberID":"7","alarm":"NOSPACE"}' >/dev/null

# ---- restart: the defragmented file is the store --------------------------
kill -TERM "$k_PID"
rc=0
wait "$k_PID" || rc=$?
kt_check "keel exits 0 after SIGTERM" 0 "$rc"
"$KEEL_BIN" --name k --data-dir "$k_DIR" \
    --listen-client-urls "http://$k_CLIENT" \
    --advertise-client-urls "http://$k_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$(kt_free_port)" \
    >>"$k_LOG" 2>&1 &
k_PID=$!
KT_PIDS+=("$k_PID")
# /health is false under the alarm (as etcd 3.4): wait for /version
kt_wait_http "http://$k_CLIENT/version" 30
n2=$($PY "$CLI" check "$k_CLIENT" "$KT_TMP/acked")
kt_check "/health is false under an alarm" '503 {"health":"false"}' \
    "$(curl -s -o - -w ' %{http_code}' "http://$k_CLIENT/health" | awk '{print $2, $1}')"
kt_check "acknowledged writes survive the restart" "$n" "$n2"
kt_check "the alarm survives the restart" "memberID:7 alarm:NOSPACE " \
    "$("${E[@]}" alarm list)"
kt_check "puts are refused under NOSPACE" \
    "Error: etcdserver: mvcc: database space exceeded" \
    "$("${E[@]}" put after restart 2>&1 | grep Error)"
"${E[@]}" alarm disarm >/dev/null
kt_check "a put after disarm" OK "$("${E[@]}" put after restart)"
kt_check "/health is true again after disarm" '{"health":"true"}' \
    "$(curl -s "http://$k_CLIENT/health")"
kill -TERM "$k_PID"
rc=0
wait "$k_PID" || rc=$?
kt_check "keel exits 0 after SIGTERM (restarted)" 0 "$rc"
