// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Veer packet path: Service frontends served to clients outside the node (NodePort,
 * LoadBalancer IP, externalIP), at tc ingress of the node's external interfaces.
 *
 * This program rewrites no packet. For the first packet of a flow to a frontend it picks a
 * backend from the same maps the socket programs read, and inserts a connection into the
 * kernel's own conntrack table with its NAT already decided (bpf_skb_ct_alloc,
 * bpf_ct_set_nat_info, bpf_ct_insert_entry). The packet then enters the IP layer, where
 * conntrack finds that entry and the kernel's NAT engine translates it and every later
 * packet of the flow, both ways, on whatever interface a reply arrives (a second NIC, a
 * CNI's tunnel), ICMP errors included. TCP/UDP state and timeouts are the kernel's; a SYN
 * that reuses the 5-tuple of a closing entry opens a new flow here (see serve). That engine
 * rewrites packets only in a network namespace where NAT hooks are registered: the agent
 * keeps an empty nftables nat table for that (docs/architecture.md).
 *
 * sessionAffinity ClientIP: the client is the packet's source address (kube-proxy's key);
 * a new flow from a client whose pick is younger than the timeout and still a member goes to
 * the same backend, and every new flow steered there refreshes the pick (sliding, as
 * kube-proxy's `recent --set` / `update @set`). Flows already open are conntrack's.
 *
 * Scope: a frontend key with scope VEER_SCOPE_EXTERNAL (written only where the external
 * set differs, i.e. externalTrafficPolicy Local) wins over the cluster-scope one.
 * eTP=Cluster: DNAT + SNAT to the node's address on the route to the backend.
 * eTP=Local (VEER_SVC_F_EXT_LOCAL): DNAT, the backend sees the client's address (its port
 * changes only where conntrack must make the reply tuple unique, see serve);
 * no local endpoint (VEER_SVC_F_EMPTY_DROP): the packet is dropped silently.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "veer_maps.h"
/* veer_services, veer_backends, veer_members, veer_source_ranges, veer_affinity: the socket
 * programs' maps, one definition, so this object reuses their pins. */
#include "veer_shared_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The packet path's own counters, indexed by enum veer_pkt_stat. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VEER_STATS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} veer_pkt_stats SEC(".maps");

/* ---- conntrack kfuncs (net/netfilter/nf_conntrack_bpf.c, nf_nat_bpf.c) ------------- */

/* Only ever handled through pointers; the kernel's BTF has the real layouts (CO-RE). The
 * TCP state is read to tell a closing entry from a live one. */
struct ip_ct_tcp {
	__u8 state; /* enum tcp_conntrack */
} __attribute__((preserve_access_index));

union nf_conntrack_proto {
	struct ip_ct_tcp tcp;
} __attribute__((preserve_access_index));

struct nf_conn {
	unsigned long status;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

struct nf_conn___init {
	struct nf_conn ct;
} __attribute__((preserve_access_index));

union nf_inet_addr {
	__u32 all[4];
	__be32 ip;
	__be32 ip6[4];
};

enum nf_nat_manip_type {
	NF_NAT_MANIP_SRC,
	NF_NAT_MANIP_DST,
};

/* The 12-byte form every kernel since 6.0 accepts (NF_BPF_CT_OPTS_SZ of 6.1). */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8  l4proto;
	__u8  dir;
	__u8  reserved[2];
};

#define CT_OPTS_SZ 12

extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *, struct bpf_sock_tuple *, __u32,
					 struct bpf_ct_opts *, __u32) __ksym;
extern struct nf_conn___init *bpf_skb_ct_alloc(struct __sk_buff *, struct bpf_sock_tuple *, __u32,
					       struct bpf_ct_opts *, __u32) __ksym;
extern struct nf_conn *bpf_ct_insert_entry(struct nf_conn___init *) __ksym;
extern void bpf_ct_release(struct nf_conn *) __ksym;
extern void bpf_ct_set_timeout(struct nf_conn___init *, __u32 timeout_ms) __ksym;
extern int bpf_ct_change_timeout(struct nf_conn *, __u32 timeout_ms) __ksym;
extern int bpf_ct_set_nat_info(struct nf_conn___init *, union nf_inet_addr *, int port,
			       enum nf_nat_manip_type) __ksym;

/* 6.8+: bpf_fib_lookup also fills in the source address the route would use. */
#ifndef BPF_FIB_LOOKUP_SRC
#define BPF_FIB_LOOKUP_SRC (1U << 4)
#endif

#define AF_INET  2
#define AF_INET6 10
#define NSEC_PER_SEC 1000000000ULL

static __always_inline void stat_inc(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&veer_pkt_stats, &stat);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline bool addr_is_v4(const struct veer_addr *a)
{
	return a->ip6[0] == 0 && a->ip6[1] == 0 && a->ip6[2] == bpf_htonl(0xffff);
}

/* IPv6 fragment header (RFC 8200 4.5; the kernel's struct frag_hdr is not UAPI). */
#define NEXTHDR_FRAGMENT 44
#define IPV6_FRAG_OFFSET 0xfff8 /* offset in 8-byte units, above the flags */

struct ipv6_frag_hdr {
	__u8   nexthdr;
	__u8   reserved;
	__be16 frag_off;
	__be32 identification;
};

/* What the first packet of a flow carries: enough to find the frontend and the conntrack entry. */
struct flow {
	struct bpf_sock_tuple tuple;   /* as the packet has it */
	struct veer_addr daddr;        /* destination, v4-mapped for IPv4 */
	__be16 dport;
	__u8 proto;
	bool v6;
	bool syn_only;                 /* TCP with SYN and no ACK: may open a flow */
};

static __always_inline int parse(struct __sk_buff *skb, struct flow *f)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	void *l4;
	__u8 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->ihl < 5)
			return -1;
		/* A non-first fragment has no ports; the first one is enough to open the flow,
		 * and conntrack (with defrag) handles the rest. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return -1;
		proto = ip->protocol;
		l4 = (void *)ip + ip->ihl * 4;
		f->tuple.ipv4.saddr = ip->saddr;
		f->tuple.ipv4.daddr = ip->daddr;
		f->daddr.ip6[0] = 0;
		f->daddr.ip6[1] = 0;
		f->daddr.ip6[2] = bpf_htonl(0xffff);
		f->daddr.ip6[3] = ip->daddr;
		f->v6 = false;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end)
			return -1;
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
		/* A datagram bigger than the path arrives in fragments, the first one with a
		 * fragment header before the UDP header. As for IPv4, the first fragment opens
		 * the flow and conntrack (with defrag) handles the rest; a later one has no ports.
		 * Other extension headers are left to the kernel: Services carry plain TCP/UDP. */
		if (proto == NEXTHDR_FRAGMENT) {
			struct ipv6_frag_hdr *fh = l4;

			if ((void *)(fh + 1) > end || (fh->frag_off & bpf_htons(IPV6_FRAG_OFFSET)))
				return -1;
			proto = fh->nexthdr;
			l4 = fh + 1;
		}
		__builtin_memcpy(f->tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(f->tuple.ipv6.daddr, &ip6->daddr, 16);
		__builtin_memcpy(f->daddr.ip6, &ip6->daddr, 16);
		f->v6 = true;
	} else {
		return -1;
	}

	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return -1;
		f->dport = th->dest;
		f->syn_only = th->syn && !th->ack;
		if (f->v6) {
			f->tuple.ipv6.sport = th->source;
			f->tuple.ipv6.dport = th->dest;
		} else {
			f->tuple.ipv4.sport = th->source;
			f->tuple.ipv4.dport = th->dest;
		}
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return -1;
		f->dport = uh->dest;
		f->syn_only = false;
		if (f->v6) {
			f->tuple.ipv6.sport = uh->source;
			f->tuple.ipv6.dport = uh->dest;
		} else {
			f->tuple.ipv4.sport = uh->source;
			f->tuple.ipv4.dport = uh->dest;
		}
	} else {
		return -1;
	}
	f->proto = proto;
	return 0;
}

/* The external-scope frontend if there is one (eTP=Local where it differs), else the
 * cluster-scope one every client shares. */
static __always_inline struct veer_svc_val *frontend(struct flow *f, struct veer_svc_key *key)
{
	struct veer_svc_val *v;

	__builtin_memset(key, 0, sizeof(*key));
	key->addr = f->daddr;
	key->port = f->dport;
	key->proto = f->proto;
	key->scope = VEER_SCOPE_EXTERNAL;
	v = bpf_map_lookup_elem(&veer_services, key);
	if (v)
		return v;
	key->scope = VEER_SCOPE_CLUSTER;
	return bpf_map_lookup_elem(&veer_services, key);
}

/* The source address of this node on its route to the backend: SNAT makes the reply come
 * back here, whichever interface that route uses. */
static __always_inline int node_source(struct __sk_buff *skb, const struct flow *f,
				       const struct veer_backend *be, union nf_inet_addr *src)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	/* The forwarding lookup the kernel makes for the translated packet: in on this
	 * interface, from the client, to the backend. */
	fib.ifindex = skb->ingress_ifindex;
	fib.l4_protocol = f->proto;
	if (f->v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, f->tuple.ipv6.saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, be->addr.ip6, 16);
	} else {
		fib.family = AF_INET;
		fib.ipv4_src = f->tuple.ipv4.saddr;
		fib.ipv4_dst = be->addr.ip6[3];
	}
	/* SKIP_NEIGH: the neighbour may not be resolved yet, and only the source is wanted. */
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), BPF_FIB_LOOKUP_SRC | BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return -1;
	__builtin_memset(src, 0, sizeof(*src));
	if (f->v6)
		__builtin_memcpy(src->ip6, fib.ipv6_src, 16);
	else
		src->ip = fib.ipv4_src;
	return 0;
}

/* The frontend restricts its clients (loadBalancerSourceRanges) and this packet's source is
 * outside every range. NULL: the frontend is unrestricted. */
static __always_inline bool source_denied(const struct flow *f, __u32 rev_nat_id)
{
	struct veer_src_range_key k = { .prefixlen = 32 + 128, .rev_nat_id = bpf_htonl(rev_nat_id) };
	struct veer_src_range_val *v;

	if (f->v6) {
		__builtin_memcpy(k.addr.ip6, f->tuple.ipv6.saddr, 16);
	} else {
		k.addr.ip6[2] = bpf_htonl(0xffff);
		k.addr.ip6[3] = f->tuple.ipv4.saddr;
	}
	v = bpf_map_lookup_elem(&veer_source_ranges, &k);
	return v && !v->allow;
}

/* The (frontend, backend) pair is a member now: a remembered pick may be reused. */
static __always_inline bool member(__u32 rev_nat_id, __u32 backend_id)
{
	struct veer_member_key mk = { .rev_nat_id = rev_nat_id, .backend_id = backend_id };

	return bpf_map_lookup_elem(&veer_members, &mk) != NULL;
}

/* The client's affinity key: its source address (v4-mapped for IPv4), netns_cookie 0. */
static __always_inline void affinity_key(const struct flow *f, __u32 rev_nat_id, struct veer_affinity_key *ak)
{
	__builtin_memset(ak, 0, sizeof(*ak));
	if (f->v6) {
		__builtin_memcpy(ak->client.ip6, f->tuple.ipv6.saddr, 16);
	} else {
		ak->client.ip6[2] = bpf_htonl(0xffff);
		ak->client.ip6[3] = f->tuple.ipv4.saddr;
	}
	ak->rev_nat_id = rev_nat_id;
}

/* The packet's flow in conntrack, either direction; referenced, or NULL. Conntrack's lookup
 * also reaps an expired entry it meets on the way. */
static __always_inline struct nf_conn *lookup(struct __sk_buff *skb, struct flow *f, struct bpf_ct_opts *opts)
{
	/* Constant tuple sizes per family: the verifier bounds the read by them. */
	if (f->v6)
		return bpf_skb_ct_lookup(skb, &f->tuple, sizeof(f->tuple.ipv6), opts, CT_OPTS_SZ);
	return bpf_skb_ct_lookup(skb, &f->tuple, sizeof(f->tuple.ipv4), opts, CT_OPTS_SZ);
}

/* A TCP entry a new SYN reopens rather than joins: closed by FINs (TIME_WAIT) or aborted
 * (CLOSE). nf_conntrack_proto_tcp kills such an entry and starts a new one on the SYN. */
static __always_inline bool closing(const struct nf_conn *ct)
{
	__u8 state = ct->proto.tcp.state;

	return state == TCP_CONNTRACK_TIME_WAIT || state == TCP_CONNTRACK_CLOSE;
}

static __always_inline int serve(struct __sk_buff *skb)
{
	struct veer_svc_key key;
	struct veer_svc_val *master, *slot;
	struct veer_backend *be;
	struct veer_member_key mk;
	struct veer_member_val *hits;
	struct bpf_ct_opts opts = { .netns_id = -1 /* BPF_F_CURRENT_NETNS */ };
	struct nf_conn___init *nct;
	struct nf_conn *ct;
	union nf_inet_addr dst = {}, src;
	struct flow f = {};
	struct veer_affinity_key ak;
	struct veer_affinity_val *av;
	__u32 count, backend_id = 0;
	bool snat, failed, affinity;
	__u64 now = 0;
	__u16 n;

	if (parse(skb, &f))
		return TC_ACT_OK;
	master = frontend(&f, &key);
	if (!master)
		return TC_ACT_OK;

	/* A TCP segment other than an opening SYN is conntrack's whatever it holds: a segment of
	 * a flow it translates, or a stray one the host answers (RST) as it would with no NAT.
	 * Opening a flow on it would pick a backend that has never seen the connection, so a
	 * lookup could change nothing: it is skipped, one conntrack lookup saved per packet. */
	if (f.proto == IPPROTO_TCP && !f.syn_only) {
		stat_inc(VEER_PKT_STAT_UNTRACKED);
		return TC_ACT_OK;
	}

	/* A flow conntrack already knows (either direction) is the kernel's to translate. */
	opts.l4proto = f.proto;
	ct = lookup(skb, &f, &opts);
	if (ct && f.syn_only && closing(ct)) {
		/* A new connection on the 5-tuple of a closed one (a client reusing its source
		 * port). Conntrack would replace that entry with a fresh one of its own, without
		 * our NAT, and the SYN would reach the node's closed port. So it is ended here (an
		 * expired entry; conntrack's next lookup reaps it) and the flow opened as new. */
		bpf_ct_change_timeout(ct, 0);
		bpf_ct_release(ct);
		ct = lookup(skb, &f, &opts);
	}
	if (ct) {
		bpf_ct_release(ct);
		stat_inc(VEER_PKT_STAT_TRACKED);
		return TC_ACT_OK;
	}

	/* kube-proxy's firewall chain comes before its endpoints: a client outside the ranges is
	 * dropped, whatever the frontend has. */
	if (source_denied(&f, master->rev_nat_id)) {
		stat_inc(VEER_PKT_STAT_SOURCE_DENIED);
		return TC_ACT_SHOT;
	}

	count = master->count_or_backend;
	if (count == 0) {
		if (master->flags & VEER_SVC_F_EMPTY_DROP) {
			/* eTP=Local (or iTP) with no local endpoint: kube-proxy drops, silently. */
			stat_inc(VEER_PKT_STAT_DROPPED);
			return TC_ACT_SHOT;
		}
		/* No endpoint anywhere: the host stack answers (RST / port unreachable), as
		 * kube-proxy's REJECT does. */
		stat_inc(VEER_PKT_STAT_REFUSED);
		return TC_ACT_OK;
	}
	/* sessionAffinity ClientIP: this client's last pick, if recent and still a member (only
	 * endpoints of the set being chosen from can match). */
	affinity = master->flags & VEER_SVC_F_AFFINITY;
	if (affinity) {
		affinity_key(&f, master->rev_nat_id, &ak);
		now = bpf_ktime_get_ns();
		av = bpf_map_lookup_elem(&veer_affinity, &ak);
		if (av && now - av->last_used_ns <= (__u64)master->affinity_timeout * NSEC_PER_SEC &&
		    member(master->rev_nat_id, av->backend_id)) {
			backend_id = av->backend_id;
			stat_inc(VEER_PKT_STAT_AFFINITY);
		}
	}
	if (!backend_id) {
		if (count > 65535)
			count = 65535;
		n = (__u16)(bpf_get_prandom_u32() % count) + 1;
		key.slot = n;
		slot = bpf_map_lookup_elem(&veer_services, &key);
		if (!slot) {
			stat_inc(VEER_PKT_STAT_SLOT_MISSING);
			return TC_ACT_OK;
		}
		backend_id = slot->count_or_backend;
	}
	be = bpf_map_lookup_elem(&veer_backends, &backend_id);
	if (!be) {
		stat_inc(VEER_PKT_STAT_SLOT_MISSING);
		return TC_ACT_OK;
	}
	if (addr_is_v4(&be->addr) == f.v6) {
		stat_inc(VEER_PKT_STAT_FAMILY_MISMATCH);
		return TC_ACT_OK;
	}

	/* eTP=Cluster: masquerade, so the backend's reply comes back through this node. The
	 * route is looked up before the entry is allocated: an allocation can only be undone
	 * by inserting it. */
	snat = !(master->flags & VEER_SVC_F_EXT_LOCAL);
	if (snat && node_source(skb, &f, be, &src)) {
		stat_inc(VEER_PKT_STAT_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	if (!snat) {
		/* eTP=Local keeps the client's address: the source "NAT" is to that same
		 * address, any port. It is what the kernel's nat hook gives every flow it
		 * translates (a null binding): nothing changes, unless the translated reply
		 * tuple (backend -> client:port) is already taken, by a flow the same client
		 * port opened to another frontend of the same backend (an LB IP, then an
		 * externalIP) that conntrack still holds in TIME_WAIT. Then conntrack picks
		 * another client port, as for kube-proxy's DNAT; without it the entry could not
		 * be inserted and the SYN would pass untranslated. */
		__builtin_memset(&src, 0, sizeof(src));
		if (f.v6)
			__builtin_memcpy(src.ip6, f.tuple.ipv6.saddr, 16);
		else
			src.ip = f.tuple.ipv4.saddr;
	}
	if (f.v6)
		nct = bpf_skb_ct_alloc(skb, &f.tuple, sizeof(f.tuple.ipv6), &opts, CT_OPTS_SZ);
	else
		nct = bpf_skb_ct_alloc(skb, &f.tuple, sizeof(f.tuple.ipv4), &opts, CT_OPTS_SZ);
	if (!nct) {
		stat_inc(VEER_PKT_STAT_CT_FAILED);
		return TC_ACT_OK;
	}
	if (f.v6)
		__builtin_memcpy(dst.ip6, be->addr.ip6, 16);
	else
		dst.ip = be->addr.ip6[3];
	failed = bpf_ct_set_nat_info(nct, &dst, bpf_ntohs(be->port), NF_NAT_MANIP_DST) != 0;
	if (!failed)
		failed = bpf_ct_set_nat_info(nct, &src, 0, NF_NAT_MANIP_SRC) != 0;
	/* A failed entry still has to be inserted to be freed: it expires at once, and this
	 * packet is dropped so the client's retransmission opens the flow afresh. */
	if (failed)
		bpf_ct_set_timeout(nct, 1);
	ct = bpf_ct_insert_entry(nct);
	if (ct)
		bpf_ct_release(ct);
	if (failed) {
		stat_inc(VEER_PKT_STAT_CT_FAILED);
		return TC_ACT_SHOT;
	}
	if (!ct) {
		/* Lost a race with another CPU opening the same flow: that entry serves it. */
		stat_inc(VEER_PKT_STAT_CT_FAILED);
		return TC_ACT_OK;
	}

	/* Remembered (or refreshed) only once the flow is open: the timer slides with every new
	 * flow steered to the backend. */
	if (affinity) {
		struct veer_affinity_val nv = { .last_used_ns = now, .backend_id = backend_id };

		bpf_map_update_elem(&veer_affinity, &ak, &nv, BPF_ANY);
	}

	mk.rev_nat_id = master->rev_nat_id;
	mk.backend_id = backend_id;
	hits = bpf_map_lookup_elem(&veer_members, &mk);
	if (hits)
		__sync_fetch_and_add(&hits->hits, 1);
	stat_inc(VEER_PKT_STAT_TRANSLATED);
	return TC_ACT_OK;
}

SEC("tc")
int veer_tc_ingress(struct __sk_buff *skb)
{
	return serve(skb);
}
