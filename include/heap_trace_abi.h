/* BPF <-> user ABI for Go heap probes (bpf/heap_trace.bpf.c, daemon/trace/heap_trace.c):
 * the profile tier (the runtime's own sampled heap-profiling hooks) and the
 * trace tier (runtime.mallocgc on every call). Fixed-width types, enums,
 * limits only. */
#ifndef MEMDRIFT_HEAP_EVENTS_H
#define MEMDRIFT_HEAP_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#include "go_stack_check.h"

/* Bounds. One live sampled object per MemProfileRate (512 KiB) of live heap:
 * a 131072-slot object table (4 MiB, 8-way sets) holds a 32 GiB heap's
 * 65536 at half load, where a full set is rare. */
#define HT_MAX_TGIDS 256
#define HT_MAX_OBJECTS 131072
#define HT_MAX_PROF_BUCKETS 16384   /* (process, runtime bucket) counters */
#define HT_MAX_PENDING 4096         /* threads between mProf_Malloc and setprofilebucket
				     * (the fallback plan; see ht_mprof_malloc_bucket) */
#define HT_MAX_PROF_STACKS 4096
#define HT_MAX_TRACE_STACKS 8192
#define HT_MAX_TRACE_SITES 16384    /* (process, stack) sample counters */
#define HT_STACK_DEPTH 64
#define HT_HIST_BUCKETS 48          /* log2 size classes: [0], [1], [2,4), ... [2^46, inf) */
#define HT_DEFAULT_SAMPLE_BYTES (512u * 1024u)

/* BPF cookie of every heap probe. */
/* bits 16-17: the stack-check filter (go_stack_check.h) */
#define HT_COOKIE_MPROF_MP (1u << 18)       /* mProf_Malloc(mp, p, size): Go 1.23+ */
/* ht_mprof_malloc_bucket (mProf_Malloc's body, after stkbucket returns the
 * bucket in RAX): the argument spill slots of p and size, each at
 * RBP + 16 + 8 x slot (slot < HT_SPILL_SLOTS). */
#define HT_SPILL_SLOTS 4
#define HT_COOKIE_P_SLOT(c) ((c) & 3u)
#define HT_COOKIE_SIZE_SLOT(c) (((c) >> 4) & 3u)
#define HT_COOKIE_SLOTS(p, size) (((p) & 3u) | (((size) & 3u) << 4))
/* Keep ht_objects: sampled objects leave it, through the freeSpecial
 * probe or the daemon's heap walk (heap_walk.h), so it cannot silt up. */
#define HT_COOKIE_TRACK_OBJECTS (1u << 8)
/* ht_free_special: the runtime.special layout (heap_special_layout):
 * kind at byte kind_off < 32, specialprofile.b at 8 x bucket slot < 4. */
#define HT_COOKIE_SPECIAL(kind_off, kind_profile, bucket_off)                                  \
	(((kind_off) & 31u) | ((((bucket_off) >> 3) & 3u) << 5) | (((kind_profile) & 15u) << 8))
#define HT_COOKIE_KIND_OFF(c) ((c) & 31u)
#define HT_COOKIE_BUCKET_SLOT(c) (((c) >> 5) & 3u)
#define HT_COOKIE_KIND_PROFILE(c) (((c) >> 8) & 15u)
/* The hot programs (ht_mprof_malloc_bucket, ht_free_special) take the
 * traced process from the cookie's upper half, not from ht_tgids: a hash
 * lookup (two cache misses under an allocating process) less a hit. */
#define HT_COOKIE_TGID(c) ((__u32)((c) >> 32))
/* ht_mallocgc on runtime.mallocgc where size-specialized allocators exist
 * (probed by ht_mallocgc too): count only sizes >= this, bits 20-30. */
#define HT_SPECIALIZED_MAX 2047u
#define HT_COOKIE_MIN_SIZE(n) (((__u64)(n) & HT_SPECIALIZED_MAX) << 20)
#define HT_COOKIE_MIN_SIZE_OF(c) ((__u32)(((c) >> 20) & HT_SPECIALIZED_MAX))
/* ht_mprof_free: bucket.size at 8 x slot (bits 20-23): the freed size, which
 * mProf_Free(b) no longer passes from 1.27. */
#define HT_COOKIE_BUCKET_SIZE_SLOT(n) (((__u64)(n) & 15u) << 20)
#define HT_COOKIE_BUCKET_SIZE_SLOT_OF(c) ((__u32)(((c) >> 20) & 15u))

/* Per traced process (key: tgid). ht_mprof_malloc_bucket and
 * ht_free_special, the hot pair, carry what they need in their cookies. */
struct ht_tgid_config {
	__s32 special_kind_off;      /* runtime.special.kind; -1: freeSpecial not probed */
	__u32 special_kind_profile;  /* _KindSpecialProfile of this Go version */
	__s32 special_bucket_off;    /* runtime.specialprofile.b */
	__u32 stack_every;           /* profile tier, entry probe (the fallback plan): a stack
				      * for the first HT_STACKS_FIRST samples, then one in
				      * stack_every (0: every one); the body probe walks
				      * once per bucket, the only stack the daemon uses */
	__u64 sample_bytes;          /* trace tier: one stack per this many bytes per CPU */
	__u64 prof_samples;          /* mProf_Malloc hits so far (the stack budget) */
};

#define HT_STACKS_FIRST 256
/* Body probe: frame walks per bucket before its stack check is given up. */
#define HT_STACK_TRIES 3
#define HT_DEFAULT_STACK_EVERY 16

/* A sampled allocation between mProf_Malloc and setprofilebucket (key:
 * pid_tgid of the thread: setprofilebucket runs on the same M via
 * systemstack, with the M acquired). */
struct ht_pending {
	__u64 p;
	__u64 size;
	__u64 ts;      /* bpf_ktime_get_ns at mProf_Malloc */
	__s64 stackid; /* ht_prof_stacks id; negative: not captured (budget or error) */
};

/* Live sampled objects seen since attach: a set-associative table in an
 * mmapable array (the daemon scans it in place), where a hash map's update
 * and delete (bucket lock, cross-CPU free list) cost ~0.3 us each. Set =
 * hash of the address; a slot is claimed by cmpxchg of p from 0 and
 * released by cmpxchg back — by the freeSpecial probe, or by the daemon's
 * heap walk (ts cmpxchg'd to 0 first, then p) through its writable
 * mapping; a new sample at an address still in the table takes the slot
 * over (the object there before is dead). ts is written last and cleared
 * first, so a reader skips slots with ts 0. A full set:
 * HT_STAT_OBJECTS_FULL (that sample's age is not tracked; the counts are
 * in ht_buckets). */
#define HT_OBJ_WAYS 8
#define HT_OBJ_SET_BITS 14
#define HT_OBJ_SETS (1u << HT_OBJ_SET_BITS) /* x HT_OBJ_WAYS = HT_MAX_OBJECTS */

struct ht_obj {
	__u64 p;       /* object address; 0: free slot */
	__u64 bucket;
	__u64 size;
	__u64 ts;      /* when it was sampled (CLOCK_MONOTONIC ns); 0: being written */
};

struct ht_obj_set {
	struct ht_obj way[HT_OBJ_WAYS];
};

static inline __u32 ht_obj_set_index(__u64 p)
{
	return (__u32)(((p >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - HT_OBJ_SET_BITS));
}

struct ht_bucket_key {
	__u32 tgid;
	__u32 pad;
	__u64 bucket;  /* runtime *bucket address */
};

/* Per runtime bucket since attach: what mProf_Malloc (with its bucket from
 * setprofilebucket) and mProf_Free saw. */
struct ht_bucket_counts {
	__u64 allocs;
	__u64 alloc_bytes;
	__u64 frees;
	__u64 free_bytes;
	__s64 stackid;   /* a stack captured at one of its mProf_Malloc hits; negative:
			  * none, -1 - failed walks (HT_STACK_TRIES at most) */
};

/* Trace tier, per process and CPU (PERCPU_HASH value). */
struct ht_rate {
	__u64 allocs;       /* mallocgc calls with size > 0 (what MemStats.Mallocs counts) */
	__u64 bytes;        /* requested bytes */
	__s64 left;         /* bytes until the next stack sample on this CPU */
	__u64 hist[HT_HIST_BUCKETS];
};

struct ht_trace_key {
	__u32 tgid;
	__s32 stackid;
};

struct ht_trace_counts {
	__u64 samples;      /* weighted: sample_bytes periods crossed */
	__u64 bytes;        /* sizes of the sampled allocations themselves */
};

/* Indexes of the .bss counters array. */
enum ht_stat {
	HT_STAT_MALLOC_HITS,       /* mProf_Malloc */
	HT_STAT_BUCKET_HITS,       /* setprofilebucket */
	HT_STAT_FREE_HITS,         /* sampled objects swept (mProf_Free or freeSpecial) */
	HT_STAT_SPECIAL_HITS,      /* freeSpecial (any special kind) */
	HT_STAT_OBJECT_FREES,      /* freeSpecial of a tracked profiled object */
	HT_STAT_MALLOCGC_HITS,
	HT_STAT_MORESTACK_SKIPS,
	HT_STAT_PENDING_MISSES,    /* setprofilebucket without a matching mProf_Malloc */
	HT_STAT_PENDING_FULL,
	HT_STAT_OBJECTS_FULL,      /* sampled objects whose ht_objects set was full: age untracked */
	HT_STAT_BUCKETS_FULL,
	HT_STAT_PROF_STACK_ERRORS, /* bpf_get_stackid failed at mProf_Malloc */
	HT_STAT_TRACE_SAMPLES,
	HT_STAT_TRACE_STACK_ERRORS,
	HT_STAT_TRACE_SITES_FULL,
	HT_STAT_READ_ERRORS,
	HT_STAT_OBJECT_REUSED,     /* a sample at a tracked address: the old object was freed */
	HT_STAT_MAX,
};

/* log2 size class of an allocation: 0 for 0 bytes, else 1 + floor(log2),
 * capped: class i >= 1 holds sizes in [2^(i-1), 2^i). */
static inline __u32 ht_size_class(__u64 size)
{
	__u32 r = 0;

	if (!size)
		return 0;
	if (size >> 32) { size >>= 32; r += 32; }
	if (size >> 16) { size >>= 16; r += 16; }
	if (size >> 8) { size >>= 8; r += 8; }
	if (size >> 4) { size >>= 4; r += 4; }
	if (size >> 2) { size >>= 2; r += 2; }
	if (size >> 1) { r += 1; }
	r += 1;
	return r < HT_HIST_BUCKETS ? r : HT_HIST_BUCKETS - 1;
}

#endif
