/* SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause) */
/*
 * The maps both BPF objects read: veer_sock.bpf.c (the socket hooks) and veer_tc.bpf.c (the
 * packet path). One definition, so the second object to load reuses the first one's pins
 * (libbpf compares type, sizes, max_entries and flags) and the two can never drift apart.
 * Keys and values: include/veer_maps.h. BPF only: it needs bpf_helpers.h's map macros.
 */
#ifndef VEER_SHARED_MAPS_H
#define VEER_SHARED_MAPS_H

#include "veer_maps.h"

/* Frontends: slot 0 is the master entry, slots 1..count name backends. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, VEER_SERVICES_MAX);
	__type(key, struct veer_svc_key);
	__type(value, struct veer_svc_val);
} veer_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, VEER_BACKENDS_MAX);
	__type(key, __u32);
	__type(value, struct veer_backend);
} veer_backends SEC(".maps");

/* (frontend, backend) pairs that are members now; the value counts selections (see veer_maps.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, VEER_MEMBERS_MAX);
	__type(key, struct veer_member_key);
	__type(value, struct veer_member_val);
} veer_members SEC(".maps");

/* loadBalancerSourceRanges: (frontend id, client prefix) -> allow; see veer_maps.h. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, VEER_SOURCE_RANGES_MAX);
	__type(key, struct veer_src_range_key);
	__type(value, struct veer_src_range_val);
} veer_source_ranges SEC(".maps");

/* sessionAffinity ClientIP: (client netns or client address, frontend) -> backend. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, VEER_AFFINITY_MAX);
	__type(key, struct veer_affinity_key);
	__type(value, struct veer_affinity_val);
} veer_affinity SEC(".maps");

#endif /* VEER_SHARED_MAPS_H */
