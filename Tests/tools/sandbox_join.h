/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The test tools' way into a sandbox: join the child cgroup, then the network namespace,
 * before any socket exists (a socket stays bound to its creator's cgroup). Shared by
 * veer-probe (tests, demo) and netbench (make bench). The includer defines die().
 */
#ifndef VEER_SANDBOX_JOIN_H
#define VEER_SANDBOX_JOIN_H

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void die(const char *what);

static void join(const char *cgroup, const char *netns)
{
	if (cgroup) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/cgroup.procs", cgroup);
		FILE *f = fopen(path, "w");
		if (!f || fprintf(f, "%d\n", getpid()) < 0 || fclose(f)) die("join cgroup");
	}
	if (netns) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET)) die("join netns");
		close(fd);
	}
}

/* Parses leading "--cgroup DIR" / "--netns PATH" options; returns the index of the command. */
static int sandbox_options(int argc, char **argv, const char **cgroup, const char **netns)
{
	int i = 1;
	for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
		if (!strcmp(argv[i], "--cgroup")) *cgroup = argv[i + 1];
		else if (!strcmp(argv[i], "--netns")) *netns = argv[i + 1];
		else break;
	}
	return i;
}

#endif
