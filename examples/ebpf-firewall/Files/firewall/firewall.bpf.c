// SPDX-License-Identifier: GPL-2.0
/*
 * A stateless firewall on the 5-tuple, for XDP and tc (issue 4, example VNF 1;
 * EVE025 4.3.5, 5.7).
 *
 * A rule matches (source address, destination address, source port,
 * destination port, IP protocol) of an IPv4 packet; a zero address or port
 * is a wildcard, the protocol is always exact. A packet is looked up with
 * every combination of wildcards, most specific first (four fields exact,
 * then three, ...), and the first rule found decides: DROP or PASS. A packet
 * no rule matches passes (default pass); so do IPv6 and non-IP frames.
 * Every rule names a counter slot; slot 0 counts packets no rule matched.
 *
 *   rules     (configuration) hash:  struct fw_key -> struct fw_rule
 *   counters  (counters)      percpu array: fw_rule.counter -> struct fw_counter
 *
 * The user-space side reconfigures the firewall live by updating `rules`
 * (EVE025 6.6.1: a VNF reconfigured through its maps, not by reloading) and
 * reads per-CPU counters from `counters`, summing over CPUs. The same logic
 * runs at the XDP hook (xdp_firewall) and at a tc hook (tc_firewall), which
 * also sees egress traffic.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_RULES 1024

enum fw_action {
	FW_PASS = 0,
	FW_DROP = 1,
};

struct fw_key {
	__be32 saddr;  /* 0: any */
	__be32 daddr;  /* 0: any */
	__be16 sport;  /* 0: any */
	__be16 dport;  /* 0: any */
	__u8 proto;    /* IPPROTO_UDP (17), IPPROTO_TCP (6), ...; exact */
	__u8 pad[3];   /* always 0 */
};

struct fw_rule {
	__u32 action;  /* enum fw_action */
	__u32 counter; /* index into `counters`, 1..MAX_RULES-1 */
};

struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RULES);
	__type(key, struct fw_key);
	__type(value, struct fw_rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct fw_counter);
} counters SEC(".maps");

/* wildcard patterns, most specific first: bit 3 saddr, 2 daddr, 1 sport, 0 dport exact */
#define PATTERNS 16
static const __u8 patterns[PATTERNS] = {
	0xf, 0xe, 0xd, 0xb, 0x7, 0xc, 0xa, 0x9, 0x6, 0x5, 0x3, 0x8, 0x4, 0x2, 0x1, 0x0,
};

static __always_inline void count(__u32 slot, __u64 len)
{
	struct fw_counter *c = bpf_map_lookup_elem(&counters, &slot);

	if (c) { /* per-CPU slot: no atomics needed */
		c->packets += 1;
		c->bytes += len;
	}
}

/* FW_DROP or FW_PASS for the frame in [data, data_end). */
static __always_inline int classify(void *data, void *data_end)
{
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	struct fw_key pkt = {};
	struct iphdr *ip;
	void *l4;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return FW_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return FW_PASS;
	pkt.saddr = ip->saddr;
	pkt.daddr = ip->daddr;
	pkt.proto = ip->protocol;
	l4 = (void *)ip + ip->ihl * 4;
	/* later fragments carry no L4 header: their ports stay 0 */
	if (!(ip->frag_off & bpf_htons(0x1fff))) {
		if (ip->protocol == IPPROTO_UDP) {
			struct udphdr *udp = l4;

			if ((void *)(udp + 1) > data_end)
				return FW_PASS;
			pkt.sport = udp->source;
			pkt.dport = udp->dest;
		} else if (ip->protocol == IPPROTO_TCP) {
			struct tcphdr *tcp = l4;

			if ((void *)(tcp + 1) > data_end)
				return FW_PASS;
			pkt.sport = tcp->source;
			pkt.dport = tcp->dest;
		}
	}

#pragma unroll
	for (int i = 0; i < PATTERNS; i++) {
		__u8 p = patterns[i];
		struct fw_key key = {
			.saddr = (p & 8) ? pkt.saddr : 0,
			.daddr = (p & 4) ? pkt.daddr : 0,
			.sport = (p & 2) ? pkt.sport : 0,
			.dport = (p & 1) ? pkt.dport : 0,
			.proto = pkt.proto,
		};
		struct fw_rule *r = bpf_map_lookup_elem(&rules, &key);

		if (r) {
			count(r->counter, len);
			return r->action == FW_DROP ? FW_DROP : FW_PASS;
		}
	}
	count(0, len);
	return FW_PASS;
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	return classify(data, data_end) == FW_DROP ? XDP_DROP : XDP_PASS;
}

SEC("tc")
int tc_firewall(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	return classify(data, data_end) == FW_DROP ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
