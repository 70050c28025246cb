// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel half of a hybrid IoT ingress (issue 4, example VNF 3; EVE025
 * 5.6.1): UDP datagrams to the ingress port are checked in XDP before the
 * network stack sees them. A datagram too short for the header, or without
 * the magic "NFI1", is malformed; one from a device not in `devices` is
 * unauthorised; both are dropped here, counted, and never wake user space.
 * The rest go on to the user-space half, a Python function of the same
 * application bound to the same port by a UDP trigger.
 *
 *   datagram: "NFI1" | device id (be32) | reading (text)
 *
 *   settings (configuration) array[1]: the guarded UDP port (0: guard nothing)
 *   devices  (configuration) hash:     device id -> allowed (non-zero)
 *   verdicts (counters)      percpu array[3]: 0 passed, 1 malformed, 2 unauthorised
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

enum { PASSED = 0, MALFORMED = 1, UNAUTHORISED = 2 };

struct settings {
	__be16 port;
	__u16 pad;
};

struct device {
	__u32 allowed;
};

struct iot_header {
	__u8 magic[4];
	__be32 device;
};

struct verdict {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);
	__type(value, struct device);
} devices SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
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
int xdp_iot_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	struct iot_header *hdr;
	struct settings *cfg;
	struct device *dev;
	struct udphdr *udp;
	struct iphdr *ip;
	__u32 zero = 0;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg || cfg->port == 0 || udp->dest != cfg->port)
		return XDP_PASS;

	hdr = (void *)(udp + 1);
	if ((void *)(hdr + 1) > data_end || hdr->magic[0] != 'N' || hdr->magic[1] != 'F' ||
	    hdr->magic[2] != 'I' || hdr->magic[3] != '1')
		return verdict(MALFORMED, len, XDP_DROP);
	dev = bpf_map_lookup_elem(&devices, &hdr->device);
	if (!dev || !dev->allowed)
		return verdict(UNAUTHORISED, len, XDP_DROP);
	return verdict(PASSED, len, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
