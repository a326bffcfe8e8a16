/* What native_trace.c and its views (output/native_trace_view.c) share:
 * the tracer's state and the unwound frames of a site. */
#ifndef MEMDRIFT_NATIVE_TRACE_INTERNAL_H
#define MEMDRIFT_NATIVE_TRACE_INTERNAL_H

#include <limits.h>
#include <stdint.h>

#include "probe/bpf_util.h"
#include "symbols/symbolize.h"
#include "trace/native_trace.h"

struct native_trace_bpf;
struct native_unwind;

struct native_trace {
	struct native_trace_opts opts;
	pid_t pid;
	const struct go_target *go;
	struct native_trace_bpf *skel;
	struct probe_links links;
	struct native_probe_info probes[NATIVE_MAX_PROBES];
	size_t nprobes;
	char libc[PATH_MAX];
	char libc_open[PATH_MAX + 32];
	struct symbolizer *sym;
	struct native_unwind *uw; /* NULL with frame-pointer stacks (fp_stacks) */
	/* last poll */
	struct native_site *sites;
	size_t nsites;
	struct native_alloc *vals;
	struct native_stats stats;
	struct native_cgo_fn *fns;
	size_t nfns;
	uint64_t poll_ns, prev_poll_ns;
};

/* How a site's frames were found and where its C walk stopped. */
struct site_unwind {
	const char *how[NATIVE_MAX_FRAMES]; /* "regs", "cfi", "fp", "sp" ([rsp]) */
	const char *stop; /* why the C walk ended early; NULL: complete */
	size_t nc;        /* frames of the C side (the Go side follows) */
};

/* A site's addresses, leaf first (the same order), into out[max]. */
size_t native_site_addrs(struct native_trace *t, const struct native_site *s, uint64_t *out,
			 size_t max, struct site_unwind *uw);
/* A site's frames, leaf first (C side, then the Go side of the cgo call),
 * and, when uw is given, how each was found and where the C walk stopped. */
size_t native_site_frames_unwind(struct native_trace *t, const struct native_site *s,
				 struct sym_frame *frames, size_t max, struct site_unwind *uw);

#endif
