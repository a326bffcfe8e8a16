// SPDX-License-Identifier: GPL-2.0
/* C memory of one process: libc allocator probes keep every outstanding
 * block in a hash keyed by (tgid, address) with its size, birth time and
 * stacks; runtime.cgocall probes count calls per C function and remember
 * the calling goroutine's stack per thread, so allocations made inside the
 * cgo call get the Go side the frame-pointer walk cannot reach (the cgo C
 * wrappers have no frame pointers and run on the g0 stack). C stacks are
 * keyed cheaply and copied once per new key for unwinding by CFI in user
 * space (native_trace_walk.bpf.h).
 *
 * Entry programs run at the placement-chosen instruction (probe_place.h);
 * the skipped instructions change no argument register and not RSP, so
 * [rsp] there is still the return address. Return values come from
 * uretprobes (libc only, never Go). The hand-off is keyed by (thread, kind)
 * (see bcc#4970: tid-only keys lose malloc when malloc calls mmap). Every
 * failure to record is counted in native_stats. */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "native_trace_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define NATIVE_MAP_ANONYMOUS 0x20
#define NATIVE_MAP_SHARED 0x01

const volatile __u32 targ_tgid = 0;
const volatile __u32 targ_go = 0; /* join Go stacks from runtime.cgocall */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NATIVE_DEFAULT_MAX_ALLOCS); /* resized before load */
	__type(key, struct native_alloc_key);
	__type(value, struct native_alloc);
} native_allocs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NATIVE_MAX_PENDING);
	__type(key, struct native_pending_key);
	__type(value, struct native_pending);
} native_pending SEC(".maps");

/* LRU: a thread that dies inside a cgo call must not pin an entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NATIVE_MAX_THREADS);
	__type(key, __u32);
	__type(value, struct native_cgo_thread);
} native_cgo_threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NATIVE_MAX_CGO_FNS);
	__type(key, __u64);
	__type(value, __u64);
} native_cgo_fns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, NATIVE_MAX_STACKS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, NATIVE_STACK_DEPTH * sizeof(__u64));
} native_stacks SEC(".maps");

/* Big values live here rather than on the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct native_pending);
} native_scratch SEC(".maps");

/* Power-of-two size: the index is masked, which the verifier accepts where
 * clang would fold a range check away. */
#define NATIVE_STATS_SLOTS 64
_Static_assert(NATIVE_STAT_MAX <= NATIVE_STATS_SLOTS, "stats slots");
__u64 native_stats[NATIVE_STATS_SLOTS] = {};

static __always_inline void stat_inc(__u32 s)
{
	__sync_fetch_and_add(&native_stats[s & (NATIVE_STATS_SLOTS - 1)], 1);
}

#include "native_trace_walk.bpf.h"

/* The current thread when it belongs to the target, else 0. */
static __always_inline __u32 target_thread(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	if ((__u32)(id >> 32) != targ_tgid)
		return 0;
	return (__u32)id;
}

static __always_inline __u64 read_u64(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
	return v;
}

/* Whether an allocating call is in progress on this thread: mmap and
 * munmap made by malloc itself (arenas, large chunks) are not the
 * program's own mappings and would count the same bytes twice. */
static __always_inline bool in_allocator(__u32 tid)
{
	struct native_pending_key key = { .tid = tid };

#pragma unroll
	for (__u32 k = 0; k < NATIVE_KIND_MMAP; k++) {
		key.kind = k;
		if (bpf_map_lookup_elem(&native_pending, &key))
			return true;
	}
	return false;
}

SEC("uprobe")
int native_alloc_entry(struct pt_regs *ctx)
{
	struct native_pending_key pkey;
	struct native_alloc_key akey;
	struct native_pending *p;
	struct native_alloc *old;
	__u32 tid = target_thread(), zero = 0, kind;
	__u64 cgo_fn;

	if (!tid)
		return 0;
	kind = (__u32)bpf_get_attach_cookie(ctx);
	if (kind >= NATIVE_KIND_MAX)
		return 0;
	stat_inc(NATIVE_STAT_HITS + NATIVE_PROBE_ENTRY + kind);
	p = bpf_map_lookup_elem(&native_scratch, &zero);
	if (!p)
		return 0;
	__builtin_memset(p, 0, sizeof(*p));
	switch (kind) {
	case NATIVE_KIND_MALLOC:
	case NATIVE_KIND_VALLOC:
		p->alloc.size = PT_REGS_PARM1(ctx);
		break;
	case NATIVE_KIND_PVALLOC:
		p->alloc.size = native_page_round(PT_REGS_PARM1(ctx));
		break;
	case NATIVE_KIND_CALLOC:
		/* An overflowing product fails in calloc: recorded as nothing. */
		p->alloc.size = PT_REGS_PARM1(ctx) * PT_REGS_PARM2(ctx);
		break;
	case NATIVE_KIND_REALLOC:
		p->arg = PT_REGS_PARM1(ctx);
		p->alloc.size = PT_REGS_PARM2(ctx);
		break;
	case NATIVE_KIND_POSIX_MEMALIGN:
		p->arg = PT_REGS_PARM1(ctx);
		p->alloc.size = PT_REGS_PARM3(ctx);
		break;
	case NATIVE_KIND_MEMALIGN:
		p->alloc.size = PT_REGS_PARM2(ctx);
		break;
	case NATIVE_KIND_MMAP: {
		__u64 flags = PT_REGS_PARM4(ctx); /* rcx at a libc function */

		if (!(flags & NATIVE_MAP_ANONYMOUS) || (flags & NATIVE_MAP_SHARED)) {
			stat_inc(NATIVE_STAT_MMAP_FILE);
			return 0;
		}
		if (in_allocator(tid)) {
			stat_inc(NATIVE_STAT_MMAP_NESTED);
			return 0;
		}
		p->alloc.size = PT_REGS_PARM2(ctx);
		break;
	}
	}
	p->alloc.kind = kind;
	p->alloc.birth_ns = bpf_ktime_get_ns();
	p->alloc.caller = read_u64(PT_REGS_SP(ctx));
	p->alloc.go_stackid = NATIVE_NO_STACK;
	cgo_fn = 0;
	if (targ_go) {
		struct native_cgo_thread *ct = bpf_map_lookup_elem(&native_cgo_threads, &tid);

		if (ct) {
			p->alloc.go_stackid = ct->go_stackid;
			p->alloc.go_caller = ct->go_caller;
			cgo_fn = ct->fn;
		}
	}
	p->alloc.stackid = native_stack_id(ctx, p->alloc.caller, cgo_fn);
	/* realloc: the old block leaves the set now, before another thread
	 * can be handed its address; a failed realloc puts it back. */
	if (kind == NATIVE_KIND_REALLOC && p->arg) {
		akey = (struct native_alloc_key){ .tgid = targ_tgid, .addr = p->arg };
		old = bpf_map_lookup_elem(&native_allocs, &akey);
		if (old) {
			p->old = *old;
			if (!bpf_map_delete_elem(&native_allocs, &akey)) {
				p->has_old = 1;
				stat_inc(NATIVE_STAT_FREES);
			}
		} else {
			stat_inc(NATIVE_STAT_FREE_UNKNOWN);
		}
	}
	pkey = (struct native_pending_key){ .tid = tid, .kind = kind };
	if (bpf_map_update_elem(&native_pending, &pkey, p, BPF_ANY))
		stat_inc(NATIVE_STAT_PENDING_FULL);
	return 0;
}

static __always_inline void record(struct native_alloc_key *key, struct native_alloc *val,
				   __u64 entry_ns)
{
	struct native_alloc *cur;
	long err;

	err = bpf_map_update_elem(&native_allocs, key, val, BPF_NOEXIST);
	if (!err) {
		stat_inc(NATIVE_STAT_ALLOCS);
		return;
	}
	cur = bpf_map_lookup_elem(&native_allocs, key);
	if (!cur) {
		stat_inc(NATIVE_STAT_ALLOCS_FULL);
		return;
	}
	/* Recorded during this very call (realloc(NULL, n) and memalign call
	 * malloc inside): the outer call's record wins, silently. Older: the
	 * block's free went unseen. */
	if (cur->birth_ns < entry_ns)
		stat_inc(NATIVE_STAT_REPLACED);
	else
		stat_inc(NATIVE_STAT_ALLOCS);
	*cur = *val;
}

SEC("uretprobe")
int native_alloc_return(struct pt_regs *ctx)
{
	struct native_pending_key pkey;
	struct native_alloc_key akey;
	struct native_pending *p;
	__u32 tid = target_thread(), zero = 0, kind, action;
	__u64 ret, addr;

	if (!tid)
		return 0;
	kind = (__u32)bpf_get_attach_cookie(ctx);
	if (kind >= NATIVE_KIND_MAX)
		return 0;
	stat_inc(NATIVE_STAT_HITS + NATIVE_PROBE_RETURN + kind);
	pkey = (struct native_pending_key){ .tid = tid, .kind = kind };
	{
		struct native_pending *src = bpf_map_lookup_elem(&native_pending, &pkey);

		p = bpf_map_lookup_elem(&native_scratch, &zero);
		if (!src || !p) {
			/* an mmap filtered at entry lands here too: not an error */
			if (kind != NATIVE_KIND_MMAP)
				stat_inc(NATIVE_STAT_PENDING_MISSING);
			return 0;
		}
		*p = *src;
		bpf_map_delete_elem(&native_pending, &pkey);
	}
	ret = PT_REGS_RC(ctx);
	addr = ret;
	switch (kind) {
	case NATIVE_KIND_POSIX_MEMALIGN:
		/* returns an errno; the block is in *memptr */
		addr = (__u32)ret ? 0 : read_u64(p->arg);
		break;
	case NATIVE_KIND_MMAP:
		if (ret == (__u64)-1)
			addr = 0;
		break;
	case NATIVE_KIND_REALLOC:
		action = native_realloc_action(p->arg, p->alloc.size, ret);
		if ((action & NATIVE_REALLOC_RESTORE_OLD) && p->has_old) {
			akey = (struct native_alloc_key){ .tgid = targ_tgid, .addr = p->arg };
			if (bpf_map_update_elem(&native_allocs, &akey, &p->old, BPF_NOEXIST))
				stat_inc(NATIVE_STAT_ALLOCS_FULL);
		}
		if (!(action & NATIVE_REALLOC_INSERT_NEW)) {
			if (action & NATIVE_REALLOC_RESTORE_OLD || (!p->arg && !ret))
				stat_inc(NATIVE_STAT_FAILED);
			return 0;
		}
		break;
	}
	if (!addr) {
		stat_inc(NATIVE_STAT_FAILED);
		return 0;
	}
	akey = (struct native_alloc_key){ .tgid = targ_tgid, .addr = addr };
	record(&akey, &p->alloc, p->alloc.birth_ns);
	return 0;
}

SEC("uprobe")
int native_free(struct pt_regs *ctx)
{
	struct native_alloc_key key;
	__u64 addr = PT_REGS_PARM1(ctx);

	if (!target_thread())
		return 0;
	stat_inc(NATIVE_STAT_HITS + NATIVE_PROBE_FREE);
	if (!addr) {
		stat_inc(NATIVE_STAT_FREE_NULL);
		return 0;
	}
	key = (struct native_alloc_key){ .tgid = targ_tgid, .addr = addr };
	if (bpf_map_delete_elem(&native_allocs, &key))
		stat_inc(NATIVE_STAT_FREE_UNKNOWN);
	else
		stat_inc(NATIVE_STAT_FREES);
	return 0;
}

SEC("uprobe")
int native_munmap(struct pt_regs *ctx)
{
	struct native_alloc_key key;
	struct native_alloc *cur;
	struct native_pending *p;
	__u64 addr = PT_REGS_PARM1(ctx), len = PT_REGS_PARM2(ctx), left;
	__u32 tid = target_thread(), zero = 0;

	if (!tid)
		return 0;
	stat_inc(NATIVE_STAT_HITS + NATIVE_PROBE_MUNMAP);
	if (in_allocator(tid)) {
		stat_inc(NATIVE_STAT_MMAP_NESTED);
		return 0;
	}
	key = (struct native_alloc_key){ .tgid = targ_tgid, .addr = addr };
	cur = bpf_map_lookup_elem(&native_allocs, &key);
	if (!cur || cur->kind != NATIVE_KIND_MMAP) {
		stat_inc(NATIVE_STAT_MUNMAP_UNKNOWN);
		return 0;
	}
	left = native_munmap_remaining(cur->size, len);
	p = bpf_map_lookup_elem(&native_scratch, &zero);
	if (left && p) {
		/* head unmapped: the rest stays outstanding, same stack and age */
		p->alloc = *cur;
		p->alloc.size = left;
	}
	if (bpf_map_delete_elem(&native_allocs, &key))
		return 0;
	stat_inc(NATIVE_STAT_FREES);
	if (left && p) {
		stat_inc(NATIVE_STAT_MUNMAP_PARTIAL);
		key.addr = addr + native_page_round(len);
		if (bpf_map_update_elem(&native_allocs, &key, &p->alloc, BPF_ANY))
			stat_inc(NATIVE_STAT_ALLOCS_FULL);
	}
	return 0;
}

/* runtime.cgocall(fn, arg): fn in RAX (Go register ABI). The cookie is the
 * distance from RSP to cgocall's return address at the probed instruction
 * (0 at a `push rbp` entry, the frame size after the prologue). */
SEC("uprobe")
int native_cgocall(struct pt_regs *ctx)
{
	struct native_cgo_thread ct = {};
	__u64 fn = ctx->ax, *cnt, one = 1;
	__u32 tid = target_thread();
	long id;

	if (!tid)
		return 0;
	stat_inc(NATIVE_STAT_HITS + NATIVE_PROBE_CGOCALL);
	stat_inc(NATIVE_STAT_CGO_CALLS);
	cnt = bpf_map_lookup_elem(&native_cgo_fns, &fn);
	if (cnt)
		__sync_fetch_and_add(cnt, 1);
	else if (bpf_map_update_elem(&native_cgo_fns, &fn, &one, BPF_NOEXIST)) {
		cnt = bpf_map_lookup_elem(&native_cgo_fns, &fn); /* a racing insert */
		if (cnt)
			__sync_fetch_and_add(cnt, 1);
		else
			stat_inc(NATIVE_STAT_CGO_FNS_FULL);
	}
	ct.fn = fn;
	ct.go_caller = read_u64(PT_REGS_SP(ctx) + bpf_get_attach_cookie(ctx));
	id = bpf_get_stackid(ctx, &native_stacks, BPF_F_USER_STACK);
	if (id < 0) {
		stat_inc(NATIVE_STAT_GO_STACK_ERRORS);
		id = NATIVE_NO_STACK;
	}
	ct.go_stackid = (__s32)id;
	if (bpf_map_update_elem(&native_cgo_threads, &tid, &ct, BPF_ANY))
		stat_inc(NATIVE_STAT_THREADS_FULL);
	return 0;
}

/* The C function has returned (cgocall is about to call exitsyscall):
 * later C work on this thread (runtime-internal asmcgocall such as
 * _cgo_mmap) is not this goroutine's. */
SEC("uprobe")
int native_cgocall_done(struct pt_regs *ctx)
{
	__u32 tid = target_thread();

	if (!tid)
		return 0;
	stat_inc(NATIVE_STAT_HITS + NATIVE_PROBE_CGOCALL_DONE);
	bpf_map_delete_elem(&native_cgo_threads, &tid);
	return 0;
}
