// SPDX-License-Identifier: GPL-2.0
/*
 * BPF LSM programs: the zone boundary as kernel-wide hooks (DESIGN.md §5, eBPF LSM column).
 *
 * Requires kernel >= 6.1 with CONFIG_BPF_LSM=y, CONFIG_DEBUG_INFO_BTF=y and `bpf` in the active
 * LSM list (boot parameter `lsm=...,bpf`). CO-RE only: every kernel struct is read through
 * BPF_CORE_READ / preserve_access_index types from vmlinux.h, so libbpf relocates the field
 * offsets against the running kernel's BTF at load.
 *
 * These programs run for every task on the machine. Each one first resolves the caller's zone
 * and returns at once when the caller is in no zone, so host tasks are never affected; a
 * denial by an earlier BPF LSM program (non-zero `ret`) is kept.
 *
 * Zone identity: a zone is its cgroup2 node. All zone nodes sit at one cgroup2 depth (below
 * the daemon's cgroup parent), given at load as rauha_zone_level; a task's zone is the
 * `rauha_zones` entry of its cgroup's ancestor at that depth, so container cgroups below a zone
 * need no entries of their own. A file's zone is the `rauha_sb_zones` entry of its superblock's
 * device: a container rootfs is an overlay mount with its own anonymous s_dev, and every file
 * opened through it (copied-up or not) has an inode on that superblock.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "events.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define AF_INET 2
#define AF_INET6 10
#define PTRACE_MODE_ATTACH 0x02
#define CGROUP_SUPER_MAGIC 0x27e0eb
#define CGROUP2_SUPER_MAGIC 0x63677270
/* Deepest cgroup nesting below the zone level that is walked to find a task's zone. */
#define MAX_WALK 32
#define NAME_BUF 16

/* cgroup2 depth of the zone nodes (root = 0), set by the daemon before load; 0 = no zones. */
const volatile __u32 rauha_zone_level = 0;

/* cgroup2 id of a zone's node → zone id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAUHA_RATE_MAX_ZONES);
	__type(key, __u64);
	__type(value, __u32);
} rauha_zones SEC(".maps");

/* s_dev of a container rootfs superblock → zone id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} rauha_sb_zones SEC(".maps");

/* (source zone, destination zone) pairs allowed to connect. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct rauha_comm_key);
	__type(value, __u8);
} rauha_comms SEC(".maps");

/* Address of a zone (IPv6 or IPv4-mapped) → zone id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct rauha_addr_key);
	__type(value, __u32);
} rauha_zone_ips SEC(".maps");

/* zone id → RAUHA_ZONE_F_* flags. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RAUHA_RATE_MAX_ZONES);
	__type(key, __u32);
	__type(value, __u32);
} rauha_zone_flags SEC(".maps");

/*
 * An earlier BPF LSM program denied: keep the denial. Returned as the constant -EPERM rather
 * than `ret` itself because kernels since 6.12 verify that an LSM program's return value lies
 * in [-MAX_ERRNO, 0], and the verifier cannot bound an argument read from the context.
 */
static __always_inline int earlier_verdict(void)
{
	return -EPERM;
}

/* The zone of a cgroup2 cgroup (or of the cgroup's zone ancestor); 0 = none. */
static __always_inline __u32 cgroup_zone(struct cgroup *cg)
{
	__u32 level, *zone;
	__u64 id;
	int i;

	if (!cg || rauha_zone_level == 0)
		return 0;
	level = BPF_CORE_READ(cg, level);
	if (level < rauha_zone_level)
		return 0;
	for (i = 0; i < MAX_WALK && level > rauha_zone_level; i++) {
		cg = BPF_CORE_READ(cg, self.parent, cgroup);
		if (!cg)
			return 0;
		level--;
	}
	if (level != rauha_zone_level)
		return 0;
	id = BPF_CORE_READ(cg, kn, id);
	zone = bpf_map_lookup_elem(&rauha_zones, &id);
	return zone ? *zone : 0;
}

static __always_inline __u32 task_zone(struct task_struct *task)
{
	return cgroup_zone(BPF_CORE_READ(task, cgroups, dfl_cgrp));
}

static __always_inline __u32 current_zone(void)
{
	return task_zone(bpf_get_current_task_btf());
}

static __always_inline __u32 zone_flags(__u32 zone)
{
	__u32 *flags = bpf_map_lookup_elem(&rauha_zone_flags, &zone);

	return flags ? *flags : 0;
}

static __always_inline void emit_file(__u32 zone, __u32 hook, struct file *file, __u64 target,
				      __u32 aux)
{
	struct rauha_deny_event *ev = rauha_event_reserve(zone, hook);
	const unsigned char *name;

	if (!ev)
		return;
	ev->target = target;
	ev->aux = aux;
	name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	bpf_probe_read_kernel_str(ev->name, sizeof(ev->name), name);
	bpf_ringbuf_submit(ev, 0);
}

static __always_inline int name_is(const char *buf, const char *lit, int len_with_nul)
{
	int i;

	for (i = 0; i < NAME_BUF && i < len_with_nul; i++)
		if (buf[i] != lit[i])
			return 0;
	return 1;
}

/*
 * A zone task may open the task-membership files (cgroup.procs, cgroup.threads, v1 tasks)
 * only of cgroups inside its own zone: moving a task into another cgroup is the escape this
 * closes, and reading another cgroup's members leaks pids.
 */
static __always_inline int check_cgroup_file(struct file *file, __u32 zone, __u64 magic)
{
	char name[NAME_BUF] = {};
	struct kernfs_node *dir;
	struct cgroup *cg;
	__u64 cgid = 0;

	bpf_probe_read_kernel_str(name, sizeof(name),
				  BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (!name_is(name, "cgroup.procs", 13) && !name_is(name, "cgroup.threads", 15) &&
	    !name_is(name, "tasks", 6))
		return 0;

	/* A kernfs inode's i_private is its kernfs_node; a cgroup directory's priv is the cgroup. */
	dir = BPF_CORE_READ(file, f_path.dentry, d_parent, d_inode, i_private);
	cg = BPF_CORE_READ(dir, priv);
	cgid = BPF_CORE_READ(dir, id);
	/* v1 hierarchies number their nodes independently of cgroup2, so their ids could alias a
	 * zone's; a zone has no business in v1 membership files at all. */
	if (magic == CGROUP2_SUPER_MAGIC && cgroup_zone(cg) == zone)
		return 0;
	emit_file(zone, RAUHA_HOOK_CGROUP_PROCS, file, cgid, 0);
	return -EPERM;
}

static __always_inline int check_file(struct file *file, __u32 zone, __u32 hook)
{
	struct super_block *sb = BPF_CORE_READ(file, f_inode, i_sb);
	__u32 dev = BPF_CORE_READ(sb, s_dev);
	__u32 *file_zone = bpf_map_lookup_elem(&rauha_sb_zones, &dev);

	if (!file_zone || *file_zone == zone)
		return 0;
	emit_file(zone, hook, file, dev, *file_zone);
	return -EPERM;
}

SEC("lsm/file_open")
int BPF_PROG(rauha_file_open, struct file *file, int ret)
{
	__u32 zone;
	__u64 magic;

	if (ret)
		return earlier_verdict();
	zone = current_zone();
	if (!zone)
		return 0;
	magic = BPF_CORE_READ(file, f_inode, i_sb, s_magic);
	if (magic == CGROUP2_SUPER_MAGIC || magic == CGROUP_SUPER_MAGIC)
		return check_cgroup_file(file, zone, magic);
	return check_file(file, zone, RAUHA_HOOK_FILE_OPEN);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(rauha_bprm_check, struct linux_binprm *bprm, int ret)
{
	__u32 zone;

	if (ret)
		return earlier_verdict();
	zone = current_zone();
	if (!zone)
		return 0;
	return check_file(BPF_CORE_READ(bprm, file), zone, RAUHA_HOOK_BPRM_CHECK);
}

static __always_inline void emit_task(__u32 zone, __u32 hook, struct task_struct *target,
				      __u32 target_zone, __u16 sig)
{
	struct rauha_deny_event *ev = rauha_event_reserve(zone, hook);

	if (!ev)
		return;
	ev->target = BPF_CORE_READ(target, tgid);
	ev->aux = target_zone;
	ev->port_be = sig;
	BPF_CORE_READ_STR_INTO(&ev->name, target, comm);
	bpf_ringbuf_submit(ev, 0);
}

SEC("lsm/task_kill")
int BPF_PROG(rauha_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	__u32 zone, target_zone;

	if (ret)
		return earlier_verdict();
	zone = current_zone();
	if (!zone)
		return 0;
	target_zone = task_zone(p);
	if (target_zone == zone)
		return 0;
	emit_task(zone, RAUHA_HOOK_TASK_KILL, p, target_zone, (__u16)sig);
	return -EPERM;
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(rauha_ptrace_access_check, struct task_struct *child, unsigned int mode, int ret)
{
	__u32 zone, target_zone;

	if (ret)
		return earlier_verdict();
	zone = current_zone();
	if (!zone)
		return 0;
	target_zone = task_zone(child);
	/* Inside one zone, read-mode checks (ps reading /proc/PID/stat, fd, exe) stay allowed;
	 * attaching needs the zone's ptrace flag. */
	if (target_zone == zone &&
	    (!(mode & PTRACE_MODE_ATTACH) || (zone_flags(zone) & RAUHA_ZONE_F_PTRACE_SELF)))
		return 0;
	emit_task(zone, RAUHA_HOOK_PTRACE, child, target_zone, 0);
	return -EPERM;
}

SEC("lsm/socket_connect")
int BPF_PROG(rauha_socket_connect, struct socket *sock, struct sockaddr *address, int addrlen,
	     int ret)
{
	struct rauha_addr_key dst = {};
	struct rauha_comm_key pair = {};
	struct rauha_deny_event *ev;
	__u32 zone, *dst_zone;
	__u16 family, port_be;

	if (ret)
		return earlier_verdict();
	zone = current_zone();
	if (!zone)
		return 0;
	family = BPF_CORE_READ(address, sa_family);
	if (family == AF_INET) {
		struct sockaddr_in sin = {};

		/* Shorter addresses fail in the protocol's own checks. */
		if (addrlen < (int)sizeof(sin))
			return 0;
		bpf_probe_read_kernel(&sin, sizeof(sin), address);
		dst.addr[10] = 0xff;
		dst.addr[11] = 0xff;
		__builtin_memcpy(&dst.addr[12], &sin.sin_addr.s_addr, 4);
		port_be = sin.sin_port;
	} else if (family == AF_INET6) {
		struct sockaddr_in6 sin6 = {};

		/* 24 bytes: the RFC 2133 size without sin6_scope_id, which the kernel accepts. */
		if (addrlen < 24)
			return 0;
		bpf_probe_read_kernel(&sin6, 24, address);
		__builtin_memcpy(dst.addr, &sin6.sin6_addr, 16);
		port_be = sin6.sin6_port;
	} else {
		return 0;
	}

	dst_zone = bpf_map_lookup_elem(&rauha_zone_ips, &dst);
	if (!dst_zone || *dst_zone == zone)
		return 0;
	pair.src_zone = zone;
	pair.dst_zone = *dst_zone;
	if (bpf_map_lookup_elem(&rauha_comms, &pair))
		return 0;

	ev = rauha_event_reserve(zone, RAUHA_HOOK_SOCKET_CONNECT);
	if (ev) {
		__builtin_memcpy(ev->addr, dst.addr, 16);
		ev->port_be = port_be;
		ev->family = family;
		ev->target = *dst_zone;
		bpf_get_current_comm(ev->name, sizeof(ev->name));
		bpf_ringbuf_submit(ev, 0);
	}
	return -EPERM;
}
