#!/bin/bash
# keelctl's shell completion vs etcdctl 3.4 (cobra): the `completion <shell>`
# scripts (etcdctl's with etcdctl/ETCDCTL turned into keelctl/KEELCTL, as
# they must complete keelctl), their usage errors, and the hidden
# `__complete` / `__completeNoDesc` callbacks (sub-commands, flags, flag
# values, parse errors): stdout, stderr and exit code must be identical.
#
#   test_completion.sh <keelctl>
set -u
KEELCTL=${1:?usage: test_completion.sh <keelctl>}
ETCDCTL=/usr/bin/etcdctl
for v in $(env | grep -o '^ETCDCTL_[A-Z_]*'); do unset "$v"; done
export ETCDCTL_API=3
TMP=$(mktemp -d /tmp/keelctl-compl.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
cd "$TMP" || exit 1

# Each case is a bash word list ('' is an empty partial word).
cases=(
    "completion bash" "completion zsh" "completion fish" "completion powershell"
    "completion bash --no-descriptions" "completion zsh --no-descriptions"
    "completion fish --no-descriptions=true"
    "completion powershell --no-descriptions"
    "completion" "completion frob" "completion bash zsh" "completion fish x y"
    "completion zsh --help" "completion bash --frob"
    "__complete ''" "__completeNoDesc ''" "__complete g" "__completeNoDesc me"
    "__complete get ''" "__complete lease ''" "__complete lease t"
    "__complete lease frob ''" "__complete completion ''" "__complete help ''"
    "__complete help lease ''" "__complete help frob ''" "__complete frob ''"
    "__complete --w" "__complete -" "__completeNoDesc -" "__complete get --"
    "__complete get --pr" "__complete get --prefix --pr" "__complete get k --pr"
    "__complete get --hex --w" "__complete --endpoints=a,b get --e"
    "__complete --endpoints x ''" "__complete --endpoints x le"
    "__complete endpoint status --c" "__complete endpoint --c"
    "__complete get --write-out ''" "__complete get -w ''"
    "__complete get --write-out=" "__complete get --write-out=j"
    "__complete get --bogus ''" "__complete get --bogus=x" "__complete get -x ''"
    "__complete get -h ''" "__complete get --help --pr" "__complete get --prefix ''"
    "__complete put k v ''" "__complete snapshot save ''" "__complete member ''"
    "__complete user add --n" "__complete frob --pr" "__complete get -- --pr"
    "__complete --debug ''" "__complete -w json get --l" "__complete lock --ttl ''"
    "__complete get --limit=5 --l" "__complete elect -l ''" "__complete help help ''"
    "__complete -d x ve" "__completeNoDesc get -- ''"
)
n=0
fail=0
for c in "${cases[@]}"; do
    eval "set -- $c"
    "$ETCDCTL" "$@" >e.out 2>e.err </dev/null
    r1=$?
    # a script names the program it completes; usage texts, errors and
    # command descriptions name etcdctl, as keelctl's help does
    case "$c" in
    "completion "*) [ $r1 = 0 ] && ! grep -q '^USAGE:' e.out &&
        sed -i 's/etcdctl/keelctl/g; s/ETCDCTL/KEELCTL/g' e.out ;;
    esac
    "$KEELCTL" "$@" >k.out 2>k.err </dev/null
    r2=$?
    n=$((n + 1))
    if ! cmp -s e.out k.out || ! cmp -s e.err k.err || [ "$r1" != "$r2" ]; then
        echo "FAIL: keelctl $c (exit $r2, etcdctl $r1)"
        diff e.out k.out | head -10
        diff e.err k.err | head -5
        fail=1
    fi
done
# The scripts are not empty and call keelctl back.
for sh in bash zsh fish powershell; do
    if ! "$KEELCTL" completion $sh | grep -q '__complete'; then
        echo "FAIL: completion $sh does not call __complete"
        fail=1
    fi
done
# bash runs keelctl's script: its completion function calls keelctl back
# (bash-completion's _get_comp_words_by_ref stubbed: the package may be
# missing; compopt complains outside a real completion, stderr is dropped).
got=$(PATH="$(dirname "$(readlink -f "$KEELCTL")"):$PATH" bash -c '
    _get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD; }
    source <(keelctl completion bash)
    for line in "keelctl lease t" "keelctl get --pr" "keelctl mem" "keelctl get k "; do
        read -ra COMP_WORDS <<<"$line"
        [ "${line% }" != "$line" ] && COMP_WORDS+=("")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE=$line
        COMP_POINT=${#line}; COMPREPLY=()
        __start_keelctl keelctl "${COMP_WORDS[COMP_CWORD]}" \
            "${COMP_WORDS[COMP_CWORD-1]}"
        echo "$line:${COMPREPLY[*]}"
    done' 2>/dev/null)
want="keelctl lease t:timetolive
keelctl get --pr:--prefix --print-value-only
keelctl mem:member
keelctl get k :"
if [ "$got" != "$want" ]; then
    echo "FAIL: bash completion with keelctl's script"
    diff <(echo "$want") <(echo "$got")
    fail=1
fi
[ $fail = 0 ] && echo "ok: $n completion cases identical to etcdctl"
exit $fail
