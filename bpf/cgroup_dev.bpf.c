// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * cgroup/dev: the device allow-list of one zone, attached to the zone's cgroup2 node so it
 * covers every container cgroup below it. The built-in set (null zero full random urandom
 * tty ptmx, and pts) is compiled in so no map state can take it away; policy extras come from
 * `rauha_devices`. Everything else is denied (the caller sees EPERM).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "events.bpf.h"
#include "cgroup_zone.bpf.h"

char LICENSE[] SEC("license") __weak = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct rauha_dev_key);
	__type(value, __u32);
} rauha_devices SEC(".maps");

static __always_inline int builtin_allowed(__u32 kind, __u32 major, __u32 minor)
{
	if (kind != RAUHA_DEV_CHAR)
		return 0;
	switch (major) {
	case 1: /* null 1:3, zero 1:5, full 1:7, random 1:8, urandom 1:9 */
		return minor == 3 || minor == 5 || minor == 7 || minor == 8 || minor == 9;
	case 5: /* tty 5:0, ptmx 5:2 */
		return minor == 0 || minor == 2;
	case 136: /* pts: every Unix98 pty slave */
		return 1;
	default:
		return 0;
	}
}

SEC("cgroup/dev")
int rauha_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	__u32 kind = ctx->access_type & 0xffff;
	__u32 access = ctx->access_type >> 16;
	struct rauha_dev_key key = { .kind = kind, .major = ctx->major, .minor = ctx->minor };
	struct rauha_deny_event *ev;
	__u32 *mask;

	if (builtin_allowed(kind, ctx->major, ctx->minor))
		return 1;
	mask = bpf_map_lookup_elem(&rauha_devices, &key);
	if (mask && (access & ~*mask) == 0)
		return 1;
	key.minor = RAUHA_DEV_ANY_MINOR;
	mask = bpf_map_lookup_elem(&rauha_devices, &key);
	if (mask && (access & ~*mask) == 0)
		return 1;

	ev = rauha_event_reserve(instance_zone(), RAUHA_HOOK_DEVICE);
	if (ev) {
		ev->target = ((__u64)kind << 48) | ((__u64)ctx->major << 24) | ctx->minor;
		ev->aux = access;
		bpf_get_current_comm(ev->name, sizeof(ev->name));
		bpf_ringbuf_submit(ev, 0);
	}
	return 0;
}
