/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The zone identity of one loaded instance of the cgroup programs (cgroup_dev, cgroup_sysctl
 * and cgroup_sock, linked into one object by build.rs). It is a one-slot array map rather than
 * a load-time constant so that the daemon can load spare instances ahead of time and name
 * their zone only when it attaches them. Read only on the deny path, for the event.
 */
#ifndef RAUHA_CGROUP_ZONE_BPF_H
#define RAUHA_CGROUP_ZONE_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rauha_zone SEC(".maps") __weak;

static __always_inline __u32 instance_zone(void)
{
	__u32 slot = 0;
	__u32 *zone = bpf_map_lookup_elem(&rauha_zone, &slot);

	return zone ? *zone : 0;
}

#endif /* RAUHA_CGROUP_ZONE_BPF_H */
