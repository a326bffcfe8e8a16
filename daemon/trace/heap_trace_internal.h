/* heap_trace's state, shared by its files: heap_trace.c (lifecycle,
 * accessors), heap_trace_plan.c (pure logic, planning), heap_trace_poll.c
 * (buckets, polling) and output/heap_trace_view.c (JSON, text, pprof).
 * Internal to them. */
#ifndef MEMDRIFT_HEAP_TRACE_INTERNAL_H
#define MEMDRIFT_HEAP_TRACE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "heap_trace_abi.h"
#include "probe/bpf_util.h"
#include "trace/heap_trace.h"
#include "watch/heap_walk.h"
#include "watch/heapprof.h"

#define HT_PROLOGUE_BYTES 64
/* mProf_Malloc's `call stkbucket` is within its first ~0x140 bytes (1.19-1.24). */
#define HT_MPROF_MALLOC_BYTES 1024
#define HT_BUCKET_READ HEAP_BUCKET_READ

_Static_assert(HT_OBJ_SETS * HT_OBJ_WAYS == HT_MAX_OBJECTS, "object table size");

/* A runtime bucket memdrift knows: its stack (read once from the target)
 * and its counts at attach. */
struct bucket_info {
	uint64_t addr;
	uint64_t base_allocs, base_frees, base_alloc_bytes, base_free_bytes;
	uint64_t *stk;
	uint32_t nstk;
	uint64_t object_size; /* bucket.size, read with the stack */
	bool stack_read;   /* tried */
	bool stack_checked;
	/* filled per poll */
	struct ht_bucket_counts k;
	uint64_t live_tracked, oldest_ns;
	uint64_t walk_live;   /* its live samples in the last heap walk */
};

struct heap_trace {
	struct heap_trace_opts opts;
	struct heap_trace_bpf *skel;
	const struct go_target *go;
	bool active;                 /* attached to go: the maps are about it */
	struct probe_links links;
	struct heap_probe probes[HEAP_PROBES_MAX];
	size_t nprobes;
	enum heap_profile_state state;
	char msg[256];
	int64_t rate;
	uint64_t rate_addr;
	struct heap_bucket_layout layout;
	bool have_layout;
	uint8_t *buf;

	struct bucket_info *buckets; /* sorted by addr */
	size_t nbuckets, capbuckets;

	struct heap_trace_site *sites;
	size_t nsites;
	struct heap_alloc_site *alloc_sites;
	size_t nalloc_sites;
	struct heap_rates rates;
	bool rates_valid;
	uint64_t last_poll_ns;
	uint64_t attach_ns;
	uint64_t stacks_checked, stacks_matched;
	struct ht_obj_set *objs; /* ht_objects, mapped; NULL: not mapped */

	/* Frees from the heap walk (heap_walk.h) instead of a freeSpecial
	 * probe: one probe hit per sample instead of two. */
	bool walk;
	struct heap_walk_layout wl;
	uint8_t *miss;       /* per ht_objects slot: walks in a row that lacked it */
	uint64_t *miss_ts;   /* the sample (ts) the count is about */
	struct heap_walk_stats wst; /* the last walk */
	uint64_t walks, walk_failures, walk_retired, walk_ns_last, walk_ns_max;
};

/* Walks in a row that must lack a tracked sample before it is retired: a
 * list being swept while it is read can come out short once. */
#define HT_WALK_MISSES 2

struct heap_trace_bpf;

/* The bucket counts at attach (after the probes are in). 0 or negative errno. */
int ht_read_baseline(struct heap_trace *t);
/* The target's runtime.MemProfileRate now, -1 unreadable. */
int64_t ht_read_rate(struct heap_trace *t);
/* pc of go through its pclntab (is_return: a return address, the call is
 * at pc - 1). 0 or negative errno. */
int ht_lookup_pc(const struct go_target *go, uint64_t pc, bool is_return,
		 struct gobin_pcinfo *info);
/* Stack id of map fd into ips (HT_STACK_DEPTH); the number of frames. */
size_t ht_read_stack(int fd, int64_t id, uint64_t *ips);

#endif
