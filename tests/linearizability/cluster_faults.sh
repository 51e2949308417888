#!/usr/bin/env bash
# Linearizability under faults: a 3-member cluster with keel-faultproxy
# between the members' peer ports, keel-linwork recording get/put/cas/del
# from several clients over every member while members are killed -9 and
# restarted (one, or all at once), stopped with SIGSTOP past the election
# timeout, isolated, partitioned, delayed and blackholed through the proxy;
# then every member must be
# healthy with the same revision and KV hash, and keel-lincheck must find
# the history linearizable.
#
#   usage: cluster_faults.sh KEEL_BIN LINWORK LINCHECK PROXY
#              [--etcd] [--members N] [--duration SECS] [--rounds N]
#              [--keep DIR]
#   --etcd      run the cluster on /usr/bin/etcd (3.4) instead of KEEL_BIN
#               (proves the script and the tools against the reference;
#               CLUSTER_BIN=path does the same for any binary)
#   --members   cluster size (default 3; 5 works too)
#   --duration  seconds of workload and faults per round (default 25)
#   --rounds    rounds on the same cluster, each checked (default 1)
#   --keep DIR  copy each round's history and the logs to DIR
# MEMBER_FLAGS (env): more flags for every member (the soak passes
# auto-compaction so hours of writes stay bounded).
#
# Exit 0: every round linearizable and converged; 1: a failure; 77 (ctest
# SKIP): the binary does not run multi-member clusters yet (its member list
# shows one member, or its peer port does not listen).
#
# Topology (per member i): clients -> C_i (client port); peers dial the
# advertised peer URL P_i (a proxy route) which forwards to R_i (the real
# --listen-peer-urls). Cutting route P_i cuts every connection dialed *to*
# member i ("partition": its inbound side); the proxy also reads which
# member dialed each connection, so "isolate" cuts route P_i and every
# other route's connections from member i, and "link" the connections
# between two members only.
. "$(dirname "$0")/../integration/lib.sh"
BIN=${1:?keel binary}
LINWORK=${2:?keel-linwork}
LINCHECK=${3:?keel-lincheck}
PROXY=${4:?keel-faultproxy}
shift 4
DURATION=25
ROUNDS=1
N=3
KEEP=
while [ $# -gt 0 ]; do
    case $1 in
        --etcd) BIN=/usr/bin/etcd ;;
        --members) N=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
BIN=${CLUSTER_BIN:-$BIN}
[ -n "${KEEL_SANITIZED:-}" ] && [ "$DURATION" -gt 12 ] && DURATION=12
CTL="$KT_TMP/proxy.ctl"
declare -a C R P PID
for i in $(seq 1 $N); do
    C[$i]=$(kt_free_port); R[$i]=$(kt_free_port); P[$i]=$(kt_free_port)
done
IC=
ROUTES=()
for i in $(seq 1 $N); do
    IC+="${IC:+,}m$i=http://127.0.0.1:${P[$i]}"
    ROUTES+=(--route "127.0.0.1:${P[$i]}=127.0.0.1:${R[$i]}")
done
ENDPOINTS=$(for i in $(seq 1 $N); do printf '127.0.0.1:%s,' "${C[$i]}"; done)
ENDPOINTS=${ENDPOINTS%,}
log() { echo "[$(date +%T)] $*"; }

"$PROXY" --control "$CTL" "${ROUTES[@]}" >"$KT_TMP/proxy.log" 2>&1 &
PROXY_PID=$!
KT_PIDS+=($PROXY_PID)
for _ in $(seq 50); do "$PROXY" ctl "$CTL" status >/dev/null 2>&1 && break; sleep 0.1; done
ctl() {
    "$PROXY" ctl "$CTL" "$@" >/dev/null ||
        { echo "FAIL: keel-faultproxy ctl $* failed" >&2; exit 1; }
}

start_member() {
    local i=$1
    "$BIN" --name "m$i" --data-dir "$KT_TMP/m$i.data" \
        --listen-client-urls "http://127.0.0.1:${C[$i]}" \
        --advertise-client-urls "http://127.0.0.1:${C[$i]}" \
        --listen-peer-urls "http://127.0.0.1:${R[$i]}" \
        --initial-advertise-peer-urls "http://127.0.0.1:${P[$i]}" \
        --initial-cluster "$IC" --initial-cluster-token "lin-$$" \
        --initial-cluster-state new \
        --heartbeat-interval 100 --election-timeout 1000 \
        ${MEMBER_FLAGS:-} >>"$KT_TMP/m$i.log" 2>&1 &
    PID[$i]=$!
    KT_PIDS+=("${PID[$i]}")
}

# listening TCP_PORT: is something listening there?
listening() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

# healthy I: member i answers /health with true (etcd: it has a leader)
healthy() {
    curl -fsS -m 2 "http://127.0.0.1:${C[$1]}/health" 2>/dev/null | grep -q '"true"'
}

wait_all_healthy() {
    local secs=$1 i ok
    for ((t = 0; t < secs * 5; t++)); do
        ok=1
        for i in $(seq 1 $N); do healthy "$i" || ok=0; done
        [ $ok = 1 ] && return 0
        sleep 0.2
    done
    echo "FAIL: members not all healthy after ${secs}s" >&2
    return 1
}

for i in $(seq 1 $N); do start_member "$i"; done
# the client ports listen (a member without quorum may take seconds to
# answer /health, so only connect) ...
for i in $(seq 1 $N); do
    for ((t = 0; t < 100; t++)); do
        listening "${C[$i]}" && break
        if ! kill -0 "${PID[$i]}" 2>/dev/null; then
            echo "FAIL: member m$i exited at start" >&2; exit 1
        fi
        sleep 0.2
    done
done
# ... then: is this a cluster at all?
for i in $(seq 1 $N); do
    if ! listening "${R[$i]}"; then
        echo "SKIP: $BIN does not listen on its peer port (no multi-member clusters yet)"
        exit 77
    fi
done
members=$(etcdctl --endpoints="127.0.0.1:${C[1]}" --command-timeout=5s member list 2>/dev/null | grep -c started || true)
if [ "$members" -lt $N ]; then
    # a cluster still forming may not list everyone yet: give it time
    wait_all_healthy 20 || true
    members=$(etcdctl --endpoints="127.0.0.1:${C[1]}" --command-timeout=5s member list 2>/dev/null | grep -c started || true)
    if [ "$members" -lt $N ]; then
        echo "SKIP: $BIN lists $members member(s) of $N (no multi-member clusters yet)"
        exit 77
    fi
fi
wait_all_healthy 30
log "cluster of $N up ($BIN), endpoints $ENDPOINTS"

# member ids (hex, as the proxy takes them) by index
declare -a ID
while IFS=', ' read -r id _ name _; do
    ID[${name#m}]=$id
done < <(etcdctl --endpoints="$ENDPOINTS" member list)
for i in $(seq 1 $N); do
    [ -n "${ID[$i]:-}" ] || { echo "FAIL: no id for m$i in the member list" >&2; exit 1; }
done
# the proxy must tell the members' connections apart (it reads the
# sender's id from the peer protocol), or per-member cuts do nothing
for ((t = 0; t < 50; t++)); do
    unknown=$("$PROXY" ctl "$CTL" status | grep -c ' identified 0 ' || true)
    [ "$unknown" = 0 ] && break
    sleep 0.2
done
[ "$unknown" = 0 ] || { "$PROXY" ctl "$CTL" status >&2
    echo "FAIL: keel-faultproxy cannot tell which member dialed" >&2; exit 1; }

# The leader's index (1..N): the member whose own status says it leads;
# otherwise a random member.
pick_leader_or_any() {
    local i out
    for i in $(seq 1 $N); do
        out=$(etcdctl --endpoints="127.0.0.1:${C[$i]}" --command-timeout=2s \
              endpoint status -w json 2>/dev/null) || continue
        if python3 -c 'import json,sys; st=json.loads(sys.argv[1])[0]["Status"]; sys.exit(0 if st.get("leader", 0) == st["header"]["member_id"] else 1)' "$out"; then
            echo "$i"
            return
        fi
    done
    echo $((1 + RANDOM % N))
}

FAULTS=(kill isolate killall split stop partition link delay blackhole
        partition_up)
fault_n=0
# isolate I / rejoin I: every peer connection to or from member i
isolate() {
    local i=$1 j
    ctl partition "${P[$i]}"
    for j in $(seq 1 $N); do
        [ "$j" = "$i" ] || ctl partition "${P[$j]}" from "${ID[$i]}"
    done
}
heal_all() { ctl heal all; ctl reset all; }

# split I: cut every link between a minority (member i and the next ones,
# (N-1)/2 members) and the majority; each side keeps its inner links
split() {
    local i=$1 k a b
    MINORITY=()
    for ((k = 0; k < (N - 1) / 2; k++)); do MINORITY+=($(((i - 1 + k) % N + 1))); done
    for a in "${MINORITY[@]}"; do
        for b in $(seq 1 $N); do
            [[ " ${MINORITY[*]} " == *" $b "* ]] && continue
            ctl partition "${P[$a]}" from "${ID[$b]}"
            ctl partition "${P[$b]}" from "${ID[$a]}"
        done
    done
}

# one fault: apply, hold, undo; each ends with every member running
one_fault() {
    local kind=${FAULTS[$((fault_n % ${#FAULTS[@]}))]} i
    fault_n=$((fault_n + 1))
    i=$(pick_leader_or_any)
    case $kind in
        kill)
            log "fault: kill -9 m$i"
            kill -KILL "${PID[$i]}"; wait "${PID[$i]}" 2>/dev/null || true
            sleep 1
            log "restart m$i"
            start_member "$i"
            ;;
        stop)
            log "fault: SIGSTOP m$i for 2s (election timeout 1s)"
            kill -STOP "${PID[$i]}"; sleep 2; kill -CONT "${PID[$i]}"
            ;;
        killall)
            # a full crash: what clients saw acknowledged must survive it
            log "fault: kill -9 every member, restart them all"
            for j in $(seq 1 $N); do kill -KILL "${PID[$j]}"; done
            for j in $(seq 1 $N); do wait "${PID[$j]}" 2>/dev/null || true; done
            sleep 0.5
            for j in $(seq 1 $N); do start_member "$j"; done
            sleep 1
            ;;
        split)
            split "$i"
            log "fault: split {${MINORITY[*]}} (minority) from the others for 3s"
            sleep 0.5
            # the minority side refuses linearizable reads
            if etcdctl --endpoints="127.0.0.1:${C[${MINORITY[0]}]}" \
                   --command-timeout=1s get lin/probe >/dev/null 2>&1; then
                echo "FAIL: minority m${MINORITY[0]} served a linearizable read" >&2
                exit 1
            fi
            sleep 1.5
            heal_all
            ;;
        isolate)
            log "fault: isolate m$i from its peers for 3s"
            isolate "$i"
            sleep 0.5
            # the minority side refuses linearizable reads
            if etcdctl --endpoints="127.0.0.1:${C[$i]}" --command-timeout=1s \
                   get lin/probe >/dev/null 2>&1; then
                echo "FAIL: isolated m$i served a linearizable read" >&2
                exit 1
            fi
            sleep 1.5
            heal_all
            ;;
        link)
            local j=$((i % N + 1))
            log "fault: cut the link m$i <-> m$j for 2s"
            ctl partition "${P[$i]}" from "${ID[$j]}"
            ctl partition "${P[$j]}" from "${ID[$i]}"
            sleep 2; heal_all
            ;;
        partition)
            log "fault: partition m$i's peer route for 2s"
            ctl partition "${P[$i]}"; sleep 2; ctl heal "${P[$i]}"
            ;;
        partition_up)
            log "fault: one-way cut toward m$i for 2s"
            ctl partition "${P[$i]}" up; sleep 2; ctl heal "${P[$i]}"; ctl reset "${P[$i]}"
            ;;
        delay)
            log "fault: 150ms delay on every peer route for 2s"
            ctl delay all 150ms; sleep 2; ctl heal all
            ;;
        blackhole)
            log "fault: blackhole m$i's peer route for 2s"
            ctl blackhole "${P[$i]}"; sleep 2; ctl heal "${P[$i]}"; ctl reset "${P[$i]}"
            ;;
    esac
}

for round in $(seq 1 "$ROUNDS"); do
    H="$KT_TMP/history.$round"
    log "round $round: workload for ${DURATION}s"
    "$LINWORK" --endpoints "$ENDPOINTS" --output "$H" --duration "$DURATION" \
        --clients 6 --keys 3 --timeout 1500 --prefix "lin/r$round/" \
        2>"$KT_TMP/linwork.$round.log" &
    WPID=$!
    KT_PIDS+=("$WPID")
    end=$((SECONDS + DURATION - 4))
    sleep 1
    while [ $SECONDS -lt $end ]; do
        one_fault
        sleep 1
    done
    kill -0 "$PROXY_PID" || { echo "FAIL: keel-faultproxy died" >&2; exit 1; }
    rc=0
    wait "$WPID" || rc=$?
    cat "$KT_TMP/linwork.$round.log"
    [ $rc = 0 ] || { echo "FAIL: keel-linwork exit $rc" >&2; exit 1; }

    # converged: every member healthy, same revision, same KV hash
    wait_all_healthy 30
    conv=
    for ((t = 0; t < 50; t++)); do
        revs=$(for i in $(seq 1 $N); do
            etcdctl --endpoints="127.0.0.1:${C[$i]}" endpoint status -w json 2>/dev/null |
                python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'
        done | sort -u)
        if [ "$(echo "$revs" | wc -l)" = 1 ] && [ -n "$revs" ]; then conv=$revs; break; fi
        sleep 0.2
    done
    [ -n "$conv" ] || { echo "FAIL: revisions differ: $revs" >&2; exit 1; }
    hashes=$(for i in $(seq 1 $N); do
        etcdctl --endpoints="127.0.0.1:${C[$i]}" endpoint hashkv --rev="$conv" -w json |
            python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["HashKV"]["hash"])'
    done | sort -u)
    kt_check "round $round: the $N members have one KV hash at revision $conv" 1 "$(echo "$hashes" | wc -l)"

    if [ -n "$KEEP" ]; then
        mkdir -p "$KEEP"
        cp "$H" "$KEEP/"
        for f in "$KT_TMP"/*.log; do cp "$f" "$KEEP/$(basename "$f" .log).$round.log"; done
    fi
    rc=0
    "$LINCHECK" "$H" || rc=$?
    kt_check "round $round: history of $(wc -l <"$H") ops under $fault_n faults is linearizable" 0 "$rc"
done
