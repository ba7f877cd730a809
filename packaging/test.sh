#!/usr/bin/env bash
# Run every test: unit tests, and integration tests that start real daemons (as root) inside
# network namespaces they create. `CI=true` turns a missing privilege into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/deps.sh
cargo build --locked --all-targets
# The static release build is what ships; its own test checks it is static and runs.
RAUHA_STATIC_BINARY=$(packaging/build-static.sh)
export RAUHA_STATIC_BINARY
cargo test --locked
