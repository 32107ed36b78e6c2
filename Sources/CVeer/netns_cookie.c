#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <sys/socket.h>
#include "CVeer.h"

/* Linux 5.14; older libc headers lack it. */
#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

/*
 * The cookie of a network namespace, as bpf_get_netns_cookie() reports it for its
 * sockets: a socket made inside it, asked with SO_NETNS_COOKIE. Made in a thread that
 * joins the namespace, so the rest of the process stays where it is.
 */
struct cookie_job {
	int netns_fd;
	uint64_t cookie;
	int result;
};

static void *cookie_thread(void *arg)
{
	struct cookie_job *job = arg;
	if (setns(job->netns_fd, CLONE_NEWNET)) {
		job->result = -errno;
		return NULL;
	}
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		job->result = -errno;
		return NULL;
	}
	socklen_t len = sizeof(job->cookie);
	job->result = getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, &job->cookie, &len) ? -errno : 0;
	close(fd);
	return NULL;
}

int veer_netns_cookie(int netns_fd, uint64_t *cookie)
{
	struct cookie_job job = { .netns_fd = netns_fd };
	pthread_t thread;
	int rc = pthread_create(&thread, NULL, cookie_thread, &job);
	if (rc)
		return -rc;
	pthread_join(thread, NULL);
	*cookie = job.cookie;
	return job.result;
}
