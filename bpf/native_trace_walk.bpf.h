/* SPDX-License-Identifier: GPL-2.0 */
/* The C allocation stack key and its new-stack event (bpf/native_trace.bpf.c; ABI
 * in include/native_trace_abi.h). The key is cheap: the probed pc, the return
 * address at [rsp] (right without frame pointers: the probe runs before the
 * allocator touches RSP), a bounded frame-pointer walk (each return address
 * checked to lie in an executable mapping — user space's table of them,
 * bpf_find_vma while there is none — so a frame pointer used as a
 * scratch register by code built without frame pointers ends the walk
 * instead of keying by garbage; the walk ends at the first return address
 * into Go code, whose stack runtime.cgocall gives), and the C function of
 * the cgo call in progress. A key seen for the first time gets the next
 * stack id and one ring-buffer event with the registers and a copy of the
 * stack window, which user space unwinds by .eh_frame CFI
 * (daemon/symbols/native_unwind.c). Repeat hits cost the walk and one lookup. */
#ifndef MEMDRIFT_NATIVE_WALK_BPF_H
#define MEMDRIFT_NATIVE_WALK_BPF_H

#include "user_stack.bpf.h"

_Static_assert((NATIVE_STACK_DEPTH & (NATIVE_STACK_DEPTH - 1)) == 0, "depth: a power of 2");

/* 1: the kernel's frame-pointer stack (bpf_get_stackid into native_stacks),
 * what memdrift did before: MEMDRIFT_NATIVE_STACKS=fp and the cost bench */
const volatile __u32 native_fp_only = 0;
/* Go text [lo, hi) at run time (0: not a Go binary or unknown) */
const volatile __u64 targ_go_text_lo = 0;
const volatile __u64 targ_go_text_hi = 0;

/* stack id -> the key hash that owns it; key hash -> stack id; id -> its
 * walk. Allocated per stack seen. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NATIVE_MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} native_id_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NATIVE_MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __s32);
} native_stack_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NATIVE_MAX_STACKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct native_walk);
} native_walks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct native_walk);
} native_walk_scratch SEC(".maps");

struct {
	/* ~120 new-stack events between two reads; more fall back to the
	 * frame-pointer walk (NATIVE_STAT_STACK_EVENTS_LOST) */
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} native_events SEC(".maps");

struct native_exec_ranges native_exec = {};

/* 1: addr is in a known executable mapping, 0: not, -1: the table is not
 * there (being rewritten, or too many mappings). */
static __always_inline int native_exec_known(__u64 addr)
{
	__u32 n = *(volatile __u32 *)&native_exec.n;

	if (!n || n > NATIVE_EXEC_RANGES)
		return -1;
	for (__u32 i = 0; i < NATIVE_EXEC_RANGES; i++) {
		if (i >= n)
			break;
		if (addr >= native_exec.lo[i] && addr < native_exec.hi[i])
			return 1;
	}
	return 0;
}

static __always_inline bool native_in_go(__u64 pc)
{
	return pc >= targ_go_text_lo && pc < targ_go_text_hi;
}

struct native_walk_ctx {
	struct native_walk *w;
	__u64 fp, h;
	__u32 n;
};

/* One frame-pointer step (bpf_loop body): 0 go on, 1 stop. */
static long native_walk_step(__u64 idx, void *data)
{
	struct native_walk_ctx *c = data;
	__u32 i = c->n;
	__u64 fr[2], ret;
	bool go;

	if (i >= NATIVE_STACK_DEPTH)
		return 1;
	if (!c->fp || (c->fp & 7) || bpf_probe_read_user(fr, sizeof(fr), (void *)c->fp))
		return 1;
	ret = fr[1];
	if (!ret)
		return 1;
	go = native_in_go(ret);
	if (!go) {
		/* the table user space keeps, else the kernel's mappings: a
		 * mapping made since the table's last refresh ends the walk,
		 * which only makes that key coarser until the next refresh */
		int known = native_exec_known(ret);

		if (!known || (known < 0 && !ustack_executable(ret)))
			return 1;
	}
	{
		__u32 k = i;

		asm volatile("" : "+r"(k)); /* keep the bound visible to the verifier */
		k &= NATIVE_STACK_DEPTH - 1;
		c->w->pc[k] = ret;
	}
	c->n = i + 1;
	c->h = ustack_mix(c->h, ret);
	if (go || fr[0] <= c->fp)
		return 1;
	c->fp = fr[0];
	return 0;
}

static __always_inline void native_emit_stack(struct pt_regs *regs, __s32 id)
{
	struct native_stack_event *ev = bpf_ringbuf_reserve(&native_events, sizeof(*ev), 0);
	void *sp = (void *)PT_REGS_SP(regs);

	if (!ev) {
		stat_inc(NATIVE_STAT_STACK_EVENTS_LOST);
		return;
	}
	ev->stackid = id;
	ev->ip = PT_REGS_IP(regs);
	ev->sp = PT_REGS_SP(regs);
	ev->bp = PT_REGS_FP(regs);
	ev->copied = ustack_copy(ev->stack, NATIVE_STACK_COPY, NATIVE_STACK_COPY_MIN, sp);
	bpf_ringbuf_submit(ev, 0);
}

/* Stack id of the current C stack (NATIVE_NO_STACK when none could be
 * given, counted). caller = [rsp]; cgo_fn = the C function of the cgo call
 * in progress on this thread, 0 when none. */
static __always_inline __s32 native_stack_id(struct pt_regs *regs, __u64 caller, __u64 cgo_fn)
{
	struct native_walk_ctx c;
	struct native_walk *w;
	__u32 zero = 0;
	__s32 *found;
	__s32 id;
	__u64 h;

	if (native_fp_only) {
		long sid = bpf_get_stackid(regs, &native_stacks, BPF_F_USER_STACK);

		if (sid < 0) {
			stat_inc(NATIVE_STAT_STACK_ERRORS);
			return NATIVE_NO_STACK;
		}
		return (__s32)sid;
	}
	w = bpf_map_lookup_elem(&native_walk_scratch, &zero);
	if (!w)
		return NATIVE_NO_STACK;
	w->pc[0] = PT_REGS_IP(regs);
	w->pc[1] = caller;
	c = (struct native_walk_ctx){
		.w = w, .fp = PT_REGS_FP(regs), .n = 2,
		.h = ustack_mix(ustack_mix(ustack_mix(0xcbf29ce484222325ull, w->pc[0]), caller),
				cgo_fn),
	};
	if (!native_in_go(caller))
		bpf_loop(NATIVE_STACK_DEPTH - 2, native_walk_step, &c, 0);
	w->n = c.n;
	h = c.h;

	found = bpf_map_lookup_elem(&native_stack_ids, &h);
	if (found)
		return *found;
	id = ustack_claim_id(&native_id_owner, h, NATIVE_MAX_STACKS);
	if (id < 0) {
		stat_inc(NATIVE_STAT_STACKS_FULL);
		return NATIVE_NO_STACK;
	}
	if (bpf_map_update_elem(&native_stack_ids, &h, &id, BPF_NOEXIST)) {
		/* another CPU keyed this stack first: its id wins, ours stays claimed
		 * and unused */
		found = bpf_map_lookup_elem(&native_stack_ids, &h);
		return found ? *found : NATIVE_NO_STACK;
	}
	bpf_map_update_elem(&native_walks, (__u32 *)&id, w, BPF_ANY);
	stat_inc(NATIVE_STAT_STACKS_NEW);
	native_emit_stack(regs, id);
	return id;
}

#endif
