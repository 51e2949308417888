#!/bin/sh
# Capture the JSON gateway's exact answers from a real etcd 3.4 (the Debian
# etcd-server 3.4.23 binary) as golden files for test_json_pb.
#
#   tests/server_json_pb/testdata/capture.sh [etcd-binary]
#
# Starts a throwaway single-member etcd on free loopback ports, runs every
# case below with curl, writes cases/<name>.case and stops etcd. A .case
# file is:
#   line 1  the URL path
#   line 2  the HTTP status etcd answered
#   line 3  the request body (one line)
#   line 4+ the response body as sent (streams: one {"result":...} per line)
# Values (ids, revisions, hashes, sizes) are whatever etcd printed; the tests
# only compare shapes and bytes after a decode/encode round trip, so a new
# capture with other ids still passes.
set -eu
ETCD=${1:-/usr/bin/etcd}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/cases
TMP=$(mktemp -d)
ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
CP=${ports% *}
PP=${ports#* }
E=http://127.0.0.1:$CP
"$ETCD" --name default --data-dir "$TMP/data" \
    --listen-client-urls "$E" --advertise-client-urls "$E" \
    --listen-peer-urls "http://127.0.0.1:$PP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PP" \
    --initial-cluster "default=http://127.0.0.1:$PP" \
    --quota-backend-bytes 8000000 >"$TMP/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$TMP"' EXIT INT TERM
i=0
while ! curl -sf "$E/health" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { cat "$TMP/log"; exit 1; }; sleep 0.1
done
rm -rf "$OUT"; mkdir -p "$OUT"

# case NAME PATH BODY
case_() {
    name=$1 path=$2 body=$3
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' -XPOST "$E$path" -d "$body")
    { printf '%s\n%s\n%s\n' "$path" "$code" "$body"; cat "$TMP/body"; echo; } >"$OUT/$name.case"
}
# stream NAME PATH BODY SECONDS [command to run meanwhile]
stream() {
    name=$1 path=$2 body=$3 secs=$4
    shift 4
    : >"$TMP/shdr"
    (timeout "$secs" curl -s -N -o "$TMP/sbody" -D "$TMP/shdr" -XPOST \
        "$E$path" -d "$body" || true) &
    cpid=$!
    sleep 0.5
    [ $# -gt 0 ] && "$@"
    wait $cpid
    code=$(sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p' "$TMP/shdr")
    { printf '%s\n%s\n%s\n' "$path" "$code" "$body"; cat "$TMP/sbody"; } >"$OUT/$name.case"
}
q() { curl -s -o /dev/null -XPOST "$E$1" -d "$2"; }

# --- KV
case_ put_foo /v3/kv/put '{"key":"Zm9v","value":"YmFy"}'
case_ put_prevkv /v3/kv/put '{"key":"Zm9v","value":"YmF6","prev_kv":true}'
case_ range_foo /v3/kv/range '{"key":"Zm9v"}'
case_ range_camel /v3/kv/range '{"key":"AA==","rangeEnd":"AA==","sortOrder":"DESCEND","sortTarget":2,"limit":"10"}'
case_ range_keys_only /v3/kv/range '{"key":"AA==","range_end":"AA==","keys_only":true}'
case_ range_count_only /v3/kv/range '{"key":"AA==","range_end":"AA==","count_only":true}'
case_ range_v3beta /v3beta/kv/range '{"key":"Zm9v","serializable":true}'
case_ range_missing /v3/kv/range '{"key":"bm9wZQ=="}'
case_ put_lt_gt /v3/kv/put '{"key":"PGE+","value":"PD4mIPCfkoki"}'
case_ range_all /v3/kv/range '{"key":"AA==","range_end":"AA=="}'
case_ deleterange /v3/kv/deleterange '{"key":"PGE+","prev_kv":true}'
case_ txn_success /v3/kv/txn '{"compare":[{"target":"VERSION","result":"GREATER","key":"Zm9v","version":"0"}],"success":[{"request_put":{"key":"Zm9v","value":"cXV4","prev_kv":true}},{"request_range":{"key":"Zm9v"}},{"request_delete_range":{"key":"bm9uZQ=="}},{"request_txn":{"success":[{"request_range":{"key":"Zm9v","keys_only":true}}]}}]}'
case_ txn_failure /v3/kv/txn '{"compare":[{"target":"VALUE","key":"Zm9v","value":"bm8="}],"success":[{"request_put":{"key":"Zm9v","value":"eWVz"}}],"failure":[{"requestRange":{"key":"Zm9v"}}]}'
case_ txn_empty /v3/kv/txn '{}'
q /v3/kv/put '{"key":"Yw==","value":"MQ=="}'
q /v3/kv/put '{"key":"Yw==","value":"Mg=="}'
case_ compaction /v3/kv/compaction '{"revision":"3","physical":true}'

# --- errors from etcd's server
case_ err_empty_key /v3/kv/put '{}'
case_ err_compacted /v3/kv/range '{"key":"Zm9v","revision":"2"}'
case_ err_future /v3/kv/range '{"key":"Zm9v","revision":"100000"}'
case_ err_txn_no_key /v3/kv/txn '{"success":[{}]}'
case_ err_lease_not_found /v3/lease/revoke '{"ID":"999"}'
case_ err_user_not_found /v3/auth/user/get '{"name":"nobody"}'
case_ err_auth_not_enabled /v3/auth/authenticate '{"name":"nobody","password":"x"}'

# --- errors decoding the request (the gateway's own)
case_ dec_truncated /v3/kv/range '{"key":"Zm9v'
case_ dec_trailing_comma /v3/kv/range '{"key":"Zm9v",}'
case_ dec_missing_comma /v3/kv/range '{"key":"Zm9v" "x"}'
case_ dec_bare_key /v3/kv/range '{key:1}'
case_ dec_no_colon /v3/kv/range '{"key" 1}'
case_ dec_array_elem /v3/kv/txn '{"compare":[{} {}]}'
case_ dec_bad_literal /v3/kv/range '{"key":"Zm9v","keys_only":tru}'
case_ dec_bad_number /v3/kv/range '{"key":"Zm9v","limit":-x}'
case_ dec_bad_fraction /v3/kv/range '{"key":"Zm9v","limit":1.x}'
case_ dec_bad_exponent /v3/kv/range '{"key":"Zm9v","limit":1ex}'
case_ dec_bad_escape /v3/kv/range '{"key":"Zm9v\q"}'
case_ dec_bad_u_escape /v3/kv/range '{"key":"\u12x4"}'
case_ dec_control_char "/v3/kv/range" "$(printf '{"key":"a\tb"}')"
case_ dec_not_object_array /v3/kv/range '[1]'
case_ dec_not_object_string /v3/kv/range '"x"'
case_ dec_bad_value_start /v3/kv/range '{"key":}'
case_ dec_base64_bad_char /v3/kv/range '{"key":"Zm9v!"}'
case_ dec_base64_bad_pad /v3/kv/range '{"key":"Zg=x"}'
case_ dec_base64_one_char /v3/kv/range '{"key":"Zm9vY"}'
case_ dec_base64_trailing /v3/kv/range '{"key":"Zg==Zg=="}'
case_ dec_bytes_number /v3/kv/range '{"key":1}'
case_ dec_int_float /v3/kv/range '{"key":"Zm9v","limit":1.5}'
case_ dec_int_exp /v3/kv/range '{"key":"Zm9v","limit":1e2}'
case_ dec_int_bool /v3/kv/range '{"key":"Zm9v","limit":true}'
case_ dec_int_overflow /v3/kv/range '{"key":"Zm9v","limit":9223372036854775808}'
case_ dec_int_string_junk /v3/kv/range '{"key":"Zm9v","limit":"5x"}'
case_ dec_int_string_empty /v3/kv/range '{"key":"Zm9v","limit":""}'
case_ dec_int_string_alpha /v3/kv/range '{"key":"Zm9v","limit":"abc"}'
case_ dec_int_array /v3/kv/range '{"key":"Zm9v","limit":[1]}'
case_ dec_uint_negative2 /v3/cluster/member/remove '{"ID":-1}'
case_ dec_uint_string_negative /v3/cluster/member/remove '{"ID":"-1"}'
case_ dec_int32_overflow /v3/kv/range '{"key":"Zm9v","sort_order":2147483648}'
case_ dec_bool_string /v3/kv/range '{"key":"Zm9v","serializable":"true"}'
case_ dec_bool_number /v3/kv/range '{"key":"Zm9v","serializable":1}'
case_ dec_enum_unknown /v3/kv/range '{"key":"Zm9v","sort_order":"NOPE"}'
case_ dec_enum_quoted_number /v3/kv/range '{"key":"Zm9v","sort_order":"1"}'
case_ dec_enum_bool /v3/kv/range '{"key":"Zm9v","sort_order":true}'
case_ dec_enum_nested /v3/kv/txn '{"compare":[{"result":"BIGGER"}]}'
case_ dec_enum_mvcc /v3/kv/range '{"key":"Zm9v","sort_target":"KEY","sort_order":1.0}'
case_ dec_string_number /v3/auth/user/get '{"name":5}'
case_ dec_message_string /v3/kv/txn '{"success":[{"request_put":"x"}]}'
case_ dec_repeated_object /v3/kv/txn '{"compare":{}}'
case_ dec_repeated_elem /v3/watch '{"create_request":{"key":"Zm9v","filters":["NOPUT","NOPE"]}}'
case_ dec_watch_bad_key /v3/watch '{"create_request":{"key":1}}'
case_ dec_keepalive_bad /v3/lease/keepalive '{"ID":"x"}'
case_ dec_unknown_field /v3/kv/range '{"key":"Zm9v","bogus":{"deep":[1,2,{"x":null}]}}'
case_ dec_nulls /v3/kv/range '{"key":"Zm9v","range_end":null,"limit":null,"sort_order":null,"keys_only":null}'
case_ dec_trailing_garbage /v3/kv/range '{"key":"Zm9v"} }}garbage'
case_ dec_empty_body /v3/kv/range ''
case_ dec_whitespace_body /v3/kv/range '   '
case_ dec_null_body /v3/kv/range 'null'
case_ dec_int_as_string /v3/kv/range '{"key":"Zm9v","limit":"1","revision":"-0"}'
case_ dec_dup_keys /v3/kv/range '{"key":"bm9wZQ==","key":"Zm9v"}'
case_ dec_camel_wins /v3/kv/range '{"keysOnly":false,"keys_only":true,"key":"Zm9v"}'
case_ dec_unicode_escape_key /v3/kv/range '{"\u006bey":"Zm9v"}'
case_ dec_escaped_base64 /v3/kv/range '{"key":"Zm\u0039v"}'
case_ dec_base64_newline /v3/kv/range '{"key":"Zm9v\nYmFy\r\n"}'

# --- lease
case_ lease_grant /v3/lease/grant '{"TTL":"60","ID":"4660"}'
case_ lease_grant_numbers /v3/lease/grant '{"TTL":30,"ID":4661}'
case_ err_lease_exists /v3/lease/grant '{"TTL":30,"ID":4661}'
q /v3/kv/put '{"key":"bGVhc2Vk","value":"eA==","lease":"4660"}'
case_ lease_ttl /v3/lease/timetolive '{"ID":"4660","keys":true}'
case_ lease_ttl_kv /v3/kv/lease/timetolive '{"ID":"4661"}'
case_ lease_leases /v3/lease/leases '{}'
case_ lease_leases_kv /v3/kv/lease/leases '{}'
case_ lease_revoke /v3/kv/lease/revoke '{"ID":"4661"}'
stream keepalive /v3/lease/keepalive '{"ID":"4660"}' 2
stream keepalive_unknown /v3/lease/keepalive '{"ID":"999"}' 2

# --- watch
stream watch_events /v3/watch '{"create_request":{"key":"d2F0Y2g=","prev_kv":true}}' 3 \
    sh -c "curl -s -o /dev/null -XPOST $E/v3/kv/put -d '{\"key\":\"d2F0Y2g=\",\"value\":\"MQ==\"}';
           curl -s -o /dev/null -XPOST $E/v3/kv/put -d '{\"key\":\"d2F0Y2g=\",\"value\":\"Mg==\"}';
           curl -s -o /dev/null -XPOST $E/v3/kv/deleterange -d '{\"key\":\"d2F0Y2g=\"}'"
stream watch_compacted /v3/watch '{"create_request":{"key":"Zm9v","start_revision":"2"}}' 2
stream watch_ids /v3/watch '{"create_request":{"key":"Zm9v","watch_id":"7","progress_notify":true,"filters":["NOPUT"]}}{"progress_request":{}}{"cancel_request":{"watch_id":"7"}}' 2
stream watch_garbage_after /v3/watch '{"create_request":{"key":"Zm9v"}} xx' 2

# --- cluster, maintenance
case_ member_list /v3/cluster/member/list '{}'
case_ member_add_learner /v3/cluster/member/add '{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}'
case_ status /v3/maintenance/status '{}'
case_ alarm_get /v3/maintenance/alarm '{"action":"GET"}'
case_ alarm_empty /v3/maintenance/alarm '{}'
case_ hash /v3/maintenance/hash '{}'
case_ defragment /v3/maintenance/defragment '{}'

# --- auth (strings that need escaping)
case_ user_add /v3/auth/user/add '{"name":"a<b>&c\"d\\e\u2028f\u00e9\u0001g","password":"p"}'
case_ user_add_root /v3/auth/user/add '{"name":"root","password":"r"}'
case_ role_add /v3/auth/role/add '{"name":"root"}'
case_ role_add_rw /v3/auth/role/add '{"name":"rw"}'
case_ role_grant /v3/auth/role/grant '{"name":"rw","perm":{"permType":"READWRITE","key":"YQ==","range_end":"Yg=="}}'
case_ role_get /v3/auth/role/get '{"role":"rw"}'
case_ user_grant /v3/auth/user/grant '{"user":"root","role":"root"}'
case_ user_list /v3/auth/user/list '{}'
case_ user_get /v3/auth/user/get '{"name":"root"}'
case_ role_list /v3/auth/role/list '{}'

# --- lock, election
case_ lock /v3/lock/lock '{"name":"bXlsb2Nr","lease":"4660"}'
case_ election_campaign /v3/election/campaign '{"name":"ZWxl","lease":"4660","value":"djE="}'
case_ election_leader /v3/election/leader '{"name":"ZWxl"}'
case_ err_election_no_leader /v3/election/leader '{"name":"bm9uZQ=="}'

stream election_observe /v3/election/observe '{"name":"ZWxl"}' 2
case_ election_proclaim /v3/election/proclaim '{"leader":{"name":"ZWxl","key":"ZWxlLzEyMzQ=","rev":"'"$(curl -s -XPOST $E/v3/election/leader -d '{"name":"ZWxl"}' | sed 's/.*"create_revision":"\([0-9]*\)".*/\1/')"'","lease":"4660"},"value":"djI="}'
case_ election_resign /v3/election/resign '{"leader":{"name":"ZWxl","key":"ZWxlLzEyMzQ=","rev":"1","lease":"4660"}}'
case_ unlock /v3/lock/unlock '{"key":"bXlsb2NrLzEyMzQ="}'
case_ err_promote_not_ready /v3/cluster/member/promote '{"ID":"'"$(curl -s -XPOST $E/v3/cluster/member/list -d '{}' | sed 's/.*"ID":"\([0-9]*\)","peerURLs":\["http:\/\/127.0.0.1:1"\].*/\1/')"'"}'
case_ err_bad_transferee /v3/maintenance/transfer-leadership '{"targetID":"12345"}'
stream snapshot /v3/maintenance/snapshot '{}' 3

# --- NOSPACE: fill the small quota until etcd raises the alarm
for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
    { printf '{"key":"%s","value":"' "$(printf 'big%d' $n | base64)"
      head -c 900000 /dev/urandom | base64 -w0; printf '"}'; } >"$TMP/big"
    code=$(curl -s -o "$TMP/body" -w '%{http_code}' -XPOST "$E/v3/kv/put" \
        --data-binary @"$TMP/big")
    [ "$code" != 200 ] && break
done
case_ err_nospace /v3/kv/put '{"key":"eA==","value":"eA=="}'
case_ alarm_list /v3/maintenance/alarm '{"action":"GET"}'
case_ status_alarm /v3/maintenance/status '{}'
case_ alarm_disarm /v3/maintenance/alarm '{"action":"DEACTIVATE","memberID":"'"$(curl -s -XPOST $E/v3/maintenance/status -d '{}' | sed 's/.*"leader":"\([0-9]*\)".*/\1/')"'","alarm":"NOSPACE"}'

# --- auth enabled (last: everything after needs a token)
case_ auth_enable /v3/auth/enable '{}'
case_ authenticate /v3/auth/authenticate '{"name":"root","password":"r"}'
case_ err_auth_bad_password /v3/auth/authenticate '{"name":"root","password":"wrong"}'
case_ err_auth_no_token /v3/kv/put '{"key":"Zm9v","value":"YmFy"}'

# --- routing
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -XPOST "$E/v3/kv/nothing" -d '{}')
{ printf '/v3/kv/nothing\n%s\n{}\n' "$code"; cat "$TMP/body"; } >"$OUT/route_not_found.case"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' "$E/v3/kv/range")
{ printf '/v3/kv/range\n%s\nGET\n' "$code"; cat "$TMP/body"; } >"$OUT/route_get.case"
code=$(curl -s -o "$TMP/body" -w '%{http_code}' -XPOST "$E/v3alpha/kv/range" -d '{}')
{ printf '/v3alpha/kv/range\n%s\n{}\n' "$code"; cat "$TMP/body"; } >"$OUT/route_v3alpha.case"
echo "captured $(ls "$OUT" | wc -l) cases into $OUT"
