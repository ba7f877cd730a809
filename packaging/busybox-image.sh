#!/usr/bin/env bash
# Build an OCI image layout holding Debian's static busybox and its applet links, tagged
# busybox:latest — an image for machines without any registry.
# Usage: packaging/busybox-image.sh OUT_DIR   (then: rauha image import OUT_DIR --tag busybox)
set -euo pipefail
out=${1:?usage: busybox-image.sh OUT_DIR}
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "busybox-image: $busybox missing (apt-get install busybox-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$out"
umoci init --layout "$out"
umoci new --image "$out:latest"
umoci unpack --rootless --image "$out:latest" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/root"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
umoci repack --image "$out:latest" "$work/bundle" >/dev/null
umoci config --image "$out:latest" --config.cmd sh --config.env PATH=/bin --tag latest >/dev/null
umoci gc --layout "$out"
echo "$out"
