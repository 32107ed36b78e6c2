// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Veer socket-level load balancing: translate a Service frontend to one backend at
 * connect()/sendmsg() time, once per connection, and reverse it wherever the
 * application sees a peer address. No per-packet NAT, no conntrack.
 *
 * Both families share one core: every address is 16 bytes, IPv4 held as ::ffff:a.b.c.d,
 * so connect4 and connect6 (which sees v4-mapped destinations of AF_INET6 sockets: the
 * kernel's tcp_v6_connect hands those to tcp_v4_connect without running connect4) find
 * the same services entry.
 *
 * Maps and their layout: include/veer_maps.h. The agent writes them in the order stated
 * there, so a lookup here never finds a count pointing past written slots or a slot naming
 * a missing backend.
 *
 * Return conventions, as Cilium's bpf_sock.c: inner functions return 0 or a negative errno
 * that says what happened, and only the hook entry points decide what reaches the caller
 * (the only bpf_set_retval calls):
 *   -ENXIO         not ours: no frontend here, or (hostns-only) another namespace's socket;
 *   -EHOSTUNREACH  a frontend, but no usable backend (a slot or backend missing, or one of
 *                  the other family): the call proceeds untranslated, never half-translated;
 *   -ECONNREFUSED  kube-proxy REJECTs: no endpoint anywhere, or a ClusterIP port the
 *                  Service does not expose;
 *   -ETIMEDOUT     kube-proxy DROPs: only the Local set is empty, a service-CIDR address no
 *                  Service holds, or a client outside loadBalancerSourceRanges (a socket
 *                  cannot be dropped, so the call fails at once with the errno a dropped
 *                  connect ends with);
 *   -EADDRINUSE    bind() onto a frontend (post_bind).
 * Every outcome but success bumps a named counter (enum veer_stat) where it is decided.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/errno.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "veer_maps.h"
#include "veer_shared_maps.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, VEER_REV_NAT_MAX);
	__type(key, __u32);
	__type(value, struct veer_rev_nat);
} veer_rev_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VEER_SOCK_REV_MAX);
	__type(key, struct veer_sock_rev_key);
	__type(value, struct veer_sock_rev_val);
} veer_sock_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct veer_sock_state);
} veer_sock_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VEER_STATS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} veer_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, VEER_TRACE_BYTES);
} veer_trace SEC(".maps");

/* Written by the agent at install and adopt: the hostns-only mode. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct veer_config);
} veer_config SEC(".maps");

/* ClusterIPs (/128) and service CIDRs, consulted only after the frontend lookup missed. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, VEER_SERVICE_IPS_MAX);
	__type(key, struct veer_lpm_addr_key);
	__type(value, struct veer_service_ip);
} veer_service_ips SEC(".maps");

/* Non-zero while `veerctl trace` runs: nobody pays for events nobody reads. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} veer_trace_on SEC(".maps");

#define NSEC_PER_SEC 1000000000ULL

#define SYS_REJECT  0
#define SYS_PROCEED 1

static __always_inline void stat_inc(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&veer_stats, &stat);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline bool addr_is_v4(const struct veer_addr *a)
{
	return a->ip6[0] == 0 && a->ip6[1] == 0 && a->ip6[2] == bpf_htonl(0xffff);
}

static __always_inline bool addr_eq(const struct veer_addr *a, const struct veer_addr *b)
{
	return a->ip6[0] == b->ip6[0] && a->ip6[1] == b->ip6[1] &&
	       a->ip6[2] == b->ip6[2] && a->ip6[3] == b->ip6[3];
}

/* The destination as a 16-byte address. user_ip4 and user_ip6 are each readable only in
 * their own family's hooks, so the family is a constant of the caller. */
static __always_inline void ctx_addr(struct bpf_sock_addr *ctx, bool v6, struct veer_addr *a)
{
	if (v6) {
		a->ip6[0] = ctx->user_ip6[0];
		a->ip6[1] = ctx->user_ip6[1];
		a->ip6[2] = ctx->user_ip6[2];
		a->ip6[3] = ctx->user_ip6[3];
	} else {
		a->ip6[0] = 0;
		a->ip6[1] = 0;
		a->ip6[2] = bpf_htonl(0xffff);
		a->ip6[3] = ctx->user_ip4;
	}
}

/* 4-byte stores only: 2-byte ctx writes are rejected. An IPv6 socket gets a v4-mapped
 * backend back as ::ffff:a.b.c.d, as it asked for ::ffff:VIP. */
static __always_inline void ctx_set(struct bpf_sock_addr *ctx, bool v6, const struct veer_addr *a, __be16 port)
{
	if (v6) {
		ctx->user_ip6[0] = a->ip6[0];
		ctx->user_ip6[1] = a->ip6[1];
		ctx->user_ip6[2] = a->ip6[2];
		ctx->user_ip6[3] = a->ip6[3];
	} else {
		ctx->user_ip4 = a->ip6[3];
	}
	ctx->user_port = port;
}

/* Not inlined: a subprogram's signature keeps struct veer_trace_event in the object's
 * BTF, where the layout test checks it against Swift. Called only while tracing. */
static __noinline int trace_submit(struct veer_trace_event *ev)
{
	return bpf_ringbuf_output(&veer_trace, ev, sizeof(*ev), 0);
}

static __always_inline void trace(struct bpf_sock_addr *ctx, __u8 verdict, const struct veer_svc_key *fe,
				  __u32 rev_nat_id, __u32 backend_id, const struct veer_backend *be)
{
	__u32 zero = 0;
	__u32 *on = bpf_map_lookup_elem(&veer_trace_on, &zero);

	if (!on || !*on)
		return;
	struct veer_trace_event ev = {
		.ts_ns = bpf_ktime_get_ns(),
		.cookie = bpf_get_socket_cookie(ctx),
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.pid = (__u32)(bpf_get_current_pid_tgid() >> 32),
		.rev_nat_id = rev_nat_id,
		.backend_id = backend_id,
		.fe_addr = fe->addr,
		.fe_port = fe->port,
		.proto = fe->proto,
		.verdict = verdict,
	};
	if (be) {
		ev.be_addr = be->addr;
		ev.be_port = be->port;
	}
	bpf_get_current_comm(ev.comm, sizeof(ev.comm)); /* cannot fail: a fixed, valid buffer */
	if (trace_submit(&ev))
		stat_inc(VEER_STAT_TRACE_DROPPED);
	else
		stat_inc(VEER_STAT_TRACED);
}

/* A (frontend, backend) pair is live exactly while the agent keeps its members entry. */
static __always_inline struct veer_member_val *member(__u32 rev_nat_id, __u32 backend_id)
{
	struct veer_member_key mk = { .rev_nat_id = rev_nat_id, .backend_id = backend_id };

	return bpf_map_lookup_elem(&veer_members, &mk);
}

/* hostns-only: a socket of another network namespace (a pod) is not ours to translate. */
static __always_inline bool other_netns(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct veer_config *cfg = bpf_map_lookup_elem(&veer_config, &zero);

	return cfg && (cfg->flags & VEER_CFG_F_HOSTNS_ONLY) &&
	       bpf_get_netns_cookie(ctx) != cfg->hostns_cookie;
}

/*
 * No frontend at this address and port. kube-proxy's nftables mode rejects a ClusterIP on a
 * port its Service does not expose and drops an address of a service CIDR that no Service
 * holds; everything else is not ours. The trie is read only while the agent has filled it
 * (an inlined array read otherwise). Returns -ENXIO, -ECONNREFUSED or -ETIMEDOUT.
 */
static __always_inline int no_frontend(struct bpf_sock_addr *ctx, const struct veer_addr *addr)
{
	__u32 zero = 0;
	struct veer_config *cfg = bpf_map_lookup_elem(&veer_config, &zero);
	struct veer_lpm_addr_key k = { .prefixlen = 128, .addr = *addr };
	struct veer_service_ip *ip;

	if (!cfg || !(cfg->flags & VEER_CFG_F_SERVICE_IPS))
		return -ENXIO;
	ip = bpf_map_lookup_elem(&veer_service_ips, &k);
	if (!ip)
		return -ENXIO;
	if ((cfg->flags & VEER_CFG_F_HOSTNS_ONLY) && bpf_get_netns_cookie(ctx) != cfg->hostns_cookie)
		return -ENXIO;
	if (ip->rule == VEER_SVCIP_REFUSE) {
		stat_inc(VEER_STAT_PORT_REFUSED);
		return -ECONNREFUSED;
	}
	stat_inc(VEER_STAT_UNALLOCATED);
	return -ETIMEDOUT;
}

/*
 * loadBalancerSourceRanges at connect()/sendmsg(): the client is the datagram's source
 * (sendmsg with IP_PKTINFO), else the socket's bound address, else a sentinel for an
 * unbound socket of the host or of a pod (veer_maps.h), whose verdict the agent wrote.
 * One trie lookup, only for frontends while any is restricted. true: deny.
 */
static __always_inline bool source_denied(struct bpf_sock_addr *ctx, bool v6, bool is_connect, __u32 rev_nat_id)
{
	__u32 zero = 0;
	struct veer_config *cfg = bpf_map_lookup_elem(&veer_config, &zero);
	struct veer_src_range_key k = { .prefixlen = 32 + 128, .rev_nat_id = bpf_htonl(rev_nat_id) };
	struct bpf_sock *sk = ctx->sk;
	struct veer_src_range_val *v;

	if (!cfg || !(cfg->flags & VEER_CFG_F_SOURCE_RANGES))
		return false;
	if (v6) {
		if (!is_connect) {
			k.addr.ip6[0] = ctx->msg_src_ip6[0];
			k.addr.ip6[1] = ctx->msg_src_ip6[1];
			k.addr.ip6[2] = ctx->msg_src_ip6[2];
			k.addr.ip6[3] = ctx->msg_src_ip6[3];
		}
		if (!k.addr.ip6[0] && !k.addr.ip6[1] && !k.addr.ip6[2] && !k.addr.ip6[3] && sk) {
			k.addr.ip6[0] = sk->src_ip6[0];
			k.addr.ip6[1] = sk->src_ip6[1];
			k.addr.ip6[2] = sk->src_ip6[2];
			k.addr.ip6[3] = sk->src_ip6[3];
		}
		if (!k.addr.ip6[0] && !k.addr.ip6[1] && !k.addr.ip6[2] && !k.addr.ip6[3])
			k.addr.ip6[2] = bpf_htonl(0xffff); /* unbound: a sentinel below */
	} else {
		k.addr.ip6[2] = bpf_htonl(0xffff);
		if (!is_connect)
			k.addr.ip6[3] = ctx->msg_src_ip4;
		if (!k.addr.ip6[3] && sk)
			k.addr.ip6[3] = sk->src_ip4;
	}
	if (k.addr.ip6[2] == bpf_htonl(0xffff) && !k.addr.ip6[0] && !k.addr.ip6[1] && !k.addr.ip6[3] &&
	    bpf_get_netns_cookie(ctx) != cfg->hostns_cookie)
		k.addr.ip6[3] = bpf_htonl(1); /* ::ffff:0.0.0.1, "unbound, pod" */
	v = bpf_map_lookup_elem(&veer_source_ranges, &k);
	return v && !v->allow;
}

/*
 * Lookup: the frontend's master entry, and whether this client may use it at all. On 0,
 * *svc holds a copy of the master (read once: the agent may rewrite it meanwhile, and the
 * count must not change between the check for zero and the pick).
 */
static __always_inline int sock_lookup_frontend(struct bpf_sock_addr *ctx, bool v6, bool is_connect,
						const struct veer_svc_key *key, struct veer_svc_val *svc)
{
	struct veer_svc_val *master = bpf_map_lookup_elem(&veer_services, key);

	if (!master)
		return no_frontend(ctx, &key->addr); /* not a frontend: no more than one trie lookup */
	*svc = *master;
	if (other_netns(ctx)) {
		stat_inc(VEER_STAT_OTHER_NETNS);
		return -ENXIO;
	}
	/* kube-proxy checks the source ranges before anything else, endpoints or none. */
	if (source_denied(ctx, v6, is_connect, svc->rev_nat_id)) {
		stat_inc(VEER_STAT_SOURCE_DENIED);
		return -ETIMEDOUT;
	}
	if (svc->count_or_backend)
		return 0;
	/* kube-proxy REJECTs when no endpoint exists anywhere and DROPs when only the Local
	 * set is empty. */
	if (svc->flags & VEER_SVC_F_EMPTY_DROP) {
		stat_inc(VEER_STAT_DROPPED);
		trace(ctx, VEER_TRACE_DROPPED, key, svc->rev_nat_id, 0, NULL);
		return -ETIMEDOUT;
	}
	stat_inc(VEER_STAT_REFUSED);
	trace(ctx, VEER_TRACE_REFUSED, key, svc->rev_nat_id, 0, NULL);
	return -ECONNREFUSED;
}

/*
 * Affinity (sessionAffinity ClientIP): no source address exists at connect time, so the
 * client is its network namespace, i.e. the pod. Returns the client's backend while its
 * entry is fresh and the backend still a member, else 0.
 */
static __always_inline __u32 affinity_lookup(struct bpf_sock_addr *ctx, const struct veer_svc_val *svc)
{
	struct veer_affinity_key ak = {
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.rev_nat_id = svc->rev_nat_id,
	};
	struct veer_affinity_val *av = bpf_map_lookup_elem(&veer_affinity, &ak);
	__u64 now = bpf_ktime_get_ns();

	if (av && now - av->last_used_ns <= (__u64)svc->affinity_timeout * NSEC_PER_SEC &&
	    member(svc->rev_nat_id, av->backend_id))
		return av->backend_id;
	return 0;
}

/* Remembers (or refreshes) the client's backend. Two CPUs may create one client's entry at
 * once: the last write wins, and both connections still went to a member. A failed write
 * costs only the next connect's stickiness, so it is counted and the call goes on. */
static __always_inline void affinity_update(struct bpf_sock_addr *ctx, __u32 rev_nat_id, __u32 backend_id)
{
	struct veer_affinity_key ak = {
		.netns_cookie = bpf_get_netns_cookie(ctx),
		.rev_nat_id = rev_nat_id,
	};
	struct veer_affinity_val av = { .last_used_ns = bpf_ktime_get_ns(), .backend_id = backend_id };

	if (bpf_map_update_elem(&veer_affinity, &ak, &av, BPF_ANY))
		stat_inc(VEER_STAT_AFFINITY_FAILED);
}

/*
 * Pick: this socket's previous backend while it is still a member (a UDP socket keeps
 * talking to one backend while the service grows or shrinks), else the client's affinity
 * backend, else a random slot. Random for every socket: the pick is remembered per socket
 * and per client, so no hash of the cookie is needed for stability. On 0, *be is the
 * backend and *backend_id its id.
 */
static __always_inline int sock_pick_backend(struct bpf_sock_addr *ctx, struct veer_svc_key *key,
					     const struct veer_svc_val *svc, const struct veer_sock_state *st,
					     __u32 *backend_id, struct veer_backend **be)
{
	__u32 rev_nat_id = svc->rev_nat_id, id = 0;
	struct veer_svc_val *slot;

	if (st && st->rev_nat_id == rev_nat_id && st->backend_id && member(rev_nat_id, st->backend_id))
		id = st->backend_id;
	if (!id && (svc->flags & VEER_SVC_F_AFFINITY))
		id = affinity_lookup(ctx, svc);
	if (!id) {
		key->slot = (__u16)(bpf_get_prandom_u32() % svc->count_or_backend + 1);
		slot = bpf_map_lookup_elem(&veer_services, key);
		key->slot = 0;
		if (!slot) {
			stat_inc(VEER_STAT_SLOT_MISSING);
			return -EHOSTUNREACH;
		}
		id = slot->count_or_backend;
	}
	*be = bpf_map_lookup_elem(&veer_backends, &id);
	if (!*be) {
		stat_inc(VEER_STAT_SLOT_MISSING);
		return -EHOSTUNREACH;
	}
	/* A frontend reaches backends of its own family only (the agent selects per family);
	 * connect4 could not even write an IPv6 address. */
	if (addr_is_v4(&(*be)->addr) != addr_is_v4(&key->addr)) {
		stat_inc(VEER_STAT_FAMILY_MISMATCH);
		return -EHOSTUNREACH;
	}
	*backend_id = id;
	return 0;
}

/* -ENOENT is no failure: LRU eviction may have come first. Anything else (a busy bucket)
 * leaves an entry keyed by a socket that no longer uses it, harmless until LRU evicts it. */
static __always_inline void sock_rev_delete(const struct veer_sock_rev_key *rk)
{
	long err = bpf_map_delete_elem(&veer_sock_rev, rk);

	if (err && err != -ENOENT)
		stat_inc(VEER_STAT_SOCK_REV_DELETE_FAILED);
}

/*
 * Write-back: remember the pick for this socket (sock_state) and for the reverse path
 * (sock_rev), count it, and rewrite the destination the application asked for.
 */
static __always_inline void sock_write_back(struct bpf_sock_addr *ctx, bool v6, bool is_connect,
					    const struct veer_svc_key *key, __u32 rev_nat_id,
					    struct veer_sock_state *st, __u32 backend_id,
					    const struct veer_backend *be)
{
	struct veer_sock_rev_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.addr = be->addr,
		.port = be->port,
		.proto = key->proto,
	};
	struct veer_sock_rev_val rv = {
		.addr = key->addr,
		.port = key->port,
		.proto = key->proto,
		.rev_nat_id = rev_nat_id,
	};
	struct veer_member_val *hits;

	if (st) {
		/* A reconnect makes the old reverse entry useless; an unconnected socket may
		 * still get replies from its old backend, so that one ages out by LRU. */
		if (is_connect && st->backend_id &&
		    (!addr_eq(&st->be_addr, &be->addr) || st->be_port != be->port)) {
			struct veer_sock_rev_key old = {
				.cookie = rk.cookie, .addr = st->be_addr,
				.port = st->be_port, .proto = st->proto,
			};
			sock_rev_delete(&old);
		}
		st->rev_nat_id = rev_nat_id;
		st->backend_id = backend_id;
		st->be_addr = be->addr;
		st->be_port = be->port;
		st->proto = key->proto;
	}
	if (bpf_map_update_elem(&veer_sock_rev, &rk, &rv, BPF_ANY))
		stat_inc(VEER_STAT_SOCK_REV_FAILED);

	hits = member(rev_nat_id, backend_id);
	if (hits)
		__sync_fetch_and_add(&hits->hits, 1);
	stat_inc(VEER_STAT_TRANSLATED);
	trace(ctx, VEER_TRACE_TRANSLATED, key, rev_nat_id, backend_id, be);

	ctx_set(ctx, v6, &be->addr, be->port);
}

/*
 * Forward translation for connect4/6 (TCP, connected UDP) and sendmsg4/6 (unconnected
 * UDP), for either family: `v6` is a constant of each hook, so the verifier sees only the
 * ctx fields that hook may touch. Returns 0 (translated) or an errno of the conventions
 * above.
 */
static __always_inline int sock_xlate_fwd(struct bpf_sock_addr *ctx, bool v6, bool is_connect)
{
	struct veer_svc_key key = {
		.port = (__u16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};
	struct veer_svc_val svc = {};
	struct veer_backend *be = NULL;
	struct veer_sock_state *st;
	__u32 backend_id = 0;
	int err;

	ctx_addr(ctx, v6, &key.addr);
	err = sock_lookup_frontend(ctx, v6, is_connect, &key, &svc);
	if (err)
		return err;
	st = bpf_sk_storage_get(&veer_sock_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		stat_inc(VEER_STAT_SOCK_STATE_FAILED);
	err = sock_pick_backend(ctx, &key, &svc, st, &backend_id, &be);
	if (err)
		return err;
	if (svc.flags & VEER_SVC_F_AFFINITY)
		affinity_update(ctx, svc.rev_nat_id, backend_id);
	sock_write_back(ctx, v6, is_connect, &key, svc.rev_nat_id, st, backend_id, be);
	return 0;
}

/* The hook's verdict: kube-proxy's REJECT and DROP fail the call with their errno; a call
 * translated, not ours, or left untranslated proceeds. */
static __always_inline bool fwd_rejected(int err)
{
	return err == -ECONNREFUSED || err == -ETIMEDOUT;
}

/* Show the frontend wherever the application sees its peer (recvfrom, getpeername). An
 * AF_INET6 socket talking to an IPv4 backend sees ::ffff:backend here, and gets
 * ::ffff:VIP back: the mapped key matches what the forward path wrote. */
static __always_inline void sock_xlate_rev(struct bpf_sock_addr *ctx, bool v6)
{
	struct veer_sock_rev_key rk = {
		.cookie = bpf_get_socket_cookie(ctx),
		.port = (__u16)ctx->user_port,
		.proto = (__u8)ctx->protocol,
	};

	ctx_addr(ctx, v6, &rk.addr);
	struct veer_sock_rev_val *rv = bpf_map_lookup_elem(&veer_sock_rev, &rk);

	if (!rv)
		return;
	ctx_set(ctx, v6, &rv->addr, rv->port);
	stat_inc(VEER_STAT_REVERSED);
}

SEC("cgroup/connect4")
int veer_connect4(struct bpf_sock_addr *ctx)
{
	int err = sock_xlate_fwd(ctx, false, true);

	if (fwd_rejected(err)) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int veer_connect6(struct bpf_sock_addr *ctx)
{
	int err = sock_xlate_fwd(ctx, true, true);

	if (fwd_rejected(err)) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

/* An AF_INET6 socket's datagram to ::ffff:a.b.c.d goes through udp_sendmsg, i.e. sendmsg4. */
SEC("cgroup/sendmsg4")
int veer_sendmsg4(struct bpf_sock_addr *ctx)
{
	int err = sock_xlate_fwd(ctx, false, false);

	if (fwd_rejected(err)) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/sendmsg6")
int veer_sendmsg6(struct bpf_sock_addr *ctx)
{
	int err = sock_xlate_fwd(ctx, true, false);

	if (fwd_rejected(err)) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/recvmsg4")
int veer_recvmsg4(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, false);
	return SYS_PROCEED; /* recvmsg4 must return 1 */
}

SEC("cgroup/recvmsg6")
int veer_recvmsg6(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, true);
	return SYS_PROCEED;
}

SEC("cgroup/getpeername4")
int veer_getpeername4(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, false);
	return SYS_PROCEED; /* getpeername4 must return 1 */
}

SEC("cgroup/getpeername6")
int veer_getpeername6(struct bpf_sock_addr *ctx)
{
	sock_xlate_rev(ctx, true);
	return SYS_PROCEED;
}

/* The reverse entry dies with its socket. The key comes from the socket's storage,
 * since an unconnected UDP socket has no destination left to rebuild it from. Runs for
 * sockets of both families. */
SEC("cgroup/sock_release")
int veer_sock_release(struct bpf_sock *sk)
{
	struct veer_sock_state *st = bpf_sk_storage_get(&veer_sock_state, sk, 0, 0);

	if (st && st->backend_id) {
		struct veer_sock_rev_key rk = {
			.cookie = bpf_get_socket_cookie(sk),
			.addr = st->be_addr,
			.port = st->be_port,
			.proto = st->proto,
		};
		sock_rev_delete(&rk);
	}
	return SYS_PROCEED;
}

/*
 * Bind protection, as Cilium's post_bind hooks: a process of the host's network namespace
 * that binds a frontend's address and port (a NodePort on a node address, an externalIP or
 * LB IP held locally) gets EADDRINUSE, so nothing on the node silently captures a Service's
 * traffic. A wildcard bind (0.0.0.0 or ::) would receive a NodePort's traffic on every node
 * address: it is checked against the NodePort's loopback frontend (127.0.0.1:port), which
 * the agent programs beside each node address. Pods bind what they like in their own
 * namespaces. Runs only on bind(), never on a connection's path. Returns 0 or -EADDRINUSE.
 */
static __always_inline int bind_check(struct bpf_sock *sk, bool v6)
{
	__u32 zero = 0;
	struct veer_config *cfg = bpf_map_lookup_elem(&veer_config, &zero);
	struct veer_svc_key key = {
		.port = bpf_htons((__u16)sk->src_port),
		.proto = (__u8)sk->protocol,
	};

	if (!cfg || !(cfg->flags & VEER_CFG_F_BIND_PROTECT) || !sk->src_port)
		return 0;
	if (bpf_get_netns_cookie(sk) != cfg->hostns_cookie)
		return 0;
	if (v6) {
		key.addr.ip6[0] = sk->src_ip6[0];
		key.addr.ip6[1] = sk->src_ip6[1];
		key.addr.ip6[2] = sk->src_ip6[2];
		key.addr.ip6[3] = sk->src_ip6[3];
	} else {
		key.addr.ip6[2] = bpf_htonl(0xffff);
		key.addr.ip6[3] = sk->src_ip4;
	}
	if (!key.addr.ip6[0] && !key.addr.ip6[1] && !key.addr.ip6[3] &&
	    (!key.addr.ip6[2] || key.addr.ip6[2] == bpf_htonl(0xffff))) {
		/* 0.0.0.0 or :: (which takes IPv4 too): the NodePort's loopback frontend. */
		key.addr.ip6[2] = bpf_htonl(0xffff);
		key.addr.ip6[3] = bpf_htonl(0x7f000001);
	}
	if (!bpf_map_lookup_elem(&veer_services, &key))
		return 0;
	stat_inc(VEER_STAT_BIND_DENIED);
	return -EADDRINUSE;
}

SEC("cgroup/post_bind4")
int veer_post_bind4(struct bpf_sock *sk)
{
	int err = bind_check(sk, false);

	if (err) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}

SEC("cgroup/post_bind6")
int veer_post_bind6(struct bpf_sock *sk)
{
	int err = bind_check(sk, true);

	if (err) {
		bpf_set_retval(err);
		return SYS_REJECT;
	}
	return SYS_PROCEED;
}
