// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * veer-probe: the client and server the kernel tests and the demo run inside their
 * sandbox. It joins a cgroup and a network namespace *before* creating any socket (a
 * socket stays bound to its creator's cgroup), then:
 *
 *   serve-tcp IP PORT NAME       accept loop; every connection gets "NAME\n"
 *   serve-udp IP PORT NAME       every datagram is answered with "NAME\n"
 *   serve-http IP PORT NAME      HTTP/1.1: every request is answered 200 with "NAME\n"
 *   serve-whoami IP PORT NAME    HTTP/1.1 as serve-http, the body "NAME CLIENT_IP:PORT\n": the
 *                                address the pod sees (SNAT or the client's own)
 *   (both HTTP servers read a request body to its end and report its size in X-Received)
 *   tcp IP PORT COUNT [GAP_US]   COUNT connects, each on a new socket
 *   udp-connect IP PORT COUNT    COUNT connected UDP sockets, one query each
 *   udp-sendto IP PORT COUNT     one unconnected UDP socket, COUNT queries
 *   udp-hold IP PORT COUNT [GAP_US]  one connected UDP socket for COUNT queries; after
 *                                an error it reconnects, as a long-lived client would
 *   bind-tcp IP PORT COUNT       COUNT TCP sockets each bound (and closed): "ok bound ADDR T_NS"
 *   bind-udp IP PORT COUNT       the same for UDP
 *
 * VEER_PROBE_SOURCE=IP binds every client socket to that source address (port 0) first.
 *
 * IP is IPv4 (an AF_INET socket) or IPv6 (an AF_INET6 socket), so ::ffff:a.b.c.d is an
 * AF_INET6 socket talking to an IPv4 address, as Java does. Peers print as 10.96.0.10:80
 * or [fd00::10]:80.
 *
 * Clients print one line per attempt: "ok NAME PEER T_NS" (PEER from getpeername for
 * connected sockets, from recvfrom otherwise; T_NS the CLOCK_MONOTONIC start of the
 * attempt) or "err ERRNO_NAME T_NS". Servers print "ready" once bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "sandbox_join.h"

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "veer-probe: %s: %s\n", what, strerror(errno));
	exit(2);
}

/* An address of either family; its family is the family of the sockets made for it. */
struct addr {
	union {
		struct sockaddr sa;
		struct sockaddr_in in4;
		struct sockaddr_in6 in6;
	};
	socklen_t len;
};

static struct addr addr_of(const char *ip, const char *port)
{
	struct addr a;
	memset(&a, 0, sizeof(a));
	unsigned short p = htons((unsigned short)atoi(port));
	if (inet_pton(AF_INET, ip, &a.in4.sin_addr) == 1) {
		a.in4.sin_family = AF_INET;
		a.in4.sin_port = p;
		a.len = sizeof(a.in4);
	} else if (inet_pton(AF_INET6, ip, &a.in6.sin6_addr) == 1) {
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_port = p;
		a.len = sizeof(a.in6);
	} else {
		fprintf(stderr, "veer-probe: bad address %s\n", ip);
		exit(2);
	}
	return a;
}

static const char *fmt_addr(const struct addr *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];
	if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		inet_ntop(AF_INET, &a->in4.sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(a->in4.sin_port));
	}
	return buf;
}

static void set_timeout(int fd, int seconds)
{
	struct timeval tv = { .tv_sec = seconds };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void print_err(int err, unsigned long long t)
{
	const char *name = strerrorname_np(err);
	printf("err %s %llu\n", name ? name : "unknown", t);
}

static void trim(char *s)
{
	s[strcspn(s, "\r\n")] = 0;
}

/* A listening TCP socket; "ready" tells the test it may connect. */
static int listen_on(struct addr sa)
{
	int one = 1, fd = socket(sa.sa.sa_family, SOCK_STREAM, 0);
	if (fd < 0) die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, &sa.sa, sa.len)) die("bind");
	if (listen(fd, 4096)) die("listen");
	printf("ready\n");
	fflush(stdout);
	return fd;
}

static __attribute__((noreturn)) int serve_tcp(struct addr sa, const char *name)
{
	int fd = listen_on(sa);
	char reply[256];
	int n = snprintf(reply, sizeof(reply), "%s\n", name);
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR) continue;
			die("accept");
		}
		if (write(c, reply, (size_t)n) < 0) { /* client gone: nothing to do */ }
		close(c);
	}
}

/* A pod that answers with its name, as the seed articles' echo pods do; with `whoami`
 * also with the address the connection came from. */
static __attribute__((noreturn)) int serve_http_as(struct addr sa, const char *name, int whoami)
{
	int fd = listen_on(sa);
	for (;;) {
		struct addr peer;
		peer.len = sizeof(peer.in6);
		int c = accept(fd, &peer.sa, &peer.len);
		if (c < 0) {
			if (errno == EINTR) continue;
			die("accept");
		}
		char from[INET6_ADDRSTRLEN + 16] = "";
		char body[400], reply[600];
		if (whoami) fmt_addr(&peer, from, sizeof(from));
		set_timeout(c, 2);
		/* read the request head; the reply does not depend on it */
		char buf[4096];
		size_t got = 0;
		char *end = NULL;
		while (got < sizeof(buf) - 1) {
			ssize_t r = read(c, buf + got, sizeof(buf) - 1 - got);
			if (r <= 0) break;
			got += (size_t)r;
			buf[got] = 0;
			if ((end = strstr(buf, "\r\n\r\n"))) break;
		}
		/* A request body (an upload) is read to its end, or until it stalls for 2 s, and
		 * its size reported in X-Received: what arrived, not what the client sent. */
		long want = 0, received = 0;
		if (end) {
			*end = 0;
			char *cl = strcasestr(buf, "\r\ncontent-length:");
			if (cl) want = atol(cl + 17);
			received = (long)(got - (size_t)(end + 4 - buf));
		}
		while (received < want) {
			char sink[65536];
			ssize_t r = read(c, sink, sizeof(sink));
			if (r <= 0) break;
			received += r;
		}
		int blen = snprintf(body, sizeof(body), whoami ? "%s %s\n" : "%s\n", name, from);
		int n = snprintf(reply, sizeof(reply),
				 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nX-Received: %ld\r\nConnection: close\r\n\r\n%s",
				 blen, received, body);
		if (write(c, reply, (size_t)n) < 0) { /* client gone */ }
		close(c);
	}
}

static __attribute__((noreturn)) int serve_udp(struct addr sa, const char *name)
{
	int fd = socket(sa.sa.sa_family, SOCK_DGRAM, 0);
	if (fd < 0) die("socket");
	if (bind(fd, &sa.sa, sa.len)) die("bind");
	printf("ready\n");
	fflush(stdout);
	char buf[512], reply[256];
	int n = snprintf(reply, sizeof(reply), "%s\n", name);
	for (;;) {
		struct addr from;
		from.len = sizeof(from.in6);
		if (recvfrom(fd, buf, sizeof(buf), 0, &from.sa, &from.len) < 0) {
			if (errno == EINTR) continue;
			die("recvfrom");
		}
		sendto(fd, reply, (size_t)n, 0, &from.sa, from.len);
	}
}

/* One connected attempt: TCP reads the greeting, UDP sends a query and reads the reply. */
static void connected_once(struct addr sa, int type)
{
	unsigned long long t = now_ns();
	int fd = socket(sa.sa.sa_family, type, 0);
	if (fd < 0) die("socket");
	set_timeout(fd, 3);
	char buf[256] = { 0 }, peer[64];
	const char *src = getenv("VEER_PROBE_SOURCE");
	if (src) {
		struct addr from = addr_of(src, "0");
		if (bind(fd, &from.sa, from.len)) die("bind VEER_PROBE_SOURCE");
	}
	if (connect(fd, &sa.sa, sa.len)) {
		print_err(errno, t);
		close(fd);
		return;
	}
	if (type == SOCK_DGRAM && send(fd, "q", 1, 0) < 0) {
		print_err(errno, t);
		close(fd);
		return;
	}
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0) {
		print_err(n == 0 ? ECONNRESET : errno, t);
		close(fd);
		return;
	}
	trim(buf);
	struct addr pa;
	pa.len = sizeof(pa.in6);
	if (getpeername(fd, &pa.sa, &pa.len)) die("getpeername");
	printf("ok %s %s %llu\n", buf, fmt_addr(&pa, peer, sizeof(peer)), t);
	close(fd);
}

static void sendto_loop(struct addr sa, long count)
{
	int fd = socket(sa.sa.sa_family, SOCK_DGRAM, 0);
	if (fd < 0) die("socket");
	set_timeout(fd, 3);
	for (long i = 0; i < count; i++) {
		unsigned long long t = now_ns();
		char buf[256] = { 0 }, from_s[64];
		if (sendto(fd, "q", 1, 0, &sa.sa, sa.len) < 0) {
			print_err(errno, t);
			continue;
		}
		struct addr from;
		from.len = sizeof(from.in6);
		ssize_t n = recvfrom(fd, buf, sizeof(buf) - 1, 0, &from.sa, &from.len);
		if (n <= 0) {
			print_err(errno, t);
			continue;
		}
		trim(buf);
		printf("ok %s %s %llu\n", buf, fmt_addr(&from, from_s, sizeof(from_s)), t);
		fflush(stdout);
	}
	close(fd);
}

static void udp_hold(struct addr sa, long count, long gap_us)
{
	int fd = -1;
	for (long i = 0; i < count; i++) {
		unsigned long long t = now_ns();
		char buf[256] = { 0 }, peer[64];
		if (fd < 0) {
			fd = socket(sa.sa.sa_family, SOCK_DGRAM, 0);
			if (fd < 0) die("socket");
			set_timeout(fd, 1);
			if (connect(fd, &sa.sa, sa.len)) {
				print_err(errno, t);
				close(fd);
				fd = -1;
				continue;
			}
		}
		ssize_t n = -1;
		if (send(fd, "q", 1, 0) >= 0)
			n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0) {
			print_err(n == 0 ? ECONNRESET : errno, t);
			close(fd);
			fd = -1;
			continue;
		}
		trim(buf);
		struct addr pa;
		pa.len = sizeof(pa.in6);
		if (getpeername(fd, &pa.sa, &pa.len)) die("getpeername");
		printf("ok %s %s %llu\n", buf, fmt_addr(&pa, peer, sizeof(peer)), t);
		if (gap_us) usleep((useconds_t)gap_us);
	}
	if (fd >= 0) close(fd);
}

/* bind() alone: what bind protection is about. */
static void bind_once(struct addr sa, int type)
{
	unsigned long long t = now_ns();
	int fd = socket(sa.sa.sa_family, type, 0);
	int one = 1;
	char text[INET6_ADDRSTRLEN + 8];

	if (fd < 0) die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, &sa.sa, sa.len)) {
		print_err(errno, t);
	} else {
		printf("ok bound %s %llu\n", fmt_addr(&sa, text, sizeof(text)), t);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	const char *cgroup = NULL, *netns = NULL;
	int i = sandbox_options(argc, argv, &cgroup, &netns);
	if (argc - i < 4) {
		fprintf(stderr, "usage: veer-probe [--cgroup DIR] [--netns PATH] CMD IP PORT ARG [GAP_US]\n");
		return 2;
	}
	join(cgroup, netns);
	signal(SIGPIPE, SIG_IGN);
	/* A parent may have ignored these (test runners do); servers must still stop on them. */
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	const char *cmd = argv[i];
	struct addr sa = addr_of(argv[i + 1], argv[i + 2]);
	long count = atol(argv[i + 3]);
	long gap_us = argc - i > 4 ? atol(argv[i + 4]) : 0;

	if (!strcmp(cmd, "serve-tcp")) return serve_tcp(sa, argv[i + 3]);
	if (!strcmp(cmd, "serve-udp")) return serve_udp(sa, argv[i + 3]);
	if (!strcmp(cmd, "serve-http")) return serve_http_as(sa, argv[i + 3], 0);
	if (!strcmp(cmd, "serve-whoami")) return serve_http_as(sa, argv[i + 3], 1);
	if (!strcmp(cmd, "udp-hold")) {
		udp_hold(sa, count, gap_us);
		return 0;
	}
	if (!strcmp(cmd, "udp-sendto")) {
		sendto_loop(sa, count);
		return 0;
	}
	if (!strcmp(cmd, "bind-tcp") || !strcmp(cmd, "bind-udp")) {
		for (long n = 0; n < count; n++) bind_once(sa, !strcmp(cmd, "bind-tcp") ? SOCK_STREAM : SOCK_DGRAM);
		return 0;
	}
	int type = !strcmp(cmd, "tcp") ? SOCK_STREAM : !strcmp(cmd, "udp-connect") ? SOCK_DGRAM : -1;
	if (type < 0) {
		fprintf(stderr, "veer-probe: unknown command %s\n", cmd);
		return 2;
	}
	for (long n = 0; n < count; n++) {
		connected_once(sa, type);
		if (gap_us) usleep((useconds_t)gap_us);
	}
	return 0;
}
