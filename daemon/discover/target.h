/* A live Go process opened for observation: its executable's analysis and
 * the load bias that turns link-time addresses into runtime addresses. */
#ifndef MEMDRIFT_TARGET_H
#define MEMDRIFT_TARGET_H

#include "binary/gobin.h"
#include "discover/proc.h"

struct gobin_cache;

struct go_target {
	pid_t pid;
	struct proc_exe exe;
	struct gobin *bin;
	uint64_t bias; /* runtime address = link-time address + bias */
	struct gobin_cache *cache; /* bin is a reference from it, or NULL (owned) */
};

/* 0 or negative errno with a one-line reason in err (no such process, not a
 * Go program, unsupported Go version, permission denied, ...). */
int go_target_open(pid_t pid, struct go_target *t, char *err, size_t errlen);
void go_target_close(struct go_target *t);
/* Same, sharing the binary's analysis with other processes of the same
 * executable through cache (the daemon). */
int go_target_open_cached(pid_t pid, struct go_target *t, struct gobin_cache *cache, char *err,
			  size_t errlen);

/* The Go function name, resolved to its body: gobin_func_by_name prefers the
 * body among namesakes, and where the name still leads to an ABI0 wrapper
 * (`xorps; mov r14, fs:[-8]; jmp body`) the jump is followed, leaving
 * f->end 0 (the body's end unknown). 0 or -ENOENT. */
int go_target_func_body(const struct go_target *t, const char *name, struct gobin_func *f);

/* Runtime address of a runtime global, or 0 when unknown. */
uint64_t go_target_global(const struct go_target *t, const char *name);

#endif
