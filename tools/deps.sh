#!/usr/bin/env bash
# Install what keel needs to build and test, on Debian 12, only if missing.
# Called by `make build/run/test`; safe to run again (does nothing when all
# packages are present).
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config git
  libuv1-dev libprotobuf-c-dev protobuf-c-compiler liblmdb-dev lmdb-utils
  libcmocka-dev libnghttp2-dev libssl-dev libjansson-dev node-llhttp
  libcrypt-dev libyaml-dev
  clang libclang-rt-14-dev valgrind curl iproute2 procps openssl
  etcd-client etcd-server golang-etcd-server-dev
  python3 python3-etcd3 python3-etcd3gw
)
missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=
if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
