#!/usr/bin/env bash
# Run every test: unit tests, integration tests that start real daemons (as root) inside
# network namespaces they create. `CI=true` turns a missing privilege into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/deps.sh
cargo build --locked --all-targets
# The static release build is what ships; its own test checks it is static and runs.
RAUHA_STATIC_BINARY=$(packaging/build-static.sh)
export RAUHA_STATIC_BINARY
cargo test --locked
# Without the grpc feature nothing of tonic, prost or h2 may be compiled (issue 7).
if grpc_deps=$(cargo tree --locked -e normal --no-default-features --prefix none \
        | grep -E '^(tonic|tonic-[a-z-]+|prost|prost-[a-z-]+|h2|axum) v' | sort -u) \
        && [ -n "$grpc_deps" ]; then
    echo "test: the build without --features grpc pulls in: $grpc_deps" >&2
    exit 1
fi
# The gRPC facade: one more build of the library and this test binary with the feature.
cargo test --locked --features grpc --test grpc
# The eBPF LSM layer on real kernels (README "VM tests"): 6.1 and 6.12 under QEMU, and the
# control VM without `bpf` in lsm=, reusing the static build. Exit 77: a prerequisite is
# missing (never under CI=true, where run-vm-tests.sh fails instead).
vm_start=$(date +%s)
vm_status=0
packaging/vm/run-vm-tests.sh || vm_status=$?
echo "test: VM stage took $(($(date +%s) - vm_start))s" >&2
case $vm_status in
    0) ;;
    77) echo "test: VM tests SKIPPED (see above): the LSM layer is untested in this run" >&2 ;;
    *) exit "$vm_status" ;;
esac
