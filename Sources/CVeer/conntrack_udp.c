// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * UDP conntrack entries of the caller's network namespace over ctnetlink: list them (original
 * destination, reply source, and the original tuple attribute as the kernel sent it) and
 * delete one by that tuple. The packet path's flows live in conntrack; when a backend leaves
 * a frontend, the agent deletes the UDP flows translated to it, as kube-proxy does, so the
 * client's next datagram opens a flow to a live backend.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include "CVeer.h"

#define NLA_ALIGN4(len) (((len) + 3) & ~3)
#define NLA_HDR ((int)NLA_ALIGN4(sizeof(struct nlattr)))

static int ct_socket(void)
{
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	struct timeval tv = { .tv_sec = 5 };

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* Finds attribute `type` in [p, p+len). */
static const struct nlattr *nla_find(const void *p, int len, int type)
{
	while (len >= (int)sizeof(struct nlattr)) {
		const struct nlattr *a = p;

		if (a->nla_len < sizeof(struct nlattr) || a->nla_len > len)
			return NULL;
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a;
		len -= NLA_ALIGN4(a->nla_len);
		p = (const char *)p + NLA_ALIGN4(a->nla_len);
	}
	return NULL;
}

static const void *nla_data(const struct nlattr *a) { return (const char *)a + NLA_HDR; }
static int nla_len(const struct nlattr *a) { return a->nla_len - NLA_HDR; }

/* One side of a tuple: address (v4-mapped or v6) and port of `src_or_dst`; 0 on success. */
static int tuple_side(const struct nlattr *tuple, int want_src, struct veer_addr *addr, uint16_t *port, uint8_t *proto)
{
	const struct nlattr *ip = nla_find(nla_data(tuple), nla_len(tuple), CTA_TUPLE_IP);
	const struct nlattr *pr = nla_find(nla_data(tuple), nla_len(tuple), CTA_TUPLE_PROTO);
	const struct nlattr *a, *p, *num;

	if (!ip || !pr)
		return -1;
	memset(addr, 0, sizeof(*addr));
	if ((a = nla_find(nla_data(ip), nla_len(ip), want_src ? CTA_IP_V4_SRC : CTA_IP_V4_DST)) && nla_len(a) == 4) {
		addr->ip6[2] = htonl(0xffff);
		memcpy(&addr->ip6[3], nla_data(a), 4);
	} else if ((a = nla_find(nla_data(ip), nla_len(ip), want_src ? CTA_IP_V6_SRC : CTA_IP_V6_DST)) && nla_len(a) == 16) {
		memcpy(addr->ip6, nla_data(a), 16);
	} else {
		return -1;
	}
	num = nla_find(nla_data(pr), nla_len(pr), CTA_PROTO_NUM);
	p = nla_find(nla_data(pr), nla_len(pr), want_src ? CTA_PROTO_SRC_PORT : CTA_PROTO_DST_PORT);
	if (!num || !p || nla_len(p) != 2)
		return -1;
	*proto = *(const uint8_t *)nla_data(num);
	memcpy(port, nla_data(p), 2);
	return 0;
}

int veer_conntrack_udp_list(struct veer_ct_flow **out, size_t *count)
{
	struct {
		struct nlmsghdr nh;
		struct nfgenmsg nf;
	} req = {
		.nh = { .nlmsg_len = sizeof(req), .nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.nf = { .nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0 },
	};
	size_t cap = 64, n = 0;
	struct veer_ct_flow *flows = calloc(cap, sizeof(*flows));
	static char buf[1 << 16];
	int fd = ct_socket(), rc = 0, done = 0;

	if (fd < 0) {
		free(flows);
		return fd;
	}
	if (!flows || send(fd, &req, sizeof(req), 0) < 0) {
		rc = -errno;
		goto out;
	}
	while (!done) {
		ssize_t got = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *nh;

		if (got < 0) {
			rc = -errno;
			goto out;
		}
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)got); nh = NLMSG_NEXT(nh, got)) {
			const struct nlattr *orig, *reply;
			int alen;
			const void *attrs;

			if (nh->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (nh->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(nh);

				rc = e->error;
				goto out;
			}
			attrs = (const char *)NLMSG_DATA(nh) + NLMSG_ALIGN(sizeof(struct nfgenmsg));
			alen = (int)nh->nlmsg_len - (int)NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct nfgenmsg)));
			orig = nla_find(attrs, alen, CTA_TUPLE_ORIG);
			reply = nla_find(attrs, alen, CTA_TUPLE_REPLY);
			if (!orig || !reply || orig->nla_len > sizeof(flows[0].orig_tuple))
				continue;
			if (n == cap) {
				struct veer_ct_flow *more = realloc(flows, 2 * cap * sizeof(*flows));

				if (!more) {
					rc = -ENOMEM;
					goto out;
				}
				flows = more;
				cap *= 2;
			}
			struct veer_ct_flow *f = &flows[n];
			uint8_t proto = 0, rproto = 0;

			memset(f, 0, sizeof(*f));
			if (tuple_side(orig, 0, &f->orig_dst, &f->orig_dport, &proto) ||
			    tuple_side(reply, 1, &f->reply_src, &f->reply_sport, &rproto) || proto != IPPROTO_UDP)
				continue;
			f->family = ((struct nfgenmsg *)NLMSG_DATA(nh))->nfgen_family;
			f->orig_tuple_len = orig->nla_len;
			memcpy(f->orig_tuple, orig, orig->nla_len);
			n++;
		}
	}
out:
	close(fd);
	if (rc) {
		free(flows);
		return rc;
	}
	*out = flows;
	*count = n;
	return 0;
}

int veer_conntrack_delete(const struct veer_ct_flow *flow)
{
	struct {
		struct nlmsghdr nh;
		struct nfgenmsg nf;
		char tuple[sizeof(flow->orig_tuple)];
	} req;
	struct {
		struct nlmsghdr nh;
		struct nlmsgerr err;
	} ack;
	int fd = ct_socket(), rc = 0;

	if (fd < 0)
		return fd;
	memset(&req, 0, sizeof(req));
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct nfgenmsg)) + NLA_ALIGN4(flow->orig_tuple_len);
	req.nh.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	req.nh.nlmsg_seq = 2;
	req.nf.nfgen_family = flow->family;
	req.nf.version = NFNETLINK_V0;
	memcpy(req.tuple, flow->orig_tuple, flow->orig_tuple_len);
	if (send(fd, &req, req.nh.nlmsg_len, 0) < 0)
		rc = -errno;
	else if (recv(fd, &ack, sizeof(ack), 0) < 0)
		rc = -errno;
	else if (ack.nh.nlmsg_type == NLMSG_ERROR)
		rc = ack.err.error; /* 0: deleted; -ENOENT: already gone */
	close(fd);
	return rc;
}
