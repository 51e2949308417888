#!/usr/bin/env bash
# Auth on a three-member keel cluster: users, roles and auth enable made on
# one member hold on every member (replicated through raft); etcdctl --user
# authenticates on followers too (the Authenticate goes through raft); a
# simple token issued by one member is accepted by the others; permissions
# and root-only membership changes are enforced everywhere; a member that
# catches up by snapshot enforces the auth state it got. Expected answers
# are etcd 3.4's (the same strings the single-member comparisons check).
#   usage: test_auth_cluster.sh KEEL_BIN
KEEL_BIN=${1:?keel binary}
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster_lib.sh"

kc_init k 3
kc_start_all "$KEEL_BIN" k
L=$(kc_wait_leader k)
F=$((L % 3 + 1)) # a follower
E1=(etcdctl --endpoints="$(kc_ep k "$L")")
"${E1[@]}" user add root:rootpw --interactive=false >/dev/null
"${E1[@]}" user add u1:p1 --interactive=false >/dev/null
"${E1[@]}" role add r1 >/dev/null
"${E1[@]}" role grant-permission r1 readwrite --prefix foo >/dev/null
"${E1[@]}" user grant-role u1 r1 >/dev/null
"${E1[@]}" auth enable >/dev/null

quiet() { grep -v '"level"' || true; }
for i in 1 2 3; do
    E=(etcdctl --endpoints="$(kc_ep k "$i")")
    kt_check "k$i: u1 writes its prefix" OK \
        "$("${E[@]}" --user=u1:p1 put "foo$i" "v$i" 2>&1 | quiet)"
    kt_check "k$i: u1 reads it back" "v$i" \
        "$("${E[@]}" --user=u1:p1 get "foo$i" --print-value-only 2>&1 | quiet)"
    kt_check "k$i: u1 may not write elsewhere" \
        "Error: etcdserver: permission denied" \
        "$("${E[@]}" --user=u1:p1 put bar x 2>&1 | quiet)"
    kt_check "k$i: no user, no read" "Error: etcdserver: user name is empty" \
        "$("${E[@]}" get foo1 2>&1 | quiet)"
    kt_check "k$i: wrong password" \
        "Error: etcdserver: authentication failed, invalid user ID or password" \
        "$("${E[@]}" --user=u1:bad get foo1 2>&1 | quiet)"
    kt_check "k$i: membership changes are for root" \
        "Error: etcdserver: permission denied" \
        "$("${E[@]}" --user=u1:p1 member add x --peer-urls=http://127.0.0.1:9 2>&1 | quiet)"
    kt_check "k$i: root lists users" "root
u1" "$("${E[@]}" --user=root:rootpw user list 2>&1 | quiet)"
done

# token_elsewhere FROM TO: HTTP status of a range on member TO with a
# token issued by member FROM, once TO applied it (5 s at most)
token_elsewhere() {
    local tok code t
    tok=$(curl -sS -X POST "http://$(kc_ep k "$1")/v3/auth/authenticate" \
        -d '{"name":"u1","password":"p1"}' |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
    for ((t = 0; t < 50; t++)); do
        code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST \
            "http://$(kc_ep k "$2")/v3/kv/range" -d '{"key":"Zm9vMQ=="}' \
            -H "Authorization: $tok")
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    printf '%s' "$code"
}
kt_check "the leader's token is accepted by follower k$F" 200 \
    "$(token_elsewhere "$L" "$F")"
kt_check "follower k$F's token is accepted by the leader" 200 \
    "$(token_elsewhere "$F" "$L")"
# disabling auth on a follower disables it everywhere
etcdctl --endpoints="$(kc_ep k "$F")" --user=root:rootpw auth disable >/dev/null
for ((t = 0; t < 50; t++)); do
    out=$(etcdctl --endpoints="$(kc_ep k "$L")" get foo1 --print-value-only 2>&1 | quiet)
    [ "$out" = v1 ] && break
    sleep 0.1
done
kt_check "auth disabled on k$F holds on the leader" v1 "$out"
for i in 1 2 3; do
    kc_stop k "$i"
done

# A member that catches up by snapshot learns that auth was enabled (the
# snapshot replaces its store without applying the entries one by one).
kc_init s 3
kc_start_all "$KEEL_BIN" s --snapshot-count=100
L=$(kc_wait_leader s)
F=$((L % 3 + 1))
LEP=$(kc_ep s "$L")
FEP=$(kc_ep s "$F")
etcdctl --endpoints="$LEP" user add root:rootpw --interactive=false >/dev/null
etcdctl --endpoints="$LEP" put k before >/dev/null
for ((t = 0; t < 50; t++)); do # the follower serves (auth disabled)
    got=$(etcdctl --endpoints="$FEP" get k --consistency=s --print-value-only 2>/dev/null || true)
    [ "$got" = before ] && break
    sleep 0.1
done
kt_check "follower s$F reads without a user" before "$got"
kill -STOP "$(kc_var "s$F" PID)"
etcdctl --endpoints="$LEP" auth enable >/dev/null
# More entries than the leader keeps after compacting its log (5000) plus
# what the stopped follower can still receive: the leader keeps sending up to
# its inflight window (256 appends) into the follower's socket while it is
# stopped, and a follower that ends past the compaction point catches up by
# appends, not by snapshot.
/usr/bin/python3 - "$LEP" <<'PY'
import sys, etcd3, etcd3.etcdrpc as r
host, port = sys.argv[1].split(":")
c = etcd3.client(host=host, port=int(port))
# python-etcd3's own user= wants a TLS channel: pass the token by hand
tok = r.AuthStub(c.channel).Authenticate(
    r.AuthenticateRequest(name="root", password="rootpw")).token
md = (("token", tok),)
for i in range(5800):
    c.kvstub.Put(r.PutRequest(key=b"/fill/%d" % i, value=b"x"), metadata=md)
c.kvstub.Put(r.PutRequest(key=b"k", value=b"after"), metadata=md)
PY
kill -CONT "$(kc_var "s$F" PID)"
for ((t = 0; t < 150; t++)); do
    grep -q "applied incoming snapshot" "$(kc_var "s$F" LOG)" && break
    sleep 0.2
done
grep -q "applied incoming snapshot" "$(kc_var "s$F" LOG)" ||
    { echo "FAIL: s$F did not catch up by snapshot" >&2; exit 1; }
for ((t = 0; t < 50; t++)); do
    got=$(etcdctl --endpoints="$FEP" --user=root:rootpw get k --consistency=s --print-value-only 2>/dev/null || true)
    [ "$got" = after ] && break
    sleep 0.1
done
kt_check "s$F caught up" after "$got"
kt_check "s$F enforces auth after the snapshot" \
    "Error: etcdserver: user name is empty" \
    "$(etcdctl --endpoints="$FEP" get k --consistency=s 2>&1 | quiet)"
for i in 1 2 3; do
    kc_stop s "$i"
done
echo "ok: auth on a three-member cluster"
