// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * libbpf's bpf_tc_* options structs end in a zero-width bitfield (`size_t :0`) and are
 * validated by size and trailing zeroes: built with LIBBPF_OPTS here, in C, they are what
 * libbpf expects. Swift sees only these three calls.
 */
#include <errno.h>
#include <bpf/libbpf.h>
#include "CVeer.h"

int veer_tc_attach_ingress(int ifindex, int prog_fd, uint32_t handle, uint32_t priority)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog_fd, .handle = handle, .priority = priority,
		    .flags = BPF_TC_F_REPLACE);
	int rc = bpf_tc_hook_create(&hook);

	if (rc && rc != -EEXIST)
		return rc;
	return bpf_tc_attach(&hook, &opts);
}

int veer_tc_query_ingress(int ifindex, uint32_t handle, uint32_t priority, uint32_t *prog_id)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
	int rc = bpf_tc_query(&hook, &opts);

	if (rc == 0)
		*prog_id = opts.prog_id;
	return rc;
}

int veer_tc_detach_ingress(int ifindex, uint32_t handle, uint32_t priority)
{
	LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
	LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);

	return bpf_tc_detach(&hook, &opts);
}
