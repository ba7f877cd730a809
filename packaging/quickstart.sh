#!/usr/bin/env bash
# The main job on a fresh Debian machine, as root, offline: build Rauha, install it, start the
# daemon, create a zone and show it.
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
rauha zone inspect demo >/dev/null 2>&1 || rauha zone create --name demo --policy /etc/rauha/policies/standard.toml
rauha zone list
rauha zone stats demo
