#!/bin/sh
# PID 1 of the VM tests (DESIGN.md §5; packaging/vm/run-vm-tests.sh builds and boots it).
#
# A busybox sh script rather than a rauha role: the boot steps and every check stay readable in
# one place, nothing test-only ships in the product binary, and the script runs the shipped
# CLI exactly as a user would.
#
# Protocol on the console: `PLAN N`, then one `PASS name` or `FAIL name: why` per check, then
# `SUMMARY pass=P fail=F plan=N kernel=K uptime=Ts` and `RESULT PASS` (or `RESULT FAIL`), then power off.
# The kernel command line selects the run: rauha.expect_lsm=1 (the LSM layer must be active) or
# rauha.expect_lsm=0 (the negative control: `bpf` left out of lsm=).
export PATH=/usr/bin:/usr/sbin:/bin:/sbin

# ---- stage 1: leave the initramfs rootfs (pivot_root cannot move away from rootfs, and every
# container start pivots), copy everything to a tmpfs and switch to it.
if [ ! -e /.stage2 ]; then
    mount -t proc proc /proc
    mount -t tmpfs -o mode=0755 root /mnt
    for entry in bin sbin usr lib lib64 etc images init tools; do
        [ -e "/$entry" ] && cp -a "/$entry" /mnt/
    done
    mkdir -p /mnt/proc /mnt/sys /mnt/dev /mnt/tmp /mnt/run /mnt/var/lib /mnt/root
    : > /mnt/.stage2
    umount /proc
    exec switch_root /mnt /init
fi

# ---- stage 2
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0755 run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mkdir -p /dev/pts && mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
hostname rauha-vm
ip link set lo up

expect_lsm=1
for word in $(cat /proc/cmdline); do
    case $word in rauha.expect_lsm=*) expect_lsm=${word#rauha.expect_lsm=} ;; esac
done

pass=0
fail=0
# Each line ends with the VM's uptime, to see where the time goes.
up() { cut -d' ' -f1 /proc/uptime; }
ok() { pass=$((pass + 1)); echo "PASS $1 [$(up)s]"; }
bad() { fail=$((fail + 1)); echo "FAIL $1: $2 [$(up)s]"; }
# check NAME CMD...: PASS when CMD succeeds, else FAIL with its last output line.
# Runs in the current shell (output to a file, not a subshell), so checks may set variables.
check() {
    name=$1
    shift
    if "$@" > /tmp/check.out 2>&1; then ok "$name"; else bad "$name" "$(tail -1 /tmp/check.out)"; fi
}
# denied NAME CMD...: PASS when CMD fails with "Operation not permitted" (EPERM, what the LSM
# hooks return), FAIL when it succeeds or fails for another reason.
denied() { denied_with 'not permitted' EPERM "$@"; }
# denied_with PATTERN ERRNO NAME CMD...: the same for errors whose message matches PATTERN.
denied_with() {
    pattern=$1
    errno=$2
    name=$3
    shift 3
    if "$@" > /tmp/check.out 2>&1; then
        bad "$name" "allowed: $(tail -1 /tmp/check.out)"
    elif grep -q "$pattern" /tmp/check.out; then
        ok "$name"
    else
        bad "$name" "failed without $errno: $(tail -1 /tmp/check.out)"
    fi
}
finish() {
    trap - EXIT
    echo "SUMMARY pass=$pass fail=$fail plan=$plan kernel=$(uname -r) uptime=$(up)s"
    if [ "$fail" -eq 0 ] && [ "$pass" -eq "$plan" ]; then echo "RESULT PASS"; else echo "RESULT FAIL"; fi
    if [ -s /tmp/rauhad.log ] && [ "$fail" -ne 0 ]; then
        echo "---- rauhad.log (last 60 lines)"
        tail -60 /tmp/rauhad.log
    fi
    sync
    echo o > /proc/sysrq-trigger
    sleep 10
}

. /tools/checks.sh
# Whatever ends the shell (a redirection error on a special builtin exits sh), report and power
# off rather than panic with "Attempted to kill init".
plan=0
trap finish EXIT
run_checks
exit 0
