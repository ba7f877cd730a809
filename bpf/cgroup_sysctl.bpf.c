// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * cgroup/sysctl: a zone may read sysctls but never write them. Namespaced sysctls would only
 * change the zone's own namespaces, but the cheap blanket rule also closes the host-global
 * ones that a missing namespace or a kernel bug would expose.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "events.bpf.h"
#include "cgroup_zone.bpf.h"

char LICENSE[] SEC("license") __weak = "GPL";

SEC("cgroup/sysctl")
int rauha_sysctl(struct bpf_sysctl *ctx)
{
	struct rauha_deny_event *ev;

	if (!ctx->write)
		return 1;

	ev = rauha_event_reserve(instance_zone(), RAUHA_HOOK_SYSCTL);
	if (ev) {
		/* Flag 0: the full path below /proc/sys, e.g. "kernel/hostname". */
		bpf_sysctl_get_name(ctx, ev->name, sizeof(ev->name), 0);
		bpf_ringbuf_submit(ev, 0);
	}
	return 0;
}
