#!/usr/bin/env bash
# Run the benchmarks (as root) and record their tables under benches/results/.
# Usage: bash benches/run.sh [BENCH...]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/deps.sh
RAUHA_STATIC_BINARY=$(packaging/build-static.sh)
export RAUHA_STATIC_BINARY
benches=("$@")
((${#benches[@]})) || benches=(zones containers network images enforce bpf grpc)
for bench in "${benches[@]}"; do
    out="benches/results/$bench.md"
    {
        echo "# \`$bench\` benchmark"
        echo
        echo "Recorded $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, kernel $(uname -r), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
        echo "Command: \`bash benches/run.sh $bench\` (runs \`cargo bench [--features grpc] --bench $bench\`)."
        echo
        features=()
        [ "$bench" = grpc ] && features=(--features grpc)
        cargo bench --locked "${features[@]}" --bench "$bench" 2>"$out.log" || { tail -30 "$out.log" >&2; exit 1; }
    } | tee "$out.tmp"
    mv "$out.tmp" "$out"
    rm -f "$out.log"
done
