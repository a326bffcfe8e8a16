/* C memory of one process (bpf/native_trace.bpf.c): libc allocator probes in
 * that process only, outstanding blocks aggregated per allocating stack
 * (count, bytes, age of the oldest), and for Go targets runtime.cgocall:
 * calls per C function, and the Go stack joined to the allocations each
 * cgo call makes.
 *
 * Lifecycle: native_trace__new(opts: pid, go) -> __attach() -> repeated
 * __poll() (reads the kernel maps, aggregates) and __json / __print /
 * __write_pprof on what the last poll saw -> __free. */
#ifndef MEMDRIFT_NATIVE_TRACE_H
#define MEMDRIFT_NATIVE_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "native_trace_abi.h"
#include "symbols/symbolize.h"

struct go_target;
struct json_object;
struct native_trace;

struct native_trace_opts {
	pid_t pid;                    /* the process to trace */
	const struct go_target *go;   /* its Go analysis (go_target_open), NULL for a
				       * non-Go process; must outlive the trace */
	uint32_t max_allocs;  /* outstanding blocks tracked in the kernel; 0: default */
	bool trace_native;    /* libc allocator probes (`--trace native`) */
	bool trace_cgo;       /* runtime.cgocall probes (`--trace cgo`, Go only) */
	bool entry_probes;    /* every probe at +0, as libbpf-tools memleak does (benchmark) */
	bool fp_stacks;       /* the kernel's frame-pointer C stacks, no CFI unwinding (as
			       * before; benchmark; MEMDRIFT_NATIVE_STACKS=fp sets it) */
	uint32_t max_sites;   /* sites kept per poll; 0: NATIVE_MAX_SITES */
};

#define NATIVE_MAX_SITES 65536u
#define NATIVE_MAX_FRAMES (2 * NATIVE_STACK_DEPTH + 2)
#define NATIVE_MAX_PROBES 16

/* Aggregation key: the C stack (its id: native_trace_walk.bpf.h's key, unwound by
 * native_unwind.h; or with fp_stacks the kernel's frame-pointer walk), the
 * entry probe's return address, and the Go side of the cgo call. */
struct native_site_key {
	int32_t stackid;
	int32_t go_stackid;
	uint64_t caller;
	uint64_t go_caller;
};

struct native_site {
	struct native_site_key key;
	uint64_t count;
	uint64_t bytes;
	uint64_t oldest_birth_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	uint32_t kinds;           /* bit per enum native_kind */
};

/* One probe as attached: for `ps --probes`-like output and the stats. */
struct native_probe_info {
	char name[32];        /* "malloc", "free", "runtime.cgocall", ... */
	char insn[64];        /* the probed instruction */
	uint64_t offset;      /* bytes from the function entry */
	uint64_t file_offset;
	bool emulated;
	bool retprobe;        /* also a uretprobe */
	bool in_libc;         /* in the process's libc, else in its executable */
	uint64_t cookie;      /* the probe's BPF cookie (kind, or cgocall's RSP delta) */
	enum native_probe probe;
};

struct native_stats {
	uint64_t counters[NATIVE_STAT_MAX]; /* enum native_stat */
	uint64_t kernel_missed;             /* runs the kernel skipped (BPF recursion guard) */
	/* allocator entry program: runs and their time in the kernel, while
	 * kernel.bpf_stats_enabled is 1 (else 0; the cost bench sets it) */
	uint64_t entry_runs, entry_run_ns;
	uint64_t sites_dropped;             /* sites beyond max_sites at the last poll */
	uint64_t outstanding_allocs;        /* at the last poll */
	uint64_t outstanding_bytes;
	/* anonymous mmaps the Go runtime makes through libc (x_cgo_mmap in cgo
	 * binaries): Go heap arenas, shown by the heap views, not C memory */
	uint64_t go_runtime_mmap_bytes;
	uint32_t max_allocs;
};

struct native_cgo_fn {
	uint64_t fn;     /* runtime address of the C function */
	uint64_t calls;  /* since attach */
	double per_s;    /* over the last poll interval */
};

/* Opens the BPF object, configures it for opts->pid (and its Go text),
 * checks that BPF is usable here and loads it; no probes yet. 0 or negative
 * errno with a one-line reason in err. */
int native_trace__new(const struct native_trace_opts *opts, struct native_trace **out, char *err,
		      size_t errlen);
/* The probes native tracing puts on process pid, planned without BPF:
 * runtime.cgocall of go (cgo), then the allocator of the libc it maps
 * (native; its path as mapped into libc). What __attach attaches and `ps
 * --probes` shows. 0 or negative errno with a reason in err. */
int native_trace__plan(pid_t pid, const struct go_target *go, bool native, bool cgo,
		       bool entry_probes, struct native_probe_info *probes, size_t max, size_t *n,
		       char *libc, size_t libclen, char *err, size_t errlen);
/* What `attach --trace` alone turns on for a process: native when it maps
 * a libc (a static Go binary has no C allocator), cgo when the binary also
 * links C through cgo. */
void native_trace_applies(pid_t pid, const struct go_target *go, bool *native, bool *cgo);
/* Attaches the probes (runtime.cgocall, then the process's libc). 0 or
 * negative errno with a one-line reason in err (-ENOENT: no libc mapped). */
int native_trace__attach(struct native_trace *t, char *err, size_t errlen);
/* Reads counters and the outstanding map, aggregates sites (sorted by
 * bytes, largest first). 0 or negative errno. */
int native_trace__poll(struct native_trace *t);
/* Sites of the last poll; *n = count. The array lives until the next poll. */
const struct native_site *native_trace__sites(const struct native_trace *t, size_t *n);
/* A site's merged stack, leaf first: C frames, then the Go frames of the
 * cgo call. 0 or negative errno. */
int native_trace__site_frames(struct native_trace *t, const struct native_site *s,
			      struct sym_frame *frames, size_t max, size_t *n);
/* The first Go frame outside the runtime and the cgo glue (the line that
 * called C.CString, C.malloc or the C function), or NULL. */
const struct sym_frame *native_go_caller(const struct sym_frame *frames, size_t n);
void native_trace__stats(const struct native_trace *t, struct native_stats *out);
const struct native_probe_info *native_trace__probes(const struct native_trace *t, size_t *n);
/* Per-C-function cgo calls of the last poll (most called first). */
const struct native_cgo_fn *native_trace__cgo_fns(const struct native_trace *t, size_t *n);

/* Adds "native": {...} to obj (the live view's JSON), at most max_sites sites. */
int native_trace__json(struct native_trace *t, struct json_object *obj, size_t max_sites);
/* The live view's text block. */
void native_trace__print(struct native_trace *t, FILE *f, size_t max_sites);
/* native.pb.gz: outstanding C memory by stack (inuse_objects/count,
 * inuse_space/bytes). 0 or negative errno. */
int native_trace__write_pprof(struct native_trace *t, const char *path);
void native_trace__free(struct native_trace *t);

/* Pure: aggregates n outstanding blocks into at most max sites (sorted by
 * bytes, largest first). *dropped = blocks whose site did not fit. */
int native_sites_aggregate(const struct native_alloc *allocs, size_t n, struct native_site *sites,
			   size_t max, size_t *nsites, uint64_t *dropped);
/* Pure: where to probe runtime.cgocall (code = its bytes at link-time
 * address entry): the first emulated instruction with RAX (fn) intact,
 * *rsp_delta = RSP distance to the return address there, *done_off = the
 * offset of its `call runtime.exitsyscall` (0 when not found). 0 or
 * -ENOENT / -ENOMEM. */
int native_place_cgocall(const uint8_t *code, size_t len, uint64_t entry, uint64_t exitsyscall,
			 struct native_probe_info *call, uint64_t *rsp_delta, uint64_t *done_off);
const char *native_kind_name(uint32_t kind);
const char *native_stat_name(uint32_t stat); /* NULL for the per-probe hit slots */

#endif
