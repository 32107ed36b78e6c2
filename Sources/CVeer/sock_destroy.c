#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include "CVeer.h"

/*
 * Terminating sockets connected to a removed backend (netlink SOCK_DESTROY). sock_diag
 * only sees the caller's network namespace, so the work runs in a thread of its own that
 * joins the target namespace and leaves the rest of the process where it is.
 */

struct destroy_job {
	int netns_fd;
	int protocol;
	const struct veer_destroy_target *targets;
	size_t count;
	int result;
};

static int cmp_target(const void *a, const void *b)
{
	uint64_t x = ((const struct veer_destroy_target *)a)->cookie;
	uint64_t y = ((const struct veer_destroy_target *)b)->cookie;
	return x < y ? -1 : x > y;
}

/* The socket's peer, as sock_diag reports it for its family, equals the target's backend.
 * An AF_INET6 socket connected to an IPv4 backend reports ::ffff:a.b.c.d, the target's form. */
static int peer_matches(int family, const struct inet_diag_msg *m, const struct veer_destroy_target *t)
{
	if (m->id.idiag_dport != t->port)
		return 0;
	if (family == AF_INET)
		return t->addr.ip6[0] == 0 && t->addr.ip6[1] == 0 && t->addr.ip6[2] == htonl(0xffff) &&
		       m->id.idiag_dst[0] == t->addr.ip6[3];
	return memcmp(m->id.idiag_dst, t->addr.ip6, sizeof(t->addr.ip6)) == 0;
}

static int destroy_one(int nl, int family, int protocol, const struct inet_diag_sockid *id)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg = {
		.nlh = { .nlmsg_len = sizeof(msg), .nlmsg_type = SOCK_DESTROY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK, .nlmsg_seq = 2 },
		.req = { .sdiag_family = (__u8)family, .sdiag_protocol = (__u8)protocol,
			 .idiag_states = ~0U, .id = *id },
	};
	if (send(nl, &msg, sizeof(msg), 0) < 0)
		return -errno;
	char buf[512];
	ssize_t n = recv(nl, buf, sizeof(buf), 0);
	if (n < 0)
		return -errno;
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (NLMSG_OK(h, (size_t)n) && h->nlmsg_type == NLMSG_ERROR)
		return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
	return -EPROTO;
}

/* Dumps one family's sockets and destroys the matching ones; returns how many, or -errno. */
static int destroy_family(int nl, int family, const struct destroy_job *job)
{
	int result = 0;
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} dump = {
		.nlh = { .nlmsg_len = sizeof(dump), .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1 },
		.req = { .sdiag_family = (__u8)family, .sdiag_protocol = (__u8)job->protocol, .idiag_states = ~0U },
	};
	struct inet_diag_sockid *found = NULL;
	size_t nfound = 0, cap = 0;
	if (send(nl, &dump, sizeof(dump), 0) < 0) {
		result = -errno;
		goto out;
	}
	/* Collect first, destroy after: no requests interleaved with the dump. */
	for (int done = 0; !done;) {
		static __thread char buf[65536];
		ssize_t n = recv(nl, buf, sizeof(buf), 0);
		if (n < 0) {
			result = -errno;
			goto out;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE) {
				done = 1;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				result = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
				goto out;
			}
			struct inet_diag_msg *m = NLMSG_DATA(h);
			struct veer_destroy_target key = {
				.cookie = (uint64_t)m->id.idiag_cookie[0] | ((uint64_t)m->id.idiag_cookie[1] << 32),
			};
			const struct veer_destroy_target *t =
				bsearch(&key, job->targets, job->count, sizeof(key), cmp_target);
			/* Only sockets connected to the backend: an unconnected one (dst 0) re-picks
			 * per datagram by itself and must live on (a resolver's socket, say). */
			if (!t || !peer_matches(family, m, t))
				continue;
			if (nfound == cap) {
				cap = cap ? cap * 2 : 16;
				struct inet_diag_sockid *grown = realloc(found, cap * sizeof(*found));
				if (!grown) {
					result = -ENOMEM;
					goto out;
				}
				found = grown;
			}
			found[nfound++] = m->id;
		}
	}
	for (size_t i = 0; i < nfound; i++) {
		int rc = destroy_one(nl, family, job->protocol, &found[i]);
		if (rc == 0)
			result++;
		/* ENOENT: it closed meanwhile; anything else is left for the next sync */
	}
out:
	free(found);
	return result;
}

static void *destroy_thread(void *arg)
{
	struct destroy_job *job = arg;
	job->result = 0;
	if (setns(job->netns_fd, CLONE_NEWNET)) {
		job->result = -errno;
		return NULL;
	}
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0) {
		job->result = -errno;
		return NULL;
	}
	static const int families[] = { AF_INET, AF_INET6 };
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		int rc = destroy_family(nl, families[f], job);
		if (rc == -ENOENT)
			continue; /* no sock_diag for this family (IPv6 disabled): no such sockets */
		if (rc < 0) {
			job->result = rc;
			break;
		}
		job->result += rc;
	}
	close(nl);
	return NULL;
}

int veer_destroy_sockets(int netns_fd, int protocol, struct veer_destroy_target *targets, size_t count)
{
	qsort(targets, count, sizeof(*targets), cmp_target);
	struct destroy_job job = { .netns_fd = netns_fd, .protocol = protocol, .targets = targets, .count = count };
	pthread_t thread;
	int rc = pthread_create(&thread, NULL, destroy_thread, &job);
	if (rc)
		return -rc;
	pthread_join(thread, NULL);
	return job.result;
}
