// SPDX-License-Identifier: GPL-2.0
/*
 * A stateless XDP firewall (issue 4, example VNF 1; EVE025 4.3.5, 5.7).
 *
 * Rules are exact matches on (IP protocol, destination port), for IPv4 and
 * IPv6 (no extension headers), and say DROP or PASS. A packet no rule
 * matches passes (default pass). Every rule carries a counter slot; slot 0
 * counts the packets no rule matched.
 *
 *   rules     (configuration) hash:  struct rule_key   -> struct rule
 *   counters  (counters)      percpu array: rule.counter -> struct counter
 *
 * The user-space side reconfigures the firewall live by updating `rules`
 * (EVE025 6.6.1: a VNF reconfigured through its maps, not by reloading) and
 * reads per-CPU counters from `counters`, summing over CPUs.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_RULES 1024

enum fw_action {
	FW_PASS = 0,
	FW_DROP = 1,
};

struct rule_key {
	__u8 proto;   /* IPPROTO_UDP (17) or IPPROTO_TCP (6) */
	__u8 pad;     /* always 0 */
	__u16 dport;  /* destination port, network byte order */
};

struct rule {
	__u32 action;  /* enum fw_action */
	__u32 counter; /* index into `counters`, 1..MAX_RULES-1 */
};

struct counter {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RULES);
	__type(key, struct rule_key);
	__type(value, struct rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RULES);
	__type(key, __u32);
	__type(value, struct counter);
} counters SEC(".maps");

static __always_inline void count(__u32 slot, __u64 len)
{
	struct counter *c = bpf_map_lookup_elem(&counters, &slot);

	if (c) { /* per-CPU slot: no atomics needed */
		c->packets += 1;
		c->bytes += len;
	}
}

/* The L4 destination port at `l4`, or -1 when the header is cut short. */
static __always_inline int dest_port(void *l4, void *data_end, __u8 proto)
{
	if (proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;

		if ((void *)(udp + 1) > data_end)
			return -1;
		return udp->dest;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;

		if ((void *)(tcp + 1) > data_end)
			return -1;
		return tcp->dest;
	}
	return -1;
}

SEC("xdp")
int xdp_firewall(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	struct rule_key key = {};
	void *l4;
	int port;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			return XDP_PASS;
		/* later fragments carry no L4 header: leave them to the stack */
		if (ip->frag_off & bpf_htons(0x1fff))
			return XDP_PASS;
		key.proto = ip->protocol;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		key.proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		return XDP_PASS;
	}

	port = dest_port(l4, data_end, key.proto);
	if (port < 0) {
		count(0, len);
		return XDP_PASS;
	}
	key.dport = (__u16)port;

	struct rule *r = bpf_map_lookup_elem(&rules, &key);

	if (!r) {
		count(0, len);
		return XDP_PASS;
	}
	count(r->counter, len);
	return r->action == FW_DROP ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
