/* C allocation stacks without frame pointers (used by native_trace.c): the
 * BPF side (bpf/native_trace_walk.bpf.h) sends, once per new stack key, the
 * registers and a copy of the stack window; this module consumes them and
 * unwinds each right away by the .eh_frame CFI of the objects it runs
 * through (stack_unwind.h, no JVM), up to the first frame in Go code: the
 * cgo boundary, where the Go stack runtime.cgocall recorded takes over.
 * Bounded: one stack of at most NATIVE_STACK_DEPTH frames per stack id
 * (NATIVE_MAX_STACKS ids). */
#ifndef MEMDRIFT_NATIVE_UNWIND_H
#define MEMDRIFT_NATIVE_UNWIND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct go_target;
struct native_exec_ranges;
struct native_unwind;

/* One unwound C stack, leaf first (pointers owned by the unwinder, valid
 * until the next poll or free). */
struct native_cstack {
	size_t n;
	const uint64_t *pc;   /* pc[0] the probed instruction, then return addresses */
	const char *const *how; /* per frame: "regs", "cfi", "fp", "sp" ([rsp] at the probe) */
	const char *stop;     /* why the walk ended early, NULL when it reached its
			       * end or the cgo boundary */
	bool go_boundary;     /* the next frame was Go code (the cgo call's Go side follows) */
};

/* go: the process's Go analysis (NULL: not Go), must outlive the unwinder.
 * events_fd: the native_events ring buffer; walks_fd: native_walks (the
 * BPF key walk per id, used when an event was lost); exec: the BPF
 * object's table of executable mappings (its .bss), kept current by poll,
 * or NULL. 0 or -errno. */
int native_unwind_new(pid_t pid, const struct go_target *go, int events_fd, int walks_fd,
		      struct native_exec_ranges *exec, struct native_unwind **out);
/* Re-reads the mappings (publishing them to exec), consumes pending
 * new-stack events and unwinds them. Number or -errno. */
int native_unwind_poll(struct native_unwind *u);
/* The C stack of id: 0, or -ENOENT (no such id). */
int native_unwind_stack(struct native_unwind *u, int32_t id, struct native_cstack *out);
/* The Go binary's text [lo, hi) at run time, where its BPF key walk ends
 * (both 0 when go is NULL or has no runtime.text/etext symbols). */
void native_unwind_go_text(const struct go_target *go, uint64_t *lo, uint64_t *hi);
/* Events consumed, of them unwound by CFI to their end or the cgo boundary. */
void native_unwind_counts(const struct native_unwind *u, uint64_t *events, uint64_t *complete);
void native_unwind_free(struct native_unwind *u);

#endif
