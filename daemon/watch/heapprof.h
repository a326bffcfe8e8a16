/* The Go heap profile read in place (watch tier): the runtime's own sampled
 * heap-profile buckets (runtime.mbuckets), walked from outside with
 * process_vm_readv. No probe, nothing written into the target.
 *
 * Read by `snapshot --heap`, attach's live view, the daemon's heap-site
 * cache and its post-mortems (heap_profile_read, heap_profile_sites,
 * heap_profile_build_pprof).
 *
 * heap_site strings point into the target's gobin: valid while t is open. */
#ifndef MEMDRIFT_HEAPPROF_H
#define MEMDRIFT_HEAPPROF_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "binary/go_offsets.h"
#include "discover/target.h"
#include "output/pprof.h"

#define HEAP_MAX_BUCKETS 65536 /* buckets walked per read */
#define HEAP_MAX_NSTK 1024     /* Go's debug.profstackdepth cap; more is corruption */
/* DWARF sizes a target's binary gives runtime.bucket's header and
 * runtime.memRecord; larger layouts are refused (real ones: 48 and 128). */
#define HEAP_MAX_PCS (8u << 20) /* stack PCs kept per read (64 MiB) */
#define HEAP_MAX_HEADER 256
#define HEAP_MAX_MEMRECORD 256
/* One bucket read: the first read, the largest stack, and the record. */
#define HEAP_BUCKET_READ (1024 + HEAP_MAX_NSTK * 8 + HEAP_MAX_HEADER + HEAP_MAX_MEMRECORD)
#define HEAP_MEM_PROFILE 1     /* runtime.bucketType memProfile */

/* One runtime.memRecordCycle. */
struct heap_cycle {
	uint64_t allocs, frees, alloc_bytes, free_bytes;
};

/* Where the fields of a runtime.bucket and its trailing data sit. */
struct heap_bucket_layout {
	int header_size; /* sizeof(runtime.bucket); stk[nstk]uintptr follows */
	int allnext, typ, size, nstk;
	int memrecord_size; /* memRecord{active; future[3]} of memRecordCycle */
	int cycle_size;     /* sizeof(memRecordCycle): 32, or 16 from 1.27 */
};

/* One bucket as parsed from its bytes. stk points into the parsed buffer. */
struct heap_bucket_raw {
	uint64_t allnext;
	int64_t typ;
	uint64_t object_size;
	uint64_t nstk;
	const uint8_t *stk; /* nstk little-endian uintptr, leaf first */
	struct heap_cycle active, future[3];
};

struct heap_record {
	uint64_t *stack;      /* runtime return PCs, leaf first (into heap_profile.pcs) */
	uint32_t nstk;
	uint64_t object_size; /* bucket.size: the sampled allocation size */
	struct heap_cycle raw; /* sampled counts, as runtime.MemProfile returns them */
	/* estimates of all allocations (runtime/pprof's scaleHeapSample) */
	int64_t alloc_objects, alloc_bytes, inuse_objects, inuse_bytes;
};

struct heap_profile {
	pid_t pid;
	int64_t rate;           /* the target's runtime.MemProfileRate */
	uint64_t taken_ns;      /* CLOCK_MONOTONIC */
	struct heap_record *records; /* memProfile buckets, in list order */
	size_t nrecords;
	uint64_t *pcs;
	size_t buckets;         /* list entries walked */
	size_t skipped;         /* unreadable or implausible buckets */
	bool truncated;         /* HEAP_MAX_BUCKETS or HEAP_MAX_PCS reached */
	bool cycle;             /* the bucket list looped back on itself */
	bool pending_flush;     /* read between mark termination's NextCycle and Flush;
				 * future[cycle%3] folded in as MemProfile does */
	bool no_gc_yet;         /* all cycles folded in (no GC published anything) */
};

/* runtime/pprof's scaleHeapSample: rate <= 1 means no scaling. */
void heap_scale_sample(int64_t count, int64_t size, int64_t rate, int64_t *out_count,
		       int64_t *out_size);

/* Layout from the binary's offsets; typ sits right after allnext in every
 * release that has a bucket (next, allnext, typ, hash, size, nstk). -EINVAL
 * when offsets are missing. */
int heap_layout_from_offsets(const struct go_offsets *off, struct heap_bucket_layout *l);

/* Parses one bucket from buf (header + stk + memRecord). -EINVAL when buf is
 * too short for the header, -E2BIG when nstk > HEAP_MAX_NSTK, -ENODATA when
 * buf ends before the memRecord (*need tells how many bytes are needed). */
int heap_parse_bucket(const struct heap_bucket_layout *l, const uint8_t *buf, size_t len,
		      struct heap_bucket_raw *out, size_t *need);

/* The counts runtime.MemProfile would report for a bucket: active, plus
 * future[pending_index] when a cycle is published but not yet flushed
 * (pending_index < 0: none), or all futures when fold_all. */
struct heap_cycle heap_bucket_counts(const struct heap_bucket_raw *b, int pending_index,
				     bool fold_all);

/* Reads the heap profile of a live Go process. 0, or a negative errno with a
 * one-line reason: -ENODATA when MemProfileRate is 0 (heap profiling off),
 * -ENOENT when mbuckets / MemProfileRate cannot be located, -ESRCH when the
 * process is gone. */
int heap_profile_read(const struct go_target *t, struct heap_profile *p, char *err, size_t errlen);
void heap_profile_free(struct heap_profile *p);

/* In-use heap by allocation site: the first frame outside the runtime (the
 * runtime frames above it are trimmed here, not in the pprof output). */
struct heap_site {
	const char *function, *file;
	int line;
	uint64_t pc; /* runtime return address of that frame */
	int64_t inuse_bytes, inuse_objects, alloc_bytes, alloc_objects;
};

/* Sites sorted by inuse_bytes, descending (*sites malloc'd, may be NULL when
 * *n is 0). */
int heap_profile_sites(const struct go_target *t, const struct heap_profile *p,
		       struct heap_site **sites, size_t *n);
/* JSON array of the first max sites: {function, file, line, inuse_bytes,
 * inuse_objects, alloc_bytes, alloc_objects}. */
json_object *heap_sites_to_json(const struct heap_site *sites, size_t n, size_t max);
/* Reads t's heap profile into *hp and its sites (heap_profile_sites), the
 * first max of them (0: all): the one "read the profile, take the top sites"
 * of every caller. 0, or a negative errno with a reason in err (then *hp is
 * freed and *sites NULL). On success: free(*sites); heap_profile_free(hp). */
int heap_profile_top_sites(const struct go_target *t, struct heap_profile *hp, size_t max,
			   struct heap_site **sites, size_t *n, char *err, size_t errlen);

/* Is this a runtime-internal function (trimmed above the allocation site)? */
bool heap_is_runtime_func(const char *name);
/* runtime.mallocgc*, newobject, newarray, makeslice*, growslice,
 * profilealloc: the allocator's own frames, which lead 1.26+ bucket stacks. */
bool heap_is_alloc_frame(const char *name);

/* The profile as pprof: sample types alloc_objects/count, alloc_space/bytes,
 * inuse_objects/count, inuse_space/bytes; period space/bytes = rate; default
 * inuse_space; one mapping for the executable; every frame kept, with
 * drop_frames hiding runtime frames above the allocation site in viewers. */
int heap_profile_build_pprof(const struct go_target *t, const struct heap_profile *p,
			     struct pprof_builder **out, char *err, size_t errlen);
/* Same, written gzip-compressed to path (e.g. DIR/heap.pb.gz). */
int heap_profile_write_pprof(const struct go_target *t, const struct heap_profile *p,
			     const char *path, char *err, size_t errlen);

#endif
