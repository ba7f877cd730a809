#!/usr/bin/env bash
# Install the Debian packages that building and testing Rauha need, when missing.
set -euo pipefail
packages=(
    # build: BPF programs (clang, libelf, zlib), gRPC protos
    clang libelf-dev zlib1g-dev pkg-config protobuf-compiler
    # run: network filtering, `ip` for test namespaces
    nftables iproute2
    # tests: container images are built from static busybox and served by a real registry
    busybox-static docker-registry skopeo umoci
    # VM tests (packaging/vm): initramfs writer, kernel module decompression
    python3 xz-utils zstd
    # benchmarks compare against these runtimes
    runc crun
)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The packaged registry service listens on all interfaces with its own config; tests start
# their own instances on loopback, so keep the system one off.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl stop docker-registry || true
fi
