// SPDX-License-Identifier: GPL-2.0
/*
 * A per-source UDP rate limiter against floods (issue 4, example VNF 2;
 * EVE025 4.3.5, 5.7).
 *
 * Every IPv4 source address has a token bucket: it fills at `rate_pps`
 * tokens a second up to `burst`, and each UDP datagram takes one token or is
 * dropped at the XDP hook. Tokens are kept in nano-tokens (1e9 per packet) so
 * that the refill is exact integer arithmetic. Buckets live in an LRU hash:
 * a flood from many spoofed sources evicts the oldest buckets instead of
 * filling the map. A rate of 0 (the state before any configuration) limits
 * nothing. Other traffic passes untouched.
 *
 *   limits   (configuration) array[1]:  struct limit  {rate_pps, burst}
 *   buckets  (state)         LRU hash:  source address -> struct bucket
 *   verdicts (counters)      percpu array[2]: 0 passed, 1 dropped
 *
 * Two CPUs refilling the same bucket at the same instant may both take the
 * last token: the limit is exact per CPU and approximate across CPUs, which
 * is what a flood guard needs (no lock on the fast path).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NANO 1000000000ULL
/* a bucket idle longer than this is full anyway; bounds the multiplication */
#define MAX_IDLE_NS (10 * NANO)

struct limit {
	__u64 rate_pps;
	__u64 burst;
};

struct bucket {
	__u64 tokens;   /* nano-tokens */
	__u64 last_ns;
};

struct verdict {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct limit);
} limits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct verdict);
} verdicts SEC(".maps");

static __always_inline int verdict(__u32 slot, __u64 len, int action)
{
	struct verdict *v = bpf_map_lookup_elem(&verdicts, &slot);

	if (v) {
		v->packets += 1;
		v->bytes += len;
	}
	return action;
}

SEC("xdp")
int xdp_ratelimit(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct limit *limit;
	struct bucket *b;
	__u32 zero = 0;
	__u64 now, full, elapsed;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;

	limit = bpf_map_lookup_elem(&limits, &zero);
	if (!limit || limit->rate_pps == 0)
		return verdict(0, len, XDP_PASS);
	now = bpf_ktime_get_ns();
	full = limit->burst * NANO;

	b = bpf_map_lookup_elem(&buckets, &ip->saddr);
	if (!b) {
		struct bucket fresh = { .tokens = full > NANO ? full - NANO : 0, .last_ns = now };

		if (limit->burst == 0)
			return verdict(1, len, XDP_DROP);
		bpf_map_update_elem(&buckets, &ip->saddr, &fresh, BPF_ANY);
		return verdict(0, len, XDP_PASS);
	}
	elapsed = now - b->last_ns;
	if (elapsed > MAX_IDLE_NS)
		elapsed = MAX_IDLE_NS;
	b->tokens += elapsed * limit->rate_pps;
	if (b->tokens > full)
		b->tokens = full;
	b->last_ns = now;
	if (b->tokens < NANO)
		return verdict(1, len, XDP_DROP);
	b->tokens -= NANO;
	return verdict(0, len, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
