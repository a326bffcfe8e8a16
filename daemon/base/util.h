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
/* A set of non-zero addresses (open addressing), for walking lists a target
 * controls: a repeated address is a cycle. Holds at most max entries. */
struct addr_set {
	uint64_t *slots;
	size_t mask, n, max;
};
int addr_set_init(struct addr_set *s, size_t max);
/* 1: already present (a cycle), 0: added, -ENOSPC: full, -EINVAL: addr 0. */
int addr_set_add(struct addr_set *s, uint64_t addr);
void addr_set_free(struct addr_set *s);

/* Length (1-4) of the valid UTF-8 sequence at s (NUL-terminated), 0 when
 * the bytes there are not one (overlong, surrogate, truncated, > U+10FFFF). */
size_t utf8_seq_len(const char *s);

/* mkdir -p: creates path and its missing parents with mode (existing ones
 * are kept as they are). 0, or negative errno (-ENOTDIR when path or a
 * parent exists and is not a directory). */
int make_dirs(const char *path, mode_t mode);
/* Last path component. */
const char *path_base(const char *path);

/* FNV-1a, 64 bit: hash_fnv1a(HASH_FNV1A_INIT, p, n), chained by passing
 * the previous value back in. */
#define HASH_FNV1A_INIT 0xcbf29ce484222325ull
uint64_t hash_fnv1a(uint64_t h, const void *data, size_t len);
uint64_t hash_fnv1a_str(uint64_t h, const char *s);
/* Creates path for writing, never through a symlink and never into an
 * existing file (O_CREAT|O_EXCL|O_NOFOLLOW): a stale file of that name (a
 * temp file left by a crash, or a symlink someone planted) is unlinked
 * first, once. fd or negative errno. */
int open_new_file(const char *path, mode_t mode);

#endif
