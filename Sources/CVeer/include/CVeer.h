#ifndef CVEER_H
#define CVEER_H

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

#endif
