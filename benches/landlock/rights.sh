#!/usr/bin/env bash
# Landlock's cost on a raw open/close by handled rights (see rights.c); rounds interleave the
# modes so load drifting on the machine hits all alike. Writes benches/results/landlock-rights.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../results/landlock-rights.md"
bin=$(mktemp)
trap 'rm -f "$bin"' EXIT
cc -O2 -o "$bin" "$here/rights.c"
modes=(none all no-read writes-only)
rounds=15
iterations=200000
declare -A samples
for ((r = 0; r < rounds; r++)); do
    for mode in "${modes[@]}"; do
        read -r _ ns < <("$bin" "$mode" "$iterations")
        samples[$mode]+="$ns "
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
base=$(echo "${samples[none]}" | median)
{
    echo "# Landlock rights vs raw open/close cost"
    echo
    echo "Recorded $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, kernel $(uname -r), commit $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo "Command: \`bash benches/landlock/rights.sh\` (open+close of /etc/hostname, $iterations iterations per fresh process, median of $rounds interleaved rounds)."
    echo
    echo "| handled rights | ns/iteration | ratio |"
    echo "|---|---|---|"
    for mode in "${modes[@]}"; do
        m=$(echo "${samples[$mode]}" | median)
        echo "| $mode | $m | $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.3f", a / b}') |"
    done
} | tee "$out"
