#!/bin/sh
# The functions libshmbroker.so exports are exactly the names of its version script
# (client/libshmbroker.sym): a function made public by mistake, or one the script names
# but the library lost, changes the ABI, and this fails. (Any other symbol exported by
# mistake, a variable, fails it too.)
set -eu
cd "$(dirname "$0")/.."
LIB=${1:-build/libshmbroker.so}
SYM=client/libshmbroker.sym

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# "0000000000001234 T sb_acquire@@LIBSHMBROKER_1": every defined symbol, without its
# version; the version node itself ("A LIBSHMBROKER_1") is no symbol of the code.
nm -D --defined-only "$LIB" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
        sort -u >"$tmp/exported"
# The names between "global:" and "local:", one "name;" a line.
sed -n '/global:/,/local:/ { /^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*;/ { s/[[:space:];]//g; p } }' "$SYM" |
        sort -u >"$tmp/listed"

if ! cmp -s "$tmp/exported" "$tmp/listed"; then
        echo "$LIB exports other functions than $SYM lists (< exported only, > listed only):"
        diff "$tmp/exported" "$tmp/listed" | grep '^[<>]' || true
        exit 1
fi
echo "$(wc -l <"$tmp/exported") exported functions, as $SYM lists"
