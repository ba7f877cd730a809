#!/usr/bin/env bash
# Boot Debian's cloud kernels under QEMU (TCG, no network) with an initramfs holding the static
# rauha binary, busybox, the busybox test image and the needed kernel modules; /init
# (packaging/vm/init.sh + checks.sh) runs rauhad, zones, containers and the escape suite with
# the eBPF LSM layer active. Matrix: 6.1 and 6.12 with `bpf` in lsm=, and a negative control
# (6.1 without `bpf`). Passes only when every VM prints its complete plan of PASS lines and
# `RESULT PASS`; a timeout, a kernel panic, a FAIL or a missing line fails.
#
# Usage: packaging/vm/run-vm-tests.sh          (RAUHA_STATIC_BINARY: use this binary)
#   RAUHA_VM_KERNELS="6.1 6.12"   kernels with the LSM layer; RAUHA_VM_CONTROL=6.1: the control (empty: none)
#   RAUHA_VM_TIMEOUT=240          seconds per VM
#   RAUHA_VM_LSM_HARNESS=PATH     static stand-in for the daemon's LSM integration (until it
#                                 lands; packaging/vm/lsm-harness)
#   RAUHA_VM_KEEP=DIR             keep the console logs in DIR
#   RAUHA_VM_BENCH_OUT=FILE       write the LSM cost measured in each VM as a markdown table
# Downloads (kernels, QEMU) come from Debian's archive with apt-get download and are cached in
# ~/.cache/rauha/vm; nothing is installed and the machine's apt sources are not touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kernels=${RAUHA_VM_KERNELS:-6.1 6.12}
control=${RAUHA_VM_CONTROL-6.1}
timeout_s=${RAUHA_VM_TIMEOUT:-240}
log() { echo "vm-tests: $*" >&2; }

for tool in apt-get apt-cache dpkg-deb python3 timeout umoci; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 1; }
done
busybox=/bin/busybox
[ -x "$busybox" ] || { log "$busybox missing (apt-get install busybox-static)"; exit 1; }
nft=/usr/sbin/nft
[ -x "$nft" ] || { log "$nft missing (apt-get install nftables)"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rauha-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT

rauha=${RAUHA_STATIC_BINARY:-$(cd "$repo" && packaging/build-static.sh)}
case $rauha in /*) ;; *) rauha=$repo/$rauha ;; esac
qemu_dir=$("$here/fetch.sh" qemu)
"$repo/packaging/busybox-image.sh" "$work/busybox-oci" > /dev/null

# Which LSM driver the suite uses: the daemon once the tree has its LSM integration; else the
# stand-in when given; else the LSM checks are reported pending (the rest still must pass).
if [ -f "$repo/src/enforce/lsm.rs" ]; then
    driver=daemon
elif [ -n "${RAUHA_VM_LSM_HARNESS:-}" ]; then
    driver=harness
else
    driver=pending
fi
extra=()
[ "$driver" = harness ] && extra+=(--file "$RAUHA_VM_LSM_HARNESS=usr/bin/rauha-lsm-harness")
log "rauha: $rauha; LSM driver: $driver"

# One VM: NAME SERIES LSM_LIST EXPECT_LSM. Writes $work/NAME.log, returns 0 only on a
# complete pass.
boot() {
    local name=$1 series=$2 lsm=$3 expect=$4 kdir start rc=0
    kdir=$("$here/fetch.sh" kernel "$series")
    local initrd=$work/$series.cpio
    start=$(date +%s.%N)
    timeout "$timeout_s" "$qemu_dir/bin/qemu-system-x86_64" -accel tcg -cpu max -m 1024 -smp 1 \
        -nic none -nographic -no-reboot -kernel "$kdir/vmlinuz" -initrd "$initrd" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check lsm=$lsm rauha.expect_lsm=$expect rauha.lsm_driver=$driver" \
        < /dev/null > "$work/$name.log" 2>&1 || rc=$?
    local elapsed
    elapsed=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    check_log "$name" "$rc" "$(cat "$kdir/release")" "$elapsed"
}

# The verdict from a console log: PLAN N, N PASS lines, no FAIL, the summary and RESULT PASS.
check_log() {
    local name=$1 rc=$2 release=$3 elapsed=$4 file=$work/$1.log plan passes
    tr -d '\r' < "$file" > "$file.txt"
    file=$file.txt
    grep -E '^(PASS|FAIL|PENDING|BENCH|SUMMARY|RESULT)' "$file" | sed "s/^/[$name] /" >&2 || true
    local why=""
    plan=$(sed -n 's/^PLAN \([0-9]*\)$/\1/p' "$file" | head -1)
    passes=$(grep -c '^PASS ' "$file" || true)
    if [ "$rc" = 124 ]; then why="timed out after ${timeout_s}s"
    elif grep -q 'Kernel panic' "$file"; then why="kernel panic: $(grep -m1 'Kernel panic' "$file")"
    elif [ -z "$plan" ]; then why="no PLAN line (init did not run the suite)"
    elif grep -q '^FAIL ' "$file"; then why="$(grep -c '^FAIL ' "$file") check(s) failed"
    elif [ "$passes" != "$plan" ]; then why="$passes of $plan checks reported"
    elif ! grep -F "SUMMARY pass=$plan fail=0 plan=$plan kernel=$release uptime=" "$file" | grep -q '^SUMMARY'; then
        why="no complete SUMMARY line"
    elif ! grep -q '^RESULT PASS$' "$file"; then why="no RESULT PASS line"
    fi
    if [ -n "${RAUHA_VM_KEEP:-}" ]; then mkdir -p "$RAUHA_VM_KEEP"; cp "$file" "$RAUHA_VM_KEEP/$name.log"; fi
    if [ -n "$why" ]; then
        log "$name ($release): FAIL: $why (${elapsed}s); console log tail:"
        tail -40 "$file" | sed "s/^/[$name] /" >&2
        return 1
    fi
    log "$name ($release): PASS, $plan checks in ${elapsed}s"
}

# Initramfs images first, one per kernel (its modules), then the VMs in parallel: each is one
# TCG thread.
for series in $(printf '%s\n' $kernels $control | sort -u); do
    kdir=$("$here/fetch.sh" kernel "$series")
    python3 "$here/mkinitramfs.py" "$work/$series.cpio" --init "$here/init.sh" --rauha "$rauha" \
        --busybox "$busybox" --kernel-dir "$kdir" --image "busybox=$work/busybox-oci" \
        --dynamic "$nft=usr/sbin/nft" --file "$here/checks.sh=tools/checks.sh" "${extra[@]}"
    log "initramfs for $series: $(du -h "$work/$series.cpio" | cut -f1)"
done
names=() pids=()
for series in $kernels; do
    names+=("lsm-$series"); boot "lsm-$series" "$series" lockdown,capability,landlock,bpf 1 & pids+=($!)
done
if [ -n "$control" ]; then
    names+=("control-$control"); boot "control-$control" "$control" lockdown,capability,landlock 0 & pids+=($!)
fi
failed=0
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { failed=1; log "${names[$i]} failed"; }
done
[ "$failed" = 0 ] || { log "VM tests failed"; exit 1; }
log "all VMs passed"

# BENCH with_lsm open_ns=A exec_ns=B ... / BENCH without_lsm ... → one table row per kernel.
if [ -n "${RAUHA_VM_BENCH_OUT:-}" ]; then
    {
        echo "| kernel | open+close, ns: with LSM / without (before attach, after detach) | ratio (to the faster baseline) | fork+exec, ns: with / without (before, after) | ratio |"
        echo "|---|---|---|---|---|"
        for series in $kernels; do
            python3 - "$work/lsm-$series.log.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
kernel = re.search(r"^SUMMARY .* kernel=(\S+)", text, re.M).group(1)
rows = {m.group(1): dict(kv.split("=") for kv in m.group(2).split())
        for m in re.finditer(r"^BENCH (with_lsm|without_lsm_before|without_lsm_after) (.*)$",
                             text, re.M)}
w, b, a = rows["with_lsm"], rows["without_lsm_before"], rows["without_lsm_after"]
def cell(key):
    # the faster baseline: a cold or disturbed run must not make the layer look cheap
    base = min(int(b[key]), int(a[key]))
    return f"{int(w[key])} / {b[key]}, {a[key]}", f"{int(w[key]) / base:.2f}"
o, oratio = cell("open_ns")
e, eratio = cell("exec_ns")
print(f"| {kernel} | {o} | {oratio} | {e} | {eratio} |")
PY
        done
    } > "$RAUHA_VM_BENCH_OUT"
    log "LSM cost written to $RAUHA_VM_BENCH_OUT"
fi
