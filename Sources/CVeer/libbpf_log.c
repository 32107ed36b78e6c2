#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include "CVeer.h"

/* The verifier log of a failed load can be long; keep the tail, which names the cause. */
#define VEER_LOG_CAP (64 * 1024)

static char log_buf[VEER_LOG_CAP];
static size_t log_len;
static int log_verbose;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static int veer_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[4096];
	int n = vsnprintf(line, sizeof(line), fmt, args);
	if (n < 0)
		return 0;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (level == LIBBPF_DEBUG && !log_verbose)
		return n;
	pthread_mutex_lock(&log_lock);
	if (log_len + (size_t)n >= VEER_LOG_CAP) {
		/* drop the oldest half so the tail survives */
		size_t keep = log_len / 2;
		memmove(log_buf, log_buf + log_len - keep, keep);
		log_len = keep;
	}
	if (log_len + (size_t)n < VEER_LOG_CAP) {
		memcpy(log_buf + log_len, line, (size_t)n);
		log_len += (size_t)n;
	}
	pthread_mutex_unlock(&log_lock);
	return n;
}

void veer_libbpf_log_capture(int verbose)
{
	log_verbose = verbose;
	libbpf_set_print(veer_print);
}

size_t veer_libbpf_log_copy(char *buf, size_t len)
{
	if (len == 0)
		return 0;
	pthread_mutex_lock(&log_lock);
	size_t n = log_len < len - 1 ? log_len : len - 1;
	memcpy(buf, log_buf + log_len - n, n);
	buf[n] = 0;
	pthread_mutex_unlock(&log_lock);
	return n;
}

void veer_libbpf_log_clear(void)
{
	pthread_mutex_lock(&log_lock);
	log_len = 0;
	pthread_mutex_unlock(&log_lock);
}
