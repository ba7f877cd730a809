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
#   RAUHA_VM_KEEP=DIR             keep the console logs in DIR
#   RAUHA_VM_BENCH_OUT=FILE       write the LSM cost measured in each VM as a markdown table
#                                 (the VMs then count time in guest instructions: -icount)
# Downloads (kernels, QEMU) come from Debian's archive with apt-get download and are cached in
# ~/.cache/rauha/vm; nothing is installed and the machine's apt sources are not touched.
# Exit status: 0 all VMs passed; 1 a failure; 77 skipped because a prerequisite (a tool, or a
# download with nothing cached) is missing, never under CI=true, where that is a failure too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
kernels=${RAUHA_VM_KERNELS:-6.1 6.12}
control=${RAUHA_VM_CONTROL-6.1}
timeout_s=${RAUHA_VM_TIMEOUT:-240}
log() { echo "vm-tests: $*" >&2; }
# A missing prerequisite: a failure under CI=true, else a loud skip.
unmet() {
    if [ "${CI:-}" = true ]; then log "FAIL: $* (CI=true: no skipping)"; exit 1; fi
    log "SKIPPED: $*"
    exit 77
}

cc=${CC:-clang}
for tool in apt-get apt-cache dpkg-deb python3 timeout umoci "$cc"; do
    command -v "$tool" >/dev/null || unmet "missing tool: $tool"
done
busybox=/bin/busybox
[ -x "$busybox" ] || unmet "$busybox missing (apt-get install busybox-static)"
nft=/usr/sbin/nft
[ -x "$nft" ] || unmet "$nft missing (apt-get install nftables)"

work=$(mktemp -d "${TMPDIR:-/tmp}/rauha-vm.XXXXXX")
trap 'rm -rf "$work"' EXIT

rauha=${RAUHA_STATIC_BINARY:-$(cd "$repo" && packaging/build-static.sh)}
case $rauha in /*) ;; *) rauha=$repo/$rauha ;; esac
qemu_dir=$("$here/fetch.sh" qemu) || unmet "no QEMU (download failed and nothing cached)"
"$repo/packaging/busybox-image.sh" "$work/busybox-oci" > /dev/null

# Recording the LSM cost: guest time from the instruction counter (1 ns per guest instruction,
# idle time skipped), so the loops' figures are instruction counts that the host's load cannot
# disturb; TCG then runs 2-4x slower, so plain test runs keep real time.
icount=()
[ -z "${RAUHA_VM_BENCH_OUT:-}" ] || icount=(-icount shift=0,sleep=off)

# The in-VM cost loop, static so it runs in the initramfs.
"$cc" -static -O2 -Wall -Werror -o "$work/lsm-bench" "$here/lsm-bench.c"
log "rauha: $rauha"

# One VM: NAME SERIES LSM_LIST EXPECT_LSM. Writes $work/NAME.log, returns 0 only on a
# complete pass.
boot() {
    local name=$1 series=$2 lsm=$3 expect=$4 kdir=${kernel_dir[$2]} start rc=0
    local initrd=$work/$series.cpio
    start=$(date +%s.%N)
    timeout "$timeout_s" "$qemu_dir/bin/qemu-system-x86_64" -accel tcg -cpu max -m 1024 -smp 1 "${icount[@]}" \
        -nic none -nographic -no-reboot -kernel "$kdir/vmlinuz" -initrd "$initrd" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check lsm=$lsm rauha.expect_lsm=$expect" \
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
    grep -E '^(PASS|FAIL|BENCH|SUMMARY|RESULT)' "$file" | sed "s/^/[$name] /" >&2 || true
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
declare -A kernel_dir
for series in $(printf '%s\n' $kernels $control | sort -u); do
    kdir=$("$here/fetch.sh" kernel "$series") || unmet "no $series kernel (download failed and nothing cached)"
    kernel_dir[$series]=$kdir
    python3 "$here/mkinitramfs.py" "$work/$series.cpio" --init "$here/init.sh" --rauha "$rauha" \
        --busybox "$busybox" --kernel-dir "$kdir" --image "busybox=$work/busybox-oci" \
        --dynamic "$nft=usr/sbin/nft" --file "$here/checks.sh=tools/checks.sh" --file "$work/lsm-bench=tools/lsm-bench"
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

# BENCH with_lsm|without_lsm open_ns=A exec_ns=B ... (two of each; under -icount a guest ns is
# one guest instruction) → one table row per kernel.
if [ -n "${RAUHA_VM_BENCH_OUT:-}" ]; then
    {
        echo "| kernel | open+close, instructions: with LSM / without | ratio (range) | fork+exec, instructions: with / without | ratio (range) |"
        echo "|---|---|---|---|---|"
        for series in $kernels; do
            python3 - "$work/lsm-$series.log.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
kernel = re.search(r"^SUMMARY .* kernel=(\S+)", text, re.M).group(1)
runs = {"with_lsm": [], "without_lsm": []}
for m in re.finditer(r"^BENCH (with_lsm|without_lsm) (.*)$", text, re.M):
    runs[m.group(1)].append(dict(kv.split("=") for kv in m.group(2).split()))
def cell(key):
    w = [int(r[key]) for r in runs["with_lsm"]]
    b = [int(r[key]) for r in runs["without_lsm"]]
    ratio = (sum(w) / len(w)) / (sum(b) / len(b))
    low, high = min(w) / max(b), max(w) / min(b)
    values = f"{', '.join(map(str, w))} / {', '.join(map(str, b))}"
    return values, f"{ratio:.2f} ({low:.2f}–{high:.2f})"
o, oratio = cell("open_ns")
e, eratio = cell("exec_ns")
print(f"| {kernel} | {o} | {oratio} | {e} | {eratio} |")
PY
        done
    } > "$RAUHA_VM_BENCH_OUT"
    log "LSM cost written to $RAUHA_VM_BENCH_OUT"
fi
