/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Map keys, map values and event records shared by the BPF programs and the daemon.
 *
 * Each struct here is mirrored exactly once on the Rust side by a #[repr(C)] struct in
 * src/enforce/ (the mirror names the struct it copies). Fields are ordered and padded
 * explicitly so that C and Rust agree without relying on implicit padding: every padding
 * byte is a named field that both sides zero, because hash and LPM-trie keys compare bytes.
 * Include after vmlinux.h (for the __uNN types).
 */
#ifndef RAUHA_H
#define RAUHA_H

/* Access bits of a cgroup/dev request; the kernel's BPF_DEVCG_ACC_* values. */
#define RAUHA_DEV_ACC_MKNOD 1
#define RAUHA_DEV_ACC_READ 2
#define RAUHA_DEV_ACC_WRITE 4

/* Device kinds of a cgroup/dev request; the kernel's BPF_DEVCG_DEV_* values. */
#define RAUHA_DEV_BLOCK 1
#define RAUHA_DEV_CHAR 2

/* A minor number that matches every minor of its major in the device map. */
#define RAUHA_DEV_ANY_MINOR 0xffffffffU

/* Key of the extra-device allow map (value: __u32 access mask of RAUHA_DEV_ACC_* bits). */
struct rauha_dev_key {
	__u32 kind;  /* RAUHA_DEV_BLOCK or RAUHA_DEV_CHAR */
	__u32 major;
	__u32 minor; /* or RAUHA_DEV_ANY_MINOR */
};

/*
 * Key of the egress LPM trie (value: __u8, 1 = allowed).
 * The matched data is port (network order) + pad + address: a rule for any port stores
 * port 0 and a prefix covering 32 bits + the address prefix; a rule for one port stores
 * that port with the same prefix length. A lookup tries the destination port, then port 0.
 * IPv4 addresses are stored IPv4-mapped (::ffff:a.b.c.d) so one trie serves both families
 * and IPv4-mapped destinations reached through IPv6 sockets meet the IPv4 rules.
 */
struct rauha_egress_key {
	__u32 prefixlen;
	__u16 port_be;
	__u16 pad;
	__u8 addr[16];
};

/* Key of the peer-address map and the zone-IP map: an IPv6 or IPv4-mapped address. */
struct rauha_addr_key {
	__u8 addr[16];
};

/* Key of the allowed-comms map (value: __u8, 1 = allowed): source zone may reach target zone. */
struct rauha_comm_key {
	__u32 src_zone;
	__u32 dst_zone;
};

/* Bits of the per-zone flags map (key: __u32 zone id, value: __u32 flags). */
#define RAUHA_ZONE_F_PTRACE_SELF 1 /* ptrace attach allowed between tasks of the same zone */

/* Per-zone token bucket of the deny-event rate limit (key: __u32 zone id). */
struct rauha_rate_state {
	__u64 last_ns;    /* bpf_ktime_get_ns() at the last refill */
	__u64 credit_ns;  /* saved time credit; an event costs RAUHA_EVENT_COST_NS */
	__u64 suppressed; /* events dropped since the last one emitted */
};

/* Rate limit: at most 1e9 / RAUHA_EVENT_COST_NS events a second per zone, bursts of
 * RAUHA_EVENT_BURST. */
#define RAUHA_EVENT_COST_NS 10000000ULL /* 100 events/s */
#define RAUHA_EVENT_BURST 64ULL
#define RAUHA_RATE_MAX_ZONES 4096
#define RAUHA_EVENTS_RING_BYTES (256 * 1024)

/* Which hook denied; the `hook` field of a deny event. */
enum rauha_hook {
	RAUHA_HOOK_DEVICE = 1,
	RAUHA_HOOK_SYSCTL = 2,
	RAUHA_HOOK_CONNECT4 = 3,
	RAUHA_HOOK_CONNECT6 = 4,
	RAUHA_HOOK_SENDMSG4 = 5,
	RAUHA_HOOK_SENDMSG6 = 6,
	RAUHA_HOOK_FILE_OPEN = 7,
	RAUHA_HOOK_BPRM_CHECK = 8,
	RAUHA_HOOK_TASK_KILL = 9,
	RAUHA_HOOK_PTRACE = 10,
	RAUHA_HOOK_SOCKET_CONNECT = 11,
	RAUHA_HOOK_CGROUP_PROCS = 12,
};

#define RAUHA_EVENT_NAME_LEN 64

/*
 * One deny, as written into the ring buffer. `target` and `name` depend on the hook:
 *   DEVICE: target = kind << 48 | major << 24 | minor, access bits in `aux`
 *   SYSCTL: name = sysctl path (e.g. "kernel/hostname")
 *   CONNECT*, SENDMSG*, SOCKET_CONNECT: addr + port_be (+ target = destination zone for LSM)
 *   FILE_OPEN, BPRM_CHECK: target = s_dev of the file's superblock, aux = file zone, name = file name
 *   TASK_KILL, PTRACE: target = target tgid, aux = target zone (0 = none), TASK_KILL: signal in port_be
 *   CGROUP_PROCS: target = cgroup id of the directory, name = file name
 */
struct rauha_deny_event {
	__u64 ts_ns;
	__u64 target;
	__u64 suppressed; /* events of this zone dropped by the rate limit before this one */
	__u32 zone_id;
	__u32 hook;
	__u32 pid; /* thread-group id of the denied task */
	__u32 aux;
	__u8 addr[16];
	__u16 port_be;
	__u16 family;
	__u32 pad;
	char name[RAUHA_EVENT_NAME_LEN];
};

/* The Rust mirrors assert the same sizes; a mismatch fails both builds. */
_Static_assert(sizeof(struct rauha_dev_key) == 12, "rauha_dev_key layout");
_Static_assert(sizeof(struct rauha_egress_key) == 24, "rauha_egress_key layout");
_Static_assert(sizeof(struct rauha_addr_key) == 16, "rauha_addr_key layout");
_Static_assert(sizeof(struct rauha_comm_key) == 8, "rauha_comm_key layout");
_Static_assert(sizeof(struct rauha_rate_state) == 24, "rauha_rate_state layout");
_Static_assert(sizeof(struct rauha_deny_event) == 128, "rauha_deny_event layout");

#endif /* RAUHA_H */
