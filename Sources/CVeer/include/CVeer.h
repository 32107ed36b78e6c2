#ifndef CVEER_H
#define CVEER_H

#include <stdint.h>
#include <stddef.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <sys/vfs.h>
#include <sys/mount.h>
#include "veer_maps.h"

/* libbpf's print callback takes a va_list, which Swift cannot format portably; this
 * shim formats libbpf's lines in C and keeps the last ones for error messages. */
void veer_libbpf_log_capture(int verbose);
/* Copies the captured log (NUL-terminated, possibly truncated from the front). */
size_t veer_libbpf_log_copy(char *buf, size_t len);
void veer_libbpf_log_clear(void);

/* A socket to terminate: its cookie and the backend it must be connected to. */
struct veer_destroy_target {
	uint64_t cookie;
	struct veer_addr addr; /* network order; IPv4 as ::ffff:a.b.c.d */
	uint16_t port;         /* network order */
	uint16_t pad0;
	uint32_t pad1;
};

/* Destroys (netlink SOCK_DESTROY) the sockets of `protocol` in the network namespace
 * `netns_fd` that match a target (sorts `targets`): AF_INET sockets, and AF_INET6 ones
 * (including v4-mapped peers). Returns how many, or -errno. */
int veer_destroy_sockets(int netns_fd, int protocol, struct veer_destroy_target *targets, size_t count);

/* The netns cookie (SO_NETNS_COOKIE) of the network namespace `netns_fd`: what
 * bpf_get_netns_cookie() returns for its sockets. Returns 0 or -errno. */
int veer_netns_cookie(int netns_fd, uint64_t *cookie);

/* Bytes the process holds in malloc'd memory (glibc's mallinfo2 uordblks), for `make bench`. */
size_t veer_heap_in_use(void);
/* malloc_trim(0): after a large /metrics scrape (heap.c). */
void veer_heap_release(void);

/* The packet path at tc ingress (tc_attach.c): our filter is the one with this handle and
 * priority. Each returns 0 or -errno; attach creates the clsact qdisc if needed and replaces
 * our filter in place. */
int veer_tc_attach_ingress(int ifindex, int prog_fd, uint32_t handle, uint32_t priority);
int veer_tc_query_ingress(int ifindex, uint32_t handle, uint32_t priority, uint32_t *prog_id);
int veer_tc_detach_ingress(int ifindex, uint32_t handle, uint32_t priority);

/* A UDP conntrack entry (conntrack_udp.c): where its first packet went, where replies come
 * from (the backend, after DNAT), and its original tuple as the kernel encodes it, to delete it. */
struct veer_ct_flow {
	struct veer_addr orig_dst;   /* network order; IPv4 as ::ffff:a.b.c.d */
	struct veer_addr reply_src;
	uint16_t orig_dport;         /* network order */
	uint16_t reply_sport;        /* network order */
	uint8_t  family;             /* AF_INET / AF_INET6 */
	uint8_t  pad0;
	uint16_t orig_tuple_len;
	uint8_t  orig_tuple[128];    /* the CTA_TUPLE_ORIG attribute, header included */
};

/* Lists the UDP entries of the caller's network namespace; *out is malloc'd (free it).
 * Returns 0 or -errno. */
int veer_conntrack_udp_list(struct veer_ct_flow **out, size_t *count);
/* Deletes one entry by its original tuple. Returns 0, -ENOENT if already gone, or -errno. */
int veer_conntrack_delete(const struct veer_ct_flow *flow);

#endif
