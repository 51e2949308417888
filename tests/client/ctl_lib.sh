# Head shared by the keelctl-vs-etcdctl scripts here; source it first:
#   . "$(dirname "$0")/ctl_lib.sh"
# - no ETCDCTL_* variables from the caller (both tools would read them),
#   ETCDCTL_API=3 (a v2 script sets it again after sourcing);
# - tests/integration/lib.sh: KT_TMP, KT_PIDS (killed and reaped by the EXIT
#   trap), kt_free_port, kt_start/kt_spawn; but not its set -e/pipefail:
#   these scripts count their failures themselves (FAIL, diffs);
# - TMP=$KT_TMP; INT/TERM exit 130 through the EXIT trap (a script may set
#   its own EXIT trap; it then removes $TMP itself).
for v in $(env | grep -o '^ETCDCTL_[A-Z_]*'); do unset "$v"; done
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
set +e +o pipefail
TMP=$KT_TMP
trap 'exit 130' INT TERM
