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
	uint32_t addr; /* network order */
	uint16_t port; /* network order */
	uint16_t pad;
};

/* Destroys (netlink SOCK_DESTROY) the sockets of `protocol` in the network namespace
 * `netns_fd` that match a target (sorts `targets`). Returns how many, or -errno. */
int veer_destroy_sockets(int netns_fd, int protocol, struct veer_destroy_target *targets, size_t count);

#endif
