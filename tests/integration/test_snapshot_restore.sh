#!/bin/bash
# keelctl snapshot status / restore of keel snapshots.
#
#   test_snapshot_restore.sh <keel> <keelctl>
#
# 1. A keel member with history (puts, overwrites, a delete, a lease, a
#    compaction) is saved with keelctl snapshot save; `snapshot status`
#    reports the Hash RPC's hash and the server's revision.
# 2. restore into a new data dir for a new cluster, start keel on it: the
#    same keys, revision and hashkv as the source; the member and cluster
#    ids are those a new cluster with the same flags gets; writes go on from
#    the snapshot's revision.
# 3. The error paths compared with the real etcdctl 3.4 on the same files
#    (stdout, stderr with zap timestamps normalised, exit code); keel images
#    make etcdctl panic, so the valid-image cases are keelctl's only.
# 4. etcd (bbolt) images are recognised and refused with a clear message.
# 5. On a terminal, restore and save draw a progress line.
. "$(dirname "$0")/lib.sh"
KEEL=$1
KEELCTL=$2
ETCDCTL=/usr/bin/etcdctl
PY=/usr/bin/python3
cd "$KT_TMP"

kt_start src "$KEEL"
SRC=(--endpoints="$src_CLIENT")
for i in $(seq 1 30); do "$KEELCTL" "${SRC[@]}" put "k$i" "v$i" >/dev/null; done
for i in 1 2 3; do "$KEELCTL" "${SRC[@]}" put k1 "again$i" >/dev/null; done
"$KEELCTL" "${SRC[@]}" del k2 >/dev/null
"$KEELCTL" "${SRC[@]}" compaction 20 >/dev/null
LEASE=$("$KEELCTL" "${SRC[@]}" lease grant 600 | awk '{print $2}')
"$KEELCTL" "${SRC[@]}" put leased x --lease="$LEASE" >/dev/null
hash_rpc() { $PY -c 'import etcd3,sys; h,p=sys.argv[1].rsplit(":",1); print(etcd3.client(host=h,port=int(p)).hash())' "$src_CLIENT"; }
# The physical compaction runs in the background and changes the store's
# hash when it finishes: save until the hash is the same before and after.
for _ in $(seq 20); do
    HASH=$(hash_rpc)
    "$KEELCTL" "${SRC[@]}" snapshot save snap.db >save.out 2>save.err
    [ "$(hash_rpc)" = "$HASH" ] && break
    sleep 0.2
done
kt_check "snapshot save" "Snapshot saved at snap.db" "$(cat save.out)"

rev_of() { "$KEELCTL" --endpoints="$1" get x -w json | sed 's/.*"revision":\([0-9]*\).*/\1/'; }
hashkv_of() { "$KEELCTL" --endpoints="$1" endpoint hashkv -w json | sed 's/.*"hash":\([0-9]*\).*/\1/'; }
SRC_REV=$(rev_of "$src_CLIENT")
SRC_HASHKV=$(hashkv_of "$src_CLIENT")
SRC_KEYS=$("$KEELCTL" "${SRC[@]}" get "" --from-key -w json | sed 's/^{"header":{[^}]*},//')

# -- 1. status
SUM=$(sha256sum snap.db)
SIZE=$(($(stat -c %s snap.db) - 32))
kt_check "status -w json" \
    "{\"hash\":$HASH,\"revision\":$SRC_REV,\"totalKey\":$(
        "$KEELCTL" snapshot status snap.db -w json | sed 's/.*"totalKey":\([0-9]*\).*/\1/'
    ),\"totalSize\":$SIZE}" \
    "$("$KEELCTL" snapshot status snap.db -w json)"
KEYS=$("$KEELCTL" snapshot status snap.db -w json | sed 's/.*"totalKey":\([0-9]*\).*/\1/')
# 33 revisions kept after the compaction at 20 ... at least the live keys
# and the lease and member records: more than 30.
[ "$KEYS" -gt 30 ] || { echo "FAIL: total keys $KEYS" >&2; exit 1; }
kt_check "status simple" \
    "$(printf '%x, %s, %s, %s' "$HASH" "$SRC_REV" "$KEYS" "$(
        "$KEELCTL" snapshot status snap.db | awk -F', ' '{print $4}')")" \
    "$("$KEELCTL" snapshot status snap.db)"
kt_check "status fields" \
    "$(printf '"Hash" : %s\n"Revision" : %s\n"Keys" : %s\n"Size" : %s' \
        "$HASH" "$SRC_REV" "$KEYS" "$SIZE")" \
    "$("$KEELCTL" snapshot status snap.db -w fields)"
"$KEELCTL" snapshot status snap.db -w table >table.out
kt_check "status table" "$("$KEELCTL" snapshot status snap.db)" \
    "$(sed -n 4p table.out | tr -s ' ' | sed 's/^| //; s/ |$//; s/ | /, /g')"
grep -Eq '^\| +HASH +\| REVISION \| TOTAL KEYS \| TOTAL SIZE \|$' table.out ||
    { echo "FAIL: table header" >&2; cat table.out >&2; exit 1; }
set +e
"$KEELCTL" snapshot status snap.db -w protobuf >/dev/null 2>pb.err
rc=$?
set -e
kt_check "status -w protobuf" "4 Error: protobuf not supported as output format" \
    "$rc $(cat pb.err)"
kt_check "status leaves the file alone" "$SUM" "$(sha256sum snap.db)"

# -- 2. restore for a new cluster, start keel on it
NP=$(kt_free_port)
NC=$(kt_free_port)
RFLAGS=(--name restored --initial-cluster "restored=http://127.0.0.1:$NP"
    --initial-advertise-peer-urls "http://127.0.0.1:$NP"
    --initial-cluster-token tok-restore)
"$KEELCTL" snapshot restore snap.db --data-dir restored.data "${RFLAGS[@]}" \
    >restore.out 2>restore.err
kt_check "restore prints nothing on stdout" "" "$(cat restore.out)"
kt_check "restore logs as etcdctl" \
    "restoring snapshot
restored snapshot" "$(sed 's/.*"msg":"\([^"]*\)".*/\1/' restore.err)"
"$KEEL" --data-dir restored.data "${RFLAGS[@]}" \
    --listen-client-urls "http://127.0.0.1:$NC" \
    --advertise-client-urls "http://127.0.0.1:$NC" \
    --listen-peer-urls "http://127.0.0.1:$NP" >restored.log 2>&1 &
KT_PIDS+=($!)
kt_wait_http "http://127.0.0.1:$NC/health" 30
DST=(--endpoints="127.0.0.1:$NC")
kt_check "restored revision" "$SRC_REV" "$(rev_of "127.0.0.1:$NC")"
kt_check "restored hashkv" "$SRC_HASHKV" "$(hashkv_of "127.0.0.1:$NC")"
kt_check "restored keys" "$SRC_KEYS" \
    "$("$KEELCTL" "${DST[@]}" get "" --from-key -w json | sed 's/^{"header":{[^}]*},//')"
kt_check "restored compaction" \
    "Error: etcdserver: mvcc: required revision has been compacted" \
    "$("$KEELCTL" "${DST[@]}" get k1 --rev=5 2>&1 | grep ^Error)"
kt_check "restored lease" "$LEASE" \
    "$("$KEELCTL" "${DST[@]}" lease list | tail -n +2)"
"$KEELCTL" "${DST[@]}" put after restore >/dev/null
kt_check "writes continue from the snapshot revision" "$((SRC_REV + 1))" \
    "$(rev_of "127.0.0.1:$NC")"
# The ids a brand new cluster with the same flags gets.
NP2=$(kt_free_port)
NC2=$(kt_free_port)
"$KEEL" --data-dir fresh.data --name restored \
    --initial-cluster "restored=http://127.0.0.1:$NP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$NP" \
    --initial-cluster-token tok-restore \
    --listen-client-urls "http://127.0.0.1:$NC2" \
    --advertise-client-urls "http://127.0.0.1:$NC2" \
    --listen-peer-urls "http://127.0.0.1:$NP2" >fresh.log 2>&1 &
KT_PIDS+=($!)
kt_wait_http "http://127.0.0.1:$NC2/health" 30
ids() { "$KEELCTL" --endpoints="$1" endpoint status -w json |
    sed 's/.*"cluster_id":\([0-9]*\),"member_id":\([0-9]*\).*/\1 \2/'; }
kt_check "member and cluster ids of the new cluster" "$(ids "127.0.0.1:$NC2")" \
    "$(ids "127.0.0.1:$NC")"
kt_check "member list" \
    "$(printf '%x' "$(ids "127.0.0.1:$NC" | cut -d' ' -f2)"), started, restored, http://127.0.0.1:$NP, http://127.0.0.1:$NC, false" \
    "$("$KEELCTL" "${DST[@]}" member list)"

# A raw copy of a data dir's db has no trailer: --skip-hash-check.
cp restored.data/member/snap/db raw.db
set +e
"$KEELCTL" snapshot restore raw.db --data-dir raw1.data >/dev/null 2>raw.err
rc=$?
set -e
kt_check "raw db without --skip-hash-check" \
    "1 Error: snapshot missing hash but --skip-hash-check=false" \
    "$rc $(grep Error raw.err)"
[ ! -e raw1.data ] || { echo "FAIL: failed restore left raw1.data" >&2; exit 1; }
"$KEELCTL" snapshot restore raw.db --data-dir raw2.data --skip-hash-check 2>/dev/null
[ -s raw2.data/member/snap/db ] && [ -s raw2.data/member/keel-identity ] &&
    ls raw2.data/member/wal/*.wal >/dev/null ||
    { echo "FAIL: --skip-hash-check restore" >&2; exit 1; }
echo "ok: --skip-hash-check restores a raw db copy"

# -- backup of the running source's data dir: a new single-member cluster
"$KEELCTL" backup --data-dir "$src_DIR" --backup-dir backup.data >bk.out 2>&1 ||
    { echo "FAIL: backup: $(cat bk.out)" >&2; exit 1; }
kt_check "backup prints nothing" "" "$(cat bk.out)"
BP=$(kt_free_port)
BC=$(kt_free_port)
"$KEEL" --data-dir backup.data --name bk \
    --initial-cluster "bk=http://127.0.0.1:$BP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$BP" \
    --listen-client-urls "http://127.0.0.1:$BC" \
    --advertise-client-urls "http://127.0.0.1:$BC" \
    --listen-peer-urls "http://127.0.0.1:$BP" >backup.log 2>&1 &
KT_PIDS+=($!)
kt_wait_http "http://127.0.0.1:$BC/health" 30
kt_check "backup revision" "$SRC_REV" "$(rev_of "127.0.0.1:$BC")"
kt_check "backup hashkv" "$SRC_HASHKV" "$(hashkv_of "127.0.0.1:$BC")"
kt_check "backup keys" "$SRC_KEYS" \
    "$("$KEELCTL" --endpoints="127.0.0.1:$BC" get "" --from-key -w json | sed 's/^{"header":{[^}]*},//')"
[ "$(ids "127.0.0.1:$BC")" != "$(ids "$src_CLIENT")" ] ||
    { echo "FAIL: backup kept the source's ids" >&2; exit 1; }
echo "ok: backup has new ids"
"$KEELCTL" --endpoints="127.0.0.1:$BC" put after-backup x >/dev/null
kt_check "backup takes writes" "$((SRC_REV + 1))" "$(rev_of "127.0.0.1:$BC")"
set +e
"$KEELCTL" backup --data-dir "$src_DIR" --backup-dir backup.data >/dev/null 2>bk2.err
rc1=$?
"$KEELCTL" backup --data-dir nonexistent.data --backup-dir bk3.data >/dev/null 2>bk3.err
rc2=$?
set -e
kt_check "backup into a member's dir" \
    '1 Error: backup-dir "backup.data" already holds a member' "$rc1 $(cat bk2.err)"
kt_check "backup of a missing data dir" \
    "1 Error: open nonexistent.data/member/snap/db: no such file or directory" \
    "$rc2 $(cat bk3.err)"
[ ! -e bk3.data ] || { echo "FAIL: failed backup left bk3.data" >&2; exit 1; }

# -- 3. error paths, keelctl vs etcdctl on the same files
cp snap.db bad.db
printf 'X' | dd of=bad.db bs=1 seek=5000 conv=notrunc 2>/dev/null
head -c 4000 /dev/urandom >junk4k.db
head -c 6000 /dev/urandom >junk6k.db
mkdir exists.data
# The data dirs of the two tools differ in their prefix only (etcdctl
# leaves a failed restore's data dir behind, keelctl removes it).
norm() { sed -E 's/"ts":[0-9.e+]+/"ts":TS/; s/\b(etcd|keel)-(bad|none|name|x)\b/D-\2/g'; }
cases() { # tool prefix
    local ctl=$1 p=$2
    local -a c=(
        "snapshot restore"
        "snapshot restore snap.db extra"
        "snapshot restore bad.db --data-dir $p-bad"
        "snapshot restore nonexistent.db --data-dir $p-none"
        "snapshot restore snap.db --data-dir exists.data"
        "snapshot restore snap.db --name foo --data-dir $p-name"
        "snapshot restore snap.db --initial-cluster default=ftp://a:1 --data-dir $p-x"
        "snapshot restore snap.db --initial-cluster default=http://127.0.0.1:1 --data-dir $p-x"
        "snapshot restore snap.db --initial-advertise-peer-urls http://127.0.0.1:1 --data-dir $p-x"
        "snapshot restore snap.db --initial-cluster default=http://localhost:2380,b=http://localhost:2380 --data-dir $p-x"
        "snapshot restore snap.db --initial-advertise-peer-urls http://a --data-dir $p-x"
        "snapshot restore snap.db --initial-advertise-peer-urls http://a:1/x --data-dir $p-x"
        "snapshot status"
        "snapshot status snap.db extra"
        "snapshot status nonexistent.db"
        "snapshot status junk4k.db"
        "snapshot status junk6k.db"
    )
    for args in "${c[@]}"; do
        echo "### $args" | norm
        # shellcheck disable=SC2086
        "$ctl" $args 2>&1 </dev/null | norm
        echo "rc=${PIPESTATUS[0]}"
    done
}
set +e
cases "$ETCDCTL" etcd >etcdctl.txt
cases "$KEELCTL" keel >keelctl.txt
set -e
if ! diff -u etcdctl.txt keelctl.txt; then
    echo "FAIL: keelctl snapshot restore/status errors differ from etcdctl" >&2
    exit 1
fi
echo "ok: $(grep -c '^###' keelctl.txt) error cases identical to etcdctl"

# -- 4. an etcd image
kt_start etcd /usr/bin/etcd
"$ETCDCTL" --endpoints="$etcd_CLIENT" put a b >/dev/null
"$ETCDCTL" --endpoints="$etcd_CLIENT" snapshot save etcd.db >/dev/null 2>&1
set +e
"$KEELCTL" snapshot status etcd.db >/dev/null 2>etcd-status.err
rc1=$?
"$KEELCTL" snapshot restore etcd.db --data-dir etcdimg.data >/dev/null 2>etcd-restore.err
rc2=$?
set -e
kt_check "status of an etcd image" \
    "1 Error: etcd.db is an etcd (bbolt) snapshot, not a keel one: use etcdctl snapshot status for it (keelctl reads keel's LMDB snapshots)" \
    "$rc1 $(cat etcd-status.err)"
kt_check "restore of an etcd image" \
    "1 Error: etcd.db is an etcd (bbolt) snapshot, not a keel one: use etcdctl snapshot restore for it (keelctl reads keel's LMDB snapshots)" \
    "$rc2 $(grep Error etcd-restore.err)"
[ ! -e etcdimg.data ] || { echo "FAIL: refused restore left its data dir" >&2; exit 1; }

# -- 5. progress on a terminal (script(1) gives the command a pty)
script -qec "$KEELCTL snapshot restore snap.db --data-dir tty.data" /dev/null >tty.out
grep -q 'restoring \[=*>* *\] .* / .*/s' tty.out ||
    { echo "FAIL: no progress bar on a terminal:" >&2; cat -v tty.out >&2; exit 1; }
script -qec "$KEELCTL --endpoints=$src_CLIENT snapshot save tty.db" /dev/null >tty2.out
grep -q 'downloading .*B .*B/s' tty2.out ||
    { echo "FAIL: no save progress on a terminal:" >&2; cat -v tty2.out >&2; exit 1; }
grep -q 'restoring \[' restore.err save.err &&
    { echo "FAIL: progress drawn without a terminal" >&2; exit 1; }
echo "ok: progress only on a terminal"
