// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * cgroup/connect4, connect6, sendmsg4, sendmsg6: the zone's egress allow-list, enforced on
 * the zone's cgroup2 node as a second network layer beside nftables (and the only one for
 * host-mode zones). A destination passes if it is loopback, a peer zone's address, or
 * matches an `allowed_egress` rule in the LPM trie; otherwise the call fails with EPERM.
 *
 * One loaded instance per zone, with its own maps: the program attached to the zone node
 * runs for every container cgroup below it, so it needs no cgroup-id lookup to find its
 * zone's rules (a shared program keyed by bpf_get_current_cgroup_id() would see container
 * cgroup ids, not the zone's).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "events.bpf.h"
#include "cgroup_zone.bpf.h"

char LICENSE[] SEC("license") __weak = "GPL";

#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct rauha_egress_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} rauha_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct rauha_addr_key);
	__type(value, __u8);
} rauha_peers SEC(".maps");

/* Full prefix of an egress key: 16 bits port + 16 bits pad + 128 bits address. */
#define EGRESS_FULL_PREFIX (32 + 128)

static __always_inline int is_loopback(const __u8 *a)
{
	int i;

	/* IPv4-mapped 127.0.0.0/8 */
	if (a[10] == 0xff && a[11] == 0xff && a[12] == 127) {
		for (i = 0; i < 10; i++)
			if (a[i])
				return 0;
		return 1;
	}
	/* ::1 */
	for (i = 0; i < 15; i++)
		if (a[i])
			return 0;
	return a[15] == 1;
}

static __always_inline int destination_allowed(const __u8 *addr, __u16 port_be)
{
	struct rauha_egress_key key = { .prefixlen = EGRESS_FULL_PREFIX, .port_be = port_be };
	struct rauha_addr_key peer = {};

	if (is_loopback(addr))
		return 1;
	__builtin_memcpy(peer.addr, addr, 16);
	if (bpf_map_lookup_elem(&rauha_peers, &peer))
		return 1;
	__builtin_memcpy(key.addr, addr, 16);
	if (bpf_map_lookup_elem(&rauha_egress, &key))
		return 1;
	/* Rules without a port are stored with port 0. */
	key.port_be = 0;
	return bpf_map_lookup_elem(&rauha_egress, &key) != NULL;
}

static __always_inline int check(__u8 *addr, __u16 port_be, __u16 family, __u32 hook)
{
	struct rauha_deny_event *ev;

	if (destination_allowed(addr, port_be))
		return 1;
	ev = rauha_event_reserve(instance_zone(), hook);
	if (ev) {
		__builtin_memcpy(ev->addr, addr, 16);
		ev->port_be = port_be;
		ev->family = family;
		bpf_get_current_comm(ev->name, sizeof(ev->name));
		bpf_ringbuf_submit(ev, 0);
	}
	return 0;
}

static __always_inline int check4(struct bpf_sock_addr *ctx, __u32 hook)
{
	__u8 addr[16] = {};
	__u32 ip = ctx->user_ip4;

	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip, 4);
	return check(addr, (__u16)ctx->user_port, AF_INET, hook);
}

static __always_inline int check6(struct bpf_sock_addr *ctx, __u32 hook)
{
	__u32 words[4];

	/* The context allows only 4-byte loads of user_ip6. */
	words[0] = ctx->user_ip6[0];
	words[1] = ctx->user_ip6[1];
	words[2] = ctx->user_ip6[2];
	words[3] = ctx->user_ip6[3];
	return check((__u8 *)words, (__u16)ctx->user_port, AF_INET6, hook);
}

SEC("cgroup/connect4")
int rauha_connect4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, RAUHA_HOOK_CONNECT4);
}

SEC("cgroup/sendmsg4")
int rauha_sendmsg4(struct bpf_sock_addr *ctx)
{
	return check4(ctx, RAUHA_HOOK_SENDMSG4);
}

SEC("cgroup/connect6")
int rauha_connect6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, RAUHA_HOOK_CONNECT6);
}

SEC("cgroup/sendmsg6")
int rauha_sendmsg6(struct bpf_sock_addr *ctx)
{
	return check6(ctx, RAUHA_HOOK_SENDMSG6);
}
