#!/usr/bin/env bash
# keel's v2 store through raft and LMDB (keel only; etcd's answers are
# checked by test_v2_compat.sh):
#   1. one member: v2 writes survive a graceful restart and a kill -9
#      (same nodes, values, indexes, TTL kept); the history after a restart
#      answers an old waitIndex with 401 and a new one with its event; a
#      stream from the history gets every later match, then live events
#   2. three members, --enable-v2 on all: a write on one member is read on
#      the others (quorum GET, and local GET once applied), a watch on a
#      follower sees a write made on the leader, a TTL key set on a
#      follower expires on every member, /v2/stats/leader answers on the
#      leader only, /v2/members and /v2/machines list all three; a member
#      restarted without --enable-v2 answers 404 on /v2/keys and still
#      applies v2 writes; a member far behind catches up from a store image
#      that carries the v2 tree; member add/remove/update through
#      /v2/members.
#   usage: test_v2_cluster.sh KEEL_BIN
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"
KEEL_BIN=${1:?keel binary}

get() { curl -sS -m 10 "http://$1/v2/keys$2"; }
put() { curl -sS -m 10 -X PUT "http://$1/v2/keys$2" -d "$3"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# ---- 1. one member: restart and kill -9 -----------------------------------
kt_start solo "$KEEL_BIN" --enable-v2
EP=$solo_CLIENT
put "$EP" /a/b value=1 >/dev/null
put "$EP" /a/c value=2 >/dev/null
put "$EP" /t "value=x&ttl=1000" >/dev/null
curl -sS -m 10 -X POST "http://$EP/v2/keys/q" -d value=job >/dev/null
before=$(get "$EP" "/?recursive=true&sorted=true" | sed -E 's/"expiration":"[^"]*"//; s/"ttl":[0-9]+//')
idx_before=$(curl -sS -m 10 -o /dev/null -D - "http://$EP/v2/keys/" | tr -d '\r' |
    awk -F': ' 'tolower($1)=="x-etcd-index"{print $2}')
stop_solo() {
    local rc=0
    kill -TERM "$solo_PID"; wait "$solo_PID" 2>/dev/null || rc=$?
    [ "$rc" -eq 0 ] || { echo "FAIL: keel exited $rc after SIGTERM" >&2; exit 1; }
}
stop_solo
"$KEEL_BIN" --enable-v2 --name solo --data-dir "$solo_DIR" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://127.0.0.1:$(kt_free_port)" \
    --initial-cluster-state existing >>"$solo_LOG" 2>&1 &
solo_PID=$!; KT_PIDS+=("$solo_PID")
kt_wait_http "http://$EP/health" 30
after=$(get "$EP" "/?recursive=true&sorted=true" | sed -E 's/"expiration":"[^"]*"//; s/"ttl":[0-9]+//')
kt_check "v2 tree after a graceful restart" "$before" "$after"
ttl=$(get "$EP" /t | field 'd["node"]["ttl"]')
[ "$ttl" -gt 900 ] && [ "$ttl" -le 1000 ] || { echo "FAIL: ttl after restart $ttl" >&2; exit 1; }
echo "ok: ttl kept across the restart ($ttl)"
# an old waitIndex after a restart: the history starts at the restart
kt_check "old waitIndex after a restart" "401" \
    "$(get "$EP" "/a/b?wait=true&waitIndex=1" | field 'd["errorCode"]')"
put "$EP" /k9 value=acked >/dev/null
new=$(get "$EP" "/k9?wait=true&waitIndex=$((idx_before + 1))" | field 'd["node"]["value"]')
kt_check "waitIndex of a write after the restart" "acked" "$new"
kill -KILL "$solo_PID"; wait "$solo_PID" 2>/dev/null || true
"$KEEL_BIN" --enable-v2 --name solo --data-dir "$solo_DIR" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://127.0.0.1:$(kt_free_port)" \
    --initial-cluster-state existing >>"$solo_LOG" 2>&1 &
solo_PID=$!; KT_PIDS+=("$solo_PID")
kt_wait_http "http://$EP/health" 30
kt_check "acknowledged write after kill -9" "acked" "$(get "$EP" /k9 | field 'd["node"]["value"]')"
kt_check "v2 tree after kill -9" "$before" \
    "$(get "$EP" "/?recursive=true&sorted=true" | sed -E 's/"expiration":"[^"]*"//; s/"ttl":[0-9]+//; s/,\{"key":"\/k9"[^}]*\}//')"
# a stream from the history gets every later match, then live events
i1=$(put "$EP" /hs value=a | field 'd["node"]["modifiedIndex"]')
put "$EP" /hs value=b >/dev/null
put "$EP" /other value=x >/dev/null
curl -sS -m 3 "http://$EP/v2/keys/hs?wait=true&stream=true&waitIndex=$i1" >"$KT_TMP/hs" &
hspid=$!
sleep 0.5
put "$EP" /hs value=c >/dev/null
wait "$hspid" || true # curl ends at -m 3
kt_check "stream from the history, then live" "a b c" \
    "$(python3 -c "import json,sys; print(' '.join(json.loads(l)['node']['value'] for l in open(sys.argv[1]) if l.strip()))" "$KT_TMP/hs")"
stop_solo

# ---- 2. three members -------------------------------------------------------
kc_init v 3
# --snapshot-count=100: the leader compacts its log, so a member stopped
# for 6000 writes must catch up from a store image (below)
KC_FLAGS="--snapshot-count=100"
kc_start "$KEEL_BIN" v 1 new "$(kc_initial_cluster v)" --enable-v2
kc_start "$KEEL_BIN" v 2 new "$(kc_initial_cluster v)" --enable-v2
kc_start "$KEEL_BIN" v 3 new "$(kc_initial_cluster v)" --enable-v2
for i in 1 2 3; do kc_wait_ready v "$i"; done
L=$(kc_wait_leader v)
F=1; [ "$L" = 1 ] && F=2
LEP=$(kc_ep v "$L"); FEP=$(kc_ep v "$F")
echo "leader v$L, v2 follower v$F"

# a watch on the follower, then a write on the leader
curl -sS -m 20 "http://$FEP/v2/keys/w?wait=true" >"$KT_TMP/watch.out" &
wpid=$!
sleep 0.5
put "$LEP" /w value=from-leader >/dev/null
wait "$wpid"
kt_check "watch on a follower sees the leader's write" "set from-leader" \
    "$(field 'd["action"]+" "+d["node"]["value"]' <"$KT_TMP/watch.out")"

# a write on the follower (forwarded through raft), read everywhere
put "$FEP" /x value=42 >/dev/null
kt_check "quorum GET on the leader" "42" \
    "$(get "$LEP" "/x?quorum=true" | field 'd["node"]["value"]')"
for ((t = 0; t < 50; t++)); do
    v=$(get "$LEP" /x | field 'd.get("node",{}).get("value","")')
    [ "$v" = 42 ] && break
    sleep 0.1
done
kt_check "local GET on the leader" "42" "$v"
kt_check "equal indexes on both v2 members" \
    "$(get "$LEP" "/x?quorum=true" | field 'd["node"]["modifiedIndex"]')" \
    "$(get "$FEP" "/x?quorum=true" | field 'd["node"]["modifiedIndex"]')"

# TTL set on the follower expires on every member (SYNC from the leader)
put "$FEP" /ttl "value=v&ttl=1" >/dev/null
ev=$(curl -sS -m 20 "http://$FEP/v2/keys/ttl?wait=true" | field 'd["action"]')
kt_check "expire event on the follower" "expire" "$ev"
kt_check "expired on the leader too" "100" \
    "$(get "$LEP" "/ttl?quorum=true" | field 'd["errorCode"]')"

# stats and membership
code=$(curl -sS -m 10 -o "$KT_TMP/ls" -w '%{http_code}' "http://$FEP/v2/stats/leader")
kt_check "stats/leader on a follower" '403 {"message":"not current leader"}' "$code $(cat "$KT_TMP/ls")"
kt_check "stats/leader on the leader lists two followers" "2" \
    "$(curl -sS -m 10 "http://$LEP/v2/stats/leader" | field 'len(d["followers"])')"
kt_check "v2 members" "3" \
    "$(curl -sS -m 10 "http://$FEP/v2/members" | field 'len(d["members"])')"
kt_check "v2 machines" "3" \
    "$(curl -sS -m 10 "http://$FEP/v2/machines" | tr ',' '\n' | grep -c http)"
# the follower restarted without --enable-v2: 404 as etcd, its v2 store
# still applied (visible again with the flag)
kc_stop v "$F"
kc_start "$KEEL_BIN" v "$F" existing
kc_wait_ready v "$F"
kt_check "member without --enable-v2" "404 404 page not found" \
    "$(curl -sS -m 10 -w '%{http_code} ' -o "$KT_TMP/nf" "http://$FEP/v2/keys/x")$(cat "$KT_TMP/nf")"
put "$LEP" /while-off value=1 >/dev/null
kc_stop v "$F"
kc_start "$KEEL_BIN" v "$F" existing "$(kc_initial_cluster v)" --enable-v2
kc_wait_ready v "$F"
for ((t = 0; t < 50; t++)); do
    v=$(get "$FEP" /while-off | field 'd.get("node",{}).get("value","")')
    [ "$v" = 1 ] && break
    sleep 0.1
done
kt_check "write applied while the member served no v2" "1" "$v"
# a follower far behind catches up from the leader's store image, which
# carries the v2 table (and its tree is reloaded from it)
S=3; [ "$L" = 3 ] && S=2
[ "$S" = "$F" ] && S=$((6 - L - F))
kc_stop v "$S"
python3 - "$LEP" <<'PY'
import http.client, sys
host, port = sys.argv[1].split(":")
c = http.client.HTTPConnection(host, int(port), timeout=30)
for i in range(6000):
    c.request("PUT", "/v2/keys/bulk/k%d" % (i % 50), body="value=%d" % i,
              headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = c.getresponse(); r.read()
    assert r.status in (200, 201), r.status
c.request("PUT", "/v2/keys/after-snap", body="value=yes",
          headers={"Content-Type": "application/x-www-form-urlencoded"})
c.getresponse().read()
PY
kc_start "$KEEL_BIN" v "$S" existing "$(kc_initial_cluster v)" --enable-v2
kc_wait_ready v "$S"
SEP=$(kc_ep v "$S")
for ((t = 0; t < 100; t++)); do
    v=$(get "$SEP" /after-snap | field 'd.get("node",{}).get("value","")')
    [ "$v" = yes ] && break
    sleep 0.2
done
kt_check "v2 key on a member caught up by snapshot" "yes" "$v"
grep -q "applied incoming snapshot" "$(kc_var "v$S" LOG)" ||
    { echo "FAIL: v$S did not catch up by snapshot" >&2; exit 1; }
echo "ok: v$S caught up by a store image"
kt_check "same v2 index after the snapshot" \
    "$(get "$LEP" "/bulk?quorum=true&recursive=true&sorted=true")" \
    "$(get "$SEP" "/bulk?quorum=true&recursive=true&sorted=true")"

# membership through /v2/members (the Cluster service)
# (--strict-reconfig-check: the restarted member must have been connected
# for a while first: etcd answers 500 "Internal Server Error" until then)
NPORT=$(kt_free_port)
for ((t = 0; t < 60; t++)); do
    code=$(curl -sS -m 20 -o "$KT_TMP/add" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' \
        -d "{\"peerURLs\":[\"http://127.0.0.1:$NPORT\"]}" "http://$LEP/v2/members")
    [ "$code" = 500 ] || break
    kt_check "v2 member add refused while unhealthy" \
        '{"message":"Internal Server Error"}' "$(cat "$KT_TMP/add")" >/dev/null
    sleep 0.5
done
kt_check "v2 member add" "201 0" "$code $(field 'len(d["name"])+len(d["clientURLs"])' <"$KT_TMP/add")"
NEW=$(field 'd["id"]' <"$KT_TMP/add")
kt_check "the added member is listed" "4" \
    "$(curl -sS -m 10 "http://$FEP/v2/members" | field 'len(d["members"])')"
kt_check "v2 member remove" "204" \
    "$(curl -sS -m 20 -o /dev/null -w '%{http_code}' -X DELETE "http://$LEP/v2/members/$NEW")"
kt_check "v2 member remove again" "410 {\"message\":\"Member permanently removed: $NEW\"}" \
    "$(curl -sS -m 20 -o "$KT_TMP/rm" -w '%{http_code}' -X DELETE "http://$LEP/v2/members/$NEW") $(cat "$KT_TMP/rm")"
FID=$(curl -sS -m 10 "http://$FEP/v2/members" | python3 -c "
import json,sys
for m in json.load(sys.stdin)['members']:
    if m['name']=='v$F': print(m['id'])")
kt_check "v2 member update" "204" \
    "$(curl -sS -m 20 -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
        -d "{\"peerURLs\":[\"http://127.0.0.1:$(kc_var "v$F" PPORT)\"]}" "http://$LEP/v2/members/$FID")"
kt_check "v2 auth is not served (not yet)" "404" \
    "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://$LEP/v2/auth/enable")"
for i in 1 2 3; do kc_stop v "$i"; done
echo "ok: v2 cluster test passed"
