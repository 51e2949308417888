#!/bin/sh
# keel vs etcd 3.4 on this machine: see bench/compare.py (--quick for a smoke
# run, --full for 1M keys in every round, --parts one,big,three to choose).
# Builds keel and keel-bench in build-bench first.
#   bench/compare.sh [--quick|--full] [--rounds N] [--parts P] [--out DIR]
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$root/build-bench" ]; then
    cmake -S "$root" -B "$root/build-bench" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$root/build-bench" -j2 --target keel keel-bench >/dev/null
exec /usr/bin/python3 "$root/bench/compare.py" "$@"
