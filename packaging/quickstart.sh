#!/usr/bin/env bash
# The main job on a fresh Debian machine, as root, offline: build and install Rauha, start the
# daemon, make a busybox image from Debian's busybox-static, create a zone and run a container
# in it.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/deps.sh
binary=$(packaging/build-static.sh)
packaging/install.sh "$binary"
if ! rauha info >/dev/null 2>&1; then
    echo "quickstart: starting rauhad (log: /var/log/rauhad.log)" >&2
    nohup rauhad >>/var/log/rauhad.log 2>&1 &
    for _ in $(seq 100); do rauha info >/dev/null 2>&1 && break; sleep 0.1; done
fi
rauha info
if ! rauha image inspect busybox >/dev/null 2>&1; then
    layout=$(mktemp -d)
    trap 'rm -rf "$layout"' EXIT
    packaging/busybox-image.sh "$layout/busybox" >/dev/null
    rauha image import "$layout/busybox" --tag busybox
fi
rauha zone inspect demo >/dev/null 2>&1 \
    || rauha zone create --name demo --policy /etc/rauha/policies/standard.toml
rauha zone list
rauha run --rm --zone demo busybox sh -c 'echo "hello from zone demo: $(hostname), pid $$"; id'
rauha zone stats demo
