# Head shared by the keelctl-vs-etcdctl scripts here; source it first:
#   . "$(dirname "$0")/ctl_lib.sh"
# - no ETCDCTL_* variables from the caller (both tools would read them),
#   ETCDCTL_API=3 (a v2 script sets it again after sourcing);
# - tests/integration/lib.sh: KT_TMP, KT_PIDS (killed and reaped by the EXIT
#   trap), kt_free_port, kt_start/kt_spawn; but not its set -e/pipefail:
#   these scripts count their failures themselves (FAIL, diffs);
# - TMP=$KT_TMP; INT/TERM exit 130 through the EXIT trap (kt_cleanup, or
#   ctl_cleanup below, which ends in kt_cleanup).
for v in $(env | grep -o '^ETCDCTL_[A-Z_]*'); do unset "$v"; done
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
set +e +o pipefail
TMP=$KT_TMP
trap 'exit 130' INT TERM

# CTL_PID: the one server a script runs at a time (set it after starting
# one). ctl_stop stops it gracefully (SIGTERM, then reaped); scripts that use
# it set `trap ctl_cleanup EXIT`, which stops it before kt_cleanup.
CTL_PID=
ctl_stop() {
    if [ -n "$CTL_PID" ]; then
        kill "$CTL_PID"
        wait "$CTL_PID" 2>/dev/null
        CTL_PID=
    fi
}
ctl_cleanup() {
    local rc=$?
    [ -n "$CTL_PID" ] && kill "$CTL_PID" 2>/dev/null && wait "$CTL_PID" 2>/dev/null
    (exit "$rc")
    kt_cleanup
}

# ctl_make_certs: in the current directory, with the openssl CLI: a CA
# (ca.crt/key), a second CA that signed nothing we use (otherca), a server
# certificate for localhost/127.0.0.1 and a client certificate (CN root).
ctl_make_certs() {
    ctl_ca() { openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" \
        -out "$1.crt" -days 2 -subj "/CN=$1" 2>/dev/null; }
    ctl_leaf() { # name cn san
        openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" \
            -subj "/CN=$2" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
        openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out "$1.crt" -days 2 -extfile "$1.ext" 2>/dev/null
    }
    ctl_ca ca && ctl_ca otherca &&
        ctl_leaf server localhost "DNS:localhost,IP:127.0.0.1" &&
        ctl_leaf client root "DNS:client"
}
