/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * veer_maps.h: THE definition of every BPF map key, value, flag and size in Veer.
 *
 * Included by bpf/veer_sock.bpf.c and bpf/veer_tc.bpf.c, and imported by Swift through the CVeer target
 * (Sources/CVeer/include/veer_maps.h is a symlink to this file). Nothing here is
 * restated anywhere else: Swift reads these structs directly, and the datapath checks
 * at load time that every Swift size equals the key and value size in the object's BTF.
 *
 * Byte order: fields typed __be32/__be16 (and struct veer_addr) hold network byte order
 * (as in struct bpf_sock_addr's user_ip6 / user_port); every other field is host order.
 *
 * Addresses: every address is a 16-byte struct veer_addr, IPv4 held in its v4-mapped form
 * ::ffff:a.b.c.d. One map set serves both families: connect4 builds the mapped key from
 * user_ip4, connect6 uses user_ip6 as it is, so an AF_INET6 socket connecting to ::ffff:VIP
 * finds the IPv4 service with no extra lookup.
 * Padding is explicit and always zero, so keys hash the same from C and Swift.
 *
 * Changing any struct here is a schema change: bump VEER_PIN_VERSION so a new datapath pins
 * beside the old one instead of failing to reuse its maps. A max_entries default is not: the
 * installer adopts the pinned size of a map it was not asked to resize, so a new default
 * applies to fresh installs. Each struct's
 * size is asserted below it, so a change cannot slip by unnoticed; the field offsets and
 * sizes are checked against the compiled objects' BTF by Tests/VeerDatapathTests/LayoutTests.swift.
 *
 * Write order. The programs read these maps while the agent writes them, one entry at a
 * time, so the agent (Sources/VeerModel/Planner.swift emits the operations,
 * Sources/VeerDatapath/Datapath.swift applies them) writes in this order, and every prefix of
 * a plan is a state a lookup can use:
 *   1. upsert backends, then rev_nat, then members;
 *   2. frontend by frontend: its slots 1..N, then its master (slot 0, which holds the count);
 *   3. delete surplus slots (count already lowered);
 *   4. delete removed frontends: master first, then its slots;
 *   5. delete members, then rev_nat, then orphan backends.
 * So a master never counts past written slots, and a slot never names a missing backend or
 * member. (A long run of one step may be written in parallel parts, each in this order, cut only
 * between frontends: a reader then sees any subset of that step, each frontend whole or a prefix.) Freed ids are reused by later plans only, never within the plan that frees them.
 * The lookup-gated tries (service_ips, source_ranges) are read only while their
 * VEER_CFG_F_* flag is set: it is set once entries are written and cleared before the
 * last ones are deleted.
 * This is the one statement of the order; the code and docs that follow it point here.
 */
#ifndef VEER_MAPS_H
#define VEER_MAPS_H

#include <linux/types.h>

#define VEER_PIN_VERSION "v5"   /* v2: 16-byte addresses, veer_config; v3: veer_service_ips, veer_source_ranges;
                                 * v4: veer_affinity_key.client (affinity on the packet path); the
                                 * agent-written hash maps BPF_F_NO_PREALLOC, sized for 100,000
                                 * Services x 10 endpoints; v5: veer_members a plain hash with one
                                 * shared counter (a per-CPU entry without preallocation costs
                                 * ~20 us to insert: 2 s at 100,000 members) */

/* Default capacities (max_entries): 100,000 Services x 10 endpoints with no flags. The four maps
 * the agent writes are BPF_F_NO_PREALLOC hash maps: an entry's memory is allocated when it is
 * written, and only the bucket array (16 bytes per bucket, max_entries rounded up to a power of
 * two: 68 MB for these four) is paid up front. The agent may override them before the first load. */
#define VEER_SERVICES_MAX   2097152 /* master + slot entries, all frontends: 100k x (1 + 10), twice */
#define VEER_BACKENDS_MAX   1048576
#define VEER_REV_NAT_MAX    262144  /* one per frontend */
#define VEER_MEMBERS_MAX    1048576 /* one per (frontend, backend) pair */
#define VEER_SOCK_REV_MAX   262144  /* LRU: translated sockets */
#define VEER_AFFINITY_MAX   65536   /* LRU: (client, frontend) pairs */

/* ---- addresses: IPv6, or IPv4 as ::ffff:a.b.c.d ------------------------------------ */

struct veer_addr {
	__be32 ip6[4];      /* ip6[3] is the IPv4 address when ip6[0..2] = 0, 0, htonl(0xffff) */
};
_Static_assert(sizeof(struct veer_addr) == 16, "struct veer_addr: layout change, bump VEER_PIN_VERSION");

/* ---- services: frontend (+ slot) -> master or slot ------------------------------ */

struct veer_svc_key {
	struct veer_addr addr; /* frontend address */
	__be16 port;        /* frontend port */
	__u8   proto;       /* IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP */
	__u8   scope;       /* VEER_SCOPE_*: which clients the entry serves (packet path) */
	__u16  slot;        /* 0 = master entry; 1..count = backend slots */
	__u16  pad1;
};
_Static_assert(sizeof(struct veer_svc_key) == 24, "struct veer_svc_key: layout change, bump VEER_PIN_VERSION");

/* veer_svc_val.flags (master entry only) */
#define VEER_SVC_F_AFFINITY     0x1  /* sessionAffinity ClientIP, per client netns */
#define VEER_SVC_F_EMPTY_DROP   0x2  /* count == 0: endpoints exist but none in this set
                                      * (traffic policy Local) -> kube-proxy DROPs;
                                      * without it count == 0 means REJECT */

struct veer_svc_val {
	__u32 count_or_backend; /* master: number of slots; slot: backend id */
	__u32 rev_nat_id;       /* id of this frontend in rev_nat, members, hits */
	__u32 affinity_timeout; /* seconds; master only, with VEER_SVC_F_AFFINITY */
	__u16 flags;            /* VEER_SVC_F_*; master only */
	__u16 pad0;
};
_Static_assert(sizeof(struct veer_svc_val) == 16, "struct veer_svc_val: layout change, bump VEER_PIN_VERSION");

/* ---- backends: backend id -> address ---------------------------------------------- */

#define VEER_BE_F_TERMINATING 0x1 /* serving+terminating fallback; informational */

struct veer_backend {
	struct veer_addr addr;
	__be16 port;
	__u8   proto;
	__u8   flags;           /* VEER_BE_F_* */
};
_Static_assert(sizeof(struct veer_backend) == 20, "struct veer_backend: layout change, bump VEER_PIN_VERSION");

/* ---- rev_nat: frontend id -> frontend address, for reverse translation ------------ */

struct veer_rev_nat {
	struct veer_addr addr;
	__be16 port;
	__u8   proto;
	__u8   scope;       /* VEER_SCOPE_* of the frontend entry holding this id */
};
_Static_assert(sizeof(struct veer_rev_nat) == 20, "struct veer_rev_nat: layout change, bump VEER_PIN_VERSION");

/*
 * ---- members: (frontend, backend) -> hit counter --------------------------------
 * Written by the agent: an entry exists exactly while the backend is in the frontend's
 * set. BPF only increments existing entries (it never inserts, so it can never fill the
 * map), and checks membership here before reusing a sticky UDP or affinity pick.
 */
struct veer_member_key {
	__u32 rev_nat_id;
	__u32 backend_id;
};
_Static_assert(sizeof(struct veer_member_key) == 8, "struct veer_member_key: layout change, bump VEER_PIN_VERSION");

struct veer_member_val {
	__u64 hits;             /* one counter, added to atomically: a per-CPU value without
	                         * preallocation makes each insert ~30x slower, and preallocated
	                         * it costs max_entries x CPUs x 8 bytes */
};
_Static_assert(sizeof(struct veer_member_val) == 8, "struct veer_member_val: layout change, bump VEER_PIN_VERSION");

/* ---- sock_rev: (socket, backend) -> frontend; written by BPF --------------------- */

struct veer_sock_rev_key {
	__u64  cookie;          /* bpf_get_socket_cookie() */
	struct veer_addr addr;  /* backend address the socket was sent to */
	__be16 port;
	__u8   proto;
	__u8   pad0;
	__u32  pad1;            /* explicit: the key is 8-byte aligned */
};
_Static_assert(sizeof(struct veer_sock_rev_key) == 32, "struct veer_sock_rev_key: layout change, bump VEER_PIN_VERSION");

struct veer_sock_rev_val {
	struct veer_addr addr;  /* frontend the application asked for */
	__be16 port;
	__u8   proto;
	__u8   pad0;
	__u32  rev_nat_id;
};
_Static_assert(sizeof(struct veer_sock_rev_val) == 24, "struct veer_sock_rev_val: layout change, bump VEER_PIN_VERSION");

/*
 * ---- sock_state: socket local storage; written by BPF ----------------------------
 * Dies with its socket. It keeps a UDP socket on its backend while that backend stays a
 * member, and lets sock_release find the sock_rev key of an unconnected UDP socket,
 * whose destination is 0.0.0.0:0 by then.
 */
struct veer_sock_state {
	__u32  rev_nat_id;
	__u32  backend_id;
	struct veer_addr be_addr;
	__be16 be_port;
	__u8   proto;
	__u8   pad0;
};
_Static_assert(sizeof(struct veer_sock_state) == 28, "struct veer_sock_state: layout change, bump VEER_PIN_VERSION");

/*
 * ---- affinity: (client, frontend) -> backend; written by BPF ------------------------
 * sessionAffinity ClientIP. Who "the client" is depends on where the pick is made:
 *   socket hooks (connect/sendmsg): no source address exists yet, so the client is its
 *     network namespace (a pod): netns_cookie set, client zero;
 *   packet path (tc, clients outside the node): the packet's source address, as
 *     kube-proxy keys it: client set, netns_cookie 0 (no namespace has cookie 0).
 * One LRU map for both, so one capacity and one eviction policy.
 */
struct veer_affinity_key {
	__u64 netns_cookie;     /* bpf_get_netns_cookie() of the client; 0 on the packet path */
	struct veer_addr client; /* the client's source address on the packet path; zero otherwise */
	__u32 rev_nat_id;
	__u32 pad0;
};
_Static_assert(sizeof(struct veer_affinity_key) == 32, "struct veer_affinity_key: layout change, bump VEER_PIN_VERSION");

struct veer_affinity_val {
	__u64 last_used_ns;     /* bpf_ktime_get_ns() of the last connect */
	__u32 backend_id;
	__u32 pad0;
};
_Static_assert(sizeof(struct veer_affinity_val) == 16, "struct veer_affinity_val: layout change, bump VEER_PIN_VERSION");

/* ---- stats: per-CPU datapath event counters, indexed by enum veer_stat ----------- */

enum veer_stat {
	VEER_STAT_TRANSLATED = 0,   /* connect/sendmsg rewritten to a backend */
	VEER_STAT_REFUSED,          /* no endpoints anywhere: ECONNREFUSED */
	VEER_STAT_DROPPED,          /* no endpoint in the Local set: ETIMEDOUT */
	VEER_STAT_SLOT_MISSING,     /* a slot or backend lookup failed: left untranslated */
	VEER_STAT_SOCK_REV_FAILED,  /* reverse entry not written: replies not reversed */
	VEER_STAT_REVERSED,         /* recvmsg/getpeername rewritten to the frontend */
	VEER_STAT_TRACED,           /* trace events written (only while a tracer is attached) */
	VEER_STAT_TRACE_DROPPED,    /* trace events lost to a full ring buffer */
	VEER_STAT_FAMILY_MISMATCH,  /* backend of the other family than its frontend: left
	                             * untranslated (connect4 cannot reach an IPv6 backend) */
	VEER_STAT_OTHER_NETNS,      /* hostns-only: a frontend asked for from another network
	                             * namespace, left untranslated */
	VEER_STAT_PORT_REFUSED,     /* a ClusterIP on a port its Service does not expose: ECONNREFUSED */
	VEER_STAT_UNALLOCATED,      /* a service-CIDR address no Service holds: ETIMEDOUT */
	VEER_STAT_BIND_DENIED,      /* bind() onto a frontend (a NodePort...): EADDRINUSE */
	VEER_STAT_SOURCE_DENIED,    /* an LB VIP from outside its loadBalancerSourceRanges: ETIMEDOUT */
	VEER_STAT_AFFINITY_FAILED,  /* affinity entry not written: the client's next connect
	                             * may pick another backend */
	VEER_STAT_SOCK_STATE_FAILED, /* socket storage not allocated: a UDP socket may change
	                              * backend, and its reverse entry is left for LRU to evict */
	VEER_STAT_SOCK_REV_DELETE_FAILED, /* a stale reverse entry not deleted (other than
	                                   * already gone): left for LRU to evict */
	VEER_STAT_MAX,
};
/* Mirrored by DatapathStat (Sources/VeerDatapath/MapLayout.swift, same names in camelCase)
 * and documented in docs/operations.md; LayoutTests checks the mirror. Append only: the
 * index is the counter's slot in the pinned map. */

/* veer_stats and veer_pkt_stats have room for counters added later without a layout change. */
#define VEER_STATS_SLOTS 32
_Static_assert(VEER_STAT_MAX <= VEER_STATS_SLOTS, "enum veer_stat outgrew veer_stats");

/* ---- trace: translation events, written only while veer_trace_on[0] != 0 ---------- */

#define VEER_TRACE_BYTES (256 * 1024)   /* ring buffer size, a power of two */

enum veer_trace_verdict {
	VEER_TRACE_TRANSLATED = 1,
	VEER_TRACE_REFUSED = 2,     /* no endpoints anywhere: ECONNREFUSED */
	VEER_TRACE_DROPPED = 3,     /* Local set empty: ETIMEDOUT */
};

struct veer_trace_event {
	__u64  ts_ns;           /* bpf_ktime_get_ns() */
	__u64  cookie;          /* socket cookie */
	__u64  netns_cookie;    /* the client's network namespace */
	__u32  pid;             /* thread group id of the caller */
	__u32  rev_nat_id;      /* the frontend */
	__u32  backend_id;      /* 0 unless translated */
	struct veer_addr fe_addr;
	struct veer_addr be_addr;
	__be16 fe_port;
	__be16 be_port;
	__u8   proto;
	__u8   verdict;         /* enum veer_trace_verdict */
	__u8   pad0[6];
	char   comm[16];        /* the caller's command */
};
_Static_assert(sizeof(struct veer_trace_event) == 96, "struct veer_trace_event: layout change, bump VEER_PIN_VERSION");

/* ---- config: one entry, written by the agent at install and adopt ---------------- */

/* veer_config.flags */
#define VEER_CFG_F_HOSTNS_ONLY 0x1 /* translate only sockets of the network namespace
                                    * hostns_cookie (the agent's): pods reach the ClusterIP
                                    * itself, so a mesh sidecar can intercept it */

struct veer_config {
	__u64 hostns_cookie;    /* bpf_get_netns_cookie() of the host's network namespace */
	__u32 flags;            /* VEER_CFG_F_* */
	__u32 pad0;
};
_Static_assert(sizeof(struct veer_config) == 16, "struct veer_config: layout change, bump VEER_PIN_VERSION");

/*
 * ==== kube-proxy's other promises (issue 15) =========================================
 * Kept together so the packet-path maps (issue 19) can sit beside them without touching them.
 */

/*
 * ---- service_ips: where a connect() that missed every frontend may not go ----------
 * An LPM trie over the 16-byte address (IPv4 as ::ffff:a.b.c.d, so an IPv4 /12 is a /108).
 * /128 entries are ClusterIPs: a port their Service does not expose is refused. Shorter
 * prefixes are the cluster's service CIDRs: an address there that no Service holds is
 * dropped (kube-proxy nftables' "cluster-ips-check"). Looked up only after the frontend
 * lookup missed, and only while veer_config has VEER_CFG_F_SERVICE_IPS (the agent sets
 * it when the trie is not empty), so a non-service connect pays one inlined array read.
 */
#define VEER_SERVICE_IPS_MAX 262144 /* a ClusterIP per Service and family, and the CIDRs: 100,000 dual-stack Services */

struct veer_lpm_addr_key {
	__u32 prefixlen;        /* 0..128, in the 16-byte space */
	struct veer_addr addr;
};
_Static_assert(sizeof(struct veer_lpm_addr_key) == 20, "struct veer_lpm_addr_key: layout change, bump VEER_PIN_VERSION");

enum veer_service_ip_rule {
	VEER_SVCIP_REFUSE = 1,  /* a ClusterIP: unexposed port -> ECONNREFUSED */
	VEER_SVCIP_DROP = 2,    /* a service CIDR: unallocated -> ETIMEDOUT */
};

struct veer_service_ip {
	__u32 rule;             /* enum veer_service_ip_rule */
	__u32 pad0;
};
_Static_assert(sizeof(struct veer_service_ip) == 8, "struct veer_service_ip: layout change, bump VEER_PIN_VERSION");

/* veer_config.flags: the service_ips trie holds entries (see above). */
#define VEER_CFG_F_SERVICE_IPS 0x2
/* veer_config.flags: bind() onto a frontend fails with EADDRINUSE (post_bind4/6). */
#define VEER_CFG_F_BIND_PROTECT 0x4

/*
 * ---- source_ranges: loadBalancerSourceRanges, per frontend -------------------------
 * An LPM trie keyed by frontend id (rev_nat_id) + client address, so one lookup answers
 * "may this client use this frontend" for the socket hooks here and for a packet-path
 * (tc) program alike. prefixlen counts the 32 bits of rev_nat_id first, then address bits
 * (IPv4 ranges as ::ffff:a.b.c.d/96+n). For each restricted frontend the agent writes
 *   {32, id, ::}                 allow = 0: the frontend is restricted (matches any client)
 *   {32 + 128 - n, id, range}    allow = 1: one range
 * so a lookup returns NULL for an unrestricted frontend, allow = 1 for a client inside a
 * range, allow = 0 otherwise (kube-proxy DROPs). Only LoadBalancer ingress IPs are
 * restricted, as in kube-proxy. Looked up only while veer_config has
 * VEER_CFG_F_SOURCE_RANGES.
 *
 * At connect() a socket may have no source address yet. The socket hooks then use one of
 * two sentinel clients, whose verdicts the agent writes as /128 entries:
 *   ::ffff:0.0.0.0, "unbound, host": a socket of the host's network namespace; the
 *     kernel will pick a node address, so allowed iff a node address is in a range;
 *   ::ffff:0.0.0.1, "unbound, pod": a socket of another namespace, a pod of this
 *     node; allowed iff the Node's podCIDRs lie wholly inside the ranges.
 * Neither is ever a real source address, so a tc program never matches them.
 */
#define VEER_SOURCE_RANGES_MAX 65536

struct veer_src_range_key {
	__u32 prefixlen;        /* 32 (the id) + address bits */
	__u32 rev_nat_id;       /* network byte order: matched as bytes, most significant first */
	struct veer_addr addr;
};
_Static_assert(sizeof(struct veer_src_range_key) == 24, "struct veer_src_range_key: layout change, bump VEER_PIN_VERSION");

struct veer_src_range_val {
	__u32 allow;            /* 1: inside a range; 0: the frontend's catch-all (deny) */
	__u32 pad0;
};
_Static_assert(sizeof(struct veer_src_range_val) == 8, "struct veer_src_range_val: layout change, bump VEER_PIN_VERSION");

/* veer_config.flags: the source_ranges trie holds entries. */
#define VEER_CFG_F_SOURCE_RANGES 0x8

/*
 * ---- packet path (bpf/veer_tc.bpf.c): clients outside the node --------------------
 * The tc program reads veer_services / veer_backends / veer_members above; this block
 * holds only what it adds. A frontend whose external clients use another endpoint set
 * than the node's own clients (externalTrafficPolicy Local, while connections made on the
 * node are short-circuited to the Cluster set) gets a second entry, key.scope =
 * VEER_SCOPE_EXTERNAL, with its own slots and rev_nat id; the packet path looks it up
 * first and falls back to the cluster-scope entry. The socket programs read only
 * VEER_SCOPE_CLUSTER (0), which every older entry has.
 */
#define VEER_SCOPE_CLUSTER  0   /* every client: the socket programs and the packet path */
#define VEER_SCOPE_EXTERNAL 1   /* the packet path only, where it differs */

/* veer_svc_val.flags: external clients keep their own address (eTP=Local): DNAT only.
 * Without it the packet path also source-NATs to the node's address (eTP=Cluster). */
#define VEER_SVC_F_EXT_LOCAL    0x4

/* veer_pkt_stats: per-CPU counters of the packet path, indexed by enum veer_pkt_stat. */
enum veer_pkt_stat {
	VEER_PKT_STAT_TRANSLATED = 0,   /* a flow opened: conntrack entry with its NAT inserted */
	VEER_PKT_STAT_TRACKED,          /* a packet of a flow conntrack already holds */
	VEER_PKT_STAT_UNTRACKED,        /* TCP segment other than an opening SYN: left to conntrack, not looked up */
	VEER_PKT_STAT_DROPPED,          /* no local endpoint under eTP=Local: dropped silently */
	VEER_PKT_STAT_REFUSED,          /* no endpoint anywhere: the host answers it */
	VEER_PKT_STAT_SLOT_MISSING,     /* slot or backend lookup failed: left untranslated */
	VEER_PKT_STAT_FAMILY_MISMATCH,  /* backend of the other family: left untranslated */
	VEER_PKT_STAT_CT_FAILED,        /* conntrack entry not allocated, NATed or inserted */
	VEER_PKT_STAT_NO_ROUTE,         /* no route to the backend for the SNAT source: dropped */
	VEER_PKT_STAT_SOURCE_DENIED,    /* client outside the LB's loadBalancerSourceRanges: dropped */
	VEER_PKT_STAT_AFFINITY,         /* a new flow sent to its client's remembered backend (ClientIP) */
	VEER_PKT_STAT_MAX,
};
/* Mirrored by PacketPathStat (Sources/VeerDatapath/PacketPath.swift); LayoutTests checks it. */
_Static_assert(VEER_PKT_STAT_MAX <= VEER_STATS_SLOTS, "enum veer_pkt_stat outgrew veer_pkt_stats");

#endif /* VEER_MAPS_H */
