// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * netbench: the one client and server program every `make bench` mode uses, so the
 * modes differ only in what sits between them (nothing, Veer, iptables, nftables).
 * Like veer-probe it joins a cgroup and a network namespace before creating any socket.
 *
 *   serve CRR_PORT BULK_PORT UDP_PORT     on 0.0.0.0 in the namespace, three threads:
 *        CRR: accept, send one byte, close. BULK: accept, send until the peer goes.
 *        UDP: echo every datagram. Prints "ready".
 *   crr IP PORT MS     for MS milliseconds: socket, connect, read the first byte,
 *                      SO_LINGER{1,0} close (RST: no TIME_WAIT). One line:
 *                      "crr n=N errors=E rate=CONN_PER_S p50_us=.. p99_us=.."
 *   udp IP PORT MS     one unconnected socket, sendto + recvfrom per query (DNS-like):
 *                      "udp n=N errors=E rate=QUERIES_PER_S p50_us=.. p99_us=.."
 *   bulk IP PORT MS    one connection, read for MS ms: "bulk bytes=B gbps=G"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "../tools/sandbox_join.h"

#define MAX_SAMPLES (4 * 1024 * 1024)

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "netbench: %s: %s\n", what, strerror(errno));
	exit(2);
}

static struct sockaddr_in addr_of(const char *ip, const char *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port)) };
	if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
		fprintf(stderr, "netbench: bad address %s\n", ip);
		exit(2);
	}
	return sa;
}

static int listener(int type, unsigned short port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY };
	int fd = socket(AF_INET, type, 0), one = 1;
	if (fd < 0) die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) die("bind");
	if (type == SOCK_STREAM && listen(fd, 4096)) die("listen");
	return fd;
}

static void *serve_crr(void *arg)
{
	int lfd = listener(SOCK_STREAM, (unsigned short)(long)arg);
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0) continue;
		(void)!write(c, "x", 1);
		close(c);
	}
	return NULL;
}

static void *bulk_conn(void *arg)
{
	int c = (int)(long)arg;
	static char buf[256 * 1024];
	while (write(c, buf, sizeof(buf)) > 0) {}
	close(c);
	return NULL;
}

static void *serve_bulk(void *arg)
{
	int lfd = listener(SOCK_STREAM, (unsigned short)(long)arg);
	for (;;) {
		int c = accept(lfd, NULL, NULL);
		if (c < 0) continue;
		pthread_t t;
		if (pthread_create(&t, NULL, bulk_conn, (void *)(long)c)) close(c);
		else pthread_detach(t);
	}
	return NULL;
}

static void *serve_udp(void *arg)
{
	int fd = listener(SOCK_DGRAM, (unsigned short)(long)arg), one = 1;
	// Reply from the address the query was sent to (as DNS servers do): with a wildcard
	// bind the kernel would otherwise pick the source by route, and NAT'd replies break.
	if (setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one))) die("IP_PKTINFO");
	char buf[2048], ctl[CMSG_SPACE(sizeof(struct in_pktinfo))];
	for (;;) {
		struct sockaddr_in from;
		struct iovec iov = { buf, sizeof(buf) };
		struct msghdr m = { .msg_name = &from, .msg_namelen = sizeof(from), .msg_iov = &iov, .msg_iovlen = 1,
				    .msg_control = ctl, .msg_controllen = sizeof(ctl) };
		ssize_t n = recvmsg(fd, &m, 0);
		if (n < 0) continue;
		struct in_pktinfo *pi = NULL;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) pi = (struct in_pktinfo *)CMSG_DATA(c);
		iov.iov_len = (size_t)n;
		if (pi) {
			pi->ipi_spec_dst = pi->ipi_addr;
			pi->ipi_ifindex = 0;
			m.msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
		} else {
			m.msg_control = NULL;
			m.msg_controllen = 0;
		}
		sendmsg(fd, &m, 0);
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, unsigned *s, long n, long errors, unsigned long long elapsed)
{
	qsort(s, (size_t)n, sizeof(*s), cmp_u32);
	double p50 = n ? s[n / 2] / 1000.0 : 0, p99 = n ? s[(long)(n * 0.99)] / 1000.0 : 0;
	printf("%s n=%ld errors=%ld rate=%.1f p50_us=%.2f p99_us=%.2f\n", what, n, errors,
	       n * 1e9 / (double)elapsed, p50, p99);
}

static int crr(struct sockaddr_in sa, long ms)
{
	unsigned *s = malloc(MAX_SAMPLES * sizeof(*s));
	long n = 0, errors = 0;
	struct linger lg = { 1, 0 };
	unsigned long long start = now_ns(), end = start + (unsigned long long)ms * 1000000ULL, t0 = start;
	while (n < MAX_SAMPLES && (t0 = now_ns()) < end) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0) die("socket");
		char b;
		int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && read(fd, &b, 1) == 1;
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		if (ok) s[n++] = (unsigned)(now_ns() - t0);
		else if (++errors > 1000) break;
	}
	report("crr", s, n, errors, now_ns() - start);
	return 0;
}

static int udp(struct sockaddr_in sa, long ms)
{
	unsigned *s = malloc(MAX_SAMPLES * sizeof(*s));
	long n = 0, errors = 0;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) die("socket");
	struct timeval tv = { 0, 200000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char q[64] = "query", r[2048];
	unsigned long long start = now_ns(), end = start + (unsigned long long)ms * 1000000ULL, t0 = start;
	while (n < MAX_SAMPLES && (t0 = now_ns()) < end) {
		struct sockaddr_in from;
		socklen_t len = sizeof(from);
		int ok = sendto(fd, q, 40, 0, (struct sockaddr *)&sa, sizeof(sa)) == 40 &&
			 recvfrom(fd, r, sizeof(r), 0, (struct sockaddr *)&from, &len) == 40 &&
			 from.sin_addr.s_addr == sa.sin_addr.s_addr && from.sin_port == sa.sin_port;
		if (ok) s[n++] = (unsigned)(now_ns() - t0);
		else if (++errors > 100) break;
	}
	report("udp", s, n, errors, now_ns() - start);
	return 0;
}

static int bulk(struct sockaddr_in sa, long ms)
{
	static char buf[256 * 1024];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0) die("socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) die("connect");
	unsigned long long bytes = 0, start = now_ns(), end = start + (unsigned long long)ms * 1000000ULL, t;
	while ((t = now_ns()) < end) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0) die("read");
		bytes += (unsigned long long)n;
	}
	struct linger lg = { 1, 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	printf("bulk bytes=%llu gbps=%.3f\n", bytes, bytes * 8.0 / (double)(t - start));
	return 0;
}

int main(int argc, char **argv)
{
	const char *cgroup = NULL, *netns = NULL;
	int i = sandbox_options(argc, argv, &cgroup, &netns);
	if (argc - i < 4) {
		fprintf(stderr, "usage: netbench [--cgroup DIR] [--netns PATH] serve|crr|udp|bulk ARGS...\n");
		return 2;
	}
	join(cgroup, netns);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *cmd = argv[i];
	if (!strcmp(cmd, "serve")) {
		pthread_t t[3];
		pthread_create(&t[0], NULL, serve_crr, (void *)(long)atoi(argv[i + 1]));
		pthread_create(&t[1], NULL, serve_bulk, (void *)(long)atoi(argv[i + 2]));
		pthread_create(&t[2], NULL, serve_udp, (void *)(long)atoi(argv[i + 3]));
		usleep(200000);
		printf("ready\n");
		pthread_join(t[0], NULL);
		return 0;
	}
	struct sockaddr_in sa = addr_of(argv[i + 1], argv[i + 2]);
	long ms = atol(argv[i + 3]);
	if (!strcmp(cmd, "crr")) return crr(sa, ms);
	if (!strcmp(cmd, "udp")) return udp(sa, ms);
	if (!strcmp(cmd, "bulk")) return bulk(sa, ms);
	fprintf(stderr, "netbench: unknown command %s\n", cmd);
	return 2;
}
