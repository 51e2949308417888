# Differential cases for keelctl vs etcdctl, sourced by diff_etcdctl.sh.
#
# One deterministic sequence: each tool runs all of it against its own fresh
# etcd 3.4 (same flags, so same cluster/member IDs and revisions). `run`
# records the command, stdout, stderr and exit code; `lease` remembers a
# lease ID so the normaliser can replace it (lease IDs are time-based).
#   run [stdin-text] -- <args...>     (CTL and ENDPOINT come from the caller)

run_in() { # stdin text, then args
    local input="$1"
    shift
    printf '### %s\n' "$*" >>"$OUT"
    printf '%s' "$input" | "$CTL" --endpoints="$ENDPOINT" "$@" \
        >"$TMP/stdout" 2>"$TMP/stderr"
    local rc=$?
    cat "$TMP/stdout" >>"$OUT"
    printf -- '--- stderr\n' >>"$OUT"
    cat "$TMP/stderr" >>"$OUT"
    printf -- '--- rc=%d\n' "$rc" >>"$OUT"
}
run() { run_in "" "$@"; }
# Same, binary stdout shown as hex (for -w protobuf).
run_hex() {
    printf '### %s\n' "$*" >>"$OUT"
    "$CTL" --endpoints="$ENDPOINT" "$@" </dev/null 2>"$TMP/stderr" |
        od -An -tx1 >>"$OUT"
    printf -- '--- stderr\n' >>"$OUT"
    cat "$TMP/stderr" >>"$OUT"
}
# Like run without stdout: cobra's usage text, which keelctl does not
# reproduce, goes there on flag errors.
run_nousage() {
    printf '### %s (stdout not compared)\n' "$*" >>"$OUT"
    "$CTL" --endpoints="$ENDPOINT" "$@" </dev/null >/dev/null 2>"$TMP/stderr"
    local rc=$?
    cat "$TMP/stderr" >>"$OUT"
    printf -- '--- rc=%d\n' "$rc" >>"$OUT"
}
# Like run, for commands that never end by themselves (watch, keep-alive).
run_for() {
    local secs="$1"
    shift
    par_run run_for_body "$(printf '### %s (for %ss)' "$*" "$secs")" \
        "$secs" "$@"
}
run_for_body() { # secs args... (stdout/stderr to the block's files)
    local secs="$1"
    shift
    timeout "$secs" "$CTL" --endpoints="$ENDPOINT" "$@" </dev/null
}
# stdin text, then stdin stays open for secs (watch -i reads until EOF).
# Cases that wait for events give them 2 s: 0.8 s was too short for
# keelctl on a loaded 2-core CI machine (events missed once).
run_pipe() {
    local input="$1" secs="$2"
    shift 2
    par_run run_pipe_body "$(printf '### %s <<< %q' "$*" "$input")" \
        "$input" "$secs" "$@"
}
run_pipe_body() { # input secs args...
    local input="$1" secs="$2"
    shift 2
    { printf '%s' "$input"; sleep "$secs"; } | "$CTL" --endpoints="$ENDPOINT" "$@"
}
# par_run FN TITLE ARGS...: one timed case as a block (title, stdout,
# stderr, rc). Between par_begin and par_end the blocks run side by side
# (the cases there only read, so their order does not matter) and par_end
# appends them in order; otherwise at once.
PAR=0
PAR_N=0
PAR_PIDS=()
par_run() {
    local fn="$1" title="$2"
    shift 2
    PAR_N=$((PAR_N + 1))
    local b="$TMP/par.$PAR_N"
    (
        "$fn" "$@" >"$b.out" 2>"$b.err"
        local rc=$?
        {
            printf '%s\n' "$title"
            cat "$b.out"
            printf -- '--- stderr\n'
            cat "$b.err"
            printf -- '--- rc=%d\n' "$rc"
        } >"$b"
    ) &
    PAR_PIDS+=($!)
    [ "$PAR" = 1 ] || par_end
}
par_begin() { PAR=1; }
par_end() {
    PAR=0
    [ ${#PAR_PIDS[@]} -gt 0 ] && wait "${PAR_PIDS[@]}"
    PAR_PIDS=()
    local i
    for ((i = PAR_FLUSHED + 1; i <= PAR_N; i++)); do
        cat "$TMP/par.$i" >>"$OUT"
    done
    PAR_FLUSHED=$PAR_N
}
PAR_FLUSHED=0
grant() { # ttl -> sets LEASE (hex) and records it for normalisation
    LEASE=$("$CTL" --endpoints="$ENDPOINT" lease grant "$1" | awk '{print $2}')
    echo "$LEASE" >>"$TMP/leases"
}

ctl_cases() {
    # -- put / get, every output format
    run put foo bar
    run put foo1 bar1
    run put foo2 bar2 --prev-kv
    run put foo2 bar22 --prev-kv -w json
    run put foo2 bar222 --prev-kv -w fields
    run put -w protobuf k0 v0
    run_in "from stdin" put kstdin
    run put zz "with space" -w json
    run get foo
    run get foo -w json
    run get foo -w fields
    run_hex get foo -w protobuf
    run get --prefix foo
    run get --prefix foo --keys-only
    run get --prefix foo --limit 2 -w json
    run get --prefix foo --order DESCEND --sort-by MODIFY
    run get --prefix foo --sort-by VALUE --order ascend
    run get --prefix foo --sort-by CREATE -w fields
    run get --prefix foo --print-value-only
    run get --from-key foo1
    run get foo foo2
    run get --rev 3 foo2 -w json
    run get --consistency s foo
    run get --hex foo
    run get --prefix "" --keys-only
    run get nothing-here -w json
    run get nothing-here -w fields
    run -w json get foo1
    # -- get/put errors
    run get
    run get --prefix --from-key a
    run get --prefix a b
    run get a --rev 100000
    run get a --order SIDEWAYS
    run get a --sort-by SIZE
    run get a --consistency x
    run get a -w xml
    run get a --print-value-only -w json
    run_nousage get a --limit x
    run_nousage get a --bogus
    run_nousage get a --prefix=maybe
    run_nousage --dial-timeout=soon get a
    run_nousage -w
    run get a -w table
    run put
    run put k
    run put --ignore-value k v
    run put --lease=zz k v
    run put --lease=1234 k v
    run put --ignore-value never-existed
    run put -w table t v
    # -- del
    run put d1 x
    run put d2 y
    run put d3 z
    run del d1
    run del d1 -w json
    run del --prefix d --prev-kv
    run put d4 w
    run del --from-key d4 -w fields --prev-kv
    run del
    run del --prefix --from-key a
    # -- txn
    run_in $'value("foo") = "bar"\n\nput t1 yes\nget foo\n\nput t1 no\n\n' txn
    run_in $'value("foo") = "nope"\n\nput t1 yes\n\nput t1 no\ndel t1 --prev-kv\n\n' txn
    run_in $'mod("foo") > "0"\nver("foo") = "1"\ncreate("foo") < "100"\n\nget t1\nput t2 "a b"\n\n\n' txn -w json
    run_in $'version("foo") != "3"\n\nget --prefix t\n\n\n' txn -w fields
    run_in $'\nput t3 x\n\n\n' txn -i
    run_in $'value("foo") = "bar\n\n\n\n' txn
    run_in $'valu("foo") = "bar"\n\n\n\n' txn
    run_in $'mod("foo") = "x"\n\n\n\n' txn
    run_in $'\nput t4\n\n\n' txn
    run_in $'\nfrob a\n\n\n' txn
    run_in $'\nput a b\n' txn
    run txn extra
    # -- leases
    grant 300
    run lease timetolive "$LEASE"
    run put --lease="$LEASE" lk lv
    run lease timetolive --keys "$LEASE"
    run lease timetolive --keys "$LEASE" -w json
    run lease timetolive "$LEASE" -w fields
    run lease list
    run lease list -w json
    run lease list -w fields
    run lease keep-alive --once "$LEASE"
    run lease keep-alive --once "$LEASE" -w json
    run_hex lease keep-alive --once "$LEASE" -w protobuf
    run_hex lease timetolive "$LEASE" -w protobuf
    run_for 1.2 lease keep-alive "$LEASE"
    run put --ignore-lease --ignore-value lk
    run lease revoke "$LEASE"
    run lease revoke "$LEASE"
    run lease timetolive "$LEASE"
    run lease keep-alive --once "$LEASE"
    run lease keep-alive "$LEASE"
    grant 6 # keepalives 2 s apart: one before the revoke at 1 s
    (sleep 1 && "$ETCDCTL" --endpoints="$ENDPOINT" lease revoke "$LEASE" \
        >/dev/null) &
    local revoker=$!
    run_for 3 lease keep-alive "$LEASE"
    wait "$revoker"
    run lease grant
    run lease grant x
    run lease revoke zz
    run lease grant 60 -w json
    run lease grant 60 -w fields
    run lease grant 60 -w table
    run_hex lease grant 60 -w protobuf
    run_hex lease list -w protobuf
    run_hex member list -w protobuf
    run_hex alarm list -w protobuf
    # -- watch: history, then a canceled (compacted) watch
    par_begin
    run_for 0.8 watch --rev 2 foo2
    run_for 0.8 watch --rev 2 --prefix foo --prev-kv -w json
    run_for 0.8 watch --rev 2 --prefix d -w fields
    run_for 0.8 watch --rev 2 foo2 -- sh -c 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE $ETCD_WATCH_REVISION"'
    run_for 0.8 watch --rev 2 foo2 -- sh -c 'exit 3'
    ETCDCTL_WATCH_KEY=foo2 run_for 0.8 watch --rev 2
    par_end
    ETCDCTL_WATCH_KEY=foo2 run watch foo2
    ETCDCTL_WATCH_RANGE_END=z run watch
    run watch
    run watch foo --
    run watch -- echo x
    run watch a b --prefix
    # -- interactive watch
    par_begin
    run_pipe $'watch --rev 2 foo2\n' 2 watch -i
    run_pipe $'\nfrob\nwatch\nwatch a b --prefix\nwatch --rev 2 --prefix foo --prev-kv\n' 2 watch -i
    run_pipe $'watch foo2\nprogress\n' 2 watch -i
    run_pipe $'watch --rev 2 foo2 -- sh -c \'echo "$ETCD_WATCH_KEY"\'\n' 2 watch -i
    run_pipe $'watch --rev 2 foo2 -- sh -c "echo $ETCD_WATCH_KEY $ETCD_WATCH_REVISION"\n' 2 watch -i
    run_pipe $'watch --rev x a\n' 0.3 watch -i
    run_pipe $'watch --bogus a\n' 0.3 watch -i
    run_pipe $'watch a --\n' 0.3 watch -i
    run_pipe $'watch -- echo hi\n' 0.3 watch -i
    par_end
    # (No case for stdin ending right after a watch line: whether etcdctl
    # prints the history before "Error reading watch request line: EOF" is
    # a race inside etcdctl itself; the run_pipe cases above cover it.)
    # -- compaction
    run compaction
    run compaction x
    run compaction 5
    run compaction --physical 6 -w json
    run compaction 3
    run get foo2 --rev 2
    run watch --rev 2 foo2
    # -- cluster, maintenance
    run member list
    run member list -w table
    run member list -w json
    run member list -w fields
    run member remove
    run member remove xyz
    run member remove 1234
    run member update 1234
    run member update 8e9e05c52164694d --peer-urls=http://localhost:2380
    run member add
    run member add learner1 --learner --peer-urls=http://127.0.0.1:1
    "$ETCDCTL" --endpoints="$ENDPOINT" member list |
        awk -F', ' '$2 == "unstarted" {print $1}' >>"$TMP/leases"
    LEARNER=$(tail -n 1 "$TMP/leases")
    run member list -w table
    run member promote "$LEARNER"
    run member remove "$LEARNER" -w json
    run member remove "$LEARNER"
    run endpoint status
    run endpoint status -w table
    run endpoint status -w json
    run endpoint status -w fields
    run endpoint status --cluster
    run endpoint hashkv
    run endpoint hashkv -w table
    run endpoint hashkv -w json
    run endpoint hashkv -w fields
    run endpoint hashkv --rev 8
    run endpoint hashkv --rev 3
    run endpoint hashkv --cluster
    run endpoint health
    run endpoint health -w json
    run endpoint health -w table
    run endpoint health -w fields
    run snapshot save "$TMP/snap.db"
    "$ETCDCTL" snapshot status "$TMP/snap.db" >/dev/null 2>&1
    printf -- '--- etcdctl snapshot status rc=%d\n' $? >>"$OUT"
    run snapshot save
    run snapshot save /nonexistent/dir/x.db
    ENDPOINT="$ENDPOINT,$ENDPOINT" run snapshot save "$TMP/snap2.db"
    run alarm list
    run alarm list -w json
    run alarm disarm
    run alarm disarm -w json
    run alarm list extra
    run defrag
    run version
    run frob
    # -- environment
    ETCDCTL_WRITE_OUT=json run get foo
    ETCDCTL_COMMAND_TIMEOUT=3s run get foo
    ETCDCTL_DIAL_TIMEOUT=x run get foo
    ETCDCTL_FOO=bar ETCDCTL_BAR_BAZ= run get foo
    ETCDCTL_ENDPOINTS=127.0.0.1:1 run get foo
    ETCDCTL_FOO=bar run version
    ETCDCTL_FOO=bar run get
    # -- a dead endpoint: the command timeout expires
    ENDPOINT="$DEAD" run get a --command-timeout=500ms
    ENDPOINT="$DEAD" run put a b --command-timeout=500ms
    ENDPOINT="$DEAD" run endpoint status --command-timeout=500ms
    ENDPOINT="$DEAD" run endpoint health --command-timeout=500ms
    ENDPOINT="$DEAD" run defrag --command-timeout=500ms
    ENDPOINT="$DEAD" run endpoint hashkv --command-timeout=500ms
    ENDPOINT="unix://$TMP/no.sock" run get a --command-timeout=500ms
    # -- users and roles
    run role add r1
    run role add r1
    run role list
    run role grant-permission r1 read k1
    run role grant-permission r1 readwrite a b -w json
    run role grant-permission r1 write p --prefix
    run role grant-permission r1 read "" --from-key
    run role grant-permission r1 frob k
    run role grant-permission r1 read k --prefix --from-key
    run role grant-permission r1 read k z --prefix
    run role grant-permission r1
    run role get r1
    run role get r1 -w fields
    run role get r1 -w json
    run role get nope
    run role revoke-permission r1 k1
    run role revoke-permission r1 a b
    run role revoke-permission r1 p --prefix
    run role revoke-permission r1 "" --from-key
    run role revoke-permission r1 zz
    run user add u1:pw1
    run_in "pw2" user add u2 --interactive=false
    run user add u3 --new-user-password=x -w json
    run user add u4 --no-password
    run user add :pw
    run user add
    run user list
    run user list -w fields
    run user list -w json
    run user grant-role u1 r1
    run user grant-role u1 nope
    run user get u1
    run user get u1 --detail
    run user get u1 -w json
    run user get u1 -w fields
    run user revoke-role u1 r1
    run user revoke-role u1 r1
    run_in "newpw" user passwd u1 --interactive=false
    run_in "newpw" user passwd nobody --interactive=false -w json
    run user passwd
    run user delete u2
    run user delete u2
    run role delete r1 -w fields
    run auth enable
    run user add root:rootpw
    run auth enable
    run auth enable extra
    run get foo --user u1:newpw
    run --user root:rootpw auth disable
    run user delete root
    # -- auth (set up and torn down with the real etcdctl)
    "$ETCDCTL" --endpoints="$ENDPOINT" user add root:secret >/dev/null
    "$ETCDCTL" --endpoints="$ENDPOINT" user grant-role root root >/dev/null
    "$ETCDCTL" --endpoints="$ENDPOINT" auth enable >/dev/null
    run get foo
    run get foo --user root:secret
    run get foo --user root --password secret -w json
    run get foo --user root:wrong
    run lease revoke 1234 --user root:wrong
    ETCDCTL_USER=root:secret run put authed yes
    "$ETCDCTL" --endpoints="$ENDPOINT" --user root:secret auth disable >/dev/null
}
