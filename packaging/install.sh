#!/usr/bin/env bash
# Install the rauha binary, its role links, the default policies, state and runtime dirs, and
# the systemd unit. Usage: packaging/install.sh BINARY   (PREFIX defaults to /usr/local)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:?usage: install.sh BINARY}
prefix=${PREFIX:-/usr/local}
install -D -m 0755 "$binary" "$prefix/bin/rauha"
# One executable, several roles: the name it is started as picks the role.
ln -sf rauha "$prefix/bin/rauhad"
install -d -m 0711 /var/lib/rauha /run/rauha
install -d -m 0755 /etc/rauha/policies
install -m 0644 policies/*.toml /etc/rauha/policies/
if [ -d /etc/systemd/system ]; then
    sed "s#@PREFIX@#$prefix#g" packaging/rauhad.service > /etc/systemd/system/rauhad.service
fi
echo "installed $prefix/bin/rauha (+ rauhad); state in /var/lib/rauha; policies in /etc/rauha/policies" >&2
