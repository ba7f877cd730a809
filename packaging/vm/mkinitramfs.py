#!/usr/bin/env python3
"""Write the VM tests' initramfs as a newc cpio archive, with no cpio tool and no root: every
entry is owned by root inside the archive whoever runs this.

Usage: mkinitramfs.py OUT --init FILE --rauha BIN --busybox BIN --kernel-dir DIR
                      [--image NAME=OCI_DIR]... [--dynamic BIN=PATH_IN_ARCHIVE]...
                      [--file SRC=PATH_IN_ARCHIVE]...

Kernel modules: the ones the daemon needs (overlayfs, nftables, bridge, veth) and every module
they depend on, read from each module's .modinfo `depends=`; /lib/modules/load-order lists them
dependencies first, for busybox insmod.
"""

import argparse
import os
import re
import stat
import subprocess
import sys

# Modules loaded at boot: overlayfs for container rootfs, nftables (every nft expression module,
# so no request_module is needed), the bridge and veth for bridged zones.
SEED_PATTERNS = [
    r"^fs/overlayfs/overlay\.ko$",
    r"^net/netfilter/(nf_tables|nfnetlink|nf_conntrack|nf_nat|nft_[a-z_0-9]+)\.ko$",
    r"^net/(ipv4|ipv6)/netfilter/(nft_[a-z_0-9]+|nf_reject_ipv[46]|nf_defrag_ipv[46])\.ko$",
    r"^net/bridge/bridge\.ko$",
    r"^net/bridge/netfilter/(nft_[a-z_0-9]+|nf_conntrack_bridge)\.ko$",
    r"^drivers/net/veth\.ko$",
]
# nft expressions the daemon never uses and that pull in large or exotic dependencies.
SKIP = {"nft_tunnel", "nft_xfrm", "nft_osf", "nft_synproxy", "nft_tproxy", "nft_socket",
        "nft_flow_offload", "nft_queue", "nft_dup_netdev", "nft_fwd_netdev", "nft_fib_netdev",
        "nft_connlimit", "nft_dup_ipv4", "nft_dup_ipv6", "nft_compat"}


class Cpio:
    """A newc archive written entry by entry."""

    def __init__(self, out):
        self.out = out
        self.ino = 1
        self.seen = set()

    def _entry(self, name, mode, data=b"", nlink=1):
        name_bytes = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name_bytes), 0]
        self.ino += 1
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self.out.write(header + name_bytes)
        self.out.write(b"\0" * (-(len(header) + len(name_bytes)) % 4))
        self.out.write(data)
        self.out.write(b"\0" * (-len(data) % 4))

    def dir(self, path):
        path = path.strip("/")
        if not path or path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self._entry(path, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self._entry(path, stat.S_IFREG | mode, data)

    def copy(self, path, src):
        with open(src, "rb") as f:
            data = f.read()
        self.file(path, data, os.stat(src).st_mode & 0o777)

    def symlink(self, path, target):
        path = path.strip("/")
        if path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def tree(self, path, src):
        """Copy a directory tree (regular files, directories, symlinks)."""
        for root, dirs, files in os.walk(src):
            rel = os.path.relpath(root, src)
            base = path if rel == "." else os.path.join(path, rel)
            self.dir(base)
            for name in sorted(dirs + files):
                full = os.path.join(root, name)
                if os.path.islink(full):
                    self.symlink(os.path.join(base, name), os.readlink(full))
                elif os.path.isfile(full):
                    self.copy(os.path.join(base, name), full)
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]

    def close(self):
        self._entry("TRAILER!!!", 0)
        self.out.write(b"\0" * (-self.out.tell() % 512))


def modinfo_depends(path):
    with open(path, "rb") as f:
        data = f.read()
    match = re.search(rb"(?:^|\0)depends=([^\0]*)\0", data)
    return [d for d in match.group(1).decode().split(",") if d] if match else []


def modules(kernel_dir):
    root = os.path.join(kernel_dir, "modules")
    by_name = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".ko"):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                by_name[name[:-3].replace("-", "_")] = rel
    seeds = sorted(n for n, rel in by_name.items()
                   if n not in SKIP and any(re.match(p, rel) for p in SEED_PATTERNS))
    order, visiting = [], set()

    def visit(name):
        if name in order:
            return
        if name in visiting:
            sys.exit(f"mkinitramfs: module dependency cycle at {name}")
        if name not in by_name:
            sys.exit(f"mkinitramfs: module {name} is needed but not in {root}")
        visiting.add(name)
        for dep in modinfo_depends(os.path.join(root, by_name[name])):
            visit(dep.replace("-", "_"))
        visiting.discard(name)
        order.append(name)

    for seed in seeds:
        visit(seed)
    return [(name, os.path.join(root, by_name[name])) for name in order]


def shared_libraries(binary):
    """The ELF interpreter and libraries `binary` loads, from ldd."""
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            libs.append(match.group(1))
        elif "not found" in line:
            sys.exit(f"mkinitramfs: {binary}: {line.strip()}")
    return libs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--init", required=True)
    parser.add_argument("--rauha", required=True)
    parser.add_argument("--busybox", required=True)
    parser.add_argument("--kernel-dir", required=True)
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--dynamic", action="append", default=[])
    parser.add_argument("--file", action="append", default=[])
    args = parser.parse_args()

    tmp = args.out + ".tmp"
    with open(tmp, "wb") as out:
        cpio = Cpio(out)
        for d in ["dev", "proc", "sys", "tmp", "run", "var/lib", "etc", "mnt", "root"]:
            cpio.dir(d)
        with open(args.init, "rb") as f:
            cpio.file("init", f.read(), 0o755)
        cpio.copy("bin/busybox", args.busybox)
        applets = subprocess.run([args.busybox, "--list-full"], check=True,
                                 capture_output=True, text=True).stdout.split()
        for applet in applets:
            if applet != "bin/busybox":
                cpio.symlink(applet, "/bin/busybox")
        cpio.copy("usr/bin/rauha", args.rauha)
        cpio.symlink("usr/bin/rauhad", "rauha")
        # none for the static release build; a dev build brings its libraries along
        for lib in shared_libraries(args.rauha):
            cpio.copy(lib, os.path.realpath(lib))
        for spec in args.dynamic:
            src, dest = spec.split("=", 1)
            cpio.copy(dest, src)
            for lib in shared_libraries(src):
                cpio.copy(lib, os.path.realpath(lib))
        for spec in args.file:
            src, dest = spec.split("=", 1)
            cpio.copy(dest, src)
        for spec in args.image:
            name, src = spec.split("=", 1)
            cpio.tree(f"images/{name}", src)
        order = []
        for name, path in modules(args.kernel_dir):
            cpio.copy(f"lib/modules/{name}.ko", path)
            order.append(name)
        cpio.file("lib/modules/load-order", ("\n".join(order) + "\n").encode())
        cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        cpio.file("etc/group", b"root:x:0:\n")
        cpio.close()
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
