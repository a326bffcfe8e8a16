/* Go heap probes of one process (bpf/heap_trace.bpf.c).
 *
 * Profile tier (near-zero cost: one probe hit per sampled object, one
 * sample per MemProfileRate bytes allocated): runtime.mProf_Malloc at the
 * emulated call after `call stkbucket` (bucket in RAX, object and size
 * from their argument spill slots, time; the user stack once per bucket,
 * a check of the bucket's) — or, where that body is not recognised,
 * mProf_Malloc's entry (object, size, stack) plus runtime.setprofilebucket
 * (object -> bucket), one hit more. Which sampled objects died: by default
 * the heap walk (heap_walk.h: every live specialprofile record, read from
 * the target each poll, no probe), which also gives in-use per bucket
 * directly, samples from before attach included; with opts.free_probe, or
 * where the walk's layout is unknown, runtime.freeSpecial (a sampled object
 * swept: its bucket from the specialprofile record, and which object it
 * was; runtime.mProf_Free(b, size) instead where the runtime.special layout
 * is not known, then without sample ages) and in-use = the bucket's counts
 * read once at attach (after the probes are in) + what the probes saw
 * since. Scaled like runtime/pprof (heap_scale_sample) with the target's
 * MemProfileRate; grouped by allocation site (first non-runtime frame) as
 * heapprof does, so both tiers compare directly. What the buckets lack:
 * when each live sample was taken — oldest_sample_ns per site.
 *
 * Trace tier (`attach --trace heap`): runtime.mallocgc on every call
 * (~0.6 us a hit at its stack-check jbe): allocations and bytes per second,
 * a log2 size histogram (per-CPU maps), and one user stack per sample_bytes
 * allocated per CPU, counted per stack in a map (no ring buffer).
 *
 * Lifecycle (bpf_util.h's shape): heap_trace__new loads the BPF object;
 * heap_trace__attach plans, configures the maps and attaches for one
 * go_target (-ENODATA: its MemProfileRate is 0 and no trace tier was asked;
 * the heap_trace then only reports that state); every interval
 * heap_trace__poll, then the views (output/heap_trace_view.c: __json,
 * __print, __write_alloc_pprof); heap_trace__free detaches. Callers:
 * cli/cmd_attach.c (start_heap, the live view, --pprof) and
 * tests/tools/heap_dump.c. Code: trace/heap_trace.c (lifecycle, accessors),
 * heap_trace_plan.c (pure logic, planning), heap_trace_poll.c (buckets,
 * polling).
 * The go_target must outlive the heap_trace. */
#ifndef MEMDRIFT_HEAP_TRACE_H
#define MEMDRIFT_HEAP_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "discover/target.h"
#include "heap_trace_abi.h"
#include "probe/probe_place.h"
#include "watch/heap_walk.h"

struct heap_trace;
struct json_object;

struct heap_trace_opts {
	bool profile;          /* profile tier */
	bool trace;            /* trace tier (runtime.mallocgc) */
	uint64_t sample_bytes; /* trace tier: one stack per this many bytes per CPU; 0: 512 KiB */
	/* profile tier, entry probe (the fallback plan): after HT_STACKS_FIRST
	 * samples, capture the probe's own stack (only a check of the runtime
	 * bucket's) for one sample in stack_every (0: all); default
	 * HT_DEFAULT_STACK_EVERY. The body probe walks once per bucket. */
	bool stack_every_set;
	uint32_t stack_every;
	/* Sampled objects' frees from a runtime.freeSpecial probe (a second
	 * probe hit per sample) even where the heap walk could tell them. */
	bool free_probe;
	/* Frees from the runtime.mProf_Free probe (bucket counts only, no
	 * object ages), as where the special layout is unknown: for tests. */
	bool mprof_free;
};

enum heap_profile_state {
	HEAP_PROFILE_NOT_REQUESTED,
	HEAP_PROFILE_ON,
	HEAP_PROFILE_RATE_ZERO,     /* MemProfileRate 0: the runtime samples nothing */
	HEAP_PROFILE_UNAVAILABLE,   /* a hook or the bucket layout is missing */
};

enum heap_probe_kind {
	HEAP_PROBE_MPROF_MALLOC,
	HEAP_PROBE_SETPROFILEBUCKET,
	HEAP_PROBE_MPROF_FREE,
	HEAP_PROBE_FREE_SPECIAL,
	HEAP_PROBE_MALLOCGC,
	HEAP_PROBE_MPROF_MALLOC_BUCKET, /* mProf_Malloc's body after stkbucket */
	HEAP_PROBE_MAX,
};

/* Size-specialized allocators probed by the trace tier (1.27 has 14; 1.26's
 * experiment 66) and the most probes one target gets. */
#define HEAP_SPECIALIZED_MAX 96
#define HEAP_PROBES_MAX (HEAP_PROBE_MAX + HEAP_SPECIALIZED_MAX)

struct heap_probe {
	enum heap_probe_kind kind;
	const char *function;
	uint64_t func_vaddr;
	uint64_t file_offset;
	struct probe_place place;
	int p_slot, size_slot;       /* MPROF_MALLOC_BUCKET: argument spill slots */
	unsigned min_size;           /* MALLOCGC: count only sizes >= this (smaller
				      * ones are the specialized allocators') */
	bool attached;
};

/* One allocation site of the profile tier (estimates scaled like pprof). */
struct heap_trace_site {
	const char *function, *file; /* into the target's gobin */
	int line;
	int64_t inuse_bytes, inuse_objects, alloc_bytes, alloc_objects;
	uint64_t live_samples;      /* sampled objects alive (raw) */
	uint64_t freed_samples;     /* frees counted by a free probe since attach (raw) */
	uint64_t freed_bytes;       /* and their bytes */
	uint64_t live_tracked;      /* of which sampled since attach: their age is known */
	uint64_t oldest_sample_ns;  /* CLOCK_MONOTONIC of the oldest tracked live sample; 0 none */
	uint32_t buckets;
};

/* One allocation site of the trace tier's byte-sampled stacks. */
struct heap_alloc_site {
	const char *function, *file;
	int line;
	uint64_t samples;
	uint64_t est_bytes; /* samples x sample_bytes */
};

struct heap_rates {
	uint64_t allocs, bytes;         /* since attach (size > 0 calls) */
	double allocs_per_s, bytes_per_s; /* over the last poll interval */
	uint64_t hist[HT_HIST_BUCKETS]; /* since attach; [0] = size-0 calls */
};

struct heap_trace_stats {
	uint64_t counters[HT_STAT_MAX];
	uint64_t stacks_checked, stacks_matched; /* probe stack vs runtime bucket stack */
	uint64_t buckets;                        /* known runtime buckets */
	uint64_t kernel_missed;
	bool walk;                               /* frees from the heap walk */
	uint64_t walks, walk_failures, walk_ns_last, walk_ns_max;
	struct heap_walk_stats walk_last;
};

/* The argument spill slot (RBP + 16 + 8 x slot) to which a Go function
 * (code: its first len bytes at addr) stores argument register reg before
 * offset until, with the frame pointer RBP = entry RSP - 8 (the Go
 * prologue, either form). 0..HT_SPILL_SLOTS-1, or -ENOENT (not stored
 * there first, or another frame layout), -ENOMEM (Capstone). */
int heap_arg_spill_slot_x86(const uint8_t *code, size_t len, uint64_t addr, uint64_t until,
			    enum probe_reg reg);

/* Opens, checks (bpf_util_check) and loads the BPF object; no probes yet.
 * 0 or negative errno with err. */
int heap_trace__new(const struct heap_trace_opts *opts, struct heap_trace **out, char *err,
		    size_t errlen);
/* The probes for t's executable (no BPF needed). 0 or negative errno. */
int heap_trace__plan(const struct go_target *t, bool profile, bool trace, bool free_probe,
		     bool mprof_free, struct heap_probe *probes, size_t max, size_t *n, char *err,
		     size_t errlen);
/* The heap walk's layout for t's binary (offsets, runtime.mheap_, special
 * layout): 0, or -ENOTSUP when part of it is unknown. */
int heap_trace_walk_layout(const struct go_target *t, struct heap_walk_layout *wl);
/* Plans, configures the maps for go, attaches, reads the bucket baseline.
 * 0, or negative errno with a one-line err; -ENODATA: profiling off in the
 * target and nothing else to do (t stays, reporting that state). */
int heap_trace__attach(struct heap_trace *t, const struct go_target *go, char *err, size_t errlen);
/* Reads the kernel maps and the target's MemProfileRate; rebuilds the views. */
int heap_trace__poll(struct heap_trace *t);

enum heap_profile_state heap_trace__profile_state(const struct heap_trace *t, const char **msg);
int64_t heap_trace__mem_profile_rate(const struct heap_trace *t);
/* Arrays live until the next poll. Profile sites sorted by inuse_bytes,
 * alloc sites by samples. */
const struct heap_trace_site *heap_trace__sites(const struct heap_trace *t, size_t *n);
const struct heap_alloc_site *heap_trace__alloc_sites(const struct heap_trace *t, size_t *n);
/* NULL when the trace tier is off. */
const struct heap_rates *heap_trace__rates(const struct heap_trace *t);
void heap_trace__stats(const struct heap_trace *t, struct heap_trace_stats *out);
const struct heap_probe *heap_trace__probes(const struct heap_trace *t, size_t *n);

/* Adds "heap_trace": {profile:{...}, trace:{...}, stats:{...}} to obj. */
int heap_trace__json(struct heap_trace *t, struct json_object *obj, size_t max_sites);
void heap_trace__print(struct heap_trace *t, FILE *f, size_t max_sites);
/* Trace tier's byte-sampled stacks as pprof (alloc_samples/count,
 * alloc_space/bytes estimated). -ENODATA when the trace tier is off. */
int heap_trace__write_alloc_pprof(struct heap_trace *t, const char *path);
void heap_trace__free(struct heap_trace *t);

/* Pure helpers (unit-tested). */
/* runtime.special.kind offset, _KindSpecialProfile and the offset of
 * specialprofile.b from the binary's layout; -ENOTSUP where one of them is
 * not known (or not plausible). */
int heap_special_layout(const struct go_offsets *off, int *kind_off, unsigned *kind_profile,
			int *bucket_off);
/* runtime.mallocgc's dispatch to size-specialized allocators in its first
 * len bytes of code at addr: the size below which it hands an allocation
 * to them (`cmp rax, N; jae`), -ENOENT when there is none. */
int heap_malloc_dispatch_x86(const uint8_t *code, size_t len, uint64_t addr);
/* Does the runtime's bucket stack (leaf first) appear, contiguous, in the
 * probe's stack (leaf first; mine[0] is the probed IP)? A bucket stack
 * deeper than what the probe captured matches on the overlap. */
bool heap_stack_matches(const uint64_t *mine, size_t nmine, const uint64_t *bucket, size_t nbucket);
/* A frame the runtime leaves out of its profile stacks (a wrapper: method
 * value "-fm", or file <autogenerated>); the kernel's frame walk keeps it. */
bool heap_is_wrapper_frame(const char *func, const char *file);
/* Raw in-use of a bucket: baseline + since-attach (never below zero). */
void heap_bucket_inuse(uint64_t base_allocs, uint64_t base_frees, uint64_t base_alloc_bytes,
		       uint64_t base_free_bytes, const struct ht_bucket_counts *k, int64_t *count,
		       int64_t *bytes);
/* Lower bound of size class c of the histogram (0, 1, 2, 4, ...). */
uint64_t heap_hist_lower(unsigned c);

#endif
