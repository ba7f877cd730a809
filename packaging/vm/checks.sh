# The VM's test suite, sourced by /init (packaging/vm/init.sh), which provides check, denied,
# denied_with, ok, bad and $expect_lsm. Runs as root in the VM's initial namespaces.
#
# LSM probes are privileged on purpose: a host-namespace process that has joined zone A's cgroup
# (the LSM programs know zones by cgroup) attacks zone B through paths the always-on layers
# would otherwise stop first (pid ns, mount ns, Landlock). Only the LSM layer stands between,
# so a denial proves the hook. The same probes must succeed without the LSM layer (while the
# daemon, which owns the programs' links, is stopped, and in the negative-control VM), proving
# the probes are honest attacks.

cg=/sys/fs/cgroup/rauha
sock=/run/rauha/rauhad.sock

# Host-side privileged probe: PROBE ZONE_CGROUP_LEAF SCRIPT — runs SCRIPT in a busybox sh that
# first joins the leaf cgroup (so it is a zone-A task for the LSM), in the host namespaces.
in_zone() {
    leaf=$1
    shift
    sh -c "echo \$\$ > $leaf/cgroup.procs && $*"
}
# The same, but the shell is started inside zone B's container mount namespace (entered while
# still a host task), joining zone A's cgroup through fd 3 opened beforehand: file opens then
# resolve in B's rootfs with no /proc/PID/root traversal (which ptrace rules would stop first).
in_zone_with_b_root() {
    leaf=$1
    shift
    sh -c "exec 3> $leaf/cgroup.procs && nsenter -t $b_pid -m -- /bin/sh -c 'echo \$\$ >&3 && exec 3>&- && $*'"
}

json_field() { # json_field KEY: first numeric or string value of "KEY" on stdin
    sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p" | head -1
}

# Starts rauhad and waits until it answers. Under TCG on a loaded 2-core host the start (BPF
# loads, CO-RE against the kernel's BTF) has taken 40 s, so the wait is long and counted in
# uptime, not in loop rounds.
start_daemon() {
    mkdir -p /var/lib/rauha /run/rauha
    started=$(up_s)
    RUST_LOG=info rauhad --root /var/lib/rauha --run-dir /run/rauha --socket "$sock" \
        --cgroup-parent rauha >> /tmp/rauhad.log 2>&1 &
    daemon_pid=$!
    deadline=$(($(up_s) + 120))
    while [ ! -S "$sock" ] && [ "$(up_s)" -lt $deadline ]; do
        kill -0 $daemon_pid 2>/dev/null || { tail -5 /tmp/rauhad.log; return 1; }
        sleep 0.2
    done
    [ -S "$sock" ] || { echo "no socket after 120s"; tail -5 /tmp/rauhad.log; return 1; }
    rauha info > /tmp/info.txt 2>&1 || { cat /tmp/info.txt; return 1; }
    echo "rauhad ready in $(($(up_s) - started))s"
}
# Stops rauhad (SIGTERM) and waits for it to exit: its BPF links close with it, so the LSM
# programs are detached; containers keep running under their shims.
stop_daemon() {
    kill $daemon_pid || return 1
    deadline=$(($(up_s) + 60))
    while kill -0 $daemon_pid 2>/dev/null && [ "$(up_s)" -lt $deadline ]; do sleep 0.2; done
    ! kill -0 $daemon_pid 2>/dev/null || { echo "rauhad still running after 60s"; return 1; }
    wait $daemon_pid 2>/dev/null
    [ -n "$(container_pid "$a_id")" ] && [ -n "$(container_pid "$b_id")" ] ||
        { echo "containers did not survive the daemon's exit"; return 1; }
}
up_s() { cut -d. -f1 /proc/uptime; }

in_a1() { # in_a1 WORD SCRIPT: SCRIPT in container a1 must print WORD
    out=$(rauha exec a1 sh -c "$2" 2>&1)
    [ "$out" = "$1" ] || { echo "expected $1, got: $out"; return 1; }
}

container_pid() { # container_pid ZONE_ID: a pid (host view) of the zone's first container
    cat "$cg/zone-$1"/ctr-*/cgroup.procs 2>/dev/null | head -1
}

setup_zones() {
    printf '[network]\nmode = "bridged"\nallowed_zones = []\n' > /tmp/bridged.toml
    rauha zone create --name a --policy /tmp/bridged.toml > /dev/null &&
        rauha zone create --name b --policy /tmp/bridged.toml > /dev/null &&
        a_id=$(rauha zone inspect a | json_field numeric_id) &&
        b_id=$(rauha zone inspect b | json_field numeric_id) &&
        a_ip=$(rauha zone inspect a | json_field address) &&
        b_ip=$(rauha zone inspect b | json_field address) &&
        [ -n "$a_id" ] && [ -n "$b_id" ] && [ -n "$b_ip" ] &&
        echo "zones a=$a_id ($a_ip) b=$b_id ($b_ip)"
}

run_containers() {
    rauha run -d --zone a --name a1 busybox sleep 1000 > /dev/null &&
        rauha run -d --zone b --name b1 busybox sh -c 'nc -ll -p 8080 -e true' > /dev/null &&
        i=0 && while [ -z "$(container_pid "$b_id")" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done &&
        a_pid=$(container_pid "$a_id") && b_pid=$(container_pid "$b_id") &&
        [ -n "$a_pid" ] && [ -n "$b_pid" ] && echo "pids a1=$a_pid b1=$b_pid"
}

# ---- attack probes: each runs as a zone-A task (leaf cgroup $cg/zone-A/probe) against zone B
probe_file_open() { in_zone_with_b_root "$cg/zone-$a_id/probe" ': < /etc/passwd'; }
probe_exec() { in_zone_with_b_root "$cg/zone-$a_id/probe" '/bin/busybox true'; }
probe_kill() { in_zone "$cg/zone-$a_id/probe" "kill -0 $b_pid"; }
probe_ptrace() { in_zone "$cg/zone-$a_id/probe" ": < /proc/$b_pid/environ"; }
probe_cgroup_procs() { in_zone "$cg/zone-$a_id/probe" "echo \$\$ > $cg/zone-$b_id/probe/cgroup.procs"; }
probe_connect() { # EPERM only from the LSM; refused/timeout/success mean "not denied by it"
    out=$(in_zone "$cg/zone-$a_id/probe" "nc -w 2 $b_ip 8080 < /dev/null" 2>&1)
    echo "$out"
    ! echo "$out" | grep -q 'not permitted'
}
# Same-zone and host counterparts (must always succeed).
same_file_open() { in_zone "$cg/zone-$a_id/probe" ": < /proc/$a_pid/root/etc/passwd"; }
same_exec() { in_zone "$cg/zone-$a_id/probe" "/proc/$a_pid/root/bin/busybox true"; }
same_kill() { in_zone "$cg/zone-$a_id/probe" "kill -0 $a_pid"; }
same_ptrace() { in_zone "$cg/zone-$a_id/probe" ": < /proc/$a_pid/environ"; }
same_cgroup_procs() { in_zone "$cg/zone-$a_id/probe" "echo \$\$ > $cg/zone-$a_id/probe2/cgroup.procs"; }
same_all() { same_file_open && same_exec && same_kill && same_ptrace && same_cgroup_procs; }
host_all() ( # a subshell: a failed redirection on `:` ends only it
    : < "/proc/$b_pid/root/etc/passwd" && "/proc/$b_pid/root/bin/busybox" true &&
        kill -0 "$b_pid" && : < "/proc/$b_pid/environ" &&
        sh -c "echo \$\$ > $cg/zone-$b_id/probe/cgroup.procs" && nc -w 2 "$b_ip" 8080 < /dev/null
)
# Every attack succeeds while no LSM layer is there (the probes bypass the always-on layers).
# Not connect: the zone's cgroup-BPF connect4 program (an always-on layer on the zone cgroup the
# probe joins) may refuse it with the same EPERM; which layer denied is told by the deny event
# (deny.socket_connect vs deny.connect4), which the event checks require.
probes_all_succeed() {
    probe_file_open && probe_exec && probe_kill && probe_ptrace && probe_cgroup_procs
}

# `rauha info`: "  lsm: active" or "  lsm: unavailable (REASON)"
lsm_active() { grep -x '  lsm: active' /tmp/info.txt || { grep '^  lsm' /tmp/info.txt; return 1; }; }
lsm_unavailable() { grep '^  lsm: unavailable (.*bpf' /tmp/info.txt || { grep '^  lsm' /tmp/info.txt; return 1; }; }

# `rauha zone verify a --json`, flattened to one line without blanks for busybox grep: the
# report must say the zone is isolated and, for the LSM layer, either that it is active and
# held at least one attack (`held_by` names it on a passed check) or, with EXPECT=unavailable,
# that it is inactive, naming bpf missing from the LSM list, and held nothing.
verify_reports_lsm() {
    rauha zone verify a --json > /tmp/verify.json 2>&1
    status=$?
    report=$(tr -d ' \n' < /tmp/verify.json)
    echo "$report" | grep -q '^{"zone":"a","is_isolated":true,' && [ $status = 0 ] || {
        not_held=$(echo "$report" | grep -o '"name":"[a-z_]*","boundary":"[a-z]*","passed":false,"required":true,"skipped":""' | cut -d'"' -f4 | tr '\n' ' ')
        echo "not isolated (exit $status): ${not_held:-$(tail -1 /tmp/verify.json)}"
        return 1
    }
    lsm=$(echo "$report" | grep -o '{"name":"lsm","active":[a-z]*,"reason":"[^"]*"}')
    held=$(echo "$report" | grep -o '"passed":true,[^}]*"held_by":\[[^]]*"lsm"' | wc -l)
    if [ "$1" = active ]; then
        [ "$lsm" = '{"name":"lsm","active":true,"reason":""}' ] && [ "$held" -gt 0 ] ||
            { echo "lsm layer: ${lsm:-missing}, held $held attacks"; return 1; }
    else
        echo "$lsm" | grep -q '"active":false,"reason":".*bpf' && [ "$held" = 0 ] ||
            { echo "lsm layer: ${lsm:-missing}, held $held attacks"; return 1; }
    fi
}

# The deny events so far, one per line: deny.HOOK zone=Z ... (`rauha events`: "TIME TYPE ZONE
# MESSAGE").
deny_events() {
    rauha events 2>&1 | awk '$2 ~ /^deny\./ { t = $2; z = $3; $1 = $2 = $3 = ""; print t, "zone=" z, $0 }'
}
event_seen() { # event_seen HOOK ZONE_ID ZONE_NAME (the zone may be shown by id or by name)
    deny_events | grep -qE "deny\.$1 .*zone=($2|$3)( |\$)" || {
        echo "no deny.$1 event from zone $2; events: $(deny_events | tr '\n' ';')"
        return 1
    }
}

# policy apply lets a→b and b→a; the LSM comms map must follow without restarting anything.
allow_comms_live() {
    printf '[network]\nmode = "bridged"\nallowed_zones = ["b"]\n' > /tmp/a.toml
    printf '[network]\nmode = "bridged"\nallowed_zones = ["a"]\n' > /tmp/b.toml
    rauha policy apply --zone a /tmp/a.toml && rauha policy apply --zone b /tmp/b.toml &&
        probe_connect
}

# bench LABEL: the open/close and fork+exec cost for a zone-A task on zone A's own files
# (/tools/lsm-bench, packaging/vm/lsm-bench.c), as one "BENCH LABEL open_ns=..." line.
bench() {
    out=$(in_zone "$cg/zone-$a_id/bench" "exec /tools/lsm-bench /proc/$a_pid/root/etc/passwd \
        /proc/$a_pid/root/bin/busybox 8000 100" 2>&1) || { echo "$out"; return 1; }
    echo "BENCH $1 $out" >> /tmp/bench.txt
}

run_checks() {
    if [ "$expect_lsm" = 1 ]; then plan=36; else plan=14; fi
    echo
    echo "PLAN $plan"
    check modules-loaded sh -c 'for m in $(cat /lib/modules/load-order); do insmod /lib/modules/$m.ko || exit 1; done'
    if [ "$expect_lsm" = 1 ]; then
        check lsm-list-has-bpf grep -q bpf /sys/kernel/security/lsm
    else
        check lsm-list-lacks-bpf sh -c '! grep -q bpf /sys/kernel/security/lsm'
    fi
    check daemon-started start_daemon
    check image-import rauha image import /images/busybox --tag busybox
    check zones-created setup_zones
    check containers-running run_containers
    mkdir -p "$cg/zone-$a_id/probe" "$cg/zone-$a_id/probe2" "$cg/zone-$a_id/bench" "$cg/zone-$b_id/probe"
    # Always-on layers, from inside the containers (the normal path, no privileged probe).
    check same-zone-exec rauha exec a1 cat /etc/passwd
    # Each prints one word from inside container a1; only the expected word passes (so a
    # broken exec cannot pass as "denied").
    check always-on-pid-ns in_a1 hidden "kill -0 $b_pid 2>/dev/null || [ -e /proc/$b_pid ] && echo visible || echo hidden"
    check always-on-files in_a1 refused "(: 2>/dev/null < /proc/$b_pid/root/etc/passwd) 2>/dev/null && echo opened || echo refused"
    check always-on-cgroupfs-ro in_a1 refused "(echo 1 > /sys/fs/cgroup/cgroup.procs) 2>/dev/null && echo moved || echo refused"
    check always-on-net-isolated in_a1 blocked "nc -w 2 $b_ip 8080 < /dev/null 2>/dev/null && echo connected || echo blocked"

    if [ "$expect_lsm" = 0 ]; then
        # Without the LSM layer the privileged probes get through: they are real attacks.
        check probes-allowed-without-lsm probes_all_succeed
        check lsm-reported-unavailable lsm_unavailable
        check verify-lsm-unavailable verify_reports_lsm unavailable
        return
    fi
    check lsm-reported-active lsm_active
    check verify-lsm-active-and-holding verify_reports_lsm active
    denied lsm-file_open-cross-zone probe_file_open
    denied lsm-exec-cross-zone probe_exec
    denied lsm-task_kill-cross-zone probe_kill
    # ptrace read access to /proc/PID/environ fails with EACCES when ptrace_may_access refuses.
    denied_with 'not permitted\|Permission denied' EPERM/EACCES lsm-ptrace-cross-zone probe_ptrace
    denied lsm-cgroup_procs-cross-zone probe_cgroup_procs
    denied lsm-socket_connect-cross-zone in_zone "$cg/zone-$a_id/probe" "nc -w 2 $b_ip 8080 < /dev/null"
    check lsm-same-zone-allowed same_all
    check lsm-host-allowed host_all
    check event-file_open event_seen file_open "$a_id" a
    check event-task_kill event_seen task_kill "$a_id" a
    check event-ptrace event_seen ptrace_access_check "$a_id" a
    check event-cgroup_procs event_seen cgroup_procs "$a_id" a
    check event-socket_connect event_seen socket_connect "$a_id" a
    check comms-allowed-live allow_comms_live
    # The cost, and the probes' honesty: the daemon owns the programs' links, so stopping it
    # detaches them. Restarted, it re-adopts the containers and registers their roots again.
    # Two rounds of with/without, so the spread of the ratio shows.
    check bench-with-lsm bench with_lsm
    check daemon-stopped stop_daemon
    check probes-allowed-without-lsm probes_all_succeed
    check bench-without-lsm bench without_lsm
    check daemon-restarted start_daemon
    denied lsm-file_open-after-restart probe_file_open
    check bench-with-lsm-2 bench with_lsm
    check daemon-stopped-2 stop_daemon
    check bench-without-lsm-2 bench without_lsm
    cat /tmp/bench.txt
}
