// SPDX-License-Identifier: GPL-2.0
/* Go heap probes (attached by daemon/trace/heap_trace.c at offsets from
 * daemon/probe/probe_place.c; never a uretprobe on Go code).
 *
 * Profile tier, the runtime's own sampled heap-profiling hooks (about one
 * hit per MemProfileRate bytes allocated):
 *   ht_mprof_malloc_bucket  inside runtime.mProf_Malloc, at the emulated call
 *                     that follows `call stkbucket`: the bucket in RAX, the
 *                     object and its size in their argument spill slots —
 *                     one probe hit per sample where the pair below takes two
 *   ht_mprof_malloc   runtime.mProf_Malloc: object, size, user stack, time
 *   ht_setbucket      runtime.setprofilebucket(p, b): the object's bucket
 *                     (these two: when the body's layout is not recognised)
 *   ht_free_special   runtime.freeSpecial(s, p, size): a sampled object swept,
 *                     its bucket read from the specialprofile record — one
 *                     probe where mProf_Free(b, size) would need a second
 *                     one for the object's identity. Only with
 *                     heap_trace_opts.free_probe or where the daemon's heap
 *                     walk (daemon/watch/heap_walk.c) cannot run: by default the
 *                     walk retires dead samples from ht_objects, and a
 *                     sampled object costs one probe hit in all.
 *   ht_mprof_free     runtime.mProf_Free(b[, size]): the same counts where the
 *                     runtime.special layout is not known (no object ages); the
 *                     size from bucket.size (1.27 passes none)
 * Trace tier:
 *   ht_mallocgc       runtime.mallocgc on every call (and the size-specialized
 *                     allocators the 1.27 compiler calls directly): counts, log2 size
 *                     histogram, one stack per N bytes per CPU, all in maps.
 * Per-process config lives in ht_tgids; the cookie carries the stack-check
 * flag and the mProf_Malloc argument layout, and for the hot pair
 * (ht_mprof_malloc_bucket, ht_free_special: every sample) all they need —
 * the traced tgid, the spill slots, the special layout — so they look up
 * no config. Live sampled objects (their ages) are in ht_objects, a
 * set-associative table (heap_events.h). Measured with bpf_stats on the
 * heap-overhead benchmark at MemProfileRate=1: ~0.45 + ~0.37 us a sample. */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "heap_trace_abi.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_TGIDS);
	__type(key, __u32);
	__type(value, struct ht_tgid_config);
} ht_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_PENDING);
	__type(key, __u64);
	__type(value, struct ht_pending);
} ht_pending SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HT_OBJ_SETS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct ht_obj_set);
} ht_objects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_PROF_BUCKETS);
	__type(key, struct ht_bucket_key);
	__type(value, struct ht_bucket_counts);
} ht_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, HT_MAX_PROF_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, HT_STACK_DEPTH * sizeof(__u64));
} ht_prof_stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, HT_MAX_TGIDS);
	__type(key, __u32);
	__type(value, struct ht_rate);
} ht_rates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HT_MAX_TRACE_SITES);
	__type(key, struct ht_trace_key);
	__type(value, struct ht_trace_counts);
} ht_trace_sites SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, HT_MAX_TRACE_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, HT_STACK_DEPTH * sizeof(__u64));
} ht_trace_stacks SEC(".maps");

/* Per-CPU counters: a shared .bss array would bounce one cache line
 * between the CPUs that allocate and the ones that sweep. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HT_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ht_stats SEC(".maps");

static __always_inline void stat_inc(enum ht_stat s)
{
	__u32 key = s;
	__u64 *v = bpf_map_lookup_elem(&ht_stats, &key);

	if (v)
		(*v)++;
}

/* A hit that is the morestack detour, not a call (go_stack_check.h). */
static __always_inline int morestack_branch_taken(struct pt_regs *ctx, __u64 cookie)
{
	if (!go_morestack_taken(ctx->flags, cookie))
		return 0;
	stat_inc(HT_STAT_MORESTACK_SKIPS);
	return 1;
}

SEC("uprobe")
int ht_mprof_malloc(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct ht_tgid_config *cfg;
	struct ht_pending pend = {};
	__u64 ax, bx, cx, n;

	if (morestack_branch_taken(ctx, cookie))
		return 0;
	cfg = bpf_map_lookup_elem(&ht_tgids, &tgid);
	if (!cfg)
		return 0;
	stat_inc(HT_STAT_MALLOC_HITS);
	n = __sync_fetch_and_add(&cfg->prof_samples, 1);
	/* All three registers read at fixed offsets: a ctx field picked by a
	 * branch can become a variable-offset ctx access the verifier rejects. */
	ax = ctx->ax;
	bx = ctx->bx;
	cx = ctx->cx;
	barrier_var(ax);
	barrier_var(bx);
	barrier_var(cx);
	if (cookie & HT_COOKIE_MPROF_MP) {
		pend.p = bx;
		pend.size = cx;
	} else {
		pend.p = ax;
		pend.size = bx;
	}
	pend.ts = bpf_ktime_get_ns();
	/* Go keeps frame pointers on amd64: the kernel's frame walk sees the
	 * goroutine stack (the caller's RBP chain; this is before the prologue). */
	/* The runtime records the same stack in the bucket; ours only checks
	 * that, so after the first ones it is taken on a budget (the frame
	 * walk is the costliest part of this program). */
	pend.stackid = -1;
	if (n < HT_STACKS_FIRST || !cfg->stack_every || n % cfg->stack_every == 0) {
		pend.stackid = bpf_get_stackid(ctx, &ht_prof_stacks, BPF_F_USER_STACK);
		if (pend.stackid < 0)
			stat_inc(HT_STAT_PROF_STACK_ERRORS);
	}
	if (bpf_map_update_elem(&ht_pending, &id, &pend, BPF_ANY))
		stat_inc(HT_STAT_PENDING_FULL);
	return 0;
}

static __always_inline void obj_insert(__u64 p, __u64 bucket, __u64 size, __u64 ts)
{
	__u32 idx = ht_obj_set_index(p);
	struct ht_obj_set *set = bpf_map_lookup_elem(&ht_objects, &idx);

	if (!set || !p)
		return;
	/* A sample at an address already in the table: the object there
	 * before was freed (the address was reused), which the daemon's walk
	 * may not have noticed yet (no freeSpecial probe): take its slot. */
#pragma clang loop unroll(full)
	for (int i = 0; i < HT_OBJ_WAYS; i++) {
		struct ht_obj *o = &set->way[i];

		if (o->p == p) {
			o->ts = 0;
			o->bucket = bucket;
			o->size = size;
			o->ts = ts;
			stat_inc(HT_STAT_OBJECT_REUSED);
			return;
		}
	}
#pragma clang loop unroll(full)
	for (int i = 0; i < HT_OBJ_WAYS; i++) {
		struct ht_obj *o = &set->way[i];

		if (o->p == 0 && __sync_val_compare_and_swap(&o->p, 0, p) == 0) {
			o->bucket = bucket;
			o->size = size;
			o->ts = ts;
			return;
		}
	}
	stat_inc(HT_STAT_OBJECTS_FULL);
}

/* 1 when p was tracked. */
static __always_inline int obj_remove(__u64 p)
{
	__u32 idx = ht_obj_set_index(p);
	struct ht_obj_set *set = bpf_map_lookup_elem(&ht_objects, &idx);

	if (!set || !p)
		return 0;
#pragma clang loop unroll(full)
	for (int i = 0; i < HT_OBJ_WAYS; i++) {
		struct ht_obj *o = &set->way[i];

		if (o->p == p) {
			o->ts = 0;
			return __sync_val_compare_and_swap(&o->p, p, 0) == p;
		}
	}
	return 0;
}

static __always_inline struct ht_bucket_counts *bucket_counts(__u32 tgid, __u64 b)
{
	struct ht_bucket_key key = {.tgid = tgid, .bucket = b};
	struct ht_bucket_counts *c, zero = {.stackid = -1};

	c = bpf_map_lookup_elem(&ht_buckets, &key);
	if (c)
		return c;
	bpf_map_update_elem(&ht_buckets, &key, &zero, BPF_NOEXIST);
	c = bpf_map_lookup_elem(&ht_buckets, &key);
	if (!c)
		stat_inc(HT_STAT_BUCKETS_FULL);
	return c;
}

/* Runs on g0 (systemstack) on the thread that just ran mProf_Malloc. */
SEC("uprobe")
int ht_setbucket(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct ht_tgid_config *cfg;
	struct ht_pending *pend;
	struct ht_bucket_counts *c;
	__u64 p = ctx->ax, b = ctx->bx, size, ts;
	__s64 stackid;

	if (morestack_branch_taken(ctx, cookie))
		return 0;
	pend = bpf_map_lookup_elem(&ht_pending, &id);
	if (!pend)
		return 0; /* untraced process, or attached in between */
	cfg = bpf_map_lookup_elem(&ht_tgids, &tgid);
	stat_inc(HT_STAT_BUCKET_HITS);
	if (pend->p != p) {
		stat_inc(HT_STAT_PENDING_MISSES);
		bpf_map_delete_elem(&ht_pending, &id);
		return 0;
	}
	size = pend->size;
	ts = pend->ts;
	stackid = pend->stackid;
	bpf_map_delete_elem(&ht_pending, &id);

	c = bucket_counts(tgid, b);
	if (c) {
		__sync_fetch_and_add(&c->allocs, 1);
		__sync_fetch_and_add(&c->alloc_bytes, size);
		if (c->stackid < 0 && stackid >= 0)
			c->stackid = stackid;
	}
	/* Without freeSpecial (unknown runtime.special layout) objects would
	 * never leave the table: sample ages are then not tracked at all. */
	if (!cfg || cfg->special_kind_off < 0)
		return 0;
	obj_insert(p, b, size, ts);
	return 0;
}

/* One probe per sample: in mProf_Malloc's body after stkbucket returned,
 * where the runtime has spilled p and size to its argument slots (checked
 * at plan time, daemon/trace/heap_trace.c heap_arg_spill_slot_x86); no stack
 * check here, the frame is built. */
SEC("uprobe")
int ht_mprof_malloc_bucket(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ht_bucket_counts *c;
	__u64 slots[HT_SPILL_SLOTS], p, size, b = ctx->ax, ts;
	__s64 stackid;

	if (tgid != HT_COOKIE_TGID(cookie))
		return 0;
	stat_inc(HT_STAT_MALLOC_HITS);
	if (bpf_probe_read_user(slots, sizeof(slots), (void *)(ctx->bp + 16))) {
		stat_inc(HT_STAT_READ_ERRORS);
		return 0;
	}
	p = slots[HT_COOKIE_P_SLOT(cookie)];
	size = slots[HT_COOKIE_SIZE_SLOT(cookie)];
	ts = bpf_ktime_get_ns();
	c = bucket_counts(tgid, b);
	if (c) {
		__sync_fetch_and_add(&c->allocs, 1);
		__sync_fetch_and_add(&c->alloc_bytes, size);
		/* Our stack only checks the bucket's (which the runtime keeps),
		 * and only a bucket's first one is used: the frame walk, the
		 * costliest part, runs once per bucket, tried at most
		 * HT_STACK_TRIES times (stackid -1, -2, ...: failures so far; a
		 * stack-map hash collision fails every time). From inside the
		 * body it starts at mProf_Malloc's own frame: one caller more
		 * than at the entry, the same stack after. */
		if (c->stackid < 0 && c->stackid > -1 - HT_STACK_TRIES) {
			stackid = bpf_get_stackid(ctx, &ht_prof_stacks, BPF_F_USER_STACK);
			if (stackid < 0) {
				stat_inc(HT_STAT_PROF_STACK_ERRORS);
				c->stackid--;
			} else {
				c->stackid = stackid;
			}
		}
	}
	if (cookie & HT_COOKIE_TRACK_OBJECTS) /* else objects would never leave the table */
		obj_insert(p, b, size, ts);
	return 0;
}

SEC("uprobe")
int ht_mprof_free(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ht_bucket_counts *c;

	if (morestack_branch_taken(ctx, cookie))
		return 0;
	if (!bpf_map_lookup_elem(&ht_tgids, &tgid))
		return 0;
	stat_inc(HT_STAT_FREE_HITS);
	c = bucket_counts(tgid, ctx->ax);
	if (c) {
		__u64 size = 0;

		/* bucket.size, not the size argument 1.27 dropped */
		bpf_probe_read_user(&size, sizeof(size),
				    (const void *)(ctx->ax + 8 * HT_COOKIE_BUCKET_SIZE_SLOT_OF(cookie)));
		__sync_fetch_and_add(&c->frees, 1);
		__sync_fetch_and_add(&c->free_bytes, size);
	}
	return 0;
}

/* freeSpecial(s *special, p unsafe.Pointer, size uintptr): mProf_Free does
 * not receive the object, its caller does. Only profile specials count. */
SEC("uprobe")
int ht_free_special(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ht_bucket_counts *c;
	__u64 s = ctx->ax, p = ctx->bx, size = ctx->cx, b, rec[4] = {};
	__u32 bslot = HT_COOKIE_BUCKET_SLOT(cookie);
	long err;

	if (morestack_branch_taken(ctx, cookie))
		return 0;
	if (tgid != HT_COOKIE_TGID(cookie))
		return 0;
	stat_inc(HT_STAT_SPECIAL_HITS);
	/* One read of the specialprofile record (kind, then b: offsets 10/16
	 * or 16/24, heap_special_layout, carried in the cookie), no byte past
	 * its end. */
	if (bslot == 3)
		err = bpf_probe_read_user(rec, 32, (void *)s);
	else
		err = bpf_probe_read_user(rec, 24, (void *)s);
	if (err) {
		stat_inc(HT_STAT_READ_ERRORS);
		return 0;
	}
	if (((__u8 *)rec)[HT_COOKIE_KIND_OFF(cookie)] != HT_COOKIE_KIND_PROFILE(cookie))
		return 0;
	b = rec[bslot];
	stat_inc(HT_STAT_FREE_HITS);
	c = bucket_counts(tgid, b);
	if (c) {
		__sync_fetch_and_add(&c->frees, 1);
		__sync_fetch_and_add(&c->free_bytes, size);
	}
	if (obj_remove(p))
		stat_inc(HT_STAT_OBJECT_FREES);
	return 0;
}

SEC("uprobe")
int ht_mallocgc(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct ht_tgid_config *cfg;
	struct ht_rate *r;
	__u64 size = ctx->ax, period, weight;
	__u32 cls;

	if (morestack_branch_taken(ctx, cookie))
		return 0;
	/* mallocgc hands these sizes to a size-specialized allocator, whose
	 * own probe counts them */
	if (size && size < HT_COOKIE_MIN_SIZE_OF(cookie))
		return 0;
	r = bpf_map_lookup_elem(&ht_rates, &tgid);
	if (!r)
		return 0;
	cls = ht_size_class(size);
	if (cls < HT_HIST_BUCKETS)
		r->hist[cls]++;
	if (!size)
		return 0; /* &zerobase: the runtime does not count it either */
	r->allocs++;
	r->bytes += size;
	r->left -= (__s64)size;
	if (r->left > 0)
		return 0;

	/* The allocation that crosses a multiple of sample_bytes on this CPU
	 * is sampled, weighted by how many multiples it crossed, so that
	 * samples x sample_bytes estimates bytes even for big objects. */
	cfg = bpf_map_lookup_elem(&ht_tgids, &tgid);
	period = cfg && cfg->sample_bytes ? cfg->sample_bytes : HT_DEFAULT_SAMPLE_BYTES;
	weight = (__u64)(-r->left) / period + 1;
	r->left += (__s64)(weight * period);
	stat_inc(HT_STAT_TRACE_SAMPLES);
	{
		struct ht_trace_key key = {.tgid = tgid};
		struct ht_trace_counts *c, zero = {};
		long id = bpf_get_stackid(ctx, &ht_trace_stacks, BPF_F_USER_STACK);

		if (id < 0) {
			stat_inc(HT_STAT_TRACE_STACK_ERRORS);
			return 0;
		}
		key.stackid = (__s32)id;
		c = bpf_map_lookup_elem(&ht_trace_sites, &key);
		if (!c) {
			bpf_map_update_elem(&ht_trace_sites, &key, &zero, BPF_NOEXIST);
			c = bpf_map_lookup_elem(&ht_trace_sites, &key);
			if (!c) {
				stat_inc(HT_STAT_TRACE_SITES_FULL);
				return 0;
			}
		}
		__sync_fetch_and_add(&c->samples, weight);
		__sync_fetch_and_add(&c->bytes, size);
	}
	return 0;
}
