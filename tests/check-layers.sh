#!/bin/sh
# The daemon's files include one another in one direction only (HACKING.md: listener ->
# client -> ops -> session/wait -> broker -> pool -> segment): tsort finds no cycle in the
# graph of their #include "..." lines, or this fails naming it.
set -eu
cd "$(dirname "$0")/.."
graph=$(mktemp)
trap 'rm -f "$graph"' EXIT
for f in daemon/*.c daemon/*.h; do
        from=$(basename "$f"); from=${from%.*}
        for to in $(sed -n 's/^#include "\([a-z-]*\)\.h"$/\1/p' "$f"); do
                [ -e "daemon/$to.h" ] && [ "$to" != "$from" ] && echo "$from $to"
        done
done | sort -u >"$graph"
if ! tsort "$graph" >/dev/null 2>"$graph.err"; then
        echo "daemon/: an include cycle:"
        cat "$graph.err"
        rm -f "$graph.err"
        exit 1
fi
rm -f "$graph.err"
echo "$(wc -l <"$graph") include edges among daemon/ files, no cycle"
