#!/usr/bin/env bash
# Build the release executable as one static glibc static-pie binary and check that it is.
# Usage: packaging/build-static.sh  → prints the path of the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(uname -m)-unknown-linux-gnu"
# An explicit --target keeps build scripts and proc macros dynamic (they run on the host) while
# the rauha binary links everything statically.
# libbpf-sys links libelf and zlib statically from here (no dynamic libelf in the binary).
export LIBBPF_SYS_LIBRARY_PATH="${LIBBPF_SYS_LIBRARY_PATH:-/usr/lib/$(uname -m)-linux-gnu}"
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" "$@" >&2
binary="target/$target/release/rauha"
if ldd "$binary" >/dev/null 2>&1 && ! ldd "$binary" 2>&1 | grep -q 'statically linked'; then
    echo "build-static: $binary is dynamically linked:" >&2
    ldd "$binary" >&2
    exit 1
fi
echo "$binary"
