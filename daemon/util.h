/* Small parsing and formatting helpers shared by the commands. */
#ifndef MEMDRIFT_UTIL_H
#define MEMDRIFT_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* "1234" -> pid. 0 or -EINVAL (not a positive integer). */
int parse_pid(const char *s, pid_t *pid);
/* "500ms", "2s", "10m", "1h", plain seconds "3" -> nanoseconds. 0 or -EINVAL. */
int parse_duration_ns(const char *s, uint64_t *ns);
/* "64MiB", "1g", "4096" -> bytes. 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *bytes);
/* Human-readable bytes into buf ("12.3 MiB"). Returns buf. */
const char *fmt_bytes(char *buf, size_t len, uint64_t bytes);
/* Human-readable duration into buf ("3m12s"). Returns buf. */
const char *fmt_duration(char *buf, size_t len, uint64_t ns);
uint64_t now_monotonic_ns(void);
uint64_t now_realtime_ns(void);
/* mkdir -p: creates path and its missing parents with mode (existing ones
 * are kept as they are). 0, or negative errno (-ENOTDIR when path or a
 * parent exists and is not a directory). */
int make_dirs(const char *path, mode_t mode);
/* Last path component. */
const char *path_base(const char *path);

#endif
