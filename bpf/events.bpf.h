/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Deny-event plumbing shared by every Rauha BPF object: one ring buffer and one per-zone
 * token bucket. Every object declares both maps, and the daemon creates them once and hands
 * the same fds to each object before load (bpf_map__reuse_fd), so all layers report into one
 * ring buffer and one zone's budget is shared across its layers.
 *
 * The definitions are __weak because build.rs links several sources that include this header
 * into one object (the cgroup programs of a zone); the linker keeps one copy.
 */
#ifndef RAUHA_EVENTS_BPF_H
#define RAUHA_EVENTS_BPF_H

#include "rauha.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, RAUHA_EVENTS_RING_BYTES);
} rauha_events SEC(".maps") __weak;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RAUHA_RATE_MAX_ZONES);
	__type(key, __u32);
	__type(value, struct rauha_rate_state);
} rauha_rate SEC(".maps") __weak;

/*
 * Reserves a deny event for `zone_id` with the common fields filled in, or returns NULL when
 * the zone has spent its budget or the ring is full (the drop is counted and reported with
 * the zone's next event). The bucket is updated without a lock: two CPUs racing may both
 * spend the same credit, which only loosens the limit slightly; a lock would cost every deny.
 */
static __always_inline struct rauha_deny_event *rauha_event_reserve(__u32 zone_id, __u32 hook)
{
	const __u64 cap = RAUHA_EVENT_COST_NS * RAUHA_EVENT_BURST;
	struct rauha_rate_state *st;
	struct rauha_deny_event *ev;
	__u64 now = bpf_ktime_get_ns();
	__u64 credit, suppressed;

	st = bpf_map_lookup_elem(&rauha_rate, &zone_id);
	if (!st) {
		struct rauha_rate_state fresh = { .last_ns = now, .credit_ns = cap };

		bpf_map_update_elem(&rauha_rate, &zone_id, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&rauha_rate, &zone_id);
		if (!st)
			return NULL;
	}

	credit = st->credit_ns;
	if (now > st->last_ns)
		credit += now - st->last_ns;
	if (credit > cap)
		credit = cap;
	st->last_ns = now;
	if (credit < RAUHA_EVENT_COST_NS) {
		st->credit_ns = credit;
		__sync_fetch_and_add(&st->suppressed, 1);
		return NULL;
	}
	st->credit_ns = credit - RAUHA_EVENT_COST_NS;

	ev = bpf_ringbuf_reserve(&rauha_events, sizeof(*ev), 0);
	if (!ev) {
		__sync_fetch_and_add(&st->suppressed, 1);
		return NULL;
	}
	/* Ring memory is not zeroed; the record must not leak stale kernel bytes. */
	__builtin_memset(ev, 0, sizeof(*ev));
	suppressed = st->suppressed;
	if (suppressed)
		__sync_fetch_and_add(&st->suppressed, -suppressed);
	ev->ts_ns = now;
	ev->suppressed = suppressed;
	ev->zone_id = zone_id;
	ev->hook = hook;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	return ev;
}

#endif /* RAUHA_EVENTS_BPF_H */
