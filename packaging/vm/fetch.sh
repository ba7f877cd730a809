#!/usr/bin/env bash
# Fetch what the VM tests boot, from Debian's archive only, cached under ~/.cache/rauha/vm
# (downloaded when missing; nothing is installed on the machine, its apt sources are untouched).
#   fetch.sh kernel 6.1   → prints the directory of the extracted newest 6.1 cloud kernel
#   fetch.sh kernel 6.12  → the same for 6.12 (bookworm/-security, else bookworm-backports)
#   fetch.sh qemu         → prints a directory holding bin/qemu-system-x86_64 (a wrapper that
#                           sets LD_LIBRARY_PATH, QEMU_MODULE_DIR and the firmware path)
set -euo pipefail
cache=${RAUHA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rauha}/vm
mkdir -p "$cache"
log() { echo "vm-fetch: $*" >&2; }
# The download and extraction directory of this run; removed however the run ends.
tmp=""
trap 'rm -rf "$tmp"' EXIT

# A private apt configuration (sources, lists, cache) for bookworm-backports, used only when
# the machine's sources do not carry a 6.12 cloud kernel.
backports_apt() {
    local state=$cache/apt-backports
    mkdir -p "$state/lists/partial" "$state/archives/partial"
    printf 'deb http://deb.debian.org/debian bookworm-backports main\n' > "$state/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$state/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::lists=$state/lists" -o "Dir::Cache::archives=$state/archives"
        -o "Dir::Cache::pkgcache=$state/pkgcache.bin" -o "Dir::Cache::srcpkgcache=$state/srcpkgcache.bin"
        -o "APT::Get::List-Cleanup=0")
    # The update's own lists must not mix with the system's: it reads only this sources list.
    [ -n "$(ls "$state/lists" 2>/dev/null | grep -v partial)" ] || apt-get "${opts[@]}" update -qq >&2
    printf '%s\n' "${opts[@]}"
}

# Newest package name matching an extended regex, among the packages apt knows.
newest() {
    apt-cache "$@" pkgnames 2>/dev/null | grep -E "$pattern" | sort -V | tail -1
}

kernel() {
    local series=$1 pattern package apt_opts=()
    case $series in
        6.1) pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' ;;
        6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64$' ;;
        *) log "unknown kernel series $series (expected 6.1 or 6.12)"; return 1 ;;
    esac
    # A cached kernel is used as is: the test does not chase every point release offline.
    local cached
    cached=$(ls -d "$cache/kernel-$series-"* 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$cached" ] && [ -f "$cached/modules/fs/overlayfs/overlay.ko" ]; then echo "$cached"; return; fi
    package=$(newest)
    if [ -z "$package" ] && [ "$series" = 6.12 ]; then
        mapfile -t apt_opts < <(backports_apt)
        package=$(newest "${apt_opts[@]}")
    fi
    [ -n "$package" ] || { log "no package matches $pattern (apt-get update?)"; return 1; }
    local dir=$cache/kernel-$series-${package#linux-image-}
    tmp=$(mktemp -d "$cache/tmp.XXXXXX")
    log "downloading $package"
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root "${apt_opts[@]}" download -qq "$package" >&2)
    dpkg-deb -x "$tmp"/*.deb "$tmp/root"
    local release=${package#linux-image-}
    mkdir -p "$tmp/out"
    mv "$tmp/root/boot/vmlinuz-$release" "$tmp/out/vmlinuz"
    # overlayfs, nftables, the bridge and veth are modules in Debian's cloud kernels: keep those
    # (decompressed, so busybox insmod loads them) and the config; the initramfs builder picks
    # the modules it needs and their dependencies from each module's .modinfo.
    local src=$tmp/root/lib/modules/$release/kernel ko rel
    [ -f "$src/fs/overlayfs/overlay.ko" ] || ls "$src/fs/overlayfs/overlay.ko"* >/dev/null 2>&1 \
        || { log "$package has no overlay.ko"; rm -rf "$tmp"; return 1; }
    while IFS= read -r ko; do
        rel=${ko#"$src"/}
        mkdir -p "$tmp/out/modules/$(dirname "$rel")"
        case $ko in
            *.ko) cp "$ko" "$tmp/out/modules/$rel" ;;
            *.ko.xz) xz -dc "$ko" > "$tmp/out/modules/${rel%.xz}" ;;
            *.ko.zst) zstd -qdc "$ko" > "$tmp/out/modules/${rel%.zst}" ;;
            *.ko.gz) gzip -dc "$ko" > "$tmp/out/modules/${rel%.gz}" ;;
            *) log "unknown module compression: $ko"; rm -rf "$tmp"; return 1 ;;
        esac
    done < <(find "$src/fs/overlayfs" "$src/net" "$src/drivers/net/veth.ko"* "$src/lib" -name '*.ko*' 2>/dev/null)
    cp "$tmp/root/boot/config-$release" "$tmp/out/config"
    echo "$release" > "$tmp/out/release"
    echo "$package" > "$tmp/out/package"
    rm -rf "$dir"
    mv "$tmp/out" "$dir"
    rm -rf "$tmp"
    echo "$dir"
}

qemu() {
    local dir=$cache/qemu
    if [ -x "$dir/bin/qemu-system-x86_64" ] && "$dir/bin/qemu-system-x86_64" --version >/dev/null 2>&1; then
        echo "$dir"; return
    fi
    # Installed normally and not conflicting: use it.
    if command -v qemu-system-x86_64 >/dev/null; then
        mkdir -p "$dir/bin"
        ln -sf "$(command -v qemu-system-x86_64)" "$dir/bin/qemu-system-x86_64"
        echo "$dir"; return
    fi
    tmp=$(mktemp -d "$cache/tmp.XXXXXX")
    # The emulator, its data (firmware option ROMs), the BIOS, and every library dependency
    # the machine does not have at all. Installed libraries are used as they are.
    local packages=(qemu-system-x86 qemu-system-common qemu-system-data seabios) dep
    for dep in $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances qemu-system-x86 \
        | awk '$1 == "Depends:" {print $2}' | grep '^lib' | grep -v '^<' | sort -u); do
        dpkg-query -W -f='${Status}' "$dep" 2>/dev/null | grep -q 'install ok installed' \
            || packages+=("$dep")
    done
    log "downloading ${packages[*]}"
    (cd "$tmp" && apt-get -o APT::Sandbox::User=root download -qq "${packages[@]}" >&2)
    local deb
    for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root"; done
    local root=$dir/root
    mkdir -p "$tmp/out/bin"
    cat > "$tmp/out/bin/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
# Run the extracted emulator with its own libraries, modules and firmware.
root=$(dirname "$(dirname "$(readlink -f "$0")")")/root
export LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export QEMU_MODULE_DIR="$root/usr/lib/x86_64-linux-gnu/qemu"
exec "$root/usr/bin/qemu-system-x86_64" -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" "$@"
WRAP
    chmod +x "$tmp/out/bin/qemu-system-x86_64"
    mv "$tmp/root" "$tmp/out/root"
    rm -rf "$dir"
    mv "$tmp/out" "$dir"
    rm -rf "$tmp"
    # Every library resolves, or the cache is not usable.
    if LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$root/usr/bin/qemu-system-x86_64" | grep -q 'not found'; then
        log "qemu libraries missing:"; LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu" ldd "$root/usr/bin/qemu-system-x86_64" | grep 'not found' >&2
        rm -rf "$dir"; return 1
    fi
    "$dir/bin/qemu-system-x86_64" --version >&2
    echo "$dir"
}

case ${1:-} in
    kernel) kernel "${2:?series}" ;;
    qemu) qemu ;;
    *) echo "usage: fetch.sh kernel 6.1|6.12 | fetch.sh qemu" >&2; exit 2 ;;
esac
